//! The conference service's internal API as the SFU reads it: `GET {api_url}/api/v1/internal/…`
//! with a short-lived service token of `sfu:{pod}`, shared by the revocation and the placement
//! sources.

use std::time::Duration;

use chrono::Utc;
use proto::token::SERVICE_AUDIENCE;
use proto::{ServiceClaims, TokenKey};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A reader of one internal API path.
#[derive(Clone)]
pub struct InternalGet {
    client: reqwest::Client,
    url: String,
    key: TokenKey,
    subject: String,
    /// What the answer is, for error messages ("the revocation list").
    what: &'static str,
}

impl std::fmt::Debug for InternalGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalGet")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl InternalGet {
    /// Reads `{api_url}/api/v1/internal/{path}` as `sfu:{pod}`; `what` names the answer in
    /// errors.
    ///
    /// # Errors
    /// [`Error::ReportClient`] when the HTTP client cannot be built.
    pub fn new(
        api_url: &str,
        path: &str,
        key: TokenKey,
        pod: &str,
        what: &'static str,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::ReportClient)?;
        Ok(Self {
            client,
            url: format!("{}/api/v1/internal/{path}", api_url.trim_end_matches('/')),
            key,
            subject: format!("sfu:{pod}"),
            what,
        })
    }

    /// The answer, or what went wrong in words fit for a log line.
    pub async fn get<T: DeserializeOwned>(&self) -> std::result::Result<T, String> {
        let now = Utc::now().timestamp();
        let token = self
            .key
            .sign_service(&ServiceClaims {
                sub: self.subject.clone(),
                aud: SERVICE_AUDIENCE.into(),
                iat: now,
                exp: now + 60,
            })
            .map_err(|err| format!("signing a service token: {err}"))?;
        let response = self
            .client
            .get(&self.url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|err| format!("the conference service is unreachable: {err}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the conference service answered {status}"));
        }
        response
            .json()
            .await
            .map_err(|err| format!("{} does not parse: {err}", self.what))
    }
}
