//! Records per second through the enricher's whole path ([`Pipeline::feed`]): parse an auditd
//! line, attribute it (pid -> container -> pod), build the enriched record, format the log
//! line, and batch and serialize the JSON enricher's lines, both outputs on.
//!
//! - `warm`: 100,000 records of 1,000 processes in 100 containers, every process remembered
//!   and known to hold its pid (no `/proc` read: the path every record but a process's first
//!   takes within a second of the last);
//! - `proc_verify`: the same path with the remembered process checked against the real
//!   `/proc` on every record (one `stat` read), for live processes of this machine;
//! - `proc_cold`: every record a process seen for the first time: the full `/proc` lookup
//!   (stat, status, cgroup, exe, cmdline).
//!
//! `cargo bench -p spo-enrich --bench enrich`

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spo_enrich::attribution::{CacheBounds, ContainerId, ContainerInfo, PodIndex, ProcFs, ProcessInfo, ProcessSource};
use spo_enrich::enriched::EnricherFilters;
use spo_enrich::pipeline::Pipeline;
use spo_model::seccomp::Arch;

struct Table(HashMap<u32, ProcessInfo>);

impl ProcessSource for &Table {
    fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
        self.0.get(&pid).cloned()
    }
}

fn names(_: Arch, nr: u32) -> Option<&'static str> {
    ["read", "write", "open", "close", "stat", "fstat", "lstat", "poll"]
        .get(nr as usize % 8)
        .copied()
}

fn id(n: u32) -> ContainerId {
    ContainerId::parse(&format!("{n:064x}")).expect("id")
}

/// An auditd line as Debian's auditd writes it (ENRICHED format, 0x1d before its additions).
fn line(serial: u64, ms: u64, pid: u32, syscall: u32) -> String {
    format!(
        "type=SECCOMP msg=audit({}.{:03}:{serial}): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined pid={pid} comm=\"nginx\" exe=\"/usr/sbin/nginx\" sig=0 arch=c000003e syscall={syscall} compat=0 ip=0x7f0b8d2e1a3b code=0x7ffc0000\u{1d}AUID=\"unset\" UID=\"root\" GID=\"root\" ARCH=x86_64 SYSCALL=read",
        ms / 1000,
        ms % 1000
    )
}

fn pipeline<S: ProcessSource>(source: S) -> Pipeline<S> {
    let mut p = Pipeline::new("node-1", source, CacheBounds::NODE, names);
    p.set_log(Some(EnricherFilters::default()));
    p.set_json(Some(EnricherFilters::default()));
    p
}

fn run<S: ProcessSource>(lines: &[String], p: &mut Pipeline<S>, pods: &PodIndex) -> usize {
    let mut bytes = 0;
    for l in lines {
        if let Some(fed) = p.feed(l, pods) {
            bytes += fed.log_line.map_or(0, |l| l.len());
        }
    }
    bytes + p.flush_json().iter().map(String::len).sum::<usize>()
}

fn bench(c: &mut Criterion) {
    let start_ms = 1_796_457_384_000;
    // 1,000 processes in 100 containers of 100 pods.
    let mut pods = PodIndex::new(10_000);
    for n in 0..100 {
        let info = ContainerInfo {
            namespace: format!("ns-{}", n % 7),
            pod: format!("pod-{n}"),
            container: "app".into(),
            record_profile: None,
        };
        pods.set_pod(&info.namespace.clone(), &info.pod.clone(), vec![(id(n), info)]);
    }
    let table = Table(
        (0..1000)
            .map(|p| {
                let pid = 10_000 + p;
                let info = ProcessInfo {
                    pid,
                    started_ms: start_ms - 60_000,
                    container: Some(id(p % 100)),
                    executable: Some("/usr/sbin/nginx".into()),
                    cmdline: Some("nginx: worker process".into()),
                    uid: Some(101),
                    gid: Some(101),
                };
                (pid, info)
            })
            .collect(),
    );
    let n = 100_000u64;
    // Record times advance 1 ms per 100 records: all within the trust window once warm.
    let lines: Vec<String> = (0..n)
        .map(|i| line(i + 1, start_ms + i / 100, 10_000 + (i % 1000) as u32, (i % 13) as u32))
        .collect();
    let mut warm = pipeline(&table);
    run(&lines, &mut warm, &pods);

    let mut group = c.benchmark_group("enrich");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n));
    group.bench_function("warm", |b| b.iter(|| run(black_box(&lines), &mut warm, &pods)));

    // Live processes of this machine, for the real /proc.
    let procfs = ProcFs::new("/proc").expect("/proc");
    let live: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| procfs.lookup(pid).is_some())
        .collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    // Each record 2 s after the one before: past the trust window, so /proc is asked.
    let m = 10_000u64;
    let verify: Vec<String> = (0..m)
        .map(|i| line(i + 1, now_ms + 2_000 * (i + 1), live[i as usize % live.len()], 0))
        .collect();
    let mut real = pipeline(procfs.clone());
    run(&verify, &mut real, &pods);
    group.throughput(Throughput::Elements(m));
    group.bench_function("proc_verify", |b| b.iter(|| run(black_box(&verify), &mut real, &pods)));
    let cold: Vec<String> = live
        .iter()
        .enumerate()
        .map(|(i, &pid)| line(i as u64 + 1, now_ms, pid, 0))
        .collect();
    group.throughput(Throughput::Elements(cold.len() as u64));
    group.bench_function("proc_cold", |b| {
        b.iter(|| {
            let mut fresh = pipeline(procfs.clone());
            run(black_box(&cold), &mut fresh, &pods)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
