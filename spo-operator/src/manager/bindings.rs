//! ProfileBinding status: which pods a binding applied to (`status.activeWorkloads`), and
//! the `active-workload-lock` finalizer while there are any, as upstream has them.
//!
//! The binding webhook writes nothing during admission; it marks bound pods with
//! [`BINDINGS_ANNOTATION`]. The manager's pod index reads the mark (for pods still running)
//! as index keys [`binding_key`], next to the profiles the pod uses; a binding counts a pod
//! only when the pod really uses the binding's profile, so a pod that writes the
//! annotation itself (after admission, annotations are mutable) cannot hold a binding.
//! Pods get their real names here (the webhook sees none for `generateName` pods), and a
//! deleted pod leaves the index, so nothing is lost between admission and deletion.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use spo_model::binding::{BindingProfileKind, ProfileBinding};
use spo_model::contract::ProfileKind;
use spo_model::names::FINALIZER_ACTIVE_WORKLOAD_LOCK;
use tracing::info;

use super::{Ctx, lock};
use crate::error::OperatorError;
use crate::kubeapi;
use crate::webhook::binding::BINDINGS_ANNOTATION;
use crate::workloads::{is_active, profile_key};

/// The prefix of binding index keys.
pub const KEY_PREFIX: &str = "ProfileBinding/";

/// The index key of binding `name` in `namespace`.
pub fn binding_key(namespace: &str, name: &str) -> String {
    format!("{KEY_PREFIX}{namespace}/{name}")
}

/// The bindings an active pod is marked with, as index keys (pure).
pub fn bindings_of(pod: &Pod) -> Vec<String> {
    if !is_active(pod) {
        return Vec::new();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BINDINGS_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| binding_key(ns, n))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default()
}

/// The profile key a binding's profile has in the pod index.
pub fn bound_profile_key(kind: BindingProfileKind, name: &str) -> String {
    let kind = match kind {
        BindingProfileKind::SeccompProfile => ProfileKind::Seccomp,
        BindingProfileKind::SelinuxProfile => ProfileKind::Selinux,
        BindingProfileKind::AppArmorProfile => ProfileKind::AppArmor,
    };
    profile_key(kind, name)
}

/// What a binding's status and finalizers should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingPlan {
    /// `status.activeWorkloads`, sorted.
    pub workloads: Vec<String>,
    /// The finalizers afterwards (`None`: unchanged).
    pub finalizers: Option<Vec<String>>,
    /// Whether the status must be written.
    pub write_status: bool,
}

/// Decides a binding's status from the marked pods that really use its profile (pure).
/// `marked` holds each marked pod's key and the profile keys it uses.
pub fn plan_binding<'a>(
    binding: &ProfileBinding,
    marked: impl IntoIterator<Item = (&'a str, &'a [String])>,
) -> BindingPlan {
    let want = bound_profile_key(binding.spec.profile_ref.kind, &binding.spec.profile_ref.name);
    let workloads: Vec<String> = marked
        .into_iter()
        .filter(|(_, profiles)| profiles.contains(&want))
        .map(|(pod, _)| pod.to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let current = binding
        .status
        .as_ref()
        .and_then(|s| s.active_workloads.clone())
        .unwrap_or_default();
    let finalizers = binding.finalizers();
    let has = finalizers.iter().any(|f| f == FINALIZER_ACTIVE_WORKLOAD_LOCK);
    let finalizers = match (workloads.is_empty(), has) {
        (false, false) => {
            let mut f = finalizers.to_vec();
            f.push(FINALIZER_ACTIVE_WORKLOAD_LOCK.to_owned());
            Some(f)
        }
        (true, true) => Some(
            finalizers
                .iter()
                .filter(|f| *f != FINALIZER_ACTIVE_WORKLOAD_LOCK)
                .cloned()
                .collect(),
        ),
        _ => None,
    };
    BindingPlan {
        write_status: current != workloads,
        workloads,
        finalizers,
    }
}

/// The controller over ProfileBindings: reconciles the bindings `refs` names
/// (`namespace/name`) when the pod index changes, and each binding when it changes.
pub(super) fn run(
    ctx: Arc<Ctx>,
    refs: futures::stream::BoxStream<'static, String>,
    concurrency: u16,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) -> BoxFuture<'static, ()> {
    super::run_namespaced::<ProfileBinding, _, _>(ctx, refs, concurrency, shutdown, reconcile)
}

async fn reconcile(binding: Arc<ProfileBinding>, ctx: Arc<Ctx>) -> Result<Action, OperatorError> {
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    let plan = {
        let st = lock(&ctx.state);
        let key = binding_key(&ns, &name);
        let marked: Vec<(String, Vec<String>)> = st
            .pods
            .of(&key)
            .map(|m| {
                m.keys()
                    .map(|pod| {
                        (
                            pod.clone(),
                            st.pods.keys_of(pod).map(<[String]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        plan_binding(&binding, marked.iter().map(|(p, k)| (p.as_str(), k.as_slice())))
    };
    let api: Api<ProfileBinding> = Api::namespaced(ctx.client.clone(), &ns);
    let err = |operation: &'static str| {
        let name = format!("{ns}/{name}");
        move |e| OperatorError::api(operation, "ProfileBinding", &name, e)
    };
    if plan.write_status {
        let body = json!({
            "apiVersion": ProfileBinding::api_version(&()),
            "kind": ProfileBinding::kind(&()),
            "status": {"activeWorkloads": plan.workloads},
        });
        api.patch_status(&name, &PatchParams::apply("spo-manager").force(), &Patch::Apply(&body))
            .await
            .map_err(err("writing the status of"))?;
        info!(binding = %format!("{ns}/{name}"), workloads = plan.workloads.len(), "binding workloads updated");
    }
    if let Some(finalizers) = plan.finalizers {
        kubeapi::replace_finalizers_in(
            &api,
            &name,
            &binding.resource_version().unwrap_or_default(),
            &finalizers,
        )
        .await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(kind: &str, profile: &str, workloads: Option<Vec<&str>>, finalizers: Vec<&str>) -> ProfileBinding {
        let mut v = json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileBinding",
            "metadata": {"name": "b", "namespace": "ns", "finalizers": finalizers},
            "spec": {"profileRef": {"kind": kind, "name": profile}, "image": "*"},
        });
        if let Some(w) = workloads {
            v["status"] = json!({"activeWorkloads": w});
        }
        serde_json::from_value(v).expect("binding")
    }

    #[test]
    fn only_pods_that_use_the_profile_count_and_the_lock_follows_them() {
        let b = binding("SeccompProfile", "p", None, vec![]);
        let uses = vec!["SeccompProfile/p".to_owned()];
        let forged = vec!["SeccompProfile/other".to_owned()];
        let plan = plan_binding(&b, [("ns/a", uses.as_slice()), ("ns/forged", forged.as_slice())]);
        assert_eq!(plan.workloads, ["ns/a"]);
        assert!(plan.write_status);
        assert_eq!(plan.finalizers, Some(vec![FINALIZER_ACTIVE_WORKLOAD_LOCK.to_owned()]));
        // Up to date: nothing to write.
        let b = binding(
            "SeccompProfile",
            "p",
            Some(vec!["ns/a"]),
            vec![FINALIZER_ACTIVE_WORKLOAD_LOCK, "other"],
        );
        let plan = plan_binding(&b, [("ns/a", uses.as_slice())]);
        assert!(!plan.write_status && plan.finalizers.is_none(), "{plan:?}");
        // Last pod gone: status emptied, our finalizer released, others kept.
        let plan = plan_binding(&b, []);
        assert!(plan.write_status && plan.workloads.is_empty());
        assert_eq!(plan.finalizers, Some(vec!["other".to_owned()]));
    }

    #[test]
    fn pods_are_read_for_their_marks() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "annotations": {BINDINGS_ANNOTATION: "b, a,,b"}},
        }))
        .expect("pod");
        assert_eq!(bindings_of(&pod), ["ProfileBinding/ns/a", "ProfileBinding/ns/b"]);
        let done: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "annotations": {BINDINGS_ANNOTATION: "b"}},
            "status": {"phase": "Succeeded"},
        }))
        .expect("pod");
        assert!(bindings_of(&done).is_empty());
        assert_eq!(
            bound_profile_key(BindingProfileKind::SelinuxProfile, "x"),
            "SelinuxProfile/x"
        );
    }
}
