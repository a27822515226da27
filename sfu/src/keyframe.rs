//! Keyframe-request rate limiting, per published video track.
//!
//! Subscribers ask for keyframes (PLI/FIR) when they join or lose sync; a publisher flooded
//! with requests sends nothing but keyframes. At most one request per track goes upstream per
//! interval; a request inside the interval is not dropped but deferred to the interval's end,
//! so a late joiner whose request was held back still gets a keyframe soon.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use proto::TrackId;

/// What to do with one keyframe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeDecision {
    /// Forward it to the publisher now.
    Forward,
    /// Held back; [`KeyframeLimiter::due`] releases it at the given time.
    Deferred(DateTime<Utc>),
}

#[derive(Debug, Clone, Copy)]
struct TrackState {
    last_sent: DateTime<Utc>,
    deferred: bool,
}

/// Rate limiter for keyframe requests.
#[derive(Debug, Clone)]
pub struct KeyframeLimiter {
    interval: TimeDelta,
    tracks: HashMap<TrackId, TrackState>,
}

impl KeyframeLimiter {
    /// A limiter that lets one request per `interval` through per track.
    pub fn new(interval: TimeDelta) -> Self {
        Self {
            interval,
            tracks: HashMap::new(),
        }
    }

    /// A subscriber asked for a keyframe of `track` at `now`.
    pub fn request(&mut self, track: &TrackId, now: DateTime<Utc>) -> KeyframeDecision {
        match self.tracks.get_mut(track) {
            Some(state) if now - state.last_sent < self.interval => {
                state.deferred = true;
                KeyframeDecision::Deferred(state.last_sent + self.interval)
            }
            Some(state) => {
                state.last_sent = now;
                state.deferred = false;
                KeyframeDecision::Forward
            }
            None => {
                self.tracks.insert(
                    track.clone(),
                    TrackState {
                        last_sent: now,
                        deferred: false,
                    },
                );
                KeyframeDecision::Forward
            }
        }
    }

    /// Deferred requests whose time has come; they count as sent at `now`.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<TrackId> {
        let mut due = Vec::new();
        for (track, state) in &mut self.tracks {
            if state.deferred && now - state.last_sent >= self.interval {
                state.deferred = false;
                state.last_sent = now;
                due.push(track.clone());
            }
        }
        due.sort();
        due
    }

    /// Forget a track that was unpublished.
    pub fn forget(&mut self, track: &TrackId) {
        self.tracks.remove(track);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    #[test]
    fn a_burst_of_requests_sends_one_and_defers_one() {
        let mut limiter = KeyframeLimiter::new(TimeDelta::milliseconds(500));
        let track = TrackId::from("t1");
        assert_eq!(limiter.request(&track, at(0)), KeyframeDecision::Forward);
        for ms in [10, 50, 300] {
            assert_eq!(
                limiter.request(&track, at(ms)),
                KeyframeDecision::Deferred(at(500))
            );
        }
        assert!(limiter.due(at(400)).is_empty());
        assert_eq!(limiter.due(at(500)), vec![track.clone()]);
        assert!(limiter.due(at(2000)).is_empty(), "released only once");
        assert_eq!(limiter.request(&track, at(2000)), KeyframeDecision::Forward);
    }

    #[test]
    fn tracks_are_limited_independently() {
        let mut limiter = KeyframeLimiter::new(TimeDelta::seconds(1));
        assert_eq!(
            limiter.request(&TrackId::from("a"), at(0)),
            KeyframeDecision::Forward
        );
        assert_eq!(
            limiter.request(&TrackId::from("b"), at(1)),
            KeyframeDecision::Forward
        );
    }
}
