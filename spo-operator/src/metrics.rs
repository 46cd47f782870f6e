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

use std::fmt::Write as _;

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
            leader,
        }
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
