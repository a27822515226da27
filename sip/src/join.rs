//! Checks a caller's meeting ID and password with the conference service, exactly as the
//! portal's guest join does: `POST /api/v1/join`. The API applies its guest throttling to the
//! caller's address, which the gateway passes in `X-Forwarded-For` (the API honours it when
//! the gateway is one of its `--trusted-proxies`; otherwise every caller counts as the
//! gateway's own address, which is stricter, never looser).

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::ivr::Answer;
use crate::room::Admission;

/// A client of the conference service's join endpoint.
#[derive(Debug, Clone)]
pub struct JoinClient {
    http: reqwest::Client,
    url: String,
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
}

impl JoinClient {
    /// A client of the API at `base_url` (e.g. `http://conclave-api:8080`).
    pub fn new(base_url: &str) -> JoinClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        JoinClient {
            http,
            url: format!("{}/api/v1/join", base_url.trim_end_matches('/')),
        }
    }

    /// Asks whether `meeting_id` (and `password`) admit a caller shown as `display_name`,
    /// calling from `caller`, and when admitted, where to enter the room. Failures to reach
    /// the API are [`Answer::Error`], logged.
    pub async fn check(
        &self,
        meeting_id: &str,
        password: Option<&str>,
        display_name: &str,
        caller: IpAddr,
    ) -> (Answer, Option<Admission>) {
        let body = serde_json::json!({
            "meetingId": meeting_id,
            "password": password,
            "displayName": display_name,
        });
        let response = match self
            .http
            .post(&self.url)
            .header("x-forwarded-for", caller.to_string())
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
        let answer = answer_of(status, code, detail.as_ref().and_then(|d| d.retry_after));
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

/// How a caller appears in the meeting: "Phone ···1234", the last four digits of the caller
/// ID (the From user part), or just "Phone" without digits.
pub fn display_name(caller_id: Option<&str>) -> String {
    let digits: Vec<char> = caller_id
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return "Phone".to_owned();
    }
    let last: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("Phone \u{b7}\u{b7}\u{b7}{last}")
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
    fn callers_are_named_by_their_last_four_digits() {
        assert_eq!(display_name(Some("+33 1 23 45 67 89")), "Phone ···6789");
        assert_eq!(display_name(Some("12")), "Phone ···12");
        assert_eq!(display_name(Some("anonymous")), "Phone");
        assert_eq!(display_name(None), "Phone");
    }
}
