//! With `--sfu-udp-port` (single-port mode) every peer connection of the SFU is reached on one
//! UDP port: three people, two of them publishing, see and hear each other although no port of
//! the range is leased; the port tells the connections apart by the client's address (learnt
//! from the ICE username of its first check), drops what comes from an address no connection
//! checked from, and forgets the connections when they end.

mod support;

use std::time::Duration;

use proto::Role;
use proto::signal::TrackSource;
use support::{
    SECRET, WAIT, claims, metric_value, net_core, ports, receives_audio_and_video, start_with,
};

fn dropped(metrics: &str, reason: &str) -> u64 {
    metric_value(
        metrics,
        &format!("conclave_sfu_udp_mux_datagrams_dropped_total{{reason=\"{reason}\"}}"),
    ) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_udp_port_carries_every_connection() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = sfu::Config::for_loopback(SECRET, ports());
    config.udp_port = Some(0);
    let sfu = start_with(config).await;
    let mux = sfu.state.udp_mux().expect("single-port mode").clone();
    let port = mux.port();
    assert_ne!(port, 0);
    // The one socket every publisher arrives at got a buffer beyond the kernel's default.
    let buffer = metric_value(
        &sfu.metrics(),
        "conclave_sfu_udp_socket_buffer_bytes{direction=\"receive\"}",
    );
    let default = net_core("rmem_default");
    assert!(
        buffer > default,
        "{buffer} bytes against the default {default}"
    );

    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Speaker, false)).await;
    let cy = sfu.join(&claims("cy", Role::Speaker, false)).await;
    let both = [TrackSource::Microphone, TrackSource::Camera];
    for client in [&bob, &cy] {
        client
            .publish(&both, loadgen::MediaPlan::default())
            .await
            .expect("publish");
    }
    let bob_id = bob.id().expect("bob").to_string();
    let cy_id = cy.id().expect("cy").to_string();
    let from = |who: &str, received: &std::collections::HashMap<_, loadgen::Received>| {
        received
            .values()
            .filter(|r| r.publisher == who && r.packets > 20)
            .count()
    };
    ada.wait_received(WAIT, |r| from(&bob_id, r) == 2 && from(&cy_id, r) == 2)
        .await
        .expect("ada receives bob's and cy's audio and video");
    bob.wait_received(WAIT, |r| from(&cy_id, r) == 2)
        .await
        .expect("bob receives cy");
    cy.wait_received(WAIT, |r| from(&bob_id, r) == 2)
        .await
        .expect("cy receives bob");

    // Nothing of the range was bound: the six connections (a publishing and a receiving one
    // each) are the mux's, and the five that carry media (ada publishes nothing) are reached
    // from their clients' addresses.
    assert_eq!(sfu.state.ports_in_use(), 0);
    assert_eq!(mux.sockets(), 6);
    assert!(mux.remotes() >= 5, "{} remote addresses", mux.remotes());
    assert_eq!(dropped(&sfu.metrics(), "full"), 0);
    // The SFU sent the media itself, from the port's one socket (its address is a specific
    // one here), as on connections with ports of their own.
    let direct = metric_value(
        &sfu.metrics(),
        "conclave_sfu_direct_datagrams_total{what=\"media\"}",
    );
    let forwarded = metric_value(
        &sfu.metrics(),
        "conclave_sfu_rtp_packets_total{direction=\"out\",kind=\"video\"}",
    );
    assert!(
        direct >= forwarded,
        "{direct} datagrams sent directly, {forwarded} video packets forwarded"
    );

    // A datagram from an address no connection checked from reaches nobody.
    let before = dropped(&sfu.metrics(), "unknown");
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a socket");
    stranger
        .send_to(b"\x80\x60 not for anyone", ("127.0.0.1", port))
        .await
        .expect("sent");
    let deadline = tokio::time::Instant::now() + WAIT;
    while dropped(&sfu.metrics(), "unknown") == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stranger's datagram was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Media keeps flowing to the others after one leaves, and the mux forgets the leaver.
    ada.leave().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while mux.sockets() != 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} sockets after ada left",
            mux.sockets()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = cy
        .received()
        .values()
        .filter(|r| r.publisher == bob_id)
        .map(|r| r.packets)
        .sum::<u64>();
    cy.wait_received(WAIT, |r| {
        r.values()
            .filter(|t| t.publisher == bob_id)
            .map(|t| t.packets)
            .sum::<u64>()
            > seen + 50
    })
    .await
    .expect("cy still receives bob");
    bob.leave().await;
    cy.leave().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while mux.sockets() != 0 || mux.remotes() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} sockets, {} addresses after everyone left",
            mux.sockets(),
            mux.remotes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The port bound on every interface (`--sfu-bind-ip 0.0.0.0`): the connections' candidates
/// name the namespace's routed address, the clients reach it from loopback, and the SFU's
/// replies and the media it sends itself leave from the address the clients reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_udp_port_on_every_interface_sends_media_directly() {
    if !loadgen::netns::isolate_with_default_route() {
        return;
    }
    let mut config = sfu::Config::for_loopback(SECRET, ports());
    config.udp_port = Some(0);
    config.bind_ip = std::net::Ipv4Addr::UNSPECIFIED.into();
    let sfu = start_with(config).await;
    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Speaker, false)).await;
    bob.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    let bob_id = bob.id().expect("bob").to_string();
    receives_audio_and_video(&ada, &bob_id, "ada receives bob's audio and video").await;
    let metrics = sfu.metrics();
    let direct = metric_value(
        &metrics,
        "conclave_sfu_direct_datagrams_total{what=\"media\"}",
    );
    let forwarded = metric_value(
        &metrics,
        "conclave_sfu_rtp_packets_total{direction=\"out\",kind=\"video\"}",
    );
    assert!(
        forwarded > 0.0 && direct >= forwarded,
        "{direct} datagrams sent directly, {forwarded} video packets forwarded"
    );
    // Every video copy is dated from its packet's arrival at the pod to its send: on an idle
    // pod, well under the 10 ms bucket.
    let delays = metric_value(
        &metrics,
        "conclave_sfu_copy_delay_seconds_count{kind=\"video\"}",
    );
    let quick = metric_value(
        &metrics,
        "conclave_sfu_copy_delay_seconds_bucket{kind=\"video\",le=\"0.01\"}",
    );
    // (A round's delays are added at its end: the copies counted may be a round ahead.)
    assert!(
        delays > 0.0 && delays <= forwarded,
        "{delays} of {forwarded}"
    );
    assert!(
        quick >= 0.9 * delays,
        "{quick} of {delays} copies within 10 ms"
    );
    assert_eq!(dropped(&metrics, "unknown"), 0, "{metrics}");
    ada.leave().await;
    bob.leave().await;
}
