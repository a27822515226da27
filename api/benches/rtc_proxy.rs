//! What the signaling relay (`/rtc/{pod}`, `--sfu-signaling-via-api`) costs: the same signaling
//! measured straight to the SFU (`ws://SFU/rtc`) and through the API (`ws://API/rtc/<pod>`).
//!
//! One process holds the API (on the in-process fake Kubernetes API server, a permanent room
//! placed on pod `sfu-0`), a real SFU and the clients, all on loopback; clients are plain
//! websockets with signed join tokens (no media). For each path:
//! - **connect**: opening the websocket until it is upgraded (through the API: the API's
//!   lookup of the pod among the assignments — one LIST of the fake API server — and its own
//!   connection to the pod), `CONCLAVE_BENCH_JOINS` times one after another;
//! - **join**: `join` sent → `joined` received on that websocket;
//! - **chat**: one client sends `CONCLAVE_BENCH_MESSAGES` chat messages one after another, each
//!   after the SFU's echo of the one before (the SFU sends a room's chat to the sender too):
//!   the round trip of a small signaling message through the room core;
//! - **chat, concurrent**: `CONCLAVE_BENCH_CLIENTS` clients, each in a room of its own, do the
//!   same at once (as many messages in total).
//!
//! Each figure is p50/p99 (and max) in milliseconds, with the process's CPU time per message
//! (`/proc/self/stat`, user + system, in units of 1/100 s): client, relay and SFU share the
//! process and the machine's cores, so the difference between the paths is what the relay
//! adds. Results go to `$CARGO_TARGET_DIR/bench-results/rtc-proxy.json` and stdout.
//!
//! ```sh
//! cargo bench -p api --bench rtc_proxy
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use proto::token::JOIN_AUDIENCE;
use proto::{ConferenceId, JoinClaims, Media, MeetingId, Role, RoomSettings, TokenKey, UdpPorts};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);
const POD: &str = "sfu-0";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of this process so far (user + system; Linux counts them in 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name in parentheses; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// p50, p99 and max of microsecond samples, in milliseconds.
fn quantiles(mut samples: Vec<u64>) -> Value {
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len().saturating_sub(1)) as f64 * q).round() as usize;
        samples.get(index).map_or(0.0, |us| *us as f64 / 1000.0)
    };
    json!({"n": samples.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

struct Bench {
    key: TokenKey,
    direct: String,
    relayed: String,
}

impl Bench {
    fn token(&self, sub: &str, conference: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        self.key
            .sign_join(&JoinClaims {
                sub: sub.into(),
                name: sub.into(),
                conf: ConferenceId::from(conference),
                mid: MeetingId::from("123454321"),
                role: Role::Listener,
                level: None,
                owner: false,
                room: RoomSettings {
                    max_participants: Some(1000),
                    allow_join_without_owner: true,
                    media: Media::AudioVideo,
                    udp_ports: None,
                    revision: 0,
                    recording_allowed: true,
                    topic: None,
                },
                aud: JOIN_AUDIENCE.into(),
                iat: now,
                exp: now + 600,
                jti: uuid::Uuid::new_v4().to_string(),
                rid: None,
                ep: 0,
                cli: None,
                pod: None,
            })
            .unwrap()
    }

    fn url(&self, relayed: bool) -> &str {
        if relayed { &self.relayed } else { &self.direct }
    }
}

async fn open(url: &str) -> Socket {
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"))
        .0
}

/// The next text message of the given `type`, skipping others.
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} in time"))
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] == kind {
                return value;
            }
            assert_ne!(value["type"], "error", "{value}");
        }
    }
}

async fn join(socket: &mut Socket, token: &str, conference: &str) {
    socket
        .send(Message::text(
            json!({"type": "join", "token": token, "conference": conference}).to_string(),
        ))
        .await
        .unwrap();
    next_of(socket, "joined").await;
}

/// Connect and join `joins` times one after another; the connect and join latencies.
async fn connect_and_join(bench: &Bench, relayed: bool, joins: usize) -> Value {
    let (mut connect, mut joined) = (Vec::new(), Vec::new());
    let cpu = cpu_seconds();
    for i in 0..joins {
        let token = bench.token(&format!("guest:join-{relayed}-{i}"), "bench-join");
        let started = Instant::now();
        let mut socket = open(bench.url(relayed)).await;
        connect.push(started.elapsed().as_micros() as u64);
        let started = Instant::now();
        join(&mut socket, &token, "bench-join").await;
        joined.push(started.elapsed().as_micros() as u64);
        socket
            .send(Message::text(json!({"type": "leave"}).to_string()))
            .await
            .unwrap();
        let _ = socket.close(None).await;
    }
    let cpu = cpu_seconds() - cpu;
    json!({
        "connectMs": quantiles(connect),
        "joinMs": quantiles(joined),
        "cpuMsPerJoin": cpu * 1000.0 / joins as f64,
    })
}

/// One client in room `room` chats `messages` times, each after the echo of the one before.
async fn chat_round_trips(bench: &Bench, relayed: bool, room: &str, messages: usize) -> Vec<u64> {
    let mut socket = open(bench.url(relayed)).await;
    join(
        &mut socket,
        &bench.token(&format!("guest:{room}"), room),
        room,
    )
    .await;
    let mut took = Vec::with_capacity(messages);
    for i in 0..messages {
        let text = format!("message {i}");
        let started = Instant::now();
        socket
            .send(Message::text(
                json!({"type": "chat", "text": text}).to_string(),
            ))
            .await
            .unwrap();
        loop {
            let echo = next_of(&mut socket, "chat").await;
            if echo["message"]["text"] == text {
                break;
            }
        }
        took.push(started.elapsed().as_micros() as u64);
    }
    let _ = socket
        .send(Message::text(json!({"type": "leave"}).to_string()))
        .await;
    let _ = socket.close(None).await;
    took
}

async fn chat(bench: &Arc<Bench>, relayed: bool, messages: usize, clients: usize) -> Value {
    // Warm up the path (first connections, allocations) outside the figures.
    chat_round_trips(bench, relayed, &format!("warm-{relayed}"), 50).await;
    let cpu = cpu_seconds();
    let started = Instant::now();
    let sequential = chat_round_trips(bench, relayed, &format!("chat-{relayed}"), messages).await;
    let sequential_cpu = cpu_seconds() - cpu;
    let sequential_seconds = started.elapsed().as_secs_f64();

    let cpu = cpu_seconds();
    let started = Instant::now();
    let per_client = messages.div_ceil(clients);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let bench = Arc::clone(bench);
            tokio::spawn(async move {
                chat_round_trips(&bench, relayed, &format!("busy-{relayed}-{c}"), per_client).await
            })
        })
        .collect();
    let mut concurrent = Vec::new();
    for task in tasks {
        concurrent.extend(task.await.unwrap());
    }
    let concurrent_cpu = cpu_seconds() - cpu;
    let concurrent_seconds = started.elapsed().as_secs_f64();
    let count = concurrent.len();
    json!({
        "sequential": {
            "roundTripMs": quantiles(sequential),
            "messagesPerSecond": messages as f64 / sequential_seconds,
            "cpuUsPerMessage": sequential_cpu * 1e6 / messages as f64,
        },
        "concurrent": {
            "clients": clients,
            "roundTripMs": quantiles(concurrent),
            "messagesPerSecond": count as f64 / concurrent_seconds,
            "cpuUsPerMessage": concurrent_cpu * 1e6 / count as f64,
        },
    })
}

#[tokio::main]
async fn main() {
    let messages: usize = env_or("CONCLAVE_BENCH_MESSAGES", 2000);
    let joins: usize = env_or("CONCLAVE_BENCH_JOINS", 200);
    let clients: usize = env_or("CONCLAVE_BENCH_CLIENTS", 16).max(1);

    // The cluster: the fake Kubernetes API server and the API on it, relaying signaling.
    let fake = fakekube::FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    let mut config = api::Config::with_data_dir(dir.path());
    let password_file = dir.path().join("admin");
    std::fs::write(&password_file, "bench-admin-password").unwrap();
    config.admin_password_file = Some(password_file);
    config.conference_store = api::config::ConferenceStoreKind::Kubernetes;
    config.sfu_signaling_via_api = true;
    config.public_url = Some(format!("http://{api_addr}"));
    config.rtc_proxy_max_sessions = 10_000;
    let secret = api::token_secret(&config).unwrap();
    let state = api::build_with_client(
        config,
        Arc::new(api::clock::SystemClock),
        prometheus::Registry::new(),
        Some(fake.client_as("api")),
    )
    .await
    .unwrap();
    let app = api::http::app(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // The SFU pod, with chat limits out of the way.
    let mut sfu_config = sfu::Config::for_loopback(
        secret.clone(),
        UdpPorts {
            first: 47000,
            last: 47999,
        },
    );
    sfu_config.limits.chat_rate = 1e9;
    sfu_config.limits.chat_burst = u32::MAX;
    sfu_config.limits.control_rate = 1e9;
    sfu_config.limits.control_burst = u32::MAX;
    sfu_config.max_participants = 10_000;
    let sfu_state = sfu::SfuState::new(
        &sfu_config,
        Arc::new(sfu::LogReporter),
        &prometheus::Registry::new(),
    )
    .unwrap();
    let sfu_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sfu_addr = sfu_listener.local_addr().unwrap();
    let sfu_app = sfu::router(sfu_state);
    tokio::spawn(async move {
        axum::serve(
            sfu_listener,
            sfu_app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // A conference placed on the pod, as the operator leaves it: that is what lets the relay
    // reach the pod at all.
    let conferences: Api<crds::Conference> = Api::namespaced(fake.client(), "default");
    let object: crds::Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": "bench", "labels": {
            "conclave.dev/meeting-id": "123454321", "conclave.dev/sfu-pod": POD } },
        "spec": { "topic": "Bench", "owner": "admin", "meetingId": "123454321",
                  "schedule": { "permanent": true } },
    }))
    .unwrap();
    conferences
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    let status = json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "status": { "phase": "Ready", "assignment": {
            "pod": POD, "endpoint": format!("ws://{sfu_addr}/rtc"),
            "udpPorts": { "first": 47000, "last": 47999 }, "reserved": 10 } }
    });
    conferences
        .patch_status(
            "bench",
            &PatchParams::apply("conclave-operator").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();

    let bench = Arc::new(Bench {
        key: TokenKey::new(secret.as_bytes()).unwrap(),
        direct: format!("ws://{sfu_addr}/rtc"),
        relayed: format!("ws://{api_addr}/rtc/{POD}"),
    });
    let mut results = serde_json::Map::new();
    for (name, relayed) in [("direct", false), ("relayed", true)] {
        let joined = connect_and_join(&bench, relayed, joins).await;
        let chatted = chat(&bench, relayed, messages, clients).await;
        results.insert(name.into(), json!({"connect": joined, "chat": chatted}));
        eprintln!("{name} done");
    }
    let diff = |pointer: &str| {
        let get = |path: &str| {
            results
                .get(path)
                .and_then(|v| v.pointer(pointer))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        get("relayed") - get("direct")
    };
    let overhead = json!({
        "connectP50Ms": diff("/connect/connectMs/p50"),
        "joinP50Ms": diff("/connect/joinMs/p50"),
        "chatP50Ms": diff("/chat/sequential/roundTripMs/p50"),
        "chatP99Ms": diff("/chat/sequential/roundTripMs/p99"),
        "chatConcurrentP50Ms": diff("/chat/concurrent/roundTripMs/p50"),
        "chatConcurrentP99Ms": diff("/chat/concurrent/roundTripMs/p99"),
        "cpuUsPerMessage": diff("/chat/sequential/cpuUsPerMessage"),
    });
    let report = json!({
        "machine": format!("{} cores", std::thread::available_parallelism().map_or(0, |n| n.get())),
        "messages": messages,
        "joins": joins,
        "results": results,
        "relayOverhead": overhead,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let out = std::path::Path::new(&target).join("bench-results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("rtc-proxy.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    state.db.pool.close().await;
}
