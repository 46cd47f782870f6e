//! The AppArmor kind on a node: AppArmorProfiles rendered and checked by spo-apparmor's
//! backend (with apparmor_parser), written to the profile directory, compiled and loaded by
//! apparmor_parser through AppArmor's securityfs ([`SecurityfsLoader`]).
//!
//! What is ours: every file this loader writes starts with [`MARKER`] and its profile name.
//! Only such files are listed ([`SecurityfsLoader::owned`], what the orphan sweep may remove),
//! overwritten or removed; a distribution profile, or any file without the marker, is never
//! touched, and a name whose file is someone else's is an error instead of a replacement.
//!
//! Real and stand-in: the loader runs the real `apparmor_parser --replace --subdomainfs
//! <securityfs>`, which compiles the profile and writes the binary policy to
//! `<securityfs>/.replace`, the kernel's load interface. On a node without AppArmor (this
//! build machine's kernel has none) `<securityfs>/profiles` is missing and every profile
//! reports `Error` naming that reason. Tests point `--apparmor-securityfs` at a stand-in
//! directory (a `profiles` file and an empty `.replace`), so everything up to and including
//! the write of the compiled policy is real; only the kernel taking it is not (the stand-in's
//! `profiles` list never changes, so the loader never sees its profile "loaded" and loads it
//! again on the next sync).

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spo_apparmor::loader::{LoadedProfile, ProfileLoader, parse_profile_list, write_file_atomic};
use spo_apparmor::{AppArmorBackend, AppArmorError};
use spo_hostio::run::ToolCommand;
use spo_model::contract::{InstallName, InstallOutcome, RemoveOutcome};
use spo_model::{AppArmorProfile, SecurityProfilesOperatorDaemon};

use super::{NodeKind, ProfileCache};

/// The first line of every profile file this loader writes, followed by the profile name.
pub const MARKER: &str = "# Managed by spo-rs (AppArmorProfile): ";

/// Loads profiles through AppArmor's securityfs with apparmor_parser.
#[derive(Clone, Debug)]
pub struct SecurityfsLoader {
    /// AppArmor's securityfs directory (`/sys/kernel/security/apparmor`, or a stand-in).
    pub securityfs: PathBuf,
    /// Where profile files are written (`/etc/apparmor.d`).
    pub profile_dir: PathBuf,
    /// The apparmor_parser program.
    pub parser: PathBuf,
    /// The features to compile for; `None`: the kernel's own (from securityfs).
    pub features_file: Option<PathBuf>,
    /// How long one parser run may take.
    pub timeout: Duration,
}

/// The file text for profile `name` (pure): the marker line, then the profile.
pub fn file_text(name: &InstallName, text: &str) -> String {
    format!("{MARKER}{name}\n{text}")
}

/// Whether `content` is a file this loader wrote for `name` (pure).
pub fn is_ours(content: &str, name: &str) -> bool {
    content
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(MARKER))
        .is_some_and(|n| n == name)
}

impl SecurityfsLoader {
    fn require_apparmor(&self) -> Result<(), AppArmorError> {
        if self.securityfs.join("profiles").is_file() {
            Ok(())
        } else {
            Err(AppArmorError::NoAppArmor {
                securityfs: self.securityfs.clone(),
            })
        }
    }

    fn kernel_profiles(&self) -> Result<Vec<LoadedProfile>, AppArmorError> {
        let path = self.securityfs.join("profiles");
        let text = std::fs::read_to_string(&path).map_err(|source| AppArmorError::Io {
            operation: "reading the kernel's profile list",
            path,
            source,
        })?;
        Ok(parse_profile_list(&text))
    }

    fn path(&self, name: &InstallName) -> PathBuf {
        self.profile_dir.join(name.as_str())
    }

    /// The file of `name`: `None` when there is none.
    fn read(&self, path: &Path) -> Result<Option<String>, AppArmorError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => {}
            // A link or a special file is never ours.
            Ok(_) => return Ok(Some(String::new())),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AppArmorError::Io {
                    operation: "inspecting profile file",
                    path: path.to_owned(),
                    source,
                });
            }
        }
        match std::fs::read(path) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AppArmorError::Io {
                operation: "reading profile file",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The apparmor_parser arguments for `action` (`--replace`, `--remove`) on `file`.
    pub fn parser_args(&self, action: &str, file: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            action.into(),
            "--skip-cache".into(),
            "--subdomainfs".into(),
            self.securityfs.clone().into_os_string(),
        ];
        if let Some(f) = &self.features_file {
            args.push("--features-file".into());
            args.push(f.clone().into_os_string());
        }
        // After `--`, so no file name is read as an option.
        args.push("--".into());
        args.push(file.as_os_str().to_owned());
        args
    }

    fn run_parser(&self, operation: String, action: &str, file: &Path) -> Result<(), AppArmorError> {
        let out = ToolCommand::new(&self.parser, self.timeout)
            .args(self.parser_args(action, file))
            .run()
            .map_err(|e| AppArmorError::ToolFailed {
                operation: operation.clone(),
                tool: self.parser.clone(),
                status: "not run".to_owned(),
                stderr: e.to_string(),
            })?;
        if out.success() {
            return Ok(());
        }
        let mut stderr = out.stderr_text().trim().to_owned();
        stderr.truncate(2000);
        Err(AppArmorError::ToolFailed {
            operation,
            tool: self.parser.clone(),
            status: out.status.to_string(),
            stderr,
        })
    }

    /// The profiles whose files this loader wrote (their names), sorted.
    pub fn owned(&self) -> Result<Vec<String>, AppArmorError> {
        let entries = match std::fs::read_dir(&self.profile_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(AppArmorError::Io {
                    operation: "listing profile directory",
                    path: self.profile_dir.clone(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(install) = InstallName::new(&name) else {
                continue;
            };
            if let Some(text) = self.read(&self.path(&install))?
                && is_ours(&text, &name)
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}

impl ProfileLoader for SecurityfsLoader {
    fn install(&self, name: &InstallName, text: &str) -> Result<InstallOutcome, AppArmorError> {
        self.require_apparmor()?;
        let path = self.path(name);
        let want = file_text(name, text);
        let current = self.read(&path)?;
        if let Some(c) = &current
            && !is_ours(c, name.as_str())
        {
            return Err(AppArmorError::ToolOutput {
                operation: format!("installing profile {name}"),
                tool: path.clone(),
                detail: "the file exists and was not written by spo-rs (a distribution or hand-written profile); it is left alone: give the AppArmorProfile another name".to_owned(),
            });
        }
        let in_kernel = self.kernel_profiles()?.iter().any(|p| p.name == name.as_str());
        if in_kernel && current.as_deref() == Some(want.as_str()) {
            return Ok(InstallOutcome::Unchanged);
        }
        write_file_atomic(&path, want.as_bytes())?;
        self.run_parser(format!("loading profile {name}"), "--replace", &path)?;
        Ok(InstallOutcome::Written)
    }

    fn remove(&self, name: &InstallName) -> Result<RemoveOutcome, AppArmorError> {
        let path = self.path(name);
        match self.read(&path)? {
            Some(c) if is_ours(&c, name.as_str()) => {}
            // No file of ours: nothing we can prove is ours to unload.
            _ => return Ok(RemoveOutcome::NotPresent),
        }
        let in_kernel = match self.require_apparmor() {
            Ok(()) => self.kernel_profiles()?.iter().any(|p| p.name == name.as_str()),
            Err(_) => false,
        };
        if in_kernel {
            self.run_parser(format!("unloading profile {name}"), "--remove", &path)?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AppArmorError::Io {
                    operation: "removing profile file",
                    path,
                    source,
                });
            }
        }
        Ok(RemoveOutcome::Removed)
    }

    fn list(&self) -> Result<Vec<LoadedProfile>, AppArmorError> {
        self.require_apparmor()?;
        self.kernel_profiles()
    }
}

/// Whether the SPOD keeps AppArmor off (pure): `enableAppArmor` must be `true`.
pub fn apparmor_disabled_by(spod: Option<&SecurityProfilesOperatorDaemon>) -> Option<String> {
    let Some(spod) = spod else {
        return Some("AppArmor is off: there is no SecurityProfilesOperatorDaemon to enable it".to_owned());
    };
    (spod.spec.enable_app_armor != Some(true)).then(|| {
        format!(
            "AppArmor is off in SecurityProfilesOperatorDaemon {}/{} (spec.enableAppArmor is not true)",
            spod.metadata.namespace.as_deref().unwrap_or_default(),
            spod.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

/// AppArmorProfiles on one node.
#[derive(Clone)]
pub struct AppArmorKind {
    backend: AppArmorBackend,
    loader: Arc<SecurityfsLoader>,
    target: Arc<dyn ProfileLoader>,
}

impl std::fmt::Debug for AppArmorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppArmorKind")
            .field("backend", &self.backend)
            .field("loader", &self.loader)
            .finish_non_exhaustive()
    }
}

impl AppArmorKind {
    /// The kind loading through `loader`; profiles are compiled for checking with
    /// apparmor_parser and `features_file` (Debian's when `None`).
    pub fn new(loader: SecurityfsLoader, features_file: Option<PathBuf>) -> Self {
        let mut validator = spo_apparmor::ParserValidator {
            parser: loader.parser.clone(),
            ..spo_apparmor::ParserValidator::default()
        };
        if let Some(f) = features_file {
            validator.features_file = f;
        }
        let mut backend = AppArmorBackend::new(Arc::new(validator));
        backend.securityfs = loader.securityfs.clone();
        let loader = Arc::new(loader);
        AppArmorKind {
            backend,
            target: loader.clone(),
            loader,
        }
    }
}

impl NodeKind for AppArmorKind {
    type Backend = AppArmorBackend;

    fn backend(&self) -> &AppArmorBackend {
        &self.backend
    }

    fn target(&self) -> &Arc<dyn ProfileLoader> {
        &self.target
    }

    fn context(&self, _: &ProfileCache<AppArmorProfile>, _: Option<&SecurityProfilesOperatorDaemon>) {}

    fn disabled_by(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> Option<String> {
        apparmor_disabled_by(spod)
    }

    fn settings(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> String {
        format!("{:?}", spod.and_then(|s| s.spec.enable_app_armor))
    }

    /// The files this loader wrote, never the kernel's whole list.
    fn installed(&self) -> Result<Vec<String>, AppArmorError> {
        self.loader.owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::ProfileState;
    use spo_model::contract::{ProfileBackend, sync_profile};

    fn name(n: &str) -> InstallName {
        InstallName::new(n).expect("name")
    }

    fn loader(dir: &Path) -> SecurityfsLoader {
        SecurityfsLoader {
            securityfs: dir.join("securityfs"),
            profile_dir: dir.join("apparmor.d"),
            parser: "apparmor_parser".into(),
            features_file: Some(spo_apparmor::validate::DEFAULT_FEATURES_FILE.into()),
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn ownership_is_the_marker_of_the_same_name() {
        let text = file_text(&name("web"), "profile web {}\n");
        assert!(is_ours(&text, "web"));
        assert!(!is_ours(&text, "other"));
        assert!(!is_ours("profile web {}\n", "web"));
        assert!(!is_ours(&format!("{MARKER}web-x\n"), "web"));
    }

    #[test]
    fn parser_arguments_never_take_a_file_for_an_option() {
        let l = loader(Path::new("/x"));
        let args = l.parser_args("--replace", Path::new("/x/apparmor.d/-evil"));
        let dashdash = args.iter().position(|a| a == "--").expect("--");
        assert_eq!(dashdash, args.len() - 2);
        assert_eq!(args[0], "--replace");
    }

    #[test]
    fn the_spod_switches_the_kind() {
        assert!(apparmor_disabled_by(None).is_some());
        let spod = |yaml: &str| -> SecurityProfilesOperatorDaemon {
            serde_norway::from_str(&format!("metadata: {{name: spod, namespace: ns}}\nspec: {yaml}\n")).expect("spod")
        };
        let off = apparmor_disabled_by(Some(&spod("{}"))).expect("off by default");
        assert!(off.contains("spec.enableAppArmor"), "{off}");
        assert_eq!(apparmor_disabled_by(Some(&spod("{enableAppArmor: true}"))), None);
    }

    fn have_parser() -> bool {
        let ok = std::process::Command::new("apparmor_parser")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            && Path::new(spo_apparmor::validate::DEFAULT_FEATURES_FILE).exists();
        if !ok {
            eprintln!("skipped: apparmor_parser or its features file is missing");
        }
        ok
    }

    fn profile(yaml: &str) -> AppArmorProfile {
        serde_norway::from_str(yaml).expect("profile")
    }

    #[test]
    fn without_apparmor_the_profile_is_an_error_naming_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kind = AppArmorKind::new(loader(dir.path()), None);
        let p = profile("metadata: {name: web}\nspec: {abstract: {filesystem: {readOnlyPaths: [/etc/hosts]}}}\n");
        let out = sync_profile(kind.backend(), kind.target(), &p, &());
        assert_eq!(out.state, ProfileState::Error);
        assert!(
            out.message
                .as_deref()
                .is_some_and(|m| m.contains("the kernel has no AppArmor")),
            "{out:?}"
        );
    }

    /// The real parser compiles and writes the policy into a stand-in securityfs.
    #[test]
    fn loads_through_a_stand_in_securityfs_and_never_touches_foreign_files() {
        if !have_parser() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let l = loader(dir.path());
        std::fs::create_dir_all(&l.securityfs).expect("securityfs");
        std::fs::write(l.securityfs.join("profiles"), "distro-profile (enforce)\n").expect("profiles");
        std::fs::write(l.securityfs.join(".replace"), b"").expect(".replace");
        std::fs::create_dir_all(&l.profile_dir).expect("dir");
        std::fs::write(l.profile_dir.join("distro-profile"), "profile distro-profile {}\n").expect("distro");
        let kind = AppArmorKind::new(l.clone(), None);
        let p = profile("metadata: {name: web}\nspec: {abstract: {filesystem: {readOnlyPaths: [/etc/hosts]}}}\n");
        let out = sync_profile(kind.backend(), kind.target(), &p, &());
        assert_eq!(out.state, ProfileState::Installed, "{out:?}");
        let loaded = std::fs::read(l.securityfs.join(".replace")).expect(".replace");
        assert!(loaded.len() > 100, "compiled policy written: {} bytes", loaded.len());
        assert!(loaded.windows(3).any(|w| w == b"web"), "the policy names the profile");
        assert_eq!(kind.installed().expect("owned"), ["web"]);

        // A profile named like the distribution's file is refused; the file is untouched.
        let clash = profile(
            "metadata: {name: distro-profile}\nspec: {abstract: {filesystem: {readOnlyPaths: [/etc/hosts]}}}\n",
        );
        let out = sync_profile(kind.backend(), kind.target(), &clash, &());
        assert_eq!(out.state, ProfileState::Error, "{out:?}");
        assert_eq!(
            std::fs::read_to_string(l.profile_dir.join("distro-profile")).expect("distro"),
            "profile distro-profile {}\n"
        );
        assert_eq!(
            kind.backend()
                .remove(kind.target(), &name("distro-profile"))
                .expect("remove"),
            RemoveOutcome::NotPresent
        );
        assert_eq!(
            kind.backend().remove(kind.target(), &name("web")).expect("remove"),
            RemoveOutcome::Removed
        );
        assert!(kind.installed().expect("owned").is_empty());
        assert!(l.profile_dir.join("distro-profile").exists());
    }
}
