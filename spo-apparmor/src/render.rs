//! AppArmorProfile -> profile text (pure).
//!
//! The text follows upstream's template: `#include <tunables/global>`, a profile named
//! `metadata.name` with `flags=(enforce|complain,attach_disconnected,mediate_deleted)`,
//! `#include <abstractions/base>`, then one rule per entry of the spec:
//!
//! | field | rule | enforce mode adds |
//! | --- | --- | --- |
//! | `executable.allowedExecutables[i]` | `<path> ixr,` | |
//! | `executable.allowedLibraries[i]` | `<path> mr,` | |
//! | `filesystem.readOnlyPaths[i]` | `<path> r,` | `deny <path> wlk,` |
//! | `filesystem.writeOnlyPaths[i]` | `<path> wlk,` | `deny <path> r,` |
//! | `filesystem.readWritePaths[i]` | `<path> rwlk,` | |
//! | `filesystem.deniedPaths[i]` (ours) | `deny <path> rwmlkx,` (both modes) | |
//! | `network.allowedProtocols.allowTcp: true` | `network tcp,` | |
//! | `network.allowedProtocols.allowUdp: true` | `network udp,` | |
//! | `network.allowRaw: true` / `false` | `network raw,` / nothing | `deny network raw,` when `false` |
//! | `capability.allowedCapabilities[i]` | `capability <cap>,` | |
//!
//! and, in enforce mode, the fixed deny block ([`ENFORCE_DENY_RULES`]). Every path and
//! capability is checked first ([`check_profile`]); nothing is rendered when anything is
//! wrong. The result remembers which field each line came from, so that apparmor_parser's
//! line-numbered errors are reported at field paths.
//!
//! A raw `policy` is passed through unchanged (its includes restricted, see
//! [`check_raw_policy`]); the validator then checks that it defines exactly the profile
//! `metadata.name` in the mode the spec says.

use std::fmt::Write as _;

use spo_model::apparmor::{AppArmorAbstract, AppArmorMode, AppArmorProfile};
use spo_model::contract::InstallName;
use spo_model::validate::{FieldPath, Problems};

use crate::error::AppArmorError;
use crate::grammar::{check_path, quote_path};

/// Permissions of `allowedExecutables`: inherit this profile on exec, read, map executable.
pub const EXECUTABLE_PERMS: &str = "ixr";
/// Permissions of `allowedLibraries`: map executable and read.
pub const LIBRARY_PERMS: &str = "mr";
/// Permissions of `readOnlyPaths`.
pub const READ_PERMS: &str = "r";
/// Permissions of `writeOnlyPaths`: write, link, lock.
pub const WRITE_PERMS: &str = "wlk";
/// Permissions of `readWritePaths`.
pub const READ_WRITE_PERMS: &str = "rwlk";
/// Permissions a `deniedPaths` entry denies: read, write (and so append), map executable,
/// link, lock, execute. Everything a file rule can grant.
pub const DENIED_PERMS: &str = "rwmlkx";

/// The deny rules every enforce-mode profile ends with, as upstream renders them: no writes
/// to files directly in /proc, to /proc entries that are not a process or `sys`, to
/// /proc/sys outside kernel/shm*, no access to sysrq-trigger, kcore, (k)mem and EFI
/// variables.
pub const ENFORCE_DENY_RULES: &[&str] = &[
    "deny @{PROC}/* w,",
    "deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9]*}/** w,",
    "deny @{PROC}/sys/[^k]** w,",
    "deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,",
    "deny @{PROC}/sysrq-trigger rwklx,",
    "deny @{PROC}/mem rwklx,",
    "deny @{PROC}/kmem rwklx,",
    "deny @{PROC}/kcore rwklx,",
    "deny /sys/firmware/efi/efivars/** rwklx,",
];

/// Where a line of rendered text came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineOrigin {
    /// The field, such as `spec.abstract.filesystem.readOnlyPaths[2]` or `spec.policy`.
    pub field: FieldPath,
    /// The field's value (for a raw policy: the line itself).
    pub value: String,
    /// For a raw policy, the line number inside `spec.policy`.
    pub policy_line: Option<usize>,
}

/// How the text was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileSource {
    /// Rendered from `spec.abstract`.
    Abstract,
    /// `spec.policy`, passed through.
    Raw,
}

/// Profile text with the field each line came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedProfile {
    /// The kernel profile name (`metadata.name`).
    pub name: InstallName,
    /// The mode the spec asks for.
    pub mode: AppArmorMode,
    /// Rendered or raw.
    pub source: ProfileSource,
    /// The profile text, ending in a newline.
    pub text: String,
    origins: Vec<Option<LineOrigin>>,
}

impl RenderedProfile {
    /// The origin of line `line` (1-based), when it came from a field.
    pub fn origin(&self, line: usize) -> Option<&LineOrigin> {
        line.checked_sub(1)
            .and_then(|i| self.origins.get(i))
            .and_then(Option::as_ref)
    }

    /// Every line's origin, in order (`None` for fixed text).
    pub fn origins(&self) -> impl Iterator<Item = (usize, &LineOrigin)> {
        self.origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|o| (i + 1, o)))
    }
}

/// One list of paths in the spec and how it is rendered.
#[derive(Debug)]
pub(crate) struct PathList<'a> {
    pub field: FieldPath,
    pub values: &'a [String],
    pub comment: &'static str,
    pub perms: &'static str,
    pub deny: bool,
    /// The deny rule enforce mode adds for each entry (upstream's read-only/write-only).
    pub enforce_companion: Option<&'static str>,
}

/// The path lists of an abstract section, in rendering order.
pub(crate) fn path_lists(abs: &AppArmorAbstract) -> Vec<PathList<'_>> {
    let root = FieldPath::root().field("spec").field("abstract");
    let (e, f) = (abs.executable.as_ref(), abs.filesystem.as_ref());
    let (ep, fp) = (root.field("executable"), root.field("filesystem"));
    let table = [
        (
            ep.field("allowedExecutables"),
            e.and_then(|e| e.allowed_executables.as_ref()),
            "executables",
            EXECUTABLE_PERMS,
            false,
            None,
        ),
        (
            ep.field("allowedLibraries"),
            e.and_then(|e| e.allowed_libraries.as_ref()),
            "libraries",
            LIBRARY_PERMS,
            false,
            None,
        ),
        (
            fp.field("readOnlyPaths"),
            f.and_then(|f| f.read_only_paths.as_ref()),
            "read-only paths",
            READ_PERMS,
            false,
            Some(WRITE_PERMS),
        ),
        (
            fp.field("writeOnlyPaths"),
            f.and_then(|f| f.write_only_paths.as_ref()),
            "write-only paths",
            WRITE_PERMS,
            false,
            Some(READ_PERMS),
        ),
        (
            fp.field("readWritePaths"),
            f.and_then(|f| f.read_write_paths.as_ref()),
            "read-write paths",
            READ_WRITE_PERMS,
            false,
            None,
        ),
        (
            fp.field("deniedPaths"),
            f.and_then(|f| f.denied_paths.as_ref()),
            "denied paths",
            DENIED_PERMS,
            true,
            None,
        ),
    ];
    table
        .into_iter()
        .filter_map(|(field, values, comment, perms, deny, enforce_companion)| {
            values.map(|values| PathList {
                field,
                values,
                comment,
                perms,
                deny,
                enforce_companion,
            })
        })
        .collect()
}

/// Every problem with a profile: the model's checks plus the AppArmor path grammar
/// ([`crate::grammar`]) for every path and the include rules of a raw policy.
pub fn check_profile(profile: &AppArmorProfile) -> Problems {
    let mut problems = profile.validate();
    if let Some(abs) = &profile.spec.abstract_ {
        for list in path_lists(abs) {
            for (i, value) in list.values.iter().enumerate() {
                let field = list.field.index(i);
                // The model already explained this one (relative, control character, quote).
                if problems.errors().any(|p| p.path == field) {
                    continue;
                }
                if let Err(e) = check_path(value) {
                    problems.error_hint(field, format!("{value:?}: {e}"), e.hint);
                }
            }
        }
    }
    if let Some(policy) = &profile.spec.policy {
        check_raw_policy(policy, &mut problems);
    }
    problems
}

/// Includes in a raw policy may only name files below /etc/apparmor.d (`<abstractions/x>`):
/// an absolute or `..` include would make apparmor_parser read, and echo in its errors, any
/// file of the node.
pub fn check_raw_policy(policy: &str, problems: &mut Problems) {
    let field = FieldPath::root().field("spec").field("policy");
    for (n, line) in policy.lines().enumerate() {
        let trimmed = line.trim_start();
        let rest = if let Some(r) = trimmed.strip_prefix("#include") {
            r
        } else if let Some(r) = trimmed.strip_prefix("include") {
            if !r.starts_with([' ', '\t', '<', '"']) {
                continue;
            }
            r
        } else {
            continue;
        };
        let mut target = rest.trim();
        if let Some(r) = target.strip_prefix("if exists") {
            target = r.trim();
        }
        let inner = target.strip_prefix('<').and_then(|t| t.strip_suffix('>'));
        let ok = inner
            .is_some_and(|p| !p.is_empty() && !p.starts_with('/') && p.split('/').all(|c| c != ".." && !c.is_empty()));
        if !ok {
            problems.error_hint(
                field.clone(),
                format!("line {}: include {target:?} is not allowed", n + 1),
                "raw policies may include files below /etc/apparmor.d only, written <abstractions/name>",
            );
        }
    }
}

/// Renders a profile after checking it; `Invalid` lists every problem with its field path.
pub fn render_profile(profile: &AppArmorProfile) -> Result<RenderedProfile, AppArmorError> {
    let raw_name = profile.metadata.name.clone().unwrap_or_default();
    let problems = check_profile(profile);
    let name = match InstallName::new(&raw_name) {
        Ok(n) if !problems.has_errors() => n,
        _ => {
            let mut problems = problems;
            if !problems.has_errors() {
                problems.error(
                    FieldPath::root().field("metadata").field("name"),
                    format!("{raw_name:?} cannot be an AppArmor profile name (it must be a DNS subdomain)"),
                );
            }
            return Err(AppArmorError::Invalid {
                name: raw_name,
                problems,
            });
        }
    };
    let mode = profile.spec.effective_mode();
    if let Some(policy) = &profile.spec.policy {
        return Ok(render_raw(name, mode, policy));
    }
    Ok(render_abstract(name, mode, profile.spec.abstract_.as_ref()))
}

fn render_raw(name: InstallName, mode: AppArmorMode, policy: &str) -> RenderedProfile {
    let field = FieldPath::root().field("spec").field("policy");
    let mut text = policy.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let origins = policy
        .lines()
        .enumerate()
        .map(|(i, l)| {
            Some(LineOrigin {
                field: field.clone(),
                value: l.to_owned(),
                policy_line: Some(i + 1),
            })
        })
        .collect();
    RenderedProfile {
        name,
        mode,
        source: ProfileSource::Raw,
        text,
        origins,
    }
}

/// Lines and their origins.
struct Builder {
    text: String,
    origins: Vec<Option<LineOrigin>>,
}

impl Builder {
    fn line(&mut self, indent: bool, line: &str, origin: Option<LineOrigin>) {
        if indent {
            self.text.push_str("  ");
        }
        self.text.push_str(line);
        self.text.push('\n');
        self.origins.push(origin);
    }

    fn blank(&mut self) {
        self.line(false, "", None);
    }
}

fn origin(field: FieldPath, value: &str) -> Option<LineOrigin> {
    Some(LineOrigin {
        field,
        value: value.to_owned(),
        policy_line: None,
    })
}

/// The text of a checked abstract profile.
fn render_abstract(name: InstallName, mode: AppArmorMode, abs: Option<&AppArmorAbstract>) -> RenderedProfile {
    let enforce = mode == AppArmorMode::Enforce;
    let flag = if enforce { "enforce" } else { "complain" };
    let mut b = Builder {
        text: String::with_capacity(2048),
        origins: Vec::with_capacity(64),
    };
    b.line(
        false,
        &format!("# Generated by spo-rs from AppArmorProfile {name}; do not edit by hand."),
        None,
    );
    b.line(false, "#include <tunables/global>", None);
    b.blank();
    let name_field = FieldPath::root().field("metadata").field("name");
    b.line(
        false,
        &format!("profile {name} flags=({flag},attach_disconnected,mediate_deleted) {{"),
        origin(name_field, name.as_str()),
    );
    b.line(true, "#include <abstractions/base>", None);

    let default_abs = AppArmorAbstract::default();
    let abs = abs.unwrap_or(&default_abs);
    let mut rule = String::new();
    for list in path_lists(abs) {
        if list.values.is_empty() {
            continue;
        }
        b.blank();
        b.line(true, &format!("# {}", list.comment), None);
        for (i, value) in list.values.iter().enumerate() {
            rule.clear();
            let deny = if list.deny { "deny " } else { "" };
            let _ = write!(rule, "{deny}{} {},", quote_path(value), list.perms);
            b.line(true, &rule, origin(list.field.index(i), value));
        }
        if let (true, Some(companion)) = (enforce, list.enforce_companion) {
            for (i, value) in list.values.iter().enumerate() {
                rule.clear();
                let _ = write!(rule, "deny {} {companion},", quote_path(value));
                b.line(true, &rule, origin(list.field.index(i), value));
            }
        }
    }

    let net_field = FieldPath::root().field("spec").field("abstract").field("network");
    if let Some(net) = &abs.network {
        let protocols = net.allowed_protocols.as_ref();
        let proto_field = net_field.field("allowedProtocols");
        let mut rules: Vec<(&str, FieldPath)> = Vec::new();
        if protocols.and_then(|p| p.allow_tcp) == Some(true) {
            rules.push(("network tcp,", proto_field.field("allowTcp")));
        }
        if protocols.and_then(|p| p.allow_udp) == Some(true) {
            rules.push(("network udp,", proto_field.field("allowUdp")));
        }
        match net.allow_raw {
            Some(true) => rules.push(("network raw,", net_field.field("allowRaw"))),
            Some(false) if enforce => rules.push(("deny network raw,", net_field.field("allowRaw"))),
            _ => {}
        }
        if !rules.is_empty() {
            b.blank();
            b.line(true, "# network", None);
            for (r, field) in rules {
                let value = r.to_owned();
                b.line(true, r, origin(field, &value));
            }
        }
    }

    if let Some(caps) = abs.capability.as_ref().and_then(|c| c.allowed_capabilities.as_ref())
        && !caps.is_empty()
    {
        let field = FieldPath::root()
            .field("spec")
            .field("abstract")
            .field("capability")
            .field("allowedCapabilities");
        b.blank();
        b.line(true, "# capabilities", None);
        for (i, cap) in caps.iter().enumerate() {
            b.line(true, &format!("capability {cap},"), origin(field.index(i), cap));
        }
    }

    if enforce {
        b.blank();
        b.line(
            true,
            "# enforce mode: no writes to /proc outside processes and /proc/sys/kernel/shm*, no kernel memory",
            None,
        );
        for r in ENFORCE_DENY_RULES {
            b.line(true, r, None);
        }
    }
    b.line(false, "}", None);
    RenderedProfile {
        name,
        mode,
        source: ProfileSource::Abstract,
        text: b.text,
        origins: b.origins,
    }
}
