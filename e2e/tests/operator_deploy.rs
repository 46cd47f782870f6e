//! The deployment manifests (`deploy/`, kustomize) against a real kube-apiserver: the
//! rendered manifests pass a server-side dry run, and the RBAC they grant is enough: the
//! manager and a daemon run with their ServiceAccounts' tokens (not as admin) and install,
//! report and delete a profile.

use std::time::Duration;

use serde_json::Value;
use spo_e2e::{Kubectl, Proc, eventually, kubeconfig, operator_binary, operator_command, repo_root};

const NS: &str = "security-profiles-operator";
const NODE: &str = "e2e-node-rbac";
const T: Duration = Duration::from_secs(30);

/// A kubeconfig for the same server that authenticates with `token`.
/// Whether the operator's ServiceAccount `account` may `verb` `what` (in `ns`), by the real
/// apiserver's RBAC.
fn can_as(k: &Kubectl, account: &str, verb: &str, what: &str, ns: Option<&str>) -> bool {
    let sa = format!("system:serviceaccount:{NS}:{account}");
    let mut args = vec!["auth", "can-i", verb, what, "--as", sa.as_str()];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    k.run(&args, None).stdout.trim() == "yes"
}

fn token_kubeconfig(k: &Kubectl, token: &str) -> String {
    let view: Value = k.json(&["config", "view", "--raw", "--minify", "-o", "json"]);
    let cluster = &view["clusters"][0]["cluster"];
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "sa"}}],
        "current-context": "e2e",
    })
    .to_string()
}

#[test]
fn deploy_manifests_dry_run_and_least_privilege_rbac() {
    let Some(kc) = kubeconfig("deploy_manifests_dry_run_and_least_privilege_rbac") else {
        return;
    };
    let k = Kubectl::new(kc);
    let deploy = repo_root().join("deploy");
    let rendered = k.ok(&["kustomize", deploy.to_str().expect("utf-8")], None);
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}")),
            "{kind} missing from deploy/"
        );
    }
    // Namespaced objects need their namespace to exist for a dry run; CRDs go first.
    k.ok(
        &[
            "apply",
            "--server-side",
            "-k",
            deploy.join("crds").to_str().expect("utf-8"),
        ],
        None,
    );
    k.ok(
        &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        None,
    );
    if !k.run(&["get", "namespace", NS], None).ok {
        k.ok(&["create", "namespace", NS], None);
    }
    let dry = k.run(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(&rendered),
    );
    assert!(dry.ok, "dry run rejected deploy/:\n{}{}", dry.stdout, dry.stderr);

    // For real (there is no controller-manager: the Deployment starts nothing).
    k.ok(&["apply", "--server-side", "-f", "-"], Some(&rendered));
    assert!(
        !rendered.contains("kind: DaemonSet"),
        "node DaemonSets are the manager's to render from the SPOD"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = operator_binary();
    let mut procs = Vec::new();
    for (sa, args) in [
        (
            "spo-manager",
            [
                "manager",
                "--node-daemonsets",
                "--node-image=localhost/spo-rs/spo-operator:latest",
            ]
            .iter()
            .chain(spo_e2e::FAST_LEASE)
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
        ),
        (
            "spo-daemon",
            vec![
                "daemon".to_owned(),
                format!("--node-name={NODE}"),
                format!("--kubelet-dir={}", tmp.path().display()),
            ],
        ),
    ] {
        let token = k.ok(&["-n", NS, "create", "token", sa, "--duration=1h"], None);
        let path = tmp.path().join(format!("{sa}.kubeconfig"));
        std::fs::write(&path, token_kubeconfig(&k, token.trim())).expect("kubeconfig");
        let mut cmd = operator_command(&bin, &path, "info,kube=warn", "127.0.0.1:0");
        cmd.args(&args);
        procs.push(Proc::spawn(sa, cmd, &tmp.path().join(format!("{sa}.log"))));
    }
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\n")),
    );
    k.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: e2e-rbac}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [read, wirte], action: SCMP_ACT_ALLOW}]\n"),
    );
    // An Error (the daemon may write events) ...
    eventually("e2e-rbac Error", T, || {
        let sp = k.json(&["get", "sp", "e2e-rbac", "-o", "json"]);
        if sp["status"]["status"] == "Error" {
            Ok(())
        } else {
            Err(sp["status"].to_string())
        }
    });
    // ... then fixed: installed, reported, aggregated.
    k.ok(
        &[
            "patch",
            "sp",
            "e2e-rbac",
            "--type=merge",
            "-p",
            r#"{"spec":{"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}}"#,
        ],
        None,
    );
    let file = tmp.path().join("seccomp/operator/e2e-rbac.json");
    eventually("installed with ServiceAccount rights", T, || {
        let sp = k.json(&["get", "sp", "e2e-rbac", "-o", "json"]);
        if sp["status"]["status"] == "Installed" && file.exists() {
            Ok(())
        } else {
            Err(sp["status"].to_string())
        }
    });
    assert!(
        k.run(&["-n", NS, "get", "spod", "spod"], None).ok,
        "manager could not create the SPOD"
    );
    k.ok(&["delete", "sp", "e2e-rbac", "--wait=false"], None);
    eventually("deleted with ServiceAccount rights", T, || {
        let gone = !k.run(&["get", "sp", "e2e-rbac"], None).ok && !file.exists();
        if gone { Ok(()) } else { Err("still there".into()) }
    });
    // The manager rendered the daemon's DaemonSet from the SPOD with its ServiceAccount's
    // rights: no capability, the one hostPath; the SPOD says Creating (no controller-manager
    // here fills the DaemonSet's status).
    let daemon_ds = eventually("DaemonSet spod rendered by the manager", T, || {
        k.get_in(NS, "daemonset", "spod").ok_or_else(|| "not yet".to_owned())
    });
    let sc = &daemon_ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{sc}");
    assert!(
        sc["capabilities"].get("add").is_none(),
        "the daemon needs no capability: {sc}"
    );
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    let volumes = &daemon_ds["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes.as_array().map(Vec::len), Some(1), "{volumes}");
    assert_eq!(volumes[0]["hostPath"]["path"], "/var/lib/kubelet/seccomp");
    let spod_state = |want: &str| {
        eventually(&format!("SPOD state {want}"), T, || {
            let spod = k.get_in(NS, "spod", "spod").ok_or("no SPOD")?;
            if spod["status"]["state"] == want {
                Ok(spod)
            } else {
                Err(spod["status"].to_string())
            }
        })
    };
    spod_state("Creating");
    // The recorder switched on before its component is deployed: an Error naming it.
    k.patch_spod(NS, r#"{"spec":{"enricher":{"enableBpfRecorder":true}}}"#, T);
    let spod = spod_state("Error");
    let message = spod["status"]["conditions"][0]["message"].to_string();
    assert!(
        message.contains("spo-recorder") && message.contains("deploy/components/recorder"),
        "{message}"
    );
    assert!(k.get_in(NS, "daemonset", "spod-recorder").is_none());

    // Every kind and the eBPF recorder (deploy/overlays/all-kinds): accepted by the server,
    // and the recorder's ServiceAccount may do what it does and nothing else of note.
    // An overlay, rendered and accepted by the server in a dry run.
    let overlay = |name: &str| {
        let rendered = k.ok(
            &["kustomize", deploy.join("overlays").join(name).to_str().expect("utf-8")],
            None,
        );
        let dry = k.run(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            Some(&rendered),
        );
        assert!(
            dry.ok,
            "dry run rejected deploy/overlays/{name}:\n{}{}",
            dry.stdout, dry.stderr
        );
        rendered
    };
    let all = overlay("all-kinds");
    k.ok(&["apply", "--server-side", "-f", "-"], Some(&all));
    // Every node part on in the SPOD: the manager renders them now that their
    // ServiceAccounts exist.
    k.patch_spod(
        NS,
        r#"{"spec":{"enableAppArmor":true,"selinux":{"enable":true},"enricher":{"enableBpfRecorder":true,"enableJsonEnricher":true}}}"#,
        T,
    );
    spod_state("Creating");
    let recorder_ds = eventually("DaemonSet spod-recorder", T, || {
        k.get_in(NS, "daemonset", "spod-recorder")
            .ok_or_else(|| "not yet".to_owned())
    });
    let sc = &recorder_ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{sc}");
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["BPF", "PERFMON", "SYSLOG"]),
        "{sc}"
    );
    assert!(
        recorder_ds["spec"]["template"]["spec"].get("hostPID").is_none(),
        "the recorder needs no host PID namespace"
    );
    let can = |verb: &str, what: &str, ns: Option<&str>| can_as(&k, "spo-recorder", verb, what, ns);
    for (verb, what, ns) in [
        ("watch", "pods", None),
        (
            "get",
            "profilerecordings.security-profiles-operator.x-k8s.io",
            Some("team"),
        ),
        (
            "patch",
            "profilerecordings.security-profiles-operator.x-k8s.io",
            Some("team"),
        ),
        ("create", "seccompprofiles.security-profiles-operator.x-k8s.io", None),
        ("update", "seccompprofiles.security-profiles-operator.x-k8s.io", None),
        ("create", "apparmorprofiles.security-profiles-operator.x-k8s.io", None),
        ("update", "apparmorprofiles.security-profiles-operator.x-k8s.io", None),
        ("create", "events.events.k8s.io", Some("team")),
        (
            "watch",
            "securityprofilesoperatordaemons.security-profiles-operator.x-k8s.io",
            Some(NS),
        ),
    ] {
        assert!(can(verb, what, ns), "the recorder may not {verb} {what}");
    }
    for (verb, what, ns) in [
        ("delete", "seccompprofiles.security-profiles-operator.x-k8s.io", None),
        ("patch", "seccompprofiles.security-profiles-operator.x-k8s.io", None),
        ("delete", "apparmorprofiles.security-profiles-operator.x-k8s.io", None),
        ("create", "selinuxprofiles.security-profiles-operator.x-k8s.io", None),
        ("list", "secrets", Some(NS)),
        ("create", "pods", Some("team")),
        (
            "delete",
            "profilerecordings.security-profiles-operator.x-k8s.io",
            Some("team"),
        ),
        (
            "watch",
            "securityprofilesoperatordaemons.security-profiles-operator.x-k8s.io",
            Some("team"),
        ),
    ] {
        assert!(
            !can(verb, what, ns),
            "the recorder may {verb} {what}, which it never needs"
        );
    }

    // The enricher: reads pods and its SPOD, writes recorded profiles and Events (the log
    // recorder); four capabilities.
    let enricher_ds = eventually("DaemonSet spod-enricher", T, || {
        k.get_in(NS, "daemonset", "spod-enricher")
            .ok_or_else(|| "not yet".to_owned())
    });
    // The daemon with both LSM kinds: their mounts, and CAP_MAC_ADMIN for AppArmor only.
    let daemon_ds = eventually("DaemonSet spod with every kind", T, || {
        let ds = k.get_in(NS, "daemonset", "spod").ok_or("gone")?;
        let args = ds["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
        if args.contains("--kinds=seccomp,selinux,rawselinux,apparmor") {
            Ok(ds)
        } else {
            Err(args)
        }
    });
    let daemon = &daemon_ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        daemon["securityContext"]["capabilities"]["add"],
        serde_json::json!(["MAC_ADMIN"])
    );
    let mounts = daemon["volumeMounts"].to_string();
    for path in [
        "/etc/selinux",
        "/var/lib/selinux",
        "/sys/fs/selinux",
        "/sys/kernel/security",
    ] {
        assert!(mounts.contains(path), "{path} not mounted: {mounts}");
    }
    let spec = &enricher_ds["spec"]["template"]["spec"];
    let sc = &spec["containers"][0]["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{sc}");
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["BPF", "PERFMON", "SYSLOG", "SYS_PTRACE"]),
        "{sc}"
    );
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert!(
        spec.get("hostPID").is_none(),
        "the enricher reads the host's /proc, not its PID namespace"
    );
    let read_only: Vec<&Value> = spec["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| m["mountPath"] == "/host/proc" || m["mountPath"] == "/var/log/audit")
        .collect();
    assert!(
        read_only.len() == 2 && read_only.iter().all(|m| m["readOnly"] == true),
        "{read_only:?}"
    );
    let can = |verb: &str, what: &str, ns: Option<&str>| can_as(&k, "spo-enricher", verb, what, ns);
    for (verb, what, ns) in [
        ("watch", "pods", None),
        (
            "watch",
            "securityprofilesoperatordaemons.security-profiles-operator.x-k8s.io",
            Some(NS),
        ),
        (
            "get",
            "profilerecordings.security-profiles-operator.x-k8s.io",
            Some("team"),
        ),
        ("create", "seccompprofiles.security-profiles-operator.x-k8s.io", None),
        ("create", "selinuxprofiles.security-profiles-operator.x-k8s.io", None),
        ("update", "selinuxprofiles.security-profiles-operator.x-k8s.io", None),
        ("create", "events.events.k8s.io", Some("team")),
    ] {
        assert!(can(verb, what, ns), "the enricher may not {verb} {what}");
    }
    for (verb, what, ns) in [
        ("update", "pods", Some("team")),
        ("list", "secrets", Some(NS)),
        ("delete", "seccompprofiles.security-profiles-operator.x-k8s.io", None),
        ("delete", "selinuxprofiles.security-profiles-operator.x-k8s.io", None),
        ("create", "apparmorprofiles.security-profiles-operator.x-k8s.io", None),
        (
            "delete",
            "profilerecordings.security-profiles-operator.x-k8s.io",
            Some("team"),
        ),
        (
            "patch",
            "securityprofilesoperatordaemons.security-profiles-operator.x-k8s.io",
            Some(NS),
        ),
    ] {
        assert!(
            !can(verb, what, ns),
            "the enricher may {verb} {what}, which it never needs"
        );
    }

    // oci:// base profiles (deploy/overlays/oci): the daemon gets the one pull secret the
    // component names, by name, and the trust ConfigMap read-only; no other secret.
    let oci = overlay("oci");
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&oci));
    let manager: Value = k.json(&["-n", NS, "get", "deployment", "spo-manager", "-o", "json"]);
    let args = manager["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--node-oci-trust=spo-oci-trust"),
        "the manager does not render the daemon with the signing key: {args}"
    );
    let can = |verb: &str, what: &str, ns: Option<&str>| can_as(&k, "spo-daemon", verb, what, ns);
    assert!(
        can("get", "secrets/spo-oci-pull", Some(NS)),
        "the daemon may not read its pull secret"
    );
    for (verb, what, ns) in [
        ("get", "secrets/webhook-server-cert", Some(NS)),
        ("list", "secrets", Some(NS)),
        ("watch", "secrets", Some(NS)),
        ("get", "secrets/spo-oci-pull", Some("team")),
    ] {
        assert!(
            !can(verb, what, ns),
            "the daemon may {verb} {what}, which it never needs"
        );
    }

    // The recorder switched off: its DaemonSet goes.
    k.patch_spod(NS, r#"{"spec":{"enricher":{"enableBpfRecorder":false}}}"#, T);
    eventually("DaemonSet spod-recorder deleted", T, || {
        if k.get_in(NS, "daemonset", "spod-recorder").is_none() {
            Ok(())
        } else {
            Err("still there".to_owned())
        }
    });
    for p in &mut procs {
        assert!(p.running(), "{} exited; see {}", p.name, tmp.path().display());
    }
    let logs: String = ["spo-manager", "spo-daemon"]
        .iter()
        .map(|sa| std::fs::read_to_string(tmp.path().join(format!("{sa}.log"))).unwrap_or_default())
        .collect();
    assert!(!logs.contains("forbidden"), "a request was forbidden by RBAC:\n{logs}");
    drop(procs);
    k.ok(&["delete", "node", NODE], None);
}
