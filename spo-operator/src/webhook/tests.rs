//! The webhooks end to end through their handlers: review bytes in, answer bytes out, the
//! patch applied with an independent JSON Patch implementation and the pod read back.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use spo_model::binding::BindingProfileKind;
use spo_model::common::ProfileState;

use super::binding::Readiness;
use super::state::{Relist, WebhookState};
use super::*;

fn binding(
    ns: &str,
    name: &str,
    kind: &str,
    profile: &str,
    image: &str,
    selector: Option<Value>,
) -> spo_model::binding::ProfileBinding {
    let mut spec = json!({"profileRef": {"kind": kind, "name": profile}, "image": image});
    if let Some(s) = selector {
        spec["podSelector"] = s;
    }
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "ProfileBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("binding")
}

fn recording(
    ns: &str,
    name: &str,
    kind: &str,
    recorder: &str,
    selector: Value,
    containers: Option<Vec<&str>>,
) -> spo_model::recording::ProfileRecording {
    let mut spec = json!({"kind": kind, "recorder": recorder, "podSelector": selector});
    if let Some(c) = containers {
        spec["containers"] = json!(c);
    }
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "ProfileRecording",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("recording")
}

/// A state listed once with these objects and profiles.
fn state_with(
    bindings: &[spo_model::binding::ProfileBinding],
    recordings: &[spo_model::recording::ProfileRecording],
    profiles: &[(BindingProfileKind, &str, Readiness)],
) -> WebhookState {
    let st = WebhookState::new();
    st.on_binding(Relist::Begin);
    for b in bindings {
        st.on_binding(Relist::Item(b));
    }
    st.on_binding(Relist::Done);
    st.on_recording(Relist::Begin);
    for r in recordings {
        st.on_recording(Relist::Item(r));
    }
    st.on_recording(Relist::Done);
    for kind in [
        BindingProfileKind::SeccompProfile,
        BindingProfileKind::SelinuxProfile,
        BindingProfileKind::AppArmorProfile,
    ] {
        st.on_profile(kind, Relist::Begin);
        for (k, n, r) in profiles {
            if *k == kind {
                st.on_profile(kind, Relist::Item(((*n).to_owned(), r.clone())));
            }
        }
        st.on_profile(kind, Relist::Done);
    }
    assert!(st.is_synced());
    st
}

fn review(op: &str, resource: &str, sub: Option<&str>, pod: &Value, old: Option<&Value>) -> Vec<u8> {
    let mut req = json!({
        "uid": "4b2f-uid",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": resource},
        "operation": op,
        "namespace": "team",
        "name": pod["metadata"]["name"].as_str().unwrap_or_default(),
        "object": pod,
    });
    if let Some(s) = sub {
        req["subResource"] = json!(s);
    }
    if let Some(o) = old {
        req["oldObject"] = o.clone();
    }
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}))
        .expect("review")
}

/// Applies the answer's patch to `pod` (RFC 6902, by the json-patch crate) and returns
/// (allowed, message, warnings, patched pod).
fn apply(answer: &[u8], pod: &Value) -> (bool, String, Vec<String>, Value) {
    let a: Value = serde_json::from_slice(answer).expect("answer json");
    let r = &a["response"];
    assert_eq!(r["uid"], "4b2f-uid");
    let allowed = r["allowed"].as_bool().expect("allowed");
    let message = r["status"]["message"].as_str().unwrap_or_default().to_owned();
    let warnings = r["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let mut out = pod.clone();
    if let Some(p) = r["patch"].as_str() {
        assert_eq!(r["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
        json_patch::patch(&mut out, &patch).expect("patch applies");
        // What the apiserver does next: decode the result as a Pod.
        let _: Pod = serde_json::from_value(out.clone()).expect("patched pod is a Pod");
    }
    (allowed, message, warnings, out)
}

fn pod(labels: Value, containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "team", "labels": labels}, "spec": {"containers": containers}})
}

fn installed(v: &str) -> Readiness {
    Readiness::Ready(v.to_owned())
}

#[test]
fn every_kind_binds_exact_images_and_stars_on_every_container() {
    let st = state_with(
        &[
            binding("team", "sc", "SeccompProfile", "nginx-sc", "nginx:1.27", None),
            binding("team", "se", "SelinuxProfile", "nginx-se", "*", None),
            binding("team", "aa", "AppArmorProfile", "nginx-aa", "nginx:1.27", None),
            binding("other", "elsewhere", "SeccompProfile", "x", "*", None),
        ],
        &[],
        &[
            (
                BindingProfileKind::SeccompProfile,
                "nginx-sc",
                installed("operator/nginx-sc.json"),
            ),
            (
                BindingProfileKind::SelinuxProfile,
                "nginx-se",
                installed("nginx-se.process"),
            ),
            (BindingProfileKind::AppArmorProfile, "nginx-aa", installed("nginx-aa")),
        ],
    );
    let mut p = pod(
        json!({"app": "web"}),
        json!([
            {"name": "web", "image": "nginx:1.27", "securityContext": {"seLinuxOptions": {"level": "s0:c1,c2"}}},
            {"name": "side", "image": "busybox"}
        ]),
    );
    p["spec"]["initContainers"] = json!([{"name": "init", "image": "nginx:1.27"}]);
    let (body, decision) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (allowed, _, warnings, out) = apply(&body, &p);
    assert!(allowed, "{decision:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let web = &out["spec"]["containers"][0]["securityContext"];
    assert_eq!(
        web["seccompProfile"],
        json!({"type": "Localhost", "localhostProfile": "operator/nginx-sc.json"})
    );
    assert_eq!(
        web["appArmorProfile"],
        json!({"type": "Localhost", "localhostProfile": "nginx-aa"})
    );
    assert_eq!(
        web["seLinuxOptions"],
        json!({"level": "s0:c1,c2", "type": "nginx-se.process"}),
        "level kept"
    );
    let side = &out["spec"]["containers"][1]["securityContext"];
    assert_eq!(
        side,
        &json!({"seLinuxOptions": {"type": "nginx-se.process"}}),
        "star binds SELinux only"
    );
    let init = &out["spec"]["initContainers"][0]["securityContext"];
    assert_eq!(init["seccompProfile"]["localhostProfile"], "operator/nginx-sc.json");
    assert_eq!(out["metadata"]["annotations"][binding::BINDINGS_ANNOTATION], "aa,sc,se");
    assert_eq!(decision.applied.len(), 7, "{:?}", decision.applied);
}

#[test]
fn a_binding_overrides_what_the_pod_asked_for_and_says_so() {
    let st = state_with(
        &[binding("team", "all", "SeccompProfile", "strict", "*", None)],
        &[],
        &[(
            BindingProfileKind::SeccompProfile,
            "strict",
            installed("operator/strict.json"),
        )],
    );
    let mut p = pod(
        json!({}),
        json!([{"name": "c", "image": "x", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}, {"name": "d", "image": "y"}]),
    );
    p["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (allowed, _, warnings, out) = apply(&body, &p);
    assert!(allowed);
    for i in 0..2 {
        assert_eq!(
            out["spec"]["containers"][i]["securityContext"]["seccompProfile"]["localhostProfile"],
            "operator/strict.json"
        );
    }
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("Unconfined replaced by operator/strict.json"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("RuntimeDefault replaced"),
        "pod-level setting counts: {warnings:?}"
    );
}

#[test]
fn a_pod_is_refused_when_its_profile_is_missing_or_not_installed() {
    for (profiles, want) in [
        (vec![], "which does not exist"),
        (
            vec![(
                BindingProfileKind::SeccompProfile,
                "p",
                Readiness::NotInstalled(ProfileState::Pending.to_string()),
            )],
            "which is Pending",
        ),
    ] {
        let st = state_with(
            &[binding("team", "b", "SeccompProfile", "p", "x", None)],
            &[],
            &profiles,
        );
        let p = pod(json!({}), json!([{"name": "c", "image": "x"}]));
        let (body, d) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
        let (allowed, message, _, _) = apply(&body, &p);
        assert!(!allowed, "{d:?}");
        assert!(
            message.contains(want) && message.contains("ProfileBinding \"b\""),
            "{message}"
        );
    }
}

#[test]
fn conflicting_bindings_refuse_but_exact_beats_star() {
    let profiles = [
        (BindingProfileKind::SeccompProfile, "a", installed("operator/a.json")),
        (BindingProfileKind::SeccompProfile, "b", installed("operator/b.json")),
        (BindingProfileKind::SeccompProfile, "s", installed("operator/s.json")),
    ];
    let st = state_with(
        &[
            binding("team", "one", "SeccompProfile", "a", "x", None),
            binding("team", "two", "SeccompProfile", "b", "x", None),
            binding("team", "star", "SeccompProfile", "s", "*", None),
        ],
        &[],
        &profiles,
    );
    let p = pod(json!({}), json!([{"name": "c", "image": "x"}]));
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (allowed, message, _, _) = apply(&body, &p);
    assert!(!allowed);
    assert!(
        message.contains("\"one\" (a)") && message.contains("\"two\" (b)"),
        "{message}"
    );
    // Same image, same profile: no conflict. Exact wins over the star.
    let st = state_with(
        &[
            binding("team", "one", "SeccompProfile", "a", "x", None),
            binding("team", "two", "SeccompProfile", "a", "x", None),
            binding("team", "star", "SeccompProfile", "s", "*", None),
        ],
        &[],
        &profiles,
    );
    let p = pod(
        json!({}),
        json!([{"name": "c", "image": "x"}, {"name": "d", "image": "z"}]),
    );
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (allowed, _, _, out) = apply(&body, &p);
    assert!(allowed);
    assert_eq!(
        out["spec"]["containers"][0]["securityContext"]["seccompProfile"]["localhostProfile"],
        "operator/a.json"
    );
    assert_eq!(
        out["spec"]["containers"][1]["securityContext"]["seccompProfile"]["localhostProfile"],
        "operator/s.json"
    );
    assert_eq!(
        out["metadata"]["annotations"][binding::BINDINGS_ANNOTATION],
        "one,star,two"
    );
}

#[test]
fn pod_selectors_choose_pods_and_broken_ones_are_warnings() {
    let st = state_with(
        &[
            binding(
                "team",
                "web",
                "SeccompProfile",
                "p",
                "*",
                Some(json!({"matchLabels": {"app": "web"}})),
            ),
            binding(
                "team",
                "broken",
                "SeccompProfile",
                "p",
                "*",
                Some(json!({"matchExpressions": [{"key": "app", "operator": "Near"}]})),
            ),
        ],
        &[],
        &[(BindingProfileKind::SeccompProfile, "p", installed("operator/p.json"))],
    );
    let p = pod(json!({"app": "db"}), json!([{"name": "c", "image": "x"}]));
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (allowed, _, warnings, out) = apply(&body, &p);
    assert!(allowed);
    assert_eq!(out, p, "not selected: unchanged");
    assert!(
        warnings.iter().any(|w| w.contains("\"broken\" is ignored")),
        "{warnings:?}"
    );
    let p = pod(json!({"app": "web"}), json!([{"name": "c", "image": "x"}]));
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (_, _, _, out) = apply(&body, &p);
    assert_eq!(
        out["spec"]["containers"][0]["securityContext"]["seccompProfile"]["localhostProfile"],
        "operator/p.json"
    );
}

#[test]
fn a_forged_bindings_annotation_is_removed_and_apparmor_annotations_follow_the_field() {
    let st = state_with(
        &[binding("team", "aa", "AppArmorProfile", "mine", "x", None)],
        &[],
        &[(BindingProfileKind::AppArmorProfile, "mine", installed("mine"))],
    );
    let mut p = pod(json!({}), json!([{"name": "c", "image": "y"}]));
    p["metadata"]["annotations"] = json!({binding::BINDINGS_ANNOTATION: "someone-elses"});
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (_, _, _, out) = apply(&body, &p);
    assert!(
        out["metadata"]["annotations"]
            .get(binding::BINDINGS_ANNOTATION)
            .is_none(),
        "{out}"
    );
    let mut p = pod(json!({}), json!([{"name": "c", "image": "x"}]));
    p["metadata"]["annotations"] = json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"});
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (_, _, _, out) = apply(&body, &p);
    assert_eq!(
        out["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/c"],
        "localhost/mine"
    );
}

#[test]
fn ephemeral_containers_added_later_are_bound_and_nothing_else_is_touched() {
    let st = state_with(
        &[binding("team", "sc", "SeccompProfile", "p", "*", None)],
        &[],
        &[(BindingProfileKind::SeccompProfile, "p", installed("operator/p.json"))],
    );
    let mut old = pod(json!({}), json!([{"name": "c", "image": "x"}]));
    old["spec"]["ephemeralContainers"] = json!([{"name": "dbg1", "image": "busybox"}]);
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] =
        json!([{"name": "dbg1", "image": "busybox"}, {"name": "dbg2", "image": "busybox"}]);
    let (body, _) = handle_binding(
        &st,
        &review("UPDATE", "pods", Some("ephemeralcontainers"), &new, Some(&old)),
    )
    .expect("handled");
    let (allowed, _, _, out) = apply(&body, &new);
    assert!(allowed);
    assert!(
        out["spec"]["containers"][0].get("securityContext").is_none(),
        "existing containers untouched"
    );
    assert!(
        out["spec"]["ephemeralContainers"][0].get("securityContext").is_none(),
        "old ephemeral untouched"
    );
    assert_eq!(
        out["spec"]["ephemeralContainers"][1]["securityContext"]["seccompProfile"]["localhostProfile"],
        "operator/p.json"
    );
    // Plain pod updates pass unchanged.
    let (body, _) = handle_binding(&st, &review("UPDATE", "pods", None, &new, Some(&old))).expect("handled");
    let (allowed, _, _, out) = apply(&body, &new);
    assert!(allowed);
    assert_eq!(out, new);
}

#[test]
fn before_the_first_list_bindings_refuse_and_recordings_admit() {
    let st = WebhookState::new();
    let p = pod(json!({}), json!([{"name": "c", "image": "x"}]));
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (allowed, message, _, _) = apply(&body, &p);
    assert!(!allowed && message.contains("not listed yet"), "{message}");
    let (body, _) =
        handle_recording(&st, &review("CREATE", "pods", None, &p, None), 1, &mut || "n".into()).expect("handled");
    let (allowed, _, warnings, _) = apply(&body, &p);
    assert!(allowed && warnings[0].contains("not recorded"), "{warnings:?}");
}

#[test]
fn recordings_mark_containers_as_upstream_does() {
    let st = state_with(
        &[],
        &[
            recording(
                "team",
                "rec",
                "SeccompProfile",
                "Bpf",
                json!({"matchLabels": {"app": "web"}}),
                None,
            ),
            recording("team", "avc", "SelinuxProfile", "Logs", json!({}), Some(vec!["web"])),
            recording("team", "zz-dup", "SeccompProfile", "Bpf", json!({}), None),
            recording("team", "bad-pair", "SelinuxProfile", "Bpf", json!({}), None),
        ],
        &[],
    );
    let mut p = pod(
        json!({"app": "web"}),
        json!([{"name": "web", "image": "nginx"}, {"name": "side", "image": "b"}]),
    );
    p["metadata"]["annotations"] = json!({"keep": "me"});
    let mut n = 0;
    let (body, d) = handle_recording(
        &st,
        &review("CREATE", "pods", None, &p, None),
        1_700_000_000,
        &mut || {
            n += 1;
            format!("n{n}xyz")
        },
    )
    .expect("handled");
    let (allowed, _, warnings, out) = apply(&body, &p);
    assert!(allowed, "{d:?}");
    let a = &out["metadata"]["annotations"];
    assert_eq!(a["keep"], "me");
    assert_eq!(a["io.containers.trace-avcs/web"], "avc_web_n1xyz_1700000000");
    assert!(a.get("io.containers.trace-avcs/side").is_none(), "containers narrows");
    assert_eq!(a["io.containers.trace-bpf/web"], "rec_web_n2xyz_1700000000");
    assert_eq!(a["io.containers.trace-bpf/side"], "rec_side_n3xyz_1700000000");
    assert_eq!(
        out["spec"]["containers"][0]["securityContext"]["seLinuxOptions"]["type"],
        recording::LOG_RECORDING_SELINUX_TYPE
    );
    // eBPF recording of seccomp runs every marked container under the recording filter, where
    // the node's recorder starts.
    for c in 0..2 {
        assert_eq!(
            out["spec"]["containers"][c]["securityContext"]["seccompProfile"],
            json!({"type": "Localhost", "localhostProfile": "spo-recording/filter.json"}),
            "{out}"
        );
    }
    assert!(
        warnings.iter().any(|w| w.contains("\"bad-pair\" is ignored")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("already recorded by ProfileRecording \"rec\"")),
        "{warnings:?}"
    );
    // Another namespace's pod, or a pod not selected: unchanged.
    let q = pod(json!({"app": "db"}), json!([{"name": "web", "image": "nginx"}]));
    let st2 = state_with(
        &[],
        &[recording(
            "team",
            "rec",
            "SeccompProfile",
            "Logs",
            json!({"matchLabels": {"app": "web"}}),
            None,
        )],
        &[],
    );
    let (body, _) =
        handle_recording(&st2, &review("CREATE", "pods", None, &q, None), 1, &mut || "n".into()).expect("handled");
    assert_eq!(apply(&body, &q).3, q);
}

#[test]
fn hostile_reviews_get_clean_answers() {
    let st = state_with(
        &[binding("team", "b", "SeccompProfile", "p", "*", None)],
        &[],
        &[(BindingProfileKind::SeccompProfile, "p", installed("operator/p.json"))],
    );
    // Thousands of containers with odd image references.
    let containers: Vec<Value> = (0..3000)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("reg.example:5000/a/b@sha256:{i:064x}")}))
        .collect();
    let p = pod(json!({"x": "\u{0}\"'$(rm -rf /)"}), Value::Array(containers));
    let (body, _) = handle_binding(&st, &review("CREATE", "pods", None, &p, None)).expect("handled");
    let (allowed, _, _, out) = apply(&body, &p);
    assert!(allowed);
    assert_eq!(
        out["spec"]["containers"][2999]["securityContext"]["seccompProfile"]["localhostProfile"],
        "operator/p.json"
    );
    // A malformed pod inside a good envelope: refused by the binding webhook, named.
    let bad = review("CREATE", "pods", None, &json!({"spec": {"containers": 7}}), None);
    let (body, _) = handle_binding(&st, &bad).expect("envelope read");
    let (allowed, message, _, _) = apply(&body, &json!({}));
    assert!(!allowed && message.contains("request.object is not a Pod"), "{message}");
    // Truncated reviews never get an answer body (HTTP 400 in the server).
    let good = review("CREATE", "pods", None, &p, None);
    for cut in [0, 1, 10, good.len() / 2, good.len() - 1] {
        assert!(handle_binding(&st, &good[..cut]).is_err(), "cut at {cut}");
    }
}
