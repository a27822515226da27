//! Leader election through a `coordination.k8s.io/v1` Lease, fenced so that two replicas never
//! both place conferences.
//!
//! - **Judged by local observation time**, as client-go does: a candidate notes when it last saw
//!   the Lease's record (holder, `renewTime`, resourceVersion) change, by its own monotonic
//!   clock, and takes the Lease over only once that note is older than `leaseDurationSeconds`.
//!   It never compares the holder's `renewTime` with its own wall clock, so clock skew between
//!   replicas does not matter.
//! - **Every write carries the resourceVersion read**, so two candidates racing for an expired
//!   Lease cannot both win: the API server answers the loser 409 Conflict.
//! - **The holder steps down in time**: its right to write (a [`Fence`]) lasts the renew
//!   deadline from the *start* of its last successful renewal, measured on its monotonic clock.
//!   The renew deadline is shorter than the lease duration, and a candidate starts counting the
//!   lease duration only after it saw that renewal, so the old leader has stopped before a new
//!   one may begin. A renewal that hangs is abandoned at the deadline.
//! - **Every call has a timeout**: a hung API server never keeps a replica from stepping down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Error as KubeError};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};

/// A Lease-based lock held by one identity at a time.
#[derive(Debug, Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    call_timeout: Duration,
    /// The Lease record last seen and when (monotonic) it was first seen so.
    observed: Arc<Mutex<Option<Observed>>>,
}

/// A Lease record as a candidate compares it between looks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<String>,
    resource_version: Option<String>,
}

#[derive(Debug, Clone)]
struct Observed {
    record: Record,
    /// When this record was first seen.
    at: Instant,
    /// The lease duration it announced.
    duration: Duration,
}

/// What a try to take or keep the Lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This identity holds the Lease.
    Leading,
    /// Another identity holds it.
    Following {
        /// The holder.
        holder: String,
    },
}

impl LeaseLock {
    /// A lock on Lease `namespace/name` for `identity`, valid `duration` after each renewal;
    /// every API call gives up after `call_timeout`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
        call_timeout: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            call_timeout,
            observed: Arc::new(Mutex::new(None)),
        }
    }

    /// The identity this lock acquires for.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, KubeError>>,
    ) -> Result<Result<T, KubeError>> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .map_err(|_| Error::Timeout {
                what,
                seconds: self.call_timeout.as_secs_f64(),
            })
    }

    /// How long until the Lease, as last seen held by another replica, may be taken over (by
    /// this replica's observation); `None` when it was not seen held by another.
    pub fn takeover_in(&self) -> Option<Duration> {
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let seen = observed.as_ref()?;
        let holder = seen.record.holder.as_deref()?;
        if holder == self.identity {
            return None;
        }
        Some(
            seen.duration
                .saturating_sub(Instant::now().duration_since(seen.at)),
        )
    }

    /// Notes the record seen now; answers how long it has been unchanged, by this replica's
    /// monotonic clock.
    fn unchanged_for(&self, record: Record, duration: Duration) -> Duration {
        let now = Instant::now();
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        match observed.as_ref() {
            Some(seen) if seen.record == record => now.duration_since(seen.at),
            _ => {
                *observed = Some(Observed {
                    record,
                    at: now,
                    duration,
                });
                Duration::ZERO
            }
        }
    }

    /// Takes the Lease when free or expired (by local observation), renews it when held; never
    /// waits longer than the call timeout per request.
    ///
    /// # Errors
    /// [`Error::Kube`] when the API server refuses for another reason than a lost race (which
    /// is [`Attempt::Following`]); [`Error::Timeout`] when it does not answer in time.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt> {
        let existing = self
            .call("get the lease", self.api.get_opt(&self.name))
            .await??;
        let now = Timestamp::now();
        let Some(lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self
                .call(
                    "create the lease",
                    self.api.create(&PostParams::default(), &lease),
                )
                .await?
            {
                Ok(_) => {
                    info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
                    Ok(Attempt::Leading)
                }
                Err(KubeError::Api(status)) if status.code == 409 => self.following(None),
                Err(err) => Err(Error::Kube(err)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let held_by_me = holder.as_deref() == Some(self.identity.as_str());
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(15).max(1)).unwrap_or(15),
        );
        let unchanged = self.unchanged_for(
            Record {
                holder: holder.clone(),
                renew_time: spec
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.as_millisecond().to_string()),
                resource_version: lease.metadata.resource_version.clone(),
            },
            duration,
        );
        if !held_by_me && let Some(holder) = &holder {
            if unchanged < duration {
                return self.following(Some(holder.clone()));
            }
            info!(
                lease = %self.name,
                previous = %holder,
                unchanged_seconds = unchanged.as_secs_f64(),
                "the leader lease was not renewed for its duration; taking over"
            );
        }
        let mut updated = lease.clone();
        let transitions = spec.lease_transitions.unwrap_or(0);
        updated.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            acquire_time: if held_by_me {
                spec.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if held_by_me {
                transitions
            } else {
                transitions + 1
            }),
            ..spec
        });
        // `updated` keeps the resourceVersion read above: a concurrent write makes this a 409.
        match self
            .call(
                "update the lease",
                self.api
                    .replace(&self.name, &PostParams::default(), &updated),
            )
            .await?
        {
            Ok(_) => {
                if !held_by_me {
                    info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
                }
                Ok(Attempt::Leading)
            }
            Err(KubeError::Api(status)) if status.code == 409 => self.following(holder),
            Err(err) => Err(Error::Kube(err)),
        }
    }

    fn following(&self, holder: Option<String>) -> Result<Attempt> {
        let holder = holder.unwrap_or_else(|| "another replica".into());
        debug!(lease = %self.name, %holder, "following");
        Ok(Attempt::Following { holder })
    }

    /// Gives the Lease up so that a standby takes over at once (on shutdown).
    ///
    /// # Errors
    /// [`Error::Kube`] when the API server refuses, [`Error::Timeout`] when it does not answer;
    /// the Lease then simply expires.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self
            .call("get the lease", self.api.get_opt(&self.name))
            .await??
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .call(
                "release the lease",
                self.api.replace(&self.name, &PostParams::default(), &lease),
            )
            .await?
        {
            Ok(_) => {
                info!(lease = %self.name, "released the leader lease");
                Ok(())
            }
            Err(KubeError::Api(status)) if status.code == 409 => Ok(()),
            Err(err) => Err(Error::Kube(err)),
        }
    }
}

/// This replica's right to write while it leads: valid until a deadline on the monotonic clock
/// (the renew deadline after the start of the last successful renewal), and revoked at once
/// when the Lease is lost. Every write that matters checks it first ([`Fence::check`]).
#[derive(Debug, Clone)]
pub struct Fence {
    inner: Arc<FenceInner>,
}

#[derive(Debug)]
struct FenceInner {
    /// `None`: no leader election (one replica), always valid.
    valid_until: Mutex<Option<Instant>>,
    revoked: CancellationToken,
}

impl Fence {
    /// A fence that never closes: leader election is off.
    pub fn unfenced() -> Self {
        Self::with(None)
    }

    /// A fence valid until `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Self::with(Some(deadline))
    }

    fn with(valid_until: Option<Instant>) -> Self {
        Self {
            inner: Arc::new(FenceInner {
                valid_until: Mutex::new(valid_until),
                revoked: CancellationToken::new(),
            }),
        }
    }

    /// Until when it is valid (`None`: for ever).
    pub fn valid_until(&self) -> Option<Instant> {
        *self
            .inner
            .valid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the deadline to `deadline` (after a successful renewal).
    pub fn extend(&self, deadline: Instant) {
        let mut valid_until = self
            .inner
            .valid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if valid_until.is_some_and(|current| current < deadline) {
            *valid_until = Some(deadline);
        }
    }

    /// Closes the fence for good: leadership is lost.
    pub fn revoke(&self) {
        self.inner.revoked.cancel();
    }

    /// Whether it was revoked.
    pub fn is_revoked(&self) -> bool {
        self.inner.revoked.is_cancelled()
    }

    /// Resolves once the fence is revoked.
    pub fn revoked(&self) -> WaitForCancellationFuture<'_> {
        self.inner.revoked.cancelled()
    }

    /// Whether this replica may still write.
    ///
    /// # Errors
    /// [`Error::LeadershipLost`] when the fence was revoked or its deadline passed.
    pub fn check(&self) -> Result<()> {
        if self.is_revoked() || self.valid_until().is_some_and(|v| Instant::now() >= v) {
            return Err(Error::LeadershipLost);
        }
        Ok(())
    }
}

/// How the Lease is kept.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// Between renewals.
    pub retry: Duration,
    /// How long after the start of its last successful renewal a leader stops writing.
    pub renew_deadline: Duration,
}

/// Why a leader stopped keeping its Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop (shutdown or the leading loop ended).
    Stopped,
    /// Another replica holds the Lease.
    TakenOver {
        /// The new holder.
        holder: String,
    },
    /// No renewal succeeded before the renew deadline.
    DeadlinePassed,
}

/// Renews the Lease every `timing.retry` until `stop` is cancelled. Revokes `fence` and returns
/// when the Lease is taken over or the renew deadline passes without a successful renewal
/// (a renewal still running at the deadline is abandoned).
pub async fn keep(
    lock: &LeaseLock,
    fence: &Fence,
    timing: LeaseTiming,
    stop: &CancellationToken,
) -> Ended {
    let ended = loop {
        let Some(deadline) = fence.valid_until() else {
            // An unfenced leader has nothing to renew.
            stop.cancelled().await;
            break Ended::Stopped;
        };
        tokio::select! {
            () = stop.cancelled() => break Ended::Stopped,
            () = tokio::time::sleep_until(deadline) => break Ended::DeadlinePassed,
            () = tokio::time::sleep(timing.retry) => {}
        }
        let started = Instant::now();
        let renewed = tokio::select! {
            () = stop.cancelled() => break Ended::Stopped,
            renewed = tokio::time::timeout_at(deadline, lock.try_acquire_or_renew()) => renewed,
        };
        match renewed {
            Ok(Ok(Attempt::Leading)) => fence.extend(started + timing.renew_deadline),
            Ok(Ok(Attempt::Following { holder })) => break Ended::TakenOver { holder },
            Ok(Err(err)) => warn!(cause = %err, "renewing the leader lease failed; retrying"),
            Err(_) => break Ended::DeadlinePassed,
        }
    };
    match &ended {
        Ended::Stopped => {}
        Ended::TakenOver { holder } => {
            warn!(%holder, "the leader lease was taken over; stepping down");
        }
        Ended::DeadlinePassed => warn!(
            renew_deadline_seconds = timing.renew_deadline.as_secs_f64(),
            "could not renew the leader lease within the renew deadline; stepping down"
        ),
    }
    fence.revoke();
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fence_closes_at_its_deadline_and_on_revocation() {
        let fence = Fence::until(Instant::now() + Duration::from_secs(10));
        assert!(fence.check().is_ok());
        fence.extend(Instant::now() + Duration::from_secs(5));
        assert_eq!(
            fence.valid_until(),
            Some(Instant::now() + Duration::from_secs(10)),
            "a fence never moves its deadline back"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(matches!(fence.check(), Err(Error::LeadershipLost)));
        fence.extend(Instant::now() + Duration::from_secs(10));
        assert!(fence.check().is_ok());
        fence.revoke();
        assert!(matches!(fence.check(), Err(Error::LeadershipLost)));
        assert!(Fence::unfenced().check().is_ok());
    }
}
