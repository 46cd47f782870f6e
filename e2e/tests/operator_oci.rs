//! `baseProfileName: oci://…` on a node, end to end with real parts: profiles pushed by
//! `spoc push` to a real registry (Debian's docker-registry with TLS and htpasswd,
//! `spo_testkit::registry`), pulled by the daemon under the SPOD's signature policy and pull
//! secrets, against a real kube-apiserver. Keys are made by openssl, as a user would.
//!
//! In order: a profile whose base needs the registry's login fails until the SPOD names a
//! pull secret; a signed base installs, unioned, and the node status names its digest; an
//! unsigned base is refused while verification is on and installs once the SPOD turns it off;
//! a tag moved to a new push is picked up after `--oci-tag-ttl`; a base that is not a
//! SeccompProfile is refused by kind.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use spo_e2e::{Kubectl, OperatorProcs, daemon_args, eventually, kubeconfig, spoc_binary};
use spo_testkit::registry::Registry;

const NS: &str = "spo-e2e-oci";
const NODE: &str = "e2e-node-oci";
const LOG: &str = "info,spo_operator=debug,spo_oci=debug,kube=warn";
const T: Duration = Duration::from_secs(30);

fn seccomp(name: &str, names: &[&str]) -> String {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: {name}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n    - action: SCMP_ACT_ALLOW\n      names: [{}]\n",
        names.join(", ")
    )
}

fn child(name: &str, base: &str, names: &[&str]) -> String {
    seccomp(name, names).replace("spec:\n", &format!("spec:\n  baseProfileName: oci://{base}\n"))
}

struct Pusher<'a> {
    reg: &'a Registry,
    dir: &'a Path,
}

impl Pusher<'_> {
    /// `spoc push` of `yaml` to `reference`, signed with `key` when given; the pushed digest.
    fn push(&self, reference: &str, yaml: &str, key: Option<&Path>) -> String {
        let file = self.dir.join("push.yaml");
        std::fs::write(&file, yaml).expect("profile file");
        let mut cmd = Command::new(spoc_binary());
        cmd.args(["push", reference, "-f"])
            .arg(&file)
            .arg("--ca-file")
            .arg(&self.reg.ca)
            .arg("--docker-config")
            .arg(self.reg.docker_config())
            .args(["--format", "json"]);
        if let Some(key) = key {
            cmd.arg("--sign-key").arg(key);
        }
        let out = cmd.output().expect("spoc push");
        assert!(
            out.status.success(),
            "spoc push {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("spoc push --format json");
        let digest = report["digest"].as_str().expect("digest").to_owned();
        assert!(digest.starts_with("sha256:"), "{report}");
        digest
    }
}

/// Waits until SeccompProfile `name` is `state` and its node status' message contains
/// `message`; returns that message.
fn wait_status(k: &Kubectl, name: &str, state: &str, message: &str) -> String {
    eventually(&format!("{name} {state} with {message:?}"), T, || {
        let sp = k.get("sp", name).ok_or("no profile")?;
        let spns = k.get("spns", &format!("{name}-{NODE}")).ok_or("no node status")?;
        let got = spns["metadata"]["annotations"]["spo.x-k8s.io/status-message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if sp["status"]["status"] == state && got.contains(message) {
            Ok(got)
        } else {
            Err(format!("profile status {}, node status message {got:?}", sp["status"]))
        }
    })
}

fn names_in(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok(v["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect())
}

fn wait_names(path: &Path, has: &[&str]) {
    eventually(&format!("{} with {has:?}", path.display()), T, || {
        let names = names_in(path)?;
        match has.iter().find(|n| !names.iter().any(|m| m == *n)) {
            None => Ok(()),
            Some(missing) => Err(format!("{missing} missing from {names:?}")),
        }
    });
}

#[test]
fn oci_base_profiles_on_a_node() {
    let Some(kc) = kubeconfig("oci_base_profiles_on_a_node") else {
        return;
    };
    let Some(reg) = Registry::require() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let k = Kubectl::new(kc.clone());
    k.install_crds();
    k.fresh_namespace(NS, &[]);
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\n")),
    );
    for name in ["oci-app", "oci-unsigned", "oci-apparmor"] {
        k.ok(&["delete", "sp", name, "--ignore-not-found", "--wait=true"], None);
    }
    let kubelet = tmp.path().join("kubelet");
    std::fs::create_dir_all(&kubelet).expect("kubelet dir");
    let (private, public) = spo_testkit::openssl_p256_keys(tmp.path(), "team");
    let pusher = Pusher {
        reg: &reg,
        dir: tmp.path(),
    };
    let host = &reg.host;
    let base_ref = format!("{host}/e2e/base:v1");
    let unsigned_ref = format!("{host}/e2e/unsigned:v1");
    let apparmor_ref = format!("{host}/e2e/apparmor:v1");
    let first = pusher.push(
        &base_ref,
        &seccomp("base", &["read", "write", "exit_group"]),
        Some(&private),
    );
    pusher.push(&unsigned_ref, &seccomp("plain", &["getpid"]), None);
    let apparmor = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: AppArmorProfile\nmetadata:\n  name: aa\nspec:\n  abstract:\n    filesystem:\n      readOnlyPaths: [/etc/hosts]\n";
    pusher.push(&apparmor_ref, apparmor, Some(&private));

    let procs = OperatorProcs::new(&kc, LOG, tmp.path());
    let _manager = procs.spawn(
        "manager",
        ["manager", "--namespace", NS].iter().chain(spo_e2e::FAST_LEASE),
    );
    let mut args = daemon_args(NS, NODE, &kubelet);
    args.extend(["--oci-ca-file".into(), reg.ca.clone().into_os_string()]);
    args.extend(["--oci-verify-key".into(), public.clone().into_os_string()]);
    args.extend(["--oci-tag-ttl".into(), "2".into()]);
    let mut daemon = procs.spawn("daemon", args);
    eventually("default SPOD", T, || {
        let r = k.run(&["-n", NS, "get", "spod", "spod"], None);
        if r.ok { Ok(()) } else { Err(r.stderr) }
    });

    // 1. The registry wants a login and the SPOD names no pull secret: refused, saying so.
    let file = kubelet.join("seccomp/operator/oci-app.json");
    k.ok(&["apply", "-f", "-"], Some(&child("oci-app", &base_ref, &["mkdir"])));
    let refused = wait_status(&k, "oci-app", "Error", "refused access: no credentials given");
    assert!(refused.contains("the SPOD names no imagePullSecrets"), "{refused}");
    assert!(!file.exists(), "installed without its base");

    // 1b. The SPOD names a secret that is not there: the error says which and why.
    k.patch_spod(NS, r#"{"spec":{"imagePullSecrets":[{"name":"missing"}]}}"#, T);
    wait_status(&k, "oci-app", "Error", &format!("secret {NS}/missing not readable"));
    assert!(!file.exists(), "installed without its base");

    // 2. A pull secret in the operator's namespace, named by the SPOD after the missing one:
    //    pulled, verified with the daemon's key, unioned; the node status names the digest
    //    and the key.
    let config = std::fs::read_to_string(reg.docker_config()).expect("docker config");
    k.ok(
        &[
            "-n",
            NS,
            "create",
            "secret",
            "generic",
            "regcred",
            "--type=kubernetes.io/dockerconfigjson",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("--from-literal=.dockerconfigjson={config}")])
        .collect::<Vec<_>>()
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        None,
    );
    k.patch_spod(
        NS,
        r#"{"spec":{"imagePullSecrets":[{"name":"missing"},{"name":"regcred"}]}}"#,
        T,
    );
    wait_names(&file, &["read", "write", "exit_group", "mkdir"]);
    let message = wait_status(&k, "oci-app", "Installed", &first);
    assert!(message.contains(&format!("oci://{base_ref}")), "{message}");
    assert!(message.contains("signed by key"), "{message}");

    // 3. Unsigned while verification is on: refused by signature, nothing installed.
    let unsigned_file = kubelet.join("seccomp/operator/oci-unsigned.json");
    k.ok(
        &["apply", "-f", "-"],
        Some(&child("oci-unsigned", &unsigned_ref, &["mkdir"])),
    );
    let refused = wait_status(&k, "oci-unsigned", "Error", "signature");
    assert!(refused.contains("e2e/unsigned"), "{refused}");
    assert!(!unsigned_file.exists(), "an unsigned base was installed");

    // 4. A base of another kind: refused by kind (upstream's words).
    k.ok(
        &["apply", "-f", "-"],
        Some(&child("oci-apparmor", &apparmor_ref, &["mkdir"])),
    );
    wait_status(&k, "oci-apparmor", "Error", "pull result type AppArmorProfile");

    // 5. The tag moves to a new push: after the tag TTL the node has the new base, and the
    //    node status the new digest.
    let second = pusher.push(
        &base_ref,
        &seccomp("base", &["read", "write", "exit_group", "getppid"]),
        Some(&private),
    );
    assert_ne!(first, second);
    wait_names(&file, &["read", "getppid", "mkdir"]);
    wait_status(&k, "oci-app", "Installed", &second);

    // 6. The SPOD turns verification off: the unsigned base installs, said to be unchecked.
    k.patch_spod(
        NS,
        r#"{"spec":{"security":{"disableOciArtifactSignatureVerification":true}}}"#,
        T,
    );
    wait_names(&unsigned_file, &["getpid", "mkdir"]);
    let unchecked = wait_status(&k, "oci-unsigned", "Installed", "signature not checked");
    assert!(unchecked.contains("sha256:"), "{unchecked}");

    assert!(daemon.running(), "the daemon exited; see {}", tmp.path().display());
    for name in ["oci-app", "oci-unsigned", "oci-apparmor"] {
        k.ok(&["delete", "sp", name, "--wait=true", "--timeout=60s"], None);
    }
    assert!(!file.exists(), "{} left after delete", file.display());
    k.ok(&["-n", NS, "delete", "secret", "regcred"], None);
    k.ok(&["delete", "node", NODE], None);
}
