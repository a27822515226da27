//! The SFU's `/metrics` exposition, with media flowing so every metric family has samples,
//! passes `promtool check metrics` (Prometheus' own linter: HELP lines, counter suffixes,
//! unit names). Fails when `promtool` (Debian package `prometheus`) is absent: scripts/test.sh
//! installs it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use proto::Role;
use proto::signal::TrackSource;
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    if !loadgen::netns::isolate() {
        return;
    }
    assert!(
        Command::new("promtool").arg("--version").output().is_ok(),
        "promtool (Debian package `prometheus`) is required; scripts/test.sh installs it"
    );
    let sfu = start(ports()).await;
    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    ada.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    let ada_id = ada.id().expect("ada").to_string();
    bob.wait_received(WAIT, |r| {
        r.values()
            .filter(|t| t.publisher == ada_id && t.packets > 20)
            .count()
            == 2
    })
    .await
    .expect("media flows");
    // The exposition as served over HTTP, not only as encoded in-process.
    let body = reqwest::get(format!("http://{}/metrics", sfu.addr))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    assert!(body.contains("conclave_sfu_rtp_packets_total"), "{body}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let output = promtool.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- exposition ---\n{body}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ada.leave().await;
    bob.leave().await;
}
