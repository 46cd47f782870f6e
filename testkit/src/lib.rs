//! Test scaffolding shared by the workspace's integration tests (never published): real
//! containers with runc, and a real OCI registry ([`registry::Registry`]). Each crate's tests
//! used to carry their own copy of this.
//!
//! Tests that need root, `runc` and a static busybox call [`runc::require_runtime`], which says
//! `skipped: <reason>` when they are missing, except in CI (`CI` set), where it panics: nothing
//! may be skipped there.

pub mod registry;
pub mod runc;

/// The machine a benchmark ran on, as one line: kernel, CPU model, cores, load average and
/// `kernel.bpf_stats_enabled` (with it on, every BPF program run also reads the clock twice).
/// Benches print it so their figures say where they came from.
pub fn machine() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|e| format!("unreadable ({e})"))
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!(
        "kernel {}, {cpu}, {} cores, load average {}, kernel.bpf_stats_enabled = {}",
        read("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        read("/proc/sys/kernel/bpf_stats_enabled")
    )
}

/// Two fields of `/proc/<pid>/status` in KiB (0 when unreadable).
fn status_kib(pid: u32, [a, b]: [&str; 2]) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field(a), field(b))
}

/// `(VmRSS, VmHWM)` of process `pid` in KiB (0 when unreadable), for the benches.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    status_kib(pid, ["VmRSS:", "VmHWM:"])
}

/// `(RssAnon, RssFile)` of process `pid` in KiB (0 when unreadable): the process's own memory
/// and the pages of its binary and libraries mapped from the page cache, which VmRSS adds up.
pub fn rss_split_kib(pid: u32) -> (u64, u64) {
    status_kib(pid, ["RssAnon:", "RssFile:"])
}

/// A P-256 key pair made by openssl in `dir`, as a user makes one for `spoc push --sign-key`
/// and `--verify-key`: `(NAME.key, NAME.pub)`, a PEM PKCS#8 private key and a PEM
/// SubjectPublicKeyInfo public key (what cosign calls `cosign.pub`). Panics with openssl's
/// message when it fails.
pub fn openssl_p256_keys(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running openssl: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    run(&[
        os("genpkey"),
        os("-algorithm"),
        os("EC"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:P-256"),
        os("-out"),
        private.as_os_str(),
    ]);
    run(&[
        os("pkey"),
        os("-in"),
        private.as_os_str(),
        os("-pubout"),
        os("-out"),
        public.as_os_str(),
    ]);
    (private, public)
}
