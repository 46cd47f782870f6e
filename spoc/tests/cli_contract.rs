//! What every command promises alike: `-o FILE` never replaces a special file, `--format`,
//! exit codes, escaped output, folded repeats, OCI runtime JSON wherever a SeccompProfile goes.

mod common;

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::spoc;

const PROFILE: &str = "\
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: demo
spec:
  defaultAction: SCMP_ACT_ERRNO
  syscalls:
    - action: SCMP_ACT_ALLOW
      names: [read, write, exit_group]
";

/// The same rules as OCI runtime seccomp JSON, as a container engine or a node file has them.
const RUNTIME_JSON: &str = r#"{
  "defaultAction": "SCMP_ACT_ERRNO",
  "architectures": ["SCMP_ARCH_X86_64"],
  "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
}"#;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write fixture");
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// A character device node for the null device in `dir` (never the machine's own /dev/null).
fn null_device(dir: &Path) -> Option<PathBuf> {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: mknod needs root");
        return None;
    }
    let null = dir.join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(made.success());
    Some(null)
}

#[test]
fn output_to_a_device_node_never_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(null) = null_device(dir.path()) else { return };
    let profile = write(dir.path(), "p.yaml", PROFILE);
    let merged = write(dir.path(), "q.yaml", &PROFILE.replace("name: demo", "name: other"));
    let runs: [Vec<&str>; 4] = [
        vec!["convert", s(&profile), "-o", s(&null)],
        vec!["validate", s(&profile), "-o", s(&null)],
        vec!["compile", s(&profile), "-o", s(&null)],
        vec!["merge", s(&profile), s(&merged), "-o", s(&null)],
    ];
    for args in runs {
        let o = spoc(&args, None);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let meta = std::fs::symlink_metadata(&null).expect("lstat");
        assert!(
            !meta.file_type().is_file(),
            "{args:?} replaced the device node with a regular file"
        );
    }
    // Through a symbolic link, as /dev/stdout is one.
    let link = dir.path().join("out");
    symlink(&null, &link).expect("symlink");
    let o = spoc(&["convert", s(&profile), "-o", s(&link)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!std::fs::metadata(&null).expect("stat").file_type().is_file());
}

#[test]
fn output_to_a_fifo_writes_into_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let profile = write(dir.path(), "p.yaml", PROFILE);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(&fifo).expect("read fifo"))
    };
    let o = spoc(&["convert", s(&profile), "-o", s(&fifo)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = reader.join().expect("reader");
    assert!(got.contains("\"defaultAction\": \"SCMP_ACT_ERRNO\""), "{got}");
    assert!(!std::fs::symlink_metadata(&fifo).expect("lstat").file_type().is_file());
}

#[test]
fn dash_means_standard_output_and_a_replaced_file_keeps_its_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = write(dir.path(), "p.yaml", PROFILE);
    let o = spoc(&["convert", s(&profile), "-o", "-"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("SCMP_ACT_ERRNO"));
    assert!(!dir.path().join("-").exists(), "-o - wrote a file named -");

    let out = write(dir.path(), "out.json", "old");
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let o = spoc(&["convert", s(&profile), "-o", s(&out)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&out).expect("meta").mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&out).expect("read").contains("SCMP_ACT_ERRNO"));
}

#[test]
fn exit_codes_are_documented_and_spocs_own_failures_are_125() {
    for cmd in ["validate", "convert", "merge", "compile", "run", "record"] {
        let o = spoc(&[cmd, "--help"], None);
        assert_eq!(o.status.code(), Some(0), "{cmd} --help");
        let help = stdout(&o);
        assert!(
            help.contains("Exit codes"),
            "{cmd} --help lacks the exit codes:\n{help}"
        );
        assert!(help.contains("125  spoc failed"), "{cmd}");
    }
    let o = spoc(&["validate", "--no-such-flag", "x"], None);
    assert_eq!(o.status.code(), Some(125), "usage error");
    let o = spoc(&["convert", "/nonexistent/profile.yaml"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("opening /nonexistent/profile.yaml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn validating_nothing_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = spoc(&["validate", s(dir.path())], None);
    assert_eq!(o.status.code(), Some(125), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("no document to validate"), "{}", stderr(&o));
}

#[test]
fn repeated_problems_are_one_line_with_a_count_and_quiet_hides_warnings() {
    let mut names = String::from("[read");
    for _ in 0..50_000 {
        names.push_str(", read");
    }
    names.push(']');
    let profile = PROFILE.replace("[read, write, exit_group]", &names);
    let o = spoc(&["validate", "-"], Some(profile.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("duplicate")).collect();
    assert_eq!(lines.len(), 1, "{}", &out[..out.len().min(2000)]);
    assert!(
        lines[0].contains("[50000 times; also at spec.syscalls[0].names[2]"),
        "{}",
        lines[0]
    );
    let o = spoc(&["validate", "-q", "-"], Some(profile.as_bytes()));
    assert_eq!(o.status.code(), Some(0));
    assert!(!stdout(&o).contains("duplicate"), "-q printed warnings: {}", stdout(&o));
}

#[test]
fn names_with_control_characters_cannot_forge_output_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let evil = write(dir.path(), "x\nspoc: all good\x1b[2J.yaml", "kind: SeccompProfile\n");
    let o = spoc(&["validate", s(&evil)], None);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        !all.lines().any(|l| l.starts_with("spoc: all good")),
        "forged line in:\n{all}"
    );
    assert!(!all.contains('\x1b'), "escape sequence passed through");
    assert!(all.contains("x\\nspoc: all good\\x1b[2J.yaml"), "{all}");
}

#[test]
fn runtime_json_is_accepted_wherever_a_seccomp_profile_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = write(dir.path(), "engine-default.json", RUNTIME_JSON);
    let manifest = write(dir.path(), "p.yaml", PROFILE);

    let o = spoc(&["validate", s(&json)], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("SeccompProfile/engine-default: ok"),
        "{}",
        stdout(&o)
    );

    let o = spoc(&["convert", s(&json)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("kind: SeccompProfile"), "{}", stdout(&o));
    assert!(stdout(&o).contains("name: engine-default"), "{}", stdout(&o));

    let o = spoc(&["compile", "--stats-only", "--format", "json", s(&json)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json stats");
    assert!(stats["instructions"].as_u64().is_some_and(|n| n > 3), "{stats}");
    assert!(stats["longestPath"].as_u64().is_some(), "{stats}");
    assert!(stats.get("disassembly").is_none());

    // The manifest and the runtime JSON hold the same rules: merging changes nothing.
    let o = spoc(&["merge", "--check", "--format", "json", s(&manifest), s(&json)], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let check: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json check");
    assert_eq!(check["unchanged"], true, "{check}");
    assert_eq!(check["changes"], serde_json::json!([]));

    // A runc config.json with linux.seccomp is read too.
    let config = write(
        dir.path(),
        "config.json",
        &format!(r#"{{"ociVersion": "1.0.2", "linux": {{"seccomp": {RUNTIME_JSON}}}}}"#),
    );
    let o = spoc(&["compile", "--stats-only", s(&config)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn merge_check_reports_changes_as_json_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = write(dir.path(), "a.yaml", PROFILE);
    let second = write(
        dir.path(),
        "b.yaml",
        &PROFILE
            .replace("name: demo", "name: more")
            .replace("exit_group]", "exit_group, openat]"),
    );
    let o = spoc(&["merge", "--check", "--format", "json", s(&first), s(&second)], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let check: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json check");
    assert_eq!(check["unchanged"], false);
    let changes = check["changes"].as_array().expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c.as_str().is_some_and(|c| c.starts_with("openat:"))),
        "{check}"
    );
}

#[test]
fn a_missing_field_does_not_hide_a_misspelled_syscall_and_lines_point_at_fields() {
    let profile = "\
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: demo
spec:
  syscalls:
    - action: SCMP_ACT_ALLOW
      names:
        - read
        - opne
";
    let o = spoc(&["validate", "-"], Some(profile.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("-:5 [doc 0] SeccompProfile/demo: error: spec.defaultAction: required field is missing"),
        "{out}"
    );
    assert!(
        out.contains("-:10 [doc 0] SeccompProfile/demo: error: spec.syscalls[0].names[1]: unknown syscall \"opne\""),
        "{out}"
    );
}

#[test]
fn kubectl_yaml_booleans_and_merge_keys_are_read_as_kubectl_reads_them() {
    let profile = "\
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: AppArmorProfile
metadata:
  name: web
spec:
  abstract:
    network:
      allowedProtocols:
        allowTcp: yes
        allowUdp: off
";
    let o = spoc(&["validate", "-"], Some(profile.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let merged = "\
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: demo
spec:
  defaultAction: SCMP_ACT_ERRNO
  syscalls:
    - &allow
      action: SCMP_ACT_ALLOW
      names: [read]
    - <<: *allow
      names: [write]
";
    let o = spoc(&["convert", "-"], Some(merged.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"write\""), "{}", stdout(&o));
}
