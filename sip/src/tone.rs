//! Tones: a sine generator and the Goertzel filter that measures one frequency's power. The
//! tests check audio with them; in-band DTMF detection (a later step) is built on the same
//! filter.

/// `len` samples of a sine of `frequency` Hz at `rate` samples per second, peak `amplitude`.
pub fn sine(frequency: f64, rate: u32, len: usize, amplitude: i16) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            let value = f64::from(amplitude) * (2.0 * std::f64::consts::PI * frequency * t).sin();
            value.round() as i16
        })
        .collect()
}

/// The power of `frequency` in `samples` (Goertzel), normalised by the length, so values of
/// different lengths compare.
pub fn power(samples: &[i16], rate: u32, frequency: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &sample in samples {
        let s0 = f64::from(sample) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let raw = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    let n = samples.len() as f64;
    raw / (n * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone_it_is_tuned_to() {
        let tone = sine(440.0, 8_000, 8_000, 8_000);
        let at = power(&tone, 8_000, 440.0);
        // A sine of peak A has power A²/4 in this normalisation.
        assert!(
            (at / (8_000.0f64 * 8_000.0 / 4.0) - 1.0).abs() < 0.01,
            "{at}"
        );
        for other in [300.0, 1_000.0, 2_000.0] {
            assert!(at > 1_000.0 * power(&tone, 8_000, other), "{other}");
        }
        assert_eq!(power(&[], 8_000, 440.0), 0.0);
    }
}
