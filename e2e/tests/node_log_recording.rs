//! Log recording in the cluster on the real node (e2e/start-node.sh) with the real auditd: a
//! ProfileRecording with `recorder: Logs`, the manager making `log-enricher-trace` once the
//! SPOD enables the log enricher, the daemon installing it, the webhook running the marked
//! container under it, the kernel logging every call, the enricher attributing the records to
//! the container (the exit log covering its short-lived processes) and writing the
//! SeccompProfile when the pod ends. Then the profile is installed and the same workload runs
//! confined by it, and something it never did is refused.
//!
//! Every operator part runs as a host process against the node's apiserver.

use std::time::Duration;

use serde_json::Value;
use spo_e2e::node::{NODE_NAME, Node, allowed_syscalls, busybox_pod, labelled_pod, workload};
use spo_e2e::{OperatorProcs, daemon_args, eventually, free_port, webhook_args};

const NS: &str = "spo-e2e-logrec";
const LOG: &str = "info,spo_operator=debug,kube=warn";
const T: Duration = Duration::from_secs(90);
const RECORDING: &str = "logrec";
/// `<recording>-<container>`.
const PROFILE: &str = "logrec-c";

#[test]
fn a_pod_recorded_from_audit_logs_runs_under_its_profile_and_nothing_more() {
    let Some(node) = Node::from_env("a_pod_recorded_from_audit_logs_runs_under_its_profile_and_nothing_more") else {
        return;
    };
    let k = node.kubectl();
    let dir = tempfile::Builder::new()
        .prefix("spo-e2e-logrec-")
        .tempdir()
        .expect("tempdir")
        .keep();
    let logs = || format!("operator logs in {}", dir.display());
    k.install_crds();
    k.fresh_namespace(NS, &["spo.x-k8s.io/enable-recording"]);
    let parts = OperatorProcs::new(node.kubeconfig(), LOG, &dir);
    let port = free_port();
    let _webhook = parts.spawn("webhook", webhook_args(NS, port));
    let _manager = parts.spawn(
        "manager",
        ["manager", "--namespace", NS].iter().chain(spo_e2e::FAST_LEASE),
    );
    let _daemon = parts.spawn("daemon", daemon_args(NS, NODE_NAME, node.kubelet_dir()));
    let _enricher = parts.spawn("enricher", ["enricher", "--namespace", NS, "--node-name", NODE_NAME]);

    // 1. The SPOD switches the log enricher on; the manager makes log-enricher-trace, the
    //    daemon installs it.
    k.patch_spod(NS, r#"{"spec":{"enricher":{"enableLogEnricher":true}}}"#, T);
    let trace = node.seccomp_root().join("operator/log-enricher-trace.json");
    let installed = eventually("log-enricher-trace installed on the node", T, || {
        std::fs::read_to_string(&trace).map_err(|e| format!("{}: {e}; {}", trace.display(), logs()))
    });
    let installed: Value = serde_json::from_str(&installed).expect("profile json");
    assert_eq!(installed["defaultAction"], "SCMP_ACT_LOG", "{installed}");

    // 2. The recording; the webhook marks pods for it and runs them under log-enricher-trace.
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {{name: {RECORDING}, namespace: {NS}}}\nspec:\n  kind: SeccompProfile\n  recorder: Logs\n  podSelector: {{matchLabels: {{app: logged}}}}\n"
        )),
    );
    eventually("the webhook marks pods for the log recording", T, || {
        let r = k.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&labelled_pod(NS, "probe", "logged", "true")),
        );
        let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
        let marked = pod["metadata"]["annotations"]["io.containers.trace-logs/c"].is_string();
        let profile = pod["spec"]["containers"][0]["securityContext"]["seccompProfile"]["localhostProfile"]
            == "operator/log-enricher-trace.json";
        if marked && profile {
            Ok(())
        } else {
            Err(format!("not marked yet: {}", pod["metadata"]))
        }
    });

    // 3. The recorded pod runs to its end; the enricher writes its profile.
    k.ok(
        &["apply", "-f", "-"],
        Some(&labelled_pod(NS, "logged", "logged", &workload(""))),
    );
    node.wait_pod_phase(NS, "logged", &["Succeeded"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    let out = node.pod_logs(NS, "logged", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("WORKLOAD-OK") && out.contains("Seccomp:\t2"), "{out}");
    let profile = eventually(&format!("SeccompProfile {PROFILE} written"), T, || {
        let r = k.run(&["get", "sp", PROFILE, "-o", "json"], None);
        serde_json::from_str::<Value>(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))
    });
    let labels = &profile["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], RECORDING, "{labels}");
    assert_eq!(labels["spo.x-k8s.io/container-id"], "c", "{labels}");
    assert_eq!(profile["spec"]["defaultAction"], "SCMP_ACT_ERRNO", "{profile}");
    let names = allowed_syscalls(&profile);
    // The workload's calls (ls, cat and grep are processes of their own that exit at once:
    // their records are attributed through the exit log), and runc's after the filter.
    for needed in ["execve", "getdents64", "openat", "read", "write", "exit_group"] {
        assert!(names.iter().any(|n| n == needed), "{needed} missing: {names:?}");
    }
    for never in ["mkdir", "mkdirat", "mount", "pivot_root"] {
        assert!(!names.iter().any(|n| n == never), "{never} recorded: {names:?}");
    }

    // 4. Installed; the same workload runs confined by it; what it never did is refused.
    eventually(&format!("SeccompProfile {PROFILE} Installed"), T, || {
        let sp = k.json(&["get", "sp", PROFILE, "-o", "json"]);
        if sp["status"]["status"] == "Installed" {
            Ok(())
        } else {
            Err(format!("{}; {}", sp["status"], logs()))
        }
    });
    let localhost = format!("operator/{PROFILE}.json");
    k.ok(
        &["apply", "-f", "-"],
        Some(&busybox_pod(NS, "replay", &workload(""), Some(&localhost))),
    );
    node.wait_pod_phase(NS, "replay", &["Succeeded"], T)
        .unwrap_or_else(|e| {
            panic!(
                "{e}; the workload failed under its log-recorded profile: {:?}",
                node.pod_logs(NS, "replay", "c")
            )
        });
    let out = node.pod_logs(NS, "replay", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("WORKLOAD-OK") && out.contains("Seccomp:\t2"), "{out}");
    k.ok(
        &["apply", "-f", "-"],
        Some(&busybox_pod(
            NS,
            "refused",
            &workload("mkdir /tmp/never && "),
            Some(&localhost),
        )),
    );
    node.wait_pod_phase(NS, "refused", &["Failed"], T)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = node.pod_logs(NS, "refused", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.contains("Operation not permitted") && !out.contains("WORKLOAD-OK"),
        "mkdir refused: {out}"
    );
    k.ok(&["-n", NS, "delete", "pods", "--all", "--wait=false"], None);
    k.ok(&["-n", NS, "delete", "profilerecording", RECORDING], None);
}
