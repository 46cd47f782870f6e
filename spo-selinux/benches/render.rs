//! Rendering 1,000 SelinuxProfiles (and wrapping 1,000 RawSelinuxProfiles) with criterion, and
//! the wall time of real secilc validations against the base policy (timed with Instant: one
//! run takes seconds, too long for criterion's sampling).
//!
//! Run: `SPO_SELINUX_BASE=$(scripts/selinux-base) cargo bench -p spo-selinux --bench render`
//! (without `SPO_SELINUX_BASE` the secilc timing is skipped).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use spo_model::selinux::{
    PolicyRef, PolicyRefKind, RawSelinuxProfile, RawSelinuxProfileSpec, SelinuxProfile, SelinuxProfileSpec,
};
use spo_selinux::{PolicyValidator, RenderContext, Secilc, render_raw_selinux_profile, render_selinux_profile};

const TYPES: &[&str] = &[
    "bin_t",
    "etc_t",
    "var_log_t",
    "tmp_t",
    "http_port_t",
    "http_cache_port_t",
    "node_t",
    "container_file_t",
    "usr_t",
    "var_lib_t",
];
const CLASSES: &[&str] = &["file", "dir"];
const FILE_PERMS: &[&str] = &["read", "open", "getattr", "write", "append", "lock"];
const DIR_PERMS: &[&str] = &["read", "open", "getattr", "write", "search", "lock"];

/// A profile with 10 types x 2 classes (20 allow rules), permissions listed unsorted.
fn profile(i: usize) -> SelinuxProfile {
    let mut allow: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (t, ty) in TYPES.iter().enumerate() {
        for class in CLASSES {
            let all = if *class == "file" { FILE_PERMS } else { DIR_PERMS };
            let perms: Vec<String> = all.iter().rev().skip((i + t) % 3).map(|p| (*p).to_owned()).collect();
            allow
                .entry((*ty).to_owned())
                .or_default()
                .insert((*class).to_owned(), perms);
        }
    }
    allow
        .entry("@self".to_owned())
        .or_default()
        .insert("tcp_socket".to_owned(), vec!["listen".to_owned(), "accept".to_owned()]);
    SelinuxProfile::new(
        &format!("bench-{i}"),
        SelinuxProfileSpec {
            state: Default::default(),
            disabled: None,
            inherit: vec![
                PolicyRef {
                    kind: PolicyRefKind::System,
                    name: "container".into(),
                },
                PolicyRef {
                    kind: PolicyRefKind::System,
                    name: "net_container".into(),
                },
            ],
            mode: Default::default(),
            permissive: None,
            allow: Some(allow),
        },
    )
}

fn raw(i: usize) -> RawSelinuxProfile {
    let mut policy = String::from("(blockinherit container)\n");
    for ty in TYPES {
        policy.push_str(&format!("(allow process {ty} (file (read open getattr)))\n"));
        policy.push_str(&format!("(allow process {ty} (dir (search getattr)))\n"));
    }
    RawSelinuxProfile::new(
        &format!("raw-{i}"),
        RawSelinuxProfileSpec {
            state: Default::default(),
            disabled: None,
            policy,
        },
    )
}

fn render_benches(c: &mut Criterion) {
    let profiles: Vec<SelinuxProfile> = (0..1000).map(profile).collect();
    let raws: Vec<RawSelinuxProfile> = (0..1000).map(raw).collect();
    let ctx = RenderContext::default();
    c.bench_function("render 1000 SelinuxProfiles (21 rules each)", |b| {
        b.iter(|| {
            for p in &profiles {
                black_box(render_selinux_profile(black_box(p), &ctx).expect("render"));
            }
        })
    });
    c.bench_function("wrap 1000 RawSelinuxProfiles (21 statements each)", |b| {
        b.iter(|| {
            for p in &raws {
                black_box(render_raw_selinux_profile(black_box(p)).expect("render"));
            }
        })
    });
}

criterion_group!(benches, render_benches);

fn secilc_timing() {
    let secilc = match Secilc::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("secilc timing skipped: {e}");
            return;
        }
    };
    let ctx = RenderContext::default();
    let one = vec![render_selinux_profile(&profile(0), &ctx).expect("render")];
    let hundred: Vec<_> = (0..100)
        .map(|i| render_selinux_profile(&profile(i), &ctx).expect("render"))
        .collect();
    for (label, modules) in [("1 profile", &one), ("100 profiles", &hundred)] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            secilc.validate(modules).expect("validate");
            times.push(start.elapsed());
        }
        times.sort();
        println!(
            "secilc validation of {label} against the base policy: median {:.2?} (min {:.2?}, max {:.2?}, 3 runs)",
            times[1], times[0], times[2]
        );
    }
}

fn main() {
    benches();
    secilc_timing();
    Criterion::default().configure_from_args().final_summary();
}
