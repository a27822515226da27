//! How long composing a recording takes (not a test): per minute of meeting. Makes
//! `CONCLAVE_BENCH_MINUTES` (default 1) of segments the way the SFU writes them — `CONCLAVE_BENCH_PUBLISHERS`
//! (default 2) publishers, each an Opus microphone and a VP8 camera (640×480, 30 fps) in 5 s
//! segments — and runs the composer's ffmpeg plan on them (the download from the store is
//! left out: a local folder costs nothing, S3 costs the network). Results go to
//! `$CARGO_TARGET_DIR/bench-results/api-compose.json` and stdout.
//!
//! ```sh
//! cargo bench -p api --bench compose
//! CONCLAVE_BENCH_MINUTES=5 CONCLAVE_BENCH_PUBLISHERS=4 cargo bench -p api --bench compose
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use api::recording::compose::{self, Kind, Segment, Track};
use chrono::{DateTime, Duration, Utc};

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg is installed");
    assert!(status.success(), "ffmpeg {args:?}");
}

fn main() {
    let minutes = env("CONCLAVE_BENCH_MINUTES", 1).max(1);
    let publishers = env("CONCLAVE_BENCH_PUBLISHERS", 2).max(1);
    let work = tempfile::tempdir().unwrap();
    // One 5 s segment of each kind, copied under every name (the content does not change the
    // cost much; making each one would take longer than composing).
    let audio = work.path().join("audio.ogg");
    let video = work.path().join("video.ivf");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:d=5",
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        audio.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=640x480:r=30:d=5",
        "-c:v",
        "libvpx",
        "-b:v",
        "800k",
        "-g",
        "150",
        "-deadline",
        "realtime",
        video.to_str().unwrap(),
    ]);
    let origin: DateTime<Utc> = "2026-06-01T08:00:00Z".parse().unwrap();
    let segments = minutes * 12;
    let mut tracks = Vec::new();
    for publisher in 0..publishers {
        for (kind, source, ext) in [(Kind::Audio, &audio, "ogg"), (Kind::Video, &video, "ivf")] {
            let id = format!("{publisher:03}-{ext}");
            let segments = (0..segments)
                .map(|seq| {
                    let path: PathBuf = work.path().join(format!("{id}-{seq:06}.{ext}"));
                    std::fs::copy(source, &path).unwrap();
                    let start = origin + Duration::milliseconds(seq * 5_000);
                    Segment {
                        path,
                        start,
                        end: start + Duration::milliseconds(4_980),
                    }
                })
                .collect();
            tracks.push(Track { id, kind, segments });
        }
    }
    let output = work.path().join("recording.mp4");
    let plan = compose::plan(origin, minutes * 60_000, &tracks, &[], work.path(), &output);
    for (path, text) in &plan.lists {
        std::fs::write(path, text).unwrap();
    }
    let started = Instant::now();
    let status = Command::new("ffmpeg")
        .args(&plan.args)
        .status()
        .expect("ffmpeg runs");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "the composer's ffmpeg failed");
    let size = std::fs::metadata(&output).unwrap().len();
    let per_minute = seconds / minutes as f64;
    let results = serde_json::json!({
        "minutes": minutes,
        "publishers": publishers,
        "composeSeconds": seconds,
        "composeSecondsPerMeetingMinute": per_minute,
        "outputBytes": size,
    });
    println!(
        "composing {minutes} min of {publishers} publishers (mic + 640x480 camera each): {seconds:.1} s, {per_minute:.1} s per meeting minute, {} kB",
        size / 1000
    );
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("api-compose.json"),
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
}
