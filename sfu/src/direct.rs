//! Media the SFU protects and sends itself.
//!
//! webrtc-rs sends each packet written to a connection through that connection's queue, its
//! driver task and its handler chain (interceptors, SRTP, the socket): one queue hand-over,
//! one task wake-up and several copies per packet and subscriber — most of an SFU's CPU (see
//! docs/sfu.md, "Where the time goes"). On a subscriber connection with a direct path the SFU
//! instead protects each forwarded packet itself, with the SRTP keys of the connection's DTLS
//! association (which the patched `rtc` hands out, `vendor/rtc/src/srtp_export.rs`), and sends
//! it from the connection's UDP socket (its own, or a duplicate of the pod's one port) to the
//! peer's address. webrtc-rs keeps everything
//! else: ICE, DTLS, the signalling, and the RTCP the subscriber sends.
//!
//! What webrtc-rs' interceptors did for the media it no longer sees, the direct path does
//! itself: it keeps the packets it sent for a second and answers NACKs from them
//! ([`DirectSlot::retransmit`]), and it sends the sender reports receivers synchronise audio
//! and video with (one per stream and second, with a packet of the stream).
//!
//! The copies are protected into an [`Outbox`] first and sent together: the copies that leave
//! through the same socket (every connection's, on the pod's one port) go in one `sendmmsg`,
//! and a connection's copies of one size (a video frame's) in one `sendmsg` with UDP GSO —
//! the kernel's work per datagram being most of a copy's cost.
//!
//! The keys are handed out on the task that drives the connection; every task of a connection
//! with a direct path runs inside [`DirectSlot::scope`], which is how the observer finds the
//! connection. The peer's address is where webrtc-rs sends the connection's DTLS (its selected
//! candidate pair).

use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::libc;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg, sendmsg,
};
use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec};
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp;
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::srtp::context::Context;
use tracing::{debug, warn};
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Transmit};

use crate::backlog::NACK_MAX_AGE;

tokio::task_local! {
    static CURRENT: Arc<DirectSlot>;
}

/// Packets per stream kept for retransmission (a power of two: a sequence number keeps its
/// place across the wraparound). A second of a 2.5 Mbit/s layer is about 250.
const HISTORY: usize = 512;
/// How often each stream's sender report goes out.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// Datagrams one `sendmmsg` takes at most.
const SENDMMSG_MAX: usize = 64;
/// Datagrams one `sendmsg` with UDP GSO carries at most (`UDP_MAX_SEGMENTS` of every kernel
/// with UDP GSO; newer ones take more)…
const GSO_SEGMENTS_MAX: usize = 64;
/// …and bytes: what fits in one IP packet before the kernel segments it.
const GSO_BYTES_MAX: usize = 65_000;

/// One subscriber connection's direct path: its socket, its peer, its SRTP context once the
/// handshake is done, and what it sent.
pub struct DirectSlot {
    /// The keys, the socket and the peer's address are all known (read for every copy).
    ready: AtomicBool,
    counters: Counters,
    /// One lock for all a copy needs: it is taken once per copy.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Where the connection's packets leave from: the socket of its selected pair…
    origin: Option<Origin>,
    /// …and where they go.
    peer: Option<SocketAddr>,
    /// The SRTP context, once the handshake is done, and what was sent with it.
    keys: Option<State>,
    /// The connection's media goes through webrtc-rs after all (over TCP): never ready.
    abandoned: bool,
}

impl Inner {
    fn ready(&self) -> bool {
        !self.abandoned && self.origin.is_some() && self.peer.is_some() && self.keys.is_some()
    }
}

/// One of a connection's sockets, as the direct path sends from it.
#[derive(Clone, Debug)]
struct Origin {
    /// A duplicate of the socket (of the pod's one port, the one duplicate all share)…
    socket: Arc<UdpSocket>,
    /// …which is an IPv6 one (the pod's dual-stack port): IPv4 peers are mapped.
    ipv6: bool,
    /// Where the socket's own address is unspecified (the pod's one port on every
    /// interface): the local address datagrams leave from, the one the client reached.
    source: Option<IpAddr>,
}

impl Origin {
    /// `duplicate` of `socket`, as webrtc-rs sees it (its local address names the interface
    /// the connection's candidate is on).
    fn new(duplicate: Arc<UdpSocket>, socket: &dyn AsyncUdpSocket) -> Self {
        let bound = duplicate.local_addr().ok();
        let source = match bound {
            Some(bound) if bound.ip().is_unspecified() => socket
                .local_addr()
                .ok()
                .map(|local| local.ip())
                .filter(|ip| !ip.is_unspecified()),
            _ => None,
        };
        Self {
            ipv6: bound.is_some_and(|bound| bound.is_ipv6()),
            socket: duplicate,
            source,
        }
    }

    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.socket, &other.socket) && self.source == other.source
    }

    /// The ancillary data naming the address datagrams leave from, where one must be named.
    fn packet_info(&self) -> Option<PacketInfo> {
        self.source.map(PacketInfo::new)
    }
}

/// `conclave_sfu_direct_datagrams_total` by what was sent, and
/// `conclave_sfu_direct_send_calls_total`.
struct Counters {
    media: IntCounter,
    retransmissions: IntCounter,
    reports: IntCounter,
    calls: IntCounter,
}

struct State {
    context: Context,
    streams: Streams,
}

/// The streams a connection sends, by SSRC: a handful (two per publisher it receives), so a
/// list searched in order costs less than hashing the SSRC.
#[derive(Default)]
struct Streams(Vec<(u32, Stream)>);

impl Streams {
    fn get(&self, ssrc: u32) -> Option<&Stream> {
        self.0
            .iter()
            .find_map(|(each, stream)| (*each == ssrc).then_some(stream))
    }

    fn get_or_insert(&mut self, ssrc: u32) -> &mut Stream {
        let place = match self.0.iter().position(|(each, _)| *each == ssrc) {
            Some(place) => place,
            None => {
                self.0.push((ssrc, Stream::new()));
                self.0.len() - 1
            }
        };
        &mut self.0[place].1
    }

    fn remove(&mut self, ssrc: u32) {
        self.0.retain(|(each, _)| *each != ssrc);
    }
}

/// One sent stream: its recent packets and what its sender report says.
struct Stream {
    history: Box<[Option<(Instant, rtp::Packet)>]>,
    packets: u32,
    octets: u32,
    reported: Option<Instant>,
}

impl Stream {
    fn new() -> Self {
        Self {
            history: vec![None; HISTORY].into_boxed_slice(),
            packets: 0,
            octets: 0,
            reported: None,
        }
    }
}

impl std::fmt::Debug for DirectSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSlot")
            .field("peer", &self.inner.lock().peer)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

fn install_observer() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        rtc::srtp_export::set_observer(keys_exported);
    });
}

fn keys_exported(keys: rtc::srtp_export::ExportedKeys) {
    let Ok(slot) = CURRENT.try_with(Arc::clone) else {
        return;
    };
    let crypto = match rtc::crypto::default_provider() {
        Ok(crypto) => crypto,
        Err(err) => {
            warn!(cause = %err, "no crypto provider: this connection's media goes through webrtc-rs");
            return;
        }
    };
    match Context::new(
        &keys.local_master_key,
        &keys.local_master_salt,
        keys.profile,
        None,
        None,
        crypto.crypto(),
    ) {
        Ok(context) => {
            let mut inner = slot.inner.lock();
            debug!(peer = ?inner.peer, "direct media ready");
            inner.keys = Some(State {
                context,
                streams: Streams::default(),
            });
            slot.ready.store(inner.ready(), Ordering::Release);
        }
        Err(err) => {
            warn!(cause = %err, "cannot protect this connection's media: it goes through webrtc-rs")
        }
    }
}

/// Why a packet did not leave.
#[derive(Debug)]
pub enum SendError {
    /// The socket's send buffer is full.
    Full,
    /// Protecting or sending failed.
    Failed(io::Error),
}

impl From<io::Error> for SendError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::WouldBlock {
            Self::Full
        } else {
            Self::Failed(err)
        }
    }
}

impl DirectSlot {
    /// A slot for a new connection, counting what it sends into `datagrams`
    /// (`conclave_sfu_direct_datagrams_total`) and the system calls it takes into `calls`
    /// (`conclave_sfu_direct_send_calls_total`).
    pub fn new(datagrams: &IntCounterVec, calls: &IntCounter) -> Arc<Self> {
        install_observer();
        Arc::new(Self {
            ready: AtomicBool::new(false),
            counters: Counters {
                media: datagrams.with_label_values(&["media"]),
                retransmissions: datagrams.with_label_values(&["retransmission"]),
                reports: datagrams.with_label_values(&["sender_report"]),
                calls: calls.clone(),
            },
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Runs `future` (a task of the slot's connection) so that keys exported on it reach the
    /// slot.
    pub fn scope<F: Future>(
        self: &Arc<Self>,
        future: F,
    ) -> impl Future<Output = F::Output> + use<F> {
        CURRENT.scope(Arc::clone(self), future)
    }

    /// One of the connection's sockets was bound (one per local address it gathers
    /// candidates on): where webrtc-rs sends through it is watched, and when that is the
    /// selected pair, `duplicate` (of the same socket) sends the direct media to its peer.
    pub fn watch(
        self: &Arc<Self>,
        duplicate: io::Result<Arc<UdpSocket>>,
        socket: Arc<dyn AsyncUdpSocket>,
    ) -> Arc<dyn AsyncUdpSocket> {
        let origin = duplicate
            .inspect_err(|err| debug!(cause = %err, "no direct media on this socket"))
            .ok()
            .map(|duplicate| Origin::new(duplicate, socket.as_ref()));
        Arc::new(Watched {
            inner: socket,
            slot: Arc::clone(self),
            origin,
        })
    }

    /// Whether packets can go the direct way: the keys are known, and so are the socket and
    /// the peer's address.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether webrtc-rs sent the connection's DTLS or SRTP through the slot's socket: its
    /// selected candidate pair is a UDP one. (Over ICE-TCP the socket sees only STUN.)
    pub fn knows_peer(&self) -> bool {
        self.inner.lock().peer.is_some()
    }

    /// The connection's media goes through webrtc-rs from now on: the slot never turns ready.
    pub fn abandon(&self) {
        let mut inner = self.inner.lock();
        inner.abandoned = true;
        self.ready.store(false, Ordering::Release);
    }

    /// webrtc-rs sends the connection's DTLS or SRTP to `destination` through the socket of
    /// `origin` (`None`: one the direct path cannot send from): its selected pair, from now
    /// on — the peer as the socket can reach it (an IPv4 address mapped into IPv6 on a
    /// dual-stack socket, as the pod's one port may be).
    fn sending_to(&self, destination: SocketAddr, origin: Option<&Origin>) {
        let mut inner = self.inner.lock();
        let peer = match destination {
            SocketAddr::V4(v4) if origin.is_some_and(|origin| origin.ipv6) => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        };
        let same_origin = match (&inner.origin, origin) {
            (Some(known), Some(origin)) => known.same(origin),
            (None, None) => true,
            _ => false,
        };
        if inner.peer != Some(peer) || !same_origin {
            debug!(%peer, source = ?origin.and_then(|o| o.source), "direct media goes to the selected pair");
            inner.peer = Some(peer);
            inner.origin = origin.cloned();
            self.ready.store(inner.ready(), Ordering::Release);
        }
    }

    /// Protects `packet` for sending at `now` into `outbox`, with the stream's sender report
    /// when one is due, and keeps it for retransmission.
    pub fn queue(
        self: Arc<Self>,
        packet: rtp::Packet,
        arrived: Instant,
        now: Instant,
        outbox: &mut Outbox,
    ) -> Result<(), SendError> {
        let mut guard = self.inner.lock();
        let Inner {
            origin: Some(origin),
            peer: Some(peer),
            keys: Some(state),
            ..
        } = &mut *guard
        else {
            return Err(SendError::Failed(io::Error::other(
                "the connection's keys or peer are not known yet",
            )));
        };
        let (origin, peer) = (origin.clone(), *peer);
        let protected = protect(&mut state.context, &packet, &mut outbox.plain)?;
        let stream = state.streams.get_or_insert(packet.header.ssrc);
        stream.packets = stream.packets.wrapping_add(1);
        stream.octets = stream
            .octets
            .wrapping_add(u32::try_from(packet.payload.len()).unwrap_or(u32::MAX));
        // Each stream's sender report leaves with a packet of the stream, at most every
        // second: its RTP time is that packet's, its NTP time now.
        let report = stream
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY)
            .then(|| {
                stream.reported = Some(now);
                SenderReport {
                    ssrc: packet.header.ssrc,
                    ntp_time: ntp(crate::arrival::since_epoch()),
                    rtp_time: packet.header.timestamp,
                    packet_count: stream.packets,
                    octet_count: stream.octets,
                    ..SenderReport::default()
                }
            });
        let payload = packet.payload.len();
        let place = usize::from(packet.header.sequence_number) % HISTORY;
        stream.history[place] = Some((now, packet));
        let report = report.and_then(|report| {
            protect_report(&mut state.context, &report)
                .inspect_err(|err| debug!(cause = %err, "a sender report could not be protected"))
                .ok()
        });
        drop(guard);
        // The sender report leaves right after the packet, through the same socket.
        let report = report.map(|bytes| Datagram {
            origin: origin.clone(),
            peer,
            bytes,
            slot: Arc::clone(&self),
            media: None,
            arrived,
        });
        outbox.push(Datagram {
            origin,
            peer,
            bytes: protected,
            slot: self,
            media: Some(payload),
            arrived,
        });
        if let Some(report) = report {
            outbox.push(report);
        }
        Ok(())
    }

    /// Protects and sends `packet` at `now` on its own, and keeps it for retransmission.
    #[cfg(test)]
    fn send(self: &Arc<Self>, packet: rtp::Packet, now: Instant) -> Result<(), SendError> {
        let mut outbox = Outbox::default();
        Arc::clone(self).queue(packet, now, now, &mut outbox)?;
        let mut outcome = Ok(());
        outbox.flush(|departure| outcome = departure.outcome);
        outcome
    }

    /// Sends again the packets of `ssrc` a NACK asks for that left within [`NACK_MAX_AGE`];
    /// returns the sequence numbers sent again (the others are too old or unknown).
    pub fn retransmit(&self, ssrc: u32, sequences: &[u16], now: Instant) -> Vec<u16> {
        let mut guard = self.inner.lock();
        let Inner {
            origin: Some(origin),
            peer: Some(peer),
            keys: Some(State { context, streams }),
            ..
        } = &mut *guard
        else {
            return Vec::new();
        };
        let Some(stream) = streams.get(ssrc) else {
            return Vec::new();
        };
        let recent = sequences.iter().filter_map(|&sequence| {
            stream.history[usize::from(sequence) % HISTORY]
                .as_ref()
                .filter(|(sent, packet)| {
                    packet.header.sequence_number == sequence
                        && now.saturating_duration_since(*sent) <= NACK_MAX_AGE
                })
                .map(|(_, packet)| packet)
        });
        let mut sent = Vec::new();
        let mut plain = Vec::new();
        for packet in recent {
            // The same packet under the same index: the same ciphertext as the first time.
            let Ok(protected) = protect(context, packet, &mut plain) else {
                continue;
            };
            self.counters.calls.inc();
            if send_one(origin, &protected, *peer).is_ok() {
                self.counters.retransmissions.inc();
                sent.push(packet.header.sequence_number);
            }
        }
        sent
    }

    /// Forgets a stream the connection no longer sends.
    pub fn forget(&self, ssrc: u32) {
        if let Some(state) = self.inner.lock().keys.as_mut() {
            state.streams.remove(ssrc);
        }
    }
}

/// Protected datagrams on their way out: the copies of one forwarded packet, or of several
/// packets grouped by connection (and the sender reports due with them). Datagrams that leave
/// through the same socket one after the other — on the pod's one port, all of them — go in
/// one `sendmmsg` (at most [`SENDMMSG_MAX`]); a run ends when a datagram for another socket
/// comes, so with a port per connection a connection's copies leave as soon as the next
/// connection's are protected, and few buffers are alive at once.
///
/// Within a run, datagrams to the same peer one after the other, of one size (the last may be
/// shorter: a video frame's packets), go as one train in a single `sendmsg` with UDP GSO
/// (`UDP_SEGMENT`): the kernel builds, routes and hands on one buffer for all of them and
/// cuts it into datagrams only at the end (or the NIC does). Where the kernel refuses a train
/// that plain sends then take (a route without checksum offload), the outbox sends without
/// GSO from then on.
pub struct Outbox {
    /// The run being gathered: datagrams through the same socket.
    run: Vec<Datagram>,
    /// What became of each datagram of the run sent last.
    outcomes: Vec<io::Result<()>>,
    /// What became of the media packets sent since the last flush.
    media: Vec<Departure>,
    /// Where packets are written before they are protected, kept between packets.
    plain: Vec<u8>,
    /// Trains go in one `sendmsg` with UDP GSO (until the kernel refuses one).
    gso: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            run: Vec::new(),
            outcomes: Vec::new(),
            media: Vec::new(),
            plain: Vec::new(),
            gso: true,
        }
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("run", &self.run.len())
            .finish_non_exhaustive()
    }
}

struct Datagram {
    /// The socket it leaves through, and from which address.
    origin: Origin,
    peer: SocketAddr,
    bytes: BytesMut,
    slot: Arc<DirectSlot>,
    /// A media packet of this many payload bytes; `None`: a sender report.
    media: Option<usize>,
    /// When the publisher's packet it copies reached the pod.
    arrived: Instant,
}

/// What became of a media packet the [`Outbox`] sent.
#[derive(Debug)]
pub struct Departure {
    /// Its payload bytes.
    pub payload: usize,
    pub outcome: Result<(), SendError>,
    /// From its publisher's packet reaching the pod (the kernel's receive timestamp) to the
    /// return of the system call that sent it: the pod's whole part of its delay.
    pub delay: Duration,
}

impl Outbox {
    fn push(&mut self, datagram: Datagram) {
        if let Some(first) = self.run.first()
            && (!first.origin.same(&datagram.origin) || self.run.len() >= SENDMMSG_MAX)
        {
            self.send_run();
        }
        self.run.push(datagram);
    }

    fn send_run(&mut self) {
        let calls = send_run(&self.run, &mut self.outcomes, &mut self.gso);
        // A run is one connection's datagrams with a port per connection: one clock read
        // dates them all (on the pod's one port, up to SENDMMSG_MAX of them in one call).
        let left = Instant::now();
        if let Some(first) = self.run.first() {
            first.slot.counters.calls.inc_by(calls);
        }
        for (datagram, outcome) in self.run.drain(..).zip(self.outcomes.drain(..)) {
            let counters = &datagram.slot.counters;
            let Some(payload) = datagram.media else {
                match outcome {
                    Ok(()) => counters.reports.inc(),
                    Err(err) => debug!(cause = %err, "a sender report was not sent"),
                }
                continue;
            };
            if outcome.is_ok() {
                counters.media.inc();
            }
            self.media.push(Departure {
                payload,
                outcome: outcome.map_err(SendError::from),
                delay: left.saturating_duration_since(datagram.arrived),
            });
        }
    }

    /// Sends what waits; `media` learns of each media packet since the last flush, in order:
    /// whether it left, and when.
    pub fn flush(&mut self, mut media: impl FnMut(Departure)) {
        self.send_run();
        for departure in self.media.drain(..) {
            media(departure);
        }
    }
}

/// Sends `bytes` to `peer` through `origin`'s socket, from its address.
fn send_one(origin: &Origin, bytes: &[u8], peer: SocketAddr) -> io::Result<()> {
    let Some(info) = origin.packet_info() else {
        return origin.socket.send_to(bytes, peer).map(drop);
    };
    sendmsg(
        origin.socket.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[info.message()],
        MsgFlags::empty(),
        Some(&SockaddrStorage::from(peer)),
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// The ancillary data that names the local address a datagram leaves from (`IP_PKTINFO`,
/// `IPV6_PKTINFO`; an IPv4 one also on a dual-stack socket, to an IPv4-mapped peer).
enum PacketInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

impl PacketInfo {
    fn new(source: IpAddr) -> Self {
        match source {
            IpAddr::V4(v4) => Self::V4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            IpAddr::V6(v6) => Self::V6(libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                ipi6_ifindex: 0,
            }),
        }
    }

    fn message(&self) -> ControlMessage<'_> {
        match self {
            Self::V4(info) => ControlMessage::Ipv4PacketInfo(info),
            Self::V6(info) => ControlMessage::Ipv6PacketInfo(info),
        }
    }

    /// A control buffer its message fits in.
    fn space(&self) -> Vec<u8> {
        match self {
            Self::V4(_) => nix::cmsg_space!(libc::in_pktinfo),
            Self::V6(_) => nix::cmsg_space!(libc::in6_pktinfo),
        }
    }
}

/// Sends datagrams that all leave through the same socket from the same address, noting each
/// one's outcome: each train (see [`Outbox`]) in one `sendmsg` with GSO while `gso` holds, the
/// others together in `sendmmsg`; returns the system calls it took.
fn send_run(run: &[Datagram], outcomes: &mut Vec<io::Result<()>>, gso: &mut bool) -> u64 {
    let mut calls = 0;
    // The first datagram not sent yet, and the one looked at.
    let (mut unsent, mut next) = (0, 0);
    while next < run.len() {
        let train = if *gso { train(&run[next..]) } else { 1 };
        if train < 2 {
            next += 1;
            continue;
        }
        // What comes before the train leaves before it: a peer's datagrams keep their order.
        calls += send_batch(&run[unsent..next], outcomes);
        let carriage = &run[next..next + train];
        calls += 1;
        match send_train(carriage) {
            Ok(()) => outcomes.extend(carriage.iter().map(|_| Ok(()))),
            Err(errno) => {
                let before = outcomes.len();
                calls += send_batch(carriage, outcomes);
                if outcomes[before..].iter().all(Result::is_ok) {
                    debug!(cause = %errno, "the kernel refuses UDP GSO here: datagrams go one by one");
                    *gso = false;
                }
            }
        }
        next += train;
        unsent = next;
    }
    calls + send_batch(&run[unsent..], outcomes)
}

/// How many of `datagrams`, from the first, make a train: to the same peer, of the first's
/// size, the last maybe shorter; within what one GSO send carries.
fn train(datagrams: &[Datagram]) -> usize {
    let Some(first) = datagrams.first() else {
        return 0;
    };
    let size = first.bytes.len();
    let mut bytes = size;
    let mut cars = 1;
    for datagram in &datagrams[1..] {
        let length = datagram.bytes.len();
        if cars == GSO_SEGMENTS_MAX
            || datagram.peer != first.peer
            || length > size
            || bytes + length > GSO_BYTES_MAX
        {
            break;
        }
        cars += 1;
        bytes += length;
        if length < size {
            break;
        }
    }
    cars
}

/// Sends a train in one `sendmsg` with UDP GSO.
fn send_train(train: &[Datagram]) -> nix::Result<()> {
    let first = &train[0];
    let size = u16::try_from(first.bytes.len()).map_err(|_| nix::errno::Errno::EMSGSIZE)?;
    let slices: Vec<IoSlice<'_>> = train
        .iter()
        .map(|datagram| IoSlice::new(&datagram.bytes))
        .collect();
    let info = first.origin.packet_info();
    let segments = ControlMessage::UdpGsoSegments(&size);
    let with_info;
    let control = match &info {
        Some(info) => {
            with_info = [segments, info.message()];
            &with_info[..]
        }
        None => std::slice::from_ref(&segments),
    };
    sendmsg(
        first.origin.socket.as_raw_fd(),
        &slices,
        control,
        MsgFlags::empty(),
        Some(&SockaddrStorage::from(first.peer)),
    )
    .map(drop)
}

/// Sends datagrams that all leave through the same socket from the same address in
/// `sendmmsg` (one alone in `sendmsg`), noting each one's outcome; returns the system calls
/// it took.
fn send_batch(run: &[Datagram], outcomes: &mut Vec<io::Result<()>>) -> u64 {
    let Some(first) = run.first() else { return 0 };
    if run.len() == 1 {
        outcomes.push(send_one(&first.origin, &first.bytes, first.peer));
        return 1;
    }
    let info = first.origin.packet_info();
    let control: Vec<ControlMessage<'_>> = info.iter().map(PacketInfo::message).collect();
    let fd = first.origin.socket.as_raw_fd();
    // A run holds at most SENDMMSG_MAX; the call is made again after the datagrams it took.
    let mut next = 0;
    let mut calls = 0;
    while next < run.len() {
        calls += 1;
        let chunk = &run[next..];
        let slices: Vec<[IoSlice<'_>; 1]> = chunk
            .iter()
            .map(|datagram| [IoSlice::new(&datagram.bytes)])
            .collect();
        let addresses: Vec<Option<SockaddrStorage>> = chunk
            .iter()
            .map(|datagram| Some(SockaddrStorage::from(datagram.peer)))
            .collect();
        let mut headers =
            MultiHeaders::preallocate(chunk.len(), info.as_ref().map(PacketInfo::space));
        match sendmmsg(
            fd,
            &mut headers,
            &slices,
            &addresses,
            &control,
            MsgFlags::empty(),
        ) {
            Ok(results) => {
                let sent = results.count();
                if sent == 0 {
                    // Not expected of the kernel: the first datagram is given up, so that
                    // the loop ends.
                    outcomes.push(Err(io::ErrorKind::WouldBlock.into()));
                    next += 1;
                } else {
                    outcomes.extend((0..sent).map(|_| Ok(())));
                    next += sent;
                }
            }
            // The chunk's first datagram was refused; the rest are tried again.
            Err(errno) => {
                outcomes.push(Err(errno.into()));
                next += 1;
            }
        }
    }
    calls
}

/// `packet` protected with `context`, written through `plain` (kept by the caller so that
/// packets are not each written into a new buffer).
fn protect(
    context: &mut Context,
    packet: &rtp::Packet,
    plain: &mut Vec<u8>,
) -> io::Result<BytesMut> {
    plain.clear();
    plain.resize(packet.marshal_size(), 0);
    packet
        .marshal_to(plain)
        .map_err(|err| io::Error::other(err.to_string()))?;
    context
        .encrypt_rtp_with_header(plain, &packet.header)
        .map_err(|err| io::Error::other(err.to_string()))
}

fn protect_report(context: &mut Context, report: &SenderReport) -> io::Result<BytesMut> {
    let plain = report
        .marshal()
        .map_err(|err| io::Error::other(err.to_string()))?;
    context
        .encrypt_rtcp(&plain)
        .map_err(|err| io::Error::other(err.to_string()))
}

/// A wall-clock time as a 64-bit NTP timestamp.
fn ntp(since_unix: Duration) -> u64 {
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// A connection's socket whose datagrams' destinations are noted: the peer's address is where
/// webrtc-rs sends DTLS and SRTP/SRTCP — its selected candidate pair, which ICE authenticated.
/// (Where datagrams come from proves nothing: a source address can be forged.)
#[derive(Debug)]
struct Watched {
    inner: Arc<dyn AsyncUdpSocket>,
    slot: Arc<DirectSlot>,
    /// How the direct path sends from this socket, if it can.
    origin: Option<Origin>,
}

impl AsyncUdpSocket for Watched {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(
        &self,
        cx: &mut TaskContext<'_>,
        transmit: &Transmit<'_>,
    ) -> Poll<io::Result<usize>> {
        // RFC 7983: 20..=63 DTLS, 128..=191 SRTP/SRTCP; 0..=3 is STUN, which ICE also sends to
        // candidates it only checks. webrtc-rs sends DTLS and SRTP to its selected pair alone.
        if transmit
            .contents
            .first()
            .is_some_and(|first| (20..=63).contains(first) || (128..=191).contains(first))
        {
            self.slot
                .sending_to(transmit.destination, self.origin.as_ref());
        }
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut TaskContext<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::Unmarshal;

    #[test]
    fn ntp_time_counts_from_1900_with_a_binary_fraction() {
        assert_eq!(ntp(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        assert_eq!(
            ntp(Duration::from_millis(1500)),
            ((NTP_UNIX_OFFSET + 1) << 32) | (1 << 31)
        );
    }

    const KEY: [u8; 16] = [7; 16];
    const SALT: [u8; 12] = [9; 12];

    fn context() -> Context {
        let crypto = rtc::crypto::default_provider().expect("crypto");
        Context::new(
            &KEY,
            &SALT,
            rtc::srtp::protection_profile::ProtectionProfile::AeadAes128Gcm,
            None,
            None,
            crypto.crypto(),
        )
        .expect("context")
    }

    /// `slot`'s test stream sent its sender report `at`: none is due with its next packets.
    fn report_sent(slot: &DirectSlot, at: Instant) {
        slot.inner
            .lock()
            .keys
            .as_mut()
            .expect("keys")
            .streams
            .get_or_insert(0xdead_beef)
            .reported = Some(at);
    }

    /// A slot with counters of its own.
    fn new_slot() -> Arc<DirectSlot> {
        let datagrams =
            IntCounterVec::new(prometheus::Opts::new("d", "d"), &["what"]).expect("counter");
        DirectSlot::new(&datagrams, &IntCounter::new("c", "c").expect("counter"))
    }

    /// A ready slot whose peer is a socket of the test's, which it returns.
    fn ready_slot() -> (Arc<DirectSlot>, UdpSocket) {
        let slot = new_slot();
        let sfu = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        *slot.inner.lock() = Inner {
            origin: Some(Origin {
                socket: Arc::new(sfu),
                ipv6: false,
                source: None,
            }),
            peer: Some(peer.local_addr().expect("address")),
            keys: Some(State {
                context: context(),
                streams: Streams::default(),
            }),
            abandoned: false,
        };
        slot.ready.store(true, Ordering::Release);
        (slot, peer)
    }

    fn packet(sequence: u16) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 96,
                sequence_number: sequence,
                timestamp: 90_000 + u32::from(sequence) * 3000,
                ssrc: 0xdead_beef,
                ..Default::default()
            },
            payload: bytes::Bytes::from(vec![sequence as u8; 100]),
        }
    }

    fn sized_packet(sequence: u16, size: usize) -> rtp::Packet {
        rtp::Packet {
            payload: bytes::Bytes::from(vec![sequence as u8; size]),
            ..packet(sequence)
        }
    }

    fn receive(peer: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 1500];
        let n = peer.recv(&mut buf).expect("a datagram");
        buf[..n].to_vec()
    }

    #[test]
    fn media_is_protected_with_the_connections_keys_and_reported() {
        let (slot, peer) = ready_slot();
        let mut remote = context();
        let now = Instant::now();
        slot.send(packet(10), now).expect("sent");
        let media = remote.decrypt_rtp(&receive(&peer)).expect("decrypts");
        let got = rtp::Packet::unmarshal(&mut &media[..]).expect("an RTP packet");
        assert_eq!(got, packet(10));
        // The stream's first packet brings its first sender report.
        let report = remote.decrypt_rtcp(&receive(&peer)).expect("decrypts");
        let report = SenderReport::unmarshal(&mut &report[..]).expect("a sender report");
        assert_eq!(
            (report.ssrc, report.packet_count, report.octet_count),
            (0xdead_beef, 1, 100)
        );
        assert_eq!(report.rtp_time, packet(10).header.timestamp);
        // The next one only after a second.
        slot.send(packet(11), now + Duration::from_millis(500))
            .expect("sent");
        assert!(rtcp_or_rtp(&receive(&peer)) == "rtp");
        slot.send(packet(12), now + REPORT_EVERY).expect("sent");
        assert_eq!(rtcp_or_rtp(&receive(&peer)), "rtp");
        let report = remote.decrypt_rtcp(&receive(&peer)).expect("decrypts");
        let report = SenderReport::unmarshal(&mut &report[..]).expect("a sender report");
        assert_eq!((report.packet_count, report.octet_count), (3, 300));
    }

    /// RTCP packet types are 200..=206 in the second byte (RFC 5761).
    fn rtcp_or_rtp(datagram: &[u8]) -> &'static str {
        if (200..=206).contains(&datagram[1]) {
            "rtcp"
        } else {
            "rtp"
        }
    }

    #[test]
    fn a_nack_is_answered_with_the_same_datagram_within_a_second_only() {
        let (slot, peer) = ready_slot();
        let start = Instant::now();
        slot.send(packet(20), start).expect("sent");
        let first = receive(&peer);
        let _report = receive(&peer);
        slot.send(packet(21), start).expect("sent");
        let _ = receive(&peer);
        // Sequence 22 was never sent; 20 is asked for again.
        assert_eq!(
            slot.retransmit(0xdead_beef, &[20, 22], start + Duration::from_millis(300)),
            vec![20]
        );
        assert_eq!(
            receive(&peer),
            first,
            "the same packet under the same index"
        );
        assert!(
            slot.retransmit(
                0xdead_beef,
                &[21],
                start + NACK_MAX_AGE + Duration::from_millis(1)
            )
            .is_empty()
        );
        assert!(
            slot.retransmit(0x1234, &[20], start).is_empty(),
            "another stream"
        );
        slot.forget(0xdead_beef);
        assert!(
            slot.retransmit(0xdead_beef, &[20], start).is_empty(),
            "a forgotten stream"
        );
    }

    /// A ready slot sending from `socket` to a new socket of the test's, which it returns.
    fn slot_on(socket: &Arc<UdpSocket>) -> (Arc<DirectSlot>, UdpSocket) {
        let (slot, peer) = ready_slot();
        slot.inner.lock().origin.as_mut().expect("an origin").socket = Arc::clone(socket);
        (slot, peer)
    }

    #[test]
    fn copies_through_one_socket_leave_together_each_to_its_peer() {
        // The pod's one port: more connections share the socket than one sendmmsg takes;
        // one more has its own.
        let port = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let own = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let shared: Vec<_> = (0..SENDMMSG_MAX + 6).map(|_| slot_on(&port)).collect();
        let (alone, alone_peer) = slot_on(&own);
        let peers: Vec<_> = shared
            .iter()
            .map(|(slot, peer)| (slot, peer))
            .chain([(&alone, &alone_peer)])
            .collect();
        let mut outbox = Outbox::default();
        let mut remotes: Vec<Context> = peers.iter().map(|_| context()).collect();
        let calls = || -> (u64, u64) {
            let shared = shared.iter().map(|(slot, _)| slot.counters.calls.get());
            (shared.sum(), alone.counters.calls.get())
        };
        for sequence in [40, 41] {
            let now = Instant::now();
            for (slot, _) in &peers {
                Arc::clone(slot)
                    .queue(packet(sequence), now, now, &mut outbox)
                    .expect("queued");
            }
            let mut sent = Vec::new();
            outbox.flush(|departure| sent.push((departure.payload, departure.outcome.is_ok())));
            assert_eq!(sent, vec![(100, true); SENDMMSG_MAX + 7]);
            outbox.flush(|_| panic!("flushed twice"));
            for ((_, peer), remote) in peers.iter().zip(&mut remotes) {
                let media = remote.decrypt_rtp(&receive(peer)).expect("decrypts");
                let got = rtp::Packet::unmarshal(&mut &media[..]).expect("an RTP packet");
                assert_eq!(got, packet(sequence));
                if sequence == 40 {
                    // Each first packet of a stream brings its sender report…
                    let report = remote.decrypt_rtcp(&receive(peer)).expect("decrypts");
                    let report =
                        SenderReport::unmarshal(&mut &report[..]).expect("a sender report");
                    assert_eq!((report.packet_count, report.octet_count), (1, 100));
                }
            }
            if sequence == 40 {
                // …with which it leaves in one GSO send (the report is the shorter).
                assert_eq!(calls(), (SENDMMSG_MAX as u64 + 6, 1));
            }
        }
        // The second packets: 70 datagrams through the shared port in calls of 64 and 6;
        // the other connection's in one more.
        assert_eq!(calls(), (SENDMMSG_MAX as u64 + 6 + 2, 2));
    }

    #[test]
    fn a_connections_packets_of_one_size_leave_in_one_gso_send() {
        let (slot, peer) = ready_slot();
        let mut outbox = Outbox::default();
        let now = Instant::now();
        // The publisher's packets reached the pod 3 ms before they are queued.
        let arrived = now - Duration::from_millis(3);
        let flush = |packets: &[rtp::Packet], outbox: &mut Outbox| {
            for packet in packets {
                Arc::clone(&slot)
                    .queue(packet.clone(), arrived, now, outbox)
                    .expect("queued");
            }
            let mut sent = 0;
            outbox.flush(|departure| {
                departure.outcome.expect("sent");
                // Dated when its system call returned, from the packet's arrival.
                assert!(departure.delay >= Duration::from_millis(3));
                assert!(departure.delay <= arrived.elapsed());
                sent += 1;
            });
            assert_eq!(sent, packets.len());
        };
        // The first packet and its sender report, which is shorter: one train.
        flush(&[packet(40)], &mut outbox);
        assert_eq!(slot.counters.calls.get(), 1);
        // A frame: two packets of one size and a shorter last one make a train; a longer
        // packet after it leaves on its own.
        let sizes = [(41, 100), (42, 100), (43, 60), (44, 100)];
        let frame: Vec<_> = sizes
            .iter()
            .map(|&(sequence, size)| sized_packet(sequence, size))
            .collect();
        flush(&frame, &mut outbox);
        assert_eq!(slot.counters.calls.get(), 3, "a GSO send and a plain one");
        assert!(outbox.gso, "the kernel took the trains");
        // The receiver gets each datagram on its own, in order.
        let mut remote = context();
        let first = remote.decrypt_rtp(&receive(&peer)).expect("decrypts");
        assert_eq!(
            rtp::Packet::unmarshal(&mut &first[..]).expect("RTP"),
            packet(40)
        );
        remote
            .decrypt_rtcp(&receive(&peer))
            .expect("the sender report");
        for expected in frame {
            let media = remote.decrypt_rtp(&receive(&peer)).expect("decrypts");
            let got = rtp::Packet::unmarshal(&mut &media[..]).expect("RTP");
            assert_eq!(got, expected);
        }
    }

    /// A route whose MTU is below a train's datagram size: the kernel refuses the GSO send
    /// (`EINVAL`) and takes the same datagrams one by one (it fragments them), so the outbox
    /// sends without GSO from then on. In a network namespace of its own (root).
    #[test]
    fn a_train_the_kernel_refuses_leaves_one_by_one_and_gso_stops() {
        if !loadgen::netns::isolate_with_default_route() {
            return;
        }
        let status = std::process::Command::new("ip")
            .args(["link", "set", "cv0", "mtu", "1280"])
            .status()
            .expect("ip (iproute2)");
        assert!(status.success(), "ip link set cv0 mtu 1280: {status}");
        let address = loadgen::netns::ROUTED_ADDRESS;
        let socket = Arc::new(UdpSocket::bind(format!("{address}:0")).expect("bind"));
        let (slot, _) = slot_on(&socket);
        // Across the route, to an address that is never there (the datagrams wait for ARP).
        slot.inner.lock().peer = Some("10.77.0.9:9".parse().expect("address"));
        // No sender report due: the trains are the three packets.
        report_sent(&slot, Instant::now());
        let mut outbox = Outbox::default();
        let send = |first: u16, outbox: &mut Outbox| {
            let now = Instant::now();
            for sequence in first..first + 3 {
                Arc::clone(&slot)
                    .queue(sized_packet(sequence, 1300), now, now, outbox)
                    .expect("queued");
            }
            let mut sent = Vec::new();
            outbox
                .flush(|departure| sent.push(departure.outcome.map_err(|err| format!("{err:?}"))));
            assert_eq!(sent, vec![Ok(()); 3]);
        };
        send(40, &mut outbox);
        assert_eq!(
            slot.counters.calls.get(),
            2,
            "the refused train, then sendmmsg"
        );
        assert!(!outbox.gso, "GSO is given up");
        send(43, &mut outbox);
        assert_eq!(slot.counters.calls.get(), 3, "sendmmsg alone");
    }

    #[test]
    fn a_train_takes_one_peers_datagrams_of_one_size_the_last_maybe_shorter() {
        let (slot, _peer) = ready_slot();
        let other: SocketAddr = "127.0.0.1:9".parse().expect("address");
        let datagram = |size: usize, peer: SocketAddr| Datagram {
            origin: Origin {
                socket: Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind")),
                ipv6: false,
                source: None,
            },
            peer,
            bytes: BytesMut::zeroed(size),
            slot: Arc::clone(&slot),
            media: Some(size),
            arrived: Instant::now(),
        };
        let own = "127.0.0.1:7".parse().expect("address");
        let sizes = |sizes: &[usize]| -> Vec<Datagram> {
            sizes.iter().map(|&size| datagram(size, own)).collect()
        };
        assert_eq!(train(&sizes(&[1100, 1100, 1100, 700, 1100])), 4);
        assert_eq!(train(&sizes(&[1100, 1101])), 1, "a longer one is not a car");
        assert_eq!(train(&sizes(&[500, 500])), 2);
        let mut mixed = sizes(&[1100, 1100]);
        mixed.insert(1, datagram(1100, other));
        assert_eq!(train(&mixed), 1, "another peer's datagram ends it");
        assert_eq!(train(&sizes(&[1100; 80])), GSO_BYTES_MAX / 1100);
        assert_eq!(train(&sizes(&[100; 80])), GSO_SEGMENTS_MAX);
    }

    #[test]
    fn a_refused_datagram_is_reported_and_the_rest_still_leave() {
        // The second connection's peer is an address no IPv4 socket can send to.
        let port = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let (first, first_peer) = slot_on(&port);
        let (refused, _) = slot_on(&port);
        refused.inner.lock().peer = Some("[::1]:9".parse().expect("address"));
        let (last, last_peer) = slot_on(&port);
        let mut outbox = Outbox::default();
        let now = Instant::now();
        for slot in [&first, &refused, &last] {
            // Not the stream's first packet: no sender report.
            report_sent(slot, now);
            Arc::clone(slot)
                .queue(packet(50), now, now, &mut outbox)
                .expect("queued");
        }
        let mut sent = Vec::new();
        outbox.flush(|departure| sent.push(departure.outcome.is_ok()));
        assert_eq!(sent, vec![true, false, true]);
        for peer in [&first_peer, &last_peer] {
            let media = context().decrypt_rtp(&receive(peer)).expect("decrypts");
            let got = rtp::Packet::unmarshal(&mut &media[..]).expect("an RTP packet");
            assert_eq!(got, packet(50));
        }
    }

    /// Keys for `slot`, as the observer hands them over after DTLS.
    fn give_keys(slot: &DirectSlot) {
        let mut inner = slot.inner.lock();
        inner.keys = Some(State {
            context: context(),
            streams: Streams::default(),
        });
        slot.ready.store(inner.ready(), Ordering::Release);
    }

    /// Receives one datagram on `peer`: its sender's address and whether it is SRTP media.
    fn receive_from(peer: &UdpSocket) -> (SocketAddr, &'static str) {
        let mut buf = [0u8; 1500];
        let (n, from) = peer.recv_from(&mut buf).expect("a datagram");
        (from, rtcp_or_rtp(&buf[..n]))
    }

    /// On a host with several addresses, a connection binds one socket per address; the
    /// direct path sends from the one webrtc-rs sent the connection's DTLS through (its
    /// selected pair), whichever was bound last.
    #[tokio::test]
    async fn media_leaves_the_socket_the_dtls_left() {
        use webrtc::runtime::{Runtime, TokioRuntime};
        let slot = new_slot();
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let sockets: Vec<_> = ["127.0.0.1:0", "127.0.0.2:0"]
            .into_iter()
            .map(|address| {
                let socket = UdpSocket::bind(address).expect("bind");
                let local = socket.local_addr().expect("address");
                let duplicate = socket.try_clone().map(Arc::new);
                let wrapped = TokioRuntime.wrap_udp_socket(socket).expect("wrap");
                (local, slot.watch(duplicate, wrapped))
            })
            .collect();
        give_keys(&slot);
        assert!(!slot.is_ready(), "no pair selected yet");
        let (selected, watched) = &sockets[0];
        // A DTLS record (content type 22) through the first socket.
        let dtls = [22u8, 0xfe, 0xfd, 0, 0];
        let transmit = Transmit {
            destination: peer.local_addr().expect("address"),
            ecn: None,
            contents: &dtls,
            segment_size: None,
            src_ip: None,
        };
        std::future::poll_fn(|cx| watched.poll_send(cx, &transmit))
            .await
            .expect("sent");
        assert_eq!(receive_from(&peer).0, *selected);
        assert!(slot.is_ready());
        slot.send(packet(60), Instant::now()).expect("sent");
        assert_eq!(receive_from(&peer), (*selected, "rtp"));
    }

    /// The pod's one port bound on every interface: each connection's copies leave from the
    /// address its client reached (not the one the kernel would choose), the copies of
    /// connections reached on the same address in one `sendmmsg`, and so do retransmissions.
    #[test]
    fn copies_leave_from_the_address_the_client_reached() {
        let port = Arc::new(UdpSocket::bind("0.0.0.0:0").expect("bind"));
        let reached = ["127.0.0.2", "127.0.0.2", "127.0.0.3"];
        let slots: Vec<_> = reached
            .iter()
            .map(|ip| {
                let (slot, peer) = slot_on(&port);
                slot.inner.lock().origin.as_mut().expect("an origin").source =
                    Some(ip.parse().expect("address"));
                (slot, peer)
            })
            .collect();
        let mut outbox = Outbox::default();
        let now = Instant::now();
        for (slot, _) in &slots {
            Arc::clone(slot)
                .queue(packet(70), now, now, &mut outbox)
                .expect("queued");
        }
        let mut sent = Vec::new();
        outbox.flush(|departure| sent.push(departure.outcome.is_ok()));
        assert_eq!(sent, vec![true; 3]);
        let port_number = port.local_addr().expect("address").port();
        for ((slot, peer), ip) in slots.iter().zip(reached) {
            let from = SocketAddr::new(ip.parse().expect("address"), port_number);
            assert_eq!(receive_from(peer), (from, "rtp"));
            assert_eq!(receive_from(peer), (from, "rtcp"), "the sender report");
            assert_eq!(slot.retransmit(0xdead_beef, &[70], now), vec![70]);
            assert_eq!(receive_from(peer), (from, "rtp"), "the retransmission");
        }
    }

    #[test]
    fn nothing_leaves_before_the_keys_and_the_peer_are_known() {
        let slot = new_slot();
        assert!(!slot.is_ready());
        assert!(matches!(
            slot.send(packet(1), Instant::now()),
            Err(SendError::Failed(_))
        ));
        assert!(
            slot.retransmit(0xdead_beef, &[1], Instant::now())
                .is_empty()
        );
    }
}
