//! The node enricher (`spo-operator enricher`): upstream's log enricher and JSON enricher in
//! one process, reading the node's audit records once for both.
//!
//! - The SPOD (`spec.enricher`) switches each output on and off, with its filters, its source
//!   (`logEnricherSource`) and the JSON file's rotation ([`plan::settings`]); while both are
//!   off nothing is read.
//! - A watch of this node's pods (field selector `spec.nodeName`) feeds the bounded pod index
//!   (container id -> namespace, pod, container). A deleted pod stays in it for
//!   [`EnricherConfig::pod_grace`], so that records read after the deletion still name it.
//! - One blocking reader follows auditd's log (rotation-safe, resuming from its checkpoint
//!   file after a restart) or the kernel log, runs every line through
//!   [`spo_enrich::pipeline::Pipeline`], prints each logged record as one line on standard
//!   output (`audit timestamp=… type=… node=… namespace=… pod=… container=…`), counts it in
//!   the `*_profile_audit_total` metrics, and writes the JSON enricher's lines every
//!   `auditLogIntervalSeconds` to `auditLogPath` (rotated) or standard output.
//!
//! What it needs on the node, and nothing more: the node's `/proc` (`--proc-root`, the
//! SPOD's `hostProcVolumePath` mounted read-only), auditd's log directory read-only, the
//! kernel log (CAP_SYSLOG), CAP_SYS_PTRACE to read the executable of processes of other
//! users, and a directory for the checkpoint and the JSON log. See deploy/components/enricher.

pub mod logrec;
pub mod plan;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use spo_enrich::attribution::{CacheBounds, PodIndex, ProcFs, ProcessInfo, ProcessSource};
use spo_enrich::pipeline::{Fed, Pipeline};
use spo_enrich::rotate::RotatingLog;
use spo_enrich::source::KernelLog;
use spo_enrich::tail::{Checkpoint, LogTail, Start};
use spo_hostio::{WritePolicy, write_file};
use tracing::{error, info, warn};

use self::logrec::LogRecordings;
use self::plan::{JsonTarget, Settings, SourceChoice};
use crate::error::OperatorError;
use crate::metrics::{AuditEvent, AuditWhat, Metrics};
use crate::recorder::plan::Mark;
use crate::recorder::publish::Publisher;
use crate::server::Endpoints;

/// The most containers the pod index holds (a node runs at most a few hundred pods).
pub const MAX_CONTAINERS: usize = 16_384;
/// The longest auditd line kept whole.
const MAX_LINE: usize = 64 * 1024;
/// How often the checkpoint is written at most.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// While reading the kernel log for want of auditd's, how often to look for auditd's log.
const AUDITD_LOOK: Duration = Duration::from_secs(5);

/// Where the enricher runs and what it reads.
#[derive(Debug, Clone)]
pub struct EnricherConfig {
    /// This node's name.
    pub node: String,
    /// The operator's namespace (where the SPOD is).
    pub namespace: String,
    /// The SPOD's name.
    pub spod_name: String,
    /// auditd's log.
    pub audit_log: PathBuf,
    /// The kernel log device.
    pub kernel_log: PathBuf,
    /// The node's `/proc`.
    pub proc_root: PathBuf,
    /// Where the reader's place in auditd's log is kept across restarts (none: start at the
    /// end of the log).
    pub checkpoint: Option<PathBuf>,
    /// How long the reader sleeps when there is nothing to read.
    pub poll: Duration,
    /// How long a deleted pod stays in the index.
    pub pod_grace: Duration,
    /// How long a record of a container no pod on the node names yet waits for the pod's
    /// status (a container's first records come before the kubelet reports its id).
    pub hold: Duration,
    /// Remember exiting processes with eBPF (spo-record's exit log; CAP_BPF, CAP_PERFMON), so
    /// that records of processes gone before they were read are still attributed.
    pub exit_log: bool,
}

/// How far apart the kernel's record stamp (coarse wall clock) and the exit log's boot-clock
/// times may be and still be the same moment.
#[cfg(feature = "node-recorder")]
const CLOCK_SLACK_MS: u64 = 20;

/// The node's processes: its /proc, and the exit log when it is loaded.
struct NodeProcesses {
    proc: ProcFs,
    #[cfg(feature = "node-recorder")]
    exits: Option<spo_record::ExitLog>,
}

impl NodeProcesses {
    fn new(proc: ProcFs, exit_log: bool) -> NodeProcesses {
        #[cfg(feature = "node-recorder")]
        let exits = if exit_log {
            match spo_record::ExitLog::start() {
                Ok(log) => {
                    info!("exit log loaded: records of processes gone before they are read are attributed");
                    Some(log)
                }
                Err(e) => {
                    warn!(error = %e, "exit log not loaded: records of processes gone before they are read name the node only");
                    None
                }
            }
        } else {
            None
        };
        #[cfg(not(feature = "node-recorder"))]
        if exit_log {
            warn!("built without the node-recorder feature: no exit log");
        }
        NodeProcesses {
            proc,
            #[cfg(feature = "node-recorder")]
            exits,
        }
    }
}

impl ProcessSource for NodeProcesses {
    fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
        self.proc.lookup(pid)
    }

    fn started_ms(&self, pid: u32) -> Option<u64> {
        self.proc.started_ms(pid)
    }

    #[cfg(feature = "node-recorder")]
    fn exited(&self, pid: u32, record_ms: u64) -> Option<ProcessInfo> {
        let e = self.exits.as_ref()?.get(pid)?;
        let alive = e.started_ms <= record_ms + CLOCK_SLACK_MS && record_ms <= e.exited_ms + CLOCK_SLACK_MS;
        alive.then(|| ProcessInfo {
            pid,
            started_ms: e.started_ms,
            container: spo_enrich::attribution::container_id_from_cgroup(&e.cgroup),
            executable: None,
            cmdline: None,
            uid: None,
            gid: None,
        })
    }
}

/// Runs until `shutdown`.
pub async fn run(
    client: Client,
    config: EnricherConfig,
    endpoints: Arc<Endpoints>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let shutdown = shutdown.boxed().shared();
    let (settings_rx, spod_task) = crate::kubeapi::follow_spod(
        client.clone(),
        &config.namespace,
        &config.spod_name,
        Settings::off(),
        |spod| {
            let Some(spod) = spod else { return Some(Settings::off()) };
            match plan::settings(spod) {
                Ok(settings) => {
                    info!(
                        log = settings.log.is_some(),
                        json = settings.json.is_some(),
                        source = ?settings.source,
                        "enricher settings"
                    );
                    Some(settings)
                }
                // The previous settings stay: a typo must not switch enrichment off.
                Err(e) => {
                    error!(error = %e, "SPOD enricher settings refused; keeping the previous ones");
                    None
                }
            }
        },
    );

    let pods = Arc::new(Mutex::new(PodIndex::new(MAX_CONTAINERS)));
    let recordings = Arc::new(Mutex::new(LogRecordings::default()));
    let polls = Arc::new(AtomicU64::new(0));
    let pod_task = tokio::spawn(watch_pods(
        PodWatch {
            publisher: Publisher::new(client.clone(), "spo-enricher", &config.node),
            client,
            config: config.clone(),
            pods: pods.clone(),
            endpoints: endpoints.clone(),
            recordings: recordings.clone(),
            polls: polls.clone(),
        },
        settings_rx.clone(),
    ));

    let procfs = ProcFs::new(&config.proc_root).map_err(|source| OperatorError::Node {
        operation: "reading the node's /proc",
        name: config.proc_root.display().to_string(),
        source: Box::new(source),
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, metrics, pods, config) = (stop.clone(), endpoints.metrics.clone(), pods.clone(), config.clone());
        let shared = Shared {
            pods,
            recordings,
            polls,
        };
        tokio::task::spawn_blocking(move || {
            // Made here: the exit log's BPF skeleton stays on this thread.
            let processes = NodeProcesses::new(procfs, config.exit_log);
            read_loop(&config, processes, &shared, &metrics, settings_rx, &stop);
        })
    };
    let mut reader = std::pin::pin!(reader);
    let result = tokio::select! {
        () = shutdown.clone() => {
            stop.store(true, Ordering::Relaxed);
            reader.await
        }
        done = &mut reader => done,
    };
    spod_task.abort();
    pod_task.abort();
    result.map_err(|source| OperatorError::Join {
        name: "the enricher's reader".into(),
        source,
    })
}

/// What the pod watch works with.
struct PodWatch {
    client: Client,
    config: EnricherConfig,
    pods: Arc<Mutex<PodIndex>>,
    endpoints: Arc<Endpoints>,
    publisher: Publisher,
    recordings: Arc<Mutex<LogRecordings>>,
    /// Reader loops done (the log recorder waits for the reader to catch up).
    polls: Arc<AtomicU64>,
}

/// A pod whose containers the log recorder records.
struct LogRecorded {
    marks: Vec<(Mark, spo_model::ProfileRecording)>,
    last: Pod,
}

/// Keeps the pod index in step with this node's pods, and runs the log recorder's side of
/// them (marks checked when a pod comes, profiles written when it ends).
async fn watch_pods(w: PodWatch, settings: tokio::sync::watch::Receiver<Settings>) {
    let api: Api<Pod> = Api::all(w.client.clone());
    let stream = watcher(
        api,
        watcher::Config::default().fields(&format!("spec.nodeName={}", w.config.node)),
    )
    .default_backoff();
    let mut stream = std::pin::pin!(stream);
    // Deleted pods, forgotten once their grace has passed.
    let mut leaving: std::collections::VecDeque<(Instant, String, String)> = std::collections::VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut full_warned = false;
    let mut recorded: HashMap<String, LogRecorded> = HashMap::new();
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = tick.tick() => {
                forget_due(&mut leaving, &w.pods, &w.endpoints.metrics, Instant::now());
                continue;
            }
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
                let containers = plan::pod_containers(&pod);
                let stored = w
                    .pods
                    .lock()
                    .map(|mut index| index.set_pod(&namespace, &name, containers))
                    .unwrap_or(false);
                if !stored && !full_warned {
                    full_warned = true;
                    warn!(
                        max = MAX_CONTAINERS,
                        "pod index full: records of new containers are not attributed to their pods"
                    );
                }
                log_recording_pod(&w, &settings, &mut recorded, pod).await;
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(rec) = pod.uid().and_then(|uid| recorded.remove(&uid)) {
                    finish_log_recording(&w, rec, &pod).await;
                }
                leaving.push_back((
                    Instant::now() + w.config.pod_grace,
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                ));
            }
            Ok(watcher::Event::InitDone) => w.endpoints.health.set_ready(true),
            Ok(watcher::Event::Init) => {}
            Err(e) => warn!(error = %e, "pod watch error; retrying"),
        }
    }
}

/// The log recorder on a pod event: a new marked pod starts being recorded (its marks
/// checked against its ProfileRecordings), a recorded pod that ended gets its profiles.
async fn log_recording_pod(
    w: &PodWatch,
    settings: &tokio::sync::watch::Receiver<Settings>,
    recorded: &mut HashMap<String, LogRecorded>,
    pod: Pod,
) {
    let Some(uid) = pod.uid() else { return };
    let finished = crate::recorder::plan::pod_finished(&pod);
    if let Some(rec) = recorded.get_mut(&uid) {
        rec.last = pod.clone();
        if finished && let Some(rec) = recorded.remove(&uid) {
            finish_log_recording(w, rec, &pod).await;
        }
        return;
    }
    if finished {
        return;
    }
    let (seccomp, bad) = crate::recorder::plan::log_seccomp_marks(&pod);
    w.publisher.warn_bad_marks(&pod, &bad).await;
    let (selinux, bad) = crate::recorder::plan::log_selinux_marks(&pod);
    w.publisher.warn_bad_marks(&pod, &bad).await;
    if seccomp.is_empty() && selinux.is_empty() {
        return;
    }
    if settings.borrow().log.is_none() {
        w.publisher
            .warn_pod(
                &pod,
                "RecordingNotPossible",
                "log recording reads the node's audit records, which the SPOD's spec.enricher.enableLogEnricher \
                 switches on; it is off, so this pod's containers are not recorded",
            )
            .await;
        return;
    }
    let mut checked = w
        .publisher
        .checked_marks(
            &pod,
            seccomp,
            spo_model::recording::RecordingKind::SeccompProfile,
            spo_model::recording::Recorder::Logs,
        )
        .await;
    checked.extend(
        w.publisher
            .checked_marks(
                &pod,
                selinux,
                spo_model::recording::RecordingKind::SelinuxProfile,
                spo_model::recording::Recorder::Logs,
            )
            .await,
    );
    if checked.is_empty() {
        return;
    }
    let namespace = pod.namespace().unwrap_or_default();
    {
        let mut r = w.recordings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (mark, _) in &checked {
            r.start((namespace.clone(), pod.name_any(), mark.container.clone()));
        }
    }
    let containers: Vec<String> = checked
        .iter()
        .map(|(m, r)| format!("{} ({})", m.container, r.spec.kind))
        .collect();
    info!(pod = %pod.name_any(), namespace = %namespace, ?containers, "recording from audit logs");
    w.publisher
        .normal_pod(
            &pod,
            "ProfileRecording",
            &format!(
                "recording the profiles of containers {} from the node's audit records",
                containers.join(", ")
            ),
        )
        .await;
    recorded.insert(
        uid,
        LogRecorded {
            marks: checked,
            last: pod,
        },
    );
}

/// How long the log recorder waits at most for the reader to read what was logged before a
/// pod ended (it waits for two reader loops that started after the pod's end).
const CATCH_UP: Duration = Duration::from_secs(5);

/// Writes the profiles of a recorded pod that ended, once the reader has read everything
/// logged until now.
async fn finish_log_recording(w: &PodWatch, rec: LogRecorded, pod: &Pod) {
    let seen = w.polls.load(Ordering::Relaxed);
    let start = Instant::now();
    while w.polls.load(Ordering::Relaxed) < seen + 3 && start.elapsed() < CATCH_UP {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pod = if pod.metadata.deletion_timestamp.is_some() || crate::recorder::plan::pod_finished(pod) {
        pod
    } else {
        &rec.last
    };
    if crate::recorder::plan::ended_by_deletion(pod) {
        w.publisher
            .warn_pod(
                pod,
                "RecordingCutShort",
                "the pod was deleted while it ran: its profiles hold what its containers did until then",
            )
            .await;
    }
    let namespace = pod.namespace().unwrap_or_default();
    let ids = crate::recorder::plan::container_ids(pod);
    // A container marked for both kinds has one entry: taken once, used by both marks.
    let mut taken: HashMap<String, logrec::Calls> = HashMap::new();
    for (mark, recording) in &rec.marks {
        let key = (namespace.clone(), pod.name_any(), mark.container.clone());
        let calls = taken.entry(mark.container.clone()).or_insert_with(|| {
            w.recordings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(&key)
                .unwrap_or_default()
        });
        let id = ids
            .get(&mark.container)
            .and_then(|s| s.iter().next())
            .map(String::as_str);
        let written = if recording.spec.kind == spo_model::recording::RecordingKind::SelinuxProfile {
            match logrec::selinux_recording(&key, id, calls) {
                Ok(observed) => w.publisher.write_selinux(pod, mark, recording, &observed).await,
                Err(why) => Err(why),
            }
        } else {
            match logrec::recording(&key, id, calls) {
                Ok(observed) => w.publisher.write_seccomp(pod, mark, recording, &observed).await,
                Err(why) => Err(why),
            }
        };
        if let Err(why) = written {
            w.publisher.warn_pod(pod, "ProfileNotRecorded", &why).await;
        }
    }
}

fn forget_due(
    leaving: &mut std::collections::VecDeque<(Instant, String, String)>,
    pods: &Mutex<PodIndex>,
    metrics: &Metrics,
    now: Instant,
) {
    while leaving.front().is_some_and(|(due, _, _)| *due <= now) {
        let Some((_, namespace, name)) = leaving.pop_front() else {
            break;
        };
        if let Ok(mut index) = pods.lock() {
            index.remove_pod(&namespace, &name);
        }
        metrics.forget_pod_audits(&namespace, &name);
    }
}

/// Where records come from now.
enum Reader {
    Auditd(LogTail),
    /// The kernel log; `since` is when auditd's log was last looked for (fallback only).
    Kernel {
        log: KernelLog,
        fallback: bool,
        since: Instant,
    },
}

/// Where the JSON enricher writes now.
enum JsonOut {
    Stdout,
    File(RotatingLog),
}

fn open_reader(config: &EnricherConfig, source: SourceChoice) -> Result<Reader, String> {
    if source == SourceChoice::Auditd && config.audit_log.exists() {
        let start = config
            .checkpoint
            .as_deref()
            .and_then(read_checkpoint)
            .map_or(Start::End, Start::Resume);
        let tail = LogTail::open(&config.audit_log, start, MAX_LINE).map_err(|e| e.to_string())?;
        info!(log = %config.audit_log.display(), resumed = matches!(start, Start::Resume(_)), "reading auditd's log");
        return Ok(Reader::Auditd(tail));
    }
    let log =
        KernelLog::open_at_end(&config.kernel_log).map_err(|e| format!("{}: {e}", config.kernel_log.display()))?;
    let fallback = source == SourceChoice::Auditd;
    if fallback {
        warn!(
            missing = %config.audit_log.display(),
            "no auditd log on this node: reading the kernel log (printk rate-limits it)"
        );
    } else {
        info!(log = %config.kernel_log.display(), "reading the kernel log");
    }
    Ok(Reader::Kernel {
        log,
        fallback,
        since: Instant::now(),
    })
}

fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    match Checkpoint::parse(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "checkpoint unreadable; starting at the log's end");
            None
        }
    }
}

fn open_json(target: &JsonTarget) -> Result<JsonOut, String> {
    match target {
        JsonTarget::Stdout => Ok(JsonOut::Stdout),
        JsonTarget::File { path, policy } => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            RotatingLog::new(path.clone(), *policy)
                .map(JsonOut::File)
                .map_err(|e| e.to_string())
        }
    }
}

fn names(arch: spo_model::seccomp::Arch, nr: u32) -> Option<&'static str> {
    spo_seccomp::syscalls::table(arch)?.name(nr)
}

/// The audit metric of a logged record.
fn audit_event(fed: &Fed) -> Option<AuditEvent<'_>> {
    let r = &fed.record;
    let what = if let Some((_, name)) = &r.syscall {
        AuditWhat::Seccomp { syscall: name }
    } else if let Some(avc) = &r.avc {
        AuditWhat::Selinux {
            scontext: &avc.scontext,
            tcontext: &avc.tcontext,
        }
    } else {
        let a = r.apparmor.as_ref()?;
        AuditWhat::AppArmor {
            profile: &a.profile,
            operation: &a.operation,
            apparmor: &a.apparmor,
        }
    };
    Some(AuditEvent {
        node: &r.node,
        namespace: &r.namespace,
        pod: &r.pod,
        container: &r.container,
        what,
    })
}

/// The reader: applies settings, reads, enriches, writes. Runs until `stop`.
/// What the reader shares with the pod watch.
struct Shared {
    pods: Arc<Mutex<PodIndex>>,
    recordings: Arc<Mutex<LogRecordings>>,
    polls: Arc<AtomicU64>,
}

fn read_loop(
    config: &EnricherConfig,
    processes: NodeProcesses,
    shared: &Shared,
    metrics: &Metrics,
    mut settings_rx: tokio::sync::watch::Receiver<Settings>,
    stop: &AtomicBool,
) {
    let mut pipeline = Pipeline::new(config.node.clone(), processes, CacheBounds::NODE, names);
    pipeline.set_hold(config.hold);
    let mut settings = Settings::off();
    let mut reader: Option<Reader> = None;
    let mut json: Option<(JsonOut, Duration)> = None;
    let mut next_flush = Instant::now();
    let mut saved: Option<Checkpoint> = None;
    let mut saved_at = Instant::now();
    let mut reported = (0u64, 0u64, 0u64);
    let mut open_failed: Option<String> = None;
    let stdout = std::io::stdout();
    loop {
        // Loops started: a loop started after an event has read everything logged before it.
        shared.polls.fetch_add(1, Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) {
            let index = shared.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut out = stdout.lock();
            for fed in pipeline.release(&index, Instant::now() + config.hold) {
                print_fed(&mut out, &fed, metrics);
            }
            let _ = out.flush();
            drop(index);
            flush_json(&mut pipeline, json.as_mut().map(|(o, _)| o));
            if let (Some(Reader::Auditd(tail)), Some(path)) = (&reader, &config.checkpoint) {
                save_checkpoint(path, tail, &mut saved);
            }
            return;
        }
        if settings_rx.has_changed().unwrap_or(false) {
            let new = settings_rx.borrow_and_update().clone();
            // The interval's batch goes out before the JSON output changes.
            flush_json(&mut pipeline, json.as_mut().map(|(o, _)| o));
            json = match &new.json {
                Some(j) => match open_json(&j.target) {
                    Ok(out) => Some((out, j.interval)),
                    Err(e) => {
                        error!(error = %e, "JSON enricher output cannot be opened; JSON enricher off");
                        None
                    }
                },
                None => None,
            };
            next_flush = Instant::now() + json.as_ref().map_or(Duration::ZERO, |(_, i)| *i);
            pipeline.set_log(new.log.clone());
            pipeline.set_json(new.json.as_ref().filter(|_| json.is_some()).map(|j| j.filters.clone()));
            if !new.is_on() || new.source != settings.source {
                reader = None;
            }
            settings = new;
        }
        if !settings.is_on() {
            std::thread::sleep(config.poll);
            continue;
        }
        // Reading the kernel log for want of auditd's: switch once auditd's appears.
        if let Some(Reader::Kernel {
            fallback: true, since, ..
        }) = &reader
            && since.elapsed() >= AUDITD_LOOK
        {
            if config.audit_log.exists() {
                reader = None;
            } else if let Some(Reader::Kernel { since, .. }) = &mut reader {
                *since = Instant::now();
            }
        }
        if reader.is_none() {
            match open_reader(config, settings.source) {
                Ok(r) => {
                    reader = Some(r);
                    open_failed = None;
                }
                Err(e) => {
                    if open_failed.as_ref() != Some(&e) {
                        error!(error = %e, "no audit source can be read; retrying");
                        open_failed = Some(e);
                    }
                    std::thread::sleep(config.poll.max(Duration::from_secs(1)));
                    continue;
                }
            }
        }
        let lines = match &mut reader {
            Some(Reader::Auditd(tail)) => match tail.poll() {
                Ok(lines) => lines.into_iter().map(|l| l.text).collect(),
                Err(e) => {
                    error!(error = %e, "auditd's log cannot be read; reopening");
                    reader = None;
                    std::thread::sleep(config.poll.max(Duration::from_secs(1)));
                    continue;
                }
            },
            Some(Reader::Kernel { log, .. }) => log.poll(),
            None => Vec::new(),
        };
        if !lines.is_empty() || pipeline.held() > 0 {
            // A panic elsewhere while holding a lock leaves usable data: read on.
            let index = shared.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut recordings = shared
                .recordings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let recording = !recordings.is_empty();
            let mut out = stdout.lock();
            let released = pipeline.release(&index, Instant::now());
            for fed in released {
                print_fed(&mut out, &fed, metrics);
                if recording {
                    recordings.add(&fed.record);
                }
            }
            for line in &lines {
                if let Some(fed) = pipeline.feed(line, &index) {
                    print_fed(&mut out, &fed, metrics);
                    if recording {
                        recordings.add(&fed.record);
                    }
                }
            }
            let _ = out.flush();
        }
        if let Some((out, interval)) = &mut json {
            if Instant::now() >= next_flush {
                flush_json(&mut pipeline, Some(out));
                next_flush = Instant::now() + *interval;
            } else {
                write_json(pipeline.take_json_ready(), out);
            }
        }
        if let (Some(Reader::Auditd(tail)), Some(path)) = (&reader, &config.checkpoint)
            && saved_at.elapsed() >= CHECKPOINT_EVERY
        {
            save_checkpoint(path, tail, &mut saved);
            saved_at = Instant::now();
        }
        report_losses(&reader, &pipeline, &mut reported);
        if lines.is_empty() {
            std::thread::sleep(config.poll);
        }
    }
}

/// Prints a logged record and counts it.
fn print_fed(out: &mut impl std::io::Write, fed: &Fed, metrics: &Metrics) {
    if let Some(text) = &fed.log_line {
        let _ = writeln!(out, "{text}");
        if let Some(event) = audit_event(fed) {
            metrics.audit(&event);
        }
    }
}

fn flush_json<S: spo_enrich::attribution::ProcessSource>(pipeline: &mut Pipeline<S>, out: Option<&mut JsonOut>) {
    let Some(out) = out else { return };
    write_json(pipeline.flush_json(), out);
}

fn write_json(lines: Vec<String>, out: &mut JsonOut) {
    if lines.is_empty() {
        return;
    }
    match out {
        JsonOut::Stdout => {
            let mut o = std::io::stdout().lock();
            for l in &lines {
                let _ = writeln!(o, "{l}");
            }
            let _ = o.flush();
        }
        JsonOut::File(log) => {
            if let Err(e) = log.write_lines(&lines, SystemTime::now()) {
                error!(error = %e, lines = lines.len(), "writing the JSON enricher's log");
            }
        }
    }
}

fn save_checkpoint(path: &Path, tail: &LogTail, saved: &mut Option<Checkpoint>) {
    let Some(now) = tail.checkpoint() else { return };
    if *saved == Some(now) {
        return;
    }
    match write_file(path, now.to_line().as_bytes(), &WritePolicy::owned_dir(0o600)) {
        Ok(_) => *saved = Some(now),
        Err(e) => warn!(path = %path.display(), error = %e, "saving the enricher's checkpoint"),
    }
}

/// Logs lost and malformed records once per change.
fn report_losses<S: spo_enrich::attribution::ProcessSource>(
    reader: &Option<Reader>,
    pipeline: &Pipeline<S>,
    reported: &mut (u64, u64, u64),
) {
    let gaps = match reader {
        Some(Reader::Auditd(tail)) => tail.stats().gaps,
        Some(Reader::Kernel { log, .. }) => log.missed,
        None => reported.0,
    };
    let stats = pipeline.stats();
    let unknown = pipeline.attributor().unknown;
    if gaps > reported.0 {
        warn!(
            lost = gaps,
            "audit records were lost before they could be read (log rotated away or kernel ring overwritten)"
        );
    }
    if stats.malformed > reported.1 {
        warn!(
            malformed = stats.malformed,
            last = stats.last_malformed.as_deref().unwrap_or_default(),
            "malformed audit records skipped"
        );
    }
    if unknown > reported.2 && unknown.is_power_of_two() {
        info!(
            unknown,
            "records of processes that exited before they were first seen: attributed to the node only"
        );
    }
    *reported = (gaps, stats.malformed, unknown);
}
