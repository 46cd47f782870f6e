//! `SecurityProfilesOperatorDaemon` (SPOD): the configuration of the node agent.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::seccomp::{SeccompAction, is_syscall_name_syntax};
use crate::selinux::{check_identifier_list, is_selinux_identifier};
use crate::validate::{
    FieldPath, Problems, Severity, check_duplicates, check_label_selector, check_metadata, is_dns_subdomain,
};

/// The configuration of the operator's node agent.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "SecurityProfilesOperatorDaemon",
    plural = "securityprofilesoperatordaemons",
    shortname = "spod",
    namespaced,
    status = "SpodStatus",
    derive = "PartialEq",
    derive = "Default",
    crates(kube_core = "::kube_core"),
    doc = "SecurityProfilesOperatorDaemon configures the operator's node agent.",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SpodSpec {
    /// Log verbosity: 0 normal, 1 debug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub verbosity: Option<u32>,
    /// Serve pprof-style profiling endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_profiling: Option<bool>,
    /// Watch only the pods the agent needs (always on in this operator; kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_memory_optimization: Option<bool>,
    /// Serve metrics without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_insecure_metrics_access: Option<bool>,
    /// Manage AppArmor profiles on nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_app_armor: Option<bool>,
    /// Where the host's /proc is mounted in the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_proc_volume_path: Option<String>,
    /// Pull secrets for the agent's images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Resources of the agent's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_resource_requirements: Option<ResourceRequirements>,
    /// SELinux settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<SpodSelinux>,
    /// Log enricher and eBPF recorder settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enricher: Option<SpodEnricher>,
    /// Admission webhook settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<SpodWebhook>,
    /// Where the agent runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<SpodScheduling>,
    /// Policy for the profiles users may create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SpodSecurity>,
}

/// SELinux settings of the agent.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SpodSelinux {
    /// Manage SelinuxProfiles on nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Also accept RawSelinuxProfiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_raw_selinux_profiles: Option<bool>,
    /// The SELinux type the agent runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_tag: Option<String>,
    /// Guardrails for SelinuxProfiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SelinuxOptions>,
    /// A ConfigMap of extra templates (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_templates_config_map: Option<String>,
}

/// Guardrails for SelinuxProfiles: which templates may be inherited and which types,
/// classes and permissions may be allowed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelinuxOptions {
    /// System templates profiles may inherit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_system_profiles: Option<Vec<String>>,
    /// Types no profile may allow (added to the built-in list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_types: Option<Vec<String>>,
    /// Classes no profile may allow (added to the built-in list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_classes: Option<Vec<String>>,
    /// Permissions no profile may allow (added to the built-in list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_permissions: Option<Vec<String>>,
    /// Types exempted from the built-in deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_types: Option<Vec<String>>,
    /// Classes exempted from the built-in deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_classes: Option<Vec<String>>,
    /// Permissions exempted from the built-in deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_permissions: Option<Vec<String>>,
}

/// Log enricher and recorder settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpodEnricher {
    /// Enrich audit lines with pod and container names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_log_enricher: Option<bool>,
    /// JSON list of filters for the log enricher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_enricher_filters: Option<String>,
    /// Where the log enricher reads audit events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_enricher_source: Option<LogEnricherSource>,
    /// Write enriched events as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_json_enricher: Option<bool>,
    /// JSON list of filters for the JSON enricher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_enricher_filters: Option<String>,
    /// Options of the JSON enricher (audit log path, rotation, flush interval), kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub json_enricher_options: Option<BTreeMap<String, serde_json::Value>>,
    /// Run the eBPF recorder on nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_bpf_recorder: Option<bool>,
}

wire_enum!(
    /// Where the log enricher reads audit events.
    LogEnricherSource {
        /// auditd's log (or syslog as a fallback).
        Auditd = "Auditd",
        /// The kernel, through eBPF.
        Bpf = "Bpf",
    }
);

/// Admission webhook settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpodWebhook {
    /// Do not let the operator rewrite the webhook configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_config: Option<bool>,
    /// Per-webhook overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<WebhookOption>>,
}

/// Overrides for one webhook.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOption {
    /// The webhook's name, such as `binding.spo.io`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `Ignore` or `Fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// Only namespaces with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only objects with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
}

wire_enum!(
    /// What the apiserver does when the webhook cannot be reached.
    FailurePolicy {
        /// Admit the object.
        Ignore = "Ignore",
        /// Reject the object.
        Fail = "Fail",
    }
);

/// Where the agent runs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpodScheduling {
    /// Tolerations of the agent's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the agent's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Priority class of the agent's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Policy for the profiles users may create.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SpodSecurity {
    /// When set, seccomp profiles may let only these syscalls run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_syscalls: Option<Vec<String>>,
    /// Actions that count as letting a syscall run (default ALLOW, LOG, TRACE, NOTIFY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_seccomp_actions: Option<Vec<SeccompAction>>,
    /// Accept unsigned OCI profile artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_oci_artifact_signature_verification: Option<bool>,
    /// Signer identities accepted for OCI artifacts (regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_identity_regexp: Option<String>,
    /// OIDC issuers accepted for OCI artifacts (regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_oidc_issuer_regexp: Option<String>,
}

/// The status of a SPOD.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpodStatus {
    /// The agent's rollout state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SpodState>,
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

wire_enum!(
    /// The agent's rollout state.
    SpodState {
        /// Nothing done yet.
        Pending = "Pending",
        /// The agent is being created.
        Creating = "Creating",
        /// The agent is being updated.
        Updating = "Updating",
        /// The agent runs on every node.
        Running = "Running",
        /// The agent could not be deployed.
        Error = "Error",
    }
);

impl SecurityProfilesOperatorDaemon {
    /// Every problem with this configuration.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, true, &mut problems);
        let spec = &self.spec;
        let root = FieldPath::root().field("spec");

        if let Some(v) = spec.verbosity
            && v > 1
        {
            problems.error_hint(
                root.field("verbosity"),
                format!("{v} is out of range 0..=1"),
                "0 logs normally, 1 adds debug logs",
            );
        }
        if let Some(p) = &spec.host_proc_volume_path
            && (!p.starts_with('/') || p.split('/').any(|c| c == "..") || p.chars().any(char::is_control))
        {
            problems.error_hint(
                root.field("hostProcVolumePath"),
                format!("{p:?} is not a clean absolute path"),
                "write an absolute path without '..', such as /proc",
            );
        }
        for (i, s) in spec.image_pull_secrets.iter().flatten().enumerate() {
            if !is_dns_subdomain(&s.name) {
                problems.error(
                    root.field("imagePullSecrets").index(i).field("name"),
                    "must name a Secret",
                );
            }
        }

        if let Some(sched) = &spec.scheduling {
            for (i, t) in sched.tolerations.iter().flatten().enumerate() {
                let tp = root.field("scheduling").field("tolerations").index(i);
                if let Some(op) = t.operator.as_deref().filter(|op| !["Exists", "Equal"].contains(op)) {
                    problems.error_hint(
                        tp.field("operator"),
                        format!("unknown operator {op:?}"),
                        crate::validate::suggestion(op, ["Exists", "Equal"]),
                    );
                }
                if let Some(e) = t
                    .effect
                    .as_deref()
                    .filter(|e| !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(e))
                {
                    problems.error_hint(
                        tp.field("effect"),
                        format!("unknown effect {e:?}"),
                        crate::validate::suggestion(e, ["NoSchedule", "PreferNoSchedule", "NoExecute"]),
                    );
                }
                if t.operator.as_deref() == Some("Exists") && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                    problems.error(tp.field("value"), "must be empty when operator is Exists");
                }
            }
        }

        if let Some(se) = &spec.selinux {
            let sp = root.field("selinux");
            if let Some(t) = &se.type_tag
                && !is_selinux_identifier(t)
            {
                problems.error(sp.field("typeTag"), format!("{t:?} is not a SELinux type"));
            }
            if let Some(cm) = &se.custom_templates_config_map {
                let ok = match cm.split_once('/') {
                    Some((ns, name)) => is_dns_subdomain(ns) && is_dns_subdomain(name),
                    None => is_dns_subdomain(cm),
                };
                if !ok {
                    problems.error_hint(
                        sp.field("customTemplatesConfigMap"),
                        format!("{cm:?} is not a ConfigMap name"),
                        "write name or namespace/name",
                    );
                }
            }
            if se.enable_raw_selinux_profiles == Some(true) && se.enable == Some(false) {
                problems.warning_hint(
                    sp.field("enableRawSelinuxProfiles"),
                    "has no effect while selinux.enable is false",
                    "set selinux.enable: true",
                );
            }
            if let Some(o) = &se.options {
                let op = sp.field("options");
                let lists: [(&str, &Option<Vec<String>>, &str); 7] = [
                    ("allowedSystemProfiles", &o.allowed_system_profiles, "template name"),
                    ("deniedTypes", &o.denied_types, "type"),
                    ("deniedClasses", &o.denied_classes, "class"),
                    ("deniedPermissions", &o.denied_permissions, "permission"),
                    ("allowedTypes", &o.allowed_types, "type"),
                    ("allowedClasses", &o.allowed_classes, "class"),
                    ("allowedPermissions", &o.allowed_permissions, "permission"),
                ];
                for (field, values, what) in lists {
                    if let Some(values) = values {
                        check_identifier_list(&op.field(field), values, what, &mut problems);
                    }
                }
                for (allowed_field, allowed, denied_field, denied) in [
                    ("allowedTypes", &o.allowed_types, "deniedTypes", &o.denied_types),
                    ("allowedClasses", &o.allowed_classes, "deniedClasses", &o.denied_classes),
                    (
                        "allowedPermissions",
                        &o.allowed_permissions,
                        "deniedPermissions",
                        &o.denied_permissions,
                    ),
                ] {
                    for (i, a) in allowed.iter().flatten().enumerate() {
                        if denied.iter().flatten().any(|d| d == a) {
                            problems.error_hint(
                                op.field(allowed_field).index(i),
                                format!("{a} is both allowed and listed in {denied_field}"),
                                "remove it from one of the two lists",
                            );
                        }
                    }
                }
            }
        }

        if let Some(en) = &spec.enricher {
            let ep = root.field("enricher");
            for (field, value) in [
                ("logEnricherFilters", &en.log_enricher_filters),
                ("jsonEnricherFilters", &en.json_enricher_filters),
            ] {
                if let Some(text) = value {
                    match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(serde_json::Value::Array(_)) => {}
                        Ok(_) => problems.error_hint(
                            ep.field(field),
                            "is not a JSON list",
                            r#"write a JSON list such as [{"priority":100,"level":"Metadata"}]"#,
                        ),
                        Err(e) => problems.error_hint(
                            ep.field(field),
                            format!("is not valid JSON: {e}"),
                            "write a JSON list of filters",
                        ),
                    }
                }
            }
            if en.log_enricher_source.is_some() && en.enable_log_enricher != Some(true) {
                problems.warning_hint(
                    ep.field("logEnricherSource"),
                    "has no effect while enableLogEnricher is not true",
                    "set enableLogEnricher: true",
                );
            }
        }

        if let Some(wh) = &spec.webhook {
            for (i, o) in wh.options.iter().flatten().enumerate() {
                let op = root.field("webhook").field("options").index(i);
                if o.name.is_empty() {
                    problems.error(op.field("name"), "required field is empty");
                }
                if let Some(s) = &o.namespace_selector {
                    check_label_selector(&op.field("namespaceSelector"), s, &mut problems);
                }
                if let Some(s) = &o.object_selector {
                    check_label_selector(&op.field("objectSelector"), s, &mut problems);
                }
            }
        }

        if let Some(sec) = &spec.security {
            let sp = root.field("security");
            if let Some(names) = &sec.allowed_syscalls {
                for (i, n) in names.iter().enumerate() {
                    if !is_syscall_name_syntax(n) {
                        problems.error(
                            sp.field("allowedSyscalls").index(i),
                            format!("{n:?} is not a syscall name"),
                        );
                    }
                }
                check_duplicates(
                    &sp.field("allowedSyscalls"),
                    names.iter().map(String::as_str),
                    Severity::Warning,
                    &mut problems,
                );
                if names.is_empty() {
                    problems.warning_hint(
                        sp.field("allowedSyscalls"),
                        "an empty list lets no profile allow any syscall",
                        "list the syscalls profiles may allow, or remove the field to allow all",
                    );
                }
            }
            for (field, value) in [
                ("allowedIdentityRegexp", &sec.allowed_identity_regexp),
                ("allowedOidcIssuerRegexp", &sec.allowed_oidc_issuer_regexp),
            ] {
                if let Some(re) = value
                    && let Err(e) = regex::Regex::new(re)
                {
                    problems.error(sp.field(field), format!("is not a valid regular expression: {e}"));
                }
            }
        }
        problems
    }
}
