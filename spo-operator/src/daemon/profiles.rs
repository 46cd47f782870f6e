//! The daemon's cache of one kind's profiles: each profile as compact JSON, with the names
//! of the profiles it is rendered from.
//!
//! A profile object in memory is some 600 bytes of structs (most of them `None`) and a few
//! dozen small allocations (names, syscall lists, finalizers, labels). With 2,000 profiles of
//! each kind that was the daemon's largest table, and its small allocations, made during a
//! burst among short-lived ones, kept the allocator's pages from being given back. Here a
//! profile is one allocation of JSON (the object as watched, without status, annotations or
//! managed fields, which the node does not read) plus its generation and parents; a pass that
//! needs the object decodes it (a few microseconds, once per pass), and finding the profiles
//! to re-render after a change reads the parents only.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::cache::WatchCache;

/// One cached profile.
#[derive(Debug)]
pub struct CachedProfile {
    generation: Option<i64>,
    parents: Box<[Box<str>]>,
    json: Box<[u8]>,
}

/// The daemon's cache of the profiles of kind `P`; see the module documentation. Clones
/// share the cache.
#[derive(Debug)]
pub struct ProfileCache<P> {
    cache: WatchCache<Arc<CachedProfile>>,
    kind: PhantomData<fn() -> P>,
}

impl<P> Clone for ProfileCache<P> {
    fn clone(&self) -> Self {
        ProfileCache {
            cache: self.cache.clone(),
            kind: PhantomData,
        }
    }
}

impl<P> Default for ProfileCache<P> {
    fn default() -> Self {
        ProfileCache {
            cache: WatchCache::default(),
            kind: PhantomData,
        }
    }
}

impl<P: Resource + Serialize + DeserializeOwned> ProfileCache<P> {
    /// Follows one watch event; `parents` names the profiles a profile is rendered from.
    /// Returns the generation the cache held for the profile before an `Apply` or `Delete`
    /// (`None` when it held none).
    pub fn apply(&self, event: &watcher::Event<P>, parents: impl Fn(&P) -> Vec<String>) -> Option<Option<i64>> {
        let before = self.cache.apply(event, |p| {
            let json = match serde_json::to_vec(p) {
                Ok(json) => json,
                Err(e) => {
                    // Not reachable for objects that were just decoded from JSON.
                    let name = p.meta().name.as_deref().unwrap_or_default();
                    warn!(profile = %name, error = %e, "encoding a profile for the cache failed; not cached");
                    return None;
                }
            };
            let cached = CachedProfile {
                generation: p.meta().generation,
                parents: parents(p).into_iter().map(String::into_boxed_str).collect(),
                json: json.into_boxed_slice(),
            };
            Some(Arc::new(cached))
        });
        before.map(|c| c.generation)
    }

    /// The profile `name`, decoded.
    pub fn get(&self, name: &str) -> Option<Arc<P>> {
        let cached = self.cache.get(name)?;
        match serde_json::from_slice(&cached.json) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                // Not reachable: the bytes were encoded from a `P`.
                warn!(profile = %name, error = %e, "decoding a cached profile failed");
                None
            }
        }
    }

    /// Whether `name` is cached.
    pub fn contains(&self, name: &str) -> bool {
        self.cache.contains(name)
    }

    /// Every cached name.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.cache.names()
    }

    /// The profiles rendered from `changed`, directly or through others.
    pub fn dependents(&self, changed: &str) -> Vec<String> {
        self.cache
            .scan(|entries| dependents(changed, entries.map(|(name, c)| (name, c.parents.iter().map(|p| &**p)))))
    }
}

/// The names among `profiles` (name, parents) rendered from `changed`, directly or through
/// others, sorted (pure).
pub fn dependents<'a, I, Q>(changed: &str, profiles: I) -> Vec<String>
where
    I: IntoIterator<Item = (&'a str, Q)>,
    Q: IntoIterator<Item = &'a str>,
{
    let edges: Vec<(&str, Vec<&str>)> = profiles
        .into_iter()
        .map(|(name, parents)| (name, parents.into_iter().collect()))
        .filter(|(_, parents): &(&str, Vec<&str>)| !parents.is_empty())
        .collect();
    let mut out: BTreeSet<&str> = BTreeSet::new();
    let mut frontier = vec![changed];
    while let Some(parent) = frontier.pop() {
        for (name, parents) in &edges {
            if parents.contains(&parent) && out.insert(name) {
                frontier.push(name);
            }
        }
    }
    out.remove(changed);
    out.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::SeccompProfile;

    fn sp(yaml: &str) -> SeccompProfile {
        serde_norway::from_str(yaml).expect("profile")
    }

    fn base_of(p: &SeccompProfile) -> Vec<String> {
        p.spec.base_profile_name.iter().cloned().collect()
    }

    #[test]
    fn dependents_are_found_through_chains() {
        let profiles = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec![]),
            ("d", vec!["x", "c"]),
            ("e", vec!["a"]),
        ];
        let view = || profiles.iter().map(|(n, p)| (*n, p.iter().copied()));
        assert_eq!(dependents("c", view()), ["a", "b", "d", "e"]);
        assert_eq!(dependents("a", view()), ["e"]);
        assert!(dependents("e", view()).is_empty());
        let cycle = [("p", vec!["q"]), ("q", vec!["p"])];
        assert_eq!(
            dependents("p", cycle.iter().map(|(n, p)| (*n, p.iter().copied()))),
            ["q"],
            "a cycle ends"
        );
    }

    #[test]
    fn profiles_come_back_as_they_went_in_with_generations_and_parents() {
        let cache = ProfileCache::<SeccompProfile>::default();
        let child = sp(
            "metadata: {name: child, generation: 3, uid: u-1, finalizers: [f]}\nspec: {defaultAction: SCMP_ACT_ERRNO, baseProfileName: base}\n",
        );
        let base = sp("metadata: {name: base, generation: 1}\nspec: {defaultAction: SCMP_ACT_ALLOW}\n");
        cache.apply(&watcher::Event::Init, base_of);
        cache.apply(&watcher::Event::InitApply(child.clone()), base_of);
        cache.apply(&watcher::Event::InitApply(base.clone()), base_of);
        assert!(cache.get("child").is_none(), "not before the list is done");
        cache.apply(&watcher::Event::InitDone, base_of);
        assert_eq!(cache.get("child").as_deref(), Some(&child));
        assert_eq!(cache.get("base").as_deref(), Some(&base));
        assert!(cache.contains("base") && !cache.contains("other"));
        assert_eq!(cache.dependents("base"), ["child"]);
        let mut newer = child.clone();
        newer.metadata.generation = Some(4);
        assert_eq!(cache.apply(&watcher::Event::Apply(newer), base_of), Some(Some(3)));
        assert_eq!(cache.apply(&watcher::Event::Delete(base), base_of), Some(Some(1)));
        assert_eq!(cache.get("base"), None);
        let mut names: Vec<String> = cache.names().iter().map(|n| n.to_string()).collect();
        names.sort();
        assert_eq!(names, ["child"]);
    }
}
