//! Shared helpers: fixtures, the real parser, its debug dump.

use std::path::{Path, PathBuf};
use std::process::Command;

use spo_apparmor::ParserValidator;
use spo_model::AppArmorProfile;

/// The parser and features file, or `None` (after saying why) when they are missing outside CI.
pub fn require_parser() -> Option<ParserValidator> {
    let validator = ParserValidator::default();
    match validator.available() {
        Ok(()) => Some(validator),
        Err(reason) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "apparmor_parser is required in CI: {reason}"
            );
            eprintln!("skipped: {reason}");
            None
        }
    }
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture, by file stem, sorted.
pub fn fixtures() -> Vec<(String, AppArmorProfile)> {
    let mut out: Vec<(String, AppArmorProfile)> = std::fs::read_dir(fixture_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read fixture");
            let profile: AppArmorProfile =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let stem = p.file_stem().expect("stem").to_string_lossy().into_owned();
            (stem, profile)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no fixtures");
    out
}

pub fn fixture(stem: &str) -> AppArmorProfile {
    fixtures()
        .into_iter()
        .find(|(s, _)| s == stem)
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no fixture {stem}"))
}

/// The file rules apparmor_parser built from `text`, as `(mode, name)` pairs in its order
/// (`apparmor_parser -Q -K -d`: variables expanded, quotes and escapes resolved).
pub fn parser_entries(validator: &ParserValidator, text: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("profile");
    std::fs::write(&file, text).expect("write");
    let out = Command::new(&validator.parser)
        .args(["-Q", "-K", "-d", "--features-file"])
        .arg(&validator.features_file)
        .arg(&file)
        .output()
        .expect("run apparmor_parser -d");
    assert!(
        out.status.success(),
        "apparmor_parser -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Mode:\t"))
        .filter_map(|l| {
            let (mode, name) = l.split_once("\tName:\t")?;
            let name = name.strip_prefix('(')?.strip_suffix(')')?;
            Some((mode.split(':').next().unwrap_or_default().to_owned(), name.to_owned()))
        })
        .collect()
}

/// `after` minus `before`, as multisets.
pub fn added<T: PartialEq + Clone>(before: &[T], after: &[T]) -> Vec<T> {
    let mut rest = before.to_vec();
    let mut out = Vec::new();
    for x in after {
        match rest.iter().position(|y| y == x) {
            Some(i) => {
                rest.remove(i);
            }
            None => out.push(x.clone()),
        }
    }
    out
}
