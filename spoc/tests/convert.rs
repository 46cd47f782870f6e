//! `spoc convert` as a user runs it: real files, exit codes, stdout and stderr.

mod common;
use common::spoc;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const PROFILE: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: demo}
spec:
  defaultAction: SCMP_ACT_ERRNO
  architectures: [SCMP_ARCH_X86_64]
  syscalls:
  - names: [read, write]
    action: SCMP_ACT_ALLOW
  - names: [personality]
    action: SCMP_ACT_ALLOW
    args: [{index: 0, value: 0, op: SCMP_CMP_EQ}]
  - names: [mkdir]
    action: SCMP_ACT_ERRNO
    errnoRet: 38
";

const RUNTIME: &str = r#"{
  "defaultAction": "SCMP_ACT_ERRNO",
  "architectures": [
    "SCMP_ARCH_X86_64"
  ],
  "syscalls": [
    {
      "names": [
        "read",
        "write"
      ],
      "action": "SCMP_ACT_ALLOW"
    },
    {
      "names": [
        "personality"
      ],
      "action": "SCMP_ACT_ALLOW",
      "args": [
        {
          "index": 0,
          "value": 0,
          "op": "SCMP_CMP_EQ"
        }
      ]
    },
    {
      "names": [
        "mkdir"
      ],
      "action": "SCMP_ACT_ERRNO",
      "errnoRet": 38
    }
  ]
}
"#;

#[test]
fn manifest_to_runtime_json_on_stdout() {
    let o = spoc(&["convert", "-"], Some(PROFILE.as_bytes()));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), RUNTIME);
}

#[test]
fn manifest_to_runtime_json_file_and_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("demo.yaml");
    std::fs::write(&manifest, PROFILE).expect("write");
    let json = dir.path().join("My_Demo.json");
    let o = spoc(
        &[
            "convert",
            manifest.to_str().expect("utf-8"),
            "-o",
            json.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&json).expect("read"), RUNTIME);
    let leftovers = std::fs::read_dir(dir.path()).expect("read_dir").count();
    assert_eq!(leftovers, 2, "no temporary file left behind");

    let o = spoc(&["convert", "--to-crd", json.to_str().expect("utf-8")], None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let yaml = text(&o.stdout);
    assert!(yaml.contains("kind: SeccompProfile"), "{yaml}");
    assert!(yaml.contains("name: my-demo"), "{yaml}");

    // The manifest it wrote is valid and converts back to the same runtime JSON.
    let o = spoc(&["convert", "-"], Some(yaml.as_bytes()));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), RUNTIME);
}

#[test]
fn to_crd_with_name() {
    let o = spoc(
        &["convert", "--to-crd", "--name", "from-stdin", "-"],
        Some(RUNTIME.as_bytes()),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("name: from-stdin"));
    let o = spoc(&["convert", "--to-crd", "-"], Some(RUNTIME.as_bytes()));
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("--name"), "{}", text(&o.stderr));
    let o = spoc(
        &["convert", "--to-crd", "--name", "Bad/Name", "-"],
        Some(RUNTIME.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn invalid_manifest_prints_problems_and_exits_125() {
    let bad = PROFILE.replace("defaultAction", "defautAction");
    let o = spoc(&["convert", "-"], Some(bad.as_bytes()));
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty());
    let err = text(&o.stderr);
    assert!(
        err.contains("-:5 [doc 0] SeccompProfile/demo: error: spec.defautAction: unknown field"),
        "{err}"
    );
}

#[test]
fn malformed_runtime_json_names_the_field() {
    let o = spoc(
        &["convert", "--to-crd", "--name", "x", "-"],
        Some(br#"{"defaultActon":"SCMP_ACT_ERRNO"}"#),
    );
    assert_eq!(o.status.code(), Some(125));
    let err = text(&o.stderr);
    assert!(err.contains("defaultActon"), "{err}");
}

#[test]
fn default_errno_ret_other_than_eperm_is_refused() {
    let o = spoc(
        &["convert", "--to-crd", "--name", "x", "-"],
        Some(br#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38}"#),
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("defaultErrnoRet: 38"), "{}", text(&o.stderr));
}

#[test]
fn several_profiles_need_a_name() {
    let two = format!("{PROFILE}---\n{}", PROFILE.replace("name: demo", "name: other"));
    let o = spoc(&["convert", "-"], Some(two.as_bytes()));
    assert_eq!(o.status.code(), Some(125));
    let err = text(&o.stderr);
    assert!(
        err.contains("holds 2 profiles (SeccompProfile/demo at line 1, SeccompProfile/other at line 17)"),
        "{err}"
    );
    assert!(err.contains("choose one with --name"), "{err}");

    // --name picks one.
    let o = spoc(&["convert", "--name", "other", "-"], Some(two.as_bytes()));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), RUNTIME);
}
