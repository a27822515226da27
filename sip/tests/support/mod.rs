//! Test support: the gateway on loopback, sipp as the real caller, and the gateway's metrics.
//! Every test runs in its own network namespace with only `lo` (`loadgen::netns::isolate`),
//! so fixed ports are fine.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use proto::UdpPorts;

/// Where the gateway listens in every test.
pub const GATEWAY: &str = "127.0.0.1:5070";

/// A running gateway and the registry of its metrics.
pub struct TestGateway {
    pub gateway: sip::Gateway,
    pub registry: prometheus::Registry,
}

/// The join-token secret the test API (support/api.rs) and the gateway share.
pub const JOIN_TOKEN_SECRET: &str = "sip-tests-join-token-secret-of-32-bytes-and-more";

/// A gateway configuration for tests, checking IDs with the API at `api_url` with service
/// tokens signed with [`JOIN_TOKEN_SECRET`].
pub fn config(api_url: &str) -> sip::Config {
    let listen: SocketAddr = GATEWAY.parse().expect("address");
    let mut config = sip::Config::for_loopback(
        listen,
        UdpPorts {
            first: 41000,
            last: 41099,
        },
        api_url,
    );
    config.join_token_secret = JOIN_TOKEN_SECRET.into();
    config
}

impl TestGateway {
    pub async fn start(config: sip::Config) -> TestGateway {
        let registry = prometheus::Registry::new();
        let gateway = sip::start(config, &registry)
            .await
            .expect("the gateway starts");
        TestGateway { gateway, registry }
    }

    /// The value of `name{label="value"}` (0 when absent).
    pub fn metric(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("metrics encode");
        let wanted = match label {
            Some((key, value)) => format!("{name}{{{key}=\"{value}\"}} "),
            None => format!("{name} "),
        };
        text.lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }

    /// Waits (up to 20 s) until `name{label}` reaches at least `value`.
    pub async fn wait_for_at_least(&self, name: &str, label: (&str, &str), value: f64) {
        let until = Instant::now() + Duration::from_secs(20);
        while self.metric(name, Some(label)) < value {
            if Instant::now() > until {
                let text = prometheus::TextEncoder::new()
                    .encode_to_string(&self.registry.gather())
                    .unwrap_or_default();
                panic!(
                    "{name} {label:?} is {}, expected at least {value}; metrics:\n{text}",
                    self.metric(name, Some(label))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 10 s) until the metric has `value`; panics with the metrics otherwise.
    pub async fn wait_for(&self, name: &str, label: Option<(&str, &str)>, value: f64) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.metric(name, label) != value {
            if Instant::now() > until {
                let text = prometheus::TextEncoder::new()
                    .encode_to_string(&self.registry.gather())
                    .unwrap_or_default();
                panic!(
                    "{name} {label:?} is {}, expected {value}; metrics:\n{text}",
                    self.metric(name, label)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What sipp did.
pub struct SippRun {
    pub success: bool,
    pub status: String,
    /// The SIP messages sipp sent and received (`-trace_msg`).
    pub messages: String,
    pub errors: String,
}

impl SippRun {
    /// Asserts that sipp's call succeeded, showing what it saw otherwise.
    pub fn assert_success(&self) {
        assert!(
            self.success,
            "sipp failed ({}):\n--- errors\n{}\n--- messages\n{}",
            self.status, self.errors, self.messages
        );
    }
}

/// The scenario `name` from tests/scenarios, with `{{KEY}}` replaced by the given values.
pub fn scenario(dir: &Path, name: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name);
    let mut text = std::fs::read_to_string(&source).expect("the scenario exists");
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the scenario");
    path
}

/// Runs sipp once (one call) against the gateway with `scenario`, over `transport` (`u1` or
/// `t1`). Panics loudly when sipp is not installed.
pub async fn sipp(scenario: &Path, transport: &str, local_port: u16) -> SippRun {
    let dir = scenario.parent().expect("a folder").to_owned();
    let messages = dir.join(format!("{local_port}-messages.log"));
    let errors = dir.join(format!("{local_port}-errors.log"));
    let mut command = Command::new("sipp");
    command
        .arg(GATEWAY)
        .arg("-sf")
        .arg(scenario)
        .args([
            "-m",
            "1",
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &local_port.to_string(),
            "-mp",
            &(local_port + 1000).to_string(),
        ])
        .args(["-nostdin", "-timeout", "40s", "-timeout_error"])
        .args(["-trace_msg", "-message_file"])
        .arg(&messages)
        .args(["-trace_err", "-error_file"])
        .arg(&errors)
        .current_dir(&dir);
    let status = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("sipp task")
        .unwrap_or_else(|err| {
            panic!("sipp (Debian package sip-tester) is needed for the SIP tests and did not run: {err}")
        });
    SippRun {
        success: status.status.success(),
        status: format!(
            "{}; stderr: {}",
            status.status,
            String::from_utf8_lossy(&status.stderr)
        ),
        messages: std::fs::read_to_string(&messages).unwrap_or_default(),
        errors: std::fs::read_to_string(&errors).unwrap_or_default(),
    }
}

/// Logs to the test's output (`RUST_LOG` to choose; `sip=debug` by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sip=debug,rsipstack=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Opus payloads (in order) to 48 kHz mono samples.
pub fn decode_opus(payloads: &[bytes::Bytes]) -> Vec<i16> {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("a decoder");
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; 5_760];
    for payload in payloads {
        if let Ok(len) = decoder.decode(payload, &mut frame, false) {
            pcm.extend_from_slice(&frame[..len]);
        }
    }
    pcm
}
