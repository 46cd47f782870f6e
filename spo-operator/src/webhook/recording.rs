//! The ProfileRecording decision (pure): which containers of a new pod are recorded, and
//! how the node finds them.
//!
//! A recording in the pod's namespace whose `podSelector` matches the pod's labels marks
//! each of the pod's containers (init and regular; `spec.containers` narrows them) with
//! the annotation upstream uses, so that recorders written for SPO find them:
//!
//! | kind / recorder          | annotation key                               |
//! |--------------------------|----------------------------------------------|
//! | SeccompProfile / Bpf     | `io.containers.trace-bpf/<container>`        |
//! | SeccompProfile / Logs    | `io.containers.trace-logs/<container>`       |
//! | SelinuxProfile / Logs    | `io.containers.trace-avcs/<container>`       |
//! | AppArmorProfile / Bpf    | `io.containers.trace-bpf-apparmor/<container>` |
//!
//! The value is `<recording>_<container>_<nonce>_<unix seconds>`; the profile written is
//! named `<recording>-<container>` (plus the replica's suffix). Log recorders also need the
//! container to run under a logging policy: seccomp gets [`LOG_RECORDING_SECCOMP`] (the
//! SeccompProfile `log-enricher-trace`, `SCMP_ACT_LOG` for everything, which the manager makes
//! while the SPOD enables the log enricher and the daemon installs), SELinux gets the permissive
//! [`LOG_RECORDING_SELINUX_TYPE`]. eBPF recording of seccomp runs the container under
//! [`BPF_RECORDING_SECCOMP`], a filter that changes nothing, because the node's recorder records
//! from the filter the runtime installs (upstream left the container's profile alone, and
//! recorded everything the runtime did in the container's mount namespace). eBPF recording of
//! AppArmor changes nothing in the pod: the node's recorder starts at the container's exec,
//! where its AppArmor profile will start.
//!
//! Recordings are applied in name order; when two would mark one container under the same
//! key, the first wins and the other is a warning. Pairs upstream does not support
//! (SELinux with Bpf, AppArmor with Logs) and unreadable selectors are warnings, never a
//! refusal: recording is not a guard, and a pod is never refused for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::{Selector, SelectorExt as _};
use serde_json::{Map, Value, json};
use spo_model::recording::{Recorder, RecordingKind, supported_pair};

use super::review::pointer_segment;

/// The seccomp profile log recording runs containers under (`localhostProfile`): the
/// SeccompProfile [`spo_model::names::LOG_ENRICHER_PROFILE`] as the daemon installs it.
pub const LOG_RECORDING_SECCOMP: &str = "operator/log-enricher-trace.json";
/// The seccomp profile eBPF recording of seccomp runs containers under (`localhostProfile`): a
/// filter that changes nothing (`spo_seccomp::backend::recording_filter`), which the node
/// agent writes outside the `operator/` directory so no SeccompProfile can take its name. The
/// node's recorder starts recording a container where its runtime installs this filter, the
/// point its recorded profile will be installed at; a container without a filter would record
/// nothing.
pub const BPF_RECORDING_SECCOMP: &str = spo_seccomp::node::RECORDING_FILTER_PROFILE;
/// The SELinux type log recording runs containers as.
pub const LOG_RECORDING_SELINUX_TYPE: &str = "selinuxrecording.process";

/// The annotation prefix for a kind and recorder (`None`: an unsupported pair).
pub fn annotation_prefix(kind: RecordingKind, recorder: Recorder) -> Option<&'static str> {
    match (kind, recorder) {
        (RecordingKind::SeccompProfile, Recorder::Bpf) => Some("io.containers.trace-bpf/"),
        (RecordingKind::SeccompProfile, Recorder::Logs) => Some("io.containers.trace-logs/"),
        (RecordingKind::SelinuxProfile, Recorder::Logs) => Some("io.containers.trace-avcs/"),
        (RecordingKind::AppArmorProfile, Recorder::Bpf) => Some("io.containers.trace-bpf-apparmor/"),
        _ => None,
    }
}

/// One recording, reduced to what the decision needs.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// The recording's name.
    pub name: String,
    /// What is recorded.
    pub kind: RecordingKind,
    /// How.
    pub recorder: Recorder,
    /// Which pods (`Err`: why the selector cannot be read).
    pub selector: Result<Selector, String>,
    /// Which containers (`None`: all).
    pub containers: Option<BTreeSet<String>>,
}

/// The recordings of one namespace, in name order.
#[derive(Debug, Default, Clone)]
pub struct NamespaceRecordings(BTreeMap<String, Arc<RecordingRule>>);

impl NamespaceRecordings {
    /// Adds or replaces a recording.
    pub fn insert(&mut self, rule: RecordingRule) {
        self.0.insert(rule.name.clone(), Arc::new(rule));
    }

    /// Removes a recording.
    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// Number of recordings.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One container marked for recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The recording.
    pub recording: String,
    /// The container.
    pub container: String,
    /// The annotation key.
    pub key: String,
    /// The annotation value.
    pub value: String,
}

/// The outcome for one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordingOutcome {
    /// JSON Patch operations.
    pub patch: Vec<Value>,
    /// The containers marked.
    pub marked: Vec<Marked>,
    /// Messages for the client.
    pub warnings: Vec<String>,
}

/// Marks `pod`'s containers for the matching recordings. `nonce` gives a fresh random
/// string per container; `unix` is the time in seconds.
pub fn decide(
    pod: &Pod,
    recordings: &NamespaceRecordings,
    nonce: &mut dyn FnMut() -> String,
    unix: u64,
) -> RecordingOutcome {
    let mut out = RecordingOutcome::default();
    let Some(spec) = &pod.spec else {
        return out;
    };
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let containers: Vec<(&'static str, usize, &Container)> = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ("initContainers", i, c))
        .chain(spec.containers.iter().enumerate().map(|(i, c)| ("containers", i, c)))
        .collect();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    // Security context changes per container slot: (section, index) -> field -> value.
    let mut contexts: BTreeMap<(&'static str, usize), Vec<(&'static str, Value)>> = BTreeMap::new();
    for rule in recordings.0.values() {
        let selector = match &rule.selector {
            Ok(s) => s,
            Err(why) => {
                out.warnings.push(format!(
                    "ProfileRecording {:?} is ignored: its podSelector cannot be read: {why}",
                    rule.name
                ));
                continue;
            }
        };
        if !selector.matches(labels) {
            continue;
        }
        let Some(prefix) =
            annotation_prefix(rule.kind, rule.recorder).filter(|_| supported_pair(rule.kind, rule.recorder))
        else {
            out.warnings.push(format!(
                "ProfileRecording {:?} is ignored: {} cannot be recorded with {}",
                rule.name, rule.kind, rule.recorder
            ));
            continue;
        };
        for &(section, index, c) in &containers {
            if rule.containers.as_ref().is_some_and(|only| !only.contains(&c.name)) {
                continue;
            }
            let key = format!("{prefix}{}", c.name);
            if let Some(first) = keys.get(&key) {
                out.warnings.push(format!(
                    "container {:?} is already recorded by ProfileRecording {first:?}; {:?} does not record it",
                    c.name, rule.name
                ));
                continue;
            }
            keys.insert(key.clone(), rule.name.clone());
            let value = format!("{}_{}_{}_{unix}", rule.name, c.name, nonce());
            let change = match (rule.recorder, rule.kind) {
                (Recorder::Logs, RecordingKind::SeccompProfile) => Some((
                    "seccompProfile",
                    json!({"type": "Localhost", "localhostProfile": LOG_RECORDING_SECCOMP}),
                )),
                (Recorder::Logs, RecordingKind::SelinuxProfile) => {
                    Some(("seLinuxOptions", json!({"type": LOG_RECORDING_SELINUX_TYPE})))
                }
                (Recorder::Bpf, RecordingKind::SeccompProfile) => Some((
                    "seccompProfile",
                    json!({"type": "Localhost", "localhostProfile": BPF_RECORDING_SECCOMP}),
                )),
                _ => None,
            };
            if let Some((field, v)) = change {
                let has = c.security_context.as_ref().is_some_and(|s| match field {
                    "seccompProfile" => s.seccomp_profile.is_some(),
                    _ => s.se_linux_options.is_some(),
                });
                if has {
                    out.warnings.push(format!(
                        "container {:?}: its {field} is replaced while ProfileRecording {:?} records it",
                        c.name, rule.name
                    ));
                }
                contexts.entry((section, index)).or_default().push((field, v));
            }
            out.marked.push(Marked {
                recording: rule.name.clone(),
                container: c.name.clone(),
                key,
                value,
            });
        }
    }
    for ((section, index), changes) in contexts {
        let base = format!("/spec/{section}/{index}/securityContext");
        let c = match section {
            "initContainers" => spec.init_containers.as_ref().and_then(|v| v.get(index)),
            _ => spec.containers.get(index),
        };
        if c.is_some_and(|c| c.security_context.is_some()) {
            for (field, v) in changes {
                out.patch
                    .push(json!({"op": "add", "path": format!("{base}/{field}"), "value": v}));
            }
        } else {
            let obj: Map<String, Value> = changes.into_iter().map(|(f, v)| (f.to_owned(), v)).collect();
            out.patch
                .push(json!({"op": "add", "path": base, "value": Value::Object(obj)}));
        }
    }
    if !out.marked.is_empty() {
        if pod.metadata.annotations.is_none() {
            let map: Map<String, Value> = out
                .marked
                .iter()
                .map(|m| (m.key.clone(), Value::String(m.value.clone())))
                .collect();
            out.patch
                .push(json!({"op": "add", "path": "/metadata/annotations", "value": Value::Object(map)}));
        } else {
            for m in &out.marked {
                out.patch.push(json!({
                    "op": "add",
                    "path": format!("/metadata/annotations/{}", pointer_segment(&m.key)),
                    "value": m.value,
                }));
            }
        }
    }
    out
}

/// A nonce as upstream makes them: five characters from an alphabet without vowels.
pub fn nonce_from(bytes: [u8; 5]) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
