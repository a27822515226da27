//! SFU pod states against the fake API server, on virtual time (the fake's clock follows the
//! test's): a pod briefly not ready keeps its conferences, one not ready beyond the grace or
//! whose container stopped loses them (Failover), a pod being deleted drains them at its
//! handoff (Drained). Tests wait for the state they expect; a "nothing moved" is checked on a
//! reconcile that started after the change (`reconciled_after_now`).

mod support;

use std::sync::Arc;

use anyhow::Result;
use chrono::Duration as Span;
use fakekube::FakeApi;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use operator::{Config, ManualClock, Operator, SystemClock};
use serde_json::json;
use support::*;
use tokio_util::sync::CancellationToken;

/// A fleet of two pods, `sfu-0` (1000 participants, preferred while ready) and `sfu-1`
/// (100), and `planning` placed on `sfu-0`.
async fn fleet_with_planning(grace: i64) -> Result<(FakeApi, kube::Client, ManualClock, Running)> {
    init_tracing();
    let fake = FakeApi::start().await;
    let clock = ManualClock::new(utc("2026-03-02T10:00:00Z"));
    fake.set_clock({
        let clock = clock.clone();
        move || operator::Clock::now(&clock)
    });
    let client = fake.client();
    add_sfu_pod(&client, "sfu-0", 1000, "40000-41999", grace).await?;
    add_sfu_pod(&client, "sfu-1", 100, "50000-50999", grace).await?;
    let running = start(&fake, &clock, "operator", config("operator-a"))?;
    create(&client, &conference("planning", 20)?).await?;
    wait_assigned(&fake, "planning", "sfu-0").await;
    Ok((fake, client, clock, running))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flapping_within_the_grace_moves_nothing_and_beyond_it_fails_over() -> Result<()>
{
    let (fake, client, clock, running) = fleet_with_planning(30).await?;

    // Not ready, its container running: suspect. New conferences go elsewhere.
    set_pod(&client, "sfu-0", false, ContainerState::Running).await?;
    create(&client, &conference("probe-1", 10)?).await?;
    wait_assigned(&fake, "probe-1", "sfu-1").await;
    clock.advance(Span::seconds(5));
    let still = reconciled_after_now(&fake, &client, "planning").await?;
    assert_eq!(str_at(&still, "/status/assignment/pod"), Some("sfu-0"));

    // Ready again within the grace: it takes conferences again.
    set_pod(&client, "sfu-0", true, ContainerState::Running).await?;
    create(&client, &conference("probe-2", 10)?).await?;
    wait_assigned(&fake, "probe-2", "sfu-0").await;

    // Not ready again: the grace starts afresh, 11 s after the first flap nothing moved.
    set_pod(&client, "sfu-0", false, ContainerState::Running).await?;
    create(&client, &conference("probe-3", 10)?).await?;
    wait_assigned(&fake, "probe-3", "sfu-1").await;
    clock.advance(Span::seconds(6));
    let still = reconciled_after_now(&fake, &client, "planning").await?;
    assert_eq!(str_at(&still, "/status/assignment/pod"), Some("sfu-0"));
    assert!(events_with_reason(&fake, "Failover").is_empty());
    let text = running.metrics.render();
    assert!(
        text.contains("conclave_operator_failovers_total 0"),
        "{text}"
    );
    assert!(
        text.contains("conclave_operator_sfu_pods{state=\"suspect\"} 1"),
        "{text}"
    );

    // Ten seconds of continuous not-ready: lost, its conferences fail over.
    clock.advance(Span::seconds(4));
    let moved = wait_assigned(&fake, "planning", "sfu-1").await;
    let placed = condition(&moved, "Placed").cloned().unwrap_or_default();
    assert_eq!(placed["reason"], "Failover");
    assert_eq!(
        placed["message"],
        "moved from sfu-0 to sfu-1 because pod sfu-0 was not ready for 10 s"
    );
    wait_assigned(&fake, "probe-2", "sfu-1").await;
    fake.wait_for("a Failover event", WAIT, |f| {
        events_with_reason(f, "Failover").into_iter().next()
    })
    .await;
    assert_no_shared_ports(&fake, &["planning", "probe-1", "probe-2", "probe-3"]);

    running.stop.cancel();
    running.task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_stopped_fails_over_at_once() -> Result<()> {
    let (fake, client, _clock, running) = fleet_with_planning(30).await?;
    // The process died: the kubelet reports the container terminated; no grace is waited for.
    set_pod(&client, "sfu-0", false, ContainerState::Terminated).await?;
    let moved = wait_assigned(&fake, "planning", "sfu-1").await;
    let placed = condition(&moved, "Placed").cloned().unwrap_or_default();
    assert_eq!(placed["reason"], "Failover");
    assert_eq!(
        placed["message"],
        "moved from sfu-0 to sfu-1 because the sfu container of pod sfu-0 is not running"
    );
    fake.wait_for("a Failover event", WAIT, |f| {
        events_with_reason(f, "Failover").into_iter().next()
    })
    .await;
    assert!(
        running
            .metrics
            .render()
            .contains("conclave_operator_failovers_total 1")
    );
    running.stop.cancel();
    running.task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_keeps_its_conferences_until_the_handoff_then_drains_them() -> Result<()> {
    // Deleted at 10:00 with a grace of 60 s: the handoff (15 s before) is at 10:00:45.
    let (fake, client, clock, running) = fleet_with_planning(60).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.delete("sfu-0", &DeleteParams::default()).await?;
    let deleting = fake.get("pods", NS, "sfu-0").unwrap_or_default();
    assert_eq!(
        str_at(&deleting, "/metadata/deletionTimestamp"),
        Some("2026-03-02T10:01:00Z")
    );
    // The SFU turns its readiness off on SIGTERM.
    set_pod(&client, "sfu-0", false, ContainerState::Running).await?;

    // No new conference goes to a draining pod; its own stay until the handoff.
    create(&client, &conference("probe", 10)?).await?;
    wait_assigned(&fake, "probe", "sfu-1").await;
    clock.advance(Span::seconds(44));
    let still = reconciled_after_now(&fake, &client, "planning").await?;
    assert_eq!(
        str_at(&still, "/status/assignment/pod"),
        Some("sfu-0"),
        "{still}"
    );
    assert!(
        running
            .metrics
            .render()
            .contains("conclave_operator_sfu_pods{state=\"draining\"} 1")
    );

    // The handoff: moved elsewhere as planned, not as a failure.
    clock.advance(Span::seconds(1));
    let moved = wait_assigned(&fake, "planning", "sfu-1").await;
    let placed = condition(&moved, "Placed").cloned().unwrap_or_default();
    assert_eq!(placed["reason"], "Drained");
    assert_eq!(
        placed["message"],
        "moved from sfu-0 to sfu-1 because pod sfu-0 is draining (being deleted)"
    );
    let drained = fake
        .wait_for("a Drained event", WAIT, |f| {
            events_with_reason(f, "Drained").into_iter().next()
        })
        .await;
    assert_eq!(drained["type"], "Normal");
    assert!(events_with_reason(&fake, "Failover").is_empty());
    let text = running.metrics.render();
    assert!(text.contains("conclave_operator_drained_total 1"), "{text}");
    assert!(
        text.contains("conclave_operator_failovers_total 0"),
        "{text}"
    );

    // The kubelet's final delete: the pod goes, nothing else moves.
    pods.delete("sfu-0", &DeleteParams::default().grace_period(0))
        .await?;
    fake.wait_for("sfu-0 gone", WAIT, |f| {
        f.get("pods", NS, "sfu-0").is_none().then_some(())
    })
    .await;
    running.stop.cancel();
    running.task.await??;
    Ok(())
}

/// On the real clock, the grace's end alone (no event, no clock jump) moves the conferences:
/// the reconcile requeued itself for that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_grace_moves_the_conferences_without_any_other_event() -> Result<()> {
    init_tracing();
    let fake = FakeApi::start().await;
    let client = fake.client();
    add_sfu_pod(&client, "sfu-0", 1000, "40000-41999", 30).await?;
    add_sfu_pod(&client, "sfu-1", 100, "50000-50999", 30).await?;
    let operator = Operator::new(
        fake.client_as("operator"),
        Config {
            leader_election: false,
            pod_grace_seconds: 1,
            ..config("operator-a")
        },
        Arc::new(SystemClock),
    )?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(operator.run(stop.clone()));
    let mut adhoc = conference("now", 10)?;
    adhoc.spec.ad_hoc = true;
    adhoc.spec.schedule = None;
    create(&client, &adhoc).await?;
    wait_assigned(&fake, "now", "sfu-0").await;
    let went_not_ready = std::time::Instant::now();
    set_pod(&client, "sfu-0", false, ContainerState::Running).await?;
    let moved = wait_assigned(&fake, "now", "sfu-1").await;
    let after = went_not_ready.elapsed();
    assert!(
        after >= std::time::Duration::from_secs(1) && after < std::time::Duration::from_secs(3),
        "moved after {after:?}, the grace is 1 s"
    );
    assert_eq!(
        condition(&moved, "Placed").map(|c| c["reason"].clone()),
        Some(json!("Failover"))
    );
    stop.cancel();
    task.await??;
    Ok(())
}
