//! The signaling relay: `/rtc/{pod}` on this service's public address carries a client's
//! signaling websocket to SFU pod `{pod}` over the cluster network, so that a cluster needs one
//! public host name and one certificate — the portal's — for signaling too
//! (`--sfu-signaling-via-api`).
//!
//! - **No open proxy**: only a pod that holds an assignment now can be reached, and only at the
//!   endpoint the operator recorded in the assignment (filled in from the pod's
//!   `conclave.dev/endpoint` annotation). An unknown pod is a 404 before any upgrade.
//! - **The real client reaches the SFU**: the client's address, as [`crate::address`] decided
//!   it behind this service's own trusted proxies, goes upstream as the only `X-Forwarded-For`
//!   hop, and the request's ID as `X-Request-Id`. Nothing else of the client's request is passed
//!   on (no cookie, no `Authorization`): the SFU admits by the join token in the first message.
//! - **Faithful**: text, binary, ping, pong and close frames go through as they came, close
//!   codes and reasons included (the SFU's `closed` reasons and close frames drive the portal).
//!   When one side closes, the close goes to the other side, which gets a moment to answer.
//! - **Bounded**: each direction moves one message at a time (a slow reader slows its writer
//!   down through TCP instead of filling a queue), writes give up after [`SEND_TIMEOUT`], a
//!   client's messages are capped at the SFU's own 256 KiB ([`MAX_CLIENT_MESSAGE_BYTES`]),
//!   the SFU's at [`MAX_SFU_MESSAGE_BYTES`], and a replica relays at most
//!   `--rtc-proxy-max-sessions` websockets at once.
//! - **Alive**: the relay answers pings itself (the websocket library does), so the SFU cannot
//!   tell a vanished client from a quiet one by its pongs any more; the relay therefore lets a
//!   client go that sent nothing for `--rtc-proxy-idle-seconds` (the SFU's pings, passed on,
//!   make a live client answer) and tells the SFU.
//! - **Draining**: on shutdown the relays go on for `--rtc-proxy-drain-seconds`, then close
//!   with 1012 `apiShutdown`; clients reconnect through another replica.
//!
//! The relay's own close reasons are not the SFU's words where the pod is fine: `apiShutdown`
//! (this replica stops) differs from the SFU's `shutdown`, and only `1014 sfuGone` says the pod's
//! connection broke — what a client that rejoins tells the API as the pod it lost.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{self, WebSocket};
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use prometheus::{IntCounterVec, IntGauge};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self as ts};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::conference::Placed;
use crate::metrics::Metrics;
use crate::store::ConferenceStore;
use crate::{Error, Result};

/// The largest message (and frame) a client may send: the SFU's own limit, so an oversized one
/// is refused here instead of being carried to the pod first.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 256 * 1024;
/// The largest message the relay takes from an SFU pod: a `joined` of a full room with its chat
/// history (100 messages of up to 4 KiB) is about half a MiB.
pub const MAX_SFU_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long one write to either side may take before the relay gives that side up.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a side gets to answer a close (and the relay to deliver its own).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Read and write buffers per websocket; messages larger than this still pass (the buffers
/// grow for them), but an idle relay holds little memory.
const BUFFER_BYTES: usize = 16 * 1024;
/// The longest explanation taken from an SFU pod's refusal.
const MAX_REFUSAL_BYTES: usize = 512;

/// The `reason` labels of `conclave_api_rtc_upstream_failures_total`.
pub const UPSTREAM_FAILURES: [&str; 3] = ["timeout", "unreachable", "refused"];

/// The websocket to an SFU pod.
pub type SfuSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a pod's signaling websocket is: what an assignment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The SFU pod.
    pub pod: String,
    /// Its signaling URL in the cluster (`ws://…`).
    pub url: String,
}

/// Whether a pod's endpoint can be relayed to: a `ws://` URL with a host (the relay speaks plain
/// websockets over the cluster network; a `wss://` endpoint is for clients that connect to the
/// pod themselves).
pub fn relayable(endpoint: &str) -> bool {
    endpoint
        .parse::<http::Uri>()
        .is_ok_and(|uri| uri.scheme_str() == Some("ws") && uri.host().is_some())
}

/// Whether `pod` can be a Kubernetes pod name (a DNS subdomain: lowercase letters, digits, `-`
/// and `.`), and so sit in a URL path as it is.
pub fn is_pod_name(pod: &str) -> bool {
    (1..=253).contains(&pod.len())
        && pod
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// The signaling URL a client gets from `/join` for a conference placed on `placed`: with
/// `via_api`, this service's `<public URL>/rtc/<pod>` (ws:// for http, wss:// for https);
/// otherwise, or when the pod's endpoint cannot be relayed to, the pod's own endpoint.
pub fn client_endpoint(public_url: &str, placed: &Placed, via_api: bool) -> String {
    if !via_api {
        return placed.endpoint.clone();
    }
    if !is_pod_name(&placed.pod) || !relayable(&placed.endpoint) {
        tracing::warn!(
            pod = %placed.pod,
            "--sfu-signaling-via-api: the pod's endpoint is no ws:// URL in the cluster, so clients get it as it is; \
             set the pods' conclave.dev/endpoint to e.g. ws://{{podIP}}:7880/rtc (the chart's sfu.signaling=viaApi does)"
        );
        return placed.endpoint.clone();
    }
    let base = public_url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}/rtc/{}", placed.pod)
}

/// The upstream of `/rtc/{pod}`: the endpoint of a conference assigned to `pod` now.
///
/// # Errors
/// 404 when no conference is assigned to `pod` (or the store places conferences on the
/// embedded SFU itself, whose `/rtc` clients reach directly); a store failure.
pub async fn upstream_of(store: &dyn ConferenceStore, pod: &str) -> Result<Upstream> {
    if !store.placed_by_operator() {
        return Err(Error::not_found(
            "this service runs the SFU itself: open the endpoint POST /api/v1/join answered (/rtc)",
        ));
    }
    let unknown = || {
        Error::not_found(format!(
            "no meeting is placed on the SFU pod {pod:?} now; join again through POST /api/v1/join for the current endpoint"
        ))
    };
    if !is_pod_name(pod) {
        return Err(unknown());
    }
    let assigned = store.assigned_to(pod).await?;
    // Every assignment of one pod names the same endpoint (one annotation per pod); one that
    // cannot be relayed to is skipped, never dialled.
    let Some((_, placed)) = assigned.into_iter().find(|(_, p)| relayable(&p.endpoint)) else {
        return Err(unknown());
    };
    Ok(Upstream {
        pod: pod.to_owned(),
        url: placed.endpoint,
    })
}

/// The relays of one replica: their count against `--rtc-proxy-max-sessions`, their metrics,
/// and the signal that ends them at shutdown.
#[derive(Debug, Clone)]
pub struct Relays {
    inner: Arc<RelaysInner>,
}

#[derive(Debug)]
struct RelaysInner {
    max: usize,
    active: watch::Sender<usize>,
    stop: watch::Sender<bool>,
    sessions: IntGauge,
    failures: IntCounterVec,
    closed: IntCounterVec,
}

impl Relays {
    /// At most `max` relays at once, counted in `metrics`.
    pub fn new(max: u32, metrics: &Metrics) -> Self {
        Self {
            inner: Arc::new(RelaysInner {
                max: usize::try_from(max).unwrap_or(usize::MAX),
                active: watch::channel(0).0,
                stop: watch::channel(false).0,
                sessions: metrics.rtc_sessions.clone(),
                failures: metrics.rtc_upstream_failures.clone(),
                closed: metrics.rtc_closed.clone(),
            }),
        }
    }

    /// Relays open now.
    pub fn active(&self) -> usize {
        *self.inner.active.borrow()
    }

    /// A place for one more relay, held until the relay ends.
    ///
    /// # Errors
    /// 503 `busy` when `--rtc-proxy-max-sessions` relays are open, or the replica is stopping.
    pub fn admit(&self) -> Result<Permit> {
        let busy = Error::Busy { retry_after: 2 };
        if *self.inner.stop.borrow() {
            return Err(busy);
        }
        let max = self.inner.max;
        let admitted = self.inner.active.send_if_modified(|active| {
            if *active < max {
                *active += 1;
                true
            } else {
                false
            }
        });
        if !admitted {
            tracing::warn!(
                max,
                "--rtc-proxy-max-sessions relays are open; refusing another"
            );
            return Err(busy);
        }
        self.inner.sessions.inc();
        Ok(Permit {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Lets the open relays go on for up to `grace` (the listener takes no new ones any more),
    /// then closes those left with 1012 `apiShutdown` and waits briefly for their close frames.
    pub async fn drain(&self, grace: Duration) {
        let mut active = self.inner.active.subscribe();
        let open = *active.borrow();
        if open == 0 {
            self.inner.stop.send_replace(true);
            return;
        }
        tracing::info!(
            open,
            seconds = grace.as_secs(),
            "relayed signaling websockets draining"
        );
        let ended = tokio::time::timeout(grace, active.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|waited| waited.is_ok());
        self.inner.stop.send_replace(true);
        if !ended {
            let left = *active.borrow();
            tracing::info!(
                open = left,
                "closing the relayed signaling websockets still open (1012 apiShutdown); their clients reconnect"
            );
            let _ = tokio::time::timeout(CLOSE_TIMEOUT * 3, active.wait_for(|n| *n == 0)).await;
        }
    }

    fn failed(&self, reason: &str) {
        self.inner.failures.with_label_values(&[reason]).inc();
    }
}

/// One relay's place among `--rtc-proxy-max-sessions`; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<RelaysInner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner
            .active
            .send_modify(|active| *active = active.saturating_sub(1));
        self.inner.sessions.dec();
    }
}

/// Opens the websocket of `upstream` on behalf of a client at `client` (its address as this
/// service decided it) with the request ID `request_id`, within `timeout`.
///
/// # Errors
/// 502 `sfuUnreachable` when the pod does not answer in time or cannot be reached; the pod's
/// own HTTP refusal (status and explanation) as `sfuRefused`.
pub async fn connect(
    relays: &Relays,
    upstream: &Upstream,
    client: Option<IpAddr>,
    request_id: Option<&str>,
    timeout: Duration,
) -> Result<SfuSocket> {
    let unreachable = |what: &str| {
        Error::SfuUnreachable(format!(
            "the media server of this meeting ({}) {what}; join again through POST /api/v1/join",
            upstream.pod
        ))
    };
    let mut request = upstream.url.as_str().into_client_request().map_err(|err| {
        tracing::warn!(pod = %upstream.pod, cause = %err, "the pod's signaling endpoint is no websocket URL");
        relays.failed("unreachable");
        unreachable("has no usable address")
    })?;
    let headers = request.headers_mut();
    if let Some(value) = client.and_then(|ip| http::HeaderValue::from_str(&ip.to_string()).ok()) {
        headers.insert("x-forwarded-for", value);
    }
    if let Some(value) = request_id.and_then(|id| http::HeaderValue::from_str(id).ok()) {
        headers.insert("x-request-id", value);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(BUFFER_BYTES + 2 * MAX_CLIENT_MESSAGE_BYTES)
        .max_message_size(Some(MAX_SFU_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_SFU_MESSAGE_BYTES));
    let started = Instant::now();
    let connected = tokio::time::timeout(
        timeout,
        // No Nagle: signaling messages are small and each one waits for the one before.
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await;
    match connected {
        Ok(Ok((socket, _))) => {
            tracing::debug!(pod = %upstream.pod, millis = started.elapsed().as_millis(), "connected to the SFU pod");
            Ok(socket)
        }
        Ok(Err(ts::Error::Http(response))) => {
            relays.failed("refused");
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let mut message: String = body.trim().chars().take(MAX_REFUSAL_BYTES).collect();
            if message.is_empty() {
                message = format!("the media server refused the connection ({status})");
            }
            tracing::info!(pod = %upstream.pod, %status, "the SFU pod refused a relayed websocket");
            if status.is_client_error() || status.is_server_error() {
                Err(Error::SfuRefused { status, message })
            } else {
                Err(unreachable("answered with no websocket"))
            }
        }
        Ok(Err(err)) => {
            relays.failed("unreachable");
            tracing::warn!(pod = %upstream.pod, cause = %err, "cannot reach the SFU pod's signaling websocket");
            Err(unreachable("cannot be reached"))
        }
        Err(_) => {
            relays.failed("timeout");
            tracing::warn!(pod = %upstream.pod, seconds = timeout.as_secs(), "the SFU pod's signaling websocket did not answer in time");
            Err(unreachable("did not answer in time"))
        }
    }
}

/// How the client side of a relay is configured (the same caps as the SFU's own `/rtc`).
pub fn client_limits(upgrade: ws::WebSocketUpgrade) -> ws::WebSocketUpgrade {
    upgrade
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        .max_write_buffer_size(BUFFER_BYTES + 2 * MAX_SFU_MESSAGE_BYTES)
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
}

/// A close frame the relay sends itself: code and reason, or none.
type Frame = Option<(u16, &'static str)>;

/// Why a relay ended: the `reason` label of `conclave_api_rtc_proxy_closed_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed (its close frame went to the SFU).
    ClientClosed,
    /// The SFU closed (its close frame went to the client).
    SfuClosed,
    /// The client's connection ended without a close frame.
    ClientGone,
    /// The SFU's connection ended without a close frame, or a write to it failed.
    SfuGone,
    /// The client sent nothing for `--rtc-proxy-idle-seconds`.
    Unresponsive,
    /// A write to the client took longer than [`SEND_TIMEOUT`].
    TooSlow,
    /// A message above the size limits.
    TooLarge,
    /// The replica stopped.
    Shutdown,
}

impl End {
    /// Every label value, for pre-registering the metric's series.
    pub const REASONS: [&'static str; 8] = [
        "clientClosed",
        "sfuClosed",
        "clientGone",
        "sfuGone",
        "unresponsive",
        "tooSlow",
        "tooLarge",
        "shutdown",
    ];

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            End::ClientClosed => "clientClosed",
            End::SfuClosed => "sfuClosed",
            End::ClientGone => "clientGone",
            End::SfuGone => "sfuGone",
            End::Unresponsive => "unresponsive",
            End::TooSlow => "tooSlow",
            End::TooLarge => "tooLarge",
            End::Shutdown => "shutdown",
        }
    }

    /// The close frames the relay itself sends when it ends for this reason: to the client and
    /// to the SFU. `None` where the side closed itself (its frame was passed on) or is gone.
    fn frames(&self) -> (Frame, Frame) {
        // 1001 going away, 1008 policy, 1009 too big, 1012 service restart, 1014 bad gateway.
        match self {
            End::ClientClosed | End::SfuClosed => (None, None),
            End::ClientGone => (None, Some((1001, "gone"))),
            End::SfuGone => (Some((1014, "sfuGone")), None),
            End::Unresponsive => (Some((1008, "unresponsive")), Some((1001, "unresponsive"))),
            End::TooSlow => (Some((1008, "tooSlow")), Some((1001, "tooSlow"))),
            End::TooLarge => (Some((1009, "tooLarge")), Some((1001, "tooLarge"))),
            // Not the SFU's `shutdown`: the pod is fine, only this relay stops.
            End::Shutdown => (Some((1012, "apiShutdown")), Some((1001, "apiShutdown"))),
        }
    }
}

type ClientTx = SplitSink<WebSocket, ws::Message>;
type ClientRx = SplitStream<WebSocket>;
type SfuTx = SplitSink<SfuSocket, ts::Message>;
type SfuRx = SplitStream<SfuSocket>;

/// Relays between `client` and `sfu` until either ends, holding `permit` meanwhile; a client
/// silent for `idle` is let go.
pub async fn run(client: WebSocket, sfu: SfuSocket, permit: Permit, pod: String, idle: Duration) {
    let started = Instant::now();
    tracing::info!(%pod, "relaying a signaling websocket");
    let (mut client_tx, mut client_rx) = client.split();
    let (mut sfu_tx, mut sfu_rx) = sfu.split();
    let mut stop = permit.inner.stop.subscribe();
    let end = tokio::select! {
        end = client_to_sfu(&mut client_rx, &mut sfu_tx, idle) => end,
        end = sfu_to_client(&mut sfu_rx, &mut client_tx) => end,
        _ = stop.wait_for(|stop| *stop) => End::Shutdown,
    };
    permit.inner.closed.with_label_values(&[end.as_str()]).inc();
    let (to_client, to_sfu) = end.frames();
    // The relay's own close frames, then a moment for each side to answer the close it got
    // (the websocket library sends the answer to a close it read while the sink closes).
    let closing_client = async {
        if let Some((code, reason)) = to_client {
            let frame = ws::CloseFrame {
                code,
                reason: ws::Utf8Bytes::from_static(reason),
            };
            let _ = client_tx.send(ws::Message::Close(Some(frame))).await;
        }
        let _ = client_tx.close().await;
        while let Some(Ok(_)) = client_rx.next().await {}
    };
    let closing_sfu = async {
        if let Some((code, reason)) = to_sfu {
            let frame = ts::protocol::CloseFrame {
                code: CloseCode::from(code),
                reason: ts::Utf8Bytes::from_static(reason),
            };
            let _ = sfu_tx.send(ts::Message::Close(Some(frame))).await;
        }
        let _ = sfu_tx.close().await;
        while let Some(Ok(_)) = sfu_rx.next().await {}
    };
    let _ = tokio::time::timeout(
        CLOSE_TIMEOUT,
        futures::future::join(closing_client, closing_sfu),
    )
    .await;
    tracing::info!(%pod, reason = end.as_str(), seconds = started.elapsed().as_secs(), "relayed signaling websocket ended");
    drop(permit);
}

/// Whether a read failed on a message above the size limit.
fn too_large(err: &ts::Error) -> bool {
    matches!(err, ts::Error::Capacity(_))
}

/// The client's messages to the SFU, until one side ends.
async fn client_to_sfu(rx: &mut ClientRx, tx: &mut SfuTx, idle: Duration) -> End {
    loop {
        let message = match tokio::time::timeout(idle, rx.next()).await {
            Err(_) => return End::Unresponsive,
            Ok(None) => return End::ClientGone,
            Ok(Some(Err(err))) => {
                let large = err
                    .into_inner()
                    .downcast_ref::<ts::Error>()
                    .is_some_and(too_large);
                return if large {
                    End::TooLarge
                } else {
                    End::ClientGone
                };
            }
            Ok(Some(Ok(message))) => message,
        };
        let closing = matches!(message, ws::Message::Close(_));
        let message = match message {
            ws::Message::Text(text) => {
                let bytes = Bytes::from(text);
                match ts::Utf8Bytes::try_from(bytes.clone()) {
                    Ok(text) => ts::Message::Text(text),
                    Err(_) => ts::Message::Binary(bytes),
                }
            }
            ws::Message::Binary(data) => ts::Message::Binary(data),
            ws::Message::Ping(data) => ts::Message::Ping(data),
            ws::Message::Pong(data) => ts::Message::Pong(data),
            ws::Message::Close(frame) => {
                ts::Message::Close(frame.map(|frame| ts::protocol::CloseFrame {
                    code: CloseCode::from(frame.code),
                    reason: ts::Utf8Bytes::from(frame.reason.as_str()),
                }))
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, tx.send(message)).await {
            Ok(Ok(())) => {}
            // A pod that stops reading is as good as gone for this client.
            Ok(Err(_)) | Err(_) => return End::SfuGone,
        }
        if closing {
            return End::ClientClosed;
        }
    }
}

/// The SFU's messages to the client, until one side ends.
async fn sfu_to_client(rx: &mut SfuRx, tx: &mut ClientTx) -> End {
    loop {
        let message = match rx.next().await {
            None => return End::SfuGone,
            Some(Err(err)) => {
                return if too_large(&err) {
                    End::TooLarge
                } else {
                    End::SfuGone
                };
            }
            Some(Ok(message)) => message,
        };
        let closing = matches!(message, ts::Message::Close(_));
        let message = match message {
            ts::Message::Text(text) => {
                let bytes = Bytes::from(text);
                match ws::Utf8Bytes::try_from(bytes.clone()) {
                    Ok(text) => ws::Message::Text(text),
                    Err(_) => ws::Message::Binary(bytes),
                }
            }
            ts::Message::Binary(data) => ws::Message::Binary(data),
            ts::Message::Ping(data) => ws::Message::Ping(data),
            ts::Message::Pong(data) => ws::Message::Pong(data),
            ts::Message::Close(frame) => ws::Message::Close(frame.map(|frame| ws::CloseFrame {
                code: u16::from(frame.code),
                reason: ws::Utf8Bytes::from(frame.reason.as_str()),
            })),
            // Raw frames are what one writes, never what a read yields.
            ts::Message::Frame(_) => continue,
        };
        match tokio::time::timeout(SEND_TIMEOUT, tx.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return End::ClientGone,
            Err(_) => return End::TooSlow,
        }
        if closing {
            return End::SfuClosed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement::PortRange;

    fn placed(pod: &str, endpoint: &str) -> Placed {
        Placed {
            pod: pod.to_owned(),
            endpoint: endpoint.to_owned(),
            udp_ports: PortRange {
                first: 40000,
                last: 40099,
            },
        }
    }

    #[test]
    fn clients_get_the_relay_on_the_public_address_when_signaling_goes_through_the_api() {
        let on_pod = placed("meet-conclave-sfu-1", "ws://10.1.2.3:7880/rtc");
        assert_eq!(
            client_endpoint("https://meet.example.com/", &on_pod, true),
            "wss://meet.example.com/rtc/meet-conclave-sfu-1"
        );
        assert_eq!(
            client_endpoint("http://127.0.0.1:8080", &on_pod, true),
            "ws://127.0.0.1:8080/rtc/meet-conclave-sfu-1"
        );
        assert_eq!(
            client_endpoint("https://example.com/meet", &on_pod, true),
            "wss://example.com/meet/rtc/meet-conclave-sfu-1"
        );
        assert_eq!(
            client_endpoint("https://meet.example.com", &on_pod, false),
            "ws://10.1.2.3:7880/rtc"
        );
    }

    #[test]
    fn an_endpoint_the_relay_cannot_reach_is_given_to_clients_as_it_is() {
        let public = placed("sfu-0", "wss://sfu-0.sfu.example.com/rtc");
        assert_eq!(
            client_endpoint("https://meet.example.com", &public, true),
            "wss://sfu-0.sfu.example.com/rtc"
        );
        let odd = placed("Sfu_0", "ws://10.1.2.3:7880/rtc");
        assert_eq!(
            client_endpoint("https://meet.example.com", &odd, true),
            "ws://10.1.2.3:7880/rtc"
        );
    }

    #[test]
    fn only_plain_websocket_urls_with_a_host_are_relayed_to() {
        assert!(relayable("ws://10.1.2.3:7880/rtc"));
        assert!(relayable("ws://sfu-0.sfu-headless.conclave.svc:7880/rtc"));
        assert!(!relayable("wss://sfu-0.example.com/rtc"));
        assert!(!relayable("http://10.1.2.3:7880/rtc"));
        assert!(!relayable("ws:///rtc"));
        assert!(!relayable("not a url"));
    }

    #[test]
    fn pod_names_are_dns_subdomains() {
        assert!(is_pod_name("meet-conclave-sfu-0"));
        assert!(!is_pod_name(""));
        assert!(!is_pod_name("../admin"));
        assert!(!is_pod_name("sfu-0?x=1"));
        assert!(!is_pod_name("SFU-0"));
        assert!(!is_pod_name(&"a".repeat(254)));
    }

    #[test]
    fn the_relay_closes_with_the_codes_it_documents() {
        assert_eq!(End::Shutdown.frames().0, Some((1012, "apiShutdown")));
        assert_eq!(End::Unresponsive.frames().0, Some((1008, "unresponsive")));
        assert_eq!(End::SfuClosed.frames(), (None, None));
        for end in [
            End::ClientClosed,
            End::SfuClosed,
            End::ClientGone,
            End::SfuGone,
            End::Unresponsive,
            End::TooSlow,
            End::TooLarge,
            End::Shutdown,
        ] {
            assert!(End::REASONS.contains(&end.as_str()));
        }
    }

    #[tokio::test]
    async fn a_full_replica_refuses_more_relays_and_counts_them() {
        let metrics = Metrics::new();
        let relays = Relays::new(2, &metrics);
        let first = relays.admit().expect("a place");
        let second = relays.admit().expect("a place");
        assert!(matches!(relays.admit(), Err(Error::Busy { .. })));
        assert_eq!(metrics.rtc_sessions.get(), 2);
        drop(first);
        assert_eq!(relays.active(), 1);
        let third = relays.admit().expect("a place again");
        drop((second, third));
        assert_eq!(metrics.rtc_sessions.get(), 0);
        relays.drain(Duration::from_secs(1)).await;
        assert!(
            matches!(relays.admit(), Err(Error::Busy { .. })),
            "a stopping replica takes no more"
        );
    }
}
