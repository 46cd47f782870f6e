//! Property tests: typed objects survive YAML and JSON round trips, the strict schema
//! walker agrees with what the types serialize, and `parse_source` reads back exactly the
//! object that was written.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use spo_model::apparmor::{
    AppArmorAbstract, AppArmorCapability, AppArmorExecutable, AppArmorFilesystem, AppArmorMode, AppArmorNetwork,
    AppArmorProtocols, CAPABILITIES,
};
use spo_model::binding::{BindingProfileKind, ProfileRef};
use spo_model::recording::{MergeStrategy, Recorder, RecordingKind, supported_pair};
use spo_model::seccomp::{Arch, SeccompAction, SeccompArg, SeccompFlag, SeccompOperator, SeccompSyscall};
use spo_model::selinux::{PolicyRef, PolicyRefKind, SelinuxMode};
use spo_model::{
    AnyObject, AppArmorProfile, AppArmorProfileSpec, Kind, Outcome, ProfileBinding, ProfileBindingSpec,
    ProfileRecording, ProfileRecordingSpec, SeccompProfile, SeccompProfileSpec, SelinuxProfile, SelinuxProfileSpec,
    SpecState, parse_source,
};

// ---------------------------------------------------------------------------------------
// Leaf strategies

/// An object name that is a valid DNS label (so also a valid SELinux block name).
fn name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,18}[a-z0-9])?"
}

fn namespace() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,10}",
        "[a-z]{1,8}\\.(io|com|dev)/[a-z][a-z0-9_.-]{0,10}[a-z0-9]",
        Just("app.kubernetes.io/name".to_owned()),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z0-9]([A-Za-z0-9._-]{0,12}[A-Za-z0-9])?"]
}

fn labels() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    proptest::option::of(proptest::collection::btree_map(label_key(), label_value(), 0..4))
}

/// Free text: any printable characters, plus newlines, tabs and quotes, which are the
/// usual trouble spots of YAML emitters.
fn free_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[ -~\n\t\"']{0,60}",
        Just("yes".to_owned()),
        Just("0x1F".to_owned()),
        Just("~".to_owned())
    ]
}

fn state() -> impl Strategy<Value = SpecState> {
    prop::sample::select(vec![SpecState::Enabled, SpecState::Disabled])
}

fn meta(name: String, namespace: Option<String>, labels: Option<BTreeMap<String, String>>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace,
        labels,
        ..ObjectMeta::default()
    }
}

// ---------------------------------------------------------------------------------------
// SeccompProfile

const SYSCALLS: &[&str] = &[
    "accept4",
    "bind",
    "brk",
    "clone",
    "clone3",
    "close",
    "connect",
    "epoll_ctl",
    "epoll_pwait",
    "execve",
    "exit_group",
    "fcntl",
    "fstat",
    "futex",
    "getpid",
    "ioctl",
    "kill",
    "listen",
    "mknod",
    "mmap",
    "mprotect",
    "munmap",
    "newfstatat",
    "openat",
    "personality",
    "prctl",
    "ptrace",
    "read",
    "recvfrom",
    "rt_sigaction",
    "sendto",
    "setsockopt",
    "socket",
    "tgkill",
    "write",
    "_llseek",
];

fn seccomp_arg() -> impl Strategy<Value = SeccompArg> {
    (
        0u32..6,
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        prop::sample::select(SeccompOperator::ALL),
    )
        .prop_map(|(index, value, value_two, op)| SeccompArg {
            index,
            value,
            value_two,
            op,
        })
}

fn seccomp_rule() -> impl Strategy<Value = SeccompSyscall> {
    (
        prop::sample::subsequence(SYSCALLS, 1..6),
        prop::sample::select(SeccompAction::ALL),
        0i64..=i64::from(i32::MAX),
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(seccomp_arg(), 0..4)),
    )
        .prop_map(|(names, action, errno, with_errno, args)| {
            // One comparison per argument index, as libseccomp requires.
            let args = args.map(|a| {
                let mut seen = BTreeSet::new();
                a.into_iter().filter(|x| seen.insert(x.index)).collect::<Vec<_>>()
            });
            SeccompSyscall {
                names: names.into_iter().map(str::to_owned).collect(),
                action,
                errno_ret: (with_errno && action.takes_errno()).then_some(errno),
                args,
            }
        })
}

/// Removes what would make a generated profile contradict itself: a syscall with two
/// different unconditional actions, NOTIFY without a listener, a base profile naming
/// the profile itself.
fn make_coherent(name: &str, mut spec: SeccompProfileSpec) -> SeccompProfileSpec {
    if spec.default_action == SeccompAction::Notify {
        spec.default_action = SeccompAction::Errno;
    }
    let listener = spec.listener_path.is_some();
    if !listener {
        spec.listener_metadata = None;
    }
    if spec.base_profile_name.as_deref() == Some(name) {
        spec.base_profile_name = None;
    }
    if let Some(rules) = spec.syscalls.as_mut() {
        let mut unconditional: BTreeSet<String> = BTreeSet::new();
        for rule in rules.iter_mut() {
            if rule.action == SeccompAction::Notify && !listener {
                rule.action = SeccompAction::Log;
                rule.errno_ret = None;
            }
            if rule.args.as_ref().is_none_or(Vec::is_empty) {
                rule.names.retain(|n| unconditional.insert(n.clone()));
            }
        }
        rules.retain(|r| !r.names.is_empty());
    }
    spec
}

fn seccomp_profile() -> impl Strategy<Value = SeccompProfile> {
    let spec = (
        (
            state(),
            proptest::option::of(any::<bool>()),
            prop::sample::select(SeccompAction::ALL),
        ),
        proptest::option::of(prop::sample::subsequence(Arch::ALL, 0..4)),
        proptest::option::of("/var/run/security-profiles-operator/[a-zA-Z0-9_.-]{1,20}"),
        proptest::option::of(free_text()),
        proptest::option::of(proptest::collection::vec(seccomp_rule(), 0..6)),
        proptest::option::of(prop::sample::subsequence(SeccompFlag::ALL, 0..3)),
        proptest::option::of(prop_oneof![
            name().prop_map(|n| format!("base-{n}")),
            "oci://registry\\.example\\.com/[a-z]{1,10}:v[0-9]"
        ]),
    )
        .prop_map(
            |(
                (state, disabled, default_action),
                architectures,
                listener_path,
                listener_metadata,
                syscalls,
                flags,
                base_profile_name,
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
        );
    (name(), labels(), spec).prop_map(|(n, labels, spec)| {
        let spec = make_coherent(&n, spec);
        let mut p = SeccompProfile::new(&n, spec);
        p.metadata = meta(n, None, labels);
        p
    })
}

// ---------------------------------------------------------------------------------------
// SelinuxProfile

fn selinux_identifier() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,15}"
}

fn policy_ref() -> impl Strategy<Value = PolicyRef> {
    prop_oneof![
        selinux_identifier().prop_map(|name| PolicyRef {
            kind: PolicyRefKind::System,
            name
        }),
        name().prop_map(|n| PolicyRef {
            kind: PolicyRefKind::SelinuxProfile,
            name: format!("parent-{n}")
        }),
    ]
}

fn selinux_allow() -> impl Strategy<Value = BTreeMap<String, BTreeMap<String, Vec<String>>>> {
    let label = prop_oneof![
        Just("@self".to_owned()),
        selinux_identifier().prop_map(|t| format!("{t}_t"))
    ];
    let classes = proptest::collection::btree_map(
        selinux_identifier(),
        proptest::collection::vec(selinux_identifier(), 1..5),
        1..4,
    );
    proptest::collection::btree_map(label, classes, 0..4)
}

fn selinux_profile() -> impl Strategy<Value = SelinuxProfile> {
    let spec = (
        state(),
        proptest::option::of(any::<bool>()),
        proptest::collection::vec(policy_ref(), 0..4),
        prop::sample::select(SelinuxMode::ALL),
        proptest::option::of(any::<bool>()),
        proptest::option::of(selinux_allow()),
    )
        .prop_map(
            |(state, disabled, inherit, mode, permissive, allow)| SelinuxProfileSpec {
                state,
                disabled,
                inherit,
                mode,
                permissive,
                allow,
            },
        );
    (name(), labels(), spec).prop_map(|(n, labels, spec)| {
        let mut p = SelinuxProfile::new(&n, spec);
        p.metadata = meta(n, None, labels);
        p
    })
}

// ---------------------------------------------------------------------------------------
// AppArmorProfile

fn profile_path() -> impl Strategy<Value = String> {
    prop_oneof![
        "/[a-z0-9_.*-]{1,12}(/[a-z0-9_.*-]{1,12}){0,3}",
        "@\\{PROC\\}/[a-z0-9/*]{1,20}",
        Just("/**".to_owned())
    ]
}

fn paths() -> impl Strategy<Value = Option<Vec<String>>> {
    proptest::option::of(proptest::collection::vec(profile_path(), 0..4))
}

fn apparmor_abstract() -> impl Strategy<Value = AppArmorAbstract> {
    (
        proptest::option::of((paths(), paths()).prop_map(|(allowed_executables, allowed_libraries)| {
            AppArmorExecutable {
                allowed_executables,
                allowed_libraries,
            }
        })),
        proptest::option::of((paths(), paths(), paths(), paths()).prop_map(
            |(read_only_paths, write_only_paths, read_write_paths, denied_paths)| AppArmorFilesystem {
                read_only_paths,
                write_only_paths,
                read_write_paths,
                denied_paths,
            },
        )),
        proptest::option::of(
            (
                proptest::option::of(any::<bool>()),
                proptest::option::of(
                    (proptest::option::of(any::<bool>()), proptest::option::of(any::<bool>()))
                        .prop_map(|(allow_tcp, allow_udp)| AppArmorProtocols { allow_tcp, allow_udp }),
                ),
            )
                .prop_map(|(allow_raw, allowed_protocols)| AppArmorNetwork {
                    allow_raw,
                    allowed_protocols,
                }),
        ),
        proptest::option::of(
            proptest::option::of(prop::sample::subsequence(CAPABILITIES, 0..5)).prop_map(|caps| AppArmorCapability {
                allowed_capabilities: caps.map(|c| c.into_iter().map(str::to_owned).collect()),
            }),
        ),
    )
        .prop_map(|(executable, filesystem, network, capability)| AppArmorAbstract {
            executable,
            filesystem,
            network,
            capability,
        })
}

fn apparmor_profile() -> impl Strategy<Value = AppArmorProfile> {
    // Either raw policy text or the abstract description, never both.
    let body = prop_oneof![
        free_text().prop_map(|t| (
            Some(format!(
                "profile p flags=(attach_disconnected) {{\n  # {t}\n  file,\n}}\n"
            )),
            None
        )),
        apparmor_abstract().prop_map(|a| (None, Some(a))),
    ];
    let spec = (
        state(),
        proptest::option::of(any::<bool>()),
        prop::sample::select(AppArmorMode::ALL),
        proptest::option::of(any::<bool>()),
        body,
    )
        .prop_map(
            |(state, disabled, mode, complain_mode, (policy, abstract_))| AppArmorProfileSpec {
                state,
                disabled,
                mode,
                complain_mode,
                policy,
                abstract_,
            },
        );
    (name(), labels(), spec).prop_map(|(n, labels, spec)| {
        let mut p = AppArmorProfile::new(&n, spec);
        p.metadata = meta(n, None, labels);
        p
    })
}

// ---------------------------------------------------------------------------------------
// Selectors, ProfileRecording, ProfileBinding

fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
    let with_values = (
        label_key(),
        prop::sample::select(vec!["In", "NotIn"]),
        proptest::collection::vec("[a-z0-9]([a-z0-9.-]{0,8}[a-z0-9])?", 1..4),
    )
        .prop_map(|(key, op, values)| LabelSelectorRequirement {
            key,
            operator: op.to_owned(),
            values: Some(values),
        });
    let without_values = (
        label_key(),
        prop::sample::select(vec!["Exists", "DoesNotExist"]),
        any::<bool>(),
    )
        .prop_map(|(key, op, empty_list)| LabelSelectorRequirement {
            key,
            operator: op.to_owned(),
            values: empty_list.then(Vec::new),
        });
    prop_oneof![with_values, without_values]
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        proptest::option::of(proptest::collection::vec(requirement(), 0..3)),
        proptest::option::of(proptest::collection::btree_map(label_key(), label_value(), 0..3)),
    )
        .prop_map(|(match_expressions, match_labels)| LabelSelector {
            match_expressions,
            match_labels,
        })
}

fn profile_recording() -> impl Strategy<Value = ProfileRecording> {
    let pair = (
        prop::sample::select(RecordingKind::ALL),
        prop::sample::select(Recorder::ALL),
    )
        .prop_filter("unsupported kind/recorder pair", |(k, r)| supported_pair(*k, *r));
    let spec = (
        pair,
        prop::sample::select(MergeStrategy::ALL),
        selector(),
        proptest::option::of(proptest::collection::vec(name(), 0..4)),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |((kind, recorder), merge_strategy, pod_selector, containers, disable_profile_after_recording)| {
                ProfileRecordingSpec {
                    kind,
                    recorder,
                    merge_strategy,
                    pod_selector,
                    containers,
                    disable_profile_after_recording,
                }
            },
        );
    (name(), namespace(), labels(), spec).prop_map(|(n, ns, labels, spec)| {
        let mut r = ProfileRecording::new(&n, spec);
        r.metadata = meta(n, Some(ns), labels);
        r
    })
}

fn image() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        "[a-z]{1,10}(\\.[a-z]{2,5})?/[a-z0-9-]{1,12}:[a-z0-9.]{1,8}",
        "[a-z]{1,10}/[a-z0-9-]{1,12}@sha256:[0-9a-f]{64}",
    ]
}

fn profile_binding() -> impl Strategy<Value = ProfileBinding> {
    let spec = (
        prop::sample::select(BindingProfileKind::ALL),
        name(),
        image(),
        proptest::option::of(selector()),
    )
        .prop_map(|(kind, profile, image, pod_selector)| ProfileBindingSpec {
            profile_ref: ProfileRef { kind, name: profile },
            image,
            pod_selector,
        });
    (name(), namespace(), labels(), spec).prop_map(|(n, ns, labels, spec)| {
        let mut b = ProfileBinding::new(&n, spec);
        b.metadata = meta(n, Some(ns), labels);
        b
    })
}

// ---------------------------------------------------------------------------------------
// The properties, shared by every kind

fn yaml_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(x: &T) -> Result<(), TestCaseError> {
    let text = serde_norway::to_string(x).map_err(|e| TestCaseError::fail(format!("to YAML: {e}")))?;
    let back: T = serde_norway::from_str(&text).map_err(|e| TestCaseError::fail(format!("from YAML: {e}\n{text}")))?;
    prop_assert_eq!(&back, x, "YAML round trip changed the object:\n{}", text);
    Ok(())
}

fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(x: &T) -> Result<(), TestCaseError> {
    let text = serde_json::to_string(x).map_err(|e| TestCaseError::fail(format!("to JSON: {e}")))?;
    let back: T = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("from JSON: {e}\n{text}")))?;
    prop_assert_eq!(&back, x, "JSON round trip changed the object:\n{}", text);
    Ok(())
}

/// The CRD schema knows every field the type serializes, with the type it serializes.
fn schema_accepts<T: Serialize>(kind: Kind, x: &T) -> Result<(), TestCaseError> {
    let mut value = serde_json::to_value(x).map_err(|e| TestCaseError::fail(format!("to JSON value: {e}")))?;
    let original = value.clone();
    let mut problems = spo_model::Problems::new();
    spo_model::strict::check_against_schema(&mut value, spo_model::crd::schema_of(kind), &mut problems);
    let bad: Vec<String> = problems
        .iter()
        .filter(|p| p.message.starts_with("unknown field") || p.message.starts_with("expected "))
        .map(ToString::to_string)
        .collect();
    prop_assert!(
        bad.is_empty(),
        "schema of {} disagrees with the type:\n{}\nobject: {}",
        kind,
        bad.join("\n"),
        original
    );
    Ok(())
}

/// Written as JSON and read back by `parse_source`: a valid document equal to the original.
fn parses_back<T: Serialize + Clone>(x: &T, wrap: impl Fn(Box<T>) -> AnyObject) -> Result<(), TestCaseError> {
    let json = serde_json::to_string_pretty(x).map_err(|e| TestCaseError::fail(format!("to JSON: {e}")))?;
    let yaml = spo_model::yaml::to_string(x).map_err(|e| TestCaseError::fail(format!("to YAML: {e}")))?;
    let expected = wrap(Box::new(x.clone()));
    for (name, text) in [("generated.json", &json), ("generated.yaml", &yaml)] {
        let docs = parse_source(name, text).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        prop_assert_eq!(docs.len(), 1, "{}: {:?}", name, docs);
        let doc = &docs[0];
        prop_assert!(
            !doc.has_errors(),
            "{} of a generated valid object has errors:\n{}\n{}",
            name,
            doc.problems,
            text
        );
        match &doc.outcome {
            Outcome::Valid(obj) => prop_assert_eq!(obj, &expected, "{} read back differently:\n{}", name, text),
            other => prop_assert!(false, "{}: outcome {:?}\n{}", name, other, text),
        }
    }
    Ok(())
}

/// A field the schema does not know is reported at its exact path, whatever else the
/// object holds.
fn unknown_field_is_reported<T: Serialize>(x: &T, key: &str) -> Result<(), TestCaseError> {
    let mut value = serde_json::to_value(x).map_err(|e| TestCaseError::fail(format!("to JSON value: {e}")))?;
    let spec = value.get_mut("spec").and_then(serde_json::Value::as_object_mut);
    prop_assert!(spec.is_some(), "no spec object");
    if let Some(spec) = spec {
        spec.insert(key.to_owned(), serde_json::Value::Bool(true));
    }
    let text = value.to_string();
    let docs = parse_source("extra.json", &text).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let want = format!("spec.{key}");
    prop_assert!(
        matches!(docs[0].outcome, Outcome::Invalid),
        "accepted an unknown field: {}",
        text
    );
    prop_assert!(
        docs[0]
            .problems
            .errors()
            .any(|p| p.path.as_str() == want && p.message.starts_with("unknown field")),
        "no unknown-field error at {}:\n{}",
        want,
        docs[0].problems
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unknown_spec_fields_are_reported(x in seccomp_profile(), key in "x[a-zA-Z]{2,12}") {
        unknown_field_is_reported(&x, &key)?;
    }

    #[test]
    fn seccomp_profiles_round_trip(x in seccomp_profile()) {
        yaml_round_trip(&x)?;
        json_round_trip(&x)?;
        schema_accepts(Kind::SeccompProfile, &x)?;
        parses_back(&x, AnyObject::SeccompProfile)?;
    }

    #[test]
    fn selinux_profiles_round_trip(x in selinux_profile()) {
        yaml_round_trip(&x)?;
        json_round_trip(&x)?;
        schema_accepts(Kind::SelinuxProfile, &x)?;
        parses_back(&x, AnyObject::SelinuxProfile)?;
    }

    #[test]
    fn apparmor_profiles_round_trip(x in apparmor_profile()) {
        yaml_round_trip(&x)?;
        json_round_trip(&x)?;
        schema_accepts(Kind::AppArmorProfile, &x)?;
        parses_back(&x, AnyObject::AppArmorProfile)?;
    }

    #[test]
    fn profile_recordings_round_trip(x in profile_recording()) {
        yaml_round_trip(&x)?;
        json_round_trip(&x)?;
        schema_accepts(Kind::ProfileRecording, &x)?;
        parses_back(&x, AnyObject::ProfileRecording)?;
    }

    #[test]
    fn profile_bindings_round_trip(x in profile_binding()) {
        yaml_round_trip(&x)?;
        json_round_trip(&x)?;
        schema_accepts(Kind::ProfileBinding, &x)?;
        parses_back(&x, AnyObject::ProfileBinding)?;
    }
}
