//! Push, pull and signatures against a real registry: Debian's docker-registry (CNCF
//! distribution) with TLS from a CA of the test's own and htpasswd auth
//! (`spo_testkit::registry`). Keys are made by openssl, as a user would make them.

use std::collections::BTreeMap;
use std::path::Path;

use spo_oci::artifact::{
    ARTIFACT_TYPE, Descriptor, EMPTY_CONFIG, EMPTY_CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
    TITLE_ANNOTATION,
};
use spo_oci::sign::signature_tag;
use spo_oci::{
    ClientOptions, Credentials, Limits, OciError, Platform, ProfileFile, PublicKey, PushOptions, Reference, Registry,
    SigningKeyPair, Verification,
};
use spo_testkit::registry::Registry as TestRegistry;

fn seccomp(name: &str, syscalls: &[&str]) -> Vec<u8> {
    let names: Vec<String> = syscalls.iter().map(|s| format!("      - {s}\n")).collect();
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: {name}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n    - action: SCMP_ACT_ALLOW\n      names:\n{}",
        names.concat()
    )
    .into_bytes()
}

fn apparmor() -> Vec<u8> {
    b"apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: AppArmorProfile\nmetadata:\n  name: aa\nspec:\n  abstract:\n    filesystem:\n      readOnlyPaths: [\"/etc/hostname\"]\n".to_vec()
}

fn options(reg: &TestRegistry) -> ClientOptions {
    ClientOptions {
        ca_files: vec![reg.ca.clone()],
        ..ClientOptions::default()
    }
}

fn client(reg: &TestRegistry) -> Registry {
    Registry::new(
        &reg.host,
        Some(Credentials::new(&reg.user, &reg.password)),
        &options(reg),
    )
    .expect("client")
}

fn reference(reg: &TestRegistry, path: &str) -> Reference {
    Reference::parse(&format!("{}/{path}", reg.host)).expect("reference")
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").expect("platform")
}

fn arm64() -> Platform {
    Platform::parse("linux/arm64").expect("platform")
}

/// A P-256 key pair made by openssl: PKCS#8 private key, SubjectPublicKeyInfo public key.
fn openssl_keys(dir: &Path, name: &str) -> (SigningKeyPair, PublicKey) {
    let (private, public) = spo_testkit::openssl_p256_keys(dir, name);
    (
        SigningKeyPair::from_file(&private).expect("private key"),
        PublicKey::from_file(&public).expect("public key"),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn profiles_of_every_platform_round_trip_through_a_real_registry() {
    let Some(reg) = TestRegistry::require() else { return };
    let rt = rt();
    let c = client(&reg);
    let r = reference(&reg, "team/profiles:v1");
    let files = [
        ProfileFile {
            platform: amd64(),
            yaml: seccomp("web", &["read", "write"]),
        },
        ProfileFile {
            platform: arm64(),
            yaml: seccomp("web", &["read", "write", "openat"]),
        },
    ];
    let options = PushOptions {
        created: "2026-12-06T00:00:00Z".into(),
        annotations: BTreeMap::from([("team".to_owned(), "web".to_owned())]),
        ..PushOptions::default()
    };
    let pushed = rt.block_on(spo_oci::push(&c, &r, &files, &options)).expect("push");
    assert_eq!(pushed.layers.len(), 2);
    assert_eq!(pushed.layers[1].title, "profile-linux-arm64.yaml");
    assert_eq!(pushed.layers[0].kind, "SeccompProfile");
    for (platform, yaml) in [(amd64(), &files[0].yaml), (arm64(), &files[1].yaml)] {
        let pulled = rt
            .block_on(spo_oci::pull(&c, &r, &platform, &Verification::Disabled))
            .expect("pull");
        assert_eq!(&pulled.profile, yaml, "{platform}");
        assert_eq!(pulled.digest, pushed.digest);
        assert_eq!(pulled.reference.digest(), Some(pushed.digest.as_str()));
    }
    let e = rt
        .block_on(spo_oci::pull(
            &c,
            &r,
            &Platform::parse("linux/s390x").expect("p"),
            &Verification::Disabled,
        ))
        .expect_err("no s390x");
    assert!(matches!(e, OciError::NoPlatform { .. }), "{e}");
    // By digest too, and another kind.
    let pinned = r.with_digest(&pushed.digest);
    assert!(
        rt.block_on(spo_oci::pull(&c, &pinned, &amd64(), &Verification::Disabled))
            .is_ok()
    );
    let aa = reference(&reg, "team/apparmor");
    let files = [ProfileFile {
        platform: amd64(),
        yaml: apparmor(),
    }];
    rt.block_on(spo_oci::push(&c, &aa, &files, &PushOptions::default()))
        .expect("push apparmor");
    let pulled = rt
        .block_on(spo_oci::pull(&c, &aa, &amd64(), &Verification::Disabled))
        .expect("pull apparmor");
    assert_eq!(pulled.kind.as_str(), "AppArmorProfile");
    // A push of something that is not a profile never reaches the registry.
    let pod = [ProfileFile {
        platform: amd64(),
        yaml: b"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n".to_vec(),
    }];
    let e = rt
        .block_on(spo_oci::push(
            &c,
            &reference(&reg, "team/pod"),
            &pod,
            &PushOptions::default(),
        ))
        .expect_err("pod");
    assert!(matches!(e, OciError::Profile(_)), "{e}");
    assert!(
        !rt.block_on(c.manifest_exists("team/pod", "latest")).expect("head"),
        "nothing was pushed"
    );
}

#[test]
fn credentials_and_tls_are_required_and_read_from_a_docker_config() {
    let Some(reg) = TestRegistry::require() else { return };
    let rt = rt();
    let r = reference(&reg, "auth/p");
    let files = [ProfileFile {
        platform: amd64(),
        yaml: seccomp("p", &["read"]),
    }];
    rt.block_on(spo_oci::push(&client(&reg), &r, &files, &PushOptions::default()))
        .expect("push");
    let pull = |c: &Registry| rt.block_on(spo_oci::pull(c, &r, &amd64(), &Verification::Disabled));

    let anonymous = Registry::new(&reg.host, None, &options(&reg)).expect("client");
    let e = pull(&anonymous).expect_err("anonymous");
    assert!(
        matches!(&e, OciError::Unauthorized { detail, .. } if detail.contains("no credentials")),
        "{e}"
    );
    let wrong = Registry::new(&reg.host, Some(Credentials::new(&reg.user, "nope")), &options(&reg)).expect("client");
    let e = pull(&wrong).expect_err("wrong password");
    assert!(
        matches!(&e, OciError::Unauthorized { detail, .. } if detail.contains("refused the credentials")),
        "{e}"
    );
    let untrusted = Registry::new(
        &reg.host,
        Some(Credentials::new(&reg.user, &reg.password)),
        &ClientOptions::default(),
    )
    .expect("client");
    let e = pull(&untrusted).expect_err("no CA");
    assert!(
        matches!(&e, OciError::Http { message, .. } if message.to_lowercase().contains("certificate")),
        "{e}"
    );
    let from_file = spo_oci::auth::load_docker_credentials(&reg.docker_config(), &reg.host)
        .expect("docker config")
        .expect("an entry for the registry");
    let c = Registry::new(&reg.host, Some(from_file), &options(&reg)).expect("client");
    assert!(pull(&c).is_ok());
}

#[test]
fn signatures_are_made_checked_and_refused_when_missing_foreign_or_moved() {
    let Some(reg) = TestRegistry::require() else { return };
    let rt = rt();
    let c = client(&reg);
    let keys = tempfile::tempdir().expect("tempdir");
    let (signing, public) = openssl_keys(keys.path(), "team");
    let (_, stranger) = openssl_keys(keys.path(), "stranger");
    let signed = reference(&reg, "sig/signed:v1");
    let files = [ProfileFile {
        platform: amd64(),
        yaml: seccomp("s", &["read"]),
    }];
    let pushed = rt
        .block_on(spo_oci::push(
            &c,
            &signed,
            &files,
            &PushOptions {
                sign_with: Some(&signing),
                ..PushOptions::default()
            },
        ))
        .expect("signed push");
    assert_eq!(
        pushed.signature.as_deref(),
        Some(signature_tag(&pushed.digest).as_str())
    );
    let verify = |r: &Reference, v: Verification| rt.block_on(spo_oci::pull(&c, r, &amd64(), &v));

    let pulled = verify(&signed, Verification::Keys(vec![stranger.clone(), public.clone()])).expect("signed pull");
    assert_eq!(pulled.signed_by, Some(public.fingerprint()));
    let e = verify(&signed, Verification::Keys(vec![stranger.clone()])).expect_err("foreign key");
    assert!(
        matches!(&e, OciError::Unsigned { reason, .. } if reason.contains("none of the given keys")),
        "{e}"
    );
    let e = verify(
        &signed,
        Verification::Keyless {
            identity: ".*".into(),
            issuer: ".*".into(),
        },
    )
    .expect_err("keyless");
    assert!(
        matches!(&e, OciError::Unsigned { reason, .. } if reason.contains("keyless")),
        "{e}"
    );

    // Unsigned.
    let plain = reference(&reg, "sig/plain:v1");
    rt.block_on(spo_oci::push(&c, &plain, &files, &PushOptions::default()))
        .expect("push");
    let e = verify(&plain, Verification::Keys(vec![public.clone()])).expect_err("unsigned");
    assert!(
        matches!(&e, OciError::Unsigned { reason, .. } if reason.contains("not signed")),
        "{e}"
    );
    assert!(verify(&plain, Verification::Disabled).is_ok());

    // The tag moved to other content: the signature of the old digest does not cover it.
    let other = [ProfileFile {
        platform: amd64(),
        yaml: seccomp("s", &["read", "ptrace"]),
    }];
    let moved = rt
        .block_on(spo_oci::push(&c, &signed, &other, &PushOptions::default()))
        .expect("push over the tag");
    let e = verify(&signed, Verification::Keys(vec![public.clone()])).expect_err("moved tag");
    assert!(matches!(&e, OciError::Unsigned { .. }), "{e}");
    // A signature copied onto the other digest names the digest it was made for.
    let sig = rt
        .block_on(c.manifest("sig/signed", &signature_tag(&pushed.digest)))
        .expect("signature manifest");
    rt.block_on(c.put_manifest(
        "sig/signed",
        &signature_tag(&moved.digest),
        MANIFEST_MEDIA_TYPE,
        &sig.body,
    ))
    .expect("copy the signature");
    let e = verify(&signed, Verification::Keys(vec![public.clone()])).expect_err("copied signature");
    assert!(
        matches!(&e, OciError::Unsigned { reason, .. } if reason.contains(&format!("is for {}", pushed.digest))),
        "{e}"
    );
    // The old digest is still signed, and a second signature is added, not replacing.
    assert!(
        verify(
            &signed.with_digest(&pushed.digest),
            Verification::Keys(vec![public.clone()])
        )
        .is_ok()
    );
    let (second, second_public) = openssl_keys(keys.path(), "second");
    rt.block_on(spo_oci::sign_artifact(&c, &signed, &pushed.digest, &second))
        .expect("second signature");
    for key in [public, second_public] {
        let by_digest = signed.with_digest(&pushed.digest);
        assert!(verify(&by_digest, Verification::Keys(vec![key])).is_ok());
    }
}

#[test]
fn upstreams_artifacts_read_and_other_artifacts_are_refused() {
    let Some(reg) = TestRegistry::require() else { return };
    let rt = rt();
    let c = client(&reg);
    let profile = seccomp("up", &["read"]);
    // As upstream pushed before September 2023: the artifact type as the config's media
    // type, one platform-less layer named profile.yaml.
    rt.block_on(c.push_blob("up/old", b"{}")).expect("config");
    let layer_digest = rt.block_on(c.push_blob("up/old", &profile)).expect("layer");
    let old = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": ARTIFACT_TYPE, "digest": spo_oci::artifact::sha256_digest(b"{}"), "size": 2},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": profile.len(),
                    "annotations": {TITLE_ANNOTATION: "profile.yaml"}}],
        "annotations": {"org.opencontainers.image.created": "2023-04-28T08:59:17Z"}
    });
    rt.block_on(c.put_manifest("up/old", "v0", MANIFEST_MEDIA_TYPE, old.to_string().as_bytes()))
        .expect("put");
    let pulled = rt
        .block_on(spo_oci::pull(
            &c,
            &reference(&reg, "up/old:v0"),
            &arm64(),
            &Verification::Disabled,
        ))
        .expect("old shape");
    assert_eq!(pulled.profile, profile);
    assert_eq!(pulled.title.as_deref(), Some("profile.yaml"));

    // A container image's manifest.
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    rt.block_on(c.push_blob("up/image", config)).expect("config");
    let image = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": Descriptor::of("application/vnd.oci.image.config.v1+json", config),
        "layers": []
    });
    rt.block_on(c.put_manifest("up/image", "v1", MANIFEST_MEDIA_TYPE, image.to_string().as_bytes()))
        .expect("put image");
    let e = rt
        .block_on(spo_oci::pull(
            &c,
            &reference(&reg, "up/image:v1"),
            &amd64(),
            &Verification::Disabled,
        ))
        .expect_err("image");
    assert!(
        matches!(&e, OciError::NotAProfileArtifact(r) if r.contains("container image")),
        "{e}"
    );

    // A profile over the pull limit is refused before it is fetched.
    rt.block_on(c.push_blob("up/big", EMPTY_CONFIG)).expect("config");
    let _ = EMPTY_CONFIG_MEDIA_TYPE;
    let big = [ProfileFile {
        platform: amd64(),
        yaml: seccomp("big", &["read"; 2000]),
    }];
    rt.block_on(spo_oci::push(
        &c,
        &reference(&reg, "up/big"),
        &big,
        &PushOptions::default(),
    ))
    .expect("push big");
    let small = Registry::new(
        &reg.host,
        Some(Credentials::new(&reg.user, &reg.password)),
        &ClientOptions {
            limits: Limits {
                profile_bytes: 4096,
                ..Limits::default()
            },
            ..options(&reg)
        },
    )
    .expect("client");
    let e = rt
        .block_on(spo_oci::pull(
            &small,
            &reference(&reg, "up/big"),
            &amd64(),
            &Verification::Disabled,
        ))
        .expect_err("too big");
    assert!(matches!(e, OciError::TooLarge { limit: 4096, .. }), "{e}");
}
