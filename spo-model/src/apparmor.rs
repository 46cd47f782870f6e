//! `AppArmorProfile`: an AppArmor profile described abstractly (paths, executables,
//! network, capabilities), rendered to profile text by the AppArmor backend.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, ProfileState, SpecState};
use crate::validate::{FieldPath, Problems, Severity, check_duplicates, check_metadata, did_you_mean};

/// Linux capability names as AppArmor writes them (lower case, no `cap_` prefix), in
/// kernel numbering order (`CAP_CHOWN` = 0 ... `CAP_CHECKPOINT_RESTORE` = 40).
pub const CAPABILITIES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The largest path length accepted in a profile (`PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// The desired state of an AppArmor profile.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "AppArmorProfile",
    plural = "apparmorprofiles",
    shortname = "aa",
    status = "AppArmorProfileStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "AppArmorProfile is an AppArmor profile that the operator loads on every node with AppArmor; its kernel name is metadata.name.",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorProfileSpec {
    /// Whether the profile is loaded on nodes.
    #[serde(default)]
    pub state: SpecState,
    /// Deprecated spelling from manifests written before v1: `true` means `state: Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// `Enforce` denies what is not allowed; `Complain` only logs it.
    #[serde(default)]
    pub mode: AppArmorMode,
    /// Deprecated spelling from manifests written before v1: `true` means `mode: Complain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complain_mode: Option<bool>,
    /// A complete profile in AppArmor syntax, used instead of `abstract` (kept for
    /// manifests written for upstream; the backend checks it with apparmor_parser).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The profile, described by what the workload may do.
    #[serde(default, rename = "abstract", skip_serializing_if = "Option::is_none")]
    pub abstract_: Option<AppArmorAbstract>,
}

wire_enum!(
    /// AppArmor profile mode.
    AppArmorMode {
        /// Deny what is not allowed.
        Enforce = "Enforce",
        /// Log what would be denied, deny nothing.
        Complain = "Complain",
    }
);

#[allow(clippy::derivable_impls)] // the variants are declared by wire_enum!
impl Default for AppArmorMode {
    fn default() -> Self {
        AppArmorMode::Enforce
    }
}

/// What the workload may do.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorAbstract {
    /// Programs and libraries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<AppArmorExecutable>,
    /// File access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<AppArmorFilesystem>,
    /// Network access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<AppArmorNetwork>,
    /// Capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<AppArmorCapability>,
}

/// Programs the workload may run and libraries it may map.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorExecutable {
    /// Executables (rendered `ixr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_executables: Option<Vec<String>>,
    /// Libraries (rendered `mr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_libraries: Option<Vec<String>>,
}

/// Paths the workload may read and write.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorFilesystem {
    /// Read only (`r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub read_only_paths: Option<Vec<String>>,
    /// Write only (`wlk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub write_only_paths: Option<Vec<String>>,
    /// Read and write (`rwlk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub read_write_paths: Option<Vec<String>>,
    /// Paths the workload may not touch at all, even where another rule (or an included
    /// abstraction) allows them: rendered `deny <path> rwmlkx,` in both modes. An addition of
    /// this project; upstream has no explicit deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub denied_paths: Option<Vec<String>>,
}

/// Network access.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorNetwork {
    /// Raw sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_raw: Option<bool>,
    /// TCP and UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_protocols: Option<AppArmorProtocols>,
}

/// Protocols allowed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorProtocols {
    /// TCP sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tcp: Option<bool>,
    /// UDP sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_udp: Option<bool>,
}

/// Capabilities allowed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorCapability {
    /// Capability names, lower case without `cap_` (such as `net_bind_service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_capabilities: Option<Vec<String>>,
}

/// The status of an AppArmorProfile.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppArmorProfileStatus {
    /// The aggregated state over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProfileState>,
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods using this profile, as `namespace/pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub active_workloads: Option<Vec<String>>,
}

impl AppArmorProfileSpec {
    /// The state after folding in the deprecated `disabled` flag.
    pub fn effective_state(&self) -> SpecState {
        if self.disabled == Some(true) {
            SpecState::Disabled
        } else {
            self.state
        }
    }

    /// The mode after folding in the deprecated `complainMode` flag.
    pub fn effective_mode(&self) -> AppArmorMode {
        if self.complain_mode == Some(true) {
            AppArmorMode::Complain
        } else {
            self.mode
        }
    }
}

/// Checks one path of a profile: absolute (or starting with a variable such as
/// `@{PROC}`), no control characters, no quotes, at most [`MAX_PATH_LEN`] bytes. The exact
/// AppArmor grammar (globs, alternations) is checked by the AppArmor backend.
pub fn check_profile_path(path: &FieldPath, value: &str, problems: &mut Problems) {
    if value.is_empty() {
        problems.error(path.clone(), "path is empty");
        return;
    }
    if !(value.starts_with('/') || value.starts_with("@{")) {
        problems.error_hint(
            path.clone(),
            format!("{value:?} is not an absolute path"),
            "AppArmor rules name absolute paths such as /var/log/app/**",
        );
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        problems.error_hint(
            path.clone(),
            format!("contains the control character {c:?}"),
            "paths in a profile cannot contain newlines, NUL or other control characters",
        );
    }
    if value.contains('"') {
        problems.error(path.clone(), "contains '\"', which would end a quoted AppArmor path");
    }
    if value.len() > MAX_PATH_LEN {
        problems.error(
            path.clone(),
            format!("{} bytes, longer than PATH_MAX ({MAX_PATH_LEN})", value.len()),
        );
    }
}

/// Checks a capability name against [`CAPABILITIES`].
pub fn check_capability(path: &FieldPath, value: &str, problems: &mut Problems) {
    if CAPABILITIES.contains(&value) {
        return;
    }
    let lower = value.to_ascii_lowercase();
    let stripped = lower.strip_prefix("cap_").unwrap_or(&lower);
    let hint = if CAPABILITIES.contains(&stripped) {
        format!("write {stripped}: lower case without the CAP_ prefix")
    } else {
        match did_you_mean(stripped, CAPABILITIES.iter().copied()) {
            Some(c) => format!("did you mean {c}?"),
            None => "see capabilities(7) for the list".to_owned(),
        }
    };
    problems.error_hint(path.clone(), format!("{value:?} is not a Linux capability"), hint);
}

/// Warns when a path of `deniedPaths` is also written, character for character, in an allow
/// list: the deny rule wins, so the allow rule has no effect. Overlaps through globs are not
/// detected here.
fn check_denied_overlaps(
    fs_path: &FieldPath,
    abs: &AppArmorAbstract,
    fs: &AppArmorFilesystem,
    problems: &mut Problems,
) {
    let Some(denied) = &fs.denied_paths else { return };
    let exec = abs.executable.as_ref();
    let allow_lists: [(&str, Option<&Vec<String>>); 5] = [
        (
            "executable.allowedExecutables",
            exec.and_then(|e| e.allowed_executables.as_ref()),
        ),
        (
            "executable.allowedLibraries",
            exec.and_then(|e| e.allowed_libraries.as_ref()),
        ),
        ("filesystem.readOnlyPaths", fs.read_only_paths.as_ref()),
        ("filesystem.writeOnlyPaths", fs.write_only_paths.as_ref()),
        ("filesystem.readWritePaths", fs.read_write_paths.as_ref()),
    ];
    for (i, d) in denied.iter().enumerate() {
        for (list, values) in &allow_lists {
            if let Some(j) = values.and_then(|v| v.iter().position(|a| a == d)) {
                problems.warning_hint(
                    fs_path.field("deniedPaths").index(i),
                    format!("{d:?} is also allowed by spec.abstract.{list}[{j}]"),
                    "deny rules win over allow rules, so the workload cannot use this path; remove one of the two",
                );
            }
        }
    }
}

impl AppArmorProfile {
    /// Every problem with this profile.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, false, &mut problems);
        let spec = &self.spec;
        let root = FieldPath::root().field("spec");
        if spec.disabled.is_some() {
            problems.warning_hint(
                root.field("disabled"),
                "deprecated field",
                "use state: Enabled|Disabled",
            );
        }
        if spec.complain_mode.is_some() {
            problems.warning_hint(
                root.field("complainMode"),
                "deprecated field",
                "use mode: Enforce|Complain",
            );
        }
        match (&spec.policy, &spec.abstract_) {
            (Some(_), Some(_)) => problems.error_hint(
                root.field("policy"),
                "both policy and abstract are set",
                "describe the profile either as raw text in policy or abstractly, not both",
            ),
            (None, None) => problems.warning_hint(
                root.field("abstract"),
                "neither policy nor abstract is set, so the profile allows only what abstractions/base allows",
                "describe what the workload needs under abstract",
            ),
            (Some(text), None) => {
                if text.trim().is_empty() {
                    problems.error(root.field("policy"), "policy is empty");
                }
                if text.contains('\0') {
                    problems.error(root.field("policy"), "contains a NUL byte");
                }
            }
            (None, Some(_)) => {}
        }
        let Some(abs) = &spec.abstract_ else { return problems };
        let ap = root.field("abstract");

        let mut lists: Vec<(FieldPath, &Vec<String>)> = Vec::new();
        if let Some(e) = &abs.executable {
            let p = ap.field("executable");
            if let Some(v) = &e.allowed_executables {
                lists.push((p.field("allowedExecutables"), v));
            }
            if let Some(v) = &e.allowed_libraries {
                lists.push((p.field("allowedLibraries"), v));
            }
        }
        if let Some(f) = &abs.filesystem {
            let p = ap.field("filesystem");
            if let Some(v) = &f.read_only_paths {
                lists.push((p.field("readOnlyPaths"), v));
            }
            if let Some(v) = &f.write_only_paths {
                lists.push((p.field("writeOnlyPaths"), v));
            }
            if let Some(v) = &f.read_write_paths {
                lists.push((p.field("readWritePaths"), v));
            }
            if let Some(v) = &f.denied_paths {
                lists.push((p.field("deniedPaths"), v));
            }
        }
        for (p, values) in &lists {
            for (i, v) in values.iter().enumerate() {
                check_profile_path(&p.index(i), v, &mut problems);
            }
            check_duplicates(p, values.iter().map(String::as_str), Severity::Warning, &mut problems);
        }
        if let Some(f) = &abs.filesystem {
            check_denied_overlaps(&ap.field("filesystem"), abs, f, &mut problems);
        }
        if let Some(c) = abs.capability.as_ref().and_then(|c| c.allowed_capabilities.as_ref()) {
            let p = ap.field("capability").field("allowedCapabilities");
            for (i, v) in c.iter().enumerate() {
                check_capability(&p.index(i), v, &mut problems);
            }
            check_duplicates(&p, c.iter().map(String::as_str), Severity::Warning, &mut problems);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        let mut p = Problems::new();
        let path = FieldPath::root().field("c");
        check_capability(&path, "net_bind_service", &mut p);
        assert!(p.is_empty());
        check_capability(&path, "CAP_NET_ADMIN", &mut p);
        check_capability(&path, "net_bind_servce", &mut p);
        let hints: Vec<_> = p.iter().map(|p| p.hint.clone().unwrap_or_default()).collect();
        assert_eq!(hints[0], "write net_admin: lower case without the CAP_ prefix");
        assert_eq!(hints[1], "did you mean net_bind_service?");
        assert_eq!(CAPABILITIES.len(), 41);
    }

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in ["relative/path", "/etc/x\n/etc/shadow rw,", "/a\"b", "", "/a\0"] {
            let mut p = Problems::new();
            check_profile_path(&FieldPath::root().field("p"), bad, &mut p);
            assert!(p.has_errors(), "{bad:?} accepted");
        }
        let mut p = Problems::new();
        check_profile_path(&FieldPath::root().field("p"), "@{PROC}/sys/kernel/**", &mut p);
        assert!(p.is_empty());
    }

    #[test]
    fn denied_paths_are_checked_and_overlaps_warned() {
        let yaml = r#"
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: AppArmorProfile
metadata:
  name: demo
spec:
  abstract:
    filesystem:
      readOnlyPaths: [/etc/shadow]
      deniedPaths: [/etc/shadow, "relative", /etc/shadow]
"#;
        let profile: AppArmorProfile = serde_norway::from_str(yaml).expect("parse");
        let denied = profile.spec.abstract_.as_ref().and_then(|a| a.filesystem.as_ref());
        assert_eq!(denied.and_then(|f| f.denied_paths.as_ref()).map(Vec::len), Some(3));
        let problems = profile.validate();
        let found: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("spec.abstract.filesystem.deniedPaths[1]: ")
                    && p.contains("not an absolute path")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("warning: spec.abstract.filesystem.deniedPaths[0]: ")
                    && p.contains("also allowed by spec.abstract.filesystem.readOnlyPaths[0]")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("deniedPaths") && p.contains("duplicate")),
            "{found:#?}"
        );
        let back = serde_norway::to_string(&profile).expect("serialize");
        assert!(back.contains("deniedPaths:"), "{back}");
        let again: AppArmorProfile = serde_norway::from_str(&back).expect("reparse");
        assert_eq!(again, profile);
    }
}
