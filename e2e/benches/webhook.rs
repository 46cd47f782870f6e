//! Admission webhook latency and footprint on a real apiserver (a plain bench binary).
//!
//! 1,000 ProfileBindings in the pods' namespace (each its own image, one SeccompProfile),
//! the webhook (release build) started as a process with its own certificates. Reported:
//!
//! - **server side over TLS on loopback**: AdmissionReviews posted straight to the webhook
//!   at 200/s (4 keep-alive TLS connections, paced) for 10 s; latency from the request's
//!   first byte written to the answer's last byte read, p50/p99/max; every answer checked
//!   (admitted, patched);
//! - **apiserver-observed**: pods created through the apiserver at 200/s for 10 s; the
//!   apiserver's own histogram `apiserver_admission_webhook_admission_duration_seconds` for
//!   `binding.spo.io` (bucket bounds, so quantiles are upper bounds) and the create calls'
//!   latency;
//! - **RSS** of the webhook after the load, then with 10,000 bindings and 10,000 recordings.
//!
//! Run on a fresh apiserver (objects are left behind):
//! `e2e/start-apiserver.sh /tmp/b && SPO_E2E_KUBECONFIG=/tmp/b/kubeconfig cargo bench -p spo-e2e --bench webhook; e2e/stop-apiserver.sh /tmp/b`
//! `SPO_BENCH_BINDINGS`, `SPO_BENCH_RATE`, `SPO_BENCH_SECONDS`, `SPO_BENCH_LARGE` change
//! the sizes (defaults 1,000, 200, 10, 10,000).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use spo_e2e::{Kubectl, Proc, free_port, http_get, operator_binary, operator_command, webhook_args};
use spo_model::binding::ProfileBinding;
use spo_model::recording::ProfileRecording;

const OP_NS: &str = "spo-bench-wh";
const NS: &str = "wh-bench";

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn binding(ns: &str, i: usize) -> ProfileBinding {
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileBinding",
        "metadata": {"name": format!("b-{i}"), "namespace": ns},
        "spec": {"profileRef": {"kind": "SeccompProfile", "name": "bench-wh"}, "image": format!("img-{i}:1"),
                 "podSelector": {"matchLabels": {"app": format!("app-{}", i % 10)}}},
    }))
    .expect("binding")
}

fn recording(ns: &str, i: usize) -> ProfileRecording {
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
        "metadata": {"name": format!("r-{i}"), "namespace": ns},
        "spec": {"kind": "SeccompProfile", "recorder": "Bpf", "podSelector": {"matchLabels": {"rec": format!("r-{i}")}}},
    }))
    .expect("recording")
}

fn pod_json(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "app-1"}},
        "spec": {"containers": [
            {"name": "a", "image": "img-1:1", "env": [{"name": "A", "value": "a realistic pod has some env"}]},
            {"name": "b", "image": "img-501:1"},
            {"name": "c", "image": "unbound:1"},
        ]},
    })
}

async fn create_all<K>(api: Api<K>, objs: Vec<K>)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    stream::iter(objs)
        .for_each_concurrent(32, |o| {
            let api = api.clone();
            async move {
                if let Err(e) = api.create(&PostParams::default(), &o).await
                    && !matches!(&e, kube::Error::Api(ae) if ae.code == 409)
                {
                    panic!("create: {e}");
                }
            }
        })
        .await;
}

/// One keep-alive HTTPS connection to the webhook, blocking.
struct Conn(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Conn {
    fn open(port: u16, roots: &Arc<rustls::ClientConfig>) -> Conn {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let c = rustls::ClientConnection::new(roots.clone(), name).expect("tls");
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Conn(rustls::StreamOwned::new(c, tcp))
    }

    fn post(&mut self, path: &str, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.0.write_all(head.as_bytes()).expect("write");
        self.0.write_all(body).expect("write");
        self.0.flush().expect("flush");
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            self.0.read_exact(&mut byte).expect("read head");
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        let mut out = vec![0; len];
        self.0.read_exact(&mut out).expect("read body");
        out
    }
}

fn review(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("u-{i}"), "operation": "CREATE", "namespace": NS, "name": format!("direct-{i}"),
                    "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": pod_json(&format!("direct-{i}"))},
    }))
    .expect("review")
}

/// Upper-bound quantiles from a Prometheus histogram's cumulative buckets.
fn histogram_quantile(metrics: &str, series: &str, q: f64) -> Option<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_admission_duration_seconds_bucket{") && l.contains(series)
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    let bound = buckets.iter().find(|(_, c)| *c >= q * total)?.0;
    Some((bound, total))
}

#[tokio::main]
async fn main() {
    let Some(kc) = std::env::var_os("SPO_E2E_KUBECONFIG") else {
        eprintln!("set SPO_E2E_KUBECONFIG (see the module docs)");
        std::process::exit(2);
    };
    let n_bindings = size("SPO_BENCH_BINDINGS", 1000);
    let rate = size("SPO_BENCH_RATE", 200);
    let seconds = size("SPO_BENCH_SECONDS", 10);
    let large = size("SPO_BENCH_LARGE", 10_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let k = Kubectl::new(kc.clone().into());
    k.install_crds();
    k.ok(&["apply", "-f", "-"], Some(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {OP_NS}}}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  labels: {{spo.x-k8s.io/enable-binding: 'true', spo.x-k8s.io/enable-recording: 'true'}}\n---\napiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: bench-wh}}\nspec: {{defaultAction: SCMP_ACT_LOG}}\n"
    )));
    k.ok(
        &[
            "patch",
            "seccompprofile",
            "bench-wh",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"status":"Installed","localhostProfile":"operator/bench-wh.json"}}"#,
        ],
        None,
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(&kc).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let client = Client::try_from(config).expect("client");
    let t = Instant::now();
    create_all(
        Api::namespaced(client.clone(), NS),
        (0..n_bindings).map(|i| binding(NS, i)).collect(),
    )
    .await;
    println!("{n_bindings} bindings created in {:.1} s", t.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().expect("tempdir");
    let (port, mport) = (free_port(), free_port());
    let mut cmd = operator_command(&operator_binary(), &kc, "info,kube=warn", &format!("127.0.0.1:{mport}"));
    cmd.args(webhook_args(OP_NS, port));
    let wh = Proc::spawn("webhook", cmd, &dir.path().join("webhook.log"));
    let t = Instant::now();
    while http_get(mport, "/readyz").map(|r| r.0) != Some(200) {
        assert!(t.elapsed() < Duration::from_secs(120), "webhook not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "webhook ready {:.2} s after start, RSS {} KiB",
        t.elapsed().as_secs_f64(),
        spo_e2e::rss_kib(wh.id()).0
    );

    // Server side, over TLS.
    let secret: Secret = Api::namespaced(client.clone(), OP_NS)
        .get("webhook-server-cert")
        .await
        .expect("secret");
    let ca = secret
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .expect("ca.crt")
        .0
        .clone();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.expect("pem")).expect("root");
    }
    use rustls::pki_types::pem::PemObject as _;
    let config = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let workers = 4;
    let per = rate / workers;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(port, &config);
                let bodies: Vec<Vec<u8>> = (0..16).map(|i| review(w * 1000 + i)).collect();
                // Warm-up.
                for b in &bodies {
                    conn.post("/mutate-v1-pod-binding", b);
                }
                let mut lat = Vec::new();
                let start = Instant::now();
                let gap = Duration::from_secs_f64(1.0 / per as f64);
                for i in 0..per * seconds {
                    let due = start + gap * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t = Instant::now();
                    let out = conn.post("/mutate-v1-pod-binding", &bodies[i % bodies.len()]);
                    lat.push(t.elapsed());
                    let a: Value = serde_json::from_slice(&out).expect("answer");
                    assert_eq!(a["response"]["allowed"], true, "{a}");
                    let patch = base64::engine::general_purpose::STANDARD
                        .decode(a["response"]["patch"].as_str().expect("patched"))
                        .expect("base64");
                    assert!(String::from_utf8_lossy(&patch).contains("operator/bench-wh.json"));
                }
                (lat, start.elapsed())
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut wall = Duration::ZERO;
    for h in handles {
        let (l, w) = h.join().expect("worker");
        all.extend(l);
        wall = wall.max(w);
    }
    let count = all.len();
    let (p50, p99, max) = quantiles(all);
    println!(
        "server side over TLS: {count} admissions in {:.1} s ({:.0}/s), p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        wall.as_secs_f64(),
        count as f64 / wall.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );

    // Through the apiserver.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let _ = pods.delete_collection(&Default::default(), &Default::default()).await;
    let metrics_before = client
        .request_text(http::Request::get("/metrics").body(vec![]).expect("req"))
        .await
        .unwrap_or_default();
    let series = "name=\"binding.spo.io\",operation=\"CREATE\"";
    let before = histogram_quantile(&metrics_before, series, 0.5).map_or(0.0, |x| x.1);
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::new();
    for i in 0..rate * seconds {
        let due = start + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            let p: Pod = serde_json::from_value(pod_json(&format!("api-{i}"))).expect("pod");
            let t = Instant::now();
            let made = pods.create(&PostParams::default(), &p).await.expect("create");
            let bound = made
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].security_context.as_ref())
                .and_then(|c| c.seccomp_profile.as_ref())
                .and_then(|s| s.localhost_profile.clone());
            assert_eq!(bound.as_deref(), Some("operator/bench-wh.json"));
            t.elapsed()
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.expect("task"));
    }
    let wall = start.elapsed();
    let (p50, p99, max) = quantiles(lat);
    let metrics = client
        .request_text(http::Request::get("/metrics").body(vec![]).expect("req"))
        .await
        .unwrap_or_default();
    let q50 = histogram_quantile(&metrics, series, 0.5);
    let q99 = histogram_quantile(&metrics, series, 0.99);
    println!(
        "through the apiserver: {} pods in {:.1} s; create call p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        rate * seconds,
        wall.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    println!(
        "apiserver-observed binding.spo.io admission (histogram bucket bounds, cumulative incl. {before} earlier): p50 <= {:?} s, p99 <= {:?} s over {:?} calls",
        q50.map(|x| x.0),
        q99.map(|x| x.0),
        q99.map(|x| x.1)
    );
    println!("webhook RSS after the load: {} KiB", spo_e2e::rss_kib(wh.id()).0);

    // Footprint with many bindings and recordings.
    let t = Instant::now();
    let extra_ns: Vec<String> = (0..10).map(|i| format!("wh-bench-{i}")).collect();
    for ns in &extra_ns {
        k.ok(
            &["apply", "-f", "-"],
            Some(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")),
        );
    }
    let per_ns = large / extra_ns.len();
    for ns in &extra_ns {
        create_all(
            Api::namespaced(client.clone(), ns),
            (0..per_ns).map(|i| binding(ns, i)).collect(),
        )
        .await;
        create_all(
            Api::namespaced(client.clone(), ns),
            (0..per_ns).map(|i| recording(ns, i)).collect(),
        )
        .await;
    }
    println!(
        "{large} more bindings and {large} recordings created in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The last ones arrived when a pod matching them is patched.
    let last_ns = extra_ns.last().expect("ns");
    let last = per_ns - 1;
    let probe = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "probe", "operation": "CREATE", "namespace": last_ns, "name": "probe",
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "object": {"metadata": {"name": "probe", "labels": {"app": format!("app-{}", last % 10), "rec": format!("r-{last}")}},
                               "spec": {"containers": [{"name": "c", "image": format!("img-{last}:1")}]}}}});
    let body = serde_json::to_vec(&probe).expect("probe");
    let mut conn = Conn::open(port, &config);
    let t = Instant::now();
    loop {
        let b: Value = serde_json::from_slice(&conn.post("/mutate-v1-pod-binding", &body)).expect("answer");
        let r: Value = serde_json::from_slice(&conn.post("/mutate-v1-pod-recording", &body)).expect("answer");
        if b["response"]["patch"].is_string() && r["response"]["patch"].is_string() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "webhook never saw the last objects"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "webhook RSS with {} bindings and {large} recordings: {} KiB",
        n_bindings + large,
        spo_e2e::rss_kib(wh.id()).0
    );
    drop(client);
}
