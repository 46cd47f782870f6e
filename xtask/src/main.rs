//! Repository chores. `cargo xtask crds` regenerates `deploy/crds/`; `cargo xtask crds --check`
//! fails when the checked-in files differ from what the Rust types generate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["crds"] => write_crds(&root.join("deploy/crds")),
        ["crds", "--check"] => check_crds(&root.join("deploy/crds")),
        _ => bail!("usage: cargo xtask crds [--check]"),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn write_crds(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = spo_model::crd::crd_files()?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".yaml") && !files.contains_key(&name) {
            std::fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
        }
    }
    for (name, text) in &files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    }
    println!("wrote {} files to {}", files.len(), dir.display());
    Ok(())
}

fn check_crds(dir: &Path) -> Result<()> {
    let files = spo_model::crd::crd_files()?;
    let mut drift = Vec::new();
    for (name, text) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(current) if &current == text => {}
            Ok(_) => drift.push(format!("{name} differs")),
            Err(_) => drift.push(format!("{name} is missing")),
        }
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !files.contains_key(&name) {
            drift.push(format!("{name} is not generated any more"));
        }
    }
    if drift.is_empty() {
        println!("deploy/crds is up to date ({} files)", files.len());
        Ok(())
    } else {
        bail!(
            "deploy/crds has drifted from the Rust types:\n  {}\nrun `cargo xtask crds` and commit the result",
            drift.join("\n  ")
        )
    }
}
