//! Seccomp filters at run time: the same syscall loops with no filter, under our program for a
//! Docker-default-like profile, and under libseccomp's program for the same profile (optimize 1,
//! as runc uses it, and 2), side by side in one run.
//!
//! A filter cannot be removed, so every case runs in a fresh child (this bench binary started
//! again with `SPO_RUNTIME_BENCH_CHILD` set) that installs its filter, checks that the filter
//! decides as the profile says (a refused call is refused, an allowed one is not), and then
//! times each loop. Rounds alternate the cases so that drift hits all of them alike. The
//! kernel's seccomp action cache is in play, as on every node: a syscall whose verdict does
//! not depend on its arguments (getppid here) is decided from the cache without running the
//! filter, when the filter lets the kernel prove that.
//!
//! `cargo bench -p spo-seccomp --bench runtime` (any user: `no_new_privs` lets an unprivileged
//! process install a filter). `SPO_RUNTIME_ROUNDS` (default 7) and `SPO_RUNTIME_CALLS` (default
//! 2,000,000 per loop) vary it. Figures in `docs/benchmarks.md`.

// The loops are raw system calls (personality, socket and kcmp have no safe wrapper); each
// passes integers only.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

#[path = "support/profiles.rs"]
mod profiles;
#[path = "../tests/support/runc_libseccomp.rs"]
#[allow(dead_code)]
mod runc_libseccomp;

use spo_model::seccomp::SeccompProfileSpec;
use spo_seccomp::apply::install_filter;
use spo_seccomp::compile::{CompileOptions, compile};

const CHILD_ENV: &str = "SPO_RUNTIME_BENCH_CHILD";
const CALLS_ENV: &str = "SPO_RUNTIME_CALLS";

/// What runs the loops. "allow-all" is a one-instruction filter (`RET ALLOW`): the kernel's
/// own cost of having a filter at all, which no compiler can go below.
const VARIANTS: [&str; 5] = ["no filter", "allow-all", "ours", "libseccomp-opt1", "libseccomp-opt2"];

/// The loops: a name, what it shows, and one call (its raw return value).
struct Loop {
    name: &'static str,
    what: &'static str,
    call: fn() -> i64,
    /// The errno the call ends with under the profile (0: it runs).
    filtered_errno: i32,
}

fn raw(nr: libc::c_long, a0: libc::c_long, a1: libc::c_long, a2: libc::c_long) -> i64 {
    // SAFETY: plain system calls with integer arguments only; none of them writes memory.
    let r = unsafe { libc::syscall(nr, a0, a1, a2) };
    if r < 0 { -i64::from(errno()) } else { r }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

const LOOPS: [Loop; 4] = [
    Loop {
        name: "getppid",
        what: "allowed, no argument rule (cacheable)",
        call: || raw(libc::SYS_getppid, 0, 0, 0),
        filtered_errno: 0,
    },
    Loop {
        name: "personality(0xffffffff)",
        what: "allowed by an argument rule (the filter runs)",
        call: || raw(libc::SYS_personality, 0xffff_ffff, 0, 0),
        filtered_errno: 0,
    },
    Loop {
        // Type 15 is past SOCK_MAX: the kernel refuses it with EINVAL before allocating.
        name: "socket(AF_INET, 15)",
        what: "allowed by an argument rule (`socket` except AF_VSOCK)",
        call: || raw(libc::SYS_socket, libc::AF_INET.into(), 15, 0),
        filtered_errno: libc::EINVAL,
    },
    Loop {
        // kcmp of a pid that cannot exist: ESRCH without a filter, nothing is touched.
        name: "kcmp (refused)",
        what: "refused by the default action (ERRNO)",
        call: || raw(libc::SYS_kcmp, 0x3fff_ffff, 0x3fff_ffff, 0),
        filtered_errno: libc::EPERM,
    },
];

fn profile() -> SeccompProfileSpec {
    profiles::docker_default_like(&profiles::names_libseccomp_knows())
}

/// The child: install the variant's filter, check it decides as the profile says, time the
/// loops, print `name<TAB>ns per call` lines.
fn child(variant: &str) {
    let calls: u64 = std::env::var(CALLS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    pin_to_last_cpu();
    let spec = profile();
    match variant {
        "no filter" => {}
        "allow-all" => {
            let mut allow_all = spec.clone();
            allow_all.default_action = spo_model::seccomp::SeccompAction::Allow;
            allow_all.syscalls = None;
            let program = compile(&allow_all, &CompileOptions::default()).expect("compile");
            install_filter(&program, 0).expect("install the allow-all filter");
        }
        "ours" => {
            let program = compile(&spec, &CompileOptions::default()).expect("compile");
            install_filter(&program, 0).expect("install our filter");
        }
        other => {
            let optimize = if other.ends_with("opt2") { 2 } else { 1 };
            // libseccomp sets no_new_privs itself (SCMP_FLTATR_CTL_NNP defaults to on).
            runc_libseccomp::libseccomp_filter(&spec, optimize)
                .load()
                .expect("load libseccomp's filter");
        }
    }
    for l in &LOOPS {
        let r = (l.call)();
        let got = if r < 0 { -r as i32 } else { 0 };
        if variant == "no filter" || variant == "allow-all" {
            assert_ne!(got, libc::EPERM, "{}: refused under {variant}", l.name);
        } else {
            assert_eq!(got, l.filtered_errno, "{} under {variant}: returned {r}", l.name);
        }
    }
    for l in &LOOPS {
        // Warm up, then time.
        for _ in 0..calls / 20 {
            std::hint::black_box((l.call)());
        }
        let start = Instant::now();
        for _ in 0..calls {
            std::hint::black_box((l.call)());
        }
        let ns = start.elapsed().as_nanos() as f64 / calls as f64;
        println!("{}\t{ns:.2}", l.name);
    }
}

/// Runs the child on the machine's last CPU, so that rounds do not move between cores.
fn pin_to_last_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it; the call
    // reads it and affects only this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus - 1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Ok(variant) = std::env::var(CHILD_ENV) {
        child(&variant);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` and cargo test's bench probing: nothing to list.
        return;
    }
    let rounds: usize = std::env::var("SPO_RUNTIME_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let exe = std::env::current_exe().expect("this bench's path");
    println!("machine: {}", spo_testkit::machine());
    println!(
        "profile: Docker-default-like, x86-64 ({} rules); {rounds} rounds, each case in a fresh child",
        profile().rules().len()
    );
    // variant -> loop -> ns per call of each round
    let mut results: BTreeMap<&str, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for round in 0..rounds {
        for i in 0..VARIANTS.len() {
            let variant = VARIANTS[(i + round) % VARIANTS.len()];
            let out = Command::new(&exe)
                .env(CHILD_ENV, variant)
                .output()
                .expect("start the child");
            assert!(
                out.status.success(),
                "{variant}: child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let (name, ns) = line.split_once('\t').expect("name<TAB>ns");
                results
                    .entry(variant)
                    .or_default()
                    .entry(name.to_owned())
                    .or_default()
                    .push(ns.parse().expect("ns"));
            }
        }
        eprintln!("round {}/{rounds}", round + 1);
    }
    let mut medians: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    // The spread (max - min over the median) of each loop's no-filter rounds.
    let mut spreads: Vec<(&str, f64)> = Vec::new();
    for l in &LOOPS {
        for v in VARIANTS {
            let mut xs = results[v][l.name].clone();
            let m = median(&mut xs);
            if v == "no filter" {
                spreads.push((l.name, (xs[xs.len() - 1] - xs[0]) / m));
            }
            medians.insert((v, l.name), m);
        }
    }
    println!();
    println!("| loop | what it shows | no filter | allow-all filter | ours | libseccomp opt 1 | libseccomp opt 2 |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for l in &LOOPS {
        let cell = |v: &str| format!("{:.1}", medians[&(v, l.name)]);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            l.name,
            l.what,
            cell("no filter"),
            cell("allow-all"),
            cell("ours"),
            cell("libseccomp-opt1"),
            cell("libseccomp-opt2")
        );
    }
    println!("(ns per call, median of {rounds} rounds)");
    println!();
    let spread_text: Vec<String> = spreads.iter().map(|(n, s)| format!("{n} {:.1}%", s * 100.0)).collect();
    println!("no-filter rounds spread: {}", spread_text.join(", "));
    for l in &LOOPS {
        let spread = spreads.iter().find(|(n, _)| *n == l.name).map_or(0.0, |(_, s)| *s);
        if spread > 0.10 {
            println!(
                "{}: too noisy (no-filter rounds spread more than 10%); no comparison drawn",
                l.name
            );
            continue;
        }
        let m = |v: &str| medians[&(v, l.name)];
        let (ours, o1, o2) = (m("ours"), m("libseccomp-opt1"), m("libseccomp-opt2"));
        println!(
            "{}: ours {:+.1} ns over no filter, {:+.1} ns over the allow-all filter; vs libseccomp opt 1 {:+.1} ns, opt 2 {:+.1} ns",
            l.name,
            ours - m("no filter"),
            ours - m("allow-all"),
            ours - o1,
            ours - o2,
        );
    }
}
