//! The gateway's errors.

/// What can go wrong starting or running the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A prompt file cannot be used (the message names the file and the expected format).
    #[error("{0}")]
    Prompt(String),
    /// The SIP stack failed (binding, sending).
    #[error("sip: {0}")]
    Sip(#[source] Box<rsipstack::Error>),
    /// A socket could not be bound or used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No RTP port of the range is free.
    #[error("no free RTP port in {first}-{last}")]
    NoRtpPort {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// The service credential for the conference service is missing or unusable.
    #[error("{0}")]
    ServiceCredential(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl From<rsipstack::Error> for Error {
    fn from(err: rsipstack::Error) -> Self {
        Error::Sip(Box::new(err))
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
