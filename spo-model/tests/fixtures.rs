//! Manifest fixtures: every example under `examples/manifests/` must be valid without a
//! single warning, and every file under `tests/fixtures/invalid/` must report the exact
//! problem its `# expect:` header names.
//!
//! Header format of an invalid fixture (leading comment lines of a YAML file, or the
//! lines of a sibling `NN-name.expect` file for JSON fixtures):
//!
//! ```text
//! # expect: spec.syscalls[0].args[0].index | out of range
//! # expect-source-error: no YAML or JSON document found
//! ```
//!
//! `<document>` (or an empty path) stands for the document root.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use spo_model::document::{MAX_SOURCE_BYTES, decode_source};
use spo_model::{Document, Kind, ModelError, Outcome, parse_source};

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("manifests")
}

fn invalid_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join("invalid")
}

/// Files of `dir` with one of `exts`, sorted by name.
fn files_with(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a file through the same size and encoding checks a CLI would apply.
fn load(path: &Path) -> Result<Result<Vec<Document>, ModelError>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let name = file_name(path);
    Ok(decode_source(&name, &bytes).and_then(|text| parse_source(&name, text)))
}

/// Every problem of every document, one per line, for failure messages.
fn describe(docs: &[Document]) -> String {
    let mut out = String::new();
    for d in docs {
        let outcome = match &d.outcome {
            Outcome::Valid(obj) => format!("Valid({})", obj.kind()),
            Outcome::Invalid => "Invalid".to_owned(),
            Outcome::Skipped(why) => format!("Skipped({why})"),
        };
        let _ = writeln!(
            out,
            "  document {} (line {}, kind {:?}, name {:?}): {outcome}",
            d.index, d.line, d.kind, d.name
        );
        if d.problems.is_empty() {
            let _ = writeln!(out, "    (no problems)");
        }
        for p in d.problems.iter() {
            let _ = writeln!(
                out,
                "    {:?} path={:?} message={:?} hint={:?}",
                p.severity,
                p.path.as_str(),
                p.message,
                p.hint
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// (a) Examples

#[test]
fn every_example_manifest_is_valid_without_warnings() {
    let dir = manifest_dir();
    let files = files_with(&dir, &["yaml", "yml", "json"]);
    assert!(!files.is_empty(), "no manifests found in {}", dir.display());

    let mut failures = Vec::new();
    let mut kinds = BTreeSet::new();
    let mut total = 0;
    for path in &files {
        let name = file_name(path);
        let docs = match load(path) {
            Ok(Ok(docs)) => docs,
            Ok(Err(e)) => {
                failures.push(format!("{name}: source error: {e}"));
                continue;
            }
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let mut bad = false;
        for d in &docs {
            total += 1;
            match &d.outcome {
                Outcome::Valid(obj) => {
                    kinds.insert(obj.kind());
                }
                _ => bad = true,
            }
            if !d.problems.is_empty() {
                bad = true;
            }
        }
        if bad {
            failures.push(format!(
                "{name}: expected every document Valid with no problems, got:\n{}",
                describe(&docs)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} example file(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    assert!(
        total >= 20,
        "only {total} example documents in {}; want at least 20",
        dir.display()
    );
    let user_facing = [
        Kind::SeccompProfile,
        Kind::SelinuxProfile,
        Kind::RawSelinuxProfile,
        Kind::AppArmorProfile,
        Kind::ProfileBinding,
        Kind::ProfileRecording,
        Kind::SecurityProfilesOperatorDaemon,
    ];
    let missing: Vec<Kind> = user_facing.into_iter().filter(|k| !kinds.contains(k)).collect();
    assert!(missing.is_empty(), "no example of {missing:?} (found {kinds:?})");
}

#[test]
fn examples_readme_lists_every_manifest() {
    let dir = manifest_dir();
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("examples/manifests/README.md");
    for path in files_with(&dir, &["yaml", "yml", "json"]) {
        let name = file_name(&path);
        assert!(readme.contains(&name), "README.md does not mention {name}");
    }
}

// ---------------------------------------------------------------------------------------
// (b) Invalid fixtures

#[derive(Debug)]
enum Expectation {
    /// A problem at exactly `path` whose message contains `message`.
    Problem { path: String, message: String },
    /// `parse_source` (or `decode_source`) fails with an error whose text contains this.
    SourceError(String),
}

fn parse_expectations(file: &str, header: &str) -> Vec<Expectation> {
    let mut out = Vec::new();
    for line in header.lines() {
        let line = line.trim();
        let line = line.strip_prefix('#').map(str::trim_start).unwrap_or(line);
        if let Some(rest) = line.strip_prefix("expect-source-error:") {
            out.push(Expectation::SourceError(rest.trim().to_owned()));
        } else if let Some(rest) = line.strip_prefix("expect:") {
            let (path, message) = rest
                .split_once('|')
                .unwrap_or_else(|| panic!("{file}: expectation {line:?} lacks '|' between path and message"));
            let path = path.trim();
            let path = if path == "<document>" { "" } else { path };
            out.push(Expectation::Problem {
                path: path.to_owned(),
                message: message.trim().to_owned(),
            });
        }
    }
    out
}

/// The expectations of a fixture: its leading comment lines, or its `.expect` sibling.
fn expectations_of(path: &Path) -> Vec<Expectation> {
    let name = file_name(path);
    let header = if path.extension().is_some_and(|e| e == "json") {
        let sibling = path.with_extension("expect");
        std::fs::read_to_string(&sibling).unwrap_or_else(|e| panic!("{name}: reading {}: {e}", sibling.display()))
    } else {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.trim_start().starts_with("# expect"),
            "{name}: the first line must be an `# expect` comment, found {first:?}"
        );
        text.lines()
            .take_while(|l| l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let exp = parse_expectations(&name, &header);
    assert!(!exp.is_empty(), "{name}: no `expect:` or `expect-source-error:` line");
    exp
}

/// Checks one fixture; `Err` carries a message naming the file and every problem found.
fn check_fixture(path: &Path) -> Result<(), String> {
    let name = file_name(path);
    let expectations = expectations_of(path);
    let result = load(path)?;
    let mut missing = Vec::new();
    match &result {
        Err(e) => {
            let text = e.to_string();
            for exp in &expectations {
                match exp {
                    Expectation::SourceError(want) if text.contains(want.as_str()) => {}
                    other => missing.push(format!("{other:?}")),
                }
            }
            if !missing.is_empty() {
                return Err(format!(
                    "{name}: source error {text:?}; missing expected {}",
                    missing.join(", ")
                ));
            }
        }
        Ok(docs) => {
            let Some(first) = docs.first() else {
                return Err(format!("{name}: no document and no source error"));
            };
            if docs.len() != 1 {
                return Err(format!(
                    "{name}: a fixture holds one document, found {}:\n{}",
                    docs.len(),
                    describe(docs)
                ));
            }
            if !matches!(first.outcome, Outcome::Invalid) {
                missing.push("outcome Invalid".to_owned());
            }
            for exp in &expectations {
                match exp {
                    Expectation::Problem { path, message } => {
                        let found = first
                            .problems
                            .errors()
                            .any(|p| p.path.as_str() == path && p.message.contains(message.as_str()));
                        if !found {
                            missing.push(format!("error at {path:?} containing {message:?}"));
                        }
                    }
                    Expectation::SourceError(want) => missing.push(format!("source error containing {want:?}")),
                }
            }
            if !missing.is_empty() {
                return Err(format!(
                    "{name}: missing {}; found:\n{}",
                    missing.join(", "),
                    describe(docs)
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_invalid_fixture_reports_its_expected_problem() {
    let dir = invalid_dir();
    let files = files_with(&dir, &["yaml", "yml", "json"]);
    assert!(
        files.len() >= 35,
        "only {} invalid fixtures in {}; want at least 35",
        files.len(),
        dir.display()
    );

    let mut names = BTreeSet::new();
    for path in &files {
        let name = file_name(path);
        let prefix = name.split('-').next().unwrap_or_default();
        assert!(
            prefix.len() == 2 && prefix.bytes().all(|b| b.is_ascii_digit()),
            "{name}: fixture names are NN-short-name.yaml"
        );
        assert!(names.insert(prefix.to_owned()), "{name}: number {prefix} is used twice");
    }

    let failures: Vec<String> = files.iter().filter_map(|p| check_fixture(p).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixture(s) failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_expect_file_has_a_json_fixture() {
    for path in files_with(&invalid_dir(), &["expect"]) {
        assert!(
            path.with_extension("json").is_file(),
            "{} has no .json fixture next to it",
            file_name(&path)
        );
    }
}

// ---------------------------------------------------------------------------------------
// (c) Size and encoding limits

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let big = vec![b'#'; 9 * 1024 * 1024];
    match decode_source("big.yaml", &big) {
        Err(ModelError::TooLarge {
            source_name,
            size,
            limit,
        }) => {
            assert_eq!(source_name, "big.yaml");
            assert_eq!(size, big.len());
            assert_eq!(limit, MAX_SOURCE_BYTES);
        }
        other => panic!("9 MiB input: expected TooLarge, got {other:?}"),
    }
    // Exactly at the limit is accepted.
    let at_limit = vec![b' '; MAX_SOURCE_BYTES];
    assert!(decode_source("limit.yaml", &at_limit).is_ok());
}

#[test]
fn non_utf8_input_is_rejected_with_its_offset() {
    let mut bytes =
        b"apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: caf".to_vec();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xe9\n");
    match decode_source("latin1.yaml", &bytes) {
        Err(ModelError::NotUtf8 {
            source_name,
            offset: at,
        }) => {
            assert_eq!(source_name, "latin1.yaml");
            assert_eq!(at, offset);
        }
        other => panic!("latin-1 input: expected NotUtf8, got {other:?}"),
    }
    assert!(matches!(
        decode_source("bin", &[0xff, 0xfe, 0x00]),
        Err(ModelError::NotUtf8 { offset: 0, .. })
    ));
}
