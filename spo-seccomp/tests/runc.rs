//! Profiles we render, enforced by a real container runtime: each test builds an OCI bundle
//! with a static busybox rootfs, puts our node JSON (`render_node_json`) at `linux.seccomp` of
//! `config.json`, and runs it with `runc run`. runc parses the JSON, builds the filter with
//! libseccomp and installs it, so these tests catch a node file runc refuses as well as one it
//! accepts but enforces differently from what the profile says.
//!
//! Needs root, `runc` and a static `/bin/busybox` (Debian's `busybox-static`); without them
//! each test says `skipped: <reason>`, except in CI (`CI` set), where it fails instead.

use serde_json::Value;
use spo_model::seccomp::{SeccompAction, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::oci::render_node_json;
use spo_testkit::runc::{Bundle, require_runtime};

/// The node JSON runc gets at `linux.seccomp`.
fn node_json(profile: &SeccompProfileSpec) -> Option<Value> {
    let bytes = render_node_json(profile).expect("render node JSON");
    Some(serde_json::from_slice(&bytes).expect("node JSON is JSON"))
}

/// The allow list for a busybox container under runc 1.1, found by running the containers of
/// these tests with `defaultAction: SCMP_ACT_LOG` and reading the `type=1326` (SECCOMP) records
/// that runc's init and busybox left in the kernel log. Grouped by who makes the calls.
///
/// runc 1.1 with `noNewPrivileges` installs the filter as late as it can, so its init still
/// runs under it: it marks the fds it inherited close-on-exec by listing `/proc/self/fd`,
/// writes to the exec fifo, and calls execve.
const RUNC_INIT_AFTER_FILTER: &[&str] = &[
    "openat",
    "getdents64",
    "fstatfs",
    "close",
    "epoll_ctl",
    "write",
    "getpid",
    "execve",
];

/// runc's init is a Go program and libseccomp installs the filter on all its threads (TSYNC).
/// `futex` and `rt_sigreturn` were seen; the rest is what the Go scheduler, its preemption
/// signals and its memory manager may do at any moment, allowed so that the test does not
/// fail one run in a hundred on a busy machine.
const GO_RUNTIME: &[&str] = &[
    "futex",
    "rt_sigreturn",
    "rt_sigprocmask",
    "sigaltstack",
    "sched_yield",
    "nanosleep",
    "mmap",
    "munmap",
    "madvise",
    "gettid",
    "tgkill",
    "epoll_pwait",
    "clone",
    "exit",
];

/// A static busybox starting up and running `echo` or `true`.
const BUSYBOX: &[&str] = &[
    "execve",
    "brk",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "readlink",
    "getrandom",
    "mprotect",
    "prctl",
    "getuid",
    "write",
    "exit_group",
];

/// busybox `sh -c` running a script whose applets it forks (without exec) and waits for.
const BUSYBOX_SH: &[&str] = &[
    "rt_sigaction",
    "rt_sigreturn",
    "getpid",
    "getppid",
    "uname",
    "getcwd",
    "clone",
    "wait4",
];

fn profile(default_action: SeccompAction, rules: Vec<SeccompSyscall>) -> SeccompProfileSpec {
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action,
        architectures: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(rules),
        flags: None,
        base_profile_name: None,
    }
}

fn rule(
    names: impl IntoIterator<Item = impl Into<String>>,
    action: SeccompAction,
    errno_ret: Option<i64>,
) -> SeccompSyscall {
    SeccompSyscall {
        names: names.into_iter().map(Into::into).collect(),
        action,
        errno_ret,
        args: None,
    }
}

/// The busybox allow list: every group above, each name once.
fn busybox_allow_list() -> Vec<&'static str> {
    let mut names: Vec<&str> = [RUNC_INIT_AFTER_FILTER, GO_RUNTIME, BUSYBOX, BUSYBOX_SH].concat();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn permissive_profile_denies_only_mkdir() {
    let Some(rt) = require_runtime() else { return };
    let bundle = Bundle::new(&rt);
    let deny_mkdir = profile(
        SeccompAction::Allow,
        vec![rule(["mkdir", "mkdirat"], SeccompAction::Errno, Some(1))],
    );

    let out = bundle.run(node_json(&deny_mkdir), &["busybox", "sh", "-c", "echo hello; mkdir /x"]);
    assert!(
        out.stdout.contains("hello"),
        "runc refused the profile or the shell did not run: {out:?}"
    );
    assert!(!out.status.success(), "mkdir succeeded under the profile: {out:?}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir failed for another reason than EPERM: {out:?}"
    );

    let out = bundle.run(node_json(&deny_mkdir), &["busybox", "true"]);
    assert!(out.status.success(), "busybox true failed: {out:?}");

    // The control: the same mkdir without a profile works, so the EPERM above is the filter's.
    let out = bundle.run(None, &["busybox", "sh", "-c", "mkdir /y && echo made"]);
    assert!(
        out.status.success() && out.stdout.contains("made"),
        "mkdir fails even without a profile: {out:?}"
    );
}

#[test]
fn allow_list_profile_runs_busybox_and_denies_the_rest() {
    let Some(rt) = require_runtime() else { return };
    let bundle = Bundle::new(&rt);
    let allow_list = profile(
        SeccompAction::Errno,
        vec![rule(busybox_allow_list(), SeccompAction::Allow, None)],
    );
    assert!(
        !busybox_allow_list().iter().any(|n| n.starts_with("mkdir")),
        "the allow list must leave mkdir out for this test to mean anything"
    );

    let out = bundle.run(node_json(&allow_list), &["busybox", "echo", "ok"]);
    assert!(
        out.status.success() && out.stdout == "ok\n",
        "busybox echo under the allow list: {out:?}"
    );

    let out = bundle.run(node_json(&allow_list), &["busybox", "mkdir", "/x"]);
    assert!(!out.status.success(), "mkdir succeeded under the allow list: {out:?}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir failed for another reason than EPERM: {out:?}"
    );

    // A shell forking applets works too; only the mkdir in it is refused.
    let script = r#"echo before; mkdir /x; echo "mkdir status $?""#;
    let out = bundle.run(node_json(&allow_list), &["busybox", "sh", "-c", script]);
    assert!(
        out.status.success() && out.stdout == "before\nmkdir status 1\n",
        "shell under the allow list: {out:?}"
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir in the shell failed for another reason than EPERM: {out:?}"
    );
}
