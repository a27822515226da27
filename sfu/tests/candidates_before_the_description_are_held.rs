//! Trickle ICE may send a candidate before the offer or answer it belongs to: the SFU holds it
//! until that description is set instead of refusing it, and a flood of them is refused.

mod support;

use proto::Role;
use proto::signal::{
    ClientMessage, ErrorCode, IceCandidate, PeerTarget, ServerMessage, TrackSource,
};
use support::{WAIT, claims, ports, start};

fn candidate(port: u16) -> IceCandidate {
    IceCandidate {
        candidate: format!("candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
        username_fragment: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_before_the_description_are_held() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut speaker = sfu.join(&claims("spk", Role::Speaker, false)).await;

    // A candidate for the publisher connection before any offer, then a message the SFU refuses
    // for a known reason: messages are handled in order, so the first error tells whether the
    // candidate was refused.
    speaker.send(ClientMessage::Candidate {
        target: PeerTarget::Publisher,
        candidate: candidate(9),
    });
    speaker.send(ClientMessage::EndMeeting);
    let first = speaker
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await;
    assert!(
        matches!(
            first,
            Ok(ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{first:?}"
    );
    // The offer comes; the held candidate is added with it, and publishing works.
    speaker
        .publish(&[TrackSource::Microphone], loadgen::MediaPlan::default())
        .await
        .expect("publishing after an early candidate");

    // Candidates for the subscriber connection, which has no answer yet, are held too, up to
    // a limit.
    let mut refused = None;
    for port in 0..65 {
        speaker.send(ClientMessage::Candidate {
            target: PeerTarget::Subscriber,
            candidate: candidate(10_000 + port),
        });
    }
    speaker.send(ClientMessage::EndMeeting);
    while let Ok(ServerMessage::Error { code, message }) = speaker
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
    {
        if code == ErrorCode::Forbidden {
            break;
        }
        refused.get_or_insert((code, message));
    }
    let (code, message) = refused.expect("the 65th early candidate is refused");
    assert_eq!(code, ErrorCode::Negotiation);
    assert!(message.contains("send the description first"), "{message}");
}
