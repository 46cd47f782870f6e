//! `spoc merge FILE...`: the union (or, for seccomp, the intersection) of profiles of one kind,
//! as one profile: SeccompProfiles, SelinuxProfiles or AppArmorProfiles.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use super::input::{print_document_problems, read_input};
use super::output::{Format, Warnings, clean, emit, exit};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;
use spo_model::apparmor::{AppArmorMode, AppArmorProfile};
use spo_model::contract::error_chain;
use spo_model::document::decode_source;
use spo_model::selinux::SelinuxProfile;
use spo_model::{AnyObject, Outcome, Problems, SeccompProfile, SeccompProfileSpec, parse_source};
use spo_seccomp::merge::{behaviour_changes, intersect_all, union_all};
use spo_seccomp::resolve::{MemoryResolver, ResolveError, resolve_profile};
use spo_selinux::guardrails::Guardrails;
use spo_selinux::merge::FlatProfile;
use spo_selinux::render::check_selinux_profile;
use spo_selinux::{MemoryLookup, RenderContext};

pub const EXAMPLES: &str = "\
Examples:
  spoc merge app.yaml runtime-default.yaml            union, as baseProfileName does
  spoc merge app.yaml baseline.yaml --intersect       only what both allow (node baselines)
  spoc merge recorded-*.yaml --name app -o app.yaml   combine recordings into one profile
  spoc merge app.yaml new-recording.yaml --check      does the recording add anything?
  spoc merge selinux-a.yaml selinux-b.yaml            SelinuxProfiles: union of allow rules
  spoc merge web.yaml web-recorded.yaml --name web    AppArmorProfiles: union of every list

Every profile of every file is an input, in order; all must be of one kind (SeccompProfile,
SelinuxProfile or AppArmorProfile), and other kinds of documents are skipped with a note.
The result is named after the first input unless --name is given.

SeccompProfiles: the first one's defaultAction, architectures and flags are kept by a union;
each syscall gets the less restrictive action. A baseProfileName is resolved among the inputs
first, so give the base profile's file too.

SelinuxProfiles: inherited SelinuxProfiles (spec.inherit with kind SelinuxProfile) are resolved
among the inputs first, the way baseProfileName is: their rules are written into the result,
so give their files too (`@self` keeps meaning the result's own type). The result inherits the
union of the System templates, in the order first seen, and allows the union of every
permission of every type and class. Its mode is Permissive when any input is (or inherits a
profile that is): a union allows what any input allows, and a permissive input allows
everything. RawSelinuxProfiles are CIL text and cannot be merged.

AppArmorProfiles: the union of every path list, network flag and capability; Complain when any
input is; a deniedPaths entry stays only when no other input allows that path. Profiles with a
raw policy cannot be merged.

OCI runtime seccomp JSON (Docker's, podman's and containerd's profiles, a node file) is an
input like a SeccompProfile named after its file.

--check lists the changes on standard output, as `openat: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW` for
seccomp and `+ allow bin_t file read` for the other kinds, and exits 1 when there are any;
--check --format json prints {\"kind\", \"name\", \"unchanged\": bool, \"changes\": [...]}.
Invalid inputs, profiles that cannot be merged (different kinds, missing or cyclic base or
inherited profiles, architectures with nothing in common) are spoc's failures (125).";

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Profile manifests (YAML or JSON, several documents per file allowed); `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write the result to FILE (replaced atomically) instead of standard output.
    #[arg(long, short, value_name = "FILE", conflicts_with = "check")]
    output: Option<PathBuf>,
    /// Intersect instead of union (SeccompProfiles only): the result lets a syscall run only if
    /// every input does.
    #[arg(long)]
    intersect: bool,
    /// Write nothing; exit 0 if the result behaves exactly like the first input (the others
    /// add and remove nothing), else list what changes and exit 1.
    #[arg(long)]
    check: bool,
    /// Output format of --check's answer (text: one change a line).
    #[arg(long, value_enum, default_value_t = Format::Text, requires = "check")]
    format: Format,
    /// metadata.name of the result (default: the first input's name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// One profile read from the inputs.
struct Input<T> {
    name: String,
    profile: T,
    /// `file:line [doc N]`, for messages.
    at: String,
}

/// The profiles of the inputs, all of one kind.
enum Inputs {
    Seccomp(Vec<Input<SeccompProfileSpec>>),
    Selinux(Vec<Input<SelinuxProfile>>),
    AppArmor(Vec<Input<AppArmorProfile>>),
}

pub fn run(args: &MergeArgs) -> Result<ExitCode> {
    let Some(inputs) = read_profiles(&args.files)? else {
        bail!("nothing merged; correct the invalid documents above");
    };
    if args.intersect && !matches!(inputs, Inputs::Seccomp(_)) {
        bail!("--intersect merges SeccompProfiles only; SELinux and AppArmor profiles are merged by union");
    }
    match inputs {
        Inputs::Seccomp(inputs) => merge_seccomp(args, inputs),
        Inputs::Selinux(inputs) => merge_selinux(args, inputs),
        Inputs::AppArmor(inputs) => merge_apparmor(args, inputs),
    }
}

fn merge_seccomp(args: &MergeArgs, inputs: Vec<Input<SeccompProfileSpec>>) -> Result<ExitCode> {
    let Some(first) = inputs.first() else {
        bail!("no profiles to merge");
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
            resolver.insert(input.name.clone(), input.profile.clone());
        }
    }
    let mut specs = Vec::with_capacity(inputs.len());
    for input in &inputs {
        match resolve_profile(&input.name, &input.profile, &resolver) {
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
        let changes: Vec<String> = behaviour_changes(&specs[0], &merged)
            .iter()
            .map(ToString::to_string)
            .collect();
        return report_check(args, &first.at, "SeccompProfile", &first.name, &changes);
    }

    let name = args.name.clone().unwrap_or_else(|| first.name.clone());
    let profile = SeccompProfile::new(&name, merged);
    let problems = profile.validate();
    if problems.has_errors() {
        return invalid_result("SeccompProfile", &name, &problems);
    }
    let yaml = spo_model::yaml::to_string(&profile).context("rendering the merged profile as YAML")?;
    write_result(args, &yaml)
}

fn merge_selinux(args: &MergeArgs, inputs: Vec<Input<SelinuxProfile>>) -> Result<ExitCode> {
    let Some(first) = inputs.first() else {
        bail!("no profiles to merge");
    };
    let mut profiles = MemoryLookup::new();
    let mut seen = BTreeSet::new();
    for input in &inputs {
        if seen.insert(input.name.clone()) {
            profiles.insert(input.profile.clone());
        } else {
            eprintln!(
                "{}: warning: another input is also called {:?}; inherited profiles named so resolve to the first",
                input.at, input.name
            );
        }
    }
    let mut flats = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let mut chain = vec![input.name.clone()];
        match spo_selinux::merge::flatten(&input.profile.spec, &profiles, &mut chain) {
            Ok(flat) => flats.push(flat),
            Err(e) => {
                let hint = if e.contains("is not among") {
                    "; give the file that holds it too"
                } else {
                    ""
                };
                bail!("{}: SelinuxProfile {:?}: spec.inherit: {e}{hint}", input.at, input.name)
            }
        }
    }
    let mut merged = FlatProfile::default();
    for flat in &flats {
        merged.absorb(flat);
    }

    if args.check {
        let before = flats[0].facts();
        let after = merged.facts();
        let mut changes: Vec<String> = after.difference(&before).map(|f| format!("+ {f}")).collect();
        changes.extend(before.difference(&after).map(|f| format!("- {f}")));
        return report_check(args, &first.at, "SelinuxProfile", &first.name, &changes);
    }

    let name = args.name.clone().unwrap_or_else(|| first.name.clone());
    let profile = SelinuxProfile::new(&name, merged.into_spec(first.profile.spec.effective_state()));
    // No SelinuxProfile is inherited any more, so an empty lookup serves; the guardrails are
    // the built-in ones (an operator's SPOD may relax them; validate the result against it).
    let ctx = RenderContext {
        guardrails: Guardrails::default(),
        ..RenderContext::default()
    };
    let (problems, _) = check_selinux_profile(&profile, &ctx);
    if problems.has_errors() {
        return invalid_result("SelinuxProfile", &name, &problems);
    }
    let yaml = spo_model::yaml::to_string(&profile).context("rendering the merged profile as YAML")?;
    write_result(args, &yaml)
}

/// One line per thing an AppArmorProfile grants or denies, for --check.
fn apparmor_facts(p: &AppArmorProfile) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if p.spec.effective_mode() == AppArmorMode::Complain {
        out.insert("mode Complain".to_owned());
    }
    let Some(abs) = &p.spec.abstract_ else {
        return out;
    };
    let mut list = |field: &str, values: &Option<Vec<String>>| {
        out.extend(values.iter().flatten().map(|v| format!("{field} {v}")));
    };
    if let Some(e) = &abs.executable {
        list("allowedExecutables", &e.allowed_executables);
        list("allowedLibraries", &e.allowed_libraries);
    }
    if let Some(f) = &abs.filesystem {
        list("readOnlyPaths", &f.read_only_paths);
        list("writeOnlyPaths", &f.write_only_paths);
        list("readWritePaths", &f.read_write_paths);
        list("deniedPaths", &f.denied_paths);
    }
    if let Some(c) = &abs.capability {
        list("allowedCapabilities", &c.allowed_capabilities);
    }
    if let Some(n) = &abs.network {
        let protocols = n.allowed_protocols.clone().unwrap_or_default();
        for (on, what) in [
            (n.allow_raw, "network raw"),
            (protocols.allow_tcp, "network tcp"),
            (protocols.allow_udp, "network udp"),
        ] {
            if on == Some(true) {
                out.insert(what.to_owned());
            }
        }
    }
    out
}

fn merge_apparmor(args: &MergeArgs, inputs: Vec<Input<AppArmorProfile>>) -> Result<ExitCode> {
    let Some(first) = inputs.first() else {
        bail!("no profiles to merge");
    };
    let mut merged = first.profile.clone();
    // Merging the first with itself normalises it (sorted, deduplicated) the way the union is.
    for input in &inputs {
        merged = spo_apparmor::merge_profiles(&merged, &input.profile)
            .map_err(|e| anyhow!(error_chain(&e)))
            .with_context(|| format!("{}: merging AppArmorProfile {:?}", input.at, input.name))?;
    }

    if args.check {
        let before = apparmor_facts(&first.profile);
        let after = apparmor_facts(&merged);
        let mut changes: Vec<String> = after.difference(&before).map(|f| format!("+ {f}")).collect();
        changes.extend(before.difference(&after).map(|f| format!("- {f}")));
        return report_check(args, &first.at, "AppArmorProfile", &first.name, &changes);
    }

    let name = args.name.clone().unwrap_or_else(|| first.name.clone());
    let profile = AppArmorProfile::new(&name, merged.spec);
    let problems = spo_apparmor::check_profile(&profile);
    if problems.has_errors() {
        return invalid_result("AppArmorProfile", &name, &problems);
    }
    let yaml = spo_model::yaml::to_string(&profile).context("rendering the merged profile as YAML")?;
    write_result(args, &yaml)
}

/// What `--check --format json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckReport<'a> {
    kind: &'a str,
    name: &'a str,
    /// Whether the result behaves exactly like the first input.
    unchanged: bool,
    /// The changes, as the text form prints them (`openat: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW`,
    /// `+ allow bin_t file read`).
    changes: &'a [String],
}

/// --check's answer: exit 0 when nothing changes, else the changes and exit 1.
fn report_check(args: &MergeArgs, at: &str, kind: &str, name: &str, changes: &[String]) -> Result<ExitCode> {
    let report = CheckReport {
        kind,
        name,
        unchanged: changes.is_empty(),
        changes,
    };
    match args.format.serialize(&report)? {
        Some(text) => emit(None, text.as_bytes())?,
        None if changes.is_empty() => {
            eprintln!("{at}: {kind} {:?} behaves the same after the merge", clean(name));
        }
        None => {
            let mut text = String::new();
            for change in changes {
                text.push_str(&clean(change));
                text.push('\n');
            }
            emit(None, text.as_bytes())?;
            eprintln!(
                "{at}: merging changes {} of {kind} {:?}",
                plural(changes.len(), "behaviour", "behaviours"),
                clean(name)
            );
        }
    }
    Ok(ExitCode::from(if changes.is_empty() { exit::OK } else { exit::FOUND }))
}

fn invalid_result(kind: &str, name: &str, problems: &Problems) -> Result<ExitCode> {
    let at = format!("merged {kind} {:?}", clean(name));
    super::output::print_problems(problems.errors(), Warnings::Show, |_| at.clone());
    bail!("the merged profile is invalid; nothing written")
}

fn write_result(args: &MergeArgs, yaml: &str) -> Result<ExitCode> {
    emit(args.output.as_deref(), yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Every profile of `files`, in order, all of one kind; `None` when some document is invalid
/// (its problems are printed). Documents of kinds that are not profiles are skipped with a note.
fn read_profiles(files: &[PathBuf]) -> Result<Option<Inputs>> {
    let mut found: Vec<(String, AnyObject)> = Vec::new();
    let mut invalid = false;
    for path in files {
        let display = path.display().to_string();
        let bytes = read_input(path)?;
        let text = decode_source(&display, &bytes)?;
        // OCI runtime seccomp JSON is a SeccompProfile named after its file.
        let docs = match super::input::runtime_json_document(path, &display, text) {
            Some(doc) => vec![doc?],
            None => parse_source(&display, text)?,
        };
        for doc in docs {
            let at = format!("{}:{} [doc {}]", clean(&display), doc.line, doc.index);
            match doc.outcome {
                Outcome::Valid(
                    obj @ (AnyObject::SeccompProfile(_)
                    | AnyObject::SelinuxProfile(_)
                    | AnyObject::RawSelinuxProfile(_)
                    | AnyObject::AppArmorProfile(_)),
                ) => found.push((at, obj)),
                Outcome::Valid(other) => {
                    eprintln!("{at}: skipped: {} is not a profile", other.kind());
                }
                Outcome::Skipped(why) => eprintln!("{at}: skipped: {why}"),
                Outcome::Invalid => {
                    invalid = true;
                    print_document_problems(&display, &doc, doc.problems.iter(), Warnings::Show);
                }
            }
        }
    }
    if invalid {
        return Ok(None);
    }
    let names = || {
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((first_at, first)) = found.first() else {
        bail!(
            "no profile in {}; spoc merge merges SeccompProfiles, SelinuxProfiles or AppArmorProfiles",
            names()
        );
    };
    let kind = first.kind();
    if let Some((at, other)) = found.iter().find(|(_, o)| o.kind() != kind) {
        bail!(
            "cannot merge profiles of different kinds: {first_at} is a profile of kind {kind} and {at} one of kind {}; merge one kind at a time",
            other.kind()
        );
    }
    let name =
        |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| meta.name.clone().unwrap_or_default();
    let mut seccomp = Vec::new();
    let mut selinux = Vec::new();
    let mut apparmor = Vec::new();
    for (at, obj) in found {
        match obj {
            AnyObject::SeccompProfile(p) => seccomp.push(Input {
                name: name(&p.metadata),
                profile: p.spec,
                at,
            }),
            AnyObject::SelinuxProfile(p) => selinux.push(Input {
                name: name(&p.metadata),
                profile: *p,
                at,
            }),
            AnyObject::AppArmorProfile(p) => apparmor.push(Input {
                name: name(&p.metadata),
                profile: *p,
                at,
            }),
            AnyObject::RawSelinuxProfile(p) => bail!(
                "{at}: RawSelinuxProfile {:?} is CIL text, which cannot be merged; write it as a SelinuxProfile to merge it",
                name(&p.metadata)
            ),
            _ => {}
        }
    }
    Ok(Some(if !selinux.is_empty() {
        Inputs::Selinux(selinux)
    } else if !apparmor.is_empty() {
        Inputs::AppArmor(apparmor)
    } else {
        Inputs::Seccomp(seccomp)
    }))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
