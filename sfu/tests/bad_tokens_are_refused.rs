//! Expired tokens, tokens signed with another key and tokens for another conference are refused.

mod support;

use loadgen::Client;
use proto::signal::{ErrorCode, ServerMessage};
use proto::{ConferenceId, Role, TokenKey};
use support::{claims, ports, start};

fn code(message: &ServerMessage) -> Option<ErrorCode> {
    match message {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let mut expired = claims("ada", Role::Listener, false);
    expired.iat -= 7200;
    expired.exp = expired.iat + 60;
    assert_eq!(
        code(&sfu.join(&expired).await.first),
        Some(ErrorCode::TokenExpired)
    );

    let other = TokenKey::new(b"another-secret-another-secret-another").expect("key");
    let fine = claims("bob", Role::Listener, false);
    let forged = other.sign_join(&fine).expect("sign");
    let client = Client::join(sfu.addr, &forged, &fine.conf)
        .await
        .expect("connect");
    assert_eq!(code(&client.first), Some(ErrorCode::InvalidToken));

    let token = sfu.token(&fine);
    let client = Client::join(sfu.addr, &token, &ConferenceId::from("another"))
        .await
        .expect("connect");
    assert_eq!(code(&client.first), Some(ErrorCode::WrongConference));

    let client = Client::join(sfu.addr, "garbage", &fine.conf)
        .await
        .expect("connect");
    assert_eq!(code(&client.first), Some(ErrorCode::InvalidToken));
    assert_eq!(
        sfu.state.room_count(),
        0,
        "no room was made for refused tokens"
    );
}
