//! Recordings in the service: the SFU's start and stop reports, composing the segments it
//! wrote (real Ogg/Opus and IVF/VP8 files made by ffmpeg, in the contract's layout) into one
//! MP4 with real ffmpeg, playing it with range requests, who may see it, deleting it with its
//! archive entry, and the retention — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use support::TestApp;

on_both_backends!(
    a_stopped_recording_is_composed_into_an_mp4_that_plays_and_seeks,
    only_the_owner_admins_the_starter_and_the_meetings_moderators_see_a_recording,
    deleting_the_archive_entry_deletes_its_recordings,
    the_retention_removes_old_recordings,
    a_recording_that_cannot_be_composed_fails_after_three_attempts_with_the_reason,
    a_recording_whose_sfu_pod_was_lost_is_composed_from_what_it_wrote,
);

fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (scripts/test.sh installs the Debian package ffmpeg)");
    assert!(
        output.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Seconds of a media file, and whether it has audio and video, by ffprobe.
fn probe(path: &Path) -> (f64, bool, bool) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(
        output.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let probed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let duration = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let kinds: Vec<&str> = probed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    (duration, kinds.contains(&"audio"), kinds.contains(&"video"))
}

async fn report(
    app: &TestApp,
    conference: &Value,
    at: DateTime<Utc>,
    event: Value,
) -> support::Reply {
    app.post(
        "/api/v1/internal/room-events",
        Some(&app.service_token()),
        json!({"conference": conference["id"], "at": at.to_rfc3339(), "participants": 2, "event": event}),
    )
    .await
}

/// Writes a recording the way the SFU does: two microphones and a camera in 5 s segments with
/// their JSON, a chat message and the start/stop files. Returns its ID.
async fn write_segments(app: &TestApp, origin: DateTime<Utc>, seconds: i64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let files = &app.state.files;
    let work = tempfile::tempdir().unwrap();
    let put =
        |key: String, bytes: Vec<u8>| async move { files.put(&key, bytes.into()).await.unwrap() };
    let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    put(
        format!("recordings/{id}/recording.json"),
        serde_json::to_vec(&json!({"id": id, "startedAt": iso(origin), "startedBy": {"identity": "account:x", "name": "Mo"}})).unwrap(),
    )
    .await;
    let tracks = [
        ("001-audio", "audio", "opus", "Ada", "ogg"),
        ("002-video", "video", "vp8", "Ada", "ivf"),
        ("003-audio", "audio", "opus", "Bo", "ogg"),
    ];
    for (track, kind, codec, name, ext) in tracks {
        for seq in 0..(seconds / 5) {
            let file = work.path().join(format!("{track}-{seq}.{ext}"));
            let file_str = file.to_str().unwrap();
            match ext {
                "ogg" => ffmpeg(&[
                    "-f",
                    "lavfi",
                    "-i",
                    &format!("sine=f={}:d=5", 300 + seq * 100),
                    "-c:a",
                    "libopus",
                    "-b:a",
                    "32k",
                    file_str,
                ]),
                _ => ffmpeg(&[
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc=s=320x240:r=25:d=5",
                    "-c:v",
                    "libvpx",
                    "-b:v",
                    "200k",
                    "-deadline",
                    "realtime",
                    file_str,
                ]),
            }
            let start = origin + Duration::milliseconds(seq * 5_000 + 20);
            put(
                format!("recordings/{id}/tracks/{track}/{seq:06}.{ext}"),
                std::fs::read(&file).unwrap(),
            )
            .await;
            put(
                format!("recordings/{id}/tracks/{track}/{seq:06}.json"),
                serde_json::to_vec(&json!({"track": track, "kind": kind, "codec": codec,
                    "participant": {"identity": format!("guest:{name}"), "name": name},
                    "start": iso(start), "end": iso(start + Duration::milliseconds(4_980)), "packets": 250})).unwrap(),
            )
            .await;
        }
    }
    put(
        format!("recordings/{id}/events/000000.json"),
        serde_json::to_vec(&json!([{"at": iso(origin + Duration::seconds(2)), "type": "chat", "from": "Ada", "text": "can you hear me?"}])).unwrap(),
    )
    .await;
    put(
        format!("recordings/{id}/stopped.json"),
        serde_json::to_vec(&json!({"stoppedAt": iso(origin + Duration::seconds(seconds)), "stoppedBy": null, "reason": "stopped"})).unwrap(),
    )
    .await;
    id
}

/// A running meeting of `owner_token`'s with a moderatorPlus in it who records `seconds`;
/// the conference, the recording's ID and the moderator's token.
async fn recorded_meeting(
    app: &TestApp,
    owner_token: &str,
    seconds: i64,
) -> (Value, String, String) {
    let c = app
        .schedule(owner_token, 2, 60, json!({"topic": "Design review"}))
        .await;
    app.clock.advance(Duration::minutes(2));
    app.tick().await;
    let (moderator_id, moderator) = app.user("mod", "moderatorPlus").await;
    let origin = app.now();
    report(app, &c, origin, json!({"kind": "joined", "identity": format!("account:{moderator_id}"), "displayName": "Mo"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    let id = write_segments(app, origin, seconds).await;
    report(app, &c, origin, json!({"kind": "recordingStarted", "recording": id, "identity": format!("account:{moderator_id}"), "displayName": "Mo"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    // A retried report changes nothing.
    report(app, &c, origin, json!({"kind": "recordingStarted", "recording": id, "identity": format!("account:{moderator_id}"), "displayName": "Mo"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    let listed = app
        .get(&format!("/api/v1/recordings/{id}"), &moderator)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.body["state"], "recording");
    assert_eq!(
        listed.body["mediaUrl"],
        Value::Null,
        "nothing plays before it is composed"
    );
    report(
        app,
        &c,
        origin + Duration::seconds(seconds),
        json!({"kind": "recordingStopped", "recording": id}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    (c, id, moderator)
}

async fn a_stopped_recording_is_composed_into_an_mp4_that_plays_and_seeks(app: TestApp) {
    let owner = app.admin().await;
    let (_, id, moderator) = recorded_meeting(&app, &owner, 10).await;
    assert_eq!(api::recording::worker::pass(&app.state).await.unwrap(), 1);
    assert_eq!(
        api::recording::worker::pass(&app.state).await.unwrap(),
        0,
        "composed once"
    );

    let shown = app
        .get(&format!("/api/v1/recordings/{id}"), &moderator)
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown.body["state"], "ready", "{}", shown.body);
    assert_eq!(shown.body["topic"], "Design review");
    assert_eq!(shown.body["startedBy"]["displayName"], "Mo");
    let duration = shown.body["durationSeconds"].as_f64().unwrap();
    assert!((9.9..=10.1).contains(&duration), "{duration}");
    let media_url = shown.body["mediaUrl"].as_str().unwrap().to_owned();

    let whole = app.get(&media_url, &moderator).await.expect(StatusCode::OK);
    assert_eq!(whole.headers[header::CONTENT_TYPE], "video/mp4");
    assert_eq!(whole.headers[header::ACCEPT_RANGES], "bytes");
    let bytes = app
        .send(
            Request::builder()
                .uri(&media_url)
                .header(header::AUTHORIZATION, format!("Bearer {moderator}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recording.mp4");
    let raw = raw_body(&app, &media_url, &moderator, None).await;
    assert_eq!(
        raw.len(),
        bytes.headers[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    );
    std::fs::write(&file, &raw).unwrap();
    let (seconds, audio, video) = probe(&file);
    assert!(audio && video, "the MP4 holds audio and video");
    assert!((9.5..=10.5).contains(&seconds), "about 10 s, got {seconds}");

    // Seeking: a range comes back as 206 with exactly those bytes.
    let part = app
        .send(
            Request::builder()
                .uri(&media_url)
                .header(header::AUTHORIZATION, format!("Bearer {moderator}"))
                .header(header::RANGE, "bytes=1000-1999")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers[header::CONTENT_RANGE],
        format!("bytes 1000-1999/{}", raw.len())
    );
    assert_eq!(
        raw_body(&app, &media_url, &moderator, Some("bytes=1000-1999")).await,
        raw[1000..2000]
    );
    let beyond = app
        .send(
            Request::builder()
                .uri(&media_url)
                .header(header::AUTHORIZATION, format!("Bearer {moderator}"))
                .header(header::RANGE, format!("bytes={}-", raw.len() + 10))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let download = app
        .get(&format!("{media_url}?download=true"), &moderator)
        .await
        .expect(StatusCode::OK);
    let disposition = download.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"Design-review-2026-06-01-"),
        "{disposition}"
    );

    let chat = app
        .get(shown.body["chatUrl"].as_str().unwrap(), &moderator)
        .await
        .expect(StatusCode::OK);
    assert!(chat.text.starts_with("WEBVTT"), "{}", chat.text);
    assert!(
        chat.text
            .contains("00:00:02.000 --> 00:00:08.000\n<v Ada>can you hear me?"),
        "{}",
        chat.text
    );

    // The segments went into the composed file; it and the sidecar stay.
    let left: Vec<String> = app
        .state
        .files
        .list(&format!("recordings/{id}"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert!(left.iter().all(|key| !key.contains("/tracks/")), "{left:?}");
    assert!(
        left.contains(&format!("recordings/{id}/recording.mp4")),
        "{left:?}"
    );
}

async fn raw_body(app: &TestApp, uri: &str, token: &str, range: Option<&str>) -> Vec<u8> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(range) = range {
        request = request.header(header::RANGE, range);
    }
    let response = app
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

async fn only_the_owner_admins_the_starter_and_the_meetings_moderators_see_a_recording(
    app: TestApp,
) {
    let (_, owner) = app.user("owner", "moderator").await;
    let (_, id, starter) = recorded_meeting(&app, &owner, 5).await;
    api::recording::worker::pass(&app.state).await.unwrap();
    let admin = app.admin().await;
    for token in [&owner, &starter, &admin] {
        let listed = app
            .get("/api/v1/recordings", token)
            .await
            .expect(StatusCode::OK);
        assert_eq!(listed.body.as_array().unwrap().len(), 1, "{}", listed.body);
        app.get(&format!("/api/v1/recordings/{id}/media"), token)
            .await
            .expect(StatusCode::OK);
    }
    // A moderator-level account that was not in the meeting, and an audience account that was.
    let (_, stranger) = app.user("stranger", "moderatorPlus").await;
    let (audience_id, audience) = app.user("aud", "audience").await;
    let c = app
        .get("/api/v1/conferences", &owner)
        .await
        .expect(StatusCode::OK)
        .body[0]
        .clone();
    report(&app, &c, app.now(), json!({"kind": "joined", "identity": format!("account:{audience_id}"), "displayName": "Aud"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    for token in [&stranger, &audience] {
        let listed = app
            .get("/api/v1/recordings", token)
            .await
            .expect(StatusCode::OK);
        assert_eq!(listed.body, json!([]));
        let refused = app
            .get(&format!("/api/v1/recordings/{id}/media"), token)
            .await
            .expect(StatusCode::NOT_FOUND);
        assert_eq!(refused.code(), "notFound");
        app.delete(&format!("/api/v1/recordings/{id}"), token)
            .await
            .expect(StatusCode::NOT_FOUND);
    }
    let (moderator_id, moderator) = app.user("attending", "moderator").await;
    report(&app, &c, app.now(), json!({"kind": "joined", "identity": format!("account:{moderator_id}"), "displayName": "Att"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/recordings/{id}/media"), &moderator)
        .await
        .expect(StatusCode::OK);
    // Unknown IDs and anonymous requests.
    app.get("/api/v1/recordings/not-a-recording", &owner)
        .await
        .expect(StatusCode::NOT_FOUND);
    app.call(
        Method::GET,
        &format!("/api/v1/recordings/{id}/media"),
        None,
        None,
    )
    .await
    .expect(StatusCode::UNAUTHORIZED);
    // The owner deletes it; its files go with it.
    app.delete(&format!("/api/v1/recordings/{id}"), &owner)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(
        app.state
            .files
            .list(&format!("recordings/{id}"))
            .await
            .unwrap()
            .is_empty()
    );
    app.get(&format!("/api/v1/recordings/{id}"), &owner)
        .await
        .expect(StatusCode::NOT_FOUND);
}

async fn deleting_the_archive_entry_deletes_its_recordings(app: TestApp) {
    let owner = app.admin().await;
    let (_, id, _) = recorded_meeting(&app, &owner, 5).await;
    api::recording::worker::pass(&app.state).await.unwrap();
    // The occurrence ends and goes to the archive with its recording.
    app.clock.advance(Duration::minutes(95));
    app.tick().await;
    let archive = app
        .get("/api/v1/conferences?view=archive", &owner)
        .await
        .expect(StatusCode::OK);
    let entry = archive.body[0].clone();
    assert_eq!(entry["recordings"][0]["id"], json!(id), "{entry}");
    assert_eq!(entry["recordings"][0]["state"], "ready");
    assert!(entry["recordings"][0]["chatUrl"].is_string(), "{entry}");
    app.delete(
        &format!("/api/v1/conferences/{}", entry["id"].as_str().unwrap()),
        &owner,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/recordings/{id}"), &owner)
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(
        app.state
            .files
            .list(&format!("recordings/{id}"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_retention_removes_old_recordings(app: TestApp) {
    let app = app
        .reconfigure(|config| config.recording_retention_days = 2)
        .await;
    let owner = app.admin().await;
    let (_, id, _) = recorded_meeting(&app, &owner, 5).await;
    api::recording::worker::pass(&app.state).await.unwrap();
    let now = app.now();
    assert_eq!(
        api::recording::worker::remove_expired(&app.state, now + Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        api::recording::worker::remove_expired(&app.state, now + Duration::days(3))
            .await
            .unwrap(),
        1
    );
    app.get(&format!("/api/v1/recordings/{id}"), &owner)
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(
        app.state
            .files
            .list(&format!("recordings/{id}"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_recording_that_cannot_be_composed_fails_after_three_attempts_with_the_reason(
    app: TestApp,
) {
    let owner = app.admin().await;
    let (_, id, moderator) = recorded_meeting(&app, &owner, 5).await;
    // The camera's only segment is garbage.
    app.state
        .files
        .put(
            &format!("recordings/{id}/tracks/002-video/000000.ivf"),
            b"DKIF not really".to_vec().into(),
        )
        .await
        .unwrap();
    for attempt in 1..=3 {
        assert_eq!(api::recording::worker::pass(&app.state).await.unwrap(), 0);
        let shown = app
            .get(&format!("/api/v1/recordings/{id}"), &moderator)
            .await
            .expect(StatusCode::OK);
        let expected = if attempt < 3 { "stopped" } else { "failed" };
        assert_eq!(
            shown.body["state"], expected,
            "after attempt {attempt}: {}",
            shown.body
        );
        assert!(
            shown.body["error"].as_str().unwrap().contains("ffmpeg"),
            "{}",
            shown.body
        );
    }
    // The raw segments stay for a person to look at.
    assert!(
        !app.state
            .files
            .list(&format!("recordings/{id}/tracks"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_recording_whose_sfu_pod_was_lost_is_composed_from_what_it_wrote(app: TestApp) {
    // The file store's times are the machine's: the service's clock follows them here.
    app.clock.set(Utc::now());
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 0, 60, json!({"topic": "Lost pod"}))
        .await;
    app.tick().await;
    let (moderator_id, moderator) = app.user("mod", "moderatorPlus").await;
    let origin = app.now();
    report(&app, &c, origin, json!({"kind": "joined", "identity": format!("account:{moderator_id}"), "displayName": "Mo"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    let id = write_segments(&app, origin, 10).await;
    report(&app, &c, origin, json!({"kind": "recordingStarted", "recording": id, "identity": format!("account:{moderator_id}"), "displayName": "Mo"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    // The pod died: no stopped.json, no stop report, and the last segment lost its JSON.
    app.state
        .files
        .delete(&format!("recordings/{id}/stopped.json"))
        .await
        .unwrap();
    app.state
        .files
        .delete(&format!("recordings/{id}/tracks/002-video/000001.json"))
        .await
        .unwrap();
    app.state
        .files
        .put(
            &format!("recordings/{id}/alive"),
            origin.to_rfc3339().into_bytes().into(),
        )
        .await
        .unwrap();

    // While the pod may still be alive, nothing is composed.
    app.clock.set(Utc::now() + Duration::seconds(60));
    assert_eq!(api::recording::worker::pass(&app.state).await.unwrap(), 0);
    let shown = app
        .get(&format!("/api/v1/recordings/{id}"), &moderator)
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown.body["state"], "recording");

    // Past --recording-lost-seconds (120) without a sign of life: what was written is composed.
    app.clock.set(Utc::now() + Duration::seconds(180));
    assert_eq!(api::recording::worker::pass(&app.state).await.unwrap(), 1);
    let shown = app
        .get(&format!("/api/v1/recordings/{id}"), &moderator)
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown.body["state"], "ready", "{}", shown.body);
    let duration = shown.body["durationSeconds"].as_f64().unwrap();
    assert!(
        (9.5..=10.5).contains(&duration),
        "the segments' 10 s, got {duration}"
    );
    let raw = raw_body(
        &app,
        shown.body["mediaUrl"].as_str().unwrap(),
        &moderator,
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recording.mp4");
    std::fs::write(&file, &raw).unwrap();
    let (seconds, audio, video) = probe(&file);
    assert!(
        audio && video && (9.5..=10.5).contains(&seconds),
        "{seconds} {audio} {video}"
    );
}
