//! `spoc record [-o FILE] -- CMD...`: run a command, record every syscall of its process tree
//! with the eBPF recorder, and write an allow-list SeccompProfile.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use spo_record::{Recorder, into_recording};
use spo_seccomp::backend::spec_from_recording;

pub const EXAMPLES: &str = "\
Examples:
  spoc record -o ls.yaml -- ls /
  spoc run -p ls.yaml -- ls /          # the same command, confined by what it was seen doing

Needs root (or CAP_BPF and CAP_PERFMON) and a kernel with BTF (/sys/kernel/btf/vmlinux).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProfileType {
    /// A SeccompProfile manifest.
    Seccomp,
    /// OCI runtime-spec seccomp JSON.
    RawSeccomp,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Write the profile to FILE (replaced atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// What to write.
    #[arg(short = 't', long = "type", value_enum, default_value_t = ProfileType::Seccomp)]
    profile_type: ProfileType,
    /// metadata.name of the profile (default: the command's file name).
    #[arg(long)]
    name: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// A DNS-label profile name from a command path: `/usr/bin/Python3.11` -> `python3-11`.
pub fn profile_name_for(command: &str) -> String {
    let base = command.rsplit('/').next().unwrap_or(command).to_ascii_lowercase();
    let mut name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_owned();
    name.truncate(63);
    let name = name.trim_end_matches('-').to_owned();
    if name.is_empty() { "recorded".to_owned() } else { name }
}

pub fn run(args: &RecordArgs) -> Result<ExitCode> {
    let mut recorder = Recorder::load().context("loading the eBPF recorder")?;
    let raw = recorder
        .record_command(&args.command)
        .with_context(|| format!("recording {}", args.command.join(" ")))?;
    let named = into_recording(&raw, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    if !named.unnamed.is_empty() {
        eprintln!(
            "spoc: warning: syscall numbers without a name were seen and will be blocked: {:?}",
            named.unnamed
        );
    }
    let spec = spec_from_recording(&named.recording);
    let name = args.name.clone().unwrap_or_else(|| profile_name_for(&args.command[0]));
    let profile = spo_model::SeccompProfile::new(&name, spec);
    let problems = spo_model::SecurityProfile::validate(&profile);
    if problems.has_errors() {
        bail!("the recorded profile is invalid (a bug; please report it):\n{problems}");
    }
    let text = match args.profile_type {
        ProfileType::Seccomp => serde_norway::to_string(&profile).context("writing the profile as YAML")?,
        ProfileType::RawSeccomp => {
            let mut json = String::from_utf8(spo_seccomp::oci::render_node_json(&profile.spec)?)
                .context("runtime JSON is UTF-8")?;
            json.push('\n');
            json
        }
    };
    match &args.output {
        Some(path) => spo_seccomp::node::write_file_atomic(path, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    let total: usize = named.recording.syscalls.values().map(|s| s.len()).sum();
    let per_arch: Vec<String> = named
        .recording
        .syscalls
        .iter()
        .map(|(a, s)| format!("{a}: {}", s.len()))
        .collect();
    eprintln!(
        "spoc: recorded {total} distinct syscalls ({}) from `{}` ({}){}",
        per_arch.join(", "),
        args.command.join(" "),
        raw.exit_status,
        args.output
            .as_ref()
            .map(|p| format!("; profile written to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
