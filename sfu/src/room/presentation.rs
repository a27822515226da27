//! The presentation on the room's stage: who may upload, show, flip, hand over and stop.
//!
//! One presentation at most is shown per room. Its state ([`PresentationState`]) goes to
//! everyone in [`ServerMessage::Presentation`] on every change and to late joiners in
//! `joined`; a recorder follows the same broadcast and derives the page image's key with
//! [`proto::presentation::page_key`].
//!
//! Rules (docs/presentations.md):
//! - uploading and showing need [`Right::Present`] (speakers and moderators);
//! - only the presenter flips pages;
//! - the presenter or a moderator hands it to someone else who holds `present`, or stops it;
//! - showing while someone else presents replaces their presentation only for a moderator;
//! - when the presenter leaves the room or loses `present` (made a listener), the
//!   presentation stops: handing it to someone the presenter did not choose would put slides
//!   under the control of a person who may not know they hold them.
//!
//! Signing and verifying tickets is the shell's: the core decides whether a ticket may be
//! given ([`Room::upload_ticket`], [`Room::view_ticket`]) and takes descriptors the shell
//! verified ([`Room::show_presentation`]).

use chrono::{DateTime, Utc};
use proto::presentation::{DescriptorClaims, PresentationState, UploadClaims, ViewClaims};
use proto::signal::{ErrorCode, ServerMessage};
use proto::{ParticipantId, Right, Role};

use super::{Effect, Outcome, Refusal, Room, SessionId};

fn no_presentation() -> Refusal {
    Refusal::new(ErrorCode::InvalidPresentation, "no presentation is shown")
}

impl Room {
    /// The presentation shown now.
    pub fn presentation(&self) -> Option<&PresentationState> {
        self.presentation.as_ref()
    }

    /// Whether the session may upload a presentation: the claims of its upload ticket.
    ///
    /// # Errors
    /// `forbidden` without [`Right::Present`]; `rateLimited` when asked too often.
    pub fn upload_ticket(
        &mut self,
        session: SessionId,
        now: DateTime<Utc>,
    ) -> Result<UploadClaims, Refusal> {
        let member = self.require(session, Right::Present).map_err(|refusal| {
            if refusal.code == ErrorCode::Forbidden {
                Refusal::new(
                    ErrorCode::Forbidden,
                    "only speakers and moderators present; ask a moderator to make you a speaker",
                )
            } else {
                refusal
            }
        })?;
        let claims = UploadClaims::new(
            &member.identity,
            &member.name,
            &self.conference,
            now.timestamp(),
        );
        let id = member.id.clone();
        self.take_control(&id, now)?;
        Ok(claims)
    }

    /// Whether the session may see the room's presentations: the claims of its view ticket.
    /// Every admitted participant may; people in the waiting room may not.
    ///
    /// # Errors
    /// `notJoined` before admission.
    pub fn view_ticket(
        &self,
        session: SessionId,
        now: DateTime<Utc>,
    ) -> Result<ViewClaims, Refusal> {
        let member = self.admitted_member(session)?;
        Ok(ViewClaims::new(
            &member.identity,
            &self.conference,
            now.timestamp(),
        ))
    }

    /// Everyone is told; a running recording keeps the page image shown (its key in the file
    /// store), or that none is.
    fn presentation_changed(&self, by: Option<ParticipantId>, now: DateTime<Utc>) -> Vec<Effect> {
        let mut effects = self.broadcast(
            &ServerMessage::Presentation {
                presentation: self.presentation.clone(),
                by,
            },
            None,
        );
        let key = self
            .presentation
            .as_ref()
            .map(|shown| proto::presentation::page_key(&self.conference, &shown.id, shown.page));
        effects.extend(self.record(now, crate::recording::EventKind::Presentation { key }));
        effects
    }

    /// Shows an uploaded presentation from its first page. `descriptor` was verified by the
    /// shell (signature and expiry); the core checks that it belongs to this room.
    pub fn show_presentation(
        &mut self,
        session: SessionId,
        descriptor: &DescriptorClaims,
        now: DateTime<Utc>,
    ) -> Outcome {
        let member = self.require(session, Right::Present)?;
        if descriptor.conf != self.conference || descriptor.pages == 0 {
            return Err(Refusal::new(
                ErrorCode::InvalidPresentation,
                "this presentation was not uploaded to this meeting",
            ));
        }
        if let Some(shown) = &self.presentation
            && shown.presenter != member.id
            && member.role != Role::Moderator
        {
            let name = self.display_name(&shown.presenter).unwrap_or("someone");
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!(
                    "{name} is presenting; ask them to stop or to hand the presentation to you"
                ),
            ));
        }
        let id = member.id.clone();
        self.take_control(&id, now)?;
        self.presentation = Some(PresentationState {
            id: descriptor.pid.clone(),
            title: descriptor.title.clone(),
            pages: descriptor.pages,
            page: 1,
            presenter: id.clone(),
        });
        Ok(self.presentation_changed(Some(id), now))
    }

    /// Shows another page; only the presenter.
    pub fn set_presentation_page(
        &mut self,
        session: SessionId,
        page: u32,
        now: DateTime<Utc>,
    ) -> Outcome {
        let member = self.admitted_member(session)?;
        let shown = self.presentation.as_ref().ok_or_else(no_presentation)?;
        if shown.presenter != member.id {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the presenter turns the pages",
            ));
        }
        if page == 0 || page > shown.pages {
            return Err(Refusal::new(
                ErrorCode::InvalidPresentation,
                format!("the presentation has pages 1 to {}", shown.pages),
            ));
        }
        if page == shown.page {
            return Ok(Vec::new());
        }
        let id = member.id.clone();
        self.take_control(&id, now)?;
        if let Some(shown) = &mut self.presentation {
            shown.page = page;
        }
        Ok(self.presentation_changed(Some(id), now))
    }

    /// Hands the presentation to `participant`, who must hold [`Right::Present`]; the
    /// presenter or a moderator.
    pub fn hand_over_presentation(
        &mut self,
        session: SessionId,
        participant: &ParticipantId,
        now: DateTime<Utc>,
    ) -> Outcome {
        let member = self.admitted_member(session)?;
        let shown = self.presentation.as_ref().ok_or_else(no_presentation)?;
        if shown.presenter != member.id && member.role != Role::Moderator {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the presenter or a moderator hands the presentation over",
            ));
        }
        let target = self.target(participant)?;
        if !target.admitted {
            return Err(Refusal::new(
                ErrorCode::UnknownParticipant,
                "no such participant",
            ));
        }
        if !target.grants().allows(Right::Present) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("{} is a listener; make them a speaker first", target.name),
            ));
        }
        let id = member.id.clone();
        self.take_control(&id, now)?;
        if let Some(shown) = &mut self.presentation {
            shown.presenter = participant.clone();
        }
        Ok(self.presentation_changed(Some(id), now))
    }

    /// Stops the presentation; the presenter or a moderator.
    pub fn stop_presentation(&mut self, session: SessionId, now: DateTime<Utc>) -> Outcome {
        let member = self.admitted_member(session)?;
        let shown = self.presentation.as_ref().ok_or_else(no_presentation)?;
        if shown.presenter != member.id && member.role != Role::Moderator {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the presenter or a moderator stops the presentation",
            ));
        }
        let id = member.id.clone();
        self.take_control(&id, now)?;
        self.presentation = None;
        Ok(self.presentation_changed(Some(id), now))
    }

    /// `participant` left or lost [`Right::Present`]: their presentation stops.
    pub(super) fn presenter_gone(
        &mut self,
        participant: &ParticipantId,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        if self
            .presentation
            .as_ref()
            .is_some_and(|shown| &shown.presenter == participant)
        {
            self.presentation = None;
            self.presentation_changed(None, now)
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proto::presentation::{DESCRIPTOR_AUDIENCE, PresentationId};
    use proto::signal::CloseReason;
    use proto::{ConferenceId, JoinClaims, Media, MeetingId, RoomSettings};

    use super::super::RoomLimits;
    use super::*;

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
                max_participants: None,
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

    fn descriptor(conference: &str, pages: u32) -> DescriptorClaims {
        DescriptorClaims {
            sub: "account:s".into(),
            conf: ConferenceId::from(conference),
            pid: PresentationId::from_random([9; 16]),
            title: "Quarterly".into(),
            pages,
            aud: DESCRIPTOR_AUDIENCE.into(),
            iat: at(0).timestamp(),
            exp: at(0).timestamp() + 60,
        }
    }

    const MODERATOR: SessionId = SessionId(1);
    const SPEAKER: SessionId = SessionId(2);
    const LISTENER: SessionId = SessionId(3);
    const OTHER_SPEAKER: SessionId = SessionId(4);

    /// A room with an owner (p1), a speaker (p2), a listener (p3) and another speaker (p4).
    fn room() -> Room {
        let mut room = Room::new(ConferenceId::from("c1"), RoomLimits::default());
        room.join(MODERATOR, &claims("m", Role::Moderator, true), at(0))
            .expect("join");
        room.join(SPEAKER, &claims("s", Role::Speaker, false), at(0))
            .expect("join");
        room.join(LISTENER, &claims("l", Role::Listener, false), at(0))
            .expect("join");
        room.join(OTHER_SPEAKER, &claims("t", Role::Speaker, false), at(0))
            .expect("join");
        room
    }

    fn p(n: u32) -> ParticipantId {
        ParticipantId(format!("p{n}"))
    }

    /// The presentation every admitted session was told about, checking that all agree.
    fn told(effects: &[Effect]) -> Option<Option<PresentationState>> {
        let seen: Vec<(SessionId, Option<PresentationState>)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to,
                    message: ServerMessage::Presentation { presentation, .. },
                } => Some((*to, presentation.clone())),
                _ => None,
            })
            .collect();
        if seen.is_empty() {
            return None;
        }
        let first = seen[0].1.clone();
        assert!(seen.iter().all(|(_, state)| *state == first));
        Some(first)
    }

    #[test]
    fn a_listener_gets_no_upload_ticket_and_cannot_show_or_flip() {
        let mut room = room();
        let refusal = room.upload_ticket(LISTENER, at(1)).expect_err("listener");
        assert_eq!(refusal.code, ErrorCode::Forbidden);
        assert!(refusal.message.contains("speaker"), "{}", refusal.message);
        assert_eq!(
            room.show_presentation(LISTENER, &descriptor("c1", 3), at(1))
                .expect_err("listener")
                .code,
            ErrorCode::Forbidden
        );
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("speaker shows");
        assert_eq!(
            room.set_presentation_page(LISTENER, 2, at(2))
                .expect_err("listener flips")
                .code,
            ErrorCode::Forbidden
        );
        assert_eq!(room.presentation().expect("shown").page, 1);
    }

    #[test]
    fn a_speaker_gets_an_upload_ticket_for_this_room_and_everyone_admitted_a_view_ticket() {
        let mut room = room();
        let upload = room.upload_ticket(SPEAKER, at(1)).expect("speaker");
        assert_eq!(upload.sub, "s");
        assert_eq!(upload.conf, ConferenceId::from("c1"));
        assert_eq!(
            upload.exp - upload.iat,
            proto::presentation::UPLOAD_TICKET_SECONDS
        );
        let view = room.view_ticket(LISTENER, at(1)).expect("listener views");
        assert_eq!(view.conf, ConferenceId::from("c1"));
        assert_eq!(
            room.view_ticket(SessionId(99), at(1))
                .expect_err("stranger")
                .code,
            ErrorCode::NotJoined
        );
    }

    #[test]
    fn showing_and_flipping_reach_everyone_and_only_the_presenter_flips() {
        let mut room = room();
        let effects = room
            .show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        let shown = told(&effects).flatten().expect("shown");
        assert_eq!((shown.page, shown.pages, &shown.presenter), (1, 3, &p(2)));
        let told_sessions: Vec<SessionId> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to,
                    message: ServerMessage::Presentation { .. },
                } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(
            told_sessions.len(),
            4,
            "everyone admitted, the presenter too"
        );
        let effects = room.set_presentation_page(SPEAKER, 2, at(2)).expect("flip");
        assert_eq!(told(&effects).flatten().expect("shown").page, 2);
        for (session, code) in [
            (MODERATOR, ErrorCode::Forbidden),
            (OTHER_SPEAKER, ErrorCode::Forbidden),
        ] {
            assert_eq!(
                room.set_presentation_page(session, 3, at(3))
                    .expect_err("not the presenter")
                    .code,
                code
            );
        }
        for page in [0, 4] {
            assert_eq!(
                room.set_presentation_page(SPEAKER, page, at(3))
                    .expect_err("no such page")
                    .code,
                ErrorCode::InvalidPresentation
            );
        }
        assert!(
            room.set_presentation_page(SPEAKER, 2, at(3))
                .expect("same page")
                .is_empty()
        );
        assert_eq!(room.presentation().expect("shown").page, 2);
    }

    #[test]
    fn a_descriptor_of_another_meeting_is_refused() {
        let mut room = room();
        assert_eq!(
            room.show_presentation(SPEAKER, &descriptor("c2", 3), at(1))
                .expect_err("other conference")
                .code,
            ErrorCode::InvalidPresentation
        );
        assert!(room.presentation().is_none());
    }

    #[test]
    fn a_late_joiner_sees_the_current_page_in_joined() {
        let mut room = room();
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        room.set_presentation_page(SPEAKER, 3, at(2)).expect("flip");
        let late = SessionId(5);
        let effects = room
            .join(late, &claims("late", Role::Listener, false), at(3))
            .expect("join");
        let joined = effects
            .iter()
            .find_map(|e| match e {
                Effect::Send {
                    to,
                    message: ServerMessage::Joined { presentation, .. },
                } if *to == late => Some(presentation.clone()),
                _ => None,
            })
            .expect("joined");
        assert_eq!(joined.expect("shown").page, 3);
    }

    #[test]
    fn another_speaker_cannot_take_over_but_a_moderator_can() {
        let mut room = room();
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        let refusal = room
            .show_presentation(OTHER_SPEAKER, &descriptor("c1", 5), at(2))
            .expect_err("taken");
        assert_eq!(refusal.code, ErrorCode::Forbidden);
        assert!(
            refusal.message.contains('S'),
            "names the presenter: {}",
            refusal.message
        );
        let effects = room
            .show_presentation(MODERATOR, &descriptor("c1", 5), at(3))
            .expect("moderator replaces");
        let shown = told(&effects).flatten().expect("shown");
        assert_eq!((shown.pages, shown.presenter), (5, p(1)));
    }

    #[test]
    fn the_presenter_hands_over_to_a_speaker_but_not_to_a_listener() {
        let mut room = room();
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        assert_eq!(
            room.hand_over_presentation(SPEAKER, &p(3), at(2))
                .expect_err("listener")
                .code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            room.hand_over_presentation(OTHER_SPEAKER, &p(4), at(2))
                .expect_err("not the presenter")
                .code,
            ErrorCode::Forbidden
        );
        let effects = room
            .hand_over_presentation(SPEAKER, &p(4), at(2))
            .expect("hand over");
        assert_eq!(told(&effects).flatten().expect("shown").presenter, p(4));
        assert_eq!(
            room.set_presentation_page(SPEAKER, 2, at(3))
                .expect_err("no longer the presenter")
                .code,
            ErrorCode::Forbidden
        );
        room.set_presentation_page(OTHER_SPEAKER, 2, at(3))
            .expect("the new presenter flips");
        room.hand_over_presentation(MODERATOR, &p(2), at(4))
            .expect("a moderator hands it back");
        assert_eq!(room.presentation().expect("shown").presenter, p(2));
    }

    #[test]
    fn the_presenter_or_a_moderator_stops_it_but_nobody_else() {
        let mut room = room();
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        for session in [LISTENER, OTHER_SPEAKER] {
            assert_eq!(
                room.stop_presentation(session, at(2))
                    .expect_err("not theirs")
                    .code,
                ErrorCode::Forbidden
            );
        }
        let effects = room.stop_presentation(MODERATOR, at(2)).expect("moderator");
        assert_eq!(told(&effects), Some(None));
        assert_eq!(
            room.stop_presentation(SPEAKER, at(3))
                .expect_err("nothing shown")
                .code,
            ErrorCode::InvalidPresentation
        );
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(4))
            .expect("show again");
        room.stop_presentation(SPEAKER, at(5))
            .expect("presenter stops");
        assert!(room.presentation().is_none());
    }

    #[test]
    fn the_presentation_stops_when_its_presenter_leaves_or_becomes_a_listener() {
        let mut room = room();
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        let effects = room
            .set_role(MODERATOR, &p(2), Role::Listener, at(2))
            .expect("demote");
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Send {
                message: ServerMessage::Presentation {
                    presentation: None,
                    by: None
                },
                ..
            }
        )));
        assert!(room.presentation().is_none());

        room.show_presentation(OTHER_SPEAKER, &descriptor("c1", 3), at(3))
            .expect("show");
        // Someone else leaving changes nothing.
        let effects = room.leave(LISTENER, CloseReason::Left, at(4));
        assert!(!effects.iter().any(|e| matches!(
            e,
            Effect::Send {
                message: ServerMessage::Presentation { .. },
                ..
            }
        )));
        assert!(room.presentation().is_some());
        let effects = room.leave(OTHER_SPEAKER, CloseReason::Gone, at(5));
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Send { to, message: ServerMessage::Presentation { presentation: None, .. } } if *to == MODERATOR
        )));
        assert!(room.presentation().is_none());
    }

    #[test]
    fn a_presenter_who_reconnects_keeps_presenting() {
        let mut room = room();
        room.show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        room.join(SessionId(9), &claims("s", Role::Speaker, false), at(2))
            .expect("reconnect");
        assert_eq!(room.presentation().expect("still shown").presenter, p(2));
        room.set_presentation_page(SessionId(9), 2, at(3))
            .expect("flips from the new session");
    }

    #[test]
    fn the_page_shown_names_the_image_a_recorder_stores() {
        let mut room = room();
        let effects = room
            .show_presentation(SPEAKER, &descriptor("c1", 3), at(1))
            .expect("show");
        let shown = told(&effects).flatten().expect("shown");
        assert_eq!(
            proto::presentation::page_key(room.conference(), &shown.id, shown.page),
            format!("presentations/c1/{}/page-1.png", "09".repeat(16))
        );
    }
}
