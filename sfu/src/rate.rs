//! A token bucket on virtual time: `burst` actions at once, then `per_second` on average.
//!
//! The room keeps one per participant and kind of action (chat; publish, mute and moderation),
//! so one flooder cannot make everyone else's sessions carry a message per keystroke.

use chrono::{DateTime, TimeDelta, Utc};

/// The rate and burst of one kind of action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Actions per second on average; `0` turns the limit off.
    pub per_second: f64,
    /// Actions allowed at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0,
    };
}

/// One bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    at: Option<DateTime<Utc>>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            at: None,
        }
    }

    /// Takes one token at `now`: `Ok` when the action may happen, else how long until it may.
    ///
    /// # Errors
    /// The wait until the next token.
    pub fn take(&mut self, now: DateTime<Utc>) -> Result<(), TimeDelta> {
        if self.rate.per_second <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.rate.burst.max(1));
        if let Some(at) = self.at {
            let elapsed = (now - at).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
            self.tokens = (self.tokens + elapsed * self.rate.per_second).min(burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate.per_second;
            Err(TimeDelta::microseconds((wait * 1e6).ceil() as i64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut bucket = TokenBucket::new(Rate {
            per_second: 5.0,
            burst: 10,
        });
        for _ in 0..10 {
            bucket.take(at(0)).expect("burst");
        }
        let wait = bucket.take(at(0)).expect_err("empty");
        assert_eq!(wait, TimeDelta::milliseconds(200));
        // 5 per second: one more every 200 ms.
        bucket.take(at(200)).expect("refilled");
        assert!(bucket.take(at(300)).is_err());
        bucket.take(at(400)).expect("refilled");
        // A long pause refills up to the burst, not beyond.
        for _ in 0..10 {
            bucket.take(at(60_000)).expect("burst again");
        }
        assert!(bucket.take(at(60_000)).is_err());
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let mut bucket = TokenBucket::new(Rate::UNLIMITED);
        for _ in 0..10_000 {
            bucket.take(at(0)).expect("unlimited");
        }
    }
}
