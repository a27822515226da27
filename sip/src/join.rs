//! Checks a caller's meeting ID and password with the conference service: `POST /api/v1/join`
//! with a `phone` section (the caller ID and the caller's address), authenticated by a
//! short-lived service token (`sip:gateway`) signed with the join-token secret the API and the
//! SFU share. The API checks the ID and password exactly as for guests, counts failed guesses
//! on the caller's address, names the caller ("Phone ···1234") and makes them a listener.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::token::SERVICE_AUDIENCE;
use proto::{ServiceClaims, TokenKey};
use serde::Deserialize;

use crate::config::Config;
use crate::ivr::Answer;
use crate::room::Admission;
use crate::{Error, Result};

/// The subject of the gateway's service tokens: the API lets only `sip:…` join for phone
/// callers.
pub const SERVICE_SUBJECT: &str = "sip:gateway";
/// Seconds a service token lives: one request, with room for clock skew.
const SERVICE_TOKEN_SECONDS: i64 = 60;

/// A client of the conference service's join endpoint.
#[derive(Clone)]
pub struct JoinClient {
    http: reqwest::Client,
    url: String,
    key: TokenKey,
}

impl std::fmt::Debug for JoinClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The part of an API error the gateway reads.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// The part of the join answer the gateway reads.
#[derive(Debug, Deserialize)]
struct Admitted {
    token: String,
    endpoint: String,
    conference: AdmittedConference,
}

#[derive(Debug, Deserialize)]
struct AdmittedConference {
    id: proto::ConferenceId,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorDetail {
    code: String,
    retry_after: Option<u64>,
    /// For a meeting not open yet: from when it may be joined.
    opens_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl JoinClient {
    /// A client of the API at `--sip-api-url` that signs its service tokens with the
    /// configured join-token secret ([`Config::resolve_secret`] fills it).
    ///
    /// # Errors
    /// [`Error::ServiceCredential`] when the secret is missing or shorter than 32 bytes.
    pub fn new(config: &Config) -> Result<JoinClient> {
        let secret = config.join_token_secret.expose();
        if secret.is_empty() {
            return Err(Error::ServiceCredential(format!(
                "the gateway needs the join-token secret the API signs with: set {} or --sip-join-token-secret-file",
                crate::config::JOIN_TOKEN_SECRET_ENV
            )));
        }
        let key = TokenKey::new(secret.as_bytes()).map_err(|err| {
            Error::ServiceCredential(format!("the join-token secret cannot be used: {err}"))
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Ok(JoinClient {
            http,
            url: format!("{}/api/v1/join", config.api_url.trim_end_matches('/')),
            key,
        })
    }

    /// Asks whether `meeting_id` (and `password`) admit the caller with `caller_id` (the From
    /// user part; the API names the caller by its last four digits) calling from `caller`, and
    /// when admitted, where to enter the room. Failures to reach the API are
    /// [`Answer::Error`], logged (without the caller's number or address).
    pub async fn check(
        &self,
        meeting_id: &str,
        password: Option<&str>,
        caller_id: Option<&str>,
        caller: IpAddr,
    ) -> (Answer, Option<Admission>) {
        let token = match self.service_token() {
            Ok(token) => token,
            Err(err) => {
                tracing::error!(cause = %err, "signing a service token failed");
                return (Answer::Error, None);
            }
        };
        let body = serde_json::json!({
            "meetingId": meeting_id,
            "password": password,
            "phone": {
                "callerId": caller_id,
                "address": caller.to_string(),
            },
        });
        let response = match self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(cause = %err, "the conference service cannot be reached");
                return (Answer::Error, None);
            }
        };
        let status = response.status().as_u16();
        if status == 200 {
            // The join answer does not say how many are in the meeting (yet).
            let admitted = Answer::Admitted { others: None };
            return match response.json::<Admitted>().await {
                Ok(body) => (
                    admitted,
                    Some(Admission {
                        token: body.token,
                        endpoint: body.endpoint,
                        conference: body.conference.id,
                    }),
                ),
                Err(err) => {
                    tracing::error!(cause = %err, "the join answer cannot be read");
                    (Answer::Error, None)
                }
            };
        }
        let detail = response.json::<ErrorBody>().await.ok().map(|b| b.error);
        let code = detail.as_ref().map_or("", |d| d.code.as_str());
        let mut answer = answer_of(status, code, detail.as_ref().and_then(|d| d.retry_after));
        if answer == Answer::NotActive
            && let Some(opens_at) = detail.as_ref().and_then(|d| d.opens_at)
        {
            answer = opens_in(opens_at, chrono::Utc::now()).map_or(answer, Answer::OpensIn);
        }
        if answer == Answer::Error {
            tracing::warn!(status, code, "the conference service refused a join check");
        }
        (answer, None)
    }
}

/// The menu's reading of an API error (status and `error.code`).
fn answer_of(status: u16, code: &str, retry_after: Option<u64>) -> Answer {
    match (status, code) {
        (403, "wrongMeetingCredentials") | (422, _) => Answer::WrongCredentials,
        (409, "conferenceNotStarted" | "conferenceEnded") => Answer::NotActive,
        (409, "noCapacity" | "conferenceTooLarge") => Answer::Full,
        (409, "notPlacedYet") => {
            Answer::RetryAfter(Duration::from_secs(retry_after.unwrap_or(2).clamp(1, 30)))
        }
        (429, _) => Answer::TooManyAttempts,
        _ => Answer::Error,
    }
}

/// How long until a meeting that is not open yet opens (`None` when that time has passed: the
/// meeting ended or the answer is stale).
fn opens_in(
    opens_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    (opens_at - now).to_std().ok()
}

impl JoinClient {
    /// A service token for one request, valid for a minute.
    fn service_token(&self) -> std::result::Result<String, proto::TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.key.sign_service(&ServiceClaims {
            sub: SERVICE_SUBJECT.to_owned(),
            aud: SERVICE_AUDIENCE.to_owned(),
            iat: now,
            exp: now.saturating_add(SERVICE_TOKEN_SECONDS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_map_to_what_the_caller_hears() {
        assert_eq!(
            answer_of(403, "wrongMeetingCredentials", None),
            Answer::WrongCredentials
        );
        assert_eq!(answer_of(403, "excluded", None), Answer::Error);
        assert_eq!(
            answer_of(409, "conferenceNotStarted", None),
            Answer::NotActive
        );
        assert_eq!(answer_of(409, "conferenceEnded", None), Answer::NotActive);
        assert_eq!(answer_of(409, "noCapacity", None), Answer::Full);
        assert_eq!(
            answer_of(409, "notPlacedYet", Some(3)),
            Answer::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(
            answer_of(429, "tooManyAttempts", Some(60)),
            Answer::TooManyAttempts
        );
        assert_eq!(answer_of(500, "internal", None), Answer::Error);
    }

    #[test]
    fn a_gateway_without_a_usable_secret_does_not_start() {
        let mut config = Config::for_loopback(
            "127.0.0.1:5060".parse().expect("address"),
            proto::UdpPorts {
                first: 41000,
                last: 41001,
            },
            "http://127.0.0.1:8080/",
        );
        let missing = JoinClient::new(&config).expect_err("no secret");
        assert!(
            missing.to_string().contains("CONCLAVE_JOIN_TOKEN_SECRET"),
            "{missing}"
        );
        config.join_token_secret = "short".into();
        let weak = JoinClient::new(&config).expect_err("a weak secret");
        assert!(weak.to_string().contains("32 bytes"), "{weak}");
        config.join_token_secret = "a-secret-of-at-least-thirty-two-bytes".into();
        let client = JoinClient::new(&config).expect("a client");
        assert_eq!(client.url, "http://127.0.0.1:8080/api/v1/join");
        let key = TokenKey::new(b"a-secret-of-at-least-thirty-two-bytes").expect("key");
        let token = client.service_token().expect("a token");
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        )
        .expect("seconds");
        let claims = key
            .verify_service(&token, now)
            .expect("the API's key verifies it");
        assert_eq!(claims.sub, SERVICE_SUBJECT);
        assert!(!format!("{client:?}").contains("thirty-two"));
    }

    #[test]
    fn a_meeting_not_open_yet_says_when_it_opens() {
        let now = chrono::Utc::now();
        let detail: ErrorDetail = serde_json::from_value(serde_json::json!({
            "code": "conferenceNotStarted",
            "opensAt": (now + chrono::Duration::seconds(90)).to_rfc3339(),
            "startsAt": (now + chrono::Duration::seconds(390)).to_rfc3339(),
        }))
        .expect("the API's error detail");
        let opens_at = detail.opens_at.expect("opensAt");
        assert_eq!(opens_in(opens_at, now), Some(Duration::from_secs(90)));
        assert_eq!(
            opens_in(opens_at, now + chrono::Duration::seconds(91)),
            None
        );
    }
}
