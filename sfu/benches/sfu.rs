//! The SFU's benchmark (not a test): the join path (signaling join round trips, sequential and
//! in bursts), one publisher (Opus + ~1 Mbps VP8) to N subscribers, and an N×N meeting, over
//! real WebRTC peers on loopback inside a network namespace.
//!
//! The join path is a websocket opened, `join` sent with a signed token, `joined` received and
//! the socket closed: p50/p99 latency and the SFU's CPU per join, for `CONCLAVE_BENCH_JOINS`
//! joins one after another and the same number in bursts of 25 at once.
//!
//! For each scenario it raises N along a ladder until the loss reaches 1 % and reports the
//! largest N below it, with, at each step: loss, the SFU's CPU seconds per forwarded packet
//! (`getrusage` in the SFU process), forwarding latency p50/p99 (inside the SFU from its
//! histogram, and end to end from send stamps in the payloads), and memory per participant
//! (the SFU process's resident set). Results go to `$CARGO_TARGET_DIR/bench-results/sfu.json`
//! and stdout.
//!
//! The SFU runs in a child process (this binary again, `CONCLAVE_BENCH_ROLE=sfu`) so its CPU
//! and memory are measured apart from the clients'; both share the machine's cores, so on a
//! small machine the clients' decryption competes with the SFU and the figures are a lower
//! bound for a dedicated SFU.
//!
//! ```sh
//! export CARGO_TARGET_DIR=/root/.cache/conclave/target
//! cargo bench -p sfu --bench sfu     # as root (it makes a network namespace)
//! ```
//! Knobs: `CONCLAVE_BENCH_WINDOW_SECONDS` (measurement window per step, default 4),
//! `CONCLAVE_BENCH_BUDGET_SECONDS` (no new step after this, default 120),
//! `CONCLAVE_BENCH_FANOUT` and `CONCLAVE_BENCH_MESH` (comma-separated ladders),
//! `CONCLAVE_BENCH_JOINS` (default 400), `CONCLAVE_BENCH_SCENARIOS` (default `join,fanout,mesh`).

#[allow(dead_code)] // shared with `side_by_side.rs`, which uses other parts
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use loadgen::{Client, MediaPlan};
use proto::signal::TrackSource;
use proto::{ConferenceId, TokenKey};
use serde_json::json;
use support::{ROLE, Room, SECRET, SfuProcess, ladder, percentile, seconds, serve_sfu};

const LOSS_LIMIT: f64 = 0.01;
const FANOUT_VIDEO_BPS: u32 = 1_000_000;
const MESH_VIDEO_BPS: u32 = 500_000;

fn main() -> Result<()> {
    if std::env::var_os(ROLE).is_some() {
        return serve_sfu();
    }
    if !loadgen::netns::isolate() {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

fn receipts(clients: &[Client]) -> Vec<&support::Receipts> {
    clients.iter().map(|c| &c.received).collect()
}

fn received_packets(clients: &[Client]) -> u64 {
    support::received_packets(&receipts(clients))
}

/// Waits until every client receives `tracks` tracks, video with a keyframe.
async fn wait_flowing(clients: &[Client], tracks: usize, timeout: Duration) -> bool {
    support::wait_flowing(&receipts(clients), tracks, timeout).await
}

fn clear_latencies(clients: &[Client]) {
    support::clear_latencies(&receipts(clients));
}

fn latencies(clients: &[Client]) -> Vec<u64> {
    support::latencies(&receipts(clients))
}

/// One measured step.
#[derive(Debug, Clone)]
struct Step {
    n: usize,
    participants: usize,
    loss: f64,
    packets_forwarded: f64,
    cpu_seconds_per_packet: Option<f64>,
    cpu_share: f64,
    sfu_latency_p50_ms: Option<f64>,
    sfu_latency_p99_ms: Option<f64>,
    e2e_latency_p50_ms: Option<f64>,
    e2e_latency_p99_ms: Option<f64>,
    rss_per_participant_kib: Option<f64>,
    note: Option<String>,
}

impl Step {
    fn json(&self) -> serde_json::Value {
        json!({
            "n": self.n,
            "participants": self.participants,
            "loss": self.loss,
            "packetsForwarded": self.packets_forwarded,
            "cpuSecondsPerForwardedPacket": self.cpu_seconds_per_packet,
            "sfuCpuCores": self.cpu_share,
            "sfuForwardingLatencyMs": {"p50": self.sfu_latency_p50_ms, "p99": self.sfu_latency_p99_ms},
            "endToEndLatencyMs": {"p50": self.e2e_latency_p50_ms, "p99": self.e2e_latency_p99_ms},
            "sfuRssPerParticipantKiB": self.rss_per_participant_kib,
            "note": self.note,
        })
    }

    fn print(&self, scenario: &str) {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        println!(
            "{scenario:>7} N={:<3} loss {:>6.3}%  fwd {:>7.0} pkts  SFU {:.2} cores, {} µs CPU/pkt  SFU latency p50 {} p99 {} ms  e2e p50 {} p99 {} ms  RSS/participant {} KiB{}",
            self.n,
            self.loss * 100.0,
            self.packets_forwarded,
            self.cpu_share,
            self.cpu_seconds_per_packet
                .map_or("-".into(), |v| format!("{:.1}", v * 1e6)),
            ms(self.sfu_latency_p50_ms),
            ms(self.sfu_latency_p99_ms),
            ms(self.e2e_latency_p50_ms),
            ms(self.e2e_latency_p99_ms),
            self.rss_per_participant_kib
                .map_or("-".into(), |v| format!("{v:.0}")),
            self.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})")),
        );
    }
}

/// Measures `window` of traffic: `publishers` send, `receivers` receive, each publisher's
/// packets are expected `copies` times in total.
async fn measure(
    sfu: &mut SfuProcess,
    publishers: &[&Client],
    receivers: &[Client],
    copies: u64,
    window: Duration,
) -> Result<(f64, f64, Option<f64>, f64, [Option<f64>; 4])> {
    clear_latencies(receivers);
    let sent = |p: &[&Client]| -> u64 { p.iter().map(|c| c.sent.load(Ordering::Relaxed)).sum() };
    let sent0 = sent(publishers);
    let received0 = received_packets(receivers);
    let usage0 = sfu.usage()?;
    let metrics0 = sfu.metrics().await?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let sent1 = sent(publishers);
    let received1 = received_packets(receivers);
    let usage1 = sfu.usage()?;
    let metrics1 = sfu.metrics().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let expected = (sent1 - sent0) * copies;
    let got = received1 - received0;
    let loss = if expected == 0 {
        1.0
    } else {
        (1.0 - got as f64 / expected as f64).max(0.0)
    };
    let forwarded = metrics1.packets_out - metrics0.packets_out;
    let cpu = usage1.cpu_seconds - usage0.cpu_seconds;
    let per_packet = (forwarded > 0.0).then(|| cpu / forwarded);
    let e2e = latencies(receivers);
    let quantiles = [
        metrics1
            .latency_quantile(&metrics0, 0.5)
            .map(|s| s * 1000.0),
        metrics1
            .latency_quantile(&metrics0, 0.99)
            .map(|s| s * 1000.0),
        percentile(&e2e, 0.5),
        percentile(&e2e, 0.99),
    ];
    Ok((loss, forwarded, per_packet, cpu / elapsed, quantiles))
}

/// One signaling join: open `/rtc`, send `join`, wait for `joined`, close. Its duration.
async fn one_join(room: &Room, sub: &str) -> Result<Duration> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let token = room.token(sub, false)?;
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/rtc", room.addr)).await?;
    ws.send(Message::text(
        json!({"type": "join", "token": token, "conference": room.conference}).to_string(),
    ))
    .await?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no answer to join within 10 s")?
            .context("the SFU closed the websocket")??;
        if let Message::Text(text) = message {
            let message: serde_json::Value = serde_json::from_str(&text)?;
            match message["type"].as_str() {
                Some("joined") => break,
                Some("error") => bail!("{sub} was refused: {message}"),
                _ => {}
            }
        }
    }
    let took = started.elapsed();
    ws.send(Message::text(json!({"type": "leave"}).to_string()))
        .await?;
    let _ = ws.close(None).await;
    Ok(took)
}

/// The join path: `joins` one after another, then as many in bursts of 25.
async fn join_path(sfu: &mut SfuProcess, joins: usize) -> Result<serde_json::Value> {
    let room = Room {
        addr: sfu.addr,
        key: TokenKey::new(SECRET.as_bytes())?,
        conference: ConferenceId::from("bench-join"),
    };
    let mut figures = serde_json::Map::new();
    for (mode, burst) in [("sequential", 1usize), ("burst25", 25)] {
        let usage0 = sfu.usage()?;
        let started = Instant::now();
        let mut took: Vec<u64> = Vec::with_capacity(joins);
        for batch in 0..joins.div_ceil(burst) {
            let subs: Vec<String> = (0..burst)
                .map(|i| format!("guest:{mode}-{batch}-{i}"))
                .collect();
            let results =
                futures::future::join_all(subs.iter().map(|sub| one_join(&room, sub))).await;
            for result in results {
                took.push(u64::try_from(result?.as_micros()).unwrap_or(u64::MAX));
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let usage1 = sfu.usage()?;
        took.sort_unstable();
        // `percentile` turns microseconds into milliseconds.
        let ms = |q: f64| percentile(&took, q);
        figures.insert(
            mode.into(),
            json!({
                "joins": took.len(),
                "latencyMs": {"p50": ms(0.5), "p99": ms(0.99)},
                "joinsPerSecond": took.len() as f64 / elapsed,
                "sfuCpuMsPerJoin": (usage1.cpu_seconds - usage0.cpu_seconds) * 1000.0 / took.len() as f64,
            }),
        );
    }
    Ok(serde_json::Value::Object(figures))
}

async fn fanout_step(sfu: &mut SfuProcess, n: usize, window: Duration) -> Result<Step> {
    let room = Room {
        addr: sfu.addr,
        key: TokenKey::new(SECRET.as_bytes())?,
        conference: ConferenceId::from(format!("fanout-{n}").as_str()),
    };
    let publisher = room.join("publisher", true).await?;
    publisher
        .publish(
            &[TrackSource::Microphone, TrackSource::Camera],
            MediaPlan {
                video_bps: FANOUT_VIDEO_BPS,
                simulcast: false,
                keyframe_every: None,
            },
        )
        .await?;
    let rss_before = sfu.usage()?.rss_kib;
    let joins = (0..n).map(|i| {
        let room = &room;
        async move { room.join(&format!("subscriber{i}"), false).await }
    });
    let subscribers: Vec<Client> = futures::future::join_all(joins)
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let flowing = wait_flowing(&subscribers, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = sfu.usage()?.rss_kib;
    let (loss, forwarded, per_packet, share, [p50, p99, e50, e99]) =
        measure(sfu, &[&publisher], &subscribers, n as u64, window).await?;
    let step = Step {
        n,
        participants: n + 1,
        loss,
        packets_forwarded: forwarded,
        cpu_seconds_per_packet: per_packet,
        cpu_share: share,
        sfu_latency_p50_ms: p50,
        sfu_latency_p99_ms: p99,
        e2e_latency_p50_ms: e50,
        e2e_latency_p99_ms: e99,
        rss_per_participant_kib: Some(rss_after.saturating_sub(rss_before) as f64 / n as f64),
        note: (!flowing).then(|| "not every subscriber received media within 30 s".into()),
    };
    for client in subscribers {
        client.leave().await;
    }
    publisher.leave().await;
    Ok(step)
}

async fn mesh_step(sfu: &mut SfuProcess, n: usize, window: Duration) -> Result<Step> {
    let room = Room {
        addr: sfu.addr,
        key: TokenKey::new(SECRET.as_bytes())?,
        conference: ConferenceId::from(format!("mesh-{n}").as_str()),
    };
    let rss_before = sfu.usage()?.rss_kib;
    let joins = (0..n).map(|i| {
        let room = &room;
        async move { room.join(&format!("member{i}"), i == 0).await }
    });
    let members: Vec<Client> = futures::future::join_all(joins)
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    for member in &members {
        member
            .publish(
                &[TrackSource::Microphone, TrackSource::Camera],
                MediaPlan {
                    video_bps: MESH_VIDEO_BPS,
                    simulcast: false,
                    keyframe_every: None,
                },
            )
            .await?;
    }
    let flowing = wait_flowing(&members, 2 * (n - 1), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = sfu.usage()?.rss_kib;
    let publishers: Vec<&Client> = members.iter().collect();
    let (loss, forwarded, per_packet, share, [p50, p99, e50, e99]) =
        measure(sfu, &publishers, &members, (n - 1) as u64, window).await?;
    let step = Step {
        n,
        participants: n,
        loss,
        packets_forwarded: forwarded,
        cpu_seconds_per_packet: per_packet,
        cpu_share: share,
        sfu_latency_p50_ms: p50,
        sfu_latency_p99_ms: p99,
        e2e_latency_p50_ms: e50,
        e2e_latency_p99_ms: e99,
        rss_per_participant_kib: Some(rss_after.saturating_sub(rss_before) as f64 / n as f64),
        note: (!flowing).then(|| "not every member received everyone within 30 s".into()),
    };
    for member in members {
        member.leave().await;
    }
    Ok(step)
}

async fn bench() -> Result<()> {
    let window = seconds("CONCLAVE_BENCH_WINDOW_SECONDS", 4);
    let budget = seconds("CONCLAVE_BENCH_BUDGET_SECONDS", 120);
    let started = Instant::now();
    let mut results = serde_json::Map::new();
    let scenarios =
        std::env::var("CONCLAVE_BENCH_SCENARIOS").unwrap_or_else(|_| "join,fanout,mesh".into());
    let scenarios: Vec<&str> = scenarios.split(',').map(str::trim).collect();
    if scenarios.contains(&"join") {
        let joins = ladder("CONCLAVE_BENCH_JOINS", &[400])[0];
        let mut sfu = SfuProcess::spawn()?;
        let figures = join_path(&mut sfu, joins).await?;
        println!("   join {figures}");
        results.insert("join".into(), figures);
    }
    for scenario in ["fanout", "mesh"] {
        if !scenarios.contains(&scenario) {
            continue;
        }
        let steps = if scenario == "fanout" {
            ladder("CONCLAVE_BENCH_FANOUT", &[25, 100, 200, 300, 400])
        } else {
            ladder("CONCLAVE_BENCH_MESH", &[8, 16, 24, 32, 40])
        };
        let mut measured = Vec::new();
        let mut largest = None;
        let mut stopped = None;
        for n in steps {
            if started.elapsed() > budget {
                stopped = Some(format!("time budget of {budget:?} spent before N={n}"));
                break;
            }
            // A fresh SFU process per step: its resident set then grows only with this
            // step's participants (the allocator keeps what earlier steps freed).
            let mut sfu = SfuProcess::spawn()?;
            let step = if scenario == "fanout" {
                fanout_step(&mut sfu, n, window).await
            } else {
                mesh_step(&mut sfu, n, window).await
            };
            let step = match step {
                Ok(step) => step,
                Err(err) => {
                    stopped = Some(format!("N={n} failed: {err:#}"));
                    break;
                }
            };
            step.print(scenario);
            let passed = step.loss < LOSS_LIMIT && step.note.is_none();
            measured.push(step);
            if !passed {
                stopped = Some(format!("loss reached {LOSS_LIMIT:.0e} at N={n}"));
                break;
            }
            largest = Some(n);
        }
        let best = measured.iter().rev().find(|s| Some(s.n) == largest);
        results.insert(
            scenario.into(),
            json!({
                "videoBps": if scenario == "fanout" { FANOUT_VIDEO_BPS } else { MESH_VIDEO_BPS },
                "largestNBelowOnePercentLoss": largest,
                "atLargestN": best.map(Step::json),
                "steps": measured.iter().map(Step::json).collect::<Vec<_>>(),
                "stopped": stopped,
            }),
        );
        println!(
            "{scenario}: largest N with < 1 % loss: {}{}",
            largest.map_or("none".into(), |n| n.to_string()),
            stopped.map_or(String::new(), |s| format!(" ({s})"))
        );
    }
    let document = json!({
        "benchmark": "sfu",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "windowSeconds": window.as_secs(),
        "runSeconds": started.elapsed().as_secs_f64(),
        "note": "SFU in its own process (CPU via getrusage, memory via VmRSS); clients share the machine",
        "results": results,
    });
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || std::path::PathBuf::from("target"),
            std::path::PathBuf::from,
        )
        .join("bench-results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sfu.json");
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
    println!("{}", serde_json::to_string_pretty(&document)?);
    println!("written to {}", path.display());
    Ok(())
}
