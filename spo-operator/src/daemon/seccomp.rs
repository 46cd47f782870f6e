//! The seccomp kind on a node: what the daemon drives for SeccompProfiles.
//!
//! spo-seccomp's [`SeccompBackend`] does the work (rendering with the SPOD policy, the node
//! files); this adds what only the daemon knows: base profiles come from the watched
//! SeccompProfiles ([`StoreResolver`]) or from registries (`oci://`, [`super::oci`]), the
//! policy from the watched SPOD, and the kubelet directory must exist (a missing one is an
//! `Error` that names the flag, not a directory tree created in the wrong place).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spo_model::contract::SyncOutcome;
use spo_model::seccomp::{Arch, SeccompProfileSpec};
use spo_model::{ProfileState, SeccompProfile, SecurityProfilesOperatorDaemon};
use spo_seccomp::SeccompError;
use spo_seccomp::backend::{RenderContext, RequiredDir, SeccompBackend};
use spo_seccomp::node::DirStore;
use spo_seccomp::resolve::BaseResolver;

use super::oci::{OciBases, OciPolicy};
use super::{NodeKind, ProfileCache};

/// SeccompProfiles on one node: files under `<kubelet dir>/seccomp/operator/`.
#[derive(Debug, Clone)]
pub struct SeccompNode {
    kubelet_dir: PathBuf,
    store: DirStore,
    backend: SeccompBackend,
    native: Arch,
    oci: Option<Arc<OciBases>>,
}

impl SeccompNode {
    /// The node whose kubelet root directory is `kubelet_dir`; `proc_root` is where the
    /// node's `/proc` is (default `/proc`).
    pub fn new(kubelet_dir: impl Into<PathBuf>, proc_root: Option<PathBuf>) -> Self {
        let kubelet_dir = kubelet_dir.into();
        SeccompNode {
            store: DirStore::for_kubelet_dir(&kubelet_dir),
            backend: SeccompBackend {
                proc_root,
                required_dir: Some(RequiredDir {
                    path: kubelet_dir.clone(),
                    what: "kubelet directory".into(),
                    hint: "point --kubelet-dir at the kubelet's root directory and mount it into the daemon".into(),
                }),
            },
            kubelet_dir,
            native: spo_seccomp::syscalls::native_arch(),
            oci: None,
        }
    }

    /// Resolves `oci://` base profiles through `bases`.
    pub fn with_oci(mut self, bases: Arc<OciBases>) -> Self {
        self.oci = Some(bases);
        self
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

/// Base profiles looked up in the daemon's watch cache of SeccompProfiles, and `oci://`
/// ones pulled from registries under the SPOD's policy.
#[derive(Clone, Debug)]
pub struct StoreResolver {
    /// The watched SeccompProfiles.
    pub store: ProfileCache<SeccompProfile>,
    /// Registry pulls and the SPOD's policy for them (`None`: `oci://` is refused).
    pub oci: Option<(Arc<OciBases>, OciPolicy)>,
}

impl BaseResolver for StoreResolver {
    fn resolve(&self, reference: &str) -> Result<Option<SeccompProfileSpec>, SeccompError> {
        if let Some(artifact) = reference.strip_prefix("oci://") {
            let Some((bases, policy)) = &self.oci else {
                return Err(SeccompError::Resolve(format!(
                    "{reference}: this daemon pulls no OCI base profiles; apply the base as a SeccompProfile and name that in baseProfileName"
                )));
            };
            return bases.resolve(artifact, policy).map(Some).map_err(SeccompError::Resolve);
        }
        Ok(self.store.get(reference).map(|p| p.spec.clone()))
    }
}

impl NodeKind for SeccompNode {
    type Backend = SeccompBackend;

    fn backend(&self) -> &SeccompBackend {
        &self.backend
    }

    fn target(&self) -> &DirStore {
        &self.store
    }

    fn context(
        &self,
        profiles: &ProfileCache<SeccompProfile>,
        spod: Option<&SecurityProfilesOperatorDaemon>,
    ) -> RenderContext {
        let oci = self.oci.as_ref().map(|bases| {
            let secrets = spod
                .and_then(|s| s.spec.image_pull_secrets.as_ref())
                .map(|v| v.iter().map(|r| r.name.clone()).collect())
                .unwrap_or_default();
            (
                bases.clone(),
                OciPolicy::from_spod(spod.and_then(|s| s.spec.security.as_ref()), secrets),
            )
        });
        RenderContext {
            resolver: Arc::new(StoreResolver {
                store: profiles.clone(),
                oci,
            }),
            native: self.native,
            security: spod.and_then(|s| s.spec.security.clone()),
        }
    }

    fn parents(&self, profile: &SeccompProfile) -> Vec<String> {
        // A registry base is re-checked on its own schedule (`recheck_after`).
        profile
            .spec
            .base_profile_name
            .iter()
            .filter(|b| !b.starts_with("oci://"))
            .cloned()
            .collect()
    }

    fn settings(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> String {
        format!(
            "{:?} {:?}",
            spod.and_then(|s| s.spec.security.as_ref()),
            spod.and_then(|s| s.spec.image_pull_secrets.as_ref())
        )
    }

    fn sync(&self, profile: &SeccompProfile, ctx: &RenderContext) -> SyncOutcome {
        let mut outcome = spo_model::contract::sync_profile(self.backend(), self.target(), profile, ctx);
        // The node status tells which digest an oci:// base resolved to.
        if outcome.state == ProfileState::Installed
            && outcome.message.is_none()
            && let (Some(bases), Some(artifact)) = (
                &self.oci,
                profile
                    .spec
                    .base_profile_name
                    .as_deref()
                    .and_then(|b| b.strip_prefix("oci://")),
            )
        {
            outcome.message = bases.last(artifact).map(|r| r.message());
        }
        outcome
    }

    fn recheck_after(&self, profile: &SeccompProfile) -> Option<Duration> {
        let artifact = profile.spec.base_profile_name.as_deref()?.strip_prefix("oci://")?;
        self.oci.as_ref()?.recheck_after(artifact)
    }

    fn prepare(&self) -> Result<usize, SeccompError> {
        self.store.remove_stale_temp_files()
    }
}

#[cfg(test)]
mod tests {
    use spo_model::contract::{NodeSupport, ProfileBackend};

    use super::*;

    #[test]
    fn a_missing_kubelet_dir_is_unsupported_with_the_flag_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = SeccompNode::new(dir.path().join("nope"), None);
        match node.backend().probe() {
            NodeSupport::Unsupported { reason } => assert!(reason.contains("--kubelet-dir"), "{reason}"),
            NodeSupport::Supported => panic!("missing dir is supported"),
        }
        assert_eq!(
            SeccompNode::new(dir.path(), None).backend().probe(),
            NodeSupport::Supported
        );
    }
}
