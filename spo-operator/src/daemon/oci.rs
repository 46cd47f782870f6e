//! `baseProfileName: oci://REF` on a node: the base profile is pulled from a registry
//! (spo-oci), its signature checked as the SPOD's `security` says, and kept by digest.
//!
//! - **Resolution.** A tag is resolved once per [`OciSettings::tag_ttl`] (the profiles that
//!   name one are rendered again after that time, so a moved tag is picked up); a digest is
//!   fetched once. Everything after the resolve goes by digest (spo-oci's `pull`), so a tag
//!   moving during a pull cannot mix two artifacts.
//! - **Signatures.** `disableOciArtifactSignatureVerification: true` takes unsigned artifacts;
//!   otherwise a signature by one of the daemon's keys (`--oci-verify-key`, PEM public keys,
//!   mounted into the daemon) is required. With no key, upstream's keyless check applies
//!   (`allowedIdentityRegexp`, `allowedOidcIssuerRegexp`), which needs Sigstore's services and
//!   so refuses every artifact here, saying so. A cached artifact counts as verified only for
//!   the key that verified it.
//! - **Credentials.** The SPOD's `imagePullSecrets` (docker config secrets in the operator's
//!   namespace), the first that has the registry; anonymous otherwise.
//! - **Bounds.** At most [`OciSettings::entries`] artifacts and [`OciSettings::bytes`] bytes of
//!   profile text cached, oldest first out; tags and last resolutions likewise bounded.
//!
//! Pulls block the calling thread (a render runs off the async threads) on the daemon's
//! runtime, with a deadline per request (spo-oci) and for the whole pull.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use spo_model::document::{AnyObject, Kind, Outcome, parse_source};
use spo_model::seccomp::SeccompProfileSpec;
use spo_model::spod::SpodSecurity;
use spo_oci::{ClientOptions, Platform, PublicKey, Reference, Registry, Verification};
use tracing::{info, warn};

/// How the daemon pulls base profiles.
#[derive(Clone, Debug)]
pub struct OciSettings {
    /// CA certificates trusted besides the system's (`--oci-ca-file`).
    pub ca_files: Vec<PathBuf>,
    /// Public keys whose signatures are accepted (`--oci-verify-key`).
    pub verify_keys: Vec<PathBuf>,
    /// How long a tag's digest is trusted before it is resolved again.
    pub tag_ttl: Duration,
    /// Artifacts cached at most.
    pub entries: usize,
    /// Bytes of cached profile text at most.
    pub bytes: usize,
    /// Deadline of one whole pull.
    pub pull_timeout: Duration,
}

impl Default for OciSettings {
    fn default() -> Self {
        OciSettings {
            ca_files: Vec::new(),
            verify_keys: Vec::new(),
            tag_ttl: Duration::from_secs(300),
            entries: 1000,
            bytes: 64 << 20,
            pull_timeout: Duration::from_secs(60),
        }
    }
}

/// One resolution, for the node status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The reference as written (without `oci://`).
    pub reference: String,
    /// The digest it resolved to.
    pub digest: String,
    /// The key that signed it, when checked.
    pub signed_by: Option<String>,
}

impl Resolution {
    /// How the node status tells it.
    pub fn message(&self) -> String {
        format!(
            "base profile oci://{} is {}{}",
            self.reference,
            self.digest,
            match &self.signed_by {
                Some(k) => format!(" (signed by key {k})"),
                None => " (signature not checked)".to_owned(),
            }
        )
    }
}

/// The SPOD's part of a pull: the signature policy and the pull secrets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OciPolicy {
    /// `security.disableOciArtifactSignatureVerification`.
    pub unsigned_ok: bool,
    /// `security.allowedIdentityRegexp` (keyless).
    pub identity: String,
    /// `security.allowedOidcIssuerRegexp` (keyless).
    pub issuer: String,
    /// `imagePullSecrets` names, in the operator's namespace.
    pub pull_secrets: Vec<String>,
}

impl OciPolicy {
    /// From the SPOD's `security` and `imagePullSecrets`; upstream's defaults otherwise.
    pub fn from_spod(security: Option<&SpodSecurity>, pull_secrets: Vec<String>) -> OciPolicy {
        let pattern = |p: Option<&String>| p.filter(|p| !p.is_empty()).cloned().unwrap_or_else(|| ".*".into());
        OciPolicy {
            unsigned_ok: security
                .and_then(|s| s.disable_oci_artifact_signature_verification)
                .unwrap_or(false),
            identity: pattern(security.and_then(|s| s.allowed_identity_regexp.as_ref())),
            issuer: pattern(security.and_then(|s| s.allowed_oidc_issuer_regexp.as_ref())),
            pull_secrets,
        }
    }
}

#[derive(Debug)]
struct Cached {
    spec: SeccompProfileSpec,
    /// Fingerprint of the key that verified it (`None`: pulled unchecked).
    verified_by: Option<String>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Cache {
    by_digest: HashMap<String, Arc<Cached>>,
    order: VecDeque<String>,
    bytes: usize,
    /// Reference as written -> (digest, when resolved).
    tags: HashMap<String, (String, Instant)>,
    /// Reference as written -> its last resolution.
    last: HashMap<String, Resolution>,
}

/// The node's pulled base profiles.
pub struct OciBases {
    handle: tokio::runtime::Handle,
    client: kube::Client,
    namespace: String,
    options: ClientOptions,
    keys: Vec<PublicKey>,
    settings: OciSettings,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for OciBases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.cached();
        f.debug_struct("OciBases")
            .field("namespace", &self.namespace)
            .field("keys", &self.keys.len())
            .field("settings", &self.settings)
            .field("cached_entries", &entries)
            .field("cached_bytes", &bytes)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OciBases {
    /// Pulls through `client`'s cluster for secrets in `namespace`, on `handle`'s runtime.
    /// The keys are read now: a daemon told to check signatures with a key it cannot read
    /// does not start.
    pub fn new(
        handle: tokio::runtime::Handle,
        client: kube::Client,
        namespace: String,
        settings: OciSettings,
    ) -> Result<OciBases, spo_oci::OciError> {
        let keys = settings
            .verify_keys
            .iter()
            .map(|p| PublicKey::from_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OciBases {
            handle,
            client,
            namespace,
            options: ClientOptions {
                ca_files: settings.ca_files.clone(),
                ..ClientOptions::default()
            },
            keys,
            settings,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// What the checks need: the daemon's keys, or the policy's keyless patterns.
    pub fn verification(&self, policy: &OciPolicy) -> Verification {
        if policy.unsigned_ok {
            Verification::Disabled
        } else if !self.keys.is_empty() {
            Verification::Keys(self.keys.clone())
        } else {
            Verification::Keyless {
                identity: policy.identity.clone(),
                issuer: policy.issuer.clone(),
            }
        }
    }

    /// How long a profile whose base is `reference` may go before it is rendered again
    /// (tags move; digests do not).
    pub fn recheck_after(&self, reference: &str) -> Option<Duration> {
        let r = Reference::parse(reference).ok()?;
        r.digest().is_none().then_some(self.settings.tag_ttl)
    }

    /// The last resolution of `reference` (without `oci://`).
    pub fn last(&self, reference: &str) -> Option<Resolution> {
        lock(&self.cache).last.get(reference).cloned()
    }

    /// The base profile `reference` (without `oci://`) names, pulled or cached. Blocks: call
    /// off the async threads.
    pub fn resolve(&self, reference: &str, policy: &OciPolicy) -> Result<SeccompProfileSpec, String> {
        let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
        let verification = self.verification(policy);
        if let Verification::Keyless { .. } = verification {
            // Refused without a request: nothing pulled could pass.
            return Err(spo_oci::OciError::Unsigned {
                reference: parsed.to_string(),
                reason: "keyless verification needs Sigstore's Fulcio and Rekor, which the daemon does not reach; give the daemon --oci-verify-key, or set the SPOD's security.disableOciArtifactSignatureVerification".into(),
            }
            .to_string());
        }
        let accepted = |c: &Cached| match &verification {
            Verification::Disabled => true,
            Verification::Keys(keys) => c
                .verified_by
                .as_ref()
                .is_some_and(|f| keys.iter().any(|k| &k.fingerprint() == f)),
            Verification::Keyless { .. } => false,
        };
        let known_digest = parsed.digest().map(str::to_owned).or_else(|| {
            let cache = lock(&self.cache);
            cache
                .tags
                .get(reference)
                .filter(|(_, at)| at.elapsed() < self.settings.tag_ttl)
                .map(|(d, _)| d.clone())
        });
        if let Some(digest) = known_digest {
            let hit = lock(&self.cache).by_digest.get(&digest).cloned();
            if let Some(c) = hit.filter(|c| accepted(c)) {
                self.remember(reference, &digest, c.verified_by.clone(), None);
                return Ok(c.spec.clone());
            }
        }
        let pulled = self.pull(&parsed, policy, &verification)?;
        let spec = read_seccomp(&pulled.profile, reference)?;
        let cached = Arc::new(Cached {
            spec: spec.clone(),
            verified_by: pulled.signed_by.clone(),
            bytes: pulled.profile.len(),
        });
        self.remember(reference, &pulled.digest, pulled.signed_by.clone(), Some(cached));
        info!(reference = %reference, digest = %pulled.digest, signed_by = ?pulled.signed_by, "pulled base profile");
        Ok(spec)
    }

    fn remember(&self, reference: &str, digest: &str, signed_by: Option<String>, pulled: Option<Arc<Cached>>) {
        let mut cache = lock(&self.cache);
        let limit = self.settings.entries.max(1);
        if let Some(c) = pulled {
            if let Some(old) = cache.by_digest.insert(digest.to_owned(), c.clone()) {
                cache.bytes -= old.bytes;
            } else {
                cache.order.push_back(digest.to_owned());
            }
            cache.bytes += c.bytes;
            while cache.by_digest.len() > limit || (cache.bytes > self.settings.bytes && cache.by_digest.len() > 1) {
                let Some(oldest) = cache.order.pop_front() else { break };
                if let Some(old) = cache.by_digest.remove(&oldest) {
                    cache.bytes -= old.bytes;
                }
            }
        }
        if cache.tags.len() >= limit && !cache.tags.contains_key(reference) {
            cache.tags.clear();
            cache.last.clear();
        }
        cache
            .tags
            .insert(reference.to_owned(), (digest.to_owned(), Instant::now()));
        cache.last.insert(
            reference.to_owned(),
            Resolution {
                reference: reference.to_owned(),
                digest: digest.to_owned(),
                signed_by,
            },
        );
    }

    /// How many artifacts and bytes are cached.
    pub fn cached(&self) -> (usize, usize) {
        let cache = lock(&self.cache);
        (cache.by_digest.len(), cache.bytes)
    }

    fn pull(
        &self,
        reference: &Reference,
        policy: &OciPolicy,
        verification: &Verification,
    ) -> Result<spo_oci::Pulled, String> {
        let work = async {
            let (credentials, passed_over) = self.credentials(reference, &policy.pull_secrets).await;
            // Only told when the registry refuses this client for want of credentials.
            let why = if passed_over.is_empty() {
                "the SPOD names no imagePullSecrets".to_owned()
            } else {
                passed_over.join("; ")
            };
            let options = ClientOptions {
                login_hint: Some(format!(
                    "no pull secret in the SPOD's imagePullSecrets has credentials for {} ({why})",
                    reference.registry()
                )),
                ..self.options.clone()
            };
            let registry = Registry::new(reference.api_host(), credentials, &options).map_err(|e| e.to_string())?;
            spo_oci::pull(&registry, reference, &Platform::host(), verification)
                .await
                .map_err(|e| e.to_string())
        };
        self.handle.block_on(async {
            tokio::time::timeout(self.settings.pull_timeout, work)
                .await
                .map_err(|_| format!("pulling {reference}: not done within {:?}", self.settings.pull_timeout))?
        })
    }

    /// The first pull secret with credentials for the reference's registry, and why each
    /// secret before it was passed over (for the error when the registry wants a login).
    async fn credentials(
        &self,
        reference: &Reference,
        secrets: &[String],
    ) -> (Option<spo_oci::Credentials>, Vec<String>) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut passed_over = Vec::new();
        for name in secrets {
            let origin = format!("secret {}/{name}", self.namespace);
            let secret = match api.get(name).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(secret = %name, error = %e, "pull secret not readable");
                    passed_over.push(format!("{origin} not readable: {}", api_reason(&e)));
                    continue;
                }
            };
            let Some(data) = secret.data.as_ref().and_then(|d| d.get(".dockerconfigjson")) else {
                passed_over.push(format!("{origin} has no .dockerconfigjson"));
                continue;
            };
            match spo_oci::auth::credentials_from_docker_config(&data.0, reference.registry(), &origin) {
                Ok(Some(c)) => return (Some(c), passed_over),
                Ok(None) => passed_over.push(format!("{origin} has no login for {}", reference.registry())),
                Err(e) => {
                    warn!(secret = %name, error = %e, "pull secret not usable");
                    passed_over.push(e.to_string());
                }
            }
        }
        (None, passed_over)
    }
}

/// What the apiserver said, without the client's wrapping (`forbidden`, `not found`).
fn api_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        e => e.to_string(),
    }
}

/// Reads a pulled layer as a SeccompProfile's spec.
fn read_seccomp(yaml: &[u8], reference: &str) -> Result<SeccompProfileSpec, String> {
    let text = std::str::from_utf8(yaml).map_err(|_| format!("oci://{reference}: the profile is not UTF-8"))?;
    let docs = parse_source(&format!("oci://{reference}"), text).map_err(|e| e.to_string())?;
    let Some(doc) = docs.into_iter().next() else {
        return Err(format!("oci://{reference}: the pulled layer holds no profile"));
    };
    match (doc.kind.as_deref(), doc.outcome) {
        (_, Outcome::Valid(AnyObject::SeccompProfile(p))) => Ok(p.spec),
        (Some(kind), _) if Kind::parse(kind) != Some(Kind::SeccompProfile) => Err(format!(
            "pull result type {kind} of oci://{reference} is not a seccomp profile"
        )),
        _ => Err(format!(
            "oci://{reference}: the pulled SeccompProfile is not valid: {}",
            doc.problems
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_follow_the_spod() {
        let p = OciPolicy::from_spod(None, vec![]);
        assert!(!p.unsigned_ok);
        assert_eq!((p.identity.as_str(), p.issuer.as_str()), (".*", ".*"));
        let security = SpodSecurity {
            disable_oci_artifact_signature_verification: Some(true),
            allowed_identity_regexp: Some("me@x".into()),
            ..SpodSecurity::default()
        };
        let p = OciPolicy::from_spod(Some(&security), vec!["regcred".into()]);
        assert!(p.unsigned_ok);
        assert_eq!(p.identity, "me@x");
        assert_eq!(p.pull_secrets, ["regcred"]);
    }

    #[test]
    fn pulled_layers_must_be_valid_seccomp_profiles() {
        let ok = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: b\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n";
        assert!(read_seccomp(ok.as_bytes(), "r/p").is_ok());
        let aa = ok.replace("SeccompProfile", "AppArmorProfile");
        let e = read_seccomp(aa.as_bytes(), "r/p").expect_err("apparmor");
        assert!(e.contains("not a seccomp profile"), "{e}");
        let bad = ok.replace("SCMP_ACT_ERRNO", "SCMP_ACT_NOPE");
        let e = read_seccomp(bad.as_bytes(), "r/p").expect_err("bad action");
        assert!(e.contains("oci://r/p") && e.contains("defaultAction"), "{e}");
    }

    #[test]
    fn resolutions_tell_the_digest_and_the_signer() {
        let r = Resolution {
            reference: "r.io/p:v1".into(),
            digest: "sha256:ab".into(),
            signed_by: Some("0123456789ab".into()),
        };
        assert_eq!(
            r.message(),
            "base profile oci://r.io/p:v1 is sha256:ab (signed by key 0123456789ab)"
        );
    }
}
