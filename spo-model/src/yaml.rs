//! YAML read the way kubectl reads it, in time linear in the input, with the line of every
//! field.
//!
//! kubectl turns YAML into JSON with sigs.k8s.io/yaml over go-yaml v2 (YAML 1.1) without
//! looking at the target type (it decodes into a `RawExtension`), and the apiserver checks the
//! JSON against the CRD's schema. So a manifest means here what it means there:
//!
//! - **Booleans**: a plain (unquoted, untagged) scalar is `true` when it is one of `y Y yes Yes
//!   YES true True TRUE on On ON`, and `false` for `n N no No NO false False FALSE off Off OFF`.
//!   Other spellings (`yES`, `t`) and anything quoted are strings. The type of the field does
//!   not matter: `name: yes` is the boolean `true`, which the apiserver refuses for a string
//!   field ("expected string, found boolean"); write `name: "yes"` for the string.
//! - **Null**: plain `~`, `null`, `Null`, `NULL` or nothing.
//! - **Numbers**: plain integers in decimal, `0x` hex, `0o` or leading-`0` octal and `0b`
//!   binary, with `_` ignored, and floats (`1.5`, `1e3`, `.5`). A float with an integral
//!   value below 1e21 is written by kubectl as a JSON integer, so `1e2` fills an integer
//!   field. `.inf` and `.nan` cannot be written as JSON: kubectl fails on them, and so do we.
//! - **Keys**: resolved like values, then written as strings: `on: x` is the key `"true"`,
//!   `1: x` the key `"1"`; a null or collection key is an error.
//! - **Merge keys**: a plain `<<` key merges a mapping, an alias of one, or a list of them
//!   into its mapping. Entries are applied in the order written, each overwriting what is
//!   there, so keys written after `<<` win over merged ones (and merged ones over keys written
//!   before it, as go-yaml v2 does); within a list, earlier mappings win.
//! - **Tags**: `!!str` makes a string, `!!int`/`!!float`/`!!bool`/`!!null` must resolve to
//!   that type; tags outside the core schema leave the scalar a string. `!!binary` is refused.
//! - Timestamps stay strings (go-yaml v2 keeps them as text when decoding untyped).
//!
//! Stricter than kubectl, on purpose: a key written twice in one mapping is an error (kubectl
//! silently keeps the last), and input is refused past [`MAX_NESTING_DEPTH`] nested
//! collections (go-yaml stops at 10,000) or when aliases expand to more values than the input
//! could hold written out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use granit_parser::{ErrorKind, Event, Options, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Number, Value};

use crate::lines::{FieldLines, LineArena, LineKind, LineNode};

/// The deepest nesting of mappings and sequences accepted in a document (the document's own
/// mapping is level 1). SPO's kinds need fewer than 16 levels; JSON's reader stops at the same
/// depth.
pub const MAX_NESTING_DEPTH: usize = 128;

/// Why a YAML document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    /// 1-based line in the whole source.
    pub line: usize,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, lower case.
    pub message: String,
    /// Whether the text is not YAML at all (rather than YAML we refuse to read).
    pub syntax: bool,
    /// Whether it is nested past [`MAX_NESTING_DEPTH`] (the rest of the stream is not read).
    pub too_deep: bool,
}

/// A collection being read. Sequence items and mapping lines wait on the loader's shared
/// stacks (from `start`), so reading costs no allocation per node beyond the value itself.
struct Frame {
    anchor: usize,
    line: u32,
    /// Where this collection's items (or entries) start on the loader's stacks.
    start: usize,
    map: Option<MapFrame>,
}

struct MapFrame {
    map: serde_json::Map<String, Value>,
    /// Keys that came from a merge and were not written here (may still be written once).
    merged: HashSet<String>,
    /// The key waiting for its value: `None` when the next node is a key.
    key: Option<PendingKey>,
}

enum PendingKey {
    Key { name: String, line: u32 },
    Merge { line: u32 },
}

/// An anchored node: its value, how many values it holds and how deep it nests (to charge
/// and check each alias of it), and its line node.
struct Anchored {
    value: Value,
    size: usize,
    depth: usize,
    node: u32,
}

/// Reads one YAML document (`text` holds at most one; `first_line` is the source line of its
/// first line) into JSON and the lines of its fields. An empty document is `null`.
pub(crate) fn load_document(text: &str, first_line: usize) -> Result<(Value, FieldLines), YamlError> {
    let mut options = Options::default();
    options.flow_nesting_limit = MAX_NESTING_DEPTH;
    options.block_nesting_limit = MAX_NESTING_DEPTH;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut loader = Loader {
        first_line,
        stack: Vec::new(),
        values: Vec::new(),
        items: Vec::new(),
        entries: Vec::new(),
        arena: LineArena::default(),
        anchors: HashMap::new(),
        // Every value written in the source takes at least a byte; aliases and merges may
        // add as much again.
        budget: 2 * text.len() + 10_000,
        root: None,
    };
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| loader.scan_error(&e))?;
        loader.event(event, span)?;
    }
    let (value, root) = match loader.root.take() {
        Some(root) => root,
        None => (Value::Null, loader.push_node(first_line as u32, LineKind::Scalar)),
    };
    Ok((value, FieldLines::new(Arc::new(loader.arena), root)))
}

struct Loader {
    first_line: usize,
    stack: Vec<Frame>,
    /// Finished items of the open sequences.
    values: Vec<Value>,
    /// Line nodes of the items of the open sequences.
    items: Vec<u32>,
    /// Line entries of the open mappings, in the order applied (later ones win).
    entries: Vec<(Box<str>, u32, u32)>,
    arena: LineArena,
    anchors: HashMap<usize, Anchored>,
    budget: usize,
    root: Option<(Value, u32)>,
}

impl Loader {
    fn line(&self, span: &Span) -> u32 {
        u32::try_from(self.first_line + span.start.line() - 1).unwrap_or(u32::MAX)
    }

    fn scan_error(&self, e: &ScanError) -> YamlError {
        let line = self.first_line + e.marker().line().max(1) - 1;
        let nesting = matches!(e.kind(), ErrorKind::RecursionLimitExceeded);
        YamlError {
            line,
            column: Some(e.marker().col() + 1),
            message: if nesting { nesting_message() } else { e.info() },
            syntax: !nesting,
            too_deep: nesting,
        }
    }

    fn error(&self, span: &Span, message: impl Into<String>) -> YamlError {
        YamlError {
            line: self.line(span) as usize,
            column: Some(span.start.col() + 1),
            message: message.into(),
            syntax: false,
            too_deep: false,
        }
    }

    fn too_deep(&self, span: &Span) -> YamlError {
        YamlError {
            too_deep: true,
            ..self.error(span, nesting_message())
        }
    }

    fn push_node(&mut self, line: u32, kind: LineKind) -> u32 {
        self.arena.nodes.push(LineNode { line, kind });
        u32::try_from(self.arena.nodes.len() - 1).unwrap_or(u32::MAX)
    }

    fn pending_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                map: Some(MapFrame { key: None, .. }),
                ..
            })
        )
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let line = self.line(&span);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if self.pending_key() {
                    return self.scalar_key(&text, style, tag.as_deref(), line, &span);
                }
                let value = resolve_scalar(&text, style, tag.as_deref()).map_err(|m| self.error(&span, m))?;
                let node = self.push_node(line, LineKind::Scalar);
                self.finish(value, node, anchor, &span)
            }
            Event::Alias(id) => {
                let Some(a) = self.anchors.get(&id) else {
                    return Err(self.error(&span, "alias of an unknown anchor"));
                };
                if self.stack.len() + a.depth > MAX_NESTING_DEPTH {
                    return Err(self.too_deep(&span));
                }
                self.budget = self
                    .budget
                    .checked_sub(a.size)
                    .ok_or_else(|| self.error(&span, alias_message()))?;
                let (value, node) = (a.value.clone(), a.node);
                if self.pending_key() {
                    let name = key_name(&value).map_err(|m| self.error(&span, m))?;
                    return self.set_key(PendingKey::Key { name, line }, &span);
                }
                self.finish(value, node, 0, &span)
            }
            Event::SequenceStart(_, anchor, _) => self.open(anchor, line, None, &span),
            Event::MappingStart(_, anchor, _) => self.open(
                anchor,
                line,
                Some(MapFrame {
                    map: serde_json::Map::new(),
                    merged: HashSet::new(),
                    key: None,
                }),
                &span,
            ),
            Event::SequenceEnd | Event::MappingEnd => self.close(&span),
            Event::UnresolvedAlias(name) => Err(self.error(&span, format!("alias *{name} has no anchor"))),
            _ => Ok(()),
        }
    }

    fn scalar_key(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        line: u32,
        span: &Span,
    ) -> Result<(), YamlError> {
        let plain = style == ScalarStyle::Plain;
        if text == "<<" && ((plain && tag.is_none()) || tag.is_some_and(is_merge_tag)) {
            return self.set_key(PendingKey::Merge { line }, span);
        }
        let value = resolve_scalar(text, style, tag).map_err(|m| self.error(span, m))?;
        let mut name = key_name(&value).map_err(|m| self.error(span, m))?;
        if value.is_number() {
            // A float key keeps its float spelling (`1000000.0` is "1e+06").
            let digits: String = text.chars().filter(|&c| c != '_').collect();
            if go_int(&digits).is_none()
                && let Ok(f) = digits.parse::<f64>()
            {
                name = go_float_key(f);
            }
        }
        self.set_key(PendingKey::Key { name, line }, span)
    }

    fn open(&mut self, anchor: usize, line: u32, map: Option<MapFrame>, span: &Span) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_NESTING_DEPTH {
            return Err(self.too_deep(span));
        }
        if self.pending_key() {
            return Err(self.error(span, "a mapping key is a mapping or a list; keys must be scalars"));
        }
        let start = if map.is_some() {
            self.entries.len()
        } else {
            self.values.len()
        };
        self.stack.push(Frame {
            anchor,
            line,
            start,
            map,
        });
        Ok(())
    }

    fn close(&mut self, span: &Span) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let (value, kind) = match frame.map {
            None => {
                let values = self.values.split_off(frame.start);
                let start = self.arena.items.len();
                let items = self.items.split_off(frame.start);
                let len = items.len();
                self.arena.items.extend(items);
                (
                    Value::Array(values),
                    LineKind::Seq {
                        start: to_u32(start),
                        len: to_u32(len),
                    },
                )
            }
            Some(m) => {
                let mut entries = self.entries.split_off(frame.start);
                // Keep the last entry of each key, sorted for lookup.
                entries.reverse();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.dedup_by(|later, earlier| later.0 == earlier.0);
                let start = self.arena.entries.len();
                let len = entries.len();
                self.arena.entries.extend(entries);
                (
                    Value::Object(m.map),
                    LineKind::Map {
                        start: to_u32(start),
                        len: to_u32(len),
                    },
                )
            }
        };
        let node = self.push_node(frame.line, kind);
        self.finish(value, node, frame.anchor, span)
    }

    fn set_key(&mut self, key: PendingKey, span: &Span) -> Result<(), YamlError> {
        if let PendingKey::Key { name, .. } = &key
            && let Some(Frame { map: Some(m), .. }) = self.stack.last()
            && m.map.contains_key(name)
            && !m.merged.contains(name)
        {
            return Err(self.error(span, format!("duplicate key {name:?}")));
        }
        if let Some(Frame { map: Some(m), .. }) = self.stack.last_mut() {
            if let PendingKey::Key { name, .. } = &key {
                m.merged.remove(name);
            }
            m.key = Some(key);
        }
        Ok(())
    }

    /// Records a finished node (anchoring it when asked) and adds it to the collection being
    /// read, or makes it the document.
    fn finish(&mut self, value: Value, node: u32, anchor: usize, span: &Span) -> Result<(), YamlError> {
        if anchor != 0 {
            let (size, depth) = measure(&value);
            self.budget = self
                .budget
                .checked_sub(size)
                .ok_or_else(|| self.error(span, alias_message()))?;
            self.anchors.insert(
                anchor,
                Anchored {
                    value: value.clone(),
                    size,
                    depth,
                    node,
                },
            );
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some((value, node));
            return Ok(());
        };
        let Some(m) = frame.map.as_mut() else {
            self.values.push(value);
            self.items.push(node);
            return Ok(());
        };
        match m.key.take() {
            None => {
                let name = key_name(&value).map_err(|msg| self.error(span, msg))?;
                let line = self.line(span);
                self.set_key(PendingKey::Key { name, line }, span)
            }
            Some(PendingKey::Key { name, line }) => {
                self.entries.push((name.clone().into_boxed_str(), line, node));
                m.map.insert(name, value);
                Ok(())
            }
            Some(PendingKey::Merge { line }) => {
                let merged = self.merge(value, node).ok_or_else(|| YamlError {
                    line: line as usize,
                    column: None,
                    message: "a merge (<<) takes a mapping or a list of mappings".to_owned(),
                    syntax: false,
                    too_deep: false,
                })?;
                self.budget = self.budget.checked_sub(merged).ok_or_else(|| YamlError {
                    line: line as usize,
                    column: None,
                    message: alias_message(),
                    syntax: false,
                    too_deep: false,
                })?;
                Ok(())
            }
        }
    }

    /// Applies a merge (`<<: value`) to the open mapping, go-yaml v2's way: each merged entry
    /// overwrites what is there, and of a list of mappings the earlier win (the list is
    /// applied backwards). Returns how many values were copied, or `None` when `value` is not
    /// a mapping or a list of mappings.
    fn merge(&mut self, value: Value, node: u32) -> Option<usize> {
        let sources: Vec<(serde_json::Map<String, Value>, u32)> = match value {
            Value::Object(map) => vec![(map, node)],
            Value::Array(items) if !items.is_empty() => {
                let LineKind::Seq { start, .. } = self.arena.nodes.get(node as usize)?.kind else {
                    return None;
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let Value::Object(map) = item else { return None };
                    out.push((map, *self.arena.items.get(start as usize + i)?));
                }
                out.reverse();
                out
            }
            _ => return None,
        };
        let mut copied = 0;
        for (map, map_node) in sources {
            if let LineKind::Map { start, len } = self.arena.nodes.get(map_node as usize)?.kind {
                let run = self.arena.entries.get(start as usize..(start + len) as usize)?;
                self.entries.extend(run.iter().cloned());
            }
            let frame = self.stack.last_mut()?.map.as_mut()?;
            for (k, v) in map {
                copied += measure(&v).0;
                if !frame.map.contains_key(&k) {
                    frame.merged.insert(k.clone());
                }
                frame.map.insert(k, v);
            }
        }
        Some(copied)
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// How many values `value` holds and how deep its collections nest.
fn measure(value: &Value) -> (usize, usize) {
    match value {
        Value::Array(items) => items
            .iter()
            .map(measure)
            .fold((1, 1), |(n, d), (cn, cd)| (n + cn, d.max(cd + 1))),
        Value::Object(map) => map
            .values()
            .map(measure)
            .fold((1, 1), |(n, d), (cn, cd)| (n + cn, d.max(cd + 1))),
        _ => (1, 0),
    }
}

pub(crate) fn nesting_message() -> String {
    format!("mappings and lists nested more than {MAX_NESTING_DEPTH} levels deep")
}

fn alias_message() -> String {
    "aliases and merges expand to more values than the input holds; write the values out".to_owned()
}

fn is_merge_tag(tag: &Tag) -> bool {
    tag.is_yaml_core_schema_tag("merge")
}

/// A mapping key as the JSON key kubectl writes for it.
fn key_name(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => go_float_key(f),
            _ => n.to_string(),
        }),
        Value::Null => Err("a mapping key is null; quote it or give it a name".to_owned()),
        _ => Err("a mapping key is a mapping or a list; keys must be scalars".to_owned()),
    }
}

/// A float key as sigs.k8s.io/yaml writes it: the shortest form of its 32-bit value, in
/// exponent form below 1e-4 and from 1e6 on (`1.5`, `1e+06`).
fn go_float_key(f: f64) -> String {
    #[allow(clippy::cast_possible_truncation)] // kubectl rounds to 32 bits here too
    let f = f as f32;
    if f == 0.0 {
        return "0".to_owned();
    }
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        f.to_string()
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// The JSON value of a scalar as go-yaml v2 resolves it (see the module docs).
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let Some(tag) = tag else {
        return Ok(if style == ScalarStyle::Plain {
            resolve_plain(text)?
        } else {
            Value::String(text.to_owned())
        });
    };
    let Some(core) = tag.core_suffix() else {
        // `!custom` and `!`: go-yaml keeps the text.
        return Ok(Value::String(text.to_owned()));
    };
    let resolved = resolve_plain(text);
    let mismatch = || format!("cannot read {text:?} as !!{core}");
    match core {
        "str" | "timestamp" => Ok(Value::String(text.to_owned())),
        "binary" => Err("!!binary values are not supported; write the base64 text as a plain string".to_owned()),
        "bool" => resolved.ok().filter(Value::is_boolean).ok_or_else(mismatch),
        "null" => resolved.ok().filter(Value::is_null).ok_or_else(mismatch),
        "int" => resolved.ok().filter(|v| v.is_i64() || v.is_u64()).ok_or_else(mismatch),
        "float" => resolved.ok().filter(Value::is_number).ok_or_else(mismatch),
        _ => Ok(Value::String(text.to_owned())),
    }
}

fn resolve_plain(text: &str) -> Result<Value, String> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false));
        }
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
        | "-.INF" => {
            return Err(format!(
                "{text} is not a finite number, which JSON cannot hold; quote it for a string"
            ));
        }
        _ => {}
    }
    let first = text.as_bytes().first().copied().unwrap_or(b' ');
    if first == b'.' {
        if let Ok(f) = text.parse::<f64>()
            && f.is_finite()
        {
            return Ok(float_value(f));
        }
    } else if first.is_ascii_digit() || first == b'+' || first == b'-' {
        let plain: String = text.chars().filter(|&c| c != '_').collect();
        if let Some(n) = go_int(&plain) {
            return Ok(n);
        }
        if is_yaml_float(&plain)
            && let Ok(f) = plain.parse::<f64>()
        {
            return if f.is_finite() {
                Ok(float_value(f))
            } else {
                Err(format!("{text} is out of range for a number"))
            };
        }
    }
    Ok(Value::String(text.to_owned()))
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint` (prefixes `0x`, `0o`, `0b`, and a
/// leading `0` for octal).
fn go_int(s: &str) -> Option<Value> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = unsigned.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &unsigned[2..]),
        Some("0o") => (8, &unsigned[2..]),
        Some("0b") => (2, &unsigned[2..]),
        _ if unsigned.len() > 1 && unsigned.starts_with('0') => (8, &unsigned[1..]),
        _ => (10, unsigned),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        let i = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Value::from(i))
    } else if s.starts_with('+') && i64::try_from(magnitude).is_err() {
        // ParseUint takes no sign.
        None
    } else {
        Some(Value::from(magnitude))
    }
}

/// go-yaml's float pattern: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A float as kubectl's JSON has it: integral values below 1e21 are written as integers.
fn float_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        #[allow(clippy::cast_possible_truncation)] // range checked before each cast
        if f >= i64::MIN as f64 && f < i64::MAX as f64 {
            return Value::from(f as i64);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        if f >= 0.0 && f < u64::MAX as f64 {
            return Value::from(f as u64);
        }
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Writes `value` as block YAML that kubectl reads back as the same JSON: every string that
/// kubectl would read as something else (`y`, `no`, `on`, `1_000`, `0777`, `~`) or that is not
/// a plain word is quoted, multi-line text is a literal block where that keeps it exact.
/// serde_norway writes YAML 1.2, where `y` and `on` are plain strings, so its output is not
/// safe for kubectl.
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, crate::ModelError> {
    let value = serde_json::to_value(value).map_err(|source| crate::ModelError::WriteYaml { source })?;
    let mut out = String::new();
    match &value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            write_scalar(&mut out, other, 0);
            out.push('\n');
        }
    }
    Ok(out)
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        write_string(out, k, indent, false);
        out.push(':');
        write_child(out, v, indent);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => write_map(out, m, indent + 2),
            Value::Array(a) if !a.is_empty() => write_seq(out, a, indent + 2),
            other => {
                write_scalar(out, other, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// The value after `key:`.
fn write_child(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            out.push_str(&" ".repeat(indent + 2));
            write_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            out.push_str(&" ".repeat(indent + 2));
            write_seq(out, a, indent + 2);
        }
        other => {
            out.push(' ');
            write_scalar(out, other, indent + 2);
            out.push('\n');
        }
    }
}

fn write_scalar(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::String(s) => write_string(out, s, indent, true),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(out: &mut String, s: &str, indent: usize, block_ok: bool) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if block_ok && is_literal_safe(s) {
        out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
        for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&" ".repeat(indent));
                out.push_str(line);
            }
        }
    } else {
        // JSON's string syntax is YAML's double-quoted style.
        out.push_str(&Value::String(s.to_owned()).to_string());
    }
}

/// Whether `s` written plain is read back (by kubectl and by us) as the same string.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    (first.is_ascii_alphanumeric() || first == '/' || first == '_')
        && !s.ends_with(' ')
        && !s.contains("  ")
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '+' | '=' | '@' | ' ' | '(' | ')')
        })
        && resolve_plain(s).is_ok_and(|v| v.as_str() == Some(s))
}

/// Whether `s` (several lines) is kept exactly by a literal block: one trailing newline at
/// most, no trailing blanks, no control characters, and a first line that does not start with
/// a blank (it sets the block's indentation).
fn is_literal_safe(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.contains('\n')
        && !body.ends_with('\n')
        && !body.starts_with([' ', '\t', '\n'])
        && body
            .split('\n')
            .all(|l| !l.ends_with([' ', '\t']) && !l.chars().any(|c| c.is_control() && c != '\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Value {
        load_document(text, 1).expect("load").0
    }

    #[test]
    fn scalars_resolve_as_go_yaml_v2() {
        let v = load(
            "a: yes\nb: No\nc: ~\nd: 0x1F\ne: 017\nf: 0o17\ng: 1_000\nh: 1.5\ni: 1e3\nj: '1'\nk: 2001-12-14\nl: -0b11\nm: 08\nplus: +12\no: !!str 5\np: !!float 5\nq: .5\nr: 18446744073709551615\ns: yES\n",
        );
        let want = serde_json::json!({
            "a": true, "b": false, "c": null, "d": 31, "e": 15, "f": 15, "g": 1000, "h": 1.5,
            "i": 1000, "j": "1", "k": "2001-12-14", "l": -3, "m": 8, "plus": 12, "o": "5", "p": 5,
            "q": 0.5, "r": 18_446_744_073_709_551_615u64, "s": "yES"
        });
        assert_eq!(v, want);
        assert!(load_document("a: .nan\n", 1).is_err());
        assert!(load_document("a: !!int x\n", 1).is_err());
    }

    #[test]
    fn keys_are_strings_as_kubectl_writes_them() {
        let v = load("yes: a\n1: b\n1.5: c\n1000000.0: d\n~x: e\n");
        assert_eq!(
            v,
            serde_json::json!({"true": "a", "1": "b", "1.5": "c", "1e+06": "d", "~x": "e"})
        );
        assert!(load_document("~: a\n", 1).is_err());
        assert!(load_document("[a]: b\n", 1).is_err());
    }

    #[test]
    fn merges_follow_go_yaml_v2_order() {
        // (`y` would be the key "true": go-yaml v2 reads it as a boolean.)
        let v = load(
            "base: &b {x: 1, w: 2}\nafter: {<<: *b, x: 9}\nbefore: {x: 9, <<: *b}\nlist: {<<: [{x: 1}, {x: 2, z: 3}]}\n",
        );
        assert_eq!(v["after"], serde_json::json!({"x": 9, "w": 2}));
        assert_eq!(v["before"], serde_json::json!({"x": 1, "w": 2}));
        assert_eq!(v["list"], serde_json::json!({"x": 1, "z": 3}));
        assert!(load_document("a: {<<: 1}\n", 1).is_err());
        // Quoted, `<<` is an ordinary key.
        assert_eq!(load("'<<': 1\n"), serde_json::json!({"<<": 1}));
    }

    #[test]
    fn written_yaml_reads_back_the_same() {
        let v = serde_json::json!({
            "words": ["y", "no", "On", "1_000", "0777", "~", "", "a b", "a: b", "#x", "- x", "-1", "2001-12-14", "ok", "yES"],
            "text": "line one\n  indented\n\nlast\n",
            "nonl": "a\nb",
            "odd": " lead\n", "trail": "x \ny\n", "two": "x\n\n",
            "n": 5, "f": 1.5, "b": true, "z": null, "e": {}, "l": [],
            "nested": [{"a": [1, {"b": "c"}], "d": "e"}, [1, 2]],
            "yes": 1
        });
        let text = to_string(&v).expect("write");
        assert_eq!(load(&text), v, "{text}");
        assert!(text.contains("- \"y\""), "{text}");
        assert!(text.contains("text: |\n  line one\n    indented\n\n  last\n"), "{text}");
    }

    #[test]
    fn lines_are_source_lines() {
        let (_, lines) = load_document("a:\n  b: 1\n  c:\n  - x\n  - y\n", 10).expect("load");
        let p = crate::validate::FieldPath::root().field("a");
        assert_eq!(lines.line_of(&p.field("b")), Some(11));
        assert_eq!(lines.line_of(&p.field("c").index(1)), Some(14));
    }
}
