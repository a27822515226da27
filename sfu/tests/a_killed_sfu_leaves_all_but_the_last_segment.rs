//! An SFU process killed (SIGKILL) in the middle of a recording leaves everything but the
//! segment each track was writing: the segments closed before are in the file store with their
//! JSON, and `stopped.json` is missing, which is how the conference service tells a lost
//! recording.
//!
//! The SFU runs in a child process: this test binary run again for the ignored test
//! `sfu_process_for_the_crash_test`, which serves until it is killed.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use loadgen::Client;
use proto::signal::{ClientMessage, ServerMessage, TrackSource};
use proto::{AccountLevel, Role, TokenKey};
use support::recorded::{duration, only_recording, tracks};
use support::{SECRET, WAIT, claims, ports, start};

const STORE: &str = "CONCLAVE_CRASH_TEST_STORE";

/// The child: an SFU storing recordings in `$CONCLAVE_CRASH_TEST_STORE`, serving until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the SFU process of a_killed_sfu_leaves_all_but_the_last_segment"]
async fn sfu_process_for_the_crash_test() {
    let Some(store) = std::env::var_os(STORE) else {
        panic!("run by a_killed_sfu_leaves_all_but_the_last_segment only");
    };
    let sfu = start(ports()).await;
    sfu.state
        .set_files(sfu::recording::Files::local(std::path::Path::new(&store)).expect("files"))
        .expect("set once");
    println!("SFU_LISTENING={}", sfu.addr);
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sfu_leaves_all_but_the_last_segment() {
    if !loadgen::netns::isolate() {
        return;
    }
    let store = tempfile::tempdir().expect("a folder");
    // Inside the namespace already: the child inherits it.
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "sfu_process_for_the_crash_test",
            "--ignored",
            "--nocapture",
        ])
        .env(STORE, store.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the SFU process");
    let stdout = child.stdout.take().expect("its output");
    // Its address comes on its output, which is read to the end (a closed pipe would kill it).
    let (found, listening) = tokio::sync::oneshot::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("SFU_LISTENING=")
                && let Some(found) = found.take()
            {
                let _ = found.send(addr.parse().expect("an address"));
            }
        }
    });
    let addr = tokio::time::timeout(WAIT, listening)
        .await
        .expect("the SFU says where it listens in time")
        .expect("the SFU says where it listens");

    let key = TokenKey::new(SECRET.as_bytes()).expect("key");
    let mut host = claims("ada", Role::Moderator, true);
    host.level = Some(AccountLevel::ModeratorPlus);
    let join = |claims: proto::JoinClaims| {
        let key = key.clone();
        async move {
            Client::join(addr, &key.sign_join(&claims).expect("sign"), &claims.conf)
                .await
                .expect("join")
        }
    };
    let mut ada = join(host).await;
    ada.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    ada.send(ClientMessage::SetRecording { active: true });
    ada.wait_for(WAIT, |m| {
        matches!(m, ServerMessage::Recording { active: true, .. })
    })
    .await
    .expect("recording");
    // Two segments of five seconds close; the third is being written when the process dies.
    tokio::time::sleep(Duration::from_secs(12)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    ada.close().await;

    let root = only_recording(store.path());
    assert!(root.join("recording.json").exists());
    assert!(
        !root.join("stopped.json").exists(),
        "a killed SFU stores no stop"
    );
    let tracks = tracks(&root);
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    for (track, segments) in &tracks {
        assert!(
            (2..=3).contains(&segments.len()),
            "{track}: the closed segments are stored: {segments:?}"
        );
        for segment in &segments[..2] {
            assert!(segment.json.is_some(), "{segment:?}");
            let seconds = duration(&segment.file);
            assert!(
                (4.0..=6.5).contains(&seconds),
                "{}: {seconds} s",
                segment.file.display()
            );
        }
    }
}
