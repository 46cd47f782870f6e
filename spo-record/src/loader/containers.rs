//! Recording every container started under a cgroup: the node agent's recorder.
//!
//! A container runtime gives each container a cgroup directory under its pod's (kubelet's
//! `pod<uid>`, or `kubepods-...-pod<uid>.slice` with the systemd driver). A [`ContainerWatch`]
//! is told the pod's cgroup name before the pod starts; from then on, every process entering a
//! child cgroup of a directory with that name is tracked, each child cgroup in a recording of its
//! own, and starts being recorded when it installs a seccomp filter (as
//! [`RecordStart::SeccompFilter`](super::RecordStart::SeccompFilter) does for one command). The
//! runtime's init process enters the container's cgroup before it sets the container up, so
//! nothing is raced: the recording holds what the container's profile will judge, from the
//! runtime's calls after installing the filter to the workload's last.
//!
//! Names, not cgroup ids, are matched (`select_container` in `recorder.bpf.c`): a name can be
//! watched before its directory exists, and on a cgroup v1 machine a container has a directory
//! of the same name in every hierarchy.
//!
//! A watch may instead start each container's recording at its exec ([`ContainerStart::Exec`]):
//! the point an AppArmor profile starts confining, and recorded with files, programs, sockets
//! and capabilities ([`ContainerOptions::resources`]) for AppArmor profiles. Such containers
//! need no seccomp filter. The exec that starts them is the first one made in the container's
//! own mount namespace (a runtime's init may exec before it moves there: runc 1.1 re-executes
//! itself from a sealed copy of its binary).
//!
//! Processes that enter a container's cgroup without passing through `cgroup.procs`
//! (`clone3(CLONE_INTO_CGROUP)`, which newer runtimes use for `exec` sessions) are not seen.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libbpf_rs::{Link, MapCore, MapFlags};

use super::{Collector, MAX_TARGETS, Observed, Recorder, raw_recording};
use crate::{RawRecording, RecordError, Subject};

/// `TRACK_WAIT_FOR_FILTER` and `TRACK_WAIT_FOR_EXEC` in `recorder.bpf.c`.
const WAIT_FOR_FILTER: u32 = 1;
const WAIT_FOR_EXEC: u32 = 2;

/// Where the recording of each container of a watch starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ContainerStart {
    /// Where the container's runtime installs its seccomp filter (the filter its profile
    /// will be): what a seccomp profile judges, the runtime's calls after the filter included.
    /// A container without a filter records nothing.
    #[default]
    SeccompFilter,
    /// At the container's exec of its entrypoint (the first exec in its own mount
    /// namespace): what an AppArmor profile, applied at that exec, confines.
    Exec,
}

/// How a watch records its containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ContainerOptions {
    /// Where each container's recording starts.
    pub start: ContainerStart,
    /// Also record files opened, programs executed, libraries mapped, sockets created and
    /// capabilities checked (what AppArmor profiles need). Needs a recorder loaded with
    /// [`LoadOptions::resources`](super::LoadOptions::resources).
    pub resources: bool,
}

/// A watched parent: its name and how it records.
#[derive(Debug, Clone)]
struct Parent {
    name: String,
    options: ContainerOptions,
}

/// `CGROUP_NAME_MAX` in `recorder.bpf.c`: names are kept up to one byte less (the NUL).
pub const CGROUP_NAME_MAX: usize = 96;

/// A watched parent cgroup, as [`ContainerWatch::watch`] handed it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(u32);

/// A container (a child cgroup of a watched parent) and what its recording holds so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSeen {
    /// The container's cgroup directory name (for containerd with the cgroupfs driver, the
    /// container id; `cri-containerd-<id>.scope` with systemd).
    pub cgroup: String,
    /// Live processes of the container being tracked (waiting for the filter or recording).
    pub processes: usize,
    /// Processes that started recording by installing a filter (0: the container has not
    /// installed one, and nothing is recorded).
    pub filter_starts: u64,
    /// Distinct syscalls recorded so far.
    pub distinct_syscalls: usize,
}

/// Records containers under watched parent cgroups until dropped. Owns the recorder: its
/// programs stay attached while the watch lives.
pub struct ContainerWatch {
    // Detached (dropped) before the recorder's object is closed.
    _links: Vec<Link>,
    /// The ring buffer and resource programs, while a watch records resources.
    collector: Option<Collector>,
    recorder: Recorder,
    parents: BTreeMap<WatchId, Parent>,
    /// The watch each target belongs to, as last read from `container_targets`.
    target_watch: HashMap<u32, WatchId>,
    next_watch: u32,
    attach_time: Duration,
}

impl std::fmt::Debug for ContainerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerWatch")
            .field("parents", &self.parents)
            .finish_non_exhaustive()
    }
}

/// Why a cgroup name cannot be watched (`None`: it can).
pub fn cgroup_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("is empty or a relative directory")
    } else if name.len() >= CGROUP_NAME_MAX {
        Some("is longer than the recorder matches (95 bytes)")
    } else if name.bytes().any(|b| b == b'/' || b == 0) {
        Some("holds a '/' or a NUL byte")
    } else {
        None
    }
}

fn name_bytes<const N: usize>(name: &str) -> [u8; N] {
    let mut out = [0; N];
    let len = name.len().min(N - 1);
    out[..len].copy_from_slice(&name.as_bytes()[..len]);
    out
}

/// The key of `container_targets`: `struct container_key` (a u32 then the name, no padding).
fn container_key(watch: WatchId, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + CGROUP_NAME_MAX);
    key.extend_from_slice(&watch.0.to_ne_bytes());
    key.extend_from_slice(&name_bytes::<CGROUP_NAME_MAX>(name));
    key
}

fn decode_container_key(key: &[u8]) -> Option<(WatchId, String)> {
    let watch = u32::from_ne_bytes(key.get(..4)?.try_into().ok()?);
    let name = key.get(4..)?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some((WatchId(watch), String::from_utf8_lossy(&name[..end]).into_owned()))
}

impl ContainerWatch {
    /// Attaches the recorder's programs and starts watching (no parent yet). Every target of
    /// the recorder becomes available to containers, so the recorder records nothing else while
    /// the watch lives.
    pub fn start(mut recorder: Recorder) -> Result<ContainerWatch, RecordError> {
        let started = Instant::now();
        let links = attach_programs(&recorder)?;
        for target in 0..MAX_TARGETS {
            offer_target(&mut recorder, target)?;
        }
        recorder.set_enabled(true);
        recorder.set_watching_containers(true);
        Ok(ContainerWatch {
            recorder,
            _links: links,
            collector: None,
            parents: BTreeMap::new(),
            target_watch: HashMap::new(),
            next_watch: 0,
            attach_time: started.elapsed(),
        })
    }

    /// For benchmarks: detaches every program of the watch, so the machine pays nothing for it
    /// until [`ContainerWatch::attach_again_for_bench`]. Nothing is seen meanwhile (no syscall,
    /// fork, exit or exec): only for a bench whose containers sit idle while it compares the
    /// watch against an empty program.
    #[doc(hidden)]
    pub fn detach_for_bench(&mut self) {
        self._links.clear();
    }

    /// For benchmarks: attaches the programs again after [`ContainerWatch::detach_for_bench`],
    /// moving the generation on so nothing a CPU cached before is used.
    #[doc(hidden)]
    pub fn attach_again_for_bench(&mut self) -> Result<(), RecordError> {
        if self._links.is_empty() {
            self._links = attach_programs(&self.recorder)?;
            self.recorder.set_enabled(true);
        }
        Ok(())
    }

    /// Records every container that starts under a cgroup directory named `parent` from now
    /// on, from its seccomp filter, syscalls only. Watching a name already watched returns its
    /// id.
    pub fn watch(&mut self, parent: &str) -> Result<WatchId, RecordError> {
        self.watch_with(parent, ContainerOptions::default())
    }

    /// Records every container that starts under a cgroup directory named `parent` from now
    /// on, as `options` say. Watching a name already watched returns its id when the options
    /// are the same, and fails otherwise (one pod is recorded one way).
    pub fn watch_with(&mut self, parent: &str, options: ContainerOptions) -> Result<WatchId, RecordError> {
        if let Some(problem) = cgroup_name_problem(parent) {
            return Err(RecordError::BadCgroupName {
                name: parent.to_owned(),
                problem,
            });
        }
        if let Some((&id, known)) = self.parents.iter().find(|(_, p)| p.name == parent) {
            if known.options != options {
                return Err(RecordError::BadCgroupName {
                    name: parent.to_owned(),
                    problem: "is watched already with other options",
                });
            }
            return Ok(id);
        }
        if options.resources && self.collector.is_none() {
            self.collector = Some(Collector::open(&self.recorder)?);
        }
        let id = WatchId(self.next_watch);
        self.recorder
            .skel
            .maps
            .watched_parents
            .update(
                &name_bytes::<CGROUP_NAME_MAX>(parent),
                &parent_value(id, options),
                MapFlags::NO_EXIST,
            )
            .map_err(|source| RecordError::Map {
                operation: "watching a parent cgroup",
                source,
            })?;
        self.next_watch = self.next_watch.wrapping_add(1);
        self.parents.insert(
            id,
            Parent {
                name: parent.to_owned(),
                options,
            },
        );
        self.update_collecting();
        Ok(id)
    }

    /// The parent cgroup names watched now.
    pub fn watched(&self) -> impl Iterator<Item = (WatchId, &str)> {
        self.parents.iter().map(|(id, p)| (*id, p.name.as_str()))
    }

    /// Takes the file, program and library events the kernel has handed over so far, for the
    /// containers of watches that record resources. Call it often (every 100 ms or so) while
    /// such watches live: the kernel's buffer holds about 450 events, and relative paths
    /// are resolved from the kernel's walk only (a path the kernel could not resolve counts as
    /// unresolved: `/proc` would name it as this process sees it, not as the container does).
    pub fn drain(&mut self) {
        let Some(collector) = &mut self.collector else {
            return;
        };
        let map = &self.recorder.skel.maps.container_targets;
        let parents = &self.parents;
        let target_watch = &mut self.target_watch;
        let mut refreshed = false;
        let mut wants = |target: u32| -> bool {
            if !target_watch.contains_key(&target) && !refreshed {
                refreshed = true;
                target_watch.clear();
                for key in map.keys() {
                    let Some((watch, _)) = decode_container_key(&key) else {
                        continue;
                    };
                    if let Some(t) = map
                        .lookup(&key, MapFlags::ANY)
                        .ok()
                        .flatten()
                        .and_then(|v| v.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()))
                    {
                        target_watch.insert(u32::from_ne_bytes(t), watch);
                    }
                }
            }
            target_watch
                .get(&target)
                .and_then(|w| parents.get(w))
                .is_some_and(|p| p.options.resources)
        };
        collector.drain_with(&mut wants, |_, _| None);
    }

    /// Switches the kernel side's resource recording on while some watch wants it.
    fn update_collecting(&mut self) {
        let on = self.parents.values().any(|p| p.options.resources);
        self.recorder.set_collecting(on);
    }

    /// The containers seen under `watch` so far.
    pub fn containers(&self, watch: WatchId) -> Result<Vec<ContainerSeen>, RecordError> {
        let counts = self.recorder.process_counts();
        let mut out = Vec::new();
        for (name, target) in self.targets_of(watch) {
            let seen = self.recorder.read_target(&target.to_ne_bytes())?;
            out.push(ContainerSeen {
                cgroup: name,
                processes: counts.get(&target).copied().unwrap_or(0),
                filter_starts: seen.filter_starts,
                distinct_syscalls: seen.native.len() + seen.compat.len(),
            });
        }
        Ok(out)
    }

    /// Containers, under any watch, that ran under a seccomp filter and have no live process
    /// left: they exited (a container's processes are all tracked from its first). One pass
    /// over the tracked processes and one over the containers, so it is cheap to ask often.
    pub fn exited(&self) -> Result<Vec<(WatchId, String)>, RecordError> {
        let counts = self.recorder.process_counts();
        let map = &self.recorder.skel.maps.container_targets;
        let mut out = Vec::new();
        for key in map.keys() {
            let Some((watch, name)) = decode_container_key(&key) else {
                continue;
            };
            let Some(target) = map
                .lookup(&key, MapFlags::ANY)
                .ok()
                .flatten()
                .and_then(|v| v.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()))
                .map(u32::from_ne_bytes)
            else {
                continue;
            };
            if counts.get(&target).copied().unwrap_or(0) > 0 {
                continue;
            }
            if self.recorder.read_target(&target.to_ne_bytes())?.filter_starts > 0 {
                out.push((watch, name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Ends the recording of container `cgroup` under `watch` and returns it (`None`: no such
    /// container was seen). Its processes still alive are no longer recorded; if one enters
    /// the cgroup again later, a new recording starts.
    pub fn collect(&mut self, watch: WatchId, cgroup: &str) -> Result<Option<RawRecording>, RecordError> {
        let key = container_key(watch, cgroup);
        let Some(value) = self
            .recorder
            .skel
            .maps
            .container_targets
            .lookup(&key, MapFlags::ANY)
            .map_err(|source| RecordError::Map {
                operation: "looking up a container's target",
                source,
            })?
        else {
            return Ok(None);
        };
        let target = value
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_ne_bytes)
            .ok_or(RecordError::LayoutMismatch {
                map: "container_targets",
                expected: 4,
                actual: value.len(),
            })?;
        // No new process joins this recording from here on: the entry goes first, then the
        // processes, then what they recorded is read.
        self.recorder
            .skel
            .maps
            .container_targets
            .delete(&key)
            .map_err(|source| RecordError::Map {
                operation: "ending a container's recording",
                source,
            })?;
        self.recorder.forget_target(target)?;
        let seen = self.recorder.read_target(&target.to_ne_bytes())?;
        let parent = self.parents.get(&watch).map(|p| p.name.clone()).unwrap_or_default();
        // What the kernel handed over until now belongs to this container; the target is
        // known to be this watch's (the cache may not have seen it yet).
        self.target_watch.insert(target, watch);
        self.drain();
        let resources = self.collector.as_mut().map(|c| c.take(target)).unwrap_or_default();
        self.target_watch.remove(&target);
        let recording = raw_recording(
            Subject::Container {
                parent,
                cgroup: cgroup.to_owned(),
            },
            seen,
            resources,
            Observed {
                attach_time: self.attach_time,
                skipped: 0,
            },
        );
        offer_target(&mut self.recorder, target)?;
        Ok(Some(recording))
    }

    /// Stops watching `watch` and ends the recordings of its containers, which are returned
    /// with their cgroup names.
    pub fn unwatch(&mut self, watch: WatchId) -> Result<Vec<(String, RawRecording)>, RecordError> {
        if let Some(parent) = self.parents.get(&watch).map(|p| p.name.clone()) {
            match self
                .recorder
                .skel
                .maps
                .watched_parents
                .delete(&name_bytes::<CGROUP_NAME_MAX>(&parent))
            {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RecordError::Map {
                        operation: "unwatching a parent cgroup",
                        source,
                    });
                }
            }
        }
        let mut out = Vec::new();
        for (name, _) in self.targets_of(watch) {
            if let Some(recording) = self.collect(watch, &name)? {
                out.push((name, recording));
            }
        }
        // Forgotten after its containers were collected, so their last events were kept.
        self.parents.remove(&watch);
        self.update_collecting();
        if self.collector.is_some() && !self.parents.values().any(|p| p.options.resources) {
            // Detaches the resource programs: nothing pays for them while no watch wants them.
            self.collector = None;
        }
        Ok(out)
    }

    /// Containers that started under a watched parent but were not recorded because every
    /// target was taken (more than 1,024 containers recorded at once).
    pub fn containers_without_target(&self) -> u64 {
        self.recorder.containers_without_target()
    }

    /// The containers of `watch` with their targets.
    fn targets_of(&self, watch: WatchId) -> Vec<(String, u32)> {
        let map = &self.recorder.skel.maps.container_targets;
        map.keys()
            .filter_map(|key| {
                let (w, name) = decode_container_key(&key)?;
                if w != watch {
                    return None;
                }
                let value = map.lookup(&key, MapFlags::ANY).ok().flatten()?;
                let target = u32::from_ne_bytes(value.get(..4)?.try_into().ok()?);
                Some((name, target))
            })
            .collect()
    }
}

/// The `watched_parents` value: `struct watched_parent` in `recorder.bpf.c`.
fn parent_value(watch: WatchId, options: ContainerOptions) -> [u8; 8] {
    let wait = match options.start {
        ContainerStart::SeccompFilter => WAIT_FOR_FILTER,
        ContainerStart::Exec => WAIT_FOR_EXEC,
    };
    let mut value = [0; 8];
    value[..4].copy_from_slice(&watch.0.to_ne_bytes());
    value[4..].copy_from_slice(&wait.to_ne_bytes());
    value
}

/// Clears `target` and offers it to the next container.
fn offer_target(recorder: &mut Recorder, target: u32) -> Result<(), RecordError> {
    recorder.clear_target(target)?;
    recorder
        .skel
        .maps
        .free_targets
        .update(&[], &target.to_ne_bytes(), MapFlags::ANY)
        .map_err(|source| RecordError::Map {
            operation: "offering a target to containers",
            source,
        })
}

/// Attaches what a watch runs: the recorder's programs, then the container selection and the
/// start at exec.
fn attach_programs(recorder: &Recorder) -> Result<Vec<Link>, RecordError> {
    let mut links = recorder.attach()?;
    for (program, prog) in [
        ("select_container", &recorder.skel.progs.select_container),
        ("start_at_exec", &recorder.skel.progs.start_at_exec),
    ] {
        links.push(
            prog.attach()
                .map_err(|source| RecordError::Attach { program, source })?,
        );
    }
    Ok(links)
}

impl Drop for ContainerWatch {
    fn drop(&mut self) {
        self.recorder.set_watching_containers(false);
        self.recorder.set_enabled(false);
        let watches: Vec<WatchId> = self.parents.keys().copied().collect();
        for watch in watches {
            let _ = self.unwatch(watch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_names_the_recorder_cannot_match_are_refused() {
        assert_eq!(cgroup_name_problem("pod0f9a7c1e-1111-2222-3333-444455556666"), None);
        assert_eq!(
            cgroup_name_problem("kubepods-besteffort-pod0f9a7c1e_1111_2222_3333_444455556666.slice"),
            None
        );
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(cgroup_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(cgroup_name_problem(&"x".repeat(95)).is_none());
        assert!(cgroup_name_problem(&"x".repeat(96)).is_some());
    }

    #[test]
    fn container_keys_round_trip_with_the_c_layout() {
        let key = container_key(WatchId(7), "abc");
        assert_eq!(key.len(), 4 + CGROUP_NAME_MAX);
        assert_eq!(decode_container_key(&key), Some((WatchId(7), "abc".to_owned())));
    }
}
