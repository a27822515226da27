//! Where the operator's "now" comes from. The lifecycle core never reads the clock; the
//! operator asks a [`Clock`] and hands the answer in, so tests and benchmarks drive it on
//! virtual time with a [`ManualClock`].

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use tokio::sync::watch;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The time now.
    fn now(&self) -> DateTime<Utc>;

    /// Fires whenever time jumps (a manual clock being moved), so every conference is
    /// re-evaluated; the system clock never jumps and relies on requeues instead.
    fn jumps(&self) -> BoxStream<'static, ()>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        stream::pending().boxed()
    }
}

/// A clock that moves only when told to: virtual time for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    jumped: watch::Sender<u64>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(now)),
            jumped: watch::channel(0).0,
        }
    }

    /// Moves the clock to `to` and re-evaluates every conference.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
        self.jumped.send_modify(|n| *n += 1);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let to = self.now() + by;
        self.set(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        let mut rx = self.jumped.subscribe();
        rx.mark_unchanged();
        stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
        .boxed()
    }
}
