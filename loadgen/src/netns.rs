//! Runs a WebRTC test inside a network namespace that has only the loopback interface, so
//! that ICE never gathers (or sends to) another address of the machine.
//!
//! [`isolate`] re-executes the current test binary with the same arguments under
//! `unshare -n sh -c 'ip link set lo up && exec …'` (root is needed) and exits with its status;
//! inside, `CONCLAVE_NETNS=1` is set and [`isolate`] returns at once.

use std::process::Command;

const MARK: &str = "CONCLAVE_NETNS";

/// Call first in every WebRTC test. Returns `true` inside the namespace (run the test);
/// outside it re-runs the test binary there and returns `false` after asserting success.
///
/// # Panics
/// When the namespace cannot be made (not root, no `unshare`) or the inner run fails.
pub fn isolate() -> bool {
    if std::env::var_os(MARK).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--nocapture") {
        args.push("--nocapture".into());
    }
    let status = Command::new("unshare")
        .arg("-n")
        .arg("sh")
        .arg("-c")
        .arg("ip link set lo up && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(args)
        .env(MARK, "1")
        .status()
        .expect("unshare (util-linux) must be installed; WebRTC tests run in a network namespace");
    assert!(
        status.success(),
        "the test failed inside its network namespace: {status}"
    );
    false
}
