//! Prometheus metrics of the API (`conclave_api_…`). Labels are few and fixed: method, route
//! template, status class, result — never a user, conference or address.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The API's metrics and the registry that exposes them.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route template and status code.
    pub requests: IntCounterVec,
    /// Request latency by method and route template.
    pub latency: HistogramVec,
    /// Database pool connections by state (`idle`, `busy`).
    pub db_connections: IntGaugeVec,
    /// Conferences by lifecycle phase.
    pub conferences: IntGaugeVec,
    /// Login attempts by result (`ok`, `wrongPassword`, `throttled`, `disabled`, `busy`,
    /// `localLoginOff`, `noLevel`, `directoryUnreachable`).
    pub logins: IntCounterVec,
    /// Join requests by result (`ok`, `waiting`, `refused`, `notStarted`).
    pub joins: IntCounterVec,
    /// Delivery attempts of outbox mails by result (`delivered`, `retrying`: failed and
    /// tried again later, `failed`: given up after the last attempt).
    pub mail: IntCounterVec,
    /// Signaling websockets relayed to SFU pods now (`/rtc/{pod}`).
    pub rtc_sessions: IntGauge,
    /// Relays that could not reach their SFU pod, by reason (`timeout`, `unreachable`,
    /// `refused`: the pod answered with an HTTP error).
    pub rtc_upstream_failures: IntCounterVec,
    /// Relayed websockets ended, by reason (see [`crate::relay::End`]).
    pub rtc_closed: IntCounterVec,
    /// Recordings composed, by result (`ready`, `failed`: one attempt failed).
    pub recordings_composed: IntCounterVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        Self::with_registry(Registry::new())
    }

    /// Registers every metric in `registry`, which `/metrics` then renders whole (standalone
    /// mode shares one registry between the API and the embedded SFU).
    pub fn with_registry(registry: Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "conclave_api_http_requests_total",
                "HTTP requests answered, by method, route and status.",
            ),
            &["method", "route", "status"],
        )
        .expect("BUG: static metric definition is valid");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "conclave_api_http_request_duration_seconds",
                "Time to answer HTTP requests.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .expect("BUG: static metric definition is valid");
        let db_connections = IntGaugeVec::new(
            Opts::new(
                "conclave_api_db_pool_connections",
                "Database pool connections, by state.",
            ),
            &["state"],
        )
        .expect("BUG: static metric definition is valid");
        let conferences = IntGaugeVec::new(
            Opts::new(
                "conclave_api_conferences",
                "Conferences not yet ended, by lifecycle phase.",
            ),
            &["phase"],
        )
        .expect("BUG: static metric definition is valid");
        let logins = IntCounterVec::new(
            Opts::new("conclave_api_logins_total", "Login attempts, by result."),
            &["result"],
        )
        .expect("BUG: static metric definition is valid");
        let joins = IntCounterVec::new(
            Opts::new("conclave_api_joins_total", "Join requests, by result."),
            &["result"],
        )
        .expect("BUG: static metric definition is valid");
        let mail = IntCounterVec::new(
            Opts::new(
                "conclave_api_mail_deliveries_total",
                "Delivery attempts of outbox mails, by result (delivered, retrying, failed).",
            ),
            &["result"],
        )
        .expect("BUG: static metric definition is valid");
        for result in ["delivered", "retrying", "failed"] {
            mail.with_label_values(&[result]);
        }
        let rtc_sessions = IntGauge::new(
            "conclave_api_rtc_proxied_sessions",
            "Signaling websockets relayed to SFU pods now (/rtc/{pod}).",
        )
        .expect("BUG: static metric definition is valid");
        let rtc_upstream_failures = IntCounterVec::new(
            Opts::new(
                "conclave_api_rtc_upstream_failures_total",
                "Relays of /rtc/{pod} that could not open the SFU pod's websocket, by reason (timeout, unreachable, refused).",
            ),
            &["reason"],
        )
        .expect("BUG: static metric definition is valid");
        for reason in crate::relay::UPSTREAM_FAILURES {
            rtc_upstream_failures.with_label_values(&[reason]);
        }
        let rtc_closed = IntCounterVec::new(
            Opts::new(
                "conclave_api_rtc_proxy_closed_total",
                "Relayed signaling websockets ended, by reason.",
            ),
            &["reason"],
        )
        .expect("BUG: static metric definition is valid");
        for reason in crate::relay::End::REASONS {
            rtc_closed.with_label_values(&[reason]);
        }
        let recordings_composed = IntCounterVec::new(
            Opts::new(
                "conclave_api_recordings_composed_total",
                "Recordings composed into one file, by result (ready, failed: one attempt failed).",
            ),
            &["result"],
        )
        .expect("BUG: static metric definition is valid");
        for result in ["ready", "failed"] {
            recordings_composed.with_label_values(&[result]);
        }
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(db_connections.clone()),
            Box::new(conferences.clone()),
            Box::new(logins.clone()),
            Box::new(joins.clone()),
            Box::new(mail.clone()),
            Box::new(rtc_sessions.clone()),
            Box::new(rtc_upstream_failures.clone()),
            Box::new(rtc_closed.clone()),
            Box::new(recordings_composed.clone()),
        ] {
            registry
                .register(collector)
                .expect("BUG: each metric is registered once");
        }
        Self {
            registry,
            requests,
            latency,
            db_connections,
            conferences,
            logins,
            joins,
            mail,
            rtc_sessions,
            rtc_upstream_failures,
            rtc_closed,
            recordings_composed,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
