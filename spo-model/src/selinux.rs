//! `SelinuxProfile` (a policy written as allow rules) and `RawSelinuxProfile` (a CIL body).

use std::collections::BTreeMap;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, ProfileState, SpecState};
use crate::validate::{FieldPath, Problems, Severity, check_duplicates, check_metadata, is_dns_label, suggestion};

/// The label that stands for the profile's own process type in `spec.allow`.
pub const SELF_LABEL: &str = "@self";

/// The largest `RawSelinuxProfile.spec.policy`, in characters (upstream's limit).
pub const MAX_RAW_POLICY_CHARS: usize = 500_000;

/// The desired state of a SELinux profile.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "SelinuxProfile",
    plural = "selinuxprofiles",
    status = "SelinuxProfileStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "SelinuxProfile is a SELinux policy for containers, written as allow rules over inherited templates.",
    printcolumn = r#"{"name":"Usage","type":"string","jsonPath":".status.usage"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SelinuxProfileSpec {
    /// Whether the profile is installed on nodes.
    #[serde(default)]
    pub state: SpecState,
    /// Deprecated spelling from manifests written before v1: `true` means `state: Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Templates and profiles whose rules this profile builds on.
    #[serde(default = "default_inherit")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub inherit: Vec<PolicyRef>,
    /// `Enforcing` denies what is not allowed; `Permissive` only logs it.
    #[serde(default)]
    pub mode: SelinuxMode,
    /// Deprecated spelling from manifests written before v1: `true` means `mode: Permissive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissive: Option<bool>,
    /// Allow rules: target type label -> object class -> permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
}

fn default_inherit() -> Vec<PolicyRef> {
    vec![PolicyRef {
        kind: PolicyRefKind::System,
        name: "container".to_owned(),
    }]
}

/// A policy this profile inherits from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// `System` for a template on the node, `SelinuxProfile` for another profile.
    #[serde(default)]
    pub kind: PolicyRefKind,
    /// The template or profile name.
    #[schemars(length(min = 1))]
    pub name: String,
}

wire_enum!(
    /// What a [`PolicyRef`] points at.
    PolicyRefKind {
        /// A template shipped with the node's policy (such as `container`, `net_container`).
        System = "System",
        /// Another SelinuxProfile.
        SelinuxProfile = "SelinuxProfile",
    }
);

#[allow(clippy::derivable_impls)] // the variants are declared by wire_enum!
impl Default for PolicyRefKind {
    fn default() -> Self {
        PolicyRefKind::System
    }
}

wire_enum!(
    /// SELinux profile mode.
    SelinuxMode {
        /// Deny what is not allowed.
        Enforcing = "Enforcing",
        /// Log what would be denied, deny nothing.
        Permissive = "Permissive",
    }
);

#[allow(clippy::derivable_impls)] // the variants are declared by wire_enum!
impl Default for SelinuxMode {
    fn default() -> Self {
        SelinuxMode::Enforcing
    }
}

/// The status of a SelinuxProfile or RawSelinuxProfile.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelinuxProfileStatus {
    /// The aggregated state over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProfileState>,
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The SELinux type pods use: `<name>.process` (`<name>_raw.process` for a RawSelinuxProfile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    /// Pods using this profile, as `namespace/pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub active_workloads: Option<Vec<String>>,
}

/// The desired state of a raw SELinux profile.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "RawSelinuxProfile",
    plural = "rawselinuxprofiles",
    status = "SelinuxProfileStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "RawSelinuxProfile is a SELinux policy written directly in CIL, wrapped in its own block.",
    printcolumn = r#"{"name":"Usage","type":"string","jsonPath":".status.usage"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RawSelinuxProfileSpec {
    /// Whether the profile is installed on nodes.
    #[serde(default)]
    pub state: SpecState,
    /// Deprecated spelling from manifests written before v1: `true` means `state: Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// The CIL body, placed inside `(block <name> ...)`.
    #[schemars(length(min = 1, max = 500000))]
    pub policy: String,
}

/// Whether `s` is a SELinux identifier usable as a type, class or permission in CIL.
pub fn is_selinux_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Checks that the name of a SELinux kind can name a CIL block (no dots: CIL uses `.` for
/// namespaces, so `a.b` would place the profile inside a block `a`).
fn check_selinux_object_name(name: Option<&str>, problems: &mut Problems) {
    if let Some(n) = name
        && n.contains('.')
    {
        problems.error_hint(
            FieldPath::root().field("metadata").field("name"),
            format!("{n:?} contains '.', which CIL reads as a namespace separator"),
            "use a name of lower-case letters, digits and '-'",
        );
    }
}

fn deprecated_disabled(disabled: Option<bool>, problems: &mut Problems) {
    if disabled.is_some() {
        problems.warning_hint(
            FieldPath::root().field("spec").field("disabled"),
            "deprecated field",
            "use state: Enabled|Disabled",
        );
    }
}

impl SelinuxProfileSpec {
    /// The state after folding in the deprecated `disabled` flag.
    pub fn effective_state(&self) -> SpecState {
        if self.disabled == Some(true) {
            SpecState::Disabled
        } else {
            self.state
        }
    }

    /// The mode after folding in the deprecated `permissive` flag.
    pub fn effective_mode(&self) -> SelinuxMode {
        if self.permissive == Some(true) {
            SelinuxMode::Permissive
        } else {
            self.mode
        }
    }
}

impl SelinuxProfile {
    /// Every problem with this profile.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, false, &mut problems);
        check_selinux_object_name(self.metadata.name.as_deref(), &mut problems);
        let spec = &self.spec;
        let root = FieldPath::root().field("spec");
        deprecated_disabled(spec.disabled, &mut problems);
        if spec.permissive.is_some() {
            problems.warning_hint(
                root.field("permissive"),
                "deprecated field",
                "use mode: Enforcing|Permissive",
            );
        }

        if spec.inherit.is_empty() {
            problems.warning_hint(
                root.field("inherit"),
                "inherits nothing, so the process type lacks the basic access a container needs",
                "inherit the System template container (the default) or another profile",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in spec.inherit.iter().enumerate() {
            let p = root.field("inherit").index(i);
            let ok = match r.kind {
                PolicyRefKind::System => is_selinux_identifier(&r.name),
                PolicyRefKind::SelinuxProfile => is_dns_label(&r.name),
            };
            if !ok {
                problems.error_hint(
                    p.field("name"),
                    format!("{:?} is not a valid {} name", r.name, r.kind),
                    match r.kind {
                        PolicyRefKind::System => "template names are letters, digits and '_', such as container",
                        PolicyRefKind::SelinuxProfile => "profile names are lower-case letters, digits and '-'",
                    },
                );
            }
            if r.kind == PolicyRefKind::SelinuxProfile && self.metadata.name.as_deref() == Some(r.name.as_str()) {
                problems.error(p.field("name"), "a profile cannot inherit from itself");
            }
            if !seen.insert((r.kind, r.name.as_str())) {
                problems.warning_hint(
                    p,
                    format!("{} {} is inherited twice", r.kind, r.name),
                    "remove the repeated entry",
                );
            }
        }

        for (label, classes) in spec.allow.iter().flatten() {
            let lp = root.field("allow").key(label);
            if label != SELF_LABEL && !is_selinux_identifier(label) {
                let hint = if label.starts_with('@') {
                    format!("the only special label is {SELF_LABEL}")
                } else {
                    "a type label is letters, digits and '_', such as container_file_t".to_owned()
                };
                problems.error_hint(lp.clone(), format!("{label:?} is not a SELinux type"), hint);
            }
            if classes.is_empty() {
                problems.warning_hint(
                    lp.clone(),
                    "no object classes, so nothing is allowed",
                    "add classes or remove the label",
                );
            }
            for (class, perms) in classes {
                let cp = lp.key(class);
                if !is_selinux_identifier(class) {
                    problems.error_hint(
                        cp.clone(),
                        format!("{class:?} is not a SELinux object class"),
                        "classes are lower-case identifiers such as file, dir, tcp_socket",
                    );
                }
                if perms.is_empty() {
                    problems.error_hint(
                        cp.clone(),
                        "lists no permissions",
                        "add permissions such as read, open, or remove the class",
                    );
                }
                for (k, perm) in perms.iter().enumerate() {
                    if !is_selinux_identifier(perm) {
                        problems.error_hint(
                            cp.index(k),
                            format!("{perm:?} is not a SELinux permission"),
                            "permissions are lower-case identifiers such as read, write, name_bind",
                        );
                    }
                }
                check_duplicates(&cp, perms.iter().map(String::as_str), Severity::Warning, &mut problems);
            }
        }
        problems
    }
}

impl RawSelinuxProfileSpec {
    /// The state after folding in the deprecated `disabled` flag.
    pub fn effective_state(&self) -> SpecState {
        if self.disabled == Some(true) {
            SpecState::Disabled
        } else {
            self.state
        }
    }
}

impl RawSelinuxProfile {
    /// Every problem with this profile that can be seen without a CIL compiler: size and
    /// parenthesis balance. Statements allowed inside the block are the SELinux backend's check.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, false, &mut problems);
        check_selinux_object_name(self.metadata.name.as_deref(), &mut problems);
        deprecated_disabled(self.spec.disabled, &mut problems);
        let p = FieldPath::root().field("spec").field("policy");
        let policy = &self.spec.policy;
        let chars = policy.chars().count();
        if policy.trim().is_empty() {
            problems.error_hint(
                p.clone(),
                "policy is empty",
                "write CIL statements such as (allow process self (file (read)))",
            );
        } else if chars > MAX_RAW_POLICY_CHARS {
            problems.error(
                p.clone(),
                format!("{chars} characters, at most {MAX_RAW_POLICY_CHARS} are allowed"),
            );
        }
        if let Some((line, msg)) = check_cil_balance(policy) {
            problems.error_hint(
                p,
                format!("line {line}: {msg}"),
                "the policy must be balanced so it cannot close its enclosing block",
            );
        }
        problems
    }
}

/// Finds the first parenthesis imbalance in CIL text, skipping strings and `;` comments.
/// Returns the 1-based line and a description.
pub fn check_cil_balance(text: &str) -> Option<(usize, String)> {
    let mut depth: usize = 0;
    let mut line = 1;
    let mut open_lines: Vec<usize> = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            ';' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' => {
                let start = line;
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                    }
                    if c == '"' {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Some((start, "string is never closed".to_owned()));
                }
            }
            '(' => {
                depth += 1;
                open_lines.push(line);
            }
            ')' => {
                if depth == 0 {
                    return Some((line, "')' closes more than was opened".to_owned()));
                }
                depth -= 1;
                open_lines.pop();
            }
            _ => {}
        }
    }
    open_lines
        .last()
        .map(|&l| (l, format!("'(' is never closed ({depth} unclosed)")))
}

/// Parses a list of SELinux identifiers from an SPOD option, reporting bad ones.
pub(crate) fn check_identifier_list(path: &FieldPath, values: &[String], what: &str, problems: &mut Problems) {
    for (i, v) in values.iter().enumerate() {
        if !is_selinux_identifier(v) {
            problems.error(path.index(i), format!("{v:?} is not a SELinux {what}"));
        }
    }
}

/// The suggestion for an unknown [`PolicyRefKind`].
pub fn policy_ref_kind_hint(input: &str) -> String {
    suggestion(input, PolicyRefKind::names())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_upstream() {
        let sp: SelinuxProfile = serde_norway::from_str(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {name: nginx}\nspec:\n  allow:\n    '@self':\n      tcp_socket: [listen]\n",
        )
        .expect("parse");
        assert_eq!(
            sp.spec.inherit,
            vec![PolicyRef {
                kind: PolicyRefKind::System,
                name: "container".into()
            }]
        );
        assert_eq!(sp.spec.mode, SelinuxMode::Enforcing);
        assert!(sp.validate().is_empty(), "{}", sp.validate());
    }

    #[test]
    fn bad_labels_classes_and_permissions() {
        let sp: SelinuxProfile = serde_norway::from_str(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {name: a.b}\nspec:\n  inherit: [{kind: SelinuxProfile, name: a.b}]\n  allow:\n    '@selff': {file: [read]}\n    var_t:\n      'file)': ['read))']\n      dir: []\n",
        )
        .expect("parse");
        let p = sp.validate();
        let got: Vec<&str> = p.errors().map(|p| p.path.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "metadata.name",
                "spec.inherit[0].name",
                "spec.inherit[0].name",
                "spec.allow[@selff]",
                "spec.allow[var_t][dir]",
                "spec.allow[var_t][file)]",
                "spec.allow[var_t][file)][0]",
            ]
        );
    }

    #[test]
    fn cil_balance() {
        assert_eq!(check_cil_balance("(allow process self (file (read)))"), None);
        assert_eq!(check_cil_balance("; comment with )\n(allow a b (c (d)))"), None);
        assert_eq!(check_cil_balance("(typeattributeset x \")\")"), None);
        assert_eq!(check_cil_balance("(a))\n(b)").map(|x| x.0), Some(1));
        assert_eq!(
            check_cil_balance("(a)\n(b\n"),
            Some((2, "'(' is never closed (1 unclosed)".into()))
        );
        assert_eq!(check_cil_balance("\"abc").map(|x| x.0), Some(1));
    }
}
