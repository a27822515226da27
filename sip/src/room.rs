//! The caller in the room: the gateway joins the SFU as a WebRTC client (webrtc-rs, as the
//! portal's browser does) with the token `POST /join` gave, so that the caller is a participant
//! like any other (shown, muted, made speaker or excluded by moderators), and publishes the
//! caller's voice as a microphone track in Opus.
//!
//! The room's audio that arrives on the session's subscriber connection goes to the meeting's
//! [`Conference`], shared by every call of the meeting, which decodes each packet once and mixes
//! once; the call takes its share ([`Member::next_frame`]). What the SFU says about the
//! session (someone joined, the microphone was blocked, the session closed) comes out as
//! [`RoomEvent`]s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use proto::ConferenceId;
use proto::ParticipantId;
use proto::signal::{
    ClientMessage, CloseReason, ErrorCode, IceCandidate, PeerTarget, ServerMessage, TrackSource,
};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCSessionDescription,
    register_default_interceptors,
};

use crate::conference::{self, Conference, Conferences, Member, OwnTrack};

/// RTP timestamp units in 20 ms (Opus's RTP clock is always 48 kHz).
const OPUS_TICKS: u32 = 960;
/// Samples in 20 ms at 8 kHz.
const PHONE_FRAME: usize = conference::FRAME;
/// libopus's encoder complexity for a caller's voice (0-10).
pub const ENCODER_COMPLEXITY: i32 = 5;
/// The dynamic payload type of our Opus track (the SFU rewrites nothing; the SDP maps it).
const OPUS_PT: u8 = 111;

/// Where and how to enter the room: the parts of the join answer the gateway uses.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The join token.
    pub token: String,
    /// The signaling websocket (`ws://…/rtc`, or `…/rtc/<pod>` relayed by the API).
    pub endpoint: String,
    /// The conference.
    pub conference: ConferenceId,
}

/// Why the room could not be entered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RoomError(String);

impl From<String> for RoomError {
    fn from(message: String) -> RoomError {
        RoomError(message)
    }
}

impl RoomError {
    fn new(what: &str, cause: impl std::fmt::Display) -> RoomError {
        RoomError(format!("{what}: {cause}"))
    }

    /// Whether the SFU refused because the room is full (the caller hears "conference full").
    pub fn is_full(&self) -> bool {
        self.0.starts_with(ROOM_FULL)
    }
}

/// How a refusal for a full room starts.
const ROOM_FULL: &str = "the room is full";

/// What the SFU says to a call's session while it is in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// Someone else entered the meeting.
    ParticipantJoined,
    /// A speaker or moderator muted the caller (`true`) or allowed them to speak again.
    MicrophoneBlocked(bool),
    /// The SFU ended the session (the meeting ended, the caller was excluded, the meeting
    /// moved to another pod, …).
    Closed(CloseReason),
    /// The signaling websocket closed without a reason (the SFU went away).
    Lost,
    /// A recording runs (`true`: it started, or was running when the caller entered) or
    /// stopped.
    Recording(bool),
}

/// One caller's session in the room.
pub struct Room {
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    publisher: Arc<dyn PeerConnection>,
    subscriber: Arc<dyn PeerConnection>,
    voice: Voice,
    member: Member,
    others: usize,
    events: Option<mpsc::UnboundedReceiver<RoomEvent>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").finish_non_exhaustive()
    }
}

/// The caller's voice going out: 8 kHz samples in, 20 ms Opus packets on the track.
struct Voice {
    id: String,
    track: Arc<TrackLocalStaticRTP>,
    encoder: opus::Encoder,
    /// Samples per second the encoder takes.
    rate: u32,
    muted: bool,
    pending: Vec<i16>,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

impl Room {
    /// Opens the signaling websocket, joins, and offers the caller's microphone track; the
    /// room's audio goes to the meeting's conference in `conferences`. Returns once the SFU
    /// said `joined`.
    ///
    /// # Errors
    /// The websocket, a refusal by the SFU, libopus or webrtc failing.
    pub async fn join(
        admission: &Admission,
        conferences: &Arc<Conferences>,
    ) -> Result<Room, RoomError> {
        let (ws, _) = tokio_tungstenite::connect_async(admission.endpoint.as_str())
            .await
            .map_err(|e| RoomError::new(&format!("websocket {}", admission.endpoint), e))?;
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<ClientMessage>();
        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                let Ok(text) = serde_json::to_string(&message) else {
                    continue;
                };
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let member = conferences.enter(&admission.conference);
        let conference = Arc::clone(member.conference());
        let local = media_addrs(&admission.endpoint).await;
        let publisher = peer(&local, PeerTarget::Publisher, &outgoing, &conference).await?;
        let subscriber = peer(&local, PeerTarget::Subscriber, &outgoing, &conference).await?;
        let (joined_tx, mut joined) = mpsc::unbounded_channel::<ServerMessage>();
        let (events_tx, events) = mpsc::unbounded_channel::<RoomEvent>();
        let reader = {
            let mut signals = Signals {
                publisher: Arc::clone(&publisher),
                subscriber: Arc::clone(&subscriber),
                outgoing: outgoing.clone(),
                first: joined_tx,
                events: events_tx,
                own: member.own_handle(),
                you: None,
                closed: false,
            };
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(parsed) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                        continue;
                    };
                    signals.on(parsed).await;
                }
                tracing::debug!("the SFU closed the signaling websocket");
                if !signals.closed {
                    let _ = signals.events.send(RoomEvent::Lost);
                }
            })
        };
        let send = |message| {
            outgoing
                .send(message)
                .map_err(|_| RoomError("the signaling websocket closed".into()))
        };
        send(ClientMessage::Join {
            token: admission.token.clone(),
            conference: admission.conference.clone(),
            receive_codecs: Some(vec![MIME_TYPE_OPUS.to_owned()]),
        })?;
        // The first answer: `joined`, `waiting` (the owner is not there yet), or an error.
        let first = tokio::time::timeout(Duration::from_secs(10), joined.recv())
            .await
            .map_err(|_| RoomError("the SFU did not answer the join".into()))?
            .ok_or_else(|| RoomError("the SFU closed before answering the join".into()))?;
        let admitted = if let ServerMessage::Waiting = first {
            tracing::info!("waiting for the meeting's owner");
            joined.recv().await
        } else {
            Some(first)
        };
        let participants = match admitted {
            Some(ServerMessage::Joined { participants, .. }) => participants,
            Some(ServerMessage::Error {
                code: ErrorCode::RoomFull,
                message,
            }) => return Err(RoomError(format!("{ROOM_FULL}: {message}"))),
            other => return Err(RoomError(format!("not admitted: {other:?}"))),
        };
        let others = participants.len().saturating_sub(1);
        let voice = Voice::publish(&publisher, &outgoing).await?;
        let offer = publisher
            .create_offer(None)
            .await
            .map_err(|e| RoomError::new("offer", e))?;
        let sdp = offer.sdp.clone();
        publisher
            .set_local_description(offer)
            .await
            .map_err(|e| RoomError::new("local description", e))?;
        send(ClientMessage::Offer { sdp })?;
        tracing::info!("in the room");
        Ok(Room {
            outgoing,
            publisher,
            subscriber,
            voice,
            member,
            others,
            events: Some(events),
            tasks: vec![writer, reader],
        })
    }

    /// Participants in the meeting besides the caller when the call entered.
    pub fn others(&self) -> usize {
        self.others
    }

    /// What the SFU says from now on (taken once).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<RoomEvent>> {
        self.events.take()
    }

    /// Sends the caller's voice (samples at `rate`, 8 or 16 kHz, any length; sent in 20 ms
    /// Opus packets), unless the caller is muted.
    pub async fn send_voice(&mut self, samples: &[i16], rate: u32) {
        if rate != self.voice.rate {
            match Voice::encoder(rate) {
                Ok(encoder) => {
                    self.voice.encoder = encoder;
                    self.voice.rate = rate;
                    self.voice.pending.clear();
                }
                Err(err) => {
                    tracing::warn!(cause = %err, rate, "no Opus encoder for this rate");
                    return;
                }
            }
        }
        self.voice.send(samples).await;
    }

    /// Mutes or unmutes the caller: their voice stops going out, and the room is told (the
    /// portal shows the microphone muted).
    pub fn set_muted(&mut self, muted: bool) {
        self.voice.muted = muted;
        self.voice.pending.clear();
        let _ = self.outgoing.send(ClientMessage::MuteTrack {
            track_id: self.voice.id.clone(),
            muted,
        });
    }

    /// The next 20 ms of the room for this caller (everyone but themselves) at 8 kHz, or
    /// `None` when nobody is heard.
    pub fn mixed(&mut self) -> Option<Vec<i16>> {
        self.member.next_frame()
    }

    /// Says `leave` and closes the peer connections.
    pub async fn leave(self) {
        let _ = self.outgoing.send(ClientMessage::Leave);
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
        // Let the writer send `leave` before it goes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for task in self.tasks {
            task.abort();
        }
    }
}

impl Voice {
    /// Adds the microphone track to the publisher and announces it.
    async fn publish(
        publisher: &Arc<dyn PeerConnection>,
        outgoing: &mpsc::UnboundedSender<ClientMessage>,
    ) -> Result<Voice, RoomError> {
        let id = format!("phone-{:08x}", rand::random::<u32>());
        let ssrc = rand::random::<u32>();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "phone".into(),
            id.clone(),
            id.clone(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.into(),
                    clock_rate: 48_000,
                    // RFC 7587: always signalled as 2 channels; we send mono.
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        )));
        publisher
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| RoomError::new("add track", e))?;
        let _ = outgoing.send(ClientMessage::Publish {
            track_id: id.clone(),
            source: TrackSource::Microphone,
            muted: false,
        });
        Ok(Voice {
            id,
            track,
            encoder: Voice::encoder(conference::RATE)?,
            rate: conference::RATE,
            muted: false,
            pending: Vec::with_capacity(2 * PHONE_FRAME),
            ssrc,
            sequence: rand::random(),
            timestamp: rand::random(),
        })
    }

    /// An Opus encoder for a phone's voice at `rate` (8 kHz G.711, 16 kHz G.722): libopus
    /// takes it as it is (narrowband or wideband SILK), no resampling.
    fn encoder(rate: u32) -> Result<opus::Encoder, RoomError> {
        let mut encoder = opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip)
            .map_err(|e| RoomError::new("opus encoder", e))?;
        // Speech needs little: 16 kb/s narrowband, 24 kb/s wideband, with in-band FEC so that
        // a listener can make up a lost packet from the next one. Complexity 5 of 10 sounds the
        // same for speech at about half the CPU of the default (measured in benches/phones.rs),
        // which is what lets one core carry 200 calls.
        let bitrate = if rate > conference::RATE {
            24_000
        } else {
            16_000
        };
        encoder
            .set_bitrate(opus::Bitrate::Bits(bitrate))
            .and_then(|()| encoder.set_complexity(ENCODER_COMPLEXITY))
            .and_then(|()| encoder.set_inband_fec(true))
            .and_then(|()| encoder.set_packet_loss_perc(5))
            .map_err(|e| RoomError::new("opus settings", e))?;
        Ok(encoder)
    }

    async fn send(&mut self, samples: &[i16]) {
        if self.muted {
            return;
        }
        self.pending.extend_from_slice(samples);
        let mut buf = [0u8; 1500];
        let frame_len = usize::try_from(self.rate / 50).unwrap_or(PHONE_FRAME);
        while self.pending.len() >= frame_len {
            let frame: Vec<i16> = self.pending.drain(..frame_len).collect();
            let len = match self.encoder.encode(&frame, &mut buf) {
                Ok(len) => len,
                Err(err) => {
                    tracing::warn!(cause = %err, "opus encoding failed");
                    continue;
                }
            };
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::Header {
                    version: 2,
                    payload_type: OPUS_PT,
                    sequence_number: self.sequence,
                    timestamp: self.timestamp,
                    ssrc: self.ssrc,
                    ..Default::default()
                },
                payload: Bytes::copy_from_slice(&buf[..len]),
            };
            self.sequence = self.sequence.wrapping_add(1);
            self.timestamp = self.timestamp.wrapping_add(OPUS_TICKS);
            if let Err(err) = self.track.write_rtp(packet).await {
                tracing::trace!(cause = %err, "voice packet not sent");
            }
        }
    }
}

/// The signaling task's view of the session.
struct Signals {
    publisher: Arc<dyn PeerConnection>,
    subscriber: Arc<dyn PeerConnection>,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    /// `joined`, `waiting` and errors before the call is in.
    first: mpsc::UnboundedSender<ServerMessage>,
    events: mpsc::UnboundedSender<RoomEvent>,
    own: OwnTrack,
    you: Option<ParticipantId>,
    closed: bool,
}

impl Signals {
    /// Applies one signaling message: answers, the subscriber's offers, candidates; tells the
    /// conference which track is the caller's own; turns the rest into [`RoomEvent`]s.
    async fn on(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Answer { sdp } => {
                if let Ok(answer) = RTCSessionDescription::answer(sdp)
                    && let Err(err) = self.publisher.set_remote_description(answer).await
                {
                    tracing::warn!(cause = %err, "the SFU's answer was not applied");
                }
            }
            ServerMessage::Offer { sdp } => {
                let Ok(offer) = RTCSessionDescription::offer(sdp) else {
                    return;
                };
                if let Err(err) = self.subscriber.set_remote_description(offer).await {
                    tracing::warn!(cause = %err, "the SFU's offer was not applied");
                    return;
                }
                let Ok(answer) = self.subscriber.create_answer(None).await else {
                    return;
                };
                let sdp = answer.sdp.clone();
                if self.subscriber.set_local_description(answer).await.is_ok() {
                    let _ = self.outgoing.send(ClientMessage::Answer { sdp });
                }
            }
            ServerMessage::Candidate { target, candidate } => {
                let peer = match target {
                    PeerTarget::Publisher => &self.publisher,
                    PeerTarget::Subscriber => &self.subscriber,
                };
                let _ = peer
                    .add_ice_candidate(RTCIceCandidateInit {
                        candidate: candidate.candidate,
                        sdp_mid: candidate.sdp_mid,
                        sdp_mline_index: candidate.sdp_m_line_index,
                        username_fragment: candidate.username_fragment,
                        ..Default::default()
                    })
                    .await;
            }
            ServerMessage::Joined {
                ref you, recording, ..
            } => {
                self.you = Some(you.clone());
                // Told after the arrival prompts, which the call queues on entering.
                let _ = self.events.send(RoomEvent::Recording(recording));
                let _ = self.first.send(message);
            }
            ServerMessage::Recording { active, .. } => {
                let _ = self.events.send(RoomEvent::Recording(active));
            }
            message @ (ServerMessage::Waiting | ServerMessage::Error { .. }) => {
                let _ = self.first.send(message);
            }
            ServerMessage::TrackPublished { track }
                if self.you.as_ref() == Some(&track.participant) =>
            {
                self.own.set(track.id.as_str());
            }
            ServerMessage::TrackUnpublished { track } => {
                self.own.conference().forget(track.as_str());
            }
            ServerMessage::ParticipantJoined { participant }
                if self.you.as_ref() != Some(&participant.id) =>
            {
                let _ = self.events.send(RoomEvent::ParticipantJoined);
            }
            ServerMessage::MicrophoneBlocked { blocked, .. } => {
                let _ = self.events.send(RoomEvent::MicrophoneBlocked(blocked));
            }
            ServerMessage::Closed { reason } => {
                self.closed = true;
                let _ = self.events.send(RoomEvent::Closed(reason));
            }
            _ => {}
        }
    }
}

/// Trickles our candidates and hands each audio packet that arrives to the conference.
struct Handler {
    target: PeerTarget,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    conference: Arc<Conference>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.outgoing.send(ClientMessage::Candidate {
                target: self.target,
                candidate: IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_m_line_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                },
            });
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Audio {
            return;
        }
        let id = track.track_id().await.to_string();
        let conference = Arc::clone(&self.conference);
        tokio::spawn(async move {
            tracing::debug!(track = %id, "hearing a track of the room");
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                    continue;
                };
                conference.push(&id, packet.header.sequence_number, packet.payload);
            }
        });
    }
}

async fn peer(
    local: &[SocketAddr],
    target: PeerTarget,
    outgoing: &mpsc::UnboundedSender<ClientMessage>,
    conference: &Arc<Conference>,
) -> Result<Arc<dyn PeerConnection>, RoomError> {
    let mut engine = MediaEngine::default();
    engine
        .register_default_codecs()
        .map_err(|e| RoomError::new("codecs", e))?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)
        .map_err(|e| RoomError::new("interceptors", e))?;
    let setting = SettingEngineBuilder::new()
        .with_include_loopback_candidate(true)
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO));
    let peer = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(setting.build())
        .with_handler(Arc::new(Handler {
            target,
            outgoing: outgoing.clone(),
            conference: Arc::clone(conference),
        }))
        .with_udp_addrs(local.to_vec())
        .build()
        .await
        .map_err(|e| RoomError::new("peer connection", e))?;
    Ok(Arc::new(peer))
}

/// Where the media sockets bind. Signaling straight to an SFU (`…/rtc`): the address the
/// route to it leaves from (loopback for an SFU on loopback). Relayed by the API
/// (`…/rtc/<pod>`): the SFU's address is unknown, so every interface (the wildcard).
async fn media_addrs(endpoint: &str) -> Vec<SocketAddr> {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let any = vec![SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)];
    if path.trim_end_matches('/') != "rtc" {
        return any;
    }
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let Some(sfu) = tokio::net::lookup_host(authority.as_str())
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
    else {
        return any;
    };
    let ip = if sfu.ip().is_loopback() {
        IpAddr::from(Ipv4Addr::LOCALHOST)
    } else {
        std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|socket| {
                socket.connect(sfu)?;
                socket.local_addr()
            })
            .map_or(Ipv4Addr::UNSPECIFIED.into(), |local| local.ip())
    };
    vec![SocketAddr::new(ip, 0)]
}
