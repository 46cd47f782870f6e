//! `spoc convert PROFILE`: a SeccompProfile manifest to the runtime JSON a container runtime
//! reads (`--to-crd`: the other way round).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::input::read_input;
use anyhow::{Context, Result, bail};
use clap::Args;
use spo_model::contract::error_chain;
use spo_model::document::decode_source;
use spo_model::validate::is_dns_subdomain;
use spo_model::{AnyObject, Document, Outcome, Problems, SeccompProfile, parse_source};
use spo_seccomp::node::write_file_atomic;
use spo_seccomp::oci::{from_runtime, parse_runtime_json, try_to_runtime};

pub const EXAMPLES: &str = "\
Examples:
  spoc convert profile.yaml > profile.json      manifest to runtime JSON
  spoc convert profile.yaml -o demo.json        write a file atomically
  spoc convert --to-crd docker-default.json     runtime JSON to SeccompProfile docker-default
  kubectl get sp demo -o yaml | spoc convert -  read standard input

Base profiles (spec.baseProfileName) are not resolved: the output holds only the profile's own
rules. The runtime field defaultErrnoRet has no SeccompProfile equivalent, so --to-crd accepts it
only when it is 1 (EPERM, what runtimes use without it).

Exit status: 0 on success, 1 when the profile is invalid or cannot be converted, 2 when a file
cannot be read or written.";

/// Mode of the written file: profiles are not secret, and the runtime reads them as root.
const OUTPUT_MODE: u32 = 0o644;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A SeccompProfile manifest (YAML or JSON, one SeccompProfile in it), or runtime JSON with
    /// --to-crd; `-` reads standard input.
    #[arg(value_name = "PROFILE")]
    profile: PathBuf,
    /// Write to FILE (replaced atomically: readers see the old or the new file, never a part)
    /// instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Read OCI runtime seccomp JSON and write a SeccompProfile manifest (YAML).
    #[arg(long)]
    to_crd: bool,
    /// metadata.name of the SeccompProfile written by --to-crd [default: PROFILE's file name
    /// without extension, made a DNS name].
    #[arg(long, requires = "to_crd", value_name = "NAME")]
    name: Option<String>,
}

pub fn run(args: &ConvertArgs) -> Result<ExitCode> {
    let display = args.profile.display().to_string();
    let bytes = read_input(&args.profile)?;
    let text = decode_source(&display, &bytes)?;
    let converted = if args.to_crd {
        runtime_to_manifest(args, &display, text)?
    } else {
        manifest_to_runtime(&display, text)?
    };
    let Some(out) = converted else {
        return Ok(ExitCode::from(1));
    };
    match &args.output {
        Some(path) => write_file_atomic(path, out.as_bytes(), OUTPUT_MODE)
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            lock.write_all(out.as_bytes())
                .and_then(|()| lock.flush())
                .context("writing standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The runtime JSON (pretty, with a trailing newline), or `None` after printing why the
/// manifest cannot be converted.
fn manifest_to_runtime(display: &str, text: &str) -> Result<Option<String>> {
    let docs = parse_source(display, text)?;
    let is_seccomp = |d: &Document| {
        d.kind.as_deref() == Some("SeccompProfile") || matches!(d.outcome, Outcome::Valid(AnyObject::SeccompProfile(_)))
    };
    let candidates: Vec<&Document> = docs.iter().filter(|d| is_seccomp(d)).collect();
    let doc = match candidates.as_slice() {
        [one] => *one,
        [] => {
            // A document too broken to have a kind may be the profile: show what is wrong.
            let broken: Vec<&Document> = docs.iter().filter(|d| d.has_errors()).collect();
            if broken.is_empty() {
                bail!("{display} holds no SeccompProfile; convert takes a file with exactly one");
            }
            for d in broken {
                print_problems(display, d);
            }
            return Ok(None);
        }
        many => {
            let lines: Vec<String> = many.iter().map(|d| d.line.to_string()).collect();
            bail!(
                "{display} holds {} SeccompProfiles (at lines {}); convert takes a file with exactly one",
                many.len(),
                lines.join(", ")
            );
        }
    };
    print_problems(display, doc);
    let Outcome::Valid(AnyObject::SeccompProfile(profile)) = &doc.outcome else {
        return Ok(None);
    };
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
        None => match name_from_path(&args.profile) {
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
    let yaml = serde_norway::to_string(&profile).context("rendering the SeccompProfile as YAML")?;
    Ok(Some(yaml))
}

/// The file name without its extension, lower-cased, with every character a DNS name cannot
/// hold replaced by `-` (`My_Profile.json` -> `my-profile`).
fn name_from_path(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    if stem == "-" {
        return None;
    }
    let mapped: String = stem
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.') => c,
            _ => '-',
        })
        .collect();
    let labels: Vec<String> = mapped
        .split('.')
        .map(|label| {
            let mut collapsed = String::new();
            for c in label.chars() {
                if !(c == '-' && collapsed.ends_with('-')) {
                    collapsed.push(c);
                }
            }
            let trimmed: String = collapsed.trim_matches('-').chars().take(63).collect();
            trimmed.trim_end_matches('-').to_owned()
        })
        .filter(|label| !label.is_empty())
        .collect();
    let mut name = labels.join(".");
    if name.len() > 253 {
        name.truncate(253);
        name = name.trim_end_matches(['-', '.']).to_owned();
    }
    is_dns_subdomain(&name).then_some(name)
}

/// Prints a document's problems to standard error, in `spoc validate`'s format.
fn print_problems(display: &str, doc: &Document) {
    let what = format!(
        "{}/{}",
        doc.kind.as_deref().unwrap_or("<no kind>"),
        doc.name.as_deref().unwrap_or("<no name>")
    );
    print_problem_list(
        &format!("{display}:{} [doc {}] {what}", doc.line, doc.index),
        &doc.problems,
    );
}

fn print_problem_list(at: &str, problems: &Problems) {
    for p in problems.iter() {
        let severity = if p.is_error() { "error" } else { "warning" };
        match &p.hint {
            Some(h) => eprintln!("{at}: {severity}: {}: {} ({h})", p.path, p.message),
            None => eprintln!("{at}: {severity}: {}: {}", p.path, p.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_file_names() {
        let name = |p: &str| name_from_path(Path::new(p));
        assert_eq!(name("profiles/nginx.json").as_deref(), Some("nginx"));
        assert_eq!(name("My_Profile.json").as_deref(), Some("my-profile"));
        assert_eq!(name("docker default (v2).json").as_deref(), Some("docker-default-v2"));
        assert_eq!(name("runc.v1.2.json").as_deref(), Some("runc.v1.2"));
        assert_eq!(name("-"), None);
        assert_eq!(name("___.json"), None);
        assert_eq!(name("ünïcode.json").as_deref(), Some("n-code"));
    }
}
