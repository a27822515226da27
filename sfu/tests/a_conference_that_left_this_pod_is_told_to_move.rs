//! An SFU pod serves only the conferences placed on it: a join for one placed a moment ago
//! (after the pod's last list) is admitted after one fresh look at the placements, a join for
//! one placed elsewhere is refused (`wrongPod`), and when the operator moves a conference away
//! its participants are told `moved` (they join again through the API) while the others' rooms
//! go on.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use proto::signal::{CloseReason, ErrorCode, ServerMessage};
use proto::{ConferenceId, Role};
use support::cluster::{Cluster, code, counter, pod, ports};
use support::{WAIT, claims};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_that_left_this_pod_is_told_to_move() {
    if !loadgen::netns::isolate() {
        return;
    }
    let cluster = Arc::new(Cluster::default());
    cluster.assign("c1", "sfu-a");
    let sfu = pod(&cluster, "sfu-a", ports(42000)).await;
    assert!(
        sfu.state.refresh_placements().await.unwrap(),
        "the first list"
    );
    let on = |sub: &str, conference: &str| {
        let mut claims = claims(sub, Role::Listener, false);
        claims.conf = ConferenceId::from(conference);
        claims.pod = Some("sfu-a".into());
        claims
    };
    let mut ada = sfu.join(&on("ada", "c1")).await;
    let mut bob = sfu.join(&on("bob", "c1")).await;
    assert!(ada.id().is_some() && bob.id().is_some());

    // Placed here a moment ago, after the last list: one fresh look admits it.
    cluster.assign("c2", "sfu-a");
    let asked = cluster.asked_by("sfu-a");
    let mut cy = sfu.join(&on("cy", "c2")).await;
    assert!(cy.id().is_some(), "{:?}", cy.first);
    assert!(
        cluster.asked_by("sfu-a") > asked,
        "the list was asked again"
    );
    // Not placed here at all: refused after that look.
    let refused = sfu.join(&on("dee", "c3")).await;
    assert_eq!(code(&refused.first), Some(ErrorCode::WrongPod));

    // The operator moves c1 to another pod: its participants are told to move, c2 stays.
    cluster.assign("c1", "sfu-b");
    sfu.state.refresh_placements().await.unwrap();
    for client in [&mut ada, &mut bob] {
        client
            .wait_for(WAIT, |m| {
                matches!(
                    m,
                    ServerMessage::Closed {
                        reason: CloseReason::Moved
                    }
                )
            })
            .await
            .expect("told to move");
    }
    cy.send(proto::signal::ClientMessage::Chat {
        text: "still here".into(),
        to: None,
    });
    cy.wait_for(WAIT, |m| matches!(m, ServerMessage::Chat { .. }))
        .await
        .expect("c2 goes on");
    assert_eq!(
        counter(&sfu, "conclave_sfu_sessions_closed_total", "\"moved\""),
        2
    );
    assert!(sfu.metrics().contains("conclave_sfu_held_conferences 1"));
}
