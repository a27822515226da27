//! The conference mix heard by a caller: each source (a track of the room, decoded to 48 kHz
//! mono) queues its samples; every 20 ms the mixer takes one frame of each and sums them with
//! clipping.
//!
//! A pure core without IO or clock. One call owns one mixer today; the same type serves a mixer
//! shared by all the calls of a conference, where each caller's frame is the sum minus its own
//! source (`pull_without`), so that one SFU session per conference feeds many phones.

use std::collections::{BTreeMap, VecDeque};

/// Frames a source must have queued before it is heard (absorbs 20 ms of arrival jitter).
const PRIME_FRAMES: usize = 2;
/// Frames a source may queue; beyond that the oldest are dropped (a sender faster than us).
const MAX_FRAMES: usize = 10;

#[derive(Debug, Default)]
struct Source {
    queue: VecDeque<i16>,
    primed: bool,
}

/// Sums queued sources, one frame at a time.
#[derive(Debug)]
pub struct Mixer {
    frame: usize,
    sources: BTreeMap<String, Source>,
}

impl Mixer {
    /// A mixer producing frames of `frame` samples.
    pub fn new(frame: usize) -> Mixer {
        Mixer {
            frame,
            sources: BTreeMap::new(),
        }
    }

    /// Queues samples of `source`.
    pub fn push(&mut self, source: &str, samples: &[i16]) {
        let entry = self.sources.entry(source.to_owned()).or_default();
        entry.queue.extend(samples);
        let max = MAX_FRAMES * self.frame;
        if entry.queue.len() > max {
            let excess = entry.queue.len() - max;
            entry.queue.drain(..excess);
        }
        if entry.queue.len() >= PRIME_FRAMES * self.frame {
            entry.primed = true;
        }
    }

    /// Forgets `source` (its track ended).
    pub fn remove(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// The next frame of everyone, or `None` when nobody is heard.
    pub fn pull(&mut self) -> Option<Vec<i16>> {
        self.pull_without(None)
    }

    /// The next frame of everyone but `own` (a caller does not hear itself). Every primed
    /// source advances by one frame, heard or not.
    pub fn pull_without(&mut self, own: Option<&str>) -> Option<Vec<i16>> {
        let mut sum = vec![0i32; self.frame];
        let mut heard = false;
        for (name, source) in &mut self.sources {
            if !source.primed {
                continue;
            }
            let take = self.frame.min(source.queue.len());
            let include = own != Some(name.as_str());
            for (acc, sample) in sum.iter_mut().zip(source.queue.drain(..take)) {
                if include {
                    *acc += i32::from(sample);
                }
            }
            heard |= include && take > 0;
            if source.queue.is_empty() {
                // Ran dry: wait for a new cushion rather than stutter frame by frame.
                source.primed = false;
            }
        }
        heard.then(|| {
            sum.into_iter()
                .map(|s| s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_summed_with_clipping_after_a_cushion() {
        let mut mixer = Mixer::new(4);
        mixer.push("a", &[100, 200, 300, 400]);
        assert_eq!(mixer.pull(), None, "one frame is not a cushion yet");
        mixer.push("a", &[1, 2, 3, 4]);
        mixer.push("b", &[30_000; 8]);
        mixer.push("c", &[10; 2]);
        assert_eq!(mixer.pull(), Some(vec![30_100, 30_200, 30_300, 30_400]));
        mixer.push("b", &[10_000; 4]);
        assert_eq!(mixer.pull(), Some(vec![30_001, 30_002, 30_003, 30_004]));
        // b's last frame pushed it over the top: clipped.
        mixer.push("a", &[32_000; 8]);
        assert_eq!(mixer.pull(), Some(vec![i16::MAX; 4]));
        mixer.remove("a");
        mixer.remove("b");
        assert_eq!(mixer.pull(), None);
    }

    #[test]
    fn a_short_source_is_padded_and_a_flood_is_trimmed() {
        let mut mixer = Mixer::new(4);
        mixer.push("a", &[5; 6]);
        mixer.push("a", &[0; 0]);
        // 6 samples ≥ 1.5 frames: not primed yet (2 frames needed).
        assert_eq!(mixer.pull(), None);
        mixer.push("a", &[5; 2]);
        assert_eq!(mixer.pull(), Some(vec![5; 4]));
        mixer.push("b", &[7; 4 * 50]);
        let mut frames = 0;
        while mixer.pull().is_some() {
            frames += 1;
        }
        assert_eq!(
            frames,
            1 + MAX_FRAMES - 1,
            "a's last frame with b's first, then b's nine others"
        );
    }

    #[test]
    fn a_caller_does_not_hear_itself() {
        let mut mixer = Mixer::new(2);
        mixer.push("phone", &[1_000; 4]);
        mixer.push("other", &[7; 4]);
        assert_eq!(mixer.pull_without(Some("phone")), Some(vec![7, 7]));
        assert_eq!(mixer.pull_without(Some("other")), Some(vec![1_000, 1_000]));
        assert_eq!(mixer.pull_without(Some("other")), None);
    }
}
