//! Recordings: the list one may see, playing with HTTP range requests (seeking in the browser's
//! player), downloading, the chat sidecar, deleting.
//!
//! Who may see a recording: administrators, the meeting's owner, whoever started it, and the
//! accounts that were in the meeting as moderators (`recording::may_see`). To everyone else a
//! recording does not exist (404): its ID is random and confirms nothing.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ErrorBody;
use super::extract::{ApiQuery, CurrentUser};
use crate::account::Account;
use crate::recording::{self, Recording, State as RecordingState};
use crate::state::AppState;
use crate::{Error, Result};

/// Routes under `/recordings`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/recordings", get(list_recordings))
        .route(
            "/recordings/{id}",
            get(show_recording).delete(delete_recording),
        )
        .route("/recordings/{id}/media", get(recording_media))
        .route("/recordings/{id}/chat.vtt", get(recording_chat))
}

/// Who started a recording.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedBy {
    /// Their name in the meeting.
    pub display_name: String,
}

/// A recording.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingView {
    /// Its ID.
    pub id: String,
    /// The conference it was made in.
    pub conference_id: String,
    /// The archive entry it is filed under (once the occurrence is archived).
    pub archive_id: Option<String>,
    /// The meeting's topic.
    pub topic: String,
    /// Who started it.
    pub started_by: StartedBy,
    /// Start, in the viewer's time zone.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<FixedOffset>,
    /// Stop, in the viewer's time zone.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub stopped_at: Option<DateTime<FixedOffset>>,
    /// `recording`, `stopped` (waiting to be composed), `composing`, `ready` or `failed`.
    pub state: String,
    /// Length in seconds, once composed.
    pub duration_seconds: Option<f64>,
    /// Size in bytes, once composed.
    pub size_bytes: Option<i64>,
    /// Where it plays (range requests work), once ready.
    pub media_url: Option<String>,
    /// The same as a download.
    pub download_url: Option<String>,
    /// The chat as WebVTT captions, when there was chat.
    pub chat_url: Option<String>,
    /// Why composing failed.
    pub error: Option<String>,
}

/// The view of a recording for `viewer`.
pub async fn view(state: &AppState, recording: &Recording, viewer: &Account) -> RecordingView {
    let tz = viewer.tz();
    let ready = recording.state == RecordingState::Ready;
    let base = format!("/api/v1/recordings/{}", recording.id);
    let has_chat = ready
        && matches!(
            state.files.size(&recording::chat_key(&recording.id)).await,
            Ok(Some(_))
        );
    RecordingView {
        id: recording.id.clone(),
        conference_id: recording.conference.to_string(),
        archive_id: recording.archive_id.clone(),
        topic: recording.topic.clone(),
        started_by: StartedBy {
            display_name: recording.started_by_name.clone(),
        },
        started_at: recording.started_at.with_timezone(&tz).fixed_offset(),
        stopped_at: recording
            .stopped_at
            .map(|t| t.with_timezone(&tz).fixed_offset()),
        state: recording.state.as_str().to_owned(),
        duration_seconds: recording.duration_ms.map(|ms| ms as f64 / 1000.0),
        size_bytes: recording.size_bytes,
        media_url: ready.then(|| format!("{base}/media")),
        download_url: ready.then(|| format!("{base}/media?download=true")),
        chat_url: has_chat.then(|| format!("{base}/chat.vtt")),
        error: recording.error.clone(),
    }
}

/// The recordings of an archive entry `viewer` may see.
///
/// # Errors
/// Database errors.
pub async fn of_archive(
    state: &AppState,
    archive_id: &str,
    viewer: &Account,
) -> Result<Vec<RecordingView>> {
    let mut views = Vec::new();
    for recording in recording::of_archive(&state.db, archive_id).await? {
        if visible(state, &recording, viewer).await? {
            views.push(view(state, &recording, viewer).await);
        }
    }
    Ok(views)
}

async fn visible(state: &AppState, recording: &Recording, viewer: &Account) -> Result<bool> {
    if recording::may_see(viewer, recording, false) {
        return Ok(true);
    }
    let attended =
        recording::attended(&state.db, recording, &format!("account:{}", viewer.id)).await?;
    Ok(recording::may_see(viewer, recording, attended))
}

async fn find(state: &AppState, viewer: &Account, id: &str) -> Result<Recording> {
    let not_found = || Error::not_found(format!("no recording {id} (or not one you may see)"));
    let recording = recording::get(&state.db, id).await?.ok_or_else(not_found)?;
    if visible(state, &recording, viewer).await? {
        Ok(recording)
    } else {
        Err(not_found())
    }
}

/// The recordings one may see, newest first.
#[utoipa::path(get, path = "/api/v1/recordings", tag = "recordings",
    responses((status = 200, description = "the recordings", body = [RecordingView]), (status = 401, description = "not logged in", body = ErrorBody)))]
pub async fn list_recordings(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<RecordingView>>> {
    let mut views = Vec::new();
    for recording in recording::all(&state.db).await? {
        if visible(&state, &recording, &user.account).await? {
            views.push(view(&state, &recording, &user.account).await);
        }
    }
    Ok(Json(views))
}

/// One recording.
#[utoipa::path(get, path = "/api/v1/recordings/{id}", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, description = "the recording", body = RecordingView), (status = 404, description = "no such recording, or not one you may see", body = ErrorBody)))]
pub async fn show_recording(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<RecordingView>> {
    let recording = find(&state, &user.account, &id).await?;
    Ok(Json(view(&state, &recording, &user.account).await))
}

/// Deletes a recording and its files.
#[utoipa::path(delete, path = "/api/v1/recordings/{id}", tag = "recordings", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such recording, or not one you may see", body = ErrorBody),
              (status = 409, description = "still recording or being composed", body = ErrorBody)))]
pub async fn delete_recording(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let recording = find(&state, &user.account, &id).await?;
    if matches!(
        recording.state,
        RecordingState::Recording | RecordingState::Composing
    ) {
        return Err(Error::conflict(
            "recordingBusy",
            "the recording is still going on or being composed; stop it in the meeting or try again in a minute",
        ));
    }
    recording::delete_row(&state.db, &recording.id).await?;
    recording::delete_files(&state.files, &recording.id).await?;
    tracing::info!(recording = %recording.id, by = %user.account.id, "recording deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// How the media is asked for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MediaQuery {
    /// Send it as an attachment (a download) instead of inline.
    pub download: Option<bool>,
}

/// A byte range of a file of `size` bytes, from a `Range` header; `Err` when it cannot be
/// satisfied. Only single ranges are served (browsers ask for one).
fn byte_range(header: &str, size: u64) -> std::result::Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        // Another unit: the whole file (RFC 9110 allows ignoring the header).
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last N bytes.
        let n: u64 = last.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let first: u64 = first.parse().map_err(|_| ())?;
        let last = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            last.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if first > last || first >= size {
            return Err(());
        }
        first..last + 1
    };
    Ok(Some(range))
}

fn attachment_name(recording: &Recording) -> String {
    let topic: String = recording
        .topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let topic = topic.trim_matches('-');
    let topic = if topic.is_empty() { "recording" } else { topic };
    format!(
        "{topic}-{}.mp4",
        recording.started_at.format("%Y-%m-%d-%H%M")
    )
}

/// The composed recording (MP4). Honours `Range` (206 Partial Content), so the player seeks.
#[utoipa::path(get, path = "/api/v1/recordings/{id}/media", tag = "recordings", params(("id" = String, Path), MediaQuery),
    responses((status = 200, description = "the whole file (video/mp4)"), (status = 206, description = "the asked range"),
              (status = 404, description = "no such recording, not one you may see, or not composed yet", body = ErrorBody), (status = 416, description = "the range lies outside the file")))]
pub async fn recording_media(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<MediaQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let recording = find(&state, &user.account, &id).await?;
    if recording.state != RecordingState::Ready {
        return Err(Error::not_found(format!(
            "recording {id} is {}: it plays once it is composed",
            recording.state.as_str()
        )));
    }
    let key = recording::media_key(&recording.id);
    let size = state
        .files
        .size(&key)
        .await
        .map_err(|err| Error::Internal(err.to_string()))?
        .ok_or_else(|| Error::not_found(format!("the file of recording {id} is gone")))?;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if query.download.unwrap_or(false) {
        let disposition = format!("attachment; filename=\"{}\"", attachment_name(&recording));
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            response_headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => match byte_range(value, size) {
            Ok(range) => range,
            Err(()) => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(response);
            }
        },
        None => None,
    };
    let (status, range) = match range {
        Some(range) => {
            if let Ok(value) =
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
            {
                response_headers.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::PARTIAL_CONTENT, range)
        }
        None => (StatusCode::OK, 0..size),
    };
    // Ranges come from the store in pieces of at most 4 MiB, so a whole download never sits in
    // memory.
    const PIECE: u64 = 4 * 1024 * 1024;
    let files = state.files.clone();
    let pieces = futures::stream::unfold(range.start, move |at| {
        let files = files.clone();
        let key = key.clone();
        let end = range.end;
        async move {
            if at >= end {
                return None;
            }
            let to = (at + PIECE).min(end);
            let piece = files
                .get_range(&key, at..to)
                .await
                .map_err(std::io::Error::other);
            Some((piece, to))
        }
    });
    response_headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    Ok((status, response_headers, Body::from_stream(pieces)).into_response())
}

/// The chat of the recording as WebVTT (captions for the player).
#[utoipa::path(get, path = "/api/v1/recordings/{id}/chat.vtt", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, description = "the chat (text/vtt)"), (status = 404, description = "no such recording, not one you may see, or no chat", body = ErrorBody)))]
pub async fn recording_chat(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let recording = find(&state, &user.account, &id).await?;
    let vtt = match state.files.get(&recording::chat_key(&recording.id)).await {
        Ok(bytes) => bytes,
        Err(files::Error::NotFound(_)) => {
            return Err(Error::not_found(format!("recording {id} has no chat")));
        }
        Err(err) => return Err(Error::Internal(err.to_string())),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/vtt; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        vtt,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-99", 1000), Ok(Some(0..100)));
        assert_eq!(byte_range("bytes=500-", 1000), Ok(Some(500..1000)));
        assert_eq!(byte_range("bytes=-100", 1000), Ok(Some(900..1000)));
        assert_eq!(
            byte_range("bytes=900-5000", 1000),
            Ok(Some(900..1000)),
            "the end is clipped"
        );
        assert_eq!(
            byte_range("bytes=1000-", 1000),
            Err(()),
            "starts past the end"
        );
        assert_eq!(byte_range("bytes=5-2", 1000), Err(()));
        assert_eq!(byte_range("bytes=-0", 1000), Err(()));
        assert_eq!(byte_range("bytes=x-y", 1000), Err(()));
        assert_eq!(
            byte_range("bytes=0-1,5-9", 1000),
            Ok(None),
            "several ranges: the whole file"
        );
        assert_eq!(byte_range("items=0-1", 1000), Ok(None));
    }
}
