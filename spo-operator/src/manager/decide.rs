//! The manager's decisions for one profile of any kind (pure): its status, the in-use
//! finalizer, and the cleanup after nodes that no longer exist. What differs per kind is the
//! status type ([`KindStatus`]): seccomp adds `localhostProfile`, the SELinux kinds `usage`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use spo_model::ProfileState;
use spo_model::apparmor::AppArmorProfileStatus;
use spo_model::common::{CONDITION_READY, Condition};
use spo_model::contract::{InstallName, ProfileKind};
use spo_model::names::{FINALIZER_IN_USE, NODE_FINALIZER_SUFFIX};
use spo_model::seccomp::SeccompProfileStatus;
use spo_model::selinux::SelinuxProfileStatus;
use spo_seccomp::node::localhost_profile;

use crate::nodestatus::{NodeReport, clip_message, status_name};

/// What every kind's status holds, decided the same way for all.
#[derive(Clone, Debug, PartialEq)]
pub struct CommonStatus {
    /// The aggregated state.
    pub state: ProfileState,
    /// The Ready condition.
    pub ready: Condition,
    /// The pods using the profile, sorted (`None` when there are none).
    pub active_workloads: Option<Vec<String>>,
}

/// A kind's `status` type, as the manager writes it.
pub trait KindStatus: Clone + PartialEq + std::fmt::Debug {
    /// The Ready condition.
    fn ready(&self) -> Option<&Condition>;
    /// The full status of profile `name` of `kind` from the common part and the current
    /// status (fields the manager does not own are kept).
    fn desired(kind: ProfileKind, name: &str, current: Option<&Self>, common: CommonStatus) -> Self;
}

fn ready_of(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == CONDITION_READY)
}

impl KindStatus for SeccompProfileStatus {
    fn ready(&self) -> Option<&Condition> {
        ready_of(&self.conditions)
    }
    /// `localhostProfile`: `operator/<name>.json`.
    fn desired(_: ProfileKind, name: &str, current: Option<&Self>, common: CommonStatus) -> Self {
        SeccompProfileStatus {
            status: Some(common.state),
            conditions: vec![common.ready],
            path: current.and_then(|s| s.path.clone()),
            localhost_profile: InstallName::new(name).ok().map(|n| localhost_profile(&n)),
            active_workloads: common.active_workloads,
        }
    }
}

/// The SELinux type pods use for profile `name` of `kind` (`<name>.process`, or
/// `<name>_raw.process` for a RawSelinuxProfile, whose block is `<name>_raw`).
pub fn selinux_usage(kind: ProfileKind, name: &str) -> String {
    match kind {
        ProfileKind::RawSelinux => format!("{name}_raw.process"),
        _ => format!("{name}.process"),
    }
}

impl KindStatus for SelinuxProfileStatus {
    fn ready(&self) -> Option<&Condition> {
        ready_of(&self.conditions)
    }
    /// `usage`: the type pods put in `seLinuxOptions.type`.
    fn desired(kind: ProfileKind, name: &str, _: Option<&Self>, common: CommonStatus) -> Self {
        SelinuxProfileStatus {
            status: Some(common.state),
            conditions: vec![common.ready],
            usage: Some(selinux_usage(kind, name)),
            active_workloads: common.active_workloads,
        }
    }
}

impl KindStatus for AppArmorProfileStatus {
    fn ready(&self) -> Option<&Condition> {
        ready_of(&self.conditions)
    }
    fn desired(_: ProfileKind, _: &str, _: Option<&Self>, common: CommonStatus) -> Self {
        AppArmorProfileStatus {
            status: Some(common.state),
            conditions: vec![common.ready],
            active_workloads: common.active_workloads,
        }
    }
}

/// What the manager knows about a profile object.
#[derive(Clone, Debug)]
pub struct ProfileView<'a, S> {
    /// The kind.
    pub kind: ProfileKind,
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.generation`: the spec version this decision observed, written into the
    /// Ready condition's `observedGeneration`.
    pub generation: Option<i64>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `metadata.finalizers`.
    pub finalizers: &'a [String],
    /// The current `status`.
    pub status: Option<&'a S>,
    /// How long ago it was created (`None`: unknown, as if long ago).
    pub age: Option<Duration>,
}

/// How long a new profile may go without a status while no node has reported on it: the
/// manager does not write `Pending` for it before then (a node's first report usually comes
/// sooner, and saves the write; in a burst of 1,000 profiles that is 1,000 of about 6,000
/// API writes).
pub const QUIET_WHILE_NEW: Duration = Duration::from_secs(10);

/// What the manager does for one profile.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerPlan<S> {
    /// The status to write, when it differs from the current one.
    pub status: Option<S>,
    /// `Some(true)`: add `in-use-by-active-pods`; `Some(false)`: remove it.
    pub in_use_finalizer: Option<bool>,
    /// Finalizers of nodes that no longer exist, to remove.
    pub drop_finalizers: Vec<String>,
    /// Node statuses of nodes that no longer exist, to delete (by name).
    pub delete_node_statuses: Vec<String>,
    /// Look again after this long (a new profile's `Pending`, held back for
    /// [`QUIET_WHILE_NEW`]).
    pub recheck_after: Option<Duration>,
}

impl<S> Default for ManagerPlan<S> {
    fn default() -> Self {
        ManagerPlan {
            status: None,
            in_use_finalizer: None,
            drop_finalizers: Vec::new(),
            delete_node_statuses: Vec::new(),
            recheck_after: None,
        }
    }
}

impl<S> ManagerPlan<S> {
    /// Whether nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.in_use_finalizer.is_none()
            && self.drop_finalizers.is_empty()
            && self.delete_node_statuses.is_empty()
            && self.recheck_after.is_none()
    }
}

/// The node a per-node finalizer (`<node>-deleted`) is about.
pub fn finalizer_node(finalizer: &str) -> Option<&str> {
    finalizer.strip_suffix(NODE_FINALIZER_SUFFIX).filter(|n| !n.is_empty())
}

/// Decides for one profile.
///
/// - State: `Terminating` while it is being deleted; otherwise the lowest state over the
///   node statuses of existing nodes (`Pending` when no node reported yet). The Ready
///   condition follows upstream's mapping and, for errors (and for `Disabled`, which the
///   SPOD may cause on nodes), carries each such node's message (`node-1: spec.syscalls[0]...`).
///   Its `lastTransitionTime` only moves when the condition's status changes; its
///   `observedGeneration` is the profile's `metadata.generation`, so a spec change rewrites
///   the condition.
/// - The kind's own fields ([`KindStatus::desired`]); `activeWorkloads`: the pods, sorted.
/// - No status at all for a profile younger than [`QUIET_WHILE_NEW`] that has none and no
///   node report yet; it is looked at again when that time is up ([`ManagerPlan::recheck_after`]).
/// - `in-use-by-active-pods` is held while pods use the profile (never added once it is
///   being deleted: the apiserver forbids new finalizers then).
/// - Finalizers and node statuses of nodes that no longer exist are dropped, so a profile
///   is never stuck Terminating because its node went away with its daemon. Only done when
///   `nodes` is a complete list (`nodes_known`).
pub fn plan_profile<S: KindStatus>(
    view: &ProfileView<'_, S>,
    reports: Option<&BTreeMap<String, NodeReport>>,
    nodes: &BTreeSet<String>,
    nodes_known: bool,
    workloads: &BTreeSet<String>,
    now: &str,
) -> ManagerPlan<S> {
    let exists = |node: &str| !nodes_known || nodes.contains(node);
    let mut plan = ManagerPlan::default();

    let live: Vec<&NodeReport> = reports
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|r| exists(&r.node))
        .collect();
    let state = if view.deleting {
        ProfileState::Terminating
    } else {
        ProfileState::aggregate(live.iter().filter_map(|r| r.state)).unwrap_or(ProfileState::Pending)
    };
    let message = if matches!(state, ProfileState::Error | ProfileState::Disabled) {
        let parts: Vec<String> = live
            .iter()
            .filter(|r| r.state == Some(state))
            .filter_map(|r| match (state, r.message.as_deref()) {
                (ProfileState::Error, m) => Some(format!("{}: {}", r.node, m.unwrap_or("failed"))),
                (_, Some(m)) => Some(format!("{}: {m}", r.node)),
                (_, None) => None,
            })
            .collect();
        (!parts.is_empty()).then(|| clip_message(&parts.join("; ")))
    } else {
        None
    };
    let mut ready = Condition::ready(state, view.generation, now, message);
    if let Some(previous) = view.status.and_then(KindStatus::ready)
        && previous.status == ready.status
    {
        ready.last_transition_time = previous.last_transition_time.clone();
    }
    let common = CommonStatus {
        state,
        ready,
        active_workloads: if workloads.is_empty() {
            None
        } else {
            Some(workloads.iter().cloned().collect())
        },
    };
    let desired = S::desired(view.kind, view.name, view.status, common);
    // A new profile no node has reported on yet gets no status of its own for a while: the
    // first report usually comes sooner and makes `Pending` a write nobody reads.
    let quiet_for = view
        .age
        .filter(|_| state == ProfileState::Pending && view.status.is_none() && live.is_empty())
        .and_then(|age| QUIET_WHILE_NEW.checked_sub(age))
        .filter(|left| !left.is_zero());
    if let Some(left) = quiet_for {
        plan.recheck_after = Some(left);
    } else if view.status != Some(&desired) {
        plan.status = Some(desired);
    }

    let has_in_use = view.finalizers.iter().any(|f| f == FINALIZER_IN_USE);
    let want_in_use = !workloads.is_empty();
    if want_in_use && !has_in_use && !view.deleting {
        plan.in_use_finalizer = Some(true);
    } else if !want_in_use && has_in_use {
        plan.in_use_finalizer = Some(false);
    }

    if nodes_known {
        plan.drop_finalizers = view
            .finalizers
            .iter()
            .filter(|f| finalizer_node(f).is_some_and(|n| !nodes.contains(n)))
            .cloned()
            .collect();
        let mut gone: BTreeSet<String> = reports
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|r| !nodes.contains(&r.node))
            .map(|r| status_name(view.kind, view.name, &r.node))
            .collect();
        gone.extend(
            plan.drop_finalizers
                .iter()
                .filter_map(|f| finalizer_node(f))
                .map(|n| status_name(view.kind, view.name, n)),
        );
        plan.delete_node_statuses = gone.into_iter().collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-02T03:04:05Z";

    fn reports(list: &[(&str, ProfileState, Option<&str>)]) -> BTreeMap<String, NodeReport> {
        list.iter()
            .map(|(n, s, m)| {
                (
                    format!("p-{n}"),
                    NodeReport {
                        node: (*n).to_owned(),
                        state: Some(*s),
                        message: m.map(Into::into),
                    },
                )
            })
            .collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn view<'a>(fins: &'a [String], status: Option<&'a SeccompProfileStatus>) -> ProfileView<'a, SeccompProfileStatus> {
        ProfileView {
            kind: ProfileKind::Seccomp,
            name: "p",
            generation: Some(1),
            deleting: false,
            finalizers: fins,
            status,
            age: None,
        }
    }

    #[test]
    fn the_lowest_node_state_wins_and_errors_carry_messages() {
        let r = reports(&[
            ("n1", ProfileState::Installed, None),
            (
                "n2",
                ProfileState::Error,
                Some("spec.syscalls[0].names[0]: unknown syscall"),
            ),
        ]);
        let plan = plan_profile(&view(&[], None), Some(&r), &set(&["n1", "n2"]), true, &set(&[]), NOW);
        let st = plan.status.expect("status");
        assert_eq!(st.status, Some(ProfileState::Error));
        let ready = &st.conditions[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str(), ready.reason.as_str()),
            ("Ready", "False", "Unavailable")
        );
        assert_eq!(ready.message, "n2: spec.syscalls[0].names[0]: unknown syscall");
        assert_eq!(ready.observed_generation, Some(1));
        assert_eq!(st.localhost_profile.as_deref(), Some("operator/p.json"));
        assert!(plan.drop_finalizers.is_empty() && plan.delete_node_statuses.is_empty());
    }

    #[test]
    fn all_installed_is_ready_and_an_unchanged_status_is_not_rewritten() {
        let r = reports(&[
            ("n1", ProfileState::Installed, None),
            ("n2", ProfileState::Installed, None),
        ]);
        let nodes = set(&["n1", "n2"]);
        let first = plan_profile(&view(&[], None), Some(&r), &nodes, true, &set(&[]), NOW);
        let st = first.status.expect("status");
        assert_eq!(st.status, Some(ProfileState::Installed));
        assert_eq!(st.conditions[0].status, "True");
        let later = plan_profile(
            &view(&[], Some(&st)),
            Some(&r),
            &nodes,
            true,
            &set(&[]),
            "2030-01-01T00:00:00Z",
        );
        assert!(later.is_empty(), "{later:?}");
    }

    #[test]
    fn transition_time_moves_only_with_the_condition_status() {
        let pending = plan_profile(&view(&[], None), None, &set(&[]), true, &set(&[]), NOW)
            .status
            .expect("status");
        assert_eq!(pending.status, Some(ProfileState::Pending));
        let r = reports(&[("n1", ProfileState::InProgress, None)]);
        let progress = plan_profile(
            &view(&[], Some(&pending)),
            Some(&r),
            &set(&["n1"]),
            true,
            &set(&[]),
            "T2",
        )
        .status
        .expect("status");
        assert_eq!(progress.conditions[0].last_transition_time, NOW, "still False");
        let r = reports(&[("n1", ProfileState::Installed, None)]);
        let ready = plan_profile(
            &view(&[], Some(&progress)),
            Some(&r),
            &set(&["n1"]),
            true,
            &set(&[]),
            "T3",
        )
        .status
        .expect("status");
        assert_eq!(ready.conditions[0].last_transition_time, "T3");
    }

    #[test]
    fn workloads_hold_the_in_use_finalizer() {
        let pods = set(&["ns/a", "ns/b"]);
        let plan = plan_profile(&view(&[], None), None, &set(&[]), true, &pods, NOW);
        assert_eq!(plan.in_use_finalizer, Some(true));
        assert_eq!(
            plan.status.and_then(|s| s.active_workloads),
            Some(vec!["ns/a".to_owned(), "ns/b".to_owned()])
        );
        let fins = vec![FINALIZER_IN_USE.to_owned()];
        assert_eq!(
            plan_profile(&view(&fins, None), None, &set(&[]), true, &pods, NOW).in_use_finalizer,
            None
        );
        let released = plan_profile(&view(&fins, None), None, &set(&[]), true, &set(&[]), NOW);
        assert_eq!(released.in_use_finalizer, Some(false));
        let mut deleting = view(&[], None);
        deleting.deleting = true;
        assert_eq!(
            plan_profile(&deleting, None, &set(&[]), true, &pods, NOW).in_use_finalizer,
            None,
            "no finalizer is added to an object being deleted"
        );
    }

    #[test]
    fn deleting_profiles_are_terminating() {
        let mut v = view(&[], None);
        v.deleting = true;
        let r = reports(&[("n1", ProfileState::Installed, None)]);
        let st = plan_profile(&v, Some(&r), &set(&["n1"]), true, &set(&[]), NOW)
            .status
            .expect("status");
        assert_eq!(st.status, Some(ProfileState::Terminating));
        assert_eq!(st.conditions[0].reason, "Deleting");
    }

    #[test]
    fn gone_nodes_lose_finalizers_and_statuses_and_do_not_count() {
        let fins = vec![
            "n1-deleted".to_owned(),
            "gone-deleted".to_owned(),
            FINALIZER_IN_USE.to_owned(),
            "example.com/other".to_owned(),
        ];
        let r = reports(&[
            ("n1", ProfileState::Installed, None),
            ("gone", ProfileState::Error, Some("x")),
        ]);
        let plan = plan_profile(&view(&fins, None), Some(&r), &set(&["n1"]), true, &set(&["ns/a"]), NOW);
        assert_eq!(plan.drop_finalizers, vec!["gone-deleted".to_owned()]);
        assert_eq!(plan.delete_node_statuses, vec!["p-gone".to_owned()]);
        assert_eq!(plan.status.and_then(|s| s.status), Some(ProfileState::Installed));
        // Until the node list is complete nothing is dropped.
        let unsure = plan_profile(&view(&fins, None), Some(&r), &set(&[]), false, &set(&["ns/a"]), NOW);
        assert!(unsure.drop_finalizers.is_empty() && unsure.delete_node_statuses.is_empty());
    }

    #[test]
    fn a_new_profile_without_reports_gets_no_pending_write_until_it_has_waited() {
        let fresh = ProfileView {
            age: Some(Duration::from_secs(3)),
            ..view(&[], None)
        };
        let plan = plan_profile(&fresh, None, &set(&["n1"]), true, &set(&[]), NOW);
        assert_eq!(plan.status, None, "Pending held back");
        assert_eq!(plan.recheck_after, Some(Duration::from_secs(7)));
        assert!(!plan.is_empty(), "the recheck must be scheduled");
        // Once it has waited, Pending is written.
        let old = ProfileView {
            age: Some(QUIET_WHILE_NEW),
            ..view(&[], None)
        };
        let plan = plan_profile(&old, None, &set(&["n1"]), true, &set(&[]), NOW);
        assert_eq!(plan.status.and_then(|s| s.status), Some(ProfileState::Pending));
        assert_eq!(plan.recheck_after, None);
        // A node's report is written at once, however new the profile.
        let r = reports(&[("n1", ProfileState::Installed, None)]);
        let plan = plan_profile(&fresh, Some(&r), &set(&["n1"]), true, &set(&[]), NOW);
        assert_eq!(plan.status.and_then(|s| s.status), Some(ProfileState::Installed));
        // So is a deletion.
        let deleting = ProfileView {
            deleting: true,
            ..fresh
        };
        let plan = plan_profile(&deleting, None, &set(&["n1"]), true, &set(&[]), NOW);
        assert_eq!(plan.status.and_then(|s| s.status), Some(ProfileState::Terminating));
    }

    #[test]
    fn selinux_kinds_carry_their_usage_and_disabled_nodes_say_why() {
        let r = reports(&[
            ("n1", ProfileState::Disabled, Some("SELinux is off in SPOD ns/spod")),
            ("n2", ProfileState::Installed, None),
        ]);
        for (kind, usage) in [
            (ProfileKind::Selinux, "p.process"),
            (ProfileKind::RawSelinux, "p_raw.process"),
        ] {
            let v: ProfileView<'_, SelinuxProfileStatus> = ProfileView {
                kind,
                name: "p",
                generation: Some(1),
                deleting: false,
                finalizers: &[],
                status: None,
                age: None,
            };
            let st = plan_profile(&v, Some(&r), &set(&["n1", "n2"]), true, &set(&["ns/pod"]), NOW)
                .status
                .expect("status");
            assert_eq!(st.usage.as_deref(), Some(usage));
            assert_eq!(st.status, Some(ProfileState::Disabled));
            assert_eq!(st.conditions[0].message, "n1: SELinux is off in SPOD ns/spod");
            assert_eq!(st.active_workloads, Some(vec!["ns/pod".to_owned()]));
        }
        let v: ProfileView<'_, AppArmorProfileStatus> = ProfileView {
            kind: ProfileKind::AppArmor,
            name: "p",
            generation: Some(1),
            deleting: false,
            finalizers: &[],
            status: None,
            age: None,
        };
        let plan = plan_profile(&v, None, &set(&["gone"]), true, &set(&[]), NOW);
        assert_eq!(plan.status.and_then(|s| s.status), Some(ProfileState::Pending));
        let fins = vec!["n9-deleted".to_owned()];
        let v = ProfileView { finalizers: &fins, ..v };
        assert_eq!(
            plan_profile(&v, None, &set(&["n1"]), true, &set(&[]), NOW).delete_node_statuses,
            vec!["p-n9.apparmorprofile".to_owned()],
            "node statuses of other kinds carry their suffix"
        );
    }

    #[test]
    fn node_finalizers_parse() {
        assert_eq!(finalizer_node("node-1-deleted"), Some("node-1"));
        assert_eq!(finalizer_node("-deleted"), None);
        assert_eq!(finalizer_node(FINALIZER_IN_USE), None);
    }

    #[test]
    fn the_ready_condition_records_the_generation_it_observed() {
        let r = reports(&[("n1", ProfileState::Installed, None)]);
        let nodes = set(&["n1"]);
        let first = plan_profile(&view(&[], None), Some(&r), &nodes, true, &set(&[]), NOW)
            .status
            .expect("status");
        assert_eq!(first.conditions[0].observed_generation, Some(1));
        let mut edited = view(&[], Some(&first));
        edited.generation = Some(2);
        let second = plan_profile(&edited, Some(&r), &nodes, true, &set(&[]), "T2")
            .status
            .expect("a spec change rewrites the condition");
        assert_eq!(second.conditions[0].observed_generation, Some(2));
        assert_eq!(
            second.conditions[0].last_transition_time, NOW,
            "the status did not change, so neither does the transition time"
        );
    }
}
