//! Who made an audit record: pid -> container id -> pod, namespace and container name.
//!
//! The kernel names a pid. [`Attributor`] looks the process up in `/proc` when the record is
//! read: its cgroup path holds the container id in every runtime's form (containerd, CRI-O,
//! Docker; cgroupfs and systemd drivers; cgroup v1 and v2: the last run of 64 hex digits, see
//! [`container_id_from_cgroup`]). A [`PodIndex`] fed by a watch of the node's pods turns the id
//! into the pod's namespace and name and the container's name.
//!
//! Processes that are gone by the time their record is read: every process looked up is
//! remembered in a [`ProcessCache`] bounded by count (oldest out first), so later records of a
//! process that has exited meanwhile are still attributed. A pid the kernel reused is told
//! apart by its start time: a live process that started after the record was written is not
//! the one that made it, and then the remembered one is used, if any. A process that exits
//! before its first record is read and was never seen is reported without a container (the
//! node only) and counted; the enricher reads records within a poll interval of their writing,
//! so this is the short-lived process that logged once and exited at once.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

/// A container id: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// The id in `text` when it is exactly 64 hex digits (after an optional `runtime://`
    /// prefix, as pod statuses write it).
    pub fn parse(text: &str) -> Option<ContainerId> {
        let id = text.rsplit_once("://").map_or(text, |(_, id)| id);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| ContainerId(id.to_ascii_lowercase()))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The container id in `/proc/<pid>/cgroup` text: the last run of exactly 64 hex digits in
/// it (`…/pod<uid>/<id>` with cgroupfs, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope` with systemd, `/docker/<id>`), or `None` for a process outside any
/// container.
pub fn container_id_from_cgroup(text: &str) -> Option<ContainerId> {
    let b = text.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        if i - start == 64 {
            found = Some(start);
        }
    }
    found.map(|s| ContainerId(text[s..s + 64].to_ascii_lowercase()))
}

/// A container of a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The profile a log recording records for this container (the pod's
    /// `io.containers.trace-logs/<container>` annotation), if any.
    pub record_profile: Option<String>,
}

/// Container id -> container, for the pods on this node, bounded by count.
#[derive(Debug)]
pub struct PodIndex {
    capacity: usize,
    containers: HashMap<ContainerId, ContainerInfo>,
    /// The ids of each pod (namespace, name), to replace or drop them together.
    pods: HashMap<(String, String), Vec<ContainerId>>,
}

impl PodIndex {
    /// An index holding at most `capacity` containers.
    pub fn new(capacity: usize) -> PodIndex {
        PodIndex {
            capacity,
            containers: HashMap::new(),
            pods: HashMap::new(),
        }
    }

    /// Sets a pod's containers (from its status: init, regular and ephemeral), replacing what
    /// the index had for it. Returns false, keeping the old entries, when the index is full.
    pub fn set_pod(&mut self, namespace: &str, pod: &str, containers: Vec<(ContainerId, ContainerInfo)>) -> bool {
        let key = (namespace.to_owned(), pod.to_owned());
        let old = self.pods.get(&key).map_or(0, Vec::len);
        if self.containers.len() - old + containers.len() > self.capacity {
            return false;
        }
        self.remove_pod(namespace, pod);
        let ids = containers.iter().map(|(id, _)| id.clone()).collect();
        self.containers.extend(containers);
        self.pods.insert(key, ids);
        true
    }

    /// Forgets a pod (deleted, or moved off this node).
    pub fn remove_pod(&mut self, namespace: &str, pod: &str) {
        if let Some(ids) = self.pods.remove(&(namespace.to_owned(), pod.to_owned())) {
            for id in ids {
                self.containers.remove(&id);
            }
        }
    }

    /// The container with this id.
    pub fn get(&self, id: &ContainerId) -> Option<&ContainerInfo> {
        self.containers.get(id)
    }

    /// How many containers the index holds.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }
}

/// What `/proc` says of a live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The pid.
    pub pid: u32,
    /// When it started, in milliseconds since the epoch.
    pub started_ms: u64,
    /// Its container, if it runs in one.
    pub container: Option<ContainerId>,
    /// The executable.
    pub executable: Option<String>,
    /// The command line, arguments joined by spaces, cut at 4 KiB.
    pub cmdline: Option<String>,
    /// Real user and group ids.
    pub uid: Option<u32>,
    /// Real group id.
    pub gid: Option<u32>,
}

/// Looks processes up (`/proc` on a node: [`ProcFs`]; tests give their own).
pub trait ProcessSource {
    /// The live process with this pid, if there is one.
    fn lookup(&self, pid: u32) -> Option<ProcessInfo>;
    /// When the live process with this pid started (milliseconds since the epoch): a cheaper
    /// look that tells whether a remembered process is still the one with the pid.
    fn started_ms(&self, pid: u32) -> Option<u64> {
        self.lookup(pid).map(|p| p.started_ms)
    }
    /// A process with this pid that had exited by now but was alive at `record_ms`
    /// (milliseconds since the epoch), from a record of exits kept outside `/proc` (on a
    /// node: spo-record's exit log); `None` when there is no such record.
    fn exited(&self, pid: u32, record_ms: u64) -> Option<ProcessInfo> {
        let _ = (pid, record_ms);
        None
    }
}

/// How much the process cache may hold: a count and a byte budget, whichever is reached first
/// (a node with long command lines reaches the bytes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    /// Processes remembered at most.
    pub processes: usize,
    /// Bytes of entries (their strings included) at most.
    pub bytes: usize,
}

impl CacheBounds {
    /// A node's: 16,384 processes within 8 MiB.
    pub const NODE: CacheBounds = CacheBounds {
        processes: 16_384,
        bytes: 8 << 20,
    };

    /// `processes` processes within the node's byte budget.
    pub fn processes(processes: usize) -> CacheBounds {
        CacheBounds {
            processes,
            ..CacheBounds::NODE
        }
    }
}

impl ProcessInfo {
    /// The bytes a remembered process takes: the entry, its strings, and the map's and the
    /// eviction queue's share.
    pub fn footprint(&self) -> usize {
        const ENTRY: usize = std::mem::size_of::<(u32, (Arc<ProcessInfo>, u64))>()
            + std::mem::size_of::<ProcessInfo>()
            + 2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<u32>()
            + 16;
        ENTRY
            + self.executable.as_ref().map_or(0, String::capacity)
            + self.cmdline.as_ref().map_or(0, String::capacity)
            + self.container.as_ref().map_or(0, |c| c.0.capacity())
    }
}

/// The processes looked up so far, bounded by count and bytes: the oldest lookups go first.
#[derive(Debug)]
pub struct ProcessCache {
    bounds: CacheBounds,
    bytes: usize,
    /// Each process, and the record time at which it was last known to hold its pid.
    by_pid: HashMap<u32, (Arc<ProcessInfo>, u64)>,
    order: VecDeque<u32>,
}

impl ProcessCache {
    /// A cache within `bounds` (at least one process is always kept).
    pub fn new(bounds: CacheBounds) -> ProcessCache {
        ProcessCache {
            bounds: CacheBounds {
                processes: bounds.processes.max(1),
                bytes: bounds.bytes,
            },
            bytes: 0,
            by_pid: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers a process (replacing what was remembered of its pid), known to hold its pid
    /// at record time `verified_ms`.
    pub fn insert(&mut self, mut info: ProcessInfo, verified_ms: u64) {
        if let Some(e) = info.executable.as_mut() {
            e.shrink_to_fit();
        }
        if let Some(c) = info.cmdline.as_mut() {
            c.shrink_to_fit();
        }
        let pid = info.pid;
        self.bytes += info.footprint();
        match self.by_pid.insert(pid, (Arc::new(info), verified_ms)) {
            Some((old, _)) => self.bytes -= old.footprint(),
            None => self.order.push_back(pid),
        }
        while self.by_pid.len() > self.bounds.processes || (self.bytes > self.bounds.bytes && self.by_pid.len() > 1) {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((old, _)) = self.by_pid.remove(&oldest) {
                self.bytes -= old.footprint();
            }
        }
    }

    /// The bytes the remembered processes take (see [`ProcessInfo::footprint`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What was remembered of this pid.
    pub fn get(&self, pid: u32) -> Option<&Arc<ProcessInfo>> {
        self.by_pid.get(&pid).map(|(info, _)| info)
    }

    /// Notes that the process held its pid at record time `record_ms`. The latest record's
    /// time is kept even when it is earlier than the one before: the wall clock may have been
    /// stepped back, and trust reaches [`TRUST_MS`] either side of the kept time only.
    fn verified(&mut self, pid: u32, record_ms: u64) {
        if let Some((_, at)) = self.by_pid.get_mut(&pid) {
            *at = record_ms;
        }
    }

    /// How many processes are remembered.
    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }
}

/// Who made a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// A container of a pod on this node.
    Pod {
        /// The container.
        info: ContainerInfo,
        /// Its id.
        id: ContainerId,
    },
    /// A container that no pod on this node has (yet): the runtime's own, or a pod the watch
    /// has not delivered.
    Container(ContainerId),
    /// A process outside any container: the node itself.
    Node,
    /// A process gone before it could be looked up, never seen before.
    Unknown,
}

/// Attributes records to pods, remembering what it saw.
#[derive(Debug)]
pub struct Attributor<S> {
    source: S,
    cache: ProcessCache,
    /// Records attributed from the cache because the process was gone or its pid reused.
    pub from_cache: u64,
    /// Records of processes that were gone and never seen.
    pub unknown: u64,
    /// Records attributed from the source's record of exits (gone, never seen in `/proc`).
    pub from_exits: u64,
    /// Records attributed from the cache without reading `/proc`.
    pub warm: u64,
}

/// How long (in record time) a remembered process is trusted to hold its pid without looking
/// at `/proc` again. A pid is reused only after the kernel went through `pid_max` others
/// (4,194,304 on 64-bit machines): within a second only a fork storm could do it.
pub const TRUST_MS: u64 = 1000;

/// A process that started this long after a record's time is not the one that wrote it (the
/// start time is known to the clock tick, the record's time to the millisecond).
const START_SLACK_MS: u64 = 20;

impl<S: ProcessSource> Attributor<S> {
    /// An attributor looking processes up in `source`, remembering processes within `bounds`.
    pub fn new(source: S, bounds: CacheBounds) -> Attributor<S> {
        Attributor {
            source,
            cache: ProcessCache::new(bounds),
            from_cache: 0,
            unknown: 0,
            from_exits: 0,
            warm: 0,
        }
    }

    /// The process that made a record written at `record_ms` (milliseconds since the epoch)
    /// naming `pid`.
    ///
    /// A remembered process that started before the record is it when it was known to hold
    /// the pid within [`TRUST_MS`] of the record's time (no `/proc` read: the warm path), or
    /// when `/proc` shows the same start time (within 20 ms: starts are turned
    /// into wall time at each look), no process, or one started after the record. Otherwise the
    /// live process is looked up and remembered, unless it started after the record (the pid
    /// was reused), in which case the record's process is unknown.
    pub fn process(&mut self, pid: u32, record_ms: u64) -> Option<Arc<ProcessInfo>> {
        if let Some((seen, verified)) = self.cache.by_pid.get(&pid)
            && seen.started_ms <= record_ms + START_SLACK_MS
        {
            let (started, verified) = (seen.started_ms, *verified);
            // Either side: a process alive at the verified time and started before the
            // record held the pid at the record's time too (a pid is held for one unbroken
            // stretch), unless the wall clock was stepped in between, which a window of a
            // second either side keeps to a second's worth of records.
            if record_ms.abs_diff(verified) <= TRUST_MS {
                self.warm += 1;
                return self.cache.get(pid).cloned();
            }
            let still = match self.source.started_ms(pid) {
                Some(now) if now.abs_diff(started) <= START_SLACK_MS => true,
                // Gone, or reused after the record: the record is the remembered one's.
                None => false,
                Some(now) if now > record_ms + START_SLACK_MS => false,
                // Another process that started before the record holds the pid now.
                Some(_) => return self.lookup(pid, record_ms),
            };
            if still {
                self.cache.verified(pid, record_ms);
            } else {
                self.from_cache += 1;
            }
            return self.cache.get(pid).cloned();
        }
        self.lookup(pid, record_ms)
    }

    fn lookup(&mut self, pid: u32, record_ms: u64) -> Option<Arc<ProcessInfo>> {
        match self.source.lookup(pid) {
            Some(live) if live.started_ms <= record_ms + START_SLACK_MS => {
                self.cache.insert(live, record_ms);
                self.cache.get(pid).cloned()
            }
            // Gone (or the pid reused after the record): the exits kept outside /proc may
            // still know the process that wrote it.
            _ => match self.source.exited(pid, record_ms) {
                Some(gone) => {
                    self.from_exits += 1;
                    self.cache.insert(gone, record_ms);
                    self.cache.get(pid).cloned()
                }
                None => {
                    self.unknown += 1;
                    None
                }
            },
        }
    }

    /// Who made a record written at `record_ms` naming `pid`, with the process if known.
    pub fn attribute(&mut self, pid: u32, record_ms: u64, pods: &PodIndex) -> (Attribution, Option<Arc<ProcessInfo>>) {
        let Some(process) = self.process(pid, record_ms) else {
            return (Attribution::Unknown, None);
        };
        let who = match &process.container {
            None => Attribution::Node,
            Some(id) => match pods.get(id) {
                Some(info) => Attribution::Pod {
                    info: info.clone(),
                    id: id.clone(),
                },
                None => Attribution::Container(id.clone()),
            },
        };
        (who, Some(process))
    }

    /// The remembered processes.
    pub fn cache(&self) -> &ProcessCache {
        &self.cache
    }
}

/// The real `/proc` (or one mounted elsewhere, such as a node's `/proc` in a container at
/// `hostProcVolumePath`).
///
/// A process's start is kept by the kernel in clock ticks since boot; it is turned into wall
/// time with the wall clock's offset from the boot clock *at the moment of the look*, as the
/// kernel stamps records with the wall clock of their moment. `btime` in `/proc/stat` is not
/// used: it is whole seconds (starts up to a second early), and read once it would stay on the
/// clock of that read, so after the wall clock is stepped (NTP, an operator's `date -s`) every
/// process started since would look younger than its own records.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: std::path::PathBuf,
    ticks_per_second: u64,
}

impl ProcFs {
    /// The `/proc` at `root` (its `stat` must be readable: a `/proc`, not any directory).
    pub fn new(root: impl Into<std::path::PathBuf>) -> std::io::Result<ProcFs> {
        let root = root.into();
        std::fs::metadata(root.join("stat"))?;
        Ok(ProcFs {
            root,
            ticks_per_second: procfs::ticks_per_second().max(1),
        })
    }

    /// The wall time (milliseconds since the epoch) of a start `ticks` after boot, on the wall
    /// clock as it is now.
    fn wall_ms(&self, ticks: u64) -> Option<u64> {
        let since_boot_ns = i128::from(ticks) * 1_000_000_000 / i128::from(self.ticks_per_second);
        u64::try_from((wall_minus_boot_ns() + since_boot_ns) / 1_000_000).ok()
    }
}

/// The wall clock's offset from the boot clock now, in nanoseconds: the wall time at boot as
/// the wall clock sees it today.
fn wall_minus_boot_ns() -> i128 {
    use rustix::time::{ClockId, clock_gettime};
    let ns = |t: rustix::time::Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let boot = ns(clock_gettime(ClockId::Boottime));
    let wall = ns(clock_gettime(ClockId::Realtime));
    wall - boot
}

impl ProcessSource for ProcFs {
    fn started_ms(&self, pid: u32) -> Option<u64> {
        let process = procfs::process::Process::new_with_root(self.root.join(pid.to_string())).ok()?;
        let stat = process.stat().ok()?;
        self.wall_ms(stat.starttime)
    }

    fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
        let process = procfs::process::Process::new_with_root(self.root.join(pid.to_string())).ok()?;
        let stat = process.stat().ok()?;
        let started_ms = self.wall_ms(stat.starttime)?;
        let cgroup = std::fs::read_to_string(self.root.join(pid.to_string()).join("cgroup")).ok()?;
        let status = process.status().ok();
        let mut cmdline = process.cmdline().ok().map(|args| args.join(" "));
        if let Some(c) = cmdline.as_mut()
            && c.len() > 4096
        {
            let mut end = 4096;
            while !c.is_char_boundary(end) {
                end -= 1;
            }
            c.truncate(end);
        }
        Some(ProcessInfo {
            pid,
            started_ms,
            container: container_id_from_cgroup(&cgroup),
            executable: process.exe().ok().map(|p| p.to_string_lossy().into_owned()),
            cmdline,
            uid: status.as_ref().map(|s| s.ruid),
            gid: status.as_ref().map(|s| s.rgid),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    const ID: &str = "4e2a1c8b7f0d9e3a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";

    #[test]
    fn container_ids_in_every_runtimes_cgroup_form() {
        for (form, text) in [
            (
                "cgroupfs v1",
                format!("12:memory:/kubepods/burstable/pod1f2e-aa/{ID}\n0::/\n"),
            ),
            (
                "containerd systemd",
                format!("0::/kubepods.slice/kubepods-pod1f2e_aa.slice/cri-containerd-{ID}.scope\n"),
            ),
            (
                "cri-o",
                format!("0::/kubepods.slice/kubepods-besteffort.slice/crio-{ID}.scope\n"),
            ),
            ("docker systemd", format!("0::/system.slice/docker-{ID}.scope\n")),
            ("docker cgroupfs", format!("4:cpu:/docker/{ID}\n")),
            ("uppercase", format!("0::/x/{}\n", ID.to_uppercase())),
        ] {
            assert_eq!(
                container_id_from_cgroup(&text).map(|c| c.0),
                Some(ID.to_owned()),
                "{form}"
            );
        }
        // Not a container: no id, or hex runs of other lengths.
        for text in [
            "0::/user.slice/user-0.slice/session-1.scope\n",
            "0::/\n",
            &format!("0::/x/{}0/\n", ID),
            &format!("0::/x/{}/\n", &ID[1..]),
            "",
        ] {
            assert_eq!(container_id_from_cgroup(text), None, "{text:?}");
        }
        // The last id wins (a pod sandbox's id in a parent path, the container's at the end).
        let other = "a".repeat(64);
        assert_eq!(
            container_id_from_cgroup(&format!("0::/{other}/{ID}\n")).map(|c| c.0),
            Some(ID.to_owned())
        );
        assert_eq!(
            ContainerId::parse(&format!("containerd://{ID}")).map(|c| c.0),
            Some(ID.to_owned())
        );
        assert_eq!(ContainerId::parse("containerd://abc"), None);
    }

    fn info(name: &str) -> ContainerInfo {
        ContainerInfo {
            namespace: "ns".into(),
            pod: "p".into(),
            container: name.into(),
            record_profile: None,
        }
    }

    #[test]
    fn pod_index_replaces_and_bounds() {
        let a = ContainerId::parse(&"a".repeat(64)).expect("id");
        let b = ContainerId::parse(&"b".repeat(64)).expect("id");
        let c = ContainerId::parse(&"c".repeat(64)).expect("id");
        let mut index = PodIndex::new(2);
        assert!(index.set_pod("ns", "p", vec![(a.clone(), info("x")), (b.clone(), info("y"))]));
        assert_eq!(index.get(&a).map(|i| i.container.as_str()), Some("x"));
        // A restart replaces the pod's ids.
        assert!(index.set_pod("ns", "p", vec![(c.clone(), info("x"))]));
        assert_eq!(index.get(&a), None);
        assert_eq!(index.len(), 1);
        // Full: a second pod that does not fit is refused, the index unchanged.
        assert!(!index.set_pod("ns", "q", vec![(a.clone(), info("x")), (b.clone(), info("y"))]));
        assert_eq!(index.len(), 1);
        index.remove_pod("ns", "p");
        assert!(index.is_empty());
    }

    #[test]
    fn process_cache_is_bounded_oldest_out() {
        let mut cache = ProcessCache::new(CacheBounds::processes(3));
        for pid in 1..=5 {
            cache.insert(proc_info(pid, 0, None), 0);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(1).is_none() && cache.get(2).is_none());
        assert!(cache.get(5).is_some());
    }

    #[test]
    fn process_cache_is_bounded_by_bytes_too() {
        let long = |pid| ProcessInfo {
            cmdline: Some("x".repeat(4096)),
            ..proc_info(pid, 0, None)
        };
        let one = long(1).footprint();
        assert!(one > 4096, "{one}");
        let mut cache = ProcessCache::new(CacheBounds {
            processes: 1000,
            bytes: 10 * one,
        });
        for pid in 1..=100 {
            cache.insert(long(pid), 0);
        }
        assert_eq!(cache.len(), 10, "the byte budget holds ten of them");
        assert!(cache.bytes() <= 10 * one);
        assert!(cache.get(90).is_none() && cache.get(91).is_some() && cache.get(100).is_some());
        // Replacing a pid's entry accounts the old one out.
        cache.insert(proc_info(100, 0, None), 0);
        assert_eq!(cache.bytes(), 9 * one + proc_info(100, 0, None).footprint());
        // One process larger than the budget is still kept (the latest).
        let mut tiny = ProcessCache::new(CacheBounds {
            processes: 10,
            bytes: 10,
        });
        tiny.insert(long(7), 0);
        assert_eq!(tiny.len(), 1);
    }

    fn proc_info(pid: u32, started_ms: u64, container: Option<ContainerId>) -> ProcessInfo {
        ProcessInfo {
            pid,
            started_ms,
            container,
            executable: Some("/bin/x".into()),
            cmdline: None,
            uid: Some(0),
            gid: Some(0),
        }
    }

    #[derive(Default)]
    struct FakeProc(RefCell<HashMap<u32, ProcessInfo>>);

    impl ProcessSource for &FakeProc {
        fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
            self.0.borrow().get(&pid).cloned()
        }
    }

    #[test]
    fn exited_and_reused_pids_are_attributed_to_the_process_that_wrote_the_record() {
        let procs = FakeProc::default();
        let id = ContainerId::parse(ID).expect("id");
        let mut pods = PodIndex::new(10);
        pods.set_pod("ns", "p", vec![(id.clone(), info("app"))]);
        let mut attributor = Attributor::new(&procs, CacheBounds::processes(100));
        procs.0.borrow_mut().insert(7, proc_info(7, 1_000, Some(id.clone())));
        let (who, _) = attributor.attribute(7, 2_000, &pods);
        assert_eq!(
            who,
            Attribution::Pod {
                info: info("app"),
                id: id.clone()
            }
        );
        // Within the trust window: from the cache, /proc not read (the process is gone and
        // it does not matter).
        procs.0.borrow_mut().remove(&7);
        assert!(matches!(
            attributor.attribute(7, 2_500, &pods).0,
            Attribution::Pod { .. }
        ));
        assert_eq!(attributor.warm, 1);
        // Later: /proc is asked; the process is gone, its record is still the pod's.
        assert!(matches!(
            attributor.attribute(7, 5_000, &pods).0,
            Attribution::Pod { .. }
        ));
        assert_eq!(attributor.from_cache, 1);
        // The pid is reused by a host process started after the record: not it.
        procs.0.borrow_mut().insert(7, proc_info(7, 9_000, None));
        assert!(matches!(
            attributor.attribute(7, 8_000, &pods).0,
            Attribution::Pod { .. }
        ));
        assert_eq!(attributor.from_cache, 2);
        // A record written after the new process started is the new process's: the node's.
        assert_eq!(attributor.attribute(7, 9_100, &pods).0, Attribution::Node);
        // And from then on, the new one is remembered.
        assert_eq!(attributor.attribute(7, 9_200, &pods).0, Attribution::Node);
        // A pid never seen and gone: unknown, counted.
        assert_eq!(attributor.attribute(8, 3_100, &pods).0, Attribution::Unknown);
        assert_eq!(attributor.unknown, 1);
        // A container no pod has.
        let stray = ContainerId::parse(&"f".repeat(64)).expect("id");
        procs.0.borrow_mut().insert(9, proc_info(9, 0, Some(stray.clone())));
        assert_eq!(attributor.attribute(9, 10, &pods).0, Attribution::Container(stray));
    }

    /// A `/proc` that knows nothing, and a record of exits.
    struct Exits(Vec<(ProcessInfo, u64)>);

    impl ProcessSource for &Exits {
        fn lookup(&self, _: u32) -> Option<ProcessInfo> {
            None
        }
        fn exited(&self, pid: u32, record_ms: u64) -> Option<ProcessInfo> {
            self.0
                .iter()
                .rev()
                .find(|(p, exited_ms)| p.pid == pid && p.started_ms <= record_ms && record_ms <= *exited_ms)
                .map(|(p, _)| p.clone())
        }
    }

    #[test]
    fn a_process_gone_before_its_first_record_was_read_is_found_in_the_exits() {
        let id = ContainerId::parse(ID).expect("id");
        let mut pods = PodIndex::new(10);
        pods.set_pod("ns", "p", vec![(id.clone(), info("app"))]);
        let exits = Exits(vec![(proc_info(7, 1_000, Some(id.clone())), 1_050)]);
        let mut attributor = Attributor::new(&exits, CacheBounds::processes(100));
        assert_eq!(
            attributor.attribute(7, 1_010, &pods).0,
            Attribution::Pod { info: info("app"), id }
        );
        assert_eq!((attributor.from_exits, attributor.unknown), (1, 0));
        // A record from after that process exited is not its: unknown.
        assert_eq!(attributor.attribute(8, 1_010, &pods).0, Attribution::Unknown);
        let mut fresh = Attributor::new(&exits, CacheBounds::processes(100));
        assert_eq!(fresh.attribute(7, 2_000, &pods).0, Attribution::Unknown);
    }

    /// Processes with their start on the boot clock, shown on a wall clock that can be
    /// stepped, as `ProcFs` shows the kernel's.
    #[derive(Default)]
    struct SteppedClock {
        wall_minus_boot_ms: Cell<u64>,
        /// pid -> (start on the boot clock, container)
        procs: RefCell<HashMap<u32, (u64, Option<ContainerId>)>>,
    }

    impl SteppedClock {
        fn wall(&self, boot_ms: u64) -> u64 {
            self.wall_minus_boot_ms.get() + boot_ms
        }
    }

    impl ProcessSource for &SteppedClock {
        fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
            let (start, container) = self.procs.borrow().get(&pid).cloned()?;
            Some(proc_info(pid, self.wall(start), container))
        }
    }

    #[test]
    fn wall_clock_steps_neither_lose_records_nor_give_them_to_another_process() {
        const HOUR: u64 = 3_600_000;
        let id = ContainerId::parse(ID).expect("id");
        let mut pods = PodIndex::new(10);
        pods.set_pod("ns", "p", vec![(id.clone(), info("app"))]);
        let clock = SteppedClock::default();
        clock.wall_minus_boot_ms.set(1_700_000_000_000);
        let mut attributor = Attributor::new(&clock, CacheBounds::processes(100));
        let pod = Attribution::Pod {
            info: info("app"),
            id: id.clone(),
        };
        clock.procs.borrow_mut().insert(7, (1_000, Some(id.clone())));
        assert_eq!(attributor.attribute(7, clock.wall(10_000_000), &pods).0, pod);

        // The wall clock is stepped an hour forward: the same process, and one started since.
        clock.wall_minus_boot_ms.set(clock.wall_minus_boot_ms.get() + HOUR);
        assert_eq!(attributor.attribute(7, clock.wall(10_001_000), &pods).0, pod);
        clock.procs.borrow_mut().insert(8, (10_002_000, Some(id.clone())));
        assert_eq!(attributor.attribute(8, clock.wall(10_003_000), &pods).0, pod);

        // And back: the process started while it was ahead is still found ...
        clock.wall_minus_boot_ms.set(clock.wall_minus_boot_ms.get() - HOUR);
        assert_eq!(attributor.attribute(8, clock.wall(10_004_000), &pods).0, pod);
        // ... and a host process that took pid 7 after the container's process exited owns
        // its record, although the container's was last seen "later" on the wall clock.
        clock.procs.borrow_mut().insert(7, (10_005_000, None));
        assert_eq!(
            attributor.attribute(7, clock.wall(10_006_000), &pods).0,
            Attribution::Node
        );
        assert_eq!(attributor.unknown, 0);
    }

    #[test]
    fn starts_are_on_the_wall_clock_of_the_records_to_the_tick() {
        let procfs = ProcFs::new("/proc").expect("/proc");
        let wall_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as u64
        };
        let tick_ms = 1000 / procfs::ticks_per_second().max(1);
        for _ in 0..5 {
            let before = wall_ms();
            let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
            let after = wall_ms();
            let started = procfs.lookup(child.id()).map(|p| p.started_ms);
            let again = procfs.started_ms(child.id());
            child.kill().expect("kill");
            child.wait().expect("wait");
            let started = started.expect("the child in /proc");
            // The kernel keeps starts in whole ticks: up to one tick early, never late.
            assert!(
                started + tick_ms + 1 >= before && started <= after,
                "started {started} outside [{before} - {tick_ms}, {after}]"
            );
            assert_eq!(again, Some(started));
        }
    }

    #[test]
    fn the_real_proc_knows_this_process() {
        let procfs = ProcFs::new("/proc").expect("/proc");
        let me = procfs.lookup(std::process::id()).expect("this process");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        assert!(me.started_ms <= now_ms + START_SLACK_MS, "{} > {now_ms}", me.started_ms);
        assert!(me.started_ms + 3_600_000 > now_ms, "started over an hour ago?");
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(me.executable.as_deref(), exe.to_str());
        assert!(procfs.lookup(u32::MAX - 1).is_none());
    }
}
