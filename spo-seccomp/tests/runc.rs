//! Profiles we render, enforced by a real container runtime: each test builds an OCI bundle
//! with a static busybox rootfs, puts our node JSON (`render_node_json`) at `linux.seccomp` of
//! `config.json`, and runs it with `runc run`. runc parses the JSON, builds the filter with
//! libseccomp and installs it, so these tests catch a node file runc refuses as well as one it
//! accepts but enforces differently from what the profile says.
//!
//! Needs root, `runc` and a static `/bin/busybox` (Debian's `busybox-static`); without them
//! each test says `skipped: <reason>`, except in CI (`CI` set), where it fails instead.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use spo_model::seccomp::{SeccompAction, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::oci::render_node_json;

/// How long one runc call may take before the test gives up on it (a container start takes
/// about 0.1 s here; the margin is for a loaded 2-core machine).
const RUNC_DEADLINE: Duration = Duration::from_secs(60);

/// Where the busybox-static package installs the binary copied into the rootfs.
const HOST_BUSYBOX: &str = "/bin/busybox";

/// Applets linked in the rootfs's /bin, so scripts can say `mkdir` rather than `busybox mkdir`.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "mkdir", "touch", "id", "true", "false", "uname", "wc", "chmod",
];

/// The allow list for a busybox container under runc 1.1, found by running the containers of
/// these tests with `defaultAction: SCMP_ACT_LOG` and reading the `type=1326` (SECCOMP) records
/// that runc's init and busybox left in the kernel log. Grouped by who makes the calls.
///
/// runc 1.1 with `noNewPrivileges` installs the filter as late as it can, so its init still
/// runs under it: it marks the fds it inherited close-on-exec by listing `/proc/self/fd`,
/// writes to the exec fifo, and calls execve.
const RUNC_INIT_AFTER_FILTER: &[&str] = &[
    "openat",
    "getdents64",
    "fstatfs",
    "close",
    "epoll_ctl",
    "write",
    "getpid",
    "execve",
];

/// runc's init is a Go program and libseccomp installs the filter on all its threads (TSYNC).
/// `futex` and `rt_sigreturn` were seen; the rest is what the Go scheduler, its preemption
/// signals and its memory manager may do at any moment, allowed so that the test does not
/// fail one run in a hundred on a busy machine.
const GO_RUNTIME: &[&str] = &[
    "futex",
    "rt_sigreturn",
    "rt_sigprocmask",
    "sigaltstack",
    "sched_yield",
    "nanosleep",
    "mmap",
    "munmap",
    "madvise",
    "gettid",
    "tgkill",
    "epoll_pwait",
    "clone",
    "exit",
];

/// A static busybox starting up and running `echo` or `true`.
const BUSYBOX: &[&str] = &[
    "execve",
    "brk",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "readlink",
    "getrandom",
    "mprotect",
    "prctl",
    "getuid",
    "write",
    "exit_group",
];

/// busybox `sh -c` running a script whose applets it forks (without exec) and waits for.
const BUSYBOX_SH: &[&str] = &[
    "rt_sigaction",
    "rt_sigreturn",
    "getpid",
    "getppid",
    "uname",
    "getcwd",
    "clone",
    "wait4",
];

/// What a container needs, or why this machine cannot run one.
struct Runtime {
    runc: PathBuf,
}

fn runtime() -> Result<Runtime, String> {
    if effective_uid() != Some(0) {
        return Err("runc needs root".to_owned());
    }
    let runc = find_in_path("runc").ok_or("runc is not installed (Debian package runc)")?;
    static_elf(Path::new(HOST_BUSYBOX))?;
    Ok(Runtime { runc })
}

/// The runtime, or `None` after saying why the test is skipped. In CI nothing may be skipped.
fn require_runtime() -> Option<Runtime> {
    match runtime() {
        Ok(rt) => Some(rt),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("{reason}; CI is set, so this test may not be skipped")
        }
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// The effective uid, from `/proc/self/status` (`Uid:` real, effective, saved, fs).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // sbin directories too: runc lives in /usr/sbin and a test's PATH may lack it.
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks that `path` is an ELF executable without a program interpreter: the rootfs holds
/// nothing but busybox, so a dynamically linked one could not start.
fn static_elf(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e} (Debian package busybox-static)", path.display()))?;
    let u16_at = |off: usize| bytes.get(off..off + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |off: usize| {
        bytes
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |off: usize| {
        bytes
            .get(off..off + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return Err(format!("{} is not a 64-bit ELF file", path.display()));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return Err(format!("{} has a truncated ELF header", path.display()));
    };
    const PT_INTERP: u32 = 3;
    let dynamic =
        (0..usize::from(phnum)).any(|i| u32_at(phoff as usize + i * usize::from(phentsize)) == Some(PT_INTERP));
    if dynamic {
        return Err(format!(
            "{} is dynamically linked; install busybox-static",
            path.display()
        ));
    }
    Ok(())
}

/// A bundle directory (`config.json` from `runc spec`, `rootfs/bin/busybox` and its applet
/// links) and a private runc state directory, both removed with the tempdir.
struct Bundle {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    state: PathBuf,
    runc: PathBuf,
    base_config: Value,
}

/// What one `runc run` printed and how the container exited.
#[derive(Debug)]
struct RunOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Bundle {
    fn new(rt: &Runtime) -> Bundle {
        let dir = tempfile::tempdir().expect("temp dir");
        let bundle = dir.path().join("bundle");
        let state = dir.path().join("state");
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("rootfs/bin");
        std::fs::create_dir_all(&state).expect("runc state dir");
        std::fs::copy(HOST_BUSYBOX, bin.join("busybox")).expect("copy busybox into the rootfs");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
        let mut spec = Command::new(&rt.runc);
        spec.arg("spec").current_dir(&bundle);
        let out = run_with_deadline(spec, "runc spec");
        assert!(out.status.success(), "runc spec failed: {out:?}");
        let text = std::fs::read(bundle.join("config.json")).expect("config.json from runc spec");
        let base_config = serde_json::from_slice(&text).expect("config.json is JSON");
        Bundle {
            _dir: dir,
            bundle,
            state,
            runc: rt.runc.clone(),
            base_config,
        }
    }

    /// Runs `args` in a new container under `profile` (none: runc's default, no filter), and
    /// deletes the container afterwards whatever happened.
    fn run(&self, profile: Option<&SeccompProfileSpec>, args: &[&str]) -> RunOutput {
        let mut config = self.base_config.clone();
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        config["process"]["terminal"] = Value::Bool(false);
        // runc 1.1 installs the filter just before execve only with noNewPrivileges (the
        // allow list above relies on that); otherwise it installs it before dropping
        // capabilities and the init would also need capset, setgroups, setresuid and more.
        config["process"]["noNewPrivileges"] = Value::Bool(true);
        // Writable, so a failed mkdir means the filter said no, not EROFS.
        config["root"]["readonly"] = Value::Bool(false);
        if let Some(profile) = profile {
            let node_json = render_node_json(profile).expect("render node JSON");
            config["linux"]["seccomp"] = serde_json::from_slice(&node_json).expect("node JSON is JSON");
        }
        let config_text = serde_json::to_vec_pretty(&config).expect("serialize config.json");
        std::fs::write(self.bundle.join("config.json"), config_text).expect("write config.json");

        let container = Container {
            runc: &self.runc,
            state: &self.state,
            id: unique_id(),
        };
        let mut run = Command::new(&self.runc);
        run.arg("--root")
            .arg(&self.state)
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(&container.id);
        run_with_deadline(run, &format!("runc run {}", container.id))
    }
}

/// A container id unique across tests and test processes sharing the machine.
fn unique_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "spo-seccomp-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes the container when dropped, also when the test panics or runc timed out (which
/// kills the container's processes and so closes the pipes the test reads).
struct Container<'a> {
    runc: &'a Path,
    state: &'a Path,
    id: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let mut delete = Command::new(self.runc);
        delete
            .arg("--root")
            .arg(self.state)
            .args(["delete", "-f"])
            .arg(&self.id);
        // Ignored: after a normal run the container is already gone and runc says so.
        let _ = try_run_with_deadline(delete);
    }
}

fn run_with_deadline(cmd: Command, what: &str) -> RunOutput {
    match try_run_with_deadline(cmd) {
        Ok(out) => out,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Runs `cmd` with no stdin and captured output, killing it after [`RUNC_DEADLINE`].
fn try_run_with_deadline(mut cmd: Command) -> Result<RunOutput, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    // Read both pipes while waiting, so a chatty child cannot block on a full pipe.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + RUNC_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("waiting: {e}"))? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // The readers are left behind: the container may still hold the pipes until
            // the caller's `delete -f` kills it.
            return Err(format!("still running after {RUNC_DEADLINE:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(RunOutput {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    })
}

fn profile(default_action: SeccompAction, rules: Vec<SeccompSyscall>) -> SeccompProfileSpec {
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action,
        architectures: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(rules),
        flags: None,
        base_profile_name: None,
    }
}

fn rule(
    names: impl IntoIterator<Item = impl Into<String>>,
    action: SeccompAction,
    errno_ret: Option<i64>,
) -> SeccompSyscall {
    SeccompSyscall {
        names: names.into_iter().map(Into::into).collect(),
        action,
        errno_ret,
        args: None,
    }
}

/// The busybox allow list: every group above, each name once.
fn busybox_allow_list() -> Vec<&'static str> {
    let mut names: Vec<&str> = [RUNC_INIT_AFTER_FILTER, GO_RUNTIME, BUSYBOX, BUSYBOX_SH].concat();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn permissive_profile_denies_only_mkdir() {
    let Some(rt) = require_runtime() else { return };
    let bundle = Bundle::new(&rt);
    let deny_mkdir = profile(
        SeccompAction::Allow,
        vec![rule(["mkdir", "mkdirat"], SeccompAction::Errno, Some(1))],
    );

    let out = bundle.run(Some(&deny_mkdir), &["busybox", "sh", "-c", "echo hello; mkdir /x"]);
    assert!(
        out.stdout.contains("hello"),
        "runc refused the profile or the shell did not run: {out:?}"
    );
    assert!(!out.status.success(), "mkdir succeeded under the profile: {out:?}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir failed for another reason than EPERM: {out:?}"
    );

    let out = bundle.run(Some(&deny_mkdir), &["busybox", "true"]);
    assert!(out.status.success(), "busybox true failed: {out:?}");

    // The control: the same mkdir without a profile works, so the EPERM above is the filter's.
    let out = bundle.run(None, &["busybox", "sh", "-c", "mkdir /y && echo made"]);
    assert!(
        out.status.success() && out.stdout.contains("made"),
        "mkdir fails even without a profile: {out:?}"
    );
}

#[test]
fn allow_list_profile_runs_busybox_and_denies_the_rest() {
    let Some(rt) = require_runtime() else { return };
    let bundle = Bundle::new(&rt);
    let allow_list = profile(
        SeccompAction::Errno,
        vec![rule(busybox_allow_list(), SeccompAction::Allow, None)],
    );
    assert!(
        !busybox_allow_list().iter().any(|n| n.starts_with("mkdir")),
        "the allow list must leave mkdir out for this test to mean anything"
    );

    let out = bundle.run(Some(&allow_list), &["busybox", "echo", "ok"]);
    assert!(
        out.status.success() && out.stdout == "ok\n",
        "busybox echo under the allow list: {out:?}"
    );

    let out = bundle.run(Some(&allow_list), &["busybox", "mkdir", "/x"]);
    assert!(!out.status.success(), "mkdir succeeded under the allow list: {out:?}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir failed for another reason than EPERM: {out:?}"
    );

    // A shell forking applets works too; only the mkdir in it is refused.
    let script = r#"echo before; mkdir /x; echo "mkdir status $?""#;
    let out = bundle.run(Some(&allow_list), &["busybox", "sh", "-c", script]);
    assert!(
        out.status.success() && out.stdout == "before\nmkdir status 1\n",
        "shell under the allow list: {out:?}"
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir in the shell failed for another reason than EPERM: {out:?}"
    );
}
