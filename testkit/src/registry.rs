//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on
//! 127.0.0.1, started by `e2e/start-registry.sh` with TLS from a CA of its own and htpasswd
//! auth. A registry without TLS or auth would let a client skip the parts that fail in
//! practice (trusting a CA, sending credentials, following the auth challenge), so tests talk
//! to one that demands both.
//!
//! Each [`Registry`] has its own temp directory (CA, certificates, password, storage) and
//! port, so tests running in parallel never share one; dropping it stops the process.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A running registry, stopped (`e2e/stop-registry.sh`) and its directory removed on drop.
pub struct Registry {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, the registry part of an image reference; the certificate is valid
    /// for this address (and `localhost`).
    pub host: String,
    /// The CA certificate (PEM) that signed the registry's certificate; no system trust store
    /// holds it, so a client that is not given it must fail TLS.
    pub ca: PathBuf,
    /// The one user the htpasswd file knows (`spo`).
    pub user: String,
    /// That user's password, random per registry so a test cannot pass on a guessed one.
    pub password: String,
}

// By hand rather than derived: a failing assertion that prints the registry must not print
// the password.
impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.dir.path())
            .field("host", &self.host)
            .field("ca", &self.ca)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The workspace root: the scripts live in `e2e/`, beside this crate.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script_output(out: &Output) -> String {
    format!(
        "{}{}{}",
        out.status,
        indent(&String::from_utf8_lossy(&out.stdout)),
        indent(&String::from_utf8_lossy(&out.stderr))
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("\n  {l}")).collect()
}

impl Registry {
    /// Starts a registry in a new temp directory. The error carries the script's output
    /// (the registry's last log lines when it died), because that is what explains a failure.
    pub fn start() -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("spo-registry-")
            .tempdir()
            .map_err(|e| format!("temp dir for the registry: {e}"))?;
        let script = repo_root().join("e2e/start-registry.sh");
        let out = Command::new(&script)
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            // Nothing to stop: the script stops a registry that did not get ready.
            return Err(format!("e2e/start-registry.sh failed: {}", script_output(&out)));
        }
        let (host, ca, user, password) = match read_env(&dir.path().join("registry.env")) {
            Ok(fields) => fields,
            Err(e) => {
                // The script said the registry is up: stop it before reporting.
                stop(dir.path());
                return Err(format!("{e} (e2e/start-registry.sh said: {})", script_output(&out)));
            }
        };
        Ok(Registry {
            dir,
            host,
            ca,
            user,
            password,
        })
    }

    /// A registry, or `None` after saying why the test is skipped: without `docker-registry`
    /// there is nothing to test against. Any other failure panics with the script's output,
    /// since a registry that is installed but does not start is a bug to see, not a skip. In
    /// CI (`CI` set) nothing may be skipped, as with [`crate::runc::require_runtime`].
    pub fn require() -> Option<Registry> {
        if crate::runc::find_in_path("docker-registry").is_none() {
            let reason = "docker-registry not installed (scripts/setup installs it)";
            if std::env::var_os("CI").is_some() {
                panic!("{reason}; CI is set, so this test may not be skipped");
            }
            eprintln!("skipped: {reason}");
            return None;
        }
        match Registry::start() {
            Ok(registry) => Some(registry),
            Err(e) => panic!("{e}"),
        }
    }

    /// A docker `config.json` with this registry's credentials
    /// (`{"auths":{"HOST":{"auth":"<base64 user:pass>"}}}`), for clients that read logins
    /// from a file rather than flags (`skopeo --authfile`, `oras --registry-config`; for
    /// `DOCKER_CONFIG`, which names a directory, copy it in as `config.json`).
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config.json")
    }

    /// The registry's state directory (`registry.log` for a failing test, `data/` for what
    /// a push stored), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Host, CA path, user and password from the `KEY=VALUE` lines of `registry.env`.
fn read_env(path: &Path) -> Result<(String, PathBuf, String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let env: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |key: &str| {
        env.get(key)
            .map(|v| (*v).to_owned())
            .ok_or_else(|| format!("{} lacks {key}", path.display()))
    };
    Ok((
        get("SPO_REGISTRY")?,
        PathBuf::from(get("SPO_REGISTRY_CA")?),
        get("SPO_REGISTRY_USER")?,
        get("SPO_REGISTRY_PASSWORD")?,
    ))
}

/// Runs `e2e/stop-registry.sh`; a failure is only reported: it runs from `drop`, where a
/// panic during unwinding would abort the test binary and hide the test's own failure.
fn stop(dir: &Path) {
    let result = Command::new(repo_root().join("e2e/stop-registry.sh"))
        .arg(dir)
        .stdin(Stdio::null())
        .output();
    match result {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!("e2e/stop-registry.sh failed: {}", script_output(&out)),
        Err(e) => eprintln!("running e2e/stop-registry.sh: {e}"),
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Before the fields drop: the TempDir is removed only once the process is gone.
        stop(self.dir.path());
    }
}
