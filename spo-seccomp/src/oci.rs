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
                args: rule
                    .args
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| RuntimeArg {
                        index: a.index,
                        value: a.value.unwrap_or(0),
                        value_two: a.value_two.unwrap_or(0),
                        op: a.op,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Converts a spec to the runtime shape, refusing values the runtime shape cannot hold
/// (an `errnoRet` that is negative or above `u32::MAX`).
pub fn try_to_runtime(spec: &SeccompProfileSpec) -> Result<RuntimeSeccomp, SeccompError> {
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
    if bad.is_empty() {
        Ok(to_runtime(spec))
    } else {
        Err(SeccompError::Invalid(bad))
    }
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
    let mut de = serde_json::Deserializer::from_str(text);
    let rt: RuntimeSeccomp = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let operation = if path == "." {
            "parsing runtime seccomp JSON".to_owned()
        } else {
            format!("parsing runtime seccomp JSON at field {path}")
        };
        SeccompError::Json {
            operation,
            source: e.into_inner(),
        }
    })?;
    de.end().map_err(|source| SeccompError::Json {
        operation: "parsing runtime seccomp JSON: trailing data after the profile".to_owned(),
        source,
    })?;
    Ok(rt)
}

/// The node file for a spec whose base profiles are already resolved (its own
/// `baseProfileName` is ignored): compact runtime JSON, keys in runtime-spec's Go field order,
/// as Go's `json.Marshal` writes it. Equal specs give equal bytes, so the installer can skip
/// rewriting a file that has not changed.
pub fn render_node_json(spec: &SeccompProfileSpec) -> Result<Vec<u8>, SeccompError> {
    let rt = try_to_runtime(spec)?;
    serde_json::to_vec(&rt).map_err(|source| SeccompError::Json {
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
    fn trailing_data_is_refused() {
        let err = parse_runtime_json(r#"{"defaultAction":"SCMP_ACT_ERRNO"} {}"#).expect_err("trailing");
        assert!(err.to_string().contains("trailing data"), "{err}");
    }
}
