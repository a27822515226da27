//! Requests that write in several steps leave nothing half-done when a later step fails: the
//! database is made to refuse that step (a trigger), and what the earlier steps wrote is
//! checked to be gone — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{Value, json};
use support::TestApp;

on_both_backends!(
    invitees_are_not_stored_when_their_invitations_cannot_be_queued,
    a_repeat_whose_invitations_cannot_be_queued_schedules_nothing_and_keeps_the_entry,
    a_repeat_whose_archive_entry_cannot_leave_schedules_nothing,
    a_deletion_whose_cancellations_cannot_be_queued_keeps_the_conference,
    a_deletion_that_fails_sends_no_cancellation,
    a_profile_change_whose_notices_cannot_be_queued_changes_nothing,
);

async fn conference(app: &TestApp, token: &str, c: &Value) -> Value {
    app.get(
        &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
        token,
    )
    .await
    .expect(StatusCode::OK)
    .body
}

async fn listed(app: &TestApp, token: &str, view: &str) -> usize {
    app.get(&format!("/api/v1/conferences?view={view}"), token)
        .await
        .expect(StatusCode::OK)
        .body
        .as_array()
        .unwrap()
        .len()
}

async fn invitees_are_not_stored_when_their_invitations_cannot_be_queued(app: TestApp) {
    let token = app.admin().await;
    let c = app
        .schedule(&token, 60, 30, json!({"invitees": ["first@example.org"]}))
        .await;
    app.refuse("INSERT", "outbox").await;
    let path = format!(
        "/api/v1/conferences/{}/invitations",
        c["id"].as_str().unwrap()
    );
    let failed = app
        .post(&path, Some(&token), json!({"emails": ["late@example.org"]}))
        .await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    assert_eq!(
        conference(&app, &token, &c).await["invitees"],
        json!(["first@example.org"]),
        "the invitee was not kept without an invitation"
    );
    assert_eq!(app.rows("outbox").await, 1);
    // Once mail can be queued again, the same request does both.
    app.allow("INSERT", "outbox").await;
    app.post(&path, Some(&token), json!({"emails": ["late@example.org"]}))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(
        conference(&app, &token, &c).await["invitees"],
        json!(["first@example.org", "late@example.org"])
    );
    assert_eq!(app.rows("outbox").await, 2);
}

/// A conference with an invitee that ran and is archived; returns its repeat draft.
async fn archived_draft(app: &TestApp, token: &str) -> Value {
    app.schedule(token, 10, 30, json!({"invitees": ["r@example.org"]}))
        .await;
    app.clock.advance(Duration::minutes(41));
    app.tick().await;
    let entries = app
        .get("/api/v1/conferences?view=archive", token)
        .await
        .expect(StatusCode::OK)
        .body;
    let id = entries[0]["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/conferences/{id}/repeat"),
        Some(token),
        json!({}),
    )
    .await
    .expect(StatusCode::OK)
    .body["draft"]
        .clone()
}

async fn a_repeat_whose_invitations_cannot_be_queued_schedules_nothing_and_keeps_the_entry(
    app: TestApp,
) {
    let token = app.admin().await;
    let draft = archived_draft(&app, &token).await;
    app.refuse("INSERT", "outbox").await;
    let failed = app
        .post("/api/v1/conferences", Some(&token), draft.clone())
        .await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    assert_eq!(
        listed(&app, &token, "scheduled").await,
        0,
        "nothing scheduled"
    );
    assert_eq!(listed(&app, &token, "archive").await, 1, "the entry stayed");
    app.allow("INSERT", "outbox").await;
    app.post("/api/v1/conferences", Some(&token), draft)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(listed(&app, &token, "scheduled").await, 1);
    assert_eq!(listed(&app, &token, "archive").await, 0);
    assert_eq!(
        app.rows("outbox").await,
        2,
        "one invitation each time it was scheduled"
    );
}

async fn a_repeat_whose_archive_entry_cannot_leave_schedules_nothing(app: TestApp) {
    let token = app.admin().await;
    let draft = archived_draft(&app, &token).await;
    app.refuse("DELETE", "archive").await;
    let failed = app.post("/api/v1/conferences", Some(&token), draft).await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    assert_eq!(
        listed(&app, &token, "scheduled").await,
        0,
        "nothing scheduled"
    );
    assert_eq!(listed(&app, &token, "archive").await, 1);
    assert_eq!(
        app.rows("outbox").await,
        1,
        "no invitation for a meeting that is not there"
    );
}

async fn a_deletion_whose_cancellations_cannot_be_queued_keeps_the_conference(app: TestApp) {
    let token = app.admin().await;
    let c = app
        .schedule(
            &token,
            60,
            30,
            json!({"topic": "Kept", "invitees": ["x@example.org"]}),
        )
        .await;
    app.refuse("INSERT", "outbox").await;
    let path = format!(
        "/api/v1/conferences/{}?notify=true",
        c["id"].as_str().unwrap()
    );
    let failed = app.delete(&path, &token).await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    let kept = conference(&app, &token, &c).await;
    assert_eq!(kept["topic"], "Kept");
    assert_eq!(kept["meetingId"], c["meetingId"]);
    assert_eq!(kept["invitees"], json!(["x@example.org"]));
    app.allow("INSERT", "outbox").await;
    app.delete(&path, &token)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(listed(&app, &token, "scheduled").await, 0);
    assert_eq!(
        app.rows("outbox").await,
        2,
        "the invitation and the cancellation"
    );
}

async fn a_deletion_that_fails_sends_no_cancellation(app: TestApp) {
    let token = app.admin().await;
    let c = app
        .schedule(&token, 60, 30, json!({"invitees": ["x@example.org"]}))
        .await;
    app.refuse("DELETE", "conferences").await;
    let path = format!(
        "/api/v1/conferences/{}?notify=true",
        c["id"].as_str().unwrap()
    );
    let failed = app.delete(&path, &token).await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    assert_eq!(conference(&app, &token, &c).await["id"], c["id"]);
    assert_eq!(
        app.rows("outbox").await,
        1,
        "no cancellation of a meeting that is still on"
    );
}

async fn a_profile_change_whose_notices_cannot_be_queued_changes_nothing(app: TestApp) {
    let (_, token) = app.user("pia", "audience").await;
    let other_session = app.login("pia", "password-of-user").await;
    app.refuse("INSERT", "outbox").await;
    let failed = app
        .patch(
            "/api/v1/me",
            &token,
            json!({"displayName": "Pia P.", "email": "pia@example.net",
                   "password": "new-password-1", "currentPassword": "password-of-user"}),
        )
        .await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    let me = app
        .get("/api/v1/me", &token)
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(me["email"], "pia@example.org");
    assert_eq!(me["displayName"], "PIA");
    // The password and the other session are as they were.
    app.get("/api/v1/me", &other_session)
        .await
        .expect(StatusCode::OK);
    app.login("pia", "password-of-user").await;
    app.allow("INSERT", "outbox").await;
    app.patch(
        "/api/v1/me",
        &token,
        json!({"email": "pia@example.net", "password": "new-password-1", "currentPassword": "password-of-user"}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(app.rows("outbox").await, 2, "both addresses are told");
    assert_eq!(
        app.get("/api/v1/me", &other_session).await.status,
        StatusCode::UNAUTHORIZED
    );
}
