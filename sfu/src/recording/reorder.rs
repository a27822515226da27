//! Puts one track's RTP packets back in sequence order before they are written: packets that
//! arrive out of order (or as retransmissions after a NACK) wait a moment for the ones before
//! them; a packet still missing after [`Reorder::new`]'s wait, or when too many wait behind it,
//! is given up as lost.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use rtc::rtp::Packet;

/// A jump of sequence numbers beyond this is a restarted stream, not loss.
const RESTART_JUMP: u64 = 3000;

/// What comes out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Ordered {
    /// The next packet, and when it arrived.
    Packet(Packet, DateTime<Utc>),
    /// Packets given up as lost before the next one.
    Lost(u64),
}

/// The reorder buffer of one track.
#[derive(Debug)]
pub struct Reorder {
    wait: TimeDelta,
    max_held: usize,
    /// The extended sequence number expected next.
    next: Option<u64>,
    /// The highest extended sequence number seen (to unwrap the next one against).
    highest: u64,
    held: BTreeMap<u64, (Packet, DateTime<Utc>)>,
    /// Duplicates and packets that came after they were given up.
    late: u64,
}

impl Reorder {
    /// Holds packets at most `wait` for a missing one, and at most `max_held` of them.
    pub fn new(wait: TimeDelta, max_held: usize) -> Self {
        Self {
            wait,
            max_held: max_held.max(1),
            next: None,
            highest: 0,
            held: BTreeMap::new(),
            late: 0,
        }
    }

    /// Duplicates and packets that arrived after they were given up as lost.
    pub fn late(&self) -> u64 {
        self.late
    }

    fn extend(&mut self, seq: u16) -> u64 {
        if self.next.is_none() && self.held.is_empty() {
            // Start high enough that a slightly older packet still unwraps above zero.
            self.highest = (1 << 32) + u64::from(seq);
            return self.highest;
        }
        let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        let extended = self.highest.saturating_add_signed(delta);
        self.highest = self.highest.max(extended);
        extended
    }

    /// A packet arrived at `at`.
    pub fn push(&mut self, packet: Packet, at: DateTime<Utc>) -> Vec<Ordered> {
        let seq = self.extend(packet.header.sequence_number);
        let next = *self.next.get_or_insert(seq);
        let mut out = Vec::new();
        if seq < next || self.held.contains_key(&seq) {
            self.late += 1;
            return out;
        }
        if seq - next > RESTART_JUMP {
            // The sender restarted its numbering: what waits is given up, the stream goes on.
            self.release_all(&mut out);
            self.next = Some(seq);
        }
        self.held.insert(seq, (packet, at));
        self.release(at, &mut out);
        out
    }

    /// Time passed: gives up packets waited for too long.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Ordered> {
        let mut out = Vec::new();
        self.release(now, &mut out);
        out
    }

    /// Everything held, in order (the recording stops).
    pub fn flush(&mut self) -> Vec<Ordered> {
        let mut out = Vec::new();
        self.release_all(&mut out);
        out
    }

    fn release_all(&mut self, out: &mut Vec<Ordered>) {
        while let Some((seq, (packet, at))) = self.held.pop_first() {
            self.emit(seq, packet, at, out);
        }
    }

    fn emit(&mut self, seq: u64, packet: Packet, at: DateTime<Utc>, out: &mut Vec<Ordered>) {
        if let Some(next) = self.next
            && seq > next
        {
            out.push(Ordered::Lost(seq - next));
        }
        self.next = Some(seq + 1);
        out.push(Ordered::Packet(packet, at));
    }

    fn release(&mut self, now: DateTime<Utc>, out: &mut Vec<Ordered>) {
        loop {
            let Some((&first, (_, arrived))) = self.held.first_key_value() else {
                return;
            };
            let in_order = Some(first) == self.next;
            let waited_enough = now - *arrived >= self.wait;
            if !(in_order || waited_enough || self.held.len() > self.max_held) {
                return;
            }
            if let Some((seq, (packet, at))) = self.held.pop_first() {
                self.emit(seq, packet, at, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    fn packet(seq: u16) -> Packet {
        let mut packet = Packet::default();
        packet.header.sequence_number = seq;
        packet
    }

    fn seqs(out: &[Ordered]) -> Vec<i64> {
        out.iter()
            .map(|o| match o {
                Ordered::Packet(p, _) => i64::from(p.header.sequence_number),
                Ordered::Lost(n) => -(*n as i64),
            })
            .collect()
    }

    #[test]
    fn packets_out_of_order_come_out_in_order() {
        let mut reorder = Reorder::new(TimeDelta::milliseconds(200), 100);
        assert_eq!(seqs(&reorder.push(packet(65534), at(0))), vec![65534]);
        assert!(
            reorder.push(packet(0), at(1)).is_empty(),
            "65535 is missing"
        );
        assert_eq!(
            seqs(&reorder.push(packet(65535), at(2))),
            vec![65535, 0],
            "across the wrap"
        );
        assert!(reorder.push(packet(65535), at(3)).is_empty(), "a duplicate");
        assert_eq!(reorder.late(), 1);
    }

    #[test]
    fn a_missing_packet_is_given_up_after_the_wait_or_when_too_many_wait() {
        let mut reorder = Reorder::new(TimeDelta::milliseconds(200), 3);
        reorder.push(packet(10), at(0));
        assert!(reorder.push(packet(12), at(10)).is_empty());
        assert!(reorder.tick(at(100)).is_empty());
        assert_eq!(seqs(&reorder.tick(at(210))), vec![-1, 12]);
        assert!(reorder.push(packet(11), at(220)).is_empty(), "too late");

        reorder.push(packet(14), at(300));
        reorder.push(packet(15), at(300));
        reorder.push(packet(16), at(300));
        assert_eq!(
            seqs(&reorder.push(packet(17), at(300))),
            vec![-1, 14, 15, 16, 17],
            "four wait behind 13: it is given up"
        );
    }

    #[test]
    fn a_restarted_stream_goes_on_and_a_flush_empties_the_buffer() {
        let mut reorder = Reorder::new(TimeDelta::milliseconds(200), 100);
        reorder.push(packet(100), at(0));
        reorder.push(packet(102), at(0));
        assert_eq!(
            seqs(&reorder.push(packet(30000), at(1))),
            vec![-1, 102, 30000]
        );
        reorder.push(packet(30002), at(2));
        assert_eq!(seqs(&reorder.flush()), vec![-1, 30002]);
    }
}
