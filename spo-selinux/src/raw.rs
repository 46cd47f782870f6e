//! RawSelinuxProfile -> CIL: the user's CIL, read by our own reader, checked, and written back
//! inside a block of the profile's name.
//!
//! The policy text is never pasted: it is read into a tree ([`crate::cil::parse`]), every
//! statement (and every statement nested in `block`, `optional`, `macro` and the branches of
//! `booleanif`/`tunableif`) is checked against [`ALLOWED_STATEMENTS`], and the tree is written
//! by [`crate::cil::CilWriter`]. Unbalanced parentheses, unknown characters and statements that
//! act outside the block (`in`, and global statements such as `class`, `sid`, `portcon`,
//! `filecon`, `user`) are errors naming the line in `spec.policy`. `blockinherit` is allowed,
//! so upstream's own example (which inherits `container`) is accepted.

use spo_model::contract::SecurityProfile;
use spo_model::selinux::RawSelinuxProfile;
use spo_model::validate::{FieldPath, Problem, Problems, did_you_mean};

use crate::cil::{CilWriter, Expr, container_header, parse};
use crate::error::SelinuxError;
use crate::render::{ModuleOrigin, RenderedModule, check_block_name, write_block};

/// Statements a RawSelinuxProfile may use. They declare names inside the profile's block,
/// write rules, or structure the block.
pub const ALLOWED_STATEMENTS: &[&str] = &[
    "allow",
    "auditallow",
    "dontaudit",
    "neverallow",
    "allowx",
    "auditallowx",
    "dontauditx",
    "neverallowx",
    "type",
    "typealias",
    "typealiasactual",
    "typeattribute",
    "typeattributeset",
    "expandtypeattribute",
    "typebounds",
    "typechange",
    "typemember",
    "typepermissive",
    "typetransition",
    "rangetransition",
    "role",
    "roleattribute",
    "roleattributeset",
    "roletype",
    "block",
    "blockabstract",
    "blockinherit",
    "optional",
    "macro",
    "call",
    "boolean",
    "booleanif",
    "tunable",
    "tunableif",
    "classpermission",
    "classpermissionset",
    "classmap",
    "classmapping",
    "permissionx",
];

/// Statements that change the policy outside the profile's block (or the whole policy's
/// configuration): refused with a message saying so.
pub const GLOBAL_STATEMENTS: &[&str] = &[
    "in",
    "class",
    "classorder",
    "common",
    "classcommon",
    "sid",
    "sidorder",
    "sidcontext",
    "handleunknown",
    "mls",
    "policycap",
    "sensitivity",
    "sensitivityalias",
    "sensitivityaliasactual",
    "sensitivityorder",
    "category",
    "categoryalias",
    "categoryaliasactual",
    "categoryorder",
    "categoryset",
    "sensitivitycategory",
    "dominance",
    "level",
    "levelrange",
    "user",
    "userattribute",
    "userattributeset",
    "userrole",
    "userlevel",
    "userrange",
    "userbounds",
    "userprefix",
    "selinuxuser",
    "selinuxuserdefault",
    "defaultuser",
    "defaultrole",
    "defaulttype",
    "defaultrange",
    "fsuse",
    "genfscon",
    "portcon",
    "netifcon",
    "nodecon",
    "ibpkeycon",
    "ibendportcon",
    "pirqcon",
    "iomemcon",
    "ioportcon",
    "pcidevicecon",
    "devicetreecon",
    "filecon",
    "context",
    "ipaddr",
    "constrain",
    "mlsconstrain",
    "validatetrans",
    "mlsvalidatetrans",
    "roleallow",
    "roletransition",
    "rolebounds",
    "deny",
];

/// Every expression in `statements` that stands where CIL reads a statement, with the keyword
/// of the statement holding it (`None` at the top), in text order. Containers are recognized
/// by [`container_header`], exactly as the writer lays them out.
pub fn statement_positions(statements: &[Expr]) -> Vec<(&Expr, Option<&str>)> {
    let mut out = Vec::new();
    let mut work: Vec<(&Expr, Option<&str>)> = statements.iter().rev().map(|e| (e, None)).collect();
    while let Some((e, parent)) = work.pop() {
        out.push((e, parent));
        if let (Some(keyword), Some(items)) = (e.keyword(), e.as_list())
            && let Some(header) = container_header(keyword)
        {
            work.extend(items.iter().skip(header).rev().map(|i| (i, Some(keyword))));
        }
    }
    out
}

/// Checks statements of the user's policy, and every statement nested in them.
fn check_statements(statements: &[Expr], path: &FieldPath, problems: &mut Problems) {
    for (e, parent) in statement_positions(statements) {
        let line = e.line();
        let Some(keyword) = e.keyword() else {
            problems.error_hint(
                path.clone(),
                format!("line {line}: a statement must be a list starting with a keyword, such as (allow ...)"),
                "remove the stray list or symbol",
            );
            continue;
        };
        let items = e.as_list().unwrap_or_default();
        let branch_parent = matches!(parent, Some("booleanif" | "tunableif"));
        if keyword == "in" {
            problems.error_hint(
                path.clone(),
                format!("line {line}: (in ...) adds statements to another block, which a profile may not do"),
                "write the statements in this profile's own policy",
            );
        } else if GLOBAL_STATEMENTS.contains(&keyword) {
            problems.error_hint(
                path.clone(),
                format!("line {line}: {keyword} is a global statement; a profile's policy stays inside its own block"),
                "only rules and declarations for the profile's own types are allowed",
            );
        } else if matches!(keyword, "true" | "false") != branch_parent {
            problems.error_hint(
                path.clone(),
                format!("line {line}: conditional branches are (true ...) and (false ...) directly inside booleanif or tunableif"),
                "wrap the rules of a booleanif in (true ...) or (false ...)",
            );
        } else if !ALLOWED_STATEMENTS.contains(&keyword) && !branch_parent {
            let hint = match did_you_mean(keyword, ALLOWED_STATEMENTS.iter().copied()) {
                Some(s) => format!("did you mean {s}?"),
                None => "see the CIL reference for statements allowed in a block".to_owned(),
            };
            problems.error_hint(
                path.clone(),
                format!("line {line}: unknown or unsupported CIL statement {keyword:?}"),
                hint,
            );
        } else if matches!(keyword, "block" | "optional" | "macro") && items.get(1).and_then(Expr::as_symbol).is_none()
        {
            problems.error_hint(
                path.clone(),
                format!("line {line}: {keyword} needs a name"),
                format!("write ({keyword} <name> ...)"),
            );
        }
    }
}

/// Every problem that stops a RawSelinuxProfile from rendering, and the statements it holds.
pub fn check_raw_selinux_profile(profile: &RawSelinuxProfile) -> (Problems, Vec<Expr>) {
    let mut problems = profile.validate();
    check_block_name(profile.name(), None, &mut problems);
    let path = FieldPath::root().field("spec").field("policy");
    let statements = match parse(&profile.spec.policy) {
        Ok(s) => s,
        Err(e) => {
            // The model's balance check may have reported the same line already.
            let message = format!("line {}: {}", e.line, e.message);
            if !problems
                .errors()
                .any(|p| p.path == path && p.message.starts_with(&format!("line {}:", e.line)))
            {
                problems.push(
                    Problem::error(path, message)
                        .with_hint("the policy must be CIL that stays balanced, so it cannot close its block"),
                );
            }
            return (problems, Vec::new());
        }
    };
    check_statements(&statements, &path, &mut problems);
    (problems, statements)
}

/// Wraps a RawSelinuxProfile's CIL in a block of its name (pure).
pub fn render_raw_selinux_profile(profile: &RawSelinuxProfile) -> Result<RenderedModule, SelinuxError> {
    const KIND: &str = "RawSelinuxProfile";
    let name = profile.name();
    let (problems, statements) = check_raw_selinux_profile(profile);
    if problems.has_errors() {
        return Err(SelinuxError::Invalid {
            kind: KIND,
            name: name.to_owned(),
            problems,
        });
    }
    let path = FieldPath::root().field("spec").field("policy");
    let mut w = CilWriter::new();
    w.comment(
        0,
        &format!("RawSelinuxProfile {name}, its policy wrapped in its own block by spo-selinux"),
    );
    let statements = statements.into_iter().map(|e| (e, path.clone())).collect();
    let (text, lines) = write_block(w, name, statements, KIND)?;
    Ok(RenderedModule {
        name: name.to_owned(),
        origin: ModuleOrigin::RawSelinux,
        text,
        lines,
        requires: Vec::new(),
    })
}
