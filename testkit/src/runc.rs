//! OCI bundles with a static busybox rootfs, run by a real `runc`.
//!
//! A [`Bundle`] is a temp directory with `config.json` (from `runc spec`), `rootfs/bin/busybox`
//! with applet links, and a private runc state directory. [`Bundle::configure`] writes the
//! container's command and seccomp filter; [`Bundle::run`] runs it; [`Bundle::run_command`]
//! hands out the `runc run` command for callers that wrap it (a recorder).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one runc call may take before the test gives up on it (a container start takes
/// about 0.1 s here; the margin is for a loaded 2-core machine).
pub const RUNC_DEADLINE: Duration = Duration::from_secs(60);

/// Where the busybox-static package installs the binary copied into the rootfs.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Applets linked in the rootfs's /bin, so scripts can say `mkdir` rather than `busybox mkdir`.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "mkdir", "touch", "id", "true", "false", "uname", "wc", "chmod", "rm", "sleep", "seq",
    "httpd", "wget",
];

/// What a container needs, or why this machine cannot run one.
#[derive(Debug)]
pub struct Runtime {
    /// The runc binary.
    pub runc: PathBuf,
}

/// The runtime when this machine can run containers: root, runc, and a static busybox for
/// the bundle; otherwise why not.
pub fn runtime() -> Result<Runtime, String> {
    if effective_uid() != Some(0) {
        return Err("runc needs root".to_owned());
    }
    let runc = find_in_path("runc").ok_or("runc is not installed (Debian package runc)")?;
    static_elf(Path::new(HOST_BUSYBOX))?;
    Ok(Runtime { runc })
}

/// The runtime, or `None` after saying why the test is skipped. In CI nothing may be skipped.
pub fn require_runtime() -> Option<Runtime> {
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
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `name` in PATH or the sbin directories, as a regular file.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // sbin directories too: runc lives in /usr/sbin and a test's PATH may lack it.
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks that `path` is an ELF executable without a program interpreter: the rootfs holds
/// nothing but busybox, so a dynamically linked one could not start.
pub fn static_elf(path: &Path) -> Result<(), String> {
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
#[derive(Debug)]
pub struct Bundle {
    dir: tempfile::TempDir,
    /// The bundle directory (`config.json`, `rootfs/`).
    pub bundle: PathBuf,
    /// runc's state directory (`--root`).
    pub state: PathBuf,
    runc: PathBuf,
    base_config: Value,
}

/// What one `runc run` printed and how the container exited.
#[derive(Debug)]
pub struct RunOutput {
    /// How the command exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Bundle {
    /// A new bundle in a temp directory, removed when dropped.
    pub fn new(rt: &Runtime) -> Bundle {
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
            dir,
            bundle,
            state,
            runc: rt.runc.clone(),
            base_config,
        }
    }

    /// A scratch directory next to the bundle, removed with it.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `config.json` for a container running `args` under `seccomp` (OCI runtime JSON
    /// for `linux.seccomp`; none: runc's default, no filter).
    pub fn configure(&self, seccomp: Option<Value>, args: &[&str]) {
        let mut config = self.base_config.clone();
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        config["process"]["terminal"] = Value::Bool(false);
        // runc 1.1 installs the filter just before execve only with noNewPrivileges;
        // otherwise it installs it before dropping capabilities and the init would also need
        // capset, setgroups, setresuid and more.
        config["process"]["noNewPrivileges"] = Value::Bool(true);
        // Writable, so a failed mkdir means the filter said no, not EROFS.
        config["root"]["readonly"] = Value::Bool(false);
        if let Some(seccomp) = seccomp {
            config["linux"]["seccomp"] = seccomp;
        }
        let config_text = serde_json::to_vec_pretty(&config).expect("serialize config.json");
        std::fs::write(self.bundle.join("config.json"), config_text).expect("write config.json");
    }

    /// The `runc run` command for a new container of the configured bundle, and the guard that
    /// deletes that container when dropped.
    pub fn run_command(&self) -> (Command, Container<'_>) {
        self.new_container(&["run"])
    }

    /// `runc run --detach` for a new container of the configured bundle (runc returns once the
    /// container runs; stdio is the caller's to give), and the guard that deletes it when
    /// dropped.
    pub fn detached_command(&self) -> (Command, Container<'_>) {
        self.new_container(&["run", "--detach"])
    }

    /// `runc --root STATE <run_args> --bundle BUNDLE <new id>` and the guard for that id.
    fn new_container(&self, run_args: &[&str]) -> (Command, Container<'_>) {
        let container = Container {
            runc: &self.runc,
            state: &self.state,
            id: unique_id(),
        };
        let mut run = Command::new(&self.runc);
        run.arg("--root")
            .arg(&self.state)
            .args(run_args)
            .arg("--bundle")
            .arg(&self.bundle)
            .arg(&container.id);
        (run, container)
    }

    /// Runs `args` in a new container under `seccomp` and deletes the container afterwards
    /// whatever happened.
    pub fn run(&self, seccomp: Option<Value>, args: &[&str]) -> RunOutput {
        self.configure(seccomp, args);
        let (run, container) = self.run_command();
        run_with_deadline(run, &format!("runc run {} {args:?}", container.id))
    }
}

/// A container id unique across tests and test processes sharing the machine.
fn unique_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "spo-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes the container when dropped, also when the test panics or runc timed out (which
/// kills the container's processes and so closes the pipes the test reads).
#[derive(Debug)]
pub struct Container<'a> {
    runc: &'a Path,
    state: &'a Path,
    /// The container id.
    pub id: String,
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

/// Runs `cmd` as [`try_run_with_deadline`] does; panics naming `what` when it cannot.
pub fn run_with_deadline(cmd: Command, what: &str) -> RunOutput {
    match try_run_with_deadline(cmd) {
        Ok(out) => out,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Runs `cmd` with no stdin and captured output, killing it after [`RUNC_DEADLINE`].
pub fn try_run_with_deadline(mut cmd: Command) -> Result<RunOutput, String> {
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
