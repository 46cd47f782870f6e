//! The seccomp side of the common contract ([`ProfileBackend`]): probe, render, install,
//! remove, and profiles from recordings.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use spo_model::contract::{InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome};
use spo_model::observed::Recording;
use spo_model::seccomp::{Arch, SeccompAction, SeccompProfile, SeccompProfileSpec, SeccompSyscall};
use spo_model::spod::SpodSecurity;
use spo_model::validate::Problems;

use crate::compile::{CompileOptions, compile};
use crate::error::SeccompError;
use crate::node::{DirStore, ProfileStore};
use crate::oci::render_node_json;
use crate::resolve::{BaseResolver, resolve_profile};
use crate::validate::{check_fields, check_policy, compile_problem, policy_problems};

/// The seccomp backend.
#[derive(Debug, Clone, Default)]
pub struct SeccompBackend {
    /// Where `/proc` is (the node's, for the daemon).
    pub proc_root: Option<PathBuf>,
    /// A directory the node must have for profiles to be installed (the operator's kubelet
    /// directory): when it is missing or not a directory, the node does not support the kind,
    /// with the hint saying how to fix it, rather than a directory tree created in the wrong
    /// place.
    pub required_dir: Option<RequiredDir>,
}

/// A directory [`SeccompBackend::probe`] requires, with what to tell the user when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredDir {
    /// The directory.
    pub path: PathBuf,
    /// What it is, for messages (`kubelet directory`).
    pub what: String,
    /// How to fix a missing one (`point --kubelet-dir at the kubelet's root directory`).
    pub hint: String,
}

impl RequiredDir {
    /// Why the node cannot install profiles, or `None` when the directory is there.
    fn problem(&self) -> Option<String> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some(format!(
                "{} {} is not a directory; {}",
                self.what,
                self.path.display(),
                self.hint
            )),
            Err(e) => Some(format!(
                "{} {} cannot be used ({e}); {}",
                self.what,
                self.path.display(),
                self.hint
            )),
        }
    }
}

/// What rendering a SeccompProfile needs: where its base profiles come from, the node's
/// architecture, and the SPOD's `security` policy when one applies.
#[derive(Clone)]
pub struct RenderContext {
    /// Resolves `baseProfileName`.
    pub resolver: Arc<dyn BaseResolver + Send + Sync>,
    /// The node's architecture.
    pub native: Arch,
    /// The SPOD's `spec.security` (its `allowedSyscalls`), when set.
    pub security: Option<SpodSecurity>,
}

impl RenderContext {
    /// Bases from `resolver`, this machine's architecture, no policy.
    pub fn new(resolver: Arc<dyn BaseResolver + Send + Sync>) -> Self {
        RenderContext {
            resolver,
            native: crate::syscalls::native_arch(),
            security: None,
        }
    }
}

impl std::fmt::Debug for RenderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderContext")
            .field("native", &self.native)
            .field("security", &self.security)
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
    type Context = RenderContext;
    type Artifact = Vec<u8>;
    type Target = DirStore;
    type Error = SeccompError;

    fn probe(&self) -> NodeSupport {
        if let Some(reason) = self.required_dir.as_ref().and_then(RequiredDir::problem) {
            return NodeSupport::Unsupported { reason };
        }
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

    fn render(&self, profile: &SeccompProfile, ctx: &RenderContext) -> Result<Vec<u8>, SeccompError> {
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

    /// The `<name>.json` files of the store's `operator/` directory: only SeccompProfiles
    /// live there.
    fn list(&self, target: &DirStore) -> Result<Vec<String>, SeccompError> {
        Ok(target.list()?.into_iter().map(|n| n.as_str().to_owned()).collect())
    }

    /// The SPOD's `security.allowedSyscalls`, checked on the profile's own rules and then on
    /// the union with its base profiles (a base must not bring in what the child may not
    /// allow). A base that cannot be resolved is left to `render`, which names the chain.
    fn policy_problems(&self, profile: &SeccompProfile, ctx: &RenderContext) -> Problems {
        policy_check(profile, ctx)
    }

    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<SeccompProfile, SeccompError> {
        Ok(SeccompProfile::new(name, spec_from_recording(recording)))
    }

    /// The spec's own warnings for this node (syscall names of other architectures, which the
    /// runtime skips, among them).
    fn warnings(&self, profile: &SeccompProfile, ctx: &RenderContext) -> Problems {
        let mut out = Problems::new();
        for p in check_fields(&profile.spec, ctx.native).iter().filter(|p| !p.is_error()) {
            out.push(p.clone());
        }
        out
    }
}

/// The SPOD policy problems of a profile (pure): its own rules first; when those pass, the
/// union with its bases, reported at `spec.baseProfileName`.
pub fn policy_check(profile: &SeccompProfile, ctx: &RenderContext) -> Problems {
    let Some(security) = &ctx.security else {
        return Problems::new();
    };
    let own = check_policy(&profile.spec, security);
    if !own.is_empty() {
        return policy_problems(&own);
    }
    let name = profile.metadata.name.as_deref().unwrap_or_default();
    let Ok(resolved) = resolve_profile(name, &profile.spec, ctx.resolver.as_ref()) else {
        return Problems::new();
    };
    let violations = check_policy(&resolved.spec, security);
    let mut out = Problems::new();
    if !violations.is_empty() {
        let syscalls: Vec<String> = violations.iter().flat_map(|v| v.syscalls.clone()).collect();
        out.push(
            spo_model::validate::Problem::error(
                spo_model::validate::FieldPath::root().field("spec").field("baseProfileName"),
                format!(
                    "through its base profiles ({}) it lets {} run, which the SPOD's security.allowedSyscalls does not allow",
                    resolved.chain.join(" -> "),
                    if syscalls.is_empty() {
                        "every unlisted syscall".to_owned()
                    } else {
                        syscalls.join(", ")
                    }
                ),
            )
            .with_hint("ask the cluster administrator, or use a base profile within the policy"),
        );
    }
    out
}

fn problems_text(problems: &Problems) -> String {
    problems
        .errors()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Renders a SeccompProfile for a node (pure): syscall names checked against the tables
/// (errors name `spec.syscalls[i].names[j]`), the SPOD policy checked on the profile's own
/// rules and then on the result of unioning its bases, compiled for `ctx.native` (so a profile
/// the kernel would refuse is an error here, not at container start), then the node file
/// bytes (the JSON the runtime reads).
pub fn render_profile(profile: &SeccompProfile, ctx: &RenderContext) -> Result<Vec<u8>, SeccompError> {
    let name = profile.metadata.name.as_deref().unwrap_or_default();
    // The compile check runs once below, on what the node will load.
    let own = check_fields(&profile.spec, ctx.native);
    if own.has_errors() {
        return Err(SeccompError::Invalid(problems_text(&own)));
    }
    if let Some(security) = &ctx.security {
        let violations = check_policy(&profile.spec, security);
        if !violations.is_empty() {
            return Err(SeccompError::Invalid(format!(
                "violates the SPOD security policy: {}",
                problems_text(&policy_problems(&violations))
            )));
        }
    }
    let resolved = resolve_profile(name, &profile.spec, ctx.resolver.as_ref())?;
    if let Some(security) = &ctx.security {
        let violations = check_policy(&resolved.spec, security);
        if !violations.is_empty() {
            let syscalls: Vec<String> = violations.iter().flat_map(|v| v.syscalls.clone()).collect();
            return Err(SeccompError::Invalid(format!(
                "violates the SPOD security policy through its base profiles ({}): they let {} run",
                resolved.chain.join(" -> "),
                if syscalls.is_empty() {
                    "every unlisted syscall".to_owned()
                } else {
                    syscalls.join(", ")
                }
            )));
        }
    }
    let options = CompileOptions {
        native: ctx.native,
        ..CompileOptions::default()
    };
    match compile(&resolved.spec, &options) {
        Ok(_) => {}
        // Without bases the resolved spec is the profile's own rules in canonical form: report
        // as check_spec does, at the field.
        Err(e) if profile.spec.base_profile_name.is_none() => {
            let mut problems = Problems::new();
            problems.push(compile_problem(e));
            return Err(SeccompError::Invalid(problems_text(&problems)));
        }
        Err(e) => return Err(e),
    }
    render_node_json(&resolved.spec)
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

/// Adds [`GO_RUNTIME_SYSCALLS`] to `recording`, under this machine's native architecture (the
/// runtime runs natively, whatever ABI the workload uses). Every front end that records a
/// container from its runtime's filter on calls it (`spoc record --from-seccomp`, the
/// operator's node recorder), so a recorded profile lets the container start every time, not
/// only when the runtime's scheduler happened to keep still.
pub fn add_runtime_allowance(recording: &mut Recording) {
    let names = recording.syscalls.entry(crate::syscalls::native_arch()).or_default();
    names.extend(GO_RUNTIME_SYSCALLS.iter().map(|s| (*s).to_owned()));
}

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

    #[test]
    fn the_runtime_allowance_goes_to_the_native_architecture_and_keeps_what_was_recorded() {
        let mut recording = Recording::default();
        recording
            .syscalls
            .entry(crate::syscalls::native_arch())
            .or_default()
            .insert("getdents64".to_owned());
        add_runtime_allowance(&mut recording);
        let names = &recording.syscalls[&crate::syscalls::native_arch()];
        assert!(names.contains("getdents64"));
        for name in GO_RUNTIME_SYSCALLS {
            assert!(names.contains(*name), "{name}");
        }
        assert_eq!(recording.syscalls.len(), 1, "no other architecture appears");
    }
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
    fn names_of_other_architectures_install_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        let backend = SeccompBackend::default();
        let mut rec = Recording::default();
        rec.syscalls.entry(Arch::X86_64).or_default().extend([
            "read".to_owned(),
            "exit_group".to_owned(),
            "vm86old".to_owned(),
        ]);
        let profile = backend.profile_from_recording("copied", &rec).expect("from recording");
        let ctx = RenderContext {
            native: Arch::X86_64,
            ..RenderContext::new(Arc::new(MemoryResolver::new()))
        };
        let outcome = sync_profile(&backend, &store, &profile, &ctx);
        assert_eq!(outcome.state, ProfileState::Installed, "{outcome:?}");
        assert_eq!(outcome.warnings.len(), 1, "{outcome:?}");
        assert!(
            outcome.warnings[0].starts_with("spec.syscalls[0].names[") && outcome.warnings[0].contains("vm86old"),
            "{outcome:?}"
        );
        let clean = backend
            .profile_from_recording("clean", &{
                let mut r = Recording::default();
                r.syscalls.entry(Arch::X86_64).or_default().insert("read".to_owned());
                r
            })
            .expect("from recording");
        assert!(sync_profile(&backend, &store, &clean, &ctx).warnings.is_empty());
    }

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
        let ctx = RenderContext {
            native: Arch::X86_64,
            ..RenderContext::new(Arc::new(MemoryResolver::new()))
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

    // What the operator's node daemon renders with (bases from its cache, the SPOD policy).
    fn profile(yaml: &str) -> SeccompProfile {
        serde_norway::from_str(yaml).expect("profile")
    }

    fn ctx(resolver: MemoryResolver, allowed: Option<&[&str]>) -> RenderContext {
        RenderContext {
            resolver: Arc::new(resolver),
            native: Arch::X86_64,
            security: allowed.map(|a| SpodSecurity {
                allowed_syscalls: Some(a.iter().map(|s| (*s).to_owned()).collect()),
                ..SpodSecurity::default()
            }),
        }
    }

    const APP: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: app}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [read, write], action: SCMP_ACT_ALLOW}]\n";

    #[test]
    fn renders_the_node_file() {
        let bytes = render_profile(&profile(APP), &ctx(MemoryResolver::new(), None)).expect("render");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["syscalls"][0]["names"], serde_json::json!(["read", "write"]));
    }

    #[test]
    fn unknown_syscalls_name_the_field() {
        let bad = APP.replace("write", "wirte");
        let err = render_profile(&profile(&bad), &ctx(MemoryResolver::new(), None)).expect_err("unknown name");
        let text = err.to_string();
        assert!(
            text.contains("spec.syscalls[0].names[1]") && text.contains("write"),
            "{text}"
        );
    }

    #[test]
    fn spod_policy_is_enforced_on_own_rules_and_through_bases() {
        let err =
            render_profile(&profile(APP), &ctx(MemoryResolver::new(), Some(&["read"]))).expect_err("write not allowed");
        assert!(
            err.to_string().contains("write") && err.to_string().contains("spec.syscalls[0]"),
            "{err}"
        );
        render_profile(&profile(APP), &ctx(MemoryResolver::new(), Some(&["read", "write"]))).expect("allowed");
        // The child allows only `read`, its base allows `openat`, which the policy forbids.
        let child = profile(
            "metadata: {name: child}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  baseProfileName: base\n  syscalls: [{names: [read], action: SCMP_ACT_ALLOW}]\n",
        );
        let mut bases = MemoryResolver::new();
        bases.insert(
            "base",
            profile("metadata: {name: base}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [openat], action: SCMP_ACT_ALLOW}]\n").spec,
        );
        let err = render_profile(&child, &ctx(bases.clone(), Some(&["read"]))).expect_err("base");
        assert!(
            err.to_string().contains("child -> base") && err.to_string().contains("openat"),
            "{err}"
        );
        let merged = render_profile(&child, &ctx(bases, None)).expect("no policy");
        let text = String::from_utf8(merged).expect("utf-8");
        assert!(text.contains("openat") && text.contains("read"), "{text}");
    }

    #[test]
    fn missing_bases_are_errors_naming_the_chain() {
        let child = profile("metadata: {name: child}\nspec: {defaultAction: SCMP_ACT_ERRNO, baseProfileName: gone}\n");
        let err = render_profile(&child, &ctx(MemoryResolver::new(), None)).expect_err("missing");
        assert!(
            spo_model::contract::error_chain(&err).contains("child -> gone"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_required_dir_is_unsupported_with_the_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = |path: std::path::PathBuf| SeccompBackend {
            required_dir: Some(RequiredDir {
                path,
                what: "kubelet directory".into(),
                hint: "point --kubelet-dir at the kubelet's root directory".into(),
            }),
            ..SeccompBackend::default()
        };
        match backend(dir.path().join("nope")).probe() {
            NodeSupport::Unsupported { reason } => {
                assert!(
                    reason.contains("kubelet directory") && reason.contains("--kubelet-dir"),
                    "{reason}"
                )
            }
            NodeSupport::Supported => panic!("a missing dir is supported"),
        }
        let file = dir.path().join("file");
        std::fs::write(&file, b"").expect("file");
        assert!(
            matches!(backend(file).probe(), NodeSupport::Unsupported { reason } if reason.contains("not a directory"))
        );
        assert_eq!(backend(dir.path().to_owned()).probe(), NodeSupport::Supported);
    }
}
