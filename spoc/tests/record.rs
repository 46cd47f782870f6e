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

/// `spoc run` lists what the profile blocked, for the command and its children, from the
/// kernel's audit records.
#[test]
fn run_lists_the_calls_the_profile_blocked() {
    if !can_record("run_lists_the_calls_the_profile_blocked") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("deny-mkdir.yaml");
    std::fs::write(
        &profile,
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: deny-mkdir\n\
         spec:\n  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - names: [mkdir, mkdirat]\n    action: SCMP_ACT_ERRNO\n",
    )
    .expect("write profile");
    let target = dir.path().join("made");
    let script = format!("mkdir {0}; mkdir {0}; echo ran", target.display());
    let o = spoc(
        &["run", "-p", profile.to_str().expect("utf-8"), "--", "sh", "-c", &script],
        None,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    assert!(!target.exists(), "mkdir succeeded under the profile");
    assert!(
        stderr.contains("mkdir [SCMP_ARCH_X86_64] SCMP_ACT_ERRNO by /usr/bin/mkdir, 2 times"),
        "{stderr}"
    );

    // Nothing blocked: said so, and --no-violations says nothing.
    let o = spoc(&["run", "-p", profile.to_str().expect("utf-8"), "--", "true"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("blocked nothing"));
    let o = spoc(
        &[
            "run",
            "--no-violations",
            "-p",
            profile.to_str().expect("utf-8"),
            "--",
            "true",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

/// `spoc record -t apparmor` names files as the kernel (and so AppArmor) sees them: programs and
/// libraries by their real paths, the ELF interpreter included, and the profile compiles with
/// the real apparmor_parser.
#[cfg(target_arch = "x86_64")]
#[test]
fn recorded_apparmor_profile_names_real_paths_and_compiles() {
    if !can_record("recorded_apparmor_profile_names_real_paths_and_compiles") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("cat.yaml");
    let o = spoc(
        &[
            "record",
            "-t",
            "apparmor",
            "-o",
            profile.to_str().expect("utf-8"),
            "--",
            "/bin/sh",
            "-c",
            "cat /etc/hostname > /dev/null",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&profile).expect("profile written");
    let real = |p: &str| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .display()
            .to_string()
    };
    for needed in [
        real("/bin/sh"),
        real("/bin/cat"),
        real("/lib64/ld-linux-x86-64.so.2"),
        real("/lib/x86_64-linux-gnu/libc.so.6"),
        real("/etc/hostname"),
    ] {
        assert!(text.contains(&format!("- {needed}\n")), "{needed} missing from\n{text}");
    }
    let o = spoc(&["validate", "--deep", profile.to_str().expect("utf-8")], None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("compiled by apparmor_parser"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `spoc record --verify` runs the command again under the recorded profile: a command that
/// takes the same paths passes; one that takes a new path on its second run (here: an external
/// mkdir the recorded run skipped) fails, with the blocked calls listed from the audit records.
#[test]
fn record_verify_reruns_the_command_confined() {
    if !can_record("record_verify_reruns_the_command_confined") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("verified.yaml");
    let p = profile.to_str().expect("utf-8");
    let o = spoc(
        &["record", "--verify", "-o", p, "--", "/bin/sh", "-c", "echo same"],
        None,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "same\nsame\n",
        "the command ran twice"
    );
    assert!(
        stderr.contains("spoc: verify: the profile blocked nothing and it ended exit status: 0, as recorded"),
        "{stderr}"
    );

    // First run: the marker is missing, so it is made (no mkdir). Second run, confined: the
    // marker is there, so the script makes a directory, which the profile never saw.
    let marker = dir.path().join("marker");
    let made = dir.path().join("made");
    let script = format!(
        "if [ -e '{0}' ]; then mkdir '{1}'; else : > '{0}'; fi",
        marker.display(),
        made.display()
    );
    let o = spoc(&["record", "--verify", "-o", p, "--", "/bin/sh", "-c", &script], None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!made.exists(), "mkdir ran under a profile recorded without it");
    // The new path is blocked where it starts: dash forks for the external mkdir, which the
    // recorded run never did; each blocked call is listed from the audit records.
    assert!(stderr.contains("[SCMP_ARCH_X86_64] SCMP_ACT_ERRNO by "), "{stderr}");
    assert!(stderr.contains("spoc: verify: the profile blocked "), "{stderr}");
    assert!(!stderr.contains("blocked nothing"), "{stderr}");
    assert!(
        stderr.contains("where the recorded run ended exit status: 0"),
        "mkdir failed, so the script's status changed too: {stderr}"
    );
}
