//! Hostile names and fields through the operator's path (each kind's adapter and
//! `NodeKind::sync`, as the node side runs it): they end as an `Error` at the name,
//! validation, policy or render step, and never reach the install target (a file store, the
//! SELinux store, apparmor_parser). The backends' own property tests cover their renderers;
//! this pins that the adapters put nothing in front of those checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use spo_model::ProfileState;
use spo_model::contract::{SyncOutcome, SyncStep};
use spo_selinux::install::{InstalledModule, ModuleStore};
use spo_selinux::{RenderedModule, SelinuxError};

use super::NodeKind;
use super::apparmor::{AppArmorKind, SecurityfsLoader};
use super::seccomp::SeccompNode;
use super::selinux::{BatchInstaller, RawSelinuxKind, SelinuxKind, SelinuxNodeConfig};

/// Names no adapter may install under.
const HOSTILE_NAMES: &[&str] = &[
    "",
    ".",
    "..",
    "../etc/passwd",
    "a/b",
    "-rf",
    "--replace",
    "a b",
    "x;rm -rf /",
    "$(id)",
    "`id`",
    "a\nb",
    "a\0b",
    "Web",
    "web_raw",
    "(block x)",
    "\"quoted\"",
];

/// A store that counts every call that would change the system.
#[derive(Default)]
struct CountingStore {
    writes: AtomicUsize,
}

impl ModuleStore for CountingStore {
    fn list(&self) -> Result<Vec<InstalledModule>, SelinuxError> {
        Ok(Vec::new())
    }
    fn install(&self, _: &[RenderedModule]) -> Result<(), SelinuxError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn remove(&self, _: &[String]) -> Result<(), SelinuxError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn refused(step: Option<SyncStep>) -> bool {
    matches!(
        step,
        Some(SyncStep::Name | SyncStep::Validate | SyncStep::Policy | SyncStep::Render)
    )
}

fn meta(name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// A profile synced as the daemon's node side does it ([`NodeKind::start_sync`], awaiting a
/// queued install).
fn synced<K: NodeKind>(kind: &K, profile: &super::ProfileOf<K>, cx: &super::ContextOf<K>) -> SyncOutcome {
    match kind.start_sync(profile, cx) {
        super::Synced::Done(outcome) => outcome,
        super::Synced::Queued(done) => futures::executor::block_on(done),
    }
}

#[test]
fn hostile_names_reach_no_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir_all(&kubelet).expect("kubelet");
    let seccomp = SeccompNode::new(&kubelet, None);
    let selinuxfs = dir.path().join("selinuxfs");
    std::fs::create_dir_all(&selinuxfs).expect("selinuxfs");
    std::fs::write(selinuxfs.join("enforce"), "1").expect("enforce");
    let store = Arc::new(CountingStore::default());
    let config = SelinuxNodeConfig {
        selinuxfs,
        installer: BatchInstaller::new(store.clone(), Vec::new(), Duration::from_millis(5), 8),
    };
    let (selinux, raw) = (SelinuxKind::new(&config), RawSelinuxKind::new(&config));
    let securityfs = dir.path().join("securityfs");
    std::fs::create_dir_all(&securityfs).expect("securityfs");
    std::fs::write(securityfs.join("profiles"), "").expect("profiles");
    // The real parser (it checks while rendering); reaching install would write a profile
    // file, which is checked below.
    let apparmor = AppArmorKind::new(
        SecurityfsLoader {
            securityfs,
            profile_dir: dir.path().join("apparmor.d"),
            parser: spo_apparmor::validate::DEFAULT_PARSER.into(),
            features_file: None,
            timeout: Duration::from_secs(5),
        },
        None,
    );

    for name in HOSTILE_NAMES {
        let mut sp: spo_model::SeccompProfile =
            serde_norway::from_str("metadata: {name: x}\nspec: {defaultAction: SCMP_ACT_ERRNO}\n").expect("sp");
        sp.metadata = meta(name);
        let cx = seccomp.context(&super::ProfileCache::default(), None);
        let out = synced(&seccomp, &sp, &cx);
        assert_eq!(out.state, ProfileState::Error, "seccomp {name:?}: {out:?}");
        assert!(refused(out.failure.map(|f| f.step)), "seccomp {name:?}: {out:?}");

        let mut se: spo_model::SelinuxProfile = serde_norway::from_str("metadata: {name: x}\nspec: {}\n").expect("se");
        se.metadata = meta(name);
        let cx = selinux.context(&super::ProfileCache::default(), None);
        let out = synced(&selinux, &se, &cx);
        assert!(refused(out.failure.map(|f| f.step)), "selinux {name:?}: {out:?}");

        let mut rs: spo_model::RawSelinuxProfile =
            serde_norway::from_str("metadata: {name: x}\nspec: {policy: '(allow process tmp_t (dir (search)))'}\n")
                .expect("raw");
        rs.metadata = meta(name);
        let out = synced(&raw, &rs, &());
        assert!(refused(out.failure.map(|f| f.step)), "raw {name:?}: {out:?}");

        let mut aa: spo_model::AppArmorProfile = serde_norway::from_str(
            "metadata: {name: x}\nspec: {abstract: {filesystem: {readOnlyPaths: [/etc/hosts]}}}\n",
        )
        .expect("aa");
        aa.metadata = meta(name);
        let out = synced(&apparmor, &aa, &());
        assert!(refused(out.failure.map(|f| f.step)), "apparmor {name:?}: {out:?}");
    }
    assert_eq!(store.writes.load(Ordering::Relaxed), 0, "no SELinux store change");
    let seccomp_dir = kubelet.join("seccomp");
    assert!(
        !seccomp_dir.exists() || std::fs::read_dir(seccomp_dir.join("operator")).map_or(true, |d| d.count() == 0),
        "no seccomp file"
    );
    assert!(!dir.path().join("apparmor.d").exists(), "no AppArmor file");
}

#[test]
fn hostile_fields_reach_no_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let selinuxfs = dir.path().join("selinuxfs");
    std::fs::create_dir_all(&selinuxfs).expect("selinuxfs");
    std::fs::write(selinuxfs.join("enforce"), "1").expect("enforce");
    let store = Arc::new(CountingStore::default());
    let config = SelinuxNodeConfig {
        selinuxfs,
        installer: BatchInstaller::new(store.clone(), Vec::new(), Duration::from_millis(5), 8),
    };
    let (selinux, raw) = (SelinuxKind::new(&config), RawSelinuxKind::new(&config));
    let labels = [
        "shadow_t)) (allow process shadow_t (file (read",
        "x\n(in container",
        "\"",
        ";",
        "all",
        "process",
    ];
    for label in labels {
        let mut se: spo_model::SelinuxProfile =
            serde_norway::from_str("metadata: {name: web}\nspec: {}\n").expect("se");
        se.spec.allow = Some(
            [(
                label.to_owned(),
                [("file".to_owned(), vec!["read".to_owned()])].into_iter().collect(),
            )]
            .into_iter()
            .collect(),
        );
        let cx = selinux.context(&super::ProfileCache::default(), None);
        let out = synced(&selinux, &se, &cx);
        assert!(refused(out.failure.map(|f| f.step)), "label {label:?}: {out:?}");
        assert!(
            out.message.as_deref().is_some_and(|m| m.contains("spec.allow")),
            "{label:?}: {out:?}"
        );
    }
    let policies = [
        "(allow process tmp_t (dir (search))))\n(allow unconfined_t shadow_t (file (read)))",
        "(in container (allow process shadow_t (file (read))))",
        "(class evil (read))",
        "(allow process tmp_t (dir (search)) \x07",
    ];
    for policy in policies {
        let mut rs: spo_model::RawSelinuxProfile =
            serde_norway::from_str("metadata: {name: web}\nspec: {policy: x}\n").expect("raw");
        rs.spec.policy = policy.to_owned();
        let out = synced(&raw, &rs, &());
        assert!(refused(out.failure.map(|f| f.step)), "policy {policy:?}: {out:?}");
    }
    assert_eq!(store.writes.load(Ordering::Relaxed), 0, "no SELinux store change");

    let securityfs = dir.path().join("securityfs");
    std::fs::create_dir_all(&securityfs).expect("securityfs");
    std::fs::write(securityfs.join("profiles"), "").expect("profiles");
    let apparmor = AppArmorKind::new(
        SecurityfsLoader {
            securityfs,
            profile_dir: dir.path().join("apparmor.d"),
            parser: spo_apparmor::validate::DEFAULT_PARSER.into(),
            features_file: None,
            timeout: Duration::from_secs(5),
        },
        None,
    );
    for path in [
        "/etc/x\n}\nprofile evil {",
        "/a,b",
        "relative",
        "/etc/\"x",
        "/proc/../etc",
    ] {
        let mut aa: spo_model::AppArmorProfile = serde_norway::from_str(
            "metadata: {name: web}\nspec: {abstract: {filesystem: {readOnlyPaths: [/etc/hosts]}}}\n",
        )
        .expect("aa");
        if let Some(fs) = aa.spec.abstract_.as_mut().and_then(|a| a.filesystem.as_mut()) {
            fs.read_only_paths = Some(vec![path.to_owned()]);
        }
        let out = synced(&apparmor, &aa, &());
        assert!(refused(out.failure.map(|f| f.step)), "path {path:?}: {out:?}");
        assert!(
            out.message
                .as_deref()
                .is_some_and(|m| m.contains("spec.abstract.filesystem.readOnlyPaths")),
            "the refusal names the field, not a missing tool: {out:?}"
        );
    }
    assert!(!dir.path().join("apparmor.d").exists(), "no AppArmor file");
}
