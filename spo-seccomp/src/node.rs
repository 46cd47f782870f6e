//! The node file installer: puts rendered profiles where container runtimes look for them.
//!
//! A pod that says `localhostProfile: operator/<name>.json` gets the file
//! `<kubelet dir>/seccomp/operator/<name>.json`. [`DirStore`] owns the `operator` directory
//! below a root (`<kubelet dir>/seccomp`) and keeps three promises:
//!
//! - **Readers never see half a file.** A new version is written to a temporary file in the
//!   same directory (created exclusively, random suffix, mode 0644), synced, renamed over the
//!   profile and the directory synced. A crash leaves at worst a hidden temporary file, which
//!   [`ProfileStore::list`] ignores and [`DirStore::remove_stale_temp_files`] deletes.
//! - **Unchanged profiles are not touched.** When the file already holds the same bytes the
//!   install is [`InstallOutcome::Unchanged`]: no write, same inode, same mtime, so nothing
//!   watching the directory wakes up on every resync.
//! - **Nothing is written outside the root.** Names are [`InstallName`]s (DNS subdomains: no
//!   `/`, no `..`, no NUL), the `operator` directory is refused when it is a symbolic link, and
//!   a symbolic link at a profile's path is replaced, never written or read through.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use spo_hostio::{TEMP_MARKER, WritePolicy};
use spo_model::contract::{InstallName, InstallOutcome, RemoveOutcome};

use crate::SeccompError;

/// The directory below the seccomp root that the operator owns.
pub const OPERATOR_DIR: &str = "operator";

/// The kubelet's default root directory.
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";

/// Mode of profile files: the runtime reads them as root, others may read what is not secret.
pub const PROFILE_MODE: u32 = 0o644;

/// The directory below the seccomp root that holds the recording filter.
pub const RECORDING_DIR: &str = "spo-recording";
/// The `localhostProfile` of the recording filter (see [`DirStore::install_recording_filter`]).
pub const RECORDING_FILTER_PROFILE: &str = "spo-recording/filter.json";

/// Mode of the `operator` directory when the installer creates it.
pub const DIR_MODE: u32 = 0o755;

/// The value pods put in `securityContext.seccompProfile.localhostProfile`: `operator/<name>.json`.
pub fn localhost_profile(name: &InstallName) -> String {
    format!("{OPERATOR_DIR}/{name}.json")
}

/// Where seccomp profiles are installed on a node. Implementations are idempotent.
pub trait ProfileStore {
    /// Installs `bytes` as profile `name`; touches nothing when they are already installed.
    fn install(&self, name: &InstallName, bytes: &[u8]) -> Result<InstallOutcome, SeccompError>;
    /// Removes profile `name`; succeeds when it is not installed.
    fn remove(&self, name: &InstallName) -> Result<RemoveOutcome, SeccompError>;
    /// The installed profiles, sorted.
    fn list(&self) -> Result<Vec<InstallName>, SeccompError>;
}

/// Profiles as files in `<root>/operator/`, where root is the kubelet's seccomp directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store below `root` (the directory the kubelet resolves `localhostProfile` against).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStore { root: root.into() }
    }

    /// The store of a kubelet whose root directory is `dir` (`/var/lib/kubelet` by default):
    /// profiles go to `<dir>/seccomp/operator/`.
    pub fn for_kubelet_dir(dir: impl AsRef<Path>) -> Self {
        DirStore::new(dir.as_ref().join("seccomp"))
    }

    /// The seccomp root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/operator`.
    pub fn operator_dir(&self) -> PathBuf {
        self.root.join(OPERATOR_DIR)
    }

    /// Writes the recording filter (`crate::backend::recording_filter`) to
    /// `<root>/spo-recording/filter.json`, the `localhostProfile` [`RECORDING_FILTER_PROFILE`]
    /// that eBPF recording runs containers under. It lives outside `operator/`, so no
    /// SeccompProfile can take its name and no sweep of profiles removes it. Returns its path.
    pub fn install_recording_filter(&self) -> Result<PathBuf, SeccompError> {
        let bytes = crate::oci::render_node_json(&crate::backend::recording_filter())?;
        self.checked_subdir(RECORDING_DIR, true)?;
        let target = self.root.join(RECORDING_FILTER_PROFILE);
        if !holds_exactly(&target, &bytes)? {
            write_file_atomic(&target, &bytes, PROFILE_MODE)?;
        }
        Ok(target)
    }

    /// The file of profile `name`: `<root>/operator/<name>.json`.
    pub fn profile_path(&self, name: &InstallName) -> PathBuf {
        self.operator_dir().join(format!("{name}.json"))
    }

    /// Deletes temporary files that interrupted installs left behind; returns how many. Meant
    /// for start-up, when no install of this store is running.
    pub fn remove_stale_temp_files(&self) -> Result<usize, SeccompError> {
        let Some(dir) = self.checked_operator_dir(false)? else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in read_dir(&dir)? {
            let entry = entry.map_err(|source| io_error("listing directory", &dir, source))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_ours = name.starts_with('.') && name.contains(&format!(".json{TEMP_MARKER}"));
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_ours && is_file {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(source) => return Err(io_error("removing temporary file", &path, source)),
                }
            }
        }
        Ok(removed)
    }

    /// The `operator` directory after checking it is a real directory; created (0755, with
    /// the root) when `create` is set, otherwise `None` when it does not exist.
    fn checked_operator_dir(&self, create: bool) -> Result<Option<PathBuf>, SeccompError> {
        self.checked_subdir(OPERATOR_DIR, create)
    }

    /// `<root>/<name>` after checking it is a real directory (see `checked_operator_dir`).
    fn checked_subdir(&self, name: &str, create: bool) -> Result<Option<PathBuf>, SeccompError> {
        let dir = self.root.join(name);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => Err(SeccompError::UnsafePath {
                path: dir,
                reason: "it is a symbolic link, and profiles are never written through one; \
                         remove the link so the installer creates a real directory",
            }),
            Ok(meta) if !meta.is_dir() => Err(SeccompError::UnsafePath {
                path: dir,
                reason: "it is not a directory; remove it so the installer can create the directory",
            }),
            Ok(_) => Ok(Some(dir)),
            Err(e) if e.kind() == ErrorKind::NotFound && !create => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&self.root)
                    .map_err(|source| io_error("creating directory", &self.root, source))?;
                match fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
                    Ok(()) => {
                        // The umask may have taken bits the runtime needs; set the mode on the
                        // directory itself, never through a link that replaced it meanwhile.
                        let handle =
                            open_dir_nofollow(&dir).map_err(|source| io_error("opening directory", &dir, source))?;
                        handle
                            .set_permissions(fs::Permissions::from_mode(DIR_MODE))
                            .map_err(|source| io_error("setting the mode of directory", &dir, source))?;
                    }
                    // Another installer was quicker; the check below decides.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(io_error("creating directory", &dir, source)),
                }
                match self.checked_subdir(name, false)? {
                    Some(dir) => Ok(Some(dir)),
                    None => Err(io_error(
                        "creating directory",
                        &dir,
                        std::io::Error::from(ErrorKind::NotFound),
                    )),
                }
            }
            Err(source) => Err(io_error("inspecting directory", &dir, source)),
        }
    }
}

impl ProfileStore for DirStore {
    fn install(&self, name: &InstallName, bytes: &[u8]) -> Result<InstallOutcome, SeccompError> {
        self.checked_operator_dir(true)?;
        let target = self.profile_path(name);
        if holds_exactly(&target, bytes)? {
            return Ok(InstallOutcome::Unchanged);
        }
        write_file_atomic(&target, bytes, PROFILE_MODE)?;
        Ok(InstallOutcome::Written)
    }

    fn remove(&self, name: &InstallName) -> Result<RemoveOutcome, SeccompError> {
        let Some(dir) = self.checked_operator_dir(false)? else {
            return Ok(RemoveOutcome::NotPresent);
        };
        let target = self.profile_path(name);
        // unlink removes a symbolic link itself, never what it points to.
        match fs::remove_file(&target) {
            Ok(()) => {
                sync_dir(&dir)?;
                Ok(RemoveOutcome::Removed)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(RemoveOutcome::NotPresent),
            Err(source) => Err(io_error("removing profile", &target, source)),
        }
    }

    fn list(&self) -> Result<Vec<InstallName>, SeccompError> {
        let Some(dir) = self.checked_operator_dir(false)? else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for entry in read_dir(&dir)? {
            let entry = entry.map_err(|source| io_error("listing directory", &dir, source))?;
            // DirEntry::file_type does not follow links: only real files are profiles.
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Ok(name) = InstallName::new(stem) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Replaces `path` with a file holding `bytes` so that readers see the old or the new content,
/// never a mix, with exactly `mode`. Whatever else is at `path` (a symbolic link, a FIFO) is
/// replaced without being followed or opened: the node's one writer, `spo_hostio::write_file`
/// with its owned-directory policy.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SeccompError> {
    spo_hostio::write_file(path, bytes, &WritePolicy::owned_dir(mode))?;
    Ok(())
}

/// Whether `path` is a regular file holding exactly `bytes`. Anything else there (nothing, a
/// symbolic link, a device) counts as different, and is replaced without being read.
fn holds_exactly(path: &Path, bytes: &[u8]) -> Result<bool, SeccompError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(io_error("inspecting profile", path, source)),
    };
    if !meta.file_type().is_file() || meta.len() != bytes.len() as u64 {
        return Ok(false);
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        // Replaced by a link (ELOOP) or removed since the check: not our content.
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(source) => return Err(io_error("reading profile", path, source)),
    };
    let mut existing = Vec::with_capacity(bytes.len());
    file.take(bytes.len() as u64 + 1)
        .read_to_end(&mut existing)
        .map_err(|source| io_error("reading profile", path, source))?;
    Ok(existing == bytes)
}

fn read_dir(dir: &Path) -> Result<fs::ReadDir, SeccompError> {
    fs::read_dir(dir).map_err(|source| io_error("listing directory", dir, source))
}

fn open_dir_nofollow(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SeccompError> {
    open_dir_nofollow(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error("syncing directory", dir, source))
}

fn io_error(operation: &'static str, path: &Path, source: std::io::Error) -> SeccompError {
    SeccompError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::fs::{MetadataExt, symlink};
    use std::time::{Duration, SystemTime};

    use super::*;

    fn name(s: &str) -> InstallName {
        InstallName::new(s).expect("valid name")
    }

    fn store() -> (tempfile::TempDir, DirStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::for_kubelet_dir(dir.path());
        (dir, store)
    }

    /// Every file below `dir`, relative to it, sorted.
    fn files_below(dir: &Path) -> Vec<PathBuf> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).expect("read_dir") {
                let entry = entry.expect("entry");
                let path = entry.path();
                if entry.file_type().expect("file type").is_dir() {
                    walk(base, &path, out);
                } else {
                    out.push(path.strip_prefix(base).expect("below base").to_path_buf());
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn paths_follow_the_kubelet_layout() {
        let store = DirStore::for_kubelet_dir(DEFAULT_KUBELET_DIR);
        assert_eq!(store.root(), Path::new("/var/lib/kubelet/seccomp"));
        assert_eq!(
            store.profile_path(&name("demo")),
            Path::new("/var/lib/kubelet/seccomp/operator/demo.json")
        );
        assert_eq!(localhost_profile(&name("demo")), "operator/demo.json");
    }

    #[test]
    fn install_creates_directory_and_file_with_modes() {
        let (_tmp, store) = store();
        let n = name("demo");
        assert_eq!(store.install(&n, b"{}").expect("install"), InstallOutcome::Written);
        let path = store.profile_path(&n);
        assert_eq!(fs::read(&path).expect("read"), b"{}");
        let file_mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(file_mode, PROFILE_MODE);
        let dir_mode = fs::metadata(store.operator_dir()).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(dir_mode, DIR_MODE);
        assert_eq!(files_below(store.root()), vec![PathBuf::from("operator/demo.json")]);
    }

    #[test]
    fn identical_bytes_leave_the_file_untouched() {
        let (_tmp, store) = store();
        let n = name("demo");
        store.install(&n, b"{\"a\":1}").expect("install");
        let path = store.profile_path(&n);
        // An old mtime makes any rewrite visible regardless of timestamp granularity.
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(old)
            .expect("set mtime");
        let before = fs::metadata(&path).expect("meta");

        assert_eq!(
            store.install(&n, b"{\"a\":1}").expect("again"),
            InstallOutcome::Unchanged
        );
        let after = fs::metadata(&path).expect("meta");
        assert_eq!(after.ino(), before.ino());
        assert_eq!(after.modified().expect("mtime"), old);
    }

    #[test]
    fn changed_bytes_replace_the_file() {
        let (_tmp, store) = store();
        let n = name("demo");
        store.install(&n, b"{\"a\":1}").expect("install");
        let ino = fs::metadata(store.profile_path(&n)).expect("meta").ino();
        // Same length, different content: the comparison must look at the bytes.
        assert_eq!(
            store.install(&n, b"{\"a\":2}").expect("change"),
            InstallOutcome::Written
        );
        let path = store.profile_path(&n);
        assert_eq!(fs::read(&path).expect("read"), b"{\"a\":2}");
        assert_ne!(fs::metadata(&path).expect("meta").ino(), ino, "renamed into place");
        assert_eq!(files_below(store.root()), vec![PathBuf::from("operator/demo.json")]);
    }

    #[test]
    fn remove_is_idempotent_and_list_follows() {
        let (_tmp, store) = store();
        assert_eq!(store.list().expect("list before anything"), Vec::<InstallName>::new());
        assert_eq!(store.remove(&name("a")).expect("remove"), RemoveOutcome::NotPresent);
        store.install(&name("b"), b"b").expect("install");
        store.install(&name("a.x"), b"a").expect("install");
        assert_eq!(store.list().expect("list"), vec![name("a.x"), name("b")]);
        assert_eq!(store.remove(&name("b")).expect("remove"), RemoveOutcome::Removed);
        assert_eq!(
            store.remove(&name("b")).expect("remove again"),
            RemoveOutcome::NotPresent
        );
        assert_eq!(store.list().expect("list"), vec![name("a.x")]);
    }

    #[test]
    fn the_recording_filter_lives_outside_the_profiles_and_never_through_a_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path().join("seccomp"));
        let path = store.install_recording_filter().expect("installed");
        assert_eq!(path, store.root().join("spo-recording/filter.json"));
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW", "{json}");
        assert!(store.list().expect("list").is_empty(), "not a profile of the store");
        store.install_recording_filter().expect("idempotent");

        let other = tempfile::tempdir().expect("tempdir");
        let linked = DirStore::new(dir.path().join("linked"));
        fs::create_dir_all(linked.root()).expect("root");
        std::os::unix::fs::symlink(other.path(), linked.root().join(RECORDING_DIR)).expect("link");
        let err = linked
            .install_recording_filter()
            .expect_err("a linked directory is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(
            fs::read_dir(other.path()).expect("read").next().is_none(),
            "nothing written through the link"
        );
    }

    #[test]
    fn list_returns_only_installable_json_files() {
        let (_tmp, store) = store();
        store.install(&name("good"), b"{}").expect("install");
        let dir = store.operator_dir();
        fs::write(dir.join("README.txt"), "x").expect("write");
        fs::write(dir.join("Bad_Name.json"), "{}").expect("write");
        fs::write(dir.join(".hidden.json"), "{}").expect("write");
        fs::create_dir(dir.join("sub.json")).expect("mkdir");
        symlink(dir.join("good.json"), dir.join("link.json")).expect("symlink");
        assert_eq!(store.list().expect("list"), vec![name("good")]);
    }

    #[test]
    fn leftover_temp_file_is_ignored_and_does_not_block_install() {
        let (_tmp, store) = store();
        fs::create_dir_all(store.operator_dir()).expect("mkdir");
        let leftover = store.operator_dir().join(".demo.json.spo-tmp-0123456789abcdef");
        fs::write(&leftover, b"{\"half").expect("write leftover");
        assert_eq!(store.list().expect("list"), Vec::<InstallName>::new());

        assert_eq!(
            store.install(&name("demo"), b"{}").expect("install"),
            InstallOutcome::Written
        );
        assert_eq!(store.list().expect("list"), vec![name("demo")]);
        assert_eq!(store.remove_stale_temp_files().expect("clean"), 1);
        assert!(!leftover.exists());
        assert_eq!(files_below(store.root()), vec![PathBuf::from("operator/demo.json")]);
    }

    #[test]
    fn symlinked_operator_dir_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).expect("mkdir");
        fs::write(elsewhere.join("victim.json"), "keep").expect("write");
        let store = DirStore::new(tmp.path().join("seccomp"));
        fs::create_dir(store.root()).expect("mkdir root");
        symlink(&elsewhere, store.operator_dir()).expect("symlink");

        let err = store.install(&name("victim"), b"{}").expect_err("install through link");
        assert!(matches!(err, SeccompError::UnsafePath { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(store.remove(&name("victim")).is_err());
        assert!(store.list().is_err());
        assert_eq!(fs::read(elsewhere.join("victim.json")).expect("read"), b"keep");
        assert_eq!(files_below(&elsewhere), vec![PathBuf::from("victim.json")]);
    }

    #[test]
    fn operator_path_that_is_a_file_is_refused() {
        let (_tmp, store) = store();
        fs::create_dir_all(store.root()).expect("mkdir");
        fs::write(store.operator_dir(), "not a dir").expect("write");
        let err = store.install(&name("demo"), b"{}").expect_err("not a directory");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn symlink_at_profile_path_is_replaced_not_followed() {
        let (tmp, store) = store();
        let outside = tmp.path().join("outside.json");
        fs::write(&outside, b"{}").expect("write");
        fs::create_dir_all(store.operator_dir()).expect("mkdir");
        let path = store.profile_path(&name("demo"));
        symlink(&outside, &path).expect("symlink");

        // Same bytes behind the link: still not "unchanged", the link is not our file.
        assert_eq!(
            store.install(&name("demo"), b"{}").expect("install"),
            InstallOutcome::Written
        );
        assert!(fs::symlink_metadata(&path).expect("meta").file_type().is_file());
        assert_eq!(store.remove(&name("demo")).expect("remove"), RemoveOutcome::Removed);
        assert_eq!(fs::read(&outside).expect("outside untouched"), b"{}");
    }

    #[test]
    fn failed_install_leaves_no_temp_file() {
        let (_tmp, store) = store();
        // A directory where the profile should be is refused (by the writer, before any
        // temporary file exists).
        fs::create_dir_all(store.profile_path(&name("demo"))).expect("mkdir");
        let err = store.install(&name("demo"), b"{}").expect_err("a directory in the way");
        assert!(err.to_string().contains("it is a directory"), "{err}");
        let leftovers: Vec<_> = fs::read_dir(store.operator_dir())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![OsString::from("demo.json")]);
    }

    #[test]
    fn install_names_cannot_escape() {
        for bad in ["../x", "..", "/", "a/b", "a\0b", "", ".", "x/../../y", "UPPER", "a b"] {
            assert!(InstallName::new(bad).is_err(), "{bad:?} must be rejected");
        }
        let (tmp, store) = store();
        for good in ["a", "a.b", "a-b.c-d", "x.y", "0"] {
            store.install(&name(good), good.as_bytes()).expect("install");
        }
        for f in files_below(tmp.path()) {
            assert!(f.starts_with("seccomp/operator"), "{} written outside", f.display());
        }
    }

    #[test]
    fn write_file_atomic_replaces_and_cleans_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("out.json");
        write_file_atomic(&path, b"one", 0o600).expect("write");
        write_file_atomic(&path, b"two", 0o600).expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(files_below(tmp.path()), vec![PathBuf::from("out.json")]);
        assert!(write_file_atomic(Path::new("/"), b"x", 0o644).is_err());
    }
}
