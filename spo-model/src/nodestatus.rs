//! `SecurityProfileNodeStatus`: one profile's state on one node.
//!
//! Upstream puts `nodeName` and `status` at the top level of the object (there is no
//! `spec`), so this kind is declared with `no_spec` and its status is the bare state string.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ProfileState;
use crate::names::{LABEL_NODE_NAME, LABEL_PROFILE_ID, LABEL_PROFILE_KIND, LABEL_PROFILE_STATE};
use crate::validate::{FieldPath, Problems, check_metadata, is_dns_subdomain};

/// The fields of a node status.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "SecurityProfileNodeStatus",
    plural = "securityprofilenodestatuses",
    shortname = "spns",
    no_spec,
    status = "ProfileState",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "SecurityProfileNodeStatus is the state of one profile on one node, named <profile>-<node>.",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".nodeName"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatusFields {
    /// The node this status is about.
    #[schemars(length(min = 1))]
    pub node_name: String,
}

impl SecurityProfileNodeStatus {
    /// Every problem with this object.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, false, &mut problems);
        let node = &self.spec.node_name;
        if !is_dns_subdomain(node) {
            problems.error(
                FieldPath::root().field("nodeName"),
                format!("{node:?} is not a valid node name"),
            );
        }
        let labels = self.metadata.labels.clone().unwrap_or_default();
        for l in [
            LABEL_NODE_NAME,
            LABEL_PROFILE_KIND,
            LABEL_PROFILE_ID,
            LABEL_PROFILE_STATE,
        ] {
            if !labels.contains_key(l) {
                problems.warning_hint(
                    FieldPath::root().field("metadata").field("labels"),
                    format!("label {l} is missing"),
                    "node statuses are written by the node agent, which sets it",
                );
            }
        }
        if let (Some(label), Some(state)) = (labels.get(LABEL_PROFILE_STATE), self.status)
            && label != state.as_str()
        {
            problems.warning(
                FieldPath::root()
                    .field("metadata")
                    .field("labels")
                    .key(LABEL_PROFILE_STATE),
                format!("label says {label} but status is {state}"),
            );
        }
        problems
    }
}
