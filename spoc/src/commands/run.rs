//! `spoc run -p PROFILE -- CMD...`: run a command confined by a SeccompProfile compiled with
//! our compiler. The filter is installed between fork and execve, so the profile must allow
//! `execve`; everything the command does after that is confined.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Args;
use spo_model::document::decode_source;
use spo_model::{AnyObject, Outcome, parse_source};
use spo_seccomp::apply::{confine_command, flags_of};
use spo_seccomp::compile::{CompileOptions, compile};

pub const EXAMPLES: &str = "\
Examples:
  spoc run -p profile.yaml -- /bin/ls /tmp
  spoc run -p profile.yaml --name nginx -- nginx -g 'daemon off;'

Exit status: the command's, or 128+N when a signal N ended it (SIGSYS, 31, is a
SCMP_ACT_KILL* or SCMP_ACT_TRAP from the profile).";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The SeccompProfile (YAML or JSON manifest).
    #[arg(short, long, value_name = "PROFILE")]
    profile: PathBuf,
    /// The profile's name when the file holds several SeccompProfiles.
    #[arg(long)]
    name: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let display = args.profile.display().to_string();
    let bytes = super::input::read_input(&args.profile)?;
    let docs = parse_source(&display, decode_source(&display, &bytes)?)?;
    let mut found = Vec::new();
    for doc in docs {
        if doc.kind.as_deref() != Some("SeccompProfile") || (args.name.is_some() && doc.name != args.name) {
            continue;
        }
        match doc.outcome {
            Outcome::Valid(AnyObject::SeccompProfile(p)) => found.push(p),
            _ => {
                for p in doc.problems.errors() {
                    eprintln!("{display}:{} [doc {}]: error: {p}", doc.line, doc.index);
                }
                return Ok(ExitCode::from(2));
            }
        }
    }
    let profile = match found.len() {
        1 => found.remove(0),
        0 => bail!("{display} holds no SeccompProfile"),
        n => bail!("{display} holds {n} SeccompProfiles; choose one with --name"),
    };
    if profile.spec.base_profile_name.is_some() {
        bail!("{display}: the profile has a baseProfileName; merge it first (spoc merge) and run the result");
    }
    let program = compile(&profile.spec, &CompileOptions::default()).with_context(|| format!("compiling {display}"))?;
    let (prog, rest) = args.command.split_first().context("no command given")?;
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    confine_command(&mut cmd, program, flags_of(&profile.spec)).context("preparing the seccomp filter")?;
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc_eperm()) || e.raw_os_error() == Some(38) => {
            bail!("starting {prog}: {e}; does the profile allow execve?")
        }
        Err(e) => return Err(e).with_context(|| format!("starting {prog}")),
    };
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(sig)) => {
            if sig == 31 {
                eprintln!("spoc: {prog} was killed by SIGSYS: the profile denied a syscall with a kill or trap action");
            }
            ExitCode::from(u8::try_from(128 + sig).unwrap_or(255))
        }
        _ => ExitCode::from(1),
    })
}

fn libc_eperm() -> i32 {
    1
}
