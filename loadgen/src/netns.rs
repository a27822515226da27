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
    isolate_with("ip link set lo up")
}

/// Like [`isolate`], and the namespace also gets a default route: a veth pair whose one end has
/// the address [`ROUTED_ADDRESS`] and routes to a gateway that is never there.
///
/// Firefox gathers ICE candidates only on the interface of its default route when the page holds
/// no persistent camera permission (its privacy default): with `lo` alone it gathers nothing and
/// every connection fails at once. No packet leaves the namespace: the veth's other end is in it
/// too, and ICE reaches the SFU on loopback from [`ROUTED_ADDRESS`].
///
/// # Panics
/// As [`isolate`].
pub fn isolate_with_default_route() -> bool {
    isolate_with(&format!(
        "ip link set lo up && ip link add cv0 type veth peer name cv1 && ip addr add {ROUTED_ADDRESS}/24 dev cv0 \
         && ip link set cv0 up && ip link set cv1 up && ip route add default via {ROUTED_GATEWAY} dev cv0"
    ))
}

/// The address a namespace of [`isolate_with_default_route`] has besides loopback.
pub const ROUTED_ADDRESS: &str = "10.77.0.1";
const ROUTED_GATEWAY: &str = "10.77.0.2";

fn isolate_with(setup: &str) -> bool {
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
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
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

/// Runs `nft` with each of `commands` in turn (firewall rules for the test's own network
/// namespace, e.g. to drop some of its traffic).
///
/// # Panics
/// When `nft` (Debian package nftables) is missing or refuses a command.
pub fn nft(commands: &[&[&str]]) {
    for command in commands {
        let status = Command::new("nft")
            .args(*command)
            .status()
            .expect("nft (Debian package nftables) must be installed for this test");
        assert!(status.success(), "nft {command:?}: {status}");
    }
}
