//! New calls per source address: a token bucket per address, on time given as input.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Buckets of call starts, one per source address.
#[derive(Debug)]
pub struct CallRate {
    per_minute: u32,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl CallRate {
    /// `per_minute` calls per minute on average, as many at once.
    pub fn new(per_minute: u32) -> CallRate {
        CallRate {
            per_minute: per_minute.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one call from `source`'s bucket; `Err(wait)` when it is empty.
    ///
    /// # Errors
    /// How long until a call from `source` is accepted again.
    pub fn take(&mut self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        if self.buckets.len() > 10_000 {
            // Forget full buckets: they are as good as new ones.
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < capacity
            });
        }
        let (tokens, at) = self.buckets.entry(source).or_insert((capacity, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_waits_and_others_are_not_affected() {
        let mut rate = CallRate::new(3);
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(rate.take(a, start), Ok(()));
        }
        let wait = rate.take(a, start).expect_err("empty");
        assert_eq!(wait.as_secs(), 20);
        assert_eq!(rate.take(b, start), Ok(()));
        assert_eq!(rate.take(a, start + Duration::from_secs(20)), Ok(()));
        assert!(rate.take(a, start + Duration::from_secs(21)).is_err());
    }
}
