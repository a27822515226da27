//! G.711 µ-law (PCMU) and A-law (PCMA) encoding of 16-bit linear samples (ITU-T G.711; the
//! classic segment-search formulation).

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law, RTP payload type 0.
    Pcmu,
    /// A-law, RTP payload type 8.
    Pcma,
}

impl Law {
    /// The static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }

    /// The encoding name in SDP.
    pub fn name(self) -> &'static str {
        match self {
            Law::Pcmu => "PCMU",
            Law::Pcma => "PCMA",
        }
    }

    /// One encoded byte per sample.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        samples
            .iter()
            .map(|s| match self {
                Law::Pcmu => ulaw(*s),
                Law::Pcma => alaw(*s),
            })
            .collect()
    }

    /// One linear sample per encoded byte.
    pub fn decode(self, bytes: &[u8]) -> Vec<i16> {
        bytes
            .iter()
            .map(|b| match self {
                Law::Pcmu => ulaw_decode(*b),
                Law::Pcma => alaw_decode(*b),
            })
            .collect()
    }

    /// The byte that carries silence.
    pub fn silence(self) -> u8 {
        match self {
            Law::Pcmu => 0xFF,
            Law::Pcma => 0xD5,
        }
    }
}

fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    // The segment: position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

fn alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3; // 13-bit magnitude
    let (sign, magnitude) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let encoded = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let exponent = (31 - (magnitude as u32).leading_zeros()) as i32 - 4; // 1..=7
        let exponent = exponent.min(7);
        let mantissa = (magnitude >> exponent) & 0x0F;
        ((exponent << 4) | mantissa) as u8
    };
    (encoded | sign) ^ 0x55
}

fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let value = if u & 0x80 != 0 { -magnitude } else { magnitude };
    value as i16
}

fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let segment = i32::from((a >> 4) & 0x07);
    let mut magnitude = i32::from(a & 0x0F) << 4;
    magnitude += if segment == 0 { 8 } else { 0x108 };
    if segment > 1 {
        magnitude <<= segment - 1;
    }
    let value = if a & 0x80 != 0 { magnitude } else { -magnitude };
    value as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_the_reference_tables() {
        // Values from the ITU-T G.191 reference implementation.
        assert_eq!(ulaw(0), 0xFF);
        assert_eq!(ulaw(-1), 0x7F);
        assert_eq!(ulaw(32767), 0x80);
        assert_eq!(ulaw(-32768), 0x00);
        assert_eq!(ulaw(1000), 0xCE);
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(alaw(-8), 0x55);
        assert_eq!(alaw(32767), 0xAA);
        assert_eq!(alaw(-32768), 0x2A);
        assert_eq!(alaw(1000), 0xFA);
        assert_eq!(Law::Pcmu.encode(&[0, 0]), vec![Law::Pcmu.silence(); 2]);
        assert_eq!(Law::Pcma.encode(&[0]), vec![Law::Pcma.silence()]);
    }

    #[test]
    fn decoding_gives_back_the_sample_within_its_step() {
        for law in [Law::Pcmu, Law::Pcma] {
            for s in (-32768..=32767i32).step_by(13) {
                let s = s as i16;
                let back = i32::from(law.decode(&law.encode(&[s]))[0]);
                // The quantisation step grows with the level: 1/16 of it, plus the smallest step.
                let tolerance = i32::from(s).abs() / 16 + 16;
                assert!(
                    (back - i32::from(s)).abs() <= tolerance,
                    "{law:?} {s} → {back}"
                );
            }
        }
        assert_eq!(Law::Pcmu.decode(&[0xFF, 0x7F]), vec![0, 0]);
        assert_eq!(Law::Pcma.decode(&[0xD5, 0x55]), vec![8, -8]);
    }

    #[test]
    fn louder_samples_never_encode_to_a_lower_level() {
        let level_u = |s: i16| !ulaw(s) & 0x7F;
        let level_a = |s: i16| (alaw(s) ^ 0x55) & 0x7F;
        let (mut last_u, mut last_a) = (0, 0);
        for s in (0..=32767i16).step_by(7) {
            assert!(level_u(s) >= last_u && level_a(s) >= last_a, "at {s}");
            (last_u, last_a) = (level_u(s), level_a(s));
        }
    }
}
