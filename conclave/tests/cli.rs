//! The binary's own command line: `crdgen`, `schemas`, `--help`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

#[test]
fn crdgen_prints_the_conference_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .arg("crdgen")
        .output()
        .unwrap();
    assert!(output.status.success());
    let yaml = String::from_utf8(output.stdout).unwrap();
    assert!(yaml.contains("kind: CustomResourceDefinition"));
    assert!(yaml.contains("conferences.conclave.dev"));
}

#[test]
fn the_portal_type_sources_are_up_to_date() {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src/generated");
    let output = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["schemas", "--check"])
        .arg(&web)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let openapi: Value =
        serde_json::from_str(&std::fs::read_to_string(web.join("openapi.json")).unwrap()).unwrap();
    assert!(openapi["paths"]["/api/v1/join"]["post"].is_object());
    let signal: Value =
        serde_json::from_str(&std::fs::read_to_string(web.join("signal.schema.json")).unwrap())
            .unwrap();
    assert!(signal["definitions"]["ServerMessage"].is_object());
}

#[test]
fn schemas_check_names_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openapi.json"), "{}").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["schemas", "--check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("openapi.json"), "{stderr}");
    assert!(stderr.contains("signal.schema.json"), "{stderr}");
}

#[test]
fn help_lists_every_command_and_option() {
    let output = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["standalone", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--public-url",
        "--sfu-udp-ports",
        "--sfu-bind-ip",
        "--portal-dir",
        "CONCLAVE_LISTEN",
        "--sip-listen",
        "CONCLAVE_SIP_LISTEN",
        "--sip-rtp-ports",
        "--sip-prompts-dir",
        "--sip-public-address",
        "--sip-trunk-from",
        "--sip-allow-from",
        "--sip-open",
    ] {
        assert!(
            help.contains(option),
            "{option} missing from --help:\n{help}"
        );
    }
    // The embedded gateway asks the process's own API and shows its metrics on /metrics:
    // flags for those would be lies.
    for absent in ["--sip-api-url", "--sip-http-listen"] {
        assert!(
            !help.contains(absent),
            "{absent} in standalone --help:\n{help}"
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for command in [
        "standalone",
        "api",
        "sfu",
        "sip",
        "operator",
        "crdgen",
        "schemas",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}

/// A WAV header and `samples` silent 16-bit samples.
fn wav(rate: u32, channels: u16, samples: u32) -> Vec<u8> {
    let data = samples * 2 * u32::from(channels);
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.resize(out.len() + data as usize, 0);
    out
}

#[test]
fn sip_refuses_to_start_with_a_prompt_in_the_wrong_format() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("welcome.wav"), wav(16000, 1, 1600)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args([
            "sip",
            "--sip-listen",
            "127.0.0.1:0",
            "--sip-http-listen",
            "127.0.0.1:0",
        ])
        .arg("--sip-prompts-dir")
        .arg(dir.path())
        .env("RUST_LOG", "off")
        .env(
            "CONCLAVE_JOIN_TOKEN_SECRET",
            "cli-test-join-token-secret-of-32-bytes-or-more",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("welcome.wav"), "{stderr}");
    assert!(stderr.contains("16000 Hz"), "{stderr}");
    assert!(
        stderr.contains("expected WAV, 8000 Hz, mono, 16-bit PCM"),
        "{stderr}"
    );
}

#[test]
fn sip_refuses_to_start_without_the_join_token_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args([
            "sip",
            "--sip-listen",
            "127.0.0.1:0",
            "--sip-http-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "off")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET_FILE")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CONCLAVE_JOIN_TOKEN_SECRET"), "{stderr}");
    assert!(stderr.contains("--sip-join-token-secret-file"), "{stderr}");

    let help = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["sip", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--sip-join-token-secret-file"), "{help}");
    let help = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["api", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--sip-address"), "{help}");
    assert!(help.contains("CONCLAVE_SIP_ADDRESS"), "{help}");
}
