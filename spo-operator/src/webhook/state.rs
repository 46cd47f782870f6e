//! What the webhooks decide with: bindings, recordings and profile readiness, kept from
//! watches as compact projections (a binding is a few strings, a profile one entry), so
//! memory follows the number of these objects and admission never calls the apiserver.
//!
//! A watch re-list is applied as one replacement per store ([`Relist`]), so objects
//! deleted while disconnected disappear.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, Ordering};

use kube::core::Selector;
use spo_model::apparmor::AppArmorProfile;
use spo_model::binding::{BindingProfileKind, ProfileBinding};
use spo_model::common::ProfileState;
use spo_model::recording::ProfileRecording;
use spo_model::seccomp::SeccompProfile;
use spo_model::selinux::SelinuxProfile;

use super::binding::{BindingRule, NamespaceBindings, ProfileLookup, Readiness};
use super::recording::{NamespaceRecordings, RecordingRule};

/// Everything the webhooks read.
#[derive(Debug, Default)]
pub struct WebhookState {
    bindings: RwLock<HashMap<String, NamespaceBindings>>,
    recordings: RwLock<HashMap<String, NamespaceRecordings>>,
    profiles: RwLock<HashMap<(BindingProfileKind, String), Readiness>>,
    synced: AtomicU8,
    relist_bindings: RwLock<Option<HashMap<String, NamespaceBindings>>>,
    relist_recordings: RwLock<Option<HashMap<String, NamespaceRecordings>>>,
    relist_profiles: RwLock<HashMap<BindingProfileKind, HashMap<String, Readiness>>>,
}

/// Bits of the state's `synced` mask, one per watch.
pub mod synced {
    /// ProfileBindings listed.
    pub const BINDINGS: u8 = 1;
    /// ProfileRecordings listed.
    pub const RECORDINGS: u8 = 2;
    /// SeccompProfiles listed.
    pub const SECCOMP: u8 = 4;
    /// SelinuxProfiles listed.
    pub const SELINUX: u8 = 8;
    /// AppArmorProfiles listed.
    pub const APPARMOR: u8 = 16;
    /// All of them.
    pub const ALL: u8 = 31;
}

/// The steps of a watch, as the stores take them.
#[derive(Debug)]
pub enum Relist<T> {
    /// An object appeared or changed.
    Apply(T),
    /// An object is gone.
    Delete(T),
    /// A full list begins.
    Begin,
    /// One object of the list.
    Item(T),
    /// The list is complete.
    Done,
}

impl<T> Relist<T> {
    /// The same step about `f(object)`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Relist<U> {
        match self {
            Relist::Apply(o) => Relist::Apply(f(o)),
            Relist::Delete(o) => Relist::Delete(f(o)),
            Relist::Begin => Relist::Begin,
            Relist::Item(o) => Relist::Item(f(o)),
            Relist::Done => Relist::Done,
        }
    }
}

/// A per-namespace set of rules, keyed by object name.
trait RuleSet: Default {
    type Rule;
    fn name(rule: &Self::Rule) -> &str;
    fn put(&mut self, rule: Self::Rule);
    fn take(&mut self, name: &str);
    fn empty(&self) -> bool;
}

impl RuleSet for NamespaceBindings {
    type Rule = BindingRule;
    fn name(rule: &BindingRule) -> &str {
        &rule.name
    }
    fn put(&mut self, rule: BindingRule) {
        self.insert(rule);
    }
    fn take(&mut self, name: &str) {
        self.remove(name);
    }
    fn empty(&self) -> bool {
        self.is_empty()
    }
}

impl RuleSet for NamespaceRecordings {
    type Rule = RecordingRule;
    fn name(rule: &RecordingRule) -> &str {
        &rule.name
    }
    fn put(&mut self, rule: RecordingRule) {
        self.insert(rule);
    }
    fn take(&mut self, name: &str) {
        self.remove(name);
    }
    fn empty(&self) -> bool {
        self.is_empty()
    }
}

/// Applies one watch step to per-namespace rule sets; true when a full list completed.
fn apply_step<S: RuleSet>(
    live: &RwLock<HashMap<String, S>>,
    relist: &RwLock<Option<HashMap<String, S>>>,
    step: Relist<(String, S::Rule)>,
) -> bool {
    match step {
        Relist::Apply((ns, rule)) => write(live).entry(ns).or_default().put(rule),
        Relist::Delete((ns, rule)) => {
            let mut all = write(live);
            if let Some(set) = all.get_mut(&ns) {
                set.take(S::name(&rule));
                if set.empty() {
                    all.remove(&ns);
                }
            }
        }
        Relist::Begin => *write(relist) = Some(HashMap::new()),
        Relist::Item((ns, rule)) => write(relist)
            .get_or_insert_with(HashMap::new)
            .entry(ns)
            .or_default()
            .put(rule),
        Relist::Done => {
            let fresh = write(relist).take().unwrap_or_default();
            *write(live) = fresh;
            return true;
        }
    }
    false
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A binding as the decision reads it (pure).
pub fn binding_rule(b: &ProfileBinding) -> (String, BindingRule) {
    let selector = match &b.spec.pod_selector {
        None => Ok(None),
        Some(s) => Selector::try_from(s.clone()).map(Some).map_err(|e| e.to_string()),
    };
    (
        b.metadata.namespace.clone().unwrap_or_default(),
        BindingRule {
            name: b.metadata.name.clone().unwrap_or_default(),
            kind: b.spec.profile_ref.kind,
            profile: b.spec.profile_ref.name.clone(),
            image: b.spec.image.clone(),
            selector,
        },
    )
}

/// A recording as the decision reads it (pure).
pub fn recording_rule(r: &ProfileRecording) -> (String, RecordingRule) {
    (
        r.metadata.namespace.clone().unwrap_or_default(),
        RecordingRule {
            name: r.metadata.name.clone().unwrap_or_default(),
            kind: r.spec.kind,
            recorder: r.spec.recorder,
            selector: Selector::try_from(r.spec.pod_selector.clone()).map_err(|e| e.to_string()),
            containers: r
                .spec
                .containers
                .as_ref()
                .map(|c| c.iter().cloned().collect::<BTreeSet<_>>()),
        },
    )
}

fn readiness(state: Option<ProfileState>, deleting: bool, value: String) -> Readiness {
    if deleting {
        return Readiness::NotInstalled("Terminating".into());
    }
    match state {
        Some(ProfileState::Installed) => Readiness::Ready(value),
        Some(other) => Readiness::NotInstalled(other.to_string()),
        None => Readiness::NotInstalled("not yet reported by any node".into()),
    }
}

/// A SeccompProfile's readiness (pure).
pub fn seccomp_readiness(p: &SeccompProfile) -> (String, Readiness) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let status = p.status.as_ref();
    let value = status
        .and_then(|s| s.localhost_profile.clone())
        .unwrap_or_else(|| format!("operator/{name}.json"));
    let r = readiness(
        status.and_then(|s| s.status),
        p.metadata.deletion_timestamp.is_some(),
        value,
    );
    (name, r)
}

/// A SelinuxProfile's readiness (pure).
pub fn selinux_readiness(p: &SelinuxProfile) -> (String, Readiness) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let status = p.status.as_ref();
    let value = status
        .and_then(|s| s.usage.clone())
        .unwrap_or_else(|| format!("{name}.process"));
    let r = readiness(
        status.and_then(|s| s.status),
        p.metadata.deletion_timestamp.is_some(),
        value,
    );
    (name, r)
}

/// An AppArmorProfile's readiness (pure): the kernel profile is named after the object.
pub fn apparmor_readiness(p: &AppArmorProfile) -> (String, Readiness) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let r = readiness(
        p.status.as_ref().and_then(|s| s.status),
        p.metadata.deletion_timestamp.is_some(),
        name.clone(),
    );
    (name, r)
}

impl WebhookState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether every watch has listed once.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire) == synced::ALL
    }

    /// Applies a binding watch step.
    pub fn on_binding(&self, step: Relist<&ProfileBinding>) {
        if apply_step(&self.bindings, &self.relist_bindings, step.map(binding_rule)) {
            self.synced.fetch_or(synced::BINDINGS, Ordering::AcqRel);
        }
    }

    /// Applies a recording watch step.
    pub fn on_recording(&self, step: Relist<&ProfileRecording>) {
        if apply_step(&self.recordings, &self.relist_recordings, step.map(recording_rule)) {
            self.synced.fetch_or(synced::RECORDINGS, Ordering::AcqRel);
        }
    }

    /// Applies a profile watch step, the profile already reduced to its readiness.
    pub fn on_profile(&self, kind: BindingProfileKind, step: Relist<(String, Readiness)>) {
        match step {
            Relist::Apply((name, r)) => {
                write(&self.profiles).insert((kind, name), r);
            }
            Relist::Delete((name, _)) => {
                write(&self.profiles).remove(&(kind, name));
            }
            Relist::Begin => {
                write(&self.relist_profiles).insert(kind, HashMap::new());
            }
            Relist::Item((name, r)) => {
                write(&self.relist_profiles).entry(kind).or_default().insert(name, r);
            }
            Relist::Done => {
                let fresh = write(&self.relist_profiles).remove(&kind).unwrap_or_default();
                let mut all = write(&self.profiles);
                all.retain(|(k, _), _| *k != kind);
                all.extend(fresh.into_iter().map(|(n, r)| ((kind, n), r)));
                let bit = match kind {
                    BindingProfileKind::SeccompProfile => synced::SECCOMP,
                    BindingProfileKind::SelinuxProfile => synced::SELINUX,
                    BindingProfileKind::AppArmorProfile => synced::APPARMOR,
                };
                self.synced.fetch_or(bit, Ordering::AcqRel);
            }
        }
    }

    /// Runs `f` over a namespace's bindings and the profiles (read locks held for `f` only).
    pub fn with_bindings<R>(&self, namespace: &str, f: impl FnOnce(&NamespaceBindings, &dyn ProfileLookup) -> R) -> R {
        let all = read(&self.bindings);
        let empty = NamespaceBindings::default();
        let set = all.get(namespace).unwrap_or(&empty);
        let profiles = Profiles(read(&self.profiles));
        f(set, &profiles)
    }

    /// Runs `f` over a namespace's recordings.
    pub fn with_recordings<R>(&self, namespace: &str, f: impl FnOnce(&NamespaceRecordings) -> R) -> R {
        let all = read(&self.recordings);
        let empty = NamespaceRecordings::default();
        f(all.get(namespace).unwrap_or(&empty))
    }

    /// Counts, for logs and metrics: (bindings, recordings, profiles).
    pub fn counts(&self) -> (usize, usize, usize) {
        let b = read(&self.bindings).values().map(NamespaceBindings::len).sum();
        let r = read(&self.recordings).values().map(NamespaceRecordings::len).sum();
        (b, r, read(&self.profiles).len())
    }

    /// The readiness of every profile, sorted (for tests and debugging).
    pub fn profiles_snapshot(&self) -> BTreeMap<String, Readiness> {
        read(&self.profiles)
            .iter()
            .map(|((k, n), r)| (format!("{k}/{n}"), r.clone()))
            .collect()
    }
}

struct Profiles<'a>(std::sync::RwLockReadGuard<'a, HashMap<(BindingProfileKind, String), Readiness>>);

impl ProfileLookup for Profiles<'_> {
    fn readiness(&self, kind: BindingProfileKind, name: &str) -> Readiness {
        self.0
            .get(&(kind, name.to_owned()))
            .cloned()
            .unwrap_or(Readiness::Missing)
    }
}
