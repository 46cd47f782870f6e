//! Log recording in the cluster on the real node (e2e/start-node.sh) with the real auditd: a
//! ProfileRecording with `recorder: Logs`, the manager making `log-enricher-trace` once the
//! SPOD enables the log enricher, the daemon installing it, the webhook running the marked
//! container under it, the kernel logging every call, the enricher attributing the records to
//! the container (the exit log covering its short-lived processes) and writing the
//! SeccompProfile when the pod ends. Then the profile is installed and the same workload runs
//! confined by it, and something it never did is refused. Then SELinux: a SelinuxProfile
//! recorded from the AVC records of a container (written to a stand-in audit log: this kernel
//! has no SELinux).
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
/// The SELinux log recording.
const AVC_RECORDING: &str = "avcrec";

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
    let mut enricher = parts.spawn("enricher", ["enricher", "--namespace", NS, "--node-name", NODE_NAME]);

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

    // 5. SELinux, from AVC records. This kernel has no SELinux, so nothing logs AVCs: the
    //    enricher is restarted on a stand-in audit log, a file this test appends AVC lines to
    //    as auditd would, naming the pid of the recorded container's process (everything
    //    after the line is real: the enricher's reading, its attribution of the pid to the pod
    //    through /proc, the recording, the SelinuxProfile it writes).
    enricher.kill();
    let audit = dir.join("audit.log");
    std::fs::write(&audit, b"").expect("stand-in audit log");
    let args: Vec<std::ffi::OsString> = ["enricher", "--namespace", NS, "--node-name", NODE_NAME, "--audit-log"]
        .into_iter()
        .map(Into::into)
        .chain([audit.clone().into_os_string()])
        .collect();
    let _enricher = parts.spawn("enricher-selinux", args);
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {{name: {AVC_RECORDING}, namespace: {NS}}}\nspec:\n  kind: SelinuxProfile\n  recorder: Logs\n  podSelector: {{matchLabels: {{app: avc}}}}\n"
        )),
    );
    eventually("the webhook marks pods for the SELinux recording", T, || {
        let r = k.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&labelled_pod(NS, "probe", "avc", "true")),
        );
        let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
        let marked = pod["metadata"]["annotations"]["io.containers.trace-avcs/c"].is_string();
        let domain =
            pod["spec"]["containers"][0]["securityContext"]["seLinuxOptions"]["type"] == "selinuxrecording.process";
        if marked && domain {
            Ok(())
        } else {
            Err(format!("not marked yet: {}", pod["metadata"]))
        }
    });
    k.ok(
        &["apply", "-f", "-"],
        Some(&labelled_pod(NS, "avc", "avc", "sleep 6; echo AVC-OK")),
    );
    node.wait_pod_phase(NS, "avc", &["Running"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    let pod = node.pod(NS, "avc").expect("pod").expect("the avc pod");
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.split_once("://"))
        .map(|(_, id)| id.to_owned())
        .unwrap_or_else(|| panic!("no container id: {}", pod["status"]));
    let pid = eventually("a process of the avc container", T, || {
        container_pid(&id).ok_or_else(|| format!("no process in a cgroup naming {id}"))
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let mut lines = String::new();
    for (serial, (perms, target, class)) in [
        ("read open", "system_u:object_r:etc_t:s0", "file"),
        ("name_bind", "system_u:object_r:http_port_t:s0", "tcp_socket"),
        ("read", "system_u:object_r:etc_t:s0", "file"),
    ]
    .into_iter()
    .enumerate()
    {
        lines.push_str(&format!(
            "type=AVC msg=audit({}.{:03}:{}): avc:  denied  {{ {perms} }} for  pid={pid} comm=\"sleep\" \
             scontext=system_u:system_r:selinuxrecording.process:s0:c1,c2 tcontext={target} tclass={class} \
             permissive=1\n",
            now.as_secs(),
            now.subsec_millis(),
            90_000 + serial
        ));
    }
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&audit)
            .expect("audit log");
        f.write_all(lines.as_bytes()).expect("AVC lines");
    }
    node.wait_pod_phase(NS, "avc", &["Succeeded"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    let selinux = eventually(&format!("SelinuxProfile {AVC_RECORDING}-c written"), T, || {
        let r = k.run(
            &["get", "selinuxprofile", &format!("{AVC_RECORDING}-c"), "-o", "json"],
            None,
        );
        serde_json::from_str::<Value>(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))
    });
    let labels = &selinux["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], AVC_RECORDING, "{labels}");
    assert_eq!(labels["spo.x-k8s.io/container-id"], "c", "{labels}");
    let spec = &selinux["spec"];
    assert_eq!(spec["inherit"][0]["name"], "container", "{spec}");
    assert_eq!(
        spec["allow"],
        serde_json::json!({
            "etc_t": {"file": ["open", "read"]},
            "http_port_t": {"tcp_socket": ["name_bind"]},
        }),
        "{spec}"
    );
    k.ok(&["-n", NS, "delete", "profilerecording", AVC_RECORDING], None);
    k.ok(
        &[
            "delete",
            "selinuxprofile",
            &format!("{AVC_RECORDING}-c"),
            "--wait=false",
        ],
        None,
    );

    // 6. Nothing of this test stays on the node: with the log enricher off, the manager no
    //    longer keeps log-enricher-trace; both profiles are deleted once their pods are gone,
    //    and the daemon removes their files.
    k.patch_spod(NS, r#"{"spec":{"enricher":{"enableLogEnricher":false}}}"#, T);
    k.ok(&["-n", NS, "delete", "pods", "--all", "--wait=false"], None);
    k.ok(&["delete", "sp", PROFILE, "log-enricher-trace", "--wait=false"], None);
    let operator_dir = node.seccomp_root().join("operator");
    eventually("the recorded profiles' files removed from the node", T, || {
        let left: Vec<String> = std::fs::read_dir(&operator_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left:?}; {}", logs()))
        }
    });
}

/// A process whose cgroup names container `id`, from the host's /proc.
fn container_pid(id: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cgroups = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
        cgroups.contains(id).then_some(pid)
    })
}
