//! A moderator promotes a listener (who may then share the screen), blocks a microphone,
//! excludes someone who cannot come back with the same token, and ends the meeting.

mod support;

use proto::signal::{ClientMessage, CloseReason, ErrorCode, ServerMessage, TrackSource};
use proto::{Role, RoomEvent};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderator_promotes_mutes_excludes_and_ends() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut moderator = sfu.join(&claims("mod", Role::Moderator, true)).await;
    let mut listener = sfu.join(&claims("lis", Role::Listener, false)).await;
    let intruder_claims = claims("bad", Role::Listener, false);
    let mut intruder = sfu.join(&intruder_claims).await;
    let listener_id = listener.id().expect("joined");
    let intruder_id = intruder.id().expect("joined");

    // A listener's screen share is refused …
    listener.send(ClientMessage::Publish {
        track_id: "screen".into(),
        source: TrackSource::Screen,
        muted: false,
    });
    let refused = listener
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
        .expect("refused");
    assert!(matches!(
        refused,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    // … and works after promotion.
    moderator.send(ClientMessage::SetRole {
        participant: listener_id.clone(),
        role: Role::Speaker,
    });
    listener
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::RoleChanged {
                    role: Role::Speaker,
                    ..
                }
            )
        })
        .await
        .expect("promoted");
    listener
        .publish(&[TrackSource::Screen], loadgen::MediaPlan::default())
        .await
        .expect("share");
    moderator
        .wait_for(WAIT, |m| matches!(m, ServerMessage::TrackPublished { track } if track.source == TrackSource::Screen))
        .await
        .expect("the screen is published");

    // Microphones.
    moderator.send(ClientMessage::BlockMicrophone {
        participant: intruder_id.clone(),
        blocked: true,
    });
    intruder
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::MicrophoneBlocked { blocked: true, .. })
        })
        .await
        .expect("blocked");

    // Exclusion, and no way back with the same token.
    moderator.send(ClientMessage::Exclude {
        participant: intruder_id,
    });
    intruder
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::Closed {
                    reason: CloseReason::Excluded
                }
            )
        })
        .await
        .expect("excluded");
    let back = sfu.join(&intruder_claims).await;
    assert!(
        matches!(
            back.first,
            ServerMessage::Error {
                code: ErrorCode::Excluded,
                ..
            }
        ),
        "{:?}",
        back.first
    );

    // The end.
    listener.send(ClientMessage::EndMeeting);
    let refused = listener
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await;
    assert!(
        matches!(
            refused,
            Ok(ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{refused:?}"
    );
    moderator.send(ClientMessage::EndMeeting);
    listener
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::Closed {
                    reason: CloseReason::Ended
                }
            )
        })
        .await
        .expect("ended");
    moderator
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::Closed {
                    reason: CloseReason::Ended
                }
            )
        })
        .await
        .expect("ended");
    assert!(sfu.reports.events().contains(&RoomEvent::Ended));
}
