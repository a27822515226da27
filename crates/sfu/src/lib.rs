//! The selective forwarding unit: WebRTC meetings with roles, moderation and chat.
//!
//! # Layout
//! - [`room`]: the pure core: membership, waiting room, rights, moderation, chat, tracks and
//!   subscriptions, as a state machine that takes inputs and `now` and returns effects.
//! - [`keyframe`], [`speaker`]: pure helpers of the core (keyframe-request rate limiting,
//!   active-speaker detection).
pub mod keyframe;
pub mod room;
pub mod speaker;
