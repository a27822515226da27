//! In a large room (more admitted participants than `--sfu-large-room-size`) everyone hears
//! only the `--sfu-audible-speakers` microphones that carried speech last (RFC 6464 levels in
//! the publishers' packets); a microphone that falls silent and speaks again resumes with
//! continuous sequence numbers. In a small room every microphone is heard.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use loadgen::{Client, MediaPlan, Received, Speech};
use proto::Role;
use proto::signal::TrackSource;
use sfu::Config;
use support::{SECRET, WAIT, claims, ports, start_with};

/// Audio packets `listener` received from `publisher` so far.
fn heard(received: &HashMap<String, Received>, publisher: &str) -> u64 {
    received
        .values()
        .filter(|r| r.publisher == publisher && !r.video)
        .map(|r| r.packets)
        .sum()
}

/// Waits until `listener` hears `speaking` and not `silent` for half a second.
async fn hears_only(listener: &Client, speaking: &str, silent: &str, what: &str) {
    // First the speaker's packets arrive; then, over a window, the other's stop.
    let before = heard(&listener.received(), speaking);
    listener
        .wait_received(WAIT, |r| heard(r, speaking) > before + 10)
        .await
        .unwrap_or_else(|err| panic!("{what}: the speaker is not heard: {err}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let quiet_before = heard(&listener.received(), silent);
        let spoken_before = heard(&listener.received(), speaking);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let received = listener.received();
        if heard(&received, silent) == quiet_before
            && heard(&received, speaking) > spoken_before + 10
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the silent microphone is still forwarded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_room_forwards_only_the_last_speakers() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(SECRET, ports());
    config.limits.large_room_size = 2;
    config.limits.audible_speakers = 1;
    let sfu = start_with(config).await;
    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Speaker, false)).await;
    let ada_id = ada.id().expect("ada").to_string();
    let bob_id = bob.id().expect("bob").to_string();
    for speaker in [&ada, &bob] {
        speaker.set_speech(Speech::Silent);
        speaker
            .publish(&[TrackSource::Microphone], MediaPlan::default())
            .await
            .expect("publish");
    }
    // Two people: a small room, everyone is heard even in silence.
    ada.wait_received(WAIT, |r| heard(r, &bob_id) > 20)
        .await
        .expect("in a small room ada hears bob");

    // A third makes it large: only the one who spoke last is heard.
    let carl = sfu.join(&claims("carl", Role::Listener, false)).await;
    ada.set_speech(Speech::Speaking);
    hears_only(&carl, &ada_id, &bob_id, "ada speaks").await;
    ada.set_speech(Speech::Silent);
    bob.set_speech(Speech::Speaking);
    hears_only(&carl, &bob_id, &ada_id, "bob takes over").await;
    bob.set_speech(Speech::Silent);
    ada.set_speech(Speech::Speaking);
    hears_only(&carl, &ada_id, &bob_id, "ada again").await;

    // What carl heard of ada, across her pause, is one stream without gaps.
    let received = carl.received();
    let ada_audio = received
        .values()
        .find(|r| r.publisher == ada_id && !r.video)
        .expect("ada's microphone");
    assert_eq!(
        ada_audio.lost(),
        0,
        "sequence numbers continue across the pause"
    );
    for client in [ada, bob, carl] {
        client.leave().await;
    }
}
