//! The node daemon: one per node, keeps the node's profiles in line with the cluster and
//! reports per node through SecurityProfileNodeStatus objects.
//!
//! A [`Daemon`] owns what every kind shares: the SPOD watch, the watch of this node's node
//! statuses, the event recorder, readiness and metrics. Each enabled kind is one adapter, a
//! [`NodeKind`] (a [`ProfileBackend`] plus what the daemon needs around it: the render
//! context from the watch cache and the SPOD, which profiles depend on which, whether the
//! SPOD enables the kind); the daemon runs one controller pair per kind. Seccomp is
//! [`seccomp::SeccompNode`], SelinuxProfile and RawSelinuxProfile are [`selinux::SelinuxKind`]
//! and [`selinux::RawSelinuxKind`] (sharing one batching module installer), AppArmor is
//! [`apparmor::AppArmorKind`]. The daemon is ready when every kind has listed its profiles.
//!
//! What it watches:
//!
//! - per kind, the profiles (full objects: rendering needs the spec, and base profiles are
//!   resolved from this cache); deletions without our finalizer are caught from the watch
//!   stream and cleaned up too;
//! - its own node statuses (label `spo.x-k8s.io/node-name=<node>`), so unchanged reports
//!   are not rewritten, even after a restart;
//! - the one SPOD object (field selector on its name): a change of the settings a kind
//!   renders with (its policy, guardrails, whether the kind is enabled) re-checks every
//!   profile of that kind.
//!
//! Two sides per kind share the profile cache, each a [`WorkQueue`] of profile names with its
//! own concurrency (see [`plan`] for the decisions, and [`crate::workqueue`] for why these are
//! not kube-runtime controllers):
//!
//! - the **node side** installs or removes the artifact as soon as an event arrives. It
//!   touches only the node, so a burst of new profiles is on disk within moments, whatever
//!   the apiserver's write latency;
//! - the **API side** follows: our finalizer on the profile (before any node status), the
//!   node status, Events for new errors, and on deletion the status removed and the
//!   finalizer released. It remembers what it wrote for a few seconds, so the watch cache
//!   catching up late does not make it write the same thing twice.
//!
//! A file may be on disk a moment before our finalizer is on the profile. That is safe: a
//! profile deleted in that moment has no finalizer of ours to wait for, and its deletion is
//! caught from the watch stream (and by the start-up sweep) like any deletion that did not
//! wait for this node; a write that raced with the deletion is undone right after it.
//!
//! It does not watch pods: nothing the daemon decides depends on them (the manager tracks
//! workloads and holds `in-use-by-active-pods`, which the daemon honours when deleting).
//! There is no periodic resync; only failing profiles are requeued, with backoff.

pub mod apparmor;
pub mod oci;
pub mod plan;
pub mod profiles;
pub mod seccomp;
pub mod selinux;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::api::Api;
use kube::core::ClusterResourceScope;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use spo_model::contract::{
    ProfileBackend, ProfileKind, RemoveOutcome, SecurityProfile, SyncOutcome, error_chain, sync_profile,
};
use spo_model::names::{LABEL_NODE_NAME, node_finalizer};
use spo_model::{ProfileState, SecurityProfileNodeStatus, SecurityProfilesOperatorDaemon};
use tracing::{debug, info, warn};

use crate::cache::{WatchCache, give_back_unused};
use crate::error::OperatorError;
use crate::kubeapi;
use crate::metrics::{ErrorReason, Operation};
use crate::nodestatus::{ProfileRef, StatusDigest, desired_node_status, owning_profile, status_name};
use crate::server::Endpoints;
use crate::tasks::Tasks;
use crate::workqueue::{self, Key, WorkQueue};
use plan::{
    Desired, NodePlan, NodeResult, Reported, api_retry_after, desired_report, error_reason, plan_node, plan_report,
    retry_after, should_emit_event,
};
pub use profiles::ProfileCache;

/// The profile type of a [`NodeKind`].
pub type ProfileOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Profile;
/// The render context of a [`NodeKind`].
pub type ContextOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Context;
/// The install target of a [`NodeKind`].
pub type TargetOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Target;
/// The backend error of a [`NodeKind`].
pub type BackendErrorOf<K> = <<K as NodeKind>::Backend as ProfileBackend>::Error;

/// One profile kind on a node: its backend and target, and what the daemon needs to render
/// (the context is built from the watched profiles and the SPOD). Rendering, installing,
/// removing and listing go through the backend's [`ProfileBackend`] contract.
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
        profiles: &ProfileCache<ProfileOf<Self>>,
        spod: Option<&SecurityProfilesOperatorDaemon>,
    ) -> ContextOf<Self>;

    /// The profiles of this kind that `profile` is rendered from (its base profile, the
    /// profiles it inherits): when one of them changes or goes away, `profile` is rendered
    /// again (through chains too).
    fn parents(&self, _profile: &ProfileOf<Self>) -> Vec<String> {
        Vec::new()
    }

    /// Why the SPOD turns this kind off (`spec.enableAppArmor`, `spec.selinux.enable`...), or
    /// `None` when it is on. While off, every profile of the kind is removed from the node and
    /// reported `Disabled` with this reason. On by default.
    fn disabled_by(&self, _spod: Option<&SecurityProfilesOperatorDaemon>) -> Option<String> {
        None
    }

    /// The SPOD settings this kind renders with, in a comparable form: when they change,
    /// every profile of the kind is checked again.
    fn settings(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> String;

    /// The profiles of this kind installed on the node now (for the start-up sweep of
    /// orphans): only what this kind installed ([`ProfileBackend::list`]).
    fn installed(&self) -> Result<Vec<String>, BackendErrorOf<Self>> {
        self.backend().list(self.target())
    }

    /// Start-up housekeeping, such as removing temporary files of interrupted installs;
    /// returns how many things it cleaned.
    fn prepare(&self) -> Result<usize, BackendErrorOf<Self>> {
        Ok(0)
    }

    /// Brings the node in line with one profile (blocking; run off the async threads).
    fn sync(&self, profile: &ProfileOf<Self>, ctx: &ContextOf<Self>) -> SyncOutcome {
        sync_profile(self.backend(), self.target(), profile, ctx)
    }

    /// [`NodeKind::sync`] as the node side runs it (blocking): a kind whose target queues
    /// installs (SELinux's batching installer) hands the queued install back as
    /// [`Synced::Queued`] instead of waiting for it, so a profile waiting for its transaction
    /// holds no thread. By default, [`NodeKind::sync`].
    fn start_sync(&self, profile: &ProfileOf<Self>, ctx: &ContextOf<Self>) -> Synced {
        Synced::Done(self.sync(profile, ctx))
    }

    /// How many more profiles the node side may have waiting for queued installs beyond its
    /// `--concurrency` (which bounds the blocking work): a batching kind's batch size, so
    /// one transaction can take a whole burst.
    fn waiting_slots(&self) -> usize {
        0
    }

    /// How long until the profile is rendered again although nothing it names changed (a
    /// base profile behind a registry tag that may move); `None`: only on changes.
    fn recheck_after(&self, _profile: &ProfileOf<Self>) -> Option<Duration> {
        None
    }
}

/// What [`NodeKind::start_sync`] did.
pub enum Synced {
    /// Done: the outcome.
    Done(SyncOutcome),
    /// Handed to the target's queue: the outcome once it is done.
    Queued(BoxFuture<'static, SyncOutcome>),
}

impl std::fmt::Debug for Synced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Synced::Done(o) => f.debug_tuple("Done").field(o).finish(),
            Synced::Queued(_) => f.write_str("Queued"),
        }
    }
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
    /// How many profiles the node side works on at once (local file writes).
    pub concurrency: u16,
    /// How many profiles the API side reports on at once (apiserver writes).
    pub report_concurrency: u16,
}

/// How long the API side trusts its memory of a write over the watch cache, which may
/// not show the write yet. Longer than any plausible watch delay; a foreign change or
/// deletion of a node status within it is still seen (deletions clear the memory).
const REPORT_MEMORY: Duration = Duration::from_secs(10);

/// What the API side wrote recently about one profile object.
#[derive(Clone, Debug)]
struct Written {
    uid: String,
    finalizer_at: Option<Instant>,
    status: Option<(ProfileState, Option<String>, Instant)>,
}

struct Ctx<K: NodeKind> {
    kind: Arc<K>,
    client: Client,
    node: String,
    field_manager: String,
    profiles: ProfileCache<ProfileOf<K>>,
    statuses: WatchCache<StatusDigest>,
    spod: Store<SecurityProfilesOperatorDaemon>,
    recorder: Recorder,
    endpoints: Arc<Endpoints>,
    /// What the node side last did, per profile name, with the object's uid.
    outcomes: Mutex<HashMap<String, (String, NodeResult)>>,
    written: Mutex<HashMap<String, Written>>,
    node_failures: Mutex<HashMap<String, u32>>,
    report_failures: Mutex<HashMap<String, u32>>,
    /// The API side's queue.
    reports: Arc<WorkQueue>,
    /// Bounds the node side's blocking work to `--concurrency`.
    blocking: tokio::sync::Semaphore,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bump(failures: &Mutex<HashMap<String, u32>>, name: &str) -> u32 {
    let mut f = lock(failures);
    let n = f.entry(name.to_owned()).or_insert(0);
    *n = n.saturating_add(1);
    *n
}

impl<K: NodeKind> Ctx<K> {
    fn kind_id() -> spo_model::contract::ProfileKind {
        <ProfileOf<K> as SecurityProfile>::KIND
    }

    fn status_name(&self, name: &str) -> String {
        status_name(Self::kind_id(), name, &self.node)
    }

    fn previous_report(&self, name: &str) -> Option<StatusDigest> {
        self.statuses.get(&self.status_name(name))
    }

    fn outcome(&self, name: &str, uid: &str) -> Option<NodeResult> {
        lock(&self.outcomes)
            .get(name)
            .filter(|(u, _)| u == uid)
            .map(|(_, r)| r.clone())
    }

    fn memory(&self, name: &str, uid: &str) -> Option<Written> {
        lock(&self.written).get(name).filter(|w| w.uid == uid).cloned()
    }

    fn remember(&self, name: &str, uid: &str, update: impl FnOnce(&mut Written)) {
        let mut written = lock(&self.written);
        let entry = written.entry(name.to_owned()).or_insert_with(|| Written {
            uid: uid.to_owned(),
            finalizer_at: None,
            status: None,
        });
        if entry.uid != uid {
            *entry = Written {
                uid: uid.to_owned(),
                finalizer_at: None,
                status: None,
            };
        }
        update(entry);
    }

    /// Drops what was written longer than [`REPORT_MEMORY`] ago: past it the watch cache is
    /// trusted again, so keeping it would only grow with every profile ever reported.
    fn forget_old_writes(&self) {
        let mut written = lock(&self.written);
        written.retain(|_, w| {
            w.finalizer_at.is_some_and(|at| at.elapsed() < REPORT_MEMORY)
                || w.status.as_ref().is_some_and(|(_, _, at)| at.elapsed() < REPORT_MEMORY)
        });
        give_back_unused(&mut written);
    }

    fn forget_status(&self, name: &str) {
        if let Some(w) = lock(&self.written).get_mut(name) {
            w.status = None;
        }
    }

    /// Runs `work` for profile `name` on a blocking thread, at most `--concurrency` at once
    /// (the node side may have more passes under way, waiting for queued installs).
    async fn blocking<T: Send + 'static>(
        &self,
        name: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, OperatorError> {
        let _permit = self.blocking.acquire().await;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|source| OperatorError::Join {
                name: name.to_owned(),
                source,
            })
    }

    /// Whether the profile `name` is still in the cache (not deleted meanwhile).
    fn exists(&self, name: &str) -> bool {
        self.profiles.contains(name)
    }

    fn trigger_report(&self, name: &str) {
        self.reports.add(name);
    }
}

/// What every kind's controllers share: the SPOD and node-status caches, the event
/// recorder, the endpoints (readiness, metrics), and which kinds have listed.
struct Shared {
    client: Client,
    node: String,
    field_manager: String,
    statuses: WatchCache<StatusDigest>,
    spod: Store<SecurityProfilesOperatorDaemon>,
    recorder: Recorder,
    endpoints: Arc<Endpoints>,
    kinds: usize,
    listed: Mutex<BTreeSet<ProfileKind>>,
}

impl Shared {
    /// Records that `kind` has listed its profiles; the daemon is ready once every kind has.
    fn mark_listed(&self, kind: ProfileKind) {
        let mut listed = lock(&self.listed);
        listed.insert(kind);
        if listed.len() == self.kinds {
            info!(kinds = listed.len(), "every kind has listed its profiles; ready");
            self.endpoints.health.set_ready(true);
        }
    }
}

/// What the shared watches hand one kind.
struct KindInputs {
    /// Bumped on every SPOD event; the kind compares its settings.
    spod_changed: tokio::sync::watch::Receiver<u64>,
    /// Profiles of this kind whose node status someone else deleted.
    status_gone: mpsc::UnboundedReceiver<String>,
    /// The node statuses were listed again: compare every report.
    report_all: mpsc::UnboundedReceiver<()>,
}

type KindRunner = Box<
    dyn FnOnce(
            Arc<Shared>,
            KindInputs,
            DaemonConfig,
            futures::future::Shared<BoxFuture<'static, ()>>,
        ) -> BoxFuture<'static, ()>
        + Send,
>;

/// The node daemon: shared watches plus one controller pair per enabled kind.
pub struct Daemon {
    client: Client,
    config: DaemonConfig,
    endpoints: Arc<Endpoints>,
    kinds: Vec<(ProfileKind, KindRunner)>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<ProfileKind> = self.kinds.iter().map(|(k, _)| *k).collect();
        f.debug_struct("Daemon")
            .field("config", &self.config)
            .field("kinds", &kinds)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// A daemon with no kind yet.
    pub fn new(client: Client, config: DaemonConfig, endpoints: Arc<Endpoints>) -> Self {
        Daemon {
            client,
            config,
            endpoints,
            kinds: Vec::new(),
        }
    }

    /// Adds a kind (at most one adapter per kind: a second one of the same kind replaces it).
    pub fn with_kind<K: NodeKind>(mut self, kind: K) -> Self {
        let id = <ProfileOf<K> as SecurityProfile>::KIND;
        self.kinds.retain(|(k, _)| *k != id);
        let runner: KindRunner =
            Box::new(move |shared, inputs, config, shutdown| run_kind(shared, kind, inputs, config, shutdown).boxed());
        self.kinds.push((id, runner));
        self
    }

    /// The kinds this daemon runs.
    pub fn kinds(&self) -> Vec<ProfileKind> {
        self.kinds.iter().map(|(k, _)| *k).collect()
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), OperatorError> {
        let Daemon {
            client,
            config,
            endpoints,
            kinds,
        } = self;
        if kinds.is_empty() {
            return Err(OperatorError::Config("the daemon has no profile kind enabled".into()));
        }
        let mut tasks = Tasks::default();

        // The SPOD: every event bumps a counter; each kind compares the settings it uses.
        let (spod_reader, spod_writer) = reflector::store::<SecurityProfilesOperatorDaemon>();
        let (spod_tx, spod_rx) = tokio::sync::watch::channel(0u64);
        let spod_api: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), &config.namespace);
        let spod_cfg = watcher::Config::default().fields(&format!("metadata.name={}", config.spod_name));
        let spod_stream = reflector::reflector(spod_writer, watcher(spod_api, spod_cfg))
            .default_backoff()
            .inspect_ok(move |ev| {
                if matches!(
                    ev,
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone
                ) {
                    spod_tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            });
        tasks.spawn(drive("SecurityProfilesOperatorDaemon", spod_stream));

        // This node's statuses, routed to the kind they belong to.
        let mut gone_txs: HashMap<ProfileKind, mpsc::UnboundedSender<String>> = HashMap::new();
        let mut report_all_txs: Vec<mpsc::UnboundedSender<()>> = Vec::new();
        let mut inputs: Vec<KindInputs> = Vec::new();
        for (kind, _) in &kinds {
            let (gone_tx, gone_rx) = mpsc::unbounded::<String>();
            let (all_tx, all_rx) = mpsc::unbounded::<()>();
            gone_txs.insert(*kind, gone_tx);
            report_all_txs.push(all_tx);
            inputs.push(KindInputs {
                spod_changed: spod_rx.clone(),
                status_gone: gone_rx,
                report_all: all_rx,
            });
        }
        // Kept as digests (state, message, what the currency check compares), not objects.
        let statuses: WatchCache<StatusDigest> = WatchCache::default();
        let status_api: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
        let status_cfg = watcher::Config::default().labels(&format!("{LABEL_NODE_NAME}={}", config.node));
        let mut listed_once = false;
        let status_cache = statuses.clone();
        let status_stream = watcher(status_api, status_cfg).default_backoff().inspect_ok(move |ev| {
            status_cache.apply(ev, StatusDigest::of);
            match ev {
                watcher::Event::Delete(s) => {
                    if let Some((kind, profile)) = owning_profile(s)
                        && let Some(tx) = gone_txs.get(&kind)
                    {
                        let _ = tx.unbounded_send(profile);
                    }
                }
                watcher::Event::InitDone => {
                    if listed_once {
                        for tx in &report_all_txs {
                            let _ = tx.unbounded_send(());
                        }
                    }
                    listed_once = true;
                }
                _ => {}
            }
        });
        tasks.spawn(drive("SecurityProfileNodeStatus", status_stream));

        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "spo-daemon".into(),
                instance: Some(config.node.clone()),
            },
        );
        endpoints.health.set_ready(false);
        let shared = Arc::new(Shared {
            client: client.clone(),
            node: config.node.clone(),
            field_manager: kubeapi::daemon_field_manager(&config.node),
            statuses: statuses.clone(),
            spod: spod_reader.clone(),
            recorder,
            endpoints: endpoints.clone(),
            kinds: kinds.len(),
            listed: Mutex::new(BTreeSet::new()),
        });

        // Render nothing before the policy and our statuses are known.
        let ready = async {
            let _ = spod_reader.wait_until_ready().await;
            statuses.wait_until_listed().await;
        };
        if tokio::time::timeout(Duration::from_secs(300), ready).await.is_err() {
            warn!("SPOD or node statuses not listed after 5 minutes; starting anyway");
        }
        let names: Vec<&str> = kinds.iter().map(|(k, _)| k.kind_name()).collect();
        info!(node = %config.node, kinds = ?names, "daemon started");

        let shutdown: BoxFuture<'static, ()> = shutdown.boxed();
        let shutdown = shutdown.shared();
        let runs: Vec<BoxFuture<'static, ()>> = kinds
            .into_iter()
            .zip(inputs)
            .map(|((_, runner), inputs)| runner(shared.clone(), inputs, config.clone(), shutdown.clone()))
            .collect();
        futures::future::join_all(runs).await;
        endpoints.health.set_ready(false);
        info!("daemon stopped");
        drop(tasks);
        Ok(())
    }
}

/// Runs the daemon for one kind until `shutdown` resolves or a watch cannot be started
/// (a [`Daemon`] with this kind alone).
pub async fn run<K: NodeKind>(
    client: Client,
    kind: K,
    config: DaemonConfig,
    endpoints: Arc<Endpoints>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), OperatorError> {
    Daemon::new(client, config, endpoints)
        .with_kind(kind)
        .run(shutdown)
        .await
}

/// One kind's controllers: the profile watch, the node side and the API side.
async fn run_kind<K: NodeKind>(
    shared: Arc<Shared>,
    kind: K,
    inputs: KindInputs,
    config: DaemonConfig,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) {
    let mut tasks = Tasks::default();
    let kind = Arc::new(kind);
    let kind_id = <ProfileOf<K> as SecurityProfile>::KIND;
    let KindInputs {
        mut spod_changed,
        mut status_gone,
        report_all: report_all_rx,
    } = inputs;
    {
        let kind = kind.clone();
        match tokio::task::spawn_blocking(move || kind.prepare().map_err(|e| error_chain(&e))).await {
            Ok(Ok(0)) | Err(_) => {}
            Ok(Ok(n)) => info!(kind = %kind_id, cleaned = n, "removed leftovers of interrupted installs"),
            Ok(Err(e)) => warn!(kind = %kind_id, error = %e, "start-up housekeeping failed; continuing"),
        }
    }

    // The node side's and the API side's queues (see `workqueue` for why not kube-runtime's
    // controller).
    let (nodes, reports) = (WorkQueue::new(), WorkQueue::new());
    let profiles: ProfileCache<ProfileOf<K>> = ProfileCache::default();

    // A change of the SPOD settings this kind uses re-checks every profile of the kind.
    {
        let (kind, spod, store, nodes) = (kind.clone(), shared.spod.clone(), profiles.clone(), nodes.clone());
        tasks.spawn(async move {
            let current = || {
                let s = spod.state().into_iter().next();
                kind.settings(s.as_deref())
            };
            let mut last = current();
            while spod_changed.changed().await.is_ok() {
                let now = current();
                if now != last {
                    info!(kind = %kind_id, "SPOD settings of the kind changed; re-checking every profile");
                    last = now;
                    queue_all(&nodes, store.names());
                }
            }
        });
    }
    // The node statuses were listed again: compare every report.
    {
        let (store, reports) = (profiles.clone(), reports.clone());
        let mut report_all = report_all_rx;
        tasks.spawn(async move {
            while report_all.next().await.is_some() {
                queue_all(&reports, store.names());
            }
        });
    }

    // The profiles: every applied object queues the node side, a (re)list all of them once it
    // is complete; deletions and base-profile changes are picked off the stream.
    let (gone_tx, gone_rx) = mpsc::unbounded::<String>();
    let (dep_kind, cache, feed) = (kind.clone(), profiles.clone(), nodes.clone());
    // When the profiles are first listed. `Store::wait_until_ready` wakes only the last of
    // several concurrent waiters, so everything waits on this channel instead.
    let (listed_tx, listed) = tokio::sync::watch::channel(false);
    let profile_api: Api<ProfileOf<K>> = Api::all(shared.client.clone());
    let profile_stream = watcher(profile_api, watcher::Config::default())
        // The node acts on the spec and metadata only: the status (the cluster's aggregate),
        // annotations (recording notes, `kubectl apply`'s copy of the whole object) and
        // managed fields are not kept.
        .modify(|p| {
            p.managed_fields_mut().clear();
            p.annotations_mut().clear();
            p.clear_status();
        })
        .default_backoff()
        .inspect_ok(move |ev| {
            let before = cache.apply(ev, |p| dep_kind.parents(p));
            let notify = |name: &str| {
                for child in cache.dependents(name) {
                    feed.add(&child);
                }
            };
            match ev {
                // Queued at `InitDone`: until then the cache holds the previous list.
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
                watcher::Event::Apply(p) => {
                    let name = p.name_any();
                    feed.add(&name);
                    if before != Some(Resource::meta(p).generation) {
                        notify(&name);
                    }
                }
                watcher::Event::Delete(p) => {
                    let name = p.name_any();
                    let _ = gone_tx.unbounded_send(name.clone());
                    notify(&name);
                }
                watcher::Event::InitDone => {
                    queue_all(&feed, cache.names());
                    listed_tx.send_replace(true);
                }
            }
        });
    tasks.spawn(drive("profiles", profile_stream));

    let ctx = Arc::new(Ctx {
        kind: kind.clone(),
        client: shared.client.clone(),
        node: shared.node.clone(),
        field_manager: shared.field_manager.clone(),
        profiles: profiles.clone(),
        statuses: shared.statuses.clone(),
        spod: shared.spod.clone(),
        recorder: shared.recorder.clone(),
        endpoints: shared.endpoints.clone(),
        outcomes: Mutex::new(HashMap::new()),
        written: Mutex::new(HashMap::new()),
        node_failures: Mutex::new(HashMap::new()),
        report_failures: Mutex::new(HashMap::new()),
        reports: reports.clone(),
        blocking: tokio::sync::Semaphore::new(usize::from(config.concurrency.max(1))),
        shared: shared.clone(),
    });

    tasks.spawn(cleanup_gone(ctx.clone(), gone_rx));
    {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(REPORT_MEMORY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                ctx.forget_old_writes();
            }
        });
    }
    tasks.spawn(sweep_orphans(ctx.clone(), listed.clone()));
    {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            while let Some(profile) = status_gone.next().await {
                // Someone deleted our status: forget that we wrote it, and report again.
                ctx.forget_status(&profile);
                ctx.trigger_report(&profile);
            }
        });
    }
    {
        let (ctx, mut listed) = (ctx.clone(), listed.clone());
        tasks.spawn(async move {
            if listed.wait_for(|l| *l).await.is_ok() {
                ctx.shared.mark_listed(kind_id);
            }
        });
    }

    // Both sides start once the profiles are listed; what is queued before waits.
    let side = |queue: Arc<WorkQueue>, concurrency: usize, report: bool| {
        let (ctx, mut listed, shutdown) = (ctx.clone(), listed.clone(), shutdown.clone());
        async move {
            tokio::select! {
                listed = listed.wait_for(|l| *l) => {
                    if listed.is_err() {
                        return;
                    }
                }
                () = shutdown.clone() => return,
            }
            workqueue::run(queue, concurrency, shutdown, |key: Key| {
                let ctx = ctx.clone();
                async move {
                    let Some(profile) = ctx.profiles.get(&key) else {
                        debug!(profile = %key, "gone before reconcile");
                        return None;
                    };
                    if report {
                        match reconcile_report::<K>(profile.clone(), ctx.clone()).await {
                            Ok(()) => None,
                            Err(e) => Some(report_error_policy::<K>(&profile, &e, &ctx)),
                        }
                    } else {
                        match reconcile_node::<K>(profile.clone(), ctx.clone()).await {
                            Ok(next) => next,
                            Err(e) => Some(node_error_policy::<K>(&profile, &e, &ctx)),
                        }
                    }
                }
            })
            .await;
        }
    };
    // Profiles waiting for a queued install hold no thread, so a batching kind may have a
    // whole batch of them under way beyond the blocking work's `--concurrency`.
    let node_concurrency = usize::from(config.concurrency).saturating_add(kind.waiting_slots());
    let node_side = side(nodes, node_concurrency, false);
    let api_side = side(reports, usize::from(config.report_concurrency), true);
    futures::join!(node_side, api_side);
    info!(kind = %kind_id, "kind stopped");
    drop(tasks);
}

/// Queues every profile in the cache.
fn queue_all(queue: &WorkQueue, names: Vec<Arc<str>>) {
    for name in names {
        queue.add(&name);
    }
}

/// Consumes a reflector stream, logging watch errors (the backoff retries them).
async fn drive<S, T>(what: &'static str, stream: S)
where
    S: futures::Stream<Item = Result<T, watcher::Error>>,
{
    futures::pin_mut!(stream);
    let mut failing = false;
    while let Some(item) = stream.next().await {
        match item {
            Err(e) => {
                warn!(watch = what, error = %error_chain(&e), "watch failed; retrying");
                failing = true;
            }
            Ok(_) if failing => {
                info!(watch = what, "watch resumed");
                failing = false;
            }
            Ok(_) => {}
        }
    }
    warn!(watch = what, "watch ended");
}

/// The node side: brings the node in line with one profile, records what it did and
/// hands over to the API side.
///
/// Returns when to look at the profile again (`None`: on its next change).
async fn reconcile_node<K: NodeKind>(
    profile: Arc<ProfileOf<K>>,
    ctx: Arc<Ctx<K>>,
) -> Result<Option<Duration>, OperatorError> {
    let name = profile.name_any();
    let uid = profile.uid().unwrap_or_default();
    let kind_id = Ctx::<K>::kind_id();
    let deleting = Resource::meta(&*profile).deletion_timestamp.is_some();
    let metrics = &ctx.endpoints.metrics;
    let result = match plan_node(deleting, profile.finalizers()) {
        NodePlan::Sync => {
            let kind = ctx.kind.clone();
            let spod = ctx.spod.state().into_iter().next();
            let outcome = if let Some(reason) = kind.disabled_by(spod.as_deref()) {
                // The SPOD turned the kind off: nothing of it stays on the node.
                let removed = remove_from_node(&ctx, &name).await?;
                SyncOutcome {
                    state: ProfileState::Disabled,
                    message: Some(reason),
                    changed: removed == RemoveOutcome::Removed,
                    warnings: Vec::new(),
                    failure: None,
                }
            } else {
                let cx = kind.context(&ctx.profiles, spod.as_deref());
                let p = profile.clone();
                match ctx.blocking(&name, move || kind.start_sync(&p, &cx)).await? {
                    Synced::Done(outcome) => outcome,
                    Synced::Queued(done) => done.await,
                }
            };
            if !ctx.exists(&name) {
                // Deleted while the artifact was being written: the deletion's cleanup may
                // have run before the write, so undo it here.
                if outcome.changed {
                    remove_from_node(&ctx, &name).await?;
                }
                return Ok(None);
            }
            if outcome.changed {
                let op = if outcome.state == ProfileState::Installed {
                    Operation::Update
                } else {
                    Operation::Delete
                };
                metrics.operation(kind_id, op);
                info!(profile = %name, state = %outcome.state, "node updated");
                // Once per written artifact: an unchanged file on a resync or a restart says
                // nothing new.
                if outcome.state == ProfileState::Installed && !outcome.warnings.is_empty() {
                    emit_warnings(&ctx, &profile, &outcome.warnings).await;
                }
            }
            let reason = (outcome.state == ProfileState::Error).then(|| error_reason(outcome.failure));
            NodeResult::Report {
                state: outcome.state,
                message: outcome.message,
                reason,
            }
        }
        NodePlan::Hold => NodeResult::Report {
            state: ProfileState::Terminating,
            message: None,
            reason: None,
        },
        NodePlan::Remove => {
            if remove_from_node(&ctx, &name).await? == RemoveOutcome::Removed {
                metrics.operation(kind_id, Operation::Delete);
                info!(profile = %name, "profile deleted; removed from this node");
            }
            NodeResult::Removed
        }
    };
    let failed = matches!(
        result,
        NodeResult::Report {
            state: ProfileState::Error,
            ..
        }
    );
    lock(&ctx.outcomes).insert(name.clone(), (uid, result));
    ctx.trigger_report(&name);
    if failed {
        // Errors may be transient (disk, kubelet dir mounted later): look again later.
        return Ok(Some(retry_after(bump(&ctx.node_failures, &name))));
    }
    lock(&ctx.node_failures).remove(&name);
    Ok(ctx.kind.recheck_after(&profile))
}

/// A failed node-side pass: counted, logged, and retried with backoff.
fn node_error_policy<K: NodeKind>(profile: &ProfileOf<K>, error: &OperatorError, ctx: &Ctx<K>) -> Duration {
    let name = profile.name_any();
    if matches!(error, OperatorError::Node { .. }) {
        ctx.endpoints
            .metrics
            .error(Ctx::<K>::kind_id(), ErrorReason::CannotRemoveProfile);
    }
    let after = retry_after(bump(&ctx.node_failures, &name));
    warn!(profile = %name, error = %error_chain(error), retry_in = ?after, "node update failed");
    after
}

/// The API side: tells the cluster what the node side did for one profile.
async fn reconcile_report<K: NodeKind>(profile: Arc<ProfileOf<K>>, ctx: Arc<Ctx<K>>) -> Result<(), OperatorError> {
    let name = profile.name_any();
    let uid = profile.uid().unwrap_or_default();
    let deleting = Resource::meta(&*profile).deletion_timestamp.is_some();
    let result = ctx.outcome(&name, &uid);
    let desired = desired_report(deleting, result.as_ref());
    if desired == Desired::Wait {
        return Ok(());
    }
    let pref = ProfileRef {
        kind: Ctx::<K>::kind_id(),
        name: name.clone(),
        uid: uid.clone(),
    };
    let ours = node_finalizer(&ctx.node);
    let memory = ctx.memory(&name, &uid);
    let fresh = |at: &Instant| at.elapsed() < REPORT_MEMORY;
    let previous = ctx.previous_report(&name);
    let want = match &desired {
        Desired::Status { state, message } => Some(desired_node_status(&pref, &ctx.node, *state, message.as_deref())),
        _ => None,
    };
    let remembered_status = memory
        .as_ref()
        .and_then(|m| m.status.as_ref())
        .filter(|(_, _, at)| fresh(at));
    let reported = Reported {
        finalizer: profile.finalizers().contains(&ours)
            || memory.as_ref().and_then(|m| m.finalizer_at.as_ref()).is_some_and(fresh),
        status_exists: previous.is_some() || remembered_status.is_some(),
        status_current: match (&desired, &want) {
            (Desired::Status { state, message }, Some(want)) => {
                previous.as_ref().is_some_and(|current| current.is_current(want))
                    || remembered_status.is_some_and(|(s, m, _)| s == state && m == message)
            }
            _ => false,
        },
    };
    let plan = plan_report(&desired, deleting, reported);
    if plan.is_empty() {
        lock(&ctx.report_failures).remove(&name);
        return Ok(());
    }
    debug!(profile = %name, ?plan, "reporting");
    let status_to_apply = match (plan.apply_status, &want, &desired) {
        (true, Some(want), Desired::Status { state, message }) => Some((want, state, message)),
        _ => None,
    };
    // The finalizer and the node status are different objects: written together, so a new
    // profile's report costs two round trips (finalizer and status object, then its status
    // subresource), not three.
    let add_finalizer = async {
        if plan.add_finalizer {
            kubeapi::apply_finalizers::<ProfileOf<K>>(
                &ctx.client,
                &name,
                &ctx.field_manager,
                std::slice::from_ref(&ours),
            )
            .await?;
            ctx.remember(&name, &uid, |w| w.finalizer_at = Some(Instant::now()));
        }
        Ok::<_, OperatorError>(())
    };
    let apply_status = async {
        if let Some((want, _, _)) = status_to_apply {
            kubeapi::apply_node_status(&ctx.client, &ctx.field_manager, want).await?;
        }
        Ok::<_, OperatorError>(())
    };
    tokio::try_join!(add_finalizer, apply_status)?;
    if let Some((_, state, message)) = status_to_apply {
        ctx.remember(&name, &uid, |w| {
            w.status = Some((*state, message.clone(), Instant::now()));
        });
        let prev_report = previous.as_ref().map(StatusDigest::report);
        if should_emit_event(prev_report.as_ref(), *state, message.as_deref()) {
            emit_error(&ctx, &profile, result.as_ref(), message.as_deref().unwrap_or_default()).await;
        }
        if !ctx.exists(&name) {
            // Deleted while we reported: do not leave a status behind.
            kubeapi::delete_node_status(&ctx.client, &ctx.status_name(&name)).await?;
        }
    }
    if plan.delete_status {
        kubeapi::delete_node_status(&ctx.client, &ctx.status_name(&name)).await?;
        ctx.forget_status(&name);
    }
    if plan.remove_finalizer {
        let left = kubeapi::apply_finalizers::<ProfileOf<K>>(&ctx.client, &name, &ctx.field_manager, &[]).await?;
        if left.contains(&ours) {
            // Someone else also claims our finalizer (added by hand or by another tool):
            // remove it by value, guarded by the object's version.
            let keep: Vec<String> = left.into_iter().filter(|f| *f != ours).collect();
            let rv = profile.resource_version().unwrap_or_default();
            kubeapi::replace_finalizers::<ProfileOf<K>>(&ctx.client, &name, &rv, &keep).await?;
        }
        lock(&ctx.written).remove(&name);
    }
    lock(&ctx.report_failures).remove(&name);
    Ok(())
}

/// A new error on this node: counted, logged and published as a Warning Event.
async fn emit_error<K: NodeKind>(ctx: &Ctx<K>, profile: &ProfileOf<K>, result: Option<&NodeResult>, message: &str) {
    let reason = match result {
        Some(NodeResult::Report {
            reason: Some(reason), ..
        }) => *reason,
        _ => error_reason(None),
    };
    ctx.endpoints.metrics.error(Ctx::<K>::kind_id(), reason);
    warn!(profile = %profile.name_any(), message = %message, "profile not installed");
    kubeapi::publish_event(
        &ctx.recorder,
        &profile.object_ref(&()),
        EventType::Warning,
        "ProfileNotInstalled",
        "Install",
        message,
    )
    .await;
}

/// A profile installed on this node with warnings (a syscall name of another architecture,
/// which the runtime skips): logged and published as a Warning Event; the state stays
/// Installed.
async fn emit_warnings<K: NodeKind>(ctx: &Ctx<K>, profile: &ProfileOf<K>, warnings: &[String]) {
    let text = warnings.join("; ");
    warn!(profile = %profile.name_any(), warnings = %text, "profile installed with warnings");
    kubeapi::publish_event(
        &ctx.recorder,
        &profile.object_ref(&()),
        EventType::Warning,
        "ProfileInstalledWithWarnings",
        "Install",
        &text,
    )
    .await;
}

/// A failed report: counted, logged, and retried (at once after a conflict, else with
/// backoff).
fn report_error_policy<K: NodeKind>(profile: &ProfileOf<K>, error: &OperatorError, ctx: &Ctx<K>) -> Duration {
    let name = profile.name_any();
    let reason = if error.api_kind() == Some("SecurityProfileNodeStatus") {
        ErrorReason::CannotUpdateNodeStatus
    } else {
        ErrorReason::CannotUpdateProfile
    };
    ctx.endpoints.metrics.error(Ctx::<K>::kind_id(), reason);
    let after = if error.is_conflict() {
        Duration::from_millis(200)
    } else {
        api_retry_after(bump(&ctx.report_failures, &name))
    };
    warn!(profile = %name, error = %error_chain(error), retry_in = ?after, "reporting failed");
    after
}

async fn remove_from_node<K: NodeKind>(ctx: &Ctx<K>, name: &str) -> Result<RemoveOutcome, OperatorError> {
    let Ok(install_name) = ctx.kind.backend().install_name(name) else {
        // Never installed: such names are refused before anything is written.
        return Ok(RemoveOutcome::NotPresent);
    };
    let kind = ctx.kind.clone();
    ctx.blocking(name, move || kind.backend().remove(kind.target(), &install_name))
        .await?
        .map_err(|e| OperatorError::Node {
            operation: "removing profile",
            name: name.to_owned(),
            source: Box::new(e),
        })
}

/// Cleans up after profiles deleted without waiting for this node (no finalizer of ours,
/// or it was removed by the manager while this daemon was away).
async fn cleanup_gone<K: NodeKind>(ctx: Arc<Ctx<K>>, mut gone: mpsc::UnboundedReceiver<String>) {
    while let Some(name) = gone.next().await {
        if ctx.exists(&name) {
            continue; // Re-created meanwhile.
        }
        forget(&ctx, &name).await;
    }
}

async fn forget<K: NodeKind>(ctx: &Ctx<K>, name: &str) {
    lock(&ctx.outcomes).remove(name);
    lock(&ctx.written).remove(name);
    lock(&ctx.node_failures).remove(name);
    lock(&ctx.report_failures).remove(name);
    match remove_from_node(ctx, name).await {
        Ok(RemoveOutcome::Removed) => {
            ctx.endpoints.metrics.operation(Ctx::<K>::kind_id(), Operation::Delete);
            info!(profile = %name, "profile deleted; removed from this node");
        }
        Ok(RemoveOutcome::NotPresent) => {}
        Err(e) => warn!(profile = %name, error = %error_chain(&e), "removing a deleted profile from the node failed"),
    }
    if let Err(e) = kubeapi::delete_node_status(&ctx.client, &ctx.status_name(name)).await {
        warn!(profile = %name, error = %error_chain(&e), "deleting the node status of a deleted profile failed");
    }
}

/// Once the profiles are listed: removes files and node statuses of profiles that no
/// longer exist (deleted while this daemon was not running).
async fn sweep_orphans<K: NodeKind>(ctx: Arc<Ctx<K>>, mut listed: tokio::sync::watch::Receiver<bool>) {
    if listed.wait_for(|l| *l).await.is_err() {
        return;
    }
    let kind_id = Ctx::<K>::kind_id();
    let kind = ctx.kind.clone();
    let installed = match tokio::task::spawn_blocking(move || kind.installed())
        .map(|r| r.ok())
        .await
    {
        Some(Ok(list)) => list,
        Some(Err(e)) => {
            warn!(kind = %kind_id, error = %error_chain(&e), "listing installed profiles failed; no orphan sweep");
            Vec::new()
        }
        None => Vec::new(),
    };
    let mut orphans: Vec<String> = installed.into_iter().filter(|n| !ctx.exists(n)).collect();
    for status in ctx.statuses.values() {
        if let Some((kind, profile)) = status.profile
            && kind == kind_id
            && !ctx.exists(&profile)
        {
            orphans.push(profile.into());
        }
    }
    orphans.sort();
    orphans.dedup();
    for name in orphans {
        info!(profile = %name, "removing leftovers of a profile deleted while the daemon was away");
        forget(&ctx, &name).await;
    }
}

#[cfg(test)]
mod hostile_tests;
