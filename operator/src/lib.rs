//! `conclave operator`: reconciles every `Conference` resource into an SFU pod assignment and
//! a UDP port range, follows its lifecycle (Scheduled → Ready → Active → Ended), moves its
//! conferences off SFU pods that go away, and reports all of it in status, conditions, Events
//! and Prometheus metrics. Replicas elect a leader through a Lease; only the leader places.
//!
//! The decisions come from the pure `placement` crate (schedule, lifecycle, fleet) and from
//! [`conference`] here; this crate is the kube-runtime shell around them.
//!
//! # Layout
//! - [`Config`], [`run`], [`Operator`]: the composition root the binary calls.
//! - [`controller`]: the Controller, `reconcile` inside a finalizer, `error_policy`, pod watch.
//! - [`conference`]: pure: spec + status + placement → desired status, conditions, Events.
//! - [`fleet`]: SFU pods (label `app.kubernetes.io/component=sfu`), their annotations and their
//!   states (Ready, Suspect, Draining, Lost).
//! - [`leader`]: leader election through a `coordination.k8s.io` Lease, and the [`leader::Fence`]
//!   every write checks.
//! - [`metrics`], [`http`]: `conclave_operator_…` metrics, `/healthz`, `/readyz`, `/metrics`.
//! - [`clock`]: the system clock, or a manual one for virtual time in tests and benchmarks.

pub mod clock;
pub mod conference;
pub mod controller;
mod error;
pub mod fleet;
pub mod http;
pub mod leader;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
pub use controller::{FIELD_MANAGER, FINALIZER};
pub use error::{Error, Result};

use crate::controller::Settings;
use crate::leader::{Attempt, Fence, LeaseLock, LeaseTiming};
use crate::metrics::Metrics;

/// Default lead time before a conference's start, in seconds.
pub const DEFAULT_LEAD_TIME_SECONDS: u64 = 300;
/// Default grace after a conference's end while people are still in it, in seconds.
pub const DEFAULT_END_GRACE_SECONDS: u64 = 1800;
/// Default time an SFU pod may be not ready (container running) before it counts as lost.
pub const DEFAULT_POD_GRACE_SECONDS: u64 = 10;
/// Default time before a deleted SFU pod's deletion time its conferences move elsewhere.
pub const DEFAULT_DRAIN_HANDOFF_SECONDS: u64 = 15;

/// How long after a Lease may be taken over a standby looks again (so that its look does not
/// come a hair early and wait a whole retry period more).
const TAKEOVER_MARGIN: Duration = Duration::from_millis(10);

/// The operator's configuration (`conclave operator --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Namespace whose conferences and SFU pods are operated; all namespaces when empty.
    #[arg(long, env = "CONCLAVE_OPERATOR_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Label selector of the SFU pods.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_SFU_SELECTOR",
        default_value = "app.kubernetes.io/component=sfu"
    )]
    pub sfu_selector: String,
    /// Seconds before its start a conference is placed and may be joined.
    #[arg(long, env = "CONCLAVE_OPERATOR_LEAD_TIME_SECONDS", default_value_t = DEFAULT_LEAD_TIME_SECONDS)]
    pub lead_time_seconds: u64,
    /// Seconds a conference may run past its end while people are still in it.
    #[arg(long, env = "CONCLAVE_OPERATOR_END_GRACE_SECONDS", default_value_t = DEFAULT_END_GRACE_SECONDS)]
    pub end_grace_seconds: u64,
    /// UDP ports reserved per participant of a conference.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_PORTS_PER_PARTICIPANT",
        default_value_t = 2
    )]
    pub ports_per_participant: u16,
    /// How many conferences are reconciled at once.
    #[arg(long, env = "CONCLAVE_OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "CONCLAVE_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Elect a leader through a Lease; turn off only when exactly one replica runs.
    #[arg(long, env = "CONCLAVE_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_LEASE_NAME",
        default_value = "conclave-operator"
    )]
    pub lease_name: String,
    /// Namespace of the leader election Lease (usually the operator's own, from the downward API).
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_LEASE_NAMESPACE",
        default_value = "default"
    )]
    pub lease_namespace: String,
    /// This replica's identity in the Lease and in Events; the pod name (`HOSTNAME`) when empty.
    #[arg(long, env = "CONCLAVE_OPERATOR_IDENTITY", default_value = "")]
    pub identity: String,
    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    pub lease_duration_seconds: u64,
    /// Seconds between tries to renew (leader) or acquire (standby) the Lease.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_LEASE_RETRY_SECONDS",
        default_value_t = 2
    )]
    pub lease_retry_seconds: u64,
    /// Seconds after the start of its last successful renewal at which a leader that could not
    /// renew stops writing; shorter than the lease duration, longer than the retry period.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    pub lease_renew_deadline_seconds: u64,
    /// Seconds one call to the Kubernetes API may take before it is abandoned.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_API_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub api_timeout_seconds: u64,
    /// Seconds an SFU pod may stay not ready, its sfu container still running, before its
    /// conferences move elsewhere (a readiness probe flapping for less moves nothing).
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_POD_GRACE_SECONDS",
        default_value_t = DEFAULT_POD_GRACE_SECONDS
    )]
    pub pod_grace_seconds: u64,
    /// Seconds before a deleted SFU pod's deletion time (deletionTimestamp) its conferences move
    /// elsewhere; until then they stay on the draining pod, which takes no new ones.
    #[arg(
        long,
        env = "CONCLAVE_OPERATOR_DRAIN_HANDOFF_SECONDS",
        default_value_t = DEFAULT_DRAIN_HANDOFF_SECONDS
    )]
    pub drain_handoff_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            sfu_selector: format!(
                "{}={}",
                crds::labels::COMPONENT,
                crds::labels::COMPONENT_SFU
            ),
            lead_time_seconds: DEFAULT_LEAD_TIME_SECONDS,
            end_grace_seconds: DEFAULT_END_GRACE_SECONDS,
            ports_per_participant: 2,
            concurrency: 16,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            leader_election: true,
            lease_name: "conclave-operator".into(),
            lease_namespace: "default".into(),
            identity: String::new(),
            lease_duration_seconds: 15,
            lease_retry_seconds: 2,
            lease_renew_deadline_seconds: 10,
            api_timeout_seconds: 10,
            pod_grace_seconds: DEFAULT_POD_GRACE_SECONDS,
            drain_handoff_seconds: DEFAULT_DRAIN_HANDOFF_SECONDS,
        }
    }
}

fn seconds(value: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 1000))
}

impl Config {
    /// Checks that the timings can work together.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the flags to change.
    pub fn validate(&self) -> Result<()> {
        if self.leader_election {
            let (duration, deadline, retry) = (
                self.lease_duration_seconds.max(1),
                self.lease_renew_deadline_seconds,
                self.lease_retry_seconds.max(1),
            );
            if deadline >= duration {
                return Err(Error::InvalidConfig(format!(
                    "--lease-renew-deadline-seconds ({deadline}) must be shorter than --lease-duration-seconds ({duration}), so that a leader that cannot renew stops before another may start; e.g. 10 and 15"
                )));
            }
            if retry >= deadline {
                return Err(Error::InvalidConfig(format!(
                    "--lease-retry-seconds ({retry}) must be shorter than --lease-renew-deadline-seconds ({deadline}), so that a leader tries to renew before its deadline; e.g. 2 and 10"
                )));
            }
        }
        if self.api_timeout_seconds == 0 {
            return Err(Error::InvalidConfig(
                "--api-timeout-seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn api_timeout(&self) -> Duration {
        Duration::from_secs(self.api_timeout_seconds.max(1))
    }

    fn settings(&self) -> Settings {
        Settings {
            namespace: Some(self.namespace.trim().to_owned()).filter(|ns| !ns.is_empty()),
            sfu_selector: self.sfu_selector.clone(),
            policy: placement::Policy {
                lead_time: seconds(self.lead_time_seconds),
                end_grace: seconds(self.end_grace_seconds),
            },
            sizing: placement::Sizing {
                ports_per_participant: self.ports_per_participant.max(1),
            },
            concurrency: self.concurrency,
            identity: self.identity(),
            timing: fleet::Timing {
                pod_grace: seconds(self.pod_grace_seconds),
                drain_handoff: seconds(self.drain_handoff_seconds),
            },
            api_timeout: self.api_timeout(),
        }
    }

    fn identity(&self) -> String {
        let given = self.identity.trim();
        if !given.is_empty() {
            return given.to_owned();
        }
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("conclave-operator-{}", std::process::id()))
    }
}

/// Runs the operator until SIGTERM or Ctrl-C: connects with the in-cluster configuration (or
/// the kubeconfig), serves `/healthz`, `/readyz`, `/metrics` on `config.listen`, and reconciles
/// while it holds the leader Lease.
///
/// Requests get connect, write and read timeouts of `--api-timeout-seconds`; watches use a
/// client of their own without a read timeout (an idle watch is fine; kube-runtime's watcher
/// reconnects one that stays silent past its own bound).
///
/// # Errors
/// [`Error`] when no Kubernetes configuration is found, the configuration is invalid or the
/// listen address is unusable.
pub async fn run(config: Config) -> Result<()> {
    config.validate()?;
    let mut kube_config = kube::Config::infer()
        .await
        .map_err(|err| Error::ClientConfig(kube::Error::InferConfig(err)))?;
    kube_config.connect_timeout = Some(config.api_timeout());
    kube_config.write_timeout = Some(config.api_timeout());
    let watch_client = Client::try_from(kube_config.clone()).map_err(Error::ClientConfig)?;
    kube_config.read_timeout = Some(config.api_timeout());
    kube_config.reset_reader_on_write = true;
    let client = Client::try_from(kube_config).map_err(Error::ClientConfig)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Serve {
            addr: config.listen.to_string(),
            source,
        })?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        trigger.cancel();
    });
    Operator::new(client, config, Arc::new(SystemClock))?
        .watch_with(watch_client)
        .serve_on(listener)
        .run(shutdown)
        .await
}

/// Resolves on SIGTERM (the pod being stopped) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            error!(cause = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                error!(cause = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The operator, assembled: what [`run`] builds, and what tests build around a fake API server
/// and a [`ManualClock`].
pub struct Operator {
    client: Client,
    watch_client: Client,
    config: Config,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    leading: watch::Sender<bool>,
    listener: Option<TcpListener>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// Assembles the operator; `client` serves requests and watches alike unless
    /// [`Operator::watch_with`] gives watches their own.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the timings cannot work together, [`Error::Metrics`] when
    /// the metrics cannot be registered.
    pub fn new(client: Client, config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            watch_client: client.clone(),
            client,
            config,
            clock,
            metrics: Arc::new(Metrics::new()?),
            ready: Arc::new(AtomicBool::new(false)),
            leading: watch::channel(false).0,
            listener: None,
        })
    }

    /// Watches through `client` (one without a read timeout), requests through the other.
    pub fn watch_with(mut self, client: Client) -> Self {
        self.watch_client = client;
        self
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `listener` while running.
    pub fn serve_on(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The metrics, for tests and benchmarks to read.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Whether this replica leads (may write), as it changes: for tests and benchmarks to wait
    /// on a leader change instead of polling.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Runs until `shutdown` is cancelled; on shutdown the leader gives its Lease up so a
    /// standby takes over at once. Aborting the task that runs it (a killed process) stops
    /// everything it started without giving the Lease up.
    ///
    /// # Errors
    /// [`Error::Serve`] when the health endpoint fails to serve.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let server = self.listener.take().map(|listener| {
            let router = http::router(http::Health {
                ready: self.ready.clone(),
                metrics: self.metrics.clone(),
            });
            let stop = shutdown.clone();
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            })
        });
        let settings = self.config.settings();
        let result = if self.config.leader_election {
            self.elect_and_lead(&settings, &shutdown).await
        } else {
            self.ready.store(true, Ordering::Relaxed);
            self.set_leading(true);
            let led = controller::lead(
                self.client.clone(),
                self.watch_client.clone(),
                &settings,
                self.clock.clone(),
                self.metrics.clone(),
                Fence::unfenced(),
                shutdown.clone(),
            )
            .await;
            self.set_leading(false);
            led
        };
        shutdown.cancel();
        if let Some(server) = server {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(Error::Serve {
                        addr: self.config.listen.to_string(),
                        source,
                    });
                }
                Err(err) => warn!(cause = %err, "health server task failed"),
            }
        }
        result
    }

    fn set_leading(&self, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
        self.leading.send_replace(leading);
    }

    async fn elect_and_lead(
        &self,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let duration = Duration::from_secs(self.config.lease_duration_seconds.max(1));
        let timing = LeaseTiming {
            retry: Duration::from_secs(self.config.lease_retry_seconds.max(1)),
            renew_deadline: Duration::from_secs(self.config.lease_renew_deadline_seconds),
        };
        let lock = LeaseLock::new(
            self.client.clone(),
            &self.config.lease_namespace,
            &self.config.lease_name,
            &settings.identity,
            duration,
            // A candidate's try, like a renewal, must end before the renew deadline.
            self.config.api_timeout().min(timing.renew_deadline),
        );
        loop {
            // Standby until the Lease is ours; the fence counts from the start of the request
            // that took it.
            let fence = loop {
                let started = tokio::time::Instant::now();
                match lock.try_acquire_or_renew().await {
                    Ok(Attempt::Leading) => break Fence::until(started + timing.renew_deadline),
                    Ok(Attempt::Following { .. }) => self.ready.store(true, Ordering::Relaxed),
                    Err(err) => warn!(cause = %err, "leader election attempt failed"),
                }
                // Look again after the retry period, or right when the holder's Lease may be
                // taken over if that comes first.
                let next = lock
                    .takeover_in()
                    .map_or(timing.retry, |at| timing.retry.min(at + TAKEOVER_MARGIN));
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(next) => {}
                }
            };
            self.ready.store(true, Ordering::Relaxed);
            self.set_leading(true);
            let term = shutdown.child_token();
            // One task: aborting it stops renewing and leading together.
            let (led, kept) = tokio::join!(
                async {
                    let led = controller::lead(
                        self.client.clone(),
                        self.watch_client.clone(),
                        settings,
                        self.clock.clone(),
                        self.metrics.clone(),
                        fence.clone(),
                        term.clone(),
                    )
                    .await;
                    term.cancel();
                    led
                },
                leader::keep(&lock, &fence, timing, &term),
            );
            // Nothing is written any more once here.
            fence.revoke();
            self.set_leading(false);
            self.metrics.reset_conferences();
            if shutdown.is_cancelled() {
                if let Err(err) = lock.release().await {
                    warn!(cause = %err, "releasing the leader lease failed; it will expire");
                }
                return match led {
                    Err(err) if err.is_leadership_lost() => Ok(()),
                    other => other,
                };
            }
            match led {
                Err(Error::LeadershipLost) | Ok(()) => {
                    warn!(why = ?kept, "leadership lost; stopped writing and standing by");
                }
                Err(err) => {
                    warn!(cause = %err, "leading failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(timing.retry) => {}
                    }
                }
            }
        }
    }
}
