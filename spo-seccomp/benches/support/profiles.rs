//! The profiles the seccomp benches share: Docker's default profile as it resolves on x86-64,
//! and a small service's allow list. Included with `#[path]`.

// Each bench that includes it uses part of it.
#![allow(dead_code)]

use libseccomp::{ScmpArch, ScmpSyscall};
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompOperator, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::syscalls;

/// The syscalls Docker's default profile allows only for some arguments.
const WITH_ARGUMENT_RULES: &[&str] = &["personality", "clone", "clone3", "socket"];

/// x86-64 syscalls libseccomp 2.5 knows that Docker's default profile (moby
/// `profiles/seccomp/default.json`) refuses a container with Docker's default capabilities:
/// those gated on other capabilities, and those it never lists.
pub const DOCKER_REFUSED: &[&str] = &[
    "_sysctl",
    "acct",
    "add_key",
    "afs_syscall",
    "bpf",
    "cachestat",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "fchmodat2",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "futex_requeue",
    "futex_wait",
    "futex_wake",
    "get_kernel_syms",
    "get_mempolicy",
    "getpmsg",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "map_shadow_stack",
    "mbind",
    "migrate_pages",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_madvise",
    "putpmsg",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "security",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "setdomainname",
    "sethostname",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "tuxcall",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vserver",
];

/// x86-64 syscall names of our table that libseccomp 2.5 knows under the same number, in
/// table order.
pub fn names_libseccomp_knows() -> Vec<&'static str> {
    syscalls::table(Arch::X86_64)
        .expect("x86-64 table")
        .by_name
        .iter()
        .filter(|(name, nr)| {
            ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664).is_ok_and(|s| i32::from(s) == *nr as i32)
        })
        .map(|(name, _)| *name)
        .collect()
}

fn allow(names: &[&str]) -> SeccompSyscall {
    SeccompSyscall {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        action: SeccompAction::Allow,
        errno_ret: None,
        args: None,
    }
}

fn allow_if(name: &str, index: u32, op: SeccompOperator, value: u64, value_two: u64) -> SeccompSyscall {
    SeccompSyscall {
        args: Some(vec![SeccompArg {
            index,
            value: Some(value),
            value_two: Some(value_two),
            op,
        }]),
        ..allow(&[name])
    }
}

fn errno_allow_list(rules: Vec<SeccompSyscall>) -> SeccompProfileSpec {
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action: SeccompAction::Errno,
        architectures: Some(vec![Arch::X86_64]),
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(rules),
        flags: None,
        base_profile_name: None,
    }
}

/// Docker's default profile as it resolves on x86-64 (its JSON lists about 370 names, many of
/// them for other architectures): one big allow rule, `personality` for five personas, `clone` without namespace flags, `socket` except AF_VSOCK, `clone3` ENOSYS.
pub fn docker_default_like(known: &[&str]) -> SeccompProfileSpec {
    let plain: Vec<&str> = known
        .iter()
        .copied()
        .filter(|n| !WITH_ARGUMENT_RULES.contains(n) && !DOCKER_REFUSED.contains(n))
        .collect();
    let mut rules = vec![allow(&plain)];
    for persona in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(allow_if("personality", 0, SeccompOperator::Eq, persona, 0));
    }
    // CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP
    rules.push(allow_if("clone", 0, SeccompOperator::MaskedEq, 0x7e02_0000, 0));
    rules.push(allow_if("socket", 0, SeccompOperator::Ne, 40, 0));
    rules.push(SeccompSyscall {
        names: vec!["clone3".to_owned()],
        action: SeccompAction::Errno,
        errno_ret: Some(38),
        args: None,
    });
    errno_allow_list(rules)
}

/// A small service's allow list.
pub fn allow_list_50(known: &[&str]) -> SeccompProfileSpec {
    // Spread over the table rather than its first 50 names (all starting with a-e).
    let step = known.len() / 50;
    let names: Vec<&str> = known.iter().step_by(step).take(50).copied().collect();
    assert_eq!(names.len(), 50);
    errno_allow_list(vec![allow(&names)])
}
