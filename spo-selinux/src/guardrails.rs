//! Guardrails: which System templates a SelinuxProfile may inherit and which types, classes
//! and permissions it may allow, from the built-in lists adjusted by the SPOD's
//! `selinux.options`.

use std::collections::{BTreeMap, BTreeSet};

use spo_model::selinux::{PolicyRefKind, SELF_LABEL, SelinuxProfileSpec};
use spo_model::spod::SelinuxOptions;
use spo_model::validate::{FieldPath, Problems, suggestion};

use crate::templates::template_names;

/// Types no profile may allow unless the SPOD exempts them (upstream's list).
pub const BUILTIN_DENIED_TYPES: &[&str] = &["kernel_t", "kmem_t", "security_t", "shadow_t"];

/// Object classes no profile may allow unless the SPOD exempts them (upstream's list).
pub const BUILTIN_DENIED_CLASSES: &[&str] = &["capability", "capability2", "security", "system"];

/// Permissions no profile may allow unless the SPOD exempts them (upstream's list).
pub const BUILTIN_DENIED_PERMISSIONS: &[&str] = &[
    "load_policy",
    "mac_admin",
    "mounton",
    "relabelto",
    "relabelfrom",
    "setbool",
    "setenforce",
    "setsecparam",
];

/// The effective guardrails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guardrails {
    /// System templates a profile may inherit.
    pub allowed_system_profiles: BTreeSet<String>,
    /// Types a profile may not allow.
    pub denied_types: BTreeSet<String>,
    /// Classes a profile may not allow.
    pub denied_classes: BTreeSet<String>,
    /// Permissions a profile may not allow.
    pub denied_permissions: BTreeSet<String>,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails::from_options(None)
    }
}

fn adjusted(builtin: &[&str], denied: &Option<Vec<String>>, allowed: &Option<Vec<String>>) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = builtin.iter().map(|s| (*s).to_owned()).collect();
    set.extend(denied.iter().flatten().cloned());
    for a in allowed.iter().flatten() {
        set.remove(a);
    }
    set
}

impl Guardrails {
    /// The built-in lists, with `options` (the SPOD's `selinux.options`) applied: `denied*` add
    /// to them, `allowed*` exempt from them, and `allowedSystemProfiles`, when set, replaces the
    /// default allowlist of System templates (the shipped ones).
    pub fn from_options(options: Option<&SelinuxOptions>) -> Self {
        let none = SelinuxOptions::default();
        let o = options.unwrap_or(&none);
        Guardrails {
            allowed_system_profiles: match &o.allowed_system_profiles {
                Some(list) => list.iter().cloned().collect(),
                None => template_names().map(str::to_owned).collect(),
            },
            denied_types: adjusted(BUILTIN_DENIED_TYPES, &o.denied_types, &o.allowed_types),
            denied_classes: adjusted(BUILTIN_DENIED_CLASSES, &o.denied_classes, &o.allowed_classes),
            denied_permissions: adjusted(
                BUILTIN_DENIED_PERMISSIONS,
                &o.denied_permissions,
                &o.allowed_permissions,
            ),
        }
    }

    /// Adds a problem for every inherited System template not on the allowlist and every denied
    /// type, class or permission in `spec.allow`.
    pub fn check(&self, spec: &SelinuxProfileSpec, problems: &mut Problems) {
        let root = FieldPath::root().field("spec");
        for (i, r) in spec.inherit.iter().enumerate() {
            if r.kind == PolicyRefKind::System && !self.allowed_system_profiles.contains(&r.name) {
                problems.error_hint(
                    root.field("inherit").index(i).field("name"),
                    format!("System template {:?} is not allowed on this cluster", r.name),
                    format!(
                        "{} (the SPOD's selinux.options.allowedSystemProfiles lists the allowed ones)",
                        suggestion(&r.name, self.allowed_system_profiles.iter().map(String::as_str))
                    ),
                );
            }
        }
        const ADMIN: &str = "an administrator can exempt it in the SPOD's selinux.options";
        for (label, classes) in spec.allow.iter().flatten() {
            let lp = root.field("allow").key(label);
            if label != SELF_LABEL && self.denied_types.contains(label) {
                problems.error_hint(
                    lp.clone(),
                    format!("type {label} may not be allowed (denied type)"),
                    format!("{ADMIN}.allowedTypes"),
                );
            }
            for (class, perms) in classes {
                let cp = lp.key(class);
                if self.denied_classes.contains(class) {
                    problems.error_hint(
                        cp.clone(),
                        format!("object class {class} may not be allowed (denied class)"),
                        format!("{ADMIN}.allowedClasses"),
                    );
                }
                for (k, perm) in perms.iter().enumerate() {
                    if self.denied_permissions.contains(perm) {
                        problems.error_hint(
                            cp.index(k),
                            format!("permission {perm} may not be allowed (denied permission)"),
                            format!("{ADMIN}.allowedPermissions"),
                        );
                    }
                }
            }
        }
    }
}

impl Guardrails {
    /// Adds a problem for every type attribute in `spec.allow` that holds a denied type:
    /// allowing the attribute allows its types, so `file_type` would grant what `shadow_t` may
    /// not. `members` are the policy's attributes with their types
    /// ([`crate::validate::Secilc::attribute_members`]); a label that is not among them is a
    /// type, which [`Guardrails::check`] judges.
    pub fn check_attributes(
        &self,
        spec: &SelinuxProfileSpec,
        members: &BTreeMap<String, BTreeSet<String>>,
        problems: &mut Problems,
    ) {
        let root = FieldPath::root().field("spec").field("allow");
        for label in spec.allow.iter().flatten().map(|(label, _)| label) {
            let Some(types) = members.get(label) else { continue };
            let denied: Vec<&str> = types
                .iter()
                .filter(|t| self.denied_types.contains(*t))
                .map(String::as_str)
                .collect();
            if !denied.is_empty() {
                problems.error_hint(
                    root.key(label),
                    format!(
                        "type attribute {label} holds denied types ({}), so allowing it allows them",
                        denied.join(", ")
                    ),
                    "allow the specific types the workload needs instead of the attribute",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::selinux::PolicyRef;

    fn spec(allow: &[(&str, &str, &[&str])], inherit: &[&str]) -> SelinuxProfileSpec {
        let mut map: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (t, c, p) in allow {
            map.entry((*t).into())
                .or_default()
                .insert((*c).into(), p.iter().map(|s| (*s).to_owned()).collect());
        }
        SelinuxProfileSpec {
            state: Default::default(),
            disabled: None,
            inherit: inherit
                .iter()
                .map(|n| PolicyRef {
                    kind: PolicyRefKind::System,
                    name: (*n).into(),
                })
                .collect(),
            mode: Default::default(),
            permissive: None,
            allow: Some(map),
        }
    }

    fn paths(g: &Guardrails, s: &SelinuxProfileSpec) -> Vec<String> {
        let mut p = Problems::new();
        g.check(s, &mut p);
        p.errors().map(|p| p.path.as_str().to_owned()).collect()
    }

    #[test]
    fn attributes_holding_denied_types_are_refused() {
        let s = spec(
            &[
                ("file_type", "file", &["read"]),
                ("etc_files", "file", &["read"]),
                ("bin_t", "file", &["execute"]),
            ],
            &[],
        );
        let members: BTreeMap<String, BTreeSet<String>> = [
            ("file_type", &["etc_t", "shadow_t", "security_t"][..]),
            ("etc_files", &["etc_t"][..]),
        ]
        .into_iter()
        .map(|(a, ts)| (a.to_owned(), ts.iter().map(|t| (*t).to_owned()).collect()))
        .collect();
        let mut p = Problems::new();
        Guardrails::default().check_attributes(&s, &members, &mut p);
        let found: Vec<String> = p
            .errors()
            .map(|e| format!("{}: {}", e.path.as_str(), e.message))
            .collect();
        assert_eq!(
            found,
            [
                "spec.allow[file_type]: type attribute file_type holds denied types (security_t, shadow_t), so allowing it allows them"
            ]
        );
        // Exempted by the SPOD: nothing left to say.
        let exempt = Guardrails::from_options(Some(&SelinuxOptions {
            allowed_types: Some(vec!["shadow_t".into(), "security_t".into()]),
            ..SelinuxOptions::default()
        }));
        let mut p = Problems::new();
        exempt.check_attributes(&s, &members, &mut p);
        assert!(!p.has_errors());
    }

    #[test]
    fn builtin_lists_name_the_offending_field() {
        let s = spec(
            &[
                ("shadow_t", "file", &["read"]),
                ("@self", "capability", &["sys_admin"]),
                ("bin_t", "file", &["read", "relabelto"]),
            ],
            &["container", "home_container"],
        );
        assert_eq!(
            paths(&Guardrails::default(), &s),
            vec![
                "spec.inherit[1].name",
                "spec.allow[@self][capability]",
                "spec.allow[bin_t][file][1]",
                "spec.allow[shadow_t]",
            ]
        );
    }

    #[test]
    fn spod_options_adjust_the_lists() {
        let s = spec(
            &[("shadow_t", "file", &["read"]), ("bin_t", "file", &["execute"])],
            &["home_container"],
        );
        let g = Guardrails::from_options(Some(&SelinuxOptions {
            allowed_system_profiles: Some(vec!["home_container".into()]),
            allowed_types: Some(vec!["shadow_t".into()]),
            denied_permissions: Some(vec!["execute".into()]),
            ..Default::default()
        }));
        assert_eq!(paths(&g, &s), vec!["spec.allow[bin_t][file][0]"]);
        assert!(
            !g.allowed_system_profiles.contains("container"),
            "the SPOD list replaces the default"
        );
    }
}
