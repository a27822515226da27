//! The gateway's `/metrics`, served over HTTP after real calls so that every family has
//! samples, passes `promtool check metrics` (Prometheus' own linter). Fails when `promtool`
//! (Debian package `prometheus`) is absent: scripts/test.sh installs it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn metrics_pass_promtool() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    assert!(
        Command::new("promtool").arg("--version").output().is_ok(),
        "promtool (Debian package `prometheus`) is required; scripts/test.sh installs it"
    );
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let gateway = TestGateway::start(config("http://127.0.0.1:9")).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:9060")
                .await
                .expect("bind");
            let registry = gateway.registry.clone();
            tokio::spawn(async move {
                axum::serve(listener, sip::http::router(registry))
                    .await
                    .expect("serve");
            });
            let dir = tempfile::tempdir().expect("tempdir");
            sipp(&scenario(dir.path(), "hold.xml", &[]), "u1", 5080)
                .await
                .assert_success();
            let bad = scenario(dir.path(), "bad-sdp.xml", &[("STATUS", "400")]);
            sipp(&bad, "u1", 5082).await.assert_success();
            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;

            let body = reqwest::get("http://127.0.0.1:9060/metrics")
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("body");
            for family in [
                "conclave_sip_calls_active",
                "conclave_sip_calls_total",
                "conclave_sip_calls_refused_total",
                "conclave_sip_prompt_plays_total",
                "conclave_sip_dtmf_digits_total",
            ] {
                assert!(
                    body.contains(&format!("\n{family}")),
                    "{family} in:\n{body}"
                );
            }
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
            let out = promtool.wait_with_output().expect("promtool output");
            assert!(
                out.status.success(),
                "promtool: {}{}\n{body}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            gateway.gateway.stop().await;
        });
}
