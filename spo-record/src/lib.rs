#![doc = include_str!("../README.md")]

mod bitmap;
mod events;
mod exits;
mod kernel_text;
mod launch;
mod loader;
mod names;
mod preflight;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitStatus;
use std::time::Duration;

use spo_model::observed::{FileAccess, Recording, RecordingTarget, SocketUse};
use spo_model::seccomp::Arch;

pub use exits::{EXIT_CGROUP_NAME, ExitLog, Exited, MAX_EXITED};
pub use loader::containers::{
    CGROUP_NAME_MAX, ContainerOptions, ContainerSeen, ContainerStart, ContainerWatch, WatchId, cgroup_name_problem,
};
pub use loader::{
    LoadOptions, Progress, RecordOptions, RecordStart, Recorder, Selector, cgroup_id, mount_namespace_of,
};
pub use preflight::KERNEL_BTF;

/// What a recording saw, with syscalls as the kernel numbers them. Naming them needs a syscall
/// table, which belongs to a backend: see [`into_recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecording {
    /// What was recorded.
    pub subject: Subject,
    /// Syscall numbers seen, per ABI of the calling task (x86-64 and, for 32-bit code, x86).
    pub syscalls: BTreeMap<Arch, BTreeSet<u32>>,
    /// Processes of the tree that could not be tracked because the recorder's process table was
    /// full: when not 0 the recording may be incomplete.
    pub untracked_processes: u64,
    /// Syscalls with a number too large to record (none exist on current kernels).
    pub out_of_range_syscalls: u64,
    /// With [`RecordStart::SeccompFilter`] (and a [`ContainerWatch`]), how many processes
    /// started being recorded by installing a filter, or for a container watch that starts at
    /// exec ([`ContainerStart::Exec`]) by exec'ing in the container (0: nothing was recorded
    /// because none did).
    pub filter_starts: u64,
    /// Files opened (absolute, cleaned paths) with the union of the access seen, programs
    /// included (with `exec`). Empty unless resources were recorded.
    pub files: BTreeMap<String, FileAccess>,
    /// Programs executed (and script interpreters).
    pub executables: BTreeSet<String>,
    /// Files mapped executable by mmap(2) (shared libraries, `dlopen`ed modules): absolute,
    /// cleaned paths as the recorded process's root sees them. Files no path names (memfd) are
    /// left out.
    pub mapped: BTreeSet<String>,
    /// Relative paths that could not be made absolute (their process was gone).
    pub unresolved_paths: u64,
    /// Sockets created, as (domain, type) numbers.
    pub sockets: BTreeSet<(u32, u32)>,
    /// Capabilities the kernel checked with auditing (CAP_* numbers), with whether a check
    /// allowed it: what AppArmor asks a profile about. Checks the kernel makes without auditing
    /// them (`CAP_OPT_NOAUDIT`: the memory overcommit heuristic asks for CAP_SYS_ADMIN on every
    /// writable mapping) are left out, as they are by AppArmor.
    pub capabilities: BTreeMap<u32, bool>,
    /// Capability checks left out of [`RawRecording::capabilities`] because the kernel made
    /// them without auditing them, or under other credentials than the task's own (an
    /// overlayfs copy-up in a container runs as whoever mounted the overlay: AppArmor asks
    /// that one's profile). Checks of a capability already recorded are not looked at,
    /// so this counts only some of them.
    pub unaudited_capability_checks: u64,
    /// Capability checks counted in [`RawRecording::capabilities`] although the recorder could
    /// not tell whether the kernel audited them (the kernel's symbols were unreadable, as with
    /// `kernel.kptr_restrict=2`, or the check came through an unknown path): when not 0,
    /// `capabilities` may hold more than the program needed.
    pub unclassified_capability_checks: u64,
    /// File and program events lost because the ring buffer was full, or left out because the
    /// recording held its bound of distinct paths (65,536) already.
    pub lost_events: u64,
    /// Runs of the recorder's programs the kernel skipped during the recording because a run
    /// of the same program was already in progress on that CPU (its per-program recursion
    /// guard, `recursion_misses` in `bpf_prog_info`). Counted machine-wide, so a skip may have
    /// concerned an unrelated process; when not 0 the recording may be incomplete.
    pub skipped_runs: u64,
    /// How long attaching the programs took when the recording started.
    pub attach_time: Duration,
}

/// What a recording was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A command the recorder started, and how it exited.
    Command {
        /// The command line.
        argv: Vec<String>,
        /// How it exited.
        exit_status: ExitStatus,
    },
    /// The processes of a mount namespace or cgroup (a container).
    Selected(Selector),
    /// A container recorded by a [`ContainerWatch`]: a child cgroup of a watched one.
    Container {
        /// The watched parent cgroup's name (a pod's).
        parent: String,
        /// The container's cgroup name.
        cgroup: String,
    },
}

impl RawRecording {
    /// Whether the recorded command exited with status 0 (false for selector recordings).
    pub fn succeeded(&self) -> bool {
        matches!(&self.subject, Subject::Command { exit_status, .. } if exit_status.success())
    }

    /// How the recorded command exited (`None` for selector recordings).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match &self.subject {
            Subject::Command { exit_status, .. } => Some(*exit_status),
            Subject::Selected(_) | Subject::Container { .. } => None,
        }
    }
}

/// A recording with its syscalls named, and the numbers no name was found for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRecording {
    /// The neutral recording, ready for a backend's `from_recording`.
    pub recording: Recording,
    /// Syscall numbers the table did not know: a profile made from `recording` would block them.
    pub unnamed: BTreeMap<Arch, BTreeSet<u32>>,
}

/// Names the syscalls of `raw` with `name_of` (for seccomp, the caller passes
/// `|arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr)`).
pub fn into_recording(raw: &RawRecording, name_of: impl Fn(Arch, u32) -> Option<&'static str>) -> NamedRecording {
    let target = match &raw.subject {
        Subject::Command { argv, .. } => RecordingTarget {
            name: argv.join(" "),
            ..RecordingTarget::default()
        },
        Subject::Selected(Selector::MountNamespace(inode)) => RecordingTarget {
            name: format!("mount namespace {inode}"),
            mount_namespace: Some(*inode),
            ..RecordingTarget::default()
        },
        Subject::Selected(Selector::Cgroup(path)) => RecordingTarget {
            name: format!("cgroup {}", path.display()),
            cgroup_id: cgroup_id(path),
            ..RecordingTarget::default()
        },
        Subject::Container { parent, cgroup } => RecordingTarget {
            name: format!("container cgroup {parent}/{cgroup}"),
            ..RecordingTarget::default()
        },
    };
    let mut recording = Recording {
        target,
        executables: raw.executables.clone(),
        ..Recording::default()
    };
    // A library is a file mapped executable that is not one of the programs; the read-only
    // open the loader made of it is covered by the library and not listed again as a file.
    recording.libraries = raw.mapped.difference(&raw.executables).cloned().collect();
    for (path, access) in &raw.files {
        if !(recording.libraries.contains(path) && !access.write && !access.exec) {
            recording.files.insert(path.clone(), *access);
        }
    }
    recording.sockets = raw
        .sockets
        .iter()
        .map(|&(domain, type_)| SocketUse {
            domain: names::address_family(domain),
            type_: names::socket_type(type_),
            protocol: 0,
        })
        .collect();
    recording.capabilities = raw
        .capabilities
        .iter()
        .map(|(&cap, &allowed)| (names::capability(cap), allowed))
        .collect();
    let mut unnamed: BTreeMap<Arch, BTreeSet<u32>> = BTreeMap::new();
    for (&arch, numbers) in &raw.syscalls {
        for &nr in numbers {
            match name_of(arch, nr) {
                Some(name) => {
                    recording.syscalls.entry(arch).or_default().insert(name.to_owned());
                }
                None => {
                    unnamed.entry(arch).or_default().insert(nr);
                }
            }
        }
    }
    NamedRecording { recording, unnamed }
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Missing privileges.
    #[error(
        "loading the eBPF recorder needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): run it as root or through sudo"
    )]
    NotPermitted,
    /// The kernel has no BTF.
    #[error("the kernel exposes no BTF at {path}: the eBPF recorder needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoKernelBtf {
        /// The path that is missing.
        path: &'static str,
    },
    /// The kernel lacks a tracepoint the recorder attaches to.
    #[error(
        "the kernel has no tracepoint {tracepoint}: the eBPF recorder needs CONFIG_FTRACE_SYSCALLS and CONFIG_TRACEPOINTS"
    )]
    MissingTracepoint {
        /// `subsystem/event`.
        tracepoint: &'static str,
    },
    /// libbpf could not open the embedded object.
    #[error("opening the embedded eBPF recorder object")]
    Open {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The kernel rejected the programs or maps (libbpf logs the verifier's reason on stderr).
    #[error("loading the eBPF recorder into the kernel (libbpf's log above names the failing program)")]
    Load {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A program did not attach.
    #[error("attaching eBPF program {program}")]
    Attach {
        /// The program's name in `recorder.bpf.c`.
        program: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The kernel did not say how often it skipped a program.
    #[error("reading the run counters of eBPF program {program}")]
    ProgramInfo {
        /// The program's name in `recorder.bpf.c`.
        program: &'static str,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// A map operation failed.
    #[error("{operation} in a BPF map")]
    Map {
        /// What was being done.
        operation: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The BPF C and the Rust decoder disagree on a value's layout (a build bug).
    #[error("BPF map {map} has {actual}-byte values where spo-record expects {expected}: rebuild spo-record")]
    LayoutMismatch {
        /// The map.
        map: &'static str,
        /// What the decoder expects.
        expected: usize,
        /// What the map has.
        actual: usize,
    },
    /// A cgroup name a [`ContainerWatch`] cannot match.
    #[error("cgroup name {name:?} {problem}")]
    BadCgroupName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A cgroup selector names no cgroup v2 directory.
    #[error("{} is not a cgroup v2 directory (it has no cgroup.procs)", path.display())]
    NoSuchCgroup {
        /// The path given.
        path: std::path::PathBuf,
    },
    /// `/proc` could not be listed.
    #[error("listing processes in /proc")]
    Proc {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A recording asked for programs the recorder was loaded without.
    #[error("the recorder was loaded without {what}")]
    NotLoaded {
        /// What is missing.
        what: &'static str,
    },
    /// No command was given.
    #[error("no command to record")]
    EmptyCommand,
    /// The program is not an executable file, directly or in `PATH`.
    #[error("command not found: {program} (not an executable file, nor one in PATH)")]
    CommandNotFound {
        /// The program as given.
        program: String,
    },
    /// The pipes that hold the command before exec could not be made.
    #[error("creating the pipe that holds the command until it is tracked")]
    Pipe {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The command did not start.
    #[error("starting {program}")]
    Spawn {
        /// The program as given.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for {program} to exit")]
    Wait {
        /// The program as given.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn names_what_the_table_knows_and_lists_the_rest() {
        let raw = RawRecording {
            subject: Subject::Command {
                argv: vec!["sh".into(), "-c".into(), "true".into()],
                exit_status: ExitStatus::from_raw(0),
            },
            syscalls: BTreeMap::from([
                (Arch::X86_64, BTreeSet::from([0, 59, 999])),
                (Arch::X86, BTreeSet::from([1])),
            ]),
            untracked_processes: 0,
            out_of_range_syscalls: 0,
            filter_starts: 0,
            files: BTreeMap::from([
                (
                    "/etc/hosts".to_owned(),
                    FileAccess {
                        read: true,
                        ..FileAccess::default()
                    },
                ),
                (
                    "/usr/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
                    FileAccess {
                        read: true,
                        ..FileAccess::default()
                    },
                ),
                (
                    "/usr/bin/sh".to_owned(),
                    FileAccess {
                        read: true,
                        exec: true,
                        ..FileAccess::default()
                    },
                ),
                (
                    "/tmp/out.so".to_owned(),
                    FileAccess {
                        write: true,
                        ..FileAccess::default()
                    },
                ),
            ]),
            executables: BTreeSet::from(["/usr/bin/sh".to_owned()]),
            // What was mapped executable decides, not the name: a plugin without `.so` is a
            // library, a written `.so` never mapped is a file, and the program's own mapping
            // stays a program.
            mapped: BTreeSet::from([
                "/usr/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
                "/opt/app/plugin.bin".to_owned(),
                "/usr/bin/sh".to_owned(),
            ]),
            unresolved_paths: 0,
            sockets: BTreeSet::from([(2, 1), (10, 2)]),
            capabilities: BTreeMap::from([(10, true), (12, false)]),
            unaudited_capability_checks: 0,
            unclassified_capability_checks: 0,
            lost_events: 0,
            skipped_runs: 0,
            attach_time: Duration::ZERO,
        };
        let names = |arch, nr| match (arch, nr) {
            (Arch::X86_64, 0) => Some("read"),
            (Arch::X86_64, 59) => Some("execve"),
            (Arch::X86, 1) => Some("exit"),
            _ => None,
        };
        let named = into_recording(&raw, names);
        assert_eq!(named.recording.target.name, "sh -c true");
        assert_eq!(
            named.recording.syscalls[&Arch::X86_64],
            BTreeSet::from(["read".into(), "execve".into()])
        );
        assert_eq!(named.recording.syscalls[&Arch::X86], BTreeSet::from(["exit".into()]));
        assert_eq!(named.unnamed, BTreeMap::from([(Arch::X86_64, BTreeSet::from([999]))]));
        // Libraries apart from files (a written .so is a file), programs kept as files too.
        let r = &named.recording;
        assert_eq!(
            r.libraries,
            BTreeSet::from([
                "/opt/app/plugin.bin".to_owned(),
                "/usr/lib/x86_64-linux-gnu/libc.so.6".to_owned()
            ])
        );
        assert_eq!(
            r.files.keys().map(String::as_str).collect::<Vec<_>>(),
            ["/etc/hosts", "/tmp/out.so", "/usr/bin/sh"]
        );
        assert_eq!(r.executables, BTreeSet::from(["/usr/bin/sh".to_owned()]));
        let sockets: Vec<(&str, &str)> = r
            .sockets
            .iter()
            .map(|s| (s.domain.as_str(), s.type_.as_str()))
            .collect();
        assert_eq!(sockets, [("AF_INET", "SOCK_STREAM"), ("AF_INET6", "SOCK_DGRAM")]);
        assert_eq!(
            r.capabilities,
            BTreeMap::from([("net_admin".to_owned(), false), ("net_bind_service".to_owned(), true)])
        );
    }
}
