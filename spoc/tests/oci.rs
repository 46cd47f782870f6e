//! `spoc push` and `spoc pull` against a real registry (Debian's docker-registry with TLS and
//! htpasswd, `spo_testkit::registry`), with keys made by openssl as a user would.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use spo_testkit::registry::Registry;

mod common;
use common::text;

fn spoc_env(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spoc"));
    cmd.args(args)
        .env_remove("PASSWORD")
        .env_remove("DOCKER_CONFIG")
        .env_remove("DISABLE_SIGNATURE_VERIFICATION")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn spoc");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input).expect("stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait spoc")
}

const PROFILE: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: web\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n    - action: SCMP_ACT_ALLOW\n      names: [read, write, exit_group]\n";

fn keys(dir: &Path) -> (String, String) {
    let (private, public) = spo_testkit::openssl_p256_keys(dir, "team");
    (private.display().to_string(), public.display().to_string())
}

#[test]
fn push_signed_then_pull_verified_through_a_real_registry() {
    let Some(reg) = Registry::require() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("web.yaml");
    std::fs::write(&profile, PROFILE).expect("profile");
    let (private, public) = keys(dir.path());
    let ca = reg.ca.display().to_string();
    let reference = format!("{}/team/web:v1", reg.host);
    let auth = [("PASSWORD", reg.password.as_str())];

    let out = spoc_env(
        &[
            "push",
            &reference,
            "-f",
            profile.to_str().expect("utf8"),
            "-u",
            &reg.user,
            "--ca-file",
            &ca,
            "--sign-key",
            &private,
            "-a",
            "team:web",
            "--format",
            "json",
        ],
        &auth,
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("push json");
    let digest = pushed["digest"].as_str().expect("digest").to_owned();
    assert_eq!(pushed["layers"][0]["kind"], "SeccompProfile");
    assert_eq!(pushed["signature"], format!("{}.sig", digest.replace(':', "-")));

    // Verified with the key, credentials from a docker config this time.
    let config_dir = dir.path().join("docker");
    std::fs::create_dir(&config_dir).expect("dir");
    std::fs::copy(reg.docker_config(), config_dir.join("config.json")).expect("config");
    let docker = [("DOCKER_CONFIG", config_dir.to_str().expect("utf8"))];
    let pulled = dir.path().join("pulled.yaml");
    let out = spoc_env(
        &[
            "pull",
            &reference,
            "--ca-file",
            &ca,
            "--verify-key",
            &public,
            "-o",
            pulled.to_str().expect("utf8"),
            "--format",
            "json",
        ],
        &docker,
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&pulled).expect("pulled"), PROFILE);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pull json");
    assert_eq!(report["digest"], digest.as_str());
    assert_eq!(report["kind"], "SeccompProfile");
    assert!(report["signedBy"].as_str().is_some_and(|k| k.len() == 12), "{report}");

    // To standard output, by digest.
    let pinned = format!("{}/team/web@{digest}", reg.host);
    let out = spoc_env(
        &["pull", &pinned, "--ca-file", &ca, "--verify-key", &public],
        &docker,
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), PROFILE);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signed by key"),
        "{}",
        text(&out)
    );

    // Without a key the check is the keyless one, which cannot pass here: refused, not
    // silently unchecked.
    let out = spoc_env(&["pull", &reference, "--ca-file", &ca], &docker, None);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keyless"),
        "{}",
        text(&out)
    );
    let out = spoc_env(
        &["pull", &reference, "--ca-file", &ca, "--disable-signature-verification"],
        &docker,
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature not checked"));
}

/// Arguments, environment and the expected error text of one refused command.
type Case<'a> = (Vec<String>, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_input_is_refused_before_and_at_the_registry() {
    let Some(reg) = Registry::require() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("web.yaml");
    std::fs::write(&profile, PROFILE).expect("profile");
    let ca = reg.ca.display().to_string();
    let p = profile.to_str().expect("utf8");
    let auth = [("PASSWORD", reg.password.as_str())];
    let cases: Vec<Case<'_>> = vec![
        (
            vec!["push".into(), format!("{}/Team/web", reg.host), "-f".into(), p.into()],
            &[],
            "component \"Team\"",
        ),
        (
            vec![
                "push".into(),
                format!("{}/t/w", reg.host),
                "-f".into(),
                p.into(),
                "-f".into(),
                p.into(),
            ],
            &[],
            "no platforms set",
        ),
        (
            vec![
                "push".into(),
                "registry.example.com/t/w".into(),
                "-f".into(),
                p.into(),
                "--plain-http".into(),
            ],
            &[],
            "only for a registry on this machine",
        ),
        (
            vec![
                "push".into(),
                format!("{}/t/w", reg.host),
                "-f".into(),
                p.into(),
                "-u".into(),
                "spo".into(),
            ],
            &[],
            "needs the password",
        ),
        (
            vec![
                "push".into(),
                format!("{}/t/w", reg.host),
                "-f".into(),
                p.into(),
                "--ca-file".into(),
                ca.clone(),
            ],
            &[],
            "no credentials given",
        ),
        (
            vec![
                "push".into(),
                format!("{}/t/w", reg.host),
                "-f".into(),
                p.into(),
                "--ca-file".into(),
                ca.clone(),
                "-u".into(),
                reg.user.clone(),
            ],
            &[("PASSWORD", "wrong")],
            "refused the credentials",
        ),
        (
            vec![
                "pull".into(),
                format!("{}/t/missing:v9", reg.host),
                "--ca-file".into(),
                ca.clone(),
                "-u".into(),
                reg.user.clone(),
                "-s".into(),
            ],
            &auth,
            "MANIFEST_UNKNOWN",
        ),
        (
            vec![
                "pull".into(),
                format!("{}/t/w", reg.host),
                "--format".into(),
                "json".into(),
                "-s".into(),
            ],
            &[],
            "give -o FILE",
        ),
    ];
    for (args, env, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = spoc_env(&args, env, None);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out)
        );
    }
    // A manifest that is not a profile never leaves the machine.
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n").expect("pod");
    let out = spoc_env(
        &[
            "push",
            &format!("{}/t/pod", reg.host),
            "-f",
            pod.to_str().expect("utf8"),
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a profile"),
        "{}",
        text(&out)
    );
}
