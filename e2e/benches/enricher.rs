//! The node enricher under 10,000 distinct processes (issue 17, "Numbers"), a plain bench
//! binary: the release `spo-operator enricher` reads the real auditd's log while this bench
//! starts `SPO_BENCH_PROCESSES` processes (default 10,000), each making one logged call
//! (SECCOMP_RET_LOG on getppid) and exiting at once, so every record's process is gone from
//! /proc when it is read and is found in the exit log. Reported: the records enriched, how
//! long the enricher took to print them all after the last process exited, and the enricher's
//! resident memory (VmRSS, VmHWM) against the goal of at most 32 MiB.
//!
//! Needs root, a running auditd (scripts/auditd start) and the bare apiserver:
//! `e2e/start-apiserver.sh /tmp/a && SPO_E2E_KUBECONFIG=/tmp/a/kubeconfig cargo bench -p spo-e2e --bench enricher; e2e/stop-apiserver.sh /tmp/a`
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use spo_e2e::{Kubectl, Proc, free_port, http_get, kubeconfig, operator_binary, operator_command, rss_kib};

const NS: &str = "spo-bench-enricher";

/// Forks a process that logs getppid (a profile allowing everything, logging getppid,
/// compiled by the project's compiler) and starts `n` children from it, each calling getppid
/// once and exiting; returns when all have exited.
fn burst(n: usize) {
    let spec: spo_model::seccomp::SeccompProfileSpec = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}],
    }))
    .expect("profile");
    let program =
        spo_seccomp::compile::compile(&spec, &spo_seccomp::compile::CompileOptions::default()).expect("compiles");
    spo_seccomp::apply::check_installable(&program).expect("installable");
    // SAFETY: the forked processes make only async-signal-safe calls (prctl and seccomp in
    // install_filter, which allocates nothing for a checked program; fork, getppid, waitpid,
    // _exit) and never return into Rust code.
    unsafe {
        let parent = libc::fork();
        assert!(parent >= 0, "fork");
        if parent == 0 {
            if spo_seccomp::apply::install_filter(&program, 0).is_err() {
                libc::_exit(2);
            }
            for _ in 0..n {
                let child = libc::fork();
                if child == 0 {
                    libc::getppid();
                    libc::_exit(0);
                }
                if child > 0 {
                    let mut status = 0;
                    libc::waitpid(child, &mut status, 0);
                }
            }
            libc::_exit(0);
        }
        let mut status = 0;
        libc::waitpid(parent, &mut status, 0);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "burst failed: {status}"
        );
    }
}

fn printed(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("audit timestamp=") && l.contains("syscallName=\"getppid\""))
        .count()
}

fn main() {
    let Some(kc) = kubeconfig("enricher bench") else { return };
    let n: usize = std::env::var("SPO_BENCH_PROCESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let k = Kubectl::new(kc.clone());
    k.install_crds();
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n")),
    );
    let tmp = tempfile::Builder::new()
        .prefix("spo-bench-enricher-")
        .tempdir()
        .expect("tempdir");
    let spod = serde_json::json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SecurityProfilesOperatorDaemon",
        "metadata": {"name": "spod", "namespace": NS},
        "spec": {"enricher": {
            "enableLogEnricher": true,
            "enableJsonEnricher": true,
            "jsonEnricherOptions": {"auditLogPath": tmp.path().join("json/audit.log"), "auditLogIntervalSeconds": 5},
        }},
    });
    k.ok(&["apply", "-f", "-"], Some(&spod.to_string()));
    let port = free_port();
    let mut cmd = operator_command(&operator_binary(), &kc, "info,kube=warn", &format!("127.0.0.1:{port}"));
    cmd.args(["enricher", "--namespace", NS, "--node-name", "bench-node"]);
    let log = tmp.path().join("enricher.log");
    let mut enricher = Proc::spawn("enricher", cmd, &log);
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let ready = matches!(http_get(port, "/readyz"), Some((200, _)));
        if ready && text.contains("reading auditd's log") {
            break;
        }
        assert!(enricher.running(), "the enricher exited:\n{text}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the enricher did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (idle_rss, _) = rss_kib(enricher.id());
    let burst_start = Instant::now();
    burst(n);
    let burst_done = Instant::now();
    let mut seen = 0;
    while burst_done.elapsed() < Duration::from_secs(300) {
        seen = printed(&log);
        if seen >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let caught_up = burst_done.elapsed();
    let (rss, hwm) = rss_kib(enricher.id());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let attributed_by_exit_log = text.contains("exit log loaded");
    enricher.terminate(Duration::from_secs(10));
    println!("enricher bench: {n} processes, one logged call each (all exited before their records were read)");
    println!("  records enriched:        {seen} of {n}");
    println!(
        "  burst took:              {:.2} s",
        (burst_done - burst_start).as_secs_f64()
    );
    println!("  caught up after burst:   {:.2} s", caught_up.as_secs_f64());
    println!(
        "  exit log:                {}",
        if attributed_by_exit_log { "loaded" } else { "NOT loaded" }
    );
    println!("  enricher VmRSS idle:     {idle_rss} KiB");
    println!("  enricher VmRSS after:    {rss} KiB");
    println!("  enricher VmHWM (peak):   {hwm} KiB");
    let goal = 32 * 1024;
    println!(
        "  goal: peak at most {goal} KiB: {}",
        if hwm <= goal { "met" } else { "NOT met" }
    );
    assert_eq!(seen, n, "records lost: see {}", log.display());
    k.ok(&["delete", "namespace", NS, "--wait=false"], None);
}
