//! Websockets that have not joined are limited per client network and in total; only a valid
//! join takes a seat of the SFU's capacity; guests from one network hold a bounded number of
//! seats, the network seen through a trusted proxy's X-Forwarded-For.

mod support;

use std::time::Duration;

use proto::Role;
use proto::signal::{ErrorCode, ServerMessage};
use sfu::Config;
use support::{SECRET, WAIT, claims, connect_raw, join_raw, ports, start_with};

fn behind_the_local_proxy() -> Config {
    let mut config = Config::for_loopback(SECRET, ports());
    config.limits.trusted_proxies = vec!["127.0.0.1".parse().expect("network")];
    config
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_before_join_are_limited_per_network_and_in_total() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = behind_the_local_proxy();
    config.limits.max_pending_per_address = 2;
    config.limits.max_pending_connections = 3;
    let sfu = start_with(config).await;
    let first = connect_raw(sfu.addr, Some("192.0.2.1"))
        .await
        .expect("first");
    let _second = connect_raw(sfu.addr, Some("198.51.100.7, 192.0.2.1"))
        .await
        .expect("the rightmost untrusted hop counts");
    assert_eq!(
        connect_raw(sfu.addr, Some("192.0.2.1")).await.err(),
        Some(429),
        "a third from the same network"
    );
    let _other = connect_raw(sfu.addr, Some("192.0.2.2"))
        .await
        .expect("another network");
    assert_eq!(
        connect_raw(sfu.addr, Some("192.0.2.3")).await.err(),
        Some(503),
        "the total is reached"
    );
    assert_eq!(sfu.state.seat_count(), 0, "nobody joined: no seat is taken");
    drop(first);
    until("the closed connection is no longer pending", || {
        sfu.state.pending_count() == 2
    })
    .await;
    let mut again = connect_raw(sfu.addr, Some("192.0.2.1"))
        .await
        .expect("room again");
    let ada = claims("ada", Role::Listener, false);
    let answer = join_raw(&mut again, &sfu.token(&ada), &ada.conf).await;
    assert!(matches!(answer, ServerMessage::Joined { .. }), "{answer:?}");
    assert_eq!(sfu.state.pending_count(), 2, "joined: no longer pending");
    assert!(
        sfu.metrics()
            .contains("conclave_sfu_connections_refused_total{reason=\"pendingPerAddress\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_valid_join_takes_a_seat_of_the_capacity() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(SECRET, ports());
    config.max_participants = 2;
    let sfu = start_with(config).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect_raw(sfu.addr, None).await.expect("connect"));
    }
    let mut bad = connect_raw(sfu.addr, None).await.expect("connect");
    let mut forged = claims("mallory", Role::Moderator, true);
    forged.conf = proto::ConferenceId::from("elsewhere");
    let refused = join_raw(&mut bad, &sfu.token(&forged), &support::conference()).await;
    assert!(
        matches!(
            refused,
            ServerMessage::Error {
                code: ErrorCode::WrongConference,
                ..
            }
        ),
        "{refused:?}"
    );
    let ada = sfu.join(&claims("ada", Role::Listener, false)).await;
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
    let carl = sfu.join(&claims("carl", Role::Listener, false)).await;
    assert!(
        matches!(
            carl.first,
            ServerMessage::Error {
                code: ErrorCode::Overloaded,
                ..
            }
        ),
        "{:?}",
        carl.first
    );
    assert_eq!(sfu.state.seat_count(), 2);
    ada.leave().await;
    until("ada's seat is free", || sfu.state.seat_count() == 1).await;
    let dora = sfu.join(&claims("dora", Role::Listener, false)).await;
    assert!(
        matches!(dora.first, ServerMessage::Joined { .. }),
        "{:?}",
        dora.first
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_from_one_network_hold_a_bounded_number_of_seats() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = behind_the_local_proxy();
    config.limits.guest_seats_per_client = 2;
    let sfu = start_with(config).await;
    let mut sockets = Vec::new();
    for (n, network) in ["192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2"]
        .into_iter()
        .enumerate()
    {
        let guest = claims(&format!("guest:{n}"), Role::Listener, false);
        let mut ws = connect_raw(sfu.addr, Some(network)).await.expect("connect");
        let answer = join_raw(&mut ws, &sfu.token(&guest), &guest.conf).await;
        sockets.push(ws);
        match n {
            2 => assert!(
                matches!(
                    answer,
                    ServerMessage::Error {
                        code: ErrorCode::TooManyGuests,
                        ..
                    }
                ),
                "a third guest from 192.0.2.1: {answer:?}"
            ),
            _ => assert!(matches!(answer, ServerMessage::Joined { .. }), "{answer:?}"),
        }
    }
    // The API's view of the client wins over the connection's.
    let mut from_token = claims("guest:9", Role::Listener, false);
    from_token.cli = Some("192.0.2.1".into());
    let mut ws = connect_raw(sfu.addr, Some("203.0.113.5"))
        .await
        .expect("connect");
    let answer = join_raw(&mut ws, &sfu.token(&from_token), &from_token.conf).await;
    assert!(
        matches!(
            answer,
            ServerMessage::Error {
                code: ErrorCode::TooManyGuests,
                ..
            }
        ),
        "{answer:?}"
    );
}
