//! The selective forwarding unit: WebRTC meetings with roles, moderation and chat.
//!
//! # Layout
//! - [`room`]: the pure core: membership, waiting room, rights, moderation, chat, tracks and
//!   subscriptions, as a state machine that takes inputs and `now` and returns effects.
//! - [`keyframe`], [`speaker`], [`rate`]: pure helpers of the core (keyframe-request rate
//!   limiting, active-speaker detection, token buckets for chat and control messages).
//! - [`server`] and `session`: the shell: rooms, the signaling websocket, its bounded queues,
//!   pings and the limits on connections before `join` ([`config::Limits`]).
//! - [`media`]: the media stack (webrtc-rs) behind a narrow interface; [`negotiation`]: offer
//!   and answer with browsers, and the video codec publishers are asked to send.
//! - [`recording`]: every published track written in self-contained segments of about five
//!   seconds to the file store while a recording runs, with the events around them.
//! - [`ports`]: UDP port leases and the ports another process holds; [`udp_mux`]: single-port
//!   mode, every peer connection on one UDP port; [`ice_tcp`]: ICE over TCP on one port per pod,
//!   for networks that block UDP; [`sockets`]: the media sockets' kernel buffers and what the
//!   kernel dropped at them.
//! - [`revocation`] and [`placements`]: what the conference service says, asked every two
//!   seconds in one task: tokens and sessions it revoked, and the conferences placed on this
//!   pod (joins for others are refused with `wrongPod`, rooms that left are told `moved`).
mod adapt;
pub mod arrival;
pub mod backlog;
pub mod config;
pub mod direct;
pub mod error;
pub mod ice_tcp;
pub mod internal_api;
pub mod keyframe;
pub mod media;
pub mod metrics;
pub mod negotiation;
pub mod placements;
pub mod ports;
pub mod rate;
pub mod recording;
pub mod report;
pub mod revocation;
pub mod room;
pub mod server;
mod session;
pub mod simulcast;
pub mod sockets;
pub mod speaker;
pub mod udp_mux;

pub use config::Config;
pub use error::{Error, Result};
pub use placements::{HttpPlacements, PlacementSource};
pub use report::{HttpReporter, LogReporter, Reporter};
pub use revocation::{HttpRevocations, RevocationSource};
pub use server::{SfuState, metrics_router, router, run};
