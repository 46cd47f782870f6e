//! The seccomp kind on a node: the [`ProfileBackend`] the daemon drives for SeccompProfiles.
//!
//! It wraps spo-seccomp's pieces with what only the daemon knows: base profiles come from
//! the watched SeccompProfiles ([`StoreResolver`]), the SPOD's `security` policy applies, and
//! the kubelet directory must exist (a missing one is an `Error` that names the flag, not a
//! directory tree created in the wrong place).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use spo_model::contract::{InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome};
use spo_model::observed::Recording;
use spo_model::seccomp::{Arch, SeccompProfileSpec};
use spo_model::spod::SpodSecurity;
use spo_model::validate::Problems;
use spo_model::{SeccompProfile, SecurityProfilesOperatorDaemon};
use spo_seccomp::SeccompError;
use spo_seccomp::backend::{SeccompBackend, spec_from_recording};
use spo_seccomp::compile::{CompileOptions, compile};
use spo_seccomp::node::{DirStore, ProfileStore};
use spo_seccomp::oci::render_node_json;
use spo_seccomp::resolve::{BaseResolver, resolve_profile};
use spo_seccomp::validate::{check_policy, check_spec, policy_problems};

use super::NodeKind;

/// SeccompProfiles on one node: files under `<kubelet dir>/seccomp/operator/`.
#[derive(Debug, Clone)]
pub struct SeccompNode {
    kubelet_dir: PathBuf,
    store: DirStore,
    proc_root: Option<PathBuf>,
    native: Arch,
}

impl SeccompNode {
    /// The node whose kubelet root directory is `kubelet_dir`; `proc_root` is where the
    /// node's `/proc` is (default `/proc`).
    pub fn new(kubelet_dir: impl Into<PathBuf>, proc_root: Option<PathBuf>) -> Self {
        let kubelet_dir = kubelet_dir.into();
        SeccompNode {
            store: DirStore::for_kubelet_dir(&kubelet_dir),
            kubelet_dir,
            proc_root,
            native: spo_seccomp::syscalls::native_arch(),
        }
    }

    /// The kubelet directory.
    pub fn kubelet_dir(&self) -> &Path {
        &self.kubelet_dir
    }

    /// The file store.
    pub fn store(&self) -> &DirStore {
        &self.store
    }
}

/// What rendering needs on a node: base profiles and the SPOD policy.
#[derive(Clone)]
pub struct SeccompContext {
    /// Resolves `baseProfileName`.
    pub resolver: Arc<dyn BaseResolver + Send + Sync>,
    /// The SPOD's `spec.security`, when set.
    pub security: Option<SpodSecurity>,
}

impl std::fmt::Debug for SeccompContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompContext")
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

/// Base profiles looked up in the daemon's watch cache of SeccompProfiles.
#[derive(Clone, Debug)]
pub struct StoreResolver(pub Store<SeccompProfile>);

impl BaseResolver for StoreResolver {
    fn resolve(&self, reference: &str) -> Result<Option<SeccompProfileSpec>, SeccompError> {
        if reference.starts_with("oci://") {
            return Err(SeccompError::Resolve(format!(
                "OCI base profiles are not supported by the operator yet ({reference}); \
                 apply the base as a SeccompProfile and name that in baseProfileName"
            )));
        }
        Ok(self.0.get(&ObjectRef::new(reference)).map(|p| p.spec.clone()))
    }
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
/// rules and then on the result of unioning its bases, compiled for `native` (so a profile
/// that the kernel would refuse is an error here, not at container start), then the node
/// file bytes.
pub fn render_for_node(profile: &SeccompProfile, ctx: &SeccompContext, native: Arch) -> Result<Vec<u8>, SeccompError> {
    let name = profile.metadata.name.as_deref().unwrap_or_default();
    let own = check_spec(&profile.spec, native);
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
    compile(
        &resolved.spec,
        &CompileOptions {
            native,
            ..CompileOptions::default()
        },
    )?;
    render_node_json(&resolved.spec)
}

impl ProfileBackend for SeccompNode {
    type Profile = SeccompProfile;
    type Context = SeccompContext;
    type Artifact = Vec<u8>;
    type Target = DirStore;
    type Error = SeccompError;

    fn probe(&self) -> NodeSupport {
        match std::fs::metadata(&self.kubelet_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return NodeSupport::Unsupported {
                    reason: format!(
                        "kubelet directory {} is not a directory; point --kubelet-dir at the kubelet's root directory",
                        self.kubelet_dir.display()
                    ),
                };
            }
            Err(e) => {
                return NodeSupport::Unsupported {
                    reason: format!(
                        "kubelet directory {} cannot be used ({e}); point --kubelet-dir at the kubelet's root directory and mount it into the daemon",
                        self.kubelet_dir.display()
                    ),
                };
            }
        }
        SeccompBackend {
            proc_root: self.proc_root.clone(),
        }
        .probe()
    }

    fn render(&self, profile: &SeccompProfile, ctx: &SeccompContext) -> Result<Vec<u8>, SeccompError> {
        render_for_node(profile, ctx, self.native)
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

impl NodeKind for SeccompNode {
    type Backend = SeccompNode;

    fn backend(&self) -> &SeccompNode {
        self
    }

    fn target(&self) -> &DirStore {
        &self.store
    }

    fn context(
        &self,
        profiles: &Store<SeccompProfile>,
        spod: Option<&SecurityProfilesOperatorDaemon>,
    ) -> SeccompContext {
        SeccompContext {
            resolver: Arc::new(StoreResolver(profiles.clone())),
            security: spod.and_then(|s| s.spec.security.clone()),
        }
    }

    fn dependents(&self, changed: &str, profiles: &Store<SeccompProfile>) -> Vec<String> {
        profiles
            .state()
            .iter()
            .filter(|p| p.spec.base_profile_name.as_deref() == Some(changed))
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    }

    fn installed(&self) -> Result<Vec<InstallName>, SeccompError> {
        self.store.list()
    }

    fn prepare(&self) -> Result<usize, SeccompError> {
        self.store.remove_stale_temp_files()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_seccomp::resolve::MemoryResolver;

    fn profile(yaml: &str) -> SeccompProfile {
        serde_norway::from_str(yaml).expect("profile")
    }

    fn ctx(resolver: MemoryResolver, allowed: Option<&[&str]>) -> SeccompContext {
        SeccompContext {
            resolver: Arc::new(resolver),
            security: allowed.map(|a| SpodSecurity {
                allowed_syscalls: Some(a.iter().map(|s| (*s).to_owned()).collect()),
                ..SpodSecurity::default()
            }),
        }
    }

    const APP: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: app}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [read, write], action: SCMP_ACT_ALLOW}]\n";

    #[test]
    fn renders_the_node_file() {
        let bytes = render_for_node(&profile(APP), &ctx(MemoryResolver::new(), None), Arch::X86_64).expect("render");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["syscalls"][0]["names"], serde_json::json!(["read", "write"]));
    }

    #[test]
    fn unknown_syscalls_name_the_field() {
        let bad = APP.replace("write", "wirte");
        let err =
            render_for_node(&profile(&bad), &ctx(MemoryResolver::new(), None), Arch::X86_64).expect_err("unknown name");
        let text = err.to_string();
        assert!(
            text.contains("spec.syscalls[0].names[1]") && text.contains("write"),
            "{text}"
        );
    }

    #[test]
    fn spod_policy_is_enforced_on_own_rules_and_through_bases() {
        let err = render_for_node(
            &profile(APP),
            &ctx(MemoryResolver::new(), Some(&["read"])),
            Arch::X86_64,
        )
        .expect_err("write not allowed");
        assert!(
            err.to_string().contains("write") && err.to_string().contains("spec.syscalls[0]"),
            "{err}"
        );
        render_for_node(
            &profile(APP),
            &ctx(MemoryResolver::new(), Some(&["read", "write"])),
            Arch::X86_64,
        )
        .expect("allowed");
        // The child allows only `read`, its base allows `openat`, which the policy forbids.
        let child = profile(
            "metadata: {name: child}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  baseProfileName: base\n  syscalls: [{names: [read], action: SCMP_ACT_ALLOW}]\n",
        );
        let mut bases = MemoryResolver::new();
        bases.insert(
            "base",
            profile("metadata: {name: base}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [openat], action: SCMP_ACT_ALLOW}]\n").spec,
        );
        let err = render_for_node(&child, &ctx(bases.clone(), Some(&["read"])), Arch::X86_64).expect_err("base");
        assert!(
            err.to_string().contains("child -> base") && err.to_string().contains("openat"),
            "{err}"
        );
        let merged = render_for_node(&child, &ctx(bases, None), Arch::X86_64).expect("no policy");
        let text = String::from_utf8(merged).expect("utf-8");
        assert!(text.contains("openat") && text.contains("read"), "{text}");
    }

    #[test]
    fn missing_bases_are_errors_naming_the_chain() {
        let child = profile("metadata: {name: child}\nspec: {defaultAction: SCMP_ACT_ERRNO, baseProfileName: gone}\n");
        let err = render_for_node(&child, &ctx(MemoryResolver::new(), None), Arch::X86_64).expect_err("missing");
        assert!(
            spo_model::contract::error_chain(&err).contains("child -> gone"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_kubelet_dir_is_unsupported_with_the_flag_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = SeccompNode::new(dir.path().join("nope"), None);
        match node.probe() {
            NodeSupport::Unsupported { reason } => assert!(reason.contains("--kubelet-dir"), "{reason}"),
            NodeSupport::Supported => panic!("missing dir is supported"),
        }
        assert_eq!(SeccompNode::new(dir.path(), None).probe(), NodeSupport::Supported);
    }
}
