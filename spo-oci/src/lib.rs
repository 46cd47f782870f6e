#![doc = include_str!("../README.md")]

pub mod artifact;
pub mod auth;
pub mod client;
pub mod platform;
pub mod reference;
pub mod sign;

use std::collections::BTreeMap;
use std::time::Duration;

use spo_model::document::Kind;

pub use artifact::{Limits, ProfileFile};
pub use client::{ClientOptions, Credentials, Registry};
pub use platform::Platform;
pub use reference::Reference;
pub use sign::{PublicKey, SigningKeyPair, Verification};

use artifact::{Fetched, MANIFEST_MEDIA_TYPE, Manifest};

/// What went wrong, naming the operation and its subject.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A reference does not read.
    #[error("reference {input:?}: {reason}")]
    Reference {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A platform does not read.
    #[error("platform {input:?}: {reason}")]
    Platform {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// An annotation cannot be set.
    #[error("annotation {key:?}: {reason}")]
    Annotation {
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// What was to be pushed cannot be packed.
    #[error("packing the artifact: {0}")]
    Pack(String),
    /// What the registry holds is not a profile artifact.
    #[error("not a security profile artifact: {0}")]
    NotAProfileArtifact(String),
    /// No profile for the platform.
    #[error("no profile for platform {platform} in the artifact (it has {})", available.join(", "))]
    NoPlatform {
        /// The platform asked for.
        platform: String,
        /// What the artifact has.
        available: Vec<String>,
    },
    /// Content over a limit.
    #[error("{what}: {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// What it is.
        what: String,
        /// The limit.
        limit: u64,
        /// Its size (as far as it was read).
        size: u64,
    },
    /// Content that is not its digest's.
    #[error("{what}: content does not match its digest (expected {expected}, got {actual})")]
    DigestMismatch {
        /// What was fetched or put.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// The layer is not a profile.
    #[error("the pulled layer is not a usable profile: {0}")]
    Profile(String),
    /// A key does not read.
    #[error("key {origin}: {reason}")]
    Key {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The docker config does not give credentials.
    #[error("docker config {path}: {reason}")]
    DockerConfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A request failed below HTTP (connection, TLS handshake).
    #[error("{operation} ({url}): {message}")]
    Http {
        /// What was being done.
        operation: String,
        /// The request's URL.
        url: String,
        /// The error and its causes.
        message: String,
    },
    /// A request took too long.
    #[error("{operation} ({url}): no answer within {after:?}")]
    Timeout {
        /// What was being done.
        operation: String,
        /// The request's URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The registry answered with an error.
    #[error("{operation} ({url}): HTTP {status}: {message}")]
    Status {
        /// What was being done.
        operation: String,
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// The registry wants credentials it did not get or refused.
    #[error("{operation}: {registry} refused access: {detail}")]
    Unauthorized {
        /// What was being done.
        operation: String,
        /// The registry.
        registry: String,
        /// Why.
        detail: String,
    },
    /// A redirect that is not followed.
    #[error("redirect to {url}: {reason}")]
    Redirect {
        /// Where it pointed.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The artifact has no signature that the policy accepts.
    #[error("signature of {reference}: {reason}")]
    Unsigned {
        /// The artifact, by digest.
        reference: String,
        /// Why it is refused.
        reason: String,
    },
}

/// How a push is made.
#[derive(Debug, Default, Clone)]
pub struct PushOptions<'a> {
    /// Annotations for every layer (upstream's `--annotations`).
    pub annotations: BTreeMap<String, String>,
    /// Sign the pushed manifest with this key.
    pub sign_with: Option<&'a SigningKeyPair>,
    /// The manifest's creation time (RFC 3339); upstream's clock when empty.
    pub created: String,
}

/// One pushed layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushedLayer {
    /// Its platform.
    pub platform: String,
    /// Its file name.
    pub title: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// The profile's kind.
    pub kind: &'static str,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pushed {
    /// The reference pushed to, pinned to the manifest digest.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// The layers.
    pub layers: Vec<PushedLayer>,
    /// The signature tag, when signed.
    pub signature: Option<String>,
}

/// What a pull got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The reference pulled, pinned to the digest it resolved to.
    pub reference: Reference,
    /// The digest the reference resolved to (the manifest or index that was checked).
    pub digest: String,
    /// The profile's YAML as pushed.
    pub profile: Vec<u8>,
    /// Its kind.
    pub kind: Kind,
    /// The layer's file name.
    pub title: Option<String>,
    /// The key that signed it, when checked ([`PublicKey::fingerprint`]).
    pub signed_by: Option<String>,
}

fn check_registry(registry: &Registry, reference: &Reference) -> Result<(), OciError> {
    if registry.host() != reference.api_host() {
        return Err(OciError::Reference {
            input: reference.to_string(),
            reason: format!("is not on the registry {} this client talks to", registry.host()),
        });
    }
    Ok(())
}

/// Pushes profiles (one per platform) as one artifact to `reference`'s tag, as upstream's
/// `spoc push` does; signs it when asked.
pub async fn push(
    registry: &Registry,
    reference: &Reference,
    profiles: &[ProfileFile],
    options: &PushOptions<'_>,
) -> Result<Pushed, OciError> {
    check_registry(registry, reference)?;
    if reference.digest().is_some() {
        return Err(OciError::Reference {
            input: reference.to_string(),
            reason: "a push goes to a tag, not a digest".into(),
        });
    }
    let mut kinds = Vec::with_capacity(profiles.len());
    for p in profiles {
        kinds.push(artifact::profile_kind(&p.yaml)?);
    }
    let packed = artifact::pack(profiles, &options.annotations, &options.created)?;
    let repo = reference.repository();
    // The first request alone (the empty config, which a registry that has seen an artifact
    // has): it meets the registry's login challenge once. Then the layers and the signature's
    // parts (the manifest's digest is known before it is put) go up together, over one HTTP/2
    // connection where the registry speaks it (HTTP/1.1 opens more connections); the
    // manifest is put once its blobs are there.
    registry.push_blob(repo, artifact::EMPTY_CONFIG).await?;
    let expected = artifact::sha256_digest(&packed.manifest);
    let layers = futures_util::future::try_join_all(packed.layers.iter().map(|(_, c)| registry.upload_blob(repo, c)));
    let signature = async {
        match options.sign_with {
            Some(key) => prepare_signature(registry, reference, &expected, key).await.map(Some),
            None => Ok(None),
        }
    };
    let (_, signature) = tokio::try_join!(layers, signature)?;
    // The manifest and its signature go up together: the signature states that the key holder
    // signed this digest, which is true whether or not the manifest's put succeeds (when it
    // fails, the push fails, and a signature tag is left beside the uploaded blobs).
    let tag = reference.tag_or_latest();
    let manifest = registry.put_manifest(repo, tag, MANIFEST_MEDIA_TYPE, &packed.manifest);
    let signature = async {
        match signature {
            Some(prepared) => prepared.put(registry, repo).await.map(Some),
            None => Ok(None),
        }
    };
    let (digest, signature) = tokio::try_join!(manifest, signature)?;
    Ok(Pushed {
        reference: reference.with_digest(&digest).to_string(),
        digest,
        layers: packed
            .layers
            .iter()
            .zip(kinds)
            .map(|((d, _), kind)| PushedLayer {
                platform: d.platform.as_ref().map(ToString::to_string).unwrap_or_default(),
                title: d.title().unwrap_or_default().to_owned(),
                digest: d.digest.clone(),
                size: d.size,
                kind: kind.as_str(),
            })
            .collect(),
        signature,
    })
}

/// Signs the manifest `digest` of `reference`'s repository with `key`, cosign's way; returns
/// the signature tag.
pub async fn sign_artifact(
    registry: &Registry,
    reference: &Reference,
    digest: &str,
    key: &SigningKeyPair,
) -> Result<String, OciError> {
    prepare_signature(registry, reference, digest, key)
        .await?
        .put(registry, reference.repository())
        .await
}

/// A signature whose blobs are in the registry and whose manifest is still to be put.
struct PreparedSignature {
    tag: String,
    manifest: Vec<u8>,
}

impl PreparedSignature {
    async fn put(self, registry: &Registry, repo: &str) -> Result<String, OciError> {
        registry
            .put_manifest(repo, &self.tag, MANIFEST_MEDIA_TYPE, &self.manifest)
            .await?;
        Ok(self.tag)
    }
}

/// Signs `digest` and uploads the signature's payload and config, keeping the signatures
/// already at the signature tag.
async fn prepare_signature(
    registry: &Registry,
    reference: &Reference,
    digest: &str,
    key: &SigningKeyPair,
) -> Result<PreparedSignature, OciError> {
    let repo = reference.repository();
    let payload = sign::payload(&reference.name(), digest)?;
    let signature = sign::sign(key, &payload);
    let mut layer = artifact::Descriptor::of(sign::SIMPLE_SIGNING_MEDIA_TYPE, &payload);
    layer.annotations = Some(BTreeMap::from([(sign::SIGNATURE_ANNOTATION.to_owned(), signature)]));
    let tag = sign::signature_tag(digest);
    // The payload names the digest, so it is new; the config lists every signature's layer.
    let (existing, _) = tokio::try_join!(
        signature_manifest(registry, repo, &tag),
        registry.upload_blob(repo, &payload)
    )?;
    let (manifest, config) = sign::signature_manifest(existing.as_ref(), layer);
    registry.upload_blob(repo, &config).await?;
    let manifest =
        serde_json::to_vec(&manifest).map_err(|e| OciError::Pack(format!("serializing the signature: {e}")))?;
    Ok(PreparedSignature { tag, manifest })
}

/// The signature manifest at `tag`, if there is one.
async fn signature_manifest(registry: &Registry, repo: &str, tag: &str) -> Result<Option<Manifest>, OciError> {
    let Some(fetched) = registry.manifest_if_exists(repo, tag).await? else {
        return Ok(None);
    };
    let m: Manifest = serde_json::from_slice(&fetched.body)
        .map_err(|e| OciError::NotAProfileArtifact(format!("the signature manifest {tag} does not read: {e}")))?;
    Ok(Some(m))
}

/// Checks that `digest` of `reference`'s repository carries a signature `verification`
/// accepts; the signing key's fingerprint (`None` when checks are disabled).
pub async fn verify_signatures(
    registry: &Registry,
    reference: &Reference,
    digest: &str,
    verification: &Verification,
) -> Result<Option<String>, OciError> {
    let pinned = reference.with_digest(digest).to_string();
    let keys = match verification {
        Verification::Disabled => return Ok(None),
        Verification::Keyless { identity, issuer } => {
            return Err(OciError::Unsigned {
                reference: pinned,
                reason: format!(
                    "keyless verification (identity {identity:?}, issuer {issuer:?}) needs Sigstore's Fulcio and Rekor, which this build does not reach; give a public key or turn verification off"
                ),
            });
        }
        Verification::Keys(keys) => keys,
    };
    let unsigned = |reason: String| OciError::Unsigned {
        reference: pinned.clone(),
        reason,
    };
    let repo = reference.repository();
    let tag = sign::signature_tag(digest);
    let Some(manifest) = signature_manifest(registry, repo, &tag).await? else {
        return Err(unsigned(format!("not signed (no {tag})")));
    };
    let mut reasons = Vec::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == sign::SIMPLE_SIGNING_MEDIA_TYPE)
        .take(sign::MAX_SIGNATURES)
    {
        if layer.size > sign::MAX_PAYLOAD {
            reasons.push(format!("a payload of {} bytes", layer.size));
            continue;
        }
        let payload = registry.blob(repo, layer).await?;
        match sign::check_layer(keys, layer, &payload, digest) {
            Ok(key) => return Ok(Some(key.fingerprint())),
            Err(r) => reasons.push(r),
        }
    }
    if reasons.is_empty() {
        reasons.push("no cosign signature layers".into());
    }
    reasons.dedup();
    Err(unsigned(reasons.join("; ")))
}

/// Pulls `platform`'s profile of `reference`: resolves the reference once (a tag that moves
/// later does not matter: everything after is by digest), checks signatures on that digest,
/// and returns the profile, checked against its digest and read as one profile.
pub async fn pull(
    registry: &Registry,
    reference: &Reference,
    platform: &Platform,
    verification: &Verification,
) -> Result<Pulled, OciError> {
    check_registry(registry, reference)?;
    let repo = reference.repository();
    let limits = *registry.limits();
    let top = registry.manifest(repo, reference.identifier()).await?;
    // The signature is checked while the layer is fetched; nothing is returned unless both
    // succeed, so an unsigned artifact's layer is read but never handed out.
    let (signed_by, (profile, title)) = tokio::try_join!(
        verify_signatures(registry, reference, &top.digest, verification),
        fetch_layer(registry, repo, &top, platform, &limits)
    )?;
    let kind = artifact::profile_kind(&profile)?;
    Ok(Pulled {
        reference: reference.with_digest(&top.digest),
        digest: top.digest,
        profile,
        kind,
        title,
        signed_by,
    })
}

/// The layer for `platform` under the manifest or index `top`, checked against its digest,
/// with its file name.
async fn fetch_layer(
    registry: &Registry,
    repo: &str,
    top: &client::FetchedManifest,
    platform: &Platform,
    limits: &Limits,
) -> Result<(Vec<u8>, Option<String>), OciError> {
    let manifest = match artifact::read_manifest(top.content_type.as_deref(), &top.body, limits)? {
        Fetched::Manifest(m) => *m,
        Fetched::Index(index) => {
            let entry = artifact::select_manifest(&index, platform)?;
            let inner = registry.manifest(repo, &entry.digest).await?;
            match artifact::read_manifest(inner.content_type.as_deref(), &inner.body, limits)? {
                Fetched::Manifest(m) => *m,
                Fetched::Index(_) => {
                    return Err(OciError::NotAProfileArtifact("an index inside an index".into()));
                }
            }
        }
    };
    let layer = artifact::select_layer(&manifest, platform)?;
    artifact::check_layer_size(layer, limits)?;
    let profile = registry.blob(repo, layer).await?;
    Ok((profile, layer.title().map(str::to_owned)))
}
