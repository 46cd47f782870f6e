//! Pieces shared by every kind: the API group, profile state, conditions.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group every kind of this crate belongs to.
pub const GROUP: &str = "security-profiles-operator.x-k8s.io";
/// The one served and stored version.
pub const VERSION: &str = "v1";
/// `apiVersion` of every kind of this crate.
pub const API_VERSION: &str = "security-profiles-operator.x-k8s.io/v1";

/// `spec.state` of every profile kind: whether the profile is installed on nodes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpecState {
    /// The profile is installed on every node that supports its kind.
    #[default]
    Enabled,
    /// The profile is kept in the cluster but not installed (and removed from nodes).
    Disabled,
}

impl SpecState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecState::Enabled => "Enabled",
            SpecState::Disabled => "Disabled",
        }
    }
}

/// The state a profile is in, per node and aggregated over nodes.
///
/// The derived ordering is the aggregation order: when node states are combined the
/// lowest wins (`Error < Terminating < Partial < Disabled < Pending < InProgress < Installed`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileState {
    /// Rendering, validation or installation failed.
    Error,
    /// The profile is being removed.
    Terminating,
    /// A partial profile of a recording, waiting to be merged.
    Partial,
    /// `spec.state: Disabled`.
    Disabled,
    /// Accepted, nothing done yet.
    Pending,
    /// Being installed.
    InProgress,
    /// Installed on the node (or on every node, when aggregated).
    Installed,
}

impl ProfileState {
    /// Every state, lowest first.
    pub const ALL: [ProfileState; 7] = [
        ProfileState::Error,
        ProfileState::Terminating,
        ProfileState::Partial,
        ProfileState::Disabled,
        ProfileState::Pending,
        ProfileState::InProgress,
        ProfileState::Installed,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileState::Error => "Error",
            ProfileState::Terminating => "Terminating",
            ProfileState::Partial => "Partial",
            ProfileState::Disabled => "Disabled",
            ProfileState::Pending => "Pending",
            ProfileState::InProgress => "InProgress",
            ProfileState::Installed => "Installed",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Combines per-node states into the profile's state: the lowest wins.
    /// `None` when there is no node state at all.
    pub fn aggregate<I: IntoIterator<Item = ProfileState>>(states: I) -> Option<ProfileState> {
        states.into_iter().min()
    }

    /// The `Ready` condition this state maps to.
    pub fn ready_condition(self) -> ReadyCondition {
        match self {
            ProfileState::Pending | ProfileState::InProgress => ReadyCondition {
                status: ConditionStatus::False,
                reason: ConditionReason::Creating,
            },
            ProfileState::Installed => ReadyCondition {
                status: ConditionStatus::True,
                reason: ConditionReason::Available,
            },
            ProfileState::Terminating => ReadyCondition {
                status: ConditionStatus::False,
                reason: ConditionReason::Deleting,
            },
            ProfileState::Error | ProfileState::Partial | ProfileState::Disabled => ReadyCondition {
                status: ConditionStatus::False,
                reason: ConditionReason::Unavailable,
            },
        }
    }
}

impl fmt::Display for ProfileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status and reason of the `Ready` condition that a [`ProfileState`] maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyCondition {
    /// `True` only for `Installed`.
    pub status: ConditionStatus,
    /// Why.
    pub reason: ConditionReason,
}

/// `conditions[].status`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// `conditions[].reason` for the `Ready` condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionReason {
    /// Installed and usable.
    Available,
    /// Not usable (error, disabled or partial).
    Unavailable,
    /// Being installed.
    Creating,
    /// Being removed.
    Deleting,
    /// Waiting.
    Pending,
    /// Being updated.
    Updating,
}

impl ConditionReason {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionReason::Available => "Available",
            ConditionReason::Unavailable => "Unavailable",
            ConditionReason::Creating => "Creating",
            ConditionReason::Deleting => "Deleting",
            ConditionReason::Pending => "Pending",
            ConditionReason::Updating => "Updating",
        }
    }
}

/// The condition type every kind reports.
pub const CONDITION_READY: &str = "Ready";

/// One entry of `status.conditions`, in the shape upstream writes (`type`, `status`,
/// `lastTransitionTime`, `reason` and an optional `message`).
///
/// `status` and `reason` are kept as strings so that objects written by other tools with
/// values we do not know still parse; [`Condition::ready`] builds the ones we write.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, `Ready` for everything this operator writes.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    /// A CamelCase reason, such as `Available`.
    pub reason: String,
    /// Human-readable detail, such as a validation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Condition {
    /// The `Ready` condition for `state`, stamped with `now` (RFC 3339).
    pub fn ready(state: ProfileState, now: &str, message: Option<String>) -> Self {
        let ready = state.ready_condition();
        Condition {
            type_: CONDITION_READY.to_owned(),
            status: match ready.status {
                ConditionStatus::True => "True",
                ConditionStatus::False => "False",
                ConditionStatus::Unknown => "Unknown",
            }
            .to_owned(),
            last_transition_time: now.to_owned(),
            reason: ready.reason.as_str().to_owned(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_state_wins() {
        use ProfileState::*;
        assert_eq!(
            ProfileState::aggregate([Installed, InProgress, Installed]),
            Some(InProgress)
        );
        assert_eq!(ProfileState::aggregate([Installed, Error, Terminating]), Some(Error));
        assert_eq!(ProfileState::aggregate([Pending, Disabled]), Some(Disabled));
        assert_eq!(ProfileState::aggregate([Disabled, Partial]), Some(Partial));
        assert_eq!(ProfileState::aggregate([]), None);
        let mut sorted = ProfileState::ALL;
        sorted.sort();
        assert_eq!(sorted, ProfileState::ALL);
    }

    #[test]
    fn ready_mapping_matches_upstream() {
        use ConditionReason::*;
        let cases = [
            (ProfileState::Pending, Creating, ConditionStatus::False),
            (ProfileState::InProgress, Creating, ConditionStatus::False),
            (ProfileState::Installed, Available, ConditionStatus::True),
            (ProfileState::Terminating, Deleting, ConditionStatus::False),
            (ProfileState::Error, Unavailable, ConditionStatus::False),
            (ProfileState::Partial, Unavailable, ConditionStatus::False),
            (ProfileState::Disabled, Unavailable, ConditionStatus::False),
        ];
        for (state, reason, status) in cases {
            let c = state.ready_condition();
            assert_eq!((c.reason, c.status), (reason, status), "{state}");
        }
        let cond = Condition::ready(ProfileState::Installed, "2026-01-01T00:00:00Z", None);
        assert_eq!(cond.type_, "Ready");
        assert_eq!(cond.status, "True");
        assert_eq!(cond.reason, "Available");
    }

    #[test]
    fn state_spelling_round_trips() {
        for st in ProfileState::ALL {
            assert_eq!(ProfileState::parse(st.as_str()), Some(st));
            let json = serde_json::to_string(&st).expect("serialize");
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        assert_eq!(ProfileState::parse("installed"), None);
    }
}
