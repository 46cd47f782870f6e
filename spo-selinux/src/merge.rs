//! Union merge of SelinuxProfiles (what `spoc merge` uses): each input with the SelinuxProfiles
//! it inherits written in ([`flatten`]), then the union of what they allow
//! ([`FlatProfile::absorb`]).
//!
//! The result inherits only System templates (those any input ends up inheriting, in first-seen
//! order), allows every (label, class, permission) any input allows, and is Permissive when any
//! input or anything it inherits is. Metadata and state are the caller's.

use std::collections::{BTreeMap, BTreeSet};

use spo_model::SpecState;
use spo_model::selinux::{PolicyRef, PolicyRefKind, SelinuxMode, SelinuxProfile, SelinuxProfileSpec};

use crate::error::SelinuxError;
use crate::render::{ProfileFault, ProfileLookup, next_link};

/// A SelinuxProfile with its inherited SelinuxProfiles written in: the System templates it
/// ends up inheriting (in order), its allow rules, and whether anything on the way is
/// permissive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlatProfile {
    /// The System templates (`container`, `net_container`, ...) inherited on the way, in order.
    pub templates: Vec<String>,
    /// label -> class -> permissions.
    pub allow: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Whether the profile or anything it inherits is permissive.
    pub permissive: bool,
}

impl FlatProfile {
    /// Adds what `other` allows.
    pub fn absorb(&mut self, other: &FlatProfile) {
        for t in &other.templates {
            if !self.templates.contains(t) {
                self.templates.push(t.clone());
            }
        }
        for (label, classes) in &other.allow {
            let mine = self.allow.entry(label.clone()).or_default();
            for (class, perms) in classes {
                mine.entry(class.clone()).or_default().extend(perms.iter().cloned());
            }
        }
        self.permissive |= other.permissive;
    }

    /// One line per thing the profile grants (`allow bin_t file read`, `inherit System
    /// container`, `mode Permissive`): what `spoc merge --check` compares.
    pub fn facts(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.templates.iter().map(|t| format!("inherit System {t}")).collect();
        for (label, classes) in &self.allow {
            for (class, perms) in classes {
                out.extend(perms.iter().map(|p| format!("allow {label} {class} {p}")));
            }
        }
        if self.permissive {
            out.insert("mode Permissive".to_owned());
        }
        out
    }

    /// The spec that grants exactly this, inheriting only System templates.
    pub fn into_spec(self, state: SpecState) -> SelinuxProfileSpec {
        let allow: BTreeMap<String, BTreeMap<String, Vec<String>>> = self
            .allow
            .into_iter()
            .map(|(label, classes)| {
                let classes = classes
                    .into_iter()
                    .map(|(class, perms)| (class, perms.into_iter().collect()))
                    .collect();
                (label, classes)
            })
            .collect();
        SelinuxProfileSpec {
            state,
            disabled: None,
            inherit: self
                .templates
                .into_iter()
                .map(|name| PolicyRef {
                    kind: PolicyRefKind::System,
                    name,
                })
                .collect(),
            mode: if self.permissive {
                SelinuxMode::Permissive
            } else {
                SelinuxMode::Enforcing
            },
            permissive: None,
            allow: (!allow.is_empty()).then_some(allow),
        }
    }
}

/// Writes the SelinuxProfiles `spec` inherits into it, looking them up in `lookup`. `chain`
/// holds the profiles on the way (the profile's own name first), for cycle and depth errors.
pub fn flatten(
    spec: &SelinuxProfileSpec,
    lookup: &dyn ProfileLookup,
    chain: &mut Vec<String>,
) -> Result<FlatProfile, String> {
    let mut flat = FlatProfile {
        permissive: spec.effective_mode() == SelinuxMode::Permissive,
        ..FlatProfile::default()
    };
    for r in &spec.inherit {
        match r.kind {
            PolicyRefKind::System => flat.absorb(&FlatProfile {
                templates: vec![r.name.clone()],
                ..FlatProfile::default()
            }),
            PolicyRefKind::SelinuxProfile => {
                let parent = next_link(lookup, chain, &r.name).map_err(|e| {
                    let (name, path) = (&r.name, &e.path);
                    e.message(|fault| match fault {
                        ProfileFault::LookupFailed(message) => {
                            format!("looking up inherited SelinuxProfile {name:?} (chain {path}): {message}")
                        }
                        ProfileFault::Missing => {
                            format!("inherited SelinuxProfile {name:?} (chain {path}) is not among the profiles given")
                        }
                        ProfileFault::NotInstalled => format!(
                            "inherited SelinuxProfile {name:?} (chain {path}) is disabled or partial, so it is not in the policy"
                        ),
                    })
                })?;
                chain.push(r.name.clone());
                let inherited = flatten(&parent.spec, lookup, chain)?;
                chain.pop();
                flat.absorb(&inherited);
            }
        }
    }
    let own = FlatProfile {
        allow: spec
            .allow
            .iter()
            .flatten()
            .map(|(label, classes)| {
                let classes = classes
                    .iter()
                    .map(|(class, perms)| (class.clone(), perms.iter().cloned().collect()))
                    .collect();
                (label.clone(), classes)
            })
            .collect(),
        ..FlatProfile::default()
    };
    flat.absorb(&own);
    Ok(flat)
}

/// The union of `profiles` (each flattened through `lookup`), named `name`, with the first
/// profile's state.
pub fn merge_profiles(
    name: &str,
    profiles: &[SelinuxProfile],
    lookup: &dyn ProfileLookup,
) -> Result<SelinuxProfile, SelinuxError> {
    let mut merged = FlatProfile::default();
    for p in profiles {
        merged.absorb(&flatten_profile(p, lookup)?);
    }
    let state = profiles.first().map(|p| p.spec.effective_state()).unwrap_or_default();
    Ok(SelinuxProfile::new(name, merged.into_spec(state)))
}

/// [`flatten`] for a whole profile, its errors naming it and `spec.inherit`.
pub fn flatten_profile(profile: &SelinuxProfile, lookup: &dyn ProfileLookup) -> Result<FlatProfile, SelinuxError> {
    let name = profile.metadata.name.clone().unwrap_or_default();
    flatten(&profile.spec, lookup, &mut vec![name.clone()])
        .map_err(|message| SelinuxError::Merge { profile: name, message })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::render::MemoryLookup;

    fn profile(yaml_spec: &str, name: &str) -> SelinuxProfile {
        serde_norway::from_str(&format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {{name: {name}}}\nspec:\n{yaml_spec}"
        ))
        .expect("parse")
    }

    fn lookup(profiles: &[SelinuxProfile]) -> MemoryLookup {
        let mut l = MemoryLookup::new();
        for p in profiles {
            l.insert(p.clone());
        }
        l
    }

    #[test]
    fn inherited_profiles_are_written_in_with_their_templates_and_mode() {
        let base = profile(
            "  mode: Permissive\n  inherit: [{name: container}]\n  allow:\n    '@self': {process: [signal]}\n",
            "base",
        );
        let child = profile(
            "  inherit: [{kind: SelinuxProfile, name: base}, {name: net_container}]\n  allow:\n    bin_t: {file: [read]}\n",
            "child",
        );
        let profiles = lookup(&[base, child.clone()]);
        let flat = flatten(&child.spec, &profiles, &mut vec!["child".into()]).expect("flatten");
        assert_eq!(flat.templates, ["container", "net_container"]);
        assert!(flat.permissive);
        assert_eq!(
            flat.facts().into_iter().collect::<Vec<_>>(),
            [
                "allow @self process signal",
                "allow bin_t file read",
                "inherit System container",
                "inherit System net_container",
                "mode Permissive",
            ]
        );
    }

    #[test]
    fn cycles_missing_and_disabled_parents_are_refused() {
        let a = profile("  inherit: [{kind: SelinuxProfile, name: b}]\n", "a");
        let b = profile("  inherit: [{kind: SelinuxProfile, name: a}]\n", "b");
        let profiles = lookup(&[a.clone(), b]);
        let e = flatten(&a.spec, &profiles, &mut vec!["a".into()]).expect_err("cycle");
        assert_eq!(e, "inherit cycle: a -> b -> a");

        let orphan = profile("  inherit: [{kind: SelinuxProfile, name: gone}]\n", "orphan");
        let e = flatten(&orphan.spec, &MemoryLookup::new(), &mut vec!["orphan".into()]).expect_err("missing");
        assert!(
            e.contains("\"gone\" (chain orphan -> gone) is not among the profiles given"),
            "{e}"
        );

        let off = profile("  state: Disabled\n", "off");
        let user = profile("  inherit: [{kind: SelinuxProfile, name: off}]\n", "user");
        let e = flatten(&user.spec, &lookup(&[off]), &mut vec!["user".into()]).expect_err("disabled");
        assert!(e.contains("is disabled or partial"), "{e}");
    }

    /// A lookup whose store cannot be read.
    struct Broken;

    impl ProfileLookup for Broken {
        fn selinux_profile(&self, _: &str) -> Result<Option<SelinuxProfile>, String> {
            Err("the store is unreadable".into())
        }
    }

    #[test]
    fn a_failing_lookup_is_named_with_the_chain() {
        let user = profile("  inherit: [{kind: SelinuxProfile, name: base}]\n", "user");
        let e = flatten(&user.spec, &Broken, &mut vec!["user".into()]).expect_err("lookup fails");
        assert_eq!(
            e,
            "looking up inherited SelinuxProfile \"base\" (chain user -> base): the store is unreadable"
        );
    }

    #[test]
    fn merge_profiles_unions_and_names_the_result() {
        let a = profile(
            "  inherit: [{name: container}]\n  allow:\n    bin_t: {file: [read]}\n",
            "a",
        );
        let b = profile("  mode: Permissive\n  allow:\n    bin_t: {file: [write]}\n", "b");
        let merged = merge_profiles("ab", &[a, b], &MemoryLookup::new()).expect("merge");
        assert_eq!(merged.metadata.name.as_deref(), Some("ab"));
        let flat = flatten_profile(&merged, &MemoryLookup::new()).expect("flatten");
        assert_eq!(
            flat.facts().into_iter().collect::<Vec<_>>(),
            [
                "allow bin_t file read",
                "allow bin_t file write",
                "inherit System container",
                "mode Permissive",
            ]
        );
        let orphan = profile("  inherit: [{kind: SelinuxProfile, name: gone}]\n", "orphan");
        let e = merge_profiles("x", &[orphan], &MemoryLookup::new()).expect_err("missing parent");
        assert!(e.to_string().contains("SelinuxProfile orphan: spec.inherit"), "{e}");
    }

    fn arb_flat() -> impl Strategy<Value = FlatProfile> {
        let name = "[a-c]_t";
        let allow = prop::collection::btree_map(
            name,
            prop::collection::btree_map("file|dir", prop::collection::btree_set("read|write|open", 0..3), 0..3),
            0..4,
        );
        (
            prop::collection::vec("container|net_container", 0..3),
            allow,
            any::<bool>(),
        )
            .prop_map(|(templates, allow, permissive)| {
                let mut flat = FlatProfile {
                    allow,
                    permissive,
                    ..FlatProfile::default()
                };
                for t in templates {
                    if !flat.templates.contains(&t) {
                        flat.templates.push(t);
                    }
                }
                flat
            })
    }

    proptest! {
        /// The union grants exactly what the inputs grant together, whatever the order.
        #[test]
        fn union_is_the_union_of_the_facts(a in arb_flat(), b in arb_flat()) {
            let mut ab = a.clone();
            ab.absorb(&b);
            let mut ba = b.clone();
            ba.absorb(&a);
            let both: BTreeSet<String> = a.facts().union(&b.facts()).cloned().collect();
            // Empty permission lists grant nothing and leave no fact.
            prop_assert_eq!(ab.facts(), both.clone());
            prop_assert_eq!(ba.facts(), both);
            let mut again = ab.clone();
            again.absorb(&b);
            prop_assert_eq!(again, ab);
        }

        /// What the union writes out reads back as the same rules.
        #[test]
        fn merged_spec_round_trips(a in arb_flat()) {
            let spec = a.clone().into_spec(SpecState::Enabled);
            let flat = flatten(&spec, &MemoryLookup::new(), &mut vec!["x".into()]).expect("flatten");
            prop_assert_eq!(flat.facts(), a.facts());
        }
    }
}
