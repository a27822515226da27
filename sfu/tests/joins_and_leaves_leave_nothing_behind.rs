//! 200 participants join and leave one after another while one stays: afterwards no session,
//! UDP socket, port lease, room or participant is left, and memory has not grown with them.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use proto::Role;
use proto::signal::ServerMessage;
use support::{WAIT, claims, ports, start};

const ROUNDS: usize = 200;
/// Rounds before the baseline, so lazily built pools and caches are counted in it.
const WARMUP: usize = 20;
/// Growth of the resident set over the measured rounds that still counts as no leak (about
/// 40 KiB per round; a leaked pair of peer connections costs far more).
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// UDP sockets this process holds (in this network namespace): the inodes of our fds that
/// appear in /proc/net/udp and /proc/net/udp6.
fn udp_sockets() -> usize {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .filter(|inode| inodes.contains(inode))
        .count()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_leave_nothing_behind() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut host = sfu.join(&claims("host", Role::Moderator, true)).await;
    let before = udp_sockets();
    let mut baseline = None;
    for round in 0..ROUNDS {
        if round == WARMUP {
            baseline = Some(rss_kib());
        }
        let guest = sfu
            .join(&claims(&format!("guest{round}"), Role::Listener, false))
            .await;
        let id = guest.id().expect("admitted");
        host.wait_for(WAIT, |m| {
            matches!(m, ServerMessage::ParticipantJoined { .. })
        })
        .await
        .expect("joined");
        guest.leave().await;
        host.wait_for(WAIT, |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant, .. } if *participant == id)
        })
        .await
        .expect("left");
    }
    // Sessions end a moment after `participantLeft` (peer connections close, ports return).
    let deadline = tokio::time::Instant::now() + WAIT;
    while (sfu.state.session_count() != 1
        || sfu.state.ports_in_use() != 2
        || udp_sockets() > before)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grown = rss_kib().saturating_sub(baseline.expect("warmed up"));
    println!(
        "after {ROUNDS} joins and leaves: {} sessions, {} ports leased, {} UDP sockets (before: {before}), RSS grew {grown} KiB over {} rounds",
        sfu.state.session_count(),
        sfu.state.ports_in_use(),
        udp_sockets(),
        ROUNDS - WARMUP
    );
    assert_eq!(sfu.state.session_count(), 1, "only the host's session");
    assert_eq!(sfu.state.ports_in_use(), 2, "only the host's two ports");
    assert!(udp_sockets() <= before, "no UDP socket left behind");
    let metrics = sfu.metrics();
    assert!(metrics.contains("conclave_sfu_participants 1"), "{metrics}");
    assert!(metrics.contains("conclave_sfu_rooms 1"), "{metrics}");
    assert!(grown < RSS_SLACK_KIB, "RSS grew {grown} KiB");

    host.leave().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while (sfu.state.session_count() != 0 || sfu.state.room_count() != 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sfu.state.room_count(), 0, "the empty room is forgotten");
    assert_eq!(sfu.state.ports_in_use(), 0);
    assert!(sfu.metrics().contains("conclave_sfu_participants 0"));
}
