//! Operator footprint and latency on a real apiserver (a plain bench binary):
//! 2,000 SeccompProfiles and 20,000 pods (100 on the daemon's node, one in ten using a
//! profile), then one daemon and the manager start; reported: time until the daemon has
//! every profile installed, daemon and manager RSS, and create-to-installed latency of a
//! burst of 1,000 new profiles (p50/p99, measured from the create call's return to the
//! file appearing on the node).
//!
//! Run on a fresh apiserver (objects are left behind):
//! `e2e/start-apiserver.sh /tmp/b && SPO_E2E_KUBECONFIG=/tmp/b/kubeconfig cargo bench -p spo-e2e --bench operator; e2e/stop-apiserver.sh /tmp/b`

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use spo_e2e::{Kubectl, Proc, operator_binary, repo_root};
use spo_model::SeccompProfile;

const NS: &str = "spo-bench";
const NODE: &str = "bench-node";
const PROFILES: usize = 2_000;
const PODS: usize = 20_000;
const PODS_ON_NODE: usize = 100;
const BURST: usize = 1_000;

fn profile(name: &str) -> SeccompProfile {
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SeccompProfile",
        "metadata": {"name": name},
        "spec": {"defaultAction": "SCMP_ACT_ERRNO",
                 "syscalls": [{"names": ["read", "write", "openat", "close", "fstat", "mmap", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}
    }))
    .expect("profile")
}

fn pod(i: usize) -> Pod {
    let node = if i < PODS_ON_NODE {
        NODE.to_owned()
    } else {
        format!("bench-other-{}", i % 50)
    };
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": NS, "labels": {"app": format!("app-{}", i % 100)}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "infinity"],
                 "env": [{"name": "A", "value": "some value to make the pod realistic"}]}]}
    });
    if i.is_multiple_of(10) {
        p["spec"]["securityContext"] = json!({"seccompProfile": {"type": "Localhost",
            "localhostProfile": format!("operator/bench-p-{}.json", i % PROFILES)}});
    }
    serde_json::from_value(p).expect("pod")
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn create_all<K, F>(api: Api<K>, n: usize, make: F) -> Duration
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: Fn(usize) -> K,
{
    let start = Instant::now();
    let pp = PostParams::default();
    stream::iter(0..n)
        .map(|i| {
            let (api, obj, pp) = (api.clone(), make(i), pp.clone());
            async move {
                match api.create(&pp, &obj).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => panic!("create: {e}"),
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let Some(kc) = std::env::var_os("SPO_E2E_KUBECONFIG") else {
        eprintln!("skipped: operator bench: SPO_E2E_KUBECONFIG is not set");
        return;
    };
    let k = Kubectl::new(kc.clone().into());
    k.ok(
        &[
            "apply",
            "--server-side",
            "-k",
            repo_root().join("deploy/crds").to_str().expect("utf-8"),
        ],
        None,
    );
    k.ok(
        &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        None,
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(&kc).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    let client = Client::try_from(config).expect("client");
    let _ = Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns"),
        )
        .await;
    let nodes: Api<Node> = Api::all(client.clone());
    create_all(nodes, 51, |i| {
        let name = if i == 50 {
            NODE.to_owned()
        } else {
            format!("bench-other-{i}")
        };
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("node")
    })
    .await;
    let profiles: Api<SeccompProfile> = Api::all(client.clone());
    let t = create_all(profiles.clone(), PROFILES, |i| profile(&format!("bench-p-{i}"))).await;
    println!("created {PROFILES} profiles in {t:.1?}");
    let t = create_all(Api::<Pod>::namespaced(client.clone(), NS), PODS, pod).await;
    println!("created {PODS} pods in {t:.1?}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("seccomp/operator");
    let bin = operator_binary();
    let mut daemon = Command::new(&bin);
    daemon
        .env("KUBECONFIG", &kc)
        .env("RUST_LOG", "warn")
        .args(["daemon", "--namespace", NS, "--node-name", NODE, "--kubelet-dir"])
        .arg(tmp.path());
    let mut manager = Command::new(&bin);
    manager
        .env("KUBECONFIG", &kc)
        .env("RUST_LOG", "warn")
        .args(["manager", "--namespace", NS]);
    let start = Instant::now();
    let d = Proc::spawn("daemon", daemon, &tmp.path().join("daemon.log"));
    let m = Proc::spawn("manager", manager, &tmp.path().join("manager.log"));
    while count_files(&dir) < PROFILES {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "daemon did not install every profile"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "daemon installed {PROFILES} profiles {:.1?} after start",
        start.elapsed()
    );
    // Let the manager finish aggregating the initial statuses.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (d_rss, d_hwm) = rss_kib(d.id());
    let (m_rss, m_hwm) = rss_kib(m.id());
    println!(
        "steady: daemon RSS {:.1} MiB (peak {:.1}), manager RSS {:.1} MiB (peak {:.1})",
        d_rss as f64 / 1024.0,
        d_hwm as f64 / 1024.0,
        m_rss as f64 / 1024.0,
        m_hwm as f64 / 1024.0
    );

    // Burst: 1,000 new profiles; a poller records when each file appears.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let poll = {
        let (seen, dir) = (seen.clone(), dir.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            while seen.lock().expect("lock").len() < BURST && Instant::now() < deadline {
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(stem) = name.strip_prefix("burst-").and_then(|n| n.strip_suffix(".json")) {
                        seen.lock()
                            .expect("lock")
                            .entry(stem.to_owned())
                            .or_insert_with(Instant::now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let burst_start = Instant::now();
    stream::iter(0..BURST)
        .map(|i| {
            let (api, created) = (profiles.clone(), created.clone());
            async move {
                let name = format!("burst-{i}");
                api.create(&PostParams::default(), &profile(&name))
                    .await
                    .expect("create");
                created.lock().expect("lock").insert(i.to_string(), Instant::now());
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let create_time = burst_start.elapsed();
    poll.await.expect("poller");
    let all_installed = burst_start.elapsed();
    let (created, seen) = (
        created.lock().expect("lock").clone(),
        seen.lock().expect("lock").clone(),
    );
    let mut lat: Vec<Duration> = created
        .iter()
        .filter_map(|(k, c)| seen.get(k).map(|s| s.saturating_duration_since(*c)))
        .collect();
    lat.sort();
    assert_eq!(lat.len(), BURST, "not every burst profile was installed");
    println!(
        "burst of {BURST}: created in {create_time:.1?}, all installed after {all_installed:.1?}; create-to-installed p50 {:.0?}, p99 {:.0?}, max {:.0?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    let (d_rss, d_hwm) = rss_kib(d.id());
    let (m_rss, m_hwm) = rss_kib(m.id());
    println!(
        "after burst: daemon RSS {:.1} MiB (peak {:.1}), manager RSS {:.1} MiB (peak {:.1})",
        d_rss as f64 / 1024.0,
        d_hwm as f64 / 1024.0,
        m_rss as f64 / 1024.0,
        m_hwm as f64 / 1024.0
    );
    drop((d, m));
}
