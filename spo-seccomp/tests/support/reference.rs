//! The meaning of a seccomp profile, evaluated directly from the profile (no compilation): the
//! independent oracle of the differential test (for the compiler) and of the merge tests (for
//! union and intersection). Included with `#[path]`.

// Each test that includes it uses part of it.
#![allow(dead_code)]

use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompOperator, SeccompProfileSpec};
use spo_seccomp::compile::interp::SeccompData;
use spo_seccomp::syscalls;

/// The meaning of a profile, written as plainly as possible: what the runtime enforces for
/// one syscall. The compiler must agree with it on every input.
pub fn reference(spec: &SeccompProfileSpec, d: &SeccompData) -> u32 {
    use spo_seccomp::compile::{X32_SYSCALL_BIT, action_value};
    let default = action_value(spec.default_action, None);
    let bad_arch = action_value(SeccompAction::KillThread, None);
    let mut arches = vec![Arch::X86_64];
    for a in spec.architectures.iter().flatten() {
        arches.push(if *a == Arch::Native { Arch::X86_64 } else { *a });
    }
    let members: Vec<Arch> = arches
        .iter()
        .copied()
        .filter(|a| syscalls::audit_arch(*a) == Some(d.arch))
        .collect();
    if members.is_empty() {
        return bad_arch;
    }
    let arch = if d.arch == 0xC000_003E {
        let x32 = d.nr & X32_SYSCALL_BIT != 0 && d.nr != u32::MAX;
        let want = if x32 { Arch::X32 } else { Arch::X86_64 };
        if !members.contains(&want) {
            return if d.nr == u32::MAX { default } else { bad_arch };
        }
        want
    } else {
        members[0]
    };
    let Some(name) = syscalls::table(arch).and_then(|t| t.name(d.nr)) else {
        return default;
    };
    let precedence = |r: u32| match r & 0xffff_0000 {
        0x8000_0000 => 0,
        0 => 1,
        0x0003_0000 => 2,
        0x0005_0000 => 3,
        0x7fc0_0000 => 4,
        0x7ff0_0000 => 5,
        0x7ffc_0000 => 6,
        _ => 7,
    };
    let narrow = spo_seccomp::compile::is_32_bit(arch);
    let holds = |a: &SeccompArg| {
        let cut = |v: u64| if narrow { v & 0xffff_ffff } else { v };
        let x = cut(d.args[a.index as usize]);
        let v = cut(a.value.unwrap_or(0));
        match a.op {
            SeccompOperator::Ne => x != v,
            SeccompOperator::Lt => x < v,
            SeccompOperator::Le => x <= v,
            SeccompOperator::Eq => x == v,
            SeccompOperator::Ge => x >= v,
            SeccompOperator::Gt => x > v,
            SeccompOperator::MaskedEq => x & v == cut(a.value_two.unwrap_or(0)),
        }
    };
    // An unconditional rule decides alone: runtimes (libseccomp) drop argument rules of a
    // syscall that also has an unconditional one.
    let mut best: Option<u32> = None;
    let mut unconditional: Option<u32> = None;
    for r in spec.rules() {
        if r.args.as_deref().unwrap_or_default().is_empty()
            && r.names
                .iter()
                .any(|n| syscalls::table(arch).and_then(|t| t.number(n)) == Some(d.nr))
        {
            let ret = action_value(r.action, r.errno_ret);
            if ret != default && unconditional.is_none_or(|u| precedence(ret) < precedence(u)) {
                unconditional = Some(ret);
            }
        }
    }
    if let Some(u) = unconditional {
        return u;
    }
    for r in spec.rules() {
        if !r.names.iter().any(|n| {
            syscalls::table(arch).and_then(|t| t.number(n)) == syscalls::table(arch).and_then(|t| t.number(name))
        }) {
            continue;
        }
        let ret = action_value(r.action, r.errno_ret);
        if ret == default {
            continue;
        }
        let args = r.args.as_deref().unwrap_or_default();
        let repeated = args
            .iter()
            .enumerate()
            .any(|(i, a)| args[..i].iter().any(|b| b.index == a.index));
        let matched = if args.is_empty() {
            true
        } else if repeated {
            args.iter().any(holds)
        } else {
            args.iter().all(holds)
        };
        if matched && best.is_none_or(|b| precedence(ret) < precedence(b)) {
            best = Some(ret);
        }
    }
    best.unwrap_or(default)
}

/// The action of a filter return value, for comparing permissiveness.
pub fn action_of(ret: u32) -> SeccompAction {
    match ret & 0xffff_0000 {
        0x8000_0000 => SeccompAction::KillProcess,
        0 => SeccompAction::KillThread,
        0x0003_0000 => SeccompAction::Trap,
        0x0005_0000 => SeccompAction::Errno,
        0x7ff0_0000 => SeccompAction::Trace,
        0x7fc0_0000 => SeccompAction::Notify,
        0x7ffc_0000 => SeccompAction::Log,
        _ => SeccompAction::Allow,
    }
}
