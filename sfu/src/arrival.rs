//! When a publisher's packets reached the pod: what they waited before the forwarder got them
//! counts into their age.
//!
//! Past its limit a pod reads its publishers' sockets late: their datagrams wait in the
//! socket's receive buffer (`--sfu-udp-buffer-bytes`, 4 MiB: seconds of media), where nothing
//! is lost and the forwarder's clock, which starts when it gets a packet, sees nothing. At
//! fan-out N=600 on a pod held to 0.4 of a core the publisher's socket held up to a second of
//! video, and what the forwarder still sent reached subscribers 0.8 s late (p50).
//!
//! quinn-udp turns on `SO_TIMESTAMPNS` on every socket it reads (webrtc-rs' sockets and the
//! pod's one port), so each datagram read carries the time the kernel received it. A
//! publisher connection's sockets note when each RTP packet they read arrived, by SSRC and
//! sequence number, which SRTP leaves in the clear ([`Arrivals`]); its forwarders count
//! the time since into a packet's age before they hand it on — the wait in the kernel and in
//! webrtc-rs' queues before the forwarder got it (see `crate::backlog::Backlog::late_after`),
//! so a pod past its limit sheds what is already stale instead of forwarding it late.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Transmit};

/// A wait longer than this is no wait but the wall clock stepped (the kernel's timestamps are
/// wall-clock times): it counts as none.
const PLAUSIBLE: Duration = Duration::from_secs(10);
/// Packets whose arrival is remembered (a power of two): over a second of a publisher's
/// camera and microphone.
const REMEMBERED: usize = 1024;

/// When the RTP packets a publisher connection read arrived at the pod's kernel.
#[derive(Debug)]
pub struct Arrivals {
    /// By sequence number and SSRC: the packet's SSRC, sequence number and arrival (since
    /// the Unix epoch).
    ring: Mutex<Box<[(u32, u16, Duration)]>>,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self {
            ring: Mutex::new(vec![(0, 0, Duration::ZERO); REMEMBERED].into_boxed_slice()),
        }
    }
}

fn place(ssrc: u32, sequence: u16) -> usize {
    (usize::from(sequence) ^ (ssrc as usize).wrapping_mul(0x9E37)) % REMEMBERED
}

impl Arrivals {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The connection read `datagram`, which the kernel received at `stamp` (since the Unix
    /// epoch): when it is an RTP packet, its arrival is remembered.
    pub fn read(&self, datagram: &[u8], stamp: Duration) {
        if let Some((ssrc, sequence)) = rtp_id(datagram) {
            self.ring.lock()[place(ssrc, sequence)] = (ssrc, sequence, stamp);
        }
    }

    /// How long before `now` (since the Unix epoch) packet `sequence` of `ssrc` arrived;
    /// zero for a packet not remembered, or when the wall clock stepped in between.
    pub fn waited(&self, ssrc: u32, sequence: u16, now: Duration) -> Duration {
        let (seen_ssrc, seen_sequence, stamp) = self.ring.lock()[place(ssrc, sequence)];
        if seen_ssrc != ssrc || seen_sequence != sequence || stamp.is_zero() {
            return Duration::ZERO;
        }
        now.checked_sub(stamp)
            .filter(|wait| *wait <= PLAUSIBLE)
            .unwrap_or_default()
    }

    /// A new connection: nothing of the old one's counts.
    pub fn clear(&self) {
        self.ring.lock().fill((0, 0, Duration::ZERO));
    }

    /// `socket` (a publisher connection's), noting when the RTP packets it reads arrived.
    pub fn watch(self: &Arc<Self>, socket: Arc<dyn AsyncUdpSocket>) -> Arc<dyn AsyncUdpSocket> {
        Arc::new(Timed {
            inner: socket,
            arrivals: Arc::clone(self),
        })
    }
}

/// The SSRC and sequence number of an RTP packet (RFC 7983: first byte 128..=191; RFC 5761:
/// RTCP's packet types 192..=223 where RTP has its marker bit and payload type).
fn rtp_id(datagram: &[u8]) -> Option<(u32, u16)> {
    let header = datagram.get(..12)?;
    let rtp = (128..=191).contains(&header[0]) && !(192..=223).contains(&header[1]);
    rtp.then(|| {
        (
            u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
            u16::from_be_bytes([header[2], header[3]]),
        )
    })
}

/// Now, as the kernel's receive timestamps count (since the Unix epoch).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A socket whose RTP packets' arrivals are noted.
#[derive(Debug)]
struct Timed {
    inner: Arc<dyn AsyncUdpSocket>,
    arrivals: Arc<Arrivals>,
}

impl AsyncUdpSocket for Timed {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(count)) = &polled {
            for (buf, meta) in bufs.iter().zip(meta.iter()).take(*count) {
                let Some(stamp) = meta.timestamp else {
                    continue;
                };
                for datagram in crate::sockets::datagrams(buf, meta) {
                    self.arrivals.read(datagram, stamp);
                }
            }
        }
        polled
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

    const NOW: Duration = Duration::from_secs(1_800_000_000);
    const MS: Duration = Duration::from_millis(1);

    fn rtp(ssrc: u32, sequence: u16) -> Vec<u8> {
        let mut packet = vec![0x80, 96];
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 7]);
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&[0xAB; 40]);
        packet
    }

    #[test]
    fn each_packet_knows_how_long_ago_it_arrived() {
        let wait = Arrivals::default();
        wait.read(&rtp(11, 65_535), NOW - MS * 300);
        wait.read(&rtp(11, 0), NOW - MS * 20);
        wait.read(&rtp(22, 0), NOW - MS * 5);
        assert_eq!(wait.waited(11, 65_535, NOW), MS * 300);
        assert_eq!(wait.waited(11, 0, NOW), MS * 20);
        assert_eq!(wait.waited(22, 0, NOW), MS * 5);
        // Not read, or read so long ago that its place was taken: no wait known.
        assert_eq!(wait.waited(11, 1, NOW), Duration::ZERO);
        wait.read(&rtp(11, 1024), NOW);
        assert_eq!(wait.waited(11, 0, NOW), Duration::ZERO);
        wait.clear();
        assert_eq!(wait.waited(22, 0, NOW), Duration::ZERO);
    }

    #[test]
    fn rtcp_stun_dtls_and_scraps_are_not_taken_for_rtp() {
        let wait = Arrivals::default();
        // A receiver report: RTP's version bits, RTCP's packet type 201.
        let mut report = rtp(33, 5);
        report[1] = 201;
        wait.read(&report, NOW - MS * 100);
        assert_eq!(
            wait.waited(u32::from_be_bytes([0, 0, 0, 7]), 0, NOW),
            Duration::ZERO
        );
        // STUN (0..=3), DTLS (20..=63), and an RTP header cut short.
        for first in [0x00, 0x16] {
            let mut other = rtp(44, 6);
            other[0] = first;
            wait.read(&other, NOW - MS * 100);
        }
        wait.read(&rtp(44, 6)[..11], NOW - MS * 100);
        assert_eq!(wait.waited(44, 6, NOW), Duration::ZERO);
    }

    #[test]
    fn stamps_a_stepped_clock_made_count_as_no_wait() {
        let wait = Arrivals::default();
        wait.read(&rtp(1, 1), NOW + Duration::from_secs(3));
        wait.read(&rtp(1, 2), NOW - Duration::from_secs(3600));
        assert_eq!(wait.waited(1, 1, NOW), Duration::ZERO);
        assert_eq!(wait.waited(1, 2, NOW), Duration::ZERO);
    }

    /// The kernel's receive time reaches the SFU through webrtc-rs' socket (quinn-udp turns
    /// `SO_TIMESTAMPNS` on): a packet left unread for a while is seen to have waited.
    #[tokio::test]
    async fn a_packet_left_unread_is_seen_to_have_waited() {
        use webrtc::runtime::{Runtime, TokioRuntime};
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = socket.local_addr().expect("address");
        let wait = Arrivals::new();
        let timed = wait.watch(TokioRuntime.wrap_udp_socket(socket).expect("wrap"));
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let unread = MS * 120;
        // The kernel starts stamping datagrams as they arrive a moment after the first socket
        // of the machine asks for it (until then it stamps them when they are read): the
        // first packets of a fresh machine may show no wait.
        let mut seen = Vec::new();
        for sequence in 0..3u16 {
            sender.send_to(&rtp(9, sequence), to).expect("send");
            std::thread::sleep(unread);
            let mut buf = [0u8; 1500];
            let mut meta = [RecvMeta::default()];
            let count = std::future::poll_fn(|cx| {
                timed.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)
            })
            .await
            .expect("a datagram");
            assert_eq!(count, 1);
            assert!(
                meta[0].timestamp.is_some(),
                "the kernel gave no receive time"
            );
            let waited = wait.waited(9, sequence, since_epoch());
            seen.push(waited);
            if waited >= unread {
                break;
            }
        }
        let last = *seen.last().expect("read");
        assert!(
            last >= unread && last < unread + Duration::from_secs(2),
            "the packets waited {seen:?}, {unread:?} expected"
        );
    }
}
