//! The shared state of the API: configuration turned into objects once, at the composition
//! root, and handed to every handler.

use std::sync::Arc;

use chrono::Duration;
use proto::TokenKey;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::store::ConferenceStore;

/// Everything a handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// The configuration.
    pub config: Config,
    /// The SQL database (accounts, sessions, archive, attendance).
    pub db: Db,
    /// Conference definitions.
    pub store: Arc<dyn ConferenceStore>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Signs join tokens, verifies service tokens.
    pub tokens: TokenKey,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Wakes the lifecycle loop after a change.
    pub lifecycle_wake: Notify,
    /// The SFU pods conferences are placed on (standalone: the embedded one).
    pub fleet: Vec<placement::Pod>,
    /// Port sizing for placement.
    pub sizing: placement::Sizing,
    /// The lifecycle timing.
    pub policy: placement::Policy,
    /// How mails leave (SMTP or the outbox folder).
    pub mail: crate::mail::Delivery,
    /// Wakes the mail worker after mail was queued.
    pub mail_wake: Notify,
    /// The bound on Argon2 checks running at once.
    pub password_checks: crate::account::password::Checks,
    /// The proxies whose X-Forwarded-For entries are believed.
    pub trusted_proxies: crate::address::TrustedProxies,
    /// This replica's name in the outbox's claims (a fresh UUID per process).
    pub replica: String,
    /// Joins waiting for a conference to move off an SFU pod its clients lost.
    pub relocations: crate::relocation::Relocations,
    /// The signaling websockets relayed to SFU pods (`/rtc/{pod}`).
    pub relays: crate::relay::Relays,
    /// Presentations and recordings (a local folder or an S3 bucket).
    pub files: files::Files,
    /// Wakes the recording composer after a recording stopped.
    pub recording_wake: Notify,
    /// Converts presentation uploads into page images (poppler, LibreOffice) under limits.
    pub presentations: crate::presentation::Converter,
    /// The LDAP / Active Directory directory people log in with, when configured.
    pub ldap: Option<Arc<crate::directory::ldap::Directory>>,
    /// The OpenID Connect provider, when its login is on.
    pub oidc: Option<Arc<crate::directory::oidc::Oidc>>,
}

impl AppState {
    /// Builds the state.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        Duration::hours(i64::from(self.config.session_hours))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
