//! Hostile and absurd input: precise errors, never a panic.

use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompOperator, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::SeccompError;
use spo_seccomp::compile::{CompileOptions, compile};
use spo_seccomp::syscalls;
use spo_seccomp::validate::check_spec;

fn spec(rules: Vec<SeccompSyscall>, arches: Option<Vec<Arch>>) -> SeccompProfileSpec {
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action: SeccompAction::Errno,
        architectures: arches,
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(rules),
        flags: None,
        base_profile_name: None,
    }
}

#[test]
fn ten_thousand_unconditional_rules_compile_small() {
    let names: Vec<&str> = syscalls::table(Arch::X86_64).expect("table").names().collect();
    let rules: Vec<SeccompSyscall> = (0..10_000)
        .map(|i| SeccompSyscall {
            names: vec![names[i % names.len()].to_owned()],
            action: SeccompAction::Allow,
            errno_ret: None,
            args: None,
        })
        .collect();
    let s = spec(rules, None);
    let p = compile(&s, &CompileOptions::default()).expect("duplicates collapse into one interval per run");
    assert!(p.stats().instructions < 64, "{}", p.stats().instructions);
    assert!(!check_spec(&s, Arch::X86_64).has_errors());
}

#[test]
fn ten_thousand_argument_rules_are_refused_as_too_long() {
    let rules: Vec<SeccompSyscall> = (0..10_000u64)
        .map(|i| SeccompSyscall {
            names: vec!["write".to_owned()],
            action: SeccompAction::Allow,
            errno_ret: None,
            args: Some(vec![SeccompArg {
                index: 0,
                value: Some(i),
                value_two: None,
                op: SeccompOperator::Eq,
            }]),
        })
        .collect();
    let s = spec(rules, None);
    match compile(&s, &CompileOptions::default()) {
        Err(SeccompError::TooLong { len, limit }) => assert!(len > limit),
        other => panic!("expected TooLong, got {other:?}"),
    }
    let problems = check_spec(&s, Arch::X86_64);
    assert!(
        problems
            .errors()
            .any(|p| p.path.as_str() == "spec.syscalls" && p.message.contains("4096")),
        "{problems}"
    );
}

#[test]
fn architectures_without_a_table_are_named() {
    let s = spec(vec![], Some(vec![Arch::X86_64, Arch::Parisc]));
    match compile(&s, &CompileOptions::default()) {
        Err(SeccompError::UnsupportedArch(a)) => assert_eq!(a, "SCMP_ARCH_PARISC"),
        other => panic!("expected UnsupportedArch, got {other:?}"),
    }
    let problems = check_spec(&s, Arch::X86_64);
    assert!(
        problems.errors().any(|p| p.path.as_str() == "spec.architectures[1]"),
        "{problems}"
    );
}

#[test]
fn hostile_syscall_names_are_errors() {
    for name in ["", "../etc/passwd", "read\0", "READ", "r e a d", &"a".repeat(10_000)] {
        let s = spec(
            vec![SeccompSyscall {
                names: vec![name.to_owned()],
                action: SeccompAction::Allow,
                errno_ret: None,
                args: None,
            }],
            None,
        );
        assert!(
            matches!(
                compile(&s, &CompileOptions::default()),
                Err(SeccompError::UnknownSyscall { .. })
            ),
            "{name:?}"
        );
        assert!(check_spec(&s, Arch::X86_64).has_errors(), "{name:?}");
    }
}
