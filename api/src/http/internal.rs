//! `POST /internal/room-events`: SFU pods report joins, leaves and the end of a meeting,
//! authenticated with a service token signed with the shared key.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::post;
use proto::RoomReport;

use super::extract::ApiJson;
use crate::state::AppState;
use crate::{Error, Result, lifecycle};

/// Routes under `/internal`.
pub fn router() -> Router<AppState> {
    Router::new().route("/internal/room-events", post(room_event))
}

/// A verified service caller.
#[derive(Debug)]
pub struct Service;

impl axum::extract::FromRequestParts<AppState> for Service {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Error::Unauthenticated)?;
        state
            .tokens
            .verify_service(token.trim(), state.clock.now().timestamp())
            .map_err(|_| Error::Unauthenticated)?;
        Ok(Service)
    }
}

/// Applies an SFU's report about a room.
#[utoipa::path(post, path = "/api/v1/internal/room-events", tag = "internal", request_body = inline(Object),
    responses((status = 204), (status = 401), (status = 404), (status = 422)))]
pub async fn room_event(
    State(state): State<AppState>,
    _service: Service,
    ApiJson(report): ApiJson<RoomReport>,
) -> Result<StatusCode> {
    lifecycle::apply_report(&state, &report).await?;
    Ok(StatusCode::NO_CONTENT)
}
