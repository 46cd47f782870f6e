//! Problems with field paths, and the checks several kinds share.
//!
//! Validation never stops at the first problem: every check appends to a [`Problems`] list
//! so that a user sees everything wrong with a manifest in one run.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// A path to a field, written the way `kubectl explain` and apiserver errors write it:
/// `spec.syscalls[3].args[0].index`, map keys in brackets: `spec.allow[@self][file]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty path (the document itself).
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// This path followed by the field `name`.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_owned())
        } else {
            FieldPath(format!("{}.{}", self.0, name))
        }
    }

    /// This path followed by the list index `i`.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{}]", self.0, i))
    }

    /// This path followed by the map key `key`.
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{}]", self.0, key))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("<document>")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object would be rejected, fail to install, or not mean what it says.
    Error,
    /// Accepted, but probably not what the author meant (redundant or ignored values).
    Warning,
}

/// One thing wrong with a document, with where it is and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Where: `spec.syscalls[3].names[0]`.
    pub path: FieldPath,
    /// What is wrong, lower case, no trailing period.
    pub message: String,
    /// What to do about it, when there is something useful to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Problem {
    /// An error at `path`.
    pub fn error(path: FieldPath, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            path,
            message: message.into(),
            hint: None,
        }
    }

    /// A warning at `path`.
    pub fn warning(path: FieldPath, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            path,
            message: message.into(),
            hint: None,
        }
    }

    /// The same problem with a fix hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Every problem found in one document, in the order the checks found them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// No problems yet.
    pub fn new() -> Self {
        Problems(Vec::new())
    }

    /// Adds a problem.
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }

    /// Adds an error at `path`.
    pub fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.push(Problem::error(path, message));
    }

    /// Adds an error with a hint.
    pub fn error_hint(&mut self, path: FieldPath, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Problem::error(path, message).with_hint(hint));
    }

    /// Adds a warning at `path`.
    pub fn warning(&mut self, path: FieldPath, message: impl Into<String>) {
        self.push(Problem::warning(path, message));
    }

    /// Adds a warning with a hint.
    pub fn warning_hint(&mut self, path: FieldPath, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Problem::warning(path, message).with_hint(hint));
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }

    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.is_error())
    }

    /// Every problem.
    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.0.iter()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems as a vector.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Problems {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `input`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = input.to_ascii_lowercase();
    let mut best: Option<(&'a str, usize)> = None;
    for c in candidates {
        if c.eq_ignore_ascii_case(input) {
            return Some(c);
        }
        let d = strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase());
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    let (c, d) = best?;
    let limit = (input.chars().count().max(c.chars().count()) / 3).max(2);
    (d <= limit).then_some(c)
}

/// A hint text for [`did_you_mean`], or a list of the allowed values when nothing is close.
pub fn suggestion<'a, I>(input: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    match did_you_mean(input, candidates.clone()) {
        Some(c) => format!("did you mean {c}?"),
        None => {
            let all: Vec<&str> = candidates.into_iter().collect();
            if all.len() <= 12 {
                format!("one of: {}", all.join(", "))
            } else {
                format!("one of {} known values", all.len())
            }
        }
    }
}

/// RFC 1123 DNS subdomain: what Kubernetes requires of most object names.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label_loose)
}

/// RFC 1123 DNS label (63 characters at most, lower-case alphanumerics and `-`).
pub fn is_dns_label(s: &str) -> bool {
    is_dns_label_loose(s) && s.len() <= 63
}

fn is_dns_label_loose(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks `metadata.name` (required, DNS subdomain) and, when `namespaced`, the namespace syntax.
pub fn check_metadata(meta: &ObjectMeta, namespaced: bool, problems: &mut Problems) {
    let path = FieldPath::root().field("metadata");
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) => {
            if !is_dns_subdomain(name) {
                problems.error_hint(
                    path.field("name"),
                    format!("{name:?} is not a valid object name"),
                    "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
                );
            }
        }
        (None, Some(_)) => {}
        (None, None) => problems.error(path.field("name"), "required field is missing"),
    }
    if let Some(ns) = &meta.namespace {
        if !namespaced {
            problems.warning_hint(
                path.field("namespace"),
                "this kind is cluster-scoped; the namespace is ignored",
                "remove metadata.namespace",
            );
        } else if !is_dns_label(ns) {
            problems.error(path.field("namespace"), format!("{ns:?} is not a valid namespace name"));
        }
    }
    if let Some(labels) = &meta.labels {
        for (k, v) in labels {
            check_label(&path.field("labels").key(k), k, v, problems);
        }
    }
}

/// Label key syntax (`[prefix/]name`) and value syntax, as the apiserver checks them.
pub fn check_label(path: &FieldPath, key: &str, value: &str, problems: &mut Problems) {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        problems.error(path.clone(), format!("label key prefix {p:?} is not a DNS subdomain"));
    }
    if !is_label_value(name) || name.is_empty() {
        problems.error(path.clone(), format!("label key name {name:?} is invalid"));
    }
    if !is_label_value(value) {
        problems.error_hint(
            path.clone(),
            format!("label value {value:?} is invalid"),
            "at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        );
    }
}

/// Label value syntax (empty is allowed).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A `LabelSelector`: label syntax and the operator/values rules.
pub fn check_label_selector(path: &FieldPath, sel: &LabelSelector, problems: &mut Problems) {
    if let Some(labels) = &sel.match_labels {
        for (k, v) in labels {
            check_label(&path.field("matchLabels").key(k), k, v, problems);
        }
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.field("matchExpressions").index(i);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    problems.error(
                        p.field("values"),
                        format!("must not be empty for operator {}", req.operator),
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    problems.error(
                        p.field("values"),
                        format!("must be empty for operator {}", req.operator),
                    );
                }
            }
            other => problems.error_hint(
                p.field("operator"),
                format!("unknown operator {other:?}"),
                suggestion(other, ["In", "NotIn", "Exists", "DoesNotExist"]),
            ),
        }
        check_label(&p.field("key"), &req.key, "", problems);
        for (j, v) in values.iter().enumerate() {
            if !is_label_value(v) {
                problems.error(p.field("values").index(j), format!("label value {v:?} is invalid"));
            }
        }
    }
}

/// Reports each value that occurs more than once in `items`, as a warning or an error.
pub fn check_duplicates<'a, I>(path: &FieldPath, items: I, severity: Severity, problems: &mut Problems)
where
    I: IntoIterator<Item = &'a str>,
{
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.into_iter().enumerate() {
        if !seen.insert(item) {
            problems.push(Problem {
                severity,
                path: path.index(i),
                message: format!("duplicate entry {item:?}"),
                hint: Some("remove the repeated entry".into()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kubectl() {
        let p = FieldPath::root()
            .field("spec")
            .field("syscalls")
            .index(3)
            .field("args")
            .index(0)
            .field("index");
        assert_eq!(p.as_str(), "spec.syscalls[3].args[0].index");
        assert_eq!(
            FieldPath::root().field("spec").field("allow").key("@self").as_str(),
            "spec.allow[@self]"
        );
        assert_eq!(FieldPath::root().to_string(), "<document>");
    }

    #[test]
    fn did_you_mean_finds_typos_and_ignores_noise() {
        let fields = ["defaultAction", "architectures", "syscalls", "flags"];
        assert_eq!(did_you_mean("defautAction", fields), Some("defaultAction"));
        assert_eq!(did_you_mean("sycalls", fields), Some("syscalls"));
        assert_eq!(did_you_mean("DEFAULTACTION", fields), Some("defaultAction"));
        assert_eq!(did_you_mean("zzzzzz", fields), None);
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("profile-1.example"));
        assert!(!is_dns_subdomain("../x"));
        assert!(!is_dns_subdomain("a/b"));
        assert!(!is_dns_subdomain("Upper"));
        assert!(!is_dns_subdomain(""));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain("a\0b"));
        assert!(is_dns_label("abc-1"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn label_values() {
        assert!(is_label_value(""));
        assert!(is_label_value("a.b_c-d"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
