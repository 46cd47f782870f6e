//! What every command shares for its output: the exit codes, the `--format` choice, writing
//! `-o FILE` (the one writer, spo-hostio), escaping text for a terminal, and printing problems
//! in one format with repeats folded.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use spo_model::{FieldPath, Problem};

/// Exit codes spoc itself uses. `run` passes the command's own status through; `record`
/// uses 1 and 2 for what it found; spoc's own failures use the codes `env`, `timeout` and
/// podman use, which commands rarely do.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// validate: a document has an error; merge --check: the other profiles add to the first;
    /// record: the recorded command failed (the profile was written anyway).
    pub const FOUND: u8 = 1;
    /// record --verify: the profile blocked a call, or the confined run's status differed.
    pub const VERIFY_FAILED: u8 = 2;
    /// spoc itself failed: bad arguments or input, an unreadable or unwritable file, an
    /// invalid profile, a missing privilege.
    pub const SPOC_FAILED: u8 = 125;
    /// The command was found but could not be started (not executable, or the profile
    /// refuses its execve).
    pub const CANNOT_EXECUTE: u8 = 126;
    /// The command was not found.
    pub const NOT_FOUND: u8 = 127;
    /// Interrupted by SIGINT before the work was done (128 + 2).
    pub const INTERRUPTED: u8 = 130;
}

/// The exit-code table every command's help ends with.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (spoc's own failures use 125, as env and timeout do):
  0    success
  1    validate: a document has an error; merge --check: the others add to the first profile;
       record: the recorded command failed (the profile is written anyway; see --allow-failure)
  2    record --verify: the profile blocked a call, or the confined run ended differently
  125  spoc failed: bad arguments, unreadable input, an invalid profile, an unwritable output
  126  run/record: the command could not be started (not executable, or its execve is refused)
  127  run/record: the command was not found
  130  interrupted by Ctrl-C before the work was done
  run: otherwise the command's own status, 128+N when signal N ended it";

/// An exit code from one of the constants in [`exit`].
pub fn code(c: u8) -> std::process::ExitCode {
    std::process::ExitCode::from(c)
}

/// How a command prints what it produced or found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// For people; control characters in names are escaped.
    #[default]
    Text,
    /// One JSON document (its schema is in spoc's README).
    Json,
    /// The same document as YAML.
    Yaml,
}

impl Format {
    /// Serializes `value` as this format (JSON or YAML), with a final newline. `None` for text.
    pub fn serialize<T: serde::Serialize>(self, value: &T) -> Result<Option<String>> {
        match self {
            Format::Text => Ok(None),
            Format::Json => {
                let mut s = serde_json::to_string_pretty(value).context("writing JSON")?;
                s.push('\n');
                Ok(Some(s))
            }
            Format::Yaml => Ok(Some(spo_model::yaml::to_string(value).context("writing YAML")?)),
        }
    }
}

/// Writes `bytes` to `output`: standard output for `None` or `-`, else the file by the one
/// writer's command-line policy (regular files replaced atomically keeping mode and owner,
/// links written through, FIFOs and devices written into, never replaced).
pub fn emit(output: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match output {
        None => write_stdout(bytes),
        Some(p) if p.as_os_str() == "-" => write_stdout(bytes),
        Some(path) => {
            spo_hostio::write_file(path, bytes, &spo_hostio::WritePolicy::cli(OUTPUT_MODE))
                .map_err(|e| anyhow::anyhow!(spo_model::contract::error_chain(&e)))?;
            Ok(())
        }
    }
}

/// Mode of new files spoc writes: profiles are not secret.
pub const OUTPUT_MODE: u32 = 0o644;

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(bytes)
        .and_then(|()| lock.flush())
        .context("writing standard output")
}

/// `s` made safe to print on a terminal: control characters (C0, DEL, C1) and the Unicode
/// characters that reorder or hide text (bidirectional overrides and isolates, zero-width
/// joiners are left alone) are written as escapes, so a program or file name cannot forge
/// lines, colours or the order of what spoc prints.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

/// Whether warnings are printed (`-q` silences them; errors always print).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warnings {
    /// Print them.
    Show,
    /// Leave them out.
    Quiet,
}

/// A problem with how often it occurs: repeats of one problem (same severity, message and
/// hint, different fields) fold into one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedProblem<'a> {
    /// The first occurrence.
    pub first: &'a Problem,
    /// Its position among the problems folded.
    pub first_index: usize,
    /// How many occurrences in all.
    pub count: usize,
    /// The fields of the next few occurrences, for the message.
    pub more: Vec<&'a FieldPath>,
}

/// Folds repeats, keeping the order of first occurrences. Linear in the number of problems.
pub fn fold<'a>(problems: impl IntoIterator<Item = &'a Problem>) -> Vec<FoldedProblem<'a>> {
    const SHOWN: usize = 3;
    let mut index: HashMap<(bool, &str, Option<&str>), usize> = HashMap::new();
    let mut out: Vec<FoldedProblem<'a>> = Vec::new();
    for (position, p) in problems.into_iter().enumerate() {
        let key = (p.is_error(), p.message.as_str(), p.hint.as_deref());
        match index.get(&key) {
            Some(&i) => {
                let f = &mut out[i];
                f.count += 1;
                if f.more.len() < SHOWN {
                    f.more.push(&p.path);
                }
            }
            None => {
                index.insert(key, out.len());
                out.push(FoldedProblem {
                    first: p,
                    first_index: position,
                    count: 1,
                    more: Vec::new(),
                });
            }
        }
    }
    out
}

/// A problem's whole content as a key, for sets that drop repeats in linear time.
pub fn problem_key(p: &Problem) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        p.is_error(),
        p.path,
        p.message,
        p.hint.as_deref().unwrap_or("")
    )
}

/// One problem as spoc prints it everywhere, after `at` (`file:line [doc N] Kind/name`):
/// `at: error: spec.x: message (hint)`, with ` [N times: ...]` when it repeats.
pub fn problem_line(at: &str, f: &FoldedProblem<'_>) -> String {
    let p = f.first;
    let severity = if p.is_error() { "error" } else { "warning" };
    let mut line = format!("{at}: {severity}: {}: {}", clean(p.path.as_str()), clean(&p.message));
    if let Some(h) = &p.hint {
        line.push_str(&format!(" ({})", clean(h)));
    }
    if f.count > 1 {
        let mut also: Vec<String> = f.more.iter().map(|m| clean(m.as_str()).into_owned()).collect();
        if f.count - 1 > f.more.len() {
            also.push("...".to_owned());
        }
        line.push_str(&format!(" [{} times; also at {}]", f.count, also.join(", ")));
    }
    line
}

/// Prints `problems` to standard error, one line per distinct problem; `at` gives each
/// problem's location prefix (its field's line). Returns how many lines were printed.
pub fn print_problems<'a>(
    problems: impl IntoIterator<Item = &'a Problem>,
    warnings: Warnings,
    at: impl Fn(&Problem) -> String,
) -> usize {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let mut printed = 0;
    for f in fold(problems) {
        if !f.first.is_error() && warnings == Warnings::Quiet {
            continue;
        }
        // Nothing useful can be done when standard error is gone.
        let _ = writeln!(err, "{}", problem_line(&at(f.first), &f));
        printed += 1;
    }
    printed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(clean("plain /usr/bin/ls"), "plain /usr/bin/ls");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
        assert_eq!(clean("evil\nspoc: ok"), "evil\\nspoc: ok");
        assert_eq!(clean("\x1b[2Jwiped"), "\\x1b[2Jwiped");
        assert_eq!(clean("a\u{9b}b"), "a\\x9bb");
        assert_eq!(clean("ab\u{202e}cd"), "ab\\u{202e}cd");
        // A backslash is escaped too, so an escape in the output always came from spoc.
        assert_eq!(clean("a\\nb\x07"), "a\\\\nb\\x07");
        assert_eq!(clean("ünïcødé ✓"), "ünïcødé ✓");
    }

    #[test]
    fn repeats_fold_into_one_line_with_a_count() {
        let path = |i| {
            FieldPath::root()
                .field("spec")
                .field("syscalls")
                .index(0)
                .field("names")
                .index(i)
        };
        let mut problems: Vec<Problem> = (1..=500)
            .map(|i| Problem::warning(path(i), "duplicate entry \"read\"").with_hint("remove the repeated entry"))
            .collect();
        problems.insert(3, Problem::error(path(9), "unknown syscall \"opne\""));
        let folded = fold(&problems);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].count, 500);
        assert_eq!(folded[1].count, 1);
        let line = problem_line("f.yaml:3", &folded[0]);
        assert_eq!(
            line,
            "f.yaml:3: warning: spec.syscalls[0].names[1]: duplicate entry \"read\" (remove the repeated entry) \
             [500 times; also at spec.syscalls[0].names[2], spec.syscalls[0].names[3], spec.syscalls[0].names[4], ...]"
        );
        assert_eq!(
            problem_line("f.yaml:9", &folded[1]),
            "f.yaml:9: error: spec.syscalls[0].names[9]: unknown syscall \"opne\""
        );
    }

    #[test]
    fn problem_text_is_escaped() {
        let p = Problem::error(FieldPath::root().field("metadata").field("name"), "bad name \"a\nb\"");
        let f = fold(std::slice::from_ref(&p));
        assert_eq!(problem_line("x", &f[0]), "x: error: metadata.name: bad name \"a\\nb\"");
    }
}
