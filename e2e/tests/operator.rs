//! The operator (daemon + manager binaries) against a real kube-apiserver: two daemon
//! processes act as two nodes (each with its own temporary kubelet directory), one manager
//! aggregates. Covers create/update/disable/delete of SeccompProfiles with base profiles,
//! Error status with the message in the Ready condition plus an Event, the SPOD
//! allowedSyscalls policy, deletion blocked while a pod uses a profile, restarts of the
//! daemon and the manager, and a node deleted while its daemon is gone.
//!
//! There is no kubelet or controller-manager: pods stay Pending (and need a forced delete),
//! nodes are created by hand, and nothing is garbage-collected, so everything asserted here
//! is done by the operator itself. One test function, so the phases share one set of
//! processes in a fixed order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use spo_e2e::{Kubectl, Proc, daemon_args, eventually, kubeconfig, operator_binary, operator_command};

const NS: &str = "spo-e2e-operator";
/// What the operator processes log.
const LOG: &str = "info,spo_operator=debug,kube=warn";
const NODE_A: &str = "e2e-node-a";
const NODE_B: &str = "e2e-node-b";
const T: Duration = Duration::from_secs(30);

struct Cluster {
    k: Kubectl,
    kubeconfig: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
}

impl Cluster {
    fn daemon(&self, node: &str) -> Proc {
        let mut cmd = operator_command(&self.bin, &self.kubeconfig, LOG, "127.0.0.1:0");
        cmd.args(daemon_args(NS, node, &self.kubelet_dir(node)));
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

    fn kubelet_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node).join("kubelet")
    }

    fn file(&self, node: &str, profile: &str) -> PathBuf {
        self.kubelet_dir(node)
            .join("seccomp/operator")
            .join(format!("{profile}.json"))
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

    /// Waits until profile `name` has `status.status == state`; returns the object.
    fn wait_state(&self, name: &str, state: &str) -> Value {
        eventually(&format!("SeccompProfile {name} {state}"), T, || {
            let sp = self.get("sp", name).ok_or("not found")?;
            if sp["status"]["status"] == state {
                Ok(sp)
            } else {
                Err(format!("status is {}", sp["status"]))
            }
        })
    }

    fn wait_gone(&self, what: &str, name: &str) {
        eventually(&format!("{what} {name} gone"), T, || match self.get(what, name) {
            None => Ok(()),
            Some(o) => Err(format!("still there: {}", o["metadata"])),
        });
    }

    /// Waits until `node` has the file of `profile` and it contains every name in `has`.
    fn wait_file(&self, node: &str, profile: &str, has: &[&str]) -> Value {
        let path = self.file(node, profile);
        eventually(&format!("{} with {has:?}", path.display()), T, || {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("half-written? {e}: {text}"))?;
            let names = names_in(&v);
            match has.iter().find(|n| !names.contains(&(**n).to_owned())) {
                None => Ok(v),
                Some(missing) => Err(format!("{missing} missing in {text}")),
            }
        })
    }

    fn wait_no_file(&self, node: &str, profile: &str) {
        let path = self.file(node, profile);
        eventually(&format!("{} removed", path.display()), T, || {
            if path.exists() {
                Err("still there".into())
            } else {
                Ok(())
            }
        });
    }

    fn node_status(&self, profile: &str, node: &str) -> Option<Value> {
        self.get("spns", &format!("{profile}-{node}"))
    }
}

fn names_in(v: &Value) -> Vec<String> {
    v["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

fn profile(name: &str, base: Option<&str>, names: &[&str]) -> String {
    let base = base.map(|b| format!("  baseProfileName: {b}\n")).unwrap_or_default();
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: {name}}}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n{base}  syscalls: [{{names: [{}], action: SCMP_ACT_ALLOW}}]\n",
        names.join(", ")
    )
}

fn node(name: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n")
}

fn no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with('.'),
            "temporary file left behind: {}",
            entry.path().display()
        );
    }
}

#[test]
fn operator_on_a_real_apiserver() {
    let Some(kc) = kubeconfig("operator_on_a_real_apiserver") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Cluster {
        k: Kubectl::new(kc.clone()),
        kubeconfig: kc,
        bin: operator_binary(),
        dir: tmp.path().to_path_buf(),
    };
    c.k.install_crds();
    if c.get("namespace", NS).is_none() {
        c.k.ok(&["create", "namespace", NS], None);
    }
    c.apply(&format!("{}---\n{}", node(NODE_A), node(NODE_B)));
    for n in [NODE_A, NODE_B] {
        std::fs::create_dir_all(c.kubelet_dir(n)).expect("kubelet dir");
    }

    let mut manager = c.manager();
    let mut daemon_a = c.daemon(NODE_A);
    let mut daemon_b = c.daemon(NODE_B);

    // The manager creates the default SPOD.
    eventually("default SPOD", T, || {
        let r = c.k.run(&["-n", NS, "get", "spod", "spod"], None);
        if r.ok { Ok(()) } else { Err(r.stderr) }
    });

    // 1. A base profile and a child: installed on both nodes, child unioned with its base.
    c.apply(&format!(
        "{}---\n{}",
        profile("e2e-base", None, &["openat"]),
        profile("e2e-app", Some("e2e-base"), &["read", "write"])
    ));
    for n in [NODE_A, NODE_B] {
        c.wait_file(n, "e2e-app", &["openat", "read", "write"]);
        c.wait_file(n, "e2e-base", &["openat"]);
    }
    let app = c.wait_state("e2e-app", "Installed");
    assert_eq!(app["status"]["localhostProfile"], "operator/e2e-app.json", "{app}");
    let ready = &app["status"]["conditions"][0];
    assert_eq!(
        (ready["type"].as_str(), ready["status"].as_str()),
        (Some("Ready"), Some("True")),
        "{app}"
    );
    assert_eq!(
        ready["observedGeneration"], app["metadata"]["generation"],
        "the condition names the generation it observed: {app}"
    );
    let finalizers = app["metadata"]["finalizers"].to_string();
    assert!(
        finalizers.contains("e2e-node-a-deleted") && finalizers.contains("e2e-node-b-deleted"),
        "{finalizers}"
    );
    for n in [NODE_A, NODE_B] {
        let s = c.node_status("e2e-app", n).expect("node status");
        assert_eq!(s["status"]["status"], "Installed", "{s}");
        assert_eq!(s["spec"]["nodeName"], n);
        let labels = &s["metadata"]["labels"];
        assert_eq!(labels["spo.x-k8s.io/node-name"], n);
        assert_eq!(labels["spo.x-k8s.io/profile-state"], "Installed");
        assert_eq!(labels["spo.x-k8s.io/profile-kind"], "SeccompProfile");
        assert_eq!(labels["spo.x-k8s.io/profile-id"], "SeccompProfile-e2e-app");
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], app["metadata"]["uid"]);
    }

    // 2. Changing the base re-renders the child; changing the child rewrites it.
    c.apply(&profile("e2e-base", None, &["openat", "close"]));
    for n in [NODE_A, NODE_B] {
        c.wait_file(n, "e2e-app", &["openat", "close", "read", "write"]);
    }
    c.apply(&profile("e2e-app", Some("e2e-base"), &["read", "write", "fstat"]));
    for n in [NODE_A, NODE_B] {
        c.wait_file(n, "e2e-app", &["fstat", "close"]);
    }

    // 3. Invalid: Error with the field in the Ready condition, an Event, nothing on disk.
    c.apply(&profile("e2e-bad", None, &["read", "wirte"]));
    c.wait_state("e2e-bad", "Error");
    // The profile is Error from the first node that reports; the condition names every node
    // once each has reported.
    let bad = eventually("e2e-bad's Ready message names both nodes", T, || {
        let sp = c.get("sp", "e2e-bad").ok_or("not found")?;
        let msg = sp["status"]["conditions"][0]["message"].as_str().unwrap_or_default();
        if msg.contains(NODE_A) && msg.contains(NODE_B) {
            Ok(sp)
        } else {
            Err(format!("message is {msg:?}"))
        }
    });
    let msg = bad["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("spec.syscalls[0].names[1]")
            && msg.contains("wirte")
            && msg.contains(NODE_A)
            && msg.contains(NODE_B),
        "{msg}"
    );
    assert_eq!(bad["status"]["conditions"][0]["reason"], "Unavailable");
    eventually("event for e2e-bad", T, || {
        let evs = c.k.json(&["get", "events.events.k8s.io", "-A", "-o", "json"]);
        let found = evs["items"].as_array().into_iter().flatten().any(|e| {
            e["regarding"]["name"] == "e2e-bad" && e["type"] == "Warning" && e["note"].to_string().contains("wirte")
        });
        if found {
            Ok(())
        } else {
            Err("no warning event".to_owned())
        }
    });
    assert!(!c.file(NODE_A, "e2e-bad").exists());
    // A name that would escape the node directory is refused by the apiserver already
    // (metadata.name is a DNS subdomain), and the daemon checks it again before writing.

    // 3b. A name that exists only on another architecture (as profiles copied from container
    // engines list vm86old): Installed, the file written, and a Warning Event naming the field.
    c.apply(&profile("e2e-copied", None, &["read", "vm86old"]));
    let copied = c.wait_state("e2e-copied", "Installed");
    assert_eq!(copied["status"]["conditions"][0]["reason"], "Available", "{copied}");
    c.wait_file(NODE_A, "e2e-copied", &["read"]);
    eventually("warning event for e2e-copied", T, || {
        let evs = c.k.json(&["get", "events.events.k8s.io", "-A", "-o", "json"]);
        let found = evs["items"].as_array().into_iter().flatten().any(|e| {
            e["regarding"]["name"] == "e2e-copied"
                && e["type"] == "Warning"
                && e["reason"] == "ProfileInstalledWithWarnings"
                && e["note"].to_string().contains("vm86old")
                && e["note"].to_string().contains("spec.syscalls[0].names[1]")
        });
        if found {
            Ok(())
        } else {
            let mine: Vec<String> = evs["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["regarding"]["name"] == "e2e-copied")
                .map(|e| format!("{} {} {}", e["type"], e["reason"], e["note"]))
                .collect();
            Err(format!("no warning event; events of e2e-copied: {mine:?}"))
        }
    });
    c.k.ok(&["delete", "sp", "e2e-copied", "--wait=false"], None);
    c.wait_no_file(NODE_A, "e2e-copied");

    // 4. Disable removes the files and reports Disabled; enabling again installs.
    c.k.ok(
        &[
            "patch",
            "sp",
            "e2e-app",
            "--type=merge",
            "-p",
            r#"{"spec":{"state":"Disabled"}}"#,
        ],
        None,
    );
    c.wait_state("e2e-app", "Disabled");
    c.wait_no_file(NODE_A, "e2e-app");
    c.wait_no_file(NODE_B, "e2e-app");
    c.k.ok(
        &[
            "patch",
            "sp",
            "e2e-app",
            "--type=merge",
            "-p",
            r#"{"spec":{"state":"Enabled"}}"#,
        ],
        None,
    );
    c.wait_state("e2e-app", "Installed");
    c.wait_file(NODE_A, "e2e-app", &["fstat"]);

    // 5. SPOD policy: only read/write/openat/close/fstat may run; a profile allowing mkdir is
    //    an Error naming the rule, and so is a child whose base brings in a forbidden call.
    c.k.ok(
        &[
            "-n",
            NS,
            "patch",
            "spod",
            "spod",
            "--type=merge",
            "-p",
            r#"{"spec":{"security":{"allowedSyscalls":["read","write","openat","close","fstat"]}}}"#,
        ],
        None,
    );
    c.apply(&profile("e2e-policy", None, &["read", "mkdir"]));
    let pol = c.wait_state("e2e-policy", "Error");
    let msg = pol["status"]["conditions"][0]["message"].to_string();
    assert!(msg.contains("mkdir") && msg.contains("allowedSyscalls"), "{msg}");
    assert!(!c.file(NODE_A, "e2e-policy").exists());
    c.apply(&profile("e2e-base", None, &["openat", "close", "chmod"]));
    let app = c.wait_state("e2e-app", "Error");
    assert!(
        app["status"]["conditions"][0]["message"].to_string().contains("chmod"),
        "{app}"
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
            r#"{"spec":{"security":null}}"#,
        ],
        None,
    );
    c.wait_state("e2e-policy", "Installed");
    c.wait_state("e2e-app", "Installed");
    c.wait_file(NODE_B, "e2e-app", &["chmod", "fstat"]);

    // 6. Deletion is blocked while a pod uses the profile and released after.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: e2e-web, namespace: {NS}}}\nspec:\n  nodeName: {NODE_A}\n  securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: operator/e2e-app.json}}}}\n  containers: [{{name: c, image: busybox}}]\n"
    ));
    eventually("activeWorkloads", T, || {
        let sp = c.get("sp", "e2e-app").ok_or("gone")?;
        let fins = sp["metadata"]["finalizers"].to_string();
        if sp["status"]["activeWorkloads"] == serde_json::json!([format!("{NS}/e2e-web")])
            && fins.contains("in-use-by-active-pods")
        {
            Ok(())
        } else {
            Err(format!("{} {fins}", sp["status"]))
        }
    });
    c.k.ok(&["delete", "sp", "e2e-app", "--wait=false"], None);
    c.wait_state("e2e-app", "Terminating");
    for n in [NODE_A, NODE_B] {
        assert!(c.file(n, "e2e-app").exists(), "file removed while a pod uses it");
        eventually("node status Terminating", T, || {
            let s = c.node_status("e2e-app", n).ok_or("missing")?;
            if s["status"]["status"] == "Terminating" {
                Ok(())
            } else {
                Err(s["status"].to_string())
            }
        });
    }
    c.k.ok(
        &["-n", NS, "delete", "pod", "e2e-web", "--grace-period=0", "--force"],
        None,
    );
    c.wait_gone("sp", "e2e-app");
    for n in [NODE_A, NODE_B] {
        c.wait_no_file(n, "e2e-app");
        c.wait_gone("spns", &format!("e2e-app-{n}"));
    }

    // 7. Plain deletion of an errored profile removes its node statuses.
    c.k.ok(&["delete", "sp", "e2e-bad", "--wait=false"], None);
    c.wait_gone("sp", "e2e-bad");
    c.wait_gone("spns", &format!("e2e-bad-{NODE_A}"));
    c.wait_gone("spns", &format!("e2e-bad-{NODE_B}"));

    // 8. Restarts: daemon B crashes (SIGKILL); meanwhile a profile is created and another is
    //    deleted. The deleted one waits for B (its finalizer); after B restarts both converge.
    daemon_b.kill();
    c.apply(&profile("e2e-later", None, &["read"]));
    c.wait_file(NODE_A, "e2e-later", &["read"]);
    c.k.ok(&["delete", "sp", "e2e-policy", "--wait=false"], None);
    c.wait_no_file(NODE_A, "e2e-policy");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        c.get("sp", "e2e-policy").is_some(),
        "deleted before node B removed its file"
    );
    assert!(c.file(NODE_B, "e2e-policy").exists());
    manager.kill();
    manager = c.manager();
    daemon_b = c.daemon(NODE_B);
    c.wait_file(NODE_B, "e2e-later", &["read"]);
    c.wait_gone("sp", "e2e-policy");
    c.wait_no_file(NODE_B, "e2e-policy");
    c.wait_state("e2e-later", "Installed");

    // 9. A node deleted while its daemon is gone: its finalizers and statuses are cleaned by
    //    the manager, so deleting a profile does not hang.
    assert!(
        daemon_b.terminate(Duration::from_secs(10)),
        "daemon B did not stop on SIGTERM"
    );
    c.k.ok(&["delete", "sp", "e2e-later", "--wait=false"], None);
    c.wait_no_file(NODE_A, "e2e-later");
    assert!(c.get("sp", "e2e-later").is_some(), "finalizer of node B missing");
    c.k.ok(&["delete", "node", NODE_B], None);
    c.wait_gone("sp", "e2e-later");
    c.wait_gone("spns", &format!("e2e-base-{NODE_B}"));
    let base = c.get("sp", "e2e-base").expect("base");
    assert!(!base["metadata"]["finalizers"].to_string().contains(NODE_B), "{base}");

    // Nothing half-written anywhere, and every process is still running.
    for n in [NODE_A, NODE_B] {
        no_temp_files(&c.kubelet_dir(n).join("seccomp/operator"));
    }
    assert!(
        daemon_a.running() && manager.running(),
        "a process exited; logs in {}",
        c.dir.display()
    );

    // Clean up for other tests on this apiserver.
    c.k.ok(&["delete", "sp", "e2e-base", "--wait=false"], None);
    c.wait_gone("sp", "e2e-base");
    c.k.ok(&["delete", "node", NODE_A], None);
    drop((daemon_a, manager));
}
