//! Merging recorded profiles: a ProfileRecording with `mergeStrategy: Containers` gets one
//! partial SeccompProfile per recorded replica of each container (written by the node
//! recorder, labelled `spo.x-k8s.io/partial`, never installed); when the recording is deleted,
//! the manager merges the partials of each container into `<recording>-<container>`, with the
//! `spo.x-k8s.io/syscall-coverage` annotation saying how many replicas made each call, deletes
//! the partials, and releases the recording's `spo.x-k8s.io/has-unmerged-profiles` finalizer
//! (which the recorder set when it started recording for it), as upstream does.
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
    /// One profile per container.
    pub merged: Vec<Merged<P>>,
    /// Partial profiles that cannot be merged, and why (they are left in place).
    pub problems: Vec<String>,
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
/// `disableProfileAfterRecording`.
pub fn plan_merge<P: MergeKind>(recording: &ProfileRecording, partials: &[P]) -> MergePlan<P> {
    let kind = P::KIND.kind_name();
    let name = recording.name_any();
    let namespace = recording.namespace().unwrap_or_default();
    let mut plan = MergePlan {
        merged: Vec::new(),
        problems: Vec::new(),
    };
    let mut by_container: BTreeMap<String, Vec<&P>> = BTreeMap::new();
    for p in partials {
        let labels = p.labels();
        let ours = labels.get(LABEL_RECORDING_ID) == Some(&name)
            && labels.get(LABEL_RECORDING_NAMESPACE) == Some(&namespace)
            && labels.get(LABEL_PARTIAL).map(String::as_str) == Some("true");
        if !ours {
            continue;
        }
        match labels.get(LABEL_CONTAINER_ID) {
            Some(container) if !container.is_empty() => {
                by_container.entry(container.clone()).or_default().push(p);
            }
            _ => plan.problems.push(format!(
                "partial {kind} {} has no {LABEL_CONTAINER_ID} label and is not merged",
                p.name_any()
            )),
        }
    }
    for (container, mut group) in by_container {
        group.sort_by_key(|p| p.name_any());
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
        let annotations = P::merge_annotations(&group);
        *profile.meta_mut() = ObjectMeta {
            name: Some(merged_name),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        };
        plan.merged.push(Merged {
            container,
            profile,
            partials: group.iter().map(|p| p.name_any()).collect(),
        });
    }
    plan
}

/// The coverage annotation's value: `{"version":"v1","total":N,"syscalls":{"<name>":count}}`,
/// every name of every rule of each partial counted once per partial, keys sorted.
pub fn coverage(partials: &[&SeccompProfile]) -> String {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
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
            *counts.entry(name).or_default() += 1;
        }
    }
    json!({"version": "v1", "total": partials.len(), "syscalls": counts}).to_string()
}

/// Whether the manager has anything to do for `recording`: it is being deleted and still holds
/// the unmerged-profiles finalizer.
pub fn wants_merge(recording: &ProfileRecording) -> bool {
    recording.metadata.deletion_timestamp.is_some()
        && recording
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER_HAS_UNMERGED_PROFILES)
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
    let workloads = {
        let st = lock(&ctx.state);
        let pods: Vec<String> = st
            .pods
            .of(&recording_key(&ns, &name))
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        plan_status(&recording, pods.iter().map(String::as_str))
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
    if !wants_merge(&recording) {
        return Ok(Action::await_change());
    }
    let reference = recording.object_ref(&());
    let publish = |type_: EventType, reason: &'static str, note: String| {
        let reference = &reference;
        let events = &ctx.events;
        async move { kubeapi::publish_event(events, reference, type_, reason, "Merge", &note).await }
    };

    if recording.spec.merge_strategy == MergeStrategy::Containers {
        match recording.spec.kind {
            RecordingKind::SeccompProfile => merge::<SeccompProfile, _, _>(&ctx, &recording, &publish).await?,
            RecordingKind::AppArmorProfile => merge::<AppArmorProfile, _, _>(&ctx, &recording, &publish).await?,
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

/// Merges the partial profiles of kind `P` of `recording` (being deleted): writes each
/// container's merged profile unless another recording's object holds its name, then deletes
/// the partials it was merged from.
async fn merge<P, F, Fut>(ctx: &Ctx, recording: &ProfileRecording, publish: &F) -> Result<(), OperatorError>
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
    let plan = plan_merge(recording, &partials.items);
    for problem in &plan.problems {
        publish(EventType::Warning, "PartialProfileNotMerged", problem.clone()).await;
    }
    if plan.merged.is_empty() {
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
                profile.meta_mut().resource_version = existing.and_then(|p| ResourceExt::resource_version(&p));
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
            match profiles.delete(partial, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(OperatorError::api("deleting the partial", kind, partial, e)),
            }
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
        let plan = plan_merge(&rec, &partials);
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
            web.profile.metadata.annotations.is_none(),
            "syscall coverage is for seccomp only"
        );
        // The order partials are listed in does not matter.
        let reversed: Vec<AppArmorProfile> = partials.iter().rev().cloned().collect();
        assert_eq!(plan_merge(&rec, &reversed), plan);
    }

    #[test]
    fn apparmor_partials_with_raw_policy_are_said_not_merged() {
        let mut rec = recording("Containers", false);
        rec.spec.kind = RecordingKind::AppArmorProfile;
        let mut raw = apparmor_partial("rec-web-a", "web", &["/etc/a"], &[]);
        raw.spec.abstract_ = None;
        raw.spec.policy = Some("profile x {}".into());
        let plan = plan_merge(&rec, &[raw, apparmor_partial("rec-web-b", "web", &["/etc/b"], &[])]);
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
        let plan = plan_merge(&rec, &partials);
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
        assert_eq!(plan_merge(&rec, &reversed), plan);
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
        let plan = plan_merge(&rec, &[partial("rec-web-a", "web", &["read"], json!({})), no_container]);
        assert_eq!(plan.merged.len(), 1);
        assert_eq!(plan.merged[0].profile.spec.state, SpecState::Disabled);
        assert_eq!(plan.problems.len(), 1);
        assert!(plan.problems[0].contains("rec-x"), "{:?}", plan.problems);
        // A container name that makes the merged name too long is a problem, not a cut name.
        let long = "c".repeat(250);
        let plan = plan_merge(&rec, &[partial("p", &long, &["read"], json!({}))]);
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
    fn only_deleted_recordings_holding_the_finalizer_are_merged() {
        let mut rec = recording("Containers", false);
        assert!(!wants_merge(&rec));
        rec.metadata.finalizers = Some(vec![FINALIZER_HAS_UNMERGED_PROFILES.to_owned()]);
        assert!(!wants_merge(&rec), "not being deleted");
        rec.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(wants_merge(&rec));
        rec.metadata.finalizers = Some(vec!["other".to_owned()]);
        assert!(!wants_merge(&rec), "merged already");
        assert_eq!(
            partial_selector(&recording("Containers", false)),
            "spo.x-k8s.io/recording-id=rec,spo.x-k8s.io/recording-namespace=team,spo.x-k8s.io/partial=true"
        );
    }
}
