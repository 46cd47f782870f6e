//! `spoc convert`, `validate` and `merge` on SelinuxProfiles, RawSelinuxProfiles and
//! AppArmorProfiles, as a user runs them: the real binary, real files, exit codes and output.
//!
//! The `--deep` tests run the real secilc (against the base policy named by
//! `SPO_SELINUX_BASE`: `export SPO_SELINUX_BASE=$(scripts/selinux-base)`) and apparmor_parser.
//! Without them they print `skipped: <reason>`, except in CI (`CI` set), where they fail.

mod common;
use common::spoc;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use spo_model::apparmor::AppArmorProfile;
use spo_model::selinux::SelinuxProfile;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    path.to_str().expect("utf-8 path").to_owned()
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/manifests")
        .join(name);
    path.to_str().expect("utf-8 path").to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Runs spoc with environment changes (`None` removes the variable).
fn spoc_env(args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spoc"));
    cmd.args(args).stdin(Stdio::null());
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.output().expect("run spoc")
}

fn skip_or_fail(reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{reason}; CI is set, so this test may not be skipped"
    );
    eprintln!("skipped: {reason}");
}

/// The SELinux base policy directory, when secilc and `SPO_SELINUX_BASE` are there.
fn selinux_base() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("SPO_SELINUX_BASE") else {
        skip_or_fail("SPO_SELINUX_BASE is not set (export SPO_SELINUX_BASE=$(scripts/selinux-base))");
        return None;
    };
    if spo_selinux::validate::find_program("secilc").is_none() {
        skip_or_fail("secilc is not installed");
        return None;
    }
    Some(PathBuf::from(dir))
}

fn apparmor_parser_available() -> bool {
    match spo_apparmor::ParserValidator::default().available() {
        Ok(()) => true,
        Err(reason) => {
            skip_or_fail(&reason);
            false
        }
    }
}

// ---- convert ----

#[test]
fn selinux_profile_converts_to_its_cil_module() {
    let o = spoc(&["convert", &example("selinux.yaml"), "--name", "nginx-secure"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!("convert_selinux_nginx_secure", stdout(&o));

    // Inheriting another profile of the same file: resolved, with a note about its module.
    let o = spoc(
        &["convert", &example("selinux.yaml"), "--name", "nginx-secure-permissive"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cil = stdout(&o);
    assert!(cil.contains("(blockinherit nginx-secure)"), "{cil}");
    assert!(cil.contains("(typepermissive process)"), "{cil}");
    assert!(
        stderr(&o).contains("inherits SelinuxProfile nginx-secure, whose module must be installed too"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inherited_profiles_come_from_with_files() {
    let child = fixture("selinux-child.yaml");
    let o = spoc(&["convert", &child], None);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o)
            .contains("SelinuxProfile/web-app: error: spec.inherit[0].name: SelinuxProfile web-base does not exist"),
        "{}",
        stderr(&o)
    );

    let o = spoc(&["convert", &child, "--with", &fixture("selinux-base.yaml")], None);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!("convert_selinux_with_inherit", stdout(&o));
}

#[test]
fn raw_selinux_profile_is_wrapped_in_its_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("log-shipper.cil");
    let o = spoc(
        &[
            "convert",
            &example("selinux-raw.yaml"),
            "-o",
            out.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let cil = std::fs::read_to_string(&out).expect("read output");
    insta::assert_snapshot!("convert_raw_log_shipper", cil);
    // Written atomically: nothing but the output is left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
}

#[test]
fn raw_selinux_escapes_are_refused_with_the_policy_line() {
    let file = fixture("selinux-raw-escape.yaml");
    let o = spoc(&["convert", &file, "--name", "raw-close"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("RawSelinuxProfile/raw-close: error: spec.policy: line 2: ')' closes more than was opened"),
        "{}",
        stderr(&o)
    );

    let o = spoc(&["convert", &file, "--name", "raw-global"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("spec.policy: line 2: handleunknown is a global statement"),
        "{err}"
    );
    assert!(
        err.contains("spec.policy: line 3: (in ...) adds statements to another block"),
        "{err}"
    );
}

#[test]
fn hostile_selinux_names_get_field_errors_and_no_output() {
    let file = fixture("selinux-hostile.yaml");
    let o = spoc(&["convert", &file, "--name", "hostile"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    for field in [
        "spec.allow[bin_t) (allow process kernel_t (file (read))) (]: \"bin_t) (allow process kernel_t (file (read))) (\" is not a SELinux type",
        "spec.allow[bin_t][file (read)) (allow]: \"file (read)) (allow\" is not a SELinux object class",
        "spec.allow[bin_t][dir][0]: \"search))\" is not a SELinux permission",
    ] {
        assert!(err.contains(field), "{field:?} not in {err}");
    }

    // An unknown template and a denied type, with a suggestion and the SPOD option to use.
    let o = spoc(&["convert", &file, "--name", "against-the-rules"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "spec.inherit[0].name: System template \"contaner\" is not allowed on this cluster (did you mean container?"
        ),
        "{err}"
    );
    assert!(
        err.contains("spec.allow[kernel_t]: type kernel_t may not be allowed (denied type)"),
        "{err}"
    );
}

#[test]
fn a_spod_among_the_inputs_sets_the_guardrails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(fixture("selinux-hostile.yaml"))
        .expect("read")
        .replace("contaner", "container");
    let file = write(dir.path(), "kernel.yaml", &text);
    let o = spoc(&["convert", &file, "--name", "against-the-rules"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("denied type"), "{}", stderr(&o));

    let o = spoc(
        &[
            "convert",
            &file,
            "--name",
            "against-the-rules",
            "--with",
            &fixture("spod-allow-kernel.yaml"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(allow process kernel_t (file (read)))"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn apparmor_profile_converts_to_profile_text() {
    let o = spoc(&["convert", &example("apparmor.yaml"), "--name", "web-frontend"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!("convert_apparmor_web_frontend", stdout(&o));
}

#[test]
fn hostile_apparmor_paths_get_field_errors_and_no_output() {
    let file = fixture("apparmor-hostile.yaml");
    let o = spoc(&["convert", &file, "--name", "hostile"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("spec.abstract.filesystem.readOnlyPaths[0]: contains the control character '\\n'"),
        "{err}"
    );
    assert!(
        err.contains("spec.abstract.capability.allowedCapabilities[0]: \"CAP_SYS_ADMIN\" is not a Linux capability"),
        "{err}"
    );

    let o = spoc(&["convert", &file, "--name", "bad-paths"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    for want in [
        "spec.abstract.filesystem.readOnlyPaths[0]: \"/tmp/a, /** w\": ',' outside an alternation",
        "spec.abstract.filesystem.readOnlyPaths[1]: \"/etc/{a}\": alternation has a single alternative",
        "spec.abstract.filesystem.readWritePaths[0]: \"/var/../etc/shadow\": '..' component",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[test]
fn several_profiles_need_a_name_and_the_name_must_exist() {
    let o = spoc(&["convert", &example("selinux.yaml")], None);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains("holds 3 profiles (SelinuxProfile/nginx-secure at line 6"),
        "{err}"
    );
    assert!(err.contains("choose one with --name"), "{err}");

    let o = spoc(&["convert", &example("selinux.yaml"), "--name", "nope"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("holds no profile named \"nope\""), "{}", stderr(&o));

    // Documents that are not profiles are not candidates.
    let o = spoc(&["convert", &example("spod.yaml")], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("holds no profile to convert"), "{}", stderr(&o));
}

#[test]
fn malformed_yaml_names_the_line() {
    let o = spoc(
        &["convert", "-"],
        Some(
            b"apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {name: x\nspec: [\n",
        ),
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("YAML syntax error at line 4"), "{}", stderr(&o));
}

// ---- validate ----

#[test]
fn validate_runs_the_backend_checks_without_deep() {
    let o = spoc(
        &[
            "validate",
            &fixture("selinux-hostile.yaml"),
            &fixture("selinux-raw-escape.yaml"),
            &fixture("apparmor-hostile.yaml"),
            &fixture("selinux-child.yaml"),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    for want in [
        "SelinuxProfile/against-the-rules: error: spec.inherit[0].name: System template \"contaner\"",
        "RawSelinuxProfile/raw-global: error: spec.policy: line 2: handleunknown is a global statement",
        "AppArmorProfile/bad-paths: error: spec.abstract.filesystem.readWritePaths[0]",
        "SelinuxProfile/web-app: error: spec.inherit[0].name: SelinuxProfile web-base does not exist",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert!(!text.contains("deep check"), "{text}");
    assert!(text.contains("7 documents: 0 ok, 7 invalid, 0 skipped\n"), "{text}");

    // Inherited profiles are looked up among every input.
    let o = spoc(
        &[
            "validate",
            &fixture("selinux-child.yaml"),
            &fixture("selinux-base.yaml"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stdout(&o));
}

/// A directory holding fake `secilc`, `seinfo` (an empty attribute listing) and
/// `apparmor_parser` that record each run in `ran` and succeed, and a fake base policy.
fn fake_tools(dir: &Path) -> (String, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let ran = dir.join("ran");
    for (tool, prints) in [
        ("secilc", ""),
        ("seinfo", "echo 'Type Attributes: 0'\n"),
        ("apparmor_parser", ""),
    ] {
        let script = bin.join(tool);
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho {tool} >> {}\n{prints}exit 0\n", ran.display()),
        )
        .expect("write");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let base = dir.join("base");
    std::fs::create_dir(&base).expect("mkdir");
    std::fs::write(base.join("base.cil"), "; fake\n").expect("write");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    (path, ran)
}

/// An allowed type attribute is judged by the types it holds in the real compiled policy:
/// `file_type` holds `shadow_t`, a denied type, so allowing it is refused at its field.
#[test]
fn deep_refuses_attributes_holding_denied_types() {
    let Some(base) = selinux_base() else { return };
    if spo_selinux::validate::find_program("seinfo").is_none() {
        skip_or_fail("seinfo is not installed (setools)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wide.yaml");
    std::fs::write(
        &file,
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {name: wide}\n\
         spec:\n  inherit: [{name: container}]\n  allow:\n    file_type: {file: [read]}\n    etc_t: {file: [read]}\n",
    )
    .expect("write");
    let o = spoc_env(
        &["validate", "--deep", file.to_str().expect("utf-8")],
        &[("SPO_SELINUX_BASE", base.to_str())],
    );
    let text = stdout(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("spec.allow[file_type]: type attribute file_type holds denied types (")
            && text.contains("shadow_t"),
        "{text}"
    );
    assert!(
        !text.contains("spec.allow[etc_t]"),
        "etc_t is a type, and allowed: {text}"
    );
}

#[test]
fn nothing_external_runs_without_deep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, ran) = fake_tools(dir.path());
    let base = dir.path().join("base");
    let files = [example("selinux.yaml"), example("apparmor.yaml")];
    let env = [("PATH", Some(path.as_str())), ("SPO_SELINUX_BASE", base.to_str())];
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let o = spoc_env(&args, &env);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(!ran.exists(), "a tool ran without --deep");

    args.insert(1, "--deep");
    let o = spoc_env(&args, &env);
    assert!(o.status.success(), "{}", stdout(&o));
    let runs = std::fs::read_to_string(&ran).expect("the tools ran with --deep");
    // One secilc run checks the three SelinuxProfiles, one more compiles them with the base for
    // seinfo's attribute listing; apparmor_parser per profile.
    assert_eq!(runs.lines().filter(|l| *l == "secilc").count(), 2, "{runs}");
    assert_eq!(runs.lines().filter(|l| *l == "seinfo").count(), 1, "{runs}");
    assert!(runs.lines().any(|l| l == "apparmor_parser"), "{runs}");
    let text = stdout(&o);
    assert!(
        text.contains("SelinuxProfile/nginx-secure: ok (compiled by secilc)"),
        "{text}"
    );
    assert!(
        text.contains("AppArmorProfile/web-frontend: ok (compiled by apparmor_parser)"),
        "{text}"
    );
    assert!(text.contains("deep checks: 5 passed, 0 failed, 0 skipped"), "{text}");
}

#[test]
fn deep_says_when_the_selinux_base_is_missing() {
    let o = spoc_env(
        &[
            "validate",
            "--deep",
            &example("selinux.yaml"),
            &example("selinux-raw.yaml"),
        ],
        &[("SPO_SELINUX_BASE", None)],
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(
        text.contains(
            "SelinuxProfile/nginx-secure: ok (skipped deep check: a base policy is not available: SPO_SELINUX_BASE is not set"
        ),
        "{text}"
    );
    assert!(text.contains("deep checks: 0 passed, 0 failed, 4 skipped"), "{text}");

    let empty = tempfile::tempdir().expect("tempdir");
    let o = spoc(
        &[
            "validate",
            "--deep",
            "--selinux-base",
            empty.path().to_str().expect("utf-8"),
            "--format",
            "json",
            &example("selinux-raw.yaml"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    let check = &v["documents"][0]["deepCheck"];
    assert_eq!(check["result"], "skipped");
    assert_eq!(check["tool"], "secilc");
    assert!(
        check["reason"]
            .as_str()
            .is_some_and(|r| r.contains("has no *.cil files")),
        "{check}"
    );
}

#[test]
fn deep_says_when_apparmor_parser_is_missing() {
    let o = spoc_env(
        &["validate", "--deep", &example("apparmor.yaml")],
        &[("PATH", Some("/nonexistent"))],
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(
        text.contains("AppArmorProfile/web-frontend: ok (skipped deep check: running apparmor_parser"),
        "{text}"
    );
    assert!(text.contains("deep checks: 0 passed, 0 failed, 2 skipped"), "{text}");

    // --quiet leaves out the documents that are fine, but not the checks that did not run.
    let o = spoc_env(
        &["validate", "--deep", "--quiet", &example("apparmor.yaml")],
        &[("PATH", Some("/nonexistent"))],
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(
        text.contains("AppArmorProfile/web-frontend: skipped deep check: running apparmor_parser"),
        "{text}"
    );
    assert!(!text.contains(": ok"), "{text}");
}

#[test]
fn deep_compiles_selinux_with_secilc_and_maps_errors_to_fields() {
    let Some(base) = selinux_base() else { return };
    // The merged profile of two examples goes through the same run.
    let dir = tempfile::tempdir().expect("tempdir");
    let merged = dir.path().join("merged.yaml");
    let o = spoc(
        &[
            "merge",
            &fixture("selinux-child.yaml"),
            &fixture("selinux-base.yaml"),
            "--name",
            "merged-web",
            "-o",
            merged.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let started = std::time::Instant::now();
    let o = spoc(
        &[
            "validate",
            "--deep",
            "--selinux-base",
            base.to_str().expect("utf-8"),
            &example("selinux.yaml"),
            &example("selinux-raw.yaml"),
            &fixture("selinux-deep-bad.yaml"),
            merged.to_str().expect("utf-8"),
        ],
        None,
    );
    eprintln!("validate --deep took {:?}", started.elapsed());
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    for want in [
        "SelinuxProfile/nginx-secure: ok (compiled by secilc)",
        "SelinuxProfile/nginx-secure-permissive: ok (compiled by secilc)",
        "SelinuxProfile/metrics-exporter: ok (compiled by secilc)",
        "RawSelinuxProfile/log-shipper: ok (compiled by secilc)",
        "SelinuxProfile/merged-web: ok (compiled by secilc)",
        "SelinuxProfile/unknown-type: error: spec.allow[no_such_type_t][file]: secilc: Failed to resolve allow statement at unknown-type.cil:",
        "SelinuxProfile/inherits-unknown: ok (skipped deep check: the inherited SelinuxProfile unknown-type does not compile)",
        "RawSelinuxProfile/raw-unknown-perm: error: spec.policy: secilc: line 3: Failed to resolve permission no_such_perm",
        "deep checks: 5 passed, 2 failed, 1 skipped",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    // Tool messages name modules, never the temporary directory they were compiled in.
    assert!(!text.contains("spo-secilc-"), "{text}");
}

#[test]
fn deep_compiles_apparmor_with_apparmor_parser_and_maps_errors_to_fields() {
    if !apparmor_parser_available() {
        return;
    }
    let o = spoc(
        &[
            "validate",
            "--deep",
            &example("apparmor.yaml"),
            &example("apparmor-denied-paths.yaml"),
            &fixture("apparmor-raw.yaml"),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    for want in [
        "AppArmorProfile/web-frontend: ok (compiled by apparmor_parser)",
        "AppArmorProfile/report-builder-complain: ok (compiled by apparmor_parser)",
        "AppArmorProfile/raw-wrong-name: error: spec.policy: the policy defines the profiles [\"something-else\"]; it must define exactly one, named \"raw-wrong-name\"",
        "AppArmorProfile/raw-syntax: error: spec.policy: line 3: apparmor_parser: syntax error",
        "deep checks: 4 passed, 2 failed, 0 skipped",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
}

// ---- merge ----

#[test]
fn selinux_merge_unions_rules_and_resolves_inherited_profiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recorded = write(
        dir.path(),
        "recorded.yaml",
        "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SelinuxProfile
metadata: {name: web-recorded}
spec:
  mode: Permissive
  allow:
    var_log_t: {file: [open, write]}
    '@self': {tcp_socket: [accept, shutdown]}
",
    );
    let child = fixture("selinux-child.yaml");
    let base = fixture("selinux-base.yaml");
    let o = spoc(&["merge", &child, &base, &recorded], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged: SelinuxProfile = serde_norway::from_str(&stdout(&o)).expect("a SelinuxProfile");
    assert_eq!(merged.metadata.name.as_deref(), Some("web-app"));
    let inherit: Vec<String> = merged
        .spec
        .inherit
        .iter()
        .map(|r| format!("{}/{}", r.kind, r.name))
        .collect();
    // web-base's default template first (it came first through web-app's inherit), then net_container.
    assert_eq!(inherit, ["System/container", "System/net_container"]);
    assert_eq!(merged.spec.mode.to_string(), "Permissive");
    let allow = merged.spec.allow.as_ref().expect("allow");
    assert_eq!(allow["var_log_t"]["file"], ["append", "getattr", "open", "write"]);
    assert_eq!(allow["@self"]["tcp_socket"], ["accept", "listen", "shutdown"]);
    assert_eq!(allow["http_port_t"]["tcp_socket"], ["name_bind"]);
    // Deterministic.
    assert_eq!(stdout(&spoc(&["merge", &child, &base, &recorded], None)), stdout(&o));

    // --check lists what the others add to the first.
    let o = spoc(&["merge", "--check", &child, &base, &recorded], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "+ allow @self tcp_socket shutdown\n+ allow var_log_t file write\n+ mode Permissive\n"
    );
    let o = spoc(&["merge", "--check", &child, &base], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // The inherited profile must be among the inputs.
    let o = spoc(&["merge", &child, &recorded], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains(
            "spec.inherit: inherited SelinuxProfile \"web-base\" (chain web-app -> web-base) is not among the profiles given; give the file that holds it too"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn apparmor_merge_unions_and_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("merged.yaml");
    let web = example("apparmor.yaml");
    let o = spoc(
        &[
            "merge",
            &web,
            &fixture("apparmor-extra.yaml"),
            "--name",
            "web",
            "-o",
            out.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let merged: AppArmorProfile =
        serde_norway::from_str(&std::fs::read_to_string(&out).expect("read")).expect("an AppArmorProfile");
    assert_eq!(merged.metadata.name.as_deref(), Some("web"));
    // report-builder-complain is in Complain mode, so the union is.
    assert_eq!(merged.spec.mode.to_string(), "Complain");
    let abs = merged.spec.abstract_.as_ref().expect("abstract");
    let caps = abs
        .capability
        .as_ref()
        .and_then(|c| c.allowed_capabilities.clone())
        .expect("capabilities");
    assert!(caps.contains(&"kill".to_owned()) && caps.contains(&"net_bind_service".to_owned()));
    let ro = abs
        .filesystem
        .as_ref()
        .and_then(|f| f.read_only_paths.clone())
        .expect("readOnlyPaths");
    assert!(ro.contains(&"/etc/hosts".to_owned()), "{ro:?}");
    assert_eq!(ro.iter().filter(|p| *p == "/etc/nginx/**").count(), 1, "{ro:?}");

    let o = spoc(&["merge", "--check", &fixture("apparmor-extra.yaml"), &web], None);
    assert_eq!(o.status.code(), Some(1));
    let changes = stdout(&o);
    assert!(changes.contains("+ allowedExecutables /usr/sbin/nginx\n"), "{changes}");
    assert!(changes.contains("+ mode Complain\n"), "{changes}");
    assert!(!changes.contains("/etc/hosts"), "{changes}");

    // The merged profile renders.
    let o = spoc(&["convert", out.to_str().expect("utf-8")], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("profile web flags=(complain"), "{}", stdout(&o));
}

#[test]
fn merge_refuses_mixed_kinds_raw_profiles_and_intersect() {
    let o = spoc(&["merge", &example("selinux.yaml"), &example("apparmor.yaml")], None);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(err.contains("cannot merge profiles of different kinds"), "{err}");
    assert!(
        err.contains("SelinuxProfile") && err.contains("AppArmorProfile"),
        "{err}"
    );

    let o = spoc(
        &["merge", &example("seccomp-nginx.yaml"), &example("selinux.yaml")],
        None,
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("cannot merge profiles of different kinds"),
        "{}",
        stderr(&o)
    );

    let o = spoc(&["merge", &example("selinux-raw.yaml")], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("RawSelinuxProfile \"log-shipper\" is CIL text, which cannot be merged"),
        "{}",
        stderr(&o)
    );

    let o = spoc(&["merge", "--intersect", &example("selinux.yaml")], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("--intersect merges SeccompProfiles only"),
        "{}",
        stderr(&o)
    );

    let o = spoc(&["merge", &fixture("apparmor-raw.yaml")], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("has a raw policy, which cannot be merged"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn merged_selinux_result_is_checked_against_the_guardrails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(
        dir.path(),
        "a.yaml",
        "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SelinuxProfile
metadata: {name: a}
spec:
  allow:
    bin_t: {file: [read]}
",
    );
    let out = dir.path().join("out.yaml");
    let bad = write(
        dir.path(),
        "b.yaml",
        "apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SelinuxProfile
metadata: {name: b}
spec:
  allow:
    shadow_t: {file: [read]}
",
    );
    let o = spoc(&["merge", &a, &bad, "-o", out.to_str().expect("utf-8")], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o)
            .contains("merged SelinuxProfile \"a\": error: spec.allow[shadow_t]: type shadow_t may not be allowed"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}
