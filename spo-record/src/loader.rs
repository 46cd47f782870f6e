//! Loading the BPF object, attaching it for the length of a recording, and reading its maps.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, TracepointCategory};
use spo_model::seccomp::Arch;

use std::cell::RefCell;
use std::rc::Rc;

use crate::bitmap::{TargetSyscalls, VALUE_SIZE};
use crate::events::{PathEvent, Resources, proc_base};
use crate::kernel_text::CapabilityCallers;
use crate::{RawRecording, RecordError, Subject, launch, preflight};

pub mod containers;

#[allow(
    unsafe_code,
    missing_debug_implementations,
    unused_imports,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/recorder.skel.rs"));
}

/// `max_entries` of the `syscalls` map: target ids are handed out modulo this.
const MAX_TARGETS: u32 = 1024;

/// The loaded recorder. Its programs are attached only while a recording runs, so an idle
/// recorder costs the system nothing; loading it (verifying the programs) is the slow part and
/// happens once.
pub struct Recorder {
    skel: skel::RecorderSkel<'static>,
    resources_loaded: bool,
    blind_to_switches: bool,
    next_target: u32,
    load_time: Duration,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("next_target", &self.next_target)
            .field("load_time", &self.load_time)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Checks the kernel and privileges, then loads the BPF programs and maps (nothing is
    /// attached yet).
    pub fn load() -> Result<Recorder, RecordError> {
        Self::load_with(&LoadOptions::default())
    }

    /// Loads the recorder with the programs `options` ask for; the others are neither
    /// verified nor loaded (verifying the file-tracking programs takes most of a full load).
    pub fn load_with(options: &LoadOptions) -> Result<Recorder, RecordError> {
        let started = Instant::now();
        preflight::check()?;
        // Reading kallsyms (tens of milliseconds, the kernel formats every symbol) overlaps
        // verifying the programs.
        let capability_callers = options.resources.then(|| std::thread::spawn(CapabilityCallers::read));

        // The skeleton borrows the storage of the libbpf object for as long as it lives; the
        // storage is leaked (one pointer-sized box per recorder) so the recorder owns its
        // skeleton outright. The object itself is closed when the skeleton is dropped.
        let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = skel::RecorderSkelBuilder::default()
            .open(storage)
            .map_err(|source| RecordError::Open { source })?;
        let progs = &mut open.progs;
        progs.record_sys_enter_resources.set_autoload(options.resources);
        progs.exit_open_like.set_autoload(options.resources);
        progs.record_exec.set_autoload(options.resources);
        progs.record_capable.set_autoload(options.resources);
        progs.floor_sys_enter.set_autoload(options.floor_probe);
        let skel = open.load().map_err(|source| match preflight::missing_tracepoint() {
            Some(tracepoint) => RecordError::MissingTracepoint { tracepoint },
            None => RecordError::Load { source },
        })?;

        let value_size = skel.maps.syscalls.value_size() as usize;
        if value_size != VALUE_SIZE {
            return Err(RecordError::LayoutMismatch {
                map: "syscalls",
                expected: VALUE_SIZE,
                actual: value_size,
            });
        }
        let mut skel = skel;
        if options.resources {
            // The resource sys_enter program runs as a tail call of the syscall program.
            let fd = skel.progs.record_sys_enter_resources.as_fd().as_raw_fd();
            skel.maps
                .resource_programs
                .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(|source| RecordError::Map {
                    operation: "installing the resource program's tail call",
                    source,
                })?;
        }
        if let Some(reading) = capability_callers {
            // A panic while reading leaves the table empty: every check then counts.
            set_capability_callers(&mut skel, &reading.join().unwrap_or_default());
        }
        Ok(Recorder {
            skel,
            resources_loaded: options.resources,
            blind_to_switches: options.blind_to_switches,
            next_target: 0,
            load_time: started.elapsed(),
        })
    }

    /// How long [`Recorder::load`] took (checks, verification, map creation).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Runs `argv` (program and arguments, the program looked up in `PATH`) with inherited
    /// stdio, recording the syscalls of its whole process tree until it exits. The command is
    /// tracked before its `execve`, so the recording includes the syscalls a seccomp filter
    /// installed at that point would see. Descendants still running when the command exits are
    /// no longer recorded.
    pub fn record_command(&mut self, argv: &[String]) -> Result<RawRecording, RecordError> {
        self.record_command_with(argv, &RecordOptions::default(), |_| {})
    }

    /// [`Recorder::record_command`] with options, calling `progress` about ten times a second
    /// while the command runs.
    pub fn record_command_with(
        &mut self,
        argv: &[String],
        options: &RecordOptions,
        mut progress: impl FnMut(&Progress),
    ) -> Result<RawRecording, RecordError> {
        let path = launch::resolve_command(argv)?;
        let target = self.new_target()?;
        let target_key = target.to_ne_bytes();
        let tracked = Tracked {
            target,
            flags: match options.start {
                RecordStart::Exec => 0,
                RecordStart::SeccompFilter => TRACK_WAIT_FOR_FILTER,
            },
        }
        .encode();

        let attach_started = Instant::now();
        let links = self.attach()?;
        let mut collector = Collector::start(self, target, options.resources)?;
        let attach_time = attach_started.elapsed();
        let skipped_before = self.skipped_runs()?;
        self.set_enabled(true);

        let maps = &mut self.skel.maps;
        let targets = &maps.targets;
        let bss = maps.bss_data.as_deref_mut();
        let spawned = launch::spawn_held(&path, argv, options.run_as, |pid| {
            insert_tracked(targets, bss, pid, &tracked, MapFlags::ANY).map_err(|source| RecordError::Map {
                operation: "tracking the command's pid",
                source,
            })
        });
        let started = Instant::now();
        let waited = spawned.and_then(|mut child| {
            let mut pause = Duration::from_millis(5);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => return Ok(status),
                    Ok(None) => {
                        collector.drain();
                        if let Ok(seen) = self.read_target(&target_key) {
                            progress(&Progress {
                                distinct_syscalls: seen.native.len() + seen.compat.len(),
                                elapsed: started.elapsed(),
                                tracked_processes: self.tracked_processes(),
                            });
                        }
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(100));
                    }
                    Err(source) => {
                        return Err(RecordError::Wait {
                            program: argv[0].clone(),
                            source,
                        });
                    }
                }
            }
        });

        self.set_enabled(false);
        collector.drain();
        let skipped = self.skipped_runs().map(|now| now.saturating_sub(skipped_before));
        drop(links);
        let forgotten = self.forget_target(target);
        let exit_status: ExitStatus = waited?;
        forgotten?;
        let skipped = skipped?;

        let seen = self.read_target(&target_key)?;
        Ok(raw_recording(
            Subject::Command {
                argv: argv.to_vec(),
                exit_status,
            },
            seen,
            collector.finish(),
            Observed { attach_time, skipped },
        ))
    }

    /// Records the processes `selector` picks (a container's mount namespace or cgroup) until
    /// `stop` is set (Ctrl-C) or, once some were seen, none is left. Processes already there
    /// when the recording starts are found in `/proc` (mount namespace) or `cgroup.procs`; their
    /// children follow by fork; a process that execs while in the namespace or cgroup joins (so
    /// `runc exec` sessions are recorded). A process moved into the cgroup is recorded from its
    /// next exec.
    /// With `resources`, files, programs, sockets and capabilities are recorded too.
    /// `progress` is first called once the processes already there are tracked, so a caller
    /// can announce the recording from it.
    pub fn record_selected(
        &mut self,
        selector: &Selector,
        resources: bool,
        stop: &AtomicBool,
        mut progress: impl FnMut(&Progress),
    ) -> Result<RawRecording, RecordError> {
        let key = selector.key()?;
        let target = self.new_target()?;
        let target_key = target.to_ne_bytes();
        let attach_started = Instant::now();
        let links = self.attach()?;
        let exec_link = self
            .skel
            .progs
            .select_exec
            .attach()
            .map_err(|source| RecordError::Attach {
                program: "select_exec",
                source,
            })?;
        let mut collector = Collector::start(self, target, resources)?;
        let attach_time = attach_started.elapsed();
        let skipped_before = self.skipped_runs()?;
        self.set_enabled(true);
        let selected = self
            .skel
            .maps
            .selectors
            .update(&key, &target_key, MapFlags::ANY)
            .map_err(|source| RecordError::Map {
                operation: "adding the selector",
                source,
            });
        let result = selected.and_then(|()| {
            self.set_selecting(true);
            self.watch_selected(selector, target, stop, &mut collector, &mut progress)
        });

        self.set_selecting(false);
        let _ = self.skel.maps.selectors.delete(&key);
        self.set_enabled(false);
        collector.drain();
        let skipped = self.skipped_runs().map(|now| now.saturating_sub(skipped_before));
        drop((links, exec_link));
        let forgotten = self.forget_target(target);
        result?;
        forgotten?;
        let skipped = skipped?;

        let seen = self.read_target(&target_key)?;
        Ok(raw_recording(
            Subject::Selected(selector.clone()),
            seen,
            collector.finish(),
            Observed { attach_time, skipped },
        ))
    }

    /// Adds the processes already selected, then waits for the end of the recording.
    fn watch_selected(
        &mut self,
        selector: &Selector,
        target: u32,
        stop: &AtomicBool,
        collector: &mut Collector,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<(), RecordError> {
        let tracked = Tracked { target, flags: 0 }.encode();
        // Twice: a process forked by one not yet added during the first pass is found by the
        // second (after that, the fork program follows every child).
        for _ in 0..2 {
            for pid in selector.current_processes()? {
                self.track_existing(pid, &tracked)?;
            }
        }
        let started = Instant::now();
        let target_key = target.to_ne_bytes();
        let mut seen_any = false;
        loop {
            let live = self.processes_of(target);
            seen_any |= live > 0;
            collector.drain();
            if stop.load(Ordering::SeqCst) || (seen_any && live == 0) {
                return Ok(());
            }
            if let Ok(seen) = self.read_target(&target_key) {
                progress(&Progress {
                    distinct_syscalls: seen.native.len() + seen.compat.len(),
                    elapsed: started.elapsed(),
                    tracked_processes: live,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Tracks `pid` unless it is tracked already.
    fn track_existing(&mut self, pid: u32, tracked: &[u8; 8]) -> Result<(), RecordError> {
        let maps = &mut self.skel.maps;
        match insert_tracked(
            &maps.targets,
            maps.bss_data.as_deref_mut(),
            pid,
            tracked,
            MapFlags::NO_EXIST,
        ) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(RecordError::Map {
                operation: "tracking a selected process",
                source,
            }),
        }
    }

    /// How many live processes `target` has.
    fn processes_of(&self, target: u32) -> usize {
        self.process_counts().get(&target).copied().unwrap_or(0)
    }

    /// Tracked processes per target, in one pass over the tracked processes.
    fn process_counts(&self) -> std::collections::HashMap<u32, usize> {
        let targets = &self.skel.maps.targets;
        let mut counts = std::collections::HashMap::new();
        for key in targets.keys() {
            if let Some(target) = targets
                .lookup(&key, MapFlags::ANY)
                .ok()
                .flatten()
                .and_then(|value| value.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()))
            {
                *counts.entry(u32::from_ne_bytes(target)).or_default() += 1;
            }
        }
        counts
    }

    fn set_collecting(&mut self, collecting: bool) {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            // SAFETY: as in `set_enabled`: a valid, aligned reference into the mmap'ed `.bss`.
            unsafe { std::ptr::write_volatile(&raw mut bss.collect_resources, u32::from(collecting)) };
        }
    }

    fn set_selecting(&mut self, selecting: bool) {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            // SAFETY: as in `set_enabled`: a valid, aligned reference into the mmap'ed `.bss`.
            unsafe { std::ptr::write_volatile(&raw mut bss.selecting, u32::from(selecting)) };
        }
    }

    /// Hands out the next target id, its syscall bitmap and counters cleared.
    fn new_target(&mut self) -> Result<u32, RecordError> {
        let target = self.next_target;
        self.next_target = (self.next_target + 1) % MAX_TARGETS;
        self.clear_target(target)?;
        Ok(target)
    }

    /// Clears the syscall bitmap and counters of `target`, and the paths it was sent (so the
    /// next recording of that target is sent them again).
    fn clear_target(&mut self, target: u32) -> Result<(), RecordError> {
        self.skel
            .maps
            .syscalls
            .update(&target.to_ne_bytes(), &[0; VALUE_SIZE], MapFlags::ANY)
            .map_err(|source| RecordError::Map {
                operation: "clearing the syscall bitmap",
                source,
            })?;
        if self.resources_loaded {
            let seen = &self.skel.maps.seen_paths;
            // `struct seen_key` starts with the target.
            let stale: Vec<Vec<u8>> = seen
                .keys()
                .filter(|key| key.get(..4) == Some(&target.to_ne_bytes()[..]))
                .collect();
            for key in stale {
                // Gone already: evicted by the LRU meanwhile.
                let _ = seen.delete(&key);
            }
        }
        Ok(())
    }

    fn set_watching_containers(&mut self, watching: bool) {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            // SAFETY: as in `set_enabled`: a valid, aligned reference into the mmap'ed `.bss`.
            unsafe { std::ptr::write_volatile(&raw mut bss.watching_containers, u32::from(watching)) };
        }
    }

    /// `containers_without_target` of the BPF programs.
    fn containers_without_target(&self) -> u64 {
        self.skel
            .maps
            .bss_data
            .as_deref()
            // SAFETY: as in `set_enabled`; the kernel updates the counter atomically, a
            // volatile read sees a whole value.
            .map_or(0, |bss| unsafe {
                std::ptr::read_volatile(&raw const bss.containers_without_target)
            })
    }

    /// What the target with key `target_key` recorded so far.
    fn read_target(&self, target_key: &[u8; 4]) -> Result<TargetSyscalls, RecordError> {
        let bytes = self
            .skel
            .maps
            .syscalls
            .lookup(target_key, MapFlags::ANY)
            .map_err(|source| RecordError::Map {
                operation: "reading the syscall bitmap",
                source,
            })?
            .unwrap_or_default();
        TargetSyscalls::decode(&bytes).ok_or(RecordError::LayoutMismatch {
            map: "syscalls",
            expected: VALUE_SIZE,
            actual: bytes.len(),
        })
    }

    /// How many processes are tracked right now, over all targets (0 between recordings: every
    /// entry is removed when its process exits or its recording ends).
    pub fn tracked_processes(&self) -> usize {
        self.skel.maps.targets.keys().count()
    }

    /// How many runs of the recording programs the kernel has skipped since they were loaded,
    /// over the whole machine: a program's run is skipped when a run of the same program is
    /// already in progress on that CPU (`recursion_misses` in `bpf_prog_info`, kept by the
    /// kernel since Linux 5.12). The programs of resource recording count only when loaded.
    fn skipped_runs(&self) -> Result<u64, RecordError> {
        let progs = &self.skel.progs;
        let mut programs = vec![
            ("forget_exit", &progs.forget_exit),
            ("track_fork", &progs.track_fork),
            ("follow_switch", &progs.follow_switch),
            ("record_sys_enter", &progs.record_sys_enter),
            ("select_exec", &progs.select_exec),
        ];
        if self.resources_loaded {
            programs.extend(resource_programs(progs));
        }
        programs.into_iter().try_fold(0, |sum, (program, prog)| {
            let misses =
                recursion_misses(prog.as_fd()).map_err(|source| RecordError::ProgramInfo { program, source })?;
            Ok(sum + misses)
        })
    }

    /// Attaches every program; the links detach them when dropped. The exit and fork programs
    /// go first so no tracked process can exit or fork unseen; the switch program only fills
    /// the per-CPU cache ahead of the syscall program, which checks every entry it uses.
    fn attach(&self) -> Result<Vec<Link>, RecordError> {
        let progs = &self.skel.progs;
        let attach = |program: &'static str, prog: &libbpf_rs::ProgramMut<'_>| {
            prog.attach().map_err(|source| RecordError::Attach { program, source })
        };
        let mut links = self.attach_companions()?;
        links.push(attach("record_sys_enter", &progs.record_sys_enter)?);
        Ok(links)
    }

    /// Attaches what a recording needs besides its `sys_enter` program: process exit and
    /// fork first (no tracked process exits or forks unseen), then the context-switch prefill.
    fn attach_companions(&self) -> Result<Vec<Link>, RecordError> {
        let progs = &self.skel.progs;
        let attach = |program: &'static str, prog: &libbpf_rs::ProgramMut<'_>| {
            prog.attach().map_err(|source| RecordError::Attach { program, source })
        };
        let mut links = vec![
            attach("forget_exit", &progs.forget_exit)?,
            attach("track_fork", &progs.track_fork)?,
        ];
        if !self.blind_to_switches {
            links.push(attach("follow_switch", &progs.follow_switch)?);
        }
        Ok(links)
    }

    /// Turns recording on or off; turning it on also moves the generation on, so nothing the
    /// CPUs cached during an earlier recording is used.
    fn set_enabled(&mut self, enabled: bool) {
        if enabled {
            bump_generation(self.skel.maps.bss_data.as_deref_mut());
        }
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            // SAFETY: `bss` is a valid, aligned reference into the object's mmap'ed `.bss`,
            // which lives as long as the skeleton. The write is volatile because the reader is
            // the kernel, which the compiler cannot see.
            unsafe { std::ptr::write_volatile(&raw mut bss.enabled, u32::from(enabled)) };
        }
    }

    /// Attaches a `sys_enter` program that does nothing, for benchmarks: what every syscall of
    /// the machine pays for an attached tracepoint program, before any recording logic. It
    /// stays attached until the returned link is dropped.
    #[doc(hidden)]
    pub fn attach_floor_probe(&self) -> Result<Link, RecordError> {
        self.skel
            .progs
            .floor_sys_enter
            .attach()
            .map_err(|source| RecordError::Attach {
                program: "floor_sys_enter",
                source,
            })
    }

    /// [`Recorder::attach_floor_probe`] with the programs a recording attaches besides its
    /// `sys_enter` one (process exit, fork, context switch), enabled: for benchmarks, to tell
    /// what those cost every syscall from what the `sys_enter` program's logic costs. Nothing
    /// is recorded (the floor program records nothing). Detached when the links are dropped.
    #[doc(hidden)]
    pub fn attach_floor_with_companions(&mut self) -> Result<Vec<Link>, RecordError> {
        let mut links = self.attach_companions()?;
        links.push(self.attach_floor_probe()?);
        self.set_enabled(true);
        Ok(links)
    }

    /// Turns the recorder off again after [`Recorder::attach_floor_with_companions`].
    #[doc(hidden)]
    pub fn disable_after_floor(&mut self) {
        self.set_enabled(false);
    }

    /// Removes the entries of processes of `target` still alive (descendants that outlived the
    /// command), so no state outlives the recording.
    fn forget_target(&mut self, target: u32) -> Result<(), RecordError> {
        let maps = &mut self.skel.maps;
        let targets = &maps.targets;
        let stale: BTreeSet<Vec<u8>> = targets
            .keys()
            .filter(|key| {
                targets
                    .lookup(key, MapFlags::ANY)
                    .ok()
                    .flatten()
                    .is_some_and(|value| value.get(..4) == Some(&target.to_ne_bytes()[..]))
            })
            .collect();
        for key in stale {
            match targets.delete(&key) {
                Ok(()) => {
                    if let Ok(tgid) = <[u8; 4]>::try_from(key.as_slice()) {
                        let tgid = u32::from_ne_bytes(tgid);
                        count_tracked_slot(maps.bss_data.as_deref_mut(), tgid, -1);
                    }
                }
                // The process exited in the meantime and removed its entry itself.
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RecordError::Map {
                        operation: "forgetting the processes of a finished recording",
                        source,
                    });
                }
            }
        }
        bump_generation(maps.bss_data.as_deref_mut());
        Ok(())
    }
}

/// The per-syscall exit events `exit_open_like` is attached to: the calls whose pending open
/// `record_resources` arms (native ABI; ia32 calls have no such events).
const OPEN_EXITS: [&str; 4] = ["sys_exit_open", "sys_exit_creat", "sys_exit_openat", "sys_exit_openat2"];

/// The programs of resource recording (loaded with [`LoadOptions::resources`]), by name.
fn resource_programs<'p, 'obj>(
    progs: &'p skel::RecorderProgs<'obj>,
) -> [(&'static str, &'p libbpf_rs::ProgramMut<'obj>); 4] {
    [
        ("record_sys_enter_resources", &progs.record_sys_enter_resources),
        ("exit_open_like", &progs.exit_open_like),
        ("record_exec", &progs.record_exec),
        ("record_capable", &progs.record_capable),
    ]
}

/// The kernel's count of skipped runs of the loaded program `fd`.
fn recursion_misses(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = u32::try_from(std::mem::size_of_val(&info)).unwrap_or(u32::MAX);
    // SAFETY: `info` is a writable `bpf_prog_info` of `len` bytes, and none of its pointer
    // fields is set, so the kernel writes into `info` only.
    let ret = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &raw mut info, &raw mut len) };
    if ret == 0 {
        Ok(info.recursion_misses)
    } else {
        Err(std::io::Error::from_raw_os_error(-ret))
    }
}

/// Slots of the counting filter in front of `targets` (`TRACKED_SLOTS` in recorder.bpf.c).
const TRACKED_SLOTS: usize = 4096;

/// Adds `pid` to `targets` the one way user space does: its counting-filter slot first (taken
/// back when the insert fails), then the entry, then a generation bump, so a CPU whose slot
/// says the (running) process is untracked looks again.
fn insert_tracked(
    targets: &impl MapCore,
    mut bss: Option<&mut skel::types::bss>,
    pid: u32,
    tracked: &[u8; 8],
    flags: MapFlags,
) -> Result<(), libbpf_rs::Error> {
    count_tracked_slot(bss.as_deref_mut(), pid, 1);
    match targets.update(&pid.to_ne_bytes(), tracked, flags) {
        Ok(()) => {
            bump_generation(bss);
            Ok(())
        }
        Err(e) => {
            count_tracked_slot(bss, pid, -1);
            Err(e)
        }
    }
}

/// Moves the hot path's generation on (`generation` in recorder.bpf.c) after user space changed
/// `targets`: every CPU's cached view of its running task is then looked up again.
fn bump_generation(bss: Option<&mut skel::types::bss>) {
    let Some(bss) = bss else { return };
    // SAFETY: `generation` lies in the object's mmap'ed `.bss`, which lives as long as the
    // skeleton, and is aligned for a u32. The kernel bumps the same word with atomic adds, so
    // this must be an atomic too.
    let generation = unsafe { AtomicU32::from_ptr(&raw mut bss.generation) };
    generation.fetch_add(1, Ordering::SeqCst);
}

/// The file, program, socket and capability side of recordings: the ring buffer and the
/// programs only it needs, attached while the collector lives. Events are kept per target.
struct Collector {
    ring: Option<libbpf_rs::RingBuffer<'static>>,
    pending: Rc<RefCell<Vec<Vec<u8>>>>,
    resources: std::collections::HashMap<u32, Resources>,
    target: u32,
    _links: Vec<Link>,
}

impl Collector {
    /// Attaches the resource programs (syscall entry and exit, exec, capability) and opens the
    /// ring buffer when `on`, for the recording of `target`.
    fn start(recorder: &mut Recorder, target: u32, on: bool) -> Result<Collector, RecordError> {
        recorder.set_collecting(on);
        if !on {
            return Ok(Collector {
                ring: None,
                pending: Rc::default(),
                resources: std::collections::HashMap::new(),
                target,
                _links: Vec::new(),
            });
        }
        let mut collector = Collector::open(recorder)?;
        collector.target = target;
        Ok(collector)
    }

    /// Attaches the resource programs and opens the ring buffer; `collect_resources` is left
    /// as it is (the caller switches it).
    fn open(recorder: &Recorder) -> Result<Collector, RecordError> {
        if !recorder.resources_loaded {
            return Err(RecordError::NotLoaded {
                what: "file, program, socket and capability recording (load with LoadOptions::resources)",
            });
        }
        let pending = Rc::new(RefCell::new(Vec::new()));
        let mut collector = Collector {
            ring: None,
            pending: Rc::clone(&pending),
            resources: std::collections::HashMap::new(),
            target: 0,
            _links: Vec::new(),
        };
        let progs = &recorder.skel.progs;
        // The sys_enter side runs as a tail call of the syscall program (set up at load).
        for event in OPEN_EXITS {
            collector._links.push(
                progs
                    .exit_open_like
                    .attach_tracepoint(TracepointCategory::Syscalls, event)
                    .map_err(|source| RecordError::Attach {
                        program: "exit_open_like",
                        source,
                    })?,
            );
        }
        for (program, prog) in [
            ("record_exec", &progs.record_exec),
            ("record_capable", &progs.record_capable),
        ] {
            collector._links.push(
                prog.attach()
                    .map_err(|source| RecordError::Attach { program, source })?,
            );
        }
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        let ring_error = |source| RecordError::Map {
            operation: "opening the event ring buffer",
            source,
        };
        builder
            .add(&recorder.skel.maps.events, move |data: &[u8]| {
                pending.borrow_mut().push(data.to_vec());
                0
            })
            .map_err(ring_error)?;
        collector.ring = Some(builder.build().map_err(ring_error)?);
        Ok(collector)
    }

    /// Takes what the ring buffer holds for this collector's one target, making relative paths
    /// absolute while the processes still exist.
    fn drain(&mut self) {
        let target = self.target;
        self.drain_with(|t| t == target, proc_base);
    }

    /// Takes what the ring buffer holds, keeping the events of the targets `keep` accepts;
    /// relative paths the kernel could not resolve start from `base_of(pid, dirfd)`.
    fn drain_with(&mut self, mut keep: impl FnMut(u32) -> bool, base_of: impl Fn(u32, i32) -> Option<String>) {
        let Some(ring) = &self.ring else { return };
        let _ = ring.consume();
        for bytes in self.pending.borrow_mut().drain(..) {
            match PathEvent::decode(&bytes) {
                Some(event) if keep(event.target) => {
                    self.resources.entry(event.target).or_default().add(&event, &base_of);
                }
                _ => {}
            }
        }
    }

    /// What was collected for `target` so far, taken out.
    fn take(&mut self, target: u32) -> Resources {
        self.resources.remove(&target).unwrap_or_default()
    }

    fn finish(mut self) -> Resources {
        let target = self.target;
        self.take(target)
    }
}

/// Hands the capability program the address ranges it tells audited checks from unaudited ones
/// by; before anything is attached, so no program reads them while they change.
fn set_capability_callers(skel: &mut skel::RecorderSkel<'static>, callers: &CapabilityCallers) {
    let Some(bss) = skel.maps.bss_data.as_deref_mut() else {
        return;
    };
    for (slot, (range, kind)) in bss.cap_ranges.iter_mut().zip(callers.table()) {
        slot.start = range.start;
        slot.end = range.end;
        slot.kind = kind;
    }
    bss.cap_ranges_known = u32::from(callers.known());
}

/// What a recording observed of the recorder itself.
struct Observed {
    attach_time: Duration,
    /// Program runs the kernel skipped during the recording.
    skipped: u64,
}

/// A finished recording from its target's value and events.
fn raw_recording(subject: Subject, seen: TargetSyscalls, resources: Resources, observed: Observed) -> RawRecording {
    let mut syscalls = BTreeMap::new();
    for (arch, numbers) in [(NATIVE_ARCH, seen.native), (COMPAT_ARCH, seen.compat)] {
        if !numbers.is_empty() {
            syscalls.insert(arch, numbers);
        }
    }
    RawRecording {
        subject,
        syscalls,
        untracked_processes: seen.untracked_processes,
        out_of_range_syscalls: seen.out_of_range,
        filter_starts: seen.filter_starts,
        files: resources.files,
        executables: resources.executables,
        mapped: resources.mapped,
        unresolved_paths: resources.unresolved,
        sockets: seen.sockets,
        capabilities: seen.capabilities,
        unaudited_capability_checks: seen.caps_unaudited,
        unclassified_capability_checks: seen.caps_unclassified,
        lost_events: seen.lost_events + resources.dropped,
        skipped_runs: observed.skipped,
        attach_time: observed.attach_time,
    }
}

/// Which optional programs [`Recorder::load_with`] loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The programs that record files, programs, sockets and capabilities
    /// ([`RecordOptions::resources`] needs them).
    pub resources: bool,
    /// The empty `sys_enter` program benchmarks attach to measure the floor.
    #[doc(hidden)]
    pub floor_probe: bool,
    /// Leaves the context-switch program unattached, for tests: the per-CPU cache of what each
    /// CPU runs is then filled by the syscall program alone, which shows the cache proves itself
    /// rather than trusting that every switch is seen.
    #[doc(hidden)]
    pub blind_to_switches: bool,
}

/// `TRACK_WAIT_FOR_FILTER` in `recorder.bpf.c`.
const TRACK_WAIT_FOR_FILTER: u32 = 1;

/// A `targets` value, `struct tracked` in `recorder.bpf.c`.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    target: u32,
    flags: u32,
}

impl Tracked {
    fn encode(self) -> [u8; 8] {
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&self.target.to_ne_bytes());
        bytes[4..].copy_from_slice(&self.flags.to_ne_bytes());
        bytes
    }
}

/// When a process of the recorded tree starts being recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordStart {
    /// From the command's first instruction: everything the tree does.
    #[default]
    Exec,
    /// From the moment a process installs a seccomp filter (children forked later inherit the
    /// state). Run a container runtime this way, with a filter in the container's config that
    /// changes nothing (see `spo_seccomp`'s recording filter): the recording then holds
    /// exactly what the container's profile will judge, the runtime's own calls between
    /// installing the filter and exec included, and none of the runtime's set-up before it.
    SeccompFilter,
}

/// How to run a recorded command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOptions {
    /// When recording starts.
    pub start: RecordStart,
    /// Run the command as this user and group (supplementary groups dropped), for example the
    /// user who ran `sudo`; `None` keeps the caller's credentials.
    pub run_as: Option<(u32, u32)>,
    /// Also record files opened, programs executed, sockets created and capabilities checked
    /// (what AppArmor profiles need).
    pub resources: bool,
}

/// Which running processes a recording follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every process in the mount namespace with this inode (`/proc/<pid>/ns/mnt`): a
    /// container.
    MountNamespace(u64),
    /// Every process in this cgroup (v2) directory, such as
    /// `/sys/fs/cgroup/kubepods.slice/.../cri-containerd-<id>.scope`.
    Cgroup(std::path::PathBuf),
}

/// `SELECT_*` in `recorder.bpf.c`.
const SELECT_MOUNT_NAMESPACE: u32 = 1;
const SELECT_CGROUP: u32 = 2;

impl Selector {
    /// The `selectors` map key, `struct selector_key` in `recorder.bpf.c`.
    fn key(&self) -> Result<[u8; 16], RecordError> {
        let (kind, id) = match self {
            Selector::MountNamespace(inode) => (SELECT_MOUNT_NAMESPACE, *inode),
            Selector::Cgroup(path) => (
                SELECT_CGROUP,
                cgroup_id(path).ok_or_else(|| RecordError::NoSuchCgroup { path: path.clone() })?,
            ),
        };
        let mut key = [0; 16];
        key[..4].copy_from_slice(&kind.to_ne_bytes());
        key[8..].copy_from_slice(&id.to_ne_bytes());
        Ok(key)
    }

    /// The processes selected right now.
    fn current_processes(&self) -> Result<Vec<u32>, RecordError> {
        match self {
            Selector::MountNamespace(inode) => {
                let proc = std::fs::read_dir("/proc").map_err(|source| RecordError::Proc { source })?;
                Ok(proc
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&pid| mount_namespace_of(pid) == Some(*inode))
                    .collect())
            }
            Selector::Cgroup(path) => {
                let procs = path.join("cgroup.procs");
                let text =
                    std::fs::read_to_string(&procs).map_err(|_| RecordError::NoSuchCgroup { path: path.clone() })?;
                Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            }
        }
    }
}

/// The inode of the mount namespace of process `pid`, from `/proc/<pid>/ns/mnt`.
pub fn mount_namespace_of(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    link.to_str()?.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// The id the kernel gives the cgroup (v2) directory `path`: its inode number.
pub fn cgroup_id(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_dir() && path.join("cgroup.procs").exists()).then(|| meta.ino())
}

/// How a running recording is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Distinct syscalls (over both ABIs) recorded so far.
    pub distinct_syscalls: usize,
    /// Time since the command was released.
    pub elapsed: Duration,
    /// Processes tracked right now (over every recording of this recorder).
    pub tracked_processes: usize,
}

/// Adds `delta` to the filter slot of `tgid`, as the BPF programs do, whenever user space adds
/// or removes a `targets` entry.
fn count_tracked_slot(bss: Option<&mut skel::types::bss>, tgid: u32, delta: i32) {
    let Some(bss) = bss else { return };
    let slot = &raw mut bss.tracked_slots[tgid as usize & (TRACKED_SLOTS - 1)];
    // SAFETY: `slot` points into the object's mmap'ed `.bss`, which lives as long as the
    // skeleton, and is aligned for a u32. The kernel updates the same word with atomic adds, so
    // user space must use an atomic too, never a plain read-modify-write.
    let slot = unsafe { AtomicU32::from_ptr(slot) };
    slot.fetch_add(delta.cast_unsigned(), Ordering::SeqCst);
}

/// The ABI the recorder's native bitmap stands for.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: Arch = Arch::X86_64;
/// The ABI of the compat bitmap (ia32 on x86-64, where `TS_COMPAT` tells them apart).
#[cfg(target_arch = "x86_64")]
const COMPAT_ARCH: Arch = Arch::X86;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: Arch = Arch::Aarch64;
#[cfg(target_arch = "aarch64")]
const COMPAT_ARCH: Arch = Arch::Arm;
