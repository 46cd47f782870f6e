//! The manager: one active replica per cluster. For each profile of every kind
//! (SeccompProfile, SelinuxProfile, RawSelinuxProfile, AppArmorProfile) it aggregates the
//! node statuses into `status` (lowest state wins) and the Ready condition, fills the kind's
//! own fields (`localhostProfile`, `usage`) and `activeWorkloads`, holds
//! `in-use-by-active-pods` while pods use the profile, and cleans finalizers and node
//! statuses of nodes that no longer exist. At start it creates the default SPOD.
//!
//! Watches: node statuses, pods and nodes, each fed into its index by one generic driver
//! (`drive_index`) and shared by every kind; and per kind the profiles (the controller's
//! cache). Pods are full objects, since `securityContext` is in the spec, but each pod is
//! reduced to the profiles it uses and dropped; see [`index`]. Index entries are keyed by
//! kind and name ([`crate::workloads::profile_key`]), and each change reconciles only the
//! profiles it affects, routed to their kind's controller; there is no periodic resync.
//! Each kind is one [`ManagedKind`] (its status type, [`decide::KindStatus`]).
//!
//! Garbage collection by owner references is not relied on: node statuses of deleted
//! profiles are deleted by the daemons, those of deleted nodes by the manager.

pub mod bindings;
pub mod decide;
pub mod index;
pub mod nodeset;
pub mod recordings;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::core::{ClusterResourceScope, PartialObjectMeta};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use spo_model::apparmor::AppArmorProfileStatus;
use spo_model::contract::{ProfileKind, SecurityProfile, error_chain};
use spo_model::names::FINALIZER_IN_USE;
use spo_model::seccomp::SeccompProfileStatus;
use spo_model::selinux::SelinuxProfileStatus;
use spo_model::{AppArmorProfile, RawSelinuxProfile, SeccompProfile, SecurityProfileNodeStatus, SelinuxProfile};
use tracing::{debug, info, warn};

use crate::daemon::plan::{api_retry_after, retry_after};
use crate::error::OperatorError;
use crate::kubeapi;
use crate::nodestatus::{NodeReport, owning_profile, read_report};
use crate::server::Endpoints;
use crate::tasks::Tasks;
use crate::workloads::{parse_profile_key, pod_key, profile_key, profiles_used};
use decide::{KindStatus, ProfileView, plan_profile};
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
    /// How many profiles are reconciled at once (per kind).
    pub concurrency: u16,
    /// Render the node DaemonSets from the SPOD (`None`: they are deployed some other way).
    pub node_sets: Option<nodeset::NodeSetConfig>,
}

/// What the manager's watches feed and its reconciles read.
#[derive(Debug, Default)]
pub struct ManagerState {
    /// Node statuses, by profile key (`<Kind>/<name>`).
    pub reports: ProfileIndex<NodeReport>,
    /// Pods using profiles, by profile key.
    pub pods: ProfileIndex<()>,
    /// Existing nodes.
    pub nodes: NodeSet,
}

/// One profile kind in the manager: its object and status types.
pub trait ManagedKind: Send + Sync + 'static {
    /// The profile type.
    type Profile: SecurityProfile + Resource<DynamicType = (), Scope = ClusterResourceScope>;
    /// Its `status` type.
    type Status: KindStatus + Serialize + Send + Sync + 'static;
    /// The current status of `profile`.
    fn status(profile: &Self::Profile) -> Option<&Self::Status>;
}

/// SeccompProfiles in the manager.
#[derive(Debug)]
pub struct SeccompKind;
impl ManagedKind for SeccompKind {
    type Profile = SeccompProfile;
    type Status = SeccompProfileStatus;
    fn status(p: &SeccompProfile) -> Option<&SeccompProfileStatus> {
        p.status.as_ref()
    }
}

/// SelinuxProfiles in the manager.
#[derive(Debug)]
pub struct SelinuxKind;
impl ManagedKind for SelinuxKind {
    type Profile = SelinuxProfile;
    type Status = SelinuxProfileStatus;
    fn status(p: &SelinuxProfile) -> Option<&SelinuxProfileStatus> {
        p.status.as_ref()
    }
}

/// RawSelinuxProfiles in the manager.
#[derive(Debug)]
pub struct RawSelinuxKind;
impl ManagedKind for RawSelinuxKind {
    type Profile = RawSelinuxProfile;
    type Status = SelinuxProfileStatus;
    fn status(p: &RawSelinuxProfile) -> Option<&SelinuxProfileStatus> {
        p.status.as_ref()
    }
}

/// AppArmorProfiles in the manager.
#[derive(Debug)]
pub struct AppArmorKind;
impl ManagedKind for AppArmorKind {
    type Profile = AppArmorProfile;
    type Status = AppArmorProfileStatus;
    fn status(p: &AppArmorProfile) -> Option<&AppArmorProfileStatus> {
        p.status.as_ref()
    }
}

struct Ctx {
    client: Client,
    state: Arc<Mutex<ManagerState>>,
    failures: Mutex<HashMap<String, u32>>,
    /// Events the manager publishes (about recordings it merges).
    events: Recorder,
    /// The recording controller's input (`namespace/name`): a partial profile's arrival brings
    /// its recording back for a merge once its pods are gone.
    recording_refs: Option<mpsc::UnboundedSender<String>>,
}

fn lock(state: &Mutex<ManagerState>) -> std::sync::MutexGuard<'_, ManagerState> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where index changes go: each kind's controller gets the names of its profiles that changed.
#[derive(Clone, Default)]
struct Router {
    kinds: HashMap<ProfileKind, mpsc::UnboundedSender<String>>,
    /// The binding controller gets `namespace/name` of the bindings whose pods changed.
    bindings: Option<mpsc::UnboundedSender<String>>,
    /// The recording controller gets `namespace/name` of the recordings whose pods changed.
    recordings: Option<mpsc::UnboundedSender<String>>,
}

impl Router {
    fn send(&self, keys: BTreeSet<String>) {
        for key in keys {
            if let Some(binding) = key.strip_prefix(bindings::KEY_PREFIX) {
                if let Some(tx) = &self.bindings {
                    let _ = tx.unbounded_send(binding.to_owned());
                }
            } else if let Some(recording) = key.strip_prefix(recordings::KEY_PREFIX) {
                if let Some(tx) = &self.recordings {
                    let _ = tx.unbounded_send(recording.to_owned());
                }
            } else if let Some((kind, name)) = parse_profile_key(&key)
                && let Some(tx) = self.kinds.get(&kind)
            {
                let _ = tx.unbounded_send(name.to_owned());
            }
        }
    }
}

/// How one watched object feeds an index: its key, the profile keys it is about, its value.
type Entry<T, V> = fn(&T) -> (String, Vec<String>, V);

/// What every index driver feeds: the state, the synced bits, the kinds' controllers.
#[derive(Clone)]
struct Feed {
    state: Arc<Mutex<ManagerState>>,
    synced: Arc<tokio::sync::watch::Sender<u8>>,
    router: Router,
}

/// The one index driver: applies a watch's events to the index `pick` selects, marks the
/// index synced (`bit`) after a complete list, and routes the profiles whose view changed.
async fn drive_index<T, V, S>(
    what: &'static str,
    stream: S,
    feed: Feed,
    pick: fn(&mut ManagerState) -> &mut ProfileIndex<V>,
    entry: Entry<T, V>,
    bit: u8,
) where
    S: futures::Stream<Item = Result<watcher::Event<T>, watcher::Error>>,
    V: Clone + PartialEq,
{
    let Feed { state, synced, router } = feed;
    drive(what, stream, move |ev| {
        let mut st = lock(&state);
        let index = pick(&mut st);
        let changed = match ev {
            watcher::Event::Apply(o) => {
                let (key, profiles, value) = entry(&o);
                index.apply(&key, profiles, value)
            }
            watcher::Event::Delete(o) => index.delete(&entry(&o).0),
            watcher::Event::Init => {
                index.begin_relist();
                BTreeSet::new()
            }
            watcher::Event::InitApply(o) => {
                let (key, profiles, value) = entry(&o);
                index.relist_apply(&key, profiles, value);
                BTreeSet::new()
            }
            watcher::Event::InitDone => {
                let c = index.end_relist();
                synced.send_modify(|n| *n |= bit);
                c
            }
        };
        drop(st);
        router.send(changed);
    })
    .await;
}

fn report_entry(s: &SecurityProfileNodeStatus) -> (String, Vec<String>, NodeReport) {
    let key = s.name_any();
    match (owning_profile(s), read_report(s)) {
        (Some((kind, name)), Some(r)) => (key, vec![profile_key(kind, &name)], r),
        _ => (
            key,
            Vec::new(),
            NodeReport {
                node: String::new(),
                state: None,
                message: None,
            },
        ),
    }
}

/// A pod in the index: the profiles it uses and the bindings it is marked with.
fn pod_entry(p: &Pod) -> (String, Vec<String>, ()) {
    let mut keys = profiles_used(p);
    keys.extend(bindings::bindings_of(p));
    keys.extend(recordings::recordings_of(p));
    (pod_key(p), keys, ())
}

type KindRun = Box<
    dyn FnOnce(
            Arc<Ctx>,
            futures::stream::BoxStream<'static, String>,
            futures::stream::BoxStream<'static, ()>,
            u16,
            futures::future::Shared<BoxFuture<'static, ()>>,
        ) -> BoxFuture<'static, ()>
        + Send,
>;

fn kind_runner<K: ManagedKind>() -> (ProfileKind, KindRun) {
    let run: KindRun =
        Box::new(|ctx, refs, all, concurrency, shutdown| run_kind::<K>(ctx, refs, all, concurrency, shutdown).boxed());
    (<K::Profile as SecurityProfile>::KIND, run)
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
    tasks.spawn(log_enricher_profile(client.clone(), config.clone()));
    if let Some(node_sets) = config.node_sets.clone() {
        tasks.spawn(nodeset::run(client.clone(), node_sets, Duration::from_secs(30)));
    }
    let state = Arc::new(Mutex::new(ManagerState::default()));
    let (synced_tx, mut synced_rx) = tokio::sync::watch::channel(0u8);
    let synced_tx = Arc::new(synced_tx);

    let kinds = vec![
        kind_runner::<SeccompKind>(),
        kind_runner::<SelinuxKind>(),
        kind_runner::<RawSelinuxKind>(),
        kind_runner::<AppArmorKind>(),
    ];
    let mut router = Router::default();
    let mut all_txs: Vec<mpsc::UnboundedSender<()>> = Vec::new();
    let mut inputs = Vec::new();
    for (kind, _) in &kinds {
        let (tx, rx) = mpsc::unbounded::<String>();
        let (all_tx, all_rx) = mpsc::unbounded::<()>();
        router.kinds.insert(*kind, tx);
        all_txs.push(all_tx);
        inputs.push((rx, all_rx));
    }

    let (binding_tx, binding_rx) = mpsc::unbounded::<String>();
    router.bindings = Some(binding_tx);
    let (recording_tx, recording_rx) = mpsc::unbounded::<String>();
    let router_recordings = Some(recording_tx.clone());
    router.recordings = Some(recording_tx);
    let feed = Feed {
        state: state.clone(),
        synced: synced_tx.clone(),
        router,
    };
    // Node statuses -> reports index.
    let api: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    tasks.spawn(drive_index(
        "SecurityProfileNodeStatus",
        watcher(api, watcher::Config::default()).default_backoff(),
        feed.clone(),
        |st| &mut st.reports,
        report_entry,
        1,
    ));
    // Pods -> workloads index (pods are reduced to the profiles they use, then dropped).
    let api: Api<Pod> = Api::all(client.clone());
    tasks.spawn(drive_index(
        "Pod",
        watcher(api, watcher::Config::default().page_size(500)).default_backoff(),
        feed,
        |st| &mut st.pods,
        pod_entry,
        2,
    ));

    // Nodes (metadata only) -> node set; a change re-checks every profile of every kind.
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
                for tx in &all_txs {
                    let _ = tx.unbounded_send(());
                }
            }
        }));
    }

    // Decide nothing before every index has a complete list: an empty pod index would
    // release in-use finalizers, an empty node set would drop every node's finalizer.
    let shutdown: BoxFuture<'static, ()> = shutdown.boxed();
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

    let ctx = Arc::new(Ctx {
        events: Recorder::new(
            client.clone(),
            Reporter {
                controller: "spo-manager".into(),
                instance: None,
            },
        ),
        recording_refs: router_recordings,
        client,
        state,
        failures: Mutex::new(HashMap::new()),
    });
    let mut runs: Vec<BoxFuture<'static, ()>> = kinds
        .into_iter()
        .zip(inputs)
        .map(|((_, run), (refs, all))| {
            run(
                ctx.clone(),
                refs.boxed(),
                all.boxed(),
                config.concurrency,
                shutdown.clone(),
            )
        })
        .collect();
    runs.push(bindings::run(
        ctx.clone(),
        binding_rx.boxed(),
        config.concurrency,
        shutdown.clone(),
    ));
    runs.push(recordings::run(
        ctx.clone(),
        recording_rx.boxed(),
        config.concurrency,
        shutdown.clone(),
    ));
    futures::future::join_all(runs).await;
    endpoints.health.set_ready(false);
    info!("manager stopped");
    drop(tasks);
    Ok(())
}

/// One kind's controller over its profiles.
async fn run_kind<K: ManagedKind>(
    ctx: Arc<Ctx>,
    refs: futures::stream::BoxStream<'static, String>,
    all: futures::stream::BoxStream<'static, ()>,
    concurrency: u16,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) {
    let (reader, writer) = reflector::store::<K::Profile>();
    let api: Api<K::Profile> = Api::all(ctx.client.clone());
    let profiles = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(|p| p.managed_fields_mut().clear()),
    )
    .default_backoff()
    .applied_objects();
    Controller::for_stream(profiles, reader)
        .with_config(controller::Config::default().concurrency(concurrency))
        .reconcile_on(refs.map(|name| ObjectRef::<K::Profile>::new(&name)))
        .reconcile_all_on(all)
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
}

/// The controller over every object of the namespaced kind `K` (ProfileBindings,
/// ProfileRecordings): reconciles each object when it changes, and the objects `refs` names
/// (`namespace/name`, routed from the pod index when their pods change). A failed reconcile is
/// retried after 200 ms on a conflict, 5 s otherwise.
fn run_namespaced<K, F, Fut>(
    ctx: Arc<Ctx>,
    refs: futures::stream::BoxStream<'static, String>,
    concurrency: u16,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
    reconcile: F,
) -> BoxFuture<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Action, OperatorError>> + Send + 'static,
{
    async move {
        let kind = K::kind(&()).into_owned();
        let (reader, writer) = reflector::store::<K>();
        let api: Api<K> = Api::all(ctx.client.clone());
        let objects = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).modify(|o| o.managed_fields_mut().clear()),
        )
        .default_backoff()
        .applied_objects();
        Controller::for_stream(objects, reader)
            .with_config(controller::Config::default().concurrency(concurrency))
            .reconcile_on(refs.filter_map(|key| async move {
                let (ns, name) = key.split_once('/')?;
                Some(ObjectRef::<K>::new(name).within(ns))
            }))
            .graceful_shutdown_on(shutdown)
            .run(reconcile, requeue_namespaced::<K>, ctx)
            .for_each(|res| {
                let kind = &kind;
                async move {
                    match res {
                        Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
                        Err(controller::Error::ReconcilerFailed(e, obj)) => {
                            debug!(%kind, name = %obj.name, error = %error_chain(&e), "reconcile failed; requeued")
                        }
                        Err(e) => warn!(%kind, error = %error_chain(&e), "controller"),
                    }
                }
            })
            .await;
    }
    .boxed()
}

fn requeue_namespaced<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &OperatorError, _ctx: Arc<Ctx>) -> Action {
    let after = if error.is_conflict() {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    warn!(
        kind = %K::kind(&()),
        name = %object.name_any(),
        error = %error_chain(error),
        retry_in = ?after,
        "reconcile failed"
    );
    Action::requeue(after)
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

/// What log recording needs on nodes, by the SPOD: the SeccompProfile seccomp recording runs
/// containers under (while the log enricher is on), and the SelinuxProfile of the permissive
/// domain SELinux recording runs them as (while the log enricher and SELinux are on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogRecordingNeeds {
    /// `log-enricher-trace` (SeccompProfile).
    pub seccomp: bool,
    /// `selinuxrecording` (SelinuxProfile).
    pub selinux: bool,
}

/// What log recording needs, from the SPOD (pure).
pub fn log_recording_needs(spod: Option<&spo_model::SecurityProfilesOperatorDaemon>) -> LogRecordingNeeds {
    let Some(spod) = spod else {
        return LogRecordingNeeds::default();
    };
    let log = spod.spec.enricher.as_ref().and_then(|e| e.enable_log_enricher) == Some(true);
    LogRecordingNeeds {
        seccomp: log,
        selinux: log && spod.spec.selinux.as_ref().and_then(|s| s.enable) == Some(true),
    }
}

/// Keeps what log recording runs containers under while the SPOD enables it, as upstream's
/// manager does ([`LogRecordingNeeds`]; never removed when a switch goes off: pods may still
/// run under them, and the profiles' own finalizers guard them). Each is applied again when its
/// switch goes off and on.
async fn log_enricher_profile(client: Client, config: ManagerConfig) {
    let (mut needs, _task) = kubeapi::follow_spod(
        client.clone(),
        &config.namespace,
        &config.spod_name,
        LogRecordingNeeds::default(),
        |spod| Some(log_recording_needs(spod)),
    );
    let mut applied = LogRecordingNeeds::default();
    loop {
        let want = *needs.borrow_and_update();
        applied.seccomp &= want.seccomp;
        applied.selinux &= want.selinux;
        for (wanted, done, what, name) in [
            (
                want.seccomp,
                &mut applied.seccomp,
                "SeccompProfile",
                spo_model::names::LOG_ENRICHER_PROFILE,
            ),
            (
                want.selinux,
                &mut applied.selinux,
                "SelinuxProfile",
                spo_model::names::SELINUX_RECORDING_PROFILE,
            ),
        ] {
            if !wanted || *done {
                continue;
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = if what == "SeccompProfile" {
                    kubeapi::apply_log_enricher_profile(&client).await
                } else {
                    kubeapi::apply_selinux_recording_profile(&client).await
                };
                match result {
                    Ok(()) => {
                        info!(kind = what, name, "log recording profile applied");
                        *done = true;
                        break;
                    }
                    Err(e) => {
                        let after = retry_after(attempt);
                        warn!(error = %error_chain(&e), kind = what, retry_in = ?after, "applying a log recording profile failed");
                        tokio::time::sleep(after).await;
                    }
                }
            }
        }
        if needs.changed().await.is_err() {
            return;
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn reconcile<K: ManagedKind>(profile: Arc<K::Profile>, ctx: Arc<Ctx>) -> Result<Action, OperatorError> {
    let kind = <K::Profile as SecurityProfile>::KIND;
    let name = profile.name_any();
    let key = profile_key(kind, &name);
    if let (Some(tx), Some(recording)) = (&ctx.recording_refs, recordings::recording_of_partial(profile.labels())) {
        let _ = tx.unbounded_send(recording);
    }
    let finalizers = profile.finalizers().to_vec();
    let plan = {
        let st = lock(&ctx.state);
        let view = ProfileView {
            kind,
            name: &name,
            generation: Resource::meta(&*profile).generation,
            deleting: Resource::meta(&*profile).deletion_timestamp.is_some(),
            finalizers: &finalizers,
            status: K::status(&profile),
            age: age_of(Resource::meta(&*profile)),
        };
        let pods: BTreeSet<String> = st
            .pods
            .of(&key)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let reports = st.reports.of(&key).map(|m| {
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
            .remove(&key);
        return Ok(Action::await_change());
    }
    debug!(%kind, profile = %name, ?plan, "reconciling");
    for status in &plan.delete_node_statuses {
        info!(%kind, profile = %name, node_status = %status, "deleting the status of a node that no longer exists");
        kubeapi::delete_node_status(&ctx.client, status).await?;
    }
    if !plan.drop_finalizers.is_empty() {
        info!(%kind, profile = %name, finalizers = ?plan.drop_finalizers, "removing finalizers of nodes that no longer exist");
        let keep: Vec<String> = finalizers
            .iter()
            .filter(|f| !plan.drop_finalizers.contains(f))
            .cloned()
            .collect();
        let rv = profile.resource_version().unwrap_or_default();
        kubeapi::replace_finalizers::<K::Profile>(&ctx.client, &name, &rv, &keep).await?;
    }
    if let Some(status) = &plan.status {
        kubeapi::apply_profile_status::<K::Profile, _>(&ctx.client, &name, status).await?;
    }
    match plan.in_use_finalizer {
        Some(true) => {
            kubeapi::apply_finalizers::<K::Profile>(
                &ctx.client,
                &name,
                kubeapi::MANAGER_FIELD_MANAGER,
                &[FINALIZER_IN_USE.to_owned()],
            )
            .await?;
        }
        Some(false) => {
            info!(%kind, profile = %name, "no pod uses the profile any more; releasing it");
            let left = kubeapi::apply_finalizers::<K::Profile>(&ctx.client, &name, kubeapi::MANAGER_FIELD_MANAGER, &[])
                .await?;
            if left.iter().any(|f| f == FINALIZER_IN_USE) {
                let keep: Vec<String> = left.into_iter().filter(|f| f != FINALIZER_IN_USE).collect();
                let rv = profile.resource_version().unwrap_or_default();
                kubeapi::replace_finalizers::<K::Profile>(&ctx.client, &name, &rv, &keep).await?;
            }
        }
        None => {}
    }
    Ok(plan.recheck_after.map_or_else(Action::await_change, Action::requeue))
}

/// How long ago an object was created, by this machine's clock (`None` when it has no
/// creation time or the clocks disagree so that it lies in the future).
fn age_of(meta: &kube::api::ObjectMeta) -> Option<Duration> {
    let created = meta.creation_timestamp.as_ref()?.0;
    let now = k8s_openapi::jiff::Timestamp::now();
    now.duration_since(created).try_into().ok()
}

fn error_policy<K: ManagedKind>(profile: Arc<K::Profile>, error: &OperatorError, ctx: Arc<Ctx>) -> Action {
    let kind = <K::Profile as SecurityProfile>::KIND;
    let name = profile.name_any();
    let after = if error.is_conflict() {
        Duration::from_millis(200)
    } else {
        let mut f = ctx.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = f.entry(profile_key(kind, &name)).or_insert(0);
        *n = n.saturating_add(1);
        api_retry_after(*n)
    };
    warn!(%kind, profile = %name, error = %error_chain(error), retry_in = ?after, "reconcile failed");
    Action::requeue(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spod(spec: serde_json::Value) -> spo_model::SecurityProfilesOperatorDaemon {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1",
            "kind": "SecurityProfilesOperatorDaemon",
            "metadata": {"name": "spod", "namespace": "spo"},
            "spec": spec,
        }))
        .expect("spod")
    }

    #[test]
    fn log_recording_needs_the_selinux_domain_only_with_selinux_on() {
        assert_eq!(log_recording_needs(None), LogRecordingNeeds::default());
        let off = spod(serde_json::json!({"selinux": {"enable": true}}));
        assert_eq!(log_recording_needs(Some(&off)), LogRecordingNeeds::default());
        let log = spod(serde_json::json!({"enricher": {"enableLogEnricher": true}}));
        assert_eq!(
            log_recording_needs(Some(&log)),
            LogRecordingNeeds {
                seccomp: true,
                selinux: false
            }
        );
        let both = spod(serde_json::json!({"enricher": {"enableLogEnricher": true}, "selinux": {"enable": true}}));
        assert_eq!(
            log_recording_needs(Some(&both)),
            LogRecordingNeeds {
                seccomp: true,
                selinux: true
            }
        );
    }

    #[test]
    fn the_selinux_recording_domain_is_a_valid_permissive_profile_with_the_upstream_type() {
        let name = spo_model::names::SELINUX_RECORDING_PROFILE;
        let profile: spo_model::SelinuxProfile =
            serde_json::from_value(kubeapi::selinux_recording_profile()).expect("profile");
        assert!(!profile.validate().has_errors(), "{:?}", profile.validate());
        assert_eq!(profile.metadata.name.as_deref(), Some(name));
        assert_eq!(
            profile.spec.effective_mode(),
            spo_model::selinux::SelinuxMode::Permissive
        );
        // Rendered, it is the permissive block the type names.
        let rendered =
            spo_selinux::render::render_selinux_profile(&profile, &spo_selinux::render::RenderContext::default())
                .expect("renders");
        assert!(rendered.text.contains(&format!("(block {name}")), "{}", rendered.text);
        assert!(rendered.text.contains("(typepermissive process)"), "{}", rendered.text);
        assert_eq!(
            format!("{name}.process"),
            crate::webhook::recording::LOG_RECORDING_SELINUX_TYPE,
            "the type the webhook runs recorded containers as"
        );
    }
}
