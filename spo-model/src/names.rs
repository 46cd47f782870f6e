//! Label, annotation and finalizer names the ecosystem relies on, and the names derived from
//! objects (profile id, node status name).

use sha2::{Digest, Sha256};

/// Namespace opt-in label for ProfileBindings.
pub const LABEL_ENABLE_BINDING: &str = "spo.x-k8s.io/enable-binding";
/// Namespace opt-in label for ProfileRecordings.
pub const LABEL_ENABLE_RECORDING: &str = "spo.x-k8s.io/enable-recording";
/// Marks a partial profile of a recording with `mergeStrategy: Containers`.
pub const LABEL_PARTIAL: &str = "spo.x-k8s.io/partial";
/// The recording a profile came from.
pub const LABEL_RECORDING_ID: &str = "spo.x-k8s.io/recording-id";
/// The namespace of the recording a profile came from.
pub const LABEL_RECORDING_NAMESPACE: &str = "spo.x-k8s.io/recording-namespace";
/// The container a recorded profile came from.
pub const LABEL_CONTAINER_ID: &str = "spo.x-k8s.io/container-id";
/// The node of a SecurityProfileNodeStatus.
pub const LABEL_NODE_NAME: &str = "spo.x-k8s.io/node-name";
/// The state in a SecurityProfileNodeStatus.
pub const LABEL_PROFILE_STATE: &str = "spo.x-k8s.io/profile-state";
/// The profile kind of a SecurityProfileNodeStatus.
pub const LABEL_PROFILE_KIND: &str = "spo.x-k8s.io/profile-kind";
/// The profile id of a SecurityProfileNodeStatus, see [`profile_id`].
pub const LABEL_PROFILE_ID: &str = "spo.x-k8s.io/profile-id";

/// Profile finalizer held while pods use the profile.
pub const FINALIZER_IN_USE: &str = "in-use-by-active-pods";
/// Binding finalizer held while pods use the binding.
pub const FINALIZER_ACTIVE_WORKLOAD_LOCK: &str = "active-workload-lock";
/// Recording finalizer held while a recording is active.
pub const FINALIZER_RECORDING_LOCK: &str = "active-seccomp-profile-recording-lock";
/// Finalizer of partial profiles.
pub const FINALIZER_PARTIAL_PROFILE: &str = "spo.x-k8s.io/partial-profile-finalizer";
/// Recording finalizer held until partial profiles are merged.
pub const FINALIZER_HAS_UNMERGED_PROFILES: &str = "spo.x-k8s.io/has-unmerged-profiles";
/// Suffix of the per-node finalizer on each profile: `<node>-deleted`.
pub const NODE_FINALIZER_SUFFIX: &str = "-deleted";

/// Recording pod annotation prefix for eBPF seccomp recording.
pub const ANNOTATION_TRACE_BPF: &str = "io.containers.trace-bpf/";
/// Recording pod annotation prefix for log seccomp recording.
pub const ANNOTATION_TRACE_LOGS: &str = "io.containers.trace-logs/";
/// Recording pod annotation prefix for eBPF AppArmor recording.
pub const ANNOTATION_TRACE_BPF_APPARMOR: &str = "io.containers.trace-bpf-apparmor/";
/// Recording pod annotation prefix for SELinux AVC recording.
pub const ANNOTATION_TRACE_AVCS: &str = "io.containers.trace-avcs/";
/// The SeccompProfile log recording runs containers under (`SCMP_ACT_LOG` for every call),
/// made by the manager while the SPOD enables the log enricher, as upstream names it.
pub const LOG_ENRICHER_PROFILE: &str = "log-enricher-trace";
/// The SelinuxProfile SELinux log recording runs containers as: a permissive domain that
/// inherits `container` (pods use `selinuxrecording.process`), which the manager makes while
/// the SPOD enables the log enricher and SELinux.
pub const SELINUX_RECORDING_PROFILE: &str = "selinuxrecording";

/// The longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// The per-node finalizer the node agent puts on each profile: `<node>-deleted`.
pub fn node_finalizer(node: &str) -> String {
    format!("{node}{NODE_FINALIZER_SUFFIX}")
}

/// The value of [`LABEL_PROFILE_ID`]: `<Kind>-<name>`, or, when that would be 63 characters
/// or more (too long for a label value), `<Kind>-` followed by the hex SHA-256 of the name,
/// cut so the whole value is 62 characters. Deterministic, so every node computes the same id.
pub fn profile_id(kind: &str, name: &str) -> String {
    let plain = format!("{kind}-{name}");
    if plain.len() < MAX_LABEL_VALUE {
        return plain;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let room = (MAX_LABEL_VALUE - 1).saturating_sub(kind.len() + 1);
    format!("{kind}-{}", &hex[..room.min(hex.len())])
}

/// The name of a profile's SecurityProfileNodeStatus on `node`: `<profile>-<node>`.
pub fn node_status_name(profile: &str, node: &str) -> String {
    format!("{profile}-{node}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::is_label_value;

    #[test]
    fn short_ids_are_plain() {
        assert_eq!(profile_id("SeccompProfile", "nginx"), "SeccompProfile-nginx");
    }

    #[test]
    fn long_ids_are_hashed_and_fit_a_label() {
        let name = "a".repeat(60);
        let id = profile_id("RawSelinuxProfile", &name);
        assert!(id.starts_with("RawSelinuxProfile-"));
        assert_eq!(id.len(), 62);
        assert!(is_label_value(&id));
        assert_eq!(id, profile_id("RawSelinuxProfile", &name), "deterministic");
        assert_ne!(id, profile_id("RawSelinuxProfile", &"b".repeat(60)));
        // The boundary: 62 characters stay plain, 63 are hashed.
        let kind = "SeccompProfile";
        let n62 = "x".repeat(62 - kind.len() - 1);
        assert_eq!(profile_id(kind, &n62), format!("{kind}-{n62}"));
        let n63 = "x".repeat(63 - kind.len() - 1);
        assert_ne!(profile_id(kind, &n63), format!("{kind}-{n63}"));
        assert!(profile_id(kind, &"y".repeat(253)).len() < 63);
    }

    #[test]
    fn derived_names() {
        assert_eq!(node_finalizer("node-1"), "node-1-deleted");
        assert_eq!(node_status_name("p", "node-1"), "p-node-1");
    }
}
