//! `spoc record [-o FILE] [--from-seccomp] -- CMD...`: run a command, record every syscall of
//! its process tree with the eBPF recorder, and write an allow-list SeccompProfile.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};

use spo_record::{
    LoadOptions, Progress, RawRecording, RecordOptions, RecordStart, Recorder, Selector, into_recording,
    mount_namespace_of,
};
use spo_seccomp::backend::{add_runtime_allowance, recording_filter, spec_from_recording};

use spo_model::validate::is_dns_subdomain;
use spo_seccomp::apply::{catch_relayed_signals, send_signal, signal_name, take_received_signals};

use super::output::{self, Format, clean, exit};
use super::run::{Ended, check_output_writable, find_program};
use super::violations::{UidField, own_uid};

pub const EXAMPLES: &str = "\
Examples:
  spoc record -o ls.yaml -- ls /
  spoc run -p ls.yaml -- ls /          # the same command, confined by what it was seen doing

  # A runc container, recorded from the point its profile will apply: put the filter
  # `spoc record --recording-filter` prints at linux.seccomp of the bundle's config.json, then
  spoc record --from-seccomp -t raw-seccomp -o profile.json -- runc run -b BUNDLE ID

  # A running container, until Ctrl-C or until its last process exits:
  spoc record --container 3f2a9c... -o web.yaml
  spoc record --mntns 4026532513 -o web.yaml      # by mount namespace (ls -l /proc/PID/ns/mnt)
  spoc record --cgroup /sys/fs/cgroup/system.slice/web.service -o web.yaml

  # Both kinds: -o web.yaml writes web.seccomp.yaml and web.apparmor.yaml, each a profile
  # named web that spoc convert and spoc merge take as it is:
  spoc record -t all -o web.yaml -- ./web-server

  # The summary as JSON on standard output (the profile then needs -o):
  spoc record --format json -o ls.yaml -- ls /

Needs root (or CAP_BPF and CAP_PERFMON) and a kernel with BTF (/sys/kernel/btf/vmlinux).
Started through sudo, the command runs as the invoking user (SUDO_UID/SUDO_GID) unless
--as-root is given. Ctrl-C reaches the command, and SIGINT, SIGTERM or SIGHUP sent to spoc
are passed on to it; spoc waits for it to exit and still writes the profile of what it did
until then. A recording of running processes ends at the first of them.
When the recorded command fails, the profile is written all the same and spoc exits 1
(--allow-failure: 0); --verify exits 2 when the confined rerun differs, 130 when interrupted.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProfileType {
    /// A SeccompProfile manifest.
    Seccomp,
    /// OCI runtime-spec seccomp JSON.
    RawSeccomp,
    /// An AppArmorProfile manifest (files, programs, libraries, sockets, capabilities).
    Apparmor,
    /// Both manifests, each in a file of its own named after -o (needed): `-o web.yaml` writes
    /// `web.seccomp.yaml` and `web.apparmor.yaml`.
    All,
}

impl ProfileType {
    /// Whether files, programs, sockets and capabilities must be recorded.
    fn needs_resources(self) -> bool {
        matches!(self, ProfileType::Apparmor | ProfileType::All)
    }
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Write the profile to FILE instead of standard output (`-`: standard output; a regular
    /// file is replaced atomically, a FIFO or device written into).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// How to print the summary: text on standard error, or one JSON or YAML document on
    /// standard output (the profile then needs -o FILE). The schema is in spoc's README.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 0 even when the recorded command failed (the profile is written either way).
    #[arg(long)]
    allow_failure: bool,
    /// What to write.
    #[arg(short = 't', long = "type", value_enum, default_value_t = ProfileType::Seccomp)]
    profile_type: ProfileType,
    /// metadata.name of the profile (default: the command's file name).
    #[arg(long)]
    name: Option<String>,
    /// Record each process only from the moment it installs a seccomp filter (its later
    /// children from birth): for a container runtime, exactly what the container's profile
    /// will judge. The runtime must install a filter: see --recording-filter.
    #[arg(long)]
    from_seccomp: bool,
    /// With --from-seccomp, leave out the syscalls a Go container runtime (runc) may make at
    /// any moment after installing the filter (futex, nanosleep, ...; see GO_RUNTIME_SYSCALLS in
    /// spo-seccomp). Without them the profile is tighter but the container may fail to start
    /// now and then.
    #[arg(long, requires = "from_seccomp")]
    no_runtime_allowance: bool,
    /// Print the OCI seccomp JSON of a filter that changes nothing, for the recording run of a
    /// container with --from-seccomp, and exit.
    #[arg(long, exclusive = true)]
    recording_filter: bool,
    /// Keep root for the command when spoc was started through sudo.
    #[arg(long)]
    as_root: bool,
    /// After writing the profile, run the command again confined by it (as `spoc run` does)
    /// and fail, listing them, if the profile blocked any call or the command's exit status
    /// changed. The command runs twice: only for commands that can.
    #[arg(long, conflicts_with_all = ["from_seccomp", "container", "mntns", "cgroup"])]
    verify: bool,
    /// Record the running container with this id (found in /proc/*/cgroup, or runc's state in
    /// /run/runc) instead of a command: its mount namespace is recorded.
    #[arg(long, value_name = "ID", conflicts_with_all = ["command", "from_seccomp", "mntns", "cgroup"])]
    container: Option<String>,
    /// Record every process of this mount namespace (the inode of /proc/PID/ns/mnt).
    #[arg(long, value_name = "INODE", conflicts_with_all = ["command", "from_seccomp", "cgroup"])]
    mntns: Option<u64>,
    /// Record every process of this cgroup v2 directory.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["command", "from_seccomp"])]
    cgroup: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(
        required_unless_present_any = ["recording_filter", "container", "mntns", "cgroup"],
        last = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// Set when SIGINT, SIGTERM or SIGHUP arrives: a recording of running processes ends and is
/// written.
static STOP: AtomicBool = AtomicBool::new(false);

/// The signals received while recording: each is passed on to the recorded command (unless
/// the terminal sent it to the command already) and ends a recording of running processes.
fn relay_signals(received: &mut Vec<i32>) {
    for r in take_received_signals() {
        received.push(r.signal);
        STOP.store(true, Ordering::SeqCst);
        if !r.from_terminal {
            for pid in own_children() {
                // A child gone meanwhile needs no signal.
                let _ = send_signal(pid, r.signal);
            }
        }
    }
}

/// The pids of this process's children (the recorded command), from
/// `/proc/self/task/*/children`.
fn own_children() -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
    }
    out
}

/// The two files `-t all -o base.yaml` writes: `base.seccomp.yaml`, `base.apparmor.yaml`.
pub fn split_outputs(output: &Path) -> (PathBuf, PathBuf) {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_else(|| ".yaml".to_owned());
    (
        output.with_file_name(format!("{stem}.seccomp{ext}")),
        output.with_file_name(format!("{stem}.apparmor{ext}")),
    )
}

/// Whether some process lives in mount namespace `inode`.
fn mount_namespace_exists(inode: u64) -> bool {
    std::fs::read_dir("/proc").is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok())
                && std::fs::metadata(e.path().join("ns/mnt"))
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == inode)
        })
    })
}

/// The pid of a process of container `id`: one whose `/proc/<pid>/cgroup` names the id (how
/// Kubernetes runtimes and systemd-managed runc place containers), else the init pid in runc's
/// state (`<runc root>/<id>/state.json`).
pub fn find_container_pid(id: &str, proc_root: &Path, runc_roots: &[&Path]) -> Result<u32> {
    if id.len() < 4 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("container id {id:?}: expected at least 4 characters of letters, digits, '-', '_' or '.'");
    }
    if let Ok(entries) = std::fs::read_dir(proc_root) {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            if cgroup
                .lines()
                .any(|l| l.rsplit('/').next().is_some_and(|leaf| leaf.contains(id)))
            {
                return Ok(pid);
            }
        }
    }
    for root in runc_roots {
        let state = root.join(id).join("state.json");
        if let Ok(text) = std::fs::read_to_string(&state) {
            let value: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("reading {}", state.display()))?;
            if let Some(pid) = value["init_process_pid"].as_u64().and_then(|p| u32::try_from(p).ok()) {
                return Ok(pid);
            }
        }
    }
    bail!("no running container {id}: no process has it in its cgroup, and runc has no state for it")
}

/// The user and group to run the command as: the one who ran sudo, when we are root through
/// sudo and `as_root` is off. `env` looks up an environment variable.
pub fn sudo_user(euid: u32, as_root: bool, env: impl Fn(&str) -> Option<String>) -> Result<Option<(u32, u32)>> {
    if euid != 0 || as_root {
        return Ok(None);
    }
    let (Some(uid), Some(gid)) = (env("SUDO_UID"), env("SUDO_GID")) else {
        return Ok(None);
    };
    let uid: u32 = uid
        .parse()
        .with_context(|| format!("SUDO_UID={uid:?} is not a user id"))?;
    let gid: u32 = gid
        .parse()
        .with_context(|| format!("SUDO_GID={gid:?} is not a group id"))?;
    Ok((uid != 0).then_some((uid, gid)))
}

/// What `spoc record --format json|yaml` prints (the text summary says the same).
#[derive(Debug, Serialize)]
pub struct RecordSummary {
    /// What was recorded: the command line, or `container ID`, `mount namespace N`, `cgroup DIR`.
    pub recorded: String,
    /// The profiles' metadata.name.
    pub name: String,
    /// The files written (empty: standard output).
    pub written: Vec<String>,
    /// Distinct syscalls in all.
    pub syscalls: usize,
    /// Distinct syscalls per `SCMP_ARCH_*`.
    pub syscalls_per_arch: BTreeMap<String, usize>,
    /// Resources seen (with -t apparmor or all).
    pub resources: Option<Resources>,
    /// How the recording ended (`exit status: 0`, `signal: 15 (SIGTERM)`, `stopped by SIGINT`).
    pub ended: String,
    /// The command's exit code, when it exited.
    pub exit_status: Option<i32>,
    /// The signal that ended the command, when one did.
    pub signal: Option<i32>,
    /// Signals spoc received and passed on.
    pub signals_received: Vec<String>,
    /// Warnings (possibly missed syscalls or files, unnamed numbers).
    pub warnings: Vec<String>,
}

/// Counts of what an AppArmor profile is made of.
#[derive(Debug, Serialize)]
pub struct Resources {
    /// Files opened.
    pub files: usize,
    /// Programs executed.
    pub programs: usize,
    /// Libraries mapped.
    pub libraries: usize,
    /// Socket kinds created.
    pub socket_kinds: usize,
    /// Capabilities the AppArmor profile allows (audited checks that succeeded).
    pub capabilities: usize,
}

/// A one-line live status on a terminal; silent otherwise.
struct Spinner {
    live: bool,
    frame: usize,
    command: String,
}

impl Spinner {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];

    fn new(full: &str) -> Spinner {
        let full = clean(full);
        let mut command: String = full.chars().take(40).collect();
        if command.len() < full.len() {
            command.push_str("...");
        }
        Spinner {
            live: std::io::stderr().is_terminal(),
            frame: 0,
            command,
        }
    }

    fn show(&mut self, progress: &Progress) {
        if !self.live {
            return;
        }
        self.frame = (self.frame + 1) % Self::FRAMES.len();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} recording `{}`: {} distinct syscalls, {:.1} s",
            Self::FRAMES[self.frame],
            self.command,
            progress.distinct_syscalls,
            progress.elapsed.as_secs_f64()
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.live {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
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
    if args.recording_filter {
        let mut json = String::from_utf8(spo_seccomp::oci::render_node_json(&recording_filter())?)
            .context("runtime JSON is UTF-8")?;
        json.push('\n');
        output::emit(args.output.as_deref(), json.as_bytes())?;
        return Ok(output::code(exit::OK));
    }
    // Everything that can be checked is checked before anything runs.
    if let Some(name) = &args.name
        && !is_dns_subdomain(name)
    {
        bail!(
            "--name {:?} is not a valid object name: use at most 253 lower-case letters, digits, '-' and '.', \
             starting and ending with a letter or digit",
            clean(name)
        );
    }
    let to_stdout = args.output.as_ref().is_none_or(|o| o.as_os_str() == "-");
    if args.profile_type == ProfileType::All && to_stdout {
        bail!("-t all writes two files named after -o FILE (FILE.seccomp.yaml, FILE.apparmor.yaml): give -o");
    }
    if args.format != Format::Text && to_stdout {
        bail!(
            "--format {:?} prints the summary on standard output: write the profile with -o FILE",
            args.format
        );
    }
    let outputs: Vec<PathBuf> = match (&args.output, args.profile_type) {
        (Some(o), ProfileType::All) => {
            let (a, b) = split_outputs(o);
            vec![a, b]
        }
        (Some(o), _) => vec![o.clone()],
        (None, _) => Vec::new(),
    };
    for o in &outputs {
        check_output_writable(o)?;
    }
    let selector = match (&args.container, args.mntns, &args.cgroup) {
        (Some(id), _, _) => {
            let pid = find_container_pid(id, Path::new("/proc"), &[Path::new("/run/runc")])?;
            let inode = mount_namespace_of(pid)
                .with_context(|| format!("reading the mount namespace of container {} (pid {pid})", clean(id)))?;
            Some(Selector::MountNamespace(inode))
        }
        (None, Some(inode), _) => {
            if !mount_namespace_exists(inode) {
                bail!("--mntns {inode}: no process is in that mount namespace (see ls -l /proc/PID/ns/mnt)");
            }
            Some(Selector::MountNamespace(inode))
        }
        (None, None, Some(dir)) => {
            if !dir.join("cgroup.procs").is_file() {
                bail!(
                    "--cgroup {}: not a cgroup v2 directory (it has no cgroup.procs)",
                    clean(&dir.display().to_string())
                );
            }
            Some(Selector::Cgroup(dir.clone()))
        }
        (None, None, None) => None,
    };
    if selector.is_none() {
        let prog = args.command.first().map_or("", String::as_str);
        if find_program(prog).is_none() {
            eprintln!(
                "spoc: command not found: {} (not a file, nor an executable in PATH)",
                clean(prog)
            );
            return Ok(output::code(exit::NOT_FOUND));
        }
    }
    let run_as = sudo_user(own_uid(UidField::Effective).unwrap_or(u32::MAX), args.as_root, |k| {
        std::env::var(k).ok()
    })?;
    if let Some((uid, gid)) = run_as {
        eprintln!("spoc: running the command as uid {uid}, gid {gid} (SUDO_UID/SUDO_GID); --as-root keeps root");
    }
    let options = RecordOptions {
        start: if args.from_seccomp {
            RecordStart::SeccompFilter
        } else {
            RecordStart::Exec
        },
        run_as,
        resources: args.profile_type.needs_resources(),
    };
    let what = match (&selector, &args.container) {
        (_, Some(id)) => format!("container {id}"),
        (Some(Selector::MountNamespace(inode)), None) => format!("mount namespace {inode}"),
        (Some(Selector::Cgroup(dir)), None) => format!("cgroup {}", dir.display()),
        (None, None) => args.command.join(" "),
    };
    let shown = clean(&what).into_owned();
    let mut recorder = Recorder::load_with(&LoadOptions {
        resources: options.resources,
        ..LoadOptions::default()
    })
    .context("loading the eBPF recorder")?;
    // A terminal's Ctrl-C goes to the whole foreground process group: a recorded command
    // decides what to do with it (the handler is reset to the default in it by execve) and
    // spoc waits for it to exit. SIGINT, SIGTERM and SIGHUP sent to spoc alone are passed on
    // to the command. A recording of running processes stops. Either way the profile is
    // written.
    catch_relayed_signals().context("catching SIGINT, SIGTERM and SIGHUP")?;
    let mut received = Vec::new();
    let mut spinner = Spinner::new(&what);
    let recorded = match &selector {
        Some(selector) => {
            // Said on the first progress report, which comes once the processes already there
            // are tracked: said earlier, it would promise a recording that has not begun.
            let mut announced = false;
            recorder.record_selected(selector, options.resources, &STOP, |p| {
                relay_signals(&mut received);
                if !announced {
                    announced = true;
                    eprintln!("spoc: recording {shown} until its last process exits or Ctrl-C");
                }
                spinner.show(p)
            })
        }
        None => recorder.record_command_with(&args.command, &options, |p| {
            relay_signals(&mut received);
            spinner.show(p)
        }),
    };
    spinner.clear();
    relay_signals(&mut received);
    let raw = match recorded {
        Ok(raw) => raw,
        Err(spo_record::RecordError::CommandNotFound { .. }) => {
            eprintln!("spoc: command not found: {}", clean(&args.command.join(" ")));
            return Ok(output::code(exit::NOT_FOUND));
        }
        Err(spo_record::RecordError::Spawn { source, .. }) => {
            eprintln!("spoc: cannot execute `{shown}`: {source}");
            return Ok(output::code(exit::CANNOT_EXECUTE));
        }
        Err(e) => return Err(e).with_context(|| format!("recording {shown}")),
    };
    if args.from_seccomp && raw.filter_starts == 0 {
        bail!(
            "`{shown}` installed no seccomp filter, so nothing was recorded (--from-seccomp records from the filter on): \
             give the container the filter `spoc record --recording-filter` prints"
        );
    }
    let mut warnings = Vec::new();
    if raw.untracked_processes > 0 {
        warnings.push(format!(
            "{} processes of the tree could not be tracked (the recorder's process table was full); \
             the profile may miss syscalls",
            raw.untracked_processes
        ));
    }
    if raw.skipped_runs > 0 {
        warnings.push(format!(
            "the kernel skipped {} runs of the recorder's programs while recording (a run of the same \
             program was in progress on that CPU); the profile may miss syscalls: record again",
            raw.skipped_runs
        ));
    }
    let seen: usize = raw.syscalls.values().map(|s| s.len()).sum();
    if seen == 0 {
        bail!(
            "no syscall of `{shown}` was seen, so no profile was written (an empty allow-list would deny \
             everything): check that the command, container, mount namespace or cgroup ran anything while recorded"
        );
    }
    let mut named = into_recording(&raw, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    if args.from_seccomp && !args.no_runtime_allowance {
        add_runtime_allowance(&mut named.recording);
    }
    if !named.unnamed.is_empty() {
        warnings.push(format!(
            "syscall numbers without a name were seen and will be blocked: {:?}",
            named.unnamed
        ));
    }
    let spec = spec_from_recording(&named.recording);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| match (&args.container, args.command.first()) {
            (Some(id), _) => profile_name_for(&format!("container-{}", id.chars().take(12).collect::<String>())),
            (None, Some(program)) => profile_name_for(program),
            (None, None) => "recorded".to_owned(),
        });
    let profile = spo_model::SeccompProfile::new(&name, spec);
    let problems = spo_model::SecurityProfile::validate(&profile);
    if problems.has_errors() {
        bail!("the recorded profile is invalid (a bug; please report it):\n{problems}");
    }
    let apparmor = || -> Result<String> {
        let made = spo_apparmor::profile_from_recording(&name, &named.recording);
        for dropped in &made.dropped {
            eprintln!(
                "spoc: note: not in the AppArmor profile: {}",
                clean(&dropped.to_string())
            );
        }
        let problems = spo_model::SecurityProfile::validate(&made.profile);
        if problems.has_errors() {
            bail!("the recorded AppArmor profile is invalid (a bug; please report it):\n{problems}");
        }
        spo_model::yaml::to_string(&made.profile).context("writing the AppArmor profile as YAML")
    };
    let seccomp_yaml = || spo_model::yaml::to_string(&profile).context("writing the profile as YAML");
    let texts: Vec<String> = match args.profile_type {
        ProfileType::Seccomp => vec![seccomp_yaml()?],
        ProfileType::RawSeccomp => {
            let mut json = String::from_utf8(spo_seccomp::oci::render_node_json(&profile.spec)?)
                .context("runtime JSON is UTF-8")?;
            json.push('\n');
            vec![json]
        }
        ProfileType::Apparmor => vec![apparmor()?],
        ProfileType::All => vec![seccomp_yaml()?, apparmor()?],
    };
    if options.resources && (raw.unresolved_paths > 0 || raw.lost_events > 0) {
        warnings.push(format!(
            "{} relative paths could not be resolved (their process was gone) and {} file events were lost; \
             the AppArmor profile may miss files",
            raw.unresolved_paths, raw.lost_events
        ));
    }
    if outputs.is_empty() {
        output::emit(None, texts.concat().as_bytes())?;
    } else {
        for (path, text) in outputs.iter().zip(&texts) {
            output::emit(Some(path), text.as_bytes())?;
        }
    }
    let summary = RecordSummary {
        recorded: what.clone(),
        name: name.clone(),
        written: outputs
            .iter()
            .filter(|p| p.as_os_str() != "-")
            .map(|p| p.display().to_string())
            .collect(),
        syscalls: named.recording.syscalls.values().map(|s| s.len()).sum(),
        syscalls_per_arch: named
            .recording
            .syscalls
            .iter()
            .map(|(a, s)| (a.to_string(), s.len()))
            .collect(),
        resources: options.resources.then_some(Resources {
            files: named.recording.files.len(),
            programs: named.recording.executables.len(),
            libraries: named.recording.libraries.len(),
            socket_kinds: named.recording.sockets.len(),
            capabilities: spo_apparmor::profile_from_recording(&name, &named.recording)
                .profile
                .spec
                .abstract_
                .as_ref()
                .and_then(|a| a.capability.as_ref())
                .and_then(|c| c.allowed_capabilities.as_ref())
                .map_or(0, Vec::len),
        }),
        ended: ended(&raw, &received),
        exit_status: raw.exit_status().and_then(|s| s.code()),
        signal: raw
            .exit_status()
            .and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        signals_received: received.iter().map(|s| signal_name(*s)).collect(),
        warnings,
    };
    match args.format.serialize(&summary)? {
        Some(doc) => output::emit(None, doc.as_bytes())?,
        None => eprint!("{}", text_summary(&summary)),
    }
    let failed = raw.exit_status().is_some_and(|s| !s.success());
    let interrupted = !received.is_empty();
    if failed && !interrupted {
        eprintln!(
            "spoc: `{shown}` failed ({}); the profile holds what it did until then{}",
            summary.ended,
            if args.allow_failure {
                ""
            } else {
                " (exit 1; --allow-failure: 0)"
            }
        );
    }
    if args.verify {
        if interrupted {
            eprintln!("spoc: verify: skipped: the recording was interrupted");
            return Ok(output::code(exit::INTERRUPTED));
        }
        return verify(&profile.spec, &args.command, raw.exit_status(), options.run_as);
    }
    if failed && !interrupted && !args.allow_failure {
        return Ok(output::code(exit::FOUND));
    }
    Ok(output::code(exit::OK))
}

/// The text summary, names escaped.
fn text_summary(s: &RecordSummary) -> String {
    let mut out = String::new();
    for w in &s.warnings {
        out.push_str(&format!("spoc: warning: {}\n", clean(w)));
    }
    let per_arch: Vec<String> = s.syscalls_per_arch.iter().map(|(a, n)| format!("{a}: {n}")).collect();
    let resources = s.resources.as_ref().map_or_else(String::new, |r| {
        format!(
            ", {} files, {} programs, {} libraries, {} socket kinds, {} capabilities",
            r.files, r.programs, r.libraries, r.socket_kinds, r.capabilities
        )
    });
    let written = if s.written.is_empty() {
        String::new()
    } else {
        let files: Vec<String> = s.written.iter().map(|w| clean(w).into_owned()).collect();
        format!("; profile written to {}", files.join(" and "))
    };
    out.push_str(&format!(
        "spoc: recorded {} distinct syscalls ({}){resources} from `{}` ({}){written}\n",
        s.syscalls,
        per_arch.join(", "),
        clean(&s.recorded),
        s.ended,
    ));
    out
}

/// `--verify`: runs `command` again confined by the recorded `spec` and judges the run
/// ([`verdict`]): 0 when it confirms the profile, 2 when not, 130 when interrupted.
fn verify(
    spec: &spo_model::seccomp::SeccompProfileSpec,
    command: &[String],
    recorded: Option<std::process::ExitStatus>,
    run_as: Option<(u32, u32)>,
) -> Result<ExitCode> {
    eprintln!(
        "spoc: verify: running `{}` again under the recorded profile",
        clean(&command.join(" "))
    );
    let confined = super::run::run_confined(spec, "the recorded profile", command, true, run_as)?;
    let report = super::run::RunReport::new(command, "", &confined);
    eprint!("{}", super::run::text_report(&report));
    if !confined.signals.is_empty() {
        let names: Vec<String> = confined.signals.iter().map(|s| signal_name(*s)).collect();
        eprintln!(
            "spoc: verify: interrupted by {}: the confined run was cut short, nothing was verified",
            names.join(", ")
        );
        return Ok(output::code(exit::INTERRUPTED));
    }
    let status = match &confined.ended {
        Ended::Exited(s) => *s,
        Ended::NotStarted(_, why) => {
            eprintln!("spoc: verify: {why}");
            return Ok(output::code(exit::VERIFY_FAILED));
        }
    };
    let (ok, message) = verdict(recorded, status, confined.blocked());
    eprintln!("spoc: verify: {message}");
    Ok(output::code(if ok { exit::OK } else { exit::VERIFY_FAILED }))
}

/// Whether a confined rerun confirms a recorded profile, and what to tell the user: it must
/// block nothing and end as the recorded run ended.
fn verdict(
    recorded: Option<std::process::ExitStatus>,
    confined: std::process::ExitStatus,
    blocked: Option<usize>,
) -> (bool, String) {
    let same_end = recorded.is_none_or(|r| r == confined);
    let ended = match recorded {
        Some(r) if !same_end => format!("it ended {confined} where the recorded run ended {r}"),
        _ => format!("it ended {confined}, as recorded"),
    };
    match blocked {
        Some(0) if same_end => (true, format!("the profile blocked nothing and {ended}")),
        Some(0) => (
            false,
            format!("the profile blocked nothing, but {ended}: the command behaves differently from run to run"),
        ),
        Some(n) => (
            false,
            format!(
                "the profile blocked {n} calls (listed above) and {ended}: the recorded run did not take the paths \
                 that make them; record again so that it does, or merge several recordings (spoc merge)"
            ),
        ),
        None if same_end => (
            true,
            format!("{ended}; the audit records could not be read, so blocked calls are not known"),
        ),
        None => (false, format!("{ended}; the audit records could not be read")),
    }
}

/// How the recording ended, for the summary.
fn ended(raw: &RawRecording, received: &[i32]) -> String {
    let by = |r: &[i32]| {
        let names: Vec<String> = r.iter().map(|s| signal_name(*s)).collect();
        names.join(", ")
    };
    match raw.exit_status() {
        Some(status) => match std::os::unix::process::ExitStatusExt::signal(&status) {
            Some(sig) => format!("killed by {}", signal_name(sig)),
            None => status.to_string(),
        },
        None if !received.is_empty() => format!("stopped by {}", by(received)),
        None if STOP.load(Ordering::SeqCst) => "stopped".to_owned(),
        None => "its last process exited".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn verification_needs_nothing_blocked_and_the_same_end() {
        let ok = std::process::ExitStatus::from_raw(0);
        let failed = std::process::ExitStatus::from_raw(256);
        let cases = [
            (
                Some(ok),
                ok,
                Some(0),
                true,
                "blocked nothing and it ended exit status: 0, as recorded",
            ),
            (Some(ok), failed, Some(0), false, "behaves differently"),
            (Some(ok), failed, Some(2), false, "blocked 2 calls"),
            (Some(failed), failed, Some(1), false, "blocked 1 calls"),
            (
                Some(ok),
                ok,
                None,
                true,
                "could not be read, so blocked calls are not known",
            ),
            (
                Some(ok),
                failed,
                None,
                false,
                "where the recorded run ended exit status: 0",
            ),
            (None, ok, Some(0), true, "blocked nothing"),
        ];
        for (recorded, confined, blocked, want_ok, says) in cases {
            let (ok, message) = verdict(recorded, confined, blocked);
            assert_eq!(ok, want_ok, "{message}");
            assert!(message.contains(says), "{message:?} lacks {says:?}");
        }
    }

    #[test]
    fn finds_a_container_by_cgroup_then_by_runc_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path().join("proc");
        let id = "3f2a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b";
        for (pid, cgroup) in [
            ("1", "0::/init.scope\n"),
            (
                "42",
                &*format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope\n"),
            ),
        ] {
            std::fs::create_dir_all(proc_root.join(pid)).expect("pid dir");
            std::fs::write(proc_root.join(pid).join("cgroup"), cgroup).expect("cgroup");
        }
        let no_runc: [&Path; 0] = [];
        assert_eq!(find_container_pid(id, &proc_root, &no_runc).expect("found"), 42);
        assert_eq!(find_container_pid(&id[..12], &proc_root, &no_runc).expect("prefix"), 42);

        let runc_root = dir.path().join("runc");
        std::fs::create_dir_all(runc_root.join("web")).expect("state dir");
        std::fs::write(runc_root.join("web/state.json"), r#"{"init_process_pid": 77}"#).expect("state");
        let err = find_container_pid("web1", &proc_root, &[&runc_root]).expect_err("no such container");
        assert!(err.to_string().contains("no running container web1"), "{err}");
        std::fs::rename(runc_root.join("web"), runc_root.join("webx")).expect("rename");
        assert_eq!(
            find_container_pid("webx", &proc_root, &[&runc_root]).expect("runc state"),
            77
        );

        for bad in ["", "ab", "../../etc", "a b c d"] {
            let err = find_container_pid(bad, &proc_root, &[&runc_root])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("container id"), "{bad}: {err}");
        }
    }

    #[test]
    fn drops_to_the_sudo_user_only_when_root_through_sudo() {
        let sudo = |k: &str| match k {
            "SUDO_UID" => Some("1000".to_owned()),
            "SUDO_GID" => Some("1001".to_owned()),
            _ => None,
        };
        assert_eq!(sudo_user(0, false, sudo).expect("valid"), Some((1000, 1001)));
        assert_eq!(sudo_user(0, true, sudo).expect("valid"), None, "--as-root");
        assert_eq!(sudo_user(1000, false, sudo).expect("valid"), None, "not root");
        assert_eq!(sudo_user(0, false, |_| None).expect("valid"), None, "not through sudo");
        let root_sudo = |_: &str| Some("0".to_owned());
        assert_eq!(sudo_user(0, false, root_sudo).expect("valid"), None, "sudo by root");
        let bad = |k: &str| Some(if k == "SUDO_UID" { "x1" } else { "0" }.to_owned());
        let err = sudo_user(0, false, bad).expect_err("not a number");
        assert!(err.to_string().contains("SUDO_UID=\"x1\""), "{err}");
    }
}
