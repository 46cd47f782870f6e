//! The two binaries' command lines: `spo-daemon` is `spo-operator daemon` without the
//! subcommand, and bad flags are refused before anything starts.

use std::collections::BTreeSet;
use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("NODE_NAME")
        .env_remove("KUBECONFIG")
        .env_remove("KUBELET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"))
}

/// The long options a `--help` text lists.
fn options(help: &str) -> BTreeSet<String> {
    help.split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches([',', '.', ')'])
                .split('=')
                .next()
                .unwrap_or(w)
                .to_owned()
        })
        .filter(|w| w.chars().skip(2).all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect()
}

#[test]
fn the_daemon_binary_takes_the_daemon_subcommands_flags() {
    let alone = run(env!("CARGO_BIN_EXE_spo-daemon"), &["--help"]);
    assert!(alone.status.success(), "{alone:?}");
    let sub = run(env!("CARGO_BIN_EXE_spo-operator"), &["daemon", "--help"]);
    assert!(sub.status.success(), "{sub:?}");
    let mut alone = options(&String::from_utf8_lossy(&alone.stdout));
    let sub = options(&String::from_utf8_lossy(&sub.stdout));
    // A binary's own flag; `spo-operator --version` is the top level's.
    assert!(alone.remove("--version"), "{alone:?}");
    for flag in [
        "--node-name",
        "--kubelet-dir",
        "--kinds",
        "--selinux-batch-max",
        "--apparmor-securityfs",
        "--oci-verify-key",
        "--metrics-addr",
    ] {
        assert!(alone.contains(flag), "spo-daemon --help lacks {flag}: {alone:?}");
    }
    assert_eq!(alone, sub, "spo-daemon and spo-operator daemon differ in their flags");
}

#[test]
fn the_daemon_binary_refuses_bad_flags_naming_them() {
    let bin = env!("CARGO_BIN_EXE_spo-daemon");
    let out = run(bin, &["--node-name", "n1", "--kinds", "seccomp,bogus"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kinds") && err.contains("bogus"), "{err}");

    let out = run(bin, &["--kinds", "seccomp"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--node-name"), "{err}");

    // No subcommand: `daemon` is an unexpected argument, not a node name.
    let out = run(bin, &["daemon", "--node-name", "n1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("daemon"), "{err}");
}
