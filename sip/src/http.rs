//! The gateway's HTTP side, for the cluster rather than for callers: `/healthz`, `/readyz`
//! and `/metrics` on `--sip-http-listen`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

/// `/healthz` and `/readyz` (the gateway is ready once it listens, which is before this is
/// served) and `/metrics` from `registry`.
pub fn router(registry: prometheus::Registry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(registry)
}

async fn metrics(State(registry): State<prometheus::Registry>) -> impl IntoResponse {
    match prometheus::TextEncoder::new().encode_to_string(&registry.gather()) {
        Ok(text) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            text,
        ),
        Err(err) => {
            tracing::warn!(cause = %err, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "text/plain")],
                "metrics unavailable".to_owned(),
            )
        }
    }
}
