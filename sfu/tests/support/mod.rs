//! Shared by the SFU's WebRTC tests: an SFU on loopback and join tokens.
#![allow(dead_code)]

pub mod cluster;
pub mod recorded;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use loadgen::Client;
use proto::signal::{ClientMessage, ServerMessage};
use proto::token::JOIN_AUDIENCE;
use proto::{
    ConferenceId, JoinClaims, Media, MeetingId, Role, RoomEvent, RoomReport, RoomSettings,
    TokenKey, UdpPorts,
};
use sfu::{Config, Reporter, SfuState};

pub const SECRET: &str = "test-secret-test-secret-test-secret!";
pub const WAIT: Duration = Duration::from_secs(10);

/// Waits until `client` has received more than 20 packets of both the audio and the video
/// track of the participant `publisher` (its ID).
///
/// # Panics
/// When that does not happen within [`WAIT`], naming `what`.
pub async fn receives_audio_and_video(client: &Client, publisher: &str, what: &str) {
    client
        .wait_received(WAIT, |r| {
            r.values()
                .filter(|t| t.publisher == publisher && t.packets > 20)
                .count()
                == 2
        })
        .await
        .unwrap_or_else(|err| panic!("{what}: {err:#}"));
}

/// A `net.core` sysctl of this network namespace's kernel, e.g. `rmem_max`.
pub fn net_core(sysctl: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/sys/net/core/{sysctl}"))
        .unwrap_or_else(|err| panic!("net.core.{sysctl}: {err}"))
        .trim()
        .parse()
        .unwrap_or_else(|err| panic!("net.core.{sysctl}: {err}"))
}

/// The value of one series — its name with its labels, as `/metrics` writes it — in a metrics
/// text; panics when the series is not there.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

/// Records reports.
#[derive(Default)]
pub struct Recorder(
    pub parking_lot::Mutex<Vec<RoomReport>>,
    pub tokio::sync::Notify,
);

impl Reporter for Recorder {
    fn report(&self, report: RoomReport) {
        self.0.lock().push(report);
        self.1.notify_waiters();
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<RoomEvent> {
        self.0.lock().iter().map(|r| r.event.clone()).collect()
    }

    /// Waits until a report's event satisfies `found`, and returns it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        found: impl Fn(&RoomEvent) -> bool,
    ) -> Option<RoomEvent> {
        tokio::time::timeout(timeout, async {
            loop {
                let changed = self.1.notified();
                if let Some(event) = self.events().into_iter().find(|e| found(e)) {
                    return event;
                }
                changed.await;
            }
        })
        .await
        .ok()
    }
}

pub struct Sfu {
    pub addr: SocketAddr,
    pub state: SfuState,
    pub key: TokenKey,
    pub reports: Arc<Recorder>,
    pub registry: prometheus::Registry,
}

/// Starts an SFU on 127.0.0.1 with peer connections on `ports`.
pub async fn start(ports: UdpPorts) -> Sfu {
    start_with(Config::for_loopback(SECRET, ports)).await
}

/// Starts an SFU with `config` (made by `Config::for_loopback(SECRET, …)`).
pub async fn start_with(config: Config) -> Sfu {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "sfu=info,warn".into()))
        .with_test_writer()
        .try_init();
    let reports = Arc::new(Recorder::default());
    let registry = prometheus::Registry::new();
    let state = SfuState::new(&config, reports.clone(), &registry).expect("state");
    let app = sfu::router(state.clone()).merge(sfu::metrics_router(registry.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Sfu {
        addr,
        state,
        key: TokenKey::new(SECRET.as_bytes()).expect("key"),
        reports,
        registry,
    }
}

pub fn ports() -> UdpPorts {
    UdpPorts {
        first: 42000,
        last: 42999,
    }
}

pub fn conference() -> ConferenceId {
    ConferenceId::from("c1")
}

pub fn claims(sub: &str, role: Role, owner: bool) -> JoinClaims {
    let now = Utc::now().timestamp();
    JoinClaims {
        sub: sub.into(),
        name: sub.to_uppercase(),
        conf: conference(),
        mid: MeetingId::from("123456789"),
        role,
        level: None,
        owner,
        room: RoomSettings {
            max_participants: None,
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
        jti: format!("jti-{sub}-{}", rand::random::<u32>()),
        rid: None,
        ep: 0,
        cli: None,
        pod: None,
    }
}

impl Sfu {
    pub fn token(&self, claims: &JoinClaims) -> String {
        self.key.sign_join(claims).expect("sign")
    }

    pub async fn join(&self, claims: &JoinClaims) -> Client {
        Client::join(self.addr, &self.token(claims), &claims.conf)
            .await
            .expect("join")
    }

    pub fn metrics(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encode");
        String::from_utf8(out).expect("utf8")
    }
}

/// A websocket to `/rtc` that a test drives by hand (it reads only when told to, so it can
/// stall), optionally claiming to come from `forwarded_for` through a proxy.
pub type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/rtc` without joining. An HTTP refusal comes back as `Err(status)`.
pub async fn connect_raw(addr: SocketAddr, forwarded_for: Option<&str>) -> Result<RawSocket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/rtc")
        .into_client_request()
        .expect("request");
    if let Some(hop) = forwarded_for {
        request
            .headers_mut()
            .insert("x-forwarded-for", hop.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("connecting failed: {err}"),
    }
}

/// Sends `join` on a raw socket and returns the first answer.
pub async fn join_raw(ws: &mut RawSocket, token: &str, conference: &ConferenceId) -> ServerMessage {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let join = ClientMessage::Join {
        token: token.to_owned(),
        conference: conference.clone(),
        receive_codecs: None,
    };
    ws.send(Message::text(serde_json::to_string(&join).expect("json")))
        .await
        .expect("send join");
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("a server message");
        }
    }
}
