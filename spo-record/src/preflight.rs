//! What the kernel and the process must offer before the recorder can load, checked up front
//! (cheap: a stat and one read of `/proc/self/status`) so the user gets the missing piece by name
//! instead of an `EPERM` from deep inside libbpf.

use std::fs;
use std::path::Path;

use crate::RecordError;

/// Where the kernel exposes its own BTF, which CO-RE relocation and `tp_btf` programs need.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The tracepoints the programs attach to: `(subsystem/event, name in BTF)`.
pub(crate) const TRACEPOINTS: [(&str, &str); 4] = [
    ("raw_syscalls/sys_enter", "sys_enter"),
    ("sched/sched_switch", "sched_switch"),
    ("sched/sched_process_fork", "sched_process_fork"),
    ("sched/sched_process_exit", "sched_process_exit"),
];

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks the capabilities and the kernel BTF.
pub(crate) fn check() -> Result<(), RecordError> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(caps) = effective_capabilities(&status)
        && !may_load_tracing_programs(caps)
    {
        return Err(RecordError::NotPermitted);
    }
    if !Path::new(KERNEL_BTF).exists() {
        return Err(RecordError::NoKernelBtf { path: KERNEL_BTF });
    }
    Ok(())
}

/// After a failed load: names the first tracepoint the kernel lacks, if that is the cause.
/// Every tracepoint has a `btf_trace_<name>` typedef in the kernel BTF, which is also what
/// libbpf resolves a `tp_btf` program against.
pub(crate) fn missing_tracepoint() -> Option<&'static str> {
    let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
    TRACEPOINTS.iter().find_map(|(tracepoint, name)| {
        let typedef = format!("btf_trace_{name}");
        btf.type_by_name::<libbpf_rs::btf::types::Typedef<'_>>(&typedef)
            .is_none()
            .then_some(*tracepoint)
    })
}

/// The `CapEff` mask from `/proc/<pid>/status` text.
fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Tracing programs and their maps need `CAP_BPF` with `CAP_PERFMON`, or `CAP_SYS_ADMIN`.
fn may_load_tracing_programs(caps: u64) -> bool {
    let has = |cap: u32| caps & (1 << cap) != 0;
    (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_mask() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name:\tcat\n"), None);
    }

    #[test]
    fn needs_bpf_and_perfmon_or_sys_admin() {
        assert!(may_load_tracing_programs(0x1ff_ffff_ffff));
        assert!(may_load_tracing_programs(1 << CAP_SYS_ADMIN));
        assert!(may_load_tracing_programs((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        assert!(!may_load_tracing_programs(1 << CAP_BPF));
        assert!(!may_load_tracing_programs(0));
    }
}
