//! Profiles as OCI artifacts against a real registry (Debian's docker-registry with TLS and
//! htpasswd, `spo_testkit::registry`), a plain bench binary. Each artifact holds one
//! SeccompProfile of 300 syscall names, signed with a P-256 key made by openssl.
//!
//! Reported, p50 and p99 over `SPO_OCI_BENCH_ROUNDS` artifacts (default 50):
//! - **push, cold**: a new client per push (TLS handshake, auth challenge, token), upload of
//!   config, layer and manifest, then the signature, as one `spoc push` does;
//! - **pull + verify, cold**: a new client per pull, resolve, signature fetched and checked
//!   with the public key, layer fetched and checked against its digest, read as a profile;
//! - **pull + verify, warm client**: the same with one client kept (connections and token
//!   reused), for comparison;
//! - **daemon, cold** (`OciBases::resolve` of a tag not seen): pull secret read, pull, verify,
//!   parse into a SeccompProfile spec;
//! - **daemon, cached**: `OciBases::resolve` of a tag resolved within the tag TTL.
//!
//! Then memory: 1,000 further artifacts pushed and resolved by one `OciBases` (its default
//! bound is 1,000 artifacts), the process RSS before and after and the cache's own count of
//! entries and bytes; then 200 more, to show the bound holds (entries stay at 1,000, RSS does
//! not keep growing).
//!
//! The one part that is not real: the daemon reads its pull secret from a stand-in for the
//! apiserver (a tower service answering the one `GET secret`), so this bench needs no
//! cluster; `e2e/tests/operator_oci.rs` runs the same path against a real apiserver.
//!
//! Run: `cargo bench -p spo-operator --bench oci` (needs `docker-registry` and `openssl`;
//! `SPO_OCI_BENCH_ROUNDS` and `SPO_OCI_BENCH_CACHED` change the sizes).

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use spo_oci::{
    ClientOptions, Credentials, Platform, ProfileFile, PublicKey, PushOptions, Reference, Registry, SigningKeyPair,
    Verification,
};
use spo_operator::daemon::oci::{OciBases, OciPolicy, OciSettings};
use spo_testkit::registry::Registry as TestRegistry;

const NS: &str = "spo-bench";

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A SeccompProfile allowing the first 300 names of the native syscall table.
fn profile(name: &str) -> Vec<u8> {
    let table = spo_seccomp::syscalls::table(spo_seccomp::syscalls::native_arch()).expect("native syscall table");
    let names: Vec<&str> = table.names().take(300).collect();
    assert_eq!(names.len(), 300, "the native table has fewer than 300 names");
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: {name}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n    - action: SCMP_ACT_ALLOW\n      names: [{}]\n",
        names.join(", ")
    )
    .into_bytes()
}

fn quantiles(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let at = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
    let (p50, p99) = (at(50), at(99));
    println!(
        "{label:<36} p50 {:>8.3} ms   p99 {:>8.3} ms   ({} samples)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.len()
    );
    p50
}

/// A kube client whose only answer is the pull secret `regcred` (the stand-in apiserver).
fn secret_client(docker_config: Vec<u8>) -> kube::Client {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("regcred".into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some([(".dockerconfigjson".to_owned(), ByteString(docker_config))].into()),
        ..Secret::default()
    };
    let body = serde_json::to_vec(&secret).expect("secret json");
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let body = body.clone();
        async move {
            let path = req.uri().path().to_owned();
            let expected = format!("/api/v1/namespaces/{NS}/secrets/regcred");
            let response = if req.method() == http::Method::GET && path == expected {
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body))
            } else {
                http::Response::builder()
                    .status(404)
                    .body(kube::client::Body::from(Vec::new()))
            };
            response.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }
    });
    kube::Client::new(service, NS)
}

fn main() {
    println!("machine: {}", spo_testkit::machine());
    let rounds = size("SPO_OCI_BENCH_ROUNDS", 50).max(2);
    let cached = size("SPO_OCI_BENCH_CACHED", 1000).max(1);
    let Some(reg) = TestRegistry::require() else {
        eprintln!("oci bench: no registry to measure against");
        std::process::exit(1);
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (private, public) = spo_testkit::openssl_p256_keys(tmp.path(), "bench");
    let signer = SigningKeyPair::from_file(&private).expect("private key");
    let key = PublicKey::from_file(&public).expect("public key");
    let options = ClientOptions {
        ca_files: vec![reg.ca.clone()],
        ..ClientOptions::default()
    };
    let credentials = || Some(Credentials::new(&reg.user, &reg.password));
    let client = || Registry::new(&reg.host, credentials(), &options).expect("registry client");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let push_options = PushOptions {
        sign_with: Some(&signer),
        ..PushOptions::default()
    };
    let reference =
        |repo: &str, i: usize| Reference::parse(&format!("{}/bench/{repo}:r{i}", reg.host)).expect("reference");
    let push = |registry: &Registry, r: &Reference, i: usize| {
        let files = [ProfileFile {
            platform: Platform::host(),
            yaml: profile(&format!("p{i}")),
        }];
        rt.block_on(spo_oci::push(registry, r, &files, &push_options))
            .expect("push")
    };
    let verification = Verification::Keys(vec![key]);
    let size_bytes = profile("p0").len();
    println!("artifact: one SeccompProfile of 300 names ({size_bytes} bytes of YAML), signed; {rounds} rounds");

    let mut setups = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        drop(client());
        setups.push(start.elapsed());
    }
    quantiles("client setup (trust roots, TLS config)", setups);

    // Warm-up: the registry's first requests create its storage layout.
    push(&client(), &reference("warmup", 0), 0);

    let registry_cpu = registry_cpu(&reg);
    let mut pushes = Vec::new();
    let cpu_before = registry_cpu();
    for i in 0..rounds {
        let r = reference("p", i);
        let start = Instant::now();
        let registry = client();
        push(&registry, &r, i);
        pushes.push(start.elapsed());
    }
    let push_p50 = quantiles("push + sign, cold client", pushes);
    println!(
        "  the registry's CPU time per push: {:.1} ms (bcrypt of the htpasswd login on each request, storage)",
        (registry_cpu() - cpu_before).as_secs_f64() * 1e3 / rounds as f64
    );

    let mut cold = Vec::new();
    let cpu_before = registry_cpu();
    for i in 0..rounds {
        let r = reference("p", i);
        let start = Instant::now();
        let registry = client();
        let pulled = rt
            .block_on(spo_oci::pull(&registry, &r, &Platform::host(), &verification))
            .expect("pull");
        cold.push(start.elapsed());
        assert!(pulled.signed_by.is_some(), "pulled unverified");
    }
    let cold_p50 = quantiles("pull + verify, cold client", cold);
    println!(
        "  the registry's CPU time per pull: {:.1} ms",
        (registry_cpu() - cpu_before).as_secs_f64() * 1e3 / rounds as f64
    );

    let warm_client = client();
    let mut warm = Vec::new();
    for i in 0..rounds {
        let r = reference("p", i);
        let start = Instant::now();
        rt.block_on(spo_oci::pull(&warm_client, &r, &Platform::host(), &verification))
            .expect("pull");
        warm.push(start.elapsed());
    }
    quantiles("pull + verify, warm client", warm);

    let settings = || OciSettings {
        ca_files: vec![reg.ca.clone()],
        verify_keys: vec![public.clone()],
        ..OciSettings::default()
    };
    let new_bases = || {
        OciBases::new(rt.handle().clone(), bases_client(&rt, &reg), NS.into(), settings()).expect("daemon's oci bases")
    };
    let bases = new_bases();
    let policy = OciPolicy {
        pull_secrets: vec!["regcred".into()],
        ..OciPolicy::default()
    };
    let written = |i: usize| format!("{}/bench/p:r{i}", reg.host);
    let mut daemon_cold = Vec::new();
    for i in 0..rounds {
        let start = Instant::now();
        let spec = bases.resolve(&written(i), &policy).expect("daemon resolve");
        daemon_cold.push(start.elapsed());
        assert_eq!(
            spec.syscalls.iter().flatten().map(|r| r.names.len()).sum::<usize>(),
            300
        );
    }
    let daemon_cold_p50 = quantiles("daemon resolve, cold (secret+pull)", daemon_cold);
    let mut daemon_cached = Vec::new();
    for _ in 0..10 {
        for i in 0..rounds {
            let start = Instant::now();
            bases.resolve(&written(i), &policy).expect("daemon resolve");
            daemon_cached.push(start.elapsed());
        }
    }
    let cached_p50 = quantiles("daemon resolve, cached", daemon_cached);

    // Memory: a fresh OciBases filled with `cached` artifacts, then 20 % more.
    let fill = |bases: &OciBases, from: usize, to: usize| {
        let registry = client();
        for i in from..to {
            push(&registry, &reference("m", i), i);
            bases
                .resolve(&format!("{}/bench/m:r{i}", reg.host), &policy)
                .expect("daemon resolve");
        }
    };
    drop(bases);
    let bases = new_bases();
    let before = spo_testkit::rss_kib(std::process::id()).0;
    fill(&bases, 0, cached);
    let (entries, bytes) = bases.cached();
    let full = spo_testkit::rss_kib(std::process::id()).0;
    println!(
        "memory: {entries} cached artifacts ({:.1} MiB of profile text): RSS {:.1} -> {:.1} MiB (+{:.1} MiB)",
        bytes as f64 / 1048576.0,
        before as f64 / 1024.0,
        full as f64 / 1024.0,
        full.saturating_sub(before) as f64 / 1024.0
    );
    fill(&bases, cached, cached + cached / 5);
    let (entries_after, _) = bases.cached();
    let after = spo_testkit::rss_kib(std::process::id()).0;
    println!(
        "memory: after {} more: {entries_after} cached (bound {}), RSS {:.1} MiB ({:+.1} MiB)",
        cached / 5,
        OciSettings::default().entries,
        after as f64 / 1024.0,
        (after as f64 - full as f64) / 1024.0
    );
    assert!(
        entries_after <= OciSettings::default().entries,
        "the cache passed its bound"
    );

    let goal = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "goals: pull+verify cold p50 <= 50 ms: {} ({:.1} ms); cached p50 <= 1 ms: {} ({:.3} ms); push cold p50 <= 50 ms: {} ({:.1} ms); daemon cold p50 {:.1} ms",
        goal(cold_p50 <= Duration::from_millis(50)),
        cold_p50.as_secs_f64() * 1e3,
        goal(cached_p50 <= Duration::from_millis(1)),
        cached_p50.as_secs_f64() * 1e3,
        goal(push_p50 <= Duration::from_millis(50)),
        push_p50.as_secs_f64() * 1e3,
        daemon_cold_p50.as_secs_f64() * 1e3,
    );
}

/// The registry process's CPU time (user + system) so far.
fn registry_cpu(reg: &TestRegistry) -> impl Fn() -> Duration {
    let pid = std::fs::read_to_string(reg.dir().join("registry.pid")).expect("registry.pid");
    let stat = format!("/proc/{}/stat", pid.trim());
    // USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture this runs on.
    let ticks = 100.0;
    move || {
        let text = std::fs::read_to_string(&stat).expect("registry stat");
        // Fields after the command name (which may hold spaces): state is field 3, utime 14.
        let rest = &text[text.rfind(')').expect("stat") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let cpu: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        Duration::from_secs_f64(cpu / ticks)
    }
}

fn bases_client(rt: &tokio::runtime::Runtime, reg: &TestRegistry) -> kube::Client {
    let config = std::fs::read(reg.docker_config()).expect("docker config");
    let _guard = rt.enter();
    secret_client(config)
}
