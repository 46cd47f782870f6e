//! The common contract every profile kind goes through.
//!
//! Two sides meet here:
//!
//! - the **object side**, [`SecurityProfile`], implemented in this crate by the four profile
//!   kinds (SeccompProfile, SelinuxProfile, RawSelinuxProfile, AppArmorProfile): what the
//!   generic loop needs to know about an object without knowing its kind;
//! - the **backend side**, [`ProfileBackend`], implemented in each backend crate
//!   (`spo-seccomp`, `spo-selinux`, `spo-apparmor`) by a local type: probe the node, check a
//!   profile against the cluster's policy and render it into its artifact (both pure), install,
//!   remove and list artifacts through an injected target, and build a profile from a neutral
//!   [`Recording`].
//!
//! The node daemon is written once against these traits (one adapter per kind);
//! [`sync_profile`] is the decision it makes for every kind. It reports failures typed ([`SyncFailure`]: the step that failed
//! and whether the profile breaks the cluster's policy), so metrics and events never parse
//! messages. Adding a fourth kind is one new backend crate plus one operator adapter.
//!
//! # Plugging in a backend
//!
//! ```
//! use std::cell::RefCell;
//! use std::collections::BTreeMap;
//! use spo_model::contract::*;
//! use spo_model::observed::Recording;
//! use spo_model::seccomp::{SeccompAction, SeccompProfile, SeccompProfileSpec};
//!
//! /// A toy backend for the example: renders the default action as text, installs into a map.
//! struct TextBackend;
//! #[derive(Default)]
//! struct MapTarget(RefCell<BTreeMap<String, String>>);
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("toy backend failed")]
//! struct ToyError;
//!
//! impl ProfileBackend for TextBackend {
//!     type Profile = SeccompProfile;
//!     type Context = ();
//!     type Artifact = String;
//!     type Target = MapTarget;
//!     type Error = ToyError;
//!
//!     fn probe(&self) -> NodeSupport { NodeSupport::Supported }
//!     fn render(&self, p: &SeccompProfile, _: &()) -> Result<String, ToyError> {
//!         Ok(p.spec.default_action.to_string())
//!     }
//!     fn install(&self, t: &MapTarget, n: &InstallName, a: &String) -> Result<InstallOutcome, ToyError> {
//!         let old = t.0.borrow_mut().insert(n.as_str().to_owned(), a.clone());
//!         Ok(if old.as_ref() == Some(a) { InstallOutcome::Unchanged } else { InstallOutcome::Written })
//!     }
//!     fn remove(&self, t: &MapTarget, n: &InstallName) -> Result<RemoveOutcome, ToyError> {
//!         Ok(match t.0.borrow_mut().remove(n.as_str()) {
//!             Some(_) => RemoveOutcome::Removed,
//!             None => RemoveOutcome::NotPresent,
//!         })
//!     }
//!     fn list(&self, t: &MapTarget) -> Result<Vec<String>, ToyError> {
//!         Ok(t.0.borrow().keys().cloned().collect())
//!     }
//!     fn profile_from_recording(&self, name: &str, _: &Recording) -> Result<SeccompProfile, ToyError> {
//!         Ok(SeccompProfile::new(name, SeccompProfileSpec {
//!             state: Default::default(), disabled: None,
//!             default_action: SeccompAction::Errno, architectures: None, listener_path: None,
//!             listener_metadata: None, syscalls: None, flags: None, base_profile_name: None,
//!         }))
//!     }
//! }
//!
//! let target = MapTarget::default();
//! let profile = TextBackend.profile_from_recording("demo", &Recording::default()).unwrap();
//! let outcome = sync_profile(&TextBackend, &target, &profile, &());
//! assert_eq!(outcome.state, spo_model::ProfileState::Installed);
//! assert_eq!(target.0.borrow()["demo"], "SCMP_ACT_ERRNO");
//! assert_eq!(TextBackend.list(&target).unwrap(), ["demo"]);
//!
//! // A failure says which step failed, typed.
//! let mut bad = profile.clone();
//! bad.metadata.name = Some("Not A Name".into());
//! let failed = sync_profile(&TextBackend, &target, &bad, &());
//! assert_eq!(failed.failure.map(|f| f.step), Some(SyncStep::Name));
//! ```

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apparmor::AppArmorProfile;
use crate::common::{Condition, ProfileState, SpecState};
use crate::names::LABEL_PARTIAL;
use crate::observed::Recording;
use crate::seccomp::SeccompProfile;
use crate::selinux::{RawSelinuxProfile, SelinuxProfile};
use crate::validate::{Problems, is_dns_subdomain};

/// The profile kinds the contract covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileKind {
    /// seccomp.
    Seccomp,
    /// SELinux, written as allow rules.
    Selinux,
    /// SELinux, written in CIL.
    RawSelinux,
    /// AppArmor.
    AppArmor,
}

impl ProfileKind {
    /// Every profile kind.
    pub const ALL: [ProfileKind; 4] = [
        ProfileKind::Seccomp,
        ProfileKind::Selinux,
        ProfileKind::RawSelinux,
        ProfileKind::AppArmor,
    ];

    /// The kind called `name` (`SeccompProfile`, ...).
    pub fn from_kind_name(name: &str) -> Option<ProfileKind> {
        ProfileKind::ALL.into_iter().find(|k| k.kind_name() == name)
    }

    /// The Kubernetes kind name.
    pub fn kind_name(self) -> &'static str {
        match self {
            ProfileKind::Seccomp => "SeccompProfile",
            ProfileKind::Selinux => "SelinuxProfile",
            ProfileKind::RawSelinux => "RawSelinuxProfile",
            ProfileKind::AppArmor => "AppArmorProfile",
        }
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind_name())
    }
}

/// A name a profile may be installed under on a node: a file stem, a policy module name or an
/// AppArmor profile name. It is a DNS subdomain, so it holds no `/`, no `..` component, no NUL
/// and no whitespace, and cannot escape the directory or store it is installed in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstallName(String);

/// Why an object name cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "profile name {name:?} cannot be used on a node: it must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
)]
pub struct InvalidInstallName {
    /// The rejected name.
    pub name: String,
}

impl InstallName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Self, InvalidInstallName> {
        if is_dns_subdomain(name) {
            Ok(InstallName(name.to_owned()))
        } else {
            Err(InvalidInstallName { name: name.to_owned() })
        }
    }

    /// `name` followed by `_<suffix>`, for a kind whose artifacts share a namespace with
    /// another kind's (RawSelinuxProfile modules next to SelinuxProfile modules). `name` must
    /// be a DNS subdomain and `suffix` lower-case ASCII letters; `_` never occurs in a
    /// Kubernetes name, so a suffixed name never equals a plain one.
    pub fn with_suffix(name: &str, suffix: &str) -> Result<Self, InvalidInstallName> {
        let suffix_ok = !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_lowercase());
        if is_dns_subdomain(name) && suffix_ok {
            Ok(InstallName(format!("{name}_{suffix}")))
        } else {
            Err(InvalidInstallName {
                name: format!("{name}_{suffix}"),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstallName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The object side of the contract, implemented by the four profile kinds.
pub trait SecurityProfile: Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind.
    const KIND: ProfileKind;

    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;

    /// `metadata.name` (empty when unset).
    fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// `spec.state`, with the deprecated `disabled` flag folded in.
    fn spec_state(&self) -> SpecState;

    /// Sets `spec.state`, clearing the deprecated `disabled` flag so the two cannot disagree.
    fn set_spec_state(&mut self, state: SpecState);

    /// Whether the profile should be on nodes.
    fn is_enabled(&self) -> bool {
        self.spec_state() == SpecState::Enabled
    }

    /// Whether this is a partial profile of a recording, not to be installed until merged.
    fn is_partial(&self) -> bool {
        self.meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_PARTIAL))
            .is_some_and(|v| v == "true")
    }

    /// Whether a node should have the profile installed.
    fn should_install(&self) -> bool {
        self.is_enabled() && !self.is_partial()
    }

    /// The aggregated state in `status.status`.
    fn profile_state(&self) -> Option<ProfileState>;

    /// `status.conditions`.
    fn conditions(&self) -> &[Condition];

    /// Drops the whole status (for caches that act on the spec and metadata only, such as
    /// a node daemon's: a profile's status is the cluster's aggregate, not the node's input).
    /// The four kinds drop it; the default keeps it (an implementation from before this method
    /// existed loses only the memory it would save).
    fn clear_status(&mut self) {}

    /// Sets `status.status` and replaces the `Ready` condition.
    fn set_profile_state(&mut self, state: ProfileState, ready: Condition);

    /// The name the profile is installed under on a node.
    fn install_name(&self) -> Result<InstallName, InvalidInstallName> {
        InstallName::new(self.name())
    }

    /// Every problem with the object (pure, no IO).
    fn validate(&self) -> Problems;
}

macro_rules! impl_security_profile {
    ($ty:ty, $kind:expr, $status:ty) => {
        impl SecurityProfile for $ty {
            const KIND: ProfileKind = $kind;

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn spec_state(&self) -> SpecState {
                self.spec.effective_state()
            }

            fn set_spec_state(&mut self, state: SpecState) {
                self.spec.state = state;
                self.spec.disabled = None;
            }

            fn profile_state(&self) -> Option<ProfileState> {
                self.status.as_ref().and_then(|s| s.status)
            }

            fn conditions(&self) -> &[Condition] {
                self.status
                    .as_ref()
                    .map(|s| s.conditions.as_slice())
                    .unwrap_or_default()
            }

            fn clear_status(&mut self) {
                self.status = None;
            }

            fn set_profile_state(&mut self, state: ProfileState, ready: Condition) {
                let status = self.status.get_or_insert_with(<$status>::default);
                status.status = Some(state);
                status.conditions.retain(|c| c.type_ != ready.type_);
                status.conditions.push(ready);
            }

            fn validate(&self) -> Problems {
                <$ty>::validate(self)
            }
        }
    };
}

impl_security_profile!(
    SeccompProfile,
    ProfileKind::Seccomp,
    crate::seccomp::SeccompProfileStatus
);
impl_security_profile!(
    SelinuxProfile,
    ProfileKind::Selinux,
    crate::selinux::SelinuxProfileStatus
);
impl_security_profile!(
    RawSelinuxProfile,
    ProfileKind::RawSelinux,
    crate::selinux::SelinuxProfileStatus
);
impl_security_profile!(
    AppArmorProfile,
    ProfileKind::AppArmor,
    crate::apparmor::AppArmorProfileStatus
);

/// Whether a node can enforce a kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeSupport {
    /// Profiles of the kind can be installed and enforced.
    Supported,
    /// They cannot; the reason says what is missing (shown in node statuses and `spoc`).
    Unsupported {
        /// What is missing, such as "AppArmor is not enabled in this kernel".
        reason: String,
    },
}

/// What an install did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The artifact was written (new or changed).
    Written,
    /// The installed artifact was already identical; nothing was touched.
    Unchanged,
}

/// What a removal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The artifact was removed.
    Removed,
    /// There was nothing to remove.
    NotPresent,
}

/// The backend side of the contract, implemented once per kind in its backend crate.
///
/// `render` and `profile_from_recording` are pure. `install` and `remove` act on an injected
/// `Target` (a directory root for seccomp, a policy store for SELinux, a loader for AppArmor)
/// so tests pass a temporary directory, a private store or a fake; both must be idempotent.
pub trait ProfileBackend {
    /// The profile kind this backend handles.
    type Profile: SecurityProfile;
    /// What rendering needs besides the profile (resolved base profiles, SPOD policy...).
    type Context;
    /// The rendered artifact (JSON bytes, CIL text, a BPF program, AppArmor text...).
    type Artifact;
    /// Where artifacts are installed.
    type Target;
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether this node supports the kind.
    fn probe(&self) -> NodeSupport;

    /// The name a profile called `name` is installed under. By default the name itself; a
    /// kind that shares an install namespace with another kind suffixes it
    /// ([`InstallName::with_suffix`]).
    fn install_name(&self, name: &str) -> Result<InstallName, InvalidInstallName> {
        InstallName::new(name)
    }

    /// Problems with the cluster's policy (the SPOD's allowed syscalls, SELinux guardrails...)
    /// in `ctx` (pure). Errors here are reported as policy violations. None by default.
    fn policy_problems(&self, _profile: &Self::Profile, _ctx: &Self::Context) -> Problems {
        Problems::new()
    }

    /// Whether a render or install `error` means the profile breaks the cluster's policy
    /// (rather than being invalid or the node failing). `false` by default.
    fn is_policy_violation(&self, _error: &Self::Error) -> bool {
        false
    }

    /// Renders a profile (pure).
    fn render(&self, profile: &Self::Profile, ctx: &Self::Context) -> Result<Self::Artifact, Self::Error>;

    /// Installs an artifact under `name`; writes nothing when it is already installed as is.
    fn install(
        &self,
        target: &Self::Target,
        name: &InstallName,
        artifact: &Self::Artifact,
    ) -> Result<InstallOutcome, Self::Error>;

    /// Removes what is installed under `name`; succeeds when nothing is.
    fn remove(&self, target: &Self::Target, name: &InstallName) -> Result<RemoveOutcome, Self::Error>;

    /// The `metadata.name`s of the profiles of this kind installed in `target`: only what this
    /// backend installed, never another kind's artifacts or the node's own (distribution
    /// policy modules, distribution AppArmor profiles). The node daemon's orphan sweep removes
    /// what it lists and no profile object claims, so listing anything else would delete it.
    fn list(&self, target: &Self::Target) -> Result<Vec<String>, Self::Error>;

    /// Builds a profile named `name` from what a workload was seen doing (pure).
    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<Self::Profile, Self::Error>;

    /// What is worth telling about a profile that installs fine (pure): a syscall name that
    /// exists only on other architectures, say. None by default.
    fn warnings(&self, _profile: &Self::Profile, _ctx: &Self::Context) -> Problems {
        Problems::new()
    }
}

/// The step of [`sync_profile`] that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncStep {
    /// The object's name cannot be installed under.
    Name,
    /// The node does not support the kind.
    Probe,
    /// The object fails its own validation.
    Validate,
    /// The object breaks the cluster's policy ([`ProfileBackend::policy_problems`]).
    Policy,
    /// Rendering failed.
    Render,
    /// Installing failed.
    Install,
    /// Removing (a disabled or partial profile) failed.
    Remove,
}

/// Why [`sync_profile`] reported `Error`, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    /// The step that failed.
    pub step: SyncStep,
    /// Whether the profile breaks the cluster's policy (the SPOD's), as opposed to being
    /// invalid in itself or the node failing.
    pub policy_violation: bool,
}

/// The result of [`sync_profile`]: the node state to report and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The state for this node.
    pub state: ProfileState,
    /// A message for the `Ready` condition (validation errors, backend errors, "unchanged").
    pub message: Option<String>,
    /// Whether anything on the node changed.
    pub changed: bool,
    /// For an installed profile: its warnings (the model's and the backend's), as
    /// `field: message`, for a Warning Event.
    pub warnings: Vec<String>,
    /// For `Error`: which step failed.
    pub failure: Option<SyncFailure>,
}

impl SyncOutcome {
    /// An `Error` at `step`.
    pub fn failed(step: SyncStep, policy_violation: bool, message: String) -> SyncOutcome {
        SyncOutcome {
            state: ProfileState::Error,
            message: Some(message),
            changed: false,
            warnings: Vec::new(),
            failure: Some(SyncFailure { step, policy_violation }),
        }
    }
}

/// Brings one node in line with one profile: removes it when it is disabled or partial,
/// reports `Error` with every validation problem when it is invalid or breaks the cluster's
/// policy, otherwise renders and installs it. This is the decision the node daemon makes for
/// every kind. [`render_checked`] and [`install_rendered`] are its two halves, for callers
/// that render many profiles and install them at once.
pub fn sync_profile<B: ProfileBackend>(
    backend: &B,
    target: &B::Target,
    profile: &B::Profile,
    ctx: &B::Context,
) -> SyncOutcome {
    match render_checked(backend, target, profile, ctx) {
        Rendered::Done(outcome) => outcome,
        Rendered::Install {
            name,
            artifact,
            warnings,
        } => install_rendered(backend, target, &name, &artifact, warnings),
    }
}

/// What [`render_checked`] decided.
#[derive(Debug)]
pub enum Rendered<A> {
    /// Nothing to install: the profile was removed (disabled, partial) or failed.
    Done(SyncOutcome),
    /// Install `artifact` under `name`; `warnings` go into the outcome.
    Install {
        /// Where it goes.
        name: InstallName,
        /// What goes there.
        artifact: A,
        /// The profile's warnings, as `field: message`.
        warnings: Vec<String>,
    },
}

/// The first half of [`sync_profile`]: everything up to the artifact (removal of a disabled
/// or partial profile, probe, validation, policy, rendering).
pub fn render_checked<B: ProfileBackend>(
    backend: &B,
    target: &B::Target,
    profile: &B::Profile,
    ctx: &B::Context,
) -> Rendered<B::Artifact> {
    let kind = B::Profile::KIND;
    let name = match backend.install_name(profile.name()) {
        Ok(n) => n,
        Err(e) => return Rendered::Done(SyncOutcome::failed(SyncStep::Name, false, e.to_string())),
    };
    if !profile.should_install() {
        let state = if profile.is_partial() {
            ProfileState::Partial
        } else {
            ProfileState::Disabled
        };
        return Rendered::Done(match backend.remove(target, &name) {
            Ok(outcome) => SyncOutcome {
                state,
                message: None,
                changed: outcome == RemoveOutcome::Removed,
                warnings: Vec::new(),
                failure: None,
            },
            Err(e) => SyncOutcome::failed(
                SyncStep::Remove,
                false,
                format!("removing {kind} {name}: {}", error_chain(&e)),
            ),
        });
    }
    if let NodeSupport::Unsupported { reason } = backend.probe() {
        return Rendered::Done(SyncOutcome::failed(
            SyncStep::Probe,
            false,
            format!("{kind} is not supported on this node: {reason}"),
        ));
    }
    let problems = profile.validate();
    if problems.has_errors() {
        return Rendered::Done(SyncOutcome::failed(SyncStep::Validate, false, error_text(&problems)));
    }
    let policy = backend.policy_problems(profile, ctx);
    if policy.has_errors() {
        return Rendered::Done(SyncOutcome::failed(
            SyncStep::Policy,
            true,
            format!("violates the SPOD policy: {}", error_text(&policy)),
        ));
    }
    let artifact = match backend.render(profile, ctx) {
        Ok(a) => a,
        Err(e) => {
            return Rendered::Done(SyncOutcome::failed(
                SyncStep::Render,
                backend.is_policy_violation(&e),
                format!("rendering {kind} {name}: {}", error_chain(&e)),
            ));
        }
    };
    let warnings = problems
        .iter()
        .chain(backend.warnings(profile, ctx).iter())
        .filter(|p| !p.is_error())
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    Rendered::Install {
        name,
        artifact,
        warnings,
    }
}

/// The second half of [`sync_profile`]: installs a rendered artifact.
pub fn install_rendered<B: ProfileBackend>(
    backend: &B,
    target: &B::Target,
    name: &InstallName,
    artifact: &B::Artifact,
    warnings: Vec<String>,
) -> SyncOutcome {
    install_outcome(backend, name, backend.install(target, name, artifact), warnings)
}

/// The outcome of installing `name`, from what [`ProfileBackend::install`] (or an install the
/// target queued and finished later) returned: the second half of [`install_rendered`].
pub fn install_outcome<B: ProfileBackend>(
    backend: &B,
    name: &InstallName,
    result: Result<InstallOutcome, B::Error>,
    warnings: Vec<String>,
) -> SyncOutcome {
    match result {
        Ok(outcome) => SyncOutcome {
            state: ProfileState::Installed,
            message: None,
            changed: outcome == InstallOutcome::Written,
            warnings,
            failure: None,
        },
        Err(e) => SyncOutcome::failed(
            SyncStep::Install,
            backend.is_policy_violation(&e),
            format!("installing {} {name}: {}", B::Profile::KIND, error_chain(&e)),
        ),
    }
}

fn error_text(problems: &Problems) -> String {
    let text: Vec<String> = problems.errors().map(ToString::to_string).collect();
    text.join("; ")
}

/// An error and its sources, joined by `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
