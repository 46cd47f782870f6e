//! The operator on a real node (e2e/start-node.sh: kubelet + containerd + runc): a
//! SeccompProfile installed by the daemon confines a pod the kubelet starts.
//!
//! The manager and the daemon run as host processes (as in operator.rs), the daemon with
//! `--node-name localhost --kubelet-dir <the kubelet's --root-dir>`, so the profile lands in
//! the kubelet's seccomp root and `localhostProfile: operator/<name>.json` resolves to it.
//! First a DaemonSet's pod runs (controller-manager and scheduler are real).
//! Then: a pod under a profile denying mkdir (EPERM) fails its mkdir and runs in seccomp
//! filter mode; the same pod without the profile succeeds; deleting the profile is held
//! while the confined pod runs, and completes (file gone from the node) once it is deleted.

use std::time::{Duration, Instant};

use serde_json::Value;
use spo_e2e::node::{BUSYBOX_IMAGE, NODE_NAME, Node, busybox_pod};
use spo_e2e::{OperatorProcs, daemon_args, eventually};

const NS: &str = "spo-e2e-node";
const LOG: &str = "info,spo_operator=debug,kube=warn";
const PROFILE: &str = "e2e-deny-mkdir";
const T: Duration = Duration::from_secs(60);

/// Tries mkdir, says how it went (and the seccomp mode of the shell), then either exits or
/// stays up until SIGTERM.
fn script(stay: bool) -> String {
    let tail = if stay {
        "trap 'exit 0' TERM; while :; do sleep 1; done"
    } else {
        "exit 0"
    };
    format!(
        "grep '^Seccomp:' /proc/self/status; if mkdir /tmp/x; then echo MKDIR-OK; else echo MKDIR-FAILED; fi; echo DONE; {tail}"
    )
}

#[test]
fn seccomp_profile_confines_a_pod_on_a_real_node() {
    let Some(node) = Node::from_env("seccomp_profile_confines_a_pod_on_a_real_node") else {
        return;
    };
    let k = node.kubectl();
    // Kept when the test fails (the operator's logs are there); removed at the end.
    let dir = tempfile::Builder::new()
        .prefix("spo-e2e-node-test-")
        .tempdir()
        .expect("tempdir")
        .keep();
    k.install_crds();
    if k.get("namespace", NS).is_none() {
        k.ok(&["create", "namespace", NS], None);
    }
    // The kubelet's node is real: Ready, named localhost, with the release we built.
    let n = k.get("node", NODE_NAME).expect("node localhost");
    assert!(
        n["status"]["nodeInfo"]["kubeletVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "{}",
        n["status"]["nodeInfo"]
    );

    // Controllers and scheduler are real too: a DaemonSet gets its pod onto the node.
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: e2e-ds, namespace: {NS}}}\nspec:\n  selector: {{matchLabels: {{app: e2e-ds}}}}\n  template:\n    metadata: {{labels: {{app: e2e-ds}}}}\n    spec:\n      hostNetwork: true\n      terminationGracePeriodSeconds: 1\n      containers: [{{name: c, image: {BUSYBOX_IMAGE}, imagePullPolicy: Never, command: [/bin/sh, -c, \"trap 'exit 0' TERM; while :; do sleep 1; done\"]}}]\n"
        )),
    );
    k.ok(
        &["-n", NS, "rollout", "status", "daemonset/e2e-ds", "--timeout=60s"],
        None,
    );
    k.ok(&["-n", NS, "delete", "daemonset", "e2e-ds", "--wait=false"], None);

    let parts = OperatorProcs::new(node.kubeconfig(), LOG, &dir);
    let mut manager = parts.spawn(
        "manager",
        ["manager", "--namespace", NS].iter().chain(spo_e2e::FAST_LEASE),
    );
    let mut daemon = parts.spawn("daemon", daemon_args(NS, NODE_NAME, node.kubelet_dir()));
    let logs = || format!("operator logs in {}", dir.display());

    // 1. A profile that allows everything but mkdir/mkdirat (EPERM), installed by the daemon
    //    into the kubelet's seccomp root.
    let created = Instant::now();
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: {PROFILE}}}\nspec:\n  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - {{names: [mkdir, mkdirat], action: SCMP_ACT_ERRNO, errnoRet: 1}}\n"
        )),
    );
    let sp = eventually(&format!("SeccompProfile {PROFILE} Installed"), T, || {
        let sp = k.get("sp", PROFILE).ok_or("not found")?;
        if sp["status"]["status"] == "Installed" {
            Ok(sp)
        } else {
            Err(format!("status {}; {}", sp["status"], logs()))
        }
    });
    let installed = created.elapsed();
    let localhost = sp["status"]["localhostProfile"]
        .as_str()
        .expect("localhostProfile")
        .to_owned();
    assert_eq!(localhost, format!("operator/{PROFILE}.json"), "{sp}");
    let file = node.seccomp_root().join(&localhost);
    let on_node: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())))
            .expect("profile JSON");
    assert_eq!(on_node["defaultAction"], "SCMP_ACT_ALLOW", "{on_node}");

    // 2. The confined pod: mkdir fails with EPERM, the shell runs in seccomp filter mode.
    k.ok(
        &["apply", "-f", "-"],
        Some(&busybox_pod(NS, "confined", &script(true), Some(&localhost))),
    );
    node.wait_pod_phase(NS, "confined", &["Running"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    let running = created.elapsed();
    let out = node
        .wait_log(NS, "confined", "c", "DONE", T)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("MKDIR-FAILED"), "mkdir was not denied:\n{out}");
    assert!(
        out.contains("Operation not permitted"),
        "mkdir failed, but not with EPERM:\n{out}"
    );
    assert!(out.contains("Seccomp:\t2"), "not in seccomp filter mode:\n{out}");
    eprintln!(
        "timing: profile applied -> Installed {} ms, -> confined pod Running {} ms",
        installed.as_millis(),
        running.as_millis()
    );

    // 3. The same pod without the profile: mkdir works, no filter.
    k.ok(
        &["apply", "-f", "-"],
        Some(&busybox_pod(NS, "unconfined", &script(false), None)),
    );
    node.wait_pod_phase(NS, "unconfined", &["Succeeded"], T)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = node.pod_logs(NS, "unconfined", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.contains("MKDIR-OK") && out.contains("Seccomp:\t0"),
        "unconfined pod:\n{out}"
    );

    // 4. Deleting the profile is held while the confined pod runs: Terminating, the file
    //    still on the node, the pod still Running.
    eventually("the confined pod listed as an active workload", T, || {
        let sp = k.get("sp", PROFILE).ok_or("gone")?;
        let fins = sp["metadata"]["finalizers"].to_string();
        if sp["status"]["activeWorkloads"] == serde_json::json!([format!("{NS}/confined")])
            && fins.contains("in-use-by-active-pods")
        {
            Ok(())
        } else {
            Err(format!("{} {fins}", sp["status"]))
        }
    });
    k.ok(&["delete", "sp", PROFILE, "--wait=false"], None);
    eventually(&format!("SeccompProfile {PROFILE} Terminating"), T, || {
        let sp = k.get("sp", PROFILE).ok_or("gone before the pod was deleted")?;
        if sp["status"]["status"] == "Terminating" {
            Ok(())
        } else {
            Err(sp["status"].to_string())
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(k.get("sp", PROFILE).is_some(), "profile deleted while a pod uses it");
    assert!(file.exists(), "profile file removed while a pod uses it");
    let pod = node.pod(NS, "confined").expect("read pod").expect("pod");
    assert_eq!(pod["status"]["phase"], "Running", "{}", pod["status"]);

    // 5. Deleting the pod releases the profile: it goes, and so does the file.
    k.ok(
        &["-n", NS, "delete", "pod", "confined", "--wait=true", "--timeout=60s"],
        None,
    );
    eventually(&format!("SeccompProfile {PROFILE} gone"), T, || {
        match k.get("sp", PROFILE) {
            None => Ok(()),
            Some(sp) => Err(format!("still there: {} {}", sp["metadata"], sp["status"])),
        }
    });
    eventually(&format!("{} removed", file.display()), T, || {
        if file.exists() {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    });

    assert!(
        manager.running() && daemon.running(),
        "an operator process exited; {}",
        logs()
    );
    k.ok(&["-n", NS, "delete", "pod", "unconfined", "--wait=false"], None);
    manager.kill();
    daemon.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
