//! The pure core shared by the operator and standalone mode: when a conference's occurrences
//! happen, which lifecycle phase it is in at a given moment, and on which SFU pod and UDP port
//! range it runs.
//!
//! Nothing here reads the clock or does IO: time and fleet state are inputs, decisions are
//! outputs, so the same code serves the operator, the standalone loop and tests on virtual time.
//!
//! # Layout
//! - [`schedule`]: start, end, time zone and RFC 5545 recurrence → occurrences (DST-correct).
//! - [`lifecycle`]: schedule + observations + `now` → phase and the next moment that matters.
//! - [`fleet`]: conference + SFU pods + existing assignments → a pod and a UDP port range.

pub mod fleet;
pub mod lifecycle;
pub mod schedule;

pub use fleet::{
    Assignment, Ledger, LedgerConflict, PlacementError, Pod, PortRange, Request, Sizing, place,
};
pub use lifecycle::{Decision, Observed, Phase, Policy, Succession, evaluate, succession};
pub use schedule::{Occurrence, Recurrence, Schedule, ScheduleError};
