//! Reading manifests as kubectl does: bounded nesting, YAML 1.1 scalars and merge keys, every
//! problem in one pass, and the line of each problem's field.

use std::time::{Duration, Instant};

use spo_model::document::MAX_NESTING_DEPTH;
use spo_model::validate::FieldPath;
use spo_model::{AnyObject, Document, Outcome, parse_source};

const SECCOMP: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\n";
const APPARMOR: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: AppArmorProfile\n";

fn parse(text: &str) -> Vec<Document> {
    parse_source("t.yaml", text).expect("parse")
}

fn one(text: &str) -> Document {
    let mut docs = parse(text);
    assert_eq!(docs.len(), 1, "{docs:#?}");
    docs.remove(0)
}

fn messages(doc: &Document) -> Vec<String> {
    doc.problems.iter().map(ToString::to_string).collect()
}

fn path(p: &str) -> FieldPath {
    // Test paths are plain fields and indexes, so splitting on '.' is enough here.
    let mut out = FieldPath::root();
    for part in p.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        out = out.field(name);
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            out = out.index(index.trim_end_matches(']').parse().expect("index"));
        }
    }
    out
}

/// Parses `text`, which must be refused for nesting, and returns the message. Fails when
/// refusing takes longer than a second (the quadratic parser took 37.5 s on 100,000 `[`).
fn refused_for_nesting(text: &str) -> String {
    let start = Instant::now();
    let docs = parse_source("deep.yaml", text).expect("parse");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "refusing took {took:?}");
    assert_eq!(docs.len(), 1);
    assert!(matches!(docs[0].outcome, Outcome::Invalid), "{:?}", docs[0].outcome);
    let msg = docs[0].problems.iter().next().expect("a problem").message.clone();
    assert!(msg.contains("nested more than"), "{msg}");
    msg
}

#[test]
fn deep_flow_sequences_are_refused_in_linear_time_naming_the_line() {
    let n = 100_000;
    let text = format!("kind: SeccompProfile\nspec:\n  x: {}{}\n", "[".repeat(n), "]".repeat(n));
    let msg = refused_for_nesting(&text);
    assert!(msg.contains("line 3"), "{msg}");
}

#[test]
fn deep_flow_mappings_block_mappings_and_sequences_are_refused() {
    let n = 100_000;
    refused_for_nesting(&format!("a: {}1{}\n", "{a: ".repeat(n), "}".repeat(n)));
    let mut block = String::new();
    for i in 0..(MAX_NESTING_DEPTH + 10) {
        block.push_str(&" ".repeat(i));
        block.push_str("a:\n");
    }
    let msg = refused_for_nesting(&block);
    assert!(msg.contains(&format!("line {}", MAX_NESTING_DEPTH + 1)), "{msg}");
    refused_for_nesting(&format!("{}x\n", "- ".repeat(n)));
    // JSON too.
    let msg = refused_for_nesting(&format!("\n{}{}", "[".repeat(n), "]".repeat(n)));
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn a_stream_stops_at_its_first_document_nested_too_deep() {
    let deep = "[".repeat(MAX_NESTING_DEPTH + 1);
    let text = format!("a: 1\n---\nb: {deep}\n---\nc: {deep}\n---\nd: 2\n");
    let docs = parse_source("stream.yaml", &text).expect("parse");
    assert_eq!(docs.len(), 2, "the documents after the deep one are not read");
    assert!(!docs[0].problems.iter().any(|p| p.message.contains("nested")));
    let msg = &docs[1].problems.iter().next().expect("a problem").message;
    // `b:` is level 1, so the 128th `[` (column 3 + 128) is the 129th level.
    assert!(
        msg.contains("nested more than 128 levels deep at line 3, column 131"),
        "{msg}"
    );
    assert!(msg.ends_with("the documents after it are not read"), "{msg}");
    // The last document says nothing about documents after it.
    let text = format!("a: 1\n---\nb: {deep}\n---\n# only a comment\n");
    let docs = parse_source("stream.yaml", &text).expect("parse");
    let msg = &docs[1].problems.iter().next().expect("a problem").message;
    assert!(msg.ends_with("column 131"), "{msg}");
    // Nesting only an alias reveals is refused by the reader, and stops the stream the same way.
    let inner = MAX_NESTING_DEPTH - 2;
    let text = format!(
        "x: &a {}{}\ny: [[*a]]\n---\nz: 1\n",
        "[".repeat(inner),
        "]".repeat(inner)
    );
    let docs = parse_source("alias.yaml", &text).expect("parse");
    assert_eq!(docs.len(), 1);
    let msg = &docs[0].problems.iter().next().expect("a problem").message;
    assert!(msg.contains("nested more than") && msg.contains("line 2"), "{msg}");
    assert!(msg.ends_with("the documents after it are not read"), "{msg}");
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    // A document at depth 1 holding a value nested to the limit in total.
    let inner = MAX_NESTING_DEPTH - 1;
    let text = format!("a: {}{}\n", "[".repeat(inner), "]".repeat(inner));
    let docs = parse(&text);
    assert!(
        !docs[0].problems.iter().any(|p| p.message.contains("nested more than")),
        "{:?}",
        messages(&docs[0])
    );
    let text = format!("a: {}{}\n", "[".repeat(inner + 1), "]".repeat(inner + 1));
    assert!(
        parse(&text)[0]
            .problems
            .iter()
            .any(|p| p.message.contains("nested more than"))
    );
}

#[test]
fn yaml_1_1_booleans_are_booleans_as_kubectl_reads_them() {
    for (word, value) in [
        ("yes", true),
        ("Yes", true),
        ("YES", true),
        ("y", true),
        ("Y", true),
        ("on", true),
        ("On", true),
        ("ON", true),
        ("True", true),
        ("no", false),
        ("n", false),
        ("N", false),
        ("off", false),
        ("OFF", false),
        ("False", false),
    ] {
        let text = format!(
            "{APPARMOR}metadata: {{name: a}}\nspec:\n  abstract:\n    network:\n      allowedProtocols:\n        allowTcp: {word}\n"
        );
        let doc = one(&text);
        match &doc.outcome {
            Outcome::Valid(AnyObject::AppArmorProfile(p)) => {
                let tcp = p
                    .spec
                    .abstract_
                    .as_ref()
                    .and_then(|a| a.network.as_ref())
                    .and_then(|n| n.allowed_protocols.as_ref())
                    .and_then(|p| p.allow_tcp);
                assert_eq!(tcp, Some(value), "{word}");
            }
            other => panic!("{word}: {other:?} {:?}", messages(&doc)),
        }
    }
    // Not booleans: other spellings, and anything quoted.
    for word in ["yES", "oN", "\"yes\"", "'on'", "t", "1"] {
        let text = format!(
            "{APPARMOR}metadata: {{name: a}}\nspec:\n  abstract:\n    network:\n      allowedProtocols:\n        allowTcp: {word}\n"
        );
        let doc = one(&text);
        assert!(doc.has_errors(), "{word} was taken as a boolean");
    }
}

#[test]
fn a_yaml_1_1_boolean_in_a_string_field_is_a_type_error_as_the_apiserver_says() {
    // kubectl sends `name: yes` as JSON `true`; the apiserver refuses a boolean for a string.
    let doc = one(&format!(
        "{SECCOMP}metadata: {{name: yes}}\nspec: {{defaultAction: SCMP_ACT_LOG}}\n"
    ));
    assert!(
        messages(&doc)
            .iter()
            .any(|m| m == "metadata.name: expected string, found boolean"),
        "{:?}",
        messages(&doc)
    );
    // Quoted, it is the string.
    let doc = one(&format!(
        "{SECCOMP}metadata: {{name: \"yes\"}}\nspec: {{defaultAction: SCMP_ACT_LOG}}\n"
    ));
    assert!(!doc.has_errors(), "{:?}", messages(&doc));
    assert_eq!(doc.name.as_deref(), Some("yes"));
}

#[test]
fn yaml_1_1_numbers_and_keys_resolve_as_kubectl_resolves_them() {
    let text = format!(
        "{SECCOMP}metadata:\n  name: nums\n  labels: {{on: x, 1: z}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - names: [read]\n    action: SCMP_ACT_ERRNO\n    errnoRet: 0x10\n  - names: [write]\n    action: SCMP_ACT_ERRNO\n    errnoRet: 0o17\n  - names: [open]\n    action: SCMP_ACT_ERRNO\n    errnoRet: 1_000\n  - names: [close]\n    action: SCMP_ACT_ERRNO\n    errnoRet: 1e2\n"
    );
    let doc = one(&text);
    let Outcome::Valid(AnyObject::SeccompProfile(p)) = &doc.outcome else {
        panic!("{:?}", messages(&doc));
    };
    let errnos: Vec<Option<i64>> = p.spec.syscalls.iter().flatten().map(|s| s.errno_ret).collect();
    assert_eq!(errnos, vec![Some(16), Some(15), Some(1000), Some(100)]);
    let labels = p.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get("true").map(String::as_str), Some("x"));
    assert_eq!(labels.get("1").map(String::as_str), Some("z"));
}

#[test]
fn merge_keys_merge_as_kubectl_merges_them() {
    let text = format!(
        "{SECCOMP}metadata: {{name: m}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - &base\n    names: [read]\n    action: SCMP_ACT_ALLOW\n  - <<: *base\n    names: [write]\n  - names: [close]\n    <<: [{{action: SCMP_ACT_ERRNO, errnoRet: 5}}, {{action: SCMP_ACT_LOG, errnoRet: 7}}]\n"
    );
    let doc = one(&text);
    let Outcome::Valid(AnyObject::SeccompProfile(p)) = &doc.outcome else {
        panic!("{:?}", messages(&doc));
    };
    let got: Vec<(Vec<String>, String, Option<i64>)> = p
        .spec
        .syscalls
        .iter()
        .flatten()
        .map(|s| (s.names.clone(), s.action.to_string(), s.errno_ret))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec!["read".to_owned()], "SCMP_ACT_ALLOW".to_owned(), None),
            (vec!["write".to_owned()], "SCMP_ACT_ALLOW".to_owned(), None),
            // Earlier maps of a merge list win over later ones.
            (vec!["close".to_owned()], "SCMP_ACT_ERRNO".to_owned(), Some(5)),
        ]
    );
    // A merge of something that is not a mapping is refused, naming its line.
    let doc = one(&format!("{SECCOMP}metadata: {{name: m}}\nspec:\n  <<: [1, 2]\n"));
    let msg = doc.problems.iter().next().expect("problem").message.clone();
    assert!(msg.contains("merge") && msg.contains("line 5"), "{msg}");
    // A key written twice is still an error; one from a merge and one written is not.
    let doc = one(&format!(
        "{SECCOMP}metadata: {{name: m}}\nspec:\n  defaultAction: SCMP_ACT_LOG\n  defaultAction: SCMP_ACT_LOG\n"
    ));
    assert!(
        messages(&doc)
            .iter()
            .any(|m| m.contains("duplicate key \"defaultAction\""))
    );
}

#[test]
fn aliases_cannot_blow_up() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..30 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 10].join(", ")));
    }
    let start = Instant::now();
    let doc = one(&text);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        doc.problems.iter().any(|p| p.message.contains("alias")),
        "{:?}",
        messages(&doc)
    );
}

#[test]
fn a_missing_required_field_does_not_hide_the_typed_object() {
    let text = format!(
        "{SECCOMP}metadata:\n  name: s\nspec:\n  syscalls:\n  - names: [read, opne]\n    action: SCMP_ACT_ALLOW\n"
    );
    let doc = one(&text);
    assert!(matches!(doc.outcome, Outcome::Invalid));
    assert!(
        messages(&doc).contains(&"spec.defaultAction: required field is missing".to_owned()),
        "{:?}",
        messages(&doc)
    );
    let Some(AnyObject::SeccompProfile(p)) = &doc.best_effort else {
        panic!("no best-effort object: {:?}", doc.best_effort);
    };
    let names: Vec<&str> = p
        .spec
        .syscalls
        .iter()
        .flatten()
        .flat_map(|s| s.names.iter().map(String::as_str))
        .collect();
    assert_eq!(names, ["read", "opne"]);
    assert!(matches!(doc.object_for_checks(), Some(AnyObject::SeccompProfile(_))));

    // A field of the wrong type is replaced by a placeholder too; the rest survives.
    let text = format!(
        "{SECCOMP}metadata: {{name: s}}\nspec:\n  defaultAction: [x]\n  architectures: 7\n  syscalls:\n  - names: [opne]\n    action: SCMP_ACT_LOG\n    errnoRet: many\n"
    );
    let doc = one(&text);
    assert!(matches!(doc.outcome, Outcome::Invalid));
    let Some(AnyObject::SeccompProfile(p)) = &doc.best_effort else {
        panic!("no best-effort object: {:?}", messages(&doc));
    };
    assert_eq!(
        p.spec.syscalls.as_ref().map(|s| s[0].names.clone()),
        Some(vec!["opne".to_owned()])
    );

    // A valid document keeps its object in the outcome only.
    let doc = one(&format!(
        "{SECCOMP}metadata: {{name: s}}\nspec: {{defaultAction: SCMP_ACT_LOG}}\n"
    ));
    assert!(matches!(doc.outcome, Outcome::Valid(_)));
    assert!(doc.best_effort.is_none());
    assert!(doc.object_for_checks().is_some());
}

#[test]
fn problems_point_at_their_fields_line() {
    let text = format!(
        "# a comment\n---\n{SECCOMP}metadata:\n  name: s\nspec:\n  defautAction: SCMP_ACT_LOG\n  syscalls:\n  - names:\n    - read\n    - opne\n    action: SCMP_ACT_ALLOW\n  - {{names: [write], action: SCMP_ACT_BOGUS}}\n"
    );
    let doc = one(&text);
    assert_eq!(doc.line, 3);
    let line = |p: &str| doc.line_of(&path(p));
    assert_eq!(line("spec.defautAction"), 8);
    assert_eq!(line("spec.syscalls[0].names[1]"), 12);
    assert_eq!(line("spec.syscalls[1].action"), 14);
    // Missing fields fall back to the nearest parent that exists, then the document.
    assert_eq!(line("spec.defaultAction"), 7);
    assert_eq!(line("spec.syscalls[0].errnoRet"), 10);
    assert_eq!(line("nothing.here"), 3);
    assert_eq!(doc.line_of(&FieldPath::root()), 3);
    // Every problem of this document has a line inside it.
    for p in doc.problems.iter() {
        let l = doc.line_of(&p.path);
        assert!((3..=14).contains(&l), "{p}: {l}");
    }
    // Map keys in brackets, and keys holding dots.
    let doc = one(&format!(
        "{SECCOMP}metadata:\n  name: s\n  labels:\n    app.kubernetes.io/name: x\nspec:\n  defaultAction: SCMP_ACT_LOG\n"
    ));
    let labels = FieldPath::root().field("metadata").field("labels");
    assert_eq!(doc.line_of(&labels.key("app.kubernetes.io/name")), 6);
}

#[test]
fn json_problems_point_at_their_fields_line_too() {
    let text = "[\n{\"apiVersion\": \"security-profiles-operator.x-k8s.io/v1\", \"kind\": \"SeccompProfile\",\n \"metadata\": {\"name\": \"a\"},\n \"spec\": {\n  \"defaultAction\": \"SCMP_ACT_LOG\",\n  \"syscalls\": [{\"names\": [\"read\",\n     \"opne\"], \"action\": \"SCMP_ACT_ALLOW\"}]}},\n{\"apiVersion\": \"security-profiles-operator.x-k8s.io/v1\", \"kind\": \"SeccompProfile\",\n \"metadata\": {\"name\": \"b\"},\n \"spec\": {\"defautAction\": \"x\"}}\n]\n";
    let docs = parse_source("t.json", text).expect("parse");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].line_of(&path("spec.syscalls[0].names[1]")), 7);
    assert_eq!(docs[0].line_of(&path("spec.syscalls[0].action")), 7);
    assert_eq!(docs[1].line_of(&path("spec.defautAction")), 10);
    assert_eq!(docs[1].line_of(&path("spec.defaultAction")), 10);
}

#[test]
fn lines_of_lists_and_aliases() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: security-profiles-operator.x-k8s.io/v1\n  kind: SeccompProfile\n  metadata: {name: a}\n  spec:\n    defaultAction: SCMP_ACT_LOG\n- apiVersion: security-profiles-operator.x-k8s.io/v1\n  kind: SeccompProfile\n  metadata: {name: b}\n  spec:\n    defaultAction: SCMP_ACT_BAD\n";
    let docs = parse(text);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].line_of(&path("spec.defaultAction")), 13);
    assert_eq!(docs[0].line_of(&path("spec.defaultAction")), 8);
}
