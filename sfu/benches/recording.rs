//! What recording costs the SFU (not a test): CPU per recorded track. For each kind — Opus
//! audio (50 packets/s), VP8 video at `CONCLAVE_BENCH_VIDEO_BPS` (default 1.5 Mbit/s, 30
//! frames/s, a keyframe every 5 s as the recorder asks) — `CONCLAVE_BENCH_TRACKS` tracks
//! (default 20) of `CONCLAVE_BENCH_SECONDS` (default 60) of media are recorded on one thread
//! as the SFU does it: each packet handed over a bounded queue to the track's writer, put back
//! in order, depacketized, written into segments, and every segment stored in a local folder.
//! The process's CPU time (`getrusage`) over the media time gives the share of a core one
//! recorded track takes. Results go to `$CARGO_TARGET_DIR/bench-results/sfu-recording.json`
//! and stdout.
//!
//! ```sh
//! cargo bench -p sfu --bench recording
//! ```

use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use rtc::rtp;
use serde_json::json;
use sfu::recording::track::Output;
use sfu::recording::{Codec, Files, Timing, TrackRecorder};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> Result<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// The packets of one track, with their arrival times: `(packet, at)`.
fn media(
    codec: Codec,
    seconds: u64,
    video_bps: u64,
    start: DateTime<Utc>,
) -> Vec<(rtp::Packet, DateTime<Utc>)> {
    let mut packets = Vec::new();
    let mut seq: u16 = rand::random();
    let ssrc = rand::random();
    let mut push = |ts: u32, marker: bool, payload: Vec<u8>, at: DateTime<Utc>| {
        packets.push((
            rtp::Packet {
                header: rtp::Header {
                    version: 2,
                    marker,
                    sequence_number: seq,
                    timestamp: ts,
                    ssrc,
                    ..Default::default()
                },
                payload: Bytes::from(payload),
            },
            at,
        ));
        seq = seq.wrapping_add(1);
    };
    match codec {
        Codec::Opus => {
            for n in 0..seconds * 50 {
                let mut payload = vec![0x78u8];
                payload.resize(90, 0x5a);
                push(
                    (n * 960) as u32,
                    false,
                    payload,
                    start + TimeDelta::milliseconds(n as i64 * 20),
                );
            }
        }
        _ => {
            let frame_bytes = (video_bps / 8 / 30) as usize;
            for n in 0..seconds * 30 {
                let at = start + TimeDelta::microseconds(n as i64 * 33_333);
                let key = n % 150 == 0;
                let size = if key { frame_bytes * 4 } else { frame_bytes };
                let chunks = size.div_ceil(1100).max(1);
                for chunk in 0..chunks {
                    let mut payload = vec![if chunk == 0 { 0x10 } else { 0x00 }];
                    if chunk == 0 {
                        payload.extend_from_slice(if key {
                            &[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]
                        } else {
                            &[0x01, 0x00, 0x00]
                        });
                    }
                    payload.resize(size / chunks, 0xab);
                    push((n * 3000) as u32, chunk + 1 == chunks, payload, at);
                }
            }
        }
    }
    packets
}

async fn record(
    codec: Codec,
    tracks: u64,
    seconds: u64,
    video_bps: u64,
    files: &Files,
) -> Result<serde_json::Value> {
    let start = Utc::now();
    let mut packets = 0usize;
    let mut cpu = 0.0;
    let mut wall = std::time::Duration::ZERO;
    let mut stored = 0u64;
    let mut bytes = 0u64;
    for n in 0..tracks {
        // Made before the clock runs: the media's making is not the recorder's cost.
        let input = media(codec, seconds, video_bps, start);
        packets += input.len();
        let cpu_before = cpu_seconds()?;
        let began = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel(sfu::recording::QUEUE);
        let mut recorder = TrackRecorder::new(codec, Timing::default(), rand::random());
        let prefix = format!("recordings/bench/tracks/{n:03}-{}/", codec.as_str());
        let feeder = tokio::spawn(async move {
            for item in input {
                // As the forwarder: never wait.
                while tx.try_send(item.clone()).is_err() {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut last = start;
        while let Some((packet, at)) = rx.recv().await {
            last = at;
            for output in recorder.push(packet, at) {
                if let Output::Segment(segment) = output {
                    stored += 1;
                    bytes += segment.bytes.len() as u64;
                    files
                        .put(
                            &format!("{prefix}{:06}.{}", segment.seq, codec.extension()),
                            segment.bytes,
                        )
                        .await?;
                }
            }
        }
        for output in recorder.finish(last) {
            if let Output::Segment(segment) = output {
                stored += 1;
                bytes += segment.bytes.len() as u64;
                files
                    .put(
                        &format!("{prefix}{:06}.{}", segment.seq, codec.extension()),
                        segment.bytes,
                    )
                    .await?;
            }
        }
        feeder.await?;
        cpu += cpu_seconds()? - cpu_before;
        wall += began.elapsed();
    }
    let media_seconds = (tracks * seconds) as f64;
    Ok(json!({
        "codec": codec.as_str(),
        "tracks": tracks,
        "secondsPerTrack": seconds,
        "packets": packets,
        "segments": stored,
        "bytes": bytes,
        "cpuSeconds": cpu,
        "wallSeconds": wall.as_secs_f64(),
        "cpuPerTrackPercentOfCore": 100.0 * cpu / media_seconds,
        "tracksPerCore": media_seconds / cpu.max(1e-9),
        "cpuMicrosecondsPerPacket": 1e6 * cpu / packets as f64,
    }))
}

fn main() -> Result<()> {
    let tracks = env("CONCLAVE_BENCH_TRACKS", 20);
    let seconds = env("CONCLAVE_BENCH_SECONDS", 60);
    let video_bps = env("CONCLAVE_BENCH_VIDEO_BPS", 1_500_000);
    let store = tempfile::tempdir()?;
    let files = Files::local(store.path())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for codec in [Codec::Opus, Codec::Vp8] {
            results.push(record(codec, tracks, seconds, video_bps, &files).await?);
        }
        anyhow::Ok(results)
    })?;
    let document = json!({
        "benchmark": "sfu-recording",
        "videoBps": video_bps,
        "note": "one thread: bounded queue, reorder, depacketize, containers, local-folder store; CPU via getrusage",
        "results": results,
    });
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || std::path::PathBuf::from("target"),
            std::path::PathBuf::from,
        )
        .join("bench-results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sfu-recording.json");
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
    println!("{}", serde_json::to_string_pretty(&document)?);
    println!("written to {}", path.display());
    Ok(())
}
