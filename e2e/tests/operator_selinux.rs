//! The operator's SELinux kinds (daemon + manager binaries) against a real kube-apiserver
//! and a real SELinux policy store: semodule installs into a private copy of this machine's
//! store (`semodule -p <tmp root>`, no reload), with refpolicy's container module and the
//! shim from `scripts/selinux-base` as the node's extra modules. This kernel has SELinux
//! compiled in but not enabled, so the daemon's selinuxfs is a stand-in directory holding
//! `enforce`; nothing is loaded into the kernel and the system store is never touched.
//!
//! Covers, in one test so the phases share one set of processes: the SPOD switch
//! (`selinux.enable`, `enableRawSelinuxProfiles`), a SelinuxProfile and a RawSelinuxProfile of
//! one name installed side by side (modules `x` and `x_raw`, usage `x.process` and
//! `x_raw.process`), an inherited profile created after its child (the child is re-rendered),
//! a guardrail violation reported as Error with the field path (and lifted by the SPOD's
//! `selinux.options`), deletion blocked while a pod
//! object references the profile's type, the start-up sweep removing only our own orphans,
//! and turning SELinux off through the SPOD. Needs root,
//! semodule, Debian's store and `SPO_SELINUX_BASE`; without them it says `skipped:`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use spo_e2e::{
    Kubectl, Proc, SELINUX_SYSTEM_STORE, copy_selinux_store, daemon_args, eventually, kubeconfig, operator_binary,
    operator_command, selinux_base,
};

const NS: &str = "spo-e2e-selinux";
const NODE: &str = "e2e-se-node";
const LOG: &str = "info,spo_operator=debug,kube=warn";
/// A semodule transaction rebuilds the whole policy: seconds each, more with other builds.
const T: Duration = Duration::from_secs(180);

fn skip_or_fail(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("operator_selinux: {reason}");
    }
    eprintln!("skipped: operator_selinux: {reason}");
}

struct Cluster {
    k: Kubectl,
    kubeconfig: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
    base: PathBuf,
}

impl Cluster {
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn daemon(&self) -> Proc {
        let mut cmd = operator_command(&self.bin, &self.kubeconfig, LOG, "127.0.0.1:0");
        cmd.args(daemon_args(NS, NODE, &self.dir.join("kubelet")))
            .args(["--kinds", "seccomp,selinux,rawselinux", "--selinux-reload", "false"])
            .arg("--selinuxfs")
            .arg(self.dir.join("selinuxfs"))
            .arg("--selinux-policy-root")
            .arg(self.root())
            .arg("--selinux-extra-module")
            .arg(self.base.join("container.cil"))
            .arg("--selinux-extra-module")
            .arg(self.base.join("shim.cil"));
        Proc::spawn("daemon", cmd, &self.dir.join("daemon.log"))
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

    fn wait_state(&self, what: &str, name: &str, state: &str) -> Value {
        eventually(&format!("{what} {name} {state}"), T, || {
            let p = self.get(what, name).ok_or("not found")?;
            if p["status"]["status"] == state {
                Ok(p)
            } else {
                Err(format!("status is {}", p["status"]))
            }
        })
    }

    fn wait_gone(&self, what: &str, name: &str) {
        eventually(&format!("{what} {name} gone"), T, || match self.get(what, name) {
            None => Ok(()),
            Some(o) => Err(format!("still there: {}", o["metadata"])),
        });
    }

    /// Our modules (priority 420) in the private store.
    fn modules(&self) -> Vec<String> {
        let out = Command::new("semodule")
            .arg("-p")
            .arg(self.root())
            .args(["-s", "default", "--list-modules=full"])
            .output()
            .expect("semodule");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("420")).then(|| f.next().unwrap_or_default().to_owned())
            })
            .collect()
    }

    fn wait_modules(&self, want: &[&str], absent: &[&str]) {
        eventually(&format!("modules {want:?} and not {absent:?}"), T, || {
            let m = self.modules();
            if want.iter().all(|w| m.iter().any(|x| x == w)) && !absent.iter().any(|a| m.iter().any(|x| x == a)) {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        });
    }

    fn spod(&self, patch: &str) {
        self.k
            .ok(&["-n", NS, "patch", "spod", "spod", "--type=merge", "-p", patch], None);
    }
}

fn selinux(name: &str, body: &str) -> String {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {{name: {name}}}\nspec:\n{body}"
    )
}

fn raw(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: RawSelinuxProfile\nmetadata: {{name: {name}}}\nspec:\n  policy: |\n    {}\n",
        policy.replace('\n', "\n    ")
    )
}

#[test]
fn selinux_profiles_on_a_real_apiserver_and_store() {
    let Some(kc) = kubeconfig("selinux_profiles_on_a_real_apiserver_and_store") else {
        return;
    };
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        return skip_or_fail("semodule needs root");
    }
    if !Path::new(SELINUX_SYSTEM_STORE).join("active/modules").is_dir() {
        return skip_or_fail("no SELinux policy store at /var/lib/selinux/default");
    }
    let Some(base) = selinux_base() else {
        return skip_or_fail("SPO_SELINUX_BASE is not set and scripts/selinux-base failed");
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Cluster {
        k: Kubectl::new(kc.clone()),
        kubeconfig: kc,
        bin: operator_binary(),
        dir: tmp.path().to_path_buf(),
        base,
    };
    copy_selinux_store(&c.root().join("var/lib/selinux/default"));
    std::fs::create_dir_all(c.dir.join("selinuxfs")).expect("selinuxfs");
    std::fs::write(c.dir.join("selinuxfs/enforce"), "1").expect("enforce");
    std::fs::create_dir_all(c.dir.join("kubelet")).expect("kubelet");

    c.k.install_crds();
    if c.get("namespace", NS).is_none() {
        c.k.ok(&["create", "namespace", NS], None);
    }
    // Leftovers of an earlier, failed run: its profiles and its SPOD settings.
    for what in ["selinuxprofile", "rawselinuxprofile"] {
        c.k.purge(what, "e2e-");
    }
    let _ =
        c.k.run(&["-n", NS, "delete", "spod", "spod", "--ignore-not-found"], None);
    c.apply(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\n"));
    let _manager = c.manager();
    let mut daemon = c.daemon();
    eventually("default SPOD", T, || {
        let r = c.k.run(&["-n", NS, "get", "spod", "spod"], None);
        if r.ok { Ok(()) } else { Err(r.stderr) }
    });

    // 1. SELinux is off until the SPOD turns it on: the profile is Disabled, saying why.
    let web = selinux(
        "e2e-web",
        "  allow:\n    var_log_t:\n      file: [read, open, getattr]\n",
    );
    c.apply(&web);
    let off = c.wait_state("selinuxprofile", "e2e-web", "Disabled");
    let msg = off["status"]["conditions"][0]["message"].to_string();
    assert!(msg.contains(NODE) && msg.contains("spec.selinux.enable"), "{off}");
    assert!(c.modules().is_empty(), "nothing installed while SELinux is off");

    // 2. On: a SelinuxProfile and a RawSelinuxProfile of the same name install side by side.
    c.spod(r#"{"spec":{"selinux":{"enable":true,"enableRawSelinuxProfiles":true}}}"#);
    c.apply(&raw(
        "e2e-web",
        "(blockinherit container)\n(allow process var_log_t (file (append)))",
    ));
    let sel = c.wait_state("selinuxprofile", "e2e-web", "Installed");
    assert_eq!(sel["status"]["usage"], "e2e-web.process", "{sel}");
    let rawp = c.wait_state("rawselinuxprofile", "e2e-web", "Installed");
    assert_eq!(rawp["status"]["usage"], "e2e-web_raw.process", "{rawp}");
    c.wait_modules(&["e2e-web", "e2e-web_raw", "spo_templates"], &[]);
    for (kind, status) in [
        ("selinuxprofile", "e2e-web-e2e-se-node.selinuxprofile"),
        ("rawselinuxprofile", "e2e-web-e2e-se-node.rawselinuxprofile"),
    ] {
        let s = c
            .get("spns", status)
            .unwrap_or_else(|| panic!("{kind} node status {status}"));
        assert_eq!(s["status"]["status"], "Installed", "{s}");
    }

    // 2b. Log recording on: the manager makes the permissive domain SELinux recording runs
    //     containers as (`selinuxrecording.process`, upstream's type), and the daemon installs
    //     it like any SelinuxProfile.
    c.spod(r#"{"spec":{"enricher":{"enableLogEnricher":true}}}"#);
    let domain = c.wait_state("selinuxprofile", "selinuxrecording", "Installed");
    assert_eq!(domain["status"]["usage"], "selinuxrecording.process", "{domain}");
    assert_eq!(domain["spec"]["mode"], "Permissive", "{domain}");
    c.wait_modules(&["selinuxrecording"], &[]);

    // 3. A child created before its parent fails, and is re-rendered when the parent appears.
    c.apply(&selinux(
        "e2e-child",
        "  inherit: [{kind: SelinuxProfile, name: e2e-parent}]\n  allow:\n    var_run_t:\n      sock_file: [write]\n",
    ));
    let child = c.wait_state("selinuxprofile", "e2e-child", "Error");
    let msg = child["status"]["conditions"][0]["message"].to_string();
    assert!(
        msg.contains("spec.inherit[0].name") && msg.contains("e2e-parent"),
        "{child}"
    );
    c.apply(&selinux("e2e-parent", "  allow:\n    tmp_t:\n      dir: [search]\n"));
    c.wait_state("selinuxprofile", "e2e-parent", "Installed");
    c.wait_state("selinuxprofile", "e2e-child", "Installed");
    c.wait_modules(&["e2e-parent", "e2e-child"], &[]);

    // 4. A guardrail violation is an Error naming the field; nothing is installed.
    c.apply(&selinux("e2e-shadow", "  allow:\n    shadow_t:\n      file: [read]\n"));
    let bad = c.wait_state("selinuxprofile", "e2e-shadow", "Error");
    let msg = bad["status"]["conditions"][0]["message"].to_string();
    assert!(msg.contains("spec.allow[shadow_t]") && msg.contains(NODE), "{bad}");
    assert!(!c.modules().iter().any(|m| m == "e2e-shadow"));
    // The SPOD's selinux.options exempt the type: a settings change re-checks the profiles.
    c.spod(r#"{"spec":{"selinux":{"options":{"allowedTypes":["shadow_t"]}}}}"#);
    c.wait_state("selinuxprofile", "e2e-shadow", "Installed");
    c.wait_modules(&["e2e-shadow"], &[]);

    // 5. A hostile raw policy (closing the block) is refused with its line; nothing installed.
    c.apply(&raw(
        "e2e-escape",
        "(allow process var_log_t (file (read))))\n(allow unconfined_t shadow_t (file (read)))",
    ));
    let esc = c.wait_state("rawselinuxprofile", "e2e-escape", "Error");
    assert!(
        esc["status"]["conditions"][0]["message"]
            .to_string()
            .contains("spec.policy"),
        "{esc}"
    );
    assert!(!c.modules().iter().any(|m| m.starts_with("e2e-escape")));

    // 6. Deletion waits while a pod object uses the profile's type.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: e2e-se-pod, namespace: {NS}}}\nspec:\n  nodeName: {NODE}\n  securityContext: {{seLinuxOptions: {{type: e2e-web.process}}}}\n  containers: [{{name: c, image: busybox}}]\n"
    ));
    eventually("activeWorkloads", T, || {
        let p = c.get("selinuxprofile", "e2e-web").ok_or("gone")?;
        let fins = p["metadata"]["finalizers"].to_string();
        if p["status"]["activeWorkloads"] == serde_json::json!([format!("{NS}/e2e-se-pod")])
            && fins.contains("in-use-by-active-pods")
        {
            Ok(())
        } else {
            Err(format!("{} {fins}", p["status"]))
        }
    });
    c.k.ok(&["delete", "selinuxprofile", "e2e-web", "--wait=false"], None);
    c.wait_state("selinuxprofile", "e2e-web", "Terminating");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        c.modules().iter().any(|m| m == "e2e-web"),
        "module removed while a pod uses it"
    );
    c.k.ok(
        &["-n", NS, "delete", "pod", "e2e-se-pod", "--grace-period=0", "--force"],
        None,
    );
    c.wait_gone("selinuxprofile", "e2e-web");
    c.wait_modules(&["e2e-web_raw"], &["e2e-web"]);

    // 7. After a restart the sweep removes our module of a profile deleted meanwhile, and
    //    nothing else: not the other kind's module of the same name, not a module of another
    //    priority.
    daemon.kill();
    let foreign = c.dir.join("e2e-foreign.cil");
    std::fs::write(&foreign, "(type e2e_foreign_t)\n").expect("foreign module");
    let st = Command::new("semodule")
        .arg("-p")
        .arg(c.root())
        .args(["-s", "default", "-n", "-X", "400", "-i"])
        .arg(&foreign)
        .status()
        .expect("semodule");
    assert!(st.success(), "installing a foreign module");
    c.k.force_delete(None, "selinuxprofile/e2e-child");
    c.wait_gone("selinuxprofile", "e2e-child");
    assert!(
        c.modules().iter().any(|m| m == "e2e-child"),
        "the orphan is still there"
    );
    let _daemon = c.daemon();
    c.wait_modules(&["e2e-web_raw", "e2e-parent"], &["e2e-child"]);
    let all = Command::new("semodule")
        .arg("-p")
        .arg(c.root())
        .args(["-s", "default", "--list-modules=full"])
        .output()
        .expect("semodule");
    assert!(
        String::from_utf8_lossy(&all.stdout).contains("400 e2e-foreign"),
        "a module of another priority is not ours"
    );

    // 8. SELinux off through the SPOD: every profile is Disabled and its module removed.
    c.spod(r#"{"spec":{"selinux":{"enable":false}}}"#);
    c.wait_state("rawselinuxprofile", "e2e-web", "Disabled");
    c.wait_state("selinuxprofile", "e2e-parent", "Disabled");
    c.wait_modules(&[], &["e2e-web_raw", "e2e-parent", "e2e-shadow"]);

    for what in ["selinuxprofile", "rawselinuxprofile"] {
        c.k.purge(what, "e2e-");
    }
    for name in ["selinuxprofile/selinuxrecording", "seccompprofile/log-enricher-trace"] {
        c.k.force_delete(None, name);
    }
}
