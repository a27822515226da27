//! A participant who joins while video is already flowing gets a decodable keyframe quickly,
//! although the publisher sends keyframes only when asked (PLI) — so the SFU's request on
//! the new subscription has to reach the publisher and its answer the late joiner.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proto::Role;
use proto::signal::TrackSource;
use support::{WAIT, claims, ports, start};

/// The bound from subscribing (the subscriber connection is up: forwarded media can reach the
/// client) to the first keyframe.
const BOUND: Duration = Duration::from_millis(1500);
/// The bound from joining: ICE and DTLS on loopback usually take 0.3 s, but one lost DTLS
/// flight costs webrtc-rs a 1 s retransmission timer.
const BOUND_FROM_JOIN: Duration = Duration::from_millis(3000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_a_keyframe_quickly() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    ada.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    let ada_id = ada.id().expect("ada").to_string();
    // An early subscriber takes ada's first keyframe, so what the late joiner gets later
    // can only come from a request.
    let bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    bob.wait_received(WAIT, |r| {
        r.values()
            .any(|t| t.publisher == ada_id && t.video && t.keyframes > 0)
    })
    .await
    .expect("bob receives ada's video");
    let requests_before = ada.keyframe_requests.load(Ordering::Relaxed);
    // Two seconds of delta frames, so no keyframe is in flight when carol arrives.
    let bob_packets = |bob: &loadgen::Client| -> u64 {
        bob.received()
            .values()
            .filter(|t| t.video)
            .map(|t| t.packets)
            .sum()
    };
    let flowing = bob_packets(&bob);
    bob.wait_received(WAIT, |r| {
        r.values()
            .filter(|t| t.video)
            .map(|t| t.packets)
            .sum::<u64>()
            > flowing + 100
    })
    .await
    .expect("video keeps flowing");

    let subscribing = Instant::now();
    let carol = sfu.join(&claims("carol", Role::Listener, false)).await;
    let received = carol
        .wait_received(WAIT, |r| {
            r.values()
                .any(|t| t.publisher == ada_id && t.video && t.first_keyframe.is_some())
        })
        .await
        .expect("carol gets a keyframe");
    let video = received
        .values()
        .find(|t| t.publisher == ada_id && t.video)
        .expect("ada's video");
    let keyframe = video.first_keyframe.expect("a keyframe");
    let connected = carol
        .subscriber_connected_at()
        .expect("media arrived, so the subscriber connection is up");
    let from_join = keyframe - subscribing;
    let from_connected = keyframe.saturating_duration_since(connected);
    println!(
        "late joiner: first keyframe {} ms after joining, {} ms after its subscriber connection came up ({} ms after joining; first packet after {} ms)",
        from_join.as_millis(),
        from_connected.as_millis(),
        (connected - subscribing).as_millis(),
        video.started.map_or(0, |s| (s - subscribing).as_millis())
    );
    assert!(
        from_connected < BOUND,
        "first keyframe {from_connected:?} after subscribing, bound {BOUND:?}"
    );
    assert!(
        from_join < BOUND_FROM_JOIN,
        "first keyframe {from_join:?} after joining, bound {BOUND_FROM_JOIN:?}"
    );
    assert!(
        ada.keyframe_requests.load(Ordering::Relaxed) > requests_before,
        "the keyframe answered a request"
    );
    carol.leave().await;
    bob.leave().await;
    ada.leave().await;
}
