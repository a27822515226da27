//! Failover benchmark: in the cluster in a box (`tests/cluster_box.rs`), a meeting with two
//! attendees that keep it by themselves (`loadgen::Attendee`, reconnecting as the portal does);
//! the SFU process holding it is killed (SIGKILL, the kubelet reports the dead container) and
//! the time until media arrives again at every attendee is measured, `RUNS` times (default 10).
//! After each run the killed pod's SFU starts again, so the next kill finds two pods.
//!
//! `cargo bench -p system-tests --bench failover` (as root: it makes network namespaces, and
//! PostgreSQL must run as for the tests). Results go to
//! `<target dir>/bench-results/failover.json` and stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../cluster_box.rs"]
mod cluster_box;

use std::time::{Duration, Instant};

use cluster_box::*;
use serde_json::json;

fn main() {
    require_tools();
    let _relay = (std::env::var_os("CONCLAVE_NETNS").is_none()).then(PostgresRelay::start);
    if !loadgen::netns::isolate() {
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(runs));
}

async fn bench(runs: usize) {
    let mut cluster = ClusterBox::start(Options::default()).await;
    let admin = cluster.admin_session().await;
    let (meeting, assignment) = placed_meeting(&cluster, &admin, "Failover benchmark").await;
    let id = meeting["id"].as_str().unwrap().to_owned();
    let mut pod = assignment["pod"].as_str().unwrap().to_owned();
    let mut attendees = two_attendees(&cluster, &admin, &meeting);
    all_in(&mut attendees, &pod).await;
    let mut results = Vec::new();
    for run in 0..runs {
        let index = cluster.sfu_index(&pod);
        let killed = Instant::now();
        cluster.kill_sfu(index).await;
        let (new_pod, times) =
            all_back(&mut attendees, killed, &pod, Duration::from_secs(60)).await;
        let slowest = times.iter().max().copied().unwrap_or_default();
        eprintln!("run {run}: {pod} killed, media back on {new_pod} after {times:?}");
        // Where the time went, per attendee: each connection since the kill.
        for (n, attendee) in attendees.iter().enumerate() {
            let at = |t: Option<Instant>| {
                t.map_or("-".to_owned(), |t| {
                    format!("{}", t.saturating_duration_since(killed).as_millis())
                })
            };
            for c in attendee
                .connections()
                .iter()
                .filter(|c| c.ended_at.is_none_or(|e| e >= killed))
            {
                eprintln!(
                    "  attendee {n} on {:?}: asked {} ms, joined {} ms, first packet {} ms, ended {} ms ({:?}), {} join call(s)",
                    c.pod.as_deref().unwrap_or("?"),
                    at(Some(c.asked_at)),
                    at(c.joined_at),
                    at(c.first_packet_at),
                    at(c.ended_at),
                    c.ended,
                    c.api_calls,
                );
            }
        }
        results.push(slowest);
        // The kubelet restarts the dead container; the meeting stays where it went.
        cluster.restart_sfu(index).await;
        let status = cluster.conference(&id);
        assert_eq!(
            status["status"]["assignment"]["pod"],
            new_pod.as_str(),
            "{status}"
        );
        pod = new_pod;
    }
    for attendee in attendees {
        attendee.stop().await.unwrap();
    }
    let mut sorted = results.clone();
    sorted.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    let result = json!({
        "benchmark": "failover",
        "runs": runs,
        "what": "SFU process killed (SIGKILL) -> first media packet again at every attendee (the slower of two), attendees reconnecting by themselves through the API",
        "ms_each": results.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "ms_p50": sorted.get(sorted.len() / 2).map(|d| ms(*d)),
        "ms_max": sorted.last().map(|d| ms(*d)),
    });
    let text = serde_json::to_string_pretty(&result).unwrap();
    println!("{text}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join("bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("failover.json"), text).unwrap();
    cluster.finish().await;
}
