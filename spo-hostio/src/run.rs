//! The one external-tool runner, and scratch directories for a tool's input files.
//!
//! [`ToolCommand`] runs a program with a deadline. The program starts in a process group of
//! its own; when the deadline passes the whole group gets `SIGTERM`, then `SIGKILL` after a
//! short grace, so workers a tool forked (apparmor_parser's compilers, a shell's children) die
//! with it. When the program exits, whatever it left running in its group is killed too: a
//! forked worker that kept our pipes open would otherwise hold the run. stdout and stderr are
//! read concurrently, each kept up to a byte bound (the rest is read and discarded, and the
//! output is flagged as truncated), so a tool writing much to both never blocks. The
//! environment is cleared to `PATH` ([`SAFE_PATH`]) and `LC_ALL=C` (messages that callers
//! parse stay in English) unless asked otherwise.
//!
//! A program named without a `/` is looked up in the caller's `PATH` (absolute entries
//! only; [`SAFE_PATH`] when it is unset), so what a user's shell would run is what runs,
//! while the tool itself gets the minimal environment.
//!
//! A non-zero exit is not an error here: [`ToolOutput::status`] says how it ended and the
//! caller decides what it means. What is an error: the program could not be started, did not
//! finish in time, or was killed by a signal it did not get from us.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};

use crate::HostIoError;

/// The `PATH` a tool gets when the environment is cleared.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of stdout and of stderr is kept by default, each (8 MiB: apparmor_parser's debug
/// dump of a large profile is a few hundred KiB, `semodule --list-modules=full` a few KiB).
pub const DEFAULT_OUTPUT_LIMIT: usize = 8 << 20;

/// How long a timed-out tool has between `SIGTERM` and `SIGKILL` by default.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// How long the runner waits, after `SIGKILL`, for the kernel to end the process (one stuck
/// in uninterruptible sleep may take longer: it is then left to a reaper thread).
const KILL_SETTLE: Duration = Duration::from_secs(5);

/// How long the runner waits for the output pipes to close once the process group is dead (a
/// descendant that left the group with `setsid` may hold them).
const PIPE_SETTLE: Duration = Duration::from_millis(500);

/// `program` as found in `path` (a `PATH` value): a name without `/` becomes the first
/// executable file of that name in an absolute entry (`None` when there is none); a path is
/// returned as it is.
fn resolve_in(program: &Path, path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut parts = program.components();
    let bare = matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None));
    if !bare {
        return Some(program.to_path_buf());
    }
    let path = path.unwrap_or(OsStr::new(SAFE_PATH));
    for dir in std::env::split_paths(path).filter(|d| d.is_absolute()) {
        let candidate = dir.join(program);
        if fs::metadata(&candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return Some(candidate);
        }
    }
    None
}

/// One run of an external program: what to run, with what input, for how long.
///
/// ```
/// use std::time::Duration;
/// use spo_hostio::ToolCommand;
///
/// let out = ToolCommand::new("sh", Duration::from_secs(10))
///     .args(["-c", "tr a-z A-Z; echo oops >&2; exit 3"])
///     .stdin(b"hello".to_vec())
///     .run()?;
/// assert_eq!(out.status.code(), Some(3));
/// assert_eq!(out.stdout, b"HELLO");
/// assert_eq!(out.stderr_text(), "oops\n");
/// # Ok::<(), spo_hostio::HostIoError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ToolCommand {
    program: PathBuf,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    current_dir: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    inherit_env: bool,
    timeout: Duration,
    kill_grace: Duration,
    output_limit: usize,
}

impl ToolCommand {
    /// Runs `program` (a path, or a name looked up in the child's `PATH`), allowed to take
    /// `timeout` before its process group is killed.
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Self {
        ToolCommand {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            current_dir: None,
            envs: Vec::new(),
            inherit_env: false,
            timeout,
            kill_grace: DEFAULT_KILL_GRACE,
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Gives the program these bytes on stdin (without this, stdin is `/dev/null`).
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    /// Runs the program in `dir` (a [`ScratchDir`], typically).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Sets one environment variable (on top of the minimal set, or of the inherited one).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Passes this process's whole environment on instead of the minimal set.
    pub fn inherit_env(mut self) -> Self {
        self.inherit_env = true;
        self
    }

    /// How long a timed-out program has between `SIGTERM` and `SIGKILL`.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// How many bytes of stdout and of stderr are kept, each.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the program to its end or its deadline. See the module documentation for what
    /// is an error and what is a status.
    pub fn run(&self) -> Result<ToolOutput, HostIoError> {
        let started = Instant::now();
        let program =
            resolve_in(&self.program, std::env::var_os("PATH").as_deref()).ok_or_else(|| HostIoError::Spawn {
                program: self.program.clone(),
                source: std::io::Error::new(ErrorKind::NotFound, "not found in PATH"),
            })?;
        let mut command = Command::new(&program);
        // argv[0] stays the name the caller gave: tools prefix their messages with it, and
        // callers parse those messages (`apparmor_parser: ...`).
        command
            .arg0(&self.program)
            .args(&self.args)
            .process_group(0)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.inherit_env {
            command.env_clear().env("PATH", SAFE_PATH).env("LC_ALL", "C");
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(|source| HostIoError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let group = Pid::from_child(&child);
        let mut running = Running {
            child: Some(child),
            group,
        };
        let stdout = Capture::start(running.take_stdout(), self.output_limit);
        let stderr = Capture::start(running.take_stderr(), self.output_limit);
        let (stdout, stderr) = match (stdout, stderr) {
            (Ok(o), Ok(e)) => (o, e),
            (Err(source), _) | (_, Err(source)) => return Err(running.fail(&self.program, source)),
        };
        if let (Some(pipe), Some(bytes)) = (running.take_stdin(), self.stdin.clone()) {
            // Detached: a program that exits without reading its input makes the write fail
            // with EPIPE, which ends the thread; what the program did is reported, not that.
            feed(pipe, bytes).map_err(|source| running.fail(&self.program, source))?;
        }
        let exited = {
            let (tx, rx) = mpsc::channel();
            thread::Builder::new()
                .name("spo-tool-wait".into())
                .spawn(move || {
                    let _ = tx.send(wait_exited(group));
                })
                .map_err(|source| running.fail(&self.program, source))?;
            rx
        };

        let mut timed_out = false;
        match exited.recv_timeout(self.timeout) {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(running.fail(&self.program, source)),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(running.fail(&self.program, std::io::Error::other("the waiting thread ended")));
            }
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                // The group leader is not reaped until below, so its pid still names the group
                // and cannot have been reused.
                let _ = kill_process_group(group, Signal::TERM);
                if exited.recv_timeout(self.kill_grace).is_err() {
                    let _ = kill_process_group(group, Signal::KILL);
                    if exited.recv_timeout(KILL_SETTLE).is_err() {
                        running.abandon();
                        return Err(HostIoError::TimedOut {
                            program: self.program.clone(),
                            limit: self.timeout,
                        });
                    }
                }
            }
        }
        // The leader has exited (not reaped yet): end what it left running in its group.
        let _ = kill_process_group(group, Signal::KILL);
        let status = running.reap().map_err(|source| HostIoError::Wait {
            program: self.program.clone(),
            source,
        })?;
        let (stdout, stdout_truncated) = stdout.finish(PIPE_SETTLE);
        let (stderr, stderr_truncated) = stderr.finish(PIPE_SETTLE);
        if timed_out {
            return Err(HostIoError::TimedOut {
                program: self.program.clone(),
                limit: self.timeout,
            });
        }
        if let Some(signal) = status.signal() {
            return Err(HostIoError::Signaled {
                program: self.program.clone(),
                signal,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        Ok(ToolOutput {
            status,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            elapsed: started.elapsed(),
        })
    }
}

/// What a finished run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    /// How the program exited (always with an exit code: a signal is an error).
    pub status: ExitStatus,
    /// Its stdout, up to the output limit.
    pub stdout: Vec<u8>,
    /// Its stderr, up to the output limit.
    pub stderr: Vec<u8>,
    /// Whether stdout went past the limit (the rest was discarded).
    pub stdout_truncated: bool,
    /// Whether stderr went past the limit (the rest was discarded).
    pub stderr_truncated: bool,
    /// From start to end.
    pub elapsed: Duration,
}

impl ToolOutput {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The child while it runs: killed and reaped when the run ends early.
struct Running {
    child: Option<Child>,
    group: Pid,
}

impl Running {
    fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// Waits for the (exited) child.
    fn reap(&mut self) -> std::io::Result<ExitStatus> {
        match self.child.take() {
            Some(mut child) => child.wait(),
            None => Err(std::io::Error::other("the child was already reaped")),
        }
    }

    /// Kills the group, reaps the child and builds the error for `source`.
    fn fail(&mut self, program: &Path, source: std::io::Error) -> HostIoError {
        let _ = kill_process_group(self.group, Signal::KILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        HostIoError::Wait {
            program: program.to_path_buf(),
            source,
        }
    }

    /// Gives up on a child that does not die: a thread reaps it whenever it ends.
    fn abandon(&mut self) {
        if let Some(child) = self.child.take() {
            let pid = child.id();
            // The thread cannot borrow the child; it reaps by pid.
            let _ = thread::Builder::new().name("spo-tool-reap".into()).spawn(move || {
                if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                    let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
                }
            });
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only reached with a child on an early return this file did not foresee.
        if let Some(mut child) = self.child.take() {
            let _ = kill_process_group(self.group, Signal::KILL);
            let _ = child.wait();
        }
    }
}

/// Blocks until the process `pid` has exited, without reaping it (so its pid, which is also
/// its group's id, stays taken while the group is signalled).
fn wait_exited(pid: Pid) -> std::io::Result<()> {
    loop {
        match waitid(WaitId::Pid(pid), WaitIdOptions::EXITED | WaitIdOptions::NOWAIT) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes `bytes` to the child's stdin on a thread of its own, then closes it.
fn feed(mut pipe: std::process::ChildStdin, bytes: Vec<u8>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("spo-tool-stdin".into())
        .spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
        .map(drop)
}

/// One output pipe being read on a thread of its own.
struct Capture {
    captured: Arc<Mutex<Captured>>,
    done: mpsc::Receiver<()>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn start<R: Read + Send + 'static>(pipe: Option<R>, limit: usize) -> std::io::Result<Capture> {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let (tx, done) = mpsc::channel();
        let Some(mut pipe) = pipe else {
            let _ = tx.send(());
            return Ok(Capture { captured, done });
        };
        let shared = captured.clone();
        thread::Builder::new().name("spo-tool-output".into()).spawn(move || {
            let mut chunk = vec![0u8; 64 << 10];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut c = shared.lock().unwrap_or_else(PoisonError::into_inner);
                        let keep = n.min(limit.saturating_sub(c.bytes.len()));
                        c.bytes.extend_from_slice(&chunk[..keep]);
                        // Past the limit the rest is read and dropped, so the tool never
                        // blocks on a full pipe.
                        c.truncated |= keep < n;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        shared.lock().unwrap_or_else(PoisonError::into_inner).truncated = true;
                        break;
                    }
                }
            }
            let _ = tx.send(());
        })?;
        Ok(Capture { captured, done })
    }

    /// What was read, and whether it is incomplete (over the limit, or the pipe still open
    /// after `settle`).
    fn finish(self, settle: Duration) -> (Vec<u8>, bool) {
        let complete = self.done.recv_timeout(settle).is_ok();
        let mut c = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut c.bytes), c.truncated || !complete)
    }
}

/// A private directory (mode 0700) for a tool's input and output files, removed with
/// everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
}

impl ScratchDir {
    /// A new directory under the system's temporary directory, named `<prefix><random>`.
    pub fn new(prefix: &str) -> Result<Self, HostIoError> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// A new directory under `parent`, named `<prefix><random>`.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self, HostIoError> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map(|dir| ScratchDir { dir })
            .map_err(HostIoError::io("creating a scratch directory in", parent))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to the file `name` in the directory (a plain name, no `/` or `..`) and
    /// returns its path.
    pub fn write(&self, name: impl AsRef<OsStr>, bytes: &[u8]) -> Result<PathBuf, HostIoError> {
        let name = Path::new(name.as_ref());
        let path = self.dir.path().join(name);
        let mut parts = name.components();
        if !matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None)) {
            return Err(HostIoError::refused(
                &path,
                "a scratch file name must be a plain file name",
            ));
        }
        fs::write(&path, bytes).map_err(HostIoError::io("writing scratch file", &path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> ToolCommand {
        ToolCommand::new("sh", timeout).args(["-c", script])
    }

    /// Whether `pid` is gone or a zombie (killed, not yet reaped by its new parent).
    fn dead(pid: &str) -> bool {
        let stat = Path::new("/proc").join(pid.trim()).join("stat");
        match fs::read_to_string(stat) {
            Err(_) => true,
            Ok(s) => s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn bare_names_are_found_in_the_callers_path() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = dir.path().join("mytool");
        fs::write(&tool, "#!/bin/sh\n").expect("tool");
        let plain = dir.path().join("plain");
        fs::write(&plain, "not executable").expect("plain");
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = std::env::join_paths(["relative/dir".into(), dir.path().to_path_buf()]).expect("path");
        assert_eq!(resolve_in(Path::new("mytool"), Some(&path)), Some(tool));
        assert_eq!(resolve_in(Path::new("plain"), Some(&path)), None, "not executable");
        assert_eq!(resolve_in(Path::new("nowhere"), Some(&path)), None);
        assert_eq!(
            resolve_in(Path::new("./mytool"), Some(&path)),
            Some(PathBuf::from("./mytool"))
        );
        assert!(
            resolve_in(Path::new("sh"), None).is_some_and(|p| p.is_absolute()),
            "SAFE_PATH when PATH is unset"
        );
    }

    #[test]
    fn a_program_found_in_path_keeps_the_name_it_was_given_as_argv0() {
        // Tools prefix their messages with argv[0] and callers parse them
        // (`apparmor_parser: Regex grouping error ...`); resolving the name in PATH must not
        // turn that prefix into `/usr/sbin/apparmor_parser: `.
        let out = ToolCommand::new("cat", Duration::from_secs(10))
            .arg("/proc/self/cmdline")
            .run()
            .expect("cat runs");
        assert_eq!(out.stdout, b"cat\0/proc/self/cmdline\0");
    }

    #[test]
    fn a_hung_program_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = ToolCommand::new("sleep", Duration::from_millis(200))
            .arg("30")
            .run()
            .expect_err("times out");
        assert!(err.is_timeout(), "{err}");
        assert_eq!(
            err.to_string(),
            "sleep did not finish within 200ms; its process group was killed"
        );
        // sleep dies on SIGTERM: no grace period is spent.
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn a_program_ignoring_sigterm_gets_sigkill_after_the_grace() {
        let started = Instant::now();
        let err = sh("trap '' TERM; sleep 30 & wait; wait", Duration::from_millis(200))
            .kill_grace(Duration::from_millis(300))
            .run()
            .expect_err("times out");
        assert!(err.is_timeout(), "{err}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(500), "the grace was skipped: {took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn the_forked_grandchild_dies_with_the_group() {
        let dir = ScratchDir::new("spo-run-test-").expect("scratch");
        let marker = dir.path().join("grandchild-pid");
        // A shell that forks a sleeping worker, as apparmor_parser forks its compilers; the
        // worker ignores SIGTERM, so only the group SIGKILL ends it.
        let script = format!("(trap '' TERM; exec sleep 30) & echo $! > {}; wait", marker.display());
        let err = sh(&script, Duration::from_millis(300))
            .kill_grace(Duration::from_millis(100))
            .run()
            .expect_err("times out");
        assert!(err.is_timeout(), "{err}");
        let pid = fs::read_to_string(&marker).expect("marker");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dead(&pid) {
            assert!(
                Instant::now() < deadline,
                "the forked worker {pid} survived the timeout"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_worker_left_behind_after_exit_is_killed_and_does_not_hold_the_run() {
        let dir = ScratchDir::new("spo-run-test-").expect("scratch");
        let marker = dir.path().join("worker-pid");
        // The worker keeps stdout open; without the group kill the run would wait for it.
        let script = format!("sleep 30 & echo $! > {}; echo done", marker.display());
        let started = Instant::now();
        let out = sh(&script, Duration::from_secs(20)).run().expect("runs");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(out.success());
        assert_eq!(out.stdout_text(), "done\n");
        let pid = fs::read_to_string(&marker).expect("marker");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dead(&pid) {
            assert!(Instant::now() < deadline, "the left-behind worker {pid} survived");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn much_output_on_both_pipes_is_bounded_without_deadlock() {
        // 4 MiB to each pipe, interleaved, far beyond a pipe's 64 KiB buffer.
        let script =
            "i=0; while [ $i -lt 64 ]; do head -c 65536 /dev/zero; head -c 65536 /dev/zero >&2; i=$((i+1)); done";
        let out = sh(script, Duration::from_secs(60))
            .output_limit(1 << 20)
            .run()
            .expect("runs");
        assert!(out.success());
        assert_eq!(out.stdout.len(), 1 << 20);
        assert_eq!(out.stderr.len(), 1 << 20);
        assert!(out.stdout_truncated && out.stderr_truncated);

        let small = sh("echo out; echo err >&2", Duration::from_secs(10))
            .run()
            .expect("runs");
        assert_eq!(
            (small.stdout_text().as_str(), small.stderr_text().as_str()),
            ("out\n", "err\n")
        );
        assert!(!small.stdout_truncated && !small.stderr_truncated);
    }

    #[test]
    fn stdin_is_passed_and_closed() {
        let input: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let out = ToolCommand::new("cat", Duration::from_secs(10))
            .stdin(input.clone())
            .run()
            .expect("runs");
        assert_eq!(out.stdout, input, "cat saw all of stdin and then its end");
        let none = ToolCommand::new("cat", Duration::from_secs(10)).run().expect("runs");
        assert!(none.stdout.is_empty(), "without input, stdin is /dev/null");
        // A program that does not read its input still finishes normally.
        let ignored = ToolCommand::new("true", Duration::from_secs(10))
            .stdin(input)
            .run()
            .expect("runs");
        assert!(ignored.success());
    }

    #[test]
    fn exit_codes_are_a_status_and_signals_an_error() {
        let out = sh("exit 7", Duration::from_secs(10)).run().expect("runs");
        assert_eq!(out.status.code(), Some(7));
        assert!(!out.success());
        let err = sh("echo dying >&2; kill -SEGV $$", Duration::from_secs(10))
            .run()
            .expect_err("signal");
        assert!(
            matches!(&err, HostIoError::Signaled { signal: 11, stderr, .. } if stderr == "dying"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "sh was killed by signal 11: dying");
    }

    #[test]
    fn a_missing_program_names_it() {
        let err = ToolCommand::new("/nonexistent/semodule", Duration::from_secs(1))
            .run()
            .expect_err("missing");
        assert!(matches!(&err, HostIoError::Spawn { source, .. } if source.kind() == ErrorKind::NotFound));
        assert_eq!(err.to_string(), "starting /nonexistent/semodule");
    }

    #[test]
    fn the_environment_is_minimal_unless_asked() {
        let out = ToolCommand::new("env", Duration::from_secs(10)).run().expect("runs");
        let mut vars: Vec<String> = out.stdout_text().lines().map(str::to_owned).collect();
        vars.sort();
        assert_eq!(vars, ["LC_ALL=C".to_owned(), format!("PATH={SAFE_PATH}")]);
        let out = ToolCommand::new("env", Duration::from_secs(10))
            .env("TMPDIR", "/x")
            .run()
            .expect("runs");
        assert!(out.stdout_text().contains("TMPDIR=/x\n"));
        let out = ToolCommand::new("env", Duration::from_secs(10))
            .inherit_env()
            .run()
            .expect("runs");
        let home = std::env::var("HOME").unwrap_or_default();
        assert!(
            home.is_empty() || out.stdout_text().contains(&format!("HOME={home}\n")),
            "{}",
            out.stdout_text()
        );
    }

    #[test]
    fn runs_in_the_scratch_dir_which_is_removed_on_drop() {
        let dir = ScratchDir::new("spo-run-test-").expect("scratch");
        let file = dir.write("input.cil", b"(x)").expect("write");
        assert_eq!(file, dir.path().join("input.cil"));
        for bad in ["../x", "a/b", "/etc/passwd", ""] {
            assert!(dir.write(bad, b"").is_err(), "{bad}");
        }
        let out = ToolCommand::new("cat", Duration::from_secs(10))
            .arg("input.cil")
            .current_dir(dir.path())
            .run()
            .expect("runs");
        assert_eq!(out.stdout, b"(x)");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
