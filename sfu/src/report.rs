//! Room reports to the conference service: who joined and left (the archive's attendance),
//! the participant count, and the end.
//!
//! Reports must outlive an API rollout or outage of minutes: the HTTP reporter keeps them in
//! order in a large bounded queue and retries each with backoff until the API takes it. What
//! cannot succeed is dropped at once (a 404: the conference was deleted; other 4xx: the API
//! refuses the report itself). Each report carries an `Idempotency-Key`, so a retry after an
//! answer that got lost is applied once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use proto::token::SERVICE_AUDIENCE;
use proto::{RoomReport, ServiceClaims, TokenKey};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

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

/// Reports queued for the HTTP reporter before new ones are dropped: about 13 MB at most,
/// hours of joins and leaves of a full pod.
pub const QUEUE: usize = 65_536;

/// The header that makes a retried report apply once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How long the HTTP reporter waits between attempts of one report.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// After the first failure.
    pub first: Duration,
    /// The longest wait (the wait doubles up to this).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// What became of a report, the `result` label of `conclave_sfu_room_reports_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The API applied it.
    Delivered,
    /// The API no longer knows the conference (404): dropped at once.
    Gone,
    /// The API refused the report itself (another 4xx): dropped, retrying cannot help.
    Refused,
    /// The queue was full: dropped without sending.
    Overflow,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Delivered,
        Outcome::Gone,
        Outcome::Refused,
        Outcome::Overflow,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Refused => "refused",
            Outcome::Overflow => "overflow",
        }
    }
}

/// The reporter's metrics.
#[derive(Debug, Clone)]
struct ReportMetrics {
    outcomes: IntCounterVec,
    retries: IntCounterVec,
    queued: IntGauge,
}

impl ReportMetrics {
    fn new(registry: &Registry) -> Result<Self> {
        let outcomes = IntCounterVec::new(
            Opts::new(
                "conclave_sfu_room_reports_total",
                "Room reports by what became of them (delivered, gone, refused, overflow).",
            ),
            &["result"],
        )
        .map_err(Error::Metrics)?;
        let retries = IntCounterVec::new(
            Opts::new(
                "conclave_sfu_room_report_retries_total",
                "Failed attempts to post a room report that are retried, by cause (unreachable, status).",
            ),
            &["cause"],
        )
        .map_err(Error::Metrics)?;
        let queued = IntGauge::new(
            "conclave_sfu_room_reports_queued",
            "Room reports waiting to be delivered to the conference service.",
        )
        .map_err(Error::Metrics)?;
        for outcome in Outcome::ALL {
            outcomes.with_label_values(&[outcome.as_str()]);
        }
        for cause in ["unreachable", "status"] {
            retries.with_label_values(&[cause]);
        }
        registry
            .register(Box::new(outcomes.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(retries.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(queued.clone()))
            .map_err(Error::Metrics)?;
        Ok(Self {
            outcomes,
            retries,
            queued,
        })
    }

    fn count(&self, outcome: Outcome) {
        self.outcomes.with_label_values(&[outcome.as_str()]).inc();
    }
}

/// Reports handed over and not yet finished with, and a signal when that number drops.
#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    changed: Notify,
}

/// Posts reports as JSON to `{api_url}/api/v1/internal/room-events` with a service token, in
/// order, retrying each until the API takes it (see the module's documentation).
#[derive(Debug, Clone)]
pub struct HttpReporter {
    tx: mpsc::Sender<RoomReport>,
    pending: Arc<Pending>,
    metrics: ReportMetrics,
}

/// How one attempt to post a report ended.
enum Attempt {
    Done(Outcome),
    Retry(&'static str),
}

impl HttpReporter {
    /// Starts the background sender (needs a tokio runtime), registering its metrics in
    /// `registry`.
    ///
    /// # Errors
    /// [`Error::ReportClient`] when the HTTP client cannot be built, [`Error::Metrics`] when
    /// its metrics are registered already.
    pub fn spawn(api_url: &str, key: TokenKey, pod: &str, registry: &Registry) -> Result<Self> {
        Self::spawn_with(api_url, key, pod, registry, Backoff::default())
    }

    /// [`HttpReporter::spawn`] with the waits between attempts given.
    ///
    /// # Errors
    /// As [`HttpReporter::spawn`].
    pub fn spawn_with(
        api_url: &str,
        key: TokenKey,
        pod: &str,
        registry: &Registry,
        backoff: Backoff,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::ReportClient)?;
        let url = format!(
            "{}/api/v1/internal/room-events",
            api_url.trim_end_matches('/')
        );
        let metrics = ReportMetrics::new(registry)?;
        let pending = Arc::new(Pending::default());
        let (tx, mut rx) = mpsc::channel::<RoomReport>(QUEUE);
        let sender = Sender {
            client,
            url,
            key,
            subject: format!("sfu:{pod}"),
            // Unique across restarts of the pod: its name, the start time and a sequence.
            key_prefix: format!(
                "{pod}-{}",
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ),
            sequence: AtomicU64::new(0),
        };
        let (worker_pending, worker_metrics) = (pending.clone(), metrics.clone());
        tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                let outcome = sender.deliver(&report, backoff, &worker_metrics).await;
                worker_metrics.count(outcome);
                worker_metrics.queued.dec();
                worker_pending.count.fetch_sub(1, Ordering::AcqRel);
                worker_pending.changed.notify_waiters();
            }
        });
        Ok(Self {
            tx,
            pending,
            metrics,
        })
    }

    /// Reports handed over and not yet delivered or dropped.
    pub fn pending(&self) -> usize {
        self.pending.count.load(Ordering::Acquire)
    }

    /// Waits until every report handed over is delivered or dropped, at most `within`
    /// (a pod shutting down sends the leaves of its last sessions); whether all went out.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.pending.changed.notified();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.pending() == 0;
            }
        }
    }
}

/// The background sender's parts.
struct Sender {
    client: reqwest::Client,
    url: String,
    key: TokenKey,
    subject: String,
    key_prefix: String,
    sequence: AtomicU64,
}

impl Sender {
    /// Posts `report` until it is delivered or cannot be.
    async fn deliver(
        &self,
        report: &RoomReport,
        backoff: Backoff,
        metrics: &ReportMetrics,
    ) -> Outcome {
        let idempotency = format!(
            "{}-{}",
            self.key_prefix,
            self.sequence.fetch_add(1, Ordering::Relaxed)
        );
        let mut wait = backoff.first;
        let mut failures = 0u32;
        loop {
            match self.attempt(report, &idempotency).await {
                Attempt::Done(outcome) => {
                    if failures > 0 && outcome == Outcome::Delivered {
                        info!(conference = %report.conference, failures, "a room report was delivered after the conference service came back");
                    }
                    return outcome;
                }
                Attempt::Retry(cause) => {
                    metrics.retries.with_label_values(&[cause]).inc();
                    failures += 1;
                    // The first failures at warn, then one line a minute or so.
                    if failures <= 3 || failures.is_multiple_of(10) {
                        warn!(conference = %report.conference, failures, cause, retry_in_ms = wait.as_millis() as u64, "posting a room report failed; retrying");
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(backoff.max);
                }
            }
        }
    }

    async fn attempt(&self, report: &RoomReport, idempotency: &str) -> Attempt {
        let now = Utc::now().timestamp();
        let token = match self.key.sign_service(&ServiceClaims {
            sub: self.subject.clone(),
            aud: SERVICE_AUDIENCE.into(),
            iat: now,
            exp: now + 60,
        }) {
            Ok(token) => token,
            Err(err) => {
                warn!(cause = %err, "signing a service token failed; the report is dropped");
                return Attempt::Done(Outcome::Refused);
            }
        };
        let sent = self
            .client
            .post(&self.url)
            .bearer_auth(token)
            .header(IDEMPOTENCY_KEY, idempotency)
            .json(report)
            .send()
            .await;
        let status = match sent {
            Ok(response) => response.status(),
            Err(err) => {
                debug!(cause = %err, "the conference service is unreachable");
                return Attempt::Retry("unreachable");
            }
        };
        match status.as_u16() {
            200..=299 => Attempt::Done(Outcome::Delivered),
            404 => {
                debug!(conference = %report.conference, "the conference is gone; its report is dropped");
                Attempt::Done(Outcome::Gone)
            }
            // Throttled, a conflicting write, a timeout: worth another try.
            408 | 409 | 425 | 429 => Attempt::Retry("status"),
            400..=499 => {
                warn!(conference = %report.conference, status = status.as_u16(), "the conference service refused a room report; it is dropped");
                Attempt::Done(Outcome::Refused)
            }
            _ => Attempt::Retry("status"),
        }
    }
}

impl Reporter for HttpReporter {
    fn report(&self, report: RoomReport) {
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(report) {
            Ok(()) => self.metrics.queued.inc(),
            Err(_) => {
                self.pending.count.fetch_sub(1, Ordering::AcqRel);
                self.metrics.count(Outcome::Overflow);
                warn!(
                    queue = QUEUE,
                    "the room report queue is full (the conference service has been unreachable for long); a report was dropped"
                );
            }
        }
    }
}

impl<R: Reporter + ?Sized> Reporter for Arc<R> {
    fn report(&self, report: RoomReport) {
        (**self).report(report);
    }
}
