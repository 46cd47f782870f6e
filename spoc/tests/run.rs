//! `spoc run` as a user runs it, against the real kernel: signals, exit codes, architectures,
//! the report (text and JSON) and what it prints of hostile program names.

mod common;

use common::{can_record, signal_spoc, spoc};

const HEAD: &str =
    "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: t}\nspec:\n";

fn profile(dir: &std::path::Path, spec: &str) -> String {
    let p = dir.join("p.yaml");
    std::fs::write(&p, format!("{HEAD}{spec}")).expect("write profile");
    p.to_str().expect("utf-8").to_owned()
}

#[test]
fn signals_reach_the_command_and_spoc_exits_with_its_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = profile(
        dir.path(),
        "  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - {names: [mkdir, mkdirat], action: SCMP_ACT_ERRNO}\n",
    );
    for (signal, code) in [("TERM", 143), ("HUP", 129), ("INT", 130)] {
        let ready = dir.path().join(format!("ready-{signal}"));
        let script = format!("echo $$ > '{}'; exec sleep 30", ready.display());
        let o = signal_spoc(&["run", "-p", &p, "--", "sh", "-c", &script], signal, || {
            std::fs::read_to_string(&ready).is_ok_and(|s| s.ends_with('\n'))
        });
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(stderr.contains(&format!("received SIG{signal}")), "{stderr}");
        let pid = std::fs::read_to_string(&ready).expect("pid");
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "the command was left running"
        );
        if can_record("signals_reach_the_command_and_spoc_exits_with_its_status (report)") {
            assert!(stderr.contains("the profile blocked nothing"), "{stderr}");
        }
    }
}

#[test]
fn exit_codes_tell_the_command_from_spoc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = profile(dir.path(), "  defaultAction: SCMP_ACT_ALLOW\n");
    let o = spoc(&["run", "-p", &p, "--", "sh", "-c", "exit 3"], None);
    assert_eq!(o.status.code(), Some(3));
    let o = spoc(&["run", "-p", &p, "--", "no-such-command-spoc"], None);
    assert_eq!(o.status.code(), Some(127), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("command not found"));
    let o = spoc(&["run", "-p", "/nonexistent/p.yaml", "--", "true"], None);
    assert_eq!(o.status.code(), Some(125));

    // A profile that refuses execve: the command never starts, and spoc says so instead of
    // reporting a SIGSYS death and calls of its own.
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_ERRNO"] {
        let p = profile(
            dir.path(),
            &format!("  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - {{names: [execve], action: {action}}}\n"),
        );
        let o = spoc(&["run", "-p", &p, "--", "true"], None);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(126), "{action}: {stderr}");
        assert!(stderr.contains("never started: the profile refuses execve"), "{stderr}");
        assert!(!stderr.contains("SIGSYS") && !stderr.contains(" by "), "{stderr}");
    }
}

/// runc keeps the native architecture in every filter (libseccomp does): a profile listing only
/// SCMP_ARCH_X86 applies its rules to x86-64 programs instead of killing them.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_native_architecture_is_kept_as_runc_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = profile(
        dir.path(),
        "  defaultAction: SCMP_ACT_ALLOW\n  architectures: [SCMP_ARCH_X86]\n  syscalls:\n  \
         - {names: [mkdir, mkdirat, stime, vm86, vm86old], action: SCMP_ACT_ERRNO}\n",
    );
    let o = spoc(&["run", "--no-violations", "-p", &p, "--", "/bin/true"], None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let made = dir.path().join("made");
    let o = spoc(
        &[
            "run",
            "--no-violations",
            "-p",
            &p,
            "--",
            "mkdir",
            made.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(!made.exists(), "the profile's rules apply to the native architecture");
}

/// SCMP_ACT_LOG lets the call through: reported as logged, not blocked; the JSON report says
/// the same and parses.
#[test]
fn logged_calls_are_not_reported_as_blocked_and_json_parses() {
    if !can_record("logged_calls_are_not_reported_as_blocked_and_json_parses") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = profile(
        dir.path(),
        "  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - {names: [mkdir, mkdirat], action: SCMP_ACT_LOG}\n  \
         - {names: [rmdir], action: SCMP_ACT_ERRNO}\n",
    );
    let made = dir.path().join("made");
    let script = format!("mkdir '{0}'; rmdir '{0}'; exit 4", made.display());
    let o = spoc(&["run", "-p", &p, "--", "sh", "-c", &script], None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(made.exists(), "LOG lets mkdir through");
    assert!(
        stderr.contains("logged them (SCMP_ACT_LOG):\n  mkdir [SCMP_ARCH_X86_64] SCMP_ACT_LOG by /usr/bin/mkdir"),
        "{stderr}"
    );
    assert!(
        stderr.contains("blocked these calls of sh:\n  rmdir [SCMP_ARCH_X86_64] SCMP_ACT_ERRNO by /usr/bin/rmdir\n"),
        "{stderr}"
    );

    std::fs::remove_dir(&made).expect("rmdir");
    let report = dir.path().join("report.json");
    let r = report.to_str().expect("utf-8");
    let o = spoc(
        &["run", "-p", &p, "--format", "json", "-o", r, "--", "sh", "-c", &script],
        None,
    );
    assert_eq!(o.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    assert_eq!(v["exit_status"], 4);
    assert_eq!(v["exit_code"], 4);
    assert_eq!(v["started"], true);
    assert_eq!(v["audit_read"], true);
    assert_eq!(v["profile"], "t");
    assert_eq!(v["logged"][0]["syscall"], "mkdir");
    assert_eq!(v["logged"][0]["action"], "SCMP_ACT_LOG");
    assert_eq!(v["blocked"][0]["syscall"], "rmdir");
    assert_eq!(v["blocked"][0]["program"], "/usr/bin/rmdir");
    assert_eq!(v["blocked"][0]["count"], 1);
    // -o /dev/null is written into, not replaced.
    let o = spoc(
        &["run", "-p", &p, "--format", "json", "-o", "/dev/null", "--", "true"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata("/dev/null").is_ok_and(|m| !m.is_file()));
}

/// A program whose name holds a newline and an escape sequence cannot forge spoc's lines.
#[test]
fn hostile_program_names_are_escaped() {
    if !can_record("hostile_program_names_are_escaped") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = profile(
        dir.path(),
        "  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - {names: [mkdir, mkdirat], action: SCMP_ACT_ERRNO}\n",
    );
    let evil = dir.path().join("evil\nspoc: the profile blocked nothing\x1b[2J");
    std::fs::copy("/usr/bin/mkdir", &evil).expect("copy mkdir");
    let target = dir.path().join("made");
    let o = spoc(
        &[
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            // The program's own complaint (which names it) is not spoc's to escape.
            "exec \"$0\" \"$1\" 2>/dev/null",
            evil.to_str().expect("utf-8"),
            target.to_str().expect("utf-8"),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("spoc: the profile blocked nothing")),
        "{stderr:?}"
    );
    assert!(
        stderr.contains("evil\\nspoc: the profile blocked nothing\\x1b[2J"),
        "{stderr:?}"
    );
}
