//! The crate's error type.

use std::path::PathBuf;

use spo_model::validate::{FieldPath, Problems};

/// Errors of SELinux backend operations.
#[derive(Debug, thiserror::Error)]
pub enum SelinuxError {
    /// The profile has problems that stop it from being rendered; every one is listed with its
    /// field path.
    #[error("{kind} {name} is invalid: {}", join_errors(problems))]
    Invalid {
        /// `SelinuxProfile` or `RawSelinuxProfile`.
        kind: &'static str,
        /// `metadata.name`.
        name: String,
        /// The problems (errors and warnings).
        problems: Problems,
    },
    /// A compiler or store tool rejected a policy; `location` says where, when the tool said.
    #[error("{tool} rejected {subject}{}: {message}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Rejected {
        /// `secilc` or `semodule`.
        tool: &'static str,
        /// What was being compiled or installed, such as `SelinuxProfile nginx`.
        subject: String,
        /// Where in the profile the tool's first complaint points, when it can be mapped back.
        location: Option<Box<Location>>,
        /// The tool's own message (its stderr, trimmed).
        message: String,
    },
    /// A tool is not installed or the base policy is missing.
    #[error("{what} is not available: {hint}")]
    Toolchain {
        /// What is missing, such as `secilc`.
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// A tool could not be run to its end: it could not be started, ran past its deadline
    /// (its process group was killed), or was killed by a signal. A tool that ran and refused
    /// its input is [`SelinuxError::Rejected`] instead.
    #[error("{step}")]
    Tool {
        /// Which tool did what, such as `installing policy modules a, b with semodule`.
        step: String,
        /// What the runner saw.
        #[source]
        source: spo_hostio::HostIoError,
    },
    /// One batch holds two modules of the same name (two profiles, or a profile named like a
    /// support module); only the first is installed.
    #[error(
        "policy module {name} is named twice in one installation (two profiles, or a profile and a support module such as spo_templates); give each profile a name of its own"
    )]
    DuplicateModule {
        /// The module name.
        name: String,
    },
    /// A tool's output could not be understood.
    #[error("reading the output of {tool}: {message}")]
    ToolOutput {
        /// The tool.
        tool: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A file operation failed.
    #[error("{operation} {}", path.display())]
    Io {
        /// What was being done, such as `writing module`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A module of the same name exists in the store and was not installed by us.
    #[error(
        "policy module {name} already exists in the store at priority {priority}, which spo-selinux does not manage; rename the profile so it does not replace a system module"
    )]
    ForeignModule {
        /// The module name.
        name: String,
        /// Its priority.
        priority: u16,
    },
    /// A SelinuxProfile cannot be merged (its inherit chain is broken).
    #[error("merging SelinuxProfile {profile}: spec.inherit: {message}")]
    Merge {
        /// `metadata.name` of the profile.
        profile: String,
        /// What is wrong (a cycle, a missing or disabled parent, too deep a chain).
        message: String,
    },
    /// A neutral recording cannot become a SelinuxProfile.
    #[error("building a SelinuxProfile from recording {target}: avc_denials[{index}]: {message}")]
    Recording {
        /// The recording's target name.
        target: String,
        /// The index of the denial (in the recording's sorted order).
        index: usize,
        /// What is wrong.
        message: String,
    },
}

impl SelinuxError {
    /// Whether a tool ran past its deadline (and was killed), as opposed to refusing a policy.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SelinuxError::Tool { source, .. } if source.is_timeout())
    }
}

/// Where a tool's complaint points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The module (`<name>.cil`) the tool named.
    pub module: String,
    /// The line in the rendered module.
    pub line: usize,
    /// The profile field that line came from, when it came from one.
    pub field: Option<FieldPath>,
    /// For a RawSelinuxProfile, the line inside `spec.policy`.
    pub source_line: Option<usize>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.field, self.source_line) {
            (Some(field), Some(src)) => write!(f, "{field} line {src} ({}.cil line {})", self.module, self.line),
            (Some(field), None) => write!(f, "{field} ({}.cil line {})", self.module, self.line),
            (None, _) => write!(f, "{}.cil line {}", self.module, self.line),
        }
    }
}

fn join_errors(problems: &Problems) -> String {
    let text: Vec<String> = problems.errors().map(ToString::to_string).collect();
    text.join("; ")
}
