//! Active-speaker detection from audio levels (RFC 6464: 0 is 0 dBov, the loudest; 127 is
//! silence).
//!
//! The media shell reports, per microphone and per short interval, the loudest level it saw;
//! the detector smooths them and names the loudest participant above a speech threshold,
//! switching away from the current speaker only after a hold time so the highlight does not
//! flicker.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use proto::ParticipantId;

/// Levels at or below this (in RFC 6464 units, lower is louder) count as speech.
pub(crate) const SPEECH_LEVEL: u8 = 60;
/// A level older than this counts as silence (the track stopped sending).
const STALE: TimeDelta = TimeDelta::milliseconds(1000);

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Smoothed loudness, `127 - level`, so that higher is louder.
    loudness: f32,
    at: DateTime<Utc>,
}

/// Picks the active speaker.
#[derive(Debug, Clone)]
pub struct SpeakerDetector {
    hold: TimeDelta,
    levels: HashMap<ParticipantId, Level>,
    current: Option<ParticipantId>,
    since: DateTime<Utc>,
}

impl SpeakerDetector {
    /// A detector that keeps a speaker at least `hold` before switching to a louder one.
    pub fn new(hold: TimeDelta) -> Self {
        Self {
            hold,
            levels: HashMap::new(),
            current: None,
            since: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    /// The loudest level (RFC 6464 units) heard from `participant`'s microphone recently.
    pub fn observe(&mut self, participant: &ParticipantId, level: u8, now: DateTime<Utc>) {
        let loudness = f32::from(127u8.saturating_sub(level.min(127)));
        let entry = self
            .levels
            .entry(participant.clone())
            .or_insert(Level { loudness, at: now });
        entry.loudness = 0.6 * entry.loudness + 0.4 * loudness;
        entry.at = now;
    }

    /// Forget someone who left or stopped publishing.
    pub fn forget(&mut self, participant: &ParticipantId) {
        self.levels.remove(participant);
    }

    /// The current speaker.
    pub fn current(&self) -> Option<&ParticipantId> {
        self.current.as_ref()
    }

    /// Re-evaluates at `now`; `Some(new)` when the active speaker changed (`Some(None)` for
    /// silence).
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Option<Option<ParticipantId>> {
        let threshold = f32::from(127 - SPEECH_LEVEL);
        let speaking = |level: &Level| now - level.at <= STALE && level.loudness >= threshold;
        let loudest = self
            .levels
            .iter()
            .filter(|(_, level)| speaking(level))
            .max_by(|a, b| {
                a.1.loudness
                    .total_cmp(&b.1.loudness)
                    .then_with(|| b.0.cmp(a.0))
            })
            .map(|(id, _)| id.clone());
        let current_speaks = self
            .current
            .as_ref()
            .and_then(|id| self.levels.get(id))
            .is_some_and(speaking);
        let next = match (&self.current, loudest) {
            (_, None) if current_speaks => return None,
            (None, None) => return None,
            (Some(_), None) => None,
            (Some(current), Some(loudest)) if *current == loudest => return None,
            (Some(_), Some(_)) if current_speaks && now - self.since < self.hold => return None,
            (_, Some(loudest)) => Some(loudest),
        };
        self.current = next.clone();
        self.since = now;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    #[test]
    fn the_loudest_speaker_wins_after_the_hold_time() {
        let ada = ParticipantId::from("ada");
        let bob = ParticipantId::from("bob");
        let mut detector = SpeakerDetector::new(TimeDelta::milliseconds(1000));
        detector.observe(&ada, 30, at(0));
        detector.observe(&bob, 127, at(0));
        assert_eq!(detector.evaluate(at(0)), Some(Some(ada.clone())));
        assert_eq!(detector.evaluate(at(100)), None);
        // Bob gets louder, but Ada is held for a second.
        for ms in (200..=1200).step_by(200) {
            detector.observe(&ada, 50, at(ms));
            detector.observe(&bob, 10, at(ms));
            if ms < 1000 {
                assert_eq!(detector.evaluate(at(ms)), None, "at {ms} ms");
            }
        }
        assert_eq!(detector.evaluate(at(1200)), Some(Some(bob.clone())));
    }

    #[test]
    fn silence_clears_the_speaker() {
        let ada = ParticipantId::from("ada");
        let mut detector = SpeakerDetector::new(TimeDelta::milliseconds(500));
        detector.observe(&ada, 20, at(0));
        assert_eq!(detector.evaluate(at(0)), Some(Some(ada.clone())));
        // No more levels: stale after a second.
        assert_eq!(detector.evaluate(at(500)), None);
        assert_eq!(detector.evaluate(at(1500)), Some(None));
        assert_eq!(detector.evaluate(at(1600)), None);
    }

    #[test]
    fn background_noise_is_not_speech() {
        let ada = ParticipantId::from("ada");
        let mut detector = SpeakerDetector::new(TimeDelta::milliseconds(500));
        detector.observe(&ada, 90, at(0));
        assert_eq!(detector.evaluate(at(0)), None);
    }
}
