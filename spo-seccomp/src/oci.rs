//! The OCI runtime-spec form of a seccomp profile (`LinuxSeccomp` of runtime-spec
//! `config-linux.md`), and lossless conversion to and from [`SeccompProfileSpec`].
//!
//! This is the JSON container runtimes read from `<kubelet dir>/seccomp/operator/<name>.json`
//! when a pod says `localhostProfile: operator/<name>.json`, and what `spoc convert` reads and
//! writes. The types here are our own, spelled exactly like runtime-spec's Go structs:
//! camelCase keys in Go's field order (`defaultAction`, `defaultErrnoRet`, `architectures`,
//! `flags`, `listenerPath`, `listenerMetadata`, `syscalls`), empty and absent values omitted,
//! except `args[].value`, which Go always writes (`value` has no `omitempty`; `valueTwo` has).
//! Parsing rejects unknown fields and names the field path of any error, because a misspelled
//! key (`defaultActon`) silently ignored is a profile that does something else than it says.
//!
//! # What converts, and what does not
//!
//! Both shapes share every field but four:
//!
//! - `state`, `disabled` and `baseProfileName` exist only in the CRD. [`to_runtime`] drops them
//!   (the caller resolves base profiles before rendering; a disabled profile is not rendered
//!   at all) and [`from_runtime`] leaves them at their defaults.
//! - `defaultErrnoRet` exists only in the runtime shape, and SeccompProfile v1 has no field to
//!   hold it. Runtimes return `EPERM` (1) when it is absent, so [`from_runtime`] accepts 1 and
//!   drops it (nothing changes meaning), and refuses every other value with
//!   [`SeccompError::Invalid`] rather than turn, say, `ENOSYS` into `EPERM` behind the user's
//!   back. An annotation could carry it, but the operator would then have to honour that
//!   annotation on every node, which upstream does not; refusing is the honest choice until
//!   the API grows a field.
//!
//! The CRD's optional fields are compared the way upstream's Go types compare them, where an
//! absent field, an empty list or string and a zero number are the same value (`omitempty`).
//! So CRD -> runtime -> CRD returns the spec in its canonical form: empty lists and strings
//! become absent, `args[].value` is always present (0 when it was absent) and
//! `args[].valueTwo` is absent when it is 0. A spec already in that form comes back unchanged.
//! Runtime -> CRD -> runtime is the identity except for `defaultErrnoRet: 1`, which is dropped.
//!
//! # Profiles written for container engines
//!
//! [`parse_runtime_profile`] reads, besides this shape, an OCI bundle `config.json` and the
//! profile format of Docker, podman and containerd, whose rules depend on the architecture,
//! the kernel and the container's capabilities; it evaluates them for an [`EngineContext`]
//! as the engines do and says, in [`RuntimeProfile::notes`], which rules it left out and why.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompFlag, SeccompOperator, SeccompSyscall};
use spo_model::{SeccompProfileSpec, SpecState};

use crate::SeccompError;

/// The errno runtimes return for `SCMP_ACT_ERRNO` when no `errnoRet`/`defaultErrnoRet` is set.
pub const RUNTIME_DEFAULT_ERRNO: u32 = 1;

/// runtime-spec `LinuxSeccomp`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeSeccomp {
    /// The action for every syscall no rule matches.
    pub default_action: SeccompAction,
    /// The errno of `defaultAction: SCMP_ACT_ERRNO` (runtime default 1, `EPERM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The architectures the filter accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    /// Flags for seccomp(2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<SeccompFlag>,
    /// UNIX socket of the seccomp agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub listener_path: String,
    /// Opaque data for the seccomp agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub listener_metadata: String,
    /// The rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<RuntimeSyscall>,
}

/// runtime-spec `LinuxSyscall`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeSyscall {
    /// Syscall names.
    pub names: Vec<String>,
    /// What happens when the rule matches.
    pub action: SeccompAction,
    /// The errno of `SCMP_ACT_ERRNO` (or the message of `SCMP_ACT_TRACE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument comparisons, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<RuntimeArg>,
}

/// runtime-spec `LinuxSeccompArg`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeArg {
    /// Which argument, 0 to 5.
    pub index: u32,
    /// The value compared with (the mask for `SCMP_CMP_MASKED_EQ`); always written.
    #[serde(default)]
    pub value: u64,
    /// The second value (the expected masked value for `SCMP_CMP_MASKED_EQ`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value_two: u64,
    /// The comparison.
    pub op: SeccompOperator,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Converts a spec to the runtime shape, dropping the CRD-only fields.
///
/// Meant for a spec that validates; an `errnoRet` outside `0..=u32::MAX` (which validation
/// rejects) is left out, so the runtime falls back to `EPERM` and the syscall still fails
/// rather than appear to succeed. [`try_to_runtime`] refuses such a spec instead.
pub fn to_runtime(spec: &SeccompProfileSpec) -> RuntimeSeccomp {
    RuntimeSeccomp {
        default_action: spec.default_action,
        default_errno_ret: None,
        architectures: spec.architectures.clone().unwrap_or_default(),
        flags: spec.flags.clone().unwrap_or_default(),
        listener_path: spec.listener_path.clone().unwrap_or_default(),
        listener_metadata: spec.listener_metadata.clone().unwrap_or_default(),
        syscalls: spec
            .rules()
            .iter()
            .map(|rule| RuntimeSyscall {
                names: rule.names.clone(),
                action: rule.action,
                errno_ret: rule.errno_ret.and_then(|e| u32::try_from(e).ok()),
                args: runtime_args(rule),
            })
            .collect(),
    }
}

/// A rule's comparisons in the runtime shape (`value` always written, 0 when unset).
fn runtime_args(rule: &SeccompSyscall) -> Vec<RuntimeArg> {
    rule.args
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| RuntimeArg {
            index: a.index,
            value: a.value.unwrap_or(0),
            value_two: a.value_two.unwrap_or(0),
            op: a.op,
        })
        .collect()
}

/// Converts a spec to the runtime shape, refusing values the runtime shape cannot hold
/// (an `errnoRet` that is negative or above `u32::MAX`).
pub fn try_to_runtime(spec: &SeccompProfileSpec) -> Result<RuntimeSeccomp, SeccompError> {
    check_errno_values(spec).map_err(SeccompError::Invalid)?;
    Ok(to_runtime(spec))
}

/// [`RuntimeSeccomp`] written from a spec's fields without copying them: the same fields,
/// names, order and omissions, so the bytes are the same (checked in the tests).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeView<'a> {
    default_action: SeccompAction,
    #[serde(skip_serializing_if = "<[Arch]>::is_empty")]
    architectures: &'a [Arch],
    #[serde(skip_serializing_if = "<[SeccompFlag]>::is_empty")]
    flags: &'a [SeccompFlag],
    #[serde(skip_serializing_if = "str::is_empty")]
    listener_path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    listener_metadata: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    syscalls: Vec<SyscallView<'a>>,
}

/// [`RuntimeSyscall`] borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyscallView<'a> {
    names: &'a [String],
    action: SeccompAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<RuntimeArg>,
}

/// `Err` with every `errnoRet` the runtime shape cannot hold, by field.
fn check_errno_values(spec: &SeccompProfileSpec) -> Result<(), String> {
    let mut bad = String::new();
    for (i, rule) in spec.rules().iter().enumerate() {
        if let Some(e) = rule.errno_ret
            && u32::try_from(e).is_err()
        {
            if !bad.is_empty() {
                bad.push_str("; ");
            }
            let _ = write!(
                bad,
                "spec.syscalls[{i}].errnoRet: {e} is not an errno (use a value from 0 to 4095, such as 1 for EPERM)"
            );
        }
    }
    if bad.is_empty() { Ok(()) } else { Err(bad) }
}

/// Converts the runtime shape to a spec (state Enabled, no base profile).
///
/// Fails when `defaultErrnoRet` is set to anything but 1 (`EPERM`, what runtimes use when it
/// is absent): SeccompProfile v1 has no field for it, and dropping it would change which
/// errno every unmatched syscall returns.
pub fn from_runtime(rt: &RuntimeSeccomp) -> Result<SeccompProfileSpec, SeccompError> {
    if let Some(errno) = rt.default_errno_ret
        && errno != RUNTIME_DEFAULT_ERRNO
    {
        return Err(SeccompError::Invalid(format!(
            "defaultErrnoRet: {errno} cannot be expressed in a SeccompProfile, which has no such field \
             (runtimes return 1, EPERM, without it); remove defaultErrnoRet to accept EPERM, or list the \
             syscalls that need errno {errno} in a rule with action SCMP_ACT_ERRNO and errnoRet {errno}"
        )));
    }
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let non_empty_vec = |v: &[_]| (!v.is_empty()).then(|| v.to_vec());
    Ok(SeccompProfileSpec {
        state: SpecState::default(),
        disabled: None,
        default_action: rt.default_action,
        architectures: non_empty_vec(&rt.architectures),
        listener_path: non_empty(&rt.listener_path),
        listener_metadata: non_empty(&rt.listener_metadata),
        syscalls: (!rt.syscalls.is_empty()).then(|| {
            rt.syscalls
                .iter()
                .map(|s| SeccompSyscall {
                    names: s.names.clone(),
                    action: s.action,
                    errno_ret: s.errno_ret.map(i64::from),
                    args: (!s.args.is_empty()).then(|| {
                        s.args
                            .iter()
                            .map(|a| SeccompArg {
                                index: a.index,
                                value: Some(a.value),
                                value_two: (a.value_two != 0).then_some(a.value_two),
                                op: a.op,
                            })
                            .collect()
                    }),
                })
                .collect()
        }),
        flags: (!rt.flags.is_empty()).then(|| rt.flags.to_vec()),
        base_profile_name: None,
    })
}

/// Parses runtime seccomp JSON strictly. Errors name the field path (`syscalls[2].action`),
/// the line and column, and for an unknown field the fields that are allowed.
pub fn parse_runtime_json(text: &str) -> Result<RuntimeSeccomp, SeccompError> {
    parse_strict(text, "parsing runtime seccomp JSON")
}

/// Deserializes one JSON value filling all of `text`; errors say `operation`, the field path
/// and the line and column.
fn parse_strict<T: serde::de::DeserializeOwned>(text: &str, operation: &str) -> Result<T, SeccompError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let operation = if path == "." {
            operation.to_owned()
        } else {
            format!("{operation} at field {path}")
        };
        SeccompError::Json {
            operation,
            source: e.into_inner(),
        }
    })?;
    de.end().map_err(|source| SeccompError::Json {
        operation: format!("{operation}: trailing data after the profile"),
        source,
    })?;
    Ok(value)
}

/// The node file for a spec whose base profiles are already resolved (its own
/// `baseProfileName` is ignored): compact runtime JSON, keys in runtime-spec's Go field order,
/// as Go's `json.Marshal` writes it. Equal specs give equal bytes, so the installer can skip
/// rewriting a file that has not changed.
pub fn render_node_json(spec: &SeccompProfileSpec) -> Result<Vec<u8>, SeccompError> {
    // The checks of try_to_runtime, then the same JSON written from borrowed fields (the node
    // renders every profile of a burst; copying hundreds of names first doubled the cost).
    if let Err(e) = check_errno_values(spec) {
        return Err(SeccompError::Invalid(e));
    }
    let view = RuntimeView {
        default_action: spec.default_action,
        architectures: spec.architectures.as_deref().unwrap_or_default(),
        flags: spec.flags.as_deref().unwrap_or_default(),
        listener_path: spec.listener_path.as_deref().unwrap_or_default(),
        listener_metadata: spec.listener_metadata.as_deref().unwrap_or_default(),
        syscalls: spec
            .rules()
            .iter()
            .map(|rule| SyscallView {
                names: &rule.names,
                action: rule.action,
                errno_ret: rule.errno_ret.and_then(|e| u32::try_from(e).ok()),
                args: runtime_args(rule),
            })
            .collect(),
    };
    serde_json::to_vec(&view).map_err(|source| SeccompError::Json {
        operation: "rendering runtime seccomp JSON".to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> SeccompProfileSpec {
        serde_json::from_str(json).expect("spec")
    }

    #[test]
    fn value_is_always_written_and_value_two_only_when_set() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW",
                "args":[{"index":0,"op":"SCMP_CMP_EQ"},{"index":1,"value":0,"valueTwo":0,"op":"SCMP_CMP_NE"}]}]}"#,
        );
        let out = String::from_utf8(render_node_json(&s).expect("render")).expect("utf-8");
        assert_eq!(
            out,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":1,"value":0,"op":"SCMP_CMP_NE"}]}]}"#
        );
    }

    #[test]
    fn crd_only_fields_are_dropped() {
        let s = spec(r#"{"defaultAction":"SCMP_ACT_LOG","state":"Disabled","disabled":true,"baseProfileName":"base"}"#);
        assert_eq!(
            render_node_json(&s).expect("render"),
            br#"{"defaultAction":"SCMP_ACT_LOG"}"#
        );
        let back = from_runtime(&to_runtime(&s)).expect("back");
        assert_eq!(back.state, SpecState::Enabled);
        assert_eq!(back.disabled, None);
        assert_eq!(back.base_profile_name, None);
    }

    #[test]
    fn canonical_form_of_empty_values() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":[],"flags":[],"listenerPath":"","listenerMetadata":"",
                "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[]}]}"#,
        );
        let back = from_runtime(&to_runtime(&s)).expect("back");
        assert_eq!(
            back,
            spec(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#)
        );
    }

    #[test]
    fn default_errno_ret_eperm_is_accepted_and_dropped() {
        let rt = parse_runtime_json(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1}"#).expect("parse");
        let s = from_runtime(&rt).expect("EPERM is the runtime default");
        assert_eq!(to_runtime(&s).default_errno_ret, None);
    }

    #[test]
    fn default_errno_ret_other_than_eperm_is_refused() {
        let rt = parse_runtime_json(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38}"#).expect("parse");
        let err = from_runtime(&rt).expect_err("38 cannot be kept");
        assert!(matches!(err, SeccompError::Invalid(_)));
        let text = err.to_string();
        assert!(text.contains("defaultErrnoRet: 38"), "{text}");
    }

    #[test]
    fn errno_outside_u32_is_refused_by_render() {
        let mut s =
            spec(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO"}]}"#);
        if let Some(rules) = s.syscalls.as_mut() {
            rules[0].errno_ret = Some(-1);
        }
        let err = render_node_json(&s).expect_err("negative errno");
        assert!(err.to_string().contains("spec.syscalls[0].errnoRet"), "{err}");
        // The infallible conversion fails closed: EPERM instead of a bogus value.
        assert_eq!(to_runtime(&s).syscalls[0].errno_ret, None);
    }

    #[test]
    fn unknown_nested_field_is_named() {
        let err = parse_runtime_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"vaule2":3,"op":"SCMP_CMP_EQ"}]}]}"#,
        )
        .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.contains("syscalls[0].args[0].vaule2"), "{text}");
    }

    #[test]
    fn engine_field_values() {
        assert_eq!(parse_min_kernel(""), Ok(None));
        assert_eq!(parse_min_kernel("4.8"), Ok(Some((4, 8))));
        assert_eq!(parse_min_kernel("04.08"), Ok(Some((4, 8))));
        for bad in [
            "banana", "4", "4.8.1", "4.", ".8", "+4.8", "4.-8", "256.1", "0.0", " 4.8",
        ] {
            assert!(parse_min_kernel(bad).is_err(), "{bad}");
        }
        assert_eq!(errno_number("EPERM"), Some(1));
        assert_eq!(errno_number("38"), Some(38));
        assert_eq!(errno_number("eperm"), None);
        assert_eq!(errno_number(""), None);
        assert_eq!(engine_arch_name(Arch::X86_64), Some("amd64"));
        assert_eq!(engine_arch_name(Arch::Aarch64), Some("arm64"));
        assert_eq!(engine_arch_name(Arch::Native), None);
        assert!(check_capability_name("CAP_SYS_ADMIN").is_ok());
        assert!(check_capability_name("CAP_CHECKPOINT_RESTORE").is_ok());
        let err = check_capability_name("cap_sys_admin").expect_err("exact spelling");
        assert!(err.contains("write CAP_SYS_ADMIN"), "{err}");
    }

    #[test]
    fn trailing_data_is_refused() {
        let err = parse_runtime_json(r#"{"defaultAction":"SCMP_ACT_ERRNO"} {}"#).expect_err("trailing");
        assert!(err.to_string().contains("trailing data"), "{err}");
    }
}

/// What a container engine knows when it turns its seccomp profile into a filter: the
/// machine's architecture, the kernel, and the container's capabilities. Docker's and podman's
/// profile format makes rules depend on these (`archMap`, `includes`, `excludes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineContext {
    /// The architecture the filter is for.
    pub arch: Arch,
    /// The running kernel, when known (`includes.minKernel`).
    pub kernel: Option<crate::validate::KernelVersion>,
    /// The container's capabilities, as `CAP_SYS_ADMIN`.
    pub capabilities: std::collections::BTreeSet<String>,
}

impl EngineContext {
    /// This machine's architecture and kernel, and the capabilities container engines give a
    /// container by default (the conservative reading: a rule granted only to more
    /// capabilities is left out, with a note).
    pub fn this_machine() -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| crate::validate::parse_kernel_release(r.trim()));
        EngineContext {
            arch: crate::syscalls::native_arch(),
            kernel,
            capabilities: DEFAULT_CONTAINER_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        }
    }
}

/// The capabilities Docker, containerd and podman give a container unless told otherwise.
pub const DEFAULT_CONTAINER_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A SeccompProfile spec read from runtime JSON, with notes on what the conversion decided
/// (rules left out for another architecture, kernel or capability set).
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeProfile {
    /// The spec.
    pub spec: SeccompProfileSpec,
    /// What was decided, one sentence each.
    pub notes: Vec<String>,
}

/// Reads seccomp JSON of any shape container engines use and returns the SeccompProfile spec
/// it amounts to on `ctx`:
///
/// - runtime-spec `LinuxSeccomp` (what runc reads; our node files), converted as
///   [`from_runtime`] does;
/// - a whole OCI bundle `config.json` (an object with `ociVersion`): its `linux.seccomp`,
///   strictly runtime-spec; the rest of the file is not looked at;
/// - the profile format of Docker (moby `profiles/seccomp`), podman and CRI-O
///   (containers-common `pkg/seccomp`): runtime-spec's fields plus `archMap`, per-rule `name`,
///   `comment`, `includes`/`excludes` and containers-common's `errno`/`defaultErrno`.
///
/// The engine format is evaluated on `ctx` as those engines do when they start a container:
///
/// - `archMap`: the filter's architectures are the entry whose `architecture` is `ctx.arch`
///   followed by its `subArchitectures`; none when no entry matches (the runtime then accepts
///   the native architecture only). `architectures` and `archMap` together are refused.
/// - a rule is left out when `excludes.arches` names `ctx.arch`, `excludes.caps` names any
///   capability the container has, or the kernel is at least `excludes.minKernel`; and when
///   `includes.arches` does not name `ctx.arch`, `includes.caps` names a capability the
///   container lacks (all are needed), or the kernel is older than `includes.minKernel`.
///   `arches` use libseccomp's names (`amd64`, `x86`, `x32`, `arm64`, `ppc64le`, ...); kernel
///   versions compare major and minor only. Each rule left out is one note.
/// - `name` is a one-name `names` (both together are refused); `errno` (a name such as
///   `EPERM`, or a number) takes precedence over `errnoRet`, and `defaultErrno` over
///   `defaultErrnoRet`; `comment` is dropped.
///
/// Unlike the engines, unknown fields, unknown capability and architecture names and
/// malformed kernel versions are errors naming their field path, and a rule without names is
/// refused. `defaultErrnoRet` other than 1 is refused as [`from_runtime`] explains.
pub fn parse_runtime_profile(text: &str, ctx: &EngineContext) -> Result<RuntimeProfile, SeccompError> {
    if is_bundle_config(text) {
        let bundle: BundleConfig = parse_strict(text, "parsing OCI bundle config")?;
        let rt = bundle.linux.and_then(|l| l.seccomp).ok_or_else(|| {
            SeccompError::Invalid(
                "linux.seccomp: the OCI bundle config has no seccomp profile (nothing to convert)".to_owned(),
            )
        })?;
        return Ok(RuntimeProfile {
            spec: from_runtime(&rt)?,
            notes: vec!["read linux.seccomp of an OCI bundle config".to_owned()],
        });
    }
    let profile: EngineProfile = parse_strict(text, "parsing runtime seccomp JSON")?;
    let mut notes = Vec::new();
    let rt = evaluate_engine_profile(profile, ctx, &mut notes)?;
    Ok(RuntimeProfile {
        spec: from_runtime(&rt)?,
        notes,
    })
}

/// Whether `text` is an OCI bundle `config.json` (an object with `ociVersion`) rather than a
/// seccomp profile.
fn is_bundle_config(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "ociVersion")]
        oci_version: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Probe>(text).is_ok_and(|p| p.oci_version.is_some())
}

/// The part of an OCI bundle `config.json` we read. Its other fields are runc's business, so
/// they are not checked.
#[derive(Deserialize)]
struct BundleConfig {
    linux: Option<BundleLinux>,
}

/// `config.json`'s `linux`.
#[derive(Deserialize)]
struct BundleLinux {
    seccomp: Option<RuntimeSeccomp>,
}

/// The profile format of Docker and containers-common: runtime-spec's `LinuxSeccomp` with
/// `archMap` and conditional rules. A plain runtime-spec profile is one of these too.
/// Lists and strings may be `null`, as Go writes nil slices.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EngineProfile {
    default_action: SeccompAction,
    default_errno_ret: Option<u32>,
    /// containers-common: an errno name or number, preferred to `defaultErrnoRet`.
    default_errno: Option<String>,
    architectures: Option<Vec<Arch>>,
    arch_map: Option<Vec<ArchMapEntry>>,
    flags: Option<Vec<SeccompFlag>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<EngineSyscall>>,
}

/// One `archMap` entry: an architecture and the ones a filter for it also accepts.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArchMapEntry {
    architecture: MapArch,
    sub_architectures: Option<Vec<Arch>>,
}

/// An `archMap` architecture: one of the API's, or one libseccomp knows and the API does not
/// (Docker's default lists `SCMP_ARCH_LOONGARCH64`). Only the entry of the target matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapArch {
    Api(Arch),
    Other(&'static str),
}

/// libseccomp architectures the SeccompProfile API has no value for.
const OTHER_LIBSECCOMP_ARCHES: &[&str] = &[
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

impl<'de> Deserialize<'de> for MapArch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(a) = Arch::parse(&s) {
            return Ok(MapArch::Api(a));
        }
        if let Some(o) = OTHER_LIBSECCOMP_ARCHES.iter().find(|o| **o == s) {
            return Ok(MapArch::Other(o));
        }
        let hint = spo_model::validate::suggestion(&s, Arch::names().chain(OTHER_LIBSECCOMP_ARCHES.iter().copied()));
        Err(serde::de::Error::custom(format!("unknown architecture {s:?} ({hint})")))
    }
}

/// One rule of the engine format.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EngineSyscall {
    names: Option<Vec<String>>,
    /// The old one-name spelling.
    name: Option<String>,
    action: SeccompAction,
    errno_ret: Option<u32>,
    /// containers-common: an errno name or number, preferred to `errnoRet`.
    errno: Option<String>,
    args: Option<Vec<RuntimeArg>>,
    #[serde(rename = "comment")]
    _comment: Option<String>,
    includes: Option<EngineFilter>,
    excludes: Option<EngineFilter>,
}

/// `includes`/`excludes`: conditions on the container and the host.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EngineFilter {
    caps: Option<Vec<Capability>>,
    arches: Option<Vec<EngineArch>>,
    /// Docker only; `""` is no condition.
    min_kernel: Option<MinKernel>,
}

/// A capability name as engines compare them: `CAP_SYS_ADMIN`, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Capability(String);

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_capability_name(&s).map_err(serde::de::Error::custom)?;
        Ok(Capability(s))
    }
}

/// Whether `name` is a Linux capability spelled as engines compare it (`CAP_SYS_ADMIN`);
/// the error says what to write instead.
fn check_capability_name(name: &str) -> Result<(), String> {
    let known: Vec<String> = spo_model::apparmor::CAPABILITIES
        .iter()
        .map(|c| format!("CAP_{}", c.to_ascii_uppercase()))
        .collect();
    if known.iter().any(|k| k == name) {
        return Ok(());
    }
    let upper = name.to_ascii_uppercase();
    let canonical = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    let hint = if known.contains(&canonical) {
        format!("write {canonical}: engines compare capability names exactly")
    } else {
        match spo_model::validate::did_you_mean(name, known.iter().map(String::as_str)) {
            Some(c) => format!("did you mean {c}?"),
            None => "not a Linux capability; see capabilities(7)".to_owned(),
        }
    };
    Err(format!("unknown capability {name:?} ({hint})"))
}

/// libseccomp's name of each architecture, which `includes.arches`/`excludes.arches` use
/// (engines compare them with the name of the native architecture).
const ENGINE_ARCH_NAMES: &[(&str, Option<Arch>)] = &[
    ("x86", Some(Arch::X86)),
    ("amd64", Some(Arch::X86_64)),
    ("x32", Some(Arch::X32)),
    ("arm", Some(Arch::Arm)),
    ("arm64", Some(Arch::Aarch64)),
    ("mips", Some(Arch::Mips)),
    ("mipsel", Some(Arch::Mipsel)),
    ("mips64", Some(Arch::Mips64)),
    ("mipsel64", Some(Arch::Mipsel64)),
    ("mips64n32", Some(Arch::Mips64N32)),
    ("mipsel64n32", Some(Arch::Mipsel64N32)),
    ("ppc", Some(Arch::Ppc)),
    ("ppc64", Some(Arch::Ppc64)),
    ("ppc64le", Some(Arch::Ppc64le)),
    ("s390", Some(Arch::S390)),
    ("s390x", Some(Arch::S390x)),
    ("parisc", Some(Arch::Parisc)),
    ("parisc64", Some(Arch::Parisc64)),
    ("riscv64", Some(Arch::Riscv64)),
    ("loong64", None),
    ("loongarch64", None),
    ("m68k", None),
    ("sh", None),
    ("sheb", None),
];

/// libseccomp's name of `arch` (`amd64` for SCMP_ARCH_X86_64).
pub fn engine_arch_name(arch: Arch) -> Option<&'static str> {
    ENGINE_ARCH_NAMES
        .iter()
        .find(|(_, a)| *a == Some(arch))
        .map(|(n, _)| *n)
}

/// An architecture in libseccomp's spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EngineArch(&'static str);

impl<'de> Deserialize<'de> for EngineArch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some((n, _)) = ENGINE_ARCH_NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(EngineArch(n));
        }
        let hint = match Arch::parse(&s).and_then(engine_arch_name) {
            Some(n) => format!("write {n}: arches use libseccomp's names"),
            None => spo_model::validate::suggestion(&s, ENGINE_ARCH_NAMES.iter().map(|(n, _)| *n)),
        };
        Err(serde::de::Error::custom(format!("unknown architecture {s:?} ({hint})")))
    }
}

/// `minKernel`: `"<major>.<minor>"`; `""` means no condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MinKernel(Option<crate::validate::KernelVersion>);

impl<'de> Deserialize<'de> for MinKernel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_min_kernel(&s).map(MinKernel).map_err(serde::de::Error::custom)
    }
}

/// Parses `minKernel` as Docker does: exactly two dot-separated numbers from 0 to 255, not
/// both 0; `""` is no condition.
fn parse_min_kernel(s: &str) -> Result<Option<crate::validate::KernelVersion>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| format!("invalid kernel version {s:?}: {why}");
    let number = |p: &str| {
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse::<u8>().ok()
        } else {
            None
        }
    };
    let mut parts = s.split('.');
    let (Some(major), Some(minor), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected \"<major>.<minor>\", such as \"4.8\""));
    };
    let (Some(major), Some(minor)) = (number(major), number(minor)) else {
        return Err(bad(
            "expected \"<major>.<minor>\", two numbers from 0 to 255, such as \"4.8\"",
        ));
    };
    if major == 0 && minor == 0 {
        return Err(bad("0.0 is not a kernel version"));
    }
    Ok(Some((u32::from(major), u32::from(minor))))
}

/// The errno of `name`: a number, or a name such as `EPERM` (this machine's numbering, as
/// containers-common uses).
fn errno_number(name: &str) -> Option<u32> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().ok();
    }
    ERRNO_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| u32::try_from(*v).ok())
}

/// Declares the errno name table from libc's constants.
macro_rules! errno_names {
    ($($name:ident),+ $(,)?) => {
        /// Errno names and this machine's values.
        const ERRNO_NAMES: &[(&str, libc::c_int)] = &[$((stringify!($name), libc::$name)),+];
    };
}

errno_names!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    ENXIO,
    E2BIG,
    ENOEXEC,
    EBADF,
    ECHILD,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    ENOTBLK,
    EBUSY,
    EEXIST,
    EXDEV,
    ENODEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    ENFILE,
    EMFILE,
    ENOTTY,
    ETXTBSY,
    EFBIG,
    ENOSPC,
    ESPIPE,
    EROFS,
    EMLINK,
    EPIPE,
    EDOM,
    ERANGE,
    EDEADLK,
    ENAMETOOLONG,
    ENOLCK,
    ENOSYS,
    ENOTEMPTY,
    ELOOP,
    EWOULDBLOCK,
    ENOMSG,
    EIDRM,
    ECHRNG,
    EL2NSYNC,
    EL3HLT,
    EL3RST,
    ELNRNG,
    EUNATCH,
    ENOCSI,
    EL2HLT,
    EBADE,
    EBADR,
    EXFULL,
    ENOANO,
    EBADRQC,
    EBADSLT,
    EDEADLOCK,
    EBFONT,
    ENOSTR,
    ENODATA,
    ETIME,
    ENOSR,
    ENONET,
    ENOPKG,
    EREMOTE,
    ENOLINK,
    EADV,
    ESRMNT,
    ECOMM,
    EPROTO,
    EMULTIHOP,
    EDOTDOT,
    EBADMSG,
    EOVERFLOW,
    ENOTUNIQ,
    EBADFD,
    EREMCHG,
    ELIBACC,
    ELIBBAD,
    ELIBSCN,
    ELIBMAX,
    ELIBEXEC,
    EILSEQ,
    ERESTART,
    ESTRPIPE,
    EUSERS,
    ENOTSOCK,
    EDESTADDRREQ,
    EMSGSIZE,
    EPROTOTYPE,
    ENOPROTOOPT,
    EPROTONOSUPPORT,
    ESOCKTNOSUPPORT,
    EOPNOTSUPP,
    ENOTSUP,
    EPFNOSUPPORT,
    EAFNOSUPPORT,
    EADDRINUSE,
    EADDRNOTAVAIL,
    ENETDOWN,
    ENETUNREACH,
    ENETRESET,
    ECONNABORTED,
    ECONNRESET,
    ENOBUFS,
    EISCONN,
    ENOTCONN,
    ESHUTDOWN,
    ETOOMANYREFS,
    ETIMEDOUT,
    ECONNREFUSED,
    EHOSTDOWN,
    EHOSTUNREACH,
    EALREADY,
    EINPROGRESS,
    ESTALE,
    EUCLEAN,
    ENOTNAM,
    ENAVAIL,
    EISNAM,
    EREMOTEIO,
    EDQUOT,
    ENOMEDIUM,
    EMEDIUMTYPE,
    ECANCELED,
    ENOKEY,
    EKEYEXPIRED,
    EKEYREVOKED,
    EKEYREJECTED,
    EOWNERDEAD,
    ENOTRECOVERABLE,
    ERFKILL,
    EHWPOISON,
);

/// An errno field (`errno`/`defaultErrno`) as a number, or an error naming `field`.
fn resolve_errno(name: Option<&str>, numeric: Option<u32>, field: &str) -> Result<Option<u32>, SeccompError> {
    match name.filter(|n| !n.is_empty()) {
        None => Ok(numeric),
        Some(n) => errno_number(n).map(Some).ok_or_else(|| {
            SeccompError::Invalid(format!(
                "{field}: unknown errno {n:?} (write a name such as EPERM or ENOSYS, or a number)"
            ))
        }),
    }
}

/// Turns an engine-format profile into the runtime-spec profile an engine would hand the
/// runtime on `ctx`, with one note per decision.
fn evaluate_engine_profile(
    profile: EngineProfile,
    ctx: &EngineContext,
    notes: &mut Vec<String>,
) -> Result<RuntimeSeccomp, SeccompError> {
    let arch = crate::syscalls::resolve(ctx.arch);
    let legacy = profile.architectures.unwrap_or_default();
    let arch_map = profile.arch_map.unwrap_or_default();
    if !legacy.is_empty() && !arch_map.is_empty() {
        return Err(SeccompError::Invalid(
            "architectures and archMap are both set, which engines refuse: keep one of them".to_owned(),
        ));
    }
    let architectures = if arch_map.is_empty() {
        legacy
    } else {
        match arch_map.iter().find(|e| e.architecture == MapArch::Api(arch)) {
            Some(entry) => {
                let mut list = vec![arch];
                list.extend(entry.sub_architectures.iter().flatten().copied());
                let names: Vec<&str> = list.iter().map(|a| a.as_str()).collect();
                notes.push(format!(
                    "archMap: the filter's architectures are those of the {arch} entry: {}",
                    names.join(", ")
                ));
                list
            }
            None => {
                notes.push(format!(
                    "archMap has no entry for {arch}, so the profile lists no architectures \
                     (runtimes then accept the native one only)"
                ));
                Vec::new()
            }
        }
    };
    let default_errno_ret = resolve_errno(
        profile.default_errno.as_deref(),
        profile.default_errno_ret,
        "defaultErrno",
    )?;

    let mut syscalls = Vec::new();
    for (i, rule) in profile.syscalls.unwrap_or_default().into_iter().enumerate() {
        let names = match (rule.name.as_deref().filter(|n| !n.is_empty()), rule.names) {
            (Some(_), Some(names)) if !names.is_empty() => {
                return Err(SeccompError::Invalid(format!(
                    "syscalls[{i}]: name and names are both set, which engines refuse: move the name into names"
                )));
            }
            (Some(name), _) => vec![name.to_owned()],
            (None, Some(names)) if !names.is_empty() => names,
            (None, _) => {
                return Err(SeccompError::Invalid(format!(
                    "syscalls[{i}].names: the rule names no syscall (write names: [...])"
                )));
            }
        };
        if let Some(reason) = left_out(rule.excludes.as_ref(), rule.includes.as_ref(), i, arch, ctx)? {
            notes.push(format!("syscalls[{i}] ({}) left out: {reason}", names.join(", ")));
            continue;
        }
        syscalls.push(RuntimeSyscall {
            names,
            action: rule.action,
            errno_ret: resolve_errno(rule.errno.as_deref(), rule.errno_ret, &format!("syscalls[{i}].errno"))?,
            args: rule.args.unwrap_or_default(),
        });
    }

    Ok(RuntimeSeccomp {
        default_action: profile.default_action,
        default_errno_ret,
        architectures,
        flags: profile.flags.unwrap_or_default(),
        listener_path: profile.listener_path.unwrap_or_default(),
        listener_metadata: profile.listener_metadata.unwrap_or_default(),
        syscalls,
    })
}

/// Why an engine leaves rule `i` out on `ctx`, or `None` when it keeps it. The conditions are
/// checked in the engines' order (excludes, then includes; arches, caps, kernel), and the
/// first that holds is the reason.
fn left_out(
    excludes: Option<&EngineFilter>,
    includes: Option<&EngineFilter>,
    i: usize,
    arch: Arch,
    ctx: &EngineContext,
) -> Result<Option<String>, SeccompError> {
    let arch_name = engine_arch_name(arch);
    let names_arch = |list: &[EngineArch]| arch_name.is_some_and(|n| list.iter().any(|a| a.0 == n));
    let kernel = |which: &str| {
        ctx.kernel.ok_or_else(|| {
            SeccompError::Invalid(format!(
                "syscalls[{i}].{which}.minKernel: the kernel version is not known, so whether the rule \
                 applies cannot be decided (give the kernel version to convert for)"
            ))
        })
    };
    let version = |v: crate::validate::KernelVersion| format!("{}.{}", v.0, v.1);
    let arch_label = arch_name.map_or_else(|| arch.to_string(), |n| format!("{n} ({arch})"));

    if let Some(ex) = excludes {
        if names_arch(ex.arches.as_deref().unwrap_or_default()) {
            return Ok(Some(format!("excludes.arches names {arch_label}")));
        }
        let present: Vec<&str> = ex
            .caps
            .iter()
            .flatten()
            .filter(|c| ctx.capabilities.contains(&c.0))
            .map(|c| c.0.as_str())
            .collect();
        if !present.is_empty() {
            return Ok(Some(format!(
                "excludes.caps names {}, which the container has",
                present.join(", ")
            )));
        }
        if let Some(min) = ex.min_kernel.and_then(|m| m.0) {
            let k = kernel("excludes")?;
            if k >= min {
                return Ok(Some(format!(
                    "excludes.minKernel is {} and the kernel is {}",
                    version(min),
                    version(k)
                )));
            }
        }
    }
    if let Some(inc) = includes {
        let arches = inc.arches.as_deref().unwrap_or_default();
        if !arches.is_empty() && !names_arch(arches) {
            let listed: Vec<&str> = arches.iter().map(|a| a.0).collect();
            return Ok(Some(format!(
                "includes.arches names {}, not {arch_label}",
                listed.join(", ")
            )));
        }
        let missing: Vec<&str> = inc
            .caps
            .iter()
            .flatten()
            .filter(|c| !ctx.capabilities.contains(&c.0))
            .map(|c| c.0.as_str())
            .collect();
        if !missing.is_empty() {
            return Ok(Some(format!(
                "includes.caps needs {}, which the container does not have",
                missing.join(", ")
            )));
        }
        if let Some(min) = inc.min_kernel.and_then(|m| m.0) {
            let k = kernel("includes")?;
            if k < min {
                return Ok(Some(format!(
                    "includes.minKernel is {} and the kernel is {}",
                    version(min),
                    version(k)
                )));
            }
        }
    }
    Ok(None)
}
