//! Prometheus metrics, `conclave_sip_…`. Labels are few and fixed (outcome, prompt, method,
//! reason): never one per call, meeting or address.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

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
    /// Meetings with phones in them (each mixed once per 20 ms).
    pub conferences: IntGauge,
    /// Room audio packets by what became of them (`decoded`; `duplicate`: the same packet
    /// through another call of the meeting; `late`; `concealed`: frames made up for lost ones).
    pub room_packets: IntCounterVec,
    /// Time to decode and mix one 20 ms frame of a meeting, for all its calls.
    pub mix_seconds: Histogram,
    /// Phone callers' RTP packets missing (by sequence number) when the call ended.
    pub rtp_lost: IntCounterVec,
    /// Interarrival jitter (RFC 3550) of a caller's RTP at the end of the call.
    pub rtp_jitter_seconds: Histogram,
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
            conferences: IntGauge::new(
                "conclave_sip_conferences_active",
                "Meetings with phones in them.",
            )?,
            room_packets: IntCounterVec::new(
                Opts::new(
                    "conclave_sip_room_packets_total",
                    "Room audio packets by what became of them.",
                ),
                &["result"],
            )?,
            mix_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "conclave_sip_mix_seconds",
                    "Time to decode and mix one 20 ms frame of a meeting.",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02,
                ]),
            )?,
            rtp_lost: IntCounterVec::new(
                Opts::new(
                    "conclave_sip_rtp_lost_packets_total",
                    "Callers' RTP packets that never arrived, counted at the end of each call.",
                ),
                &["codec"],
            )?,
            rtp_jitter_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "conclave_sip_rtp_jitter_seconds",
                    "Interarrival jitter of a caller's RTP at the end of the call.",
                )
                .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]),
            )?,
        };
        registry.register(Box::new(metrics.calls_active.clone()))?;
        registry.register(Box::new(metrics.conferences.clone()))?;
        registry.register(Box::new(metrics.room_packets.clone()))?;
        registry.register(Box::new(metrics.mix_seconds.clone()))?;
        registry.register(Box::new(metrics.rtp_lost.clone()))?;
        registry.register(Box::new(metrics.rtp_jitter_seconds.clone()))?;
        registry.register(Box::new(metrics.calls.clone()))?;
        registry.register(Box::new(metrics.calls_refused.clone()))?;
        registry.register(Box::new(metrics.prompt_plays.clone()))?;
        registry.register(Box::new(metrics.dtmf_digits.clone()))?;
        Ok(metrics)
    }
}
