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

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use spo_model::{ProfileState, SecurityProfileNodeStatus, SecurityProfilesOperatorDaemon};

use crate::error::{OperatorError, is_not_found};

/// How long an idle pooled connection to the apiserver is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many idle connections to the apiserver are kept at most. A burst opens as many as it
/// has requests in flight (hundreds); once it is over, these few serve the steady trickle.
pub const POOL_MAX_IDLE: usize = 8;

/// A client for the apiserver of `config`, with a connection pool that forgets idle
/// connections.
///
/// kube's own `Client::try_from` builds its hyper client without a pool timer, and hyper
/// expires idle connections only with one: every connection a burst opened stayed open,
/// with its buffers and TLS state (4.1 MB of the daemon's live heap after a burst of 500
/// requests in flight; docs/benchmarks.md). This client is kube's stack (base URI,
/// authentication, extra headers, the server-retry policy, connect/read/write timeouts,
/// rustls) over a hyper client with [`POOL_IDLE_TIMEOUT`] and [`POOL_MAX_IDLE`]; kube's
/// HTTP tracing spans are left out. A kubeconfig naming a proxy gets kube's own client,
/// which knows the proxy protocols.
pub fn client(config: kube::Config) -> Result<Client, kube::Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use kube::client::ConfigExt;
    use kube::client::retry::RetryPolicy;

    if config.proxy_url.is_some() {
        return Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pooled = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(pooled);
    Ok(Client::new(service, config.default_namespace))
}

/// The field manager of the manager.
pub const MANAGER_FIELD_MANAGER: &str = "spo-manager";

/// The field manager of the daemon on `node` (at most 128 characters, the apiserver's limit).
pub fn daemon_field_manager(node: &str) -> String {
    let mut m = format!("spo-daemon-{node}");
    m.truncate(128);
    m
}

/// Server-side apply as `manager`, taking over fields another manager set.
pub(crate) fn apply(manager: &str) -> PatchParams {
    PatchParams::apply(manager).force()
}

/// How long one request may take before it counts as failed and is retried. The client
/// itself has no read timeout (watches are long polls, guarded by the watcher's own idle
/// timeout), so without this a write to a hung apiserver would hold its reconcile slot
/// forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `request`, failed with [`OperatorError::Timeout`] when it takes longer than
/// [`REQUEST_TIMEOUT`].
pub(crate) async fn timed<T>(
    operation: &'static str,
    kind: &str,
    name: &str,
    request: impl Future<Output = Result<T, OperatorError>>,
) -> Result<T, OperatorError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => Err(OperatorError::Timeout {
            operation,
            kind: kind.to_owned(),
            name: name.to_owned(),
            seconds: REQUEST_TIMEOUT.as_secs(),
        }),
    }
}

/// Applies, as `field_manager`, the finalizer set `finalizers` on the cluster-scoped
/// object `name` of kind `K`: adds those missing, and removes those this manager added
/// before and no longer lists. Returns the object's finalizers afterwards (none when the
/// object is gone).
///
/// An apply to an object that no longer exists is a create; the body holds no `spec`, which
/// every profile CRD requires, so the apiserver refuses it. That refusal, for an object
/// deleted meanwhile (typically its last finalizer removed by another node), is not an
/// error: a GET confirms the object is gone.
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
    let kind = K::kind(&());
    let applied = timed("applying finalizers of", &kind, name, async {
        api.patch(name, &apply(field_manager), &Patch::Apply(&body))
            .await
            .map_err(|e| OperatorError::api("applying finalizers of", kind.clone().into_owned(), name, e))
    })
    .await;
    match applied {
        Ok(obj) => Ok(obj.finalizers().to_vec()),
        Err(e) => {
            let gone = timed("reading", &kind, name, async {
                api.get_opt(name)
                    .await
                    .map_err(|e| OperatorError::api("reading", kind.clone().into_owned(), name, e))
            })
            .await;
            match gone {
                Ok(None) => Ok(Vec::new()),
                _ => Err(e),
            }
        }
    }
}

/// Readies `meta`, of an object about to replace `existing` with a PUT (pure): the existing
/// object's resourceVersion (the write fails if it changed meanwhile) and its finalizers, so the
/// holds others put on it (the nodes', in-use) stay: a PUT's metadata replaces them all.
pub fn carry_over_for_replace(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    existing: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    meta.resource_version = existing.resource_version.clone();
    meta.finalizers = existing.finalizers.clone();
}

/// Replaces the finalizers of the cluster-scoped `name` with `finalizers`, only if the object
/// is still at `resource_version` (409 otherwise). Used to remove finalizers this writer does
/// not own. See [`replace_finalizers_in`].
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
    replace_finalizers_in(&Api::<K>::all(client.clone()), name, resource_version, finalizers).await
}

/// Replaces the finalizers of `name` in `api` (a namespace's, or every object's for a
/// cluster-scoped kind) with `finalizers`, only if the object is still at `resource_version`
/// (409 otherwise: look again and retry from the newest object). An object already gone is
/// not an error.
pub async fn replace_finalizers_in<K>(
    api: &Api<K>,
    name: &str,
    resource_version: &str,
    finalizers: &[String],
) -> Result<(), OperatorError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = json!({ "metadata": { "resourceVersion": resource_version, "finalizers": finalizers } });
    let kind = K::kind(&());
    timed("replacing the finalizers of", &kind, name, async {
        match api.patch(name, &PatchParams::default(), &Patch::Merge(&body)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(OperatorError::api(
                "replacing the finalizers of",
                kind.clone().into_owned(),
                name,
                e,
            )),
        }
    })
    .await
}

/// Publishes an Event about `reference` (best effort: a failure is logged, never returned).
/// The note is cut to [`crate::nodestatus::MAX_MESSAGE`] bytes, then to 1,000 characters, so
/// it stays within what the Events API takes.
pub async fn publish_event(
    recorder: &Recorder,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(crate::nodestatus::clip_message(note).chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::warn!(
            object = ?reference.name,
            reason,
            error = %spo_model::contract::error_chain(&e),
            "publishing the event failed"
        );
    }
}

/// Writes a node status: the object (labels, message annotation, owner, `spec.nodeName`),
/// then its `status.status` through the status subresource. Both are applies by the daemon's field
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
    timed("applying", "SecurityProfileNodeStatus", &name, async {
        api.patch(&name, &apply(field_manager), &Patch::Apply(&object))
            .await
            .map_err(|e| OperatorError::api("applying", "SecurityProfileNodeStatus", &name, e))
    })
    .await?;
    let status = json!({
        "apiVersion": spo_model::API_VERSION,
        "kind": "SecurityProfileNodeStatus",
        "metadata": { "name": name },
        "status": { "status": desired.state().map(ProfileState::as_str) },
    });
    timed("applying the status of", "SecurityProfileNodeStatus", &name, async {
        api.patch_status(&name, &apply(field_manager), &Patch::Apply(&status))
            .await
            .map_err(|e| OperatorError::api("applying the status of", "SecurityProfileNodeStatus", &name, e))
    })
    .await?;
    Ok(())
}

/// Deletes a node status; succeeds when it is already gone.
pub async fn delete_node_status(client: &Client, name: &str) -> Result<(), OperatorError> {
    let api: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    timed("deleting", "SecurityProfileNodeStatus", name, async {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(OperatorError::api("deleting", "SecurityProfileNodeStatus", name, e)),
        }
    })
    .await
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
    let kind = K::kind(&());
    timed("applying the status of", &kind, name, async {
        match api
            .patch_status(name, &apply(MANAGER_FIELD_MANAGER), &Patch::Apply(&body))
            .await
        {
            Ok(_) => Ok(()),
            // Gone meanwhile: there is nothing to report on.
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(OperatorError::api(
                "applying the status of",
                kind.clone().into_owned(),
                name,
                e,
            )),
        }
    })
    .await
}

/// Creates the default SPOD `name` in `namespace` unless it exists (an existing one is
/// never changed: it is the administrator's configuration). Returns whether it was created.
pub async fn ensure_spod(client: &Client, namespace: &str, name: &str) -> Result<bool, OperatorError> {
    let api: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), namespace);
    let spod = SecurityProfilesOperatorDaemon::new(name, spo_model::SpodSpec::default());
    let full = format!("{namespace}/{name}");
    timed("creating the default", "SecurityProfilesOperatorDaemon", &full, async {
        match api.create(&PostParams::default(), &spod).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(OperatorError::api(
                "creating the default",
                "SecurityProfilesOperatorDaemon",
                full.clone(),
                e,
            )),
        }
    })
    .await
}

/// Applies the SeccompProfile log recording runs containers under
/// ([`spo_model::names::LOG_ENRICHER_PROFILE`]: `SCMP_ACT_LOG` for every call), as the manager.
pub async fn apply_log_enricher_profile(client: &Client) -> Result<(), OperatorError> {
    let name = spo_model::names::LOG_ENRICHER_PROFILE;
    let api: Api<spo_model::SeccompProfile> = Api::all(client.clone());
    let body = json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SeccompProfile",
        "metadata": {"name": name, "labels": {"app": "security-profiles-operator"}},
        "spec": {"defaultAction": "SCMP_ACT_LOG"},
    });
    timed("applying", "SeccompProfile", name, async {
        api.patch(name, &apply(MANAGER_FIELD_MANAGER), &Patch::Apply(&body))
            .await
            .map(|_| ())
            .map_err(|e| OperatorError::api("applying", "SeccompProfile", name, e))
    })
    .await
}

/// The SelinuxProfile [`apply_selinux_recording_profile`] applies (pure).
pub fn selinux_recording_profile() -> serde_json::Value {
    json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SelinuxProfile",
        "metadata": {
            "name": spo_model::names::SELINUX_RECORDING_PROFILE,
            "labels": {"app": "security-profiles-operator"},
        },
        "spec": {"inherit": [{"kind": "System", "name": "container"}], "mode": "Permissive"},
    })
}

/// Applies the SelinuxProfile SELinux log recording runs containers as
/// ([`spo_model::names::SELINUX_RECORDING_PROFILE`]: a permissive domain that inherits
/// `container`, so pods use `selinuxrecording.process`, the type upstream's recording uses), as
/// the manager.
pub async fn apply_selinux_recording_profile(client: &Client) -> Result<(), OperatorError> {
    let name = spo_model::names::SELINUX_RECORDING_PROFILE;
    let api: Api<spo_model::SelinuxProfile> = Api::all(client.clone());
    let body = selinux_recording_profile();
    timed("applying", "SelinuxProfile", name, async {
        api.patch(name, &apply(MANAGER_FIELD_MANAGER), &Patch::Apply(&body))
            .await
            .map(|_| ())
            .map_err(|e| OperatorError::api("applying", "SelinuxProfile", name, e))
    })
    .await
}

/// Reads the Lease `namespace/name`; `None` when it does not exist.
pub async fn get_lease(client: &Client, namespace: &str, name: &str) -> Result<Option<Lease>, OperatorError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let full = format!("{namespace}/{name}");
    timed("reading", "Lease", &full, async {
        api.get_opt(name)
            .await
            .map_err(|e| OperatorError::api("reading", "Lease", full.clone(), e))
    })
    .await
}

/// Creates `lease`; `Ok(None)` when another replica created it first (409).
pub async fn create_lease(client: &Client, namespace: &str, lease: &Lease) -> Result<Option<Lease>, OperatorError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let full = format!("{namespace}/{}", lease.name_any());
    timed("creating", "Lease", &full, async {
        match api.create(&PostParams::default(), lease).await {
            Ok(l) => Ok(Some(l)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(OperatorError::api("creating", "Lease", full.clone(), e)),
        }
    })
    .await
}

/// Replaces `lease` if it is still at its `metadata.resourceVersion`; `Ok(None)` when
/// someone else changed it first (409): the caller reads it again.
pub async fn replace_lease(client: &Client, namespace: &str, lease: &Lease) -> Result<Option<Lease>, OperatorError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let name = lease.name_any();
    let full = format!("{namespace}/{name}");
    timed("updating", "Lease", &full, async {
        match api.replace(&name, &PostParams::default(), lease).await {
            Ok(l) => Ok(Some(l)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(OperatorError::api("updating", "Lease", full.clone(), e)),
        }
    })
    .await
}

/// Follows the SPOD `namespace/name` in a task: `decide` turns each version of it (`None`
/// when it is deleted) into the value the receiver holds; `None` from `decide` keeps the
/// previous value (a setting that cannot be used must not switch a component off). Watch
/// errors are retried with backoff. The task ends when the receiver is dropped or aborted.
pub fn follow_spod<T, F>(
    client: Client,
    namespace: &str,
    name: &str,
    initial: T,
    decide: F,
) -> (tokio::sync::watch::Receiver<T>, tokio::task::JoinHandle<()>)
where
    T: Send + Sync + 'static,
    F: Fn(Option<&SecurityProfilesOperatorDaemon>) -> Option<T> + Send + 'static,
{
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};

    let (tx, rx) = tokio::sync::watch::channel(initial);
    let spods: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client, namespace);
    let stream = watcher(
        spods,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let value = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => decide(Some(&s)),
                Ok(watcher::Event::Delete(_)) => decide(None),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "SPOD watch error; retrying");
                    None
                }
            };
            if let Some(v) = value
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn a_replacement_keeps_the_holds_others_put_on_the_object() {
        let existing = ObjectMeta {
            name: Some("rec-web".into()),
            resource_version: Some("41".into()),
            finalizers: Some(vec!["node-a-deleted".into(), "in-use-by-active-pods".into()]),
            annotations: Some([("old".to_owned(), "x".to_owned())].into()),
            ..ObjectMeta::default()
        };
        let mut new = ObjectMeta {
            name: Some("rec-web".into()),
            annotations: Some([("new".to_owned(), "y".to_owned())].into()),
            ..ObjectMeta::default()
        };
        carry_over_for_replace(&mut new, &existing);
        assert_eq!(new.resource_version.as_deref(), Some("41"));
        assert_eq!(new.finalizers, existing.finalizers);
        assert_eq!(
            new.annotations,
            Some([("new".to_owned(), "y".to_owned())].into()),
            "what the writer says stays its own"
        );
    }
}
