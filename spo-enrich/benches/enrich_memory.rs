//! Memory of the enricher's path with many distinct processes: 10,000 processes (each with a
//! 4 KiB command line, the longest kept: the worst case) in 3,000 containers of 1,000 pods,
//! each making ten records, through [`Pipeline::feed`] with both outputs on and the JSON
//! interval never ending (so only the batch bound keeps it in check). Prints the process's
//! resident set before and at its peak, and what the caches hold.
//!
//! `cargo bench -p spo-enrich --bench enrich_memory`

use spo_enrich::attribution::{CacheBounds, ContainerId, ContainerInfo, PodIndex, ProcessInfo, ProcessSource};
use spo_enrich::enriched::EnricherFilters;
use spo_enrich::pipeline::Pipeline;
use spo_model::seccomp::Arch;

const PROCESSES: u32 = 10_000;
const CONTAINERS: u32 = 3_000;
const START_MS: u64 = 1_796_457_384_000;

/// Processes made up on demand, so that the table itself takes no memory.
struct Synthetic;

impl ProcessSource for Synthetic {
    fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
        Some(ProcessInfo {
            pid,
            started_ms: START_MS - 1000,
            container: Some(id(pid % CONTAINERS)),
            executable: Some(format!("/usr/local/bin/service-{}", pid % 97)),
            cmdline: Some(format!("service --instance={pid} {}", "x".repeat(4096 - 40))),
            uid: Some(1000),
            gid: Some(1000),
        })
    }
}

fn id(n: u32) -> ContainerId {
    ContainerId::parse(&format!("{n:064x}")).expect("id")
}

fn names(_: Arch, nr: u32) -> Option<&'static str> {
    ["read", "write", "openat", "close", "mkdir", "uname", "getppid"]
        .get(nr as usize % 7)
        .copied()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once the same way.
    let before = status_kib("VmRSS:");
    let mut pods = PodIndex::new(16_384);
    for c in 0..CONTAINERS {
        let pod = c / 3;
        let info = ContainerInfo {
            namespace: format!("team-{}", pod % 20),
            pod: format!("service-{pod}-7d9f8b6c5-x2k4q"),
            container: format!("container-{}", c % 3),
            record_profile: None,
        };
        let (ns, name) = (info.namespace.clone(), info.pod.clone());
        let mut containers = vec![(id(c), info)];
        // set_pod replaces a pod's containers: gather the pod's three.
        if c % 3 != 0 {
            for k in (c - c % 3)..c {
                containers.push((
                    id(k),
                    ContainerInfo {
                        container: format!("container-{}", k % 3),
                        ..containers[0].1.clone()
                    },
                ));
            }
        }
        pods.set_pod(&ns, &name, containers);
    }
    let mut p = Pipeline::new("node-1", Synthetic, CacheBounds::NODE, names);
    p.set_log(Some(EnricherFilters::default()));
    p.set_json(Some(EnricherFilters::default()));
    let mut written = 0usize;
    let mut serial = 0u64;
    for round in 0..10u64 {
        for pid in 1..=PROCESSES {
            serial += 1;
            let ms = START_MS + round * 100;
            let line = format!(
                "type=SECCOMP msg=audit({}.{:03}:{serial}): auid=1000 uid=1000 gid=1000 ses=3 pid={pid} \
                 comm=\"service\" exe=\"/usr/local/bin/service\" sig=0 arch=c000003e syscall={} compat=0 \
                 ip=0x7f0b8d2e1a3b code=0x7ffc0000",
                ms / 1000,
                ms % 1000,
                (pid as u64 + round) % 7
            );
            if let Some(fed) = p.feed(&line, &pods) {
                written += fed.log_line.map_or(0, |l| l.len());
            }
            written += p.take_json_ready().iter().map(String::len).sum::<usize>();
        }
    }
    let peak = status_kib("VmHWM:");
    let after = status_kib("VmRSS:");
    let cache = p.attributor().cache();
    println!("enrich_memory: {PROCESSES} processes x 10 records, {CONTAINERS} containers in the pod index");
    println!("  resident before:            {:>7} KiB", before);
    println!("  resident after:             {:>7} KiB", after);
    println!("  resident peak (VmHWM):      {:>7} KiB", peak);
    println!(
        "  process cache:              {:>7} processes, {:>7} KiB (bound: {} processes, {} KiB)",
        cache.len(),
        cache.bytes() / 1024,
        CacheBounds::NODE.processes,
        CacheBounds::NODE.bytes / 1024
    );
    println!("  output written:             {:>7} KiB", written / 1024);
    println!("  records: {}, JSON dropped: {}", p.stats().records, p.json_dropped());
    let goal = 32 * 1024;
    println!(
        "  goal: peak at most {goal} KiB: {}",
        if peak <= goal { "met" } else { "NOT met" }
    );
}
