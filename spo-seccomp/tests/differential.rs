//! Our compiler against libseccomp: both programs run in our interpreter over many
//! `seccomp_data` inputs and must return the same action for every one.
//!
//! libseccomp is driven the way runc drives it (rules with the default action skipped,
//! comparisons of one argument split into separate rules), so "the same action" means "what
//! the container runtime would enforce".

use libseccomp::{ScmpArch, ScmpSyscall};
use proptest::prelude::*;

#[path = "support/kernel.rs"]
mod kernel;
#[path = "support/reference.rs"]
mod reference;
use reference::reference;
#[path = "support/runc_libseccomp.rs"]
mod runc_libseccomp;
use runc_libseccomp::{libseccomp_program, scmp_arch};
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompOperator, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::compile::interp::{SeccompData, run};
use spo_seccomp::compile::{CompileOptions, compile};
use spo_seccomp::syscalls;

fn inputs(spec: &SeccompProfileSpec, extra_values: &[u64]) -> Vec<SeccompData> {
    let mut arches = vec![Arch::X86_64];
    arches.extend(spec.architectures.iter().flatten().copied());
    arches.dedup();
    let mut values: Vec<u64> = vec![0, 1, 2, 0xffff_ffff, 0x1_0000_0000, u64::MAX, 0x8000_0000_0000_0000];
    values.extend_from_slice(extra_values);
    for r in spec.rules() {
        for a in r.args.iter().flatten() {
            for v in [a.value.unwrap_or(0), a.value_two.unwrap_or(0)] {
                values.extend([v, v.wrapping_add(1), v.wrapping_sub(1), v ^ 0xffff_ffff, v ^ (1 << 40)]);
            }
        }
    }
    values.sort();
    values.dedup();
    let mut out = Vec::new();
    for arch in arches {
        let audit = syscalls::audit_arch(arch).expect("audit arch");
        let table = syscalls::table(arch).expect("table");
        let mut nrs: Vec<u32> = table.by_name.iter().map(|(_, n)| *n).collect();
        nrs.extend([999, 0x3fff_ffff, 0x4000_0000, 0x4000_0001, 0x4000_0200, 0xffff_ffff]);
        for nr in nrs {
            out.push(
                SeccompData {
                    nr,
                    ..Default::default()
                }
                .with_arch(audit),
            );
        }
        // Argument sweeps only for syscalls with argument rules.
        for r in spec.rules().iter().filter(|r| r.args.is_some()) {
            for name in &r.names {
                let Some(nr) = table.number(name) else { continue };
                // A 32-bit task's arguments are zero-extended by the kernel.
                let narrow = |v: u64| {
                    if spo_seccomp::compile::is_32_bit(arch) {
                        v & 0xffff_ffff
                    } else {
                        v
                    }
                };
                for (i, v) in values.iter().enumerate() {
                    for idx in 0..6 {
                        let mut args = [narrow(values[(i + idx) % values.len()]); 6];
                        args[idx] = narrow(*v);
                        out.push(SeccompData {
                            nr,
                            arch: audit,
                            instruction_pointer: 0,
                            args,
                        });
                    }
                }
            }
        }
    }
    out
}

trait WithArch {
    fn with_arch(self, audit: u32) -> Self;
}
impl WithArch for SeccompData {
    fn with_arch(mut self, audit: u32) -> Self {
        self.arch = audit;
        self
    }
}

fn assert_same(spec: &SeccompProfileSpec) {
    let ours = compile(spec, &CompileOptions::default()).expect("compile");
    let theirs = libseccomp_program(spec, 2);
    let all = inputs(spec, &[]);
    let mut compared = 0usize;
    for d in all.iter().filter(|d| libseccomp_knows(d)) {
        compared += 1;
        let a = run(&ours.insns, d).expect("our program runs");
        let b = run(&theirs, d).expect("libseccomp's program runs");
        assert_eq!(
            a.ret,
            b.ret,
            "different action for nr={} arch={:#x} args={:x?}\nours:\n{}\nspec: {spec:#?}",
            d.nr,
            d.arch,
            d.args,
            ours.disassemble()
        );
    }
    assert!(
        compared * 10 >= all.len() * 6,
        "only {compared} of {} inputs were comparable",
        all.len()
    );
}

/// libseccomp 2.5 knows syscalls up to about Linux 6.6, and not every one on every ABI;
/// inputs naming a syscall it does not know on that architecture are not comparable.
fn libseccomp_knows(d: &SeccompData) -> bool {
    let arch = match d.arch {
        0xC000_003E if d.nr != u32::MAX && d.nr & 0x4000_0000 != 0 => Arch::X32,
        0xC000_003E => Arch::X86_64,
        0x4000_0003 => Arch::X86,
        _ => return true,
    };
    match syscalls::table(arch).and_then(|t| t.name(d.nr)) {
        None => true,
        Some(name) => ScmpSyscall::from_name_by_arch(name, scmp_arch(arch)).is_ok_and(|s| i32::from(s) as u32 == d.nr),
    }
}

fn rule(names: &[&str], action: SeccompAction, args: Vec<SeccompArg>) -> SeccompSyscall {
    SeccompSyscall {
        names: names.iter().map(|s| (*s).to_owned()).collect(),
        action,
        errno_ret: None,
        args: if args.is_empty() { None } else { Some(args) },
    }
}

fn spec(default: SeccompAction, arches: Vec<Arch>, rules: Vec<SeccompSyscall>) -> SeccompProfileSpec {
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action: default,
        architectures: if arches.is_empty() { None } else { Some(arches) },
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(rules),
        flags: None,
        base_profile_name: None,
    }
}

fn arg(index: u32, op: SeccompOperator, value: u64, value_two: u64) -> SeccompArg {
    SeccompArg {
        index,
        value: Some(value),
        value_two: Some(value_two),
        op,
    }
}

#[test]
fn simple_allow_list() {
    assert_same(&spec(
        SeccompAction::Errno,
        vec![],
        vec![rule(
            &["read", "write", "exit_group", "openat"],
            SeccompAction::Allow,
            vec![],
        )],
    ));
}

#[test]
fn every_operator_on_64_bit_values() {
    use SeccompOperator::*;
    for op in [Ne, Lt, Le, Eq, Ge, Gt] {
        for v in [0u64, 5, 0xffff_ffff, 0x1_0000_0005, u64::MAX - 1] {
            assert_same(&spec(
                SeccompAction::Errno,
                vec![],
                vec![rule(&["write"], SeccompAction::Allow, vec![arg(2, op, v, 0)])],
            ));
        }
    }
    assert_same(&spec(
        SeccompAction::Allow,
        vec![],
        vec![rule(
            &["clone"],
            SeccompAction::Errno,
            vec![arg(0, MaskedEq, 0x7e02_0000, 0x1000_0000)],
        )],
    ));
    assert_same(&spec(
        SeccompAction::Errno,
        vec![],
        vec![rule(
            &["personality"],
            SeccompAction::Allow,
            vec![arg(0, MaskedEq, 0xffff_0000_ffff_00ff, 0x1234_0000_0000_0008)],
        )],
    ));
}

#[test]
fn multi_arch_x86_family() {
    let rules = vec![
        rule(
            &["read", "write", "close", "socketcall", "_llseek"],
            SeccompAction::Allow,
            vec![],
        ),
        rule(&["ptrace"], SeccompAction::Errno, vec![]),
    ];
    for arches in [
        vec![Arch::X86_64],
        vec![Arch::X86_64, Arch::X86],
        vec![Arch::X86_64, Arch::X86, Arch::X32],
        vec![Arch::X86_64, Arch::X32],
    ] {
        assert_same(&spec(SeccompAction::KillProcess, arches, rules.clone()));
    }
}

fn action_strategy() -> impl Strategy<Value = SeccompAction> {
    use SeccompAction::*;
    prop::sample::select(vec![KillProcess, KillThread, Trap, Errno, Trace, Log, Allow])
}

fn op_strategy() -> impl Strategy<Value = SeccompOperator> {
    prop::sample::select(SeccompOperator::ALL.to_vec())
}

fn value_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..4,
        Just(0xffff_ffff),
        Just(0x1_0000_0000),
        any::<u64>(),
        (0u64..3).prop_map(|v| (v << 32) | 7)
    ]
}

fn arg_strategy() -> impl Strategy<Value = SeccompArg> {
    (0u32..6, op_strategy(), value_strategy(), value_strategy()).prop_map(|(index, op, value, value_two)| {
        let value_two = if op == SeccompOperator::MaskedEq {
            value_two & value
        } else {
            0
        };
        SeccompArg {
            index,
            value: Some(value),
            value_two: Some(value_two),
            op,
        }
    })
}

/// Random profiles: each syscall gets either one unconditional rule or conditional rules
/// (any number, possibly several comparisons of one argument).
fn spec_strategy() -> impl Strategy<Value = SeccompProfileSpec> {
    spec_strategy_with(3)
}

/// The domain where libseccomp 2.5 is a trustworthy oracle: at most one conditional rule per
/// syscall and no argument compared twice. With several rules on one syscall libseccomp
/// merges their comparison trees and reuses a loaded half-word for the other half (found by
/// this test: `_sysctl` with `args[1] < 2^32` OR `args[1] < 0` kills the process for
/// `args[1] = 2`), so those cases are checked against the reference evaluator only.
fn libseccomp_domain() -> impl Strategy<Value = SeccompProfileSpec> {
    spec_strategy_with(2).prop_map(|mut s| {
        if let Some(rules) = s.syscalls.as_mut() {
            let mut seen = std::collections::BTreeSet::new();
            rules.retain_mut(|r| {
                if let Some(args) = r.args.as_mut() {
                    let mut idx = std::collections::BTreeSet::new();
                    args.retain(|a| idx.insert(a.index));
                }
                seen.insert(r.names[0].clone())
            });
        }
        s
    })
}

fn spec_strategy_with(max_rules: usize) -> impl Strategy<Value = SeccompProfileSpec> {
    // Only names libseccomp 2.5 knows (it stops at Linux 5.x-era syscalls; ours go further).
    let names: Vec<&'static str> = syscalls::table(Arch::X86_64)
        .expect("table")
        .by_name
        .iter()
        .filter(|(n, nr)| ScmpSyscall::from_name_by_arch(n, ScmpArch::X8664).is_ok_and(|s| i32::from(s) == *nr as i32))
        .map(|(n, _)| *n)
        .collect();
    let per_syscall = (
        prop::sample::select(names),
        action_strategy(),
        prop::option::of(0i64..100),
        prop::collection::vec(prop::collection::vec(arg_strategy(), 1..4), 0..max_rules),
    );
    (
        action_strategy(),
        prop::sample::select(vec![
            vec![],
            vec![Arch::X86_64],
            vec![Arch::X86_64, Arch::X86],
            vec![Arch::X86_64, Arch::X32],
            vec![Arch::X86_64, Arch::X86, Arch::X32],
        ]),
        prop::collection::vec(per_syscall, 0..40),
    )
        .prop_map(|(default, arches, syscalls)| {
            let mut seen = std::collections::BTreeSet::new();
            let mut rules = Vec::new();
            for (name, action, errno, conditional) in syscalls {
                if !seen.insert(name) {
                    continue;
                }
                let errno_ret = if matches!(action, SeccompAction::Errno | SeccompAction::Trace) {
                    errno
                } else {
                    None
                };
                if conditional.is_empty() {
                    rules.push(SeccompSyscall {
                        names: vec![name.to_owned()],
                        action,
                        errno_ret,
                        args: None,
                    });
                } else {
                    for args in conditional {
                        rules.push(SeccompSyscall {
                            names: vec![name.to_owned()],
                            action,
                            errno_ret,
                            args: Some(args),
                        });
                    }
                }
            }
            spec(default, arches, rules)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_profiles_match_libseccomp(s in libseccomp_domain()) {
        assert_same(&s);
    }

    #[test]
    fn random_profiles_match_the_reference_semantics(s in spec_strategy()) {
        let ours = compile(&s, &CompileOptions::default()).expect("compile");
        for d in inputs(&s, &[]) {
            let got = run(&ours.insns, &d).expect("runs").ret;
            let want = reference(&s, &d);
            prop_assert_eq!(got, want, "nr={} arch={:#x} args={:x?}\n{}", d.nr, d.arch, d.args, ours.disassemble());
        }
    }

    #[test]
    fn syscalls_without_argument_rules_never_read_arguments(s in spec_strategy()) {
        let ours = compile(&s, &CompileOptions::default()).expect("compile");
        let with_args: std::collections::BTreeSet<&str> = s.rules().iter().filter(|r| r.args.is_some()).flat_map(|r| r.names.iter().map(String::as_str)).collect();
        let table = syscalls::table(Arch::X86_64).expect("table");
        for (name, nr) in table.by_name {
            if with_args.contains(name) {
                continue;
            }
            let r = run(&ours.insns, &SeccompData { nr: *nr, arch: 0xC000_003E, instruction_pointer: 0, args: [u64::MAX; 6] }).expect("run");
            prop_assert!(!r.read_args, "{name} read its arguments");
        }
    }
}

#[test]
fn unconditional_and_conditional_rules_on_one_syscall() {
    use SeccompOperator::*;
    // An unconditional rule plus argument rules with other actions on the same syscall, in
    // both orders of restrictiveness.
    for (plain, conditional) in [
        (SeccompAction::Allow, SeccompAction::Errno),
        (SeccompAction::Errno, SeccompAction::Allow),
    ] {
        let s = spec(
            SeccompAction::KillProcess,
            vec![],
            vec![
                rule(&["write"], plain, vec![]),
                rule(&["write"], conditional, vec![arg(0, Eq, 5, 0)]),
            ],
        );
        assert_same(&s);
    }
}

/// The calls of `inputs` the kernel test makes: all that the kernel does not kill (per our
/// program), up to 1,500, and up to 24 that it kills (each kill costs a new child), picked
/// evenly; ia32 calls only where the kernel runs them.
fn kernel_calls(spec: &SeccompProfileSpec, ours: &[spo_seccomp::compile::bpf::Insn], ia32: bool) -> Vec<SeccompData> {
    let all: Vec<SeccompData> = inputs(spec, &[])
        .into_iter()
        .filter(|d| d.arch == 0xC000_003E || (ia32 && d.arch == 0x4000_0003))
        .filter(|d| kernel::makeable(&call_of(d)))
        .collect();
    let (killed, rest): (Vec<SeccompData>, Vec<SeccompData>) = all
        .into_iter()
        .partition(|d| kernel::expected(run(ours, d).expect("runs").ret) == kernel::Verdict::Killed);
    let pick = |v: Vec<SeccompData>, max: usize| -> Vec<SeccompData> {
        let step = v.len().div_ceil(max).max(1);
        v.into_iter().step_by(step).collect()
    };
    let mut calls = pick(rest, 1500);
    calls.extend(pick(killed, 24));
    calls
}

fn call_of(d: &SeccompData) -> kernel::Call {
    kernel::Call {
        nr: d.nr,
        ia32: d.arch == 0x4000_0003,
        args: d.args,
    }
}

/// How many calls of each verdict the kernel gave, over a run.
#[derive(Default, Debug)]
struct KernelTally {
    profiles: usize,
    passed: usize,
    errno: usize,
    killed: usize,
    ia32: usize,
    with_args: usize,
}

/// The kernel, our program and libseccomp's (where it knows the call) agree on every call.
fn assert_kernel_agrees(spec: &SeccompProfileSpec, ia32: bool, tally: &mut KernelTally) {
    let ours = compile(spec, &CompileOptions::default()).expect("compile");
    let theirs = libseccomp_program(spec, 2);
    let calls = kernel_calls(spec, &ours.insns, ia32);
    let got = kernel::verdicts(&ours.insns, &calls.iter().map(call_of).collect::<Vec<_>>());
    for (d, kernel_says) in calls.iter().zip(&got) {
        let ours_says = kernel::expected(run(&ours.insns, d).expect("our program runs").ret);
        assert_eq!(
            *kernel_says,
            ours_says,
            "the kernel and our program differ for nr={} arch={:#x} args={:x?}\n{}\nspec: {spec:#?}",
            d.nr,
            d.arch,
            d.args,
            ours.disassemble()
        );
        if libseccomp_knows(d) {
            let theirs_says = kernel::expected(run(&theirs, d).expect("libseccomp's program runs").ret);
            assert_eq!(
                *kernel_says, theirs_says,
                "the kernel and libseccomp's program differ for nr={} arch={:#x} args={:x?}",
                d.nr, d.arch, d.args
            );
        }
        match kernel_says {
            kernel::Verdict::Passed => tally.passed += 1,
            kernel::Verdict::Errno(_) => tally.errno += 1,
            kernel::Verdict::Killed => tally.killed += 1,
            kernel::Verdict::Ran(r) => panic!("nr={} ran and returned {r}: the sentinel failed", d.nr),
        }
        tally.ia32 += usize::from(d.arch == 0x4000_0003);
        tally.with_args += usize::from(d.args != [0; 6]);
    }
    tally.profiles += 1;
}

fn ia32_or_skip() -> bool {
    let works = kernel::ia32_works();
    if !works {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI machines must run ia32 programs (int 0x80)"
        );
        eprintln!("skipped: ia32 calls (this kernel does not run ia32 programs)");
    }
    works
}

#[test]
fn the_kernel_enforces_argument_rules_on_both_abis_as_compiled() {
    use SeccompOperator::*;
    let ia32 = ia32_or_skip();
    let s = spec(
        SeccompAction::Errno,
        vec![Arch::X86_64, Arch::X86],
        vec![
            rule(&["read", "write", "close"], SeccompAction::Allow, vec![]),
            rule(&["personality"], SeccompAction::Allow, vec![arg(0, Eq, 0xffff_ffff, 0)]),
            rule(
                &["clone"],
                SeccompAction::Trap,
                vec![arg(0, MaskedEq, 0x7e02_0000, 0x1000_0000)],
            ),
            rule(&["socket"], SeccompAction::KillProcess, vec![arg(0, Gt, 16, 0)]),
            rule(&["kill"], SeccompAction::Log, vec![arg(1, Ne, 9, 0)]),
            SeccompSyscall {
                errno_ret: Some(13),
                ..rule(&["mkdir", "mkdirat"], SeccompAction::Errno, vec![])
            },
        ],
    );
    let mut tally = KernelTally::default();
    assert_kernel_agrees(&s, ia32, &mut tally);
    assert!(tally.passed > 0 && tally.errno > 0 && tally.killed > 0, "{tally:?}");
    assert!(tally.with_args > 100, "{tally:?}");
    if ia32 {
        assert!(tally.ia32 > 100, "{tally:?}");
    }
}

/// Hundreds of generated profiles (argument rules, every action, x86-64, ia32 and x32), each
/// checked in the real kernel on up to 1,524 calls.
#[test]
fn the_kernel_enforces_generated_profiles_as_compiled() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let ia32 = ia32_or_skip();
    let mut runner = TestRunner::new(Config::default());
    let strategy = libseccomp_domain();
    let mut tally = KernelTally::default();
    for _ in 0..200 {
        let s = strategy.new_tree(&mut runner).expect("a profile").current();
        assert_kernel_agrees(&s, ia32, &mut tally);
    }
    eprintln!("kernel oracle: {tally:?}");
    // Every kind of verdict, argument sweeps and (where the kernel runs them) ia32 calls
    // were reached, in quantity.
    assert_eq!(tally.profiles, 200);
    assert!(
        tally.passed > 10_000 && tally.errno > 10_000 && tally.killed > 200,
        "{tally:?}"
    );
    assert!(tally.with_args > 10_000, "{tally:?}");
    if ia32 {
        assert!(tally.ia32 > 10_000, "{tally:?}");
    }
}
