//! Installing and removing many profiles' modules in as few semodule transactions as possible.
//!
//! Each semodule transaction rebuilds the whole policy (about 5 s here, nearly the same for one
//! module as for a hundred), so a burst of profiles goes into the store as one transaction:
//! [`SelinuxNode::install_modules`]. When the store refuses it, nothing of it was installed
//! (a transaction is all or nothing), and the refused modules are found so the rest go in:
//!
//! - semodule's message names the module it failed on
//!   (`.../modules/420/<name>/cil:<line>`): that module is refused with that message and the
//!   rest is tried again as one transaction (two transactions for one bad module);
//! - otherwise the group is split in halves, each tried on its own, down to single modules
//!   (about `2 log2 n` more transactions per bad module);
//! - a failure that is not a refusal (semodule ran past its deadline, could not start, was
//!   killed, printed a listing we cannot read) is not retried: every module of the group
//!   gets that error.
//!
//! The templates module and the node's extra modules go in with the first transaction that
//! succeeds. When the whole batch is refused and semodule names no module, they are tried
//! alone first, so a broken support module costs one more transaction rather than one per
//! profile. The per-module rules stay those of [`SelinuxNode::install_module`]: a module whose
//! installed checksum equals the rendered text's is not installed again, and a name the store
//! has at another priority is refused. [`SelinuxNode::remove_modules`] does the same for
//! removal. The decisions ([`plan_batch`], [`plan_removal`], [`isolate_failures`]) are pure.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use spo_model::ProfileState;
use spo_model::contract::{InstallOutcome, RemoveOutcome};

use crate::error::SelinuxError;
use crate::install::{InstalledModule, MODULE_PRIORITY, SelinuxNode, Want, plan_install};
use crate::render::RenderedModule;
use crate::templates::templates_module;

/// What happened to one module of a batch.
#[derive(Clone, Debug)]
pub struct ModuleReport<T> {
    /// The module (the profile's install name).
    pub name: String,
    /// Its outcome; an error may be shared by several modules (one semodule run that timed
    /// out fails every module it held), hence the `Arc`.
    pub result: Result<T, Arc<SelinuxError>>,
}

/// What a batch did: one report per module, in the order given.
#[derive(Clone, Debug)]
pub struct BatchReport<T> {
    /// One per module given, same order.
    pub modules: Vec<ModuleReport<T>>,
    /// How many semodule transactions ran (0 when nothing changed).
    pub transactions: usize,
}

/// What [`plan_batch`] decided for one module.
#[derive(Debug)]
pub enum BatchDecision {
    /// Not in the store as rendered: install it.
    Install,
    /// Installed by us with exactly this text: leave it.
    Unchanged,
    /// Refused before semodule runs (its name belongs to another priority, or is taken twice).
    Refused(SelinuxError),
}

/// What [`plan_batch`] decided for a batch.
#[derive(Debug)]
pub struct BatchPlan {
    /// One per module, same order.
    pub decisions: Vec<BatchDecision>,
    /// Support modules (templates, extras) to install with the first successful transaction;
    /// empty when no module is to be installed.
    pub support: Vec<RenderedModule>,
}

/// Decides, from the store `listing`, what to do with each of `modules`, given the support
/// modules every profile needs (pure). A support module of the same name at another priority
/// fails the whole batch, as it fails a single install.
pub fn plan_batch(
    listing: &[InstalledModule],
    support: &[(&RenderedModule, Want)],
    modules: &[RenderedModule],
) -> Result<BatchPlan, SelinuxError> {
    let support_plan = plan_install(listing, support)?;
    let mut taken: BTreeSet<&str> = support.iter().map(|(m, _)| m.name.as_str()).collect();
    let decisions: Vec<BatchDecision> = modules
        .iter()
        .map(|m| {
            if !taken.insert(m.name.as_str()) {
                return BatchDecision::Refused(SelinuxError::DuplicateModule { name: m.name.clone() });
            }
            match plan_install(listing, &[(m, Want::Exact)]) {
                Ok(plan) if plan.install.is_empty() => BatchDecision::Unchanged,
                Ok(_) => BatchDecision::Install,
                Err(e) => BatchDecision::Refused(e),
            }
        })
        .collect();
    let any = decisions.iter().any(|d| matches!(d, BatchDecision::Install));
    let support = if any {
        support_plan.install.iter().map(|&i| support[i].0.clone()).collect()
    } else {
        Vec::new()
    };
    Ok(BatchPlan { decisions, support })
}

/// For each of `names`, whether it is ours to remove: in the store at [`MODULE_PRIORITY`], and
/// not named earlier in `names` (pure). A module of that name at another priority is not ours.
pub fn plan_removal(listing: &[InstalledModule], names: &[String]) -> Vec<bool> {
    let ours: BTreeSet<&str> = listing
        .iter()
        .filter(|m| m.priority == MODULE_PRIORITY)
        .map(|m| m.name.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    names
        .iter()
        .map(|n| seen.insert(n.as_str()) && ours.contains(n.as_str()))
        .collect()
}

/// What a failed attempt on a group means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The tool named this item (a value of the group) as the one it refused: refuse it and
    /// try the rest together.
    Item(usize),
    /// The group was refused and no item was named: split it.
    Split,
    /// The failure is not about the input (the tool hung or could not start): trying again
    /// would only fail again, slower. Every item of the group fails with it.
    All,
}

/// Finds which of `items` the store refuses, trying groups with `attempt` (pure over it):
/// `first_failure`, when given, is the error of an attempt on all of `items` already made.
/// Returns each item's outcome; an item's error is that of the attempt that isolated it.
pub fn isolate_failures<E>(
    items: &[usize],
    first_failure: Option<E>,
    attempt: &mut dyn FnMut(&[usize]) -> Result<(), E>,
    blame: &dyn Fn(&E, &[usize]) -> Blame,
) -> BTreeMap<usize, Result<(), Arc<E>>> {
    let mut out = BTreeMap::new();
    let mut queue: VecDeque<(Vec<usize>, Option<E>)> = VecDeque::from([(items.to_vec(), first_failure)]);
    while let Some((group, known)) = queue.pop_front() {
        if group.is_empty() {
            continue;
        }
        let error = match known {
            Some(e) => e,
            None => match attempt(&group) {
                Ok(()) => {
                    out.extend(group.into_iter().map(|i| (i, Ok(()))));
                    continue;
                }
                Err(e) => e,
            },
        };
        match blame(&error, &group) {
            Blame::All => {
                let shared = Arc::new(error);
                out.extend(group.into_iter().map(|i| (i, Err(shared.clone()))));
            }
            _ if group.len() == 1 => {
                out.insert(group[0], Err(Arc::new(error)));
            }
            Blame::Item(named) if group.contains(&named) => {
                out.insert(named, Err(Arc::new(error)));
                queue.push_back((group.into_iter().filter(|&i| i != named).collect(), None));
            }
            Blame::Item(_) | Blame::Split => {
                let (left, right) = group.split_at(group.len() / 2);
                queue.push_back((left.to_vec(), None));
                queue.push_back((right.to_vec(), None));
            }
        }
    }
    out
}

/// How an install failure of `group` (indexes into `modules`) is blamed: a refusal located in
/// one of the group's modules names it; any other refusal splits; anything else is not about
/// the modules.
fn blame_install(error: &SelinuxError, group: &[usize], modules: &[RenderedModule]) -> Blame {
    match error {
        SelinuxError::Rejected {
            location: Some(location),
            ..
        } => group
            .iter()
            .copied()
            .find(|&i| modules[i].name == location.module)
            .map_or(Blame::Split, Blame::Item),
        SelinuxError::Rejected { .. } => Blame::Split,
        _ => Blame::All,
    }
}

/// Names the module alone in a refused single-module attempt, so its error says which profile
/// was refused even when semodule's message does not.
fn name_the_refused(error: SelinuxError, module: &RenderedModule) -> SelinuxError {
    match error {
        SelinuxError::Rejected {
            tool,
            location: None,
            message,
            ..
        } => SelinuxError::Rejected {
            tool,
            subject: module.subject(),
            location: None,
            message,
        },
        other => other,
    }
}

impl SelinuxNode {
    /// Installs many profiles' modules in as few semodule transactions as possible (see the
    /// module documentation), reporting `InProgress` and then `Installed` or `Error` for each
    /// to the status sink. Fails as a whole only when nothing could be decided (the store
    /// could not be listed, or a support module's name belongs to another priority); then
    /// nothing was changed.
    pub fn install_modules(&self, modules: &[RenderedModule]) -> Result<BatchReport<InstallOutcome>, SelinuxError> {
        let templates = templates_module();
        let mut support: Vec<(&RenderedModule, Want)> = self.extras.iter().map(|m| (m, Want::Present)).collect();
        support.push((&templates, Want::Exact));
        let plan = self
            .store
            .list()
            .and_then(|listing| plan_batch(&listing, &support, modules))
            .inspect_err(|_| {
                for m in modules {
                    self.report(&m.name, ProfileState::Error);
                }
            })?;
        let pending: Vec<usize> = (0..modules.len())
            .filter(|&i| matches!(plan.decisions[i], BatchDecision::Install))
            .collect();
        for &i in &pending {
            self.report(&modules[i].name, ProfileState::InProgress);
        }

        let support_pending = RefCell::new(plan.support);
        let transactions = Cell::new(0);
        let mut attempt = |group: &[usize]| -> Result<(), SelinuxError> {
            let mut batch = support_pending.borrow().clone();
            batch.extend(group.iter().map(|&i| modules[i].clone()));
            if batch.is_empty() {
                return Ok(());
            }
            transactions.set(transactions.get() + 1);
            match self.store.install(&batch) {
                Ok(()) => {
                    support_pending.borrow_mut().clear();
                    Ok(())
                }
                Err(e) => match group {
                    [only] => Err(name_the_refused(e, &modules[*only])),
                    _ => Err(e),
                },
            }
        };
        let blame = |e: &SelinuxError, group: &[usize]| blame_install(e, group, modules);
        let results = match attempt(&pending) {
            Ok(()) => pending.iter().map(|&i| (i, Ok(()))).collect(),
            Err(first) => {
                // Refused with no module named: the support modules may be what is broken.
                let support_failed = if blame(&first, &pending) == Blame::Split && !support_pending.borrow().is_empty()
                {
                    attempt(&[]).err()
                } else {
                    None
                };
                match support_failed {
                    Some(e) => {
                        let shared = Arc::new(e);
                        pending.iter().map(|&i| (i, Err(shared.clone()))).collect()
                    }
                    None => isolate_failures(&pending, Some(first), &mut attempt, &blame),
                }
            }
        };

        let mut decisions = plan.decisions.into_iter();
        let mut results = results;
        let reports = modules
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let result = match decisions.next() {
                    Some(BatchDecision::Install) => match results.remove(&i) {
                        Some(Ok(())) => Ok(InstallOutcome::Written),
                        Some(Err(e)) => Err(e),
                        None => Err(Arc::new(SelinuxError::Toolchain {
                            what: format!("an outcome for policy module {}", m.name),
                            hint: "the batch installer lost track of it; this is a bug".to_owned(),
                        })),
                    },
                    Some(BatchDecision::Unchanged) => Ok(InstallOutcome::Unchanged),
                    Some(BatchDecision::Refused(e)) => Err(Arc::new(e)),
                    None => Err(Arc::new(SelinuxError::Toolchain {
                        what: format!("a decision for policy module {}", m.name),
                        hint: "the batch planner lost track of it; this is a bug".to_owned(),
                    })),
                };
                self.report(
                    &m.name,
                    if result.is_ok() {
                        ProfileState::Installed
                    } else {
                        ProfileState::Error
                    },
                );
                ModuleReport {
                    name: m.name.clone(),
                    result,
                }
            })
            .collect();
        Ok(BatchReport {
            modules: reports,
            transactions: transactions.get(),
        })
    }

    /// Removes the modules `names` that we installed in as few semodule transactions as
    /// possible (one when the store accepts it; refused removals are isolated by halving);
    /// a name at another priority is not ours and is `NotPresent`. Fails as a whole only when
    /// the store could not be listed.
    pub fn remove_modules(&self, names: &[String]) -> Result<BatchReport<RemoveOutcome>, SelinuxError> {
        let ours = plan_removal(&self.store.list()?, names);
        let pending: Vec<usize> = (0..names.len()).filter(|&i| ours[i]).collect();
        let transactions = Cell::new(0);
        let mut attempt = |group: &[usize]| -> Result<(), SelinuxError> {
            transactions.set(transactions.get() + 1);
            let batch: Vec<String> = group.iter().map(|&i| names[i].clone()).collect();
            self.store.remove(&batch)
        };
        let blame = |e: &SelinuxError, _: &[usize]| match e {
            // A removal is refused when another module still uses what it declares; semodule
            // then names that other module, not the one removed.
            SelinuxError::Rejected { .. } => Blame::Split,
            _ => Blame::All,
        };
        let mut results = if pending.is_empty() {
            BTreeMap::new()
        } else {
            isolate_failures(&pending, None, &mut attempt, &blame)
        };
        let reports = names
            .iter()
            .enumerate()
            .map(|(i, name)| ModuleReport {
                name: name.clone(),
                result: match results.remove(&i) {
                    Some(Ok(())) => Ok(RemoveOutcome::Removed),
                    Some(Err(e)) => Err(e),
                    None => Ok(RemoveOutcome::NotPresent),
                },
            })
            .collect();
        Ok(BatchReport {
            modules: reports,
            transactions: transactions.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;
    use crate::install::ModuleStore;
    use crate::render::ModuleOrigin;
    use crate::templates::TEMPLATES_MODULE;
    use spo_hostio::HostIoError;
    use std::sync::Mutex;
    use std::time::Duration;

    fn module(name: &str, text: &str) -> RenderedModule {
        RenderedModule {
            name: name.into(),
            origin: ModuleOrigin::Selinux,
            text: text.into(),
            lines: Vec::new(),
            requires: Vec::new(),
        }
    }

    fn modules(n: usize) -> Vec<RenderedModule> {
        (0..n)
            .map(|i| module(&format!("p{i}"), &format!("(block p{i})\n")))
            .collect()
    }

    /// How the fake store fails.
    #[derive(Default)]
    struct Refusals {
        /// Modules it refuses to install or remove.
        modules: BTreeSet<String>,
        /// Whether its message names the refused module (semodule's does for a bad module).
        named: bool,
        /// Whether every transaction hangs and is killed instead.
        hang: bool,
    }

    /// A store in memory that refuses some modules, transaction by transaction.
    #[derive(Default)]
    struct FakeStore {
        modules: Mutex<Vec<InstalledModule>>,
        transactions: Mutex<Vec<Vec<String>>>,
        refuse: Refusals,
    }

    impl FakeStore {
        fn refusing(names: &[&str], named: bool) -> Self {
            FakeStore {
                refuse: Refusals {
                    modules: names.iter().map(|s| (*s).to_owned()).collect(),
                    named,
                    hang: false,
                },
                ..FakeStore::default()
            }
        }

        fn check(&self, names: &[String]) -> Result<(), SelinuxError> {
            self.transactions.lock().expect("lock").push(names.to_vec());
            if self.refuse.hang {
                return Err(SelinuxError::Tool {
                    step: "installing with semodule".into(),
                    source: HostIoError::TimedOut {
                        program: "semodule".into(),
                        limit: Duration::from_secs(180),
                    },
                });
            }
            match names.iter().find(|n| self.refuse.modules.contains(*n)) {
                None => Ok(()),
                Some(bad) => Err(SelinuxError::Rejected {
                    tool: "semodule",
                    subject: format!("{} policy modules", names.len()),
                    location: self.refuse.named.then(|| {
                        Box::new(Location {
                            module: bad.clone(),
                            line: 3,
                            field: None,
                            source_line: None,
                        })
                    }),
                    message: format!("Failed to resolve allow statement at modules/420/{bad}/cil:3"),
                }),
            }
        }

        fn names_at(&self, priority: u16) -> Vec<String> {
            let mut names: Vec<String> = self
                .modules
                .lock()
                .expect("lock")
                .iter()
                .filter(|m| m.priority == priority)
                .map(|m| m.name.clone())
                .collect();
            names.sort();
            names
        }
    }

    impl ModuleStore for FakeStore {
        fn list(&self) -> Result<Vec<InstalledModule>, SelinuxError> {
            Ok(self.modules.lock().expect("lock").clone())
        }
        fn install(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError> {
            self.check(&modules.iter().map(|m| m.name.clone()).collect::<Vec<_>>())?;
            let mut all = self.modules.lock().expect("lock");
            for m in modules {
                all.retain(|x| !(x.name == m.name && x.priority == MODULE_PRIORITY));
                all.push(InstalledModule {
                    priority: MODULE_PRIORITY,
                    name: m.name.clone(),
                    checksum: Some(format!("sha256:{}", m.sha256())),
                });
            }
            Ok(())
        }
        fn remove(&self, names: &[String]) -> Result<(), SelinuxError> {
            self.check(names)?;
            self.modules
                .lock()
                .expect("lock")
                .retain(|m| !(names.contains(&m.name) && m.priority == MODULE_PRIORITY));
            Ok(())
        }
    }

    fn outcomes<T: Copy>(report: &BatchReport<T>) -> Vec<Result<T, String>> {
        report
            .modules
            .iter()
            .map(|m| m.result.as_ref().map(|o| *o).map_err(|e| e.to_string()))
            .collect()
    }

    /// The bisection alone, with an attempt that refuses any group holding a bad item.
    fn bisect(n: usize, bad: &[usize], blame: Blame) -> (BTreeMap<usize, Result<(), Arc<String>>>, usize) {
        let items: Vec<usize> = (0..n).collect();
        let mut attempts = 0;
        let mut attempt = |group: &[usize]| {
            attempts += 1;
            match group.iter().find(|i| bad.contains(i)) {
                Some(b) => Err(format!("refused {b}")),
                None => Ok(()),
            }
        };
        let blame = |e: &String, _: &[usize]| match blame {
            Blame::Item(_) => Blame::Item(e.trim_start_matches("refused ").parse().expect("index")),
            other => other,
        };
        let out = isolate_failures(&items, None, &mut attempt, &blame);
        (out, attempts)
    }

    #[test]
    fn bisection_finds_every_refused_item_and_keeps_the_rest() {
        for (n, bad) in [
            (20, vec![7]),
            (20, vec![0, 19]),
            (8, vec![2, 3, 5]),
            (1, vec![0]),
            (5, vec![]),
        ] {
            let (out, attempts) = bisect(n, &bad, Blame::Split);
            assert_eq!(out.len(), n);
            for (i, r) in &out {
                assert_eq!(r.is_err(), bad.contains(i), "item {i} of {n}, bad {bad:?}");
            }
            let bound = 1 + bad.len() * 2 * (usize::BITS - n.leading_zeros()) as usize;
            assert!(attempts <= bound, "{attempts} attempts for {n} items, {bad:?} bad");
            if bad.is_empty() {
                assert_eq!(attempts, 1, "a good batch is one attempt");
            }
        }
    }

    #[test]
    fn a_named_item_is_dropped_and_the_rest_tried_together() {
        let (out, attempts) = bisect(20, &[7], Blame::Item(0));
        assert_eq!(attempts, 2);
        assert_eq!(out[&7].as_ref().expect_err("refused").as_str(), "refused 7");
        assert_eq!(out.values().filter(|r| r.is_ok()).count(), 19);
        let (out, attempts) = bisect(20, &[3, 11], Blame::Item(0));
        assert_eq!(attempts, 3);
        assert_eq!(out.values().filter(|r| r.is_err()).count(), 2);
    }

    #[test]
    fn a_failure_not_about_the_input_is_not_retried() {
        let (out, attempts) = bisect(20, &[7], Blame::All);
        assert_eq!(attempts, 1);
        assert!(out.values().all(Result::is_err));
    }

    #[test]
    fn a_batch_is_one_transaction_and_unchanged_modules_none() {
        let store = Arc::new(FakeStore::default());
        let node = SelinuxNode::new(store.clone()).with_extra_modules(vec![module("shim", "(y)")]);
        let batch = modules(20);
        let report = node.install_modules(&batch).expect("batch");
        assert_eq!(report.transactions, 1);
        assert!(outcomes(&report).iter().all(|o| *o == Ok(InstallOutcome::Written)));
        assert_eq!(
            store.transactions.lock().expect("lock")[0].len(),
            22,
            "shim, templates, 20 profiles"
        );
        let again = node.install_modules(&batch).expect("again");
        assert_eq!(again.transactions, 0);
        assert!(outcomes(&again).iter().all(|o| *o == Ok(InstallOutcome::Unchanged)));
        // One changed profile: one transaction with it alone (the support modules are in).
        let mut changed = batch.clone();
        changed[4].text = "(block p4 (typepermissive process))\n".into();
        let report = node.install_modules(&changed).expect("changed");
        assert_eq!(report.transactions, 1);
        assert_eq!(store.transactions.lock().expect("lock")[1], vec!["p4".to_owned()]);
        assert_eq!(outcomes(&report)[4], Ok(InstallOutcome::Written));
        assert_eq!(outcomes(&report)[5], Ok(InstallOutcome::Unchanged));
    }

    #[test]
    fn one_bad_module_named_by_semodule_costs_one_more_transaction() {
        let store = Arc::new(FakeStore::refusing(&["p13"], true));
        let states = Arc::new(Mutex::new(Vec::new()));
        let sink = states.clone();
        let node = SelinuxNode::new(store.clone())
            .with_status_sink(Arc::new(move |n, s| sink.lock().expect("lock").push((n.to_owned(), s))));
        let report = node.install_modules(&modules(20)).expect("batch");
        assert_eq!(report.transactions, 2);
        let got = outcomes(&report);
        assert_eq!(got.iter().filter(|o| **o == Ok(InstallOutcome::Written)).count(), 19);
        let err = got[13].as_ref().expect_err("refused");
        assert!(
            err.contains("p13") && err.contains("Failed to resolve allow statement"),
            "{err}"
        );
        let mut installed = store.names_at(MODULE_PRIORITY);
        installed.retain(|n| n != TEMPLATES_MODULE);
        assert_eq!(installed.len(), 19);
        assert!(!installed.contains(&"p13".to_owned()));
        let states = states.lock().expect("lock");
        assert_eq!(states.len(), 40, "InProgress then a final state for each");
        assert!(states.contains(&("p13".to_owned(), ProfileState::Error)));
        assert!(states.contains(&("p12".to_owned(), ProfileState::Installed)));
    }

    #[test]
    fn unnamed_refusals_are_bisected_and_named_in_the_error() {
        let store = Arc::new(FakeStore::refusing(&["p3", "p17"], false));
        let node = SelinuxNode::new(store.clone());
        let report = node.install_modules(&modules(20)).expect("batch");
        let got = outcomes(&report);
        for (i, o) in got.iter().enumerate() {
            if i == 3 || i == 17 {
                let err = o.as_ref().expect_err("refused");
                assert!(
                    err.starts_with(&format!("semodule rejected SelinuxProfile p{i}: ")),
                    "{err}"
                );
            } else {
                assert_eq!(*o, Ok(InstallOutcome::Written), "p{i}");
            }
        }
        // The whole batch, the support modules alone, then halving: far fewer than 20.
        assert!(report.transactions <= 2 + 2 * 2 * 5, "{}", report.transactions);
        assert_eq!(store.names_at(MODULE_PRIORITY).len(), 18 + 1);
    }

    #[test]
    fn a_broken_support_module_fails_every_profile_in_two_transactions() {
        let store = Arc::new(FakeStore::refusing(&[TEMPLATES_MODULE], false));
        let node = SelinuxNode::new(store.clone());
        let report = node.install_modules(&modules(20)).expect("batch");
        assert_eq!(report.transactions, 2);
        assert!(outcomes(&report).iter().all(|o| o.is_err()));
        assert!(store.names_at(MODULE_PRIORITY).is_empty());
    }

    #[test]
    fn a_hung_semodule_fails_the_batch_once() {
        let store = Arc::new(FakeStore {
            refuse: Refusals {
                hang: true,
                ..Refusals::default()
            },
            ..FakeStore::default()
        });
        let node = SelinuxNode::new(store.clone());
        let report = node.install_modules(&modules(20)).expect("batch");
        assert_eq!(report.transactions, 1, "a timeout is not retried");
        for m in &report.modules {
            let e = m.result.as_ref().expect_err("timed out");
            assert!(e.is_timeout(), "{e}");
        }
    }

    #[test]
    fn foreign_and_duplicate_names_are_refused_before_semodule() {
        let store = Arc::new(FakeStore::default());
        store.modules.lock().expect("lock").push(InstalledModule {
            priority: 100,
            name: "apache".into(),
            checksum: None,
        });
        let node = SelinuxNode::new(store.clone());
        let batch = vec![
            module("apache", "(block apache)"),
            module("a", "(block a)"),
            module("a", "(block a (typepermissive process))"),
            module(TEMPLATES_MODULE, "(block x)"),
        ];
        let report = node.install_modules(&batch).expect("batch");
        let got = outcomes(&report);
        assert!(got[0].as_ref().is_err_and(|e| e.contains("priority 100")), "{got:?}");
        assert_eq!(got[1], Ok(InstallOutcome::Written));
        assert!(got[2].as_ref().is_err_and(|e| e.contains("named twice")), "{got:?}");
        assert!(got[3].as_ref().is_err_and(|e| e.contains("named twice")), "{got:?}");
        assert_eq!(report.transactions, 1);
        assert_eq!(
            store.transactions.lock().expect("lock")[0],
            vec![TEMPLATES_MODULE.to_owned(), "a".to_owned()]
        );
        // Nothing to install: no transaction, and the templates are not installed alone.
        let store = Arc::new(FakeStore::default());
        let report = SelinuxNode::new(store.clone())
            .install_modules(&[module("x", "(x)")])
            .expect("one");
        assert_eq!(report.transactions, 1);
        let empty = SelinuxNode::new(store.clone()).install_modules(&[]).expect("empty");
        assert_eq!((empty.transactions, empty.modules.len()), (0, 0));
    }

    #[test]
    fn removal_is_one_transaction_and_leaves_what_is_not_ours() {
        let store = Arc::new(FakeStore::refusing(&["p5"], false));
        store.modules.lock().expect("lock").push(InstalledModule {
            priority: 100,
            name: "container".into(),
            checksum: None,
        });
        let node = SelinuxNode::new(store.clone());
        let mut batch = modules(8);
        batch.remove(5);
        node.install_modules(&batch).expect("install");
        store.transactions.lock().expect("lock").clear();

        let names: Vec<String> = ["p0", "p1", "p2", "container", "missing", "p1"]
            .map(str::to_owned)
            .to_vec();
        let report = node.remove_modules(&names).expect("remove");
        assert_eq!(report.transactions, 1);
        assert_eq!(
            outcomes(&report),
            vec![
                Ok(RemoveOutcome::Removed),
                Ok(RemoveOutcome::Removed),
                Ok(RemoveOutcome::Removed),
                Ok(RemoveOutcome::NotPresent),
                Ok(RemoveOutcome::NotPresent),
                Ok(RemoveOutcome::NotPresent)
            ]
        );
        assert_eq!(store.names_at(100), vec!["container".to_owned()]);

        // p5 was never installed here; pretend it was, so its removal is refused.
        store.modules.lock().expect("lock").push(InstalledModule {
            priority: MODULE_PRIORITY,
            name: "p5".into(),
            checksum: None,
        });
        let names: Vec<String> = ["p3", "p4", "p5", "p6"].map(str::to_owned).to_vec();
        let report = node.remove_modules(&names).expect("remove");
        let got = outcomes(&report);
        assert!(got[2].is_err(), "{got:?}");
        assert_eq!(got.iter().filter(|o| **o == Ok(RemoveOutcome::Removed)).count(), 3);
    }

    #[test]
    fn plans_are_pure() {
        let listing = vec![
            InstalledModule {
                priority: MODULE_PRIORITY,
                name: "same".into(),
                checksum: Some(format!("sha256:{}", module("same", "(s)").sha256())),
            },
            InstalledModule {
                priority: 100,
                name: "sys".into(),
                checksum: None,
            },
        ];
        let templates = templates_module();
        let plan = plan_batch(
            &listing,
            &[(&templates, Want::Exact)],
            &[module("same", "(s)"), module("new", "(n)"), module("sys", "(x)")],
        )
        .expect("plan");
        assert!(matches!(
            plan.decisions.as_slice(),
            [
                BatchDecision::Unchanged,
                BatchDecision::Install,
                BatchDecision::Refused(SelinuxError::ForeignModule { priority: 100, .. })
            ]
        ));
        assert_eq!(plan.support.len(), 1);
        let nothing = plan_batch(&listing, &[(&templates, Want::Exact)], &[module("same", "(s)")]).expect("plan");
        assert!(nothing.support.is_empty(), "support goes in only with a profile");
        assert_eq!(
            plan_removal(&listing, &["same".into(), "sys".into(), "gone".into(), "same".into()]),
            vec![true, false, false, false]
        );
    }
}
