//! `spoc merge FILE...`: the union (or, for seccomp, the intersection) of profiles of one kind,
//! as one profile: SeccompProfiles, SelinuxProfiles or AppArmorProfiles.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::input::read_input;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use spo_model::apparmor::{AppArmorMode, AppArmorProfile};
use spo_model::contract::{SecurityProfile, error_chain};
use spo_model::document::decode_source;
use spo_model::selinux::{PolicyRef, PolicyRefKind, SelinuxMode, SelinuxProfile, SelinuxProfileSpec};
use spo_model::{AnyObject, Outcome, Problems, SeccompProfile, SeccompProfileSpec, parse_source};
use spo_seccomp::merge::{behaviour_changes, intersect_all, union_all};
use spo_seccomp::resolve::{MemoryResolver, ResolveError, resolve_profile};
use spo_selinux::RenderContext;
use spo_selinux::guardrails::Guardrails;
use spo_selinux::render::{MAX_INHERIT_DEPTH, check_selinux_profile};

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

Exit status: 0 when merged (with --check: the result behaves exactly like the first input),
1 when an input document or the result is invalid, or --check finds changes (listed on standard
output, as `openat: SCMP_ACT_ERRNO -> SCMP_ACT_ALLOW` for seccomp and `+ allow bin_t file read`
for the other kinds), 2 when a file cannot be read or the profiles cannot be merged (different
kinds, missing or cyclic base or inherited profiles, architectures with nothing in common,
--intersect with other kinds than SeccompProfile).";

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
        eprintln!("spoc merge: nothing merged; correct the invalid documents above");
        return Ok(ExitCode::from(1));
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
        return report_check(&first.at, "SeccompProfile", &first.name, &changes);
    }

    let name = args.name.clone().unwrap_or_else(|| first.name.clone());
    let profile = SeccompProfile::new(&name, merged);
    let problems = profile.validate();
    if problems.has_errors() {
        return Ok(invalid_result("SeccompProfile", &name, &problems));
    }
    let yaml = serde_norway::to_string(&profile).context("rendering the merged profile as YAML")?;
    write_result(args, &yaml)
}

/// A SelinuxProfile with its inherited SelinuxProfiles written in: the System templates it
/// ends up inheriting (in order), its allow rules, and whether anything on the way is
/// permissive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FlatSelinux {
    templates: Vec<String>,
    allow: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    permissive: bool,
}

impl FlatSelinux {
    /// Adds what `other` allows.
    fn absorb(&mut self, other: &FlatSelinux) {
        for t in &other.templates {
            if !self.templates.contains(t) {
                self.templates.push(t.clone());
            }
        }
        for (label, classes) in &other.allow {
            let mine = self.allow.entry(label.clone()).or_default();
            for (class, perms) in classes {
                mine.entry(class.clone()).or_default().extend(perms.iter().cloned());
            }
        }
        self.permissive |= other.permissive;
    }

    /// One line per thing the profile grants, for --check.
    fn facts(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.templates.iter().map(|t| format!("inherit System {t}")).collect();
        for (label, classes) in &self.allow {
            for (class, perms) in classes {
                out.extend(perms.iter().map(|p| format!("allow {label} {class} {p}")));
            }
        }
        if self.permissive {
            out.insert("mode Permissive".to_owned());
        }
        out
    }

    fn into_spec(self, state: spo_model::SpecState) -> SelinuxProfileSpec {
        let allow: BTreeMap<String, BTreeMap<String, Vec<String>>> = self
            .allow
            .into_iter()
            .map(|(label, classes)| {
                let classes = classes
                    .into_iter()
                    .map(|(class, perms)| (class, perms.into_iter().collect()))
                    .collect();
                (label, classes)
            })
            .collect();
        SelinuxProfileSpec {
            state,
            disabled: None,
            inherit: self
                .templates
                .into_iter()
                .map(|name| PolicyRef {
                    kind: PolicyRefKind::System,
                    name,
                })
                .collect(),
            mode: if self.permissive {
                SelinuxMode::Permissive
            } else {
                SelinuxMode::Enforcing
            },
            permissive: None,
            allow: (!allow.is_empty()).then_some(allow),
        }
    }
}

/// Writes the SelinuxProfiles `spec` inherits into it, looking them up in `profiles` (pure).
/// `chain` holds the profiles on the way, for cycle and depth errors.
fn flatten_selinux(
    spec: &SelinuxProfileSpec,
    profiles: &BTreeMap<String, SelinuxProfile>,
    chain: &mut Vec<String>,
) -> Result<FlatSelinux, String> {
    let mut flat = FlatSelinux {
        permissive: spec.effective_mode() == SelinuxMode::Permissive,
        ..FlatSelinux::default()
    };
    for r in &spec.inherit {
        match r.kind {
            PolicyRefKind::System => flat.absorb(&FlatSelinux {
                templates: vec![r.name.clone()],
                ..FlatSelinux::default()
            }),
            PolicyRefKind::SelinuxProfile => {
                let path = || format!("{} -> {}", chain.join(" -> "), r.name);
                if chain.contains(&r.name) {
                    return Err(format!("inherit cycle: {}", path()));
                }
                if chain.len() > MAX_INHERIT_DEPTH {
                    return Err(format!(
                        "inherit chain {} is deeper than {MAX_INHERIT_DEPTH} profiles",
                        path()
                    ));
                }
                let Some(parent) = profiles.get(&r.name) else {
                    return Err(format!(
                        "inherited SelinuxProfile {:?} (chain {}) is not among the inputs; give the file that holds it too",
                        r.name,
                        path()
                    ));
                };
                if !parent.should_install() {
                    return Err(format!(
                        "inherited SelinuxProfile {:?} (chain {}) is disabled or partial, so it is not in the policy",
                        r.name,
                        path()
                    ));
                }
                chain.push(r.name.clone());
                let inherited = flatten_selinux(&parent.spec, profiles, chain)?;
                chain.pop();
                flat.absorb(&inherited);
            }
        }
    }
    let own = FlatSelinux {
        allow: spec
            .allow
            .iter()
            .flatten()
            .map(|(label, classes)| {
                let classes = classes
                    .iter()
                    .map(|(class, perms)| (class.clone(), perms.iter().cloned().collect()))
                    .collect();
                (label.clone(), classes)
            })
            .collect(),
        ..FlatSelinux::default()
    };
    flat.absorb(&own);
    Ok(flat)
}

fn merge_selinux(args: &MergeArgs, inputs: Vec<Input<SelinuxProfile>>) -> Result<ExitCode> {
    let Some(first) = inputs.first() else {
        bail!("no profiles to merge");
    };
    let mut profiles: BTreeMap<String, SelinuxProfile> = BTreeMap::new();
    for input in &inputs {
        if profiles.contains_key(&input.name) {
            eprintln!(
                "{}: warning: another input is also called {:?}; inherited profiles named so resolve to the first",
                input.at, input.name
            );
        } else {
            profiles.insert(input.name.clone(), input.profile.clone());
        }
    }
    let mut flats = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let mut chain = vec![input.name.clone()];
        match flatten_selinux(&input.profile.spec, &profiles, &mut chain) {
            Ok(flat) => flats.push(flat),
            Err(e) => bail!("{}: SelinuxProfile {:?}: spec.inherit: {e}", input.at, input.name),
        }
    }
    let mut merged = FlatSelinux::default();
    for flat in &flats {
        merged.absorb(flat);
    }

    if args.check {
        let before = flats[0].facts();
        let after = merged.facts();
        let mut changes: Vec<String> = after.difference(&before).map(|f| format!("+ {f}")).collect();
        changes.extend(before.difference(&after).map(|f| format!("- {f}")));
        return report_check(&first.at, "SelinuxProfile", &first.name, &changes);
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
        return Ok(invalid_result("SelinuxProfile", &name, &problems));
    }
    let yaml = serde_norway::to_string(&profile).context("rendering the merged profile as YAML")?;
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
        return report_check(&first.at, "AppArmorProfile", &first.name, &changes);
    }

    let name = args.name.clone().unwrap_or_else(|| first.name.clone());
    let profile = AppArmorProfile::new(&name, merged.spec);
    let problems = spo_apparmor::check_profile(&profile);
    if problems.has_errors() {
        return Ok(invalid_result("AppArmorProfile", &name, &problems));
    }
    let yaml = serde_norway::to_string(&profile).context("rendering the merged profile as YAML")?;
    write_result(args, &yaml)
}

/// --check's answer: exit 0 when nothing changes, else the changes on standard output and 1.
fn report_check(at: &str, kind: &str, name: &str, changes: &[String]) -> Result<ExitCode> {
    if changes.is_empty() {
        eprintln!("{at}: {kind} {name:?} behaves the same after the merge");
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for change in changes {
        writeln!(out, "{change}").context("writing to standard output")?;
    }
    eprintln!(
        "{at}: merging changes {} of {kind} {name:?}",
        plural(changes.len(), "behaviour", "behaviours")
    );
    Ok(ExitCode::from(1))
}

fn invalid_result(kind: &str, name: &str, problems: &Problems) -> ExitCode {
    for p in problems.errors() {
        eprintln!("merged {kind} {name:?}: error: {p}");
    }
    eprintln!("spoc merge: the merged profile is invalid; nothing written");
    ExitCode::from(1)
}

fn write_result(args: &MergeArgs, yaml: &str) -> Result<ExitCode> {
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

/// Every profile of `files`, in order, all of one kind; `None` when some document is invalid
/// (its problems are printed). Documents of kinds that are not profiles are skipped with a note.
fn read_profiles(files: &[PathBuf]) -> Result<Option<Inputs>> {
    let mut found: Vec<(String, AnyObject)> = Vec::new();
    let mut invalid = false;
    for path in files {
        let display = path.display().to_string();
        let bytes = read_input(path)?;
        let text = decode_source(&display, &bytes)?;
        for doc in parse_source(&display, text)? {
            let at = format!("{display}:{} [doc {}]", doc.line, doc.index);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn profile(yaml_spec: &str, name: &str) -> SelinuxProfile {
        serde_norway::from_str(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {{name: {name}}}\nspec:\n{yaml_spec}"
        ))
        .expect("parse")
    }

    fn lookup(profiles: &[SelinuxProfile]) -> BTreeMap<String, SelinuxProfile> {
        profiles
            .iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), p.clone()))
            .collect()
    }

    #[test]
    fn inherited_profiles_are_written_in_with_their_templates_and_mode() {
        let base = profile(
            "  mode: Permissive\n  inherit: [{name: container}]\n  allow:\n    '@self': {process: [signal]}\n",
            "base",
        );
        let child = profile(
            "  inherit: [{kind: SelinuxProfile, name: base}, {name: net_container}]\n  allow:\n    bin_t: {file: [read]}\n",
            "child",
        );
        let profiles = lookup(&[base, child.clone()]);
        let flat = flatten_selinux(&child.spec, &profiles, &mut vec!["child".into()]).expect("flatten");
        assert_eq!(flat.templates, ["container", "net_container"]);
        assert!(flat.permissive);
        assert_eq!(
            flat.facts().into_iter().collect::<Vec<_>>(),
            [
                "allow @self process signal",
                "allow bin_t file read",
                "inherit System container",
                "inherit System net_container",
                "mode Permissive",
            ]
        );
    }

    #[test]
    fn cycles_missing_and_disabled_parents_are_refused() {
        let a = profile("  inherit: [{kind: SelinuxProfile, name: b}]\n", "a");
        let b = profile("  inherit: [{kind: SelinuxProfile, name: a}]\n", "b");
        let profiles = lookup(&[a.clone(), b]);
        let e = flatten_selinux(&a.spec, &profiles, &mut vec!["a".into()]).expect_err("cycle");
        assert_eq!(e, "inherit cycle: a -> b -> a");

        let orphan = profile("  inherit: [{kind: SelinuxProfile, name: gone}]\n", "orphan");
        let e = flatten_selinux(&orphan.spec, &BTreeMap::new(), &mut vec!["orphan".into()]).expect_err("missing");
        assert!(
            e.contains("\"gone\" (chain orphan -> gone) is not among the inputs"),
            "{e}"
        );

        let off = profile("  state: Disabled\n", "off");
        let user = profile("  inherit: [{kind: SelinuxProfile, name: off}]\n", "user");
        let e = flatten_selinux(&user.spec, &lookup(&[off]), &mut vec!["user".into()]).expect_err("disabled");
        assert!(e.contains("is disabled or partial"), "{e}");
    }

    fn arb_flat() -> impl Strategy<Value = FlatSelinux> {
        let name = "[a-c]_t";
        let allow = prop::collection::btree_map(
            name,
            prop::collection::btree_map("file|dir", prop::collection::btree_set("read|write|open", 0..3), 0..3),
            0..4,
        );
        (
            prop::collection::vec("container|net_container", 0..3),
            allow,
            any::<bool>(),
        )
            .prop_map(|(templates, allow, permissive)| {
                let mut flat = FlatSelinux {
                    allow,
                    permissive,
                    ..FlatSelinux::default()
                };
                for t in templates {
                    if !flat.templates.contains(&t) {
                        flat.templates.push(t);
                    }
                }
                flat
            })
    }

    proptest! {
        /// The union grants exactly what the inputs grant together, whatever the order.
        #[test]
        fn union_is_the_union_of_the_facts(a in arb_flat(), b in arb_flat()) {
            let mut ab = a.clone();
            ab.absorb(&b);
            let mut ba = b.clone();
            ba.absorb(&a);
            let both: BTreeSet<String> = a.facts().union(&b.facts()).cloned().collect();
            // Empty permission lists grant nothing and leave no fact.
            prop_assert_eq!(ab.facts(), both.clone());
            prop_assert_eq!(ba.facts(), both);
            let mut again = ab.clone();
            again.absorb(&b);
            prop_assert_eq!(again, ab);
        }

        /// What the union writes out reads back as the same rules.
        #[test]
        fn merged_spec_round_trips(a in arb_flat()) {
            let spec = a.clone().into_spec(spo_model::SpecState::Enabled);
            let flat = flatten_selinux(&spec, &BTreeMap::new(), &mut vec!["x".into()]).expect("flatten");
            prop_assert_eq!(flat.facts(), a.facts());
        }
    }
}
