//! A Rust WebRTC client of the Conclave SFU, on the same `webrtc` crate: it joins with a
//! token, publishes synthetic Opus and VP8, and counts what it receives. The SFU's tests
//! drive it, and it is the seed of the load generator.
//!
//! # Layout
//! - [`Client`]: one participant (a websocket and two peer connections).
//! - [`attendee`]: a participant that joins through the API and reconnects by itself, as the
//!   portal does (`lostPod`, `moved`, `wrongPod`), recording each connection's timing.
//! - [`netns`]: re-executes a test inside a network namespace that has only `lo`.
//! - [`janus`]: the same peers and media as a client of Janus' VideoRoom (the side-by-side
//!   benchmark in `sfu/benches/side_by_side.rs`).
//!
//! A client can publish its camera in three simulcast layers ([`MediaPlan::simulcast`]), say what
//! its microphone hears ([`Client::set_speech`]), send REMB ([`Client::send_remb`]), and keeps
//! a log of the video packets it receives ([`Received::video_log`]).

pub mod attendee;
pub mod janus;
pub mod netns;

pub use attendee::{Attendee, AttendeeOptions, Connection, Ended};

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use proto::signal::{ClientMessage, IceCandidate, PeerTarget, ServerMessage, TrackSource};
use proto::{ConferenceId, ParticipantId};
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
    register_default_interceptors,
};

/// What one received track brought.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The participant who publishes it (the stream ID).
    pub publisher: String,
    /// Audio or video.
    pub video: bool,
    /// RTP packets.
    pub packets: u64,
    /// The sequence numbers seen: what is missing ([`Received::lost`]).
    pub sequence: SequenceGaps,
    /// VP8 keyframes.
    pub keyframes: u64,
    /// When the track appeared.
    pub started: Option<Instant>,
    /// When the first keyframe arrived.
    pub first_keyframe: Option<Instant>,
    /// Forwarding latency samples in microseconds (from a send timestamp in the payload).
    pub latencies_us: Vec<u64>,
    /// The first [`KEPT_AUDIO_PAYLOADS`] audio payloads in arrival order (Opus), for tests that
    /// decode what they heard.
    pub audio_payloads: Vec<Bytes>,
    /// The last [`KEPT_VIDEO_PACKETS`] video packets as a decoder sees them, in arrival order.
    pub video_log: VecDeque<VideoPacket>,
}

impl Received {
    /// Packets missing from the sequence now: gaps in the sequence numbers, less those a late
    /// packet (a retransmission) filled afterwards. Can fall as retransmissions arrive.
    pub fn lost(&self) -> u64 {
        self.sequence.missing()
    }
}

/// The gaps in one stream's RTP sequence numbers. A packet older than the highest seen (a
/// retransmission answering a NACK, or one that arrived out of order) fills its hole instead
/// of opening a new one, so a late retransmission is not counted as loss of the packets sent
/// since. Holes older than [`SequenceGaps::WINDOW`] packets stay counted; a jump of more than
/// [`SequenceGaps::JUMP`] numbers (a stream that restarted) is not counted at all.
#[derive(Debug, Clone, Default)]
pub struct SequenceGaps {
    /// The highest sequence number seen, extended past wraparounds (offset by 2^16 so that
    /// one a little below the first stays positive).
    highest: Option<u64>,
    /// Holes still within the window, which a late packet may fill.
    open: std::collections::BTreeSet<u64>,
    /// Holes that left the window unfilled.
    closed: u64,
}

impl SequenceGaps {
    /// Holes a late packet can still fill.
    pub const WINDOW: u64 = 4096;
    /// Larger jumps are a restart, not loss.
    pub const JUMP: u64 = 1000;

    /// Notes the arrival of sequence number `seq`.
    pub fn note(&mut self, seq: u16) {
        let Some(highest) = self.highest else {
            self.highest = Some(u64::from(seq) + (1 << 16));
            return;
        };
        // The extended number nearest to the highest.
        let mut extended = (highest & !0xFFFF) | u64::from(seq);
        if extended + 0x8000 < highest {
            extended += 1 << 16;
        } else if extended > highest + 0x8000 {
            extended -= 1 << 16;
        }
        if extended > highest {
            let gap = extended - highest - 1;
            if gap <= Self::JUMP {
                self.open.extend(highest + 1..extended);
            }
            self.highest = Some(extended);
            let oldest = extended.saturating_sub(Self::WINDOW);
            while let Some(&first) = self.open.first() {
                if first >= oldest {
                    break;
                }
                self.open.pop_first();
                self.closed += 1;
            }
        } else {
            self.open.remove(&extended);
        }
    }

    /// Packets missing now.
    pub fn missing(&self) -> u64 {
        self.closed + self.open.len() as u64
    }
}

/// One received video packet: its RTP numbering, its VP8 descriptor, and the simulcast layer
/// this client's publisher tagged it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoPacket {
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// VP8 picture ID, when the descriptor has one.
    pub picture_id: Option<u16>,
    /// VP8 TL0PICIDX, when the descriptor has one.
    pub tl0: Option<u8>,
    /// The first packet of a keyframe.
    pub keyframe: bool,
    /// The layer the synthetic publisher sent it on (0 low … 2 high), when it was simulcast.
    pub layer: Option<u8>,
    /// When it arrived.
    pub at: Instant,
}

/// How many video packets a track keeps in [`Received::video_log`].
pub const KEPT_VIDEO_PACKETS: usize = 20_000;

/// Reads a synthetic VP8 payload: its descriptor (with the `rtp` crate's depacketizer), the
/// keyframe bit of the frame header, and the layer tag after the send stamp.
fn video_packet(packet: &rtp::Packet, at: Instant) -> VideoPacket {
    use rtc::rtp::packetizer::Depacketizer;
    let mut descriptor = rtc::rtp::codec::vp8::Vp8Packet::default();
    let frame = descriptor.depacketize(&packet.payload).unwrap_or_default();
    let payload = &packet.payload;
    let layer = payload
        .windows(4)
        .position(|w| w == STAMP)
        .and_then(|at| payload.get(at + 12))
        .copied()
        .filter(|tag| *tag & 0xf0 == LAYER_TAG)
        .map(|tag| tag & 0x0f);
    VideoPacket {
        sequence: packet.header.sequence_number,
        timestamp: packet.header.timestamp,
        picture_id: (descriptor.i == 1).then_some(descriptor.picture_id),
        tl0: (descriptor.l == 1).then_some(descriptor.tl0_pic_idx),
        keyframe: descriptor.s == 1
            && descriptor.pid == 0
            && frame.first().is_some_and(|tag| tag & 0x01 == 0),
        layer,
        at,
    }
}

/// The high nibble of the layer tag a simulcast publisher writes after the send stamp.
const LAYER_TAG: u8 = 0xa0;

/// How many audio payloads a track keeps (a minute of 20 ms packets).
pub const KEPT_AUDIO_PAYLOADS: usize = 3000;

type ReceivedMap = Arc<Mutex<HashMap<String, Received>>>;

/// The tracks a subscriber connection receives, by track ID.
type Remotes = Arc<Mutex<HashMap<String, Arc<dyn TrackRemote>>>>;

struct Handler {
    target: PeerTarget,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    received: ReceivedMap,
    remotes: Remotes,
    failed: Arc<AtomicBool>,
    connected: Connected,
    first_packet: Connected,
}

/// When a peer connection last became connected.
type Connected = Arc<Mutex<Option<Instant>>>;

/// The close frame the server sent: code and reason.
type CloseFrameSeen = Arc<Mutex<Option<(u16, String)>>>;

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

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Failed => self.failed.store(true, Ordering::Release),
            RTCPeerConnectionState::Connected => *self.connected.lock() = Some(Instant::now()),
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let id = track.track_id().await.to_string();
        self.remotes.lock().insert(id.clone(), Arc::clone(&track));
        let publisher = track.stream_id().await.to_string();
        let video = track.kind().await == RtpCodecKind::Video;
        let received = Arc::clone(&self.received);
        let first_packet = Arc::clone(&self.first_packet);
        received.lock().insert(
            id.clone(),
            Received {
                publisher,
                video,
                started: Some(Instant::now()),
                ..Received::default()
            },
        );
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                    continue;
                };
                let now = Instant::now();
                first_packet.lock().get_or_insert(now);
                let mut map = received.lock();
                let Some(entry) = map.get_mut(&id) else {
                    continue;
                };
                entry.packets += 1;
                if entry.video {
                    if entry.video_log.len() == KEPT_VIDEO_PACKETS {
                        entry.video_log.pop_front();
                    }
                    entry.video_log.push_back(video_packet(&packet, now));
                }
                entry.sequence.note(packet.header.sequence_number);
                let payload = &packet.payload;
                if entry.video && entry.video_log.back().is_some_and(|p| p.keyframe) {
                    entry.keyframes += 1;
                    entry.first_keyframe.get_or_insert(now);
                }
                if let Some(sent) = sent_at(payload) {
                    entry.latencies_us.push(clock_us().saturating_sub(sent));
                }
                if !entry.video && entry.audio_payloads.len() < KEPT_AUDIO_PAYLOADS {
                    entry.audio_payloads.push(payload.clone());
                }
            }
        });
    }
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn clock_us() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Payloads carry a marker and the send time so receivers measure latency.
const STAMP: &[u8; 4] = b"CLV1";

fn sent_at(payload: &[u8]) -> Option<u64> {
    let at = payload.windows(4).position(|w| w == STAMP)?;
    let bytes: [u8; 8] = payload.get(at + 4..at + 12)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The RFC 6464 audio-level header extension, which the SFU reads for speaker detection.
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

fn engine(sender_reports: &Arc<AtomicU64>) -> Result<(MediaEngine, Registry)> {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs()?;
    engine.register_header_extension(
        rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.into(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?.with(
        Slot::from(14_000),
        KeyframeRequestsToApplication {
            sender_reports: Arc::clone(sender_reports),
            ..KeyframeRequestsToApplication::default()
        },
    );
    Ok((engine, registry))
}

fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Lets PLI and FIR reach `TrackLocal::poll`: in rtc 0.21 inbound RTCP stops at the end of the
/// interceptor chain unless an interceptor marks it [`Attribute::DeliverToApplication`].
/// Application-most (slot 14 000), so the other interceptors have seen every packet first.
/// It also counts the sender reports that arrive.
#[derive(Default)]
struct KeyframeRequestsToApplication {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
    sender_reports: Arc<AtomicU64>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestsToApplication {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let reports = packets
                .iter()
                .filter(|packet| packet.as_any().is::<SenderReport>())
                .count();
            self.sender_reports
                .fetch_add(reports as u64, Ordering::Relaxed);
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|packet| is_keyframe_request(packet.as_ref()))
                .cloned()
                .collect();
            if !requests.is_empty() {
                msg.message.packet = Packet::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestsToApplication {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// The local address media to `remote` leaves from: loopback for an SFU on loopback (as in
/// the SFU's tests), else the address of the interface the route to it goes through (an SFU
/// on another host or network namespace, as in the cluster test). Binding the media sockets
/// there gives a host candidate the SFU can answer.
fn local_ip_towards(remote: SocketAddr) -> IpAddr {
    if remote.ip().is_loopback() {
        return Ipv4Addr::LOCALHOST.into();
    }
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| {
            socket.connect(remote)?;
            socket.local_addr()
        })
        .map(|local| local.ip())
        .unwrap_or(Ipv4Addr::LOCALHOST.into())
}

/// How a client's media connections reach the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// UDP, as browsers prefer.
    #[default]
    Udp,
    /// ICE over TCP only (active candidates, RFC 6544): the client has no UDP socket at all,
    /// as behind a network that blocks UDP.
    TcpOnly,
}

/// Where the media sockets bind. Signaling straight to an SFU (`…/rtc`): the one address
/// towards it ([`local_ip_towards`]). Signaling relayed by the API (`…/rtc/<pod>`): the SFU's
/// address is not known beforehand, so, as a browser does, every interface but loopback (the
/// wildcard, which webrtc expands to one socket per interface address) when there is one —
/// a loopback candidate would pair with the SFU's own loopback — else loopback alone.
fn media_addrs(endpoint: &str, signaling: SocketAddr) -> Vec<SocketAddr> {
    let path = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split_once('/')
        .map_or("", |(_, path)| path);
    let relayed = path.trim_end_matches('/') != "rtc";
    if relayed && routes_beyond_loopback() {
        vec![SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)]
    } else if relayed {
        vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)]
    } else {
        vec![SocketAddr::new(local_ip_towards(signaling), 0)]
    }
}

/// Whether an IPv4 route leads out of an interface other than loopback (`/proc/net/route`
/// lists the main table, which holds no loopback routes).
fn routes_beyond_loopback() -> bool {
    std::fs::read_to_string("/proc/net/route").is_ok_and(|table| {
        table
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next())
            .any(|interface| interface != "lo")
    })
}

/// What a peer connection's handler reports into.
struct Sinks {
    received: ReceivedMap,
    remotes: Remotes,
    failed: Arc<AtomicBool>,
    first_packet: Connected,
    sender_reports: Arc<AtomicU64>,
}

async fn peer(
    local: &[SocketAddr],
    transport: Transport,
    target: PeerTarget,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    sinks: &Sinks,
    connected: Connected,
) -> Result<Arc<dyn PeerConnection>> {
    let (engine, registry) = engine(&sinks.sender_reports)?;
    let mut setting = SettingEngineBuilder::new()
        .with_include_loopback_candidate(true)
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // Like a browser, nominate the SFU's address at once when its checks came before its
        // trickled candidates (peer-reflexive), instead of webrtc-rs's one-second wait.
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO));
    let (udp, tcp) = match transport {
        Transport::Udp => (local.to_vec(), Vec::new()),
        Transport::TcpOnly => {
            setting = setting.with_network_types(vec![
                rtc::ice::network_type::NetworkType::Tcp4,
                rtc::ice::network_type::NetworkType::Tcp6,
            ]);
            (Vec::new(), local.to_vec())
        }
    };
    let peer = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(setting.build())
        .with_handler(Arc::new(Handler {
            target,
            outgoing,
            received: Arc::clone(&sinks.received),
            remotes: Arc::clone(&sinks.remotes),
            failed: Arc::clone(&sinks.failed),
            connected,
            first_packet: Arc::clone(&sinks.first_packet),
        }))
        .with_udp_addrs(udp)
        .with_tcp_addrs(tcp)
        .build()
        .await?;
    Ok(Arc::new(peer))
}

/// Per published simulcast track (the client's track ID): whether each layer is paused.
type LayersWanted = Arc<Mutex<HashMap<String, Arc<[AtomicBool; 3]>>>>;

/// The simulcast layers a synthetic publisher sends: RTP stream ID, share of the video
/// bitrate, frame size.
const SIMULCAST: [(&str, u32, (u16, u16)); 3] = [
    ("q", 8, (320, 180)),
    ("h", 4, (640, 360)),
    ("f", 1, (1280, 720)),
];

/// What a client's synthetic microphone says in the audio-level extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Speech {
    /// No audio-level extension (the default).
    NotSaid = 0,
    /// Silence (level 127).
    Silent = 1,
    /// Speech (−25 dBov, voice activity set).
    Speaking = 2,
}

/// Synthetic media published by a client.
#[derive(Debug, Clone, Copy)]
pub struct MediaPlan {
    /// Video bitrate in bits per second (30 frames per second); with simulcast, the high
    /// layer's (the medium layer gets a quarter, the low one an eighth).
    pub video_bps: u32,
    /// Send video as three simulcast layers (RTP stream IDs `q`, `h`, `f`) with VP8 picture
    /// IDs and TL0PICIDX, as a browser does with three `sendEncodings`.
    pub simulcast: bool,
    /// Time between periodic keyframes besides those asked for by PLI/FIR; `None` (the
    /// default): only the first frame and requested ones, like a browser in steady state.
    pub keyframe_every: Option<Duration>,
}

impl Default for MediaPlan {
    fn default() -> Self {
        Self {
            video_bps: 300_000,
            simulcast: false,
            keyframe_every: None,
        }
    }
}

/// One participant.
pub struct Client {
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    events: mpsc::UnboundedReceiver<ServerMessage>,
    publisher: Arc<dyn PeerConnection>,
    subscriber: Arc<dyn PeerConnection>,
    /// What arrived, by the room's track ID.
    pub received: ReceivedMap,
    remotes: Remotes,
    /// Per simulcast track this client publishes: which layers the SFU paused.
    layers_wanted: LayersWanted,
    /// What the microphones' audio-level extension says ([`Speech`] as a number).
    speech: Arc<std::sync::atomic::AtomicU8>,
    /// Packets this client sent.
    pub sent: Arc<AtomicU64>,
    /// Keyframe requests (PLI/FIR) that reached this client's published video.
    pub keyframe_requests: Arc<AtomicU64>,
    /// RTCP sender reports that reached this client (the SFU sends them on the connection it
    /// forwards media on).
    pub sender_reports: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    publisher_connected: Connected,
    subscriber_connected: Connected,
    /// Set when either peer connection failed (ICE or DTLS).
    failed: Arc<AtomicBool>,
    /// When the first media packet of anybody arrived.
    first_packet: Connected,
    stop: Arc<AtomicBool>,
    close_frame: CloseFrameSeen,
    /// The first answer to `join`: `joined`, `waiting` or an error.
    pub first: ServerMessage,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens `ws://{addr}/rtc`, joins with `token`, and waits for the first answer.
    ///
    /// # Errors
    /// Connection errors; a refusal is not an error (see [`Client::first`]).
    pub async fn join(addr: SocketAddr, token: &str, conference: &ConferenceId) -> Result<Self> {
        Self::join_at(
            &format!("ws://{addr}/rtc"),
            addr,
            token,
            conference,
            Transport::Udp,
            None,
        )
        .await
    }

    /// [`Client::join`] with media over `transport`.
    ///
    /// # Errors
    /// As [`Client::join`].
    pub async fn join_over(
        addr: SocketAddr,
        token: &str,
        conference: &ConferenceId,
        transport: Transport,
    ) -> Result<Self> {
        Self::join_at(
            &format!("ws://{addr}/rtc"),
            addr,
            token,
            conference,
            transport,
            None,
        )
        .await
    }

    /// Opens the signaling websocket at `endpoint` (a `ws://` URL, as `POST /join` answers it),
    /// joins with `token`, and waits for the first answer.
    ///
    /// # Errors
    /// An endpoint that does not resolve, connection errors; a refusal is not an error (see
    /// [`Client::first`]).
    pub async fn join_url(endpoint: &str, token: &str, conference: &ConferenceId) -> Result<Self> {
        Self::join_url_from(endpoint, token, conference, None).await
    }

    /// [`Client::join_url`] with media bound to `media_ip` (`None`: chosen as
    /// [`Client::join_url`] does). A host with several interfaces whose addresses come and go
    /// (the cluster box's nodes) binds media to one that stays.
    ///
    /// # Errors
    /// As [`Client::join_url`].
    pub async fn join_url_from(
        endpoint: &str,
        token: &str,
        conference: &ConferenceId,
        media_ip: Option<IpAddr>,
    ) -> Result<Self> {
        let authority = authority_of(endpoint)?;
        let addr = tokio::net::lookup_host(authority.as_str())
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .ok_or_else(|| anyhow!("{authority} resolves to no address"))?;
        Self::join_at(endpoint, addr, token, conference, Transport::Udp, media_ip).await
    }

    async fn join_at(
        endpoint: &str,
        addr: SocketAddr,
        token: &str,
        conference: &ConferenceId,
        transport: Transport,
        media_ip: Option<IpAddr>,
    ) -> Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(endpoint)
            .await
            .with_context(|| format!("websocket {endpoint}"))?;
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<ClientMessage>();
        let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<String>();
        let writer = tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = outgoing_rx.recv() => {
                        let Some(message) = message else { break };
                        let Ok(text) = serde_json::to_string(&message) else { continue };
                        if sink.send(Message::text(text)).await.is_err() { break; }
                    }
                    raw = raw_rx.recv() => {
                        let Some(raw) = raw else { break };
                        if sink.send(Message::text(raw)).await.is_err() { break; }
                    }
                }
            }
            let _ = sink.close().await;
        });
        let sinks = Sinks {
            received: Arc::default(),
            remotes: Arc::default(),
            failed: Arc::new(AtomicBool::new(false)),
            first_packet: Connected::default(),
            sender_reports: Arc::default(),
        };
        let publisher_connected = Connected::default();
        let subscriber_connected = Connected::default();
        let local = media_ip.map_or_else(
            || media_addrs(endpoint, addr),
            |ip| vec![SocketAddr::new(ip, 0)],
        );
        let publisher = peer(
            &local,
            transport,
            PeerTarget::Publisher,
            outgoing.clone(),
            &sinks,
            Arc::clone(&publisher_connected),
        )
        .await?;
        let subscriber = peer(
            &local,
            transport,
            PeerTarget::Subscriber,
            outgoing.clone(),
            &sinks,
            Arc::clone(&subscriber_connected),
        )
        .await?;
        let Sinks {
            received,
            remotes,
            failed,
            first_packet,
            sender_reports,
        } = sinks;
        let layers_wanted: LayersWanted = Arc::default();
        let (events_tx, mut events) = mpsc::unbounded_channel::<ServerMessage>();
        let close_frame: CloseFrameSeen = Arc::default();
        let reader = {
            let close_frame = Arc::clone(&close_frame);
            let layers_wanted = Arc::clone(&layers_wanted);
            let publisher = Arc::clone(&publisher);
            let subscriber = Arc::clone(&subscriber);
            let outgoing = outgoing.clone();
            tokio::spawn(async move {
                // Read on after the SFU's close frame: the next read sends our reply (the
                // closing handshake) and then ends the stream.
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        if let Message::Close(frame) = message {
                            *close_frame.lock() = frame
                                .map(|frame| (u16::from(frame.code), frame.reason.to_string()));
                        }
                        continue;
                    };
                    let Ok(parsed) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                        continue;
                    };
                    match parsed {
                        ServerMessage::Answer { sdp } => {
                            if let Ok(answer) = RTCSessionDescription::answer(sdp) {
                                let _ = publisher.set_remote_description(answer).await;
                            }
                        }
                        ServerMessage::Offer { sdp } => {
                            let Ok(offer) = RTCSessionDescription::offer(sdp) else {
                                continue;
                            };
                            if subscriber.set_remote_description(offer).await.is_err() {
                                continue;
                            }
                            let Ok(answer) = subscriber.create_answer(None).await else {
                                continue;
                            };
                            let sdp = answer.sdp.clone();
                            if subscriber.set_local_description(answer).await.is_ok() {
                                let _ = outgoing.send(ClientMessage::Answer { sdp });
                            }
                        }
                        ServerMessage::Candidate { target, candidate } => {
                            let peer = match target {
                                PeerTarget::Publisher => &publisher,
                                PeerTarget::Subscriber => &subscriber,
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
                        ServerMessage::LayersWanted { track_id, layers } => {
                            // Dynacast: pause the layers nobody receives, as a browser's
                            // `setParameters` does; the test sees the message too.
                            if let Some(paused) = layers_wanted.lock().get(&track_id) {
                                for (layer, flag) in paused.iter().enumerate() {
                                    let wanted = layers.iter().any(|l| l.index() == layer);
                                    flag.store(!wanted, Ordering::Release);
                                }
                            }
                            let _ =
                                events_tx.send(ServerMessage::LayersWanted { track_id, layers });
                        }
                        other => {
                            let _ = events_tx.send(other);
                        }
                    }
                }
            })
        };
        // Keep the raw sender alive inside the client for malformed-message tests.
        let raw = raw_tx;
        outgoing
            .send(ClientMessage::Join {
                token: token.to_owned(),
                conference: conference.clone(),
                receive_codecs: None,
            })
            .map_err(|_| anyhow!("the websocket closed"))?;
        let first = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .context("no answer to join")?
            .ok_or_else(|| anyhow!("the websocket closed before answering"))?;
        let client = Self {
            outgoing,
            events,
            publisher,
            subscriber,
            received,
            remotes,
            layers_wanted,
            speech: Arc::default(),
            sent: Arc::default(),
            keyframe_requests: Arc::default(),
            sender_reports,
            tasks: vec![writer, reader],
            publisher_connected,
            subscriber_connected,
            failed,
            first_packet,
            stop: Arc::new(AtomicBool::new(false)),
            close_frame,
            first,
        };
        RAW.lock().insert(client_key(&client), raw);
        Ok(client)
    }

    /// Our participant ID, when admitted.
    pub fn id(&self) -> Option<ParticipantId> {
        match &self.first {
            ServerMessage::Joined { you, .. } => Some(you.clone()),
            _ => None,
        }
    }

    /// The close frame the server ended the websocket with (code and reason), once it came.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        self.close_frame.lock().clone()
    }

    /// Waits until the server has closed the websocket, within `timeout`, skipping the messages
    /// still unread; its close frame, if it sent one.
    ///
    /// # Errors
    /// When the websocket is still open after `timeout`.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<Option<(u16, String)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => bail!("the websocket is still open"),
                Ok(None) => return Ok(self.close_frame()),
                Ok(Some(_)) => {}
            }
        }
    }

    /// Sends a signaling message.
    pub fn send(&self, message: ClientMessage) {
        let _ = self.outgoing.send(message);
    }

    /// Sends raw text (for malformed-message tests).
    pub fn send_raw(&self, text: &str) {
        if let Some(raw) = RAW.lock().get(&client_key(self)) {
            let _ = raw.send(text.to_owned());
        }
    }

    /// The next server message (negotiation excluded) within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<ServerMessage> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for a message `matches` accepts, skipping others, within `timeout`.
    ///
    /// # Errors
    /// When none came.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&ServerMessage) -> bool,
    ) -> Result<ServerMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("timed out waiting for a message"))?
                .ok_or_else(|| anyhow!("the websocket closed"))?;
            if matches(&message) {
                return Ok(message);
            }
        }
    }

    /// Waits until the server sends after-join messages (e.g. `joined` after `waiting`).
    ///
    /// # Errors
    /// When it did not come.
    pub async fn wait_joined(&mut self, timeout: Duration) -> Result<ParticipantId> {
        match self
            .wait_for(timeout, |m| matches!(m, ServerMessage::Joined { .. }))
            .await?
        {
            ServerMessage::Joined { you, .. } => {
                self.first = ServerMessage::Joined {
                    you: you.clone(),
                    role: proto::Role::Listener,
                    grants: proto::Grants::of(proto::Role::Listener, None),
                    participants: Vec::new(),
                    tracks: Vec::new(),
                    chat: Vec::new(),
                    recording: false,
                    audio_only: false,
                    presentation: None,
                    speakers: Vec::new(),
                    active_speaker: None,
                };
                Ok(you)
            }
            _ => bail!("unexpected"),
        }
    }

    /// Publishes synthetic media for each source (Opus for audio sources, VP8 for video, in
    /// three simulcast layers with [`MediaPlan::simulcast`]) and offers it. Returns the
    /// browser-style track IDs.
    ///
    /// # Errors
    /// webrtc errors.
    pub async fn publish(&self, sources: &[TrackSource], plan: MediaPlan) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut layered_tracks = Vec::new();
        let mut audio_tracks = Vec::new();
        for &source in sources {
            let video = source.kind() == proto::signal::TrackKind::Video;
            let id = format!("{source:?}-{}", rand::random::<u32>()).to_lowercase();
            let layered = video && plan.simulcast;
            let layers: Vec<Layer> = if layered {
                SIMULCAST
                    .iter()
                    .enumerate()
                    .map(|(index, &(rid, divisor, size))| Layer {
                        ssrc: rand::random(),
                        index: Some((index as u8, rid)),
                        bps: plan.video_bps / divisor,
                        size,
                    })
                    .collect()
            } else {
                vec![Layer {
                    ssrc: rand::random(),
                    index: None,
                    bps: plan.video_bps,
                    size: (640, 480),
                }]
            };
            let codec = if video {
                RTCRtpCodec {
                    mime_type: MIME_TYPE_VP8.into(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                }
            } else {
                RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.into(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                }
            };
            let encodings = layers
                .iter()
                .map(|layer| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: layer
                            .index
                            .map(|(_, rid)| rid.to_owned())
                            .unwrap_or_default(),
                        ssrc: Some(layer.ssrc),
                        ..Default::default()
                    },
                    codec: codec.clone(),
                    ..Default::default()
                })
                .collect();
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "local".into(),
                id.clone(),
                id.clone(),
                if video {
                    RtpCodecKind::Video
                } else {
                    RtpCodecKind::Audio
                },
                encodings,
            )));
            self.publisher
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await?;
            self.send(ClientMessage::Publish {
                track_id: id.clone(),
                source,
                muted: false,
            });
            let keyframe_wanted: Vec<Arc<AtomicBool>> = layers
                .iter()
                .map(|_| Arc::new(AtomicBool::new(true)))
                .collect();
            watch_keyframe_requests(
                Arc::clone(&track),
                layers
                    .iter()
                    .map(|l| l.ssrc)
                    .zip(keyframe_wanted.clone())
                    .collect(),
                Arc::clone(&self.keyframe_requests),
            );
            let paused: Arc<[AtomicBool; 3]> = Arc::default();
            let audio_level_id = Arc::new(std::sync::OnceLock::new());
            if !video {
                audio_tracks.push((id.clone(), Arc::clone(&audio_level_id)));
            }
            let extensions = Arc::new(std::sync::OnceLock::new());
            if layered {
                self.layers_wanted
                    .lock()
                    .insert(id.clone(), Arc::clone(&paused));
                layered_tracks.push((id.clone(), Arc::clone(&extensions)));
            }
            for (layer, wanted) in layers.into_iter().zip(keyframe_wanted) {
                tokio::spawn(generate(Generator {
                    track: Arc::clone(&track),
                    video,
                    layer,
                    plan,
                    keyframe_wanted: wanted,
                    paused: Arc::clone(&paused),
                    extensions: Arc::clone(&extensions),
                    audio_level_id: Arc::clone(&audio_level_id),
                    speech: Arc::clone(&self.speech),
                    sent: Arc::clone(&self.sent),
                    stop: Arc::clone(&self.stop),
                }));
            }
            ids.push(id);
        }
        let offer = self.publisher.create_offer(None).await?;
        let sdp = offer.sdp.clone();
        self.publisher.set_local_description(offer).await?;
        for (id, extensions) in layered_tracks {
            let found = simulcast_extensions(&sdp, &id).ok_or_else(|| {
                anyhow!(
                    "the offer has no mid and rid header extensions for the simulcast track {id}"
                )
            })?;
            let _ = extensions.set(found);
        }
        for (id, level_id) in audio_tracks {
            if let Some(found) = audio_level_extension(&sdp, &id) {
                let _ = level_id.set(found);
            }
        }
        self.send(ClientMessage::Offer { sdp });
        Ok(ids)
    }

    /// What this client's microphones say in the RFC 6464 audio-level extension from now on
    /// (by default they send none).
    pub fn set_speech(&self, speech: Speech) {
        self.speech.store(speech as u8, Ordering::Release);
    }

    /// Sends a REMB (receiver-estimated maximum bitrate) for the received track `track`, as a
    /// browser's bandwidth estimator does.
    ///
    /// # Errors
    /// When the track has not arrived or the packet cannot be sent.
    pub async fn send_remb(&self, track: &str, bps: u64) -> Result<()> {
        let remote = self.remote(track)?;
        let ssrcs = remote.ssrcs().await;
        let remb = ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 0,
            bitrate: bps as f32,
            ssrcs,
        };
        remote.write_rtcp(vec![Box::new(remb)]).await?;
        Ok(())
    }

    /// Sends a NACK (RFC 4585 generic NACK) for `sequences` of a received track (the room's
    /// track ID), as a receiver that lost them would; the answer to a packet it really lost
    /// shows in [`Received::video_log`] as that sequence number arriving late (one it already
    /// has is dropped again by SRTP's replay protection).
    ///
    /// # Errors
    /// When the track has not arrived or the packet cannot be sent.
    pub async fn send_nack(&self, track: &str, sequences: &[u16]) -> Result<()> {
        let remote = self.remote(track)?;
        let ssrc = *remote
            .ssrcs()
            .await
            .first()
            .ok_or_else(|| anyhow!("track {track} has no SSRC yet"))?;
        let nack = TransportLayerNack {
            sender_ssrc: 0,
            media_ssrc: ssrc,
            nacks: nack_pairs_from_sequence_numbers(sequences),
        };
        remote.write_rtcp(vec![Box::new(nack)]).await?;
        Ok(())
    }

    /// The received track of the room's track ID `track`.
    fn remote(&self, track: &str) -> Result<Arc<dyn TrackRemote>> {
        self.remotes
            .lock()
            .get(track)
            .cloned()
            .ok_or_else(|| anyhow!("no track {track} arrived"))
    }

    /// Whether the publisher connection is up.
    pub fn publishing(&self) -> bool {
        self.publisher_connected.lock().is_some()
    }

    /// When the subscriber connection (media from the others) came up.
    pub fn subscriber_connected_at(&self) -> Option<Instant> {
        *self.subscriber_connected.lock()
    }

    /// Whether a peer connection failed (ICE found no path, or DTLS broke).
    pub fn media_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// When the first media packet from anybody arrived on this connection.
    pub fn first_packet_at(&self) -> Option<Instant> {
        *self.first_packet.lock()
    }

    /// When the first video keyframe from anybody arrived on this connection.
    pub fn first_keyframe_at(&self) -> Option<Instant> {
        self.received
            .lock()
            .values()
            .filter_map(|r| r.first_keyframe)
            .min()
    }

    /// A snapshot of what arrived.
    pub fn received(&self) -> HashMap<String, Received> {
        self.received.lock().clone()
    }

    /// Waits until `ok` holds for what arrived, within `timeout`.
    ///
    /// # Errors
    /// When it did not hold in time.
    pub async fn wait_received(
        &self,
        timeout: Duration,
        ok: impl Fn(&HashMap<String, Received>) -> bool,
    ) -> Result<HashMap<String, Received>> {
        let deadline = Instant::now() + timeout;
        loop {
            let snapshot = self.received();
            if ok(&snapshot) {
                return Ok(snapshot);
            }
            if Instant::now() > deadline {
                bail!(
                    "media did not arrive in time: {:?}",
                    snapshot
                        .iter()
                        .map(|(k, v)| (k.clone(), v.packets, v.keyframes))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `leave` and closes the connections.
    pub async fn leave(self) {
        self.send(ClientMessage::Leave);
        self.close().await;
    }

    /// Closes the peer connections without `leave`; the websocket stays open until the SFU
    /// closes it.
    pub async fn close(self) {
        self.close_media().await;
        RAW.lock().remove(&client_key(&self));
    }

    /// Closes the peer connections and keeps the client, whose websocket stays open: to the
    /// SFU, media stops answering while signaling goes on (a network that drops UDP).
    pub async fn close_media(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
    }

    /// Vanishes without `leave`, as a closed browser tab does: the websocket's TCP connection
    /// is dropped without a close frame and the peer connections stop answering.
    pub async fn vanish(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.close().await;
    }
}

/// The `host:port` of a `ws://` or `wss://` URL (default ports 80 and 443).
fn authority_of(endpoint: &str) -> Result<String> {
    let (rest, default_port) = if let Some(rest) = endpoint.strip_prefix("ws://") {
        (rest, 80)
    } else if let Some(rest) = endpoint.strip_prefix("wss://") {
        (rest, 443)
    } else {
        bail!("{endpoint} is not a ws:// or wss:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        bail!("{endpoint} names no host");
    }
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    })
}

type RawMap = HashMap<usize, mpsc::UnboundedSender<String>>;
static RAW: std::sync::LazyLock<Mutex<RawMap>> = std::sync::LazyLock::new(Mutex::default);

fn client_key(client: &Client) -> usize {
    Arc::as_ptr(&client.stop) as *const () as usize
}

/// One stream a synthetic publisher sends: a track's only one, or a simulcast layer.
struct Layer {
    ssrc: u32,
    /// Simulcast: the layer's index and RTP stream ID.
    index: Option<(u8, &'static str)>,
    bps: u32,
    /// Frame size announced in keyframes.
    size: (u16, u16),
}

/// The negotiated header extensions a simulcast stream carries: IDs of `sdes:mid` and
/// `sdes:rtp-stream-id`, and the section's mid.
#[derive(Debug, Clone)]
struct SimulcastExtensions {
    mid_id: u8,
    rid_id: u8,
    mid: String,
}

/// The media section of `sdp` that carries `track_id` (its `a=msid` names it).
fn section_of<'a>(sdp: &'a str, track_id: &str) -> Option<&'a str> {
    sdp.split("\nm=").skip(1).find(|section| {
        section
            .lines()
            .any(|l| l.starts_with("a=msid:") && l.contains(track_id))
    })
}

/// The ID of the audio-level extension in the offer's section that carries `track_id`.
fn audio_level_extension(sdp: &str, track_id: &str) -> Option<u8> {
    section_of(sdp, track_id)?
        .lines()
        .map(str::trim)
        .find_map(|line| {
            let (id, uri) = line.strip_prefix("a=extmap:")?.split_once(' ')?;
            (uri.trim() == AUDIO_LEVEL_URI)
                .then(|| id.split('/').next()?.parse().ok())
                .flatten()
        })
}

/// The header extensions of the offer's section that carries `track_id`.
fn simulcast_extensions(sdp: &str, track_id: &str) -> Option<SimulcastExtensions> {
    let section = section_of(sdp, track_id)?;
    let mut mid = None;
    let mut mid_id = None;
    let mut rid_id = None;
    for line in section.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        } else if let Some(rest) = line.strip_prefix("a=extmap:") {
            let (id, uri) = rest.split_once(' ')?;
            let id: u8 = id.split('/').next()?.parse().ok()?;
            match uri.trim() {
                "urn:ietf:params:rtp-hdrext:sdes:mid" => mid_id = Some(id),
                "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" => rid_id = Some(id),
                _ => {}
            }
        }
    }
    Some(SimulcastExtensions {
        mid_id: mid_id?,
        rid_id: rid_id?,
        mid: mid?,
    })
}

/// Reads the SFU's keyframe requests for a published track (the track was bound by
/// `add_track`, so `poll` yields what `KeyframeRequestsToApplication` marked) and flags the
/// stream each names.
fn watch_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    streams: Vec<(u32, Arc<AtomicBool>)>,
    requests: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        while let Some(event) = track.poll().await {
            let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                continue;
            };
            for packet in packets {
                let any = packet.as_any();
                let media_ssrc = if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    pli.media_ssrc
                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    fir.media_ssrc
                } else {
                    continue;
                };
                requests.fetch_add(1, Ordering::Relaxed);
                for (ssrc, wanted) in &streams {
                    if *ssrc == media_ssrc || streams.len() == 1 {
                        wanted.store(true, Ordering::Release);
                    }
                }
            }
        }
    });
}

/// What one generator task sends.
struct Generator {
    track: Arc<TrackLocalStaticRTP>,
    video: bool,
    layer: Layer,
    plan: MediaPlan,
    keyframe_wanted: Arc<AtomicBool>,
    /// Simulcast: the layers the SFU paused (dynacast).
    paused: Arc<[AtomicBool; 3]>,
    /// Simulcast: the header extensions, once the offer is made.
    extensions: Arc<std::sync::OnceLock<SimulcastExtensions>>,
    /// Audio: the audio-level extension's ID, once the offer is made.
    audio_level_id: Arc<std::sync::OnceLock<u8>>,
    /// Audio: [`Speech`] as a number (what the audio-level extension says).
    speech: Arc<std::sync::atomic::AtomicU8>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

async fn generate(generator: Generator) {
    let Generator {
        track,
        video,
        layer,
        plan,
        keyframe_wanted,
        paused,
        extensions,
        audio_level_id,
        speech,
        sent,
        stop,
    } = generator;
    let (interval, clock_step) = if video {
        (Duration::from_millis(33), 3000u32)
    } else {
        (Duration::from_millis(20), 960u32)
    };
    let frame_bytes = if video {
        (layer.bps / 8 / 30) as usize
    } else {
        80
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq: u16 = rand::random();
    let mut timestamp: u32 = rand::random();
    let mut picture_id: u16 = rand::random::<u16>() & 0x7fff;
    let mut tl0: u8 = rand::random();
    let mut last_keyframe = Instant::now();
    while !stop.load(Ordering::Acquire) {
        ticker.tick().await;
        timestamp = timestamp.wrapping_add(clock_step);
        let simulcast = match layer.index {
            Some((index, rid)) => {
                if paused[usize::from(index)].load(Ordering::Acquire) {
                    // Paused by the SFU: a browser's encoder stops; it starts again with a
                    // keyframe.
                    keyframe_wanted.store(true, Ordering::Release);
                    continue;
                }
                let Some(extensions) = extensions.get() else {
                    continue;
                };
                Some((index, rid, extensions))
            }
            None => None,
        };
        let keyframe = video
            && (keyframe_wanted.swap(false, Ordering::AcqRel)
                || plan
                    .keyframe_every
                    .is_some_and(|every| last_keyframe.elapsed() >= every));
        if keyframe {
            last_keyframe = Instant::now();
        }
        let frame = if keyframe {
            frame_bytes * 3
        } else {
            frame_bytes
        };
        let chunks = frame.div_ceil(1100).max(1);
        picture_id = (picture_id + 1) & 0x7fff;
        tl0 = tl0.wrapping_add(1);
        for chunk in 0..chunks {
            let mut payload = Vec::with_capacity(1200);
            if video {
                // VP8 payload descriptor: S bit on the first packet; with simulcast also a
                // 15-bit picture ID and TL0PICIDX, as browsers send. Then the frame header,
                // whose lowest bit is 0 for a keyframe (which names its size).
                let start = if chunk == 0 { 0x10 } else { 0x00 };
                if simulcast.is_some() {
                    payload.extend_from_slice(&[
                        0x80 | start,
                        0xc0,
                        0x80 | (picture_id >> 8) as u8,
                        (picture_id & 0xff) as u8,
                        tl0,
                    ]);
                } else {
                    payload.push(start);
                }
                if keyframe && chunk == 0 {
                    payload.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
                    payload.extend_from_slice(&layer.size.0.to_le_bytes());
                    payload.extend_from_slice(&layer.size.1.to_le_bytes());
                } else {
                    payload.push(if keyframe { 0x00 } else { 0x01 });
                }
            } else {
                payload.push(0xfc);
            }
            payload.extend_from_slice(STAMP);
            payload.extend_from_slice(&clock_us().to_be_bytes());
            if let Some((index, _, _)) = simulcast {
                payload.push(LAYER_TAG | index);
            }
            let size = (frame / chunks).clamp(payload.len(), 1100);
            payload.resize(size, 0xab);
            let mut header = rtp::Header {
                version: 2,
                marker: chunk + 1 == chunks,
                payload_type: if video { 96 } else { 111 },
                sequence_number: seq,
                timestamp,
                ssrc: layer.ssrc,
                ..Default::default()
            };
            let level = match speech.load(Ordering::Acquire) {
                1 => Some(127u8),
                2 => Some(0x80 | 25),
                _ => None,
            };
            if !video && let (Some(level), Some(&id)) = (level, audio_level_id.get()) {
                header.extension = true;
                header.extension_profile = 0xBEDE;
                let _ = header.set_extension(id, Bytes::copy_from_slice(&[level]));
            }
            if let Some((_, rid, extensions)) = simulcast {
                header.extension = true;
                header.extension_profile = 0xBEDE;
                let _ = header.set_extension(
                    extensions.mid_id,
                    Bytes::from(extensions.mid.clone().into_bytes()),
                );
                let _ = header.set_extension(extensions.rid_id, Bytes::from_static(rid.as_bytes()));
            }
            let packet = rtp::Packet {
                header,
                payload: Bytes::from(payload),
            };
            seq = seq.wrapping_add(1);
            if track.write_rtp(packet).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::SequenceGaps;

    fn gaps(sequence: &[u16]) -> u64 {
        let mut gaps = SequenceGaps::default();
        for &seq in sequence {
            gaps.note(seq);
        }
        gaps.missing()
    }

    #[test]
    fn gaps_are_counted_and_a_late_retransmission_fills_its_own_hole_only() {
        assert_eq!(gaps(&[1, 2, 3, 4]), 0);
        assert_eq!(gaps(&[1, 2, 5, 6]), 2);
        // 3 comes again long after: one hole fewer, and 7..=600 are not lost on its account.
        let mut late: Vec<u16> = vec![1, 2];
        late.extend(4..600);
        late.push(3);
        late.push(600);
        assert_eq!(gaps(&late), 0);
        // Out of order and duplicates change nothing.
        assert_eq!(gaps(&[1, 3, 2, 2, 4, 3]), 0);
    }

    #[test]
    fn gaps_follow_the_sequence_across_its_wraparound_and_ignore_restarts() {
        assert_eq!(gaps(&[65_534, 65_535, 0, 1]), 0);
        assert_eq!(gaps(&[65_534, 1, 65_535, 2]), 1, "0 never came");
        // A jump of thousands is a stream that started again, not loss.
        assert_eq!(gaps(&[10, 11, 9_000, 9_001]), 0);
    }

    #[test]
    fn holes_older_than_the_window_stay_lost() {
        let mut sequence: Vec<u16> = vec![0];
        sequence.extend(2..5_000);
        sequence.push(1);
        assert_eq!(gaps(&sequence), 1, "1 came after the window had passed it");
    }

    #[test]
    fn endpoints_name_their_host_and_port() {
        for (endpoint, authority) in [
            ("ws://127.0.0.1:8080/rtc", "127.0.0.1:8080"),
            ("wss://sfu-0.example.org/rtc", "sfu-0.example.org:443"),
            (
                "ws://api.example.org/rtc/conclave-sfu-1",
                "api.example.org:80",
            ),
            ("ws://[::1]:7880/rtc", "[::1]:7880"),
            ("ws://[::1]/rtc", "[::1]:80"),
        ] {
            assert_eq!(
                super::authority_of(endpoint).expect("an endpoint"),
                authority
            );
        }
        assert!(super::authority_of("http://x/rtc").is_err());
        assert!(super::authority_of("ws:///rtc").is_err());
    }

    #[test]
    fn media_to_an_sfu_on_loopback_leaves_from_loopback() {
        let sfu = "127.0.0.1:7880".parse().expect("an address");
        assert_eq!(
            super::local_ip_towards(sfu),
            IpAddr::from(Ipv4Addr::LOCALHOST)
        );
    }
}
