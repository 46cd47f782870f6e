//! Seccomp checks that need the syscall tables, the compiler or the node's kernel, on top of
//! the syntax and cross-field rules of `SeccompProfile::validate()` in spo-model. All pure.

use spo_model::seccomp::{Arch, SeccompAction, SeccompFlag, SeccompProfileSpec};
use spo_model::spod::SpodSecurity;
use spo_model::validate::{FieldPath, Problem, Problems};

use crate::compile::{CompileOptions, compile};
use crate::error::SeccompError;
use crate::syscalls;

/// A Linux version, `(major, minor)`.
pub type KernelVersion = (u32, u32);

/// The architectures a spec targets: its list with NATIVE resolved, or the native one.
pub fn target_arches(spec: &SeccompProfileSpec, native: Arch) -> Vec<Arch> {
    let mut out: Vec<Arch> = match spec.architectures.as_deref() {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|a| if *a == Arch::Native { native } else { *a })
            .collect(),
        _ => vec![native],
    };
    // Runtimes always add the native architecture to the filter.
    if !out.contains(&native) {
        out.insert(0, native);
    }
    out.dedup();
    out
}

/// Every problem with a spec that the syscall tables and the compiler can see:
/// - a syscall name unknown on every architecture we know (an error, with a suggestion);
/// - a name unknown on every target architecture but known on another (`vm86` in an x86-64
///   profile): a warning, because libseccomp and runc skip such names and profiles copied
///   from container engines list them;
/// - a name unknown on some target architectures (a warning: the rule does nothing there);
/// - an architecture without a syscall table (an error: we cannot compile for it);
/// - a compiled program longer than the kernel's 4096 instructions.
pub fn check_spec(spec: &SeccompProfileSpec, native: Arch) -> Problems {
    let mut problems = check_fields(spec, native);
    if !problems.has_errors() && spec.base_profile_name.is_none() {
        let options = CompileOptions {
            native,
            ..CompileOptions::default()
        };
        if let Err(e) = compile(spec, &options) {
            problems.push(compile_problem(e));
        }
    }
    problems
}

/// What a failed compile of a spec is reported as: at `spec.syscalls` when the program is too
/// long, at `spec` otherwise.
pub fn compile_problem(error: SeccompError) -> Problem {
    let root = FieldPath::root().field("spec");
    match error {
        SeccompError::TooLong { len, limit } => Problem::error(
            root.field("syscalls"),
            format!("compiles to {len} instructions, more than the kernel's {limit}"),
        )
        .with_hint("merge rules with the same action, or split argument rules"),
        e => Problem::error(root, format!("does not compile: {e}")),
    }
}

/// Everything [`check_spec`] checks but the compile: for callers that compile the spec (or
/// what it resolves to) themselves, such as the node's render, which would otherwise compile
/// twice.
pub fn check_fields(spec: &SeccompProfileSpec, native: Arch) -> Problems {
    let mut problems = Problems::new();
    let root = FieldPath::root().field("spec");
    let arches = target_arches(spec, native);
    let mut usable = Vec::new();
    for a in &arches {
        if syscalls::table(*a).is_none() || syscalls::audit_arch(*a).is_none() {
            let path = match spec
                .architectures
                .as_deref()
                .and_then(|l| l.iter().position(|x| x == a))
            {
                Some(j) => root.field("architectures").index(j),
                None => root.field("architectures"),
            };
            problems.push(
                Problem::error(path, format!("{a} has no syscall table in this toolkit")).with_hint(
                    "supported: x86, x86-64, x32, arm, aarch64, riscv64, ppc, ppc64(le), s390x, mips o32/n64",
                ),
            );
        } else {
            usable.push(*a);
        }
    }
    for (i, rule) in spec.rules().iter().enumerate() {
        for (j, name) in rule.names.iter().enumerate() {
            // Built only for a problem: a Docker-sized profile has hundreds of names.
            let path = || root.field("syscalls").index(i).field("names").index(j);
            let missing: Vec<Arch> = usable
                .iter()
                .copied()
                .filter(|a| syscalls::table(*a).is_some_and(|t| t.number(name).is_none()))
                .collect();
            if missing.len() == usable.len() && !usable.is_empty() {
                let list: Vec<&str> = usable.iter().map(|a| a.as_str()).collect();
                let elsewhere = arches_with(name);
                if elsewhere.is_empty() {
                    let hint = usable
                        .iter()
                        .find_map(|a| syscalls::suggest(*a, name))
                        .map(|s| format!("did you mean {s}?"))
                        .unwrap_or_else(|| "not a Linux syscall name (see syscalls(2))".to_owned());
                    problems.push(
                        Problem::error(path(), format!("unknown syscall {name:?} on {}", list.join(", ")))
                            .with_hint(hint),
                    );
                } else {
                    // Profiles copied from container engines list calls of every architecture;
                    // libseccomp and runc skip the ones the filter's architectures lack.
                    let other: Vec<&str> = elsewhere.iter().map(|a| a.as_str()).collect();
                    problems.push(
                        Problem::warning(
                            path(),
                            format!(
                                "{name:?} does not exist on {} (only on {}); runtimes skip it",
                                list.join(", "),
                                other.join(", ")
                            ),
                        )
                        .with_hint("remove it, or add one of those architectures to spec.architectures"),
                    );
                }
            } else if !missing.is_empty() && spec.architectures.is_some() {
                let list: Vec<&str> = missing.iter().map(|a| a.as_str()).collect();
                problems.push(
                    Problem::warning(
                        path(),
                        format!(
                            "{name} does not exist on {}; the rule does nothing there",
                            list.join(", ")
                        ),
                    )
                    .with_hint("harmless for multi-architecture profiles"),
                );
            }
        }
    }
    // Runtimes (libseccomp) drop the argument rules of a syscall that also has an
    // unconditional rule; say so where a user would expect the argument rule to apply.
    // Only names that have argument rules matter (a few; unconditional names are hundreds).
    let with_args: std::collections::BTreeSet<&str> = spec
        .rules()
        .iter()
        .filter(|r| !r.args.as_deref().unwrap_or_default().is_empty())
        .flat_map(|r| r.names.iter().map(String::as_str))
        .collect();
    let mut plain: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (i, rule) in spec.rules().iter().enumerate() {
        if !with_args.is_empty()
            && rule.args.as_deref().unwrap_or_default().is_empty()
            && rule.action != spec.default_action
        {
            for n in rule.names.iter().filter(|n| with_args.contains(n.as_str())) {
                plain.entry(n.as_str()).or_insert(i);
            }
        }
    }
    for (i, rule) in spec.rules().iter().enumerate() {
        if rule.args.as_deref().unwrap_or_default().is_empty() {
            continue;
        }
        for (j, n) in rule.names.iter().enumerate() {
            if let Some(&k) = plain.get(n.as_str()) {
                problems.push(
                    Problem::warning(
                        root.field("syscalls").index(i).field("names").index(j),
                        format!("the argument rules for {n} are ignored: spec.syscalls[{k}] applies its action to {n} unconditionally"),
                    )
                    .with_hint("remove the unconditional rule, or the argument rule"),
                );
            }
        }
    }

    problems
}

/// The architectures (with a syscall table) on which `name` is a syscall, in API order.
fn arches_with(name: &str) -> Vec<Arch> {
    Arch::ALL
        .iter()
        .copied()
        .filter(|a| syscalls::table(*a).is_some_and(|t| t.number(name).is_some()))
        .collect()
}

/// The first kernel version that supports a flag.
pub fn flag_min_kernel(flag: SeccompFlag) -> KernelVersion {
    match flag {
        SeccompFlag::Tsync => (3, 17),
        SeccompFlag::Log => (4, 14),
        SeccompFlag::SpecAllow => (4, 17),
        SeccompFlag::WaitKillableRecv => (5, 19),
    }
}

/// The first kernel version that supports an action.
pub fn action_min_kernel(action: SeccompAction) -> KernelVersion {
    match action {
        SeccompAction::KillProcess | SeccompAction::Log => (4, 14),
        SeccompAction::Notify => (5, 0),
        _ => (3, 5),
    }
}

/// Flags and actions the given kernel does not support.
pub fn check_kernel(spec: &SeccompProfileSpec, kernel: KernelVersion) -> Problems {
    let mut problems = Problems::new();
    let root = FieldPath::root().field("spec");
    let fmt = |v: KernelVersion| format!("{}.{}", v.0, v.1);
    for (i, f) in spec.flags.iter().flatten().enumerate() {
        let need = flag_min_kernel(*f);
        if kernel < need {
            problems.push(Problem::error(
                root.field("flags").index(i),
                format!("{f} needs Linux {} or newer; this kernel is {}", fmt(need), fmt(kernel)),
            ));
        }
    }
    let mut actions = vec![(root.field("defaultAction"), spec.default_action)];
    for (i, r) in spec.rules().iter().enumerate() {
        actions.push((root.field("syscalls").index(i).field("action"), r.action));
    }
    for (path, a) in actions {
        let need = action_min_kernel(a);
        if kernel < need {
            problems.push(Problem::error(
                path,
                format!("{a} needs Linux {} or newer; this kernel is {}", fmt(need), fmt(kernel)),
            ));
        }
    }
    problems
}

/// Parses `uname -r` style text (`6.18.0-foo`) into a version.
pub fn parse_kernel_release(release: &str) -> Option<KernelVersion> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// One rule of a profile that the SPOD's `security` policy forbids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyViolation {
    /// Where: `spec.defaultAction` or `spec.syscalls[i]`.
    pub path: FieldPath,
    /// The syscalls the rule lets run without being allowed (empty for the default action).
    pub syscalls: Vec<String>,
    /// Readable reason.
    pub message: String,
}

/// The actions that count as letting a syscall run when the SPOD does not say.
pub const DEFAULT_ALLOWING_ACTIONS: [SeccompAction; 4] = [
    SeccompAction::Allow,
    SeccompAction::Log,
    SeccompAction::Trace,
    SeccompAction::Notify,
];

/// Checks a spec against the SPOD's `security.allowedSyscalls` / `allowedSeccompActions`:
/// when `allowedSyscalls` is set, a profile may let only those syscalls run, and its
/// defaultAction must not let syscalls run. Returns every violating rule.
pub fn check_policy(spec: &SeccompProfileSpec, security: &SpodSecurity) -> Vec<PolicyViolation> {
    let Some(allowed) = security.allowed_syscalls.as_ref() else {
        return Vec::new();
    };
    let allowing: Vec<SeccompAction> = security
        .allowed_seccomp_actions
        .clone()
        .unwrap_or_else(|| DEFAULT_ALLOWING_ACTIONS.to_vec());
    let lets_run = |a: SeccompAction| allowing.contains(&a);
    let root = FieldPath::root().field("spec");
    let mut out = Vec::new();
    if lets_run(spec.default_action) {
        out.push(PolicyViolation {
            path: root.field("defaultAction"),
            syscalls: Vec::new(),
            message: format!(
                "defaultAction {} lets every unlisted syscall run, but the SPOD allows only listed syscalls",
                spec.default_action
            ),
        });
    }
    for (i, r) in spec.rules().iter().enumerate() {
        if !lets_run(r.action) {
            continue;
        }
        let bad: Vec<String> = r.names.iter().filter(|n| !allowed.contains(n)).cloned().collect();
        if !bad.is_empty() {
            out.push(PolicyViolation {
                path: root.field("syscalls").index(i),
                message: format!(
                    "{} lets {} run, which the SPOD's security.allowedSyscalls does not allow",
                    r.action,
                    bad.join(", ")
                ),
                syscalls: bad,
            });
        }
    }
    out
}

/// The policy violations as problems, for reports.
pub fn policy_problems(violations: &[PolicyViolation]) -> Problems {
    let mut p = Problems::new();
    for v in violations {
        p.push(
            Problem::error(v.path.clone(), v.message.clone())
                .with_hint("ask the cluster administrator, or remove these syscalls"),
        );
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SeccompProfileSpec {
        serde_norway::from_str(yaml).expect("spec")
    }

    #[test]
    fn unknown_names_get_suggestions() {
        let s = spec(
            "defaultAction: SCMP_ACT_ERRNO\narchitectures: [SCMP_ARCH_X86_64]\nsyscalls:\n- names: [read, opne, socketcall, frobnicate_widget]\n  action: SCMP_ACT_ALLOW\n",
        );
        let p = check_spec(&s, Arch::X86_64);
        let errs: Vec<String> = p.errors().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(
            errs[0].starts_with(
                "spec.syscalls[0].names[1]: unknown syscall \"opne\" on SCMP_ARCH_X86_64 (did you mean open?)"
            ),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("spec.syscalls[0].names[3]: unknown syscall \"frobnicate_widget\""),
            "{}",
            errs[1]
        );
        assert!(errs[1].contains("not a Linux syscall name"), "{}", errs[1]);
        // socketcall exists on other architectures: a warning, not an error.
        let warnings: Vec<&str> = p.iter().filter(|p| !p.is_error()).map(|p| p.path.as_str()).collect();
        assert_eq!(warnings, vec!["spec.syscalls[0].names[2]"], "{p}");
    }

    #[test]
    fn names_of_other_architectures_only_warn() {
        // What profiles copied from container engines look like on x86-64.
        for architectures in ["", "architectures: [SCMP_ARCH_X86_64]\n"] {
            let s = spec(&format!(
                "defaultAction: SCMP_ACT_ERRNO\n{architectures}syscalls:\n- names: [read, stime, umount, vm86, vm86old, arm_fadvise64_64]\n  action: SCMP_ACT_ALLOW\n"
            ));
            let p = check_spec(&s, Arch::X86_64);
            assert!(!p.has_errors(), "runtimes skip these names, so must we: {p}");
            let lines: Vec<String> = p.iter().map(ToString::to_string).collect();
            assert_eq!(lines.len(), 5, "{p}");
            assert!(
                lines[2].starts_with(
                    "warning: spec.syscalls[0].names[3]: \"vm86\" does not exist on SCMP_ARCH_X86_64 (only on SCMP_ARCH_X86, SCMP_ARCH_MIPS,"
                ),
                "{}",
                lines[2]
            );
            assert!(
                lines[3].starts_with(
                    "warning: spec.syscalls[0].names[4]: \"vm86old\" does not exist on SCMP_ARCH_X86_64 (only on SCMP_ARCH_X86); runtimes skip it"
                ),
                "{}",
                lines[3]
            );
            assert!(lines[4].contains("(only on SCMP_ARCH_ARM)"), "{}", lines[4]);
            assert!(lines[0].contains("\"stime\""), "{}", lines[0]);
            assert!(lines[1].contains("\"umount\""), "{}", lines[1]);
        }
        // A typo still fails, on every architecture.
        let s = spec("defaultAction: SCMP_ACT_ERRNO\nsyscalls:\n- {names: [vm68], action: SCMP_ACT_ALLOW}\n");
        let p = check_spec(&s, Arch::X86_64);
        assert!(p.has_errors(), "{p}");
    }

    #[test]
    fn multi_arch_names_warn_only() {
        let s = spec(
            "defaultAction: SCMP_ACT_ERRNO\narchitectures: [SCMP_ARCH_X86_64, SCMP_ARCH_X86]\nsyscalls:\n- names: [socketcall, arch_prctl]\n  action: SCMP_ACT_ALLOW\n",
        );
        let p = check_spec(&s, Arch::X86_64);
        assert!(!p.has_errors(), "{p}");
        // arch_prctl exists on both (x86 since Linux 4.12); socketcall only on x86.
        assert_eq!(p.len(), 1, "{p}");
    }

    #[test]
    fn ignored_argument_rules_are_pointed_out() {
        let s = spec(
            "defaultAction: SCMP_ACT_ERRNO\nsyscalls:\n- {names: [write], action: SCMP_ACT_ALLOW}\n- names: [write]\n  action: SCMP_ACT_KILL\n  args: [{index: 0, value: 5, op: SCMP_CMP_EQ}]\n",
        );
        let p = check_spec(&s, Arch::X86_64);
        let w: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(w, vec!["spec.syscalls[1].names[0]"], "{p}");
    }

    #[test]
    fn kernel_versions() {
        let s = spec(
            "defaultAction: SCMP_ACT_ERRNO\nflags: [SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV]\nsyscalls:\n- {names: [read], action: SCMP_ACT_LOG}\n",
        );
        assert!(check_kernel(&s, (6, 18)).is_empty());
        let old = check_kernel(&s, (4, 9));
        let paths: Vec<&str> = old.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["spec.flags[0]", "spec.syscalls[0].action"]);
        assert_eq!(parse_kernel_release("6.18.0-rc1+"), Some((6, 18)));
        assert_eq!(parse_kernel_release("x"), None);
        assert_eq!(flag_min_kernel(SeccompFlag::Log), (4, 14));
        assert_eq!(flag_min_kernel(SeccompFlag::SpecAllow), (4, 17));
    }

    #[test]
    fn spod_policy() {
        let security = SpodSecurity {
            allowed_syscalls: Some(vec!["read".into(), "write".into()]),
            ..Default::default()
        };
        let s = spec(
            "defaultAction: SCMP_ACT_LOG\nsyscalls:\n- {names: [read, mount], action: SCMP_ACT_ALLOW}\n- {names: [ptrace], action: SCMP_ACT_ERRNO}\n",
        );
        let v = check_policy(&s, &security);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].path.as_str(), "spec.defaultAction");
        assert_eq!(v[1].path.as_str(), "spec.syscalls[0]");
        assert_eq!(v[1].syscalls, vec!["mount".to_owned()]);
        let only_allow = SpodSecurity {
            allowed_seccomp_actions: Some(vec![SeccompAction::Allow]),
            ..security.clone()
        };
        let s2 = spec("defaultAction: SCMP_ACT_ERRNO\nsyscalls:\n- {names: [mount], action: SCMP_ACT_LOG}\n");
        assert!(
            check_policy(&s2, &only_allow).is_empty(),
            "LOG is not allowing under this SPOD"
        );
        assert!(
            check_policy(&s2, &SpodSecurity::default()).is_empty(),
            "no allowedSyscalls, no policy"
        );
    }

    #[test]
    fn too_long_programs_are_reported() {
        // Every syscall with several argument rules: far beyond 4096 instructions.
        let table = syscalls::table(Arch::X86_64).expect("table");
        let mut rules = String::new();
        for n in table.names().take(300) {
            rules.push_str(&format!("- names: [{n}]\n  action: SCMP_ACT_ALLOW\n  args: [{{index: 0, value: 1, op: SCMP_CMP_GT}}, {{index: 1, value: 1, op: SCMP_CMP_LT}}, {{index: 2, value: 3, op: SCMP_CMP_GE}}]\n"));
        }
        let s = spec(&format!("defaultAction: SCMP_ACT_ERRNO\nsyscalls:\n{rules}"));
        let p = check_spec(&s, Arch::X86_64);
        assert!(
            p.errors().any(|e| e.message.contains("more than the kernel's 4096")),
            "{p}"
        );
    }
}
