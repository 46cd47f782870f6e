//! `SecurityProfileNodeStatus`: one profile's state on one node.
//!
//! SPO v1.0 moved the fields of this kind into `spec.nodeName` and `status.status` (older
//! releases kept them at the top level, next to an empty `spec`), so the status is written
//! through the status subresource like every other kind's.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ProfileState;
use crate::names::{LABEL_NODE_NAME, LABEL_PROFILE_ID, LABEL_PROFILE_KIND, LABEL_PROFILE_STATE};
use crate::validate::{FieldPath, Problems, check_metadata, is_dns_subdomain};

/// `spec` of a node status: which node it is about.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "SecurityProfileNodeStatus",
    plural = "securityprofilenodestatuses",
    shortname = "spns",
    status = "SecurityProfileNodeStatusStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "SecurityProfileNodeStatus is the state of one profile on one node, named <profile>-<node>.",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Node","type":"string","priority":10,"jsonPath":".spec.nodeName"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfileNodeStatusSpec {
    /// The node this status is about.
    #[schemars(length(min = 1))]
    pub node_name: String,
}

/// `status` of a node status: the profile's state on the node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfileNodeStatusStatus {
    /// The installation state of the profile on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProfileState>,
}

impl SecurityProfileNodeStatus {
    /// The state this node reports, `None` until the status subresource was written.
    pub fn state(&self) -> Option<ProfileState> {
        self.status.as_ref().and_then(|s| s.status)
    }

    /// Every problem with this object.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, false, &mut problems);
        let node = &self.spec.node_name;
        if !is_dns_subdomain(node) {
            problems.error(
                FieldPath::root().field("spec").field("nodeName"),
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
        if let (Some(label), Some(state)) = (labels.get(LABEL_PROFILE_STATE), self.state())
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

#[cfg(test)]
mod tests {
    use kube_core::CustomResourceExt;

    use super::*;

    #[test]
    fn fields_live_in_spec_and_status_as_in_spo_v1() {
        let crd = SecurityProfileNodeStatus::crd();
        let version = &crd.spec.versions[0];
        let schema =
            serde_json::to_value(version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref())).expect("schema");
        let props = &schema["properties"];
        assert!(props.get("nodeName").is_none(), "nodeName moved into spec");
        assert_eq!(props["spec"]["required"], serde_json::json!(["nodeName"]));
        assert_eq!(props["spec"]["properties"]["nodeName"]["minLength"], 1);
        assert_eq!(props["status"]["type"], "object");
        assert_eq!(
            props["status"]["properties"]["status"]["enum"].as_array().map(Vec::len),
            Some(7)
        );
        let columns: Vec<(String, String, Option<i32>)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.json_path.clone(), c.priority))
            .collect();
        assert_eq!(
            columns,
            [
                ("Status".into(), ".status.status".into(), None),
                ("Age".into(), ".metadata.creationTimestamp".into(), None),
                ("Node".into(), ".spec.nodeName".into(), Some(10)),
            ]
        );
        assert!(version.subresources.as_ref().is_some_and(|s| s.status.is_some()));
    }

    #[test]
    fn an_empty_node_name_is_reported_under_spec() {
        let status = SecurityProfileNodeStatus::new("p-n", SecurityProfileNodeStatusSpec::default());
        let problems = status.validate();
        assert!(
            problems.errors().any(|p| p.path.as_str() == "spec.nodeName"),
            "{problems}"
        );
        assert_eq!(status.state(), None);
    }
}
