//! The composer: claims a stopped (or abandoned) recording, downloads its segments, runs
//! ffmpeg as [`super::compose`] plans it, uploads the MP4 and the chat sidecar, and removes
//! recordings older than the retention. Every API replica runs one; a claim with a deadline
//! keeps two from composing the same recording, and a replica that dies mid-way is taken over
//! once its claim runs out.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::compose::{self, Chat, Kind, Page, Segment, SegmentMeta, Track};
use super::{Recording, State};
use crate::clock::db_time;
use crate::state::AppState;
use crate::{Error, Result};

/// Attempts before a recording is given up as failed.
pub const MAX_ATTEMPTS: i64 = 3;

/// How long one claim lasts (a composing replica that dies is taken over after it).
const CLAIM: chrono::Duration = chrono::Duration::minutes(30);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    started_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stopped {
    stopped_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    at: DateTime<Utc>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// Runs passes until `shutdown` resolves: after every stop report (woken) and every 10 s.
pub async fn run_loop(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut last_retention: Option<DateTime<Utc>> = None;
    loop {
        if let Err(err) = pass(&state).await {
            tracing::error!(cause = %err, "recording pass failed");
        }
        let now = state.clock.now();
        if last_retention.is_none_or(|at| now - at > chrono::Duration::hours(1)) {
            last_retention = Some(now);
            match remove_expired(&state, now).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "recordings past the retention removed"),
                Err(err) => tracing::error!(cause = %err, "removing old recordings failed"),
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = state.recording_wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Composes every recording that is due; returns how many were composed.
///
/// # Errors
/// Database errors (a failed composition is recorded on the recording, not returned).
pub async fn pass(state: &AppState) -> Result<usize> {
    let now = state.clock.now();
    let mut composed = 0;
    for recording in super::all(&state.db).await? {
        let due = match recording.state {
            State::Stopped => true,
            State::Recording => abandoned(state, &recording, now).await,
            // Claimed by a replica that did not finish in time.
            State::Composing => claim_expired(state, &recording.id, now).await?,
            State::Ready | State::Failed => false,
        };
        if !due || !claim(state, &recording, now).await? {
            continue;
        }
        let span = tracing::info_span!("compose", recording = %recording.id, conference = %recording.conference);
        let _enter = span.enter();
        drop(_enter);
        match compose_one(state, &recording).await {
            Ok((duration_ms, size)) => {
                sqlx::query(
                    "UPDATE recordings SET state = 'ready', duration_ms = $1, size_bytes = $2, error = NULL, claimed_by = NULL, claimed_until = NULL, \
                     stopped_at = COALESCE(stopped_at, $3) WHERE id = $4",
                )
                .bind(duration_ms)
                .bind(size as i64)
                .bind(db_time(recording.started_at + chrono::Duration::milliseconds(duration_ms)))
                .bind(&recording.id)
                .execute(&state.db.pool)
                .await?;
                // The segments are in the composed file now.
                for folder in ["tracks", "events"] {
                    let prefix = format!("{}/{folder}", super::prefix(&recording.id));
                    if let Err(err) = state.files.delete_prefix(&prefix).await {
                        tracing::warn!(recording = %recording.id, cause = %err, "the segments of a composed recording stay");
                    }
                }
                state.metrics.recordings_composed.with_label_values(&["ready"]).inc();
                tracing::info!(recording = %recording.id, duration_ms, size, "recording composed");
                composed += 1;
            }
            Err(err) => {
                let failed = recording.attempts + 1 >= MAX_ATTEMPTS;
                let next = if failed { "failed" } else { "stopped" };
                sqlx::query(
                    "UPDATE recordings SET state = $1, error = $2, claimed_by = NULL, claimed_until = NULL WHERE id = $3",
                )
                .bind(next)
                .bind(err.to_string())
                .bind(&recording.id)
                .execute(&state.db.pool)
                .await?;
                state.metrics.recordings_composed.with_label_values(&["failed"]).inc();
                tracing::error!(recording = %recording.id, cause = %err, attempt = recording.attempts + 1, failed, "composing a recording failed");
            }
        }
    }
    Ok(composed)
}

/// A recording the SFU stopped reporting on: its pod was lost. The SFU renews
/// `recordings/{id}/alive` while it records; when that (or, before the first renewal,
/// `recording.json`) is older than `--recording-lost-seconds`, what was written is composed.
async fn abandoned(state: &AppState, recording: &Recording, now: DateTime<Utc>) -> bool {
    let lost = chrono::Duration::seconds(i64::from(state.config.recording_lost_seconds));
    if now - recording.started_at < lost {
        return false;
    }
    let prefix = super::prefix(&recording.id);
    let mut newest = None;
    for name in ["alive", "recording.json"] {
        match state.files.modified(&format!("{prefix}/{name}")).await {
            Ok(Some(at)) => newest = newest.max(Some(at)),
            Ok(None) => {}
            // The store is away: nothing can be judged now.
            Err(_) => return false,
        }
    }
    newest.is_none_or(|at| now - at > lost)
}

async fn claim_expired(state: &AppState, id: &str, now: DateTime<Utc>) -> Result<bool> {
    let row = sqlx::query("SELECT claimed_until FROM recordings WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?;
    let until: Option<String> = match row {
        Some(row) => sqlx::Row::try_get(&row, "claimed_until")?,
        None => return Ok(false),
    };
    Ok(until.is_none_or(|until| until < db_time(now)))
}

/// Takes the recording for this replica; false when another one was quicker.
async fn claim(state: &AppState, recording: &Recording, now: DateTime<Utc>) -> Result<bool> {
    let taken = sqlx::query(
        "UPDATE recordings SET state = 'composing', claimed_by = $1, claimed_until = $2, attempts = attempts + 1 \
         WHERE id = $3 AND state = $4 AND attempts = $5",
    )
    .bind(&state.replica)
    .bind(db_time(now + CLAIM))
    .bind(&recording.id)
    .bind(recording.state.as_str())
    .bind(recording.attempts)
    .execute(&state.db.pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Removes recordings older than the retention (0 days: keep them).
///
/// # Errors
/// Database and file store errors.
pub async fn remove_expired(state: &AppState, now: DateTime<Utc>) -> Result<usize> {
    let days = state.config.recording_retention_days;
    if days == 0 {
        return Ok(0);
    }
    let before = now - chrono::Duration::days(i64::from(days));
    let mut removed = 0;
    for recording in super::all(&state.db).await? {
        let finished = matches!(recording.state, State::Ready | State::Failed);
        if finished && recording.started_at < before {
            super::delete_files(&state.files, &recording.id).await?;
            super::delete_row(&state.db, &recording.id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn internal(what: impl std::fmt::Display) -> Error {
    Error::Internal(what.to_string())
}

/// Composes one recording; its duration and the composed file's size.
async fn compose_one(state: &AppState, recording: &Recording) -> Result<(i64, u64)> {
    let files = &state.files;
    let prefix = super::prefix(&recording.id);
    let work = tempfile::Builder::new()
        .prefix("conclave-compose-")
        .tempdir()
        .map_err(|err| internal(format!("a work folder for composing: {err}")))?;
    let entries = files.list(&prefix).await.map_err(internal)?;
    let read_json = |key: String| async move {
        match files.get(&key).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(files::Error::NotFound(_)) => Ok(None),
            Err(err) => Err(internal(err)),
        }
    };
    let origin = match read_json(format!("{prefix}/recording.json")).await? {
        Some(bytes) => serde_json::from_slice::<Started>(&bytes)
            .map(|s| s.started_at)
            .unwrap_or(recording.started_at),
        None => recording.started_at,
    };
    let stop = match read_json(format!("{prefix}/stopped.json")).await? {
        Some(bytes) => serde_json::from_slice::<Stopped>(&bytes).ok().map(|s| s.stopped_at),
        None => None,
    }
    .or(recording.stopped_at);

    // tracks/{track}/{seq}.{ext} and .json, by track and sequence.
    let mut media: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut metas: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut event_keys = Vec::new();
    for entry in &entries {
        let rest = &entry.key[prefix.len() + 1..];
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["tracks", track, file] => {
                if let Some((seq, ext)) = file.rsplit_once('.') {
                    if ext == "json" {
                        metas.insert((track.to_string(), seq.to_owned()), entry.key.clone());
                    } else if matches!(ext, "ogg" | "ivf" | "h264" | "webm") {
                        media.entry(track.to_string()).or_default().insert(seq.to_owned(), entry.key.clone());
                    }
                }
            }
            ["events", _] => event_keys.push(entry.key.clone()),
            _ => {}
        }
    }

    let mut tracks = Vec::new();
    let mut last_end = origin;
    for (track_id, segments) in &media {
        let mut kind = None;
        let mut downloaded = Vec::new();
        let mut previous_end: Option<DateTime<Utc>> = None;
        for (seq, key) in segments {
            let ext = key.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("bin");
            let path = work.path().join(format!("{track_id}-{seq}.{ext}"));
            files.download(key, &path).await.map_err(internal)?;
            let meta = match metas.get(&(track_id.clone(), seq.clone())) {
                Some(meta_key) => read_json(meta_key.clone())
                    .await?
                    .and_then(|bytes| serde_json::from_slice::<SegmentMeta>(&bytes).ok()),
                None => None,
            };
            let (start, end) = match &meta {
                Some(meta) => {
                    kind = Some(meta.kind);
                    (meta.start, meta.end)
                }
                None => {
                    // Cut off (the pod died before the JSON): its own length, after the previous.
                    let Some(seconds) = probe_duration(state, &path).await else {
                        tracing::warn!(%key, "an unreadable last segment is left out");
                        continue;
                    };
                    let start = previous_end.unwrap_or(origin);
                    (start, start + chrono::Duration::milliseconds((seconds * 1000.0) as i64))
                }
            };
            previous_end = Some(end);
            last_end = last_end.max(end);
            downloaded.push(Segment { path, start, end });
        }
        let kind = kind.unwrap_or_else(|| {
            if segments.values().any(|key| key.ends_with(".ogg")) { Kind::Audio } else { Kind::Video }
        });
        if !downloaded.is_empty() {
            tracks.push(Track { id: track_id.clone(), kind, segments: downloaded });
        }
    }

    let mut events = Vec::new();
    for key in event_keys {
        if let Some(bytes) = read_json(key.clone()).await? {
            match serde_json::from_slice::<Vec<Event>>(&bytes) {
                Ok(batch) => events.extend(batch),
                Err(err) => tracing::warn!(%key, cause = %err, "an unreadable event file is left out"),
            }
        }
    }
    events.sort_by_key(|event| event.at);
    let end = stop.unwrap_or(last_end).max(origin + chrono::Duration::milliseconds(1));
    let duration_ms = (end - origin).num_milliseconds();
    let chat: Vec<Chat> = events
        .iter()
        .filter(|event| event.kind == "chat")
        .map(|event| Chat {
            at: event.at,
            from: event.from.clone().unwrap_or_default(),
            text: event.text.clone().unwrap_or_default(),
        })
        .collect();
    let presentation: Vec<&Event> = events.iter().filter(|event| event.kind == "presentation").collect();
    let mut pages = Vec::new();
    for (n, event) in presentation.iter().enumerate() {
        let Some(key) = &event.key else { continue };
        let until = presentation.get(n + 1).map(|next| next.at).unwrap_or(end);
        let path = work.path().join(format!("page-{n}.png"));
        match files.download(key, &path).await {
            Ok(()) => pages.push(Page { path, start: event.at, end: until }),
            Err(err) => tracing::warn!(%key, cause = %err, "a presentation page is missing from the recording"),
        }
    }

    let output = work.path().join("recording.mp4");
    let plan = compose::plan(origin, duration_ms, &tracks, &pages, work.path(), &output);
    for (path, text) in &plan.lists {
        tokio::fs::write(path, text).await.map_err(|err| internal(format!("{}: {err}", path.display())))?;
    }
    run_ffmpeg(state, &plan.args, duration_ms).await?;
    let size = tokio::fs::metadata(&output).await.map_err(|err| internal(format!("the composed file: {err}")))?.len();
    files.put_file(&super::media_key(&recording.id), &output).await.map_err(internal)?;
    if !chat.is_empty() {
        let vtt = compose::chat_vtt(origin, &chat);
        files.put(&super::chat_key(&recording.id), vtt.into()).await.map_err(internal)?;
    }
    Ok((plan.duration_ms, size))
}

async fn run_ffmpeg(state: &AppState, args: &[String], duration_ms: i64) -> Result<()> {
    let program = &state.config.ffmpeg;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|err| {
        internal(format!("cannot run {} (install ffmpeg or set --ffmpeg): {err}", program.display()))
    })?;
    // Generous: composing runs at several times real time on one core.
    let limit = Duration::from_secs(120) + Duration::from_millis(duration_ms.max(0) as u64 * 3);
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| internal(format!("ffmpeg took longer than {} s", limit.as_secs())))?
        .map_err(|err| internal(format!("ffmpeg: {err}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
        return Err(internal(format!("ffmpeg failed ({}): {tail}", output.status)));
    }
    Ok(())
}

/// The length of a media file in seconds, by ffprobe beside ffmpeg.
async fn probe_duration(state: &AppState, path: &Path) -> Option<f64> {
    let ffprobe = state.config.ffmpeg.with_file_name("ffprobe");
    let output = tokio::process::Command::new(if state.config.ffmpeg.parent().is_some_and(|p| !p.as_os_str().is_empty()) { ffprobe } else { "ffprobe".into() })
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok().filter(|d: &f64| d.is_finite() && *d > 0.0)
}
