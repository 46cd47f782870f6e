//! The seccomp kind on a node: what the daemon drives for SeccompProfiles.
//!
//! spo-seccomp's [`SeccompBackend`] does the work (rendering with the SPOD policy, the node
//! files); this adds what only the daemon knows: base profiles come from the watched
//! SeccompProfiles ([`StoreResolver`]), the policy from the watched SPOD, and the kubelet
//! directory must exist (a missing one is an `Error` that names the flag, not a directory
//! tree created in the wrong place).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use spo_model::seccomp::{Arch, SeccompProfileSpec};
use spo_model::{SeccompProfile, SecurityProfilesOperatorDaemon};
use spo_seccomp::SeccompError;
use spo_seccomp::backend::{RenderContext, RequiredDir, SeccompBackend};
use spo_seccomp::node::DirStore;
use spo_seccomp::resolve::BaseResolver;

use super::NodeKind;

/// SeccompProfiles on one node: files under `<kubelet dir>/seccomp/operator/`.
#[derive(Debug, Clone)]
pub struct SeccompNode {
    kubelet_dir: PathBuf,
    store: DirStore,
    backend: SeccompBackend,
    native: Arch,
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
        profiles: &Store<SeccompProfile>,
        spod: Option<&SecurityProfilesOperatorDaemon>,
    ) -> RenderContext {
        RenderContext {
            resolver: Arc::new(StoreResolver(profiles.clone())),
            native: self.native,
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

    fn settings(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> String {
        format!("{:?}", spod.and_then(|s| s.spec.security.as_ref()))
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
