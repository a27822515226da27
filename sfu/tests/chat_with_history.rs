//! Chat reaches everyone, private messages only their recipient, and late joiners get the
//! history.

mod support;

use std::time::Duration;

use proto::Role;
use proto::signal::{ClientMessage, ServerMessage};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_history() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut ada = sfu.join(&claims("ada", Role::Listener, false)).await;
    let mut bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    let mut cid = sfu.join(&claims("cid", Role::Listener, false)).await;
    ada.send(ClientMessage::Chat {
        text: "hello all".into(),
        to: None,
    });
    ada.send(ClientMessage::Chat {
        text: "psst bob".into(),
        to: bob.id(),
    });
    bob.wait_for(
        WAIT,
        |m| matches!(m, ServerMessage::Chat { message } if message.text == "psst bob"),
    )
    .await
    .expect("private");
    cid.wait_for(
        WAIT,
        |m| matches!(m, ServerMessage::Chat { message } if message.text == "hello all"),
    )
    .await
    .expect("public");
    assert!(
        cid.wait_for(Duration::from_millis(300), |m| matches!(
            m,
            ServerMessage::Chat { .. }
        ))
        .await
        .is_err(),
        "cid never sees the private one"
    );
    ada.send(ClientMessage::Chat {
        text: "x".repeat(5000),
        to: None,
    });
    ada.wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
        .expect("too long");

    let late = sfu.join(&claims("dan", Role::Listener, false)).await;
    let ServerMessage::Joined { chat, .. } = &late.first else {
        panic!("{:?}", late.first)
    };
    let texts: Vec<&str> = chat.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, vec!["hello all"]);
}
