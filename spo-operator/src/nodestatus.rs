//! SecurityProfileNodeStatus objects: what a daemon reports about one profile on its node
//! (pure builders and readers).
//!
//! Upstream's object has no place for a message, but the issue asks for the reason of an
//! `Error` in the profile's Ready condition. The daemon therefore puts the message in the
//! annotation [`ANNOTATION_MESSAGE`] of its node status; the manager copies it into the
//! profile's Ready condition, prefixed with the node.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use spo_model::contract::ProfileKind;
use spo_model::names::{
    LABEL_NODE_NAME, LABEL_PROFILE_ID, LABEL_PROFILE_KIND, LABEL_PROFILE_STATE, node_status_name, profile_id,
};
use spo_model::nodestatus::{SecurityProfileNodeStatusSpec, SecurityProfileNodeStatusStatus};
use spo_model::{API_VERSION, ProfileState, SecurityProfileNodeStatus};

/// Annotation of a node status holding the reason of an `Error` (absent otherwise).
pub const ANNOTATION_MESSAGE: &str = "spo.x-k8s.io/status-message";

/// The longest message kept in the annotation (annotations share a 256 KiB budget; a
/// condition message should stay readable).
pub const MAX_MESSAGE: usize = 4096;

/// One node's report about one profile, as read back from a node status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// The state; `None` until the status subresource was written.
    pub state: Option<ProfileState>,
    /// Why, for `Error`.
    pub message: Option<String>,
}

/// The profile a node status belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileRef {
    /// The profile's kind.
    pub kind: ProfileKind,
    /// The profile's name.
    pub name: String,
    /// The profile's uid, for the owner reference.
    pub uid: String,
}

/// The suffix of the node status names of a kind: none for SeccompProfile (upstream's
/// `<profile>-<node>`, which existing objects and tools use), `.<kind>` for the others, so a
/// SeccompProfile, a SelinuxProfile, a RawSelinuxProfile and an AppArmorProfile of one name
/// each have their own status on a node.
pub fn status_name_suffix(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Seccomp => "",
        ProfileKind::Selinux => ".selinuxprofile",
        ProfileKind::RawSelinux => ".rawselinuxprofile",
        ProfileKind::AppArmor => ".apparmorprofile",
    }
}

/// The name of the node status of profile `name` of `kind` on `node`: `<profile>-<node>`,
/// followed by [`status_name_suffix`].
pub fn status_name(kind: ProfileKind, name: &str, node: &str) -> String {
    format!("{}{}", node_status_name(name, node), status_name_suffix(kind))
}

/// Cuts a message to [`MAX_MESSAGE`] bytes on a character boundary, marking the cut.
pub fn clip_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// The node status a daemon on `node` wants for `profile` in `state`: name
/// `<profile>-<node>`, the four upstream labels, an owner reference to the profile and,
/// for errors, the message annotation.
pub fn desired_node_status(
    profile: &ProfileRef,
    node: &str,
    state: ProfileState,
    message: Option<&str>,
) -> SecurityProfileNodeStatus {
    let labels = BTreeMap::from([
        (LABEL_NODE_NAME.to_owned(), node.to_owned()),
        (LABEL_PROFILE_STATE.to_owned(), state.as_str().to_owned()),
        (LABEL_PROFILE_KIND.to_owned(), profile.kind.kind_name().to_owned()),
        (
            LABEL_PROFILE_ID.to_owned(),
            profile_id(profile.kind.kind_name(), &profile.name),
        ),
    ]);
    let annotations = message.map(|m| BTreeMap::from([(ANNOTATION_MESSAGE.to_owned(), clip_message(m))]));
    SecurityProfileNodeStatus {
        metadata: ObjectMeta {
            name: Some(status_name(profile.kind, &profile.name, node)),
            labels: Some(labels),
            annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.to_owned(),
                kind: profile.kind.kind_name().to_owned(),
                name: profile.name.clone(),
                uid: profile.uid.clone(),
                controller: Some(true),
                // Not set: blocking owner deletion needs update rights on the profile's
                // finalizers, and the daemon removes its statuses itself anyway.
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: SecurityProfileNodeStatusSpec {
            node_name: node.to_owned(),
        },
        status: Some(SecurityProfileNodeStatusStatus { status: Some(state) }),
    }
}

/// What a node status reports, or `None` when it is not one of ours (no node).
pub fn read_report(status: &SecurityProfileNodeStatus) -> Option<NodeReport> {
    let node = if status.spec.node_name.is_empty() {
        status.metadata.labels.as_ref()?.get(LABEL_NODE_NAME)?.clone()
    } else {
        status.spec.node_name.clone()
    };
    Some(NodeReport {
        node,
        state: status.state(),
        message: status
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_MESSAGE))
            .cloned(),
    })
}

/// The profile (kind, name) a node status belongs to: from its controller owner reference,
/// else from its kind label and its `<profile>-<node>[.<kind>]` name.
pub fn owning_profile(status: &SecurityProfileNodeStatus) -> Option<(ProfileKind, String)> {
    if let Some(owner) = status
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.api_version == API_VERSION)
    {
        return Some((ProfileKind::from_kind_name(&owner.kind)?, owner.name.clone()));
    }
    let labels = status.metadata.labels.as_ref()?;
    let kind = ProfileKind::from_kind_name(labels.get(LABEL_PROFILE_KIND)?)?;
    let name = status.metadata.name.as_deref()?;
    let name = name.strip_suffix(status_name_suffix(kind))?;
    let profile = name.strip_suffix(&format!("-{}", status.spec.node_name))?;
    Some((kind, profile.to_owned()))
}

/// Whether `current` already says everything `desired` says (labels, message, owner,
/// state), so no write is needed.
pub fn node_status_is_current(current: &SecurityProfileNodeStatus, desired: &SecurityProfileNodeStatus) -> bool {
    let labels_ok = desired.metadata.labels.iter().flatten().all(|(k, v)| {
        current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .is_some_and(|c| c == v)
    });
    let message = |s: &SecurityProfileNodeStatus| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_MESSAGE))
            .cloned()
    };
    let owner_ok = desired.metadata.owner_references.iter().flatten().all(|d| {
        current
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|c| c.uid == d.uid && c.kind == d.kind)
    });
    labels_ok
        && owner_ok
        && message(current) == message(desired)
        && current.state() == desired.state()
        && current.spec == desired.spec
}

/// What a daemon keeps of one of its node statuses: the facts
/// [`node_status_is_current`] compares and [`read_report`] reads, not the object (about a
/// tenth of its memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusDigest {
    /// The profile it belongs to ([`owning_profile`]).
    pub profile: Option<(ProfileKind, Box<str>)>,
    /// The node it reports for.
    pub node: Box<str>,
    /// The state; `None` until the status subresource was written.
    pub state: Option<ProfileState>,
    /// Why, for `Error`.
    pub message: Option<Box<str>>,
    /// The values of the four labels a daemon sets and the node name of the spec, hashed.
    facts: u64,
    /// Each owner reference's (kind, uid), hashed.
    owners: Box<[u64]>,
}

fn hash_of(value: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
}

fn facts_of(status: &SecurityProfileNodeStatus) -> u64 {
    let label = |k: &str| {
        status
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    hash_of((
        label(LABEL_NODE_NAME),
        label(LABEL_PROFILE_STATE),
        label(LABEL_PROFILE_KIND),
        label(LABEL_PROFILE_ID),
        &status.spec.node_name,
    ))
}

fn owners_of(status: &SecurityProfileNodeStatus) -> impl Iterator<Item = u64> + '_ {
    status
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| hash_of((&o.kind, &o.uid)))
}

fn message_of(status: &SecurityProfileNodeStatus) -> Option<&String> {
    status.metadata.annotations.as_ref()?.get(ANNOTATION_MESSAGE)
}

impl StatusDigest {
    /// The digest of a node status, or `None` when it is not one of ours (no node).
    pub fn of(status: &SecurityProfileNodeStatus) -> Option<Self> {
        let report = read_report(status)?;
        Some(StatusDigest {
            profile: owning_profile(status).map(|(k, n)| (k, n.into_boxed_str())),
            node: report.node.into_boxed_str(),
            state: report.state,
            message: report.message.map(String::into_boxed_str),
            facts: facts_of(status),
            owners: owners_of(status).collect(),
        })
    }

    /// Whether the status already says everything `desired` (built by
    /// [`desired_node_status`], which sets exactly the four labels hashed here) says: the same
    /// answer as [`node_status_is_current`] on the whole object.
    pub fn is_current(&self, desired: &SecurityProfileNodeStatus) -> bool {
        self.facts == facts_of(desired)
            && owners_of(desired).all(|o| self.owners.contains(&o))
            && self.message.as_deref() == message_of(desired).map(String::as_str)
            && self.state == desired.state()
    }

    /// The report it holds.
    pub fn report(&self) -> NodeReport {
        NodeReport {
            node: self.node.to_string(),
            state: self.state,
            message: self.message.as_deref().map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> ProfileRef {
        ProfileRef {
            kind: ProfileKind::Seccomp,
            name: "nginx".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn desired_status_has_upstream_shape() {
        let s = desired_node_status(&profile(), "node-1", ProfileState::Installed, None);
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["metadata"]["name"], "nginx-node-1");
        assert_eq!(v["spec"]["nodeName"], "node-1");
        assert_eq!(v["status"]["status"], "Installed");
        assert!(v.get("nodeName").is_none(), "SPO v1.0 moved nodeName into spec: {v}");
        let labels = &v["metadata"]["labels"];
        assert_eq!(labels["spo.x-k8s.io/node-name"], "node-1");
        assert_eq!(labels["spo.x-k8s.io/profile-state"], "Installed");
        assert_eq!(labels["spo.x-k8s.io/profile-kind"], "SeccompProfile");
        assert_eq!(labels["spo.x-k8s.io/profile-id"], "SeccompProfile-nginx");
        let owner = &v["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], "u-1");
        assert_eq!(owner["controller"], true);
        assert!(v["metadata"].get("annotations").is_none());
        assert!(s.validate().is_empty(), "{:?}", s.validate());
    }

    #[test]
    fn reports_read_back_what_was_written() {
        let s = desired_node_status(&profile(), "node-1", ProfileState::Error, Some("bad syscall"));
        assert_eq!(
            read_report(&s),
            Some(NodeReport {
                node: "node-1".into(),
                state: Some(ProfileState::Error),
                message: Some("bad syscall".into())
            })
        );
        assert_eq!(owning_profile(&s), Some((ProfileKind::Seccomp, "nginx".into())));
        let mut no_owner = s.clone();
        no_owner.metadata.owner_references = None;
        assert_eq!(owning_profile(&no_owner), Some((ProfileKind::Seccomp, "nginx".into())));
    }

    #[test]
    fn kinds_sharing_a_name_have_distinct_statuses_that_read_back() {
        let mut names = std::collections::BTreeSet::new();
        for kind in ProfileKind::ALL {
            let pref = ProfileRef { kind, ..profile() };
            let s = desired_node_status(&pref, "node-1", ProfileState::Installed, None);
            assert!(s.validate().is_empty(), "{kind}: {:?}", s.validate());
            assert!(names.insert(s.metadata.name.clone().expect("name")), "{kind}");
            let mut no_owner = s.clone();
            no_owner.metadata.owner_references = None;
            assert_eq!(owning_profile(&no_owner), Some((kind, "nginx".to_owned())), "{kind}");
        }
        assert!(
            names.contains("nginx-node-1"),
            "seccomp keeps upstream's name: {names:?}"
        );
    }

    #[test]
    fn currency_compares_every_reported_fact() {
        let want = desired_node_status(&profile(), "n", ProfileState::Installed, None);
        assert!(node_status_is_current(&want, &want));
        let mut other_state = want.clone();
        other_state.status = Some(SecurityProfileNodeStatusStatus {
            status: Some(ProfileState::Error),
        });
        assert!(!node_status_is_current(&other_state, &want));
        let with_msg = desired_node_status(&profile(), "n", ProfileState::Installed, Some("x"));
        assert!(!node_status_is_current(&with_msg, &want));
        let mut extra_label = want.clone();
        extra_label
            .metadata
            .labels
            .get_or_insert_default()
            .insert("user".into(), "x".into());
        assert!(
            node_status_is_current(&extra_label, &want),
            "foreign labels are left alone"
        );
        let mut not_written = want.clone();
        not_written.status = None;
        assert!(!node_status_is_current(&not_written, &want), "status not written yet");
        let mut other_owner = want.clone();
        other_owner.metadata.owner_references = None;
        assert!(!node_status_is_current(&other_owner, &want));
    }

    #[test]
    fn digests_answer_as_the_whole_object_does() {
        let want = desired_node_status(&profile(), "n", ProfileState::Installed, None);
        let error = desired_node_status(&profile(), "n", ProfileState::Error, Some("bad"));
        let mut variants = vec![want.clone(), error.clone()];
        let mut v = want.clone();
        v.metadata
            .labels
            .get_or_insert_default()
            .insert("user".into(), "x".into());
        variants.push(v);
        let mut v = want.clone();
        v.metadata
            .labels
            .get_or_insert_default()
            .insert(LABEL_PROFILE_STATE.into(), "Error".into());
        variants.push(v);
        let mut v = want.clone();
        v.metadata.labels.get_or_insert_default().remove(LABEL_PROFILE_ID);
        variants.push(v);
        let mut v = want.clone();
        v.status = None;
        variants.push(v);
        let mut v = want.clone();
        v.metadata.owner_references = None;
        variants.push(v);
        let mut v = want.clone();
        if let Some(o) = v.metadata.owner_references.as_mut() {
            o[0].uid = "other".into();
        }
        variants.push(v);
        let mut v = want.clone();
        if let Some(o) = v.metadata.owner_references.as_mut() {
            let mut second = o[0].clone();
            second.uid = "another".into();
            o.insert(0, second);
        }
        variants.push(v);
        let mut v = want.clone();
        v.spec.node_name = "elsewhere".into();
        variants.push(v);
        let mut v = error.clone();
        v.metadata.annotations = Some(BTreeMap::from([(ANNOTATION_MESSAGE.to_owned(), "other".to_owned())]));
        variants.push(v);
        for (i, current) in variants.iter().enumerate() {
            let digest = StatusDigest::of(current).expect("ours");
            for desired in [&want, &error] {
                assert_eq!(
                    digest.is_current(desired),
                    node_status_is_current(current, desired),
                    "variant {i} against {:?}",
                    desired.state()
                );
            }
            assert_eq!(Some(digest.report()), read_report(current), "variant {i}");
        }
        assert_eq!(
            StatusDigest::of(&want).and_then(|d| d.profile),
            Some((ProfileKind::Seccomp, "nginx".into()))
        );
    }

    #[test]
    fn long_messages_are_clipped_on_char_boundaries() {
        let m = "é".repeat(MAX_MESSAGE);
        let c = clip_message(&m);
        assert!(c.len() <= MAX_MESSAGE && c.ends_with("..."));
        assert_eq!(clip_message("short"), "short");
    }
}
