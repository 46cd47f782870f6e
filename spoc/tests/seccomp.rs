//! `spoc compile` and `spoc run` as a user runs them, against the real kernel.

mod common;
use common::spoc;

const PROFILE: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: deny-mkdir}
spec:
  defaultAction: SCMP_ACT_ALLOW
  syscalls:
  - {names: [mkdir, mkdirat], action: SCMP_ACT_ERRNO, errnoRet: 13}
  - {names: [uname], action: SCMP_ACT_KILL_PROCESS}
";

#[test]
fn compile_prints_disassembly_and_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, PROFILE).expect("write");
    let o = spoc(&["compile", p.to_str().expect("utf-8")], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("ld   arch"), "{text}");
    assert!(text.contains("ret  ERRNO(13)"), "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("instructions, longest path")),
        "{text}"
    );
}

#[test]
fn run_confines_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, PROFILE).expect("write");
    let target = dir.path().join("made");
    let o = spoc(
        &[
            "run",
            "-p",
            p.to_str().expect("utf-8"),
            "--",
            "mkdir",
            target.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!target.exists());
    let o = spoc(
        &["run", "-p", p.to_str().expect("utf-8"), "--", "echo", "confined"],
        None,
    );
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "confined\n");
    let o = spoc(&["run", "-p", p.to_str().expect("utf-8"), "--", "uname"], None);
    assert_eq!(o.status.code(), Some(128 + 31), "SIGSYS from KILL_PROCESS");
    assert!(String::from_utf8_lossy(&o.stderr).contains("SIGSYS"));
}

#[test]
fn run_refuses_invalid_profiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, PROFILE.replace("uname", "unmae")).expect("write");
    let o = spoc(&["run", "-p", p.to_str().expect("utf-8"), "--", "true"], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unmae"), "{err}");
}
