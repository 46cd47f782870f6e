//! `spoc run -p PROFILE -- CMD...`: run a command confined by a SeccompProfile compiled with
//! our compiler. The filter is installed between fork and execve, so the profile must allow
//! `execve`; everything the command does after that is confined. When it exits, every call the
//! profile blocked or logged is listed from the kernel's audit records (see `violations`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use spo_model::seccomp::SeccompProfileSpec;
use spo_seccomp::apply::{
    FLAG_LOG, catch_relayed_signals, confine_command, flags_of, send_signal, signal_name, take_received_signals,
};
use spo_seccomp::compile::bpf::{RET_ACTION_FULL, RET_ALLOW, RET_LOG};
use spo_seccomp::compile::interp::{SeccompData, run_with_endianness};
use spo_seccomp::compile::{CompileOptions, Program, compile, is_big_endian};

use super::output::{self, Format, Warnings, clean, exit};
use super::violations::{describe_call, start_audit_session};
use spo_enrich::command::{CommandScope, Violation, collect_descendants, seccomp_records, violations};
use spo_enrich::source::AuditSources;

pub const EXAMPLES: &str = "\
Examples:
  spoc run -p profile.yaml -- /bin/ls /tmp
  spoc run -p profile.yaml --name nginx -- nginx -g 'daemon off;'
  spoc run -p docker-default.json -- ls       OCI runtime JSON works too
  spoc run -p p.yaml --format json -o report.json -- make test

Afterwards spoc lists the calls the profile blocked and those it let through but logged
(SCMP_ACT_LOG), with syscall, architecture, action and program, read from the kernel's audit
records (auditd's log or the kernel log; reading the kernel log needs root or CAP_SYSLOG). The
filter is installed with SECCOMP_FILTER_FLAG_LOG for this. The report goes to standard error,
or to -o FILE; --format json or yaml gives it as one document (schema in spoc's README).
SIGINT, SIGTERM and SIGHUP sent to spoc are passed on to the command (a terminal's Ctrl-C
reaches it directly); spoc waits for it, reports, and exits with its status. A SIGSYS death
(128+31) is a SCMP_ACT_KILL* or SCMP_ACT_TRAP of the profile.";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The SeccompProfile (YAML or JSON manifest, or OCI runtime seccomp JSON).
    #[arg(short, long, value_name = "PROFILE")]
    profile: PathBuf,
    /// The profile's name when the file holds several SeccompProfiles.
    #[arg(long)]
    name: Option<String>,
    /// Do not list the calls the profile blocked (and do not add SECCOMP_FILTER_FLAG_LOG).
    #[arg(long)]
    no_violations: bool,
    /// Write the report to FILE (`-`: standard output) instead of standard error.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// How to write the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Leave out the profile's warnings.
    #[arg(short, long)]
    quiet: bool,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    if let Some(out) = &args.output {
        check_output_writable(out)?;
    }
    let warnings = if args.quiet { Warnings::Quiet } else { Warnings::Show };
    let loaded = super::input::load_seccomp(&args.profile, args.name.as_deref(), warnings)?;
    let display = args.profile.display().to_string();
    if loaded.profile.spec.base_profile_name.is_some() {
        bail!(
            "{}: the profile has a baseProfileName; merge it first (spoc merge) and run the result",
            clean(&display)
        );
    }
    let confined = run_confined(&loaded.profile.spec, &display, &args.command, !args.no_violations, None)?;
    let report = RunReport::new(
        &args.command,
        spo_model::SecurityProfile::name(&loaded.profile),
        &confined,
    );
    match (args.format, &args.output) {
        (Format::Text, None) => eprint!("{}", text_report(&report)),
        (Format::Text, Some(out)) => output::emit(Some(out), text_report(&report).as_bytes())?,
        (format, out) => {
            let doc = format.serialize(&report)?.unwrap_or_default();
            match out {
                Some(out) => output::emit(Some(out), doc.as_bytes())?,
                None => eprint!("{doc}"),
            }
        }
    }
    Ok(output::code(report.exit_code))
}

/// Fails, before anything runs, when `path` cannot be written: a directory, or a file in a
/// directory that does not exist or refuses new files. Special files (`/dev/null`, FIFOs)
/// are written into as they are.
pub fn check_output_writable(path: &Path) -> Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    let shown = clean(&path.display().to_string()).into_owned();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("-o {shown}: is a directory; name a file"),
        Ok(m) if !m.is_file() => return Ok(()),
        Ok(_) | Err(_) => {}
    }
    // A regular file is replaced through a new file beside it: its directory must take one.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match real.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir_shown = clean(&dir.display().to_string()).into_owned();
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("-o {shown}: {dir_shown} is not a directory"),
        Err(e) => bail!("-o {shown}: directory {dir_shown}: {e}"),
    }
    let probe = dir.join(format!(".spoc-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            // Only a probe: failing to remove it leaves an empty file, nothing worse.
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!("-o {shown}: cannot create files in {dir_shown}: {e}"),
    }
}

/// How a confined run went.
#[derive(Debug)]
pub struct Confined {
    /// The command's exit status, or why it never started (with spoc's exit code).
    pub ended: Ended,
    /// What the audit records say, when they were read.
    pub audit: Option<AuditFindings>,
    /// Why the audit records could not be read, when asked for and not readable.
    pub audit_unavailable: Option<String>,
    /// The signals spoc received while the command ran (and passed on unless they came from
    /// the terminal).
    pub signals: Vec<i32>,
}

/// How the command ended.
#[derive(Debug, Clone)]
pub enum Ended {
    /// It ran and exited.
    Exited(ExitStatus),
    /// It never started: spoc's exit code (126, 127) and why.
    NotStarted(u8, String),
}

/// The command's calls found in the audit records.
#[derive(Debug, Default)]
pub struct AuditFindings {
    /// Calls the profile blocked, counted.
    pub blocked: BTreeMap<Violation, usize>,
    /// Calls the profile let through and logged (SCMP_ACT_LOG), counted.
    pub logged: BTreeMap<Violation, usize>,
    /// Seccomp records of other processes, left out.
    pub others: usize,
    /// Records that could not be parsed.
    pub malformed: usize,
    /// Why `others` were left out.
    pub others_why: &'static str,
    /// A warning about records the kernel log may have dropped.
    pub rate_limited: Option<String>,
}

impl AuditFindings {
    /// How many calls were blocked.
    pub fn blocked_count(&self) -> usize {
        self.blocked.values().sum()
    }
}

impl Confined {
    /// How many calls the profile blocked, when the audit records could be read.
    pub fn blocked(&self) -> Option<usize> {
        self.audit.as_ref().map(AuditFindings::blocked_count)
    }
}

/// `prog` as `execvp` would find it: a path when it has a `/`, else the first executable
/// file of that name in `PATH`.
pub fn find_program(prog: &str) -> Option<PathBuf> {
    if prog.is_empty() {
        return None;
    }
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// What the compiled program answers to an `execve` of the native architecture (arguments 0),
/// when it neither allows nor logs it: the action's name.
fn refuses_execve(program: &Program, native: spo_model::seccomp::Arch) -> Option<String> {
    let table = spo_seccomp::syscalls::table(native)?;
    let data = SeccompData {
        nr: table.number("execve")?,
        arch: spo_seccomp::syscalls::audit_arch(native)?,
        instruction_pointer: 0,
        args: [0; 6],
    };
    let ret = run_with_endianness(&program.insns, &data, !is_big_endian(native))
        .ok()?
        .ret;
    match ret & RET_ACTION_FULL {
        RET_ALLOW | RET_LOG => None,
        _ => Some(spo_seccomp::compile::bpf::describe_ret(ret)),
    }
}

/// Runs `command` confined by `spec` (called `display` in errors), as `run_as` (uid, gid) when
/// given; with `report`, collects the calls the profile blocked or logged from the audit
/// records. SIGINT, SIGTERM and SIGHUP sent to spoc meanwhile are passed on to the command.
pub fn run_confined(
    spec: &SeccompProfileSpec,
    display: &str,
    command: &[String],
    report: bool,
    run_as: Option<(u32, u32)>,
) -> Result<Confined> {
    let options = CompileOptions::default();
    let program = compile(spec, &options).with_context(|| format!("compiling {}", clean(display)))?;
    let (prog, rest) = command.split_first().context("no command given")?;
    let not_started = |code: u8, why: String| Confined {
        ended: Ended::NotStarted(code, why),
        audit: None,
        audit_unavailable: None,
        signals: Vec::new(),
    };
    let Some(path) = find_program(prog) else {
        return Ok(not_started(
            exit::NOT_FOUND,
            format!(
                "command not found: {} (not a file, nor an executable in PATH)",
                clean(prog)
            ),
        ));
    };
    if let Some(action) = refuses_execve(&program, options.native) {
        return Ok(not_started(
            exit::CANNOT_EXECUTE,
            format!(
                "{} never started: the profile refuses execve ({action}); allow execve to run anything under it",
                clean(prog)
            ),
        ));
    }
    let mut cmd = Command::new(&path);
    cmd.arg0(prog).args(rest);
    if let Some((uid, gid)) = run_as {
        // std drops the supplementary groups too (setgroups(0)) when it changes the uid as root.
        cmd.uid(uid).gid(gid);
    }
    let flags = flags_of(spec) | if report { FLAG_LOG } else { 0 };
    confine_command(&mut cmd, program, flags).context("preparing the seccomp filter")?;
    catch_relayed_signals().context("catching SIGINT, SIGTERM and SIGHUP to pass them on")?;
    // The audit sources, and every line read from them while the command runs.
    let mut audit = report.then(|| (AuditSources::open_at_end(), Vec::<String>::new()));
    // Our own fresh audit session, inherited by the command and all it starts.
    let session = if report { start_audit_session().ok() } else { None };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let shown = clean(prog);
            return match e.kind() {
                ErrorKind::NotFound => Ok(not_started(exit::NOT_FOUND, format!("command not found: {shown}"))),
                ErrorKind::PermissionDenied if e.raw_os_error() == Some(1) => Ok(not_started(
                    exit::CANNOT_EXECUTE,
                    format!("{shown} never started: the profile refuses its execve ({e})"),
                )),
                ErrorKind::PermissionDenied | ErrorKind::IsADirectory | ErrorKind::ExecutableFileBusy => Ok(
                    not_started(exit::CANNOT_EXECUTE, format!("cannot execute {shown}: {e}")),
                ),
                _ if e.raw_os_error() == Some(8) => Ok(not_started(
                    exit::CANNOT_EXECUTE,
                    format!("cannot execute {shown}: {e}"),
                )),
                _ => Err(e).with_context(|| format!("starting {shown}")),
            };
        }
    };
    let mut ours = BTreeSet::from([child.id()]);
    let mut signals = Vec::new();
    let status = loop {
        for received in take_received_signals() {
            signals.push(received.signal);
            if !received.from_terminal {
                // The command may be gone already; its status tells the rest.
                let _ = send_signal(child.id(), received.signal);
            }
        }
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {}", clean(prog)))?
        {
            break status;
        }
        if report && session.is_none() {
            collect_descendants(child.id(), &mut ours);
        }
        if let Some((sources, lines)) = &mut audit {
            lines.extend(sources.poll());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    signals.extend(take_received_signals().iter().map(|r| r.signal));
    let mut confined = Confined {
        ended: Ended::Exited(status),
        audit: None,
        audit_unavailable: None,
        signals,
    };
    if let Some((sources, lines)) = &mut audit {
        // auditd gets records through a kernel thread: give the last ones a moment.
        std::thread::sleep(Duration::from_millis(50));
        lines.extend(sources.poll());
        let scope = match session {
            Some(s) => CommandScope::Session(s),
            None => CommandScope::Pids(ours),
        };
        if sources.readable() {
            confined.audit = Some(findings(sources, lines, &scope));
        } else {
            confined.audit_unavailable = Some(sources.unavailable.join("; "));
        }
    }
    Ok(confined)
}

/// Sorts the command's seccomp records into blocked and logged calls.
fn findings(audit: &AuditSources, lines: &[String], ours: &CommandScope) -> AuditFindings {
    let (records, malformed) = seccomp_records(lines.iter().map(String::as_str));
    let (found, others) = violations(&records, ours, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    let (logged, blocked): (BTreeMap<_, _>, BTreeMap<_, _>) = found.into_iter().partition(|(v, _)| v.is_logged());
    let others_why = match ours {
        CommandScope::Session(_) => "they are of other audit sessions",
        CommandScope::Pids(_) => {
            "they are not known to be the command's: without an audit session of its own \
             (root needed) a child living under 5 ms is not seen"
        }
    };
    let mut rate_limited = None;
    if audit.kernel_log_only() {
        let burst = std::fs::read_to_string("/proc/sys/kernel/printk_ratelimit_burst").unwrap_or_default();
        let total = blocked.values().sum::<usize>() + logged.values().sum::<usize>() + others;
        if burst.trim().parse::<usize>().is_ok_and(|b| total + 1 >= b) {
            rate_limited = Some(format!(
                "without auditd the kernel log keeps only {} audit records per {} s \
                 (kernel.printk_ratelimit_burst, kernel.printk_ratelimit): some may be missing",
                burst.trim(),
                std::fs::read_to_string("/proc/sys/kernel/printk_ratelimit")
                    .unwrap_or_default()
                    .trim()
            ));
        }
    }
    AuditFindings {
        blocked,
        logged,
        others,
        malformed,
        others_why,
        rate_limited,
    }
}

/// What `spoc run` reports (`--format json|yaml`; the text report says the same).
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The command line.
    pub command: Vec<String>,
    /// The profile's name.
    pub profile: String,
    /// Whether the command started.
    pub started: bool,
    /// Its exit code, when it exited.
    pub exit_status: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// The signal's name (`SIGSYS`).
    pub signal_name: Option<String>,
    /// What spoc exits with.
    pub exit_code: u8,
    /// Why the command did not start.
    pub error: Option<String>,
    /// Signals spoc received while the command ran (and passed on).
    pub signals_received: Vec<String>,
    /// Whether the audit records were read (false: `blocked` and `logged` are unknown).
    pub audit_read: bool,
    /// Why they could not be read.
    pub audit_unavailable: Option<String>,
    /// Calls the profile blocked.
    pub blocked: Vec<CallReport>,
    /// Calls the profile let through and logged (SCMP_ACT_LOG).
    pub logged: Vec<CallReport>,
    /// Seccomp records of other processes left out.
    pub other_records: usize,
    /// Audit records that could not be parsed.
    pub malformed_records: usize,
    /// Warnings about the report's completeness.
    pub warnings: Vec<String>,
}

/// One kind of call in the report.
#[derive(Debug, Serialize)]
pub struct CallReport {
    /// The syscall's name (`#<number>` when unknown).
    pub syscall: String,
    /// `SCMP_ARCH_*` of the call.
    pub arch: String,
    /// `SCMP_ACT_*` the profile took.
    pub action: String,
    /// The program that made it.
    pub program: String,
    /// How often.
    pub count: usize,
}

fn calls(found: &BTreeMap<Violation, usize>) -> Vec<CallReport> {
    found
        .iter()
        .map(|(v, n)| CallReport {
            syscall: v.syscall.clone(),
            arch: v.arch.to_string(),
            action: v.action.to_string(),
            program: v.exe.clone(),
            count: *n,
        })
        .collect()
}

impl RunReport {
    /// The report of `confined`, a run of `command` under profile `profile`.
    pub fn new(command: &[String], profile: &str, confined: &Confined) -> RunReport {
        let (started, exit_status, signal, exit_code, error) = match &confined.ended {
            Ended::Exited(s) => (true, s.code(), s.signal(), exit_code(*s), None),
            Ended::NotStarted(code, why) => (false, None, None, *code, Some(why.clone())),
        };
        let mut warnings = Vec::new();
        if let Some(a) = &confined.audit {
            if a.others > 0 {
                warnings.push(format!(
                    "{} seccomp records of other processes were left out ({})",
                    a.others, a.others_why
                ));
            }
            if a.malformed > 0 {
                warnings.push(format!("{} malformed audit records were skipped", a.malformed));
            }
            warnings.extend(a.rate_limited.clone());
        }
        RunReport {
            command: command.to_vec(),
            profile: profile.to_owned(),
            started,
            exit_status,
            signal,
            signal_name: signal.map(signal_name),
            exit_code,
            error,
            signals_received: confined.signals.iter().map(|s| signal_name(*s)).collect(),
            audit_read: confined.audit.is_some(),
            audit_unavailable: confined.audit_unavailable.clone(),
            blocked: confined.audit.as_ref().map(|a| calls(&a.blocked)).unwrap_or_default(),
            logged: confined.audit.as_ref().map(|a| calls(&a.logged)).unwrap_or_default(),
            other_records: confined.audit.as_ref().map_or(0, |a| a.others),
            malformed_records: confined.audit.as_ref().map_or(0, |a| a.malformed),
            warnings,
        }
    }
}

/// The exit code spoc passes on for a command that ended with `status`: its code, or 128+N
/// when signal N ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(exit::FOUND),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(u8::MAX),
        _ => exit::FOUND,
    }
}

/// The text report: every line starts with `spoc: ` or two spaces, names escaped.
pub fn text_report(r: &RunReport) -> String {
    let prog = clean(r.command.first().map_or("", String::as_str)).into_owned();
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    if let Some(why) = &r.error {
        line(format!("spoc: {why}"));
        return out;
    }
    for s in &r.signals_received {
        line(format!("spoc: received {s}; waited for {prog} to exit"));
    }
    if r.signal == Some(31) {
        line(format!(
            "spoc: {prog} was killed by SIGSYS: the profile denied a syscall with a kill or trap action"
        ));
    }
    if let Some(why) = &r.audit_unavailable {
        line(format!(
            "spoc: cannot list blocked calls: {} (run as root, or pass --no-violations)",
            clean(why)
        ));
    }
    if r.audit_read {
        let describe_all = |list: &[CallReport]| -> Vec<String> {
            list.iter()
                .map(|c| {
                    format!(
                        "  {}",
                        describe_call(&c.syscall, &c.arch, &c.action, &c.program, c.count)
                    )
                })
                .collect()
        };
        if r.blocked.is_empty() {
            line(format!("spoc: the profile blocked nothing {prog} did"));
        } else {
            line(format!("spoc: the profile blocked these calls of {prog}:"));
            describe_all(&r.blocked).into_iter().for_each(&mut line);
        }
        if !r.logged.is_empty() {
            line(format!(
                "spoc: the profile let these calls of {prog} through and logged them (SCMP_ACT_LOG):"
            ));
            describe_all(&r.logged).into_iter().for_each(&mut line);
        }
        for w in &r.warnings {
            line(format!("spoc: {}", clean(w)));
        }
    }
    out
}
