//! The node daemon: one per node, keeps the node's profile files in line with the cluster
//! and reports per node through SecurityProfileNodeStatus objects.
//!
//! The loop is generic over [`NodeKind`] (a [`ProfileBackend`] plus what the daemon needs
//! around it), so SELinux and AppArmor plug in as one more `NodeKind` each; seccomp is
//! [`seccomp::SeccompNode`]. What it watches:
//!
//! - the profiles of the kind (full objects: rendering needs the spec, and base profiles are
//!   resolved from this cache) through a kube-runtime controller; deletions without our
//!   finalizer are caught from the watch stream and cleaned up too;
//! - its own node statuses (label `spo.x-k8s.io/node-name=<node>`), so unchanged reports
//!   are not rewritten, even after a restart;
//! - the one SPOD object (field selector on its name), for the `security` policy; a policy
//!   change re-checks every profile.
//!
//! It does not watch pods: nothing the daemon decides depends on them (the manager tracks
//! workloads and holds `in-use-by-active-pods`, which the daemon honours when deleting).
//! There is no periodic resync; only failing profiles are requeued, with backoff.

pub mod plan;
pub mod seccomp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::api::Api;
use kube::core::ClusterResourceScope;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use spo_model::contract::{InstallName, ProfileBackend, SecurityProfile, error_chain, sync_profile};
use spo_model::names::{LABEL_NODE_NAME, node_finalizer, node_status_name};
use spo_model::{ProfileState, SecurityProfileNodeStatus, SecurityProfilesOperatorDaemon};
use tracing::{debug, info, warn};

use crate::error::OperatorError;
use crate::kubeapi;
use crate::nodestatus::{
    NodeReport, ProfileRef, desired_node_status, node_status_is_current, owning_profile, read_report,
};
use plan::{NodePlan, plan_profile, retry_after, should_emit_event};

/// The profile type of a [`NodeKind`].
pub type ProfileOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Profile;
/// The render context of a [`NodeKind`].
pub type ContextOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Context;
/// The install target of a [`NodeKind`].
pub type TargetOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Target;
/// The backend error of a [`NodeKind`].
pub type BackendErrorOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Error;

/// One profile kind on a node: its backend and target, and what the daemon needs to render
/// (the context is built from the watched profiles and the SPOD).
pub trait NodeKind: Send + Sync + 'static {
    /// The backend.
    type Backend: ProfileBackend<
            Profile: Resource<DynamicType = (), Scope = ClusterResourceScope>,
            Target: Send + Sync,
            Context: Send + 'static,
        > + Send
        + Sync
        + 'static;

    /// The backend.
    fn backend(&self) -> &Self::Backend;

    /// Where artifacts go on this node.
    fn target(&self) -> &TargetOf<Self>;

    /// The render context, from the watched profiles and the SPOD (when it exists).
    fn context(
        &self,
        profiles: &Store<ProfileOf<Self>>,
        spod: Option<&SecurityProfilesOperatorDaemon>,
    ) -> ContextOf<Self>;

    /// Profiles whose rendering depends on `changed` (base profiles): they are re-rendered
    /// when it changes or goes away.
    fn dependents(&self, _changed: &str, _profiles: &Store<ProfileOf<Self>>) -> Vec<String> {
        Vec::new()
    }

    /// What is installed on the node now (for the start-up sweep of orphans).
    fn installed(&self) -> Result<Vec<InstallName>, BackendErrorOf<Self>>;

    /// Start-up housekeeping, such as removing temporary files of interrupted installs;
    /// returns how many things it cleaned.
    fn prepare(&self) -> Result<usize, BackendErrorOf<Self>>;
}

/// Settings of a daemon.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// This node's name (`NODE_NAME`).
    pub node: String,
    /// The operator's namespace, where the SPOD lives.
    pub namespace: String,
    /// The SPOD's name.
    pub spod_name: String,
    /// How many profiles are reconciled at once.
    pub concurrency: u16,
}

struct Ctx<K: NodeKind> {
    kind: Arc<K>,
    client: Client,
    node: String,
    field_manager: String,
    profiles: Store<ProfileOf<K>>,
    statuses: Store<SecurityProfileNodeStatus>,
    spod: Store<SecurityProfilesOperatorDaemon>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
}

impl<K: NodeKind> Ctx<K> {
    fn failed(&self, name: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = f.entry(name.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        retry_after(*n)
    }

    fn succeeded(&self, name: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    fn previous_report(&self, name: &str) -> Option<(SecurityProfileNodeStatus, Option<NodeReport>)> {
        let status = self
            .statuses
            .get(&ObjectRef::new(&node_status_name(name, &self.node)))?;
        let report = read_report(&status);
        Some(((*status).clone(), report))
    }
}

/// Runs the daemon for one kind until `shutdown` resolves or a watch cannot be started.
pub async fn run<K: NodeKind>(
    client: Client,
    kind: K,
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), OperatorError> {
    let kind = Arc::new(kind);
    let kind_name = <ProfileOf<K> as SecurityProfile>::KIND.kind_name();
    match kind.prepare() {
        Ok(0) => {}
        Ok(n) => info!(cleaned = n, "removed leftovers of interrupted installs"),
        Err(e) => warn!(error = %error_chain(&e), "start-up housekeeping failed; continuing"),
    }

    // The SPOD: its policy applies to every render; a change re-checks every profile.
    let (spod_reader, spod_writer) = reflector::store::<SecurityProfilesOperatorDaemon>();
    let (all_tx, all_rx) = mpsc::unbounded::<()>();
    let spod_api: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), &config.namespace);
    let spod_cfg = watcher::Config::default().fields(&format!("metadata.name={}", config.spod_name));
    let mut last_security = None;
    let spod_stream = reflector::reflector(spod_writer, watcher(spod_api, spod_cfg))
        .default_backoff()
        .inspect_ok(move |ev| {
            let security = match ev {
                watcher::Event::Apply(s) | watcher::Event::InitApply(s) => Some(s.spec.security.clone()),
                watcher::Event::Delete(_) => Some(None),
                _ => None,
            };
            if let Some(security) = security
                && last_security.as_ref() != Some(&security)
            {
                let first = last_security.is_none();
                last_security = Some(security);
                if !first {
                    info!("SPOD security policy changed; re-checking every profile");
                    let _ = all_tx.unbounded_send(());
                }
            }
        });
    tokio::spawn(drive("SecurityProfilesOperatorDaemon", spod_stream));

    // This node's statuses.
    let (status_reader, status_writer) = reflector::store::<SecurityProfileNodeStatus>();
    let status_api: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    let status_cfg = watcher::Config::default().labels(&format!("{LABEL_NODE_NAME}={}", config.node));
    let status_stream = reflector::reflector(
        status_writer,
        watcher(status_api, status_cfg).modify(|s| s.managed_fields_mut().clear()),
    )
    .default_backoff();
    tokio::spawn(drive("SecurityProfileNodeStatus", status_stream));

    // The profiles, with deletions and base-profile changes picked off the stream.
    let (profile_reader, profile_writer) = reflector::store::<ProfileOf<K>>();
    let (dep_tx, dep_rx) = mpsc::unbounded::<ObjectRef<ProfileOf<K>>>();
    let (gone_tx, gone_rx) = mpsc::unbounded::<String>();
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    let (dep_kind, dep_store) = (kind.clone(), profile_reader.clone());
    let profile_api: Api<ProfileOf<K>> = Api::all(client.clone());
    let profile_stream = reflector::reflector(
        profile_writer,
        watcher(profile_api, watcher::Config::default()).modify(|p| p.managed_fields_mut().clear()),
    )
    .default_backoff()
    .inspect_ok(move |ev| {
        let notify = |name: &str| {
            for child in dep_kind.dependents(name, &dep_store) {
                let _ = dep_tx.unbounded_send(ObjectRef::new(&child));
            }
        };
        match ev {
            watcher::Event::InitApply(p) => {
                generations.insert(p.name_any(), Resource::meta(p).generation);
            }
            watcher::Event::Apply(p) => {
                let name = p.name_any();
                if generations.insert(name.clone(), Resource::meta(p).generation) != Some(Resource::meta(p).generation)
                {
                    notify(&name);
                }
            }
            watcher::Event::Delete(p) => {
                let name = p.name_any();
                generations.remove(&name);
                let _ = gone_tx.unbounded_send(name.clone());
                notify(&name);
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    })
    .applied_objects();

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "spo-daemon".into(),
            instance: Some(config.node.clone()),
        },
    );
    let ctx = Arc::new(Ctx {
        kind: kind.clone(),
        client: client.clone(),
        node: config.node.clone(),
        field_manager: kubeapi::daemon_field_manager(&config.node),
        profiles: profile_reader.clone(),
        statuses: status_reader.clone(),
        spod: spod_reader.clone(),
        recorder,
        failures: Mutex::new(HashMap::new()),
    });

    // Render nothing before the policy and our statuses are known.
    let ready = async {
        let _ = spod_reader.wait_until_ready().await;
        let _ = status_reader.wait_until_ready().await;
    };
    if tokio::time::timeout(Duration::from_secs(300), ready).await.is_err() {
        warn!("SPOD or node statuses not listed after 5 minutes; starting anyway");
    }
    info!(node = %config.node, kind = kind_name, "daemon started");

    tokio::spawn(cleanup_gone(ctx.clone(), gone_rx));
    tokio::spawn(sweep_orphans(ctx.clone()));

    Controller::for_stream(profile_stream, profile_reader)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .reconcile_all_on(all_rx)
        .reconcile_on(dep_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|res| async move {
            match res {
                Ok(_) => {}
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    debug!(profile = %obj.name, error = %error_chain(&e), "reconcile failed; requeued")
                }
                // Deleted after a trigger was queued: nothing to do.
                Err(controller::Error::ObjectNotFound(obj)) => debug!(profile = %obj.name, "gone before reconcile"),
                Err(e) => warn!(error = %error_chain(&e), "controller"),
            }
        })
        .await;
    info!("daemon stopped");
    Ok(())
}

/// Consumes a reflector stream, logging watch errors (the backoff retries them).
async fn drive<S, T>(what: &'static str, stream: S)
where
    S: futures::Stream<Item = Result<T, watcher::Error>>,
{
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            warn!(watch = what, error = %error_chain(&e), "watch failed; retrying");
        }
    }
    warn!(watch = what, "watch ended");
}

async fn reconcile<K: NodeKind>(profile: Arc<ProfileOf<K>>, ctx: Arc<Ctx<K>>) -> Result<Action, OperatorError> {
    let name = profile.name_any();
    let kind_name = <ProfileOf<K> as SecurityProfile>::KIND.kind_name();
    let finalizers = profile.finalizers().to_vec();
    let deleting = Resource::meta(&*profile).deletion_timestamp.is_some();
    let pref = ProfileRef {
        kind: kind_name,
        name: name.clone(),
        uid: profile.uid().unwrap_or_default(),
    };
    let previous = ctx.previous_report(&name);
    match plan_profile(&ctx.node, deleting, &finalizers) {
        NodePlan::Sync { add_finalizer } => {
            if add_finalizer {
                kubeapi::apply_finalizers::<ProfileOf<K>>(
                    &ctx.client,
                    &name,
                    &ctx.field_manager,
                    &[node_finalizer(&ctx.node)],
                )
                .await?;
            }
            let kind = ctx.kind.clone();
            let spod = ctx.spod.state().into_iter().next();
            let cx = kind.context(&ctx.profiles, spod.as_deref());
            let p = profile.clone();
            let outcome = tokio::task::spawn_blocking(move || sync_profile(kind.backend(), kind.target(), &*p, &cx))
                .await
                .map_err(|source| OperatorError::Join {
                    name: name.clone(),
                    source,
                })?;
            if outcome.changed {
                info!(profile = %name, state = %outcome.state, "node updated");
            }
            report(
                &ctx,
                &pref,
                outcome.state,
                outcome.message.as_deref(),
                previous.as_ref(),
            )
            .await?;
            let prev_report = previous.as_ref().and_then(|(_, r)| r.as_ref());
            if should_emit_event(prev_report, &outcome) {
                let note = outcome.message.clone().unwrap_or_default();
                warn!(profile = %name, message = %note, "profile not installed");
                let ev = KubeEvent {
                    type_: EventType::Warning,
                    reason: "ProfileNotInstalled".into(),
                    note: Some(crate::nodestatus::clip_message(&note).chars().take(1000).collect()),
                    action: "Install".into(),
                    secondary: None,
                };
                if let Err(e) = ctx.recorder.publish(&ev, &profile.object_ref(&())).await {
                    warn!(profile = %name, error = %error_chain(&e), "publishing the event failed");
                }
            }
            if outcome.state == ProfileState::Error {
                // Errors may be transient (disk, kubelet dir mounted later): look again later.
                return Ok(Action::requeue(ctx.failed(&name)));
            }
            ctx.succeeded(&name);
            Ok(Action::await_change())
        }
        NodePlan::Hold => {
            report(&ctx, &pref, ProfileState::Terminating, None, previous.as_ref()).await?;
            Ok(Action::await_change())
        }
        NodePlan::Release { remove_finalizer } => {
            remove_from_node(&ctx, &name).await?;
            kubeapi::delete_node_status(&ctx.client, &node_status_name(&name, &ctx.node)).await?;
            if remove_finalizer {
                let ours = node_finalizer(&ctx.node);
                let left =
                    kubeapi::apply_finalizers::<ProfileOf<K>>(&ctx.client, &name, &ctx.field_manager, &[]).await?;
                if left.contains(&ours) {
                    // Someone else also claims our finalizer (added by hand or by another
                    // tool): remove it by value, guarded by the object's version.
                    let keep: Vec<String> = left.into_iter().filter(|f| *f != ours).collect();
                    let rv = profile.resource_version().unwrap_or_default();
                    kubeapi::replace_finalizers::<ProfileOf<K>>(&ctx.client, &name, &rv, &keep).await?;
                }
            }
            ctx.succeeded(&name);
            info!(profile = %name, "profile deleted; removed from this node");
            Ok(Action::await_change())
        }
    }
}

async fn report<K: NodeKind>(
    ctx: &Ctx<K>,
    profile: &ProfileRef,
    state: ProfileState,
    message: Option<&str>,
    previous: Option<&(SecurityProfileNodeStatus, Option<NodeReport>)>,
) -> Result<(), OperatorError> {
    let desired = desired_node_status(profile, &ctx.node, state, message);
    if previous.is_some_and(|(current, _)| node_status_is_current(current, &desired)) {
        return Ok(());
    }
    kubeapi::apply_node_status(&ctx.client, &ctx.field_manager, &desired).await
}

async fn remove_from_node<K: NodeKind>(ctx: &Ctx<K>, name: &str) -> Result<(), OperatorError> {
    let Ok(install_name) = InstallName::new(name) else {
        // Never installed: such names are refused before anything is written.
        return Ok(());
    };
    let kind = ctx.kind.clone();
    tokio::task::spawn_blocking(move || kind.backend().remove(kind.target(), &install_name))
        .await
        .map_err(|source| OperatorError::Join {
            name: name.to_owned(),
            source,
        })?
        .map_err(|e| OperatorError::Node {
            operation: "removing profile",
            name: name.to_owned(),
            source: Box::new(e),
        })?;
    Ok(())
}

fn error_policy<K: NodeKind>(profile: Arc<ProfileOf<K>>, error: &OperatorError, ctx: Arc<Ctx<K>>) -> Action {
    let name = profile.name_any();
    let after = if error.is_conflict() {
        Duration::from_millis(200)
    } else {
        ctx.failed(&name)
    };
    warn!(profile = %name, error = %error_chain(error), retry_in = ?after, "reconcile failed");
    Action::requeue(after)
}

/// Cleans up after profiles deleted without waiting for this node (no finalizer of ours,
/// or it was removed by the manager while this daemon was away).
async fn cleanup_gone<K: NodeKind>(ctx: Arc<Ctx<K>>, mut gone: mpsc::UnboundedReceiver<String>) {
    while let Some(name) = gone.next().await {
        if ctx.profiles.get(&ObjectRef::new(&name)).is_some() {
            continue; // Re-created meanwhile.
        }
        forget(&ctx, &name).await;
    }
}

async fn forget<K: NodeKind>(ctx: &Ctx<K>, name: &str) {
    ctx.succeeded(name);
    if let Err(e) = remove_from_node(ctx, name).await {
        warn!(profile = %name, error = %error_chain(&e), "removing a deleted profile from the node failed");
    }
    if let Err(e) = kubeapi::delete_node_status(&ctx.client, &node_status_name(name, &ctx.node)).await {
        warn!(profile = %name, error = %error_chain(&e), "deleting the node status of a deleted profile failed");
    }
}

/// Once the profiles are listed: removes files and node statuses of profiles that no
/// longer exist (deleted while this daemon was not running).
async fn sweep_orphans<K: NodeKind>(ctx: Arc<Ctx<K>>) {
    if ctx.profiles.wait_until_ready().await.is_err() {
        return;
    }
    let kind_name = <ProfileOf<K> as SecurityProfile>::KIND.kind_name();
    let kind = ctx.kind.clone();
    let installed = match tokio::task::spawn_blocking(move || kind.installed())
        .map(|r| r.ok())
        .await
    {
        Some(Ok(list)) => list,
        Some(Err(e)) => {
            warn!(error = %error_chain(&e), "listing installed profiles failed; no orphan sweep");
            Vec::new()
        }
        None => Vec::new(),
    };
    let mut orphans: Vec<String> = installed
        .into_iter()
        .map(|n| n.as_str().to_owned())
        .filter(|n| ctx.profiles.get(&ObjectRef::new(n)).is_none())
        .collect();
    for status in ctx.statuses.state() {
        if let Some((kind, profile)) = owning_profile(&status)
            && kind == kind_name
            && ctx.profiles.get(&ObjectRef::new(&profile)).is_none()
        {
            orphans.push(profile);
        }
    }
    orphans.sort();
    orphans.dedup();
    for name in orphans {
        info!(profile = %name, "removing leftovers of a profile deleted while the daemon was away");
        forget(&ctx, &name).await;
    }
}
