//! Garbage on the websocket is answered with an error; the session and the room go on.

mod support;

use proto::Role;
use proto::signal::{ClientMessage, ErrorCode, ServerMessage};
use support::{WAIT, claims, ports, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signaling_is_answered_with_an_error() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut ada = sfu.join(&claims("ada", Role::Listener, false)).await;
    let mut bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    for garbage in [
        "not json",
        "{\"type\":\"nope\"}",
        "{\"type\":\"chat\"}",
        "[]",
    ] {
        ada.send_raw(garbage);
        let answer = ada
            .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
            .await
            .expect("an answer");
        assert!(
            matches!(
                answer,
                ServerMessage::Error {
                    code: ErrorCode::Malformed,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    ada.send(ClientMessage::Answer {
        sdp: "v=0 nonsense".into(),
    });
    assert!(matches!(
        ada.wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
            .await
            .ok(),
        Some(ServerMessage::Error {
            code: ErrorCode::Negotiation,
            ..
        })
    ));
    ada.send(ClientMessage::Chat {
        text: "still here".into(),
        to: None,
    });
    bob.wait_for(
        WAIT,
        |m| matches!(m, ServerMessage::Chat { message } if message.text == "still here"),
    )
    .await
    .expect("the room goes on");
    assert!(
        sfu.metrics()
            .contains("conclave_sfu_signaling_errors_total{code=\"malformed\"} 4")
    );
}
