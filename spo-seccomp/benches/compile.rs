//! Our compiler against libseccomp, the way a container runtime uses it: the time from a
//! profile to a loadable cBPF program, and the size and longest executed path of what comes
//! out. The size table is printed first; criterion then times both compilers side by side.
//!
//! `cargo bench -p spo-seccomp --bench compile`; figures and their meaning in
//! `docs/benchmarks.md`.

use std::fs::File;
use std::hint::black_box;
use std::io::{Seek, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};

#[path = "../tests/support/runc_libseccomp.rs"]
mod runc_libseccomp;
use libseccomp::{ScmpArch, ScmpSyscall};
use runc_libseccomp::{libseccomp_export, libseccomp_program};
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompOperator, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::compile::bpf::to_bytes;
use spo_seccomp::compile::{CompileOptions, compile, longest_path};
use spo_seccomp::syscalls;

/// The syscalls Docker's default profile allows only for some arguments.
const WITH_ARGUMENT_RULES: &[&str] = &["personality", "clone", "clone3", "socket"];

/// x86-64 syscalls libseccomp 2.5 knows that Docker's default profile (moby
/// `profiles/seccomp/default.json`) refuses a container with Docker's default capabilities:
/// those gated on other capabilities, and those it never lists.
const DOCKER_REFUSED: &[&str] = &[
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
fn names_libseccomp_knows() -> Vec<&'static str> {
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
fn docker_default_like(known: &[&str]) -> SeccompProfileSpec {
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
fn allow_list_50(known: &[&str]) -> SeccompProfileSpec {
    // Spread over the table rather than its first 50 names (all starting with a-e).
    let step = known.len() / 50;
    let names: Vec<&str> = known.iter().step_by(step).take(50).copied().collect();
    assert_eq!(names.len(), 50);
    errno_allow_list(vec![allow(&names)])
}

fn print_size_table(profiles: &[(&str, SeccompProfileSpec)]) {
    println!();
    println!("| profile | compiler | instructions | longest path |");
    println!("| --- | --- | ---: | ---: |");
    for (name, spec) in profiles {
        let ours = compile(spec, &CompileOptions::default()).expect("compile").stats();
        println!("| {name} | ours | {} | {} |", ours.instructions, ours.longest_path);
        for optimize in [1, 2] {
            let theirs = libseccomp_program(spec, optimize);
            println!(
                "| {name} | libseccomp, optimize {optimize} | {} | {} |",
                theirs.len(),
                longest_path(&theirs)
            );
        }
    }
    println!();
}

/// Our program written as libseccomp's export writes it: into the same kind of reused,
/// truncated temp file, so both sides do the same work from profile to descriptor.
fn ours_export(spec: &SeccompProfileSpec, opts: &CompileOptions, out: &mut File) {
    let program = compile(spec, opts).expect("compile");
    out.set_len(0).expect("truncate");
    out.rewind().expect("rewind");
    out.write_all(&to_bytes(&program.insns)).expect("write");
}

fn bench_compile(c: &mut Criterion, profiles: &[(&str, SeccompProfileSpec)]) {
    let mut out = tempfile::tempfile().expect("temp file");
    for (name, spec) in profiles {
        let mut group = c.benchmark_group(format!("compile/{name}"));
        let opts = CompileOptions::default();
        // The like-for-like pair: profile to a program in a file descriptor, both sides.
        group.bench_function(BenchmarkId::from_parameter("ours"), |b| {
            b.iter(|| ours_export(black_box(spec), &opts, &mut out));
        });
        for optimize in [1, 2] {
            group.bench_function(BenchmarkId::from_parameter(format!("libseccomp-opt{optimize}")), |b| {
                b.iter(|| libseccomp_export(black_box(spec), optimize, &mut out))
            });
        }
        // For reference only: ours into memory, what the node and spoc use (no ratio).
        group.bench_function(BenchmarkId::from_parameter("ours-in-memory"), |b| {
            b.iter(|| compile(black_box(spec), &opts).expect("compile"));
        });
        group.finish();
    }
}

fn main() {
    let known = names_libseccomp_knows();
    let docker = docker_default_like(&known);
    let small = allow_list_50(&known);
    println!(
        "x86-64 names libseccomp knows: {}; docker-default-like profile allows {} unconditionally",
        known.len(),
        docker.rules()[0].names.len()
    );
    let profiles = [("docker-default-like", docker), ("allow-list-50", small)];
    print_size_table(&profiles);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    bench_compile(&mut c, &profiles);
    c.final_summary();
}
