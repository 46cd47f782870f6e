//! Files and programs a recording saw: the ring buffer's `struct path_event`s decoded, their
//! paths made absolute, and accumulated with the union of the access seen.

use std::collections::{BTreeMap, BTreeSet};

use spo_model::observed::FileAccess;

/// `PATH_BUF` in `recorder.bpf.c`.
const PATH_BUF: usize = 1024;
/// Size of `struct path_event`.
pub(crate) const EVENT_SIZE: usize = 8 * 4 + 2 * PATH_BUF + 256;
/// `BASE_OK` in `recorder.bpf.c`: the kernel resolved the directory of a relative path.
const BASE_OK: u32 = 1;
const EVENT_OPEN: u32 = 1;
const EVENT_EXEC: u32 = 2;
const EVENT_MAP: u32 = 3;
/// `AT_FDCWD`.
const AT_FDCWD: i32 = -100;
const O_ACCMODE: u32 = 3;
const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;

/// What a path event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A file opened (open, openat, openat2, creat) that the call succeeded on.
    Open,
    /// A program executed (or the interpreter of a script).
    Exec,
    /// A file mapped executable by mmap(2) (a library); the path is absolute.
    Map,
}

/// One decoded `struct path_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathEvent {
    pub target: u32,
    pub pid: u32,
    pub kind: EventKind,
    pub flags: u32,
    pub dirfd: i32,
    pub path: String,
    /// The directory a relative path starts from, as the kernel walked it (task's root, across
    /// mounts); `None` when the path is absolute or the walk failed.
    pub base: Option<String>,
}

impl PathEvent {
    /// Decodes an event; `None` when the bytes are not one (a build mismatch).
    pub(crate) fn decode(bytes: &[u8]) -> Option<PathEvent> {
        if bytes.len() < EVENT_SIZE {
            return None;
        }
        let word = |i: usize| u32::from_ne_bytes([bytes[i * 4], bytes[i * 4 + 1], bytes[i * 4 + 2], bytes[i * 4 + 3]]);
        let len = (word(5) as usize).min(PATH_BUF);
        let raw = &bytes[32..32 + len];
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        let base = (word(6) == BASE_OK).then(|| {
            let start = 32 + PATH_BUF + (word(7) as usize).min(PATH_BUF);
            String::from_utf8_lossy(&bytes[start..32 + 2 * PATH_BUF]).into_owned()
        });
        Some(PathEvent {
            target: word(0),
            pid: word(1),
            kind: match word(2) {
                EVENT_OPEN => EventKind::Open,
                EVENT_EXEC => EventKind::Exec,
                EVENT_MAP => EventKind::Map,
                _ => return None,
            },
            flags: word(3),
            dirfd: word(4).cast_signed(),
            path: String::from_utf8_lossy(raw).into_owned(),
            base,
        })
    }

    /// The access an open with these flags asks for (read and exec for program and mapping
    /// events).
    pub(crate) fn access(&self) -> FileAccess {
        if self.kind != EventKind::Open {
            return FileAccess {
                read: true,
                exec: true,
                ..FileAccess::default()
            };
        }
        let mode = self.flags & O_ACCMODE;
        FileAccess {
            read: mode != O_WRONLY,
            write: mode == O_WRONLY || mode == O_RDWR || self.flags & (O_CREAT | O_TRUNC) != 0,
            exec: false,
        }
    }
}

/// Lexically cleans an absolute path: `.` and empty components dropped, `..` taken back.
pub(crate) fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// What the ring buffer reported for one recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub files: BTreeMap<String, FileAccess>,
    pub executables: BTreeSet<String>,
    /// Files mapped executable (libraries), kept apart from `files`.
    pub mapped: BTreeSet<String>,
    /// Relative paths whose base directory could not be found (the process was gone).
    pub unresolved: u64,
    /// New paths left out because the recording held [`MAX_PATHS`] already.
    pub dropped: u64,
}

/// The most distinct paths (files, programs and libraries together) one recording keeps: a
/// bound on the recorder's memory for a workload that opens endless new files. A recording that
/// reaches it says so ([`crate::RawRecording::lost_events`]).
pub const MAX_PATHS: usize = 65_536;

impl Resources {
    /// Adds `event`. A relative path starts from the directory the kernel walked, else from
    /// `base_of(pid, dirfd)` (`/proc/<pid>/cwd` or `/proc/<pid>/fd/<dirfd>`, while the process
    /// lives).
    pub(crate) fn add(&mut self, event: &PathEvent, base_of: impl Fn(u32, i32) -> Option<String>) {
        let absolute = if event.path.starts_with('/') {
            clean(&event.path)
        } else {
            match event.base.clone().or_else(|| base_of(event.pid, event.dirfd)) {
                Some(base) => clean(&format!("{base}/{}", event.path)),
                None => {
                    self.unresolved += 1;
                    return;
                }
            }
        };
        let known = match event.kind {
            EventKind::Map => self.mapped.contains(&absolute),
            EventKind::Exec | EventKind::Open => self.files.contains_key(&absolute),
        };
        if !known && self.files.len() + self.mapped.len() >= MAX_PATHS {
            self.dropped += 1;
            return;
        }
        match event.kind {
            EventKind::Map => {
                self.mapped.insert(absolute);
                return;
            }
            EventKind::Exec => {
                self.executables.insert(absolute.clone());
            }
            EventKind::Open => {}
        }
        let entry = self.files.entry(absolute).or_default();
        *entry = entry.union(event.access());
    }
}

/// The directory a relative path of `pid` starts from, read from `/proc` now.
pub(crate) fn proc_base(pid: u32, dirfd: i32) -> Option<String> {
    let link = if dirfd == AT_FDCWD {
        format!("/proc/{pid}/cwd")
    } else {
        format!("/proc/{pid}/fd/{dirfd}")
    };
    let target = std::fs::read_link(link).ok()?;
    target.to_str().filter(|t| t.starts_with('/')).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(target: u32, pid: u32, kind: u32, flags: u32, dirfd: i32, path: &str) -> Vec<u8> {
        encode_with_base(target, pid, kind, flags, dirfd, path, None)
    }

    fn encode_with_base(
        target: u32,
        pid: u32,
        kind: u32,
        flags: u32,
        dirfd: i32,
        path: &str,
        base: Option<&str>,
    ) -> Vec<u8> {
        let (status, off) = match base {
            Some(b) => (BASE_OK, (PATH_BUF - b.len()) as u32),
            None => (0, 0),
        };
        let mut bytes = Vec::new();
        for w in [
            target,
            pid,
            kind,
            flags,
            dirfd.cast_unsigned(),
            path.len() as u32 + 1,
            status,
            off,
        ] {
            bytes.extend(w.to_ne_bytes());
        }
        let mut buf = [0u8; PATH_BUF];
        buf[..path.len()].copy_from_slice(path.as_bytes());
        bytes.extend(buf);
        let mut base_buf = [0u8; PATH_BUF + 256];
        if let Some(b) = base {
            base_buf[PATH_BUF - b.len()..PATH_BUF].copy_from_slice(b.as_bytes());
        }
        bytes.extend(base_buf);
        bytes
    }

    #[test]
    fn the_kernels_base_wins_over_proc() {
        let e = PathEvent::decode(&encode_with_base(
            1,
            42,
            EVENT_OPEN,
            0,
            AT_FDCWD,
            "os-release",
            Some("/etc"),
        ))
        .expect("event");
        assert_eq!(e.base.as_deref(), Some("/etc"));
        let mut r = Resources::default();
        r.add(&e, |_, _| Some("/elsewhere".to_owned()));
        assert_eq!(r.files.keys().collect::<Vec<_>>(), ["/etc/os-release"]);
        let root = PathEvent::decode(&encode_with_base(1, 42, EVENT_OPEN, 0, AT_FDCWD, "x", Some("/"))).expect("event");
        r.add(&root, |_, _| None);
        assert!(r.files.contains_key("/x"));
    }

    #[test]
    fn decodes_events_and_their_access() {
        let e = PathEvent::decode(&encode(3, 42, EVENT_OPEN, O_RDWR | O_CREAT, AT_FDCWD, "/etc/x")).expect("event");
        assert_eq!(
            (e.target, e.pid, e.kind, e.dirfd, e.path.as_str()),
            (3, 42, EventKind::Open, AT_FDCWD, "/etc/x")
        );
        assert_eq!(
            e.access(),
            FileAccess {
                read: true,
                write: true,
                exec: false
            }
        );
        let ro = PathEvent::decode(&encode(3, 42, EVENT_OPEN, 0, AT_FDCWD, "/etc/passwd")).expect("event");
        assert_eq!(
            ro.access(),
            FileAccess {
                read: true,
                ..FileAccess::default()
            }
        );
        let wo = PathEvent::decode(&encode(3, 42, EVENT_OPEN, O_WRONLY | O_TRUNC, AT_FDCWD, "/tmp/o")).expect("event");
        assert!(!wo.access().read && wo.access().write);
        let ex = PathEvent::decode(&encode(3, 42, EVENT_EXEC, 0, AT_FDCWD, "/bin/sh")).expect("event");
        assert!(ex.access().exec);
        let map = PathEvent::decode(&encode(3, 42, EVENT_MAP, 0, 4, "/usr/lib/libc.so.6")).expect("event");
        assert_eq!(map.kind, EventKind::Map);
        let mut r = Resources::default();
        r.add(&map, |_, _| None);
        assert_eq!(r.mapped, BTreeSet::from(["/usr/lib/libc.so.6".to_owned()]));
        assert!(r.files.is_empty(), "a mapping is not an open: {:?}", r.files);
        assert_eq!(
            PathEvent::decode(&encode(3, 42, 9, 0, AT_FDCWD, "/x")),
            None,
            "unknown kind"
        );
        assert_eq!(PathEvent::decode(&[0; 10]), None, "short");
    }

    #[test]
    fn makes_paths_absolute_and_clean() {
        let mut r = Resources::default();
        let base = |pid: u32, dirfd: i32| match (pid, dirfd) {
            (42, AT_FDCWD) => Some("/home/u".to_owned()),
            (42, 5) => Some("/var/lib".to_owned()),
            _ => None,
        };
        for (pid, dirfd, path, flags) in [
            (42, AT_FDCWD, "notes.txt", 0),
            (42, 5, "../log/./app.log", O_WRONLY),
            (42, AT_FDCWD, "/etc//hosts", 0),
            (42, AT_FDCWD, "/etc/hosts", O_RDWR),
            (7, AT_FDCWD, "gone.txt", 0),
        ] {
            let e = PathEvent::decode(&encode(1, pid, EVENT_OPEN, flags, dirfd, path)).expect("event");
            r.add(&e, base);
        }
        let e = PathEvent::decode(&encode(1, 42, EVENT_EXEC, 0, AT_FDCWD, "/usr/bin/../bin/ls")).expect("event");
        r.add(&e, base);
        assert_eq!(
            r.files.keys().map(String::as_str).collect::<Vec<_>>(),
            ["/etc/hosts", "/home/u/notes.txt", "/usr/bin/ls", "/var/log/app.log"]
        );
        assert!(r.files["/etc/hosts"].read && r.files["/etc/hosts"].write);
        assert_eq!(r.executables, BTreeSet::from(["/usr/bin/ls".to_owned()]));
        assert_eq!(r.unresolved, 1);
        assert_eq!(clean("/../a/../../b"), "/b");
    }
}
