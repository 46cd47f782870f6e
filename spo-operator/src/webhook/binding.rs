//! The ProfileBinding decision (pure): which profile each container of a pod gets.
//!
//! A binding in the pod's namespace applies to every container (init, regular, and
//! ephemeral containers added later) whose image equals the binding's `image`, or to every
//! container when it is `"*"`, provided its `podSelector` (absent: every pod) matches the
//! pod's labels. What this module decides, where upstream leaves it open or lets a pod
//! escape (docs/decisions.md, "Binding webhook"):
//!
//! - **A binding is enforcement**: the profile is set on the container itself, replacing
//!   whatever the container or the pod asked for (a container asking for `Unconfined`
//!   under a `"*"` binding gets the profile; upstream put `"*"` profiles on the pod, which a
//!   container-level setting silently overrides). Each replacement is a warning the client
//!   sees.
//! - **Specificity**: for one container and one kind, a binding naming the image exactly
//!   wins over `"*"`. Two bindings of one tier naming different profiles is an ambiguous
//!   policy: the pod is refused with both names (never a silent pick).
//! - **A promised profile must be there**: when the bound profile does not exist or is not
//!   `Installed`, the pod is refused with the reason; controllers retry, so pods start once
//!   the profile is installed. Upstream admitted such pods unconfined.
//! - Bindings of different kinds compose: a container can get a seccomp, an SELinux and an
//!   AppArmor profile from three bindings.
//! - A binding whose `podSelector` cannot be read matches nothing and is reported as a
//!   warning (the apiserver does not check selectors in custom resources).
//!
//! Bound pods carry [`BINDINGS_ANNOTATION`], the sorted names of the bindings that
//! applied, which the manager reads to fill the bindings' `status.activeWorkloads`; the
//! webhook removes the annotation from pods no binding applies to, so a pod cannot claim
//! one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod, SecurityContext};
use kube::core::{Selector, SelectorExt as _};
use serde_json::{Map, Value, json};
use spo_model::binding::BindingProfileKind;

use super::review::pointer_segment;

/// The image value that selects every container.
pub const ANY_IMAGE: &str = "*";
/// Pod annotation listing the bindings that applied (comma-separated, sorted).
pub const BINDINGS_ANNOTATION: &str = "spo.x-k8s.io/profile-bindings";
/// The deprecated per-container AppArmor annotation prefix (kept in step with the field:
/// the apiserver refuses pods where the two disagree).
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// One binding, reduced to what the decision needs.
#[derive(Debug, Clone)]
pub struct BindingRule {
    /// The binding's name.
    pub name: String,
    /// The bound profile's kind.
    pub kind: BindingProfileKind,
    /// The bound profile's name.
    pub profile: String,
    /// The image matched, or [`ANY_IMAGE`].
    pub image: String,
    /// The pod selector: `Ok(None)` matches every pod; `Err` holds why it cannot be read.
    pub selector: Result<Option<Selector>, String>,
}

/// The bindings of one namespace, indexed by image.
#[derive(Debug, Default, Clone)]
pub struct NamespaceBindings {
    by_image: HashMap<String, Vec<Arc<BindingRule>>>,
    images: HashMap<String, String>,
}

impl NamespaceBindings {
    /// Adds or replaces the binding named `rule.name`.
    pub fn insert(&mut self, rule: BindingRule) {
        self.remove(&rule.name);
        self.images.insert(rule.name.clone(), rule.image.clone());
        self.by_image
            .entry(rule.image.clone())
            .or_default()
            .push(Arc::new(rule));
    }

    /// Removes the binding `name`.
    pub fn remove(&mut self, name: &str) {
        if let Some(image) = self.images.remove(name)
            && let Some(list) = self.by_image.get_mut(&image)
        {
            list.retain(|r| r.name != name);
            if list.is_empty() {
                self.by_image.remove(&image);
            }
        }
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    fn exact(&self, image: &str) -> &[Arc<BindingRule>] {
        if image == ANY_IMAGE {
            return &[];
        }
        self.by_image.get(image).map_or(&[], Vec::as_slice)
    }

    fn any(&self) -> &[Arc<BindingRule>] {
        self.by_image.get(ANY_IMAGE).map_or(&[], Vec::as_slice)
    }
}

/// Whether a bound profile can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// No such profile.
    Missing,
    /// It exists but is not Installed (its state, such as `Pending`).
    NotInstalled(String),
    /// Installed; the value pods write (`operator/x.json`, `x.process`, `x`).
    Ready(String),
}

/// Looks bound profiles up.
pub trait ProfileLookup {
    /// The readiness of profile `name` of `kind`.
    fn readiness(&self, kind: BindingProfileKind, name: &str) -> Readiness;
}

/// Which containers the decision is about.
#[derive(Debug, Clone)]
pub enum Scope {
    /// A pod being created: init, regular and ephemeral containers.
    Create,
    /// Ephemeral containers being added: only those not in this set of existing names.
    NewEphemeral(BTreeSet<String>),
}

/// A profile set on a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The binding.
    pub binding: String,
    /// The container.
    pub container: String,
    /// The kind.
    pub kind: BindingProfileKind,
    /// The value written.
    pub value: String,
}

/// The outcome for one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BindingOutcome {
    /// JSON Patch operations.
    pub patch: Vec<Value>,
    /// What was bound (also when the container already had it).
    pub bound: Vec<Bound>,
    /// Messages for the client.
    pub warnings: Vec<String>,
    /// Set when the pod must be refused.
    pub denied: Option<String>,
}

#[derive(Clone, Copy)]
enum Section {
    Init,
    Main,
    Ephemeral,
}

impl Section {
    fn field(self) -> &'static str {
        match self {
            Section::Init => "initContainers",
            Section::Main => "containers",
            Section::Ephemeral => "ephemeralContainers",
        }
    }
}

struct Slot<'a> {
    section: Section,
    index: usize,
    name: &'a str,
    image: &'a str,
    context: Option<&'a SecurityContext>,
}

fn slots<'a>(pod: &'a Pod, scope: &Scope) -> Vec<Slot<'a>> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else {
        return out;
    };
    let mut push = |section, index, c: &'a Container| {
        out.push(Slot {
            section,
            index,
            name: &c.name,
            image: c.image.as_deref().unwrap_or_default(),
            context: c.security_context.as_ref(),
        });
    };
    if matches!(scope, Scope::Create) {
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            push(Section::Init, i, c);
        }
        for (i, c) in spec.containers.iter().enumerate() {
            push(Section::Main, i, c);
        }
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let EphemeralContainer {
            name,
            image,
            security_context,
            ..
        } = c;
        if let Scope::NewEphemeral(old) = scope
            && old.contains(name)
        {
            continue;
        }
        out.push(Slot {
            section: Section::Ephemeral,
            index: i,
            name,
            image: image.as_deref().unwrap_or_default(),
            context: security_context.as_ref(),
        });
    }
    out
}

const KINDS: [BindingProfileKind; 3] = [
    BindingProfileKind::SeccompProfile,
    BindingProfileKind::SelinuxProfile,
    BindingProfileKind::AppArmorProfile,
];

/// Decides the profiles of `pod`'s containers under `bindings`.
pub fn decide(pod: &Pod, scope: &Scope, bindings: &NamespaceBindings, profiles: &dyn ProfileLookup) -> BindingOutcome {
    let mut out = BindingOutcome::default();
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    // Selector results per binding, computed once per pod.
    let mut matched: HashMap<*const BindingRule, bool> = HashMap::new();
    let mut selects = |rule: &Arc<BindingRule>, warnings: &mut Vec<String>| -> bool {
        *matched
            .entry(Arc::as_ptr(rule))
            .or_insert_with(|| match &rule.selector {
                Ok(None) => true,
                Ok(Some(sel)) => sel.matches(labels),
                Err(why) => {
                    warnings.push(format!(
                        "ProfileBinding {:?} is ignored: its podSelector cannot be read: {why}",
                        rule.name
                    ));
                    false
                }
            })
    };
    let pod_context = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut applied: BTreeSet<String> = BTreeSet::new();
    let mut apparmor_annotations: Vec<(String, String)> = Vec::new();

    for slot in slots(pod, scope) {
        let mut changes: Vec<(BindingProfileKind, String)> = Vec::new();
        for kind in KINDS {
            let pick = |rules: &[Arc<BindingRule>],
                        warnings: &mut Vec<String>,
                        selects: &mut dyn FnMut(&Arc<BindingRule>, &mut Vec<String>) -> bool| {
                rules
                    .iter()
                    .filter(|r| r.kind == kind)
                    .filter(|r| selects(r, warnings))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let mut tier = pick(bindings.exact(slot.image), &mut out.warnings, &mut selects);
            if tier.is_empty() {
                tier = pick(bindings.any(), &mut out.warnings, &mut selects);
            }
            if tier.is_empty() {
                continue;
            }
            tier.sort_by(|a, b| a.name.cmp(&b.name));
            let distinct: BTreeSet<&str> = tier.iter().map(|r| r.profile.as_str()).collect();
            if distinct.len() > 1 {
                let names: Vec<String> = tier.iter().map(|r| format!("{:?} ({})", r.name, r.profile)).collect();
                out.denied = Some(format!(
                    "container {:?}: the {kind} bindings {} name different profiles for image {:?}; \
                     one binding per image and kind is allowed, so the pod is refused until they agree",
                    slot.name,
                    names.join(", "),
                    slot.image
                ));
                return out;
            }
            let rule = &tier[0];
            let value = match profiles.readiness(kind, &rule.profile) {
                Readiness::Ready(v) => v,
                other => {
                    let why = match other {
                        Readiness::NotInstalled(state) => format!("is {state}"),
                        _ => "does not exist".to_owned(),
                    };
                    out.denied = Some(format!(
                        "container {:?}: ProfileBinding {:?} binds {kind} {:?}, which {why}; the pod is refused \
                         until the profile is Installed (a bound pod never runs without its profile)",
                        slot.name, rule.name, rule.profile
                    ));
                    return out;
                }
            };
            for r in &tier {
                applied.insert(r.name.clone());
                out.bound.push(Bound {
                    binding: r.name.clone(),
                    container: slot.name.to_owned(),
                    kind,
                    value: value.clone(),
                });
            }
            let current = effective(kind, slot.context, pod_context);
            let set_here = container_value(kind, slot.context);
            if set_here.as_deref() == Some(value.as_str()) {
                continue;
            }
            if let Some(cur) = current
                && cur != value
            {
                out.warnings.push(format!(
                    "container {:?}: {kind} {cur} replaced by {value} (ProfileBinding {:?})",
                    slot.name, rule.name
                ));
            }
            if kind == BindingProfileKind::AppArmorProfile {
                apparmor_annotations.push((slot.name.to_owned(), value.clone()));
            }
            changes.push((kind, value));
        }
        patch_container(&slot, &changes, &mut out.patch);
    }
    patch_annotations(pod, scope, &applied, &apparmor_annotations, &mut out.patch);
    out
}

/// What a container runs with for `kind`: its own setting, else the pod's.
fn effective(
    kind: BindingProfileKind,
    c: Option<&SecurityContext>,
    pod: Option<&k8s_openapi::api::core::v1::PodSecurityContext>,
) -> Option<String> {
    container_value(kind, c).or_else(|| {
        let pod = pod?;
        match kind {
            BindingProfileKind::SeccompProfile => pod.seccomp_profile.as_ref().map(seccomp_text),
            BindingProfileKind::SelinuxProfile => pod.se_linux_options.as_ref().and_then(|o| o.type_.clone()),
            BindingProfileKind::AppArmorProfile => pod.app_armor_profile.as_ref().map(apparmor_text),
        }
    })
}

fn container_value(kind: BindingProfileKind, c: Option<&SecurityContext>) -> Option<String> {
    let c = c?;
    match kind {
        BindingProfileKind::SeccompProfile => c.seccomp_profile.as_ref().map(seccomp_text),
        BindingProfileKind::SelinuxProfile => c.se_linux_options.as_ref().and_then(|o| o.type_.clone()),
        BindingProfileKind::AppArmorProfile => c.app_armor_profile.as_ref().map(apparmor_text),
    }
}

fn seccomp_text(p: &k8s_openapi::api::core::v1::SeccompProfile) -> String {
    match (p.type_.as_str(), &p.localhost_profile) {
        ("Localhost", Some(v)) => v.clone(),
        (t, _) => t.to_owned(),
    }
}

fn apparmor_text(p: &k8s_openapi::api::core::v1::AppArmorProfile) -> String {
    match (p.type_.as_str(), &p.localhost_profile) {
        ("Localhost", Some(v)) => v.clone(),
        (t, _) => t.to_owned(),
    }
}

fn kind_value(kind: BindingProfileKind, value: &str) -> (&'static str, Value) {
    match kind {
        BindingProfileKind::SeccompProfile => (
            "seccompProfile",
            json!({"type": "Localhost", "localhostProfile": value}),
        ),
        BindingProfileKind::SelinuxProfile => ("seLinuxOptions", json!({"type": value})),
        BindingProfileKind::AppArmorProfile => (
            "appArmorProfile",
            json!({"type": "Localhost", "localhostProfile": value}),
        ),
    }
}

fn patch_container(slot: &Slot<'_>, changes: &[(BindingProfileKind, String)], patch: &mut Vec<Value>) {
    if changes.is_empty() {
        return;
    }
    let base = format!("/spec/{}/{}/securityContext", slot.section.field(), slot.index);
    let Some(ctx) = slot.context else {
        let mut obj = Map::new();
        for (kind, value) in changes {
            let (field, v) = kind_value(*kind, value);
            obj.insert(field.to_owned(), v);
        }
        patch.push(json!({"op": "add", "path": base, "value": Value::Object(obj)}));
        return;
    };
    for (kind, value) in changes {
        let (field, v) = kind_value(*kind, value);
        if *kind == BindingProfileKind::SelinuxProfile && ctx.se_linux_options.is_some() {
            // Keep the level (MCS categories) and the rest; only the type is bound.
            patch.push(json!({"op": "add", "path": format!("{base}/seLinuxOptions/type"), "value": value}));
        } else {
            patch.push(json!({"op": "add", "path": format!("{base}/{field}"), "value": v}));
        }
    }
}

fn patch_annotations(
    pod: &Pod,
    scope: &Scope,
    applied: &BTreeSet<String>,
    apparmor: &[(String, String)],
    patch: &mut Vec<Value>,
) {
    let current = pod.metadata.annotations.as_ref();
    let mut set: Vec<(String, String)> = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    for (container, value) in apparmor {
        let key = format!("{APPARMOR_ANNOTATION_PREFIX}{container}");
        let want = format!("localhost/{value}");
        if let Some(have) = current.and_then(|a| a.get(&key))
            && *have != want
        {
            set.push((key, want));
        }
    }
    if matches!(scope, Scope::Create) {
        let have = current.and_then(|a| a.get(BINDINGS_ANNOTATION));
        if applied.is_empty() {
            if have.is_some() {
                remove.push(BINDINGS_ANNOTATION.to_owned());
            }
        } else {
            let want = applied.iter().cloned().collect::<Vec<_>>().join(",");
            if have != Some(&want) {
                set.push((BINDINGS_ANNOTATION.to_owned(), want));
            }
        }
    }
    for key in remove {
        patch.push(json!({"op": "remove", "path": format!("/metadata/annotations/{}", pointer_segment(&key))}));
    }
    if set.is_empty() {
        return;
    }
    if current.is_none() {
        let map: Map<String, Value> = set.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        patch.push(json!({"op": "add", "path": "/metadata/annotations", "value": Value::Object(map)}));
    } else {
        for (k, v) in set {
            patch.push(
                json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer_segment(&k)), "value": v}),
            );
        }
    }
}
