//! `spoc validate FILE...`: strict parsing and validation of manifests; `--deep` also compiles
//! SELinux and AppArmor profiles with the real toolchain.
//!
//! Without `--deep` nothing external runs: every document gets the model's checks and its
//! backend's pure checks (syscall names per architecture; SELinux identifiers, guardrails and
//! inherit chains; the raw CIL reader; AppArmor's path grammar). With `--deep`, the SELinux
//! profiles of all inputs are compiled together by one secilc run against the base policy
//! (a run takes seconds, so one run serves every document; when secilc names a module, that
//! document fails and the rest are compiled again without it), and each AppArmorProfile by
//! apparmor_parser. A missing tool or base policy is reported per document, never as an error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::input::read_input;
use super::output::{FoldedProblem, Format, clean, emit, exit, fold, problem_key, problem_line};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use spo_apparmor::validate::check_rendered;
use spo_apparmor::{ParserValidator, render_profile};
use spo_model::contract::error_chain;
use spo_model::document::decode_source;
use spo_model::selinux::SelinuxProfile;
use spo_model::validate::FieldPath;
use spo_model::{AnyObject, Document, Outcome, Problem, Problems, parse_source};
use spo_selinux::guardrails::Guardrails;
use spo_selinux::raw::check_raw_selinux_profile;
use spo_selinux::render::{check_selinux_profile, render_with_dependencies};
use spo_selinux::validate::BASE_ENV;
use spo_selinux::{
    MemoryLookup, PolicyValidator, RenderContext, RenderedModule, Secilc, SelinuxError, render_raw_selinux_profile,
};

pub const EXAMPLES: &str = "\
Examples:
  spoc validate examples/manifests/
  spoc validate - < profile.yaml
  spoc validate --format json profile.yaml    machine-readable results
  spoc validate -q -o report.txt dir/         only problems (errors; -q hides warnings), to a file
  spoc validate --deep examples/manifests/     also compile with secilc and apparmor_parser

SelinuxProfiles inherited with `kind: SelinuxProfile` are looked up among all the documents
given, so give their files too. A SecurityProfilesOperatorDaemon among them sets the SELinux
guardrails from its spec.selinux.options, as the operator does.

--deep compiles SelinuxProfiles and RawSelinuxProfiles with secilc against the base policy in
--selinux-base DIR or $SPO_SELINUX_BASE (build it with scripts/selinux-base), and
AppArmorProfiles with `apparmor_parser -Q -K --features-file /usr/share/apparmor-features/features`.
Their complaints are mapped back to the field the line came from. It also compiles the base with
the SelinuxProfiles once more and reads its type attributes with setools' seinfo: an allowed
attribute that holds a denied type (file_type holds shadow_t) is refused at its field. When a tool or the base
policy is missing, each affected document says `skipped deep check: <why>`; that is not an error.

A problem repeated at many fields (500 duplicate syscall names) is one line with a count.
Validating no document at all (an empty directory, an empty file) is an error: a check that
checked nothing must not pass.";

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write the report to FILE instead of standard output (`-`: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    strict_warnings: bool,
    /// Print only errors, the documents that have them, and the summary (no warnings).
    #[arg(long, short)]
    quiet: bool,
    /// Also compile SELinux profiles with secilc and AppArmor profiles with apparmor_parser.
    #[arg(long)]
    deep: bool,
    /// The SELinux base policy directory (*.cil files) for --deep [default: $SPO_SELINUX_BASE].
    #[arg(long, value_name = "DIR", requires = "deep")]
    selinux_base: Option<PathBuf>,
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
    problems: Vec<ReportedProblem>,
    /// What `--deep` did with the document, when it applies to its kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    deep_check: Option<DeepCheck>,
}

/// A problem with the line of its field.
#[derive(Debug, Serialize)]
struct ReportedProblem {
    #[serde(flatten)]
    problem: Problem,
    /// 1-based line of the field at fault (the document's first line when the field is absent).
    line: usize,
}

/// The outcome of compiling one document with a real tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct DeepCheck {
    /// `passed`, `failed` or `skipped`.
    result: &'static str,
    /// `secilc` or `apparmor_parser`.
    tool: &'static str,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl DeepCheck {
    fn passed(tool: &'static str) -> Self {
        DeepCheck {
            result: "passed",
            tool,
            reason: None,
        }
    }

    fn failed(tool: &'static str) -> Self {
        DeepCheck {
            result: "failed",
            tool,
            reason: None,
        }
    }

    fn skipped(tool: &'static str, reason: impl Into<String>) -> Self {
        DeepCheck {
            result: "skipped",
            tool,
            reason: Some(reason.into()),
        }
    }
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

/// A document's place among the inputs: (file, document) indexes.
type DocKey = (usize, usize);

pub fn run(args: &ValidateArgs) -> Result<ExitCode> {
    let mut report = Report {
        documents: Vec::new(),
        file_errors: Vec::new(),
        ok: 0,
        invalid: 0,
        skipped: 0,
    };
    let mut files: Vec<(String, Vec<Document>)> = Vec::new();
    for input in expand_inputs(&args.files)? {
        let display = input.display().to_string();
        match read_input(&input) {
            Err(e) => report.file_errors.push(FileError {
                file: display,
                error: format!("{e:#}"),
            }),
            Ok(bytes) => {
                let parsed = decode_source(&display, &bytes)
                    .map_err(anyhow::Error::from)
                    .and_then(
                        |text| match super::input::runtime_json_document(&input, &display, text) {
                            Some(doc) => doc.map(|d| vec![d]),
                            None => parse_source(&display, text).map_err(anyhow::Error::from),
                        },
                    );
                match parsed {
                    Err(e) => report.file_errors.push(FileError {
                        file: display,
                        error: format!("{e:#}"),
                    }),
                    Ok(docs) => files.push((display, docs)),
                }
            }
        }
    }

    // Inherited SelinuxProfiles and the guardrails come from all inputs together.
    let inputs = selinux_inputs(files.iter().flat_map(|(_, docs)| docs.iter()));
    for (_, docs) in files.iter_mut() {
        for doc in docs.iter_mut() {
            backend_checks(doc, &inputs.ctx);
            if let Some(warning) = duplicate_warning(doc, &inputs) {
                doc.problems.push(warning);
            }
        }
    }
    let deep = if args.deep {
        let base = args
            .selinux_base
            .clone()
            .or_else(|| std::env::var_os(BASE_ENV).map(PathBuf::from));
        deep_checks(&mut files, &inputs.ctx, base.as_deref())
    } else {
        BTreeMap::new()
    };

    for (fi, (display, docs)) in files.into_iter().enumerate() {
        for (di, doc) in docs.into_iter().enumerate() {
            let mut d = document_report(&display, doc, args.strict_warnings);
            d.deep_check = deep.get(&(fi, di)).cloned();
            report.documents.push(d);
        }
    }
    for d in &report.documents {
        match d.result {
            "ok" => report.ok += 1,
            "skipped" => report.skipped += 1,
            _ => report.invalid += 1,
        }
    }

    let text = match args.format.serialize(&report)? {
        Some(text) => text.into_bytes(),
        None => {
            let mut out = Vec::new();
            print_text(&mut out, &report, args.quiet, args.deep)?;
            out
        }
    };
    emit(args.output.as_deref(), &text)?;
    Ok(if !report.file_errors.is_empty() {
        ExitCode::from(exit::SPOC_FAILED)
    } else if report.documents.is_empty() {
        eprintln!(
            "spoc: error: no document to validate in {}",
            describe_inputs(&args.files)
        );
        ExitCode::from(exit::SPOC_FAILED)
    } else if report.invalid > 0 {
        ExitCode::from(exit::FOUND)
    } else {
        ExitCode::SUCCESS
    })
}

/// What rendering SELinux profiles needs from the other inputs.
pub(crate) struct SelinuxInputs {
    /// Every valid SelinuxProfile (the first of each name) and the guardrails.
    pub ctx: RenderContext,
    /// Names held by more than one SelinuxProfile, and how many hold each.
    pub duplicates: BTreeMap<String, usize>,
    /// How many SecurityProfilesOperatorDaemons were found (the first sets the guardrails).
    pub spods: usize,
}

/// Builds the inherit lookup (first SelinuxProfile of each name wins) and the guardrails (from
/// the first SecurityProfilesOperatorDaemon's `spec.selinux.options`, else the built-in ones).
pub(crate) fn selinux_inputs<'a>(docs: impl IntoIterator<Item = &'a Document>) -> SelinuxInputs {
    let mut profiles: BTreeMap<String, SelinuxProfile> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut guardrails = None;
    let mut spods = 0;
    for doc in docs {
        match &doc.outcome {
            Outcome::Valid(AnyObject::SelinuxProfile(p)) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                *counts.entry(name.clone()).or_default() += 1;
                profiles.entry(name).or_insert_with(|| (**p).clone());
            }
            Outcome::Valid(AnyObject::SecurityProfilesOperatorDaemon(spod)) => {
                spods += 1;
                if guardrails.is_none() {
                    let options = spod.spec.selinux.as_ref().and_then(|s| s.options.as_ref());
                    guardrails = Some(Guardrails::from_options(options));
                }
            }
            _ => {}
        }
    }
    SelinuxInputs {
        ctx: RenderContext {
            guardrails: guardrails.unwrap_or_default(),
            lookup: Arc::new(MemoryLookup::with(profiles.into_values())),
        },
        duplicates: counts.into_iter().filter(|(_, n)| *n > 1).collect(),
        spods,
    }
}

/// A warning for a SelinuxProfile whose name another input also has (inherit resolves to the
/// first one read).
fn duplicate_warning(doc: &Document, inputs: &SelinuxInputs) -> Option<Problem> {
    if doc.kind.as_deref() != Some("SelinuxProfile") {
        return None;
    }
    let name = doc.name.as_deref()?;
    let n = inputs.duplicates.get(name)?;
    Some(
        Problem::warning(
            FieldPath::root().field("metadata").field("name"),
            format!("{n} SelinuxProfiles of the inputs are named {name:?}"),
        )
        .with_hint("a SelinuxProfile inheriting it gets the first one read"),
    )
}

/// Adds `found` to the document's problems (skipping ones it already has: the backends repeat
/// the model's checks) and marks it invalid when there is an error.
pub(crate) fn add_problems(doc: &mut Document, found: Problems) {
    // Keyed by content, so 500,000 problems cost a hash each, not a scan of the others.
    let known: std::collections::HashSet<String> = doc.problems.iter().map(problem_key).collect();
    for p in found.into_vec() {
        if !known.contains(&problem_key(&p)) {
            doc.problems.push(p);
        }
    }
    if doc.has_errors() && matches!(doc.outcome, Outcome::Valid(_)) {
        doc.outcome = Outcome::Invalid;
    }
}

/// Checks that need a backend but no external tool: syscall names per architecture for
/// SeccompProfiles; identifiers, guardrails and inherit chains for SelinuxProfiles; the CIL
/// reader for RawSelinuxProfiles; the path grammar and raw-policy includes for AppArmorProfiles.
///
/// An invalid document is checked too, through its best-effort object (missing fields filled
/// with placeholders), so a missing required field does not hide a misspelled syscall; what
/// the backends say about the placeholders themselves is dropped.
fn backend_checks(doc: &mut Document, ctx: &RenderContext) {
    let found = match doc.object_for_checks() {
        Some(AnyObject::SeccompProfile(p)) => {
            spo_seccomp::validate::check_spec(&p.spec, spo_seccomp::syscalls::native_arch())
        }
        Some(AnyObject::SelinuxProfile(p)) => check_selinux_profile(p, ctx).0,
        Some(AnyObject::RawSelinuxProfile(p)) => check_raw_selinux_profile(p).0,
        Some(AnyObject::AppArmorProfile(p)) => spo_apparmor::check_profile(p),
        _ => return,
    };
    // On a broken document a finding about the whole spec ("does not compile") only repeats
    // the errors already listed at their fields.
    let broken = !matches!(doc.outcome, Outcome::Valid(_));
    let whole_spec = FieldPath::root().field("spec");
    let mut kept = Problems::new();
    for p in found.into_vec() {
        let about_placeholder = doc.is_placeholder(&p.path);
        let repeats_fields = broken && p.path == whole_spec;
        if !about_placeholder && !repeats_fields {
            kept.push(p);
        }
    }
    add_problems(doc, kept);
}

const SECILC: &str = "secilc";
const APPARMOR_PARSER: &str = "apparmor_parser";

/// A SELinux document to compile: its module and the modules of the profiles it inherits.
struct SelinuxCandidate {
    key: DocKey,
    module: RenderedModule,
    deps: Vec<RenderedModule>,
}

/// Compiles the valid SELinux and AppArmor documents with the real tools; adds their
/// complaints to the documents and returns what was done per document.
fn deep_checks(
    files: &mut [(String, Vec<Document>)],
    ctx: &RenderContext,
    selinux_base: Option<&Path>,
) -> BTreeMap<DocKey, DeepCheck> {
    let mut results = BTreeMap::new();
    let mut candidates = Vec::new();
    let mut apparmor = Vec::new();
    for (fi, (_, docs)) in files.iter().enumerate() {
        for (di, doc) in docs.iter().enumerate() {
            let key = (fi, di);
            let rendered = match &doc.outcome {
                Outcome::Valid(AnyObject::SelinuxProfile(p)) => render_with_dependencies(p, ctx),
                Outcome::Valid(AnyObject::RawSelinuxProfile(p)) => render_raw_selinux_profile(p).map(|m| vec![m]),
                Outcome::Valid(AnyObject::AppArmorProfile(_)) => {
                    apparmor.push(key);
                    continue;
                }
                _ => continue,
            };
            match rendered {
                Ok(mut modules) => {
                    // Dependencies first, the profile's own module last.
                    if let Some(module) = modules.pop() {
                        candidates.push(SelinuxCandidate {
                            key,
                            module,
                            deps: modules,
                        });
                    }
                }
                // The pure checks passed, so this is an inherited profile that cannot render;
                // its own document says why.
                Err(e) => {
                    results.insert(
                        key,
                        DeepCheck::skipped(SECILC, format!("an inherited profile cannot be rendered: {e}")),
                    );
                }
            }
        }
    }

    if !candidates.is_empty() {
        let secilc = match selinux_base {
            Some(dir) => Secilc::new(dir),
            None => Secilc::from_env(),
        };
        match secilc {
            Err(e) => {
                let reason = error_chain(&e);
                for c in &candidates {
                    results.insert(c.key, DeepCheck::skipped(SECILC, reason.clone()));
                }
            }
            Ok(secilc) => {
                progress(&format!(
                    "compiling {} SELinux profile(s) with secilc against the base policy (seconds per run)",
                    candidates.len()
                ));
                let mut passed = Vec::new();
                for (key, outcome) in compile_selinux(&secilc, &candidates) {
                    match outcome {
                        SelinuxOutcome::Passed => {
                            passed.push(key);
                            results.insert(key, DeepCheck::passed(SECILC));
                        }
                        SelinuxOutcome::Failed(problem) => {
                            let mut p = Problems::new();
                            p.push(problem);
                            add_problems(&mut files[key.0].1[key.1], p);
                            results.insert(key, DeepCheck::failed(SECILC));
                        }
                        SelinuxOutcome::Skipped(reason) => {
                            results.insert(key, DeepCheck::skipped(SECILC, reason));
                        }
                    }
                }
                progress("checking type attributes against the guardrails (secilc and seinfo)");
                check_attribute_guardrails(files, ctx, &secilc, &passed, &candidates);
            }
        }
    }

    if !apparmor.is_empty() {
        let validator = ParserValidator::default();
        let available = validator.available();
        let total = apparmor.len();
        for (done, key) in apparmor.into_iter().enumerate() {
            progress(&format!(
                "compiling AppArmor profile {}/{total} with apparmor_parser",
                done + 1
            ));
            let doc = &mut files[key.0].1[key.1];
            let Outcome::Valid(AnyObject::AppArmorProfile(p)) = &doc.outcome else {
                continue;
            };
            if let Err(reason) = &available {
                results.insert(key, DeepCheck::skipped(APPARMOR_PARSER, reason.clone()));
                continue;
            }
            let found = render_profile(p).and_then(|rendered| check_rendered(&validator, &rendered));
            let found = match found {
                Ok(found) => found,
                Err(e) => {
                    let mut p = Problems::new();
                    p.error(
                        FieldPath::root(),
                        format!("apparmor_parser could not check the profile: {}", error_chain(&e)),
                    );
                    p
                }
            };
            let failed = found.has_errors();
            add_problems(doc, found);
            results.insert(
                key,
                if failed {
                    DeepCheck::failed(APPARMOR_PARSER)
                } else {
                    DeepCheck::passed(APPARMOR_PARSER)
                },
            );
        }
    }
    results
}

/// What compiling one SELinux document gave.
#[derive(Debug, Clone, PartialEq)]
enum SelinuxOutcome {
    Passed,
    Failed(Problem),
    Skipped(String),
}

/// The guardrails on type attributes, for the SelinuxProfiles among `passed` (compiled): an
/// allowed attribute must hold no denied type. The attributes and their types come from one
/// compile of the base policy with every passed module (setools' seinfo reads them).
fn check_attribute_guardrails(
    files: &mut [(String, Vec<Document>)],
    ctx: &RenderContext,
    secilc: &Secilc,
    passed: &[DocKey],
    candidates: &[SelinuxCandidate],
) {
    let profiles: Vec<&SelinuxCandidate> = candidates
        .iter()
        .filter(|c| passed.contains(&c.key))
        .filter(|c| {
            matches!(
                files[c.key.0].1[c.key.1].outcome,
                Outcome::Valid(AnyObject::SelinuxProfile(_))
            )
        })
        .collect();
    if profiles.is_empty() {
        return;
    }
    let members = secilc.attribute_members(&distinct_modules(&profiles));
    for key in profiles.iter().map(|c| c.key) {
        let doc = &mut files[key.0].1[key.1];
        let Outcome::Valid(AnyObject::SelinuxProfile(p)) = &doc.outcome else {
            continue;
        };
        let mut problems = Problems::new();
        match &members {
            Ok(members) => ctx.guardrails.check_attributes(&p.spec, members, &mut problems),
            Err(e) => problems.warning(
                FieldPath::root().field("spec").field("allow"),
                format!(
                    "type attributes were not checked against the guardrails: {}",
                    error_chain(e)
                ),
            ),
        }
        add_problems(doc, problems);
    }
}

/// The modules of `candidates`, each inherited one before the profile's own, every name once
/// (the first text of it).
fn distinct_modules(candidates: &[&SelinuxCandidate]) -> Vec<RenderedModule> {
    let mut modules: Vec<RenderedModule> = Vec::new();
    let mut seen = BTreeSet::new();
    for c in candidates {
        for m in c.deps.iter().chain(std::iter::once(&c.module)) {
            if seen.insert(m.name.clone()) {
                modules.push(m.clone());
            }
        }
    }
    modules
}

/// Compiles the candidates, as few secilc runs as possible: all of them together first (their
/// modules and dependencies, each name once); when secilc names a candidate's module, that
/// candidate fails, the ones inheriting it are skipped, and the rest are compiled again. A
/// failure that names no candidate, and candidates whose names collide, are compiled one by one.
fn compile_selinux<'a>(
    validator: &dyn PolicyValidator,
    candidates: &'a [SelinuxCandidate],
) -> Vec<(DocKey, SelinuxOutcome)> {
    let mut out = Vec::new();
    let mut batch: Vec<&'a SelinuxCandidate> = Vec::new();
    let mut solo: Vec<&'a SelinuxCandidate> = Vec::new();
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for c in candidates {
        let fits = std::iter::once(&c.module)
            .chain(&c.deps)
            .all(|m| texts.get(&m.name).is_none_or(|t| *t == m.text))
            && !batch.iter().any(|b| b.module.name == c.module.name);
        if fits {
            for m in std::iter::once(&c.module).chain(&c.deps) {
                texts.insert(m.name.clone(), m.text.clone());
            }
            batch.push(c);
        } else {
            solo.push(c);
        }
    }

    while !batch.is_empty() {
        let modules = distinct_modules(&batch);
        let error = match validator.validate(&modules) {
            Ok(()) => {
                out.extend(batch.drain(..).map(|c| (c.key, SelinuxOutcome::Passed)));
                break;
            }
            Err(e) => e,
        };
        let named = match &error {
            SelinuxError::Rejected {
                location: Some(location),
                ..
            } => batch.iter().position(|c| c.module.name == location.module),
            _ => None,
        };
        let Some(i) = named else {
            solo.append(&mut batch);
            break;
        };
        let failed = batch.remove(i);
        let name = failed.module.name.clone();
        out.push((failed.key, SelinuxOutcome::Failed(rejection_problem(&error))));
        let (dependents, rest): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|c| c.deps.iter().any(|d| d.name == name));
        for c in dependents {
            out.push((
                c.key,
                SelinuxOutcome::Skipped(format!("the inherited {} does not compile", failed.module.subject())),
            ));
        }
        batch = rest;
    }

    for c in solo {
        let mut modules = c.deps.clone();
        modules.push(c.module.clone());
        let outcome = match validator.validate(&modules) {
            Ok(()) => SelinuxOutcome::Passed,
            Err(e) => match &e {
                SelinuxError::Rejected {
                    location: Some(location),
                    ..
                } if location.module != c.module.name && c.deps.iter().any(|d| d.name == location.module) => {
                    SelinuxOutcome::Skipped(format!(
                        "the inherited SelinuxProfile {} does not compile",
                        location.module
                    ))
                }
                _ => SelinuxOutcome::Failed(rejection_problem(&e)),
            },
        };
        out.push((c.key, outcome));
    }
    out
}

/// A tool's rejection as a problem at the field the failing line came from (`spec` when the
/// tool named no line of the profile).
pub(crate) fn rejection_problem(e: &SelinuxError) -> Problem {
    match e {
        SelinuxError::Rejected {
            tool,
            location,
            message,
            ..
        } => {
            let located = location.as_deref().filter(|l| l.field.is_some());
            let path = located
                .and_then(|l| l.field.clone())
                .unwrap_or_else(|| FieldPath::root().field("spec"));
            let line = located
                .and_then(|l| l.source_line)
                .map(|n| format!("line {n}: "))
                .unwrap_or_default();
            // secilc ends every failure with the same two lines; they say nothing about this one.
            let generic = |l: &str| l.starts_with("Failed to resolve AST") || l.starts_with("Failed to compile cildb");
            let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let specific: Vec<&str> = lines.iter().copied().filter(|l| !generic(l)).collect();
            let message = if specific.is_empty() { lines } else { specific };
            Problem::error(path, format!("{tool}: {line}{}", message.join("; ")))
        }
        other => Problem::error(FieldPath::root().field("spec"), error_chain(other)),
    }
}

fn document_report(file: &str, doc: Document, strict_warnings: bool) -> DocumentReport {
    let failed = doc.has_errors() || (strict_warnings && !doc.problems.is_empty());
    let (result, reason) = match &doc.outcome {
        Outcome::Skipped(why) => ("skipped", Some(why.clone())),
        _ if failed => ("error", None),
        _ => ("ok", None),
    };
    let problems = doc
        .problems
        .iter()
        .map(|p| ReportedProblem {
            line: super::input::line_of(&doc, &p.path),
            problem: p.clone(),
        })
        .collect();
    DocumentReport {
        file: file.to_owned(),
        document: doc.index,
        line: doc.line,
        api_version: doc.api_version,
        kind: doc.kind,
        name: doc.name,
        result,
        reason,
        problems,
        deep_check: None,
    }
}

fn print_text(out: &mut impl Write, report: &Report, quiet: bool, deep: bool) -> Result<()> {
    for e in &report.file_errors {
        writeln!(out, "{}: error: {}", e.file, e.error)?;
    }
    for d in &report.documents {
        let at = format!("{}:{} [doc {}] {}", clean(&d.file), d.line, d.document, doc_what(d));
        match d.result {
            "skipped" => {
                if !quiet {
                    writeln!(out, "{at}: skipped ({})", d.reason.as_deref().unwrap_or_default())?;
                }
            }
            "ok" if d.problems.is_empty() => {
                if !quiet {
                    writeln!(out, "{at}: ok{}", deep_note(d.deep_check.as_ref()))?;
                } else if let Some(DeepCheck {
                    result: "skipped",
                    reason: Some(why),
                    ..
                }) = &d.deep_check
                {
                    // Quiet still says which documents were not compiled, and why.
                    writeln!(out, "{at}: skipped deep check: {why}")?;
                }
            }
            result => {
                if result == "ok" {
                    writeln!(out, "{at}: ok, with warnings{}", deep_note(d.deep_check.as_ref()))?;
                } else if let Some(DeepCheck {
                    result: "skipped",
                    reason: Some(why),
                    ..
                }) = &d.deep_check
                {
                    writeln!(out, "{at}: skipped deep check: {why}")?;
                }
                for f in fold(d.problems.iter().map(|r| &r.problem)) {
                    if quiet && !f.first.is_error() {
                        continue;
                    }
                    writeln!(out, "{}", problem_line(&at_line(d, &f), &f))?;
                }
            }
        }
    }
    let deep_summary = if deep {
        let count = |result: &str| {
            report
                .documents
                .iter()
                .filter(|d| d.deep_check.as_ref().is_some_and(|c| c.result == result))
                .count()
        };
        format!(
            "; deep checks: {} passed, {} failed, {} skipped",
            count("passed"),
            count("failed"),
            count("skipped")
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "{} documents: {} ok, {} invalid, {} skipped{}{deep_summary}",
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

/// Says what a long step is doing, on a terminal only (a pipe or a file gets nothing).
fn progress(what: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("spoc: {what}...");
    }
}

/// `Kind/name` of a report, escaped for the terminal.
fn doc_what(d: &DocumentReport) -> String {
    format!(
        "{}/{}",
        clean(d.kind.as_deref().unwrap_or("<no kind>")),
        clean(d.name.as_deref().unwrap_or("<no name>"))
    )
}

/// The location of a problem: its field's line.
fn at_line(d: &DocumentReport, f: &FoldedProblem<'_>) -> String {
    let line = d.problems.get(f.first_index).map_or(d.line, |r| r.line);
    format!("{}:{line} [doc {}] {}", clean(&d.file), d.document, doc_what(d))
}

/// ` (compiled by secilc)` or ` (skipped deep check: <why>)` after `ok`.
fn deep_note(check: Option<&DeepCheck>) -> String {
    match check {
        Some(DeepCheck {
            result: "passed", tool, ..
        }) => format!(" (compiled by {tool})"),
        Some(DeepCheck {
            result: "skipped",
            reason,
            ..
        }) => format!(
            " (skipped deep check: {})",
            reason.as_deref().unwrap_or("no reason given")
        ),
        _ => String::new(),
    }
}

/// The inputs, for a message.
fn describe_inputs(files: &[PathBuf]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| clean(&f.display().to_string()).into_owned())
        .collect();
    names.join(", ")
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use spo_selinux::error::Location;
    use spo_selinux::render::{LineOrigin, ModuleOrigin};

    use super::*;

    /// A validator that rejects any set holding a module whose text says `BAD`, naming that
    /// module (or nothing, for `UNLOCATED`), and records every run.
    #[derive(Default)]
    struct FakeSecilc {
        runs: Mutex<Vec<Vec<String>>>,
    }

    impl PolicyValidator for FakeSecilc {
        fn validate(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError> {
            self.runs
                .lock()
                .expect("lock")
                .push(modules.iter().map(|m| m.name.clone()).collect());
            for m in modules {
                if m.text.contains("UNLOCATED") {
                    return Err(SelinuxError::Rejected {
                        tool: "secilc",
                        subject: "policy".into(),
                        location: None,
                        message: "Failed to compile cildb: -2".into(),
                    });
                }
                if m.text.contains("BAD") {
                    return Err(SelinuxError::Rejected {
                        tool: "secilc",
                        subject: m.subject(),
                        location: Some(Box::new(Location {
                            module: m.name.clone(),
                            line: 2,
                            field: Some(FieldPath::root().field("spec").field("allow").key("x_t")),
                            source_line: None,
                        })),
                        message: format!(
                            "Failed to resolve allow statement at {}.cil:2\nFailed to resolve AST",
                            m.name
                        ),
                    });
                }
            }
            Ok(())
        }
    }

    fn module(name: &str, text: &str) -> RenderedModule {
        RenderedModule {
            name: name.into(),
            origin: ModuleOrigin::Selinux,
            text: text.into(),
            lines: vec![LineOrigin {
                line: 2,
                field: FieldPath::root().field("spec"),
                source_line: None,
            }],
            requires: Vec::new(),
        }
    }

    fn candidate(i: usize, name: &str, text: &str, deps: &[RenderedModule]) -> SelinuxCandidate {
        SelinuxCandidate {
            key: (0, i),
            module: module(name, text),
            deps: deps.to_vec(),
        }
    }

    #[test]
    fn one_run_when_everything_compiles() {
        let fake = FakeSecilc::default();
        let base = module("base", "ok");
        let out = compile_selinux(
            &fake,
            &[
                candidate(0, "base", "ok", &[]),
                candidate(1, "child", "ok", std::slice::from_ref(&base)),
                candidate(2, "other", "ok", &[]),
            ],
        );
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(_, o)| *o == SelinuxOutcome::Passed), "{out:?}");
        let runs = fake.runs.lock().expect("lock");
        // Each module once, dependencies before the profiles that inherit them.
        assert_eq!(*runs, vec![vec!["base".to_owned(), "child".into(), "other".into()]]);
    }

    #[test]
    fn a_named_failure_removes_the_module_and_its_dependents_then_retries() {
        let fake = FakeSecilc::default();
        let bad = module("bad", "BAD");
        let out: BTreeMap<DocKey, SelinuxOutcome> = compile_selinux(
            &fake,
            &[
                candidate(0, "bad", "BAD", &[]),
                candidate(1, "child", "ok", std::slice::from_ref(&bad)),
                candidate(2, "fine", "ok", &[]),
            ],
        )
        .into_iter()
        .collect();
        match &out[&(0, 0)] {
            SelinuxOutcome::Failed(p) => {
                assert_eq!(p.path.as_str(), "spec.allow[x_t]");
                assert_eq!(p.message, "secilc: Failed to resolve allow statement at bad.cil:2");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            out[&(0, 1)],
            SelinuxOutcome::Skipped("the inherited SelinuxProfile bad does not compile".into())
        );
        assert_eq!(out[&(0, 2)], SelinuxOutcome::Passed);
        assert_eq!(fake.runs.lock().expect("lock").len(), 2);
    }

    #[test]
    fn unlocated_failures_and_name_collisions_compile_one_by_one() {
        let fake = FakeSecilc::default();
        let out: BTreeMap<DocKey, SelinuxOutcome> = compile_selinux(
            &fake,
            &[
                candidate(0, "a", "ok", &[]),
                candidate(1, "a", "ok, but another document of the same name", &[]),
                candidate(2, "broken", "UNLOCATED", &[]),
            ],
        )
        .into_iter()
        .collect();
        assert_eq!(out[&(0, 0)], SelinuxOutcome::Passed);
        assert_eq!(out[&(0, 1)], SelinuxOutcome::Passed);
        match &out[&(0, 2)] {
            SelinuxOutcome::Failed(p) => {
                assert_eq!(p.path.as_str(), "spec");
                assert_eq!(p.message, "secilc: Failed to compile cildb: -2");
            }
            other => panic!("{other:?}"),
        }
        let runs = fake.runs.lock().expect("lock");
        // The batch (a, broken) fails without a location; then a, a (the duplicate) and broken alone.
        assert_eq!(runs.len(), 4, "{runs:?}");
        assert!(runs[1..].iter().all(|r| r.len() == 1), "{runs:?}");
    }

    #[test]
    fn raw_policy_lines_are_named_in_the_message() {
        let e = SelinuxError::Rejected {
            tool: "secilc",
            subject: "RawSelinuxProfile r".into(),
            location: Some(Box::new(Location {
                module: "r".into(),
                line: 4,
                field: Some(FieldPath::root().field("spec").field("policy")),
                source_line: Some(3),
            })),
            message: "Failed to resolve permission nope\nFailed to resolve AST\nFailed to compile cildb: -2".into(),
        };
        let p = rejection_problem(&e);
        assert_eq!(p.path.as_str(), "spec.policy");
        assert_eq!(p.message, "secilc: line 3: Failed to resolve permission nope");
        assert!(p.is_error());
    }
}
