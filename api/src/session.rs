//! Login sessions: a random token handed to the client (cookie or bearer), of which only a
//! SHA-256 hash is stored, so a database dump does not contain usable sessions.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use proto::AccountId;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::Result;
use crate::clock::{db_time, parse_db_time};
use crate::db::Db;

/// A random secret, URL-safe base64 without padding.
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Creates a session for `account`; returns the token and its expiry.
///
/// # Errors
/// Database errors.
pub async fn create(
    db: &Db,
    account: &AccountId,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(String, DateTime<Utc>)> {
    let token = random_secret(32);
    let expires = now + ttl;
    sqlx::query("INSERT INTO sessions (token_hash, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash(&token))
        .bind(account.as_str())
        .bind(db_time(now))
        .bind(db_time(expires))
        .execute(&db.pool)
        .await?;
    Ok((token, expires))
}

/// The account a live session belongs to.
///
/// # Errors
/// Database errors.
pub async fn account_of(db: &Db, token: &str, now: DateTime<Utc>) -> Result<Option<AccountId>> {
    let row = sqlx::query("SELECT account_id, expires_at FROM sessions WHERE token_hash = $1")
        .bind(hash(token))
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let expires = parse_db_time(&row.try_get::<String, _>("expires_at")?)?;
    if expires <= now {
        return Ok(None);
    }
    Ok(Some(AccountId(row.try_get("account_id")?)))
}

/// Ends one session.
///
/// # Errors
/// Database errors.
pub async fn delete(db: &Db, token: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(hash(token))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Ends every session of an account except, optionally, one.
///
/// # Errors
/// Database errors.
pub async fn delete_all_of<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Any>,
    account: &AccountId,
    keep: Option<&str>,
) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND token_hash <> $2")
        .bind(account.as_str())
        .bind(keep.map(hash).unwrap_or_default())
        .execute(db)
        .await?;
    Ok(())
}

/// Removes expired sessions.
///
/// # Errors
/// Database errors.
pub async fn purge_expired(db: &Db, now: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(db_time(now))
        .execute(&db.pool)
        .await?
        .rows_affected())
}
