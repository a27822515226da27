//! The lifecycle in the service: attendance reported by the SFU, occurrences moving to the
//! archive, recurring conferences moving on, repeat and delete — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Duration;
use serde_json::{Value, json};
use support::TestApp;

on_both_backends!(
    an_ended_occurrence_moves_to_the_archive_with_attendance,
    a_recurring_conference_moves_on_and_stays_scheduled,
    repeating_an_archived_conference_schedules_it_again,
    room_events_need_a_service_token,
    unusable_media_ports_are_taken_and_ports_outside_the_range_refused,
    a_moderator_ending_the_meeting_ends_the_occurrence,
    restarting_loses_nothing,
    a_retried_room_report_is_applied_once,
    the_repeat_draft_of_a_meeting_shorter_than_a_minute_is_postable_unchanged,
    the_repeat_draft_of_a_series_that_ran_out_is_postable_unchanged,
    extending_a_running_meeting_moves_its_end_and_archives_it_once_at_the_real_end,
    moving_the_start_of_a_running_meeting_keeps_its_attendance,
    a_phone_caller_is_listed_in_the_attendance_as_a_phone_participant,
);

async fn report(
    app: &TestApp,
    conference: &Value,
    minutes_from_now: i64,
    participants: u32,
    event: Value,
) {
    app.post(
        "/api/v1/internal/room-events",
        Some(&app.service_token()),
        json!({"conference": conference["id"], "at": (app.now() + Duration::minutes(minutes_from_now)).to_rfc3339(),
               "participants": participants, "event": event}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}

async fn archive(app: &TestApp, token: &str) -> Vec<Value> {
    app.get("/api/v1/conferences?view=archive", token)
        .await
        .expect(StatusCode::OK)
        .body
        .as_array()
        .unwrap()
        .clone()
}

async fn an_ended_occurrence_moves_to_the_archive_with_attendance(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 60, json!({"topic": "Retro"})).await;
    app.clock.advance(Duration::minutes(2));
    app.tick().await;
    report(
        &app,
        &c,
        0,
        1,
        json!({"kind": "joined", "identity": "guest:1", "displayName": "Gus"}),
    )
    .await;
    report(
        &app,
        &c,
        5,
        2,
        json!({"kind": "joined", "identity": "account:x", "displayName": "Xena"}),
    )
    .await;
    report(
        &app,
        &c,
        45,
        1,
        json!({"kind": "left", "identity": "guest:1"}),
    )
    .await;
    report(
        &app,
        &c,
        50,
        0,
        json!({"kind": "left", "identity": "account:x"}),
    )
    .await;
    let shown = app
        .get(
            &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
            &token,
        )
        .await
        .body;
    assert_eq!(shown["phase"], "Ready");
    assert!(archive(&app, &token).await.is_empty());
    app.clock.advance(Duration::minutes(61));
    app.tick().await;
    assert_eq!(
        app.get("/api/v1/conferences", &token)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let entries = archive(&app, &token).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["topic"], "Retro");
    assert_eq!(entry["archived"], true);
    assert_eq!(entry["durationMinutes"], 60);
    let attendance = entry["attendance"].as_array().unwrap();
    assert_eq!(attendance.len(), 2);
    assert_eq!(attendance[0]["displayName"], "Gus");
    assert_eq!(attendance[0]["kind"], "guest");
    assert_eq!(attendance[0]["via"], "web");
    assert_eq!(attendance[0]["minutes"], 45);
    assert_eq!(attendance[1]["kind"], "account");
    assert_eq!(attendance[1]["via"], "web");
    assert_eq!(attendance[1]["minutes"], 45);
    // The meeting ID is free again once the conference ended.
    app.schedule(&token, 10, 30, json!({"meetingId": c["meetingId"]}))
        .await;
    // The entry can be shown and deleted.
    let path = format!("/api/v1/conferences/{}", entry["id"].as_str().unwrap());
    assert_eq!(
        app.get(&path, &token).await.expect(StatusCode::OK).body["archived"],
        true
    );
    app.delete(&path, &token)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(archive(&app, &token).await.is_empty());
}

async fn a_recurring_conference_moves_on_and_stays_scheduled(app: TestApp) {
    let token = app.admin().await;
    let c = app
        .schedule(&token, 10, 30, json!({"recurrence": "FREQ=DAILY;COUNT=2"}))
        .await;
    app.clock.advance(Duration::minutes(41));
    app.tick().await;
    let log = app.get("/api/v1/conferences", &token).await.body;
    let next = &log.as_array().unwrap()[0];
    assert_eq!(next["id"], c["id"]);
    assert_eq!(next["status"], "offline");
    let first = chrono::DateTime::parse_from_rfc3339(c["start"].as_str().unwrap()).unwrap();
    let second =
        chrono::DateTime::parse_from_rfc3339(next["occurrence"]["start"].as_str().unwrap())
            .unwrap();
    assert_eq!(second - first, Duration::days(1));
    assert_eq!(archive(&app, &token).await.len(), 1);
    // After the last occurrence it is gone from the log, both occurrences archived.
    app.clock.advance(Duration::days(1));
    app.tick().await;
    assert!(
        app.get("/api/v1/conferences", &token)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(archive(&app, &token).await.len(), 2);
}

async fn repeating_an_archived_conference_schedules_it_again(app: TestApp) {
    let token = app.admin().await;
    app.schedule(
        &token,
        10,
        30,
        json!({"topic": "Review", "maxParticipants": 8, "invitees": ["r@example.org"]}),
    )
    .await;
    app.clock.advance(Duration::minutes(41));
    app.tick().await;
    let entry = archive(&app, &token).await.remove(0);
    let draft = app
        .post(
            &format!(
                "/api/v1/conferences/{}/repeat",
                entry["id"].as_str().unwrap()
            ),
            Some(&token),
            json!({}),
        )
        .await
        .expect(StatusCode::OK)
        .body["draft"]
        .clone();
    assert_eq!(draft["topic"], "Review");
    assert_eq!(draft["maxParticipants"], 8);
    assert_eq!(draft["durationMinutes"], 30);
    assert_eq!(draft["invitees"], json!(["r@example.org"]));
    assert_eq!(draft["repeatOf"], entry["id"]);
    // A week later at the same local time.
    assert_eq!(draft["start"], "2026-06-08T10:10");
    let scheduled = app
        .post("/api/v1/conferences", Some(&token), draft)
        .await
        .expect(StatusCode::CREATED)
        .body;
    assert_eq!(scheduled["topic"], "Review");
    assert!(
        archive(&app, &token).await.is_empty(),
        "the entry left the archive"
    );
    assert_eq!(
        app.get("/api/v1/conferences", &token)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (_, other) = app.user("oscar", "audience").await;
    let foreign = app
        .post(
            &format!(
                "/api/v1/conferences/{}/repeat",
                scheduled["id"].as_str().unwrap()
            ),
            Some(&other),
            json!({}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

async fn room_events_need_a_service_token(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 30, json!({})).await;
    let body = json!({"conference": c["id"], "at": app.now().to_rfc3339(), "participants": 5, "event": {"kind": "ended"}});
    assert_eq!(
        app.post("/api/v1/internal/room-events", None, body.clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post("/api/v1/internal/room-events", Some(&token), body.clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let unknown = json!({"conference": "nope", "at": app.now().to_rfc3339(), "participants": 0, "event": {"kind": "ended"}});
    assert_eq!(
        app.post(
            "/api/v1/internal/room-events",
            Some(&app.service_token()),
            unknown
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let shown = app
        .get(
            &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
            &token,
        )
        .await
        .body;
    assert_eq!(shown["participants"], 0);
}

async fn unusable_media_ports_are_taken_and_ports_outside_the_range_refused(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 30, json!({})).await;
    report(
        &app,
        &c,
        0,
        2,
        json!({"kind": "mediaPorts", "pod": "sfu-0", "first": 40000, "last": 40019, "unusable": [40003]}),
    )
    .await;
    let outside = json!({"conference": c["id"], "at": app.now().to_rfc3339(), "participants": 2,
        "event": {"kind": "mediaPorts", "pod": "sfu-0", "first": 40000, "last": 40019, "unusable": [50000]}});
    let refused = app
        .post(
            "/api/v1/internal/room-events",
            Some(&app.service_token()),
            outside,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.body["error"]["code"], "validation",
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"]["field"], "event.unusable");
    let shown = app
        .get(
            &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
            &token,
        )
        .await
        .body;
    assert_eq!(shown["participants"], 2);
}

async fn a_moderator_ending_the_meeting_ends_the_occurrence(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 30, json!({})).await;
    report(
        &app,
        &c,
        0,
        1,
        json!({"kind": "joined", "identity": "guest:1", "displayName": "G"}),
    )
    .await;
    report(&app, &c, 1, 0, json!({"kind": "ended"})).await;
    app.clock.advance(Duration::minutes(3));
    app.tick().await;
    assert!(
        app.get("/api/v1/conferences", &token)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    let entries = archive(&app, &token).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["attendance"][0]["minutes"], 1);
}

async fn restarting_loses_nothing(app: TestApp) {
    let token = app.admin().await;
    let (_, ann) = app.user("ann", "audience").await;
    let c = app.schedule(&ann, 10, 30, json!({"topic": "Kept"})).await;
    let old = app.schedule(&ann, 2, 5, json!({"topic": "Archived"})).await;
    app.clock.advance(Duration::minutes(8));
    app.tick().await;
    assert_eq!(archive(&app, &ann).await.len(), 1);
    let app = app.restart().await;
    // Sessions, accounts, conferences and the archive survived.
    assert_eq!(
        app.get("/api/v1/me", &ann)
            .await
            .expect(StatusCode::OK)
            .body["login"],
        "ann"
    );
    assert_eq!(
        app.get("/api/v1/users", &token)
            .await
            .expect(StatusCode::OK)
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let log = app.get("/api/v1/conferences", &ann).await.body;
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["id"], c["id"]);
    assert_eq!(log[0]["meetingId"], c["meetingId"]);
    let entries = archive(&app, &ann).await;
    assert_eq!(entries[0]["topic"], old["topic"]);
    app.login("ann", "password-of-user").await;
}

/// Posts a room report as an SFU does, with an `Idempotency-Key`.
async fn report_with_key(app: &TestApp, key: &str, body: &Value) -> StatusCode {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/internal/room-events")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", app.service_token()),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    app.send(request).await.status
}

async fn a_retried_room_report_is_applied_once(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 60, json!({"topic": "Retro"})).await;
    app.clock.advance(Duration::minutes(2));
    app.tick().await;
    let at = |minutes: i64| (app.now() + Duration::minutes(minutes)).to_rfc3339();
    let gus_joins = json!({"conference": c["id"], "at": at(0), "participants": 1,
        "event": {"kind": "joined", "identity": "guest:1", "displayName": "Gus"}});
    assert_eq!(
        report_with_key(&app, "sfu-0-1-0", &gus_joins).await,
        StatusCode::NO_CONTENT
    );
    let gus_leaves = json!({"conference": c["id"], "at": at(20), "participants": 0,
        "event": {"kind": "left", "identity": "guest:1"}});
    assert_eq!(
        report_with_key(&app, "sfu-0-1-1", &gus_leaves).await,
        StatusCode::NO_CONTENT
    );
    // The SFU never saw the first answer and sends the join again, later: applied again it
    // would close Gus's attendance and open a second one that never ends.
    assert_eq!(
        report_with_key(&app, "sfu-0-1-0", &gus_joins).await,
        StatusCode::NO_CONTENT
    );
    // Applied again, the count would read 1 (the join's) instead of 0 (the leave's).
    assert_eq!(
        app.get(
            &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
            &token
        )
        .await
        .body["participants"],
        0
    );
    // A bad key is refused with a reason, and applies nothing.
    let long = "k".repeat(201);
    assert_eq!(
        report_with_key(&app, &long, &gus_joins).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A report that cannot be applied leaves its key free for the retry.
    let unknown =
        json!({"conference": "nope", "at": at(1), "participants": 0, "event": {"kind": "ended"}});
    assert_eq!(
        report_with_key(&app, "sfu-0-1-2", &unknown).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        report_with_key(&app, "sfu-0-1-2", &unknown).await,
        StatusCode::NOT_FOUND
    );

    app.clock.advance(Duration::minutes(61));
    app.tick().await;
    let entries = archive(&app, &token).await;
    assert_eq!(entries.len(), 1);
    let attendance = entries[0]["attendance"].as_array().unwrap();
    assert_eq!(attendance.len(), 1, "{attendance:?}");
    assert_eq!(attendance[0]["displayName"], "Gus");
    assert_eq!(attendance[0]["minutes"], 20);
}

async fn the_repeat_draft_of_a_meeting_shorter_than_a_minute_is_postable_unchanged(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 30, json!({"topic": "Short"})).await;
    app.clock.advance(Duration::minutes(2));
    app.tick().await;
    report(
        &app,
        &c,
        0,
        1,
        json!({"kind": "joined", "identity": "guest:1", "displayName": "G"}),
    )
    .await;
    report(&app, &c, 0, 0, json!({"kind": "ended"})).await;
    app.clock.advance(Duration::seconds(30));
    app.tick().await;
    let entry = archive(&app, &token).await.remove(0);
    assert_eq!(entry["durationMinutes"], 0, "it lasted 30 seconds");
    let draft = app
        .post(
            &format!(
                "/api/v1/conferences/{}/repeat",
                entry["id"].as_str().unwrap()
            ),
            Some(&token),
            json!({}),
        )
        .await
        .expect(StatusCode::OK)
        .body["draft"]
        .clone();
    assert_eq!(draft["durationMinutes"], 1);
    let scheduled = app
        .post("/api/v1/conferences", Some(&token), draft)
        .await
        .expect(StatusCode::CREATED)
        .body;
    assert_eq!(scheduled["topic"], "Short");
    assert_eq!(scheduled["durationMinutes"], 1);
}

async fn the_repeat_draft_of_a_series_that_ran_out_is_postable_unchanged(app: TestApp) {
    let token = app.admin().await;
    app.schedule(
        &token,
        10,
        30,
        json!({"topic": "Sprint", "recurrence": "FREQ=DAILY;UNTIL=20260602T235959Z"}),
    )
    .await;
    app.clock.advance(Duration::minutes(41));
    app.tick().await;
    let entry = archive(&app, &token).await.remove(0);
    assert_eq!(entry["recurrence"], "FREQ=DAILY;UNTIL=20260602T235959Z");
    let draft = app
        .post(
            &format!(
                "/api/v1/conferences/{}/repeat",
                entry["id"].as_str().unwrap()
            ),
            Some(&token),
            json!({}),
        )
        .await
        .expect(StatusCode::OK)
        .body["draft"]
        .clone();
    // A week later the rule has no occurrence left: the draft repeats the meeting once.
    assert_eq!(draft["recurrence"], Value::Null);
    let scheduled = app
        .post("/api/v1/conferences", Some(&token), draft)
        .await
        .expect(StatusCode::CREATED)
        .body;
    assert_eq!(scheduled["topic"], "Sprint");
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

async fn extending_a_running_meeting_moves_its_end_and_archives_it_once_at_the_real_end(
    app: TestApp,
) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 30, json!({"topic": "Long"})).await;
    let start = time(&c["start"]);
    app.clock.advance(Duration::minutes(2));
    app.tick().await;
    report(
        &app,
        &c,
        0,
        1,
        json!({"kind": "joined", "identity": "guest:1", "displayName": "Gus"}),
    )
    .await;
    app.tick().await;
    app.clock.advance(Duration::minutes(10));
    let path = format!("/api/v1/conferences/{}", c["id"].as_str().unwrap());
    let edited = app
        .patch(&path, &token, json!({"durationMinutes": 60}))
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(edited["phase"], "Active");
    assert_eq!(
        time(&edited["occurrence"]["end"]),
        start + Duration::minutes(60)
    );
    assert!(archive(&app, &token).await.is_empty(), "still running");
    // Past the old end, inside the new one: still running, still nothing archived.
    app.clock.advance(Duration::minutes(25));
    app.tick().await;
    assert!(archive(&app, &token).await.is_empty());
    let shown = app.get(&path, &token).await.expect(StatusCode::OK).body;
    assert_eq!(shown["participants"], 1);
    assert_eq!(shown["status"], "online");
    // The guest leaves 50 minutes in; the real end archives the occurrence once.
    report(
        &app,
        &c,
        15,
        0,
        json!({"kind": "left", "identity": "guest:1"}),
    )
    .await;
    app.clock.advance(Duration::minutes(26));
    app.tick().await;
    app.tick().await;
    let entries = archive(&app, &token).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(time(&entries[0]["start"]), start);
    assert_eq!(time(&entries[0]["end"]), start + Duration::minutes(60));
    assert_eq!(entries[0]["durationMinutes"], 60);
    let attendance = entries[0]["attendance"].as_array().unwrap();
    assert_eq!(attendance.len(), 1);
    assert_eq!(attendance[0]["minutes"], 50);
}

async fn moving_the_start_of_a_running_meeting_keeps_its_attendance(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 30, json!({"topic": "Moved"})).await;
    let start = time(&c["start"]);
    app.clock.advance(Duration::minutes(2));
    app.tick().await;
    report(
        &app,
        &c,
        0,
        1,
        json!({"kind": "joined", "identity": "guest:1", "displayName": "Gus"}),
    )
    .await;
    app.tick().await;
    app.clock.advance(Duration::minutes(3));
    let later = start + Duration::minutes(5);
    let path = format!("/api/v1/conferences/{}", c["id"].as_str().unwrap());
    let edited = app
        .patch(&path, &token, json!({"start": later.to_rfc3339()}))
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(time(&edited["occurrence"]["start"]), later);
    assert_eq!(edited["participants"], 1);
    assert!(archive(&app, &token).await.is_empty(), "still running");
    report(
        &app,
        &c,
        20,
        0,
        json!({"kind": "left", "identity": "guest:1"}),
    )
    .await;
    app.clock.advance(Duration::minutes(40));
    app.tick().await;
    let entries = archive(&app, &token).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(time(&entries[0]["start"]), later);
    let attendance = entries[0]["attendance"].as_array().unwrap();
    assert_eq!(
        attendance.len(),
        1,
        "the guest's presence moved with the meeting"
    );
    assert_eq!(attendance[0]["displayName"], "Gus");
    assert_eq!(attendance[0]["minutes"], 23);
}

async fn a_phone_caller_is_listed_in_the_attendance_as_a_phone_participant(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 2, 60, json!({"topic": "Call"})).await;
    app.clock.advance(Duration::minutes(2));
    app.tick().await;
    // The SIP gateway joins for the caller; the SFU reports the token's identity and name.
    let joined = app
        .post(
            "/api/v1/join",
            Some(&app.service_token_of("sip:gateway")),
            json!({"meetingId": c["meetingId"], "password": c["password"],
                   "phone": {"callerId": "+4930123451234", "address": "203.0.113.9"}}),
        )
        .await
        .expect(StatusCode::OK)
        .body;
    let identity = joined["identity"].as_str().unwrap();
    report(
        &app,
        &c,
        1,
        1,
        json!({"kind": "joined", "identity": identity, "displayName": joined["displayName"]}),
    )
    .await;
    report(
        &app,
        &c,
        3,
        2,
        json!({"kind": "joined", "identity": "guest:1", "displayName": "Gus"}),
    )
    .await;
    report(
        &app,
        &c,
        31,
        1,
        json!({"kind": "left", "identity": identity}),
    )
    .await;
    report(
        &app,
        &c,
        40,
        0,
        json!({"kind": "left", "identity": "guest:1"}),
    )
    .await;
    app.clock.advance(Duration::minutes(61));
    app.tick().await;
    let entries = archive(&app, &token).await;
    assert_eq!(entries.len(), 1);
    let attendance = entries[0]["attendance"].as_array().unwrap();
    assert_eq!(attendance.len(), 2, "{attendance:?}");
    assert_eq!(attendance[0]["displayName"], "Phone ···1234");
    assert_eq!(attendance[0]["kind"], "guest");
    assert_eq!(attendance[0]["via"], "phone");
    assert_eq!(attendance[0]["minutes"], 30);
    assert_eq!(attendance[1]["displayName"], "Gus");
    assert_eq!(attendance[1]["via"], "web");
}
