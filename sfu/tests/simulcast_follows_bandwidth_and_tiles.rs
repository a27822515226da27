//! Simulcast: a publisher sends three VP8 layers (RTP stream IDs q, h, f); the subscriber gets
//! one of them, chosen from its bandwidth estimate (a REMB the test client crafts) and from how
//! it shows the track (`viewTracks`), and what it receives is one continuous stream — sequence
//! numbers without gaps, picture IDs and TL0PICIDX following on, no frame made of two layers —
//! across every switch. Layers nobody receives are paused at the publisher (dynacast).

mod support;

use std::time::{Duration, Instant};

use loadgen::{Client, MediaPlan, VideoPacket};
use proto::Role;
use proto::signal::{ClientMessage, ServerMessage, TrackSource, TrackView, VideoLayer};
use support::{WAIT, claims, ports, start};

/// Waits until the newest video packets of `track` come from `layer` (`None`: none come any
/// more), and returns how long that took.
async fn wait_for_layer(client: &Client, track: &str, layer: Option<u8>, what: &str) -> Duration {
    let from = Instant::now();
    let seen_before = client
        .received()
        .get(track)
        .map_or(0, |r| r.video_log.len());
    let result = client
        .wait_received(WAIT, |received| {
            let Some(log) = received.get(track).map(|r| &r.video_log) else {
                return false;
            };
            match layer {
                Some(layer) => {
                    log.len() > seen_before + 10
                        && log.iter().rev().take(10).all(|p| p.layer == Some(layer))
                }
                // Nothing for half a second.
                None => log
                    .back()
                    .is_none_or(|p| p.at.elapsed() > Duration::from_millis(500)),
            }
        })
        .await;
    if let Err(err) = result {
        let tail: Vec<_> = client
            .received()
            .get(track)
            .map(|r| r.video_log.iter().rev().take(5).map(|p| p.layer).collect())
            .unwrap_or_default();
        panic!("{what}: {err}; last layers received: {tail:?}");
    }
    from.elapsed()
}

/// Every packet follows on from the one before: the decoder sees one stream.
fn assert_continuous(log: &[VideoPacket]) {
    assert!(log.len() > 100, "too few packets: {}", log.len());
    let first = log.iter().position(|p| p.keyframe).expect("a keyframe");
    let log = &log[first..];
    for pair in log.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(
            b.sequence,
            a.sequence.wrapping_add(1),
            "a gap in sequence numbers between {a:?} and {b:?}"
        );
        if a.timestamp == b.timestamp {
            assert_eq!(a.layer, b.layer, "one frame from two layers: {a:?} {b:?}");
            assert_eq!(a.picture_id, b.picture_id, "one frame, two picture IDs");
        } else {
            assert!(
                (b.timestamp.wrapping_sub(a.timestamp) as i32) > 0,
                "time ran backwards between {a:?} and {b:?}"
            );
            let (Some(pa), Some(pb)) = (a.picture_id, b.picture_id) else {
                panic!("simulcast VP8 without picture IDs: {a:?} {b:?}");
            };
            assert_eq!(pb, (pa + 1) & 0x7fff, "picture IDs jump: {a:?} {b:?}");
            assert_eq!(
                b.tl0,
                a.tl0.map(|t| t.wrapping_add(1)),
                "TL0PICIDX jumps: {a:?} {b:?}"
            );
            if a.layer != b.layer {
                assert!(b.keyframe, "a switch not at a keyframe: {a:?} {b:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_follows_bandwidth_and_tiles() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    let plan = MediaPlan {
        video_bps: 1_200_000,
        simulcast: true,
        ..MediaPlan::default()
    };
    let published = ada
        .publish(&[TrackSource::Camera], plan)
        .await
        .expect("publish");
    let camera = published[0].clone();
    let ada_id = ada.id().expect("ada").to_string();
    let received = bob
        .wait_received(WAIT, |r| {
            r.values()
                .any(|t| t.publisher == ada_id && t.video && t.packets > 0)
        })
        .await
        .expect("bob receives ada's camera");
    let track = received
        .iter()
        .find(|(_, t)| t.publisher == ada_id)
        .map(|(id, _)| id.clone())
        .expect("the track");

    // No estimate and no tile size: the high layer.
    wait_for_layer(&bob, &track, Some(2), "the high layer without limits").await;

    // The link weakens: the estimate falls from 5 Mbit/s to 200 kbit/s, below the high layer.
    // The low layer follows.
    let remb = |bps: u64| {
        let bob = &bob;
        let track = track.clone();
        async move {
            bob.send_remb(&track, bps).await.expect("REMB");
        }
    };
    remb(5_000_000).await;
    remb(200_000).await;
    let down = wait_for_layer(&bob, &track, Some(0), "the low layer on a weak link").await;
    println!(
        "switched down {} ms after the estimate fell",
        down.as_millis()
    );

    // The estimate rises: the high layer comes back (after the SFU has seen it hold a second).
    let rising = Instant::now();
    let keep_saying = async {
        loop {
            remb(10_000_000).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        _ = wait_for_layer(&bob, &track, Some(2), "the high layer back") => {}
        () = keep_saying => unreachable!(),
    }
    println!(
        "switched up {} ms after the estimate rose",
        rising.elapsed().as_millis()
    );

    // A hidden tile gets no video; a small one gets the low layer.
    let view = |visible: bool, height: u32| ClientMessage::ViewTracks {
        views: vec![TrackView {
            track: proto::TrackId::from(track.as_str()),
            visible,
            width: height * 16 / 9,
            height,
        }],
    };
    bob.send(view(false, 360));
    wait_for_layer(&bob, &track, None, "no video for a hidden tile").await;
    bob.send(view(true, 160));
    wait_for_layer(&bob, &track, Some(0), "the low layer for a small tile").await;

    // Dynacast: nobody needs the medium and high layers now; the publisher is told to stop
    // them, and to send them again once someone needs them.
    let paused = ada
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::LayersWanted { track_id, layers }
                if *track_id == camera && *layers == vec![VideoLayer::Low])
        })
        .await;
    assert!(
        paused.is_ok(),
        "the unused layers were not paused: {paused:?}"
    );
    bob.send(view(true, 720));
    let resumed = ada
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::LayersWanted { track_id, layers }
                if *track_id == camera && layers.contains(&VideoLayer::High))
        })
        .await;
    assert!(
        resumed.is_ok(),
        "the high layer was not resumed: {resumed:?}"
    );
    wait_for_layer(&bob, &track, Some(2), "the high layer for a large tile").await;

    // Through every switch, pause and resume, one continuous stream.
    let log: Vec<VideoPacket> = bob.received()[&track].video_log.iter().copied().collect();
    let layers_seen: std::collections::BTreeSet<_> = log.iter().filter_map(|p| p.layer).collect();
    assert_eq!(
        layers_seen.len(),
        2,
        "the low and high layers were received"
    );
    assert_continuous(&log);
    ada.leave().await;
    bob.leave().await;
}
