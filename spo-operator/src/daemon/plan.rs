//! The daemon's decisions (pure): what to do with one profile on this node.

use std::time::Duration;

use spo_model::ProfileState;
use spo_model::contract::SyncOutcome;
use spo_model::names::{FINALIZER_IN_USE, node_finalizer};

use crate::nodestatus::NodeReport;

/// What the daemon does with a profile it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePlan {
    /// Bring the node in line (install, refresh, or remove when disabled/partial) and report.
    /// `add_finalizer`: put `<node>-deleted` on the profile first, so that deleting the
    /// profile waits until this node has removed its file.
    Sync {
        /// The node finalizer is missing.
        add_finalizer: bool,
    },
    /// The profile is being deleted but pods still use it (the manager holds
    /// `in-use-by-active-pods`): keep the file, report `Terminating`.
    Hold,
    /// The profile is being deleted and nothing uses it: remove the file, delete the node
    /// status, then drop the node finalizer (last, so a crash in between repeats the work).
    Release {
        /// The node finalizer is present.
        remove_finalizer: bool,
    },
}

/// Decides what to do with a profile on `node` from its deletion mark and finalizers.
pub fn plan_profile(node: &str, deleting: bool, finalizers: &[String]) -> NodePlan {
    let ours = node_finalizer(node);
    let has_ours = finalizers.contains(&ours);
    if !deleting {
        return NodePlan::Sync {
            add_finalizer: !has_ours,
        };
    }
    if finalizers.iter().any(|f| f == FINALIZER_IN_USE) {
        NodePlan::Hold
    } else {
        NodePlan::Release {
            remove_finalizer: has_ours,
        }
    }
}

/// Whether a sync outcome deserves an Event: an `Error` that is new (the previous report
/// was not this same error), so a profile that stays broken does not flood events.
pub fn should_emit_event(previous: Option<&NodeReport>, outcome: &SyncOutcome) -> bool {
    if outcome.state != ProfileState::Error {
        return false;
    }
    match previous {
        Some(p) => p.state != Some(ProfileState::Error) || p.message != outcome.message,
        None => true,
    }
}

/// When to look at a profile again after `attempts` consecutive failures (1 = first): 1 s
/// doubling up to 5 minutes. Only the failing profile is requeued; healthy ones wait for a
/// change (there is no periodic resync).
pub fn retry_after(attempts: u32) -> Duration {
    let secs = 1u64 << attempts.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fins(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn live_profiles_are_synced_and_get_our_finalizer_once() {
        assert_eq!(plan_profile("n1", false, &[]), NodePlan::Sync { add_finalizer: true });
        assert_eq!(
            plan_profile("n1", false, &fins(&["n2-deleted"])),
            NodePlan::Sync { add_finalizer: true }
        );
        assert_eq!(
            plan_profile("n1", false, &fins(&["n1-deleted", FINALIZER_IN_USE])),
            NodePlan::Sync { add_finalizer: false }
        );
    }

    #[test]
    fn deleting_profiles_are_held_while_used_then_released() {
        assert_eq!(
            plan_profile("n1", true, &fins(&["n1-deleted", FINALIZER_IN_USE])),
            NodePlan::Hold
        );
        assert_eq!(
            plan_profile("n1", true, &fins(&["n1-deleted", "n2-deleted"])),
            NodePlan::Release { remove_finalizer: true }
        );
        assert_eq!(
            plan_profile("n1", true, &fins(&["n2-deleted"])),
            NodePlan::Release {
                remove_finalizer: false
            },
            "a node without its finalizer still cleans up (the status may exist)"
        );
        // Never adds a finalizer to an object being deleted (the apiserver forbids it).
        for f in [vec![], fins(&["x"]), fins(&[FINALIZER_IN_USE])] {
            assert!(!matches!(plan_profile("n1", true, &f), NodePlan::Sync { .. }));
        }
    }

    #[test]
    fn events_only_for_new_errors() {
        let err = |m: &str| SyncOutcome {
            state: ProfileState::Error,
            message: Some(m.into()),
            changed: false,
        };
        let report = |s: ProfileState, m: Option<&str>| NodeReport {
            node: "n".into(),
            state: Some(s),
            message: m.map(Into::into),
        };
        assert!(should_emit_event(None, &err("a")));
        assert!(should_emit_event(
            Some(&report(ProfileState::Installed, None)),
            &err("a")
        ));
        assert!(!should_emit_event(
            Some(&report(ProfileState::Error, Some("a"))),
            &err("a")
        ));
        assert!(should_emit_event(
            Some(&report(ProfileState::Error, Some("a"))),
            &err("b")
        ));
        let ok = SyncOutcome {
            state: ProfileState::Installed,
            message: None,
            changed: true,
        };
        assert!(!should_emit_event(None, &ok));
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        assert_eq!(retry_after(1), Duration::from_secs(1));
        assert_eq!(retry_after(2), Duration::from_secs(2));
        assert_eq!(retry_after(5), Duration::from_secs(16));
        assert_eq!(retry_after(40), Duration::from_secs(300));
        assert!((1..50).all(|a| retry_after(a) <= retry_after(a + 1)));
    }
}
