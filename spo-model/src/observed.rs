//! The neutral [`Recording`]: what a workload was seen doing, independent of any profile kind.
//!
//! Producers (the eBPF recorder, the audit log enricher) fill it; each backend turns it into its
//! own profile kind (`from_recording` of [`crate::contract::ProfileBackend`]). Everything is kept
//! in ordered sets so two recordings of the same behaviour serialize identically and merge by
//! plain set union.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::seccomp::Arch;

/// What was recorded and from whom.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// Who was recorded.
    pub target: RecordingTarget,
    /// Syscall names seen, per architecture of the calling task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub syscalls: BTreeMap<Arch, BTreeSet<String>>,
    /// Programs executed (absolute paths as the kernel resolved them).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub executables: BTreeSet<String>,
    /// Shared libraries mapped executable.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub libraries: BTreeSet<String>,
    /// Files opened, with the union of the access seen.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileAccess>,
    /// Sockets created.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sockets: BTreeSet<SocketUse>,
    /// Capabilities checked (lower case, no `cap_`), with whether the check was allowed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
    /// SELinux AVC denials seen in audit records.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub avc_denials: BTreeSet<AvcDenial>,
}

/// Who a recording is about.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecordingTarget {
    /// A human name: the command line, or `namespace/pod/container`.
    pub name: String,
    /// The container id, when the target is a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The mount namespace inode, when the target was selected by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_namespace: Option<u64>,
    /// The cgroup id, when the target was selected by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
}

/// The access seen to one file.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct FileAccess {
    /// Opened for reading.
    #[serde(default)]
    pub read: bool,
    /// Opened for writing (including create and truncate).
    #[serde(default)]
    pub write: bool,
    /// Executed or mapped executable.
    #[serde(default)]
    pub exec: bool,
}

impl FileAccess {
    /// The union of two accesses.
    pub fn union(self, other: FileAccess) -> FileAccess {
        FileAccess {
            read: self.read || other.read,
            write: self.write || other.write,
            exec: self.exec || other.exec,
        }
    }
}

/// A socket created, by its `socket(2)` arguments (names such as `AF_INET`, `SOCK_STREAM`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct SocketUse {
    /// Address family, such as `AF_INET`.
    pub domain: String,
    /// Socket type, such as `SOCK_STREAM`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Protocol number (0 for the family's default).
    #[serde(default)]
    pub protocol: u32,
}

/// One SELinux denial, reduced to what a policy rule needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct AvcDenial {
    /// The source context's type (the process).
    pub source_type: String,
    /// The target context's type.
    pub target_type: String,
    /// The object class, such as `file`.
    pub class: String,
    /// The permissions denied.
    pub permissions: BTreeSet<String>,
}

impl Recording {
    /// Adds everything `other` saw to this recording (the target stays this one's).
    pub fn merge(&mut self, other: &Recording) {
        for (arch, names) in &other.syscalls {
            self.syscalls.entry(*arch).or_default().extend(names.iter().cloned());
        }
        self.executables.extend(other.executables.iter().cloned());
        self.libraries.extend(other.libraries.iter().cloned());
        for (path, access) in &other.files {
            let e = self.files.entry(path.clone()).or_default();
            *e = e.union(*access);
        }
        self.sockets.extend(other.sockets.iter().cloned());
        for (cap, allowed) in &other.capabilities {
            let e = self.capabilities.entry(cap.clone()).or_insert(*allowed);
            *e = *e || *allowed;
        }
        self.avc_denials.extend(other.avc_denials.iter().cloned());
    }

    /// The distinct syscall names over every architecture.
    pub fn syscall_names(&self) -> BTreeSet<&str> {
        self.syscalls.values().flatten().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_a_union() {
        let mut a = Recording::default();
        a.syscalls.entry(Arch::X86_64).or_default().insert("read".into());
        a.files.insert(
            "/etc/passwd".into(),
            FileAccess {
                read: true,
                ..Default::default()
            },
        );
        let mut b = Recording::default();
        b.syscalls.entry(Arch::X86_64).or_default().insert("write".into());
        b.syscalls.entry(Arch::X86).or_default().insert("read".into());
        b.files.insert(
            "/etc/passwd".into(),
            FileAccess {
                write: true,
                ..Default::default()
            },
        );
        a.merge(&b);
        assert_eq!(a.syscall_names().into_iter().collect::<Vec<_>>(), vec!["read", "write"]);
        assert_eq!(a.syscalls.len(), 2);
        assert_eq!(
            a.files["/etc/passwd"],
            FileAccess {
                read: true,
                write: true,
                exec: false
            }
        );
        let json = serde_json::to_string(&a).expect("json");
        let back: Recording = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, a);
    }
}
