//! Slowing down guessing: repeated failed logins (per account and per address) and failed
//! meeting passwords (per meeting ID and per address). Counts live in the database so every
//! API replica sees them.
//!
//! After `free` failures each further attempt must wait twice as long as the one before
//! (1 s, 2 s, 4 s, … up to 15 minutes) counted from the last failure; a success clears the key.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use crate::clock::{db_time, parse_db_time};
use crate::db::Db;
use crate::{Error, Result};

/// The longest wait imposed.
const MAX_WAIT: Duration = Duration::minutes(15);
/// Failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::hours(24);

/// How many failures a key tolerates before it is slowed down.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Failures without delay.
    pub free: i64,
}

/// Per account: a few typos are fine.
pub const PER_ACCOUNT: Limit = Limit { free: 5 };
/// Per address: many people may share one address.
pub const PER_ADDRESS: Limit = Limit { free: 20 };

/// The wait required after `failures` failures.
pub fn wait_after(limit: Limit, failures: i64) -> Duration {
    if failures < limit.free {
        return Duration::zero();
    }
    let exponent = u32::try_from((failures - limit.free).min(20)).unwrap_or(20);
    Duration::seconds(1_i64 << exponent).min(MAX_WAIT)
}

/// Refuses the attempt when `key` must still wait.
///
/// # Errors
/// 429 with the seconds left; database errors.
pub async fn check(db: &Db, key: &str, limit: Limit, now: DateTime<Utc>) -> Result<()> {
    let row = sqlx::query("SELECT failures, last_failure_at FROM login_failures WHERE key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(()) };
    let failures: i64 = row.try_get("failures")?;
    let last = parse_db_time(&row.try_get::<String, _>("last_failure_at")?)?;
    if now - last > FORGET_AFTER {
        return Ok(());
    }
    let until = last + wait_after(limit, failures);
    if now < until {
        let retry_after = u64::try_from((until - now).num_seconds().max(1)).unwrap_or(1);
        return Err(Error::TooManyAttempts { retry_after });
    }
    Ok(())
}

/// Counts a failure for `key`.
///
/// # Errors
/// Database errors.
pub async fn fail(db: &Db, key: &str, now: DateTime<Utc>) -> Result<()> {
    let stale = db_time(now - FORGET_AFTER);
    sqlx::query(
        "INSERT INTO login_failures (key, failures, last_failure_at) VALUES ($1, 1, $2) \
         ON CONFLICT (key) DO UPDATE SET \
         failures = CASE WHEN login_failures.last_failure_at < $3 THEN 1 ELSE login_failures.failures + 1 END, \
         last_failure_at = $2",
    )
    .bind(key)
    .bind(db_time(now))
    .bind(stale)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Clears `key` after a success.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_up_to_a_cap() {
        assert_eq!(wait_after(PER_ACCOUNT, 4), Duration::zero());
        assert_eq!(wait_after(PER_ACCOUNT, 5), Duration::seconds(1));
        assert_eq!(wait_after(PER_ACCOUNT, 7), Duration::seconds(4));
        assert_eq!(wait_after(PER_ACCOUNT, 60), MAX_WAIT);
    }
}
