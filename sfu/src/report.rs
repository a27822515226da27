//! Room reports to the conference service: who joined and left (the archive's attendance),
//! the participant count, and the end.

use std::sync::Arc;

use chrono::Utc;
use proto::token::SERVICE_AUDIENCE;
use proto::{RoomReport, ServiceClaims, TokenKey};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// Receives room reports. `report` must not block: implementations queue and send in the
/// background. The standalone mode implements it in-process.
pub trait Reporter: Send + Sync + 'static {
    /// Hand over one report.
    fn report(&self, report: RoomReport);
}

/// A reporter that only logs (an SFU without `--sfu-api-url`, and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogReporter;

impl Reporter for LogReporter {
    fn report(&self, report: RoomReport) {
        debug!(conference = %report.conference, participants = report.participants, event = ?report.event, "room report");
    }
}

/// Reports queued for the HTTP reporter before new ones are dropped.
const QUEUE: usize = 4096;

/// Posts reports as JSON to `{api_url}/api/v1/internal/room-events` with a service token,
/// in order, retrying a few times.
#[derive(Debug, Clone)]
pub struct HttpReporter {
    tx: mpsc::Sender<RoomReport>,
}

impl HttpReporter {
    /// Starts the background sender (needs a tokio runtime).
    ///
    /// # Errors
    /// [`Error::ReportClient`] when the HTTP client cannot be built.
    pub fn spawn(api_url: &str, key: TokenKey, pod: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(Error::ReportClient)?;
        let url = format!(
            "{}/api/v1/internal/room-events",
            api_url.trim_end_matches('/')
        );
        let subject = format!("sfu:{pod}");
        let (tx, mut rx) = mpsc::channel::<RoomReport>(QUEUE);
        tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                for attempt in 0..5u32 {
                    let now = Utc::now().timestamp();
                    let token = match key.sign_service(&ServiceClaims {
                        sub: subject.clone(),
                        aud: SERVICE_AUDIENCE.into(),
                        iat: now,
                        exp: now + 60,
                    }) {
                        Ok(token) => token,
                        Err(err) => {
                            warn!(cause = %err, "signing a service token failed");
                            break;
                        }
                    };
                    let sent = client
                        .post(&url)
                        .bearer_auth(token)
                        .json(&report)
                        .send()
                        .await
                        .and_then(|r| r.error_for_status());
                    match sent {
                        Ok(_) => break,
                        Err(err) => {
                            warn!(cause = %err, attempt, conference = %report.conference, "posting a room report failed");
                            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt))
                                .await;
                        }
                    }
                }
            }
        });
        Ok(Self { tx })
    }
}

impl Reporter for HttpReporter {
    fn report(&self, report: RoomReport) {
        if self.tx.try_send(report).is_err() {
            warn!("the room report queue is full; a report was dropped");
        }
    }
}

impl<R: Reporter + ?Sized> Reporter for Arc<R> {
    fn report(&self, report: RoomReport) {
        (**self).report(report);
    }
}
