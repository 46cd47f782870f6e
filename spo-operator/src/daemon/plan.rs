//! The daemon's decisions (pure).
//!
//! The daemon works in two stages, each decided here:
//!
//! 1. **Node side** ([`plan_node`]): what to do with the profile's artifact on this node
//!    (install, keep, remove). Only the local filesystem or policy store is touched, so it
//!    runs as soon as a watch event arrives, without waiting for any API round trip.
//! 2. **API side** ([`desired_report`], [`plan_report`]): what the cluster must be told
//!    about what the node side did: our `<node>-deleted` finalizer on the profile, the
//!    node status, and on deletion the status removed and the finalizer released. It runs
//!    behind the node side, at its own pace, and repeats nothing that is already reported.
//!
//! The order rules that keep this safe: the finalizer is applied before a node status is
//! written; on deletion the artifact is removed before the node status is deleted, and the
//! status before the finalizer is released; a report is only made about the object (uid)
//! the node side acted on.

use std::time::Duration;

use spo_model::ProfileState;
use spo_model::contract::{SyncFailure, SyncStep};
use spo_model::names::FINALIZER_IN_USE;

use crate::metrics::ErrorReason;
use crate::nodestatus::NodeReport;

/// What the node side does with a profile it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePlan {
    /// Bring the node in line: install, refresh, or remove when disabled/partial.
    Sync,
    /// Being deleted while pods use it (the manager holds `in-use-by-active-pods`): keep
    /// the artifact, report `Terminating`.
    Hold,
    /// Being deleted and unused: remove the artifact.
    Remove,
}

/// Decides the node side from the profile's deletion mark and finalizers.
pub fn plan_node(deleting: bool, finalizers: &[String]) -> NodePlan {
    if !deleting {
        NodePlan::Sync
    } else if finalizers.iter().any(|f| f == FINALIZER_IN_USE) {
        NodePlan::Hold
    } else {
        NodePlan::Remove
    }
}

/// What the node side did, as the API side reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeResult {
    /// The node is in `state` (with a message and a metrics reason for errors).
    Report {
        /// The node's state for this profile.
        state: ProfileState,
        /// Why, for `Error`.
        message: Option<String>,
        /// The metrics reason, for `Error`.
        reason: Option<ErrorReason>,
    },
    /// The artifact of a profile being deleted is gone from the node.
    Removed,
}

/// What the API side should make true for a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desired {
    /// Nothing yet: the node side has not acted on this object, or acted on an older
    /// phase of it (it will act again and trigger the API side).
    Wait,
    /// The node status says `state` (and `message`).
    Status {
        /// The state to report.
        state: ProfileState,
        /// The message to report.
        message: Option<String>,
    },
    /// The node is done with a deleted profile: delete the status, release the finalizer.
    Release,
}

/// What the API side should make true, from the profile's deletion mark and what the node
/// side last did for this object (`None`: nothing yet).
pub fn desired_report(deleting: bool, result: Option<&NodeResult>) -> Desired {
    match (deleting, result) {
        (_, None) => Desired::Wait,
        (true, Some(NodeResult::Removed)) => Desired::Release,
        (true, Some(NodeResult::Report { state, message, .. })) if *state == ProfileState::Terminating => {
            Desired::Status {
                state: *state,
                message: message.clone(),
            }
        }
        // Deleting, but the node side has not caught up with the deletion yet.
        (true, Some(NodeResult::Report { .. })) => Desired::Wait,
        // A removal is only ever made for an object being deleted, and deletion cannot be
        // undone; a live object with the same uid cannot have one. Wait for the node side.
        (false, Some(NodeResult::Removed)) => Desired::Wait,
        (false, Some(NodeResult::Report { state, message, .. })) => Desired::Status {
            state: *state,
            message: message.clone(),
        },
    }
}

/// What the cluster already shows (or was told moments ago) about a profile on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// Our `<node>-deleted` finalizer is on the profile.
    pub finalizer: bool,
    /// Our node status exists.
    pub status_exists: bool,
    /// Our node status already says exactly what [`Desired::Status`] wants.
    pub status_current: bool,
}

/// The API calls for one profile, in the order they are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportPlan {
    /// Apply our finalizer (before any node status is written).
    pub add_finalizer: bool,
    /// Apply the node status.
    pub apply_status: bool,
    /// Delete the node status.
    pub delete_status: bool,
    /// Release our finalizer (after the status is deleted).
    pub remove_finalizer: bool,
}

impl ReportPlan {
    /// Whether no call is needed.
    pub fn is_empty(&self) -> bool {
        *self == ReportPlan::default()
    }
}

/// Plans the API calls that make `desired` true, given what is already reported. A
/// finalizer is never added to an object being deleted (the apiserver forbids it).
pub fn plan_report(desired: &Desired, deleting: bool, reported: Reported) -> ReportPlan {
    match desired {
        Desired::Wait => ReportPlan::default(),
        Desired::Status { .. } => ReportPlan {
            add_finalizer: !deleting && !reported.finalizer,
            apply_status: !reported.status_current,
            ..ReportPlan::default()
        },
        Desired::Release => ReportPlan {
            delete_status: reported.status_exists,
            remove_finalizer: reported.finalizer,
            ..ReportPlan::default()
        },
    }
}

/// Whether an `Error` deserves an Event (and an error count): it is new, i.e. the previous
/// report was not this same error. A profile that stays broken does not flood events.
pub fn should_emit_event(previous: Option<&NodeReport>, state: ProfileState, message: Option<&str>) -> bool {
    if state != ProfileState::Error {
        return false;
    }
    match previous {
        Some(p) => p.state != Some(ProfileState::Error) || p.message.as_deref() != message,
        None => true,
    }
}

/// The metrics reason of a failed [`spo_model::contract::sync_profile`], from the typed
/// failure (the step, and whether the profile breaks the SPOD's policy); never from the
/// message.
pub fn error_reason(failure: Option<SyncFailure>) -> ErrorReason {
    let Some(failure) = failure else {
        return ErrorReason::InvalidProfile;
    };
    if failure.policy_violation {
        return ErrorReason::ProfileNotAllowed;
    }
    match failure.step {
        SyncStep::Remove => ErrorReason::CannotRemoveProfile,
        SyncStep::Install => ErrorReason::CannotSaveProfile,
        SyncStep::Probe => ErrorReason::NotSupportedOnNode,
        SyncStep::Policy => ErrorReason::ProfileNotAllowed,
        SyncStep::Name | SyncStep::Validate | SyncStep::Render => ErrorReason::InvalidProfile,
    }
}

/// When to look at a profile again after `attempts` consecutive failures (1 = first): 1 s
/// doubling up to `cap`. Only the failing profile is requeued; healthy ones wait for a
/// change (there is no periodic resync).
pub fn retry_after_capped(attempts: u32, cap: Duration) -> Duration {
    let secs = 1u64 << attempts.saturating_sub(1).min(9);
    Duration::from_secs(secs).min(cap)
}

/// [`retry_after_capped`] with a 5 minute cap, for errors that need a change to heal
/// (an invalid profile, a missing kubelet directory).
pub fn retry_after(attempts: u32) -> Duration {
    retry_after_capped(attempts, Duration::from_secs(300))
}

/// The retry delay for failed API requests: they heal by themselves once the apiserver
/// answers again (a restart, an overload), so the cap is short: after an outage every
/// report is made again within 30 s of the apiserver's return.
pub fn api_retry_after(attempts: u32) -> Duration {
    retry_after_capped(attempts, Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::contract::{InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome, sync_profile};
    use spo_model::observed::Recording;
    use spo_model::seccomp::SeccompProfile;

    fn fins(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn report(state: ProfileState) -> NodeResult {
        NodeResult::Report {
            state,
            message: None,
            reason: None,
        }
    }

    #[test]
    fn node_side_installs_live_profiles_holds_used_ones_and_removes_the_rest() {
        assert_eq!(plan_node(false, &[]), NodePlan::Sync);
        assert_eq!(plan_node(false, &fins(&[FINALIZER_IN_USE])), NodePlan::Sync);
        assert_eq!(
            plan_node(true, &fins(&["n1-deleted", FINALIZER_IN_USE])),
            NodePlan::Hold
        );
        assert_eq!(plan_node(true, &fins(&["n1-deleted", "n2-deleted"])), NodePlan::Remove);
        assert_eq!(plan_node(true, &[]), NodePlan::Remove);
    }

    #[test]
    fn api_side_reports_only_what_the_node_side_did_for_this_phase() {
        assert_eq!(desired_report(false, None), Desired::Wait);
        assert_eq!(desired_report(true, None), Desired::Wait);
        assert_eq!(
            desired_report(false, Some(&report(ProfileState::Installed))),
            Desired::Status {
                state: ProfileState::Installed,
                message: None
            }
        );
        // An Installed made before deletion began is stale once the object is deleting.
        assert_eq!(
            desired_report(true, Some(&report(ProfileState::Installed))),
            Desired::Wait
        );
        assert_eq!(
            desired_report(true, Some(&report(ProfileState::Terminating))),
            Desired::Status {
                state: ProfileState::Terminating,
                message: None
            }
        );
        assert_eq!(desired_report(true, Some(&NodeResult::Removed)), Desired::Release);
        assert_eq!(desired_report(false, Some(&NodeResult::Removed)), Desired::Wait);
    }

    #[test]
    fn the_finalizer_comes_before_the_status_and_is_released_after_it() {
        let installed = Desired::Status {
            state: ProfileState::Installed,
            message: None,
        };
        let nothing = Reported::default();
        assert_eq!(
            plan_report(&installed, false, nothing),
            ReportPlan {
                add_finalizer: true,
                apply_status: true,
                ..ReportPlan::default()
            }
        );
        let done = Reported {
            finalizer: true,
            status_exists: true,
            status_current: true,
        };
        assert!(plan_report(&installed, false, done).is_empty(), "nothing is repeated");
        let stale = Reported {
            status_current: false,
            ..done
        };
        assert_eq!(
            plan_report(&installed, false, stale),
            ReportPlan {
                apply_status: true,
                ..ReportPlan::default()
            }
        );
        // Never a new finalizer on an object being deleted.
        let terminating = Desired::Status {
            state: ProfileState::Terminating,
            message: None,
        };
        assert!(!plan_report(&terminating, true, nothing).add_finalizer);
        assert_eq!(
            plan_report(&Desired::Release, true, done),
            ReportPlan {
                delete_status: true,
                remove_finalizer: true,
                ..ReportPlan::default()
            }
        );
        assert!(plan_report(&Desired::Release, true, nothing).is_empty());
        assert!(plan_report(&Desired::Wait, false, nothing).is_empty());
    }

    #[test]
    fn events_only_for_new_errors() {
        let prev = |s: ProfileState, m: Option<&str>| NodeReport {
            node: "n".into(),
            state: Some(s),
            message: m.map(Into::into),
        };
        let e = ProfileState::Error;
        assert!(should_emit_event(None, e, Some("a")));
        assert!(should_emit_event(
            Some(&prev(ProfileState::Installed, None)),
            e,
            Some("a")
        ));
        assert!(!should_emit_event(Some(&prev(e, Some("a"))), e, Some("a")));
        assert!(should_emit_event(Some(&prev(e, Some("a"))), e, Some("b")));
        assert!(!should_emit_event(None, ProfileState::Installed, None));
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        assert_eq!(retry_after(1), Duration::from_secs(1));
        assert_eq!(retry_after(2), Duration::from_secs(2));
        assert_eq!(retry_after(5), Duration::from_secs(16));
        assert_eq!(retry_after(40), Duration::from_secs(300));
        assert!((1..50).all(|a| retry_after(a) <= retry_after(a + 1)));
        assert_eq!(api_retry_after(3), Duration::from_secs(4));
        assert_eq!(api_retry_after(40), Duration::from_secs(30));
    }

    /// A backend whose every step can be made to fail, to pin the messages
    /// [`sync_profile`] makes to the reasons they are counted under.
    #[derive(Default)]
    struct Failing {
        unsupported: bool,
        render: Option<&'static str>,
        install: bool,
        remove: bool,
        policy: bool,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Failed(String);

    impl ProfileBackend for Failing {
        type Profile = SeccompProfile;
        type Context = ();
        type Artifact = ();
        type Target = ();
        type Error = Failed;

        fn probe(&self) -> NodeSupport {
            if self.unsupported {
                NodeSupport::Unsupported {
                    reason: "no seccomp".into(),
                }
            } else {
                NodeSupport::Supported
            }
        }
        fn render(&self, _: &SeccompProfile, _: &()) -> Result<(), Failed> {
            self.render.map_or(Ok(()), |m| Err(Failed(m.into())))
        }
        fn install(&self, _: &(), _: &InstallName, _: &()) -> Result<InstallOutcome, Failed> {
            if self.install {
                Err(Failed("disk full".into()))
            } else {
                Ok(InstallOutcome::Written)
            }
        }
        fn remove(&self, _: &(), _: &InstallName) -> Result<RemoveOutcome, Failed> {
            if self.remove {
                Err(Failed("read-only".into()))
            } else {
                Ok(RemoveOutcome::Removed)
            }
        }
        fn list(&self, _: &()) -> Result<Vec<String>, Failed> {
            Ok(Vec::new())
        }
        fn policy_problems(&self, _: &SeccompProfile, _: &()) -> spo_model::validate::Problems {
            let mut p = spo_model::validate::Problems::new();
            if self.policy {
                p.error(spo_model::validate::FieldPath::root().field("spec"), "not allowed");
            }
            p
        }
        fn profile_from_recording(&self, _: &str, _: &Recording) -> Result<SeccompProfile, Failed> {
            Err(Failed("unused".into()))
        }
    }

    fn reason_of(backend: &Failing, yaml: &str) -> ErrorReason {
        let profile: SeccompProfile = serde_norway::from_str(yaml).expect("profile");
        let outcome = sync_profile(backend, &(), &profile, &());
        assert_eq!(outcome.state, ProfileState::Error, "{outcome:?}");
        error_reason(outcome.failure)
    }

    #[test]
    fn error_reasons_follow_the_step_that_failed() {
        const OK: &str = "metadata: {name: p}\nspec: {defaultAction: SCMP_ACT_ERRNO}\n";
        const DISABLED: &str = "metadata: {name: p}\nspec: {defaultAction: SCMP_ACT_ERRNO, state: Disabled}\n";
        const INVALID: &str = "metadata: {name: p}\nspec: {defaultAction: SCMP_ACT_ERRNO, syscalls: [{names: [], action: SCMP_ACT_ALLOW}]}\n";
        let unsupported = Failing {
            unsupported: true,
            ..Failing::default()
        };
        assert_eq!(reason_of(&unsupported, OK), ErrorReason::NotSupportedOnNode);
        assert_eq!(reason_of(&Failing::default(), INVALID), ErrorReason::InvalidProfile);
        let bad_render = Failing {
            render: Some("spec.syscalls[0].names[1]: unknown syscall"),
            ..Failing::default()
        };
        assert_eq!(reason_of(&bad_render, OK), ErrorReason::InvalidProfile);
        // A render message that reads like a policy violation is still an invalid profile:
        // reasons come from the typed failure, not from text.
        let worded = Failing {
            render: Some("violates the SPOD security policy: spec.syscalls[0]"),
            ..Failing::default()
        };
        assert_eq!(reason_of(&worded, OK), ErrorReason::InvalidProfile);
        let forbidden = Failing {
            policy: true,
            ..Failing::default()
        };
        assert_eq!(reason_of(&forbidden, OK), ErrorReason::ProfileNotAllowed);
        let full = Failing {
            install: true,
            ..Failing::default()
        };
        assert_eq!(reason_of(&full, OK), ErrorReason::CannotSaveProfile);
        let read_only = Failing {
            remove: true,
            ..Failing::default()
        };
        assert_eq!(reason_of(&read_only, DISABLED), ErrorReason::CannotRemoveProfile);
    }
}
