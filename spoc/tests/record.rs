//! The main job end to end on the real kernel: `spoc record` a program with eBPF, then
//! `spoc run` it confined by the recorded profile. Needs root and BTF.

mod common;
use common::{can_record, spoc};

#[test]
fn record_then_run_confined() {
    if !can_record("record_then_run_confined") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("sample.yaml");
    let sample = ["/bin/sh", "-c", "echo recorded; ls / > /dev/null"];
    let mut args = vec!["record", "-o", profile.to_str().expect("utf-8"), "--"];
    args.extend(sample);
    let o = spoc(&args, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "recorded\n");
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains("distinct syscalls"), "{summary}");
    let text = std::fs::read_to_string(&profile).expect("profile written");
    for needed in ["execve", "exit_group", "write"] {
        assert!(text.contains(&format!("- {needed}\n")), "{needed} missing from\n{text}");
    }
    assert!(!text.contains("- mkdir\n"), "{text}");

    let p = profile.to_str().expect("utf-8");
    let mut args = vec!["run", "-p", p, "--"];
    args.extend(["/bin/sh", "-c", "echo confined; ls / > /dev/null"]);
    let o = spoc(&args, None);
    assert!(
        o.status.success(),
        "the recorded profile must let the program run: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "confined\n");

    let target = dir.path().join("not-allowed");
    let script = format!("mkdir '{}'", target.display());
    let o = spoc(&["run", "-p", p, "--", "/bin/sh", "-c", &script], None);
    assert!(!o.status.success());
    assert!(
        !target.exists(),
        "mkdir was never recorded, so the profile must refuse it"
    );
}
