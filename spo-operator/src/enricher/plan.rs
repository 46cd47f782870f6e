//! The enricher's decisions, pure: what the SPOD switches on and how, where the records are
//! read, and which containers a pod has.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use spo_enrich::attribution::{ContainerId, ContainerInfo};
use spo_enrich::enriched::EnricherFilters;
use spo_enrich::rotate::RotatePolicy;
use spo_model::SecurityProfilesOperatorDaemon;
use spo_model::names::ANNOTATION_TRACE_LOGS;
use spo_model::spod::{JsonEnricherOptions, LogEnricherSource};

/// Where records are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    /// auditd's log; the kernel log while that file does not exist (no auditd on the node),
    /// as upstream falls back to syslog.
    Auditd,
    /// The kernel log only (`logEnricherSource: Bpf`; see docs/decisions.md).
    KernelLog,
}

/// Where the JSON enricher writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonTarget {
    /// Standard output (no `auditLogPath`).
    Stdout,
    /// A rotated file.
    File {
        /// The file.
        path: PathBuf,
        /// How it rotates.
        policy: RotatePolicy,
    },
}

/// The JSON enricher's settings.
#[derive(Debug, Clone)]
pub struct JsonSettings {
    /// `jsonEnricherFilters`.
    pub filters: EnricherFilters,
    /// Where the lines go.
    pub target: JsonTarget,
    /// `auditLogIntervalSeconds`: how long each process's calls are grouped.
    pub interval: Duration,
}

/// What the SPOD asks of the enricher.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The log enricher (`enableLogEnricher`), with `logEnricherFilters`.
    pub log: Option<EnricherFilters>,
    /// The JSON enricher (`enableJsonEnricher`).
    pub json: Option<JsonSettings>,
    /// `logEnricherSource`.
    pub source: SourceChoice,
}

impl Settings {
    /// Nothing on.
    pub fn off() -> Settings {
        Settings {
            log: None,
            json: None,
            source: SourceChoice::Auditd,
        }
    }

    /// Whether anything reads records.
    pub fn is_on(&self) -> bool {
        self.log.is_some() || self.json.is_some()
    }
}

/// A SPOD setting the enricher cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.enricher.{field}: {why}")]
pub struct SettingError {
    /// The field under `spec.enricher`.
    pub field: &'static str,
    /// What is wrong.
    pub why: String,
}

/// Directories the JSON enricher never writes under: kernel interfaces and devices.
const FORBIDDEN_ROOTS: [&str; 4] = ["/proc", "/sys", "/dev", "/run/secrets"];

/// Checks `auditLogPath`: absolute, normal (no `.` or `..`), naming a file, not under a
/// kernel interface. The file itself is opened without following links and must be regular
/// ([`spo_enrich::rotate`]).
pub fn audit_log_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("{text:?} must be an absolute path"));
    }
    if text.contains('\0') {
        return Err("the path holds a NUL byte".into());
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("{text:?} must not hold . or .. components"));
    }
    if path.file_name().is_none() || text.ends_with('/') {
        return Err(format!("{text:?} must name a file"));
    }
    if let Some(root) = FORBIDDEN_ROOTS.iter().find(|r| path.starts_with(r)) {
        return Err(format!("{text:?} is under {root}, where no log may be written"));
    }
    Ok(path.to_owned())
}

fn positive(value: i32, field: &'static str) -> Result<u64, SettingError> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| SettingError {
            field,
            why: format!("{value} must be at least 1"),
        })
}

fn json_settings(filters: Option<&str>, options: Option<&JsonEnricherOptions>) -> Result<JsonSettings, SettingError> {
    let filters = EnricherFilters::parse(filters.unwrap_or_default()).map_err(|e| SettingError {
        field: "jsonEnricherFilters",
        why: e.to_string(),
    })?;
    let default = JsonEnricherOptions::default();
    let options = options.unwrap_or(&default);
    let interval = positive(
        options.interval_seconds(),
        "jsonEnricherOptions.auditLogIntervalSeconds",
    )?;
    let target = match options.path() {
        None => JsonTarget::Stdout,
        Some(text) => {
            let path = audit_log_path(text).map_err(|why| SettingError {
                field: "jsonEnricherOptions.auditLogPath",
                why,
            })?;
            let max_mb = positive(options.max_size_mb(), "jsonEnricherOptions.auditLogMaxSize")?;
            let max_backups = options
                .audit_log_max_backups
                .map(|n| {
                    u32::try_from(n).map_err(|_| SettingError {
                        field: "jsonEnricherOptions.auditLogMaxBackups",
                        why: format!("{n} must not be negative"),
                    })
                })
                .transpose()?;
            let max_age = options
                .audit_log_max_age
                .map(|d| {
                    u64::try_from(d)
                        .map(|d| Duration::from_secs(d * 86_400))
                        .map_err(|_| SettingError {
                            field: "jsonEnricherOptions.auditLogMaxAge",
                            why: format!("{d} must not be negative"),
                        })
                })
                .transpose()?;
            JsonTarget::File {
                path,
                policy: RotatePolicy {
                    max_bytes: max_mb.saturating_mul(1 << 20),
                    max_backups,
                    // 0 days: upstream's rotation library keeps files regardless of age.
                    max_age: max_age.filter(|a| !a.is_zero()),
                },
            }
        }
    };
    Ok(JsonSettings {
        filters,
        target,
        interval: Duration::from_secs(interval),
    })
}

/// What a SPOD asks of the enricher, or the first setting it cannot use.
pub fn settings(spod: &SecurityProfilesOperatorDaemon) -> Result<Settings, SettingError> {
    let Some(e) = spod.spec.enricher.as_ref() else {
        return Ok(Settings::off());
    };
    let log = if e.enable_log_enricher == Some(true) {
        Some(
            EnricherFilters::parse(e.log_enricher_filters.as_deref().unwrap_or_default()).map_err(|err| {
                SettingError {
                    field: "logEnricherFilters",
                    why: err.to_string(),
                }
            })?,
        )
    } else {
        None
    };
    let json = if e.enable_json_enricher == Some(true) {
        Some(json_settings(
            e.json_enricher_filters.as_deref(),
            e.json_enricher_options.as_ref(),
        )?)
    } else {
        None
    };
    let source = match e.log_enricher_source {
        Some(LogEnricherSource::Bpf) => SourceChoice::KernelLog,
        Some(LogEnricherSource::Auditd) | None => SourceChoice::Auditd,
    };
    Ok(Settings { log, json, source })
}

/// The containers of `pod` (every run's id, init and ephemeral containers too), as the pod
/// index keeps them; a container recorded by the log recorder carries its recording's
/// annotation value.
pub fn pod_containers(pod: &Pod) -> Vec<(ContainerId, ContainerInfo)> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.as_ref();
    let mut out = Vec::new();
    for (container, ids) in crate::recorder::plan::container_ids(pod) {
        let record_profile = annotations
            .and_then(|a| a.get(&format!("{ANNOTATION_TRACE_LOGS}{container}")))
            .cloned();
        for id in ids {
            // Ids that are not 64 hex digits (a runtime we do not know) cannot match a
            // cgroup path: left out.
            if let Some(id) = ContainerId::parse(&id) {
                out.push((
                    id,
                    ContainerInfo {
                        namespace: namespace.clone(),
                        pod: name.clone(),
                        container: container.clone(),
                        record_profile: record_profile.clone(),
                    },
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
    use kube::api::ObjectMeta;

    use super::*;

    fn spod(enricher: serde_json::Value) -> SecurityProfilesOperatorDaemon {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1",
            "kind": "SecurityProfilesOperatorDaemon",
            "metadata": {"name": "spod", "namespace": "security-profiles-operator"},
            "spec": {"enricher": enricher},
        }))
        .expect("spod")
    }

    #[test]
    fn the_spod_switches_each_output() {
        let s = settings(&spod(serde_json::json!({}))).expect("settings");
        assert!(!s.is_on());
        let s = settings(&spod(serde_json::json!({"enableLogEnricher": true}))).expect("settings");
        assert!(s.log.is_some() && s.json.is_none());
        assert_eq!(s.source, SourceChoice::Auditd);
        let s = settings(&spod(serde_json::json!({
            "enableJsonEnricher": true,
            "logEnricherSource": "Bpf",
            "jsonEnricherOptions": {"auditLogPath": "/var/log/spo/audit.log", "auditLogMaxSize": 2,
                                    "auditLogMaxBackups": 3, "auditLogMaxAge": 1, "auditLogIntervalSeconds": 5},
        })))
        .expect("settings");
        assert!(s.log.is_none());
        assert_eq!(s.source, SourceChoice::KernelLog);
        let json = s.json.expect("json");
        assert_eq!(json.interval, Duration::from_secs(5));
        assert_eq!(
            json.target,
            JsonTarget::File {
                path: "/var/log/spo/audit.log".into(),
                policy: RotatePolicy {
                    max_bytes: 2 << 20,
                    max_backups: Some(3),
                    max_age: Some(Duration::from_secs(86_400)),
                },
            }
        );
        // Defaults: standard output, 60 s.
        let s = settings(&spod(serde_json::json!({"enableJsonEnricher": true}))).expect("settings");
        let json = s.json.expect("json");
        assert_eq!(
            (json.target, json.interval),
            (JsonTarget::Stdout, Duration::from_secs(60))
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        let err = |v| settings(&spod(v)).expect_err("refused");
        let e = err(serde_json::json!({"enableLogEnricher": true, "logEnricherFilters": "[{"}));
        assert_eq!(e.field, "logEnricherFilters");
        let e = err(serde_json::json!({"enableJsonEnricher": true, "jsonEnricherFilters": "[{\"priority\":1}]"}));
        assert_eq!(e.field, "jsonEnricherFilters");
        for path in [
            "relative/audit.log",
            "/var/log/../../etc/shadow",
            "/var/log/spo/",
            "/proc/self/mem",
            "/dev/sda",
        ] {
            let e = err(serde_json::json!({"enableJsonEnricher": true, "jsonEnricherOptions": {"auditLogPath": path}}));
            assert_eq!(e.field, "jsonEnricherOptions.auditLogPath", "{path}");
        }
        let e =
            err(serde_json::json!({"enableJsonEnricher": true, "jsonEnricherOptions": {"auditLogIntervalSeconds": 0}}));
        assert_eq!(e.field, "jsonEnricherOptions.auditLogIntervalSeconds");
        let e = err(serde_json::json!({"enableJsonEnricher": true,
            "jsonEnricherOptions": {"auditLogPath": "/var/log/a.log", "auditLogMaxBackups": -1}}));
        assert_eq!(e.field, "jsonEnricherOptions.auditLogMaxBackups");
        // Filters of an output that is off are not read (as upstream, which passes them to
        // the container that is not started).
        assert!(settings(&spod(serde_json::json!({"logEnricherFilters": "[{"}))).is_ok());
    }

    #[test]
    fn pods_give_every_containers_ids_and_log_recording_marks() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("team-a".into()),
                annotations: Some([(format!("{ANNOTATION_TRACE_LOGS}app"), "rec_app_x_1".to_owned())].into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![
                    ContainerStatus {
                        name: "app".into(),
                        container_id: Some(format!("containerd://{a}")),
                        ..ContainerStatus::default()
                    },
                    ContainerStatus {
                        name: "side".into(),
                        container_id: Some(format!("cri-o://{b}")),
                        ..ContainerStatus::default()
                    },
                    ContainerStatus {
                        name: "odd".into(),
                        container_id: Some("other://not-hex".into()),
                        ..ContainerStatus::default()
                    },
                ]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        let got = pod_containers(&pod);
        assert_eq!(got.len(), 2, "{got:?}");
        let app = got.iter().find(|(_, i)| i.container == "app").expect("app");
        assert_eq!(app.0.as_str(), a);
        assert_eq!(
            (
                app.1.namespace.as_str(),
                app.1.pod.as_str(),
                app.1.record_profile.as_deref()
            ),
            ("team-a", "web", Some("rec_app_x_1"))
        );
        let side = got.iter().find(|(_, i)| i.container == "side").expect("side");
        assert_eq!((side.0.as_str(), side.1.record_profile.as_deref()), (b.as_str(), None));
    }
}
