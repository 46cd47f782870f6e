//! spoc's artifacts against ORAS, the library upstream SPO pushes and pulls its profiles with,
//! through the oras CLI (v1.3.6, built from Go modules by `e2e/node/build.sh oras`) and a real
//! registry (Debian's docker-registry with TLS and htpasswd, `spo_testkit::registry`):
//! what spoc pushes, oras pulls as the same files under upstream's names, in upstream's
//! manifest shape; what oras pushes in upstream's shape, spoc pulls for the right platform.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use spo_testkit::registry::Registry;

mod common;
use common::text;

/// The oras CLI, built (or found fresh in the cache) by `e2e/node/build.sh oras`; `None`
/// after saying why when there is no Go toolchain, which CI does not allow.
fn oras() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if Command::new("go").arg("version").output().is_err() {
        let reason = "no go toolchain to build the oras CLI";
        assert!(
            std::env::var_os("CI").is_none(),
            "{reason}; CI is set, so this test may not be skipped"
        );
        eprintln!("skipped: {reason}");
        return None;
    }
    let out = Command::new(root.join("e2e/node/build.sh"))
        .arg("oras")
        .stdin(Stdio::null())
        .output()
        .expect("running e2e/node/build.sh oras");
    assert!(out.status.success(), "e2e/node/build.sh oras: {}", text(&out));
    let cache = String::from_utf8(out.stdout).expect("utf-8");
    let bin = Path::new(cache.trim()).join("oras");
    assert!(bin.is_file(), "{} was not built", bin.display());
    Some(bin)
}

struct Tools<'a> {
    reg: &'a Registry,
    oras: PathBuf,
    /// `HOME` for both tools: a docker config with the registry's login, nothing else.
    home: &'a Path,
}

impl Tools<'_> {
    fn oras(&self, args: &[&str], dir: &Path) -> Output {
        Command::new(&self.oras)
            .args(args)
            .args(["--ca-file", self.reg.ca.to_str().expect("utf-8")])
            .args(["--registry-config", self.reg.docker_config().to_str().expect("utf-8")])
            .current_dir(dir)
            .env("HOME", self.home)
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("running oras")
    }

    fn spoc(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_spoc"))
            .args(args)
            .args(["--ca-file", self.reg.ca.to_str().expect("utf-8")])
            .args(["--docker-config", self.reg.docker_config().to_str().expect("utf-8")])
            .env("HOME", self.home)
            .env_remove("PASSWORD")
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("running spoc")
    }
}

fn profile(name: &str, names: &str) -> String {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: {name}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n    - action: SCMP_ACT_ALLOW\n      names: [{names}]\n"
    )
}

#[test]
fn oras_and_spoc_read_each_others_artifacts() {
    let Some(reg) = Registry::require() else { return };
    let Some(oras) = oras() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let tools = Tools {
        reg: &reg,
        oras,
        home: &home,
    };
    let (private, _) = spo_testkit::openssl_p256_keys(dir.path(), "team");

    // 1. spoc pushes two platforms, signed; oras fetches upstream's manifest shape and pulls
    //    each profile under upstream's file name, byte for byte.
    let amd64 = profile("web", "read, write, exit_group");
    let arm64 = profile("web", "read, write, openat, exit_group");
    let (amd64_file, arm64_file) = (dir.path().join("amd64.yaml"), dir.path().join("arm64.yaml"));
    std::fs::write(&amd64_file, &amd64).expect("profile");
    std::fs::write(&arm64_file, &arm64).expect("profile");
    let reference = format!("{}/interop/web:v1", reg.host);
    let out = tools.spoc(&[
        "push",
        &reference,
        "-f",
        amd64_file.to_str().expect("utf-8"),
        "-p",
        "linux/amd64",
        "-f",
        arm64_file.to_str().expect("utf-8"),
        "-p",
        "linux/arm64",
        "--sign-key",
        private.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "spoc push: {}", text(&out));
    let pushed: Value = serde_json::from_slice(&out.stdout).expect("push json");
    let digest = pushed["digest"].as_str().expect("digest");

    let out = tools.oras(&["manifest", "fetch", &reference], dir.path());
    assert!(out.status.success(), "oras manifest fetch: {}", text(&out));
    let manifest: Value = serde_json::from_slice(&out.stdout).expect("manifest json");
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest}"
    );
    assert_eq!(
        manifest["artifactType"], "application/vnd.unknown.config.v1+json",
        "{manifest}"
    );
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.oci.empty.v1+json",
        "{manifest}"
    );
    let titles: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .expect("title")
        })
        .collect();
    assert_eq!(titles, ["profile-linux-amd64.yaml", "profile-linux-arm64.yaml"]);

    let pulled = dir.path().join("oras-pulled");
    std::fs::create_dir(&pulled).expect("dir");
    let out = tools.oras(&["pull", &reference, "-o", pulled.to_str().expect("utf-8")], dir.path());
    assert!(out.status.success(), "oras pull: {}", text(&out));
    for (file, content) in [
        ("profile-linux-amd64.yaml", &amd64),
        ("profile-linux-arm64.yaml", &arm64),
    ] {
        let got = std::fs::read_to_string(pulled.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(&got, content, "{file}");
    }

    // The signature is where cosign looks for it, in cosign's shape.
    let signature = format!("{}/interop/web:{}.sig", reg.host, digest.replace(':', "-"));
    let out = tools.oras(&["manifest", "fetch", &signature], dir.path());
    assert!(out.status.success(), "oras manifest fetch {signature}: {}", text(&out));
    let sig: Value = serde_json::from_slice(&out.stdout).expect("signature json");
    let layer = &sig["layers"][0];
    assert_eq!(
        layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json",
        "{sig}"
    );
    assert!(
        layer["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{sig}"
    );

    // 2. oras pushes in upstream's shape (what SPO's spoc makes with ORAS's library: the
    //    unknown-config artifact type, one file per platform under upstream's names); spoc
    //    pulls each platform's file.
    let upload = dir.path().join("upload");
    std::fs::create_dir(&upload).expect("dir");
    let (oras_amd64, oras_arm64) = (profile("db", "read, close"), profile("db", "read, close, openat"));
    std::fs::write(upload.join("profile-linux-amd64.yaml"), &oras_amd64).expect("file");
    std::fs::write(upload.join("profile-linux-arm64.yaml"), &oras_arm64).expect("file");
    let oras_reference = format!("{}/interop/db:v1", reg.host);
    let out = tools.oras(
        &[
            "push",
            &oras_reference,
            "--artifact-type",
            "application/vnd.unknown.config.v1+json",
            "profile-linux-amd64.yaml",
            "profile-linux-arm64.yaml",
        ],
        &upload,
    );
    assert!(out.status.success(), "oras push: {}", text(&out));
    for (platform, content) in [("linux/amd64", &oras_amd64), ("linux/arm64", &oras_arm64)] {
        let file = dir.path().join(format!("spoc-{}.yaml", platform.replace('/', "-")));
        let out = tools.spoc(&[
            "pull",
            &oras_reference,
            "-p",
            platform,
            "--disable-signature-verification",
            "-o",
            file.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "spoc pull -p {platform}: {}", text(&out));
        assert_eq!(&std::fs::read_to_string(&file).expect("pulled"), content, "{platform}");
    }

    // 3. Unsigned by oras, so a pull that checks signatures refuses it, saying so.
    let out = tools.spoc(&[
        "pull",
        &oras_reference,
        "--verify-key",
        dir.path().join("team.pub").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not signed"),
        "{}",
        text(&out)
    );
}
