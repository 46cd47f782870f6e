//! Which operator profiles a pod uses (pure).
//!
//! Looking at the pod-level and every container's (init, ephemeral included)
//! `securityContext`, a pod uses
//!
//! - a SeccompProfile when `seccompProfile` is `type: Localhost` with
//!   `localhostProfile: operator/<name>.json`, the value the profile's
//!   `status.localhostProfile` tells users to write;
//! - a SelinuxProfile when `seLinuxOptions.type` is `<name>.process`, a RawSelinuxProfile
//!   when it is `<name>_raw.process` (their `status.usage`);
//! - an AppArmorProfile when `appArmorProfile` is `type: Localhost` with
//!   `localhostProfile: <name>`, or through the deprecated annotation
//!   `container.apparmor.security.beta.kubernetes.io/<container>: localhost/<name>`.
//!
//! [`profiles_used`] names them all as [`profile_key`]s, the keys of the manager's index.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, SeccompProfile as PodSeccompProfile, SecurityContext};
use spo_model::contract::{InstallName, ProfileKind};

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

/// The prefix of the deprecated per-container AppArmor annotation.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The index key of profile `name` of `kind`: `<Kind>/<name>`.
pub fn profile_key(kind: ProfileKind, name: &str) -> String {
    format!("{}/{name}", kind.kind_name())
}

/// The kind and name of an index key.
pub fn parse_profile_key(key: &str) -> Option<(ProfileKind, &str)> {
    let (kind, name) = key.split_once('/')?;
    Some((ProfileKind::from_kind_name(kind)?, name))
}

/// The SELinux profile a `seLinuxOptions.type` names, when it is one of ours.
pub fn selinux_profile_of_type(value: &str) -> Option<(ProfileKind, &str)> {
    let block = value.strip_suffix(".process")?;
    let (kind, name) = match block.strip_suffix("_raw") {
        Some(name) => (ProfileKind::RawSelinux, name),
        None => (ProfileKind::Selinux, block),
    };
    InstallName::new(name).ok().map(|_| (kind, name))
}

/// Every operator profile an active pod uses, as [`profile_key`]s, sorted; empty for a
/// finished pod.
pub fn profiles_used(pod: &Pod) -> Vec<String> {
    if !is_active(pod) {
        return Vec::new();
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out: BTreeSet<String> = seccomp_profiles_used(pod)
        .iter()
        .map(|n| profile_key(ProfileKind::Seccomp, n))
        .collect();
    let pod_sc = spec.security_context.as_ref();
    let mut selinux_types: Vec<Option<&str>> = vec![
        pod_sc
            .and_then(|s| s.se_linux_options.as_ref())
            .and_then(|o| o.type_.as_deref()),
    ];
    let mut apparmor: Vec<Option<&k8s_openapi::api::core::v1::AppArmorProfile>> =
        vec![pod_sc.and_then(|s| s.app_armor_profile.as_ref())];
    let containers: Vec<Option<&SecurityContext>> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.security_context.as_ref())
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.security_context.as_ref()),
        )
        .collect();
    for sc in containers.into_iter().flatten() {
        selinux_types.push(sc.se_linux_options.as_ref().and_then(|o| o.type_.as_deref()));
        apparmor.push(sc.app_armor_profile.as_ref());
    }
    for t in selinux_types.into_iter().flatten() {
        if let Some((kind, name)) = selinux_profile_of_type(t) {
            out.insert(profile_key(kind, name));
        }
    }
    for a in apparmor.into_iter().flatten() {
        if a.type_ == "Localhost"
            && let Some(name) = a.localhost_profile.as_deref()
            && InstallName::new(name).is_ok()
        {
            out.insert(profile_key(ProfileKind::AppArmor, name));
        }
    }
    for (key, value) in pod.metadata.annotations.iter().flatten() {
        if key.starts_with(APPARMOR_ANNOTATION_PREFIX)
            && let Some(name) = value.strip_prefix("localhost/")
            && InstallName::new(name).is_ok()
        {
            out.insert(profile_key(ProfileKind::AppArmor, name));
        }
    }
    out.into_iter().collect()
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
    fn selinux_and_apparmor_profiles_are_found() {
        let p = pod(r#"
metadata:
  name: web
  namespace: shop
  annotations:
    container.apparmor.security.beta.kubernetes.io/old: localhost/legacy
    container.apparmor.security.beta.kubernetes.io/rt: runtime/default
spec:
  securityContext:
    seLinuxOptions: {type: web.process}
    seccompProfile: {type: Localhost, localhostProfile: operator/sc.json}
  containers:
  - name: a
    securityContext:
      seLinuxOptions: {type: web_raw.process}
      appArmorProfile: {type: Localhost, localhostProfile: aa}
  - name: b
    securityContext:
      seLinuxOptions: {type: container_t}
      appArmorProfile: {type: RuntimeDefault}
  - name: c
    securityContext:
      seLinuxOptions: {type: Bad_Name.process}
"#);
        assert_eq!(
            profiles_used(&p),
            [
                "AppArmorProfile/aa",
                "AppArmorProfile/legacy",
                "RawSelinuxProfile/web",
                "SeccompProfile/sc",
                "SelinuxProfile/web"
            ]
        );
        assert_eq!(
            parse_profile_key("RawSelinuxProfile/web"),
            Some((ProfileKind::RawSelinux, "web"))
        );
        assert_eq!(parse_profile_key("Pod/x"), None);
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
