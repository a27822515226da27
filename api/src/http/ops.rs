//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::state::AppState;

/// Routes at the root: the probes everywhere, the OpenAPI document on the public surface,
/// `/metrics` on the internal one.
pub fn router(public: bool, internal: bool) -> Router<AppState> {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if public {
        router = router.route("/api/v1/openapi.json", get(openapi));
    }
    if internal {
        router = router.route("/metrics", get(metrics));
    } else {
        // Answered here so that the portal's fallback does not serve its page instead.
        router = router.route(
            "/metrics",
            get(|| async {
                crate::Error::not_found("metrics are served on the internal listener only")
            }),
        );
    }
    router
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(err) => {
            tracing::warn!(cause = %err, "not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let size = i64::from(state.db.pool.size());
    let idle = i64::try_from(state.db.pool.num_idle()).unwrap_or(0);
    state
        .metrics
        .db_connections
        .with_label_values(&["idle"])
        .set(idle);
    state
        .metrics
        .db_connections
        .with_label_values(&["busy"])
        .set((size - idle).max(0));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}
