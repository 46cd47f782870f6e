//! The generated CRDs against a real kube-apiserver: they are accepted as structural schemas,
//! become Established, enforce our validations server-side, apply defaults, serve the status
//! subresource and printer columns, and every shipped example manifest is admitted.
//!
//! All checks run in one test so the CRDs are installed once and the order is fixed.

use std::collections::BTreeSet;

use spo_e2e::{Kubectl, kubeconfig, repo_root};
use spo_model::{Outcome, parse_source};

const CRDS: [&str; 8] = [
    "seccompprofiles",
    "selinuxprofiles",
    "rawselinuxprofiles",
    "apparmorprofiles",
    "profilebindings",
    "profilerecordings",
    "securityprofilesoperatordaemons",
    "securityprofilenodestatuses",
];
const GROUP: &str = "security-profiles-operator.x-k8s.io";

#[test]
fn crds_on_a_real_apiserver() {
    let Some(kc) = kubeconfig("crds_on_a_real_apiserver") else {
        return;
    };
    let k = Kubectl::new(kc);
    let root = repo_root();
    let crd_dir = root.join("deploy/crds");

    // 1. Install: the apiserver rejects non-structural schemas here.
    k.ok(
        &["apply", "--server-side", "-k", crd_dir.to_str().expect("utf-8")],
        None,
    );
    for plural in CRDS {
        k.ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{plural}.{GROUP}"),
            ],
            None,
        );
        let crd = k.json(&["get", "crd", &format!("{plural}.{GROUP}"), "-o", "json"]);
        let conditions = crd["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let non_structural = conditions
            .iter()
            .any(|c| c["type"] == "NonStructuralSchema" && c["status"] == "True");
        assert!(!non_structural, "{plural} has a non-structural schema: {conditions:?}");
    }

    // 2. Every example manifest is admitted (server-side dry run), in the namespaces it names.
    let manifests = root.join("examples/manifests");
    let mut namespaces = BTreeSet::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&manifests).expect("examples/manifests") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            for doc in parse_source(&path.display().to_string(), &text).expect("parse") {
                if let Outcome::Valid(obj) = &doc.outcome
                    && let Some(ns) = obj.to_value().expect("json")["metadata"]["namespace"].as_str()
                {
                    namespaces.insert(ns.to_owned());
                }
            }
            files.push(path);
        }
    }
    assert!(!files.is_empty(), "no example manifests found");
    for ns in &namespaces {
        let exists = k.run(&["get", "namespace", ns], None).ok;
        if !exists {
            k.ok(&["create", "namespace", ns], None);
        }
    }
    files.sort();
    for f in &files {
        let r = k.run(&["apply", "--dry-run=server", "-f", f.to_str().expect("utf-8")], None);
        assert!(r.ok, "apiserver rejected {}:\n{}{}", f.display(), r.stdout, r.stderr);
    }

    // 3. Defaults are applied by the apiserver, as upstream's CRDs do.
    k.ok(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: e2e-defaults}\nspec: {defaultAction: SCMP_ACT_LOG}\n---\napiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {name: e2e-defaults}\nspec: {allow: {'@self': {tcp_socket: [listen]}}}\n---\napiVersion: security-profiles-operator.x-k8s.io/v1\nkind: AppArmorProfile\nmetadata: {name: e2e-defaults}\nspec: {}\n",
        ),
    );
    let sp = k.json(&["get", "seccompprofile", "e2e-defaults", "-o", "json"]);
    assert_eq!(sp["spec"]["state"], "Enabled", "{sp}");
    let se = k.json(&["get", "selinuxprofile", "e2e-defaults", "-o", "json"]);
    assert_eq!(se["spec"]["mode"], "Enforcing", "{se}");
    assert_eq!(
        se["spec"]["inherit"],
        serde_json::json!([{"kind": "System", "name": "container"}]),
        "{se}"
    );
    let aa = k.json(&["get", "aa", "e2e-defaults", "-o", "json"]);
    assert_eq!(aa["spec"]["mode"], "Enforce", "{aa}");
    // What the apiserver stores parses back into our types unchanged.
    let typed: spo_model::SeccompProfile = serde_json::from_value(sp.clone()).expect("typed SeccompProfile");
    assert_eq!(serde_json::to_value(&typed.spec).expect("json"), sp["spec"]);

    // 4. Our validations are enforced by the apiserver too.
    let rejected = [
        ("spec.defaultAction", "defaultAction: SCMP_ACT_ALOW"),
        (
            "spec.syscalls[0].args[0].index",
            "defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [read], action: SCMP_ACT_ALLOW, args: [{index: 7, op: SCMP_CMP_EQ}]}]",
        ),
        (
            "spec.syscalls[0].names",
            "defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [], action: SCMP_ACT_ALLOW}]",
        ),
        (
            "spec.syscalls[0].errnoRet",
            "defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [read], action: SCMP_ACT_ERRNO, errnoRet: -1}]",
        ),
        (
            "spec.listenerPath",
            "defaultAction: SCMP_ACT_ERRNO\n  listenerPath: /tmp/agent.sock",
        ),
        (
            "spec.syscalls[0].args",
            "defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{names: [read], action: SCMP_ACT_ALLOW, args: [{index: 0, op: SCMP_CMP_EQ}, {index: 1, op: SCMP_CMP_EQ}, {index: 2, op: SCMP_CMP_EQ}, {index: 3, op: SCMP_CMP_EQ}, {index: 4, op: SCMP_CMP_EQ}, {index: 5, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}]}]",
        ),
    ];
    for (i, (field, spec)) in rejected.iter().enumerate() {
        let doc = format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: e2e-bad-{i}}}\nspec:\n  {spec}\n"
        );
        let r = k.run(&["apply", "--dry-run=server", "-f", "-"], Some(&doc));
        assert!(!r.ok, "apiserver accepted an invalid profile ({field}):\n{doc}");
        assert!(
            r.stderr.contains(field),
            "rejection of {field} does not name it:\n{}",
            r.stderr
        );
    }
    let rec = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileRecording\nmetadata: {name: e2e-bad, namespace: default}\nspec: {kind: SeccompProfile, recorder: bpf, podSelector: {}}\n";
    let r = k.run(&["apply", "--dry-run=server", "-f", "-"], Some(rec));
    assert!(
        !r.ok && r.stderr.contains("spec.recorder"),
        "pre-v1 enum spelling was accepted:\n{}",
        r.stderr
    );

    // 5. Status subresource and printer columns of SecurityProfileNodeStatus, in SPO v1.0's
    //    shape: `spec.nodeName` (required, non-empty) and `status.status`.
    for (bad, field) in [
        // The pre-v1.0 shape: a top-level nodeName is an unknown field now.
        ("nodeName: node-1\n", "unknown field \"nodeName\""),
        ("spec: {nodeName: \"\"}\n", "spec.nodeName"),
    ] {
        let doc = format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SecurityProfileNodeStatus\nmetadata: {{name: e2e-bad-spns}}\n{bad}"
        );
        let r = k.run(&["create", "--dry-run=server", "-f", "-"], Some(&doc));
        assert!(
            !r.ok,
            "apiserver accepted a node status without a valid {field}:\n{doc}"
        );
        assert!(
            r.stderr.contains(field),
            "rejection does not name {field}:\n{}",
            r.stderr
        );
    }
    k.ok(
        &["apply", "-f", "-"],
        Some("apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SecurityProfileNodeStatus\nmetadata: {name: e2e-defaults-node-1}\nspec: {nodeName: node-1}\nstatus: {status: Error}\n"),
    );
    let spns = k.json(&["get", "spns", "e2e-defaults-node-1", "-o", "json"]);
    assert!(
        spns.get("status").is_none_or(|s| s.get("status").is_none()),
        "status written through the main resource: {spns}"
    );
    k.ok(
        &[
            "patch",
            "spns",
            "e2e-defaults-node-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"status":"Installed"}}"#,
        ],
        None,
    );
    let spns = k.json(&["get", "spns", "e2e-defaults-node-1", "-o", "json"]);
    assert_eq!(spns["status"]["status"], "Installed", "{spns}");
    assert_eq!(spns["spec"]["nodeName"], "node-1", "{spns}");
    let table = k.ok(&["get", "spns", "e2e-defaults-node-1"], None);
    assert!(
        table.contains("STATUS") && table.contains("Installed") && !table.contains("NODE"),
        "Node is a wide column (priority 10): {table}"
    );
    let wide = k.ok(&["get", "spns", "e2e-defaults-node-1", "-o", "wide"], None);
    assert!(wide.contains("NODE") && wide.contains("node-1"), "{wide}");
    k.ok(
        &[
            "patch",
            "sp",
            "e2e-defaults",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"status":"Installed","localhostProfile":"operator/e2e-defaults.json"}}"#,
        ],
        None,
    );
    let wide = k.ok(&["get", "sp", "e2e-defaults", "-o", "wide"], None);
    assert!(
        wide.contains("Installed") && wide.contains("operator/e2e-defaults.json"),
        "{wide}"
    );

    // Clean up what this test created (CRDs stay: the apiserver is thrown away afterwards).
    for (kind, name) in [
        ("sp", "e2e-defaults"),
        ("selinuxprofile", "e2e-defaults"),
        ("aa", "e2e-defaults"),
        ("spns", "e2e-defaults-node-1"),
    ] {
        k.ok(&["delete", kind, name, "--wait=false"], None);
    }
}
