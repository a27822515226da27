//! The fake behaves as the API server does where the operator's failover and fencing depend on
//! it: graceful deletion of Pods, resourceVersion preconditions on every kind of write, and
//! requests held in flight.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fakekube::FakeApi;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const NS: &str = "conclave";
const WAIT: Duration = Duration::from_secs(10);

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("rfc3339")
}

fn pod(name: &str, node: Option<&str>, grace: Option<i64>) -> Pod {
    let mut spec = json!({ "containers": [{ "name": "sfu", "image": "conclave" }] });
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    if let Some(grace) = grace {
        spec["terminationGracePeriodSeconds"] = json!(grace);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a pod")
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_pod_is_deleted_gracefully_and_removed_by_the_final_delete() {
    let fake = FakeApi::start().await;
    fake.set_clock(|| utc("2026-03-02T10:00:00Z"));
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    pods.create(
        &PostParams::default(),
        &pod("sfu-0", Some("node-a"), Some(45)),
    )
    .await
    .expect("created");

    // The first DELETE gives the pod its terminationGracePeriodSeconds.
    pods.delete("sfu-0", &DeleteParams::default())
        .await
        .expect("deleted");
    let deleting = fake.get("pods", NS, "sfu-0").expect("still there");
    assert_eq!(
        str_at(&deleting, "/metadata/deletionTimestamp"),
        Some("2026-03-02T10:00:45Z")
    );
    assert_eq!(deleting["metadata"]["deletionGracePeriodSeconds"], 45);

    // Asking again with a longer grace changes nothing; a shorter one brings the end forward.
    pods.delete("sfu-0", &DeleteParams::default().grace_period(60))
        .await
        .expect("pending");
    assert_eq!(
        fake.get("pods", NS, "sfu-0")
            .and_then(|p| str_at(&p, "/metadata/deletionTimestamp").map(str::to_owned))
            .as_deref(),
        Some("2026-03-02T10:00:45Z")
    );
    pods.delete("sfu-0", &DeleteParams::default().grace_period(10))
        .await
        .expect("shortened");
    let shortened = fake.get("pods", NS, "sfu-0").expect("still there");
    assert_eq!(
        str_at(&shortened, "/metadata/deletionTimestamp"),
        Some("2026-03-02T10:00:10Z")
    );
    assert_eq!(shortened["metadata"]["deletionGracePeriodSeconds"], 10);

    // The kubelet reports on the pod meanwhile; the pod stays.
    pods.patch_status(
        "sfu-0",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "phase": "Running" } })),
    )
    .await
    .expect("reported");
    assert!(fake.get("pods", NS, "sfu-0").is_some());

    // The kubelet's final DELETE (grace 0) removes it; watchers see MODIFIED, then DELETED.
    pods.delete("sfu-0", &DeleteParams::default().grace_period(0))
        .await
        .expect("removed");
    assert!(fake.get("pods", NS, "sfu-0").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_defaults_to_thirty_seconds_and_the_query_may_give_it() {
    let fake = FakeApi::start().await;
    fake.set_clock(|| utc("2026-03-02T10:00:00Z"));
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    pods.create(&PostParams::default(), &pod("sfu-0", Some("node-a"), None))
        .await
        .expect("created");
    pods.create(&PostParams::default(), &pod("sfu-1", Some("node-a"), None))
        .await
        .expect("created");
    pods.delete("sfu-0", &DeleteParams::default())
        .await
        .expect("deleted");
    assert_eq!(
        fake.get("pods", NS, "sfu-0")
            .and_then(|p| str_at(&p, "/metadata/deletionTimestamp").map(str::to_owned))
            .as_deref(),
        Some("2026-03-02T10:00:30Z")
    );
    let reply = reqwest_free_delete(
        &fake,
        &format!("/api/v1/namespaces/{NS}/pods/sfu-1?gracePeriodSeconds=5"),
    )
    .await;
    assert_eq!(reply, 200);
    assert_eq!(
        fake.get("pods", NS, "sfu-1")
            .and_then(|p| str_at(&p, "/metadata/deletionTimestamp").map(str::to_owned))
            .as_deref(),
        Some("2026-03-02T10:00:05Z")
    );
}

/// A DELETE without a body, as `curl -X DELETE` sends it; answers the status code.
async fn reqwest_free_delete(fake: &FakeApi, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(fake.addr)
        .await
        .expect("connect");
    let request = format!("DELETE {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unscheduled_pod_and_other_kinds_go_at_once() {
    let fake = FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    pods.create(&PostParams::default(), &pod("pending", None, Some(30)))
        .await
        .expect("created");
    pods.delete("pending", &DeleteParams::default())
        .await
        .expect("deleted");
    assert!(fake.get("pods", NS, "pending").is_none());

    // Objects of other kinds keep the plain behaviour: finalizers hold them, else they go.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(fake.client(), NS);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": { "name": "held", "finalizers": ["example.com/keep"] },
    }))
    .expect("a secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("created");
    secrets
        .delete("held", &DeleteParams::default())
        .await
        .expect("marked");
    let held = fake
        .get("secrets", NS, "held")
        .expect("held by its finalizer");
    assert_eq!(held["metadata"]["deletionGracePeriodSeconds"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_resource_version_is_a_conflict_for_apply_merge_replace_and_status() {
    let fake = FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    let created = pods
        .create(&PostParams::default(), &pod("sfu-0", Some("node-a"), None))
        .await
        .expect("created");
    let stale = created
        .metadata
        .resource_version
        .clone()
        .expect("a version");
    pods.patch(
        "sfu-0",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "a": "b" } } })),
    )
    .await
    .expect("changed by someone else");
    let is_conflict = |result: Result<Pod, kube::Error>| matches!(result, Err(kube::Error::Api(status)) if status.code == 409);
    let apply = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "sfu-0", "resourceVersion": stale, "labels": { "c": "d" } },
    });
    assert!(is_conflict(
        pods.patch("sfu-0", &PatchParams::apply("me"), &Patch::Apply(&apply))
            .await
    ));
    let status_apply = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "sfu-0", "resourceVersion": stale },
        "status": { "phase": "Running" },
    });
    assert!(is_conflict(
        pods.patch_status(
            "sfu-0",
            &PatchParams::apply("me"),
            &Patch::Apply(&status_apply)
        )
        .await
    ));
    let merge = json!({ "metadata": { "resourceVersion": stale, "labels": { "e": "f" } } });
    assert!(is_conflict(
        pods.patch("sfu-0", &PatchParams::default(), &Patch::Merge(&merge))
            .await
    ));
    assert!(is_conflict(
        pods.replace("sfu-0", &PostParams::default(), &created)
            .await
    ));
    // With the current version the same apply goes through.
    let current = fake
        .get("pods", NS, "sfu-0")
        .and_then(|p| str_at(&p, "/metadata/resourceVersion").map(str::to_owned))
        .expect("a version");
    let fresh = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "sfu-0", "resourceVersion": current },
        "status": { "phase": "Running" },
    });
    pods.patch_status("sfu-0", &PatchParams::apply("me"), &Patch::Apply(&fresh))
        .await
        .expect("applied");
    assert_eq!(
        fake.get("pods", NS, "sfu-0")
            .and_then(|p| str_at(&p, "/status/phase").map(str::to_owned))
            .as_deref(),
        Some("Running")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_reaches_the_store_late_even_when_its_client_gave_up() {
    let fake = FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(fake.client_as("slow"), NS);
    let created = pods
        .create(&PostParams::default(), &pod("sfu-0", Some("node-a"), None))
        .await
        .expect("created");
    let hold = fake.hold(|r| r.user == "slow" && r.method == "PATCH");
    let merge = json!({ "metadata": {
        "resourceVersion": created.metadata.resource_version, "labels": { "late": "yes" } } });
    // The client gives up after a moment; the request is still on its way.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        pods.patch("sfu-0", &PatchParams::default(), &Patch::Merge(&merge)),
    )
    .await;
    assert!(gave_up.is_err(), "the held request was answered");
    hold.wait_caught("the PATCH", WAIT, |r| r.method == "PATCH")
        .await;
    // Someone else writes meanwhile; the late write then fails its precondition.
    let others: Api<Pod> = Api::namespaced(fake.client(), NS);
    others
        .patch(
            "sfu-0",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "first": "yes" } } })),
        )
        .await
        .expect("written");
    hold.release();
    let refused = fake
        .wait_for("the late write answered", WAIT, |f| {
            f.calls()
                .into_iter()
                .find(|c| c.user == "slow" && c.method == "PATCH")
        })
        .await;
    assert_eq!(refused.status, 409);
    let stored = fake.get("pods", NS, "sfu-0").expect("there");
    assert!(
        stored.pointer("/metadata/labels/late").is_none(),
        "{stored}"
    );

    // Dropped requests never reach the store, and their client never hears back.
    let hold = fake.hold(|r| r.user == "slow" && r.method == "PATCH");
    let lost = tokio::spawn({
        let pods = pods.clone();
        async move {
            pods.patch(
                "sfu-0",
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "labels": { "lost": "yes" } } })),
            )
            .await
        }
    });
    hold.wait_caught("the second PATCH", WAIT, |r| r.method == "PATCH")
        .await;
    hold.drop_held();
    // The next request of the same client is not held any more.
    pods.patch(
        "sfu-0",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "after": "yes" } } })),
    )
    .await
    .expect("not held");
    let stored = fake.get("pods", NS, "sfu-0").expect("there");
    assert!(
        stored.pointer("/metadata/labels/lost").is_none(),
        "{stored}"
    );
    assert_eq!(str_at(&stored, "/metadata/labels/after"), Some("yes"));
    assert!(!lost.is_finished(), "a dropped request was answered");
    lost.abort();
}
