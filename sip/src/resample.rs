//! 8 kHz (the phone) ↔ 48 kHz (Opus in the room), by a factor of 6 with one windowed-sinc
//! low-pass filter: polyphase interpolation up, filtering and decimation down. Both keep their
//! history between frames, so a call's audio is filtered as one continuous signal.
//!
//! The filter passes up to about 3.4 kHz (all a G.711 call carries) and stops images and
//! aliases from 4 kHz on; what the phone cannot carry is removed before decimation instead of
//! folding back as noise.

/// 48 kHz / 8 kHz.
pub const FACTOR: usize = 6;

/// Filter taps per output phase; the filter has `FACTOR * TAPS_PER_PHASE` taps.
const TAPS_PER_PHASE: usize = 24;

/// The low-pass filter at 48 kHz: a Blackman-windowed sinc cut at 3.8 kHz, unit gain at DC.
fn low_pass() -> Vec<f32> {
    let len = FACTOR * TAPS_PER_PHASE;
    let cutoff = 3_800.0 / 48_000.0; // cycles per sample
    let centre = (len - 1) as f64 / 2.0;
    let mut taps: Vec<f64> = (0..len)
        .map(|n| {
            let x = n as f64 - centre;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
            };
            let phase = 2.0 * std::f64::consts::PI * n as f64 / (len - 1) as f64;
            let window = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
            sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    for tap in &mut taps {
        *tap /= sum;
    }
    taps.into_iter().map(|t| t as f32).collect()
}

fn to_i16(value: f32) -> i16 {
    value
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// 8 kHz → 48 kHz.
#[derive(Debug, Clone)]
pub struct Upsampler {
    taps: Vec<f32>,
    /// The last `TAPS_PER_PHASE` input samples, newest last.
    history: Vec<f32>,
}

impl Default for Upsampler {
    fn default() -> Self {
        Upsampler {
            taps: low_pass(),
            history: vec![0.0; TAPS_PER_PHASE],
        }
    }
}

impl Upsampler {
    /// Six output samples for each input sample.
    pub fn process(&mut self, input: &[i16]) -> Vec<i16> {
        let mut output = Vec::with_capacity(input.len() * FACTOR);
        for &sample in input {
            self.history.remove(0);
            self.history.push(f32::from(sample));
            // Zero-stuffed input convolved with the filter: phase p uses taps p, p+6, …
            // against the newest samples. ×6 restores the level the zeros took away.
            for phase in 0..FACTOR {
                let acc: f32 = (0..TAPS_PER_PHASE)
                    .map(|k| self.taps[k * FACTOR + phase] * self.history[TAPS_PER_PHASE - 1 - k])
                    .sum();
                output.push(to_i16(acc * FACTOR as f32));
            }
        }
        output
    }
}

/// 48 kHz → 8 kHz.
#[derive(Debug, Clone)]
pub struct Downsampler {
    taps: Vec<f32>,
    /// The last `taps.len()` input samples, newest last.
    history: Vec<f32>,
    /// Input samples since the last output (0..FACTOR).
    phase: usize,
}

impl Default for Downsampler {
    fn default() -> Self {
        let taps = low_pass();
        Downsampler {
            history: vec![0.0; taps.len()],
            taps,
            phase: 0,
        }
    }
}

impl Downsampler {
    /// One output sample for every six input samples (a remainder carries over).
    pub fn process(&mut self, input: &[i16]) -> Vec<i16> {
        let mut output = Vec::with_capacity(input.len() / FACTOR + 1);
        let len = self.taps.len();
        for &sample in input {
            self.history.remove(0);
            self.history.push(f32::from(sample));
            self.phase += 1;
            if self.phase == FACTOR {
                self.phase = 0;
                let acc: f32 = (0..len)
                    .map(|k| self.taps[k] * self.history[len - 1 - k])
                    .sum();
                output.push(to_i16(acc));
            }
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{power, sine};

    #[test]
    fn upsampling_keeps_the_tone_and_removes_its_images() {
        let mut up = Upsampler::default();
        let output = up.process(&sine(440.0, 8_000, 8_000, 10_000));
        assert_eq!(output.len(), 48_000);
        let steady = &output[4_800..];
        let tone = power(steady, 48_000, 440.0);
        // The first images of 440 Hz at 48 kHz: 8 kHz ± 440 Hz.
        for image in [7_560.0, 8_440.0, 15_560.0] {
            assert!(
                tone > 10_000.0 * power(steady, 48_000, image),
                "image at {image} Hz"
            );
        }
        // The level is kept (amplitude 10 000 in, peak close to it out).
        let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((9_500..=10_500).contains(&peak), "peak {peak}");
    }

    #[test]
    fn downsampling_keeps_the_voice_band_and_stops_aliases() {
        let mut down = Downsampler::default();
        let input = sine(1_000.0, 48_000, 48_000, 10_000);
        // In odd-sized pieces: the phase carries over.
        let output: Vec<i16> = input.chunks(1_001).flat_map(|c| down.process(c)).collect();
        assert_eq!(output.len(), 8_000);
        let steady = &output[800..];
        let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((9_500..=10_500).contains(&peak), "peak {peak}");
        assert!(power(steady, 8_000, 1_000.0) > 10_000.0 * power(steady, 8_000, 3_000.0));

        // 5 kHz cannot be carried at 8 kHz; it would fold back to 3 kHz.
        let mut down = Downsampler::default();
        let high = down.process(&sine(5_000.0, 48_000, 48_000, 10_000));
        let peak = high[800..]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!(peak < 100, "alias peak {peak}");
    }
}
