//! A moderator of level moderatorPlus records about ten seconds of a meeting where two people
//! publish Opus and VP8, then stops: the file store holds segments of every track whose
//! durations (as ffprobe reads them) add up to about ten seconds, each with its JSON, plus
//! `recording.json`, the events and `stopped.json`; the conference service hears the start and
//! the stop (after the files are stored).

mod support;

use std::time::{Duration, Instant};

use proto::signal::{ClientMessage, ServerMessage, TrackSource};
use proto::{AccountLevel, Role, RoomEvent};
use support::recorded::{duration, only_recording, read_json, tracks};
use support::{WAIT, claims, ports, start};

const RECORDED: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_plus_records_two_publishers() {
    if !loadgen::netns::isolate() {
        return;
    }
    let store = tempfile::tempdir().expect("a folder");
    let sfu = start(ports()).await;
    sfu.state
        .set_files(sfu::recording::Files::local(store.path()).expect("files"))
        .expect("set once");
    let mut host = claims("ada", Role::Moderator, true);
    host.level = Some(AccountLevel::ModeratorPlus);
    let ada = sfu.join(&host).await;
    let mut bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    let both = [TrackSource::Microphone, TrackSource::Camera];
    for client in [&ada, &bob] {
        client
            .publish(&both, loadgen::MediaPlan::default())
            .await
            .expect("publish");
    }
    let ada_id = ada.id().expect("ada").to_string();
    bob.wait_received(WAIT, |received| {
        received
            .values()
            .filter(|r| r.publisher == ada_id && r.packets > 20)
            .count()
            == 2
    })
    .await
    .expect("media flows");

    let requested = Instant::now();
    ada.send(ClientMessage::SetRecording { active: true });
    bob.wait_for(
        WAIT,
        |m| matches!(m, ServerMessage::Recording { active: true, by } if by.as_str() == ada_id),
    )
    .await
    .expect("everyone sees the recording start");
    let started = sfu
        .reports
        .wait_for(WAIT, |e| matches!(e, RoomEvent::RecordingStarted { .. }))
        .await
        .expect("the conference service hears the start");
    let RoomEvent::RecordingStarted {
        recording,
        identity,
        ..
    } = started
    else {
        unreachable!()
    };
    assert_eq!(identity, "ada");
    ada.send(ClientMessage::Chat {
        text: "minutes follow".into(),
        to: None,
    });
    // The recording's length is what is measured, not a wait for something to happen.
    tokio::time::sleep(RECORDED).await;
    ada.send(ClientMessage::SetRecording { active: false });
    bob.wait_for(WAIT, |m| {
        matches!(m, ServerMessage::Recording { active: false, .. })
    })
    .await
    .expect("everyone sees the recording stop");
    // Nothing can be recorded outside the time from asking for the start to seeing the stop
    // (longer than RECORDED on a loaded machine, where messages take a while).
    let span = requested.elapsed().as_secs_f64();
    sfu.reports
        .wait_for(
            WAIT,
            |e| matches!(e, RoomEvent::RecordingStopped { recording: r } if *r == recording),
        )
        .await
        .expect("the stop is reported once the files are stored");

    let root = only_recording(store.path());
    assert_eq!(
        root.file_name().and_then(|n| n.to_str()),
        Some(recording.as_str())
    );
    let info = read_json(&root.join("recording.json"));
    assert_eq!(info["id"], recording.as_str());
    assert_eq!(info["conferenceId"], "c1");
    assert_eq!(info["startedBy"]["identity"], "ada");
    let stopped = read_json(&root.join("stopped.json"));
    assert_eq!(stopped["reason"], "stopped");
    assert_eq!(stopped["stoppedBy"]["identity"], "ada");

    let tracks = tracks(&root);
    let kinds: Vec<&str> = tracks
        .keys()
        .map(|k| k.split_once('-').map_or("", |(_, kind)| kind))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "audio").count(),
        2,
        "{tracks:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "video").count(), 2);
    for (track, segments) in &tracks {
        assert!(segments.len() >= 2, "{track}: {segments:?}");
        let mut total = 0.0;
        for (index, segment) in segments.iter().enumerate() {
            let json = segment.json.as_ref().expect("every segment has its JSON");
            assert_eq!(json["track"], track.as_str());
            let seconds = duration(&segment.file);
            // Segments last about five seconds; the last one ends with the recording, which
            // may stop just after a segment began.
            let shortest = if index + 1 == segments.len() {
                0.0
            } else {
                0.5
            };
            assert!(
                seconds > shortest && seconds <= 6.5,
                "{}: {seconds} s",
                segment.file.display()
            );
            total += seconds;
        }
        assert!(
            (8.5..=span + 0.5).contains(&total),
            "{track}: the segments last {total} s together, from start to stop took {span} s"
        );
        let first = segments[0].json.as_ref().expect("json");
        assert!(first["packets"].as_u64().unwrap_or(0) > 100, "{first}");
        let person = first["participant"]["identity"]
            .as_str()
            .unwrap_or_default();
        assert!(["ada", "bob"].contains(&person), "{first}");
        let codec = first["codec"].as_str().unwrap_or_default();
        assert_eq!(
            codec,
            if track.ends_with("audio") {
                "opus"
            } else {
                "vp8"
            }
        );
    }
    let events: Vec<serde_json::Value> = std::fs::read_dir(root.join("events"))
        .expect("events")
        .flat_map(|e| {
            read_json(&e.expect("entry").path())
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "chat" && e["text"] == "minutes follow"),
        "{events:?}"
    );
    let metrics = sfu.metrics();
    assert!(
        metrics.contains("conclave_sfu_recordings_active 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("conclave_sfu_recording_segments_total{kind=\"video\"} 0"),
        "{metrics}"
    );
    ada.leave().await;
    bob.leave().await;
}
