//! Every profile kind on one daemon against a real apiserver (a plain bench binary, issue 13),
//! in two parts:
//!
//! 1. **SELinux batching, operator level.** `SPO_BENCH_SELINUX` (default 100) SelinuxProfiles
//!    created at once, installed by a daemon held to one semodule transaction per profile
//!    (`--selinux-batch-max 1`), then as many new ones by a daemon with the default batching,
//!    one after the other, each on its own node name and its own private copy of Debian's
//!    policy store (`semodule -p`, no reload: this kernel has SELinux compiled in but not
//!    enabled, so selinuxfs is a stand-in holding `enforce`). Reported: first create to the
//!    last node status `Installed`, both ways, and their ratio.
//! 2. **Footprint.** `SPO_BENCH_EACH` (default 2,000) profiles of each kind (SeccompProfile,
//!    SelinuxProfile, RawSelinuxProfile, AppArmorProfile) and `SPO_BENCH_PODS` (default
//!    20,000) pods; then one daemon with every kind and the manager start. AppArmor compiles
//!    with the real apparmor_parser and loads into a stand-in securityfs (no AppArmor in this
//!    kernel); SELinux installs into a private store in a few large transactions
//!    (`--selinux-batch-max 1000`; a profile waiting for its batch holds no thread and no
//!    `--concurrency` slot, so the default concurrency fills a transaction). Reported: time
//!    until every node status is `Installed`, then daemon and manager RSS.
//!
//! Needs root, semodule, Debian's policy store, apparmor_parser and `SPO_SELINUX_BASE` (or
//! `scripts/selinux-base`). Run on a fresh apiserver (objects are left behind):
//! `e2e/start-apiserver.sh /tmp/k && SPO_E2E_KUBECONFIG=/tmp/k/kubeconfig cargo bench -p spo-e2e --bench operator_kinds; e2e/stop-apiserver.sh /tmp/k`
//! A size of 0 leaves its part out.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::create_all;
use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use spo_e2e::{
    APPARMOR_FEATURES, Kubectl, Proc, copy_selinux_store, daemon_binary, daemon_flags, operator_binary,
    operator_command, rss_kib, rss_split_kib, selinux_base,
};

const NS: &str = "spo-bench-kinds";
const GROUP: &str = "security-profiles-operator.x-k8s.io";
/// How long any one wait may take before the bench gives up (a semodule transaction over
/// thousands of modules takes minutes on this VM).
const LIMIT: Duration = Duration::from_secs(3600);

/// Builds a profile object of one kind from its name.
type MakeProfile = fn(&str) -> DynamicObject;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn api(client: &Client, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, "v1", kind));
    Api::all_with(client.clone(), &ar)
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": kind, "metadata": {"name": name}, "spec": spec
    }))
    .expect("object")
}

fn seccomp(name: &str) -> DynamicObject {
    object(
        "SeccompProfile",
        name,
        json!({"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [{"names": ["read", "write", "openat", "close", "fstat", "mmap", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}),
    )
}

fn selinux(name: &str) -> DynamicObject {
    object(
        "SelinuxProfile",
        name,
        json!({"allow": {"var_log_t": {"file": ["read", "open", "getattr"]}}}),
    )
}

fn raw_selinux(name: &str) -> DynamicObject {
    object(
        "RawSelinuxProfile",
        name,
        json!({"policy": "(blockinherit container)\n(allow process var_log_t (file (append)))\n"}),
    )
}

fn apparmor(name: &str) -> DynamicObject {
    object(
        "AppArmorProfile",
        name,
        json!({"abstract": {"executable": {"allowedExecutables": ["/usr/bin/sleep"]},
                            "filesystem": {"readOnlyPaths": ["/etc/hosts"]}}}),
    )
}

fn pod(i: usize) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": NS, "labels": {"app": format!("app-{}", i % 100)}},
        "spec": {"nodeName": format!("kinds-other-{}", i % 10), "containers": [{"name": "c", "image": "busybox:1.36",
                 "command": ["sleep", "infinity"], "env": [{"name": "A", "value": "some value to make the pod realistic"}]}]}
    }))
    .expect("pod")
}

/// This node's statuses of `kind` (all kinds when `None`), counted by state.
async fn states(client: &Client, node: &str, kind: Option<&str>) -> BTreeMap<String, usize> {
    let mut selector = format!("{}={node}", spo_model::names::LABEL_NODE_NAME);
    if let Some(kind) = kind {
        selector.push_str(&format!(",{}={kind}", spo_model::names::LABEL_PROFILE_KIND));
    }
    let list = Api::<spo_model::SecurityProfileNodeStatus>::all(client.clone())
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .expect("list node statuses");
    let mut by_state = BTreeMap::new();
    for s in list.items {
        let state = s
            .metadata
            .labels
            .and_then(|l| l.get(spo_model::names::LABEL_PROFILE_STATE).cloned())
            .unwrap_or_else(|| "(none)".into());
        *by_state.entry(state).or_default() += 1;
    }
    by_state
}

/// Waits until `want` statuses of `node` (of `kind`) say Installed; returns when that was.
async fn wait_installed(client: &Client, node: &str, kind: Option<&str>, want: usize, daemon: &mut Proc) -> Instant {
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let by_state = states(client, node, kind).await;
        if by_state.get("Installed").copied().unwrap_or(0) >= want {
            return Instant::now();
        }
        assert!(
            daemon.running(),
            "{} exited; its log is in the bench's temp dir",
            daemon.name
        );
        assert!(
            start.elapsed() < LIMIT,
            "{node}: not every status Installed within {LIMIT:?}: {by_state:?}"
        );
        if last_print.elapsed() > Duration::from_secs(60) {
            println!("  ... {node} after {:.0?}: {by_state:?}", start.elapsed());
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One node's private world: a kubelet dir, a copy of the system's SELinux store, a stand-in
/// selinuxfs and securityfs.
struct NodeDirs {
    root: PathBuf,
}

impl NodeDirs {
    fn new(parent: &Path, node: &str) -> Self {
        let root = parent.join(node);
        copy_selinux_store(&root.join("root/var/lib/selinux/default"));
        std::fs::create_dir_all(root.join("selinuxfs")).expect("selinuxfs");
        std::fs::write(root.join("selinuxfs/enforce"), "1").expect("enforce");
        for d in ["kubelet", "securityfs", "apparmor.d"] {
            std::fs::create_dir_all(root.join(d)).expect("node dir");
        }
        // The stand-in securityfs: the kernel's profile list and its load and remove files
        // (apparmor_parser writes the compiled policy into `.replace`).
        for (file, text) in [("profiles", "distro (enforce)\n"), (".replace", ""), (".remove", "")] {
            std::fs::write(root.join("securityfs").join(file), text).expect("securityfs file");
        }
        Self { root }
    }

    fn daemon(&self, kubeconfig: &Path, node: &str, base: &Path, kinds: &str, extra: &[&str]) -> Proc {
        let mut cmd = operator_command(&daemon_binary(), kubeconfig, "warn", "127.0.0.1:0");
        cmd.args(daemon_flags(NS, node, &self.root.join("kubelet")))
            .args(["--kinds", kinds, "--selinux-reload", "false"])
            .arg("--selinuxfs")
            .arg(self.root.join("selinuxfs"))
            .arg("--selinux-policy-root")
            .arg(self.root.join("root"))
            .arg("--selinux-extra-module")
            .arg(base.join("container.cil"))
            .arg("--selinux-extra-module")
            .arg(base.join("shim.cil"))
            .args(["--apparmor-features-file", APPARMOR_FEATURES])
            .arg("--apparmor-securityfs")
            .arg(self.root.join("securityfs"))
            .arg("--apparmor-profile-dir")
            .arg(self.root.join("apparmor.d"))
            .args(extra);
        Proc::spawn(&format!("daemon {node}"), cmd, &self.root.join("daemon.log"))
    }
}

/// The number of threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Creates `n` SelinuxProfiles named `<prefix>-<i>` at once with only `daemon` running and
/// returns the time from the first create to the last node status Installed.
async fn selinux_burst(client: &Client, node: &str, prefix: &str, n: usize, daemon: &mut Proc) -> Duration {
    let start = Instant::now();
    create_all(api(client, "SelinuxProfile"), n, |i| selinux(&format!("{prefix}-{i}"))).await;
    wait_installed(client, node, Some("SelinuxProfile"), n, daemon).await - start
}

/// Deletes every SelinuxProfile named `<prefix>-<i>`, taking off the finalizers of a daemon
/// that is no longer running.
async fn purge(client: &Client, prefix: &str, n: usize) {
    let api = api(client, "SelinuxProfile");
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("{prefix}-{i}");
                let _ = api.delete(&name, &Default::default()).await;
                let _ = api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::main]
async fn main() {
    let Some(kc) = std::env::var_os("SPO_E2E_KUBECONFIG").map(PathBuf::from) else {
        eprintln!("skipped: operator_kinds bench: SPO_E2E_KUBECONFIG is not set");
        return;
    };
    let k = Kubectl::new(kc.clone());
    k.install_crds();
    let kubeconfig = kube::config::Kubeconfig::read_from(&kc).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    let client = Client::try_from(config).expect("client");
    let _ = k.run(&["create", "namespace", NS], None);
    // The SPOD the daemons read: SELinux (both kinds) and AppArmor on.
    k.ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: {GROUP}/v1\nkind: SecurityProfilesOperatorDaemon\nmetadata: {{name: spod, namespace: {NS}}}\nspec:\n  enableAppArmor: true\n  selinux: {{enable: true, enableRawSelinuxProfiles: true}}\n"
        )),
    );
    let base = selinux_base().expect("SPO_SELINUX_BASE is not set and scripts/selinux-base failed");
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = operator_binary();
    println!("operator binary: {}", bin.display());
    println!("machine: {}", spo_testkit::machine());

    let n = size("SPO_BENCH_SELINUX", 100);
    if n > 0 {
        for node in ["kinds-single", "kinds-batched"] {
            k.ok(
                &["apply", "-f", "-"],
                Some(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n")),
            );
        }
        // One transaction per profile first; its profiles go before the batching daemon starts,
        // so that daemon sees only its own.
        let single = NodeDirs::new(tmp.path(), "kinds-single");
        let mut d = single.daemon(&kc, "kinds-single", &base, "selinux", &["--selinux-batch-max", "1"]);
        let one_each = selinux_burst(&client, "kinds-single", "single", n, &mut d).await;
        println!(
            "{n} SelinuxProfiles, one semodule transaction each: {one_each:.1?} from the first create to the last Installed"
        );
        d.terminate(Duration::from_secs(30));
        purge(&client, "single", n).await;

        let batched = NodeDirs::new(tmp.path(), "kinds-batched");
        let mut d = batched.daemon(&kc, "kinds-batched", &base, "selinux", &[]);
        let batch = selinux_burst(&client, "kinds-batched", "batched", n, &mut d).await;
        println!("{n} SelinuxProfiles, batched (default window and size): {batch:.1?}");
        println!(
            "  batched takes {:.3} of the time of one transaction each (goal: at most 0.1)",
            batch.as_secs_f64() / one_each.as_secs_f64()
        );
        d.terminate(Duration::from_secs(30));
        purge(&client, "batched", n).await;
    }

    let each = size("SPO_BENCH_EACH", 2_000);
    if each > 0 {
        let pods = size("SPO_BENCH_PODS", 20_000);
        let node = "kinds-node";
        k.ok(
            &["apply", "-f", "-"],
            Some(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n")),
        );
        let kinds: [(&str, MakeProfile); 4] = [
            ("SeccompProfile", seccomp),
            ("SelinuxProfile", selinux),
            ("RawSelinuxProfile", raw_selinux),
            ("AppArmorProfile", apparmor),
        ];
        for (kind, make) in kinds {
            let t = create_all(api(&client, kind), each, |i| make(&format!("fp-{i}"))).await;
            println!("created {each} {kind}s in {t:.1?}");
        }
        let t = create_all(Api::namespaced(client.clone(), NS), pods, pod).await;
        println!("created {pods} pods in {t:.1?}");

        let dirs = NodeDirs::new(tmp.path(), node);
        let start = Instant::now();
        let mut d = dirs.daemon(
            &kc,
            node,
            &base,
            "seccomp,selinux,rawselinux,apparmor",
            &["--selinux-batch-max", "1000"],
        );
        let mut manager = operator_command(&bin, &kc, "warn", "127.0.0.1:0");
        manager.args(["manager", "--namespace", NS]);
        let m = Proc::spawn("manager", manager, &tmp.path().join("manager.log"));
        for (kind, _) in kinds {
            let done = wait_installed(&client, node, Some(kind), each, &mut d).await;
            println!("  every {kind} Installed on the node {:.1?} after start", done - start);
        }
        let (busy_rss, _) = rss_kib(d.id());
        println!(
            "  daemon when the last status arrived: RSS {:.1} MiB, {} threads",
            busy_rss as f64 / 1024.0,
            threads(d.id())
        );
        // Steady state: tokio's blocking threads (one per profile waiting for its semodule
        // batch) end 10 s after their last task, and the allocator returns idle pages a
        // second later.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let (d_rss, d_hwm) = rss_kib(d.id());
        let (d_anon, d_file) = rss_split_kib(d.id());
        println!(
            "  daemon 30 s later: {} threads; RSS {:.1} MiB = {:.1} MiB its own (RssAnon) + {:.1} MiB of binary and libraries (RssFile)",
            threads(d.id()),
            d_rss as f64 / 1024.0,
            d_anon as f64 / 1024.0,
            d_file as f64 / 1024.0
        );
        let (m_rss, m_hwm) = rss_kib(m.id());
        println!(
            "{each} profiles of each of 4 kinds and {pods} pods: daemon RSS {:.1} MiB (peak {:.1}), manager RSS {:.1} MiB (peak {:.1})",
            d_rss as f64 / 1024.0,
            d_hwm as f64 / 1024.0,
            m_rss as f64 / 1024.0,
            m_hwm as f64 / 1024.0
        );
        println!("  node statuses: {:?}", states(&client, node, None).await);
        // A graceful stop, as a DaemonSet's: the allocator's exit hooks run (a wrapper set by
        // SPO_E2E_OPERATOR_BINARY can have it print its statistics, docs/benchmarks.md).
        assert!(d.terminate(Duration::from_secs(30)), "daemon did not stop on SIGTERM");
    }
}
