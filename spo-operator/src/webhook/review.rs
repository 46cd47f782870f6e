//! AdmissionReview in and out (pure).
//!
//! The apiserver posts an `AdmissionReview` (`admission.k8s.io/v1`, or `v1beta1`, which
//! upstream's configuration still asks for) and expects the same version back with the
//! request's `uid`. Reading is bounded ([`MAX_REVIEW_BYTES`]) and done in two steps: the
//! envelope first, so that a malformed pod still gets an answer that names the request,
//! then the pod.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The largest review read. The apiserver stores objects up to 3 MiB; a review of an
/// update carries the object twice, plus the envelope.
pub const MAX_REVIEW_BYTES: usize = 8 << 20;
/// Warnings returned per review (the apiserver may drop more).
pub const MAX_WARNINGS: usize = 8;
/// Characters per warning (the apiserver truncates longer ones).
pub const MAX_WARNING_CHARS: usize = 240;

/// The review versions we answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVersion {
    /// `admission.k8s.io/v1`.
    V1,
    /// `admission.k8s.io/v1beta1`.
    V1beta1,
}

impl ReviewVersion {
    fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => "admission.k8s.io/v1",
            ReviewVersion::V1beta1 => "admission.k8s.io/v1beta1",
        }
    }
}

/// The operation under review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// CREATE.
    Create,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// CONNECT, or anything newer.
    Other,
}

/// Why a review could not be read at all (answered with HTTP 400: no uid to answer to).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// The body is larger than [`MAX_REVIEW_BYTES`].
    #[error("reading the AdmissionReview: {size} bytes is more than the {max} allowed")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not an AdmissionReview.
    #[error("reading the AdmissionReview: {0}")]
    Malformed(String),
}

/// A review's request, the pod not yet read.
#[derive(Debug)]
pub struct Review<'a> {
    /// The version to answer in.
    pub version: ReviewVersion,
    /// The request's uid, echoed in the answer.
    pub uid: String,
    /// CREATE, UPDATE, ...
    pub operation: Operation,
    /// The namespace of the object.
    pub namespace: String,
    /// The object's name (empty for pods created with `generateName`).
    pub name: String,
    /// `resource` (`pods`), with `subResource` when set (`pods/ephemeralcontainers`).
    pub resource: String,
    /// Whether the request is a dry run.
    pub dry_run: bool,
    object: Option<&'a RawValue>,
    old_object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<RequestWire<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestWire<'a> {
    uid: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource: Option<ResourceWire>,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ResourceWire {
    #[serde(default)]
    resource: String,
}

/// Reads a review's envelope.
pub fn read_review(body: &[u8]) -> Result<Review<'_>, ReviewError> {
    if body.len() > MAX_REVIEW_BYTES {
        return Err(ReviewError::TooLarge {
            size: body.len(),
            max: MAX_REVIEW_BYTES,
        });
    }
    // JSON is UTF-8 (RFC 8259); checked whole, since fields the reader skips are not.
    let text = std::str::from_utf8(body)
        .map_err(|e| ReviewError::Malformed(format!("not UTF-8 after byte {}", e.valid_up_to())))?;
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    if let Some(kind) = env.kind.as_deref()
        && kind != "AdmissionReview"
    {
        return Err(ReviewError::Malformed(format!("kind is {kind:?}, not AdmissionReview")));
    }
    let version = match env.api_version.as_deref() {
        Some("admission.k8s.io/v1") => ReviewVersion::V1,
        Some("admission.k8s.io/v1beta1") => ReviewVersion::V1beta1,
        Some(other) => {
            return Err(ReviewError::Malformed(format!(
                "apiVersion {other:?} is not admission.k8s.io/v1 or v1beta1"
            )));
        }
        None => return Err(ReviewError::Malformed("apiVersion is missing".into())),
    };
    let req = env
        .request
        .ok_or_else(|| ReviewError::Malformed("request is missing".into()))?;
    if req.uid.is_empty() || req.uid.len() > 128 {
        return Err(ReviewError::Malformed(
            "request.uid is empty or longer than 128 bytes".into(),
        ));
    }
    let operation = match req.operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        _ => Operation::Other,
    };
    let mut resource = req.resource.map(|r| r.resource).unwrap_or_default();
    if let Some(sub) = req.sub_resource.filter(|s| !s.is_empty()) {
        resource = format!("{resource}/{sub}");
    }
    Ok(Review {
        version,
        uid: req.uid,
        operation,
        namespace: req.namespace,
        name: req.name,
        resource,
        dry_run: req.dry_run.unwrap_or(false),
        object: req.object,
        old_object: req.old_object,
    })
}

impl Review<'_> {
    /// The pod under review (`object`).
    pub fn pod(&self) -> Result<Pod, String> {
        read_pod(self.object, "request.object")
    }

    /// The pod before an update (`oldObject`).
    pub fn old_pod(&self) -> Result<Pod, String> {
        read_pod(self.old_object, "request.oldObject")
    }
}

fn read_pod(raw: Option<&RawValue>, field: &str) -> Result<Pod, String> {
    let raw = raw.ok_or_else(|| format!("{field} is missing"))?;
    if raw.get() == "null" {
        return Err(format!("{field} is null"));
    }
    let pod: Pod = serde_json::from_str(raw.get()).map_err(|e| format!("{field} is not a Pod: {e}"))?;
    // Patches address `/metadata/...`; a pod object without it (never from an apiserver)
    // could not be patched, so it is refused here (found by the admission fuzz target).
    #[derive(Deserialize)]
    struct HasMetadata {
        metadata: Option<serde::de::IgnoredAny>,
    }
    let probe: HasMetadata = serde_json::from_str(raw.get()).map_err(|e| format!("{field} is not a Pod: {e}"))?;
    if probe.metadata.is_none() {
        return Err(format!("{field} has no metadata"));
    }
    Ok(pod)
}

/// What a webhook answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Whether the object is admitted.
    pub allowed: bool,
    /// Why not (or a note when admitted).
    pub message: Option<String>,
    /// JSON Patch operations to apply (admitted only).
    pub patch: Vec<serde_json::Value>,
    /// Warnings shown to the client (kubectl prints them).
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Admitted unchanged.
    pub fn allow() -> Verdict {
        Verdict {
            allowed: true,
            ..Verdict::default()
        }
    }

    /// Refused with a reason.
    pub fn deny(message: impl Into<String>) -> Verdict {
        Verdict {
            allowed: false,
            message: Some(message.into()),
            ..Verdict::default()
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseEnvelope<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseWire<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseWire<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusWire<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct StatusWire<'a> {
    code: u16,
    message: &'a str,
}

/// Bounds a warning list as the apiserver wants it.
pub fn bound_warnings(warnings: &[String]) -> Vec<String> {
    let mut out: Vec<String> = warnings
        .iter()
        .take(MAX_WARNINGS)
        .map(|w| {
            let clean: String = w.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            if clean.chars().count() > MAX_WARNING_CHARS {
                let cut: String = clean.chars().take(MAX_WARNING_CHARS - 3).collect();
                format!("{cut}...")
            } else {
                clean
            }
        })
        .collect();
    if warnings.len() > MAX_WARNINGS {
        out.push(format!("... and {} more warnings", warnings.len() - MAX_WARNINGS));
    }
    out
}

/// The answer to `review`.
pub fn respond(version: ReviewVersion, uid: &str, verdict: &Verdict) -> Vec<u8> {
    let patch = (verdict.allowed && !verdict.patch.is_empty()).then(|| {
        let bytes = serde_json::to_vec(&verdict.patch).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    });
    let status = verdict.message.as_deref().map(|message| StatusWire {
        code: if verdict.allowed { 200 } else { 403 },
        message,
    });
    let env = ResponseEnvelope {
        api_version: version.api_version(),
        kind: "AdmissionReview",
        response: ResponseWire {
            uid,
            allowed: verdict.allowed,
            status,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: bound_warnings(&verdict.warnings),
            audit_annotations: BTreeMap::new(),
        },
    };
    serde_json::to_vec(&env).unwrap_or_default()
}

/// Escapes one JSON Pointer segment (RFC 6901).
pub fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(op: &str, object: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u-1","operation":"{op}","namespace":"ns","name":"p","resource":{{"group":"","version":"v1","resource":"pods"}},"object":{object}}}}}"#
        )
    }

    #[test]
    fn reads_the_envelope_and_the_pod() {
        let body = review(
            "CREATE",
            r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
        );
        let r = read_review(body.as_bytes()).expect("review");
        assert_eq!(
            (r.version, r.operation, r.uid.as_str()),
            (ReviewVersion::V1, Operation::Create, "u-1")
        );
        assert_eq!((r.namespace.as_str(), r.resource.as_str()), ("ns", "pods"));
        let pod = r.pod().expect("pod");
        assert_eq!(pod.spec.expect("spec").containers[0].image.as_deref(), Some("i"));
    }

    #[test]
    fn a_pod_without_metadata_is_refused() {
        let body = review("CREATE", r#"{"spec":{"containers":[{"name":"c","image":"i"}]}}"#);
        let r = read_review(body.as_bytes()).expect("envelope");
        assert_eq!(r.pod().expect_err("no metadata"), "request.object has no metadata");
    }

    #[test]
    fn a_malformed_pod_still_names_the_request() {
        let body = review("CREATE", r#"{"spec":{"containers":"nope"}}"#);
        let r = read_review(body.as_bytes()).expect("envelope");
        let err = r.pod().expect_err("bad pod");
        assert!(err.starts_with("request.object is not a Pod"), "{err}");
        let out = respond(r.version, &r.uid, &Verdict::deny(err));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["response"]["uid"], "u-1");
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
    }

    #[test]
    fn refuses_what_is_not_a_review() {
        for (body, want) in [
            ("", "EOF"),
            ("{", "EOF"),
            ("[]", "invalid length"),
            (r#"{"apiVersion":"v1","kind":"Pod"}"#, "not AdmissionReview"),
            (
                r#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}"#,
                "is not admission.k8s.io/v1",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "request is missing",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":""}}"#,
                "uid is empty",
            ),
        ] {
            let err = read_review(body.as_bytes()).expect_err(body);
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
        let bad_utf8 = b"{\"apiVersion\":\"admission.k8s.io/v1\",\"x\":\"\xff\"}";
        let err = read_review(bad_utf8).expect_err("not UTF-8");
        assert!(err.to_string().contains("not UTF-8 after byte"), "{err}");
        let big = vec![b' '; MAX_REVIEW_BYTES + 1];
        assert!(matches!(read_review(&big), Err(ReviewError::TooLarge { .. })));
    }

    #[test]
    fn answers_in_the_version_asked_with_a_base64_json_patch() {
        let mut v = Verdict::allow();
        v.patch
            .push(serde_json::json!({"op":"add","path":"/metadata/annotations","value":{}}));
        let out = respond(ReviewVersion::V1beta1, "x", &v);
        let j: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(j["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(j["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(j["response"]["patch"].as_str().expect("patch"))
            .expect("base64");
        let ops: serde_json::Value = serde_json::from_slice(&patch).expect("ops");
        assert_eq!(ops[0]["path"], "/metadata/annotations");
        // A refusal never carries a patch.
        let mut d = Verdict::deny("no");
        d.patch = v.patch;
        let j: serde_json::Value = serde_json::from_slice(&respond(ReviewVersion::V1, "x", &d)).expect("json");
        assert!(j["response"].get("patch").is_none());
    }

    #[test]
    fn warnings_are_bounded_and_single_line() {
        let many: Vec<String> = (0..20).map(|i| format!("w{i}\nnext")).collect();
        let out = bound_warnings(&many);
        assert_eq!(out.len(), MAX_WARNINGS + 1);
        assert_eq!(out[0], "w0 next");
        assert!(out[MAX_WARNINGS].contains("12 more"));
        let long = bound_warnings(&["x".repeat(5000)]);
        assert_eq!(long[0].chars().count(), MAX_WARNING_CHARS);
    }

    #[test]
    fn pointer_segments_escape() {
        assert_eq!(
            pointer_segment("io.containers.trace-bpf/c~1"),
            "io.containers.trace-bpf~1c~01"
        );
    }
}
