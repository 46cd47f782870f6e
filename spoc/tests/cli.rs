//! `spoc` as a user runs it: the real binary, real files, exit codes and output.

mod common;
use common::spoc;

use std::path::PathBuf;
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests")
}

const BAD: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: demo}
spec:
  defautAction: SCMP_ACT_ERRNO
  syscalls:
  - names: [read]
    action: SCMP_ACT_ALLOW
    args: [{index: 7, op: SCMP_CMP_EQ}]
---
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: fine}
spec: {defaultAction: SCMP_ACT_LOG}
";

#[test]
fn help_lists_validate_with_examples() {
    let o = spoc(&["--help"], None);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("validate"), "{text}");
    assert!(text.contains("spoc validate examples/manifests/"), "{text}");
    // Every profile kind is named where convert and merge are described.
    for kind in [
        "SeccompProfile",
        "SelinuxProfile",
        "RawSelinuxProfile",
        "AppArmorProfile",
    ] {
        assert!(text.contains(kind), "{kind} not in {text}");
    }
    assert!(text.contains("--deep"), "{text}");
}

#[test]
fn shipped_examples_are_valid() {
    let dir = manifests_dir();
    let o = spoc(&["validate", dir.to_str().expect("utf-8 path")], None);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(!text.contains("error"), "{text}");
    assert!(text.contains(" 0 invalid"), "{text}");
}

#[test]
fn errors_name_file_document_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD).expect("write");
    let o = spoc(&["validate", path.to_str().expect("utf-8")], None);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    let p = path.display();
    assert!(
        text.contains(&format!(
            "{p}:5 [doc 0] SeccompProfile/demo: error: spec.defautAction: unknown field, did you mean defaultAction?"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{p}:9 [doc 0] SeccompProfile/demo: error: spec.syscalls[0].args[0].index: 7 is out of range 0..=5"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{p}:11 [doc 1] SeccompProfile/fine: ok")),
        "{text}"
    );
    assert!(text.contains("2 documents: 1 ok, 1 invalid, 0 skipped"), "{text}");
}

#[test]
fn stdin_and_json_output() {
    let o = spoc(&["validate", "--format", "json", "-"], Some(BAD.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(v["invalid"], 1);
    assert_eq!(v["ok"], 1);
    let docs = v["documents"].as_array().expect("documents");
    assert_eq!(docs[0]["file"], "-");
    assert_eq!(docs[0]["result"], "error");
    let paths: Vec<&str> = docs[0]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert!(paths.contains(&"spec.defautAction"), "{paths:?}");
    assert!(paths.contains(&"spec.defaultAction"), "{paths:?}");
    assert_eq!(docs[1]["result"], "ok");
}

#[test]
fn unreadable_inputs_exit_125_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# only a comment\n").expect("write");
    let binary = dir.path().join("bin.yaml");
    std::fs::write(&binary, b"kind: \xff\xfe").expect("write");
    let missing = dir.path().join("missing.yaml");
    for (path, want) in [
        (&empty, "no YAML or JSON document found"),
        (&binary, "not valid UTF-8 at byte 6"),
        (&missing, "opening"),
    ] {
        let o = spoc(&["validate", path.to_str().expect("utf-8")], None);
        assert_eq!(o.status.code(), Some(125), "{}", path.display());
        let text = stdout(&o);
        assert!(text.contains(want), "{want:?} not in {text}");
    }
}

#[test]
fn huge_input_is_refused_without_reading_it_all() {
    let big = vec![b'#'; spo_model::document::MAX_SOURCE_BYTES + 10];
    let o = spoc(&["validate", "-"], Some(&big));
    assert_eq!(o.status.code(), Some(125));
    assert!(stdout(&o).contains("limit for one file"), "{}", stdout(&o));
}

#[test]
fn warnings_pass_unless_strict() {
    let warn = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: w}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - {names: [read, read], action: SCMP_ACT_ALLOW}\n";
    let o = spoc(&["validate", "-"], Some(warn.as_bytes()));
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("warning: spec.syscalls[0].names[1]: duplicate entry \"read\""),
        "{}",
        stdout(&o)
    );
    let o = spoc(&["validate", "--strict-warnings", "-"], Some(warn.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
}
