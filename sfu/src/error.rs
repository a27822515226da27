//! Errors of the SFU's IO shell.

/// What can fail while starting or running the SFU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is incomplete, e.g. no join-token secret.
    #[error("{0}")]
    Config(String),
    /// The join-token secret is unusable.
    #[error("the join-token secret is invalid")]
    Secret(#[source] proto::TokenError),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving HTTP failed.
    #[error("the http server failed")]
    Serve(#[source] std::io::Error),
    /// Registering metrics failed.
    #[error("registering metrics failed")]
    Metrics(#[source] prometheus::Error),
    /// The file store (recordings) cannot be used.
    #[error("the file store cannot be used")]
    Files(#[source] files::Error),
    /// The report client could not be built.
    #[error("building the report client failed")]
    ReportClient(#[source] reqwest::Error),
}

/// Errors of the media layer (webrtc-rs).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No free UDP port in the conference's range.
    #[error("no free udp port in {first}-{last}")]
    NoPort {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// webrtc-rs refused an operation.
    #[error("webrtc: {0}")]
    Webrtc(#[from] webrtc::error::Error),
}

/// `Result` with the shell's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
