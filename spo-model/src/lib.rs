#![doc = include_str!("../README.md")]

#[macro_use]
mod macros;

pub mod apparmor;
pub mod binding;
pub mod common;
pub mod contract;
pub mod crd;
pub mod document;
pub mod error;
mod lines;
pub mod names;
mod nesting;
pub mod nodestatus;
pub mod observed;
pub mod recording;
pub mod seccomp;
pub mod selinux;
pub mod spod;
pub mod strict;
pub mod validate;
pub mod yaml;

pub use apparmor::{AppArmorProfile, AppArmorProfileSpec};
pub use binding::{ProfileBinding, ProfileBindingSpec};
pub use common::{API_VERSION, Condition, GROUP, ProfileState, SpecState, VERSION};
pub use contract::{ProfileBackend, ProfileKind, SecurityProfile};
pub use document::{AnyObject, Document, FieldLines, Kind, MAX_NESTING_DEPTH, Outcome, parse_source};
pub use error::ModelError;
pub use nodestatus::SecurityProfileNodeStatus;
pub use observed::Recording;
pub use recording::{ProfileRecording, ProfileRecordingSpec};
pub use seccomp::{SeccompProfile, SeccompProfileSpec};
pub use selinux::{RawSelinuxProfile, RawSelinuxProfileSpec, SelinuxProfile, SelinuxProfileSpec};
pub use spod::{SecurityProfilesOperatorDaemon, SpodSpec};
pub use validate::{FieldPath, Problem, Problems, Severity};
