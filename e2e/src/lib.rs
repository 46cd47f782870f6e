//! Helpers for the end-to-end tests: find the test apiserver and run `kubectl` against it.
//!
//! The apiserver is started by `scripts/test` (see `e2e/start-apiserver.sh`), which exports
//! `SPO_E2E_KUBECONFIG`. Without it the tests say `skipped: ...` on stderr, except in CI
//! (`CI` set), where a missing apiserver is a failure: nothing may be skipped there.

pub mod node;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The kubeconfig of the running test apiserver, or `None` (after saying why) when tests
/// should be skipped. Panics in CI, where skipping is not allowed.
pub fn kubeconfig(test: &str) -> Option<PathBuf> {
    match std::env::var_os("SPO_E2E_KUBECONFIG") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!("{test}: SPO_E2E_KUBECONFIG is not set in CI; run the suite through scripts/test")
        }
        None => {
            eprintln!("skipped: {test}: SPO_E2E_KUBECONFIG is not set (run scripts/test to start a real apiserver)");
            None
        }
    }
}

/// A `kubectl` bound to one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct Run {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Kubectl {
    /// Uses `kubeconfig`.
    pub fn new(kubeconfig: PathBuf) -> Self {
        Kubectl { kubeconfig }
    }

    /// Runs kubectl with `args`, feeding `stdin` when given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Run {
                    ok: false,
                    stdout: String::new(),
                    stderr: format!("starting kubectl: {e}"),
                };
            }
        };
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            if let Err(e) = pipe.write_all(input.as_bytes()) {
                return Run {
                    ok: false,
                    stdout: String::new(),
                    stderr: format!("writing to kubectl: {e}"),
                };
            }
        }
        match child.wait_with_output() {
            Ok(Output { status, stdout, stderr }) => Run {
                ok: status.success(),
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            },
            Err(e) => Run {
                ok: false,
                stdout: String::new(),
                stderr: format!("waiting for kubectl: {e}"),
            },
        }
    }

    /// Runs kubectl and returns stdout, panicking with both outputs on failure.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let r = self.run(args, stdin);
        assert!(r.ok, "kubectl {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        r.stdout
    }

    /// Applies the repository's CRDs (server side) and waits until they are served.
    pub fn install_crds(&self) {
        let crds = repo_root().join("deploy/crds");
        self.ok(
            &["apply", "--server-side", "-k", crds.to_str().expect("utf-8 path")],
            None,
        );
        self.ok(
            &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
            None,
        );
    }

    /// Merge-patches the SPOD `spod` in `namespace` (the manager creates it: retried until it
    /// exists, up to `timeout`).
    pub fn patch_spod(&self, namespace: &str, patch: &str, timeout: std::time::Duration) {
        eventually("patching the SPOD", timeout, || {
            let r = self.run(
                &["-n", namespace, "patch", "spod", "spod", "--type=merge", "-p", patch],
                None,
            );
            if r.ok { Ok(()) } else { Err(r.stderr) }
        });
    }

    /// Namespace `ns` with each of `labels` set to `'true'`, and what an earlier run on this
    /// cluster left in it removed: its pods (they would be taken for this run's) and its SPOD
    /// (which could switch a node part on at once; the manager makes a fresh default one).
    /// After a failed run, objects with finalizers may be left too: rerun on a fresh node then.
    pub fn fresh_namespace(&self, ns: &str, labels: &[&str]) {
        let labels: Vec<String> = labels.iter().map(|l| format!("{l}: 'true'")).collect();
        self.ok(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{{}}}\n",
                labels.join(", ")
            )),
        );
        self.ok(&["-n", ns, "delete", "pods", "--all", "--wait=true"], None);
        self.ok(&["-n", ns, "delete", "spod", "spod", "--ignore-not-found"], None);
        // Bindings and recordings an earlier, failed run left (a recording's finalizer is
        // released by no manager now).
        let _ = self.run(&["-n", ns, "delete", "profilebindings", "--all"], None);
        let left = self
            .run(&["-n", ns, "get", "profilerecordings", "-o", "name"], None)
            .stdout;
        for name in left.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.force_delete(Some(ns), name);
        }
        self.wait_default_service_account(ns);
    }

    /// Deletes `name` (`kind/name`, in `namespace` when given) without waiting and releases its
    /// finalizers, so nothing is left Terminating where no operator runs to release them. Gone
    /// already is fine.
    pub fn force_delete(&self, namespace: Option<&str>, name: &str) {
        let ns: Vec<&str> = namespace.map(|n| vec!["-n", n]).unwrap_or_default();
        let release = r#"{"metadata":{"finalizers":null}}"#;
        for args in [
            vec!["delete", name, "--wait=false", "--ignore-not-found"],
            vec!["patch", name, "--type=merge", "-p", release],
        ] {
            let all: Vec<&str> = ns.iter().copied().chain(args).collect();
            let _ = self.run(&all, None);
        }
    }

    /// [`Kubectl::force_delete`] for every cluster-scoped object of `what` whose name starts
    /// with `prefix`: a test's leftovers in a shared apiserver.
    pub fn purge(&self, what: &str, prefix: &str) {
        let names = self.ok(&["get", what, "-o", "name"], None);
        for name in names
            .lines()
            .map(str::trim)
            .filter(|l| l.split_once('/').is_some_and(|(_, n)| n.starts_with(prefix)))
        {
            self.force_delete(None, name);
        }
    }

    /// Waits until namespace `ns` has its `default` ServiceAccount, on a cluster whose
    /// controller-manager makes them (the e2e node's, where ServiceAccount admission refuses
    /// pods until it exists); on the bare apiserver (no `default/default`) it returns at once.
    pub fn wait_default_service_account(&self, ns: &str) {
        if !self
            .run(&["-n", "default", "get", "serviceaccount", "default"], None)
            .ok
        {
            return;
        }
        eventually(
            &format!("ServiceAccount {ns}/default"),
            std::time::Duration::from_secs(30),
            || {
                let r = self.run(&["-n", ns, "get", "serviceaccount", "default"], None);
                if r.ok { Ok(()) } else { Err(r.stderr) }
            },
        );
    }

    /// `kubectl get WHAT NAME -o json`, `None` when the object does not exist; any other
    /// failure panics.
    pub fn get(&self, what: &str, name: &str) -> Option<serde_json::Value> {
        let r = self.run(&["get", what, name, "-o", "json"], None);
        if r.ok {
            serde_json::from_str(&r.stdout).ok()
        } else {
            assert!(r.stderr.contains("NotFound"), "kubectl get {what} {name}: {}", r.stderr);
            None
        }
    }

    /// [`Kubectl::get`] of the namespaced object `namespace/name`.
    pub fn get_in(&self, namespace: &str, what: &str, name: &str) -> Option<serde_json::Value> {
        let r = self.run(&["-n", namespace, "get", what, name, "-o", "json"], None);
        if r.ok {
            serde_json::from_str(&r.stdout).ok()
        } else {
            assert!(
                r.stderr.contains("NotFound"),
                "kubectl -n {namespace} get {what} {name}: {}",
                r.stderr
            );
            None
        }
    }

    /// Runs kubectl and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args, None);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} printed invalid JSON ({e}):\n{out}"))
    }
}

/// Manager flags for tests: a 3 s lease, so a replica started after another was killed
/// takes over within seconds (production default: 15 s).
pub const FAST_LEASE: &[&str] = &["--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "1"];

/// Runs `cmd` (a project script or tool, named `what` in the failure), panics with its
/// standard output and error unless it succeeds, and returns its standard output.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// This machine's SELinux policy store (Debian's): tests copy it into private policy roots
/// and never write to it.
pub const SELINUX_SYSTEM_STORE: &str = "/var/lib/selinux/default";

/// The AppArmor features apparmor_parser compiles for (this kernel has no AppArmor to ask).
pub const APPARMOR_FEATURES: &str = "/usr/share/apparmor-features/features";

/// The directory holding refpolicy's container module and the shim (`container.cil`,
/// `shim.cil`) that nodes install beside our SELinux profiles: `$SPO_SELINUX_BASE`, else what
/// `scripts/selinux-base` builds; `None` when neither gives one.
pub fn selinux_base() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPO_SELINUX_BASE") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new(repo_root().join("scripts/selinux-base")).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Copies [`SELINUX_SYSTEM_STORE`] to `to`, the store directory of a private policy root
/// (`<root>/var/lib/selinux/default` for `semodule -p <root>`).
pub fn copy_selinux_store(to: &std::path::Path) {
    std::fs::create_dir_all(to.parent().expect("store parent")).expect("creating the store's parent");
    run_ok(
        "cp -a of the SELinux store",
        Command::new("cp").args(["-a", SELINUX_SYSTEM_STORE]).arg(to),
    );
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `spo-operator` binary of this workspace, built on first use when `cargo test` did not
/// build it already (`cargo test --workspace` does; `cargo test -p spo-e2e` alone does not).
/// Benches (a release directory) always run `cargo build --profile bench` first, a no-op when the
/// binary is fresh: `cargo bench -p spo-e2e` builds no binary of another package, and a stale
/// one would measure old code.
pub fn operator_binary() -> PathBuf {
    // `SPO_E2E_OPERATOR_BINARY`: another build or a wrapper (for example a heap profiler
    // running a glibc-allocator build, docs/benchmarks.md), used as it is, never built.
    if let Some(path) = std::env::var_os("SPO_E2E_OPERATOR_BINARY") {
        return PathBuf::from(path);
    }
    workspace_binary("spo-operator", "spo-operator")
}

/// The `spo-daemon` binary of this workspace (the node daemon alone, what the DaemonSet runs;
/// it takes [`daemon_flags`]), built as [`operator_binary`] is. `SPO_E2E_DAEMON_BINARY`: another
/// build or a wrapper, used as it is.
pub fn daemon_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SPO_E2E_DAEMON_BINARY") {
        return PathBuf::from(path);
    }
    workspace_binary("spo-operator", "spo-daemon")
}

/// The `spoc` binary of this workspace, built as [`operator_binary`] is.
pub fn spoc_binary() -> PathBuf {
    workspace_binary("spoc", "spoc")
}

/// Binary `bin` of workspace package `package`, next to the running test's profile directory.
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<bin>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let path = dir.join(bin);
    let release = dir.file_name().is_some_and(|n| n == "release");
    if release || !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--package", package, "--bin", bin]);
        if release {
            // The bench profile (it inherits release and builds into target/release):
            // `cargo bench` builds the dependencies with it, and a `--release` build here
            // shared their build-script outputs but not their libraries, so each of the two
            // re-ran ring's build script and rebuilt ring, rustls and kube for the other
            // (3-5 minutes every bench run).
            cmd.args(["--profile", "bench"]);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("running cargo build for {bin}: {e}"));
        assert!(status.success(), "building {bin} failed");
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The operator binary `bin` run against the apiserver of `kubeconfig`, logging at `rust_log`,
/// serving its endpoints on `metrics_addr` (`127.0.0.1:0` for any free port); the caller adds
/// the subcommand and its flags (see [`daemon_args`]).
pub fn operator_command(
    bin: &std::path::Path,
    kubeconfig: impl AsRef<std::ffi::OsStr>,
    rust_log: &str,
    metrics_addr: &str,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("KUBECONFIG", kubeconfig.as_ref())
        .env("RUST_LOG", rust_log)
        .args(["--metrics-addr", metrics_addr]);
    cmd
}

/// The operator's parts as host processes against one cluster: the release binary, one
/// kubeconfig and log filter, each part's output in `<dir>/<name>.log`, metrics on a free port.
#[derive(Debug)]
pub struct OperatorProcs {
    bin: PathBuf,
    kubeconfig: PathBuf,
    rust_log: String,
    dir: PathBuf,
}

impl OperatorProcs {
    /// Parts for the cluster of `kubeconfig`, logging with `rust_log` into `dir`.
    pub fn new(kubeconfig: &std::path::Path, rust_log: &str, dir: &std::path::Path) -> Self {
        OperatorProcs {
            bin: operator_binary(),
            kubeconfig: kubeconfig.to_owned(),
            rust_log: rust_log.to_owned(),
            dir: dir.to_owned(),
        }
    }

    /// Starts `spo-operator <args>` as `name`, its output appended to `<dir>/<name>.log`.
    pub fn spawn<I, S>(&self, name: &str, args: I) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = operator_command(&self.bin, &self.kubeconfig, &self.rust_log, "127.0.0.1:0");
        cmd.args(args);
        Proc::spawn(name, cmd, &self.dir.join(format!("{name}.log")))
    }
}

/// `daemon` for `node` in `namespace`, installing under `kubelet_dir` (`spo-operator`'s
/// subcommand and [`daemon_flags`]).
pub fn daemon_args(namespace: &str, node: &str, kubelet_dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["daemon".into()];
    args.extend(daemon_flags(namespace, node, kubelet_dir));
    args
}

/// The daemon's flags for `node` in `namespace`, installing under `kubelet_dir`, as
/// [`daemon_binary`] takes them.
pub fn daemon_flags(namespace: &str, node: &str, kubelet_dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["--namespace", namespace, "--node-name", node, "--kubelet-dir"]
        .into_iter()
        .map(Into::into)
        .collect();
    args.push(kubelet_dir.into());
    args
}

/// `webhook` in `namespace`, serving HTTPS on 127.0.0.1:`port` with its own CA, reached by the
/// apiserver at `https://127.0.0.1:<port>`.
pub fn webhook_args(namespace: &str, port: u16) -> Vec<String> {
    let address = format!("127.0.0.1:{port}");
    vec![
        "webhook".to_owned(),
        "--namespace".to_owned(),
        namespace.to_owned(),
        "--listen".to_owned(),
        address.clone(),
        "--endpoint".to_owned(),
        format!("https://{address}"),
        "--cert-names".to_owned(),
        "127.0.0.1".to_owned(),
    ]
}

/// `recorder` for `node`, the SPOD in `namespace`, writing under `kubelet_dir`.
pub fn recorder_args(namespace: &str, node: &str, kubelet_dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "recorder",
        "--namespace",
        namespace,
        "--node-name",
        node,
        "--kubelet-dir",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(kubelet_dir.into());
    args
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing test
/// leaves nothing running.
#[derive(Debug)]
pub struct Proc {
    child: std::process::Child,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &std::path::Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it (SIGKILL: no chance to clean up, like a crash or an OOM kill) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it with SIGTERM and waits up to `timeout` for it to exit; returns whether it
    /// exited on its own.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if !self.running() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 100 ms until it returns `Ok`, panicking with `what` and the last
/// reason after `timeout`.
pub fn eventually<T>(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = std::time::Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(reason) if start.elapsed() >= timeout => {
                panic!("{what}: not reached after {timeout:?}: {reason}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for test processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET http://127.0.0.1:<port><path>`: the status code and body, or `None` when nothing
/// answers within 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = std::time::Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of the sample `series` (name and labels exactly as exposed, such as
/// `x_total{reason="A"}`) in a Prometheus/OpenMetrics text body.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// An apiserver of a test's own (not the shared one), started with
/// `e2e/start-apiserver.sh` in a temporary state directory, so the test may kill, restart
/// or freeze it. Stopped when dropped.
#[derive(Debug)]
pub struct OwnApiserver {
    state: tempfile::TempDir,
}

impl OwnApiserver {
    /// Starts a new, empty cluster.
    pub fn start() -> OwnApiserver {
        let state = tempfile::Builder::new()
            .prefix("spo-e2e-own-")
            .tempdir()
            .expect("state dir");
        let a = OwnApiserver { state };
        a.run_start_script(false);
        a
    }

    fn run_start_script(&self, keep_data: bool) {
        run_ok(
            "e2e/start-apiserver.sh",
            Command::new(repo_root().join("e2e/start-apiserver.sh"))
                .arg(self.state.path())
                .env("SPO_E2E_KEEP_DATA", if keep_data { "1" } else { "0" })
                .stdin(Stdio::null()),
        );
    }

    /// The admin kubeconfig (the same file across restarts).
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.path().join("kubeconfig")
    }

    /// The apiserver's log of its current run.
    pub fn log(&self) -> PathBuf {
        self.state.path().join("apiserver.log")
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.state.path().join("apiserver.pid"))
            .ok()
            .map(|p| p.trim().to_owned())
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([sig, &pid]).status();
        }
    }

    /// Kills it (SIGKILL: a crash), then starts it again with its data, certificates and
    /// port kept, after `down` of downtime.
    pub fn crash_and_restart(&self, down: std::time::Duration) {
        self.signal("-KILL");
        std::thread::sleep(down);
        self.run_start_script(true);
    }

    /// Freezes it (SIGSTOP: connections are accepted by the kernel but nothing answers),
    /// as a hung apiserver.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen apiserver go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for OwnApiserver {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = Command::new(repo_root().join("e2e/stop-apiserver.sh"))
            .arg(self.state.path())
            .stdin(Stdio::null())
            .output();
    }
}

pub use spo_testkit::{rss_kib, rss_split_kib};

/// A TCP relay in front of an apiserver that can be frozen: while frozen, nothing passes in
/// either direction (bytes read are held, connections stay open), as a network partition
/// between one client and the apiserver looks to that client while others still reach it.
/// TLS passes through untouched. Stopped when dropped.
#[derive(Debug)]
pub struct FreezableProxy {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableProxy {
    /// Relays `127.0.0.1:<port>` to `target`.
    pub fn start(target: std::net::SocketAddr) -> FreezableProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy listener");
        let port = listener.local_addr().expect("proxy address").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let (f, s) = (frozen.clone(), stopped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (
                        from.try_clone().expect("clone stream"),
                        to.try_clone().expect("clone stream"),
                    );
                    let (f, s) = (f.clone(), s.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read as _, Write as _};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            while f.load(Ordering::SeqCst) && !s.load(Ordering::SeqCst) {
                                std::thread::sleep(std::time::Duration::from_millis(10));
                            }
                            if s.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        FreezableProxy { port, frozen, stopped }
    }

    /// Relays to the apiserver that `kubeconfig` names, and writes `<dir>/kubeconfig` that goes
    /// through the relay instead (same credentials; the server certificate still matches,
    /// since only the port changes).
    pub fn for_kubeconfig(kubeconfig: &std::path::Path, dir: &std::path::Path) -> (FreezableProxy, PathBuf) {
        let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .expect("a server: https://HOST:PORT line in the kubeconfig")
            .to_owned();
        let target: std::net::SocketAddr = server.parse().expect("server HOST:PORT");
        let proxy = FreezableProxy::start(target);
        let through = dir.join("kubeconfig");
        let rewritten = text.replace(
            &format!("server: https://{server}"),
            &format!("server: https://127.0.0.1:{}", proxy.port),
        );
        std::fs::write(&through, rewritten).expect("writing the relayed kubeconfig");
        (proxy, through)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops relaying (held, not dropped).
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Relays again, what was held first.
    pub fn thaw(&self) {
        self.frozen.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
