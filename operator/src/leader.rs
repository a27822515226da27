//! Leader election through a `coordination.k8s.io/v1` Lease, so that two replicas never both
//! place conferences.
//!
//! The holder renews the Lease every `retry` period; a candidate takes it over only once
//! `renewTime + leaseDurationSeconds` has passed. Every write carries the resourceVersion it was
//! based on, so two candidates racing for an expired Lease cannot both win: the API server
//! answers the loser with 409 Conflict. A holder that cannot renew within its lease duration
//! steps down before anyone else may take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Error as KubeError};
use tracing::{debug, info};

use crate::error::{Error, Result};

/// A Lease-based lock held by one identity at a time.
#[derive(Debug, Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
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
    /// A lock on Lease `namespace/name` for `identity`, valid `duration` after each renewal.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// The identity this lock acquires for.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Takes the Lease when free or expired, renews it when held; never waits.
    ///
    /// # Errors
    /// [`Error::Kube`] when the API server cannot be reached or refuses for another reason
    /// than a lost race (which is [`Attempt::Following`]).
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.name).await?;
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
            return match self.api.create(&PostParams::default(), &lease).await {
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
        if !held_by_me && let Some(holder) = &holder {
            let duration_ms = i64::from(spec.lease_duration_seconds.unwrap_or(15)) * 1000;
            let renewed = spec.renew_time.as_ref().map_or(0, |t| t.0.as_millisecond());
            if renewed + duration_ms > now.as_millisecond() {
                return self.following(Some(holder.clone()));
            }
            info!(lease = %self.name, previous = %holder, "the leader lease expired; taking over");
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
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
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
    /// [`Error::Kube`] when the API server refuses; the Lease then simply expires.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
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
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
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
