//! `spoc merge` as a user runs it: the real binary, real files, exit codes and output.

mod common;
use common::spoc;

use std::path::Path;
use std::process::Output;

use spo_model::SeccompProfile;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path.to_str().expect("utf-8 path").to_owned()
}

const APP: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: app}
spec:
  defaultAction: SCMP_ACT_ERRNO
  architectures: [SCMP_ARCH_X86_64]
  syscalls:
  - names: [read, write]
    action: SCMP_ACT_ALLOW
  - names: [openat]
    action: SCMP_ACT_ERRNO
";

const RUNTIME: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: runtime}
spec:
  defaultAction: SCMP_ACT_ALLOW
  syscalls:
  - names: [openat, write]
    action: SCMP_ACT_ALLOW
  - names: [mount]
    action: SCMP_ACT_KILL_PROCESS
";

fn parse(yaml: &str) -> SeccompProfile {
    serde_norway::from_str(yaml).expect("output is a SeccompProfile")
}

fn action_of(profile: &SeccompProfile, name: &str) -> Option<String> {
    profile
        .spec
        .rules()
        .iter()
        .find(|r| r.names.iter().any(|n| n == name))
        .map(|r| r.action.to_string())
}

#[test]
fn union_to_stdout_keeps_the_first_inputs_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = write(dir.path(), "app.yaml", APP);
    let runtime = write(dir.path(), "runtime.yaml", RUNTIME);
    let o = spoc(&["merge", &app, &runtime], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = parse(&stdout(&o));
    assert_eq!(merged.metadata.name.as_deref(), Some("app"));
    assert_eq!(merged.spec.default_action.to_string(), "SCMP_ACT_ERRNO");
    assert_eq!(merged.spec.architectures.as_ref().map(Vec::len), Some(1));
    assert_eq!(action_of(&merged, "openat").as_deref(), Some("SCMP_ACT_ALLOW"));
    assert_eq!(action_of(&merged, "mount").as_deref(), Some("SCMP_ACT_KILL_PROCESS"));
    assert!(merged.validate().is_empty(), "{}", merged.validate());
    // Deterministic: the same inputs give the same bytes.
    assert_eq!(stdout(&spoc(&["merge", &app, &runtime], None)), stdout(&o));
}

#[test]
fn intersect_to_a_file_with_a_new_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = write(dir.path(), "app.yaml", APP);
    let runtime = write(dir.path(), "runtime.yaml", RUNTIME);
    let out = dir.path().join("out.yaml");
    let out = out.to_str().expect("utf-8 path");
    let o = spoc(
        &["merge", "--intersect", &app, &runtime, "-o", out, "--name", "both"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let merged = parse(&std::fs::read_to_string(out).expect("read output"));
    assert_eq!(merged.metadata.name.as_deref(), Some("both"));
    assert_eq!(merged.spec.default_action.to_string(), "SCMP_ACT_ERRNO");
    assert_eq!(action_of(&merged, "write").as_deref(), Some("SCMP_ACT_ALLOW"));
    // read: app allows it, runtime's default allows it. openat: app denies it.
    assert_eq!(action_of(&merged, "read").as_deref(), Some("SCMP_ACT_ALLOW"));
    assert_eq!(action_of(&merged, "openat"), None);
    assert_eq!(action_of(&merged, "mount").as_deref(), Some("SCMP_ACT_KILL_PROCESS"));
    // No temporary file is left next to the output.
    let entries: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert_eq!(entries.len(), 3);
}

#[test]
fn several_profiles_in_one_file_and_stdin() {
    let both = format!("{APP}---\n{RUNTIME}");
    let o = spoc(&["merge", "-"], Some(both.as_bytes()));
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = parse(&stdout(&o));
    assert_eq!(action_of(&merged, "openat").as_deref(), Some("SCMP_ACT_ALLOW"));
}

#[test]
fn check_lists_changes_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = write(dir.path(), "app.yaml", APP);
    let runtime = write(dir.path(), "runtime.yaml", RUNTIME);
    let o = spoc(&["merge", "--check", &app, &runtime], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "mount: SCMP_ACT_ERRNO -> SCMP_ACT_KILL_PROCESS\nopenat: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW\n"
    );

    // A profile that adds nothing: exit 0, nothing written.
    let subset = write(
        dir.path(),
        "subset.yaml",
        "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: subset}
spec:
  defaultAction: SCMP_ACT_ERRNO
  syscalls:
  - {names: [write], action: SCMP_ACT_ALLOW}
",
    );
    let o = spoc(&["merge", "--check", &app, &subset], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn base_profiles_resolve_among_the_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = write(
        dir.path(),
        "child.yaml",
        "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: child}
spec:
  defaultAction: SCMP_ACT_ERRNO
  baseProfileName: runtime
  syscalls:
  - {names: [read], action: SCMP_ACT_ALLOW}
",
    );
    let o = spoc(&["merge", &child], None);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(err.contains("child -> runtime"), "{err}");
    assert!(
        err.contains("is not among the inputs; give the file that holds it too"),
        "{err}"
    );

    let runtime = write(dir.path(), "runtime.yaml", RUNTIME);
    let o = spoc(&["merge", &child, &runtime], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = parse(&stdout(&o));
    assert_eq!(merged.spec.base_profile_name, None);
    assert_eq!(action_of(&merged, "openat").as_deref(), Some("SCMP_ACT_ALLOW"));
}

#[test]
fn invalid_documents_are_reported_and_nothing_is_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = write(dir.path(), "app.yaml", APP);
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: bad}
spec:
  defautAction: SCMP_ACT_ERRNO
",
    );
    let out = dir.path().join("out.yaml");
    let o = spoc(&["merge", &app, &bad, "-o", out.to_str().expect("utf-8")], None);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains("[doc 0] SeccompProfile/bad: error: spec.defautAction: unknown field"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn disjoint_architectures_cannot_be_intersected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = write(dir.path(), "app.yaml", APP);
    let arm = write(
        dir.path(),
        "arm.yaml",
        &APP.replace("name: app", "name: arm")
            .replace("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"),
    );
    let o = spoc(&["merge", "--intersect", &app, &arm], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("nothing in common"), "{}", stderr(&o));
}
