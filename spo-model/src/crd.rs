//! CustomResourceDefinitions generated from the Rust types, and their YAML form.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;

use crate::document::Kind;
use crate::error::ModelError;

/// The CRD of one kind, its schema in the shape SPO v1.0's CRDs have (see
/// [`match_upstream_conventions`]).
pub fn crd_of(kind: Kind) -> CustomResourceDefinition {
    let mut crd = derived_crd(kind);
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut())
            && let Ok(mut value) = serde_json::to_value(&*schema)
        {
            match_upstream_conventions(&mut value);
            if let Ok(converted) = serde_json::from_value(value) {
                *schema = converted;
            }
        }
    }
    crd
}

/// Rewrites a derived schema where kube-rs and controller-gen differ in convention, so our
/// CRDs say what SPO v1.0's say:
/// - no `nullable`: kube-rs marks every `Option` nullable, controller-gen never does, and
///   the apiserver then prunes `null`s instead of storing them;
/// - the list and map markers Kubernetes' own types carry (k8s-openapi's schemas lack them):
///   label and node selectors are atomic maps with atomic lists, every list inside an
///   affinity is atomic, resource claims are a map keyed by `name`, and quantities are
///   integer-or-string with the quantity pattern.
pub fn match_upstream_conventions(schema: &mut serde_json::Value) {
    use serde_json::{Value, json};
    fn props(v: &Value) -> Vec<&str> {
        v.get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
    fn mark_lists_atomic(v: &mut Value) {
        if let Some(map) = v.as_object_mut() {
            if map.get("type").and_then(Value::as_str) == Some("array") && !map.contains_key("x-kubernetes-list-type") {
                map.insert("x-kubernetes-list-type".into(), json!("atomic"));
            }
            for child in map.values_mut() {
                mark_lists_atomic(child);
            }
        }
    }
    fn walk(v: &mut Value, in_affinity: bool) {
        let keys = props(v);
        let is = |want: &[&str]| keys.len() == want.len() && want.iter().all(|k| keys.contains(k));
        let selector = is(&["matchExpressions", "matchLabels"])
            || is(&["matchExpressions", "matchFields"])
            || is(&["nodeSelectorTerms"]);
        let affinity = in_affinity || is(&["nodeAffinity", "podAffinity", "podAntiAffinity"]);
        let claims_owner = keys.contains(&"claims") && keys.contains(&"limits") && keys.contains(&"requests");
        let Some(map) = v.as_object_mut() else { return };
        map.remove("nullable");
        if selector {
            map.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
        if map.get("x-kubernetes-int-or-string") == Some(&json!(true)) && !map.contains_key("anyOf") {
            map.insert("anyOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
            map.insert("pattern".into(), json!(QUANTITY_PATTERN));
        }
        if claims_owner
            && let Some(claims) = map
                .get_mut("properties")
                .and_then(|p| p.get_mut("claims"))
                .and_then(Value::as_object_mut)
        {
            claims.insert("x-kubernetes-list-type".into(), json!("map"));
            claims.insert("x-kubernetes-list-map-keys".into(), json!(["name"]));
        }
        if selector || affinity {
            for key in ["matchExpressions", "matchFields", "nodeSelectorTerms"] {
                if let Some(list) = map.get_mut("properties").and_then(|p| p.get_mut(key)) {
                    mark_lists_atomic(list);
                }
            }
        }
        if affinity
            && map.get("type").and_then(Value::as_str) == Some("array")
            && !map.contains_key("x-kubernetes-list-type")
        {
            map.insert("x-kubernetes-list-type".into(), json!("atomic"));
        }
        for child in map.values_mut() {
            match child {
                Value::Object(_) => walk(child, affinity),
                Value::Array(items) => items.iter_mut().for_each(|i| walk(i, affinity)),
                _ => {}
            }
        }
    }
    walk(schema, false);
}

/// The pattern of `resource.Quantity`, as Kubernetes' CRDs carry it.
const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

fn derived_crd(kind: Kind) -> CustomResourceDefinition {
    use crate::*;
    match kind {
        Kind::SeccompProfile => SeccompProfile::crd(),
        Kind::SelinuxProfile => SelinuxProfile::crd(),
        Kind::RawSelinuxProfile => RawSelinuxProfile::crd(),
        Kind::AppArmorProfile => AppArmorProfile::crd(),
        Kind::ProfileBinding => ProfileBinding::crd(),
        Kind::ProfileRecording => ProfileRecording::crd(),
        Kind::SecurityProfilesOperatorDaemon => SecurityProfilesOperatorDaemon::crd(),
        Kind::SecurityProfileNodeStatus => SecurityProfileNodeStatus::crd(),
    }
}

/// Every CRD of the API, in [`Kind::ALL`] order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    Kind::ALL.iter().map(|k| crd_of(*k)).collect()
}

/// The file name a CRD is written to under `deploy/crds/`: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// A CRD as YAML, with a header saying it is generated.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, ModelError> {
    let body = serde_norway::to_string(crd).map_err(|source| ModelError::RenderCrd {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    Ok(format!(
        "# Generated from the Rust types in spo-model by `cargo xtask crds`; do not edit.\n---\n{body}"
    ))
}

/// Every generated file of `deploy/crds/` by file name, including the kustomization.
pub fn crd_files() -> Result<BTreeMap<String, String>, ModelError> {
    let mut files = BTreeMap::new();
    let mut resources = String::new();
    for crd in all_crds() {
        let name = crd_file_name(&crd);
        resources.push_str(&format!("  - {name}\n"));
        files.insert(name, crd_yaml(&crd)?);
    }
    files.insert(
        "kustomization.yaml".to_owned(),
        format!(
            "# Generated by `cargo xtask crds`; do not edit.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}"
        ),
    );
    Ok(files)
}

/// The `openAPIV3Schema` of a kind as JSON, computed once per kind.
pub fn schema_of(kind: Kind) -> &'static serde_json::Value {
    static SCHEMAS: OnceLock<BTreeMap<Kind, serde_json::Value>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|k| {
                let crd = crd_of(*k);
                let schema = crd
                    .spec
                    .versions
                    .first()
                    .and_then(|v| v.schema.as_ref())
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or(serde_json::Value::Null);
                (*k, schema)
            })
            .collect()
    });
    // Every kind is in the map: it was built from Kind::ALL.
    &all[&kind]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(schema: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
        path.iter().fold(schema, |v, p| match *p {
            "[]" => &v["items"],
            name => &v["properties"][name],
        })
    }

    #[test]
    fn schemas_follow_controller_gen_conventions() {
        for kind in Kind::ALL {
            let text = serde_json::to_string(schema_of(kind)).expect("json");
            assert!(!text.contains("\"nullable\""), "{kind} has nullable fields");
        }
        let binding = schema_of(Kind::ProfileBinding);
        let selector = at(binding, &["spec", "podSelector"]);
        assert_eq!(selector["x-kubernetes-map-type"], "atomic");
        assert_eq!(at(selector, &["matchExpressions"])["x-kubernetes-list-type"], "atomic");
        assert_eq!(
            at(selector, &["matchExpressions", "[]", "values"])["x-kubernetes-list-type"],
            "atomic"
        );
        let spod = schema_of(Kind::SecurityProfilesOperatorDaemon);
        let terms = at(
            spod,
            &[
                "spec",
                "scheduling",
                "affinity",
                "nodeAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ],
        );
        assert_eq!(terms["x-kubernetes-map-type"], "atomic");
        assert_eq!(at(terms, &["nodeSelectorTerms"])["x-kubernetes-list-type"], "atomic");
        let resources = at(spod, &["spec", "daemonResourceRequirements"]);
        assert_eq!(
            at(resources, &["claims"])["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
        assert_eq!(
            resources["properties"]["limits"]["additionalProperties"]["anyOf"],
            serde_json::json!([{"type": "integer"}, {"type": "string"}])
        );
        let seccomp = schema_of(Kind::SeccompProfile);
        assert_eq!(at(seccomp, &["spec", "architectures"])["x-kubernetes-list-type"], "set");
        assert_eq!(at(seccomp, &["spec", "syscalls"])["x-kubernetes-list-type"], "atomic");
        assert_eq!(
            at(seccomp, &["status", "conditions"])["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
    }
}
