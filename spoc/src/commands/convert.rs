//! `spoc convert PROFILE`: a profile manifest to what its node consumes. SeccompProfile -> the
//! runtime JSON a container runtime reads (`--to-crd`: the other way round); SelinuxProfile
//! and RawSelinuxProfile -> the CIL policy module; AppArmorProfile -> the profile text.

use std::path::PathBuf;
use std::process::ExitCode;

use super::input::{is_runtime_json, print_document_problems, read_input};
use super::output::{Warnings, clean, emit};
use super::validate::{SelinuxInputs, selinux_inputs};
use anyhow::{Context, Result, bail};
use clap::Args;
use spo_model::contract::error_chain;
use spo_model::document::decode_source;
use spo_model::validate::is_dns_subdomain;
use spo_model::{AnyObject, Document, Outcome, Problems, SeccompProfile, parse_source};
use spo_seccomp::oci::{from_runtime, parse_runtime_json, try_to_runtime};
use spo_selinux::{SelinuxError, render_raw_selinux_profile, render_selinux_profile};

pub const EXAMPLES: &str = "\
Examples:
  spoc convert profile.yaml > profile.json        SeccompProfile to runtime JSON
  spoc convert profile.yaml -o demo.json          write a file atomically
  spoc convert --to-crd docker-default.json       runtime JSON to SeccompProfile docker-default
  kubectl get sp demo -o yaml | spoc convert -    read standard input
  spoc convert selinux.yaml --name nginx-secure   SelinuxProfile to its CIL module
  spoc convert raw.yaml -o log-shipper.cil        RawSelinuxProfile, wrapped in its block
  spoc convert app.yaml --with base.yaml          inherited SelinuxProfiles from base.yaml
  spoc convert apparmor.yaml --name web-frontend  AppArmorProfile to profile text

What each kind becomes: SeccompProfile -> OCI runtime JSON (what the node writes to
operator/<name>.json); SelinuxProfile -> a CIL module `(block <name> ...)` (what semodule
installs); RawSelinuxProfile -> its policy wrapped in `(block <name> ...)`, after checking that
it cannot leave that block; AppArmorProfile -> profile text (what apparmor_parser loads).

PROFILE must hold one profile of those kinds, or --name picks one. A SelinuxProfile inheriting
other SelinuxProfiles (spec.inherit with kind SelinuxProfile) needs them: they are looked up
among the other documents of PROFILE and of every --with FILE. Only the profile's own module is
written; the inherited profiles' modules must be installed too (convert each of them). A
SecurityProfilesOperatorDaemon among those documents sets the SELinux guardrails from its
spec.selinux.options, as the operator does; otherwise the built-in ones apply. Nothing external
runs: `spoc validate --deep` compiles the result with secilc or apparmor_parser.

Base profiles (spec.baseProfileName) of SeccompProfiles are not resolved: the output holds only
the profile's own rules (spoc merge resolves them). The runtime field defaultErrnoRet has no
SeccompProfile equivalent, so --to-crd accepts it only when it is 1 (EPERM, what runtimes use
without it).

OCI runtime seccomp JSON (Docker's, podman's and containerd's profiles, a node file, a runc
config.json) is recognised by content and becomes a SeccompProfile manifest, as --to-crd asks
explicitly. Every problem is printed with its field path before spoc gives up.";

/// The kinds convert turns into node artifacts.
const CONVERTIBLE: &[&str] = &[
    "SeccompProfile",
    "SelinuxProfile",
    "RawSelinuxProfile",
    "AppArmorProfile",
];

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A manifest holding the profile (YAML or JSON; SeccompProfile, SelinuxProfile,
    /// RawSelinuxProfile or AppArmorProfile), or runtime JSON with --to-crd; `-` reads
    /// standard input.
    #[arg(value_name = "PROFILE")]
    profile: PathBuf,
    /// Write to FILE (replaced atomically: readers see the old or the new file, never a part)
    /// instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Read OCI runtime seccomp JSON and write a SeccompProfile manifest (YAML).
    #[arg(long)]
    to_crd: bool,
    /// The profile to convert when PROFILE holds several. With --to-crd: metadata.name of the
    /// SeccompProfile written [default: PROFILE's file name without extension, made a DNS name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// More manifests to look up the SelinuxProfiles the profile inherits (and a
    /// SecurityProfilesOperatorDaemon for the guardrails); repeatable.
    #[arg(long = "with", value_name = "FILE", conflicts_with = "to_crd")]
    with: Vec<PathBuf>,
}

pub fn run(args: &ConvertArgs) -> Result<ExitCode> {
    let display = args.profile.display().to_string();
    let bytes = read_input(&args.profile)?;
    let text = decode_source(&display, &bytes)?;
    // Runtime JSON is told from a manifest by content; --to-crd only insists on it.
    let converted = if args.to_crd || is_runtime_json(text) {
        if !args.with.is_empty() {
            bail!(
                "--with applies to SELinux profiles; {} holds OCI runtime seccomp JSON",
                clean(&display)
            );
        }
        runtime_to_manifest(args, &display, text)?
    } else {
        convert_manifest(args, &display, text)?
    };
    let Some(out) = converted else {
        bail!(
            "{}: nothing was converted (the problems are listed above)",
            clean(&display)
        );
    };
    emit(args.output.as_deref(), out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn is_convertible(d: &Document) -> bool {
    d.kind.as_deref().is_some_and(|k| CONVERTIBLE.contains(&k))
        || matches!(
            d.outcome,
            Outcome::Valid(
                AnyObject::SeccompProfile(_)
                    | AnyObject::SelinuxProfile(_)
                    | AnyObject::RawSelinuxProfile(_)
                    | AnyObject::AppArmorProfile(_)
            )
        )
}

/// `SelinuxProfile/nginx`, for messages.
fn what(d: &Document) -> String {
    format!(
        "{}/{}",
        d.kind.as_deref().unwrap_or("<no kind>"),
        d.name.as_deref().unwrap_or("<no name>")
    )
}

/// The converted text, or `None` after printing why the profile cannot be converted.
fn convert_manifest(args: &ConvertArgs, display: &str, text: &str) -> Result<Option<String>> {
    let docs = parse_source(display, text)?;
    let candidates: Vec<usize> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| is_convertible(d) && (args.name.is_none() || d.name == args.name))
        .map(|(i, _)| i)
        .collect();
    let index = match candidates.as_slice() {
        [one] => *one,
        [] => {
            // A document too broken to have a kind may be the profile: show what is wrong.
            let broken: Vec<&Document> = docs.iter().filter(|d| d.has_errors()).collect();
            if args.name.is_none() && !broken.is_empty() {
                for d in broken {
                    print_problems(display, d);
                }
                return Ok(None);
            }
            match &args.name {
                Some(name) => bail!(
                    "{display} holds no profile named {name:?} (convert takes a {})",
                    CONVERTIBLE.join(", ")
                ),
                None => bail!(
                    "{display} holds no profile to convert; convert takes a file with one {}",
                    CONVERTIBLE.join(", ")
                ),
            }
        }
        many => {
            let listed: Vec<String> = many
                .iter()
                .map(|&i| format!("{} at line {}", what(&docs[i]), docs[i].line))
                .collect();
            bail!(
                "{display} holds {} profiles ({}); choose one with --name",
                many.len(),
                listed.join(", ")
            );
        }
    };
    let doc = &docs[index];
    print_problems(display, doc);
    let at = format!("{display}:{} [doc {}] {}", doc.line, doc.index, what(doc));
    match &doc.outcome {
        Outcome::Valid(AnyObject::SeccompProfile(profile)) => seccomp_to_runtime(display, doc, profile),
        Outcome::Valid(AnyObject::SelinuxProfile(profile)) => {
            let inputs = lookup_inputs(args, display, &docs, index)?;
            match render_selinux_profile(profile, &inputs.ctx) {
                Ok(module) => {
                    for dep in &module.requires {
                        eprintln!(
                            "{at}: note: it inherits SelinuxProfile {dep}, whose module must be installed too \
                             (spoc convert FILE --name {dep})"
                        );
                    }
                    Ok(Some(module.text))
                }
                Err(e) => {
                    print_selinux_error(&at, doc, &e);
                    Ok(None)
                }
            }
        }
        Outcome::Valid(AnyObject::RawSelinuxProfile(profile)) => match render_raw_selinux_profile(profile) {
            Ok(module) => Ok(Some(module.text)),
            Err(e) => {
                print_selinux_error(&at, doc, &e);
                Ok(None)
            }
        },
        Outcome::Valid(AnyObject::AppArmorProfile(profile)) => match spo_apparmor::render_profile(profile) {
            Ok(rendered) => Ok(Some(rendered.text)),
            Err(e) => {
                match e.problems() {
                    Some(problems) => print_new_problems(&at, doc, problems),
                    None => eprintln!("{at}: error: {}", error_chain(&e)),
                }
                Ok(None)
            }
        },
        _ => Ok(None),
    }
}

/// The SelinuxProfiles (and a SPOD) of PROFILE's other documents and of the --with files.
fn lookup_inputs(args: &ConvertArgs, display: &str, docs: &[Document], index: usize) -> Result<SelinuxInputs> {
    let mut extra: Vec<(String, Document)> = Vec::new();
    for path in &args.with {
        let with_display = path.display().to_string();
        let bytes = read_input(path)?;
        let text = decode_source(&with_display, &bytes)?;
        for d in parse_source(&with_display, text)? {
            if d.kind.as_deref() == Some("SelinuxProfile") && d.has_errors() {
                eprintln!(
                    "{with_display}:{} [doc {}] {}: warning: not used to resolve inherit: the document is invalid \
                     (spoc validate {with_display} shows why)",
                    d.line,
                    d.index,
                    what(&d)
                );
            }
            extra.push((with_display.clone(), d));
        }
    }
    let all = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, d)| d)
        .chain(extra.iter().map(|(_, d)| d));
    let inputs = selinux_inputs(all);
    for (name, n) in &inputs.duplicates {
        eprintln!(
            "{display}: warning: {n} SelinuxProfiles of the inputs are named {name:?}; inherit resolves to the first read"
        );
    }
    if inputs.spods > 1 {
        eprintln!(
            "{display}: warning: {} SecurityProfilesOperatorDaemons among the inputs; the first one's selinux.options set the guardrails",
            inputs.spods
        );
    }
    Ok(inputs)
}

/// Prints a SELinux render error: its problems with their field paths (the ones the document's
/// parse already printed are left out), or the error itself.
fn print_selinux_error(at: &str, doc: &Document, e: &SelinuxError) {
    match e {
        SelinuxError::Invalid { problems, .. } => print_new_problems(at, doc, problems),
        other => eprintln!("{at}: error: {}", error_chain(other)),
    }
}

fn print_new_problems(at: &str, doc: &Document, problems: &Problems) {
    let known: std::collections::HashSet<String> = doc.problems.iter().map(super::output::problem_key).collect();
    let fresh = problems
        .iter()
        .filter(|p| !known.contains(&super::output::problem_key(p)));
    super::output::print_problems(fresh, Warnings::Show, |_| at.to_owned());
}

/// The runtime JSON (pretty, with a trailing newline), or `None` after printing why the
/// SeccompProfile cannot be converted.
fn seccomp_to_runtime(display: &str, doc: &Document, profile: &SeccompProfile) -> Result<Option<String>> {
    if let Some(base) = &profile.spec.base_profile_name {
        eprintln!(
            "{display}:{} [doc {}] SeccompProfile/{}: warning: spec.baseProfileName: {base:?} is not resolved by convert \
             (the output holds only this profile's own rules)",
            doc.line,
            doc.index,
            profile.metadata.name.as_deref().unwrap_or("<no name>")
        );
    }
    let runtime = match try_to_runtime(&profile.spec) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{display}: error: {}", error_chain(&e));
            return Ok(None);
        }
    };
    let mut out = serde_json::to_string_pretty(&runtime).context("rendering runtime JSON")?;
    out.push('\n');
    Ok(Some(out))
}

/// The SeccompProfile manifest (YAML), or `None` after printing why the runtime JSON cannot be
/// converted.
fn runtime_to_manifest(args: &ConvertArgs, display: &str, text: &str) -> Result<Option<String>> {
    let name = match &args.name {
        Some(name) if is_dns_subdomain(name) => name.clone(),
        Some(name) => bail!(
            "--name {name:?} is not a valid object name: use lower-case letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        ),
        None => match super::input::name_from_path(&args.profile) {
            Some(name) => name,
            None => bail!("cannot derive a profile name from {display:?}; pass --name NAME"),
        },
    };
    let spec = match parse_runtime_json(text).and_then(|rt| from_runtime(&rt)) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{display}: error: {}", error_chain(&e));
            return Ok(None);
        }
    };
    let profile = SeccompProfile::new(&name, spec);
    let problems = profile.validate();
    print_problem_list(&format!("{display}: SeccompProfile/{name}"), &problems);
    if problems.has_errors() {
        return Ok(None);
    }
    let yaml = spo_model::yaml::to_string(&profile).context("rendering the SeccompProfile as YAML")?;
    Ok(Some(yaml))
}

/// Prints a document's problems to standard error, each at its field's line.
fn print_problems(display: &str, doc: &Document) {
    print_document_problems(display, doc, doc.problems.iter(), Warnings::Show);
}

fn print_problem_list(at: &str, problems: &Problems) {
    super::output::print_problems(problems.iter(), Warnings::Show, |_| at.to_owned());
}
