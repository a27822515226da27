//! `/presentations`: upload a presentation with the SFU's upload ticket, fetch its pages with
//! the SFU's view ticket, and the formats and limits for the upload button.
//!
//! No session cookie is involved: the room role that grants presenting lives in the SFU, which
//! signs the tickets (see [`proto::presentation`]); a ticket is sent as
//! `Authorization: Bearer`, never in a URL (URLs reach logs and browser history).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use proto::presentation::PresentationId;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa::IntoParams;

use super::ErrorBody;
use crate::presentation::{self, Accepted, Uploaded};
use crate::state::AppState;
use crate::{Error, Result};

/// Routes under `/presentations`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/presentations", post(upload))
        .route("/presentations/accepted", get(accepted))
        .route("/presentations/{id}/pages/{page}", get(page))
}

/// The upload's file name.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name as the person chose it (its extension tells PowerPoint from ODP).
    pub filename: String,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The formats and limits of uploads on this server (`office: false`: PDF only).
#[utoipa::path(get, path = "/api/v1/presentations/accepted", tag = "presentations", operation_id = "presentation_formats",
    responses((status = 200, description = "formats and limits", body = Accepted)))]
pub async fn accepted(State(state): State<AppState>) -> Json<Accepted> {
    Json(presentation::accepted(&state.presentations))
}

/// Uploads a presentation (the raw file as the body) into the ticket's conference, converts
/// it to page images and answers with the descriptor to show it. Needs the upload ticket the
/// SFU gives speakers and moderators (`requestPresentationUpload`).
#[utoipa::path(post, path = "/api/v1/presentations", tag = "presentations", operation_id = "upload_presentation",
    params(UploadQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, description = "stored; show it with the descriptor", body = Uploaded),
              (status = 401, description = "no valid upload ticket", body = ErrorBody),
              (status = 413, description = "larger than `--presentation-max-bytes` (`tooLarge`)", body = ErrorBody),
              (status = 415, description = "not a PDF (or, with LibreOffice, a presentation): `unsupportedFormat`", body = ErrorBody),
              (status = 422, description = "`encrypted`, `noPages`, `tooManyPages`, `brokenDocument`, `conversionTimeout`", body = ErrorBody),
              (status = 503, description = "every conversion slot is busy (`busy`)", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let now = state.clock.now();
    let ticket = bearer(&headers)
        .ok_or(Error::PresentationTicket(
            "upload with the ticket the meeting gives speakers",
        ))
        .and_then(|token| {
            state
                .tokens
                .verify_upload(token, now.timestamp())
                .map_err(|_| {
                    Error::PresentationTicket("the upload ticket is invalid or expired; try again")
                })
        })?;
    let max = state.presentations.limits().max_bytes;
    let too_large = || {
        Error::from(presentation::Error::Refused(presentation::Refused::new(
            "tooLarge",
            format!(
                "the file is larger than {} MB, the most this server takes",
                max / 1_000_000
            ),
        )))
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > max
    {
        return Err(too_large());
    }
    let spool = tempfile::NamedTempFile::new()
        .map_err(|err| Error::Internal(format!("spooling an upload: {err}")))?;
    let mut file = tokio::fs::File::create(spool.path())
        .await
        .map_err(|err| Error::Internal(format!("spooling an upload: {err}")))?;
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|err| Error::MalformedBody(format!("the upload broke off: {err}")))?;
        written += chunk.len() as u64;
        if written > max {
            return Err(too_large());
        }
        file.write_all(&chunk)
            .await
            .map_err(|err| Error::Internal(format!("spooling an upload: {err}")))?;
    }
    file.flush()
        .await
        .map_err(|err| Error::Internal(format!("spooling an upload: {err}")))?;
    drop(file);
    let uploaded = presentation::upload(
        &state.files,
        &state.presentations,
        &state.tokens,
        &ticket,
        &query.filename,
        spool.path(),
        now,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(uploaded)).into_response())
}

/// One page (1-based) as a PNG image; needs the view ticket every participant of the meeting
/// gets from the SFU.
#[utoipa::path(get, path = "/api/v1/presentations/{id}/pages/{page}", tag = "presentations", operation_id = "presentation_page",
    params(("id" = String, Path, description = "the presentation"), ("page" = u32, Path, description = "the page, from 1")),
    responses((status = 200, description = "the page", content_type = "image/png"),
              (status = 403, description = "no valid view ticket of this meeting", body = ErrorBody),
              (status = 404, description = "no such presentation or page in the ticket's meeting", body = ErrorBody)))]
pub async fn page(
    State(state): State<AppState>,
    Path((id, page)): Path<(String, u32)>,
    headers: HeaderMap,
) -> Result<Response> {
    let now = state.clock.now();
    let ticket = bearer(&headers)
        .and_then(|token| state.tokens.verify_view(token, now.timestamp()).ok())
        .ok_or_else(|| Error::forbidden("presentation pages need the meeting's view ticket"))?;
    let id = PresentationId::parse(&id).ok_or_else(|| Error::not_found("no such presentation"))?;
    let png = presentation::page(&state.files, &ticket.conf, &id, page).await?;
    let mut response = Body::from(png).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    // Pages never change under their ID; only this browser keeps them.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600, immutable"),
    );
    Ok(response)
}
