//! `ProfileBinding`: apply a profile to every container of a namespace running an image.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{FieldPath, Problems, check_label_selector, check_metadata, is_dns_subdomain};

/// The image value that binds every container of the selected pods.
pub const ANY_IMAGE: &str = "*";

/// The desired state of a profile binding.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "ProfileBinding",
    plural = "profilebindings",
    namespaced,
    status = "ProfileBindingStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "ProfileBinding applies a profile to the containers of a namespace that run a given image.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.profileRef.kind"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.profileRef.name"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBindingSpec {
    /// The profile to apply.
    pub profile_ref: ProfileRef,
    /// The container image to match exactly, or `*` for every container of the selected pods.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Only pods with these labels (all pods of the namespace when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// A reference to a profile object.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRef {
    /// The profile's kind.
    pub kind: BindingProfileKind,
    /// The profile's name.
    #[schemars(length(min = 1))]
    pub name: String,
}

wire_enum!(
    /// The kinds a binding can apply.
    BindingProfileKind {
        /// A SeccompProfile.
        SeccompProfile = "SeccompProfile",
        /// A SelinuxProfile.
        SelinuxProfile = "SelinuxProfile",
        /// An AppArmorProfile.
        AppArmorProfile = "AppArmorProfile",
    }
);

/// The status of a ProfileBinding.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBindingStatus {
    /// Pods the binding applied to, as `namespace/pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub active_workloads: Option<Vec<String>>,
}

impl ProfileBinding {
    /// Every problem with this binding.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, true, &mut problems);
        let root = FieldPath::root().field("spec");
        let name = &self.spec.profile_ref.name;
        if name.is_empty() {
            problems.error(root.field("profileRef").field("name"), "required field is empty");
        } else if !is_dns_subdomain(name) {
            problems.error_hint(
                root.field("profileRef").field("name"),
                format!("{name:?} is not a valid object name"),
                "name an existing profile object",
            );
        }
        let image = &self.spec.image;
        if image.trim().is_empty() {
            problems.error_hint(
                root.field("image"),
                "required field is empty",
                "write the container image, or \"*\" for every container",
            );
        } else if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.error(
                root.field("image"),
                format!("{image:?} contains whitespace and can never match an image"),
            );
        } else if image != ANY_IMAGE && image.contains('*') {
            problems.error_hint(
                root.field("image"),
                format!("{image:?} is not a pattern: images match exactly"),
                "use the full image reference, or \"*\" alone for every container",
            );
        }
        if let Some(sel) = &self.spec.pod_selector {
            check_label_selector(&root.field("podSelector"), sel, &mut problems);
        }
        problems
    }
}
