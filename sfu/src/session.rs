//! One participant's signaling websocket: join, then relay between the client, the room's
//! core and the participant's two peer connections.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use proto::signal::{
    ClientMessage, CloseReason, ErrorCode, IceCandidate, MAX_TRACK_VIEWS, PeerTarget,
    ServerMessage, TrackKind,
};
use proto::{JoinClaims, ParticipantId, TokenError, TrackId, UdpPorts};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCIceConnectionState, RTCPeerConnectionState,
    RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::backlog::Backlog;
use crate::error::MediaError;
use crate::media::{self, Downstream, FeedbackSink, Forwarder, PeerEvent, SubscriberLink};
use crate::metrics::FailureCause;
use crate::negotiation;
use crate::ports::PortLease;
use crate::room::{Effect, Refusal, Room, SessionId};
use crate::server::{PendingGuard, RoomHandle, SessionLink, SfuState};

/// A ticket that could not be signed (cannot happen with an HMAC key; logged if it does).
fn signing(err: TokenError) -> Refusal {
    warn!(cause = %err, "signing a presentation ticket failed");
    Refusal {
        code: ErrorCode::Internal,
        message: "the ticket could not be made; try again".into(),
    }
}

/// Longest signaling message accepted (SDP of many tracks fits easily), and the largest
/// websocket frame: nothing bigger is ever buffered.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// How long the last words (the `closed` message and the close frame) may take to a client
/// that is not reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a client has to send `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the room asks a session to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Boxed: `joined` is large, and the session's queue holds many commands.
    Send(Box<ServerMessage>),
    Close(CloseReason),
    Admit(ParticipantId),
    Subscribe(Arc<Forwarder>),
    Unsubscribe(TrackId),
}

/// The client's address: the websocket's peer, or — when the peer is a trusted proxy
/// (`--sfu-trusted-proxies`) — the rightmost X-Forwarded-For hop that is not one. `None` when
/// the server was started without connect info.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddress(pub(crate) Option<IpAddr>);

impl FromRequestParts<SfuState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SfuState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let proxies = &state.shared.wire.trusted_proxies;
        let trusted = |ip: IpAddr| proxies.iter().any(|net| net.contains(ip));
        let Some(peer) = peer.filter(|ip| trusted(*ip)) else {
            return Ok(ClientAddress(peer));
        };
        let hops: Vec<IpAddr> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        let client = hops.iter().rev().find(|ip| !trusted(**ip)).copied();
        Ok(ClientAddress(Some(
            client.or(hops.first().copied()).unwrap_or(peer),
        )))
    }
}

/// `/rtc`: counts the websocket as not joined yet (refusing it when its network or the SFU
/// has too many such), then upgrades with frames and messages capped at
/// [`MAX_MESSAGE_BYTES`].
pub(crate) async fn upgrade(
    State(state): State<SfuState>,
    ClientAddress(address): ClientAddress,
    ws: WebSocketUpgrade,
) -> Response {
    let pending = match state.enter_pending(address.and_then(proto::client_network)) {
        Ok(pending) => pending,
        Err(refusal) => {
            state
                .shared
                .metrics
                .connections_refused
                .with_label_values(&[refusal.as_str()])
                .inc();
            debug!(
                reason = refusal.as_str(),
                "a websocket was refused before join"
            );
            return match refusal {
                crate::server::PendingRefusal::PerAddress => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from your network are joining at once; try again",
                ),
                crate::server::PendingRefusal::Total => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this SFU has too many connections joining at once; try again",
                ),
            }
            .into_response();
        }
    };
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            state.shared.sessions.fetch_add(1, Ordering::AcqRel);
            let session = SessionId(state.shared.next_session.fetch_add(1, Ordering::AcqRel));
            run(state.clone(), session, socket, pending, address)
                .instrument(
                    info_span!("session", session = %session, request_id = tracing::field::Empty),
                )
                .await;
            state.shared.sessions.fetch_sub(1, Ordering::AcqRel);
        })
}

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::Error {
        code,
        message: message.into(),
    }
}

struct Socket {
    ws: WebSocket,
    state: SfuState,
    /// Rung by the room when this session's queue overflowed.
    too_slow: Arc<Notify>,
    /// Set when a write failed or took too long: the session ends with this reason.
    broken: Option<CloseReason>,
}

impl Socket {
    /// Writes one message, within `--sfu-send-timeout-seconds`. A write that fails, times
    /// out or is cut short by the room's bell marks the socket broken and returns `false`.
    async fn send(&mut self, message: &ServerMessage) -> bool {
        if self.broken.is_some() {
            return false;
        }
        if let ServerMessage::Error { code, .. } = message {
            self.state
                .shared
                .metrics
                .signaling_errors
                .with_label_values(&[code.as_str()])
                .inc();
        }
        let text = match serde_json::to_string(message) {
            Ok(text) => text,
            Err(err) => {
                warn!(cause = %err, "encoding a signaling message failed");
                return true;
            }
        };
        let timeout = Duration::from_secs(self.state.shared.wire.send_timeout_seconds);
        let written = tokio::select! {
            written = tokio::time::timeout(timeout, self.ws.send(Message::Text(Utf8Bytes::from(text)))) => written,
            () = self.too_slow.notified() => {
                self.broken = Some(CloseReason::TooSlow);
                return false;
            }
        };
        match written {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                debug!(cause = %err, "writing to the websocket failed");
                self.broken = Some(CloseReason::Gone);
                false
            }
            Err(_) => {
                warn!("a write to the websocket took too long; disconnecting the session");
                self.broken = Some(CloseReason::TooSlow);
                false
            }
        }
    }

    /// Says goodbye: `closed {reason}` and a close frame whose reason is the same word, each
    /// within [`CLOSE_TIMEOUT`] (a client that is not reading gets its connection dropped), then
    /// waits as long for the client's close frame.
    async fn close(&mut self, reason: Option<CloseReason>) {
        let frame = reason.map(|reason| CloseFrame {
            code: close_code(reason),
            reason: Utf8Bytes::from_static(reason.as_str()),
        });
        if let Some(reason) = reason
            && self.broken.is_none()
        {
            let text = serde_json::to_string(&ServerMessage::Closed { reason }).unwrap_or_default();
            let _ = tokio::time::timeout(
                CLOSE_TIMEOUT,
                self.ws.send(Message::Text(Utf8Bytes::from(text))),
            )
            .await;
        }
        let sent = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.send(Message::Close(frame))).await;
        if self.broken.is_some() || !matches!(sent, Ok(Ok(()))) {
            return;
        }
        // The closing handshake: what the client sent meanwhile (answers, candidates) is read
        // and dropped until its close frame comes back. A socket closed with unread data is
        // reset instead of closed, and a reset makes the client's system discard what it had
        // not read yet — the `closed` above with it, so the client would not know it moved.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(message)) = self.ws.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn refuse(&mut self, refusal: &Refusal) -> bool {
        self.send(&error(refusal.code, refusal.message.clone()))
            .await
    }
}

/// The websocket close code that goes with a reason: 1008 (policy) for sessions the SFU
/// dropped, 1012 (service restart: come back) for a shutdown or a move, 1000 otherwise.
fn close_code(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::TooSlow | CloseReason::Unresponsive => 1008,
        CloseReason::Shutdown | CloseReason::Moved => 1012,
        _ => 1000,
    }
}

/// Resolves when the SFU closes every session, with the reason they are told.
async fn closing(shutdown: &mut tokio::sync::watch::Receiver<Option<CloseReason>>) -> CloseReason {
    let reason = match shutdown.wait_for(Option::is_some).await {
        Ok(reason) => *reason,
        // The SFU's state is gone: it stopped.
        Err(_) => None,
    };
    reason.unwrap_or(CloseReason::Shutdown)
}

/// Waits for `join`, verifies the token, takes a seat and enters the room, then relays until
/// the session ends.
async fn run(
    state: SfuState,
    session: SessionId,
    ws: WebSocket,
    pending: PendingGuard,
    address: Option<IpAddr>,
) {
    let mut socket = Socket {
        ws,
        state: state.clone(),
        too_slow: Arc::new(Notify::new()),
        broken: None,
    };
    let joining = await_join(&mut socket).await;
    // Joined or not, the connection no longer counts as waiting to join.
    drop(pending);
    let Some((mut claims, decodes)) = joining else {
        socket.close(None).await;
        return;
    };
    // Only a valid token takes a seat of the SFU's capacity.
    let Some(_seat) = state.take_seat() else {
        socket
            .send(&error(
                ErrorCode::Overloaded,
                "this SFU is full; try again later",
            ))
            .await;
        socket.close(None).await;
        return;
    };
    if claims.cli.is_none() {
        claims.cli = address.and_then(proto::client_network);
    }
    let room = state.room(&claims.conf);
    let (tx, rx) = mpsc::channel(state.shared.wire.session_queue as usize);
    room.sessions.lock().insert(
        session,
        SessionLink {
            commands: tx,
            too_slow: Arc::clone(&socket.too_slow),
        },
    );
    let joined = room.act(|core| core.join(session, &claims, Utc::now()));
    match joined {
        Ok(()) => {}
        Err(refusal) => {
            room.sessions.lock().remove(&session);
            socket.refuse(&refusal).await;
            socket.close(None).await;
            state.forget_room_if_idle(&claims.conf);
            return;
        }
    }
    if let Some(request_id) = &claims.rid {
        tracing::Span::current().record("request_id", request_id.as_str());
    }
    info!(conference = %claims.conf, "joined");
    let ports = claims.room.udp_ports.unwrap_or(room.default_ports);
    let mut live = Live {
        state: state.clone(),
        room: Arc::clone(&room),
        session,
        participant: None,
        ports,
        publisher: None,
        subscriber: None,
        leases: Vec::new(),
        routes: Vec::new(),
        subscriptions: HashMap::new(),
        pending: Vec::new(),
        negotiating: false,
        dirty: false,
        audio_level_ext: None,
        arrivals: crate::arrival::Arrivals::new(),
        subscriber_connected: false,
        publisher_described: false,
        subscriber_described: false,
        early_candidates: Vec::new(),
        ice_states: [RTCIceConnectionState::New; 2],
        connected: [false; 2],
        connecting_since: [None; 2],
        ice_connected: [false; 2],
        decodes,
        undecodable: HashSet::new(),
        video_added: false,
        link: Arc::new(SubscriberLink::new(Backlog::observed(
            state.shared.metrics.subscriber_queue.clone(),
            state.shared.metrics.nacks_ignored.clone(),
        ))),
    };
    let reason = live.relay(&mut socket, rx).await;
    let _ =
        room.act(|core| Ok::<_, std::convert::Infallible>(core.leave(session, reason, Utc::now())));
    room.sessions.lock().remove(&session);
    live.close_peers().await;
    state.forget_room_if_idle(&claims.conf);
    state
        .shared
        .metrics
        .sessions_closed
        .with_label_values(&[reason.as_str()])
        .inc();
    info!(reason = reason.as_str(), "session ended");
    socket.close(Some(reason)).await;
}

/// The verified claims, and the codecs the client said it decodes (lowercase MIME types).
async fn await_join(socket: &mut Socket) -> Option<(JoinClaims, Option<HashSet<String>>)> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut shutdown = socket.state.shared.shutdown.subscribe();
    loop {
        let message = tokio::select! {
            message = tokio::time::timeout_at(deadline, socket.ws.recv()) => message.ok()??.ok()?,
            // Closing: nothing more is admitted here.
            reason = closing(&mut shutdown) => {
                if reason == CloseReason::Moved {
                    socket
                        .send(&error(
                            ErrorCode::WrongPod,
                            "this media server is handing its meetings over; join again through the API",
                        ))
                        .await;
                }
                return None;
            }
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return None,
            _ => continue,
        };
        let parsed: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(parsed) => parsed,
            Err(err) => {
                socket
                    .send(&error(
                        ErrorCode::Malformed,
                        format!("not a signaling message: {err}"),
                    ))
                    .await;
                continue;
            }
        };
        let ClientMessage::Join {
            token,
            conference,
            receive_codecs,
        } = parsed
        else {
            socket
                .send(&error(ErrorCode::NotJoined, "send `join` first"))
                .await;
            continue;
        };
        let verified = socket
            .state
            .shared
            .key
            .verify_join(&token, Utc::now().timestamp());
        let refusal = match verified {
            Ok(claims) if claims.conf == conference => {
                // Revoked since it was issued: the account changed, the identity was
                // excluded, the meeting ended (the conference service's list).
                socket.state.revocations_known().await;
                let revoked = socket.state.shared.revocations.lock().refusal(&claims);
                if let Some((code, message)) = revoked {
                    socket.send(&error(code, message)).await;
                    return None;
                }
                // Everyone of a meeting meets on the pod it is placed on.
                if let Some(message) = socket.state.admission(&claims).await {
                    socket.send(&error(ErrorCode::WrongPod, message)).await;
                    return None;
                }
                let decodes = receive_codecs
                    .map(|codecs| codecs.iter().map(|c| c.to_ascii_lowercase()).collect());
                return Some((claims, decodes));
            }
            Ok(_) => error(
                ErrorCode::WrongConference,
                "the token is for another conference",
            ),
            Err(TokenError::Expired | TokenError::NotYetValid) => {
                error(ErrorCode::TokenExpired, "the token has expired; join again")
            }
            Err(err) => error(ErrorCode::InvalidToken, err.to_string()),
        };
        socket.send(&refusal).await;
        return None;
    }
}

struct Subscription {
    sender: Arc<dyn RtpSender>,
    forwarder: Arc<Forwarder>,
    downstream: Arc<Downstream>,
}

/// A joined session's media and negotiation state.
struct Live {
    state: SfuState,
    room: Arc<RoomHandle>,
    session: SessionId,
    participant: Option<ParticipantId>,
    ports: UdpPorts,
    publisher: Option<Arc<dyn PeerConnection>>,
    subscriber: Option<Arc<dyn PeerConnection>>,
    leases: Vec<PortLease>,
    /// Routes of the peer connections through the pod's ICE-TCP port.
    routes: Vec<crate::ice_tcp::Route>,
    subscriptions: HashMap<TrackId, Subscription>,
    /// Subscriptions added to the connection and waiting for the client's answer.
    pending: Vec<TrackId>,
    /// An offer is out on the subscriber connection.
    negotiating: bool,
    /// Tracks changed while an offer was out: offer again after the answer.
    dirty: bool,
    audio_level_ext: Option<u8>,
    /// When the publisher connection's packets reached the pod (its forwarders count the time
    /// since into a packet's age: `crate::arrival`).
    arrivals: Arc<crate::arrival::Arrivals>,
    /// The subscriber connection is up: what is forwarded now reaches the client.
    subscriber_connected: bool,
    /// Whether each connection has the client's description (its offer, or its answer).
    publisher_described: bool,
    subscriber_described: bool,
    /// Candidates that overtook their connection's remote description (trickle ICE may send
    /// them before the answer); added as soon as the description is set.
    early_candidates: Vec<(PeerTarget, IceCandidate)>,
    /// The last ICE state of the publisher and the subscriber connection.
    ice_states: [RTCIceConnectionState; 2],
    /// Whether the publisher and the subscriber connection were ever connected.
    connected: [bool; 2],
    /// Since when each connection has been trying to connect for the first time: one that
    /// does not connect within `--sfu-ice-failed-seconds` fails (see [`Live::never_connected`]).
    connecting_since: [Option<tokio::time::Instant>; 2],
    /// Whether ICE of the publisher and the subscriber connection ever connected.
    ice_connected: [bool; 2],
    /// The codecs the client decodes (lowercase MIME types); `None`: not said.
    decodes: Option<HashSet<String>>,
    /// Tracks not subscribed because the client cannot decode their codec (told once each).
    undecodable: HashSet<TrackId>,
    /// A video track was added to the subscriber connection (the first offers every codec).
    video_added: bool,
    /// The subscriber connection's bandwidth estimate and how the client shows its tracks.
    link: Arc<SubscriberLink>,
}

/// The index of a connection's entry in the per-connection arrays of [`Live`]
/// (publisher first).
fn slot(target: PeerTarget) -> usize {
    usize::from(target == PeerTarget::Subscriber)
}

/// Commands carried out in one go before the session reads from the client again.
const COMMAND_BATCH: usize = 64;

/// How many candidates a client may send ahead of its description.
const MAX_EARLY_CANDIDATES: usize = 64;

impl Live {
    async fn relay(
        &mut self,
        socket: &mut Socket,
        mut commands: mpsc::Receiver<Command>,
    ) -> CloseReason {
        // Unbounded, but bounded by what produces it: the media stack's candidates and state
        // changes of two connections, and one track event per media section of an offer,
        // which `answer_publisher` caps at `--sfu-max-tracks-per-participant`.
        let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<PeerEvent>();
        let mut shutdown = self.state.shared.shutdown.subscribe();
        let wire = &self.state.shared.wire;
        let idle_timeout = Duration::from_secs(wire.idle_timeout_seconds);
        let mut ping = tokio::time::interval(Duration::from_secs(wire.ping_seconds));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = tokio::time::Instant::now();
        let mut watchdog = tokio::time::interval(Duration::from_secs(1));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let too_slow = Arc::clone(&socket.too_slow);
        loop {
            if let Some(reason) = socket.broken {
                return reason;
            }
            tokio::select! {
                message = socket.ws.recv() => {
                    heard = tokio::time::Instant::now();
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            socket.send(&error(ErrorCode::Malformed, "send JSON text")).await;
                            continue;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            debug!(code = frame.map(|f| f.code), "the client closed the websocket");
                            return CloseReason::Gone;
                        }
                        None => return CloseReason::Gone,
                        Some(Err(err)) => {
                            debug!(cause = %err, "the websocket failed");
                            return CloseReason::Gone;
                        }
                        Some(Ok(_)) => continue,
                    };
                    match serde_json::from_str::<ClientMessage>(text.as_str()) {
                        Ok(ClientMessage::Leave) => return CloseReason::Left,
                        Ok(message) => {
                            if let Err(refusal) = self.handle(socket, message).await {
                                socket.refuse(&refusal).await;
                            }
                        }
                        Err(err) => {
                            socket.send(&error(ErrorCode::Malformed, format!("not a signaling message: {err}"))).await;
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return CloseReason::Gone };
                    if let Some(reason) = self.carry_out(socket, command, &peer_tx).await {
                        return reason;
                    }
                    // Drain what else is queued before reading more from the client: a client
                    // that sends fast is not dropped for its own echoes piling up.
                    for _ in 0..COMMAND_BATCH {
                        let Ok(command) = commands.try_recv() else { break };
                        if let Some(reason) = self.carry_out(socket, command, &peer_tx).await {
                            return reason;
                        }
                    }
                }
                event = peer_rx.recv() => {
                    let Some(event) = event else { continue };
                    match event {
                        PeerEvent::Candidate(target, init) => {
                            let candidate = IceCandidate {
                                candidate: init.candidate,
                                sdp_mid: init.sdp_mid,
                                sdp_m_line_index: init.sdp_mline_index,
                                username_fragment: init.username_fragment,
                            };
                            socket.send(&ServerMessage::Candidate { target, candidate }).await;
                        }
                        PeerEvent::IceState(target, state) => {
                            debug!(?target, %state, "ICE state");
                            self.ice_states[slot(target)] = state;
                            if matches!(
                                state,
                                RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
                            ) {
                                self.ice_connected[slot(target)] = true;
                            }
                        }
                        PeerEvent::State(target, state) => {
                            self.state.shared.metrics.peer_states.with_label_values(&[&state.to_string()]).inc();
                            debug!(?target, %state, "peer connection state");
                            if state == RTCPeerConnectionState::Failed {
                                socket.send(&self.connection_failed(target)).await;
                                return CloseReason::ConnectionFailed;
                            }
                            if state == RTCPeerConnectionState::Connected {
                                self.connected[slot(target)] = true;
                            }
                            if state == RTCPeerConnectionState::Connecting
                                && !self.connected[slot(target)]
                            {
                                self.connecting_since[slot(target)]
                                    .get_or_insert_with(tokio::time::Instant::now);
                            }
                            if target == PeerTarget::Subscriber {
                                let connected = state == RTCPeerConnectionState::Connected;
                                if connected && !self.subscriber_connected {
                                    self.check_direct_path();
                                    self.request_keyframes();
                                }
                                self.subscriber_connected = connected;
                            }
                        }
                        PeerEvent::Track(remote) => self.track_arrived(socket, remote).await,
                    }
                }
                reason = closing(&mut shutdown) => return reason,
                () = too_slow.notified() => return CloseReason::TooSlow,
                _ = watchdog.tick() => {
                    if let Some(target) = self.never_connected() {
                        socket.send(&self.connection_failed(target)).await;
                        return CloseReason::ConnectionFailed;
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() >= idle_timeout {
                        debug!("no frame from the client within the idle timeout");
                        return CloseReason::Unresponsive;
                    }
                    let pinged = tokio::time::timeout(
                        Duration::from_secs(self.state.shared.wire.send_timeout_seconds),
                        socket.ws.send(Message::Ping(Default::default())),
                    )
                    .await;
                    match pinged {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return CloseReason::Gone,
                        Err(_) => return CloseReason::TooSlow,
                    }
                }
            }
        }
    }

    /// Carries out one command of the room; `Some` ends the session.
    async fn carry_out(
        &mut self,
        socket: &mut Socket,
        command: Command,
        peer_tx: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Option<CloseReason> {
        match command {
            Command::Send(message) => {
                let admitted = matches!(*message, ServerMessage::Joined { .. });
                if !socket.send(&message).await {
                    return Some(socket.broken.unwrap_or(CloseReason::Gone));
                }
                // Right after `joined`, the ticket that opens the room's presentation pages.
                if admitted && let Ok(access) = self.presentation_access() {
                    socket.send(&access).await;
                }
            }
            Command::Close(reason) => return Some(reason),
            Command::Admit(participant) => {
                self.participant = Some(participant);
                if let Err(err) = self.open_peers(peer_tx).await {
                    warn!(cause = %err, "opening peer connections failed");
                    socket
                        .send(&error(
                            ErrorCode::Overloaded,
                            "no media ports free for this conference",
                        ))
                        .await;
                    return Some(CloseReason::Gone);
                }
            }
            Command::Subscribe(forwarder) => {
                if let Err(err) = self.subscribe(socket, forwarder).await {
                    warn!(cause = %err, "subscribing failed");
                }
            }
            Command::Unsubscribe(track) => self.unsubscribe(socket, &track).await,
        }
        None
    }

    async fn open_peers(
        &mut self,
        events: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(), MediaError> {
        let single_port = self.state.shared.media.udp_mux.is_some();
        if !single_port {
            self.room.check_ports(self.ports, self.state.bind_ip());
        }
        // New connections: nothing of earlier ones waits.
        self.link.backlog().clear();
        self.arrivals.clear();
        for target in [PeerTarget::Publisher, PeerTarget::Subscriber] {
            let backlog = || match target {
                PeerTarget::Publisher => None,
                PeerTarget::Subscriber => Some(Arc::clone(self.link.backlog())),
            };
            let arrivals = || match target {
                PeerTarget::Publisher => Some(Arc::clone(&self.arrivals)),
                PeerTarget::Subscriber => None,
            };
            let mut failed = HashSet::new();
            let peer = loop {
                if single_port {
                    let direct = self.direct_slot(target);
                    let peer = media::build_peer(
                        &self.state.shared.media,
                        0,
                        target,
                        backlog(),
                        direct,
                        arrivals(),
                        events.clone(),
                    )
                    .await?;
                    self.routes.extend(peer.route);
                    break peer.connection;
                }
                let leased =
                    self.state
                        .shared
                        .ports
                        .lease(self.ports, self.state.bind_ip(), &failed);
                self.room
                    .lease_found(self.ports, &leased.newly_unusable, leased.bind_failures);
                let lease = leased.lease.ok_or(MediaError::NoPort {
                    first: self.ports.first,
                    last: self.ports.last,
                })?;
                let direct = self.direct_slot(target);
                match media::build_peer(
                    &self.state.shared.media,
                    lease.port(),
                    target,
                    backlog(),
                    direct,
                    arrivals(),
                    events.clone(),
                )
                .await
                {
                    Ok(peer) => {
                        self.leases.push(lease);
                        self.routes.extend(peer.route);
                        break peer.connection;
                    }
                    Err(err) => {
                        debug!(cause = %err, port = lease.port(), "binding a peer connection failed; next port");
                        failed.insert(lease.port());
                    }
                }
            };
            match target {
                PeerTarget::Publisher => self.publisher = Some(peer),
                PeerTarget::Subscriber => self.subscriber = Some(peer),
            }
        }
        Ok(())
    }

    async fn close_peers(&mut self) {
        for subscription in self.subscriptions.values() {
            subscription
                .forwarder
                .detach(&subscription.downstream.subscriber);
        }
        self.subscriptions.clear();
        for peer in [self.publisher.take(), self.subscriber.take()]
            .into_iter()
            .flatten()
        {
            if let Err(err) = peer.close().await {
                debug!(cause = %err, "closing a peer connection failed");
            }
        }
        self.leases.clear();
        self.routes.clear();
    }

    async fn handle(&mut self, socket: &mut Socket, message: ClientMessage) -> Result<(), Refusal> {
        let now = Utc::now();
        let session = self.session;
        type Action = Box<dyn FnOnce(&mut Room) -> Result<Vec<Effect>, Refusal> + Send>;
        let action: Action = match message {
            ClientMessage::Join { .. } => {
                return Err(Refusal {
                    code: ErrorCode::AlreadyJoined,
                    message: "already joined".into(),
                });
            }
            ClientMessage::Leave => return Ok(()),
            ClientMessage::Publish {
                track_id,
                source,
                muted,
            } => Box::new(move |core| core.publish(session, &track_id, source, muted, now)),
            ClientMessage::Unpublish { track_id } => {
                Box::new(move |core| core.unpublish(session, &track_id, now))
            }
            ClientMessage::MuteTrack { track_id, muted } => {
                Box::new(move |core| core.mute_track(session, &track_id, muted, now))
            }
            ClientMessage::SetVideoLayer { track, layer } => {
                Box::new(move |core| core.set_video_layer(session, &track, layer))
            }
            ClientMessage::ViewTracks { views } => {
                if views.len() > MAX_TRACK_VIEWS {
                    return Err(Refusal {
                        code: ErrorCode::Malformed,
                        message: format!(
                            "viewTracks holds at most {MAX_TRACK_VIEWS} entries, not {}",
                            views.len()
                        ),
                    });
                }
                // Only the connection's own choice: nothing for the room to do.
                self.link.set_views(views);
                return Ok(());
            }
            ClientMessage::Chat { text, to } => {
                Box::new(move |core| core.chat(session, &text, to.as_ref(), now))
            }
            ClientMessage::BlockMicrophone {
                participant,
                blocked,
            } => Box::new(move |core| core.block_microphone(session, &participant, blocked, now)),
            ClientMessage::SetRole { participant, role } => {
                Box::new(move |core| core.set_role(session, &participant, role, now))
            }
            ClientMessage::Exclude { participant } => {
                Box::new(move |core| core.exclude(session, &participant, now))
            }
            ClientMessage::EndMeeting => Box::new(move |core| core.end(session, now)),
            ClientMessage::SetRecording { active } => {
                let id = proto::RecordingId(uuid::Uuid::new_v4().to_string());
                Box::new(move |core| core.set_recording(session, active, id, now))
            }
            ClientMessage::RequestPresentationUpload => {
                let claims = self.room.core.lock().upload_ticket(session, now)?;
                let ticket = self
                    .state
                    .shared
                    .key
                    .sign_upload(&claims)
                    .map_err(signing)?;
                socket
                    .send(&ServerMessage::PresentationUploadTicket {
                        ticket,
                        expires_at: claims.exp,
                    })
                    .await;
                return Ok(());
            }
            ClientMessage::RequestPresentationAccess => {
                let access = self.presentation_access()?;
                socket.send(&access).await;
                return Ok(());
            }
            ClientMessage::ShowPresentation { descriptor } => {
                let claims = self
                    .state
                    .shared
                    .key
                    .verify_descriptor(&descriptor, now.timestamp())
                    .map_err(|err| Refusal {
                        code: ErrorCode::InvalidPresentation,
                        message: match err {
                            TokenError::Expired => {
                                "this upload is too old to show; upload the file again".into()
                            }
                            _ => format!("not a presentation of this server: {err}"),
                        },
                    })?;
                Box::new(move |core| core.show_presentation(session, &claims, now))
            }
            ClientMessage::SetPresentationPage { page } => {
                Box::new(move |core| core.set_presentation_page(session, page, now))
            }
            ClientMessage::HandOverPresentation { participant } => {
                Box::new(move |core| core.hand_over_presentation(session, &participant, now))
            }
            ClientMessage::StopPresentation => {
                Box::new(move |core| core.stop_presentation(session, now))
            }
            ClientMessage::Offer { sdp } => return self.answer_publisher(socket, sdp).await,
            ClientMessage::Answer { sdp } => return self.subscriber_answered(socket, sdp).await,
            ClientMessage::Candidate { target, candidate } => {
                return self.add_candidate(target, candidate).await;
            }
        };
        self.room.act(action)
    }

    /// A view ticket for the room's presentation pages, if the session is admitted.
    fn presentation_access(&self) -> Result<ServerMessage, Refusal> {
        let claims = self
            .room
            .core
            .lock()
            .view_ticket(self.session, Utc::now())?;
        let ticket = self.state.shared.key.sign_view(&claims).map_err(signing)?;
        Ok(ServerMessage::PresentationAccess {
            ticket,
            expires_at: claims.exp,
        })
    }

    fn peer(&self, target: PeerTarget) -> Result<Arc<dyn PeerConnection>, Refusal> {
        let peer = match target {
            PeerTarget::Publisher => &self.publisher,
            PeerTarget::Subscriber => &self.subscriber,
        };
        peer.clone().ok_or_else(|| Refusal {
            code: ErrorCode::NotJoined,
            message: "you are not admitted yet".into(),
        })
    }

    async fn answer_publisher(&mut self, socket: &mut Socket, sdp: String) -> Result<(), Refusal> {
        let peer = self.peer(PeerTarget::Publisher)?;
        // Every media section can become a track: no more than a participant may publish.
        let sections = sdp.lines().filter(|line| line.starts_with("m=")).count();
        let most = self.state.shared.wire.max_tracks_per_participant as usize;
        if sections > most {
            return Err(Refusal {
                code: ErrorCode::TooManyTracks,
                message: format!(
                    "the offer has {sections} media sections; at most {most} tracks per participant"
                ),
            });
        }
        if let Some(id) = media::audio_level_id(&sdp) {
            self.audio_level_ext = Some(id);
        }
        let answer = negotiation::answer_publisher(&peer, sdp)
            .await
            .map_err(|err| self.sdp_failed("the offer could not be applied", &err))?;
        self.publisher_described = true;
        self.add_early_candidates(PeerTarget::Publisher).await?;
        let sdp = self.state.shared.media.announced_sdp(answer);
        socket.send(&ServerMessage::Answer { sdp }).await;
        Ok(())
    }

    /// Tells the client that it cannot play `forwarder`'s track, and whose it is.
    fn cannot_play(&self, forwarder: &Forwarder) -> ServerMessage {
        let mime = &forwarder.codec.mime_type;
        let codec = mime.split('/').nth(1).unwrap_or(mime);
        let kind = match forwarder.kind {
            TrackKind::Audio => "sound",
            TrackKind::Video => "video",
        };
        let who = self
            .room
            .core
            .lock()
            .display_name(&forwarder.publisher)
            .map_or_else(|| "a participant".to_owned(), ToOwned::to_owned);
        error(
            ErrorCode::Negotiation,
            format!(
                "this browser cannot play {who}'s {kind}: it comes as {codec}, which this browser does not decode"
            ),
        )
    }

    /// Counts and logs a description the media stack refused, and words the refusal.
    fn sdp_failed(&self, what: &str, err: &webrtc::error::Error) -> Refusal {
        self.state
            .shared
            .metrics
            .peer_failures
            .with_label_values(&[FailureCause::Sdp.as_str()])
            .inc();
        warn!(cause = %err, "{what}");
        Refusal {
            code: ErrorCode::Negotiation,
            message: format!("{what}: {err}"),
        }
    }

    /// A connection that has been trying to connect for longer than `--sfu-ice-failed-seconds`
    /// without ever connecting. The media stack fails a connection whose ICE checks stop being
    /// answered, but not one whose checks never started (no usable candidate pair) nor one
    /// whose DTLS handshake gave up (its driver stops without a state change): without this,
    /// such a participant would sit in the meeting without media and never reconnect.
    fn never_connected(&self) -> Option<PeerTarget> {
        let limit = self.state.shared.media.ice_failed_after;
        [PeerTarget::Publisher, PeerTarget::Subscriber]
            .into_iter()
            .find(|&target| {
                let index = slot(target);
                !self.connected[index]
                    && self.connecting_since[index].is_some_and(|since| since.elapsed() >= limit)
            })
    }

    /// Counts and logs a failed peer connection, and words what the person should check.
    fn connection_failed(&self, target: PeerTarget) -> ServerMessage {
        let index = slot(target);
        let ice = self.ice_states[index];
        // Never connected although ICE did: the DTLS handshake did not complete. Once
        // connected: webrtc-rs reports the connection's failure before its ICE state, so the
        // last ICE state seen is the one before the failure, and DTLS can only fail while ICE
        // is connected.
        let dtls = if self.connected[index] {
            matches!(
                ice,
                RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
            )
        } else {
            self.ice_connected[index]
        };
        let cause = if dtls {
            FailureCause::Dtls
        } else {
            FailureCause::Ice
        };
        self.state
            .shared
            .metrics
            .peer_failures
            .with_label_values(&[cause.as_str()])
            .inc();
        warn!(?target, cause = cause.as_str(), %ice, "a peer connection failed");
        let which = match target {
            PeerTarget::Publisher => "sending",
            PeerTarget::Subscriber => "receiving",
        };
        let message = match cause {
            FailureCause::Ice if self.connected[index] => format!(
                "the {which} media connection was lost: the media server's UDP ports {}-{} stopped answering (the network may have changed, or now blocks UDP)",
                self.ports.first, self.ports.last
            ),
            FailureCause::Ice => format!(
                "the {which} media connection failed: no network path to the media server's UDP ports {}-{} was found (a firewall or VPN may block UDP)",
                self.ports.first, self.ports.last
            ),
            _ if self.connected[index] => format!(
                "the {which} media connection failed: the encrypted media session (DTLS) was ended or broke"
            ),
            _ => format!(
                "the {which} media connection failed: the encryption handshake (DTLS) did not complete"
            ),
        };
        error(ErrorCode::ConnectionFailed, message)
    }

    async fn add_candidate(
        &mut self,
        target: PeerTarget,
        candidate: IceCandidate,
    ) -> Result<(), Refusal> {
        let peer = self.peer(target)?;
        if candidate.candidate.is_empty() {
            return Ok(());
        }
        let described = match target {
            PeerTarget::Publisher => self.publisher_described,
            PeerTarget::Subscriber => self.subscriber_described,
        };
        if !described {
            if self.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                return Err(Refusal {
                    code: ErrorCode::Negotiation,
                    message: format!(
                        "more than {MAX_EARLY_CANDIDATES} candidates before the offer or answer; send the description first"
                    ),
                });
            }
            self.early_candidates.push((target, candidate));
            return Ok(());
        }
        Self::apply_candidate(&peer, candidate).await
    }

    /// Adds the candidates held for `target` now that its remote description is set.
    async fn add_early_candidates(&mut self, target: PeerTarget) -> Result<(), Refusal> {
        let (now, later) = std::mem::take(&mut self.early_candidates)
            .into_iter()
            .partition::<Vec<_>, _>(|(t, _)| *t == target);
        self.early_candidates = later;
        let peer = self.peer(target)?;
        for (_, candidate) in now {
            Self::apply_candidate(&peer, candidate).await?;
        }
        Ok(())
    }

    async fn apply_candidate(
        peer: &Arc<dyn PeerConnection>,
        candidate: IceCandidate,
    ) -> Result<(), Refusal> {
        // Browsers hide host addresses behind mDNS names; this SFU does not resolve them and
        // finds the browser through its peer-reflexive address instead.
        if candidate
            .candidate
            .split_whitespace()
            .nth(4)
            .is_some_and(|address| address.ends_with(".local"))
        {
            debug!("ignoring an mDNS candidate");
            return Ok(());
        }
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_m_line_index,
            username_fragment: candidate.username_fragment,
            ..Default::default()
        };
        peer.add_ice_candidate(init).await.map_err(|err| Refusal {
            code: ErrorCode::Negotiation,
            message: format!("the candidate could not be added: {err}"),
        })
    }

    async fn track_arrived(
        &mut self,
        socket: &mut Socket,
        remote: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>,
    ) {
        let client_track = remote.track_id().await.to_string();
        let kind = match remote.kind().await {
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio => TrackKind::Audio,
            _ => TrackKind::Video,
        };
        let ssrc = remote.ssrcs().await.first().copied();
        let (codec, rid) = match ssrc {
            Some(ssrc) => (remote.codec(ssrc).await, remote.rid(ssrc).await),
            None => (None, None),
        };
        let (Some(ssrc), Some(codec), Some(participant)) = (ssrc, codec, self.participant.clone())
        else {
            warn!("a track without ssrc or codec arrived; dropping it");
            media::drain(remote);
            return;
        };
        let refused = {
            // In the core's order: the forwarder is registered before the effects that
            // subscribe others to it are applied.
            let _order = self.room.order.lock();
            let arrived =
                self.room
                    .core
                    .lock()
                    .media_arrived(self.session, &client_track, kind, Utc::now());
            match arrived {
                Ok((track, effects)) => {
                    let forwarder = Arc::new(Forwarder::new(
                        track.clone(),
                        participant,
                        kind,
                        codec,
                        Arc::clone(&remote),
                        (ssrc, rid.map(|rid| rid.to_string())),
                        if kind == TrackKind::Audio {
                            self.audio_level_ext
                        } else {
                            None
                        },
                        Arc::clone(&self.arrivals),
                        self.state.shared.metrics.clone(),
                    ));
                    let label = if kind == TrackKind::Audio {
                        "audio"
                    } else {
                        "video"
                    };
                    self.state
                        .shared
                        .metrics
                        .tracks
                        .with_label_values(&[label])
                        .inc();
                    self.room
                        .forwarders
                        .lock()
                        .insert(track, Arc::clone(&forwarder));
                    // Published while a recording runs: recorded from its first packet.
                    self.room.record_track(&forwarder);
                    tokio::spawn(forwarder.run());
                    self.room.apply(effects);
                    None
                }
                Err(refusal) => Some(refusal),
            }
        };
        if let Some(refusal) = refused {
            socket.refuse(&refusal).await;
            media::drain(remote);
        }
    }

    async fn subscribe(
        &mut self,
        socket: &mut Socket,
        forwarder: Arc<Forwarder>,
    ) -> Result<(), MediaError> {
        let (Some(peer), Some(participant)) = (self.subscriber.clone(), self.participant.clone())
        else {
            return Ok(());
        };
        if self.subscriptions.contains_key(&forwarder.track) {
            return Ok(());
        }
        let mime = forwarder.codec.mime_type.to_ascii_lowercase();
        if self
            .decodes
            .as_ref()
            .is_some_and(|codecs| !codecs.contains(&mime))
        {
            if self.undecodable.insert(forwarder.track.clone()) {
                debug!(track = %forwarder.track, %mime, "the client does not decode this track's codec");
                let notice = self.cannot_play(&forwarder);
                socket.send(&notice).await;
            }
            return Ok(());
        }
        let downstream = Arc::new(Downstream::new(
            participant,
            &forwarder.track,
            &forwarder.publisher,
            forwarder.kind,
            forwarder.codec.clone(),
            Arc::clone(&self.link),
        ));
        let sender = if forwarder.kind == TrackKind::Video && !self.video_added {
            self.video_added = true;
            media::add_first_video(&peer, downstream.local.clone()).await?
        } else {
            peer.add_track(downstream.local.clone()).await?
        };
        self.pending.push(forwarder.track.clone());
        self.subscriptions.insert(
            forwarder.track.clone(),
            Subscription {
                sender,
                forwarder,
                downstream,
            },
        );
        self.negotiate(socket).await;
        Ok(())
    }

    async fn unsubscribe(&mut self, socket: &mut Socket, track: &TrackId) {
        self.undecodable.remove(track);
        self.link.forget(track);
        let Some(subscription) = self.subscriptions.remove(track) else {
            return;
        };
        subscription
            .forwarder
            .detach(&subscription.downstream.subscriber);
        self.pending.retain(|t| t != track);
        if let Some(peer) = &self.subscriber {
            if let Err(err) = peer.remove_track(&subscription.sender).await {
                debug!(cause = %err, "removing a track failed");
            }
            self.negotiate(socket).await;
        }
    }

    /// A new subscriber connection's direct media path (`crate::direct`), also given to the
    /// link the forwarders send through; `None` for a publisher connection and with
    /// `--sfu-direct-media=false`. With ICE over TCP a connection gets one too; if ICE picks
    /// TCP, its media goes through webrtc-rs (`check_direct_path`).
    fn direct_slot(&self, target: PeerTarget) -> Option<Arc<crate::direct::DirectSlot>> {
        if target != PeerTarget::Subscriber {
            return None;
        }
        let metrics = &self.state.shared.metrics;
        let direct = self.state.shared.media.direct_media.then(|| {
            crate::direct::DirectSlot::new(&metrics.direct_datagrams, &metrics.direct_send_calls)
        });
        self.link.set_direct(direct.clone());
        direct
    }

    /// A connected subscriber connection's DTLS is up, so its direct path has its keys and
    /// its peer's address by now — unless ICE picked TCP (the path's UDP socket never carried
    /// DTLS): then its media goes through webrtc-rs, with the sender reports the connection
    /// was built with for that case. One that has not for another reason (it should not
    /// happen) sends through webrtc-rs too, without retransmissions nor sender reports.
    fn check_direct_path(&self) {
        let Some(direct) = self.link.direct() else {
            return;
        };
        if direct.is_ready() {
            return;
        }
        if self.state.shared.media.ice_tcp.is_some() && !direct.knows_peer() {
            debug!("the subscriber connection runs over TCP: its media goes through webrtc-rs");
        } else {
            warn!(
                "a subscriber connection's direct media path has no SRTP keys or no peer \
                 address after DTLS: its media goes through webrtc-rs, without retransmissions \
                 nor sender reports (--sfu-direct-media=false avoids this)"
            );
        }
        direct.abandon();
        self.link.set_direct(None);
    }

    /// Asks for a keyframe of every video track this participant receives, once its
    /// subscriber connection is up: a keyframe forwarded before that never reaches it. The
    /// core's limiter defers requests that come too close together.
    fn request_keyframes(&self) {
        let sink: Arc<dyn FeedbackSink> = self.room.clone();
        for (track, subscription) in &self.subscriptions {
            if subscription.forwarder.kind == TrackKind::Video && !self.pending.contains(track) {
                sink.keyframe_wanted(track);
            }
        }
    }

    /// Offers on the subscriber connection, or remembers to once the outstanding answer came.
    async fn negotiate(&mut self, socket: &mut Socket) {
        if self.negotiating {
            self.dirty = true;
            return;
        }
        let Some(peer) = self.subscriber.clone() else {
            return;
        };
        let offer = match peer.create_offer(None).await {
            Ok(offer) => offer,
            Err(err) => {
                warn!(cause = %err, "creating an offer failed");
                return;
            }
        };
        let sdp = offer.sdp.clone();
        if let Err(err) = peer.set_local_description(offer).await {
            warn!(cause = %err, "setting the local offer failed");
            return;
        }
        self.negotiating = true;
        self.dirty = false;
        let sdp = self.state.shared.media.announced_sdp(sdp);
        socket.send(&ServerMessage::Offer { sdp }).await;
    }

    async fn subscriber_answered(
        &mut self,
        socket: &mut Socket,
        sdp: String,
    ) -> Result<(), Refusal> {
        let peer = self.peer(PeerTarget::Subscriber)?;
        if !self.negotiating {
            return Err(Refusal {
                code: ErrorCode::Negotiation,
                message: "no offer is outstanding".into(),
            });
        }
        let answer = RTCSessionDescription::answer(sdp)
            .map_err(|err| self.sdp_failed("the answer could not be parsed", &err))?;
        if let Err(err) = peer.set_remote_description(answer).await {
            let refusal = self.sdp_failed("the answer could not be applied", &err);
            // Leave the connection usable: offer again.
            self.negotiating = false;
            self.negotiate(socket).await;
            return Err(refusal);
        }
        self.negotiating = false;
        self.subscriber_described = true;
        let sink: Arc<dyn FeedbackSink> = self.room.clone();
        for track in std::mem::take(&mut self.pending) {
            let Some(subscription) = self.subscriptions.get(&track) else {
                continue;
            };
            let mime = subscription.forwarder.codec.mime_type.clone();
            match subscription
                .downstream
                .activate(
                    &subscription.sender,
                    &mime,
                    track.clone(),
                    Arc::clone(&sink),
                    self.state.shared.metrics.clone(),
                )
                .await
            {
                Ok(()) => {
                    subscription
                        .forwarder
                        .attach(Arc::clone(&subscription.downstream));
                    // Before the connection is up the keyframe would be lost; it is asked for
                    // when the connection comes up instead.
                    if subscription.forwarder.kind == TrackKind::Video && self.subscriber_connected
                    {
                        sink.keyframe_wanted(&track);
                    }
                }
                Err(err) => {
                    // Mostly a codec the subscriber's browser cannot decode (H.264 from Safari
                    // to a Firefox without OpenH264): its answer rejected the section.
                    warn!(cause = %err, track = %track, %mime, "activating a subscription failed");
                    let notice = self.cannot_play(&subscription.forwarder);
                    socket.send(&notice).await;
                }
            }
        }
        if self.dirty {
            self.negotiate(socket).await;
        }
        self.add_early_candidates(PeerTarget::Subscriber).await
    }
}
