// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
//
// The syscall recorder: which syscalls each tracked process tree made, aggregated in the
// kernel as one bitmap per target (no event per syscall ever reaches user space).
//
// Only BTF-enabled tracepoints (tp_btf) are used: they attach without tracefs, pass typed
// arguments (the fork tracepoint hands us the child's task_struct, which is the only way to tell
// a new process from a new thread), and skip the perf record that classic tracepoints build
// before calling the program. kprobes, fentry and LSM programs are not available on the target
// kernels (see MACHINE.md).
//
// Per-process state is one `targets` entry per live tracked thread group: it is added when a
// tracked process forks a new thread group and removed when the last thread of a group exits, so
// a recycled pid can never inherit a dead process's target.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Syscall numbers below this are recorded; every current ABI stays far below it.
#define MAX_SYSCALL_NR 1024
#define BITMAP_WORDS (MAX_SYSCALL_NR / 64)

// x86: `TS_COMPAT` in thread_info.status marks a 32-bit (ia32) syscall in progress
// (arch/x86/include/asm/thread_info.h). Defines are not part of BTF, hence spelled out here.
#define X86_TS_COMPAT 0x0002

#define EEXIST 17

// Kept in sync with `TargetSyscalls` in src/maps.rs.
struct target_syscalls {
	// Syscalls made through the native ABI (x86_64 on x86).
	__u64 native[BITMAP_WORDS];
	// Syscalls made through the compat ABI (ia32 on x86).
	__u64 compat[BITMAP_WORDS];
	// Syscall numbers at or above MAX_SYSCALL_NR (none exist today): counted, not recorded.
	__u64 out_of_range;
	// Processes the tree created that could not be tracked because `targets` was full.
	__u64 untracked_processes;
	// Times a waiting process installed a seccomp filter and so started being recorded.
	__u64 filter_starts;
};

// A tracked process waits (records nothing) until it installs a seccomp filter; its children
// inherit the wait, or the recording once it started. A container runtime installs the
// container's filter in its init process shortly before exec'ing the entrypoint, so this
// records exactly the syscalls that filter will judge: the runtime's own calls after installing
// it included, and none of the thousands before (see RecordOptions in src/loader.rs).
#define TRACK_WAIT_FOR_FILTER 1

// Kept in sync with `Tracked` in src/loader.rs.
struct tracked {
	__u32 target;
	__u32 flags;
};

// Thread group id (the pid user space sees) -> target id and state. The bound caps the number
// of live processes tracked at once over all targets.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct tracked);
} targets SEC(".maps");

// Selects processes by what they run in rather than by ancestry: a mount namespace (a
// container) or a cgroup. A process that execs while in a selected one joins its target (how
// `runc exec` or `kubectl exec` sessions enter a recorded container); user space adds the
// processes already there when the recording starts, and their children follow by fork.
#define SELECT_MOUNT_NAMESPACE 1
#define SELECT_CGROUP 2

// Kept in sync with `SelectorKey` in src/loader.rs.
struct selector_key {
	__u32 kind;
	__u32 pad;
	__u64 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct selector_key);
	__type(value, __u32);
} selectors SEC(".maps");

// Set by user space while at least one selector is in `selectors`: the exec program returns at
// once otherwise.
volatile __u32 selecting = 0;

// Target id -> what that target did. User space hands out target ids and clears the entry
// before reusing it.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct target_syscalls);
} syscalls SEC(".maps");

// Set by user space while at least one recording runs; every program returns at once otherwise.
volatile __u32 enabled = 0;

// Bumped by user space when a recording starts: a `thread_targets` entry of an earlier one is
// stale.
volatile __u32 epoch = 0;

// What a thread recording into a target keeps in its task storage, so that its syscalls after
// the first skip the `targets` hash lookup (the most expensive step of the hot path on a kernel
// with retpolines). Only the recording state is kept: a waiting thread asks `targets` every
// time, so another thread of its group installing a filter takes effect at once.
struct thread_target {
	__u32 target;
	__u32 epoch;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_target);
} thread_targets SEC(".maps");

// A counting filter in front of `targets`: slot `tgid & TRACKED_SLOT_MASK` counts the `targets`
// entries whose tgid falls into it. A zero slot proves the tgid is untracked with one load from
// .bss, so the processes that are not recorded (nearly all of them) never pay for the hash
// lookup. Whoever adds an entry increments its slot first; whoever deletes one (and only when the
// delete succeeded) decrements it. Kept in sync with `TRACKED_SLOTS` in src/loader.rs.
#define TRACKED_SLOTS 4096
#define TRACKED_SLOT_MASK (TRACKED_SLOTS - 1)
volatile __u32 tracked_slots[TRACKED_SLOTS];

static __always_inline int maybe_tracked(__u32 tgid)
{
	return tracked_slots[tgid & TRACKED_SLOT_MASK] != 0;
}

static __always_inline void count_slot(__u32 tgid, int delta)
{
	__sync_fetch_and_add(&tracked_slots[tgid & TRACKED_SLOT_MASK], delta);
}

static __always_inline void set_bit(__u64 *words, __u32 nr)
{
	__u64 mask = 1ULL << (nr & 63);
	__u64 *word = &words[(nr >> 6) & (BITMAP_WORDS - 1)];

	// Most syscalls repeat: a plain read keeps the cache line shared, and the atomic OR only
	// runs the first time, so two threads setting different bits never lose one.
	if (!(*word & mask))
		__sync_fetch_and_or(word, mask);
}

// Whether syscall `id` with the arguments in `regs` installs a seccomp filter:
// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog) or prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
// prog) with a program, in the native ABI or, on x86-64, the ia32 one. A NULL program is a
// feature probe (runc and libseccomp make several, failing with EFAULT, long before the real
// install) and does not count. A call that fails for another reason does: that only records
// more than needed, never less.
#define SECCOMP_SET_MODE_FILTER 1
#define SECCOMP_MODE_FILTER 2
#define PR_SET_SECCOMP 22
static __always_inline int installs_filter(struct pt_regs *regs, long id, int compat)
{
#if defined(__TARGET_ARCH_x86)
	if (compat) {
		// ia32: seccomp is 354, prctl 172; arguments in ebx, ecx.
		if (id == 354)
			return (__u32)regs->bx == SECCOMP_SET_MODE_FILTER && (__u32)regs->dx != 0;
		if (id == 172)
			return (__u32)regs->bx == PR_SET_SECCOMP && (__u32)regs->cx == SECCOMP_MODE_FILTER &&
			       (__u32)regs->dx != 0;
		return 0;
	}
	if (id == 317)
		return regs->di == SECCOMP_SET_MODE_FILTER && regs->dx != 0;
	if (id == 157)
		return regs->di == PR_SET_SECCOMP && regs->si == SECCOMP_MODE_FILTER && regs->dx != 0;
	return 0;
#elif defined(__TARGET_ARCH_arm64)
	if (id == 277)
		return regs->regs[0] == SECCOMP_SET_MODE_FILTER && regs->regs[2] != 0;
	if (id == 167)
		return regs->regs[0] == PR_SET_SECCOMP && regs->regs[1] == SECCOMP_MODE_FILTER &&
		       regs->regs[2] != 0;
	return 0;
#else
	return 0;
#endif
}

SEC("tp_btf/sys_enter")
int BPF_PROG(record_sys_enter, struct pt_regs *regs, long id)
{
	if (!enabled)
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!maybe_tracked(tgid))
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	int compat = 0;
#ifdef __TARGET_ARCH_x86
	compat = (task->thread_info.status & X86_TS_COMPAT) != 0;
#endif
	__u32 now = epoch;
	__u32 target;
	struct thread_target *cached = bpf_task_storage_get(&thread_targets, task, 0, 0);
	if (cached && cached->epoch == now) {
		target = cached->target;
	} else {
		struct tracked *tracked = bpf_map_lookup_elem(&targets, &tgid);
		if (!tracked)
			return 0;
		target = tracked->target;
		if (tracked->flags & TRACK_WAIT_FOR_FILTER) {
			// The installing call itself is not judged by the filter it installs; from the
			// next one on, every thread of the group is recorded (a superset for runtimes that
			// filter only the calling thread).
			if (installs_filter(regs, id, compat)) {
				// The only flag, and it only ever goes from set to clear: a plain store is
				// safe when two threads race here.
				*(volatile __u32 *)&tracked->flags = 0;
				struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
				if (seen)
					__sync_fetch_and_add(&seen->filter_starts, 1);
			}
			return 0;
		}
		cached = bpf_task_storage_get(&thread_targets, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (cached) {
			cached->target = target;
			cached->epoch = now;
		}
	}

	struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
	if (!seen)
		return 0;
	if (id < 0)
		return 0; // not a syscall: the kernel skipped it (ptrace or seccomp set it to -1)
	if (id >= MAX_SYSCALL_NR) {
		__sync_fetch_and_add(&seen->out_of_range, 1);
		return 0;
	}
	set_bit(compat ? seen->compat : seen->native, (__u32)id);
	return 0;
}

// Not part of recording: only the overhead bench attaches it, to measure what an attached
// sys_enter program that does nothing costs every syscall of the machine (the floor every
// tracepoint-based recorder pays).
SEC("tp_btf/sys_enter")
int BPF_PROG(floor_sys_enter)
{
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(track_fork, struct task_struct *parent, struct task_struct *child)
{
	if (!enabled)
		return 0;

	__u32 parent_tgid = parent->tgid;
	if (!maybe_tracked(parent_tgid))
		return 0;
	struct tracked *parent_tracked = bpf_map_lookup_elem(&targets, &parent_tgid);
	if (!parent_tracked)
		return 0;

	// A new thread joins its parent's thread group, which is tracked already.
	if (child->pid != child->tgid)
		return 0;

	__u32 child_tgid = child->tgid;
	// A copy: the child inherits the parent's state (waiting or recording) as of now.
	struct tracked child_tracked = *parent_tracked;
	__u32 target_id = child_tracked.target;
	// The child is not running yet (this tracepoint fires before it is woken), so the order of
	// the two writes is invisible to it; counting first keeps the filter a superset anyway.
	count_slot(child_tgid, 1);
	long err = bpf_map_update_elem(&targets, &child_tgid, &child_tracked, BPF_NOEXIST);
	if (err != 0)
		count_slot(child_tgid, -1); // nothing added
	if (err == -EEXIST) // a stale entry (counted already) of a pid now reused: overwrite it
		err = bpf_map_update_elem(&targets, &child_tgid, &child_tracked, BPF_EXIST);
	if (err != 0) {
		struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target_id);
		if (seen)
			__sync_fetch_and_add(&seen->untracked_processes, 1);
	}
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(select_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!enabled || !selecting)
		return 0;

	__u32 tgid = task->tgid;
	if (maybe_tracked(tgid) && bpf_map_lookup_elem(&targets, &tgid))
		return 0; // tracked already, by ancestry or an earlier exec

	struct selector_key key = {.kind = SELECT_MOUNT_NAMESPACE};
	key.id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	__u32 *target = bpf_map_lookup_elem(&selectors, &key);
	if (!target) {
		key.kind = SELECT_CGROUP;
		key.id = bpf_get_current_cgroup_id();
		target = bpf_map_lookup_elem(&selectors, &key);
	}
	if (!target)
		return 0;

	struct tracked joined = {.target = *target, .flags = 0};
	count_slot(tgid, 1);
	if (bpf_map_update_elem(&targets, &tgid, &joined, BPF_NOEXIST) != 0) {
		count_slot(tgid, -1);
		struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &joined.target);
		if (seen)
			__sync_fetch_and_add(&seen->untracked_processes, 1);
	}
	return 0;
}

// Runs for every exiting thread, with `signal->live` already decremented: it reaches zero
// exactly when the whole thread group is dead. Reading it, rather than the `group_dead` argument
// newer kernels pass, also works on kernels whose tracepoint lacks that argument. Not gated by
// `enabled`, so an entry never outlives its process.
SEC("tp_btf/sched_process_exit")
int BPF_PROG(forget_exit, struct task_struct *task)
{
	if (task->signal->live.counter != 0)
		return 0;

	__u32 tgid = task->tgid;
	if (!maybe_tracked(tgid))
		return 0;
	if (bpf_map_delete_elem(&targets, &tgid) == 0)
		count_slot(tgid, -1);
	return 0;
}
