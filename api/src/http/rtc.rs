//! `GET /rtc/{pod}`: the signaling websocket of SFU pod `{pod}`, relayed through this service's
//! public address (see [`crate::relay`]).

use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use tracing::Instrument;

use super::extract::ClientAddr;
use crate::relay;
use crate::state::AppState;
use crate::{Error, Result};

/// Routes under `/rtc`.
pub fn router() -> Router<AppState> {
    Router::new().route("/rtc/{pod}", get(relay_signaling))
}

/// Finds the pod's endpoint among the current assignments (404 before any upgrade when it
/// holds none), opens the pod's websocket, then upgrades the client's and relays.
async fn relay_signaling(
    State(state): State<AppState>,
    Path(pod): Path<String>,
    addr: ClientAddr,
    headers: http::HeaderMap,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    let upstream = relay::upstream_of(state.store.as_ref(), &pod).await?;
    let upgrade = upgrade.map_err(|rejection| {
        Error::WebsocketRequired(format!(
            "/rtc/{pod} is the signaling websocket of a meeting; open it as a websocket ({})",
            rejection.body_text()
        ))
    })?;
    let permit = state.relays.admit()?;
    let request_id = headers
        .get(super::REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| id.len() <= 128);
    let sfu = relay::connect(
        &state.relays,
        &upstream,
        addr.0,
        request_id,
        Duration::from_secs(state.config.rtc_proxy_connect_timeout_seconds),
    )
    .await?;
    let idle = Duration::from_secs(state.config.rtc_proxy_idle_seconds);
    // The relay outlives the request: its lines carry the request's ID in a span of their own.
    let span = tracing::info_span!("rtc_relay", request_id = request_id.unwrap_or_default());
    Ok(relay::client_limits(upgrade).on_upgrade(move |client| {
        relay::run(client, sfu, permit, upstream.pod, idle).instrument(span)
    }))
}
