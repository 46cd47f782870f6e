//! The AppArmor side of the common contract ([`ProfileBackend`]): probe, render (checked
//! and compiled by the validator port), install and remove through the loader port, and
//! profiles from recordings.

use std::path::PathBuf;
use std::sync::Arc;

use spo_model::apparmor::AppArmorProfile;
use spo_model::contract::{InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome};
use spo_model::observed::Recording;

use crate::error::AppArmorError;
use crate::loader::{DEFAULT_SECURITYFS, ProfileLoader};
use crate::recording::profile_from_recording;
use crate::render::{RenderedProfile, render_profile};
use crate::validate::{ParserValidator, ProfileValidator, check_rendered};

/// The AppArmor backend.
#[derive(Clone)]
pub struct AppArmorBackend {
    validator: Arc<dyn ProfileValidator>,
    /// AppArmor's securityfs directory, probed for node support.
    pub securityfs: PathBuf,
}

impl std::fmt::Debug for AppArmorBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppArmorBackend")
            .field("securityfs", &self.securityfs)
            .finish_non_exhaustive()
    }
}

impl Default for AppArmorBackend {
    /// apparmor_parser with Debian's features file; the kernel's securityfs.
    fn default() -> Self {
        AppArmorBackend::new(Arc::new(ParserValidator::default()))
    }
}

impl AppArmorBackend {
    /// A backend that compiles every rendered profile with `validator`.
    pub fn new(validator: Arc<dyn ProfileValidator>) -> Self {
        AppArmorBackend {
            validator,
            securityfs: PathBuf::from(DEFAULT_SECURITYFS),
        }
    }

    /// The validator.
    pub fn validator(&self) -> &dyn ProfileValidator {
        self.validator.as_ref()
    }
}

/// Renders a profile and compiles it with `validator`: `Invalid` for what the grammar or
/// the model refuses, `Rejected` (with field paths) for what apparmor_parser refuses.
pub fn render_and_check(
    validator: &dyn ProfileValidator,
    profile: &AppArmorProfile,
) -> Result<RenderedProfile, AppArmorError> {
    let rendered = render_profile(profile)?;
    let problems = check_rendered(validator, &rendered)?;
    if problems.has_errors() {
        return Err(AppArmorError::Rejected {
            name: rendered.name.to_string(),
            problems,
        });
    }
    Ok(rendered)
}

impl ProfileBackend for AppArmorBackend {
    type Profile = AppArmorProfile;
    type Context = ();
    type Artifact = RenderedProfile;
    type Target = Arc<dyn ProfileLoader>;
    type Error = AppArmorError;

    fn probe(&self) -> NodeSupport {
        if self.securityfs.join("profiles").is_file() {
            NodeSupport::Supported
        } else {
            NodeSupport::Unsupported {
                reason: AppArmorError::NoAppArmor {
                    securityfs: self.securityfs.clone(),
                }
                .to_string(),
            }
        }
    }

    fn render(&self, profile: &AppArmorProfile, _: &()) -> Result<RenderedProfile, AppArmorError> {
        render_and_check(self.validator.as_ref(), profile)
    }

    fn install(
        &self,
        target: &Arc<dyn ProfileLoader>,
        name: &InstallName,
        artifact: &RenderedProfile,
    ) -> Result<InstallOutcome, AppArmorError> {
        target.install(name, &artifact.text)
    }

    fn remove(&self, target: &Arc<dyn ProfileLoader>, name: &InstallName) -> Result<RemoveOutcome, AppArmorError> {
        target.remove(name)
    }

    /// None: a [`ProfileLoader`] lists every profile the kernel has loaded, the
    /// distribution's among them, and cannot tell which ones this backend installed, so
    /// listing them would let an orphan sweep unload the node's own profiles. A target that
    /// records what it installed (the operator's securityfs loader keeps its own marked files)
    /// lists those instead.
    fn list(&self, _target: &Arc<dyn ProfileLoader>) -> Result<Vec<String>, AppArmorError> {
        Ok(Vec::new())
    }

    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<AppArmorProfile, AppArmorError> {
        Ok(profile_from_recording(name, recording).profile)
    }
}
