//! The join token: a short-lived HS256 JWT the API signs and the SFU verifies with the shared
//! key, plus the service token SFU pods use to report attendance to the API.
//!
//! Verification never reads the clock: the caller passes `now` (seconds since the Unix epoch),
//! so the SFU's core and the tests run on virtual time.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::ids::{ConferenceId, MeetingId};
use crate::role::{AccountLevel, Grants, Role};

/// Audience of join tokens.
pub const JOIN_AUDIENCE: &str = "conclave-sfu";
/// Audience of service tokens (component to API).
pub const SERVICE_AUDIENCE: &str = "conclave-internal";
/// Seconds a token's `iat` may lie in the future (clock skew between pods).
const SKEW_SECONDS: i64 = 60;

/// Which media a room carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Media {
    /// Audio and video (the default).
    #[default]
    AudioVideo,
    /// Audio only: video tracks are refused.
    AudioOnly,
}

impl Media {
    /// The camelCase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Media::AudioVideo => "audioVideo",
            Media::AudioOnly => "audioOnly",
        }
    }

    /// Parses the camelCase name; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "audioVideo" => Some(Media::AudioVideo),
            "audioOnly" => Some(Media::AudioOnly),
            _ => None,
        }
    }
}

/// The room settings the SFU enforces, carried in the token so the SFU needs no database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomSettings {
    /// Refuse joins beyond this many participants (`None`: the SFU's own limit).
    pub max_participants: Option<u32>,
    /// Whether people may be admitted while the owner is absent (otherwise they wait).
    pub allow_join_without_owner: bool,
    /// Audio and video, or audio only.
    pub media: Media,
    /// The UDP ports this conference's peer connections bind to on the SFU (its placement's
    /// range); `None`: the SFU's configured default range.
    #[serde(default)]
    pub udp_ports: Option<UdpPorts>,
    /// The revision of the conference definition these settings come from (raised by every
    /// edit). A room applies the settings of a token only when its revision is newer than the
    /// one it holds, so an older token cannot undo an edit. Absent in older tokens: 0.
    #[serde(default)]
    pub revision: i64,
    /// Whether moderators of level moderatorPlus may record the meeting (the conference's
    /// `recording.allowed`). Absent in older tokens: allowed.
    #[serde(default = "allowed")]
    pub recording_allowed: bool,
    /// The conference's topic, written into a recording's `recording.json`. Absent in older
    /// tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

fn allowed() -> bool {
    true
}

/// An inclusive UDP port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct UdpPorts {
    /// The first port.
    pub first: u16,
    /// The last port (inclusive).
    pub last: u16,
}

/// `ports` for people: `40003, 40007-40010` (runs joined), the first `at_most` runs and a
/// count of the rest. Used where ports that cannot be bound are logged and reported.
pub fn describe_ports(ports: &[u16], at_most: usize) -> String {
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for &port in ports {
        match runs.last_mut() {
            Some((_, last)) if u32::from(*last) + 1 == u32::from(port) => *last = port,
            _ => runs.push((port, port)),
        }
    }
    let mut text: Vec<String> = runs
        .iter()
        .take(at_most)
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    if runs.len() > at_most {
        text.push(format!("and {} more ranges", runs.len() - at_most));
    }
    text.join(", ")
}

/// The claims of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinClaims {
    /// The identity: `account:<uuid>` for accounts, `guest:<uuid>` for guests. Reconnecting
    /// with the same identity replaces the old session.
    pub sub: String,
    /// The display name shown to others.
    pub name: String,
    /// The conference joined.
    pub conf: ConferenceId,
    /// Its meeting ID, for display.
    pub mid: MeetingId,
    /// The role on entering the room.
    pub role: Role,
    /// The account's level; `None` for guests.
    pub level: Option<AccountLevel>,
    /// Whether this identity owns the conference (ends the waiting room when present).
    pub owner: bool,
    /// Settings the SFU enforces.
    pub room: RoomSettings,
    /// Audience, always [`JOIN_AUDIENCE`].
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// A unique token ID: an excluded participant's tokens are remembered by it.
    pub jti: String,
    /// The ID of the API request that issued the token (`x-request-id`), so that the SFU's log
    /// lines of the session can be found from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// The account's token epoch when the token was issued: raised when the account's level
    /// changes, it is disabled or its password is reset, which revokes older tokens.
    #[serde(default)]
    pub ep: u32,
    /// The client's network as the API saw it when issuing the token (an IPv4 address, or the
    /// /64 of an IPv6 one): the SFU counts guest seats per client by it, and reports it with a
    /// guest's exclusion so that other guest IDs from there are refused at `/join`. Absent: the
    /// SFU uses the websocket's peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
    /// The SFU pod the token is for: the pod the conference was assigned to when the token was
    /// issued (in a cluster). An SFU whose pod name differs refuses it with `wrongPod`, so that
    /// the participants of one meeting never end up in two rooms on two pods. `None` (standalone
    /// mode, older tokens): any SFU that holds the conference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// The network a client address stands for when counting per client ([`JoinClaims::cli`]): an
/// IPv4 address itself, an IPv6 address's /64 (one household or host usually holds a whole
/// /64, so counting single IPv6 addresses would count nothing). `None` for loopback: a
/// connection from this machine is a local proxy (or a test) that stands for many clients.
pub fn client_network(ip: std::net::IpAddr) -> Option<String> {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    Some(match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    })
}

impl JoinClaims {
    /// The rights this participant starts with.
    pub fn grants(&self) -> Grants {
        Grants::of(self.role, self.level)
    }
}

/// The claims of a service token (an SFU pod reporting to the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceClaims {
    /// Who speaks, e.g. `sfu:conclave-sfu-0`.
    pub sub: String,
    /// Audience, always [`SERVICE_AUDIENCE`].
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, or claims of the wrong shape.
    #[error("the token is malformed")]
    Malformed,
    /// Signed with another key or tampered with.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Its `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// Issued in the future beyond the allowed clock skew.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Made for another audience.
    #[error("the token was made for another audience")]
    WrongAudience,
    /// The signing key is too short.
    #[error("the signing key must be at least 32 bytes")]
    WeakKey,
    /// Signing failed.
    #[error("signing the token failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// The shared HS256 key that signs and verifies tokens.
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A key from secret bytes.
    ///
    /// # Errors
    /// [`TokenError::WeakKey`] when the secret is shorter than 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        if secret.len() < 32 {
            return Err(TokenError::WeakKey);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// Signs join claims.
    ///
    /// # Errors
    /// [`TokenError::Signing`] when serialisation fails.
    pub fn sign_join(&self, claims: &JoinClaims) -> Result<String, TokenError> {
        self.sign(claims)
    }

    /// Signs service claims.
    ///
    /// # Errors
    /// [`TokenError::Signing`] when serialisation fails.
    pub fn sign_service(&self, claims: &ServiceClaims) -> Result<String, TokenError> {
        self.sign(claims)
    }

    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(TokenError::Signing)
    }

    /// Verifies a join token at `now` (seconds since the epoch).
    ///
    /// # Errors
    /// The [`TokenError`] that says why it was refused.
    pub fn verify_join(&self, token: &str, now: i64) -> Result<JoinClaims, TokenError> {
        let claims: JoinClaims = self.verify(token, JOIN_AUDIENCE)?;
        check_times(claims.iat, claims.exp, now)?;
        Ok(claims)
    }

    /// Verifies a service token at `now` (seconds since the epoch).
    ///
    /// # Errors
    /// The [`TokenError`] that says why it was refused.
    pub fn verify_service(&self, token: &str, now: i64) -> Result<ServiceClaims, TokenError> {
        let claims: ServiceClaims = self.verify(token, SERVICE_AUDIENCE)?;
        check_times(claims.iat, claims.exp, now)?;
        Ok(claims)
    }

    pub(crate) fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Times are checked against the caller's `now`, not the system clock.
        validation.validate_exp = false;
        validation.set_audience(&[audience]);
        jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                _ => TokenError::Malformed,
            })
    }
}

pub(crate) fn check_times(iat: i64, exp: i64, now: i64) -> Result<(), TokenError> {
    if now >= exp {
        return Err(TokenError::Expired);
    }
    if iat > now + SKEW_SECONDS {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn port_lists_read_as_runs() {
        assert_eq!(
            describe_ports(&[40003, 40007, 40008, 40009], 5),
            "40003, 40007-40009"
        );
        assert_eq!(describe_ports(&[1, 3, 5, 7], 2), "1, 3, and 2 more ranges");
        assert_eq!(describe_ports(&[], 3), "");
    }

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(now: i64) -> JoinClaims {
        JoinClaims {
            sub: "guest:1".into(),
            name: "Ada".into(),
            conf: ConferenceId::from("c1"),
            mid: MeetingId::from("123456789"),
            role: Role::Listener,
            level: None,
            owner: false,
            room: RoomSettings {
                max_participants: Some(10),
                allow_join_without_owner: true,
                media: Media::AudioVideo,
                udp_ports: Some(UdpPorts {
                    first: 40000,
                    last: 40019,
                }),
                revision: 3,
                recording_allowed: true,
                topic: None,
            },
            aud: JOIN_AUDIENCE.into(),
            iat: now,
            exp: now + 300,
            jti: "t1".into(),
            rid: Some("req-1".into()),
            ep: 0,
            cli: Some("192.0.2.1".into()),
            pod: Some("conclave-sfu-1".into()),
        }
    }

    #[test]
    fn a_signed_token_verifies_before_it_expires() {
        let key = TokenKey::new(SECRET).expect("key");
        let token = key.sign_join(&claims(1_000)).expect("sign");
        assert_eq!(key.verify_join(&token, 1_100), Ok(claims(1_000)));
        assert_eq!(key.verify_join(&token, 1_300), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = TokenKey::new(SECRET)
            .expect("key")
            .sign_join(&claims(0))
            .expect("sign");
        let other = TokenKey::new(b"another-key-another-key-another-key").expect("key");
        assert_eq!(other.verify_join(&token, 10), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_service_token_is_not_a_join_token() {
        let key = TokenKey::new(SECRET).expect("key");
        let service = key
            .sign_service(&ServiceClaims {
                sub: "sfu:0".into(),
                aud: SERVICE_AUDIENCE.into(),
                iat: 0,
                exp: 100,
            })
            .expect("sign");
        assert!(key.verify_join(&service, 10).is_err());
        assert!(key.verify_service(&service, 10).is_ok());
        let join = key.sign_join(&claims(0)).expect("sign");
        assert_eq!(
            key.verify_service(&join, 10),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn garbage_and_weak_keys_are_refused() {
        let key = TokenKey::new(SECRET).expect("key");
        assert_eq!(key.verify_join("not.a.jwt", 0), Err(TokenError::Malformed));
        assert!(matches!(TokenKey::new(b"short"), Err(TokenError::WeakKey)));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_and_loopback_is_no_client() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        assert_eq!(client_network(a).as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(client_network(a), client_network(b));
        let v4: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(client_network(v4).as_deref(), Some("192.0.2.7"));
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(client_network(mapped).as_deref(), Some("192.0.2.7"));
        for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let local: std::net::IpAddr = local.parse().expect("ip");
            assert_eq!(client_network(local), None, "a local proxy is no client");
        }
    }

    #[test]
    fn the_pod_travels_in_the_token_and_older_tokens_name_none() {
        let key = TokenKey::new(SECRET).expect("key");
        let token = key.sign_join(&claims(0)).expect("sign");
        let verified = key.verify_join(&token, 10).expect("verify");
        assert_eq!(verified.pod.as_deref(), Some("conclave-sfu-1"));
        let mut json = serde_json::to_value(claims(0)).expect("json");
        assert_eq!(json["pod"], "conclave-sfu-1");
        json.as_object_mut().expect("object").remove("pod");
        let older: JoinClaims = serde_json::from_value(json).expect("parse");
        assert_eq!(older.pod, None);
        let standalone = JoinClaims {
            pod: None,
            ..claims(0)
        };
        let json = serde_json::to_value(standalone).expect("json");
        assert!(json.get("pod").is_none(), "absent, not null: {json}");
    }

    #[test]
    fn a_token_from_the_future_is_refused() {
        let key = TokenKey::new(SECRET).expect("key");
        let token = key.sign_join(&claims(10_000)).expect("sign");
        assert_eq!(key.verify_join(&token, 1_000), Err(TokenError::NotYetValid));
    }
}
