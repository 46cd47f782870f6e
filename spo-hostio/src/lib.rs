#![doc = include_str!("../README.md")]

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub mod run;

pub use run::{ScratchDir, ToolCommand, ToolOutput};

/// What went wrong, naming the operation and the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostIoError {
    /// A filesystem call failed.
    #[error("{operation} {}", path.display())]
    Io {
        /// What was being done (`replacing`, `creating temporary file`...).
        operation: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The destination is of a type the policy does not write to.
    #[error("writing {}: {reason}", path.display())]
    Refused {
        /// The destination.
        path: PathBuf,
        /// Why, in words (`it is a directory`, `it is a symbolic link`...).
        reason: &'static str,
    },
    /// An external program could not be started (not installed, not executable...).
    #[error("starting {}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An external program ran past its deadline; its whole process group was killed.
    #[error("{} did not finish within {limit:?}; its process group was killed", program.display())]
    TimedOut {
        /// The program.
        program: PathBuf,
        /// The deadline it was given.
        limit: Duration,
    },
    /// An external program was ended by a signal the runner did not send (it crashed, or
    /// something else killed it).
    #[error("{} was killed by signal {signal}{}", program.display(), if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Signaled {
        /// The program.
        program: PathBuf,
        /// The signal number.
        signal: i32,
        /// What it printed on stderr before (trimmed).
        stderr: String,
    },
    /// Waiting for an external program, or reading its output, failed.
    #[error("waiting for {}", program.display())]
    Wait {
        /// The program.
        program: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl HostIoError {
    /// Whether a program ran past its deadline (a hung tool, as opposed to one that refused
    /// its input or could not start).
    pub fn is_timeout(&self) -> bool {
        matches!(self, HostIoError::TimedOut { .. })
    }

    fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostIoError {
        let path = path.to_path_buf();
        move |source| HostIoError::Io {
            operation,
            path,
            source,
        }
    }

    fn refused(path: &Path, reason: &'static str) -> HostIoError {
        HostIoError::Refused {
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// The permission bits a written file gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileMode {
    /// A replaced file keeps its mode and owner; a new file gets these bits.
    KeepOr(u32),
    /// Always these bits, and the writer's ownership.
    Exact(u32),
}

/// What a symbolic link at the destination means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// Write through it: the file it names is written (a link into `/proc/*/fd/`, such as
    /// `/dev/stdout`, is written into as a stream).
    Follow,
    /// Replace the link itself with the new file; what it names is left alone.
    Replace,
    /// Refuse to write.
    Refuse,
}

/// What a destination that is neither a regular file nor a directory means (a FIFO, a
/// character or block device, a socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialFiles {
    /// Open it for writing and write into it as it is; never replace it.
    WriteInto,
    /// Replace it with the new regular file, without opening it.
    Replace,
    /// Refuse to write.
    Refuse,
}

/// How [`write_file`] treats what it finds at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePolicy {
    /// The mode (and owner) of the written file.
    pub mode: FileMode,
    /// Symbolic links at the destination.
    pub symlinks: Symlinks,
    /// FIFOs, devices and sockets at the destination.
    pub special_files: SpecialFiles,
}

impl WritePolicy {
    /// What a command-line tool's `-o FILE` expects: a replaced file keeps its mode and owner,
    /// links are written through, `/dev/null` or a FIFO is written into, never replaced.
    pub const fn cli(new_file_mode: u32) -> Self {
        WritePolicy {
            mode: FileMode::KeepOr(new_file_mode),
            symlinks: Symlinks::Follow,
            special_files: SpecialFiles::WriteInto,
        }
    }

    /// For files in a directory the writer owns (a node agent's profile files): exactly
    /// `mode`, and whatever else is at the destination (a link, a FIFO someone planted) is
    /// replaced without being followed or opened, so nothing outside the directory is touched
    /// and the directory heals.
    pub const fn owned_dir(mode: u32) -> Self {
        WritePolicy {
            mode: FileMode::Exact(mode),
            symlinks: Symlinks::Replace,
            special_files: SpecialFiles::Replace,
        }
    }
}

/// What [`write_file`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// A new regular file was created.
    Created,
    /// An existing regular file was replaced atomically.
    Replaced,
    /// A FIFO, device, socket or stream was written into.
    WroteInto,
}

/// Writes `bytes` to `path` by `policy`: regular files are created or replaced atomically
/// (readers see the old or the new file, never a part), special files are written into or
/// refused, symbolic links are followed or refused. See the crate's documentation for the
/// whole table.
pub fn write_file(path: &Path, bytes: &[u8], policy: &WritePolicy) -> Result<Written, HostIoError> {
    let found = match fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(source) => return Err(HostIoError::io("inspecting", path)(source)),
    };
    let Some(found) = found else {
        replace_atomically(path, None, bytes, policy.mode)?;
        return Ok(Written::Created);
    };
    if found.file_type().is_symlink() {
        match policy.symlinks {
            Symlinks::Follow => {}
            Symlinks::Replace => {
                replace_atomically(path, None, bytes, policy.mode)?;
                return Ok(Written::Replaced);
            }
            Symlinks::Refuse => return Err(HostIoError::refused(path, "it is a symbolic link")),
        }
        if passes_through_fd_link(path) {
            return write_into(path, bytes, true);
        }
        let target = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(HostIoError::refused(
                    path,
                    "it is a symbolic link to nothing (write to the file it should name)",
                ));
            }
            Err(source) => return Err(HostIoError::io("following symbolic link", path)(source)),
        };
        return write_to(path, &target, bytes, policy, true);
    }
    if policy.symlinks == Symlinks::Follow && passes_through_fd_link(path) {
        return write_into(path, bytes, true);
    }
    write_to(path, &found, bytes, policy, false)
}

/// Writes to `path`, which exists with metadata `meta` (of the link's target when `via_link`).
fn write_to(
    path: &Path,
    meta: &Metadata,
    bytes: &[u8],
    policy: &WritePolicy,
    via_link: bool,
) -> Result<Written, HostIoError> {
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(HostIoError::refused(path, "it is a directory"));
    }
    if kind.is_file() {
        let real = if via_link {
            fs::canonicalize(path).map_err(HostIoError::io("resolving symbolic link", path))?
        } else {
            path.to_path_buf()
        };
        replace_atomically(&real, Some(meta), bytes, policy.mode)?;
        return Ok(Written::Replaced);
    }
    match policy.special_files {
        SpecialFiles::WriteInto => write_into(path, bytes, false),
        SpecialFiles::Replace if !via_link => {
            replace_atomically(path, None, bytes, policy.mode)?;
            Ok(Written::Replaced)
        }
        SpecialFiles::Replace | SpecialFiles::Refuse => Err(HostIoError::refused(
            path,
            "it is not a regular file (a FIFO, device or socket)",
        )),
    }
}

/// Whether `path`, or a link on the way from it, is one of the kernel's descriptor links
/// (`/proc/<pid>/fd/N`, `/proc/self/fd/N`, `/dev/fd/N`): `/dev/stdout` is one. Such a path
/// names an open stream (a pipe, a terminal, or the file a shell redirected to), which must be
/// written into: replacing the file it points at would lose what the shell appended before.
fn passes_through_fd_link(path: &Path) -> bool {
    let mut current = path.to_path_buf();
    // As many hops as the kernel follows.
    for _ in 0..40 {
        if is_fd_link(&current) {
            return true;
        }
        match fs::read_link(&current) {
            Ok(next) if next.is_absolute() => current = next,
            Ok(next) => {
                current = current.parent().map(|p| p.join(&next)).unwrap_or(next);
            }
            Err(_) => return false,
        }
    }
    false
}

fn is_fd_link(path: &Path) -> bool {
    let parts: Vec<Component<'_>> = path.components().collect();
    let is_number = |c: &Component<'_>| c.as_os_str().to_str().is_some_and(|s| s.parse::<u32>().is_ok());
    let named = |c: &Component<'_>, s: &str| c.as_os_str() == s;
    match parts.as_slice() {
        [Component::RootDir, proc, who, fd, n] => {
            named(proc, "proc")
                && (named(who, "self") || named(who, "thread-self") || is_number(who))
                && named(fd, "fd")
                && is_number(n)
        }
        [Component::RootDir, dev, fd, n] => named(dev, "dev") && named(fd, "fd") && is_number(n),
        _ => false,
    }
}

/// Opens `path` for writing without creating or truncating it, and writes `bytes` into it.
fn write_into(path: &Path, bytes: &[u8], stream: bool) -> Result<Written, HostIoError> {
    let mut options = OpenOptions::new();
    options.write(true).custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY);
    if stream {
        // A descriptor link reopens the stream: append so that a shell's `>>` keeps its file.
        options.append(true);
    }
    let mut file = options
        .open(path)
        .map_err(HostIoError::io("opening for writing", path))?;
    let meta = file
        .metadata()
        .map_err(HostIoError::io("inspecting what was opened", path))?;
    if meta.file_type().is_file() && !stream {
        // It became a regular file between the check and the open: writing now would leave
        // old bytes behind ours.
        return Err(HostIoError::refused(
            path,
            "it was replaced by a regular file while being opened; try again",
        ));
    }
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .map_err(HostIoError::io("writing into", path))?;
    Ok(Written::WroteInto)
}

/// Replaces (or creates) the regular file `path` atomically. `existing` is its metadata when
/// it exists.
fn replace_atomically(
    path: &Path,
    existing: Option<&Metadata>,
    bytes: &[u8],
    mode: FileMode,
) -> Result<(), HostIoError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| HostIoError::refused(path, "the path does not name a file"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (temp, mut file) = create_temp_file(dir, file_name)?;
    let guard = RemoveOnDrop(Some(temp));
    let temp = guard.path();
    let bits = match (mode, existing) {
        (FileMode::KeepOr(_), Some(meta)) => {
            keep_owner(&file, temp, meta)?;
            meta.mode() & 0o7777
        }
        (FileMode::KeepOr(bits), None) | (FileMode::Exact(bits), _) => bits,
    };
    // After the owner: chown clears set-id bits.
    file.set_permissions(fs::Permissions::from_mode(bits))
        .map_err(HostIoError::io("setting the mode of temporary file", temp))?;
    file.write_all(bytes)
        .map_err(HostIoError::io("writing temporary file", temp))?;
    file.sync_all()
        .map_err(HostIoError::io("syncing temporary file", temp))?;
    drop(file);
    fs::rename(temp, path).map_err(HostIoError::io("replacing", path))?;
    guard.disarm();
    sync_dir(dir)
}

/// Gives the temporary file the owner of the file it replaces, when that differs.
fn keep_owner(file: &File, temp: &Path, meta: &Metadata) -> Result<(), HostIoError> {
    let ours = file
        .metadata()
        .map_err(HostIoError::io("inspecting temporary file", temp))?;
    if ours.uid() == meta.uid() && ours.gid() == meta.gid() {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())).map_err(|source| HostIoError::Io {
        operation: "keeping the owner of the replaced file (write as its owner, or remove it first) on",
        path: temp.to_path_buf(),
        source,
    })
}

/// Syncs a directory, so a rename or an unlink in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), HostIoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(HostIoError::io("syncing directory", dir))
}

/// The marker in temporary file names: `.<name>.spo-tmp-<random>`.
pub const TEMP_MARKER: &str = ".spo-tmp-";

/// Creates `.<file_name>.spo-tmp-<random>` in `dir` exclusively, without following links,
/// readable by its owner only until the final mode is set.
fn create_temp_file(dir: &Path, file_name: &std::ffi::OsStr) -> Result<(PathBuf, File), HostIoError> {
    const ATTEMPTS: usize = 16;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut temp_name = OsString::from(".");
        temp_name.push(file_name);
        temp_name.push(TEMP_MARKER);
        temp_name.push(random_suffix());
        let temp = dir.join(temp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((temp, e)),
            Err(source) => return Err(HostIoError::io("creating temporary file", &temp)(source)),
        }
    }
    let (temp, source) = last.unwrap_or_else(|| (dir.to_path_buf(), std::io::Error::from(ErrorKind::AlreadyExists)));
    Err(HostIoError::io("creating temporary file", &temp)(source))
}

/// 64 random bits as hex: the standard library's per-process random hash keys over a counter,
/// the pid and the time. `O_EXCL` is what guarantees uniqueness; this only makes retries rare.
fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    format!("{:016x}", h.finish())
}

/// Removes a temporary file when dropped, unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: the error that brought us here is the one worth reporting.
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_links_are_recognised() {
        for p in [
            "/proc/self/fd/1",
            "/proc/123/fd/7",
            "/dev/fd/2",
            "/proc/thread-self/fd/0",
        ] {
            assert!(is_fd_link(Path::new(p)), "{p}");
        }
        for p in [
            "/proc/self/fd",
            "/proc/self/fdinfo/1",
            "/dev/null",
            "/tmp/fd/1",
            "proc/self/fd/1",
        ] {
            assert!(!is_fd_link(Path::new(p)), "{p}");
        }
    }
}
