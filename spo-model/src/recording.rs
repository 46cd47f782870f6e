//! `ProfileRecording`: record profiles from the pods a selector matches.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{
    FieldPath, Problems, Severity, check_duplicates, check_label_selector, check_metadata, is_dns_label,
};

/// The desired state of a profile recording.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "ProfileRecording",
    plural = "profilerecordings",
    namespaced,
    status = "ProfileRecordingStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "ProfileRecording records a profile of the given kind from the pods its selector matches.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind"}"#,
    printcolumn = r#"{"name":"Recorder","type":"string","jsonPath":".spec.recorder"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRecordingSpec {
    /// The kind of profile to record.
    pub kind: RecordingKind,
    /// How to record.
    pub recorder: Recorder,
    /// Whether to merge the profiles of all containers of a name into one.
    #[serde(default)]
    pub merge_strategy: MergeStrategy,
    /// The pods to record (all pods of the namespace when empty).
    pub pod_selector: LabelSelector,
    /// Only these containers of the selected pods (all when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub containers: Option<Vec<String>>,
    /// Create the recorded profiles with `state: Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub disable_profile_after_recording: Option<bool>,
}

wire_enum!(
    /// The profile kinds a recording produces.
    RecordingKind {
        /// A SeccompProfile.
        SeccompProfile = "SeccompProfile",
        /// A SelinuxProfile.
        SelinuxProfile = "SelinuxProfile",
        /// An AppArmorProfile.
        AppArmorProfile = "AppArmorProfile",
    }
);

wire_enum!(
    /// How a recording observes the workload.
    Recorder {
        /// The eBPF recorder on the node.
        Bpf = "Bpf",
        /// Audit logs, through the log enricher.
        Logs = "Logs",
    }
);

wire_enum!(
    /// Merging of recorded profiles.
    MergeStrategy {
        /// One profile per container instance.
        None = "None",
        /// Partial profiles per replica, merged into one per container when the recording is deleted.
        Containers = "Containers",
    }
);

#[allow(clippy::derivable_impls)] // the variants are declared by wire_enum!
impl Default for MergeStrategy {
    fn default() -> Self {
        MergeStrategy::None
    }
}

/// Whether `recorder` can produce `kind` (the pairs upstream supports: seccomp with both
/// recorders, SELinux from logs, AppArmor from eBPF).
pub fn supported_pair(kind: RecordingKind, recorder: Recorder) -> bool {
    matches!(
        (kind, recorder),
        (RecordingKind::SeccompProfile, _)
            | (RecordingKind::SelinuxProfile, Recorder::Logs)
            | (RecordingKind::AppArmorProfile, Recorder::Bpf)
    )
}

/// The status of a ProfileRecording.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRecordingStatus {
    /// Pods being recorded, as `namespace/pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub active_workloads: Option<Vec<String>>,
}

impl ProfileRecording {
    /// Every problem with this recording.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, true, &mut problems);
        let spec = &self.spec;
        let root = FieldPath::root().field("spec");
        if !supported_pair(spec.kind, spec.recorder) {
            let other = match spec.kind {
                RecordingKind::SelinuxProfile => "Logs",
                _ => "Bpf",
            };
            problems.error_hint(
                root.field("recorder"),
                format!("{} cannot be recorded with the {} recorder", spec.kind, spec.recorder),
                format!("use recorder: {other}"),
            );
        }
        check_label_selector(&root.field("podSelector"), &spec.pod_selector, &mut problems);
        if let Some(containers) = &spec.containers {
            let p = root.field("containers");
            if containers.is_empty() {
                problems.warning_hint(
                    p.clone(),
                    "empty list records nothing",
                    "remove containers to record every container",
                );
            }
            for (i, c) in containers.iter().enumerate() {
                if !is_dns_label(c) {
                    problems.error_hint(
                        p.index(i),
                        format!("{c:?} is not a valid container name"),
                        "container names are DNS labels: lower-case letters, digits and '-'",
                    );
                }
            }
            check_duplicates(
                &p,
                containers.iter().map(String::as_str),
                Severity::Warning,
                &mut problems,
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        use RecordingKind::*;
        assert!(supported_pair(SeccompProfile, Recorder::Bpf));
        assert!(supported_pair(SeccompProfile, Recorder::Logs));
        assert!(supported_pair(SelinuxProfile, Recorder::Logs));
        assert!(!supported_pair(SelinuxProfile, Recorder::Bpf));
        assert!(supported_pair(AppArmorProfile, Recorder::Bpf));
        assert!(!supported_pair(AppArmorProfile, Recorder::Logs));
    }
}
