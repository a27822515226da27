//! The real operator (Controller, finalizer, leader election, pod watch) against the in-process
//! fake API server, on virtual time: time moves only when the test moves the [`ManualClock`],
//! and the test waits for the state it expects (re-checked on every write), never by sleeping.

use fakekube as fake_api;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use crds::{Conference, annotations, labels};
use fake_api::FakeApi;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use operator::{Config, ManualClock, Operator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NS: &str = "conclave";
const CONFERENCES: &str = "conclave.dev/conferences";
const WAIT: Duration = Duration::from_secs(20);

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("rfc3339")
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn add_sfu_pod(client: &kube::Client, name: &str, capacity: u32, ports: &str) -> Result<()> {
    add_sfu_pod_with(
        client,
        name,
        capacity,
        ports,
        json!({ "containers": [{ "name": "sfu", "image": "conclave" }] }),
    )
    .await
}

/// An SFU pod on `node`'s network (`hostNetwork`), as the chart's default exposure makes it.
async fn add_host_network_pod(
    client: &kube::Client,
    name: &str,
    node: &str,
    ports: &str,
) -> Result<()> {
    add_sfu_pod_with(
        client,
        name,
        100,
        ports,
        json!({
            "hostNetwork": true,
            "nodeName": node,
            "containers": [{ "name": "sfu", "image": "conclave" }],
        }),
    )
    .await
}

async fn add_sfu_pod_with(
    client: &kube::Client,
    name: &str,
    capacity: u32,
    ports: &str,
    spec: Value,
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
        "spec": spec,
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "conditions": [{ "type": "Ready", "status": "True" }],
        }})),
    )
    .await?;
    Ok(())
}

fn conference(name: &str, participants: u32) -> Result<Conference> {
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

fn config(identity: &str) -> Config {
    Config {
        namespace: NS.into(),
        lease_namespace: NS.into(),
        identity: identity.into(),
        lease_duration_seconds: 3,
        lease_renew_deadline_seconds: 2,
        lease_retry_seconds: 1,
        ..Config::default()
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn sfu_pod_label(conference: &Value) -> Option<&str> {
    str_at(
        conference,
        &format!("/metadata/labels/{}", labels::SFU_POD.replace('/', "~1")),
    )
}

fn condition<'a>(conference: &'a Value, type_: &str) -> Option<&'a Value> {
    conference
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn events_with_reason(fake: &FakeApi, reason: &str) -> Vec<Value> {
    fake.list("events.k8s.io/events")
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<operator::Result<()>>,
    metrics: Arc<operator::metrics::Metrics>,
}

/// The operator's calls carry this identity, as its ServiceAccount's token would.
const OPERATOR_USER: &str = "operator";

fn start_operator(fake: &FakeApi, clock: &ManualClock, identity: &str) -> Result<Running> {
    let operator = Operator::new(
        fake.client_as(OPERATOR_USER),
        config(identity),
        Arc::new(clock.clone()),
    )?;
    let metrics = operator.metrics();
    let stop = CancellationToken::new();
    let task = tokio::spawn(operator.run(stop.clone()));
    Ok(Running {
        stop,
        task,
        metrics,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_is_placed_failed_over_released_and_deleted() -> Result<()> {
    placed_failed_over_released_and_deleted(FakeApi::start().await).await
}

async fn placed_failed_over_released_and_deleted(fake: FakeApi) -> Result<()> {
    init_tracing();
    let client = fake.client();
    add_sfu_pod(&client, "sfu-0", 100, "40000-40999").await?;
    add_sfu_pod(&client, "sfu-1", 100, "50000-50999").await?;
    let clock = ManualClock::new(utc("2026-03-02T09:00:00Z"));
    let running = start_operator(&fake, &clock, "operator-a")?;

    // The leader holds the Lease.
    fake.wait_for("the leader lease", WAIT, |f| {
        f.get("coordination.k8s.io/leases", NS, "conclave-operator")
            .filter(|l| str_at(l, "/spec/holderIdentity") == Some("operator-a"))
    })
    .await;

    let conferences: Api<Conference> = Api::namespaced(client.clone(), NS);
    conferences
        .create(&PostParams::default(), &conference("planning", 20)?)
        .await?;

    // An hour before: a finalizer, a generated meeting ID, Scheduled and not placed.
    let scheduled = fake
        .wait_for("the conference scheduled", WAIT, |f| {
            f.get(CONFERENCES, NS, "planning")
                .filter(|c| str_at(c, "/status/phase") == Some("Scheduled"))
        })
        .await;
    assert_eq!(
        scheduled["metadata"]["finalizers"],
        json!([operator::FINALIZER])
    );
    let meeting_id = str_at(&scheduled, "/spec/meetingId").unwrap_or_default();
    assert!(
        meeting_id.len() == 9 && meeting_id.bytes().all(|b| b.is_ascii_digit()),
        "{meeting_id}"
    );
    assert_eq!(
        condition(&scheduled, "Placed").map(|c| c["reason"].clone()),
        Some(json!("AwaitingLeadTime"))
    );
    assert!(scheduled.pointer("/status/assignment").is_none());
    assert_eq!(
        str_at(&scheduled, "/status/nextOccurrence/start"),
        Some("2026-03-02T10:00:00Z")
    );

    // The lead time (5 minutes) before the start: placed on the pod with most free capacity.
    clock.set(utc("2026-03-02T09:55:00Z"));
    // The status (the assignment) is written first, then the label derived from it.
    let placed = fake
        .wait_for("the conference placed and labelled", WAIT, |f| {
            f.get(CONFERENCES, NS, "planning").filter(|c| {
                str_at(c, "/status/phase") == Some("Ready") && sfu_pod_label(c).is_some()
            })
        })
        .await;
    assert_eq!(
        placed["status"]["assignment"],
        json!({
            "pod": "sfu-0",
            "endpoint": "wss://sfu-0.sfu.example.com",
            "udpPorts": { "first": 40000, "last": 40039 },
            "reserved": 20,
        })
    );
    assert_eq!(sfu_pod_label(&placed), Some("sfu-0"));
    assert_eq!(
        condition(&placed, "Ready").map(|c| c["status"].clone()),
        Some(json!("True"))
    );
    assert_eq!(
        placed["status"]["observedGeneration"],
        placed["metadata"]["generation"]
    );
    fake.wait_for("a Placed event", WAIT, |f| {
        events_with_reason(f, "Placed").into_iter().next()
    })
    .await;

    // The pod disappears: the conference moves to the other pod, and says why.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.delete("sfu-0", &DeleteParams::default()).await?;
    let moved = fake
        .wait_for("the conference failed over", WAIT, |f| {
            f.get(CONFERENCES, NS, "planning")
                .filter(|c| str_at(c, "/status/assignment/pod") == Some("sfu-1"))
        })
        .await;
    let placed_condition = condition(&moved, "Placed").cloned().unwrap_or_default();
    assert_eq!(placed_condition["reason"], "Failover");
    assert_eq!(
        placed_condition["message"],
        "moved from sfu-0 to sfu-1 because pod sfu-0 is gone"
    );
    assert_eq!(
        str_at(&moved, "/status/assignment/endpoint"),
        Some("wss://sfu-1.sfu.example.com")
    );
    fake.wait_for("a Failover event", WAIT, |f| {
        events_with_reason(f, "Failover").into_iter().next()
    })
    .await;

    // The SFU reports participants (through the conference service): Active.
    conferences
        .patch_status(
            "planning",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "participants": 3 } })),
        )
        .await?;
    fake.wait_for("the conference active", WAIT, |f| {
        f.get(CONFERENCES, NS, "planning")
            .filter(|c| str_at(c, "/status/phase") == Some("Active"))
    })
    .await;

    // Everyone left and the end passed: released and Ended.
    conferences
        .patch_status(
            "planning",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "participants": 0 } })),
        )
        .await?;
    clock.set(utc("2026-03-02T11:00:00Z"));
    let ended = fake
        .wait_for("the conference ended", WAIT, |f| {
            f.get(CONFERENCES, NS, "planning")
                .filter(|c| str_at(c, "/status/phase") == Some("Ended"))
        })
        .await;
    assert!(ended.pointer("/status/assignment").is_none(), "{ended}");
    // The reported participants (another writer's field) survive the operator's applies.
    assert_eq!(ended["status"]["participants"], 0);
    fake.wait_for("the pod label removed", WAIT, |f| {
        f.get(CONFERENCES, NS, "planning")
            .filter(|c| sfu_pod_label(c).is_none())
    })
    .await;
    fake.wait_for("a Released event", WAIT, |f| {
        events_with_reason(f, "Released").into_iter().next()
    })
    .await;

    // Deleted: the finalizer goes and the object with it.
    conferences
        .delete("planning", &DeleteParams::default())
        .await?;
    fake.wait_for("the conference gone", WAIT, |f| {
        f.get(CONFERENCES, NS, "planning").is_none().then_some(())
    })
    .await;

    // Status went through server-side apply with the operator's field manager.
    let applied_status = fake.calls().into_iter().any(|c| {
        c.method == "PATCH"
            && c.path.ends_with("/conferences/planning/status")
            && c.content_type.starts_with("application/apply-patch+yaml")
            && c.query
                .contains(&format!("fieldManager={}", operator::FIELD_MANAGER))
    });
    assert!(applied_status, "no server-side apply of status");

    let text = running.metrics.render();
    assert!(
        text.contains("conclave_operator_failovers_total 1"),
        "{text}"
    );
    assert!(text.contains("conclave_operator_leader 1"), "{text}");
    assert!(
        text.contains("conclave_operator_sfu_pods{state=\"ready\"} 1"),
        "{text}"
    );

    running.stop.cancel();
    running.task.await??;
    // Shutting down gives the Lease up so a standby takes over at once.
    let lease = fake
        .get("coordination.k8s.io/leases", NS, "conclave-operator")
        .unwrap_or_default();
    assert!(lease.pointer("/spec/holderIdentity").is_none(), "{lease}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_is_reported_and_a_new_pod_takes_the_waiting_conference() -> Result<()> {
    no_capacity_then_a_new_pod(FakeApi::start().await).await
}

async fn no_capacity_then_a_new_pod(fake: FakeApi) -> Result<()> {
    init_tracing();
    let client = fake.client();
    add_sfu_pod(&client, "sfu-0", 100, "40000-40999").await?;
    let clock = ManualClock::new(utc("2026-03-02T10:00:00Z"));
    let running = start_operator(&fake, &clock, "operator-a")?;

    let conferences: Api<Conference> = Api::namespaced(client.clone(), NS);
    // Written by the API while serving a request: its ID reaches the Event.
    let mut all_hands = conference("all-hands", 300)?;
    all_hands
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotations::REQUEST_ID.to_owned(), "req-42".to_owned());
    conferences
        .create(&PostParams::default(), &all_hands)
        .await?;
    let degraded = fake
        .wait_for("the conference degraded", WAIT, |f| {
            f.get(CONFERENCES, NS, "all-hands")
                .filter(|c| condition(c, "Degraded").is_some_and(|d| d["status"] == "True"))
        })
        .await;
    let reason = condition(&degraded, "Degraded")
        .cloned()
        .unwrap_or_default();
    // Larger than every pod: the reason says waiting alone cannot help, and what to change.
    assert_eq!(reason["reason"], "TooLarge");
    assert_eq!(
        reason["message"],
        "300 participants are more than any SFU pod holds (100); lower maxParticipants or give the pods more capacity (sfu.capacity)"
    );
    assert_eq!(str_at(&degraded, "/status/phase"), Some("Scheduled"));
    let warning = fake
        .wait_for("a TooLarge event", WAIT, |f| {
            events_with_reason(f, "TooLarge").into_iter().next()
        })
        .await;
    assert_eq!(warning["type"], "Warning");
    assert_eq!(
        warning["note"],
        "300 participants are more than any SFU pod holds (100); lower maxParticipants or give the pods more capacity (sfu.capacity) (API request req-42)"
    );

    // Watches restart after a compaction: the operator re-lists (410 Gone) and carries on.
    fake.compact();
    fake.end_watches();

    // A bigger pod arrives: the waiting conference is placed without any other change.
    add_sfu_pod(&client, "sfu-big", 500, "41000-42999").await?;
    let placed = fake
        .wait_for("the waiting conference placed", WAIT, |f| {
            f.get(CONFERENCES, NS, "all-hands")
                .filter(|c| str_at(c, "/status/assignment/pod") == Some("sfu-big"))
        })
        .await;
    assert_eq!(
        condition(&placed, "Degraded").map(|c| c["status"].clone()),
        Some(json!("False"))
    );
    assert!(
        fake.gone_answers() > 0,
        "no watch resumed from a compacted resourceVersion"
    );

    running.stop.cancel();
    running.task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_places_and_a_standby_takes_over() -> Result<()> {
    leader_and_standby(FakeApi::start().await).await
}

async fn leader_and_standby(fake: FakeApi) -> Result<()> {
    init_tracing();
    let client = fake.client();
    add_sfu_pod(&client, "sfu-0", 100, "40000-40999").await?;
    let clock = ManualClock::new(utc("2026-03-02T10:00:00Z"));
    let first = start_operator(&fake, &clock, "operator-a")?;
    fake.wait_for("operator-a leading", WAIT, |f| {
        f.get("coordination.k8s.io/leases", NS, "conclave-operator")
            .filter(|l| str_at(l, "/spec/holderIdentity") == Some("operator-a"))
    })
    .await;
    let second = start_operator(&fake, &clock, "operator-b")?;

    let conferences: Api<Conference> = Api::namespaced(client.clone(), NS);
    conferences
        .create(&PostParams::default(), &conference("one", 10)?)
        .await?;
    fake.wait_for("placed by the leader", WAIT, |f| {
        f.get(CONFERENCES, NS, "one")
            .filter(|c| c.pointer("/status/assignment").is_some())
    })
    .await;
    assert_eq!(second.metrics.leader.get(), 0);

    // The leader stops; the standby takes the Lease and carries on from the status.
    first.stop.cancel();
    first.task.await??;
    fake.wait_for("operator-b leading", WAIT, |f| {
        f.get("coordination.k8s.io/leases", NS, "conclave-operator")
            .filter(|l| str_at(l, "/spec/holderIdentity") == Some("operator-b"))
    })
    .await;
    conferences
        .create(&PostParams::default(), &conference("two", 10)?)
        .await?;
    let two = fake
        .wait_for("placed by the new leader", WAIT, |f| {
            f.get(CONFERENCES, NS, "two")
                .filter(|c| c.pointer("/status/assignment").is_some())
        })
        .await;
    // The new leader knew the first conference's ports from its status: no overlap.
    assert_eq!(
        two["status"]["assignment"]["udpPorts"],
        json!({ "first": 40020, "last": 40039 })
    );
    let one = fake.get(CONFERENCES, NS, "one").unwrap_or_default();
    assert_eq!(
        one["status"]["assignment"]["udpPorts"],
        json!({ "first": 40000, "last": 40019 })
    );

    second.stop.cancel();
    second.task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_pods_on_one_node_never_get_overlapping_ports() -> Result<()> {
    init_tracing();
    let fake = FakeApi::start().await;
    let client = fake.client();
    // Two pods on node n1's network, advertising the same 20 ports; 5 participants take 10.
    add_host_network_pod(&client, "sfu-0", "n1", "40000-40019").await?;
    add_host_network_pod(&client, "sfu-1", "n1", "40000-40019").await?;
    let clock = ManualClock::new(utc("2026-03-02T10:00:00Z"));
    let running = start_operator(&fake, &clock, "operator-a")?;
    let conferences: Api<Conference> = Api::namespaced(client.clone(), NS);
    let placed = |name: &'static str| {
        let fake = fake.clone();
        async move {
            fake.wait_for("the conference placed", WAIT, move |f| {
                f.get(CONFERENCES, NS, name)
                    .filter(|c| c.pointer("/status/assignment/pod").is_some())
            })
            .await
        }
    };
    let ports = |c: &Value| {
        (
            c["status"]["assignment"]["pod"].clone(),
            c["status"]["assignment"]["udpPorts"].clone(),
        )
    };
    conferences
        .create(&PostParams::default(), &conference("c1", 5)?)
        .await?;
    let (pod_1, ports_1) = ports(&placed("c1").await);
    conferences
        .create(&PostParams::default(), &conference("c2", 5)?)
        .await?;
    let (pod_2, ports_2) = ports(&placed("c2").await);
    // Capacity spreads them over both pods; the node's ports are split between them.
    assert_ne!(pod_1, pod_2);
    assert_eq!(ports_1, json!({ "first": 40000, "last": 40009 }));
    assert_eq!(ports_2, json!({ "first": 40010, "last": 40019 }));

    // The node's ports are all taken: the third conference waits, saying why.
    conferences
        .create(&PostParams::default(), &conference("c3", 5)?)
        .await?;
    let waiting = fake
        .wait_for("the third conference waiting", WAIT, |f| {
            f.get(CONFERENCES, NS, "c3")
                .filter(|c| condition(c, "Degraded").is_some_and(|d| d["status"] == "True"))
        })
        .await;
    assert_eq!(
        condition(&waiting, "Degraded").map(|d| d["reason"].clone()),
        Some(json!("NoPorts"))
    );

    // A pod on another node has the same ports free.
    add_host_network_pod(&client, "sfu-2", "n2", "40000-40019").await?;
    let (pod_3, ports_3) = ports(&placed("c3").await);
    assert_eq!(pod_3, json!("sfu-2"));
    assert_eq!(ports_3, json!({ "first": 40000, "last": 40009 }));

    // A new leader seeds its ledger per node: the fourth conference fits nowhere on n1 and
    // gets n2's second half, and nothing placed before moves.
    running.stop.cancel();
    running.task.await??;
    let second = start_operator(&fake, &clock, "operator-b")?;
    conferences
        .create(&PostParams::default(), &conference("c4", 5)?)
        .await?;
    let (pod_4, ports_4) = ports(&placed("c4").await);
    assert_eq!(pod_4, json!("sfu-2"));
    assert_eq!(ports_4, json!({ "first": 40010, "last": 40019 }));
    for (name, pod, range) in [
        ("c1", pod_1, ports_1),
        ("c2", pod_2, ports_2),
        ("c3", pod_3, ports_3),
    ] {
        let now = fake.get(CONFERENCES, NS, name).unwrap_or_default();
        assert_eq!(ports(&now), (pod, range), "{name} moved");
    }
    second.stop.cancel();
    second.task.await??;
    Ok(())
}

/// Every request the operator made over the scenarios above, as RBAC sees it, is what
/// `operator/tests/rbac-observed.json` lists; the chart's operator Role is checked against that
/// file (`tests/chart.rs`). `CONCLAVE_UPDATE_RBAC=1` rewrites it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_api_requests_are_the_committed_rbac_list() -> Result<()> {
    let mut requests = std::collections::BTreeSet::new();
    for scenario in 0..3 {
        let fake = FakeApi::start().await;
        match scenario {
            0 => placed_failed_over_released_and_deleted(fake.clone()).await?,
            1 => no_capacity_then_a_new_pod(fake.clone()).await?,
            _ => leader_and_standby(fake.clone()).await?,
        }
        requests.extend(fake_api::rbac::observed(&fake, OPERATOR_USER));
    }
    fake_api::rbac::check_committed(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rbac-observed.json"),
        "operator",
        "operator/tests/scenario.rs",
        &requests,
    );
    Ok(())
}
