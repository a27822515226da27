//! Slowing down guessing: repeated failed logins (per address, per account and address, per
//! account) and failed meeting passwords (per meeting ID and per address). Counts live in the
//! database so every API replica sees them.
//!
//! After `free` attempts each further attempt must wait twice as long as the one before
//! (1 s, 2 s, 4 s, … up to the limit's `max_wait`) counted from the last attempt.
//!
//! An attempt is counted *before* the password is checked ([`reserve`]), in one atomic
//! compare-and-set, so a burst of concurrent guesses cannot all pass the check before any of
//! them is counted; a success hands its reservation back ([`refund`]), which never clears the
//! failures before it.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use crate::clock::{db_time, parse_db_time};
use crate::db::Db;
use crate::{Error, Result};

/// The longest wait imposed on an address or a meeting ID.
const MAX_WAIT: Duration = Duration::minutes(15);
/// Attempts are forgotten after this long without another.
pub const FORGET_AFTER: Duration = Duration::hours(24);
/// Compare-and-set rounds before a contended key is treated as throttled.
const CAS_ROUNDS: usize = 64;

/// How many failures a key tolerates before it is slowed down, and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Attempts without delay.
    pub free: i64,
    /// The longest wait between two attempts once slowed down.
    pub max_wait: Duration,
}

/// Per address: many people may share one address (an office, a mobile carrier's NAT).
pub const PER_ADDRESS: Limit = Limit {
    free: 20,
    max_wait: MAX_WAIT,
};
/// Per account and address: a few typos are fine; an attacker at one address is stopped.
pub const PER_ACCOUNT_AND_ADDRESS: Limit = Limit {
    free: 5,
    max_wait: MAX_WAIT,
};
/// Per account, from every address together: guesses spread over many addresses are slowed
/// down, but never by more than a short wait, so nobody can lock the owner out of an account
/// (the known `admin` login above all) by failing on purpose.
pub const PER_ACCOUNT: Limit = Limit {
    free: 20,
    max_wait: Duration::seconds(2),
};

/// The wait required after `attempts` attempts.
pub fn wait_after(limit: Limit, attempts: i64) -> Duration {
    if attempts < limit.free {
        return Duration::zero();
    }
    let exponent = u32::try_from((attempts - limit.free).min(20)).unwrap_or(20);
    Duration::seconds(1_i64 << exponent).min(limit.max_wait)
}

/// What [`reserve`] decides for a key's stored count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt may go ahead; the count becomes this.
    Go(i64),
    /// The attempt must wait this long.
    Wait(Duration),
}

/// The pure rule: given the stored count and time of the last attempt, may one more go now?
pub fn decide(limit: Limit, stored: Option<(i64, DateTime<Utc>)>, now: DateTime<Utc>) -> Verdict {
    let attempts = match stored {
        Some((attempts, last)) if now - last <= FORGET_AFTER => {
            let until = last + wait_after(limit, attempts);
            if now < until {
                return Verdict::Wait(until - now);
            }
            attempts
        }
        _ => 0,
    };
    Verdict::Go(attempts + 1)
}

fn too_many(wait: Duration) -> Error {
    Error::TooManyAttempts {
        retry_after: u64::try_from(wait.num_seconds().max(1)).unwrap_or(1),
    }
}

/// Refuses while `key` must wait, without counting anything (the attempt is counted with
/// [`reserve`] once it turns out wrong).
///
/// # Errors
/// 429 with the seconds left; database errors.
pub async fn check(db: &Db, key: &str, limit: Limit, now: DateTime<Utc>) -> Result<()> {
    let row = sqlx::query("SELECT failures, last_failure_at FROM login_failures WHERE key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?;
    let stored = match row {
        Some(row) => Some((
            row.try_get::<i64, _>("failures")?,
            parse_db_time(&row.try_get::<String, _>("last_failure_at")?)?,
        )),
        None => None,
    };
    match decide(limit, stored, now) {
        Verdict::Go(_) => Ok(()),
        Verdict::Wait(wait) => Err(too_many(wait)),
    }
}

/// Locks that make the attempts on one key from this process take turns (keys share 64 of
/// them), so that a burst from one address — a class joining from behind one NAT — does not
/// spin on the compare-and-set and fail; replicas still race, and the compare-and-set settles
/// that.
static TURNS: std::sync::LazyLock<[tokio::sync::Mutex<()>; 64]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|_| tokio::sync::Mutex::new(())));

fn turn(key: &str) -> &'static tokio::sync::Mutex<()> {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    &TURNS[usize::try_from(hash % 64).unwrap_or(0)]
}

/// Counts an attempt for `key` unless it must wait; atomic across requests and replicas.
///
/// # Errors
/// 429 with the seconds left; database errors.
pub async fn reserve(db: &Db, key: &str, limit: Limit, now: DateTime<Utc>) -> Result<()> {
    let _turn = turn(key).lock().await;
    for _ in 0..CAS_ROUNDS {
        let row =
            sqlx::query("SELECT failures, last_failure_at FROM login_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(&db.pool)
                .await?;
        let stored = match &row {
            Some(row) => {
                let last: String = row.try_get("last_failure_at")?;
                Some((row.try_get::<i64, _>("failures")?, last))
            }
            None => None,
        };
        let parsed = match &stored {
            Some((attempts, last)) => Some((*attempts, parse_db_time(last)?)),
            None => None,
        };
        let attempts = match decide(limit, parsed, now) {
            Verdict::Go(attempts) => attempts,
            Verdict::Wait(wait) => return Err(too_many(wait)),
        };
        // Written only if nobody counted in between; else read again and decide again.
        let written = match &stored {
            None => sqlx::query(
                "INSERT INTO login_failures (key, failures, last_failure_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(attempts)
            .bind(db_time(now))
            .execute(&db.pool)
            .await?
            .rows_affected(),
            Some((before, last)) => sqlx::query(
                "UPDATE login_failures SET failures = $1, last_failure_at = $2 \
                 WHERE key = $3 AND failures = $4 AND last_failure_at = $5",
            )
            .bind(attempts)
            .bind(db_time(now))
            .bind(key)
            .bind(*before)
            .bind(last)
            .execute(&db.pool)
            .await?
            .rows_affected(),
        };
        if written == 1 {
            return Ok(());
        }
    }
    // Hundreds of writers on one key at once: that is a guessing burst; make it wait.
    Err(too_many(Duration::seconds(1)))
}

/// Reserves an attempt on every key in order; when one must wait, the ones already taken are
/// handed back and the wait is the answer.
///
/// # Errors
/// 429 with the seconds left; database errors.
pub async fn reserve_all(db: &Db, keys: &[(&str, Limit)], now: DateTime<Utc>) -> Result<()> {
    for (taken, (key, limit)) in keys.iter().enumerate() {
        if let Err(err) = reserve(db, key, *limit, now).await {
            let taken: Vec<&str> = keys.iter().take(taken).map(|(key, _)| *key).collect();
            refund_all(db, &taken).await?;
            return Err(err);
        }
    }
    Ok(())
}

/// [`refund`] for several keys.
///
/// # Errors
/// Database errors.
pub async fn refund_all(db: &Db, keys: &[&str]) -> Result<()> {
    for key in keys {
        refund(db, key).await?;
    }
    Ok(())
}

/// Hands back the attempt [`reserve`] counted for `key`, after a success. The attempts before
/// it stay counted.
///
/// # Errors
/// Database errors.
pub async fn refund(db: &Db, key: &str) -> Result<()> {
    let _turn = turn(key).lock().await;
    sqlx::query(
        "UPDATE login_failures SET failures = failures - 1 WHERE key = $1 AND failures > 0",
    )
    .bind(key)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Clears `key` (an account's own counter after its owner logged in).
///
/// # Errors
/// Database errors.
pub async fn clear(db: &Db, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE key = $1")
        .bind(key)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Deletes counters not touched for [`FORGET_AFTER`] (they no longer slow anyone down).
///
/// # Errors
/// Database errors.
pub async fn purge(db: &Db, now: DateTime<Utc>) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM login_failures WHERE last_failure_at < $1")
            .bind(db_time(now - FORGET_AFTER))
            .execute(&db.pool)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn waits_double_after_the_free_attempts_up_to_a_cap() {
        assert_eq!(wait_after(PER_ACCOUNT_AND_ADDRESS, 4), Duration::zero());
        assert_eq!(wait_after(PER_ACCOUNT_AND_ADDRESS, 5), Duration::seconds(1));
        assert_eq!(wait_after(PER_ACCOUNT_AND_ADDRESS, 7), Duration::seconds(4));
        assert_eq!(wait_after(PER_ACCOUNT_AND_ADDRESS, 60), MAX_WAIT);
    }

    #[test]
    fn an_account_is_slowed_down_never_locked() {
        assert_eq!(wait_after(PER_ACCOUNT, 10_000), Duration::seconds(2));
    }

    #[test]
    fn the_attempt_after_the_free_ones_waits_from_the_last_attempt() {
        let now = at("2026-06-01T08:00:00Z");
        let limit = PER_ADDRESS;
        assert_eq!(decide(limit, None, now), Verdict::Go(1));
        assert_eq!(decide(limit, Some((19, now)), now), Verdict::Go(20));
        assert_eq!(
            decide(limit, Some((20, now)), now),
            Verdict::Wait(Duration::seconds(1))
        );
        assert_eq!(
            decide(limit, Some((20, now)), now + Duration::seconds(1)),
            Verdict::Go(21)
        );
        // A day later everything is forgotten.
        assert_eq!(
            decide(limit, Some((500, now)), now + Duration::hours(25)),
            Verdict::Go(1)
        );
    }
}
