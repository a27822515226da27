//! With `--sfu-ice-tcp-port`, clients that have no UDP at all (a network that blocks it) get
//! media over ICE-TCP through the pod's one TCP port: each peer connection announces a passive
//! TCP candidate beside its UDP one, and the port hands every connection to its peer connection
//! by the ufrag in the first STUN request. A client with UDP on the same pod still gets its
//! media by the direct path; one over TCP gets it through webrtc-rs, with sender reports.

mod support;

use loadgen::{Client, Transport};
use proto::Role;
use proto::signal::TrackSource;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{SECRET, WAIT, claims, metric_value, ports, receives_audio_and_video, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_over_tcp_carries_media_when_udp_is_blocked() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = sfu::Config::for_loopback(SECRET, ports());
    config.ice_tcp_port = Some(0);
    let sfu = start_with(config).await;
    let port = sfu.state.ice_tcp_port().expect("an ICE-TCP port");
    assert_ne!(port, 0);

    let join = |who: &str, role: Role, owner: bool, transport: Transport| {
        let claims = claims(who, role, owner);
        let token = sfu.token(&claims);
        let addr = sfu.addr;
        async move {
            Client::join_over(addr, &token, &claims.conf, transport)
                .await
                .expect("join")
        }
    };
    let ada = join("ada", Role::Moderator, true, Transport::TcpOnly).await;
    let bob = join("bob", Role::Speaker, false, Transport::TcpOnly).await;
    let cy = join("cy", Role::Listener, false, Transport::Udp).await;
    let bob_id = bob.id().expect("bob").to_string();
    bob.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish over TCP");
    receives_audio_and_video(&ada, &bob_id, "ada receives bob's audio and video over TCP").await;
    receives_audio_and_video(&cy, &bob_id, "cy receives bob's audio and video over UDP").await;
    // Both get the sender reports of bob's two streams, each second: Cy's from the direct
    // path, Ada's from webrtc-rs' (her connection runs over TCP).
    for (who, client) in [("ada", &ada), ("cy", &cy)] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while client.sender_reports.load(Ordering::Relaxed) < 4 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{who} got {} sender reports",
                client.sender_reports.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Only Cy's copies left by the direct path: as many as she received, give or take those
    // on their way, and none of Ada's.
    let metrics = sfu.metrics();
    let direct = metric_value(
        &metrics,
        "conclave_sfu_direct_datagrams_total{what=\"media\"}",
    ) as u64;
    let to_cy: u64 = cy.received().values().map(|t| t.packets).sum();
    let to_ada: u64 = ada.received().values().map(|t| t.packets).sum();
    assert!(
        direct >= to_cy.saturating_sub(20),
        "{direct} direct, cy got {to_cy}\n{metrics}"
    );
    assert!(
        direct < to_cy + to_ada / 2,
        "{direct} direct, cy got {to_cy}, ada {to_ada}"
    );
    // Bob's sending and Ada's receiving connection came through the pod's one port.
    let relayed: u64 = sfu
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("conclave_sfu_ice_tcp_connections_total{result=\"relayed\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(relayed >= 2, "{}", sfu.metrics());
    ada.leave().await;
    bob.leave().await;
    cy.leave().await;
}
