//! `spoc compile PROFILE`: our cBPF program for a SeccompProfile (or OCI runtime seccomp JSON),
//! as readable disassembly with its size and longest executed path.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use spo_seccomp::compile::{CompileOptions, compile};

use super::input::load_seccomp;
use super::output::{Format, Warnings, clean, emit};

pub const EXAMPLES: &str = "\
Examples:
  spoc compile examples/manifests/seccomp-nginx.yaml
  spoc compile --stats-only profile.yaml
  spoc compile --stats-only --format json docker-default.json

PROFILE is a SeccompProfile manifest or OCI runtime seccomp JSON (a profile of Docker, podman
or containerd, a node file, or a runc config.json), told apart by content.

--format json prints {\"instructions\": N, \"longestPath\": N, \"disassembly\": \"...\"}
(no disassembly with --stats-only); yaml the same as YAML.";

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// A file holding one SeccompProfile (YAML or JSON) or OCI runtime seccomp JSON; `-` reads
    /// standard input.
    #[arg(value_name = "PROFILE")]
    profile: PathBuf,
    /// The profile's name when the file holds several SeccompProfiles.
    #[arg(long)]
    name: Option<String>,
    /// Print only the statistics.
    #[arg(long)]
    stats_only: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write to FILE instead of standard output (`-`: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Do not print warnings about the profile.
    #[arg(long, short)]
    quiet: bool,
}

/// What `--format json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CompileReport {
    instructions: usize,
    longest_path: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    disassembly: Option<String>,
}

pub fn run(args: &CompileArgs) -> Result<ExitCode> {
    let display = args.profile.display().to_string();
    let warnings = if args.quiet { Warnings::Quiet } else { Warnings::Show };
    let loaded = load_seccomp(&args.profile, args.name.as_deref(), warnings)?;
    let profile = loaded.profile;
    if profile.spec.base_profile_name.is_some() {
        bail!(
            "{}: the profile has a baseProfileName; merge it first (spoc merge PROFILE BASE) and compile the result",
            clean(&display)
        );
    }
    let opts = CompileOptions {
        annotate: true,
        ..CompileOptions::default()
    };
    let program = compile(&profile.spec, &opts).with_context(|| format!("compiling {}", clean(&display)))?;
    let stats = program.stats();
    let report = CompileReport {
        instructions: stats.instructions,
        longest_path: stats.longest_path,
        disassembly: (!args.stats_only).then(|| program.disassemble()),
    };
    let text = match args.format.serialize(&report)? {
        Some(text) => text,
        None => format!(
            "{}{} instructions, longest path {} instructions\n",
            report.disassembly.as_deref().unwrap_or_default(),
            report.instructions,
            report.longest_path
        ),
    };
    emit(args.output.as_deref(), text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
