//! `cargo xtask public-api [--check]`: the public API of every library crate, one item per
//! line, in `api/<crate>.txt`, so that a change to what other tools can depend on is a visible
//! diff (and, with `--check`, a CI failure until the snapshot is regenerated and committed).
//!
//! The list comes from rustdoc's JSON output, read by the `public-api` crate (the library
//! behind cargo-public-api). Stable rustdoc writes that JSON only behind an unstable flag, so
//! the rustdoc run sets `RUSTC_BOOTSTRAP=1` for itself (decisions.md). Blanket impls
//! (`impl<T> Into<U> for T`...) are left out: they are the standard library's, not ours; auto
//! traits (`Send`, `Sync`...) and derived impls stay, since losing one breaks dependents.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The crates other tools depend on.
const LIBRARIES: &[&str] = &[
    "spo-model",
    "spo-hostio",
    "spo-seccomp",
    "spo-selinux",
    "spo-apparmor",
    "spo-record",
    "spo-enrich",
    "spo-oci",
];

/// The public API of `krate`, one item per line, sorted.
fn public_api(root: &Path, krate: &str) -> Result<String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["rustdoc", "--quiet", "--locked", "--lib", "-p", krate, "--"])
        .args(["-Zunstable-options", "--output-format", "json"])
        .status()
        .with_context(|| format!("running rustdoc for {krate}"))?;
    if !status.success() {
        bail!("rustdoc for {krate} failed ({status})");
    }
    let json = target.join("doc").join(format!("{}.json", krate.replace('-', "_")));
    let api = public_api::Builder::from_rustdoc_json(&json)
        .omit_blanket_impls(true)
        .build()
        .with_context(|| format!("reading {}", json.display()))?;
    let mut out = String::new();
    for item in api.items() {
        out.push_str(&item.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// Writes `api/<crate>.txt` for every library crate, or with `check` compares them.
pub fn run(root: &Path, check: bool) -> Result<()> {
    let dir = root.join("api");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut drift = Vec::new();
    for krate in LIBRARIES {
        let want = public_api(root, krate)?;
        let path = dir.join(format!("{krate}.txt"));
        if check {
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                let (have, want): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
                let gone: Vec<&&str> = have.iter().filter(|l| !want.contains(l)).collect();
                let new: Vec<&&str> = want.iter().filter(|l| !have.contains(l)).collect();
                let mut text = format!("{krate}: {} items gone, {} new", gone.len(), new.len());
                for l in gone.iter().take(20) {
                    text.push_str(&format!("\n    - {l}"));
                }
                for l in new.iter().take(20) {
                    text.push_str(&format!("\n    + {l}"));
                }
                drift.push(text);
            }
        } else {
            let tmp = dir.join(format!(".{krate}.txt.tmp"));
            std::fs::write(&tmp, &want).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
            println!("wrote {} ({} items)", path.display(), want.lines().count());
        }
    }
    if drift.is_empty() {
        if check {
            println!("api/ is up to date ({} crates)", LIBRARIES.len());
        }
        Ok(())
    } else {
        bail!(
            "the public API changed:\n  {}\nif that is intended, run `cargo xtask public-api` and commit api/ (a removed or changed item breaks dependents: say so in the commit)",
            drift.join("\n  ")
        )
    }
}
