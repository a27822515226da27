//! Account levels, room roles and the rights matrix from DESIGN.md.
//!
//! Levels belong to accounts and hold in every room; roles belong to one participant in one
//! room. Every server that performs an action asks [`Grants::allows`] — never the browser.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An account's level, set by an administrator.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AccountLevel {
    /// The default: joins as a listener unless owner of the room.
    #[default]
    Audience,
    /// Joins every room as a moderator.
    Moderator,
    /// A moderator who may also start and stop recordings.
    ModeratorPlus,
    /// Manages accounts and levels; a moderator plus in rooms.
    Admin,
}

impl AccountLevel {
    /// Every level, lowest first.
    pub const ALL: [AccountLevel; 4] = [
        AccountLevel::Audience,
        AccountLevel::Moderator,
        AccountLevel::ModeratorPlus,
        AccountLevel::Admin,
    ];

    /// The camelCase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountLevel::Audience => "audience",
            AccountLevel::Moderator => "moderator",
            AccountLevel::ModeratorPlus => "moderatorPlus",
            AccountLevel::Admin => "admin",
        }
    }

    /// Parses the camelCase name; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == value)
    }
}

/// A participant's role in one room.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Chats, hears, publishes microphone and camera.
    Listener,
    /// A listener who also manages microphones and presents.
    Speaker,
    /// A speaker who also changes roles, excludes people and ends the meeting.
    Moderator,
}

impl Role {
    /// The role someone gets on joining: the owner and accounts of level moderator or higher
    /// are moderators; other accounts and guests are listeners (phone callers too, audio only).
    pub fn on_join(is_owner: bool, level: Option<AccountLevel>) -> Role {
        if is_owner || level.is_some_and(|level| level >= AccountLevel::Moderator) {
            Role::Moderator
        } else {
            Role::Listener
        }
    }

    /// The camelCase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Listener => "listener",
            Role::Speaker => "speaker",
            Role::Moderator => "moderator",
        }
    }
}

/// One right from the matrix in DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Right {
    /// Send chat messages.
    Chat,
    /// Publish microphone and camera.
    PublishMedia,
    /// Mute others' microphones or allow them to speak.
    ManageMicrophones,
    /// Upload and show a presentation, share the screen.
    Present,
    /// Make someone a speaker or a listener.
    ChangeRoles,
    /// Exclude someone from the room.
    Exclude,
    /// End the meeting for everyone.
    EndMeeting,
    /// Start and stop a recording.
    Record,
}

/// What one participant may do, derived from role and account level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    /// See [`Right::Chat`].
    pub chat: bool,
    /// See [`Right::PublishMedia`].
    pub publish_media: bool,
    /// See [`Right::ManageMicrophones`].
    pub manage_microphones: bool,
    /// See [`Right::Present`].
    pub present: bool,
    /// See [`Right::ChangeRoles`].
    pub change_roles: bool,
    /// See [`Right::Exclude`].
    pub exclude: bool,
    /// See [`Right::EndMeeting`].
    pub end_meeting: bool,
    /// See [`Right::Record`].
    pub record: bool,
}

impl Grants {
    /// The rights of `role` for an account of `level` (`None` for guests and phone callers).
    pub fn of(role: Role, level: Option<AccountLevel>) -> Grants {
        let speaker = role >= Role::Speaker;
        let moderator = role == Role::Moderator;
        Grants {
            chat: true,
            publish_media: true,
            manage_microphones: speaker,
            present: speaker,
            change_roles: moderator,
            exclude: moderator,
            end_meeting: moderator,
            record: moderator && level.is_some_and(|level| level >= AccountLevel::ModeratorPlus),
        }
    }

    /// Whether these grants include `right`.
    pub fn allows(&self, right: Right) -> bool {
        match right {
            Right::Chat => self.chat,
            Right::PublishMedia => self.publish_media,
            Right::ManageMicrophones => self.manage_microphones,
            Right::Present => self.present,
            Right::ChangeRoles => self.change_roles,
            Right::Exclude => self.exclude,
            Right::EndMeeting => self.end_meeting,
            Right::Record => self.record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_moderator_levels_join_as_moderators() {
        assert_eq!(
            Role::on_join(true, Some(AccountLevel::Audience)),
            Role::Moderator
        );
        assert_eq!(
            Role::on_join(false, Some(AccountLevel::Moderator)),
            Role::Moderator
        );
        assert_eq!(
            Role::on_join(false, Some(AccountLevel::Admin)),
            Role::Moderator
        );
        assert_eq!(
            Role::on_join(false, Some(AccountLevel::Audience)),
            Role::Listener
        );
        assert_eq!(Role::on_join(false, None), Role::Listener);
    }

    #[test]
    fn listener_cannot_share_the_screen() {
        let grants = Grants::of(Role::Listener, None);
        assert!(grants.allows(Right::Chat));
        assert!(grants.allows(Right::PublishMedia));
        assert!(!grants.allows(Right::Present));
        assert!(!grants.allows(Right::ManageMicrophones));
    }

    #[test]
    fn speaker_presents_but_cannot_exclude() {
        let grants = Grants::of(Role::Speaker, Some(AccountLevel::Admin));
        assert!(grants.allows(Right::Present));
        assert!(grants.allows(Right::ManageMicrophones));
        assert!(!grants.allows(Right::Exclude));
        assert!(!grants.allows(Right::ChangeRoles));
        assert!(!grants.allows(Right::Record));
    }

    #[test]
    fn only_moderator_plus_moderators_record() {
        assert!(!Grants::of(Role::Moderator, Some(AccountLevel::Moderator)).allows(Right::Record));
        assert!(!Grants::of(Role::Moderator, None).allows(Right::Record));
        assert!(
            Grants::of(Role::Moderator, Some(AccountLevel::ModeratorPlus)).allows(Right::Record)
        );
        assert!(Grants::of(Role::Moderator, Some(AccountLevel::Admin)).allows(Right::Record));
        let moderator = Grants::of(Role::Moderator, Some(AccountLevel::Moderator));
        assert!(moderator.allows(Right::EndMeeting) && moderator.allows(Right::Exclude));
    }

    #[test]
    fn levels_round_trip_through_their_names() {
        for level in AccountLevel::ALL {
            assert_eq!(AccountLevel::parse(level.as_str()), Some(level));
        }
        assert_eq!(AccountLevel::parse("root"), None);
    }
}
