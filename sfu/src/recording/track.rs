//! One recorded track as a state machine: RTP packets in (with their arrival time), closed
//! segments and keyframe requests out. Pure: time is an input, nothing is written here.
//!
//! - Packets pass the [`Reorder`] buffer first.
//! - Audio (Opus) goes into Ogg pages as it comes; gaps in the RTP timestamps (lost packets,
//!   silence not sent) are filled with empty Opus frames so that a segment lasts as long as
//!   the time it covers. A segment closes when a packet arrives [`TrackRecorder::new`]'s
//!   segment length after the segment's first one.
//! - Video (VP8, H.264) is reassembled into frames; a frame with a missing packet is dropped.
//!   Every segment starts with a keyframe: when a segment is due to close, the publisher is
//!   asked for one and the segment closes when it arrives. A lost frame closes the segment
//!   too (what it holds stays decodable) and the next starts at the next keyframe.
//! - A segment also closes when its track falls silent (muted) after the segment length, so
//!   what a crash can lose stays one segment.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, TimeDelta, Utc};
use rtc::rtp::Packet;
use rtc::rtp::packetizer::Depacketizer;

use super::container::{self, Ivf, OggOpus, nal};
use super::reorder::{Ordered, Reorder};

/// The codecs recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus audio, into Ogg.
    Opus,
    /// VP8 video, into IVF.
    Vp8,
    /// H.264 video, as an Annex-B stream.
    H264,
}

impl Codec {
    /// The codec of a MIME type (`audio/opus`, `video/VP8`, `video/H264`); `None` for others.
    pub fn of_mime(mime: &str) -> Option<Codec> {
        match mime.to_ascii_lowercase().as_str() {
            "audio/opus" => Some(Codec::Opus),
            "video/vp8" => Some(Codec::Vp8),
            "video/h264" => Some(Codec::H264),
            _ => None,
        }
    }

    /// The name in a segment's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        }
    }

    /// The segment files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Opus => "ogg",
            Codec::Vp8 => "ivf",
            Codec::H264 => "h264",
        }
    }

    fn is_video(self) -> bool {
        self != Codec::Opus
    }
}

/// How segments are cut.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A segment's length.
    pub segment: TimeDelta,
    /// How long a packet waits for a missing one before that is given up.
    pub reorder_wait: TimeDelta,
    /// Packets at most held back by the reorder buffer.
    pub reorder_held: usize,
    /// Keyframe requests at most this often while one is awaited.
    pub keyframe_interval: TimeDelta,
    /// A track silent this long closes its segment once the segment is old enough.
    pub idle: TimeDelta,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            segment: TimeDelta::seconds(5),
            reorder_wait: TimeDelta::milliseconds(300),
            reorder_held: 512,
            keyframe_interval: TimeDelta::seconds(1),
            idle: TimeDelta::seconds(1),
        }
    }
}

/// A closed segment, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Its number within the track, from 1.
    pub seq: u32,
    /// The file.
    pub bytes: Bytes,
    /// Arrival of its first packet.
    pub start: DateTime<Utc>,
    /// Arrival of its last packet.
    pub end: DateTime<Utc>,
    /// RTP packets in it.
    pub packets: u64,
    /// The media time it covers (from its timestamps).
    pub media: TimeDelta,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Store a segment.
    Segment(Segment),
    /// Ask the publisher for a keyframe.
    RequestKeyframe,
}

enum Body {
    Ogg(OggOpus),
    Ivf(Ivf),
    AnnexB(BytesMut),
}

struct Open {
    body: Body,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    packets: u64,
    first_ts: u64,
    last_ts: u64,
}

/// A video frame being put together from its packets.
#[derive(Default)]
struct Assembly {
    timestamp: Option<u32>,
    packets: Vec<Packet>,
    first_arrival: Option<DateTime<Utc>>,
    last_arrival: Option<DateTime<Utc>>,
    broken: bool,
}

struct Frame {
    data: Bytes,
    keyframe: bool,
    timestamp: u64,
    first_arrival: DateTime<Utc>,
    last_arrival: DateTime<Utc>,
    packets: u64,
}

/// One track's recorder.
pub struct TrackRecorder {
    codec: Codec,
    timing: Timing,
    serial: u32,
    reorder: Reorder,
    open: Option<Open>,
    next_seq: u32,
    /// Unwrapped RTP timestamps.
    highest_ts: Option<u64>,
    /// Audio: the timestamp the next packet should carry, and the last TOC byte.
    expected_ts: Option<u64>,
    last_toc: u8,
    /// Video.
    assembly: Assembly,
    /// A keyframe is awaited (to start a segment, or to close one that is due).
    keyframe_wanted: bool,
    last_request: Option<DateTime<Utc>>,
    /// H.264 parameter sets last seen, prepended to a segment that starts without them.
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    last_packet: Option<DateTime<Utc>>,
    /// Frames dropped (incomplete, or before the first keyframe).
    dropped_frames: u64,
}

impl std::fmt::Debug for TrackRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackRecorder")
            .field("codec", &self.codec)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl TrackRecorder {
    /// A recorder of `codec`; `serial` names its Ogg streams.
    pub fn new(codec: Codec, timing: Timing, serial: u32) -> Self {
        Self {
            codec,
            timing,
            serial,
            reorder: Reorder::new(timing.reorder_wait, timing.reorder_held),
            open: None,
            next_seq: 1,
            highest_ts: None,
            expected_ts: None,
            last_toc: 0xfc,
            assembly: Assembly::default(),
            keyframe_wanted: codec.is_video(),
            last_request: None,
            sps: None,
            pps: None,
            last_packet: None,
            dropped_frames: 0,
        }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Video frames dropped so far (incomplete, or while waiting for a keyframe).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// The recording starts: a video track asks for a keyframe at once.
    pub fn start(&mut self, now: DateTime<Utc>) -> Vec<Output> {
        let mut out = Vec::new();
        if self.codec.is_video() {
            self.want_keyframe(now, &mut out);
        }
        out
    }

    /// A packet arrived at `at`.
    pub fn push(&mut self, packet: Packet, at: DateTime<Utc>) -> Vec<Output> {
        self.last_packet = Some(at);
        let ordered = self.reorder.push(packet, at);
        let mut out = Vec::new();
        self.take(ordered, at, &mut out);
        out
    }

    /// Time passed: packets waited for too long are given up, a silent track's due segment
    /// closes, an awaited keyframe is asked for again.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Output> {
        let mut out = Vec::new();
        let ordered = self.reorder.tick(now);
        self.take(ordered, now, &mut out);
        if let Some(open) = &self.open
            && now - open.start >= self.timing.segment
            && self
                .last_packet
                .is_some_and(|last| now - last >= self.timing.idle)
        {
            self.close(&mut out);
            // The track went silent; when it comes back, video starts at a keyframe.
            self.keyframe_wanted = self.codec.is_video();
            self.assembly = Assembly::default();
        }
        if self.keyframe_wanted {
            self.want_keyframe(now, &mut out);
        }
        out
    }

    /// The recording stops: what is held is written and the last segment closes.
    pub fn finish(&mut self, now: DateTime<Utc>) -> Vec<Output> {
        let mut out = Vec::new();
        let ordered = self.reorder.flush();
        self.take(ordered, now, &mut out);
        self.close(&mut out);
        out.retain(|o| matches!(o, Output::Segment(_)));
        out
    }

    fn want_keyframe(&mut self, now: DateTime<Utc>, out: &mut Vec<Output>) {
        self.keyframe_wanted = true;
        if self
            .last_request
            .is_none_or(|last| now - last >= self.timing.keyframe_interval)
        {
            self.last_request = Some(now);
            out.push(Output::RequestKeyframe);
        }
    }

    fn unwrap_ts(&mut self, ts: u32) -> u64 {
        let extended = match self.highest_ts {
            None => (1u64 << 32) + u64::from(ts),
            Some(highest) => {
                let delta = i64::from(ts.wrapping_sub(highest as u32) as i32);
                highest.saturating_add_signed(delta)
            }
        };
        self.highest_ts = Some(self.highest_ts.map_or(extended, |h| h.max(extended)));
        extended
    }

    fn take(&mut self, ordered: Vec<Ordered>, now: DateTime<Utc>, out: &mut Vec<Output>) {
        for item in ordered {
            match item {
                Ordered::Lost(_) if self.codec.is_video() => self.assembly.broken = true,
                // Audio gaps show in the timestamps.
                Ordered::Lost(_) => {}
                Ordered::Packet(packet, at) if self.codec.is_video() => {
                    self.video_packet(packet, at, now, out);
                }
                Ordered::Packet(packet, at) => self.audio_packet(&packet, at, out),
            }
        }
    }

    fn audio_packet(&mut self, packet: &Packet, at: DateTime<Utc>, out: &mut Vec<Output>) {
        let payload = &packet.payload;
        let Some(samples) = container::opus_samples(payload) else {
            return;
        };
        if payload.len() > container::MAX_OGG_PACKET {
            return;
        }
        let ts = self.unwrap_ts(packet.header.timestamp);
        if self
            .open
            .as_ref()
            .is_some_and(|open| at - open.start >= self.timing.segment)
        {
            self.close(out);
        }
        // More than ten seconds missing is a new start, not a gap to fill.
        let gap = self
            .expected_ts
            .map_or(0, |expected| ts.saturating_sub(expected));
        if gap > 10 * container::OPUS_RATE {
            self.close(out);
        }
        let open = self.open.get_or_insert_with(|| Open {
            body: Body::Ogg(OggOpus::new(
                self.serial.wrapping_add(self.next_seq),
                if payload[0] & 0x04 != 0 { 2 } else { 1 },
            )),
            start: at,
            end: at,
            packets: 0,
            first_ts: ts,
            last_ts: ts,
        });
        let Body::Ogg(ogg) = &mut open.body else {
            return;
        };
        if !ogg.is_empty() && gap > 0 && gap <= 10 * container::OPUS_RATE {
            let frame = container::opus_samples(&[self.last_toc & !0x03]).unwrap_or(960);
            let fill = (gap + frame / 2) / frame;
            let empty = container::opus_gap_packet(self.last_toc);
            for _ in 0..fill {
                ogg.push(&empty, frame);
            }
        }
        ogg.push(payload, samples);
        self.last_toc = payload[0];
        self.expected_ts = Some(ts + samples);
        open.end = at;
        open.packets += 1;
        open.last_ts = ts + samples;
    }

    fn video_packet(
        &mut self,
        packet: Packet,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        out: &mut Vec<Output>,
    ) {
        if packet.payload.is_empty() {
            return;
        }
        let ts = packet.header.timestamp;
        if self.assembly.timestamp.is_some_and(|current| current != ts) {
            // The previous frame never saw its last packet.
            self.assembly.broken = true;
            self.drop_frame(now, out);
        }
        let marker = packet.header.marker;
        let assembly = &mut self.assembly;
        if assembly.timestamp.is_none() {
            assembly.timestamp = Some(ts);
            assembly.first_arrival = Some(at);
        }
        assembly.last_arrival = Some(at);
        assembly.packets.push(packet);
        if !marker {
            return;
        }
        let assembly = std::mem::take(&mut self.assembly);
        match self.frame_of(assembly) {
            Some(frame) => self.video_frame(frame, now, out),
            None => self.lost_frame(now, out),
        }
    }

    fn drop_frame(&mut self, now: DateTime<Utc>, out: &mut Vec<Output>) {
        self.assembly = Assembly::default();
        self.lost_frame(now, out);
    }

    /// A frame could not be had: the segment closes with what decodes, and the next one waits
    /// for a keyframe.
    fn lost_frame(&mut self, now: DateTime<Utc>, out: &mut Vec<Output>) {
        self.dropped_frames += 1;
        self.close(out);
        self.want_keyframe(now, out);
    }

    fn frame_of(&mut self, assembly: Assembly) -> Option<Frame> {
        if assembly.broken || assembly.packets.is_empty() {
            return None;
        }
        let first_arrival = assembly.first_arrival?;
        let last_arrival = assembly.last_arrival?;
        let timestamp = self.unwrap_ts(assembly.timestamp?);
        let packets = assembly.packets.len() as u64;
        let mut data = BytesMut::new();
        let keyframe = match self.codec {
            Codec::Vp8 => {
                let head = &assembly.packets[0].payload;
                // The first packet must start partition 0 (S set, PID 0).
                if head[0] & 0x10 == 0 || head[0] & 0x07 != 0 {
                    return None;
                }
                for packet in &assembly.packets {
                    let mut depacketizer = rtc::rtp::codec::vp8::Vp8Packet::default();
                    data.extend_from_slice(&depacketizer.depacketize(&packet.payload).ok()?);
                }
                data.first().is_some_and(|b| b & 0x01 == 0)
            }
            Codec::H264 => {
                let mut depacketizer = rtc::rtp::codec::h264::H264Packet::default();
                for packet in &assembly.packets {
                    data.extend_from_slice(&depacketizer.depacketize(&packet.payload).ok()?);
                }
                let types = container::nal_types(&data);
                self.keep_parameter_sets(&data);
                types.contains(&nal::IDR)
            }
            Codec::Opus => return None,
        };
        if data.is_empty() {
            return None;
        }
        Some(Frame {
            data: data.freeze(),
            keyframe,
            timestamp,
            first_arrival,
            last_arrival,
            packets,
        })
    }

    fn keep_parameter_sets(&mut self, annex_b: &[u8]) {
        // Split at start codes; keep the last SPS and PPS seen (with their start code).
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 < annex_b.len() {
            if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
                let start = if i > 0 && annex_b[i - 1] == 0 {
                    i - 1
                } else {
                    i
                };
                starts.push((start, i + 3));
                i += 3;
            } else {
                i += 1;
            }
        }
        for (n, &(start, body)) in starts.iter().enumerate() {
            let end = starts.get(n + 1).map_or(annex_b.len(), |&(next, _)| next);
            let unit = Bytes::copy_from_slice(&annex_b[start..end]);
            match annex_b[body] & 0x1f {
                nal::SPS => self.sps = Some(unit),
                nal::PPS => self.pps = Some(unit),
                _ => {}
            }
        }
    }

    fn video_frame(&mut self, frame: Frame, now: DateTime<Utc>, out: &mut Vec<Output>) {
        let due = self
            .open
            .as_ref()
            .is_some_and(|open| frame.first_arrival - open.start >= self.timing.segment);
        if frame.keyframe && (self.open.is_none() || due) {
            self.close(out);
            self.keyframe_wanted = false;
            self.open = Some(self.open_video(&frame));
        } else if self.open.is_none() {
            self.dropped_frames += 1;
            self.want_keyframe(now, out);
            return;
        } else if due {
            self.want_keyframe(now, out);
        }
        let Some(open) = &mut self.open else {
            return;
        };
        match &mut open.body {
            Body::Ivf(ivf) => ivf.push(&frame.data, frame.timestamp),
            Body::AnnexB(stream) => stream.extend_from_slice(&frame.data),
            Body::Ogg(_) => return,
        }
        open.end = frame.last_arrival;
        open.packets += frame.packets;
        open.last_ts = frame.timestamp;
    }

    fn open_video(&self, frame: &Frame) -> Open {
        let body = match self.codec {
            Codec::H264 => {
                let mut stream = BytesMut::with_capacity(512 * 1024);
                let types = container::nal_types(&frame.data);
                if !types.contains(&nal::SPS)
                    && let Some(sps) = &self.sps
                {
                    stream.extend_from_slice(sps);
                }
                if !types.contains(&nal::PPS)
                    && let Some(pps) = &self.pps
                {
                    stream.extend_from_slice(pps);
                }
                Body::AnnexB(stream)
            }
            _ => {
                let (width, height) = container::vp8_dimensions(&frame.data).unwrap_or((0, 0));
                Body::Ivf(Ivf::new(width, height))
            }
        };
        Open {
            body,
            start: frame.first_arrival,
            end: frame.last_arrival,
            packets: 0,
            first_ts: frame.timestamp,
            last_ts: frame.timestamp,
        }
    }

    fn close(&mut self, out: &mut Vec<Output>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let rate = if self.codec.is_video() {
            container::VIDEO_RATE
        } else {
            container::OPUS_RATE
        };
        let span = open.last_ts.saturating_sub(open.first_ts);
        let media = TimeDelta::microseconds((span * 1_000_000 / rate) as i64);
        let bytes = match open.body {
            Body::Ogg(ogg) if !ogg.is_empty() => ogg.finish(),
            Body::Ivf(ivf) if !ivf.is_empty() => ivf.finish(),
            Body::AnnexB(stream) if !stream.is_empty() => stream.to_vec(),
            _ => return,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.codec == Codec::Opus {
            // The next segment's first packet starts it afresh, with no gap to fill.
            self.expected_ts = None;
        }
        out.push(Output::Segment(Segment {
            seq,
            bytes: Bytes::from(bytes),
            start: open.start,
            end: open.end,
            packets: open.packets,
            media,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(1_000_000) + TimeDelta::milliseconds(ms)
    }

    fn rtp(seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> Packet {
        let mut packet = Packet::default();
        packet.header.sequence_number = seq;
        packet.header.timestamp = ts;
        packet.header.marker = marker;
        packet.payload = Bytes::from(payload);
        packet
    }

    fn segments(out: &[Output]) -> Vec<&Segment> {
        out.iter()
            .filter_map(|o| match o {
                Output::Segment(s) => Some(s),
                Output::RequestKeyframe => None,
            })
            .collect()
    }

    fn asks(out: &[Output]) -> bool {
        out.contains(&Output::RequestKeyframe)
    }

    /// 20 ms Opus packets for `ms` milliseconds from `from_ms`.
    fn opus(recorder: &mut TrackRecorder, from_ms: i64, ms: i64, out: &mut Vec<Output>) {
        for n in 0..ms / 20 {
            let t = from_ms + n * 20;
            out.extend(recorder.push(
                rtp(
                    t as u16 / 20,
                    4000 + (t as u32) * 48,
                    false,
                    vec![0xfc, 1, 2, 3],
                ),
                at(t),
            ));
        }
    }

    #[test]
    fn audio_is_cut_into_five_second_segments_that_cover_the_time() {
        let mut recorder = TrackRecorder::new(Codec::Opus, Timing::default(), 1);
        let mut out = Vec::new();
        opus(&mut recorder, 0, 12_000, &mut out);
        out.extend(recorder.finish(at(12_000)));
        let segments = segments(&out);
        assert_eq!(segments.len(), 3);
        assert_eq!(
            segments.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(segments[0].start, at(0));
        assert_eq!(segments[0].end, at(4980));
        assert_eq!(segments[1].start, at(5000));
        assert_eq!(segments[0].packets, 250);
        let total: i64 = segments.iter().map(|s| s.media.num_milliseconds()).sum();
        assert!((11_900..=12_000).contains(&total), "{total} ms");
    }

    #[test]
    fn lost_audio_is_filled_so_the_segment_keeps_its_length() {
        let mut recorder = TrackRecorder::new(
            Codec::Opus,
            Timing {
                reorder_wait: TimeDelta::milliseconds(50),
                ..Timing::default()
            },
            1,
        );
        let mut out = Vec::new();
        for n in 0..100i64 {
            // Packets 40..=49 never arrive.
            if (40..50).contains(&n) {
                continue;
            }
            out.extend(recorder.push(
                rtp(n as u16, (n * 960) as u32, false, vec![0xfc, 9]),
                at(n * 20),
            ));
        }
        out.extend(recorder.finish(at(2000)));
        let segment = segments(&out)[0].clone();
        assert_eq!(segment.packets, 90);
        // Headers, then one page per packet: 90 real and 10 filled.
        let pages = segment.bytes.windows(4).filter(|w| *w == b"OggS").count();
        assert_eq!(pages, 2 + 100);
        assert_eq!(segment.media, TimeDelta::milliseconds(2000));
    }

    #[test]
    fn a_muted_track_closes_its_segment_once_it_is_due() {
        let mut recorder = TrackRecorder::new(Codec::Opus, Timing::default(), 1);
        let mut out = Vec::new();
        opus(&mut recorder, 0, 3000, &mut out);
        assert!(segments(&recorder.tick(at(4000))).is_empty(), "not due yet");
        let closed = recorder.tick(at(5500));
        assert_eq!(segments(&closed).len(), 1, "silent and due");
        assert_eq!(segments(&closed)[0].end, at(2980));
    }

    /// A VP8 frame in one packet; keyframes carry a 640x480 header.
    fn vp8(seq: u16, frame: u32, key: bool) -> Packet {
        let mut payload = vec![0x10];
        if key {
            payload
                .extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
        } else {
            payload.extend_from_slice(&[0x01, 0x00, 0x00, 0xaa]);
        }
        rtp(seq, 90_000 + frame * 3000, true, payload)
    }

    #[test]
    fn video_segments_start_on_keyframes_and_ask_for_them() {
        let mut recorder = TrackRecorder::new(Codec::Vp8, Timing::default(), 1);
        assert!(
            asks(&recorder.start(at(0))),
            "a keyframe is asked for at once"
        );
        let mut out = Vec::new();
        // Delta frames before the first keyframe are dropped.
        for n in 0..3u32 {
            out.extend(recorder.push(vp8(n as u16, n, false), at(i64::from(n) * 33)));
        }
        assert_eq!(recorder.dropped_frames(), 3);
        let mut asked_at = None;
        for (seq, n) in (3u16..).zip(3..400u32) {
            let t = i64::from(n) * 33;
            // The publisher answers a request with a keyframe 100 ms later.
            let key = n == 3 || asked_at.is_some_and(|asked| t >= asked + 100);
            if key {
                asked_at = None;
            }
            let step = recorder.push(vp8(seq, n, key), at(t));
            if asks(&step) && asked_at.is_none() {
                asked_at = Some(t);
            }
            out.extend(step);
        }
        out.extend(recorder.finish(at(400 * 33)));
        let segments = segments(&out);
        assert!(segments.len() >= 2, "{}", segments.len());
        for segment in &segments {
            assert_eq!(&segment.bytes[..4], b"DKIF");
            // The first frame (after the 32-byte header and 12-byte frame header) is a keyframe.
            assert_eq!(
                segment.bytes[44] & 0x01,
                0,
                "segment {} starts on a keyframe",
                segment.seq
            );
            assert_eq!(
                u16::from_le_bytes([segment.bytes[12], segment.bytes[13]]),
                640
            );
        }
        let first = segments[0];
        let length = (first.end - first.start).num_milliseconds();
        assert!((5000..5300).contains(&length), "{length} ms");
    }

    #[test]
    fn a_lost_video_packet_closes_the_segment_and_the_next_waits_for_a_keyframe() {
        let timing = Timing {
            reorder_wait: TimeDelta::milliseconds(50),
            ..Timing::default()
        };
        let mut recorder = TrackRecorder::new(Codec::Vp8, timing, 1);
        let mut out = Vec::new();
        out.extend(recorder.push(vp8(0, 0, true), at(0)));
        out.extend(recorder.push(vp8(1, 1, false), at(33)));
        // Packet 2 is lost; 3 arrives, and after the wait 2 is given up.
        out.extend(recorder.push(vp8(3, 3, false), at(100)));
        let step = recorder.tick(at(200));
        assert!(asks(&step), "a keyframe is wanted after the loss");
        assert_eq!(segments(&step).len(), 1, "what decodes is kept");
        assert_eq!(segments(&step)[0].packets, 2);
        out.extend(recorder.push(vp8(4, 4, false), at(233)));
        out.extend(recorder.push(vp8(5, 5, true), at(266)));
        out.extend(recorder.finish(at(300)));
        let all = segments(&out);
        assert_eq!(all.len(), 1, "the first closed in the tick above");
        assert_eq!(all[0].seq, 2);
        assert_eq!(all[0].start, at(266), "the second starts at the keyframe");
    }

    #[test]
    fn h264_segments_start_with_parameter_sets_and_an_idr() {
        let mut recorder = TrackRecorder::new(Codec::H264, Timing::default(), 1);
        let mut out = Vec::new();
        // A STAP-A with SPS and PPS, then an IDR slice.
        let stap = vec![0x18, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
        out.extend(recorder.push(rtp(0, 0, false, stap), at(0)));
        out.extend(recorder.push(rtp(1, 0, true, vec![0x65, 0x88, 0x80]), at(1)));
        out.extend(recorder.push(rtp(2, 3000, true, vec![0x41, 0x9a, 0x01]), at(34)));
        // Much later an IDR without parameter sets: the next segment gets the kept ones.
        out.extend(recorder.push(rtp(3, 3000 * 160, true, vec![0x65, 0x88, 0x81]), at(5400)));
        out.extend(recorder.finish(at(5500)));
        let segments = segments(&out);
        assert_eq!(segments.len(), 2);
        assert_eq!(
            container::nal_types(&segments[0].bytes),
            vec![nal::SPS, nal::PPS, nal::IDR, 1]
        );
        assert_eq!(
            container::nal_types(&segments[1].bytes),
            vec![nal::SPS, nal::PPS, nal::IDR]
        );
    }

    #[test]
    fn codecs_are_known_by_mime_type() {
        assert_eq!(Codec::of_mime("video/VP8"), Some(Codec::Vp8));
        assert_eq!(Codec::of_mime("audio/opus"), Some(Codec::Opus));
        assert_eq!(Codec::of_mime("video/H264"), Some(Codec::H264));
        assert_eq!(Codec::of_mime("video/AV1"), None);
        assert_eq!(Codec::H264.extension(), "h264");
    }
}
