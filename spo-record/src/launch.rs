//! Starting a command held just before `execve`, so it is tracked before it runs one instruction
//! of its own.
//!
//! The child reports its pid on one pipe and blocks reading another; the parent registers the pid
//! and then releases it. `Command::spawn` only returns once the child has exec'd, so it runs on a
//! helper thread while this one does the registering.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;

use crate::RecordError;

/// The executable `argv[0]` names, looked up in `PATH` as `execvp` would, so a typo is reported
/// before anything is attached.
pub(crate) fn resolve_command(argv: &[String]) -> Result<PathBuf, RecordError> {
    let program = argv.first().ok_or(RecordError::EmptyCommand)?;
    resolve(program).ok_or_else(|| RecordError::CommandNotFound {
        program: program.clone(),
    })
}

/// Spawns `path` with `argv` (from [`resolve_command`]), calls `register` with the child's pid
/// while the child waits before `execve`, and releases the child only when `register`
/// succeeded. On failure the child exits before exec and `register`'s error is returned.
pub(crate) fn spawn_held(
    path: &Path,
    argv: &[String],
    run_as: Option<(u32, u32)>,
    register: impl FnOnce(u32) -> Result<(), RecordError>,
) -> Result<Child, RecordError> {
    let program = argv.first().ok_or(RecordError::EmptyCommand)?;

    let pipe = |source| RecordError::Pipe { source };
    // Both pipes are close-on-exec (std creates them so): the command never inherits them.
    let (mut ready_reader, ready_writer) = io::pipe().map_err(pipe)?;
    let (gate_reader, mut gate_writer) = io::pipe().map_err(pipe)?;
    let (ready_fd, gate_read_fd, gate_write_fd) = (
        ready_writer.as_raw_fd(),
        gate_reader.as_raw_fd(),
        gate_writer.as_raw_fd(),
    );

    let mut command = Command::new(path);
    command.arg0(program).args(&argv[1..]);
    if let Some((uid, gid)) = run_as {
        // std drops the supplementary groups too (setgroups(0)) when it changes the uid as root.
        command.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (close, getpid, write, read) on descriptors that stay open until exec (the pipes
    // above live until `spawn` returns). It neither allocates nor takes locks: the errors it
    // returns are built from raw OS error numbers.
    unsafe {
        command.pre_exec(move || {
            // Our copy of the gate's write end must go, or the read below could never see EOF
            // when the parent gives up.
            libc::close(gate_write_fd);
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(ready_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return Err(io::Error::last_os_error());
            }
            let mut byte = 0u8;
            loop {
                match libc::read(gate_read_fd, (&raw mut byte).cast(), 1) {
                    1 => return Ok(()),
                    0 => return Err(io::Error::from_raw_os_error(libc::ECANCELED)),
                    _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
                    _ => return Err(io::Error::last_os_error()),
                }
            }
        });
    }

    thread::scope(|scope| {
        let spawner = scope.spawn(move || {
            let spawned = command.spawn();
            // Whatever happened, the child has exec'd or is gone: the parent's copies can close.
            drop((ready_writer, gate_reader));
            spawned
        });

        let mut pid = [0u8; 4];
        let reported = ready_reader.read_exact(&mut pid);
        let registered = match reported {
            Ok(()) => register(u32::from_ne_bytes(pid)),
            // The child never got to report: `spawn` itself failed, and says why below.
            Err(_) => Ok(()),
        };
        if registered.is_ok() && reported.is_ok() {
            // A failed write means the child is gone; `spawn` reports it.
            let _ = gate_writer.write_all(&[1]);
        }
        drop(gate_writer);

        let spawned = spawner
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("spawning thread panicked")));
        registered?;
        spawned.map_err(|source| RecordError::Spawn {
            program: program.clone(),
            source,
        })
    })
}

/// Finds the executable `execvp` would run.
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_through_path_and_rejects_what_is_missing() {
        assert!(resolve("sh").is_some_and(|p| p.is_absolute()));
        assert_eq!(resolve("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve("no-such-command-spo"), None);
        assert_eq!(resolve("/etc/passwd"), None, "not executable");
        assert_eq!(resolve("/etc"), None, "a directory");
    }

    #[test]
    fn registers_the_pid_before_the_command_runs() {
        let mut seen = 0;
        let argv = ["true".to_string()];
        let path = resolve_command(&argv).expect("true is installed");
        let mut child = spawn_held(&path, &argv, None, |pid| {
            seen = pid;
            Ok(())
        })
        .expect("spawn true");
        assert_eq!(seen, child.id());
        assert!(child.wait().expect("wait").success());
    }

    #[test]
    fn a_failed_registration_stops_the_command_before_exec() {
        let marker = std::env::temp_dir().join(format!("spo-record-held-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let argv = ["touch".to_string(), marker.display().to_string()];
        let path = resolve_command(&argv).expect("touch is installed");
        let err = spawn_held(&path, &argv, None, |_| Err(RecordError::EmptyCommand)).expect_err("registration failed");
        assert!(matches!(err, RecordError::EmptyCommand), "{err:?}");
        assert!(!marker.exists(), "the command ran although it was never tracked");
    }
}
