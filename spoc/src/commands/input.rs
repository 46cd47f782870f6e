//! Reading inputs, shared by the subcommands: files or standard input with a size limit, and
//! SeccompProfiles from manifests or from OCI runtime seccomp JSON, told apart by content.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use spo_model::document::{MAX_SOURCE_BYTES, decode_source};
use spo_model::validate::is_dns_subdomain;
use spo_model::{AnyObject, Document, Outcome, Problem, SeccompProfile, parse_source};

use super::output::{Warnings, clean, print_problems};

/// Reads a file, or standard input for `-`, refusing anything longer than the model's limit.
/// At most one byte past the limit is read, so a huge or endless input is refused without
/// being read whole.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let limit = (MAX_SOURCE_BYTES + 1) as u64;
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut buf)
            .context("reading standard input")?;
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.take(limit)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(buf)
}

/// `SelinuxProfile/nginx`, for messages (names escaped for the terminal).
pub fn what(d: &Document) -> String {
    format!(
        "{}/{}",
        clean(d.kind.as_deref().unwrap_or("<no kind>")),
        clean(d.name.as_deref().unwrap_or("<no name>"))
    )
}

/// `file:line [doc N] Kind/name`, the location every problem line starts with; `line` is the
/// line of the field at fault.
pub fn location(display: &str, doc: &Document, line: usize) -> String {
    format!("{}:{line} [doc {}] {}", clean(display), doc.index, what(doc))
}

/// Prints a document's problems, each at its field's line, repeats folded.
pub fn print_document_problems<'a>(
    display: &str,
    doc: &Document,
    problems: impl IntoIterator<Item = &'a Problem>,
    warnings: Warnings,
) -> usize {
    print_problems(problems, warnings, |p| location(display, doc, line_of(doc, &p.path)))
}

/// The line of the field at `path` in the document's source.
pub fn line_of(doc: &Document, path: &spo_model::FieldPath) -> usize {
    doc.line_of(path)
}

/// Whether `text` is OCI runtime seccomp JSON rather than a manifest: a JSON object with a
/// `defaultAction` and no `kind` (a profile of Docker, podman or containerd, or what a node
/// file holds), or a runtime `config.json` with `linux.seccomp`.
pub fn is_runtime_json(text: &str) -> bool {
    runtime_json_value(text).is_some()
}

/// The runtime seccomp object of `text`, when it is one (see [`is_runtime_json`]).
fn runtime_json_value(text: &str) -> Option<serde_json::Value> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
    let obj = value.as_object()?;
    if obj.contains_key("kind") || obj.contains_key("apiVersion") {
        return None;
    }
    if obj.contains_key("defaultAction") {
        return Some(value);
    }
    let seccomp = obj.get("linux")?.get("seccomp")?;
    seccomp.get("defaultAction").is_some().then(|| seccomp.clone())
}

/// For OCI runtime JSON: one document holding the SeccompProfile it amounts to (named after
/// the file), checked like a manifest, with the conversion's notes as warnings. `None` when
/// `text` is not runtime JSON.
pub fn runtime_json_document(path: &Path, display: &str, text: &str) -> Option<Result<Document>> {
    let value = runtime_json_value(text)?;
    Some((|| {
        let name = name_from_path(path).unwrap_or_else(|| "profile".to_owned());
        let converted = convert_runtime(display, &value)?;
        let profile = SeccompProfile::new(&name, converted.spec);
        let manifest = serde_json::to_value(&profile).context("writing the converted SeccompProfile")?;
        let mut doc = spo_model::document::check_document(0, 1, manifest);
        for note in converted.notes {
            doc.problems.push(Problem::warning(spo_model::FieldPath::root(), note));
        }
        Ok(doc)
    })())
}

/// A SeccompProfile read from a file, with where it came from.
#[derive(Debug)]
pub struct LoadedSeccomp {
    /// The profile (named after the file when it came from runtime JSON).
    pub profile: SeccompProfile,
}

/// Reads the one SeccompProfile of `path` (or the one named `name`): a manifest (YAML or
/// JSON, problems printed at their fields' lines) or OCI runtime seccomp JSON (Docker's,
/// podman's and containerd's default profiles, a node file, a runc `config.json`), told apart
/// by content. An invalid profile is printed and refused.
pub fn load_seccomp(path: &Path, name: Option<&str>, warnings: Warnings) -> Result<LoadedSeccomp> {
    let display = path.display().to_string();
    let bytes = read_input(path)?;
    let text = decode_source(&display, &bytes)?;
    if let Some(value) = runtime_json_value(text) {
        let profile = runtime_profile(path, &display, name, &value, warnings)?;
        return Ok(LoadedSeccomp { profile });
    }
    let docs = parse_source(&display, text)?;
    let mut found: Vec<Document> = docs
        .into_iter()
        .filter(|d| d.kind.as_deref() == Some("SeccompProfile") && (name.is_none() || d.name.as_deref() == name))
        .collect();
    let doc = match found.len() {
        1 => found.remove(0),
        0 => bail!(
            "{} holds no SeccompProfile{} (nor OCI runtime seccomp JSON)",
            clean(&display),
            name.map(|n| format!(" named {}", clean(n))).unwrap_or_default()
        ),
        n => bail!("{} holds {n} SeccompProfiles; choose one with --name", clean(&display)),
    };
    print_document_problems(&display, &doc, doc.problems.iter(), warnings);
    match doc.outcome {
        Outcome::Valid(AnyObject::SeccompProfile(p)) => Ok(LoadedSeccomp { profile: *p }),
        _ => bail!(
            "{}: the SeccompProfile is invalid (every problem is listed above)",
            clean(&display)
        ),
    }
}

/// The spec runtime JSON `value` amounts to on this machine (architecture, kernel, a
/// container's default capabilities), with the conversion's notes.
fn convert_runtime(display: &str, value: &serde_json::Value) -> Result<spo_seccomp::oci::RuntimeProfile> {
    let text = serde_json::to_string(value).context("re-reading runtime JSON")?;
    spo_seccomp::oci::parse_runtime_profile(&text, &spo_seccomp::oci::EngineContext::this_machine())
        .map_err(|e| anyhow::anyhow!("{}: {}", clean(display), clean(&spo_model::contract::error_chain(&e))))
}

/// A SeccompProfile from OCI runtime JSON, named `name` or after the file.
fn runtime_profile(
    path: &Path,
    display: &str,
    name: Option<&str>,
    value: &serde_json::Value,
    warnings: Warnings,
) -> Result<SeccompProfile> {
    let name = match name {
        Some(n) if is_dns_subdomain(n) => n.to_owned(),
        Some(n) => bail!(
            "--name {:?} is not a valid object name: use lower-case letters, digits, '-' and '.', \
             starting and ending with a letter or digit",
            clean(n)
        ),
        None => name_from_path(path).unwrap_or_else(|| "profile".to_owned()),
    };
    let converted = convert_runtime(display, value)?;
    let at = format!("{}: SeccompProfile/{}", clean(display), clean(&name));
    for note in &converted.notes {
        if warnings == Warnings::Show {
            eprintln!("{at}: note: {}", clean(note));
        }
    }
    let profile = SeccompProfile::new(&name, converted.spec);
    let problems = profile.validate();
    print_problems(problems.iter(), warnings, |_| at.clone());
    if problems.has_errors() {
        bail!(
            "{}: the profile is invalid (every problem is listed above)",
            clean(display)
        );
    }
    Ok(profile)
}

/// The file name without its extension, lower-cased, with every character a DNS name cannot
/// hold replaced by `-` (`My_Profile.json` -> `my-profile`).
pub fn name_from_path(path: &Path) -> Option<String> {
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

    #[test]
    fn runtime_json_is_told_from_manifests_by_content() {
        assert!(is_runtime_json(r#"{"defaultAction": "SCMP_ACT_ERRNO"}"#));
        assert!(is_runtime_json(
            "\u{feff}\n  {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": []}"
        ));
        assert!(is_runtime_json(
            r#"{"ociVersion": "1.0.2", "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}}"#
        ));
        assert!(!is_runtime_json(
            r#"{"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile", "spec": {"defaultAction": "SCMP_ACT_ERRNO"}}"#
        ));
        assert!(!is_runtime_json(
            "kind: SeccompProfile\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n"
        ));
        assert!(!is_runtime_json(r#"{"linux": {}}"#));
        assert!(!is_runtime_json("[]"));
    }
}
