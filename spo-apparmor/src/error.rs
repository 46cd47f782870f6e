//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use spo_model::Problems;

/// Errors of AppArmor backend operations.
#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    /// The profile breaks a rule of the model or of the path grammar; nothing was rendered.
    #[error("AppArmorProfile {name} is invalid: {}", join(problems))]
    Invalid {
        /// `metadata.name`.
        name: String,
        /// Every error, each with its field path.
        problems: Problems,
    },
    /// apparmor_parser refused the rendered text; the problems name the fields it came from.
    #[error("apparmor_parser rejected AppArmorProfile {name}: {}", join(problems))]
    Rejected {
        /// `metadata.name`.
        name: String,
        /// What the parser said, mapped back to field paths.
        problems: Problems,
    },
    /// A tool could not be started.
    #[error("running {}: install the apparmor package or pass the tool's path", tool.display())]
    ToolUnavailable {
        /// The program.
        tool: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran longer than allowed and was killed.
    #[error("{operation}: {} did not finish within {after:?}; its process group was killed", tool.display())]
    ToolTimeout {
        /// What was being done, such as `loading profile web`.
        operation: String,
        /// The program.
        tool: PathBuf,
        /// The deadline.
        after: Duration,
    },
    /// A tool exited with an error outside validation (loading, removing).
    #[error("{operation}: {} exited with {status}: {stderr}", tool.display())]
    ToolFailed {
        /// What was being done, such as `loading profile web`.
        operation: String,
        /// The program.
        tool: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (trimmed, bounded).
        stderr: String,
    },
    /// The tool's output could not be understood.
    #[error("{operation}: unexpected output from {}: {detail}", tool.display())]
    ToolOutput {
        /// What was being done.
        operation: String,
        /// The program.
        tool: PathBuf,
        /// What was wrong with the output.
        detail: String,
    },
    /// The running kernel has no AppArmor, so nothing can be loaded.
    #[error(
        "the kernel has no AppArmor (securityfs has no {}): AppArmor is not enabled in this kernel \
         or securityfs is not mounted; profiles can still be rendered and validated offline",
        securityfs.display()
    )]
    NoAppArmor {
        /// The directory that is missing, normally `/sys/kernel/security/apparmor`.
        securityfs: PathBuf,
    },
    /// apparmor_parser succeeded but the kernel does not list the profile (or still lists it).
    #[error("{operation}: apparmor_parser succeeded but the kernel's profile list {state}")]
    KernelMismatch {
        /// What was being done.
        operation: String,
        /// What the list shows, such as `has no profile web`.
        state: String,
    },
    /// A tool could not be run to its end for another reason than those above (killed by a
    /// signal, its output could not be read).
    #[error("{operation}")]
    Tool {
        /// What was being done, such as `loading profile web`.
        operation: String,
        /// What the runner saw.
        #[source]
        source: spo_hostio::HostIoError,
    },
    /// Writing a file failed (the one writer, spo-hostio).
    #[error(transparent)]
    Write(#[from] spo_hostio::HostIoError),
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
    /// Two profiles cannot be merged.
    #[error("merging AppArmor profiles: {0}")]
    Merge(String),
}

fn join(problems: &Problems) -> String {
    let errors: Vec<String> = problems.errors().map(ToString::to_string).collect();
    errors.join("; ")
}

/// The first `max` characters of `s`, trimmed, with a marker when cut.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

impl AppArmorError {
    /// The problems of an `Invalid` or `Rejected` error, with field paths.
    pub fn problems(&self) -> Option<&Problems> {
        match self {
            AppArmorError::Invalid { problems, .. } | AppArmorError::Rejected { problems, .. } => Some(problems),
            _ => None,
        }
    }
}
