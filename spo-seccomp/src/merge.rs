//! Union and intersection of seccomp profiles.
//!
//! Both work on a per-syscall-name view of a profile. After canonicalization a name is in exactly
//! one of three states:
//!
//! - **unconditional**: one action (with its `errnoRet`) whatever the arguments;
//! - **conditional**: only argument rules (`args`); when none matches, the `defaultAction` applies;
//! - **unlisted**: the `defaultAction` applies.
//!
//! Within one profile, a name with an unconditional rule is unconditional even if argument rules
//! also name it: the unconditional rule decides every call (libseccomp ignores the argument rules
//! of a syscall that has an unconditional one), so those argument rules are dropped. Except when
//! the unconditional rule has the profile's own default action: runc never loads such a rule, so
//! there the argument rules decide, and the unconditional one is dropped instead. When one
//! profile has several rules for the same name and the same arguments (or several unconditional
//! ones, which validation rejects), the less restrictive one wins, the earlier one on a tie.
//!
//! The *effective action* of a name ([`effective_actions`]) is what happens to a call that matches
//! no argument rule: the unconditional action, or the `defaultAction`. A name is *allowed* when its
//! effective action [lets the syscall run](SeccompAction::lets_syscall_run).
//!
//! Output is canonical: names with the same `(action, errnoRet, args)` share one rule, names are
//! sorted, rules are sorted by `(action, errnoRet, args)` and each rule's comparisons by
//! `(index, op, value, valueTwo)`. The same inputs always give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use spo_model::SeccompProfileSpec;
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompFlag, SeccompOperator, SeccompSyscall};

use crate::SeccompError;

/// What one rule does: the action and its `errnoRet`.
pub type Verdict = (SeccompAction, Option<i64>);

/// One argument comparison in sortable form: `(index, op, value, valueTwo)`.
type ArgKey = (u32, SeccompOperator, Option<u64>, Option<u64>);

/// The comparisons of a rule, sorted and without duplicates (all of them must hold, and their
/// order does not change what the rule matches).
type ArgsKey = Vec<ArgKey>;

/// The canonical rules of one syscall name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NameRules {
    Unconditional(Verdict),
    Conditional(BTreeMap<ArgsKey, Verdict>),
}

/// The canonical rules of a profile, by syscall name.
/// The canonical rules of a profile: one entry per syscall name, sorted by name. Names borrow
/// the input profiles' (a Docker-sized profile has hundreds; only the output owns copies), and
/// a sorted vector, not a map: building one is a stable sort that finds the already sorted runs
/// real profiles have, then one pass.
#[derive(Debug, Default)]
struct RuleSet<'a>(Vec<(&'a str, NameRules)>);

impl<'a> RuleSet<'a> {
    /// From entries in rule order: the entries of one name are folded with `combine`,
    /// earlier first.
    fn from_entries(mut entries: Vec<(&'a str, NameRules)>, combine: fn(NameRules, NameRules) -> NameRules) -> Self {
        // Stable: the entries of one name keep their order, so `combine` sees earlier first.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        // In place: `later` is dropped when it is folded into `kept` (the entry before it).
        entries.dedup_by(|later, kept| {
            if later.0 != kept.0 {
                return false;
            }
            // Take both values out without cloning them; the placeholders are dropped or
            // replaced at once.
            let placeholder = || NameRules::Conditional(BTreeMap::new());
            let earlier = std::mem::replace(&mut kept.1, placeholder());
            let later = std::mem::replace(&mut later.1, placeholder());
            kept.1 = combine(earlier, later);
            true
        });
        RuleSet(entries)
    }

    fn get(&self, name: &str) -> Option<&NameRules> {
        self.0
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.0.iter().map(|(n, _)| *n)
    }

    fn values(&self) -> impl Iterator<Item = &NameRules> {
        self.0.iter().map(|(_, r)| r)
    }
}

/// The less restrictive of two verdicts by [`SeccompAction::permissiveness`]; `first` on a tie.
fn less_restrictive(first: Verdict, second: Verdict) -> Verdict {
    if second.0.permissiveness() > first.0.permissiveness() {
        second
    } else {
        first
    }
}

/// The more restrictive of two verdicts by [`SeccompAction::permissiveness`]; `first` on a tie.
fn more_restrictive(first: Verdict, second: Verdict) -> Verdict {
    if second.0.permissiveness() < first.0.permissiveness() {
        second
    } else {
        first
    }
}

fn args_key(args: Option<&[SeccompArg]>) -> Option<ArgsKey> {
    let args = args.filter(|a| !a.is_empty())?;
    let mut key: ArgsKey = args.iter().map(|a| (a.index, a.op, a.value, a.value_two)).collect();
    key.sort_unstable();
    key.dedup();
    Some(key)
}

fn args_from_key(key: &ArgsKey) -> Vec<SeccompArg> {
    key.iter()
        .map(|&(index, op, value, value_two)| SeccompArg {
            index,
            value,
            value_two,
            op,
        })
        .collect()
}

/// Argument rules of one name merged by their conditions; `pick` decides between two verdicts
/// for the same conditions (`earlier` first).
fn merge_conditional(
    mut earlier: BTreeMap<ArgsKey, Verdict>,
    later: BTreeMap<ArgsKey, Verdict>,
    pick: fn(Verdict, Verdict) -> Verdict,
) -> BTreeMap<ArgsKey, Verdict> {
    for (args, verdict) in later {
        earlier
            .entry(args)
            .and_modify(|v| *v = pick(*v, verdict))
            .or_insert(verdict);
    }
    earlier
}

/// Two sets of rules of one name in the same profile: an unconditional rule subsumes argument
/// rules; two unconditional rules give the less restrictive (`earlier` on a tie; validation
/// refuses such profiles anyway). Two argument rules with the same conditions both match every
/// call either matches, and the runtime returns the more restrictive of matching rules, so that
/// is what they mean together.
fn combine_in_profile(earlier: NameRules, later: NameRules) -> NameRules {
    match (earlier, later) {
        (NameRules::Unconditional(e), NameRules::Unconditional(l)) => NameRules::Unconditional(less_restrictive(e, l)),
        (NameRules::Unconditional(e), NameRules::Conditional(_)) => NameRules::Unconditional(e),
        (NameRules::Conditional(_), NameRules::Unconditional(l)) => NameRules::Unconditional(l),
        (NameRules::Conditional(e), NameRules::Conditional(l)) => {
            NameRules::Conditional(merge_conditional(e, l, more_restrictive))
        }
    }
}

/// Union of the rules of one name in two profiles; `earlier` (the child) wins ties. A name
/// unconditional on either side stays unconditional, with the less restrictive of every action
/// either side has for it.
fn union_name(earlier: NameRules, later: NameRules) -> NameRules {
    match (earlier, later) {
        (NameRules::Unconditional(e), NameRules::Conditional(l)) => {
            NameRules::Unconditional(l.into_values().fold(e, less_restrictive))
        }
        (NameRules::Conditional(e), NameRules::Unconditional(l)) => {
            // The child's verdicts come first so they win ties.
            NameRules::Unconditional(e.into_values().chain([l]).reduce(less_restrictive).unwrap_or(l))
        }
        (NameRules::Conditional(e), NameRules::Conditional(l)) => {
            NameRules::Conditional(merge_conditional(e, l, less_restrictive))
        }
        (NameRules::Unconditional(e), NameRules::Unconditional(l)) => NameRules::Unconditional(less_restrictive(e, l)),
    }
}

fn rule_set(spec: &SeccompProfileSpec) -> RuleSet<'_> {
    // A rule with the profile's own default action is no rule at runtime (runc skips it, and
    // so does the compiler). Unconditional, it must not silence the name's argument rules;
    // conditional and restrictive, it must not come alive in a union under another default.
    // Rules that let a call run are kept: they say what the profile needs.
    let default = crate::compile::action_value(spec.default_action, None);
    let conditional: BTreeSet<&str> = spec
        .rules()
        .iter()
        .filter(|r| args_key(r.args.as_deref()).is_some())
        .flat_map(|r| r.names.iter().map(String::as_str))
        .collect();
    let mut entries = Vec::with_capacity(spec.rules().iter().map(|r| r.names.len()).sum());
    for rule in spec.rules() {
        let verdict = (rule.action, rule.errno_ret);
        let key = args_key(rule.args.as_deref());
        let no_op = crate::compile::action_value(rule.action, rule.errno_ret) == default;
        if no_op && key.is_some() && !rule.action.lets_syscall_run() {
            continue;
        }
        for name in &rule.names {
            if no_op && key.is_none() && conditional.contains(name.as_str()) {
                continue;
            }
            let rules = match &key {
                None => NameRules::Unconditional(verdict),
                Some(k) => NameRules::Conditional(BTreeMap::from([(k.clone(), verdict)])),
            };
            entries.push((name.as_str(), rules));
        }
    }
    RuleSet::from_entries(entries, combine_in_profile)
}

fn union_sets<'a>(child: RuleSet<'a>, base: RuleSet<'a>) -> RuleSet<'a> {
    // The child's entries first, so a name on both sides is combined child first.
    let mut entries = child.0;
    entries.extend(base.0);
    RuleSet::from_entries(entries, union_name)
}

/// Canonical rules: one rule per `(action, errnoRet, args)`, sorted.
fn emit(set: &RuleSet<'_>) -> Option<Vec<SeccompSyscall>> {
    // Keyed by what a rule does, in output order.
    type RuleKey<'a> = (SeccompAction, Option<i64>, Option<&'a ArgsKey>);
    let mut groups: BTreeMap<RuleKey<'_>, Vec<&str>> = BTreeMap::new();
    for (name, rules) in &set.0 {
        match rules {
            NameRules::Unconditional((action, errno)) => {
                groups.entry((*action, *errno, None)).or_default().push(name);
            }
            NameRules::Conditional(by_args) => {
                for (args, (action, errno)) in by_args {
                    groups.entry((*action, *errno, Some(args))).or_default().push(name);
                }
            }
        }
    }
    if groups.is_empty() {
        return None;
    }
    Some(
        groups
            .into_iter()
            .map(|((action, errno_ret, args), names)| SeccompSyscall {
                names: names.into_iter().map(str::to_owned).collect(),
                action,
                errno_ret,
                args: args.map(args_from_key),
            })
            .collect(),
    )
}

/// `spec` with its rules in canonical form (see the module docs); every other field unchanged.
/// What the profile does is unchanged too.
pub fn canonicalize(spec: &SeccompProfileSpec) -> SeccompProfileSpec {
    union_of(spec, &[])
}

/// The union of a profile and its base profile, with the operator's `baseProfileName` semantics:
///
/// - per syscall name the **less restrictive** action wins, by
///   [`SeccompAction::permissiveness`]; on equal permissiveness (such as two `SCMP_ACT_ERRNO`
///   with different `errnoRet`) the child's rule is kept;
/// - a name unconditional on either side stays unconditional: the other side's argument
///   conditions for it are dropped (upstream drops every argument condition) and the rule above
///   picks among all actions both sides have for the name. So every call that an explicit rule
///   of either side lets run still runs; the price is that an action the conditional side gave
///   only to some arguments may now apply to all of them;
/// - argument rules of names that are unconditional nowhere are all kept (identical rules once;
///   for the same arguments with different actions the rule above picks);
/// - `defaultAction`, `architectures`, `flags`, `state`, `disabled` and `baseProfileName` are
///   the child's; so are `listenerPath`/`listenerMetadata`, unless the child has no
///   `listenerPath`, in which case the base's are taken so its `SCMP_ACT_NOTIFY` rules keep
///   their agent. The base's `defaultAction` plays no part.
///
/// The rules of the result are canonical (see the module docs).
pub fn union(child: &SeccompProfileSpec, base: &SeccompProfileSpec) -> SeccompProfileSpec {
    union_of(child, &[base])
}

/// [`union`] folded from the left: `union(union(profiles[0], profiles[1]), profiles[2])...`, so
/// the first profile is the child whose settings are kept and which wins ties. `None` when
/// `profiles` is empty.
pub fn union_all(profiles: &[SeccompProfileSpec]) -> Option<SeccompProfileSpec> {
    let (first, rest) = profiles.split_first()?;
    let rest: Vec<&SeccompProfileSpec> = rest.iter().collect();
    Some(union_of(first, &rest))
}

pub(crate) fn union_of(child: &SeccompProfileSpec, bases: &[&SeccompProfileSpec]) -> SeccompProfileSpec {
    let mut set = rule_set(child);
    let mut listener = (&child.listener_path, &child.listener_metadata);
    for base in bases {
        set = union_sets(set, rule_set(base));
        if listener.0.is_none() && base.listener_path.is_some() {
            listener = (&base.listener_path, &base.listener_metadata);
        }
    }
    SeccompProfileSpec {
        state: child.state,
        disabled: child.disabled,
        default_action: child.default_action,
        architectures: child.architectures.clone(),
        listener_path: listener.0.clone(),
        listener_metadata: listener.1.clone(),
        syscalls: emit(&set),
        flags: child.flags.clone(),
        base_profile_name: child.base_profile_name.clone(),
    }
}

/// The effective action of every syscall name that a rule of `spec` mentions: what a call gets
/// when no argument rule matches it. That is the name's unconditional action, or
/// `(defaultAction, None)` for names that only have argument rules. Names not in the map get
/// `(defaultAction, None)` as well.
pub fn effective_actions(spec: &SeccompProfileSpec) -> BTreeMap<String, Verdict> {
    rule_set(spec)
        .0
        .into_iter()
        .map(|(name, rules)| {
            let verdict = match rules {
                NameRules::Unconditional(v) => v,
                NameRules::Conditional(_) => (spec.default_action, None),
            };
            (name.to_owned(), verdict)
        })
        .collect()
}

/// The intersection of two profiles, for node baselines: the result lets a syscall run only if
/// both profiles let it run.
///
/// Exact definition, per syscall name (a name listed by neither side simply gets the result's
/// `defaultAction`):
///
/// - `defaultAction` is the **more restrictive** of the two (by
///   [`SeccompAction::permissiveness`]; `a`'s on a tie).
/// - When neither side has argument rules for the name, its action is the more restrictive of
///   the two effective actions (an unlisted name counts as its side's `defaultAction`), `a`'s
///   rule on a tie. A result equal to `(defaultAction, no errnoRet)` is dropped as redundant.
/// - When both sides have the *same* argument rules for the name, they are kept: calls matching
///   a rule get the same action from both sides, and calls matching none get the more
///   restrictive default, which is the result's `defaultAction`. This is exact.
/// - When one side is unconditional (or unlisted) with action `U` and the other has argument
///   rules, and `U` combined with that other side's `defaultAction` gives the result's
///   `defaultAction`, the argument rules are kept with each action made at least as restrictive
///   as `U`. This is exact too, and is the usual node-baseline case (a workload's unconditional
///   `clone` against a baseline's flag-checked `clone`).
/// - Otherwise the result is **conservative**: the name becomes unconditional with the more
///   restrictive of the two sides' *most restrictive* behaviours (for a side with argument
///   rules: the most restrictive of its rules' actions and its `defaultAction`). Calls the exact
///   intersection would allow for some arguments may be denied; nothing that either side denies
///   is ever allowed. An exact result is not representable in general: it would need a
///   per-name fallback different from `defaultAction`, or the conjunction of arbitrary
///   comparisons of both sides (`args` can only AND comparisons of distinct arguments, and
///   masked and ordered comparisons do not combine into one comparison).
///
/// Other fields:
///
/// - `architectures`: a missing or empty list means "the node's native architecture only";
///   runtimes always include the native architecture and the list only adds others. So if either
///   side lists none, the result lists none. If both list some, the result is their common
///   entries (in `a`'s order), and it is an error when there are none: the profiles were written
///   for different machines.
/// - `flags`: the union, except `SECCOMP_FILTER_FLAG_SPEC_ALLOW`, which turns a mitigation off
///   and is kept only when both sides have it. `TSYNC` and `LOG` never let more run, and
///   `WAIT_KILLABLE_RECV` only changes how a notifying thread waits.
/// - `listenerPath`/`listenerMetadata`: `a`'s, or `b`'s when `a` has none; an error when both
///   are set, differ, and the result has `SCMP_ACT_NOTIFY` rules.
/// - `state`, `disabled`: `a`'s.
///
/// Inputs must be resolved first ([`crate::resolve::resolve_profile`]): a `baseProfileName` on
/// either side is an error, because the union it implies would have to happen before the
/// intersection.
pub fn intersect(a: &SeccompProfileSpec, b: &SeccompProfileSpec) -> Result<SeccompProfileSpec, SeccompError> {
    for (side, spec) in [("first", a), ("second", b)] {
        if let Some(base) = &spec.base_profile_name {
            return Err(SeccompError::Intersect(format!(
                "the {side} profile still names baseProfileName {base:?}; resolve base profiles first"
            )));
        }
    }
    let architectures = intersect_architectures(a.architectures.as_deref(), b.architectures.as_deref())?;
    let flags = intersect_flags(a.flags.as_deref(), b.flags.as_deref());
    let default_action = more_restrictive((a.default_action, None), (b.default_action, None)).0;

    let set_a = rule_set(a);
    let set_b = rule_set(b);
    let names: BTreeSet<&str> = set_a.names().chain(set_b.names()).collect();
    // Names come in order, so the entries are sorted and unique as they are pushed.
    let mut set = RuleSet::default();
    for name in names {
        let side_a = Side::of(set_a.get(name), a.default_action);
        let side_b = Side::of(set_b.get(name), b.default_action);
        if let Some(rules) = intersect_name(side_a, side_b, default_action) {
            set.0.push((name, rules));
        }
    }

    let notifies = set.values().any(|r| match r {
        NameRules::Unconditional(v) => v.0 == SeccompAction::Notify,
        NameRules::Conditional(m) => m.values().any(|v| v.0 == SeccompAction::Notify),
    });
    let (listener_path, listener_metadata) = match (&a.listener_path, &b.listener_path) {
        (Some(pa), Some(pb)) if pa != pb && notifies => {
            return Err(SeccompError::Intersect(format!(
                "the result has SCMP_ACT_NOTIFY rules but the profiles name different seccomp agents \
                 ({pa:?} and {pb:?}); use one listenerPath in both"
            )));
        }
        (None, Some(_)) => (b.listener_path.clone(), b.listener_metadata.clone()),
        _ => (a.listener_path.clone(), a.listener_metadata.clone()),
    };

    Ok(SeccompProfileSpec {
        state: a.state,
        disabled: a.disabled,
        default_action,
        architectures,
        listener_path,
        listener_metadata,
        syscalls: emit(&set),
        flags,
        base_profile_name: None,
    })
}

/// [`intersect`] folded from the left; an error when `profiles` is empty. One profile is
/// intersected with itself, which keeps what it does and drops redundant rules.
pub fn intersect_all(profiles: &[SeccompProfileSpec]) -> Result<SeccompProfileSpec, SeccompError> {
    let (first, rest) = profiles
        .split_first()
        .ok_or_else(|| SeccompError::Intersect("no profiles given".to_owned()))?;
    let mut acc = intersect(first, first)?;
    for p in rest {
        acc = intersect(&acc, p)?;
    }
    Ok(acc)
}

/// One side's rules for a name, as the intersection sees them.
#[derive(Clone, Copy)]
enum Side<'a> {
    Unconditional(Verdict),
    Conditional(&'a BTreeMap<ArgsKey, Verdict>, SeccompAction),
}

impl<'a> Side<'a> {
    fn of(rules: Option<&'a NameRules>, default_action: SeccompAction) -> Side<'a> {
        match rules {
            None => Side::Unconditional((default_action, None)),
            Some(NameRules::Unconditional(v)) => Side::Unconditional(*v),
            Some(NameRules::Conditional(m)) => Side::Conditional(m, default_action),
        }
    }

    /// The most restrictive thing this side can do to any call of the name.
    fn floor(self) -> Verdict {
        match self {
            Side::Unconditional(v) => v,
            Side::Conditional(m, default_action) => m
                .values()
                .fold((default_action, None), |acc, v| more_restrictive(acc, *v)),
        }
    }
}

fn intersect_name(a: Side<'_>, b: Side<'_>, default_action: SeccompAction) -> Option<NameRules> {
    let fallback = (default_action, None);
    let unconditional = |v: Verdict| (v != fallback).then_some(NameRules::Unconditional(v));
    let clamp = |rules: &BTreeMap<ArgsKey, Verdict>, combine: &dyn Fn(Verdict) -> Verdict| {
        NameRules::Conditional(rules.iter().map(|(k, v)| (k.clone(), combine(*v))).collect())
    };
    match (a, b) {
        (Side::Unconditional(x), Side::Unconditional(y)) => unconditional(more_restrictive(x, y)),
        (Side::Conditional(x, _), Side::Conditional(y, _)) if x == y => Some(NameRules::Conditional(x.clone())),
        (Side::Unconditional(u), Side::Conditional(rules, other_default))
            if more_restrictive(u, (other_default, None)) == fallback =>
        {
            Some(clamp(rules, &|v| more_restrictive(u, v)))
        }
        (Side::Conditional(rules, other_default), Side::Unconditional(u))
            if more_restrictive((other_default, None), u) == fallback =>
        {
            Some(clamp(rules, &|v| more_restrictive(v, u)))
        }
        _ => unconditional(more_restrictive(a.floor(), b.floor())),
    }
}

fn intersect_architectures(a: Option<&[Arch]>, b: Option<&[Arch]>) -> Result<Option<Vec<Arch>>, SeccompError> {
    match (a.filter(|l| !l.is_empty()), b.filter(|l| !l.is_empty())) {
        (Some(x), Some(y)) => {
            let mut common: Vec<Arch> = Vec::new();
            for arch in x {
                if y.contains(arch) && !common.contains(arch) {
                    common.push(*arch);
                }
            }
            if common.is_empty() {
                return Err(SeccompError::Intersect(format!(
                    "the architectures have nothing in common ({} and {}); intersect profiles written for the same machines",
                    arch_list(x),
                    arch_list(y)
                )));
            }
            Ok(Some(common))
        }
        _ => Ok(None),
    }
}

fn intersect_flags(a: Option<&[SeccompFlag]>, b: Option<&[SeccompFlag]>) -> Option<Vec<SeccompFlag>> {
    let a: BTreeSet<SeccompFlag> = a.unwrap_or_default().iter().copied().collect();
    let b: BTreeSet<SeccompFlag> = b.unwrap_or_default().iter().copied().collect();
    let flags: Vec<SeccompFlag> = SeccompFlag::ALL
        .iter()
        .copied()
        .filter(|f| match f {
            SeccompFlag::SpecAllow => a.contains(f) && b.contains(f),
            _ => a.contains(f) || b.contains(f),
        })
        .collect();
    (!flags.is_empty()).then_some(flags)
}

fn arch_list(arches: &[Arch]) -> String {
    let names: Vec<&str> = arches.iter().map(|a| a.as_str()).collect();
    format!("[{}]", names.join(", "))
}

/// One difference in behaviour between two profiles, such as
/// `openat: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehaviourChange {
    /// A syscall name, or `defaultAction`, `architectures`, `flags`.
    pub subject: String,
    /// What it was.
    pub before: String,
    /// What it becomes.
    pub after: String,
}

impl fmt::Display for BehaviourChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.subject, self.before, self.after)
    }
}

/// Every way `after` behaves differently from `before`: `defaultAction`, `architectures`,
/// `flags`, then each syscall name whose unconditional action or argument rules change, sorted
/// by name. Rule order, grouping and redundant rules do not count. Empty when both do the same.
pub fn behaviour_changes(before: &SeccompProfileSpec, after: &SeccompProfileSpec) -> Vec<BehaviourChange> {
    let mut changes = Vec::new();
    let mut push = |subject: &str, b: String, a: String| {
        if b != a {
            changes.push(BehaviourChange {
                subject: subject.to_owned(),
                before: b,
                after: a,
            });
        }
    };
    push(
        "defaultAction",
        before.default_action.to_string(),
        after.default_action.to_string(),
    );
    let arches = |s: &SeccompProfileSpec| match s.architectures.as_deref() {
        Some(l) if !l.is_empty() => arch_list(l),
        _ => "native only".to_owned(),
    };
    push("architectures", arches(before), arches(after));
    let flags = |s: &SeccompProfileSpec| {
        let set: BTreeSet<&str> = s.flags.iter().flatten().map(|f| f.as_str()).collect();
        format!("[{}]", set.into_iter().collect::<Vec<_>>().join(", "))
    };
    push("flags", flags(before), flags(after));

    let set_before = rule_set(before);
    let set_after = rule_set(after);
    let names: BTreeSet<&str> = set_before.names().chain(set_after.names()).collect();
    for name in names {
        let b = Side::of(set_before.get(name), before.default_action);
        let a = Side::of(set_after.get(name), after.default_action);
        let same = match (a, b) {
            (Side::Unconditional(x), Side::Unconditional(y)) => x == y,
            (Side::Conditional(x, dx), Side::Conditional(y, dy)) => x == y && dx == dy,
            _ => false,
        };
        if !same {
            push(name, describe_side(b), describe_side(a));
        }
    }
    changes
}

fn describe_verdict((action, errno): Verdict) -> String {
    match errno {
        Some(e) => format!("{action} (errnoRet {e})"),
        None => action.to_string(),
    }
}

fn describe_side(side: Side<'_>) -> String {
    match side {
        Side::Unconditional(v) => describe_verdict(v),
        Side::Conditional(rules, default_action) => {
            let rules: Vec<String> = rules
                .iter()
                .map(|(args, v)| {
                    let conditions: Vec<String> = args
                        .iter()
                        .map(|(index, op, value, value_two)| {
                            let mut c = format!("arg{index} {op} {}", value.unwrap_or(0));
                            if let Some(two) = value_two {
                                c.push_str(&format!(" {two}"));
                            }
                            c
                        })
                        .collect();
                    format!("{} if {}", describe_verdict(*v), conditions.join(" && "))
                })
                .collect();
            format!("{}, otherwise {default_action}", rules.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeccompAction::*;
    use spo_model::seccomp::SeccompOperator;

    fn spec(default_action: SeccompAction, syscalls: Vec<SeccompSyscall>) -> SeccompProfileSpec {
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

    fn rule(names: &[&str], action: SeccompAction) -> SeccompSyscall {
        SeccompSyscall {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            action,
            errno_ret: None,
            args: None,
        }
    }

    fn arg_rule(names: &[&str], action: SeccompAction, index: u32, value: u64) -> SeccompSyscall {
        SeccompSyscall {
            args: Some(vec![SeccompArg {
                index,
                value: Some(value),
                value_two: None,
                op: SeccompOperator::Eq,
            }]),
            ..rule(names, action)
        }
    }

    fn errno_rule(names: &[&str], errno: i64) -> SeccompSyscall {
        SeccompSyscall {
            errno_ret: Some(errno),
            ..rule(names, Errno)
        }
    }

    fn effective(spec: &SeccompProfileSpec, name: &str) -> Verdict {
        effective_actions(spec)
            .get(name)
            .copied()
            .unwrap_or((spec.default_action, None))
    }

    #[test]
    fn union_less_restrictive_wins_upstream_table() {
        // (child, base, expected)
        let table = [
            (Errno, Allow, Allow),
            (Allow, Errno, Allow),
            (KillProcess, Kill, Kill),
            (Trap, Errno, Errno),
            (Errno, Notify, Notify),
            (Notify, Trace, Trace),
            (Trace, Log, Log),
            (Log, Allow, Allow),
            (Allow, KillProcess, Allow),
        ];
        for (child, base, want) in table {
            let got = union(
                &spec(Errno, vec![rule(&["openat"], child)]),
                &spec(Errno, vec![rule(&["openat"], base)]),
            );
            assert_eq!(effective(&got, "openat").0, want, "{child} vs {base}");
        }
    }

    #[test]
    fn union_equal_permissiveness_keeps_child_rule() {
        let got = union(
            &spec(Allow, vec![errno_rule(&["mount"], 38)]),
            &spec(Allow, vec![errno_rule(&["mount"], 1)]),
        );
        assert_eq!(effective(&got, "mount"), (Errno, Some(38)));
        let got = union(
            &spec(Allow, vec![rule(&["mount"], KillThread)]),
            &spec(Allow, vec![rule(&["mount"], Kill)]),
        );
        assert_eq!(effective(&got, "mount").0, KillThread);
    }

    #[test]
    fn union_conditional_vs_unconditional_is_unconditional() {
        for (child, base, want) in [
            (
                arg_rule(&["personality"], Allow, 0, 8),
                rule(&["personality"], Allow),
                Allow,
            ),
            (
                rule(&["personality"], Allow),
                arg_rule(&["personality"], Allow, 0, 8),
                Allow,
            ),
            (
                rule(&["personality"], Errno),
                arg_rule(&["personality"], Allow, 0, 8),
                Allow,
            ),
            (
                arg_rule(&["personality"], Log, 0, 8),
                rule(&["personality"], Errno),
                Log,
            ),
            (
                rule(&["personality"], Trace),
                arg_rule(&["personality"], KillProcess, 0, 8),
                Trace,
            ),
        ] {
            let got = union(&spec(Errno, vec![child]), &spec(Errno, vec![base]));
            let rules = got.rules();
            assert_eq!(rules.len(), 1, "{rules:?}");
            assert_eq!(rules[0].args, None);
            assert_eq!(rules[0].action, want);
        }
    }

    #[test]
    fn union_keeps_conditional_rules_of_both_sides_once() {
        let got = union(
            &spec(
                Errno,
                vec![arg_rule(&["socket"], Allow, 0, 1), arg_rule(&["socket"], Allow, 0, 2)],
            ),
            &spec(
                Errno,
                vec![arg_rule(&["socket"], Allow, 0, 2), arg_rule(&["socket"], Allow, 0, 10)],
            ),
        );
        let values: Vec<u64> = got
            .rules()
            .iter()
            .map(|r| r.args.as_ref().expect("args")[0].value.expect("value"))
            .collect();
        assert_eq!(values, [1, 2, 10]);
        // Same arguments, different actions: the less restrictive wins.
        let got = union(
            &spec(Errno, vec![arg_rule(&["socket"], Errno, 0, 1)]),
            &spec(Errno, vec![arg_rule(&["socket"], Allow, 0, 1)]),
        );
        assert_eq!(got.rules().len(), 1);
        assert_eq!(got.rules()[0].action, Allow);
    }

    #[test]
    fn union_keeps_child_settings() {
        let mut child = spec(Errno, vec![rule(&["read"], Allow)]);
        child.architectures = Some(vec![Arch::X86_64]);
        child.flags = Some(vec![SeccompFlag::Log]);
        let mut base = spec(Allow, vec![rule(&["write"], Log), rule(&["mount"], Notify)]);
        base.architectures = Some(vec![Arch::Aarch64]);
        base.flags = Some(vec![SeccompFlag::SpecAllow]);
        base.listener_path = Some("/var/run/security-profiles-operator/agent.sock".to_owned());
        let got = union(&child, &base);
        assert_eq!(got.default_action, Errno);
        assert_eq!(got.architectures, child.architectures);
        assert_eq!(got.flags, child.flags);
        // The child has no agent, so the base's comes along with its NOTIFY rule.
        assert_eq!(got.listener_path, base.listener_path);
        child.listener_path = Some("/var/run/security-profiles-operator/child.sock".to_owned());
        assert_eq!(union(&child, &base).listener_path, child.listener_path);
    }

    #[test]
    fn output_is_grouped_and_sorted() {
        let got = union(
            &spec(
                Errno,
                vec![
                    rule(&["write", "read"], Allow),
                    rule(&["close"], Log),
                    errno_rule(&["mount"], 1),
                ],
            ),
            &spec(Errno, vec![rule(&["close", "exit"], Allow)]),
        );
        let rules: Vec<(SeccompAction, Vec<String>)> =
            got.rules().iter().map(|r| (r.action, r.names.clone())).collect();
        assert_eq!(
            rules,
            [
                (Errno, vec!["mount".to_owned()]),
                (
                    Allow,
                    vec![
                        "close".to_owned(),
                        "exit".to_owned(),
                        "read".to_owned(),
                        "write".to_owned()
                    ]
                ),
            ]
        );
        // Argument order inside a rule does not matter.
        let two = |first: u32, second: u32| SeccompSyscall {
            args: Some(vec![
                SeccompArg {
                    index: first,
                    value: Some(1),
                    value_two: None,
                    op: SeccompOperator::Eq,
                },
                SeccompArg {
                    index: second,
                    value: Some(1),
                    value_two: None,
                    op: SeccompOperator::Eq,
                },
            ]),
            ..rule(&["ioctl"], Allow)
        };
        let got = union(&spec(Errno, vec![two(0, 1)]), &spec(Errno, vec![two(1, 0)]));
        assert_eq!(got.rules().len(), 1);
        assert_eq!(got.rules()[0].args.as_ref().expect("args")[0].index, 0);
    }

    #[test]
    fn canonical_drops_argument_rules_under_an_unconditional_rule() {
        let got = canonicalize(&spec(
            Allow,
            vec![
                arg_rule(&["read"], Allow, 0, 0),
                rule(&["read"], Errno),
                rule(&[], Allow),
            ],
        ));
        assert_eq!(got.syscalls, Some(vec![rule(&["read"], Errno)]));
        assert_eq!(canonicalize(&spec(Errno, vec![])).syscalls, None);
    }

    #[test]
    fn an_unconditional_rule_with_the_default_action_does_not_silence_argument_rules() {
        // runc never loads `read: Errno` under defaultAction Errno, so `read(0, ...)` is
        // allowed by the argument rule; the canonical form must say the same.
        let got = canonicalize(&spec(
            Errno,
            vec![arg_rule(&["read"], Allow, 0, 0), rule(&["read"], Errno)],
        ));
        assert_eq!(got.syscalls, Some(vec![arg_rule(&["read"], Allow, 0, 0)]));
        // A restrictive argument rule with the default action is no rule either, and does not
        // come alive in a union under a more permissive default.
        let parent = spec(KillThread, vec![arg_rule(&["execve"], KillThread, 0, 0)]);
        let merged = union(&spec(Allow, vec![]), &parent);
        assert_eq!(merged.syscalls, None);
    }

    #[test]
    fn argument_rules_with_the_same_conditions_mean_the_more_restrictive() {
        // Both match every call either matches; the runtime returns the more restrictive.
        let same_args = spec(
            KillThread,
            vec![
                arg_rule(&["exit_group"], Trap, 4, 2),
                arg_rule(&["exit_group"], Errno, 4, 2),
            ],
        );
        assert_eq!(
            canonicalize(&same_args).syscalls,
            Some(vec![arg_rule(&["exit_group"], Trap, 4, 2)])
        );
        assert_eq!(
            intersect(&same_args, &same_args).expect("intersect").syscalls,
            Some(vec![arg_rule(&["exit_group"], Trap, 4, 2)])
        );
        // Across a union the less restrictive side's rule still wins.
        let other = spec(KillThread, vec![arg_rule(&["exit_group"], Errno, 4, 2)]);
        assert_eq!(
            union(&same_args, &other).syscalls,
            Some(vec![arg_rule(&["exit_group"], Errno, 4, 2)])
        );
    }

    #[test]
    fn union_all_folds_left() {
        let a = spec(Errno, vec![errno_rule(&["mount"], 38)]);
        let b = spec(Allow, vec![errno_rule(&["mount"], 1), rule(&["read"], Allow)]);
        let c = spec(Allow, vec![rule(&["read"], Log), rule(&["write"], Trap)]);
        let got = union_all(&[a.clone(), b.clone(), c.clone()]).expect("non-empty");
        assert_eq!(got, union(&union(&a, &b), &c));
        assert_eq!(effective(&got, "mount"), (Errno, Some(38)));
        assert_eq!(effective(&got, "read").0, Allow);
        assert_eq!(effective(&got, "write").0, Trap);
        assert!(union_all(&[]).is_none());
    }

    #[test]
    fn intersect_more_restrictive_wins() {
        let a = spec(Errno, vec![rule(&["read", "write"], Allow), rule(&["openat"], Log)]);
        let b = spec(Allow, vec![rule(&["write"], Errno), rule(&["mount"], KillProcess)]);
        let got = intersect(&a, &b).expect("intersect");
        assert_eq!(got.default_action, Errno);
        assert_eq!(effective(&got, "read").0, Allow);
        assert_eq!(effective(&got, "write").0, Errno);
        assert_eq!(effective(&got, "openat").0, Log);
        assert_eq!(effective(&got, "mount").0, KillProcess);
        // write became the default, so no rule is left for it.
        assert!(!got.rules().iter().any(|r| r.names.iter().any(|n| n == "write")));
    }

    #[test]
    fn intersect_identical_conditional_rules_are_kept() {
        let rules = vec![arg_rule(&["personality"], Allow, 0, 8)];
        let got = intersect(&spec(Errno, rules.clone()), &spec(Trap, rules.clone())).expect("intersect");
        assert_eq!(got.default_action, Trap);
        assert_eq!(got.syscalls, Some(rules));
    }

    #[test]
    fn intersect_unconditional_against_conditional_clamps_when_exact() {
        // A workload allows clone outright; the baseline allows it only without namespace flags.
        let workload = spec(Errno, vec![rule(&["clone"], Allow)]);
        let baseline = spec(Errno, vec![arg_rule(&["clone"], Allow, 0, 0)]);
        let got = intersect(&workload, &baseline).expect("intersect");
        assert_eq!(got.syscalls, baseline.syscalls);
        // A workload that traces clone: the baseline's allowed calls are traced.
        let traced = spec(Errno, vec![rule(&["clone"], Trace)]);
        let got = intersect(&traced, &baseline).expect("intersect");
        assert_eq!(got.syscalls, Some(vec![arg_rule(&["clone"], Trace, 0, 0)]));
    }

    #[test]
    fn intersect_differing_conditional_rules_is_conservative() {
        // Exact would be "socket allowed except for domain 40", which needs an allowing
        // per-name fallback under an ERRNO default: not representable, so socket is denied.
        let workload = spec(Errno, vec![rule(&["socket"], Allow)]);
        let baseline = spec(Allow, vec![arg_rule(&["socket"], Errno, 0, 40)]);
        let got = intersect(&workload, &baseline).expect("intersect");
        assert_eq!(got.default_action, Errno);
        assert_eq!(effective(&got, "socket").0, Errno);
        assert_eq!(got.syscalls, None);
        // Different rules on both sides: the most restrictive of everything either can do.
        let a = spec(Allow, vec![arg_rule(&["ioctl"], Trap, 1, 5)]);
        let b = spec(Allow, vec![arg_rule(&["ioctl"], Errno, 1, 6)]);
        let got = intersect(&a, &b).expect("intersect");
        assert_eq!(got.syscalls, Some(vec![rule(&["ioctl"], Trap)]));
    }

    #[test]
    fn intersect_architectures() {
        let mut a = spec(Errno, vec![]);
        let mut b = spec(Errno, vec![]);
        a.architectures = Some(vec![Arch::X86_64, Arch::X86, Arch::X32]);
        b.architectures = Some(vec![Arch::X32, Arch::X86_64]);
        assert_eq!(
            intersect(&a, &b).expect("intersect").architectures,
            Some(vec![Arch::X86_64, Arch::X32])
        );
        // No list means the native architecture only.
        b.architectures = None;
        assert_eq!(intersect(&a, &b).expect("intersect").architectures, None);
        b.architectures = Some(vec![Arch::Aarch64]);
        let e = intersect(&a, &b).expect_err("disjoint").to_string();
        assert!(e.contains("nothing in common"), "{e}");
    }

    #[test]
    fn intersect_flags_union_except_spec_allow() {
        let mut a = spec(Errno, vec![]);
        let mut b = spec(Errno, vec![]);
        a.flags = Some(vec![SeccompFlag::Log, SeccompFlag::SpecAllow]);
        b.flags = Some(vec![SeccompFlag::Tsync]);
        assert_eq!(
            intersect(&a, &b).expect("intersect").flags,
            Some(vec![SeccompFlag::Tsync, SeccompFlag::Log])
        );
        b.flags = Some(vec![SeccompFlag::SpecAllow]);
        assert_eq!(
            intersect(&a, &b).expect("intersect").flags,
            Some(vec![SeccompFlag::Log, SeccompFlag::SpecAllow])
        );
    }

    #[test]
    fn intersect_refuses_unresolved_and_conflicting_agents() {
        let mut a = spec(Errno, vec![rule(&["read"], Notify)]);
        let mut b = spec(Errno, vec![rule(&["read"], Allow)]);
        a.base_profile_name = Some("runtime-default".to_owned());
        let e = intersect(&a, &b).expect_err("unresolved").to_string();
        assert!(e.contains("resolve base profiles first"), "{e}");
        a.base_profile_name = None;
        a.listener_path = Some("/var/run/security-profiles-operator/a.sock".to_owned());
        b.listener_path = Some("/var/run/security-profiles-operator/b.sock".to_owned());
        let e = intersect(&a, &b).expect_err("two agents").to_string();
        assert!(e.contains("different seccomp agents"), "{e}");
        b.listener_path = None;
        assert_eq!(intersect(&a, &b).expect("intersect").listener_path, a.listener_path);
        assert!(intersect_all(&[]).is_err());
    }

    #[test]
    fn effective_actions_view() {
        let s = spec(
            Errno,
            vec![
                rule(&["read"], Allow),
                arg_rule(&["ioctl"], Allow, 1, 2),
                errno_rule(&["mount"], 1),
            ],
        );
        let got = effective_actions(&s);
        assert_eq!(got.get("read"), Some(&(Allow, None)));
        assert_eq!(got.get("ioctl"), Some(&(Errno, None)));
        assert_eq!(got.get("mount"), Some(&(Errno, Some(1))));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn behaviour_changes_lists_what_moves() {
        let before = spec(Errno, vec![rule(&["read"], Allow), rule(&["write"], Errno)]);
        let after = union(&before, &spec(Errno, vec![rule(&["openat", "write"], Allow)]));
        let got: Vec<String> = behaviour_changes(&before, &after)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "openat: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW",
                "write: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW"
            ]
        );
        // Regrouping and redundant rules are not changes.
        assert!(behaviour_changes(&before, &canonicalize(&before)).is_empty());
        let redundant = spec(Errno, vec![rule(&["read"], Allow)]);
        assert!(behaviour_changes(&before, &redundant).is_empty());
        let conditional = spec(Errno, vec![arg_rule(&["read"], Allow, 0, 3)]);
        let got = behaviour_changes(&before, &conditional);
        assert_eq!(
            got[0].to_string(),
            "read: SCMP_ACT_ALLOW -> SCMP_ACT_ALLOW if arg0 SCMP_CMP_EQ 3, otherwise SCMP_ACT_ERRNO"
        );
    }
}
