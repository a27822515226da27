//! One participant's signaling websocket: join, then relay between the client, the room's
//! core and the participant's two peer connections.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use chrono::Utc;
use futures::SinkExt;
use proto::signal::{
    ClientMessage, CloseReason, ErrorCode, IceCandidate, PeerTarget, ServerMessage, TrackKind,
};
use proto::{JoinClaims, ParticipantId, TokenError, TrackId, UdpPorts};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCIceConnectionState, RTCPeerConnectionState,
    RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::error::MediaError;
use crate::media::{self, Downstream, FeedbackSink, Forwarder, PeerEvent};
use crate::metrics::FailureCause;
use crate::negotiation;
use crate::ports::PortLease;
use crate::room::{Effect, Refusal, Room, SessionId};
use crate::server::{RoomHandle, SfuState};

/// Longest signaling message accepted (SDP of many tracks fits easily).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Time a client has to send `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the room asks a session to do.
#[derive(Debug)]
pub(crate) enum Command {
    Send(ServerMessage),
    Close(CloseReason),
    Admit(ParticipantId),
    Subscribe(Arc<Forwarder>),
    Unsubscribe(TrackId),
}

pub(crate) async fn upgrade(State(state): State<SfuState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            state.shared.sessions.fetch_add(1, Ordering::AcqRel);
            let session = SessionId(state.shared.next_session.fetch_add(1, Ordering::AcqRel));
            run(state.clone(), session, socket)
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
}

impl Socket {
    async fn send(&mut self, message: &ServerMessage) -> bool {
        if let ServerMessage::Error { code, .. } = message {
            self.state
                .shared
                .metrics
                .signaling_errors
                .with_label_values(&[code.as_str()])
                .inc();
        }
        match serde_json::to_string(message) {
            Ok(text) => self
                .ws
                .send(Message::Text(Utf8Bytes::from(text)))
                .await
                .is_ok(),
            Err(err) => {
                warn!(cause = %err, "encoding a signaling message failed");
                true
            }
        }
    }

    async fn refuse(&mut self, refusal: &Refusal) -> bool {
        self.send(&error(refusal.code, refusal.message.clone()))
            .await
    }
}

/// Waits for `join`, verifies the token, enters the room, then relays until the session ends.
async fn run(state: SfuState, session: SessionId, ws: WebSocket) {
    let mut socket = Socket {
        ws,
        state: state.clone(),
    };
    let Some((claims, decodes)) = await_join(&mut socket).await else {
        let _ = socket.ws.close().await;
        return;
    };
    if state.session_count() > state.shared.max_participants {
        socket
            .send(&error(
                ErrorCode::Overloaded,
                "this SFU is full; try again later",
            ))
            .await;
        let _ = socket.ws.close().await;
        return;
    }
    let room = state.room(&claims.conf);
    let (tx, rx) = mpsc::unbounded_channel();
    room.sessions.lock().insert(session, tx);
    let joined = room.act(|core| core.join(session, &claims, Utc::now()));
    match joined {
        Ok(()) => {}
        Err(refusal) => {
            room.sessions.lock().remove(&session);
            socket.refuse(&refusal).await;
            let _ = socket.ws.close().await;
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
        subscriptions: HashMap::new(),
        pending: Vec::new(),
        negotiating: false,
        dirty: false,
        audio_level_ext: None,
        subscriber_connected: false,
        publisher_described: false,
        subscriber_described: false,
        early_candidates: Vec::new(),
        ice_states: [RTCIceConnectionState::New; 2],
        connected: [false; 2],
        decodes,
        undecodable: HashSet::new(),
        video_added: false,
    };
    let reason = live.relay(&mut socket, rx).await;
    let _ =
        room.act(|core| Ok::<_, std::convert::Infallible>(core.leave(session, reason, Utc::now())));
    room.sessions.lock().remove(&session);
    live.close_peers().await;
    let _ = socket.send(&ServerMessage::Closed { reason }).await;
    let _ = socket.ws.close().await;
    state.forget_room_if_idle(&claims.conf);
    info!(reason = ?reason, "session ended");
}

/// The verified claims, and the codecs the client said it decodes (lowercase MIME types).
async fn await_join(socket: &mut Socket) -> Option<(JoinClaims, Option<HashSet<String>>)> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.ws.recv())
            .await
            .ok()??
            .ok()?;
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
    subscriptions: HashMap<TrackId, Subscription>,
    /// Subscriptions added to the connection and waiting for the client's answer.
    pending: Vec<TrackId>,
    /// An offer is out on the subscriber connection.
    negotiating: bool,
    /// Tracks changed while an offer was out: offer again after the answer.
    dirty: bool,
    audio_level_ext: Option<u8>,
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
    /// The codecs the client decodes (lowercase MIME types); `None`: not said.
    decodes: Option<HashSet<String>>,
    /// Tracks not subscribed because the client cannot decode their codec (told once each).
    undecodable: HashSet<TrackId>,
    /// A video track was added to the subscriber connection (the first offers every codec).
    video_added: bool,
}

/// The index of a connection's entry in the per-connection arrays of [`Live`]
/// (publisher first).
fn slot(target: PeerTarget) -> usize {
    usize::from(target == PeerTarget::Subscriber)
}

/// How many candidates a client may send ahead of its description.
const MAX_EARLY_CANDIDATES: usize = 64;

impl Live {
    async fn relay(
        &mut self,
        socket: &mut Socket,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> CloseReason {
        let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<PeerEvent>();
        let mut shutdown = self.state.shared.shutdown.subscribe();
        loop {
            tokio::select! {
                message = socket.ws.recv() => {
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
                    match command {
                        Command::Send(message) => {
                            if !socket.send(&message).await {
                                return CloseReason::Gone;
                            }
                        }
                        Command::Close(reason) => return reason,
                        Command::Admit(participant) => {
                            self.participant = Some(participant);
                            if let Err(err) = self.open_peers(&peer_tx).await {
                                warn!(cause = %err, "opening peer connections failed");
                                socket.send(&error(ErrorCode::Overloaded, "no media ports free for this conference")).await;
                                return CloseReason::Gone;
                            }
                        }
                        Command::Subscribe(forwarder) => {
                            if let Err(err) = self.subscribe(socket, forwarder).await {
                                warn!(cause = %err, "subscribing failed");
                            }
                        }
                        Command::Unsubscribe(track) => self.unsubscribe(socket, &track).await,
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
                            if target == PeerTarget::Subscriber {
                                let connected = state == RTCPeerConnectionState::Connected;
                                if connected && !self.subscriber_connected {
                                    self.request_keyframes();
                                }
                                self.subscriber_connected = connected;
                            }
                        }
                        PeerEvent::Track(remote) => self.track_arrived(socket, remote).await,
                    }
                }
                _ = shutdown.changed() => return CloseReason::Shutdown,
            }
        }
    }

    async fn open_peers(
        &mut self,
        events: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(), MediaError> {
        for target in [PeerTarget::Publisher, PeerTarget::Subscriber] {
            let mut failed = HashSet::new();
            let peer = loop {
                let lease = self
                    .state
                    .shared
                    .ports
                    .lease(self.ports, self.state.bind_ip(), &failed)
                    .ok_or(MediaError::NoPort {
                        first: self.ports.first,
                        last: self.ports.last,
                    })?;
                match media::build_peer(
                    &self.state.shared.media,
                    lease.port(),
                    target,
                    events.clone(),
                )
                .await
                {
                    Ok(peer) => {
                        self.leases.push(lease);
                        break peer;
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
            } => Box::new(move |core| core.publish(session, &track_id, source, muted)),
            ClientMessage::Unpublish { track_id } => {
                Box::new(move |core| core.unpublish(session, &track_id))
            }
            ClientMessage::MuteTrack { track_id, muted } => {
                Box::new(move |core| core.mute_track(session, &track_id, muted))
            }
            ClientMessage::SetVideoLayer { track, layer } => {
                Box::new(move |core| core.set_video_layer(session, &track, layer))
            }
            ClientMessage::Chat { text, to } => {
                Box::new(move |core| core.chat(session, &text, to.as_ref(), now))
            }
            ClientMessage::BlockMicrophone {
                participant,
                blocked,
            } => Box::new(move |core| core.block_microphone(session, &participant, blocked)),
            ClientMessage::SetRole { participant, role } => {
                Box::new(move |core| core.set_role(session, &participant, role))
            }
            ClientMessage::Exclude { participant } => {
                Box::new(move |core| core.exclude(session, &participant, now))
            }
            ClientMessage::EndMeeting => Box::new(move |core| core.end(session, now)),
            ClientMessage::SetRecording { active } => {
                Box::new(move |core| core.set_recording(session, active))
            }
            ClientMessage::Offer { sdp } => return self.answer_publisher(socket, sdp).await,
            ClientMessage::Answer { sdp } => return self.subscriber_answered(socket, sdp).await,
            ClientMessage::Candidate { target, candidate } => {
                return self.add_candidate(target, candidate).await;
            }
        };
        self.room.act(action)
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
        if let Some(id) = media::audio_level_id(&sdp) {
            self.audio_level_ext = Some(id);
        }
        let answer = negotiation::answer_publisher(&peer, sdp)
            .await
            .map_err(|err| self.sdp_failed("the offer could not be applied", &err))?;
        self.publisher_described = true;
        self.add_early_candidates(PeerTarget::Publisher).await?;
        socket.send(&ServerMessage::Answer { sdp: answer }).await;
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

    /// Counts and logs a failed peer connection, and words what the person should check.
    fn connection_failed(&self, target: PeerTarget) -> ServerMessage {
        let index = slot(target);
        let ice = self.ice_states[index];
        // webrtc-rs reports the connection's failure before its ICE state, so the last ICE
        // state seen is the one before the failure: DTLS can only fail once ICE connected.
        let cause = match ice {
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed => {
                FailureCause::Dtls
            }
            _ => FailureCause::Ice,
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
        let codec = match ssrc {
            Some(ssrc) => remote.codec(ssrc).await,
            None => None,
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
                        ssrc,
                        if kind == TrackKind::Audio {
                            self.audio_level_ext
                        } else {
                            None
                        },
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
