//! Two properties of the cBPF side.
//!
//! 1. A SeccompProfileSpec (the input as JSON) that compiles gives a program of at most
//!    4096 instructions (the kernel's BPF_MAXINSNS) that the interpreter runs to a return for
//!    every input: each named syscall and a few numbers and arguments taken from the bytes, on
//!    x86-64 and on every listed architecture. Our programs must never make the interpreter fail.
//! 2. The raw bytes read as a `sock_filter` array: the interpreter returns Ok or Err, it never
//!    panics or reads out of bounds.
#![no_main]

use spo_model::seccomp::{Arch, SeccompProfileSpec};
use spo_seccomp::compile::{self, bpf, interp::SeccompData};
use spo_seccomp::syscalls;

/// `AUDIT_ARCH_X86_64`.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// Names looked up per architecture; more adds little and slows each run down.
const MAX_NAMES: usize = 64;

/// Words taken from the input: syscall numbers and argument values reach every comparison.
fn words(data: &[u8]) -> impl Iterator<Item = u64> + '_ {
    data.chunks(8).take(8).map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    })
}

fn check_compiled(spec: &SeccompProfileSpec, data: &[u8]) {
    let Ok(program) = compile::compile(spec, &compile::CompileOptions::default()) else {
        return;
    };
    assert!(
        program.insns.len() <= 4096,
        "program of {} instructions",
        program.insns.len()
    );

    let mut arches: Vec<Arch> = vec![Arch::X86_64];
    arches.extend(spec.architectures.iter().flatten().map(|a| syscalls::resolve(*a)));
    let from_bytes: Vec<u64> = words(data).collect();
    for arch in arches {
        let audit = syscalls::audit_arch(arch).unwrap_or(AUDIT_ARCH_X86_64);
        let little_endian = !compile::is_big_endian(arch);
        let mut numbers: Vec<u32> = from_bytes.iter().map(|w| (*w as u32) % 1024).collect();
        numbers.extend(from_bytes.iter().map(|w| (*w as u32) | compile::X32_SYSCALL_BIT));
        if let Some(table) = syscalls::table(arch) {
            let names = spec.rules().iter().flat_map(|r| &r.names).take(MAX_NAMES);
            numbers.extend(names.filter_map(|n| table.number(n)));
        }
        for (i, nr) in numbers.into_iter().enumerate() {
            let mut args = [0u64; 6];
            for (j, a) in args.iter_mut().enumerate() {
                *a = from_bytes.get((i + j) % from_bytes.len().max(1)).copied().unwrap_or(0);
            }
            for arch_value in [audit, AUDIT_ARCH_X86_64] {
                let input = SeccompData {
                    nr,
                    arch: arch_value,
                    instruction_pointer: 0,
                    args,
                };
                let run = compile::interp::run_with_endianness(&program.insns, &input, little_endian);
                assert!(run.is_ok(), "compiled program failed on {input:?}: {run:?}");
            }
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<SeccompProfileSpec>(data) {
        check_compiled(&spec, data);
    }
    if let Some(insns) = bpf::from_bytes(&data[..data.len() / 8 * 8]) {
        let input = SeccompData {
            nr: 0,
            arch: AUDIT_ARCH_X86_64,
            instruction_pointer: 0,
            args: [0; 6],
        };
        let _ = compile::interp::run(&insns, &input);
        let _ = bpf::disassemble(&insns, &[]);
    }
});
