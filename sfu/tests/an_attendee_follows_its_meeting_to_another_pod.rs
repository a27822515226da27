//! A participant that keeps its meeting by itself (loadgen's attendee, as the portal does)
//! follows the meeting when the operator moves it: told `moved` by the old pod, it joins again
//! through the API at once naming the pod it lost (`lostPod`), lands on the new pod, and media
//! flows again.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use loadgen::{Attendee, AttendeeOptions, Ended, MediaPlan};
use proto::signal::{CloseReason, TrackSource};
use proto::{ConferenceId, Role};
use serde_json::{Value, json};
use support::cluster::{Cluster, pod, ports};
use support::{SECRET, WAIT, claims};

/// The stand-in API's state: the cluster, and each pod's signaling address.
type ApiState = (Arc<Cluster>, Arc<Vec<(String, SocketAddr)>>);

/// `POST /api/v1/join` of the stand-in API: a token for the pod the conference is on.
async fn join(State((cluster, pods)): State<ApiState>, Json(body): Json<Value>) -> Json<Value> {
    let conference = ConferenceId::from("c1");
    cluster
        .lost
        .lock()
        .push(body["lostPod"].as_str().map(str::to_owned));
    let pod = cluster.pod_of(&conference).unwrap();
    let addr = pods.iter().find(|(name, _)| *name == pod).unwrap().1;
    let name = body["displayName"].as_str().unwrap();
    let mut claims = claims(name, Role::Speaker, false);
    claims.pod = Some(pod.clone());
    let token = proto::TokenKey::new(SECRET.as_bytes())
        .unwrap()
        .sign_join(&claims)
        .unwrap();
    Json(json!({
        "token": token,
        "endpoint": format!("ws://{addr}/rtc"),
        "pod": pod,
        "conference": { "id": conference },
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attendee_follows_its_meeting_to_the_pod_it_moved_to() {
    if !loadgen::netns::isolate() {
        return;
    }
    let cluster = Arc::new(Cluster::default());
    cluster.assign("c1", "sfu-a");
    let a = pod(&cluster, "sfu-a", ports(42000)).await;
    let b = pod(&cluster, "sfu-b", ports(42500)).await;
    let pods = Arc::new(vec![
        ("sfu-a".to_owned(), a.addr),
        ("sfu-b".to_owned(), b.addr),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v1/join", post(join))
        .with_state((Arc::clone(&cluster), pods));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let attendee = |name: &str, sources: Vec<TrackSource>| {
        Attendee::start(AttendeeOptions {
            api: api.clone(),
            join: json!({"meetingId": "123456789", "displayName": name}),
            session_token: None,
            sources,
            plan: MediaPlan::default(),
            media_ip: None,
        })
    };
    let mut speaker = attendee("ada", vec![TrackSource::Microphone, TrackSource::Camera]);
    let mut listener = attendee("bob", Vec::new());
    listener
        .wait_until(WAIT, |c| c.len() == 1 && c[0].first_keyframe_at.is_some())
        .await
        .expect("bob sees ada on sfu-a");
    speaker
        .wait_until(WAIT, |c| c.len() == 1 && c[0].joined_at.is_some())
        .await
        .expect("ada is in");
    assert_eq!(listener.connections()[0].pod.as_deref(), Some("sfu-a"));

    // The operator moves the meeting; sfu-a hears it at its next look.
    cluster.assign("c1", "sfu-b");
    a.state.refresh_placements().await.unwrap();
    let moved = |c: &[loadgen::Connection]| {
        c.len() == 2 && c[1].first_keyframe_at.is_some() && c[1].pod.as_deref() == Some("sfu-b")
    };
    let seen = listener
        .wait_until(WAIT, moved)
        .await
        .expect("bob sees ada again, on sfu-b");
    speaker
        .wait_until(WAIT, |c| c.len() == 2 && c[1].joined_at.is_some())
        .await
        .expect("ada moved too");
    let (old, new) = (&seen[0], &seen[1]);
    assert_eq!(old.ended, Some(Ended::Closed(CloseReason::Moved)));
    assert_eq!(new.lost_pod.as_deref(), Some("sfu-a"));
    let ended = old.ended_at.unwrap();
    assert!(
        new.asked_at.duration_since(ended) < Duration::from_millis(200),
        "the first attempt after `moved` goes out at once"
    );
    let gap = new.first_keyframe_at.unwrap().duration_since(ended);
    println!("moved → first keyframe on the new pod: {gap:?}");
    let lost: HashSet<Option<String>> = cluster.lost.lock().iter().cloned().collect();
    assert!(lost.contains(&Some("sfu-a".to_owned())), "{lost:?}");
    speaker.stop().await.unwrap();
    listener.stop().await.unwrap();
}
