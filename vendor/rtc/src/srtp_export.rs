//! Conclave's patch: the SRTP keys a connection derives from its DTLS handshake, handed to an
//! observer the application installs, so that it can protect media it sends itself on the
//! connection's transport (an SFU sending one packet to many connections without a trip
//! through each connection's pipeline). Only the local (sending) keys are handed out. The
//! observer is called on the task that drives the connection, which is how the application
//! tells connections apart (the DTLS layer does not know the transport's addresses).

use std::sync::OnceLock;

use srtp::protection_profile::ProtectionProfile;

/// The sending side's SRTP keys of one DTLS association.
pub struct ExportedKeys {
    /// The negotiated SRTP protection profile.
    pub profile: ProtectionProfile,
    /// The local master key.
    pub local_master_key: Vec<u8>,
    /// The local master salt.
    pub local_master_salt: Vec<u8>,
}

impl std::fmt::Debug for ExportedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedKeys")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

type Observer = Box<dyn Fn(ExportedKeys) + Send + Sync>;

static OBSERVER: OnceLock<Observer> = OnceLock::new();

/// Installs the process' observer; false when one was installed before (it stays).
pub fn set_observer(observer: impl Fn(ExportedKeys) + Send + Sync + 'static) -> bool {
    OBSERVER.set(Box::new(observer)).is_ok()
}

pub(crate) fn notify(keys: ExportedKeys) {
    if let Some(observer) = OBSERVER.get() {
        observer(keys);
    }
}
