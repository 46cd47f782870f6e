//! Our compiler against libseccomp, the way a container runtime uses it: the time from a
//! profile to a loadable cBPF program, and the size and longest executed path of what comes
//! out. The size table is printed first; criterion then times both compilers side by side,
//! and the daemon's burst (2,000 Docker-sized profiles rendered on one thread; their writes
//! through the node store are timed once after it).
//!
//! `cargo bench -p spo-seccomp --bench compile`; figures and their meaning in
//! `docs/benchmarks.md`.

use std::fs::File;
use std::hint::black_box;
use std::io::{Seek, Write};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};

#[path = "support/profiles.rs"]
mod profiles;
#[path = "../tests/support/runc_libseccomp.rs"]
mod runc_libseccomp;
use profiles::{allow_list_50, docker_default_like, names_libseccomp_knows};
use runc_libseccomp::{libseccomp_export, libseccomp_program};
use spo_model::SeccompProfile;
use spo_model::contract::InstallName;
use spo_model::seccomp::SeccompProfileSpec;
use spo_seccomp::backend::{RenderContext, render_profile};
use spo_seccomp::compile::bpf::to_bytes;
use spo_seccomp::compile::{CompileOptions, compile, longest_path};
use spo_seccomp::node::{DirStore, ProfileStore};
use spo_seccomp::oci::render_node_json;
use spo_seccomp::resolve::{MemoryResolver, resolve_profile};
use spo_seccomp::validate::check_fields;

fn print_size_table(profiles: &[(&str, SeccompProfileSpec)]) {
    println!();
    println!("| profile | compiler | instructions | longest path |");
    println!("| --- | --- | ---: | ---: |");
    for (name, spec) in profiles {
        let ours = compile(spec, &CompileOptions::default()).expect("compile").stats();
        println!("| {name} | ours | {} | {} |", ours.instructions, ours.longest_path);
        for optimize in [1, 2] {
            let theirs = libseccomp_program(spec, optimize);
            println!(
                "| {name} | libseccomp, optimize {optimize} | {} | {} |",
                theirs.len(),
                longest_path(&theirs)
            );
        }
    }
    println!();
}

/// Our program written as libseccomp's export writes it: into the same kind of reused,
/// truncated temp file, so both sides do the same work from profile to descriptor.
fn ours_export(spec: &SeccompProfileSpec, opts: &CompileOptions, out: &mut File) {
    let program = compile(spec, opts).expect("compile");
    out.set_len(0).expect("truncate");
    out.rewind().expect("rewind");
    out.write_all(&to_bytes(&program.insns)).expect("write");
}

fn bench_compile(c: &mut Criterion, profiles: &[(&str, SeccompProfileSpec)]) {
    let mut out = tempfile::tempfile().expect("temp file");
    for (name, spec) in profiles {
        let mut group = c.benchmark_group(format!("compile/{name}"));
        let opts = CompileOptions::default();
        // The like-for-like pair: profile to a program in a file descriptor, both sides.
        group.bench_function(BenchmarkId::from_parameter("ours"), |b| {
            b.iter(|| ours_export(black_box(spec), &opts, &mut out));
        });
        for optimize in [1, 2] {
            group.bench_function(BenchmarkId::from_parameter(format!("libseccomp-opt{optimize}")), |b| {
                b.iter(|| libseccomp_export(black_box(spec), optimize, &mut out))
            });
        }
        // For reference only: ours into memory, what the node and spoc use (no ratio).
        group.bench_function(BenchmarkId::from_parameter("ours-in-memory"), |b| {
            b.iter(|| compile(black_box(spec), &opts).expect("compile"));
        });
        group.finish();
    }
}

/// The daemon's burst: 2,000 Docker-default-sized SeccompProfiles (each a little different)
/// from the object to the node file's bytes on one thread: base resolution, SPOD policy check,
/// the compile that proves the profile loads, and the JSON the kubelet reads
/// (`backend::render_profile`, what the daemon runs per profile).
fn bench_burst(c: &mut Criterion, docker: &SeccompProfileSpec) -> Vec<(InstallName, Vec<u8>)> {
    let profiles: Vec<SeccompProfile> = (0..BURST)
        .map(|i| {
            let mut spec = docker.clone();
            if let Some(rule) = spec.syscalls.as_mut().and_then(|r| r.last_mut()) {
                rule.errno_ret = Some(1 + (i % 100) as i64);
            }
            SeccompProfile::new(&format!("burst-{i}"), spec)
        })
        .collect();
    let ctx = RenderContext::new(Arc::new(MemoryResolver::new()));
    let mut group = c.benchmark_group("daemon-burst");
    group.sample_size(10);
    group.bench_function(
        BenchmarkId::from_parameter("2000 profiles rendered (resolve, check, compile, JSON)"),
        |b| {
            b.iter(|| {
                for p in &profiles {
                    black_box(render_profile(black_box(p), &ctx).expect("render"));
                }
            })
        },
    );
    // Its parts, each over the same 2,000 profiles.
    let native = spo_seccomp::syscalls::native_arch();
    group.bench_function(
        BenchmarkId::from_parameter("part: check_fields (names, arguments)"),
        |b| {
            b.iter(|| {
                for p in &profiles {
                    black_box(check_fields(black_box(&p.spec), native));
                }
            })
        },
    );
    let resolver = MemoryResolver::new();
    group.bench_function(BenchmarkId::from_parameter("part: resolve (canonical form)"), |b| {
        b.iter(|| {
            for p in &profiles {
                black_box(resolve_profile("p", black_box(&p.spec), &resolver).expect("resolve"));
            }
        })
    });
    let opts = CompileOptions::default();
    group.bench_function(BenchmarkId::from_parameter("part: compile"), |b| {
        b.iter(|| {
            for p in &profiles {
                black_box(compile(black_box(&p.spec), &opts).expect("compile"));
            }
        })
    });
    group.bench_function(BenchmarkId::from_parameter("part: node JSON"), |b| {
        b.iter(|| {
            for p in &profiles {
                black_box(render_node_json(black_box(&p.spec)).expect("json"));
            }
        })
    });
    group.finish();
    profiles
        .iter()
        .map(|p| {
            let name = InstallName::new(p.metadata.name.as_deref().unwrap_or_default()).expect("install name");
            (name, render_profile(p, &ctx).expect("render"))
        })
        .collect()
}

/// The burst's files written through the node store as the daemon writes them (atomic, file
/// and directory fsync), one at a time: disk time, reported beside the CPU figure, once.
fn time_burst_writes(files: &[(InstallName, Vec<u8>)]) {
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let store = DirStore::new(dir.path());
    let start = std::time::Instant::now();
    for (name, bytes) in files {
        store.install(name, bytes).expect("install");
    }
    let took = start.elapsed();
    println!(
        "daemon burst: {} files ({} KiB each) written through DirStore (atomic, fsync) one at a time in {took:.2?} ({:.2?} a file)",
        files.len(),
        files.first().map_or(0, |(_, b)| b.len() / 1024),
        took / files.len() as u32
    );
}

/// Profiles in the daemon-burst case.
const BURST: usize = 2_000;

fn main() {
    let known = names_libseccomp_knows();
    let docker = docker_default_like(&known);
    let small = allow_list_50(&known);
    println!(
        "x86-64 names libseccomp knows: {}; docker-default-like profile allows {} unconditionally",
        known.len(),
        docker.rules()[0].names.len()
    );
    let profiles = [("docker-default-like", docker), ("allow-list-50", small)];
    print_size_table(&profiles);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    bench_compile(&mut c, &profiles);
    let files = bench_burst(&mut c, &profiles[0].1);
    c.final_summary();
    time_burst_writes(&files);
}
