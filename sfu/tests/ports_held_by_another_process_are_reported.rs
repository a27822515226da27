//! Media ports another process holds are not skipped silently: the SFU counts them at start,
//! reports the ones of a conference's range to the conference service when the room opens and
//! when a peer connection steps over more of them, and media still flows on the free ports. A
//! range of which nothing can be bound stops the start with what to change.

mod support;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use proto::signal::TrackSource;
use proto::{Role, RoomEvent, UdpPorts};
use support::{SECRET, WAIT, claims, start};

const RANGE: UdpPorts = UdpPorts {
    first: 43000,
    last: 43009,
};

fn media_ports(events: &[RoomEvent]) -> Vec<Vec<u16>> {
    events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::MediaPorts {
                pod,
                first,
                last,
                unusable,
            } => {
                assert_eq!((pod.as_str(), *first, *last), ("sfu-test", 43000, 43009));
                Some(unusable.clone())
            }
            _ => None,
        })
        .collect()
}

/// Waits until `count` media-port reports arrived.
async fn reports_reach(sfu: &support::Sfu, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while media_ports(&sfu.reports.events()).len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            sfu.reports.events()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_held_by_another_process_are_reported() {
    if !loadgen::netns::isolate() {
        return;
    }
    // The clients' sockets take ephemeral ports; in this test's own network namespace they
    // come from above the range, so that only the ports taken below count as another's.
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "50000 60999")
        .expect("the namespace's ephemeral port range");
    // Another process (this test) holds the first port before the SFU starts.
    let _early = UdpSocket::bind((Ipv4Addr::LOCALHOST, 43000)).expect("bind 43000");
    let sfu = start(RANGE).await;
    let metrics = sfu.metrics();
    for line in [
        "conclave_sfu_udp_ports_unusable 1",
        "conclave_sfu_udp_bind_failures_total{phase=\"start\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }

    // The room opens: its range is tried and what is held is reported.
    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    reports_reach(&sfu, 1).await;
    assert_eq!(media_ports(&sfu.reports.events()), vec![vec![43000]]);

    // Another port is taken while the room runs: the next peer connection steps over it and
    // says so.
    let _late = UdpSocket::bind((Ipv4Addr::LOCALHOST, 43003)).expect("bind 43003");
    let bob = sfu.join(&claims("bob", Role::Speaker, false)).await;
    reports_reach(&sfu, 2).await;
    assert_eq!(
        media_ports(&sfu.reports.events()),
        vec![vec![43000], vec![43000, 43003]]
    );
    let metrics = sfu.metrics();
    for line in [
        "conclave_sfu_udp_ports_unusable 2",
        "conclave_sfu_udp_bind_failures_total{phase=\"room\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    // Every failed bind of a lease counts (held ports are tried again, they may come free).
    let lease_failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("conclave_sfu_udp_bind_failures_total{phase=\"lease\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(lease_failures >= 2, "{metrics}");

    // Media flows on the ports that are free.
    let bob_id = bob.id().expect("bob").to_string();
    bob.publish(&[TrackSource::Microphone], loadgen::MediaPlan::default())
        .await
        .expect("publish");
    ada.wait_received(WAIT, |r| {
        r.values().any(|t| t.publisher == bob_id && t.packets > 10)
    })
    .await
    .expect("ada hears bob");
    ada.leave().await;
    bob.leave().await;
}

#[test]
fn a_range_nothing_can_be_bound_in_stops_the_start() {
    // An address that is not this host's: no port can be bound.
    let mut config = sfu::Config::for_loopback(SECRET, RANGE);
    config.bind_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let err = sfu::SfuState::new(
        &config,
        std::sync::Arc::new(sfu::LogReporter),
        &prometheus::Registry::new(),
    )
    .expect_err("nothing to bind");
    let message = err.to_string();
    assert!(
        message.contains("none of the UDP media ports 43000-43009 can be bound on 192.0.2.1")
            && message.contains("--sfu-bind-ip"),
        "{message}"
    );
}
