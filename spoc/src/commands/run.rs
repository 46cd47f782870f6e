//! `spoc run -p PROFILE -- CMD...`: run a command confined by a SeccompProfile compiled with
//! our compiler. The filter is installed between fork and execve, so the profile must allow
//! `execve`; everything the command does after that is confined. When it exits, every call the
//! profile blocked is listed from the kernel's audit records (see `violations`).

use std::collections::BTreeSet;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use spo_model::document::decode_source;
use spo_model::seccomp::SeccompProfileSpec;
use spo_model::{AnyObject, Outcome, parse_source};
use spo_seccomp::apply::{FLAG_LOG, confine_command, flags_of};

use super::violations::{Attribution, AuditTail, collect_descendants, describe, start_audit_session, violations};
use spo_seccomp::compile::{CompileOptions, compile};

pub const EXAMPLES: &str = "\
Examples:
  spoc run -p profile.yaml -- /bin/ls /tmp
  spoc run -p profile.yaml --name nginx -- nginx -g 'daemon off;'

Exit status: the command's, or 128+N when a signal N ended it (SIGSYS, 31, is a
SCMP_ACT_KILL* or SCMP_ACT_TRAP from the profile).

Afterwards spoc lists the calls the profile blocked (syscall, architecture, action, program),
read from the kernel's audit records (auditd's log or the kernel log; reading the kernel log
needs root or CAP_SYSLOG). The filter is installed with SECCOMP_FILTER_FLAG_LOG for this.";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The SeccompProfile (YAML or JSON manifest).
    #[arg(short, long, value_name = "PROFILE")]
    profile: PathBuf,
    /// The profile's name when the file holds several SeccompProfiles.
    #[arg(long)]
    name: Option<String>,
    /// Do not list the calls the profile blocked (and do not add SECCOMP_FILTER_FLAG_LOG).
    #[arg(long)]
    no_violations: bool,
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
    let confined = run_confined(&profile.spec, &display, &args.command, !args.no_violations, None)?;
    Ok(exit_code(confined.status, &args.command[0]))
}

/// How a confined run went.
pub struct Confined {
    /// The command's exit status.
    pub status: ExitStatus,
    /// How many calls the profile blocked, when the audit records could be read.
    pub blocked: Option<usize>,
}

/// Runs `command` confined by `spec` (called `display` in errors), as `run_as` (uid, gid) when
/// given; with `report`, lists the calls the profile blocked when it exits.
pub fn run_confined(
    spec: &SeccompProfileSpec,
    display: &str,
    command: &[String],
    report: bool,
    run_as: Option<(u32, u32)>,
) -> Result<Confined> {
    let program = compile(spec, &CompileOptions::default()).with_context(|| format!("compiling {display}"))?;
    let (prog, rest) = command.split_first().context("no command given")?;
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    if let Some((uid, gid)) = run_as {
        // std drops the supplementary groups too (setgroups(0)) when it changes the uid as root.
        cmd.uid(uid).gid(gid);
    }
    let flags = flags_of(spec) | if report { FLAG_LOG } else { 0 };
    confine_command(&mut cmd, program, flags).context("preparing the seccomp filter")?;
    let mut audit = report.then(AuditTail::open);
    // Our own fresh audit session, inherited by the command and all it starts.
    let session = if report { start_audit_session().ok() } else { None };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc_eperm()) || e.raw_os_error() == Some(38) => {
            bail!("starting {prog}: {e}; does the profile allow execve?")
        }
        Err(e) => return Err(e).with_context(|| format!("starting {prog}")),
    };
    let mut ours = BTreeSet::from([child.id()]);
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for {prog}"))? {
            break status;
        }
        if report && session.is_none() {
            collect_descendants(child.id(), &mut ours);
        }
        if let Some(audit) = &mut audit {
            audit.poll();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut blocked = None;
    if let Some(audit) = &mut audit {
        // auditd gets records through a kernel thread: give the last ones a moment.
        std::thread::sleep(Duration::from_millis(50));
        audit.poll();
        let attribution = match session {
            Some(s) => Attribution::Session(s),
            None => Attribution::Pids(ours),
        };
        blocked = report_violations(audit, &attribution, prog);
    }
    Ok(Confined { status, blocked })
}

/// The exit code spoc passes on for a command that ended with `status`.
fn exit_code(status: ExitStatus, prog: &str) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(sig)) => {
            if sig == 31 {
                eprintln!("spoc: {prog} was killed by SIGSYS: the profile denied a syscall with a kill or trap action");
            }
            ExitCode::from(u8::try_from(128 + sig).unwrap_or(255))
        }
        _ => ExitCode::from(1),
    }
}

/// Prints the calls the profile blocked, or why they cannot be shown; returns how many it
/// blocked (`None` when the audit records cannot be read).
fn report_violations(audit: &AuditTail, ours: &Attribution, prog: &str) -> Option<usize> {
    if !audit.readable() {
        eprintln!(
            "spoc: cannot list blocked calls: {} (run as root, or pass --no-violations)",
            audit.unavailable.join("; ")
        );
        return None;
    }
    let (records, malformed) = audit.seccomp_records();
    let (found, others) = violations(&records, ours, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    if found.is_empty() {
        eprintln!("spoc: the profile blocked nothing {prog} did");
    } else {
        eprintln!("spoc: the profile blocked these calls of {prog}:");
        for (violation, count) in &found {
            eprintln!("  {}", describe(violation, *count));
        }
    }
    if others > 0 {
        let why = match ours {
            Attribution::Session(_) => "they are of other audit sessions",
            Attribution::Pids(_) => {
                "they are not known to be the command's: without an audit session of its own \
                 (root needed) a child living under 5 ms is not seen"
            }
        };
        eprintln!("spoc: {others} seccomp records of other processes were left out ({why})");
    }
    if malformed > 0 {
        eprintln!("spoc: {malformed} malformed audit records were skipped");
    }
    let blocked = found.values().sum::<usize>();
    if audit.kernel_log_only() {
        let burst = std::fs::read_to_string("/proc/sys/kernel/printk_ratelimit_burst").unwrap_or_default();
        let total = blocked + others;
        if burst.trim().parse::<usize>().is_ok_and(|b| total + 1 >= b) {
            eprintln!(
                "spoc: without auditd the kernel log keeps only {} audit records per {} s \
                 (kernel.printk_ratelimit_burst, kernel.printk_ratelimit): some may be missing",
                burst.trim(),
                std::fs::read_to_string("/proc/sys/kernel/printk_ratelimit")
                    .unwrap_or_default()
                    .trim()
            );
        }
    }
    Some(blocked)
}

fn libc_eperm() -> i32 {
    1
}
