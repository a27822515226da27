//! Recordings: the SFU writes each track in segments to the file store and reports the start
//! and the stop (room events); this module keeps a row per recording, composes the segments
//! into one MP4 after the stop (or once the SFU pod that made it is gone), files it under the
//! occurrence's archive entry, and removes old ones.
//!
//! The file layout under `recordings/{id}/` is the SFU's contract (docs/recording.md).

pub mod compose;
pub mod worker;

use chrono::{DateTime, Utc};
use proto::{AccountId, AccountLevel, ConferenceId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::account::Account;
use crate::clock::{db_time, parse_db_time};
use crate::db::Db;
use crate::{Error, Result};

/// The composed file of a recording.
pub fn media_key(id: &str) -> String {
    format!("recordings/{id}/recording.mp4")
}

/// The chat sidecar of a recording (WebVTT).
pub fn chat_key(id: &str) -> String {
    format!("recordings/{id}/chat.vtt")
}

/// Everything of a recording in the file store.
pub fn prefix(id: &str) -> String {
    format!("recordings/{id}")
}

/// Where a recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The SFU is writing it.
    Recording,
    /// Stopped; waiting to be composed.
    Stopped,
    /// An API replica is composing it.
    Composing,
    /// Composed: it plays.
    Ready,
    /// Composing failed for good (`error` says why).
    Failed,
}

impl State {
    /// Its name in SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Recording => "recording",
            State::Stopped => "stopped",
            State::Composing => "composing",
            State::Ready => "ready",
            State::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "recording" => State::Recording,
            "stopped" => State::Stopped,
            "composing" => State::Composing,
            "ready" => State::Ready,
            "failed" => State::Failed,
            other => return Err(Error::Internal(format!("stored recording state {other:?}"))),
        })
    }
}

/// One recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Its ID (random; names its files).
    pub id: String,
    /// The conference it was made in.
    pub conference: ConferenceId,
    /// The meeting's owner when it was made.
    pub owner: AccountId,
    /// The meeting's topic when it was made.
    pub topic: String,
    /// The occurrence's start (`None`: a permanent room).
    pub occurrence_start: Option<DateTime<Utc>>,
    /// The archive entry it is filed under, once the occurrence is archived.
    pub archive_id: Option<String>,
    /// Who started it (`account:<id>`).
    pub started_by_identity: String,
    /// Their name.
    pub started_by_name: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it stopped.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub state: State,
    /// The composed length.
    pub duration_ms: Option<i64>,
    /// The composed file's size.
    pub size_bytes: Option<i64>,
    /// Why composing failed.
    pub error: Option<String>,
    /// Composing attempts so far.
    pub attempts: i64,
}

const COLUMNS: &str = "id, conference_id, owner_id, topic, occurrence_start, archive_id, started_by_identity, started_by_name, started_at, stopped_at, state, duration_ms, size_bytes, error, attempts";

fn from_row(row: &AnyRow) -> Result<Recording> {
    let time = |name: &str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<String>, _>(name)?
            .filter(|s| !s.is_empty())
            .map(|s| parse_db_time(&s))
            .transpose()
    };
    Ok(Recording {
        id: row.try_get("id")?,
        conference: ConferenceId::from(row.try_get::<String, _>("conference_id")?),
        owner: AccountId::from(row.try_get::<String, _>("owner_id")?),
        topic: row.try_get("topic")?,
        occurrence_start: time("occurrence_start")?,
        archive_id: row.try_get("archive_id")?,
        started_by_identity: row.try_get("started_by_identity")?,
        started_by_name: row.try_get("started_by_name")?,
        started_at: time("started_at")?
            .ok_or_else(|| Error::Internal("a recording without a start".into()))?,
        stopped_at: time("stopped_at")?,
        state: State::parse(&row.try_get::<String, _>("state")?)?,
        duration_ms: row.try_get("duration_ms")?,
        size_bytes: row.try_get("size_bytes")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
    })
}

/// The SFU reported a recording's start. Idempotent (a retried report changes nothing).
///
/// # Errors
/// Database errors.
#[allow(clippy::too_many_arguments)]
pub async fn started(
    db: &Db,
    id: &str,
    conference: &ConferenceId,
    owner: &AccountId,
    topic: &str,
    occurrence_start: Option<DateTime<Utc>>,
    identity: &str,
    name: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO recordings (id, conference_id, owner_id, topic, occurrence_start, archive_id, started_by_identity, started_by_name, started_at, state, attempts) \
         VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, 'recording', 0) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(conference.as_str())
    .bind(owner.as_str())
    .bind(topic)
    .bind(occurrence_start.map(db_time))
    .bind(identity)
    .bind(name)
    .bind(db_time(at))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The SFU reported a recording's stop: it waits for the composer.
///
/// # Errors
/// Database errors; not found when the start was never reported.
pub async fn stopped(db: &Db, id: &str, at: DateTime<Utc>) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE recordings SET state = 'stopped', stopped_at = $1 WHERE id = $2 AND state = 'recording'",
    )
    .bind(db_time(at))
    .bind(id)
    .execute(&db.pool)
    .await?;
    if updated.rows_affected() == 0 && get(db, id).await?.is_none() {
        return Err(Error::not_found(format!("no recording {id}")));
    }
    Ok(())
}

/// Files the recordings made in the occurrence of `conference` that started at `start` under
/// the archive entry `archive_id` (inside the archiving transaction).
///
/// # Errors
/// Database errors.
pub async fn link_archive(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    archive_id: &str,
    conference: &ConferenceId,
    start: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE recordings SET archive_id = $1 WHERE conference_id = $2 AND occurrence_start = $3 AND archive_id IS NULL",
    )
    .bind(archive_id)
    .bind(conference.as_str())
    .bind(db_time(start))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One recording.
///
/// # Errors
/// Database errors.
pub async fn get(db: &Db, id: &str) -> Result<Option<Recording>> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM recordings WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The recordings filed under an archive entry, by start.
///
/// # Errors
/// Database errors.
pub async fn of_archive(db: &Db, archive_id: &str) -> Result<Vec<Recording>> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM recordings WHERE archive_id = $1 ORDER BY started_at"
    ))
    .bind(archive_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every recording, newest first.
///
/// # Errors
/// Database errors.
pub async fn all(db: &Db) -> Result<Vec<Recording>> {
    let rows = sqlx::query(sql!("SELECT {COLUMNS} FROM recordings ORDER BY started_at DESC"))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes a recording's row (its files are the caller's: [`delete_files`]).
///
/// # Errors
/// Database errors.
pub async fn delete_row(db: &Db, id: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM recordings WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Deletes every file of a recording.
///
/// # Errors
/// File store errors.
pub async fn delete_files(files: &files::Files, id: &str) -> Result<()> {
    files
        .delete_prefix(&prefix(id))
        .await
        .map_err(|err| Error::Internal(format!("deleting the files of recording {id}: {err}")))?;
    Ok(())
}

/// Who may play, download and delete a recording: administrators, the meeting's owner, whoever
/// started it, and the accounts that took part in the meeting as moderators (level moderator
/// or higher: they enter every room as moderators).
///
/// `attended`: whether the viewer's account was in the occurrence.
pub fn may_see(viewer: &Account, recording: &Recording, attended: bool) -> bool {
    viewer.level == AccountLevel::Admin
        || recording.owner == viewer.id
        || recording.started_by_identity == format!("account:{}", viewer.id)
        || (attended && viewer.level >= AccountLevel::Moderator)
}

/// Whether `identity` was in the occurrence a recording was made in.
///
/// # Errors
/// Database errors.
pub async fn attended(db: &Db, recording: &Recording, identity: &str) -> Result<bool> {
    let row = match &recording.archive_id {
        Some(archive_id) => {
            sqlx::query("SELECT 1 AS one FROM attendance WHERE archive_id = $1 AND identity = $2 LIMIT 1")
                .bind(archive_id)
                .bind(identity)
                .fetch_optional(&db.pool)
                .await?
        }
        None => {
            sqlx::query(
                "SELECT 1 AS one FROM attendance WHERE conference_id = $1 AND archive_id IS NULL AND identity = $2 LIMIT 1",
            )
            .bind(recording.conference.as_str())
            .bind(identity)
            .fetch_optional(&db.pool)
            .await?
        }
    };
    Ok(row.is_some())
}
