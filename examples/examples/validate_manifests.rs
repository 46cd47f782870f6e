//! Validate every manifest in a directory with spo-model, as another tool would.
//!
//! ```text
//! cargo run -p spo-examples --example validate_manifests -- examples/manifests
//! ```

use anyhow::{Context, Result, bail};
use spo_model::{Outcome, parse_source};

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/manifests".to_owned());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {dir}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    entries.sort();
    let mut failures = 0;
    for path in entries {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for doc in parse_source(&path.display().to_string(), &text)? {
            let label = format!(
                "{}#{} {}",
                path.display(),
                doc.index,
                doc.kind.as_deref().unwrap_or("?")
            );
            match doc.outcome {
                Outcome::Valid(obj) => println!("{label}: valid {}", obj.kind()),
                Outcome::Skipped(why) => println!("{label}: skipped, {why}"),
                Outcome::Invalid => {
                    failures += 1;
                    println!("{label}: invalid\n{}", doc.problems);
                }
            }
        }
    }
    if failures > 0 {
        bail!("{failures} invalid documents");
    }
    Ok(())
}
