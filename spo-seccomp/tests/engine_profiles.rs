//! The profile format of Docker, podman and containerd (`archMap`, `includes`/`excludes`),
//! OCI bundle configs and plain runtime-spec JSON, read by `parse_runtime_profile` on a given
//! architecture, kernel and capability set. The fixtures are our own, written in that format.

use std::collections::BTreeSet;

use spo_model::contract::error_chain;
use spo_model::seccomp::{Arch, SeccompAction, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::oci::{
    DEFAULT_CONTAINER_CAPABILITIES, EngineContext, RuntimeProfile, from_runtime, parse_runtime_json,
    parse_runtime_profile,
};
use spo_seccomp::validate::check_spec;

const DEFAULT_LIKE: &str = include_str!("fixtures/engine-default-like.json");
const PODMAN_LIKE: &str = include_str!("fixtures/podman-like.json");
const RUNC_CONFIG: &str = include_str!("fixtures/runc-config.json");

fn ctx(arch: Arch, extra_caps: &[&str]) -> EngineContext {
    let mut capabilities: BTreeSet<String> = DEFAULT_CONTAINER_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
    capabilities.extend(extra_caps.iter().map(|c| (*c).to_owned()));
    EngineContext {
        arch,
        kernel: Some((6, 18)),
        capabilities,
    }
}

fn convert(text: &str, ctx: &EngineContext) -> RuntimeProfile {
    parse_runtime_profile(text, ctx).unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

fn error(text: &str, ctx: &EngineContext) -> String {
    let err = parse_runtime_profile(text, ctx).expect_err("must be refused");
    error_chain(&err)
}

/// The rules that name `name`.
fn rules_for<'a>(spec: &'a SeccompProfileSpec, name: &str) -> Vec<&'a SeccompSyscall> {
    spec.rules()
        .iter()
        .filter(|r| r.names.iter().any(|n| n == name))
        .collect()
}

fn has(spec: &SeccompProfileSpec, name: &str) -> bool {
    !rules_for(spec, name).is_empty()
}

fn note_for(notes: &[String], index: usize) -> Option<&str> {
    let prefix = format!("syscalls[{index}] (");
    notes.iter().find(|n| n.starts_with(&prefix)).map(String::as_str)
}

#[test]
fn x86_64_with_default_capabilities() {
    let out = convert(DEFAULT_LIKE, &ctx(Arch::X86_64, &[]));
    let spec = &out.spec;
    assert_eq!(spec.default_action, SeccompAction::Errno);
    assert_eq!(
        spec.architectures.as_deref(),
        Some(&[Arch::X86_64, Arch::X86, Arch::X32][..]),
        "the X86_64 entry of archMap and its subarchitectures"
    );

    // Kept: unconditional rules, amd64 rules, the kernel-gated ptrace, the capabilities the
    // container has, the rules excluded only for CAP_SYS_ADMIN, the old `name` spelling.
    for name in [
        "read",
        "personality",
        "ptrace",
        "arch_prctl",
        "modify_ldt",
        "clone",
        "clone3",
        "sync_file_range",
        "chown",
    ] {
        assert!(has(spec, name), "{name} should be in {:#?}", spec.rules());
    }
    // clone only with its argument rule; clone3 fails with ENOSYS.
    let clone = rules_for(spec, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args.as_ref().map(Vec::len), Some(1));
    let clone3 = rules_for(spec, "clone3");
    assert_eq!(
        (clone3.len(), clone3[0].action, clone3[0].errno_ret),
        (1, SeccompAction::Errno, Some(38))
    );

    // Left out: other architectures, missing capabilities, a kernel too old.
    for name in [
        "arm_fadvise64_64",
        "cacheflush",
        "s390_pci_mmio_read",
        "mount",
        "setns",
        "process_vm_readv",
        "settimeofday",
        "getpgid",
        "uselib",
        "bpf",
    ] {
        assert!(!has(spec, name), "{name} should not be in {:#?}", spec.rules());
    }
    // stime stays only through the unconditional rule, not through the CAP_SYS_TIME one.
    assert_eq!(rules_for(spec, "stime").len(), 1);

    // One note per rule left out, naming the rule and why, plus the archMap decision.
    let notes = &out.notes;
    assert!(notes[0].contains("archMap"), "{notes:#?}");
    assert!(
        notes[0].contains("SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32"),
        "{notes:#?}"
    );
    let left_out: Vec<&String> = notes.iter().filter(|n| n.contains("left out")).collect();
    assert_eq!(left_out.len(), 9, "{notes:#?}");
    assert_eq!(
        note_for(notes, 4),
        Some(
            "syscalls[4] (arm_fadvise64_64, cacheflush, set_tls) left out: includes.arches names arm, arm64, not amd64 (SCMP_ARCH_X86_64)"
        )
    );
    assert_eq!(
        note_for(notes, 6),
        Some(
            "syscalls[6] (mount, umount2, setns, unshare, pivot_root) left out: includes.caps needs CAP_SYS_ADMIN, which the container does not have"
        )
    );
    assert_eq!(
        note_for(notes, 8),
        Some(
            "syscalls[8] (clone, clone3) left out: includes.caps needs CAP_SYS_ADMIN, which the container does not have"
        )
    );
    assert_eq!(
        note_for(notes, 14),
        Some("syscalls[14] (getpgid) left out: includes.minKernel is 99.0 and the kernel is 6.18")
    );
    assert_eq!(
        note_for(notes, 15),
        Some("syscalls[15] (uselib) left out: excludes.minKernel is 5.0 and the kernel is 6.18")
    );
    assert_eq!(
        note_for(notes, 16),
        Some(
            "syscalls[16] (bpf) left out: includes.caps needs CAP_SYS_ADMIN, CAP_BPF, which the container does not have"
        )
    );
    assert!(
        note_for(notes, 0).is_none() && note_for(notes, 2).is_none(),
        "{notes:#?}"
    );

    // The converted profile is a valid SeccompProfile on x86-64: the names of other
    // architectures in the first rule are warnings only.
    let problems = check_spec(spec, Arch::X86_64);
    assert!(!problems.has_errors(), "{problems}");
    assert!(
        problems.iter().any(|p| p
            .message
            .contains("vm86old does not exist on SCMP_ARCH_X86_64, SCMP_ARCH_X32")),
        "{problems}"
    );
}

#[test]
fn uselib_on_an_old_kernel() {
    let mut old = ctx(Arch::X86_64, &[]);
    old.kernel = Some((4, 19));
    let out = convert(DEFAULT_LIKE, &old);
    let uselib = rules_for(&out.spec, "uselib");
    assert_eq!(uselib.len(), 1, "excludes.minKernel 5.0 keeps the rule below 5.0");
    assert_eq!((uselib[0].action, uselib[0].errno_ret), (SeccompAction::Errno, Some(1)));
    assert!(has(&out.spec, "ptrace"), "4.19 >= 4.8");
    old.kernel = Some((4, 4));
    let out = convert(DEFAULT_LIKE, &old);
    assert!(!has(&out.spec, "ptrace"), "4.4 < 4.8");
    assert!(
        note_for(&out.notes, 2).is_some_and(|n| n.ends_with("includes.minKernel is 4.8 and the kernel is 4.4")),
        "{:#?}",
        out.notes
    );
}

#[test]
fn sys_admin_brings_its_rules() {
    let out = convert(DEFAULT_LIKE, &ctx(Arch::X86_64, &["CAP_SYS_ADMIN"]));
    let spec = &out.spec;
    for name in ["mount", "umount2", "setns", "unshare", "pivot_root"] {
        assert!(has(spec, name), "{name}");
    }
    // clone and clone3 unconditionally; the argument rule and the ENOSYS rule are excluded.
    let clone = rules_for(spec, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args, None);
    let clone3 = rules_for(spec, "clone3");
    assert_eq!((clone3.len(), clone3[0].action), (1, SeccompAction::Allow));
    assert_eq!(
        note_for(&out.notes, 7),
        Some("syscalls[7] (clone) left out: excludes.caps names CAP_SYS_ADMIN, which the container has")
    );
    assert!(note_for(&out.notes, 9).is_some_and(|n| n.contains("excludes.caps names CAP_SYS_ADMIN")));
    // bpf needs CAP_BPF too.
    assert!(!has(spec, "bpf"));
    assert!(has(
        &convert(DEFAULT_LIKE, &ctx(Arch::X86_64, &["CAP_SYS_ADMIN", "CAP_BPF"])).spec,
        "bpf"
    ));
    assert!(!check_spec(spec, Arch::X86_64).has_errors());
}

#[test]
fn arches_pick_their_arch_map_entry() {
    let arm = convert(DEFAULT_LIKE, &ctx(Arch::Aarch64, &[]));
    assert_eq!(arm.spec.architectures.as_deref(), Some(&[Arch::Aarch64, Arch::Arm][..]));
    assert!(has(&arm.spec, "cacheflush") && has(&arm.spec, "arm_fadvise64_64"));
    assert!(!has(&arm.spec, "arch_prctl") && !has(&arm.spec, "s390_pci_mmio_read"));

    let s390x = convert(DEFAULT_LIKE, &ctx(Arch::S390x, &[]));
    assert_eq!(
        s390x.spec.architectures.as_deref(),
        Some(&[Arch::S390x, Arch::S390][..])
    );
    assert!(has(&s390x.spec, "s390_pci_mmio_write"));
    // The clone argument rule is excluded on s390x (its clone takes the flags second).
    assert!(
        note_for(&s390x.notes, 7).is_some_and(|n| n.ends_with("excludes.arches names s390x (SCMP_ARCH_S390X)")),
        "{:#?}",
        s390x.notes
    );

    let riscv = convert(DEFAULT_LIKE, &ctx(Arch::Riscv64, &[]));
    assert_eq!(
        riscv.spec.architectures.as_deref(),
        Some(&[Arch::Riscv64][..]),
        "null subArchitectures"
    );

    let x86 = convert(DEFAULT_LIKE, &ctx(Arch::X86, &[]));
    assert_eq!(x86.spec.architectures, None, "no X86 entry: no architectures");
    assert!(has(&x86.spec, "arch_prctl"), "includes.arches names x86");
    assert!(
        x86.notes[0].contains("archMap has no entry for SCMP_ARCH_X86"),
        "{:#?}",
        x86.notes
    );

    let native = convert(DEFAULT_LIKE, &ctx(Arch::Native, &[]));
    let resolved = convert(DEFAULT_LIKE, &ctx(spo_seccomp::syscalls::native_arch(), &[]));
    assert_eq!(native, resolved, "SCMP_ARCH_NATIVE is this machine's architecture");
}

#[test]
fn podman_format_errno_names() {
    let out = convert(PODMAN_LIKE, &ctx(Arch::X86_64, &[]));
    let spec = &out.spec;
    assert_eq!(
        rules_for(spec, "mkdirat")[0].errno_ret,
        Some(38),
        "errno ENOSYS wins over errnoRet"
    );
    assert_eq!(rules_for(spec, "setns")[0].errno_ret, Some(1));
    assert_eq!(rules_for(spec, "read")[0].args, None, "args: null");
    let admin = convert(PODMAN_LIKE, &ctx(Arch::X86_64, &["CAP_SYS_ADMIN"]));
    assert!(!has(&admin.spec, "setns"));

    // podman's own default says defaultErrno ENOSYS, which a SeccompProfile cannot hold.
    let enosys = PODMAN_LIKE.replace(r#""defaultErrno": "EPERM""#, r#""defaultErrno": "ENOSYS""#);
    let msg = error(&enosys, &ctx(Arch::X86_64, &[]));
    assert!(
        msg.contains("defaultErrnoRet: 38 cannot be expressed in a SeccompProfile"),
        "{msg}"
    );
    let bogus = PODMAN_LIKE.replace(r#""errno": "ENOSYS""#, r#""errno": "ENOSIS""#);
    let msg = error(&bogus, &ctx(Arch::X86_64, &[]));
    assert!(msg.contains("syscalls[1].errno: unknown errno \"ENOSIS\""), "{msg}");
}

#[test]
fn docker_default_errno_eperm_is_accepted() {
    let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#;
    assert!(convert(text, &ctx(Arch::X86_64, &[])).notes.is_empty());
    let msg = error(&text.replace(":1,", ":38,"), &ctx(Arch::X86_64, &[]));
    assert!(msg.contains("defaultErrnoRet: 38"), "{msg}");
}

#[test]
fn plain_runtime_json_converts_as_before() {
    let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],"flags":["SECCOMP_FILTER_FLAG_LOG"],"listenerPath":"/var/run/security-profiles-operator/agent.sock","listenerMetadata":"meta","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":4294967295,"valueTwo":8,"op":"SCMP_CMP_MASKED_EQ"}]},{"names":["mkdir","rmdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38},{"names":["ptrace"],"action":"SCMP_ACT_NOTIFY"}]}"#;
    let before = from_runtime(&parse_runtime_json(text).expect("parse")).expect("convert");
    for arch in [Arch::X86_64, Arch::Aarch64, Arch::S390x] {
        let out = convert(text, &ctx(arch, &[]));
        assert_eq!(out.spec, before, "{arch}: the context changes nothing");
        assert!(out.notes.is_empty(), "{:#?}", out.notes);
    }
}

#[test]
fn runc_config_linux_seccomp_converts() {
    let out = convert(RUNC_CONFIG, &ctx(Arch::X86_64, &[]));
    assert_eq!(out.notes, vec!["read linux.seccomp of an OCI bundle config".to_owned()]);
    assert_eq!(out.spec.architectures.as_deref(), Some(&[Arch::X86_64, Arch::X86][..]));
    assert_eq!(rules_for(&out.spec, "mkdir")[0].errno_ret, Some(38));

    // The object alone (what spoc passes) converts to the same spec.
    let config: serde_json::Value = serde_json::from_str(RUNC_CONFIG).expect("json");
    let object = serde_json::to_string(&config["linux"]["seccomp"]).expect("json");
    assert_eq!(convert(&object, &ctx(Arch::X86_64, &[])).spec, out.spec);

    // Strict inside linux.seccomp, with the path from the top of the file.
    let typo = RUNC_CONFIG.replace(r#""errnoRet": 38"#, r#""errnoret": 38"#);
    let msg = error(&typo, &ctx(Arch::X86_64, &[]));
    assert!(msg.contains("at field linux.seccomp.syscalls[1].errnoret"), "{msg}");
    let msg = error(r#"{"ociVersion":"1.2.0","linux":{}}"#, &ctx(Arch::X86_64, &[]));
    assert!(
        msg.contains("linux.seccomp: the OCI bundle config has no seccomp profile"),
        "{msg}"
    );
}

#[test]
fn bad_input_names_the_field() {
    let x86_64 = ctx(Arch::X86_64, &[]);
    let cases: &[(&str, &str, &str)] = &[
        // (what is replaced, by what, what the error must say)
        (
            r#""minKernel": "4.8""#,
            r#""minKernel": "banana""#,
            "at field syscalls[2].includes.minKernel",
        ),
        (
            r#""minKernel": "4.8""#,
            r#""minKernel": "4.8.1""#,
            "invalid kernel version \"4.8.1\"",
        ),
        (
            r#""minKernel": "4.8""#,
            r#""minKernel": "0.0""#,
            "0.0 is not a kernel version",
        ),
        (r#""minKernel": "4.8""#, r#""minKernel": "4.256""#, "from 0 to 255"),
        (
            r#""minKernel": "4.8""#,
            r#""minKernel": 4.8"#,
            "at field syscalls[2].includes.minKernel",
        ),
        (
            r#""caps": ["CAP_SYS_PTRACE"]"#,
            r#""caps": ["CAP_SYS_PTRAСE"]"#,
            "at field syscalls[10].includes.caps[0]",
        ),
        (
            r#""caps": ["CAP_SYS_PTRACE"]"#,
            r#""caps": ["sys_ptrace"]"#,
            "write CAP_SYS_PTRACE: engines compare capability names exactly",
        ),
        (
            r#""caps": ["CAP_SYS_PTRACE"]"#,
            r#""caps": ["CAP_SYS_PTRAC"]"#,
            "unknown capability \"CAP_SYS_PTRAC\" (did you mean CAP_SYS_PTRACE?)",
        ),
        (
            r#""caps": ["CAP_SYS_TIME"]"#,
            r#""caps": "CAP_SYS_TIME""#,
            "at field syscalls[11].includes.caps",
        ),
        (
            r#""arches": ["arm", "arm64"]"#,
            r#""arches": ["arm", "aarch64"]"#,
            "at field syscalls[4].includes.arches[1]",
        ),
        (
            r#""arches": ["arm", "arm64"]"#,
            r#""arches": ["arm", "SCMP_ARCH_AARCH64"]"#,
            "write arm64: arches use libseccomp's names",
        ),
        (
            r#""includes": { "minKernel": "99.0" }"#,
            r#""includes": { "minKernal": "99.0" }"#,
            "at field syscalls[14].includes.minKernal",
        ),
        (
            r#""name": "sync_file_range""#,
            r#""nmae": "sync_file_range""#,
            "at field syscalls[12].nmae",
        ),
        (
            r#""name": "sync_file_range""#,
            r#""name": "sync_file_range", "names": ["fsync"]"#,
            "syscalls[12]: name and names are both set",
        ),
        (
            r#""name": "sync_file_range""#,
            r#""names": []"#,
            "syscalls[12].names: the rule names no syscall",
        ),
        (
            r#""errnoRet": 38"#,
            r#""errnoRet": "ENOSYS""#,
            "at field syscalls[9].errnoRet",
        ),
        (
            r#""errnoRet": 38"#,
            r#""errnoRet": -38"#,
            "at field syscalls[9].errnoRet",
        ),
        (
            r#""architecture": "SCMP_ARCH_RISCV64""#,
            r#""architecture": "SCMP_ARCH_RISCV""#,
            "at field archMap[3].architecture",
        ),
        (
            r#""subArchitectures": ["SCMP_ARCH_ARM"]"#,
            r#""subArchitectures": ["arm"]"#,
            "at field archMap[1].subArchitectures[0]",
        ),
        (
            r#""subArchitectures": ["SCMP_ARCH_ARM"]"#,
            r#""subArchitecture": ["SCMP_ARCH_ARM"]"#,
            "at field archMap[1].subArchitecture",
        ),
        (
            r#""defaultErrnoRet": 1,"#,
            r#""defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],"#,
            "architectures and archMap are both set",
        ),
        (
            r#""defaultAction": "SCMP_ACT_ERRNO""#,
            r#""defaultAction": "SCMP_ACT_EPERM""#,
            "at field defaultAction",
        ),
        (
            r#""action": "SCMP_ACT_ALLOW""#,
            r#""action": true"#,
            "at field syscalls[0].action",
        ),
        (
            r#""comment": "old kernels only""#,
            r#""comment": 5"#,
            "at field syscalls[15].comment",
        ),
        (
            r#""comment": "old kernels only""#,
            r#""coment": "old kernels only""#,
            "at field syscalls[15].coment",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(DEFAULT_LIKE.contains(from), "the fixture holds {from}");
        let msg = error(&DEFAULT_LIKE.replacen(from, to, 1), &x86_64);
        assert!(msg.contains(expected), "{to}: {msg}");
    }
}

#[test]
fn min_kernel_needs_a_known_kernel() {
    let mut unknown = ctx(Arch::X86_64, &[]);
    unknown.kernel = None;
    let msg = error(DEFAULT_LIKE, &unknown);
    assert!(
        msg.contains("syscalls[2].includes.minKernel: the kernel version is not known"),
        "{msg}"
    );
    // Without minKernel rules the kernel does not matter.
    assert!(parse_runtime_profile(PODMAN_LIKE, &unknown).is_ok());
}

#[test]
fn this_machine_reads_the_running_kernel() {
    let here = EngineContext::this_machine();
    assert_eq!(here.arch, spo_seccomp::syscalls::native_arch());
    assert!(here.capabilities.contains("CAP_CHOWN") && !here.capabilities.contains("CAP_SYS_ADMIN"));
    if std::path::Path::new("/proc/sys/kernel/osrelease").exists() {
        assert!(here.kernel.is_some());
    }
}
