//! Recording in the cluster on a real node (e2e/start-node.sh: kubelet + containerd + runc),
//! end to end: a ProfileRecording, the webhook marking the pod, the node recorder (eBPF)
//! recording the container from the filter runc installs, the SeccompProfile it writes when the
//! pod ends, the daemon installing that profile, a ProfileBinding putting it on a new pod of the
//! same workload, which runs, and a pod doing one thing the workload never did, which is
//! refused. And `mergeStrategy: Containers`: two replicas recorded as partial profiles, merged
//! by the manager with their coverage once every pod of the recording has ended, a third
//! replica folded in later, the recording deleted with its merged profile kept. And an AppArmorProfile
//! recorded from a container's exec with its files, installed by the daemon (real
//! apparmor_parser, stand-in securityfs: this kernel has no AppArmor) and bound at admission.
//!
//! Every operator part runs as a host process against the node's apiserver: webhook (with its
//! own CA, reached at https://127.0.0.1:<port>), manager, daemon and recorder.

use std::time::{Duration, Instant};

use serde_json::Value;
use spo_e2e::node::{BUSYBOX_IMAGE, NODE_NAME, Node, allowed_syscalls, labelled_pod, workload};
use spo_e2e::{APPARMOR_FEATURES, OperatorProcs, daemon_args, eventually, free_port, recorder_args, webhook_args};

const NS: &str = "spo-e2e-recording";
const LOG: &str = "info,spo_operator=debug,kube=warn";
const T: Duration = Duration::from_secs(90);
const RECORDING: &str = "rec";
/// `<recording>-<container>`.
const PROFILE: &str = "rec-c";
/// A recording with `mergeStrategy: Containers`.
const MERGED: &str = "merged";
/// An AppArmor recording (eBPF).
const AA_RECORDING: &str = "rec-aa";

#[test]
fn a_pod_recorded_on_a_real_node_runs_under_its_profile_and_nothing_more() {
    let Some(node) = Node::from_env("a_pod_recorded_on_a_real_node_runs_under_its_profile_and_nothing_more") else {
        return;
    };
    let k = node.kubectl();
    let dir = tempfile::Builder::new()
        .prefix("spo-e2e-recording-")
        .tempdir()
        .expect("tempdir")
        .keep();
    let logs = || format!("operator logs in {}", dir.display());
    k.install_crds();
    k.fresh_namespace(NS, &["spo.x-k8s.io/enable-recording", "spo.x-k8s.io/enable-binding"]);
    let parts = OperatorProcs::new(node.kubeconfig(), LOG, &dir);
    let port = free_port();
    let mut webhook = parts.spawn(
        "webhook",
        webhook_args(NS, port)
            .iter()
            .map(String::as_str)
            .chain(["--resync", "2"]),
    );
    let mut manager = parts.spawn(
        "manager",
        ["manager", "--namespace", NS].iter().chain(spo_e2e::FAST_LEASE),
    );
    // AppArmor through a stand-in securityfs (this kernel has none; apparmor_parser is real),
    // for the AppArmor recording of step 6.
    let securityfs = dir.join("securityfs");
    let profile_dir = dir.join("apparmor.d");
    std::fs::create_dir_all(&securityfs).expect("securityfs");
    std::fs::create_dir_all(&profile_dir).expect("profile dir");
    for file in ["profiles", ".replace", ".remove"] {
        std::fs::write(securityfs.join(file), b"").expect("stand-in securityfs");
    }
    let mut daemon = parts.spawn(
        "daemon",
        daemon_args(NS, NODE_NAME, node.kubelet_dir())
            .into_iter()
            .chain(
                [
                    "--kinds",
                    "seccomp,apparmor",
                    "--apparmor-features-file",
                    APPARMOR_FEATURES,
                    "--apparmor-securityfs",
                ]
                .map(Into::into),
            )
            .chain([securityfs.clone().into_os_string(), "--apparmor-profile-dir".into()])
            .chain([profile_dir.clone().into_os_string()]),
    );
    // Left by an earlier run on this node, if any: the recorder writes it once it is on.
    let filter = node.seccomp_root().join("spo-recording/filter.json");
    let _ = std::fs::remove_file(&filter);
    let mut recorder = parts.spawn("recorder", recorder_args(NS, NODE_NAME, node.kubelet_dir()));
    // The recorder waits for the SPOD's switch (off by default, as upstream); the manager
    // creates the default SPOD.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !filter.exists(),
        "the recorder started before enableBpfRecorder was set"
    );
    k.patch_spod(
        NS,
        r#"{"spec":{"enableAppArmor":true,"enricher":{"enableBpfRecorder":true}}}"#,
        T,
    );

    // 1. The recording, and the webhook marking pods for it (a server-side dry run goes
    //    through admission without starting anything).
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {{name: {RECORDING}, namespace: {NS}}}\nspec:\n  kind: SeccompProfile\n  recorder: Bpf\n  podSelector: {{matchLabels: {{app: recorded}}}}\n"
        )),
    );
    eventually("the webhook marks pods for the recording", T, || {
        let r = k.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&labelled_pod(NS, "probe", "recorded", "true")),
        );
        let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
        let marked = pod["metadata"]["annotations"]["io.containers.trace-bpf/c"].is_string();
        let filter = pod["spec"]["containers"][0]["securityContext"]["seccompProfile"]["localhostProfile"]
            == "spo-recording/filter.json";
        if marked && filter {
            Ok(())
        } else {
            Err(format!("not marked yet: {}", pod["metadata"]))
        }
    });
    // The recorder wrote the filter the marked containers run under.
    eventually("the recording filter on the node", T, || {
        let path = node.seccomp_root().join("spo-recording/filter.json");
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}; {}", path.display(), logs()))
    });

    // 2. The recorded pod runs to its end; the recorder writes its profile.
    k.ok(
        &["apply", "-f", "-"],
        Some(&labelled_pod(NS, "recorded", "recorded", &workload(""))),
    );
    node.wait_pod_phase(NS, "recorded", &["Succeeded"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    let succeeded = Instant::now();
    let out = node.pod_logs(NS, "recorded", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("WORKLOAD-OK"), "the recorded workload failed:\n{out}");
    assert!(
        out.contains("Seccomp:\t2"),
        "the recorded container ran without the recording filter:\n{out}"
    );
    let profile = eventually(&format!("SeccompProfile {PROFILE} written"), T, || {
        let r = k.run(&["get", "sp", PROFILE, "-o", "json"], None);
        if r.ok {
            Ok(serde_json::from_str::<Value>(&r.stdout).expect("json"))
        } else {
            Err(format!("{}; {}", r.stderr, logs()))
        }
    });
    let written = succeeded.elapsed();
    let labels = &profile["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], RECORDING, "{labels}");
    assert_eq!(labels["spo.x-k8s.io/container-id"], "c", "{labels}");
    assert_eq!(labels["spo.x-k8s.io/recording-namespace"], NS, "{labels}");
    assert!(labels.get("spo.x-k8s.io/partial").is_none(), "{labels}");
    assert_eq!(profile["spec"]["defaultAction"], "SCMP_ACT_ERRNO", "{profile}");
    let names = allowed_syscalls(&profile);
    // The workload's calls, and the Go runtime allowance for runc's init (futex, tgkill...).
    for needed in ["execve", "getdents64", "openat", "futex", "tgkill"] {
        assert!(names.iter().any(|n| n == needed), "{needed} missing: {names:?}");
    }
    for never in ["mkdir", "mkdirat", "pivot_root", "mount"] {
        assert!(!names.iter().any(|n| n == never), "{never} recorded: {names:?}");
    }
    eprintln!(
        "timing: recorded pod Succeeded -> profile object {} ms ({} syscalls)",
        written.as_millis(),
        names.len()
    );

    // 2b. Replicas, merged: two pods of one workload (generateName), each doing something the
    //     other does not, are recorded as partial profiles; once both have ended the manager
    //     merges them into one profile with the coverage of each call.
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {{name: {MERGED}, namespace: {NS}}}\nspec:\n  kind: SeccompProfile\n  recorder: Bpf\n  mergeStrategy: Containers\n  podSelector: {{matchLabels: {{app: replicas}}}}\n"
        )),
    );
    eventually("the webhook marks pods for the merged recording", T, || {
        let r = k.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&labelled_pod(NS, "probe", "replicas", "true")),
        );
        let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
        let mark = pod["metadata"]["annotations"]["io.containers.trace-bpf/c"]
            .as_str()
            .unwrap_or_default();
        if mark.starts_with(&format!("{MERGED}_")) {
            Ok(())
        } else {
            Err(format!("not marked yet: {}", pod["metadata"]))
        }
    });
    // Creates one replica (a pod named by generateName); returns the pod's name.
    let run_replica = |script: &str| -> String {
        let mut pod: Value = serde_json::from_str(&labelled_pod(NS, "x", "replicas", script)).expect("pod json");
        pod["metadata"]["name"].take();
        pod["metadata"]["generateName"] = "rep-".into();
        let created = k.ok(
            &["create", "-o", "jsonpath={.metadata.name}", "-f", "-"],
            Some(&pod.to_string()),
        );
        created.trim().to_owned()
    };
    let replicas: Vec<String> = ["mkdir /tmp/a && echo A", "echo B"]
        .into_iter()
        .map(run_replica)
        .collect();
    let mut partial_names = Vec::new();
    for pod in &replicas {
        node.wait_pod_phase(NS, pod, &["Succeeded"], T)
            .unwrap_or_else(|e| panic!("{e}; {}", logs()));
        let suffix = pod.strip_prefix("rep-").expect("generated name");
        partial_names.push(format!("{MERGED}-c-{suffix}"));
    }
    // The merged profile of the replicas so far, once its coverage counts `total` replicas, and
    // its coverage.
    let merged_with = |total: u64| -> (Value, Value) {
        eventually(
            &format!("merged SeccompProfile {MERGED}-c of {total} replicas"),
            T,
            || {
                let r = k.run(&["get", "sp", &format!("{MERGED}-c"), "-o", "json"], None);
                let merged: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
                let coverage: Value = merged["metadata"]["annotations"]["spo.x-k8s.io/syscall-coverage"]
                    .as_str()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .ok_or_else(|| format!("no coverage annotation: {}", merged["metadata"]))?;
                if coverage["total"] == total {
                    Ok((merged, coverage))
                } else {
                    Err(format!("coverage {coverage}; {}", logs()))
                }
            },
        )
    };
    // Every pod of the recording has ended: the manager merges without waiting for the
    // recording's deletion, and keeps the recording held (more pods may come).
    let (merged, coverage) = merged_with(2);
    assert!(
        merged["metadata"]["labels"].get("spo.x-k8s.io/partial").is_none(),
        "{merged}"
    );
    assert_eq!(coverage["version"], "v1", "{coverage}");
    assert_eq!(coverage["syscalls"]["execve"], 2, "both replicas exec: {coverage}");
    let mkdir = ["mkdir", "mkdirat"].into_iter().find(|n| coverage["syscalls"][n] == 1);
    let mkdir = mkdir.unwrap_or_else(|| panic!("only one replica makes a directory: {coverage}"));
    let counts = coverage["syscalls"].as_object().expect("syscalls");
    assert!(counts.values().all(|c| c == 1 || c == 2), "{coverage}");
    let names = allowed_syscalls(&merged);
    let mut covered: Vec<&String> = counts.keys().collect();
    covered.sort();
    let mut merged_names: Vec<&String> = names.iter().collect();
    merged_names.sort();
    assert_eq!(covered, merged_names, "coverage counts every allowed call");
    assert!(
        names.iter().any(|n| n == mkdir),
        "the union keeps every replica's calls: {names:?}"
    );
    eventually(
        "the merged replicas' partial profiles are gone",
        T,
        || match partial_names.iter().find(|name| k.run(&["get", "sp", name], None).ok) {
            Some(name) => Err(format!("{name} still exists; {}", logs())),
            None => Ok(()),
        },
    );
    let held = k.json(&["-n", NS, "get", "profilerecording", MERGED, "-o", "json"]);
    assert!(
        held["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "spo.x-k8s.io/has-unmerged-profiles")),
        "the recording stays held while it may record more: {}",
        held["metadata"]
    );
    // A third replica later: its calls are folded into the merged profile, the coverage adds
    // up, and nothing the first two did is lost.
    let third = run_replica("echo C");
    node.wait_pod_phase(NS, &third, &["Succeeded"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    let (merged, coverage) = merged_with(3);
    assert_eq!(coverage["syscalls"]["execve"], 3, "{coverage}");
    assert_eq!(coverage["syscalls"][mkdir], 1, "{coverage}");
    let counts = coverage["syscalls"].as_object().expect("syscalls");
    assert!(
        counts.values().all(|c| (1..=3).contains(&c.as_u64().unwrap_or(0))),
        "{coverage}"
    );
    let later_names = allowed_syscalls(&merged);
    assert!(
        names.iter().all(|n| later_names.contains(n)),
        "the fold keeps the earlier merge's calls: {names:?} vs {later_names:?}"
    );
    // Deleting the recording ends it: nothing left to merge, the finalizer is released, the
    // merged profile stays.
    k.ok(&["-n", NS, "delete", "profilerecording", MERGED, "--wait=false"], None);
    eventually("the recording is gone", T, || {
        if k.run(&["-n", NS, "get", "profilerecording", MERGED], None).ok {
            Err(format!("the recording is still there; {}", logs()))
        } else {
            Ok(())
        }
    });
    let (_, coverage) = merged_with(3);
    assert_eq!(coverage["syscalls"]["execve"], 3, "{coverage}");
    eventually(&format!("SeccompProfile {MERGED}-c Installed"), T, || {
        let sp = k.json(&["get", "sp", &format!("{MERGED}-c"), "-o", "json"]);
        if sp["status"]["status"] == "Installed" {
            Ok(())
        } else {
            Err(format!("{}; {}", sp["status"], logs()))
        }
    });

    // 2c. The recorder restarted while a recorded container runs: what the new one sees of it
    //     is not the container's whole life, so no profile is written, and the pod says why.
    let before = k.json(&["get", "sp", PROFILE, "-o", "json"]);
    k.ok(
        &["apply", "-f", "-"],
        Some(&labelled_pod(NS, "interrupted", "recorded", "sleep 10; echo done")),
    );
    node.wait_pod_phase(NS, "interrupted", &["Running"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    // The recording shows the pod it records (the manager, from the webhook's marks).
    let workloads = || {
        let r = k.json(&["-n", NS, "get", "profilerecording", RECORDING, "-o", "json"]);
        r["status"]["activeWorkloads"].clone()
    };
    eventually("the recording lists the running pod", T, || {
        let w = workloads();
        if w == serde_json::json!([format!("{NS}/interrupted")]) {
            Ok(())
        } else {
            Err(format!("activeWorkloads {w}; {}", logs()))
        }
    });
    recorder.kill();
    recorder = parts.spawn("recorder-2", recorder_args(NS, NODE_NAME, node.kubelet_dir()));
    node.wait_pod_phase(NS, "interrupted", &["Succeeded"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    eventually("the recording lists no pod once it ended", T, || {
        let w = workloads();
        if w.is_null() || w == serde_json::json!([]) {
            Ok(())
        } else {
            Err(format!("activeWorkloads {w}"))
        }
    });
    eventually("a Warning Event saying the interrupted pod got no profile", T, || {
        let events = k.json(&["-n", NS, "get", "events.events.k8s.io", "-o", "json"]);
        let notes: Vec<String> = events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == "ProfileNotRecorded" && e["regarding"]["name"] == "interrupted")
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
            .collect();
        if notes.iter().any(|n| n.contains("before the recorder watched")) {
            Ok(())
        } else {
            Err(format!("events: {notes:?}; {}", logs()))
        }
    });
    let after = k.json(&["get", "sp", PROFILE, "-o", "json"]);
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "the interrupted recording must not replace {PROFILE}"
    );

    // 2d. A container restarting in a loop, its pod deleted while it runs: every run is in the
    //     profile (the first makes a directory, the second does not), and the pod says the
    //     recording was cut short.
    let mut looping: Value = serde_json::from_str(&labelled_pod(NS, "looping", "recorded", "true")).expect("pod json");
    looping["spec"]["restartPolicy"] = "Always".into();
    looping["spec"]["containers"][0]["name"] = "loop".into();
    looping["spec"]["containers"][0]["command"] = serde_json::json!([
        "/bin/sh",
        "-c",
        "if [ -d /data/ran ]; then echo again; else mkdir /data/ran; fi; exit 1"
    ]);
    looping["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([{"name": "data", "mountPath": "/data"}]);
    looping["spec"]["volumes"] = serde_json::json!([{"name": "data", "emptyDir": {}}]);
    k.ok(&["apply", "-f", "-"], Some(&looping.to_string()));
    eventually("the looping container ran twice", Duration::from_secs(120), || {
        let pod = node.pod(NS, "looping").map_err(|e| e.to_string())?.ok_or("no pod")?;
        let status = &pod["status"]["containerStatuses"][0];
        let restarts = status["restartCount"].as_u64().unwrap_or(0);
        let second_ended = status["state"]["terminated"].is_object() || status["state"]["waiting"].is_object();
        if restarts >= 1 && second_ended && status["lastState"]["terminated"].is_object() {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    });
    k.ok(&["-n", NS, "delete", "pod", "looping", "--wait=true"], None);
    let looped = eventually("SeccompProfile rec-loop from both runs", T, || {
        let r = k.run(&["get", "sp", &format!("{RECORDING}-loop"), "-o", "json"], None);
        serde_json::from_str::<Value>(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))
    });
    let names = allowed_syscalls(&looped);
    assert!(
        names.iter().any(|n| n == "mkdir" || n == "mkdirat"),
        "the first run's mkdir is in the profile: {names:?}"
    );
    eventually(
        "a Warning Event saying the looping pod's recording was cut short",
        T,
        || {
            let events = k.json(&["-n", NS, "get", "events.events.k8s.io", "-o", "json"]);
            let cut = events["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["reason"] == "RecordingCutShort" && e["regarding"]["name"] == "looping");
            if cut { Ok(()) } else { Err(logs()) }
        },
    );

    // 3. The daemon installs it; the recording goes; a binding puts the profile on the image.
    eventually(&format!("SeccompProfile {PROFILE} Installed"), T, || {
        let r = k.run(&["get", "sp", PROFILE, "-o", "json"], None);
        let sp: Value = serde_json::from_str(&r.stdout).map_err(|_| r.stderr.clone())?;
        if sp["status"]["status"] == "Installed" {
            Ok(())
        } else {
            Err(format!("{}; {}", sp["status"], logs()))
        }
    });
    k.ok(&["-n", NS, "delete", "profilerecording", RECORDING], None);
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileBinding\nmetadata: {{name: bind-recorded, namespace: {NS}}}\nspec:\n  profileRef: {{kind: SeccompProfile, name: {PROFILE}}}\n  image: {BUSYBOX_IMAGE}\n"
        )),
    );
    let replay = eventually("a pod bound to the recorded profile", T, || {
        let r = k.run(
            &["create", "-o", "json", "-f", "-"],
            Some(&labelled_pod(NS, "replay", "replay", &workload(""))),
        );
        let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
        Ok(pod)
    });
    assert_eq!(
        replay["spec"]["containers"][0]["securityContext"]["seccompProfile"]["localhostProfile"],
        format!("operator/{PROFILE}.json"),
        "{}",
        replay["spec"]
    );

    // 4. The same workload runs confined by what was recorded.
    node.wait_pod_phase(NS, "replay", &["Succeeded"], T)
        .unwrap_or_else(|e| {
            panic!(
                "{e}; the workload failed under its recorded profile: {:?}",
                node.pod_logs(NS, "replay", "c")
            )
        });
    let out = node.pod_logs(NS, "replay", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.contains("WORKLOAD-OK") && out.contains("Seccomp:\t2"),
        "replay:\n{out}"
    );

    // 5. Something it never did is refused.
    k.ok(
        &["apply", "-f", "-"],
        Some(&labelled_pod(
            NS,
            "refused",
            "replay",
            &workload("if mkdir /tmp/x; then echo MKDIR-OK; else echo MKDIR-REFUSED; fi; "),
        )),
    );
    node.wait_pod_phase(NS, "refused", &["Succeeded", "Failed"], T)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = node.pod_logs(NS, "refused", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("MKDIR-REFUSED"), "mkdir was not refused:\n{out}");
    assert!(out.contains("WORKLOAD-OK"), "the recorded part still runs:\n{out}");

    // 6. AppArmor, recorded with eBPF: from the container's exec of its entrypoint (where an
    //    AppArmor profile starts confining), with its programs, libraries and files; the
    //    container's seccomp is left alone. The daemon compiles and loads the profile (real
    //    apparmor_parser, stand-in securityfs: this kernel has no AppArmor, so a pod cannot run
    //    confined by it here and the refusal cannot be shown; the binding is checked at
    //    admission).
    let aa_profile = format!("{AA_RECORDING}-c");
    // The seccomp binding of step 3 would put its profile on these busybox pods.
    k.ok(&["-n", NS, "delete", "profilebinding", "bind-recorded"], None);
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {{name: {AA_RECORDING}, namespace: {NS}}}\nspec:\n  kind: AppArmorProfile\n  recorder: Bpf\n  podSelector: {{matchLabels: {{app: aa-recorded}}}}\n"
        )),
    );
    eventually("the webhook marks pods for the AppArmor recording", T, || {
        let r = k.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&labelled_pod(NS, "probe", "aa-recorded", "true")),
        );
        let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
        if pod["metadata"]["annotations"]["io.containers.trace-bpf-apparmor/c"].is_string() {
            assert!(
                pod["spec"]["containers"][0]["securityContext"]["seccompProfile"].is_null(),
                "an AppArmor recording must leave the container's seccomp alone: {}",
                pod["spec"]
            );
            Ok(())
        } else {
            Err(format!("not marked yet: {}", pod["metadata"]))
        }
    });
    let aa_script = "cat /etc/hostname >/dev/null && echo data > /tmp/written && ls / >/dev/null && echo WORKLOAD-OK";
    k.ok(
        &["apply", "-f", "-"],
        Some(&labelled_pod(NS, "aa-recorded", "aa-recorded", aa_script)),
    );
    node.wait_pod_phase(NS, "aa-recorded", &["Succeeded"], T)
        .unwrap_or_else(|e| panic!("{e}; {}", logs()));
    let aa_succeeded = Instant::now();
    let out = node.pod_logs(NS, "aa-recorded", "c").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.contains("WORKLOAD-OK"),
        "the AppArmor-recorded workload failed:\n{out}"
    );
    let recorded = eventually(&format!("AppArmorProfile {aa_profile} written"), T, || {
        let r = k.run(&["get", "apparmorprofile", &aa_profile, "-o", "json"], None);
        serde_json::from_str::<Value>(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))
    });
    eprintln!(
        "timing: AppArmor-recorded pod Succeeded -> profile object {} ms",
        aa_succeeded.elapsed().as_millis()
    );
    eprintln!("recorded AppArmorProfile {aa_profile}: {}", recorded["spec"]);
    let labels = &recorded["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], AA_RECORDING, "{labels}");
    assert_eq!(labels["spo.x-k8s.io/container-id"], "c", "{labels}");
    let abstract_ = &recorded["spec"]["abstract"];
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let programs = list(&abstract_["executable"]["allowedExecutables"]);
    // busybox-static: every applet is /bin/busybox, exec'd through /bin/sh and its links.
    assert!(
        programs.iter().any(|p| p.ends_with("/busybox")),
        "the workload's program: {abstract_}"
    );
    // The overlay's copy-up of /tmp runs as the runtime that mounted it (CAP_SYS_ADMIN for its
    // trusted xattrs, DAC overrides): AppArmor does not ask the container's profile about
    // those, so they are not recorded.
    let caps = list(&abstract_["capability"]["allowedCapabilities"]);
    for never in ["sys_admin", "dac_read_search"] {
        assert!(!caps.iter().any(|c| c == never), "{never} recorded: {abstract_}");
    }
    let fs = &abstract_["filesystem"];
    let readable: Vec<String> = list(&fs["readOnlyPaths"])
        .into_iter()
        .chain(list(&fs["readWritePaths"]))
        .collect();
    let writable: Vec<String> = list(&fs["writeOnlyPaths"])
        .into_iter()
        .chain(list(&fs["readWritePaths"]))
        .collect();
    assert!(
        readable.iter().any(|p| p == "/etc/hostname"),
        "read /etc/hostname: {abstract_}"
    );
    assert!(
        writable.iter().any(|p| p == "/tmp/written"),
        "wrote /tmp/written: {abstract_}"
    );
    // Nothing of the runtime's side: its binary, the node's paths, what runc does before the
    // container's exec.
    let everything = recorded["spec"].to_string();
    for host in ["runc", "containerd", "/tmp/spo-node"] {
        assert!(
            !everything.contains(host),
            "{host} is the runtime's, not the container's: {everything}"
        );
    }
    let aa_installed = eventually(&format!("AppArmorProfile {aa_profile} Installed"), T, || {
        let p = k.json(&["get", "apparmorprofile", &aa_profile, "-o", "json"]);
        if p["status"]["status"] == "Installed" {
            Ok(p)
        } else {
            Err(format!("{}; {}", p["status"], logs()))
        }
    });
    assert_eq!(aa_installed["status"]["status"], "Installed");
    let loaded = std::fs::read_to_string(profile_dir.join(&aa_profile))
        .unwrap_or_else(|e| panic!("the profile file {aa_profile} in {}: {e}", profile_dir.display()));
    assert!(
        loaded.contains("/etc/hostname") && loaded.contains("/tmp/written"),
        "the loaded profile holds the recorded files:\n{loaded}"
    );
    k.ok(&["-n", NS, "delete", "profilerecording", AA_RECORDING], None);
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileBinding\nmetadata: {{name: bind-aa, namespace: {NS}}}\nspec:\n  profileRef: {{kind: AppArmorProfile, name: {aa_profile}}}\n  image: {BUSYBOX_IMAGE}\n"
        )),
    );
    eventually("a pod bound to the recorded AppArmor profile (admission)", T, || {
        let r = k.run(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&labelled_pod(NS, "aa-replay", "aa-replay", "true")),
        );
        let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{}; {}", r.stderr, logs()))?;
        let armor = &pod["spec"]["containers"][0]["securityContext"]["appArmorProfile"];
        if armor["type"] == "Localhost" && armor["localhostProfile"] == aa_profile.as_str() {
            Ok(())
        } else {
            Err(format!("not bound yet: {}", pod["spec"]["containers"][0]))
        }
    });
    k.ok(&["-n", NS, "delete", "profilebinding", "bind-aa", "--wait=false"], None);
    k.ok(&["-n", NS, "delete", "pod", "aa-recorded", "--wait=false"], None);

    for (name, p) in [
        ("webhook", &mut webhook),
        ("manager", &mut manager),
        ("daemon", &mut daemon),
        ("recorder", &mut recorder),
    ] {
        assert!(p.running(), "{name} exited; {}", logs());
    }
    for pod in ["recorded", "replay", "refused"]
        .into_iter()
        .chain(replicas.iter().map(String::as_str))
    {
        k.ok(&["-n", NS, "delete", "pod", pod, "--wait=false"], None);
    }
    k.ok(
        &[
            "delete",
            "sp",
            PROFILE,
            &format!("{MERGED}-c"),
            &format!("{RECORDING}-loop"),
            "--wait=false",
        ],
        None,
    );
    k.ok(&["delete", "apparmorprofile", &aa_profile, "--wait=false"], None);
    // Nothing of this test stays on the node: the daemon removes each profile's file once its
    // pods are gone and the manager lets the deletion through.
    let ours = [
        node.seccomp_root().join(format!("operator/{PROFILE}.json")),
        node.seccomp_root().join(format!("operator/{MERGED}-c.json")),
        node.seccomp_root().join(format!("operator/{RECORDING}-loop.json")),
        profile_dir.join(&aa_profile),
    ];
    eventually("the recorded profiles' files removed from the node", T, || {
        let left: Vec<_> = ours.iter().filter(|p| p.exists()).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left:?}; {}", logs()))
        }
    });
    // Later tests on this node must not meet a webhook that is gone (killed first: it would
    // put its configuration back).
    webhook.kill();
    k.ok(
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "spo-mutating-webhook-configuration",
            "--ignore-not-found",
        ],
        None,
    );
    manager.kill();
    daemon.kill();
    recorder.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
