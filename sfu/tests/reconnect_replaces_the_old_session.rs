//! Joining again with the same identity replaces the old session and keeps the participant ID.

mod support;

use proto::Role;
use proto::signal::{CloseReason, ServerMessage};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_the_old_session() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let ada = claims("ada", Role::Listener, false);
    let mut first = sfu.join(&ada).await;
    let mut bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    let again = sfu.join(&claims("ada", Role::Listener, false)).await;
    assert_eq!(again.id(), first.id(), "same participant ID");
    first
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::Closed {
                    reason: CloseReason::Replaced
                }
            )
        })
        .await
        .expect("the old session is told");
    bob.wait_for(WAIT, |m| {
        matches!(m, ServerMessage::ParticipantUpdated { .. })
    })
    .await
    .expect("the others see an update, not a leave");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sfu.state.session_count(), 2);
}
