//! The three simple containers a recording's segments are written in, each built in memory and
//! self-contained: Ogg with Opus (RFC 7845), IVF with VP8, and H.264 as an Annex-B byte stream
//! (which needs no container at all).
//!
//! webrtc-rs 0.21 has writers for these (`rtc::media::io`), but they take packets in arrival
//! order with no loss handling, number IVF frames instead of timing them, close an Ogg stream by
//! writing its last packet twice and mis-lace packets whose size is a multiple of 255; the
//! formats are small enough to write here correctly.

/// Samples per second of Opus granule positions (always 48 kHz, whatever the input rate).
pub const OPUS_RATE: u64 = 48_000;

/// The RFC 3533 CRC-32 (polynomial 0x04c11db7, not reflected, initial value 0).
fn ogg_crc(data: &[u8]) -> u32 {
    static TABLE: std::sync::LazyLock<[u32; 256]> = std::sync::LazyLock::new(|| {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04c1_1db7
                } else {
                    r << 1
                };
            }
            *entry = r;
        }
        table
    });
    data.iter().fold(0u32, |crc, &byte| {
        (crc << 8) ^ TABLE[(((crc >> 24) as u8) ^ byte) as usize]
    })
}

/// How many 48 kHz samples one Opus packet decodes to, from its TOC byte (RFC 6716 §3.1);
/// `None` for an empty or malformed packet.
pub fn opus_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame length in 1/400 s (2.5 ms) units.
    let frame = match config {
        0..=11 => [4u64, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4u64, 8][usize::from(config % 2)],
        _ => [1u64, 2, 4, 8][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    let samples = frame * frames * (OPUS_RATE / 400);
    // At most 120 ms per packet.
    (samples > 0 && samples <= OPUS_RATE * 120 / 1000).then_some(samples)
}

/// An Opus packet that stands for `like`'s frame duration and carries no data: a frame of
/// length 0, which decoders conceal (RFC 6716 §3.2.1). Fills gaps (lost packets, silence the
/// sender did not send) so that a segment's duration is the time it covers.
pub fn opus_gap_packet(like: u8) -> [u8; 1] {
    [like & !0x03]
}

/// One Ogg logical stream of Opus, in memory.
#[derive(Debug)]
pub struct OggOpus {
    out: Vec<u8>,
    serial: u32,
    page: u32,
    granule: u64,
    last_page_at: usize,
}

impl OggOpus {
    /// A stream with its identification and comment headers (`channels` 1 or 2).
    pub fn new(serial: u32, channels: u8) -> Self {
        let mut ogg = Self {
            out: Vec::with_capacity(64 * 1024),
            serial,
            page: 0,
            granule: 0,
            last_page_at: 0,
        };
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels.clamp(1, 2));
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: none, timing stays exact
        head.extend_from_slice(&48_000u32.to_le_bytes()); // the input's rate, informational
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0: mono or stereo
        ogg.page_with(&head, 0x02, 0);
        let vendor = b"conclave";
        let mut tags = Vec::with_capacity(8 + 4 + vendor.len() + 4);
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        ogg.page_with(&tags, 0x00, 0);
        ogg
    }

    /// Appends one Opus packet that decodes to `samples` (48 kHz) samples, on a page of its own.
    pub fn push(&mut self, packet: &[u8], samples: u64) {
        self.granule += samples;
        self.page_with(packet, 0x00, self.granule);
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.granule
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing but the headers was written.
    pub fn is_empty(&self) -> bool {
        self.granule == 0
    }

    /// Marks the last page as the end of the stream and returns the file.
    pub fn finish(mut self) -> Vec<u8> {
        let at = self.last_page_at;
        self.out[at + 5] |= 0x04;
        self.seal(at);
        self.out
    }

    fn page_with(&mut self, packet: &[u8], flags: u8, granule: u64) {
        let at = self.out.len();
        self.last_page_at = at;
        self.out.extend_from_slice(b"OggS");
        self.out.push(0);
        self.out.push(flags);
        self.out.extend_from_slice(&granule.to_le_bytes());
        self.out.extend_from_slice(&self.serial.to_le_bytes());
        self.out.extend_from_slice(&self.page.to_le_bytes());
        self.out.extend_from_slice(&0u32.to_le_bytes());
        // Lacing: 255 for each full 255 bytes, then the rest (0 when the size is a multiple).
        let lacing = packet.len() / 255 + 1;
        self.out.push(lacing.min(255) as u8);
        for _ in 0..packet.len() / 255 {
            self.out.push(255);
        }
        self.out.push((packet.len() % 255) as u8);
        self.out.extend_from_slice(packet);
        self.page += 1;
        self.seal(at);
    }

    fn seal(&mut self, at: usize) {
        self.out[at + 22..at + 26].fill(0);
        let crc = ogg_crc(&self.out[at..]);
        self.out[at + 22..at + 26].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The largest Opus packet a page of one packet holds (254 lacing values of 255 and a rest).
pub const MAX_OGG_PACKET: usize = 254 * 255 + 254;

/// An IVF file of VP8 frames with 90 kHz timestamps, in memory.
#[derive(Debug)]
pub struct Ivf {
    out: Vec<u8>,
    first: Option<u64>,
    last: u64,
    frames: u32,
}

/// The RTP clock rate of video.
pub const VIDEO_RATE: u64 = 90_000;

impl Ivf {
    /// An IVF file whose frames are `width`×`height` (0 when unknown).
    pub fn new(width: u16, height: u16) -> Self {
        let mut out = Vec::with_capacity(512 * 1024);
        out.extend_from_slice(b"DKIF");
        out.extend_from_slice(&0u16.to_le_bytes()); // version
        out.extend_from_slice(&32u16.to_le_bytes()); // header size
        out.extend_from_slice(b"VP80");
        out.extend_from_slice(&width.to_le_bytes());
        out.extend_from_slice(&height.to_le_bytes());
        out.extend_from_slice(&(VIDEO_RATE as u32).to_le_bytes()); // time base denominator
        out.extend_from_slice(&1u32.to_le_bytes()); // time base numerator
        out.extend_from_slice(&0u32.to_le_bytes()); // length, set by `finish`
        out.extend_from_slice(&0u32.to_le_bytes()); // unused
        Self {
            out,
            first: None,
            last: 0,
            frames: 0,
        }
    }

    /// Appends a frame whose (unwrapped) RTP timestamp is `timestamp`.
    pub fn push(&mut self, frame: &[u8], timestamp: u64) {
        let first = *self.first.get_or_insert(timestamp);
        let pts = timestamp.saturating_sub(first);
        self.last = pts;
        self.frames += 1;
        self.out
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&pts.to_le_bytes());
        self.out.extend_from_slice(frame);
    }

    /// Frames written.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether no frame was written.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Writes the length (in time-base units, as ffmpeg reads it: the span of the timestamps
    /// plus one average frame) and returns the file.
    pub fn finish(mut self) -> Vec<u8> {
        let average = if self.frames > 1 {
            self.last / u64::from(self.frames - 1)
        } else {
            VIDEO_RATE / 30
        };
        let length = u32::try_from(self.last + average).unwrap_or(u32::MAX);
        self.out[24..28].copy_from_slice(&length.to_le_bytes());
        self.out
    }
}

/// A VP8 keyframe's dimensions, from its uncompressed header (RFC 6386 §9.1).
pub fn vp8_dimensions(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// The NAL unit types in an Annex-B byte stream, in order.
pub fn nal_types(annex_b: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut i = 0;
    while i + 3 < annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            types.push(annex_b[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    types
}

/// H.264 NAL unit types the recorder looks for.
pub mod nal {
    /// A coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// A sequence parameter set.
    pub const SPS: u8 = 7;
    /// A picture parameter set.
    pub const PPS: u8 = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ogg_crc_matches_the_reference_value() {
        // CRC-32/MPEG-2 differs (init 0xffffffff); Ogg's is CRC-32 with init 0, no xor-out:
        // "123456789" gives 0x89a1897f.
        assert_eq!(ogg_crc(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn opus_durations_come_from_the_toc_byte() {
        assert_eq!(opus_samples(&[0xfc]), Some(960), "CELT 20 ms, one frame");
        assert_eq!(opus_samples(&[0x78]), Some(960), "SILK WB 20 ms");
        assert_eq!(
            opus_samples(&[0x79, 0, 0]),
            Some(1920),
            "two frames of 20 ms"
        );
        assert_eq!(
            opus_samples(&[0x7b, 0x03]),
            Some(2880),
            "code 3, three frames"
        );
        assert_eq!(opus_samples(&[0x7b]), None, "code 3 without its count");
        assert_eq!(opus_samples(&[0x7b, 0x3f]), None, "more than 120 ms");
        assert_eq!(opus_samples(&[]), None);
        assert_eq!(opus_gap_packet(0xfd), [0xfc]);
    }

    #[test]
    fn ogg_pages_lace_every_size_and_the_last_page_ends_the_stream() {
        let mut ogg = OggOpus::new(7, 2);
        for size in [1usize, 254, 255, 256, 510, 1000] {
            ogg.push(&vec![0xfc; size], 960);
        }
        assert_eq!(ogg.samples(), 6 * 960);
        let file = ogg.finish();
        // Walk the pages: each is intact (its CRC holds) and holds one packet of the size given.
        let mut at = 0;
        let mut sizes = Vec::new();
        let mut last_flags = 0;
        let mut last_granule = 0;
        while at < file.len() {
            assert_eq!(&file[at..at + 4], b"OggS");
            let segments = usize::from(file[at + 26]);
            let lacing = &file[at + 27..at + 27 + segments];
            let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
            let end = at + 27 + segments + body;
            let mut page = file[at..end].to_vec();
            let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
            page[22..26].fill(0);
            assert_eq!(ogg_crc(&page), stored, "the page at {at} is intact");
            sizes.push(body);
            last_flags = file[at + 5];
            last_granule = u64::from_le_bytes(file[at + 6..at + 14].try_into().expect("8 bytes"));
            at = end;
        }
        assert_eq!(at, file.len());
        assert_eq!(sizes[2..], [1, 254, 255, 256, 510, 1000]);
        assert_eq!(last_flags & 0x04, 0x04, "end of stream");
        assert_eq!(last_granule, 6 * 960);
        assert_eq!(file[5], 0x02, "the first page begins the stream");
    }

    #[test]
    fn ivf_frames_carry_their_time_and_the_header_the_length() {
        let mut ivf = Ivf::new(640, 480);
        for n in 0..10u64 {
            ivf.push(&[0x10, 0x02, 0x00], 1_000_000 + n * 3000);
        }
        assert_eq!(ivf.frames(), 10);
        let file = ivf.finish();
        assert_eq!(&file[..4], b"DKIF");
        assert_eq!(u16::from_le_bytes([file[12], file[13]]), 640);
        assert_eq!(
            u32::from_le_bytes(file[24..28].try_into().expect("4")),
            30_000,
            "ten frames of 1/30 s"
        );
        // The second frame's timestamp.
        let second = 32 + 12 + 3;
        assert_eq!(
            u64::from_le_bytes(file[second + 4..second + 12].try_into().expect("8")),
            3000
        );
    }

    #[test]
    fn keyframe_headers_and_nal_units_are_recognised() {
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        assert_eq!(vp8_dimensions(&key), Some((640, 480)));
        let mut delta = key;
        delta[0] |= 1;
        assert_eq!(vp8_dimensions(&delta), None);
        let stream = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 4, 5,
        ];
        assert_eq!(nal_types(&stream), vec![nal::SPS, nal::PPS, nal::IDR]);
    }
}
