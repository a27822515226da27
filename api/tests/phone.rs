//! `POST /join` for phone callers: the SIP gateway, and only it, joins with its service token
//! and a `phone` section; the caller is a listener named by the last digits of the caller ID,
//! checked and throttled as a guest is — on the caller's address — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use proto::{JoinClaims, Role};
use serde_json::{Value, json};
use support::TestApp;

on_both_backends!(
    the_sip_gateway_joins_a_phone_caller_as_a_listener_named_by_the_last_digits,
    a_phone_join_needs_the_sip_gateways_valid_service_token,
    wrong_ids_and_passwords_are_answered_to_phone_callers_as_to_guests,
    phone_guesses_are_counted_on_the_callers_address_not_the_gateways,
);

fn claims(app: &TestApp, token: &str) -> JoinClaims {
    app.state
        .tokens
        .verify_join(token, app.now().timestamp())
        .expect("a valid join token")
}

fn gateway(app: &TestApp) -> String {
    app.service_token_of("sip:gateway")
}

fn phone_body(c: &Value, password: &str, caller_id: Value, address: &str) -> Value {
    json!({"meetingId": c["meetingId"], "password": password,
           "phone": {"callerId": caller_id, "address": address}})
}

async fn the_sip_gateway_joins_a_phone_caller_as_a_listener_named_by_the_last_digits(app: TestApp) {
    let owner = app.admin().await;
    let c = app.schedule(&owner, 2, 30, json!({})).await;
    let password = c["password"].as_str().unwrap();
    let reply = app
        .post(
            "/api/v1/join",
            Some(&gateway(&app)),
            phone_body(&c, password, json!("+4930123451234"), "203.0.113.9"),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["role"], "listener");
    assert_eq!(reply.body["displayName"], "Phone ···1234");
    let identity = reply.body["identity"].as_str().unwrap();
    assert!(identity.starts_with("phone:"), "{identity}");
    let token = claims(&app, reply.body["token"].as_str().unwrap());
    assert_eq!(token.sub, identity);
    assert_eq!(token.name, "Phone ···1234");
    assert_eq!(token.role, Role::Listener);
    assert_eq!(token.level, None);
    assert!(!token.owner);
    // The caller's network stands for the participant, as a guest's address does.
    assert_eq!(token.cli.as_deref(), Some("203.0.113.9"));

    // Every call is its own participant; a withheld number is just "Phone".
    for (caller_id, name) in [
        (json!("anonymous"), "Phone"),
        (Value::Null, "Phone"),
        (json!("12"), "Phone ···12"),
    ] {
        let again = app
            .post(
                "/api/v1/join",
                Some(&gateway(&app)),
                phone_body(&c, password, caller_id, "2001:db8:1:2::5"),
            )
            .await
            .expect(StatusCode::OK);
        assert_eq!(again.body["displayName"], name);
        assert_ne!(again.body["identity"], identity);
        let token = claims(&app, again.body["token"].as_str().unwrap());
        assert_eq!(token.cli.as_deref(), Some("2001:db8:1:2::/64"));
    }

    // The owner's own phone is a listener too: a phone join never carries an account.
    let moderated = app
        .schedule(&owner, 2, 30, json!({"allowJoinWithoutOwner": false}))
        .await;
    let waiting = app
        .post(
            "/api/v1/join",
            Some(&gateway(&app)),
            phone_body(
                &moderated,
                moderated["password"].as_str().unwrap(),
                json!("+4930123451234"),
                "203.0.113.9",
            ),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(waiting.body["role"], "listener");
    assert_eq!(waiting.body["state"], "waitingForOwner");
}

async fn a_phone_join_needs_the_sip_gateways_valid_service_token(app: TestApp) {
    let owner = app.admin().await;
    let c = app.schedule(&owner, 2, 30, json!({})).await;
    let body = phone_body(
        &c,
        c["password"].as_str().unwrap(),
        json!("+4930123451234"),
        "203.0.113.9",
    );

    let anonymous = app
        .post("/api/v1/join", None, body.clone())
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "serviceTokenRequired");

    // Signed with another secret, or expired: refused, and the message says why.
    let now = app.now().timestamp();
    let claims = |iat: i64, exp: i64| proto::ServiceClaims {
        sub: "sip:gateway".into(),
        aud: proto::token::SERVICE_AUDIENCE.into(),
        iat,
        exp,
    };
    let forged = proto::TokenKey::new(b"another-secret-of-at-least-32-bytes!!")
        .unwrap()
        .sign_service(&claims(now, now + 60))
        .unwrap();
    let expired = app
        .state
        .tokens
        .sign_service(&claims(now - 120, now - 60))
        .unwrap();
    for (token, why) in [(forged, "signature"), (expired, "expired")] {
        let refused = app
            .post("/api/v1/join", Some(&token), body.clone())
            .await
            .expect(StatusCode::UNAUTHORIZED);
        assert_eq!(refused.code(), "serviceTokenRequired");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
    }

    // Valid credentials of anyone else: an SFU pod's service token, an account's session.
    for token in [app.service_token(), owner.clone()] {
        let refused = app
            .post("/api/v1/join", Some(&token), body.clone())
            .await
            .expect(StatusCode::FORBIDDEN);
        assert_eq!(refused.code(), "notTheSipGateway");
    }

    // The gateway joins only for phone callers, and the API names them.
    let no_phone = app
        .post(
            "/api/v1/join",
            Some(&gateway(&app)),
            json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "G"}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_phone.body["error"]["field"], "phone");
    let mut named = body.clone();
    named["displayName"] = json!("Mallory");
    let named = app
        .post("/api/v1/join", Some(&gateway(&app)), named)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(named.body["error"]["field"], "phone");
    let mut bad_address = body.clone();
    bad_address["phone"]["address"] = json!("not an address");
    let bad_address = app
        .post("/api/v1/join", Some(&gateway(&app)), bad_address)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_address.code(), "validation");

    // A guest's join is unchanged.
    app.post(
        "/api/v1/join",
        None,
        json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "G"}),
    )
    .await
    .expect(StatusCode::OK);
}

async fn wrong_ids_and_passwords_are_answered_to_phone_callers_as_to_guests(app: TestApp) {
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"password": "111111"}))
        .await;
    let guest = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "password": "222222", "displayName": "G"}),
        )
        .await
        .expect(StatusCode::FORBIDDEN);
    let unknown = json!({"meetingId": "999999999", "password": "222222",
                         "phone": {"callerId": "+4930123451234", "address": "203.0.113.9"}});
    let missing = json!({"meetingId": c["meetingId"],
                         "phone": {"callerId": "+4930123451234", "address": "203.0.113.9"}});
    for body in [
        phone_body(&c, "222222", json!("+4930123451234"), "203.0.113.9"),
        unknown,
        missing,
    ] {
        let reply = app
            .post("/api/v1/join", Some(&gateway(&app)), body)
            .await
            .expect(StatusCode::FORBIDDEN);
        assert_eq!(reply.body, guest.body);
        assert_eq!(reply.code(), "wrongMeetingCredentials");
    }
    // A meeting ID that cannot be one is refused before anything is looked up.
    let letters = app
        .post(
            "/api/v1/join",
            Some(&gateway(&app)),
            json!({"meetingId": "12", "phone": {"address": "203.0.113.9"}}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(letters.body["error"]["field"], "meetingId");
}

async fn phone_guesses_are_counted_on_the_callers_address_not_the_gateways(app: TestApp) {
    let owner = app.admin().await;
    let mut meetings = Vec::new();
    for _ in 0..3 {
        meetings.push(
            app.schedule(&owner, 2, 30, json!({"password": "123456"}))
                .await,
        );
    }
    // Ten wrong passwords at each of two meetings (the most one meeting takes freely) use up
    // the twenty one address may make.
    for c in &meetings[..2] {
        for guess in 0..10 {
            app.post(
                "/api/v1/join",
                Some(&gateway(&app)),
                phone_body(c, &format!("{guess:06}"), json!("+49301"), "203.0.113.9"),
            )
            .await
            .expect(StatusCode::FORBIDDEN);
        }
    }
    let throttled = app
        .post(
            "/api/v1/join",
            Some(&gateway(&app)),
            phone_body(&meetings[2], "123456", json!("+49301"), "203.0.113.9"),
        )
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.code(), "tooManyAttempts");
    assert!(throttled.body["error"]["retryAfter"].as_u64().unwrap() > 0);
    // Another caller through the same gateway, and a guest, are not held back.
    app.post(
        "/api/v1/join",
        Some(&gateway(&app)),
        phone_body(&meetings[2], "123456", json!("+49302"), "203.0.113.10"),
    )
    .await
    .expect(StatusCode::OK);
    app.post(
        "/api/v1/join",
        None,
        json!({"meetingId": meetings[2]["meetingId"], "password": "123456", "displayName": "G"}),
    )
    .await
    .expect(StatusCode::OK);
}
