//! Validation with apparmor_parser, behind a port.
//!
//! [`ProfileValidator`] compiles profile text the way a load would, without a kernel; the real
//! implementation, [`ParserValidator`], runs
//! `apparmor_parser -Q -K --features-file <features> -o <temp> <temp profile>` (the features
//! file pins the kernel ABI, so the result does not depend on this machine's kernel).
//! [`check_rendered`] turns the parser's line-numbered complaints back into problems at field
//! paths (`spec.abstract.filesystem.readOnlyPaths[2]: apparmor_parser: ...`), and for a raw
//! `policy` checks that the text defines exactly the profile `metadata.name`, in the mode the
//! spec asks for, and no unconfined or kill-mode profile.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use spo_hostio::{HostIoError, ScratchDir, ToolCommand};
use spo_model::apparmor::AppArmorMode;
use spo_model::validate::{FieldPath, Problem, Problems};

use crate::error::{AppArmorError, bounded};
use crate::render::{ProfileSource, RenderedProfile};

/// How long one apparmor_parser run may take by default before its process group is killed
/// (a compile takes about 20 ms here, a load a little more; a minute only stops a hung parser).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished parser run printed.
#[derive(Debug)]
pub(crate) struct ParserOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tool args...` through the one runner (`spo_hostio::ToolCommand`: own process group,
/// killed at `timeout`, bounded output), for `operation` (named in errors).
pub(crate) fn run(
    operation: &str,
    tool: &Path,
    args: &[&OsStr],
    timeout: Duration,
) -> Result<ParserOutput, AppArmorError> {
    let output = ToolCommand::new(tool, timeout)
        .args(args.iter().copied())
        .run()
        .map_err(|e| match e {
            HostIoError::Spawn { source, .. } => AppArmorError::ToolUnavailable {
                tool: tool.to_path_buf(),
                source,
            },
            HostIoError::TimedOut { limit, .. } => AppArmorError::ToolTimeout {
                operation: operation.to_owned(),
                tool: tool.to_path_buf(),
                after: limit,
            },
            other => AppArmorError::Tool {
                operation: operation.to_owned(),
                source: other,
            },
        })?;
    Ok(ParserOutput {
        status: output.status,
        stdout: output.stdout_text(),
        stderr: output.stderr_text(),
    })
}

/// The parser's default location.
pub const DEFAULT_PARSER: &str = "apparmor_parser";

/// Where Debian's apparmor package puts the features file used for offline compiles.
pub const DEFAULT_FEATURES_FILE: &str = "/usr/share/apparmor-features/features";

/// One complaint of the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The line of the profile text it names, when it names one.
    pub line: Option<usize>,
    /// The text of the input the parser quotes (`Unable to parse input line '...'`).
    pub input: Option<String>,
    /// What the parser said.
    pub message: String,
}

/// What compiling profile text gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The text compiles.
    Accepted,
    /// It does not; the parser's complaints.
    Rejected(Vec<Diagnostic>),
}

/// The profiles a text defines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySummary {
    /// Full names (`web`, `web//hat`), as `apparmor_parser -N` lists them.
    pub names: Vec<String>,
    /// Each profile block's own name and its mode word (`""` when no mode flag is set,
    /// `enforce`, `complain`, `kill`, `unconfined`).
    pub modes: Vec<(String, String)>,
}

/// Compiles AppArmor profile text without loading it.
pub trait ProfileValidator: Send + Sync {
    /// Compiles `text` as a load would.
    fn compile(&self, text: &str) -> Result<Verdict, AppArmorError>;
    /// The profiles `text` defines and their modes (only called for text that compiles).
    fn summarize(&self, text: &str) -> Result<PolicySummary, AppArmorError>;
}

/// [`ProfileValidator`] running apparmor_parser against a features file.
#[derive(Clone, Debug)]
pub struct ParserValidator {
    /// The apparmor_parser program.
    pub parser: PathBuf,
    /// The kernel features to compile for.
    pub features_file: PathBuf,
    /// How long one run may take.
    pub timeout: Duration,
}

impl Default for ParserValidator {
    fn default() -> Self {
        ParserValidator {
            parser: PathBuf::from(DEFAULT_PARSER),
            features_file: PathBuf::from(DEFAULT_FEATURES_FILE),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ParserValidator {
    /// Whether the parser can be run and the features file exists; the reason when not.
    pub fn available(&self) -> Result<(), String> {
        if !self.features_file.is_file() {
            return Err(format!(
                "the AppArmor features file {} does not exist (install the apparmor package)",
                self.features_file.display()
            ));
        }
        match run(
            "checking apparmor_parser",
            &self.parser,
            &[OsStr::new("--version")],
            self.timeout,
        ) {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{} --version exited with {}",
                self.parser.display(),
                out.status
            )),
            Err(e) => Err(spo_model::contract::error_chain(&e)),
        }
    }

    /// Writes `text` to a private temporary directory and runs the parser on it with `args`
    /// (plus `-o <temp>` when `output` is set; `-N` refuses a second action).
    fn run_on(
        &self,
        operation: &str,
        text: &str,
        args: &[&str],
        output: bool,
    ) -> Result<(ParserOutput, PathBuf), AppArmorError> {
        let scratch = |source| AppArmorError::Tool {
            operation: format!("{operation}: preparing the parser's input"),
            source,
        };
        let dir = ScratchDir::new("spo-apparmor-").map_err(scratch)?;
        let input = dir.write("profile", text.as_bytes()).map_err(scratch)?;
        let out = dir.path().join("compiled");
        let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        argv.extend([OsStr::new("--features-file"), self.features_file.as_os_str()]);
        if output {
            argv.extend([OsStr::new("-o"), out.as_os_str()]);
        }
        argv.push(input.as_os_str());
        let output = run(operation, &self.parser, &argv, self.timeout)?;
        Ok((output, input))
    }
}

impl ProfileValidator for ParserValidator {
    fn compile(&self, text: &str) -> Result<Verdict, AppArmorError> {
        let (out, input) = self.run_on("compiling profile", text, &["-Q", "-K"], true)?;
        if out.status.success() {
            return Ok(Verdict::Accepted);
        }
        let input = input.display().to_string();
        let diagnostics = parse_diagnostics(&out.stderr.replace(&input, "<profile>"));
        if diagnostics.is_empty() {
            return Ok(Verdict::Rejected(vec![Diagnostic {
                line: None,
                input: None,
                message: format!("apparmor_parser exited with {} and printed nothing", out.status),
            }]));
        }
        Ok(Verdict::Rejected(diagnostics))
    }

    fn summarize(&self, text: &str) -> Result<PolicySummary, AppArmorError> {
        let (names, _) = self.run_on("listing the profiles of a policy", text, &["-N"], false)?;
        let (debug, _) = self.run_on("reading the modes of a policy", text, &["-Q", "-K", "-d"], false)?;
        for (out, what) in [(&names, "-N"), (&debug, "-d")] {
            if !out.status.success() {
                return Err(AppArmorError::ToolFailed {
                    operation: format!("apparmor_parser {what}"),
                    tool: self.parser.clone(),
                    status: out.status.to_string(),
                    stderr: bounded(&out.stderr, 2000),
                });
            }
        }
        Ok(PolicySummary {
            names: names
                .stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            modes: parse_debug_modes(&debug.stdout, &debug.stderr).ok_or_else(|| AppArmorError::ToolOutput {
                operation: "reading the modes of a policy".into(),
                tool: self.parser.clone(),
                detail: "the profile names and modes of apparmor_parser -d do not pair up".into(),
            })?,
        })
    }
}

/// The parser's stderr as diagnostics.
pub fn parse_diagnostics(stderr: &str) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for raw in stderr.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("Cache read/write disabled") {
            continue;
        }
        // The summary after a regex error; kept only when nothing more precise was said.
        if line.starts_with("ERROR processing regexs") {
            if out.is_empty() {
                out.push(Diagnostic {
                    line: None,
                    input: None,
                    message: line.to_owned(),
                });
            }
            continue;
        }
        let line = line.strip_prefix("apparmor_parser: ").unwrap_or(line);
        if let Some(input) = line
            .strip_prefix("Unable to parse input line '")
            .and_then(|l| l.strip_suffix('\''))
        {
            match out.last_mut() {
                Some(last) if last.input.is_none() && last.line.is_none() => last.input = Some(input.to_owned()),
                _ => out.push(Diagnostic {
                    line: None,
                    input: Some(input.to_owned()),
                    message: "unable to parse this input".into(),
                }),
            }
            continue;
        }
        if let Some(at) = line.find(" at line ") {
            let rest = &line[at + " at line ".len()..];
            if let Some((num, message)) = rest.split_once(':')
                && let Ok(n) = num.trim().parse::<usize>()
            {
                out.push(Diagnostic {
                    line: Some(n),
                    input: None,
                    message: message.trim().to_owned(),
                });
                continue;
            }
        }
        out.push(Diagnostic {
            line: None,
            input: None,
            message: line.to_owned(),
        });
    }
    out
}

/// `(name, mode word)` for each profile block of `apparmor_parser -d` output, which prints
/// each block's `Name:` line on stdout and its `Mode:` line on stderr, in the same order;
/// `None` when the two do not pair up.
pub fn parse_debug_modes(stdout: &str, stderr: &str) -> Option<Vec<(String, String)>> {
    let names: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Name:"))
        .map(|n| n.trim().to_owned())
        .collect();
    let modes: Vec<String> = stdout
        .lines()
        .chain(stderr.lines())
        .filter_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.split(',').next().unwrap_or_default().trim().to_owned())
        .collect();
    (names.len() == modes.len()).then(|| names.into_iter().zip(modes).collect())
}

/// Compiles a rendered profile and reports what is wrong at field paths; an empty list
/// means it compiles (and, for a raw policy, defines the right profile in the right mode).
/// `Err` only when the validator itself could not run.
pub fn check_rendered(validator: &dyn ProfileValidator, rendered: &RenderedProfile) -> Result<Problems, AppArmorError> {
    let mut problems = Problems::new();
    match validator.compile(&rendered.text)? {
        Verdict::Accepted => {}
        Verdict::Rejected(diagnostics) => {
            for d in diagnostics {
                problems.push(problem_for(rendered, &d));
            }
            return Ok(problems);
        }
    }
    if rendered.source == ProfileSource::Raw {
        let summary = validator.summarize(&rendered.text)?;
        check_raw_summary(rendered, &summary, &mut problems);
    }
    Ok(problems)
}

/// The checks of a raw policy's profiles against the spec.
pub fn check_raw_summary(rendered: &RenderedProfile, summary: &PolicySummary, problems: &mut Problems) {
    let field = FieldPath::root().field("spec").field("policy");
    let name = rendered.name.as_str();
    let top: Vec<&str> = summary
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.contains("//"))
        .collect();
    if top != [name] {
        problems.error_hint(
            field.clone(),
            format!("the policy defines the profiles {top:?}; it must define exactly one, named {name:?}"),
            "the kernel profile name is metadata.name; name the profile in the policy after it \
             (subprofiles and hats inside it are fine)",
        );
    }
    let wanted = match rendered.mode {
        AppArmorMode::Enforce => "enforce",
        AppArmorMode::Complain => "complain",
    };
    let mut top_seen = false;
    for (profile, mode) in &summary.modes {
        let effective = if mode.is_empty() { "enforce" } else { mode.as_str() };
        let is_top = profile == name && !top_seen;
        top_seen |= is_top;
        // The profile itself must be in the spec's mode; its children may only be stricter.
        let ok = if is_top {
            effective == wanted
        } else {
            effective == "enforce" || effective == wanted
        };
        if !ok {
            problems.error_hint(
                field.clone(),
                format!("profile {profile:?} of the policy is in {effective} mode, but spec.mode is {wanted}"),
                "the policy's flags must agree with spec.mode (Enforce or Complain); unconfined and kill \
                 modes are not accepted",
            );
        }
    }
}

/// A parser complaint as a problem at the field the complained-about line came from.
fn problem_for(rendered: &RenderedProfile, d: &Diagnostic) -> Problem {
    let text_line = |n: usize| rendered.text.lines().nth(n.wrapping_sub(1)).map(str::trim);
    let mut origin = d.line.and_then(|n| rendered.origin(n));
    if origin.is_none()
        && let Some(input) = &d.input
    {
        origin = rendered
            .origins()
            .map(|(_, o)| o)
            .find(|o| o.value == *input || (o.policy_line.is_some() && o.value.contains(input.as_str())));
    }
    if origin.is_none() {
        // "Found reference to variable X, but is never declared" names no line.
        origin = rendered
            .origins()
            .map(|(_, o)| o)
            .find(|o| variable_named(&d.message).is_some_and(|v| o.value.contains(&format!("@{{{v}}}"))));
    }
    let (path, mut message) = match origin {
        Some(o) => match o.policy_line {
            Some(n) => (o.field.clone(), format!("line {n}: apparmor_parser: {}", d.message)),
            None => (
                o.field.clone(),
                format!("{:?}: apparmor_parser: {}", o.value, d.message),
            ),
        },
        None => {
            let field = match rendered.source {
                ProfileSource::Raw => FieldPath::root().field("spec").field("policy"),
                ProfileSource::Abstract => FieldPath::root().field("spec").field("abstract"),
            };
            (field, format!("apparmor_parser: {}", d.message))
        }
    };
    let hint = match (d.line.and_then(text_line), &d.input) {
        (Some(l), _) => Some(format!(
            "the rendered line {} is `{}`",
            d.line.unwrap_or_default(),
            bounded(l, 200)
        )),
        (None, Some(i)) => Some(format!("the parser quotes `{}`", bounded(i, 200))),
        (None, None) => None,
    };
    if message.ends_with('.') {
        message.pop();
    }
    let p = Problem::error(path, message);
    match hint {
        Some(h) => p.with_hint(h),
        None => p,
    }
}

fn variable_named(message: &str) -> Option<&str> {
    message
        .strip_prefix("Found reference to variable ")
        .and_then(|r| r.split(',').next())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// A parser that hangs, as one stuck on a pathological profile would.
    fn hanging_parser(dir: &Path) -> PathBuf {
        let parser = dir.join("apparmor_parser");
        std::fs::write(&parser, "#!/bin/sh\nsleep 30 &\nwait\n").expect("script");
        std::fs::set_permissions(&parser, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        parser
    }

    #[test]
    fn a_hung_parser_is_killed_and_the_step_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let validator = ParserValidator {
            parser: hanging_parser(dir.path()),
            features_file: dir.path().join("features"),
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let err = validator.compile("profile web {}\n").expect_err("hangs");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(
            err.to_string(),
            format!(
                "compiling profile: {} did not finish within 300ms; its process group was killed",
                validator.parser.display()
            )
        );
        let securityfs = dir.path().join("securityfs");
        std::fs::create_dir(&securityfs).expect("mkdir");
        std::fs::write(securityfs.join("profiles"), "").expect("profiles");
        let mut loader = crate::loader::KernelLoader::new(&securityfs, dir.path().join("d"), &validator.parser);
        loader.timeout = Duration::from_millis(300);
        let name = spo_model::contract::InstallName::new("web").expect("name");
        let err = crate::loader::ProfileLoader::install(&loader, &name, "profile web {}\n").expect_err("hangs");
        assert!(
            matches!(&err, AppArmorError::ToolTimeout { operation, .. } if operation == "loading profile web"),
            "{err}"
        );
    }

    use super::*;

    #[test]
    fn diagnostics_of_each_error_shape() {
        let stderr = "AppArmor parser error for <profile> in profile <profile> at line 5: Invalid capability foo.\n\
                      apparmor_parser: Regex grouping error: Unclosed grouping or character class, expecting close }\n\
                      apparmor_parser: Unable to parse input line '/a{b,c'\n\
                      ERROR processing regexs for profile test-a, failed to load\n\
                      Found reference to variable nope, but is never declared\n";
        let d = parse_diagnostics(stderr);
        assert_eq!(
            d,
            vec![
                Diagnostic {
                    line: Some(5),
                    input: None,
                    message: "Invalid capability foo.".into()
                },
                Diagnostic {
                    line: None,
                    input: Some("/a{b,c".into()),
                    message: "Regex grouping error: Unclosed grouping or character class, expecting close }".into()
                },
                Diagnostic {
                    line: None,
                    input: None,
                    message: "Found reference to variable nope, but is never declared".into()
                },
            ]
        );
        assert_eq!(variable_named(&d[2].message), Some("nope"));
        let only_summary = parse_diagnostics("ERROR processing regexs for profile t, failed to load\n");
        assert_eq!(only_summary.len(), 1);
        assert!(only_summary[0].message.starts_with("ERROR processing regexs"));
    }

    #[test]
    fn debug_modes() {
        let stdout = "----- Debugging built structures -----\nName:\t\tt\n--- Entries ---\nMode:\tr:r\tName:\t(/x)\nName:\t\that\nName:\t\tu\n";
        let stderr = "Mode: complain, Audit\nMode: , Hat\nWarning: something\nMode: unconfined\n";
        assert_eq!(
            parse_debug_modes(stdout, stderr),
            Some(vec![
                ("t".to_owned(), "complain".to_owned()),
                ("hat".to_owned(), String::new()),
                ("u".to_owned(), "unconfined".to_owned())
            ])
        );
        assert_eq!(parse_debug_modes(stdout, "Mode: enforce\n"), None);
    }
}
