//! The admission webhooks against a real kube-apiserver, which calls them over TLS at
//! `https://127.0.0.1:<port>` (no pod network needed).
//!
//! Real: the apiserver (admission chain, MutatingWebhookConfiguration, failurePolicy,
//! JSON Patch application, pod validation), the webhook binary with its own CA and serving
//! certificate in a Secret, certificate renewal, the SPOD driving the configuration.
//! Stand-in: the profiles' `status` is written with `kubectl patch --subresource=status`
//! instead of by node daemons (the daemons' installs are covered by the operator tests;
//! a bound pod running confined on a real node is covered by `node.rs` and the demo).
//!
//! Covers: every profile kind bound (exact image, `*`, podSelector), namespaces without
//! the opt-in label untouched, a binding to a profile that is not Installed refuses the pod,
//! conflicting bindings refuse the pod, recordings mark pods with upstream's annotations,
//! failurePolicy from the SPOD (Ignore: pods admitted unbound while the webhook is down,
//! Fail: refused), the configuration rewritten when the SPOD changes, certificate renewal
//! during a burst of pod creations (none fails), and malformed requests on the wire.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use spo_e2e::{Kubectl, Proc, eventually, free_port, kubeconfig, operator_binary, operator_command, webhook_args};

const NS: &str = "spo-e2e-webhook";
const BOUND: &str = "wh-bound";
const PLAIN: &str = "wh-plain";
const CONFIG: &str = "spo-mutating-webhook-configuration";
const T: Duration = Duration::from_secs(60);

struct Env {
    k: Kubectl,
    kubeconfig: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Env {
    fn webhook(&self, extra: &[&str]) -> Proc {
        let mut cmd = operator_command(
            &self.bin,
            &self.kubeconfig,
            "info,spo_operator=debug,kube=warn",
            "127.0.0.1:0",
        );
        cmd.args(webhook_args(NS, self.port))
            .args(["--resync", "2"])
            .args(extra);
        Proc::spawn("webhook", cmd, &self.dir.join("webhook.log"))
    }

    fn apply(&self, yaml: &str) {
        self.k.ok(&["apply", "-f", "-"], Some(yaml));
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.k.ok(args, None);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
    }

    /// Creates a pod; Ok(the pod as stored) or Err(kubectl's stderr).
    fn create_pod(&self, ns: &str, name: &str, labels: &str, containers: &str) -> Result<Value, String> {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec:\n  containers: {containers}\n"
        );
        let r = self.k.run(&["create", "-o", "json", "-f", "-"], Some(&yaml));
        if r.ok {
            Ok(serde_json::from_str(&r.stdout).expect("pod json"))
        } else {
            Err(r.stderr)
        }
    }

    fn set_status(&self, resource: &str, name: &str, status: &str) {
        self.k.ok(
            &[
                "patch",
                resource,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &format!("{{\"status\":{status}}}"),
            ],
            None,
        );
    }

    fn config(&self) -> Option<Value> {
        let r = self
            .k
            .run(&["get", "mutatingwebhookconfiguration", CONFIG, "-o", "json"], None);
        r.ok.then(|| serde_json::from_str(&r.stdout).expect("config json"))
    }

    fn wait_ready(&self) {
        eventually("webhook configuration with a CA bundle", T, || {
            let c = self.config().ok_or("no configuration")?;
            let url = c["webhooks"][0]["clientConfig"]["url"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if c["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
                && url.contains(&self.port.to_string())
            {
                Ok(())
            } else {
                Err(c.to_string())
            }
        });
        // The apiserver reloads webhook configurations asynchronously: wait until it calls us.
        eventually("the apiserver calls the webhook", T, || {
            let name = format!("probe-{}", rand_suffix());
            match self.create_pod(BOUND, &name, "{app: probe}", "[{name: c, image: 'probe:1'}]") {
                Ok(p) => {
                    self.delete_pod(BOUND, &name);
                    if ctx(&p, 0)["seccompProfile"]["localhostProfile"] == "operator/wh-probe.json" {
                        Ok(())
                    } else {
                        Err(format!("not bound yet: {}", p["spec"]))
                    }
                }
                Err(e) => Err(e),
            }
        });
    }

    fn delete_pod(&self, ns: &str, name: &str) {
        let _ = self.k.run(
            &[
                "-n",
                ns,
                "delete",
                "pod",
                name,
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            None,
        );
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()) ^ u128::from(free_port())
    )
}

fn ctx(p: &Value, i: usize) -> &Value {
    &p["spec"]["containers"][i]["securityContext"]
}

#[test]
fn admission_webhooks_on_a_real_apiserver() {
    let Some(kc) = kubeconfig("admission_webhooks_on_a_real_apiserver") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let env = Env {
        k: Kubectl::new(kc.clone()),
        kubeconfig: kc,
        bin: operator_binary(),
        dir: tmp.path().to_path_buf(),
        port: free_port(),
    };
    env.k.install_crds();
    // Leftovers of a failed run first: a configuration pointing at a dead port would refuse
    // every pod of the opted-in namespaces.
    let _ = env.k.run(
        &["delete", "mutatingwebhookconfiguration", CONFIG, "--ignore-not-found"],
        None,
    );
    // (Namespaces are kept: the bare apiserver has no namespace controller to delete them.)
    for ns in [BOUND, PLAIN] {
        let _ = env.k.run(
            &[
                "-n",
                ns,
                "delete",
                "pods,profilebindings,profilerecordings",
                "--all",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            None,
        );
    }
    let _ = env
        .k
        .run(&["-n", NS, "delete", "spod,secret", "--all", "--wait=false"], None);
    env.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {BOUND}\n  labels: {{spo.x-k8s.io/enable-binding: 'true', spo.x-k8s.io/enable-recording: 'true'}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {PLAIN}}}\n"
    ));
    env.apply(&format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SecurityProfilesOperatorDaemon\nmetadata: {{name: spod, namespace: {NS}}}\nspec: {{}}\n"
    ));
    // Profiles of every kind, Installed; one Pending.
    env.apply(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: wh-sc}\nspec: {defaultAction: SCMP_ACT_ERRNO}\n---\n\
         apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: wh-probe}\nspec: {defaultAction: SCMP_ACT_LOG}\n---\n\
         apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: wh-pending}\nspec: {defaultAction: SCMP_ACT_ERRNO}\n---\n\
         apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {name: wh-se}\nspec: {allow: {'@self': {tcp_socket: [listen]}}}\n---\n\
         apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: AppArmorProfile\nmetadata: {name: wh-aa}\nspec: {abstract: {filesystem: {readOnlyPaths: [/etc/hosts]}}}\n",
    );
    env.set_status(
        "seccompprofile",
        "wh-sc",
        r#"{"status":"Installed","localhostProfile":"operator/wh-sc.json"}"#,
    );
    env.set_status(
        "seccompprofile",
        "wh-probe",
        r#"{"status":"Installed","localhostProfile":"operator/wh-probe.json"}"#,
    );
    env.set_status("seccompprofile", "wh-pending", r#"{"status":"Pending"}"#);
    env.set_status(
        "selinuxprofile",
        "wh-se",
        r#"{"status":"Installed","usage":"wh-se.process"}"#,
    );
    env.set_status("apparmorprofile", "wh-aa", r#"{"status":"Installed"}"#);
    let binding = |name: &str, kind: &str, profile: &str, image: &str, selector: &str| {
        format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileBinding\nmetadata: {{name: {name}, namespace: {BOUND}}}\nspec:\n  profileRef: {{kind: {kind}, name: {profile}}}\n  image: '{image}'\n{selector}---\n"
        )
    };
    env.apply(
        &[
            binding("probe", "SeccompProfile", "wh-probe", "probe:1", ""),
            binding("sc", "SeccompProfile", "wh-sc", "busybox:1", ""),
            binding("se", "SelinuxProfile", "wh-se", "*", ""),
            binding(
                "aa",
                "AppArmorProfile",
                "wh-aa",
                "busybox:1",
                "  podSelector: {matchLabels: {app: web}}\n",
            ),
            binding("pend", "SeccompProfile", "wh-pending", "pending:1", ""),
            binding("conflict-a", "SeccompProfile", "wh-sc", "twice:1", ""),
            binding("conflict-b", "SeccompProfile", "wh-probe", "twice:1", ""),
        ]
        .concat(),
    );
    env.apply(&format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {{name: rec, namespace: {BOUND}}}\nspec: {{kind: SeccompProfile, recorder: Bpf, podSelector: {{matchLabels: {{app: rec}}}}}}\n"
    ));

    let mut wh = env.webhook(&[]);
    env.wait_ready();

    // 1. Every kind; exact image, star and podSelector.
    let p = env
        .create_pod(
            BOUND,
            "web",
            "{app: web}",
            "[{name: main, image: 'busybox:1'}, {name: side, image: 'other:2'}]",
        )
        .expect("bound pod admitted");
    assert_eq!(
        ctx(&p, 0)["seccompProfile"]["localhostProfile"],
        "operator/wh-sc.json",
        "{p}"
    );
    assert_eq!(ctx(&p, 0)["appArmorProfile"]["localhostProfile"], "wh-aa");
    assert_eq!(ctx(&p, 0)["seLinuxOptions"]["type"], "wh-se.process");
    assert_eq!(
        ctx(&p, 1)["seLinuxOptions"]["type"],
        "wh-se.process",
        "star binds every container"
    );
    assert!(ctx(&p, 1).get("seccompProfile").is_none(), "{p}");
    assert_eq!(
        p["metadata"]["annotations"]["spo.x-k8s.io/profile-bindings"],
        "aa,sc,se"
    );
    let p = env
        .create_pod(BOUND, "db", "{app: db}", "[{name: main, image: 'busybox:1'}]")
        .expect("pod admitted");
    assert!(
        ctx(&p, 0).get("appArmorProfile").is_none(),
        "podSelector excludes app=db: {p}"
    );
    assert_eq!(ctx(&p, 0)["seccompProfile"]["localhostProfile"], "operator/wh-sc.json");

    // 2. A namespace without the label: untouched.
    let p = env
        .create_pod(PLAIN, "web", "{app: web}", "[{name: main, image: 'busybox:1'}]")
        .expect("plain pod");
    assert!(ctx(&p, 0).is_null(), "{p}");

    // 3. Not Installed, and conflicting bindings: refused with the reason.
    let err = env
        .create_pod(BOUND, "pend", "{app: x}", "[{name: main, image: 'pending:1'}]")
        .expect_err("refused");
    assert!(err.contains("wh-pending") && err.contains("Pending"), "{err}");
    let err = env
        .create_pod(BOUND, "twice", "{app: x}", "[{name: main, image: 'twice:1'}]")
        .expect_err("refused");
    assert!(err.contains("conflict-a") && err.contains("conflict-b"), "{err}");
    // Installed later: admitted (controllers retrying get there).
    env.set_status(
        "seccompprofile",
        "wh-pending",
        r#"{"status":"Installed","localhostProfile":"operator/wh-pending.json"}"#,
    );
    eventually("pod admitted once its profile is Installed", T, || {
        env.create_pod(BOUND, "pend", "{app: x}", "[{name: main, image: 'pending:1'}]")
    });

    // 4. Recording marks.
    let p = env
        .create_pod(
            BOUND,
            "rec-1",
            "{app: rec}",
            "[{name: c1, image: 'r:1'}, {name: c2, image: 'r:2'}]",
        )
        .expect("recorded pod");
    for c in ["c1", "c2"] {
        let v = p["metadata"]["annotations"][format!("io.containers.trace-bpf/{c}")]
            .as_str()
            .unwrap_or_else(|| panic!("no mark for {c}: {p}"));
        let parts: Vec<&str> = v.split('_').collect();
        assert_eq!(
            (parts.len(), parts[0], parts[1], parts[2].len()),
            (4, "rec", c, 5),
            "{v}"
        );
    }
    for i in 0..2 {
        assert_eq!(
            ctx(&p, i)["seccompProfile"]["localhostProfile"],
            "spo-recording/filter.json",
            "eBPF recording runs under the recording filter: {p}"
        );
    }

    // 5. Malformed requests on the wire: clean HTTP errors, the server keeps serving.
    wire_checks(env.port);

    // 6. failurePolicy from the SPOD. Ignore: with the webhook down, pods are admitted
    // unbound (and visibly so: no bindings annotation).
    env.k.ok(
        &[
            "-n",
            NS,
            "patch",
            "spod",
            "spod",
            "--type=merge",
            "-p",
            r#"{"spec":{"webhook":{"options":[{"name":"binding.spo.io","failurePolicy":"Ignore"},{"name":"recording.spo.io","failurePolicy":"Ignore"}]}}}"#,
        ],
        None,
    );
    eventually("configuration follows the SPOD", T, || {
        let c = env.config().ok_or("no configuration")?;
        if c["webhooks"][0]["failurePolicy"] == "Ignore" && c["webhooks"][1]["failurePolicy"] == "Ignore" {
            Ok(())
        } else {
            Err(c["webhooks"].to_string())
        }
    });
    wh.kill();
    std::thread::sleep(Duration::from_secs(2)); // the apiserver's view of the configuration
    let p = eventually("pod admitted with the webhook down (Ignore)", T, || {
        env.create_pod(BOUND, "ignored", "{app: web}", "[{name: main, image: 'busybox:1'}]")
    });
    assert!(
        ctx(&p, 0).is_null()
            && p["metadata"]["annotations"]
                .get("spo.x-k8s.io/profile-bindings")
                .is_none(),
        "{p}"
    );
    // Fail: refused while the webhook is down.
    let mut wh = env.webhook(&[]);
    env.k.ok(
        &[
            "-n",
            NS,
            "patch",
            "spod",
            "spod",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/webhook"}]"#,
        ],
        None,
    );
    eventually("configuration back to Fail", T, || {
        let c = env.config().ok_or("no configuration")?;
        if c["webhooks"][0]["failurePolicy"] == "Fail" {
            Ok(())
        } else {
            Err(c["webhooks"][0].to_string())
        }
    });
    wh.kill();
    let err = eventually("pod refused with the webhook down (Fail)", T, || {
        match env.create_pod(BOUND, "refused", "{app: web}", "[{name: main, image: 'busybox:1'}]") {
            Ok(p) => {
                env.delete_pod(BOUND, "refused");
                Err(format!("admitted: {}", p["spec"]))
            }
            Err(e) => Ok(e),
        }
    });
    assert!(err.contains("binding.spo.io"), "{err}");

    // 7. Certificate renewal during a burst: serving certificates live 24 s (renewed after
    // 16 s); 30 s of pod creations, none may fail, every one bound.
    let mut wh7 = env.webhook(&["--cert-validity", "24", "--ca-validity", "3600"]);
    env.wait_ready();
    let not_after = || {
        let secret = env.json(&["-n", NS, "get", "secret", "webhook-server-cert", "-o", "json"]);
        let t = secret["metadata"]["annotations"]["spo.x-k8s.io/cert-not-after"]
            .as_str()
            .and_then(|t| t.parse::<i64>().ok())
            .expect("cert-not-after");
        (t, secret["data"]["ca.crt"].clone())
    };
    // The 24 s certificate the restarted webhook issued for itself (the lifetime was lowered).
    let (first, ca) = not_after();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(30) {
        let name = format!("burst-{n}");
        let p = env
            .create_pod(BOUND, &name, "{app: db}", "[{name: main, image: 'busybox:1'}]")
            .unwrap_or_else(|e| panic!("pod {n} during renewal: {e}"));
        assert_eq!(ctx(&p, 0)["seccompProfile"]["localhostProfile"], "operator/wh-sc.json");
        n += 1;
    }
    let (renewed, ca_after) = not_after();
    assert!(
        renewed > first,
        "the certificate was renewed during the burst ({first} -> {renewed})"
    );
    assert_eq!(ca_after, ca, "CA kept across renewals");
    eprintln!("{n} pods created across certificate renewals ({first} -> {renewed}), none refused");

    // 7b. Restarted during a burst (failurePolicy Fail, one replica here; the Deployment runs
    // three): while it is down pods are refused, never admitted unbound, and once it is back
    // they are admitted bound again.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (bound, refused, created, _back) = std::thread::scope(|scope| {
        let burst = scope.spawn(|| {
            let (mut bound, mut refused, mut i) = (0u32, 0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("restart-{i}");
                i += 1;
                match env.create_pod(BOUND, &name, "{app: db}", "[{name: main, image: 'busybox:1'}]") {
                    Ok(p) => {
                        assert_eq!(
                            ctx(&p, 0)["seccompProfile"]["localhostProfile"],
                            "operator/wh-sc.json",
                            "pod {name} admitted unbound during the restart"
                        );
                        bound += 1;
                    }
                    Err(e) => {
                        // Both webhooks are served by the process that restarts (failurePolicy
                        // Fail); the apiserver may call either first, so either may be the one
                        // it could not reach.
                        assert!(
                            e.contains("binding.spo.io") || e.contains("recording.spo.io"),
                            "pod {name} refused for another reason: {e}"
                        );
                        refused += 1;
                    }
                }
            }
            (bound, refused, i)
        });
        std::thread::sleep(Duration::from_secs(3));
        wh7.kill();
        std::thread::sleep(Duration::from_secs(3));
        let back = env.webhook(&[]);
        // Admitted again once it serves: a pod created after that is bound.
        eventually("a pod admitted after the restart", T, || {
            env.create_pod(
                BOUND,
                "after-restart",
                "{app: db}",
                "[{name: main, image: 'busybox:1'}]",
            )
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (bound, refused, created) = burst.join().expect("burst thread");
        (bound, refused, created, back)
    });
    assert!(
        bound > 0 && refused > 0,
        "{bound} bound, {refused} refused across the restart"
    );
    eprintln!("restart during a burst: {bound} pods bound, {refused} refused while down, none unbound");
    // Out of the way of the workload counts below.
    for i in 0..created {
        env.delete_pod(BOUND, &format!("restart-{i}"));
    }
    env.delete_pod(BOUND, "after-restart");

    // 8. The manager fills the bindings' workloads from the marked pods (with their real
    // names) and holds the binding while they run. (Started last: with no node daemons
    // here it rewrites the stand-in profile statuses.)
    let mut cmd = operator_command(
        &env.bin,
        &env.kubeconfig,
        "info,spo_operator=debug,kube=warn",
        "127.0.0.1:0",
    );
    cmd.args(["manager", "--namespace", NS, "--no-default-spod"])
        .args(spo_e2e::FAST_LEASE);
    let _manager = Proc::spawn("manager", cmd, &env.dir.join("manager.log"));
    let binding_of = |name: &str| env.json(&["-n", BOUND, "get", "profilebinding", name, "-o", "json"]);
    let workloads = |b: &Value| -> Vec<String> {
        b["status"]["activeWorkloads"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    eventually("binding aa lists its pod", T, || {
        let b = binding_of("aa");
        if workloads(&b) == ["wh-bound/web"]
            && b["metadata"]["finalizers"] == serde_json::json!(["active-workload-lock"])
        {
            Ok(())
        } else {
            Err(b.to_string())
        }
    });
    // A pod claiming a binding whose profile it does not use is not counted.
    env.k.ok(
        &[
            "-n",
            BOUND,
            "annotate",
            "pod",
            "db",
            "--overwrite",
            "spo.x-k8s.io/profile-bindings=aa,sc,se",
        ],
        None,
    );
    let sc = eventually("binding sc lists every bound pod", T, || {
        let w = workloads(&binding_of("sc"));
        if w.len() == n + 2 {
            Ok(w)
        } else {
            Err(format!("{} workloads", w.len()))
        }
    });
    assert!(
        sc.contains(&"wh-bound/db".to_owned()) && sc.contains(&"wh-bound/burst-0".to_owned()),
        "{sc:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        workloads(&binding_of("aa")),
        ["wh-bound/web"],
        "the forged claim on aa is not counted"
    );
    // Deleting the binding waits for its pod.
    env.k
        .ok(&["-n", BOUND, "delete", "profilebinding", "aa", "--wait=false"], None);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        binding_of("aa")["metadata"]["deletionTimestamp"].is_string(),
        "held by its pod"
    );
    env.delete_pod(BOUND, "web");
    eventually("binding aa gone with its last pod", T, || {
        let r = env.k.run(&["-n", BOUND, "get", "profilebinding", "aa"], None);
        if r.ok { Err("still there".into()) } else { Ok(()) }
    });

    let _ = env.k.run(&["delete", "mutatingwebhookconfiguration", CONFIG], None);
}

/// Raw HTTPS requests with curl (the CA is not needed to test refusals: `-k`).
fn wire_checks(port: u16) {
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let curl = |args: &[&str]| -> String {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            "--data-binary",
            "{\"apiVersion\":",
            &url("/mutate-v1-pod-binding")
        ]),
        "400"
    );
    assert_eq!(curl(&[&url("/nothing")]), "404");
    let big = std::env::temp_dir().join(format!("spo-wh-big-{}", std::process::id()));
    std::fs::write(&big, vec![b' '; 9 << 20]).expect("big body");
    let at = format!("@{}", big.display());
    assert_eq!(
        curl(&["-X", "POST", "--data-binary", &at, &url("/mutate-v1-pod-recording")]),
        "413"
    );
    let _ = std::fs::remove_file(&big);
    assert_eq!(curl(&[&url("/healthz")]), "200");
}
