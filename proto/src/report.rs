//! What an SFU reports to the conference service: who joined and left a room (the archive's
//! attendance), the participant count (conference status), a moderator ending the meeting, and
//! media ports the SFU cannot bind (a conference condition and an Event in a cluster).
//!
//! In a cluster an SFU pod sends these as JSON to `POST /api/v1/internal/room-events` with a
//! service token; in standalone mode the embedded SFU hands them over in-process.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{ConferenceId, RecordingId};

/// One report about one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomReport {
    /// The conference the room belongs to.
    pub conference: ConferenceId,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// Participants admitted to the room after the event.
    pub participants: u32,
    /// What happened.
    pub event: RoomEvent,
}

/// What happened in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RoomEvent {
    /// Someone was admitted.
    #[serde(rename_all = "camelCase")]
    Joined {
        /// The token's `sub` (`account:<uuid>`, `guest:<uuid>`).
        identity: String,
        /// The display name.
        display_name: String,
    },
    /// Someone left, was excluded, or vanished.
    #[serde(rename_all = "camelCase")]
    Left {
        /// The token's `sub`.
        identity: String,
    },
    /// A moderator excluded someone (reported before their `left`): the conference service
    /// keeps the exclusion for the rest of the meeting and refuses them at `/join`.
    #[serde(rename_all = "camelCase")]
    Excluded {
        /// The token's `sub`.
        identity: String,
        /// A guest's network as `/join` saw it (the token's `addr`): other guest IDs from the
        /// same network are refused too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    /// A moderator ended the meeting for everyone.
    Ended,
    /// A moderator of level moderatorPlus started a recording: its files appear under
    /// `recordings/{recording}/` in the file store as it runs.
    #[serde(rename_all = "camelCase")]
    RecordingStarted {
        /// The recording.
        recording: RecordingId,
        /// Who started it (the token's `sub`).
        identity: String,
        /// Their display name.
        display_name: String,
    },
    /// A recording stopped (by a moderator, the end of the meeting or the last participant
    /// leaving) and every file of it is in the file store, `stopped.json` last.
    #[serde(rename_all = "camelCase")]
    RecordingStopped {
        /// The recording.
        recording: RecordingId,
    },
    /// What the SFU found of the conference's UDP ports: when its room opens (every port of the
    /// range tried) and whenever a peer connection finds more ports it cannot bind. Ports in
    /// `unusable` are held by another process on the SFU's node (or the bind address is wrong):
    /// media for some participants may fail. Empty: every port tried could be bound.
    #[serde(rename_all = "camelCase")]
    MediaPorts {
        /// The SFU pod that tried them.
        pod: String,
        /// The first port of the conference's range.
        first: u16,
        /// The last port of the range (inclusive).
        last: u16,
        /// The ports of the range that cannot be bound now, ascending.
        #[serde(default)]
        unusable: Vec<u16>,
    },
}

/// What the conference service revoked recently: every SFU pod asks for this list
/// (`GET /api/v1/internal/revocations`) every few seconds, closes the live sessions it names and
/// refuses join tokens issued before. The list covers the last join-token lifetime and more,
/// so a pod that restarts or takes over a meeting knows everything an unexpired token could
/// still carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revocations {
    /// Oldest first.
    pub revocations: Vec<Revocation>,
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// Unique: a pod applies each once.
    pub id: String,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// What was revoked.
    #[serde(flatten)]
    pub what: Revoked,
}

/// What a [`Revocation`] takes away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Revoked {
    /// An account's level changed, it was disabled or deleted, or its password was reset:
    /// its sessions close (`revoked`) and tokens with an older `ep` are refused.
    Account {
        /// `account:<uuid>`.
        identity: String,
        /// The account's token epoch now.
        epoch: u32,
    },
    /// A moderator excluded an identity from a conference.
    Excluded {
        /// The conference.
        conference: ConferenceId,
        /// The excluded identity.
        identity: String,
    },
    /// A moderator ended a conference: tokens issued up to `at` are refused.
    Ended {
        /// The conference.
        conference: ConferenceId,
    },
}

/// The conferences placed on one SFU pod, as the conference service knows them
/// (`GET /api/v1/internal/placements`, asked by the pod itself with its service token every
/// few seconds). The pod refuses joins for conferences not in the list (`wrongPod`) and tells
/// the participants of a room whose conference left it to move (`closed {reason: moved}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placements {
    /// The pod asked about (the caller's own name, from its service token).
    pub pod: String,
    /// The conferences whose assignment names the pod.
    pub conferences: Vec<ConferenceId>,
    /// Set when the conference service places nothing on pods (standalone mode, where the one
    /// SFU holds every conference): the pod checks no placement then, and `conferences` is
    /// empty.
    #[serde(default)]
    pub holds_everything: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_use_camel_case_and_a_kind_tag() {
        let report = RoomReport {
            conference: ConferenceId::from("c1"),
            at: "2026-01-01T10:00:00Z".into(),
            participants: 1,
            event: RoomEvent::Joined {
                identity: "guest:1".into(),
                display_name: "Ada".into(),
            },
        };
        let json = serde_json::to_value(&report).expect("serialize");
        assert_eq!(json["event"]["kind"], "joined");
        assert_eq!(json["event"]["displayName"], "Ada");
        let back: RoomReport = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, report);
    }

    #[test]
    fn recording_events_travel_as_camel_case_json() {
        let started = RoomEvent::RecordingStarted {
            recording: RecordingId::from("r1"),
            identity: "account:1".into(),
            display_name: "Ada".into(),
        };
        let json = serde_json::to_value(&started).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({ "kind": "recordingStarted", "recording": "r1", "identity": "account:1", "displayName": "Ada" })
        );
        let stopped = RoomEvent::RecordingStopped {
            recording: RecordingId::from("r1"),
        };
        let json = serde_json::to_value(&stopped).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({ "kind": "recordingStopped", "recording": "r1" })
        );
        let back: RoomEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, stopped);
    }

    #[test]
    fn unusable_media_ports_travel_as_camel_case_json() {
        let event = RoomEvent::MediaPorts {
            pod: "sfu-0".into(),
            first: 40000,
            last: 40019,
            unusable: vec![40003],
        };
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({ "kind": "mediaPorts", "pod": "sfu-0", "first": 40000, "last": 40019, "unusable": [40003] })
        );
        let back: RoomEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }
}
