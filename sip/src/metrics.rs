//! Prometheus metrics, `conclave_sip_…`. Labels are few and fixed (outcome, prompt, method,
//! reason): never one per call, meeting or address.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::Result;

/// Every metric of the gateway.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Calls up now (answered or ringing).
    pub calls_active: IntGauge,
    /// Calls that finished their menu or ended, by outcome (`joined`, `wrongId`, `full`,
    /// `notActive`, `tooManyAttempts`, `error`, `abandoned`: the caller left first).
    pub calls: IntCounterVec,
    /// Calls refused before answering, by reason (`forbidden`, `rateLimited`, `busy` (calls or RTP ports),
    /// `badRequest`: an INVITE without Contact, `badSdp`, `noCommonCodec`).
    pub calls_refused: IntCounterVec,
    /// Prompts started, by prompt name.
    pub prompt_plays: IntCounterVec,
    /// Keypad digits received, by method (`rfc4733`, `info`).
    pub dtmf_digits: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn new(registry: &Registry) -> Result<Metrics> {
        let metrics = Metrics {
            calls_active: IntGauge::new("conclave_sip_calls_active", "Calls up now.")?,
            calls: IntCounterVec::new(
                Opts::new("conclave_sip_calls_total", "Calls by outcome."),
                &["outcome"],
            )?,
            calls_refused: IntCounterVec::new(
                Opts::new(
                    "conclave_sip_calls_refused_total",
                    "Calls refused before answering, by reason.",
                ),
                &["reason"],
            )?,
            prompt_plays: IntCounterVec::new(
                Opts::new(
                    "conclave_sip_prompt_plays_total",
                    "Prompts played, by prompt.",
                ),
                &["prompt"],
            )?,
            dtmf_digits: IntCounterVec::new(
                Opts::new(
                    "conclave_sip_dtmf_digits_total",
                    "Keypad digits received, by method.",
                ),
                &["method"],
            )?,
        };
        registry.register(Box::new(metrics.calls_active.clone()))?;
        registry.register(Box::new(metrics.calls.clone()))?;
        registry.register(Box::new(metrics.calls_refused.clone()))?;
        registry.register(Box::new(metrics.prompt_plays.clone()))?;
        registry.register(Box::new(metrics.dtmf_digits.clone()))?;
        Ok(metrics)
    }
}
