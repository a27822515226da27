//! The SFU's UDP media sockets: the size of their kernel buffers, and the datagrams the kernel
//! dropped at them because nobody read them in time.
//!
//! A UDP socket's receive buffer is all that holds a publisher's packets while the SFU does not
//! read them: a keyframe of a 720p camera arrives as a burst of about a hundred packets, and a
//! pod held to its CPU limit is frozen for tens of milliseconds at a time. Linux' default
//! (`net.core.rmem_default`, 208 KiB: about ninety full-size datagrams, counted with the
//! kernel's overhead) overflows there, and what overflows is lost before the SFU ever sees it —
//! a sequence gap for every subscriber of the stream. So every media socket asks for
//! `--sfu-udp-buffer-bytes` (4 MiB) both ways; the kernel grants at most `net.core.rmem_max` /
//! `wmem_max`, and a pod granted less than it asked says so once at start.
//!
//! The kernel counts what it drops at each socket (the `drops` column of `/proc/net/udp`); the
//! SFU reads that for its own sockets every few seconds into
//! `conclave_sfu_udp_kernel_drops_total` and warns when it grows.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounter, IntGaugeVec};
use tracing::{debug, warn};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime,
};

use crate::arrival::Arrivals;
use crate::direct::DirectSlot;
use crate::udp_mux::UdpMux;

/// How often the kernel's drop counts are read.
pub const DROPS_EVERY: Duration = Duration::from_secs(5);
/// Warnings about dropped datagrams at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The media sockets' buffer size and the kernel's drops at them.
pub struct UdpBuffers {
    /// Asked for each socket, both directions; 0 leaves the kernel's default.
    bytes: usize,
    /// `conclave_sfu_udp_socket_buffer_bytes{direction}`: what the kernel granted (the last
    /// socket's; all are asked the same).
    granted: IntGaugeVec,
    /// `conclave_sfu_udp_kernel_drops_total`.
    drops: IntCounter,
    /// The sockets watched, by inode, with the drops counted so far.
    watched: Mutex<HashMap<u64, u64>>,
    /// Whether a grant below the asked size was reported already.
    capped_reported: AtomicBool,
    /// When dropped datagrams were last warned about.
    warned_at: Mutex<Option<Instant>>,
}

impl fmt::Debug for UdpBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpBuffers")
            .field("bytes", &self.bytes)
            .field("watched", &self.watched.lock().len())
            .finish_non_exhaustive()
    }
}

impl UdpBuffers {
    /// Sockets sized `bytes` each way (0: the kernel's default), counted into these metrics.
    pub fn new(bytes: usize, granted: IntGaugeVec, drops: IntCounter) -> Arc<Self> {
        Arc::new(Self {
            bytes,
            granted,
            drops,
            watched: Mutex::new(HashMap::new()),
            capped_reported: AtomicBool::new(false),
            warned_at: Mutex::new(None),
        })
    }

    /// Sizes `socket`'s buffers and watches it for drops. A socket whose buffers cannot be
    /// set keeps the kernel's default (logged); it is watched all the same.
    pub fn adopt(&self, socket: &(impl AsFd + AsRawFd)) {
        let sock = socket2::SockRef::from(socket);
        if self.bytes > 0 {
            let set = sock
                .set_recv_buffer_size(self.bytes)
                .and_then(|()| sock.set_send_buffer_size(self.bytes));
            if let Err(err) = set {
                debug!(cause = %err, "could not size a UDP socket's buffers");
            }
        }
        for (direction, granted) in [
            ("receive", sock.recv_buffer_size()),
            ("send", sock.send_buffer_size()),
        ] {
            if let Ok(granted) = granted {
                self.granted
                    .with_label_values(&[direction])
                    .set(i64::try_from(granted).unwrap_or(i64::MAX));
                if self.bytes > 0 {
                    self.report_cap(direction, granted);
                }
            }
        }
        match socket_inode(socket.as_raw_fd()) {
            Ok(inode) => {
                self.watched.lock().insert(inode, 0);
            }
            Err(err) => debug!(cause = %err, "cannot watch a UDP socket for drops"),
        }
    }

    /// Says once that the kernel granted less than asked, and what raises it.
    fn report_cap(&self, direction: &str, granted: usize) {
        // Linux reports twice what it grants, its bookkeeping's share included.
        if granted / 2 >= self.bytes || self.capped_reported.swap(true, Ordering::Relaxed) {
            return;
        }
        let sysctl = if direction == "receive" {
            "net.core.rmem_max"
        } else {
            "net.core.wmem_max"
        };
        warn!(
            asked = self.bytes,
            granted = granted / 2,
            "the kernel caps this pod's UDP {direction} buffers below --sfu-udp-buffer-bytes: \
             bursts (keyframes) may be dropped while the SFU is short of CPU; raise {sysctl} \
             on the node (sysctl -w {sysctl}={})",
            self.bytes
        );
    }

    /// Reads the kernel's drop counts of the watched sockets (the text of `/proc/net/udp` and
    /// `/proc/net/udp6`), counts what grew since the last reading and forgets the sockets that
    /// are gone. Returns the datagrams newly dropped.
    pub fn account(&self, tables: &[String]) -> u64 {
        let mut current = HashMap::new();
        for table in tables {
            current.extend(drops_by_inode(table));
        }
        let mut watched = self.watched.lock();
        let mut grew = 0;
        watched.retain(|inode, counted| match current.get(inode) {
            Some(&now) => {
                grew += now.saturating_sub(*counted);
                *counted = now;
                true
            }
            None => false,
        });
        drop(watched);
        self.drops.inc_by(grew);
        grew
    }

    /// Sockets watched now.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.watched.lock().len()
    }

    /// Reads the kernel's tables every [`DROPS_EVERY`] and warns (at most once a minute) when
    /// datagrams were dropped, until these buffers are dropped. Needs a tokio runtime.
    pub fn spawn_accounting(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(DROPS_EVERY);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(buffers) = weak.upgrade() else {
                    return;
                };
                // With no media socket yet there is nothing to read (a hostNetwork pod's table
                // holds every socket of the node).
                if buffers.watched.lock().is_empty() {
                    continue;
                }
                let tables = tokio::task::spawn_blocking(udp_tables)
                    .await
                    .unwrap_or_default();
                let dropped = buffers.account(&tables);
                if dropped > 0 {
                    buffers.warn_dropped(dropped);
                }
            }
        });
    }

    fn warn_dropped(&self, dropped: u64) {
        let now = Instant::now();
        let mut warned_at = self.warned_at.lock();
        if warned_at.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            return;
        }
        *warned_at = Some(now);
        warn!(
            dropped,
            seconds = DROPS_EVERY.as_secs(),
            buffer = self.bytes,
            "the kernel dropped media datagrams at this SFU's full UDP receive buffers: the pod \
             is short of CPU (see conclave_sfu_subscriber_queue_seconds) or its buffers are too \
             small (--sfu-udp-buffer-bytes, net.core.rmem_max)"
        );
    }
}

/// The text of this network namespace's `/proc/net/udp` and `/proc/net/udp6` (those that can
/// be read).
fn udp_tables() -> Vec<String> {
    ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect()
}

/// The inode of the socket behind `fd` (as `/proc/net/udp` names it).
fn socket_inode(fd: i32) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/self/fd/{fd}"))?.ino())
}

/// The `drops` column of a `/proc/net/udp` (or `udp6`) table, by the socket's inode. Lines
/// that do not parse are skipped.
pub fn drops_by_inode(table: &str) -> HashMap<u64, u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 13 {
                return None;
            }
            let inode = fields[9].parse().ok()?;
            let drops = fields[fields.len() - 1].parse().ok()?;
            Some((inode, drops))
        })
        .collect()
}

/// The datagrams one received message holds: several of one sender may come coalesced by the
/// kernel (GRO), `stride` apart.
pub(crate) fn datagrams<'a>(buffer: &'a [u8], meta: &RecvMeta) -> std::slice::Chunks<'a, u8> {
    let stride = if meta.stride == 0 {
        meta.len
    } else {
        meta.stride
    };
    buffer[..meta.len.min(buffer.len())].chunks(stride.max(1))
}

/// Where a peer connection's UDP sockets come from.
#[derive(Debug)]
enum Sockets {
    /// Its own, bound by the connection, sized and watched.
    Own(Arc<UdpBuffers>),
    /// The pod's shared port (single-port mode), for the connection of this ufrag.
    Shared(Arc<UdpMux>, String),
}

/// The tokio runtime for one peer connection, with its UDP sockets sized and watched, or
/// taken from the pod's shared port.
#[derive(Debug)]
pub struct MediaRuntime {
    inner: TokioRuntime,
    sockets: Sockets,
    /// The connection's direct media path: its tasks run in its scope.
    direct: Option<Arc<DirectSlot>>,
    /// A publisher connection's: when the packets its sockets read reached the pod.
    arrivals: Option<Arc<Arrivals>>,
}

impl MediaRuntime {
    /// Sockets of the connection's own, sized and watched by `buffers` (with its direct
    /// path, or the arrivals of what it receives, if any).
    pub fn own(
        buffers: Arc<UdpBuffers>,
        direct: Option<Arc<DirectSlot>>,
        arrivals: Option<Arc<Arrivals>>,
    ) -> Arc<dyn Runtime> {
        Arc::new(Self {
            inner: TokioRuntime,
            sockets: Sockets::Own(buffers),
            direct,
            arrivals,
        })
    }

    /// Sockets on `mux`'s port for the connection of `ufrag` (with its direct path, or the
    /// arrivals of what it receives, if any).
    pub fn shared(
        mux: Arc<UdpMux>,
        ufrag: String,
        direct: Option<Arc<DirectSlot>>,
        arrivals: Option<Arc<Arrivals>>,
    ) -> Arc<dyn Runtime> {
        Arc::new(Self {
            inner: TokioRuntime,
            sockets: Sockets::Shared(mux, ufrag),
            direct,
            arrivals,
        })
    }

    /// `socket`, with what it reads timed when the connection is a publisher's.
    fn timed(&self, socket: Arc<dyn AsyncUdpSocket>) -> Arc<dyn AsyncUdpSocket> {
        match &self.arrivals {
            Some(wait) => wait.watch(socket),
            None => socket,
        }
    }
}

impl Runtime for MediaRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        match &self.direct {
            Some(slot) => self.inner.spawn(Box::pin(slot.scope(future))),
            None => self.inner.spawn(future),
        }
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        match &self.direct {
            Some(slot) => self
                .inner
                .spawn_reactor(reactor_pool_size, Box::pin(slot.scope(future))),
            None => self.inner.spawn_reactor(reactor_pool_size, future),
        }
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        match &self.sockets {
            Sockets::Own(buffers) => {
                buffers.adopt(&socket);
                match &self.direct {
                    Some(slot) => {
                        let duplicate = socket.try_clone().map(Arc::new);
                        let wrapped = self.inner.wrap_udp_socket(socket)?;
                        Ok(slot.watch(duplicate, wrapped))
                    }
                    None => Ok(self.timed(self.inner.wrap_udp_socket(socket)?)),
                }
            }
            // The driver bound an ephemeral port of the address it gathers candidates for;
            // only the address is kept, the port is closed again.
            Sockets::Shared(mux, ufrag) => {
                let attached = mux.attach(ufrag, socket.local_addr()?.ip());
                match &self.direct {
                    Some(slot) => Ok(slot.watch(mux.duplicate(), attached)),
                    None => Ok(self.timed(attached)),
                }
            }
        }
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future);
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        match self.sockets {
            Sockets::Own(_) => "tokio (sized UDP sockets)",
            Sockets::Shared(..) => "tokio (shared UDP port)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 0100007F:B36A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81234 2 0000000000000000 0
  121: 0100007F:B36B 0100007F:1F90 01 00000000:00032000 00:00000000 00000000  1000        0 81240 2 0000000000000000 17
  122: garbage
";

    fn buffers() -> Arc<UdpBuffers> {
        UdpBuffers::new(
            1 << 20,
            IntGaugeVec::new(prometheus::Opts::new("g", "g"), &["direction"]).expect("gauge"),
            IntCounter::new("c", "c").expect("counter"),
        )
    }

    #[test]
    fn the_drops_column_is_read_by_inode() {
        let drops = drops_by_inode(TABLE);
        assert_eq!(drops.len(), 2, "{drops:?}");
        assert_eq!(drops.get(&81234), Some(&0));
        assert_eq!(drops.get(&81240), Some(&17));
    }

    #[test]
    fn only_what_grew_at_watched_sockets_is_counted_and_closed_ones_are_forgotten() {
        let buffers = buffers();
        buffers.watched.lock().extend([(81240, 0), (99, 0)]);
        // 81234 is another process's socket; 99 is gone.
        assert_eq!(buffers.account(&[TABLE.to_owned()]), 17);
        assert_eq!(buffers.watched(), 1);
        assert_eq!(buffers.account(&[TABLE.to_owned()]), 0, "nothing new");
        let later = TABLE.replace(" 17\n", " 20\n");
        assert_eq!(buffers.account(&[later]), 3);
        assert_eq!(buffers.drops.get(), 20);
    }

    #[test]
    fn a_socket_gets_the_buffers_asked_for_and_the_kernel_counts_what_overflows() {
        let buffers = buffers();
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        buffers.adopt(&receiver);
        assert_eq!(buffers.watched(), 1);
        let granted = buffers.granted.with_label_values(&["receive"]).get();
        // At least the kernel's default, whatever net.core.rmem_max allows beyond it.
        assert!(granted >= 2 * 4096, "granted {granted}");

        // Nobody reads: the kernel drops what does not fit, and the drops show up.
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let datagram = [0u8; 1200];
        let room = usize::try_from(granted).expect("size") / 1200 + 64;
        for _ in 0..room * 4 {
            sender
                .send_to(&datagram, receiver.local_addr().expect("addr"))
                .expect("send");
        }
        let dropped = buffers.account(&udp_tables());
        assert!(dropped > 0, "nothing dropped after {} datagrams", room * 4);
        assert_eq!(buffers.drops.get(), dropped);
    }
}
