//! The operator's one error type.

use kube::runtime::finalizer::Error as FinalizerError;

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
    /// Leadership was lost (the Lease taken over, or not renewed within the renew deadline):
    /// this replica stopped writing; another one takes over.
    #[error("leadership lost: this replica no longer holds the leader lease and stopped writing")]
    LeadershipLost,
    /// The API server did not answer in time.
    #[error(
        "the kubernetes api server did not answer within {seconds} s ({what}); check its health and the network, or raise --api-timeout-seconds"
    )]
    Timeout {
        /// What was asked.
        what: &'static str,
        /// The timeout.
        seconds: f64,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
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
        if self.is_conflict() {
            return "conflict";
        }
        match self {
            Error::Kube(_) | Error::ClientConfig(_) => "kube_error",
            Error::Finalizer(inner) => match inner.as_ref() {
                FinalizerError::ApplyFailed(err) | FinalizerError::CleanupFailed(err) => {
                    err.metric_label()
                }
                _ => "finalizer_error",
            },
            Error::MissingMetadata(_) => "invalid_object",
            Error::Metrics(_) | Error::Serve { .. } | Error::InvalidConfig(_) => "internal_error",
            Error::LeadershipLost => "leadership_lost",
            Error::Timeout { .. } => "timeout",
        }
    }

    /// The write was based on an outdated resourceVersion (409 Conflict): someone else wrote the
    /// object meanwhile, e.g. another leader or the API reporting participants.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(status)) => status.code == 409,
            Error::Finalizer(inner) => match inner.as_ref() {
                FinalizerError::ApplyFailed(err) | FinalizerError::CleanupFailed(err) => {
                    err.is_conflict()
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Leadership was lost (also when it surfaced inside the finalizer's work).
    pub fn is_leadership_lost(&self) -> bool {
        match self {
            Error::LeadershipLost => true,
            Error::Finalizer(inner) => match inner.as_ref() {
                FinalizerError::ApplyFailed(err) | FinalizerError::CleanupFailed(err) => {
                    err.is_leadership_lost()
                }
                _ => false,
            },
            _ => false,
        }
    }
}
