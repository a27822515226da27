//! The web portal in a real browser: each scenario starts `conclave standalone` serving the
//! built portal (`web/dist`) and runs one Node script of `web/e2e/` that drives Debian's
//! Chromium through playwright-core. Everything runs in a network namespace with only `lo`.
//! Screenshots land in `web/e2e/artifacts/<scenario>/`, with the server's log.
//!
//! Needs `npm ci && npm run build` in `web/` and the `chromium` package; `scripts/test.sh`
//! does both. A missing piece fails the test with what to run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const PASSWORD: &str = "portal-admin-secret-1";

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn web_dir() -> PathBuf {
    system_tests::repository().join("web")
}

fn start(data: &Path, artifacts: &Path, port: u16, udp: &str, env: &[(&str, String)]) -> Server {
    let log = std::fs::File::create(artifacts.join("server.log")).unwrap();
    let child = Command::new(system_tests::conclave_bin())
        .arg("standalone")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("CONCLAVE_DATA_DIR", data)
        .env("CONCLAVE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
        .env("CONCLAVE_SFU_UDP_PORTS", udp)
        .env("CONCLAVE_PORTAL_DIR", web_dir().join("dist"))
        // The info page shows dial-in (scheduling.mjs checks it).
        .env("CONCLAVE_DIAL_IN_NUMBER", "+49 30 1234567")
        .env("CONCLAVE_SIP_ADDRESS", "conference@conclave.example.org")
        .env(
            "RUST_LOG",
            // CONCLAVE_E2E_LOG overrides the server's filter, e.g. `info,sfu=debug` to debug one.
            std::env::var("CONCLAVE_E2E_LOG")
                .unwrap_or_else(|_| "info,webrtc=warn,rtc=warn,sqlx=warn".to_owned()),
        )
        .env_remove("DATABASE_URL")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET")
        .env_remove("CONCLAVE_SMTP_URL")
        // Log lines go to standard output; panics and clap's errors to standard error.
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the conclave binary starts");
    let server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !system_tests::ready(port) {
        assert!(
            Instant::now() < deadline,
            "conclave did not become ready on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Runs `web/e2e/<script>.mjs` against a fresh standalone Conclave, inside a network namespace.
fn scenario(script: &str, udp: &str) {
    if !loadgen::netns::isolate() {
        return;
    }
    run_scenario(script, udp);
}

/// Like [`scenario`] for scripts that drive Firefox too: its namespace has a default route,
/// without which Firefox gathers no ICE candidate (see `loadgen::netns`).
fn firefox_scenario(script: &str, udp: &str) {
    firefox_scenario_with(script, udp, &[]);
}

/// [`firefox_scenario`] with more environment for the server (and the script).
fn firefox_scenario_with(script: &str, udp: &str, env: &[(&str, String)]) {
    if !loadgen::netns::isolate_with_default_route() {
        return;
    }
    let firefox = std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".to_owned());
    assert!(
        Path::new(&firefox).is_file(),
        "Firefox is missing at {firefox}: `apt-get install firefox-esr` (scripts/test.sh does)"
    );
    assert!(
        system_tests::repository()
            .join("web/node_modules/puppeteer-core")
            .is_dir(),
        "puppeteer-core is missing: run `npm ci` in web/ (scripts/test.sh does)"
    );
    run_scenario_with(script, udp, env);
}

fn run_scenario(script: &str, udp: &str) {
    run_scenario_with(script, udp, &[]);
}

/// [`run_scenario`] with more environment for the server.
fn run_scenario_with(script: &str, udp: &str, env: &[(&str, String)]) {
    run_scenario_on(script, udp, env, system_tests::free_port());
}

/// [`run_scenario_with`] on a port chosen before (a provider must know the address).
fn run_scenario_on(script: &str, udp: &str, env: &[(&str, String)], port: u16) {
    let web = web_dir();
    let chromium = system_tests::portal_chromium();
    let artifacts = web.join("e2e/artifacts").join(script);
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &artifacts, port, udp, env);

    let status = Command::new("node")
        .arg(web.join("e2e").join(format!("{script}.mjs")))
        .current_dir(&web)
        // What the server was told, the script may check.
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("CONCLAVE_URL", format!("http://127.0.0.1:{port}"))
        .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
        .env("CONCLAVE_ARTIFACTS", &artifacts)
        .env("CONCLAVE_DATA_DIR", data.path())
        .env("CHROMIUM", &chromium)
        .env(
            "FIREFOX",
            std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".to_owned()),
        )
        // For "the network goes silent" steps: the script stops and continues the server.
        .env("CONCLAVE_SERVER_PID", server.child.id().to_string())
        .status()
        .expect("node (Node.js) must be installed");
    assert!(
        status.success(),
        "scenario {script} failed ({status}); screenshots and the server log are in {}",
        artifacts.display()
    );
}

#[test]
fn a_meeting_in_the_browser_from_login_to_exclusion() {
    scenario("meeting", "47000-47099");
}

#[test]
fn guests_join_by_link_or_meeting_id_and_are_told_what_is_wrong() {
    scenario("join", "47100-47199");
}

#[test]
fn conferences_are_scheduled_edited_repeated_and_deleted_in_the_portal() {
    scenario("scheduling", "47200-47299");
}

#[test]
fn accounts_log_in_edit_their_profile_and_are_administered() {
    scenario("accounts", "47300-47399");
}

#[test]
fn a_meeting_in_firefox_from_the_join_page_to_the_end() {
    firefox_scenario("firefox-meeting", "47400-47499");
}

#[test]
fn chromium_and_firefox_participants_see_and_hear_each_other() {
    firefox_scenario("mixed-meeting", "47500-47599");
}

/// Single-port mode in real browsers: Chromium and Firefox meet through the SFU's one UDP port
/// (`--sfu-udp-port`), each connection of each browser on that port, with no range bound.
#[test]
fn chromium_and_firefox_meet_through_one_udp_port() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    firefox_scenario_with(
        "mixed-meeting",
        "48200-48299",
        &[("CONCLAVE_SFU_UDP_PORT", port.to_string())],
    );
}

/// ICE over TCP in real browsers: with a firewall rule dropping UDP to the SFU's media ports,
/// Chromium and Firefox meet through its one ICE-TCP port (`--sfu-ice-tcp-port`), both
/// connections of each over TCP, and each has the SFU's sender reports (on a pod with ICE-TCP
/// a connection that ends up on TCP gets them from webrtc-rs, not from the direct media path).
#[test]
fn chromium_and_firefox_meet_over_ice_tcp_when_udp_is_blocked() {
    if !loadgen::netns::isolate_with_default_route() {
        return;
    }
    let udp = "48300-48399";
    loadgen::netns::nft(&[
        &["add", "table", "inet", "no_udp"],
        &[
            "add",
            "chain",
            "inet",
            "no_udp",
            "out",
            "{ type filter hook output priority 0; }",
        ],
        &[
            "add", "rule", "inet", "no_udp", "out", "udp", "dport", udp, "drop",
        ],
    ]);
    firefox_scenario_with(
        "mixed-meeting",
        udp,
        &[
            (
                "CONCLAVE_SFU_ICE_TCP_PORT",
                system_tests::free_port().to_string(),
            ),
            ("CONCLAVE_E2E_UDP_BLOCKED", "1".to_owned()),
        ],
    );
}

/// Join → first frame (a benchmark, not a timed test): the time from "Join now" to the first
/// decoded frame of a remote camera, median of several joins, written to
/// `join-first-frame.json` (artifacts, and `$CARGO_TARGET_DIR/bench-results/`).
#[test]
fn join_to_first_frame_is_measured() {
    scenario("join-latency", "48100-48199");
}

/// Simulcast in Chromium: the camera goes out in three layers; a small tile receives the low
/// layer (smaller decoded frames in getStats), a hidden one no video, a large one the high layer;
/// layers nobody receives are paused at the publisher and resumed when needed.
#[test]
fn a_small_tile_gets_the_low_simulcast_layer_and_unused_layers_pause() {
    scenario("simulcast", "48000-48099");
}

/// A room larger than the window: the grid shows the last speakers and counts the others, and
/// the SFU sends no video of the tiles not shown; someone who starts to speak takes a place.
#[test]
fn a_window_too_small_for_everyone_shows_the_last_speakers() {
    scenario("large-room", "48400-48499");
}

#[test]
fn a_publisher_that_offers_only_h264_is_decoded_by_chromium_and_explained_in_firefox() {
    firefox_scenario("h264", "47600-47699");
}

/// Recording end to end, with the files in a real S3 server (moto): a moderatorPlus records a
/// meeting of two publishers in Chromium, stops, ends it, and plays the recording in the archive
/// (seeking past 5 s); the composed MP4 in the bucket has audio and video of about 10 s.
#[test]
fn a_moderator_plus_records_a_meeting_into_s3_and_the_archive_plays_it() {
    if !loadgen::netns::isolate() {
        return;
    }
    let s3 = system_tests::S3Server::start("conclave-recordings");
    run_scenario_with("recording", "47800-47899", &s3.env());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let args = files::FilesArgs {
            files_dir: None,
            s3_bucket: Some(s3.bucket.clone()),
            s3_endpoint: Some(s3.endpoint.clone()),
            s3_region: "us-east-1".into(),
            s3_allow_http: true,
            s3_virtual_hosted: false,
        };
        let bucket =
            files::Files::s3_with_credentials(&args, "conclave-test", "conclave-test-secret")
                .unwrap();
        let listed = bucket.list("recordings").await.unwrap();
        let composed: Vec<_> = listed
            .iter()
            .filter(|e| e.key.ends_with("/recording.mp4"))
            .collect();
        assert_eq!(
            composed.len(),
            1,
            "one composed recording in the bucket: {listed:?}"
        );
        assert!(
            !listed.iter().any(|e| e.key.contains("/tracks/")),
            "the segments went into the composed file: {listed:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recording.mp4");
        bucket.download(&composed[0].key, &file).await.unwrap();
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration:stream=codec_type",
                "-of",
                "json",
            ])
            .arg(&file)
            .output()
            .expect("ffprobe (Debian ffmpeg) is installed; scripts/test.sh installs it");
        assert!(
            probe.status.success(),
            "{}",
            String::from_utf8_lossy(&probe.stderr)
        );
        let probed: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
        let kinds: Vec<&str> = probed["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["codec_type"].as_str())
            .collect();
        assert!(
            kinds.contains(&"audio") && kinds.contains(&"video"),
            "{probed}"
        );
        let seconds: f64 = probed["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (8.0..=14.0).contains(&seconds),
            "about 10 s recorded, the file has {seconds}"
        );
    });
}

#[test]
fn a_speaker_presents_a_pdf_and_the_others_follow_its_pages() {
    scenario("presentation", "47700-47799");
}

/// Login with the company account: the real OpenID Connect provider (npm oidc-provider) in the
/// same namespace; Chromium clicks "Log in with …", logs in on the provider's page and lands in
/// the portal as the level the provider's groups give.
#[test]
fn a_person_logs_in_with_the_company_account_and_lands_as_their_level() {
    use system_tests::oidc_provider::{CLIENT_ID, CLIENT_SECRET, OidcProvider, TestUser};
    if !loadgen::netns::isolate() {
        return;
    }
    let port = system_tests::free_port();
    let provider = OidcProvider::start(
        &format!("http://127.0.0.1:{port}"),
        &[TestUser {
            login: "alice",
            password: "alice-password",
            name: "Alice Example",
            groups: &["video-moderators"],
        }],
    );
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("client-secret");
    std::fs::write(&secret_file, CLIENT_SECRET).unwrap();
    run_scenario_on(
        "oidc",
        "47900-47999",
        &[
            ("CONCLAVE_OIDC_ISSUER", provider.issuer.clone()),
            ("CONCLAVE_OIDC_CLIENT_ID", CLIENT_ID.to_owned()),
            (
                "CONCLAVE_OIDC_CLIENT_SECRET_FILE",
                secret_file.display().to_string(),
            ),
            ("CONCLAVE_OIDC_NAME", "Test provider".to_owned()),
            (
                "CONCLAVE_OIDC_SCOPES",
                "openid profile email groups".to_owned(),
            ),
            (
                "CONCLAVE_OIDC_MODERATOR_GROUPS",
                "video-moderators".to_owned(),
            ),
        ],
        port,
    );
}
