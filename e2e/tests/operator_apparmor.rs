//! The operator's AppArmor kind (daemon + manager binaries) against a real kube-apiserver.
//!
//! What is real and what is a stand-in: the profile is rendered and checked by spo-apparmor
//! with the real apparmor_parser, written to a profile directory (a temp dir standing for
//! /etc/apparmor.d), and loaded by the real `apparmor_parser --replace --subdomainfs <dir>`,
//! which compiles it and writes the binary policy to `<dir>/.replace`, the kernel's load
//! interface. This kernel has no AppArmor, so `<dir>` is a stand-in securityfs (a `profiles`
//! file and an empty `.replace`): the test checks that the bytes written there are exactly
//! what apparmor_parser compiles from the profile file; only the kernel taking them is not
//! exercised. A second node whose securityfs has no AppArmor reports a clear Error.
//!
//! Covers: the SPOD switch (`enableAppArmor`), create -> Installed, a node without AppArmor,
//! deletion blocked while a pod object uses the profile (`appArmorProfile` Localhost), the
//! distribution's profile files never touched (not even by the orphan sweep after a restart),
//! and turning AppArmor off through the SPOD. Without apparmor_parser it says `skipped:`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use spo_e2e::{
    APPARMOR_FEATURES, Kubectl, Proc, daemon_args, eventually, kubeconfig, operator_binary, operator_command, repo_root,
};

const NS: &str = "spo-e2e-apparmor";
const NODE_A: &str = "e2e-aa-node-a";
/// A node whose kernel has no AppArmor (its securityfs lacks `profiles`).
const NODE_B: &str = "e2e-aa-node-b";
const LOG: &str = "info,spo_operator=debug,kube=warn";
const T: Duration = Duration::from_secs(60);

struct Cluster {
    k: Kubectl,
    kubeconfig: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
}

impl Cluster {
    fn securityfs(&self, node: &str) -> PathBuf {
        self.dir.join(node).join("securityfs")
    }

    fn profile_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node).join("apparmor.d")
    }

    fn daemon(&self, node: &str) -> Proc {
        let mut cmd = operator_command(&self.bin, &self.kubeconfig, LOG, "127.0.0.1:0");
        cmd.args(daemon_args(NS, node, &self.dir.join(node).join("kubelet")))
            .args([
                "--kinds",
                "seccomp,apparmor",
                "--apparmor-features-file",
                APPARMOR_FEATURES,
            ])
            .arg("--apparmor-securityfs")
            .arg(self.securityfs(node))
            .arg("--apparmor-profile-dir")
            .arg(self.profile_dir(node));
        Proc::spawn(
            &format!("daemon {node}"),
            cmd,
            &self.dir.join(format!("daemon-{node}.log")),
        )
    }

    fn manager(&self) -> Proc {
        let mut cmd = operator_command(&self.bin, &self.kubeconfig, LOG, "127.0.0.1:0");
        cmd.args(["manager", "--namespace", NS]).args(spo_e2e::FAST_LEASE);
        Proc::spawn("manager", cmd, &self.dir.join("manager.log"))
    }

    fn get(&self, what: &str, name: &str) -> Option<Value> {
        let r = self.k.run(&["get", what, name, "-o", "json"], None);
        if r.ok {
            serde_json::from_str(&r.stdout).ok()
        } else {
            assert!(r.stderr.contains("NotFound"), "kubectl get {what} {name}: {}", r.stderr);
            None
        }
    }

    fn apply(&self, yaml: &str) {
        self.k.ok(&["apply", "-f", "-"], Some(yaml));
    }

    fn wait_state(&self, name: &str, state: &str) -> Value {
        eventually(&format!("AppArmorProfile {name} {state}"), T, || {
            let p = self.get("apparmorprofile", name).ok_or("not found")?;
            if p["status"]["status"] == state {
                Ok(p)
            } else {
                Err(format!("status is {}", p["status"]))
            }
        })
    }

    fn node_state(&self, name: &str, node: &str, state: &str) -> Value {
        eventually(&format!("{name} on {node} {state}"), T, || {
            let s = self
                .get("spns", &format!("{name}-{node}.apparmorprofile"))
                .ok_or("no node status")?;
            if s["status"]["status"] == state {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        })
    }
}

fn profile(name: &str) -> String {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: AppArmorProfile\nmetadata: {{name: {name}}}\nspec:\n  abstract:\n    executable: {{allowedExecutables: [/usr/bin/sleep]}}\n    filesystem: {{readOnlyPaths: [/etc/hosts]}}\n"
    )
}

/// What apparmor_parser compiles from `file` for the stand-in's features.
fn compiled(file: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("expected.bin");
    let st = Command::new("apparmor_parser")
        .args(["-Q", "-K", "-M", APPARMOR_FEATURES, "-o"])
        .arg(&out)
        .arg(file)
        .status()
        .expect("apparmor_parser");
    assert!(st.success(), "compiling {}", file.display());
    std::fs::read(out).expect("compiled")
}

#[test]
fn apparmor_profiles_on_a_real_apiserver() {
    let Some(kc) = kubeconfig("apparmor_profiles_on_a_real_apiserver") else {
        return;
    };
    let parser_ok = Command::new("apparmor_parser")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !parser_ok || !Path::new(APPARMOR_FEATURES).exists() {
        if std::env::var_os("CI").is_some() {
            panic!("operator_apparmor: apparmor_parser or {APPARMOR_FEATURES} is missing");
        }
        eprintln!("skipped: operator_apparmor: apparmor_parser or {APPARMOR_FEATURES} is missing");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Cluster {
        k: Kubectl::new(kc.clone()),
        kubeconfig: kc,
        bin: operator_binary(),
        dir: tmp.path().to_path_buf(),
    };
    // Node A: a stand-in securityfs with AppArmor; node B: none. Both have a distribution
    // profile file of their own.
    for node in [NODE_A, NODE_B] {
        std::fs::create_dir_all(c.securityfs(node)).expect("securityfs");
        std::fs::create_dir_all(c.profile_dir(node)).expect("profile dir");
        std::fs::create_dir_all(c.dir.join(node).join("kubelet")).expect("kubelet");
        std::fs::write(c.profile_dir(node).join("usr.sbin.distro"), "profile distro {}\n").expect("distro");
    }
    std::fs::write(c.securityfs(NODE_A).join("profiles"), "distro (enforce)\n").expect("profiles");
    std::fs::write(c.securityfs(NODE_A).join(".replace"), b"").expect(".replace");
    std::fs::write(c.securityfs(NODE_A).join(".remove"), b"").expect(".remove");

    c.k.install_crds();
    if c.get("namespace", NS).is_none() {
        c.k.ok(&["create", "namespace", NS], None);
    }
    // Leftovers of an earlier, failed run: its profiles and its SPOD settings.
    c.k.purge("apparmorprofile", "e2e-");
    let _ =
        c.k.run(&["-n", NS, "delete", "spod", "spod", "--ignore-not-found"], None);
    for node in [NODE_A, NODE_B] {
        c.apply(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n"));
    }
    let _manager = c.manager();
    let mut daemon_a = c.daemon(NODE_A);
    let _daemon_b = c.daemon(NODE_B);
    eventually("default SPOD", T, || {
        let r = c.k.run(&["-n", NS, "get", "spod", "spod"], None);
        if r.ok { Ok(()) } else { Err(r.stderr) }
    });

    // 1. AppArmor is off until the SPOD turns it on.
    c.apply(&profile("e2e-aa"));
    let off = c.wait_state("e2e-aa", "Disabled");
    assert!(
        off["status"]["conditions"][0]["message"]
            .to_string()
            .contains("spec.enableAppArmor"),
        "{off}"
    );
    c.k.ok(
        &[
            "-n",
            NS,
            "patch",
            "spod",
            "spod",
            "--type=merge",
            "-p",
            r#"{"spec":{"enableAppArmor":true}}"#,
        ],
        None,
    );

    // 2. Node A compiles and loads it into its (stand-in) securityfs; node B has no AppArmor.
    c.node_state("e2e-aa", NODE_A, "Installed");
    let file = c.profile_dir(NODE_A).join("e2e-aa");
    let text = std::fs::read_to_string(&file).expect("profile file");
    assert!(
        text.starts_with("# Managed by spo-rs (AppArmorProfile): e2e-aa\n"),
        "{text}"
    );
    assert!(text.contains("profile e2e-aa flags=(enforce"), "{text}");
    let loaded = std::fs::read(c.securityfs(NODE_A).join(".replace")).expect(".replace");
    assert_eq!(
        loaded,
        compiled(&file, &c.dir),
        "the policy written to securityfs is what apparmor_parser compiles"
    );
    c.node_state("e2e-aa", NODE_B, "Error");
    let err = c.wait_state("e2e-aa", "Error");
    let msg = err["status"]["conditions"][0]["message"].to_string();
    assert!(
        msg.contains(NODE_B) && msg.contains("the kernel has no AppArmor") && !msg.contains(NODE_A),
        "{err}"
    );

    // 3. Deletion waits while a pod object uses the profile.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: e2e-aa-pod, namespace: {NS}}}\nspec:\n  nodeName: {NODE_A}\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {{appArmorProfile: {{type: Localhost, localhostProfile: e2e-aa}}}}\n"
    ));
    eventually("activeWorkloads", T, || {
        let p = c.get("apparmorprofile", "e2e-aa").ok_or("gone")?;
        let fins = p["metadata"]["finalizers"].to_string();
        if p["status"]["activeWorkloads"] == serde_json::json!([format!("{NS}/e2e-aa-pod")])
            && fins.contains("in-use-by-active-pods")
        {
            Ok(())
        } else {
            Err(format!("{} {fins}", p["status"]))
        }
    });
    c.k.ok(&["delete", "apparmorprofile", "e2e-aa", "--wait=false"], None);
    c.wait_state("e2e-aa", "Terminating");
    std::thread::sleep(Duration::from_secs(1));
    assert!(file.exists(), "profile removed while a pod uses it");
    c.k.ok(
        &["-n", NS, "delete", "pod", "e2e-aa-pod", "--grace-period=0", "--force"],
        None,
    );
    eventually("e2e-aa gone", T, || match c.get("apparmorprofile", "e2e-aa") {
        None => Ok(()),
        Some(p) => Err(p["metadata"].to_string()),
    });
    eventually("profile file removed", T, || {
        if file.exists() {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    });

    // 4. A restart sweeps only our own leftovers: a marked file of a profile that no longer
    //    exists goes, the distribution's file stays.
    daemon_a.kill();
    std::fs::write(
        c.profile_dir(NODE_A).join("e2e-orphan"),
        "# Managed by spo-rs (AppArmorProfile): e2e-orphan\nprofile e2e-orphan {}\n",
    )
    .expect("orphan");
    let _daemon_a = c.daemon(NODE_A);
    eventually("orphan swept", T, || {
        if c.profile_dir(NODE_A).join("e2e-orphan").exists() {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    });
    for node in [NODE_A, NODE_B] {
        assert_eq!(
            std::fs::read_to_string(c.profile_dir(node).join("usr.sbin.distro")).expect("distro"),
            "profile distro {}\n",
            "the distribution's profile is never touched"
        );
    }

    // 5. AppArmor off through the SPOD: the profile is Disabled and removed from the node.
    c.apply(&profile("e2e-aa2"));
    c.node_state("e2e-aa2", NODE_A, "Installed");
    c.k.ok(
        &[
            "-n",
            NS,
            "patch",
            "spod",
            "spod",
            "--type=merge",
            "-p",
            r#"{"spec":{"enableAppArmor":false}}"#,
        ],
        None,
    );
    c.wait_state("e2e-aa2", "Disabled");
    eventually("e2e-aa2 file removed", T, || {
        if c.profile_dir(NODE_A).join("e2e-aa2").exists() {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    });
    c.k.purge("apparmorprofile", "e2e-");
}

/// The `spo-daemon` ClusterRole of rendered manifests.
fn daemon_role(rendered: &str) -> &str {
    rendered
        .split("\n---\n")
        .find(|doc| doc.contains("kind: ClusterRole\nmetadata:\n  name: spo-daemon\n"))
        .expect("ClusterRole spo-daemon in the manifests")
}

/// The manifests with every kind on (`deploy/overlays/all-kinds`: the SELinux and AppArmor
/// components) pass a server-side dry run, and grant the daemon those kinds; the base grants
/// it SeccompProfiles only. (Their host mounts and CAP_MAC_ADMIN are the manager's to render
/// from the SPOD: `manager::nodeset` unit tests and e2e/tests/operator_deploy.rs.)
#[test]
fn all_kinds_overlay_dry_runs() {
    let Some(kc) = kubeconfig("all_kinds_overlay_dry_runs") else {
        return;
    };
    let k = Kubectl::new(kc);
    let overlay = repo_root().join("deploy/overlays/all-kinds");
    let rendered = k.ok(&["kustomize", overlay.to_str().expect("utf-8")], None);
    let all = daemon_role(&rendered);
    for kind in ["selinuxprofiles", "rawselinuxprofiles", "apparmorprofiles"] {
        assert!(
            all.contains(kind),
            "{kind} not granted to the daemon by the overlay:\n{all}"
        );
    }
    let base = k.ok(
        &["kustomize", repo_root().join("deploy").to_str().expect("utf-8")],
        None,
    );
    let seccomp_only = daemon_role(&base);
    for kind in ["selinuxprofiles", "apparmorprofiles"] {
        assert!(
            !seccomp_only.contains(kind),
            "{kind} granted to the daemon by the seccomp-only base:\n{seccomp_only}"
        );
    }
    for needle in [
        "/var/lib/selinux",
        "/sys/kernel/security",
        "MAC_ADMIN",
        "kind: DaemonSet",
    ] {
        assert!(!base.contains(needle), "{needle} in the base manifests");
        assert!(
            !rendered.contains(needle),
            "{needle} in the overlay (the manager renders it)"
        );
    }
    let crds = repo_root().join("deploy/crds");
    k.ok(&["apply", "--server-side", "-k", crds.to_str().expect("utf-8")], None);
    if !k.run(&["get", "namespace", "security-profiles-operator"], None).ok {
        k.ok(&["create", "namespace", "security-profiles-operator"], None);
    }
    let dry = k.run(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(&rendered),
    );
    assert!(dry.ok, "dry run rejected the overlay:\n{}{}", dry.stdout, dry.stderr);
}
