//! `spoc push` and `spoc pull`: profiles as OCI artifacts in a registry, the Security Profiles
//! Operator's format (either tool pulls what the other pushed), with cosign-compatible
//! signatures made and checked with a key pair. A thin shell over spo-oci.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use spo_oci::{
    ClientOptions, Credentials, Platform, ProfileFile, PublicKey, PushOptions, Reference, Registry, SigningKeyPair,
    Verification,
};

use super::input::read_input;
use super::output::{Format, clean, emit, exit};

pub const PUSH_EXAMPLES: &str = "\
Examples:
  spoc push ghcr.io/team/profiles:web -f web.yaml
  spoc push r.io/p:v2 -f amd64.yaml -p linux/amd64 -f arm64.yaml -p linux/arm64
  PASSWORD=... spoc push -u me r.io/p:v1 -f p.yaml --sign-key cosign-pkcs8.key
  spoc push --ca-file ca.pem 127.0.0.1:5000/p:v1 -f p.yaml --format json

Each -f PROFILE is one SeccompProfile, SelinuxProfile, RawSelinuxProfile or AppArmorProfile
(validated before anything is sent); -p gives its platform, in order (os/arch[/variant]); one
profile without -p is for this machine's platform. The artifact is the Security Profiles
Operator's: one manifest, one layer per platform named profile-<os>-<arch>.yaml.

Credentials: -u USER with the password in the PASSWORD environment variable or on standard
input (--password-stdin), else the docker config file (~/.docker/config.json or
$DOCKER_CONFIG/config.json, or --docker-config). --sign-key signs the pushed digest as cosign
does (tag sha256-<hex>.sig) with a PEM PKCS#8 P-256 key.

--format json prints {\"reference\", \"digest\", \"layers\": [{\"platform\", \"title\", \"digest\",
\"size\", \"kind\"}], \"signature\"}.";

pub const PULL_EXAMPLES: &str = "\
Examples:
  spoc pull r.io/p:v1 --verify-key cosign.pub -o profile.yaml
  spoc pull r.io/p@sha256:... --disable-signature-verification
  spoc pull r.io/p:v1 -p linux/arm64 --verify-key team.pub --format json -o p.yaml

Signatures are checked by default: --verify-key KEY (PEM public key, as cosign.pub; repeat for
several) accepts a cosign signature by any of the keys; without a key the check is upstream's
keyless one, which needs Sigstore's services and therefore refuses every artifact here; say
--disable-signature-verification to take unsigned artifacts.

The tag is resolved once: the signature is checked for that digest and the profile read from
it, so a tag moved meanwhile cannot slip in other content. The profile goes to -o FILE
(standard output by default), exactly as pushed.

--format json prints {\"reference\", \"digest\", \"kind\", \"title\", \"signedBy\", \"output\"} on
standard output (the profile then needs -o).";

/// How to reach the registry, shared by push and pull.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// User name for the registry (the password comes from PASSWORD or --password-stdin).
    #[arg(long, short)]
    username: Option<String>,
    /// Read the password from standard input (one line).
    #[arg(long)]
    password_stdin: bool,
    /// Docker config file to read credentials from (default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Trust this CA certificate (PEM) besides the system's; repeatable.
    #[arg(long, value_name = "FILE")]
    ca_file: Vec<PathBuf>,
    /// Speak plain HTTP: only for a registry on this machine (localhost, 127.0.0.1).
    #[arg(long)]
    plain_http: bool,
    /// Seconds each registry request may take.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Where to push: REGISTRY/REPOSITORY:TAG (or REGISTRY/REPOSITORY for tag `latest`).
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// A profile to push (`-` reads standard input); repeat with -p for each platform.
    #[arg(long = "profiles", short = 'f', value_name = "PROFILE", required = true)]
    profiles: Vec<PathBuf>,
    /// The platform of each -f, in order: os/arch, os/arch/variant, optionally :os_version.
    #[arg(long = "platforms", short = 'p', value_name = "PLATFORM")]
    platforms: Vec<String>,
    /// KEY:VALUE annotation for every layer; repeatable.
    #[arg(long = "annotations", short = 'a', value_name = "KEY:VALUE")]
    annotations: Vec<String>,
    /// Sign the pushed digest with this PEM PKCS#8 P-256 private key (cosign's format).
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY with :TAG, @sha256:DIGEST or both (tag `latest` when neither).
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// Write the profile to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The platform to pull (default: this machine's).
    #[arg(long, short, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Accept a signature by this PEM public key (cosign.pub); repeatable.
    #[arg(long, value_name = "FILE")]
    verify_key: Vec<PathBuf>,
    /// Take the artifact without checking signatures.
    #[arg(long, short = 's', env = "DISABLE_SIGNATURE_VERIFICATION")]
    disable_signature_verification: bool,
    /// Keyless check: signer identities allowed (upstream's flag; keyless needs Sigstore).
    #[arg(long, short = 'i', default_value = ".*", env = "ALLOWED_IDENTITIES_REGEXP")]
    allowed_identity_regexp: String,
    /// Keyless check: OIDC issuers allowed (upstream's flag; keyless needs Sigstore).
    #[arg(long, default_value = ".*", env = "ALLOWED_OIDC_ISSUER_REGEXP")]
    allowed_oidc_issuer_regexp: String,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// The password from PASSWORD or standard input.
fn password(args: &RegistryArgs) -> Result<Option<String>> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .take(64 << 10)
            .read_to_string(&mut line)
            .context("reading the password from standard input")?;
        return Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()));
    }
    Ok(std::env::var("PASSWORD").ok())
}

fn connect(reference: &Reference, args: &RegistryArgs, stdin_used: bool) -> Result<Registry> {
    let loopback = {
        let host = reference
            .registry()
            .rsplit_once(':')
            .map_or(reference.registry(), |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1")
    };
    if args.plain_http && !loopback {
        bail!(
            "--plain-http is only for a registry on this machine (localhost, 127.0.0.1), not {}",
            clean(reference.registry())
        );
    }
    if args.password_stdin && stdin_used {
        bail!("--password-stdin cannot be used when a profile is read from standard input");
    }
    let credentials = match (&args.username, password(args)?) {
        (Some(user), Some(pass)) => Some(Credentials::new(user, pass)),
        (Some(_), None) => bail!("-u/--username needs the password in PASSWORD or --password-stdin"),
        (None, Some(_)) if args.password_stdin => bail!("--password-stdin needs -u/--username"),
        (None, _) => {
            let path = args.docker_config.clone().or_else(spo_oci::auth::docker_config_path);
            match path {
                Some(p) => spo_oci::auth::load_docker_credentials(&p, reference.registry())?,
                None => None,
            }
        }
    };
    let options = ClientOptions {
        ca_files: args.ca_file.clone(),
        plain_http: args.plain_http,
        request_timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        login_hint: Some(
            "log in with -u/--username and PASSWORD or --password-stdin, or a docker config (--docker-config)".into(),
        ),
        ..ClientOptions::default()
    };
    Ok(Registry::new(reference.api_host(), credentials, &options)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn parse_reference(input: &str) -> Result<Reference> {
    Ok(Reference::parse(input.strip_prefix("oci://").unwrap_or(input))?)
}

/// Pairs profiles with platforms as upstream's spoc does: one profile may go without a
/// platform (this machine's); several need one each; no platform twice.
pub fn pair_platforms(profiles: usize, platforms: &[String]) -> Result<Vec<Platform>> {
    if platforms.is_empty() {
        if profiles > 1 {
            bail!("multiple profiles provided but no platforms set (give -p for each -f)");
        }
        return Ok(vec![Platform::host()]);
    }
    if platforms.len() != profiles {
        bail!(
            "number of profiles ({profiles}) and platforms ({}) do not match",
            platforms.len()
        );
    }
    let parsed: Vec<Platform> = platforms.iter().map(|p| Platform::parse(p)).collect::<Result<_, _>>()?;
    let mut names: Vec<String> = parsed.iter().map(Platform::file_name).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("duplicate platforms defined: {}", w[0]);
    }
    Ok(parsed)
}

/// `KEY:VALUE` annotations; a value may hold more colons (upstream drops them silently).
pub fn parse_annotations(annotations: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in annotations {
        let Some((k, v)) = a.split_once(':') else {
            bail!("wrong annotation format: {} (KEY:VALUE)", clean(a));
        };
        let (k, v) = (k.trim(), v.trim());
        spo_oci::artifact::check_annotation(k, v)?;
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn push(args: &PushArgs) -> Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    let platforms = pair_platforms(args.profiles.len(), &args.platforms)?;
    let annotations = parse_annotations(&args.annotations)?;
    let mut files = Vec::with_capacity(args.profiles.len());
    for (path, platform) in args.profiles.iter().zip(platforms) {
        let yaml = read_input(path)?;
        spo_oci::artifact::profile_kind(&yaml).with_context(|| format!("{}", clean(&path.display().to_string())))?;
        files.push(ProfileFile { platform, yaml });
    }
    let key = args.sign_key.as_deref().map(SigningKeyPair::from_file).transpose()?;
    let stdin_used = args.profiles.iter().any(|p| p.as_os_str() == "-");
    let registry = connect(&reference, &args.registry, stdin_used)?;
    let options = PushOptions {
        annotations,
        sign_with: key.as_ref(),
        created: now_rfc3339(),
    };
    let pushed = runtime()?
        .block_on(spo_oci::push(&registry, &reference, &files, &options))
        .with_context(|| format!("pushing {}", clean(&reference.to_string())))?;
    match args.format.serialize(&pushed)? {
        Some(doc) => emit(None, doc.as_bytes())?,
        None => {
            let mut text = format!("pushed {}\n", clean(&pushed.reference));
            for l in &pushed.layers {
                text.push_str(&format!(
                    "  {} {} {} ({} bytes, {})\n",
                    clean(&l.platform),
                    clean(&l.title),
                    l.digest,
                    l.size,
                    l.kind
                ));
            }
            if let Some(sig) = &pushed.signature {
                text.push_str(&format!("  signed: {sig}\n"));
            }
            emit(None, text.as_bytes())?;
        }
    }
    Ok(ExitCode::from(exit::OK))
}

/// What `spoc pull --format json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PullReport {
    reference: String,
    digest: String,
    kind: &'static str,
    title: Option<String>,
    signed_by: Option<String>,
    output: Option<String>,
}

fn verification(args: &PullArgs) -> Result<Verification> {
    if args.disable_signature_verification {
        if !args.verify_key.is_empty() {
            bail!("--verify-key and --disable-signature-verification contradict each other");
        }
        return Ok(Verification::Disabled);
    }
    if args.verify_key.is_empty() {
        return Ok(Verification::Keyless {
            identity: args.allowed_identity_regexp.clone(),
            issuer: args.allowed_oidc_issuer_regexp.clone(),
        });
    }
    let keys: Vec<PublicKey> = args
        .verify_key
        .iter()
        .map(|p| PublicKey::from_file(p))
        .collect::<Result<_, _>>()?;
    Ok(Verification::Keys(keys))
}

pub fn pull(args: &PullArgs) -> Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let verification = verification(args)?;
    if args.format != Format::Text && args.output.as_deref().is_none_or(|o| o == Path::new("-")) {
        bail!("--format json/yaml prints the report on standard output; give -o FILE for the profile");
    }
    let registry = connect(&reference, &args.registry, false)?;
    let pulled = runtime()?
        .block_on(spo_oci::pull(&registry, &reference, &platform, &verification))
        .with_context(|| format!("pulling {}", clean(&reference.to_string())))?;
    emit(args.output.as_deref(), &pulled.profile)?;
    let report = PullReport {
        reference: pulled.reference.to_string(),
        digest: pulled.digest.clone(),
        kind: pulled.kind.as_str(),
        title: pulled.title.clone(),
        signed_by: pulled.signed_by.clone(),
        output: args.output.as_ref().map(|p| p.display().to_string()),
    };
    match args.format.serialize(&report)? {
        Some(doc) => emit(None, doc.as_bytes())?,
        None => eprintln!(
            "pulled {} ({}, {}{})",
            clean(&report.reference),
            report.kind,
            clean(report.title.as_deref().unwrap_or("untitled layer")),
            match &report.signed_by {
                Some(k) => format!(", signed by key {k}"),
                None => ", signature not checked".to_owned(),
            }
        ),
    }
    Ok(ExitCode::from(exit::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_pair_as_upstream() {
        assert_eq!(pair_platforms(1, &[]).expect("host"), vec![Platform::host()]);
        assert!(
            pair_platforms(2, &[])
                .expect_err("none")
                .to_string()
                .contains("no platforms set")
        );
        assert!(
            pair_platforms(2, &["linux/amd64".into()])
                .expect_err("count")
                .to_string()
                .contains("do not match")
        );
        assert!(
            pair_platforms(2, &["linux/amd64".into(), "linux/amd64".into()])
                .expect_err("dup")
                .to_string()
                .contains("duplicate")
        );
        assert_eq!(
            pair_platforms(2, &["linux/amd64".into(), "linux/arm64".into()])
                .expect("ok")
                .len(),
            2
        );
    }

    #[test]
    fn annotations_keep_colons_in_values() {
        let a = parse_annotations(&["url: https://x:1/y".into()]).expect("ok");
        assert_eq!(a["url"], "https://x:1/y");
        assert!(parse_annotations(&["novalue".into()]).is_err());
        assert!(parse_annotations(&["org.opencontainers.image.title:x".into()]).is_err());
    }
}
