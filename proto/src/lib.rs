//! Contracts shared by every Conclave component: identifiers, account levels, room roles and
//! their rights, and the join token the API signs and the SFU verifies.
//!
//! The crate depends on serde, schemars and jsonwebtoken only, so that the API, the SFU, the
//! operator and the web portal's generated types all read the same definitions.
//!
//! # Layout
//! - [`ids`]: newtype identifiers used in every signature (`ConferenceId`, `MeetingId`, …).
//! - [`role`]: account levels, room roles, [`role::Right`]s and the matrix that joins them.
//! - [`presentation`]: presentation IDs, the room's presentation state, file-store keys and
//!   the tickets the SFU and the API hand each other.
//! - [`report`]: what an SFU reports to the conference service (joins, leaves, the end), and
//!   what it asks of it (revocations, the conferences placed on it).
//! - [`signal`]: the SFU's signaling messages, client to server and back.
//! - [`token`]: join-token claims, service-token claims, signing and verification (HS256).

pub mod ids;
pub mod net;
pub mod presentation;
pub mod report;
pub mod role;
pub mod signal;
pub mod token;

pub use ids::{AccountId, ConferenceId, MeetingId, ParticipantId, RecordingId, TrackId};
pub use presentation::{PresentationId, PresentationState};
pub use report::{Placements, Revocation, Revocations, Revoked, RoomEvent, RoomReport};
pub use role::{AccountLevel, Grants, Right, Role};
pub use token::{
    JoinClaims, Media, RoomSettings, ServiceClaims, TokenError, TokenKey, UdpPorts, client_network,
    describe_ports,
};
