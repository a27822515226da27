//! Accounts, sessions, login throttling, administration and profiles — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{Method, StatusCode, header};
use chrono::Duration;
use serde_json::json;
use support::{ADMIN_PASSWORD, TestApp};

on_both_backends!(
    admin_logs_in_with_a_cookie_and_a_bearer_token,
    wrong_passwords_are_refused_and_slowed_down,
    audience_cannot_administer,
    admin_manages_accounts_and_levels,
    the_last_administrator_cannot_be_removed,
    disabled_accounts_cannot_log_in_and_lose_their_sessions,
    profile_edits_and_password_changes,
    logout_ends_the_session,
    bad_account_input_gets_clear_errors,
    guessing_the_current_password_with_a_stolen_session_is_slowed_down,
);

async fn guessing_the_current_password_with_a_stolen_session_is_slowed_down(app: TestApp) {
    let (_, session) = app.user("mia", "audience").await;
    let guess =
        |n: usize| json!({"password": "taken-over-1", "currentPassword": format!("guess-{n}")});
    for n in 0..5 {
        app.patch("/api/v1/me", &session, guess(n))
            .await
            .expect(StatusCode::FORBIDDEN);
    }
    let slowed = app
        .patch("/api/v1/me", &session, guess(5))
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(slowed.code(), "tooManyAttempts");
    assert!(slowed.headers.contains_key(header::RETRY_AFTER));
    // Even the right password waits its turn: the guesses bought nothing.
    app.patch(
        "/api/v1/me",
        &session,
        json!({"password": "taken-over-1", "currentPassword": "password-of-user"}),
    )
    .await
    .expect(StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(chrono::Duration::minutes(20));
    app.patch(
        "/api/v1/me",
        &session,
        json!({"password": "taken-over-1", "currentPassword": "password-of-user"}),
    )
    .await
    .expect(StatusCode::OK);
}

async fn admin_logs_in_with_a_cookie_and_a_bearer_token(app: TestApp) {
    let reply = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "admin", "password": ADMIN_PASSWORD}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["level"], "admin");
    assert!(reply.body.get("passwordHash").is_none());
    let cookie = reply.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http must not set Secure: {cookie}"
    );
    let token = reply.body["sessionToken"].as_str().unwrap();
    // The same session works as a cookie and as a bearer token.
    let by_cookie = app
        .send(
            axum::http::Request::get("/api/v1/me")
                .header(header::COOKIE, format!("other=1; conclave_session={token}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(by_cookie.body["login"], "admin");
    app.get("/api/v1/me", token).await.expect(StatusCode::OK);
    // Sessions expire.
    app.clock.advance(Duration::hours(169));
    assert_eq!(app.get("/api/v1/me", token).await.code(), "unauthenticated");
}

async fn wrong_passwords_are_refused_and_slowed_down(app: TestApp) {
    for _ in 0..5 {
        let reply = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "admin", "password": "nope-nope"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    }
    // The sixth attempt within the second is throttled, even with the right password.
    let reply = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "admin", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text
    );
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
    app.clock.advance(Duration::seconds(2));
    app.admin().await;
    // Unknown login names get the same answer as wrong passwords.
    let unknown = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "ghost", "password": "whatever1"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    assert_eq!(
        unknown.body["error"]["message"],
        "the login name or the password is wrong"
    );
}

async fn audience_cannot_administer(app: TestApp) {
    let (_, token) = app.user("ann", "audience").await;
    assert_eq!(
        app.get("/api/v1/users", &token).await.status,
        StatusCode::FORBIDDEN
    );
    let reply = app
        .post("/api/v1/users", Some(&token), json!({"login": "x1", "displayName": "X", "email": "x@example.org", "password": "password-1"}))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "forbidden");
    assert_eq!(
        app.get("/api/v1/settings", &token).await.status,
        StatusCode::FORBIDDEN
    );
    // Nothing was created.
    let admin = app.admin().await;
    let users = app
        .get("/api/v1/users", &admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(users.body.as_array().unwrap().len(), 2);
}

async fn admin_manages_accounts_and_levels(app: TestApp) {
    let admin = app.admin().await;
    let (id, _) = app.user("mia", "audience").await;
    let reply = app
        .patch(
            &format!("/api/v1/users/{id}"),
            &admin,
            json!({"level": "moderatorPlus"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["level"], "moderatorPlus");
    let users = app
        .get("/api/v1/users", &admin)
        .await
        .expect(StatusCode::OK);
    let mia = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "mia")
        .unwrap()
        .clone();
    assert_eq!(mia["level"], "moderatorPlus");
    let duplicate = app
        .post("/api/v1/users", Some(&admin), json!({"login": "mia", "displayName": "M", "email": "m@example.org", "password": "password-1"}))
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(duplicate.code(), "loginTaken");
    let unknown = app
        .patch(
            "/api/v1/users/no-such-id",
            &admin,
            json!({"level": "admin"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn the_last_administrator_cannot_be_removed(app: TestApp) {
    let admin = app.admin().await;
    let me = app.get("/api/v1/me", &admin).await.body;
    let id = me["id"].as_str().unwrap();
    for change in [json!({"level": "moderator"}), json!({"disabled": true})] {
        let reply = app
            .patch(&format!("/api/v1/users/{id}"), &admin, change)
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
        assert_eq!(reply.code(), "lastAdministrator");
    }
    let (_, _) = app.user("second", "admin").await;
    app.patch(
        &format!("/api/v1/users/{id}"),
        &admin,
        json!({"level": "moderator"}),
    )
    .await
    .expect(StatusCode::OK);
}

async fn disabled_accounts_cannot_log_in_and_lose_their_sessions(app: TestApp) {
    let admin = app.admin().await;
    let (id, token) = app.user("dan", "audience").await;
    app.patch(
        &format!("/api/v1/users/{id}"),
        &admin,
        json!({"disabled": true}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let reply = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "dan", "password": "password-of-user"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
}

async fn profile_edits_and_password_changes(app: TestApp) {
    let (_, token) = app.user("pia", "audience").await;
    let other_session = app.login("pia", "password-of-user").await;
    let reply = app
        .patch("/api/v1/me", &token, json!({"displayName": "Pia P.", "email": "pia@example.net", "timeZone": "America/New_York"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["displayName"], "Pia P.");
    assert_eq!(reply.body["timeZone"], "America/New_York");
    let missing_old = app
        .patch("/api/v1/me", &token, json!({"password": "new-password-1"}))
        .await;
    assert_eq!(missing_old.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing_old.body["error"]["field"], "currentPassword");
    let wrong_old = app
        .patch(
            "/api/v1/me",
            &token,
            json!({"password": "new-password-1", "currentPassword": "wrong-one"}),
        )
        .await;
    assert_eq!(wrong_old.status, StatusCode::FORBIDDEN);
    app.patch(
        "/api/v1/me",
        &token,
        json!({"password": "new-password-1", "currentPassword": "password-of-user"}),
    )
    .await
    .expect(StatusCode::OK);
    // This session lives on, the other one ended, and the new password works.
    app.get("/api/v1/me", &token).await.expect(StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/me", &other_session).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.login("pia", "new-password-1").await;
}

async fn logout_ends_the_session(app: TestApp) {
    let token = app.admin().await;
    let reply = app
        .call(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(
        reply.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        app.get("/api/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call(Method::GET, "/api/v1/me", None, None).await.code(),
        "unauthenticated"
    );
}

async fn bad_account_input_gets_clear_errors(app: TestApp) {
    let admin = app.admin().await;
    let cases = [
        (
            json!({"login": "a b", "displayName": "A", "email": "a@example.org", "password": "password-1"}),
            "login",
        ),
        (
            json!({"login": "ab", "displayName": "A", "email": "a@example.org\r\nBcc: x@example.org", "password": "password-1"}),
            "email",
        ),
        (
            json!({"login": "ab", "displayName": "A", "email": "a@example.org", "password": "short"}),
            "password",
        ),
        (
            json!({"login": "ab", "displayName": "A", "email": "a@example.org", "password": "password-1", "timeZone": "Mars/Base"}),
            "timeZone",
        ),
        (
            json!({"login": "ab", "displayName": "", "email": "a@example.org", "password": "password-1"}),
            "displayName",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post("/api/v1/users", Some(&admin), body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.text
        );
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.text);
    }
    let level = app
        .post("/api/v1/users", Some(&admin), json!({"login": "ab", "displayName": "A", "email": "a@example.org", "password": "password-1", "level": "root"}))
        .await;
    assert_eq!(level.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_field = app
        .post("/api/v1/users", Some(&admin), json!({"login": "ab", "displayName": "A", "email": "a@example.org", "password": "password-1", "isAdmin": true}))
        .await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    // None of these created an account.
    assert_eq!(
        app.get("/api/v1/users", &admin)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
