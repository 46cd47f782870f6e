//! Recording in the cluster on the real node (issue 16, "Numbers"), a plain bench binary: for
//! each kind of `SPO_BENCH_KINDS` (default `seccomp,apparmor`), a ProfileRecording (eBPF)
//! selects `SPO_BENCH_RECORDED` pods (default 20, created at once with `generateName`, so each
//! gets its own profile); each pod's container prints the node's uptime as its last act and
//! exits. Reported: from each container's exit to its SeccompProfile or AppArmorProfile object
//! being seen in the cluster (a `kubectl get --watch` stamping the node's
//! uptime as each name arrives; both clocks are the node's /proc/uptime, 10 ms resolution), p50,
//! p99 and max; and the recorder's memory (VmRSS, VmHWM) afterwards.
//!
//! The chain measured: runc's exit, the kubelet noticing and writing the pod's phase, the
//! recorder's watch seeing it, collecting, and creating the object.
//!
//! Run on a fresh node (objects are left behind):
//! `e2e/start-node.sh /tmp/n && SPO_E2E_NODE_KUBECONFIG=/tmp/n/kubeconfig SPO_E2E_NODE_KUBELET_DIR=/tmp/n/node/kubelet cargo bench -p spo-e2e --bench recording; e2e/stop-node.sh /tmp/n`

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spo_e2e::node::{NODE_NAME, Node, busybox_pod};
use spo_e2e::{Proc, free_port, operator_binary, operator_command, recorder_args, rss_kib, webhook_args};

const NS: &str = "spo-bench-recording";

/// The node's uptime in seconds (`/proc/uptime`, the clock the containers print).
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .expect("/proc/uptime")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let Some(node) = Node::from_env("recording bench") else {
        return;
    };
    let n: usize = std::env::var("SPO_BENCH_RECORDED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let k = node.kubectl();
    k.install_crds();
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  labels: {{spo.x-k8s.io/enable-recording: 'true'}}\n"
        )),
    );
    k.wait_default_service_account(NS);
    let tmp = tempfile::Builder::new()
        .prefix("spo-bench-recording-")
        .tempdir()
        .expect("tempdir")
        .keep();
    let bin = operator_binary();
    let kc = node.kubeconfig().to_path_buf();
    let port = free_port();
    let mut webhook = operator_command(&bin, &kc, "warn", "127.0.0.1:0");
    webhook.args(webhook_args(NS, port));
    let mut webhook = Proc::spawn("webhook", webhook, &tmp.join("webhook.log"));
    let mut recorder = operator_command(&bin, &kc, "warn", "127.0.0.1:0");
    recorder.args(recorder_args(NS, NODE_NAME, node.kubelet_dir()));
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SecurityProfilesOperatorDaemon\nmetadata: {{name: spod, namespace: {NS}}}\nspec: {{enricher: {{enableBpfRecorder: true}}}}\n"
        )),
    );
    let recorder = Proc::spawn("recorder", recorder, &tmp.join("recorder.log"));
    let kinds = std::env::var("SPO_BENCH_KINDS").unwrap_or_else(|_| "seccomp,apparmor".to_owned());
    for kind in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let kind = match kind {
            "seccomp" => &SECCOMP,
            "apparmor" => &APPARMOR,
            other => panic!("SPO_BENCH_KINDS: unknown kind {other:?} (seccomp, apparmor)"),
        };
        measure(&k, &kc, &tmp, n, kind);
    }
    let (rss, hwm) = rss_kib(recorder.id());
    println!(
        "recorder: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    webhook.kill();
    k.ok(
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "spo-mutating-webhook-configuration",
            "--ignore-not-found",
        ],
        None,
    );
    drop(recorder);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// What one recorded kind's run uses.
struct Kind {
    /// The ProfileRecording's `spec.kind`.
    kind: &'static str,
    /// Its plural, for the watch.
    resource: &'static str,
    /// The recording's name, and the pods' `app` label.
    recording: &'static str,
    /// The annotation the webhook puts on recorded pods.
    annotation: &'static str,
    /// The pods' `generateName`.
    prefix: &'static str,
}

const SECCOMP: Kind = Kind {
    kind: "SeccompProfile",
    resource: "seccompprofiles",
    recording: "bench",
    annotation: "io.containers.trace-bpf/c",
    prefix: "b-",
};

const APPARMOR: Kind = Kind {
    kind: "AppArmorProfile",
    resource: "apparmorprofiles",
    recording: "bench-aa",
    annotation: "io.containers.trace-bpf-apparmor/c",
    prefix: "a-",
};

/// Records `n` pods at once for `kind` and prints the exit-to-object latencies.
fn measure(k: &spo_e2e::Kubectl, kc: &std::path::Path, tmp: &std::path::Path, n: usize, kind: &Kind) {
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {{name: {}, namespace: {NS}}}\nspec: {{kind: {}, recorder: Bpf, podSelector: {{matchLabels: {{app: {}}}}}}}\n",
            kind.recording, kind.kind, kind.recording
        )),
    );
    let mut pod: Value = serde_json::from_str(&busybox_pod(
        NS,
        "x",
        "ls / >/dev/null; cat /etc/hostname >/dev/null; cat /proc/uptime",
        None,
    ))
    .expect("pod json");
    pod["metadata"]["name"].take();
    pod["metadata"]["generateName"] = kind.prefix.into();
    pod["metadata"]["labels"] = json!({"app": kind.recording});
    pod["spec"]["securityContext"] = json!({});
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = k.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&pod.to_string()),
        );
        if r.stdout.contains(kind.annotation) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook does not mark pods: {}",
            r.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Profiles as they arrive, stamped with the node's uptime.
    let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let mut watch = Command::new("kubectl")
        .env("KUBECONFIG", kc)
        .args(["get", kind.resource, "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    let out = watch.stdout.take().expect("stdout");
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let at = uptime();
                let name = line.trim().rsplit('/').next().unwrap_or_default().to_owned();
                if let Ok(mut s) = seen.lock() {
                    s.entry(name).or_insert(at);
                }
            }
        });
    }

    let list = json!({"apiVersion": "v1", "kind": "List", "items": vec![pod; n]});
    let created = k.ok(&["create", "-o", "name", "-f", "-"], Some(&list.to_string()));
    let pods: Vec<String> = created
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pod/").map(str::to_owned))
        .collect();
    assert_eq!(pods.len(), n, "created: {created}");
    let started = Instant::now();
    let mut exits: HashMap<String, f64> = HashMap::new();
    while exits.len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{} of {n} pods done after 300 s",
            exits.len()
        );
        for p in &pods {
            if exits.contains_key(p) {
                continue;
            }
            let phase = k.run(&["-n", NS, "get", "pod", p, "-o", "jsonpath={.status.phase}"], None);
            match phase.stdout.trim() {
                "Succeeded" => {
                    let logs = k.ok(&["-n", NS, "logs", p], None);
                    let exit: f64 = logs
                        .lines()
                        .last()
                        .and_then(|l| l.split_whitespace().next()?.parse().ok())
                        .unwrap_or_else(|| panic!("pod {p} printed no uptime: {logs}"));
                    exits.insert(p.clone(), exit);
                }
                "Failed" => panic!("pod {p} failed: {}", k.ok(&["-n", NS, "logs", p], None)),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies = Vec::new();
    loop {
        let s = seen.lock().expect("seen").clone();
        latencies.clear();
        let mut missing = Vec::new();
        for (p, exit) in &exits {
            let suffix = p.strip_prefix(kind.prefix).expect("generated name");
            match s.get(&format!("{}-c-{suffix}", kind.recording)) {
                Some(at) => latencies.push(at - exit),
                None => missing.push(p.clone()),
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no profile for pods {missing:?} 60 s after they ended; logs in {}",
            tmp.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    latencies.sort_by(f64::total_cmp);
    println!(
        "container exit -> {} object, {n} pods recorded at once: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
         (uptime clock, 10 ms resolution)",
        kind.kind,
        percentile(&latencies, 0.5) * 1e3,
        percentile(&latencies, 0.99) * 1e3,
        latencies[latencies.len() - 1] * 1e3
    );
}
