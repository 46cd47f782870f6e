//! Render an AppArmorProfile with spo-apparmor and check it with the real apparmor_parser when
//! it is installed (Debian's apparmor package): the text the node loads, with each rule's
//! source field.
//!
//! ```text
//! cargo run -p spo-examples --example apparmor_render -- examples/manifests/apparmor.yaml
//! ```

use anyhow::{Context, Result, bail};
use spo_apparmor::{ParserValidator, render_and_check, render_profile};
use spo_model::{AnyObject, Outcome, parse_source};

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/apparmor.yaml").to_owned());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let validator = ParserValidator::default();
    let parser = validator.available();
    let mut rendered = 0;
    for doc in parse_source(&path, &text)? {
        let Outcome::Valid(AnyObject::AppArmorProfile(profile)) = doc.outcome else {
            continue;
        };
        let out = match &parser {
            Ok(()) => render_and_check(&validator, &profile)?,
            Err(_) => render_profile(&profile)?,
        };
        println!(
            "# {} ({} mode), {} lines:",
            out.name.as_str(),
            format!("{:?}", out.mode).to_lowercase(),
            out.text.lines().count()
        );
        print!("{}", out.text);
        rendered += 1;
    }
    match parser {
        Ok(()) => println!("# apparmor_parser accepted all {rendered}"),
        Err(why) => println!("# not checked with apparmor_parser: {why}"),
    }
    if rendered == 0 {
        bail!("no AppArmorProfile in {path}");
    }
    Ok(())
}
