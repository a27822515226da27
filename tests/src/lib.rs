//! Whole-system tests of Conclave: the `conclave` binary started as a user or a cluster starts
//! it, driven by real clients (HTTP, the signaling websocket, headless Chromium and Firefox).
//!
//! # Layout
//! - `standalone.rs`: `conclave standalone`, and an SFU pod reporting to a separate API.
//! - `portal.rs`: the web portal in real browsers (the scripts in `web/e2e/`).
//! - `cluster.rs`: a cluster in a box — the fake Kubernetes API server, the operator, the API,
//!   two SFU pods in their own network namespaces, kubectl (see docs/operator.md).
//! - `failover.rs`: meetings that survive the cluster in that box (kill -9 with attendees and
//!   Chromium pages, a flapping readiness probe, two fenced operators); `cluster_box.rs` is the
//!   box both share, and `benches/failover.rs` times the failover.
//! - this library: where the binary and the repository are; [`oidc_provider`]: a real OpenID
//!   Connect provider (npm `oidc-provider`) for login tests.

use std::path::{Path, PathBuf};

pub mod oidc_provider;

/// The repository's root folder.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("BUG: tests/ sits inside the repository")
        .to_path_buf()
}

/// The `conclave` binary of the same build profile as the running test.
///
/// Cargo builds it with the workspace (`cargo nextest run --workspace`, `cargo test
/// --workspace`); on its own, `cargo build -p conclave` first.
///
/// # Panics
/// When the binary has not been built, naming the command that builds it.
pub fn conclave_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CONCLAVE_BIN") {
        return PathBuf::from(path);
    }
    // The test runs as <target>/<profile>/deps/<test>-<hash>; the binary is <target>/<profile>/conclave.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in <target>/<profile>/deps");
    let bin = profile.join("conclave");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p conclave` (or run the whole workspace's tests), or set CONCLAVE_BIN",
        bin.display()
    );
    bin
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Panics
/// When no port can be bound on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// `GET path` on 127.0.0.1:`port` with a plain HTTP/1.1 request: the status code and the body,
/// or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Whether `GET /readyz` answers 200.
pub fn ready(port: u16) -> bool {
    http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
}

/// A program of the test venv that `scripts/test.sh` makes (`CONCLAVE_TEST_PYTHON` names its
/// Python; the venv's other programs sit beside it).
pub fn venv_program(name: &str) -> PathBuf {
    let python = std::env::var_os("CONCLAVE_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/conclave/venv/bin/python"))
        })
        .expect("CONCLAVE_TEST_PYTHON or HOME is set");
    python.with_file_name(name)
}

/// The Chromium the portal's scripts (`web/e2e/`) drive, after checking that the portal is
/// built and playwright-core installed; a missing piece fails with what to run.
pub fn portal_chromium() -> PathBuf {
    let web = repository().join("web");
    assert!(
        web.join("dist/index.html").is_file(),
        "the portal is not built: run `npm ci && npm run build` in web/ (scripts/test.sh does)"
    );
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in web/ (scripts/test.sh does)"
    );
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "Chromium is missing at {}: `apt-get install chromium` (scripts/test.sh does)",
        chromium.display()
    );
    chromium
}

/// A real S3-compatible server for the tests: moto's server mode from the test venv
/// (`moto[server]`, installed by `scripts/test.sh`), on a free loopback port, with one bucket.
/// Killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: std::process::Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket made for the test.
    pub bucket: String,
}

impl S3Server {
    /// Starts the server and makes `bucket`.
    ///
    /// # Panics
    /// When moto is not installed (naming what installs it) or does not come up in 30 s.
    pub fn start(bucket: &str) -> Self {
        use std::io::{Read, Write};
        let program = venv_program("moto_server");
        assert!(
            program.is_file(),
            "{} is missing: `pip install 'moto[server]'` into the test venv (scripts/test.sh does)",
            program.display()
        );
        let port = free_port();
        let child = std::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", program.display()));
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_owned(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // moto takes unsigned requests: a plain PUT makes the bucket.
        loop {
            let made = std::net::TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut stream| {
                stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
                let request = format!(
                    "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).ok()?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer).ok()?;
                Some(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"))
            });
            match made {
                Some(true) => return server,
                Some(false) => panic!("moto refused to make the bucket {bucket}"),
                None if std::time::Instant::now() > deadline => {
                    panic!("moto_server did not answer on port {port} within 30 s")
                }
                None => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }

    /// The environment a `conclave` process needs to use the bucket (flags as variables).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CONCLAVE_S3_BUCKET", self.bucket.clone()),
            ("CONCLAVE_S3_ENDPOINT", self.endpoint.clone()),
            ("CONCLAVE_S3_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "conclave-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "conclave-test-secret".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
