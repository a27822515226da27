//! A participant whose media cannot flow is not dropped silently: the SFU tells them why with
//! `connectionFailed`, closes the session with that reason (their page reconnects), logs the
//! cause and counts it by cause. Here a Firefox offer (the captured fixture) names a candidate
//! that never answers, as when a firewall drops UDP: ICE fails; or its candidates never come:
//! the connection never starts checking, and fails at the same deadline.

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

/// Joins as a speaker, publishes the Firefox fixture's offer with `candidate` (or none, ever),
/// and reads until the SFU closes the session: the close reason and every message before it.
async fn publish_and_wait_for_the_end(
    sfu: &support::Sfu,
    candidate: Option<IceCandidate>,
) -> (CloseReason, Vec<ServerMessage>) {
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
    if let Some(candidate) = candidate {
        ws.send(send(ClientMessage::Candidate {
            target: PeerTarget::Publisher,
            candidate,
        }))
        .await
        .expect("candidate");
    }

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
    (closed, seen)
}

/// The `connectionFailed` error's message among `seen`.
fn failure_message(seen: &[ServerMessage]) -> String {
    let reason = seen.iter().find_map(|m| match m {
        ServerMessage::Error {
            code: ErrorCode::ConnectionFailed,
            message,
        } => Some(message.clone()),
        _ => None,
    });
    reason.unwrap_or_else(|| panic!("no connectionFailed error: {seen:#?}"))
}

fn metric(cause: &str, n: u32) -> String {
    format!("conclave_sfu_peer_connection_failures_total{{cause=\"{cause}\"}} {n}")
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
    assert!(sfu.metrics().contains(&metric("ice", 0)));

    // A UDP socket that reads nothing: the browser's only candidate.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let (closed, seen) = publish_and_wait_for_the_end(
        &sfu,
        Some(IceCandidate {
            candidate: format!("candidate:0 1 UDP 2122252543 127.0.0.1 {silent_port} typ host"),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        }),
    )
    .await;
    assert_eq!(closed, CloseReason::ConnectionFailed, "{seen:#?}");
    assert!(
        seen.iter()
            .any(|m| matches!(m, ServerMessage::Answer { .. })),
        "the offer was answered first: {seen:#?}"
    );
    let reason = failure_message(&seen);
    assert!(
        reason.contains("no network path") && reason.contains("43200-43299"),
        "{reason}"
    );
    let metrics = sfu.metrics();
    assert!(metrics.contains(&metric("ice", 1)), "{metrics}");
    assert!(metrics.contains(&metric("dtls", 0)), "{metrics}");
    drop(silent);
}

/// A connection that never gets a candidate pair to check (the client's candidates never
/// arrive) is not left waiting forever either: it fails once `--sfu-ice-failed-seconds` have
/// passed since it began, and the page is told to reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_connects_fails_after_the_ice_deadline() {
    if !loadgen::netns::isolate() {
        return;
    }
    let mut config = Config::for_loopback(
        SECRET,
        proto::UdpPorts {
            first: 43300,
            last: 43399,
        },
    );
    config.ice_failed_seconds = 3;
    let sfu = start_with(config).await;
    let began = std::time::Instant::now();
    let (closed, seen) = publish_and_wait_for_the_end(&sfu, None).await;
    let took = began.elapsed();
    assert_eq!(closed, CloseReason::ConnectionFailed, "{seen:#?}");
    assert!(
        took >= std::time::Duration::from_secs(3),
        "failed before the deadline: {took:?}"
    );
    let reason = failure_message(&seen);
    assert!(
        reason.contains("no network path") && reason.contains("43300-43399"),
        "{reason}"
    );
    assert!(sfu.metrics().contains(&metric("ice", 1)));
}

/// ICE connects but the DTLS handshake never completes (here a firewall rule drops every DTLS
/// record on its way to the SFU; RFC 7983: first byte 20–63): the media stack gives the
/// handshake up without a state change, so without the deadline the participant would sit in
/// the meeting without media and never reconnect. It fails at `--sfu-ice-failed-seconds`,
/// with the DTLS cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_dtls_handshake_never_completes_fails_at_the_deadline() {
    if !loadgen::netns::isolate() {
        return;
    }
    let ports = proto::UdpPorts {
        first: 43400,
        last: 43499,
    };
    let mut config = Config::for_loopback(SECRET, ports);
    // Long enough that ICE, kept alive every 2 s by the client's STUN alone, never counts as
    // disconnected (after a fifth of it): ICE stays connected and only DTLS fails.
    config.ice_failed_seconds = 15;
    let sfu = start_with(config).await;
    let dport = format!("{}-{}", ports.first, ports.last);
    loadgen::netns::nft(&[
        &["add", "table", "inet", "dtls"],
        &[
            "add",
            "chain",
            "inet",
            "dtls",
            "out",
            "{ type filter hook output priority 0; }",
        ],
        &[
            "add", "rule", "inet", "dtls", "out", "udp", "dport", &dport, "@ih,0,8", "20-63",
            "drop",
        ],
    ]);

    let mut ada = sfu.join(&claims("ada", Role::Speaker, false)).await;
    assert!(
        matches!(ada.first, ServerMessage::Joined { .. }),
        "{:?}",
        ada.first
    );
    ada.publish(&[TrackSource::Microphone], loadgen::MediaPlan::default())
        .await
        .expect("published");
    let failed = ada
        .wait_for(WAIT * 2, |m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::ConnectionFailed,
                    ..
                }
            )
        })
        .await
        .expect("the connection is reported as failed");
    let ServerMessage::Error { message, .. } = failed else {
        unreachable!()
    };
    assert!(
        message.contains("encryption handshake (DTLS) did not complete"),
        "{message}"
    );
    let closed = ada
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Closed { .. }))
        .await
        .expect("closed");
    assert!(
        matches!(
            closed,
            ServerMessage::Closed {
                reason: CloseReason::ConnectionFailed
            }
        ),
        "{closed:?}"
    );
    let metrics = sfu.metrics();
    assert!(metrics.contains(&metric("dtls", 1)), "{metrics}");
    assert!(metrics.contains(&metric("ice", 0)), "{metrics}");
}
