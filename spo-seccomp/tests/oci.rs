//! The runtime JSON form: conversion round trips, strict parsing, and the exact node file.

use proptest::prelude::*;
use spo_model::SpecState;
use spo_model::contract::error_chain;
use spo_model::seccomp::{
    Arch, SeccompAction, SeccompArg, SeccompFlag, SeccompOperator, SeccompProfileSpec, SeccompSyscall,
};
use spo_seccomp::oci::{from_runtime, parse_runtime_json, render_node_json, to_runtime};

const SYSCALLS: &[&str] = &[
    "read",
    "write",
    "openat",
    "close",
    "mmap",
    "personality",
    "clone3",
    "ioctl",
    "_llseek",
    "socket",
];

fn action() -> impl Strategy<Value = SeccompAction> {
    prop::sample::select(SeccompAction::ALL)
}

fn arg() -> impl Strategy<Value = SeccompArg> {
    (
        0u32..6,
        any::<u64>(),
        prop_oneof![Just(None), (1u64..).prop_map(Some)],
        prop::sample::select(SeccompOperator::ALL),
    )
        .prop_map(|(index, value, value_two, op)| SeccompArg {
            index,
            // Canonical form: value always present, valueTwo absent when 0.
            value: Some(value),
            value_two,
            op,
        })
}

fn rule() -> impl Strategy<Value = SeccompSyscall> {
    (
        prop::sample::subsequence(SYSCALLS, 1..4),
        action(),
        prop::option::of(0i64..=i64::from(i32::MAX)),
        prop::option::of(prop::collection::vec(arg(), 1..=6)),
    )
        .prop_map(|(names, action, errno_ret, args)| SeccompSyscall {
            names: names.into_iter().map(str::to_owned).collect(),
            action,
            errno_ret,
            args,
        })
}

fn non_empty_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[a-zA-Z0-9_.\\-]{1,20}")
}

/// Random specs in canonical form (no empty lists or strings), CRD-only fields included.
fn spec() -> impl Strategy<Value = SeccompProfileSpec> {
    (
        (
            prop::sample::select(&[SpecState::Enabled, SpecState::Disabled][..]),
            prop::option::of(any::<bool>()),
            prop::option::of("[a-z]{1,10}"),
        ),
        action(),
        prop::option::of(prop::collection::vec(prop::sample::select(Arch::ALL), 1..4)),
        non_empty_string().prop_map(|p| p.map(|p| format!("/var/run/security-profiles-operator/{p}"))),
        non_empty_string(),
        prop::option::of(prop::collection::vec(rule(), 1..6)),
        prop::option::of(prop::collection::vec(prop::sample::select(SeccompFlag::ALL), 1..3)),
    )
        .prop_map(
            |(
                (state, disabled, base_profile_name),
                default_action,
                architectures,
                listener_path,
                listener_metadata,
                syscalls,
                flags,
            )| {
                SeccompProfileSpec {
                    state,
                    disabled,
                    default_action,
                    architectures,
                    listener_path,
                    listener_metadata,
                    syscalls,
                    flags,
                    base_profile_name,
                }
            },
        )
}

/// The spec without its CRD-only fields, which the runtime shape does not carry.
fn without_crd_only_fields(mut s: SeccompProfileSpec) -> SeccompProfileSpec {
    s.state = SpecState::Enabled;
    s.disabled = None;
    s.base_profile_name = None;
    s
}

proptest! {
    #[test]
    fn crd_runtime_crd_is_lossless(s in spec()) {
        let back = from_runtime(&to_runtime(&s)).expect("no defaultErrnoRet, so always convertible");
        prop_assert_eq!(back, without_crd_only_fields(s));
    }

    #[test]
    fn canonical_runtime_json_round_trips_byte_for_byte(s in spec()) {
        // Canonical runtime JSON is what we render; parsing and writing it again changes nothing,
        // neither through the runtime struct nor through the CRD spec.
        let text = String::from_utf8(render_node_json(&s).expect("render")).expect("utf-8");
        let rt = parse_runtime_json(&text).expect("parse");
        prop_assert_eq!(serde_json::to_string(&rt).expect("write"), text.clone());
        let via_crd = render_node_json(&from_runtime(&rt).expect("convert")).expect("render");
        prop_assert_eq!(String::from_utf8(via_crd).expect("utf-8"), text);
    }

    #[test]
    fn render_is_deterministic(s in spec()) {
        prop_assert_eq!(render_node_json(&s).expect("render"), render_node_json(&s.clone()).expect("render"));
    }
}

#[test]
fn hand_written_runtime_json_round_trips_byte_for_byte() {
    let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],"flags":["SECCOMP_FILTER_FLAG_LOG"],"listenerPath":"/var/run/security-profiles-operator/agent.sock","listenerMetadata":"meta","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":4294967295,"valueTwo":8,"op":"SCMP_CMP_MASKED_EQ"}]},{"names":["mkdir","rmdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38},{"names":["ptrace"],"action":"SCMP_ACT_NOTIFY"}]}"#;
    let rt = parse_runtime_json(text).expect("parse");
    assert_eq!(serde_json::to_string(&rt).expect("write"), text);
    let spec = from_runtime(&rt).expect("convert");
    assert_eq!(
        String::from_utf8(render_node_json(&spec).expect("render")).expect("utf-8"),
        text
    );
}

fn parse_error(text: &str) -> String {
    let err = parse_runtime_json(text).expect_err("must not parse");
    error_chain(&err)
}

#[test]
fn misspelled_top_level_field_is_named() {
    let msg = parse_error(r#"{"defaultActon":"SCMP_ACT_ERRNO"}"#);
    assert!(msg.contains("at field defaultActon"), "{msg}");
    assert!(msg.contains("unknown field `defaultActon`"), "{msg}");
    assert!(msg.contains("defaultAction"), "the allowed fields are listed: {msg}");
}

#[test]
fn misspelled_nested_field_is_named_with_its_path() {
    let msg = parse_error(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},{"names":["write"],"action":"SCMP_ACT_ALLOW","errnoret":1}]}"#,
    );
    assert!(msg.contains("at field syscalls[1].errnoret"), "{msg}");
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let msg = parse_error(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":"zero","value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    assert!(msg.contains("at field syscalls[0].args[0].index"), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");

    let msg =
        parse_error(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALOW"}]}"#);
    assert!(msg.contains("at field syscalls[0].action"), "{msg}");
    assert!(msg.contains("SCMP_ACT_ALOW"), "{msg}");

    let msg = parse_error(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":-1}"#);
    assert!(msg.contains("at field defaultErrnoRet"), "{msg}");
}

#[test]
fn truncated_input_is_reported_with_its_path_and_position() {
    let msg = parse_error(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"#);
    assert!(msg.contains("syscalls[0]"), "{msg}");
    assert!(msg.contains("EOF"), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn missing_default_action_is_reported() {
    let msg = parse_error(r#"{"syscalls":[]}"#);
    assert!(msg.contains("missing field `defaultAction`"), "{msg}");
}

#[test]
fn node_file_golden() {
    let spec: SeccompProfileSpec = serde_norway::from_str(
        r#"
state: Enabled
baseProfileName: runc-v1.2.0
defaultAction: SCMP_ACT_ERRNO
architectures: [SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64]
flags: [SECCOMP_FILTER_FLAG_SPEC_ALLOW]
syscalls:
- names: [read, write, exit_group]
  action: SCMP_ACT_ALLOW
- names: [personality]
  action: SCMP_ACT_ALLOW
  args:
  - {index: 0, value: 0, op: SCMP_CMP_EQ}
  - {index: 1, value: 255, valueTwo: 8, op: SCMP_CMP_MASKED_EQ}
- names: [mkdir]
  action: SCMP_ACT_ERRNO
  errnoRet: 38
"#,
    )
    .expect("spec");
    let rendered = String::from_utf8(render_node_json(&spec).expect("render")).expect("utf-8");
    assert_eq!(
        rendered,
        concat!(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64"],"#,
            r#""flags":["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],"syscalls":["#,
            r#"{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"},"#,
            r#"{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":1,"value":255,"valueTwo":8,"op":"SCMP_CMP_MASKED_EQ"}]},"#,
            r#"{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#
        )
    );
}
