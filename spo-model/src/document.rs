//! Reading manifests: YAML (multi-document) or JSON, `List` objects, kind recognition,
//! strict parsing and validation of each document.
//!
//! [`parse_source`] never stops at the first bad document: each document gets its own
//! result, with every problem found in it.

use serde::Serialize;
use serde_json::Value;

use crate::common::{API_VERSION, GROUP, VERSION};
use crate::error::ModelError;
pub use crate::lines::FieldLines;
use crate::strict::{check_against_schema, fill_placeholders};
use crate::validate::{FieldPath, Problem, Problems, suggestion};
pub use crate::yaml::MAX_NESTING_DEPTH;
use crate::{
    AppArmorProfile, ProfileBinding, ProfileRecording, RawSelinuxProfile, SeccompProfile, SecurityProfileNodeStatus,
    SecurityProfilesOperatorDaemon, SelinuxProfile,
};

/// The largest input accepted in one file or stream: 8 MiB. A single object is at most
/// 1.5 MiB in etcd, so this leaves room for multi-document files while keeping a hostile
/// input from exhausting memory.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024 * 1024;

/// The kinds of the `security-profiles-operator.x-k8s.io/v1` API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// `SeccompProfile`.
    SeccompProfile,
    /// `SelinuxProfile`.
    SelinuxProfile,
    /// `RawSelinuxProfile`.
    RawSelinuxProfile,
    /// `AppArmorProfile`.
    AppArmorProfile,
    /// `ProfileBinding`.
    ProfileBinding,
    /// `ProfileRecording`.
    ProfileRecording,
    /// `SecurityProfilesOperatorDaemon`.
    SecurityProfilesOperatorDaemon,
    /// `SecurityProfileNodeStatus`.
    SecurityProfileNodeStatus,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::SeccompProfile,
        Kind::SelinuxProfile,
        Kind::RawSelinuxProfile,
        Kind::AppArmorProfile,
        Kind::ProfileBinding,
        Kind::ProfileRecording,
        Kind::SecurityProfilesOperatorDaemon,
        Kind::SecurityProfileNodeStatus,
    ];

    /// The kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SeccompProfile => "SeccompProfile",
            Kind::SelinuxProfile => "SelinuxProfile",
            Kind::RawSelinuxProfile => "RawSelinuxProfile",
            Kind::AppArmorProfile => "AppArmorProfile",
            Kind::ProfileBinding => "ProfileBinding",
            Kind::ProfileRecording => "ProfileRecording",
            Kind::SecurityProfilesOperatorDaemon => "SecurityProfilesOperatorDaemon",
            Kind::SecurityProfileNodeStatus => "SecurityProfileNodeStatus",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether objects of the kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::ProfileBinding | Kind::ProfileRecording | Kind::SecurityProfilesOperatorDaemon
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed object of any kind of the API.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyObject {
    /// A SeccompProfile.
    SeccompProfile(Box<SeccompProfile>),
    /// A SelinuxProfile.
    SelinuxProfile(Box<SelinuxProfile>),
    /// A RawSelinuxProfile.
    RawSelinuxProfile(Box<RawSelinuxProfile>),
    /// An AppArmorProfile.
    AppArmorProfile(Box<AppArmorProfile>),
    /// A ProfileBinding.
    ProfileBinding(Box<ProfileBinding>),
    /// A ProfileRecording.
    ProfileRecording(Box<ProfileRecording>),
    /// A SecurityProfilesOperatorDaemon.
    SecurityProfilesOperatorDaemon(Box<SecurityProfilesOperatorDaemon>),
    /// A SecurityProfileNodeStatus.
    SecurityProfileNodeStatus(Box<SecurityProfileNodeStatus>),
}

impl AnyObject {
    /// Deserializes `value` as `kind`, naming the failing field on error.
    pub fn from_value(kind: Kind, value: Value) -> Result<AnyObject, Problem> {
        AnyObject::from_ref(kind, &value).map_err(|e| e.problem)
    }

    /// Deserializes `value` as `kind` without consuming it.
    fn from_ref(kind: Kind, value: &Value) -> Result<AnyObject, TypedError> {
        fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<Box<T>, TypedError> {
            serde_path_to_error::deserialize::<_, T>(v).map(Box::new).map_err(|e| {
                let steps = e.path().iter().cloned().collect();
                let path = e.path().to_string();
                let path = if path == "." {
                    FieldPath::root()
                } else {
                    FieldPath::root().field(&path)
                };
                TypedError {
                    problem: Problem::error(path, e.into_inner().to_string()),
                    steps,
                }
            })
        }
        Ok(match kind {
            Kind::SeccompProfile => AnyObject::SeccompProfile(typed(value)?),
            Kind::SelinuxProfile => AnyObject::SelinuxProfile(typed(value)?),
            Kind::RawSelinuxProfile => AnyObject::RawSelinuxProfile(typed(value)?),
            Kind::AppArmorProfile => AnyObject::AppArmorProfile(typed(value)?),
            Kind::ProfileBinding => AnyObject::ProfileBinding(typed(value)?),
            Kind::ProfileRecording => AnyObject::ProfileRecording(typed(value)?),
            Kind::SecurityProfilesOperatorDaemon => AnyObject::SecurityProfilesOperatorDaemon(typed(value)?),
            Kind::SecurityProfileNodeStatus => AnyObject::SecurityProfileNodeStatus(typed(value)?),
        })
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            AnyObject::SeccompProfile(_) => Kind::SeccompProfile,
            AnyObject::SelinuxProfile(_) => Kind::SelinuxProfile,
            AnyObject::RawSelinuxProfile(_) => Kind::RawSelinuxProfile,
            AnyObject::AppArmorProfile(_) => Kind::AppArmorProfile,
            AnyObject::ProfileBinding(_) => Kind::ProfileBinding,
            AnyObject::ProfileRecording(_) => Kind::ProfileRecording,
            AnyObject::SecurityProfilesOperatorDaemon(_) => Kind::SecurityProfilesOperatorDaemon,
            AnyObject::SecurityProfileNodeStatus(_) => Kind::SecurityProfileNodeStatus,
        }
    }

    /// Every problem with the object (pure).
    pub fn validate(&self) -> Problems {
        match self {
            AnyObject::SeccompProfile(o) => o.validate(),
            AnyObject::SelinuxProfile(o) => o.validate(),
            AnyObject::RawSelinuxProfile(o) => o.validate(),
            AnyObject::AppArmorProfile(o) => o.validate(),
            AnyObject::ProfileBinding(o) => o.validate(),
            AnyObject::ProfileRecording(o) => o.validate(),
            AnyObject::SecurityProfilesOperatorDaemon(o) => o.validate(),
            AnyObject::SecurityProfileNodeStatus(o) => o.validate(),
        }
    }

    /// The object as JSON.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            AnyObject::SeccompProfile(o) => serde_json::to_value(o),
            AnyObject::SelinuxProfile(o) => serde_json::to_value(o),
            AnyObject::RawSelinuxProfile(o) => serde_json::to_value(o),
            AnyObject::AppArmorProfile(o) => serde_json::to_value(o),
            AnyObject::ProfileBinding(o) => serde_json::to_value(o),
            AnyObject::ProfileRecording(o) => serde_json::to_value(o),
            AnyObject::SecurityProfilesOperatorDaemon(o) => serde_json::to_value(o),
            AnyObject::SecurityProfileNodeStatus(o) => serde_json::to_value(o),
        }
    }
}

/// Why a typed parse failed: the problem, and the path to the failing value as steps.
struct TypedError {
    problem: Problem,
    steps: Vec<serde_path_to_error::Segment>,
}

/// What became of one document.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Parsed; `problems` holds warnings only.
    Valid(AnyObject),
    /// Not usable; `problems` holds at least one error.
    Invalid,
    /// Not a kind of this API (a Pod next to its profile, say); the reason says which.
    Skipped(String),
}

/// One document of a file, with everything found in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// 0-based position in the file (after expanding `List` objects).
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    /// `apiVersion`, when present.
    pub api_version: Option<String>,
    /// `kind`, when present.
    pub kind: Option<String>,
    /// `metadata.name`, when present.
    pub name: Option<String>,
    /// The result.
    pub outcome: Outcome,
    /// Every problem (errors and warnings).
    pub problems: Problems,
    /// For further checks only, never `Valid`: when the outcome is `Invalid` but the kind is
    /// known, the typed object as far as it could be read, so that checks needing a typed
    /// object (a backend's syscall names, say) still run and the user sees every problem in one
    /// pass. Fields that were missing or did not fit hold placeholders; their paths are in
    /// [`Document::placeholders`], and a finding at or under one of them is about the
    /// placeholder, not the manifest. `None` for a valid document (its object is in
    /// [`Outcome::Valid`]; see [`Document::object_for_checks`]) or when nothing typed could be
    /// made of it.
    pub best_effort: Option<AnyObject>,
    /// Paths whose values in [`Document::best_effort`] are placeholders (filled in for a
    /// missing field, put in place of a value of the wrong type, or removed).
    pub placeholders: Vec<FieldPath>,
    /// The source line of each field (see [`Document::line_of`]).
    pub lines: FieldLines,
}

impl Document {
    /// Whether the document has an error.
    pub fn has_errors(&self) -> bool {
        self.problems.has_errors()
    }

    /// The 1-based source line of the field at `path`: its key's line, else the line of the
    /// nearest parent written in the source, else the document's first line.
    pub fn line_of(&self, path: &FieldPath) -> usize {
        self.lines.line_of(path).unwrap_or(self.line)
    }

    /// The typed object to run further checks on: the valid object, or the best-effort one of
    /// an invalid document (never a reason to call the document valid).
    pub fn object_for_checks(&self) -> Option<&AnyObject> {
        match &self.outcome {
            Outcome::Valid(obj) => Some(obj),
            _ => self.best_effort.as_ref(),
        }
    }

    /// Whether `path` is at or under a placeholder of [`Document::best_effort`].
    pub fn is_placeholder(&self, path: &FieldPath) -> bool {
        self.placeholders.iter().any(|p| is_at_or_under(path, p))
    }
}

/// Whether `path` is `parent` or a field, index or key under it.
fn is_at_or_under(path: &FieldPath, parent: &FieldPath) -> bool {
    let (path, parent) = (path.as_str(), parent.as_str());
    parent.is_empty()
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Checks size and encoding of raw input.
pub fn decode_source<'a>(source_name: &str, bytes: &'a [u8]) -> Result<&'a str, ModelError> {
    if bytes.len() > MAX_SOURCE_BYTES {
        return Err(ModelError::TooLarge {
            source_name: source_name.to_owned(),
            size: bytes.len(),
            limit: MAX_SOURCE_BYTES,
        });
    }
    std::str::from_utf8(bytes).map_err(|e| ModelError::NotUtf8 {
        source_name: source_name.to_owned(),
        offset: e.valid_up_to(),
    })
}

/// Parses every document of `text` (YAML or JSON) and checks each strictly.
pub fn parse_source(source_name: &str, text: &str) -> Result<Vec<Document>, ModelError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw = if looks_like_json(text) {
        split_json(text)
    } else {
        split_yaml(text)
    };
    if raw.is_empty() {
        return Err(ModelError::Empty {
            source_name: source_name.to_owned(),
        });
    }
    let mut docs = Vec::new();
    for (line, parsed) in raw {
        match parsed {
            Err(problem) => docs.push(Document {
                index: docs.len(),
                line,
                api_version: None,
                kind: None,
                name: None,
                outcome: Outcome::Invalid,
                problems: {
                    let mut p = Problems::new();
                    p.push(problem);
                    p
                },
                best_effort: None,
                placeholders: Vec::new(),
                lines: FieldLines::none(),
            }),
            Ok((value, lines)) => expand(value, line, lines, &mut docs),
        }
    }
    Ok(docs)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn looks_like_json(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('{') || t.starts_with('[')
}

type RawDoc = (usize, Result<(Value, FieldLines), Problem>);

fn split_json(text: &str) -> Vec<RawDoc> {
    // A stream of JSON values (one object, an array, or several objects in a row).
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<UniqueKeys>();
    // Lines counted so far, up to `counted`: each byte is looked at once, however many values.
    let (mut counted, mut newlines) = (0, 0);
    loop {
        let offset = stream.byte_offset();
        newlines += text[counted..offset].matches('\n').count();
        counted = offset;
        let start_line = 1 + newlines;
        let line = start_line + leading_newlines(&text[offset..]);
        match stream.next() {
            None => break,
            Some(Ok(UniqueKeys(value))) => {
                // serde_json has no positions; the YAML reader (JSON is YAML) gives the lines.
                let end = stream.byte_offset();
                let lines = crate::yaml::load_document(&text[offset..end], start_line)
                    .map(|(_, lines)| lines)
                    .unwrap_or_default();
                match value {
                    Value::Array(items) => out.extend(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (line, Ok((v, lines.item(None, i))))),
                    ),
                    v => out.push((line, Ok((v, lines)))),
                }
            }
            Some(Err(e)) => {
                let msg = e.to_string();
                let message = if msg.starts_with("recursion limit exceeded") {
                    format!(
                        "mappings and lists nested more than {MAX_NESTING_DEPTH} levels deep at line {}, column {}",
                        e.line(),
                        e.column()
                    )
                } else {
                    format!(
                        "JSON syntax error at line {}, column {}: {}",
                        e.line(),
                        e.column(),
                        strip_location(&msg)
                    )
                };
                out.push((e.line(), Err(Problem::error(FieldPath::root(), message))));
                break;
            }
        }
    }
    out
}

/// A parser message without its trailing " at line L column C", which we print ourselves.
fn strip_location(msg: &str) -> String {
    msg.split(" at line ").next().unwrap_or(msg).to_owned()
}

fn leading_newlines(s: &str) -> usize {
    let ws: &str = &s[..s.len() - s.trim_start().len()];
    ws.matches('\n').count()
}

/// Splits YAML into documents at `---` and `...` lines, as kubectl does, and reads each (so a
/// broken document does not hide the others).
fn split_yaml(text: &str) -> Vec<RawDoc> {
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_separator = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "...";
        if is_separator || is_end {
            chunks.push((start, std::mem::take(&mut current)));
            start = i + 2;
            if is_separator && bare.len() > 3 {
                // Content after the marker on the same line belongs to the new document.
                current.push_str(&bare[4..]);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        current.push_str(line);
    }
    chunks.push((start, current));

    let first_content = |chunk: &str| {
        chunk.lines().position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
    };
    let mut out = Vec::new();
    let mut chunks = chunks.into_iter();
    while let Some((start, chunk)) = chunks.next() {
        let Some(offset) = first_content(&chunk) else { continue };
        let line = start + offset;
        // Input nested too deep is refused before the parser reads it where a byte scan can
        // tell (the parser is slow on token-dense input), and by the parser otherwise; either
        // way the rest of the stream is not read.
        let parsed = match crate::nesting::too_deep(&chunk, MAX_NESTING_DEPTH) {
            Some(at) => {
                let before = &chunk[..at];
                let column = at - before.rfind('\n').map_or(0, |n| n + 1) + 1;
                Err(crate::yaml::YamlError {
                    line: start + before.matches('\n').count(),
                    column: Some(column),
                    message: crate::yaml::nesting_message(),
                    syntax: false,
                    too_deep: true,
                })
            }
            None => crate::yaml::load_document(&chunk, start),
        };
        let stop = parsed.as_ref().is_err_and(|e| e.too_deep);
        let parsed = parsed.map_err(|e| {
            let at = match e.column {
                Some(c) => format!("line {}, column {c}", e.line),
                None => format!("line {}", e.line),
            };
            let message = if e.syntax {
                format!("YAML syntax error at {at}: {}", e.message)
            } else {
                format!("{} at {at}", e.message)
            };
            let rest = if stop && chunks.as_slice().iter().any(|(_, c)| first_content(c).is_some()) {
                "; the documents after it are not read"
            } else {
                ""
            };
            Problem::error(FieldPath::root(), format!("{message}{rest}"))
        });
        out.push((line, parsed));
        if stop {
            break;
        }
    }
    out
}

fn expand(mut value: Value, line: usize, lines: FieldLines, docs: &mut Vec<Document>) {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    if is_list && let Some(Value::Array(items)) = value.as_object_mut().and_then(|m| m.remove("items")) {
        for (i, item) in items.into_iter().enumerate() {
            expand(item, line, lines.item(Some("items"), i), docs);
        }
        return;
    }
    let mut doc = check_document(docs.len(), line, value);
    doc.lines = lines;
    docs.push(doc);
}

/// Strictly parses and validates one document.
pub fn check_document(index: usize, line: usize, mut value: Value) -> Document {
    let mut problems = Problems::new();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let api_version = text(&value, "apiVersion");
    let kind_name = text(&value, "kind");
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut doc = Document {
        index,
        line,
        api_version: api_version.clone(),
        kind: kind_name.clone(),
        name,
        outcome: Outcome::Invalid,
        problems: Problems::new(),
        best_effort: None,
        placeholders: Vec::new(),
        lines: FieldLines::none(),
    };

    if !value.is_object() {
        let found = match &value {
            Value::Null => "empty",
            Value::Array(_) => "a list",
            Value::String(_) => "a string",
            _ => "a scalar",
        };
        problems.error_hint(
            FieldPath::root(),
            format!("document is {found}, not an object"),
            "a manifest is a mapping with apiVersion, kind, metadata and spec",
        );
        doc.problems = problems;
        return doc;
    }

    if let Some(v) = value.get("apiVersion").filter(|v| !v.is_string()) {
        problems.error(
            FieldPath::root().field("apiVersion"),
            format!("expected string, found {}", json_type(v)),
        );
        doc.problems = problems;
        return doc;
    }
    if let Some(v) = value.get("kind").filter(|v| !v.is_string()) {
        problems.error(
            FieldPath::root().field("kind"),
            format!("expected string, found {}", json_type(v)),
        );
        doc.problems = problems;
        return doc;
    }
    if let Some(av) = api_version.as_deref().filter(|av| !av.contains('/'))
        && (av == GROUP || strsim::levenshtein(av, GROUP) <= 3)
    {
        problems.error_hint(
            FieldPath::root().field("apiVersion"),
            format!("{av:?} has no version"),
            format!("write apiVersion: {API_VERSION}"),
        );
        doc.problems = problems;
        return doc;
    }
    let kind = match (&api_version, &kind_name) {
        (None, _) => {
            problems.error_hint(
                FieldPath::root().field("apiVersion"),
                "required field is missing",
                format!("write apiVersion: {API_VERSION}"),
            );
            if kind_name.is_none() {
                problems.error(FieldPath::root().field("kind"), "required field is missing");
            }
            None
        }
        (Some(av), kind) => {
            let (group, version) = av.rsplit_once('/').unwrap_or(("", av.as_str()));
            if group != GROUP {
                if group.eq_ignore_ascii_case(GROUP) || strsim::levenshtein(group, GROUP) <= 3 {
                    problems.error_hint(
                        FieldPath::root().field("apiVersion"),
                        format!("unknown API group {group:?}"),
                        format!("did you mean {API_VERSION}?"),
                    );
                } else {
                    doc.outcome = Outcome::Skipped(format!(
                        "{av} {} is not a security-profiles-operator kind",
                        kind.as_deref().unwrap_or("?")
                    ));
                    return doc;
                }
                None
            } else {
                if version != VERSION {
                    problems.error_hint(
                        FieldPath::root().field("apiVersion"),
                        format!("version {version} is not served; this API speaks {VERSION} only"),
                        format!("change apiVersion to {API_VERSION}; v1 spells recorder, mergeStrategy and logEnricherSource values in PascalCase (Bpf, Logs, None, Containers, Auditd)"),
                    );
                }
                match kind {
                    None => {
                        problems.error(FieldPath::root().field("kind"), "required field is missing");
                        None
                    }
                    Some(k) => match Kind::parse(k) {
                        Some(kind) => Some(kind),
                        None => {
                            problems.error_hint(
                                FieldPath::root().field("kind"),
                                format!("unknown kind {k:?}"),
                                suggestion(k, Kind::ALL.iter().map(|k| k.as_str())),
                            );
                            None
                        }
                    },
                }
            }
        }
    };
    let Some(kind) = kind else {
        doc.problems = problems;
        return doc;
    };

    if let Some(map) = value.as_object()
        && map.contains_key("status")
    {
        problems.push(
            Problem::warning(
                FieldPath::root().field("status"),
                "status is written by the operator; the apiserver ignores it on create",
            )
            .with_hint("remove status from the manifest"),
        );
    }
    let schema = crate::crd::schema_of(kind);
    check_against_schema(&mut value, schema, &mut problems);
    let schema_failed = problems.has_errors();
    match AnyObject::from_ref(kind, &value) {
        Ok(obj) => {
            add_rule_problems(&obj, &[], &mut problems);
            if problems.has_errors() {
                doc.best_effort = Some(obj);
            } else {
                doc.outcome = Outcome::Valid(obj);
            }
        }
        Err(e) => {
            // Type and enum errors were already reported by the schema pass with better words.
            if !schema_failed {
                problems.push(e.problem);
            }
            if let Some((obj, placeholders)) = best_effort(kind, value, schema) {
                add_rule_problems(&obj, &placeholders, &mut problems);
                doc.best_effort = Some(obj);
                doc.placeholders = placeholders;
            }
        }
    }
    doc.problems = problems;
    doc
}

/// Adds the kind's own rules' findings to `problems`. Value errors of the schema pass (ranges,
/// patterns) still leave a typed object, so the user sees everything at once; a rule that
/// repeats a schema finding at the same path is left out, and so is one about a placeholder.
fn add_rule_problems(obj: &AnyObject, placeholders: &[FieldPath], problems: &mut Problems) {
    let reported: std::collections::HashSet<FieldPath> = problems.errors().map(|p| p.path.clone()).collect();
    for p in obj.validate() {
        if !reported.contains(&p.path) && !placeholders.iter().any(|ph| is_at_or_under(&p.path, ph)) {
            problems.push(p);
        }
    }
}

/// The typed object of a document that does not fit its schema, with placeholders for what is
/// missing or does not fit, and the paths of those placeholders.
fn best_effort(kind: Kind, mut value: Value, schema: &Value) -> Option<(AnyObject, Vec<FieldPath>)> {
    let mut placeholders = fill_placeholders(&mut value, schema);
    // What the schema does not say (a timestamp's format, say) is found by the typed parse
    // itself; drop each failing value and try again, a few times.
    for _ in 0..8 {
        match AnyObject::from_ref(kind, &value) {
            Ok(obj) => return Some((obj, placeholders)),
            Err(e) => {
                if !remove_at(&mut value, &e.steps) {
                    return None;
                }
                placeholders.push(e.problem.path);
            }
        }
    }
    None
}

/// Removes the value at `steps` (a list item or a mapping entry); false when there is none.
fn remove_at(value: &mut Value, steps: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut at = value;
    for step in parents {
        let next = match (step, at) {
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index),
            (Segment::Map { key }, Value::Object(map)) => map.get_mut(key),
            _ => None,
        };
        let Some(next) = next else { return false };
        at = next;
    }
    match (last, at) {
        (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        (Segment::Map { key }, Value::Object(map)) => map.remove(key).is_some(),
        _ => false,
    }
}

/// A JSON value deserialized from YAML or JSON that refuses duplicate mapping keys, as
/// kubectl does: with plain maps the last duplicate would silently win.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor).map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(UniqueKeys(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_yaml_documents_with_lines() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n\n---\napiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: s}\nspec: {defaultAction: SCMP_ACT_LOG}\n";
        let docs = parse_source("t.yaml", text).expect("parse");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line, 3);
        assert!(matches!(docs[0].outcome, Outcome::Skipped(_)));
        assert_eq!(docs[1].line, 9);
        assert!(
            matches!(docs[1].outcome, Outcome::Valid(AnyObject::SeccompProfile(_))),
            "{:?}",
            docs[1]
        );
    }

    #[test]
    fn empty_and_comment_only_sources_are_errors() {
        assert!(matches!(parse_source("e", ""), Err(ModelError::Empty { .. })));
        assert!(matches!(
            parse_source("e", "# nothing\n---\n"),
            Err(ModelError::Empty { .. })
        ));
    }

    #[test]
    fn json_lists_and_streams() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"security-profiles-operator.x-k8s.io/v1","kind":"SeccompProfile","metadata":{"name":"a"},"spec":{"defaultAction":"SCMP_ACT_ALLOW"}}]}"#;
        let docs = parse_source("l.json", text).expect("parse");
        assert_eq!(docs.len(), 1);
        assert!(!docs[0].has_errors(), "{}", docs[0].problems);
        let broken = parse_source("b.json", "{\"a\": }").expect("parse");
        assert!(
            broken[0]
                .problems
                .iter()
                .next()
                .is_some_and(|p| p.message.starts_with("JSON syntax error at line 1"))
        );
    }

    #[test]
    fn yaml_syntax_errors_name_the_file_line() {
        let text = "apiVersion: v1\nkind: Pod\n---\napiVersion: x\n  kind: : bad\n";
        let docs = parse_source("s.yaml", text).expect("parse");
        let msg = &docs[1].problems.iter().next().expect("problem").message;
        assert!(msg.starts_with("YAML syntax error at line 5"), "{msg}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let yaml = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: d}\nspec:\n  defaultAction: SCMP_ACT_LOG\n  defaultAction: SCMP_ACT_ALLOW\n";
        let docs = parse_source("d.yaml", yaml).expect("parse");
        let msg = &docs[0].problems.iter().next().expect("problem").message;
        assert!(msg.contains("duplicate key \"defaultAction\""), "{msg}");
        let json = r#"{"apiVersion": "v1", "kind": "Pod", "kind": "Service"}"#;
        let docs = parse_source("d.json", json).expect("parse");
        assert!(docs[0].has_errors());
    }

    #[test]
    fn api_version_without_version() {
        let docs = parse_source(
            "v.yaml",
            "apiVersion: security-profiles-operator.x-k8s.io\nkind: SeccompProfile\n",
        )
        .expect("parse");
        let p = docs[0].problems.iter().next().expect("problem");
        assert_eq!(p.path.as_str(), "apiVersion");
        assert!(p.message.contains("has no version"), "{p}");
        let docs = parse_source("v.yaml", "apiVersion: 1\nkind: SeccompProfile\n").expect("parse");
        assert_eq!(
            docs[0].problems.iter().next().expect("problem").message,
            "expected string, found number"
        );
    }

    #[test]
    fn limits_and_encoding() {
        let big = vec![b' '; MAX_SOURCE_BYTES + 1];
        assert!(matches!(decode_source("big", &big), Err(ModelError::TooLarge { .. })));
        assert!(matches!(
            decode_source("bin", b"abc\xff"),
            Err(ModelError::NotUtf8 { offset: 3, .. })
        ));
    }
}
