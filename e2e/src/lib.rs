//! Helpers for the end-to-end tests: find the test apiserver and run `kubectl` against it.
//!
//! The apiserver is started by `scripts/test` (see `e2e/start-apiserver.sh`), which exports
//! `SPO_E2E_KUBECONFIG`. Without it the tests say `skipped: ...` on stderr, except in CI
//! (`CI` set), where a missing apiserver is a failure: nothing may be skipped there.

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

    /// Runs kubectl and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args, None);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} printed invalid JSON ({e}):\n{out}"))
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
