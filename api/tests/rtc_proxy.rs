//! The signaling relay `/rtc/{pod}` in a cluster (`--sfu-signaling-via-api`): the API in front
//! of the in-process fake Kubernetes API server and a real SFU on loopback, clients as a
//! browser would be — `/join` on the public address, then the endpoint it answered.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fakekube::FakeApi;
use futures::{SinkExt, StreamExt};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use proto::signal::{ClientMessage, CloseReason, ServerMessage, TrackSource};
use proto::{ConferenceId, UdpPorts};
use serde_json::{Value, json};
use support::{Backend, TestApp};
use tokio_tungstenite::tungstenite::{self, Message};

/// Where people reach the portal; the Ingress in front of the API is played by the test, which
/// opens the same path on the API's loopback address.
const PUBLIC: &str = "https://meet.example.com";
const WAIT: Duration = Duration::from_secs(10);

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Cluster {
    _fake: FakeApi,
    app: TestApp,
    api: SocketAddr,
    conferences: Api<crds::Conference>,
}

/// The API in a cluster with signaling through it, served on loopback.
async fn cluster(configure: impl FnOnce(&mut api::Config)) -> Cluster {
    let fake = FakeApi::start().await;
    let app = TestApp::in_cluster_with(fake.client_as("api"), |config| {
        config.sfu_signaling_via_api = true;
        config.public_url = Some(PUBLIC.to_owned());
        configure(config);
    })
    .await;
    // Join tokens are checked by the SFU against the real clock.
    app.clock.set(chrono::Utc::now());
    let base = app.serve().await;
    let api = base.trim_start_matches("http://").parse().unwrap();
    Cluster {
        conferences: Api::namespaced(fake.client(), "default"),
        _fake: fake,
        app,
        api,
    }
}

impl Cluster {
    /// A permanent room owned by `admin`, without a password, placed on `pod` at `endpoint` —
    /// labelled and with the assignment in status, as the operator leaves it.
    async fn place(
        &self,
        name: &str,
        meeting_id: &str,
        pod: &str,
        endpoint: &str,
        ports: UdpPorts,
    ) {
        let object: crds::Conference = serde_json::from_value(json!({
            "apiVersion": "conclave.dev/v1alpha1",
            "kind": "Conference",
            "metadata": { "name": name, "labels": {
                "conclave.dev/meeting-id": meeting_id,
                "conclave.dev/sfu-pod": pod,
            } },
            "spec": { "topic": "Relayed", "owner": "admin", "meetingId": meeting_id,
                      "schedule": { "permanent": true } },
        }))
        .unwrap();
        self.conferences
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        let status = json!({
            "apiVersion": "conclave.dev/v1alpha1",
            "kind": "Conference",
            "status": {
                "phase": "Ready",
                "assignment": {
                    "pod": pod,
                    "endpoint": endpoint,
                    "udpPorts": { "first": ports.first, "last": ports.last },
                    "reserved": 10
                }
            }
        });
        self.conferences
            .patch_status(
                name,
                &PatchParams::apply("conclave-operator").force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
    }

    /// `POST /join`: as `session` (an account) or as a guest named `name`.
    async fn join(&self, session: Option<&str>, meeting_id: &str, name: &str) -> Value {
        self.app
            .post(
                "/api/v1/join",
                session,
                json!({"meetingId": meeting_id, "displayName": name}),
            )
            .await
            .expect(StatusCode::OK)
            .body
    }

    /// The URL a client opens for `endpoint` (on the public address) when the public address
    /// leads to this API.
    fn through_api(&self, endpoint: &Value) -> String {
        let endpoint = endpoint.as_str().unwrap();
        let path = endpoint
            .strip_prefix("wss://meet.example.com")
            .unwrap_or_else(|| panic!("{endpoint} is not on the public address"));
        format!("ws://{}{path}", self.api)
    }

    fn relay_url(&self, pod: &str) -> String {
        format!("ws://{}/rtc/{pod}", self.api)
    }
}

struct Sfu {
    addr: SocketAddr,
    state: sfu::SfuState,
}

impl Sfu {
    fn endpoint(&self) -> String {
        format!("ws://{}/rtc", self.addr)
    }
}

/// A real SFU on loopback sharing the API's join-token secret.
async fn start_sfu(
    app: &TestApp,
    ports: UdpPorts,
    configure: impl FnOnce(&mut sfu::Config),
) -> Sfu {
    let secret = api::token_secret(&app.config).unwrap();
    let mut config = sfu::Config::for_loopback(secret, ports);
    // The pod the tests place their conferences on: join tokens name it.
    config.pod_name = "sfu-0".into();
    configure(&mut config);
    let state = sfu::SfuState::new(
        &config,
        Arc::new(sfu::LogReporter),
        &prometheus::Registry::new(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = sfu::router(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Sfu { addr, state }
}

/// Opens `url` as a websocket, claiming to come from `forwarded_for`; an HTTP refusal comes back
/// as its status and body.
async fn connect(url: &str, forwarded_for: Option<&str>) -> Result<RawSocket, (u16, String)> {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    if let Some(hop) = forwarded_for {
        request
            .headers_mut()
            .insert("x-forwarded-for", hop.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(err) => panic!("connecting to {url} failed: {err}"),
    }
}

/// Sends `join` and returns the first answer.
async fn join_raw(socket: &mut RawSocket, token: &Value, conference: &Value) -> ServerMessage {
    let join = ClientMessage::Join {
        token: token.as_str().unwrap().to_owned(),
        conference: ConferenceId::from(conference.as_str().unwrap()),
        receive_codecs: None,
    };
    socket
        .send(Message::text(serde_json::to_string(&join).unwrap()))
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// Waits until `done` holds, checking every 20 ms, for at most [`WAIT`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ports(first: u16) -> UdpPorts {
    UdpPorts {
        first,
        last: first + 99,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_meet_through_the_relay_and_hear_why_it_ended() {
    if !loadgen::netns::isolate() {
        return;
    }
    let cluster = cluster(|_| {}).await;
    let media = ports(46100);
    let sfu = start_sfu(&cluster.app, media, |_| {}).await;
    cluster
        .place("relayed", "246813579", "sfu-0", &sfu.endpoint(), media)
        .await;

    let admin = cluster.app.admin().await;
    let ada = cluster.join(Some(&admin), "246813579", "Ada").await;
    let grace = cluster.join(None, "246813579", "Grace").await;
    // One host name for everything: the portal's, with wss because it is https.
    assert_eq!(ada["endpoint"], "wss://meet.example.com/rtc/sfu-0");
    assert_eq!(grace["endpoint"], ada["endpoint"]);
    assert_eq!(ada["role"], "moderator");

    let conference = ConferenceId::from("relayed");
    let mut ada = loadgen::Client::join_url(
        &cluster.through_api(&ada["endpoint"]),
        ada["token"].as_str().unwrap(),
        &conference,
    )
    .await
    .unwrap();
    let mut grace = loadgen::Client::join_url(
        &cluster.through_api(&grace["endpoint"]),
        grace["token"].as_str().unwrap(),
        &conference,
    )
    .await
    .unwrap();
    assert!(
        matches!(ada.first, ServerMessage::Joined { .. }),
        "{:?}",
        ada.first
    );
    assert!(
        matches!(grace.first, ServerMessage::Joined { .. }),
        "{:?}",
        grace.first
    );
    assert_eq!(cluster.app.state.metrics.rtc_sessions.get(), 2);
    assert_eq!(sfu.state.session_count(), 2);

    // Media both ways (media goes to the SFU directly; signaling through the relay set it up).
    let both = [TrackSource::Microphone, TrackSource::Camera];
    ada.publish(&both, loadgen::MediaPlan::default())
        .await
        .unwrap();
    grace
        .publish(&both, loadgen::MediaPlan::default())
        .await
        .unwrap();
    let from = |publisher: String| {
        move |received: &HashMap<String, loadgen::Received>| {
            let tracks: Vec<_> = received
                .values()
                .filter(|r| r.publisher == publisher)
                .collect();
            tracks.len() == 2
                && tracks.iter().all(|r| r.packets > 20)
                && tracks.iter().any(|r| r.video && r.keyframes > 0)
        }
    };
    ada.wait_received(WAIT, from(grace.id().unwrap().to_string()))
        .await
        .expect("Ada receives Grace");
    grace
        .wait_received(WAIT, from(ada.id().unwrap().to_string()))
        .await
        .expect("Grace receives Ada");

    // The SFU's reason arrives in its message and in its close frame, as the SFU sent them.
    ada.send(ClientMessage::EndMeeting);
    for client in [&mut grace, &mut ada] {
        client
            .wait_for(WAIT, |m| {
                matches!(
                    m,
                    ServerMessage::Closed {
                        reason: CloseReason::Ended
                    }
                )
            })
            .await
            .expect("closed: ended");
        assert_eq!(
            client.wait_closed(WAIT).await.unwrap(),
            Some((1000, "ended".to_owned())),
            "the SFU's close frame passes the relay"
        );
    }
    eventually("both relays end", || cluster.app.state.relays.active() == 0).await;
    assert_eq!(cluster.app.state.metrics.rtc_sessions.get(), 0);
    assert_eq!(
        cluster
            .app
            .state
            .metrics
            .rtc_closed
            .with_label_values(&["sfuClosed"])
            .get(),
        2
    );
    eventually("the SFU's sessions end", || sfu.state.session_count() == 0).await;
    ada.close().await;
    grace.close().await;
}

#[tokio::test]
async fn only_pods_that_hold_a_meeting_are_reached() {
    let cluster = cluster(|_| {}).await;
    // A pod nobody is placed on, and a name that is no pod name: 404 before any upgrade,
    // with or without websocket headers.
    for pod in ["sfu-9", "Not_A_Pod"] {
        let reply = cluster
            .app
            .send(
                Request::get(format!("/rtc/{pod}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .expect(StatusCode::NOT_FOUND);
        assert_eq!(reply.code(), "notFound");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("POST /api/v1/join"),
            "{}",
            reply.text
        );
    }
    let (status, body) = connect(&cluster.relay_url("sfu-9"), None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("notFound"), "{body}");

    // A pod that holds a meeting but does not answer: 502, counted.
    cluster
        .place(
            "stranded",
            "135792468",
            "sfu-1",
            "ws://127.0.0.1:1/rtc",
            ports(46300),
        )
        .await;
    let (status, body) = connect(&cluster.relay_url("sfu-1"), None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("sfuUnreachable"), "{body}");
    assert_eq!(
        cluster
            .app
            .state
            .metrics
            .rtc_upstream_failures
            .with_label_values(&["unreachable"])
            .get(),
        1
    );
    // The same pod asked for without a websocket.
    let reply = cluster
        .app
        .send(Request::get("/rtc/sfu-1").body(Body::empty()).unwrap())
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "websocketRequired");
    // A pod whose endpoint is for clients (wss://, e.g. a per-pod Ingress host) is not dialled,
    // and /join hands that endpoint out as it is.
    cluster
        .place(
            "public",
            "975318642",
            "sfu-2",
            "wss://sfu-2.sfu.example.com/rtc",
            ports(46400),
        )
        .await;
    let reply = cluster
        .app
        .send(Request::get("/rtc/sfu-2").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let joined = cluster.join(None, "975318642", "Gus").await;
    assert_eq!(joined["endpoint"], "wss://sfu-2.sfu.example.com/rtc");
}

#[tokio::test]
async fn standalone_keeps_its_own_rtc_whatever_the_flag_says() {
    let app = TestApp::with(Backend::Sqlite, |config| {
        config.sfu_signaling_via_api = true
    })
    .await;
    let owner = app.admin().await;
    let c = app.schedule(&owner, 0, 30, json!({})).await;
    let joined = app
        .post(
            "/api/v1/join",
            None,
            json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": "Gus"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(joined.body["endpoint"], "ws://127.0.0.1:8080/rtc");
    let reply = app
        .send(Request::get("/rtc/embedded").body(Body::empty()).unwrap())
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(reply.text.contains("/rtc"), "{}", reply.text);
}

#[tokio::test]
async fn the_sfu_counts_the_client_behind_the_relay_not_the_relay() {
    // The API believes the loopback proxy in front of it (the test's Ingress); the SFU believes
    // the API, and lets one websocket per client network wait for `join`.
    let cluster = cluster(|config| {
        config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let media = ports(46500);
    let sfu = start_sfu(&cluster.app, media, |config| {
        config.limits.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        config.limits.max_pending_per_address = 1;
    })
    .await;
    cluster
        .place("counted", "864213579", "sfu-0", &sfu.endpoint(), media)
        .await;
    let url = cluster.relay_url("sfu-0");

    let mut first = connect(&url, Some("203.0.113.7"))
        .await
        .expect("the first from its network");
    // A second one from the same network is the SFU's to refuse, and its answer comes through.
    let (status, body) = connect(&url, Some("203.0.113.7")).await.err().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("sfuRefused") && body.contains("your network"),
        "{body}"
    );
    assert_eq!(
        cluster
            .app
            .state
            .metrics
            .rtc_upstream_failures
            .with_label_values(&["refused"])
            .get(),
        1
    );
    // Another network is another client.
    let mut other = connect(&url, Some("198.51.100.9"))
        .await
        .expect("another network");
    assert_eq!(sfu.state.pending_count(), 2);

    let joined = cluster.join(None, "864213579", "Gus").await;
    let answer = join_raw(&mut first, &joined["token"], &json!("counted")).await;
    assert!(matches!(answer, ServerMessage::Joined { .. }), "{answer:?}");
    // Joined, it no longer waits: its network may open another.
    eventually("the join is counted", || sfu.state.pending_count() == 1).await;
    let mut again = connect(&url, Some("203.0.113.7"))
        .await
        .expect("a place again");
    for socket in [&mut first, &mut other, &mut again] {
        socket.close(None).await.unwrap();
    }
    eventually("the relays end", || cluster.app.state.relays.active() == 0).await;
    assert!(
        cluster
            .app
            .state
            .metrics
            .rtc_closed
            .with_label_values(&["clientClosed"])
            .get()
            >= 3
    );
}

#[tokio::test]
async fn a_silent_client_is_let_go_and_the_sfu_hears_of_it() {
    let cluster = cluster(|config| config.rtc_proxy_idle_seconds = 2).await;
    let media = ports(46600);
    let sfu = start_sfu(&cluster.app, media, |_| {}).await;
    cluster
        .place("quiet", "753186420", "sfu-0", &sfu.endpoint(), media)
        .await;
    let joined = cluster.join(None, "753186420", "Quinn").await;
    let mut socket = connect(&cluster.through_api(&joined["endpoint"]), None)
        .await
        .unwrap();
    let answer = join_raw(&mut socket, &joined["token"], &json!("quiet")).await;
    assert!(matches!(answer, ServerMessage::Joined { .. }), "{answer:?}");
    // It reads nothing and sends nothing (not even pongs) from now on.
    eventually("the SFU's session ends", || sfu.state.session_count() == 0).await;
    let mut frame = None;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(WAIT, socket.next()).await {
        if let Message::Close(close) = message {
            frame = close.map(|f| (u16::from(f.code), f.reason.to_string()));
            break;
        }
    }
    assert_eq!(frame, Some((1008, "unresponsive".to_owned())));
    assert_eq!(
        cluster
            .app
            .state
            .metrics
            .rtc_closed
            .with_label_values(&["unresponsive"])
            .get(),
        1
    );
}

/// A stand-in for an SFU pod's `/rtc`: records each upgrade request's headers, echoes text and
/// binary messages, and answers the text `close` with the close frame 4001 `bye`.
async fn fake_pod() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<axum::http::HeaderMap>,
) {
    use tungstenite::handshake::server::{Request as Upgrade, Response as Accepted};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                // The shape tungstenite's handshake callback has.
                #[allow(clippy::result_large_err)]
                let record = |request: &Upgrade, response: Accepted| {
                    let _ = seen.send(request.headers().clone());
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, record).await
                else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    let answer = match message {
                        Message::Text(text) if text.as_str() == "close" => {
                            Message::Close(Some(tungstenite::protocol::CloseFrame {
                                code: 4001.into(),
                                reason: "bye".into(),
                            }))
                        }
                        message @ (Message::Text(_) | Message::Binary(_)) => message,
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if socket.send(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, heard)
}

/// The next frame other than ping and pong, within [`WAIT`].
async fn next_frame(socket: &mut RawSocket) -> Message {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

#[tokio::test]
async fn the_pod_hears_the_client_and_the_request_but_no_credential() {
    let cluster = cluster(|config| {
        config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (pod, mut upgrades) = fake_pod().await;
    cluster
        .place(
            "echo",
            "357913579",
            "sfu-0",
            &format!("ws://{pod}/rtc"),
            ports(46700),
        )
        .await;
    use tungstenite::client::IntoClientRequest;
    let mut request = cluster.relay_url("sfu-0").into_client_request().unwrap();
    for (name, value) in [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
        ("x-request-id", "req-42"),
        ("cookie", "conclave_session=secret"),
        ("authorization", "Bearer secret"),
    ] {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let headers = upgrades.recv().await.unwrap();
    // The client as the API decided it (the rightmost hop its trusted proxy added), alone.
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7");
    assert_eq!(headers["x-request-id"], "req-42");
    for credential in ["cookie", "authorization"] {
        assert!(
            headers.get(credential).is_none(),
            "{credential} reached the pod"
        );
    }

    // Text and binary both ways, as they were.
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_frame(&mut socket).await, Message::text("hello"));
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut socket).await,
        Message::binary(vec![0u8, 1, 2, 255])
    );
    // A close code of the application's own range passes unchanged.
    socket.send(Message::text("close")).await.unwrap();
    match next_frame(&mut socket).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected the pod's close frame, got {other:?}"),
    }

    // A message larger than the SFU takes is stopped at the relay.
    let (mut socket, _) = tokio_tungstenite::connect_async(cluster.relay_url("sfu-0"))
        .await
        .unwrap();
    let _ = upgrades.recv().await.unwrap();
    let oversized = "x".repeat(api::relay::MAX_CLIENT_MESSAGE_BYTES + 1);
    socket.send(Message::text(oversized)).await.unwrap();
    match next_frame(&mut socket).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1009);
            assert_eq!(frame.reason.as_str(), "tooLarge");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    eventually("the relays end", || cluster.app.state.relays.active() == 0).await;
    for (reason, count) in [("sfuClosed", 1), ("tooLarge", 1)] {
        assert_eq!(
            cluster
                .app
                .state
                .metrics
                .rtc_closed
                .with_label_values(&[reason])
                .get(),
            count,
            "{reason}"
        );
    }
}
