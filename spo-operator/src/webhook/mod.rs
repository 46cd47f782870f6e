//! The admission webhooks: ProfileBinding and ProfileRecording, over TLS.
//!
//! - [`review`]: AdmissionReview in and out, bounded.
//! - [`binding`], [`recording`]: the decisions (pure).
//! - [`state`]: what they decide with, kept from watches.
//! - [`certs`]: the CA and serving certificate, renewal decisions.
//! - [`config`]: the MutatingWebhookConfiguration, from the SPOD.
//! - [`handle_binding`] and [`handle_recording`]: one review in, one answer out (pure but for the clock and the nonce).
//! - [`run`]: the shell: watches, the certificate and configuration loops, the HTTPS server.

pub mod binding;
pub mod certs;
pub mod config;
pub mod recording;
pub mod review;
mod serve;
pub mod state;

pub use serve::{CertSource, TlsMin, WebhookConfig, run};

use std::collections::BTreeSet;

use review::{Operation, ReviewError, Verdict};
use state::WebhookState;

/// What one review decided, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Which webhook.
    pub webhook: &'static str,
    /// `namespace/name` of the pod (`namespace/generateName*` before it has a name).
    pub pod: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What was applied: `binding -> container: kind value` or `recording -> container`.
    pub applied: Vec<String>,
}

/// The binding webhook's answer to a review body.
pub fn handle_binding(state: &WebhookState, body: &[u8]) -> Result<(Vec<u8>, Decision), ReviewError> {
    let review = review::read_review(body)?;
    let mut decision = Decision {
        webhook: config::BINDING_WEBHOOK,
        pod: format!("{}/{}", review.namespace, review.name),
        verdict: Verdict::allow(),
        applied: Vec::new(),
    };
    let scope = match (review.operation, review.resource.as_str()) {
        (Operation::Create, "pods") => Some(binding::Scope::Create),
        (Operation::Update, "pods/ephemeralcontainers") => match review.old_pod() {
            Ok(old) => Some(binding::Scope::NewEphemeral(
                old.spec
                    .iter()
                    .flat_map(|s| s.ephemeral_containers.iter().flatten())
                    .map(|c| c.name.clone())
                    .collect::<BTreeSet<_>>(),
            )),
            Err(e) => {
                decision.verdict = Verdict::deny(format!("binding webhook: {e}"));
                None
            }
        },
        _ => None,
    };
    if let Some(scope) = scope {
        decision.verdict = match review.pod() {
            Err(e) => Verdict::deny(format!("binding webhook: {e}")),
            Ok(pod) => {
                decision.pod = pod_label(&review.namespace, &review.name, &pod);
                if !state.is_synced() {
                    Verdict::deny(
                        "binding webhook: bindings and profiles are not listed yet; the pod is refused rather than \
                         admitted unbound (retry)",
                    )
                } else {
                    let out = state.with_bindings(&review.namespace, |b, p| binding::decide(&pod, &scope, b, p));
                    decision.applied = out
                        .bound
                        .iter()
                        .map(|b| format!("{} -> {}: {} {}", b.binding, b.container, b.kind, b.value))
                        .collect();
                    match out.denied {
                        Some(why) => Verdict {
                            allowed: false,
                            message: Some(why),
                            patch: Vec::new(),
                            warnings: out.warnings,
                        },
                        None => Verdict {
                            allowed: true,
                            message: None,
                            patch: out.patch,
                            warnings: out.warnings,
                        },
                    }
                }
            }
        };
    }
    Ok((
        review::respond(review.version, &review.uid, &decision.verdict),
        decision,
    ))
}

/// The recording webhook's answer to a review body.
pub fn handle_recording(
    state: &WebhookState,
    body: &[u8],
    unix: u64,
    nonce: &mut dyn FnMut() -> String,
) -> Result<(Vec<u8>, Decision), ReviewError> {
    let review = review::read_review(body)?;
    let mut decision = Decision {
        webhook: config::RECORDING_WEBHOOK,
        pod: format!("{}/{}", review.namespace, review.name),
        verdict: Verdict::allow(),
        applied: Vec::new(),
    };
    if review.operation == Operation::Create && review.resource == "pods" {
        match review.pod() {
            // Recording is no guard: a pod it cannot read is admitted, and that is said.
            Err(e) => decision
                .verdict
                .warnings
                .push(format!("recording webhook: not recorded: {e}")),
            Ok(pod) => {
                decision.pod = pod_label(&review.namespace, &review.name, &pod);
                if !state.is_synced() {
                    decision
                        .verdict
                        .warnings
                        .push("recording webhook: recordings are not listed yet; the pod is not recorded".into());
                } else {
                    let out = state.with_recordings(&review.namespace, |r| recording::decide(&pod, r, nonce, unix));
                    decision.applied = out
                        .marked
                        .iter()
                        .map(|m| format!("{} -> {}: {}={}", m.recording, m.container, m.key, m.value))
                        .collect();
                    decision.verdict.patch = out.patch;
                    decision.verdict.warnings = out.warnings;
                }
            }
        }
    }
    Ok((
        review::respond(review.version, &review.uid, &decision.verdict),
        decision,
    ))
}

fn pod_label(namespace: &str, name: &str, pod: &k8s_openapi::api::core::v1::Pod) -> String {
    if !name.is_empty() {
        return format!("{namespace}/{name}");
    }
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(n), _) if !n.is_empty() => format!("{namespace}/{n}"),
        (_, Some(g)) => format!("{namespace}/{g}*"),
        _ => format!("{namespace}/?"),
    }
}

#[cfg(test)]
mod tests;
