//! `spoc merge FILE...`: the union (or intersection) of SeccompProfiles, as one SeccompProfile.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::input::read_input;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use spo_model::document::decode_source;
use spo_model::{AnyObject, Outcome, SeccompProfile, SeccompProfileSpec, parse_source};
use spo_seccomp::merge::{behaviour_changes, intersect_all, union_all};
use spo_seccomp::resolve::{MemoryResolver, ResolveError, resolve_profile};

pub const EXAMPLES: &str = "\
Examples:
  spoc merge app.yaml runtime-default.yaml            union, as baseProfileName does
  spoc merge app.yaml baseline.yaml --intersect       only what both allow (node baselines)
  spoc merge recorded-*.yaml --name app -o app.yaml   combine recordings into one profile
  spoc merge app.yaml new-recording.yaml --check      does the recording add anything?

Every SeccompProfile of every file is an input, in order; the first one's defaultAction,
architectures, flags and name are kept by a union. A baseProfileName is resolved among the
inputs first, so give the base profile's file too.

Exit status: 0 when merged (with --check: the result behaves exactly like the first input),
1 when an input document or the result is invalid, or --check finds changes (listed on standard
output as `openat: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW`), 2 when a file cannot be read or the
profiles cannot be merged (missing or cyclic base profiles, architectures with nothing in
common).";

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// SeccompProfile manifests (YAML or JSON, several documents per file allowed); `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write the result to FILE (replaced atomically) instead of standard output.
    #[arg(long, short, value_name = "FILE", conflicts_with = "check")]
    output: Option<PathBuf>,
    /// Intersect instead of union: the result lets a syscall run only if every input does.
    #[arg(long)]
    intersect: bool,
    /// Write nothing; exit 0 if the result behaves exactly like the first input (the others
    /// add and remove nothing), else list the syscalls whose action changes and exit 1.
    #[arg(long)]
    check: bool,
    /// metadata.name of the result (default: the first input's name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// One SeccompProfile read from the inputs.
struct Input {
    name: String,
    spec: SeccompProfileSpec,
    /// `file:line [doc N]`, for messages.
    at: String,
}

pub fn run(args: &MergeArgs) -> Result<ExitCode> {
    let Some(inputs) = read_profiles(&args.files)? else {
        eprintln!("spoc merge: nothing merged; correct the invalid documents above");
        return Ok(ExitCode::from(1));
    };
    let Some(first) = inputs.first() else {
        bail!(
            "no SeccompProfile in {}; spoc merge only merges seccomp profiles",
            args.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };

    // Base profiles are looked up among the inputs; with duplicate names the first counts.
    let mut resolver = MemoryResolver::new();
    for input in &inputs {
        if resolver.0.contains_key(&input.name) {
            eprintln!(
                "{}: warning: another input is also called {:?}; base profiles named so resolve to the first",
                input.at, input.name
            );
        } else {
            resolver.insert(input.name.clone(), input.spec.clone());
        }
    }
    let mut specs = Vec::with_capacity(inputs.len());
    for input in &inputs {
        match resolve_profile(&input.name, &input.spec, &resolver) {
            Ok(resolved) => specs.push(resolved.spec),
            Err(ResolveError::Missing { reference, chain }) => bail!(
                "{}: base profile {reference:?} of SeccompProfile {:?} (chain {} -> {reference}) is not among \
                 the inputs; give the file that holds it too",
                input.at,
                input.name,
                chain.join(" -> ")
            ),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "{}: resolving the base profiles of SeccompProfile {:?}",
                        input.at, input.name
                    )
                });
            }
        }
    }

    let merged = if args.intersect {
        intersect_all(&specs).context("intersecting the profiles")?
    } else {
        union_all(&specs).ok_or_else(|| anyhow!("no profiles to merge"))?
    };

    if args.check {
        let changes = behaviour_changes(&specs[0], &merged);
        if changes.is_empty() {
            eprintln!(
                "{}: SeccompProfile {:?} behaves the same after the merge",
                first.at, first.name
            );
            return Ok(ExitCode::SUCCESS);
        }
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for change in &changes {
            writeln!(out, "{change}").context("writing to standard output")?;
        }
        eprintln!(
            "{}: merging changes {} of SeccompProfile {:?}",
            first.at,
            plural(changes.len(), "behaviour", "behaviours"),
            first.name
        );
        return Ok(ExitCode::from(1));
    }

    let name = args.name.clone().unwrap_or_else(|| first.name.clone());
    let profile = SeccompProfile::new(&name, merged);
    let problems = profile.validate();
    if problems.has_errors() {
        for p in problems.errors() {
            eprintln!("merged SeccompProfile {name:?}: error: {p}");
        }
        eprintln!("spoc merge: the merged profile is invalid; nothing written");
        return Ok(ExitCode::from(1));
    }
    let yaml = serde_norway::to_string(&profile).context("rendering the merged profile as YAML")?;
    match &args.output {
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            out.write_all(yaml.as_bytes())
                .and_then(|()| out.flush())
                .context("writing to standard output")?;
        }
        Some(path) => super::input::write_output(path, yaml.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Every SeccompProfile of `files`, in order; `None` when some document is invalid (its
/// problems are printed). Documents of other kinds are skipped with a note.
fn read_profiles(files: &[PathBuf]) -> Result<Option<Vec<Input>>> {
    let mut inputs = Vec::new();
    let mut invalid = false;
    for path in files {
        let display = path.display().to_string();
        let bytes = read_input(path)?;
        let text = decode_source(&display, &bytes)?;
        for doc in parse_source(&display, text)? {
            let at = format!("{display}:{} [doc {}]", doc.line, doc.index);
            match doc.outcome {
                Outcome::Valid(AnyObject::SeccompProfile(profile)) => {
                    let profile = *profile;
                    inputs.push(Input {
                        name: profile.metadata.name.unwrap_or_default(),
                        spec: profile.spec,
                        at,
                    });
                }
                Outcome::Valid(other) => {
                    eprintln!("{at}: skipped: {} is not a SeccompProfile", other.kind());
                }
                Outcome::Skipped(why) => eprintln!("{at}: skipped: {why}"),
                Outcome::Invalid => {
                    invalid = true;
                    for p in doc.problems.iter() {
                        if p.is_error() {
                            eprintln!("{at}: error: {p}");
                        } else {
                            eprintln!("{at}: {p}");
                        }
                    }
                }
            }
        }
    }
    Ok((!invalid).then_some(inputs))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
