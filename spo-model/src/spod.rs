//! `SecurityProfilesOperatorDaemon` (SPOD): the configuration of the node agent.

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
    /// Log verbosity: 0 normal, 1 (or more) debug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub verbosity: Option<i32>,
    /// Serve pprof-style profiling endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enable_profiling: Option<bool>,
    /// Watch only the pods the agent needs (always on in this operator; kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enable_memory_optimization: Option<bool>,
    /// Serve metrics without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enable_insecure_metrics_access: Option<bool>,
    /// Manage AppArmor profiles on nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enable_app_armor: Option<bool>,
    /// Where the host's /proc is mounted in the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/proc(/.*)?$"))]
    pub host_proc_volume_path: Option<String>,
    /// Pull secrets for the agent's images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
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
    #[schemars(extend("default" = "spc_t"))]
    pub type_tag: Option<String>,
    /// Guardrails for SelinuxProfiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub options: Option<SelinuxOptions>,
    /// A ConfigMap of SELinux templates, in the operator's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub custom_templates_config_map: Option<String>,
}

/// Guardrails for SelinuxProfiles: which templates may be inherited and which types,
/// classes and permissions may be allowed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelinuxOptions {
    /// System templates profiles may inherit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_system_profiles: Option<Vec<String>>,
    /// Types no profile may allow (added to the built-in list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub denied_types: Option<Vec<String>>,
    /// Classes no profile may allow (added to the built-in list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub denied_classes: Option<Vec<String>>,
    /// Permissions no profile may allow (added to the built-in list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub denied_permissions: Option<Vec<String>>,
    /// Types exempted from the built-in deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_types: Option<Vec<String>>,
    /// Classes exempted from the built-in deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_classes: Option<Vec<String>>,
    /// Permissions exempted from the built-in deny list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_permissions: Option<Vec<String>>,
}

/// Log enricher and recorder settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpodEnricher {
    /// Enrich audit lines with pod and container names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enable_log_enricher: Option<bool>,
    /// JSON list of filters for the log enricher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_enricher_filters: Option<String>,
    /// Where the log enricher reads audit events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_enricher_source: Option<LogEnricherSource>,
    /// Write enriched events as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enable_json_enricher: Option<bool>,
    /// JSON list of filters for the JSON enricher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_enricher_filters: Option<String>,
    /// Options of the JSON enricher: where it writes, how it rotates, how often it flushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_enricher_options: Option<JsonEnricherOptions>,
    /// Run the eBPF recorder on nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enable_bpf_recorder: Option<bool>,
}

/// Options of the JSON enricher, as SPO v1.0 types them. Every field is optional; the
/// accessors give the value the enricher uses when one is not set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JsonEnricherOptions {
    /// Seconds over which each process's syscalls are grouped before one JSON line is
    /// written (default 60); a longer interval writes less often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub audit_log_interval_seconds: Option<i32>,
    /// File the JSON lines are written to; standard output when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log_path: Option<String>,
    /// Size in megabytes at which the file is rotated (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub audit_log_max_size: Option<i32>,
    /// Rotated files to keep; all of them when not set (`auditLogMaxAge` may still remove
    /// old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub audit_log_max_backups: Option<i32>,
    /// Days to keep rotated files; they are not removed by age when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub audit_log_max_age: Option<i32>,
}

impl JsonEnricherOptions {
    /// `auditLogIntervalSeconds` when not set.
    pub const DEFAULT_INTERVAL_SECONDS: i32 = 60;
    /// `auditLogMaxSize` (megabytes) when not set.
    pub const DEFAULT_MAX_SIZE_MB: i32 = 100;

    /// The grouping interval in seconds.
    pub fn interval_seconds(&self) -> i32 {
        self.audit_log_interval_seconds
            .unwrap_or(Self::DEFAULT_INTERVAL_SECONDS)
    }

    /// The rotation size in megabytes.
    pub fn max_size_mb(&self) -> i32 {
        self.audit_log_max_size.unwrap_or(Self::DEFAULT_MAX_SIZE_MB)
    }

    /// The file to write, `None` for standard output.
    pub fn path(&self) -> Option<&str> {
        self.audit_log_path.as_deref().filter(|p| !p.is_empty())
    }
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
    #[schemars(extend("default" = false))]
    pub static_config: Option<bool>,
    /// Per-webhook overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
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
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the agent's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Priority class of the agent's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "system-node-critical"))]
    pub priority_class_name: Option<String>,
}

/// Policy for the profiles users may create.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SpodSecurity {
    /// When set, seccomp profiles may let only these syscalls run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_syscalls: Option<Vec<String>>,
    /// Actions that count as letting a syscall run (default ALLOW, LOG, TRACE, NOTIFY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub allowed_seccomp_actions: Option<Vec<SeccompAction>>,
    /// Accept unsigned OCI profile artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub disable_oci_artifact_signature_verification: Option<bool>,
    /// Signer identities accepted for OCI artifacts (regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ".*"))]
    pub allowed_identity_regexp: Option<String>,
    /// OIDC issuers accepted for OCI artifacts (regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ".*"))]
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
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
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

        if let Some(v) = spec.verbosity {
            if v < 0 {
                problems.error_hint(
                    root.field("verbosity"),
                    format!("{v} is negative"),
                    "0 logs normally, 1 adds debug logs",
                );
            } else if v > 1 {
                problems.warning_hint(
                    root.field("verbosity"),
                    format!("{v} logs like 1"),
                    "0 logs normally, 1 adds debug logs; nothing more is logged above 1",
                );
            }
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
            if let Some(cm) = &se.custom_templates_config_map
                && !is_dns_subdomain(cm)
            {
                problems.error_hint(
                    sp.field("customTemplatesConfigMap"),
                    format!("{cm:?} is not a ConfigMap name"),
                    "name a ConfigMap in the operator's namespace (no namespace/ prefix), such as selinux-templates",
                );
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
            if let Some(o) = &en.json_enricher_options {
                check_json_enricher_options(&ep.field("jsonEnricherOptions"), o, &mut problems);
                if en.enable_json_enricher != Some(true) {
                    problems.warning_hint(
                        ep.field("jsonEnricherOptions"),
                        "has no effect while enableJsonEnricher is not true",
                        "set enableJsonEnricher: true",
                    );
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

/// The ranges of SPO v1.0's CRD (for typed objects that did not come through the schema)
/// and the path rule the daemon needs.
fn check_json_enricher_options(path: &FieldPath, o: &JsonEnricherOptions, problems: &mut Problems) {
    for (field, value, min) in [
        ("auditLogIntervalSeconds", o.audit_log_interval_seconds, 1),
        ("auditLogMaxSize", o.audit_log_max_size, 1),
        ("auditLogMaxBackups", o.audit_log_max_backups, 0),
        ("auditLogMaxAge", o.audit_log_max_age, 0),
    ] {
        if let Some(v) = value
            && v < min
        {
            problems.error(path.field(field), format!("{v} is less than the minimum {min}"));
        }
    }
    if let Some(p) = &o.audit_log_path
        && (!p.starts_with('/') || p.split('/').any(|c| c == "..") || p.chars().any(char::is_control))
    {
        problems.warning_hint(
            path.field("auditLogPath"),
            format!("{p:?} is not a clean absolute path"),
            "the daemon resolves it in its own container; write an absolute path without '..', such as /var/log/spo/audit.json",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spod_with(options: serde_json::Value) -> Result<SecurityProfilesOperatorDaemon, serde_json::Error> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1",
            "kind": "SecurityProfilesOperatorDaemon",
            "metadata": {"name": "spod", "namespace": "security-profiles-operator"},
            "spec": {"enricher": {"enableJsonEnricher": true, "jsonEnricherOptions": options}},
        }))
    }

    #[test]
    fn json_enricher_options_are_typed_with_upstream_defaults() {
        let spod = spod_with(serde_json::json!({
            "auditLogPath": "/var/log/spo/audit.json",
            "auditLogMaxSize": 20,
            "auditLogMaxBackups": 3,
            "auditLogMaxAge": 7,
            "auditLogIntervalSeconds": 30,
        }))
        .expect("parse");
        let o = spod
            .spec
            .enricher
            .as_ref()
            .and_then(|e| e.json_enricher_options.clone())
            .expect("options");
        assert_eq!(
            (
                o.path(),
                o.max_size_mb(),
                o.audit_log_max_backups,
                o.audit_log_max_age,
                o.interval_seconds()
            ),
            (Some("/var/log/spo/audit.json"), 20, Some(3), Some(7), 30)
        );
        assert!(spod.validate().is_empty(), "{}", spod.validate());
        let unset = JsonEnricherOptions::default();
        assert_eq!(
            (unset.path(), unset.max_size_mb(), unset.interval_seconds()),
            (None, 100, 60)
        );
        assert!(spod_with(serde_json::json!({"auditLogMaxSize": "big"})).is_err());
    }

    #[test]
    fn json_enricher_options_are_checked() {
        let spod = spod_with(serde_json::json!({
            "auditLogIntervalSeconds": 0,
            "auditLogMaxSize": 0,
            "auditLogMaxBackups": -1,
            "auditLogMaxAge": -1,
            "auditLogPath": "audit.json",
        }))
        .expect("parse");
        let problems = spod.validate();
        let base = "spec.enricher.jsonEnricherOptions";
        for field in [
            "auditLogIntervalSeconds",
            "auditLogMaxSize",
            "auditLogMaxBackups",
            "auditLogMaxAge",
        ] {
            let at = format!("{base}.{field}");
            assert!(
                problems.errors().any(|p| p.path.as_str() == at),
                "no error at {at}: {problems}"
            );
        }
        let at = format!("{base}.auditLogPath");
        assert!(
            problems
                .iter()
                .any(|p| p.path.as_str() == at && p.severity == Severity::Warning),
            "{problems}"
        );
    }

    #[test]
    fn json_enricher_options_schema_matches_upstream() {
        let schema = crate::crd::schema_of(crate::document::Kind::SecurityProfilesOperatorDaemon);
        let o = &schema["properties"]["spec"]["properties"]["enricher"]["properties"]["jsonEnricherOptions"];
        assert!(o.get("x-kubernetes-preserve-unknown-fields").is_none(), "{o}");
        let props = &o["properties"];
        for (field, min) in [
            ("auditLogIntervalSeconds", 1),
            ("auditLogMaxSize", 1),
            ("auditLogMaxBackups", 0),
            ("auditLogMaxAge", 0),
        ] {
            assert_eq!(props[field]["type"], "integer", "{field}");
            assert_eq!(props[field]["format"], "int32", "{field}");
            assert_eq!(props[field]["minimum"].as_f64(), Some(f64::from(min)), "{field}");
        }
        assert_eq!(props["auditLogPath"]["type"], "string");
    }
}
