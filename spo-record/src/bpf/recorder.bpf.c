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

#define SOCKET_WORDS 16 // 64 domains x 16 types

// What AppArmor profiles need besides syscalls: files opened and programs executed, as one
// event per distinct (target, path, access) through a ring buffer (a bounded LRU map drops
// repeats in the kernel), and sockets and capabilities as bits in the target's value.
#define PATH_BUF 1024
#define EVENT_OPEN 1
#define EVENT_EXEC 2
#define EVENT_MAP 3 // a file mapped executable (a library); the path is absolute

#define AT_FDCWD -100
#define BASE_NONE 0	  // `path` is absolute
#define BASE_OK 1	  // base[base_off..PATH_BUF] is the directory a relative `path` starts from
#define BASE_UNKNOWN 2 // too deep, or the fd is not a directory we could follow

// Kept in sync with `PathEvent` in src/events.rs.
struct path_event {
	__u32 target;
	__u32 pid;
	__u32 kind;
	__u32 flags;	// open(2) flags for EVENT_OPEN
	__s32 dirfd;	// AT_FDCWD (-100) or the directory fd of a relative path
	__u32 len;	// bytes of `path` including the NUL
	__u32 base_status;
	__u32 base_off;
	char path[PATH_BUF];
	// Built backwards from the end (PATH_BUF); the slack after it lets the verifier prove every
	// component copy in bounds.
	char base[PATH_BUF + 256];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct seen_key {
	__u32 target;
	__u32 kind_mode;
	__u64 hash;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct seen_key);
	__type(value, __u8);
} seen_paths SEC(".maps");

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
	// Times a waiting process started being recorded: it installed a seccomp filter, or it
	// exec'd in its container (TRACK_WAIT_FOR_EXEC).
	__u64 filter_starts;
	// Capabilities checked with auditing, the checks a profile is asked about (bit = CAP_*
	// number), and those of them the check allowed.
	__u64 caps_checked;
	__u64 caps_allowed;
	// Sockets created: bit (domain << 4 | type & 15), domains below 64.
	__u64 sockets[SOCKET_WORDS];
	// File and exec events that did not fit in the ring buffer.
	__u64 lost_events;
	// Capability checks left out because the kernel made them without auditing them
	// (CAP_OPT_NOAUDIT) or under other credentials than the task's own, and checks counted
	// although their caller could not be told (see `record_capable`).
	__u64 caps_unaudited;
	__u64 caps_unclassified;
};

// A tracked process waits (records nothing) until it installs a seccomp filter; its children
// inherit the wait, or the recording once it started. A container runtime installs the
// container's filter in its init process shortly before exec'ing the entrypoint, so this
// records exactly the syscalls that filter will judge: the runtime's own calls after installing
// it included, and none of the thousands before (see RecordOptions in src/loader.rs).
#define TRACK_WAIT_FOR_FILTER 1
// A tracked process waits until it execs in a container (see `entered_container`): where an
// AppArmor profile starts confining, for container watches that record resources. Children
// inherit the wait, or the recording once it started.
#define TRACK_WAIT_FOR_EXEC 2
#define TRACK_WAITING (TRACK_WAIT_FOR_FILTER | TRACK_WAIT_FOR_EXEC)

// Kept in sync with `Tracked` in src/loader.rs.
struct tracked {
	__u32 target;
	__u32 flags;
};

// Thread group id (the pid user space sees) -> target id and state. The bound caps the number
// of live processes tracked at once over all targets.
// Not preallocated: creating 65,536 entries up front took about 2 ms of every load; entries come
// from the BPF memory allocator as processes are tracked (lookups cost the same).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
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

// Set by user space when files, programs, sockets and capabilities are recorded too.
volatile __u32 collect_resources = 0;

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

// Resource recording's sys_enter program (`record_sys_enter_resources`), reached by a tail call
// from `record_sys_enter` for recording processes while `collect_resources` is set, instead of
// being attached beside it: one program run per syscall of the machine instead of two, and the
// second only for the processes it is for. User space fills slot 0 when it loads that program.
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} resource_programs SEC(".maps");

// What the task running on each CPU is to the recorder, so the sys_enter hot path decides with
// loads only: no helper call (each costs about 20 ns on this project's build VM, whose returns go
// through the SRSO return thunk) and no hash lookup. `follow_switch` fills the slot for the task a
// CPU switches to, and the slow path for the task it finds running.
//
// The slot is a cache that proves itself on every use; it is trusted only when both hold:
// - `regs` is the `pt_regs` the syscall tracepoint passes. That block sits at the top of the
//   calling task's own kernel stack, so it names the running task without a helper call. Seeing
//   every context switch is not enough: on this project's build VM about 1 in 300 switches (from
//   idle, mostly) reaches no sched_switch probe, and a slot trusted on that ground alone described
//   the previous task for a few syscalls, which a recording then lacked (the runc test failed about
//   1 run in 30-100 until this check; docs/decisions.md).
// - `generation` is the current one. Whoever changes what a running task is (user space adding or
//   removing `targets` entries, a process joining by exec) bumps it afterwards, which sends every
//   CPU once down the slow path, where the slot is filled again; so does every thread exit, so a
//   kernel stack freed and given to a new task can never be mistaken for its old owner's. A task
//   waiting for its seccomp filter is never cached (its slot gets a generation already past), so
//   its switch to recording needs no bump.
struct cpu_current {
	// The task (a `struct task_struct *` kept as a number: only read through bpf_core_cast).
	__u64 task;
	// The task's user register block (`task_pt_regs`), as a number: compared, never read.
	__u64 regs;
	// `generation` as read before the slot was computed; an older one when it is not to be used.
	__u32 generation;
	// `target << 1 | 1` while the task's process records, 0 when it is not tracked.
	__u32 target;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_current);
} cpu_current SEC(".maps");

// Bumped (atomically, so no two bumps ever land as one) after every change to `targets` a running
// task could notice. Kept in sync with `bump_generation` in src/loader.rs, which also bumps it
// before a recording is enabled, so it is never 0 (the value of fresh slots) while anything reads
// it.
volatile __u32 generation = 0;

static __always_inline void bump_generation(void)
{
	__sync_fetch_and_add(&generation, 1);
}

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

// FNV-1a over the first `len` bytes of a path, one byte per bpf_loop step: the verifier checks
// the step once instead of every iteration, which keeps the sys_enter program small enough.
struct hash_ctx {
	const char *buf;
	__u32 len;
	__u64 hash;
};

static long hash_step(__u32 i, struct hash_ctx *c)
{
	if (i >= c->len)
		return 1;
	c->hash ^= (unsigned char)c->buf[i & (PATH_BUF - 1)];
	c->hash *= 0x100000001b3ULL;
	return 0;
}

static __always_inline __u64 path_hash(const char *buf, __u32 len)
{
	struct hash_ctx c = {.buf = buf, .len = len, .hash = 0xcbf29ce484222325ULL};
	bpf_loop(PATH_BUF, hash_step, &c, 0);
	return c.hash;
}

// Sends `event` unless this target saw the same path with the same kind and access before.
static __always_inline void submit_path(struct path_event *event, struct target_syscalls *seen)
{
	struct seen_key key = {
		.target = event->target,
		.kind_mode = event->kind << 8 | (event->flags & 3),
		.hash = path_hash(event->path, event->len),
	};
	// A relative path means something else in every directory: never deduplicated.
	if (event->path[0] == '/') {
		__u8 one = 1;
		if (bpf_map_update_elem(&seen_paths, &key, &one, BPF_NOEXIST) != 0) {
			bpf_ringbuf_discard(event, 0);
			return;
		}
	}
	bpf_ringbuf_submit(event, 0);
}

#define MAX_DEPTH 48

// The walk from a dentry up to the task's root, one component per bpf_loop step.
struct walk_ctx {
	struct path_event *event;
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *root_dentry;
	struct vfsmount *root_mnt;
	unsigned long mnt_offset;
	__u32 pos;
	__u32 done;
	__u32 at_root; // the walk ended at the task's root (not at the top of another mount tree)
};

static long walk_step(__u32 i, struct walk_ctx *c)
{
	// Kernel pointers copied out of the (local, non-kernel) context first: CO-RE relocations
	// apply to kernel types only.
	struct dentry *dentry = c->dentry;
	struct vfsmount *vfsmnt = c->vfsmnt;
	struct mount *mnt = c->mnt;
	if (dentry == c->root_dentry && vfsmnt == c->root_mnt) {
		c->done = 1;
		c->at_root = 1;
		return 1;
	}
	if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
		struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
		if (parent == mnt) {
			c->done = 1; // the top of the mount tree
			return 1;
		}
		c->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		c->mnt = parent;
		c->vfsmnt = (struct vfsmount *)((char *)parent + c->mnt_offset);
		return 0;
	}
	struct dentry *up = BPF_CORE_READ(dentry, d_parent);
	if (up == dentry) {
		c->done = 1;
		return 1;
	}
	__u32 len = BPF_CORE_READ(dentry, d_name.len);
	__u32 pos = c->pos;
	if (len == 0 || len > 255 || pos < len + 1 || pos > PATH_BUF)
		return 1; // not done: the base stays unknown
	pos -= len;
	bpf_probe_read_kernel(&c->event->base[pos & (PATH_BUF - 1)], len & 255, BPF_CORE_READ(dentry, d_name.name));
	pos -= 1;
	c->event->base[pos & (PATH_BUF - 1)] = '/';
	c->pos = pos;
	c->dentry = up;
	return 0;
}

// Writes the path of (dentry, vfsmnt) as the current task sees it (relative to its root, across
// mounts) into event->base, ending at PATH_BUF. The kernel's d_path is not callable from
// tracepoints, so the dentry chain is walked here.
// Returns whether the walk ended at the task's root (a path the task can name), not at the top
// of a mount tree the root is not in (an internal mount: memfd, a pipe, a detached mount).
static __always_inline int build_base(struct path_event *event, struct dentry *dentry, struct vfsmount *vfsmnt)
{
	struct task_struct *task = bpf_get_current_task_btf();
	unsigned long mnt_offset = bpf_core_field_offset(struct mount, mnt);
	struct walk_ctx c = {
		.event = event,
		.dentry = dentry,
		.vfsmnt = vfsmnt,
		.mnt = (struct mount *)((char *)vfsmnt - mnt_offset),
		.root_dentry = BPF_CORE_READ(task, fs, root.dentry),
		.root_mnt = BPF_CORE_READ(task, fs, root.mnt),
		.mnt_offset = mnt_offset,
		.pos = PATH_BUF,
	};
	event->base_status = BASE_UNKNOWN;
	bpf_loop(MAX_DEPTH, walk_step, &c, 0);
	if (!c.done)
		return 0;
	__u32 pos = c.pos;
	if (pos == PATH_BUF) {
		pos -= 1;
		event->base[pos & (PATH_BUF - 1)] = '/';
	}
	event->base_off = pos;
	event->base_status = BASE_OK;
	return c.at_root;
}

// The file open as `fd` in the current task, or NULL.
static __always_inline struct file *file_of_fd(__s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (fd < 0 || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

// Fills event->base for a relative path: the working directory, or the directory `dirfd` is.
static __always_inline void resolve_base(struct path_event *event, __s32 dirfd)
{
	event->base_status = BASE_NONE;
	if (event->path[0] == '/')
		return;
	struct task_struct *task = bpf_get_current_task_btf();
	if (dirfd == AT_FDCWD) {
		build_base(event, BPF_CORE_READ(task, fs, pwd.dentry), BPF_CORE_READ(task, fs, pwd.mnt));
		return;
	}
	event->base_status = BASE_UNKNOWN;
	struct file *file = file_of_fd(dirfd);
	if (!file)
		return;
	build_base(event, BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt));
}

// An open-like call waiting for its return, per thread.
struct pending_open {
	__u64 path;
	__u32 flags;
	__s32 dirfd;
	__u32 target;
	__u32 armed;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending_open);
} pending_opens SEC(".maps");

// A ring buffer record for a path event, or NULL after counting it lost.
static __always_inline struct path_event *reserve_path_event(struct target_syscalls *seen)
{
	struct path_event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (!event)
		__sync_fetch_and_add(&seen->lost_events, 1);
	return event;
}

static __always_inline void fill_event(struct path_event *event, __u32 target, __u32 kind, __u32 flags,
				       __s32 dirfd, __u32 len)
{
	event->target = target;
	event->pid = bpf_get_current_pid_tgid() >> 32;
	event->kind = kind;
	event->flags = flags;
	event->dirfd = dirfd;
	event->len = len;
}

// Completes `event`, whose path the caller read into it (`len` as the read returned): sent
// with its base directory resolved, or discarded when the read failed.
static __always_inline void send_path_event(struct path_event *event, long len, __u32 target, __u32 kind,
					    __u32 flags, __s32 dirfd, struct target_syscalls *seen)
{
	if (len <= 0) {
		bpf_ringbuf_discard(event, 0);
		return;
	}
	fill_event(event, target, kind, flags, dirfd, len);
	resolve_base(event, dirfd);
	submit_path(event, seen);
}

// Makes event->path the absolute path of `file` as the current task's root sees it, symlinks
// and `..` resolved (the path AppArmor mediates). Returns its length with the NUL, or 0 when no
// path names the file from the task's root (memfd, a detached mount) or it does not fit.
static __always_inline __u32 take_file_path(struct path_event *event, struct file *file)
{
	if (!build_base(event, BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt)))
		return 0;
	__u32 off = event->base_off;
	// off 0: a path that fills the whole buffer, with no room for the NUL.
	if (off == 0 || off >= PATH_BUF)
		return 0;
	__u32 n = PATH_BUF - off;
	bpf_probe_read_kernel(event->path, n & (PATH_BUF - 1), &event->base[off & (PATH_BUF - 1)]);
	event->path[n & (PATH_BUF - 1)] = 0;
	event->base_status = BASE_NONE;
	return n + 1;
}

// An open-like syscall of a recording process that returned `file`: report the file's own path,
// or, when no path from the task's root names it, the path the program passed.
static __always_inline void record_open(__u32 target, const char *user_path, __u32 flags, __s32 dirfd,
					struct file *file, struct target_syscalls *seen)
{
	struct path_event *event = reserve_path_event(seen);
	if (!event)
		return;
	__u32 walked = file ? take_file_path(event, file) : 0;
	if (walked) {
		fill_event(event, target, EVENT_OPEN, flags, dirfd, walked);
		submit_path(event, seen);
		return;
	}
	long len = bpf_probe_read_user_str(event->path, sizeof(event->path), user_path);
	send_path_event(event, len, target, EVENT_OPEN, flags, dirfd, seen);
}

#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define PROT_EXEC 4
#define MAP_ANONYMOUS 0x20

// Reports `file`, mapped executable by the current task (a library, or code loaded by hand), by
// its path as the task's root sees it. Files no path names (memfd, a detached mount) are
// skipped. `fd` is the descriptor it was mapped from, or -1.
static __always_inline void report_mapped_file(__u32 target, struct file *file, __s32 fd,
					       struct target_syscalls *seen)
{
	struct path_event *event = reserve_path_event(seen);
	if (!event)
		return;
	__u32 len = take_file_path(event, file);
	if (!len) {
		bpf_ringbuf_discard(event, 0);
		return;
	}
	fill_event(event, target, EVENT_MAP, 0, fd, len);
	submit_path(event, seen);
}

// A file mapped executable by mmap(2) from `fd`.
static __always_inline void record_mapping(__u32 target, __s32 fd, struct target_syscalls *seen)
{
	struct file *file = file_of_fd(fd);
	if (file)
		report_mapped_file(target, file, fd, seen);
}

struct vma_file {
	__u64 file;
};

static long vma_file_of(struct task_struct *task, struct vm_area_struct *vma, struct vma_file *found)
{
	found->file = (__u64)vma->vm_file;
	return 0;
}

// The file mapped at `addr` in the current task, or NULL (no mapping there, an anonymous one, or
// the task's memory map busy: bpf_find_vma only tries its lock).
static __always_inline struct file *file_mapped_at(__u64 addr)
{
	struct vma_file found = {};
	if (bpf_find_vma(bpf_get_current_task_btf(), addr, vma_file_of, &found, 0) != 0)
		return 0;
	return bpf_core_cast((void *)found.file, struct file);
}

// Syscall `id` of the ABI `compat` says, as the x86-64 number of the same call: every native
// call is itself; of the ia32 ones only those record_resources reads are named, any other is -1.
// ia32's older socketcall(2) is not a native call; record_resources reads it apart.
static __always_inline long native_call(long id, int compat)
{
	if (!compat)
		return id;
	switch (id) {
	case 5: // open
		return 2;
	case 8: // creat
		return 85;
	case 295: // openat
		return 257;
	case 437: // openat2 (the same number)
		return 437;
	case 359: // socket
		return 41;
	case 192: // mmap2 (the offset counts pages; only prot, flags and fd matter here)
		return 9;
	case 125: // mprotect
		return 10;
	default:
		return -1;
	}
}

// A socket of `domain` and `type` (its low 4 bits; the rest are flags) created by a recording
// process: one bit of the target's socket set, domains below 64.
static __always_inline void record_socket(struct target_syscalls *seen, __u64 domain, __u64 type)
{
	if (domain < 64) {
		__u32 bit = domain << 4 | (type & 15);
		__sync_fetch_and_or(&seen->sockets[(bit >> 6) & (SOCKET_WORDS - 1)], 1ULL << (bit & 63));
	}
}

// The file, mapping and socket side of syscall `id` of a recording process, in either ABI.
static __always_inline void record_resources(struct pt_regs *regs, long id, __u32 target,
					     struct target_syscalls *seen, int compat)
{
#if defined(__TARGET_ARCH_x86)
	// The arguments the calls below use, from the ABI's registers.
	__u64 a0, a1, a2, a3, a4;
	long nr = native_call(id, compat);
	if (compat) {
		a0 = (__u32)regs->bx;
		a1 = (__u32)regs->cx;
		a2 = (__u32)regs->dx;
		a3 = (__u32)regs->si;
		a4 = (__u32)regs->di;
		// ia32 calls have no per-syscall exit events: an open armed at the task's previous
		// syscall is reported now, at its next one. Its path is in memory by now (the kernel
		// read it); whether the open succeeded is not known, and the path is the one the
		// program passed, not the file's resolved one.
		struct pending_open *previous =
			bpf_task_storage_get(&pending_opens, bpf_get_current_task_btf(), 0, 0);
		if (previous && previous->armed) {
			previous->armed = 0;
			record_open(previous->target, (const char *)previous->path, previous->flags,
				    previous->dirfd, 0, seen);
		}
	} else {
		a0 = regs->di;
		a1 = regs->si;
		a2 = regs->dx;
		a3 = regs->r10;
		a4 = regs->r8;
	}
	// ia32 socketcall(SYS_SOCKET, args): domain and type are the first two words of the user
	// array `args` (read here at entry, where the caller's array, on its stack as a rule, is
	// in memory; a read that fails loses the socket kind, never the syscall).
	if (compat && id == 102) {
		__u32 args[2];
		if (a0 == 1 && bpf_probe_read_user(args, sizeof(args), (void *)a1) == 0)
			record_socket(seen, args[0], args[1]);
		return;
	}
	const char *path;
	__u32 flags;
	__s32 dirfd = AT_FDCWD;
	switch (nr) {
	case 2: // open(path, flags)
		path = (const char *)a0;
		flags = a1;
		break;
	case 85: // creat(path, mode)
		path = (const char *)a0;
		flags = O_CREAT | O_WRONLY | O_TRUNC;
		break;
	case 257: // openat(dirfd, path, flags)
		dirfd = a0;
		path = (const char *)a1;
		flags = a2;
		break;
	case 437: { // openat2(dirfd, path, how, size)
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)a2);
		dirfd = a0;
		path = (const char *)a1;
		flags = how.flags;
		break;
	}
	case 41: // socket(domain, type, protocol)
		record_socket(seen, a0, a1);
		return;
	case 9: // mmap(addr, length, prot, flags, fd, offset)
		if ((a2 & PROT_EXEC) && !(a3 & MAP_ANONYMOUS))
			record_mapping(target, (__s32)a4, seen);
		return;
	case 10: { // mprotect(addr, length, prot): a file mapping made executable is a library too
		if (!(a2 & PROT_EXEC))
			return;
		struct file *file = file_mapped_at(a0);
		if (file)
			report_mapped_file(target, file, -1, seen);
		return;
	}
	default:
		return;
	}
	// The path is read when the call returns: only then is it sure to be in memory (a page of
	// the program not touched yet cannot be faulted in from here), and only successful opens
	// are kept.
	struct pending_open *pending =
		bpf_task_storage_get(&pending_opens, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!pending) {
		__sync_fetch_and_add(&seen->lost_events, 1);
		return;
	}
	pending->path = (__u64)path;
	pending->flags = flags;
	pending->dirfd = dirfd;
	pending->target = target;
	pending->armed = 1;
#endif
}

// Records syscall `id` of recording process `target`, made through the compat ABI or not.
static __always_inline void record_syscall(long id, __u32 target, int compat)
{
	struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
	if (!seen)
		return;
	if (id < 0)
		return; // not a syscall: the kernel skipped it (ptrace or seccomp set it to -1)
	if (id >= MAX_SYSCALL_NR) {
		__sync_fetch_and_add(&seen->out_of_range, 1);
		return;
	}
	set_bit(compat ? seen->compat : seen->native, (__u32)id);
}

static __always_inline int in_compat_syscall(struct task_struct *task)
{
#ifdef __TARGET_ARCH_x86
	return (task->thread_info.status & X86_TS_COMPAT) != 0;
#else
	return 0;
#endif
}

// Fills this CPU's slot for `task`, whose user register block is `regs`, looked up in `targets`,
// and returns the slot's target bits. `gen` must have been read before the lookup, so a change
// made after it is never hidden.
static __always_inline __u32 describe_task(struct cpu_current *cur, struct task_struct *task, __u64 regs,
					   __u32 gen)
{
	__u32 tgid = task->tgid;
	__u32 bits = 0;
	if (maybe_tracked(tgid)) {
		struct tracked *tracked = bpf_map_lookup_elem(&targets, &tgid);
		if (tracked) {
			if (tracked->flags & TRACK_WAIT_FOR_FILTER)
				gen -= 1; // a generation already past: decided on every call until it records
			else if (!(tracked->flags & TRACK_WAIT_FOR_EXEC))
				bits = tracked->target << 1 | 1;
			// Waiting for its exec: cached as not recording; the exec that starts it moves
			// the generation on (`start_at_exec`).

		}
	}
	cur->task = (__u64)task;
	cur->regs = regs;
	cur->target = bits;
	cur->generation = gen;
	return bits;
}

static __u32 zero = 0;

// This CPU's slot.
static __always_inline struct cpu_current *this_cpu_slot(void)
{
	return bpf_map_lookup_elem(&cpu_current, &zero);
}

// What this CPU's slot says of the running task, whose syscall passed `regs`, when the slot
// describes that task and its generation is `gen` (the current one): returns 1 with `*bits`
// (`target << 1 | 1` while its process records, 0 when it is not tracked) and, while recording,
// `*compat` read through the slot's task pointer. Returns 0 when the slot describes another task
// or is stale, and the caller must ask `targets`.
static __always_inline int read_slot(struct cpu_current *cur, __u32 gen, struct pt_regs *regs, __u32 *bits,
				     int *compat)
{
	if (cur->generation != gen || cur->regs != (__u64)regs)
		return 0;
	*bits = cur->target;
	*compat = (*bits & 1) ? in_compat_syscall(bpf_core_cast((void *)cur->task, struct task_struct)) : 0;
	return 1;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(follow_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	if (!enabled)
		return 0;
	struct cpu_current *cur = this_cpu_slot();
	if (!cur)
		return 0;
	describe_task(cur, next, (__u64)bpf_task_pt_regs(next), generation);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(record_sys_enter, struct pt_regs *regs, long id)
{
	if (!enabled)
		return 0;

	// The hot path: a per-CPU array lookup (inlined by the verifier) and a few loads.
	struct cpu_current *cur = this_cpu_slot();
	if (!cur)
		return 0;
	__u32 gen = generation;
	__u32 bits;
	int compat;
	if (read_slot(cur, gen, regs, &bits, &compat)) {
		if (bits & 1) {
			record_syscall(id, bits >> 1, compat);
			if (collect_resources)
				bpf_tail_call(ctx, &resource_programs, 0);
		}
		return 0;
	}

	// The slot is stale (or the task waits for its filter): ask `targets`.
	struct task_struct *task = bpf_get_current_task_btf();
	compat = in_compat_syscall(task);
	__u32 tgid = task->tgid;
	if (maybe_tracked(tgid)) {
		struct tracked *tracked = bpf_map_lookup_elem(&targets, &tgid);
		if (tracked && (tracked->flags & TRACK_WAIT_FOR_FILTER)) {
			// The installing call itself is not judged by the filter it installs; from the
			// next one on, every thread of the group is recorded (a superset for runtimes that
			// filter only the calling thread).
			if (installs_filter(regs, id, compat)) {
				// The only flag, and it only ever goes from set to clear: a plain store is
				// safe when two threads race here.
				*(volatile __u32 *)&tracked->flags = 0;
				__u32 target = tracked->target;
				struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
				if (seen)
					__sync_fetch_and_add(&seen->filter_starts, 1);
			}
			cur->generation = gen - 1;
			return 0;
		}
	}
	bits = describe_task(cur, task, (__u64)regs, gen);
	if (bits & 1) {
		record_syscall(id, bits >> 1, compat);
		if (collect_resources)
			bpf_tail_call(ctx, &resource_programs, 0);
	}
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
	if (err == -EEXIST) { // a stale entry (counted already) of a pid now reused: overwrite it
		err = bpf_map_update_elem(&targets, &child_tgid, &child_tracked, BPF_EXIST);
	}
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
		return 0;
	}
	// This task is running, its CPU slot says untracked: make every slot look again. (exec
	// ended the other threads of the group already.)
	bump_generation();
	return 0;
}

// Containers under watched parent cgroups (a pod's cgroup): every child cgroup of a watched
// parent is one container, recorded in a target of its own from the seccomp filter its runtime
// installs. A process entering such a cgroup (the runtime's init writing itself into
// `cgroup.procs`, a `runc exec` session joining) is tracked waiting for its filter, so the
// recording starts exactly where the container's profile will start judging. Cgroups are matched
// by name, not id: user space registers a parent's name before the directory exists (no race
// with the runtime creating it), and on a cgroup v1 machine one container has a directory of the
// same name in every hierarchy, each with its own id. Kept in sync with src/containers.rs.
#define CGROUP_NAME_MAX 96

struct cgroup_name {
	char name[CGROUP_NAME_MAX];
};

// Kept in sync with `parent_value` in src/loader/containers.rs.
struct watched_parent {
	__u32 watch;
	// What a process entering one of its containers waits for: TRACK_WAIT_FOR_FILTER or
	// TRACK_WAIT_FOR_EXEC.
	__u32 wait;
};

// Watched parent cgroup name -> the watch id user space gave it and where its recordings start.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct cgroup_name);
	__type(value, struct watched_parent);
} watched_parents SEC(".maps");

struct container_key {
	__u32 watch;
	char name[CGROUP_NAME_MAX];
};

// (watch id, container cgroup name) -> the container's target.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct container_key);
	__type(value, __u32);
} container_targets SEC(".maps");

// Target ids, their bitmaps cleared, that a new container may take; user space refills it.
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 1024);
	__type(value, __u32);
} free_targets SEC(".maps");

// Set by user space while containers are watched: the attach program returns at once otherwise.
volatile __u32 watching_containers = 0;
// Containers not recorded because no target was free (or `container_targets` was full).
volatile __u64 containers_without_target = 0;

// Kernels before 6.15 call the parent link `parent`.
struct kernfs_node___old {
	struct kernfs_node *parent;
};

static __always_inline struct kernfs_node *kernfs_parent_of(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(select_container, struct cgroup *dst, const char *path, struct task_struct *task, bool threadgroup)
{
	if (!enabled || !watching_containers)
		return 0;
	struct kernfs_node *kn = BPF_CORE_READ(dst, kn);
	if (!kn)
		return 0;
	struct kernfs_node *parent = kernfs_parent_of(kn);
	if (!parent)
		return 0;
	struct cgroup_name parent_name = {};
	if (bpf_probe_read_kernel_str(parent_name.name, sizeof(parent_name.name), BPF_CORE_READ(parent, name)) <= 0)
		return 0;
	struct watched_parent *watched = bpf_map_lookup_elem(&watched_parents, &parent_name);
	if (!watched)
		return 0;
	__u32 wait = watched->wait & TRACK_WAITING;
	if (!wait)
		wait = TRACK_WAIT_FOR_FILTER;

	struct container_key key = {.watch = watched->watch};
	if (bpf_probe_read_kernel_str(key.name, sizeof(key.name), BPF_CORE_READ(kn, name)) <= 0)
		return 0;
	__u32 target;
	__u32 *known = bpf_map_lookup_elem(&container_targets, &key);
	if (known) {
		target = *known;
	} else {
		if (bpf_map_pop_elem(&free_targets, &target) != 0) {
			__sync_fetch_and_add(&containers_without_target, 1);
			return 0;
		}
		if (bpf_map_update_elem(&container_targets, &key, &target, BPF_NOEXIST) != 0) {
			// Added meanwhile (the same container entering another hierarchy on another CPU),
			// or the map is full: give the target back and use what is there, if anything.
			bpf_map_push_elem(&free_targets, &target, 0);
			known = bpf_map_lookup_elem(&container_targets, &key);
			if (!known) {
				__sync_fetch_and_add(&containers_without_target, 1);
				return 0;
			}
			target = *known;
		}
	}

	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (maybe_tracked(tgid) && bpf_map_lookup_elem(&targets, &tgid))
		return 0; // entered another hierarchy's directory of the same container already
	struct tracked waiting = {.target = target, .flags = wait};
	count_slot(tgid, 1);
	if (bpf_map_update_elem(&targets, &tgid, &waiting, BPF_NOEXIST) != 0) {
		count_slot(tgid, -1);
		struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
		if (seen)
			__sync_fetch_and_add(&seen->untracked_processes, 1);
		return 0;
	}
	// The task may be running with a CPU slot that says untracked: make every slot look again.
	bump_generation();
	return 0;
}

// The target a recording (not waiting) process `tgid` belongs to, or NULL.
static __always_inline struct tracked *recording_target(__u32 tgid)
{
	if (!maybe_tracked(tgid))
		return 0;
	struct tracked *tracked = bpf_map_lookup_elem(&targets, &tgid);
	if (!tracked || (tracked->flags & TRACK_WAITING))
		return 0;
	return tracked;
}

// Whether `task`, exec'ing, runs in its container now: its mount namespace is not its parent's.
// A runtime's init enters the container's cgroup in the runtime's mount namespace and may exec
// there (runc 1.1 re-executes itself from a sealed copy of its binary, racing the runtime's
// cgroup write); the workload's exec comes after the init moved into the container's
// namespaces, whose parent (the runtime, its shim, or `runc exec`) stays outside. Pods cannot
// share the host's mount namespace.
static __always_inline int entered_container(struct task_struct *task)
{
	__u32 own = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	__u32 parent = BPF_CORE_READ(task, real_parent, nsproxy, mnt_ns, ns.inum);
	return own != 0 && parent != 0 && own != parent;
}

// Starts the recording of `task` when it waits for its exec and this exec is the container's
// (`entered_container`); returns its `tracked` entry when it records now. Called by every exec
// program that needs it, so their order on the tracepoint does not matter: the first clears the
// flag and counts the start, the others find it recording.
static __always_inline struct tracked *start_if_container_exec(struct task_struct *task)
{
	__u32 tgid = task->tgid;
	if (!maybe_tracked(tgid))
		return 0;
	struct tracked *tracked = bpf_map_lookup_elem(&targets, &tgid);
	if (!tracked)
		return 0;
	if (tracked->flags & TRACK_WAIT_FOR_FILTER)
		return 0;
	if (tracked->flags & TRACK_WAIT_FOR_EXEC) {
		if (!entered_container(task))
			return 0;
		// exec ended the group's other threads: no other CPU runs this process now.
		*(volatile __u32 *)&tracked->flags = 0;
		__u32 target = tracked->target;
		struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
		if (seen)
			__sync_fetch_and_add(&seen->filter_starts, 1);
		// This CPU's slot says the task does not record: make every slot look again.
		bump_generation();
	}
	return tracked;
}

// Attached while containers are watched: starts the recordings that wait for their exec.
SEC("tp_btf/sched_process_exec")
int BPF_PROG(start_at_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	if (enabled && watching_containers)
		start_if_container_exec(task);
	return 0;
}

// Whether the task whose syscall passed `regs` belongs to a recording process, with its target
// and ABI: from this CPU's slot when it describes the task, else from `targets`.
static __always_inline int caller_records(struct pt_regs *regs, __u32 *target, int *compat)
{
	struct cpu_current *cur = this_cpu_slot();
	if (!cur)
		return 0;
	__u32 bits;
	if (read_slot(cur, generation, regs, &bits, compat)) {
		*target = bits >> 1;
		return bits & 1;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	struct tracked *tracked = recording_target(task->tgid);
	if (!tracked)
		return 0;
	*target = tracked->target;
	*compat = in_compat_syscall(task);
	return 1;
}

// The exit of an open-like call of a recording process: reports the pending open armed at its
// entry when it succeeded.
static __always_inline void finish_open(long ret)
{
	struct pending_open *pending = bpf_task_storage_get(&pending_opens, bpf_get_current_task_btf(), 0, 0);
	if (!pending || !pending->armed)
		return;
	pending->armed = 0;
	if (ret < 0)
		return;
	__u32 target = pending->target;
	struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
	if (seen)
		record_open(target, (const char *)pending->path, pending->flags, pending->dirfd,
			    file_of_fd((__s32)ret), seen);
}

// Attached only while resources are recorded, once per open-like syscall (open, creat, openat,
// openat2: `OPEN_EXITS` in src/loader.rs), to the kernel's per-syscall exit events: the kernel
// tests the syscall number against its bitmap of enabled events before running anything, so
// the exits of every other syscall of the machine cost no program run (an attached raw
// sys_exit program ran on all of them). These events do not fire for ia32 calls; those opens
// are reported at the task's next syscall (`record_resources`). One program for the four
// events: it is verified once.
SEC("tracepoint")
int exit_open_like(struct syscall_trace_exit *ctx)
{
	if (enabled)
		finish_open(ctx->ret);
	return 0;
}

// The file, mapping and socket side of every syscall of a recording process. A program of its
// own, loaded (`LoadOptions::resources`) only for recordings that want resources and reached by
// a tail call from `record_sys_enter` (never attached), so the syscall program stays small:
// quick to verify, and seccomp-only recordings never run this code.
SEC("tp_btf/sys_enter")
int BPF_PROG(record_sys_enter_resources, struct pt_regs *regs, long id)
{
	if (!enabled || !collect_resources || id < 0)
		return 0;
	__u32 target;
	int compat;
	if (!caller_records(regs, &target, &compat))
		return 0;
	struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
	if (seen)
		record_resources(regs, id, target, seen, compat);
	return 0;
}

// The ELF interpreter (ld.so) of a dynamic program, which the kernel maps itself (no mmap(2) shows
// it) and AppArmor checks for `m`: found as the file mapped where the new program starts (the
// exec left the instruction pointer at the interpreter's entry). For a static program that is
// the program itself, and nothing is reported.
static __always_inline void record_elf_interpreter(__u32 target, struct file *binary, struct target_syscalls *seen)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
#if defined(__TARGET_ARCH_x86)
	__u64 ip = regs->ip;
#elif defined(__TARGET_ARCH_arm64)
	__u64 ip = regs->pc;
#else
	__u64 ip = 0;
#endif
	struct file *interpreter = file_mapped_at(ip);
	if (interpreter && interpreter != binary)
		report_mapped_file(target, interpreter, -1, seen);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(record_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!enabled || !collect_resources)
		return 0;
	struct tracked *tracked = watching_containers ? start_if_container_exec(task) : recording_target(task->tgid);
	if (!tracked)
		return 0;
	__u32 target = tracked->target;
	struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &target);
	if (!seen)
		return 0;
	// The binary that now runs (for a script, its interpreter) as the path of the file the
	// kernel opened, symlinks resolved; the name it was asked for when no path names the file.
	// The exec'ing task is the current one, so events carry its pid.
	const char *filename = BPF_CORE_READ(bprm, filename);
	const char *interp = BPF_CORE_READ(bprm, interp);
	struct path_event *event = reserve_path_event(seen);
	if (!event)
		return 0;
	struct file *binary = BPF_CORE_READ(bprm, file);
	__u32 walked = take_file_path(event, binary);
	if (walked) {
		fill_event(event, target, EVENT_EXEC, 0, AT_FDCWD, walked);
		submit_path(event, seen);
	} else {
		long len = bpf_probe_read_kernel_str(event->path, sizeof(event->path), interp);
		send_path_event(event, len, target, EVENT_EXEC, 0, AT_FDCWD, seen);
	}
	record_elf_interpreter(target, binary, seen);
	if (interp == filename)
		return 0;
	// A script: the script itself, by the name it was run as.
	event = reserve_path_event(seen);
	if (!event)
		return 0;
	long len = bpf_probe_read_kernel_str(event->path, sizeof(event->path), filename);
	send_path_event(event, len, target, EVENT_EXEC, 0, AT_FDCWD, seen);
	return 0;
}

// Which capability checks a profile needs. AppArmor asks its profile only about checks the
// kernel audits: a caller that merely wants to know (the memory overcommit heuristic asks for
// CAP_SYS_ADMIN on every writable private mapping, brk and stack growth; /proc and ptrace access
// modes, seccomp's no_new_privs test, kallsyms) passes CAP_OPT_NOAUDIT and goes on either way.
// The cap_capable tracepoint does not pass `opts` (Linux 6.14 to at least 6.18), and no kprobe
// or fentry program can read it here, so the caller is told apart by where the check was made:
// the kernel stack of the tracepoint holds the tracing code, then the check itself (cap_capable,
// the LSM dispatcher security_capable, ns_capable_common when not inlined), then the function
// that asked. User space fills the table from /proc/kallsyms (src/kernel_text.rs): the
// check's functions, and the few functions that pass CAP_OPT_NOAUDIT (every other no-audit
// check goes through one of them: ns_capable_noaudit, has_[ns_]capability_noaudit, ...).
// Each range is [start, end] of a function's text; a return address lies after a call, so
// past `start`, and at most at `end` (a call that is the function's last instruction).
// Functions of the check come first in the table, so one of them is never taken for an asker.
#define CAP_RANGES 16 // a power of two, for the verifier's bounds
#define RANGE_CHECK 1	  // a function of the check itself
#define RANGE_UNAUDITED 2 // a function that asks with CAP_OPT_NOAUDIT
// The tracing code takes 2 frames here (3 when other programs share the tracepoint), the check
// 2 (3 with ns_capable_common out of line), then comes the asking function. A power of two.
#define CAP_STACK_FRAMES 8

// Filled by `set_capability_callers` in src/loader.rs (`CapabilityCallers::table`).
struct text_range {
	__u64 start;
	__u64 end;
	__u64 kind; // RANGE_*; 0 ends the table
};

// Set by user space before a recording with resources starts; while `cap_ranges_known` is 0
// (kernel symbols unreadable) every check counts, as `caps_unclassified`.
volatile struct text_range cap_ranges[CAP_RANGES];
volatile __u32 cap_ranges_known = 0;

#define CHECK_AUDITED 0
#define CHECK_UNAUDITED 1
#define CHECK_UNKNOWN 2

// The walk over a check's kernel stack, one frame per bpf_loop step: the verifier checks the
// step once: nested loops over the frames and the table took it 13,000 instructions and 14 ms,
// these two bpf_loop callbacks 1,500 instructions and 3 ms.
struct classify_ctx {
	__u64 frames[CAP_STACK_FRAMES];
	__u32 n;
	__u32 in_check;
	__u32 kind;
};

// Looking `ip` up in the table, one range per bpf_loop step (verified once, as the frames).
struct range_lookup {
	__u64 ip;
	__u64 kind;
};

static long match_range(__u32 r, struct range_lookup *l)
{
	volatile struct text_range *range = &cap_ranges[r & (CAP_RANGES - 1)];
	if (r >= CAP_RANGES || range->kind == 0)
		return 1;
	if (l->ip > range->start && l->ip <= range->end) {
		l->kind = range->kind;
		return 1;
	}
	return 0;
}

// The RANGE_* kind of the function the return address `ip` lies in, 0 for any other.
static __always_inline __u64 range_kind(__u64 ip)
{
	struct range_lookup l = {.ip = ip};
	bpf_loop(CAP_RANGES, match_range, &l, 0);
	return l.kind;
}

static long classify_frame(__u32 i, struct classify_ctx *c)
{
	if (i >= c->n)
		return 1;
	__u64 kind = range_kind(c->frames[i & (CAP_STACK_FRAMES - 1)]);
	if (kind == RANGE_CHECK) {
		c->in_check = 1;
		return 0;
	}
	if (!c->in_check)
		return 0; // the tracing code that runs this program
	c->kind = kind == RANGE_UNAUDITED ? CHECK_UNAUDITED : CHECK_AUDITED;
	return 1;
}

// Whether the capability check this tracepoint reports was asked for without auditing: the first
// frame past the check's own functions is the function that asked.
static __always_inline __u32 classify_check(void *ctx)
{
	struct classify_ctx c = {.kind = CHECK_UNKNOWN};
	long len = bpf_get_stack(ctx, c.frames, sizeof(c.frames), 0);
	if (len <= 0)
		return CHECK_UNKNOWN;
	c.n = len / sizeof(__u64);
	bpf_loop(CAP_STACK_FRAMES, classify_frame, &c, 0);
	return c.kind;
}

SEC("tp_btf/cap_capable")
int BPF_PROG(record_capable, const struct cred *cred, struct user_namespace *target_ns,
	     const struct user_namespace *capable_ns, int cap, int ret)
{
	if (!enabled || !collect_resources || cap < 0 || cap >= 64)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct tracked *tracked = recording_target(task->tgid);
	if (!tracked)
		return 0;
	struct target_syscalls *seen = bpf_map_lookup_elem(&syscalls, &tracked->target);
	if (!seen)
		return 0;
	// Checked under other credentials than the task's own: the kernel acting for someone else
	// (an overlayfs copy-up in a container runs as whoever mounted the overlay, the
	// container runtime), or a check of another task's capabilities. AppArmor asks the
	// profile of whoever those credentials belong to, not this task's.
	if (cred != task->real_cred) {
		__sync_fetch_and_add(&seen->caps_unaudited, 1);
		return 0;
	}
	__u64 bit = 1ULL << cap;
	// A check that would add nothing is not looked at: the stack walk (about a microsecond) is
	// paid only until a capability is recorded, and by checks of capabilities never recorded
	// (the no-audit ones, mostly).
	if ((seen->caps_checked & bit) && (ret != 0 || (seen->caps_allowed & bit)))
		return 0;
	__u32 kind = cap_ranges_known ? classify_check(ctx) : CHECK_UNKNOWN;
	if (kind == CHECK_UNAUDITED) {
		__sync_fetch_and_add(&seen->caps_unaudited, 1);
		return 0;
	}
	// Unknown callers count: a profile then holds more than needed rather than less.
	if (kind == CHECK_UNKNOWN)
		__sync_fetch_and_add(&seen->caps_unclassified, 1);
	if (!(seen->caps_checked & bit))
		__sync_fetch_and_or(&seen->caps_checked, bit);
	if (ret == 0 && !(seen->caps_allowed & bit))
		__sync_fetch_and_or(&seen->caps_allowed, bit);
	return 0;
}

// Runs for every exiting thread, with `signal->live` already decremented: it reaches zero
// exactly when the whole thread group is dead. Reading it, rather than the `group_dead` argument
// newer kernels pass, also works on kernels whose tracepoint lacks that argument. Not gated by
// `enabled`, so an entry never outlives its process.
SEC("tp_btf/sched_process_exit")
int BPF_PROG(forget_exit, struct task_struct *task)
{
	// The thread's kernel stack, which CPU slots name it by, is freed soon and may go to a new
	// task: no slot filled before this may be trusted again (see `struct cpu_current`).
	if (enabled)
		bump_generation();
	if (task->signal->live.counter != 0)
		return 0;

	__u32 tgid = task->tgid;
	if (!maybe_tracked(tgid))
		return 0;
	if (bpf_map_delete_elem(&targets, &tgid) == 0)
		count_slot(tgid, -1);
	return 0;
}
