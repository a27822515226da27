//! `conclave sip`: dial-in by phone. SIP phones and SIP trunks (PSTN numbers routed by a
//! carrier or a PBX) call the gateway; it answers, plays voice prompts, and takes the meeting
//! ID and password from the keypad, checking them with the conference service as a guest's
//! join is checked (`POST /api/v1/join` with a service token and the caller in a `phone`
//! section, throttled per caller address).
//!
//! An admitted caller enters the meeting: the gateway joins the SFU as a WebRTC client for the
//! call (so the caller is a participant like any other), publishes the caller's voice in Opus,
//! and sends the room back in the phone's codec (G.711, G.722 or Opus): each meeting's audio is
//! decoded and mixed once for all of its calls, each call hearing everyone but itself.
//!
//! # Layout
//! - [`config`]: the clap flags (`--sip-…`).
//! - [`server`]: the SIP endpoint (rsipstack): who may call, INVITE/ACK/BYE/CANCEL/OPTIONS,
//!   INFO, re-INVITE; routes in-dialog events to calls.
//! - [`call`]: one call's IO: RTP out (prompts, then the room's mix, as G.711), RTP in
//!   (telephone-events, the caller's voice), timers.
//! - [`room`]: the call's session in the SFU (webrtc-rs, libopus); [`conference`]: a meeting's
//!   audio for its phones (deduplicated, jitter-buffered, decoded and mixed once per 20 ms);
//!   [`tone`]: sine and Goertzel.
//! - [`ivr`]: the voice menu, a pure state machine.
//! - [`sdp`]: offer/answer; [`codec`]: the phone's codec and its state (Opus, G.722, G.711);
//!   [`g711`]: PCMU/PCMA; [`dtmf`]: RFC 4733, SIP INFO and in-band digits.
//! - [`prompt`]: the WAV prompts, built in or from `--sip-prompts-dir`.
//! - [`join`]: the client of the conference service's join endpoint.
//! - [`rate`]: calls per source address; [`metrics`]: `conclave_sip_…`;
//!   [`http`]: `/healthz`, `/readyz`, `/metrics`.

pub mod call;
pub mod codec;
pub mod conference;
pub mod config;
pub mod dtmf;
mod error;
pub mod g711;
pub mod http;
pub mod ivr;
pub mod join;
pub mod metrics;
pub mod prompt;
pub mod rate;
pub mod room;
pub mod sdp;
pub mod server;
pub mod tone;

use std::sync::Arc;

pub use config::Config;
pub use error::{Error, Result};
pub use server::Gateway;

/// Loads the prompts and starts the gateway, registering its metrics in `registry`.
///
/// # Errors
/// A prompt file in a wrong format (the message names it), no usable join-token secret in
/// `config`, metrics already registered, or the SIP address cannot be bound.
pub async fn start(config: Config, registry: &prometheus::Registry) -> Result<Gateway> {
    let prompts = Arc::new(prompt::Prompts::load(config.prompts_dir.as_deref())?);
    let metrics = metrics::Metrics::new(registry)?;
    server::start(config, prompts, metrics).await
}

/// Runs `conclave sip` until `shutdown` resolves: the gateway, and its HTTP side on
/// `--sip-http-listen`. The join-token secret comes from the environment or its file.
///
/// # Errors
/// As [`start`], when the secret is missing, and when the HTTP address cannot be bound.
pub async fn run(
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.resolve_secret().map_err(Error::ServiceCredential)?;
    let registry = prometheus::Registry::new();
    let http_listen = config.http_listen;
    let gateway = start(config, &registry).await?;
    let listener = tokio::net::TcpListener::bind(http_listen)
        .await
        .map_err(|source| Error::Io {
            what: format!("cannot listen on {http_listen} (--sip-http-listen)"),
            source,
        })?;
    tracing::info!(address = %http_listen, "health and metrics listening");
    let served = axum::serve(listener, http::router(registry))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Io {
            what: "the HTTP listener failed".into(),
            source,
        });
    gateway.stop().await;
    tracing::info!("sip gateway stopped");
    served
}
