//! One flooder plus one participant who stops reading cannot grow the SFU's memory: the
//! stalled participant's bounded queue fills and the session is dropped with `tooSlow`, while
//! the room goes on. Chat is rate-limited per participant, and a client that answers no ping
//! is closed as `unresponsive`.

mod support;

use std::time::Duration;

use proto::Role;
use proto::signal::{ClientMessage, CloseReason, ErrorCode, MAX_CHAT_BYTES, ServerMessage};
use sfu::Config;
use support::{SECRET, WAIT, claims, connect_raw, join_raw, ports, start_with};

fn left_because(message: &ServerMessage, why: CloseReason) -> bool {
    matches!(message, ServerMessage::ParticipantLeft { reason, .. } if *reason == why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_who_stops_reading_is_dropped_as_too_slow() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(SECRET, ports());
    config.limits.session_queue = 64;
    config.limits.chat_rate = 0.0;
    let sfu = start_with(config).await;
    let mut flooder = sfu.join(&claims("flooder", Role::Listener, false)).await;
    assert!(
        matches!(flooder.first, ServerMessage::Joined { .. }),
        "{:?}",
        flooder.first
    );
    // Joins and then never reads again.
    let mut stalled = connect_raw(sfu.addr, None).await.expect("connect");
    let stalled_claims = claims("stalled", Role::Listener, false);
    let first = join_raw(
        &mut stalled,
        &sfu.token(&stalled_claims),
        &stalled_claims.conf,
    )
    .await;
    assert!(matches!(first, ServerMessage::Joined { .. }), "{first:?}");
    flooder
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::ParticipantJoined { .. })
        })
        .await
        .expect("the stalled participant arrived");

    // In batches whose last message the flooder sees come back before it sends more: its own
    // queue is as small as the stalled participant's, and only the one who does not read may
    // fill it (sent all at once, the echoes can outrun the flooder's writer on a busy machine).
    const PER_BATCH: usize = 16;
    let text = |i: usize| format!("{i:05}{}", "x".repeat(MAX_CHAT_BYTES - 5));
    let mut let_go = false;
    for batch in 0..250 {
        for i in batch * PER_BATCH..(batch + 1) * PER_BATCH {
            flooder.send(ClientMessage::Chat {
                text: text(i),
                to: None,
            });
        }
        let last = format!("{:05}", (batch + 1) * PER_BATCH - 1);
        let seen = flooder
            .wait_for(Duration::from_secs(30), |m| {
                left_because(m, CloseReason::TooSlow)
                    || matches!(m, ServerMessage::Chat { message } if message.text.starts_with(&last))
            })
            .await
            .expect("the flooder's own messages come back");
        if left_because(&seen, CloseReason::TooSlow) {
            let_go = true;
            break;
        }
    }
    assert!(let_go, "the stalled participant is let go as too slow");
    assert!(
        sfu.metrics()
            .contains("conclave_sfu_sessions_closed_total{reason=\"tooSlow\"} 1"),
        "{}",
        sfu.metrics()
    );
    // The room goes on: the flooder's own messages still come back, and the seat is free.
    flooder.send(ClientMessage::Chat {
        text: "still here".into(),
        to: None,
    });
    flooder
        .wait_for(
            Duration::from_secs(30),
            |m| matches!(m, ServerMessage::Chat { message } if message.text == "still here"),
        )
        .await
        .expect("the room goes on");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_beyond_the_burst_is_refused_and_reaches_nobody() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(SECRET, ports());
    // Practically no refill during the test: exactly the burst goes through.
    config.limits.chat_rate = 0.001;
    config.limits.chat_burst = 3;
    let sfu = start_with(config).await;
    let mut ada = sfu.join(&claims("ada", Role::Listener, false)).await;
    let mut bob = sfu.join(&claims("bob", Role::Listener, false)).await;
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
    for n in 0..10 {
        ada.send(ClientMessage::Chat {
            text: format!("m{n}"),
            to: None,
        });
    }
    for _ in 0..7 {
        let refusal = ada
            .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
            .await
            .expect("a refusal");
        assert!(
            matches!(
                refusal,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }
            ),
            "{refusal:?}"
        );
    }
    // A marker from bob: everything ada sent before it has been handled.
    bob.send(ClientMessage::Chat {
        text: "marker".into(),
        to: None,
    });
    let mut seen = Vec::new();
    loop {
        let message = bob.next(WAIT).await.expect("chat");
        if let ServerMessage::Chat { message } = message {
            if message.text == "marker" {
                break;
            }
            seen.push(message.text);
        }
    }
    assert_eq!(seen, vec!["m0", "m1", "m2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_no_ping_is_closed_as_unresponsive() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(SECRET, ports());
    config.limits.ping_seconds = 1;
    config.limits.idle_timeout_seconds = 2;
    let sfu = start_with(config).await;
    // The host's client reads (and so answers pings) all along.
    let mut host = sfu.join(&claims("host", Role::Moderator, true)).await;
    assert!(
        matches!(host.first, ServerMessage::Joined { .. }),
        "{:?}",
        host.first
    );
    let mut silent = connect_raw(sfu.addr, None).await.expect("connect");
    let silent_claims = claims("silent", Role::Listener, false);
    let first = join_raw(&mut silent, &sfu.token(&silent_claims), &silent_claims.conf).await;
    assert!(matches!(first, ServerMessage::Joined { .. }), "{first:?}");
    // It never reads again, so it never answers a ping.
    host.wait_for(Duration::from_secs(10), |m| {
        left_because(m, CloseReason::Unresponsive)
    })
    .await
    .expect("the silent client is closed");
    // The host, who answers, stays well past the idle timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    host.send(ClientMessage::Chat {
        text: "still here".into(),
        to: None,
    });
    host.wait_for(
        WAIT,
        |m| matches!(m, ServerMessage::Chat { message } if message.text == "still here"),
    )
    .await
    .expect("the host's session is alive");
    drop(silent);
}
