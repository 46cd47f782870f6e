// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
//
// The exit log: for every process that exits, its start time, exit time and cgroup directory
// name, in a bounded LRU map keyed by pid. The audit log enricher reads it when a record names
// a process that is already gone from /proc (a container's `mkdir` exits within a millisecond
// of its logged call, long before the record is read), so the record is still attributed to its
// container. One program on one tracepoint, run once per process exit; nothing per syscall.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Kept in sync with `EXIT_CGROUP_NAME` and `ExitRecord` in src/exits.rs.
#define CGROUP_NAME_MAX 96
#define MAX_EXITED 16384

struct exited {
	__u64 start_ns; // the thread group leader's start, ns since boot (CLOCK_BOOTTIME)
	__u64 exit_ns;	// when its last thread exited, same clock
	char cgroup[CGROUP_NAME_MAX]; // the unified (cgroup v2) directory's name, else a v1 one's
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_EXITED);
	__type(key, __u32);
	__type(value, struct exited);
} exited SEC(".maps");

SEC("tp_btf/sched_process_exit")
int BPF_PROG(note_exit, struct task_struct *task)
{
	// Only when the last thread of the group goes: the process has exited.
	if (task->signal->live.counter != 0)
		return 0;
	__u32 tgid = task->tgid;
	struct exited e = {};
	e.start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	e.exit_ns = bpf_ktime_get_boot_ns();
	struct kernfs_node *kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	if (kn)
		bpf_probe_read_kernel_str(e.cgroup, sizeof(e.cgroup), BPF_CORE_READ(kn, name));
	// A cgroup v1 machine: the default hierarchy's root has an empty name ("/" on some
	// kernels); the first v1 hierarchy holds the container's directory.
	if (e.cgroup[0] == 0 || (e.cgroup[0] == '/' && e.cgroup[1] == 0)) {
		struct kernfs_node *v1 = BPF_CORE_READ(task, cgroups, subsys[0], cgroup, kn);
		if (v1)
			bpf_probe_read_kernel_str(e.cgroup, sizeof(e.cgroup), BPF_CORE_READ(v1, name));
	}
	bpf_map_update_elem(&exited, &tgid, &e, BPF_ANY);
	return 0;
}
