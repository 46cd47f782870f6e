//! The validator port: compiles rendered modules against a base policy.
//!
//! [`Secilc`] is the real implementation. It writes the modules to a temporary directory as
//! `<name>.cil` and runs
//! `secilc -N -o /dev/null -f /dev/null <base>/*.cil <templates> <modules>`, where `-N` skips
//! neverallow checks as Debian's semodule does. When secilc fails, its first
//! `at <name>.cil:<line>` (or `at line <n> of <name>.cil`) is mapped back to the profile field
//! the line was rendered from.
//!
//! The base policy is a directory of `*.cil` files, all of which are compiled with every
//! profile: `scripts/selinux-base` builds one (Debian's refpolicy store, refpolicy's
//! `container` module and the two-attribute shim) and prints its path; [`Secilc::from_env`]
//! reads it from `SPO_SELINUX_BASE`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spo_hostio::{ScratchDir, ToolCommand, ToolOutput};

use crate::error::{Location, SelinuxError};
use crate::render::RenderedModule;
use crate::templates::templates_module;

/// The environment variable naming the base policy directory.
pub const BASE_ENV: &str = "SPO_SELINUX_BASE";

/// How long one secilc compile may take by default before it is killed: a full compile of
/// the base policy with a few profiles takes about 5 s here (up to 10 s with two other
/// builds on the machine), so two minutes only ever stops a hung tool.
pub const SECILC_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one `seinfo -x -a` on a compiled policy may take by default (about 1 s here).
pub const SEINFO_TIMEOUT: Duration = Duration::from_secs(60);

/// Compiles modules against a base policy (a port: tests and `spoc` may pass a fake).
pub trait PolicyValidator: Send + Sync {
    /// Compiles `modules` together (with the shipped templates) and fails with the tool's
    /// message, mapped to a profile field where possible.
    fn validate(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError>;
}

/// A base policy directory: every `*.cil` file in it, in name order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasePolicy {
    /// The directory.
    pub dir: PathBuf,
    /// Its CIL files.
    pub files: Vec<PathBuf>,
}

impl BasePolicy {
    /// Reads the CIL files of `dir`; fails when there are none.
    pub fn from_dir(dir: &Path) -> Result<Self, SelinuxError> {
        let entries = std::fs::read_dir(dir).map_err(|source| SelinuxError::Io {
            operation: "listing the base policy directory",
            path: dir.to_owned(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SelinuxError::Io {
                operation: "listing the base policy directory",
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "cil") {
                files.push(path);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(SelinuxError::Toolchain {
                what: format!("a base policy in {}", dir.display()),
                hint: "the directory has no *.cil files; build one with scripts/selinux-base".to_owned(),
            });
        }
        Ok(BasePolicy {
            dir: dir.to_owned(),
            files,
        })
    }
}

/// The real validator: secilc against a base policy.
#[derive(Clone, Debug)]
pub struct Secilc {
    /// The secilc program.
    pub program: PathBuf,
    /// The base policy.
    pub base: BasePolicy,
    /// How long one compile may take ([`SECILC_TIMEOUT`] by default).
    pub timeout: Duration,
    /// How long one `seinfo` run may take ([`SEINFO_TIMEOUT`] by default).
    pub seinfo_timeout: Duration,
}

/// Finds `name` on PATH (and in the sbin directories, which a test's PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Secilc {
    /// secilc from PATH with the base policy in `dir`.
    pub fn new(dir: &Path) -> Result<Self, SelinuxError> {
        let program = find_program("secilc").ok_or_else(|| SelinuxError::Toolchain {
            what: "secilc".to_owned(),
            hint: "install the secilc package".to_owned(),
        })?;
        Ok(Secilc {
            program,
            base: BasePolicy::from_dir(dir)?,
            timeout: SECILC_TIMEOUT,
            seinfo_timeout: SEINFO_TIMEOUT,
        })
    }

    /// The same, with these deadlines for secilc and seinfo.
    pub fn with_timeouts(mut self, secilc: Duration, seinfo: Duration) -> Self {
        self.timeout = secilc;
        self.seinfo_timeout = seinfo;
        self
    }

    /// secilc with the base policy named by `SPO_SELINUX_BASE`.
    pub fn from_env() -> Result<Self, SelinuxError> {
        let dir = std::env::var_os(BASE_ENV).ok_or_else(|| SelinuxError::Toolchain {
            what: "a base policy".to_owned(),
            hint: format!("{BASE_ENV} is not set; run export {BASE_ENV}=$(scripts/selinux-base)"),
        })?;
        Self::new(Path::new(&dir))
    }
}

impl PolicyValidator for Secilc {
    fn validate(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError> {
        self.compile(modules, Path::new("/dev/null"))
    }
}

/// Type attribute -> the types it holds, in a compiled policy.
pub type AttributeMembers = BTreeMap<String, BTreeSet<String>>;

impl Secilc {
    /// The type attributes of the base policy compiled with our templates and `modules`, each
    /// with the types it holds, as setools' `seinfo -x -a` reads them from the binary policy
    /// (the attributes the policy keeps: those its rules, `modules`' included, use).
    pub fn attribute_members(&self, modules: &[RenderedModule]) -> Result<AttributeMembers, SelinuxError> {
        let seinfo = find_program("seinfo").ok_or_else(|| SelinuxError::Toolchain {
            what: "seinfo".to_owned(),
            hint: "install the setools package".to_owned(),
        })?;
        let dir = scratch_dir("spo-policy-")?;
        let policy = dir.path().join("policy");
        self.compile(modules, &policy)?;
        let step = "listing the attributes of the compiled policy with seinfo";
        let output = ToolCommand::new(&seinfo, self.seinfo_timeout)
            .arg(&policy)
            .args(["-x", "-a"])
            .run()
            .map_err(|source| SelinuxError::Tool {
                step: step.to_owned(),
                source,
            })?;
        if !output.success() {
            return Err(SelinuxError::Toolchain {
                what: "seinfo".to_owned(),
                hint: format!(
                    "it failed on the compiled policy ({}): {}",
                    output.status,
                    tool_message(&output)
                ),
            });
        }
        if output.stdout_truncated {
            return Err(SelinuxError::ToolOutput {
                tool: "seinfo",
                message: format!("{step}: the listing is longer than the runner keeps"),
            });
        }
        Ok(parse_attribute_listing(&output.stdout_text()))
    }

    /// Compiles the base policy, our templates and `modules` with secilc into `output`.
    fn compile(&self, modules: &[RenderedModule], output: &Path) -> Result<(), SelinuxError> {
        let dir = scratch_dir("spo-secilc-")?;
        let mut all = vec![templates_module()];
        all.extend(modules.iter().cloned());
        let mut args: Vec<OsString> = vec!["-N".into(), "-o".into(), output.into(), "-f".into(), "/dev/null".into()];
        args.extend(self.base.files.iter().map(|f| f.clone().into_os_string()));
        for m in &all {
            args.push(write_module(&dir, m)?.into_os_string());
        }
        let output = ToolCommand::new(&self.program, self.timeout)
            .args(args)
            .current_dir(dir.path())
            .run()
            .map_err(|source| SelinuxError::Tool {
                step: format!("compiling {} with secilc", module_list(&all)),
                source,
            })?;
        if output.success() {
            return Ok(());
        }
        let mut message = tool_message(&output);
        let stdout = output.stdout_text();
        if !stdout.trim().is_empty() {
            message = format!("{message}\n{}", stdout.trim());
        }
        // The temporary directory means nothing to the reader; the module name does.
        let message = message.replace(&format!("{}/", dir.path().display()), "");
        Err(rejection("secilc", &all, message))
    }
}

/// A fresh private directory under the system's temporary directory, named from `prefix`,
/// removed when dropped.
pub(crate) fn scratch_dir(prefix: &str) -> Result<ScratchDir, SelinuxError> {
    ScratchDir::new(prefix).map_err(|source| SelinuxError::Tool {
        step: "creating a scratch directory for policy modules".to_owned(),
        source,
    })
}

/// Writes `module` as `<name>.cil` into `dir` (tools name a module after its file).
pub(crate) fn write_module(dir: &ScratchDir, module: &RenderedModule) -> Result<PathBuf, SelinuxError> {
    dir.write(format!("{}.cil", module.name), module.text.as_bytes())
        .map_err(|source| SelinuxError::Tool {
            step: format!("writing policy module {} for a tool", module.name),
            source,
        })
}

/// A tool's stderr, trimmed, or its exit status when it printed nothing; marked when cut.
pub(crate) fn tool_message(output: &ToolOutput) -> String {
    let mut message = output.stderr_text().trim().to_owned();
    if message.is_empty() {
        message = format!("exit status {}", output.status);
    }
    if output.stderr_truncated {
        message.push_str(" [stderr truncated]");
    }
    message
}

/// `module a`, `modules a, b, c` or `12 modules (a, b, c, ...)`, for step names.
pub(crate) fn module_list(modules: &[RenderedModule]) -> String {
    const SHOWN: usize = 4;
    let names: Vec<&str> = modules.iter().take(SHOWN).map(|m| m.name.as_str()).collect();
    match modules.len() {
        1 => format!("policy module {}", names.join("")),
        n if n <= SHOWN => format!("policy modules {}", names.join(", ")),
        n => format!("{n} policy modules ({}, ...)", names.join(", ")),
    }
}

/// Reads `seinfo -x -a` output: a line `   attribute NAME;` opens an attribute, and each
/// following indented line is one of its types.
pub fn parse_attribute_listing(text: &str) -> AttributeMembers {
    let mut members = AttributeMembers::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("attribute ").and_then(|r| r.strip_suffix(';')) {
            members.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
        } else if trimmed.is_empty() || !line.starts_with(char::is_whitespace) {
            current = None;
        } else if let Some(name) = &current {
            members.entry(name.clone()).or_default().insert(trimmed.to_owned());
        }
    }
    members
}

/// Builds the error for a tool's failure, pointing at the first module line it names.
pub fn rejection(tool: &'static str, modules: &[RenderedModule], message: String) -> SelinuxError {
    let located = first_location(&message).and_then(|(module, line)| {
        let m = modules.iter().find(|m| m.name == module)?;
        let origin = m.origin_of_line(line);
        Some((
            m,
            Location {
                module,
                line,
                field: origin.map(|o| o.field.clone()),
                source_line: origin.and_then(|o| o.source_line),
            },
        ))
    });
    let subject = match (&located, modules) {
        (Some((m, _)), _) => m.subject(),
        (None, [.., last]) if modules.len() <= 2 => last.subject(),
        _ => format!("{} policy modules", modules.len()),
    };
    SelinuxError::Rejected {
        tool,
        subject,
        location: located.map(|(_, l)| Box::new(l)),
        message,
    }
}

/// The first `<name>.cil:<line>`, `line <n> of <...>/<name>.cil` or (semodule's store path)
/// `<...>/modules/<priority>/<name>/cil:<line>` in a tool's message.
pub fn first_location(message: &str) -> Option<(String, usize)> {
    for text_line in message.lines() {
        for (i, _) in text_line.match_indices("/cil:") {
            let module = text_line[..i].rsplit('/').next().unwrap_or_default();
            let digits: String = text_line[i + 5..].chars().take_while(char::is_ascii_digit).collect();
            if let (false, Ok(line)) = (module.is_empty(), digits.parse()) {
                return Some((module.to_owned(), line));
            }
        }
        for (i, _) in text_line.match_indices(".cil") {
            let before = &text_line[..i];
            let after = &text_line[i + 4..];
            let stem_start = before
                .rfind(|c: char| c == '/' || c.is_whitespace())
                .map_or(0, |p| p + 1);
            let module = &before[stem_start..];
            if module.is_empty() {
                continue;
            }
            // `x.cil:12`
            if let Some(rest) = after.strip_prefix(':') {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(line) = digits.parse() {
                    return Some((module.to_owned(), line));
                }
            }
            // `line 12 of x.cil`
            if let Some(p) = before.rfind("line ") {
                let digits: String = before[p + 5..].chars().take_while(char::is_ascii_digit).collect();
                if let Ok(line) = digits.parse() {
                    return Some((module.to_owned(), line));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seinfo_attribute_listings() {
        let text = "\nType Attributes: 2\n   attribute file_type;\n\tetc_t\n\tshadow_t\n   attribute empty_attr;\n   attribute domain;\n\tinit_t\n\n";
        let members = parse_attribute_listing(text);
        assert_eq!(members.len(), 3);
        assert_eq!(
            members["file_type"].iter().map(String::as_str).collect::<Vec<_>>(),
            ["etc_t", "shadow_t"]
        );
        assert!(members["empty_attr"].is_empty());
        assert_eq!(members["domain"].len(), 1);
    }

    #[test]
    fn locations_in_secilc_messages() {
        assert_eq!(
            first_location("Failed to resolve permission x\nFailed to resolve allow statement at /tmp/d/nginx.cil:9\n"),
            Some(("nginx".into(), 9))
        );
        assert_eq!(
            first_location("Open parenthesis without matching close at line 11 of /tmp/x/raw-a.cil"),
            Some(("raw-a".into(), 11))
        );
        assert_eq!(
            first_location(
                "Failed to resolve allow statement at /r/var/lib/selinux/default/tmp/modules/420/bad1/cil:3\nFailed to resolve AST"
            ),
            Some(("bad1".into(), 3)),
            "semodule names the module by its store path"
        );
        assert_eq!(first_location("Failed to compile cildb: -2"), None);
    }
}
