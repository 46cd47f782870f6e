//! Strict checking of a document against the CRD's OpenAPI schema.
//!
//! The apiserver silently prunes fields its schema does not know; a misspelled
//! `defautAction` simply disappears. This walker reports each unknown field with its path and
//! the closest known name, and every type, enum, pattern, length and range violation, before
//! the document is turned into a typed object. It also drops `null` values the way the
//! apiserver does, so the typed parse sees what the cluster would store.

use regex::Regex;
use serde_json::{Map, Value};

use crate::validate::{FieldPath, Problem, Problems, did_you_mean, suggestion};

/// Fields of `metadata` that a manifest may carry.
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Hints for fields that were renamed or moved between upstream API versions.
fn legacy_hint(path: &FieldPath, key: &str) -> Option<&'static str> {
    match (path.as_str(), key) {
        ("spec", "tolerations" | "affinity" | "priorityClassName") => Some("in v1 this lives under spec.scheduling"),
        ("spec", "allowedSyscalls" | "allowedSeccompActions") => Some("in v1 this lives under spec.security"),
        ("spec", "enableSelinux" | "selinuxOptions" | "selinuxTypeTag" | "enableRawSelinuxProfiles") => {
            Some("in v1 SELinux settings live under spec.selinux")
        }
        ("spec", "enableLogEnricher" | "enableBpfRecorder" | "logEnricherFilters" | "enableJsonEnricher") => {
            Some("in v1 enricher settings live under spec.enricher")
        }
        ("spec", "staticWebhookConfig" | "webhookOptions") => Some("in v1 webhook settings live under spec.webhook"),
        _ => None,
    }
}

/// Checks `value` against `schema` (an `openAPIV3Schema`), appending every problem found.
/// `null` values of non-nullable fields are removed from `value`, as the apiserver does.
pub fn check_against_schema(value: &mut Value, schema: &Value, problems: &mut Problems) {
    walk(value, schema, &FieldPath::root(), problems);
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn expected_name(t: &str) -> &str {
    match t {
        "array" => "list",
        other => other,
    }
}

fn walk(value: &mut Value, schema: &Value, path: &FieldPath, problems: &mut Problems) {
    let Some(schema) = schema.as_object() else { return };
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            problems.error(
                path.clone(),
                format!("expected an integer or a string, found {}", type_name(value)),
            );
        }
        return;
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return;
    };
    let type_ok = match (ty, &*value) {
        ("object", Value::Object(_)) => true,
        ("array", Value::Array(_)) => true,
        ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("number", Value::Number(_)) => true,
        _ => false,
    };
    if !type_ok {
        let mut p = Problem::error(
            path.clone(),
            format!("expected {}, found {}", expected_name(ty), type_name(value)),
        );
        if let (Value::String(s), "integer" | "number" | "boolean") = (&*value, ty) {
            p = p.with_hint(format!("remove the quotes around {s:?}"));
        }
        if ty == "array" && !value.is_array() {
            p = p.with_hint("write a list, such as [a, b] or lines starting with '- '");
        }
        problems.push(p);
        return;
    }
    match value {
        Value::Object(map) => walk_object(map, schema, preserve, path, problems),
        Value::Array(items) => {
            check_count(items.len(), schema, path, problems, "items");
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, item_schema, &path.index(i), problems);
                }
            }
        }
        Value::String(s) => check_string(s, schema, path, problems),
        Value::Number(n) => check_number(n, schema, path, problems),
        _ => {}
    }
}

fn walk_object(
    map: &mut Map<String, Value>,
    schema: &Map<String, Value>,
    preserve: bool,
    path: &FieldPath,
    problems: &mut Problems,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    // Drop nulls the schema does not allow, as the apiserver prunes them.
    map.retain(|k, v| {
        if !v.is_null() {
            return true;
        }

        props
            .and_then(|p| p.get(k))
            .or(additional)
            .and_then(|s| s.get("nullable"))
            .and_then(Value::as_bool)
            == Some(true)
    });
    let known: Vec<&str> = props
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let at_root = path.as_str().is_empty();
    for (key, child) in map.iter_mut() {
        let child_path = path.field(key);
        if at_root && (key == "apiVersion" || key == "kind") {
            continue;
        }
        if at_root && key == "metadata" {
            match child.as_object_mut() {
                Some(m) => check_metadata_fields(m, &child_path, problems),
                None => problems.error(child_path, format!("expected object, found {}", type_name(child))),
            }
            continue;
        }
        if let Some(child_schema) = props.and_then(|p| p.get(key)) {
            walk(child, child_schema, &child_path, problems);
        } else if let Some(a) = additional {
            walk(child, a, &path.key(key), problems);
        } else if !preserve {
            let mut p = Problem::error(child_path.clone(), "unknown field");
            if let Some(h) = legacy_hint(path, key) {
                p = p.with_hint(h);
            } else if let Some(c) = did_you_mean(key, known.iter().copied()) {
                p.message = format!("unknown field, did you mean {c}?");
            } else if !known.is_empty() {
                p = p.with_hint(format!("known fields here: {}", known.join(", ")));
            }
            problems.push(p);
        }
    }
    for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(r) = req.as_str()
            && !map.contains_key(r)
        {
            problems.error(path.field(r), "required field is missing");
        }
    }
    check_count(map.len(), schema, path, problems, "properties");
}

fn check_metadata_fields(map: &mut Map<String, Value>, path: &FieldPath, problems: &mut Problems) {
    map.retain(|_, v| !v.is_null());
    for (key, v) in map.iter() {
        let p = path.field(key);
        if !OBJECT_META_FIELDS.contains(&key.as_str()) {
            let msg = match did_you_mean(key, OBJECT_META_FIELDS.iter().copied()) {
                Some(c) => format!("unknown field, did you mean {c}?"),
                None => "unknown field".to_owned(),
            };
            problems.error(p, msg);
            continue;
        }
        match key.as_str() {
            "name" | "generateName" | "namespace" if !v.is_string() => {
                problems.error(p, format!("expected string, found {}", type_name(v)));
            }
            "labels" | "annotations" => match v.as_object() {
                Some(m) => {
                    for (k, val) in m {
                        if !val.is_string() {
                            problems.error_hint(
                                p.key(k),
                                format!("expected string, found {}", type_name(val)),
                                "quote the value: label and annotation values are strings",
                            );
                        }
                    }
                }
                None => problems.error(p, format!("expected object, found {}", type_name(v))),
            },
            "finalizers" if !v.is_array() => problems.error(p, format!("expected list, found {}", type_name(v))),
            _ => {}
        }
    }
}

fn check_count(n: usize, schema: &Map<String, Value>, path: &FieldPath, problems: &mut Problems, what: &str) {
    let (min_key, max_key) = if what == "items" {
        ("minItems", "maxItems")
    } else {
        ("minProperties", "maxProperties")
    };
    let noun = if what == "items" { "items" } else { "entries" };
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64)
        && (n as u64) < min
    {
        problems.error(path.clone(), format!("{n} {noun}, at least {min} required"));
    }
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64)
        && (n as u64) > max
    {
        problems.error(path.clone(), format!("{n} {noun}, at most {max} allowed"));
    }
}

fn check_string(s: &str, schema: &Map<String, Value>, path: &FieldPath, problems: &mut Problems) {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        if !names.contains(&s) {
            problems.error_hint(
                path.clone(),
                format!("unknown value {s:?}"),
                suggestion(s, names.iter().copied()),
            );
            return;
        }
    }
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        let msg = if len == 0 {
            "must not be empty".to_owned()
        } else {
            format!("{len} characters, at least {min} required")
        };
        problems.error(path.clone(), msg);
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        problems.error(path.clone(), format!("{len} characters, at most {max} allowed"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => problems.error(path.clone(), format!("{s:?} does not match {pattern}")),
            _ => {}
        }
    }
}

fn check_number(n: &serde_json::Number, schema: &Map<String, Value>, path: &FieldPath, problems: &mut Problems) {
    let as_f = n.as_f64().unwrap_or(f64::NAN);
    let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
    let min = bound("minimum");
    let max = bound("maximum");
    if min.is_some_and(|m| as_f < m) || max.is_some_and(|m| as_f > m) {
        let range = match (min, max) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            (Some(a), None) => format!(">= {a}"),
            (None, Some(b)) => format!("<= {b}"),
            (None, None) => String::new(),
        };
        problems.error(path.clone(), format!("{n} is out of range {range}"));
    }
}

/// Makes `value` fit `schema` as far as a typed parse needs, for a best-effort object (see
/// [`crate::Document::best_effort`]): a missing required field gets a placeholder, a value of
/// the wrong type or outside its enum is replaced by one, and unknown fields are dropped.
/// A placeholder is the first enum value, else the minimum or zero, `""`, `false`, an empty
/// list, or an object with its own required fields filled. Returns the paths of the values
/// filled in or replaced.
pub fn fill_placeholders(value: &mut Value, schema: &Value) -> Vec<FieldPath> {
    let mut filled = Vec::new();
    conform(value, schema, &FieldPath::root(), &mut filled);
    filled
}

fn conform(value: &mut Value, schema: &Value, path: &FieldPath, filled: &mut Vec<FieldPath>) {
    let Some(schema_map) = schema.as_object() else { return };
    if schema_map.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            *value = placeholder(schema);
            filled.push(path.clone());
        }
        return;
    }
    let Some(ty) = schema_map.get("type").and_then(Value::as_str) else {
        return;
    };
    let type_ok = match (ty, &*value) {
        ("object", Value::Object(_)) | ("array", Value::Array(_)) | ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !type_ok {
        *value = placeholder(schema);
        filled.push(path.clone());
        return;
    }
    match value {
        Value::Object(map) => {
            let preserve = schema_map
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let props = schema_map.get("properties").and_then(Value::as_object);
            let additional = schema_map.get("additionalProperties").filter(|a| a.is_object());
            let at_root = path.as_str().is_empty();
            map.retain(|key, child| {
                if at_root && (key == "apiVersion" || key == "kind") {
                    return true;
                }
                if at_root && key == "metadata" {
                    conform_metadata(child);
                    return true;
                }
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    conform(child, child_schema, &path.field(key), filled);
                    true
                } else if let Some(a) = additional {
                    conform(child, a, &path.key(key), filled);
                    true
                } else {
                    preserve
                }
            });
            for req in schema_map
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = req.as_str()
                    && !map.contains_key(r)
                {
                    let child_schema = props.and_then(|p| p.get(r)).unwrap_or(&Value::Null);
                    map.insert(r.to_owned(), placeholder(child_schema));
                    filled.push(path.field(r));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema_map.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    conform(item, item_schema, &path.index(i), filled);
                }
            }
        }
        Value::String(s) => {
            if let Some(options) = schema_map.get("enum").and_then(Value::as_array)
                && !options.iter().any(|o| o.as_str() == Some(s.as_str()))
            {
                *value = placeholder(schema);
                filled.push(path.clone());
            }
        }
        _ => {}
    }
}

/// Keeps the metadata fields a typed parse can read.
fn conform_metadata(meta: &mut Value) {
    let Some(map) = meta.as_object_mut() else {
        *meta = Value::Object(Map::new());
        return;
    };
    map.retain(|key, v| match key.as_str() {
        "name" | "generateName" | "namespace" => v.is_string(),
        "labels" | "annotations" => match v.as_object_mut() {
            Some(m) => {
                m.retain(|_, val| val.is_string());
                true
            }
            None => false,
        },
        "finalizers" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        k => OBJECT_META_FIELDS.contains(&k),
    });
}

/// A value that fits `schema` (see [`fill_placeholders`]).
fn placeholder(schema: &Value) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return Value::from(0);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => Value::String(String::new()),
        Some("integer") => schema
            .get("minimum")
            .and_then(Value::as_i64)
            .map_or_else(|| Value::from(0), Value::from),
        Some("number") => schema
            .get("minimum")
            .cloned()
            .filter(Value::is_number)
            .unwrap_or_else(|| Value::from(0)),
        Some("boolean") => Value::Bool(false),
        Some("array") => Value::Array(Vec::new()),
        Some("object") => {
            let mut obj = Value::Object(Map::new());
            let mut ignored = Vec::new();
            conform(&mut obj, schema, &FieldPath::root().field("placeholder"), &mut ignored);
            obj
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(mut v: Value, schema: Value) -> Vec<String> {
        let mut p = Problems::new();
        check_against_schema(&mut v, &schema, &mut p);
        p.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unknown_fields_get_suggestions() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"defaultAction": {"type": "string"}}}}});
        assert_eq!(
            check(json!({"spec": {"defautAction": "x"}}), schema),
            vec!["spec.defautAction: unknown field, did you mean defaultAction?"]
        );
    }

    #[test]
    fn types_enums_and_ranges() {
        let schema = json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "integer", "minimum": 0, "maximum": 5},
            "b": {"type": "string", "enum": ["Bpf", "Logs"]},
            "c": {"type": "array", "maxItems": 1, "items": {"type": "boolean"}},
            "d": {"type": "string", "pattern": "^x+$"}
        }});
        let got = check(json!({"a": 7, "b": "bpf", "c": [true, "no"], "d": "y"}), schema.clone());
        assert_eq!(
            got,
            vec![
                "a: 7 is out of range 0..=5",
                "b: unknown value \"bpf\" (did you mean Bpf?)",
                "c: 2 items, at most 1 allowed",
                "c[1]: expected boolean, found string (remove the quotes around \"no\")",
                "d: \"y\" does not match ^x+$",
            ]
        );
        assert_eq!(
            check(json!({"a": "1"}), schema.clone()),
            vec!["a: expected integer, found string (remove the quotes around \"1\")"]
        );
        assert_eq!(check(json!({}), schema), vec!["a: required field is missing"]);
    }

    #[test]
    fn placeholders_fill_what_is_missing_or_wrong() {
        let schema = json!({"type": "object", "required": ["a", "o"], "properties": {
            "a": {"type": "string", "enum": ["X", "Y"]},
            "n": {"type": "integer", "minimum": 3},
            "o": {"type": "object", "required": ["b"], "properties": {"b": {"type": "boolean"}}},
            "keep": {"type": "array", "items": {"type": "string"}}
        }});
        let mut v = json!({"n": "many", "keep": ["x", 1], "unknown": 1});
        let filled = fill_placeholders(&mut v, &schema);
        assert_eq!(v, json!({"a": "X", "n": 3, "o": {"b": false}, "keep": ["x", ""]}));
        let filled: Vec<&str> = filled.iter().map(FieldPath::as_str).collect();
        assert_eq!(filled, ["keep[1]", "n", "a", "o"]);
    }

    #[test]
    fn nulls_are_pruned_like_the_apiserver() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let mut v = json!({"a": null});
        let mut p = Problems::new();
        check_against_schema(&mut v, &schema, &mut p);
        assert!(p.is_empty());
        assert_eq!(v, json!({}));
    }
}
