//! Prometheus metrics of the API (`conclave_api_…`). Labels are few and fixed: method, route
//! template, status class, result — never a user, conference or address.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// Login attempts by result (`ok`, `wrongPassword`, `throttled`, `disabled`).
    pub logins: IntCounterVec,
    /// Join requests by result (`ok`, `waiting`, `refused`, `notStarted`).
    pub joins: IntCounterVec,
    /// Delivery attempts of outbox mails by result (`delivered`, `retrying`: failed and
    /// tried again later, `failed`: given up after the last attempt).
    pub mail: IntCounterVec,
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
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(db_connections.clone()),
            Box::new(conferences.clone()),
            Box::new(logins.clone()),
            Box::new(joins.clone()),
            Box::new(mail.clone()),
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
