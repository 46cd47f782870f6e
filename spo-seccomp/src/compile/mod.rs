//! Our cBPF compiler: a SeccompProfile spec in, a seccomp filter program out.
//!
//! Shape of the program:
//!
//! ```text
//! ld arch; jeq AUDIT_ARCH_1 -> section 1; jeq AUDIT_ARCH_2 -> section 2; ...; ret <bad arch>
//! section: ld nr; balanced search over intervals of syscall numbers -> outcome
//! outcome: ret <action>            (syscalls without argument rules, and gaps)
//!        | argument checks; ret ... (syscalls with argument rules)
//! ```
//!
//! The number line of each architecture is cut into maximal intervals with one outcome
//! (adjacent syscalls with the same action share an interval, gaps take the default action),
//! and a balanced tree of `jge` splits finds the interval, so the executed path is
//! `ceil(log2(intervals))` comparisons plus the return. Paths for syscalls without argument
//! rules load only `arch` and `nr`, never an argument, so the kernel's action cache
//! (Linux >= 5.11) can decide them without running the filter.
//!
//! 64-bit argument comparisons are done on the two 32-bit halves (word order follows the
//! architecture's endianness). Conditional jumps reach at most 255 instructions; farther
//! targets go through `ja` trampolines inserted by the assembler until every offset fits.
//! Output is deterministic: the same spec always gives the same program.

pub mod bpf;
pub mod interp;

use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompOperator, SeccompProfileSpec};

use crate::error::SeccompError;
use crate::syscalls;
use bpf::*;

/// The errno runtimes use when a rule says SCMP_ACT_ERRNO without `errnoRet` (EPERM).
pub const DEFAULT_ERRNO: u32 = 1;

/// Bit that marks x32 syscall numbers on x86-64.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Knobs of the compiler.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The action for a task whose architecture the profile does not list (libseccomp's and
    /// runc's default is to kill the thread).
    pub bad_arch_action: SeccompAction,
    /// What `SCMP_ARCH_NATIVE` and an empty architecture list mean.
    pub native: Arch,
    /// Keep a comment per instruction for [`Program::disassemble`] (costs time; off for
    /// rendering on nodes).
    pub annotate: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            bad_arch_action: SeccompAction::KillThread,
            native: syscalls::native_arch(),
            annotate: false,
        }
    }
}

/// A compiled filter with a comment per instruction for the disassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The instructions.
    pub insns: Vec<Insn>,
    /// What each instruction is for (empty unless compiled with `annotate`).
    pub comments: Vec<Option<String>>,
}

/// Size figures of a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// Number of instructions.
    pub instructions: usize,
    /// The most instructions any input can execute.
    pub longest_path: usize,
}

impl Program {
    /// Readable disassembly.
    pub fn disassemble(&self) -> String {
        disassemble(&self.insns, &self.comments)
    }

    /// Instruction count and longest executed path.
    pub fn stats(&self) -> ProgramStats {
        ProgramStats {
            instructions: self.insns.len(),
            longest_path: longest_path(&self.insns),
        }
    }
}

/// The longest number of instructions executed from the first to a return (programs only
/// jump forward, so this is a longest path in a DAG).
pub fn longest_path(insns: &[Insn]) -> usize {
    let n = insns.len();
    let mut longest = vec![0usize; n + 1];
    for i in (0..n).rev() {
        let ins = insns[i];
        let next = |off: usize| longest.get(i + 1 + off).copied().unwrap_or(0);
        longest[i] = 1 + match ins.class() {
            BPF_RET => 0,
            BPF_JMP if ins.code & 0xf0 == BPF_JA => next(ins.k as usize),
            BPF_JMP => next(usize::from(ins.jt)).max(next(usize::from(ins.jf))),
            _ => next(0),
        };
    }
    longest.first().copied().unwrap_or(0)
}

/// The filter return value for an action (`errno` for ERRNO and TRACE, EPERM when unset).
pub fn action_value(action: SeccompAction, errno: Option<i64>) -> u32 {
    let data = errno.map_or(DEFAULT_ERRNO, |e| e.clamp(0, i64::from(u16::MAX)) as u32);
    match action {
        SeccompAction::KillProcess => RET_KILL_PROCESS,
        SeccompAction::Kill | SeccompAction::KillThread => RET_KILL_THREAD,
        SeccompAction::Trap => RET_TRAP,
        SeccompAction::Errno => RET_ERRNO | data.min(4095),
        SeccompAction::Trace => RET_TRACE | data,
        SeccompAction::Allow => RET_ALLOW,
        SeccompAction::Log => RET_LOG,
        SeccompAction::Notify => RET_USER_NOTIF,
    }
}

/// Kernel precedence of a return value: lower is more restrictive (KILL_PROCESS first).
fn precedence(ret: u32) -> u32 {
    match ret & RET_ACTION_FULL {
        RET_KILL_PROCESS => 0,
        RET_KILL_THREAD => 1,
        RET_TRAP => 2,
        RET_ERRNO => 3,
        RET_USER_NOTIF => 4,
        RET_TRACE => 5,
        RET_LOG => 6,
        _ => 7,
    }
}

/// Whether an architecture stores 64-bit values big-endian (so the high word comes first).
pub fn is_big_endian(arch: Arch) -> bool {
    matches!(
        arch,
        Arch::Mips
            | Arch::Mips64
            | Arch::Mips64N32
            | Arch::Ppc
            | Arch::Ppc64
            | Arch::S390
            | Arch::S390x
            | Arch::Parisc
            | Arch::Parisc64
    )
}

/// Whether an architecture's syscall arguments are 32 bits wide (x32 included: its
/// arguments are 32-bit values even though registers are 64-bit).
pub fn is_32_bit(arch: Arch) -> bool {
    matches!(
        arch,
        Arch::X86
            | Arch::X32
            | Arch::Arm
            | Arch::Mips
            | Arch::Mipsel
            | Arch::Mips64N32
            | Arch::Mipsel64N32
            | Arch::Ppc
            | Arch::S390
            | Arch::Parisc
    )
}

/// The plans of one section, sorted by syscall number.
#[derive(Debug, Default)]
struct Plans {
    entries: Vec<(u32, SyscallPlan)>,
}

impl Plans {
    fn get(&self, nr: &u32) -> Option<&SyscallPlan> {
        self.entries
            .binary_search_by_key(nr, |(n, _)| *n)
            .ok()
            .map(|i| &self.entries[i].1)
    }

    fn range_from(&self, start: u32) -> impl Iterator<Item = &(u32, SyscallPlan)> {
        let i = self.entries.partition_point(|(n, _)| *n < start);
        self.entries[i..].iter()
    }
}

/// One argument comparison, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cmp {
    index: u32,
    op: SeccompOperator,
    value: u64,
    value_two: u64,
}

/// What one syscall number does on one architecture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SyscallPlan {
    /// Conditional rules: (comparisons, all of which must hold; return value).
    rules: Vec<(Vec<Cmp>, u32)>,
    /// The unconditional action, if any rule has no comparisons.
    unconditional: Option<u32>,
    names: Vec<&'static str>,
    /// The syscall belongs to a 32-bit ABI: arguments are 32 bits wide, so only the low
    /// word is compared and values are truncated, as libseccomp (and so every runtime) does.
    narrow: bool,
    /// The rules already added, to drop duplicates in O(log n).
    seen: std::collections::BTreeSet<(Vec<Cmp>, u32)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Ret(u32, String),
    Rules(u32),
}

/// Compiles a resolved spec (base profiles already merged) into a filter program.
pub fn compile(spec: &SeccompProfileSpec, opts: &CompileOptions) -> Result<Program, SeccompError> {
    let default_ret = action_value(spec.default_action, None);
    let bad_arch_ret = action_value(opts.bad_arch_action, None);

    // Architectures, NATIVE resolved, duplicates dropped, grouped by audit value.
    let mut arches: Vec<Arch> = match spec.architectures.as_deref() {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|a| if *a == Arch::Native { opts.native } else { *a })
            .collect(),
        _ => vec![opts.native],
    };
    // libseccomp (so runc, crun, containerd) always keeps the native architecture in a filter,
    // listed or not: a profile naming only SCMP_ARCH_X86 still lets x86-64 programs run under
    // its rules rather than killing them at their first call. Do the same.
    if !arches.contains(&opts.native) {
        arches.insert(0, opts.native);
    }
    let mut seen = Vec::new();
    arches.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    let mut sections: Vec<(u32, Vec<Arch>)> = Vec::new();
    for arch in &arches {
        let audit = syscalls::audit_arch(*arch).ok_or(SeccompError::UnsupportedArch(arch.as_str()))?;
        syscalls::table(*arch).ok_or(SeccompError::UnsupportedArch(arch.as_str()))?;
        match sections.iter_mut().find(|(a, _)| *a == audit) {
            Some((_, members)) => members.push(*arch),
            None => sections.push((audit, vec![*arch])),
        }
    }

    // Argument indexes outside 0..=5 would load past seccomp_data (validation reports them
    // with their path; the compiler must not trust that it ran).
    for (i, rule) in spec.rules().iter().enumerate() {
        for (j, a) in rule.args.iter().flatten().enumerate() {
            if a.index > 5 {
                return Err(SeccompError::Invalid(format!(
                    "spec.syscalls[{i}].args[{j}].index: {} is out of range 0..=5",
                    a.index
                )));
            }
        }
    }

    let mut asm = Asm {
        ops: Vec::with_capacity(64 + spec.rules().len() * 4),
        annotate: opts.annotate,
        ..Asm::default()
    };
    asm.stmt(
        Insn::stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        asm.note(|| "load arch".into()),
    );
    let section_labels: Vec<Label> = sections.iter().map(|_| asm.label()).collect();
    for ((audit, members), label) in sections.iter().zip(&section_labels) {
        let names: Vec<&str> = members.iter().map(|a| a.as_str()).collect();
        asm.jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            *audit,
            Target::L(*label),
            Target::Next,
            asm.note(|| names.join(" + ")),
        );
    }
    asm.stmt(
        Insn::stmt(BPF_RET | BPF_K, bad_arch_ret),
        asm.note(|| "architecture not in the profile".into()),
    );

    for ((_, members), label) in sections.iter().zip(&section_labels) {
        asm.place(*label);
        let big_endian = is_big_endian(members[0]);
        let (plans, missing) = plan_section(spec, members, opts.annotate)?;
        // A name unknown on every architecture we know is a typo; a name that exists
        // elsewhere (socketcall on x86-64, say) is skipped, as runtimes do.
        for (ri, ni) in missing {
            let name = &spec.rules()[ri as usize].names[ni as usize];
            let elsewhere = arches
                .iter()
                .any(|a| syscalls::table(*a).is_some_and(|t| t.number(name).is_some()));
            if !elsewhere && !syscalls::known_anywhere(name) {
                return Err(SeccompError::UnknownSyscall {
                    name: name.clone(),
                    arch: arches[0].as_str(),
                });
            }
        }
        let mut intervals = intervals(&plans, members, default_ret, bad_arch_ret, opts.annotate);
        merge_adjacent(&mut intervals);
        asm.stmt(
            Insn::stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
            asm.note(|| "load nr".into()),
        );
        emit_section(&mut asm, &intervals, &plans, default_ret, big_endian);
    }
    // Trampolines only add instructions: a program already too long is refused before
    // assembling it.
    let emitted = asm.ops.iter().filter(|(op, _)| !matches!(op, Op::Place(_))).count();
    if emitted > BPF_MAXINSNS {
        return Err(SeccompError::TooLong {
            len: emitted,
            limit: BPF_MAXINSNS,
        });
    }
    let program = asm.assemble();
    if program.insns.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLong {
            len: program.insns.len(),
            limit: BPF_MAXINSNS,
        });
    }
    Ok(program)
}

fn comparisons(args: &[SeccompArg]) -> Vec<Vec<Cmp>> {
    let cmps: Vec<Cmp> = args
        .iter()
        .map(|a| Cmp {
            index: a.index,
            op: a.op,
            value: a.value.unwrap_or(0),
            value_two: a.value_two.unwrap_or(0),
        })
        .collect();
    // Runtimes cannot AND two comparisons of one argument through libseccomp; they add each
    // comparison as a rule of its own (so the rule matches when any holds). Do the same.
    let repeated = cmps
        .iter()
        .enumerate()
        .any(|(i, c)| cmps[..i].iter().any(|d| d.index == c.index));
    if repeated {
        cmps.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![cmps]
    }
}

fn plan_section(
    spec: &SeccompProfileSpec,
    members: &[Arch],
    annotate: bool,
) -> Result<(Plans, Vec<(u32, u16)>), SeccompError> {
    let default_ret = action_value(spec.default_action, None);
    let rules = spec.rules();
    let tables = members
        .iter()
        .map(|a| syscalls::table(*a).ok_or(SeccompError::UnsupportedArch(a.as_str())))
        .collect::<Result<Vec<_>, _>>()?;
    // (number, rule, architecture, name) for every name that exists here, sorted by number:
    // small entries sort fast, and each number's plan is then built in one pass.
    let total_names: usize = rules.iter().map(|r| r.names.len()).sum();
    let mut hits: Vec<(u32, u32, u8, u16)> = Vec::with_capacity(total_names * tables.len());
    // Names found on no architecture of this section, for the caller's typo check.
    let mut missing: Vec<(u32, u16)> = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        // Runtimes skip rules whose action is the default action (libseccomp refuses them).
        let skipped = action_value(rule.action, rule.errno_ret) == default_ret;
        for (ni, name) in rule.names.iter().enumerate() {
            let mut found = false;
            for (ai, table) in tables.iter().enumerate() {
                if let Some(nr) = table.number(name) {
                    found = true;
                    if skipped {
                        break;
                    }
                    hits.push((nr, ri as u32, ai as u8, ni as u16));
                }
            }
            if !found {
                missing.push((ri as u32, ni as u16));
            }
        }
    }
    hits.sort_unstable();
    let mut entries: Vec<(u32, SyscallPlan)> = Vec::with_capacity(hits.len());
    for &(nr, ri, ai, ni) in &hits {
        if entries.last().is_none_or(|(n, _)| *n != nr) {
            entries.push((nr, SyscallPlan::default()));
        }
        let Some((_, plan)) = entries.last_mut() else { continue };
        let rule = &rules[ri as usize];
        let ret = action_value(rule.action, rule.errno_ret);
        plan.narrow = is_32_bit(members[ai as usize]);
        if annotate {
            let name = &rule.names[ni as usize];
            if let Some(n) = tables[ai as usize].names().find(|n| n == name)
                && !plan.names.contains(&n)
            {
                plan.names.push(n);
            }
        }
        match rule.args.as_deref() {
            None | Some([]) => {
                plan.unconditional = Some(match plan.unconditional {
                    Some(old) if precedence(old) <= precedence(ret) => old,
                    _ => ret,
                });
            }
            Some(args) => {
                for cmps in comparisons(args) {
                    if plan.seen.insert((cmps.clone(), ret)) {
                        plan.rules.push((cmps, ret));
                    }
                }
            }
        }
    }
    Ok((Plans { entries }, missing))
}

/// The number line of a section as `(start, outcome)`, covering `0..=u32::MAX`.
fn intervals(plans: &Plans, members: &[Arch], default_ret: u32, bad_arch: u32, annotate: bool) -> Vec<(u32, Outcome)> {
    let has = |a: Arch| members.contains(&a);
    // On x86-64, x32 numbers carry a marker bit; a profile without the other ABI treats its
    // numbers as a foreign architecture, as libseccomp does.
    let (lo_bound, hi_bound) = if has(Arch::X86_64) && !has(Arch::X32) {
        (0, X32_SYSCALL_BIT)
    } else if has(Arch::X32) && !has(Arch::X86_64) {
        (X32_SYSCALL_BIT, u32::MAX)
    } else {
        (0, u32::MAX)
    };
    // Interval descriptions are only kept for the disassembly.
    let text = |t: &str| if annotate { t.to_owned() } else { String::new() };
    let default = |_: u32| Outcome::Ret(default_ret, text("default action"));
    let mut out: Vec<(u32, Outcome)> = Vec::with_capacity(plans.entries.len() * 2 + 4);
    if lo_bound > 0 {
        out.push((0, Outcome::Ret(bad_arch, text("x86-64 number on an x32-only profile"))));
    }
    let mut cursor = lo_bound;
    for (nr, plan) in plans.range_from(lo_bound) {
        let nr = *nr;
        if hi_bound != u32::MAX && nr >= hi_bound {
            break;
        }
        if nr > cursor {
            out.push((cursor, default(cursor)));
        }
        let names = plan.names.join(",");
        let outcome = if plan.rules.is_empty() || plan.unconditional.is_some() {
            Outcome::Ret(plan.unconditional.unwrap_or(default_ret), names)
        } else {
            Outcome::Rules(nr)
        };
        out.push((nr, outcome));
        match nr.checked_add(1) {
            Some(n) => cursor = n,
            None => return out,
        }
    }
    if hi_bound != u32::MAX {
        if cursor < hi_bound {
            out.push((cursor, default(cursor)));
        }
        out.push((
            hi_bound,
            Outcome::Ret(bad_arch, text("x32 number on an x86-64-only profile")),
        ));
        // nr -1 (a tracer skipped the syscall) is not an x32 number: it gets the default.
        out.push((u32::MAX, Outcome::Ret(default_ret, text("nr -1"))));
    } else {
        out.push((cursor, default(cursor)));
    }
    out
}

/// Joins neighbours that return the same value.
fn merge_adjacent(intervals: &mut Vec<(u32, Outcome)>) {
    let mut merged: Vec<(u32, Outcome)> = Vec::with_capacity(intervals.len());
    for (start, outcome) in intervals.drain(..) {
        if let (Some((_, Outcome::Ret(prev, prev_names))), Outcome::Ret(ret, names)) = (merged.last_mut(), &outcome)
            && prev == ret
        {
            if !names.is_empty() && names != "default action" {
                if prev_names == "default action" {
                    *prev_names = names.clone();
                } else {
                    prev_names.push(',');
                    prev_names.push_str(names);
                }
            }
            continue;
        }
        merged.push((start, outcome));
    }
    *intervals = merged;
}

/// Runs with at most this many entries are tested one after the other instead of split
/// further: a short chain of `jeq`s is smaller than a tree and barely longer to walk.
const LINEAR_RUNS: usize = 5;

/// A maximal range of syscall numbers with one outcome other than the default action.
struct Run<'a> {
    start: u32,
    end: u32,
    outcome: &'a Outcome,
}

fn emit_section(asm: &mut Asm, intervals: &[(u32, Outcome)], plans: &Plans, default_ret: u32, big_endian: bool) {
    let mut runs = Vec::with_capacity(intervals.len());
    for (i, (start, outcome)) in intervals.iter().enumerate() {
        if matches!(outcome, Outcome::Ret(r, _) if *r == default_ret) {
            continue;
        }
        let end = intervals.get(i + 1).map_or(u32::MAX, |(next, _)| next - 1);
        runs.push(Run {
            start: *start,
            end,
            outcome,
        });
    }
    // Small sections share one return instruction per action at their end: every jump to it
    // stays within the 255-instruction reach of a conditional jump. Large ones keep their
    // returns next to the tests, so no trampoline lengthens a path.
    let shared = runs.len() <= SHARED_RETURNS_MAX_RUNS && runs.iter().all(|r| matches!(r.outcome, Outcome::Ret(..)));
    let ctx = EmitCtx {
        plans,
        default_ret,
        big_endian,
        shared,
        pool: std::cell::RefCell::new(Vec::new()),
    };
    emit_runs(asm, &ctx, &runs, 0, u32::MAX);
    for (ret, label) in ctx.pool.take() {
        asm.place(label);
        let note = asm.note(|| {
            if ret == default_ret {
                "default action".into()
            } else {
                describe_ret(ret)
            }
        });
        asm.stmt(Insn::stmt(BPF_RET | BPF_K, ret), note);
    }
}

struct EmitCtx<'a> {
    plans: &'a Plans,
    default_ret: u32,
    big_endian: bool,
    /// Whether returns are shared at the end of the section.
    shared: bool,
    /// The shared returns: value and label.
    pool: std::cell::RefCell<Vec<(u32, Label)>>,
}

impl EmitCtx<'_> {
    fn pooled(&self, asm: &mut Asm, ret: u32) -> Label {
        let mut pool = self.pool.borrow_mut();
        if let Some((_, l)) = pool.iter().find(|(r, _)| *r == ret) {
            return *l;
        }
        let l = asm.label();
        pool.push((ret, l));
        l
    }
}

/// Sections with at most this many runs and no argument rules share their returns.
const SHARED_RETURNS_MAX_RUNS: usize = 80;

/// The label of an outcome's code in a chain, shared by runs with the same outcome.
fn label_for<'o>(asm: &mut Asm, targets: &mut Vec<(&'o Outcome, Label)>, o: &'o Outcome) -> Label {
    let key = |x: &Outcome| match x {
        Outcome::Ret(r, _) => (0u8, *r),
        Outcome::Rules(nr) => (1u8, *nr),
    };
    if let Some((_, l)) = targets.iter().find(|(t, _)| key(t) == key(o)) {
        return *l;
    }
    let l = asm.label();
    targets.push((o, l));
    l
}

/// Emits a search over `runs`, knowing that `lo <= nr <= hi` on every path that gets here.
fn emit_runs(asm: &mut Asm, ctx: &EmitCtx<'_>, runs: &[Run<'_>], lo: u32, hi: u32) {
    if runs.len() > LINEAR_RUNS {
        let mid = runs.len() / 2;
        let right = asm.label();
        let split = runs[mid].start;
        asm.jump(BPF_JMP | BPF_JGE | BPF_K, split, Target::L(right), Target::Next, None);
        emit_runs(asm, ctx, &runs[..mid], lo, split - 1);
        asm.place(right);
        emit_runs(asm, ctx, &runs[mid..], split, hi);
        return;
    }
    // A chain: test each run in ascending order; falling off the end means the default.
    let mut targets: Vec<(&Outcome, Label)> = Vec::new();
    // With shared returns, the last test's miss goes straight to the default return.
    let default_label = ctx.shared.then(|| ctx.pooled(asm, ctx.default_ret));
    let mut fell_through = true;
    for (k, run) in runs.iter().enumerate() {
        let out = match run.outcome {
            Outcome::Ret(ret, _) if ctx.shared => ctx.pooled(asm, *ret),
            o => label_for(asm, &mut targets, o),
        };
        let last = k + 1 == runs.len();
        let miss = match default_label {
            Some(l) if last => Target::L(l),
            _ => Target::Next,
        };
        if last && default_label.is_some() {
            fell_through = false;
        }
        let covers_lo = run.start <= lo;
        let covers_hi = run.end >= hi;
        match (run.start == run.end, covers_lo, covers_hi) {
            (_, true, true) => {
                asm.ops.push((Op::Ja(out), None));
                fell_through = false;
                break;
            }
            (true, _, _) => asm.jump(BPF_JMP | BPF_JEQ | BPF_K, run.start, Target::L(out), miss, None),
            (false, true, false) => asm.jump(BPF_JMP | BPF_JGT | BPF_K, run.end, miss, Target::L(out), None),
            (false, false, true) => asm.jump(BPF_JMP | BPF_JGE | BPF_K, run.start, Target::L(out), miss, None),
            (false, false, false) => {
                let next = match miss {
                    Target::L(l) => l,
                    Target::Next => asm.label(),
                };
                asm.jump(
                    BPF_JMP | BPF_JGE | BPF_K,
                    run.start,
                    Target::Next,
                    Target::L(next),
                    None,
                );
                asm.jump(
                    BPF_JMP | BPF_JGT | BPF_K,
                    run.end,
                    Target::L(next),
                    Target::L(out),
                    None,
                );
                if miss == Target::Next {
                    asm.place(next);
                }
            }
        }
    }
    if fell_through {
        let default_note = asm.note(|| "default action".into());
        asm.stmt(Insn::stmt(BPF_RET | BPF_K, ctx.default_ret), default_note);
    }
    for (outcome, label) in targets {
        asm.place(label);
        match outcome {
            Outcome::Ret(ret, what) => {
                let note = asm.note(|| {
                    if what.chars().count() > 60 {
                        format!("{}...", what.chars().take(57).collect::<String>())
                    } else {
                        what.clone()
                    }
                });
                asm.stmt(Insn::stmt(BPF_RET | BPF_K, *ret), note);
            }
            Outcome::Rules(nr) => {
                if let Some(plan) = ctx.plans.get(nr) {
                    emit_rules(asm, plan, ctx.default_ret, ctx.big_endian);
                }
            }
        }
    }
}

fn emit_rules(asm: &mut Asm, plan: &SyscallPlan, default_ret: u32, big_endian: bool) {
    // Only syscalls with argument rules and no unconditional rule get here: `intervals` turns
    // an unconditional rule into a plain return, since it decides alone (as in libseccomp).
    // The most restrictive matching rule wins, as between stacked filters: try rules in order
    // of precedence.
    debug_assert!(plan.unconditional.is_none() && plan.rules.iter().all(|(c, _)| !c.is_empty()));
    let mut rules: Vec<(Vec<Cmp>, u32)> = plan.rules.clone();
    rules.sort_by(|a, b| {
        precedence(a.1)
            .cmp(&precedence(b.1))
            .then_with(|| a.0.len().cmp(&b.0.len()))
            .then_with(|| a.0.cmp(&b.0))
    });
    let names = plan.names.join(",");
    let mut i = 0;
    while i < rules.len() {
        let (cmps, ret) = &rules[i];
        // A run of single-comparison EQ rules on one argument with one action (personality
        // with several values, say) is a set membership test: load the word(s) once and
        // compare against each value.
        let same_set = |r: &(Vec<Cmp>, u32)| {
            r.1 == *ret
                && r.0.len() == 1
                && r.0[0].op == SeccompOperator::Eq
                && cmps.len() == 1
                && cmps[0].op == SeccompOperator::Eq
                && r.0[0].index == cmps[0].index
                && (plan.narrow || r.0[0].value >> 32 == cmps[0].value >> 32)
        };
        let group = rules[i..].iter().take_while(|r| same_set(r)).count();
        if group >= 2 {
            let values: Vec<u64> = rules[i..i + group].iter().map(|r| r.0[0].value).collect();
            emit_eq_set(asm, &cmps[0], &values, *ret, plan.narrow, big_endian);
            i += group;
            continue;
        }
        let fail = asm.label();
        for c in cmps {
            if plan.narrow {
                emit_cmp32(asm, c, fail, big_endian);
            } else {
                emit_cmp(asm, c, fail, big_endian);
            }
        }
        asm.stmt(
            Insn::stmt(BPF_RET | BPF_K, *ret),
            asm.note(|| format!("{names}: rule matched")),
        );
        asm.place(fail);
        i += 1;
    }
    asm.stmt(
        Insn::stmt(BPF_RET | BPF_K, default_ret),
        asm.note(|| format!("{names}: no rule matched")),
    );
}

/// `args[i]` equal to any of `values` (all with the same high word unless `narrow`): return
/// `ret`; otherwise fall through.
fn emit_eq_set(asm: &mut Asm, c: &Cmp, values: &[u64], ret: u32, narrow: bool, big_endian: bool) {
    let base = OFF_ARGS + 8 * c.index;
    let (lo_off, hi_off) = if big_endian { (base + 4, base) } else { (base, base + 4) };
    let miss = asm.label();
    let hit = asm.label();
    if !narrow {
        asm.stmt(
            Insn::stmt(BPF_LD | BPF_W | BPF_ABS, hi_off),
            asm.note(|| format!("args[{}].hi", c.index)),
        );
        asm.jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            (c.value >> 32) as u32,
            Target::Next,
            Target::L(miss),
            None,
        );
    }
    asm.stmt(
        Insn::stmt(BPF_LD | BPF_W | BPF_ABS, lo_off),
        asm.note(|| format!("args[{}].lo", c.index)),
    );
    for (k, v) in values.iter().enumerate() {
        let otherwise = if k + 1 == values.len() {
            Target::L(miss)
        } else {
            Target::Next
        };
        asm.jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            *v as u32,
            Target::L(hit),
            otherwise,
            asm.note(|| format!("args[{}] == {v:#x}", c.index)),
        );
    }
    asm.place(hit);
    asm.stmt(Insn::stmt(BPF_RET | BPF_K, ret), asm.note(|| "value in the set".into()));
    asm.place(miss);
}

fn emit_cmp(asm: &mut Asm, c: &Cmp, fail: Label, big_endian: bool) {
    let base = OFF_ARGS + 8 * c.index;
    let (lo_off, hi_off) = if big_endian { (base + 4, base) } else { (base, base + 4) };
    let (v_hi, v_lo) = ((c.value >> 32) as u32, c.value as u32);
    let ld = |asm: &mut Asm, off: u32, half: &str| {
        asm.stmt(
            Insn::stmt(BPF_LD | BPF_W | BPF_ABS, off),
            asm.note(|| format!("args[{}].{half}", c.index)),
        );
    };
    let jeq = BPF_JMP | BPF_JEQ | BPF_K;
    let jgt = BPF_JMP | BPF_JGT | BPF_K;
    let jge = BPF_JMP | BPF_JGE | BPF_K;
    let done = asm.label();
    let ok = Target::L(done);
    let no = Target::L(fail);
    let next = Target::Next;
    match c.op {
        SeccompOperator::Eq => {
            ld(asm, hi_off, "hi");
            asm.jump(jeq, v_hi, next, no, None);
            ld(asm, lo_off, "lo");
            asm.jump(
                jeq,
                v_lo,
                next,
                no,
                asm.note(|| format!("{} == {:#x}", arg_name(c), c.value)),
            );
        }
        SeccompOperator::Ne => {
            ld(asm, hi_off, "hi");
            asm.jump(jeq, v_hi, next, ok, None);
            ld(asm, lo_off, "lo");
            asm.jump(
                jeq,
                v_lo,
                no,
                next,
                asm.note(|| format!("{} != {:#x}", arg_name(c), c.value)),
            );
        }
        SeccompOperator::Gt | SeccompOperator::Ge => {
            ld(asm, hi_off, "hi");
            asm.jump(jgt, v_hi, ok, next, None);
            asm.jump(jeq, v_hi, next, no, None);
            ld(asm, lo_off, "lo");
            let (op, sym) = if c.op == SeccompOperator::Gt {
                (jgt, ">")
            } else {
                (jge, ">=")
            };
            asm.jump(
                op,
                v_lo,
                next,
                no,
                asm.note(|| format!("{} {sym} {:#x}", arg_name(c), c.value)),
            );
        }
        SeccompOperator::Lt | SeccompOperator::Le => {
            ld(asm, hi_off, "hi");
            asm.jump(jgt, v_hi, no, next, None);
            asm.jump(jeq, v_hi, next, ok, None);
            ld(asm, lo_off, "lo");
            let (op, sym) = if c.op == SeccompOperator::Lt {
                (jge, "<")
            } else {
                (jgt, "<=")
            };
            asm.jump(
                op,
                v_lo,
                no,
                next,
                asm.note(|| format!("{} {sym} {:#x}", arg_name(c), c.value)),
            );
        }
        SeccompOperator::MaskedEq => {
            let (m_hi, m_lo) = ((c.value >> 32) as u32, c.value as u32);
            let (w_hi, w_lo) = ((c.value_two >> 32) as u32, c.value_two as u32);
            ld(asm, hi_off, "hi");
            asm.stmt(Insn::stmt(BPF_ALU | BPF_AND | BPF_K, m_hi), None);
            asm.jump(jeq, w_hi, next, no, None);
            ld(asm, lo_off, "lo");
            asm.stmt(Insn::stmt(BPF_ALU | BPF_AND | BPF_K, m_lo), None);
            asm.jump(
                jeq,
                w_lo,
                next,
                no,
                asm.note(|| format!("{} & {:#x} == {:#x}", arg_name(c), c.value, c.value_two)),
            );
        }
    }
    asm.place(done);
}

/// A comparison on a 32-bit ABI: only the low word exists; values are truncated to 32 bits.
fn emit_cmp32(asm: &mut Asm, c: &Cmp, fail: Label, big_endian: bool) {
    let base = OFF_ARGS + 8 * c.index;
    let lo_off = if big_endian { base + 4 } else { base };
    let v = c.value as u32;
    asm.stmt(
        Insn::stmt(BPF_LD | BPF_W | BPF_ABS, lo_off),
        asm.note(|| format!("args[{}] (32-bit)", c.index)),
    );
    let (code, k, jt, jf) = match c.op {
        SeccompOperator::Eq => (BPF_JEQ, v, Target::Next, Target::L(fail)),
        SeccompOperator::Ne => (BPF_JEQ, v, Target::L(fail), Target::Next),
        SeccompOperator::Gt => (BPF_JGT, v, Target::Next, Target::L(fail)),
        SeccompOperator::Ge => (BPF_JGE, v, Target::Next, Target::L(fail)),
        SeccompOperator::Lt => (BPF_JGE, v, Target::L(fail), Target::Next),
        SeccompOperator::Le => (BPF_JGT, v, Target::L(fail), Target::Next),
        SeccompOperator::MaskedEq => {
            asm.stmt(Insn::stmt(BPF_ALU | BPF_AND | BPF_K, v), None);
            (BPF_JEQ, c.value_two as u32, Target::Next, Target::L(fail))
        }
    };
    asm.jump(
        BPF_JMP | code | BPF_K,
        k,
        jt,
        jf,
        asm.note(|| format!("{} {:?} {:#x}", arg_name(c), c.op, c.value)),
    );
}

fn arg_name(c: &Cmp) -> String {
    format!("args[{}]", c.index)
}

// ---------------------------------------------------------------------------------------
// A tiny assembler: symbolic forward jumps, resolved to 8-bit offsets with `ja` trampolines
// where a target is too far.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Next,
    L(Label),
}

#[derive(Clone, Debug)]
enum Op {
    Stmt(Insn),
    Jump { code: u16, k: u32, jt: Target, jf: Target },
    Ja(Label),
    Place(Label),
}

#[derive(Default, Debug)]
struct Asm {
    ops: Vec<(Op, Option<String>)>,
    labels: usize,
    annotate: bool,
}

impl Asm {
    /// A comment, built only when annotating.
    fn note(&self, text: impl FnOnce() -> String) -> Option<String> {
        self.annotate.then(text)
    }

    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    fn place(&mut self, l: Label) {
        self.ops.push((Op::Place(l), None));
    }

    fn stmt(&mut self, insn: Insn, comment: Option<String>) {
        self.ops.push((Op::Stmt(insn), comment));
    }

    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target, comment: Option<String>) {
        self.ops.push((Op::Jump { code, k, jt, jf }, comment));
    }

    /// Addresses of every op and every label.
    fn layout(&self) -> (Vec<usize>, Vec<usize>) {
        let mut addr = Vec::with_capacity(self.ops.len());
        let mut label_addr = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for (op, _) in &self.ops {
            addr.push(pc);
            match op {
                Op::Place(l) => label_addr[l.0] = pc,
                _ => pc += 1,
            }
        }
        (addr, label_addr)
    }

    fn assemble(mut self) -> Program {
        // Insert trampolines until every conditional jump reaches its targets. Each pass
        // expands every jump that is too far in one sweep; expansions can push other jumps
        // out of reach, so passes repeat until none is (a handful of passes in practice).
        loop {
            let (addr, label_addr) = self.layout();
            let too_far = |i: usize, t: &Target| match t {
                Target::Next => false,
                Target::L(l) => label_addr[l.0] - (addr[i] + 1) > usize::from(u8::MAX),
            };
            let any = self.ops.iter().enumerate().any(|(i, (op, _))| match op {
                Op::Jump { jt, jf, .. } => too_far(i, jt) || too_far(i, jf),
                _ => false,
            });
            if !any {
                break;
            }
            let old = std::mem::take(&mut self.ops);
            let mut ops = Vec::with_capacity(old.len() + old.len() / 8);
            for (i, (op, comment)) in old.into_iter().enumerate() {
                let Op::Jump { code, k, jt, jf } = op else {
                    ops.push((op, comment));
                    continue;
                };
                if !(too_far(i, &jt) || too_far(i, &jf)) {
                    ops.push((Op::Jump { code, k, jt, jf }, comment));
                    continue;
                }
                let after = self.label();
                let mut tail: Vec<(Op, Option<String>)> = Vec::new();
                let mut fix = |t: Target, asm: &mut Asm| -> Target {
                    match t {
                        Target::Next => Target::L(after),
                        Target::L(l) if too_far(i, &t) => {
                            let tramp = asm.label();
                            tail.push((Op::Place(tramp), None));
                            tail.push((Op::Ja(l), Some("trampoline".into())));
                            Target::L(tramp)
                        }
                        other => other,
                    }
                };
                let new_jt = fix(jt, &mut self);
                let new_jf = fix(jf, &mut self);
                ops.push((
                    Op::Jump {
                        code,
                        k,
                        jt: new_jt,
                        jf: new_jf,
                    },
                    comment,
                ));
                ops.extend(tail);
                ops.push((Op::Place(after), None));
            }
            self.ops = ops;
        }

        let (addr, label_addr) = self.layout();
        let mut insns = Vec::with_capacity(self.ops.len());
        let annotate = self.annotate;
        let mut comments = if annotate {
            Vec::with_capacity(self.ops.len())
        } else {
            Vec::new()
        };
        for (i, (op, comment)) in self.ops.into_iter().enumerate() {
            let here = addr[i];
            let off = |t: Target| -> usize {
                match t {
                    Target::Next => 0,
                    Target::L(l) => label_addr[l.0] - (here + 1),
                }
            };
            let insn = match op {
                Op::Place(_) => continue,
                Op::Stmt(insn) => insn,
                // Offsets fit: the loop above guarantees it.
                Op::Jump { code, k, jt, jf } => Insn::jump(code, k, off(jt) as u8, off(jf) as u8),
                Op::Ja(l) => Insn::stmt(BPF_JMP | BPF_JA, (label_addr[l.0] - (here + 1)) as u32),
            };
            insns.push(insn);
            if annotate {
                comments.push(comment);
            }
        }
        Program { insns, comments }
    }
}

#[cfg(test)]
mod tests {
    use super::interp::{SeccompData, run};
    use super::*;
    use spo_model::seccomp::SeccompSyscall;

    fn spec(default: SeccompAction, rules: Vec<SeccompSyscall>) -> SeccompProfileSpec {
        SeccompProfileSpec {
            state: Default::default(),
            disabled: None,
            default_action: default,
            architectures: Some(vec![Arch::X86_64]),
            listener_path: None,
            listener_metadata: None,
            syscalls: Some(rules),
            flags: None,
            base_profile_name: None,
        }
    }

    fn rule(names: &[&str], action: SeccompAction) -> SeccompSyscall {
        SeccompSyscall {
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            action,
            errno_ret: None,
            args: None,
        }
    }

    const X86_64: u32 = 0xC000_003E;

    fn ret(p: &Program, nr: u32, args: [u64; 6]) -> u32 {
        run(
            &p.insns,
            &SeccompData {
                nr,
                arch: X86_64,
                instruction_pointer: 0,
                args,
            },
        )
        .expect("run")
        .ret
    }

    #[test]
    fn allow_list() {
        let p = compile(
            &spec(
                SeccompAction::Errno,
                vec![rule(&["read", "write"], SeccompAction::Allow)],
            ),
            &CompileOptions::default(),
        )
        .expect("compile");
        assert_eq!(ret(&p, 0, [0; 6]), RET_ALLOW);
        assert_eq!(ret(&p, 1, [0; 6]), RET_ALLOW);
        assert_eq!(ret(&p, 3, [0; 6]), RET_ERRNO | 1);
        assert_eq!(
            ret(&p, X32_SYSCALL_BIT, [0; 6]),
            RET_KILL_THREAD,
            "x32 numbers are a foreign arch"
        );
        let other = run(
            &p.insns,
            &SeccompData {
                nr: 0,
                arch: 0x4000_0003,
                ..Default::default()
            },
        )
        .expect("run");
        assert_eq!(other.ret, RET_KILL_THREAD);
        assert!(p.disassemble().contains("ret  ALLOW"));
    }

    #[test]
    fn argument_comparisons_on_64_bits() {
        let mut r = rule(&["write"], SeccompAction::Allow);
        r.args = Some(vec![SeccompArg {
            index: 0,
            value: Some(0x1_0000_0002),
            value_two: None,
            op: SeccompOperator::Gt,
        }]);
        let p = compile(&spec(SeccompAction::Errno, vec![r]), &CompileOptions::default()).expect("compile");
        assert_eq!(ret(&p, 1, [0x1_0000_0003, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(ret(&p, 1, [0x2_0000_0000, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(ret(&p, 1, [0x1_0000_0002, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(ret(&p, 1, [0xffff_ffff, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
    }

    #[test]
    fn long_programs_get_trampolines_and_stay_correct() {
        // 300 syscalls each with an argument rule: far more than 255 instructions.
        let table = syscalls::table(Arch::X86_64).expect("table");
        let names: Vec<&str> = table.names().take(300).collect();
        let rules: Vec<SeccompSyscall> = names
            .iter()
            .map(|n| {
                let mut r = rule(&[n], SeccompAction::Allow);
                r.args = Some(vec![SeccompArg {
                    index: 1,
                    value: Some(7),
                    value_two: None,
                    op: SeccompOperator::Eq,
                }]);
                r
            })
            .collect();
        let p = compile(&spec(SeccompAction::Errno, rules), &CompileOptions::default()).expect("compile");
        assert!(p.insns.len() > 256);
        for n in &names {
            let nr = table.number(n).expect("nr");
            assert_eq!(ret(&p, nr, [0, 7, 0, 0, 0, 0]), RET_ALLOW, "{n}");
            assert_eq!(ret(&p, nr, [0, 8, 0, 0, 0, 0]), RET_ERRNO | 1, "{n}");
        }
    }

    #[test]
    fn the_native_architecture_is_kept_when_the_profile_leaves_it_out() {
        let mut s = spec(SeccompAction::Errno, vec![rule(&["read"], SeccompAction::Allow)]);
        s.architectures = Some(vec![Arch::X86]);
        let opts = CompileOptions {
            native: Arch::X86_64,
            ..CompileOptions::default()
        };
        let p = compile(&s, &opts).expect("compile");
        assert_eq!(ret(&p, 0, [0; 6]), RET_ALLOW, "x86-64 read: the profile's rules apply");
        assert_eq!(ret(&p, 1, [0; 6]), RET_ERRNO | 1, "x86-64 write: the default action");
        let x86 = |nr| {
            run(
                &p.insns,
                &SeccompData {
                    nr,
                    arch: 0x4000_0003,
                    ..Default::default()
                },
            )
            .expect("run")
            .ret
        };
        assert_eq!(x86(3), RET_ALLOW, "x86 read");
        let arm = run(
            &p.insns,
            &SeccompData {
                nr: 63,
                arch: 0xC000_00B7,
                ..Default::default()
            },
        )
        .expect("run");
        assert_eq!(arm.ret, RET_KILL_THREAD, "an architecture neither listed nor native");
    }

    #[test]
    fn names_of_other_architectures_are_skipped_and_typos_refused() {
        // What Docker's and containerd's default profiles list for every architecture.
        let names = ["read", "stime", "umount", "vm86", "vm86old"];
        let mut s = spec(SeccompAction::Errno, vec![rule(&names, SeccompAction::Allow)]);
        s.architectures = Some(vec![Arch::X86_64]);
        let opts = CompileOptions {
            native: Arch::X86_64,
            ..CompileOptions::default()
        };
        let p = compile(&s, &opts).expect("names of other architectures are skipped");
        assert_eq!(ret(&p, 0, [0; 6]), RET_ALLOW);
        s.syscalls = Some(vec![rule(&["read", "nosuchcall"], SeccompAction::Allow)]);
        let err = compile(&s, &opts).expect_err("unknown everywhere");
        assert!(err.to_string().contains("nosuchcall"), "{err}");
    }

    /// Finds nondeterminism only (hash order, addresses); what the program does is checked
    /// against the reference evaluator and libseccomp in tests/differential.rs.
    #[test]
    fn compiling_twice_gives_the_same_program() {
        let s = spec(
            SeccompAction::Errno,
            vec![rule(&["read", "write", "close"], SeccompAction::Allow)],
        );
        let a = compile(&s, &CompileOptions::default()).expect("compile");
        let b = compile(&s, &CompileOptions::default()).expect("compile");
        assert_eq!(a, b);
    }
}
