//! `spoc validate FILE...`: strict parsing and validation of manifests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::input::read_input;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use spo_model::document::decode_source;
use spo_model::{AnyObject, Document, Outcome, Problem, parse_source};

pub const EXAMPLES: &str = "\
Examples:
  spoc validate examples/manifests/
  spoc validate - < profile.yaml
  spoc validate --output json profile.yaml

Exit status: 0 when every document is valid (warnings allowed), 1 when any document has an
error, 2 when a file cannot be read.";

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    strict_warnings: bool,
    /// Print only documents with problems, and the summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// One document's result, as printed with `--output json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DocumentReport {
    file: String,
    document: usize,
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// `ok`, `error` or `skipped`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct Report {
    documents: Vec<DocumentReport>,
    #[serde(rename = "fileErrors")]
    file_errors: Vec<FileError>,
    ok: usize,
    invalid: usize,
    skipped: usize,
}

#[derive(Debug, Serialize)]
struct FileError {
    file: String,
    error: String,
}

pub fn run(args: &ValidateArgs) -> Result<ExitCode> {
    let mut report = Report {
        documents: Vec::new(),
        file_errors: Vec::new(),
        ok: 0,
        invalid: 0,
        skipped: 0,
    };
    for input in expand_inputs(&args.files)? {
        let display = input.display().to_string();
        match read_input(&input) {
            Err(e) => report.file_errors.push(FileError {
                file: display,
                error: format!("{e:#}"),
            }),
            Ok(bytes) => match decode_source(&display, &bytes).and_then(|text| parse_source(&display, text)) {
                Err(e) => report.file_errors.push(FileError {
                    file: display,
                    error: e.to_string(),
                }),
                Ok(docs) => {
                    for mut doc in docs {
                        deep_checks(&mut doc);
                        report
                            .documents
                            .push(document_report(&display, doc, args.strict_warnings));
                    }
                }
            },
        }
    }
    for d in &report.documents {
        match d.result {
            "ok" => report.ok += 1,
            "skipped" => report.skipped += 1,
            _ => report.invalid += 1,
        }
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report).context("writing the JSON report")?;
            writeln!(out)?;
        }
        OutputFormat::Text => print_text(&mut out, &report, args.quiet)?,
    }
    Ok(if !report.file_errors.is_empty() {
        ExitCode::from(2)
    } else if report.invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Checks that need a backend: syscall names per architecture and the compiled size for
/// SeccompProfiles.
fn deep_checks(doc: &mut Document) {
    if let Outcome::Valid(AnyObject::SeccompProfile(p)) = &doc.outcome {
        let found = spo_seccomp::validate::check_spec(&p.spec, spo_seccomp::syscalls::native_arch());
        let invalid = found.has_errors();
        doc.problems.extend(found);
        if invalid {
            doc.outcome = Outcome::Invalid;
        }
    }
}

fn document_report(file: &str, doc: Document, strict_warnings: bool) -> DocumentReport {
    let failed = doc.has_errors() || (strict_warnings && !doc.problems.is_empty());
    let (result, reason) = match &doc.outcome {
        Outcome::Skipped(why) => ("skipped", Some(why.clone())),
        _ if failed => ("error", None),
        _ => ("ok", None),
    };
    DocumentReport {
        file: file.to_owned(),
        document: doc.index,
        line: doc.line,
        api_version: doc.api_version,
        kind: doc.kind,
        name: doc.name,
        result,
        reason,
        problems: doc.problems.into_vec(),
    }
}

fn print_text(out: &mut impl Write, report: &Report, quiet: bool) -> Result<()> {
    for e in &report.file_errors {
        writeln!(out, "{}: error: {}", e.file, e.error)?;
    }
    for d in &report.documents {
        let what = format!(
            "{}/{}",
            d.kind.as_deref().unwrap_or("<no kind>"),
            d.name.as_deref().unwrap_or("<no name>")
        );
        let at = format!("{}:{} [doc {}] {what}", d.file, d.line, d.document);
        match d.result {
            "skipped" => {
                if !quiet {
                    writeln!(out, "{at}: skipped ({})", d.reason.as_deref().unwrap_or_default())?;
                }
            }
            "ok" if d.problems.is_empty() => {
                if !quiet {
                    writeln!(out, "{at}: ok")?;
                }
            }
            result => {
                if result == "ok" {
                    writeln!(out, "{at}: ok, with warnings")?;
                }
                for p in &d.problems {
                    let severity = if p.is_error() { "error" } else { "warning" };
                    write!(out, "{at}: {severity}: {}: {}", p.path, p.message)?;
                    match &p.hint {
                        Some(h) => writeln!(out, " ({h})")?,
                        None => writeln!(out)?,
                    }
                }
            }
        }
    }
    writeln!(
        out,
        "{} documents: {} ok, {} invalid, {} skipped{}",
        report.documents.len(),
        report.ok,
        report.invalid,
        report.skipped,
        if report.file_errors.is_empty() {
            String::new()
        } else {
            format!("; {} unreadable files", report.file_errors.len())
        }
    )?;
    Ok(())
}

/// Files to read: `-`, files as given, directories searched (sorted) for manifests.
fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.as_os_str() != "-" && input.is_dir() {
            let mut found = Vec::new();
            collect_manifests(input, &mut found, 0)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn collect_manifests(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    // Bounded, and symlinked directories are not followed, so a loop cannot trap us.
    if depth > 16 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let ty = entry
            .file_type()
            .with_context(|| format!("inspecting {}", path.display()))?;
        if ty.is_dir() {
            collect_manifests(&path, found, depth + 1)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            found.push(path);
        }
    }
    Ok(())
}
