//! Running external tools with a deadline and bounded output.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::AppArmorError;

/// At most this much of stdout and of stderr is kept (the parser's debug dump of a large
/// profile is a few hundred KiB).
pub(crate) const OUTPUT_LIMIT: u64 = 8 << 20;

/// How long one apparmor_parser run may take by default (a compile takes about 20 ms here).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished run produced.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tool args...` with no stdin, killing it after `timeout`.
pub(crate) fn run(
    operation: &str,
    tool: &Path,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<ToolOutput, AppArmorError> {
    // apparmor_parser forks its compile workers; in a process group of their own they can
    // all be killed on timeout (killing only the parent leaves a worker spinning).
    let mut child = Command::new(tool)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| AppArmorError::ToolUnavailable {
            tool: tool.to_path_buf(),
            source,
        })?;
    let stdout = child.stdout.take().map(read_bounded);
    let stderr = child.stderr.take().map(read_bounded);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // Best effort: the timeout is the error worth reporting. The group id is the
                // child's pid; kill(1) reaches the whole group without unsafe code here.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(AppArmorError::ToolTimeout {
                    operation: operation.to_owned(),
                    tool: tool.to_path_buf(),
                    after: timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(source) => {
                return Err(AppArmorError::ToolUnavailable {
                    tool: tool.to_path_buf(),
                    source,
                });
            }
        }
    };
    let join = |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(ToolOutput {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn read_bounded<R: Read + Send + 'static>(pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = pipe.take(OUTPUT_LIMIT);
        let _ = limited.read_to_end(&mut buf);
        // Drain the rest so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// The first `max` characters of `s`, trimmed, with a marker when cut.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("grandchild-pid");
        // A shell that forks a sleeping worker, like apparmor_parser forks its compiler.
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let err = run(
            "testing",
            Path::new("/bin/sh"),
            &[std::ffi::OsStr::new("-c"), std::ffi::OsStr::new(&script)],
            Duration::from_millis(300),
        )
        .expect_err("times out");
        assert!(matches!(err, AppArmorError::ToolTimeout { .. }), "{err}");
        let pid = std::fs::read_to_string(&marker).expect("marker");
        let proc_dir = Path::new("/proc").join(pid.trim());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Killed (a zombie until init reaps it, or gone).
        while proc_dir.exists() && !std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z ")) {
            assert!(Instant::now() < deadline, "the forked worker survived the timeout");
            thread::sleep(Duration::from_millis(20));
        }
    }
}
