//! A userspace interpreter for seccomp cBPF programs: runs a program (ours or libseccomp's)
//! on a `seccomp_data` and returns the action, checking every access, so the two can be
//! compared input by input and a malformed program is an error, never an out-of-bounds read.

use super::bpf::*;

/// The input of a filter: `struct seccomp_data`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompData {
    /// Syscall number.
    pub nr: u32,
    /// `AUDIT_ARCH_*` of the calling task.
    pub arch: u32,
    /// Instruction pointer.
    pub instruction_pointer: u64,
    /// The six arguments.
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 32-bit word at byte offset `k`, as the kernel reads it (native byte order of the
    /// 64-bit fields; `little_endian` picks which half comes first).
    fn word(&self, k: u32, little_endian: bool) -> Option<u32> {
        if !k.is_multiple_of(4) || k >= SECCOMP_DATA_LEN {
            return None;
        }
        let field64 = |v: u64, second_half: bool| -> u32 {
            let (lo, hi) = (v as u32, (v >> 32) as u32);
            match (little_endian, second_half) {
                (true, false) | (false, true) => lo,
                _ => hi,
            }
        };
        Some(match k {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => field64(self.instruction_pointer, k == 12),
            _ => {
                let i = ((k - OFF_ARGS) / 8) as usize;
                field64(self.args[i], (k - OFF_ARGS) % 8 == 4)
            }
        })
    }
}

/// Why a program could not be run to a return.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// A load outside `seccomp_data` or unaligned.
    #[error("instruction {pc}: load at offset {k} is outside seccomp_data")]
    BadLoad {
        /// Program counter.
        pc: usize,
        /// Offset.
        k: u32,
    },
    /// A jump or fall-through past the end of the program.
    #[error("instruction {pc}: control leaves the program")]
    OutOfProgram {
        /// Program counter.
        pc: usize,
    },
    /// Scratch memory index out of range.
    #[error("instruction {pc}: scratch memory index {k} out of range")]
    BadMem {
        /// Program counter.
        pc: usize,
        /// Index.
        k: u32,
    },
    /// An opcode seccomp does not accept.
    #[error("instruction {pc}: opcode {code:#06x} is not allowed in seccomp filters")]
    BadOpcode {
        /// Program counter.
        pc: usize,
        /// Opcode.
        code: u16,
    },
}

/// What a run returned and what it looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// The filter's return value (`SECCOMP_RET_*` | data).
    pub ret: u32,
    /// Instructions executed.
    pub steps: usize,
    /// Whether any syscall argument word or the instruction pointer was loaded; the kernel's
    /// action cache can only skip filters that never do this for a syscall.
    pub read_args: bool,
}

/// Runs `prog` on `data`. Little-endian argument layout (x86, arm, aarch64, riscv...).
pub fn run(prog: &[Insn], data: &SeccompData) -> Result<RunResult, InterpError> {
    run_with_endianness(prog, data, true)
}

/// Runs `prog` on `data` with the given argument word order.
pub fn run_with_endianness(prog: &[Insn], data: &SeccompData, little_endian: bool) -> Result<RunResult, InterpError> {
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let mut steps = 0usize;
    let mut read_args = false;
    loop {
        let ins = prog.get(pc).ok_or(InterpError::OutOfProgram { pc })?;
        steps += 1;
        let k = ins.k;
        let mut next = pc + 1;
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => {
                a = data.word(k, little_endian).ok_or(InterpError::BadLoad { pc, k })?;
                if k >= OFF_IP {
                    read_args = true;
                }
            }
            c if c == BPF_LD | BPF_W | BPF_LEN => a = SECCOMP_DATA_LEN,
            c if c == BPF_LDX | BPF_W | BPF_LEN => x = SECCOMP_DATA_LEN,
            c if c == BPF_LD | BPF_IMM => a = k,
            c if c == BPF_LDX | BPF_IMM => x = k,
            c if c == BPF_LD | BPF_MEM => a = *mem.get(k as usize).ok_or(InterpError::BadMem { pc, k })?,
            c if c == BPF_LDX | BPF_MEM => x = *mem.get(k as usize).ok_or(InterpError::BadMem { pc, k })?,
            c if c == BPF_ST => *mem.get_mut(k as usize).ok_or(InterpError::BadMem { pc, k })? = a,
            c if c == BPF_STX => *mem.get_mut(k as usize).ok_or(InterpError::BadMem { pc, k })? = x,
            c if c & 0x07 == BPF_ALU => {
                let operand = if c & BPF_X != 0 { x } else { k };
                a = match c & 0xf0 {
                    BPF_ADD => a.wrapping_add(operand),
                    BPF_SUB => a.wrapping_sub(operand),
                    BPF_MUL => a.wrapping_mul(operand),
                    BPF_DIV => a.checked_div(operand).unwrap_or(0),
                    BPF_MOD => a.checked_rem(operand).unwrap_or(0),
                    BPF_OR => a | operand,
                    BPF_AND => a & operand,
                    BPF_XOR => a ^ operand,
                    BPF_LSH => a.checked_shl(operand).unwrap_or(0),
                    BPF_RSH => a.checked_shr(operand).unwrap_or(0),
                    BPF_NEG => a.wrapping_neg(),
                    _ => return Err(InterpError::BadOpcode { pc, code: c }),
                };
            }
            c if c & 0x07 == BPF_JMP => {
                if c & 0xf0 == BPF_JA {
                    next = pc + 1 + k as usize;
                } else {
                    let operand = if c & BPF_X != 0 { x } else { k };
                    let cond = match c & 0xf0 {
                        BPF_JEQ => a == operand,
                        BPF_JGT => a > operand,
                        BPF_JGE => a >= operand,
                        BPF_JSET => a & operand != 0,
                        _ => return Err(InterpError::BadOpcode { pc, code: c }),
                    };
                    next = pc + 1 + usize::from(if cond { ins.jt } else { ins.jf });
                }
            }
            c if c == BPF_RET | BPF_K => {
                return Ok(RunResult {
                    ret: k,
                    steps,
                    read_args,
                });
            }
            c if c == BPF_RET | BPF_A => {
                return Ok(RunResult {
                    ret: a,
                    steps,
                    read_args,
                });
            }
            c if c == BPF_MISC | BPF_TAX => x = a,
            c if c == BPF_MISC | BPF_TXA => a = x,
            c => return Err(InterpError::BadOpcode { pc, code: c }),
        }
        if next >= prog.len() {
            return Err(InterpError::OutOfProgram { pc });
        }
        pc = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_returns() {
        let prog = [
            Insn::stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
            Insn::jump(BPF_JMP | BPF_JEQ | BPF_K, 39, 0, 1),
            Insn::stmt(BPF_RET | BPF_K, RET_ALLOW),
            Insn::stmt(BPF_RET | BPF_K, RET_ERRNO | 1),
        ];
        let mut d = SeccompData {
            nr: 39,
            ..Default::default()
        };
        assert_eq!(run(&prog, &d).map(|r| r.ret), Ok(RET_ALLOW));
        d.nr = 40;
        let r = run(&prog, &d).expect("run");
        assert_eq!(r.ret, RET_ERRNO | 1);
        assert_eq!(r.steps, 3);
        assert!(!r.read_args);
    }

    #[test]
    fn argument_words_follow_endianness() {
        let d = SeccompData {
            args: [0, 0x1111_2222_3333_4444, 0, 0, 0, 0],
            ..Default::default()
        };
        assert_eq!(d.word(24, true), Some(0x3333_4444));
        assert_eq!(d.word(28, true), Some(0x1111_2222));
        assert_eq!(d.word(24, false), Some(0x1111_2222));
    }

    #[test]
    fn malformed_programs_are_errors_not_panics() {
        let bad_load = [Insn::stmt(BPF_LD | BPF_W | BPF_ABS, 64), Insn::stmt(BPF_RET | BPF_K, 0)];
        assert!(matches!(
            run(&bad_load, &SeccompData::default()),
            Err(InterpError::BadLoad { .. })
        ));
        let unaligned = [Insn::stmt(BPF_LD | BPF_W | BPF_ABS, 2), Insn::stmt(BPF_RET | BPF_K, 0)];
        assert!(run(&unaligned, &SeccompData::default()).is_err());
        let falls_off = [Insn::stmt(BPF_LD | BPF_IMM, 1)];
        assert!(matches!(
            run(&falls_off, &SeccompData::default()),
            Err(InterpError::OutOfProgram { .. })
        ));
        let far_jump = [Insn::stmt(BPF_JMP | BPF_JA, 100), Insn::stmt(BPF_RET | BPF_K, 0)];
        assert!(run(&far_jump, &SeccompData::default()).is_err());
        assert!(run(&[], &SeccompData::default()).is_err());
        let bad_mem = [Insn::stmt(BPF_ST, 16), Insn::stmt(BPF_RET | BPF_K, 0)];
        assert!(run(&bad_mem, &SeccompData::default()).is_err());
    }
}
