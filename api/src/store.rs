//! The `ConferenceStore` seam: conference definitions and their runtime state. The SQL backend
//! lives here; the Kubernetes backend ([`crate::store_kube`], Conference resources) implements
//! the same trait in a cluster. Archive and attendance always live in SQL (see [`crate::archive`]).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use placement::{Occurrence, Phase, PortRange};
use proto::{AccountId, ConferenceId, Media, MeetingId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock::{db_time, parse_db_time};
use crate::conference::{Conference, Definition, Kind, Placed, Runtime};
use crate::db::{Db, flag, int};
use crate::error::is_unique_violation;
use crate::{Error, Result};

/// A boxed future, so the trait can be used as `dyn ConferenceStore`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Where conference definitions and their runtime state live.
pub trait ConferenceStore: Send + Sync + Debug + 'static {
    /// Stores a new conference. 409 `meetingIdTaken` when its meeting ID is in use.
    fn insert<'a>(&'a self, conference: &'a Conference) -> BoxFut<'a, ()>;
    /// The conference with this ID.
    fn get<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, Option<Conference>>;
    /// The runtime state of the conference with this ID (its phase and assignment), read
    /// fresh: what a join waits on while the conference moves off a lost SFU pod. Stores where
    /// it is cheaper than [`ConferenceStore::get`] answer it directly.
    fn runtime<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, Option<Runtime>> {
        Box::pin(async move { Ok(self.get(id).await?.map(|c| c.runtime)) })
    }
    /// The conferences whose assignment names `pod`: what that SFU pod holds.
    fn placed_on<'a>(&'a self, pod: &'a str) -> BoxFut<'a, Vec<ConferenceId>>;
    /// The conference with this meeting ID.
    fn find_by_meeting_id<'a>(
        &'a self,
        meeting_id: &'a MeetingId,
    ) -> BoxFut<'a, Option<Conference>>;
    /// Every conference, or an owner's, by next start.
    fn list<'a>(&'a self, owner: Option<&'a AccountId>) -> BoxFut<'a, Vec<Conference>>;
    /// Replaces the definition and sequence. 409 `meetingIdTaken`; 404 when gone.
    fn update_definition<'a>(&'a self, conference: &'a Conference) -> BoxFut<'a, ()>;
    /// Records the lifecycle decision: phase, occurrence and placement.
    fn set_lifecycle<'a>(
        &'a self,
        id: &'a ConferenceId,
        phase: Phase,
        occurrence: Option<Occurrence>,
        placed: Option<&'a Placed>,
    ) -> BoxFut<'a, ()>;
    /// Whether something outside the API (the operator) decides phase and placement, so the API
    /// neither places conferences nor runs their lifecycle itself.
    fn placed_by_operator(&self) -> bool {
        false
    }
    /// The conferences assigned to SFU pod `pod` now, with their placement (the pod's
    /// signaling endpoint among it), as the operator recorded them: what the signaling relay
    /// may reach ([`crate::relay`]). Stores whose conferences this service places on its
    /// embedded SFU itself answer none: their clients connect to the SFU directly.
    fn assigned_to<'a>(&'a self, pod: &'a str) -> BoxFut<'a, Vec<(ConferenceId, Placed)>> {
        let _ = pod;
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Records the participant count the SFU reports.
    fn set_participants<'a>(&'a self, id: &'a ConferenceId, participants: u32) -> BoxFut<'a, ()>;
    /// Records that the owner started the occurrence starting at `start` early.
    fn set_started_early<'a>(
        &'a self,
        id: &'a ConferenceId,
        start: DateTime<Utc>,
    ) -> BoxFut<'a, ()>;
    /// Records that a moderator ended the occurrence starting at `start`.
    fn set_ended<'a>(&'a self, id: &'a ConferenceId, start: DateTime<Utc>) -> BoxFut<'a, ()>;
    /// Deletes it; whether it existed.
    fn delete<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, bool>;
    /// Records what an SFU pod found of the conference's UDP ports. In a cluster the operator
    /// turns it into the `MediaPorts` condition and an Event; the SQL store keeps nothing (the
    /// embedded SFU's own log and metrics say it).
    fn set_media_ports<'a>(
        &'a self,
        _id: &'a ConferenceId,
        _found: &'a MediaPorts,
    ) -> BoxFut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// What an SFU pod found of a conference's UDP ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPorts {
    /// The pod that tried them.
    pub pod: String,
    /// The conference's range there.
    pub udp_ports: PortRange,
    /// Ports of the range it cannot bind (another process holds them), ascending.
    pub unusable: Vec<u16>,
    /// When it tried them.
    pub checked_at: DateTime<Utc>,
}

/// Conferences in the SQL database.
#[derive(Debug, Clone)]
pub struct SqlConferenceStore {
    db: Db,
}

impl SqlConferenceStore {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

const COLUMNS: &str = "id, owner_id, topic, meeting_id, password, kind, start_at, end_at, time_zone, recurrence, \
     max_participants, allow_join_without_owner, media, sequence, phase, occurrence_start, occurrence_end, \
     started_early, ended_occurrence, participants, assignment_pod, assignment_endpoint, udp_first, udp_last, \
     created_at, updated_at, recording_allowed";

fn opt_time(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<String>, _>(column)?
        .as_deref()
        .map(parse_db_time)
        .transpose()
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(format!("stored {what} {value:?} is unknown"))
}

fn from_row(row: &AnyRow, invitees: Vec<String>) -> Result<Conference> {
    let kind: String = row.try_get("kind")?;
    let tz: String = row.try_get("time_zone")?;
    let media: String = row.try_get("media")?;
    let phase: String = row.try_get("phase")?;
    let occurrence = match (
        opt_time(row, "occurrence_start")?,
        opt_time(row, "occurrence_end")?,
    ) {
        (Some(start), Some(end)) => Some(Occurrence { start, end }),
        _ => None,
    };
    let placed = match (
        row.try_get::<Option<String>, _>("assignment_pod")?,
        row.try_get::<Option<String>, _>("assignment_endpoint")?,
        row.try_get::<Option<i64>, _>("udp_first")?,
        row.try_get::<Option<i64>, _>("udp_last")?,
    ) {
        (Some(pod), Some(endpoint), Some(first), Some(last)) => Some(Placed {
            pod,
            endpoint,
            udp_ports: PortRange {
                first: u16::try_from(first).map_err(|_| corrupt("port", &first.to_string()))?,
                last: u16::try_from(last).map_err(|_| corrupt("port", &last.to_string()))?,
            },
        }),
        _ => None,
    };
    Ok(Conference {
        id: ConferenceId(row.try_get("id")?),
        owner: AccountId(row.try_get("owner_id")?),
        definition: Definition {
            topic: row.try_get("topic")?,
            kind: Kind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
            start: opt_time(row, "start_at")?,
            end: opt_time(row, "end_at")?,
            time_zone: tz.parse().map_err(|_| corrupt("time zone", &tz))?,
            recurrence: row.try_get("recurrence")?,
            max_participants: row
                .try_get::<Option<i64>, _>("max_participants")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            allow_join_without_owner: flag(row.try_get("allow_join_without_owner")?),
            media: Media::parse(&media).ok_or_else(|| corrupt("media", &media))?,
            recording_allowed: flag(row.try_get("recording_allowed")?),
            meeting_id: MeetingId(row.try_get("meeting_id")?),
            password: row.try_get("password")?,
            invitees,
        },
        sequence: row.try_get("sequence")?,
        runtime: Runtime {
            phase: Phase::parse(&phase).ok_or_else(|| corrupt("phase", &phase))?,
            occurrence,
            started_early: opt_time(row, "started_early")?,
            ended: opt_time(row, "ended_occurrence")?,
            participants: u32::try_from(row.try_get::<i64, _>("participants")?).unwrap_or(0),
            placed,
            not_placed: None,
        },
        created_at: parse_db_time(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_db_time(&row.try_get::<String, _>("updated_at")?)?,
    })
}

fn meeting_id_taken(err: sqlx::Error, meeting_id: &MeetingId) -> Error {
    if is_unique_violation(&err) {
        Error::conflict(
            "meetingIdTaken",
            format!(
                "the meeting ID {meeting_id} is in use by another conference; pick another or leave it empty"
            ),
        )
    } else {
        err.into()
    }
}

impl SqlConferenceStore {
    async fn invitees_of(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let mut map: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(map);
        }
        // One query for all, in chunks to stay under parameter limits.
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT conference_id, email FROM conference_invitees WHERE conference_id IN ({}) ORDER BY email",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.db.pool).await? {
                map.entry(row.try_get("conference_id")?)
                    .or_default()
                    .push(row.try_get("email")?);
            }
        }
        Ok(map)
    }

    async fn load(&self, rows: Vec<AnyRow>) -> Result<Vec<Conference>> {
        let ids: Vec<String> = rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut invitees = self.invitees_of(&ids).await?;
        rows.iter()
            .zip(ids)
            .map(|(row, id)| from_row(row, invitees.remove(&id).unwrap_or_default()))
            .collect()
    }

    async fn one(&self, sql: String, key: &str) -> Result<Option<Conference>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(self.load(row.into_iter().collect()).await?.pop())
    }

    async fn write_invitees(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        id: &ConferenceId,
        invitees: &[String],
    ) -> Result<()> {
        sqlx::query("DELETE FROM conference_invitees WHERE conference_id = $1")
            .bind(id.as_str())
            .execute(&mut **tx)
            .await?;
        for email in invitees {
            sqlx::query("INSERT INTO conference_invitees (conference_id, email) VALUES ($1, $2)")
                .bind(id.as_str())
                .bind(email)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn exec(
        &self,
        query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<()> {
        query.execute(&self.db.pool).await?;
        Ok(())
    }
}

impl ConferenceStore for SqlConferenceStore {
    fn insert<'a>(&'a self, c: &'a Conference) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let d = &c.definition;
            let r = &c.runtime;
            let mut tx = self.db.pool.begin().await?;
            sqlx::query(sql!(
                "INSERT INTO conferences ({COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)"
            ))
            .bind(c.id.as_str())
            .bind(c.owner.as_str())
            .bind(&d.topic)
            .bind(d.meeting_id.as_str())
            .bind(&d.password)
            .bind(d.kind.as_str())
            .bind(d.start.map(db_time))
            .bind(d.end.map(db_time))
            .bind(d.time_zone.name())
            .bind(d.recurrence.clone())
            .bind(d.max_participants.map(i64::from))
            .bind(int(d.allow_join_without_owner))
            .bind(d.media.as_str())
            .bind(c.sequence)
            .bind(r.phase.as_str())
            .bind(r.occurrence.map(|o| db_time(o.start)))
            .bind(r.occurrence.map(|o| db_time(o.end)))
            .bind(r.started_early.map(db_time))
            .bind(r.ended.map(db_time))
            .bind(i64::from(r.participants))
            .bind(r.placed.as_ref().map(|p| p.pod.clone()))
            .bind(r.placed.as_ref().map(|p| p.endpoint.clone()))
            .bind(r.placed.as_ref().map(|p| i64::from(p.udp_ports.first)))
            .bind(r.placed.as_ref().map(|p| i64::from(p.udp_ports.last)))
            .bind(db_time(c.created_at))
            .bind(db_time(c.updated_at))
            .bind(int(d.recording_allowed))
            .execute(&mut *tx)
            .await
            .map_err(|err| meeting_id_taken(err, &d.meeting_id))?;
            Self::write_invitees(&mut tx, &c.id, &d.invitees).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, Option<Conference>> {
        Box::pin(async move {
            self.one(
                format!("SELECT {COLUMNS} FROM conferences WHERE id = $1"),
                id.as_str(),
            )
            .await
        })
    }

    fn placed_on<'a>(&'a self, pod: &'a str) -> BoxFut<'a, Vec<ConferenceId>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT id FROM conferences WHERE assignment_pod = $1 ORDER BY id")
                    .bind(pod)
                    .fetch_all(&self.db.pool)
                    .await?;
            rows.iter()
                .map(|row| Ok(ConferenceId(row.try_get("id")?)))
                .collect()
        })
    }

    fn find_by_meeting_id<'a>(
        &'a self,
        meeting_id: &'a MeetingId,
    ) -> BoxFut<'a, Option<Conference>> {
        Box::pin(async move {
            // One query whether the meeting exists or not (its invitees joined in), so a known
            // meeting ID costs no more than an unknown one.
            let rows = sqlx::query(sql!(
                "SELECT {COLUMNS}, conference_invitees.email AS invitee FROM conferences \
                 LEFT JOIN conference_invitees ON conference_invitees.conference_id = conferences.id \
                 WHERE conferences.meeting_id = $1 ORDER BY conference_invitees.email"
            ))
            .bind(meeting_id.as_str())
            .fetch_all(&self.db.pool)
            .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let invitees = rows
                .iter()
                .map(|row| row.try_get::<Option<String>, _>("invitee"))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
            Ok(Some(from_row(first, invitees)?))
        })
    }

    fn list<'a>(&'a self, owner: Option<&'a AccountId>) -> BoxFut<'a, Vec<Conference>> {
        Box::pin(async move {
            let order = "ORDER BY occurrence_start IS NULL, occurrence_start, topic";
            let rows = match owner {
                Some(owner) => {
                    sqlx::query(sql!(
                        "SELECT {COLUMNS} FROM conferences WHERE owner_id = $1 {order}"
                    ))
                    .bind(owner.as_str())
                    .fetch_all(&self.db.pool)
                    .await?
                }
                None => {
                    sqlx::query(sql!("SELECT {COLUMNS} FROM conferences {order}"))
                        .fetch_all(&self.db.pool)
                        .await?
                }
            };
            self.load(rows).await
        })
    }

    fn update_definition<'a>(&'a self, c: &'a Conference) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let d = &c.definition;
            let mut tx = self.db.pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE conferences SET topic = $1, meeting_id = $2, password = $3, kind = $4, start_at = $5, end_at = $6, \
                 time_zone = $7, recurrence = $8, max_participants = $9, allow_join_without_owner = $10, media = $11, \
                 sequence = $12, updated_at = $13, recording_allowed = $15 WHERE id = $14",
            )
            .bind(&d.topic)
            .bind(d.meeting_id.as_str())
            .bind(&d.password)
            .bind(d.kind.as_str())
            .bind(d.start.map(db_time))
            .bind(d.end.map(db_time))
            .bind(d.time_zone.name())
            .bind(d.recurrence.clone())
            .bind(d.max_participants.map(i64::from))
            .bind(int(d.allow_join_without_owner))
            .bind(d.media.as_str())
            .bind(c.sequence)
            .bind(db_time(c.updated_at))
            .bind(c.id.as_str())
            .bind(int(d.recording_allowed))
            .execute(&mut *tx)
            .await
            .map_err(|err| meeting_id_taken(err, &d.meeting_id))?;
            if updated.rows_affected() == 0 {
                return Err(Error::not_found("no such conference"));
            }
            Self::write_invitees(&mut tx, &c.id, &d.invitees).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn set_lifecycle<'a>(
        &'a self,
        id: &'a ConferenceId,
        phase: Phase,
        occurrence: Option<Occurrence>,
        placed: Option<&'a Placed>,
    ) -> BoxFut<'a, ()> {
        Box::pin(self.exec(
            sqlx::query(
                "UPDATE conferences SET phase = $1, occurrence_start = $2, occurrence_end = $3, assignment_pod = $4, \
                 assignment_endpoint = $5, udp_first = $6, udp_last = $7 WHERE id = $8",
            )
            .bind(phase.as_str())
            .bind(occurrence.map(|o| db_time(o.start)))
            .bind(occurrence.map(|o| db_time(o.end)))
            .bind(placed.map(|p| p.pod.clone()))
            .bind(placed.map(|p| p.endpoint.clone()))
            .bind(placed.map(|p| i64::from(p.udp_ports.first)))
            .bind(placed.map(|p| i64::from(p.udp_ports.last)))
            .bind(id.as_str()),
        ))
    }

    fn set_participants<'a>(&'a self, id: &'a ConferenceId, participants: u32) -> BoxFut<'a, ()> {
        Box::pin(
            self.exec(
                sqlx::query("UPDATE conferences SET participants = $1 WHERE id = $2")
                    .bind(i64::from(participants))
                    .bind(id.as_str()),
            ),
        )
    }

    fn set_started_early<'a>(
        &'a self,
        id: &'a ConferenceId,
        start: DateTime<Utc>,
    ) -> BoxFut<'a, ()> {
        Box::pin(
            self.exec(
                sqlx::query("UPDATE conferences SET started_early = $1 WHERE id = $2")
                    .bind(db_time(start))
                    .bind(id.as_str()),
            ),
        )
    }

    fn set_ended<'a>(&'a self, id: &'a ConferenceId, start: DateTime<Utc>) -> BoxFut<'a, ()> {
        Box::pin(
            self.exec(
                sqlx::query("UPDATE conferences SET ended_occurrence = $1 WHERE id = $2")
                    .bind(db_time(start))
                    .bind(id.as_str()),
            ),
        )
    }

    fn delete<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, bool> {
        Box::pin(async move {
            let deleted = sqlx::query("DELETE FROM conferences WHERE id = $1")
                .bind(id.as_str())
                .execute(&self.db.pool)
                .await?;
            Ok(deleted.rows_affected() > 0)
        })
    }
}
