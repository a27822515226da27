//! `POST /join`: roles, passwords, guests, early start, waiting for the owner, throttling, and
//! the signed join token — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use chrono::Duration;
use proto::{JoinClaims, Role};
use serde_json::json;
use support::TestApp;

on_both_backends!(
    a_guest_joins_with_meeting_id_password_and_name,
    a_wrong_password_never_tells_whether_the_meeting_exists,
    the_owner_and_moderators_join_as_moderators_without_password,
    a_meeting_far_ahead_cannot_be_joined_but_its_owner_starts_it_early,
    guests_wait_for_an_absent_owner_when_required,
    guessing_meeting_passwords_is_slowed_down,
    asking_without_a_password_is_no_guess,
    bad_join_requests_get_clear_errors,
    a_join_token_carries_the_definitions_revision_and_the_client_network,
    a_meeting_larger_than_any_sfu_is_told_so_not_retried,
    in_standalone_no_pod_is_named_and_a_lost_pod_is_not_waited_for,
    recording_allowed_is_kept_edited_and_carried_in_the_join_token,
);

async fn in_standalone_no_pod_is_named_and_a_lost_pod_is_not_waited_for(app: TestApp) {
    let owner = app.admin().await;
    let c = app.schedule(&owner, 2, 30, json!({})).await;
    let body =
        json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "Gus"});
    let joined = app
        .post("/api/v1/join", None, body.clone())
        .await
        .expect(StatusCode::OK);
    assert!(joined.body["pod"].is_null(), "{}", joined.text);
    assert_eq!(
        claims(&app, joined.body["token"].as_str().unwrap()).pod,
        None
    );

    // The one embedded SFU holds everything: a client that lost it is answered at once (the
    // test's clock does not move; a wait would hang here, not pass).
    let mut again = body.clone();
    again["lostPod"] = json!("embedded");
    let rejoined = app
        .post("/api/v1/join", None, again)
        .await
        .expect(StatusCode::OK);
    assert_eq!(rejoined.body["endpoint"], joined.body["endpoint"]);

    for bad in ["Embedded", "-x", "a/b", ""] {
        let mut wrong = body.clone();
        wrong["lostPod"] = json!(bad);
        let refused = app
            .post("/api/v1/join", None, wrong)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.code(), "validation");
        assert_eq!(refused.body["error"]["field"], "lostPod", "{bad:?}");
    }

    // The embedded SFU is told it holds everything, should it ask.
    let placements = app
        .get("/api/v1/internal/placements", &app.service_token())
        .await
        .expect(StatusCode::OK);
    assert_eq!(placements.body["pod"], "test");
    assert_eq!(placements.body["holdsEverything"], true);
    assert_eq!(placements.body["conferences"], json!([]));
}

async fn a_meeting_larger_than_any_sfu_is_told_so_not_retried(app: TestApp) {
    let owner = app.admin().await;
    let capacity = app.config.sfu_capacity;
    let c = app
        .schedule(&owner, 0, 30, json!({"maxParticipants": capacity + 1}))
        .await;
    let reply = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "Gus"}),
        )
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(reply.code(), "conferenceTooLarge");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("maxParticipants"), "{message}");
}

fn claims(app: &TestApp, token: &str) -> JoinClaims {
    app.state
        .tokens
        .verify_join(token, app.now().timestamp())
        .expect("a valid join token")
}

async fn a_guest_joins_with_meeting_id_password_and_name(app: TestApp) {
    let owner = app.admin().await;
    let c = app
        .schedule(
            &owner,
            2,
            30,
            json!({"maxParticipants": 12, "media": "audioOnly"}),
        )
        .await;
    let guest_id = uuid::Uuid::new_v4().to_string();
    let reply = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "  Grace  ", "guestId": guest_id}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["role"], "listener");
    assert_eq!(reply.body["state"], "ready");
    assert_eq!(reply.body["displayName"], "Grace");
    assert_eq!(reply.body["identity"], format!("guest:{guest_id}"));
    assert_eq!(reply.body["endpoint"], "ws://127.0.0.1:8080/rtc");
    let claims = claims(&app, reply.body["token"].as_str().unwrap());
    assert_eq!(claims.role, Role::Listener);
    assert_eq!(claims.conf.as_str(), c["id"].as_str().unwrap());
    assert_eq!(claims.room.max_participants, Some(12));
    assert_eq!(claims.room.media, proto::Media::AudioOnly);
    let ports = claims.room.udp_ports.expect("the conference's port range");
    assert!(ports.first >= 40000 && ports.last <= 40999 && ports.last - ports.first + 1 == 24);
    assert_eq!(claims.exp - claims.iat, 300);
    // The token expires.
    app.clock.advance(Duration::minutes(6));
    assert!(
        app.state
            .tokens
            .verify_join(reply.body["token"].as_str().unwrap(), app.now().timestamp())
            .is_err()
    );
    // The conference is placed and online now.
    let log = app
        .get(
            &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
            &owner,
        )
        .await
        .body;
    assert_eq!(log["status"], "online");
}

async fn a_wrong_password_never_tells_whether_the_meeting_exists(app: TestApp) {
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"password": "111111"}))
        .await;
    let wrong = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "password": "222222", "displayName": "G"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": "999999999", "password": "222222", "displayName": "G"}),
        )
        .await;
    let missing = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "displayName": "G"}),
        )
        .await;
    for reply in [&wrong, &unknown, &missing] {
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        assert_eq!(reply.body, wrong.body);
    }
    assert_eq!(wrong.code(), "wrongMeetingCredentials");
    // An audience account needs the password too.
    let (_, ann) = app.user("ann", "audience").await;
    let reply = app
        .post(
            "/api/v1/join",
            Some(&ann),
            json!({"meetingId": c["meetingId"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = app
        .post(
            "/api/v1/join",
            Some(&ann),
            json!({"meetingId": c["meetingId"], "password": "111111"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["role"], "listener");
    assert_eq!(reply.body["displayName"], "ANN");
    assert!(
        reply.body["identity"]
            .as_str()
            .unwrap()
            .starts_with("account:")
    );
}

async fn the_owner_and_moderators_join_as_moderators_without_password(app: TestApp) {
    let (_, owner) = app.user("olga", "audience").await;
    let (_, moderator) = app.user("max", "moderatorPlus").await;
    let c = app.schedule(&owner, 2, 30, json!({})).await;
    let own = app
        .post(
            "/api/v1/join",
            Some(&owner),
            json!({"meetingId": c["meetingId"]}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(own.body["role"], "moderator");
    let claims_owner = claims(&app, own.body["token"].as_str().unwrap());
    assert!(claims_owner.owner);
    assert!(
        !claims_owner.grants().record,
        "an audience-level owner moderates but does not record"
    );
    let other = app
        .post(
            "/api/v1/join",
            Some(&moderator),
            json!({"meetingId": c["meetingId"]}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(other.body["role"], "moderator");
    let claims_mod = claims(&app, other.body["token"].as_str().unwrap());
    assert!(!claims_mod.owner);
    assert!(claims_mod.grants().record);
}

async fn a_meeting_far_ahead_cannot_be_joined_but_its_owner_starts_it_early(app: TestApp) {
    let owner = app.admin().await;
    let c = app.schedule(&owner, 120, 30, json!({})).await;
    let guest = json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "G"});
    let early = app.post("/api/v1/join", None, guest.clone()).await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(early.code(), "conferenceNotStarted");
    assert_eq!(
        early.body["error"]["startsAt"],
        json!((app.now() + Duration::minutes(120)).to_rfc3339())
    );
    assert_eq!(
        early.body["error"]["opensAt"],
        json!((app.now() + Duration::minutes(115)).to_rfc3339())
    );
    // Inside the lead time anyone may join.
    app.clock.advance(Duration::minutes(115));
    app.post("/api/v1/join", None, guest.clone())
        .await
        .expect(StatusCode::OK);
    // Another conference, started early by its owner: guests may follow at once.
    let d = app.schedule(&owner, 300, 30, json!({})).await;
    let guest_d =
        json!({"meetingId": d["meetingId"], "password": d["password"], "displayName": "G"});
    assert_eq!(
        app.post("/api/v1/join", None, guest_d.clone()).await.status,
        StatusCode::CONFLICT
    );
    app.post(
        "/api/v1/join",
        Some(&owner),
        json!({"meetingId": d["meetingId"]}),
    )
    .await
    .expect(StatusCode::OK);
    app.post("/api/v1/join", None, guest_d)
        .await
        .expect(StatusCode::OK);
    let shown = app
        .get(
            &format!("/api/v1/conferences/{}", d["id"].as_str().unwrap()),
            &owner,
        )
        .await
        .body;
    assert_eq!(shown["status"], "online");
}

async fn guests_wait_for_an_absent_owner_when_required(app: TestApp) {
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"allowJoinWithoutOwner": false}))
        .await;
    let guest = json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "G"});
    let waiting = app
        .post("/api/v1/join", None, guest.clone())
        .await
        .expect(StatusCode::OK);
    assert_eq!(waiting.body["state"], "waitingForOwner");
    assert!(
        !claims(&app, waiting.body["token"].as_str().unwrap())
            .room
            .allow_join_without_owner
    );
    // The SFU reports the owner's arrival.
    let me = app.get("/api/v1/me", &owner).await.body;
    app.post(
        "/api/v1/internal/room-events",
        Some(&app.service_token()),
        json!({"conference": c["id"], "at": app.now().to_rfc3339(), "participants": 1,
               "event": {"kind": "joined", "identity": format!("account:{}", me["id"].as_str().unwrap()), "displayName": "Admin"}}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let ready = app
        .post("/api/v1/join", None, guest)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ready.body["state"], "ready");
}

async fn guessing_meeting_passwords_is_slowed_down(app: TestApp) {
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"password": "123456"}))
        .await;
    for guess in 0..10 {
        let reply = app
            .post("/api/v1/join", None, json!({"meetingId": c["meetingId"], "password": format!("{guess:06}"), "displayName": "G"}))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    let throttled = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "password": "123456", "displayName": "G"}),
        )
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.code(), "tooManyAttempts");
    // The owner needs no password: guesses against the meeting do not lock them out of it.
    app.post(
        "/api/v1/join",
        Some(&owner),
        json!({"meetingId": c["meetingId"]}),
    )
    .await
    .expect(StatusCode::OK);
    app.clock.advance(Duration::seconds(2));
    app.post(
        "/api/v1/join",
        None,
        json!({"meetingId": c["meetingId"], "password": "123456", "displayName": "G"}),
    )
    .await
    .expect(StatusCode::OK);
}

async fn asking_without_a_password_is_no_guess(app: TestApp) {
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"password": "123456"}))
        .await;
    // Many people following the invite link, first asked without a password (as logged-in
    // accounts are), never lock the meeting.
    for _ in 0..30 {
        let reply = app
            .post(
                "/api/v1/join",
                None,
                json!({"meetingId": c["meetingId"], "displayName": "G"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.code(), "wrongMeetingCredentials");
    }
    app.post(
        "/api/v1/join",
        None,
        json!({"meetingId": c["meetingId"], "password": "123456", "displayName": "G"}),
    )
    .await
    .expect(StatusCode::OK);
}

async fn bad_join_requests_get_clear_errors(app: TestApp) {
    let owner = app.admin().await;
    let c = app.schedule(&owner, 2, 30, json!({})).await;
    let no_name = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "password": c["password"]}),
        )
        .await;
    assert_eq!(no_name.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_name.body["error"]["field"], "displayName");
    let letters = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": "abc", "password": "1", "displayName": "G"}),
        )
        .await;
    assert_eq!(letters.body["error"]["field"], "meetingId");
    let bad_guest = app
        .post("/api/v1/join", None, json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "G", "guestId": "me"}))
        .await;
    assert_eq!(bad_guest.body["error"]["field"], "guestId");
    // Spaces and dashes people type are fine.
    let spaced = c["meetingId"].as_str().unwrap();
    let spaced = format!("{} {}-{}", &spaced[..3], &spaced[3..6], &spaced[6..]);
    app.post(
        "/api/v1/join",
        None,
        json!({"meetingId": spaced, "password": c["password"], "displayName": "G"}),
    )
    .await
    .expect(StatusCode::OK);
}

async fn a_join_token_carries_the_definitions_revision_and_the_client_network(app: TestApp) {
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"maxParticipants": 12}))
        .await;
    let join = |body: serde_json::Value| {
        let request = axum::http::Request::post("/api/v1/join")
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                "2001:db8:1:2::5".parse::<std::net::IpAddr>().unwrap(),
                4000,
            ))))
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        app.send(request)
    };
    let body =
        json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "Grace"});
    let before = join(body.clone()).await.expect(StatusCode::OK);
    let before = claims(&app, before.body["token"].as_str().unwrap());
    assert_eq!(before.cli.as_deref(), Some("2001:db8:1:2::/64"));
    app.patch(
        &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
        &owner,
        json!({"maxParticipants": 20}),
    )
    .await
    .expect(StatusCode::OK);
    let after = join(body).await.expect(StatusCode::OK);
    let after = claims(&app, after.body["token"].as_str().unwrap());
    assert_eq!(after.room.max_participants, Some(20));
    assert!(
        after.room.revision > before.room.revision,
        "the SFU must be able to tell the newer settings: {} then {}",
        before.room.revision,
        after.room.revision
    );
}

async fn recording_allowed_is_kept_edited_and_carried_in_the_join_token(app: TestApp) {
    let owner = app.admin().await;
    let c = app.schedule(&owner, 2, 30, json!({"topic": "Board"})).await;
    assert_eq!(c["recordingAllowed"], true, "allowed by default");
    let id = c["id"].as_str().unwrap().to_owned();
    let body = json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "Grace"});
    let token = app.post("/api/v1/join", None, body.clone()).await.expect(StatusCode::OK);
    let allowed = claims(&app, token.body["token"].as_str().unwrap());
    assert!(allowed.room.recording_allowed);
    assert_eq!(allowed.room.topic.as_deref(), Some("Board"));

    let patched = app
        .patch(
            &format!("/api/v1/conferences/{id}"),
            &owner,
            json!({"recordingAllowed": false}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(patched.body["recordingAllowed"], false);
    let read = app
        .get(&format!("/api/v1/conferences/{id}"), &owner)
        .await
        .expect(StatusCode::OK);
    assert_eq!(read.body["recordingAllowed"], false, "stored");
    let token = app.post("/api/v1/join", None, body).await.expect(StatusCode::OK);
    assert!(
        !claims(&app, token.body["token"].as_str().unwrap())
            .room
            .recording_allowed,
        "the SFU is told"
    );
    let refused = app
        .patch(
            &format!("/api/v1/conferences/{id}"),
            &owner,
            json!({"recordingAllowed": "no"}),
        )
        .await;
    assert!(
        refused.status.is_client_error(),
        "a non-boolean is refused: {}",
        refused.status
    );
}
