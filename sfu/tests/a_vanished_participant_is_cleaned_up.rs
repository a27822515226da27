//! A participant whose websocket drops without `leave` (a closed tab) is removed: the others
//! are told (`participantLeft` with reason `gone`, `trackUnpublished`), its tracks, ports and
//! session are released, and the conference service hears that it left.

mod support;

use proto::signal::{CloseReason, ServerMessage, TrackSource};
use proto::{Role, RoomEvent};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_participant_is_cleaned_up() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    let bob_id = bob.id().expect("bob");
    bob.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    let publisher = bob_id.to_string();
    ada.wait_received(WAIT, |r| {
        r.values()
            .filter(|t| t.publisher == publisher && t.packets > 10)
            .count()
            == 2
    })
    .await
    .expect("ada receives bob");
    assert_eq!(sfu.state.ports_in_use(), 4);

    bob.vanish().await;

    let left = ada
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant, .. } if *participant == bob_id)
        })
        .await
        .expect("ada is told bob left");
    assert!(
        matches!(
            left,
            ServerMessage::ParticipantLeft {
                reason: CloseReason::Gone,
                ..
            }
        ),
        "{left:?}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while (sfu.state.session_count() != 1 || sfu.state.ports_in_use() != 2)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(sfu.state.session_count(), 1, "bob's session ended");
    assert_eq!(sfu.state.ports_in_use(), 2, "bob's two ports are free");
    let metrics = sfu.metrics();
    for line in [
        "conclave_sfu_participants 1",
        "conclave_sfu_tracks{kind=\"audio\"} 0",
        "conclave_sfu_tracks{kind=\"video\"} 0",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    assert!(
        sfu.reports
            .events()
            .iter()
            .any(|e| matches!(e, RoomEvent::Left { identity } if identity == "bob")),
        "the conference service hears that bob left: {:?}",
        sfu.reports.events()
    );
    ada.leave().await;
}
