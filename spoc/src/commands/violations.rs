//! What a profile blocked, from the kernel's audit records (`spoc run`).
//!
//! `spoc run` installs the filter with SECCOMP_FILTER_FLAG_LOG, so the kernel writes a
//! `type=1326` record for every call the profile did not simply allow (without the flag,
//! SCMP_ACT_ERRNO decisions are silent). The records go to auditd when it runs and to the kernel
//! log otherwise; we read both from where they ended when the command started.
//!
//! Which records are the command's: spoc starts a fresh audit session for itself before
//! starting the command (writing `/proc/self/loginuid`, which needs CAP_AUDIT_CONTROL), and every
//! descendant inherits it, so a record is the command's exactly when its `ses=` is that session,
//! however briefly the process lived. When that is not possible (not root, loginuid immutable),
//! a record counts when its pid is the command's or one of the descendants collected from
//! `/proc/<pid>/task/*/children` while the command runs; a descendant that lives less than one
//! polling interval is then missed, and its records are counted as unattributed, not shown.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use spo_enrich::audit::{AuditRecord, SeccompRecord, parse_record};
use spo_model::seccomp::{Arch, SeccompAction};

use super::output::clean;

/// Where the kernel's audit records land.
const KERNEL_LOG: &str = "/dev/kmsg";
const AUDITD_LOG: &str = "/var/log/audit/audit.log";
/// `O_NONBLOCK`: reading the kernel log must not wait for a next record.
const O_NONBLOCK: i32 = 0o4000;

/// The audit sources, positioned at their end.
pub struct AuditTail {
    kmsg: Option<File>,
    auditd: Option<(File, u64)>,
    /// Why a source could not be opened (shown when nothing could be read).
    pub unavailable: Vec<String>,
    lines: Vec<String>,
}

impl AuditTail {
    /// Opens the kernel log and auditd's log (when present) at their current end.
    pub fn open() -> AuditTail {
        let mut unavailable = Vec::new();
        let kmsg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(KERNEL_LOG)
            .and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f))
            .map_err(|e| unavailable.push(format!("{KERNEL_LOG}: {e}")))
            .ok();
        let auditd = Path::new(AUDITD_LOG).exists().then(|| {
            File::open(AUDITD_LOG)
                .and_then(|f| Ok((f.metadata()?.len(), f)))
                .map(|(len, f)| (f, len))
                .map_err(|e| unavailable.push(format!("{AUDITD_LOG}: {e}")))
                .ok()
        });
        AuditTail {
            kmsg,
            auditd: auditd.flatten(),
            unavailable,
            lines: Vec::new(),
        }
    }

    /// Whether records come from the kernel log only (rate limited by printk) rather than
    /// auditd.
    pub fn kernel_log_only(&self) -> bool {
        self.kmsg.is_some() && self.auditd.is_none()
    }

    /// Whether any source can be read.
    pub fn readable(&self) -> bool {
        self.kmsg.is_some() || self.auditd.is_some()
    }

    /// Reads what arrived since the last call.
    pub fn poll(&mut self) {
        if let Some(kmsg) = &mut self.kmsg {
            // One read returns one record; a record overwritten before we read it gives EPIPE.
            let mut buf = vec![0u8; 8192];
            loop {
                match kmsg.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.lines.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(32) => continue, // EPIPE: skipped records
                    Err(_) => break,
                }
            }
        }
        if let Some((file, offset)) = &mut self.auditd {
            let mut text = String::new();
            if file.seek(SeekFrom::Start(*offset)).is_ok() && file.read_to_string(&mut text).is_ok() {
                // Only whole lines; a partial last one is read again next time.
                let whole = text.rfind('\n').map_or(0, |i| i + 1);
                *offset += whole as u64;
                self.lines.extend(text[..whole].lines().map(str::to_owned));
            }
        }
    }

    /// Every seccomp record read so far; lines that are not records are skipped, malformed
    /// records counted.
    pub fn seccomp_records(&self) -> (Vec<SeccompRecord>, usize) {
        let mut records = Vec::new();
        let mut malformed = 0;
        for line in &self.lines {
            for part in line.lines() {
                match parse_record(part) {
                    Ok(Some(AuditRecord::Seccomp(r))) => records.push(r),
                    Ok(_) => {}
                    Err(_) => malformed += 1,
                }
            }
        }
        (records, malformed)
    }
}

/// Starts a new audit session for this process (and so for every process it starts from now
/// on) and returns its id. The login uid written is the one already set, else the user who ran
/// sudo, else the real uid. Fails without CAP_AUDIT_CONTROL or when the login uid is immutable.
pub fn start_audit_session() -> std::io::Result<u32> {
    let current: u32 = std::fs::read_to_string("/proc/self/loginuid")?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    let uid = if current != u32::MAX {
        current
    } else if let Some(sudo) = std::env::var("SUDO_UID").ok().and_then(|u| u.parse().ok()) {
        sudo
    } else {
        own_uid(UidField::Real).ok_or_else(|| std::io::Error::other("no Uid in /proc/self/status"))?
    };
    std::fs::write("/proc/self/loginuid", uid.to_string())?;
    let session: u32 = std::fs::read_to_string("/proc/self/sessionid")?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    if session == u32::MAX {
        return Err(std::io::Error::other("the kernel assigned no audit session"));
    }
    Ok(session)
}

/// One of the ids on the `Uid:` line of `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UidField {
    /// The real uid (first column).
    Real = 0,
    /// The effective uid (second column).
    Effective = 1,
}

/// This process's uid of kind `field`, from `/proc/self/status`.
pub(crate) fn own_uid(field: UidField) -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(field as usize)?
        .parse()
        .ok()
}

/// Which processes are the command's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// Every process of this audit session.
    Session(u32),
    /// These pids (the command and the descendants seen while it ran).
    Pids(BTreeSet<u32>),
}

impl Attribution {
    fn owns(&self, record: &SeccompRecord) -> bool {
        match self {
            Attribution::Session(s) => record.session == Some(*s),
            Attribution::Pids(pids) => pids.contains(&record.pid),
        }
    }
}

/// Adds the live descendants of `root` to `seen`.
pub fn collect_descendants(root: u32, seen: &mut BTreeSet<u32>) {
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                if seen.insert(child) {
                    queue.push(child);
                }
            }
        }
    }
}

/// One kind of blocked call, with how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The syscall's name (or `#<number>` when the table does not know it).
    pub syscall: String,
    /// The architecture of the call.
    pub arch: Arch,
    /// What the profile did.
    pub action: SeccompAction,
    /// The executable that made the call.
    pub exe: String,
}

/// The command's violations (counted) and how many records of other processes were left out.
/// `name_of` names a syscall number; `ours` says which processes are the command's. LOG records
/// (the profile's own SCMP_ACT_LOG rules) are kept too, to be reported as logged, not blocked
/// ([`Violation::is_logged`]): the profile asked to hear about them.
pub fn violations(
    records: &[SeccompRecord],
    ours: &Attribution,
    name_of: impl Fn(Arch, u32) -> Option<&'static str>,
) -> (BTreeMap<Violation, usize>, usize) {
    let mut found = BTreeMap::new();
    let mut others = 0;
    for r in records {
        if r.action == SeccompAction::Allow {
            continue;
        }
        if !ours.owns(r) {
            others += 1;
            continue;
        }
        let syscall = name_of(r.arch, r.syscall).map_or_else(|| format!("#{}", r.syscall), str::to_owned);
        let v = Violation {
            syscall,
            arch: r.arch,
            action: r.action,
            exe: r.exe.clone().or_else(|| r.comm.clone()).unwrap_or_else(|| "?".into()),
        };
        *found.entry(v).or_insert(0) += 1;
    }
    (found, others)
}

impl Violation {
    /// Whether the profile let the call through and only logged it (SCMP_ACT_LOG), rather
    /// than blocking it.
    pub fn is_logged(&self) -> bool {
        self.action == SeccompAction::Log
    }
}

/// The report line of one violation, escaped for a terminal (the program's name is the
/// program's to choose).
#[cfg(test)]
fn describe(v: &Violation, count: usize) -> String {
    describe_call(&v.syscall, v.arch.as_str(), v.action.as_str(), &v.exe, count)
}

/// The report line of a call, escaped for a terminal (the program's name is the program's to
/// choose): `mkdir [SCMP_ARCH_X86_64] SCMP_ACT_ERRNO by /usr/bin/mkdir, 2
/// times`, names escaped.
pub fn describe_call(syscall: &str, arch: &str, action: &str, program: &str, count: usize) -> String {
    let times = if count == 1 {
        String::new()
    } else {
        format!(", {count} times")
    };
    format!("{} [{arch}] {action} by {}{times}", clean(syscall), clean(program))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_enrich::audit::AuditStamp;

    fn record(pid: u32, syscall: u32, action: SeccompAction) -> SeccompRecord {
        SeccompRecord {
            stamp: AuditStamp {
                seconds: 1,
                millis: 0,
                serial: 1,
            },
            pid,
            session: Some(pid / 10),
            comm: Some("mkdir".into()),
            exe: Some("/usr/bin/mkdir".into()),
            arch: Arch::X86_64,
            syscall,
            action,
        }
    }

    #[test]
    fn counts_the_commands_violations_and_leaves_out_other_processes() {
        let records = [
            record(10, 83, SeccompAction::Errno),
            record(11, 83, SeccompAction::Errno),
            record(99, 83, SeccompAction::Errno),
            record(10, 999, SeccompAction::KillProcess),
            record(10, 0, SeccompAction::Allow),
        ];
        let ours = Attribution::Pids(BTreeSet::from([10, 11]));
        let names = |_: Arch, nr: u32| (nr == 83).then_some("mkdir");
        let (found, others) = violations(&records, &ours, names);
        // By session (pids 10..19 are session 1 here): the same answer.
        assert_eq!(
            violations(&records, &Attribution::Session(1), names),
            (found.clone(), others)
        );
        assert_eq!(others, 1);
        let lines: Vec<String> = found.iter().map(|(v, n)| describe(v, *n)).collect();
        assert_eq!(
            lines,
            vec![
                "#999 [SCMP_ARCH_X86_64] SCMP_ACT_KILL_PROCESS by /usr/bin/mkdir".to_owned(),
                "mkdir [SCMP_ARCH_X86_64] SCMP_ACT_ERRNO by /usr/bin/mkdir, 2 times".to_owned(),
            ]
        );
    }

    #[test]
    fn logged_calls_are_told_from_blocked_ones_and_names_are_escaped() {
        let mut logged = record(10, 83, SeccompAction::Log);
        logged.exe = Some("/tmp/evil\nspoc: the profile blocked nothing\x1b[2J".into());
        let (found, _) = violations(&[logged], &Attribution::Pids(BTreeSet::from([10])), |_, _| {
            Some("mkdir")
        });
        let (v, n) = found.iter().next().expect("one");
        assert!(v.is_logged());
        assert_eq!(
            describe(v, *n),
            "mkdir [SCMP_ARCH_X86_64] SCMP_ACT_LOG by /tmp/evil\\nspoc: the profile blocked nothing\\x1b[2J"
        );
    }
}
