//! `SeccompProfile`: a seccomp filter in the OCI runtime-spec vocabulary.

use std::collections::BTreeMap;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, ProfileState, SpecState};
use crate::validate::{FieldPath, Problems, Severity, check_duplicates, check_metadata, is_dns_subdomain, suggestion};

/// Pattern `listenerPath` must match (upstream's, so the agent socket stays in the operator's directory).
pub const LISTENER_PATH_PATTERN: &str = r"^/var/run/security-profiles-operator/[a-zA-Z0-9_\-\.]+$";

/// The largest number of syscall arguments a rule can compare.
pub const MAX_ARGS: usize = 6;

/// The largest errno value the kernel returns as such (`MAX_ERRNO`); larger data is clamped.
pub const MAX_ERRNO: i64 = 4095;

/// The desired state of a seccomp profile.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "SeccompProfile",
    plural = "seccompprofiles",
    shortname = "sp",
    status = "SeccompProfileStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "SeccompProfile is a cluster-wide seccomp profile that the operator installs on every node.",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"LocalhostProfile","type":"string","jsonPath":".status.localhostProfile","priority":10}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfileSpec {
    /// Whether the profile is installed on nodes.
    #[serde(default)]
    pub state: SpecState,
    /// Deprecated spelling from manifests written before v1: `true` means `state: Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// The action for every syscall no rule matches.
    pub default_action: SeccompAction,
    /// The architectures the filter accepts; others get the default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub architectures: Option<Vec<Arch>>,
    /// UNIX socket of the seccomp agent that receives `SCMP_ACT_NOTIFY` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/var/run/security-profiles-operator/[a-zA-Z0-9_\-\.]+$"))]
    pub listener_path: Option<String>,
    /// Opaque data passed to the seccomp agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    /// The rules, matched in order of specificity by the compiler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub syscalls: Option<Vec<SeccompSyscall>>,
    /// Flags passed to seccomp(2) when the filter is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub flags: Option<Vec<SeccompFlag>>,
    /// Another SeccompProfile (or an `oci://` artifact) unioned into this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_profile_name: Option<String>,
}

/// One rule: an action for a set of syscalls, optionally only when arguments match.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SeccompSyscall {
    /// Syscall names, such as `openat`.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub names: Vec<String>,
    /// What happens when the rule matches.
    pub action: SeccompAction,
    /// The errno returned by `SCMP_ACT_ERRNO` (or the message of `SCMP_ACT_TRACE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647), extend("format" = "int32"))]
    pub errno_ret: Option<i64>,
    /// Argument comparisons, all of which must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 6))]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub args: Option<Vec<SeccompArg>>,
}

/// A comparison of one syscall argument.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SeccompArg {
    /// Which argument, 0 to 5.
    #[schemars(range(max = 5), extend("format" = "int32"))]
    pub index: u32,
    /// The value compared with (the mask for `SCMP_CMP_MASKED_EQ`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub value: Option<u64>,
    /// The second value (the expected masked value for `SCMP_CMP_MASKED_EQ`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub value_two: Option<u64>,
    /// The comparison.
    pub op: SeccompOperator,
}

/// The status of a SeccompProfile.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfileStatus {
    /// The aggregated state over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProfileState>,
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The path of the profile on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The value pods put in `securityContext.seccompProfile.localhostProfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
    /// Pods using this profile, as `namespace/pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub active_workloads: Option<Vec<String>>,
}

wire_enum!(
    /// A seccomp action.
    SeccompAction {
        /// Kill the thread (same as `SCMP_ACT_KILL_THREAD`).
        Kill = "SCMP_ACT_KILL",
        /// Kill the whole process.
        KillProcess = "SCMP_ACT_KILL_PROCESS",
        /// Kill the thread.
        KillThread = "SCMP_ACT_KILL_THREAD",
        /// Send SIGSYS.
        Trap = "SCMP_ACT_TRAP",
        /// Fail with an errno.
        Errno = "SCMP_ACT_ERRNO",
        /// Notify a ptrace tracer.
        Trace = "SCMP_ACT_TRACE",
        /// Allow.
        Allow = "SCMP_ACT_ALLOW",
        /// Allow and log.
        Log = "SCMP_ACT_LOG",
        /// Ask a user-space agent (seccomp user notification).
        Notify = "SCMP_ACT_NOTIFY",
    }
);

impl SeccompAction {
    /// How permissive the action is, for union merges: the larger allows more
    /// (`KILL_PROCESS < KILL/KILL_THREAD < TRAP < ERRNO < NOTIFY < TRACE < LOG < ALLOW`).
    pub fn permissiveness(self) -> u8 {
        match self {
            SeccompAction::KillProcess => 0,
            SeccompAction::Kill | SeccompAction::KillThread => 1,
            SeccompAction::Trap => 2,
            SeccompAction::Errno => 3,
            SeccompAction::Notify => 4,
            SeccompAction::Trace => 5,
            SeccompAction::Log => 6,
            SeccompAction::Allow => 7,
        }
    }

    /// Whether the syscall runs (ALLOW, LOG, and TRACE/NOTIFY, which may let it run).
    pub fn lets_syscall_run(self) -> bool {
        matches!(
            self,
            SeccompAction::Allow | SeccompAction::Log | SeccompAction::Trace | SeccompAction::Notify
        )
    }

    /// Whether the action carries a value in `errnoRet`.
    pub fn takes_errno(self) -> bool {
        matches!(self, SeccompAction::Errno | SeccompAction::Trace)
    }
}

wire_enum!(
    /// An architecture of the seccomp API.
    Arch {
        /// The architecture of the node.
        Native = "SCMP_ARCH_NATIVE",
        /// i386.
        X86 = "SCMP_ARCH_X86",
        /// x86-64.
        X86_64 = "SCMP_ARCH_X86_64",
        /// The x32 ABI on x86-64.
        X32 = "SCMP_ARCH_X32",
        /// 32-bit ARM (EABI).
        Arm = "SCMP_ARCH_ARM",
        /// 64-bit ARM.
        Aarch64 = "SCMP_ARCH_AARCH64",
        /// MIPS o32, big endian.
        Mips = "SCMP_ARCH_MIPS",
        /// MIPS n64, big endian.
        Mips64 = "SCMP_ARCH_MIPS64",
        /// MIPS n32, big endian.
        Mips64N32 = "SCMP_ARCH_MIPS64N32",
        /// MIPS o32, little endian.
        Mipsel = "SCMP_ARCH_MIPSEL",
        /// MIPS n64, little endian.
        Mipsel64 = "SCMP_ARCH_MIPSEL64",
        /// MIPS n32, little endian.
        Mipsel64N32 = "SCMP_ARCH_MIPSEL64N32",
        /// 32-bit PowerPC.
        Ppc = "SCMP_ARCH_PPC",
        /// 64-bit PowerPC, big endian.
        Ppc64 = "SCMP_ARCH_PPC64",
        /// 64-bit PowerPC, little endian.
        Ppc64le = "SCMP_ARCH_PPC64LE",
        /// 31-bit s390.
        S390 = "SCMP_ARCH_S390",
        /// 64-bit s390x.
        S390x = "SCMP_ARCH_S390X",
        /// 32-bit PA-RISC.
        Parisc = "SCMP_ARCH_PARISC",
        /// 64-bit PA-RISC.
        Parisc64 = "SCMP_ARCH_PARISC64",
        /// 64-bit RISC-V.
        Riscv64 = "SCMP_ARCH_RISCV64",
    }
);

wire_enum!(
    /// A comparison operator for syscall arguments.
    SeccompOperator {
        /// Not equal.
        Ne = "SCMP_CMP_NE",
        /// Less than.
        Lt = "SCMP_CMP_LT",
        /// Less or equal.
        Le = "SCMP_CMP_LE",
        /// Equal.
        Eq = "SCMP_CMP_EQ",
        /// Greater or equal.
        Ge = "SCMP_CMP_GE",
        /// Greater than.
        Gt = "SCMP_CMP_GT",
        /// `(arg & value) == valueTwo`.
        MaskedEq = "SCMP_CMP_MASKED_EQ",
    }
);

wire_enum!(
    /// A flag of seccomp(2)'s `SECCOMP_SET_MODE_FILTER`.
    SeccompFlag {
        /// Install the filter on every thread of the process.
        Tsync = "SECCOMP_FILTER_FLAG_TSYNC",
        /// Log every action except ALLOW.
        Log = "SECCOMP_FILTER_FLAG_LOG",
        /// Keep speculative store bypass mitigation off.
        SpecAllow = "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        /// Wait killably for the notification agent (Linux 5.19).
        WaitKillableRecv = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
);

/// Whether `name` looks like a syscall name (lower-case letters, digits, `_`). Whether the
/// syscall exists on an architecture is the seccomp backend's check.
pub fn is_syscall_name_syntax(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl SeccompProfileSpec {
    /// The state after folding in the deprecated `disabled` flag.
    pub fn effective_state(&self) -> SpecState {
        if self.disabled == Some(true) {
            SpecState::Disabled
        } else {
            self.state
        }
    }

    /// The rules, empty when unset.
    pub fn rules(&self) -> &[SeccompSyscall] {
        self.syscalls.as_deref().unwrap_or_default()
    }
}

impl SeccompProfile {
    /// Every problem with this profile: field syntax, ranges and the cross-field rules the
    /// container runtime would reject at container start.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        check_metadata(&self.metadata, false, &mut problems);
        validate_spec(&self.spec, self.metadata.name.as_deref(), &mut problems);
        problems
    }
}

fn validate_spec(spec: &SeccompProfileSpec, name: Option<&str>, problems: &mut Problems) {
    let root = FieldPath::root().field("spec");

    if spec.disabled == Some(true) && spec.state == SpecState::Enabled {
        problems.warning_hint(
            root.field("disabled"),
            "deprecated field disables the profile",
            "write state: Disabled instead",
        );
    } else if spec.disabled.is_some() {
        problems.warning_hint(
            root.field("disabled"),
            "deprecated field",
            "use state: Enabled|Disabled",
        );
    }

    if spec.default_action == SeccompAction::Notify {
        problems.error_hint(
            root.field("defaultAction"),
            "SCMP_ACT_NOTIFY cannot be the default action",
            "the runtime's own syscalls would wait on the agent; notify only chosen syscalls",
        );
    }

    if let Some(arches) = &spec.architectures {
        check_duplicates(
            &root.field("architectures"),
            arches.iter().map(|a| a.as_str()),
            Severity::Warning,
            problems,
        );
    }
    if let Some(flags) = &spec.flags {
        check_duplicates(
            &root.field("flags"),
            flags.iter().map(|f| f.as_str()),
            Severity::Warning,
            problems,
        );
    }

    match &spec.listener_path {
        Some(p) => {
            if !listener_path_ok(p) {
                problems.error_hint(
                    root.field("listenerPath"),
                    format!("{p:?} does not match {LISTENER_PATH_PATTERN}"),
                    "put the agent socket directly in /var/run/security-profiles-operator/",
                );
            }
        }
        None => {
            if spec.listener_metadata.is_some() {
                problems.error_hint(
                    root.field("listenerMetadata"),
                    "set without listenerPath",
                    "metadata is only sent to a seccomp agent; set listenerPath or remove listenerMetadata",
                );
            }
        }
    }

    if let Some(base) = &spec.base_profile_name {
        let p = root.field("baseProfileName");
        if let Some(reference) = base.strip_prefix("oci://") {
            if reference.is_empty() || reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.error(p, format!("{base:?} is not a valid OCI reference"));
            }
        } else if !is_dns_subdomain(base) {
            problems.error_hint(
                p,
                format!("{base:?} is neither a SeccompProfile name nor an oci:// reference"),
                "name another SeccompProfile, or write oci://registry/repository:tag",
            );
        } else if Some(base.as_str()) == name {
            problems.error(p, "a profile cannot be its own base profile");
        }
    }

    let rules = spec.rules();
    let listener = spec.listener_path.is_some();
    // Unconditional action per syscall name, to find rules that contradict each other.
    let mut unconditional: BTreeMap<&str, (usize, SeccompAction, Option<i64>)> = BTreeMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let rp = root.field("syscalls").index(i);
        if rule.names.is_empty() {
            problems.error_hint(
                rp.field("names"),
                "must list at least one syscall",
                "add a name or remove the rule",
            );
        }
        for (j, n) in rule.names.iter().enumerate() {
            if !is_syscall_name_syntax(n) {
                problems.error_hint(
                    rp.field("names").index(j),
                    format!("{n:?} is not a syscall name"),
                    "syscall names are lower-case letters, digits and '_', such as openat",
                );
            }
        }
        check_duplicates(
            &rp.field("names"),
            rule.names.iter().map(String::as_str),
            Severity::Warning,
            problems,
        );

        if rule.action == SeccompAction::Notify && !listener {
            problems.error_hint(
                rp.field("action"),
                "SCMP_ACT_NOTIFY needs spec.listenerPath",
                "set listenerPath to the seccomp agent's socket",
            );
        }
        if let Some(errno) = rule.errno_ret {
            let ep = rp.field("errnoRet");
            if !rule.action.takes_errno() {
                problems.error_hint(
                    ep,
                    format!("errnoRet is not used by {}", rule.action),
                    "errnoRet only applies to SCMP_ACT_ERRNO and SCMP_ACT_TRACE; remove it",
                );
            } else if errno < 0 {
                problems.error(ep, format!("{errno} is negative; errno values are >= 0"));
            } else if errno > i64::from(i32::MAX) {
                problems.error(ep, format!("{errno} does not fit in int32"));
            } else if rule.action == SeccompAction::Errno && errno > MAX_ERRNO {
                problems.warning_hint(
                    ep,
                    format!("{errno} is above the kernel's MAX_ERRNO and is clamped to {MAX_ERRNO}"),
                    "use an errno between 0 and 4095, such as 1 (EPERM) or 38 (ENOSYS)",
                );
            } else if rule.action == SeccompAction::Trace && errno > 0xffff {
                problems.warning(ep, format!("{errno} is truncated to 16 bits for SCMP_ACT_TRACE"));
            }
        }

        let args = rule.args.as_deref().unwrap_or_default();
        if args.len() > MAX_ARGS {
            problems.error_hint(
                rp.field("args"),
                format!("{} argument comparisons, at most {MAX_ARGS} are allowed", args.len()),
                "a syscall has six arguments; split the rule",
            );
        }
        for (k, arg) in args.iter().enumerate() {
            let ap = rp.field("args").index(k);
            if let Some(first) = args[..k].iter().position(|a| a.index == arg.index) {
                problems.warning_hint(
                    ap.field("index"),
                    format!("argument {} is already compared in args[{first}]", arg.index),
                    "libseccomp cannot AND two comparisons of one argument; runtimes split them into separate rules, so the rule matches when EITHER holds",
                );
            }
            if arg.index as usize >= MAX_ARGS {
                problems.error_hint(
                    ap.field("index"),
                    format!("{} is out of range 0..=5", arg.index),
                    "syscall arguments are numbered 0 to 5",
                );
            }
            match arg.op {
                SeccompOperator::MaskedEq => {
                    if arg.value.unwrap_or(0) == 0 {
                        problems.warning_hint(
                            ap.field("value"),
                            "mask is 0, so the comparison is (0 == valueTwo)",
                            "value is the mask and valueTwo the expected masked value",
                        );
                    } else if let Some(two) = arg.value_two
                        && two & !arg.value.unwrap_or(0) != 0
                    {
                        problems.warning_hint(
                            ap.field("valueTwo"),
                            format!(
                                "{two:#x} has bits outside the mask {:#x}, so the rule never matches",
                                arg.value.unwrap_or(0)
                            ),
                            "valueTwo must be a subset of the mask in value",
                        );
                    }
                }
                _ => {
                    if arg.value_two.is_some_and(|v| v != 0) {
                        problems.warning_hint(
                            ap.field("valueTwo"),
                            format!("ignored by {}", arg.op),
                            "valueTwo is only used by SCMP_CMP_MASKED_EQ; remove it",
                        );
                    }
                }
            }
        }

        if args.is_empty() {
            for n in &rule.names {
                match unconditional.get(n.as_str()) {
                    Some(&(first, action, errno)) if action != rule.action || errno != rule.errno_ret => {
                        let describe = |a: SeccompAction, e: Option<i64>| match e {
                            Some(e) => format!("{a} (errnoRet {e})"),
                            None => a.to_string(),
                        };
                        problems.error_hint(
                            rp.field("names"),
                            format!(
                                "{n} is {} here but {} in spec.syscalls[{first}]",
                                describe(rule.action, rule.errno_ret),
                                describe(action, errno)
                            ),
                            "a syscall can have one unconditional action; remove one of the rules",
                        )
                    }
                    Some(_) => {}
                    None => {
                        unconditional.insert(n.as_str(), (i, rule.action, rule.errno_ret));
                    }
                }
            }
            if rule.action == spec.default_action && rule.errno_ret.is_none() {
                problems.warning_hint(
                    rp.field("action"),
                    format!("same as defaultAction {}, so the rule changes nothing", rule.action),
                    "remove the rule or change its action",
                );
            }
        }
    }

    if rules.is_empty()
        && matches!(
            spec.default_action,
            SeccompAction::Kill | SeccompAction::KillProcess | SeccompAction::KillThread | SeccompAction::Trap
        )
    {
        problems.warning_hint(
            root.field("syscalls"),
            format!(
                "no rules and defaultAction {}: every process dies at its first syscall",
                spec.default_action
            ),
            "add the syscalls the workload needs (spoc record finds them)",
        );
    }
}

fn listener_path_ok(p: &str) -> bool {
    match p.strip_prefix("/var/run/security-profiles-operator/") {
        Some(rest) => {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        }
        None => false,
    }
}

/// Deserializes a list of wire values tolerating unknown ones, for callers that want
/// to report them rather than fail (used by the SPOD's `allowedSeccompActions`).
pub fn parse_actions(values: &[String], path: &FieldPath, problems: &mut Problems) -> Vec<SeccompAction> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match SeccompAction::parse(v) {
            Some(a) => out.push(a),
            None => problems.error_hint(
                path.index(i),
                format!("unknown seccomp action {v:?}"),
                suggestion(v, SeccompAction::names()),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(yaml: &str) -> SeccompProfile {
        serde_norway::from_str(yaml).expect("parse")
    }

    fn paths(p: &Problems) -> Vec<String> {
        p.iter().map(|p| format!("{:?} {}", p.severity, p.path)).collect()
    }

    #[test]
    fn defaults_and_wire_names() {
        let sp = profile(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: a}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - names: [read]\n    action: SCMP_ACT_ALLOW\n",
        );
        assert_eq!(sp.spec.state, SpecState::Enabled);
        let json = serde_json::to_value(&sp).expect("json");
        assert_eq!(json["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["spec"]["state"], "Enabled");
        assert!(sp.validate().is_empty(), "{}", sp.validate());
    }

    #[test]
    fn reports_every_problem_at_once() {
        let sp = profile(
            r#"
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: bad}
spec:
  defaultAction: SCMP_ACT_NOTIFY
  listenerMetadata: x
  baseProfileName: bad
  syscalls:
  - names: [Read, read]
    action: SCMP_ACT_ALLOW
    errnoRet: 1
  - names: [read]
    action: SCMP_ACT_ERRNO
    errnoRet: 5000
    args:
    - {index: 7, op: SCMP_CMP_EQ, value: 1, valueTwo: 2}
  - names: [write]
    action: SCMP_ACT_NOTIFY
"#,
        );
        let p = sp.validate();
        let got = paths(&p);
        for want in [
            "Error spec.defaultAction",
            "Error spec.listenerMetadata",
            "Error spec.baseProfileName",
            "Error spec.syscalls[0].names[0]",
            "Error spec.syscalls[0].errnoRet",
            "Warning spec.syscalls[1].errnoRet",
            "Error spec.syscalls[1].args[0].index",
            "Warning spec.syscalls[1].args[0].valueTwo",
            "Error spec.syscalls[2].action",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
        }
        let index = p
            .iter()
            .find(|p| p.path.as_str() == "spec.syscalls[1].args[0].index")
            .expect("index");
        assert_eq!(index.message, "7 is out of range 0..=5");
    }

    #[test]
    fn conflicting_unconditional_rules() {
        let sp = profile(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: a}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - {names: [read, write], action: SCMP_ACT_ALLOW}\n  - {names: [write], action: SCMP_ACT_KILL}\n",
        );
        let p = sp.validate();
        let e = p.errors().next().expect("an error");
        assert_eq!(e.path.as_str(), "spec.syscalls[1].names");
        assert!(
            e.message
                .contains("write is SCMP_ACT_KILL here but SCMP_ACT_ALLOW in spec.syscalls[0]"),
            "{e}"
        );
    }

    #[test]
    fn permissiveness_order_matches_upstream_union() {
        use SeccompAction::*;
        let order = [KillProcess, Kill, Trap, Errno, Notify, Trace, Log, Allow];
        for w in order.windows(2) {
            assert!(w[0].permissiveness() < w[1].permissiveness(), "{} < {}", w[0], w[1]);
        }
        assert_eq!(Kill.permissiveness(), KillThread.permissiveness());
    }

    #[test]
    fn listener_path_pattern() {
        assert!(listener_path_ok("/var/run/security-profiles-operator/agent.sock"));
        assert!(!listener_path_ok("/var/run/security-profiles-operator/../x"));
        assert!(!listener_path_ok("/var/run/security-profiles-operator/"));
        assert!(!listener_path_ok("/tmp/agent.sock"));
        let re = regex::Regex::new(LISTENER_PATH_PATTERN).expect("regex");
        for p in [
            "/var/run/security-profiles-operator/a.sock",
            "/var/run/security-profiles-operator/a/b",
            "/x",
        ] {
            assert_eq!(re.is_match(p), listener_path_ok(p), "{p}");
        }
    }

    #[test]
    fn syscall_name_syntax() {
        assert!(is_syscall_name_syntax("openat"));
        assert!(is_syscall_name_syntax("_llseek"));
        assert!(is_syscall_name_syntax("arm_fadvise64_64"));
        assert!(!is_syscall_name_syntax("OPENAT"));
        assert!(!is_syscall_name_syntax(""));
        assert!(!is_syscall_name_syntax("open at"));
        assert!(!is_syscall_name_syntax("1read"));
    }
}
