//! A participant cannot announce track IDs of any length, nor offer more media sections than
//! the tracks one participant may publish.

mod support;

use proto::Role;
use proto::signal::{ClientMessage, ErrorCode, MAX_TRACK_ID_BYTES, ServerMessage, TrackSource};
use sfu::Config;
use support::{SECRET, WAIT, claims, ports, start_with};

async fn refusal(client: &mut loadgen::Client) -> ErrorCode {
    match client
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
        .expect("a refusal")
    {
        ServerMessage::Error { code, .. } => code,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_track_ids_and_offers_with_too_many_sections_are_refused() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(SECRET, ports());
    config.limits.max_tracks_per_participant = 2;
    let sfu = start_with(config).await;
    let mut ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    assert!(
        matches!(ada.first, ServerMessage::Joined { .. }),
        "{:?}",
        ada.first
    );
    ada.send(ClientMessage::Publish {
        track_id: "t".repeat(MAX_TRACK_ID_BYTES + 1),
        source: TrackSource::Camera,
        muted: false,
    });
    assert_eq!(refusal(&mut ada).await, ErrorCode::InvalidTrackId);
    for id in ["a", "b", "c"] {
        ada.send(ClientMessage::Publish {
            track_id: id.into(),
            source: TrackSource::Camera,
            muted: false,
        });
    }
    assert_eq!(refusal(&mut ada).await, ErrorCode::TooManyTracks);
    let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    for n in 0..3 {
        sdp.push_str(&format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{n}\r\n"
        ));
    }
    ada.send(ClientMessage::Offer { sdp });
    assert_eq!(refusal(&mut ada).await, ErrorCode::TooManyTracks);
}
