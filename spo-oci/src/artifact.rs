//! The artifact's shape, decided without IO: what a push writes and what a pull accepts.
//!
//! Wire-compatible with the Security Profiles Operator (v1.0, which packs with oras): one OCI
//! image manifest (`artifactType` [`ARTIFACT_TYPE`], the empty config) whose layers are the
//! profiles' YAML as they are, one per platform, each named by
//! `org.opencontainers.image.title` ([`Platform::file_name`]) and carrying its `platform`.
//! No image index is pushed, as upstream pushes none; a pull also reads an index (choosing the
//! platform's manifest) and the older shape whose *config* has the artifact type as its media
//! type (pushes before September 2023).
//!
//! A pull accepts only what it can hold: manifests up to [`Limits::manifest_bytes`], at most
//! [`Limits::layers`] layers, a profile up to [`Limits::profile_bytes`], no foreign `urls`,
//! and a layer whose YAML is one profile of a kind this project knows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use spo_model::document::{Kind, parse_source};

use crate::OciError;
use crate::platform::{PLATFORM_NEUTRAL_FILE, Platform};

/// An OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The artifact type of a profile artifact (oras's "unknown config" type, as upstream uses it).
pub const ARTIFACT_TYPE: &str = "application/vnd.unknown.config.v1+json";
/// The empty config's media type.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's content.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// A profile layer's media type (oras's file default; the content is YAML, not a tar).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// A layer's file name.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// When the artifact was made (RFC 3339).
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// What a pull is willing to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A manifest or index, in bytes (distribution's own limit is 4 MiB).
    pub manifest_bytes: usize,
    /// One profile, in bytes (an object in etcd is at most 1.5 MiB).
    pub profile_bytes: u64,
    /// Layers in one manifest, entries in one index.
    pub layers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest_bytes: 4 << 20,
            profile_bytes: 2 << 20,
            layers: 64,
        }
    }
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform the content is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type of a manifest an index points to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Other places to fetch the content from (never followed: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// A descriptor of `content`.
    pub fn of(media_type: &str, content: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256_digest(content),
            size: content.len() as u64,
            annotations: None,
            platform: None,
            artifact_type: None,
            urls: None,
        }
    }

    /// The `org.opencontainers.image.title` annotation.
    pub fn title(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(TITLE_ANNOTATION).map(String::as_str)
    }
}

/// An OCI image manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`] (optional in the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// What the artifact is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`INDEX_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

/// `sha256:<hex>` of `content`.
pub fn sha256_digest(content: &[u8]) -> String {
    let sum = Sha256::digest(content);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in sum {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// One profile to push, for one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileFile {
    /// The platform it is for.
    pub platform: Platform,
    /// The profile's YAML.
    pub yaml: Vec<u8>,
}

/// What a push uploads: the config, the layers and the manifest that names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// Its digest.
    pub digest: String,
    /// Each layer's descriptor and content, in order.
    pub layers: Vec<(Descriptor, Vec<u8>)>,
}

/// Checks a user annotation (`KEY:VALUE` split by the caller) for the layers.
pub fn check_annotation(key: &str, value: &str) -> Result<(), OciError> {
    let bad = |reason: &str| OciError::Annotation {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if key.is_empty() || key.len() > 253 || key.bytes().any(|b| !(b.is_ascii_graphic())) {
        return Err(bad("a key is 1-253 printable characters without spaces"));
    }
    if key == TITLE_ANNOTATION {
        return Err(bad("the title is the profile's file name, set from its platform"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("the value has control characters"));
    }
    Ok(())
}

/// Packs profiles (one per platform) into an artifact. `annotations` go on every layer (as
/// upstream's `--annotations`), `created` is the manifest's creation time (RFC 3339).
pub fn pack(
    profiles: &[ProfileFile],
    annotations: &BTreeMap<String, String>,
    created: &str,
) -> Result<Packed, OciError> {
    if profiles.is_empty() {
        return Err(OciError::Pack("no profile to push".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in profiles {
        if !seen.insert(p.platform.file_name()) {
            return Err(OciError::Pack(format!("platform {} is given twice", p.platform)));
        }
    }
    for (k, v) in annotations {
        check_annotation(k, v)?;
    }
    let layers: Vec<(Descriptor, Vec<u8>)> = profiles
        .iter()
        .map(|p| {
            let mut d = Descriptor::of(LAYER_MEDIA_TYPE, &p.yaml);
            let mut a = annotations.clone();
            a.insert(TITLE_ANNOTATION.to_owned(), p.platform.file_name());
            d.annotations = Some(a);
            d.platform = Some(p.platform.clone());
            (d, p.yaml.clone())
        })
        .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        artifact_type: Some(ARTIFACT_TYPE.to_owned()),
        config: Descriptor::of(EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG),
        layers: layers.iter().map(|(d, _)| d.clone()).collect(),
        annotations: Some(BTreeMap::from([(CREATED_ANNOTATION.to_owned(), created.to_owned())])),
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| OciError::Pack(format!("serializing the manifest: {e}")))?;
    Ok(Packed {
        digest: sha256_digest(&bytes),
        manifest: bytes,
        layers,
    })
}

/// A manifest or an index, as fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A profile artifact's manifest.
    Manifest(Box<Manifest>),
    /// An index to choose a platform's manifest from.
    Index(Index),
}

/// Reads what a registry returned for a manifest request: its `Content-Type` and body.
/// Refuses other media types (container images, Docker schema 2, Helm charts...), foreign
/// URLs, too many layers and anything that is not a profile artifact, naming what it found.
pub fn read_manifest(content_type: Option<&str>, body: &[u8], limits: &Limits) -> Result<Fetched, OciError> {
    let not = |reason: String| OciError::NotAProfileArtifact(reason);
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(body).map_err(|e| not(format!("the manifest is not JSON: {e}")))?;
    if probe.schema_version != Some(2) {
        return Err(not(format!("schemaVersion {:?}, not 2", probe.schema_version)));
    }
    let declared = probe
        .media_type
        .as_deref()
        .or(content_type.map(|c| c.split(';').next().unwrap_or(c).trim()));
    let is_index = match declared {
        Some(INDEX_MEDIA_TYPE) => true,
        Some(MANIFEST_MEDIA_TYPE) => false,
        None => probe.manifests.is_some(),
        Some(other) => return Err(not(format!("media type {other}, not an OCI manifest or index"))),
    };
    if is_index {
        let index: Index = serde_json::from_slice(body).map_err(|e| not(format!("the index does not read: {e}")))?;
        if index.manifests.len() > limits.layers {
            return Err(not(format!(
                "the index has {} entries (at most {})",
                index.manifests.len(),
                limits.layers
            )));
        }
        return Ok(Fetched::Index(index));
    }
    let manifest: Manifest =
        serde_json::from_slice(body).map_err(|e| not(format!("the manifest does not read: {e}")))?;
    let kind = manifest
        .artifact_type
        .as_deref()
        .unwrap_or(manifest.config.media_type.as_str());
    if kind != ARTIFACT_TYPE {
        return Err(not(format!(
            "artifact type {kind}, not a security profile ({ARTIFACT_TYPE}); a container image?"
        )));
    }
    if manifest.layers.is_empty() || manifest.layers.len() > limits.layers {
        return Err(not(format!(
            "{} layers (a profile artifact has 1 to {})",
            manifest.layers.len(),
            limits.layers
        )));
    }
    for (i, l) in manifest.layers.iter().enumerate() {
        if l.media_type != LAYER_MEDIA_TYPE {
            return Err(not(format!(
                "layer {i} has media type {}, not {LAYER_MEDIA_TYPE}",
                l.media_type
            )));
        }
        if l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(not(format!("layer {i} names foreign URLs, which are never fetched")));
        }
        crate::reference::check_digest(&l.digest).map_err(|r| not(format!("layer {i}: {r}")))?;
    }
    Ok(Fetched::Manifest(Box::new(manifest)))
}

/// The index entry for `platform` (OS and architecture equal, variant where asked).
pub fn select_manifest<'a>(index: &'a Index, platform: &Platform) -> Result<&'a Descriptor, OciError> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| OciError::NoPlatform {
            platform: platform.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                .collect(),
        })
}

/// The layer holding `platform`'s profile: the one named for it, else the one whose
/// `platform` matches, else the platform-neutral `profile.yaml` (upstream's order, with the
/// descriptor's platform as a second look).
pub fn select_layer<'a>(manifest: &'a Manifest, platform: &Platform) -> Result<&'a Descriptor, OciError> {
    let name = platform.file_name();
    let layers = &manifest.layers;
    layers
        .iter()
        .find(|l| l.title() == Some(name.as_str()))
        .or_else(|| {
            layers
                .iter()
                .find(|l| l.platform.as_ref().is_some_and(|p| platform.matches(p)))
        })
        .or_else(|| layers.iter().find(|l| l.title() == Some(PLATFORM_NEUTRAL_FILE)))
        .ok_or_else(|| OciError::NoPlatform {
            platform: platform.to_string(),
            available: layers
                .iter()
                .map(|l| {
                    l.platform
                        .as_ref()
                        .map_or_else(|| l.title().unwrap_or("?").to_owned(), ToString::to_string)
                })
                .collect(),
        })
}

/// Checks a layer descriptor against the limits before fetching it.
pub fn check_layer_size(layer: &Descriptor, limits: &Limits) -> Result<(), OciError> {
    if layer.size > limits.profile_bytes {
        return Err(OciError::TooLarge {
            what: format!("profile layer {}", layer.digest),
            limit: limits.profile_bytes,
            size: layer.size,
        });
    }
    Ok(())
}

/// The profile kinds an artifact may hold.
pub const PROFILE_KINDS: [Kind; 4] = [
    Kind::SeccompProfile,
    Kind::SelinuxProfile,
    Kind::RawSelinuxProfile,
    Kind::AppArmorProfile,
];

/// Reads a pulled layer: one YAML (or JSON) document of a profile kind. Returns its kind.
pub fn profile_kind(yaml: &[u8]) -> Result<Kind, OciError> {
    let text = std::str::from_utf8(yaml).map_err(|e| OciError::Profile(format!("the profile is not UTF-8: {e}")))?;
    let docs = parse_source("pulled profile", text).map_err(|e| OciError::Profile(e.to_string()))?;
    let [doc] = docs.as_slice() else {
        return Err(OciError::Profile(format!(
            "{} documents in the layer; a profile artifact holds one",
            docs.len()
        )));
    };
    let kind = match (doc.api_version.as_deref(), doc.kind.as_deref()) {
        (Some(spo_model::API_VERSION), Some(k)) => Kind::parse(k),
        _ => None,
    };
    let kind = match kind {
        Some(k) if PROFILE_KINDS.contains(&k) => k,
        _ => {
            return Err(OciError::Profile(format!(
                "{} {}, not a profile of {}",
                doc.api_version.as_deref().unwrap_or("no apiVersion"),
                doc.kind.as_deref().unwrap_or("no kind"),
                spo_model::API_VERSION
            )));
        }
    };
    if let Some(e) = doc.problems.errors().next() {
        return Err(OciError::Profile(format!(
            "the {} does not validate: {e}",
            kind.as_str()
        )));
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECCOMP: &str = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: p\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n";

    fn files() -> Vec<ProfileFile> {
        vec![
            ProfileFile {
                platform: Platform::parse("linux/amd64").expect("amd64"),
                yaml: SECCOMP.as_bytes().to_vec(),
            },
            ProfileFile {
                platform: Platform::parse("linux/arm64").expect("arm64"),
                yaml: SECCOMP.replace("name: p", "name: q").into_bytes(),
            },
        ]
    }

    #[test]
    fn packs_upstreams_shape() {
        let annotations = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        let packed = pack(&files(), &annotations, "2026-12-06T00:00:00Z").expect("pack");
        let v: serde_json::Value = serde_json::from_slice(&packed.manifest).expect("json");
        assert_eq!(v["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        assert_eq!(v["config"]["mediaType"], EMPTY_CONFIG_MEDIA_TYPE);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(v["config"]["size"], 2);
        assert_eq!(v["annotations"][CREATED_ANNOTATION], "2026-12-06T00:00:00Z");
        assert_eq!(v["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(
            v["layers"][0]["annotations"][TITLE_ANNOTATION],
            "profile-linux-amd64.yaml"
        );
        assert_eq!(v["layers"][0]["annotations"]["team"], "a");
        assert_eq!(
            v["layers"][1]["platform"],
            serde_json::json!({"os": "linux", "architecture": "arm64"})
        );
        assert_eq!(packed.digest, sha256_digest(&packed.manifest));
        assert_eq!(packed.layers[0].0.digest, sha256_digest(SECCOMP.as_bytes()));
        // And it reads back, each platform to its layer.
        let Fetched::Manifest(m) = read_manifest(None, &packed.manifest, &Limits::default()).expect("read") else {
            panic!("not a manifest");
        };
        let arm = select_layer(&m, &Platform::parse("linux/arm64").expect("p")).expect("arm64 layer");
        assert_eq!(arm.title(), Some("profile-linux-arm64.yaml"));
        let e = select_layer(&m, &Platform::parse("linux/s390x").expect("p")).expect_err("none");
        assert_eq!(
            e.to_string(),
            "no profile for platform linux/s390x in the artifact (it has linux/amd64, linux/arm64)"
        );
    }

    #[test]
    fn pushes_refuse_duplicates_titles_and_nothing() {
        let mut twice = files();
        twice[1].platform = twice[0].platform.clone();
        assert!(
            pack(&twice, &BTreeMap::new(), "t")
                .expect_err("dup")
                .to_string()
                .contains("given twice")
        );
        assert!(pack(&[], &BTreeMap::new(), "t").is_err());
        let title = BTreeMap::from([(TITLE_ANNOTATION.to_owned(), "x".to_owned())]);
        assert!(
            pack(&files(), &title, "t")
                .expect_err("title")
                .to_string()
                .contains("file name")
        );
        let ctl = BTreeMap::from([("k".to_owned(), "a\nb".to_owned())]);
        assert!(pack(&files(), &ctl, "t").is_err());
    }

    #[test]
    fn reads_upstreams_older_shape_and_the_neutral_file() {
        // Before oras's PackManifest: no artifactType, the config's media type says it, and
        // one layer named profile.yaml without a platform.
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": ARTIFACT_TYPE, "digest": sha256_digest(b"{}"), "size": 2},
            "layers": [{
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": sha256_digest(SECCOMP.as_bytes()),
                "size": SECCOMP.len(),
                "annotations": {TITLE_ANNOTATION: "profile.yaml"}
            }]
        });
        let Fetched::Manifest(m) = read_manifest(None, body.to_string().as_bytes(), &Limits::default()).expect("read")
        else {
            panic!("not a manifest");
        };
        let l = select_layer(&m, &Platform::parse("linux/riscv64").expect("p")).expect("neutral");
        assert_eq!(l.title(), Some("profile.yaml"));
    }

    #[test]
    fn other_artifacts_are_refused_by_what_they_are() {
        let image = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(b"x"), "size": 1},
            "layers": []
        });
        let e = read_manifest(None, image.to_string().as_bytes(), &Limits::default()).expect_err("image");
        assert!(
            e.to_string().contains("application/vnd.oci.image.config.v1+json"),
            "{e}"
        );
        let docker = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {}, "layers": []
        });
        let e = read_manifest(None, docker.to_string().as_bytes(), &Limits::default()).expect_err("docker");
        assert!(e.to_string().contains("docker.distribution.manifest.v2"), "{e}");
        assert!(read_manifest(None, b"{\"schemaVersion\": 1}", &Limits::default()).is_err());
        assert!(read_manifest(None, b"not json", &Limits::default()).is_err());
        let mut foreign = serde_json::json!({
            "schemaVersion": 2,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": sha256_digest(b"{}"), "size": 2},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": sha256_digest(b"a"), "size": 1, "urls": ["https://elsewhere/x"]}]
        });
        let e = read_manifest(None, foreign.to_string().as_bytes(), &Limits::default()).expect_err("urls");
        assert!(e.to_string().contains("foreign URLs"), "{e}");
        foreign["layers"][0]["urls"] = serde_json::Value::Null;
        foreign["layers"][0]["digest"] = "sha256:../../etc/passwd".into();
        let e = read_manifest(None, foreign.to_string().as_bytes(), &Limits::default()).expect_err("digest");
        assert!(e.to_string().contains("64 lowercase hex"), "{e}");
        let many = serde_json::json!({
            "schemaVersion": 2,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": sha256_digest(b"{}"), "size": 2},
            "layers": vec![serde_json::json!({"mediaType": LAYER_MEDIA_TYPE, "digest": sha256_digest(b"a"), "size": 1}); 65]
        });
        let e = read_manifest(None, many.to_string().as_bytes(), &Limits::default()).expect_err("many");
        assert!(e.to_string().contains("65 layers"), "{e}");
    }

    #[test]
    fn an_index_gives_the_platforms_manifest() {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {"mediaType": MANIFEST_MEDIA_TYPE, "digest": sha256_digest(b"a"), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": MANIFEST_MEDIA_TYPE, "digest": sha256_digest(b"b"), "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}
            ]
        });
        let Fetched::Index(i) = read_manifest(None, index.to_string().as_bytes(), &Limits::default()).expect("index")
        else {
            panic!("not an index");
        };
        let d = select_manifest(&i, &Platform::parse("linux/arm").expect("arm")).expect("arm");
        assert_eq!(d.digest, sha256_digest(b"b"));
        assert!(select_manifest(&i, &Platform::parse("linux/arm64").expect("p")).is_err());
    }

    #[test]
    fn layers_hold_one_profile_of_a_known_kind() {
        assert_eq!(profile_kind(SECCOMP.as_bytes()).expect("seccomp"), Kind::SeccompProfile);
        let two = format!("{SECCOMP}---\n{SECCOMP}");
        assert!(
            profile_kind(two.as_bytes())
                .expect_err("two")
                .to_string()
                .contains("2 documents")
        );
        let binding = SECCOMP.replace("SeccompProfile", "ProfileBinding");
        assert!(
            profile_kind(binding.as_bytes())
                .expect_err("binding")
                .to_string()
                .contains("ProfileBinding")
        );
        assert!(profile_kind(b"\xff\xfe").is_err());
        assert!(profile_kind(b"kind: Pod\n").is_err());
        assert!(
            check_layer_size(
                &Descriptor {
                    size: 3 << 20,
                    ..Descriptor::of(LAYER_MEDIA_TYPE, b"")
                },
                &Limits::default()
            )
            .is_err()
        );
    }
}
