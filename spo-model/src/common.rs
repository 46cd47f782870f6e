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
    /// Every reason.
    pub const ALL: [ConditionReason; 6] = [
        ConditionReason::Available,
        ConditionReason::Unavailable,
        ConditionReason::Creating,
        ConditionReason::Deleting,
        ConditionReason::Pending,
        ConditionReason::Updating,
    ];

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

/// `conditions[].type`: a CamelCase name, optionally prefixed by a DNS subdomain and `/`
/// (the pattern of `metav1.Condition`).
pub const CONDITION_TYPE_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";
/// `conditions[].reason`: a programmatic identifier (the pattern of `metav1.Condition`).
pub const CONDITION_REASON_PATTERN: &str = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";

/// One entry of `status.conditions`, in the shape SPO v1.0 writes (`metav1.Condition`:
/// `type`, `status`, `observedGeneration`, `lastTransitionTime`, `reason`, `message`).
///
/// `status` and `reason` are kept as strings so that objects written by other tools with
/// values we do not know still parse; [`Condition::ready`] builds the ones we write.
/// `message` is required on the wire (it may be empty); objects written before it was
/// required read as an empty message.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = message_is_required)]
pub struct Condition {
    /// The condition type, `Ready` for everything this operator writes.
    #[serde(rename = "type")]
    #[schemars(length(max = 316), regex(pattern = CONDITION_TYPE_PATTERN))]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// The `metadata.generation` of the object the writer looked at when it set this
    /// condition; a condition whose generation is older than the object's is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// RFC 3339 time of the last change of `status`.
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// A CamelCase reason, such as `Available`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = CONDITION_REASON_PATTERN))]
    pub reason: String,
    /// Human-readable detail, such as a validation error; empty when there is none.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
}

/// The schema of [`Condition`] as `metav1.Condition` has it: `message` is required and has no
/// default (serde's `default`, which lets old objects parse, would otherwise make it
/// optional with a default of `""`).
fn message_is_required(schema: &mut schemars::Schema) {
    if let Some(message) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("message"))
        .and_then(serde_json::Value::as_object_mut)
    {
        message.remove("default");
    }
    if let Some(required) = schema.get_mut("required").and_then(serde_json::Value::as_array_mut) {
        if !required.iter().any(|r| r == "message") {
            required.push("message".into());
        }
    } else {
        schema.insert("required".to_owned(), serde_json::json!(["message"]));
    }
}

impl Condition {
    /// The `Ready` condition for `state` of an object at `generation` (its
    /// `metadata.generation`, when the apiserver set one), stamped with `now` (RFC 3339).
    pub fn ready(state: ProfileState, generation: Option<i64>, now: &str, message: Option<String>) -> Self {
        let ready = state.ready_condition();
        Condition {
            type_: CONDITION_READY.to_owned(),
            status: match ready.status {
                ConditionStatus::True => "True",
                ConditionStatus::False => "False",
                ConditionStatus::Unknown => "Unknown",
            }
            .to_owned(),
            observed_generation: generation,
            last_transition_time: now.to_owned(),
            reason: ready.reason.as_str().to_owned(),
            message: message.unwrap_or_default(),
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
        let cond = Condition::ready(ProfileState::Installed, Some(3), "2026-01-01T00:00:00Z", None);
        assert_eq!(cond.type_, "Ready");
        assert_eq!(cond.observed_generation, Some(3));
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

    #[test]
    fn conditions_have_the_metav1_wire_shape() {
        let cond = Condition::ready(ProfileState::Error, Some(7), "2026-01-01T00:00:00Z", None);
        let json = serde_json::to_value(&cond).expect("serialize");
        assert_eq!(json["observedGeneration"], 7);
        assert_eq!(json["message"], "", "message is required on the wire, even when empty");
        let without_generation = Condition::ready(ProfileState::Error, None, "2026-01-01T00:00:00Z", None);
        let json = serde_json::to_value(&without_generation).expect("serialize");
        assert!(json.get("observedGeneration").is_none());
        // Written before message was required.
        let old: Condition = serde_json::from_value(serde_json::json!({
            "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Available"
        }))
        .expect("parse");
        assert_eq!((old.message.as_str(), old.observed_generation), ("", None));
    }

    #[test]
    fn condition_schema_matches_metav1_condition() {
        let schema = serde_json::to_value(schemars::schema_for!(Condition)).expect("schema");
        let props = &schema["properties"];
        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        required.sort_unstable();
        assert_eq!(required, ["lastTransitionTime", "message", "reason", "status", "type"]);
        assert_eq!(props["observedGeneration"]["minimum"], 0);
        assert_eq!(props["observedGeneration"]["format"], "int64");
        assert_eq!(props["lastTransitionTime"]["format"], "date-time");
        assert_eq!(props["message"]["maxLength"], 32768);
        assert_eq!(props["reason"]["maxLength"], 1024);
        assert_eq!(props["reason"]["pattern"], CONDITION_REASON_PATTERN);
        assert_eq!(props["type"]["pattern"], CONDITION_TYPE_PATTERN);
        assert_eq!(props["status"]["enum"], serde_json::json!(["True", "False", "Unknown"]));
        let reason = regex::Regex::new(CONDITION_REASON_PATTERN).expect("regex");
        for r in ConditionReason::ALL {
            assert!(reason.is_match(r.as_str()), "{r:?}");
        }
    }
}
