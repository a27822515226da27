//! A participant whose media cannot flow is not dropped silently: the SFU tells them why with
//! `connectionFailed`, closes the session with that reason (their page reconnects), logs the
//! cause and counts it by cause. Here a Firefox offer (the captured fixture) names a candidate
//! that never answers, as when a firewall drops UDP: ICE fails.

mod support;

use futures::{SinkExt, StreamExt};
use proto::Role;
use proto::signal::{
    ClientMessage, CloseReason, ErrorCode, IceCandidate, PeerTarget, ServerMessage, TrackSource,
};
use sfu::Config;
use support::{SECRET, WAIT, claims, start_with};
use tokio_tungstenite::tungstenite::Message;

const FIREFOX_OFFER: &str = include_str!("fixtures/firefox-153-publish-offer.sdp");

/// The msid track IDs of the fixture's audio and video sections.
fn msid_tracks(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=msid:"))
        .filter_map(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_ice_fails_is_reported_with_its_cause() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(
        SECRET,
        proto::UdpPorts {
            first: 43200,
            last: 43299,
        },
    );
    config.ice_failed_seconds = 2;
    let sfu = start_with(config).await;
    let metric = |cause: &str, n: u32| {
        format!("conclave_sfu_peer_connection_failures_total{{cause=\"{cause}\"}} {n}")
    };
    assert!(sfu.metrics().contains(&metric("ice", 0)));

    // A UDP socket that reads nothing: the browser's only candidate.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();

    let claims = claims("firefox", Role::Speaker, false);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/rtc", sfu.addr))
        .await
        .expect("websocket");
    let send = |message: ClientMessage| {
        Message::Text(serde_json::to_string(&message).expect("json").into())
    };
    ws.send(send(ClientMessage::Join {
        token: sfu.token(&claims),
        conference: claims.conf.clone(),
        receive_codecs: None,
    }))
    .await
    .expect("join");
    let tracks = msid_tracks(FIREFOX_OFFER);
    assert_eq!(tracks.len(), 2);
    for (track, source) in tracks
        .iter()
        .zip([TrackSource::Microphone, TrackSource::Camera])
    {
        ws.send(send(ClientMessage::Publish {
            track_id: track.clone(),
            source,
            muted: false,
        }))
        .await
        .expect("publish");
    }
    ws.send(send(ClientMessage::Offer {
        sdp: FIREFOX_OFFER.into(),
    }))
    .await
    .expect("offer");
    ws.send(send(ClientMessage::Candidate {
        target: PeerTarget::Publisher,
        candidate: IceCandidate {
            candidate: format!("candidate:0 1 UDP 2122252543 127.0.0.1 {silent_port} typ host"),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        },
    }))
    .await
    .expect("candidate");

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    let closed = loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no close within the deadline; saw {seen:#?}"))
            .expect("the websocket stays open until the SFU closes the session")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let message: ServerMessage = serde_json::from_str(text.as_str()).expect("json");
        if let ServerMessage::Closed { reason } = message {
            break reason;
        }
        seen.push(message);
    };
    assert_eq!(closed, CloseReason::ConnectionFailed, "{seen:#?}");
    assert!(
        seen.iter()
            .any(|m| matches!(m, ServerMessage::Answer { .. })),
        "the offer was answered first: {seen:#?}"
    );
    let reason = seen.iter().find_map(|m| match m {
        ServerMessage::Error {
            code: ErrorCode::ConnectionFailed,
            message,
        } => Some(message.clone()),
        _ => None,
    });
    let reason = reason.unwrap_or_else(|| panic!("no connectionFailed error: {seen:#?}"));
    assert!(
        reason.contains("no network path") && reason.contains("43200-43299"),
        "{reason}"
    );
    let metrics = sfu.metrics();
    assert!(metrics.contains(&metric("ice", 1)), "{metrics}");
    assert!(metrics.contains(&metric("dtls", 0)), "{metrics}");
    drop(silent);
}
