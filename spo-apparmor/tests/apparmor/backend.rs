//! The common contract end to end: sync_profile with the real validator and a fake loader.

use std::sync::Arc;

use spo_apparmor::loader::{FakeLoader, ProfileLoader};
use spo_apparmor::{AppArmorBackend, ParserValidator};
use spo_model::contract::{ProfileBackend, sync_profile};
use spo_model::{ProfileState, SpecState};

use crate::support::{fixture, require_parser};

#[test]
fn sync_installs_once_removes_when_disabled_and_reports_field_errors() {
    let Some(parser) = require_parser() else { return };
    let mut backend = AppArmorBackend::new(Arc::new(parser));
    // This kernel has no AppArmor: the probe looks at a stand-in securityfs.
    let securityfs = tempfile::tempdir().expect("tempdir");
    std::fs::write(securityfs.path().join("profiles"), "").expect("profiles");
    backend.securityfs = securityfs.path().to_path_buf();
    let fake = Arc::new(FakeLoader::new());
    let target: Arc<dyn ProfileLoader> = fake.clone();
    let profile = fixture("web-enforce");

    let first = sync_profile(&backend, &target, &profile, &());
    assert_eq!(first.state, ProfileState::Installed, "{first:?}");
    assert!(first.changed);
    let text = fake.text("web-frontend").expect("loaded");
    assert!(text.contains("profile web-frontend flags=(enforce,attach_disconnected,mediate_deleted) {"));
    let again = sync_profile(&backend, &target, &profile, &());
    assert!(!again.changed);
    assert_eq!(fake.loads(), 1, "an unchanged profile is not reloaded");

    let mut disabled = profile.clone();
    disabled.spec.state = SpecState::Disabled;
    let off = sync_profile(&backend, &target, &disabled, &());
    assert_eq!(off.state, ProfileState::Disabled);
    assert_eq!(fake.text("web-frontend"), None, "disabled profiles are unloaded");

    let mut partial = profile.clone();
    partial
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("spo.x-k8s.io/partial".into(), "true".into());
    assert_eq!(
        sync_profile(&backend, &target, &partial, &()).state,
        ProfileState::Partial
    );
    assert_eq!(fake.loads(), 1, "partial profiles are never loaded");

    let mut bad = profile.clone();
    let fs = bad
        .spec
        .abstract_
        .as_mut()
        .and_then(|a| a.filesystem.as_mut())
        .expect("fs");
    fs.read_only_paths = Some(vec!["/etc/{a".into()]);
    let err = sync_profile(&backend, &target, &bad, &());
    assert_eq!(err.state, ProfileState::Error);
    let msg = err.message.expect("message");
    assert!(msg.contains("spec.abstract.filesystem.readOnlyPaths[0]"), "{msg}");
    assert!(msg.contains("never closed"), "{msg}");
}

#[test]
fn a_node_without_apparmor_is_an_error_not_a_panic() {
    let backend = AppArmorBackend::new(Arc::new(ParserValidator::default()));
    let target: Arc<dyn ProfileLoader> = Arc::new(FakeLoader::without_apparmor());
    let outcome = sync_profile(&backend, &target, &fixture("web-enforce"), &());
    assert_eq!(outcome.state, ProfileState::Error);
    let msg = outcome.message.expect("message");
    assert!(msg.contains("the kernel has no AppArmor"), "{msg}");
    // Rendering alone works without a kernel.
    if require_parser().is_some() {
        backend.render(&fixture("web-enforce"), &()).expect("render");
    }
}

#[test]
fn a_missing_parser_is_a_precise_error() {
    let validator = ParserValidator {
        parser: "/nonexistent/apparmor_parser".into(),
        ..ParserValidator::default()
    };
    assert!(validator.available().is_err());
    let backend = AppArmorBackend::new(Arc::new(validator));
    let err = backend.render(&fixture("web-enforce"), &()).expect_err("no parser");
    assert!(
        err.to_string()
            .starts_with("running /nonexistent/apparmor_parser: install the apparmor package"),
        "{err}"
    );
}
