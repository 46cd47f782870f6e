//! The crate's error type.

use std::path::PathBuf;

/// Errors of seccomp backend operations.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A syscall name is not known on an architecture.
    #[error("syscall {name:?} does not exist on {arch}")]
    UnknownSyscall {
        /// The name.
        name: String,
        /// The architecture.
        arch: &'static str,
    },
    /// An architecture has no syscall table or no audit constant.
    #[error("architecture {0} is not supported by this compiler")]
    UnsupportedArch(&'static str),
    /// The profile does not validate.
    #[error("profile is invalid: {0}")]
    Invalid(String),
    /// The compiled program is longer than the kernel accepts.
    #[error("compiled filter has {len} instructions, more than the kernel's limit of {limit}")]
    TooLong {
        /// Instructions produced.
        len: usize,
        /// `BPF_MAXINSNS`.
        limit: usize,
    },
    /// JSON could not be parsed or written.
    #[error("{operation}")]
    Json {
        /// What was being done, such as `parsing runtime JSON`.
        operation: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A file operation failed.
    #[error("{operation} {}", path.display())]
    Io {
        /// What was being done, such as `writing profile`.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed (the node's one writer, spo-hostio).
    #[error(transparent)]
    Write(#[from] spo_hostio::HostIoError),
    /// A path the node installer would write through is not a plain directory or file.
    #[error("refusing to use {}: {reason}", path.display())]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// What is wrong and what to do, such as `it is a symbolic link; ...`.
        reason: &'static str,
    },
    /// A kernel call failed.
    #[error("{operation}")]
    Kernel {
        /// What was being done, such as `installing the seccomp filter`.
        operation: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Base profile resolution failed.
    #[error("resolving base profiles: {0}")]
    Resolve(String),
    /// A base profile chain cannot be resolved; the error names the chain.
    #[error(transparent)]
    BaseProfile(#[from] crate::resolve::ResolveError),
    /// Two profiles cannot be intersected.
    #[error("intersecting seccomp profiles: {0}")]
    Intersect(String),
}
