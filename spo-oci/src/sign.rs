//! Signatures in cosign's format, made and checked with a key pair (ECDSA P-256, SHA-256).
//!
//! What cosign stores and checks for a key-signed image, which this module writes and reads
//! the same way so that `cosign verify --key` accepts our signatures and we accept cosign's:
//!
//! - the signed payload is a "simple signing" JSON document naming the manifest digest
//!   (`critical.image.docker-manifest-digest`) and the type `cosign container image signature`;
//! - the signature is ASN.1 DER, base64, in the layer annotation
//!   `dev.cosignproject.cosign/signature`; the layer (media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`) is the payload;
//! - the signature manifest is tagged `sha256-<hex>.sig` in the same repository; more
//!   signatures are more layers of it.
//!
//! Keys are PEM: a PKCS#8 private key (`openssl genpkey -algorithm EC -pkeyopt
//! ec_paramgen_curve:P-256`) and a SubjectPublicKeyInfo public key (what `cosign
//! generate-key-pair` writes as `cosign.pub`). cosign's own encrypted private-key format is
//! not read (it needs cosign's password scheme); convert with `cosign import-key-pair` the
//! other way, or sign with a PKCS#8 key.
//!
//! Keyless signatures (a Fulcio certificate and a Rekor entry) cannot be checked here: that
//! needs Sigstore's trust roots and transparency log, which a node may not reach. Without a
//! key, [`Verification::Keyless`] refuses every artifact, so turning the check off stays a
//! decision someone makes (SPOD `disableOciArtifactSignatureVerification`).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde::{Deserialize, Serialize};

use crate::OciError;
use crate::artifact::{Descriptor, MANIFEST_MEDIA_TYPE, Manifest, sha256_digest};

/// The media type of a signature layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's type.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The config media type of a signature manifest.
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Signature layers looked at at most.
pub const MAX_SIGNATURES: usize = 32;
/// The largest payload read.
pub const MAX_PAYLOAD: u64 = 64 << 10;

/// The tag holding the signatures of `digest` (`sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// A private key to sign with.
#[derive(Clone, Debug)]
pub struct SigningKeyPair {
    key: SigningKey,
}

impl SigningKeyPair {
    /// Reads a PKCS#8 PEM private key (P-256).
    pub fn from_pem(pem: &str, origin: &str) -> Result<SigningKeyPair, OciError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| SigningKeyPair { key })
            .map_err(|e| OciError::Key {
                origin: origin.to_owned(),
                reason: format!("not a PKCS#8 PEM P-256 private key ({e}); cosign's encrypted keys are not read"),
            })
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<SigningKeyPair, OciError> {
        let pem = read_key_file(path)?;
        SigningKeyPair::from_pem(&pem, &path.display().to_string())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }
}

/// A public key to check signatures with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM public key (P-256), as `cosign.pub`.
    pub fn from_pem(pem: &str, origin: &str) -> Result<PublicKey, OciError> {
        VerifyingKey::from_public_key_pem(pem)
            .map(|key| PublicKey { key })
            .map_err(|e| OciError::Key {
                origin: origin.to_owned(),
                reason: format!("not a PEM P-256 public key: {e}"),
            })
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<PublicKey, OciError> {
        let pem = read_key_file(path)?;
        PublicKey::from_pem(&pem, &path.display().to_string())
    }

    /// A short name of the key for messages: the first 12 hex digits of the SHA-256 of its
    /// SEC1 point.
    pub fn fingerprint(&self) -> String {
        let point = self.key.to_encoded_point(false);
        sha256_digest(point.as_bytes())["sha256:".len()..][..12].to_owned()
    }
}

fn read_key_file(path: &Path) -> Result<String, OciError> {
    let meta = std::fs::metadata(path).map_err(|e| OciError::Key {
        origin: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() || meta.len() > 64 << 10 {
        return Err(OciError::Key {
            origin: path.display().to_string(),
            reason: "not a regular file of at most 64 KiB".into(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| OciError::Key {
        origin: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// What a pull requires of signatures.
#[derive(Clone, Debug)]
pub enum Verification {
    /// No check (SPOD `disableOciArtifactSignatureVerification: true`, spoc
    /// `--disable-signature-verification`).
    Disabled,
    /// A valid signature by one of these keys.
    Keys(Vec<PublicKey>),
    /// Upstream's keyless check (identity and issuer patterns), which cannot be done here:
    /// every artifact is refused, saying why.
    Keyless {
        /// `allowedIdentityRegexp`.
        identity: String,
        /// `allowedOidcIssuerRegexp`.
        issuer: String,
    },
}

/// cosign's simple-signing payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// What is signed.
    pub critical: Critical,
    /// Free-form claims.
    #[serde(default)]
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// The signed claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    /// The image's name.
    pub identity: Identity,
    /// The manifest digest.
    pub image: Image,
    /// [`SIGNATURE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `registry/repository`.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the signed manifest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload for the manifest `digest` of the image `name`.
pub fn payload(name: &str, digest: &str) -> Result<Vec<u8>, OciError> {
    let p = Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: name.to_owned(),
            },
            image: Image {
                docker_manifest_digest: digest.to_owned(),
            },
            kind: SIGNATURE_TYPE.to_owned(),
        },
        optional: None,
    };
    serde_json::to_vec(&p).map_err(|e| OciError::Pack(format!("serializing the signature payload: {e}")))
}

/// Signs a payload: the base64 of the DER signature.
pub fn sign(key: &SigningKeyPair, payload: &[u8]) -> String {
    let signature: Signature = key.key.sign(payload);
    let der: DerSignature = signature.to_der();
    base64::engine::general_purpose::STANDARD.encode(der.as_bytes())
}

/// Whether `signature` (base64 DER, as cosign writes it) is `key`'s over `payload`.
pub fn verify(key: &PublicKey, payload: &[u8], signature: &str) -> bool {
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(sig) = Signature::from_der(&der) else {
        return false;
    };
    key.key.verify(payload, &sig).is_ok()
}

/// The config blob of a signature manifest (an image config whose one layer is the payload).
pub fn signature_config(payload_digests: &[String]) -> Vec<u8> {
    serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": payload_digests},
    })
    .to_string()
    .into_bytes()
}

/// The signature manifest with `layer` (a payload's descriptor with its signature) added to
/// the layers of `existing` (a signature manifest already at the tag), unless it is there.
pub fn signature_manifest(existing: Option<&Manifest>, layer: Descriptor) -> (Manifest, Vec<u8>) {
    let mut layers: Vec<Descriptor> = existing.map(|m| m.layers.clone()).unwrap_or_default();
    if !layers.contains(&layer) {
        layers.push(layer);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
    let config = signature_config(&diff_ids);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        artifact_type: None,
        config: Descriptor::of(CONFIG_MEDIA_TYPE, &config),
        layers,
        annotations: None,
    };
    (manifest, config)
}

/// Checks one signature layer's payload and signature against the artifact's digest and the
/// keys; the key that signed it.
pub fn check_layer<'k>(
    keys: &'k [PublicKey],
    layer: &Descriptor,
    payload: &[u8],
    digest: &str,
) -> Result<&'k PublicKey, String> {
    let signature = layer
        .annotations
        .as_ref()
        .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        .ok_or("a signature layer without a signature")?;
    let key = keys
        .iter()
        .find(|k| verify(k, payload, signature))
        .ok_or("signed by none of the given keys")?;
    let p: Payload = serde_json::from_slice(payload).map_err(|e| format!("the signed payload does not read: {e}"))?;
    if p.critical.kind != SIGNATURE_TYPE {
        return Err(format!("the signed payload's type is {:?}", p.critical.kind));
    }
    if p.critical.image.docker_manifest_digest != digest {
        return Err(format!(
            "the signature is for {}, not {digest}",
            p.critical.image.docker_manifest_digest
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn key() -> SigningKeyPair {
        // A fixed scalar: PEM keys from openssl are read in tests/registry.rs.
        SigningKeyPair {
            key: SigningKey::from_slice(&[3u8; 32]).expect("key"),
        }
    }

    fn layer(payload: &[u8], signature: &str) -> Descriptor {
        let mut l = Descriptor::of(SIMPLE_SIGNING_MEDIA_TYPE, payload);
        l.annotations = Some(BTreeMap::from([(
            SIGNATURE_ANNOTATION.to_owned(),
            signature.to_owned(),
        )]));
        l
    }

    #[test]
    fn payloads_are_cosigns() {
        let p = payload("r.io/a/b", D).expect("payload");
        let v: serde_json::Value = serde_json::from_slice(&p).expect("json");
        assert_eq!(v["critical"]["identity"]["docker-reference"], "r.io/a/b");
        assert_eq!(v["critical"]["image"]["docker-manifest-digest"], D);
        assert_eq!(v["critical"]["type"], SIGNATURE_TYPE);
        assert_eq!(signature_tag(D), format!("sha256-{}.sig", &D[7..]));
    }

    #[test]
    fn a_signature_checks_only_for_its_key_payload_and_digest() {
        let k = key();
        let keys = [k.public()];
        let p = payload("r.io/a/b", D).expect("payload");
        let s = sign(&k, &p);
        assert!(check_layer(&keys, &layer(&p, &s), &p, D).is_ok());
        // Another digest (the tag moved, or the artifact was swapped).
        let other = D.replace("4413", "4414");
        assert!(
            check_layer(&keys, &layer(&p, &s), &p, &other)
                .expect_err("digest")
                .contains("not sha256")
        );
        // A payload changed after signing.
        let forged = payload("r.io/a/b", &other).expect("payload");
        assert!(check_layer(&keys, &layer(&forged, &s), &forged, &other).is_err());
        // Another key.
        let stranger = SigningKeyPair {
            key: SigningKey::from_slice(&[7u8; 32]).expect("key"),
        };
        assert!(check_layer(&[stranger.public()], &layer(&p, &s), &p, D).is_err());
        // Garbage signatures.
        for bad in ["", "!!!", "AAAA"] {
            assert!(!verify(&keys[0], &p, bad));
        }
    }

    #[test]
    fn signature_manifests_append_and_do_not_repeat() {
        let k = key();
        let p = payload("r.io/a/b", D).expect("payload");
        let l = layer(&p, &sign(&k, &p));
        let (m1, _) = signature_manifest(None, l.clone());
        let (m2, _) = signature_manifest(Some(&m1), l.clone());
        assert_eq!(m2.layers.len(), 1);
        let p2 = payload("r.io/a/c", D).expect("payload");
        let (m3, config) = signature_manifest(Some(&m2), layer(&p2, &sign(&k, &p2)));
        assert_eq!(m3.layers.len(), 2);
        assert_eq!(m3.config.digest, sha256_digest(&config));
    }

    #[test]
    fn keys_that_are_not_p256_pem_are_refused() {
        assert!(SigningKeyPair::from_pem("nope", "x").is_err());
        assert!(PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "x").is_err());
        let pem =
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        let e = SigningKeyPair::from_pem(pem, "cosign.key")
            .expect_err("cosign's format")
            .to_string();
        assert!(e.contains("cosign's encrypted keys"), "{e}");
    }
}
