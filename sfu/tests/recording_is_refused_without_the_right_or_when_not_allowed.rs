//! The server checks who may record: a plain moderator's start is refused (only the account
//! level moderatorPlus records), and a conference whose `recording.allowed` is false refuses
//! even a moderatorPlus — each with a clear message, nothing written, nothing reported.

mod support;

use proto::signal::{ClientMessage, ErrorCode, ServerMessage};
use proto::{AccountLevel, Role, RoomEvent};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_refused_without_the_right_or_when_not_allowed() {
    if !loadgen::netns::isolate() {
        return;
    }
    let store = tempfile::tempdir().expect("a folder");
    let sfu = start(ports()).await;
    sfu.state
        .set_files(sfu::recording::Files::local(store.path()).expect("files"))
        .expect("set once");

    let mut plain = claims("mod", Role::Moderator, true);
    plain.level = Some(AccountLevel::Moderator);
    let mut moderator = sfu.join(&plain).await;
    moderator.send(ClientMessage::SetRecording { active: true });
    let refused = moderator
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
        .expect("an answer");
    let ServerMessage::Error { code, message } = refused else {
        unreachable!()
    };
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("moderatorPlus"), "{message}");

    // The conference is edited to forbid recording: a newer token carries it.
    let mut forbidding = claims("plus", Role::Moderator, false);
    forbidding.level = Some(AccountLevel::ModeratorPlus);
    forbidding.room.recording_allowed = false;
    forbidding.room.revision = 1;
    let mut plus = sfu.join(&forbidding).await;
    plus.send(ClientMessage::SetRecording { active: true });
    let refused = plus
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
        .expect("an answer");
    let ServerMessage::Error { code, message } = refused else {
        unreachable!()
    };
    assert_eq!(code, ErrorCode::RecordingNotAllowed);
    assert!(message.contains("not allowed"), "{message}");

    // Nobody saw a recording start; the conference service heard of none; nothing was written.
    for client in [&mut moderator, &mut plus] {
        assert!(
            client
                .wait_for(std::time::Duration::from_millis(300), |m| matches!(
                    m,
                    ServerMessage::Recording { .. }
                ))
                .await
                .is_err(),
            "no recording indicator"
        );
    }
    assert!(
        !sfu.reports
            .events()
            .iter()
            .any(|e| matches!(e, RoomEvent::RecordingStarted { .. }))
    );
    assert!(!store.path().join("recordings").exists());
    moderator.leave().await;
    plus.leave().await;
}
