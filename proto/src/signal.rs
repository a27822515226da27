//! The SFU's signaling messages: JSON over one websocket per participant (`/rtc`).
//!
//! Every message is an object with a `type` tag and camelCase fields. A participant holds two
//! peer connections with the SFU so that offers never collide: on the **publisher**
//! connection the client offers (its microphone, camera and screen go up); on the
//! **subscriber** connection the SFU offers (everyone else's tracks come down, renegotiated
//! when tracks come and go). docs/signaling.md walks through a session.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{ConferenceId, ParticipantId, TrackId};
use crate::presentation::PresentationState;
use crate::role::{Grants, Role};

/// Longest chat message accepted, in bytes of UTF-8.
pub const MAX_CHAT_BYTES: usize = 4096;
/// Longest track ID accepted in `publish`, in bytes (browsers use UUIDs: 36 to 38 bytes).
pub const MAX_TRACK_ID_BYTES: usize = 64;

/// Which of the participant's two peer connections a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PeerTarget {
    /// The connection the client offers and publishes on.
    Publisher,
    /// The connection the SFU offers and the client receives on.
    Subscriber,
}

/// An ICE candidate as the browser's `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The `candidate:` line (without `a=`); empty for end-of-candidates.
    pub candidate: String,
    /// The media section's `mid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The media section's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE username fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TrackKind {
    /// An audio track (Opus).
    Audio,
    /// A video track (VP8, or H.264 when offered).
    Video,
}

/// Where a published track comes from; decides which right publishing it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TrackSource {
    /// The microphone (audio); needs `publishMedia`.
    Microphone,
    /// The camera (video); needs `publishMedia`.
    Camera,
    /// A shared screen (video); needs `present`.
    Screen,
    /// Sound of a shared screen (audio); needs `present`.
    ScreenAudio,
}

impl TrackSource {
    /// The kind of media this source produces.
    pub fn kind(self) -> TrackKind {
        match self {
            TrackSource::Microphone | TrackSource::ScreenAudio => TrackKind::Audio,
            TrackSource::Camera | TrackSource::Screen => TrackKind::Video,
        }
    }
}

/// A simulcast layer a subscriber asks for (the SFU forwards one layer per subscriber).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum VideoLayer {
    /// The smallest encoding.
    Low,
    /// The middle encoding.
    Medium,
    /// The largest encoding (the only one without simulcast).
    High,
}

impl VideoLayer {
    /// Lowest first: low 0, medium 1, high 2.
    pub const ALL: [VideoLayer; 3] = [VideoLayer::Low, VideoLayer::Medium, VideoLayer::High];

    /// Its place in [`VideoLayer::ALL`].
    pub fn index(self) -> usize {
        match self {
            VideoLayer::Low => 0,
            VideoLayer::Medium => 1,
            VideoLayer::High => 2,
        }
    }
}

/// Recent speakers a [`ServerMessage::Joined`] names at most.
pub const MAX_RECENT_SPEAKERS: usize = 16;

/// Entries one `viewTracks` message may hold.
pub const MAX_TRACK_VIEWS: usize = 256;

/// How one received video track is shown (`viewTracks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackView {
    /// The room's track ID.
    pub track: TrackId,
    /// Whether any of it is on screen.
    pub visible: bool,
    /// The tile's width in device pixels (CSS pixels × `devicePixelRatio`).
    pub width: u32,
    /// The tile's height in device pixels.
    pub height: u32,
}

/// One participant as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    /// Room-local ID, stable across reconnects of the same identity.
    pub id: ParticipantId,
    /// Display name from the join token.
    pub display_name: String,
    /// Current role.
    pub role: Role,
    /// Whether a speaker or moderator has muted their microphone (they cannot unmute until
    /// allowed to speak again).
    pub microphone_blocked: bool,
}

/// One published track as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackInfo {
    /// Room-wide ID; on the subscriber connection it is the track's `msid` track ID, and the
    /// stream ID is the publishing participant's ID.
    pub id: TrackId,
    /// Who publishes it.
    pub participant: ParticipantId,
    /// Audio or video.
    pub kind: TrackKind,
    /// Microphone, camera or screen.
    pub source: TrackSource,
    /// Whether it is muted (by its owner or, for microphones, by a speaker or moderator).
    pub muted: bool,
}

/// A chat message as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Who wrote it.
    pub from: ParticipantId,
    /// Their display name when they wrote it.
    pub from_name: String,
    /// When the SFU received it (RFC 3339, UTC).
    pub at: String,
    /// The text.
    pub text: String,
    /// The one recipient of a private message; `None` for everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ParticipantId>,
}

/// Why the SFU closes a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CloseReason {
    /// The participant left.
    Left,
    /// A moderator excluded the participant; the same token cannot join again.
    Excluded,
    /// A moderator ended the meeting for everyone.
    Ended,
    /// The same identity connected again; the newer session wins.
    Replaced,
    /// The SFU is shutting down; reconnect (to the new endpoint when the conference moved).
    Shutdown,
    /// The conference moved to another SFU pod (its placement changed, or this pod drained
    /// and handed it off): join again through the API at once (`POST /join` with `lostPod`)
    /// and connect to the endpoint it answers.
    Moved,
    /// The client went away: the websocket closed or failed.
    Gone,
    /// A peer connection failed; an `error` with code `connectionFailed` said why. Reconnect.
    ConnectionFailed,
    /// The account changed (level, disabled, password reset): join again through the API,
    /// which decides anew.
    Revoked,
    /// The client did not read its messages fast enough (its queue filled, or a write stalled):
    /// the SFU dropped the session rather than buffer without end. Reconnect.
    TooSlow,
    /// The client answered no websocket ping within the idle timeout. Reconnect.
    Unresponsive,
}

impl CloseReason {
    /// The camelCase name, as on the wire, as the reason of the websocket's close frame and as
    /// the `reason` label of the disconnect metric.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Left => "left",
            CloseReason::Excluded => "excluded",
            CloseReason::Ended => "ended",
            CloseReason::Replaced => "replaced",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Moved => "moved",
            CloseReason::Gone => "gone",
            CloseReason::ConnectionFailed => "connectionFailed",
            CloseReason::Revoked => "revoked",
            CloseReason::TooSlow => "tooSlow",
            CloseReason::Unresponsive => "unresponsive",
        }
    }

    /// Every reason, for metrics that pre-register their labels.
    pub const ALL: [CloseReason; 11] = [
        CloseReason::Left,
        CloseReason::Excluded,
        CloseReason::Ended,
        CloseReason::Replaced,
        CloseReason::Shutdown,
        CloseReason::Moved,
        CloseReason::Gone,
        CloseReason::ConnectionFailed,
        CloseReason::Revoked,
        CloseReason::TooSlow,
        CloseReason::Unresponsive,
    ];
}

/// Error codes in [`ServerMessage::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ErrorCode {
    /// Not JSON, or not one of the messages below.
    Malformed,
    /// A message that needs a joined session came before `join`.
    NotJoined,
    /// `join` was sent twice.
    AlreadyJoined,
    /// The token is malformed, badly signed or made for another audience.
    InvalidToken,
    /// The token has expired (or is not valid yet).
    TokenExpired,
    /// The token is for another conference than the one asked for.
    WrongConference,
    /// This SFU pod does not hold the conference: the token names another pod, or the
    /// conference was placed elsewhere since the token was issued. Join again through the API
    /// (`POST /join` with `lostPod`), which answers the pod that holds it.
    WrongPod,
    /// The identity or token was excluded from this room.
    Excluded,
    /// The room has ended; a token issued after the end is needed.
    Ended,
    /// The token was issued before the account changed (level, disabled, password reset):
    /// join again through the API.
    Revoked,
    /// The room is full.
    RoomFull,
    /// The SFU serves no more participants (pod capacity).
    Overloaded,
    /// The participant's role does not allow this.
    Forbidden,
    /// The conference does not allow recording (`recording.allowed` is false).
    RecordingNotAllowed,
    /// The room is audio only and video was offered.
    AudioOnly,
    /// No such participant in the room.
    UnknownParticipant,
    /// No such track in the room.
    UnknownTrack,
    /// `publish` would give the participant more tracks than the SFU allows
    /// (`--sfu-max-tracks-per-participant`), or the offer has more media sections than that.
    TooManyTracks,
    /// A track ID that is empty or longer than [`MAX_TRACK_ID_BYTES`].
    InvalidTrackId,
    /// Too many chat messages, or too many publish, mute or moderation actions, in a short
    /// time; the message says when to try again. Nothing was done.
    RateLimited,
    /// This client (its network address) already holds as many guest seats in the room as
    /// one client may (`--sfu-guest-seats-per-client`).
    TooManyGuests,
    /// The chat message is empty or longer than [`MAX_CHAT_BYTES`].
    ChatTooLong,
    /// An offer, answer or candidate could not be applied.
    Negotiation,
    /// A peer connection failed (ICE found no path, or the DTLS handshake failed); the message
    /// says which and what to check. The session is closed with `connectionFailed` after it.
    ConnectionFailed,
    /// No presentation is shown, or the descriptor is not one of this meeting's (forged,
    /// expired, another conference), or the page does not exist.
    InvalidPresentation,
    /// Anything else; the cause is in the SFU's log.
    Internal,
}

impl ErrorCode {
    /// The camelCase name, as on the wire and as the `code` label of the signaling error metric.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::NotJoined => "notJoined",
            ErrorCode::AlreadyJoined => "alreadyJoined",
            ErrorCode::InvalidToken => "invalidToken",
            ErrorCode::TokenExpired => "tokenExpired",
            ErrorCode::WrongConference => "wrongConference",
            ErrorCode::WrongPod => "wrongPod",
            ErrorCode::Excluded => "excluded",
            ErrorCode::Ended => "ended",
            ErrorCode::Revoked => "revoked",
            ErrorCode::RoomFull => "roomFull",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RecordingNotAllowed => "recordingNotAllowed",
            ErrorCode::AudioOnly => "audioOnly",
            ErrorCode::UnknownParticipant => "unknownParticipant",
            ErrorCode::UnknownTrack => "unknownTrack",
            ErrorCode::TooManyTracks => "tooManyTracks",
            ErrorCode::InvalidTrackId => "invalidTrackId",
            ErrorCode::RateLimited => "rateLimited",
            ErrorCode::TooManyGuests => "tooManyGuests",
            ErrorCode::ChatTooLong => "chatTooLong",
            ErrorCode::Negotiation => "negotiation",
            ErrorCode::ConnectionFailed => "connectionFailed",
            ErrorCode::InvalidPresentation => "invalidPresentation",
            ErrorCode::Internal => "internal",
        }
    }

    /// Every code, for metrics that pre-register their labels.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::Malformed,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::WrongConference,
        ErrorCode::WrongPod,
        ErrorCode::Excluded,
        ErrorCode::Ended,
        ErrorCode::Revoked,
        ErrorCode::RoomFull,
        ErrorCode::Overloaded,
        ErrorCode::Forbidden,
        ErrorCode::RecordingNotAllowed,
        ErrorCode::AudioOnly,
        ErrorCode::UnknownParticipant,
        ErrorCode::UnknownTrack,
        ErrorCode::TooManyTracks,
        ErrorCode::InvalidTrackId,
        ErrorCode::RateLimited,
        ErrorCode::TooManyGuests,
        ErrorCode::ChatTooLong,
        ErrorCode::Negotiation,
        ErrorCode::ConnectionFailed,
        ErrorCode::InvalidPresentation,
        ErrorCode::Internal,
    ];

    /// Whether the SFU closes the websocket after sending this error (refused joins).
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidToken
                | ErrorCode::TokenExpired
                | ErrorCode::WrongConference
                | ErrorCode::WrongPod
                | ErrorCode::Excluded
                | ErrorCode::Ended
                | ErrorCode::RoomFull
                | ErrorCode::Overloaded
                | ErrorCode::TooManyGuests
        )
    }
}

/// Client → SFU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    /// The first message: the join token from `POST /api/v1/join` and the conference it is
    /// meant for.
    Join {
        /// The join token.
        token: String,
        /// The conference the client wants (must match the token's).
        conference: ConferenceId,
        /// MIME types of the codecs this client decodes (`RTCRtpReceiver.getCapabilities`),
        /// e.g. `video/VP8`. The SFU offers it no track in another codec and says so instead.
        /// Absent: every codec the SFU forwards.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receive_codecs: Option<Vec<String>>,
    },
    /// Announce a track before offering it on the publisher connection. `trackId` is the
    /// `msid` track ID of the track's section in the client's offer (Chromium's is
    /// `MediaStreamTrack.id`, Firefox's is not).
    Publish {
        /// The browser's track ID (1 to [`MAX_TRACK_ID_BYTES`] bytes).
        track_id: String,
        /// Microphone, camera or screen.
        source: TrackSource,
        /// Whether it starts muted.
        #[serde(default)]
        muted: bool,
    },
    /// Stop publishing a track announced before.
    Unpublish {
        /// The browser's track ID.
        track_id: String,
    },
    /// Mute or unmute one's own track.
    MuteTrack {
        /// The browser's track ID.
        track_id: String,
        /// The new state.
        muted: bool,
    },
    /// An offer on the publisher connection.
    Offer {
        /// The SDP.
        sdp: String,
    },
    /// The answer to the SFU's offer on the subscriber connection.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// A trickled ICE candidate for one of the two connections.
    Candidate {
        /// Which connection.
        target: PeerTarget,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Choose the simulcast layer of a subscribed video track.
    SetVideoLayer {
        /// The room's track ID.
        track: TrackId,
        /// The wanted layer.
        layer: VideoLayer,
    },
    /// What the client shows of the video tracks it receives: the SFU sends a hidden tile no
    /// video and a small one a smaller simulcast layer. Tracks not named keep what they had
    /// (until told, a track counts as shown in a large tile). Send it again when tiles change
    /// size or scroll in or out of view.
    ViewTracks {
        /// One entry per track (at most [`MAX_TRACK_VIEWS`]).
        views: Vec<TrackView>,
    },
    /// Send a chat message to everyone, or privately to one participant.
    Chat {
        /// The text (at most [`MAX_CHAT_BYTES`]).
        text: String,
        /// The one recipient of a private message.
        #[serde(default)]
        to: Option<ParticipantId>,
    },
    /// Mute someone's microphone (`blocked: true`) or allow them to speak again; needs
    /// `manageMicrophones`.
    BlockMicrophone {
        /// Whose microphone.
        participant: ParticipantId,
        /// Mute and keep muted, or allow to speak.
        blocked: bool,
    },
    /// Make someone a speaker or a listener (or a moderator); needs `changeRoles`.
    SetRole {
        /// Who.
        participant: ParticipantId,
        /// The new role.
        role: Role,
    },
    /// Exclude someone; their token and identity cannot come back. Needs `exclude`.
    Exclude {
        /// Who.
        participant: ParticipantId,
    },
    /// End the meeting for everyone; needs `endMeeting`.
    EndMeeting,
    /// Start or stop recording; needs `record`.
    SetRecording {
        /// Start (`true`) or stop.
        active: bool,
    },
    // Presentations (docs/presentations.md).
    /// Ask for an upload ticket for `POST /api/v1/presentations`; needs `present`. Answered
    /// with [`ServerMessage::PresentationUploadTicket`].
    RequestPresentationUpload,
    /// Ask for a fresh view ticket (the one given on admission expires); answered with
    /// [`ServerMessage::PresentationAccess`].
    RequestPresentationAccess,
    /// Show an uploaded presentation to everyone, from its first page; needs `present`. Someone
    /// else's presentation is replaced only by a moderator.
    ShowPresentation {
        /// The descriptor `POST /api/v1/presentations` answered.
        descriptor: String,
    },
    /// Show another page; only the presenter.
    SetPresentationPage {
        /// The page (1-based).
        page: u32,
    },
    /// Hand the presentation to another participant who holds `present`; the presenter or a
    /// moderator.
    HandOverPresentation {
        /// The new presenter.
        participant: ParticipantId,
    },
    /// Stop showing the presentation; the presenter or a moderator.
    StopPresentation,
    /// Leave the room.
    Leave,
}

/// SFU → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// The owner is absent and the room does not admit people without them: wait.
    Waiting,
    /// Admitted: who you are and what the room holds.
    Joined {
        /// Your participant ID.
        you: ParticipantId,
        /// Your role.
        role: Role,
        /// Your rights.
        grants: Grants,
        /// Everyone admitted, you included.
        participants: Vec<ParticipantInfo>,
        /// Every published track (they arrive on the subscriber connection).
        tracks: Vec<TrackInfo>,
        /// The last chat messages for everyone (and private ones to you).
        chat: Vec<ChatMessage>,
        /// Whether a recording runs.
        recording: bool,
        /// Whether the room is audio only (video is refused).
        audio_only: bool,
        /// The presentation shown now, if any (its pages need the view ticket of
        /// [`ServerMessage::PresentationAccess`], sent right after).
        #[serde(default)]
        presentation: Option<PresentationState>,
        /// Who was the active speaker lately, the most recent first (at most
        /// [`MAX_RECENT_SPEAKERS`]): a grid with no room for everyone shows them.
        #[serde(default)]
        speakers: Vec<ParticipantId>,
        /// Who speaks now, if anybody.
        #[serde(default)]
        active_speaker: Option<ParticipantId>,
    },
    /// The answer to the client's publisher offer.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// An offer on the subscriber connection (answer with [`ClientMessage::Answer`]).
    Offer {
        /// The SDP.
        sdp: String,
    },
    /// A trickled ICE candidate of the SFU.
    Candidate {
        /// Which connection.
        target: PeerTarget,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Someone was admitted.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone's role or microphone block changed.
    ParticipantUpdated {
        /// Their new state.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        participant: ParticipantId,
        /// Why.
        reason: CloseReason,
    },
    /// Your own role changed; these are your rights now.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The new rights.
        grants: Grants,
    },
    /// A track was published.
    TrackPublished {
        /// The track.
        track: TrackInfo,
    },
    /// To a publisher: the simulcast layers of its track that someone receives now. The client
    /// stops encoding the others (`RTCRtpSender.setParameters` with `active: false`) until they
    /// are named again; the lowest layer is always named, and so is every layer the SFU has
    /// not received yet (the client may not have started it).
    LayersWanted {
        /// The client's track ID (as in `publish`).
        track_id: String,
        /// The layers to send, lowest first.
        layers: Vec<VideoLayer>,
    },
    /// A track was unpublished.
    TrackUnpublished {
        /// The room's track ID.
        track: TrackId,
    },
    /// A track was muted or unmuted.
    TrackMuted {
        /// The room's track ID.
        track: TrackId,
        /// The new state.
        muted: bool,
    },
    /// Your microphone was muted by someone else (`blocked: true`) or you may speak again.
    MicrophoneBlocked {
        /// The new state.
        blocked: bool,
        /// Who did it.
        by: ParticipantId,
    },
    /// The loudest participant changed (`None`: silence).
    ActiveSpeaker {
        /// Who speaks.
        participant: Option<ParticipantId>,
    },
    /// A chat message.
    Chat {
        /// The message.
        message: ChatMessage,
    },
    /// A recording started or stopped.
    Recording {
        /// Whether one runs now.
        active: bool,
        /// Who started or stopped it.
        by: ParticipantId,
    },
    /// The answer to [`ClientMessage::RequestPresentationUpload`].
    PresentationUploadTicket {
        /// Send it as `Authorization: Bearer` with `POST /api/v1/presentations`.
        ticket: String,
        /// When it expires (seconds since the epoch).
        expires_at: i64,
    },
    /// A view ticket: sent on admission and on [`ClientMessage::RequestPresentationAccess`].
    PresentationAccess {
        /// Send it as `Authorization: Bearer` with `GET /api/v1/presentations/{id}/pages/{n}`.
        ticket: String,
        /// When it expires (seconds since the epoch).
        expires_at: i64,
    },
    /// The presentation shown changed: shown, another page, another presenter, or stopped
    /// (`None`).
    Presentation {
        /// What is shown now.
        presentation: Option<PresentationState>,
        /// Who changed it (`None` when the presenter left or lost the right).
        by: Option<ParticipantId>,
    },
    /// Something failed; fatal codes close the websocket afterwards.
    Error {
        /// What.
        code: ErrorCode,
        /// For people.
        message: String,
    },
    /// The session ends; the websocket closes after this.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// One JSON Schema (draft-07) describing both directions, for generating the portal's
/// TypeScript types: `ClientMessage` and `ServerMessage` and everything they use are under
/// `definitions`, and the root names both so generators emit them.
pub fn schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let client = generator.subschema_for::<ClientMessage>();
    let server = generator.subschema_for::<ServerMessage>();
    let definitions = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Signal",
        "description": "The SFU's signaling messages (generated from proto::signal; do not edit).",
        "type": "object",
        "properties": { "client": client, "server": server },
        "required": ["client", "server"],
        "additionalProperties": false,
        "definitions": definitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_carry_a_type_tag_and_camel_case_fields() {
        let json = serde_json::json!({
            "type": "publish", "trackId": "abc", "source": "screen"
        });
        let message: ClientMessage = serde_json::from_value(json).expect("parse");
        assert_eq!(
            message,
            ClientMessage::Publish {
                track_id: "abc".into(),
                source: TrackSource::Screen,
                muted: false
            }
        );
        let json = serde_json::to_value(ClientMessage::BlockMicrophone {
            participant: ParticipantId::from("p1"),
            blocked: true,
        })
        .expect("serialize");
        assert_eq!(json["type"], "blockMicrophone");
        assert_eq!(json["participant"], "p1");
    }

    #[test]
    fn server_errors_name_their_code() {
        let json = serde_json::to_value(ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message: "the room is full".into(),
        })
        .expect("serialize");
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "roomFull");
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).expect("serialize"),
                code.as_str()
            );
        }
    }

    #[test]
    fn every_close_reason_is_named_as_on_the_wire() {
        for reason in CloseReason::ALL {
            assert_eq!(
                serde_json::to_value(reason).expect("serialize"),
                reason.as_str()
            );
        }
        assert_eq!(CloseReason::Moved.as_str(), "moved");
        assert_eq!(ErrorCode::WrongPod.as_str(), "wrongPod");
        assert!(
            ErrorCode::WrongPod.is_fatal(),
            "a refused join closes the websocket"
        );
    }

    #[test]
    fn candidates_round_trip_like_the_browser_shape() {
        let json = serde_json::json!({
            "type": "candidate", "target": "subscriber",
            "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                          "sdpMid": "0", "sdpMLineIndex": 0}
        });
        let message: ClientMessage = serde_json::from_value(json.clone()).expect("parse");
        assert_eq!(serde_json::to_value(&message).expect("serialize"), json);
    }

    #[test]
    fn the_combined_schema_names_both_directions() {
        let schema = schema();
        let definitions = schema["definitions"].as_object().expect("definitions");
        for name in [
            "ClientMessage",
            "ServerMessage",
            "Grants",
            "Role",
            "IceCandidate",
        ] {
            assert!(definitions.contains_key(name), "{name} missing");
        }
        assert_eq!(
            schema["properties"]["client"]["$ref"],
            "#/definitions/ClientMessage"
        );
    }

    #[test]
    fn the_schema_of_both_directions_generates() {
        let client = schemars::schema_for!(ClientMessage);
        let server = schemars::schema_for!(ServerMessage);
        assert!(
            serde_json::to_string(&client)
                .expect("json")
                .contains("setRole")
        );
        assert!(
            serde_json::to_string(&server)
                .expect("json")
                .contains("activeSpeaker")
        );
    }
}
