//! Writing what a node recorder recorded, whichever recorder it was (the eBPF recorder's
//! [`super::run`], the log recorder of [`crate::enricher`]): the checks of a pod's recording
//! marks against the ProfileRecordings they name, the `has-unmerged-profiles` hold for merging
//! recordings, the profile object (named, labelled and partial as upstream, overwritten only
//! when it came from the same recording), and the pod's Events saying what happened.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use spo_apparmor::backend::AppArmorBackend;
use spo_model::contract::{ProfileBackend, SecurityProfile};
use spo_model::names::FINALIZER_HAS_UNMERGED_PROFILES;
use spo_model::observed::Recording as Observed;
use spo_model::recording::{MergeStrategy, Recorder as RecorderKind, RecordingKind};
use spo_model::{ProfileRecording, SpecState};
use spo_seccomp::backend::SeccompBackend;
use spo_selinux::backend::SelinuxBackend;
use tracing::{info, warn};

use super::plan::{self, Mark, Overwrite};
use crate::error::OperatorError;
use crate::kubeapi;

/// Writes recorded profiles and says so on pods.
pub struct Publisher {
    /// The API client.
    pub client: Client,
    events: Recorder,
    seccomp: SeccompBackend,
    apparmor: AppArmorBackend,
    selinux: SelinuxBackend,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher reporting as `controller` on `node`.
    pub fn new(client: Client, controller: &str, node: &str) -> Publisher {
        Publisher {
            events: Recorder::new(
                client.clone(),
                Reporter {
                    controller: controller.into(),
                    instance: Some(node.to_owned()),
                },
            ),
            client,
            seccomp: SeccompBackend::default(),
            apparmor: AppArmorBackend::default(),
            selinux: SelinuxBackend::default(),
        }
    }

    /// A Warning Event on `pod` (and the log).
    pub async fn warn_pod(&self, pod: &Pod, reason: &str, note: &str) {
        warn!(pod = %pod.name_any(), namespace = ?pod.namespace(), reason, note);
        self.publish(pod, EventType::Warning, reason, note).await;
    }

    /// A Normal Event on `pod`.
    pub async fn normal_pod(&self, pod: &Pod, reason: &str, note: &str) {
        self.publish(pod, EventType::Normal, reason, note).await;
    }

    async fn publish(&self, pod: &Pod, type_: EventType, reason: &str, note: &str) {
        kubeapi::publish_event(&self.events, &pod.object_ref(&()), type_, reason, "Record", note).await;
    }

    /// A Warning Event on `pod` for each recording annotation that cannot be used.
    pub async fn warn_bad_marks(&self, pod: &Pod, bad: &[plan::BadMark]) {
        for b in bad {
            self.warn_pod(
                pod,
                "RecordingAnnotationInvalid",
                &format!("annotation {}: {}", b.key, b.why),
            )
            .await;
        }
    }

    /// The marks of `pod` whose ProfileRecordings exist in the pod's namespace and record
    /// `kind` with `recorder` (annotations are writable by whoever creates the pod,
    /// and a recording writes cluster-scoped objects), each with its recording; the others get
    /// a Warning Event. Recordings that merge are held for the merge from their first pod on.
    pub async fn checked_marks(
        &self,
        pod: &Pod,
        marks: Vec<Mark>,
        kind: RecordingKind,
        recorder: RecorderKind,
    ) -> Vec<(Mark, ProfileRecording)> {
        let namespace = pod.namespace().unwrap_or_default();
        let recordings: Api<ProfileRecording> = Api::namespaced(self.client.clone(), &namespace);
        let mut checked = Vec::new();
        for mark in marks {
            match recordings.get_opt(&mark.recording).await {
                Ok(Some(r)) if r.spec.kind == kind && r.spec.recorder == recorder => {
                    checked.push((mark, r));
                }
                Ok(Some(_)) => {
                    self.warn_pod(
                        pod,
                        "RecordingMismatch",
                        &format!(
                            "ProfileRecording {namespace}/{} does not record {kind}s with {recorder:?}; container {:?} is not recorded",
                            mark.recording, mark.container
                        ),
                    )
                    .await;
                }
                Ok(None) => {
                    self.warn_pod(
                        pod,
                        "RecordingNotFound",
                        &format!(
                            "no ProfileRecording {namespace}/{} exists; container {:?} is not recorded",
                            mark.recording, mark.container
                        ),
                    )
                    .await;
                }
                Err(e) => {
                    self.warn_pod(
                        pod,
                        "RecordingUnreadable",
                        &format!("reading ProfileRecording {namespace}/{}: {e}", mark.recording),
                    )
                    .await;
                }
            }
        }
        // Partial profiles are merged by the manager once the recording's pods are gone and
        // when it is deleted: the recording is held until that last merge.
        for (_, r) in &checked {
            if r.spec.merge_strategy == MergeStrategy::Containers
                && let Err(e) = hold_for_merge(&recordings, r).await
            {
                self.warn_pod(
                    pod,
                    "RecordingFailed",
                    &format!(
                        "holding ProfileRecording {namespace}/{} for the merge: {e}",
                        r.name_any()
                    ),
                )
                .await;
            }
        }
        checked
    }

    /// Writes the SeccompProfile recorded from `mark`'s container of `pod` for `recording`.
    pub async fn write_seccomp(
        &self,
        pod: &Pod,
        mark: &Mark,
        recording: &ProfileRecording,
        recorded: &Observed,
    ) -> Result<(), String> {
        let count: usize = recorded.syscalls.values().map(BTreeSet::len).sum();
        self.write_recorded(
            &self.seccomp,
            pod,
            mark,
            recording,
            recorded,
            &format!("{count} syscalls"),
        )
        .await
    }

    /// Writes the SelinuxProfile recorded (from its AVC denials) from `mark`'s container of
    /// `pod` for `recording`.
    pub async fn write_selinux(
        &self,
        pod: &Pod,
        mark: &Mark,
        recording: &ProfileRecording,
        recorded: &Observed,
    ) -> Result<(), String> {
        let summary = format!("{} denials", recorded.avc_denials.len());
        self.write_recorded(&self.selinux, pod, mark, recording, recorded, &summary)
            .await
    }

    /// Writes the AppArmorProfile recorded from `mark`'s container of `pod` for `recording`.
    pub async fn write_apparmor(
        &self,
        pod: &Pod,
        mark: &Mark,
        recording: &ProfileRecording,
        recorded: &Observed,
    ) -> Result<(), String> {
        let summary = format!(
            "{} programs, {} libraries, {} files, {} sockets, {} capabilities",
            recorded.executables.len(),
            recorded.libraries.len(),
            recorded.files.len(),
            recorded.sockets.len(),
            recorded.capabilities.values().filter(|allowed| **allowed).count()
        );
        self.write_recorded(&self.apparmor, pod, mark, recording, recorded, &summary)
            .await
    }

    /// Writes the profile `backend` builds from what `mark`'s container of `pod` did, for
    /// `recording`: named and labelled as upstream, partial while the recording merges, and
    /// written over an existing object only when that came from the same recording.
    async fn write_recorded<B>(
        &self,
        backend: &B,
        pod: &Pod,
        mark: &Mark,
        recording: &ProfileRecording,
        recorded: &Observed,
        summary: &str,
    ) -> Result<(), String>
    where
        B: ProfileBackend,
        B::Profile: SecurityProfile + Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>,
    {
        let kind = <B::Profile as SecurityProfile>::KIND.kind_name();
        let container = &mark.container;
        let namespace = pod.namespace().unwrap_or_default();
        let name = plan::profile_name(mark, &pod.name_any(), pod.meta().generate_name.as_deref()).map_err(|p| p.0)?;
        let mut profile = backend
            .profile_from_recording(&name, recorded)
            .map_err(|e| format!("building the {kind} of container {container:?}: {e}"))?;
        // A partial profile is merged when its recording is deleted; when that happened while
        // this pod ran, nothing would merge it, so the replica's profile is written whole.
        let mut partial = recording.spec.merge_strategy == MergeStrategy::Containers;
        if partial {
            let api: Api<ProfileRecording> = Api::namespaced(self.client.clone(), &namespace);
            let live = api
                .get_opt(&recording.name_any())
                .await
                .map_err(|e| format!("reading ProfileRecording {namespace}/{}: {e}", recording.name_any()))?;
            if live.is_none_or(|r| r.metadata.deletion_timestamp.is_some()) {
                partial = false;
                self.warn_pod(
                    pod,
                    "RecordingDeleted",
                    &format!(
                        "ProfileRecording {namespace}/{} was deleted before this pod ended, so its profiles were \
                         merged without this replica; the replica's profile {name} is written whole, not partial",
                        recording.name_any()
                    ),
                )
                .await;
            }
        }
        if recording.spec.disable_profile_after_recording == Some(true) {
            profile.set_spec_state(SpecState::Disabled);
        }
        *profile.meta_mut() = ObjectMeta {
            name: Some(name.clone()),
            labels: Some(plan::profile_labels(mark, &namespace, partial)),
            ..ObjectMeta::default()
        };
        let api: Api<B::Profile> = Api::all(self.client.clone());
        let existing = api
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading {kind} {name}: {e}"))?;
        match plan::may_overwrite(existing.as_ref().map(ResourceExt::labels), mark, &namespace) {
            Overwrite::Create => {
                api.create(&PostParams::default(), &profile)
                    .await
                    .map_err(|e| format!("creating {kind} {name}: {e}"))?;
            }
            Overwrite::Replace => {
                if let Some(existing) = &existing {
                    kubeapi::carry_over_for_replace(profile.meta_mut(), SecurityProfile::meta(existing));
                }
                api.replace(&name, &PostParams::default(), &profile)
                    .await
                    .map_err(|e| format!("replacing {kind} {name}: {e}"))?;
            }
            Overwrite::Refuse(why) => {
                return Err(format!("{kind} {name} exists and is left alone: {why}"));
            }
        }
        info!(kind, profile = %name, container = %container, summary, "recorded profile written");
        self.normal_pod(
            pod,
            "ProfileRecorded",
            &format!("{kind} {name} recorded from container {container:?} ({summary})"),
        )
        .await;
        Ok(())
    }
}

/// Puts the `has-unmerged-profiles` finalizer on a recording that merges per-replica
/// profiles (retried on conflicts; nothing to do when it is there or the recording is
/// being deleted, when no finalizer may be added).
async fn hold_for_merge(api: &Api<ProfileRecording>, recording: &ProfileRecording) -> Result<(), OperatorError> {
    let name = recording.name_any();
    let mut current = recording.clone();
    for _ in 0..5 {
        if current.metadata.deletion_timestamp.is_some()
            || current
                .finalizers()
                .iter()
                .any(|f| f == FINALIZER_HAS_UNMERGED_PROFILES)
        {
            return Ok(());
        }
        let mut finalizers = current.finalizers().to_vec();
        finalizers.push(FINALIZER_HAS_UNMERGED_PROFILES.to_owned());
        let version = current.resource_version().unwrap_or_default();
        match kubeapi::replace_finalizers_in(api, &name, &version, &finalizers).await {
            Err(e) if e.is_conflict() => match api.get_opt(&name).await {
                Ok(Some(newer)) => current = newer,
                Ok(None) => return Ok(()),
                Err(e) => return Err(OperatorError::api("reading", "ProfileRecording", &name, e)),
            },
            done => return done,
        }
    }
    Ok(())
}
