//! In an audio-only conference a camera is refused with `audioOnly` while the microphone is
//! forwarded; nobody receives video.

mod support;

use proto::signal::{ErrorCode, ServerMessage, TrackKind, TrackSource};
use proto::{Media, Role};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_only_room_refuses_video() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let audio_only = |sub: &str, role: Role, owner: bool| {
        let mut claims = claims(sub, role, owner);
        claims.room.media = Media::AudioOnly;
        claims
    };
    let mut ada = sfu.join(&audio_only("ada", Role::Moderator, true)).await;
    let mut bob = sfu.join(&audio_only("bob", Role::Listener, false)).await;
    assert!(
        matches!(
            ada.first,
            ServerMessage::Joined {
                audio_only: true,
                ..
            }
        ),
        "{:?}",
        ada.first
    );
    ada.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    ada.wait_for(WAIT, |m| {
        matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::AudioOnly,
                ..
            }
        )
    })
    .await
    .expect("the camera is refused");
    let ada_id = ada.id().expect("ada").to_string();
    bob.wait_for(
        WAIT,
        |m| matches!(m, ServerMessage::TrackPublished { track } if track.kind == TrackKind::Audio),
    )
    .await
    .expect("the microphone is published");
    let received = bob
        .wait_received(WAIT, |r| {
            r.values()
                .any(|t| t.publisher == ada_id && !t.video && t.packets > 50)
        })
        .await
        .expect("bob hears ada");
    assert!(
        received.values().all(|t| !t.video),
        "no video is forwarded: {received:?}"
    );
    // No video track was ever announced to bob.
    while let Some(message) = bob.next(std::time::Duration::from_millis(200)).await {
        assert!(
            !matches!(&message, ServerMessage::TrackPublished { track } if track.kind == TrackKind::Video),
            "{message:?}"
        );
    }
    let metrics = sfu.metrics();
    for line in [
        "conclave_sfu_tracks{kind=\"video\"} 0",
        "conclave_sfu_rtp_packets_total{direction=\"out\",kind=\"video\"} 0",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    ada.leave().await;
    bob.leave().await;
}
