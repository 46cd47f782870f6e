//! The main job end to end on the real kernel: `spoc record` a program with eBPF, then
//! `spoc run` it confined by the recorded profile. Needs root and BTF.

mod common;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{can_record, signal_spoc, spoc};

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
    assert_eq!(o.status.code(), Some(2), "a failed verification exits 2: {stderr}");
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

/// SIGTERM to spoc is passed on to the recorded command: the profile is written and the
/// command is not left behind. SIGINT during --verify is an interruption (130).
#[test]
fn record_passes_sigterm_on_and_verify_can_be_interrupted() {
    if !can_record("record_passes_sigterm_on_and_verify_can_be_interrupted") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("sleep.yaml");
    let ready = dir.path().join("pid");
    let script = format!("echo $$ > '{}'; exec sleep 60", ready.display());
    let p = profile.to_str().expect("utf-8");
    let o = signal_spoc(&["record", "-o", p, "--", "sh", "-c", &script], "TERM", || {
        std::fs::read_to_string(&ready).is_ok_and(|s| s.ends_with('\n'))
    });
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stopping on request is not a failure: {stderr}"
    );
    assert!(stderr.contains("killed by SIGTERM"), "{stderr}");
    let pid = std::fs::read_to_string(&ready).expect("pid");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "command orphaned"
    );
    assert!(
        std::fs::read_to_string(&profile)
            .expect("profile")
            .contains("- execve\n")
    );

    // The recorded run makes the marker; the verifying run spins (no syscall) until SIGINT.
    let marker = dir.path().join("marker");
    let script = format!(
        "if [ -e '{0}' ]; then while :; do :; done; else : > '{0}'; fi",
        marker.display()
    );
    let started = Instant::now();
    let o = signal_spoc(
        &["record", "--verify", "-o", p, "--", "sh", "-c", &script],
        "INT",
        || marker.exists() && started.elapsed() > Duration::from_secs(1),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("spoc: verify: interrupted by SIGINT"), "{stderr}");
    assert!(!stderr.contains("behaves differently"), "{stderr}");
}

/// A failing command still gets its profile; spoc says so and exits 1 unless
/// --allow-failure.
#[test]
fn record_reports_a_failed_command() {
    if !can_record("record_reports_a_failed_command") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("fails.yaml");
    let p = profile.to_str().expect("utf-8");
    let o = spoc(&["record", "-o", p, "--", "sh", "-c", "exit 3"], None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed (exit status: 3)"), "{stderr}");
    assert!(profile.exists());
    let o = spoc(
        &["record", "--allow-failure", "-o", p, "--", "sh", "-c", "exit 3"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let o = spoc(&["record", "-o", p, "--", "no-such-command-spoc"], None);
    assert_eq!(o.status.code(), Some(127));
}

/// Arguments are checked before anything runs; selectors naming nothing are refused.
#[test]
fn record_checks_its_arguments_before_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let script = format!(": > '{}'", marker.display());
    let good = dir.path().join("p.yaml");
    let good = good.to_str().expect("utf-8");
    let missing_dir = dir.path().join("no/such/dir/p.yaml");
    let is_dir = dir.path().to_str().expect("utf-8");
    let cases: Vec<Vec<&str>> = vec![
        vec!["record", "--name", "Not_A_Name", "-o", good, "--", "sh", "-c", &script],
        vec![
            "record",
            "-o",
            missing_dir.to_str().expect("utf-8"),
            "--",
            "sh",
            "-c",
            &script,
        ],
        vec!["record", "-o", is_dir, "--", "sh", "-c", &script],
        vec!["record", "-t", "all", "--", "sh", "-c", &script],
        vec!["record", "--format", "json", "--", "sh", "-c", &script],
        vec!["record", "--mntns", "1", "-o", good],
        vec!["record", "--cgroup", "/sys/fs/cgroup/no-such-spoc-cgroup", "-o", good],
        vec!["record", "--container", "no-such-spoc-container", "-o", good],
    ];
    for args in cases {
        let o = spoc(&args, None);
        assert_eq!(
            o.status.code(),
            Some(125),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!marker.exists(), "{args:?} ran the command");
    }
}

/// A recording that saw no syscall (a mount namespace whose one process sleeps throughout,
/// stopped) is an error, not a deny-all profile.
#[test]
fn record_refuses_an_empty_recording() {
    if !can_record("record_refuses_an_empty_recording") {
        return;
    }
    let Ok(mut sleeper) = Command::new("unshare").args(["-m", "sleep", "60"]).spawn() else {
        eprintln!("skipped: record_refuses_an_empty_recording: no unshare");
        return;
    };
    let ns = format!("/proc/{}/ns/mnt", sleeper.id());
    let own = std::fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
    let started = Instant::now();
    while std::fs::read_link(&ns).is_ok_and(|n| n == own) || std::fs::read_link(&ns).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "unshare made no namespace");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&ns).expect("ns")).to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("empty.yaml");
    let started = Instant::now();
    let o = signal_spoc(
        &["record", "--mntns", &inode, "-o", profile.to_str().expect("utf-8")],
        "TERM",
        || started.elapsed() > Duration::from_secs(2),
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("no syscall"), "{stderr}");
    assert!(!profile.exists());
}

/// `-t all -o base.yaml` writes two profiles that spoc convert and spoc merge take as they
/// are; --format json prints the summary as JSON; hostile names are escaped.
#[test]
fn record_all_writes_two_usable_profiles_and_a_json_summary() {
    if !can_record("record_all_writes_two_usable_profiles_and_a_json_summary") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let evil = dir.path().join("evil\nspoc: forged\x1b[2J");
    std::fs::copy("/bin/true", &evil).expect("copy true");
    let base = dir.path().join("base.yaml");
    let o = spoc(
        &[
            "record",
            "-t",
            "all",
            "--name",
            "web",
            "--format",
            "json",
            "-o",
            base.to_str().expect("utf-8"),
            "--",
            evil.to_str().expect("utf-8"),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stderr.lines().any(|l| l.starts_with("spoc: forged")),
        "{stderr:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON summary");
    assert_eq!(v["name"], "web");
    assert!(v["syscalls"].as_u64().is_some_and(|n| n > 5), "{v}");
    assert!(v["syscalls_per_arch"]["SCMP_ARCH_X86_64"].as_u64().is_some(), "{v}");
    assert!(v["resources"]["files"].as_u64().is_some(), "{v}");
    assert_eq!(v["exit_status"], 0);
    let seccomp = dir.path().join("base.seccomp.yaml");
    let apparmor = dir.path().join("base.apparmor.yaml");
    assert_eq!(v["written"][0], seccomp.to_str().expect("utf-8"));
    assert_eq!(v["written"][1], apparmor.to_str().expect("utf-8"));
    for file in [&seccomp, &apparmor] {
        let f = file.to_str().expect("utf-8");
        let o = spoc(&["convert", f], None);
        assert!(
            o.status.success(),
            "convert {f}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = spoc(&["merge", f, f], None);
        assert!(o.status.success(), "merge {f}: {}", String::from_utf8_lossy(&o.stderr));
    }
}
