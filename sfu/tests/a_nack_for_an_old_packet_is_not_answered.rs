//! A subscriber's NACK is answered only for packets that left its connection at most a second
//! before (`backlog::NACK_MAX_AGE`): a retransmission later than that arrives after the
//! receiver's jitter buffer has moved on, and on a busy pod costs as much as a new packet. A
//! NACK for a packet sent a moment ago passes to the NACK responder; one for a packet sent
//! well over a second ago is kept from it and counted in `conclave_sfu_nacks_ignored_total`.
//! (With the direct path, the default on a connection with its own port, the NACK guard
//! answers it itself: the recent packet is sent again once.)

mod support;

use std::time::Duration;

use proto::Role;
use proto::signal::TrackSource;
use support::{WAIT, claims, metric_value, ports, start};

const IGNORED: &str = "conclave_sfu_nacks_ignored_total";
const RECEIVED: &str = "conclave_sfu_nacks_received_total";
const RETRANSMITTED: &str = r#"conclave_sfu_direct_datagrams_total{what="retransmission"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_for_an_old_packet_is_not_answered() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    ada.publish(&[TrackSource::Camera], loadgen::MediaPlan::default())
        .await
        .expect("publish");
    // Bob has received ada's camera for well over a second.
    let old_enough = Duration::from_millis(1500);
    bob.wait_received(WAIT, |r| {
        r.values().any(|t| {
            t.video
                && t.video_log
                    .front()
                    .is_some_and(|p| p.at.elapsed() > old_enough)
        })
    })
    .await
    .expect("ada's camera reaches bob");
    let (track, old, recent) = bob
        .received()
        .into_iter()
        .find_map(|(track, received)| {
            let log = &received.video_log;
            let old = log.iter().find(|p| p.at.elapsed() > old_enough)?.sequence;
            let recent = log.back()?.sequence;
            received.video.then_some((track, old, recent))
        })
        .expect("a video track with old and recent packets");

    // A NACK that passes the guard reaches the SFU's own count of received NACKs (behind the
    // NACK responder); one kept back is counted as ignored instead. Each shows in one of them.
    let count = |name: &str| metric_value(&sfu.metrics(), name);
    let (received, ignored) = (count(RECEIVED), count(IGNORED));
    // Bob's connection has its own port: the SFU sends its media itself, and answers the
    // NACKs from what it sent (docs/sfu.md, "Direct media").
    let retransmitted = count(RETRANSMITTED);
    bob.send_nack(&track, &[recent]).await.expect("nack");
    bob.send_nack(&track, &[old]).await.expect("nack");
    let deadline = tokio::time::Instant::now() + WAIT;
    while count(RECEIVED) < received + 1.0 || count(IGNORED) < ignored + 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "NACK for packet {recent} (just sent) answered: {}, for packet {old} (sent over \
             {old_enough:?} ago) kept back: {}",
            count(RECEIVED) - received,
            count(IGNORED) - ignored,
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(IGNORED), ignored + 1.0, "only the old packet's NACK");
    assert_eq!(
        count(RETRANSMITTED),
        retransmitted + 1.0,
        "the recent packet, sent again by the direct path"
    );
    ada.leave().await;
    bob.leave().await;
}
