//! Installing 20 SelinuxProfiles into a private copy of the system's policy store, one semodule
//! transaction per profile (`SelinuxNode::install_module` for each) against one batch
//! (`SelinuxNode::install_modules`), side by side in one run. Every iteration installs changed
//! text (a comment with the iteration number), so nothing is skipped as unchanged and no
//! removal runs between iterations.
//!
//! Run (root; about 40 minutes on an idle machine, an hour under load, nearly all of it the
//! one-transaction-each case):
//! `SPO_SELINUX_BASE=$(scripts/selinux-base) cargo bench -p spo-selinux --bench batch`.
//! Without root, the store or `SPO_SELINUX_BASE` it prints `skipped: <reason>` and exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group};
use spo_model::selinux::{PolicyRef, PolicyRefKind, SelinuxProfile, SelinuxProfileSpec};
use spo_selinux::render::ModuleOrigin;
use spo_selinux::validate::BASE_ENV;
use spo_selinux::{RenderContext, RenderedModule, SelinuxNode, Semodule, render_selinux_profile};

const PROFILES: usize = 20;
const TYPES: &[&str] = &["bin_t", "etc_t", "var_log_t", "tmp_t", "usr_t", "var_lib_t"];

fn profile(i: usize) -> SelinuxProfile {
    let mut allow = std::collections::BTreeMap::new();
    for ty in TYPES {
        let mut classes = std::collections::BTreeMap::new();
        classes.insert(
            "file".to_owned(),
            vec!["read".to_owned(), "open".to_owned(), "getattr".to_owned()],
        );
        classes.insert("dir".to_owned(), vec!["search".to_owned(), "getattr".to_owned()]);
        allow.insert((*ty).to_owned(), classes);
    }
    SelinuxProfile::new(
        &format!("batch-bench-{i}"),
        SelinuxProfileSpec {
            state: Default::default(),
            disabled: None,
            inherit: vec![PolicyRef {
                kind: PolicyRefKind::System,
                name: "container".into(),
            }],
            mode: Default::default(),
            permissive: None,
            allow: Some(allow),
        },
    )
}

/// The 20 modules with text unique to `iteration`.
fn variant(base: &[RenderedModule], iteration: usize) -> Vec<RenderedModule> {
    base.iter()
        .map(|m| RenderedModule {
            text: format!("{}; iteration {iteration}\n", m.text),
            ..m.clone()
        })
        .collect()
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

/// A node on a private copy of the system store, with refpolicy's container module and the
/// shim installed, or why not.
fn private_node() -> Result<(tempfile::TempDir, SelinuxNode), String> {
    let system_store = Path::new("/var/lib/selinux/default");
    if !is_root() {
        return Err("semodule needs root".into());
    }
    if !system_store.join("active/modules").is_dir() {
        return Err(format!("no policy store at {}", system_store.display()));
    }
    let base = std::env::var_os(BASE_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{BASE_ENV} is not set (run export {BASE_ENV}=$(scripts/selinux-base))"))?;
    let semodule = Semodule::new(None, "default", false).map_err(|e| e.to_string())?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    copy_dir(system_store, &root.path().join("var/lib/selinux/default"));
    let extras = ["container", "shim"]
        .map(|n| RenderedModule {
            name: n.to_owned(),
            origin: ModuleOrigin::Support,
            text: std::fs::read_to_string(base.join(format!("{n}.cil"))).expect("base module"),
            lines: Vec::new(),
            requires: Vec::new(),
        })
        .to_vec();
    let store = Semodule {
        root: Some(root.path().to_owned()),
        ..semodule
    };
    Ok((root, SelinuxNode::new(Arc::new(store)).with_extra_modules(extras)))
}

fn batch_benches(c: &mut Criterion) {
    let (_root, node) = match private_node() {
        Ok(n) => n,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let ctx = RenderContext::default();
    let base: Vec<RenderedModule> = (0..PROFILES)
        .map(|i| render_selinux_profile(&profile(i), &ctx).expect("render"))
        .collect();
    // The support modules go in first, so both cases install profiles only.
    let started = Instant::now();
    let first = node.install_modules(&variant(&base, 0)).expect("first batch");
    assert!(first.modules.iter().all(|m| m.result.is_ok()), "{first:?}");
    eprintln!(
        "first batch (support modules + {PROFILES} profiles, {} transaction) took {:.2?}",
        first.transactions,
        started.elapsed()
    );

    let mut group = c.benchmark_group(format!("install {PROFILES} SelinuxProfiles"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    let mut iteration = 0;
    group.bench_function("one semodule transaction each", |b| {
        b.iter(|| {
            iteration += 1;
            for m in &variant(&base, iteration) {
                node.install_module(m).expect("install");
            }
        })
    });
    group.bench_function("one batch", |b| {
        b.iter(|| {
            iteration += 1;
            let report = node.install_modules(&variant(&base, iteration)).expect("batch");
            assert_eq!(report.transactions, 1);
            assert!(report.modules.iter().all(|m| m.result.is_ok()));
        })
    });
    group.finish();
}

criterion_group!(benches, batch_benches);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
