//! Compact indexes the manager keeps from its watches (pure data structures).
//!
//! Watches deliver whole objects; the manager keeps only what it decides with: for each
//! pod that uses operator profiles, which ones; for each node status, its node, state and
//! message. Pods that use no profile are not kept at all, so memory follows the number of
//! profile users and node statuses, not the size of the cluster.
//!
//! Each index handles a watch re-list (after a disconnect or a restart) as one atomic
//! replacement: entries missing from the new list count as deleted, so deletions missed
//! while disconnected are not lost. Every change returns the profiles it affects, which
//! are then reconciled (and nothing else).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Entries (pods, node statuses) keyed by name, each about some profiles, queryable by
/// profile.
#[derive(Debug, Clone)]
pub struct ProfileIndex<V> {
    entries: HashMap<String, (Vec<String>, V)>,
    by_profile: HashMap<String, BTreeMap<String, V>>,
    relist: Option<HashMap<String, (Vec<String>, V)>>,
    synced: bool,
}

impl<V> Default for ProfileIndex<V> {
    fn default() -> Self {
        ProfileIndex {
            entries: HashMap::new(),
            by_profile: HashMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<V: Clone + PartialEq> ProfileIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that entry `key` is about `profiles` with `value` (an entry about no profile
    /// is dropped). Returns the profiles whose view changed.
    pub fn apply(&mut self, key: &str, profiles: Vec<String>, value: V) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        if let Some((old, old_value)) = self.entries.get(key) {
            if *old == profiles && *old_value == value {
                return changed;
            }
            changed.extend(self.delete(key));
        }
        if profiles.is_empty() {
            return changed;
        }
        for p in &profiles {
            self.by_profile
                .entry(p.clone())
                .or_default()
                .insert(key.to_owned(), value.clone());
            changed.insert(p.clone());
        }
        self.entries.insert(key.to_owned(), (profiles, value));
        changed
    }

    /// Forgets entry `key`. Returns the profiles whose view changed.
    pub fn delete(&mut self, key: &str) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        if let Some((profiles, _)) = self.entries.remove(key) {
            for p in profiles {
                if let Some(m) = self.by_profile.get_mut(&p) {
                    m.remove(key);
                    if m.is_empty() {
                        self.by_profile.remove(&p);
                    }
                }
                changed.insert(p);
            }
        }
        changed
    }

    /// A re-list starts: entries arrive through [`ProfileIndex::relist_apply`] until
    /// [`ProfileIndex::end_relist`].
    pub fn begin_relist(&mut self) {
        self.relist = Some(HashMap::new());
    }

    /// One entry of a re-list.
    pub fn relist_apply(&mut self, key: &str, profiles: Vec<String>, value: V) {
        let buffer = self.relist.get_or_insert_with(HashMap::new);
        if !profiles.is_empty() {
            buffer.insert(key.to_owned(), (profiles, value));
        }
    }

    /// The re-list is complete: entries not in it are deleted, the others applied. Returns
    /// the profiles whose view changed.
    pub fn end_relist(&mut self) -> BTreeSet<String> {
        let buffer = self.relist.take().unwrap_or_default();
        let stale: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !buffer.contains_key(*k))
            .cloned()
            .collect();
        let mut changed = BTreeSet::new();
        for k in stale {
            changed.extend(self.delete(&k));
        }
        for (k, (profiles, value)) in buffer {
            changed.extend(self.apply(&k, profiles, value));
        }
        self.synced = true;
        changed
    }

    /// Whether a first complete list was seen.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The entries about `profile`, by key.
    pub fn of(&self, profile: &str) -> Option<&BTreeMap<String, V>> {
        self.by_profile.get(profile)
    }

    /// The keys entry `key` is about (profiles, bindings), when it is kept.
    pub fn keys_of(&self, key: &str) -> Option<&[String]> {
        self.entries.get(key).map(|(keys, _)| keys.as_slice())
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The set of node names, with re-list handling; changes report whether the set changed.
#[derive(Debug, Clone, Default)]
pub struct NodeSet {
    nodes: BTreeSet<String>,
    relist: Option<BTreeSet<String>>,
    synced: bool,
}

impl NodeSet {
    /// A node exists. Returns whether it is new.
    pub fn apply(&mut self, name: &str) -> bool {
        self.nodes.insert(name.to_owned())
    }

    /// A node is gone. Returns whether it was known.
    pub fn delete(&mut self, name: &str) -> bool {
        self.nodes.remove(name)
    }

    /// A re-list starts.
    pub fn begin_relist(&mut self) {
        self.relist = Some(BTreeSet::new());
    }

    /// One node of a re-list.
    pub fn relist_apply(&mut self, name: &str) {
        self.relist.get_or_insert_with(BTreeSet::new).insert(name.to_owned());
    }

    /// The re-list is complete. Returns whether the set changed.
    pub fn end_relist(&mut self) -> bool {
        let new = self.relist.take().unwrap_or_default();
        let changed = new != self.nodes;
        self.nodes = new;
        self.synced = true;
        changed
    }

    /// Whether a first complete list was seen.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The nodes.
    pub fn names(&self) -> &BTreeSet<String> {
        &self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn applies_and_deletes_report_affected_profiles() {
        let mut idx = ProfileIndex::<()>::new();
        assert_eq!(idx.apply("ns/a", v(&["p1", "p2"]), ()), set(&["p1", "p2"]));
        assert_eq!(idx.apply("ns/a", v(&["p1", "p2"]), ()), set(&[]), "no change, no work");
        assert_eq!(idx.apply("ns/a", v(&["p2"]), ()), set(&["p1", "p2"]));
        assert!(idx.of("p1").is_none());
        assert_eq!(idx.apply("ns/b", v(&["p2"]), ()), set(&["p2"]));
        assert_eq!(idx.of("p2").map(|m| m.len()), Some(2));
        assert_eq!(idx.delete("ns/a"), set(&["p2"]));
        assert_eq!(idx.delete("ns/a"), set(&[]));
        assert_eq!(
            idx.apply("ns/b", v(&[]), ()),
            set(&["p2"]),
            "a pod that stops using profiles"
        );
        assert!(idx.is_empty());
    }

    #[test]
    fn entries_without_profiles_are_not_kept() {
        let mut idx = ProfileIndex::<()>::new();
        for i in 0..1000 {
            idx.apply(&format!("ns/pod-{i}"), Vec::new(), ());
        }
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn values_changes_are_changes() {
        let mut idx = ProfileIndex::<u8>::new();
        idx.apply("s", v(&["p"]), 1);
        assert_eq!(idx.apply("s", v(&["p"]), 2), set(&["p"]));
        assert_eq!(idx.of("p").and_then(|m| m.get("s")), Some(&2));
    }

    #[test]
    fn relists_replace_atomically_and_catch_missed_deletes() {
        let mut idx = ProfileIndex::<()>::new();
        assert!(!idx.is_synced());
        idx.apply("ns/a", v(&["p1"]), ());
        idx.apply("ns/b", v(&["p2"]), ());
        idx.begin_relist();
        idx.relist_apply("ns/b", v(&["p2"]), ());
        idx.relist_apply("ns/c", v(&["p3"]), ());
        // Until the relist is complete, queries see the old state.
        assert!(idx.of("p1").is_some() && idx.of("p3").is_none());
        assert_eq!(idx.end_relist(), set(&["p1", "p3"]));
        assert!(idx.is_synced());
        assert!(idx.of("p1").is_none());
        assert!(idx.of("p3").is_some());
    }

    #[test]
    fn node_sets_report_changes() {
        let mut n = NodeSet::default();
        n.begin_relist();
        n.relist_apply("a");
        n.relist_apply("b");
        assert!(n.end_relist());
        assert!(n.is_synced());
        n.begin_relist();
        n.relist_apply("b");
        n.relist_apply("a");
        assert!(!n.end_relist(), "same nodes");
        assert!(!n.apply("a"));
        assert!(n.delete("a"));
        assert_eq!(n.names(), &set(&["b"]));
    }
}
