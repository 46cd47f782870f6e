//! Loading profiles into the kernel, behind a port.
//!
//! [`ProfileLoader`] installs, removes and lists kernel profiles. The real implementation,
//! [`KernelLoader`], writes the text to `/etc/apparmor.d/<name>` (atomically: temporary file,
//! fsync, rename, directory fsync), runs `apparmor_parser --replace --skip-cache <file>` and
//! checks that the kernel's profile list (`<securityfs>/profiles`) then names the profile.
//! Upstream re-runs apparmor_parser for every profile every 30 s; here [`decide_load`] skips
//! the run when the kernel lists the profile and the text is the one last loaded (remembered
//! as a SHA-256 per name, and on restart recognised from the file on disk). On a kernel
//! without AppArmor every operation that needs it fails with
//! [`AppArmorError::NoAppArmor`]; [`FakeLoader`] stands in for tests and dry runs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use spo_model::contract::{InstallName, InstallOutcome, RemoveOutcome};

use crate::error::{AppArmorError, bounded};
use crate::validate::{DEFAULT_PARSER, DEFAULT_TIMEOUT, run};

/// Where AppArmor's securityfs directory is.
pub const DEFAULT_SECURITYFS: &str = "/sys/kernel/security/apparmor";

/// Where profile text lives on a node (upstream's path).
pub const DEFAULT_PROFILE_DIR: &str = "/etc/apparmor.d";

/// Mode of profile files.
pub const PROFILE_MODE: u32 = 0o644;

/// A profile the kernel has loaded.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LoadedProfile {
    /// Its name.
    pub name: String,
    /// Its mode as the kernel shows it (`enforce`, `complain`, ...).
    pub mode: String,
}

/// Loads, replaces and removes kernel profiles. Implementations are idempotent.
pub trait ProfileLoader: Send + Sync {
    /// Loads `text` as profile `name`, replacing an older version; does nothing when exactly
    /// this text is already loaded.
    fn install(&self, name: &InstallName, text: &str) -> Result<InstallOutcome, AppArmorError>;
    /// Unloads profile `name` and deletes its file; succeeds when neither exists.
    fn remove(&self, name: &InstallName) -> Result<RemoveOutcome, AppArmorError>;
    /// The profiles the kernel has loaded, sorted by name.
    fn list(&self) -> Result<Vec<LoadedProfile>, AppArmorError>;
}

/// What [`decide_load`] sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadState {
    /// The kernel's profile list names the profile.
    pub in_kernel: bool,
    /// The text is the one this loader last loaded under the name.
    pub last_loaded_matches: bool,
    /// The profile file on disk holds exactly the text.
    pub file_matches: bool,
}

/// What to do to bring a profile to the desired text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadAction {
    /// Nothing: the kernel has it and the file holds it.
    Skip,
    /// The kernel has the text (we loaded it) but the file differs: rewrite the file only.
    RewriteFile,
    /// Write the file and run the parser.
    Load,
}

/// The decision that keeps a resync from re-running apparmor_parser (pure).
///
/// After a restart nothing is remembered, so a file holding the text plus a kernel listing
/// the name count as loaded; a profile loaded by hand under the same name from other text
/// is then not replaced until the spec changes.
pub fn decide_load(state: LoadState) -> LoadAction {
    match state {
        LoadState {
            in_kernel: true,
            file_matches: true,
            ..
        } => LoadAction::Skip,
        LoadState {
            in_kernel: true,
            last_loaded_matches: true,
            file_matches: false,
        } => LoadAction::RewriteFile,
        _ => LoadAction::Load,
    }
}

/// The kernel's `profiles` file as a list: each line is `<name> (<mode>)`.
pub fn parse_profile_list(text: &str) -> Vec<LoadedProfile> {
    let mut out: Vec<LoadedProfile> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.rsplit_once(" (") {
            Some((name, mode)) => LoadedProfile {
                name: name.to_owned(),
                mode: mode.trim_end_matches(')').to_owned(),
            },
            None => LoadedProfile {
                name: l.trim().to_owned(),
                mode: String::new(),
            },
        })
        .collect();
    out.sort();
    out
}

/// [`ProfileLoader`] for a node's kernel, through apparmor_parser.
#[derive(Debug)]
pub struct KernelLoader {
    /// AppArmor's securityfs directory.
    pub securityfs: PathBuf,
    /// Where profile files are written.
    pub profile_dir: PathBuf,
    /// The apparmor_parser program.
    pub parser: PathBuf,
    /// How long one parser run may take.
    pub timeout: Duration,
    last_loaded: Mutex<BTreeMap<String, [u8; 32]>>,
}

impl Default for KernelLoader {
    fn default() -> Self {
        KernelLoader::new(DEFAULT_SECURITYFS, DEFAULT_PROFILE_DIR, DEFAULT_PARSER)
    }
}

impl KernelLoader {
    /// A loader using these locations.
    pub fn new(securityfs: impl Into<PathBuf>, profile_dir: impl Into<PathBuf>, parser: impl Into<PathBuf>) -> Self {
        KernelLoader {
            securityfs: securityfs.into(),
            profile_dir: profile_dir.into(),
            parser: parser.into(),
            timeout: DEFAULT_TIMEOUT,
            last_loaded: Mutex::new(BTreeMap::new()),
        }
    }

    /// The file of profile `name`.
    pub fn profile_path(&self, name: &InstallName) -> PathBuf {
        self.profile_dir.join(name.as_str())
    }

    /// Fails with [`AppArmorError::NoAppArmor`] unless the kernel's profile list is there.
    pub fn require_apparmor(&self) -> Result<(), AppArmorError> {
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
        let text = fs::read_to_string(&path).map_err(|source| AppArmorError::Io {
            operation: "reading the kernel's profile list",
            path,
            source,
        })?;
        Ok(parse_profile_list(&text))
    }

    fn in_kernel(&self, name: &InstallName) -> Result<bool, AppArmorError> {
        Ok(self.kernel_profiles()?.iter().any(|p| p.name == name.as_str()))
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, [u8; 32]>> {
        // The map holds plain hashes; a panic elsewhere cannot leave it half-updated.
        self.last_loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn parser_run(&self, operation: String, args: &[&OsStr]) -> Result<(), AppArmorError> {
        let out = run(&operation, &self.parser, args, self.timeout)?;
        if out.status.success() {
            return Ok(());
        }
        Err(AppArmorError::ToolFailed {
            operation,
            tool: self.parser.clone(),
            status: out.status.to_string(),
            stderr: bounded(&out.stderr, 2000),
        })
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl ProfileLoader for KernelLoader {
    fn install(&self, name: &InstallName, text: &str) -> Result<InstallOutcome, AppArmorError> {
        self.require_apparmor()?;
        let path = self.profile_path(name);
        let hash = sha256(text);
        let state = LoadState {
            in_kernel: self.in_kernel(name)?,
            last_loaded_matches: self.remembered().get(name.as_str()) == Some(&hash),
            file_matches: file_holds(&path, text.as_bytes())?,
        };
        match decide_load(state) {
            LoadAction::Skip => {
                self.remembered().insert(name.as_str().to_owned(), hash);
                Ok(InstallOutcome::Unchanged)
            }
            LoadAction::RewriteFile => {
                write_file_atomic(&path, text.as_bytes())?;
                Ok(InstallOutcome::Written)
            }
            LoadAction::Load => {
                write_file_atomic(&path, text.as_bytes())?;
                let operation = format!("loading profile {name}");
                self.parser_run(
                    operation.clone(),
                    &[OsStr::new("--replace"), OsStr::new("--skip-cache"), path.as_os_str()],
                )?;
                if !self.in_kernel(name)? {
                    return Err(AppArmorError::KernelMismatch {
                        operation,
                        state: format!("has no profile {name}"),
                    });
                }
                self.remembered().insert(name.as_str().to_owned(), hash);
                Ok(InstallOutcome::Written)
            }
        }
    }

    fn remove(&self, name: &InstallName) -> Result<RemoveOutcome, AppArmorError> {
        let path = self.profile_path(name);
        let file_exists = fs::symlink_metadata(&path).is_ok();
        // Without AppArmor nothing can be loaded; only a stale file may need to go.
        let in_kernel = match self.require_apparmor() {
            Ok(()) => self.in_kernel(name)?,
            Err(_) => false,
        };
        if in_kernel {
            let operation = format!("unloading profile {name}");
            if file_exists {
                self.parser_run(operation.clone(), &[OsStr::new("--remove"), path.as_os_str()])?;
            } else {
                let remove = self.securityfs.join(".remove");
                fs::write(&remove, name.as_str()).map_err(|source| AppArmorError::Io {
                    operation: "writing the profile name to",
                    path: remove,
                    source,
                })?;
            }
            if self.in_kernel(name)? {
                return Err(AppArmorError::KernelMismatch {
                    operation,
                    state: format!("still has profile {name}"),
                });
            }
        }
        if file_exists {
            match fs::remove_file(&path) {
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
        }
        self.remembered().remove(name.as_str());
        Ok(if in_kernel || file_exists {
            RemoveOutcome::Removed
        } else {
            RemoveOutcome::NotPresent
        })
    }

    fn list(&self) -> Result<Vec<LoadedProfile>, AppArmorError> {
        self.require_apparmor()?;
        self.kernel_profiles()
    }
}

/// Whether `path` is a regular file holding exactly `bytes` (a symbolic link never is).
fn file_holds(path: &Path, bytes: &[u8]) -> Result<bool, AppArmorError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() && m.len() == bytes.len() as u64 => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(AppArmorError::Io {
                operation: "inspecting profile file",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    match fs::read(path) {
        Ok(existing) => Ok(existing == bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(AppArmorError::Io {
            operation: "reading profile file",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces `path` with `bytes` so readers see the old or the new file, never a mix, creating
/// its directory first; a symbolic link or special file there is replaced, not followed or
/// opened (the one writer, `spo_hostio::write_file`, with its owned-directory policy).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), AppArmorError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|source| AppArmorError::Io {
        operation: "creating directory",
        path: dir.to_path_buf(),
        source,
    })?;
    spo_hostio::write_file(path, bytes, &spo_hostio::WritePolicy::owned_dir(PROFILE_MODE))?;
    Ok(())
}

/// An in-memory [`ProfileLoader`] for tests and dry runs: remembers texts, counts loads.
#[derive(Debug, Default)]
pub struct FakeLoader {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    loaded: BTreeMap<String, String>,
    loads: usize,
    unloads: usize,
    no_apparmor: bool,
}

impl FakeLoader {
    /// An empty kernel with AppArmor.
    pub fn new() -> Self {
        FakeLoader::default()
    }

    /// A kernel without AppArmor: install and list fail like [`KernelLoader`]'s do.
    pub fn without_apparmor() -> Self {
        let fake = FakeLoader::default();
        fake.lock().no_apparmor = true;
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The text loaded under `name`.
    pub fn text(&self, name: &str) -> Option<String> {
        self.lock().loaded.get(name).cloned()
    }

    /// How many times a profile was (re)loaded.
    pub fn loads(&self) -> usize {
        self.lock().loads
    }

    /// How many times a profile was unloaded.
    pub fn unloads(&self) -> usize {
        self.lock().unloads
    }

    fn no_apparmor_error() -> AppArmorError {
        AppArmorError::NoAppArmor {
            securityfs: PathBuf::from(DEFAULT_SECURITYFS),
        }
    }
}

impl ProfileLoader for FakeLoader {
    fn install(&self, name: &InstallName, text: &str) -> Result<InstallOutcome, AppArmorError> {
        let mut s = self.lock();
        if s.no_apparmor {
            return Err(Self::no_apparmor_error());
        }
        if s.loaded.get(name.as_str()).is_some_and(|t| t == text) {
            return Ok(InstallOutcome::Unchanged);
        }
        s.loaded.insert(name.as_str().to_owned(), text.to_owned());
        s.loads += 1;
        Ok(InstallOutcome::Written)
    }

    fn remove(&self, name: &InstallName) -> Result<RemoveOutcome, AppArmorError> {
        let mut s = self.lock();
        if s.loaded.remove(name.as_str()).is_some() {
            s.unloads += 1;
            Ok(RemoveOutcome::Removed)
        } else {
            Ok(RemoveOutcome::NotPresent)
        }
    }

    fn list(&self) -> Result<Vec<LoadedProfile>, AppArmorError> {
        let s = self.lock();
        if s.no_apparmor {
            return Err(Self::no_apparmor_error());
        }
        Ok(s.loaded
            .iter()
            .map(|(name, text)| LoadedProfile {
                name: name.clone(),
                mode: if text.contains("flags=(complain") {
                    "complain".into()
                } else {
                    "enforce".into()
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_decision() {
        let s = |in_kernel, last_loaded_matches, file_matches| LoadState {
            in_kernel,
            last_loaded_matches,
            file_matches,
        };
        assert_eq!(decide_load(s(true, true, true)), LoadAction::Skip);
        assert_eq!(decide_load(s(true, false, true)), LoadAction::Skip, "after a restart");
        assert_eq!(decide_load(s(true, true, false)), LoadAction::RewriteFile);
        assert_eq!(decide_load(s(true, false, false)), LoadAction::Load);
        assert_eq!(
            decide_load(s(false, true, true)),
            LoadAction::Load,
            "unloaded behind our back"
        );
        assert_eq!(decide_load(s(false, false, false)), LoadAction::Load);
    }

    #[test]
    fn profile_list_lines() {
        let list = parse_profile_list("web (enforce)\n/usr/bin/man (complain)\nodd name (kill)\n\n");
        assert_eq!(
            list.iter()
                .map(|p| (p.name.as_str(), p.mode.as_str()))
                .collect::<Vec<_>>(),
            vec![("/usr/bin/man", "complain"), ("odd name", "kill"), ("web", "enforce")]
        );
    }
}
