//! Presenting over real websockets: a speaker gets an upload ticket and a listener does not;
//! everyone gets a view ticket on admission; a descriptor signed with the shared key shows the
//! presentation to everyone, one signed with another key or for another meeting is refused;
//! only the presenter turns pages, a listener's page turn is refused; a late joiner sees the
//! page shown.

mod support;

use proto::presentation::{DESCRIPTOR_AUDIENCE, DescriptorClaims, PresentationId};
use proto::signal::{ClientMessage, ErrorCode, ServerMessage};
use proto::{Role, TokenKey};
use support::{SECRET, WAIT, claims, conference, ports, start};

fn descriptor(key: &TokenKey, conference: proto::ConferenceId, pages: u32) -> String {
    let now = chrono::Utc::now().timestamp();
    key.sign_descriptor(&DescriptorClaims {
        sub: "account:ada".into(),
        conf: conference,
        pid: PresentationId::from_random([5; 16]),
        title: "Plan".into(),
        pages,
        aud: DESCRIPTOR_AUDIENCE.into(),
        iat: now,
        exp: now + 600,
    })
    .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presentations_follow_the_rights() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let key = TokenKey::new(SECRET.as_bytes()).expect("key");
    let mut ada = sfu.join(&claims("ada", Role::Speaker, false)).await;
    let mut bob = sfu.join(&claims("bob", Role::Listener, false)).await;

    // Everyone admitted gets a view ticket for this conference.
    let ServerMessage::PresentationAccess { ticket, .. } = bob
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::PresentationAccess { .. })
        })
        .await
        .expect("view ticket")
    else {
        unreachable!()
    };
    let view = key
        .verify_view(&ticket, chrono::Utc::now().timestamp())
        .expect("a valid view ticket");
    assert_eq!(view.conf, conference());

    // A listener gets no upload ticket; a speaker does.
    bob.send(ClientMessage::RequestPresentationUpload);
    let refused = bob
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
        .expect("refused");
    assert!(
        matches!(
            refused,
            ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{refused:?}"
    );
    ada.send(ClientMessage::RequestPresentationUpload);
    let ServerMessage::PresentationUploadTicket { ticket, .. } = ada
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::PresentationUploadTicket { .. })
        })
        .await
        .expect("upload ticket")
    else {
        unreachable!()
    };
    let upload = key
        .verify_upload(&ticket, chrono::Utc::now().timestamp())
        .expect("a valid upload ticket");
    assert_eq!(
        (upload.sub.as_str(), upload.conf.clone()),
        ("ada", conference())
    );

    // Forged and foreign descriptors are refused.
    let forged = TokenKey::new(b"not-the-shared-secret-not-the-shared").expect("key");
    for bad in [
        descriptor(&forged, conference(), 3),
        descriptor(&key, proto::ConferenceId::from("another"), 3),
    ] {
        ada.send(ClientMessage::ShowPresentation { descriptor: bad });
        let refused = ada
            .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
            .await
            .expect("refused");
        assert!(
            matches!(
                refused,
                ServerMessage::Error {
                    code: ErrorCode::InvalidPresentation,
                    ..
                }
            ),
            "{refused:?}"
        );
    }

    // A real one reaches everyone; the presenter turns to page 2.
    ada.send(ClientMessage::ShowPresentation {
        descriptor: descriptor(&key, conference(), 3),
    });
    bob.wait_for(WAIT, |m| {
        matches!(m, ServerMessage::Presentation { presentation: Some(p), .. } if p.page == 1 && p.pages == 3)
    })
    .await
    .expect("shown");
    ada.send(ClientMessage::SetPresentationPage { page: 2 });
    bob.wait_for(
        WAIT,
        |m| matches!(m, ServerMessage::Presentation { presentation: Some(p), .. } if p.page == 2),
    )
    .await
    .expect("page 2");

    // The listener's page turn is refused, and nothing changes.
    bob.send(ClientMessage::SetPresentationPage { page: 3 });
    let refused = bob
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Error { .. }))
        .await
        .expect("refused");
    assert!(
        matches!(
            refused,
            ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{refused:?}"
    );

    // A late joiner sees page 2.
    let late = sfu.join(&claims("cid", Role::Listener, false)).await;
    let ServerMessage::Joined { presentation, .. } = &late.first else {
        panic!("{:?}", late.first)
    };
    assert_eq!(presentation.as_ref().map(|p| p.page), Some(2));
}
