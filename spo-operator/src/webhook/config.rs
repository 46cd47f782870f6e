//! The MutatingWebhookConfiguration the webhook keeps (pure).
//!
//! Names, paths, selectors and failure policies are upstream's, so SPOD `webhook.options`
//! written for SPO apply unchanged: `binding.spo.io` on `/mutate-v1-pod-binding` for
//! namespaces labelled [`ENABLE_BINDING_LABEL`], `recording.spo.io` on
//! `/mutate-v1-pod-recording` for [`ENABLE_RECORDING_LABEL`], both `failurePolicy: Fail`
//! by default. Differences, on purpose (docs/decisions.md):
//!
//! - The binding webhook also sees `pods/ephemeralcontainers` updates (ephemeral containers
//!   get bound profiles too) and is reinvoked when a later webhook changes the pod
//!   (`reinvocationPolicy: IfNeeded`), so that no webhook after it can undo a binding.
//! - Neither sees DELETE: the webhooks write nothing (`sideEffects: None` is true, and
//!   dry runs are safe); the manager fills `status.activeWorkloads` from the pods.
//! - `admissionReviewVersions: [v1, v1beta1]`.
//! - `staticConfig: true` keeps an existing configuration as it is, except `caBundle`,
//!   which follows the certificates (without it, renewal would break admission).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use spo_model::spod::{FailurePolicy, SpodWebhook};

/// The configuration's name.
pub const CONFIG_NAME: &str = "spo-mutating-webhook-configuration";
/// The binding webhook's name.
pub const BINDING_WEBHOOK: &str = "binding.spo.io";
/// The recording webhook's name.
pub const RECORDING_WEBHOOK: &str = "recording.spo.io";
/// The binding webhook's path.
pub const BINDING_PATH: &str = "/mutate-v1-pod-binding";
/// The recording webhook's path.
pub const RECORDING_PATH: &str = "/mutate-v1-pod-recording";
/// Namespace opt-in for bindings.
pub const ENABLE_BINDING_LABEL: &str = "spo.x-k8s.io/enable-binding";
/// Namespace opt-in for recordings.
pub const ENABLE_RECORDING_LABEL: &str = "spo.x-k8s.io/enable-recording";
/// The Service in front of the webhook pods.
pub const SERVICE_NAME: &str = "webhook-service";
/// Pods never sent to the webhooks (the operator's own), by their `name` label.
pub const EXCLUDED_NAMES: [&str; 2] = ["security-profiles-operator", "security-profiles-operator-webhook"];

/// Where the apiserver reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Through the Service `webhook-service` in `namespace` (in cluster).
    Service {
        /// The operator's namespace.
        namespace: String,
        /// The Service's port.
        port: i32,
    },
    /// At a URL base such as `https://127.0.0.1:9443` (out of cluster, tests).
    Url(String),
}

fn opt_in(label: &str) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: label.to_owned(),
            operator: "Exists".into(),
            values: None,
        }]),
        match_labels: None,
    }
}

fn not_operator() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "name".into(),
            operator: "NotIn".into(),
            values: Some(EXCLUDED_NAMES.iter().map(|s| (*s).to_owned()).collect()),
        }]),
        match_labels: None,
    }
}

fn rule(operations: &[&str], resources: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![String::new()]),
        api_versions: Some(vec!["v1".into()]),
        operations: Some(operations.iter().map(|s| (*s).to_owned()).collect()),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        scope: Some("Namespaced".into()),
    }
}

fn client(endpoint: &Endpoint, path: &str, ca_bundle: &[u8]) -> WebhookClientConfig {
    let ca = (!ca_bundle.is_empty()).then(|| ByteString(ca_bundle.to_vec()));
    match endpoint {
        Endpoint::Service { namespace, port } => WebhookClientConfig {
            ca_bundle: ca,
            service: Some(ServiceReference {
                name: SERVICE_NAME.into(),
                namespace: namespace.clone(),
                path: Some(path.to_owned()),
                port: Some(*port),
            }),
            url: None,
        },
        Endpoint::Url(base) => WebhookClientConfig {
            ca_bundle: ca,
            service: None,
            url: Some(format!("{}{path}", base.trim_end_matches('/'))),
        },
    }
}

/// The configuration for `endpoint`, `ca_bundle` and the SPOD's `webhook` settings.
pub fn build(endpoint: &Endpoint, ca_bundle: &[u8], spod: Option<&SpodWebhook>) -> MutatingWebhookConfiguration {
    let mut hooks = vec![
        MutatingWebhook {
            name: BINDING_WEBHOOK.into(),
            admission_review_versions: vec!["v1".into(), "v1beta1".into()],
            client_config: client(endpoint, BINDING_PATH, ca_bundle),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(opt_in(ENABLE_BINDING_LABEL)),
            object_selector: Some(not_operator()),
            reinvocation_policy: Some("IfNeeded".into()),
            rules: Some(vec![
                rule(&["CREATE"], &["pods"]),
                rule(&["UPDATE"], &["pods/ephemeralcontainers"]),
            ]),
            side_effects: "None".into(),
            timeout_seconds: Some(10),
            match_conditions: None,
        },
        MutatingWebhook {
            name: RECORDING_WEBHOOK.into(),
            admission_review_versions: vec!["v1".into(), "v1beta1".into()],
            client_config: client(endpoint, RECORDING_PATH, ca_bundle),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(opt_in(ENABLE_RECORDING_LABEL)),
            object_selector: Some(not_operator()),
            reinvocation_policy: Some("Never".into()),
            rules: Some(vec![rule(&["CREATE"], &["pods"])]),
            side_effects: "None".into(),
            timeout_seconds: Some(10),
            match_conditions: None,
        },
    ];
    let options: BTreeMap<&str, _> = spod
        .and_then(|w| w.options.as_ref())
        .into_iter()
        .flatten()
        .map(|o| (o.name.as_str(), o))
        .collect();
    for hook in &mut hooks {
        let Some(o) = options.get(hook.name.as_str()) else {
            continue;
        };
        if let Some(p) = o.failure_policy {
            hook.failure_policy = Some(
                match p {
                    FailurePolicy::Ignore => "Ignore",
                    FailurePolicy::Fail => "Fail",
                }
                .into(),
            );
        }
        if let Some(s) = &o.namespace_selector {
            hook.namespace_selector = Some(s.clone());
        }
        if let Some(s) = &o.object_selector {
            hook.object_selector = Some(s.clone());
        }
    }
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIG_NAME.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "spo-webhook".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        webhooks: Some(hooks),
    }
}

/// Whether the SPOD asks for the configuration to be left alone.
pub fn is_static(spod: Option<&SpodWebhook>) -> bool {
    spod.and_then(|w| w.static_config).unwrap_or(false)
}

/// `existing` with its webhooks' `caBundle` set to `ca_bundle` (the static mode).
pub fn with_ca_bundle(existing: &MutatingWebhookConfiguration, ca_bundle: &[u8]) -> MutatingWebhookConfiguration {
    let mut out = existing.clone();
    for hook in out.webhooks.iter_mut().flatten() {
        hook.client_config.ca_bundle = Some(ByteString(ca_bundle.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::spod::WebhookOption;

    #[test]
    fn defaults_match_upstream_names_and_opt_in_labels() {
        let c = build(
            &Endpoint::Service {
                namespace: "spo".into(),
                port: 443,
            },
            b"CA",
            None,
        );
        let hooks = c.webhooks.expect("hooks");
        assert_eq!(hooks[0].name, "binding.spo.io");
        assert_eq!(hooks[1].name, "recording.spo.io");
        let svc = hooks[0].client_config.service.as_ref().expect("service");
        assert_eq!(
            (svc.name.as_str(), svc.path.as_deref()),
            ("webhook-service", Some("/mutate-v1-pod-binding"))
        );
        assert_eq!(hooks[0].failure_policy.as_deref(), Some("Fail"));
        let ns = hooks[1]
            .namespace_selector
            .as_ref()
            .expect("ns")
            .match_expressions
            .as_ref()
            .expect("exprs");
        assert_eq!(
            (ns[0].key.as_str(), ns[0].operator.as_str()),
            ("spo.x-k8s.io/enable-recording", "Exists")
        );
        assert_eq!(hooks[0].side_effects, "None");
        assert_eq!(
            hooks[0].client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()),
            Some(&b"CA"[..])
        );
    }

    #[test]
    fn spod_options_override_per_webhook() {
        let spod = SpodWebhook {
            static_config: None,
            options: Some(vec![WebhookOption {
                name: "recording.spo.io".into(),
                failure_policy: Some(FailurePolicy::Ignore),
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                    match_expressions: None,
                }),
                object_selector: None,
            }]),
        };
        let c = build(&Endpoint::Url("https://127.0.0.1:9443/".into()), b"", Some(&spod));
        let hooks = c.webhooks.expect("hooks");
        assert_eq!(hooks[0].failure_policy.as_deref(), Some("Fail"), "binding untouched");
        assert_eq!(hooks[1].failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(
            hooks[1]
                .namespace_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .map(|m| m.len()),
            Some(1)
        );
        assert_eq!(
            hooks[1].client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/mutate-v1-pod-recording")
        );
        assert!(hooks[1].client_config.ca_bundle.is_none());
    }
}
