//! The node recorder's decisions (pure): which containers of a pod are recorded into which
//! profile, which cgroup names to watch for a pod, which container a cgroup is, and whether a
//! recorded profile may be written over an existing object.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use spo_model::SecurityProfilesOperatorDaemon;
use spo_model::names::{LABEL_CONTAINER_ID, LABEL_PARTIAL, LABEL_RECORDING_ID, LABEL_RECORDING_NAMESPACE};
use spo_model::validate::{is_dns_label, is_dns_subdomain, is_label_value};

/// The annotation prefix of eBPF seccomp recording (see `webhook::recording`).
pub const BPF_SECCOMP_PREFIX: &str = spo_model::names::ANNOTATION_TRACE_BPF;
/// The annotation prefix of eBPF AppArmor recording.
pub const BPF_APPARMOR_PREFIX: &str = spo_model::names::ANNOTATION_TRACE_BPF_APPARMOR;
/// The annotation prefix of log recording of seccomp.
pub const LOG_SECCOMP_PREFIX: &str = spo_model::names::ANNOTATION_TRACE_LOGS;

/// One container of a pod to record, from its annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The ProfileRecording's name (in the pod's namespace).
    pub recording: String,
    /// The container's name.
    pub container: String,
}

/// Annotations that ask for a recording but cannot be used, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMark {
    /// The annotation key.
    pub key: String,
    /// Why it is not used.
    pub why: String,
}

/// The eBPF seccomp marks of `pod`, and the annotations with that prefix that are malformed.
/// The value is `<recording>_<container>_<nonce>_<unix seconds>`; recording and container
/// names cannot hold `_`, so the split is exact. The container in the value must be the one in
/// the key.
pub fn bpf_seccomp_marks(pod: &Pod) -> (Vec<Mark>, Vec<BadMark>) {
    marks(pod, BPF_SECCOMP_PREFIX)
}

/// The eBPF AppArmor marks of `pod` (`io.containers.trace-bpf-apparmor/<container>`), as
/// [`bpf_seccomp_marks`] reads its own.
pub fn bpf_apparmor_marks(pod: &Pod) -> (Vec<Mark>, Vec<BadMark>) {
    marks(pod, BPF_APPARMOR_PREFIX)
}

/// The log-recording SELinux marks of `pod` (`io.containers.trace-avcs/<container>`), as
/// [`bpf_seccomp_marks`] reads its own.
pub fn log_selinux_marks(pod: &Pod) -> (Vec<Mark>, Vec<BadMark>) {
    marks(pod, spo_model::names::ANNOTATION_TRACE_AVCS)
}

/// The log-recording seccomp marks of `pod` (`io.containers.trace-logs/<container>`), as
/// [`bpf_seccomp_marks`] reads its own.
pub fn log_seccomp_marks(pod: &Pod) -> (Vec<Mark>, Vec<BadMark>) {
    marks(pod, LOG_SECCOMP_PREFIX)
}

fn marks(pod: &Pod, prefix: &str) -> (Vec<Mark>, Vec<BadMark>) {
    let mut marks = Vec::new();
    let mut bad = Vec::new();
    let Some(annotations) = &pod.metadata.annotations else {
        return (marks, bad);
    };
    for (key, value) in annotations {
        let Some(container) = key.strip_prefix(prefix) else {
            continue;
        };
        let fail = |why: String| BadMark { key: key.clone(), why };
        let parts: Vec<&str> = value.split('_').collect();
        let [recording, in_value, _nonce, _unix] = parts.as_slice() else {
            bad.push(fail(format!(
                "value {value:?} is not <recording>_<container>_<nonce>_<time>"
            )));
            continue;
        };
        if !is_dns_subdomain(recording) {
            bad.push(fail(format!("recording name {recording:?} is not a DNS subdomain")));
            continue;
        }
        if !is_dns_label(container) || *in_value != container {
            bad.push(fail(format!(
                "container {container:?} in the key and {in_value:?} in the value must be one container name"
            )));
            continue;
        }
        marks.push(Mark {
            recording: (*recording).to_owned(),
            container: container.to_owned(),
        });
    }
    (marks, bad)
}

/// The names the pod's cgroup directory has under the kubelet's drivers: `pod<uid>` with
/// cgroupfs, `kubepods[-<qos>]-pod<uid with _>.slice` with systemd. Watching all of them costs
/// four hash entries; a uid that is not a UUID gets none (nothing would match it anyway, and a
/// name is never built from arbitrary text).
pub fn pod_cgroup_names(uid: &str) -> Vec<String> {
    let is_uuid = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    if !is_uuid {
        return Vec::new();
    }
    let systemd = uid.replace('-', "_");
    vec![
        format!("pod{uid}"),
        format!("kubepods-pod{systemd}.slice"),
        format!("kubepods-burstable-pod{systemd}.slice"),
        format!("kubepods-besteffort-pod{systemd}.slice"),
    ]
}

/// The container id a runtime's cgroup directory name holds: the name itself (cgroupfs), or
/// the part between a runtime prefix and `.scope` (systemd: `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `docker-<id>.scope`).
pub fn container_id_of_cgroup(name: &str) -> &str {
    let bare = name.strip_suffix(".scope").unwrap_or(name);
    ["cri-containerd-", "crio-", "docker-", "cri-o-"]
        .iter()
        .find_map(|p| bare.strip_prefix(p))
        .unwrap_or(bare)
}

/// The container id of a status (`containerd://<id>` -> `<id>`).
fn status_id(status: &ContainerStatus) -> Option<&str> {
    let id = status.container_id.as_deref()?;
    Some(id.split_once("://").map_or(id, |(_, id)| id))
}

/// Container ids of `pod` by container name, over init, regular and ephemeral containers,
/// with the ids of earlier runs of each when known (`lastState` keeps one).
pub fn container_ids(pod: &Pod) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Some(status) = &pod.status else { return out };
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten());
    for s in all {
        let ids = out.entry(s.name.clone()).or_default();
        if let Some(id) = status_id(s) {
            ids.insert(id.to_owned());
        }
        if let Some(last) = s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .and_then(|t| t.container_id.as_deref())
        {
            ids.insert(last.split_once("://").map_or(last, |(_, id)| id).to_owned());
        }
    }
    out
}

/// Containers of `pod` that had started when its recording began: each has a container id
/// already, so its start was not seen and its recording would be incomplete.
pub fn started_before_watch(pod: &Pod) -> BTreeSet<String> {
    container_ids(pod)
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, _)| name)
        .collect()
}

/// Whether the SPOD switches the eBPF recorder on (`spec.enricher.enableBpfRecorder`,
/// default false as upstream).
pub fn bpf_recorder_enabled(spod: &SecurityProfilesOperatorDaemon) -> bool {
    spod.spec
        .enricher
        .as_ref()
        .and_then(|e| e.enable_bpf_recorder)
        .unwrap_or(false)
}

/// Whether the pod is done: every container has ended for good.
pub fn pod_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the pod ended because it was deleted: still running when it went, or its
/// containers stopped by the deletion (the kubelet gives a deleted pod a terminal phase before
/// it goes, so the phase alone does not tell).
pub fn ended_by_deletion(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() || !pod_finished(pod)
}

/// How the containers of one pod are recorded, from the kinds its marks record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HowToRecord {
    /// Start each container's recording where its runtime installs the seccomp filter (the
    /// recording filter the webhook set): a seccomp profile must let the runtime's calls after
    /// that point through. Otherwise at the container's exec, where an AppArmor profile starts.
    pub from_filter: bool,
    /// Record files, programs, libraries, sockets and capabilities (AppArmor profiles).
    pub resources: bool,
}

/// How to record a pod marked for seccomp and/or AppArmor profiles (`None`: for neither).
/// A pod marked for both is recorded once, from the filter: the seccomp profile needs the
/// runtime's calls after it, and the AppArmor profile then holds what the runtime did between
/// the filter and the exec as well (a few files at most), more than it needs, never less.
pub fn how_to_record(seccomp: bool, apparmor: bool) -> Option<HowToRecord> {
    (seccomp || apparmor).then_some(HowToRecord {
        from_filter: seccomp,
        resources: apparmor,
    })
}

/// Why a recorded profile cannot get a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameProblem(pub String);

/// The recorded profile's name, as upstream makes it: `<recording>-<container>`, plus the
/// pod's generated suffix for pods with `generateName` (replicas of a Deployment, a Job...),
/// so that replicas do not overwrite one another. It must be a DNS subdomain of at most 253
/// characters.
pub fn profile_name(mark: &Mark, pod_name: &str, generate_name: Option<&str>) -> Result<String, NameProblem> {
    let mut name = format!("{}-{}", mark.recording, mark.container);
    if let Some(base) = generate_name.filter(|b| !b.is_empty())
        && let Some(suffix) = pod_name.strip_prefix(base).filter(|s| !s.is_empty())
    {
        name.push('-');
        name.push_str(suffix);
    }
    if name.len() > 253 || !is_dns_subdomain(&name) {
        return Err(NameProblem(format!(
            "the recorded profile's name {name:?} is not a DNS subdomain of at most 253 characters \
             (<recording>-<container>[-<replica>]); use a shorter ProfileRecording name"
        )));
    }
    Ok(name)
}

/// The labels of a recorded profile (upstream's): which recording and container it came from,
/// and `partial` when the recording merges per-replica profiles later.
pub fn profile_labels(mark: &Mark, namespace: &str, partial: bool) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_RECORDING_ID.to_owned(), mark.recording.clone()),
        (LABEL_CONTAINER_ID.to_owned(), mark.container.clone()),
        (LABEL_RECORDING_NAMESPACE.to_owned(), namespace.to_owned()),
    ]);
    if partial {
        labels.insert(LABEL_PARTIAL.to_owned(), "true".to_owned());
    }
    labels.retain(|_, v| is_label_value(v));
    labels
}

/// What to do about an object that already has the recorded profile's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overwrite {
    /// None exists: create it.
    Create,
    /// It came from the same recording in the same namespace (a rerun): replace it.
    Replace,
    /// It is someone else's: leave it, and say so.
    Refuse(String),
}

/// Profiles are cluster-scoped, recordings namespaced: a recording in one namespace must never
/// replace a profile it did not make (another namespace's recording of the same name, or a
/// profile written by hand), or a user who may record in their namespace could rewrite the
/// profiles other namespaces run under.
pub fn may_overwrite(existing: Option<&BTreeMap<String, String>>, mark: &Mark, namespace: &str) -> Overwrite {
    let Some(labels) = existing else {
        return Overwrite::Create;
    };
    let same = labels.get(LABEL_RECORDING_ID) == Some(&mark.recording)
        && labels.get(LABEL_RECORDING_NAMESPACE).map(String::as_str) == Some(namespace);
    if same {
        Overwrite::Replace
    } else {
        Overwrite::Refuse(
            match (labels.get(LABEL_RECORDING_ID), labels.get(LABEL_RECORDING_NAMESPACE)) {
                (Some(r), Some(ns)) => format!("it was recorded by ProfileRecording {ns}/{r}"),
                _ => "it was not made by a recording".to_owned(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus};
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-7d9f5-abcde".into()),
                generate_name: Some("web-7d9f5-".into()),
                annotations: Some(annotations.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn marks_come_from_well_formed_annotations_only() {
        let p = pod(&[
            ("io.containers.trace-bpf/web", "rec_web_bcdfg_1700000000"),
            ("io.containers.trace-bpf/side", "rec_web_bcdfg_1700000000"),
            ("io.containers.trace-bpf/x", "no-underscores"),
            ("io.containers.trace-bpf/Bad_Name", "rec_Bad_Name_b_1"),
            ("io.containers.trace-bpf/y", "UPPER_y_b_1"),
            ("io.containers.trace-logs/web", "rec_web_bcdfg_1700000000"),
        ]);
        let (marks, bad) = bpf_seccomp_marks(&p);
        assert_eq!(
            marks,
            [Mark {
                recording: "rec".into(),
                container: "web".into()
            }]
        );
        let keys: Vec<&str> = bad.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "io.containers.trace-bpf/Bad_Name",
                "io.containers.trace-bpf/side",
                "io.containers.trace-bpf/x",
                "io.containers.trace-bpf/y"
            ]
        );
    }

    #[test]
    fn pod_cgroup_names_cover_both_drivers_and_only_uuids() {
        let names = pod_cgroup_names("0f9a7c1e-1111-2222-3333-444455556666");
        assert_eq!(names[0], "pod0f9a7c1e-1111-2222-3333-444455556666");
        assert!(names.contains(&"kubepods-besteffort-pod0f9a7c1e_1111_2222_3333_444455556666.slice".to_owned()));
        // What the eBPF recorder can match: at most 95 bytes, no '/'.
        assert!(names.iter().all(|n| n.len() < 96 && !n.contains('/')));
        for bad in [
            "",
            "../../etc",
            "0f9a7c1e-1111-2222-3333-44445555666/",
            "x".repeat(36).as_str(),
        ] {
            assert!(pod_cgroup_names(bad).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn cgroup_names_give_container_ids_for_every_runtime() {
        let id = "4f2b".repeat(16);
        assert_eq!(container_id_of_cgroup(&id), id);
        assert_eq!(container_id_of_cgroup(&format!("cri-containerd-{id}.scope")), id);
        assert_eq!(container_id_of_cgroup(&format!("crio-{id}.scope")), id);
        assert_eq!(container_id_of_cgroup(&format!("docker-{id}.scope")), id);
    }

    #[test]
    fn container_ids_include_earlier_runs_and_say_what_started_already() {
        let mut p = pod(&[]);
        p.status = Some(PodStatus {
            container_statuses: Some(vec![
                ContainerStatus {
                    name: "web".into(),
                    container_id: Some("containerd://bbb".into()),
                    last_state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            container_id: Some("containerd://aaa".into()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                },
                ContainerStatus {
                    name: "waiting".into(),
                    ..ContainerStatus::default()
                },
            ]),
            ..PodStatus::default()
        });
        let ids = container_ids(&p);
        assert_eq!(ids["web"], BTreeSet::from(["aaa".to_owned(), "bbb".to_owned()]));
        assert!(ids["waiting"].is_empty());
        assert_eq!(started_before_watch(&p), BTreeSet::from(["web".to_owned()]));
    }

    #[test]
    fn profile_names_follow_upstream_and_stay_valid() {
        let mark = Mark {
            recording: "rec".into(),
            container: "web".into(),
        };
        assert_eq!(
            profile_name(&mark, "web-7d9f5-abcde", Some("web-7d9f5-")).expect("a valid name"),
            "rec-web-abcde"
        );
        assert_eq!(profile_name(&mark, "single", None).expect("a valid name"), "rec-web");
        assert_eq!(
            profile_name(&mark, "single", Some("other-")).expect("a valid name"),
            "rec-web"
        );
        let long = Mark {
            recording: "r".repeat(250),
            container: "web".into(),
        };
        let err = profile_name(&long, "p", None).expect_err("too long");
        assert!(err.0.contains("253"), "{err:?}");
    }

    #[test]
    fn a_pod_that_ended_by_deletion_is_told_from_one_that_finished() {
        let mut p = Pod::default();
        assert!(ended_by_deletion(&p), "deleted with no terminal phase");
        p.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..PodStatus::default()
        });
        assert!(!ended_by_deletion(&p), "finished on its own");
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..PodStatus::default()
        });
        assert!(ended_by_deletion(&p), "the kubelet's terminal phase for a deleted pod");
    }

    #[test]
    fn the_spod_switches_the_recorder_and_it_is_off_by_default() {
        let spod = |spec: serde_json::Value| -> SecurityProfilesOperatorDaemon {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "security-profiles-operator.x-k8s.io/v1",
                "kind": "SecurityProfilesOperatorDaemon",
                "metadata": {"name": "spod", "namespace": "spo"},
                "spec": spec,
            }))
            .expect("spod")
        };
        assert!(!bpf_recorder_enabled(&spod(serde_json::json!({}))));
        assert!(!bpf_recorder_enabled(&spod(
            serde_json::json!({"enricher": {"enableLogEnricher": true}})
        )));
        assert!(bpf_recorder_enabled(&spod(
            serde_json::json!({"enricher": {"enableBpfRecorder": true}})
        )));
        assert!(!bpf_recorder_enabled(&spod(
            serde_json::json!({"enricher": {"enableBpfRecorder": false}})
        )));
    }

    #[test]
    fn a_recording_replaces_only_its_own_profiles() {
        let mark = Mark {
            recording: "rec".into(),
            container: "web".into(),
        };
        assert_eq!(may_overwrite(None, &mark, "team-a"), Overwrite::Create);
        let own = profile_labels(&mark, "team-a", false);
        assert_eq!(may_overwrite(Some(&own), &mark, "team-a"), Overwrite::Replace);
        let Overwrite::Refuse(why) = may_overwrite(Some(&own), &mark, "team-b") else {
            panic!("another namespace's recording of the same name replaced it")
        };
        assert!(why.contains("team-a/rec"), "{why}");
        assert!(matches!(
            may_overwrite(Some(&BTreeMap::new()), &mark, "team-a"),
            Overwrite::Refuse(_)
        ));
        assert_eq!(profile_labels(&mark, "ns", true)[LABEL_PARTIAL], "true");
    }

    #[test]
    fn a_pod_is_recorded_from_its_filter_when_seccomp_needs_it_and_with_resources_for_apparmor() {
        assert_eq!(how_to_record(false, false), None);
        assert_eq!(
            how_to_record(true, false),
            Some(HowToRecord {
                from_filter: true,
                resources: false
            })
        );
        assert_eq!(
            how_to_record(false, true),
            Some(HowToRecord {
                from_filter: false,
                resources: true
            })
        );
        assert_eq!(
            how_to_record(true, true),
            Some(HowToRecord {
                from_filter: true,
                resources: true
            })
        );
    }

    #[test]
    fn apparmor_marks_are_read_under_their_own_prefix() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "annotations": {
                "io.containers.trace-bpf-apparmor/web": "rec_web_n2xyz_1700000000",
                "io.containers.trace-bpf/side": "rec2_side_n3xyz_1700000000",
                "io.containers.trace-bpf-apparmor/bad": "rec_other_n2xyz_1700000000"
            }}
        }))
        .expect("pod");
        let (marks, bad) = bpf_apparmor_marks(&pod);
        assert_eq!(
            marks,
            vec![Mark {
                recording: "rec".into(),
                container: "web".into()
            }]
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].key, "io.containers.trace-bpf-apparmor/bad");
        let (seccomp, _) = bpf_seccomp_marks(&pod);
        assert_eq!(seccomp.len(), 1);
        assert_eq!(seccomp[0].container, "side");
    }
}
