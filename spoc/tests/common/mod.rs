//! What every `spoc` CLI test needs: the real binary, run with arguments and optional input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the `spoc` binary built for this test with `args`, feeding `stdin` when given (the
/// pipe is closed either way, so a command reading input sees end of file).
#[allow(dead_code)] // record_caps runs spoc with its own environment
pub fn spoc(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spoc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spoc");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait spoc")
}

/// Whether this machine can record with eBPF (root and kernel BTF); says `skipped: ...` for
/// `test` when not, and panics in CI, where nothing may be skipped.
#[allow(dead_code)] // not every test file records
pub fn can_record(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    if root && btf {
        return true;
    }
    let why = if root { "no kernel BTF" } else { "not root" };
    assert!(
        std::env::var_os("CI").is_none(),
        "recording needs root and BTF in CI: {why}"
    );
    eprintln!("skipped: {test}: {why}");
    false
}

/// Starts `spoc args` in the background; sends `signal` to spoc alone (not to the command it
/// runs) once `ready` holds, and returns its output.
#[allow(dead_code)] // only the run and record tests send signals
pub fn signal_spoc(args: &[&str], signal: &str, ready: impl Fn() -> bool) -> Output {
    use std::time::{Duration, Instant};
    let child = Command::new(env!("CARGO_BIN_EXE_spoc"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spoc");
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the command never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give spoc a moment past the command's readiness to have its handlers in place.
    std::thread::sleep(Duration::from_millis(300));
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    child.wait_with_output().expect("wait spoc")
}

/// A finished command's status and output, for assertion messages.
#[allow(dead_code)] // not every test file shows whole outputs
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
