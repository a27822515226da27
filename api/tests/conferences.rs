//! Scheduling, the conference log, editing, deleting, rights and bad input — on SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use support::TestApp;

on_both_backends!(
    scheduling_fills_in_meeting_id_and_password,
    local_times_are_read_in_the_conference_time_zone,
    ad_hoc_conferences_start_now_for_thirty_minutes,
    permanent_rooms_need_level_moderator,
    the_log_shows_online_and_offline,
    admins_may_list_everyones_conferences,
    edits_raise_the_sequence_and_keep_the_rest,
    deleting_removes_a_conference,
    nobody_touches_someone_elses_conference,
    meeting_ids_are_digits_and_unique,
    bad_schedules_are_refused_and_nothing_is_written,
    malformed_bodies_get_the_error_shape,
    audience_scheduling_can_be_switched_off,
    the_calendar_event_describes_the_conference,
    state_changing_requests_without_json_or_the_portal_header_are_refused,
);

fn time(value: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

async fn count(app: &TestApp, token: &str) -> usize {
    app.get("/api/v1/conferences", token)
        .await
        .expect(StatusCode::OK)
        .body
        .as_array()
        .unwrap()
        .len()
}

async fn scheduling_fills_in_meeting_id_and_password(app: TestApp) {
    let (_, token) = app.user("olga", "audience").await;
    let c = app
        .schedule(
            &token,
            120,
            45,
            json!({"invitees": ["a@example.org", "A@example.org", "b@example.org"]}),
        )
        .await;
    let meeting_id = c["meetingId"].as_str().unwrap();
    assert_eq!(meeting_id.len(), 9);
    assert!(meeting_id.bytes().all(|b| b.is_ascii_digit()));
    let password = c["password"].as_str().unwrap();
    assert_eq!(password.len(), 6);
    assert_eq!(c["allowJoinWithoutOwner"], true);
    assert_eq!(c["media"], "audioVideo");
    assert_eq!(c["durationMinutes"], 45);
    assert_eq!(c["status"], "offline");
    assert_eq!(c["phase"], "Scheduled");
    assert_eq!(c["sequence"], 0);
    assert_eq!(c["invitees"], json!(["a@example.org", "b@example.org"]));
    assert_eq!(
        c["joinUrl"],
        format!("http://127.0.0.1:8080/join/{meeting_id}")
    );
    // Without --sip-address and --dial-in-number there is no dial-in to show.
    assert!(c["dialIn"].is_null(), "{}", c["dialIn"]);
    // Shown in the owner's zone (Europe/Berlin: UTC+2 in June).
    assert!(
        c["start"].as_str().unwrap().ends_with("+02:00"),
        "{}",
        c["start"]
    );
    let fetched = app
        .get(
            &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
            &token,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(fetched.body["meetingId"], c["meetingId"]);
}

async fn local_times_are_read_in_the_conference_time_zone(app: TestApp) {
    let token = app.admin().await;
    let reply = app
        .post(
            "/api/v1/conferences",
            Some(&token),
            json!({"topic": "Standup", "start": "2026-06-03T09:30", "end": "2026-06-03T09:45", "timeZone": "America/New_York",
                   "recurrence": "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        time(&reply.body["start"]),
        "2026-06-03T13:30:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(reply.body["recurrence"], "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR");
    assert_eq!(reply.body["timeZone"], "America/New_York");
}

async fn ad_hoc_conferences_start_now_for_thirty_minutes(app: TestApp) {
    let token = app.admin().await;
    let reply = app
        .call(
            Method::POST,
            "/api/v1/conferences/adhoc",
            Some(&token),
            None,
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(reply.body["topic"], "Ad hoc conference");
    assert_eq!(reply.body["kind"], "adHoc");
    assert_eq!(reply.body["status"], "online");
    assert_eq!(time(&reply.body["start"]), app.now());
    assert_eq!(time(&reply.body["end"]), app.now() + Duration::minutes(30));
    assert_eq!(reply.body["meetingId"].as_str().unwrap().len(), 9);
    let named = app
        .post(
            "/api/v1/conferences/adhoc",
            Some(&token),
            json!({"topic": "Incident"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(named.body["topic"], "Incident");
    assert_ne!(named.body["meetingId"], reply.body["meetingId"]);
}

async fn permanent_rooms_need_level_moderator(app: TestApp) {
    let (_, audience) = app.user("aud", "audience").await;
    let refused = app
        .post(
            "/api/v1/conferences",
            Some(&audience),
            json!({"topic": "Lobby", "permanent": true}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (_, moderator) = app.user("mod", "moderator").await;
    let room = app
        .post(
            "/api/v1/conferences",
            Some(&moderator),
            json!({"topic": "Lobby", "permanent": true}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(room.body["kind"], "permanent");
    assert_eq!(room.body["status"], "online");
    assert!(room.body["start"].is_null());
    let with_time = app
        .post(
            "/api/v1/conferences",
            Some(&moderator),
            json!({"topic": "Lobby", "permanent": true, "start": "2026-07-01T10:00"}),
        )
        .await;
    assert_eq!(with_time.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn the_log_shows_online_and_offline(app: TestApp) {
    let token = app.admin().await;
    let soon = app.schedule(&token, 3, 30, json!({"topic": "Soon"})).await;
    let later = app
        .schedule(&token, 600, 30, json!({"topic": "Later"}))
        .await;
    let log = app
        .get("/api/v1/conferences?view=scheduled", &token)
        .await
        .expect(StatusCode::OK)
        .body;
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    // Ordered by next occurrence; inside the lead time means online.
    assert_eq!(entries[0]["id"], soon["id"]);
    assert_eq!(entries[0]["status"], "online");
    assert_eq!(entries[1]["id"], later["id"]);
    assert_eq!(entries[1]["status"], "offline");
    app.clock.advance(Duration::minutes(596));
    let log = app.get("/api/v1/conferences", &token).await.body;
    let later_now = log
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == later["id"])
        .unwrap()
        .clone();
    assert_eq!(later_now["status"], "online");
}

async fn admins_may_list_everyones_conferences(app: TestApp) {
    let (_, ann) = app.user("ann", "audience").await;
    let (_, bob) = app.user("bob", "audience").await;
    app.schedule(&ann, 60, 30, json!({})).await;
    app.schedule(&bob, 60, 30, json!({})).await;
    assert_eq!(count(&app, &ann).await, 1);
    let admin = app.admin().await;
    assert_eq!(count(&app, &admin).await, 0);
    let all = app
        .get("/api/v1/conferences?all=true", &admin)
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let owners: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["owner"]["login"].as_str().unwrap())
        .collect();
    assert!(owners.contains(&"ann") && owners.contains(&"bob"));
    assert_eq!(
        app.get("/api/v1/conferences?all=true", &ann).await.status,
        StatusCode::FORBIDDEN
    );
    let bad_view = app.get("/api/v1/conferences?view=everything", &ann).await;
    assert_eq!(bad_view.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_view.code(), "malformedBody");
}

async fn edits_raise_the_sequence_and_keep_the_rest(app: TestApp) {
    let token = app.admin().await;
    let c = app
        .schedule(
            &token,
            60,
            30,
            json!({"maxParticipants": 10, "recurrence": "FREQ=WEEKLY"}),
        )
        .await;
    let id = c["id"].as_str().unwrap();
    let edited = app
        .patch(
            &format!("/api/v1/conferences/{id}"),
            &token,
            json!({"topic": "Renamed", "maxParticipants": null, "media": "audioOnly"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(edited.body["topic"], "Renamed");
    assert_eq!(edited.body["sequence"], 1);
    assert!(edited.body["maxParticipants"].is_null());
    assert_eq!(edited.body["media"], "audioOnly");
    assert_eq!(edited.body["recurrence"], "FREQ=WEEKLY");
    assert_eq!(edited.body["meetingId"], c["meetingId"]);
    assert_eq!(edited.body["start"], c["start"]);
    let moved = app
        .patch(
            &format!("/api/v1/conferences/{id}"),
            &token,
            json!({"start": (app.now() + Duration::hours(5)).to_rfc3339()}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(moved.body["sequence"], 2);
    assert_eq!(moved.body["durationMinutes"], 30);
    // An edit that changes nothing keeps the sequence.
    let same = app
        .patch(
            &format!("/api/v1/conferences/{id}"),
            &token,
            json!({"topic": "Renamed"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(same.body["sequence"], 2);
}

async fn deleting_removes_a_conference(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 60, 30, json!({})).await;
    let path = format!("/api/v1/conferences/{}", c["id"].as_str().unwrap());
    app.delete(&path, &token)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &token).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&path, &token).await.status,
        StatusCode::NOT_FOUND
    );
    // Its meeting ID is free again.
    app.schedule(&token, 60, 30, json!({"meetingId": c["meetingId"]}))
        .await;
}

async fn nobody_touches_someone_elses_conference(app: TestApp) {
    let (_, ann) = app.user("ann", "audience").await;
    let (_, eve) = app.user("eve", "moderatorPlus").await;
    let c = app.schedule(&ann, 60, 30, json!({})).await;
    let path = format!("/api/v1/conferences/{}", c["id"].as_str().unwrap());
    assert_eq!(app.get(&path, &eve).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.patch(&path, &eve, json!({"topic": "Mine now"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.delete(&path, &eve).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&format!("{path}/calendar.ics"), &eve).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&path, &ann).await.body["topic"], "Planning");
    // Administrators may.
    let admin = app.admin().await;
    app.patch(&path, &admin, json!({"topic": "Fixed by admin"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/conferences/unknown-id", &ann).await.code(),
        "notFound"
    );
}

async fn meeting_ids_are_digits_and_unique(app: TestApp) {
    let token = app.admin().await;
    let c = app
        .schedule(
            &token,
            60,
            30,
            json!({"meetingId": "123456789", "password": "4321"}),
        )
        .await;
    assert_eq!(c["meetingId"], "123456789");
    assert_eq!(c["password"], "4321");
    let start = (app.now() + Duration::hours(2)).to_rfc3339();
    let taken = app
        .post("/api/v1/conferences", Some(&token), json!({"topic": "Dup", "start": start, "durationMinutes": 30, "meetingId": "123456789"}))
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.code(), "meetingIdTaken");
    for bad in ["12345678a", "12-3", "123"] {
        let reply = app
            .post(
                "/api/v1/conferences",
                Some(&token),
                json!({"topic": "Bad", "start": start, "durationMinutes": 30, "meetingId": bad}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.text
        );
        assert_eq!(reply.body["error"]["field"], "meetingId");
    }
    let bad_password = app
        .post(
            "/api/v1/conferences",
            Some(&token),
            json!({"topic": "Bad", "start": start, "durationMinutes": 30, "password": "abc"}),
        )
        .await;
    assert_eq!(bad_password.body["error"]["field"], "password");
    // An edit onto a taken ID is refused too.
    let other = app.schedule(&token, 60, 30, json!({})).await;
    let reply = app
        .patch(
            &format!("/api/v1/conferences/{}", other["id"].as_str().unwrap()),
            &token,
            json!({"meetingId": "123456789", "topic": "X"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let unchanged = app
        .get(
            &format!("/api/v1/conferences/{}", other["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(
        unchanged.body["topic"], "Planning",
        "a refused edit must not be half-written"
    );
    assert_eq!(count(&app, &token).await, 2);
}

async fn bad_schedules_are_refused_and_nothing_is_written(app: TestApp) {
    let token = app.admin().await;
    let start = app.now() + Duration::hours(1);
    let s = start.to_rfc3339();
    let cases = [
        (
            json!({"topic": "T", "start": s, "end": (start - Duration::minutes(1)).to_rfc3339()}),
            "end",
        ),
        (
            json!({"topic": "T", "start": s, "durationMinutes": 1441}),
            "durationMinutes",
        ),
        (
            json!({"topic": "T", "start": s, "end": (start + Duration::hours(25)).to_rfc3339()}),
            "durationMinutes",
        ),
        (
            json!({"topic": "T", "start": (app.now() - Duration::hours(1)).to_rfc3339(), "durationMinutes": 30}),
            "start",
        ),
        (
            json!({"topic": "T", "start": "2040-01-01T10:00:00Z", "durationMinutes": 30}),
            "start",
        ),
        (
            json!({"topic": "T", "start": "tomorrow", "durationMinutes": 30}),
            "start",
        ),
        (
            json!({"topic": "T", "start": s, "durationMinutes": 30, "recurrence": "FREQ=FORTNIGHTLY"}),
            "recurrence",
        ),
        (
            json!({"topic": "T", "start": s, "durationMinutes": 30, "recurrence": "FREQ=MINUTELY"}),
            "recurrence",
        ),
        (
            json!({"topic": "T", "start": s, "durationMinutes": 30, "timeZone": "Europe/Atlantis"}),
            "timeZone",
        ),
        (
            json!({"topic": "T", "start": s, "durationMinutes": 30, "invitees": ["ok@example.org", "not an address"]}),
            "invitees",
        ),
        (
            json!({"topic": "T", "start": s, "durationMinutes": 30, "maxParticipants": 1}),
            "maxParticipants",
        ),
        (
            json!({"topic": "", "start": s, "durationMinutes": 30}),
            "topic",
        ),
        (json!({"topic": "T", "start": s}), "end"),
        (
            json!({"topic": "T", "start": s, "end": (start + Duration::hours(1)).to_rfc3339(), "durationMinutes": 60}),
            "durationMinutes",
        ),
        (
            json!({"topic": "T", "start": "2026-10-25T02:30", "durationMinutes": 30, "timeZone": "Europe/Berlin", "end": null}),
            "start",
        ),
    ];
    for (body, field) in cases {
        let reply = app
            .post("/api/v1/conferences", Some(&token), body.clone())
            .await;
        if field == "start" && body["start"] == "2026-10-25T02:30" {
            // An ambiguous local time (clocks go back) is accepted as its first instance.
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            continue;
        }
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.body["error"]["code"], "validation");
        assert_eq!(
            reply.body["error"]["field"], field,
            "{body}: {}",
            reply.text
        );
    }
    let gap = app
        .post("/api/v1/conferences", Some(&token), json!({"topic": "T", "start": "2027-03-28T02:30", "durationMinutes": 30, "timeZone": "Europe/Berlin"}))
        .await;
    assert_eq!(gap.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        gap.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(
        count(&app, &token).await,
        1,
        "only the accepted ambiguous time was stored"
    );
}

async fn malformed_bodies_get_the_error_shape(app: TestApp) {
    let token = app.admin().await;
    let send = |body: &'static str, content_type: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/conferences")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    };
    let malformed = app.send(send("{\"topic\": ", "application/json")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "malformedBody");
    let unknown = app
        .send(send(
            "{\"topic\": \"T\", \"colour\": \"red\"}",
            "application/json",
        ))
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    // A form's content type is what another site can send: refused before anything is read.
    let wrong_type = app.send(send("{\"topic\": \"T\"}", "text/plain")).await;
    assert_eq!(wrong_type.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong_type.code(), "csrfHeaderMissing");
    let mut marked = send("{\"topic\": \"T\"}", "text/plain");
    marked
        .headers_mut()
        .insert("x-conclave-request", "1".parse().unwrap());
    let wrong_type = app.send(marked).await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = format!("{{\"topic\": \"{}\"}}", "x".repeat(200_000));
    let too_large = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/conferences")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(huge))
                .unwrap(),
        )
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.code(), "payloadTooLarge");
    let no_route = app.get("/api/v1/nothing-here", &token).await;
    assert_eq!(no_route.status, StatusCode::NOT_FOUND);
    assert_eq!(no_route.code(), "notFound");
    assert_eq!(count(&app, &token).await, 0);
}

async fn audience_scheduling_can_be_switched_off(app: TestApp) {
    let admin = app.admin().await;
    let (_, ann) = app.user("ann", "audience").await;
    let (_, mod_token) = app.user("mo", "moderator").await;
    app.patch(
        "/api/v1/settings",
        &admin,
        json!({"audienceMaySchedule": false}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/settings", &admin).await.body["audienceMaySchedule"],
        false
    );
    let start = (app.now() + Duration::hours(1)).to_rfc3339();
    let refused = app
        .post(
            "/api/v1/conferences",
            Some(&ann),
            json!({"topic": "T", "start": start, "durationMinutes": 30}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.call(Method::POST, "/api/v1/conferences/adhoc", Some(&ann), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    app.schedule(&mod_token, 60, 30, json!({})).await;
}

async fn the_calendar_event_describes_the_conference(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 60, 30, json!({"topic": "Board; Q3, review", "recurrence": "FREQ=WEEKLY;COUNT=4", "invitees": ["x@example.org"]})).await;
    let reply = app
        .get(
            &format!(
                "/api/v1/conferences/{}/calendar.ics",
                c["id"].as_str().unwrap()
            ),
            &token,
        )
        .await
        .expect(StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let ics = reply.text.replace("\r\n ", "");
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"));
    assert!(ics.contains(&format!("UID:{}@conclave\r\n", c["id"].as_str().unwrap())));
    assert!(ics.contains("SEQUENCE:0\r\n"));
    assert!(
        ics.contains("DTSTART;TZID=Europe/Berlin:20260601T110000\r\n"),
        "{ics}"
    );
    assert!(ics.contains("RRULE:FREQ=WEEKLY;COUNT=4\r\n"));
    assert!(ics.contains("SUMMARY:Board\\; Q3\\, review\r\n"));
    assert!(ics.contains(c["meetingId"].as_str().unwrap()));
    assert!(ics.contains(c["password"].as_str().unwrap()));
    // The link carries the password in its fragment, so invitees only type a name.
    let link = format!(
        "{}#pwd={}",
        c["joinUrl"].as_str().unwrap(),
        c["password"].as_str().unwrap()
    );
    assert_eq!(c["invitationUrl"], link.as_str());
    assert!(ics.contains(&format!("URL:{link}\r\n")), "{ics}");
    assert!(ics.contains(&format!("LOCATION:{link}\r\n")), "{ics}");
    assert!(ics.contains("ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:x@example.org"));
    assert!(ics.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin"));
}

/// A request as another site's page can make a browser send it: the session's credentials, but
/// no JSON content type and no custom header.
fn simple(method: Method, path: &str, token: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

async fn state_changing_requests_without_json_or_the_portal_header_are_refused(app: TestApp) {
    let token = app.admin().await;
    let c = app
        .schedule(&token, 60, 30, json!({"invitees": ["x@example.org"]}))
        .await;
    let id = c["id"].as_str().unwrap();
    let path = format!("/api/v1/conferences/{id}");
    for (method, path) in [
        (Method::POST, "/api/v1/conferences/adhoc".to_owned()),
        (Method::POST, format!("{path}/notify")),
        (Method::POST, format!("{path}/repeat")),
        (Method::DELETE, path.clone()),
        (Method::POST, "/api/v1/auth/logout".to_owned()),
    ] {
        let refused = app.send(simple(method.clone(), &path, &token)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(refused.code(), "csrfHeaderMissing", "{method} {path}");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("X-Conclave-Request"),
            "{}",
            refused.text
        );
    }
    // Nothing happened: one conference, still there, the session still valid.
    assert_eq!(count(&app, &token).await, 1);
    app.get(&path, &token).await.expect(StatusCode::OK);
    // With the header (as the portal sends it) the same requests work.
    let mut adhoc = simple(Method::POST, "/api/v1/conferences/adhoc", &token);
    adhoc
        .headers_mut()
        .insert("x-conclave-request", "1".parse().unwrap());
    app.send(adhoc).await.expect(StatusCode::CREATED);
    let mut delete = simple(Method::DELETE, &path, &token);
    delete
        .headers_mut()
        .insert("x-conclave-request", "1".parse().unwrap());
    app.send(delete).await.expect(StatusCode::NO_CONTENT);
    assert_eq!(count(&app, &token).await, 1);
}
