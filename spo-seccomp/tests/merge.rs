//! Properties of union and intersection over generated profiles, judged two ways: by the
//! merge's own per-name view (`effective_actions`), and by the independent reference evaluator
//! of the differential test on concrete calls (argument rules included).

use std::collections::BTreeSet;

use proptest::prelude::*;
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompFlag, SeccompOperator, SeccompSyscall};
use spo_model::{SeccompProfile, SeccompProfileSpec};
use spo_seccomp::compile::interp::SeccompData;
use spo_seccomp::merge::{Verdict, canonicalize, effective_actions, intersect, union, union_all};
use spo_seccomp::syscalls;

#[path = "support/reference.rs"]
mod reference;
use reference::{action_of, reference};

const LISTENER: &str = "/var/run/security-profiles-operator/agent.sock";
const NAMES: &[&str] = &[
    "read",
    "write",
    "openat",
    "close",
    "mmap",
    "clone",
    "ioctl",
    "socket",
    "mount",
    "ptrace",
    "execve",
    "exit_group",
];
/// A name no generated rule uses: it always gets the default action.
const UNLISTED: &str = "kexec_load";

fn default_action() -> impl Strategy<Value = SeccompAction> {
    prop::sample::select(
        SeccompAction::ALL
            .iter()
            .copied()
            .filter(|a| *a != SeccompAction::Notify)
            .collect::<Vec<_>>(),
    )
}

fn action() -> impl Strategy<Value = SeccompAction> {
    prop::sample::select(SeccompAction::ALL.to_vec())
}

fn arg() -> impl Strategy<Value = SeccompArg> {
    (
        0u32..=5,
        prop::sample::select(SeccompOperator::ALL.to_vec()),
        0u64..4,
        0u64..4,
    )
        .prop_map(|(index, op, value, two)| SeccompArg {
            index,
            value: Some(value),
            value_two: (op == SeccompOperator::MaskedEq).then_some(two & value),
            op,
        })
}

fn rule() -> impl Strategy<Value = SeccompSyscall> {
    (
        prop::sample::subsequence(NAMES.to_vec(), 1..4),
        action(),
        prop::option::of(0i64..50),
        prop::option::weighted(0.3, prop::collection::vec(arg(), 1..3)),
    )
        .prop_map(|(names, action, errno, args)| SeccompSyscall {
            names: names.into_iter().map(str::to_owned).collect(),
            action,
            errno_ret: errno.filter(|_| action.takes_errno()),
            args,
        })
}

fn profile() -> impl Strategy<Value = SeccompProfileSpec> {
    (
        default_action(),
        prop::collection::vec(rule(), 0..12),
        prop::option::of(prop::sample::subsequence(
            vec![Arch::X86, Arch::X32, Arch::Aarch64],
            0..3,
        )),
        prop::option::of(prop::sample::subsequence(SeccompFlag::ALL.to_vec(), 0..3)),
        any::<bool>(),
    )
        .prop_map(|(default_action, syscalls, arches, flags, listener)| {
            let notifies = syscalls.iter().any(|r| r.action == SeccompAction::Notify);
            SeccompProfileSpec {
                state: Default::default(),
                disabled: None,
                default_action,
                // Always sharing x86-64, so intersections are never empty.
                architectures: arches.map(|mut a| {
                    a.insert(0, Arch::X86_64);
                    a
                }),
                listener_path: (listener || notifies).then(|| LISTENER.to_owned()),
                listener_metadata: None,
                syscalls: Some(syscalls),
                flags,
                base_profile_name: None,
            }
        })
}

fn effective(spec: &SeccompProfileSpec, name: &str) -> Verdict {
    effective_actions(spec)
        .get(name)
        .copied()
        .unwrap_or((spec.default_action, None))
}

fn allows(spec: &SeccompProfileSpec, name: &str) -> bool {
    effective(spec, name).0.lets_syscall_run()
}

/// Names with an unconditional rule in `spec`.
fn unconditional_names(spec: &SeccompProfileSpec) -> BTreeSet<String> {
    spec.rules()
        .iter()
        .filter(|r| r.args.as_ref().is_none_or(Vec::is_empty))
        .flat_map(|r| r.names.iter().cloned())
        .collect()
}

fn all_names() -> impl Iterator<Item = &'static str> {
    NAMES.iter().copied().chain([UNLISTED])
}

fn assert_valid(spec: SeccompProfileSpec) {
    let profile = SeccompProfile::new("merged", spec);
    let problems = profile.validate();
    let errors: Vec<String> = problems.errors().map(|p| p.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{profile:#?}");
}

/// Concrete x86-64 calls of every generated name (and one no rule names): each argument
/// swept over the values the generator compares with (0..4) and one past, the others 0, and
/// a few mixed vectors.
fn calls() -> Vec<SeccompData> {
    let table = syscalls::table(Arch::X86_64).expect("table");
    let mut out = Vec::new();
    for name in all_names() {
        let nr = table.number(name).expect("x86-64 syscall");
        let mut arg_sets = vec![[0u64; 6], [1, 2, 3, 0, 1, 2], [3, 3, 3, 3, 3, 3], [2, 0, 1, 3, 0, 2]];
        for i in 0..6 {
            for v in 1..=4 {
                let mut args = [0u64; 6];
                args[i] = v;
                arg_sets.push(args);
            }
        }
        out.extend(arg_sets.into_iter().map(|args| SeccompData {
            nr,
            arch: 0xC000_003E,
            instruction_pointer: 0,
            args,
        }));
    }
    out
}

/// `spec` without the unconditional rules that repeat a name an earlier one decides (which
/// validation refuses, and runtimes cannot load), or `None` when it is still invalid: the
/// call-by-call properties are about profiles a node would install.
fn loadable(mut spec: SeccompProfileSpec) -> Option<SeccompProfileSpec> {
    if let Some(rules) = spec.syscalls.as_mut() {
        let mut decided = BTreeSet::new();
        for rule in rules.iter_mut().filter(|r| r.args.as_ref().is_none_or(Vec::is_empty)) {
            rule.names.retain(|n| decided.insert(n.clone()));
        }
        rules.retain(|r| !r.names.is_empty());
    }
    let profile = SeccompProfile::new("p", spec.clone());
    (profile.validate().errors().count() == 0).then_some(spec)
}

/// What the reference evaluator says the profile does with a call.
fn verdict_of(spec: &SeccompProfileSpec, d: &SeccompData) -> SeccompAction {
    action_of(reference(spec, d))
}

proptest! {
    #[test]
    fn union_is_commutative_on_the_allow_set_with_equal_defaults(a in profile(), b in profile()) {
        let mut b = b;
        b.default_action = a.default_action;
        let ab = union(&a, &b);
        let ba = union(&b, &a);
        for name in all_names() {
            prop_assert_eq!(allows(&ab, name), allows(&ba, name), "{}", name);
        }
    }

    #[test]
    fn union_is_idempotent(a in profile()) {
        prop_assert_eq!(union(&a, &a), canonicalize(&a));
        let canonical = canonicalize(&a);
        prop_assert_eq!(canonicalize(&canonical), canonical.clone());
        prop_assert_eq!(union_all(std::slice::from_ref(&a)), Some(canonical));
    }

    #[test]
    fn union_allows_everything_either_allows(a in profile(), b in profile()) {
        let merged = union(&a, &b);
        let merged_rules = merged.rules();
        // Every call an explicit rule of either side lets run still runs: under the same
        // argument conditions, or because the name became unconditional.
        for input in [canonicalize(&a), canonicalize(&b)] {
            for rule in input.rules().iter().filter(|r| r.action.lets_syscall_run()) {
                for name in &rule.names {
                    let best = merged_rules
                        .iter()
                        .filter(|m| m.names.contains(name) && (m.args.is_none() || m.args == rule.args))
                        .map(|m| m.action.permissiveness())
                        .max();
                    prop_assert!(
                        best.is_some_and(|p| p >= rule.action.permissiveness()),
                        "{} {:?} lost in {:?}", name, rule, merged_rules
                    );
                }
            }
        }
        // In the allow-set view, names either side decides unconditionally stay allowed (as
        // the runtime sees them: an unconditional rule with the default action decides nothing).
        let (ca, cb) = (canonicalize(&a), canonicalize(&b));
        for name in unconditional_names(&ca).union(&unconditional_names(&cb)) {
            let either = (unconditional_names(&ca).contains(name) && allows(&a, name))
                || (unconditional_names(&cb).contains(name) && allows(&b, name));
            if either {
                prop_assert!(allows(&merged, name), "{}", name);
            }
        }
        // Names no rule mentions follow the child, whose defaultAction is kept.
        prop_assert_eq!(allows(&merged, UNLISTED), allows(&a, UNLISTED));
    }

    #[test]
    fn intersect_allows_only_what_both_allow(a in profile(), b in profile()) {
        let both = intersect(&a, &b).expect("intersect");
        for name in all_names() {
            if allows(&both, name) {
                prop_assert!(allows(&a, name) && allows(&b, name), "{}", name);
            }
            // Never more permissive than either side.
            let p = effective(&both, name).0.permissiveness();
            prop_assert!(p <= effective(&a, name).0.permissiveness(), "{}", name);
            prop_assert!(p <= effective(&b, name).0.permissiveness(), "{}", name);
        }
        // Argument rules never act more permissively than either side could.
        for rule in both.rules().iter().filter(|r| r.args.is_some()) {
            for name in &rule.names {
                let most = |s: &SeccompProfileSpec| {
                    s.rules()
                        .iter()
                        .filter(|r| r.names.contains(name))
                        .map(|r| r.action.permissiveness())
                        .chain([s.default_action.permissiveness()])
                        .max()
                        .unwrap_or(0)
                };
                prop_assert!(rule.action.permissiveness() <= most(&a).min(most(&b)), "{}", name);
            }
        }
    }

    #[test]
    fn intersect_with_itself_behaves_as_itself(a in profile()) {
        let same = intersect(&a, &a).expect("intersect");
        prop_assert_eq!(same.default_action, a.default_action);
        for name in all_names() {
            prop_assert_eq!(effective(&same, name), effective(&a, name), "{}", name);
        }
        let canonical = canonicalize(&a);
        let with_args = |s: &SeccompProfileSpec| -> Vec<SeccompSyscall> {
            s.rules().iter().filter(|r| r.args.is_some()).cloned().collect()
        };
        prop_assert_eq!(with_args(&same), with_args(&canonical));
        prop_assert_eq!(spo_seccomp::merge::behaviour_changes(&canonical, &same), vec![]);
    }

    /// On every concrete call, by the reference evaluator: the intersection is never more
    /// permissive than either side; the union lets run every call an explicit rule of one side
    /// lets run that the other side does not restrict by a rule of its own (when both sides'
    /// argument rules match one call, the runtime takes the most restrictive), and every call
    /// of a name neither side's rules mention that the child's default lets run (the child's
    /// default is the union's; the parent's does not carry over).
    #[test]
    fn merges_keep_their_promises_call_by_call(a in profile(), b in profile()) {
        let (Some(a), Some(b)) = (loadable(a), loadable(b)) else { return Err(TestCaseError::reject("not loadable")) };
        let both = intersect(&a, &b).expect("intersect");
        let either = union(&a, &b);
        let table = syscalls::table(Arch::X86_64).expect("table");
        let names = |s: &SeccompProfileSpec, nr: u32| s.rules().iter().any(|r| r.names.iter().any(|n| table.number(n) == Some(nr)));
        for d in calls() {
            let (va, vb) = (verdict_of(&a, &d), verdict_of(&b, &d));
            let vi = verdict_of(&both, &d);
            prop_assert!(
                vi.permissiveness() <= va.permissiveness().min(vb.permissiveness()),
                "intersection {:?} is more permissive than {:?} / {:?} for nr={} args={:?}", vi, va, vb, d.nr, d.args
            );
            let vu = verdict_of(&either, &d);
            // Let run by one of its rules; left to its default (or let run) by the other side.
            let by_rule = |s: &SeccompProfileSpec, v: SeccompAction| v.lets_syscall_run() && names(s, d.nr) && !s.default_action.lets_syscall_run();
            let not_restricted = |s: &SeccompProfileSpec| {
                let ret = reference(s, &d);
                action_of(ret).lets_syscall_run() || ret == spo_seccomp::compile::action_value(s.default_action, None)
            };
            if (by_rule(&a, va) && not_restricted(&b))
                || (by_rule(&b, vb) && not_restricted(&a))
                || (va.lets_syscall_run() && !names(&a, d.nr) && !names(&b, d.nr))
            {
                prop_assert!(vu.lets_syscall_run(), "union {:?} blocks a call either side lets run ({:?} / {:?}) for nr={} args={:?}", vu, va, vb, d.nr, d.args);
            }
        }
    }

    /// Merging a profile with itself changes no action any call gets. (Not always the errno:
    /// when two argument rules with ERRNO and different `errnoRet` both match one call, the
    /// runtime returns the first one's, and the canonical form orders rules by action and
    /// errno, not as written.)
    #[test]
    fn merging_with_itself_is_the_same_call_by_call(a in profile()) {
        let Some(a) = loadable(a) else { return Err(TestCaseError::reject("not loadable")) };
        let same = intersect(&a, &a).expect("intersect");
        let union_same = union(&a, &a);
        for d in calls() {
            let want = verdict_of(&a, &d);
            prop_assert_eq!(verdict_of(&same, &d), want, "intersect, nr={} args={:?}", d.nr, d.args);
            prop_assert_eq!(verdict_of(&union_same, &d), want, "union, nr={} args={:?}", d.nr, d.args);
        }
    }

    #[test]
    fn outputs_validate(a in profile(), b in profile()) {
        assert_valid(union(&a, &b));
        assert_valid(intersect(&a, &b).expect("intersect"));
    }
}

fn big_profile(default_action: SeccompAction, offset: usize) -> SeccompProfileSpec {
    let actions = [
        SeccompAction::Allow,
        SeccompAction::Errno,
        SeccompAction::Log,
        SeccompAction::Trap,
    ];
    let syscalls = (0..10_000)
        .map(|i| {
            let n = i + offset;
            SeccompSyscall {
                names: vec![format!("sys_{}", n % 12_000)],
                action: actions[n % actions.len()],
                errno_ret: None,
                args: n.is_multiple_of(7).then(|| {
                    vec![SeccompArg {
                        index: (n % 6) as u32,
                        value: Some(n as u64),
                        value_two: None,
                        op: SeccompOperator::Eq,
                    }]
                }),
            }
        })
        .collect();
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action,
        architectures: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(syscalls),
        flags: None,
        base_profile_name: None,
    }
}

#[test]
fn ten_thousand_rule_profiles_merge() {
    let a = big_profile(SeccompAction::Errno, 0);
    let b = big_profile(SeccompAction::Allow, 5_000);
    let merged = union(&a, &b);
    let names = effective_actions(&merged).len();
    // Every name with a rule that does something at runtime (rules with their profile's own
    // default action that restrict are none).
    let live: BTreeSet<String> = effective_actions(&canonicalize(&a))
        .into_keys()
        .chain(effective_actions(&canonicalize(&b)).into_keys())
        .collect();
    assert!(names > 11_000 && names <= live.len(), "{names} of {}", live.len());
    let both = intersect(&a, &b).expect("intersect");
    assert_eq!(both.default_action, SeccompAction::Errno);
    assert!(effective_actions(&both).len() <= 12_000);
    assert_valid(merged);
    assert_valid(both);
}
