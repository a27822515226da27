//! A join token names the SFU pod it is for: another pod refuses it with `wrongPod` (telling
//! the client to join again through the API), so that the participants of one meeting never
//! end up in two rooms on two pods. Tokens that name no pod (standalone, older tokens) pass.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use proto::Role;
use proto::signal::{ErrorCode, ServerMessage};
use support::claims;
use support::cluster::{Cluster, code, counter, pod, ports};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_pod_is_refused() {
    if !loadgen::netns::isolate() {
        return;
    }
    let cluster = Arc::new(Cluster::default());
    cluster.assign("c1", "sfu-a");
    let sfu = pod(&cluster, "sfu-a", ports(42000)).await;
    let mut elsewhere = claims("ada", Role::Listener, false);
    elsewhere.pod = Some("sfu-b".into());
    let refused = sfu.join(&elsewhere).await;
    assert_eq!(code(&refused.first), Some(ErrorCode::WrongPod));
    let ServerMessage::Error { message, .. } = &refused.first else {
        unreachable!()
    };
    assert!(
        message.contains("sfu-b") && message.contains("join again"),
        "{message}"
    );
    let mut here = claims("bob", Role::Listener, false);
    here.pod = Some("sfu-a".into());
    assert!(sfu.join(&here).await.id().is_some(), "a token for this pod");
    // Tokens from before pods were named (and standalone's) name none.
    assert!(
        sfu.join(&claims("cy", Role::Listener, false))
            .await
            .id()
            .is_some()
    );
    assert_eq!(
        counter(&sfu, "conclave_sfu_signaling_errors_total", "\"wrongPod\""),
        1
    );
}
