//! Objects in the shape SPO v1.0 writes them (`tests/fixtures/upstream-v1/`) parse without a
//! problem, read into the typed model with their v1.0 fields, and serialize back to the very
//! same document, so nothing a v1.0 operator or user wrote is dropped or moved.

use std::path::PathBuf;

use spo_model::{AnyObject, Outcome, ProfileState, parse_source};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream-v1")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Parses `name`, requires a valid object whose only warning is the one about a `status`
/// in a manifest (these objects are as the operator stores them), and checks that it
/// serializes back to the document it was read from.
fn parse_and_round_trip(name: &str) -> AnyObject {
    let text = fixture(name);
    let docs = parse_source(name, &text).expect("parse");
    assert_eq!(docs.len(), 1, "{name}");
    let doc = &docs[0];
    assert!(
        doc.problems
            .iter()
            .all(|p| p.path.as_str() == "status" && !p.is_error()),
        "{name}:\n{}",
        doc.problems
    );
    let Outcome::Valid(obj) = &doc.outcome else {
        panic!("{name}: {:?}", doc.outcome);
    };
    let original: serde_json::Value = serde_norway::from_str(&text).expect("yaml");
    let written = obj.to_value().expect("to json");
    assert_eq!(written, original, "{name} changed in a round trip");
    obj.clone()
}

#[test]
fn a_v1_node_status_keeps_node_name_in_spec_and_state_in_status() {
    let AnyObject::SecurityProfileNodeStatus(spns) = parse_and_round_trip("spns.yaml") else {
        panic!("not a node status");
    };
    assert_eq!(spns.spec.node_name, "node-1");
    assert_eq!(spns.state(), Some(ProfileState::Installed));
}

#[test]
fn a_v1_spod_keeps_typed_json_enricher_options_and_the_observed_generation() {
    let AnyObject::SecurityProfilesOperatorDaemon(spod) = parse_and_round_trip("spod.yaml") else {
        panic!("not a SPOD");
    };
    let options = spod
        .spec
        .enricher
        .as_ref()
        .and_then(|e| e.json_enricher_options.as_ref())
        .expect("options");
    assert_eq!(options.path(), Some("/var/log/spo/audit.json"));
    assert_eq!(
        (
            options.max_size_mb(),
            options.audit_log_max_backups,
            options.audit_log_max_age,
            options.interval_seconds()
        ),
        (50, Some(5), Some(14), 30)
    );
    let ready = &spod.status.as_ref().expect("status").conditions[0];
    assert_eq!(ready.observed_generation, Some(3));
}

#[test]
fn a_v1_profile_condition_keeps_its_observed_generation() {
    let AnyObject::SeccompProfile(sp) = parse_and_round_trip("seccompprofile.yaml") else {
        panic!("not a SeccompProfile");
    };
    let ready = &sp.status.as_ref().expect("status").conditions[0];
    assert_eq!((ready.observed_generation, ready.message.as_str()), (Some(2), ""));
}

#[test]
fn the_pre_v1_node_status_shape_is_reported() {
    let text = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SecurityProfileNodeStatus\nmetadata: {name: nginx-node-1}\nnodeName: node-1\nstatus: Installed\n";
    let docs = parse_source("old.yaml", text).expect("parse");
    assert!(
        docs[0].problems.errors().any(|p| p.path.as_str() == "nodeName"),
        "{}",
        docs[0].problems
    );
}
