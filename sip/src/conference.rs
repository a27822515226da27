//! The room's audio for the phones in it: one [`Conference`] per meeting that has callers,
//! shared by all its calls ([`Conferences`]).
//!
//! The SFU sends every track to every session, so a track's packets reach the gateway once per
//! call in the meeting. The conference takes each packet once (by its RTP sequence number),
//! orders it in a jitter buffer, decodes it with libopus straight to 8 kHz (libopus converts
//! the rate itself; a lost packet is concealed from the next packet's in-band FEC, or by Opus's
//! packet-loss concealment), sums every source once per 20 ms, and hands each call the sum
//! minus its own voice. So each track is decoded once per meeting, the mix is made once per
//! meeting, and only the G.711 encoding is per call.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::ConferenceId;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Samples per second of the mix (G.711's rate).
pub const RATE: u32 = 8_000;
/// Samples in one 20 ms frame at [`RATE`].
pub const FRAME: usize = 160;
/// Packets a source must have buffered before it is heard (40 ms against arrival jitter).
const PRIME: usize = 2;
/// Packets a source may buffer; beyond that the oldest are skipped (300 ms).
const MAX_BUFFERED: usize = 15;
/// A packet this far ahead of the one expected means the sender started over.
const MAX_AHEAD: u16 = 100;
/// Frames concealed when a source runs dry before it counts as silent.
const CONCEAL: u32 = 3;
/// A source not heard from this long is forgotten (its decoder freed).
const IDLE: Duration = Duration::from_secs(2);
/// Frames a call may have waiting; older ones are dropped (the call fell behind).
const MEMBER_QUEUE: usize = 3;

/// What became of a packet offered to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Buffered, to be decoded when its turn comes.
    Buffered,
    /// The same packet came through another call: dropped.
    Duplicate,
    /// Its turn had passed: dropped.
    Late,
}

/// What the jitter buffer gives for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// The next packet in order.
    Packet(Bytes),
    /// The next packet is missing: conceal it, from `fec` (the packet after it, whose in-band
    /// FEC carries a copy) when there is one.
    Lost { fec: Option<Bytes> },
    /// Nothing to play: not primed yet, or silent.
    Idle,
}

/// Orders one source's packets by sequence number.
#[derive(Debug, Default)]
struct Jitter {
    next: Option<u16>,
    packets: BTreeMap<u16, Bytes>,
    primed: bool,
    dry: u32,
}

impl Jitter {
    fn push(&mut self, sequence: u16, payload: Bytes) -> Arrival {
        if let Some(next) = self.next {
            let ahead = sequence.wrapping_sub(next);
            if ahead >= 0x8000 {
                return Arrival::Late;
            }
            if ahead >= MAX_AHEAD {
                self.packets.clear();
                self.primed = false;
                self.next = Some(sequence);
            }
        } else {
            self.next = Some(sequence);
        }
        if self.packets.contains_key(&sequence) {
            return Arrival::Duplicate;
        }
        self.packets.insert(sequence, payload);
        while self.packets.len() > MAX_BUFFERED {
            let oldest = self.oldest();
            self.packets.remove(&oldest);
            self.next = Some(oldest.wrapping_add(1));
        }
        Arrival::Buffered
    }

    /// The buffered sequence number closest after `next` (wrapping).
    fn oldest(&self) -> u16 {
        let next = self.next.unwrap_or(0);
        self.packets
            .keys()
            .copied()
            .min_by_key(|s| s.wrapping_sub(next))
            .unwrap_or(next)
    }

    fn pop(&mut self) -> Step {
        if !self.primed {
            if self.packets.len() < PRIME {
                return Step::Idle;
            }
            self.primed = true;
            self.next = Some(self.oldest());
        }
        let Some(next) = self.next else {
            return Step::Idle;
        };
        if let Some(packet) = self.packets.remove(&next) {
            self.next = Some(next.wrapping_add(1));
            self.dry = 0;
            return Step::Packet(packet);
        }
        if self.packets.is_empty() {
            // Ran dry: conceal a little, then wait for a new cushion. The expected number
            // stays, so a sender that only paused (muted, DTX) goes on seamlessly.
            self.dry += 1;
            if self.dry > CONCEAL {
                self.primed = false;
                return Step::Idle;
            }
            return Step::Lost { fec: None };
        }
        // A hole with later packets behind it: that one is lost.
        let after = next.wrapping_add(1);
        self.next = Some(after);
        Step::Lost {
            fec: self.packets.get(&after).cloned(),
        }
    }
}

/// One track of the room: its jitter buffer, decoder and decoded samples.
struct Source {
    jitter: Jitter,
    decoder: opus::Decoder,
    pcm: VecDeque<i16>,
    heard: Instant,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

/// Counts of what the sources did, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Packets decoded.
    pub decoded: u64,
    /// Packets that arrived again through another call.
    pub duplicates: u64,
    /// Packets that came after their turn.
    pub late: u64,
    /// Frames concealed (lost packets).
    pub concealed: u64,
}

impl Source {
    fn new(now: Instant) -> Option<Source> {
        let decoder = opus::Decoder::new(RATE, opus::Channels::Mono)
            .map_err(|err| tracing::error!(cause = %err, "opus decoder"))
            .ok()?;
        Some(Source {
            jitter: Jitter::default(),
            decoder,
            pcm: VecDeque::with_capacity(4 * FRAME),
            heard: now,
        })
    }

    /// The next 20 ms, or `None` when the source is silent.
    fn frame(&mut self, counts: &mut Counts) -> Option<Vec<i16>> {
        // 120 ms, Opus's longest packet.
        let mut buf = [0i16; 6 * FRAME];
        while self.pcm.len() < FRAME {
            let decoded = match self.jitter.pop() {
                Step::Idle => break,
                Step::Packet(packet) => {
                    counts.decoded += 1;
                    self.decoder.decode(&packet, &mut buf, false)
                }
                Step::Lost { fec } => {
                    counts.concealed += 1;
                    let fec = fec.unwrap_or_default();
                    self.decoder
                        .decode(&fec, &mut buf[..FRAME], !fec.is_empty())
                }
            };
            match decoded {
                Ok(len) => self.pcm.extend(&buf[..len.min(buf.len())]),
                Err(err) => tracing::trace!(cause = %err, "undecodable audio packet"),
            }
        }
        if self.pcm.is_empty() {
            return None;
        }
        let take = FRAME.min(self.pcm.len());
        let mut frame: Vec<i16> = self.pcm.drain(..take).collect();
        frame.resize(FRAME, 0);
        Some(frame)
    }
}

/// A call's place in the conference.
#[derive(Debug)]
struct Slot {
    own: Option<String>,
    frames: mpsc::Sender<Option<Vec<i16>>>,
}

#[derive(Debug, Default)]
struct State {
    sources: HashMap<String, Source>,
    members: HashMap<u64, Slot>,
    next_member: u64,
    counts: Counts,
    /// The counts last added to the metrics.
    reported: Counts,
}

/// One meeting's audio for its phones.
#[derive(Debug)]
pub struct Conference {
    id: ConferenceId,
    state: Mutex<State>,
    metrics: Option<Metrics>,
}

impl Conference {
    /// A conference nobody drives: [`Conference::tick`] is called by hand (tests, benches).
    pub fn detached(id: ConferenceId, metrics: Option<Metrics>) -> Arc<Conference> {
        Arc::new(Conference {
            id,
            state: Mutex::new(State::default()),
            metrics,
        })
    }

    /// The meeting.
    pub fn id(&self) -> &ConferenceId {
        &self.id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offers one Opus packet of `track` (through any call's subscriber connection).
    pub fn push(&self, track: &str, sequence: u16, payload: Bytes) -> Arrival {
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        if !state.sources.contains_key(track) {
            let Some(source) = Source::new(now) else {
                return Arrival::Late;
            };
            state.sources.insert(track.to_owned(), source);
        }
        let Some(source) = state.sources.get_mut(track) else {
            return Arrival::Late;
        };
        let arrival = source.jitter.push(sequence, payload);
        match arrival {
            Arrival::Buffered => source.heard = now,
            Arrival::Duplicate => state.counts.duplicates += 1,
            Arrival::Late => state.counts.late += 1,
        }
        arrival
    }

    /// Forgets `track` (unpublished).
    pub fn forget(&self, track: &str) {
        self.state().sources.remove(track);
    }

    /// A new member; its frames come through the returned [`Member`].
    pub fn enter(self: &Arc<Self>) -> Member {
        let (tx, rx) = mpsc::channel(MEMBER_QUEUE);
        let mut state = self.state();
        let id = state.next_member;
        state.next_member += 1;
        state.members.insert(
            id,
            Slot {
                own: None,
                frames: tx,
            },
        );
        Member {
            conference: Arc::clone(self),
            id,
            frames: rx,
        }
    }

    /// What the sources did so far.
    pub fn counts(&self) -> Counts {
        self.state().counts
    }

    /// Calls in the conference.
    pub fn members(&self) -> usize {
        self.state().members.len()
    }

    /// One 20 ms step: every source's next frame, summed once, and each member's share (the
    /// sum minus its own voice; `None` when it hears nobody) queued for it.
    pub fn tick(&self) {
        let started = Instant::now();
        let mut state = self.state();
        let State {
            sources,
            members,
            counts,
            reported,
            ..
        } = &mut *state;
        let mut frames: Vec<(&str, Vec<i16>)> = Vec::with_capacity(sources.len());
        sources.retain(|_, source| source.heard.elapsed() < IDLE || !source.pcm.is_empty());
        for (name, source) in sources.iter_mut() {
            if let Some(frame) = source.frame(counts) {
                frames.push((name.as_str(), frame));
            }
        }
        let mut sum = [0i32; FRAME];
        for (_, frame) in &frames {
            for (acc, &sample) in sum.iter_mut().zip(frame) {
                *acc += i32::from(sample);
            }
        }
        for slot in members.values() {
            let own = frames
                .iter()
                .find(|(name, _)| slot.own.as_deref() == Some(*name))
                .map(|(_, frame)| frame);
            let heard = frames.len() > usize::from(own.is_some());
            let share = heard.then(|| {
                sum.iter()
                    .enumerate()
                    .map(|(i, &total)| {
                        let minus = own.map_or(0, |frame| i32::from(frame[i]));
                        (total - minus).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
                    })
                    .collect()
            });
            // A call that fell behind loses this frame rather than hear the room late.
            let _ = slot.frames.try_send(share);
        }
        if let Some(metrics) = &self.metrics {
            let (before, after) = (std::mem::replace(reported, *counts), *counts);
            let count = |label: &str, n: u64| {
                if n > 0 {
                    metrics.room_packets.with_label_values(&[label]).inc_by(n);
                }
            };
            count("decoded", after.decoded - before.decoded);
            count("duplicate", after.duplicates - before.duplicates);
            count("late", after.late - before.late);
            count("concealed", after.concealed - before.concealed);
            metrics.mix_seconds.observe(started.elapsed().as_secs_f64());
        }
    }

    fn leave(&self, member: u64) {
        self.state().members.remove(&member);
    }

    fn own(&self, member: u64, track: &str) {
        if let Some(slot) = self.state().members.get_mut(&member) {
            slot.own = Some(track.to_owned());
        }
    }
}

/// A call's membership: the room's frames for it, and the track that is its own voice.
/// Dropping it leaves the conference.
#[derive(Debug)]
pub struct Member {
    conference: Arc<Conference>,
    id: u64,
    frames: mpsc::Receiver<Option<Vec<i16>>>,
}

impl Member {
    /// The conference, to push the tracks this call's subscriber connection receives.
    pub fn conference(&self) -> &Arc<Conference> {
        &self.conference
    }

    /// `track` is this call's own voice in the room (it does not hear it back).
    pub fn set_own(&self, track: &str) {
        self.conference.own(self.id, track);
    }

    /// A handle that tells the conference this call's own track later (from the signaling
    /// task, which learns it when the SFU announces the track).
    pub fn own_handle(&self) -> OwnTrack {
        OwnTrack {
            conference: Arc::clone(&self.conference),
            member: self.id,
        }
    }

    /// The next 20 ms of the room for this call, or `None` when there is nothing to hear.
    pub fn next_frame(&mut self) -> Option<Vec<i16>> {
        self.frames.try_recv().ok().flatten()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.conference.leave(self.id);
    }
}

/// Names a call's own track to its conference; see [`Member::own_handle`].
#[derive(Debug, Clone)]
pub struct OwnTrack {
    conference: Arc<Conference>,
    member: u64,
}

impl OwnTrack {
    /// `track` is the call's own voice.
    pub fn set(&self, track: &str) {
        self.conference.own(self.member, track);
    }

    /// The conference.
    pub fn conference(&self) -> &Arc<Conference> {
        &self.conference
    }
}

/// Every conference with phones in it; each is mixed every 20 ms while it has members.
#[derive(Debug)]
pub struct Conferences {
    live: Mutex<HashMap<ConferenceId, Weak<Conference>>>,
    metrics: Metrics,
}

impl Conferences {
    /// No conferences yet.
    pub fn new(metrics: Metrics) -> Arc<Conferences> {
        Arc::new(Conferences {
            live: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Enters `id`'s conference, starting it (and its 20 ms mixing clock) for the first call.
    pub fn enter(self: &Arc<Self>, id: &ConferenceId) -> Member {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|_, conference| conference.strong_count() > 0);
        if let Some(conference) = live.get(id).and_then(Weak::upgrade) {
            return conference.enter();
        }
        let conference = Conference::detached(id.clone(), Some(self.metrics.clone()));
        live.insert(id.clone(), Arc::downgrade(&conference));
        let member = conference.enter();
        self.metrics.conferences.set(live.len() as i64);
        let clock = Arc::downgrade(&conference);
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                let Some(conference) = clock.upgrade() else {
                    break;
                };
                conference.tick();
            }
            if let Some(registry) = registry.upgrade() {
                let mut live = registry
                    .live
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                live.retain(|_, conference| conference.strong_count() > 0);
                registry.metrics.conferences.set(live.len() as i64);
            }
        });
        member
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone;

    /// 20 ms Opus packets of a sine.
    fn voice(frequency: f64, packets: usize) -> Vec<Bytes> {
        voice_at(frequency, packets, 8_000)
    }

    fn voice_at(frequency: f64, packets: usize, amplitude: i16) -> Vec<Bytes> {
        let mut encoder =
            opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip).expect("enc");
        let samples = tone::sine(frequency, RATE, FRAME * packets, amplitude);
        samples
            .chunks(FRAME)
            .map(|frame| Bytes::from(encoder.encode_vec(frame, 400).expect("encode")))
            .collect()
    }

    fn conference() -> Arc<Conference> {
        Conference::detached(ConferenceId::from("c"), None)
    }

    /// Ticks `n` times and gathers what `member` heard.
    fn hear(conference: &Conference, member: &mut Member, n: usize) -> Vec<i16> {
        let mut heard = Vec::new();
        for _ in 0..n {
            conference.tick();
            heard.extend(member.next_frame().unwrap_or_else(|| vec![0; FRAME]));
        }
        heard
    }

    #[test]
    fn a_packet_heard_through_several_calls_is_decoded_once() {
        let conference = conference();
        let mut member = conference.enter();
        let packets = voice(440.0, 10);
        for (i, packet) in packets.iter().enumerate() {
            for _call in 0..3 {
                conference.push("t1", 1000 + i as u16, packet.clone());
            }
        }
        let heard = hear(&conference, &mut member, 10);
        let counts = conference.counts();
        assert_eq!(counts.decoded, 10, "{counts:?}");
        assert_eq!(counts.duplicates, 20, "{counts:?}");
        assert_eq!(counts.concealed, 0, "{counts:?}");
        let tail = &heard[4 * FRAME..];
        assert!(
            tone::power(tail, RATE, 440.0) > 100.0 * tone::power(tail, RATE, 1_000.0),
            "the decoded source is the 440 Hz it was"
        );
    }

    #[test]
    fn packets_out_of_order_play_in_order_and_a_lost_one_is_concealed() {
        let mut jitter = Jitter::default();
        let p = |n: u8| Bytes::from(vec![n]);
        assert_eq!(jitter.push(65_535, p(1)), Arrival::Buffered);
        assert_eq!(jitter.pop(), Step::Idle, "one packet is no cushion");
        // 0 is lost; 2 comes before 1 (the sequence wraps).
        assert_eq!(jitter.push(2, p(4)), Arrival::Buffered);
        assert_eq!(jitter.push(1, p(3)), Arrival::Buffered);
        assert_eq!(jitter.pop(), Step::Packet(p(1)));
        assert_eq!(jitter.pop(), Step::Lost { fec: Some(p(3)) });
        assert_eq!(jitter.push(0, p(2)), Arrival::Late, "its turn has passed");
        assert_eq!(jitter.pop(), Step::Packet(p(3)));
        assert_eq!(jitter.push(1, p(3)), Arrival::Late);
        assert_eq!(jitter.push(2, p(4)), Arrival::Duplicate);
        assert_eq!(jitter.pop(), Step::Packet(p(4)));
        // Dry: concealed a little, then silent; a paused sender goes on where it stopped.
        for _ in 0..CONCEAL {
            assert_eq!(jitter.pop(), Step::Lost { fec: None });
        }
        assert_eq!(jitter.pop(), Step::Idle);
        jitter.push(3, p(5));
        jitter.push(4, p(6));
        assert_eq!(jitter.pop(), Step::Packet(p(5)));
        // A sender that started over far ahead is followed at once.
        jitter.push(30_000, p(7));
        jitter.push(30_001, p(8));
        assert_eq!(jitter.pop(), Step::Packet(p(7)));
    }

    #[test]
    fn a_flood_is_trimmed_to_the_newest_packets() {
        let mut jitter = Jitter::default();
        for n in 0..(MAX_BUFFERED as u16 + 5) {
            jitter.push(n, Bytes::from(vec![n as u8]));
        }
        assert_eq!(jitter.pop(), Step::Packet(Bytes::from(vec![5u8])));
    }

    #[test]
    fn a_lost_packet_is_concealed_with_sound_not_a_gap() {
        let conference = conference();
        let mut member = conference.enter();
        let packets = voice(440.0, 12);
        for (i, packet) in packets.iter().enumerate() {
            if i != 6 {
                conference.push("t1", i as u16, packet.clone());
            }
        }
        let heard = hear(&conference, &mut member, 12);
        assert_eq!(conference.counts().concealed, 1);
        let gap = &heard[6 * FRAME..7 * FRAME];
        assert!(
            tone::power(gap, RATE, 440.0) > 0.05 * tone::power(&heard[8 * FRAME..], RATE, 440.0),
            "the lost 20 ms carry the tone on"
        );
    }

    #[test]
    fn each_call_hears_the_others_but_not_itself() {
        let conference = conference();
        let mut alice = conference.enter();
        let mut bob = conference.enter();
        let mut carol = conference.enter();
        alice.set_own("a");
        bob.set_own("b");
        let (a, b) = (voice(440.0, 15), voice(1_000.0, 15));
        for i in 0..15 {
            conference.push("a", i as u16, a[i].clone());
            conference.push("b", i as u16, b[i].clone());
        }
        let mut heard = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..15 {
            conference.tick();
            for (member, heard) in [&mut alice, &mut bob, &mut carol]
                .into_iter()
                .zip(&mut heard)
            {
                heard.extend(member.next_frame().expect("someone is heard"));
            }
        }
        let power = |heard: &[i16], f: f64| tone::power(&heard[5 * FRAME..], RATE, f);
        assert!(power(&heard[0], 1_000.0) > 100.0 * power(&heard[0], 440.0));
        assert!(power(&heard[1], 440.0) > 100.0 * power(&heard[1], 1_000.0));
        assert!(power(&heard[2], 440.0) > 0.5 * power(&heard[2], 1_000.0));
        assert!(power(&heard[2], 1_000.0) > 0.5 * power(&heard[2], 440.0));
        assert_eq!(conference.counts().decoded, 30, "each source decoded once");
    }

    #[test]
    fn a_call_alone_hears_nothing_and_a_leaver_is_gone() {
        let conference = conference();
        let mut alone = conference.enter();
        alone.set_own("a");
        for (i, packet) in voice(440.0, 4).into_iter().enumerate() {
            conference.push("a", i as u16, packet);
        }
        conference.tick();
        assert_eq!(alone.next_frame(), None, "its own voice only");
        let other = conference.enter();
        assert_eq!(conference.members(), 2);
        drop(other);
        assert_eq!(conference.members(), 1);
    }

    #[test]
    fn loud_sources_are_clipped_not_wrapped() {
        let conference = conference();
        let mut member = conference.enter();
        for track in ["a", "b", "c"] {
            for (i, packet) in voice_at(440.0, 8, 20_000).into_iter().enumerate() {
                conference.push(track, i as u16, packet);
            }
        }
        let heard = hear(&conference, &mut member, 8);
        let peak = heard[4 * FRAME..].iter().copied().max().unwrap_or(0);
        let trough = heard[4 * FRAME..].iter().copied().min().unwrap_or(0);
        assert_eq!(
            peak,
            i16::MAX,
            "three loud sources in phase are clipped at the top"
        );
        assert_eq!(trough, i16::MIN, "and at the bottom, not wrapped");
    }
}
