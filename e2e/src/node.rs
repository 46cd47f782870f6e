//! Helpers for tests on the real single-node cluster of `e2e/start-node.sh`: a kubelet named
//! `localhost` with containerd and runc, plus apiserver, controller-manager and scheduler.
//!
//! `scripts/test` starts it (beside the bare apiserver the other tests use) and exports
//! `SPO_E2E_NODE_KUBECONFIG` and `SPO_E2E_NODE_KUBELET_DIR`. Without them [`Node::from_env`]
//! says `skipped: ...` on stderr, except in CI (`CI` set), where that is a failure.
//!
//! Only hostNetwork pods run there (no pod network), with the images the node imported at
//! start ([`BUSYBOX_IMAGE`], [`PAUSE_IMAGE`]) and `imagePullPolicy: Never` (no registry).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Kubectl;

/// The node's name (the kubelet refuses a loopback node IP, so it runs as `localhost`).
pub const NODE_NAME: &str = "localhost";
/// Debian's busybox-static as an image, imported into the node's containerd at start.
pub const BUSYBOX_IMAGE: &str = "localhost/spo-e2e/busybox:1";
/// The pod sandbox image (e2e/node/pause), pinned in the node's containerd.
pub const PAUSE_IMAGE: &str = "localhost/spo-e2e/pause:1";

/// A failed operation on the node, naming what was attempted.
#[derive(Debug)]
pub struct NodeError {
    /// What was being done (`waiting for pod ns/name to be Running`).
    pub operation: String,
    /// Why it failed.
    pub reason: String,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.reason)
    }
}

impl std::error::Error for NodeError {}

fn err(operation: impl Into<String>, reason: impl Into<String>) -> NodeError {
    NodeError {
        operation: operation.into(),
        reason: reason.into(),
    }
}

/// The running node cluster.
#[derive(Debug, Clone)]
pub struct Node {
    kubeconfig: PathBuf,
    kubelet_dir: PathBuf,
}

impl Node {
    /// The node `scripts/test` started, or `None` (after saying why) when the test should
    /// be skipped. Panics in CI, where skipping is not allowed.
    pub fn from_env(test: &str) -> Option<Node> {
        let kubeconfig = std::env::var_os("SPO_E2E_NODE_KUBECONFIG");
        let kubelet_dir = std::env::var_os("SPO_E2E_NODE_KUBELET_DIR");
        match (kubeconfig, kubelet_dir) {
            (Some(k), Some(d)) => Some(Node {
                kubeconfig: PathBuf::from(k),
                kubelet_dir: PathBuf::from(d),
            }),
            _ if std::env::var_os("CI").is_some() => panic!(
                "{test}: SPO_E2E_NODE_KUBECONFIG / SPO_E2E_NODE_KUBELET_DIR are not set in CI; run the suite through scripts/test"
            ),
            _ => {
                eprintln!(
                    "skipped: {test}: SPO_E2E_NODE_KUBECONFIG is not set (run scripts/test, or e2e/start-node.sh DIR and export what DIR/node/env lists)"
                );
                None
            }
        }
    }

    /// A node at `kubeconfig` whose kubelet root directory is `kubelet_dir`.
    pub fn new(kubeconfig: PathBuf, kubelet_dir: PathBuf) -> Node {
        Node {
            kubeconfig,
            kubelet_dir,
        }
    }

    /// The admin kubeconfig of the node's apiserver.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubelet's `--root-dir` (what the operator daemon takes as `--kubelet-dir`).
    pub fn kubelet_dir(&self) -> &Path {
        &self.kubelet_dir
    }

    /// The kubelet's seccomp profile root (`<root-dir>/seccomp`): a pod's
    /// `localhostProfile: operator/x.json` is the file `<seccomp root>/operator/x.json`.
    pub fn seccomp_root(&self) -> PathBuf {
        self.kubelet_dir.join("seccomp")
    }

    /// A kubectl for the node's apiserver.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig.clone())
    }

    /// The pod `namespace/name` as JSON, `Ok(None)` when it does not exist.
    pub fn pod(&self, namespace: &str, name: &str) -> Result<Option<Value>, NodeError> {
        let op = || format!("reading pod {namespace}/{name}");
        let r = self
            .kubectl()
            .run(&["-n", namespace, "get", "pod", name, "-o", "json"], None);
        if !r.ok {
            if r.stderr.contains("NotFound") {
                return Ok(None);
            }
            return Err(err(op(), r.stderr));
        }
        serde_json::from_str(&r.stdout)
            .map(Some)
            .map_err(|e| err(op(), format!("invalid JSON from kubectl: {e}")))
    }

    /// Waits up to `timeout` until pod `namespace/name` is in one of `phases` (`Running`,
    /// `Succeeded`, `Failed`, ...); returns the pod. Fails early when it reaches a phase or a
    /// container state it cannot leave for one of `phases` (a terminal phase, or a container
    /// waiting with a reason such as `CreateContainerError` or `ErrImageNeverPull`), with
    /// that reason and message.
    pub fn wait_pod_phase(
        &self,
        namespace: &str,
        name: &str,
        phases: &[&str],
        timeout: Duration,
    ) -> Result<Value, NodeError> {
        let op = format!("waiting for pod {namespace}/{name} to be {}", phases.join(" or "));
        let start = Instant::now();
        let mut last = String::from("not created yet");
        loop {
            if let Some(pod) = self.pod(namespace, name)? {
                let phase = pod["status"]["phase"].as_str().unwrap_or("").to_owned();
                if phases.contains(&phase.as_str()) {
                    return Ok(pod);
                }
                if matches!(phase.as_str(), "Succeeded" | "Failed") {
                    return Err(err(op, format!("it ended {phase}: {}", pod["status"])));
                }
                if let Some(stuck) = stuck_container(&pod) {
                    return Err(err(op, stuck));
                }
                last = format!("phase {phase:?}, status {}", pod["status"]);
            }
            if start.elapsed() >= timeout {
                return Err(err(op, format!("not reached after {timeout:?}; last: {last}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The logs of `container` in pod `namespace/name` (through the apiserver and the
    /// kubelet, as `kubectl logs`).
    pub fn pod_logs(&self, namespace: &str, name: &str, container: &str) -> Result<String, NodeError> {
        let r = self
            .kubectl()
            .run(&["-n", namespace, "logs", name, "-c", container], None);
        if r.ok {
            Ok(r.stdout)
        } else {
            Err(err(
                format!("reading logs of {namespace}/{name} container {container}"),
                r.stderr,
            ))
        }
    }

    /// Waits up to `timeout` until the logs of `container` in `namespace/name` contain
    /// `marker`; returns them.
    pub fn wait_log(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        marker: &str,
        timeout: Duration,
    ) -> Result<String, NodeError> {
        let start = Instant::now();
        loop {
            let last = match self.pod_logs(namespace, name, container) {
                Ok(logs) if logs.contains(marker) => return Ok(logs),
                Ok(logs) => format!("logs so far: {logs:?}"),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                return Err(err(
                    format!("waiting for {marker:?} in the logs of {namespace}/{name} container {container}"),
                    format!("not there after {timeout:?}; {last}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Why a pod cannot start, when one of its containers waits for a reason that needs a
/// change before it can go on (bad image, missing profile, bad config).
fn stuck_container(pod: &Value) -> Option<String> {
    const STUCK: &[&str] = &[
        "CreateContainerError",
        "CreateContainerConfigError",
        "ErrImageNeverPull",
        "InvalidImageName",
        "RunContainerError",
    ];
    let statuses = pod["status"]["containerStatuses"].as_array()?;
    statuses.iter().find_map(|s| {
        let waiting = &s["state"]["waiting"];
        let reason = waiting["reason"].as_str()?;
        STUCK.contains(&reason).then(|| {
            format!(
                "container {} is waiting: {reason}: {}",
                s["name"].as_str().unwrap_or("?"),
                waiting["message"].as_str().unwrap_or("")
            )
        })
    })
}

/// The operator's namespace in `deploy/`.
pub const OPERATOR_NS: &str = "security-profiles-operator";
/// The operator image `deploy/` names (deploy/image/build.sh's default).
pub const OPERATOR_IMAGE: &str = "localhost/spo-rs/spo-operator:latest";

impl Node {
    /// A value of the node's `STATE_DIR/node/env` (written by e2e/start-node.sh).
    pub fn env_value(&self, key: &str) -> Option<String> {
        let env = self.kubelet_dir.parent()?.join("env");
        std::fs::read_to_string(env).ok()?.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        })
    }

    /// Restarts `part` (`kubelet` or `containerd`) of the node (e2e/node/restart.sh) and
    /// returns when it answers again.
    pub fn restart(&self, part: &str) {
        let state = self
            .kubelet_dir
            .parent()
            .and_then(Path::parent)
            .expect("the kubelet directory is STATE_DIR/node/kubelet");
        let out = crate::run_ok(
            &format!("e2e/node/restart.sh {part}"),
            std::process::Command::new(crate::repo_root().join("e2e/node/restart.sh"))
                .arg(state)
                .arg(part),
        );
        eprintln!("{}", out.trim());
    }

    /// Builds the operator's image from the operator and daemon binaries the tests use
    /// (deploy/image/build.sh, into `dir`) and imports it into the node's containerd as
    /// [`OPERATOR_IMAGE`].
    pub fn import_operator_image(&self, dir: &Path) {
        let tar = dir.join("spo-operator.tar");
        let out = crate::run_ok(
            "deploy/image/build.sh",
            std::process::Command::new(crate::repo_root().join("deploy/image/build.sh"))
                .arg("--binary")
                .arg(crate::operator_binary())
                .arg("--daemon-binary")
                .arg(crate::daemon_binary())
                .arg("--out")
                .arg(&tar),
        );
        eprintln!("{}", out.trim());
        let ctr = self
            .env_value("SPO_E2E_NODE_CTR")
            .expect("SPO_E2E_NODE_CTR in the node's env");
        let sock = self
            .env_value("SPO_E2E_NODE_CONTAINERD_SOCK")
            .expect("SPO_E2E_NODE_CONTAINERD_SOCK in the node's env");
        crate::run_ok(
            "ctr images import",
            std::process::Command::new(ctr)
                .args(["--address", &sock, "--namespace", "k8s.io", "images", "import"])
                .args(["--snapshotter", "overlayfs"])
                .arg(&tar),
        );
    }

    /// Applies `deploy/overlays/e2e-node` with what only this node knows (the apiserver's
    /// address for pods without a service network, the kubelet's directory) from a
    /// kustomization written in `dir`, and returns a guard that deletes it all again.
    pub fn deploy_operator(&self, dir: &Path) -> DeployedOperator {
        let k = self.kubectl();
        let server = k.ok(
            &[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ],
            None,
        );
        let port = server
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port in the apiserver address {server:?}"));
        let kustomize = dir.join("kustomize");
        std::fs::create_dir_all(&kustomize).expect("kustomize dir");
        let overlay = crate::repo_root().join("deploy/overlays/e2e-node");
        let overlay = overlay.canonicalize().expect("deploy/overlays/e2e-node");
        let kustomize_abs = kustomize.canonicalize().expect("kustomize dir");
        // kustomize takes relative paths only.
        let up = kustomize_abs.components().count() - 1;
        let relative = format!(
            "{}{}",
            "../".repeat(up),
            overlay.to_str().expect("utf-8").trim_start_matches('/')
        );
        let env = [
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
            ("KUBERNETES_SERVICE_PORT", port.to_string()),
        ];
        let mut ops = Vec::new();
        for (k, v) in &env {
            ops.push(serde_json::json!({"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": k, "value": v}}));
            ops.push(serde_json::json!({"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": format!("--node-env={k}={v}")}));
        }
        ops.push(
            serde_json::json!({"op": "add", "path": "/spec/template/spec/containers/0/args/-",
            "value": format!("--node-kubelet-dir={}", self.kubelet_dir.display())}),
        );
        let kustomization = serde_json::json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [relative],
            "patches": [{
                "target": {"kind": "Deployment", "name": "spo-manager"},
                "patch": serde_json::Value::Array(ops).to_string(),
            }],
        });
        std::fs::write(kustomize.join("kustomization.yaml"), kustomization.to_string()).expect("kustomization");
        k.ok(
            &["apply", "--server-side", "-k", kustomize.to_str().expect("utf-8")],
            None,
        );
        DeployedOperator { kubectl: k, kustomize }
    }
}

/// The operator deployed on the node by [`Node::deploy_operator`]; dropping it deletes what
/// was applied (CRDs excepted) and waits until the node pods are gone, so that later tests
/// meet no daemon of this one.
#[derive(Debug)]
pub struct DeployedOperator {
    kubectl: Kubectl,
    kustomize: PathBuf,
}

impl DeployedOperator {
    /// The running pods of `component` (`manager`, `daemon`, `recorder`, `enricher`).
    pub fn pods(&self, component: &str) -> Vec<Value> {
        let list = self.kubectl.json(&[
            "-n",
            OPERATOR_NS,
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/component={component}"),
            "-o",
            "json",
        ]);
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for DeployedOperator {
    fn drop(&mut self) {
        // The SPOD owns the node DaemonSets; then the manager, then any pod left.
        let k = &self.kubectl;
        for what in [
            &["spod"][..],
            &["daemonsets,deployments"],
            &["pods", "--grace-period=1"],
        ] {
            let mut args = vec!["-n", OPERATOR_NS, "delete", "--all", "--wait=true", "--timeout=60s"];
            args.extend_from_slice(what);
            let _ = k.run(&args, None);
        }
        // Everything else applied, CRDs excepted (other tests' objects live in them).
        let rendered = k.run(&["kustomize", self.kustomize.to_str().unwrap_or_default()], None);
        let rest: Vec<&str> = rendered
            .stdout
            .split("\n---\n")
            .filter(|doc| !doc.contains("kind: CustomResourceDefinition"))
            .collect();
        let _ = k.run(
            &[
                "delete",
                "--ignore-not-found",
                "--wait=true",
                "--timeout=60s",
                "-f",
                "-",
            ],
            Some(&rest.join("\n---\n")),
        );
    }
}

/// A busybox pod for the node: hostNetwork (there is no pod network), `restartPolicy:
/// Never`, the node's busybox image with `imagePullPolicy: Never`, one container `c`
/// running `sh -c script`, stopped fast (1 s grace period). With `localhost_profile`, the
/// pod runs under that seccomp profile (`operator/<name>.json`, relative to the kubelet's
/// seccomp root); without, unconfined.
pub fn busybox_pod(namespace: &str, name: &str, script: &str, localhost_profile: Option<&str>) -> String {
    let seccomp = match localhost_profile {
        Some(p) => serde_json::json!({"type": "Localhost", "localhostProfile": p}),
        None => serde_json::json!({"type": "Unconfined"}),
    };
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "securityContext": {"seccompProfile": seccomp},
            "containers": [{
                "name": "c",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
            }],
        },
    })
    .to_string()
}

/// A recorded workload: lists a directory, reads files, reports its seccomp mode, prints
/// `WORKLOAD-OK`. With `extra`, something it never did while recorded runs first.
pub fn workload(extra: &str) -> String {
    format!(
        "{extra}ls / >/dev/null && cat /etc/hostname >/dev/null && grep '^Seccomp:' /proc/self/status && echo WORKLOAD-OK"
    )
}

/// [`busybox_pod`] labelled `app: <app>`, with no pod-level profile: what the webhooks set on
/// the container decides.
pub fn labelled_pod(namespace: &str, name: &str, app: &str, script: &str) -> String {
    let mut pod: Value = serde_json::from_str(&busybox_pod(namespace, name, script, None)).expect("pod json");
    pod["metadata"]["labels"] = serde_json::json!({ "app": app });
    pod["spec"]["securityContext"] = serde_json::json!({});
    pod.to_string()
}

/// The syscalls a SeccompProfile object allows.
pub fn allowed_syscalls(profile: &Value) -> Vec<String> {
    profile["spec"]["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_pod_names_the_profile_and_the_local_image() {
        let pod: Value = serde_json::from_str(&busybox_pod("ns", "p", "true", Some("operator/x.json"))).expect("json");
        assert_eq!(pod["spec"]["hostNetwork"], true);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(pod["spec"]["containers"][0]["image"], BUSYBOX_IMAGE);
        assert_eq!(
            pod["spec"]["securityContext"]["seccompProfile"],
            serde_json::json!({"type": "Localhost", "localhostProfile": "operator/x.json"})
        );
        let open: Value = serde_json::from_str(&busybox_pod("ns", "p", "true", None)).expect("json");
        assert_eq!(open["spec"]["securityContext"]["seccompProfile"]["type"], "Unconfined");
    }

    #[test]
    fn a_missing_profile_is_reported_as_stuck() {
        let pod = serde_json::json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "c", "state": {"waiting": {"reason": "CreateContainerError", "message": "no such file"}}}
        ]}});
        let why = stuck_container(&pod).expect("stuck");
        assert!(
            why.contains("CreateContainerError") && why.contains("no such file"),
            "{why}"
        );
        let starting = serde_json::json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}});
        assert_eq!(stuck_container(&starting), None);
    }
}
