//! What the operator's scenario tests share: SFU pods as a kubelet reports them, conferences,
//! operators started against the fake API server, and ways to wait for what they do.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use crds::{Conference, annotations, labels};
use fakekube::FakeApi;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use operator::{Config, ManualClock, Operator};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const NS: &str = "conclave";
pub const CONFERENCES: &str = "conclave.dev/conferences";
pub const LEASES: &str = "coordination.k8s.io/leases";
pub const WAIT: Duration = Duration::from_secs(20);

pub fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("rfc3339")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// An SFU pod scheduled on a node, its `sfu` container running and Ready, deleted gracefully
/// with `grace` seconds.
pub async fn add_sfu_pod(
    client: &kube::Client,
    name: &str,
    capacity: u32,
    ports: &str,
    grace: i64,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": { labels::COMPONENT: labels::COMPONENT_SFU },
            "annotations": {
                annotations::CAPACITY: capacity.to_string(),
                annotations::UDP_PORTS: ports,
                annotations::ENDPOINT: "wss://{pod}.sfu.example.com",
            },
        },
        "spec": {
            "nodeName": format!("node-{name}"),
            "terminationGracePeriodSeconds": grace,
            "containers": [{ "name": "sfu", "image": "conclave" }],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    set_pod(client, name, true, ContainerState::Running).await
}

/// What the kubelet reports of the `sfu` container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    Terminated,
}

/// Reports the pod's readiness and container state, as the kubelet does.
pub async fn set_pod(
    client: &kube::Client,
    name: &str,
    ready: bool,
    container: ContainerState,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let state = match container {
        ContainerState::Running => json!({ "running": { "startedAt": "2026-03-02T09:00:00Z" } }),
        ContainerState::Terminated => {
            json!({ "terminated": { "exitCode": 137, "reason": "Error" } })
        }
    };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "containerStatuses": [{
                "name": "sfu", "image": "conclave", "imageID": "", "ready": ready,
                "restartCount": 0, "state": state,
            }],
        }})),
    )
    .await?;
    Ok(())
}

pub fn conference(name: &str, participants: u32) -> Result<Conference> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "topic": "Weekly planning",
            "owner": "ada",
            "schedule": {
                "start": "2026-03-02T10:00:00Z",
                "duration": "1h",
                "timeZone": "Europe/Berlin",
            },
            "maxParticipants": participants,
        },
    }))?)
}

/// A conference as it looks once an operator added its finalizer and meeting ID: the next
/// write an operator makes for it is its status.
pub fn conference_ready_for_status(
    name: &str,
    participants: u32,
    meeting_id: &str,
) -> Result<Conference> {
    let mut conference = conference(name, participants)?;
    conference.metadata.finalizers = Some(vec![operator::FINALIZER.to_owned()]);
    conference.spec.meeting_id = Some(meeting_id.to_owned());
    Ok(conference)
}

pub async fn create(client: &kube::Client, conference: &Conference) -> Result<()> {
    let conferences: Api<Conference> = Api::namespaced(client.clone(), NS);
    conferences
        .create(&PostParams::default(), conference)
        .await?;
    Ok(())
}

pub fn config(identity: &str) -> Config {
    Config {
        namespace: NS.into(),
        lease_namespace: NS.into(),
        identity: identity.into(),
        lease_duration_seconds: 3,
        lease_renew_deadline_seconds: 2,
        lease_retry_seconds: 1,
        api_timeout_seconds: 1,
        ..Config::default()
    }
}

pub fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

pub fn sfu_pod_label(conference: &Value) -> Option<&str> {
    str_at(
        conference,
        &format!("/metadata/labels/{}", labels::SFU_POD.replace('/', "~1")),
    )
}

pub fn condition<'a>(conference: &'a Value, type_: &str) -> Option<&'a Value> {
    conference
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub fn events_with_reason(fake: &FakeApi, reason: &str) -> Vec<Value> {
    fake.list("events.k8s.io/events")
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

/// Waits until the conference is assigned to `pod`; answers the conference.
pub async fn wait_assigned(fake: &FakeApi, name: &str, pod: &str) -> Value {
    fake.wait_for(&format!("{name} assigned to {pod}"), WAIT, |f| {
        f.get(CONFERENCES, NS, name)
            .filter(|c| str_at(c, "/status/assignment/pod") == Some(pod))
    })
    .await
}

/// Changes the conference's spec (its topic) and waits until an operator reconciled that
/// change (`status.observedGeneration` caught up): a reconcile that started after this call,
/// so after every change the test made before.
pub async fn reconciled_after_now(
    fake: &FakeApi,
    client: &kube::Client,
    name: &str,
) -> Result<Value> {
    let conferences: Api<Conference> = Api::namespaced(client.clone(), NS);
    let touched = conferences
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "topic": format!("touched {}", uuid_like()) } })),
        )
        .await?;
    let generation = touched.metadata.generation.unwrap_or_default();
    Ok(fake
        .wait_for(&format!("{name} reconciled again"), WAIT, |f| {
            f.get(CONFERENCES, NS, name).filter(|c| {
                c.pointer("/status/observedGeneration")
                    .and_then(Value::as_i64)
                    == Some(generation)
            })
        })
        .await)
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// UDP port ranges of the given conferences never overlap on one pod.
pub fn assert_no_shared_ports(fake: &FakeApi, names: &[&str]) {
    let assigned: Vec<(String, String, u64, u64)> = names
        .iter()
        .filter_map(|name| {
            let c = fake.get(CONFERENCES, NS, name)?;
            let a = c.pointer("/status/assignment")?;
            Some((
                (*name).to_owned(),
                a["pod"].as_str()?.to_owned(),
                a["udpPorts"]["first"].as_u64()?,
                a["udpPorts"]["last"].as_u64()?,
            ))
        })
        .collect();
    assert_eq!(assigned.len(), names.len(), "not all placed: {assigned:?}");
    for (i, a) in assigned.iter().enumerate() {
        for b in &assigned[i + 1..] {
            assert!(
                a.1 != b.1 || a.3 < b.2 || b.3 < a.2,
                "{} and {} share ports on {}: {a:?} {b:?}",
                a.0,
                b.0,
                a.1
            );
        }
    }
}

pub struct Running {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<operator::Result<()>>,
    pub metrics: Arc<operator::metrics::Metrics>,
    pub leading: watch::Receiver<bool>,
}

impl Running {
    /// Waits until this replica leads (`true`) or stopped leading (`false`).
    pub async fn wait_leading(&mut self, leading: bool, within: Duration) {
        let reached = tokio::time::timeout(within, self.leading.wait_for(|l| *l == leading)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "the operator did not reach leading={leading} within {within:?}"
        );
    }

    /// Kills it as `kill -9` would: everything stops, the Lease is not given up.
    pub fn kill(&self) {
        self.task.abort();
    }
}

/// Starts an operator with `config`, calling the fake as `user`.
pub fn start(fake: &FakeApi, clock: &ManualClock, user: &str, config: Config) -> Result<Running> {
    let operator = Operator::new(fake.client_as(user), config, Arc::new(clock.clone()))?;
    let metrics = operator.metrics();
    let leading = operator.leadership();
    let stop = CancellationToken::new();
    let task = tokio::spawn(operator.run(stop.clone()));
    Ok(Running {
        stop,
        task,
        metrics,
        leading,
    })
}
