//! The crate's error type.

/// Errors of the operator's IO shells. Decisions are pure and cannot fail; what fails is
/// talking to the apiserver or touching the node.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// An API request failed.
    #[error("{operation} {kind} {name}")]
    Api {
        /// What was being done, such as `applying the node status`.
        operation: &'static str,
        /// The kind of the object.
        kind: String,
        /// The object's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A blocking node operation (install, remove) could not be run.
    #[error("running the node operation for {name}")]
    Join {
        /// The profile.
        name: String,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A node operation (removing a profile, sweeping temporary files) failed.
    #[error("{operation} {name} on the node")]
    Node {
        /// What was being done, such as `removing profile`.
        operation: &'static str,
        /// The profile or path.
        name: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A watch ended for good (the controller stops).
    #[error("watching {kind} stopped")]
    WatchEnded {
        /// The kind watched.
        kind: &'static str,
    },
    /// An API request got no answer in time (a hung apiserver); the caller retries.
    #[error("{operation} {kind} {name}: no answer from the apiserver within {seconds} s")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The kind of the object.
        kind: String,
        /// The object's name.
        name: String,
        /// The limit.
        seconds: u64,
    },
    /// The metrics/health address could not be bound.
    #[error("listening on {addr} for /metrics, /healthz and /readyz (choose another --metrics-addr)")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl OperatorError {
    /// Wraps a kube error with what was being done to which object.
    pub fn api(operation: &'static str, kind: impl Into<String>, name: impl Into<String>, source: kube::Error) -> Self {
        OperatorError::Api {
            operation,
            kind: kind.into(),
            name: name.into(),
            source,
        }
    }

    /// Whether the error is an optimistic-concurrency conflict (HTTP 409), which the caller
    /// retries from the newest object.
    pub fn is_conflict(&self) -> bool {
        matches!(self, OperatorError::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }

    /// The kind of object the failed request was about, when it was an API request.
    pub fn api_kind(&self) -> Option<&str> {
        match self {
            OperatorError::Api { kind, .. } | OperatorError::Timeout { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Whether a kube error is `404 Not Found`.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
