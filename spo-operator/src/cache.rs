//! A watch cache keyed by name, holding what its user needs of each object: a small digest,
//! or the (trimmed) object itself.
//!
//! kube-runtime's reflector store keeps every watched object whole (about 1 KB for a node
//! status even without its managed fields), keyed by an `ObjectRef` holding four more strings
//! (name, namespace, resource version, uid). A [`WatchCache`] is keyed by the name alone (the
//! daemon's objects are cluster-scoped, or all in one namespace) and keeps whatever its user
//! derives from an object. It follows the watch the way a reflector does: a (re)list is
//! collected aside and replaces the cache when it is complete, so readers never see a
//! half-listed cache, and objects deleted while the watch was down disappear with the relist.
//! Its table is given back when most of it was deleted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::watcher;

/// Tables at least this large are shrunk once at most a quarter of them is in use.
const SHRINK_ABOVE: usize = 64;

/// Gives a hash map's table back once most of it was emptied (after a burst drained out of
/// it, or a mass deletion): hash maps never shrink on their own.
pub(crate) fn give_back_unused<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > SHRINK_ABOVE && map.len().saturating_mul(4) < map.capacity() {
        map.shrink_to(map.len().saturating_mul(2).max(SHRINK_ABOVE / 2));
    }
}

/// What is kept of watched objects, by name; see the module documentation. Clones share
/// the cache.
#[derive(Debug)]
pub struct WatchCache<D> {
    inner: Arc<Inner<D>>,
}

impl<D> Clone for WatchCache<D> {
    fn clone(&self) -> Self {
        WatchCache {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<D> {
    state: RwLock<State<D>>,
    listed: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug)]
struct State<D> {
    live: HashMap<Box<str>, D>,
    /// A list in progress.
    relist: Option<HashMap<Box<str>, D>>,
}

impl<D: Clone> Default for WatchCache<D> {
    fn default() -> Self {
        WatchCache {
            inner: Arc::new(Inner {
                state: RwLock::new(State {
                    live: HashMap::new(),
                    relist: None,
                }),
                listed: tokio::sync::watch::Sender::new(false),
            }),
        }
    }
}

impl<D: Clone> WatchCache<D> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State<D>> {
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<D>> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows one watch event: `keep` gives what is kept of an object (`None`: the object is
    /// not cached), which is cached under its name; a deletion needs only the name, so `keep`
    /// is not called for it. Returns what the cache held for that name before an `Apply` or
    /// `Delete` (for an `InitApply`: what it holds until the list is complete).
    pub fn apply<K: Resource>(&self, event: &watcher::Event<K>, keep: impl Fn(&K) -> Option<D>) -> Option<D> {
        let kept = |obj: &K| Some((obj.meta().name.clone()?, keep(obj)?));
        match event {
            watcher::Event::Init => {
                self.write().relist = Some(HashMap::new());
                None
            }
            watcher::Event::InitApply(obj) => {
                let (name, d) = kept(obj)?;
                let mut state = self.write();
                let before = state.live.get(name.as_str()).cloned();
                state.relist.get_or_insert_with(HashMap::new).insert(name.into(), d);
                before
            }
            watcher::Event::InitDone => {
                {
                    let mut state = self.write();
                    let mut fresh = state.relist.take().unwrap_or_default();
                    fresh.shrink_to_fit();
                    state.live = fresh;
                }
                self.inner.listed.send_replace(true);
                None
            }
            watcher::Event::Apply(obj) => {
                let (name, d) = kept(obj)?;
                self.write().live.insert(name.into(), d)
            }
            watcher::Event::Delete(obj) => {
                let name = obj.meta().name.as_deref()?;
                let mut state = self.write();
                let before = state.live.remove(name);
                give_back_unused(&mut state.live);
                before
            }
        }
    }

    /// What is kept of `name`.
    pub fn get(&self, name: &str) -> Option<D> {
        self.read().live.get(name).cloned()
    }

    /// Whether `name` is cached.
    pub fn contains(&self, name: &str) -> bool {
        self.read().live.contains_key(name)
    }

    /// Every cached name.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.read().live.keys().map(|k| Arc::from(&**k)).collect()
    }

    /// Runs `f` over every cached (name, value), under the cache's read lock.
    pub fn scan<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = (&str, &D)>) -> R) -> R {
        let state = self.read();
        f(&mut state.live.iter().map(|(k, v)| (&**k, v)))
    }

    /// Everything cached.
    pub fn values(&self) -> Vec<D> {
        self.read().live.values().cloned().collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().live.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the first list is complete.
    pub async fn wait_until_listed(&self) {
        let mut rx = self.inner.listed.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use watcher::Event;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Keeps the name's length; names starting with `skip` are not cached.
    fn d(c: &ConfigMap) -> Option<usize> {
        let name = c.metadata.name.as_deref()?;
        (!name.starts_with("skip")).then_some(name.len())
    }

    #[test]
    fn follows_lists_applies_and_deletes() {
        let c = WatchCache::<usize>::default();
        c.apply(&Event::Init, d);
        c.apply(&Event::InitApply(cm("a")), d);
        c.apply(&Event::InitApply(cm("skip-me")), d);
        assert!(c.is_empty(), "a list in progress is not visible");
        c.apply(&Event::InitDone, d);
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.len(), 1);
        assert_eq!(c.apply(&Event::Apply(cm("bb")), d), None);
        assert_eq!(c.get("bb"), Some(2));
        assert!(c.contains("bb"));
        assert_eq!(c.apply(&Event::Delete(cm("a")), d), Some(1), "what was deleted");
        assert_eq!(c.get("a"), None);
        // A relist replaces everything: what was deleted meanwhile goes.
        c.apply(&Event::Init, d);
        c.apply(&Event::InitApply(cm("ccc")), d);
        assert_eq!(
            c.apply(&Event::InitApply(cm("bb")), d),
            Some(2),
            "what the cache holds until the list is done"
        );
        assert_eq!(c.get("bb"), Some(2), "the old state stays readable during the relist");
        c.apply(&Event::InitDone, d);
        c.apply(&Event::Delete(cm("bb")), d);
        assert_eq!(c.get("bb"), None);
        assert_eq!(c.values(), vec![3]);
        assert_eq!(c.names(), vec![Arc::<str>::from("ccc")]);
    }

    #[tokio::test]
    async fn waits_for_the_first_list() {
        let c = WatchCache::<usize>::default();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_until_listed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.apply(&Event::<ConfigMap>::Init, d);
        c.apply(&Event::<ConfigMap>::InitDone, d);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
    }

    #[test]
    fn tables_shrink_after_mass_deletion() {
        let c = WatchCache::<usize>::default();
        let objects: Vec<ConfigMap> = (0..5000).map(|i| cm(&format!("p{i}"))).collect();
        for o in &objects {
            c.apply(&Event::Apply(o.clone()), d);
        }
        let big = c.read().live.capacity();
        for o in &objects {
            c.apply(&Event::Delete(o.clone()), d);
        }
        assert!(c.is_empty());
        assert!(
            c.read().live.capacity() <= 64,
            "capacity {} (was {big})",
            c.read().live.capacity()
        );
    }
}
