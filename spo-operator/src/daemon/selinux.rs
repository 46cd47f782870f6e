//! The SELinux kinds on a node: SelinuxProfile and RawSelinuxProfile, sharing one policy
//! store through one batching installer.
//!
//! spo-selinux's backends render (with `inherit` resolved from the daemon's watch cache of
//! SelinuxProfiles and the SPOD's `selinux.options` as guardrails); this adds what only the
//! daemon knows:
//!
//! - **Batching.** Every `semodule` transaction rebuilds the whole policy (seconds), so the
//!   node side's concurrent reconciles do not each run one: [`BatchInstaller::install`] and
//!   [`BatchInstaller::remove`] queue the operation and block; a worker thread collects what arrives within a short
//!   window (each arrival extends it, up to a bound; the batch is also bounded) and installs
//!   the batch with spo-selinux's batch installer ([`install_batch`] over
//!   `SelinuxNode::install_modules`: one transaction, refused modules isolated). Every store
//!   operation (list, install, remove) is serialised, since semodule holds the store lock
//!   anyway.
//! - **Names.** A SelinuxProfile `x` is module and block `x` (pods use `x.process`); a
//!   RawSelinuxProfile `x` is module and block `x_raw` (pods use `x_raw.process`). `_` never
//!   occurs in a Kubernetes name, so the two kinds never overwrite each other, and each kind
//!   lists only its own modules (at spo-selinux's priority, named its way), never the
//!   templates, the extra modules or the distribution's.
//! - **The SPOD.** `selinux.enable` turns both kinds on (off by default, as upstream),
//!   `selinux.enableRawSelinuxProfiles` the raw kind besides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use spo_model::contract::{
    InstallName, InstallOutcome, NodeSupport, ProfileBackend, RemoveOutcome, Rendered, install_outcome, render_checked,
};
use spo_model::observed::Recording;
use spo_model::selinux::{PolicyRefKind, RawSelinuxProfile, SelinuxProfile};
use spo_model::validate::Problems;
use spo_model::{SecurityProfile, SecurityProfilesOperatorDaemon};
use spo_selinux::install::ModuleStore;
use spo_selinux::render::{ModuleOrigin, ProfileLookup, RenderContext, RenderedModule};
use spo_selinux::{Guardrails, RawSelinuxBackend, SelinuxBackend, SelinuxError, SelinuxNode};

use super::{ContextOf, NodeKind, ProfileCache, ProfileOf, Synced};

/// The suffix of RawSelinuxProfile module names: `<name>_raw`.
pub const RAW_SUFFIX: &str = "raw";

/// How long the installer waits for more modules after one arrives, by default.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(300);
/// The most modules one transaction installs, by default.
pub const DEFAULT_BATCH_MAX: usize = 64;

/// Installs SELinux modules into one store in batches: one `semodule` transaction for every
/// module that arrives within the window. Cheap to clone (shared).
#[derive(Clone)]
pub struct BatchInstaller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BatchInstaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchInstaller")
            .field("window", &self.inner.window)
            .field("max_batch", &self.inner.max_batch)
            .finish_non_exhaustive()
    }
}

/// One queued store operation.
#[derive(Debug)]
enum Op {
    Install(RenderedModule),
    Remove(String),
}

/// What a queued operation did.
#[derive(Debug)]
enum Done {
    Installed(InstallOutcome),
    Removed(RemoveOutcome),
}

type Reply = tokio::sync::oneshot::Sender<Result<Done, SelinuxError>>;
type Pending = tokio::sync::oneshot::Receiver<Result<Done, SelinuxError>>;

fn stopped() -> SelinuxError {
    SelinuxError::Toolchain {
        what: "the SELinux install thread".to_owned(),
        hint: "it stopped; restart the daemon".to_owned(),
    }
}

struct Inner {
    node: SelinuxNode,
    window: Duration,
    max_batch: usize,
    queue: Mutex<Vec<(Op, Reply)>>,
    arrived: Condvar,
    /// Serialises every store operation.
    store_lock: Mutex<()>,
    transactions: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BatchInstaller {
    /// An installer into `store`; `extras` are installed with the first profile when the
    /// store has no module of their name (for Debian nodes: refpolicy's `container` module
    /// and the shim). Starts the worker thread.
    pub fn new(store: Arc<dyn ModuleStore>, extras: Vec<RenderedModule>, window: Duration, max_batch: usize) -> Self {
        let inner = Arc::new(Inner {
            node: SelinuxNode::new(store).with_extra_modules(extras),
            window,
            max_batch: max_batch.max(1),
            queue: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            store_lock: Mutex::new(()),
            transactions: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("selinux-batch".into())
            .spawn(move || worker(weak))
            .map(drop)
            .unwrap_or_else(|e| tracing::error!(error = %e, "starting the SELinux install thread failed"));
        BatchInstaller { inner }
    }

    /// Queues `op` for the next transaction.
    fn enqueue(&self, op: Op) -> Pending {
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.inner.queue).push((op, tx));
        self.inner.arrived.notify_all();
        rx
    }

    /// Queues `op` and blocks until its transaction is done (not on an async thread).
    fn submit(&self, op: Op) -> Result<Done, SelinuxError> {
        self.enqueue(op).blocking_recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Installs `module` with whatever else arrives within the window; blocks until its
    /// transaction is done.
    pub fn install(&self, module: RenderedModule) -> Result<InstallOutcome, SelinuxError> {
        installed(self.submit(Op::Install(module)))
    }

    /// Queues `module` like [`BatchInstaller::install`] at once, and returns a future of its
    /// transaction's result: a profile waiting for its batch holds no thread.
    pub fn install_queued(
        &self,
        module: RenderedModule,
    ) -> impl std::future::Future<Output = Result<InstallOutcome, SelinuxError>> + Send + 'static {
        let pending = self.enqueue(Op::Install(module));
        async move { installed(pending.await.unwrap_or_else(|_| Err(stopped()))) }
    }

    /// Removes our module `name` (at spo-selinux's priority), batched like installs (a parent
    /// and the child inheriting it go in one transaction); another priority's module of that
    /// name is not ours and is left alone.
    pub fn remove(&self, name: &str) -> Result<RemoveOutcome, SelinuxError> {
        match self.submit(Op::Remove(name.to_owned()))? {
            Done::Removed(o) => Ok(o),
            Done::Installed(_) => Ok(RemoveOutcome::NotPresent),
        }
    }

    /// Every module we installed, but the templates and the extras.
    pub fn own_modules(&self) -> Result<Vec<String>, SelinuxError> {
        let _store = lock(&self.inner.store_lock);
        self.inner.node.list_profiles()
    }

    /// The most modules one transaction takes.
    pub fn max_batch(&self) -> usize {
        self.inner.max_batch
    }

    /// How many store transactions (installs and removals) ran so far.
    pub fn transactions(&self) -> usize {
        self.inner.transactions.load(Ordering::Relaxed)
    }
}

fn installed(done: Result<Done, SelinuxError>) -> Result<InstallOutcome, SelinuxError> {
    match done? {
        Done::Installed(o) => Ok(o),
        Done::Removed(_) => Ok(InstallOutcome::Written),
    }
}

/// The SelinuxProfile names among our modules (pure): plain Kubernetes names.
pub fn selinux_profiles_in(modules: &[String]) -> Vec<String> {
    modules
        .iter()
        .filter(|m| InstallName::new(m).is_ok())
        .cloned()
        .collect()
}

/// The RawSelinuxProfile names among our modules (pure): `<name>_raw` with a Kubernetes name.
pub fn raw_profiles_in(modules: &[String]) -> Vec<String> {
    modules
        .iter()
        .filter_map(|m| m.strip_suffix(&format!("_{RAW_SUFFIX}")))
        .filter(|n| InstallName::new(n).is_ok())
        .map(str::to_owned)
        .collect()
}

/// Takes the next batch off the queue: waits for the first module, then for more until the
/// window passes without an arrival (each arrival extends it, up to four windows in all) or
/// the batch is full.
fn next_batch(inner: &Inner) -> Option<Vec<(Op, Reply)>> {
    let mut queue = lock(&inner.queue);
    if queue.is_empty() {
        let (q, _) = inner
            .arrived
            .wait_timeout(queue, Duration::from_secs(1))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queue = q;
        if queue.is_empty() {
            return None;
        }
    }
    let started = Instant::now();
    let hard_deadline = started + inner.window * 4;
    let mut seen = queue.len();
    let mut deadline = started + inner.window;
    while queue.len() < inner.max_batch {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let (q, _) = inner
            .arrived
            .wait_timeout(queue, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queue = q;
        if queue.len() > seen {
            seen = queue.len();
            deadline = (Instant::now() + inner.window).min(hard_deadline);
        }
    }
    let take = queue.len().min(inner.max_batch);
    Some(queue.drain(..take).collect())
}

fn worker(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let Some(batch) = next_batch(&strong) else {
            continue;
        };
        let _store = lock(&strong.store_lock);
        // Removals first: a module being replaced by another of a new name, or a parent going
        // with its child, must be out before the installs are checked against the policy.
        let (removes, installs): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(op, _)| matches!(op, Op::Remove(_)));
        if !removes.is_empty() {
            let names: Vec<String> = removes
                .iter()
                .filter_map(|(op, _)| match op {
                    Op::Remove(n) => Some(n.clone()),
                    Op::Install(_) => None,
                })
                .collect();
            let results = remove_batch(&strong.node, &names, &strong.transactions);
            tracing::debug!(modules = names.len(), "SELinux removal batch done");
            for ((_, reply), result) in removes.into_iter().zip(results) {
                let _ = reply.send(result.map(Done::Removed));
            }
        }
        if !installs.is_empty() {
            let modules: Vec<RenderedModule> = installs
                .iter()
                .filter_map(|(op, _)| match op {
                    Op::Install(m) => Some(m.clone()),
                    Op::Remove(_) => None,
                })
                .collect();
            let results = install_batch(&strong.node, &modules, &strong.transactions);
            tracing::debug!(modules = modules.len(), "SELinux install batch done");
            for ((_, reply), result) in installs.into_iter().zip(results) {
                let _ = reply.send(result.map(Done::Installed));
            }
        }
    }
}

/// Removes our modules `names` with spo-selinux's batch remover (one transaction, refusals
/// isolated); one result per name, in order (a name twice shares the result).
pub fn remove_batch(
    node: &SelinuxNode,
    names: &[String],
    transactions: &AtomicUsize,
) -> Vec<Result<RemoveOutcome, SelinuxError>> {
    let unique: Vec<String> = names
        .iter()
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    let by_name: BTreeMap<String, Result<RemoveOutcome, SelinuxError>> = match node.remove_modules(&unique) {
        Ok(report) => {
            transactions.fetch_add(report.transactions, Ordering::Relaxed);
            report
                .modules
                .into_iter()
                .map(|r| (r.name, r.result.map_err(|e| clone_error(&e))))
                .collect()
        }
        Err(e) => unique.iter().map(|n| (n.clone(), Err(clone_error(&e)))).collect(),
    };
    names
        .iter()
        .map(|n| match by_name.get(n) {
            Some(Ok(o)) => Ok(*o),
            Some(Err(e)) => Err(clone_error(e)),
            None => Ok(RemoveOutcome::NotPresent),
        })
        .collect()
}

/// Installs `modules` with spo-selinux's batch installer (one transaction for everything
/// that changed, refused modules isolated, the templates and missing extras with them).
/// Returns one result per module, in order. A module twice in the batch (a profile synced
/// twice within the window) is installed once, in its last version, and both share the result.
pub fn install_batch(
    node: &SelinuxNode,
    modules: &[RenderedModule],
    transactions: &AtomicUsize,
) -> Vec<Result<InstallOutcome, SelinuxError>> {
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in modules.iter().enumerate() {
        last.insert(m.name.as_str(), i);
    }
    let batch: Vec<RenderedModule> = last.values().map(|&i| modules[i].clone()).collect();
    let by_name: BTreeMap<String, Result<InstallOutcome, SelinuxError>> = match node.install_modules(&batch) {
        Ok(report) => {
            transactions.fetch_add(report.transactions, Ordering::Relaxed);
            report
                .modules
                .into_iter()
                .map(|r| (r.name, r.result.map_err(|e| clone_error(&e))))
                .collect()
        }
        Err(e) => batch.iter().map(|m| (m.name.clone(), Err(clone_error(&e)))).collect(),
    };
    modules
        .iter()
        .map(|m| match by_name.get(&m.name) {
            Some(Ok(o)) => Ok(*o),
            Some(Err(e)) => Err(clone_error(e)),
            None => Ok(InstallOutcome::Unchanged),
        })
        .collect()
}

/// SelinuxError is not Clone; a shared failure keeps its kind where it matters (a tool's
/// rejection, a foreign module) and its message otherwise.
fn clone_error(e: &SelinuxError) -> SelinuxError {
    match e {
        SelinuxError::Rejected {
            tool,
            subject,
            location,
            message,
        } => SelinuxError::Rejected {
            tool,
            subject: subject.clone(),
            location: location.clone(),
            message: message.clone(),
        },
        SelinuxError::ForeignModule { name, priority } => SelinuxError::ForeignModule {
            name: name.clone(),
            priority: *priority,
        },
        other => SelinuxError::Toolchain {
            what: spo_model::contract::error_chain(other),
            hint: "see the daemon's log".to_owned(),
        },
    }
}

/// Reads SPO's SelinuxProfiles from the daemon's watch cache, for `inherit`.
#[derive(Clone, Debug)]
pub struct StoreLookup(pub ProfileCache<SelinuxProfile>);

impl ProfileLookup for StoreLookup {
    fn selinux_profile(&self, name: &str) -> Result<Option<SelinuxProfile>, String> {
        Ok(self.0.get(name).map(|p| (*p).clone()))
    }
}

/// Why the SPOD keeps SELinux off (pure): `selinux.enable` must be `true`; for raw profiles
/// `selinux.enableRawSelinuxProfiles` too.
pub fn selinux_disabled_by(spod: Option<&SecurityProfilesOperatorDaemon>, raw: bool) -> Option<String> {
    let Some(spod) = spod else {
        return Some("SELinux is off: there is no SecurityProfilesOperatorDaemon to enable it".to_owned());
    };
    let id = format!(
        "{}/{}",
        spod.metadata.namespace.as_deref().unwrap_or_default(),
        spod.metadata.name.as_deref().unwrap_or_default()
    );
    let selinux = spod.spec.selinux.as_ref();
    if selinux.and_then(|s| s.enable) != Some(true) {
        return Some(format!(
            "SELinux is off in SecurityProfilesOperatorDaemon {id} (spec.selinux.enable is not true)"
        ));
    }
    if raw && selinux.and_then(|s| s.enable_raw_selinux_profiles) != Some(true) {
        return Some(format!(
            "RawSelinuxProfiles are off in SecurityProfilesOperatorDaemon {id} (spec.selinux.enableRawSelinuxProfiles is not true)"
        ));
    }
    None
}

/// How the node's SELinux is reached.
#[derive(Clone, Debug)]
pub struct SelinuxNodeConfig {
    /// Where selinuxfs is (probed for support).
    pub selinuxfs: PathBuf,
    /// The shared installer.
    pub installer: BatchInstaller,
}

/// SelinuxProfile on a node, through the batching installer.
#[derive(Clone, Debug)]
pub struct SelinuxNodeBackend {
    inner: SelinuxBackend,
}

impl ProfileBackend for SelinuxNodeBackend {
    type Profile = SelinuxProfile;
    type Context = RenderContext;
    type Artifact = RenderedModule;
    type Target = BatchInstaller;
    type Error = SelinuxError;

    fn probe(&self) -> NodeSupport {
        self.inner.probe()
    }

    fn policy_problems(&self, profile: &SelinuxProfile, ctx: &RenderContext) -> Problems {
        self.inner.policy_problems(profile, ctx)
    }

    fn render(&self, profile: &SelinuxProfile, ctx: &RenderContext) -> Result<RenderedModule, SelinuxError> {
        self.inner.render(profile, ctx)
    }

    fn install(
        &self,
        target: &BatchInstaller,
        name: &InstallName,
        artifact: &RenderedModule,
    ) -> Result<InstallOutcome, SelinuxError> {
        install_named(target, name, artifact)
    }

    fn remove(&self, target: &BatchInstaller, name: &InstallName) -> Result<RemoveOutcome, SelinuxError> {
        target.remove(name.as_str())
    }

    fn list(&self, target: &BatchInstaller) -> Result<Vec<String>, SelinuxError> {
        Ok(selinux_profiles_in(&target.own_modules()?))
    }

    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<SelinuxProfile, SelinuxError> {
        self.inner.profile_from_recording(name, recording)
    }
}

fn install_named(
    target: &BatchInstaller,
    name: &InstallName,
    artifact: &RenderedModule,
) -> Result<InstallOutcome, SelinuxError> {
    check_module_name(name, artifact)?;
    target.install(artifact.clone())
}

/// A module is installed under the name it was rendered for.
fn check_module_name(name: &InstallName, artifact: &RenderedModule) -> Result<(), SelinuxError> {
    if artifact.name == name.as_str() {
        return Ok(());
    }
    Err(SelinuxError::Toolchain {
        what: format!("installing module {} as {name}", artifact.name),
        hint: "a module is installed under the name it was rendered for".to_owned(),
    })
}

/// [`NodeKind::start_sync`] for the SELinux kinds: rendered and checked here, the install
/// handed to the batching installer and awaited (no thread waits for the transaction).
fn start_queued<B>(backend: &B, installer: &BatchInstaller, profile: &B::Profile, ctx: &B::Context) -> Synced
where
    B: ProfileBackend<Artifact = RenderedModule, Target = BatchInstaller, Error = SelinuxError>
        + Clone
        + Send
        + 'static,
{
    match render_checked(backend, installer, profile, ctx) {
        Rendered::Done(outcome) => Synced::Done(outcome),
        Rendered::Install {
            name,
            artifact,
            warnings,
        } => {
            if let Err(e) = check_module_name(&name, &artifact) {
                return Synced::Done(install_outcome(backend, &name, Err(e), warnings));
            }
            let (backend, done) = (backend.clone(), installer.install_queued(artifact));
            Synced::Queued(Box::pin(async move {
                let result = done.await;
                install_outcome(&backend, &name, result, warnings)
            }))
        }
    }
}

/// RawSelinuxProfile on a node: module and block `<name>_raw`, through the batching
/// installer.
#[derive(Clone, Debug)]
pub struct RawSelinuxNodeBackend {
    inner: RawSelinuxBackend,
}

impl ProfileBackend for RawSelinuxNodeBackend {
    type Profile = RawSelinuxProfile;
    type Context = ();
    type Artifact = RenderedModule;
    type Target = BatchInstaller;
    type Error = SelinuxError;

    fn probe(&self) -> NodeSupport {
        self.inner.probe()
    }

    fn install_name(&self, name: &str) -> Result<InstallName, spo_model::contract::InvalidInstallName> {
        InstallName::with_suffix(name, RAW_SUFFIX)
    }

    /// Renders the profile (checked under its own name) and renames its block to
    /// `<name>_raw`.
    fn render(&self, profile: &RawSelinuxProfile, _: &()) -> Result<RenderedModule, SelinuxError> {
        let module = self.inner.render(profile, &())?;
        let name = InstallName::with_suffix(profile.name(), RAW_SUFFIX).map_err(|e| SelinuxError::Toolchain {
            what: e.to_string(),
            hint: "RawSelinuxProfile names are DNS subdomains".to_owned(),
        })?;
        rename_block(module, name.as_str())
    }

    fn install(
        &self,
        target: &BatchInstaller,
        name: &InstallName,
        artifact: &RenderedModule,
    ) -> Result<InstallOutcome, SelinuxError> {
        install_named(target, name, artifact)
    }

    fn remove(&self, target: &BatchInstaller, name: &InstallName) -> Result<RemoveOutcome, SelinuxError> {
        target.remove(name.as_str())
    }

    fn list(&self, target: &BatchInstaller) -> Result<Vec<String>, SelinuxError> {
        Ok(raw_profiles_in(&target.own_modules()?))
    }

    fn profile_from_recording(&self, name: &str, recording: &Recording) -> Result<RawSelinuxProfile, SelinuxError> {
        self.inner.profile_from_recording(name, recording)
    }
}

/// `module` with its block and module name `to` (pure). spo-selinux writes the block's opening
/// as a line of its own, `(block <name>`, at the start of a line and nowhere else, so exactly
/// that one line is rewritten; anything else is refused rather than guessed at.
pub fn rename_block(mut module: RenderedModule, to: &str) -> Result<RenderedModule, SelinuxError> {
    let open = format!("(block {}", module.name);
    let lines: Vec<&str> = module.text.split('\n').collect();
    let at: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == open).collect();
    let [i] = at.as_slice() else {
        return Err(SelinuxError::Toolchain {
            what: format!("renaming module {} to {to}", module.name),
            hint: "the rendered module does not open its block on one line of its own".to_owned(),
        });
    };
    let renamed = format!("(block {to}");
    let mut out: Vec<&str> = lines.clone();
    out[*i] = &renamed;
    module.text = out.join("\n");
    module.name = to.to_owned();
    module.origin = ModuleOrigin::RawSelinux;
    Ok(module)
}

/// SelinuxProfiles on one node.
#[derive(Clone, Debug)]
pub struct SelinuxKind {
    backend: SelinuxNodeBackend,
    installer: BatchInstaller,
}

impl SelinuxKind {
    /// The kind on the node described by `config`.
    pub fn new(config: &SelinuxNodeConfig) -> Self {
        SelinuxKind {
            backend: SelinuxNodeBackend {
                inner: SelinuxBackend {
                    selinuxfs: config.selinuxfs.clone(),
                },
            },
            installer: config.installer.clone(),
        }
    }
}

impl NodeKind for SelinuxKind {
    type Backend = SelinuxNodeBackend;

    fn backend(&self) -> &SelinuxNodeBackend {
        &self.backend
    }

    fn target(&self) -> &BatchInstaller {
        &self.installer
    }

    fn start_sync(&self, profile: &ProfileOf<Self>, ctx: &ContextOf<Self>) -> Synced {
        start_queued(&self.backend, &self.installer, profile, ctx)
    }

    fn waiting_slots(&self) -> usize {
        self.installer.max_batch()
    }

    fn context(
        &self,
        profiles: &ProfileCache<SelinuxProfile>,
        spod: Option<&SecurityProfilesOperatorDaemon>,
    ) -> RenderContext {
        let options = spod
            .and_then(|s| s.spec.selinux.as_ref())
            .and_then(|s| s.options.as_ref());
        RenderContext {
            guardrails: Guardrails::from_options(options),
            lookup: Arc::new(StoreLookup(profiles.clone())),
        }
    }

    fn parents(&self, profile: &SelinuxProfile) -> Vec<String> {
        profile
            .spec
            .inherit
            .iter()
            .filter(|r| r.kind == PolicyRefKind::SelinuxProfile)
            .map(|r| r.name.clone())
            .collect()
    }

    fn disabled_by(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> Option<String> {
        selinux_disabled_by(spod, false)
    }

    fn settings(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> String {
        format!("{:?}", spod.and_then(|s| s.spec.selinux.as_ref()))
    }
}

/// RawSelinuxProfiles on one node.
#[derive(Clone, Debug)]
pub struct RawSelinuxKind {
    backend: RawSelinuxNodeBackend,
    installer: BatchInstaller,
}

impl RawSelinuxKind {
    /// The kind on the node described by `config`.
    pub fn new(config: &SelinuxNodeConfig) -> Self {
        RawSelinuxKind {
            backend: RawSelinuxNodeBackend {
                inner: RawSelinuxBackend {
                    selinuxfs: config.selinuxfs.clone(),
                },
            },
            installer: config.installer.clone(),
        }
    }
}

impl NodeKind for RawSelinuxKind {
    type Backend = RawSelinuxNodeBackend;

    fn backend(&self) -> &RawSelinuxNodeBackend {
        &self.backend
    }

    fn target(&self) -> &BatchInstaller {
        &self.installer
    }

    fn start_sync(&self, profile: &ProfileOf<Self>, ctx: &ContextOf<Self>) -> Synced {
        start_queued(&self.backend, &self.installer, profile, ctx)
    }

    fn waiting_slots(&self) -> usize {
        self.installer.max_batch()
    }

    fn context(&self, _: &ProfileCache<RawSelinuxProfile>, _: Option<&SecurityProfilesOperatorDaemon>) {}

    fn disabled_by(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> Option<String> {
        selinux_disabled_by(spod, true)
    }

    fn settings(&self, spod: Option<&SecurityProfilesOperatorDaemon>) -> String {
        format!("{:?}", spod.and_then(|s| s.spec.selinux.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::ProfileState;
    use spo_model::contract::{SyncStep, sync_profile};
    use spo_selinux::install::{InstalledModule, MODULE_PRIORITY};

    fn module(name: &str, text: &str) -> RenderedModule {
        RenderedModule {
            name: name.into(),
            origin: ModuleOrigin::Selinux,
            text: text.into(),
            lines: Vec::new(),
            requires: Vec::new(),
        }
    }

    /// A store in memory that records transactions and can refuse a module.
    #[derive(Default)]
    struct FakeStore {
        modules: Mutex<Vec<InstalledModule>>,
        transactions: Mutex<Vec<Vec<String>>>,
        refuse: Option<&'static str>,
    }

    impl ModuleStore for FakeStore {
        fn list(&self) -> Result<Vec<InstalledModule>, SelinuxError> {
            Ok(lock(&self.modules).clone())
        }
        fn install(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError> {
            lock(&self.transactions).push(modules.iter().map(|m| m.name.clone()).collect());
            if let Some(bad) = self.refuse
                && modules.iter().any(|m| m.name == bad)
            {
                return Err(SelinuxError::Rejected {
                    tool: "semodule",
                    subject: format!("{} policy modules", modules.len()),
                    location: None,
                    message: format!(
                        "Failed to resolve allow statement at /var/lib/selinux/default/active/modules/420/{bad}/cil:1"
                    ),
                });
            }
            let mut all = lock(&self.modules);
            for m in modules {
                all.retain(|x| !(x.name == m.name && x.priority == MODULE_PRIORITY));
                all.push(InstalledModule {
                    priority: MODULE_PRIORITY,
                    name: m.name.clone(),
                    checksum: Some(format!("sha256:{}", m.sha256())),
                });
            }
            Ok(())
        }
        fn remove(&self, names: &[String]) -> Result<(), SelinuxError> {
            lock(&self.transactions).push(names.iter().map(|n| format!("-{n}")).collect());
            lock(&self.modules).retain(|m| !(names.contains(&m.name) && m.priority == MODULE_PRIORITY));
            Ok(())
        }
    }

    fn node(store: Arc<FakeStore>) -> SelinuxNode {
        SelinuxNode::new(store)
    }

    #[test]
    fn a_batch_is_one_transaction_and_a_failure_is_attributed() {
        let store = Arc::new(FakeStore::default());
        let count = AtomicUsize::new(0);
        let mods = [module("a", "(a)"), module("b", "(b)"), module("a", "(a2)")];
        let results = install_batch(&node(store.clone()), &mods, &count);
        assert!(
            results.iter().all(|r| matches!(r, Ok(InstallOutcome::Written))),
            "{results:?}"
        );
        let tx = lock(&store.transactions).clone();
        assert_eq!(tx.len(), 1, "{tx:?}");
        assert!(
            tx[0].contains(&"a".to_owned()) && tx[0].contains(&"b".to_owned()),
            "{tx:?}"
        );
        // Unchanged modules run nothing.
        let again = install_batch(&node(store.clone()), &[module("b", "(b)")], &count);
        assert!(matches!(again[0], Ok(InstallOutcome::Unchanged)));
        assert_eq!(lock(&store.transactions).len(), 1);

        let refusing = Arc::new(FakeStore {
            refuse: Some("bad"),
            ..FakeStore::default()
        });
        let results = install_batch(&node(refusing), &[module("good", "(g)"), module("bad", "(x)")], &count);
        assert!(matches!(results[0], Ok(InstallOutcome::Written)), "{results:?}");
        assert!(results[1].is_err(), "{results:?}");
    }

    #[test]
    fn queued_installs_share_a_transaction_and_hold_no_thread() {
        let store = Arc::new(FakeStore::default());
        let installer = BatchInstaller::new(store.clone(), Vec::new(), Duration::from_millis(50), 64);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("enforce"), "1").expect("enforce");
        let config = SelinuxNodeConfig {
            selinuxfs: dir.path().to_owned(),
            installer: installer.clone(),
        };
        let (kind, raw) = (SelinuxKind::new(&config), RawSelinuxKind::new(&config));
        let mut pending = Vec::new();
        for i in 0..20 {
            let p: SelinuxProfile = serde_norway::from_str(&format!(
                "metadata: {{name: p{i}}}\nspec: {{allow: {{var_log_t: {{file: [read]}}}}}}\n"
            ))
            .expect("profile");
            let cx = kind.context(&ProfileCache::default(), None);
            match kind.start_sync(&p, &cx) {
                Synced::Queued(done) => pending.push(done),
                Synced::Done(o) => panic!("p{i} not queued: {o:?}"),
            }
            let r: RawSelinuxProfile = serde_norway::from_str(&format!(
                "metadata: {{name: r{i}}}\nspec: {{policy: '(allow process var_log_t (file (read)))'}}\n"
            ))
            .expect("raw");
            match raw.start_sync(&r, &()) {
                Synced::Queued(done) => pending.push(done),
                Synced::Done(o) => panic!("r{i} not queued: {o:?}"),
            }
        }
        let outcomes = futures::executor::block_on(futures::future::join_all(pending));
        for o in &outcomes {
            assert_eq!(o.state, ProfileState::Installed, "{o:?}");
            assert!(o.changed, "{o:?}");
        }
        // All 40 were queued from this one thread before their transaction ran: had
        // `start_sync` waited for its install, each would have had a transaction of its own.
        let tx = lock(&store.transactions).clone();
        assert_eq!(tx.len(), 1, "one transaction for both kinds' modules: {tx:?}");
        assert_eq!(tx[0].len(), 41, "40 modules and the templates they need: {tx:?}");
        assert!(
            tx[0].contains(&"p7".to_owned()) && tx[0].contains(&"r7_raw".to_owned()),
            "{tx:?}"
        );
    }

    #[test]
    fn a_system_module_of_the_same_name_is_refused_alone() {
        let store = Arc::new(FakeStore::default());
        lock(&store.modules).push(InstalledModule {
            priority: 100,
            name: "apache".into(),
            checksum: None,
        });
        let results = install_batch(
            &node(store),
            &[module("apache", "(x)"), module("web", "(w)")],
            &AtomicUsize::new(0),
        );
        assert!(
            matches!(results[0], Err(SelinuxError::ForeignModule { .. })),
            "{results:?}"
        );
        assert!(matches!(results[1], Ok(InstallOutcome::Written)));
    }

    #[test]
    fn renaming_touches_only_the_block_opening() {
        let m = module(
            "web",
            "; RawSelinuxProfile web\n(block web\n  (allow process web (file (read)))\n)\n",
        );
        let r = rename_block(m, "web_raw").expect("rename");
        assert_eq!(r.name, "web_raw");
        assert_eq!(
            r.text,
            "; RawSelinuxProfile web\n(block web_raw\n  (allow process web (file (read)))\n)\n"
        );
        assert!(rename_block(module("web", "(block  web\n)"), "web_raw").is_err());
    }

    #[test]
    fn each_kind_lists_only_its_own_modules() {
        let own: Vec<String> = ["Bad_raw", "web", "web_raw", "spo_templates"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(selinux_profiles_in(&own), ["web"]);
        assert_eq!(raw_profiles_in(&own), ["web"]);
    }

    #[test]
    fn concurrent_installs_share_a_transaction() {
        let store = Arc::new(FakeStore::default());
        let installer = BatchInstaller::new(store.clone(), Vec::new(), Duration::from_millis(200), 64);
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let installer = installer.clone();
                std::thread::spawn(move || installer.install(module(&format!("p{i}"), "(x)")))
            })
            .collect();
        for h in handles {
            assert!(matches!(h.join().expect("join"), Ok(InstallOutcome::Written)));
        }
        assert_eq!(lock(&store.transactions).len(), 1, "{:?}", lock(&store.transactions));
        assert_eq!(installer.transactions(), 1);

        // Removals are batched the same way; a module of another priority is not ours.
        lock(&store.modules).push(InstalledModule {
            priority: 100,
            name: "sys".into(),
            checksum: None,
        });
        let handles: Vec<_> = ["p0", "p1", "p2", "sys", "never"]
            .into_iter()
            .map(|n| {
                let installer = installer.clone();
                std::thread::spawn(move || installer.remove(n))
            })
            .collect();
        let outcomes: Vec<RemoveOutcome> = handles
            .into_iter()
            .map(|h| h.join().expect("join").expect("remove"))
            .collect();
        assert_eq!(
            outcomes,
            [
                RemoveOutcome::Removed,
                RemoveOutcome::Removed,
                RemoveOutcome::Removed,
                RemoveOutcome::NotPresent,
                RemoveOutcome::NotPresent
            ]
        );
        let tx = lock(&store.transactions).clone();
        assert_eq!(tx.len(), 2, "one install, one removal transaction: {tx:?}");
        assert!(lock(&store.modules).iter().any(|m| m.name == "sys"));
    }

    fn profile(yaml: &str) -> SelinuxProfile {
        serde_norway::from_str(yaml).expect("profile")
    }

    #[test]
    fn parents_are_inherited_selinux_profiles_only() {
        let config = SelinuxNodeConfig {
            selinuxfs: PathBuf::from("/nonexistent"),
            installer: BatchInstaller::new(Arc::new(FakeStore::default()), Vec::new(), Duration::from_millis(5), 8),
        };
        let kind = SelinuxKind::new(&config);
        let p = profile(
            "metadata: {name: a}\nspec: {inherit: [{kind: SelinuxProfile, name: b}, {name: container}, {kind: SelinuxProfile, name: c}]}\n",
        );
        assert_eq!(kind.parents(&p), ["b", "c"], "System `container` is not a profile");
    }

    #[test]
    fn the_spod_switches_the_kinds() {
        let spod = |yaml: &str| -> SecurityProfilesOperatorDaemon {
            serde_norway::from_str(&format!("metadata: {{name: spod, namespace: ns}}\nspec: {yaml}\n")).expect("spod")
        };
        assert!(selinux_disabled_by(None, false).is_some());
        let off = selinux_disabled_by(Some(&spod("{}")), false).expect("off by default");
        assert!(off.contains("spec.selinux.enable") && off.contains("ns/spod"), "{off}");
        let on = spod("{selinux: {enable: true}}");
        assert_eq!(selinux_disabled_by(Some(&on), false), None);
        let raw = selinux_disabled_by(Some(&on), true).expect("raw needs its own switch");
        assert!(raw.contains("enableRawSelinuxProfiles"), "{raw}");
        let both = spod("{selinux: {enable: true, enableRawSelinuxProfiles: true}}");
        assert_eq!(selinux_disabled_by(Some(&both), true), None);
    }

    #[test]
    fn the_two_kinds_of_one_name_install_apart_and_guardrails_name_the_field() {
        let selinuxfs = tempfile::tempdir().expect("tempdir");
        std::fs::write(selinuxfs.path().join("enforce"), "1").expect("enforce");
        let store = Arc::new(FakeStore::default());
        let config = SelinuxNodeConfig {
            selinuxfs: selinuxfs.path().to_owned(),
            installer: BatchInstaller::new(store.clone(), Vec::new(), Duration::from_millis(10), 64),
        };
        let (sel, raw) = (SelinuxKind::new(&config), RawSelinuxKind::new(&config));
        let p = profile("metadata: {name: web}\nspec: {allow: {var_log_t: {file: [read]}}}\n");
        let r: RawSelinuxProfile = serde_norway::from_str(
            "metadata: {name: web}\nspec: {policy: '(allow process var_log_t (file (write)))'}\n",
        )
        .expect("raw");
        let ctx = RenderContext::default();
        let a = sync_profile(sel.backend(), sel.target(), &p, &ctx);
        assert_eq!(a.state, ProfileState::Installed, "{a:?}");
        let b = sync_profile(raw.backend(), raw.target(), &r, &());
        assert_eq!(b.state, ProfileState::Installed, "{b:?}");
        assert_eq!(config.installer.own_modules().expect("list"), ["web", "web_raw"]);
        assert_eq!(sel.installed().expect("list"), ["web"]);
        assert_eq!(raw.installed().expect("list"), ["web"]);
        let text = |name: &str| {
            lock(&store.modules)
                .iter()
                .any(|m| m.name == name)
                .then_some(())
                .expect("installed")
        };
        text("web");
        text("web_raw");

        let mut bad = p.clone();
        bad.spec.allow.get_or_insert_default().insert(
            "shadow_t".into(),
            BTreeMap::from([("file".to_owned(), vec!["read".to_owned()])]),
        );
        let err = sync_profile(sel.backend(), sel.target(), &bad, &ctx);
        assert_eq!(err.state, ProfileState::Error);
        let failure = err.failure.expect("failure");
        assert_eq!((failure.step, failure.policy_violation), (SyncStep::Policy, true));
        assert!(
            err.message
                .as_deref()
                .is_some_and(|m| m.contains("spec.allow[shadow_t]")),
            "{err:?}"
        );

        // Removing one kind leaves the other.
        let mut off = r.clone();
        off.spec.state = spo_model::SpecState::Disabled;
        let gone = sync_profile(raw.backend(), raw.target(), &off, &());
        assert_eq!((gone.state, gone.changed), (ProfileState::Disabled, true));
        assert_eq!(config.installer.own_modules().expect("list"), ["web"]);
    }
}
