//! Simulcast: which layer each subscriber gets, and the rewriting that makes a switch between
//! layers (or a pause and a resume) invisible to the subscriber's decoder.
//!
//! A publisher sends up to three encodings of its camera (RTP stream IDs `q`, `h`, `f`: a
//! quarter, half and full resolution). The SFU forwards one of them per subscriber and switches
//! only at a keyframe of the layer it switches to. Each subscriber's copy is one continuous
//! stream: sequence numbers, timestamps and, for VP8, the picture ID and TL0PICIDX go on from
//! the last packet it was sent, whatever layer the next one comes from.
//!
//! Everything here is pure: the forwarder feeds packets through a [`Rewriter`] per subscriber,
//! and the room's tick asks [`allocate`] which layer each subscriber should get.

use std::time::Instant;

use proto::signal::VideoLayer;

/// Layers a track may have: low, medium, high.
pub const LAYERS: usize = VideoLayer::ALL.len();

/// The layer index of a simulcast RTP stream ID (RFC 8852), lowest first: `q`, `h`, `f`
/// (the portal's, LiveKit's) or `0`, `1`, `2`. `None` for an unknown ID.
pub fn layer_of_rid(rid: &str) -> Option<usize> {
    match rid {
        "q" | "0" | "low" => Some(0),
        "h" | "1" | "mid" => Some(1),
        "f" | "2" | "high" => Some(2),
        _ => None,
    }
}

/// How a track's payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// VP8 (RFC 7741): keyframes and picture IDs are read and rewritten.
    Vp8,
    /// H.264 (RFC 6184): keyframes (IDR, SPS) are read; it has no picture ID.
    H264,
    /// Audio and anything else: every packet may start a stream.
    Other,
}

impl Codec {
    /// From a MIME type such as `video/VP8`.
    pub fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case("video/vp8") {
            Self::Vp8
        } else if mime.eq_ignore_ascii_case("video/h264") {
            Self::H264
        } else {
            Self::Other
        }
    }
}

/// The fields of a VP8 payload descriptor the SFU reads and rewrites (RFC 7741 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// The picture ID, and where it sits: (value, offset in the payload, 15 bits wide).
    pub picture_id: Option<(u16, usize, bool)>,
    /// TL0PICIDX and its offset.
    pub tl0: Option<(u8, usize)>,
    /// The first packet of a partition (S bit).
    pub start: bool,
    /// The partition index (PID).
    pub partition: u8,
    /// Where the VP8 payload (after the descriptor) begins.
    pub header_len: usize,
}

/// Reads a VP8 payload descriptor; `None` when the payload is too short for what it claims.
pub fn parse_vp8(payload: &[u8]) -> Option<Vp8Descriptor> {
    let first = *payload.first()?;
    let mut descriptor = Vp8Descriptor {
        start: first & 0x10 != 0,
        partition: first & 0x07,
        ..Vp8Descriptor::default()
    };
    let mut at = 1;
    if first & 0x80 != 0 {
        let extension = *payload.get(at)?;
        at += 1;
        if extension & 0x80 != 0 {
            let byte = *payload.get(at)?;
            if byte & 0x80 != 0 {
                let low = *payload.get(at + 1)?;
                descriptor.picture_id =
                    Some(((u16::from(byte & 0x7f) << 8) | u16::from(low), at, true));
                at += 2;
            } else {
                descriptor.picture_id = Some((u16::from(byte), at, false));
                at += 1;
            }
        }
        if extension & 0x40 != 0 {
            descriptor.tl0 = Some((*payload.get(at)?, at));
            at += 1;
        }
        if extension & 0x30 != 0 {
            payload.get(at)?;
            at += 1;
        }
    }
    descriptor.header_len = at;
    Some(descriptor)
}

/// Whether `payload` begins a keyframe: the first packet of a VP8 keyframe, or an H.264
/// packet carrying an IDR slice or a sequence parameter set (alone, aggregated in a STAP-A,
/// or at the start of a FU-A). Other codecs: always (audio needs no keyframe).
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => parse_vp8(payload).is_some_and(|d| {
            d.start
                && d.partition == 0
                && payload.get(d.header_len).is_some_and(|tag| tag & 0x01 == 0)
        }),
        Codec::H264 => h264_keyframe(payload),
        Codec::Other => true,
    }
}

fn h264_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    match first & 0x1f {
        24 => {
            // STAP-A: 16-bit sizes, each followed by a NAL unit.
            let mut at = 1;
            while at + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if key(payload[at + 2] & 0x1f) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1f)),
        nal_type => key(nal_type),
    }
}

/// The frame size a VP8 keyframe announces (RFC 6386 §9.1), from its first packet.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let descriptor = parse_vp8(payload)?;
    let frame = payload.get(descriptor.header_len..)?;
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// What a forwarded packet becomes for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Its sequence number.
    pub sequence: u16,
    /// Its timestamp.
    pub timestamp: u32,
    /// VP8 only: the picture ID and TL0PICIDX to write, when they differ from the packet's.
    pub vp8: Option<Vp8Rewrite>,
}

/// New values for a VP8 descriptor's picture ID and TL0PICIDX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Rewrite {
    /// Added to the picture ID (modulo its width).
    pub picture_offset: u16,
    /// Added to TL0PICIDX (modulo 256).
    pub tl0_offset: u8,
}

impl Vp8Rewrite {
    /// Writes the new picture ID and TL0PICIDX into `payload` (a copy of the packet's).
    pub fn apply(&self, descriptor: &Vp8Descriptor, payload: &mut [u8]) {
        if let Some((id, at, wide)) = descriptor.picture_id {
            let id = id.wrapping_add(self.picture_offset);
            if wide {
                let id = id & 0x7fff;
                payload[at] = 0x80 | (id >> 8) as u8;
                payload[at + 1] = (id & 0xff) as u8;
            } else {
                payload[at] = (id & 0x7f) as u8;
            }
        }
        if let Some((tl0, at)) = descriptor.tl0 {
            payload[at] = tl0.wrapping_add(self.tl0_offset);
        }
    }
}

/// The last packet a subscriber was sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    sequence: u16,
    timestamp: u32,
    picture_id: Option<u16>,
    tl0: Option<u8>,
    at: Instant,
}

/// Packets of the new layer older than its first forwarded one are dropped for this many
/// packets after a switch (later, sequence arithmetic would wrap).
const SWITCH_GUARD: u32 = 1024;

/// One subscriber's view of one published track: which layer it is being sent, and the
/// offsets that make what it receives one continuous stream.
#[derive(Debug)]
pub struct Rewriter {
    current: Option<usize>,
    sequence_offset: u16,
    timestamp_offset: u32,
    picture_offset: u16,
    tl0_offset: u8,
    last: Option<Sent>,
    /// The input sequence number the current layer started at, for [`SWITCH_GUARD`] packets.
    guard: Option<(u16, u32)>,
    clock_rate: u32,
}

/// One packet as the rewriter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The layer it belongs to (0 for a track without simulcast... or its only layer).
    pub layer: usize,
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Whether it begins a keyframe ([`starts_keyframe`]).
    pub keyframe: bool,
    /// VP8: its descriptor.
    pub vp8: Option<&'a Vp8Descriptor>,
}

impl Rewriter {
    /// A rewriter for a track whose timestamps run at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            current: None,
            sequence_offset: 0,
            timestamp_offset: 0,
            picture_offset: 0,
            tl0_offset: 0,
            last: None,
            guard: None,
            clock_rate: clock_rate.max(1),
        }
    }

    /// The layer being forwarded now, if any.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Whether `packet` belongs to the frame it sent last (a frame's packets share a timestamp):
    /// stopping there would leave the subscriber half a picture.
    pub fn continues_frame(&self, packet: &Incoming<'_>) -> bool {
        self.current == Some(packet.layer)
            && self.last.is_some_and(|last| {
                last.timestamp == packet.timestamp.wrapping_add(self.timestamp_offset)
            })
    }

    /// What to send for `packet` when the subscriber should get `target` (`None`: nothing), or
    /// `None` to drop it. Switches to `target` at its next keyframe, keeping the current layer
    /// until then; stops at once when the target is nothing.
    pub fn rewrite(
        &mut self,
        packet: &Incoming<'_>,
        target: Option<usize>,
        now: Instant,
    ) -> Option<Rewrite> {
        let Some(target) = target else {
            self.current = None;
            return None;
        };
        if self.current != Some(packet.layer) {
            if packet.layer != target || !packet.keyframe {
                return None;
            }
            self.switch_to(packet, now);
        } else if let Some((start, count)) = &mut self.guard {
            if (packet.sequence.wrapping_sub(*start) as i16) < 0 {
                return None;
            }
            *count += 1;
            if *count >= SWITCH_GUARD {
                self.guard = None;
            }
        }
        let sequence = packet.sequence.wrapping_add(self.sequence_offset);
        let timestamp = packet.timestamp.wrapping_add(self.timestamp_offset);
        let picture_id = packet
            .vp8
            .and_then(|d| d.picture_id)
            .map(|(id, _, _)| id.wrapping_add(self.picture_offset) & 0x7fff);
        let tl0 = packet
            .vp8
            .and_then(|d| d.tl0)
            .map(|(tl0, _)| tl0.wrapping_add(self.tl0_offset));
        let newer = self
            .last
            .is_none_or(|last| (sequence.wrapping_sub(last.sequence) as i16) > 0);
        if newer {
            self.last = Some(Sent {
                sequence,
                timestamp,
                picture_id: picture_id.or(self.last.and_then(|l| l.picture_id)),
                tl0: tl0.or(self.last.and_then(|l| l.tl0)),
                at: now,
            });
        }
        let vp8 = (self.picture_offset != 0 || self.tl0_offset != 0)
            .then_some(Vp8Rewrite {
                picture_offset: self.picture_offset,
                tl0_offset: self.tl0_offset,
            })
            .filter(|_| packet.vp8.is_some());
        Some(Rewrite {
            sequence,
            timestamp,
            vp8,
        })
    }

    /// Starts forwarding `packet`'s layer so that it follows on from the last packet sent.
    fn switch_to(&mut self, packet: &Incoming<'_>, now: Instant) {
        self.current = Some(packet.layer);
        self.guard = Some((packet.sequence, 0));
        let Some(last) = self.last else {
            // The first packet ever: the publisher's own numbering.
            return;
        };
        self.sequence_offset = last.sequence.wrapping_add(1).wrapping_sub(packet.sequence);
        // The time since the last packet sent, at least one tick, in the track's clock.
        let elapsed = now.saturating_duration_since(last.at).as_secs_f64();
        let ticks = ((elapsed * f64::from(self.clock_rate)) as u32).max(1);
        self.timestamp_offset = last
            .timestamp
            .wrapping_add(ticks)
            .wrapping_sub(packet.timestamp);
        if let Some((id, _, _)) = packet.vp8.and_then(|d| d.picture_id) {
            self.picture_offset = match last.picture_id {
                Some(sent) => sent.wrapping_add(1).wrapping_sub(id) & 0x7fff,
                None => 0,
            };
        }
        if let Some((tl0, _)) = packet.vp8.and_then(|d| d.tl0) {
            self.tl0_offset = match last.tl0 {
                Some(sent) => sent.wrapping_add(1).wrapping_sub(tl0),
                None => 0,
            };
        }
    }
}

/// What the SFU knows of one layer of a published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerState {
    /// The publisher sends it (or did, before the SFU paused it).
    pub available: bool,
    /// Its bitrate in bits per second (measured, or a nominal figure).
    pub bitrate: u64,
    /// Its frame height (from its last keyframe), 0 when not known.
    pub height: u16,
}

/// Nominal bitrates of the three layers until one is measured.
pub const NOMINAL_BITRATE: [u64; LAYERS] = [150_000, 500_000, 1_500_000];
/// Nominal heights of the three layers until a keyframe tells.
pub const NOMINAL_HEIGHT: [u16; LAYERS] = [180, 360, 720];

/// One video track a subscriber receives, as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The track's layers.
    pub layers: [LayerState; LAYERS],
    /// Whether the subscriber shows it at all (a hidden tile gets no video).
    pub visible: bool,
    /// The tile's height in device pixels, when the subscriber said.
    pub height: Option<u32>,
    /// The highest layer the subscriber asked for (`setVideoLayer`).
    pub cap: usize,
    /// The track belongs to the active speaker (gets the high layer when it fits).
    pub speaker: bool,
}

impl Wanted {
    fn available(&self) -> impl Iterator<Item = usize> + '_ {
        (0..LAYERS).filter(|&l| self.layers[l].available && l <= self.cap)
    }

    fn height_of(&self, layer: usize) -> u32 {
        match self.layers[layer].height {
            0 => u32::from(NOMINAL_HEIGHT[layer]),
            h => u32::from(h),
        }
    }

    /// The layer's bitrate, measured or nominal.
    pub fn bitrate_of(&self, layer: usize) -> u64 {
        match self.layers[layer].bitrate {
            0 => NOMINAL_BITRATE[layer],
            b => b,
        }
    }

    /// The layer the subscriber would get with bandwidth to spare: the smallest that fills the
    /// tile (or the largest there is), the largest for the active speaker.
    fn ideal(&self) -> Option<usize> {
        let lowest = self.available().next()?;
        let highest = self.available().last()?;
        if self.speaker {
            return Some(highest);
        }
        Some(match self.height {
            None => highest,
            Some(tile) => self
                .available()
                .find(|&l| self.height_of(l) >= tile)
                .unwrap_or(highest)
                .max(lowest),
        })
    }
}

/// The layer each of a subscriber's video tracks should get (`None`: no video), given its
/// bandwidth estimate in bits per second (`None`: no limit known).
///
/// Hidden tiles get nothing. Every shown tile gets at least its lowest layer; then, the active
/// speaker first and larger tiles before smaller ones, each is raised towards its ideal layer
/// while the estimate allows.
pub fn allocate(estimate: Option<u64>, wanted: &[Wanted]) -> Vec<Option<usize>> {
    let mut chosen: Vec<Option<usize>> = wanted
        .iter()
        .map(|w| {
            if !w.visible {
                return None;
            }
            match estimate {
                None => w.ideal(),
                Some(_) => w.available().next(),
            }
        })
        .collect();
    let Some(estimate) = estimate else {
        return chosen;
    };
    let mut spent: u64 = chosen
        .iter()
        .zip(wanted)
        .filter_map(|(layer, w)| layer.map(|l| w.bitrate_of(l)))
        .sum();
    let mut order: Vec<usize> = (0..wanted.len()).filter(|&i| chosen[i].is_some()).collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(wanted[i].speaker),
            std::cmp::Reverse(wanted[i].height.unwrap_or(u32::MAX)),
        )
    });
    for i in order {
        let w = &wanted[i];
        let (Some(ideal), Some(mut layer)) = (w.ideal(), chosen[i]) else {
            continue;
        };
        while layer < ideal {
            let Some(next) = w.available().find(|&l| l > layer) else {
                break;
            };
            let more = w.bitrate_of(next).saturating_sub(w.bitrate_of(layer));
            if spent + more > estimate {
                break;
            }
            spent += more;
            layer = next;
        }
        chosen[i] = Some(layer);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A VP8 payload: extended descriptor with a 15-bit picture ID and TL0PICIDX, then the
    /// frame header (a keyframe of 1280×720 when `key`).
    fn vp8(picture_id: u16, tl0: u8, start: bool, key: bool) -> Vec<u8> {
        let mut payload = vec![
            0x80 | if start { 0x10 } else { 0 },
            0xc0,
            0x80 | (picture_id >> 8) as u8,
            (picture_id & 0xff) as u8,
            tl0,
        ];
        if key {
            payload.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            payload.extend_from_slice(&1280u16.to_le_bytes());
            payload.extend_from_slice(&720u16.to_le_bytes());
        } else {
            payload.extend_from_slice(&[0x11, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0]);
        }
        payload
    }

    #[test]
    fn vp8_descriptors_are_read_with_short_and_long_picture_ids() {
        let long = vp8(0x1234, 7, true, true);
        let d = parse_vp8(&long).expect("parses");
        assert_eq!(d.picture_id, Some((0x1234, 2, true)));
        assert_eq!(d.tl0, Some((7, 4)));
        assert_eq!(d.header_len, 5);
        assert!(starts_keyframe(Codec::Vp8, &long));
        assert_eq!(vp8_keyframe_size(&long), Some((1280, 720)));

        let short = [0x90, 0x80, 0x05, 0x10];
        let d = parse_vp8(&short).expect("parses");
        assert_eq!(d.picture_id, Some((5, 2, false)));
        assert_eq!(d.header_len, 3);
        assert!(starts_keyframe(Codec::Vp8, &short));

        assert!(!starts_keyframe(Codec::Vp8, &vp8(1, 1, true, false)));
        assert!(!starts_keyframe(Codec::Vp8, &vp8(1, 1, false, true)));
        assert_eq!(parse_vp8(&[0x80]), None, "X set but no extension byte");
        assert_eq!(parse_vp8(&[0x80, 0x80, 0x80]), None, "15-bit ID cut short");
    }

    #[test]
    fn h264_keyframes_are_found_alone_aggregated_and_fragmented() {
        assert!(starts_keyframe(Codec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(Codec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(Codec::H264, &[0x41, 0x9a]));
        // STAP-A with an SPS after an SEI.
        assert!(starts_keyframe(
            Codec::H264,
            &[0x78, 0x00, 0x02, 0x06, 0x00, 0x00, 0x02, 0x67, 0x42]
        ));
        assert!(!starts_keyframe(
            Codec::H264,
            &[0x78, 0x00, 0x02, 0x06, 0x00]
        ));
        // FU-A: start of an IDR, and a middle fragment of one.
        assert!(starts_keyframe(Codec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[0x7c, 0x05, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[]));
    }

    /// Feeds (layer, seq, ts, picture, tl0, keyframe) packets and returns what is sent.
    fn feed(
        rewriter: &mut Rewriter,
        packets: &[(usize, u16, u32, u16, u8, bool)],
        target: Option<usize>,
        at: Instant,
    ) -> Vec<(u16, u32, u16, u8)> {
        packets
            .iter()
            .filter_map(|&(layer, sequence, timestamp, picture, tl0, key)| {
                let mut payload = vp8(picture, tl0, true, key);
                let d = parse_vp8(&payload).expect("vp8");
                let incoming = Incoming {
                    layer,
                    sequence,
                    timestamp,
                    keyframe: starts_keyframe(Codec::Vp8, &payload),
                    vp8: Some(&d),
                };
                let out = rewriter.rewrite(&incoming, target, at)?;
                if let Some(vp8) = out.vp8 {
                    vp8.apply(&d, &mut payload);
                }
                let d = parse_vp8(&payload).expect("vp8");
                Some((
                    out.sequence,
                    out.timestamp,
                    d.picture_id.expect("id").0,
                    d.tl0.expect("tl0").0,
                ))
            })
            .collect()
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_and_continues_every_counter() {
        let start = Instant::now();
        let mut r = Rewriter::new(90_000);
        // High layer from its keyframe on.
        let sent = feed(
            &mut r,
            &[
                (2, 100, 9000, 500, 10, false), // no keyframe yet: dropped
                (2, 101, 9000, 500, 10, true),
                (2, 102, 12000, 501, 11, false),
                (0, 5000, 70000, 30000, 200, true), // another layer: dropped
                (0, 5001, 73000, 30001, 201, false),
                (2, 103, 15000, 502, 12, false),
            ],
            Some(2),
            start,
        );
        assert_eq!(
            sent,
            vec![
                (101, 9000, 500, 10),
                (102, 12000, 501, 11),
                (103, 15000, 502, 12)
            ],
            "the publisher's own numbering until the first switch"
        );
        // Target low, 33 ms later: the high layer goes on until the low layer's keyframe.
        let later = start + Duration::from_millis(33);
        let sent = feed(
            &mut r,
            &[
                (0, 5002, 76000, 30002, 202, true), // low keyframe: switch
                (2, 104, 18000, 503, 13, false),    // high: dropped now
                (0, 5003, 79000, 30003, 203, false),
                (0, 5001, 73000, 30001, 201, false), // older than the switch: dropped
            ],
            Some(0),
            later,
        );
        assert_eq!(sent.len(), 2, "{sent:?}");
        let (seq, ts, picture, tl0) = sent[0];
        assert_eq!(seq, 104, "sequence numbers continue");
        assert_eq!(picture, 503, "picture IDs continue");
        assert_eq!(tl0, 13, "TL0PICIDX continues");
        assert_eq!(ts, 15000 + 2970, "33 ms later in a 90 kHz clock");
        assert_eq!(sent[1], (105, ts + 3000, 504, 14));
    }

    #[test]
    fn a_frame_is_continued_only_by_packets_of_the_same_timestamp_and_layer() {
        let start = Instant::now();
        let mut r = Rewriter::new(90_000);
        let payload = vp8(7, 1, false, false);
        let d = parse_vp8(&payload).expect("vp8");
        let packet = |layer, sequence, timestamp| Incoming {
            layer,
            sequence,
            timestamp,
            keyframe: false,
            vp8: Some(&d),
        };
        assert!(!r.continues_frame(&packet(1, 10, 100)), "nothing sent yet");
        feed(&mut r, &[(1, 10, 100, 7, 1, true)], Some(1), start);
        assert!(r.continues_frame(&packet(1, 11, 100)));
        assert!(!r.continues_frame(&packet(1, 12, 3100)), "the next frame");
        assert!(!r.continues_frame(&packet(0, 500, 100)), "another layer");
        feed(&mut r, &[(1, 11, 100, 7, 1, false)], None, start);
        assert!(!r.continues_frame(&packet(1, 12, 100)), "paused");
    }

    #[test]
    fn a_pause_stops_at_once_and_the_resume_follows_on() {
        let start = Instant::now();
        let mut r = Rewriter::new(90_000);
        feed(&mut r, &[(1, 10, 100, 7, 1, true)], Some(1), start);
        assert!(feed(&mut r, &[(1, 11, 3100, 8, 2, false)], None, start).is_empty());
        assert_eq!(r.current(), None);
        let sent = feed(
            &mut r,
            &[(1, 12, 6100, 9, 3, false), (1, 40, 90100, 37, 31, true)],
            Some(1),
            start + Duration::from_secs(1),
        );
        assert_eq!(
            sent,
            vec![(11, 90100, 8, 2)],
            "resumed at a keyframe, no gap"
        );
    }

    #[test]
    fn counters_wrap_around() {
        let start = Instant::now();
        let mut r = Rewriter::new(90_000);
        feed(
            &mut r,
            &[(0, 65535, u32::MAX, 0x7fff, 255, true)],
            Some(0),
            start,
        );
        let sent = feed(&mut r, &[(1, 3, 5, 2, 0, true)], Some(1), start);
        assert_eq!(sent, vec![(0, 0, 0, 0)]);
    }

    #[test]
    fn audio_resumes_with_continuous_sequence_numbers() {
        let start = Instant::now();
        let mut r = Rewriter::new(48_000);
        let packet = |sequence: u16, timestamp: u32| Incoming {
            layer: 0,
            sequence,
            timestamp,
            keyframe: true,
            vp8: None,
        };
        assert_eq!(
            r.rewrite(&packet(7, 960), Some(0), start)
                .map(|p| p.sequence),
            Some(7)
        );
        assert_eq!(r.rewrite(&packet(8, 1920), None, start), None);
        let out = r
            .rewrite(
                &packet(60, 51840),
                Some(0),
                start + Duration::from_millis(20),
            )
            .expect("resumed");
        assert_eq!((out.sequence, out.timestamp, out.vp8), (8, 960 + 960, None));
    }

    fn track(available: [bool; 3]) -> Wanted {
        let mut layers = [LayerState::default(); LAYERS];
        for (layer, on) in layers.iter_mut().zip(available) {
            layer.available = on;
        }
        Wanted {
            layers,
            visible: true,
            height: None,
            cap: 2,
            speaker: false,
        }
    }

    #[test]
    fn the_tile_decides_without_a_bandwidth_limit() {
        let mut small = track([true; 3]);
        small.height = Some(150);
        let mut medium = track([true; 3]);
        medium.height = Some(300);
        let mut hidden = track([true; 3]);
        hidden.visible = false;
        let mut capped = track([true; 3]);
        capped.cap = 1;
        let mut speaker = track([true; 3]);
        speaker.height = Some(100);
        speaker.speaker = true;
        let single = track([false, false, true]);
        assert_eq!(
            allocate(None, &[small, medium, hidden, capped, speaker, single]),
            vec![Some(0), Some(1), None, Some(1), Some(2), Some(2)]
        );
    }

    #[test]
    fn a_low_estimate_gives_the_low_layer_and_a_high_one_gives_back_the_high() {
        let tracks = [track([true; 3]), track([true; 3])];
        assert_eq!(
            allocate(Some(200_000), &tracks),
            vec![Some(0), Some(0)],
            "below every upgrade"
        );
        assert_eq!(allocate(Some(10_000_000), &tracks), vec![Some(2), Some(2)]);
        // Room for one upgrade to high (1.35 Mbit/s more) and one to medium.
        assert_eq!(
            allocate(Some(150_000 * 2 + 1_350_000 + 350_000), &tracks),
            vec![Some(2), Some(1)]
        );
        // The speaker goes first, then the bigger tile.
        let mut small = track([true; 3]);
        small.height = Some(2000);
        let mut speaker = track([true; 3]);
        speaker.speaker = true;
        speaker.height = Some(100);
        assert_eq!(
            allocate(Some(150_000 * 2 + 1_350_000), &[small, speaker]),
            vec![Some(0), Some(2)]
        );
        // Measured bitrates count instead of the nominal ones.
        let mut cheap = track([true; 3]);
        cheap.layers[1].bitrate = 160_000;
        cheap.layers[2].bitrate = 170_000;
        assert_eq!(allocate(Some(200_000), &[cheap]), vec![Some(2)]);
    }
}
