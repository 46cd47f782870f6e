//! SelinuxProfile -> CIL, with upstream's semantics.
//!
//! One block per profile, named after the profile; inherited System templates and
//! SelinuxProfiles become `blockinherit`; each `spec.allow[label][class]` becomes one
//! `(allow process <label> (<class> (<perms>)))` with the permissions sorted and deduplicated;
//! `@self` is the block's own `process` type; `mode: Permissive` adds
//! `(typepermissive process)`. The output is built as a tree of checked parts and written by
//! [`crate::cil::CilWriter`], so it is stable and no string can change its structure.
//!
//! `@self` is written as `process`, not `<name>.process`: inside the profile's own block the two
//! are the same type, and when another profile inherits this one, `process` is the inheriting
//! profile's type, which is what the rule means (`<name>.process` would grant the inheriting
//! profile access to this profile's type instead).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use spo_model::contract::SecurityProfile;
use spo_model::selinux::{PolicyRefKind, SELF_LABEL, SelinuxMode, SelinuxProfile, SelinuxProfileSpec};
use spo_model::validate::{FieldPath, Problem, Problems};

use crate::cil::{CilSyntaxError, CilWriter, Expr, sym};
use crate::error::SelinuxError;
use crate::guardrails::Guardrails;
use crate::ident::{NameRole, check_declared_name, check_identifier};
use crate::templates::template;

/// How many SelinuxProfiles deep an inherit chain may go.
pub const MAX_INHERIT_DEPTH: usize = 15;

/// Where a rendered module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleOrigin {
    /// A SelinuxProfile.
    Selinux,
    /// A RawSelinuxProfile.
    RawSelinux,
    /// A module spo-selinux provides (the templates) or one the node needs (base extras).
    Support,
}

impl ModuleOrigin {
    /// The kind name for messages.
    pub fn kind_name(self) -> &'static str {
        match self {
            ModuleOrigin::Selinux => "SelinuxProfile",
            ModuleOrigin::RawSelinux => "RawSelinuxProfile",
            ModuleOrigin::Support => "policy module",
        }
    }
}

/// Which profile field a line of a rendered module came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineOrigin {
    /// The first line of the statement in the rendered module.
    pub line: usize,
    /// The field it came from.
    pub field: FieldPath,
    /// For RawSelinuxProfiles, the line inside `spec.policy`.
    pub source_line: Option<usize>,
}

/// A policy module ready for secilc or semodule.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedModule {
    /// The module and block name (the profile's name).
    pub name: String,
    /// What it was rendered from.
    pub origin: ModuleOrigin,
    /// The CIL text.
    pub text: String,
    /// Statement start lines and the fields they came from, in line order.
    pub lines: Vec<LineOrigin>,
    /// The SelinuxProfiles whose blocks this module inherits (they must be in the same policy).
    pub requires: Vec<String>,
}

impl fmt::Debug for RenderedModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedModule")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("bytes", &self.text.len())
            .field("requires", &self.requires)
            .finish_non_exhaustive()
    }
}

impl RenderedModule {
    /// The field a line of the rendered text came from: the statement starting at or before it.
    pub fn origin_of_line(&self, line: usize) -> Option<&LineOrigin> {
        let i = self.lines.partition_point(|o| o.line <= line);
        i.checked_sub(1).map(|i| &self.lines[i])
    }

    /// The SHA-256 of the text, lower-case hex (what `semodule --checksum` prints).
    pub fn sha256(&self) -> String {
        hex_sha256(self.text.as_bytes())
    }

    /// `SelinuxProfile nginx`, for messages.
    pub fn subject(&self) -> String {
        format!("{} {}", self.origin.kind_name(), self.name)
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Finds the SelinuxProfiles that others inherit (a port: the operator reads its cache, `spoc`
/// reads files, tests use [`MemoryLookup`]).
pub trait ProfileLookup: Send + Sync {
    /// The profile called `name`, `Ok(None)` when there is none.
    fn selinux_profile(&self, name: &str) -> Result<Option<SelinuxProfile>, String>;
}

/// A [`ProfileLookup`] over profiles held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryLookup {
    profiles: BTreeMap<String, SelinuxProfile>,
}

impl MemoryLookup {
    /// An empty lookup.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a profile under its `metadata.name`.
    pub fn insert(&mut self, profile: SelinuxProfile) {
        self.profiles.insert(profile.name().to_owned(), profile);
    }

    /// A lookup over `profiles`.
    pub fn with(profiles: impl IntoIterator<Item = SelinuxProfile>) -> Self {
        let mut l = Self::new();
        for p in profiles {
            l.insert(p);
        }
        l
    }
}

impl ProfileLookup for MemoryLookup {
    fn selinux_profile(&self, name: &str) -> Result<Option<SelinuxProfile>, String> {
        Ok(self.profiles.get(name).cloned())
    }
}

/// What rendering a SelinuxProfile needs besides the profile.
#[derive(Clone)]
pub struct RenderContext {
    /// The effective guardrails (built-in lists and the SPOD's `selinux.options`).
    pub guardrails: Guardrails,
    /// Where inherited SelinuxProfiles come from.
    pub lookup: Arc<dyn ProfileLookup>,
}

impl Default for RenderContext {
    fn default() -> Self {
        RenderContext {
            guardrails: Guardrails::default(),
            lookup: Arc::new(MemoryLookup::new()),
        }
    }
}

impl fmt::Debug for RenderContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderContext")
            .field("guardrails", &self.guardrails)
            .finish_non_exhaustive()
    }
}

/// Adds `problem` unless an error is already reported at the same path (the model's own
/// checks and ours overlap; one message per field is enough).
fn push_once(problems: &mut Problems, problem: Problem) {
    if !problems.errors().any(|p| p.path == problem.path) {
        problems.push(problem);
    }
}

/// Checks the profile's name as a block and module name.
pub(crate) fn check_block_name(name: &str, guardrails: Option<&Guardrails>, problems: &mut Problems) {
    let path = FieldPath::root().field("metadata").field("name");
    if let Err(e) = check_declared_name(name) {
        push_once(
            problems,
            Problem::error(path.clone(), e).with_hint("use a name that starts with a letter"),
        );
    }
    let is_template =
        template(name).is_some() || guardrails.is_some_and(|g| g.allowed_system_profiles.iter().any(|t| t == name));
    if is_template {
        push_once(
            problems,
            Problem::error(path, format!("{name:?} is the name of a System template"))
                .with_hint("a profile's block would collide with the template's; choose another name"),
        );
    }
}

/// Every problem that stops `profile` from rendering: the model's validation, the identifier
/// grammar, the guardrails and the inherit chain. Returns the SelinuxProfiles it inherits.
pub fn check_selinux_profile(profile: &SelinuxProfile, ctx: &RenderContext) -> (Problems, Vec<String>) {
    let mut problems = profile.validate();
    let name = profile.name();
    let spec = &profile.spec;
    let root = FieldPath::root().field("spec");
    check_block_name(name, Some(&ctx.guardrails), &mut problems);

    for (label, classes) in spec.allow.iter().flatten() {
        let lp = root.field("allow").key(label);
        if label == "process" {
            push_once(
                &mut problems,
                Problem::error(lp.clone(), "\"process\" is the profile's own type inside its block")
                    .with_hint(format!("write {SELF_LABEL} to mean the profile's own type")),
            );
        } else if label != SELF_LABEL
            && let Err(e) = check_identifier(label, NameRole::Type)
        {
            push_once(&mut problems, Problem::error(lp.clone(), e));
        }
        for (class, perms) in classes {
            let cp = lp.key(class);
            if let Err(e) = check_identifier(class, NameRole::Class) {
                push_once(&mut problems, Problem::error(cp.clone(), e));
            }
            for (k, perm) in perms.iter().enumerate() {
                if let Err(e) = check_identifier(perm, NameRole::Permission) {
                    push_once(&mut problems, Problem::error(cp.index(k), e));
                }
            }
        }
    }
    ctx.guardrails.check(spec, &mut problems);

    let mut requires = Vec::new();
    let mut declarers: Vec<(usize, String)> = Vec::new();
    let mut done = BTreeSet::new();
    for (i, r) in spec.inherit.iter().enumerate() {
        let np = root.field("inherit").index(i).field("name");
        match r.kind {
            PolicyRefKind::System => {
                if let Err(e) = check_identifier(&r.name, NameRole::Template) {
                    push_once(&mut problems, Problem::error(np, e));
                    continue;
                }
                if template(&r.name).is_some_and(|t| t.declares_process) {
                    declarers.push((i, format!("System template {}", r.name)));
                }
            }
            PolicyRefKind::SelinuxProfile => {
                if r.name == name {
                    continue; // the model reports self-inheritance
                }
                if let Err(e) = check_declared_name(&r.name) {
                    push_once(&mut problems, Problem::error(np, e));
                    continue;
                }
                let mut chain = vec![name.to_owned()];
                match walk_inherits(ctx.lookup.as_ref(), &r.name, &mut chain, &mut done) {
                    Ok(()) => {
                        declarers.push((i, format!("SelinuxProfile {}", r.name)));
                        if !requires.contains(&r.name) {
                            requires.push(r.name.clone());
                        }
                    }
                    Err(e) => push_once(&mut problems, Problem::error(np, e)),
                }
            }
        }
    }
    if let [(_, first), rest @ ..] = declarers.as_slice() {
        for (i, other) in rest {
            if other != first {
                problems.error_hint(
                    root.field("inherit").index(*i),
                    format!("{other} declares the process type, and so does {first}"),
                    "inherit one base (the container template or one profile) and only add-on templates such as net_container besides it",
                );
            }
        }
    }
    (problems, requires)
}

/// Why a SelinuxProfile cannot be the next link of an inherit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BrokenLink {
    /// It is on the chain already.
    Cycle,
    /// The chain would be longer than [`MAX_INHERIT_DEPTH`].
    TooDeep,
    /// The profile itself, which each caller words after where its profiles come from.
    Profile(ProfileFault),
}

/// What is wrong with the profile at the end of an inherit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProfileFault {
    /// The lookup failed (its message).
    LookupFailed(String),
    /// The lookup does not have it.
    Missing,
    /// It is disabled or partial, so its block is not in the policy.
    NotInstalled,
}

/// An inherit chain that cannot go on: why, and the chain written out with the failing link
/// last (`a -> b -> c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InheritError {
    pub(crate) broken: BrokenLink,
    pub(crate) path: String,
}

/// The SelinuxProfile `name` as the next link of `chain` (the profiles on the way, the one
/// inheriting first): the one check of inherit chains, for rendering and merging alike. The
/// link must not close a cycle nor make the chain deeper than [`MAX_INHERIT_DEPTH`], and the
/// profile must exist in `lookup` and be installed.
pub(crate) fn next_link(
    lookup: &dyn ProfileLookup,
    chain: &[String],
    name: &str,
) -> Result<SelinuxProfile, InheritError> {
    let fail = |broken| InheritError {
        broken,
        path: format!("{} -> {name}", chain.join(" -> ")),
    };
    if chain.iter().any(|c| c == name) {
        return Err(fail(BrokenLink::Cycle));
    }
    if chain.len() > MAX_INHERIT_DEPTH {
        return Err(fail(BrokenLink::TooDeep));
    }
    let profile = lookup
        .selinux_profile(name)
        .map_err(|e| fail(BrokenLink::Profile(ProfileFault::LookupFailed(e))))?
        .ok_or_else(|| fail(BrokenLink::Profile(ProfileFault::Missing)))?;
    if !profile.should_install() {
        return Err(fail(BrokenLink::Profile(ProfileFault::NotInstalled)));
    }
    Ok(profile)
}

impl InheritError {
    /// The message: a wrong chain (a cycle, too deep) reads the same everywhere; what is wrong
    /// with the profile itself is worded by `profile`.
    pub(crate) fn message(&self, profile: impl FnOnce(&ProfileFault) -> String) -> String {
        match &self.broken {
            BrokenLink::Cycle => format!("inherit cycle: {}", self.path),
            BrokenLink::TooDeep => format!(
                "inherit chain {} is deeper than {MAX_INHERIT_DEPTH} profiles",
                self.path
            ),
            BrokenLink::Profile(fault) => profile(fault),
        }
    }

    /// The message for rendering in a cluster (or a store): `target` is the failing link, and
    /// `through` whether the chain is worth naming (more than the profile and its parent).
    fn rendering_message(&self, target: &str, through: bool) -> String {
        let via = if through {
            format!(" (through {})", self.path)
        } else {
            String::new()
        };
        self.message(|fault| match fault {
            ProfileFault::LookupFailed(e) => format!("looking up SelinuxProfile {target}{via}: {e}"),
            ProfileFault::Missing => format!("SelinuxProfile {target} does not exist{via}"),
            ProfileFault::NotInstalled => {
                format!("SelinuxProfile {target}{via} is disabled or partial, so its block is not in the policy")
            }
        })
    }
}

/// Follows the SelinuxProfiles that `target` inherits, depth first, failing on a missing,
/// uninstalled or cyclic link ([`next_link`]). `chain` holds the profiles on the way to
/// `target`; `done` those checked already.
fn walk_inherits(
    lookup: &dyn ProfileLookup,
    target: &str,
    chain: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Result<(), String> {
    if done.contains(target) {
        return Ok(());
    }
    let profile = next_link(lookup, chain, target).map_err(|e| e.rendering_message(target, chain.len() > 1))?;
    chain.push(target.to_owned());
    for r in &profile.spec.inherit {
        if r.kind == PolicyRefKind::SelinuxProfile {
            walk_inherits(lookup, &r.name, chain, done)?;
        }
    }
    chain.pop();
    done.insert(target.to_owned());
    Ok(())
}

fn invalid(kind: &'static str, name: &str, problems: Problems) -> SelinuxError {
    SelinuxError::Invalid {
        kind,
        name: name.to_owned(),
        problems,
    }
}

/// A statement that could not be built means a check above missed something; it is reported
/// as a problem at the field, never written.
fn built(
    e: Result<Expr, CilSyntaxError>,
    field: &FieldPath,
    kind: &'static str,
    name: &str,
) -> Result<Expr, SelinuxError> {
    e.map_err(|err| {
        let mut p = Problems::new();
        p.error(field.clone(), format!("cannot be written as CIL: {}", err.message));
        invalid(kind, name, p)
    })
}

fn allow_rule(target: &str, class: &str, perms: &BTreeSet<&str>) -> Result<Expr, CilSyntaxError> {
    let perms = perms.iter().map(|p| sym(p)).collect::<Result<Vec<_>, _>>()?;
    Ok(Expr::list(vec![
        sym("allow")?,
        sym("process")?,
        sym(target)?,
        Expr::list(vec![sym(class)?, Expr::list(perms)]),
    ]))
}

/// Renders a SelinuxProfile into its policy module (pure). Fails with every problem at once
/// when the profile is invalid, breaks a guardrail, or inherits something that is missing.
pub fn render_selinux_profile(profile: &SelinuxProfile, ctx: &RenderContext) -> Result<RenderedModule, SelinuxError> {
    const KIND: &str = "SelinuxProfile";
    let name = profile.name();
    let (problems, requires) = check_selinux_profile(profile, ctx);
    if problems.has_errors() {
        return Err(invalid(KIND, name, problems));
    }
    let statements = profile_statements(&profile.spec, name)?;
    let mut w = CilWriter::new();
    w.comment(
        0,
        &format!("SelinuxProfile {name}, rendered by spo-selinux; the type pods use is {name}.process"),
    );
    let (text, lines) = write_block(w, name, statements, KIND)?;
    Ok(RenderedModule {
        name: name.to_owned(),
        origin: ModuleOrigin::Selinux,
        text,
        lines,
        requires,
    })
}

/// The statements of a profile's block, each with the field it comes from. `spec` must have
/// passed [`check_selinux_profile`].
pub fn profile_statements(spec: &SelinuxProfileSpec, name: &str) -> Result<Vec<(Expr, FieldPath)>, SelinuxError> {
    const KIND: &str = "SelinuxProfile";
    let root = FieldPath::root().field("spec");
    let mut statements: Vec<(Expr, FieldPath)> = Vec::new();

    let mut seen = BTreeSet::new();
    let mut declared = false;
    for (i, r) in spec.inherit.iter().enumerate() {
        if !seen.insert(r.name.as_str()) {
            continue;
        }
        declared |= r.kind == PolicyRefKind::SelinuxProfile || template(&r.name).is_some_and(|t| t.declares_process);
        let field = root.field("inherit").index(i);
        let e = (|| Ok(Expr::list(vec![sym("blockinherit")?, sym(&r.name)?])))();
        statements.push((built(e, &field, KIND, name)?, field));
    }
    if !declared {
        // Nothing inherited declares the process type: declare a bare domain, so the rules
        // below have a subject (the model warns that it lacks a container's basic access).
        let field = root.field("inherit");
        let decls: Result<Vec<Expr>, CilSyntaxError> = (|| {
            Ok(vec![
                Expr::list(vec![sym("type")?, sym("process")?]),
                Expr::list(vec![sym("roletype")?, sym("system_r")?, sym("process")?]),
                Expr::list(vec![
                    sym("typeattributeset")?,
                    sym("domain")?,
                    Expr::list(vec![sym("process")?]),
                ]),
            ])
        })();
        for e in built_all(decls, &field, KIND, name)? {
            statements.push((e, field.clone()));
        }
    }
    for (label, classes) in spec.allow.iter().flatten() {
        let target = if label == SELF_LABEL { "process" } else { label.as_str() };
        for (class, perms) in classes {
            let perms: BTreeSet<&str> = perms.iter().map(String::as_str).collect();
            if perms.is_empty() {
                continue;
            }
            let field = root.field("allow").key(label).key(class);
            statements.push((built(allow_rule(target, class, &perms), &field, KIND, name)?, field));
        }
    }
    if spec.effective_mode() == SelinuxMode::Permissive {
        let field = root.field("mode");
        let e = (|| Ok(Expr::list(vec![sym("typepermissive")?, sym("process")?])))();
        statements.push((built(e, &field, KIND, name)?, field));
    }

    Ok(statements)
}

fn built_all(
    e: Result<Vec<Expr>, CilSyntaxError>,
    field: &FieldPath,
    kind: &'static str,
    name: &str,
) -> Result<Vec<Expr>, SelinuxError> {
    e.map_err(|err| {
        let mut p = Problems::new();
        p.error(field.clone(), format!("cannot be written as CIL: {}", err.message));
        invalid(kind, name, p)
    })
}

/// Writes `(block <name> <statements>)` and the origin of each statement's line.
pub(crate) fn write_block(
    mut w: CilWriter,
    name: &str,
    statements: Vec<(Expr, FieldPath)>,
    kind: &'static str,
) -> Result<(String, Vec<LineOrigin>), SelinuxError> {
    let open = (|| Ok::<_, CilSyntaxError>(vec![sym("block")?, sym(name)?]))();
    let open = built_all(open, &FieldPath::root().field("metadata").field("name"), kind, name)?;
    let header: Vec<String> = open.iter().map(ToString::to_string).collect();
    w.raw_line(&format!("({}", header.join(" ")));
    let mut lines = Vec::with_capacity(statements.len());
    for (e, field) in statements {
        let line = w.statement(1, &e);
        lines.push(LineOrigin {
            line,
            field,
            source_line: (e.line() > 0).then_some(e.line()),
        });
    }
    w.raw_line(")");
    Ok((w.finish(), lines))
}

/// Renders `profile` and every SelinuxProfile it inherits, transitively: the modules that must
/// be compiled (or installed) together, dependencies first.
pub fn render_with_dependencies(
    profile: &SelinuxProfile,
    ctx: &RenderContext,
) -> Result<Vec<RenderedModule>, SelinuxError> {
    let top = render_selinux_profile(profile, ctx)?;
    let mut out: Vec<RenderedModule> = Vec::new();
    let mut rendered: BTreeSet<String> = BTreeSet::from([top.name.clone()]);
    // Depth-first post-order; the walk in check_selinux_profile already refused cycles.
    let mut stack: Vec<(RenderedModule, usize)> = vec![(top, 0)];
    while let Some((module, next)) = stack.pop() {
        if let Some(dep) = module.requires.get(next).cloned() {
            stack.push((module, next + 1));
            if rendered.insert(dep.clone()) {
                let p = ctx
                    .lookup
                    .selinux_profile(&dep)
                    .map_err(|e| lookup_failed(&dep, e))?
                    .ok_or_else(|| lookup_failed(&dep, "it does not exist".to_owned()))?;
                stack.push((render_selinux_profile(&p, ctx)?, 0));
            }
        } else {
            out.push(module);
        }
    }
    Ok(out)
}

fn lookup_failed(name: &str, message: String) -> SelinuxError {
    let mut p = Problems::new();
    p.error(FieldPath::root().field("metadata").field("name"), message);
    invalid("SelinuxProfile", name, p)
}
