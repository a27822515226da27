//! Two participants publish Opus and VP8; each receives the other's tracks, not its own.
//! Publishers send keyframes only when asked (PLI), so the keyframes seen prove that the SFU's
//! keyframe requests reach them.

mod support;

use proto::Role;
use proto::signal::{ServerMessage, TrackSource};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_receive_each_other() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    assert!(
        matches!(ada.first, ServerMessage::Joined { .. }),
        "{:?}",
        ada.first
    );
    assert!(
        matches!(bob.first, ServerMessage::Joined { .. }),
        "{:?}",
        bob.first
    );
    let both = [TrackSource::Microphone, TrackSource::Camera];
    ada.publish(&both, loadgen::MediaPlan::default())
        .await
        .expect("publish");
    bob.publish(&both, loadgen::MediaPlan::default())
        .await
        .expect("publish");
    let ada_id = ada.id().expect("ada").to_string();
    let bob_id = bob.id().expect("bob").to_string();
    let enough = |publisher: &str| {
        let publisher = publisher.to_owned();
        move |received: &std::collections::HashMap<String, loadgen::Received>| {
            let of: Vec<_> = received
                .values()
                .filter(|r| r.publisher == publisher)
                .collect();
            of.len() == 2
                && of.iter().all(|r| r.packets > 20)
                && of.iter().any(|r| r.video && r.keyframes > 0)
        }
    };
    if let Err(err) = ada.wait_received(WAIT, enough(&bob_id)).await {
        let metrics = sfu.metrics();
        panic!(
            "ada receives bob: {err}\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("keyframe") || l.contains("packets_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    bob.wait_received(WAIT, enough(&ada_id))
        .await
        .expect("bob receives ada");
    for publisher in [&ada, &bob] {
        assert!(
            publisher
                .keyframe_requests
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0,
            "the SFU's PLIs reach the publisher"
        );
    }
    assert!(
        ada.received().values().all(|r| r.publisher != ada_id),
        "nobody receives themselves"
    );
    ada.wait_for(WAIT, |m| matches!(m, ServerMessage::TrackPublished { .. }))
        .await
        .expect("published");
    let metrics = sfu.metrics();
    assert!(metrics.contains("conclave_sfu_participants 2"), "{metrics}");
    ada.leave().await;
    bob.leave().await;
}
