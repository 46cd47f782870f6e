//! The API calls the operator makes, one function each, so the request shapes are tested
//! against a mock service (`tests/requests.rs`) and the controllers stay readable.
//!
//! Writes use server-side apply with one field manager per writer: each daemon owns its
//! `<node>-deleted` finalizer and its node statuses, the manager owns the profile status and
//! `in-use-by-active-pods`. Apply never conflicts with the other writers (finalizers are a
//! set), so a burst of new profiles costs no retries. The one exception is removing a
//! finalizer someone else owns (a node that is gone), done with a merge patch guarded by
//! `resourceVersion`: a 409 means "look again", and the controller retries from the newest
//! object.

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use spo_model::{ProfileState, SecurityProfileNodeStatus, SecurityProfilesOperatorDaemon};

use crate::error::{OperatorError, is_not_found};

/// The field manager of the manager.
pub const MANAGER_FIELD_MANAGER: &str = "spo-manager";

/// The field manager of the daemon on `node` (at most 128 characters, the apiserver's limit).
pub fn daemon_field_manager(node: &str) -> String {
    let mut m = format!("spo-daemon-{node}");
    m.truncate(128);
    m
}

fn apply(manager: &str) -> PatchParams {
    PatchParams::apply(manager).force()
}

/// Applies, as `field_manager`, the finalizer set `finalizers` on the cluster-scoped
/// object `name` of kind `K`: adds those missing, and removes those this manager added
/// before and no longer lists. Returns the object's finalizers afterwards.
pub async fn apply_finalizers<K>(
    client: &Client,
    name: &str,
    field_manager: &str,
    finalizers: &[String],
) -> Result<Vec<String>, OperatorError>
where
    K: Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut meta = json!({ "name": name });
    if !finalizers.is_empty() {
        meta["finalizers"] = json!(finalizers);
    }
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": meta,
    });
    let obj = api
        .patch(name, &apply(field_manager), &Patch::Apply(&body))
        .await
        .map_err(|e| OperatorError::api("applying finalizers of", K::kind(&()).into_owned(), name, e))?;
    Ok(obj.finalizers().to_vec())
}

/// Replaces the finalizers of `name` with `finalizers`, only if the object is still at
/// `resource_version` (409 otherwise). Used to remove finalizers this writer does not own.
pub async fn replace_finalizers<K>(
    client: &Client,
    name: &str,
    resource_version: &str,
    finalizers: &[String],
) -> Result<(), OperatorError>
where
    K: Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let body = json!({ "metadata": { "resourceVersion": resource_version, "finalizers": finalizers } });
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&body)).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(OperatorError::api(
            "removing finalizers of",
            K::kind(&()).into_owned(),
            name,
            e,
        )),
    }
}

/// Writes a node status: the object (labels, message annotation, owner, nodeName), then
/// its `status` through the status subresource. Both are applies by the daemon's field
/// manager, so repeating them is harmless.
pub async fn apply_node_status(
    client: &Client,
    field_manager: &str,
    desired: &SecurityProfileNodeStatus,
) -> Result<(), OperatorError> {
    let api: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    let name = desired.name_any();
    let mut object = serde_json::to_value(desired).map_err(|e| OperatorError::Config(e.to_string()))?;
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    api.patch(&name, &apply(field_manager), &Patch::Apply(&object))
        .await
        .map_err(|e| OperatorError::api("applying", "SecurityProfileNodeStatus", &name, e))?;
    let status = json!({
        "apiVersion": spo_model::API_VERSION,
        "kind": "SecurityProfileNodeStatus",
        "metadata": { "name": name },
        "status": desired.status.map(ProfileState::as_str),
    });
    api.patch_status(&name, &apply(field_manager), &Patch::Apply(&status))
        .await
        .map_err(|e| OperatorError::api("applying the status of", "SecurityProfileNodeStatus", &name, e))?;
    Ok(())
}

/// Deletes a node status; succeeds when it is already gone.
pub async fn delete_node_status(client: &Client, name: &str) -> Result<(), OperatorError> {
    let api: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(OperatorError::api("deleting", "SecurityProfileNodeStatus", name, e)),
    }
}

/// Applies a profile's `status` (as the manager) through the status subresource.
pub async fn apply_profile_status<K, S>(client: &Client, name: &str, status: &S) -> Result<(), OperatorError>
where
    K: Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::all(client.clone());
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    });
    match api
        .patch_status(name, &apply(MANAGER_FIELD_MANAGER), &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(()),
        // Gone meanwhile: there is nothing to report on.
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(OperatorError::api(
            "applying the status of",
            K::kind(&()).into_owned(),
            name,
            e,
        )),
    }
}

/// Creates the default SPOD `name` in `namespace` unless it exists (an existing one is
/// never changed: it is the administrator's configuration). Returns whether it was created.
pub async fn ensure_spod(client: &Client, namespace: &str, name: &str) -> Result<bool, OperatorError> {
    let api: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), namespace);
    let spod = SecurityProfilesOperatorDaemon::new(name, spo_model::SpodSpec::default());
    match api.create(&PostParams::default(), &spod).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(OperatorError::api(
            "creating the default",
            "SecurityProfilesOperatorDaemon",
            format!("{namespace}/{name}"),
            e,
        )),
    }
}
