//! Many participants joining at once each get `joined` as the first answer, before any
//! `participantJoined` of those who joined just after them (effects are applied in the
//! order the room decided them).

mod support;

use proto::Role;
use proto::signal::ServerMessage;
use support::{claims, ports, start};

const JOINERS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joiners_hear_joined_first() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let host = sfu.join(&claims("host", Role::Moderator, true)).await;
    let all = claims_for_all();
    let joins = all.iter().map(|c| sfu.join(c));
    let clients = futures::future::join_all(joins).await;
    for client in &clients {
        assert!(
            matches!(client.first, ServerMessage::Joined { .. }),
            "the first answer is `joined`: {:?}",
            client.first
        );
    }
    for client in clients {
        client.leave().await;
    }
    host.leave().await;
}

fn claims_for_all() -> Vec<proto::JoinClaims> {
    (0..JOINERS)
        .map(|i| claims(&format!("guest{i}"), Role::Listener, false))
        .collect()
}
