//! The seccomp side of the common contract ([`ProfileBackend`]): probe, render, install,
//! remove, and profiles from recordings.

use std::collections::BTreeSet;

use spo_model::contract::{InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome};
use spo_model::observed::Recording;
use spo_model::seccomp::{Arch, SeccompAction, SeccompProfile, SeccompProfileSpec, SeccompSyscall};

use crate::compile::{CompileOptions, compile};
use crate::error::SeccompError;
use crate::node::{DirStore, ProfileStore};
use crate::oci::render_node_json;
use crate::resolve::{BaseResolver, resolve_profile};

/// The seccomp backend.
#[derive(Debug, Clone, Default)]
pub struct SeccompBackend {
    /// Where `/proc` is (the node's, for the daemon).
    pub proc_root: Option<std::path::PathBuf>,
}

/// What rendering a SeccompProfile needs: where its base profiles come from.
pub struct RenderContext<'a> {
    /// Resolves `baseProfileName`.
    pub resolver: &'a dyn BaseResolver,
    /// The node's architecture.
    pub native: Arch,
}

impl std::fmt::Debug for RenderContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderContext")
            .field("native", &self.native)
            .finish_non_exhaustive()
    }
}

/// Whether the kernel behind `status` (the text of `/proc/self/status`) supports seccomp
/// filters.
pub fn seccomp_supported(status: &str) -> bool {
    status.lines().any(|l| l.starts_with("Seccomp:"))
}

impl ProfileBackend for SeccompBackend {
    type Profile = SeccompProfile;
    type Context = RenderContext<'static>;
    type Artifact = Vec<u8>;
    type Target = DirStore;
    type Error = SeccompError;

    fn probe(&self) -> NodeSupport {
        let root = self.proc_root.clone().unwrap_or_else(|| "/proc".into());
        match std::fs::read_to_string(root.join("self/status")) {
            Ok(s) if seccomp_supported(&s) => NodeSupport::Supported,
            Ok(_) => NodeSupport::Unsupported {
                reason: "the kernel was built without CONFIG_SECCOMP_FILTER".into(),
            },
            Err(e) => NodeSupport::Unsupported {
                reason: format!("cannot read {}/self/status: {e}", root.display()),
            },
        }
    }

    fn render(&self, profile: &SeccompProfile, ctx: &RenderContext<'static>) -> Result<Vec<u8>, SeccompError> {
        render_profile(profile, ctx)
    }

    fn install(
        &self,
        target: &DirStore,
        name: &InstallName,
        artifact: &Vec<u8>,
    ) -> Result<InstallOutcome, SeccompError> {
        target.install(name, artifact)
    }

    fn remove(&self, target: &DirStore, name: &InstallName) -> Result<RemoveOutcome, SeccompError> {
        target.remove(name)
    }

    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<SeccompProfile, SeccompError> {
        Ok(SeccompProfile::new(name, spec_from_recording(recording)))
    }
}

/// Resolves base profiles, checks that the result compiles for this node, and renders the
/// node file (the bytes the runtime reads).
pub fn render_profile(profile: &SeccompProfile, ctx: &RenderContext<'_>) -> Result<Vec<u8>, SeccompError> {
    let name = profile.metadata.name.as_deref().unwrap_or_default();
    let resolved = resolve_profile(name, &profile.spec, ctx.resolver)?;
    let spec = &resolved.spec;
    compile(
        spec,
        &CompileOptions {
            native: ctx.native,
            ..CompileOptions::default()
        },
    )?;
    render_node_json(spec)
}

/// An allow-list profile from what a workload was seen calling: defaultAction
/// `SCMP_ACT_ERRNO`, one `SCMP_ACT_ALLOW` rule with every recorded name, and the recorded
/// architectures.
pub fn spec_from_recording(recording: &Recording) -> SeccompProfileSpec {
    let names: BTreeSet<String> = recording.syscalls.values().flatten().cloned().collect();
    let arches: Vec<Arch> = recording.syscalls.keys().copied().collect();
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action: SeccompAction::Errno,
        architectures: if arches.is_empty() { None } else { Some(arches) },
        listener_path: None,
        listener_metadata: None,
        syscalls: if names.is_empty() {
            None
        } else {
            Some(vec![SeccompSyscall {
                names: names.into_iter().collect(),
                action: SeccompAction::Allow,
                errno_ret: None,
                args: None,
            }])
        },
        flags: None,
        base_profile_name: None,
    }
}

/// What a container runtime written in Go (runc) may call on its own, at any moment, between
/// installing a container's filter and exec'ing the entrypoint: its scheduler parks and wakes
/// threads (`futex`, `nanosleep`, `sched_yield`, `epoll_pwait`), preempts goroutines with
/// signals (`tgkill`, `getpid`, `gettid`, `rt_sigreturn`, `rt_sigprocmask`, `sigaltstack`),
/// grows or returns memory (`mmap`, `munmap`, `madvise`) and starts or ends threads (`clone`,
/// `exit`). Whether any of these happens in that window depends on timing, so one recording
/// may see none of them and the next start of the container need one: a profile without them
/// stops the container one start in a few (we saw `futexwakeup ... returned -1` kill runc's
/// init). Added to profiles recorded from a runtime's filter on (`spoc record
/// --from-seccomp`); all are harmless to allow.
pub const GO_RUNTIME_SYSCALLS: &[&str] = &[
    "clone",
    "epoll_pwait",
    "exit",
    "futex",
    "getpid",
    "gettid",
    "madvise",
    "mmap",
    "munmap",
    "nanosleep",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
    "sigaltstack",
    "tgkill",
];

/// Syscalls every kernel of the architectures we know leaves unimplemented (`sys_ni_syscall`,
/// which returns `ENOSYS`): a rule returning `ENOSYS` for them changes nothing a program can
/// observe.
pub const UNIMPLEMENTED_SYSCALLS: &[&str] = &["afs_syscall", "tuxcall", "vserver"];

/// `ENOSYS`.
const ENOSYS: i64 = 38;

/// A filter that changes no behaviour, for the recording run of a container
/// (`spo_record::RecordStart::SeccompFilter`): it allows everything and answers the
/// [`UNIMPLEMENTED_SYSCALLS`] with the `ENOSYS` the kernel gives anyway. Runtimes skip installing
/// a filter that allows everything without a rule (runc 1.1 does), so the rule is what makes
/// the runtime install it, at the point the container's real profile will be installed.
pub fn recording_filter() -> SeccompProfileSpec {
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action: SeccompAction::Allow,
        architectures: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(vec![SeccompSyscall {
            names: UNIMPLEMENTED_SYSCALLS.iter().map(|s| (*s).to_owned()).collect(),
            action: SeccompAction::Errno,
            errno_ret: Some(ENOSYS),
            args: None,
        }]),
        flags: None,
        base_profile_name: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::MemoryResolver;

    #[test]
    fn the_recording_filter_names_only_syscalls_the_kernel_leaves_unimplemented() {
        let spec = recording_filter();
        let problems = crate::validate::check_spec(&spec, Arch::X86_64);
        assert!(!problems.has_errors(), "{problems}");
        // Every name exists on x86-64, so runc installs a real rule there.
        let table = crate::syscalls::table(Arch::X86_64).expect("x86_64 table");
        for name in UNIMPLEMENTED_SYSCALLS.iter().chain(GO_RUNTIME_SYSCALLS) {
            assert!(table.number(name).is_some(), "{name}");
        }
    }
    use spo_model::ProfileState;
    use spo_model::contract::sync_profile;

    #[test]
    fn the_contract_end_to_end_with_a_temp_node_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        let backend = SeccompBackend::default();
        assert_eq!(backend.probe(), NodeSupport::Supported);
        let mut rec = Recording::default();
        rec.syscalls.entry(Arch::X86_64).or_default().extend([
            "read".to_owned(),
            "write".to_owned(),
            "exit_group".to_owned(),
        ]);
        let profile = backend.profile_from_recording("demo", &rec).expect("from recording");
        static RESOLVER: std::sync::OnceLock<MemoryResolver> = std::sync::OnceLock::new();
        let ctx = RenderContext {
            resolver: RESOLVER.get_or_init(MemoryResolver::new),
            native: Arch::X86_64,
        };
        let first = sync_profile(&backend, &store, &profile, &ctx);
        assert_eq!(first.state, ProfileState::Installed, "{first:?}");
        assert!(first.changed);
        let file = dir.path().join("operator/demo.json");
        let text = std::fs::read_to_string(&file).expect("node file");
        assert!(text.contains("\"defaultAction\":\"SCMP_ACT_ERRNO\""), "{text}");
        let again = sync_profile(&backend, &store, &profile, &ctx);
        assert!(!again.changed, "unchanged bytes are not rewritten");
        let mut disabled = profile.clone();
        disabled.spec.state = spo_model::SpecState::Disabled;
        let off = sync_profile(&backend, &store, &disabled, &ctx);
        assert_eq!(off.state, ProfileState::Disabled);
        assert!(!file.exists(), "disabled profiles are removed from the node");
        let mut bad = profile.clone();
        bad.spec.syscalls = Some(vec![SeccompSyscall {
            names: vec!["Read".into()],
            action: SeccompAction::Allow,
            errno_ret: None,
            args: None,
        }]);
        let err = sync_profile(&backend, &store, &bad, &ctx);
        assert_eq!(err.state, ProfileState::Error);
        assert!(
            err.message
                .as_deref()
                .is_some_and(|m| m.contains("spec.syscalls[0].names[0]")),
            "{err:?}"
        );
    }
}
