//! With `--sfu-ice-tcp-port`, clients that have no UDP at all (a network that blocks it) get
//! media over ICE-TCP through the pod's one TCP port: each peer connection announces a passive
//! TCP candidate beside its UDP one, and the port hands every connection to its peer connection
//! by the ufrag in the first STUN request.

mod support;

use loadgen::{Client, Transport};
use proto::Role;
use proto::signal::TrackSource;
use support::{SECRET, WAIT, claims, ports, start_with};

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

    let join = |who: &str, role: Role, owner: bool| {
        let claims = claims(who, role, owner);
        let token = sfu.token(&claims);
        let addr = sfu.addr;
        async move {
            Client::join_over(addr, &token, &claims.conf, Transport::TcpOnly)
                .await
                .expect("join")
        }
    };
    let ada = join("ada", Role::Moderator, true).await;
    let bob = join("bob", Role::Speaker, false).await;
    let bob_id = bob.id().expect("bob").to_string();
    bob.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish over TCP");
    ada.wait_received(WAIT, |r| {
        r.values()
            .filter(|t| t.publisher == bob_id && t.packets > 20)
            .count()
            == 2
    })
    .await
    .expect("ada receives bob's audio and video over TCP");
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
}
