//! The archive of past occurrences and the attendance the SFU reports, in SQL.
//!
//! An occurrence is archived once (a unique key on conference and start makes concurrent API
//! replicas agree); its attendance rows are linked to the archive entry at that moment.

use chrono::{DateTime, Utc};
use proto::{AccountId, ConferenceId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock::{db_time, parse_db_time};
use crate::conference::{Conference, Definition, Kind};
use crate::db::{Db, flag, int};
use crate::{Error, Result};

/// One archived occurrence, with what is needed to show and repeat it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The archive entry's ID.
    pub id: String,
    /// The conference it came from (it may be gone).
    pub conference: ConferenceId,
    /// Its owner.
    pub owner: AccountId,
    /// Topic at the time.
    pub topic: String,
    /// Meeting ID at the time.
    pub meeting_id: String,
    /// How it was created.
    pub kind: Kind,
    /// The occurrence's start.
    pub start: DateTime<Utc>,
    /// The occurrence's end.
    pub end: DateTime<Utc>,
    /// Its time zone.
    pub time_zone: String,
    /// Its recurrence at the time.
    pub recurrence: Option<String>,
    /// Its participant limit.
    pub max_participants: Option<u32>,
    /// Whether it admitted people without the owner.
    pub allow_join_without_owner: bool,
    /// Its media.
    pub media: String,
    /// Its invitees.
    pub invitees: Vec<String>,
}

/// One person's presence in an occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendance {
    /// `account:<id>` or `guest:<id>`.
    pub identity: String,
    /// The name shown.
    pub display_name: String,
    /// When they were admitted.
    pub joined_at: DateTime<Utc>,
    /// When they left (`None`: still in, or the SFU never said).
    pub left_at: Option<DateTime<Utc>>,
}

impl Entry {
    /// The occurrence as a definition again (for repeating it); values that no longer parse
    /// fall back to UTC and audio and video.
    pub fn definition(&self) -> Definition {
        Definition {
            topic: self.topic.clone(),
            kind: self.kind,
            start: Some(self.start),
            end: Some(self.end),
            time_zone: self.time_zone.parse().unwrap_or(chrono_tz::UTC),
            recurrence: self.recurrence.clone(),
            max_participants: self.max_participants,
            allow_join_without_owner: self.allow_join_without_owner,
            media: proto::Media::parse(&self.media).unwrap_or_default(),
            // The archive keeps no recording setting; a repeat starts from the default.
            recording_allowed: true,
            meeting_id: proto::MeetingId(self.meeting_id.clone()),
            password: String::new(),
            invitees: self.invitees.clone(),
        }
    }
}

const COLUMNS: &str = "id, conference_id, owner_id, topic, meeting_id, kind, start_at, end_at, time_zone, recurrence, \
     max_participants, allow_join_without_owner, media, invitees";

fn from_row(row: &AnyRow) -> Result<Entry> {
    let kind: String = row.try_get("kind")?;
    let invitees: String = row.try_get("invitees")?;
    Ok(Entry {
        id: row.try_get("id")?,
        conference: ConferenceId(row.try_get("conference_id")?),
        owner: AccountId(row.try_get("owner_id")?),
        topic: row.try_get("topic")?,
        meeting_id: row.try_get("meeting_id")?,
        kind: Kind::parse(&kind)
            .ok_or_else(|| Error::Internal(format!("stored kind {kind:?} is unknown")))?,
        start: parse_db_time(&row.try_get::<String, _>("start_at")?)?,
        end: parse_db_time(&row.try_get::<String, _>("end_at")?)?,
        time_zone: row.try_get("time_zone")?,
        recurrence: row.try_get("recurrence")?,
        max_participants: row
            .try_get::<Option<i64>, _>("max_participants")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        allow_join_without_owner: flag(row.try_get("allow_join_without_owner")?),
        media: row.try_get("media")?,
        invitees: serde_json::from_str(&invitees)
            .map_err(|err| Error::Internal(format!("stored invitees: {err}")))?,
    })
}

/// Archives the occurrence of `conference` that started at `start` and ended at `end`.
/// Idempotent: a second call for the same occurrence changes nothing.
///
/// # Errors
/// Database errors.
pub async fn archive_occurrence(
    db: &Db,
    conference: &Conference,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    let d = &conference.definition;
    let id = uuid::Uuid::new_v4().to_string();
    let invitees =
        serde_json::to_string(&d.invitees).map_err(|err| Error::Internal(err.to_string()))?;
    let mut tx = db.pool.begin().await?;
    sqlx::query(sql!(
        "INSERT INTO archive ({COLUMNS}, archived_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (conference_id, start_at) DO NOTHING"
    ))
    .bind(&id)
    .bind(conference.id.as_str())
    .bind(conference.owner.as_str())
    .bind(&d.topic)
    .bind(d.meeting_id.as_str())
    .bind(d.kind.as_str())
    .bind(db_time(start))
    .bind(db_time(end))
    .bind(d.time_zone.name())
    .bind(d.recurrence.clone())
    .bind(d.max_participants.map(i64::from))
    .bind(int(d.allow_join_without_owner))
    .bind(d.media.as_str())
    .bind(invitees)
    .bind(db_time(now))
    .execute(&mut *tx)
    .await?;
    let archive_id: String =
        sqlx::query("SELECT id FROM archive WHERE conference_id = $1 AND start_at = $2")
            .bind(conference.id.as_str())
            .bind(db_time(start))
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
    sqlx::query(
        "UPDATE attendance SET archive_id = $1 WHERE conference_id = $2 AND occurrence_start = $3 AND archive_id IS NULL",
    )
    .bind(&archive_id)
    .bind(conference.id.as_str())
    .bind(db_time(start))
    .execute(&mut *tx)
    .await?;
    crate::recording::link_archive(&mut tx, &archive_id, &conference.id, start).await?;
    // People the SFU never reported leaving are counted until the end of the occurrence.
    sqlx::query("UPDATE attendance SET left_at = $1 WHERE archive_id = $2 AND left_at IS NULL")
        .bind(db_time(end.max(start)))
        .bind(&archive_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Files the attendance recorded for the occurrence starting at `from` under `to`: an edit
/// moved the start of that occurrence while it ran (or was open early).
///
/// # Errors
/// Database errors.
pub async fn move_occurrence(
    db: &Db,
    conference: &ConferenceId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE attendance SET occurrence_start = $1 WHERE conference_id = $2 AND occurrence_start = $3 AND archive_id IS NULL",
    )
    .bind(db_time(to))
    .bind(conference.as_str())
    .bind(db_time(from))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Archive entries, newest first: all of them, or one owner's.
///
/// # Errors
/// Database errors.
pub async fn list(db: &Db, owner: Option<&AccountId>) -> Result<Vec<Entry>> {
    let rows = match owner {
        Some(owner) => {
            sqlx::query(sql!(
                "SELECT {COLUMNS} FROM archive WHERE owner_id = $1 ORDER BY start_at DESC"
            ))
            .bind(owner.as_str())
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(sql!("SELECT {COLUMNS} FROM archive ORDER BY start_at DESC"))
                .fetch_all(&db.pool)
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// One archive entry.
///
/// # Errors
/// Database errors.
pub async fn get(db: &Db, id: &str) -> Result<Option<Entry>> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM archive WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes an archive entry with its attendance; whether it existed.
///
/// # Errors
/// Database errors.
pub async fn delete(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.pool.begin().await?;
    let deleted = delete_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(deleted)
}

/// [`delete`] inside the caller's transaction.
///
/// # Errors
/// Database errors.
pub async fn delete_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str) -> Result<bool> {
    sqlx::query("DELETE FROM attendance WHERE archive_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM archive WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// The attendance of an archive entry, by arrival.
///
/// # Errors
/// Database errors.
pub async fn attendance(db: &Db, archive_id: &str) -> Result<Vec<Attendance>> {
    let rows = sqlx::query(
        "SELECT identity, display_name, joined_at, left_at FROM attendance WHERE archive_id = $1 ORDER BY joined_at, display_name",
    )
    .bind(archive_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(attendance_from_row).collect()
}

fn attendance_from_row(row: &AnyRow) -> Result<Attendance> {
    Ok(Attendance {
        identity: row.try_get("identity")?,
        display_name: row.try_get("display_name")?,
        joined_at: parse_db_time(&row.try_get::<String, _>("joined_at")?)?,
        left_at: row
            .try_get::<Option<String>, _>("left_at")?
            .as_deref()
            .map(parse_db_time)
            .transpose()?,
    })
}

/// Records someone admitted to a conference's current occurrence.
///
/// # Errors
/// Database errors.
pub async fn joined(
    db: &Db,
    conference: &ConferenceId,
    occurrence_start: Option<DateTime<Utc>>,
    identity: &str,
    display_name: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    // A reconnect replaces the old session: close any row left open for the identity.
    sqlx::query("UPDATE attendance SET left_at = $1 WHERE conference_id = $2 AND identity = $3 AND left_at IS NULL AND archive_id IS NULL")
        .bind(db_time(at))
        .bind(conference.as_str())
        .bind(identity)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO attendance (id, conference_id, occurrence_start, archive_id, identity, display_name, joined_at, left_at) \
         VALUES ($1, $2, $3, NULL, $4, $5, $6, NULL)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(conference.as_str())
    .bind(occurrence_start.map(db_time))
    .bind(identity)
    .bind(display_name)
    .bind(db_time(at))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Records someone leaving.
///
/// # Errors
/// Database errors.
pub async fn left(
    db: &Db,
    conference: &ConferenceId,
    identity: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("UPDATE attendance SET left_at = $1 WHERE conference_id = $2 AND identity = $3 AND left_at IS NULL")
        .bind(db_time(at))
        .bind(conference.as_str())
        .bind(identity)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Whether `identity` is in the conference right now (per the SFU's reports).
///
/// # Errors
/// Database errors.
pub async fn is_present(db: &Db, conference: &ConferenceId, identity: &str) -> Result<bool> {
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM attendance WHERE conference_id = $1 AND identity = $2 AND left_at IS NULL AND archive_id IS NULL",
    )
    .bind(conference.as_str())
    .bind(identity)
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    Ok(n > 0)
}

/// Closes every open attendance row of a conference (the meeting was ended).
///
/// # Errors
/// Database errors.
pub async fn close_all(db: &Db, conference: &ConferenceId, at: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE attendance SET left_at = $1 WHERE conference_id = $2 AND left_at IS NULL")
        .bind(db_time(at))
        .bind(conference.as_str())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Deletes attendance not yet archived (its conference was deleted).
///
/// # Errors
/// Database errors.
pub async fn forget_unarchived<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Any>,
    conference: &ConferenceId,
) -> Result<()> {
    sqlx::query("DELETE FROM attendance WHERE conference_id = $1 AND archive_id IS NULL")
        .bind(conference.as_str())
        .execute(db)
        .await?;
    Ok(())
}
