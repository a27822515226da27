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
//! - [`fleet`]: SFU pods (label `app.kubernetes.io/component=sfu`) and their annotations.
//! - [`leader`]: leader election through a `coordination.k8s.io` Lease.
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
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
pub use controller::{FIELD_MANAGER, FINALIZER};
pub use error::{Error, Result};

use crate::controller::Settings;
use crate::leader::{Attempt, LeaseLock};
use crate::metrics::Metrics;

/// Default lead time before a conference's start, in seconds.
pub const DEFAULT_LEAD_TIME_SECONDS: u64 = 300;
/// Default grace after a conference's end while people are still in it, in seconds.
pub const DEFAULT_END_GRACE_SECONDS: u64 = 1800;

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
        }
    }
}

impl Config {
    fn settings(&self) -> Settings {
        Settings {
            namespace: Some(self.namespace.trim().to_owned()).filter(|ns| !ns.is_empty()),
            sfu_selector: self.sfu_selector.clone(),
            policy: placement::Policy {
                lead_time: chrono::Duration::seconds(
                    i64::try_from(self.lead_time_seconds).unwrap_or(i64::MAX / 1000),
                ),
                end_grace: chrono::Duration::seconds(
                    i64::try_from(self.end_grace_seconds).unwrap_or(i64::MAX / 1000),
                ),
            },
            sizing: placement::Sizing {
                ports_per_participant: self.ports_per_participant.max(1),
            },
            concurrency: self.concurrency,
            identity: self.identity(),
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
/// # Errors
/// [`Error`] when no Kubernetes configuration is found or the listen address is unusable.
pub async fn run(config: Config) -> Result<()> {
    let client = Client::try_default().await.map_err(Error::ClientConfig)?;
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
    config: Config,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
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
    /// Assembles the operator.
    ///
    /// # Errors
    /// [`Error::Metrics`] when the metrics cannot be registered.
    pub fn new(client: Client, config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        Ok(Self {
            client,
            config,
            clock,
            metrics: Arc::new(Metrics::new()?),
            ready: Arc::new(AtomicBool::new(false)),
            listener: None,
        })
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

    /// Runs until `shutdown` is cancelled; on shutdown the leader gives its Lease up so a
    /// standby takes over at once.
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
            self.metrics.leader.set(1);
            controller::lead(
                self.client.clone(),
                &settings,
                self.clock.clone(),
                self.metrics.clone(),
                shutdown.clone(),
            )
            .await
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

    async fn elect_and_lead(
        &self,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let lock = LeaseLock::new(
            self.client.clone(),
            &self.config.lease_namespace,
            &self.config.lease_name,
            &settings.identity,
            Duration::from_secs(self.config.lease_duration_seconds.max(1)),
        );
        let retry = Duration::from_secs(self.config.lease_retry_seconds.max(1));
        let duration = Duration::from_secs(self.config.lease_duration_seconds.max(1));
        loop {
            // Standby until the Lease is ours.
            loop {
                match lock.try_acquire_or_renew().await {
                    Ok(Attempt::Leading) => break,
                    Ok(Attempt::Following { .. }) => self.ready.store(true, Ordering::Relaxed),
                    Err(err) => warn!(cause = %err, "leader election attempt failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(retry) => {}
                }
            }
            self.ready.store(true, Ordering::Relaxed);
            self.metrics.leader.set(1);
            let term = shutdown.child_token();
            let renewer = tokio::spawn(keep_lease(lock.clone(), term.clone(), retry, duration));
            let led = controller::lead(
                self.client.clone(),
                settings,
                self.clock.clone(),
                self.metrics.clone(),
                term.clone(),
            )
            .await;
            term.cancel();
            let _ = renewer.await;
            self.metrics.leader.set(0);
            self.metrics.reset_conferences();
            if shutdown.is_cancelled() {
                if let Err(err) = lock.release().await {
                    warn!(cause = %err, "releasing the leader lease failed; it will expire");
                }
                return led;
            }
            match led {
                Ok(()) => warn!("leadership lost; standing by"),
                Err(err) => {
                    warn!(cause = %err, "leading failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(retry) => {}
                    }
                }
            }
        }
    }
}

/// Renews the Lease every `retry` until `term` is cancelled; cancels `term` when the Lease is
/// lost or could not be renewed for two thirds of its duration (so this replica stops before
/// another may start).
async fn keep_lease(lock: LeaseLock, term: CancellationToken, retry: Duration, duration: Duration) {
    let deadline = duration.mul_f64(2.0 / 3.0);
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        match lock.try_acquire_or_renew().await {
            Ok(Attempt::Leading) => last_renewed = tokio::time::Instant::now(),
            Ok(Attempt::Following { holder }) => {
                warn!(%holder, "the leader lease was taken over");
                term.cancel();
                return;
            }
            Err(err) => {
                warn!(cause = %err, "renewing the leader lease failed");
                if last_renewed.elapsed() >= deadline {
                    warn!("could not renew the leader lease in time; stepping down");
                    term.cancel();
                    return;
                }
            }
        }
    }
}
