//! Push a SeccompProfile to a registry as a signed OCI artifact with spo-oci, pull it back
//! verified with the public key, and see a pull checked with another key refused. The
//! artifact is the Security Profiles Operator's, so its `spoc pull` reads it too.
//!
//! The registry comes from the environment, as `e2e/start-registry.sh DIR` writes it in
//! `DIR/registry.env`: `SPO_REGISTRY` (host:port), `SPO_REGISTRY_CA` (its CA, PEM),
//! `SPO_REGISTRY_USER`, `SPO_REGISTRY_PASSWORD`. Keys are made with openssl.
//!
//! ```text
//! e2e/start-registry.sh /tmp/reg && set -a && . /tmp/reg/registry.env && set +a
//! cargo run -p spo-examples --example oci_round_trip
//! e2e/stop-registry.sh /tmp/reg
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use spo_oci::{
    ClientOptions, Credentials, Platform, ProfileFile, PublicKey, PushOptions, Reference, Registry, SigningKeyPair,
    Verification,
};

const PROFILE: &str = "\
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: web
spec:
  defaultAction: SCMP_ACT_ERRNO
  syscalls:
    - action: SCMP_ACT_ALLOW
      names: [read, write, openat, close, exit_group]
";

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (see e2e/start-registry.sh)"))
}

/// A P-256 key pair made by openssl: (private key file, public key).
fn openssl_key(dir: &Path, name: &str) -> Result<(PathBuf, PublicKey)> {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let run = |args: &[&str], out: &Path| -> Result<()> {
        let status = Command::new("openssl")
            .args(args)
            .arg(out)
            .status()
            .context("running openssl")?;
        if !status.success() {
            bail!("openssl {args:?} failed");
        }
        Ok(())
    };
    run(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ],
        &private,
    )?;
    let private_s = private.to_str().context("key path is not UTF-8")?;
    run(&["pkey", "-in", private_s, "-pubout", "-out"], &public)?;
    Ok((private, PublicKey::from_file(&public)?))
}

fn main() -> Result<()> {
    let host = env("SPO_REGISTRY")?;
    let options = ClientOptions {
        ca_files: vec![env("SPO_REGISTRY_CA")?.into()],
        ..ClientOptions::default()
    };
    let credentials = Credentials::new(env("SPO_REGISTRY_USER")?, env("SPO_REGISTRY_PASSWORD")?);
    let registry = Registry::new(&host, Some(credentials), &options)?;
    let reference = Reference::parse(&format!("{host}/examples/web:v1"))?;

    let keys = tempfile::tempdir()?;
    let (team_key, team_pub) = openssl_key(keys.path(), "team")?;
    let (_, other_pub) = openssl_key(keys.path(), "other")?;
    let signer = SigningKeyPair::from_file(&team_key)?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let files = [ProfileFile {
        platform: Platform::host(),
        yaml: PROFILE.as_bytes().to_vec(),
    }];
    let pushed = rt.block_on(spo_oci::push(
        &registry,
        &reference,
        &files,
        &PushOptions {
            sign_with: Some(&signer),
            ..PushOptions::default()
        },
    ))?;
    println!("pushed {}", pushed.reference);
    for layer in &pushed.layers {
        println!(
            "  {} {} ({} bytes, {})",
            layer.platform, layer.title, layer.size, layer.kind
        );
    }

    let pulled = rt.block_on(spo_oci::pull(
        &registry,
        &reference,
        &Platform::host(),
        &Verification::Keys(vec![team_pub.clone()]),
    ))?;
    if pulled.profile != PROFILE.as_bytes() || pulled.digest != pushed.digest {
        bail!("pulled something else than was pushed: {}", pulled.digest);
    }
    let signer_fingerprint = pulled.signed_by.context("pulled without a signature check")?;
    if signer_fingerprint != team_pub.fingerprint() {
        bail!("signed by {signer_fingerprint}, not by the team's key");
    }
    println!(
        "pulled {} {}, signed by key {signer_fingerprint}",
        pulled.kind,
        pulled.title.as_deref().unwrap_or("(untitled)")
    );

    match rt.block_on(spo_oci::pull(
        &registry,
        &reference,
        &Platform::host(),
        &Verification::Keys(vec![other_pub]),
    )) {
        Ok(_) => bail!("a pull checked with another key was accepted"),
        Err(e) => println!("checked with another key: refused: {e}"),
    }
    Ok(())
}
