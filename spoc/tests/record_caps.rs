//! `spoc record -t apparmor` grants the capabilities a program needed and no others: checks the
//! kernel makes without auditing them (CAP_SYS_ADMIN for the memory overcommit heuristic on
//! every mmap, for one) are not needs, and the summary counts what the profile holds. Needs
//! root and BTF.

mod common;
use std::path::Path;
use std::process::{Command, Output};

use common::can_record;

/// Runs `spoc record -t apparmor --format json -o <dir>/out.yaml [extra] -- command` with the
/// environment `env`; returns the output, the profile's `allowedCapabilities` and the summary.
fn record_apparmor(
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    command: &[&str],
) -> (Output, Vec<String>, serde_json::Value) {
    let profile = dir.join("out.yaml");
    let mut args = vec![
        "record",
        "-t",
        "apparmor",
        "--format",
        "json",
        "-o",
        profile.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(command);
    let out = Command::new(env!("CARGO_BIN_EXE_spoc"))
        .args(&args)
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .envs(env.iter().copied())
        .output()
        .expect("run spoc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "spoc {args:?}: {stderr}");
    let text = std::fs::read_to_string(&profile).expect("profile written");
    let yaml: serde_norway::Value = serde_norway::from_str(&text).expect("profile YAML");
    let caps = yaml["spec"]["abstract"]["capability"]["allowedCapabilities"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|c| c.as_str().expect("capability name").to_owned())
                .collect()
        })
        .unwrap_or_default();
    // The command shares spoc's standard output: the summary is the object it ends with.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let start = if stdout.starts_with('{') {
        0
    } else {
        stdout.rfind("\n{").map_or(0, |i| i + 1)
    };
    let summary: serde_json::Value =
        serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("JSON summary: {e}: {stdout}"));
    (out, caps, summary)
}

/// The summary's capability count.
fn summary_capabilities(summary: &serde_json::Value) -> u64 {
    summary["resources"]["capabilities"]
        .as_u64()
        .unwrap_or_else(|| panic!("no capability count in {summary}"))
}

#[test]
fn programs_that_need_no_privilege_get_no_capability() {
    if !can_record("programs_that_need_no_privilege_get_no_capability") {
        return;
    }
    for command in [&["/bin/true"][..], &["ls", "/"], &["date"]] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, caps, summary) = record_apparmor(dir.path(), &[], &[], command);
        assert!(caps.is_empty(), "{command:?} was granted {caps:?}");
        assert_eq!(summary_capabilities(&summary), 0, "{command:?}: {summary}");
    }
}

#[test]
fn chown_to_another_user_gets_exactly_chown() {
    if !can_record("chown_to_another_user_gets_exactly_chown") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("owned");
    std::fs::write(&file, "x").expect("temp file");
    let (_, caps, summary) = record_apparmor(dir.path(), &[], &[], &["chown", "65534", file.to_str().expect("utf-8")]);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&file).expect("stat").uid(),
        65534,
        "chown did not happen"
    );
    assert_eq!(caps, ["chown"]);
    assert_eq!(summary_capabilities(&summary), 1, "{summary}");
}

/// A check the kernel refused (an unprivileged chown of someone else's file) grants nothing,
/// and the summary must not count it either.
#[test]
fn a_refused_capability_is_neither_granted_nor_counted() {
    if !can_record("a_refused_capability_is_neither_granted_nor_counted") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = dir.path().join("roots");
    std::fs::write(&file, "x").expect("temp file");
    // As nobody (spoc runs the command as SUDO_UID): chown of a file root owns needs CAP_CHOWN,
    // which nobody lacks; the command fails.
    let (_, caps, summary) = record_apparmor(
        dir.path(),
        &["--allow-failure"],
        &[("SUDO_UID", "65534"), ("SUDO_GID", "65534")],
        &["chown", "0", file.to_str().expect("utf-8")],
    );
    assert_eq!(summary["exit_status"], 1, "{summary}");
    assert!(caps.is_empty(), "{caps:?}");
    assert_eq!(summary_capabilities(&summary), 0, "{summary}");
}
