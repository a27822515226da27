//! Presentations: the identifiers, the room's shared state, the file-store keys and the three
//! signed tickets that let the API serve presentation files while the SFU decides the rights.
//!
//! Room roles live in the SFU, files in the API. The SFU, which knows who holds
//! [`crate::Right::Present`], signs short-lived tickets with the join-token key both share:
//! - an **upload ticket** for a speaker, which `POST /api/v1/presentations` requires;
//! - a **view ticket** for every admitted participant, which the page images require;
//! - the API answers an upload with a **descriptor** the client hands back to the SFU to show
//!   the presentation: the SFU trusts its page count and title because the API signed them.
//!
//! Every ticket names its conference; the API reads and writes only under that conference's
//! prefix, so a ticket of one meeting never opens another's files.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{ConferenceId, ParticipantId};
use crate::token::{TokenError, TokenKey, check_times};

/// Audience of upload tickets (SFU to API).
pub const UPLOAD_AUDIENCE: &str = "conclave-presentation-upload";
/// Audience of view tickets (SFU to API).
pub const VIEW_AUDIENCE: &str = "conclave-presentation-view";
/// Audience of descriptors (API to SFU).
pub const DESCRIPTOR_AUDIENCE: &str = "conclave-presentation";
/// How long an upload ticket is valid: it is checked when the upload starts, so it only has
/// to outlive choosing a file.
pub const UPLOAD_TICKET_SECONDS: i64 = 300;
/// How long a view ticket is valid; the portal asks for a fresh one after half of it.
pub const VIEW_TICKET_SECONDS: i64 = 900;
/// How long a descriptor is valid: a speaker may show an uploaded presentation again later in
/// the same meeting.
pub const DESCRIPTOR_SECONDS: i64 = 12 * 3600;
/// Longest presentation title kept, in bytes.
pub const MAX_TITLE_BYTES: usize = 200;

/// A presentation's ID: 128 random bits as 32 lowercase hex digits, so that its files'
/// keys cannot be guessed and the ID is safe inside a file-store key.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct PresentationId(String);

impl PresentationId {
    /// An ID from 16 random bytes.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Parses 32 lowercase hex digits; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        (value.len() == 32
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(value.to_owned()))
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PresentationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PresentationId {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| "a presentation ID is 32 lowercase hex digits".into())
    }
}

impl From<PresentationId> for String {
    fn from(value: PresentationId) -> Self {
        value.0
    }
}

/// Whether a conference ID can sit in a file-store key as one segment: letters, digits, `-`,
/// `_` and `.` (UUIDs and Kubernetes names), not `.` or `..`.
pub fn is_key_safe(conference: &ConferenceId) -> bool {
    let value = conference.as_str();
    !value.is_empty()
        && value.len() <= 253
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The folder of a presentation's files in the file store (ends with `/`).
pub fn folder_key(conference: &ConferenceId, presentation: &PresentationId) -> String {
    format!("presentations/{conference}/{presentation}/")
}

/// The key of page `page` (1-based) as a PNG image: what a recorder stores as the page shown.
pub fn page_key(conference: &ConferenceId, presentation: &PresentationId, page: u32) -> String {
    format!("{}page-{page}.png", folder_key(conference, presentation))
}

/// The presentation shown in a room, as every participant sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresentationState {
    /// The presentation (its pages: `GET /api/v1/presentations/{id}/pages/{page}`).
    pub id: PresentationId,
    /// The file's name without its extension.
    pub title: String,
    /// How many pages it has.
    pub pages: u32,
    /// The page shown (1-based).
    pub page: u32,
    /// Who presents it: only they flip pages.
    pub presenter: ParticipantId,
}

/// The claims of an upload ticket: `sub` may upload into `conf` until `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadClaims {
    /// The uploader's identity (as in the join token).
    pub sub: String,
    /// The uploader's display name, kept in the presentation's metadata.
    pub name: String,
    /// The conference.
    pub conf: ConferenceId,
    /// Audience, always [`UPLOAD_AUDIENCE`].
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// The claims of a view ticket: `sub`, admitted to `conf`, may fetch its presentations' pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewClaims {
    /// The viewer's identity.
    pub sub: String,
    /// The conference.
    pub conf: ConferenceId,
    /// Audience, always [`VIEW_AUDIENCE`].
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// The claims of a descriptor: the API converted and stored presentation `pid` of `conf` with
/// `pages` pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescriptorClaims {
    /// Who uploaded it.
    pub sub: String,
    /// The conference.
    pub conf: ConferenceId,
    /// The presentation.
    pub pid: PresentationId,
    /// Its title.
    pub title: String,
    /// Its page count (at least 1).
    pub pages: u32,
    /// Audience, always [`DESCRIPTOR_AUDIENCE`].
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

impl UploadClaims {
    /// An upload ticket for `identity` in `conference`, issued at `now`.
    pub fn new(identity: &str, name: &str, conference: &ConferenceId, now: i64) -> Self {
        Self {
            sub: identity.to_owned(),
            name: name.to_owned(),
            conf: conference.clone(),
            aud: UPLOAD_AUDIENCE.into(),
            iat: now,
            exp: now + UPLOAD_TICKET_SECONDS,
        }
    }
}

impl ViewClaims {
    /// A view ticket for `identity` in `conference`, issued at `now`.
    pub fn new(identity: &str, conference: &ConferenceId, now: i64) -> Self {
        Self {
            sub: identity.to_owned(),
            conf: conference.clone(),
            aud: VIEW_AUDIENCE.into(),
            iat: now,
            exp: now + VIEW_TICKET_SECONDS,
        }
    }
}

impl TokenKey {
    /// Signs an upload ticket.
    ///
    /// # Errors
    /// [`TokenError::Signing`] when serialisation fails.
    pub fn sign_upload(&self, claims: &UploadClaims) -> Result<String, TokenError> {
        self.sign(claims)
    }

    /// Verifies an upload ticket at `now`.
    ///
    /// # Errors
    /// The [`TokenError`] that says why it was refused.
    pub fn verify_upload(&self, token: &str, now: i64) -> Result<UploadClaims, TokenError> {
        let claims: UploadClaims = self.verify(token, UPLOAD_AUDIENCE)?;
        check_times(claims.iat, claims.exp, now)?;
        Ok(claims)
    }

    /// Signs a view ticket.
    ///
    /// # Errors
    /// [`TokenError::Signing`] when serialisation fails.
    pub fn sign_view(&self, claims: &ViewClaims) -> Result<String, TokenError> {
        self.sign(claims)
    }

    /// Verifies a view ticket at `now`.
    ///
    /// # Errors
    /// The [`TokenError`] that says why it was refused.
    pub fn verify_view(&self, token: &str, now: i64) -> Result<ViewClaims, TokenError> {
        let claims: ViewClaims = self.verify(token, VIEW_AUDIENCE)?;
        check_times(claims.iat, claims.exp, now)?;
        Ok(claims)
    }

    /// Signs a descriptor.
    ///
    /// # Errors
    /// [`TokenError::Signing`] when serialisation fails.
    pub fn sign_descriptor(&self, claims: &DescriptorClaims) -> Result<String, TokenError> {
        self.sign(claims)
    }

    /// Verifies a descriptor at `now`.
    ///
    /// # Errors
    /// The [`TokenError`] that says why it was refused.
    pub fn verify_descriptor(&self, token: &str, now: i64) -> Result<DescriptorClaims, TokenError> {
        let claims: DescriptorClaims = self.verify(token, DESCRIPTOR_AUDIENCE)?;
        check_times(claims.iat, claims.exp, now)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn presentation_ids_are_32_hex_digits_and_nothing_else() {
        let id = PresentationId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), "ab".repeat(16));
        assert_eq!(PresentationId::parse(id.as_str()), Some(id.clone()));
        for bad in [
            "",
            "../../etc/passwd",
            &"AB".repeat(16),
            &"a".repeat(31),
            &"g".repeat(32),
        ] {
            assert_eq!(PresentationId::parse(bad), None, "{bad}");
        }
        assert!(serde_json::from_value::<PresentationId>(serde_json::json!("..")).is_err());
    }

    #[test]
    fn page_keys_follow_the_storage_contract() {
        let id = PresentationId::from_random([1; 16]);
        assert_eq!(
            page_key(&ConferenceId::from("c-1"), &id, 2),
            format!("presentations/c-1/{id}/page-2.png")
        );
        assert!(is_key_safe(&ConferenceId::from(
            "0b6f3c1e-aaaa-4bbb-8ccc-123456789abc"
        )));
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(!is_key_safe(&ConferenceId::from(bad)), "{bad}");
        }
    }

    #[test]
    fn a_ticket_works_only_for_its_own_purpose() {
        let key = TokenKey::new(SECRET).expect("key");
        let conference = ConferenceId::from("c1");
        let upload = key
            .sign_upload(&UploadClaims::new("guest:1", "Ada", &conference, 1_000))
            .expect("sign");
        let view = key
            .sign_view(&ViewClaims::new("guest:1", &conference, 1_000))
            .expect("sign");
        assert_eq!(
            key.verify_upload(&upload, 1_010).expect("upload").conf,
            conference
        );
        assert_eq!(key.verify_view(&view, 1_010).expect("view").sub, "guest:1");
        assert_eq!(
            key.verify_view(&upload, 1_010),
            Err(TokenError::WrongAudience)
        );
        assert!(key.verify_upload(&view, 1_010).is_err());
        assert!(key.verify_descriptor(&view, 1_010).is_err());
        assert!(
            key.verify_join(&upload, 1_010).is_err(),
            "no ticket joins a room"
        );
        assert_eq!(
            key.verify_upload(&upload, 1_000 + UPLOAD_TICKET_SECONDS),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_descriptor_carries_what_the_api_stored() {
        let key = TokenKey::new(SECRET).expect("key");
        let claims = DescriptorClaims {
            sub: "account:1".into(),
            conf: ConferenceId::from("c1"),
            pid: PresentationId::from_random([7; 16]),
            title: "Slides".into(),
            pages: 3,
            aud: DESCRIPTOR_AUDIENCE.into(),
            iat: 0,
            exp: DESCRIPTOR_SECONDS,
        };
        let token = key.sign_descriptor(&claims).expect("sign");
        assert_eq!(key.verify_descriptor(&token, 10), Ok(claims));
        let other = TokenKey::new(b"another-key-another-key-another-key").expect("key");
        assert_eq!(
            other.verify_descriptor(&token, 10),
            Err(TokenError::BadSignature)
        );
    }
}
