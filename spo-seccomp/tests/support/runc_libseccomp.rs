//! libseccomp driven the way runc drives it: the comparison oracle shared by the differential
//! test and the compile benchmark (included by both with `#[path]`).

use std::fs::File;
use std::io::{Read, Seek};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompOperator, SeccompProfileSpec};
use spo_seccomp::compile::bpf::{Insn, from_bytes};

pub fn scmp_action(a: SeccompAction, errno: Option<i64>) -> ScmpAction {
    let data = errno.unwrap_or(1);
    match a {
        SeccompAction::KillProcess => ScmpAction::KillProcess,
        SeccompAction::Kill | SeccompAction::KillThread => ScmpAction::KillThread,
        SeccompAction::Trap => ScmpAction::Trap,
        SeccompAction::Errno => ScmpAction::Errno(data as i32),
        SeccompAction::Trace => ScmpAction::Trace(data as u16),
        SeccompAction::Allow => ScmpAction::Allow,
        SeccompAction::Log => ScmpAction::Log,
        SeccompAction::Notify => ScmpAction::Notify,
    }
}

pub fn scmp_arch(a: Arch) -> ScmpArch {
    match a {
        Arch::X86 => ScmpArch::X86,
        Arch::X86_64 => ScmpArch::X8664,
        Arch::X32 => ScmpArch::X32,
        Arch::Arm => ScmpArch::Arm,
        Arch::Aarch64 => ScmpArch::Aarch64,
        Arch::Riscv64 => ScmpArch::Riscv64,
        _ => ScmpArch::Native,
    }
}

pub fn scmp_compare(arg: &SeccompArg) -> ScmpArgCompare {
    let v = arg.value.unwrap_or(0);
    let op = match arg.op {
        SeccompOperator::Ne => ScmpCompareOp::NotEqual,
        SeccompOperator::Lt => ScmpCompareOp::Less,
        SeccompOperator::Le => ScmpCompareOp::LessOrEqual,
        SeccompOperator::Eq => ScmpCompareOp::Equal,
        SeccompOperator::Ge => ScmpCompareOp::GreaterEqual,
        SeccompOperator::Gt => ScmpCompareOp::Greater,
        SeccompOperator::MaskedEq => {
            return ScmpArgCompare::new(arg.index, ScmpCompareOp::MaskedEqual(v), arg.value_two.unwrap_or(0));
        }
    };
    ScmpArgCompare::new(arg.index, op, v)
}

/// libseccomp's filter for `spec`, built as runc builds it: rules with the default action
/// skipped, names resolved one by one, comparisons of one argument split into separate rules.
pub fn libseccomp_filter(spec: &SeccompProfileSpec, optimize: u32) -> ScmpFilterContext {
    let default = scmp_action(spec.default_action, None);
    let mut f = ScmpFilterContext::new(default).expect("filter");
    f.set_ctl_optimize(optimize).expect("optimize level");
    for a in spec.architectures.iter().flatten() {
        f.add_arch(scmp_arch(*a)).expect("arch");
    }
    for rule in spec.rules() {
        let act = scmp_action(rule.action, rule.errno_ret);
        if act == default {
            continue;
        }
        let args = rule.args.as_deref().unwrap_or_default();
        for name in &rule.names {
            let Ok(nr) = ScmpSyscall::from_name(name) else { continue };
            if args.is_empty() {
                f.add_rule(act, nr).expect("rule");
                continue;
            }
            let conds: Vec<ScmpArgCompare> = args.iter().map(scmp_compare).collect();
            let repeated = args
                .iter()
                .enumerate()
                .any(|(i, a)| args[..i].iter().any(|b| b.index == a.index));
            if repeated {
                for c in conds {
                    f.add_rule_conditional(act, nr, &[c]).expect("rule");
                }
            } else {
                f.add_rule_conditional(act, nr, &conds).expect("rule");
            }
        }
    }
    f
}

/// Everything a runtime does: build the filter and export the program to a file descriptor
/// (`out`, truncated first, reused so the timing does not include creating a file).
pub fn libseccomp_export(spec: &SeccompProfileSpec, optimize: u32, out: &mut File) {
    out.set_len(0).expect("truncate");
    out.rewind().expect("rewind");
    libseccomp_filter(spec, optimize).export_bpf(&*out).expect("export");
}

pub fn libseccomp_program(spec: &SeccompProfileSpec, optimize: u32) -> Vec<Insn> {
    let mut file = tempfile::tempfile().expect("temp file");
    libseccomp_export(spec, optimize, &mut file);
    file.rewind().expect("rewind");
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).expect("read back");
    from_bytes(&bytes).expect("whole instructions")
}
