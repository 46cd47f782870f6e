//! The operator on a real node (e2e/start-node.sh: kubelet + containerd + runc), deployed as
//! users deploy it: its own image (deploy/image/build.sh, imported into the node's
//! containerd) and its own manifests (deploy/overlays/e2e-node, `kubectl apply -k`), the
//! manager and the daemon as pods with their own ServiceAccounts and RBAC (ServiceAccount
//! admission is on in this cluster).
//!
//! First a plain DaemonSet's pod runs (controller-manager and scheduler are real). Then the
//! manager pod renders the daemon's DaemonSet `spod` from the SPOD and reports it Running; a
//! SeccompProfile the daemon pod installs confines a pod: mkdir fails (EPERM) in seccomp
//! filter mode; the same pod without the profile succeeds; deleting the profile is held while
//! the confined pod runs, and completes (file gone from the node) once it is deleted. A SPOD
//! change rolls the DaemonSet (Updating, then Running with the new template); a killed
//! daemon pod and a killed manager pod are replaced and a profile created meanwhile is
//! installed, nothing lost or left behind.

use std::time::{Duration, Instant};

use serde_json::Value;
use spo_e2e::node::{BUSYBOX_IMAGE, NODE_NAME, Node, OPERATOR_NS, busybox_pod};
use spo_e2e::{Kubectl, eventually};

const NS: &str = "spo-e2e-node";
const PROFILE: &str = "e2e-deny-mkdir";
const T: Duration = Duration::from_secs(60);

/// A SeccompProfile `name` that allows everything but mkdir/mkdirat (EPERM).
fn deny_mkdir(name: &str) -> String {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: {name}}}\nspec:\n  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - {{names: [mkdir, mkdirat], action: SCMP_ACT_ERRNO, errnoRet: 1}}\n"
    )
}

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

/// A minimal complete CIL policy (one of everything a policy needs), for secilc.
const MIN_CIL: &str = "(class CLASS (PERM))\n(classorder (CLASS))\n(sid SID)\n(sidorder (SID))\n(user USER)\n(role ROLE)\n(type TYPE)\n(category CAT)\n(categoryorder (CAT))\n(sensitivity SENS)\n(sensitivityorder (SENS))\n(sensitivitycategory SENS (CAT))\n(allow TYPE self (CLASS (PERM)))\n(roletype ROLE TYPE)\n(userrole USER ROLE)\n(userlevel USER (SENS))\n(userrange USER ((SENS)(SENS (CAT))))\n(sidcontext SID (USER ROLE TYPE ((SENS)(SENS))))\n";

/// The tools the SELinux and AppArmor kinds run on nodes work inside the operator's image
/// (its libraries complete): apparmor_parser compiles a profile, secilc a policy, semodule
/// starts. This kernel has neither LSM, so loading is not tried here.
fn image_tools_run(node: &Node, k: &Kubectl) {
    let config_map = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "image-tools", "namespace": NS},
        "data": {
            "check.aa": "profile spo-image-check /usr/bin/true {\n  /etc/hostname r,\n}\n",
            "min.cil": MIN_CIL,
        },
    });
    k.ok(&["apply", "-f", "-"], Some(&config_map.to_string()));
    let container = |name: &str, command: &[&str]| {
        serde_json::json!({
            "name": name, "image": spo_e2e::node::OPERATOR_IMAGE, "imagePullPolicy": "Never",
            "command": command,
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg", "readOnly": true}],
        })
    };
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "image-tools", "namespace": NS},
        "spec": {
            "hostNetwork": true, "restartPolicy": "Never", "automountServiceAccountToken": false,
            "containers": [
                container("apparmor-parser", &["/usr/sbin/apparmor_parser", "-Q", "-K", "--skip-cache", "/cfg/check.aa"]),
                container("secilc", &["/usr/bin/secilc", "-o", "/tmp/policy", "-f", "/tmp/file_contexts", "/cfg/min.cil"]),
                container("semodule", &["/usr/sbin/semodule", "-h"]),
            ],
            "volumes": [{"name": "cfg", "configMap": {"name": "image-tools"}}],
        },
    });
    k.ok(
        &[
            "-n",
            NS,
            "delete",
            "pod",
            "image-tools",
            "--ignore-not-found",
            "--wait=true",
        ],
        None,
    );
    k.ok(&["apply", "-f", "-"], Some(&pod.to_string()));
    if let Err(e) = node.wait_pod_phase(NS, "image-tools", &["Succeeded"], T) {
        let logs: String = ["apparmor-parser", "secilc", "semodule"]
            .iter()
            .map(|c| format!("--- {c}: {}", node.pod_logs(NS, "image-tools", c).unwrap_or_default()))
            .collect();
        panic!("the image's tools failed: {e}\n{logs}");
    }
    k.ok(&["-n", NS, "delete", "pod", "image-tools", "--wait=false"], None);
    k.ok(&["-n", NS, "delete", "configmap", "image-tools"], None);
}

/// The operator pods' logs (for failure messages).
fn operator_logs(k: &Kubectl) -> String {
    ["deployment/spo-manager", "daemonset/spod"]
        .iter()
        .map(|w| {
            let r = k.run(&["-n", OPERATOR_NS, "logs", w, "--tail=40"], None);
            format!("--- {w}:\n{}{}", r.stdout, r.stderr)
        })
        .collect()
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
    k.wait_default_service_account(NS);
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

    // The operator from its image and manifests.
    node.import_operator_image(&dir);
    image_tools_run(&node, &k);
    let operator = node.deploy_operator(&dir);
    let logs = || operator_logs(&k);
    let spod = eventually("the SPOD Running with the daemon's DaemonSet rendered", T, || {
        let spod = k.get_in(OPERATOR_NS, "spod", "spod").ok_or("no SPOD yet")?;
        if spod["status"]["state"] == "Running" {
            Ok(spod)
        } else {
            Err(format!("{}; {}", spod["status"], logs()))
        }
    });
    let ready = &spod["status"]["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("True"), Some("Available")),
        "{spod}"
    );
    let ds = k.get_in(OPERATOR_NS, "daemonset", "spod").expect("DaemonSet spod");
    let pod_spec = &ds["spec"]["template"]["spec"];
    assert_eq!(pod_spec["serviceAccountName"], "spo-daemon", "{pod_spec}");
    assert_eq!(pod_spec["containers"][0]["image"], spo_e2e::node::OPERATOR_IMAGE);
    assert_eq!(
        pod_spec["containers"][0]["securityContext"]["capabilities"],
        serde_json::json!({"drop": ["ALL"]}),
        "the seccomp daemon holds no capability"
    );
    let daemon_pods = operator.pods("daemon");
    assert_eq!(daemon_pods.len(), 1, "one daemon pod on the one node");

    // 1. A profile that allows everything but mkdir/mkdirat (EPERM), installed by the daemon
    //    into the kubelet's seccomp root.
    let created = Instant::now();
    k.ok(&["apply", "-f", "-"], Some(&deny_mkdir(PROFILE)));
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

    k.ok(&["-n", NS, "delete", "pod", "unconfined", "--wait=false"], None);

    // 6. A SPOD change rolls the DaemonSet: verbosity 1 is a new template (debug logs);
    //    the SPOD says Updating, then Running once the new pod is available.
    let generation = ds["metadata"]["generation"].as_i64().expect("generation");
    k.patch_spod(OPERATOR_NS, r#"{"spec":{"verbosity":1}}"#, T);
    let rolled = eventually("the DaemonSet rolled with debug logs", T, || {
        let ds = k.get_in(OPERATOR_NS, "daemonset", "spod").ok_or("gone")?;
        let env = ds["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        let status = &ds["status"];
        let done = ds["metadata"]["generation"].as_i64() > Some(generation)
            && env.contains("debug")
            && status["updatedNumberScheduled"] == 1
            && status["numberAvailable"] == 1
            && status["observedGeneration"] == ds["metadata"]["generation"];
        if done { Ok(ds) } else { Err(format!("{status}")) }
    });
    eventually("the SPOD Running again after the roll", T, || {
        let spod = k.get_in(OPERATOR_NS, "spod", "spod").ok_or("gone")?;
        let observed = spod["status"]["conditions"][0]["observedGeneration"].clone();
        if spod["status"]["state"] == "Running" && observed == spod["metadata"]["generation"] {
            Ok(())
        } else {
            Err(format!("{}", spod["status"]))
        }
    });
    let saw_updating = k
        .run(&["-n", OPERATOR_NS, "logs", "deployment/spo-manager"], None)
        .stdout
        .contains("Updating");
    assert!(saw_updating, "the manager never reported Updating; {}", logs());
    let new_pod = operator.pods("daemon");
    assert_eq!(new_pod.len(), 1);
    assert_ne!(
        new_pod[0]["metadata"]["name"], daemon_pods[0]["metadata"]["name"],
        "the DaemonSet {} did not replace its pod",
        rolled["metadata"]["name"]
    );

    // 7. Faults: the daemon pod killed, then the manager pod, each in the middle of a burst
    //    of 10 new profiles: a new pod takes over, every profile is installed with its file
    //    on the node, and deleting them leaves no file behind.
    for component in ["daemon", "manager"] {
        let victim = operator.pods(component)[0]["metadata"]["name"]
            .as_str()
            .expect("pod name")
            .to_owned();
        let names: Vec<String> = (0..10).map(|i| format!("e2e-burst-{component}-{i}")).collect();
        let burst: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: {n}}}\nspec: {{defaultAction: SCMP_ACT_LOG}}\n"
                )
            })
            .collect();
        k.ok(&["apply", "-f", "-"], Some(&burst[..5].join("---\n")));
        k.ok(
            &[
                "-n",
                OPERATOR_NS,
                "delete",
                "pod",
                &victim,
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            None,
        );
        k.ok(&["apply", "-f", "-"], Some(&burst[5..].join("---\n")));
        eventually(
            &format!("the burst Installed after the {component} pod was killed"),
            T,
            || {
                let replaced = operator
                    .pods(component)
                    .iter()
                    .any(|p| p["metadata"]["name"] != victim.as_str());
                let waiting: Vec<&String> = names
                    .iter()
                    .filter(|n| {
                        let file = node.seccomp_root().join(format!("operator/{n}.json"));
                        k.get("sp", n).is_none_or(|sp| sp["status"]["status"] != "Installed") || !file.exists()
                    })
                    .collect();
                if replaced && waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!("replaced={replaced}, not installed: {waiting:?}; {}", logs()))
                }
            },
        );
        let mut args = vec!["delete", "sp", "--wait=true", "--timeout=60s"];
        args.extend(names.iter().map(String::as_str));
        k.ok(&args, None);
        eventually(&format!("the {component} burst's files removed"), T, || {
            let left: Vec<&String> = names
                .iter()
                .filter(|n| node.seccomp_root().join(format!("operator/{n}.json")).exists())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        });
    }
    // 8. The kubelet restarted, then containerd: the daemon pod lives on (its container
    //    outlives both), a profile created right after is installed and confines a new pod.
    for part in ["kubelet", "containerd"] {
        let daemon_before = operator.pods("daemon")[0]["metadata"]["uid"].clone();
        node.restart(part);
        let profile = format!("e2e-after-{part}-restart");
        k.ok(&["apply", "-f", "-"], Some(&deny_mkdir(&profile)));
        eventually(&format!("{profile} Installed"), T, || {
            let sp = k.get("sp", &profile).ok_or("gone")?;
            if sp["status"]["status"] == "Installed" {
                Ok(())
            } else {
                Err(format!("{}; {}", sp["status"], logs()))
            }
        });
        let pod = format!("confined-after-{part}");
        k.ok(
            &["apply", "-f", "-"],
            Some(&busybox_pod(
                NS,
                &pod,
                &script(false),
                Some(&format!("operator/{profile}.json")),
            )),
        );
        node.wait_pod_phase(NS, &pod, &["Succeeded"], T)
            .unwrap_or_else(|e| panic!("{e}; {}", logs()));
        let out = node.pod_logs(NS, &pod, "c").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.contains("MKDIR-FAILED") && out.contains("Seccomp:\t2"),
            "after the {part} restart:\n{out}"
        );
        assert_eq!(
            operator.pods("daemon")[0]["metadata"]["uid"],
            daemon_before,
            "the daemon pod was replaced by a {part} restart"
        );
        k.ok(&["-n", NS, "delete", "pod", &pod, "--wait=true", "--timeout=60s"], None);
        k.ok(&["delete", "sp", &profile, "--wait=true", "--timeout=60s"], None);
        let file = node.seccomp_root().join(format!("operator/{profile}.json"));
        eventually(&format!("{} removed", file.display()), T, || {
            if file.exists() {
                Err("still there".to_owned())
            } else {
                Ok(())
            }
        });
    }
    // 9. The eBPF recorder switched on in the SPOD: the manager renders `spod-recorder`, whose
    //    pod (CAP_BPF, CAP_PERFMON and CAP_SYSLOG only) loads the recorder on the node; the SPOD is
    //    Running with both DaemonSets.
    k.patch_spod(OPERATOR_NS, r#"{"spec":{"enricher":{"enableBpfRecorder":true}}}"#, T);
    eventually("the recorder pod loaded the eBPF recorder", T, || {
        let log = k.run(&["-n", OPERATOR_NS, "logs", "daemonset/spod-recorder"], None);
        if log.stdout.contains("eBPF recorder loaded") {
            Ok(())
        } else {
            Err(format!("{}{}", log.stdout, log.stderr))
        }
    });
    eventually("the SPOD Running with the recorder", T, || {
        let spod = k.get_in(OPERATOR_NS, "spod", "spod").ok_or("gone")?;
        let message = spod["status"]["conditions"][0]["message"].to_string();
        if spod["status"]["state"] == "Running" && message.contains("spod-recorder: 1 of 1") {
            Ok(())
        } else {
            Err(spod["status"].to_string())
        }
    });
    let leftovers: Vec<_> = std::fs::read_dir(node.seccomp_root().join("operator"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "profile files left behind: {leftovers:?}");
    drop(operator);
    assert!(
        k.get_in(OPERATOR_NS, "daemonset", "spod").is_none(),
        "the node DaemonSet outlived the operator's removal"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
