//! SIGTERM (a rollout): the pod turns not ready at once, so nothing new is placed on it, but
//! its meetings go on — and people still join them — until the drain time is up; then everyone
//! is told `moved` and nothing more is admitted. A pod that holds no session stops at once.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use proto::Role;
use proto::signal::{CloseReason, ErrorCode, ServerMessage};
use support::cluster::{code, ports};
use support::{Sfu, WAIT, claims};

async fn ready(sfu: &Sfu) -> u16 {
    reqwest::get(format!("http://{}/readyz", sfu.addr))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_pod_keeps_its_meetings_until_the_drain_time_then_tells_everyone_to_move() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = support::start(ports(42000)).await;
    let mut ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let mut bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    assert_eq!(ready(&sfu).await, 200);

    // SIGTERM.
    const DRAIN: Duration = Duration::from_secs(3);
    let started = tokio::time::Instant::now();
    let draining = {
        let state = sfu.state.clone();
        tokio::spawn(async move { state.hand_off(DRAIN).await })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while ready(&sfu).await != 503 {
        assert!(tokio::time::Instant::now() < deadline, "still ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < DRAIN / 2, "readiness turns off at once");
    assert!(sfu.metrics().contains("conclave_sfu_draining 1"));

    // The meeting goes on, and someone may still come in.
    ada.send(proto::signal::ClientMessage::Chat {
        text: "are we moving?".into(),
        to: None,
    });
    bob.wait_for(WAIT, |m| matches!(m, ServerMessage::Chat { .. }))
        .await
        .expect("the meeting goes on while draining");
    let mut cy = sfu.join(&claims("cy", Role::Listener, false)).await;
    assert!(cy.id().is_some(), "{:?}", cy.first);

    // At the drain time everyone is told to move, and the pod is done.
    for client in [&mut ada, &mut bob, &mut cy] {
        client
            .wait_for(DRAIN + WAIT, |m| {
                matches!(
                    m,
                    ServerMessage::Closed {
                        reason: CloseReason::Moved
                    }
                )
            })
            .await
            .expect("told to move");
    }
    assert!(
        started.elapsed() >= DRAIN,
        "not before the drain time: {:?}",
        started.elapsed()
    );
    tokio::time::timeout(WAIT, draining)
        .await
        .expect("the drain ends")
        .unwrap();
    assert_eq!(sfu.state.session_count(), 0);
    // Nothing more is admitted.
    let late = sfu.join(&claims("dee", Role::Listener, false)).await;
    assert_eq!(code(&late.first), Some(ErrorCode::WrongPod));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_pod_that_holds_no_session_stops_at_once() {
    let sfu = support::start(ports(42500)).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(WAIT, sfu.state.hand_off(Duration::from_secs(600)))
        .await
        .expect("no session: no wait for the drain time");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!sfu.state.is_ready());
}
