//! The manager: one active replica per cluster. For each SeccompProfile it aggregates the
//! node statuses into `status` (lowest state wins) and the Ready condition, fills
//! `localhostProfile` and `activeWorkloads`, holds `in-use-by-active-pods` while pods use
//! the profile, and cleans finalizers and node statuses of nodes that no longer exist. At
//! start it creates the default SPOD.
//!
//! Watches: SeccompProfiles (the controller's cache), node statuses, nodes (metadata only:
//! names are all it needs) and pods (full objects, since `securityContext` is in the spec,
//! but each pod is reduced to the profiles it uses and dropped; see [`index`]). Each watch
//! event reconciles only the profiles it affects; there is no periodic resync.
//!
//! Garbage collection by owner references is not relied on: node statuses of deleted
//! profiles are deleted by the daemons, those of deleted nodes by the manager.

pub mod decide;
pub mod index;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use spo_model::contract::error_chain;
use spo_model::names::FINALIZER_IN_USE;
use spo_model::{SeccompProfile, SecurityProfileNodeStatus};
use tracing::{debug, info, warn};

use crate::daemon::plan::{api_retry_after, retry_after};
use crate::error::OperatorError;
use crate::kubeapi;
use crate::nodestatus::{NodeReport, owning_profile, read_report};
use crate::server::Endpoints;
use crate::tasks::Tasks;
use crate::workloads::{pod_key, seccomp_profiles_used};
use decide::{ProfileView, plan_profile};
use index::{NodeSet, ProfileIndex};

/// Settings of the manager.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// The operator's namespace.
    pub namespace: String,
    /// The SPOD's name.
    pub spod_name: String,
    /// Create the default SPOD when it does not exist.
    pub create_default_spod: bool,
    /// How many profiles are reconciled at once.
    pub concurrency: u16,
}

/// What the manager's watches feed and its reconciles read.
#[derive(Debug, Default)]
pub struct ManagerState {
    /// Node statuses of SeccompProfiles, by profile.
    pub reports: ProfileIndex<NodeReport>,
    /// Pods using SeccompProfiles, by profile.
    pub pods: ProfileIndex<()>,
    /// Existing nodes.
    pub nodes: NodeSet,
}

struct Ctx {
    client: Client,
    state: Arc<Mutex<ManagerState>>,
    failures: Mutex<std::collections::HashMap<String, u32>>,
}

fn lock(state: &Mutex<ManagerState>) -> std::sync::MutexGuard<'_, ManagerState> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the manager until `shutdown` resolves. Its watches end with it.
pub async fn run(
    client: Client,
    config: ManagerConfig,
    endpoints: Arc<Endpoints>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), OperatorError> {
    let mut tasks = Tasks::default();
    // Not ready until the indexes are complete (a standby that just took over was ready).
    endpoints.health.set_ready(false);
    if config.create_default_spod {
        tasks.spawn(create_default_spod(client.clone(), config.clone()));
    }
    let state = Arc::new(Mutex::new(ManagerState::default()));
    let (refs_tx, refs_rx) = mpsc::unbounded::<ObjectRef<SeccompProfile>>();
    let (all_tx, all_rx) = mpsc::unbounded::<()>();
    let (synced_tx, mut synced_rx) = tokio::sync::watch::channel(0u8);
    let synced_tx = Arc::new(synced_tx);

    // Node statuses -> reports index.
    {
        let (state, refs_tx, synced_tx) = (state.clone(), refs_tx.clone(), synced_tx.clone());
        let api: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        tasks.spawn(drive("SecurityProfileNodeStatus", stream, move |ev| {
            let entry = |s: &SecurityProfileNodeStatus| {
                let profile = owning_profile(s)
                    .filter(|(kind, _)| kind == "SeccompProfile")
                    .map(|(_, name)| name);
                let report = read_report(s);
                match (profile, report) {
                    (Some(p), Some(r)) => (vec![p], r),
                    _ => (
                        Vec::new(),
                        NodeReport {
                            node: String::new(),
                            state: None,
                            message: None,
                        },
                    ),
                }
            };
            let mut st = lock(&state);
            let changed = match ev {
                watcher::Event::Apply(s) => {
                    let (p, r) = entry(&s);
                    st.reports.apply(&s.name_any(), p, r)
                }
                watcher::Event::Delete(s) => st.reports.delete(&s.name_any()),
                watcher::Event::Init => {
                    st.reports.begin_relist();
                    BTreeSet::new()
                }
                watcher::Event::InitApply(s) => {
                    let (p, r) = entry(&s);
                    st.reports.relist_apply(&s.name_any(), p, r);
                    BTreeSet::new()
                }
                watcher::Event::InitDone => {
                    let c = st.reports.end_relist();
                    synced_tx.send_modify(|n| *n |= 1);
                    c
                }
            };
            drop(st);
            for p in changed {
                let _ = refs_tx.unbounded_send(ObjectRef::new(&p));
            }
        }));
    }

    // Pods -> workloads index (pods are reduced to the profiles they use, then dropped).
    {
        let (state, refs_tx, synced_tx) = (state.clone(), refs_tx.clone(), synced_tx.clone());
        let api: Api<Pod> = Api::all(client.clone());
        let stream = watcher(api, watcher::Config::default().page_size(500)).default_backoff();
        tasks.spawn(drive("Pod", stream, move |ev| {
            let mut st = lock(&state);
            let changed = match ev {
                watcher::Event::Apply(p) => st.pods.apply(&pod_key(&p), seccomp_profiles_used(&p), ()),
                watcher::Event::Delete(p) => st.pods.delete(&pod_key(&p)),
                watcher::Event::Init => {
                    st.pods.begin_relist();
                    BTreeSet::new()
                }
                watcher::Event::InitApply(p) => {
                    st.pods.relist_apply(&pod_key(&p), seccomp_profiles_used(&p), ());
                    BTreeSet::new()
                }
                watcher::Event::InitDone => {
                    let c = st.pods.end_relist();
                    synced_tx.send_modify(|n| *n |= 2);
                    c
                }
            };
            drop(st);
            for p in changed {
                let _ = refs_tx.unbounded_send(ObjectRef::new(&p));
            }
        }));
    }

    // Nodes (metadata only) -> node set; a change re-checks every profile.
    {
        let (state, synced_tx) = (state.clone(), synced_tx.clone());
        let api: Api<PartialObjectMeta<Node>> = Api::all(client.clone());
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        tasks.spawn(drive("Node", stream, move |ev| {
            let mut st = lock(&state);
            let changed = match ev {
                watcher::Event::Apply(n) => st.nodes.apply(&n.name_any()),
                watcher::Event::Delete(n) => st.nodes.delete(&n.name_any()),
                watcher::Event::Init => {
                    st.nodes.begin_relist();
                    false
                }
                watcher::Event::InitApply(n) => {
                    st.nodes.relist_apply(&n.name_any());
                    false
                }
                watcher::Event::InitDone => {
                    let c = st.nodes.end_relist();
                    synced_tx.send_modify(|n| *n |= 4);
                    c
                }
            };
            drop(st);
            if changed {
                let _ = all_tx.unbounded_send(());
            }
        }));
    }

    // Decide nothing before every index has a complete list: an empty pod index would
    // release in-use finalizers, an empty node set would drop every node's finalizer.
    let shutdown = shutdown.shared();
    let wait = synced_rx.wait_for(|n| *n == 7);
    tokio::select! {
        waited = tokio::time::timeout(Duration::from_secs(600), wait) => {
            if waited.is_err() {
                return Err(OperatorError::Config(
                    "node statuses, pods and nodes could not be listed within 10 minutes; check RBAC and the apiserver"
                        .into(),
                ));
            }
        }
        () = shutdown.clone() => {
            info!("manager stopped before its first complete list");
            return Ok(());
        }
    }
    endpoints.health.set_ready(true);
    {
        let st = lock(&state);
        info!(
            nodes = st.nodes.names().len(),
            node_statuses = st.reports.len(),
            pods_using_profiles = st.pods.len(),
            "manager started"
        );
    }

    let (reader, writer) = reflector::store::<SeccompProfile>();
    let api: Api<SeccompProfile> = Api::all(client.clone());
    let profiles = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(|p| p.managed_fields_mut().clear()),
    )
    .default_backoff()
    .applied_objects();
    let ctx = Arc::new(Ctx {
        client,
        state,
        failures: Mutex::new(std::collections::HashMap::new()),
    });
    Controller::for_stream(profiles, reader)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .reconcile_on(refs_rx)
        .reconcile_all_on(all_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
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
    endpoints.health.set_ready(false);
    info!("manager stopped");
    drop(tasks);
    Ok(())
}

async fn drive<S, T>(what: &'static str, stream: S, mut on_event: impl FnMut(watcher::Event<T>))
where
    S: futures::Stream<Item = Result<watcher::Event<T>, watcher::Error>>,
{
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => on_event(ev),
            Err(e) => warn!(watch = what, error = %error_chain(&e), "watch failed; retrying"),
        }
    }
    warn!(watch = what, "watch ended");
}

async fn create_default_spod(client: Client, config: ManagerConfig) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match kubeapi::ensure_spod(&client, &config.namespace, &config.spod_name).await {
            Ok(true) => {
                info!(namespace = %config.namespace, name = %config.spod_name, "created the default SPOD");
                return;
            }
            Ok(false) => return,
            Err(e) => {
                let after = retry_after(attempt);
                warn!(error = %error_chain(&e), retry_in = ?after, "creating the default SPOD failed");
                tokio::time::sleep(after).await;
            }
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn reconcile(profile: Arc<SeccompProfile>, ctx: Arc<Ctx>) -> Result<Action, OperatorError> {
    let name = profile.name_any();
    let finalizers = profile.finalizers().to_vec();
    let plan = {
        let st = lock(&ctx.state);
        let view = ProfileView {
            name: &name,
            generation: profile.meta().generation,
            deleting: profile.meta().deletion_timestamp.is_some(),
            finalizers: &finalizers,
            status: profile.status.as_ref(),
        };
        let empty = BTreeSet::new();
        let pods: BTreeSet<String> = st.pods.of(&name).map(|m| m.keys().cloned().collect()).unwrap_or(empty);
        let reports = st.reports.of(&name).map(|m| {
            m.values()
                .map(|r| (r.node.clone(), r.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        });
        plan_profile(
            &view,
            reports.as_ref(),
            st.nodes.names(),
            st.nodes.is_synced(),
            &pods,
            &now(),
        )
    };
    if plan.is_empty() {
        ctx.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name);
        return Ok(Action::await_change());
    }
    debug!(profile = %name, ?plan, "reconciling");
    for status in &plan.delete_node_statuses {
        info!(profile = %name, node_status = %status, "deleting the status of a node that no longer exists");
        kubeapi::delete_node_status(&ctx.client, status).await?;
    }
    if !plan.drop_finalizers.is_empty() {
        info!(profile = %name, finalizers = ?plan.drop_finalizers, "removing finalizers of nodes that no longer exist");
        let keep: Vec<String> = finalizers
            .iter()
            .filter(|f| !plan.drop_finalizers.contains(f))
            .cloned()
            .collect();
        let rv = profile.resource_version().unwrap_or_default();
        kubeapi::replace_finalizers::<SeccompProfile>(&ctx.client, &name, &rv, &keep).await?;
    }
    if let Some(status) = &plan.status {
        kubeapi::apply_profile_status::<SeccompProfile, _>(&ctx.client, &name, status).await?;
    }
    match plan.in_use_finalizer {
        Some(true) => {
            kubeapi::apply_finalizers::<SeccompProfile>(
                &ctx.client,
                &name,
                kubeapi::MANAGER_FIELD_MANAGER,
                &[FINALIZER_IN_USE.to_owned()],
            )
            .await?;
        }
        Some(false) => {
            info!(profile = %name, "no pod uses the profile any more; releasing it");
            let left =
                kubeapi::apply_finalizers::<SeccompProfile>(&ctx.client, &name, kubeapi::MANAGER_FIELD_MANAGER, &[])
                    .await?;
            if left.iter().any(|f| f == FINALIZER_IN_USE) {
                let keep: Vec<String> = left.into_iter().filter(|f| f != FINALIZER_IN_USE).collect();
                let rv = profile.resource_version().unwrap_or_default();
                kubeapi::replace_finalizers::<SeccompProfile>(&ctx.client, &name, &rv, &keep).await?;
            }
        }
        None => {}
    }
    Ok(Action::await_change())
}

fn error_policy(profile: Arc<SeccompProfile>, error: &OperatorError, ctx: Arc<Ctx>) -> Action {
    let name = profile.name_any();
    let after = if error.is_conflict() {
        Duration::from_millis(200)
    } else {
        let mut f = ctx.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = f.entry(name.clone()).or_insert(0);
        *n = n.saturating_add(1);
        api_retry_after(*n)
    };
    warn!(profile = %name, error = %error_chain(error), retry_in = ?after, "reconcile failed");
    Action::requeue(after)
}
