//! Whole-system tests of Conclave: the `conclave` binary started as a user or a cluster starts
//! it, driven by real clients (HTTP, the signaling websocket, headless Chromium and Firefox).
//!
//! # Layout
//! - `standalone.rs`: `conclave standalone`, and an SFU pod reporting to a separate API.
//! - `portal.rs`: the web portal in real browsers (the scripts in `web/e2e/`).
//! - this library: where the binary and the repository are.

use std::path::{Path, PathBuf};

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
