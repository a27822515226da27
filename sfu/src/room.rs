//! One conference's room as a plain state machine: membership, the waiting room, rights,
//! moderation, chat, published tracks and who subscribes to what.
//!
//! Every input is a method taking `now`; every output is a list of [`Effect`]s the shell
//! carries out (send a message to a session, close it, start forwarding a track to a
//! subscriber, ask a publisher for a keyframe, report to the conference service). Nothing here
//! touches a socket or reads the clock, so the tests below run on virtual time.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use proto::signal::{
    ChatMessage, CloseReason, ErrorCode, MAX_CHAT_BYTES, MAX_RECENT_SPEAKERS, MAX_TRACK_ID_BYTES,
    ParticipantInfo, ServerMessage, TrackInfo, TrackKind, TrackSource, VideoLayer,
};
use proto::{
    AccountLevel, ConferenceId, Grants, JoinClaims, Media, MeetingId, ParticipantId, RecordingId,
    Right, Role, RoomEvent, RoomReport, TrackId,
};

use crate::keyframe::{KeyframeDecision, KeyframeLimiter};
use crate::rate::{Rate, TokenBucket};
use crate::recording::{Event, EventKind, Person, RecordingInfo, StopReason, Stopped};
use crate::speaker::SpeakerDetector;

mod presentation;

/// One websocket connection. A participant keeps their [`ParticipantId`] across reconnects;
/// each connection gets a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Limits that come from the SFU's configuration rather than the token.
#[derive(Debug, Clone)]
pub struct RoomLimits {
    /// Participants per room when the token sets no maximum.
    pub default_max_participants: u32,
    /// Chat messages kept for late joiners.
    pub chat_history: usize,
    /// At most one keyframe request per track per this interval.
    pub keyframe_interval: TimeDelta,
    /// How long the active speaker is held before a louder one takes over.
    pub speaker_hold: TimeDelta,
    /// Tracks one participant may have announced at once (microphone, camera, screen and its
    /// sound are four).
    pub max_tracks_per_participant: usize,
    /// Chat messages per participant.
    pub chat_rate: Rate,
    /// Publish, unpublish, mute and moderation actions per participant: each reaches everyone,
    /// and publishing forces everyone's subscriber connection to renegotiate.
    pub control_rate: Rate,
    /// Guest seats (waiting or admitted) one client network may hold in a room; 0: no limit.
    pub guest_seats_per_client: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            default_max_participants: 100,
            chat_history: 100,
            keyframe_interval: TimeDelta::milliseconds(500),
            speaker_hold: TimeDelta::milliseconds(1000),
            max_tracks_per_participant: 8,
            chat_rate: Rate {
                per_second: 5.0,
                burst: 10,
            },
            control_rate: Rate {
                per_second: 5.0,
                burst: 20,
            },
            guest_seats_per_client: 20,
        }
    }
}

/// What the shell must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a message on a session's websocket.
    Send {
        /// The session.
        to: SessionId,
        /// The message.
        message: ServerMessage,
    },
    /// Send [`ServerMessage::Closed`], tear the session's peer connections down and close
    /// its websocket.
    Close {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// The session was admitted: set up its peer connections.
    Admit {
        /// The session.
        session: SessionId,
        /// The participant.
        participant: ParticipantId,
    },
    /// Start forwarding `track` to the subscriber connection of `session`.
    Subscribe {
        /// The subscriber's session.
        session: SessionId,
        /// The track.
        track: TrackId,
        /// Audio or video.
        kind: TrackKind,
    },
    /// Stop forwarding `track` to `session`.
    Unsubscribe {
        /// The subscriber's session.
        session: SessionId,
        /// The track.
        track: TrackId,
    },
    /// The track is gone: stop reading it.
    TrackClosed {
        /// The track.
        track: TrackId,
    },
    /// Forward (`true`) or drop (`false`, muted) the track's packets.
    SetForwarding {
        /// The track.
        track: TrackId,
        /// Whether packets flow.
        enabled: bool,
    },
    /// Ask the publisher of `track` for a keyframe (PLI).
    RequestKeyframe {
        /// The track.
        track: TrackId,
    },
    /// Forward one simulcast layer of `track` to `session`.
    SetLayer {
        /// The subscriber's session.
        session: SessionId,
        /// The track.
        track: TrackId,
        /// The layer.
        layer: VideoLayer,
    },
    /// Tell the conference service.
    Report(RoomReport),
    /// A recording starts: store its `recording.json` and record every track from now on.
    StartRecording(RecordingInfo),
    /// The recording stops: let its tracks go, store `stopped.json` once every segment is
    /// stored, then send `report` (`recordingStopped`).
    StopRecording {
        /// The recording.
        recording: RecordingId,
        /// `stopped.json`.
        stopped: Stopped,
        /// Sent when the files are stored.
        report: RoomReport,
    },
    /// Something happened that the running recording keeps in its events.
    RecordEvent(Event),
}

/// A refusal: an error code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The result of an input: effects, or a refusal sent back to the asking session only.
pub type Outcome = Result<Vec<Effect>, Refusal>;

#[derive(Debug, Clone)]
struct Member {
    id: ParticipantId,
    session: SessionId,
    identity: String,
    jti: String,
    /// The token's `iat` and `ep`: revocations compare against them.
    issued: i64,
    epoch: u32,
    name: String,
    role: Role,
    level: Option<AccountLevel>,
    owner: bool,
    admitted: bool,
    /// A copy of whether [`Room::blocks`] holds this identity, for [`Member::info`].
    microphone_blocked: bool,
    /// Announced tracks by the browser's track ID: source, muted, and the room's ID once media
    /// arrived.
    announced: HashMap<String, Announced>,
    /// A guest (no account): counted against the guest seats of their client network.
    guest: bool,
    /// The client network ([`JoinClaims::cli`]).
    client: Option<String>,
    /// Chat messages allowed.
    chat_bucket: TokenBucket,
    /// Publish, unpublish, mute and moderation actions allowed.
    control_bucket: TokenBucket,
}

/// Who may act against whom: the owner, and administrators holding the moderator role, rank
/// above moderators, who rank above speakers, who rank above listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Listener,
    Speaker,
    Moderator,
    OwnerOrAdmin,
}

/// A microphone block, kept per identity so that it survives leaving and rejoining.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// The rank of whoever blocked; only that rank or above lifts it.
    by: Rank,
}

#[derive(Debug, Clone)]
struct Announced {
    source: TrackSource,
    muted: bool,
    track: Option<TrackId>,
}

impl Member {
    fn grants(&self) -> Grants {
        Grants::of(self.role, self.level)
    }

    fn rank(&self) -> Rank {
        match self.role {
            Role::Moderator if self.owner || self.level == Some(AccountLevel::Admin) => {
                Rank::OwnerOrAdmin
            }
            Role::Moderator => Rank::Moderator,
            Role::Speaker => Rank::Speaker,
            Role::Listener => Rank::Listener,
        }
    }

    fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id.clone(),
            display_name: self.name.clone(),
            role: self.role,
            microphone_blocked: self.microphone_blocked,
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    info: TrackInfo,
    client_id: String,
}

/// One conference's room.
#[derive(Debug)]
pub struct Room {
    conference: ConferenceId,
    limits: RoomLimits,
    max_participants: u32,
    allow_join_without_owner: bool,
    media: Media,
    members: BTreeMap<ParticipantId, Member>,
    sessions: HashMap<SessionId, ParticipantId>,
    by_identity: HashMap<String, ParticipantId>,
    excluded_tokens: HashSet<String>,
    excluded_identities: HashSet<String>,
    /// Blocked microphones by identity.
    blocks: HashMap<String, Block>,
    /// The revision of the settings applied ([`proto::RoomSettings::revision`]); `None` before
    /// the first join.
    settings_revision: Option<i64>,
    tracks: BTreeMap<TrackId, Track>,
    subscriptions: BTreeMap<(ParticipantId, TrackId), VideoLayer>,
    chat: VecDeque<ChatMessage>,
    keyframes: KeyframeLimiter,
    speaker: SpeakerDetector,
    /// Who was the active speaker lately, the most recent first (at most
    /// [`MAX_RECENT_SPEAKERS`]).
    spoke: VecDeque<ParticipantId>,
    /// The recording running, and who started it.
    recording: Option<(RecordingId, Person)>,
    /// Whether the conference may be recorded ([`proto::RoomSettings::recording_allowed`]).
    recording_allowed: bool,
    /// The conference's topic and meeting ID, as the tokens said, for `recording.json`.
    topic: Option<String>,
    meeting_id: Option<MeetingId>,
    /// The presentation on the stage ([`presentation`]).
    presentation: Option<proto::PresentationState>,
    ended_at: Option<DateTime<Utc>>,
    /// The latest expiry of any token seen: memory of exclusions and of the end is needed
    /// until then.
    remember_until: DateTime<Utc>,
    next_participant: u64,
    next_track: u64,
}

/// Guests have no account (and own no room): their identity is a browser-chosen ID.
fn is_guest(claims: &JoinClaims) -> bool {
    claims.level.is_none() && !claims.owner
}

fn rate_limited(what: &str, wait: TimeDelta) -> Refusal {
    let seconds = (wait.num_milliseconds() as f64 / 1000.0).max(0.1);
    Refusal::new(
        ErrorCode::RateLimited,
        format!("too many {what} in a short time; try again in {seconds:.1} s"),
    )
}

fn rfc3339(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Room {
    /// An empty room for `conference`.
    pub fn new(conference: ConferenceId, limits: RoomLimits) -> Self {
        Self {
            conference,
            max_participants: limits.default_max_participants,
            keyframes: KeyframeLimiter::new(limits.keyframe_interval),
            speaker: SpeakerDetector::new(limits.speaker_hold),
            spoke: VecDeque::new(),
            limits,
            allow_join_without_owner: true,
            media: Media::AudioVideo,
            members: BTreeMap::new(),
            sessions: HashMap::new(),
            by_identity: HashMap::new(),
            excluded_tokens: HashSet::new(),
            excluded_identities: HashSet::new(),
            blocks: HashMap::new(),
            settings_revision: None,
            tracks: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            chat: VecDeque::new(),
            recording: None,
            recording_allowed: true,
            topic: None,
            meeting_id: None,
            presentation: None,
            ended_at: None,
            remember_until: DateTime::<Utc>::UNIX_EPOCH,
            next_participant: 0,
            next_track: 0,
        }
    }

    /// The conference.
    pub fn conference(&self) -> &ConferenceId {
        &self.conference
    }

    /// Admitted participants.
    pub fn admitted(&self) -> u32 {
        let admitted = self.members.values().filter(|m| m.admitted).count();
        u32::try_from(admitted).unwrap_or(u32::MAX)
    }

    /// Sessions in the room, waiting or admitted.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Published tracks.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// The participant a session belongs to.
    pub fn participant_of(&self, session: SessionId) -> Option<&ParticipantId> {
        self.sessions.get(&session)
    }

    /// Whether the shell may drop the room: nobody is in it and nothing remembered (an
    /// exclusion, a microphone block, the end) still matters.
    pub fn can_forget(&self, now: DateTime<Utc>) -> bool {
        self.sessions.is_empty()
            && (now >= self.remember_until
                || (self.excluded_tokens.is_empty()
                    && self.blocks.is_empty()
                    && self.ended_at.is_none()))
    }

    /// A participant's display name.
    pub fn display_name(&self, participant: &ParticipantId) -> Option<&str> {
        self.members.get(participant).map(|m| m.name.as_str())
    }

    /// Current info about a track (for the shell when a subscription starts).
    pub fn track(&self, track: &TrackId) -> Option<&TrackInfo> {
        self.tracks.get(track).map(|t| &t.info)
    }

    /// Reports what the SFU (pod `pod`) found of the room's media ports: `unusable` ones of
    /// `first..=last` cannot be bound (none: every port tried could be).
    pub fn media_ports(
        &self,
        pod: &str,
        first: u16,
        last: u16,
        unusable: Vec<u16>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        vec![self.report(
            RoomEvent::MediaPorts {
                pod: pod.to_owned(),
                first,
                last,
                unusable,
            },
            now,
        )]
    }

    fn report(&self, event: RoomEvent, now: DateTime<Utc>) -> Effect {
        Effect::Report(RoomReport {
            conference: self.conference.clone(),
            at: rfc3339(now),
            participants: self.admitted(),
            event,
        })
    }

    fn owner_present(&self) -> bool {
        self.members.values().any(|m| m.admitted && m.owner)
    }

    fn member_of(&self, session: SessionId) -> Result<&Member, Refusal> {
        self.sessions
            .get(&session)
            .and_then(|id| self.members.get(id))
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, "join first"))
    }

    fn admitted_member(&self, session: SessionId) -> Result<&Member, Refusal> {
        let member = self.member_of(session)?;
        if member.admitted {
            Ok(member)
        } else {
            Err(Refusal::new(
                ErrorCode::NotJoined,
                "you are still in the waiting room",
            ))
        }
    }

    fn require(&self, session: SessionId, right: Right) -> Result<&Member, Refusal> {
        let member = self.admitted_member(session)?;
        if member.grants().allows(right) {
            Ok(member)
        } else {
            Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("a {} may not do this", member.role.as_str()),
            ))
        }
    }

    fn broadcast(&self, message: &ServerMessage, except: Option<&ParticipantId>) -> Vec<Effect> {
        self.members
            .values()
            .filter(|m| m.admitted && Some(&m.id) != except)
            .map(|m| Effect::Send {
                to: m.session,
                message: message.clone(),
            })
            .collect()
    }

    /// A session presents verified join claims (the shell checked signature, expiry and
    /// conference).
    pub fn join(&mut self, session: SessionId, claims: &JoinClaims, now: DateTime<Utc>) -> Outcome {
        if self.sessions.contains_key(&session) {
            return Err(Refusal::new(ErrorCode::AlreadyJoined, "already joined"));
        }
        if self.excluded_tokens.contains(&claims.jti)
            || self.excluded_identities.contains(&claims.sub)
        {
            return Err(Refusal::new(
                ErrorCode::Excluded,
                "you were excluded from this meeting",
            ));
        }
        if let Some(ended_at) = self.ended_at {
            if claims.iat <= ended_at.timestamp() {
                return Err(Refusal::new(ErrorCode::Ended, "the meeting has ended"));
            }
            // A token issued after the end opens the room again.
            self.ended_at = None;
        }
        if let Some(exp) = DateTime::<Utc>::from_timestamp(claims.exp, 0) {
            self.remember_until = self.remember_until.max(exp);
        }
        self.apply_settings(&claims.room);
        self.meeting_id = Some(claims.mid.clone());

        let mut effects = Vec::new();
        let existing = self.by_identity.get(&claims.sub).cloned();
        self.check_seat(claims, existing.as_ref())?;

        let id = match existing {
            Some(id) => {
                // Reconnect: the newer session wins, the old one's media goes.
                if let Some(old) = self.members.get(&id).map(|m| m.session) {
                    effects.push(Effect::Close {
                        session: old,
                        reason: CloseReason::Replaced,
                    });
                    effects.extend(self.drop_media_of(&id, now));
                    self.sessions.remove(&old);
                }
                id
            }
            None => {
                self.next_participant += 1;
                let id = ParticipantId(format!("p{}", self.next_participant));
                self.by_identity.insert(claims.sub.clone(), id.clone());
                id
            }
        };
        let previous = self.members.get(&id);
        let was_admitted = previous.is_some_and(|m| m.admitted);
        let role = previous.map_or(claims.role, |m| m.role);
        // A reconnect keeps what its buckets hold: reconnecting is no way around the limits.
        let (chat_bucket, control_bucket) = previous.map_or_else(
            || {
                (
                    TokenBucket::new(self.limits.chat_rate),
                    TokenBucket::new(self.limits.control_rate),
                )
            },
            |m| (m.chat_bucket.clone(), m.control_bucket.clone()),
        );
        let microphone_blocked = self.blocks.contains_key(&claims.sub);
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                session,
                identity: claims.sub.clone(),
                jti: claims.jti.clone(),
                issued: claims.iat,
                epoch: claims.ep,
                name: claims.name.clone(),
                role,
                level: claims.level,
                owner: claims.owner,
                admitted: false,
                microphone_blocked,
                announced: HashMap::new(),
                guest: is_guest(claims),
                client: claims.cli.clone(),
                chat_bucket,
                control_bucket,
            },
        );
        self.sessions.insert(session, id.clone());

        if !claims.owner && !self.allow_join_without_owner && !self.owner_present() {
            if was_admitted {
                effects.extend(self.broadcast(
                    &ServerMessage::ParticipantLeft {
                        participant: id.clone(),
                        reason: CloseReason::Replaced,
                    },
                    Some(&id),
                ));
            }
            effects.push(Effect::Send {
                to: session,
                message: ServerMessage::Waiting,
            });
            return Ok(effects);
        }
        effects.extend(self.admit(&id, was_admitted, now));
        if claims.owner {
            let waiting: Vec<ParticipantId> = self
                .members
                .values()
                .filter(|m| !m.admitted)
                .map(|m| m.id.clone())
                .collect();
            for waiter in waiting {
                effects.extend(self.admit(&waiter, false, now));
            }
        }
        Ok(effects)
    }

    /// Takes the settings of a token whose definition is newer than the one applied: an old
    /// token (valid for minutes) must not undo an edit for everyone.
    fn apply_settings(&mut self, settings: &proto::RoomSettings) {
        if self
            .settings_revision
            .is_some_and(|applied| settings.revision <= applied)
        {
            return;
        }
        self.settings_revision = Some(settings.revision);
        self.max_participants = settings
            .max_participants
            .unwrap_or(self.limits.default_max_participants);
        self.allow_join_without_owner = settings.allow_join_without_owner;
        self.media = settings.media;
        self.recording_allowed = settings.recording_allowed;
        if settings.topic.is_some() {
            self.topic.clone_from(&settings.topic);
        }
    }

    /// Whether the joiner gets a seat. People waiting for the owner hold seats, but never the
    /// owner's: while the room waits, one seat stays free for the owner, and the owner is
    /// refused only when the admitted people fill the room. A guest's client network holds at
    /// most [`RoomLimits::guest_seats_per_client`] guest seats, so that one guest cannot take
    /// every seat with fresh guest IDs.
    fn check_seat(
        &self,
        claims: &JoinClaims,
        existing: Option<&ParticipantId>,
    ) -> Result<(), Refusal> {
        let others = || {
            self.members
                .values()
                .filter(move |m| Some(&m.id) != existing)
        };
        let max = self.max_participants as usize;
        let full = if claims.owner {
            others().filter(|m| m.admitted).count() >= max
        } else {
            let owner_seat = usize::from(!self.allow_join_without_owner && !self.owner_present());
            others().count() + owner_seat >= max
        };
        if full {
            return Err(Refusal::new(
                ErrorCode::RoomFull,
                format!(
                    "the meeting is full ({} participants)",
                    self.max_participants
                ),
            ));
        }
        let limit = self.limits.guest_seats_per_client;
        if limit > 0
            && is_guest(claims)
            && let Some(client) = &claims.cli
            && others()
                .filter(|m| m.guest && m.client.as_ref() == Some(client))
                .count()
                >= limit
        {
            return Err(Refusal::new(
                ErrorCode::TooManyGuests,
                format!(
                    "{limit} guests from your network are in this meeting already; more cannot join from it"
                ),
            ));
        }
        Ok(())
    }

    fn admit(&mut self, id: &ParticipantId, rejoin: bool, now: DateTime<Utc>) -> Vec<Effect> {
        let Some(member) = self.members.get_mut(id) else {
            return Vec::new();
        };
        member.admitted = true;
        let member = member.clone();
        let mut effects = vec![
            Effect::Admit {
                session: member.session,
                participant: id.clone(),
            },
            Effect::Send {
                to: member.session,
                message: ServerMessage::Joined {
                    you: id.clone(),
                    role: member.role,
                    grants: member.grants(),
                    participants: self
                        .members
                        .values()
                        .filter(|m| m.admitted)
                        .map(Member::info)
                        .collect(),
                    tracks: self.tracks.values().map(|t| t.info.clone()).collect(),
                    chat: self
                        .chat
                        .iter()
                        .filter(|c| c.to.is_none() || c.to.as_ref() == Some(id) || &c.from == id)
                        .cloned()
                        .collect(),
                    recording: self.recording.is_some(),
                    audio_only: self.media == Media::AudioOnly,
                    presentation: self.presentation.clone(),
                    speakers: self
                        .spoke
                        .iter()
                        .filter(|p| self.members.get(*p).is_some_and(|m| m.admitted))
                        .cloned()
                        .collect(),
                    active_speaker: self.speaker.current().cloned(),
                },
            },
        ];
        let announce = if rejoin {
            ServerMessage::ParticipantUpdated {
                participant: member.info(),
            }
        } else {
            ServerMessage::ParticipantJoined {
                participant: member.info(),
            }
        };
        effects.extend(self.broadcast(&announce, Some(id)));
        let tracks: Vec<(TrackId, TrackKind)> = self
            .tracks
            .values()
            .map(|t| (t.info.id.clone(), t.info.kind))
            .collect();
        for (track, kind) in tracks {
            effects.extend(self.subscribe(id, member.session, &track, kind, now));
        }
        if !rejoin {
            effects.push(self.report(
                RoomEvent::Joined {
                    identity: member.identity.clone(),
                    display_name: member.name.clone(),
                },
                now,
            ));
            effects.extend(self.record(
                now,
                EventKind::Join {
                    identity: member.identity.clone(),
                    name: member.name.clone(),
                },
            ));
        }
        effects
    }

    /// The effect that keeps `what` in the running recording's events, if one runs.
    pub(super) fn record(&self, now: DateTime<Utc>, what: EventKind) -> Option<Effect> {
        self.recording
            .as_ref()
            .map(|_| Effect::RecordEvent(Event::new(now, what)))
    }

    /// The active speaker changed: everyone is told, the recording keeps it, and so does the
    /// list of recent speakers a newcomer is given.
    fn speaker_changed(
        &mut self,
        change: Option<ParticipantId>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        if let Some(speaker) = &change {
            self.spoke.retain(|p| p != speaker);
            self.spoke.push_front(speaker.clone());
            self.spoke.truncate(MAX_RECENT_SPEAKERS);
        }
        let identity = change
            .as_ref()
            .and_then(|id| self.members.get(id))
            .map(|m| m.identity.clone());
        let mut effects = self.broadcast(
            &ServerMessage::ActiveSpeaker {
                participant: change,
            },
            None,
        );
        effects.extend(self.record(now, EventKind::Speaker { identity }));
        effects
    }

    fn subscribe(
        &mut self,
        subscriber: &ParticipantId,
        session: SessionId,
        track: &TrackId,
        kind: TrackKind,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.subscriptions
            .insert((subscriber.clone(), track.clone()), VideoLayer::High);
        let mut effects = vec![Effect::Subscribe {
            session,
            track: track.clone(),
            kind,
        }];
        if kind == TrackKind::Video {
            effects.extend(self.keyframe_request(track, now));
        }
        effects
    }

    /// Removes the participant's tracks and subscriptions (their connections are gone).
    fn drop_media_of(&mut self, id: &ParticipantId, now: DateTime<Utc>) -> Vec<Effect> {
        let own: Vec<TrackId> = self
            .tracks
            .values()
            .filter(|t| &t.info.participant == id)
            .map(|t| t.info.id.clone())
            .collect();
        let mut effects = Vec::new();
        for track in own {
            effects.extend(self.remove_track(&track));
        }
        self.subscriptions
            .retain(|(subscriber, _), _| subscriber != id);
        self.speaker.forget(id);
        if self.speaker.current() == Some(id)
            && let Some(change) = self.speaker.evaluate(now)
        {
            effects.extend(self.speaker_changed(change, now));
        }
        effects
    }

    fn remove_track(&mut self, track: &TrackId) -> Vec<Effect> {
        let Some(removed) = self.tracks.remove(track) else {
            return Vec::new();
        };
        self.keyframes.forget(track);
        if let Some(member) = self.members.get_mut(&removed.info.participant) {
            member.announced.remove(&removed.client_id);
        }
        let mut effects = Vec::new();
        let subscribers: Vec<ParticipantId> = self
            .subscriptions
            .keys()
            .filter(|(_, t)| t == track)
            .map(|(p, _)| p.clone())
            .collect();
        for subscriber in subscribers {
            self.subscriptions
                .remove(&(subscriber.clone(), track.clone()));
            if let Some(member) = self.members.get(&subscriber) {
                effects.push(Effect::Unsubscribe {
                    session: member.session,
                    track: track.clone(),
                });
            }
        }
        effects.push(Effect::TrackClosed {
            track: track.clone(),
        });
        effects.extend(self.broadcast(
            &ServerMessage::TrackUnpublished {
                track: track.clone(),
            },
            Some(&removed.info.participant),
        ));
        effects
    }

    /// The session ended (left, vanished, or closed by the shell). Idempotent; a session that
    /// was already replaced changes nothing.
    pub fn leave(
        &mut self,
        session: SessionId,
        reason: CloseReason,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let Some(id) = self.sessions.remove(&session) else {
            return Vec::new();
        };
        let Some(member) = self.members.remove(&id) else {
            return Vec::new();
        };
        // Put it back for the media clean-up, which looks members up.
        self.members.insert(id.clone(), member.clone());
        let mut effects = self.drop_media_of(&id, now);
        self.members.remove(&id);
        effects.extend(self.presenter_gone(&id, now));
        if member.admitted {
            effects.extend(self.broadcast(
                &ServerMessage::ParticipantLeft {
                    participant: id.clone(),
                    reason,
                },
                None,
            ));
            effects.push(self.report(
                RoomEvent::Left {
                    identity: member.identity.clone(),
                },
                now,
            ));
            effects.extend(self.record(
                now,
                EventKind::Leave {
                    identity: member.identity.clone(),
                    name: member.name.clone(),
                },
            ));
            if self.admitted() == 0 {
                // Nobody is left to record.
                effects.extend(self.stop_recording(None, StopReason::Ended, now));
            }
        }
        effects
    }

    /// Takes one control action (publish, unpublish, mute, moderation) from the member's
    /// bucket.
    fn take_control(&mut self, id: &ParticipantId, now: DateTime<Utc>) -> Result<(), Refusal> {
        match self.members.get_mut(id) {
            Some(member) => member
                .control_bucket
                .take(now)
                .map_err(|wait| rate_limited("publish, mute or moderation actions", wait)),
            None => Ok(()),
        }
    }

    /// Announce a track before its media arrives.
    pub fn publish(
        &mut self,
        session: SessionId,
        client_track: &str,
        source: TrackSource,
        muted: bool,
        now: DateTime<Utc>,
    ) -> Outcome {
        let member = self.admitted_member(session)?;
        if client_track.is_empty() || client_track.len() > MAX_TRACK_ID_BYTES {
            return Err(Refusal::new(
                ErrorCode::InvalidTrackId,
                format!("a track ID holds 1 to {MAX_TRACK_ID_BYTES} bytes"),
            ));
        }
        let right = match source {
            TrackSource::Microphone | TrackSource::Camera => Right::PublishMedia,
            TrackSource::Screen | TrackSource::ScreenAudio => Right::Present,
        };
        if !member.grants().allows(right) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!(
                    "a {} may not share the screen; ask a moderator to make you a speaker",
                    member.role.as_str()
                ),
            ));
        }
        if self.media == Media::AudioOnly && source.kind() == TrackKind::Video {
            return Err(Refusal::new(
                ErrorCode::AudioOnly,
                "this meeting is audio only",
            ));
        }
        match member.announced.get(client_track) {
            // A live track keeps its room ID, its state and with it any block: announcing it
            // again changes nothing (mute goes through `muteTrack`).
            Some(live) if live.track.is_some() => {
                return if live.source == source {
                    Ok(Vec::new())
                } else {
                    Err(Refusal::new(
                        ErrorCode::Forbidden,
                        "this track is published already with another source; unpublish it first",
                    ))
                };
            }
            Some(_) => {}
            None if member.announced.len() >= self.limits.max_tracks_per_participant => {
                return Err(Refusal::new(
                    ErrorCode::TooManyTracks,
                    format!(
                        "at most {} tracks per participant; unpublish one first",
                        self.limits.max_tracks_per_participant
                    ),
                ));
            }
            None => {}
        }
        let muted = muted || (source == TrackSource::Microphone && member.microphone_blocked);
        let id = member.id.clone();
        self.take_control(&id, now)?;
        if let Some(member) = self.members.get_mut(&id) {
            member.announced.insert(
                client_track.to_owned(),
                Announced {
                    source,
                    muted,
                    track: None,
                },
            );
        }
        Ok(Vec::new())
    }

    /// Media of an announced track arrived on the publisher connection. Returns the room's
    /// track ID and the effects; a refusal means the shell must not forward it.
    pub fn media_arrived(
        &mut self,
        session: SessionId,
        client_track: &str,
        kind: TrackKind,
        now: DateTime<Utc>,
    ) -> Result<(TrackId, Vec<Effect>), Refusal> {
        let member = self.admitted_member(session)?;
        if self.media == Media::AudioOnly && kind == TrackKind::Video {
            return Err(Refusal::new(
                ErrorCode::AudioOnly,
                "this meeting is audio only",
            ));
        }
        let Some(announced) = member.announced.get(client_track) else {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "announce a track with `publish` before offering it",
            ));
        };
        if announced.source.kind() != kind {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the track's kind does not match its announced source",
            ));
        }
        if let Some(existing) = &announced.track {
            return Ok((existing.clone(), Vec::new()));
        }
        let (source, muted) = (announced.source, announced.muted);
        let publisher = member.id.clone();
        self.next_track += 1;
        let id = TrackId(format!("t{}", self.next_track));
        let info = TrackInfo {
            id: id.clone(),
            participant: publisher.clone(),
            kind,
            source,
            muted,
        };
        if let Some(member) = self.members.get_mut(&publisher)
            && let Some(announced) = member.announced.get_mut(client_track)
        {
            announced.track = Some(id.clone());
        }
        self.tracks.insert(
            id.clone(),
            Track {
                info: info.clone(),
                client_id: client_track.to_owned(),
            },
        );
        let mut effects = vec![Effect::SetForwarding {
            track: id.clone(),
            enabled: !info.muted,
        }];
        effects.extend(self.broadcast(
            &ServerMessage::TrackPublished {
                track: info.clone(),
            },
            None,
        ));
        let subscribers: Vec<(ParticipantId, SessionId)> = self
            .members
            .values()
            .filter(|m| m.admitted && m.id != publisher)
            .map(|m| (m.id.clone(), m.session))
            .collect();
        for (subscriber, session) in subscribers {
            effects.extend(self.subscribe(&subscriber, session, &id, kind, now));
        }
        Ok((id, effects))
    }

    /// Stop publishing an announced track.
    pub fn unpublish(
        &mut self,
        session: SessionId,
        client_track: &str,
        now: DateTime<Utc>,
    ) -> Outcome {
        let member = self.admitted_member(session)?;
        let Some(announced) = member.announced.get(client_track) else {
            return Err(Refusal::new(ErrorCode::UnknownTrack, "no such track"));
        };
        let track = announced.track.clone();
        let id = member.id.clone();
        self.take_control(&id, now)?;
        if let Some(member) = self.members.get_mut(&id) {
            member.announced.remove(client_track);
        }
        Ok(track.map(|t| self.remove_track(&t)).unwrap_or_default())
    }

    /// Mute or unmute one's own track.
    pub fn mute_track(
        &mut self,
        session: SessionId,
        client_track: &str,
        muted: bool,
        now: DateTime<Utc>,
    ) -> Outcome {
        let member = self.admitted_member(session)?;
        let Some(announced) = member.announced.get(client_track) else {
            return Err(Refusal::new(ErrorCode::UnknownTrack, "no such track"));
        };
        if !muted && announced.source == TrackSource::Microphone && member.microphone_blocked {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "your microphone was muted; wait until you are allowed to speak",
            ));
        }
        let track = announced.track.clone();
        let id = member.id.clone();
        self.take_control(&id, now)?;
        if let Some(announced) = self
            .members
            .get_mut(&id)
            .and_then(|m| m.announced.get_mut(client_track))
        {
            announced.muted = muted;
        }
        Ok(track.map(|t| self.set_muted(&t, muted)).unwrap_or_default())
    }

    fn set_muted(&mut self, track: &TrackId, muted: bool) -> Vec<Effect> {
        let Some(entry) = self.tracks.get_mut(track) else {
            return Vec::new();
        };
        if entry.info.muted == muted {
            return Vec::new();
        }
        entry.info.muted = muted;
        let mut effects = vec![Effect::SetForwarding {
            track: track.clone(),
            enabled: !muted,
        }];
        effects.extend(self.broadcast(
            &ServerMessage::TrackMuted {
                track: track.clone(),
                muted,
            },
            None,
        ));
        effects
    }

    fn target(&self, participant: &ParticipantId) -> Result<&Member, Refusal> {
        self.members
            .get(participant)
            .ok_or_else(|| Refusal::new(ErrorCode::UnknownParticipant, "no such participant"))
    }

    /// Checks that the member of `session`, holding `right`, may act against `participant`:
    /// nobody acts against the owner, and nobody against a higher rank. Returns the actor's
    /// ID and rank.
    fn may_act_against(
        &self,
        session: SessionId,
        right: Right,
        participant: &ParticipantId,
    ) -> Result<(ParticipantId, Rank), Refusal> {
        let by = self.require(session, right)?;
        let target = self.target(participant)?;
        if target.id != by.id {
            if target.owner {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "nobody can do this to the meeting's owner",
                ));
            }
            if target.rank() > by.rank() {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!(
                        "a {} cannot do this to a {}",
                        by.role.as_str(),
                        target.role.as_str()
                    ),
                ));
            }
        }
        Ok((by.id.clone(), by.rank()))
    }

    /// Mute someone's microphone and keep it muted, or allow them to speak again. The block
    /// is kept by identity, so it holds when they leave and rejoin; only the rank that set it
    /// (or a higher one) lifts it, and never the blocked person themselves.
    pub fn block_microphone(
        &mut self,
        session: SessionId,
        participant: &ParticipantId,
        blocked: bool,
        now: DateTime<Utc>,
    ) -> Outcome {
        let (by, rank) = self.may_act_against(session, Right::ManageMicrophones, participant)?;
        let target = self.target(participant)?;
        let identity = target.identity.clone();
        if !blocked && let Some(block) = self.blocks.get(&identity) {
            if &by == participant {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "you cannot allow yourself to speak; ask someone else",
                ));
            }
            if block.by > rank {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "someone of a higher role muted this microphone; only they can allow it again",
                ));
            }
        }
        self.take_control(&by, now)?;
        let target = self.target(participant)?;
        let target_session = target.session;
        let microphones: Vec<TrackId> = target
            .announced
            .values()
            .filter(|a| a.source == TrackSource::Microphone)
            .filter_map(|a| a.track.clone())
            .collect();
        if blocked {
            let block = self.blocks.entry(identity).or_insert(Block { by: rank });
            block.by = block.by.max(rank);
        } else {
            self.blocks.remove(&identity);
        }
        if let Some(member) = self.members.get_mut(participant) {
            member.microphone_blocked = blocked;
            if blocked {
                for announced in member.announced.values_mut() {
                    if announced.source == TrackSource::Microphone {
                        announced.muted = true;
                    }
                }
            }
        }
        let mut effects = Vec::new();
        if blocked {
            for track in microphones {
                effects.extend(self.set_muted(&track, true));
            }
        }
        effects.push(Effect::Send {
            to: target_session,
            message: ServerMessage::MicrophoneBlocked { blocked, by },
        });
        if let Some(member) = self.members.get(participant) {
            effects.extend(self.broadcast(
                &ServerMessage::ParticipantUpdated {
                    participant: member.info(),
                },
                None,
            ));
        }
        Ok(effects)
    }

    /// Make someone a speaker, listener or moderator. Only the owner and administrators make
    /// moderators or take the role away from one.
    pub fn set_role(
        &mut self,
        session: SessionId,
        participant: &ParticipantId,
        role: Role,
        now: DateTime<Utc>,
    ) -> Outcome {
        let (by, rank) = self.may_act_against(session, Right::ChangeRoles, participant)?;
        let target = self.target(participant)?;
        if (role == Role::Moderator || target.role == Role::Moderator)
            && role != target.role
            && rank < Rank::OwnerOrAdmin
        {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the owner and administrators make moderators or take the role away",
            ));
        }
        self.take_control(&by, now)?;
        let Some(member) = self.members.get_mut(participant) else {
            return Err(Refusal::new(
                ErrorCode::UnknownParticipant,
                "no such participant",
            ));
        };
        member.role = role;
        let member = member.clone();
        let grants = member.grants();
        let mut effects = vec![Effect::Send {
            to: member.session,
            message: ServerMessage::RoleChanged { role, grants },
        }];
        effects.extend(self.broadcast(
            &ServerMessage::ParticipantUpdated {
                participant: member.info(),
            },
            None,
        ));
        if !grants.allows(Right::Present) {
            // Demoted below speaker: the screen share stops.
            let presenting: Vec<TrackId> = member
                .announced
                .values()
                .filter(|a| matches!(a.source, TrackSource::Screen | TrackSource::ScreenAudio))
                .filter_map(|a| a.track.clone())
                .collect();
            if let Some(member) = self.members.get_mut(participant) {
                member.announced.retain(|_, a| {
                    !matches!(a.source, TrackSource::Screen | TrackSource::ScreenAudio)
                });
            }
            for track in presenting {
                effects.extend(self.remove_track(&track));
            }
            effects.extend(self.presenter_gone(participant, now));
        }
        Ok(effects)
    }

    /// Exclude someone: their session closes and neither their token nor their identity may
    /// join again. Nobody excludes the owner or someone of a higher rank.
    pub fn exclude(
        &mut self,
        session: SessionId,
        participant: &ParticipantId,
        now: DateTime<Utc>,
    ) -> Outcome {
        let (by, _) = self.may_act_against(session, Right::Exclude, participant)?;
        if &by == participant {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "you cannot exclude yourself",
            ));
        }
        let target = self.target(participant)?;
        let (target_session, jti, identity, address) = (
            target.session,
            target.jti.clone(),
            target.identity.clone(),
            target.client.clone(),
        );
        self.excluded_tokens.insert(jti);
        self.excluded_identities.insert(identity.clone());
        // The conference service keeps it beyond this pod (restart, failover) and refuses
        // the identity, and a guest's network, at `/join`.
        let mut effects = vec![
            self.report(RoomEvent::Excluded { identity, address }, now),
            Effect::Close {
                session: target_session,
                reason: CloseReason::Excluded,
            },
        ];
        effects.extend(self.leave(target_session, CloseReason::Excluded, now));
        Ok(effects)
    }

    /// The conference service excluded `identity` (the pod that excluded it restarted, or the
    /// meeting moved here): it may not join again and its session closes.
    pub fn exclude_identity(&mut self, identity: &str, now: DateTime<Utc>) -> Vec<Effect> {
        // Later joins are refused by the SFU's revocation list, which outlives this room.
        self.excluded_identities.insert(identity.to_owned());
        self.close_identity(identity, CloseReason::Excluded, now, |_| true)
    }

    /// An account changed (level, disabled, password reset): its sessions joined with an older
    /// token epoch close with `revoked` (the portal joins again and gets the new role, or is
    /// turned away).
    pub fn revoke_account(
        &mut self,
        identity: &str,
        epoch: u32,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.close_identity(identity, CloseReason::Revoked, now, |m| m.epoch < epoch)
    }

    /// A meeting ended at `at` as the conference service knows it (another pod ended it, or
    /// this pod restarted since): sessions joined with tokens issued up to then close.
    pub fn ended_elsewhere(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Effect> {
        if self.ended_at.is_some_and(|ended| ended >= at) {
            return Vec::new();
        }
        let stale: Vec<SessionId> = self
            .members
            .values()
            .filter(|m| m.issued <= at.timestamp())
            .map(|m| m.session)
            .collect();
        let mut effects = Vec::new();
        for session in stale {
            effects.push(Effect::Close {
                session,
                reason: CloseReason::Ended,
            });
            effects.extend(self.leave(session, CloseReason::Ended, now));
        }
        effects
    }

    fn close_identity(
        &mut self,
        identity: &str,
        reason: CloseReason,
        now: DateTime<Utc>,
        applies: impl Fn(&Member) -> bool,
    ) -> Vec<Effect> {
        let Some(member) = self
            .by_identity
            .get(identity)
            .and_then(|id| self.members.get(id))
            .filter(|m| applies(m))
        else {
            return Vec::new();
        };
        let session = member.session;
        let mut effects = vec![Effect::Close { session, reason }];
        effects.extend(self.leave(session, reason, now));
        effects
    }

    /// End the meeting for everyone.
    pub fn end(&mut self, session: SessionId, now: DateTime<Utc>) -> Outcome {
        self.require(session, Right::EndMeeting)?;
        Ok(self.end_now(now))
    }

    /// Ends the room without a rights check (the shell's shutdown uses
    /// [`Room::close_all`] instead; this is the moderator's end).
    fn end_now(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        self.ended_at = Some(now);
        let mut effects = Vec::new();
        let tracks: Vec<TrackId> = self.tracks.keys().cloned().collect();
        for track in tracks {
            self.keyframes.forget(&track);
            effects.push(Effect::TrackClosed { track });
        }
        self.tracks.clear();
        self.subscriptions.clear();
        for member in self.members.values() {
            effects.push(Effect::Close {
                session: member.session,
                reason: CloseReason::Ended,
            });
        }
        self.members.clear();
        self.sessions.clear();
        effects.extend(self.stop_recording(None, StopReason::Ended, now));
        self.presentation = None;
        effects.push(self.report(RoomEvent::Ended, now));
        effects
    }

    /// Closes every session with `reason` (SFU shutdown), reporting each leave.
    pub fn close_all(&mut self, reason: CloseReason, now: DateTime<Utc>) -> Vec<Effect> {
        let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
        let mut effects = Vec::new();
        for session in sessions {
            effects.push(Effect::Close { session, reason });
            effects.extend(self.leave(session, reason, now));
        }
        effects
    }

    /// Start or stop recording. Only moderators of level moderatorPlus may, and only when the
    /// conference allows recording; `id` names a recording that starts (the shell draws it).
    /// Asking for what already is changes nothing.
    pub fn set_recording(
        &mut self,
        session: SessionId,
        active: bool,
        id: RecordingId,
        now: DateTime<Utc>,
    ) -> Outcome {
        let member = self.admitted_member(session)?;
        if !member.grants().allows(Right::Record) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only moderators with the account level moderatorPlus may start or stop a recording",
            ));
        }
        if active && !self.recording_allowed {
            return Err(Refusal::new(
                ErrorCode::RecordingNotAllowed,
                "recording is not allowed for this conference; its owner can allow it in the conference's settings",
            ));
        }
        if active == self.recording.is_some() {
            return Ok(Vec::new());
        }
        let by = member.id.clone();
        let person = Person {
            identity: member.identity.clone(),
            name: member.name.clone(),
        };
        self.take_control(&by, now)?;
        let mut effects = self.broadcast(
            &ServerMessage::Recording {
                active,
                by: by.clone(),
            },
            None,
        );
        if active {
            self.recording = Some((id.clone(), person.clone()));
            effects.push(Effect::StartRecording(RecordingInfo::new(
                id.clone(),
                self.conference.clone(),
                self.meeting_id.clone(),
                self.topic.clone(),
                person.clone(),
                now,
            )));
            effects.push(self.report(
                RoomEvent::RecordingStarted {
                    recording: id,
                    identity: person.identity,
                    display_name: person.name,
                },
                now,
            ));
        } else {
            effects.extend(self.stop_recording(Some(person), StopReason::Stopped, now));
        }
        Ok(effects)
    }

    /// Whether a recording runs, and its ID.
    pub fn recording(&self) -> Option<&RecordingId> {
        self.recording.as_ref().map(|(id, _)| id)
    }

    /// A recorded track's source and publisher.
    pub fn recorded_track(&self, track: &TrackId) -> Option<(TrackSource, Person)> {
        let track = self.tracks.get(track)?;
        let member = self.members.get(&track.info.participant)?;
        Some((
            track.info.source,
            Person {
                identity: member.identity.clone(),
                name: member.name.clone(),
            },
        ))
    }

    fn stop_recording(
        &mut self,
        by: Option<Person>,
        reason: StopReason,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let Some((id, _)) = self.recording.take() else {
            return Vec::new();
        };
        vec![Effect::StopRecording {
            recording: id.clone(),
            stopped: Stopped::new(now, by, reason),
            report: RoomReport {
                conference: self.conference.clone(),
                at: rfc3339(now),
                participants: self.admitted(),
                event: RoomEvent::RecordingStopped { recording: id },
            },
        }]
    }

    /// A chat message to everyone, or privately to one participant.
    pub fn chat(
        &mut self,
        session: SessionId,
        text: &str,
        to: Option<&ParticipantId>,
        now: DateTime<Utc>,
    ) -> Outcome {
        let id = self.require(session, Right::Chat)?.id.clone();
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_CHAT_BYTES {
            return Err(Refusal::new(
                ErrorCode::ChatTooLong,
                format!("a chat message holds 1 to {MAX_CHAT_BYTES} bytes"),
            ));
        }
        if let Some(member) = self.members.get_mut(&id) {
            member
                .chat_bucket
                .take(now)
                .map_err(|wait| rate_limited("chat messages", wait))?;
        }
        let member = self.require(session, Right::Chat)?;
        let message = ChatMessage {
            from: member.id.clone(),
            from_name: member.name.clone(),
            at: rfc3339(now),
            text: text.to_owned(),
            to: to.cloned(),
        };
        let sender = member.session;
        let effects = match to {
            Some(recipient) => {
                let target = self.target(recipient)?;
                if !target.admitted {
                    return Err(Refusal::new(
                        ErrorCode::UnknownParticipant,
                        "no such participant",
                    ));
                }
                let mut effects = vec![Effect::Send {
                    to: target.session,
                    message: ServerMessage::Chat {
                        message: message.clone(),
                    },
                }];
                if target.session != sender {
                    effects.push(Effect::Send {
                        to: sender,
                        message: ServerMessage::Chat {
                            message: message.clone(),
                        },
                    });
                }
                effects
            }
            None => self.broadcast(
                &ServerMessage::Chat {
                    message: message.clone(),
                },
                None,
            ),
        };
        let mut effects = effects;
        if message.to.is_none() {
            let identity = self
                .members
                .get(&message.from)
                .map(|m| m.identity.clone())
                .unwrap_or_default();
            effects.extend(self.record(
                now,
                EventKind::Chat {
                    from: message.from_name.clone(),
                    identity,
                    text: message.text.clone(),
                },
            ));
        }
        self.chat.push_back(message);
        while self.chat.len() > self.limits.chat_history {
            self.chat.pop_front();
        }
        Ok(effects)
    }

    /// Choose the simulcast layer of a subscription.
    pub fn set_video_layer(
        &mut self,
        session: SessionId,
        track: &TrackId,
        layer: VideoLayer,
    ) -> Outcome {
        let id = self.admitted_member(session)?.id.clone();
        match self.subscriptions.get_mut(&(id, track.clone())) {
            Some(current) => {
                *current = layer;
                Ok(vec![Effect::SetLayer {
                    session,
                    track: track.clone(),
                    layer,
                }])
            }
            None => Err(Refusal::new(
                ErrorCode::UnknownTrack,
                "not subscribed to this track",
            )),
        }
    }

    /// The highest simulcast layer `subscriber` asked for on `track` (`setVideoLayer`; the
    /// high one when it never asked).
    pub fn layer_cap(&self, subscriber: &ParticipantId, track: &TrackId) -> VideoLayer {
        self.subscriptions
            .get(&(subscriber.clone(), track.clone()))
            .copied()
            .unwrap_or(VideoLayer::High)
    }

    /// The publisher's session and the client's own ID of `track` (to tell the publisher which
    /// layers to send).
    pub fn publisher_of(&self, track: &TrackId) -> Option<(SessionId, String)> {
        let track = self.tracks.get(track)?;
        let member = self.members.get(&track.info.participant)?;
        Some((member.session, track.client_id.clone()))
    }

    /// Whether `track` is a camera (its tile is the one the active speaker's highlight and
    /// tile sizes are about).
    pub fn is_camera(&self, track: &TrackId) -> bool {
        self.tracks
            .get(track)
            .is_some_and(|t| t.info.source == TrackSource::Camera)
    }

    /// Whether `track` is a microphone (in a large room only the loudest are heard).
    pub fn is_microphone(&self, track: &TrackId) -> bool {
        self.tracks
            .get(track)
            .is_some_and(|t| t.info.source == TrackSource::Microphone)
    }

    /// The active speaker, if anyone speaks.
    pub fn active_speaker(&self) -> Option<&ParticipantId> {
        self.speaker.current()
    }

    /// A subscriber asked for a keyframe of `track` (PLI/FIR), or a subscription started.
    pub fn keyframe_request(&mut self, track: &TrackId, now: DateTime<Utc>) -> Vec<Effect> {
        if !self.tracks.contains_key(track) {
            return Vec::new();
        }
        match self.keyframes.request(track, now) {
            KeyframeDecision::Forward => vec![Effect::RequestKeyframe {
                track: track.clone(),
            }],
            KeyframeDecision::Deferred(_) => Vec::new(),
        }
    }

    /// The loudest audio level (RFC 6464) of a microphone track over the last interval.
    pub fn audio_level(&mut self, track: &TrackId, level: u8, now: DateTime<Utc>) {
        if let Some(track) = self.tracks.get(track)
            && track.info.source == TrackSource::Microphone
            && !track.info.muted
        {
            let participant = track.info.participant.clone();
            self.speaker.observe(&participant, level, now);
        }
    }

    /// Time passes: deferred keyframe requests, the active speaker.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self
            .keyframes
            .due(now)
            .into_iter()
            .filter(|t| self.tracks.contains_key(t))
            .map(|track| Effect::RequestKeyframe { track })
            .collect();
        if let Some(change) = self.speaker.evaluate(now) {
            effects.extend(self.speaker_changed(change, now));
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{MeetingId, RoomSettings};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(1_000_000) + TimeDelta::milliseconds(ms)
    }

    fn claims(sub: &str, role: Role, owner: bool) -> JoinClaims {
        JoinClaims {
            sub: sub.into(),
            name: sub.to_uppercase(),
            conf: ConferenceId::from("c1"),
            mid: MeetingId::from("123456789"),
            role,
            level: None,
            owner,
            room: RoomSettings {
                max_participants: Some(3),
                allow_join_without_owner: true,
                media: Media::AudioVideo,
                udp_ports: None,
                revision: 1,
                recording_allowed: true,
                topic: None,
            },
            aud: proto::token::JOIN_AUDIENCE.into(),
            iat: at(0).timestamp(),
            exp: at(0).timestamp() + 3600,
            jti: format!("jti-{sub}"),
            rid: None,
            ep: 0,
            cli: None,
            pod: None,
        }
    }

    fn room() -> Room {
        Room::new(ConferenceId::from("c1"), RoomLimits::default())
    }

    fn sent_to(effects: &[Effect], session: SessionId) -> Vec<&ServerMessage> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to, message } if *to == session => Some(message),
                _ => None,
            })
            .collect()
    }

    fn joined_id(effects: &[Effect], session: SessionId) -> ParticipantId {
        sent_to(effects, session)
            .into_iter()
            .find_map(|m| match m {
                ServerMessage::Joined { you, .. } => Some(you.clone()),
                _ => None,
            })
            .expect("joined")
    }

    const A: SessionId = SessionId(1);
    const B: SessionId = SessionId(2);
    const C: SessionId = SessionId(3);

    #[test]
    fn joining_admits_and_tells_the_others() {
        let mut room = room();
        let effects = room
            .join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        assert!(effects.contains(&Effect::Admit {
            session: A,
            participant: ParticipantId::from("p1")
        }));
        assert!(matches!(effects.last(), Some(Effect::Report(r)) if r.participants == 1));
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(1))
            .expect("join");
        assert!(sent_to(&effects, A).iter().any(|m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.display_name == "B")));
        assert_eq!(room.admitted(), 2);
    }

    #[test]
    fn the_room_refuses_joins_beyond_its_maximum() {
        let mut room = room();
        for (session, sub) in [(A, "a"), (B, "b"), (C, "c")] {
            room.join(session, &claims(sub, Role::Listener, false), at(0))
                .expect("join");
        }
        let refusal = room
            .join(SessionId(4), &claims("d", Role::Listener, false), at(0))
            .expect_err("full");
        assert_eq!(refusal.code, ErrorCode::RoomFull);
        // A reconnect of someone inside is not a new participant.
        room.join(SessionId(5), &claims("c", Role::Listener, false), at(1))
            .expect("reconnect");
    }

    #[test]
    fn people_wait_until_the_owner_arrives() {
        let mut room = room();
        let mut waiting = claims("b", Role::Listener, false);
        waiting.room.allow_join_without_owner = false;
        let effects = room.join(B, &waiting, at(0)).expect("join");
        assert_eq!(sent_to(&effects, B), vec![&ServerMessage::Waiting]);
        assert_eq!(room.admitted(), 0);
        assert_eq!(
            room.chat(B, "hi", None, at(1)).expect_err("waiting").code,
            ErrorCode::NotJoined
        );
        let mut owner = claims("a", Role::Moderator, true);
        owner.room.allow_join_without_owner = false;
        let effects = room.join(A, &owner, at(2)).expect("join");
        assert!(effects.contains(&Effect::Admit {
            session: B,
            participant: ParticipantId::from("p1")
        }));
        assert_eq!(room.admitted(), 2);
    }

    #[test]
    fn a_reconnect_replaces_the_old_session_and_keeps_the_id() {
        let mut room = room();
        let first = room
            .join(A, &claims("a", Role::Listener, false), at(0))
            .expect("join");
        let id = joined_id(&first, A);
        room.publish(A, "mic", TrackSource::Microphone, false, at(0))
            .expect("publish");
        room.media_arrived(A, "mic", TrackKind::Audio, at(1))
            .expect("media");
        let again = room
            .join(B, &claims("a", Role::Listener, false), at(2))
            .expect("rejoin");
        assert!(again.contains(&Effect::Close {
            session: A,
            reason: CloseReason::Replaced
        }));
        assert!(
            again
                .iter()
                .any(|e| matches!(e, Effect::TrackClosed { .. }))
        );
        assert_eq!(joined_id(&again, B), id);
        assert!(
            room.leave(A, CloseReason::Gone, at(3)).is_empty(),
            "the old session is gone"
        );
        assert_eq!(room.admitted(), 1);
    }

    #[test]
    fn listener_cannot_share_the_screen_but_a_speaker_can() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        let b = joined_id(&effects, B);
        assert_eq!(
            room.publish(B, "screen", TrackSource::Screen, false, at(0))
                .expect_err("listener")
                .code,
            ErrorCode::Forbidden
        );
        room.publish(B, "cam", TrackSource::Camera, false, at(0))
            .expect("camera is fine");
        let effects = room.set_role(A, &b, Role::Speaker, at(0)).expect("promote");
        assert!(sent_to(&effects, B).iter().any(|m| matches!(m, ServerMessage::RoleChanged { role: Role::Speaker, grants } if grants.present)));
        room.publish(B, "screen", TrackSource::Screen, false, at(0))
            .expect("speaker shares");
        let (track, _) = room
            .media_arrived(B, "screen", TrackKind::Video, at(1))
            .expect("media");
        // Demoted again: the share stops.
        let effects = room.set_role(A, &b, Role::Listener, at(0)).expect("demote");
        assert!(effects.contains(&Effect::TrackClosed { track }));
        assert_eq!(
            room.set_role(B, &b, Role::Moderator, at(0))
                .expect_err("listener")
                .code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn unannounced_or_mismatched_media_is_refused() {
        let mut room = room();
        room.join(A, &claims("a", Role::Listener, false), at(0))
            .expect("join");
        assert_eq!(
            room.media_arrived(A, "x", TrackKind::Video, at(0))
                .expect_err("unannounced")
                .code,
            ErrorCode::Forbidden
        );
        room.publish(A, "mic", TrackSource::Microphone, false, at(0))
            .expect("publish");
        assert!(
            room.media_arrived(A, "mic", TrackKind::Video, at(0))
                .is_err()
        );
    }

    #[test]
    fn an_audio_only_room_refuses_video() {
        let mut room = room();
        let mut audio_only = claims("a", Role::Moderator, true);
        audio_only.room.media = Media::AudioOnly;
        room.join(A, &audio_only, at(0)).expect("join");
        assert_eq!(
            room.publish(A, "cam", TrackSource::Camera, false, at(0))
                .expect_err("video")
                .code,
            ErrorCode::AudioOnly
        );
        room.publish(A, "mic", TrackSource::Microphone, false, at(0))
            .expect("audio");
        assert_eq!(
            room.media_arrived(A, "mic2", TrackKind::Video, at(0))
                .expect_err("video")
                .code,
            ErrorCode::AudioOnly
        );
    }

    #[test]
    fn new_tracks_are_forwarded_to_everyone_else_with_a_keyframe() {
        let mut room = room();
        room.join(A, &claims("a", Role::Listener, false), at(0))
            .expect("join");
        room.join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        room.publish(A, "cam", TrackSource::Camera, false, at(0))
            .expect("publish");
        let (track, effects) = room
            .media_arrived(A, "cam", TrackKind::Video, at(1))
            .expect("media");
        assert!(effects.contains(&Effect::Subscribe {
            session: B,
            track: track.clone(),
            kind: TrackKind::Video
        }));
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::Subscribe { session, .. } if *session == A))
        );
        assert!(effects.contains(&Effect::RequestKeyframe {
            track: track.clone()
        }));
        // A late joiner subscribes; the request is held back, then released by a tick.
        let effects = room
            .join(C, &claims("c", Role::Listener, false), at(100))
            .expect("join");
        assert!(effects.contains(&Effect::Subscribe {
            session: C,
            track: track.clone(),
            kind: TrackKind::Video
        }));
        assert!(!effects.contains(&Effect::RequestKeyframe {
            track: track.clone()
        }));
        assert!(room.tick(at(400)).is_empty());
        assert_eq!(
            room.tick(at(600)),
            vec![Effect::RequestKeyframe {
                track: track.clone()
            }]
        );
        // Leaving unsubscribes everyone from the publisher's tracks.
        let effects = room.leave(A, CloseReason::Left, at(700));
        assert!(effects.contains(&Effect::Unsubscribe {
            session: B,
            track: track.clone()
        }));
        assert!(effects.contains(&Effect::TrackClosed { track }));
        assert!(matches!(
            effects.last(),
            Some(Effect::Report(RoomReport {
                event: RoomEvent::Left { .. },
                participants: 2,
                ..
            }))
        ));
    }

    #[test]
    fn a_blocked_microphone_stays_muted_until_allowed() {
        let mut room = room();
        room.join(A, &claims("a", Role::Speaker, false), at(0))
            .expect("join");
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        let b = joined_id(&effects, B);
        room.publish(B, "mic", TrackSource::Microphone, false, at(0))
            .expect("publish");
        let (track, _) = room
            .media_arrived(B, "mic", TrackKind::Audio, at(1))
            .expect("media");
        assert_eq!(
            room.block_microphone(B, &ParticipantId::from("p1"), true, at(0))
                .expect_err("listener")
                .code,
            ErrorCode::Forbidden
        );
        let effects = room.block_microphone(A, &b, true, at(0)).expect("block");
        assert!(effects.contains(&Effect::SetForwarding {
            track: track.clone(),
            enabled: false
        }));
        assert_eq!(
            room.mute_track(B, "mic", false, at(0))
                .expect_err("blocked")
                .code,
            ErrorCode::Forbidden
        );
        room.block_microphone(A, &b, false, at(0)).expect("allow");
        let effects = room.mute_track(B, "mic", false, at(0)).expect("unmute");
        assert!(effects.contains(&Effect::SetForwarding {
            track,
            enabled: true
        }));
    }

    #[test]
    fn an_excluded_participant_cannot_return_with_the_same_token_or_identity() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        let b = joined_id(&effects, B);
        assert_eq!(
            room.exclude(B, &ParticipantId::from("p1"), at(1))
                .expect_err("listener")
                .code,
            ErrorCode::Forbidden
        );
        let effects = room.exclude(A, &b, at(1)).expect("exclude");
        assert!(effects.contains(&Effect::Close {
            session: B,
            reason: CloseReason::Excluded
        }));
        assert_eq!(room.admitted(), 1);
        let refusal = room
            .join(C, &claims("b", Role::Listener, false), at(2))
            .expect_err("excluded");
        assert_eq!(refusal.code, ErrorCode::Excluded);
        let mut other_identity = claims("b2", Role::Listener, false);
        other_identity.jti = "jti-b".into();
        assert_eq!(
            room.join(C, &other_identity, at(2))
                .expect_err("same token")
                .code,
            ErrorCode::Excluded
        );
        assert!(!room.can_forget(at(10)), "exclusions outlive the people");
    }

    #[test]
    fn an_exclusion_is_reported_with_the_guests_network_for_the_conference_service() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        let mut guest = claims("guest:g", Role::Listener, false);
        guest.cli = Some("203.0.113.7".into());
        let effects = room.join(B, &guest, at(0)).expect("join");
        let b = joined_id(&effects, B);
        let effects = room.exclude(A, &b, at(1)).expect("exclude");
        let reported: Vec<&RoomEvent> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Report(report) => Some(&report.event),
                _ => None,
            })
            .collect();
        assert_eq!(
            reported,
            vec![
                &RoomEvent::Excluded {
                    identity: "guest:g".into(),
                    address: Some("203.0.113.7".into()),
                },
                &RoomEvent::Left {
                    identity: "guest:g".into()
                },
            ]
        );
    }

    #[test]
    fn revocations_from_the_conference_service_close_the_sessions_they_name() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        let mut mia = claims("account:mia", Role::Speaker, false);
        mia.ep = 1;
        room.join(B, &mia, at(0)).expect("join");
        room.join(C, &claims("guest:g", Role::Listener, false), at(0))
            .expect("join");
        // An epoch the session already has changes nothing; a newer one closes it.
        assert!(room.revoke_account("account:mia", 1, at(1)).is_empty());
        let effects = room.revoke_account("account:mia", 2, at(1));
        assert!(effects.contains(&Effect::Close {
            session: B,
            reason: CloseReason::Revoked
        }));
        assert_eq!(room.admitted(), 2);
        // Excluded on another pod (or before this one restarted).
        let effects = room.exclude_identity("guest:g", at(2));
        assert!(effects.contains(&Effect::Close {
            session: C,
            reason: CloseReason::Excluded
        }));
        assert_eq!(
            room.join(C, &claims("guest:g", Role::Listener, false), at(3))
                .expect_err("excluded")
                .code,
            ErrorCode::Excluded
        );
        // Ended elsewhere: sessions with tokens issued up to the end close, later ones stay.
        let mut late = claims("guest:late", Role::Listener, false);
        late.iat = at(5_000).timestamp();
        room.join(SessionId(9), &late, at(5_000)).expect("join");
        let effects = room.ended_elsewhere(at(4), at(6_000));
        assert!(effects.contains(&Effect::Close {
            session: A,
            reason: CloseReason::Ended
        }));
        assert!(!effects.contains(&Effect::Close {
            session: SessionId(9),
            reason: CloseReason::Ended
        }));
        assert_eq!(room.admitted(), 1);
    }

    #[test]
    fn ending_closes_everyone_and_refuses_old_tokens() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        room.join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        assert_eq!(
            room.end(B, at(1)).expect_err("listener").code,
            ErrorCode::Forbidden
        );
        let effects = room.end(A, at(1000)).expect("end");
        assert!(effects.contains(&Effect::Close {
            session: A,
            reason: CloseReason::Ended
        }));
        assert!(effects.contains(&Effect::Close {
            session: B,
            reason: CloseReason::Ended
        }));
        assert!(matches!(
            effects.last(),
            Some(Effect::Report(RoomReport {
                event: RoomEvent::Ended,
                participants: 0,
                ..
            }))
        ));
        assert_eq!(
            room.join(C, &claims("b", Role::Listener, false), at(2000))
                .expect_err("ended")
                .code,
            ErrorCode::Ended
        );
        let mut fresh = claims("b", Role::Listener, false);
        fresh.iat = at(5000).timestamp();
        room.join(C, &fresh, at(5000))
            .expect("a new token after the end");
    }

    #[test]
    fn chat_keeps_history_for_late_joiners_and_private_messages_private() {
        let mut room = Room::new(
            ConferenceId::from("c1"),
            RoomLimits {
                chat_history: 2,
                ..RoomLimits::default()
            },
        );
        room.join(A, &claims("a", Role::Listener, false), at(0))
            .expect("join");
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        let b = joined_id(&effects, B);
        room.chat(A, "one", None, at(1)).expect("chat");
        room.chat(A, "two", None, at(2)).expect("chat");
        let effects = room.chat(A, "psst", Some(&b), at(3)).expect("chat");
        assert_eq!(sent_to(&effects, B).len(), 1);
        assert_eq!(sent_to(&effects, A).len(), 1);
        assert_eq!(
            room.chat(A, &"x".repeat(MAX_CHAT_BYTES + 1), None, at(4))
                .expect_err("long")
                .code,
            ErrorCode::ChatTooLong
        );
        assert_eq!(
            room.chat(A, "  ", None, at(4)).expect_err("empty").code,
            ErrorCode::ChatTooLong
        );
        let effects = room
            .join(C, &claims("c", Role::Listener, false), at(5))
            .expect("join");
        let history = sent_to(&effects, C)
            .into_iter()
            .find_map(|m| match m {
                ServerMessage::Joined { chat, .. } => Some(chat.clone()),
                _ => None,
            })
            .expect("joined");
        assert_eq!(
            history.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
            vec!["two"],
            "last 2 kept, private hidden"
        );
    }

    fn moderator_plus(sub: &str) -> JoinClaims {
        let mut plus = claims(sub, Role::Moderator, true);
        plus.level = Some(AccountLevel::ModeratorPlus);
        plus
    }

    fn rid() -> RecordingId {
        RecordingId::from("r1")
    }

    #[test]
    fn recording_needs_a_moderator_plus() {
        let mut room = room();
        room.join(A, &moderator_plus("a"), at(0)).expect("join");
        let mut moderator = claims("b", Role::Moderator, false);
        moderator.level = Some(AccountLevel::Moderator);
        room.join(B, &moderator, at(0)).expect("join");
        let refusal = room
            .set_recording(B, true, rid(), at(1))
            .expect_err("plain moderator");
        assert_eq!(refusal.code, ErrorCode::Forbidden);
        assert!(
            refusal.message.contains("moderatorPlus"),
            "{}",
            refusal.message
        );
        assert!(room.recording().is_none());
        let effects = room.set_recording(A, true, rid(), at(1)).expect("record");
        for session in [A, B] {
            assert!(
                sent_to(&effects, session)
                    .iter()
                    .any(|m| matches!(m, ServerMessage::Recording { active: true, .. })),
                "{session} sees the indicator"
            );
        }
        let info = effects
            .iter()
            .find_map(|e| match e {
                Effect::StartRecording(info) => Some(info.clone()),
                _ => None,
            })
            .expect("the shell starts recording");
        assert_eq!(info.started_by.identity, "a");
        assert_eq!(info.meeting_id, Some(MeetingId::from("123456789")));
        assert!(effects.iter().any(|e| matches!(e,
            Effect::Report(r) if matches!(&r.event, RoomEvent::RecordingStarted { identity, .. } if identity == "a"))));
        assert!(
            room.set_recording(A, true, RecordingId::from("r2"), at(2))
                .expect("again")
                .is_empty(),
            "a second start changes nothing"
        );
        assert_eq!(room.recording(), Some(&rid()));
        assert_eq!(
            room.set_recording(B, false, rid(), at(3))
                .expect_err("nor stops it")
                .code,
            ErrorCode::Forbidden
        );
        let effects = room.set_recording(A, false, rid(), at(4)).expect("stop");
        let stopped = effects
            .iter()
            .find_map(|e| match e {
                Effect::StopRecording {
                    stopped, report, ..
                } => Some((stopped.clone(), report.clone())),
                _ => None,
            })
            .expect("stopped");
        assert_eq!(stopped.0.reason, StopReason::Stopped);
        assert_eq!(stopped.0.stopped_by.map(|p| p.identity), Some("a".into()));
        assert_eq!(
            stopped.1.event,
            RoomEvent::RecordingStopped { recording: rid() }
        );
        assert!(room.recording().is_none());
    }

    #[test]
    fn a_conference_that_does_not_allow_recording_refuses_it_until_it_does() {
        let mut room = room();
        let mut forbidden = moderator_plus("a");
        forbidden.room.recording_allowed = false;
        forbidden.room.revision = 2;
        room.join(A, &forbidden, at(0)).expect("join");
        let refusal = room
            .set_recording(A, true, rid(), at(1))
            .expect_err("not allowed");
        assert_eq!(refusal.code, ErrorCode::RecordingNotAllowed);
        assert!(
            refusal.message.contains("not allowed"),
            "{}",
            refusal.message
        );
        // An older token does not undo the setting; a newer definition does.
        let mut old = moderator_plus("b");
        old.room.revision = 1;
        room.join(B, &old, at(2)).expect("join");
        assert_eq!(
            room.set_recording(B, true, rid(), at(2))
                .expect_err("still not allowed")
                .code,
            ErrorCode::RecordingNotAllowed
        );
        let mut newer = moderator_plus("c");
        newer.room.revision = 3;
        room.join(C, &newer, at(3)).expect("join");
        room.set_recording(C, true, rid(), at(3))
            .expect("allowed now");
    }

    #[test]
    fn a_recording_keeps_events_and_stops_when_the_last_participant_leaves() {
        let mut room = room();
        let mut plus = moderator_plus("a");
        plus.room.topic = Some("Board".into());
        room.join(A, &plus, at(0)).expect("join");
        let effects = room.set_recording(A, true, rid(), at(1)).expect("record");
        assert!(effects.iter().any(|e| matches!(e,
            Effect::StartRecording(info) if info.topic.as_deref() == Some("Board"))));
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(2))
            .expect("join");
        let joined = effects.iter().any(|e| matches!(e,
            Effect::RecordEvent(Event { what: EventKind::Join { identity, .. }, .. }) if identity == "b"));
        assert!(joined, "the join is kept: {effects:?}");
        let effects = room.chat(B, "hello", None, at(3)).expect("chat");
        assert!(effects.iter().any(|e| matches!(e,
            Effect::RecordEvent(Event { what: EventKind::Chat { text, .. }, .. }) if text == "hello")));
        let a = room.participant_of(A).cloned().expect("a");
        let effects = room.chat(B, "psst", Some(&a), at(4)).expect("private");
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::RecordEvent(_))),
            "private messages are not recorded"
        );
        let effects = room.leave(A, CloseReason::Left, at(5));
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::StopRecording { .. })),
            "someone is still there"
        );
        assert!(room.recording().is_some(), "it goes on without its starter");
        let effects = room.leave(B, CloseReason::Left, at(6));
        let reason = effects.iter().find_map(|e| match e {
            Effect::StopRecording { stopped, .. } => {
                Some((stopped.reason, stopped.stopped_by.clone()))
            }
            _ => None,
        });
        assert_eq!(reason, Some((StopReason::Ended, None)));
        assert!(room.recording().is_none());
    }

    #[test]
    fn ending_the_meeting_stops_the_recording_after_its_tracks() {
        let mut room = room();
        room.join(A, &moderator_plus("a"), at(0)).expect("join");
        room.publish(A, "mic", TrackSource::Microphone, false, at(0))
            .expect("publish");
        room.media_arrived(A, "mic", TrackKind::Audio, at(0))
            .expect("media");
        room.set_recording(A, true, rid(), at(1)).expect("record");
        let effects = room.end(A, at(2)).expect("end");
        let closed = effects
            .iter()
            .position(|e| matches!(e, Effect::TrackClosed { .. }))
            .expect("the track closes");
        let stopped = effects
            .iter()
            .position(|e| matches!(e, Effect::StopRecording { .. }))
            .expect("the recording stops");
        assert!(closed < stopped, "its writer is let go first");
    }

    #[test]
    fn the_active_speaker_follows_audio_levels() {
        let mut room = room();
        room.join(A, &claims("a", Role::Listener, false), at(0))
            .expect("join");
        room.join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        room.publish(A, "mic", TrackSource::Microphone, false, at(0))
            .expect("publish");
        let (track, _) = room
            .media_arrived(A, "mic", TrackKind::Audio, at(0))
            .expect("media");
        room.audio_level(&track, 20, at(100));
        let effects = room.tick(at(100));
        assert_eq!(
            sent_to(&effects, B),
            vec![&ServerMessage::ActiveSpeaker {
                participant: Some(ParticipantId::from("p1"))
            }]
        );
        // Someone who comes later is told who speaks and who spoke lately.
        let effects = room
            .join(C, &claims("c", Role::Listener, false), at(200))
            .expect("join");
        let joined = sent_to(&effects, C)
            .into_iter()
            .find_map(|m| match m {
                ServerMessage::Joined {
                    speakers,
                    active_speaker,
                    ..
                } => Some((speakers.clone(), active_speaker.clone())),
                _ => None,
            })
            .expect("joined");
        assert_eq!(
            joined,
            (
                vec![ParticipantId::from("p1")],
                Some(ParticipantId::from("p1"))
            )
        );
        // Silence: nobody speaks, but p1 spoke last.
        room.audio_level(&track, 127, at(3_000));
        let effects = room.tick(at(3_000));
        assert_eq!(
            sent_to(&effects, B),
            vec![&ServerMessage::ActiveSpeaker { participant: None }]
        );
        room.leave(C, CloseReason::Left, at(3_050));
        let effects = room
            .join(SessionId(4), &claims("d", Role::Listener, false), at(3_100))
            .expect("join");
        assert!(sent_to(&effects, SessionId(4)).iter().any(|m| matches!(m,
            ServerMessage::Joined { speakers, active_speaker: None, .. }
                if *speakers == vec![ParticipantId::from("p1")])));
    }

    #[test]
    fn the_layer_choice_needs_a_subscription() {
        let mut room = room();
        room.join(A, &claims("a", Role::Listener, false), at(0))
            .expect("join");
        room.join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        room.publish(A, "cam", TrackSource::Camera, false, at(0))
            .expect("publish");
        let (track, _) = room
            .media_arrived(A, "cam", TrackKind::Video, at(0))
            .expect("media");
        assert!(
            room.set_video_layer(A, &track, VideoLayer::Low).is_err(),
            "own track"
        );
        assert_eq!(
            room.set_video_layer(B, &track, VideoLayer::Low)
                .expect("layer")
                .len(),
            1
        );
    }

    fn track_of(effects: &[Effect]) -> Option<TrackId> {
        effects.iter().find_map(|e| match e {
            Effect::SetForwarding { track, .. } => Some(track.clone()),
            _ => None,
        })
    }

    #[test]
    fn tracks_per_participant_and_track_id_length_are_capped() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        let long = "x".repeat(MAX_TRACK_ID_BYTES + 1);
        assert_eq!(
            room.publish(A, &long, TrackSource::Camera, false, at(0))
                .expect_err("long")
                .code,
            ErrorCode::InvalidTrackId
        );
        assert_eq!(
            room.publish(A, "", TrackSource::Camera, false, at(0))
                .expect_err("empty")
                .code,
            ErrorCode::InvalidTrackId
        );
        room.publish(
            A,
            &"y".repeat(MAX_TRACK_ID_BYTES),
            TrackSource::Camera,
            false,
            at(0),
        )
        .expect("64 bytes are fine");
        for n in 1..8 {
            room.publish(A, &format!("t{n}"), TrackSource::Camera, false, at(0))
                .expect("within the limit");
        }
        assert_eq!(
            room.publish(A, "t9", TrackSource::Camera, false, at(0))
                .expect_err("ninth")
                .code,
            ErrorCode::TooManyTracks
        );
        // Announcing a known ID again is no new track; unpublishing makes room.
        room.publish(A, "t1", TrackSource::Camera, true, at(0))
            .expect("again");
        room.unpublish(A, "t1", at(0)).expect("unpublish");
        room.publish(A, "t9", TrackSource::Camera, false, at(0))
            .expect("room again");
    }

    #[test]
    fn chat_and_control_actions_are_rate_limited_even_across_reconnects() {
        let mut room = room();
        room.join(A, &claims("a", Role::Listener, false), at(0))
            .expect("join");
        for n in 0..10 {
            room.chat(A, &format!("m{n}"), None, at(0)).expect("burst");
        }
        let refusal = room.chat(A, "m10", None, at(0)).expect_err("limited");
        assert_eq!(refusal.code, ErrorCode::RateLimited);
        assert!(refusal.message.contains("0.2 s"), "{}", refusal.message);
        assert!(
            room.chat.len() == 10,
            "the refused message reached nobody and is not kept"
        );
        // A reconnect does not refill the bucket.
        room.join(B, &claims("a", Role::Listener, false), at(10))
            .expect("reconnect");
        assert_eq!(
            room.chat(B, "again", None, at(10))
                .expect_err("still limited")
                .code,
            ErrorCode::RateLimited
        );
        room.chat(B, "later", None, at(210)).expect("refilled");

        for n in 0..20 {
            room.mute_track(B, "mic", n % 2 == 0, at(300))
                .expect_err("unknown track: no token taken");
        }
        room.publish(B, "mic", TrackSource::Microphone, false, at(300))
            .expect("publish");
        for n in 0..19 {
            room.mute_track(B, "mic", n % 2 == 0, at(300))
                .expect("burst");
        }
        assert_eq!(
            room.mute_track(B, "mic", true, at(300))
                .expect_err("limited")
                .code,
            ErrorCode::RateLimited
        );
        assert_eq!(
            room.unpublish(B, "mic", at(300))
                .expect_err("the same bucket")
                .code,
            ErrorCode::RateLimited
        );
        room.unpublish(B, "mic", at(500)).expect("refilled");
    }

    fn guest(sub: &str, client: &str) -> JoinClaims {
        let mut guest = claims(sub, Role::Listener, false);
        guest.cli = Some(client.into());
        guest.room.max_participants = Some(10);
        guest
    }

    #[test]
    fn one_client_network_cannot_take_every_guest_seat() {
        let mut room = Room::new(
            ConferenceId::from("c1"),
            RoomLimits {
                guest_seats_per_client: 2,
                ..RoomLimits::default()
            },
        );
        room.join(A, &guest("guest:1", "192.0.2.1"), at(0))
            .expect("first");
        room.join(B, &guest("guest:2", "192.0.2.1"), at(0))
            .expect("second");
        let refusal = room
            .join(C, &guest("guest:3", "192.0.2.1"), at(0))
            .expect_err("third from the same network");
        assert_eq!(refusal.code, ErrorCode::TooManyGuests);
        // A reconnect of a guest inside takes no new seat; other networks and accounts join.
        room.join(SessionId(4), &guest("guest:2", "192.0.2.1"), at(1))
            .expect("reconnect");
        room.join(SessionId(5), &guest("guest:3", "192.0.2.9"), at(1))
            .expect("another network");
        let mut account = guest("account:1", "192.0.2.1");
        account.level = Some(AccountLevel::Audience);
        room.join(SessionId(6), &account, at(1))
            .expect("accounts are not guests");
        // A guest who leaves frees the seat.
        room.leave(A, CloseReason::Left, at(2));
        room.join(SessionId(7), &guest("guest:4", "192.0.2.1"), at(3))
            .expect("a seat is free again");
    }

    #[test]
    fn people_waiting_for_the_owner_leave_the_owner_a_seat() {
        let mut room = room();
        let mut waiting = claims("b", Role::Listener, false);
        waiting.room.allow_join_without_owner = false;
        waiting.room.max_participants = Some(3);
        room.join(B, &waiting, at(0)).expect("waits");
        waiting.sub = "c".into();
        room.join(C, &waiting, at(0)).expect("waits");
        waiting.sub = "d".into();
        assert_eq!(
            room.join(SessionId(4), &waiting, at(0))
                .expect_err("the last seat is the owner's")
                .code,
            ErrorCode::RoomFull
        );
        let mut owner = claims("a", Role::Moderator, true);
        owner.room = waiting.room.clone();
        let effects = room.join(A, &owner, at(1)).expect("the owner gets in");
        assert_eq!(
            effects
                .iter()
                .filter(|e| matches!(e, Effect::Admit { .. }))
                .count(),
            3
        );
        assert_eq!(room.admitted(), 3);
    }

    #[test]
    fn an_older_token_does_not_undo_newer_room_settings() {
        let mut room = room();
        let mut edited = claims("a", Role::Listener, false);
        edited.room.revision = 5;
        edited.room.max_participants = Some(2);
        edited.room.media = Media::AudioOnly;
        room.join(A, &edited, at(0)).expect("join");
        // Issued before the edit (and still valid): the room keeps the edit.
        let mut old = claims("b", Role::Listener, false);
        old.room.revision = 4;
        old.room.max_participants = Some(50);
        old.room.media = Media::AudioVideo;
        room.join(B, &old, at(1)).expect("join");
        assert_eq!(
            room.publish(B, "cam", TrackSource::Camera, false, at(1))
                .expect_err("still audio only")
                .code,
            ErrorCode::AudioOnly
        );
        assert_eq!(
            room.join(C, &claims("c", Role::Listener, false), at(1))
                .expect_err("still 2 seats")
                .code,
            ErrorCode::RoomFull
        );
        // A newer edit applies.
        let mut newer = claims("c", Role::Listener, false);
        newer.room.revision = 6;
        newer.room.max_participants = Some(3);
        room.join(C, &newer, at(2))
            .expect("the newer definition has room");
        room.publish(C, "cam", TrackSource::Camera, false, at(2))
            .expect("video again");
    }

    #[test]
    fn nobody_acts_against_the_owner_and_only_owners_and_admins_make_moderators() {
        let mut room = room();
        let mut first = claims("a", Role::Moderator, true);
        first.room.max_participants = Some(10);
        let owner_effects = room.join(A, &first, at(0)).expect("join");
        let owner = joined_id(&owner_effects, A);
        let mut level_moderator = claims("b", Role::Moderator, false);
        level_moderator.level = Some(AccountLevel::Moderator);
        let effects = room.join(B, &level_moderator, at(0)).expect("join");
        let moderator = joined_id(&effects, B);
        let effects = room
            .join(C, &claims("c", Role::Listener, false), at(0))
            .expect("join");
        let listener = joined_id(&effects, C);

        for refusal in [
            room.set_role(B, &owner, Role::Listener, at(1)),
            room.exclude(B, &owner, at(1)),
            room.block_microphone(B, &owner, true, at(1)),
            room.set_role(B, &listener, Role::Moderator, at(1)),
        ] {
            assert_eq!(refusal.expect_err("refused").code, ErrorCode::Forbidden);
        }
        room.set_role(B, &listener, Role::Speaker, at(1))
            .expect("a moderator makes speakers");
        room.set_role(A, &listener, Role::Moderator, at(1))
            .expect("the owner makes moderators");
        assert_eq!(
            room.set_role(B, &listener, Role::Listener, at(1))
                .expect_err("nor demotes them")
                .code,
            ErrorCode::Forbidden
        );
        room.set_role(A, &moderator, Role::Listener, at(1))
            .expect("the owner demotes a moderator");

        let mut admin = claims("d", Role::Moderator, false);
        admin.level = Some(AccountLevel::Admin);
        room.join(SessionId(4), &admin, at(2)).expect("join");
        room.set_role(SessionId(4), &moderator, Role::Moderator, at(2))
            .expect("an admin makes moderators");
        assert_eq!(
            room.exclude(SessionId(4), &owner, at(2))
                .expect_err("not even an admin excludes the owner")
                .code,
            ErrorCode::Forbidden
        );
        assert_eq!(room.admitted(), 4);
    }

    #[test]
    fn a_microphone_block_survives_leaving_and_rejoining() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        let b = joined_id(&effects, B);
        room.block_microphone(A, &b, true, at(1)).expect("block");
        room.leave(B, CloseReason::Left, at(2));
        let mut fresh = claims("b", Role::Listener, false);
        fresh.jti = "another-token".into();
        let effects = room.join(C, &fresh, at(3)).expect("back");
        let b = joined_id(&effects, C);
        assert!(sent_to(&effects, A).iter().any(|m| matches!(m,
            ServerMessage::ParticipantJoined { participant } if participant.microphone_blocked)));
        let (track, effects) = {
            room.publish(C, "mic", TrackSource::Microphone, false, at(4))
                .expect("publish");
            room.media_arrived(C, "mic", TrackKind::Audio, at(4))
                .expect("media")
        };
        assert!(effects.contains(&Effect::SetForwarding {
            track,
            enabled: false
        }));
        assert_eq!(
            room.mute_track(C, "mic", false, at(5))
                .expect_err("still blocked")
                .code,
            ErrorCode::Forbidden
        );
        room.block_microphone(A, &b, false, at(6)).expect("allow");
        room.mute_track(C, "mic", false, at(7)).expect("unmute");
    }

    #[test]
    fn announcing_a_live_track_again_keeps_it_blocked() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        let effects = room
            .join(B, &claims("b", Role::Listener, false), at(0))
            .expect("join");
        let b = joined_id(&effects, B);
        room.publish(B, "mic", TrackSource::Microphone, false, at(1))
            .expect("publish");
        let (track, _) = room
            .media_arrived(B, "mic", TrackKind::Audio, at(1))
            .expect("media");
        room.publish(B, "mic", TrackSource::Microphone, false, at(2))
            .expect("announced again");
        assert_eq!(
            room.publish(B, "mic", TrackSource::Camera, false, at(2))
                .expect_err("another source")
                .code,
            ErrorCode::Forbidden
        );
        let effects = room.block_microphone(A, &b, true, at(3)).expect("block");
        assert!(
            effects.contains(&Effect::SetForwarding {
                track: track.clone(),
                enabled: false
            }),
            "the live track is still found and muted"
        );
        assert_eq!(track_of(&effects), Some(track));
    }

    #[test]
    fn a_block_is_lifted_only_by_its_rank_or_above_and_never_by_the_blocked() {
        let mut room = room();
        let mut first = claims("a", Role::Moderator, true);
        first.room.max_participants = Some(10);
        let effects = room.join(A, &first, at(0)).expect("join");
        let owner = joined_id(&effects, A);
        let effects = room
            .join(B, &claims("b", Role::Speaker, false), at(0))
            .expect("join");
        let speaker = joined_id(&effects, B);
        let effects = room
            .join(C, &claims("c", Role::Listener, false), at(0))
            .expect("join");
        let listener = joined_id(&effects, C);
        let mut moderator = claims("d", Role::Moderator, false);
        moderator.level = Some(AccountLevel::Moderator);
        let d = SessionId(4);
        room.join(d, &moderator, at(0)).expect("join");

        // A blocked speaker cannot allow themselves to speak.
        room.block_microphone(A, &speaker, true, at(1))
            .expect("block");
        assert_eq!(
            room.block_microphone(B, &speaker, false, at(1))
                .expect_err("own block")
                .code,
            ErrorCode::Forbidden
        );
        // The owner's block holds against a moderator.
        assert_eq!(
            room.block_microphone(d, &speaker, false, at(1))
                .expect_err("the owner's block")
                .code,
            ErrorCode::Forbidden
        );
        room.block_microphone(A, &speaker, false, at(1))
            .expect("the owner lifts it");
        // A moderator's block holds against a speaker.
        room.block_microphone(d, &listener, true, at(2))
            .expect("block");
        assert_eq!(
            room.block_microphone(B, &listener, false, at(2))
                .expect_err("a speaker")
                .code,
            ErrorCode::Forbidden
        );
        room.block_microphone(A, &listener, false, at(2))
            .expect("the owner ranks above");
        // A speaker's block is lifted by a speaker.
        room.block_microphone(B, &listener, true, at(3))
            .expect("block");
        room.block_microphone(B, &listener, false, at(3))
            .expect("lift");
        assert_eq!(
            room.block_microphone(B, &owner, true, at(3))
                .expect_err("the owner")
                .code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn a_room_that_moved_tells_everyone_to_move_and_reports_each_leave() {
        let mut room = room();
        room.join(A, &claims("a", Role::Moderator, true), at(0))
            .expect("join");
        room.join(B, &claims("b", Role::Listener, false), at(1))
            .expect("join");
        let effects = room.close_all(CloseReason::Moved, at(2));
        for session in [A, B] {
            assert!(
                effects.contains(&Effect::Close {
                    session,
                    reason: CloseReason::Moved
                }),
                "{session} is told to move: {effects:?}"
            );
        }
        let left = effects
            .iter()
            .filter(|e| matches!(e, Effect::Report(r) if matches!(r.event, RoomEvent::Left { .. })))
            .count();
        assert_eq!(left, 2, "each leave reaches the conference service");
        assert_eq!(room.session_count(), 0);
        assert_eq!(room.admitted(), 0);
        // The same people rejoin on the pod the conference moved to; this room can go.
        assert!(room.can_forget(at(3)));
    }
}
