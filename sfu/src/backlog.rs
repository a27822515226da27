//! How far a subscriber connection's sending lags behind the forwarder.
//!
//! The forwarder hands each copy of a packet to the subscriber's connection, whose event loop
//! (webrtc-rs) queues up to 256 events and sends them in turn. On a pod past its limit the
//! loops fall behind, and a full queue holds more than a second of media: latency would grow
//! long before anything is lost. So each connection keeps a [`Backlog`] of the packets handed
//! to it that its loop has not taken yet, oldest first: the forwarder notes each hand-over,
//! the connection's application-most interceptor (the first to see a written packet) notes
//! each departure, and the forwarder drops copies for a connection whose oldest waiting packet
//! has waited longer than a limit ([`Backlog::late`]). Dropping costs little, so a saturated
//! pod sheds work instead of queueing it, and what it sends stays recent. A connection that
//! lags also answers no NACK ([`Backlog::answers_nack`]): the subscribers' NACKs for what was
//! shed would otherwise bring retransmissions — more work exactly when there is too much —,
//! and no connection answers a NACK for a packet that left more than [`NACK_MAX_AGE`] ago
//! ([`Departures`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter};

/// What webrtc-rs 0.21 queues per connection: more cannot be waiting.
const CAPACITY: usize = 256;

/// When a connection counts as late: its oldest waiting packet waited longer than `wait`, or
/// `depth` packets wait (a subscriber of many publishers fills the stack's 256-event queue in
/// a fraction of `wait`; shedding before it is full keeps the drops whole frames rather than
/// the queue's random gaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The longest the oldest waiting packet may have waited.
    pub wait: Duration,
    /// The most packets that may wait.
    pub depth: usize,
}

/// Video: a picture this late is worth less than the CPU it costs.
pub const VIDEO_LIMIT: Limit = Limit {
    wait: Duration::from_millis(200),
    depth: 160,
};
/// Audio is worth more: when a connection falls behind, its video is shed first, which frees
/// the queue for the audio behind it.
pub const AUDIO_LIMIT: Limit = Limit {
    wait: Duration::from_millis(400),
    depth: 224,
};
/// A connection this late answers no NACK: a retransmission would queue behind the rest and
/// arrive too late to be played, and answering NACKs on a pod past its limit is how it would
/// spiral (every loss brings more work).
pub const NACK_LIMIT: Limit = Limit {
    wait: Duration::from_millis(100),
    depth: 128,
};
/// Older than this, an entry is no packet that waits (see [`Backlog::late`]).
const STALE: Duration = Duration::from_secs(2);

/// How long ago a packet may have left for a NACK of it to be answered. Later, the
/// retransmission reaches a receiver whose jitter buffer has moved on — it would decode nothing
/// with it — and on a pod past its limit it costs as much as a new packet: the retransmissions
/// answered seconds late were the tail of the end-to-end latency past the knee.
pub const NACK_MAX_AGE: Duration = Duration::from_secs(1);
/// Packets per stream whose departure [`Departures`] remembers (a power of two, so that the
/// slot of a sequence number stays the same across its wraparound).
const DEPARTURES: usize = 512;

/// When a subscriber connection's recent RTP packets left, by SSRC and sequence number: 4 KiB
/// per stream.
#[derive(Debug)]
pub struct Departures {
    epoch: Instant,
    /// Per SSRC, by sequence number modulo [`DEPARTURES`]: the sequence number and when it
    /// left, in milliseconds after `epoch` plus one (0: empty).
    streams: HashMap<u32, Box<[(u16, u32); DEPARTURES]>>,
}

impl Departures {
    /// Departures counted from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            streams: HashMap::new(),
        }
    }

    /// Packet `sequence` of `ssrc` left at `at`; a retransmission keeps the first departure.
    pub fn note(&mut self, ssrc: u32, sequence: u16, at: Instant) {
        let millis = u32::try_from(at.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u32::MAX - 1)
            + 1;
        let ring = self
            .streams
            .entry(ssrc)
            .or_insert_with(|| Box::new([(0, 0); DEPARTURES]));
        let slot = &mut ring[usize::from(sequence) % DEPARTURES];
        if slot.1 == 0 || slot.0 != sequence {
            *slot = (sequence, millis);
        }
    }

    /// Whether packet `sequence` of `ssrc` left no longer than [`NACK_MAX_AGE`] before `now`
    /// (a packet not remembered is older than the last [`DEPARTURES`] of its stream).
    pub fn recent(&self, ssrc: u32, sequence: u16, now: Instant) -> bool {
        let Some(ring) = self.streams.get(&ssrc) else {
            return false;
        };
        let (seq, millis) = ring[usize::from(sequence) % DEPARTURES];
        if millis == 0 || seq != sequence {
            return false;
        }
        let left = self.epoch + Duration::from_millis(u64::from(millis - 1));
        now.saturating_duration_since(left) <= NACK_MAX_AGE
    }

    /// The stream of `ssrc` ended.
    pub fn forget(&mut self, ssrc: u32) {
        self.streams.remove(&ssrc);
    }
}

/// Packets handed to one subscriber connection and not yet taken by its event loop.
#[derive(Debug, Default)]
pub struct Backlog {
    inner: Mutex<Inner>,
    /// `conclave_sfu_subscriber_queue_seconds`: how long each departed packet waited.
    waited: Option<Histogram>,
    /// `conclave_sfu_nacks_ignored_total`.
    nacks_ignored: Option<IntCounter>,
}

#[derive(Debug, Default)]
struct Inner {
    waiting: VecDeque<Handed>,
    /// When [`Backlog::late`] last said yes.
    lagged: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Handed {
    ssrc: u32,
    sequence: u16,
    at: Instant,
}

impl Backlog {
    /// A backlog that reports how long each packet waited to `waited`, and counts the NACKs
    /// its connection ignores in `nacks_ignored`.
    pub fn observed(waited: Histogram, nacks_ignored: IntCounter) -> Self {
        Self {
            inner: Mutex::default(),
            waited: Some(waited),
            nacks_ignored: Some(nacks_ignored),
        }
    }

    /// Whether the connection answers a NACK that arrives at `now` (see [`NACK_LIMIT`]);
    /// counts the ones it does not.
    pub fn answers_nack(&self, now: Instant) -> bool {
        let answers = !self.late(now, NACK_LIMIT);
        if !answers {
            self.ignore_nack();
        }
        answers
    }

    /// Counts a NACK the connection does not answer, or answers only in part (packets it asks
    /// for left too long ago, see [`Departures`]).
    pub fn ignore_nack(&self) {
        if let Some(ignored) = &self.nacks_ignored {
            ignored.inc();
        }
    }

    /// The forwarder handed the connection a packet at `at`.
    pub fn handed(&self, ssrc: u32, sequence: u16, at: Instant) {
        let mut inner = self.inner.lock();
        if inner.waiting.len() >= CAPACITY {
            // Only a packet the stack refused without sending can be this far behind.
            inner.waiting.pop_front();
        }
        inner.waiting.push_back(Handed { ssrc, sequence, at });
    }

    /// The connection's loop took a packet at `at`. Packets handed before it that never
    /// departed were refused by the stack (a payload type a renegotiation removed, say):
    /// they are forgotten with it.
    pub fn departed(&self, ssrc: u32, sequence: u16, at: Instant) {
        let mut inner = self.inner.lock();
        // Nearly always the first.
        if let Some(position) = inner
            .waiting
            .iter()
            .position(|h| h.ssrc == ssrc && h.sequence == sequence)
        {
            let handed = inner.waiting[position].at;
            inner.waiting.drain(..=position);
            drop(inner);
            if let Some(waited) = &self.waited {
                waited.observe(at.saturating_duration_since(handed).as_secs_f64());
            }
        }
    }

    /// Whether a packet given to the connection at `now` would wait behind one that has
    /// waited longer than `limit.wait`, or behind `limit.depth` others.
    ///
    /// An entry older than [`STALE`] is forgotten first: it is a packet the stack refused
    /// without sending (after a pause nothing departed to clear it), since the forwarder
    /// stops handing packets to a connection long before its queue is that old — or the
    /// connection's loop has stopped altogether, and then its queue's own bound applies.
    pub fn late(&self, now: Instant, limit: Limit) -> bool {
        self.late_after(now, Duration::ZERO, limit)
    }

    /// [`Backlog::late`] for a packet that had already waited `waited` before the forwarder
    /// got it (in the kernel and in webrtc-rs, on a pod that reads its publishers late:
    /// `crate::arrival`): it is late when that alone passes `limit.wait`, or when it would
    /// wait behind a packet that waited longer than what remains of it.
    pub fn late_after(&self, now: Instant, waited: Duration, limit: Limit) -> bool {
        let remains = limit.wait.saturating_sub(waited);
        let mut inner = self.inner.lock();
        while inner
            .waiting
            .front()
            .is_some_and(|oldest| now.saturating_duration_since(oldest.at) > STALE)
        {
            inner.waiting.pop_front();
        }
        let late = waited > limit.wait
            || inner.waiting.len() >= limit.depth
            || inner
                .waiting
                .front()
                .is_some_and(|oldest| now.saturating_duration_since(oldest.at) > remains);
        if late {
            inner.lagged = Some(now);
        }
        late
    }

    /// Whether the connection was late (for any limit) within `window` before `now`: the
    /// pod cannot send it everything, and it gets the lowest simulcast layers, which cost a
    /// fraction of the packets.
    pub fn lagged_within(&self, window: Duration, now: Instant) -> bool {
        self.inner
            .lock()
            .lagged
            .is_some_and(|at| now.saturating_duration_since(at) <= window)
    }

    /// A new connection: nothing of the old one is waiting.
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.waiting.clear();
        inner.lagged = None;
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_nack_is_answered_only_for_packets_that_left_recently() {
        let t0 = Instant::now();
        let mut departures = Departures::new(t0);
        departures.note(7, 100, t0);
        departures.note(7, 101, t0 + 500 * MS);
        let now = t0 + 1200 * MS;
        assert!(!departures.recent(7, 100, now), "1.2 s ago");
        assert!(departures.recent(7, 101, now), "0.7 s ago");
        assert!(!departures.recent(7, 102, now), "never sent");
        assert!(!departures.recent(8, 101, now), "another stream");
        // A retransmission keeps the first departure.
        departures.note(7, 101, now);
        assert!(!departures.recent(7, 101, t0 + 1600 * MS));
    }

    #[test]
    fn departures_keep_the_last_512_packets_of_a_stream_across_the_wraparound() {
        let t0 = Instant::now();
        let mut departures = Departures::new(t0);
        for i in 0..600u32 {
            let sequence = (65_300 + i) as u16;
            departures.note(1, sequence, t0 + i * MS);
        }
        let now = t0 + 600 * MS;
        let last = (65_300u32 + 599) as u16;
        assert!(departures.recent(1, last, now));
        assert!(departures.recent(1, last.wrapping_sub(511), now));
        assert!(
            !departures.recent(1, last.wrapping_sub(512), now),
            "overwritten"
        );
        departures.forget(1);
        assert!(!departures.recent(1, last, now));
    }

    #[test]
    fn a_connection_that_keeps_up_is_never_late() {
        let backlog = Backlog::default();
        let start = Instant::now();
        for n in 0..1000u16 {
            let at = start + MS * u32::from(n) * 6;
            backlog.handed(1, n, at);
            backlog.departed(1, n, at + MS);
            assert!(!backlog.late(at + MS * 5, VIDEO_LIMIT));
        }
        assert!(backlog.is_empty());
    }

    #[test]
    fn a_packet_that_waited_before_the_forwarder_got_it_counts_that_wait() {
        let backlog = Backlog::default();
        let start = Instant::now();
        // Nothing waits: only the packet's own wait before it was read can make it late.
        assert!(!backlog.late_after(start, MS * 150, VIDEO_LIMIT));
        assert!(backlog.late_after(start, MS * 250, VIDEO_LIMIT));
        assert!(backlog.lagged_within(Duration::from_secs(5), start));
        // A packet handed 100 ms ago still waits: alone not late, but a packet that already
        // waited 150 ms would wait behind it for longer than the 50 ms it has left.
        let backlog = Backlog::default();
        backlog.handed(3, 1, start);
        let now = start + MS * 100;
        assert!(!backlog.late_after(now, Duration::ZERO, VIDEO_LIMIT));
        assert!(!backlog.late_after(now, MS * 90, VIDEO_LIMIT));
        assert!(backlog.late_after(now, MS * 150, VIDEO_LIMIT));
    }

    #[test]
    fn a_connection_whose_oldest_packet_waited_too_long_is_late_until_it_catches_up() {
        let backlog = Backlog::default();
        let start = Instant::now();
        // 100 packets over 100 ms; its loop takes one every 6 ms.
        for n in 0..100u16 {
            backlog.handed(7, n, start + MS * u32::from(n));
        }
        let mut now = start;
        let mut taken = 0u16;
        while taken < 50 {
            now += MS * 6;
            backlog.departed(7, taken, now);
            taken += 1;
        }
        // Packet 50 was handed at 50 ms and still waits at 300 ms.
        assert!(backlog.late(now, VIDEO_LIMIT), "{:?}", now - start);
        assert!(backlog.late(
            now,
            Limit {
                wait: MS * 240,
                depth: 256
            }
        ));
        assert!(!backlog.late(
            now,
            Limit {
                wait: MS * 300,
                depth: 256
            }
        ));
        // The loop catches up.
        for n in taken..100 {
            backlog.departed(7, n, now + MS);
        }
        assert!(backlog.is_empty());
        assert!(!backlog.late(now + MS * 2, VIDEO_LIMIT));
    }

    #[test]
    fn a_packet_the_stack_refused_is_cleared_by_the_next_departure() {
        let backlog = Backlog::default();
        let start = Instant::now();
        backlog.handed(1, 10, start);
        // Refused: it never departs; the next one does.
        backlog.handed(1, 11, start + MS);
        backlog.departed(1, 11, start + MS * 2);
        assert!(backlog.is_empty(), "the refused packet went with it");
        assert!(!backlog.late(start + Duration::from_secs(1), VIDEO_LIMIT));
    }

    #[test]
    fn a_packet_the_stack_refused_before_a_pause_does_not_make_the_connection_late_for_ever() {
        let backlog = Backlog::default();
        let start = Instant::now();
        backlog.handed(1, 10, start);
        backlog.departed(1, 10, start + MS);
        // Refused: it never departs. Then nothing, while the forwarder holds back.
        backlog.handed(1, 11, start + MS * 2);
        assert!(backlog.late(start + Duration::from_secs(1), VIDEO_LIMIT));
        let later = start + STALE + MS * 3;
        assert!(
            !backlog.late(later, VIDEO_LIMIT),
            "no queue is that old: the next packet is handed"
        );
        backlog.handed(1, 12, later);
        backlog.departed(1, 12, later + MS);
        assert!(backlog.is_empty());
    }

    #[test]
    fn a_connection_that_lags_answers_no_nack() {
        let ignored = IntCounter::new("n", "n").expect("counter");
        let backlog = Backlog::observed(
            Histogram::with_opts(prometheus::HistogramOpts::new("w", "w")).expect("histogram"),
            ignored.clone(),
        );
        let start = Instant::now();
        backlog.handed(1, 0, start);
        assert!(backlog.answers_nack(start + MS * 50));
        assert!(!backlog.answers_nack(start + MS * 150));
        assert_eq!(ignored.get(), 1);
        backlog.departed(1, 0, start + MS * 160);
        assert!(backlog.answers_nack(start + MS * 170));
        assert_eq!(ignored.get(), 1);
    }

    #[test]
    fn a_connection_that_was_late_is_remembered_as_lagging_for_a_while() {
        let backlog = Backlog::default();
        let start = Instant::now();
        backlog.handed(1, 0, start);
        assert!(!backlog.late(start + MS * 100, VIDEO_LIMIT));
        assert!(!backlog.lagged_within(Duration::from_secs(5), start + MS * 100));
        assert!(backlog.late(start + MS * 300, VIDEO_LIMIT));
        backlog.departed(1, 0, start + MS * 310);
        assert!(!backlog.late(start + MS * 320, VIDEO_LIMIT));
        assert!(backlog.lagged_within(Duration::from_secs(5), start + MS * 320));
        assert!(!backlog.lagged_within(Duration::from_secs(5), start + Duration::from_secs(6)));
    }

    #[test]
    fn the_backlog_never_holds_more_than_the_stacks_queue() {
        let backlog = Backlog::default();
        let start = Instant::now();
        for n in 0..300u16 {
            backlog.handed(3, n, start + MS * u32::from(n));
        }
        assert_eq!(backlog.len(), CAPACITY);
        assert!(backlog.late(start + MS * 300, VIDEO_LIMIT));
    }

    #[test]
    fn a_connection_with_many_packets_waiting_is_late_however_recent_they_are() {
        let backlog = Backlog::default();
        let start = Instant::now();
        // 2 000 packets a second: a subscriber of many cameras.
        for n in 0..159u16 {
            backlog.handed(4, n, start + Duration::from_micros(500) * u32::from(n));
        }
        let now = start + MS * 80;
        assert!(!backlog.late(now, VIDEO_LIMIT));
        backlog.handed(4, 159, now);
        assert!(backlog.late(now, VIDEO_LIMIT), "160 wait");
        assert!(!backlog.late(now, AUDIO_LIMIT), "audio still goes");
        assert!(backlog.late(now, NACK_LIMIT));
    }

    #[test]
    fn each_departure_reports_how_long_its_packet_waited() {
        let waited = Histogram::with_opts(
            prometheus::HistogramOpts::new("w", "w").buckets(vec![0.001, 0.01, 0.1]),
        )
        .expect("histogram");
        let backlog =
            Backlog::observed(waited.clone(), IntCounter::new("n", "n").expect("counter"));
        let start = Instant::now();
        backlog.handed(1, 0, start);
        backlog.handed(1, 1, start);
        backlog.departed(1, 0, start + MS * 5);
        backlog.departed(1, 1, start + MS * 50);
        // Not handed by the forwarder (a retransmission, say): not counted.
        backlog.departed(1, 9, start + MS * 60);
        assert_eq!(waited.get_sample_count(), 2);
        assert!((waited.get_sample_sum() - 0.055).abs() < 1e-9);
    }

    #[test]
    fn a_new_connection_starts_with_nothing_waiting() {
        let backlog = Backlog::default();
        let start = Instant::now();
        backlog.handed(5, 1, start);
        backlog.departed(5, 0, start);
        backlog.clear();
        assert!(backlog.is_empty());
        assert!(!backlog.late(start + Duration::from_secs(5), VIDEO_LIMIT));
    }
}
