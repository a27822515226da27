//! The operator's Prometheus metrics, all named `conclave_operator_…` with small fixed label sets.

use crds::ConferencePhase;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::{Error, Result};
use crate::fleet::FleetCounts;

/// Every metric the operator exposes on `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by result (`ok` or an error kind).
    pub reconciles: IntCounterVec,
    /// How long reconciles take.
    pub reconcile_duration: Histogram,
    /// Conferences by phase.
    pub conferences: IntGaugeVec,
    /// SFU pods by state (`ready`, `suspect`, `draining`, `not_ready`, `misconfigured`).
    pub sfu_pods: IntGaugeVec,
    /// Participant capacity of ready SFU pods, `used` (reserved) and `free`.
    pub capacity: IntGaugeVec,
    /// Placements that found no pod, by reason.
    pub placement_failures: IntCounterVec,
    /// Conferences moved off a lost pod.
    pub failovers: IntCounter,
    /// Conferences handed off a draining pod (planned moves, not failures).
    pub drained: IntCounter,
    /// 1 while this replica is the leader.
    pub leader: IntGauge,
}

impl Metrics {
    /// Registers the metrics in a registry of their own.
    ///
    /// # Errors
    /// [`Error::Metrics`] when a metric is malformed (a bug caught by the tests).
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "conclave_operator_reconciles_total",
                "Reconciles of Conference resources by result.",
            ),
            &["result"],
        )
        .map_err(Error::Metrics)?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "conclave_operator_reconcile_duration_seconds",
                "How long one reconcile of a Conference takes.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .map_err(Error::Metrics)?;
        let conferences = IntGaugeVec::new(
            Opts::new(
                "conclave_operator_conferences",
                "Conferences known to the leader, by lifecycle phase.",
            ),
            &["phase"],
        )
        .map_err(Error::Metrics)?;
        let sfu_pods = IntGaugeVec::new(
            Opts::new(
                "conclave_operator_sfu_pods",
                "SFU pods by state: ready (taking conferences), suspect (not ready, container running, within the pod grace: keeps its conferences), draining (being deleted: keeps its conferences until the handoff), not_ready (lost), misconfigured.",
            ),
            &["state"],
        )
        .map_err(Error::Metrics)?;
        let capacity = IntGaugeVec::new(
            Opts::new(
                "conclave_operator_capacity_participants",
                "Participant capacity of ready SFU pods: used (reserved) and free.",
            ),
            &["state"],
        )
        .map_err(Error::Metrics)?;
        let placement_failures = IntCounterVec::new(
            Opts::new(
                "conclave_operator_placement_failures_total",
                "Placements that found no SFU pod, by reason.",
            ),
            &["reason"],
        )
        .map_err(Error::Metrics)?;
        let failovers = IntCounter::new(
            "conclave_operator_failovers_total",
            "Conferences moved off an SFU pod that went away, stopped running or stayed not ready beyond the pod grace.",
        )
        .map_err(Error::Metrics)?;
        let drained = IntCounter::new(
            "conclave_operator_drained_total",
            "Conferences handed off a draining (deleted) SFU pod to another one: planned, not failures.",
        )
        .map_err(Error::Metrics)?;
        let leader = IntGauge::new(
            "conclave_operator_leader",
            "1 while this replica holds the leader Lease, else 0.",
        )
        .map_err(Error::Metrics)?;
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(conferences.clone()),
            Box::new(sfu_pods.clone()),
            Box::new(capacity.clone()),
            Box::new(placement_failures.clone()),
            Box::new(failovers.clone()),
            Box::new(drained.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(collector).map_err(Error::Metrics)?;
        }
        // Known label values start at zero so dashboards see them before the first event.
        for phase in ConferencePhase::ALL {
            conferences.with_label_values(&[phase.as_str()]).set(0);
        }
        for state in ["ready", "suspect", "draining", "not_ready", "misconfigured"] {
            sfu_pods.with_label_values(&[state]).set(0);
        }
        for state in ["used", "free"] {
            capacity.with_label_values(&[state]).set(0);
        }
        for reason in ["NoReadyPod", "NoCapacity", "NoPorts", "TooLarge"] {
            placement_failures.with_label_values(&[reason]).inc_by(0);
        }
        reconciles.with_label_values(&["ok"]).inc_by(0);
        Ok(Self {
            registry,
            reconciles,
            reconcile_duration,
            conferences,
            sfu_pods,
            capacity,
            placement_failures,
            failovers,
            drained,
            leader,
        })
    }

    /// Records the fleet's state.
    pub fn observe_fleet(&self, counts: FleetCounts, used: i64, free: i64) {
        self.sfu_pods
            .with_label_values(&["ready"])
            .set(counts.ready);
        self.sfu_pods
            .with_label_values(&["suspect"])
            .set(counts.suspect);
        self.sfu_pods
            .with_label_values(&["draining"])
            .set(counts.draining);
        self.sfu_pods
            .with_label_values(&["not_ready"])
            .set(counts.not_ready);
        self.sfu_pods
            .with_label_values(&["misconfigured"])
            .set(counts.misconfigured);
        self.capacity.with_label_values(&["used"]).set(used);
        self.capacity.with_label_values(&["free"]).set(free);
    }

    /// Moves one conference from phase `from` (if known) to `to` (if still known).
    pub fn move_phase(&self, from: Option<ConferencePhase>, to: Option<ConferencePhase>) {
        if from == to {
            return;
        }
        if let Some(from) = from {
            self.conferences.with_label_values(&[from.as_str()]).dec();
        }
        if let Some(to) = to {
            self.conferences.with_label_values(&[to.as_str()]).inc();
        }
    }

    /// Resets the per-conference gauges (when leadership, and with it the view, is lost).
    pub fn reset_conferences(&self) {
        for phase in ConferencePhase::ALL {
            self.conferences.with_label_values(&[phase.as_str()]).set(0);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail on IO; a malformed family would be a registration bug.
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(cause = %err, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_follow_the_naming_rules() {
        let metrics = Metrics::new().expect("registered");
        metrics.reconciles.with_label_values(&["ok"]).inc();
        metrics.reconcile_duration.observe(0.01);
        metrics.move_phase(None, Some(ConferencePhase::Ready));
        let text = metrics.render();
        for name in [
            "conclave_operator_reconciles_total{result=\"ok\"} 1",
            "conclave_operator_reconcile_duration_seconds_bucket",
            "conclave_operator_conferences{phase=\"Ready\"} 1",
            "conclave_operator_sfu_pods{state=\"ready\"} 0",
            "conclave_operator_capacity_participants{state=\"free\"} 0",
            "conclave_operator_placement_failures_total{reason=\"NoCapacity\"} 0",
            "conclave_operator_failovers_total 0",
            "conclave_operator_drained_total 0",
            "conclave_operator_sfu_pods{state=\"suspect\"} 0",
            "conclave_operator_leader 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn the_exposition_passes_promtool() {
        use std::io::Write;
        let metrics = Metrics::new().expect("registered");
        metrics.reconciles.with_label_values(&["ok"]).inc();
        metrics.reconcile_duration.observe(0.002);
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect(
                "promtool (Debian package prometheus) is required; scripts/test.sh installs it",
            );
        promtool
            .stdin
            .take()
            .expect("stdin")
            .write_all(metrics.render().as_bytes())
            .expect("write");
        let output = promtool.wait_with_output().expect("promtool ran");
        assert!(
            output.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
