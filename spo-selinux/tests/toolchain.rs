//! The real tools: secilc compiles every fixture against the base policy (Debian's refpolicy
//! store, refpolicy's `container` module and the shim, built by `scripts/selinux-base`), bad
//! rules fail with secilc's own message mapped to the profile field, and semodule installs
//! into a private copy of the system store.
//!
//! A full secilc compile takes about 5 s here, so the good fixtures share one run and the bad
//! ones run in parallel. Needs `SPO_SELINUX_BASE` (`export SPO_SELINUX_BASE=$(scripts/selinux-base)`),
//! secilc, and for the store test root and semodule; without them each test says
//! `skipped: <reason>`, except in CI (`CI` set), where it fails instead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use spo_model::ProfileState;
use spo_model::contract::InstallOutcome;
use spo_model::contract::RemoveOutcome;
use spo_model::selinux::{RawSelinuxProfile, RawSelinuxProfileSpec, SelinuxProfile};
use spo_selinux::install::{InstalledModule, ModuleStore};
use spo_selinux::render::{ModuleOrigin, render_with_dependencies};
use spo_selinux::validate::BASE_ENV;
use spo_selinux::{
    MemoryLookup, PolicyValidator, RenderContext, RenderedModule, Secilc, SelinuxError, SelinuxNode, Semodule,
    render_raw_selinux_profile, render_selinux_profile,
};

fn skip_or_fail(reason: String) {
    if std::env::var_os("CI").is_some() {
        panic!("{reason}; CI is set, so this test may not be skipped");
    }
    eprintln!("skipped: {reason}");
}

fn require_secilc() -> Option<Secilc> {
    match Secilc::from_env() {
        Ok(s) => Some(s),
        Err(e) => {
            skip_or_fail(e.to_string());
            None
        }
    }
}

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind)
}

fn load_all<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<T> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir(kind))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_norway::from_str(&std::fs::read_to_string(p).expect("read")).expect("parse"))
        .collect()
}

fn profile(yaml_spec: &str) -> SelinuxProfile {
    serde_norway::from_str(&format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {{name: broken}}\nspec:\n{yaml_spec}"
    ))
    .expect("parse")
}

#[test]
fn every_fixture_compiles_in_one_secilc_run() {
    let Some(secilc) = require_secilc() else { return };
    let selinux: Vec<SelinuxProfile> = load_all("selinux");
    let ctx = RenderContext {
        lookup: Arc::new(MemoryLookup::with(selinux.clone())),
        ..RenderContext::default()
    };
    let mut modules: Vec<RenderedModule> = selinux
        .iter()
        .map(|p| render_selinux_profile(p, &ctx).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for raw in load_all::<RawSelinuxProfile>("raw") {
        modules.push(render_raw_selinux_profile(&raw).unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(modules.len() >= 8, "fixtures are missing");
    let started = std::time::Instant::now();
    secilc.validate(&modules).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("secilc compiled {} modules in {:?}", modules.len(), started.elapsed());
}

#[test]
fn unknown_names_fail_with_secilc_message_at_the_field() {
    let Some(secilc) = require_secilc() else { return };
    let cases: Vec<(RenderedModule, &str, &str)> = vec![
        (
            render_selinux_profile(
                &profile("  allow:\n    bin_t: {file: [read]}\n    no_such_type_t: {file: [read]}\n"),
                &RenderContext::default(),
            )
            .expect("render"),
            "spec.allow[no_such_type_t][file]",
            "Failed to resolve allow statement",
        ),
        (
            render_selinux_profile(
                &profile("  allow:\n    bin_t: {no_such_class: [read]}\n"),
                &RenderContext::default(),
            )
            .expect("render"),
            "spec.allow[bin_t][no_such_class]",
            "Failed to resolve allow statement",
        ),
        (
            render_selinux_profile(
                &profile("  allow:\n    bin_t: {file: [read, no_such_perm]}\n"),
                &RenderContext::default(),
            )
            .expect("render"),
            "spec.allow[bin_t][file]",
            "Failed to resolve permission no_such_perm",
        ),
        (
            render_raw_selinux_profile(&RawSelinuxProfile::new(
                "broken-raw",
                RawSelinuxProfileSpec {
                    state: Default::default(),
                    disabled: None,
                    policy: "(blockinherit container)\n\n(allow process no_such_type_t (file (read)))\n".into(),
                },
            ))
            .expect("render"),
            "spec.policy line 3",
            "Failed to resolve allow statement",
        ),
    ];
    let secilc = Arc::new(secilc);
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(module, field, needle)| {
            let secilc = secilc.clone();
            std::thread::spawn(move || (secilc.validate(std::slice::from_ref(&module)), module, field, needle))
        })
        .collect();
    for h in handles {
        let (result, module, field, needle) = h.join().expect("thread");
        let err = result.expect_err(&module.text);
        let text = err.to_string();
        let SelinuxError::Rejected {
            tool,
            location,
            message,
            ..
        } = &err
        else {
            panic!("expected a rejection, got {text}");
        };
        assert_eq!(*tool, "secilc");
        assert!(message.contains(needle), "the tool's message is surfaced: {text}");
        let location = location.as_ref().unwrap_or_else(|| panic!("no location in {text}"));
        assert_eq!(location.module, module.name);
        assert!(text.contains(field), "{text} names {field}");
        eprintln!("{text}");
    }
}

#[test]
fn a_missing_base_policy_is_a_precise_error() {
    let empty = tempfile::tempdir().expect("tempdir");
    let dir = empty.path().display().to_string();
    // The base check on its own, whatever is installed.
    let text = spo_selinux::validate::BasePolicy::from_dir(empty.path())
        .expect_err("no base")
        .to_string();
    assert_eq!(
        text,
        format!(
            "a base policy in {dir} is not available: the directory has no *.cil files; build one with scripts/selinux-base"
        )
    );
    // Through Secilc: the missing tool is named first when it is missing, else the base.
    let text = Secilc::new(empty.path()).expect_err("no base").to_string();
    if spo_selinux::validate::find_program("secilc").is_some() {
        assert!(text.contains("no *.cil files") && text.contains(&dir), "{text}");
    } else {
        assert_eq!(text, "secilc is not available: install the secilc package");
    }
    if std::env::var_os(BASE_ENV).is_none() {
        assert!(Secilc::from_env().expect_err("unset").to_string().contains(BASE_ENV));
    }
}

/// Counts transactions on the real store, to show unchanged installs do not run semodule.
struct Counting {
    inner: Semodule,
    transactions: Mutex<usize>,
}

impl ModuleStore for Counting {
    fn list(&self) -> Result<Vec<InstalledModule>, SelinuxError> {
        self.inner.list()
    }
    fn install(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError> {
        *self.transactions.lock().expect("lock") += 1;
        self.inner.install(modules)
    }
    fn remove(&self, names: &[String]) -> Result<(), SelinuxError> {
        *self.transactions.lock().expect("lock") += 1;
        self.inner.remove(names)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let ty = entry.file_type().expect("type");
        if ty.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn semodule_installs_lists_and_removes_in_a_private_store() {
    let system_store = Path::new("/var/lib/selinux/default");
    let base = std::env::var_os(BASE_ENV).map(PathBuf::from);
    let missing = if !is_root() {
        Some("semodule needs root".to_owned())
    } else if !system_store.join("active/modules").is_dir() {
        Some(format!("no policy store at {}", system_store.display()))
    } else if base.is_none() {
        Some(format!(
            "{BASE_ENV} is not set (it provides the container module and the shim)"
        ))
    } else {
        None
    };
    let semodule = match (missing, Semodule::new(None, "default", false)) {
        (Some(reason), _) => return skip_or_fail(reason),
        (None, Err(e)) => return skip_or_fail(e.to_string()),
        (None, Ok(s)) => s,
    };
    let base = base.expect("checked");
    let root = tempfile::tempdir().expect("tempdir");
    copy_dir(system_store, &root.path().join("var/lib/selinux/default"));
    let store = Arc::new(Counting {
        inner: Semodule {
            root: Some(root.path().to_owned()),
            ..semodule
        },
        transactions: Mutex::new(0),
    });
    // Debian's store lacks refpolicy's container module and the shim: the node installs them
    // with the first profile (from the base directory built by scripts/selinux-base).
    let extras = ["container", "shim"]
        .map(|n| RenderedModule {
            name: n.to_owned(),
            origin: ModuleOrigin::Support,
            text: std::fs::read_to_string(base.join(format!("{n}.cil"))).expect("base module"),
            lines: Vec::new(),
            requires: Vec::new(),
        })
        .to_vec();
    let states = Arc::new(Mutex::new(Vec::new()));
    let sink = states.clone();
    let node = SelinuxNode::new(store.clone())
        .with_extra_modules(extras)
        .with_status_sink(Arc::new(move |name, state| {
            sink.lock().expect("lock").push((name.to_owned(), state))
        }));

    let selinux: Vec<SelinuxProfile> = load_all("selinux");
    let ctx = RenderContext {
        lookup: Arc::new(MemoryLookup::with(selinux.clone())),
        ..RenderContext::default()
    };
    let nginx = selinux
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("nginx-secure"))
        .expect("fixture");
    let module = render_with_dependencies(nginx, &ctx).expect("render").remove(0);

    let started = std::time::Instant::now();
    assert_eq!(node.install_module(&module).expect("install"), InstallOutcome::Written);
    eprintln!("semodule installed the first profile in {:?}", started.elapsed());
    assert_eq!(node.list_profiles().expect("list"), vec!["nginx-secure".to_owned()]);
    assert_eq!(node.install_module(&module).expect("again"), InstallOutcome::Unchanged);
    assert_eq!(
        *store.transactions.lock().expect("lock"),
        1,
        "nothing changed, semodule was not run"
    );

    // A profile that would replace a system module is refused before semodule runs.
    let mut apache = nginx.clone();
    apache.metadata.name = Some("apache".into());
    let apache = render_selinux_profile(&apache, &ctx).expect("render");
    let err = node.install_module(&apache).expect_err("foreign");
    assert!(
        matches!(err, SelinuxError::ForeignModule { priority: 100, .. }),
        "{err}"
    );

    assert_eq!(
        node.remove_module("nginx-secure").expect("remove"),
        RemoveOutcome::Removed
    );
    assert_eq!(node.list_profiles().expect("list"), Vec::<String>::new());
    assert_eq!(
        node.remove_module("nginx-secure").expect("again"),
        RemoveOutcome::NotPresent
    );
    assert_eq!(*store.transactions.lock().expect("lock"), 2);
    let seen: Vec<ProfileState> = states.lock().expect("lock").iter().map(|(_, s)| *s).collect();
    assert_eq!(
        seen,
        vec![
            ProfileState::InProgress,
            ProfileState::Installed,
            ProfileState::Installed,
            ProfileState::Error
        ]
    );
}

/// The private store of `semodule_installs_lists_and_removes_in_a_private_store`, for the
/// batch test: a copy of the system store, with refpolicy's container module and the shim as
/// the node's extra modules. `None` (after saying why) when the tools or root are missing.
fn private_node() -> Option<(tempfile::TempDir, Arc<Counting>, SelinuxNode)> {
    let system_store = Path::new("/var/lib/selinux/default");
    let base = std::env::var_os(BASE_ENV).map(PathBuf::from);
    let missing = if !is_root() {
        Some("semodule needs root".to_owned())
    } else if !system_store.join("active/modules").is_dir() {
        Some(format!("no policy store at {}", system_store.display()))
    } else if base.is_none() {
        Some(format!(
            "{BASE_ENV} is not set (it provides the container module and the shim)"
        ))
    } else {
        None
    };
    let semodule = match (missing, Semodule::new(None, "default", false)) {
        (Some(reason), _) => {
            skip_or_fail(reason);
            return None;
        }
        (None, Err(e)) => {
            skip_or_fail(e.to_string());
            return None;
        }
        (None, Ok(s)) => s,
    };
    let base = base.expect("checked");
    let root = tempfile::tempdir().expect("tempdir");
    copy_dir(system_store, &root.path().join("var/lib/selinux/default"));
    let store = Arc::new(Counting {
        inner: Semodule {
            root: Some(root.path().to_owned()),
            ..semodule
        },
        transactions: Mutex::new(0),
    });
    let extras = ["container", "shim"]
        .map(|n| RenderedModule {
            name: n.to_owned(),
            origin: ModuleOrigin::Support,
            text: std::fs::read_to_string(base.join(format!("{n}.cil"))).expect("base module"),
            lines: Vec::new(),
            requires: Vec::new(),
        })
        .to_vec();
    let node = SelinuxNode::new(store.clone()).with_extra_modules(extras);
    Some((root, store, node))
}

#[test]
fn a_batch_with_one_bad_module_installs_the_rest_in_a_private_store() {
    let Some((_root, store, node)) = private_node() else {
        return;
    };
    const N: usize = 6;
    const BAD: usize = 4;
    let mut batch: Vec<RenderedModule> = (0..N)
        .map(|i| {
            let spec = if i == BAD {
                "  allow:\n    no_such_type_t: {file: [read]}\n"
            } else {
                "  allow:\n    etc_t: {file: [read, open, getattr]}\n"
            };
            let mut p = profile(spec);
            p.metadata.name = Some(format!("batch-{i}"));
            render_selinux_profile(&p, &RenderContext::default()).expect("render")
        })
        .collect();

    let started = std::time::Instant::now();
    let report = node.install_modules(&batch).expect("batch");
    eprintln!(
        "semodule batch of {N} with one bad module: {} transactions, {:?}",
        report.transactions,
        started.elapsed()
    );
    assert_eq!(report.modules.len(), N);
    for (i, m) in report.modules.iter().enumerate() {
        assert_eq!(m.name, format!("batch-{i}"));
        if i == BAD {
            let err = m.result.as_ref().expect_err("the bad module is refused");
            let text = err.to_string();
            let SelinuxError::Rejected { tool, location, .. } = &**err else {
                panic!("expected semodule's refusal, got {text}");
            };
            assert_eq!(*tool, "semodule");
            assert!(text.contains("batch-4"), "names the module: {text}");
            assert!(
                text.contains("Failed to resolve allow statement"),
                "semodule's message: {text}"
            );
            assert!(
                location.as_ref().is_some_and(|l| l.module == "batch-4"),
                "semodule's store path is mapped to the module: {text}"
            );
            eprintln!("{text}");
        } else {
            assert_eq!(
                *m.result.as_ref().expect("installed"),
                InstallOutcome::Written,
                "batch-{i}"
            );
        }
    }
    assert_eq!(
        report.transactions, 2,
        "the batch, then the batch without the module semodule named"
    );
    let mut expected: Vec<String> = (0..N).filter(|&i| i != BAD).map(|i| format!("batch-{i}")).collect();
    expected.sort();
    assert_eq!(node.list_profiles().expect("list"), expected);

    // Again with one profile changed: only it is installed, the bad one is refused again.
    batch[1].text.push_str("; changed\n");
    let report = node.install_modules(&batch).expect("again");
    let written: Vec<&str> = report
        .modules
        .iter()
        .filter(|m| matches!(m.result, Ok(InstallOutcome::Written)))
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(written, ["batch-1"]);
    assert!(report.modules[BAD].result.is_err());

    // Removal: one transaction for all, the bad one was never there.
    let names: Vec<String> = (0..N).map(|i| format!("batch-{i}")).collect();
    let before = *store.transactions.lock().expect("lock");
    let removed = node.remove_modules(&names).expect("remove");
    assert_eq!(removed.transactions, 1);
    assert_eq!(*store.transactions.lock().expect("lock") - before, 1);
    for (i, m) in removed.modules.iter().enumerate() {
        let want = if i == BAD {
            RemoveOutcome::NotPresent
        } else {
            RemoveOutcome::Removed
        };
        assert_eq!(*m.result.as_ref().expect("removed"), want, "batch-{i}");
    }
    assert_eq!(node.list_profiles().expect("list"), Vec::<String>::new());
}

#[test]
fn a_hung_semodule_is_killed_at_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("semodule");
    std::fs::write(&fake, "#!/bin/sh\nsleep 30\n").expect("script");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let store = Semodule {
        program: fake,
        root: Some(dir.path().to_owned()),
        store: "default".into(),
        reload: false,
        timeout: std::time::Duration::from_millis(300),
        list_timeout: std::time::Duration::from_millis(300),
    };
    let started = std::time::Instant::now();
    let err = store.list().expect_err("hangs");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain = format!("{chain}: {c}");
        cause = c.source();
    }
    assert_eq!(
        chain,
        format!(
            "listing policy modules with semodule: {} did not finish within 300ms; its process group was killed",
            store.program.display()
        )
    );
    let node = SelinuxNode::new(Arc::new(store));
    let err = node.install_modules(&[]).expect_err("listing hangs");
    assert!(err.is_timeout(), "{err}");
}
