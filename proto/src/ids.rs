//! Newtype identifiers. Each wraps a string so that a conference ID can never be passed where a
//! meeting ID is expected, and so that the wire format stays a plain JSON string.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

string_id!(
    /// A conference definition (a UUID in the API's store, the resource name in a cluster).
    ConferenceId
);
string_id!(
    /// An account of the conference service (a UUID).
    AccountId
);
string_id!(
    /// One participant's session in a room; stable across reconnects of the same identity.
    ParticipantId
);
string_id!(
    /// A media track published in a room.
    TrackId
);
string_id!(
    /// One recording of a conference (a UUID v4): its files live under `recordings/{id}/` in
    /// the file store.
    RecordingId
);
string_id!(
    /// The phone-friendly meeting number people type in (digits only).
    MeetingId
);

impl MeetingId {
    /// Whether the value is a well-formed meeting ID: 6 to 12 ASCII digits.
    pub fn is_well_formed(value: &str) -> bool {
        (6..=12).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_ids_are_digits_of_phone_friendly_length() {
        assert!(MeetingId::is_well_formed("123456789"));
        assert!(!MeetingId::is_well_formed("12345"));
        assert!(!MeetingId::is_well_formed("12345678a"));
        assert!(!MeetingId::is_well_formed("１２３４５６７８９"));
        assert!(!MeetingId::is_well_formed("1234567890123"));
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = ConferenceId::from("abc");
        assert_eq!(serde_json::to_string(&id).expect("serialize"), "\"abc\"");
    }
}
