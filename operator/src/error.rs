//! The operator's one error type.

/// What can go wrong while operating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes api call failed: {0}")]
    Kube(#[source] kube::Error),
    /// No usable Kubernetes client configuration (in-cluster or kubeconfig).
    #[error("no usable kubernetes configuration: {0}")]
    ClientConfig(#[source] kube::Error),
    /// Adding or removing the finalizer, or the work around it, failed.
    #[error("finalizer step failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A conference without a namespace or name (impossible for a namespaced resource).
    #[error("conference has no {0}")]
    MissingMetadata(&'static str),
    /// A metric could not be registered.
    #[error("metrics registry: {0}")]
    Metrics(#[source] prometheus::Error),
    /// The health and metrics endpoint could not listen or serve.
    #[error("serving health and metrics on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Leadership was lost while reconciling; another replica takes over.
    #[error("leadership lost")]
    LeadershipLost,
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Self {
        Error::Kube(err)
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short label for metrics (`reconciles_total{result}` stays a small fixed set).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::ClientConfig(_) => "kube_error",
            Error::Finalizer(_) => "finalizer_error",
            Error::MissingMetadata(_) => "invalid_object",
            Error::Metrics(_) | Error::Serve { .. } => "internal_error",
            Error::LeadershipLost => "leadership_lost",
        }
    }
}
