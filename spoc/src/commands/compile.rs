//! `spoc compile PROFILE`: our cBPF program for a SeccompProfile, as readable disassembly
//! with its size and longest executed path.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use spo_model::document::decode_source;
use spo_model::{AnyObject, Outcome, parse_source};
use spo_seccomp::compile::{CompileOptions, compile};

pub const EXAMPLES: &str = "\
Examples:
  spoc compile examples/manifests/seccomp-nginx.yaml
  spoc compile --stats-only profile.yaml";

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// A file holding one SeccompProfile (YAML or JSON); `-` reads standard input.
    #[arg(value_name = "PROFILE")]
    profile: PathBuf,
    /// The profile's name when the file holds several SeccompProfiles.
    #[arg(long)]
    name: Option<String>,
    /// Print only the statistics line.
    #[arg(long)]
    stats_only: bool,
}

pub fn run(args: &CompileArgs) -> Result<ExitCode> {
    let display = args.profile.display().to_string();
    let bytes = super::input::read_input(&args.profile)?;
    let text = decode_source(&display, &bytes)?;
    let docs = parse_source(&display, text)?;
    let mut profiles = Vec::new();
    for doc in docs {
        if doc.kind.as_deref() != Some("SeccompProfile") {
            continue;
        }
        if args.name.is_some() && doc.name != args.name {
            continue;
        }
        match doc.outcome {
            Outcome::Valid(AnyObject::SeccompProfile(p)) => profiles.push(p),
            _ => {
                for p in doc.problems.errors() {
                    eprintln!("{display}:{} [doc {}]: error: {p}", doc.line, doc.index);
                }
                return Ok(ExitCode::from(1));
            }
        }
    }
    let profile = match profiles.len() {
        0 => bail!(
            "{display} holds no SeccompProfile{}",
            args.name.as_ref().map(|n| format!(" named {n}")).unwrap_or_default()
        ),
        1 => profiles.remove(0),
        n => bail!("{display} holds {n} SeccompProfiles; choose one with --name"),
    };
    if profile.spec.base_profile_name.is_some() {
        bail!(
            "{display}: the profile has a baseProfileName; merge it first (spoc merge PROFILE BASE) and compile the result"
        );
    }
    let opts = CompileOptions {
        annotate: true,
        ..CompileOptions::default()
    };
    let program = compile(&profile.spec, &opts).with_context(|| format!("compiling {display}"))?;
    let stats = program.stats();
    if !args.stats_only {
        print!("{}", program.disassemble());
    }
    println!(
        "{} instructions, longest path {} instructions",
        stats.instructions, stats.longest_path
    );
    Ok(ExitCode::SUCCESS)
}
