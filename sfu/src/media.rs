//! The media stack behind a narrow interface: building peer connections (codecs,
//! interceptors for NACK/RTX, sender reports and TWCC, ports, announced addresses), and
//! forwarding one published track to many subscriber tracks.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use proto::signal::{PeerTarget, TrackKind, TrackView};
use proto::{ParticipantId, TrackId};
use rtc::ice::network_type::NetworkType;
use rtc::interceptor::{
    Attribute, Interceptor, NackGeneratorBuilder, NackResponderBuilder, Packet, Registry,
    SenderReportBuilder, Slot, StreamInfo, TaggedPacket, TwccReceiverBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateType, RTCIceProtocol,
    RTCIceTcpCandidateType,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    NackPair, TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, trace, warn};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceConnectionState, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::backlog::{self, Backlog, Departures};
use crate::error::MediaError;
use crate::ice_tcp::{IceTcpMux, Route};
use crate::metrics::Metrics;
use crate::simulcast::{
    self, Codec, Incoming, LAYERS, LayerState, Rewriter, parse_vp8, starts_keyframe,
    vp8_keyframe_size,
};
use crate::sockets::{MediaRuntime, UdpBuffers};
use crate::udp_mux::UdpMux;

/// The RFC 6464 audio-level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// How peer connections bind and what they announce.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Local address to bind.
    pub bind_ip: IpAddr,
    /// Addresses announced instead of the local one (NAT 1:1).
    pub announced_ips: Vec<IpAddr>,
    /// Silence on ICE after which a connection fails (it is disconnected after a fifth of it).
    pub ice_failed_after: Duration,
    /// The pod's ICE-TCP port, when it takes ICE over TCP (`--sfu-ice-tcp-port`).
    pub ice_tcp: Option<Arc<IceTcpMux>>,
    /// The pod's one UDP port, in single-port mode (`--sfu-udp-port`).
    pub udp_mux: Option<Arc<UdpMux>>,
    /// The media sockets' kernel buffers (`--sfu-udp-buffer-bytes`) and the drops at them.
    pub udp_buffers: Arc<UdpBuffers>,
    /// Subscriber connections with their own UDP port get a direct media path.
    pub direct_media: bool,
}

impl MediaSettings {
    /// The description as the client must see it: in single-port mode the host candidates name
    /// the pod's shared port, not the port each connection bound for a moment.
    pub fn announced_sdp(&self, sdp: String) -> String {
        match &self.udp_mux {
            Some(mux) => crate::udp_mux::announce_port(&sdp, mux.port()),
            None => sdp,
        }
    }
}

/// Something a peer connection tells its session.
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the client.
    Candidate(PeerTarget, webrtc::peer_connection::RTCIceCandidateInit),
    /// The connection's state changed.
    State(PeerTarget, RTCPeerConnectionState),
    /// The connection's ICE state changed (tells an ICE failure from a DTLS one).
    IceState(PeerTarget, RTCIceConnectionState),
    /// A remote track arrived (publisher connection).
    Track(Arc<dyn TrackRemote>),
}

impl std::fmt::Debug for PeerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerEvent::Candidate(target, _) => write!(f, "Candidate({target:?})"),
            PeerEvent::State(target, state) => write!(f, "State({target:?}, {state})"),
            PeerEvent::IceState(target, state) => write!(f, "IceState({target:?}, {state})"),
            PeerEvent::Track(_) => f.write_str("Track"),
        }
    }
}

struct Handler {
    target: PeerTarget,
    tx: mpsc::UnboundedSender<PeerEvent>,
    /// The mux and this connection's ufrag, with ICE over TCP.
    ice_tcp: Option<(Arc<IceTcpMux>, String)>,
    /// The pod's shared UDP port, in single-port mode.
    udp_port: Option<u16>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let candidate = &event.candidate;
        if let Some((mux, ufrag)) = &self.ice_tcp
            && candidate.protocol == RTCIceProtocol::Tcp
        {
            // Its own loopback listener: reached through the mux, never announced.
            if candidate.tcp_type == RTCIceTcpCandidateType::Passive
                && let Ok(ip) = candidate.address.parse::<IpAddr>()
            {
                mux.listening_at(ufrag, SocketAddr::new(ip, candidate.port));
            }
            return;
        }
        let shared;
        let candidate = match self.udp_port {
            Some(port) if candidate.protocol == RTCIceProtocol::Udp => {
                shared = RTCIceCandidate {
                    port,
                    ..candidate.clone()
                };
                &shared
            }
            _ => candidate,
        };
        match candidate.to_json() {
            Ok(init) => {
                let _ = self.tx.send(PeerEvent::Candidate(self.target, init));
            }
            Err(err) => debug!(cause = %err, "a local candidate could not be encoded"),
        }
        // Beside each UDP host candidate, the same address on the pod's ICE-TCP port.
        if let Some((mux, _)) = &self.ice_tcp
            && candidate.typ == RTCIceCandidateType::Host
        {
            match tcp_twin(candidate, mux.port()) {
                Some(twin) => {
                    let _ = self.tx.send(PeerEvent::Candidate(self.target, twin));
                }
                None => debug!("no ICE-TCP candidate could be made beside a UDP one"),
            }
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.send(PeerEvent::State(self.target, state));
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        let _ = self.tx.send(PeerEvent::IceState(self.target, state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PeerEvent::Track(track));
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    })
    .collect()
}

fn codec(mime: &str, clock: u32, channels: u16, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: clock,
            channels,
            sdp_fmtp_line: fmtp.into(),
            rtcp_feedback: if mime.starts_with("video/") && mime != MIME_TYPE_RTX {
                video_feedback()
            } else {
                Vec::new()
            },
        },
        payload_type: pt,
    }
}

/// Every video codec the SFU forwards, with their RTX, as the media engine registers them.
fn video_codecs() -> Vec<RTCRtpCodecParameters> {
    vec![
        codec(MIME_TYPE_VP8, 90_000, 0, "", 96),
        codec(MIME_TYPE_RTX, 90_000, 0, "apt=96", 97),
        codec(
            MIME_TYPE_H264,
            90_000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            125,
        ),
        codec(MIME_TYPE_RTX, 90_000, 0, "apt=125", 105),
        codec(
            MIME_TYPE_H264,
            90_000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            102,
        ),
        codec(MIME_TYPE_RTX, 90_000, 0, "apt=102", 103),
    ]
}

/// Adds the first video track to a subscriber connection, its section offering every video
/// codec the SFU forwards, and returns its sender.
///
/// The media stack (like pion) fixes a connection's video codecs at the first answer, from its
/// first video section only: a subscriber whose first track was H.264 could not be sent a VP8
/// track later ("unsupported codec type"), nor the reverse. Offered every codec, the browser
/// keeps those it decodes, and later tracks may use any of them.
///
/// # Errors
/// [`MediaError::Webrtc`] when the track cannot be added.
pub async fn add_first_video(
    peer: &Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
) -> Result<Arc<dyn RtpSender>, MediaError> {
    let transceiver = peer.add_transceiver_from_track(track, None).await?;
    transceiver.set_codec_preferences(video_codecs()).await?;
    transceiver.sender().await?.ok_or(MediaError::Webrtc(
        webrtc::error::Error::ErrRTPSenderNotExisted,
    ))
}

/// Opus, VP8 and H.264 (with RTX for the video codecs), the audio-level extension, the
/// simulcast header extensions (`mid`, `rid`), NACK and TWCC in the SDP, and the interceptors
/// of the connection's direction: on a publisher connection the NACK generator and TWCC
/// feedback, on a subscriber connection the NACK responder and sender reports.
///
/// A publisher connection sends no receiver reports. Browsers put the `mid` and `rid` header
/// extensions on a simulcast stream's packets only until a receiver report acknowledges its
/// SSRC, and webrtc-rs 0.21 forgets which SSRC carries which RTP stream ID whenever the
/// publisher's connection is negotiated again (it rebuilds the receive codings from the new
/// offer): without the extensions it could never bind the stream again, and a publisher that
/// starts or stops sharing its screen would lose its camera. Unacknowledged, browsers keep the
/// extensions on every packet (a few bytes), and the streams bind again at their next packet.
/// Publishers lose nothing they need: their congestion control runs on TWCC feedback.
fn media_engine(
    target: PeerTarget,
    backlog: Option<Arc<Backlog>>,
    direct: Option<Arc<crate::direct::DirectSlot>>,
    tcp_possible: bool,
) -> Result<(MediaEngine, Registry), MediaError> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111),
        RtpCodecKind::Audio,
    )?;
    for video in video_codecs() {
        engine.register_codec(video, RtpCodecKind::Video)?;
    }
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.into(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    // The helpers put the SDP side (feedback types, header extensions) into the engine, the same
    // for both directions; the registries they return are dropped, because each direction
    // runs only the interceptors that act on what it carries. Every interceptor sees every
    // packet of its connection, so one that has nothing to do still costs per packet.
    drop(configure_nack(Registry::new(), &mut engine));
    configure_simulcast_extension_headers(&mut engine)?;
    drop(configure_twcc_receiver_only(Registry::new(), &mut engine)?);
    let registry = match target {
        // Receives media: asks for what was lost, and tells the sender what arrived (TWCC).
        PeerTarget::Publisher => Registry::new()
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build()),
        // Sends media: answers NACKs from its send buffer — unless it lags —, and sends
        // sender reports (which the receiver needs to synchronise audio and video).
        // With a direct path the SFU sends the media itself, and answers NACKs and sends
        // sender reports itself too (`crate::direct`): the interceptors would see no packet.
        // Where ICE may pick TCP, the media of a connection that ends up on it goes through
        // webrtc-rs, which then sends its sender reports (the interceptor reports a stream
        // only once a packet of it went through). Its NACK responder is left out: TCP loses
        // nothing on the way, and what the pod sheds itself it never answers for.
        PeerTarget::Subscriber => {
            let registry = match direct {
                Some(_) if tcp_possible => {
                    Registry::new().with(Slot::SenderReport, SenderReportBuilder::new().build())
                }
                Some(_) => Registry::new(),
                None => Registry::new()
                    .with(Slot::NackResponder, NackResponderBuilder::new().build())
                    .with(Slot::SenderReport, SenderReportBuilder::new().build()),
            };
            match &backlog {
                Some(backlog) => registry.with(
                    Slot::from(NACK_GUARD_SLOT),
                    NackGuard {
                        backlog: Arc::clone(backlog),
                        departures: Departures::new(Instant::now()),
                        direct,
                        read_queue: VecDeque::new(),
                        write_queue: VecDeque::new(),
                    },
                ),
                None => registry,
            }
        }
    };
    Ok((
        engine,
        registry.with(
            Slot::from(FEEDBACK_SLOT),
            FeedbackToApplication {
                backlog,
                ..FeedbackToApplication::default()
            },
        ),
    ))
}

/// Application-most: every interceptor has seen an RTCP packet before this one marks it.
const FEEDBACK_SLOT: usize = 14_000;
/// Wire-ward of the NACK responder (4 000): inbound RTCP reaches it first.
const NACK_GUARD_SLOT: usize = 3_500;

/// Keeps NACKs from the NACK responder while the subscriber connection lags
/// ([`Backlog::answers_nack`]), and the packets a NACK asks for that left more than
/// [`backlog::NACK_MAX_AGE`] ago (it sees every packet on its way out: it is wire-ward of the
/// responder, retransmissions included); the rest of the RTCP passes.
struct NackGuard {
    backlog: Arc<Backlog>,
    departures: Departures,
    /// The connection's direct path: the guard answers the NACKs from what it sent.
    direct: Option<Arc<crate::direct::DirectSlot>>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl NackGuard {
    /// `nack` with only the packets it can be answered for; `None` when that is all of them.
    /// With a direct path the guard answers it here, from what the path sent (none of those
    /// packets passed the stack's NACK responder), and what it answered passes on to be
    /// counted; otherwise the packets that left too long ago are removed and the NACK
    /// responder answers the rest.
    fn answerable(&self, nack: &TransportLayerNack, now: Instant) -> Option<TransportLayerNack> {
        let asked: Vec<u16> = nack.nacks.iter().flat_map(NackPair::packet_list).collect();
        // A path that never turned ready (media over TCP) sent nothing: its NACKs are
        // webrtc-rs' to answer.
        let answered: Vec<u16> = match self.direct.as_ref().filter(|direct| direct.is_ready()) {
            Some(direct) => direct.retransmit(nack.media_ssrc, &asked, now),
            None => asked
                .iter()
                .copied()
                .filter(|&sequence| self.departures.recent(nack.media_ssrc, sequence, now))
                .collect(),
        };
        (answered.len() < asked.len()).then(|| TransportLayerNack {
            sender_ssrc: nack.sender_ssrc,
            media_ssrc: nack.media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&answered),
        })
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for NackGuard {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = msg.now;
        if let Packet::Rtcp(packets) = &mut msg.message.packet
            && packets
                .iter()
                .any(|p| p.as_any().is::<TransportLayerNack>())
        {
            if self.backlog.answers_nack(now) {
                for packet in packets.iter_mut() {
                    let trimmed = packet
                        .as_any()
                        .downcast_ref::<TransportLayerNack>()
                        .and_then(|nack| self.answerable(nack, now));
                    if let Some(trimmed) = trimmed {
                        self.backlog.ignore_nack();
                        *packet = Box::new(trimmed);
                    }
                }
                packets.retain(|p| {
                    p.as_any()
                        .downcast_ref::<TransportLayerNack>()
                        .is_none_or(|nack| !nack.nacks.is_empty())
                });
            } else {
                packets.retain(|p| !p.as_any().is::<TransportLayerNack>());
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            self.departures
                .note(packet.header.ssrc, packet.header.sequence_number, msg.now);
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for NackGuard {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.departures.forget(info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Lets the RTCP the SFU acts on reach the tracks' `poll`.
///
/// In rtc 0.21 inbound RTCP stops at the end of the interceptor chain (the NACK responder, the
/// sender statistics and the bandwidth estimator consume it there); only packets an interceptor
/// marks with [`Attribute::DeliverToApplication`] reach `TrackLocal::poll`. This marks keyframe
/// requests (PLI, FIR) — the SFU forwards them upstream —, REMB (the subscriber's bandwidth
/// estimate chooses its simulcast layers), and NACKs and receiver reports, which it only counts. Every other packet keeps stopping at the terminus.
///
/// Being application-most, it is also the first to see what the application writes: on a
/// subscriber connection it notes each RTP packet's departure from the forwarder's
/// [`Backlog`].
#[derive(Default)]
struct FeedbackToApplication {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
    backlog: Option<Arc<Backlog>>,
}

fn wanted_by_the_application(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<TransportLayerNack>()
        || any.is::<ReceiverReport>()
        || any.is::<ReceiverEstimatedMaximumBitrate>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackToApplication {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|packet| wanted_by_the_application(packet.as_ref()))
                .cloned()
                .collect();
            if wanted.is_empty() {
                // The interceptors already acted on it; the terminus drops it.
                self.read_queue.push_back(msg);
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(wanted);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let (Some(backlog), Packet::Rtp(packet)) = (&self.backlog, &msg.message.packet) {
            backlog.departed(packet.header.ssrc, packet.header.sequence_number, msg.now);
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FeedbackToApplication {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// The passive ICE-TCP candidate announced beside a UDP host candidate: same address, the
/// pod's ICE-TCP port, a lower priority than UDP.
fn tcp_twin(
    udp: &RTCIceCandidate,
    port: u16,
) -> Option<webrtc::peer_connection::RTCIceCandidateInit> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "tcp".to_owned(),
            address: udp.address.clone(),
            port,
            component: udp.component,
            ..CandidateConfig::default()
        },
        tcp_type: rtc::ice::tcp_type::TcpType::Passive,
    }
    .new_candidate_host()
    .ok()?;
    RTCIceCandidate::from(&candidate).to_json().ok()
}

/// A peer connection and, with ICE over TCP, its route through the pod's ICE-TCP port (keep it
/// as long as the connection).
pub struct Peer {
    /// The connection.
    pub connection: Arc<dyn PeerConnection>,
    /// Its route through the ICE-TCP mux, if any.
    pub route: Option<Route>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// Builds a peer connection bound to `port` on the configured address (in single-port mode the
/// pod's shared UDP port instead, and `port` is not used; with ICE over TCP it is also reachable
/// through the pod's ICE-TCP port). A subscriber connection notes in `backlog` each packet its
/// loop takes (see [`Backlog`]).
///
/// # Errors
/// [`MediaError::Webrtc`] when the codecs cannot be registered or the port cannot be bound.
pub async fn build_peer(
    settings: &MediaSettings,
    port: u16,
    target: PeerTarget,
    backlog: Option<Arc<Backlog>>,
    direct: Option<Arc<crate::direct::DirectSlot>>,
    arrivals: Option<Arc<crate::arrival::Arrivals>>,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> Result<Peer, MediaError> {
    let (engine, registry) =
        media_engine(target, backlog, direct.clone(), settings.ice_tcp.is_some())?;
    // Remote mDNS candidates are discarded (the browser is found through its peer-reflexive
    // address) and no multicast socket is opened.
    let mut setting = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // A browser's checks reach the SFU before its trickled candidates do (and its mDNS
        // candidates are discarded), so the SFU knows it first as a peer-reflexive candidate.
        // Where the SFU controls ICE (the subscriber connection), webrtc-rs by default waits a
        // second before nominating such a pair: a second of silence on every join and every
        // move. An SFU has no better pair to wait for.
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .with_ice_timeouts(
            Some(settings.ice_failed_after / 5),
            Some(settings.ice_failed_after),
            Some(Duration::from_secs(2)),
        );
    if settings.bind_ip.is_loopback() {
        setting = setting.with_include_loopback_candidate(true);
    }
    if !settings.announced_ips.is_empty() {
        setting = setting.with_nat_1to1_ips(
            settings
                .announced_ips
                .iter()
                .map(ToString::to_string)
                .collect(),
            RTCIceCandidateType::Host,
        );
    }
    // The pod's shared ports find a connection by the ufrag it was given.
    let ufrag = if settings.ice_tcp.is_some() || settings.udp_mux.is_some() {
        let (ufrag, password) = crate::ice_tcp::ice_credentials();
        setting = setting.with_ice_credentials(ufrag.clone(), password);
        Some(ufrag)
    } else {
        None
    };
    let mut tcp_addrs = Vec::new();
    let (route, ice_tcp) = match (&settings.ice_tcp, &ufrag) {
        (Some(mux), Some(ufrag)) => {
            let route = mux.route(ufrag);
            setting = setting.with_network_types(vec![
                NetworkType::Udp4,
                NetworkType::Udp6,
                NetworkType::Tcp4,
                NetworkType::Tcp6,
            ]);
            // Its own listener, on loopback: only the mux connects to it.
            let loopback: IpAddr = if settings.bind_ip.is_ipv6() {
                Ipv6Addr::LOCALHOST.into()
            } else {
                Ipv4Addr::LOCALHOST.into()
            };
            tcp_addrs.push(SocketAddr::new(loopback, 0));
            (Some(route), Some((Arc::clone(mux), ufrag.clone())))
        }
        _ => (None, None),
    };
    let (runtime, udp_port) = match (&settings.udp_mux, ufrag) {
        // The connection binds an ephemeral port of the bind address for a moment; its
        // runtime swaps that socket for the pod's shared one.
        (Some(mux), Some(ufrag)) => (mux.runtime(ufrag, direct, arrivals), Some(mux.port())),
        _ => (
            MediaRuntime::own(Arc::clone(&settings.udp_buffers), direct, arrivals),
            None,
        ),
    };
    let peer = PeerConnectionBuilder::new()
        .with_runtime(runtime)
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(setting.build())
        .with_handler(Arc::new(Handler {
            target,
            tx: events,
            ice_tcp,
            udp_port,
        }))
        .with_udp_addrs(vec![SocketAddr::new(settings.bind_ip, port)])
        .with_tcp_addrs(tcp_addrs)
        .build()
        .await?;
    Ok(Peer {
        connection: Arc::new(peer),
        route,
    })
}

/// What a subscriber's connection tells the room about one forwarded track.
pub trait FeedbackSink: Send + Sync + 'static {
    /// The subscriber asked for a keyframe.
    fn keyframe_wanted(&self, track: &TrackId);
}

/// What one subscriber connection tells about itself, shared by all of its downstreams: its
/// bandwidth estimate (REMB) and how it shows the tracks it receives (`viewTracks`).
#[derive(Debug, Default)]
pub struct SubscriberLink {
    /// The last REMB estimate in bits per second; 0 while none arrived.
    estimate: AtomicU64,
    views: Mutex<HashMap<TrackId, TrackView>>,
    /// No step up beyond the estimate before this (set when the estimate forced a step down).
    probe_after: Mutex<Option<Instant>>,
    /// When the estimate last fell by a tenth or more: news of congestion.
    fell_at: Mutex<Option<Instant>>,
    /// What the connection has not sent yet.
    backlog: Arc<Backlog>,
    /// Media sent by the SFU itself on the connection's socket.
    direct: Mutex<Option<Arc<crate::direct::DirectSlot>>>,
}

impl SubscriberLink {
    /// A link whose connection's sending is measured by `backlog`.
    pub fn new(backlog: Backlog) -> Self {
        Self {
            backlog: Arc::new(backlog),
            ..Self::default()
        }
    }

    /// The connection's direct path (a new connection: a new slot).
    pub fn set_direct(&self, slot: Option<Arc<crate::direct::DirectSlot>>) {
        *self.direct.lock() = slot;
    }

    /// The connection's direct path, if it has one.
    pub fn direct(&self) -> Option<Arc<crate::direct::DirectSlot>> {
        self.direct.lock().clone()
    }

    /// What the connection has been handed and has not sent yet (shared with its interceptor).
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// The subscriber's bandwidth estimate in bits per second, once it sent one.
    pub fn estimate(&self) -> Option<u64> {
        match self.estimate.load(Ordering::Acquire) {
            0 => None,
            bps => Some(bps),
        }
    }

    /// A REMB arrived.
    pub fn set_estimate(&self, bps: u64) {
        let before = self.estimate.swap(bps.max(1), Ordering::AcqRel);
        // A first estimate is no news: browsers start low (Chromium about 300 kbit/s) and climb.
        if before != 0 && bps.saturating_mul(10) < before.saturating_mul(9) {
            *self.fell_at.lock() = Some(Instant::now());
        }
    }

    /// Whether the estimate fell within `window` before `now`.
    pub fn fell_within(&self, window: Duration, now: Instant) -> bool {
        self.fell_at
            .lock()
            .is_some_and(|at| now.saturating_duration_since(at) <= window)
    }

    /// The client said how it shows some tracks.
    pub fn set_views(&self, views: Vec<TrackView>) {
        let mut known = self.views.lock();
        for view in views {
            // Views of tracks it does not receive are kept too (they may come next), up to a
            // bound: a client cannot grow the SFU's memory with made-up track IDs.
            if known.len() >= MAX_KNOWN_VIEWS && !known.contains_key(&view.track) {
                continue;
            }
            known.insert(view.track.clone(), view);
        }
    }

    /// How the client shows `track`, if it said.
    pub fn view(&self, track: &TrackId) -> Option<TrackView> {
        self.views.lock().get(track).cloned()
    }

    /// The subscription ended.
    pub fn forget(&self, track: &TrackId) {
        self.views.lock().remove(track);
    }

    /// Whether a step up beyond the estimate may be tried at `now`.
    pub fn may_probe(&self, now: Instant) -> bool {
        self.probe_after.lock().is_none_or(|after| now >= after)
    }

    /// The estimate forced a step down: no step up beyond the estimate until `after`.
    pub fn hold_probing(&self, after: Instant) {
        *self.probe_after.lock() = Some(after);
    }
}

/// Track views one subscriber connection keeps.
const MAX_KNOWN_VIEWS: usize = 1024;

/// No layer: the subscriber gets nothing of the track.
const NO_LAYER: u8 = u8::MAX;
/// A higher layer is given only once the allocator has wanted it this long (a bandwidth
/// estimate wavers; going down is at once).
const RAISE_AFTER: Duration = Duration::from_millis(1000);

/// One subscriber's copy of a track.
pub struct Downstream {
    /// The subscriber.
    pub subscriber: ParticipantId,
    /// The local track added to the subscriber connection.
    pub local: Arc<TrackLocalStaticRTP>,
    /// Its SSRC.
    pub ssrc: u32,
    /// The subscriber connection's bandwidth estimate and views.
    pub link: Arc<SubscriberLink>,
    /// The negotiated payload type; `u16::MAX` until the answer arrived.
    payload_type: AtomicU16,
    /// The layer to forward ([`NO_LAYER`]: none).
    target: AtomicU8,
    rewriter: Mutex<Rewriter>,
    /// A higher layer the allocator wants, and since when.
    raise: Mutex<Option<(usize, Instant)>>,
}

impl std::fmt::Debug for Downstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downstream")
            .field("subscriber", &self.subscriber)
            .field("ssrc", &self.ssrc)
            .finish()
    }
}

impl Downstream {
    /// A local track for `subscriber` carrying `track` with the publisher's codec.
    pub fn new(
        subscriber: ParticipantId,
        track: &TrackId,
        publisher: &ParticipantId,
        kind: TrackKind,
        codec: RTCRtpCodec,
        link: Arc<SubscriberLink>,
    ) -> Self {
        let ssrc = rand::random::<u32>();
        let clock_rate = codec.clock_rate;
        let local = TrackLocalStaticRTP::new(MediaStreamTrack::new(
            publisher.to_string(),
            track.to_string(),
            track.to_string(),
            match kind {
                TrackKind::Audio => RtpCodecKind::Audio,
                TrackKind::Video => RtpCodecKind::Video,
            },
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        ));
        Self {
            subscriber,
            local: Arc::new(local),
            ssrc,
            link,
            payload_type: AtomicU16::new(u16::MAX),
            // Until the allocator says otherwise: the only (or the highest) layer.
            target: AtomicU8::new(SINGLE_LAYER as u8),
            rewriter: Mutex::new(Rewriter::new(clock_rate)),
            raise: Mutex::new(None),
        }
    }

    /// The layer it should get (`None`: nothing).
    pub fn target(&self) -> Option<usize> {
        match self.target.load(Ordering::Acquire) {
            NO_LAYER => None,
            layer => Some(usize::from(layer)),
        }
    }

    /// The layer it is being sent now.
    pub fn current(&self) -> Option<usize> {
        self.rewriter.lock().current()
    }

    /// Points it at the layer the allocator chose: lower (or none) at once, higher once the
    /// allocator has wanted it for [`RAISE_AFTER`] — or at once while it gets nothing.
    /// Returns the target in force.
    pub fn steer(&self, wanted: Option<usize>, now: Instant) -> Option<usize> {
        let target = self.target();
        let raise = match (target, wanted) {
            (Some(target), Some(wanted)) => wanted > target && self.current().is_some(),
            _ => false,
        };
        let mut pending = self.raise.lock();
        if raise {
            let wanted = wanted.unwrap_or_default();
            match *pending {
                Some((layer, since)) if layer == wanted => {
                    if now.saturating_duration_since(since) < RAISE_AFTER {
                        return target;
                    }
                }
                _ => {
                    *pending = Some((wanted, now));
                    return target;
                }
            }
        }
        *pending = None;
        self.target.store(
            wanted.map_or(NO_LAYER, |l| u8::try_from(l).unwrap_or(NO_LAYER)),
            Ordering::Release,
        );
        wanted
    }

    /// The subscriber connection was negotiated: learn the payload type and start reading
    /// the subscriber's RTCP.
    pub async fn activate(
        self: &Arc<Self>,
        sender: &Arc<dyn RtpSender>,
        mime: &str,
        track: TrackId,
        sink: Arc<dyn FeedbackSink>,
        metrics: Metrics,
    ) -> Result<(), MediaError> {
        let parameters = sender.get_parameters().await?;
        let payload_type = parameters
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type);
        let Some(payload_type) = payload_type else {
            return Err(MediaError::Webrtc(
                webrtc::error::Error::ErrRTPTransceiverCodecUnsupported,
            ));
        };
        self.payload_type
            .store(u16::from(payload_type), Ordering::Release);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(event) = me.local.poll().await {
                let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                    continue;
                };
                for packet in packets {
                    let any = packet.as_any();
                    if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                        metrics
                            .keyframe_requests
                            .with_label_values(&["received"])
                            .inc();
                        sink.keyframe_wanted(&track);
                    } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                        metrics.nacks.inc_by(nack.nacks.len() as u64);
                    } else if let Some(report) = any.downcast_ref::<ReceiverReport>() {
                        for block in &report.reports {
                            metrics
                                .receiver_loss
                                .observe(f64::from(block.fraction_lost) / 256.0);
                        }
                    } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>()
                    {
                        me.link.set_estimate(remb.bitrate.max(0.0) as u64);
                    }
                }
            }
        });
        Ok(())
    }

    fn payload_type(&self) -> Option<u8> {
        u8::try_from(self.payload_type.load(Ordering::Acquire)).ok()
    }
}

/// The layer of a track without simulcast (it counts as the high one).
pub const SINGLE_LAYER: usize = LAYERS - 1;
/// A keyframe for a layer switch is asked for at most this often per layer.
const LAYER_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// A layer nobody receives any more is paused at the publisher after this long.
const PAUSE_AFTER: Duration = Duration::from_secs(3);
/// A layer that sent nothing for this long (and was not paused by the SFU) is not offered to
/// subscribers: the publisher's encoder dropped it (CPU or bandwidth).
const STALLED_AFTER: Duration = Duration::from_secs(2);

/// What the forwarder knows of one layer of its track.
#[derive(Debug, Default, Clone, Copy)]
struct Layer {
    ssrc: Option<u32>,
    /// Bytes since the last measurement.
    bytes: u64,
    /// Smoothed bitrate in bits per second.
    bitrate: u64,
    /// Frame height from its last VP8 keyframe.
    height: u16,
    last_packet: Option<Instant>,
    last_sequence: Option<u16>,
    /// When a keyframe was last asked for.
    asked: Option<Instant>,
    /// The publisher was told to stop sending it.
    paused: bool,
    /// Until when someone needs it (dynacast).
    needed_until: Option<Instant>,
    /// When the publisher was told to send it again: it may take a moment to come back.
    resumed_at: Option<Instant>,
}

/// The publisher's layers and what the SFU measured of them.
#[derive(Debug, Default)]
struct Layers {
    layers: [Layer; LAYERS],
    /// The track is sent in several layers (RTP stream IDs).
    simulcast: bool,
    measured_at: Option<Instant>,
}

impl Layers {
    fn of_ssrc(&self, ssrc: u32) -> Option<usize> {
        self.layers.iter().position(|l| l.ssrc == Some(ssrc))
    }

    /// `layer`'s stream `ssrc` arrived at `now`.
    fn open(&mut self, layer: usize, ssrc: u32, now: Instant) {
        let entry = &mut self.layers[layer];
        entry.ssrc = Some(ssrc);
        // A new layer gets the same grace as one nobody wants any more before it is paused.
        entry.needed_until = Some(now + PAUSE_AFTER);
    }

    /// The highest layer the publisher sends: the one a recording takes.
    fn highest(&self) -> Option<usize> {
        self.layers
            .iter()
            .rposition(|l| l.ssrc.is_some() && !l.paused)
    }

    /// Dynacast's decision at `now`, given the layers subscribers get or are switching to:
    /// what the publisher should send, when that changed (see [`Forwarder::layers_to_send`]).
    ///
    /// A layer whose stream has not arrived yet is always named: the SFU knows nothing of it
    /// (a browser starts its high layer only once its bandwidth estimate allows), and a layer
    /// the publisher was told to stop before it ever started would never arrive, so nobody
    /// could ever be switched to it.
    fn decide_sending(
        &mut self,
        mut needed: [bool; LAYERS],
        recording: bool,
        now: Instant,
    ) -> Option<[bool; LAYERS]> {
        if !self.simulcast {
            return None;
        }
        if let Some(lowest) = self.layers.iter().position(|l| l.ssrc.is_some()) {
            needed[lowest] = true;
        }
        if recording && let Some(highest) = self.layers.iter().rposition(|l| l.ssrc.is_some()) {
            needed[highest] = true;
        }
        let mut changed = false;
        for (layer, needed) in self.layers.iter_mut().zip(needed) {
            if layer.ssrc.is_none() {
                continue;
            }
            if needed {
                layer.needed_until = Some(now + PAUSE_AFTER);
            }
            let send = layer.needed_until.is_some_and(|until| until > now);
            if send == layer.paused {
                layer.paused = !send;
                if send {
                    layer.resumed_at = Some(now);
                }
                changed = true;
            }
        }
        changed.then(|| {
            std::array::from_fn(|l| self.layers[l].ssrc.is_none() || !self.layers[l].paused)
        })
    }
}

/// Reads one published track and writes each packet to every subscriber's copy.
pub struct Forwarder {
    /// The room's track ID.
    pub track: TrackId,
    /// Who publishes it.
    pub publisher: ParticipantId,
    /// Audio or video.
    pub kind: TrackKind,
    /// The publisher's codec (subscribers get the same).
    pub codec: RTCRtpCodec,
    payload: Codec,
    remote: Arc<dyn TrackRemote>,
    layers: Mutex<Layers>,
    enabled: AtomicBool,
    /// In a large room, whether this microphone is among the loudest that everyone hears.
    audible: AtomicBool,
    audio_level_ext: Option<u8>,
    loudest: AtomicU8,
    /// When speech was last heard on this track.
    last_voice: Mutex<Option<Instant>>,
    downstreams: RwLock<Vec<Arc<Downstream>>>,
    /// The queue of the track's recording writer while a recording runs.
    recorder: RwLock<Option<mpsc::Sender<crate::recording::Tapped>>>,
    stop: Notify,
    /// When the publisher connection's packets reached the pod: the time since is part of a
    /// packet's age.
    arrivals: Arc<crate::arrival::Arrivals>,
    metrics: Metrics,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("track", &self.track)
            .finish()
    }
}

impl Forwarder {
    /// A forwarder for `remote`, whose first stream is `ssrc` (with its RTP stream ID when the
    /// publisher sends simulcast), not yet running.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        track: TrackId,
        publisher: ParticipantId,
        kind: TrackKind,
        codec: RTCRtpCodec,
        remote: Arc<dyn TrackRemote>,
        first: (u32, Option<String>),
        audio_level_ext: Option<u8>,
        arrivals: Arc<crate::arrival::Arrivals>,
        metrics: Metrics,
    ) -> Self {
        let forwarder = Self {
            track,
            publisher,
            kind,
            payload: Codec::from_mime(&codec.mime_type),
            codec,
            remote,
            layers: Mutex::new(Layers::default()),
            enabled: AtomicBool::new(true),
            audible: AtomicBool::new(true),
            audio_level_ext,
            loudest: AtomicU8::new(127),
            last_voice: Mutex::new(None),
            downstreams: RwLock::new(Vec::new()),
            recorder: RwLock::new(None),
            stop: Notify::new(),
            arrivals,
            metrics,
        };
        forwarder.open_layer(first.0, first.1.as_deref());
        forwarder
    }

    /// A stream of the track opened: a simulcast layer named by its RTP stream ID, or the
    /// track's only stream.
    fn open_layer(&self, ssrc: u32, rid: Option<&str>) {
        let mut layers = self.layers.lock();
        if layers.of_ssrc(ssrc).is_some() {
            return;
        }
        let layer = match rid.filter(|rid| !rid.is_empty()) {
            None => SINGLE_LAYER,
            Some(rid) => match simulcast::layer_of_rid(rid) {
                Some(layer) => {
                    layers.simulcast = true;
                    layer
                }
                None => {
                    warn!(track = %self.track, rid, "a simulcast layer with an unknown RTP stream ID (expected q, h or f) is not forwarded");
                    return;
                }
            },
        };
        debug!(track = %self.track, ssrc, layer, "stream opened");
        layers.open(layer, ssrc, Instant::now());
    }

    /// Forward or drop (muted) packets.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
    }

    /// In a large room: whether everyone hears this microphone now.
    pub fn set_audible(&self, audible: bool) {
        self.audible.store(audible, Ordering::Release);
    }

    /// Whether everyone hears this microphone now.
    pub fn is_audible(&self) -> bool {
        self.audible.load(Ordering::Acquire)
    }

    /// Start writing to a subscriber's copy.
    pub fn attach(&self, downstream: Arc<Downstream>) {
        self.downstreams.write().push(downstream);
    }

    /// Hands every forwarded packet to a recording's writer from now on (`None`: stop; the
    /// writer then closes its last segment).
    pub fn record_into(&self, queue: Option<mpsc::Sender<crate::recording::Tapped>>) {
        *self.recorder.write() = queue;
    }

    /// Stop writing to a subscriber's copy.
    pub fn detach(&self, subscriber: &ParticipantId) {
        self.downstreams.write().retain(|d| {
            let keep = &d.subscriber != subscriber;
            if !keep && let Some(direct) = d.link.direct() {
                direct.forget(d.ssrc);
            }
            keep
        });
    }

    /// Subscribers attached now.
    pub fn subscriber_count(&self) -> usize {
        self.downstreams.read().len()
    }

    /// The subscribers' copies attached now.
    pub fn downstreams(&self) -> Vec<Arc<Downstream>> {
        self.downstreams.read().clone()
    }

    /// The loudest audio level since the last call (127: silence or none).
    pub fn take_loudest(&self) -> u8 {
        self.loudest.swap(127, Ordering::AcqRel)
    }

    /// Speech was heard on this track.
    pub fn heard_voice(&self, now: Instant) {
        *self.last_voice.lock() = Some(now);
    }

    /// When speech was last heard on this track.
    pub fn last_voice(&self) -> Option<Instant> {
        *self.last_voice.lock()
    }

    /// Measures the layers' bitrates (called by the room's tick) and returns what the
    /// allocator needs to know of each.
    pub fn layer_states(&self, now: Instant) -> [LayerState; LAYERS] {
        let mut layers = self.layers.lock();
        let elapsed = layers
            .measured_at
            .map(|at| now.saturating_duration_since(at).as_secs_f64());
        layers.measured_at = Some(now);
        let mut states = [LayerState::default(); LAYERS];
        for (layer, state) in layers.layers.iter_mut().zip(states.iter_mut()) {
            if let Some(elapsed) = elapsed.filter(|e| *e > 0.0)
                && layer.bytes > 0
            {
                let bps = (layer.bytes as f64 * 8.0 / elapsed) as u64;
                layer.bitrate = if layer.bitrate == 0 {
                    bps
                } else {
                    (layer.bitrate * 7 + bps * 3) / 10
                };
            }
            layer.bytes = 0;
            let recent = |at: Option<Instant>| {
                at.is_some_and(|at| now.saturating_duration_since(at) < STALLED_AFTER)
            };
            *state = LayerState {
                available: layer.ssrc.is_some()
                    && (recent(layer.last_packet) || layer.paused || recent(layer.resumed_at)),
                bitrate: layer.bitrate,
                height: layer.height,
            };
        }
        // Nothing flows (a camera turned off, a publisher that stopped every layer): every
        // layer it has counts, so subscribers keep their choice and switch to it as soon as
        // media comes back, instead of being dropped for a stall.
        if states.iter().all(|s| !s.available) {
            for (layer, state) in layers.layers.iter().zip(states.iter_mut()) {
                state.available = layer.ssrc.is_some();
            }
        }
        states
    }

    /// Asks the publisher for a keyframe of every layer it sends (a subscriber asked, or a
    /// subscription started).
    pub async fn request_keyframe(&self) {
        let ssrcs: Vec<u32> = {
            let mut layers = self.layers.lock();
            let now = Instant::now();
            layers
                .layers
                .iter_mut()
                .filter(|l| !l.paused)
                .filter_map(|l| {
                    l.asked = Some(now);
                    l.ssrc
                })
                .collect()
        };
        self.send_plis(ssrcs).await;
    }

    /// Asks for a keyframe of `layer` so that subscribers can switch to it, at most every
    /// [`LAYER_KEYFRAME_INTERVAL`].
    pub async fn request_layer_keyframe(&self, layer: usize, now: Instant) {
        let ssrc = {
            let mut layers = self.layers.lock();
            let Some(entry) = layers.layers.get_mut(layer) else {
                return;
            };
            if entry.paused
                || entry
                    .asked
                    .is_some_and(|at| now.saturating_duration_since(at) < LAYER_KEYFRAME_INTERVAL)
            {
                return;
            }
            entry.asked = Some(now);
            entry.ssrc
        };
        if let Some(ssrc) = ssrc {
            self.send_plis(vec![ssrc]).await;
        }
    }

    async fn send_plis(&self, ssrcs: Vec<u32>) {
        if ssrcs.is_empty() {
            return;
        }
        let sent = self.metrics.keyframe_requests.with_label_values(&["sent"]);
        let plis: Vec<Box<dyn rtc::rtcp::Packet>> = ssrcs
            .into_iter()
            .map(|media_ssrc| {
                sent.inc();
                Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                }) as Box<dyn rtc::rtcp::Packet>
            })
            .collect();
        if let Err(err) = self.remote.write_rtcp(plis).await {
            debug!(cause = %err, track = %self.track, "sending a PLI failed");
        }
    }

    /// Dynacast: the layers someone needs now — those subscribers get or are switching to,
    /// the lowest always (a new subscriber starts at once), the highest while recording.
    /// Returns the layers the publisher should send when that changed since the last call (a
    /// layer is paused only after nobody needed it for [`PAUSE_AFTER`]).
    pub fn layers_to_send(&self, now: Instant) -> Option<[bool; LAYERS]> {
        let mut needed = [false; LAYERS];
        for downstream in self.downstreams.read().iter() {
            for layer in [downstream.target(), downstream.current()]
                .into_iter()
                .flatten()
            {
                needed[layer] = true;
            }
        }
        let recording = self.recorder.read().is_some();
        self.layers.lock().decide_sending(needed, recording, now)
    }

    /// Stop reading.
    pub fn close(&self) {
        self.stop.notify_one();
    }

    /// Reads packets until the publisher's connection ends or [`Forwarder::close`].
    pub async fn run(self: Arc<Self>) {
        let kind = match self.kind {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        };
        let packets_in = self.metrics.packets.with_label_values(&[kind, "in"]);
        let bytes_in = self.metrics.bytes.with_label_values(&[kind, "in"]);
        let packets_out = self.metrics.packets.with_label_values(&[kind, "out"]);
        let bytes_out = self.metrics.bytes.with_label_values(&[kind, "out"]);
        let dropped_full = self
            .metrics
            .packets_dropped
            .with_label_values(&[kind, "full"]);
        let dropped_late = self
            .metrics
            .packets_dropped
            .with_label_values(&[kind, "late"]);
        let limit = match self.kind {
            TrackKind::Audio => backlog::AUDIO_LIMIT,
            TrackKind::Video => backlog::VIDEO_LIMIT,
        };
        let latency = self.metrics.forwarding_latency.with_label_values(&[kind]);
        let receive_wait = self.metrics.receive_wait.with_label_values(&[kind]);
        let recorder_dropped = self
            .metrics
            .recording_packets_dropped
            .with_label_values(&["queueFull"]);
        // The copies for direct paths go to one task, a batch per packet: it protects and sends
        // them and notes their departures (the queue between is what `Backlog` measures).
        let (sender, outgoing) = mpsc::channel(SEND_QUEUE);
        tokio::spawn(send_direct(
            outgoing,
            packets_out.clone(),
            bytes_out.clone(),
            dropped_full.clone(),
            self.metrics.copy_delay.with_label_values(&[kind]),
        ));
        let mut batch: Vec<Outgoing> = Vec::new();
        loop {
            let event = tokio::select! {
                event = self.remote.poll() => event,
                () = self.stop.notified() => break,
            };
            let Some(event) = event else { break };
            let mut packet = match event {
                TrackRemoteEvent::OnRtpPacket(packet) => packet,
                TrackRemoteEvent::OnOpen(init) => {
                    self.open_layer(init.ssrc, init.rid.as_deref());
                    continue;
                }
                _ => continue,
            };
            let received = Instant::now();
            // How long ago the packet reached the pod: what it waited before the forwarder
            // got it counts into its age.
            let waited = self.arrivals.waited(
                packet.header.ssrc,
                packet.header.sequence_number,
                crate::arrival::since_epoch(),
            );
            receive_wait.observe(waited.as_secs_f64());
            let arrived = received.checked_sub(waited).unwrap_or(received);
            packets_in.inc();
            bytes_in.inc_by(packet.payload.len() as u64);
            let keyframe = starts_keyframe(self.payload, &packet.payload);
            let vp8 = match self.payload {
                Codec::Vp8 => parse_vp8(&packet.payload),
                _ => None,
            };
            let (layer, recorded) = {
                let mut layers = self.layers.lock();
                let layer = match layers.of_ssrc(packet.header.ssrc) {
                    Some(layer) => layer,
                    // A stream the media stack did not announce: the track's only one.
                    None if !layers.simulcast && layers.layers[SINGLE_LAYER].ssrc.is_none() => {
                        layers.layers[SINGLE_LAYER].ssrc = Some(packet.header.ssrc);
                        SINGLE_LAYER
                    }
                    None => continue,
                };
                let recorded = layers.highest() == Some(layer);
                let entry = &mut layers.layers[layer];
                let seq = packet.header.sequence_number;
                if let Some(last) = entry.last_sequence {
                    let gap = seq.wrapping_sub(last);
                    if gap > 1 && gap < 1000 {
                        self.metrics.packets_lost.inc_by(u64::from(gap - 1));
                    }
                    if gap != 0 && gap < 0x8000 {
                        entry.last_sequence = Some(seq);
                    }
                } else {
                    entry.last_sequence = Some(seq);
                }
                entry.bytes += packet.payload.len() as u64;
                entry.last_packet = Some(received);
                if keyframe && let Some((_, height)) = vp8_keyframe_size(&packet.payload) {
                    entry.height = height;
                }
                (layer, recorded)
            };
            if let Some(id) = self.audio_level_ext
                && let Some(level) = packet.header.get_extension(id)
                && let Some(&first) = level.first()
            {
                self.loudest.fetch_min(first & 0x7f, Ordering::AcqRel);
            }
            if !self.enabled.load(Ordering::Acquire) {
                continue;
            }
            packet.header.extension = false;
            packet.header.extensions.clear();
            packet.header.extensions_padding = 0;
            // The recorder never holds up forwarding: a writer that fell behind loses packets.
            if recorded
                && let Some(queue) = self.recorder.read().as_ref()
                && queue
                    .try_send((packet.clone(), chrono::Utc::now()))
                    .is_err()
            {
                recorder_dropped.inc();
            }
            let audible = self.audible.load(Ordering::Acquire);
            let incoming = Incoming {
                layer,
                sequence: packet.header.sequence_number,
                timestamp: packet.header.timestamp,
                keyframe,
                vp8: vp8.as_ref(),
            };
            // Nothing below waits: a subscriber whose connection does not keep up loses its
            // own packets (it asks for a keyframe) and holds up no one else.
            let downstreams = self.downstreams.read();
            let mut forwarded = false;
            // Subscribers that switched to this layer at the same keyframe get the same VP8
            // rewrite: its payload is written once per packet and shared.
            let mut rewritten: Option<(simulcast::Vp8Rewrite, bytes::Bytes)> = None;
            for downstream in downstreams.iter() {
                let Some(payload_type) = downstream.payload_type() else {
                    continue;
                };
                let backlog = downstream.link.backlog();
                let late = backlog.late_after(received, waited, limit);
                if late && self.kind == TrackKind::Audio {
                    // Before the rewrite: audio is not retransmitted, so its sequence stays
                    // unbroken; the timestamps jump and the receiver conceals the gap.
                    dropped_late.inc();
                    continue;
                }
                let target = if audible { downstream.target() } else { None };
                let rewrite = {
                    let mut rewriter = downstream.rewriter.lock();
                    // Video is shed a whole frame at a time: from the next frame on, the copy
                    // stops, and it resumes at a keyframe (the room asks for one while a copy
                    // waits) once the connection keeps up — the subscriber sees no gap to ask
                    // retransmissions for, and no broken picture.
                    if late && !rewriter.continues_frame(&incoming) {
                        rewriter.rewrite(&incoming, None, received);
                        dropped_late.inc();
                        continue;
                    }
                    rewriter.rewrite(&incoming, target, received)
                };
                let Some(rewrite) = rewrite else {
                    if late {
                        dropped_late.inc();
                    }
                    continue;
                };
                let mut copy = packet.clone();
                copy.header.ssrc = downstream.ssrc;
                copy.header.payload_type = payload_type;
                copy.header.sequence_number = rewrite.sequence;
                copy.header.timestamp = rewrite.timestamp;
                if let (Some(vp8_rewrite), Some(descriptor)) = (rewrite.vp8, vp8.as_ref()) {
                    copy.payload = match &rewritten {
                        Some((done, payload)) if *done == vp8_rewrite => payload.clone(),
                        _ => {
                            let mut payload = bytes::BytesMut::from(&packet.payload[..]);
                            vp8_rewrite.apply(descriptor, &mut payload);
                            let payload = payload.freeze();
                            rewritten = Some((vp8_rewrite, payload.clone()));
                            payload
                        }
                    };
                }
                forwarded = true;
                let sequence = copy.header.sequence_number;
                // A connection with a direct path sends nothing through webrtc-rs: its stack
                // has no NACK responder nor sender reports for it (until its DTLS is up,
                // nothing could be sent anyway).
                if let Some(direct) = downstream.link.direct() {
                    if direct.is_ready() {
                        backlog.handed(downstream.ssrc, sequence, received);
                        batch.push(Outgoing {
                            slot: direct,
                            backlog: Arc::clone(backlog),
                            packet: copy,
                            arrived,
                        });
                    }
                    continue;
                }
                // Polled once: `write_rtp` waits only while the connection's queue (256
                // events) is full, and its send is cancel-safe — dropped unfinished, the packet
                // is not queued.
                match downstream.local.write_rtp(copy).now_or_never() {
                    Some(Ok(())) => {
                        backlog.handed(downstream.ssrc, sequence, received);
                        packets_out.inc();
                        bytes_out.inc_by(packet.payload.len() as u64);
                    }
                    Some(Err(err)) => trace!(cause = %err, "writing to a subscriber failed"),
                    None => dropped_full.inc(),
                }
            }
            drop(downstreams);
            if !batch.is_empty() {
                let copies = batch.len();
                // The next packet has as many copies, most likely: room for them at once.
                let next = Vec::with_capacity(copies);
                // The sending task is this far behind only when it stopped.
                if sender
                    .try_send(std::mem::replace(&mut batch, next))
                    .is_err()
                {
                    dropped_full.inc_by(copies as u64);
                }
            }
            if forwarded {
                latency.observe(received.elapsed().as_secs_f64());
            }
        }
        debug!(track = %self.track, "forwarder stopped");
    }
}

/// Batches (one per forwarded packet) a forwarder's sending task may hold: far more than a
/// subscriber connection may lag before its copies are shed.
const SEND_QUEUE: usize = 4096;

/// A copy of a packet for a subscriber connection's direct path.
struct Outgoing {
    slot: Arc<crate::direct::DirectSlot>,
    backlog: Arc<Backlog>,
    packet: rtc::rtp::Packet,
    /// When the publisher's packet reached the pod.
    arrived: Instant,
}

/// Copies the sending task takes at once when the batches of several packets wait: the
/// packets of a video frame or two at a few hundred subscribers.
const DRAIN_COPIES: usize = 4096;

/// Protects and sends the copies a forwarder hands over, in order, until the forwarder stops:
/// the copies of a packet leave together (in one `sendmmsg` where they share a socket). When
/// the batches of several packets wait — a video frame's packets come in a burst, and the
/// more subscribers, the longer one batch takes — they are taken together and each
/// connection's copies leave one after the other, so that a frame's copies for one
/// subscriber go in one UDP GSO send (`direct::Outbox`): the busier the pod, the less kernel
/// work per copy, and no copy ever waits for a batch to fill.
async fn send_direct(
    mut outgoing: mpsc::Receiver<Vec<Outgoing>>,
    packets_out: prometheus::IntCounter,
    bytes_out: prometheus::IntCounter,
    dropped_full: prometheus::IntCounter,
    copy_delay: prometheus::Histogram,
) {
    let mut outbox = crate::direct::Outbox::default();
    // Observed per copy: a local histogram, added to the shared one once per round.
    let delays = copy_delay.local();
    let mut waiting = Vec::new();
    while let Some(batch) = outgoing.recv().await {
        let mut copies = batch.len();
        waiting.push(batch);
        while copies < DRAIN_COPIES
            && let Ok(batch) = outgoing.try_recv()
        {
            copies += batch.len();
            waiting.push(batch);
        }
        let now = Instant::now();
        let ordered = by_connection(&mut waiting, |copy: &Outgoing| {
            Arc::as_ptr(&copy.slot) as usize
        });
        for Outgoing {
            slot,
            backlog,
            packet,
            arrived,
        } in ordered
        {
            backlog.departed(packet.header.ssrc, packet.header.sequence_number, now);
            if let Err(err) = slot.queue(packet, arrived, now, &mut outbox) {
                trace!(cause = ?err, "a copy for a subscriber could not be protected");
            }
        }
        outbox.flush(|departure| match departure.outcome {
            Ok(()) => {
                packets_out.inc();
                bytes_out.inc_by(departure.payload as u64);
                delays.observe(departure.delay.as_secs_f64());
            }
            Err(crate::direct::SendError::Full) => dropped_full.inc(),
            Err(crate::direct::SendError::Failed(err)) => {
                trace!(cause = %err, "sending to a subscriber failed");
            }
        });
        delays.flush();
    }
}

/// The copies of `batches` (one per packet, in the order the packets came; emptied) ordered
/// by connection (`connection` tells one from another): the connections in the order of their
/// first copies, each connection's copies in the order of their packets.
fn by_connection<T>(batches: &mut Vec<Vec<T>>, connection: impl Fn(&T) -> usize) -> Vec<T> {
    if batches.len() == 1 {
        return batches.pop().unwrap_or_default();
    }
    let total = batches.iter().map(Vec::len).sum();
    // Mostly every batch has the same connections in the same order: taken in turns.
    if let Some((first, rest)) = batches.split_first()
        && rest.iter().all(|batch| {
            batch.len() == first.len()
                && batch
                    .iter()
                    .zip(first)
                    .all(|(one, other)| connection(one) == connection(other))
        })
    {
        let connections = first.len();
        let mut each: Vec<_> = batches.drain(..).map(Vec::into_iter).collect();
        let mut ordered = Vec::with_capacity(total);
        for _ in 0..connections {
            ordered.extend(each.iter_mut().filter_map(Iterator::next));
        }
        return ordered;
    }
    let mut places: HashMap<usize, usize> = HashMap::new();
    let mut placed: Vec<(usize, T)> = Vec::with_capacity(total);
    placed.extend(batches.drain(..).flatten().map(|copy| {
        let next = places.len();
        (*places.entry(connection(&copy)).or_insert(next), copy)
    }));
    // Stable: a connection's copies keep their packets' order.
    placed.sort_by_key(|(place, _)| *place);
    placed.into_iter().map(|(_, copy)| copy).collect()
}

/// Reads and drops a refused track's packets so the connection's queues never fill.
pub fn drain(remote: Arc<dyn TrackRemote>) {
    tokio::spawn(async move { while remote.poll().await.is_some() {} });
}

/// The `a=extmap` ID of the audio-level extension in an SDP (the answerer keeps the
/// offerer's IDs).
pub fn audio_level_id(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        let id = id.split('/').next()?;
        (uri.trim() == AUDIO_LEVEL_URI)
            .then(|| id.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulcast layers of which those with an SSRC given opened at `now`.
    fn opened(ssrcs: [Option<u32>; LAYERS], now: Instant) -> Layers {
        let mut layers = Layers {
            simulcast: true,
            ..Layers::default()
        };
        for (layer, ssrc) in ssrcs.into_iter().enumerate() {
            if let Some(ssrc) = ssrc {
                layers.open(layer, ssrc, now);
            }
        }
        layers
    }

    #[test]
    fn a_layer_nobody_needs_is_paused_after_the_grace_and_resumed_at_once() {
        let start = Instant::now();
        let mut layers = opened([Some(1), Some(2), Some(3)], start);
        let small_tile = [true, false, false];
        assert_eq!(layers.decide_sending(small_tile, false, start), None);
        let later = start + PAUSE_AFTER + Duration::from_millis(100);
        assert_eq!(
            layers.decide_sending(small_tile, false, later),
            Some([true, false, false])
        );
        assert_eq!(layers.decide_sending(small_tile, false, later), None);
        assert_eq!(
            layers.decide_sending([false, false, true], false, later),
            Some([true, false, true])
        );
        // While recording, the highest is sent whoever watches.
        let mut layers = opened([Some(1), Some(2), Some(3)], start);
        assert_eq!(
            layers.decide_sending(small_tile, true, later),
            Some([true, false, true])
        );
    }

    #[test]
    fn a_layer_that_has_not_arrived_yet_is_never_paused() {
        // Chromium has started the low and medium layers; its bandwidth estimate does not
        // allow the high one yet. Nobody needs the medium layer: it is paused, the high layer
        // stays named, so the browser starts it once it can.
        let start = Instant::now();
        let mut layers = opened([Some(1), Some(2), None], start);
        let later = start + PAUSE_AFTER + Duration::from_millis(100);
        assert_eq!(
            layers.decide_sending([true, false, false], false, later),
            Some([true, false, true])
        );
        // Once it arrives it gets the same grace as the others, then is paused like them.
        layers.open(2, 3, later);
        assert_eq!(
            layers.decide_sending([true, false, false], false, later),
            None
        );
        let after_grace = later + PAUSE_AFTER + Duration::from_millis(100);
        assert_eq!(
            layers.decide_sending([true, false, false], false, after_grace),
            Some([true, false, false])
        );
        // A track without simulcast has nothing to pause.
        let mut single = opened([Some(1), None, None], start);
        single.simulcast = false;
        assert_eq!(
            single.decide_sending([false; LAYERS], false, after_grace),
            None
        );
    }

    #[test]
    fn waiting_copies_leave_by_connection_each_in_its_packets_order() {
        // Three packets' copies, (connection, packet); connection 9 joined after the first.
        let mut batches = vec![
            vec![(7, 1), (8, 1)],
            vec![(7, 2), (8, 2), (9, 2)],
            vec![(9, 3), (7, 3), (8, 3)],
        ];
        let ordered = by_connection(&mut batches, |&(connection, _)| connection);
        assert_eq!(
            ordered,
            [
                (7, 1),
                (7, 2),
                (7, 3),
                (8, 1),
                (8, 2),
                (8, 3),
                (9, 2),
                (9, 3)
            ]
        );
        assert!(
            batches.is_empty(),
            "the batches are emptied for the next ones"
        );
        let mut same = vec![
            vec![(8, 5), (7, 5)],
            vec![(8, 6), (7, 6)],
            vec![(8, 7), (7, 7)],
        ];
        assert_eq!(
            by_connection(&mut same, |&(connection, _)| connection),
            [(8, 5), (8, 6), (8, 7), (7, 5), (7, 6), (7, 7)],
            "the same connections in the same order, taken in turns"
        );
        let mut one = vec![vec![(8, 4), (7, 4)]];
        assert_eq!(
            by_connection(&mut one, |&(connection, _)| connection),
            [(8, 4), (7, 4)],
            "a packet on its own keeps its order"
        );
    }

    #[test]
    fn the_audio_level_id_is_read_from_the_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:3 http://x\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(audio_level_id(sdp), Some(1));
        assert_eq!(audio_level_id("v=0\r\n"), None);
    }
}
