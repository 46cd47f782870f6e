//! The node recorder: records the containers of this node's pods that the ProfileRecording
//! webhook marked, and writes what each did as a profile object when its pod ends.
//!
//! Flow, for eBPF recording of seccomp (`io.containers.trace-bpf/<container>`):
//!
//! 1. At start, the recording filter is written to the kubelet's seccomp directory
//!    (`spo-recording/filter.json`, a filter that changes nothing, which the webhook puts marked
//!    containers under) and the eBPF recorder is loaded ([`engine`]).
//! 2. A marked pod appears on this node (watch on `spec.nodeName`): its ProfileRecordings are
//!    checked (they must exist in the pod's namespace, for this kind and recorder: annotations
//!    are writable by whoever creates the pod, and a recording writes cluster-scoped objects),
//!    and the pod's cgroup names are watched before the kubelet starts its containers. Each
//!    container is recorded on its own from the filter its runtime installs, so the profile
//!    holds the runtime's calls after the filter too and lets the container start again.
//! 3. A container of a pod that never restarts containers (`restartPolicy: Never`) exits (its
//!    last tracked process is gone; checked every 100 ms): its profile is written at once,
//!    not a second or more later when the kubelet reports the pod's end. Otherwise:
//!    the pod ends (Succeeded, Failed, or deleted): its containers' recordings are collected,
//!    matched to container names through the container ids in the pod's status (every run of
//!    a restarting container is merged), and written as `SeccompProfile`
//!    `<recording>-<container>[-<replica>]` with upstream's labels, `partial` for
//!    `mergeStrategy: Containers`, `state: Disabled` for `disableProfileAfterRecording`.
//!    Recordings that merge are held with the `has-unmerged-profiles` finalizer from the first
//!    pod on, until the manager merges their partials ([`crate::manager::recordings`]).
//!
//! eBPF recording of AppArmor (`io.containers.trace-bpf-apparmor/<container>`) runs the same
//! way, with two differences: each container is recorded from its exec of the entrypoint in its
//! own mount namespace (where the runtime puts it under its AppArmor profile; no seccomp filter
//! is needed, and the webhook leaves the container's seccomp alone), with the files it opened,
//! the programs it ran, the libraries it mapped, its sockets and the capabilities the kernel
//! asked about; and the profile written is an `AppArmorProfile` (`spo_apparmor`'s recording
//! rules). A pod marked for both kinds is recorded once, from the filter, with resources
//! ([`plan::how_to_record`]). An AppArmor recording that lost file events (the kernel's buffer
//! was full, or the container touched more than 65,536 paths) writes no profile; relative paths
//! the kernel could not resolve are left out with a Warning Event.
//!
//! A profile is never silently incomplete: a container that had started before its pod was
//! watched (the recorder restarted, or the pod came first), one that never installed a filter,
//! or one whose processes could not all be tracked gets a Warning Event on the pod and no
//! profile. A recorded profile is written over an existing object only when that object came
//! from the same recording in the same namespace ([`plan::may_overwrite`]).

#[cfg(feature = "node-recorder")]
pub mod engine;
pub mod plan;
pub mod publish;

#[cfg(feature = "node-recorder")]
pub use run::{RecorderConfig, run};

#[cfg(feature = "node-recorder")]
mod run {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::path::PathBuf;

    use futures::{FutureExt as _, TryStreamExt as _};
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::Api;
    use kube::runtime::{WatchStreamExt, watcher};
    use kube::{Client, ResourceExt};
    use spo_model::ProfileRecording;
    use spo_model::recording::{Recorder as RecorderKind, RecordingKind};
    use spo_record::{ContainerOptions, ContainerStart, RawRecording, WatchId};
    use spo_seccomp::node::DirStore;
    use tracing::{info, warn};

    use super::engine::{Collected, Engine};
    use super::plan::{self, Mark};
    use super::publish::Publisher;
    use crate::error::OperatorError;
    use crate::kubeapi;

    /// How often the recorder looks for containers that exited (pods with
    /// `restartPolicy: Never` only; one pass over the tracked processes).
    const EXIT_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

    /// Where the recorder runs.
    #[derive(Debug, Clone)]
    pub struct RecorderConfig {
        /// This node's name.
        pub node: String,
        /// The kubelet's root directory (the recording filter goes to its `seccomp/`).
        pub kubelet_dir: PathBuf,
        /// The operator's namespace, where the SPOD is.
        pub namespace: String,
        /// The SPOD's name (its `spec.enricher.enableBpfRecorder` switches recording).
        pub spod_name: String,
    }

    /// A pod being recorded.
    struct Recording {
        watches: Vec<WatchId>,
        /// Recorded from the seccomp filter (else from the exec).
        from_filter: bool,
        /// `restartPolicy: Never`: a container that exited is done, and its profile is
        /// written at once instead of when the pod ends.
        never: bool,
        /// Containers whose profiles were written already.
        written: BTreeSet<String>,
        marks: Vec<(Mark, ProfileRecording)>,
        /// Marked containers that had started before the pod was watched.
        early: BTreeSet<String>,
        /// The pod as last seen.
        last: Pod,
        /// Container ids of every run seen, by container name: a pod's status keeps only the
        /// current and the previous run, and a container restarting in a loop has more.
        ids: BTreeMap<String, BTreeSet<String>>,
    }

    impl Recording {
        /// Takes `pod` as the last seen, adding its container ids.
        fn update(&mut self, pod: Pod) {
            for (name, ids) in plan::container_ids(&pod) {
                self.ids.entry(name).or_default().extend(ids);
            }
            self.last = pod;
        }
    }

    struct Ctx {
        engine: Engine,
        publisher: Publisher,
    }

    /// Runs until `shutdown`.
    ///
    /// Records only while the SPOD's `spec.enricher.enableBpfRecorder` is true, as upstream's
    /// switch: the BPF programs are loaded when it is set and unloaded when it is unset (pods
    /// being recorded then get a Warning Event and no profile).
    pub async fn run(
        client: Client,
        config: RecorderConfig,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), OperatorError> {
        let shutdown = shutdown.boxed().shared();
        let (mut enabled, spod_task) =
            kubeapi::follow_spod(client.clone(), &config.namespace, &config.spod_name, false, |spod| {
                Some(spod.is_some_and(plan::bpf_recorder_enabled))
            });
        let result = async {
            loop {
                info!(
                    spod = %format!("{}/{}", config.namespace, config.spod_name),
                    "waiting for spec.enricher.enableBpfRecorder"
                );
                tokio::select! {
                    () = shutdown.clone() => return Ok(()),
                    on = enabled.wait_for(|on| *on) => {
                        if on.is_err() {
                            return Err(OperatorError::WatchEnded { kind: "SecurityProfilesOperatorDaemon" });
                        }
                    }
                }
                let mut off = enabled.clone();
                let disabled = async move {
                    let _ = off.wait_for(|on| !*on).await;
                };
                if !record(&client, &config, shutdown.clone(), disabled).await? {
                    return Ok(());
                }
                info!("enableBpfRecorder was unset: the eBPF recorder is unloaded");
            }
        }
        .await;
        spod_task.abort();
        result
    }

    /// Records until `shutdown` (returns `false`) or `disabled` (returns `true`).
    async fn record(
        client: &Client,
        config: &RecorderConfig,
        shutdown: impl std::future::Future<Output = ()>,
        disabled: impl std::future::Future<Output = ()>,
    ) -> Result<bool, OperatorError> {
        let client = client.clone();
        let store = DirStore::for_kubelet_dir(&config.kubelet_dir);
        let filter = tokio::task::spawn_blocking(move || store.install_recording_filter())
            .await
            .map_err(|source| OperatorError::Join {
                name: "the recording filter".into(),
                source,
            })?
            .map_err(|source| OperatorError::Node {
                operation: "installing the recording filter",
                name: config.kubelet_dir.display().to_string(),
                source: Box::new(source),
            })?;
        info!(path = %filter.display(), "recording filter installed");
        let engine = tokio::task::spawn_blocking(Engine::start)
            .await
            .map_err(|source| OperatorError::Join {
                name: "the eBPF recorder".into(),
                source,
            })?
            .map_err(|source| OperatorError::Node {
                operation: "loading the eBPF recorder",
                name: config.node.clone(),
                source: Box::new(source),
            })?;
        info!(node = %config.node, "eBPF recorder loaded; watching this node's pods");
        let ctx = Ctx {
            engine,
            publisher: Publisher::new(client.clone(), "spo-recorder", &config.node),
        };
        let pods: Api<Pod> = Api::all(client);
        let stream = watcher(
            pods,
            watcher::Config::default().fields(&format!("spec.nodeName={}", config.node)),
        )
        .default_backoff();
        let mut recording: HashMap<String, Recording> = HashMap::new();
        let mut stream = std::pin::pin!(stream);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut disabled = std::pin::pin!(disabled);
        let mut exits = tokio::time::interval(EXIT_CHECK);
        exits.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let event = tokio::select! {
                () = &mut shutdown => return Ok(false),
                () = &mut disabled => {
                    for rec in recording.values() {
                        ctx.publisher.warn_pod(&rec.last,
                            "RecordingStopped",
                            "the eBPF recorder was disabled (SPOD spec.enricher.enableBpfRecorder) while this pod \
                             was recorded; no profile is written",
                        )
                        .await;
                    }
                    return Ok(true);
                }
                event = stream.try_next() => event,
                _ = exits.tick() => {
                    collect_exited(&ctx, &mut recording).await;
                    continue;
                }
            };
            let event = match event {
                Ok(Some(event)) => event,
                Ok(None) => return Err(OperatorError::WatchEnded { kind: "Pod" }),
                Err(e) => {
                    warn!(error = %e, "pod watch error; retrying");
                    continue;
                }
            };
            match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                    on_pod(&ctx, &mut recording, pod).await;
                }
                watcher::Event::Delete(pod) => {
                    if let Some(rec) = pod.uid().and_then(|uid| recording.remove(&uid)) {
                        collect(&ctx, rec, &pod).await;
                    }
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    }

    async fn on_pod(ctx: &Ctx, recording: &mut HashMap<String, Recording>, pod: Pod) {
        let Some(uid) = pod.uid() else { return };
        if let Some(rec) = recording.get_mut(&uid) {
            if plan::pod_finished(&pod) {
                if let Some(rec) = recording.remove(&uid) {
                    collect(ctx, rec, &pod).await;
                }
            } else {
                rec.update(pod);
            }
            return;
        }
        if plan::pod_finished(&pod) {
            return;
        }
        let (seccomp, bad) = plan::bpf_seccomp_marks(&pod);
        ctx.publisher.warn_bad_marks(&pod, &bad).await;
        let (apparmor, bad) = plan::bpf_apparmor_marks(&pod);
        ctx.publisher.warn_bad_marks(&pod, &bad).await;
        if seccomp.is_empty() && apparmor.is_empty() {
            return;
        }
        let mut checked = ctx
            .publisher
            .checked_marks(&pod, seccomp, RecordingKind::SeccompProfile, RecorderKind::Bpf)
            .await;
        checked.extend(
            ctx.publisher
                .checked_marks(&pod, apparmor, RecordingKind::AppArmorProfile, RecorderKind::Bpf)
                .await,
        );
        let records = |kind| checked.iter().any(|(_, r)| r.spec.kind == kind);
        let Some(how) = plan::how_to_record(
            records(RecordingKind::SeccompProfile),
            records(RecordingKind::AppArmorProfile),
        ) else {
            return;
        };
        let namespace = pod.namespace().unwrap_or_default();
        let names = plan::pod_cgroup_names(&uid);
        if names.is_empty() {
            ctx.publisher
                .warn_pod(
                    &pod,
                    "RecordingFailed",
                    "the pod's uid is not a UUID: its cgroup cannot be found",
                )
                .await;
            return;
        }
        let options = ContainerOptions {
            start: if how.from_filter {
                ContainerStart::SeccompFilter
            } else {
                ContainerStart::Exec
            },
            resources: how.resources,
        };
        let watches = match ctx.engine.watch(names, options).await {
            Ok(w) => w,
            Err(e) => {
                ctx.publisher
                    .warn_pod(&pod, "RecordingFailed", &format!("watching the pod's cgroup: {e}"))
                    .await;
                return;
            }
        };
        let early = plan::started_before_watch(&pod);
        let containers: Vec<String> = checked
            .iter()
            .map(|(m, r)| format!("{} ({})", m.container, r.spec.kind))
            .collect();
        info!(pod = %pod.name_any(), namespace = %namespace, ?containers, "recording");
        ctx.publisher
            .normal_pod(
                &pod,
                "ProfileRecording",
                &format!("recording the profiles of containers {}", containers.join(", ")),
            )
            .await;
        recording.insert(
            uid,
            Recording {
                watches,
                from_filter: how.from_filter,
                never: pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never"),
                written: BTreeSet::new(),
                marks: checked,
                early,
                ids: plan::container_ids(&pod),
                last: pod,
            },
        );
    }

    /// Writes the profiles of marked containers that exited in pods that never restart them,
    /// without waiting for the kubelet to report the pod's end (which takes a second or more
    /// after the last container exits).
    async fn collect_exited(ctx: &Ctx, recording: &mut HashMap<String, Recording>) {
        if !recording.values().any(|r| r.never) {
            return;
        }
        let exited = match ctx.engine.exited().await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "looking for exited containers failed");
                return;
            }
        };
        for (watch, cgroup) in exited {
            let Some(rec) = recording.values_mut().find(|r| r.never && r.watches.contains(&watch)) else {
                continue;
            };
            let id = plan::container_id_of_cgroup(&cgroup);
            let Some(container) = rec
                .ids
                .iter()
                .find(|(_, ids)| ids.contains(id))
                .map(|(name, _)| name.clone())
            else {
                // The kubelet has not reported this container's id yet (or it is the pod's
                // sandbox): looked at again on the next pod update or at the pod's end.
                continue;
            };
            let collected = match ctx.engine.collect_one(watch, cgroup).await {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    ctx.publisher
                        .warn_pod(
                            &rec.last,
                            "RecordingFailed",
                            &format!("collecting container {container:?}: {e}"),
                        )
                        .await;
                    continue;
                }
            };
            if rec.written.contains(&container) {
                continue;
            }
            rec.written.insert(container.clone());
            let rec: &Recording = rec;
            for (mark, profile_recording) in rec.marks.iter().filter(|(m, _)| m.container == container) {
                if let Err(why) = write_profile(
                    ctx,
                    &rec.last,
                    rec,
                    mark,
                    profile_recording,
                    std::slice::from_ref(&collected),
                )
                .await
                {
                    ctx.publisher.warn_pod(&rec.last, "ProfileNotRecorded", &why).await;
                }
            }
        }
    }

    /// Collects the recordings of a pod that ended and writes its profiles.
    async fn collect(ctx: &Ctx, mut rec: Recording, pod: &Pod) {
        let collected = match ctx.engine.collect(rec.watches.clone()).await {
            Ok(c) => c,
            Err(e) => {
                ctx.publisher
                    .warn_pod(pod, "RecordingFailed", &format!("collecting the recordings: {e}"))
                    .await;
                return;
            }
        };
        rec.update(pod.clone());
        if plan::ended_by_deletion(pod) {
            // Deleted while running: the profile holds what the containers did until then, and
            // the pod says so (a profile cut short is never silent).
            ctx.publisher
                .warn_pod(
                    pod,
                    "RecordingCutShort",
                    "the pod was deleted while it ran: its profiles hold what its containers did until then",
                )
                .await;
        }
        for (mark, recording) in rec.marks.iter().filter(|(m, _)| !rec.written.contains(&m.container)) {
            if let Err(why) = write_profile(ctx, pod, &rec, mark, recording, &collected).await {
                ctx.publisher.warn_pod(pod, "ProfileNotRecorded", &why).await;
            }
        }
    }

    async fn write_profile(
        ctx: &Ctx,
        pod: &Pod,
        rec: &Recording,
        mark: &Mark,
        recording: &ProfileRecording,
        collected: &[Collected],
    ) -> Result<(), String> {
        let container = &mark.container;
        if rec.early.contains(container) {
            return Err(format!(
                "container {container:?} had started before the recorder watched its pod, so its start was not \
                 recorded; no profile is written (recreate the pod to record it)"
            ));
        }
        let own: BTreeSet<&str> = rec
            .ids
            .get(container)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let runs: Vec<&RawRecording> = collected
            .iter()
            .filter(|c| own.contains(plan::container_id_of_cgroup(&c.cgroup)))
            .map(|c| &c.recording)
            .collect();
        if runs.is_empty() {
            return Err(format!(
                "container {container:?} was not seen running; no profile is written"
            ));
        }
        let apparmor = recording.spec.kind == RecordingKind::AppArmorProfile;
        if runs.iter().any(|r| r.filter_starts == 0) {
            return Err(if rec.from_filter {
                format!(
                    "container {container:?} never installed a seccomp filter, so nothing was recorded (is its \
                     seccompProfile still {}?); no profile is written",
                    spo_seccomp::node::RECORDING_FILTER_PROFILE
                )
            } else {
                format!(
                    "container {container:?} never exec'd its entrypoint in its own mount namespace, so nothing \
                     was recorded; no profile is written"
                )
            });
        }
        let untracked: u64 = runs.iter().map(|r| r.untracked_processes).sum();
        if untracked > 0 {
            return Err(format!(
                "{untracked} processes of container {container:?} could not be tracked (the recorder's process \
                 table was full); the recording is incomplete and no profile is written"
            ));
        }
        let merged = merge_runs(runs[0], &runs[1..]);
        if apparmor && merged.lost_events > 0 {
            return Err(format!(
                "{} file and program events of container {container:?} were lost (the kernel's buffer was full, or \
                 the recording held 65,536 paths); the AppArmor profile would be incomplete and is not written",
                merged.lost_events
            ));
        }
        let mut named = spo_record::into_recording(&merged, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
        if apparmor {
            if merged.unresolved_paths > 0 {
                ctx.publisher
                    .warn_pod(
                        pod,
                        "RecordingIncomplete",
                        &format!(
                            "{} relative paths opened by container {container:?} could not be resolved and are not \
                             in its AppArmor profile",
                            merged.unresolved_paths
                        ),
                    )
                    .await;
            }
            return ctx
                .publisher
                .write_apparmor(pod, mark, recording, &named.recording)
                .await;
        }
        // runc's own calls after the filter vary with its scheduler: one recording may miss one
        // the next start needs (the demo's replay failed one run in three without this).
        spo_seccomp::backend::add_runtime_allowance(&mut named.recording);
        if !named.unnamed.is_empty() {
            return Err(format!(
                "container {container:?} made syscalls this operator cannot name ({:?}); a profile would block them, \
                 so none is written",
                named.unnamed
            ));
        }
        ctx.publisher
            .write_seccomp(pod, mark, recording, &named.recording)
            .await
    }

    /// Every run of one container as one recording: the union of what each did, and the sum
    /// of what each lost.
    fn merge_runs(first: &RawRecording, rest: &[&RawRecording]) -> RawRecording {
        let mut merged = first.clone();
        for run in rest {
            for (arch, numbers) in &run.syscalls {
                merged.syscalls.entry(*arch).or_default().extend(numbers);
            }
            for (path, access) in &run.files {
                let entry = merged.files.entry(path.clone()).or_default();
                *entry = entry.union(*access);
            }
            merged.executables.extend(run.executables.iter().cloned());
            merged.mapped.extend(run.mapped.iter().cloned());
            merged.sockets.extend(run.sockets.iter().copied());
            for (cap, allowed) in &run.capabilities {
                *merged.capabilities.entry(*cap).or_default() |= *allowed;
            }
            merged.unresolved_paths += run.unresolved_paths;
            merged.lost_events += run.lost_events;
            merged.untracked_processes += run.untracked_processes;
        }
        merged
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use spo_model::observed::FileAccess;

        fn run(files: &[(&str, FileAccess)], caps: &[(u32, bool)], lost: u64) -> RawRecording {
            RawRecording {
                subject: spo_record::Subject::Container {
                    parent: "pod".into(),
                    cgroup: "c".into(),
                },
                syscalls: BTreeMap::new(),
                untracked_processes: 0,
                out_of_range_syscalls: 0,
                filter_starts: 1,
                files: files.iter().map(|(p, a)| ((*p).to_owned(), *a)).collect(),
                executables: BTreeSet::from(["/bin/sh".to_owned()]),
                mapped: BTreeSet::new(),
                unresolved_paths: 1,
                sockets: BTreeSet::new(),
                capabilities: caps.iter().copied().collect(),
                unaudited_capability_checks: 0,
                unclassified_capability_checks: 0,
                lost_events: lost,
                skipped_runs: 0,
                attach_time: std::time::Duration::ZERO,
            }
        }

        #[test]
        fn every_run_of_a_container_is_in_its_recording() {
            let read = FileAccess {
                read: true,
                ..FileAccess::default()
            };
            let write = FileAccess {
                write: true,
                ..FileAccess::default()
            };
            let first = run(&[("/etc/a", read), ("/data", read)], &[(1, false)], 0);
            let second = run(&[("/data", write)], &[(1, true), (2, false)], 3);
            let merged = merge_runs(&first, &[&second]);
            assert_eq!(merged.files["/etc/a"], read);
            assert!(
                merged.files["/data"].read && merged.files["/data"].write,
                "{:?}",
                merged.files
            );
            // A capability some run was allowed is allowed; one never allowed stays refused.
            assert_eq!(merged.capabilities, BTreeMap::from([(1, true), (2, false)]));
            assert_eq!(merged.lost_events, 3, "what any run lost is lost");
            assert_eq!(merged.unresolved_paths, 2);
            assert_eq!(merge_runs(&first, &[]), first);
        }
    }
}
