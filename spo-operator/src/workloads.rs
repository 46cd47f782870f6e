//! Which operator profiles a pod uses (pure).
//!
//! A pod uses a SeccompProfile when its pod-level or any container's (init, ephemeral
//! included) `securityContext.seccompProfile` is `type: Localhost` with
//! `localhostProfile: operator/<name>.json`, the value the profile's
//! `status.localhostProfile` tells users to write.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, SeccompProfile as PodSeccompProfile};

/// The prefix of `localhostProfile` values that name operator profiles.
pub const LOCALHOST_PREFIX: &str = "operator/";
/// The suffix of `localhostProfile` values that name operator profiles.
pub const LOCALHOST_SUFFIX: &str = ".json";

/// `namespace/name` of a pod, the form `status.activeWorkloads` lists.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The profile a `localhostProfile` value names, when it is one of ours.
pub fn profile_of_localhost(value: &str) -> Option<&str> {
    let name = value.strip_prefix(LOCALHOST_PREFIX)?.strip_suffix(LOCALHOST_SUFFIX)?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

fn localhost_name(sp: Option<&PodSeccompProfile>) -> Option<&str> {
    let sp = sp?;
    if sp.type_ != "Localhost" {
        return None;
    }
    profile_of_localhost(sp.localhost_profile.as_deref()?)
}

/// Whether the pod still counts as a workload: it has not finished. A pod being deleted
/// still runs until the kubelet stops it, so it counts until it is gone.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The SeccompProfiles an active pod uses, sorted; empty for a finished pod.
pub fn seccomp_profiles_used(pod: &Pod) -> Vec<String> {
    if !is_active(pod) {
        return Vec::new();
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    let pod_level = spec.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref());
    out.extend(localhost_name(pod_level).map(str::to_owned));
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.security_context.as_ref());
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| c.security_context.as_ref());
    for sc in containers.chain(ephemeral).flatten() {
        out.extend(localhost_name(sc.seccomp_profile.as_ref()).map(str::to_owned));
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_norway::from_str(yaml).expect("pod")
    }

    #[test]
    fn pod_and_container_levels_are_found() {
        let p = pod(r#"
metadata: {name: web, namespace: shop}
spec:
  securityContext: {seccompProfile: {type: Localhost, localhostProfile: operator/base.json}}
  initContainers:
  - name: init
    securityContext: {seccompProfile: {type: Localhost, localhostProfile: operator/init.json}}
  containers:
  - name: app
    securityContext: {seccompProfile: {type: Localhost, localhostProfile: operator/app.json}}
  - name: side
    securityContext: {seccompProfile: {type: RuntimeDefault}}
  - name: other
    securityContext: {seccompProfile: {type: Localhost, localhostProfile: my/own.json}}
  ephemeralContainers:
  - name: debug
    securityContext: {seccompProfile: {type: Localhost, localhostProfile: operator/app.json}}
"#);
        assert_eq!(seccomp_profiles_used(&p), ["app", "base", "init"]);
        assert_eq!(pod_key(&p), "shop/web");
    }

    #[test]
    fn finished_pods_use_nothing() {
        for phase in ["Succeeded", "Failed"] {
            let p = pod(&format!(
                "metadata: {{name: a, namespace: b}}\nspec:\n  securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: operator/x.json}}}}\n  containers: []\nstatus: {{phase: {phase}}}\n"
            ));
            assert!(seccomp_profiles_used(&p).is_empty(), "{phase}");
        }
        let running = pod(
            "metadata: {name: a, namespace: b}\nspec:\n  securityContext: {seccompProfile: {type: Localhost, localhostProfile: operator/x.json}}\n  containers: []\nstatus: {phase: Pending}\n",
        );
        assert_eq!(seccomp_profiles_used(&running), ["x"]);
    }

    #[test]
    fn only_operator_paths_name_profiles() {
        assert_eq!(profile_of_localhost("operator/a.json"), Some("a"));
        assert_eq!(profile_of_localhost("operator/.json"), None);
        assert_eq!(profile_of_localhost("operator/ns/a.json"), None);
        assert_eq!(profile_of_localhost("a.json"), None);
        assert_eq!(profile_of_localhost("operator/a.yaml"), None);
    }
}
