//! Prometheus metrics with upstream's names, so existing dashboards keep working.
//!
//! Families (prefix `security_profiles_operator_`), for each profile kind (`seccomp`,
//! `selinux`, `apparmor`):
//!
//! - `<kind>_profile_total{operation}`: profiles written to (`update`) or removed from
//!   (`delete`) this node;
//! - `<kind>_profile_error_total{reason}`: errors, with upstream's reason values
//!   (`InvalidSeccompProfile`, `ProfileNotAllowed`, `CannotSaveSeccompProfile`, ...). A
//!   profile that stays broken counts once per distinct error, not once per retry.
//!
//! Plus `leader` (a gauge, 1 while this manager replica holds the lease). Labels only ever
//! take the values of [`Operation`] and [`ErrorReason`], so the series count is fixed; every
//! series exists from the start (at 0), so `rate()` works from the first scrape.
//!
//! The enricher counts audit records in `<kind>_profile_audit_total` with upstream's labels:
//! `node namespace pod container syscall` (seccomp), `node namespace pod container scontext
//! tcontext` (SELinux), `node namespace pod container profile operation apparmor` (AppArmor).
//! These values come from the node's workloads, so the series are bounded: a pod's series go
//! when the enricher forgets the pod ([`Metrics::forget_pod_audits`]), values are cut at
//! [`MAX_LABEL_VALUE`] bytes, and past [`MAX_AUDIT_SERIES`] series a new label set is counted
//! in its family's overflow series (every label `_overflow` but `node`).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use spo_model::contract::ProfileKind;

/// The metric name prefix upstream uses.
pub const PREFIX: &str = "security_profiles_operator";

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What happened to a profile on the node (`operation` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Written (new or changed).
    Update,
    /// Removed.
    Delete,
}

impl Operation {
    /// Every value.
    pub const ALL: [Operation; 2] = [Operation::Update, Operation::Delete];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// Why a profile failed (`reason` label), as upstream names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// The node cannot enforce the kind.
    NotSupportedOnNode,
    /// The profile is invalid (validation, unknown syscalls, missing base profiles...).
    InvalidProfile,
    /// The SPOD policy forbids what the profile allows.
    ProfileNotAllowed,
    /// Writing the artifact failed.
    CannotSaveProfile,
    /// Removing the artifact failed.
    CannotRemoveProfile,
    /// Writing the profile object (its finalizer) failed.
    CannotUpdateProfile,
    /// Writing the node status failed.
    CannotUpdateNodeStatus,
}

impl ErrorReason {
    /// Every value.
    pub const ALL: [ErrorReason; 7] = [
        ErrorReason::NotSupportedOnNode,
        ErrorReason::InvalidProfile,
        ErrorReason::ProfileNotAllowed,
        ErrorReason::CannotSaveProfile,
        ErrorReason::CannotRemoveProfile,
        ErrorReason::CannotUpdateProfile,
        ErrorReason::CannotUpdateNodeStatus,
    ];

    /// The label value for `kind` (upstream spells the kind into most reasons).
    pub fn as_str(self, kind: ProfileKind) -> &'static str {
        use ErrorReason::*;
        match (self, metric_kind(kind)) {
            (ProfileNotAllowed, _) => "ProfileNotAllowed",
            (CannotUpdateNodeStatus, _) => "CannotUpdateNodeStatus",
            (NotSupportedOnNode, MetricKind::Seccomp) => "SeccompNotSupportedOnNode",
            (NotSupportedOnNode, MetricKind::Selinux) => "SelinuxNotSupportedOnNode",
            (NotSupportedOnNode, MetricKind::AppArmor) => "AppArmorNotSupportedOnNode",
            (InvalidProfile, MetricKind::Seccomp) => "InvalidSeccompProfile",
            (InvalidProfile, MetricKind::Selinux) => "InvalidSelinuxProfile",
            (InvalidProfile, MetricKind::AppArmor) => "InvalidAppArmorProfile",
            (CannotSaveProfile, MetricKind::Seccomp) => "CannotSaveSeccompProfile",
            (CannotSaveProfile, MetricKind::Selinux) => "CannotSaveSelinuxProfile",
            (CannotSaveProfile, MetricKind::AppArmor) => "CannotSaveAppArmorProfile",
            (CannotRemoveProfile, MetricKind::Seccomp) => "CannotRemoveSeccompProfile",
            (CannotRemoveProfile, MetricKind::Selinux) => "CannotRemoveSelinuxProfile",
            (CannotRemoveProfile, MetricKind::AppArmor) => "CannotRemoveAppArmorProfile",
            (CannotUpdateProfile, MetricKind::Seccomp) => "CannotUpdateSeccompProfile",
            (CannotUpdateProfile, MetricKind::Selinux) => "CannotUpdateSelinuxProfile",
            (CannotUpdateProfile, MetricKind::AppArmor) => "CannotUpdateAppArmorProfile",
        }
    }
}

/// The three metric families' kinds (both SELinux kinds count as `selinux`, as upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum MetricKind {
    Seccomp,
    Selinux,
    AppArmor,
}

fn metric_kind(kind: ProfileKind) -> MetricKind {
    match kind {
        ProfileKind::Seccomp => MetricKind::Seccomp,
        ProfileKind::Selinux | ProfileKind::RawSelinux => MetricKind::Selinux,
        ProfileKind::AppArmor => MetricKind::AppArmor,
    }
}

type Labels = [(&'static str, &'static str); 1];

/// An audit series' labels, in upstream's order.
type AuditLabels = Vec<(&'static str, String)>;

/// The most audit series kept, over the three families.
pub const MAX_AUDIT_SERIES: usize = 4096;
/// The longest audit label value kept (longer ones are cut on a character boundary).
pub const MAX_LABEL_VALUE: usize = 256;
/// The value of every label but `node` in an audit family's overflow series.
pub const OVERFLOW: &str = "_overflow";

/// One audit record as the metrics count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent<'a> {
    /// This node.
    pub node: &'a str,
    /// The pod's namespace, pod and container (empty for the node's own processes).
    pub namespace: &'a str,
    /// The pod.
    pub pod: &'a str,
    /// The container.
    pub container: &'a str,
    /// What the record is about.
    pub what: AuditWhat<'a>,
}

/// The kind-specific labels of an audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditWhat<'a> {
    /// Seccomp: the call's name.
    Seccomp {
        /// The syscall.
        syscall: &'a str,
    },
    /// SELinux: source and target contexts.
    Selinux {
        /// Source context.
        scontext: &'a str,
        /// Target context.
        tcontext: &'a str,
    },
    /// AppArmor: the profile, the operation and the decision.
    AppArmor {
        /// The profile.
        profile: &'a str,
        /// The operation.
        operation: &'a str,
        /// `DENIED`, `ALLOWED`, `AUDIT`...
        apparmor: &'a str,
    },
}

fn label_value(value: &str) -> String {
    let mut end = value.len().min(MAX_LABEL_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

impl AuditEvent<'_> {
    fn kind(&self) -> MetricKind {
        match self.what {
            AuditWhat::Seccomp { .. } => MetricKind::Seccomp,
            AuditWhat::Selinux { .. } => MetricKind::Selinux,
            AuditWhat::AppArmor { .. } => MetricKind::AppArmor,
        }
    }

    fn labels(&self) -> AuditLabels {
        let mut l = vec![
            ("node", label_value(self.node)),
            ("namespace", label_value(self.namespace)),
            ("pod", label_value(self.pod)),
            ("container", label_value(self.container)),
        ];
        match self.what {
            AuditWhat::Seccomp { syscall } => l.push(("syscall", label_value(syscall))),
            AuditWhat::Selinux { scontext, tcontext } => {
                l.push(("scontext", label_value(scontext)));
                l.push(("tcontext", label_value(tcontext)));
            }
            AuditWhat::AppArmor {
                profile,
                operation,
                apparmor,
            } => {
                l.push(("profile", label_value(profile)));
                l.push(("operation", label_value(operation)));
                l.push(("apparmor", label_value(apparmor)));
            }
        }
        l
    }
}

/// The audit series that exist, by pod, to bound and forget them.
#[derive(Debug, Default)]
struct AuditSeries {
    count: usize,
    by_pod: HashMap<(String, String), HashSet<(MetricKind, AuditLabels)>>,
}

#[derive(Debug, Default)]
struct AuditFamilies {
    seccomp: Family<AuditLabels, Counter>,
    selinux: Family<AuditLabels, Counter>,
    apparmor: Family<AuditLabels, Counter>,
    series: Mutex<AuditSeries>,
}

impl AuditFamilies {
    fn family(&self, kind: MetricKind) -> &Family<AuditLabels, Counter> {
        match kind {
            MetricKind::Seccomp => &self.seccomp,
            MetricKind::Selinux => &self.selinux,
            MetricKind::AppArmor => &self.apparmor,
        }
    }
}

#[derive(Debug, Default)]
struct KindFamilies {
    operations: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
}

/// The process's metrics. Cheap to share (`Arc`); counting is lock-free after the first use
/// of a label value.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    seccomp: KindFamilies,
    selinux: KindFamilies,
    apparmor: KindFamilies,
    audit: AuditFamilies,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family registered, every series at 0.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = |registry: &mut Registry, kind: ProfileKind, word: &str| {
            let f = KindFamilies::default();
            registry.register(
                format!("{word}_profile"),
                format!("Amount of {word} profile operations on this node."),
                f.operations.clone(),
            );
            registry.register(
                format!("{word}_profile_error"),
                format!("Amount of {word} profile errors."),
                f.errors.clone(),
            );
            for op in Operation::ALL {
                let _ = f.operations.get_or_create(&[("operation", op.as_str())]);
            }
            for reason in ErrorReason::ALL {
                let _ = f.errors.get_or_create(&[("reason", reason.as_str(kind))]);
            }
            f
        };
        let seccomp = families(&mut registry, ProfileKind::Seccomp, "seccomp");
        let selinux = families(&mut registry, ProfileKind::Selinux, "selinux");
        let apparmor = families(&mut registry, ProfileKind::AppArmor, "apparmor");
        let audit = AuditFamilies::default();
        for (word, family) in [
            ("seccomp", &audit.seccomp),
            ("selinux", &audit.selinux),
            ("apparmor", &audit.apparmor),
        ] {
            registry.register(
                format!("{word}_profile_audit"),
                format!("Counter about {word} profile audits, requires the log enricher to be enabled."),
                family.clone(),
            );
        }
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this manager replica holds the leader lease, else 0.",
            leader.clone(),
        );
        Metrics {
            registry,
            seccomp,
            selinux,
            apparmor,
            audit,
            leader,
        }
    }

    /// Counts an audit record the log enricher logged (bounded; see the module docs).
    pub fn audit(&self, event: &AuditEvent<'_>) {
        let kind = event.kind();
        let mut labels = event.labels();
        {
            let Ok(mut series) = self.audit.series.lock() else {
                return;
            };
            let pod = (labels[1].1.clone(), labels[2].1.clone());
            let known = series
                .by_pod
                .get(&pod)
                .is_some_and(|s| s.contains(&(kind, labels.clone())));
            if !known {
                if series.count >= MAX_AUDIT_SERIES {
                    for (_, value) in labels.iter_mut().skip(1) {
                        *value = OVERFLOW.to_owned();
                    }
                } else {
                    series.count += 1;
                    series.by_pod.entry(pod).or_default().insert((kind, labels.clone()));
                }
            }
        }
        self.audit.family(kind).get_or_create(&labels).inc();
    }

    /// Drops the audit series of a pod the enricher no longer knows.
    pub fn forget_pod_audits(&self, namespace: &str, pod: &str) {
        let Ok(mut series) = self.audit.series.lock() else {
            return;
        };
        let key = (label_value(namespace), label_value(pod));
        if let Some(gone) = series.by_pod.remove(&key) {
            series.count -= gone.len();
            for (kind, labels) in gone {
                self.audit.family(kind).remove(&labels);
            }
        }
    }

    /// The value of an audit series (for tests and logs); 0 when it does not exist.
    pub fn audit_count(&self, event: &AuditEvent<'_>) -> u64 {
        let labels = event.labels();
        let family = self.audit.family(event.kind());
        family.get(&labels).map_or(0, |c| c.get())
    }

    fn families(&self, kind: ProfileKind) -> &KindFamilies {
        match metric_kind(kind) {
            MetricKind::Seccomp => &self.seccomp,
            MetricKind::Selinux => &self.selinux,
            MetricKind::AppArmor => &self.apparmor,
        }
    }

    /// Counts a profile written to or removed from the node.
    pub fn operation(&self, kind: ProfileKind, op: Operation) {
        self.families(kind)
            .operations
            .get_or_create(&[("operation", op.as_str())])
            .inc();
    }

    /// Counts an error.
    pub fn error(&self, kind: ProfileKind, reason: ErrorReason) {
        self.families(kind)
            .errors
            .get_or_create(&[("reason", reason.as_str(kind))])
            .inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The current value of a counter (for tests and logs).
    pub fn operation_count(&self, kind: ProfileKind, op: Operation) -> u64 {
        self.families(kind)
            .operations
            .get_or_create(&[("operation", op.as_str())])
            .get()
    }

    /// The current value of an error counter (for tests and logs).
    pub fn error_count(&self, kind: ProfileKind, reason: ErrorReason) -> u64 {
        self.families(kind)
            .errors
            .get_or_create(&[("reason", reason.as_str(kind))])
            .get()
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing into a String cannot fail; keep the endpoint answering regardless.
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names_and_bounded_labels_from_the_start() {
        let m = Metrics::new();
        let text = m.render();
        for line in [
            "security_profiles_operator_seccomp_profile_total{operation=\"update\"} 0",
            "security_profiles_operator_seccomp_profile_total{operation=\"delete\"} 0",
            "security_profiles_operator_seccomp_profile_error_total{reason=\"InvalidSeccompProfile\"} 0",
            "security_profiles_operator_seccomp_profile_error_total{reason=\"ProfileNotAllowed\"} 0",
            "security_profiles_operator_seccomp_profile_error_total{reason=\"CannotUpdateNodeStatus\"} 0",
            "security_profiles_operator_selinux_profile_error_total{reason=\"InvalidSelinuxProfile\"} 0",
            "security_profiles_operator_apparmor_profile_total{operation=\"update\"} 0",
            "security_profiles_operator_leader 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(series, 3 * (2 + 7) + 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn counting_moves_only_the_named_series() {
        let m = Metrics::new();
        m.operation(ProfileKind::Seccomp, Operation::Update);
        m.operation(ProfileKind::Seccomp, Operation::Update);
        m.error(ProfileKind::Seccomp, ErrorReason::ProfileNotAllowed);
        m.error(ProfileKind::RawSelinux, ErrorReason::InvalidProfile);
        m.set_leader(true);
        assert_eq!(m.operation_count(ProfileKind::Seccomp, Operation::Update), 2);
        assert_eq!(m.operation_count(ProfileKind::Seccomp, Operation::Delete), 0);
        assert_eq!(m.operation_count(ProfileKind::AppArmor, Operation::Update), 0);
        assert_eq!(m.error_count(ProfileKind::Selinux, ErrorReason::InvalidProfile), 1);
        let text = m.render();
        assert!(text.contains("security_profiles_operator_seccomp_profile_total{operation=\"update\"} 2"));
        assert!(
            text.contains("security_profiles_operator_seccomp_profile_error_total{reason=\"ProfileNotAllowed\"} 1")
        );
        assert!(
            text.contains("security_profiles_operator_selinux_profile_error_total{reason=\"InvalidSelinuxProfile\"} 1")
        );
        assert!(text.contains("security_profiles_operator_leader 1"));
    }

    fn seccomp<'a>(pod: &'a str, syscall: &'a str) -> AuditEvent<'a> {
        AuditEvent {
            node: "node-1",
            namespace: "team-a",
            pod,
            container: "app",
            what: AuditWhat::Seccomp { syscall },
        }
    }

    #[test]
    fn audit_series_have_upstreams_labels_and_are_bounded() {
        let m = Metrics::new();
        m.audit(&seccomp("web-0", "mkdir"));
        m.audit(&seccomp("web-0", "mkdir"));
        m.audit(&AuditEvent {
            what: AuditWhat::AppArmor {
                profile: "spo-web",
                operation: "open",
                apparmor: "DENIED",
            },
            ..seccomp("web-0", "")
        });
        m.audit(&AuditEvent {
            what: AuditWhat::Selinux {
                scontext: "system_u:system_r:container_t:s0",
                tcontext: "system_u:object_r:var_t:s0",
            },
            ..seccomp("web-1", "")
        });
        let text = m.render();
        for line in [
            "security_profiles_operator_seccomp_profile_audit_total{node=\"node-1\",namespace=\"team-a\",pod=\"web-0\",container=\"app\",syscall=\"mkdir\"} 2",
            "security_profiles_operator_apparmor_profile_audit_total{node=\"node-1\",namespace=\"team-a\",pod=\"web-0\",container=\"app\",profile=\"spo-web\",operation=\"open\",apparmor=\"DENIED\"} 1",
            "security_profiles_operator_selinux_profile_audit_total{node=\"node-1\",namespace=\"team-a\",pod=\"web-1\",container=\"app\",scontext=\"system_u:system_r:container_t:s0\",tcontext=\"system_u:object_r:var_t:s0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // A forgotten pod's series go; the others stay.
        m.forget_pod_audits("team-a", "web-0");
        assert_eq!(m.audit_count(&seccomp("web-0", "mkdir")), 0);
        assert!(!m.render().contains("pod=\"web-0\""));
        assert!(m.render().contains("pod=\"web-1\""));

        // Past the bound, new label sets land in the overflow series; known ones still count.
        let names: Vec<String> = (0..MAX_AUDIT_SERIES + 10).map(|i| format!("call{i}")).collect();
        for n in &names {
            m.audit(&seccomp("many", n));
        }
        m.audit(&seccomp("many", &names[0]));
        assert_eq!(m.audit_count(&seccomp("many", &names[0])), 2);
        let overflow = AuditEvent {
            node: "node-1",
            namespace: OVERFLOW,
            pod: OVERFLOW,
            container: OVERFLOW,
            what: AuditWhat::Seccomp { syscall: OVERFLOW },
        };
        // 4096 series: web-1's SELinux one and 4095 of "many"; 11 calls overflowed.
        assert_eq!(m.audit_count(&overflow), 11);
        let series = m
            .render()
            .lines()
            .filter(|l| l.contains("_profile_audit_total{"))
            .count();
        assert_eq!(series, MAX_AUDIT_SERIES + 1, "the bound plus one overflow series");
        // Hostile values: escaped by the encoder, cut in length.
        let long = "x".repeat(10_000);
        m.forget_pod_audits("team-a", "many");
        m.audit(&seccomp("evil\"} 1\nforged_metric 9", &long));
        let text = m.render();
        assert!(!text.lines().any(|l| l.starts_with("forged_metric")), "{text}");
        assert!(!text.contains(&"x".repeat(MAX_LABEL_VALUE + 1)));
    }

    #[test]
    fn reason_values_are_distinct_per_kind() {
        for kind in [ProfileKind::Seccomp, ProfileKind::Selinux, ProfileKind::AppArmor] {
            let mut names: Vec<&str> = ErrorReason::ALL.iter().map(|r| r.as_str(kind)).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), ErrorReason::ALL.len(), "{kind}");
        }
    }
}
