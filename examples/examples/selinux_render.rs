//! Render SelinuxProfiles with spo-selinux to the CIL module a node installs, and compile them
//! with the real secilc against a base policy when `SPO_SELINUX_BASE` names one
//! (`scripts/selinux-base` builds it from Debian's refpolicy).
//!
//! ```text
//! cargo run -p spo-examples --example selinux_render -- examples/manifests/selinux.yaml
//! ```

use anyhow::{Context, Result, bail};
use spo_model::{AnyObject, Outcome, parse_source};
use std::sync::Arc;

use spo_selinux::{MemoryLookup, PolicyValidator, RenderContext, Secilc, render_selinux_profile};

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/selinux.yaml").to_owned());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let profiles: Vec<_> = parse_source(&path, &text)?
        .into_iter()
        .filter_map(|doc| match doc.outcome {
            Outcome::Valid(AnyObject::SelinuxProfile(profile)) => Some(*profile),
            _ => None,
        })
        .collect();
    // Profiles that inherit others find them among the file's (a node finds them in its watch).
    let ctx = RenderContext {
        lookup: Arc::new(MemoryLookup::with(profiles.iter().cloned())),
        ..RenderContext::default()
    };
    let mut modules = Vec::new();
    for profile in &profiles {
        let module = render_selinux_profile(profile, &ctx)?;
        println!(";; module {} ({} lines)", module.name, module.text.lines().count());
        print!("{}", module.text);
        modules.push(module);
    }
    if modules.is_empty() {
        bail!("no SelinuxProfile in {path}");
    }
    match Secilc::from_env() {
        Ok(secilc) => {
            secilc.validate(&modules)?;
            println!(
                ";; secilc compiled all {} against {}",
                modules.len(),
                secilc.base.dir.display()
            );
        }
        Err(why) => println!(";; not compiled with secilc: {why}"),
    }
    Ok(())
}
