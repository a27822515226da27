//! The SFU pods' side of the API, authenticated with a service token signed with the shared
//! key: `POST /internal/room-events` (joins, leaves, exclusions and the end of a meeting),
//! `GET /internal/revocations` (what live sessions and unexpired join tokens must follow) and
//! `GET /internal/placements` (the conferences placed on the calling pod).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use proto::{Placements, Revocations, RoomReport, ServiceClaims};

use super::ErrorBody;
use super::extract::ApiJson;
use crate::state::AppState;
use crate::{Error, Result, lifecycle};

/// Routes under `/internal`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/room-events", post(room_event))
        .route("/internal/revocations", get(revocations))
        .route("/internal/placements", get(placements))
}

/// A verified service caller and its claims (`sub` says who: `sfu:<pod>` for an SFU pod).
#[derive(Debug)]
pub struct Service(pub ServiceClaims);

impl Service {
    /// The SFU pod that calls, when an SFU pod calls.
    pub fn sfu_pod(&self) -> Option<&str> {
        self.0
            .sub
            .strip_prefix("sfu:")
            .filter(|pod| !pod.is_empty())
    }
}

impl axum::extract::FromRequestParts<AppState> for Service {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Error::Unauthenticated)?;
        let claims = state
            .tokens
            .verify_service(token.trim(), state.clock.now().timestamp())
            .map_err(|_| Error::Unauthenticated)?;
        Ok(Service(claims))
    }
}

/// The header an SFU sends so that a retried report is applied once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Applies an SFU's report about a room, once per `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/internal/room-events", tag = "internal", request_body = inline(Object),
    params(("Idempotency-Key" = Option<String>, Header, description = "the SFU's ID of the report; a report with a key seen before is not applied again")),
    responses((status = 204, description = "applied (or applied before)"), (status = 401, description = "no valid service token", body = ErrorBody),
        (status = 404, description = "no such conference", body = ErrorBody), (status = 422, description = "a malformed report", body = ErrorBody)))]
pub async fn room_event(
    State(state): State<AppState>,
    _service: Service,
    headers: HeaderMap,
    ApiJson(report): ApiJson<RoomReport>,
) -> Result<StatusCode> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 200 => Some(key.to_owned()),
            _ => {
                return Err(Error::invalid(
                    "Idempotency-Key",
                    "give the report's key as 1 to 200 visible characters",
                ));
            }
        },
    };
    let Some(key) = key else {
        lifecycle::apply_report(&state, &report).await?;
        return Ok(StatusCode::NO_CONTENT);
    };
    // Claimed first: a second delivery finds the key and is answered without applying.
    if !reports::claim(&state.db, &key, state.clock.now()).await? {
        tracing::debug!(conference = %report.conference, "a room report arrived again; applied before");
        return Ok(StatusCode::NO_CONTENT);
    }
    if let Err(err) = lifecycle::apply_report(&state, &report).await {
        // Not applied: the SFU's retry must find the key free.
        if let Err(release) = reports::release(&state.db, &key).await {
            tracing::warn!(cause = %release, "releasing a room report's key failed");
        }
        return Err(err);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What the SFU pods must follow: accounts changed, identities excluded and meetings ended
/// within a join token's lifetime (and a minute more), oldest first. Pods ask every few
/// seconds and right after they start.
#[utoipa::path(get, path = "/api/v1/internal/revocations", tag = "internal",
    responses((status = 200, description = "`{\"revocations\": [{\"id\", \"at\", \"kind\": \"account\"|\"excluded\"|\"ended\", \"identity\"?, \"epoch\"?, \"conference\"?}]}`", body = inline(Object)),
        (status = 401, description = "no valid service token")))]
pub async fn revocations(
    State(state): State<AppState>,
    _service: Service,
) -> Result<Json<Revocations>> {
    let now = state.clock.now();
    let revocations =
        crate::revocation::recent(&state.db, now, lifecycle::token_window(&state)).await?;
    Ok(Json(Revocations { revocations }))
}

/// The conferences placed on the calling SFU pod (the pod its service token names), which it
/// alone may serve: it refuses joins for others (`wrongPod`) and moves the participants of a
/// room whose conference left the list. Pods ask every few seconds, and once more before
/// refusing a join. In standalone mode, where the one SFU holds everything, the answer says
/// `holdsEverything`.
#[utoipa::path(get, path = "/api/v1/internal/placements", tag = "internal",
    responses((status = 200, description = "`{\"pod\", \"conferences\": [conference ID, …], \"holdsEverything\"}`: the conferences whose assignment names the calling pod; `holdsEverything: true` (and no list) when the conference service places nothing on pods (standalone)", body = inline(Object)),
        (status = 401, description = "no valid service token", body = ErrorBody),
        (status = 403, description = "the service token is not an SFU pod's (`sfu:<pod>`)", body = ErrorBody)))]
pub async fn placements(
    State(state): State<AppState>,
    service: Service,
) -> Result<Json<Placements>> {
    let Some(pod) = service.sfu_pod() else {
        return Err(Error::forbidden(
            "only SFU pods ask for their placements; sign the service token as sfu:<pod>",
        ));
    };
    let pod = pod.to_owned();
    if !state.store.placed_by_operator() {
        return Ok(Json(Placements {
            pod,
            conferences: Vec::new(),
            holds_everything: true,
        }));
    }
    let conferences = state.store.placed_on(&pod).await?;
    Ok(Json(Placements {
        pod,
        conferences,
        holds_everything: false,
    }))
}

/// The keys of applied room reports.
pub mod reports {
    use chrono::{DateTime, Duration, Utc};

    use crate::Result;
    use crate::clock::db_time;
    use crate::db::Db;
    use crate::error::is_unique_violation;

    /// How long a key is remembered: far longer than an SFU retries one report.
    pub const KEPT: Duration = Duration::days(1);

    /// Records `key`; `false` when it was recorded before.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim(db: &Db, key: &str, now: DateTime<Utc>) -> Result<bool> {
        let inserted = sqlx::query("INSERT INTO room_reports (id, applied_at) VALUES ($1, $2)")
            .bind(key)
            .bind(db_time(now))
            .execute(&db.pool)
            .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(err) if is_unique_violation(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Forgets `key` (its report was not applied).
    ///
    /// # Errors
    /// Database errors.
    pub async fn release(db: &Db, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM room_reports WHERE id = $1")
            .bind(key)
            .execute(&db.pool)
            .await?;
        Ok(())
    }

    /// Forgets keys older than [`KEPT`]; how many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn purge(db: &Db, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM room_reports WHERE applied_at < $1")
            .bind(db_time(now - KEPT))
            .execute(&db.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
