//! Repository chores. `cargo xtask crds` regenerates `deploy/crds/`; `cargo xtask crds --check`
//! fails when the checked-in files differ from what the Rust types generate.
//! `cargo xtask syscalls` regenerates `spo-seccomp/src/syscalls/generated.rs` from the
//! linux-raw-sys sources; `cargo xtask syscalls --check` fails when the checked-in file differs.
//! `cargo xtask public-api [--check]` snapshots the library crates' public API in `api/`.

mod public_api;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["crds"] => write_crds(&root.join("deploy/crds")),
        ["crds", "--check"] => check_crds(&root.join("deploy/crds")),
        ["syscalls"] => write_syscalls(&root),
        ["syscalls", "--check"] => check_syscalls(&root),
        ["public-api"] => public_api::run(&root, false),
        ["public-api", "--check"] => public_api::run(&root, true),
        _ => bail!(
            "usage: cargo xtask crds [--check] | cargo xtask syscalls [--check] | cargo xtask public-api [--check]"
        ),
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

/// The linux-raw-sys release the syscall tables come from; `xtask/Cargo.toml` pins the same one.
const LINUX_RAW_SYS_VERSION: &str = "0.12.1";

/// Where the generated syscall tables live, relative to the repository root.
const SYSCALLS_FILE: &str = "spo-seccomp/src/syscalls/generated.rs";

/// The linux-raw-sys architectures the tables come from: (static name, `src/` directory, ABI).
/// Sorted by static name so the generated file is in a stable order.
const SYSCALL_SOURCES: &[(&str, &str, &str)] = &[
    ("AARCH64", "aarch64", "aarch64"),
    ("ARM", "arm", "arm EABI, private calls at 0x0f0000+"),
    ("MIPS", "mips", "mips o32 (4000+)"),
    ("MIPS64", "mips64", "mips n64 (5000+)"),
    ("POWERPC", "powerpc", "32-bit powerpc"),
    ("POWERPC64", "powerpc64", "64-bit powerpc, both endians"),
    ("RISCV64", "riscv64", "riscv64"),
    ("S390X", "s390x", "s390x"),
    ("X32", "x32", "x32, `__X32_SYSCALL_BIT` set"),
    ("X86", "x86", "i386"),
    ("X86_64", "x86_64", "x86_64"),
];

/// Syscalls newer than linux-raw-sys's headers: (`src/` directory, name, number, where it is
/// from). Each must be absent from linux-raw-sys; the generator fails once an upgrade brings it,
/// so the entry gets dropped instead of silently shadowing the header.
const SYSCALL_ADDITIONS: &[(&str, &str, u32, &str)] = &[
    // Linux 6.18 arch/x86/entry/syscalls/syscall_64.tbl: `336 common uprobe sys_uprobe`; the
    // uprobe trampoline's fast path. `common` puts it in the x32 ABI too.
    ("x86_64", "uprobe", 336, "Linux 6.18 syscall_64.tbl"),
    ("x32", "uprobe", 0x4000_0000 | 336, "Linux 6.18 syscall_64.tbl"),
];

/// `__NR_*` constants that are not syscalls.
const NOT_SYSCALLS: &[&str] = &["syscalls", "arch_specific_syscall"];

fn write_syscalls(root: &Path) -> Result<()> {
    let text = generate_syscalls(root)?;
    let path = root.join(SYSCALLS_FILE);
    let tmp = path.with_extension("rs.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn check_syscalls(root: &Path) -> Result<()> {
    let text = generate_syscalls(root)?;
    let path = root.join(SYSCALLS_FILE);
    let current = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if current == text {
        println!("{SYSCALLS_FILE} is up to date");
        Ok(())
    } else {
        bail!(
            "{SYSCALLS_FILE} has drifted from linux-raw-sys {LINUX_RAW_SYS_VERSION}\nrun `cargo xtask syscalls` and commit the result"
        )
    }
}

/// The `src/` directory of the pinned linux-raw-sys, as `cargo metadata` resolves it.
fn linux_raw_sys_dir(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .context("running `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing the output of `cargo metadata`")?;
    let packages = metadata["packages"]
        .as_array()
        .context("`cargo metadata` output has no `packages`")?;
    let manifest = packages
        .iter()
        .find(|p| p["name"] == "linux-raw-sys" && p["version"] == LINUX_RAW_SYS_VERSION)
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| {
            format!("linux-raw-sys {LINUX_RAW_SYS_VERSION} is not in `cargo metadata`; is it still pinned in xtask/Cargo.toml?")
        })?;
    let dir = Path::new(manifest)
        .parent()
        .context("linux-raw-sys manifest path has no parent")?;
    Ok(dir.join("src"))
}

/// The syscalls of one linux-raw-sys `general.rs` in the order the header defines them:
/// `__NR_<name>` constants, plus the `__ARM_NR_<name>` private calls under their bare names as
/// libseccomp spells them.
fn parse_syscalls(path: &Path) -> Result<Vec<(String, u32)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut syscalls: Vec<(String, u32)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let Some((constant, value)) = rest.split_once(": u32 = ") else {
            continue;
        };
        let Some(name) = constant
            .strip_prefix("__NR_")
            .or_else(|| constant.strip_prefix("__ARM_NR_"))
        else {
            continue;
        };
        // Upper-case names are bases and masks (`__NR_Linux`, `__NR_SYSCALL_BASE`,
        // `__ARM_NR_BASE`), never syscalls.
        if name.bytes().any(|b| b.is_ascii_uppercase()) || NOT_SYSCALLS.contains(&name) {
            continue;
        }
        let number: u32 = value
            .strip_suffix(';')
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{}:{}: unexpected value in `{line}`", path.display(), index + 1))?;
        match syscalls.iter().find(|(n, _)| n == name) {
            None => syscalls.push((name.to_owned(), number)),
            Some(&(_, previous)) if previous == number => {}
            Some(&(_, previous)) => {
                bail!(
                    "{}:{}: `{name}` is {number} here but {previous} earlier",
                    path.display(),
                    index + 1
                )
            }
        }
    }
    Ok(syscalls)
}

/// A syscall number as a Rust literal: decimal, or grouped hex for the flagged ranges (x32's
/// 0x4000_0000 bit, arm's private 0x000f_0000 calls).
fn number_literal(number: u32) -> String {
    if number >= 0x1_0000 {
        format!("0x{:04x}_{:04x}", number >> 16, number & 0xffff)
    } else {
        number.to_string()
    }
}

fn generate_syscalls(root: &Path) -> Result<String> {
    let src = linux_raw_sys_dir(root)?;
    let mut out = format!(
        "//! Syscall tables generated by `cargo xtask syscalls` from linux-raw-sys {LINUX_RAW_SYS_VERSION}\n\
         //! (`src/<arch>/general.rs`, bindgen output of Linux's uapi `asm/unistd*.h`), plus the\n\
         //! additions in `SYSCALL_ADDITIONS` of `xtask/src/main.rs`. Do not edit: `cargo xtask\n\
         //! syscalls --check` fails when this file differs from what the generator writes.\n"
    );
    for &(static_name, dir, abi) in SYSCALL_SOURCES {
        let path = src.join(dir).join("general.rs");
        let mut syscalls = parse_syscalls(&path)?;
        if syscalls.len() < 200 {
            bail!(
                "{}: only {} syscalls; has the file layout changed?",
                path.display(),
                syscalls.len()
            );
        }
        for &(_, name, number, origin) in SYSCALL_ADDITIONS.iter().filter(|a| a.0 == dir) {
            if let Some((_, existing)) = syscalls.iter().find(|(n, _)| n == name) {
                bail!(
                    "{dir}: `{name}` ({origin}) is now in linux-raw-sys as {existing}; drop it from SYSCALL_ADDITIONS"
                );
            }
            syscalls.push((name.to_owned(), number));
        }
        // One name per number for number -> name: the first the header defines, which is the
        // kernel's syscall-table name (later ones are uapi aliases such as arm's
        // `sync_file_range2` for `arm_sync_file_range`).
        let mut by_number: BTreeMap<u32, &str> = BTreeMap::new();
        for (name, number) in &syscalls {
            by_number.entry(*number).or_insert(name);
        }
        let by_name: BTreeMap<&str, u32> = syscalls.iter().map(|(name, number)| (name.as_str(), *number)).collect();

        out.push_str(&format!(
            "\n/// {abi}: {} syscalls from `src/{dir}/general.rs`, sorted by name.\n\
             pub(super) static {static_name}: &[(&str, u32)] = &[\n",
            by_name.len()
        ));
        for (name, number) in &by_name {
            out.push_str(&format!("    (\"{name}\", {}),\n", number_literal(*number)));
        }
        out.push_str(&format!(
            "];\n\n/// {abi}: {} numbers, sorted, each with the kernel's name for it.\n\
             pub(super) static {static_name}_BY_NUMBER: &[(u32, &str)] = &[\n",
            by_number.len()
        ));
        for (number, name) in &by_number {
            out.push_str(&format!("    ({}, \"{name}\"),\n", number_literal(*number)));
        }
        out.push_str("];\n");
    }
    Ok(out)
}
