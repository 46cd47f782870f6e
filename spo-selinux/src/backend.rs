//! The SELinux side of the common contract ([`ProfileBackend`]): one small backend type per
//! kind, sharing the install target ([`SelinuxNode`]).

use std::path::{Path, PathBuf};

use spo_model::contract::{InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome};
use spo_model::observed::Recording;
use spo_model::selinux::{RawSelinuxProfile, RawSelinuxProfileSpec, SelinuxProfile};
use spo_model::validate::Problems;

use crate::cil::CilWriter;
use crate::error::SelinuxError;
use crate::install::SelinuxNode;
use crate::raw::render_raw_selinux_profile;
use crate::recording::spec_from_recording;
use crate::render::{RenderContext, RenderedModule, profile_statements, render_selinux_profile};

/// Where the kernel's SELinux filesystem is mounted.
pub const SELINUXFS: &str = "/sys/fs/selinux";

/// Whether the kernel behind `selinuxfs` enforces SELinux policy (it has `enforce` there).
pub fn probe_selinux(selinuxfs: &Path) -> NodeSupport {
    let enforce = selinuxfs.join("enforce");
    if enforce.exists() {
        NodeSupport::Supported
    } else {
        NodeSupport::Unsupported {
            reason: format!(
                "SELinux is not enabled in this kernel ({} does not exist); profiles can still be rendered and validated offline",
                enforce.display()
            ),
        }
    }
}

fn install_checked(
    target: &SelinuxNode,
    name: &InstallName,
    artifact: &RenderedModule,
) -> Result<InstallOutcome, SelinuxError> {
    if artifact.name != name.as_str() {
        return Err(SelinuxError::Toolchain {
            what: format!("installing module {} as {name}", artifact.name),
            hint: "a module is installed under the name it was rendered for".to_owned(),
        });
    }
    target.install_module(artifact)
}

/// The profile modules of `target` whose names are plain Kubernetes names (no `_`): the
/// profiles spo-selinux installed, without the templates (`spo_templates`), the extra modules
/// and modules another kind names with a `_<kind>` suffix.
pub fn plain_profile_modules(target: &SelinuxNode) -> Result<Vec<String>, SelinuxError> {
    Ok(target
        .list_profiles()?
        .into_iter()
        .filter(|n| InstallName::new(n).is_ok())
        .collect())
}

/// The SelinuxProfile backend.
#[derive(Debug, Clone)]
pub struct SelinuxBackend {
    /// Where selinuxfs is (the node's, for the daemon).
    pub selinuxfs: PathBuf,
}

impl Default for SelinuxBackend {
    fn default() -> Self {
        SelinuxBackend {
            selinuxfs: SELINUXFS.into(),
        }
    }
}

impl ProfileBackend for SelinuxBackend {
    type Profile = SelinuxProfile;
    type Context = RenderContext;
    type Artifact = RenderedModule;
    type Target = SelinuxNode;
    type Error = SelinuxError;

    fn probe(&self) -> NodeSupport {
        probe_selinux(&self.selinuxfs)
    }

    fn render(&self, profile: &SelinuxProfile, ctx: &RenderContext) -> Result<RenderedModule, SelinuxError> {
        render_selinux_profile(profile, ctx)
    }

    fn install(
        &self,
        target: &SelinuxNode,
        name: &InstallName,
        artifact: &RenderedModule,
    ) -> Result<InstallOutcome, SelinuxError> {
        install_checked(target, name, artifact)
    }

    fn remove(&self, target: &SelinuxNode, name: &InstallName) -> Result<RemoveOutcome, SelinuxError> {
        target.remove_module(name.as_str())
    }

    fn list(&self, target: &SelinuxNode) -> Result<Vec<String>, SelinuxError> {
        plain_profile_modules(target)
    }

    /// The guardrails of `ctx` (the built-in deny lists and the SPOD's `selinux.options`),
    /// each violation at its field.
    fn policy_problems(&self, profile: &SelinuxProfile, ctx: &RenderContext) -> Problems {
        let mut problems = Problems::new();
        ctx.guardrails.check(&profile.spec, &mut problems);
        problems
    }

    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<SelinuxProfile, SelinuxError> {
        Ok(SelinuxProfile::new(name, spec_from_recording(recording)?))
    }
}

/// The RawSelinuxProfile backend.
#[derive(Debug, Clone)]
pub struct RawSelinuxBackend {
    /// Where selinuxfs is (the node's, for the daemon).
    pub selinuxfs: PathBuf,
}

impl Default for RawSelinuxBackend {
    fn default() -> Self {
        RawSelinuxBackend {
            selinuxfs: SELINUXFS.into(),
        }
    }
}

impl ProfileBackend for RawSelinuxBackend {
    type Profile = RawSelinuxProfile;
    type Context = ();
    type Artifact = RenderedModule;
    type Target = SelinuxNode;
    type Error = SelinuxError;

    fn probe(&self) -> NodeSupport {
        probe_selinux(&self.selinuxfs)
    }

    fn render(&self, profile: &RawSelinuxProfile, _: &()) -> Result<RenderedModule, SelinuxError> {
        render_raw_selinux_profile(profile)
    }

    fn install(
        &self,
        target: &SelinuxNode,
        name: &InstallName,
        artifact: &RenderedModule,
    ) -> Result<InstallOutcome, SelinuxError> {
        install_checked(target, name, artifact)
    }

    fn remove(&self, target: &SelinuxNode, name: &InstallName) -> Result<RemoveOutcome, SelinuxError> {
        target.remove_module(name.as_str())
    }

    /// This backend installs raw profiles under their own names, so on a node that also has
    /// SelinuxProfiles it cannot tell the two kinds' modules apart; the operator's adapter
    /// installs raw profiles as `<name>_raw` and lists those instead.
    fn list(&self, target: &SelinuxNode) -> Result<Vec<String>, SelinuxError> {
        plain_profile_modules(target)
    }

    /// The same rules as [`SelinuxBackend`]'s, written as the CIL body of a raw profile.
    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<RawSelinuxProfile, SelinuxError> {
        let spec = spec_from_recording(recording)?;
        let mut w = CilWriter::new();
        for (e, _) in profile_statements(&spec, name)? {
            w.statement(0, &e);
        }
        Ok(RawSelinuxProfile::new(
            name,
            RawSelinuxProfileSpec {
                state: Default::default(),
                disabled: None,
                policy: w.finish(),
            },
        ))
    }
}
