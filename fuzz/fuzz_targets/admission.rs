//! Any bytes as an AdmissionReview to both webhooks, over bindings and recordings of every
//! kind. Never a panic; every answer is JSON naming the request's uid; every patch applies
//! (RFC 6902, by the json-patch crate) to the object it was made for, and the result is
//! still a Pod.
#![no_main]

use base64::Engine as _;
use spo_model::binding::{BindingProfileKind, ProfileBinding};
use spo_model::recording::ProfileRecording;
use spo_operator::webhook::binding::Readiness;
use spo_operator::webhook::state::{Relist, WebhookState};
use spo_operator::webhook::{handle_binding, handle_recording};
use std::sync::OnceLock;

fn state() -> &'static WebhookState {
    static STATE: OnceLock<WebhookState> = OnceLock::new();
    STATE.get_or_init(|| {
        let st = WebhookState::new();
        let b = |name: &str, kind: &str, profile: &str, image: &str, sel: serde_json::Value| -> ProfileBinding {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileBinding",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"profileRef": {"kind": kind, "name": profile}, "image": image, "podSelector": sel},
            }))
            .expect("binding")
        };
        let bindings = [
            b("a", "SeccompProfile", "p", "x", serde_json::json!({})),
            b("b", "SelinuxProfile", "s", "*", serde_json::json!({"matchLabels": {"app": "web"}})),
            b("c", "AppArmorProfile", "aa", "x", serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Exists"}]})),
            b("d", "SeccompProfile", "missing", "m", serde_json::json!({})),
            b("e", "SeccompProfile", "q", "*", serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Bad"}]})),
        ];
        st.on_binding(Relist::Begin);
        for x in &bindings {
            st.on_binding(Relist::Item(x));
        }
        st.on_binding(Relist::Done);
        let r: ProfileRecording = serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
            "metadata": {"name": "rec", "namespace": "ns"},
            "spec": {"kind": "SelinuxProfile", "recorder": "Logs", "podSelector": {}},
        }))
        .expect("recording");
        st.on_recording(Relist::Begin);
        st.on_recording(Relist::Item(&r));
        st.on_recording(Relist::Done);
        for (kind, name, value) in [
            (BindingProfileKind::SeccompProfile, "p", "operator/p.json"),
            (BindingProfileKind::SelinuxProfile, "s", "s.process"),
            (BindingProfileKind::AppArmorProfile, "aa", "aa"),
        ] {
            st.on_profile(kind, Relist::Begin);
            st.on_profile(kind, Relist::Item((name.to_owned(), Readiness::Ready(value.to_owned()))));
            st.on_profile(kind, Relist::Done);
        }
        st
    })
}

fn check(body: &[u8], answer: &[u8]) {
    let a: serde_json::Value = serde_json::from_slice(answer).expect("answer is JSON");
    // (A review with, say, a lone surrogate escape in a skipped field is read, but is no
    // `Value`: then only the answer is checked.)
    let Ok(review) = serde_json::from_slice::<serde_json::Value>(body) else {
        assert!(a["response"]["uid"].is_string());
        return;
    };
    assert_eq!(a["response"]["uid"], review["request"]["uid"]);
    if let Some(p) = a["response"]["patch"].as_str() {
        assert_eq!(a["response"]["allowed"], true, "a refusal carries no patch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
        let mut obj = review["request"]["object"].clone();
        json_patch::patch(&mut obj, &patch).expect("the patch applies to the object");
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(obj).expect("still a Pod");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let st = state();
    if let Ok((answer, _)) = handle_binding(st, data) {
        check(data, &answer);
    }
    if let Ok((answer, _)) = handle_recording(st, data, 1, &mut || "bcdfg".to_owned()) {
        check(data, &answer);
    }
});
