//! The node DaemonSets, rendered from the SPOD (upstream's SPOD controller renders its
//! `spod` DaemonSet the same way): the daemon (`spod`, always), the eBPF recorder
//! (`spod-recorder`, while `spec.enricher.enableBpfRecorder`) and the enricher
//! (`spod-enricher`, while the log or JSON enricher is on). Each runs under the
//! ServiceAccount its deploy component grants (the RBAC stays in `deploy/`); the manager only
//! decides which run and how they are shaped, rolls them when the SPOD changes (a new pod
//! template rolls a DaemonSet) and reports the rollout in the SPOD's `status.state` and
//! `Ready` condition.
//!
//! [`render`] and [`rollout`] are pure; [`run`] is the IO shell.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource as _};
use serde_json::{Value, json};
use spo_model::contract::error_chain;
use spo_model::spod::SpodState;
use spo_model::{SecurityProfilesOperatorDaemon, SpodSpec};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::daemon::plan::retry_after;
use crate::error::{OperatorError, is_not_found};
use crate::kubeapi::{self, MANAGER_FIELD_MANAGER};
use crate::tasks::Tasks;

/// The label that marks the DaemonSets the manager renders (and may delete).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "spo-manager");
/// The annotation holding the hash of what was rendered, so an unchanged rendering is not
/// applied again on every DaemonSet status change.
pub const RENDERED_HASH: &str = "spo.x-k8s.io/rendered-hash";
/// Where the kubelet directory's `seccomp` subdirectory is mounted in the node pods.
const POD_KUBELET_DIR: &str = "/var/lib/kubelet";

/// A node component the manager renders a DaemonSet for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// `spo-daemon`: installs profiles, reports node statuses.
    Daemon,
    /// `spo-operator recorder`: the eBPF recorder of ProfileRecordings.
    Recorder,
    /// `spo-operator enricher`: the log and JSON enrichers.
    Enricher,
}

impl Component {
    /// Every component.
    pub const ALL: [Component; 3] = [Component::Daemon, Component::Recorder, Component::Enricher];

    /// The DaemonSet's name (`spod` is upstream's name for the node agent).
    pub fn daemonset(self) -> &'static str {
        match self {
            Component::Daemon => "spod",
            Component::Recorder => "spod-recorder",
            Component::Enricher => "spod-enricher",
        }
    }

    /// The ServiceAccount its pods run as (created, with its RBAC, by `deploy/`).
    pub fn service_account(self) -> &'static str {
        match self {
            Component::Daemon => "spo-daemon",
            Component::Recorder => "spo-recorder",
            Component::Enricher => "spo-enricher",
        }
    }

    /// The `app.kubernetes.io/component` label and container name.
    pub fn label(self) -> &'static str {
        match self {
            Component::Daemon => "daemon",
            Component::Recorder => "recorder",
            Component::Enricher => "enricher",
        }
    }

    /// The port of /metrics, /healthz and /readyz. Distinct per component so that they can
    /// share a host network (the manager has 8080).
    pub fn metrics_port(self) -> u16 {
        match self {
            Component::Daemon => 8081,
            Component::Recorder => 8082,
            Component::Enricher => 8083,
        }
    }

    /// The command its container runs (absolute paths in the operator's image, deploy/image).
    /// The node daemon has a binary of its own, which maps only the daemon's code
    /// (docs/decisions.md, "The node daemon's own binary"); the others are subcommands of
    /// `spo-operator`.
    pub fn command(self) -> &'static [&'static str] {
        match self {
            Component::Daemon => &["/usr/local/bin/spo-daemon"],
            Component::Recorder => &["/usr/local/bin/spo-operator", "recorder"],
            Component::Enricher => &["/usr/local/bin/spo-operator", "enricher"],
        }
    }

    /// The deploy component that grants its ServiceAccount.
    pub fn deploy_component(self) -> &'static str {
        match self {
            Component::Daemon => "deploy/base",
            Component::Recorder => "deploy/components/recorder",
            Component::Enricher => "deploy/components/enricher",
        }
    }
}

/// How the cluster shapes node pods beyond what the SPOD says (manager flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeShape {
    /// The image of every node container (default: the manager's own image).
    pub image: Option<String>,
    /// Its pull policy (default: the manager's own).
    pub pull_policy: Option<String>,
    /// The kubelet's root directory on the nodes.
    pub kubelet_dir: String,
    /// Run node pods in the host's network namespace (clusters without a pod network).
    pub host_network: bool,
    /// Extra environment of every node container (such as the apiserver's address where
    /// there is no service network).
    pub env: Vec<(String, String)>,
    /// The ConfigMap holding `cosign.pub`, the key the daemon checks `oci://` base profiles
    /// with (mounted read-only at [`OCI_TRUST_DIR`]); `None`: no key.
    pub oci_trust: Option<String>,
}

/// Where the daemon finds the OCI signing keys of [`NodeShape::oci_trust`].
pub const OCI_TRUST_DIR: &str = "/etc/spo/oci";

/// The image node pods run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The reference.
    pub name: String,
    /// `Always`, `IfNotPresent` or `Never`; `None` leaves the cluster's default.
    pub pull_policy: Option<String>,
}

/// One rendered DaemonSet.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// Which component.
    pub component: Component,
    /// The apply body (apiVersion, kind, metadata, spec), hash annotation included.
    pub body: Value,
    /// The hash of the body without the annotation.
    pub hash: String,
}

/// The components the SPOD asks for.
pub fn wanted(spec: &SpodSpec) -> BTreeSet<Component> {
    let enricher = spec.enricher.as_ref();
    let mut set = BTreeSet::from([Component::Daemon]);
    if enricher.and_then(|e| e.enable_bpf_recorder) == Some(true) {
        set.insert(Component::Recorder);
    }
    if enricher.is_some_and(|e| e.enable_log_enricher == Some(true) || e.enable_json_enricher == Some(true)) {
        set.insert(Component::Enricher);
    }
    set
}

fn selinux_on(spec: &SpodSpec) -> bool {
    spec.selinux.as_ref().and_then(|s| s.enable) == Some(true)
}

fn apparmor_on(spec: &SpodSpec) -> bool {
    spec.enable_app_armor == Some(true)
}

/// The daemon's `--kinds` for this SPOD.
pub fn daemon_kinds(spec: &SpodSpec) -> String {
    let mut kinds = vec!["seccomp"];
    if selinux_on(spec) {
        kinds.extend(["selinux", "rawselinux"]);
    }
    if apparmor_on(spec) {
        kinds.push("apparmor");
    }
    kinds.join(",")
}

/// `RUST_LOG` for the SPOD's `verbosity` (0 normal, 1 or more debug).
pub fn log_filter(spec: &SpodSpec) -> &'static str {
    if spec.verbosity.unwrap_or(0) >= 1 {
        "debug,kube=info,hyper=info,tower=info,rustls=info"
    } else {
        "info,kube=warn"
    }
}

fn host_path(name: &str, path: &str, type_: &str) -> Value {
    json!({"name": name, "hostPath": {"path": path, "type": type_}})
}

fn mount(name: &str, path: &str, read_only: bool) -> Value {
    if read_only {
        json!({"name": name, "mountPath": path, "readOnly": true})
    } else {
        json!({"name": name, "mountPath": path})
    }
}

/// What differs between components: arguments, capabilities, mounts, resources.
struct Parts {
    args: Vec<String>,
    add_caps: Vec<&'static str>,
    mounts: Vec<Value>,
    volumes: Vec<Value>,
    resources: Value,
    seccomp: &'static str,
    readiness: bool,
}

fn parts(component: Component, spec: &SpodSpec, shape: &NodeShape) -> Parts {
    let kubelet_seccomp = format!("{}/seccomp", shape.kubelet_dir.trim_end_matches('/'));
    let seccomp_mount = || mount("kubelet-seccomp", &format!("{POD_KUBELET_DIR}/seccomp"), false);
    let seccomp_volume = || host_path("kubelet-seccomp", &kubelet_seccomp, "DirectoryOrCreate");
    let host_proc = spec.host_proc_volume_path.clone().unwrap_or_else(|| "/proc".into());
    match component {
        Component::Daemon => {
            let mut p = Parts {
                args: vec![
                    format!("--kubelet-dir={POD_KUBELET_DIR}"),
                    format!("--kinds={}", daemon_kinds(spec)),
                ],
                add_caps: Vec::new(),
                mounts: vec![seccomp_mount()],
                volumes: vec![seccomp_volume()],
                resources: spec
                    .daemon_resource_requirements
                    .as_ref()
                    .and_then(|r| serde_json::to_value(r).ok())
                    .unwrap_or_else(
                        || json!({"requests": {"cpu": "10m", "memory": "24Mi"}, "limits": {"memory": "128Mi"}}),
                    ),
                seccomp: "RuntimeDefault",
                readiness: true,
            };
            if selinux_on(spec) {
                for (name, path) in [
                    ("etc-selinux", "/etc/selinux"),
                    ("var-lib-selinux", "/var/lib/selinux"),
                    ("selinuxfs", "/sys/fs/selinux"),
                ] {
                    p.mounts.push(mount(name, path, false));
                    p.volumes.push(host_path(name, path, "Directory"));
                }
                p.mounts.push(mount("semodule-tmp", "/tmp", false));
                p.volumes.push(json!({"name": "semodule-tmp", "emptyDir": {}}));
            }
            if let Some(config_map) = &shape.oci_trust {
                p.args.push(format!("--oci-verify-key={OCI_TRUST_DIR}/cosign.pub"));
                p.mounts.push(mount("oci-trust", OCI_TRUST_DIR, true));
                p.volumes
                    .push(json!({"name": "oci-trust", "configMap": {"name": config_map}}));
            }
            if apparmor_on(spec) {
                p.add_caps.push("MAC_ADMIN");
                for (name, path) in [
                    ("apparmor-d", "/etc/apparmor.d"),
                    ("securityfs", "/sys/kernel/security"),
                ] {
                    p.mounts.push(mount(name, path, false));
                    p.volumes.push(host_path(name, path, "Directory"));
                }
            }
            p
        }
        Component::Recorder => Parts {
            args: vec![format!("--kubelet-dir={POD_KUBELET_DIR}")],
            // SYSLOG: /proc/kallsyms with addresses, which AppArmor recording needs to leave
            // the kernel's unaudited capability checks out of profiles (CAP_BPF reads kernel
            // memory already, so this adds no power).
            add_caps: vec!["BPF", "PERFMON", "SYSLOG"],
            mounts: vec![seccomp_mount()],
            volumes: vec![seccomp_volume()],
            resources: json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}),
            seccomp: "Unconfined",
            readiness: false,
        },
        Component::Enricher => Parts {
            args: vec![
                "--proc-root=/host/proc".into(),
                "--audit-log=/var/log/audit/audit.log".into(),
                "--checkpoint=/var/lib/security-profiles-operator/enricher/checkpoint".into(),
            ],
            add_caps: vec!["BPF", "PERFMON", "SYSLOG", "SYS_PTRACE"],
            mounts: vec![
                mount("host-proc", "/host/proc", true),
                mount("audit-log", "/var/log/audit", true),
                mount("kmsg", "/dev/kmsg", true),
                mount("state", "/var/lib/security-profiles-operator/enricher", false),
            ],
            volumes: vec![
                host_path("host-proc", &host_proc, "Directory"),
                host_path("audit-log", "/var/log/audit", "DirectoryOrCreate"),
                host_path("kmsg", "/dev/kmsg", "CharDevice"),
                host_path(
                    "state",
                    "/var/lib/security-profiles-operator/enricher",
                    "DirectoryOrCreate",
                ),
            ],
            resources: json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "96Mi"}}),
            seccomp: "Unconfined",
            readiness: true,
        },
    }
}

/// FNV-1a over the body's JSON: stable across runs and builds (unlike std's hasher).
fn hash_of(body: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Renders the DaemonSets the SPOD `spod` asks for, in `namespace`, with `image`. Pure.
pub fn render(
    spod: &SecurityProfilesOperatorDaemon,
    namespace: &str,
    shape: &NodeShape,
    image: &Image,
) -> Vec<Rendered> {
    let spec = &spod.spec;
    let scheduling = spec.scheduling.as_ref();
    let owner = json!({
        "apiVersion": SecurityProfilesOperatorDaemon::api_version(&()),
        "kind": SecurityProfilesOperatorDaemon::kind(&()),
        "name": spod.metadata.name.clone().unwrap_or_default(),
        "uid": spod.metadata.uid.clone().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    });
    wanted(spec)
        .into_iter()
        .map(|component| {
            let p = parts(component, spec, shape);
            let labels = json!({
                "app.kubernetes.io/name": "security-profiles-operator",
                "app.kubernetes.io/component": component.label(),
            });
            let mut env = vec![
                json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
                json!({"name": "OPERATOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
                json!({"name": "RUST_LOG", "value": log_filter(spec)}),
                json!({"name": "METRICS_ADDR", "value": format!("0.0.0.0:{}", component.metrics_port())}),
            ];
            env.extend(shape.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
            let mut container = json!({
                "name": component.label(),
                "image": image.name,
                "command": component.command(),
                "args": p.args,
                "env": env,
                "ports": [{"name": "metrics", "containerPort": component.metrics_port()}],
                // Liveness does not depend on the apiserver (an outage must not restart every
                // node pod); readiness waits for the first complete lists.
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 3},
                "resources": p.resources,
                "securityContext": {
                    "runAsUser": 0,
                    "runAsGroup": 0,
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": if p.add_caps.is_empty() {
                        json!({"drop": ["ALL"]})
                    } else {
                        json!({"drop": ["ALL"], "add": p.add_caps})
                    },
                },
                "volumeMounts": p.mounts,
            });
            if let Some(policy) = &image.pull_policy {
                container["imagePullPolicy"] = json!(policy);
            }
            if p.readiness {
                container["readinessProbe"] = json!({"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5});
            }
            let mut pod_security = json!({"seccompProfile": {"type": p.seccomp}});
            let type_tag = spec.selinux.as_ref().and_then(|s| s.type_tag.clone());
            if type_tag.is_some() || selinux_on(spec) {
                pod_security["seLinuxOptions"] = json!({"type": type_tag.unwrap_or_else(|| "spc_t".into())});
            }
            let mut pod = json!({
                "serviceAccountName": component.service_account(),
                "priorityClassName": scheduling
                    .and_then(|s| s.priority_class_name.clone())
                    .unwrap_or_else(|| "system-node-critical".into()),
                "tolerations": scheduling
                    .and_then(|s| s.tolerations.as_ref())
                    .map_or_else(|| json!([{"operator": "Exists"}]), |t| json!(t)),
                "securityContext": pod_security,
                "containers": [container],
                "volumes": p.volumes,
            });
            if let Some(affinity) = scheduling.and_then(|s| s.affinity.as_ref()) {
                pod["affinity"] = json!(affinity);
            }
            if let Some(secrets) = spec.image_pull_secrets.as_ref().filter(|s| !s.is_empty()) {
                pod["imagePullSecrets"] = json!(secrets);
            }
            if shape.host_network {
                pod["hostNetwork"] = json!(true);
                pod["dnsPolicy"] = json!("ClusterFirstWithHostNet");
            }
            let mut ds_labels = labels.clone();
            ds_labels[MANAGED_BY.0] = json!(MANAGED_BY.1);
            let mut body = json!({
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {
                    "name": component.daemonset(),
                    "namespace": namespace,
                    "labels": ds_labels,
                    "ownerReferences": [owner],
                },
                "spec": {
                    "selector": {"matchLabels": labels},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                },
            });
            let hash = hash_of(&body);
            body["metadata"]["annotations"] = json!({ RENDERED_HASH: hash });
            Rendered { component, body, hash }
        })
        .collect()
}

/// What the manager reads from a DaemonSet to judge its rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// `metadata.generation` (1 until its template first changes).
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// Nodes that should run it.
    pub desired: i32,
    /// Nodes running the current template.
    pub updated: i32,
    /// Nodes where it is available.
    pub available: i32,
}

impl Rollout {
    /// The rollout of `ds`.
    pub fn of(ds: &DaemonSet) -> Self {
        let status = ds.status.as_ref();
        Rollout {
            generation: ds.metadata.generation.unwrap_or(0),
            observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
            desired: status.map_or(0, |s| s.desired_number_scheduled),
            updated: status.and_then(|s| s.updated_number_scheduled).unwrap_or(0),
            available: status.and_then(|s| s.number_available).unwrap_or(0),
        }
    }
}

/// The SPOD's state and the `Ready` condition's reason and message for the wanted
/// DaemonSets' rollouts (`None`: not seen yet). Pure.
pub fn rollout(observed: &BTreeMap<&'static str, Option<Rollout>>) -> (SpodState, &'static str, String) {
    let mut state = SpodState::Running;
    let mut notes = Vec::new();
    for (name, r) in observed {
        let (s, note) = match r {
            None => (SpodState::Creating, format!("{name}: not created yet")),
            Some(r) => {
                let settled = r.observed_generation >= r.generation && r.updated >= r.desired;
                let first = r.generation <= 1;
                if !settled {
                    let s = if first {
                        SpodState::Creating
                    } else {
                        SpodState::Updating
                    };
                    (s, format!("{name}: {} of {} nodes updated", r.updated, r.desired))
                } else if r.available < r.desired {
                    let s = if first {
                        SpodState::Creating
                    } else {
                        SpodState::Updating
                    };
                    (s, format!("{name}: {} of {} nodes available", r.available, r.desired))
                } else {
                    (
                        SpodState::Running,
                        format!("{name}: {} of {} nodes available", r.available, r.desired),
                    )
                }
            }
        };
        // Creating outranks Updating outranks Running.
        state = match (state, s) {
            (SpodState::Creating, _) | (_, SpodState::Creating) => SpodState::Creating,
            (SpodState::Updating, _) | (_, SpodState::Updating) => SpodState::Updating,
            _ => SpodState::Running,
        };
        notes.push(note);
    }
    (state, reason_of(state), notes.join("; "))
}

/// Upstream's condition reason for each state.
pub fn reason_of(state: SpodState) -> &'static str {
    match state {
        SpodState::Pending => "Pending",
        SpodState::Creating => "Creating",
        SpodState::Updating => "Updating",
        SpodState::Running => "Available",
        SpodState::Error => "Unavailable",
    }
}

/// Settings of [`run`].
#[derive(Clone, Debug)]
pub struct NodeSetConfig {
    /// The operator's namespace.
    pub namespace: String,
    /// The SPOD's name.
    pub spod_name: String,
    /// How node pods are shaped beyond the SPOD.
    pub shape: NodeShape,
    /// The manager's own pod (`POD_NAME`), whose image node pods run unless
    /// [`NodeShape::image`] is given.
    pub own_pod: Option<String>,
}

/// The image node pods run: the flag, else the manager's own container's.
async fn resolve_image(client: &Client, config: &NodeSetConfig) -> Result<Image, String> {
    if let Some(name) = &config.shape.image {
        return Ok(Image {
            name: name.clone(),
            pull_policy: config.shape.pull_policy.clone(),
        });
    }
    let Some(pod_name) = &config.own_pod else {
        return Err(
            "no --node-image given and POD_NAME is not set: the manager cannot tell which image node pods run".into(),
        );
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let full = format!("{}/{pod_name}", config.namespace);
    let read = async {
        pods.get(pod_name)
            .await
            .map_err(|e| OperatorError::api("reading the manager's own", "Pod", full.clone(), e))
    };
    let pod = kubeapi::timed("reading the manager's own", "Pod", &full, read)
        .await
        .map_err(|e| error_chain(&e))?;
    let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
    let own = containers
        .iter()
        .find(|c| c.name == "manager")
        .or(containers.first())
        .ok_or_else(|| format!("the manager's own pod {pod_name} has no container"))?;
    let name = own
        .image
        .clone()
        .ok_or_else(|| format!("the manager's container in pod {pod_name} has no image"))?;
    Ok(Image {
        name,
        pull_policy: config
            .shape
            .pull_policy
            .clone()
            .or_else(|| own.image_pull_policy.clone()),
    })
}

/// The outcome of one pass, for the status.
enum Pass {
    /// No SPOD: nothing rendered, nothing reported.
    NoSpod,
    /// Rendered and applied; the SPOD's status follows the DaemonSets.
    Applied(
        Box<SecurityProfilesOperatorDaemon>,
        BTreeMap<&'static str, Option<Rollout>>,
    ),
    /// The SPOD's node pods cannot be deployed; the message says why.
    Failed(Box<SecurityProfilesOperatorDaemon>, String),
}

/// Renders, applies and deletes the node DaemonSets for the SPOD as it is now.
async fn pass(client: &Client, config: &NodeSetConfig, image: &Result<Image, String>) -> Result<Pass, OperatorError> {
    let spods: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), &config.namespace);
    let full = format!("{}/{}", config.namespace, config.spod_name);
    let Some(spod) = spods
        .get_opt(&config.spod_name)
        .await
        .map_err(|e| OperatorError::api("reading", "SecurityProfilesOperatorDaemon", full.clone(), e))?
    else {
        return Ok(Pass::NoSpod);
    };
    let image = match image {
        Ok(i) => i,
        Err(why) => return Ok(Pass::Failed(Box::new(spod), why.clone())),
    };
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &config.namespace);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &config.namespace);
    let rendered = render(&spod, &config.namespace, &config.shape, image);
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let existing = daemonsets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| OperatorError::api("listing", "DaemonSet", format!("{}/*", config.namespace), e))?;
    let by_name: BTreeMap<String, &DaemonSet> = existing
        .items
        .iter()
        .filter_map(|d| d.metadata.name.clone().map(|n| (n, d)))
        .collect();
    let mut missing_accounts = Vec::new();
    for r in &rendered {
        let sa = r.component.service_account();
        if accounts
            .get_opt(sa)
            .await
            .map_err(|e| OperatorError::api("reading", "ServiceAccount", format!("{}/{sa}", config.namespace), e))?
            .is_none()
        {
            missing_accounts.push(format!(
                "ServiceAccount {}/{sa} of the {} is missing (deploy it with {})",
                config.namespace,
                r.component.label(),
                r.component.deploy_component()
            ));
        }
    }
    if !missing_accounts.is_empty() {
        return Ok(Pass::Failed(Box::new(spod), missing_accounts.join("; ")));
    }
    let mut observed = BTreeMap::new();
    for r in &rendered {
        let name = r.component.daemonset();
        let current = by_name.get(name);
        let same = current
            .and_then(|d| d.metadata.annotations.as_ref())
            .and_then(|a| a.get(RENDERED_HASH))
            .is_some_and(|h| *h == r.hash);
        if same {
            observed.insert(name, current.map(|d| Rollout::of(d)));
            continue;
        }
        let applied = daemonsets
            .patch(name, &kubeapi::apply(MANAGER_FIELD_MANAGER), &Patch::Apply(&r.body))
            .await
            .map_err(|e| OperatorError::api("applying", "DaemonSet", format!("{}/{name}", config.namespace), e))?;
        info!(daemonset = name, hash = %r.hash, "node DaemonSet applied");
        observed.insert(name, Some(Rollout::of(&applied)));
    }
    let keep: BTreeSet<&str> = rendered.iter().map(|r| r.component.daemonset()).collect();
    for name in by_name.keys().filter(|n| !keep.contains(n.as_str())) {
        match daemonsets.delete(name, &DeleteParams::background()).await {
            Ok(_) => info!(daemonset = %name, "node DaemonSet deleted (switched off in the SPOD)"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(OperatorError::api(
                    "deleting",
                    "DaemonSet",
                    format!("{}/{name}", config.namespace),
                    e,
                ));
            }
        }
    }
    Ok(Pass::Applied(Box::new(spod), observed))
}

/// Writes `state` into the SPOD's status unless it says that already.
async fn report(
    client: &Client,
    config: &NodeSetConfig,
    spod: &SecurityProfilesOperatorDaemon,
    state: SpodState,
    reason: &str,
    message: &str,
) -> Result<(), OperatorError> {
    let status = spod.status.clone().unwrap_or_default();
    let ready = if state == SpodState::Running { "True" } else { "False" };
    let current = status.conditions.iter().find(|c| c.type_ == "Ready");
    if status.state == Some(state)
        && current.is_some_and(|c| c.status == ready && c.reason == reason && c.message == message)
        && current.and_then(|c| c.observed_generation) == spod.metadata.generation
    {
        return Ok(());
    }
    let since = current
        .filter(|c| c.status == ready)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(super::now);
    let body = json!({
        "apiVersion": SecurityProfilesOperatorDaemon::api_version(&()),
        "kind": SecurityProfilesOperatorDaemon::kind(&()),
        "metadata": {"name": config.spod_name, "namespace": config.namespace},
        "status": {
            "state": state,
            "conditions": [{
                "type": "Ready",
                "status": ready,
                "observedGeneration": spod.metadata.generation,
                "lastTransitionTime": since,
                "reason": reason,
                "message": message,
            }],
        },
    });
    let spods: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), &config.namespace);
    spods
        .patch_status(
            &config.spod_name,
            &kubeapi::apply(MANAGER_FIELD_MANAGER),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| {
            OperatorError::api(
                "applying the status of",
                "SecurityProfilesOperatorDaemon",
                format!("{}/{}", config.namespace, config.spod_name),
                e,
            )
        })?;
    info!(state = ?state, %message, "SPOD status");
    Ok(())
}

/// Keeps the node DaemonSets as the SPOD says, until the task is dropped: a pass at start,
/// after every change of the SPOD or of a managed DaemonSet (debounced), and every
/// `resync` besides.
pub async fn run(client: Client, config: NodeSetConfig, resync: Duration) {
    let changed = Arc::new(Notify::new());
    let spods: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), &config.namespace);
    let spod_watch = watcher(
        spods,
        watcher::Config::default().fields(&format!("metadata.name={}", config.spod_name)),
    )
    .default_backoff();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &config.namespace);
    let ds_watch = watcher(
        daemonsets,
        watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)),
    )
    .default_backoff();
    let mut watches = Tasks::default();
    let wake = changed.clone();
    watches.spawn(super::drive("SecurityProfilesOperatorDaemon", spod_watch, move |_| {
        wake.notify_one()
    }));
    let wake = changed.clone();
    watches.spawn(super::drive("DaemonSet", ds_watch, move |_| wake.notify_one()));

    // Resolved at the first pass, and again at every pass while it fails.
    let mut image: Result<Image, String> = Err("not resolved yet".into());
    let mut attempt = 0;
    // A hung apiserver must not hold the loop: each pass and each report is bounded.
    let full = format!("{}/{}", config.namespace, config.spod_name);
    let kind = "SecurityProfilesOperatorDaemon";
    loop {
        if image.is_err() {
            image = resolve_image(&client, &config).await;
        }
        let passed = kubeapi::timed(
            "rendering the node DaemonSets of",
            kind,
            &full,
            pass(&client, &config, &image),
        );
        let result = match passed.await {
            Ok(Pass::NoSpod) => Ok(()),
            Ok(Pass::Applied(spod, observed)) => {
                let (state, reason, message) = rollout(&observed);
                let reported = report(&client, &config, &spod, state, reason, &message);
                kubeapi::timed("applying the status of", kind, &full, reported).await
            }
            Ok(Pass::Failed(spod, why)) => {
                warn!(error = %why, "the SPOD's node pods cannot be deployed");
                let reported = report(
                    &client,
                    &config,
                    &spod,
                    SpodState::Error,
                    reason_of(SpodState::Error),
                    &why,
                );
                kubeapi::timed("applying the status of", kind, &full, reported).await
            }
            Err(e) => Err(e),
        };
        let wait = match result {
            Ok(()) => {
                attempt = 0;
                resync
            }
            Err(e) => {
                attempt += 1;
                let after = retry_after(attempt);
                warn!(error = %error_chain(&e), retry_in = ?after, "node DaemonSets pass failed");
                after
            }
        };
        let _ = tokio::time::timeout(wait, changed.notified()).await;
        // Debounce: a rollout changes the DaemonSet's status many times in a row.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::spod::{SpodEnricher, SpodScheduling, SpodSelinux};

    fn spod(spec: SpodSpec) -> SecurityProfilesOperatorDaemon {
        let mut s = SecurityProfilesOperatorDaemon::new("spod", spec);
        s.metadata.uid = Some("u-1".into());
        s
    }

    fn shape() -> NodeShape {
        NodeShape {
            kubelet_dir: "/var/lib/kubelet".into(),
            ..NodeShape::default()
        }
    }

    fn image() -> Image {
        Image {
            name: "registry.example/spo:1".into(),
            pull_policy: Some("IfNotPresent".into()),
        }
    }

    fn container(r: &Rendered) -> &Value {
        &r.body["spec"]["template"]["spec"]["containers"][0]
    }

    #[test]
    fn a_default_spod_runs_the_seccomp_daemon_only_with_no_capability() {
        let out = render(&spod(SpodSpec::default()), "ns", &shape(), &image());
        assert_eq!(out.len(), 1);
        let ds: DaemonSet = serde_json::from_value(out[0].body.clone()).expect("a DaemonSet");
        assert_eq!(ds.metadata.name.as_deref(), Some("spod"));
        let c = container(&out[0]);
        assert_eq!(c["command"], json!(["/usr/local/bin/spo-daemon"]));
        assert_eq!(c["args"], json!(["--kubelet-dir=/var/lib/kubelet", "--kinds=seccomp"]));
        assert_eq!(c["securityContext"]["capabilities"], json!({"drop": ["ALL"]}));
        assert_eq!(c["image"], "registry.example/spo:1");
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        let pod = &out[0].body["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "spo-daemon");
        assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
        assert!(pod.get("hostNetwork").is_none());
        assert!(pod["securityContext"].get("seLinuxOptions").is_none());
        assert_eq!(
            out[0].body["metadata"]["ownerReferences"][0]["uid"], "u-1",
            "deleting the SPOD removes its node pods"
        );
    }

    #[test]
    fn the_spod_switches_shape_kinds_mounts_capabilities_and_components() {
        let spec = SpodSpec {
            enable_app_armor: Some(true),
            selinux: Some(SpodSelinux {
                enable: Some(true),
                ..SpodSelinux::default()
            }),
            enricher: Some(SpodEnricher {
                enable_bpf_recorder: Some(true),
                enable_json_enricher: Some(true),
                ..SpodEnricher::default()
            }),
            verbosity: Some(1),
            host_proc_volume_path: Some("/proc-host".into()),
            ..SpodSpec::default()
        };
        let out = render(&spod(spec), "ns", &shape(), &image());
        let names: Vec<_> = out.iter().map(|r| r.component.daemonset()).collect();
        assert_eq!(names, ["spod", "spod-recorder", "spod-enricher"]);
        let daemon = container(&out[0]);
        assert_eq!(daemon["args"][1], "--kinds=seccomp,selinux,rawselinux,apparmor");
        assert_eq!(daemon["securityContext"]["capabilities"]["add"], json!(["MAC_ADMIN"]));
        let mounts: Vec<_> = daemon["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap_or_default().to_owned())
            .collect();
        for path in [
            "/etc/selinux",
            "/var/lib/selinux",
            "/sys/fs/selinux",
            "/etc/apparmor.d",
            "/sys/kernel/security",
        ] {
            assert!(mounts.iter().any(|m| m == path), "{path} in {mounts:?}");
        }
        assert_eq!(
            out[0].body["spec"]["template"]["spec"]["securityContext"]["seLinuxOptions"]["type"],
            "spc_t"
        );
        assert!(daemon["env"].to_string().contains("debug,kube=info"));
        let recorder = container(&out[1]);
        assert_eq!(
            recorder["securityContext"]["capabilities"]["add"],
            json!(["BPF", "PERFMON", "SYSLOG"])
        );
        let enricher_volumes = &out[2].body["spec"]["template"]["spec"]["volumes"];
        assert_eq!(enricher_volumes[0]["hostPath"]["path"], "/proc-host");
        for r in &out {
            let _: DaemonSet = serde_json::from_value(r.body.clone()).expect("a DaemonSet");
        }
    }

    #[test]
    fn scheduling_pull_secrets_resources_and_type_tag_come_from_the_spod() {
        let spec: SpodSpec = serde_json::from_value(json!({
            "scheduling": {
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "sec", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]}}},
                "priorityClassName": "high",
            },
            "imagePullSecrets": [{"name": "regcred"}],
            "daemonResourceRequirements": {"limits": {"memory": "256Mi"}},
            "selinux": {"typeTag": "spo_t"},
        }))
        .expect("spec");
        let _: SpodScheduling = spec.scheduling.clone().expect("scheduling");
        let out = render(&spod(spec), "ns", &shape(), &image());
        let pod = &out[0].body["spec"]["template"]["spec"];
        assert_eq!(pod["tolerations"][0]["key"], "dedicated");
        assert_eq!(pod["priorityClassName"], "high");
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
        assert!(pod["affinity"]["nodeAffinity"].is_object());
        assert_eq!(pod["securityContext"]["seLinuxOptions"]["type"], "spo_t");
        assert_eq!(container(&out[0])["resources"], json!({"limits": {"memory": "256Mi"}}));
    }

    #[test]
    fn the_cluster_shape_sets_network_env_and_the_kubelet_directory() {
        let shape = NodeShape {
            kubelet_dir: "/data/kubelet/".into(),
            host_network: true,
            env: vec![("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into())],
            oci_trust: Some("spo-oci-trust".into()),
            ..NodeShape::default()
        };
        let out = render(&spod(SpodSpec::default()), "ns", &shape, &image());
        let pod = &out[0].body["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
        assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/data/kubelet/seccomp");
        assert!(
            container(&out[0])["env"]
                .to_string()
                .contains("KUBERNETES_SERVICE_HOST")
        );
    }

    #[test]
    fn a_change_of_the_spod_changes_the_hash_and_nothing_else_does() {
        let a = render(&spod(SpodSpec::default()), "ns", &shape(), &image());
        let b = render(&spod(SpodSpec::default()), "ns", &shape(), &image());
        assert_eq!(a[0].hash, b[0].hash);
        let c = render(
            &spod(SpodSpec {
                verbosity: Some(1),
                ..SpodSpec::default()
            }),
            "ns",
            &shape(),
            &image(),
        );
        assert_ne!(a[0].hash, c[0].hash);
        assert_eq!(a[0].body["metadata"]["annotations"][RENDERED_HASH], a[0].hash);
    }

    fn r(generation: i64, observed: i64, desired: i32, updated: i32, available: i32) -> Option<Rollout> {
        Some(Rollout {
            generation,
            observed_generation: observed,
            desired,
            updated,
            available,
        })
    }

    #[test]
    fn the_rollout_state_follows_the_daemonsets() {
        let one = |x| BTreeMap::from([("spod", x)]);
        assert_eq!(rollout(&one(None)).0, SpodState::Creating);
        assert_eq!(rollout(&one(r(1, 1, 1, 1, 0))).0, SpodState::Creating);
        assert_eq!(rollout(&one(r(1, 1, 1, 1, 1))).0, SpodState::Running);
        assert_eq!(
            rollout(&one(r(2, 1, 1, 1, 1))).0,
            SpodState::Updating,
            "template changed, not yet seen"
        );
        assert_eq!(rollout(&one(r(2, 2, 1, 0, 1))).0, SpodState::Updating);
        assert_eq!(rollout(&one(r(2, 2, 1, 1, 0))).0, SpodState::Updating);
        let (state, reason, message) = rollout(&one(r(3, 3, 1, 1, 1)));
        assert_eq!((state, reason), (SpodState::Running, "Available"));
        assert_eq!(message, "spod: 1 of 1 nodes available");
        let two = BTreeMap::from([("spod", r(1, 1, 1, 1, 1)), ("spod-recorder", None)]);
        let (state, _, message) = rollout(&two);
        assert_eq!(state, SpodState::Creating);
        assert!(message.contains("spod-recorder: not created yet"), "{message}");
        assert_eq!(reason_of(SpodState::Error), "Unavailable");
    }
}
