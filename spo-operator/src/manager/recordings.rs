//! Merging recorded profiles: a ProfileRecording with `mergeStrategy: Containers` gets one
//! partial profile (SeccompProfile or AppArmorProfile) per recorded replica of each container
//! (written by the node recorder, labelled `spo.x-k8s.io/partial`, never installed). Once every
//! pod of the recording has ended, and again when the recording is deleted, the manager merges
//! the partials of each container into `<recording>-<container>` (folding them into what an
//! earlier merge wrote there), with the `spo.x-k8s.io/syscall-coverage` annotation saying how
//! many replicas made each call, deletes the partials, and at deletion releases the
//! recording's `spo.x-k8s.io/has-unmerged-profiles` finalizer (which the recorder set when it
//! started recording for it). Upstream merges at deletion only.
//!
//! It also keeps each recording's `status.activeWorkloads`: the running pods marked for it
//! (`namespace/pod`), from the manager's pod index (the recording marks the webhook wrote), so
//! users see which pods are being recorded.
//!
//! Where upstream is silent or worse: a merged profile never replaces an object that another
//! recording (or a person) made (the partials of that container stay, and a Warning Event on
//! the recording says so); a container's partials are deleted only after its merged profile is
//! written; and the finalizer is released even when nothing could be merged, so a recording is
//! never stuck in deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::ClusterResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use spo_model::apparmor::AppArmorProfile;
use spo_model::contract::SecurityProfile;
use spo_model::names::{
    ANNOTATION_TRACE_AVCS, ANNOTATION_TRACE_BPF, ANNOTATION_TRACE_BPF_APPARMOR, ANNOTATION_TRACE_LOGS,
    FINALIZER_HAS_UNMERGED_PROFILES, LABEL_CONTAINER_ID, LABEL_PARTIAL, LABEL_RECORDING_ID, LABEL_RECORDING_NAMESPACE,
};
use spo_model::recording::{MergeStrategy, RecordingKind};
use spo_model::{ProfileRecording, SeccompProfile, SpecState};
use tracing::{debug, info};

use super::{Ctx, lock};
use crate::error::OperatorError;
use crate::kubeapi;
use crate::recorder::plan::{Mark, Overwrite, may_overwrite, profile_name};
use crate::workloads::is_active;

/// The annotation of a merged profile: per syscall, how many of the merged partial profiles
/// (recorded replicas) made it. Upstream's name and schema (`version`, `total`, `syscalls`);
/// informational, never part of what is enforced.
pub const COVERAGE_ANNOTATION: &str = "spo.x-k8s.io/syscall-coverage";

/// The annotation of a merged profile naming the partial profiles it took in that may still
/// exist (comma-separated): their deletion follows the write, and a partial listed here is
/// never counted again if it outlives the write (a failed delete, a manager restarted between
/// the two, a partial held by finalizers). Names drop out once their partial is gone.
pub const MERGED_PARTIALS_ANNOTATION: &str = "spo.x-k8s.io/merged-partials";

/// The prefix of recording index keys.
pub const KEY_PREFIX: &str = "ProfileRecording/";

/// The pod annotation prefixes of recording marks (every recorder and kind).
const MARK_PREFIXES: [&str; 4] = [
    ANNOTATION_TRACE_BPF,
    ANNOTATION_TRACE_LOGS,
    ANNOTATION_TRACE_BPF_APPARMOR,
    ANNOTATION_TRACE_AVCS,
];

/// The index key of recording `name` in `namespace`.
pub fn recording_key(namespace: &str, name: &str) -> String {
    format!("{KEY_PREFIX}{namespace}/{name}")
}

/// The recordings a running pod is marked for, as index keys (pure). A mark's value is
/// `<recording>_<container>_<nonce>_<unixtime>`; recording names never hold `_`.
pub fn recordings_of(pod: &Pod) -> Vec<String> {
    if !is_active(pod) {
        return Vec::new();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return Vec::new();
    };
    annotations
        .iter()
        .filter(|(k, _)| MARK_PREFIXES.iter().any(|p| k.starts_with(p)))
        .filter_map(|(_, v)| v.split_once('_').map(|(name, _)| name))
        .filter(|name| !name.is_empty())
        .map(|name| recording_key(ns, name))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `status.activeWorkloads` for a recording from the pods marked for it, when it differs from
/// what the recording says (`None`: nothing to write). Sorted.
pub fn plan_status<'a>(recording: &ProfileRecording, pods: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
    let mut want: Vec<String> = pods.into_iter().map(str::to_owned).collect();
    want.sort();
    want.dedup();
    let current = recording
        .status
        .as_ref()
        .and_then(|s| s.active_workloads.clone())
        .unwrap_or_default();
    (current != want).then_some(want)
}

/// A profile kind whose recorded partial profiles the manager merges.
pub trait MergeKind: SecurityProfile + Resource<DynamicType = (), Scope = ClusterResourceScope> {
    /// The union of `partials` (at least one, in name order): a profile that allows what any
    /// of them allows, or why there is none.
    fn union(partials: &[&Self]) -> Result<Self, String>;
    /// Annotations the merged profile carries about its partials.
    fn merge_annotations(_partials: &[&Self]) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// The annotations of `earlier` (the container's merged profile from an earlier merge of
    /// the same recording) folded together with those of `merged` (the new partials' merge).
    fn fold_annotations(_earlier: &Self, _merged: &Self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

impl MergeKind for SeccompProfile {
    fn union(partials: &[&Self]) -> Result<Self, String> {
        let specs: Vec<_> = partials.iter().map(|p| p.spec.clone()).collect();
        let spec = spo_seccomp::merge::union_all(&specs).ok_or_else(|| "no partial profiles".to_owned())?;
        Ok(SeccompProfile {
            metadata: ObjectMeta::default(),
            spec,
            status: None,
        })
    }

    /// Upstream's `spo.x-k8s.io/syscall-coverage`.
    fn merge_annotations(partials: &[&Self]) -> BTreeMap<String, String> {
        BTreeMap::from([(COVERAGE_ANNOTATION.to_owned(), coverage(partials))])
    }

    /// The coverage counts added up: the earlier merge's replicas and the new ones.
    fn fold_annotations(earlier: &Self, merged: &Self) -> BTreeMap<String, String> {
        // No readable coverage (written by hand, or before coverage existed): the earlier
        // profile counts as one replica.
        let earlier_counts = coverage_counts(earlier.annotations().get(COVERAGE_ANNOTATION).map(String::as_str))
            .unwrap_or_else(|| coverage_of(&[earlier]));
        let merged_counts =
            coverage_counts(merged.annotations().get(COVERAGE_ANNOTATION).map(String::as_str)).unwrap_or_default();
        let mut syscalls = earlier_counts.1;
        for (name, count) in merged_counts.1 {
            *syscalls.entry(name).or_default() += count;
        }
        let value = json!({"version": "v1", "total": earlier_counts.0 + merged_counts.0, "syscalls": syscalls});
        BTreeMap::from([(COVERAGE_ANNOTATION.to_owned(), value.to_string())])
    }
}

/// The replica total and per-syscall counts of a coverage annotation (`None`: missing or not
/// the `v1` shape).
fn coverage_counts(annotation: Option<&str>) -> Option<(u64, BTreeMap<String, u64>)> {
    let value: serde_json::Value = serde_json::from_str(annotation?).ok()?;
    if value.get("version")?.as_str()? != "v1" {
        return None;
    }
    let total = value.get("total")?.as_u64()?;
    let syscalls = value
        .get("syscalls")?
        .as_object()?
        .iter()
        .map(|(name, count)| Some((name.clone(), count.as_u64()?)))
        .collect::<Option<BTreeMap<_, _>>>()?;
    Some((total, syscalls))
}

impl MergeKind for AppArmorProfile {
    fn union(partials: &[&Self]) -> Result<Self, String> {
        let (first, rest) = partials.split_first().ok_or_else(|| "no partial profiles".to_owned())?;
        let mut merged = (*first).clone();
        for p in rest {
            merged = spo_apparmor::merge::merge_profiles(&merged, p)
                .map_err(|e| format!("merging AppArmorProfile {}: {e}", p.name_any()))?;
        }
        merged.status = None;
        Ok(merged)
    }
}

/// One container's merged profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged<P> {
    /// The container's name.
    pub container: String,
    /// The merged profile, with its name, labels and annotations.
    pub profile: P,
    /// The partial profiles it was merged from (to delete once it is written).
    pub partials: Vec<String>,
}

/// What merging a recording's partial profiles comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct MergePlan<P> {
    /// One profile per container with partials not merged yet.
    pub merged: Vec<Merged<P>>,
    /// Partials an earlier merge took in that still exist, of containers with nothing new:
    /// only to delete.
    pub leftovers: Vec<String>,
    /// Partial profiles that cannot be merged, and why (they are left in place).
    pub problems: Vec<String>,
}

/// The partials the merged profiles `merged` (this recording's, any container) say they took
/// in ([`MERGED_PARTIALS_ANNOTATION`]).
pub fn already_merged<'a, P: SecurityProfile + 'a>(
    merged: impl IntoIterator<Item = &'a P>,
) -> std::collections::BTreeSet<String> {
    merged
        .into_iter()
        .filter(|p| !p.is_partial())
        .filter_map(|p| {
            SecurityProfile::meta(p)
                .annotations
                .as_ref()?
                .get(MERGED_PARTIALS_ANNOTATION)
                .cloned()
        })
        .flat_map(|list| list.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The label selector of a recording's merged (not partial) profiles.
pub fn merged_selector(recording: &ProfileRecording) -> String {
    format!(
        "{LABEL_RECORDING_ID}={},{LABEL_RECORDING_NAMESPACE}={},{LABEL_PARTIAL}!=true",
        recording.name_any(),
        recording.namespace().unwrap_or_default()
    )
}

/// The label selector of a recording's partial profiles.
pub fn partial_selector(recording: &ProfileRecording) -> String {
    format!(
        "{LABEL_RECORDING_ID}={},{LABEL_RECORDING_NAMESPACE}={},{LABEL_PARTIAL}=true",
        recording.name_any(),
        recording.namespace().unwrap_or_default()
    )
}

/// Merges `partials` (the recording's partial profiles, in any order) per container (pure).
/// Each container's profile is the union of its partials ([`MergeKind::union`], in name
/// order, so the result does not depend on list order), named `<recording>-<container>`,
/// labelled with the recording and the container, `state: Disabled` when the recording says
/// `disableProfileAfterRecording`. Partials being deleted and those named in `already` (taken
/// in by an earlier merge, [`already_merged`]) are not counted again: they are only deleted
/// (with the container's new partials, or as leftovers), and stay named in the merged
/// profile's [`MERGED_PARTIALS_ANNOTATION`] until they are gone.
pub fn plan_merge<P: MergeKind>(
    recording: &ProfileRecording,
    partials: &[P],
    already: &std::collections::BTreeSet<String>,
) -> MergePlan<P> {
    let kind = P::KIND.kind_name();
    let name = recording.name_any();
    let namespace = recording.namespace().unwrap_or_default();
    let mut plan = MergePlan {
        merged: Vec::new(),
        leftovers: Vec::new(),
        problems: Vec::new(),
    };
    let mut by_container: BTreeMap<String, Vec<&P>> = BTreeMap::new();
    let mut taken: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in partials {
        let labels = p.labels();
        let ours = labels.get(LABEL_RECORDING_ID) == Some(&name)
            && labels.get(LABEL_RECORDING_NAMESPACE) == Some(&namespace)
            && labels.get(LABEL_PARTIAL).map(String::as_str) == Some("true");
        if !ours || Resource::meta(p).deletion_timestamp.is_some() {
            continue;
        }
        match labels.get(LABEL_CONTAINER_ID) {
            Some(container) if !container.is_empty() && already.contains(&p.name_any()) => {
                taken.entry(container.clone()).or_default().push(p.name_any());
            }
            Some(container) if !container.is_empty() => {
                by_container.entry(container.clone()).or_default().push(p);
            }
            _ => plan.problems.push(format!(
                "partial {kind} {} has no {LABEL_CONTAINER_ID} label and is not merged",
                p.name_any()
            )),
        }
    }
    for (container, names) in &taken {
        if !by_container.contains_key(container) {
            plan.leftovers.extend(names.iter().cloned());
        }
    }
    for (container, mut group) in by_container {
        group.sort_by_key(|p| p.name_any());
        let mut partial_names: Vec<String> = group.iter().map(|p| p.name_any()).collect();
        partial_names.extend(taken.remove(&container).unwrap_or_default());
        partial_names.sort();
        let mark = Mark {
            recording: name.clone(),
            container: container.clone(),
        };
        let merged_name = match profile_name(&mark, "", None) {
            Ok(n) => n,
            Err(problem) => {
                plan.problems.push(problem.0);
                continue;
            }
        };
        let mut profile = match P::union(&group) {
            Ok(p) => p,
            Err(why) => {
                plan.problems.push(format!(
                    "the partial {kind}s of container {container:?} are not merged: {why}"
                ));
                continue;
            }
        };
        profile.set_spec_state(if recording.spec.disable_profile_after_recording == Some(true) {
            SpecState::Disabled
        } else {
            SpecState::Enabled
        });
        let labels = BTreeMap::from([
            (LABEL_RECORDING_ID.to_owned(), name.clone()),
            (LABEL_RECORDING_NAMESPACE.to_owned(), namespace.clone()),
            (LABEL_CONTAINER_ID.to_owned(), container.clone()),
        ]);
        let mut annotations = P::merge_annotations(&group);
        annotations.insert(MERGED_PARTIALS_ANNOTATION.to_owned(), partial_names.join(","));
        *profile.meta_mut() = ObjectMeta {
            name: Some(merged_name),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        };
        plan.merged.push(Merged {
            container,
            profile,
            partials: partial_names,
        });
    }
    plan
}

/// `merged` (one container's merge of new partials, from [`plan_merge`]) folded into `earlier`,
/// the container's merged profile from an earlier merge of the same recording (pods that ran
/// and ended before): allows what either allows, keeps `merged`'s name, labels and state, and
/// adds the annotations up ([`MergeKind::fold_annotations`]). Pure.
pub fn fold_merged<P: MergeKind>(earlier: &P, merged: &P) -> Result<P, String> {
    let mut folded = P::union(&[earlier, merged])?;
    let mut meta = SecurityProfile::meta(merged).clone();
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(P::fold_annotations(earlier, merged));
    *folded.meta_mut() = meta;
    folded.set_spec_state(merged.spec_state());
    Ok(folded)
}

/// The coverage annotation's value: `{"version":"v1","total":N,"syscalls":{"<name>":count}}`,
/// every name of every rule of each partial counted once per partial, keys sorted.
pub fn coverage(partials: &[&SeccompProfile]) -> String {
    let (total, counts) = coverage_of(partials);
    json!({"version": "v1", "total": total, "syscalls": counts}).to_string()
}

/// How many of `partials` there are and how many of them name each syscall.
fn coverage_of(partials: &[&SeccompProfile]) -> (u64, BTreeMap<String, u64>) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for p in partials {
        let mut seen: Vec<&str> = p
            .spec
            .syscalls
            .iter()
            .flatten()
            .flat_map(|rule| rule.names.iter().map(String::as_str))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for name in seen {
            *counts.entry(name.to_owned()).or_default() += 1;
        }
    }
    (partials.len() as u64, counts)
}

/// Why the manager merges a recording's partial profiles now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeWhy {
    /// The recording is being deleted: merge what there is, then release the finalizer.
    Deleted,
    /// Every pod of the recording has ended (and it merges per container): merge the partials
    /// written so far into each container's profile (folding in an earlier merge), and keep
    /// the finalizer, since pods may come again.
    PodsGone,
}

/// Whether the manager merges `recording`'s partial profiles now, given how many running pods
/// are marked for it (pure). Only recordings that hold the unmerged-profiles finalizer (the
/// recorder set it when it started recording for them) have anything to merge.
pub fn merge_reason(recording: &ProfileRecording, active_pods: usize) -> Option<MergeWhy> {
    let holds = recording
        .finalizers()
        .iter()
        .any(|f| f == FINALIZER_HAS_UNMERGED_PROFILES);
    if !holds {
        None
    } else if recording.metadata.deletion_timestamp.is_some() {
        Some(MergeWhy::Deleted)
    } else if active_pods == 0
        && recording.spec.merge_strategy == MergeStrategy::Containers
        && recording.spec.kind != RecordingKind::SelinuxProfile
    {
        Some(MergeWhy::PodsGone)
    } else {
        None
    }
}

/// The recording a partial profile belongs to, as `namespace/name` (`None`: not a partial).
pub fn recording_of_partial(labels: &BTreeMap<String, String>) -> Option<String> {
    if labels.get(LABEL_PARTIAL).map(String::as_str) != Some("true") {
        return None;
    }
    let name = labels.get(LABEL_RECORDING_ID).filter(|n| !n.is_empty())?;
    let namespace = labels.get(LABEL_RECORDING_NAMESPACE).filter(|n| !n.is_empty())?;
    Some(format!("{namespace}/{name}"))
}

/// The recording controller: keeps `status.activeWorkloads` (reconciling the recordings `refs`
/// names, `namespace/name`, when the pod index changes) and merges when a recording with
/// unmerged profiles is deleted.
pub(super) fn run(
    ctx: Arc<Ctx>,
    refs: futures::stream::BoxStream<'static, String>,
    concurrency: u16,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) -> BoxFuture<'static, ()> {
    super::run_namespaced::<ProfileRecording, _, _>(ctx, refs, concurrency, shutdown, reconcile)
}

async fn reconcile(recording: Arc<ProfileRecording>, ctx: Arc<Ctx>) -> Result<Action, OperatorError> {
    let ns = recording.namespace().unwrap_or_default();
    let name = recording.name_any();
    let full = format!("{ns}/{name}");
    let (workloads, active) = {
        let st = lock(&ctx.state);
        let pods: Vec<String> = st
            .pods
            .of(&recording_key(&ns, &name))
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        (plan_status(&recording, pods.iter().map(String::as_str)), pods.len())
    };
    if let Some(workloads) = workloads {
        let body = json!({
            "apiVersion": ProfileRecording::api_version(&()),
            "kind": ProfileRecording::kind(&()),
            "status": {"activeWorkloads": workloads},
        });
        let api: Api<ProfileRecording> = Api::namespaced(ctx.client.clone(), &ns);
        match api
            .patch_status(&name, &PatchParams::apply("spo-manager").force(), &Patch::Apply(&body))
            .await
        {
            Ok(_) => debug!(recording = %full, workloads = workloads.len(), "recording workloads updated"),
            // Deleted meanwhile (its finalizer released by the merge below, in an earlier run).
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => {
                return Err(OperatorError::api(
                    "writing the status of",
                    "ProfileRecording",
                    &full,
                    e,
                ));
            }
        }
    }
    let Some(why) = merge_reason(&recording, active) else {
        return Ok(Action::await_change());
    };
    let reference = recording.object_ref(&());
    let publish = |type_: EventType, reason: &'static str, note: String| {
        let reference = &reference;
        let events = &ctx.events;
        async move { kubeapi::publish_event(events, reference, type_, reason, "Merge", &note).await }
    };

    if recording.spec.merge_strategy == MergeStrategy::Containers {
        match recording.spec.kind {
            RecordingKind::SeccompProfile => merge::<SeccompProfile, _, _>(&ctx, &recording, why, &publish).await?,
            RecordingKind::AppArmorProfile => merge::<AppArmorProfile, _, _>(&ctx, &recording, why, &publish).await?,
            RecordingKind::SelinuxProfile => {
                publish(
                    EventType::Warning,
                    "KindNotSupportedForMerge",
                    "merging recorded SelinuxProfiles is not supported yet; nothing was merged".to_owned(),
                )
                .await;
            }
        }
    }
    if why == MergeWhy::PodsGone {
        // Pods may come again: the finalizer stays until the recording is deleted.
        return Ok(Action::await_change());
    }

    let finalizers: Vec<String> = recording
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER_HAS_UNMERGED_PROFILES)
        .cloned()
        .collect();
    let api: Api<ProfileRecording> = Api::namespaced(ctx.client.clone(), &ns);
    kubeapi::replace_finalizers_in(
        &api,
        &name,
        &recording.resource_version().unwrap_or_default(),
        &finalizers,
    )
    .await?;
    Ok(Action::await_change())
}

/// Merges the partial profiles of kind `P` of `recording`: writes each container's merged
/// profile (folding in the one an earlier merge of this recording wrote) unless another
/// recording's object holds its name, then deletes the partials it was merged from. With no
/// partials, a deleted recording gets a Warning; a recording whose pods are gone, nothing (the
/// recorder may still be writing them, and each one it writes brings the recording back here).
async fn merge<P, F, Fut>(
    ctx: &Ctx,
    recording: &ProfileRecording,
    why: MergeWhy,
    publish: &F,
) -> Result<(), OperatorError>
where
    P: MergeKind,
    F: Fn(EventType, &'static str, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let kind = P::KIND.kind_name();
    let ns = recording.namespace().unwrap_or_default();
    let name = recording.name_any();
    let full = format!("{ns}/{name}");
    let profiles: Api<P> = Api::all(ctx.client.clone());
    let partials = profiles
        .list(&ListParams::default().labels(&partial_selector(recording)))
        .await
        .map_err(|e| OperatorError::api("listing the partial profiles of", "ProfileRecording", &full, e))?;
    // What earlier merges took in matters only when there are partials to judge.
    let earlier = if partials.items.is_empty() {
        Vec::new()
    } else {
        profiles
            .list(&ListParams::default().labels(&merged_selector(recording)))
            .await
            .map_err(|e| OperatorError::api("listing the merged profiles of", "ProfileRecording", &full, e))?
            .items
    };
    let plan = plan_merge(recording, &partials.items, &already_merged(&earlier));
    for leftover in &plan.leftovers {
        delete_partial(&profiles, kind, leftover).await?;
    }
    for problem in &plan.problems {
        publish(EventType::Warning, "PartialProfileNotMerged", problem.clone()).await;
    }
    if plan.merged.is_empty() && plan.leftovers.is_empty() && why == MergeWhy::Deleted {
        publish(
            EventType::Warning,
            "NoPartialProfiles",
            "no partial profiles to merge".to_owned(),
        )
        .await;
    }
    for merged in plan.merged {
        let target = merged.profile.name_any();
        let existing = profiles
            .get_opt(&target)
            .await
            .map_err(|e| OperatorError::api("reading", kind, &target, e))?;
        let mark = Mark {
            recording: name.clone(),
            container: merged.container.clone(),
        };
        let mut profile = merged.profile;
        match may_overwrite(existing.as_ref().map(ResourceExt::labels), &mark, &ns) {
            Overwrite::Create => {
                profiles
                    .create(&PostParams::default(), &profile)
                    .await
                    .map_err(|e| OperatorError::api("creating", kind, &target, e))?;
            }
            Overwrite::Replace => {
                // This recording's own merged profile from pods that ended earlier: what they
                // did stays allowed.
                if let Some(earlier) = existing.as_ref().filter(|e| !e.is_partial()) {
                    profile = match fold_merged(earlier, &profile) {
                        Ok(folded) => folded,
                        Err(why) => {
                            publish(
                                EventType::Warning,
                                "CannotCreateUpdateMergedProfile",
                                format!(
                                    "{kind} {target} could not take in the partial profiles {}: {why}; they are kept",
                                    merged.partials.join(", ")
                                ),
                            )
                            .await;
                            continue;
                        }
                    };
                }
                if let Some(existing) = &existing {
                    kubeapi::carry_over_for_replace(profile.meta_mut(), SecurityProfile::meta(existing));
                }
                profiles
                    .replace(&target, &PostParams::default(), &profile)
                    .await
                    .map_err(|e| OperatorError::api("replacing", kind, &target, e))?;
            }
            Overwrite::Refuse(why) => {
                publish(
                    EventType::Warning,
                    "CannotCreateUpdateMergedProfile",
                    format!(
                        "{kind} {target} exists and is left alone ({why}); the partial profiles {} are kept",
                        merged.partials.join(", ")
                    ),
                )
                .await;
                continue;
            }
        }
        for partial in &merged.partials {
            delete_partial(&profiles, kind, partial).await?;
        }
        info!(recording = %full, kind, profile = %target, partials = merged.partials.len(), "partial profiles merged");
        publish(
            EventType::Normal,
            "MergedProfile",
            format!(
                "{kind} {target} merged from {} partial profiles of container {:?}",
                merged.partials.len(),
                merged.container
            ),
        )
        .await;
    }
    Ok(())
}

/// Deletes a partial profile that was merged (gone already is fine).
async fn delete_partial<P: MergeKind>(profiles: &Api<P>, kind: &str, name: &str) -> Result<(), OperatorError> {
    match profiles.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(OperatorError::api("deleting the partial", kind, name, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(merge: &str, disable: bool) -> ProfileRecording {
        serde_json::from_value(json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
            "metadata": {"name": "rec", "namespace": "team"},
            "spec": {"kind": "SeccompProfile", "recorder": "Bpf", "mergeStrategy": merge,
                     "podSelector": {}, "disableProfileAfterRecording": disable},
        }))
        .expect("recording")
    }

    fn partial(name: &str, container: &str, names: &[&str], labels_extra: serde_json::Value) -> SeccompProfile {
        let mut labels = json!({
            LABEL_RECORDING_ID: "rec", LABEL_RECORDING_NAMESPACE: "team",
            LABEL_CONTAINER_ID: container, LABEL_PARTIAL: "true",
        });
        if let (Some(l), Some(extra)) = (labels.as_object_mut(), labels_extra.as_object()) {
            for (k, v) in extra {
                l.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
            "metadata": {"name": name, "labels": labels},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "state": "Disabled",
                     "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": names}]},
        }))
        .expect("profile")
    }

    /// [`plan_merge`] with nothing merged before.
    fn fresh_plan<P: MergeKind>(rec: &ProfileRecording, partials: &[P]) -> MergePlan<P> {
        plan_merge(rec, partials, &std::collections::BTreeSet::new())
    }

    fn allowed(p: &SeccompProfile) -> Vec<String> {
        let mut v: Vec<String> = p.spec.syscalls.iter().flatten().flat_map(|r| r.names.clone()).collect();
        v.sort();
        v
    }

    fn apparmor_partial(name: &str, container: &str, read: &[&str], programs: &[&str]) -> AppArmorProfile {
        serde_json::from_value(json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "AppArmorProfile",
            "metadata": {"name": name, "labels": {
                LABEL_RECORDING_ID: "rec", LABEL_RECORDING_NAMESPACE: "team",
                LABEL_CONTAINER_ID: container, LABEL_PARTIAL: "true",
            }},
            "spec": {"abstract": {
                "executable": {"allowedExecutables": programs},
                "filesystem": {"readOnlyPaths": read},
            }},
        }))
        .expect("profile")
    }

    #[test]
    fn apparmor_partials_merge_into_the_union_of_each_containers_replicas() {
        let mut rec = recording("Containers", true);
        rec.spec.kind = RecordingKind::AppArmorProfile;
        let partials = [
            apparmor_partial("rec-web-b", "web", &["/etc/b"], &["/bin/busybox"]),
            apparmor_partial("rec-web-a", "web", &["/etc/a"], &["/bin/busybox", "/bin/extra"]),
            apparmor_partial("rec-db-x", "db", &["/var/db"], &["/usr/bin/db"]),
        ];
        let plan = fresh_plan(&rec, &partials);
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        let names: Vec<&str> = plan.merged.iter().map(|m| m.profile.name()).collect();
        assert_eq!(names, ["rec-db", "rec-web"]);
        let web = &plan.merged[1];
        assert_eq!(web.partials, ["rec-web-a", "rec-web-b"]);
        let a = web.profile.spec.abstract_.as_ref().expect("abstract");
        let fs = a.filesystem.as_ref().expect("filesystem");
        assert_eq!(
            fs.read_only_paths.as_deref(),
            Some(&["/etc/a".to_owned(), "/etc/b".to_owned()][..])
        );
        let exe = a.executable.as_ref().expect("executable");
        assert_eq!(
            exe.allowed_executables.as_deref(),
            Some(&["/bin/busybox".to_owned(), "/bin/extra".to_owned()][..])
        );
        assert_eq!(
            web.profile.spec.state,
            SpecState::Disabled,
            "disableProfileAfterRecording"
        );
        let labels = web.profile.labels();
        assert_eq!(labels.get(LABEL_CONTAINER_ID).map(String::as_str), Some("web"));
        assert!(
            labels.get(LABEL_PARTIAL).is_none(),
            "the merged profile is whole: {labels:?}"
        );
        assert!(
            !web.profile.annotations().contains_key(COVERAGE_ANNOTATION),
            "syscall coverage is for seccomp only"
        );
        assert_eq!(
            web.profile.annotations()[MERGED_PARTIALS_ANNOTATION],
            "rec-web-a,rec-web-b",
            "{:?}",
            web.profile.annotations()
        );
        // The order partials are listed in does not matter.
        let reversed: Vec<AppArmorProfile> = partials.iter().rev().cloned().collect();
        assert_eq!(fresh_plan(&rec, &reversed), plan);
    }

    #[test]
    fn apparmor_partials_with_raw_policy_are_said_not_merged() {
        let mut rec = recording("Containers", false);
        rec.spec.kind = RecordingKind::AppArmorProfile;
        let mut raw = apparmor_partial("rec-web-a", "web", &["/etc/a"], &[]);
        raw.spec.abstract_ = None;
        raw.spec.policy = Some("profile x {}".into());
        let plan = fresh_plan(&rec, &[raw, apparmor_partial("rec-web-b", "web", &["/etc/b"], &[])]);
        assert!(plan.merged.is_empty());
        assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
        assert!(plan.problems[0].contains("\"web\""), "{:?}", plan.problems);
    }

    #[test]
    fn partials_merge_per_container_with_their_coverage() {
        let rec = recording("Containers", false);
        let partials = [
            partial("rec-web-b", "web", &["read", "write", "openat"], json!({})),
            partial("rec-web-a", "web", &["read", "write", "getdents64"], json!({})),
            partial("rec-db-x", "db", &["read"], json!({})),
            // Another recording's, and a finished profile: not ours to merge.
            partial("other-web-a", "web", &["mount"], json!({LABEL_RECORDING_ID: "other"})),
            partial("rec-web", "web", &["mkdir"], json!({LABEL_PARTIAL: "false"})),
        ];
        let plan = fresh_plan(&rec, &partials);
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        let names: Vec<String> = plan.merged.iter().map(|m| m.profile.name_any()).collect();
        assert_eq!(names, ["rec-db", "rec-web"]);
        let web = &plan.merged[1];
        assert_eq!(web.partials, ["rec-web-a", "rec-web-b"], "name order");
        assert_eq!(allowed(&web.profile), ["getdents64", "openat", "read", "write"]);
        assert_eq!(
            web.profile.spec.state,
            SpecState::Enabled,
            "merged profiles are installed"
        );
        let labels = web.profile.labels();
        assert_eq!(labels.get(LABEL_RECORDING_ID).map(String::as_str), Some("rec"));
        assert_eq!(labels.get(LABEL_CONTAINER_ID).map(String::as_str), Some("web"));
        assert!(labels.get(LABEL_PARTIAL).is_none(), "{labels:?}");
        let coverage: serde_json::Value =
            serde_json::from_str(&web.profile.annotations()[COVERAGE_ANNOTATION]).expect("json");
        assert_eq!(
            coverage,
            json!({"version": "v1", "total": 2,
                   "syscalls": {"getdents64": 1, "openat": 1, "read": 2, "write": 2}})
        );
        // The order partials are listed in does not change the result.
        let mut reversed = partials.to_vec();
        reversed.reverse();
        assert_eq!(fresh_plan(&rec, &reversed), plan);
    }

    #[test]
    fn disabled_after_recording_and_broken_partials_are_said() {
        let rec = recording("Containers", true);
        let mut no_container = partial("rec-x", "", &["read"], json!({}));
        no_container
            .metadata
            .labels
            .as_mut()
            .map(|l| l.remove(LABEL_CONTAINER_ID));
        let plan = fresh_plan(&rec, &[partial("rec-web-a", "web", &["read"], json!({})), no_container]);
        assert_eq!(plan.merged.len(), 1);
        assert_eq!(plan.merged[0].profile.spec.state, SpecState::Disabled);
        assert_eq!(plan.problems.len(), 1);
        assert!(plan.problems[0].contains("rec-x"), "{:?}", plan.problems);
        // A container name that makes the merged name too long is a problem, not a cut name.
        let long = "c".repeat(250);
        let plan = fresh_plan(&rec, &[partial("p", &long, &["read"], json!({}))]);
        assert!(plan.merged.is_empty());
        assert!(plan.problems[0].contains("253"), "{:?}", plan.problems);
    }

    #[test]
    fn running_pods_count_for_the_recordings_they_are_marked_for() {
        let pod = |phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "team", "annotations": {
                    "io.containers.trace-bpf/web": "rec_web_abcde_1700000000",
                    "io.containers.trace-avcs/side": "avc_side_fghij_1700000000",
                    "io.containers.trace-bpf/db": "rec_db_klmno_1700000000",
                    "io.containers.trace-bpf/x": "no-separator",
                    "other": "rec2_x_y_z",
                }},
                "status": {"phase": phase},
            }))
            .expect("pod")
        };
        assert_eq!(
            recordings_of(&pod("Running")),
            ["ProfileRecording/team/avc", "ProfileRecording/team/rec"]
        );
        assert!(
            recordings_of(&pod("Succeeded")).is_empty(),
            "finished pods are not recorded"
        );
        let mut rec = recording("None", false);
        assert_eq!(
            plan_status(&rec, ["team/b", "team/a"]),
            Some(vec!["team/a".to_owned(), "team/b".to_owned()])
        );
        rec.status = Some(spo_model::recording::ProfileRecordingStatus {
            active_workloads: Some(vec!["team/a".to_owned(), "team/b".to_owned()]),
        });
        assert_eq!(plan_status(&rec, ["team/b", "team/a"]), None, "up to date");
        assert_eq!(plan_status(&rec, []), Some(vec![]), "the last pod ended");
    }

    #[test]
    fn recordings_holding_the_finalizer_merge_when_deleted_or_when_their_pods_are_gone() {
        let mut rec = recording("Containers", false);
        assert_eq!(merge_reason(&rec, 0), None, "nothing was recorded for it");
        rec.metadata.finalizers = Some(vec![FINALIZER_HAS_UNMERGED_PROFILES.to_owned()]);
        assert_eq!(merge_reason(&rec, 2), None, "its pods still run");
        assert_eq!(merge_reason(&rec, 0), Some(MergeWhy::PodsGone));
        let mut per_pod = rec.clone();
        per_pod.spec.merge_strategy = MergeStrategy::None;
        assert_eq!(merge_reason(&per_pod, 0), None, "no merging asked for");
        let mut selinux = rec.clone();
        selinux.spec.kind = RecordingKind::SelinuxProfile;
        assert_eq!(merge_reason(&selinux, 0), None, "no SELinux merge (said at deletion)");
        rec.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(
            merge_reason(&rec, 2),
            Some(MergeWhy::Deleted),
            "deleted with pods running"
        );
        assert_eq!(merge_reason(&rec, 0), Some(MergeWhy::Deleted));
        selinux.metadata.deletion_timestamp = rec.metadata.deletion_timestamp.clone();
        assert_eq!(
            merge_reason(&selinux, 0),
            Some(MergeWhy::Deleted),
            "released at deletion"
        );
        rec.metadata.finalizers = Some(vec!["other".to_owned()]);
        assert_eq!(merge_reason(&rec, 0), None, "merged already");
        assert_eq!(
            partial_selector(&recording("Containers", false)),
            "spo.x-k8s.io/recording-id=rec,spo.x-k8s.io/recording-namespace=team,spo.x-k8s.io/partial=true"
        );
    }

    #[test]
    fn partial_profiles_name_their_recording() {
        let p = partial("rec-web-a", "web", &["read"], json!({}));
        assert_eq!(recording_of_partial(p.labels()), Some("team/rec".to_owned()));
        let merged = partial("rec-web", "web", &["read"], json!({LABEL_PARTIAL: "false"}));
        assert_eq!(recording_of_partial(merged.labels()), None);
        let unnamed = partial("x", "web", &["read"], json!({LABEL_RECORDING_NAMESPACE: ""}));
        assert_eq!(recording_of_partial(unnamed.labels()), None);
    }

    #[test]
    fn a_later_merge_folds_into_the_earlier_one_and_adds_the_coverage_up() {
        let rec = recording("Containers", false);
        let first = fresh_plan(
            &rec,
            &[
                partial("rec-web-a", "web", &["read", "write"], json!({})),
                partial("rec-web-b", "web", &["read", "openat"], json!({})),
            ],
        );
        let earlier = &first.merged[0].profile;
        let later = fresh_plan(&rec, &[partial("rec-web-c", "web", &["read", "mkdir"], json!({}))]);
        let folded = fold_merged(earlier, &later.merged[0].profile).expect("fold");
        assert_eq!(allowed(&folded), ["mkdir", "openat", "read", "write"]);
        assert_eq!(folded.name_any(), "rec-web");
        assert_eq!(folded.labels(), later.merged[0].profile.labels());
        assert_eq!(folded.spec.state, SpecState::Enabled);
        let coverage: serde_json::Value =
            serde_json::from_str(&folded.annotations()[COVERAGE_ANNOTATION]).expect("json");
        assert_eq!(
            coverage,
            json!({"version": "v1", "total": 3,
                   "syscalls": {"mkdir": 1, "openat": 1, "read": 3, "write": 1}})
        );
        // An earlier profile without readable coverage counts as one replica.
        let mut bare = earlier.clone();
        bare.metadata.annotations = Some(BTreeMap::from([(COVERAGE_ANNOTATION.to_owned(), "{bad".to_owned())]));
        let folded = fold_merged(&bare, &later.merged[0].profile).expect("fold");
        let coverage: serde_json::Value =
            serde_json::from_str(&folded.annotations()[COVERAGE_ANNOTATION]).expect("json");
        assert_eq!(coverage["total"], 2);
        assert_eq!(coverage["syscalls"]["read"], 2);
        // The recording's disableProfileAfterRecording is what the folded profile says.
        let disabled = fresh_plan(
            &recording("Containers", true),
            &[partial("rec-web-c", "web", &["read"], json!({}))],
        );
        let folded = fold_merged(earlier, &disabled.merged[0].profile).expect("fold");
        assert_eq!(folded.spec.state, SpecState::Disabled);
    }

    #[test]
    fn partials_taken_in_before_or_being_deleted_are_never_counted_twice() {
        let rec = recording("Containers", false);
        let first = fresh_plan(
            &rec,
            &[
                partial("rec-web-a", "web", &["read"], json!({})),
                partial("rec-web-b", "web", &["write"], json!({})),
            ],
        );
        let earlier = &first.merged[0].profile;
        assert_eq!(
            earlier.annotations()[MERGED_PARTIALS_ANNOTATION],
            "rec-web-a,rec-web-b",
            "the merged profile names what it took in"
        );
        let already = already_merged([earlier]);
        // Both outlived the write (a failed delete), a third replica came, and one of db's
        // partials is being deleted already.
        let mut terminating = partial("rec-db-x", "db", &["mount"], json!({}));
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let partials = [
            partial("rec-web-a", "web", &["read"], json!({})),
            partial("rec-web-b", "web", &["write"], json!({})),
            partial("rec-web-c", "web", &["mkdir"], json!({})),
            terminating,
        ];
        let again = plan_merge(&rec, &partials, &already);
        assert!(again.leftovers.is_empty(), "{:?}", again.leftovers);
        assert_eq!(again.merged.len(), 1, "db's only partial is being deleted");
        let web = &again.merged[0];
        assert_eq!(allowed(&web.profile), ["mkdir"], "only the new replica is merged");
        assert_eq!(
            web.partials,
            ["rec-web-a", "rec-web-b", "rec-web-c"],
            "all three are deleted"
        );
        assert_eq!(
            web.profile.annotations()[MERGED_PARTIALS_ANNOTATION],
            "rec-web-a,rec-web-b,rec-web-c",
            "still named until they are gone"
        );
        let folded = fold_merged(earlier, &web.profile).expect("fold");
        let coverage: serde_json::Value =
            serde_json::from_str(&folded.annotations()[COVERAGE_ANNOTATION]).expect("json");
        assert_eq!(coverage["total"], 3, "{coverage}");
        assert_eq!(
            folded.annotations()[MERGED_PARTIALS_ANNOTATION],
            "rec-web-a,rec-web-b,rec-web-c",
            "{:?}",
            folded.annotations()
        );
        // Nothing new: the old partials are only deleted.
        let only_old = plan_merge(&rec, &partials[..2], &already);
        assert!(only_old.merged.is_empty());
        assert_eq!(only_old.leftovers, ["rec-web-a", "rec-web-b"]);
        // A partial's own annotation says nothing about what was merged.
        assert!(already_merged(&partials[..1]).is_empty());
    }

    #[test]
    fn apparmor_merges_fold_too() {
        let mut rec = recording("Containers", false);
        rec.spec.kind = RecordingKind::AppArmorProfile;
        let first = fresh_plan(&rec, &[apparmor_partial("rec-web-a", "web", &["/etc/a"], &[])]);
        let later = fresh_plan(&rec, &[apparmor_partial("rec-web-b", "web", &["/etc/b"], &["/bin/ls"])]);
        let folded = fold_merged(&first.merged[0].profile, &later.merged[0].profile).expect("fold");
        let text = serde_json::to_string(&folded.spec).expect("json");
        for path in ["/etc/a", "/etc/b", "/bin/ls"] {
            assert!(text.contains(path), "{path} in {text}");
        }
        assert_eq!(folded.name_any(), "rec-web");
        assert!(!folded.is_partial());
    }
}
