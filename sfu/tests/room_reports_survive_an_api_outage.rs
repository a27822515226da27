//! Room reports outlive an outage of the conference service: queued while it is unreachable,
//! delivered in order when it is back, each applied once (same Idempotency-Key on a retry), a
//! report for a deleted conference dropped at once without holding up the ones behind it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use proto::{ConferenceId, RoomEvent, RoomReport, TokenKey};
use sfu::report::{Backoff, HttpReporter, Reporter};

const SECRET: &str = "room-report-test-secret-0123456789abcdef";

/// What the stand-in API received: (idempotency key, conference, event kind).
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

fn report(conference: &str, event: RoomEvent) -> RoomReport {
    RoomReport {
        conference: ConferenceId::from(conference),
        at: "2026-12-02T10:00:00Z".into(),
        participants: 1,
        event,
    }
}

fn kind(event: &RoomEvent) -> &'static str {
    match event {
        RoomEvent::Joined { .. } => "joined",
        RoomEvent::Left { .. } => "left",
        RoomEvent::Excluded { .. } => "excluded",
        RoomEvent::Ended => "ended",
        RoomEvent::MediaPorts { .. } => "mediaPorts",
        RoomEvent::RecordingStarted { .. } => "recordingStarted",
        RoomEvent::RecordingStopped { .. } => "recordingStopped",
    }
}

fn counter(registry: &prometheus::Registry, name: &str, label: &str) -> u64 {
    use prometheus::Encoder;
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) && line.contains(&format!("=\"{label}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The conference service as SFUs see it: the first delivery of each key is recorded but its
/// answer is a 503 (as if lost in a rollout); the conference `deleted` is unknown.
async fn stand_in_api(
    State(received): State<Received>,
    headers: HeaderMap,
    axum::Json(report): axum::Json<RoomReport>,
) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ")),
        "a report without a service token"
    );
    let mut received = received.lock();
    let seen = received.iter().any(|(k, _, _)| *k == key);
    received.push((
        key,
        report.conference.to_string(),
        kind(&report.event).to_owned(),
    ));
    if report.conference.as_str() == "deleted" {
        StatusCode::NOT_FOUND
    } else if seen {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[tokio::test]
async fn reports_wait_for_the_api_and_arrive_once_in_order() {
    // A port with nobody listening yet: the API is down.
    let parked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = parked.local_addr().unwrap();
    drop(parked);
    let registry = prometheus::Registry::new();
    let reporter = HttpReporter::spawn_with(
        &format!("http://{address}"),
        TokenKey::new(SECRET.as_bytes()).unwrap(),
        "sfu-7",
        &registry,
        Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    )
    .unwrap();

    reporter.report(report(
        "weekly",
        RoomEvent::Joined {
            identity: "guest:1".into(),
            display_name: "Gus".into(),
        },
    ));
    reporter.report(report("deleted", RoomEvent::Ended));
    reporter.report(report(
        "weekly",
        RoomEvent::Left {
            identity: "guest:1".into(),
        },
    ));
    assert_eq!(reporter.pending(), 3);
    // The outage lasts until the reporter has failed a few times; nothing is lost meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counter(
        &registry,
        "conclave_sfu_room_report_retries_total",
        "unreachable",
    ) < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reporter did not retry"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!reporter.flush(Duration::from_millis(1)).await);
    assert_eq!(
        reporter.pending(),
        3,
        "a report was dropped during the outage"
    );

    // The API is back.
    let received: Received = Arc::default();
    let app = Router::new()
        .route("/api/v1/internal/room-events", post(stand_in_api))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert!(
        reporter.flush(Duration::from_secs(10)).await,
        "the reports were not delivered after the API came back"
    );
    let received = received.lock().clone();
    let kinds: Vec<(&str, &str)> = received
        .iter()
        .map(|(_, c, k)| (c.as_str(), k.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("weekly", "joined"), // answer lost: 503
            ("weekly", "joined"), // the retry
            ("deleted", "ended"), // 404: dropped at once
            ("weekly", "left"),   // answer lost: 503
            ("weekly", "left"),   // the retry
        ]
    );
    // A retry carries the key of the first attempt; different reports carry different keys.
    assert_eq!(received[0].0, received[1].0);
    assert_eq!(received[3].0, received[4].0);
    assert_ne!(received[0].0, received[3].0);
    assert_ne!(received[0].0, received[2].0);
    assert!(received[0].0.starts_with("sfu-7-"), "{}", received[0].0);
    assert_eq!(
        counter(&registry, "conclave_sfu_room_reports_total", "delivered"),
        2
    );
    assert_eq!(
        counter(&registry, "conclave_sfu_room_reports_total", "gone"),
        1
    );
    assert_eq!(
        counter(&registry, "conclave_sfu_room_reports_total", "overflow"),
        0
    );
}
