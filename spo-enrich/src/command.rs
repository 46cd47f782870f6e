//! What a profile blocked for one command: the seccomp records of the command's processes,
//! counted per call (`spoc run`'s report, and any tool that runs a command under a profile).
//!
//! Which records are the command's: when the command runs in an audit session of its own
//! (every descendant inherits it), a record is the command's exactly when its `ses=` is that
//! session, however briefly the process lived ([`CommandScope::Session`]). Otherwise a record
//! counts when its pid is the command's or one of the descendants collected while it runs
//! ([`collect_descendants`], [`CommandScope::Pids`]); a descendant that lives less than one
//! collection interval is then missed, and its records counted as others'.

use std::collections::{BTreeMap, BTreeSet};

use spo_model::seccomp::{Arch, SeccompAction};

use crate::audit::{AuditRecord, SeccompRecord, parse_record};

/// Which processes are the command's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandScope {
    /// Every process of this audit session.
    Session(u32),
    /// These pids (the command and the descendants seen while it ran).
    Pids(BTreeSet<u32>),
}

impl CommandScope {
    /// Whether the record is of one of the command's processes.
    pub fn owns(&self, record: &SeccompRecord) -> bool {
        match self {
            CommandScope::Session(s) => record.session == Some(*s),
            CommandScope::Pids(pids) => pids.contains(&record.pid),
        }
    }
}

/// Adds the live descendants of `root` to `seen` (from `/proc/<pid>/task/*/children`).
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

/// The seccomp records in `lines` (a line may hold several kernel-log records), and how many
/// claimed to be records but could not be read.
pub fn seccomp_records<'a>(lines: impl IntoIterator<Item = &'a str>) -> (Vec<SeccompRecord>, usize) {
    let mut records = Vec::new();
    let mut malformed = 0;
    for line in lines {
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

/// One kind of call a profile did not simply allow, with how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The syscall's name (or `#<number>` when the table does not know it).
    pub syscall: String,
    /// The architecture of the call.
    pub arch: Arch,
    /// What the profile did.
    pub action: SeccompAction,
    /// The executable that made the call (its command name when the record has no `exe`).
    pub exe: String,
}

impl Violation {
    /// Whether the profile let the call through and only logged it (SCMP_ACT_LOG), rather
    /// than blocking it.
    pub fn is_logged(&self) -> bool {
        self.action == SeccompAction::Log
    }
}

/// The command's violations (counted) and how many records of other processes were left out.
/// `name_of` names a syscall number. LOG records (the profile's own SCMP_ACT_LOG rules) are
/// kept too, to be told apart as logged ([`Violation::is_logged`]).
pub fn violations(
    records: &[SeccompRecord],
    ours: &CommandScope,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditStamp;

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
        let ours = CommandScope::Pids(BTreeSet::from([10, 11]));
        let names = |_: Arch, nr: u32| (nr == 83).then_some("mkdir");
        let (found, others) = violations(&records, &ours, names);
        // By session (pids 10..19 are session 1 here): the same answer.
        assert_eq!(
            violations(&records, &CommandScope::Session(1), names),
            (found.clone(), others)
        );
        assert_eq!(others, 1);
        let got: Vec<(&str, SeccompAction, usize)> =
            found.iter().map(|(v, n)| (v.syscall.as_str(), v.action, *n)).collect();
        assert_eq!(
            got,
            [
                ("#999", SeccompAction::KillProcess, 1),
                ("mkdir", SeccompAction::Errno, 2)
            ]
        );
    }

    #[test]
    fn logged_calls_are_told_from_blocked_ones() {
        let (found, _) = violations(
            &[record(10, 83, SeccompAction::Log)],
            &CommandScope::Pids(BTreeSet::from([10])),
            |_, _| Some("mkdir"),
        );
        assert!(found.keys().all(Violation::is_logged));
    }

    #[test]
    fn records_are_found_in_kernel_log_and_auditd_lines() {
        let lines = [
            "5,1625,10772590099,-;audit: type=1326 audit(1795729387.496:1625): auid=0 uid=0 gid=0 ses=3 pid=42 comm=\"mkdir\" exe=\"/usr/bin/mkdir\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x7f code=0x50000",
            "type=SECCOMP msg=audit(1795729387.496:1626): auid=0 uid=0 gid=0 ses=3 pid=42 comm=\"mkdir\" exe=\"/usr/bin/mkdir\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x7f code=0x50000",
            "type=SECCOMP msg=audit(1795729387.496:1627): pid=",
            "6,1,1,-;usb 1-1: new device",
        ];
        let (records, malformed) = seccomp_records(lines);
        assert_eq!(records.len(), 2);
        assert_eq!(malformed, 1);
    }
}
