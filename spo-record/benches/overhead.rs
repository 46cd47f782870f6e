//! What recording costs the recorded workload and everyone else (issue 4, "Numbers").
//!
//! The workload is this binary started again as a child (`/proc/self/exe --spo-overhead-workload
//! CALLS OUT getppid|read4k`): it calls `getppid` (or reads 4 KiB from /dev/zero) CALLS times and
//! writes the elapsed nanoseconds of the loop to OUT, so process start and recorder setup are
//! never part of the figure. Every case runs the same child; the cases are interleaved round by
//! round so a noisy machine drifts all of them alike, and each figure is the median of the
//! rounds. The `read4k` workload runs the no-recorder, floor and this-process cases only.
//! The container case is the node recorder's way (issue 16): a `ContainerWatch` with 100
//! containers of a watched pod recording (each a `sleep` in its own cgroup under the recording
//! filter, in a cgroup tree the bench makes under the cgroup2 mount and removes) while the
//! workload runs in another cgroup; it also prints the recorder's memory with 0 and 100
//! containers.
//!
//! `SPO_OVERHEAD_PAIRS=SETS` runs the paired comparison instead (issue 16's "other pods"
//! figure): the container case against the floor and against nothing, run by run in rotating
//! order with the workload pinned to one CPU (`SPO_OVERHEAD_CPU`, the last one by default;
//! `any` leaves it to the scheduler), each set giving its own ratio; see `run_paired`.
//!
//! Needs root (it loads BPF); prints `skipped: <reason>` and exits 0 otherwise.
//!
//! Run: `cargo bench -p spo-record --bench overhead`;
//! `SPO_OVERHEAD_PAIRS=150 cargo bench -p spo-record --bench overhead` for the paired one.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spo_record::{ContainerWatch, LoadOptions, RecordOptions, Recorder};

const WORKLOAD_FLAG: &str = "--spo-overhead-workload";
/// The workload: 5 million `getppid` calls.
const CALLS: u64 = 5_000_000;
/// The second workload, `read(2)` of 4 KiB from /dev/zero (about 1 us each): 1 million calls.
const READ_CALLS: u64 = 1_000_000;
/// strace stops the tracee twice per syscall (about 20 us a call here), so 5 million calls would
/// take minutes per round; the per-call cost is what is compared, and 200,000 calls measure it
/// as well.
const STRACE_CALLS: u64 = 200_000;
/// Rounds by default; `SPO_OVERHEAD_ROUNDS=N` changes it (and `SPO_OVERHEAD_NO_STRACE=1` leaves
/// strace out, for quick comparisons).
const ROUNDS: usize = 3;
/// Containers of a watched pod recording at once in the container case (issue 16: the node
/// recorder with 100 containers under recording).
const CONTAINERS: usize = 100;
/// `getppid` on x86-64 and aarch64, to check the recording saw the workload.
#[cfg(target_arch = "x86_64")]
const GETPPID_NR: u32 = 110;
/// `read` on x86-64 and aarch64.
#[cfg(target_arch = "x86_64")]
const READ_NR: u32 = 0;
#[cfg(target_arch = "aarch64")]
const GETPPID_NR: u32 = 173;
#[cfg(target_arch = "aarch64")]
const READ_NR: u32 = 63;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(WORKLOAD_FLAG) {
        return run_workload(&args[2..]);
    }
    if !is_root()? {
        eprintln!("skipped: not root (loading the recorder needs CAP_BPF and CAP_PERFMON)");
        println!("skipped");
        return Ok(());
    }
    let strace = if std::env::var_os("SPO_OVERHEAD_NO_STRACE").is_some() {
        None
    } else {
        which("strace")
    };
    let rounds = match std::env::var("SPO_OVERHEAD_ROUNDS") {
        Ok(text) => text.parse().context("parsing SPO_OVERHEAD_ROUNDS")?,
        Err(_) => ROUNDS,
    };
    println!("machine at the start: {}", spo_testkit::machine());

    let dir = tempfile::tempdir().context("creating a temp dir for the workload's output")?;
    let exe = fs::read_link("/proc/self/exe").context("finding this binary")?;
    let workload = Workload {
        exe: exe.clone(),
        out: dir.path().join("elapsed-ns"),
        kind: Kind::Getppid,
    };
    let reader = Workload {
        exe,
        out: dir.path().join("elapsed-ns-read"),
        kind: Kind::Read4k,
    };

    if let Ok(text) = std::env::var("SPO_OVERHEAD_PAIRS") {
        let sets: usize = text.parse().context("parsing SPO_OVERHEAD_PAIRS")?;
        return run_paired(&workload, sets);
    }

    let mut samples = Samples::default();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        samples.baseline.push(workload.run_plain(CALLS)?);
        samples.read_baseline.push(reader.run_plain(READ_CALLS)?);

        let rss_before = vm_rss_kib()?;
        let started = Instant::now();
        let mut recorder = match Recorder::load_with(&LoadOptions {
            floor_probe: true,
            ..LoadOptions::default()
        }) {
            Ok(recorder) => recorder,
            Err(e) if round == 0 => {
                eprintln!("skipped: the recorder does not load here: {e}");
                println!("skipped");
                return Ok(());
            }
            Err(e) => return Err(e).context("loading the recorder"),
        };
        samples.load.push(started.elapsed());
        samples.rss_after_load.push(vm_rss_kib()?);
        samples.rss_before_load.push(rss_before);

        samples.idle.push(workload.run_plain(CALLS)?);
        let floor = recorder.attach_floor_probe().context("attaching the floor probe")?;
        samples.floor.push(workload.run_plain(CALLS)?);
        samples.read_floor.push(reader.run_plain(READ_CALLS)?);
        drop(floor);
        let companions = recorder
            .attach_floor_with_companions()
            .context("attaching the floor with the recorder's other programs")?;
        samples.floor_companions.push(workload.run_plain(CALLS)?);
        drop(companions);
        recorder.disable_after_floor();
        let (other, attach) = workload.run_beside_recording(&mut recorder)?;
        samples.other.push(other);
        samples.attach.push(attach);
        let (this, attach) = workload.run_recorded(&mut recorder)?;
        samples.this.push(this);
        let (read_this, _) = reader.run_recorded(&mut recorder)?;
        samples.read_this.push(read_this);
        samples.attach.push(attach);
        if recorder.tracked_processes() != 0 {
            bail!(
                "{} processes still tracked after the recordings",
                recorder.tracked_processes()
            );
        }
        drop(recorder);

        // A second recorder with the resource programs, as `spoc record -t apparmor` loads it
        // (its load is not part of the load figures, which are for the seccomp recorder).
        let mut with_resources = Recorder::load_with(&LoadOptions {
            resources: true,
            ..LoadOptions::default()
        })
        .context("loading the recorder with the resource programs")?;
        let (resources, _) = workload.run_recorded_with(
            &mut with_resources,
            &RecordOptions {
                resources: true,
                ..RecordOptions::default()
            },
        )?;
        samples.this_resources.push(resources);
        let (read_resources, _) = reader.run_recorded_with(
            &mut with_resources,
            &RecordOptions {
                resources: true,
                ..RecordOptions::default()
            },
        )?;
        samples.read_this_resources.push(read_resources);
        drop(with_resources);

        // The node recorder's way (issue 16): a pod's containers recorded from their filters
        // while the workload runs in no watched cgroup (another pod).
        let (beside, memory) = workload.run_beside_containers(CONTAINERS)?;
        samples.containers.push(beside);
        samples.container_memory.push(memory);

        if let Some(strace) = &strace {
            samples.strace.push(workload.run_under_strace(strace)?);
        }
    }
    samples.print(strace.is_some());
    Ok(())
}

/// What the workload calls in its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `getppid(2)`: about the cheapest syscall there is, so the overhead shows most.
    Getppid,
    /// `read(2)` of 4 KiB from /dev/zero: a syscall that does some work.
    Read4k,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Getppid => "getppid",
            Kind::Read4k => "read4k",
        }
    }

    fn parse(text: &str) -> Result<Kind> {
        match text {
            "getppid" => Ok(Kind::Getppid),
            "read4k" => Ok(Kind::Read4k),
            other => bail!("unknown workload {other:?} (getppid or read4k)"),
        }
    }

    /// The syscall number a recording of the workload must hold.
    fn nr(self) -> u32 {
        match self {
            Kind::Getppid => GETPPID_NR,
            Kind::Read4k => READ_NR,
        }
    }
}

/// The child's side: the timed loop.
fn run_workload(args: &[String]) -> Result<()> {
    let (calls, out, kind, cpu) = match args {
        [calls, out, kind] => (calls, out, kind, None),
        [calls, out, kind, cpu] => (calls, out, kind, Some(cpu.parse().context("parsing CPU")?)),
        _ => bail!("usage: overhead {WORKLOAD_FLAG} CALLS OUT getppid|read4k [CPU]"),
    };
    let calls: u64 = calls.parse().context("parsing CALLS")?;
    let kind = Kind::parse(kind)?;
    if let Some(cpu) = cpu {
        pin_to_cpu(cpu)?;
    }
    let mut zero = fs::File::open("/dev/zero").context("opening /dev/zero")?;
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    match kind {
        Kind::Getppid => {
            for _ in 0..calls {
                // `parent_id` is a plain `getppid(2)`; glibc does not cache it.
                black_box(std::os::unix::process::parent_id());
            }
        }
        Kind::Read4k => {
            for _ in 0..calls {
                black_box(std::io::Read::read(&mut zero, &mut buf).context("reading /dev/zero")?);
            }
        }
    }
    let elapsed = started.elapsed().as_nanos();
    fs::write(out, elapsed.to_string()).with_context(|| format!("writing {out}"))?;
    Ok(())
}

/// Keeps this process on one CPU (the paired comparison's workload).
#[allow(unsafe_code)]
fn pin_to_cpu(cpu: usize) -> Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        bail!("CPU {cpu} is beyond what a cpu_set_t holds");
    }
    // SAFETY: `set` is a plain bit set owned by this frame; CPU_SET checks nothing but writes
    // within it (cpu is below CPU_SETSIZE, checked above), and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("pinning the workload to CPU {cpu}"));
        }
    }
    Ok(())
}

struct Workload {
    exe: PathBuf,
    out: PathBuf,
    kind: Kind,
}

impl Workload {
    fn argv(&self, calls: u64) -> Vec<String> {
        vec![
            self.exe.display().to_string(),
            WORKLOAD_FLAG.to_string(),
            calls.to_string(),
            self.out.display().to_string(),
            self.kind.name().to_string(),
        ]
    }

    /// Nanoseconds per call the last run reported.
    fn per_call(&self, calls: u64) -> Result<f64> {
        let text = fs::read_to_string(&self.out).with_context(|| format!("reading {}", self.out.display()))?;
        fs::remove_file(&self.out).with_context(|| format!("removing {}", self.out.display()))?;
        let ns: f64 = text.trim().parse().with_context(|| format!("parsing {text:?}"))?;
        Ok(ns / calls as f64)
    }

    /// Runs `program` with `args`, then the workload's argument list (`skip` of its words left
    /// off: 1 when `program` is the workload itself, whose path is not an argument), the child
    /// kept on `cpu` when one is given.
    fn run_command(&self, program: &Path, args: &[&str], skip: usize, calls: u64, cpu: Option<usize>) -> Result<f64> {
        let status = Command::new(program)
            .args(args)
            .args(&self.argv(calls)[skip..])
            .args(cpu.map(|cpu| cpu.to_string()))
            .status()
            .with_context(|| format!("running {}", program.display()))?;
        if !status.success() {
            bail!("the workload under {} failed: {status}", program.display());
        }
        self.per_call(calls)
    }

    fn run_plain(&self, calls: u64) -> Result<f64> {
        self.run_on(calls, None)
    }

    /// [`Workload::run_plain`] with the child kept on `cpu` (any CPU: `None`).
    fn run_on(&self, calls: u64, cpu: Option<usize>) -> Result<f64> {
        self.run_command(&self.exe, &[], 1, calls, cpu)
    }

    fn run_under_strace(&self, strace: &Path) -> Result<f64> {
        self.run_command(strace, &["-f", "-o", "/dev/null"], 0, STRACE_CALLS, None)
    }

    fn run_recorded(&self, recorder: &mut Recorder) -> Result<(f64, Duration)> {
        self.run_recorded_with(recorder, &RecordOptions::default())
    }

    /// [`Workload::run_recorded`] with options (resources: the AppArmor side too).
    fn run_recorded_with(&self, recorder: &mut Recorder, options: &RecordOptions) -> Result<(f64, Duration)> {
        let calls = self.calls();
        let raw = recorder
            .record_command_with(&self.argv(calls), options, |_| {})
            .context("recording the workload")?;
        if !raw.succeeded() {
            bail!("the recorded workload failed: {:?}", raw.subject);
        }
        if !raw.syscalls.values().any(|numbers| numbers.contains(&self.kind.nr())) {
            bail!("the recording of the workload lacks {}", self.kind.name());
        }
        Ok((self.per_call(calls)?, raw.attach_time))
    }

    /// Calls per run of this workload.
    fn calls(&self) -> u64 {
        match self.kind {
            Kind::Getppid => CALLS,
            Kind::Read4k => READ_CALLS,
        }
    }

    /// Records a `sleep 30` while an untracked workload runs, then ends the sleep.
    fn run_beside_recording(&self, recorder: &mut Recorder) -> Result<(f64, Duration)> {
        let sleep = vec!["sleep".to_string(), "30".to_string()];
        let (raw, per_call) = thread::scope(|scope| {
            // The recorder stays on this thread; the workload (a child process) starts from a
            // helper thread once the recorded `sleep` runs.
            let runner = scope.spawn(|| -> Result<f64> {
                let sleep_pid = wait_for_child("sleep")?;
                let per_call = self.run_plain(CALLS);
                kill(sleep_pid)?;
                per_call
            });
            let raw = recorder.record_command(&sleep);
            let per_call = runner
                .join()
                .map_err(|_| anyhow::anyhow!("the workload thread panicked"));
            (raw, per_call)
        });
        let raw = raw.context("recording sleep")?;
        let per_call = per_call??;
        if raw.syscalls.values().any(|numbers| numbers.contains(&GETPPID_NR)) {
            bail!("the recording of sleep contains getppid: the untracked workload leaked into it");
        }
        Ok((per_call, raw.attach_time))
    }
}

/// What the node recorder holds: this process's VmRSS and the kernel memory of its BPF maps
/// (`memlock` of every map fd in /proc/self/fdinfo), with no container and with `CONTAINERS`
/// recording.
#[derive(Clone, Copy, Debug, Default)]
struct ContainerMemory {
    rss_kib_idle: u64,
    maps_kib_idle: u64,
    rss_kib_busy: u64,
    maps_kib_busy: u64,
}

/// Kernel memory of this process's BPF maps, in KiB.
fn bpf_maps_kib() -> Result<u64> {
    let mut bytes = 0u64;
    for entry in fs::read_dir("/proc/self/fdinfo").context("listing /proc/self/fdinfo")? {
        let text = fs::read_to_string(entry?.path()).unwrap_or_default();
        if !text.contains("map_type:") {
            continue;
        }
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix("memlock:")) {
            bytes += v.trim().parse::<u64>().context("parsing memlock")?;
        }
    }
    Ok(bytes / 1024)
}

/// The machine's cgroup2 mount point.
fn cgroup2_mount() -> Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    info.lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .context("no cgroup2 mount")
}

/// Starts `sleep 30` as a container of `cgroup` starts: the child enters the cgroup, then
/// installs the recording filter, then execs (recording starts at the filter).
#[allow(unsafe_code)]
fn start_container(cgroup: &Path, filter: &spo_seccomp::compile::Program) -> Result<std::process::Child> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .with_context(|| format!("opening {}/cgroup.procs", cgroup.display()))?;
    let fd = procs.as_raw_fd();
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    // SAFETY: runs in the forked child before execve; write(2) is async-signal-safe and
    // nothing is allocated. `procs` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spo_seccomp::apply::confine_command(&mut cmd, filter.clone(), 0).context("confining the container")?;
    let child = cmd.spawn().context("starting a container's sleep")?;
    drop(procs);
    Ok(child)
}

/// A cgroup tree the bench makes and removes (leaves first).
struct CgroupTree(PathBuf);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let mut dirs = vec![self.0.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = fs::read_dir(&dirs[i]) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// A watched pod whose containers record: `sleep`s under the recording filter, each in its own
/// cgroup under the pod's, in a cgroup tree the bench made (removed when dropped, after the
/// containers are killed).
struct RecordingPod {
    children: Vec<std::process::Child>,
    watch_id: spo_record::WatchId,
    containers: usize,
    // Dropped last: the cgroups empty once the children are gone.
    _tree: CgroupTree,
}

impl RecordingPod {
    /// Starts `containers` containers of a newly watched pod and waits until each records.
    fn start(watch: &mut ContainerWatch, containers: usize) -> Result<RecordingPod> {
        let tag = std::process::id();
        let tree = CgroupTree(cgroup2_mount()?.join(format!("spo-overhead-{tag}")));
        let pod_name = format!("pod-spo-overhead-{tag}");
        let watch_id = watch.watch(&pod_name).context("watching the pod")?;
        let filter = spo_seccomp::compile::compile(
            &spo_seccomp::backend::recording_filter(),
            &spo_seccomp::compile::CompileOptions::default(),
        )
        .context("compiling the recording filter")?;
        let mut pod = RecordingPod {
            children: Vec::new(),
            watch_id,
            containers,
            _tree: tree,
        };
        for i in 0..containers {
            let dir = pod._tree.0.join(&pod_name).join(format!("c{i}"));
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            pod.children.push(start_container(&dir, &filter)?);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = watch.containers(watch_id)?;
            let recording = seen.iter().filter(|c| c.filter_starts > 0).count();
            if recording == containers {
                return Ok(pod);
            }
            if Instant::now() > deadline {
                bail!("{recording} of {containers} containers recording after 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the containers and checks their recordings: one per container, none holding the
    /// workload's syscall, no container left without a target.
    fn finish(mut self, watch: &mut ContainerWatch, workload: Kind) -> Result<()> {
        self.kill();
        let recordings = watch.unwatch(self.watch_id).context("collecting the containers")?;
        if recordings.len() != self.containers {
            bail!("{} of {} containers recorded", recordings.len(), self.containers);
        }
        if recordings
            .iter()
            .any(|(_, raw)| raw.syscalls.values().any(|n| n.contains(&workload.nr())))
        {
            bail!("a container's recording holds the workload's {}", workload.name());
        }
        if watch.containers_without_target() != 0 {
            bail!("{} containers had no target", watch.containers_without_target());
        }
        Ok(())
    }

    fn kill(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for RecordingPod {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Workload {
    /// `containers` containers of one watched pod recording (each a `sleep` under the recording
    /// filter in its own cgroup) while the workload runs in no watched cgroup; the recordings
    /// are then checked to hold nothing of the workload.
    fn run_beside_containers(&self, containers: usize) -> Result<(f64, ContainerMemory)> {
        let recorder = Recorder::load().context("loading the recorder for the container case")?;
        let mut watch = ContainerWatch::start(recorder).context("starting the container watch")?;
        let mut memory = ContainerMemory {
            rss_kib_idle: vm_rss_kib()?,
            maps_kib_idle: bpf_maps_kib()?,
            ..ContainerMemory::default()
        };
        let pod = RecordingPod::start(&mut watch, containers)?;
        memory.rss_kib_busy = vm_rss_kib()?;
        memory.maps_kib_busy = bpf_maps_kib()?;
        let per_call = self.run_plain(self.calls())?;
        pod.finish(&mut watch, self.kind)?;
        Ok((per_call, memory))
    }
}

/// The pid of this process's child that runs `comm` (after its exec), waiting up to 5 s.
fn wait_for_child(comm: &str) -> Result<u32> {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for task in fs::read_dir(format!("/proc/{me}/task")).context("listing this process's threads")? {
            let children = fs::read_to_string(task?.path().join("children")).unwrap_or_default();
            for pid in children.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()) {
                let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if name.trim() == comm {
                    return Ok(pid);
                }
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    bail!("no child running {comm} after 5 s")
}

fn kill(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -KILL {pid} failed: {status}");
    }
    Ok(())
}

fn is_root() -> Result<bool> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0"))
}

fn vm_rss_kib() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS in /proc/self/status")?;
    field
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .context("parsing VmRSS")
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[derive(Default)]
struct Samples {
    baseline: Vec<f64>,
    idle: Vec<f64>,
    floor: Vec<f64>,
    floor_companions: Vec<f64>,
    other: Vec<f64>,
    this: Vec<f64>,
    this_resources: Vec<f64>,
    containers: Vec<f64>,
    container_memory: Vec<ContainerMemory>,
    read_baseline: Vec<f64>,
    read_floor: Vec<f64>,
    read_this: Vec<f64>,
    read_this_resources: Vec<f64>,
    strace: Vec<f64>,
    load: Vec<Duration>,
    attach: Vec<Duration>,
    rss_before_load: Vec<u64>,
    rss_after_load: Vec<u64>,
}

impl Samples {
    fn print(&self, with_strace: bool) {
        println!();
        let mut cases = vec![
            ("no recorder", &self.baseline, false),
            ("recorder loaded, idle", &self.idle, false),
            ("floor: an empty sys_enter program attached", &self.floor, true),
            (
                "the floor with the recorder's fork, exit and switch programs attached",
                &self.floor_companions,
                true,
            ),
            ("recording another process", &self.other, true),
            ("recording this process", &self.this, true),
            (
                "recording this process with files, programs, sockets, capabilities",
                &self.this_resources,
                true,
            ),
            (
                "100 containers of a watched pod recording, the workload in another cgroup",
                &self.containers,
                true,
            ),
        ];
        if with_strace {
            cases.push(("strace -f", &self.strace, false));
        }
        print_table(
            &format!(
                "getppid loop, {CALLS} calls (strace: {STRACE_CALLS}), median of {} rounds",
                self.baseline.len()
            ),
            &cases,
            &self.baseline,
            &self.floor,
        );
        if !with_strace {
            println!("(strace not found: case skipped)");
        }
        println!();
        print_table(
            &format!(
                "read(2) of 4 KiB from /dev/zero, {READ_CALLS} calls, median of {} rounds",
                self.read_baseline.len()
            ),
            &[
                ("no recorder", &self.read_baseline, false),
                ("floor: an empty sys_enter program attached", &self.read_floor, true),
                ("recording this process", &self.read_this, true),
                (
                    "recording this process with files, programs, sockets, capabilities",
                    &self.read_this_resources,
                    true,
                ),
            ],
            &self.read_baseline,
            &self.read_floor,
        );
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let load: Vec<f64> = self.load.iter().map(ms).collect();
        let attach: Vec<f64> = self.attach.iter().map(ms).collect();
        let rss_before: Vec<f64> = self.rss_before_load.iter().map(|&k| k as f64 / 1024.0).collect();
        let rss_after: Vec<f64> = self.rss_after_load.iter().map(|&k| k as f64 / 1024.0).collect();
        println!();
        println!("Recorder::load: median {:.2} ms (max {:.2})", median(&load), max(&load));
        println!(
            "attach (4 programs): median {:.3} ms (max {:.3})",
            median(&attach),
            max(&attach)
        );
        println!(
            "VmRSS of this process: {:.1} MiB before the first load, {:.1} MiB after load (max {:.1})",
            rss_before.first().copied().unwrap_or_default(),
            median(&rss_after),
            max(&rss_after)
        );
        if let Some(m) = self.container_memory.last() {
            println!(
                "node recorder (ContainerWatch): VmRSS {:.1} MiB, BPF maps {:.1} MiB with a pod watched and no \
                 container; {:.1} MiB and {:.1} MiB with {CONTAINERS} containers recording",
                m.rss_kib_idle as f64 / 1024.0,
                m.maps_kib_idle as f64 / 1024.0,
                m.rss_kib_busy as f64 / 1024.0,
                m.maps_kib_busy as f64 / 1024.0
            );
        }
        // With bpf_stats_enabled on, every BPF program run (the floor's included) also reads
        // the clock twice.
        println!("machine at the end: {}", spo_testkit::machine());
    }
}

/// One markdown table: each case (name, samples, whether it runs with a sys_enter program
/// attached) as its median, its ratio to `baseline` and, when attached, its distance and ratio
/// to `floor`, then every round.
fn print_table(title: &str, cases: &[(&str, &Vec<f64>, bool)], baseline: &[f64], floor: &[f64]) {
    let (base, floor) = (median(baseline), median(floor));
    println!("{title}");
    // Ratios from a machine whose bare loop moves by more than a tenth between rounds say
    // more about the machine than about the recorder.
    let spread = (max(baseline) - min(baseline)) / base;
    let noisy = spread > MAX_BASELINE_SPREAD;
    if noisy {
        println!(
            "too noisy: the no-recorder rounds spread {:.1}% (more than {:.0}%); ratios are not printed",
            spread * 100.0,
            MAX_BASELINE_SPREAD * 100.0
        );
    } else {
        println!("no-recorder rounds spread {:.1}%", spread * 100.0);
    }
    println!("| case | ns/call | ratio | over the floor (ns/call) | ratio to the floor | rounds (ns/call) |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for (name, values, attached) in cases {
        let m = median(values);
        let rounds: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
        let (over, to_floor) = if noisy {
            ("-".to_owned(), "-".to_owned())
        } else if *attached {
            (format!("{:+.1}", m - floor), format!("{:.3}x", m / floor))
        } else {
            (String::new(), String::new())
        };
        let ratio = if noisy {
            "-".to_owned()
        } else {
            format!("{:.3}x", m / base)
        };
        println!(
            "| {name} | {m:.1} | {ratio} | {over} | {to_floor} | {} |",
            rounds.join(", ")
        );
    }
}

/// Calls per run of the paired comparison: about a tenth of a second each, short enough that
/// the machine drifts little between the runs of one set.
const PAIRED_CALLS: u64 = 400_000;

/// What is attached while one run of the paired comparison runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PairedState {
    /// Nothing of ours.
    Bare,
    /// The empty `sys_enter` program (the floor).
    Floor,
    /// The node recorder's programs, with `CONTAINERS` containers of a watched pod recording.
    Recording,
}

/// The six orders of the three states; set `i` runs them in order `i % 6`, so each state comes
/// first, second and third equally often and an order bias cancels out.
const ORDERS: [[PairedState; 3]; 6] = {
    use PairedState::{Bare as B, Floor as F, Recording as R};
    [[B, F, R], [B, R, F], [F, B, R], [F, R, B], [R, B, F], [R, F, B]]
};

/// The paired comparison (`SPO_OVERHEAD_PAIRS=SETS`): one container watch with `CONTAINERS`
/// containers recording stays up the whole time; each set runs the pinned getppid workload
/// three times back to back, with nothing attached, with the empty `sys_enter` program, and
/// with the watch's programs attached (detached and attached again between runs; the
/// containers sit idle in `sleep`, so nothing of theirs is missed), in a rotating order. Each
/// set gives its own ratio, so drift between sets (which made the rounds of the main table
/// spread by up to 29 % on this project's VM) divides out; the figure is the median of the
/// sets' ratios with its quartiles.
fn run_paired(workload: &Workload, sets: usize) -> Result<()> {
    if sets == 0 {
        bail!("SPO_OVERHEAD_PAIRS must be at least 1");
    }
    // `SPO_OVERHEAD_CPU=any` leaves the workload to the scheduler.
    let cpu = match std::env::var("SPO_OVERHEAD_CPU").as_deref() {
        Ok("any") => None,
        Ok(text) => Some(text.parse().context("parsing SPO_OVERHEAD_CPU")?),
        Err(_) => Some(thread::available_parallelism().map_or(0, |n| n.get() - 1)),
    };
    let floor_recorder = Recorder::load_with(&LoadOptions {
        floor_probe: true,
        ..LoadOptions::default()
    })
    .context("loading the recorder with the floor program")?;
    let recorder = Recorder::load().context("loading the recorder for the container watch")?;
    let mut watch = ContainerWatch::start(recorder).context("starting the container watch")?;
    let pod = RecordingPod::start(&mut watch, CONTAINERS)?;

    let mut floor_link = None;
    let mut results = [Vec::new(), Vec::new(), Vec::new()];
    let measured = (|| -> Result<()> {
        for set in 0..sets {
            if set % 10 == 0 {
                eprintln!("set {}/{sets}", set + 1);
            }
            for state in ORDERS[set % ORDERS.len()] {
                // Detach before attaching: never two states at once.
                floor_link = None;
                watch.detach_for_bench();
                match state {
                    PairedState::Bare => {}
                    PairedState::Floor => {
                        floor_link = Some(floor_recorder.attach_floor_probe().context("attaching the floor")?);
                    }
                    PairedState::Recording => watch
                        .attach_again_for_bench()
                        .context("attaching the container watch again")?,
                }
                results[state as usize].push(workload.run_on(PAIRED_CALLS, cpu)?);
            }
        }
        Ok(())
    })();
    drop(floor_link);
    watch
        .attach_again_for_bench()
        .context("attaching the container watch for its end")?;
    measured?;
    pod.finish(&mut watch, workload.kind)?;
    drop(watch);

    let [bare, floor, recording] = &results;
    let ratios = |over: &[f64], under: &[f64]| -> Vec<f64> { over.iter().zip(under).map(|(o, u)| o / u).collect() };
    let diffs = |over: &[f64], under: &[f64]| -> Vec<f64> { over.iter().zip(under).map(|(o, u)| o - u).collect() };
    println!();
    let placement = cpu.map_or_else(|| "on any CPU".to_owned(), |cpu| format!("pinned to CPU {cpu}"));
    println!(
        "paired comparison: getppid loop, {PAIRED_CALLS} calls a run, {placement}, {sets} sets of three runs \
         (nothing / empty sys_enter program / node recorder with {CONTAINERS} containers of a watched pod recording, \
         the workload in another cgroup), orders rotated"
    );
    println!("| state | ns/call (median of runs) | runs spread (max-min over median) |");
    println!("| --- | ---: | ---: |");
    for (name, values) in [
        ("nothing attached", bare),
        ("floor: an empty sys_enter program", floor),
        ("node recorder, 100 containers recording", recording),
    ] {
        let m = median(values);
        println!("| {name} | {m:.1} | {:.1}% |", (max(values) - min(values)) / m * 100.0);
    }
    println!();
    println!("| per set | median | 95% confidence interval of the median | quartiles |");
    println!("| --- | ---: | --- | --- |");
    for (name, values, unit) in [
        ("recorder / floor", ratios(recording, floor), "x"),
        ("recorder - floor (ns/call)", diffs(recording, floor), ""),
        ("floor / nothing", ratios(floor, bare), "x"),
        ("floor - nothing (ns/call)", diffs(floor, bare), ""),
    ] {
        let (q1, q2, q3) = quartiles(&values);
        let (low, high) = median_confidence(&values);
        let digits = if unit == "x" { 4 } else { 1 };
        println!(
            "| {name} | {q2:.digits$}{unit} | {low:.digits$} .. {high:.digits$} | {q1:.digits$} .. {q3:.digits$} |"
        );
    }
    println!("machine at the end: {}", spo_testkit::machine());
    Ok(())
}

/// A 95 % confidence interval of the median that assumes no distribution: the order statistics
/// at ranks n/2 -+ 1.96 sqrt(n)/2 (the binomial's normal approximation; sound from about 20
/// values on).
fn median_confidence(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let half_width = 1.96 * (n as f64).sqrt() / 2.0;
    let low = ((n as f64 / 2.0 - half_width).floor().max(0.0)) as usize;
    let high = ((n as f64 / 2.0 + half_width).ceil() as usize).min(n - 1);
    (sorted[low], sorted[high])
}

/// The 25th, 50th and 75th percentiles (nearest rank on the sorted values).
fn quartiles(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if sorted.is_empty() {
            f64::NAN
        } else {
            sorted[((sorted.len() - 1) as f64 * q).round() as usize]
        }
    };
    (at(0.25), median(&sorted), at(0.75))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::min)
}

/// The largest spread (max - min over the median) of the no-recorder rounds with which the
/// bench still prints ratios.
const MAX_BASELINE_SPREAD: f64 = 0.10;
