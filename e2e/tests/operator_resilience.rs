//! The operator when things go wrong around it, on real apiservers:
//!
//! - `apiserver_crash_and_hang`: an apiserver of the test's own is killed in the middle of
//!   a batch of profiles and restarted with its data, later frozen (SIGSTOP) for a while;
//!   the daemon and the manager keep running (no restart, liveness stays green), their
//!   watches resume, and files, node statuses and profile statuses converge. The daemon's
//!   metrics count installs and each distinct error once.
//! - `leader_election`: two manager replicas on the shared apiserver; only the Lease holder
//!   acts; when it is killed the standby takes over within the lease time, and a replica
//!   that shuts down cleanly hands over at once.
//! - `a_leader_cut_off_steps_down_before_another_leads`: the leader reaches the apiserver
//!   through a relay that the test freezes (a partition: the standby still reaches it); the
//!   leader stops acting by its own clock before the standby may take the lease, so at no
//!   moment do both act. (kube-lease-manager fails this one: tests/lease_manager.rs.)

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use spo_e2e::{
    FAST_LEASE, FreezableProxy, Kubectl, OwnApiserver, Proc, daemon_args, eventually, free_port, http_get, kubeconfig,
    metric, operator_binary, operator_command, repo_root,
};

const T: Duration = Duration::from_secs(60);
/// What the operator processes log.
const LOG: &str = "info,kube=warn";

fn profile(name: &str) -> String {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: {name}}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{{names: [read, write, close], action: SCMP_ACT_ALLOW}}]\n"
    )
}

fn batch(prefix: &str, range: std::ops::Range<usize>) -> String {
    range
        .map(|i| profile(&format!("{prefix}-{i}")))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn install_crds(k: &Kubectl, ns: &str) {
    let crds = repo_root().join("deploy/crds");
    k.ok(&["apply", "--server-side", "-k", crds.to_str().expect("utf-8")], None);
    k.ok(
        &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        None,
    );
    if !k.run(&["get", "namespace", ns], None).ok {
        k.ok(&["create", "namespace", ns], None);
    }
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until every profile in `live` is installed on the node (a complete JSON file),
/// reported `Installed` by the node and aggregated `Installed` on the profile, and every
/// profile in `gone` has left no object, file or node status behind.
fn converge(k: &Kubectl, files: &Path, node: &str, live: &[String], gone: &[String]) {
    eventually("files, node statuses and profile statuses", T, || {
        let sps = k.json(&["get", "sp", "-o", "json"]);
        let spns = k.json(&["get", "spns", "-o", "json"]);
        let state_of = |list: &Value, name: &str, path: &[&str]| -> Option<String> {
            list["items"]
                .as_array()?
                .iter()
                .find(|o| o["metadata"]["name"] == name)
                .map(|o| path.iter().fold(o, |v, p| &v[*p]).as_str().unwrap_or("").to_owned())
        };
        for name in live {
            let text =
                std::fs::read_to_string(files.join(format!("{name}.json"))).map_err(|e| format!("{name}: {e}"))?;
            serde_json::from_str::<Value>(&text).map_err(|e| format!("{name}: half-written file? {e}"))?;
            let node_state = state_of(&spns, &format!("{name}-{node}"), &["status", "status"]);
            if node_state.as_deref() != Some("Installed") {
                return Err(format!("node status of {name}: {node_state:?}"));
            }
            let state = state_of(&sps, name, &["status", "status"]);
            if state.as_deref() != Some("Installed") {
                return Err(format!("status of {name}: {state:?}"));
            }
        }
        for name in gone {
            if state_of(&sps, name, &["metadata", "name"]).is_some() {
                return Err(format!("{name} not deleted yet"));
            }
            if files.join(format!("{name}.json")).exists() {
                return Err(format!("file of deleted {name} still there"));
            }
            if state_of(&spns, &format!("{name}-{node}"), &["metadata", "name"]).is_some() {
                return Err(format!("node status of deleted {name} still there"));
            }
        }
        Ok(())
    });
}

#[test]
fn apiserver_crash_and_hang() {
    const NS: &str = "spo-e2e-resilience";
    const NODE: &str = "e2e-node-r";
    if kubeconfig("apiserver_crash_and_hang").is_none() {
        return;
    }
    let api = OwnApiserver::start();
    let k = Kubectl::new(api.kubeconfig());
    install_crds(&k, NS);
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\n")),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let kubelet = tmp.path().join("kubelet");
    std::fs::create_dir_all(&kubelet).expect("kubelet dir");
    let files = kubelet.join("seccomp/operator");
    let bin = operator_binary();
    let (daemon_port, manager_port) = (free_port(), free_port());
    let mut daemon = operator_command(&bin, api.kubeconfig(), LOG, &format!("127.0.0.1:{daemon_port}"));
    daemon.args(daemon_args(NS, NODE, &kubelet));
    let mut daemon = Proc::spawn("daemon", daemon, &tmp.path().join("daemon.log"));
    let mut manager = operator_command(&bin, api.kubeconfig(), LOG, &format!("127.0.0.1:{manager_port}"));
    manager.args(["manager", "--namespace", NS]).args(FAST_LEASE);
    let mut manager = Proc::spawn("manager", manager, &tmp.path().join("manager.log"));
    eventually("daemon ready", T, || match http_get(daemon_port, "/readyz") {
        Some((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    });

    // 1. The apiserver crashes in the middle of a batch: the files are on disk, the
    //    finalizers and node statuses are being written. It comes back 2 s later.
    k.ok(&["apply", "-f", "-"], Some(&batch("r", 0..60)));
    eventually("first files of the batch", T, || {
        if count_files(&files) >= 20 {
            Ok(())
        } else {
            Err(format!("{} files", count_files(&files)))
        }
    });
    let crashed = Instant::now();
    api.crash_and_restart(Duration::from_secs(2));
    eprintln!("apiserver back after {:?}", crashed.elapsed());
    k.ok(&["apply", "-f", "-"], Some(&batch("r", 60..80)));
    let deleted: Vec<String> = (0..5).map(|i| format!("r-{i}")).collect();
    let mut args = vec!["delete", "sp", "--wait=false"];
    args.extend(deleted.iter().map(String::as_str));
    k.ok(&args, None);
    let mut live: Vec<String> = (5..80).map(|i| format!("r-{i}")).collect();
    converge(&k, &files, NODE, &live, &deleted);
    eprintln!("converged {:?} after the crash", crashed.elapsed());
    // Every watch reports its failure and, once its backoff lets it list again, its
    // resumption; a watch whose backoff grew during the outage may resume only after the
    // profiles converged (the node side has its own watch), so this waits for it.
    eventually(
        "the daemon's log telling about the outage and the resumption",
        T,
        || {
            let dlog = log_of(tmp.path(), "daemon");
            if dlog.contains("watch failed; retrying") && dlog.contains("watch resumed") {
                Ok(())
            } else {
                Err(format!("the daemon's log does not tell about the outage:\n{dlog}"))
            }
        },
    );

    // 2. The apiserver hangs (SIGSTOP) for 6 s while a batch is being reported. Liveness
    //    does not depend on the apiserver, so no kubelet would restart anything.
    k.ok(&["apply", "-f", "-"], Some(&batch("h", 0..30)));
    eventually("files of the second batch", T, || {
        if count_files(&files) >= 75 + 30 {
            Ok(())
        } else {
            Err(format!("{} files", count_files(&files)))
        }
    });
    api.pause();
    let hung = Instant::now();
    while hung.elapsed() < Duration::from_secs(6) {
        for (who, port) in [("daemon", daemon_port), ("manager", manager_port)] {
            let health = http_get(port, "/healthz");
            assert_eq!(
                health.as_ref().map(|h| h.0),
                Some(200),
                "{who} /healthz during the hang: {health:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    api.resume();
    live.extend((0..30).map(|i| format!("h-{i}")));
    converge(&k, &files, NODE, &live, &[]);
    eprintln!("converged {:?} after the hang began", hung.elapsed());

    // 3. Metrics: every install counted; a broken profile counted once, not per retry.
    let scrape = || http_get(daemon_port, "/metrics").expect("daemon /metrics").1;
    let installs = metric(
        &scrape(),
        "security_profiles_operator_seccomp_profile_total{operation=\"update\"}",
    );
    assert!(installs.is_some_and(|n| n >= live.len() as f64), "{installs:?}");
    let deletes = metric(
        &scrape(),
        "security_profiles_operator_seccomp_profile_total{operation=\"delete\"}",
    );
    assert_eq!(deletes, Some(deleted.len() as f64));
    let invalid = "security_profiles_operator_seccomp_profile_error_total{reason=\"InvalidSeccompProfile\"}";
    assert_eq!(metric(&scrape(), invalid), Some(0.0));
    k.ok(&["apply", "-f", "-"], Some(&profile("r-bad").replace("close", "clsoe")));
    eventually("r-bad Error", T, || {
        let sp = k.json(&["get", "sp", "r-bad", "-o", "json"]);
        if sp["status"]["status"] == "Error" {
            Ok(())
        } else {
            Err(sp["status"].to_string())
        }
    });
    // Retries happen after 1 s and 2 s; the error is still the same one.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(metric(&scrape(), invalid), Some(1.0));
    let (status, body) = http_get(manager_port, "/metrics").expect("manager /metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&body, "security_profiles_operator_leader"), Some(1.0), "{body}");

    assert!(
        daemon.running() && manager.running(),
        "a process exited; logs in {}",
        tmp.path().display()
    );
    for who in ["daemon", "manager"] {
        let log = log_of(tmp.path(), who);
        assert!(!log.contains("panicked"), "{who} panicked:\n{log}");
    }
    assert_eq!(
        log_of(tmp.path(), "daemon").matches("daemon started").count(),
        1,
        "the daemon restarted its loop"
    );
}

#[test]
fn leader_election() {
    const NS: &str = "spo-e2e-leader";
    let Some(kc) = kubeconfig("leader_election") else {
        return;
    };
    let k = Kubectl::new(kc.clone());
    install_crds(&k, NS);
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = operator_binary();
    let start = |id: &str, port: u16| {
        let mut cmd = operator_command(&bin, &kc, LOG, &format!("127.0.0.1:{port}"));
        cmd.args([
            "manager",
            "--namespace",
            NS,
            "--no-default-spod",
            "--leader-identity",
            id,
        ])
        .args(FAST_LEASE);
        Proc::spawn(id, cmd, &tmp.path().join(format!("{id}.log")))
    };
    let holder = || -> Option<String> {
        let r = k.run(&["-n", NS, "get", "lease", "spo-manager", "-o", "json"], None);
        let v: Value = serde_json::from_str(&r.stdout).ok()?;
        v["spec"]["holderIdentity"].as_str().map(str::to_owned)
    };
    let wait_holder = |id: &str, within: Duration| -> Duration {
        let t0 = Instant::now();
        eventually(&format!("{id} holds the lease"), within, || match holder() {
            Some(h) if h == id => Ok(()),
            other => Err(format!("holder {other:?}")),
        });
        t0.elapsed()
    };
    let leader_gauge =
        |port: u16| http_get(port, "/metrics").and_then(|(_, body)| metric(&body, "security_profiles_operator_leader"));
    let status_written = |name: &str| {
        eventually(&format!("status of {name}"), T, || {
            let sp = k.json(&["get", "sp", name, "-o", "json"]);
            if sp["status"]["localhostProfile"] == format!("operator/{name}.json") {
                Ok(())
            } else {
                Err(sp["status"].to_string())
            }
        });
    };

    let (port_a, port_b) = (free_port(), free_port());
    let mut a = start("e2e-a", port_a);
    wait_holder("e2e-a", T);
    let mut b = start("e2e-b", port_b);
    eventually("b stands by", T, || {
        if log_of(tmp.path(), "e2e-b").contains("another replica leads; standing by") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    eventually("leader gauges", T, || {
        match (leader_gauge(port_a), leader_gauge(port_b)) {
            (Some(1.0), Some(0.0)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        http_get(port_b, "/readyz").map(|r| r.0),
        Some(200),
        "a standby is ready"
    );

    // Only the leader acts.
    k.ok(&["apply", "-f", "-"], Some(&profile("e2e-leader-1")));
    status_written("e2e-leader-1");
    assert!(
        !log_of(tmp.path(), "e2e-b").contains("manager started"),
        "the standby started acting"
    );

    // The leader dies without releasing: the standby waits out the lease (3 s), then acts.
    a.kill();
    let took = wait_holder("e2e-b", T);
    assert!(took < Duration::from_secs(8), "takeover took {took:?}");
    eprintln!("standby took over {took:?} after the leader was killed");
    k.ok(&["apply", "-f", "-"], Some(&profile("e2e-leader-2")));
    status_written("e2e-leader-2");
    assert_eq!(leader_gauge(port_b), Some(1.0));

    // A restarted replica stands by; a clean shutdown hands the lease over at once.
    let port_a2 = free_port();
    let mut a2 = start("e2e-a2", port_a2);
    eventually("a2 stands by", T, || {
        if log_of(tmp.path(), "e2e-a2").contains("another replica leads; standing by") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    assert!(b.terminate(Duration::from_secs(10)), "b did not stop on SIGTERM");
    assert!(log_of(tmp.path(), "e2e-b").contains("released the leader lease"));
    let took = wait_holder("e2e-a2", T);
    assert!(took < Duration::from_secs(3), "handover after a release took {took:?}");
    k.ok(&["apply", "-f", "-"], Some(&profile("e2e-leader-3")));
    status_written("e2e-leader-3");
    assert!(a2.running(), "a2 exited; see {}", tmp.path().display());

    drop(a2);
    k.ok(
        &[
            "delete",
            "sp",
            "e2e-leader-1",
            "e2e-leader-2",
            "e2e-leader-3",
            "--wait=false",
        ],
        None,
    );
}

#[test]
fn a_leader_cut_off_steps_down_before_another_leads() {
    const NS: &str = "spo-e2e-partition";
    let Some(kc) = kubeconfig("a_leader_cut_off_steps_down_before_another_leads") else {
        return;
    };
    let k = Kubectl::new(kc.clone());
    install_crds(&k, NS);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (proxy, relayed) = FreezableProxy::for_kubeconfig(&kc, tmp.path());
    let bin = operator_binary();
    let start = |id: &str, kubeconfig: &Path, port: u16| {
        let mut cmd = operator_command(&bin, kubeconfig, LOG, &format!("127.0.0.1:{port}"));
        cmd.args([
            "manager",
            "--namespace",
            NS,
            "--no-default-spod",
            "--leader-identity",
            id,
        ])
        .args(FAST_LEASE);
        Proc::spawn(id, cmd, &tmp.path().join(format!("{id}.log")))
    };
    let gauge =
        |port: u16| http_get(port, "/metrics").and_then(|(_, body)| metric(&body, "security_profiles_operator_leader"));
    let (port_p, port_q) = (free_port(), free_port());
    let mut p = start("e2e-p", &relayed, port_p);
    eventually("p leads", T, || match gauge(port_p) {
        Some(1.0) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let mut q = start("e2e-q", &kc, port_q);
    eventually("q stands by", T, || {
        if log_of(tmp.path(), "e2e-q").contains("another replica leads; standing by") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });

    // The partition: p's requests hang; q still reaches the apiserver. Sample both
    // replicas' leadership every 20 ms until q leads.
    proxy.freeze();
    let cut = Instant::now();
    let mut p_stopped: Option<Duration> = None;
    let q_leads = loop {
        let (gp, gq) = (gauge(port_p), gauge(port_q));
        if gp == Some(0.0) && p_stopped.is_none() {
            p_stopped = Some(cut.elapsed());
        }
        assert!(
            !(gp == Some(1.0) && gq == Some(1.0)),
            "both replicas lead {:?} into the partition",
            cut.elapsed()
        );
        if gq == Some(1.0) {
            break cut.elapsed();
        }
        assert!(cut.elapsed() < T, "q never took over (p: {gp:?}, q: {gq:?})");
        std::thread::sleep(Duration::from_millis(20));
    };
    let p_stopped = p_stopped.expect("p stopped before q led");
    eprintln!("partition: the cut-off leader stopped acting after {p_stopped:?}; the standby led after {q_leads:?}");
    // The cut-off leader decides on its own clock: renew deadline 2 s, one request timeout (1 s)
    // and one retry period (1 s) at most.
    assert!(
        p_stopped < Duration::from_secs(4),
        "p acted {p_stopped:?} without renewing"
    );
    assert!(log_of(tmp.path(), "e2e-p").contains("could not renew the leader lease in time; stopping to act"));

    // Healed: p finds q leading and stands by.
    proxy.thaw();
    eventually("p stands by after the partition", T, || {
        if log_of(tmp.path(), "e2e-p").contains("another replica leads; standing by") && gauge(port_p) == Some(0.0) {
            Ok(())
        } else {
            Err(format!("p {:?}", gauge(port_p)))
        }
    });
    assert_eq!(gauge(port_q), Some(1.0));
    assert!(
        p.running() && q.running(),
        "a replica exited; logs in {}",
        tmp.path().display()
    );
}
