//! Operator footprint and latency on a real apiserver (a plain bench binary):
//! 2,000 SeccompProfiles and 20,000 pods (100 on the daemon's node, one in ten using a
//! profile), then one daemon and the manager start; reported: time until the daemon has
//! every profile installed, daemon and manager RSS, and the latencies of a burst of 1,000
//! new profiles (p50/p99), each measured from the create call's return: to the file
//! appearing on the node (the goal), to the node status saying `Installed`, and to the
//! profile's own `status.status` saying `Installed` (the manager's aggregation).
//!
//! Run on a fresh apiserver (objects are left behind):
//! `e2e/start-apiserver.sh /tmp/b && SPO_E2E_KUBECONFIG=/tmp/b/kubeconfig cargo bench -p spo-e2e --bench operator; e2e/stop-apiserver.sh /tmp/b`
//!
//! `SPO_BENCH_PROFILES`, `SPO_BENCH_PODS` and `SPO_BENCH_BURST` change the sizes (defaults
//! 2,000, 20,000 and 1,000); extra flags go in `SPO_BENCH_DAEMON_ARGS` and
//! `SPO_BENCH_MANAGER_ARGS`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::create_all;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use spo_e2e::{Kubectl, Proc, daemon_binary, daemon_flags, operator_binary, operator_command, repo_root, rss_kib};
use spo_model::{ProfileState, SeccompProfile, SecurityProfileNodeStatus};

const NS: &str = "spo-bench";
const NODE: &str = "bench-node";
const PODS_ON_NODE: usize = 100;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

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

fn pod(i: usize, profiles: usize) -> Pod {
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
            "localhostProfile": format!("operator/bench-p-{}.json", i % profiles.max(1))}});
    }
    serde_json::from_value(p).expect("pod")
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Latencies from each burst profile's create request to the moment `seen` recorded it, sorted.
fn latencies(created: &HashMap<String, Instant>, seen: &HashMap<String, Instant>) -> Vec<Duration> {
    let mut lat: Vec<Duration> = created
        .iter()
        .filter_map(|(k, c)| seen.get(k).map(|s| s.saturating_duration_since(*c)))
        .collect();
    lat.sort();
    lat
}

fn summary(lat: &[Duration]) -> String {
    if lat.is_empty() {
        return "none seen".into();
    }
    format!(
        "p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        percentile(lat, 0.5),
        percentile(lat, 0.99),
        lat[lat.len() - 1]
    )
}

/// Records when each `burst-<i>` object first satisfies `done`, from a watch started now.
fn watch_burst<K>(
    api: Api<K>,
    name_of: fn(&K) -> Option<String>,
    done: fn(&K) -> bool,
    want: usize,
) -> (Arc<Mutex<HashMap<String, Instant>>>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut rv = api
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
            .expect("list")
            .metadata
            .resource_version
            .unwrap_or_default();
        while seen.lock().expect("lock").len() < want && Instant::now() < deadline {
            let wp = kube::api::WatchParams::default().timeout(60);
            let Ok(stream) = api.watch(&wp, &rv).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let obj = match ev {
                    Ok(kube::api::WatchEvent::Added(o) | kube::api::WatchEvent::Modified(o)) => o,
                    Ok(kube::api::WatchEvent::Bookmark(b)) => {
                        rv = b.metadata.resource_version;
                        continue;
                    }
                    _ => continue,
                };
                if let Some(v) = obj.meta().resource_version.clone() {
                    rv = v;
                }
                if let Some(stem) = name_of(&obj)
                    && done(&obj)
                {
                    let mut s = seen.lock().expect("lock");
                    s.entry(stem).or_insert_with(Instant::now);
                    if s.len() >= want {
                        break;
                    }
                }
            }
        }
    });
    (out, task)
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
    let (profiles_n, pods_n, burst_n) = (
        size("SPO_BENCH_PROFILES", 2_000),
        size("SPO_BENCH_PODS", 20_000),
        size("SPO_BENCH_BURST", 1_000),
    );
    let profiles: Api<SeccompProfile> = Api::all(client.clone());
    let t = create_all(profiles.clone(), profiles_n, |i| profile(&format!("bench-p-{i}"))).await;
    println!("created {profiles_n} profiles in {t:.1?}");
    let t = create_all(Api::<Pod>::namespaced(client.clone(), NS), pods_n, |i| {
        pod(i, profiles_n)
    })
    .await;
    println!("created {pods_n} pods in {t:.1?}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("seccomp/operator");
    let bin = operator_binary();
    let mut daemon = operator_command(&daemon_binary(), &kc, "warn", "127.0.0.1:0");
    daemon.args(daemon_flags(NS, NODE, tmp.path())).args(
        std::env::var("SPO_BENCH_DAEMON_ARGS")
            .unwrap_or_default()
            .split_whitespace(),
    );
    let mut manager = operator_command(&bin, &kc, "warn", "127.0.0.1:0");
    manager.args(["manager", "--namespace", NS]);
    let start = Instant::now();
    let d = Proc::spawn("daemon", daemon, &tmp.path().join("daemon.log"));
    let m = Proc::spawn("manager", manager, &tmp.path().join("manager.log"));
    while count_files(&dir) < profiles_n {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "daemon did not install every profile"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "daemon installed {profiles_n} profiles {:.1?} after start",
        start.elapsed()
    );
    // Let the daemon report and the manager aggregate every initial profile, so the burst
    // is measured on a steady cluster.
    loop {
        let list = profiles
            .list(&kube::api::ListParams::default())
            .await
            .expect("list profiles");
        let installed = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.status) == Some(ProfileState::Installed))
            .count();
        if installed >= profiles_n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "initial profiles not all Installed: {installed}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "every profile Installed (node status and profile status) {:.1?} after start",
        start.elapsed()
    );
    let (d_rss, d_hwm) = rss_kib(d.id());
    let (m_rss, m_hwm) = rss_kib(m.id());
    println!(
        "steady: daemon RSS {:.1} MiB (peak {:.1}), manager RSS {:.1} MiB (peak {:.1})",
        d_rss as f64 / 1024.0,
        d_hwm as f64 / 1024.0,
        m_rss as f64 / 1024.0,
        m_hwm as f64 / 1024.0
    );

    // Burst: new profiles; a poller records when each file appears, two watches when the
    // node status and the profile status say Installed.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (reported, reported_task) = watch_burst(
        Api::<SecurityProfileNodeStatus>::all(client.clone()),
        |s| {
            s.metadata
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix("burst-"))
                .and_then(|n| n.strip_suffix(&format!("-{NODE}")))
                .map(str::to_owned)
        },
        |s| s.state() == Some(ProfileState::Installed),
        burst_n,
    );
    let (aggregated, aggregated_task) = watch_burst(
        profiles.clone(),
        |p| {
            p.metadata
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix("burst-"))
                .map(str::to_owned)
        },
        |p| p.status.as_ref().and_then(|s| s.status) == Some(ProfileState::Installed),
        burst_n,
    );
    // Let the watches start before the first create.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let poll = {
        let (seen, dir) = (seen.clone(), dir.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            while seen.lock().expect("lock").len() < burst_n && Instant::now() < deadline {
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
    stream::iter(0..burst_n)
        .map(|i| {
            let (api, created) = (profiles.clone(), created.clone());
            async move {
                let name = format!("burst-{i}");
                // The clock starts when the request is sent, not when the apiserver's answer
                // is read: with 32 in flight that answer comes up to ~100 ms late, and a file
                // seen before it would count as 0.
                created.lock().expect("lock").insert(i.to_string(), Instant::now());
                api.create(&PostParams::default(), &profile(&name))
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let create_time = burst_start.elapsed();
    poll.await.expect("poller");
    let all_installed = burst_start.elapsed();
    reported_task.await.expect("node status watch");
    let all_reported = burst_start.elapsed();
    aggregated_task.await.expect("profile watch");
    let all_aggregated = burst_start.elapsed();
    let created = created.lock().expect("lock").clone();
    let lat = latencies(&created, &seen.lock().expect("lock"));
    assert_eq!(lat.len(), burst_n, "not every burst profile was installed");
    println!(
        "burst of {burst_n}: created in {create_time:.1?}; files all on disk after {all_installed:.1?}, node statuses after {all_reported:.1?}, profile statuses after {all_aggregated:.1?}"
    );
    println!("  create-to-file:           {}", summary(&lat));
    println!(
        "  create-to-node-status:    {}",
        summary(&latencies(&created, &reported.lock().expect("lock")))
    );
    println!(
        "  create-to-profile-status: {}",
        summary(&latencies(&created, &aggregated.lock().expect("lock")))
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
