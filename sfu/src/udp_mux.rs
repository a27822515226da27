//! Single-port mode (`--sfu-udp-port`): every peer connection of the pod on one UDP port,
//! demultiplexed by the remote address, and for an address not seen yet by the ICE username of
//! its STUN binding request (the ufrag the SFU chose for the connection,
//! `with_ice_credentials`). Like LiveKit's `udp_port` and Jitsi's 10000/udp: a firewall rule,
//! a hostPort or a load balancer for one port instead of a range.
//!
//! webrtc-rs 0.21 has no UDP mux: its driver binds a socket of its own per peer connection. It
//! does that I/O through a [`Runtime`], so each peer connection here gets a [`MediaRuntime`]:
//! the tokio runtime, except that the socket the driver binds (an ephemeral port, closed at
//! once) is replaced by a [`MuxSocket`] that receives what the pod's socket routes to it and
//! sends through the pod's socket. The candidates the connection gathers name that ephemeral
//! port; the media layer announces the shared port instead ([`UdpMux::port`]).
//!
//! One task reads the pod's socket, many datagrams per system call (`recvmmsg` through
//! quinn-udp), and hands each to its connection's bounded inbox: a connection that does not
//! keep up loses its own datagrams (counted), never anyone else's.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use prometheus::IntCounterVec;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Runtime, Transmit, UdpSockRef, UdpSocketState};

use crate::error::{Error, Result};
use crate::ice_tcp::ufrag_of;
use crate::sockets::{MediaRuntime, UdpBuffers};

/// Datagrams a connection's inbox holds before it drops (a keyframe of a 2.5 Mbit/s camera is
/// about 100 packets; a connection's driver empties its inbox on every wake-up).
const INBOX: usize = 1024;
/// Messages read per system call.
const BATCH: usize = 16;
/// The largest datagram read (larger ones are truncated by the kernel and fail SRTP).
const DATAGRAM: usize = 1500;
/// Remote addresses one connection may be reached from (one per candidate pair a client
/// checks; a client that keeps changing its address is past this).
const REMOTES_PER_CONNECTION: usize = 16;

/// The pod's UDP port and the peer connections behind it.
pub struct UdpMux {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
    /// One duplicate of the port's socket that every direct media path sends from: the
    /// copies of a packet for the pod's connections then leave in one `sendmmsg`
    /// (`crate::direct::Outbox`).
    duplicate: Option<Arc<std::net::UdpSocket>>,
}

struct Shared {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    routes: RwLock<Routes>,
    /// `conclave_sfu_udp_mux_datagrams_dropped_total{reason}`.
    dropped: IntCounterVec,
}

#[derive(Default)]
struct Routes {
    /// By ufrag: the connection's inboxes, one per local address it bound.
    by_ufrag: HashMap<String, Vec<Arc<Inbox>>>,
    /// By (local address the datagram came in on, remote address).
    by_remote: HashMap<(IpAddr, SocketAddr), Arc<Inbox>>,
}

/// A datagram waiting in an inbox: its sender, its bytes, and when the kernel received it
/// (`SO_TIMESTAMPNS`, which quinn-udp turns on: see `crate::arrival`).
type Queued = (SocketAddr, Vec<u8>, Option<Duration>);

/// What the pod's socket received for one socket of one peer connection.
struct Inbox {
    ufrag: String,
    /// The local address the connection's candidate names.
    ip: IpAddr,
    queue: Mutex<VecDeque<Queued>>,
    waker: AtomicWaker,
    /// The remote addresses routed here.
    remotes: Mutex<Vec<SocketAddr>>,
    /// The addresses the connection sent to (its checks of the client's candidates), whose
    /// answers come here unless the address is another connection's.
    sent_to: Mutex<Vec<SocketAddr>>,
}

impl fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpMux")
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl Drop for UdpMux {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl UdpMux {
    /// Binds `addr` and routes what it receives until the mux is dropped (needs a tokio
    /// runtime).
    ///
    /// # Errors
    /// [`Error::Listen`] when the port cannot be bound.
    pub fn spawn(
        addr: SocketAddr,
        buffers: &UdpBuffers,
        dropped: IntCounterVec,
    ) -> Result<Arc<Self>> {
        let listen = |source| Error::Listen { addr, source };
        let std = std::net::UdpSocket::bind(addr).map_err(listen)?;
        // Every publisher of the pod arrives here: the buffer is what holds their bursts
        // while the pod is short of CPU.
        buffers.adopt(&std);
        std.set_nonblocking(true).map_err(listen)?;
        let socket = UdpSocket::from_std(std).map_err(listen)?;
        // Destination addresses of received datagrams (IP_PKTINFO) and source addresses of
        // sent ones: with an unspecified bind address a reply leaves from the address the
        // client checked.
        let state = UdpSocketState::new(UdpSockRef::from(&socket)).map_err(listen)?;
        let local = socket.local_addr().map_err(listen)?;
        let shared = Arc::new(Shared {
            socket,
            state,
            local,
            routes: RwLock::new(Routes::default()),
            dropped,
        });
        let duplicate = match socket2::SockRef::from(&shared.socket).try_clone() {
            Ok(duplicate) => Some(Arc::new(duplicate.into())),
            Err(err) => {
                debug!(cause = %err, "no direct media on the pod's port");
                None
            }
        };
        info!(%local, "every peer connection on one UDP port");
        let reader = tokio::spawn(Arc::clone(&shared).read());
        Ok(Arc::new(Self {
            shared,
            reader,
            duplicate,
        }))
    }

    /// The port clients send to.
    pub fn port(&self) -> u16 {
        self.shared.local.port()
    }

    /// A runtime for the peer connection of `ufrag`: its UDP sockets are this mux's.
    pub fn runtime(
        self: &Arc<Self>,
        ufrag: String,
        direct: Option<Arc<crate::direct::DirectSlot>>,
        arrivals: Option<Arc<crate::arrival::Arrivals>>,
    ) -> Arc<dyn Runtime> {
        MediaRuntime::shared(Arc::clone(self), ufrag, direct, arrivals)
    }

    /// The duplicate of the port's socket that connections' direct media paths send from
    /// (from the port's address, which must then be a specific one: see `crate::direct`).
    pub(crate) fn duplicate(&self) -> io::Result<Arc<std::net::UdpSocket>> {
        self.duplicate
            .clone()
            .ok_or_else(|| io::Error::other("the pod's port could not be duplicated"))
    }

    /// The socket of the peer connection of `ufrag` for its local address `ip` (the address
    /// of the ephemeral port its driver bound): what this port receives for it, and sending
    /// through this port.
    pub(crate) fn attach(&self, ufrag: &str, ip: IpAddr) -> Arc<dyn AsyncUdpSocket> {
        let inbox = self.shared.attach(ufrag, canonical(ip));
        Arc::new(MuxSocket {
            shared: Arc::clone(&self.shared),
            inbox,
            writable: Mutex::new(None),
        })
    }

    /// Peer connections' sockets attached now.
    pub fn sockets(&self) -> usize {
        self.shared
            .routes
            .read()
            .by_ufrag
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Remote addresses routed now.
    pub fn remotes(&self) -> usize {
        self.shared.routes.read().by_remote.len()
    }
}

impl Shared {
    /// The local address a datagram arrived on, as the inboxes name it.
    fn local_ip(&self, meta: &RecvMeta) -> IpAddr {
        if self.local.ip().is_unspecified() {
            meta.dst_ip.map_or(self.local.ip(), canonical)
        } else {
            self.local.ip()
        }
    }

    async fn read(self: Arc<Self>) {
        // Each message may hold several datagrams of one sender coalesced by the kernel (GRO).
        let size = DATAGRAM * self.state.gro_segments().max(1);
        let mut buffers = vec![vec![0u8; size]; BATCH];
        let mut meta = vec![RecvMeta::default(); BATCH];
        loop {
            if let Err(err) = self.socket.readable().await {
                warn!(cause = %err, "the shared UDP socket failed");
                return;
            }
            let received = {
                let mut slices: Vec<IoSliceMut<'_>> = buffers
                    .iter_mut()
                    .map(|b| IoSliceMut::new(b.as_mut_slice()))
                    .collect();
                self.socket.try_io(Interest::READABLE, || {
                    match self
                        .state
                        .recv(UdpSockRef::from(&self.socket), &mut slices, &mut meta)
                    {
                        Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                        other => other,
                    }
                })
            };
            match received {
                Ok(count) => {
                    for (buffer, meta) in buffers.iter().zip(&meta).take(count) {
                        let local = self.local_ip(meta);
                        for datagram in crate::sockets::datagrams(buffer, meta) {
                            self.route(local, meta.addr, datagram, meta.timestamp);
                        }
                    }
                }
                Err(err) if transient(&err) => {}
                Err(err) => {
                    warn!(cause = %err, "reading the shared UDP socket failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Hands a datagram to the connection it is for, learning a new remote address from a
    /// STUN binding request's USERNAME; `stamp`: when the kernel received it.
    fn route(&self, local: IpAddr, remote: SocketAddr, datagram: &[u8], stamp: Option<Duration>) {
        let known = self.routes.read().by_remote.get(&(local, remote)).cloned();
        let inbox = match known {
            // A check naming another connection moves the address (a client's NAT reused a
            // port of a connection that ended); everything else goes where the address goes.
            Some(inbox) if ufrag_of(datagram).is_none_or(|ufrag| ufrag == inbox.ufrag) => inbox,
            _ => match self.learn(local, remote, datagram) {
                Some(inbox) => inbox,
                None => {
                    self.dropped.with_label_values(&["unknown"]).inc();
                    return;
                }
            },
        };
        {
            let mut queue = inbox.queue.lock();
            if queue.len() >= INBOX {
                drop(queue);
                self.dropped.with_label_values(&["full"]).inc();
                return;
            }
            queue.push_back((remote, datagram.to_vec(), stamp));
        }
        inbox.waker.wake();
    }

    fn learn(&self, local: IpAddr, remote: SocketAddr, datagram: &[u8]) -> Option<Arc<Inbox>> {
        let ufrag = ufrag_of(datagram)?;
        let mut routes = self.routes.write();
        let inbox = routes
            .by_ufrag
            .get(ufrag)?
            .iter()
            .find(|inbox| inbox.ip == local)
            .cloned()?;
        {
            let mut remotes = inbox.remotes.lock();
            if !remotes.contains(&remote) {
                if remotes.len() >= REMOTES_PER_CONNECTION {
                    debug!(%remote, "a connection checked from too many addresses; ignored");
                    return None;
                }
                remotes.push(remote);
            }
        }
        if let Some(before) = routes.by_remote.insert((local, remote), Arc::clone(&inbox))
            && !Arc::ptr_eq(&before, &inbox)
        {
            before.remotes.lock().retain(|r| *r != remote);
        }
        Some(inbox)
    }

    /// The connection of `inbox` sends to `remote` for the first time: what comes back from
    /// there is its own, unless another connection was reached from there first (a client's
    /// check always wins over this: a candidate names any address its sender likes).
    fn sending_to(&self, inbox: &Arc<Inbox>, remote: SocketAddr) {
        {
            let mut sent_to = inbox.sent_to.lock();
            if sent_to.contains(&remote) || sent_to.len() >= REMOTES_PER_CONNECTION {
                return;
            }
            sent_to.push(remote);
        }
        let mut routes = self.routes.write();
        let key = (inbox.ip, remote);
        if routes.by_remote.contains_key(&key) {
            return;
        }
        let mut remotes = inbox.remotes.lock();
        if remotes.len() < REMOTES_PER_CONNECTION {
            remotes.push(remote);
            routes.by_remote.insert(key, Arc::clone(inbox));
        }
    }

    fn attach(&self, ufrag: &str, ip: IpAddr) -> Arc<Inbox> {
        let inbox = Arc::new(Inbox {
            ufrag: ufrag.to_owned(),
            ip,
            queue: Mutex::new(VecDeque::new()),
            waker: AtomicWaker::new(),
            remotes: Mutex::new(Vec::new()),
            sent_to: Mutex::new(Vec::new()),
        });
        let mut routes = self.routes.write();
        let inboxes = routes.by_ufrag.entry(ufrag.to_owned()).or_default();
        // A rebind (ICE restart) replaces the socket of the same address.
        inboxes.retain(|other| other.ip != ip);
        inboxes.push(Arc::clone(&inbox));
        inbox
    }

    fn detach(&self, inbox: &Arc<Inbox>) {
        let mut routes = self.routes.write();
        if let Some(inboxes) = routes.by_ufrag.get_mut(&inbox.ufrag) {
            inboxes.retain(|other| !Arc::ptr_eq(other, inbox));
            if inboxes.is_empty() {
                routes.by_ufrag.remove(&inbox.ufrag);
            }
        }
        for remote in inbox.remotes.lock().drain(..) {
            let key = (inbox.ip, remote);
            if routes
                .by_remote
                .get(&key)
                .is_some_and(|owner| Arc::ptr_eq(owner, inbox))
            {
                routes.by_remote.remove(&key);
            }
        }
    }
}

/// Errors of a socket serving many peers that concern one of them (an ICMP port unreachable
/// from a client that left) or none.
fn transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::TimedOut
    )
}

/// An IPv4 address received on a dual-stack socket as its IPv6-mapped form, as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The shared socket becoming writable.
type Writable = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// One peer connection's socket on the shared port.
pub struct MuxSocket {
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
    /// Waits for the shared socket to take datagrams again (only while it is full).
    writable: Mutex<Option<Writable>>,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket")
            .field("ip", &self.inbox.ip)
            .field("port", &self.shared.local.port())
            .finish_non_exhaustive()
    }
}

impl Drop for MuxSocket {
    fn drop(&mut self) {
        self.shared.detach(&self.inbox);
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(self.inbox.ip, self.shared.local.port()))
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.shared.sending_to(&self.inbox, transmit.destination);
        let transmit = Transmit {
            destination: transmit.destination,
            ecn: transmit.ecn,
            contents: transmit.contents,
            segment_size: transmit.segment_size,
            // With an unspecified bind address: from the address the client reached.
            src_ip: transmit.src_ip.or_else(|| {
                self.shared
                    .local
                    .ip()
                    .is_unspecified()
                    .then_some(self.inbox.ip)
            }),
        };
        loop {
            let sent = self.shared.socket.try_io(Interest::WRITABLE, || {
                self.shared
                    .state
                    .try_send(UdpSockRef::from(&self.shared.socket), &transmit)
            });
            match sent {
                Ok(()) => return Poll::Ready(Ok(transmit.contents.len())),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if transient(&err) => {
                    // A client that left: its datagram is lost, nobody else's.
                    return Poll::Ready(Ok(transmit.contents.len()));
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
            // tokio keeps one waker per direction for `poll_send_ready`, and every connection
            // of the pod sends here: each waits on a `writable()` future of its own instead.
            let mut writable = self.writable.lock();
            let shared = Arc::clone(&self.shared);
            let future = writable.get_or_insert_with(|| {
                Box::pin(async move { shared.socket.writable().await }) as Writable
            });
            match future.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    *writable = None;
                    result?;
                }
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut filled = 0;
        let mut queue = self.inbox.queue.lock();
        if queue.is_empty() {
            self.inbox.waker.register(cx.waker());
            // A datagram queued between the check and the registration woke nobody.
            if queue.is_empty() {
                return Poll::Pending;
            }
        }
        for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()) {
            let Some((remote, datagram, stamp)) = queue.pop_front() else {
                break;
            };
            let len = datagram.len().min(buf.len());
            buf[..len].copy_from_slice(&datagram[..len]);
            *meta = RecvMeta::default();
            meta.addr = remote;
            meta.len = len;
            meta.stride = len.max(1);
            meta.ecn = None;
            meta.dst_ip = Some(self.inbox.ip);
            meta.timestamp = stamp;
            filled += 1;
        }
        Poll::Ready(Ok(filled))
    }
}

/// `sdp` with the port of every UDP candidate (`a=candidate:` lines) replaced by `port`.
pub fn announce_port(sdp: &str, port: u16) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let (text, end) = match line.strip_suffix("\r\n") {
            Some(text) => (text, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(text) => (text, "\n"),
                None => (line, ""),
            },
        };
        match text.strip_prefix("a=") {
            Some(candidate) if candidate.starts_with("candidate:") => {
                out.push_str("a=");
                out.push_str(&candidate_on_port(candidate, port));
                out.push_str(end);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// A candidate attribute (`candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ
/// …`, RFC 8839) with `port` if its transport is UDP; any other as it is.
fn candidate_on_port(candidate: &str, port: u16) -> String {
    let fields: Vec<&str> = candidate.split(' ').collect();
    if fields.len() < 8
        || !fields[2].eq_ignore_ascii_case("udp")
        || fields[5].parse::<u16>().is_err()
    {
        return candidate.to_owned();
    }
    let port = port.to_string();
    let mut fields = fields;
    fields[5] = &port;
    fields.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_candidates_of_a_description_name_the_shared_port() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=candidate:1 1 udp 2130706431 10.1.2.3 53211 typ host\r\n\
            a=candidate:2 1 UDP 2130706431 192.0.2.7 53211 typ host generation 0\r\n\
            a=candidate:3 1 tcp 1671430143 10.1.2.3 7881 typ host tcptype passive\r\n\
            a=mid:0\r\n";
        let announced = announce_port(sdp, 7882);
        assert_eq!(
            announced,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=candidate:1 1 udp 2130706431 10.1.2.3 7882 typ host\r\n\
            a=candidate:2 1 UDP 2130706431 192.0.2.7 7882 typ host generation 0\r\n\
            a=candidate:3 1 tcp 1671430143 10.1.2.3 7881 typ host tcptype passive\r\n\
            a=mid:0\r\n"
        );
    }

    #[test]
    fn lines_that_are_no_udp_candidate_stay_as_they_are() {
        for sdp in [
            "a=candidate:broken\r\n",
            "a=candidate:1 1 udp 1 10.0.0.1 notaport typ host\r\n",
            "a=end-of-candidates\r\n",
            "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host",
            "",
        ] {
            let expected = if sdp.ends_with("5000 typ host") {
                "a=candidate:1 1 udp 1 10.0.0.1 9 typ host".to_owned()
            } else {
                sdp.to_owned()
            };
            assert_eq!(announce_port(sdp, 9), expected, "{sdp:?}");
        }
    }

    #[test]
    fn an_ipv4_address_received_as_ipv6_mapped_is_named_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("an address");
        assert_eq!(canonical(mapped), "10.1.2.3".parse::<IpAddr>().expect("v4"));
        let v6: IpAddr = "2001:db8::1".parse().expect("an address");
        assert_eq!(canonical(v6), v6);
    }
}
