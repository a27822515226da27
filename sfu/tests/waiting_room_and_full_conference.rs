//! Without the owner people wait and are admitted when the owner arrives; a full conference
//! refuses with a clear code.

mod support;

use proto::Role;
use proto::signal::{ErrorCode, ServerMessage};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_and_full_conference() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut guest = claims("guest", Role::Listener, false);
    guest.room.allow_join_without_owner = false;
    guest.room.max_participants = Some(2);
    let mut waiting = sfu.join(&guest).await;
    assert_eq!(waiting.first, ServerMessage::Waiting);
    let mut owner = claims("owner", Role::Moderator, true);
    owner.room = guest.room.clone();
    let owner_client = sfu.join(&owner).await;
    assert!(matches!(owner_client.first, ServerMessage::Joined { .. }));
    waiting
        .wait_joined(WAIT)
        .await
        .expect("admitted when the owner came");

    let mut third = claims("third", Role::Listener, false);
    third.room = guest.room.clone();
    let refused = sfu.join(&third).await;
    assert!(
        matches!(
            refused.first,
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                ..
            }
        ),
        "{:?}",
        refused.first
    );
}
