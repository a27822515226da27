//! What must hold beyond one SFU process: exclusions and the end of a permanent room are kept
//! here and checked at `/join`; revocations (an account changed, someone excluded, a meeting
//! ended) are listed for the SFU pods, which close the live sessions they name and refuse join
//! tokens issued before. An SFU that restarts or takes over a meeting asks for the list first,
//! so it forgets nothing an unexpired token could still carry.

use chrono::{DateTime, Duration, Utc};
use proto::{AccountId, ConferenceId, Revocation, Revoked};
use sqlx::Row;

use crate::Result;
use crate::clock::{db_time, parse_db_time};
use crate::db::Db;

/// How much longer than a join token lives a revocation is listed (clock skew between pods,
/// a slow poll).
pub const MARGIN: Duration = Duration::seconds(60);

/// How long exclusions of a scheduled occurrence are kept at most (they go when it is
/// archived; this catches conferences deleted without an archive).
pub const EXCLUSIONS_KEPT: Duration = Duration::days(2);

/// The occurrence key of exclusions: its start, or `''` for a permanent room.
fn occurrence_key(occurrence: Option<DateTime<Utc>>) -> String {
    occurrence.map(db_time).unwrap_or_default()
}

/// Records a revocation for the SFU pods.
///
/// # Errors
/// Database errors.
pub async fn record(db: &Db, what: &Revoked, now: DateTime<Utc>) -> Result<()> {
    let (kind, conference, identity, epoch) = match what {
        Revoked::Account { identity, epoch } => ("account", None, Some(identity.as_str()), *epoch),
        Revoked::Excluded {
            conference,
            identity,
        } => (
            "excluded",
            Some(conference.as_str()),
            Some(identity.as_str()),
            0,
        ),
        Revoked::Ended { conference } => ("ended", Some(conference.as_str()), None, 0),
    };
    sqlx::query(
        "INSERT INTO revocations (id, at, kind, conference_id, identity, epoch) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(db_time(now))
    .bind(kind)
    .bind(conference)
    .bind(identity)
    .bind(i64::from(epoch))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Revocations of the last `window` (a join token's lifetime) and [`MARGIN`], oldest first.
///
/// # Errors
/// Database errors; a stored row that no longer parses.
pub async fn recent(db: &Db, now: DateTime<Utc>, window: Duration) -> Result<Vec<Revocation>> {
    let rows = sqlx::query(
        "SELECT id, at, kind, conference_id, identity, epoch FROM revocations WHERE at >= $1 ORDER BY at, id",
    )
    .bind(db_time(now - window - MARGIN))
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let conference: Option<String> = row.try_get("conference_id")?;
        let identity: Option<String> = row.try_get("identity")?;
        let epoch: i64 = row.try_get("epoch")?;
        let what = match (kind.as_str(), conference, identity) {
            ("account", _, Some(identity)) => Revoked::Account {
                identity,
                epoch: u32::try_from(epoch).unwrap_or(u32::MAX),
            },
            ("excluded", Some(conference), Some(identity)) => Revoked::Excluded {
                conference: ConferenceId(conference),
                identity,
            },
            ("ended", Some(conference), _) => Revoked::Ended {
                conference: ConferenceId(conference),
            },
            _ => {
                tracing::warn!(kind, "a stored revocation is incomplete; skipped");
                continue;
            }
        };
        let at: String = row.try_get("at")?;
        out.push(Revocation {
            id: row.try_get("id")?,
            at: parse_db_time(&at)?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            what,
        });
    }
    Ok(out)
}

/// Forgets what no SFU needs any more: revocations older than `window` and [`MARGIN`],
/// exclusions of occurrences long past.
///
/// # Errors
/// Database errors.
pub async fn purge(db: &Db, now: DateTime<Utc>, window: Duration) -> Result<()> {
    sqlx::query("DELETE FROM revocations WHERE at < $1")
        .bind(db_time(now - window - MARGIN * 2))
        .execute(&db.pool)
        .await?;
    sqlx::query("DELETE FROM exclusions WHERE occurrence <> '' AND excluded_at < $1")
        .bind(db_time(now - EXCLUSIONS_KEPT))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Raises an account's token epoch (its join tokens issued before are revoked) and lists the
/// revocation; returns the new epoch.
///
/// # Errors
/// Database errors.
pub async fn revoke_account(db: &Db, account: &AccountId, now: DateTime<Utc>) -> Result<u32> {
    sqlx::query("UPDATE accounts SET token_epoch = token_epoch + 1 WHERE id = $1")
        .bind(account.as_str())
        .execute(&db.pool)
        .await?;
    let epoch = token_epoch(db, account).await?;
    record(
        db,
        &Revoked::Account {
            identity: format!("account:{account}"),
            epoch,
        },
        now,
    )
    .await?;
    Ok(epoch)
}

/// An account's token epoch (0 for an unknown account).
///
/// # Errors
/// Database errors.
pub async fn token_epoch(db: &Db, account: &AccountId) -> Result<u32> {
    let epoch: Option<i64> = sqlx::query_scalar("SELECT token_epoch FROM accounts WHERE id = $1")
        .bind(account.as_str())
        .fetch_optional(&db.pool)
        .await?;
    Ok(epoch.map_or(0, |e| u32::try_from(e).unwrap_or(u32::MAX)))
}

/// Keeps `identity` (and, for a guest, its network) out of one occurrence of a conference.
///
/// # Errors
/// Database errors.
pub async fn exclude(
    db: &Db,
    conference: &ConferenceId,
    occurrence: Option<DateTime<Utc>>,
    identity: &str,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let key = occurrence_key(occurrence);
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "DELETE FROM exclusions WHERE conference_id = $1 AND occurrence = $2 AND identity = $3",
    )
    .bind(conference.as_str())
    .bind(&key)
    .bind(identity)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO exclusions (conference_id, occurrence, identity, address, excluded_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(conference.as_str())
    .bind(&key)
    .bind(identity)
    .bind(address)
    .bind(db_time(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Why someone is kept out of an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// This identity was excluded.
    Identity,
    /// A guest from the same network was excluded (guests only).
    Network,
}

/// Whether `identity` (a guest from `address`) is kept out of the occurrence.
///
/// # Errors
/// Database errors.
pub async fn excluded(
    db: &Db,
    conference: &ConferenceId,
    occurrence: Option<DateTime<Utc>>,
    identity: &str,
    guest_address: Option<&str>,
) -> Result<Option<Excluded>> {
    let rows = sqlx::query(
        "SELECT identity FROM exclusions WHERE conference_id = $1 AND occurrence = $2 AND (identity = $3 OR (address IS NOT NULL AND address = $4))",
    )
    .bind(conference.as_str())
    .bind(occurrence_key(occurrence))
    .bind(identity)
    .bind(guest_address)
    .fetch_all(&db.pool)
    .await?;
    let mut found = None;
    for row in rows {
        let excluded: String = row.try_get("identity")?;
        if excluded == identity {
            return Ok(Some(Excluded::Identity));
        }
        found = Some(Excluded::Network);
    }
    Ok(found)
}

/// Forgets the exclusions of one occurrence (it was archived, or the permanent room ended).
///
/// # Errors
/// Database errors.
pub async fn forget_exclusions(
    db: &Db,
    conference: &ConferenceId,
    occurrence: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query("DELETE FROM exclusions WHERE conference_id = $1 AND occurrence = $2")
        .bind(conference.as_str())
        .bind(occurrence_key(occurrence))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Moves the exclusions of an occurrence an edit moved (a running meeting extended, say): they
/// hold for the rest of the same meeting.
///
/// # Errors
/// Database errors.
pub async fn move_exclusions(
    db: &Db,
    conference: &ConferenceId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE exclusions SET occurrence = $1 WHERE conference_id = $2 AND occurrence = $3",
    )
    .bind(occurrence_key(Some(to)))
    .bind(conference.as_str())
    .bind(occurrence_key(Some(from)))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Forgets everything kept about a deleted conference.
///
/// # Errors
/// Database errors.
pub async fn forget_conference(db: &Db, conference: &ConferenceId) -> Result<()> {
    for statement in [
        "DELETE FROM exclusions WHERE conference_id = $1",
        "DELETE FROM room_closures WHERE conference_id = $1",
    ] {
        sqlx::query(statement)
            .bind(conference.as_str())
            .execute(&db.pool)
            .await?;
    }
    Ok(())
}

/// Marks a permanent room as ended by a moderator.
///
/// # Errors
/// Database errors.
pub async fn close_room(db: &Db, conference: &ConferenceId, now: DateTime<Utc>) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM room_closures WHERE conference_id = $1")
        .bind(conference.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO room_closures (conference_id, closed_at) VALUES ($1, $2)")
        .bind(conference.as_str())
        .bind(db_time(now))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether a moderator ended the permanent room and nobody privileged opened it since.
///
/// # Errors
/// Database errors.
pub async fn room_closed(db: &Db, conference: &ConferenceId) -> Result<bool> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT closed_at FROM room_closures WHERE conference_id = $1")
            .bind(conference.as_str())
            .fetch_optional(&db.pool)
            .await?;
    Ok(found.is_some())
}

/// Opens an ended permanent room again (its owner or a moderator joins).
///
/// # Errors
/// Database errors.
pub async fn reopen_room(db: &Db, conference: &ConferenceId) -> Result<()> {
    sqlx::query("DELETE FROM room_closures WHERE conference_id = $1")
        .bind(conference.as_str())
        .execute(&db.pool)
        .await?;
    Ok(())
}
