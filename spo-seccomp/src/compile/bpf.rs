//! Classic BPF as seccomp uses it: instructions, the `seccomp_data` layout, return values,
//! and a disassembler.

use std::fmt::Write as _;

/// One classic BPF instruction, laid out like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

// Opcode pieces (linux/filter.h, linux/bpf_common.h).
/// Instruction class: load into A.
pub const BPF_LD: u16 = 0x00;
/// Instruction class: load into X.
pub const BPF_LDX: u16 = 0x01;
/// Instruction class: store A.
pub const BPF_ST: u16 = 0x02;
/// Instruction class: store X.
pub const BPF_STX: u16 = 0x03;
/// Instruction class: arithmetic.
pub const BPF_ALU: u16 = 0x04;
/// Instruction class: jumps.
pub const BPF_JMP: u16 = 0x05;
/// Instruction class: return.
pub const BPF_RET: u16 = 0x06;
/// Instruction class: register moves.
pub const BPF_MISC: u16 = 0x07;
/// Size: 32-bit word.
pub const BPF_W: u16 = 0x00;
/// Mode: immediate.
pub const BPF_IMM: u16 = 0x00;
/// Mode: absolute offset into the packet (here: `seccomp_data`).
pub const BPF_ABS: u16 = 0x20;
/// Mode: scratch memory.
pub const BPF_MEM: u16 = 0x60;
/// Mode: packet length.
pub const BPF_LEN: u16 = 0x80;
/// ALU/JMP operand source: the constant `k`.
pub const BPF_K: u16 = 0x00;
/// ALU/JMP operand source: register X.
pub const BPF_X: u16 = 0x08;
/// RET source: register A.
pub const BPF_A: u16 = 0x10;
/// ALU op.
pub const BPF_ADD: u16 = 0x00;
/// ALU op.
pub const BPF_SUB: u16 = 0x10;
/// ALU op.
pub const BPF_MUL: u16 = 0x20;
/// ALU op.
pub const BPF_DIV: u16 = 0x30;
/// ALU op.
pub const BPF_OR: u16 = 0x40;
/// ALU op.
pub const BPF_AND: u16 = 0x50;
/// ALU op.
pub const BPF_LSH: u16 = 0x60;
/// ALU op.
pub const BPF_RSH: u16 = 0x70;
/// ALU op.
pub const BPF_NEG: u16 = 0x80;
/// ALU op.
pub const BPF_MOD: u16 = 0x90;
/// ALU op.
pub const BPF_XOR: u16 = 0xa0;
/// JMP op: always.
pub const BPF_JA: u16 = 0x00;
/// JMP op: equal.
pub const BPF_JEQ: u16 = 0x10;
/// JMP op: greater (unsigned).
pub const BPF_JGT: u16 = 0x20;
/// JMP op: greater or equal (unsigned).
pub const BPF_JGE: u16 = 0x30;
/// JMP op: bits set.
pub const BPF_JSET: u16 = 0x40;
/// MISC op: X = A.
pub const BPF_TAX: u16 = 0x00;
/// MISC op: A = X.
pub const BPF_TXA: u16 = 0x80;

/// The kernel's limit on filter length (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// Size of `struct seccomp_data`.
pub const SECCOMP_DATA_LEN: u32 = 64;
/// Offset of `seccomp_data.nr`.
pub const OFF_NR: u32 = 0;
/// Offset of `seccomp_data.arch`.
pub const OFF_ARCH: u32 = 4;
/// Offset of `seccomp_data.instruction_pointer`.
pub const OFF_IP: u32 = 8;
/// Offset of `seccomp_data.args[0]`.
pub const OFF_ARGS: u32 = 16;

/// `SECCOMP_RET_KILL_PROCESS`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_KILL_THREAD`.
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
/// `SECCOMP_RET_TRAP`.
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ERRNO`.
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_USER_NOTIF`.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_TRACE`.
pub const RET_TRACE: u32 = 0x7ff0_0000;
/// `SECCOMP_RET_LOG`.
pub const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_ACTION_FULL`.
pub const RET_ACTION_FULL: u32 = 0xffff_0000;
/// `SECCOMP_RET_DATA`.
pub const RET_DATA: u32 = 0x0000_ffff;

impl Insn {
    /// A statement (no jump targets).
    pub const fn stmt(code: u16, k: u32) -> Insn {
        Insn { code, jt: 0, jf: 0, k }
    }

    /// A jump.
    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// The instruction class.
    pub fn class(&self) -> u16 {
        self.code & 0x07
    }
}

/// A readable name for a return value.
pub fn describe_ret(k: u32) -> String {
    let data = k & RET_DATA;
    match k & RET_ACTION_FULL {
        RET_KILL_PROCESS => "KILL_PROCESS".into(),
        RET_KILL_THREAD => "KILL_THREAD".into(),
        RET_TRAP => format!("TRAP({data})"),
        RET_ERRNO => format!("ERRNO({data})"),
        RET_USER_NOTIF => "NOTIFY".into(),
        RET_TRACE => format!("TRACE({data})"),
        RET_LOG => "LOG".into(),
        RET_ALLOW => "ALLOW".into(),
        other => format!("{other:#010x}"),
    }
}

fn describe_load(k: u32) -> String {
    match k {
        OFF_NR => "nr".into(),
        OFF_ARCH => "arch".into(),
        OFF_IP => "ip.lo".into(),
        12 => "ip.hi".into(),
        k if (OFF_ARGS..SECCOMP_DATA_LEN).contains(&k) => {
            let i = (k - OFF_ARGS) / 8;
            let half = if (k - OFF_ARGS).is_multiple_of(8) { "lo" } else { "hi" };
            format!("args[{i}].{half}")
        }
        k => format!("[{k}]"),
    }
}

/// Disassembles a program, one instruction a line, with absolute jump targets and an
/// optional comment per instruction.
pub fn disassemble(insns: &[Insn], comments: &[Option<String>]) -> String {
    let mut out = String::new();
    let width = insns.len().max(1).to_string().len().max(4);
    for (i, ins) in insns.iter().enumerate() {
        let target = |off: u32| i as u64 + 1 + u64::from(off);
        let text = match ins.class() {
            BPF_LD if ins.code == BPF_LD | BPF_W | BPF_ABS => format!("ld   {}", describe_load(ins.k)),
            BPF_LD if ins.code == BPF_LD | BPF_IMM => format!("ld   #{:#x}", ins.k),
            BPF_LD if ins.code == BPF_LD | BPF_W | BPF_LEN => "ld   #len".into(),
            BPF_LD if ins.code == BPF_LD | BPF_MEM => format!("ld   M[{}]", ins.k),
            BPF_LDX if ins.code == BPF_LDX | BPF_IMM => format!("ldx  #{:#x}", ins.k),
            BPF_LDX if ins.code == BPF_LDX | BPF_MEM => format!("ldx  M[{}]", ins.k),
            BPF_LDX if ins.code == BPF_LDX | BPF_W | BPF_LEN => "ldx  #len".into(),
            BPF_ST => format!("st   M[{}]", ins.k),
            BPF_STX => format!("stx  M[{}]", ins.k),
            BPF_ALU => {
                let op = match ins.code & 0xf0 {
                    BPF_ADD => "add",
                    BPF_SUB => "sub",
                    BPF_MUL => "mul",
                    BPF_DIV => "div",
                    BPF_OR => "or",
                    BPF_AND => "and",
                    BPF_LSH => "lsh",
                    BPF_RSH => "rsh",
                    BPF_NEG => "neg",
                    BPF_MOD => "mod",
                    BPF_XOR => "xor",
                    _ => "alu?",
                };
                if ins.code & BPF_X != 0 {
                    format!("{op:<4} x")
                } else {
                    format!("{op:<4} #{:#x}", ins.k)
                }
            }
            BPF_JMP if ins.code & 0xf0 == BPF_JA => format!("ja   {:0width$}", target(ins.k)),
            BPF_JMP => {
                let op = match ins.code & 0xf0 {
                    BPF_JEQ => "jeq",
                    BPF_JGT => "jgt",
                    BPF_JGE => "jge",
                    BPF_JSET => "jset",
                    _ => "j?",
                };
                let operand = if ins.code & BPF_X != 0 {
                    "x".to_owned()
                } else {
                    format!("#{:#x}", ins.k)
                };
                format!(
                    "{op:<4} {operand:<12} jt {:0width$} jf {:0width$}",
                    target(u32::from(ins.jt)),
                    target(u32::from(ins.jf))
                )
            }
            BPF_RET if ins.code & BPF_A != 0 => "ret  a".into(),
            BPF_RET => format!("ret  {}", describe_ret(ins.k)),
            BPF_MISC if ins.code & 0xf8 == BPF_TXA => "txa".into(),
            BPF_MISC => "tax".into(),
            _ => format!("code={:#06x} jt={} jf={} k={:#x}", ins.code, ins.jt, ins.jf, ins.k),
        };
        let _ = write!(out, "{i:0width$}: {text}");
        if let Some(Some(c)) = comments.get(i) {
            let pad = 44usize.saturating_sub(text.len());
            let _ = write!(out, "{:pad$} ; {c}", "");
        }
        out.push('\n');
    }
    out
}

/// The raw bytes of `insns` as a `sock_filter` array in native byte order, as
/// `seccomp_export_bpf` writes a program (the inverse of [`from_bytes`]).
pub fn to_bytes(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * 8);
    for i in insns {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

/// Parses the raw bytes of a `sock_filter` array in native byte order (what libseccomp's
/// `seccomp_export_bpf` writes).
pub fn from_bytes(bytes: &[u8]) -> Option<Vec<Insn>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| Insn {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_the_kernels_sock_filter_layout() {
        let insns = [
            Insn {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            Insn {
                code: 0x15,
                jt: 1,
                jf: 2,
                k: 0xc000_003e,
            },
        ];
        let bytes = to_bytes(&insns);
        assert_eq!(bytes.len(), insns.len() * std::mem::size_of::<libc::sock_filter>());
        // struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }, native byte order.
        let mut second = 0x15u16.to_ne_bytes().to_vec();
        second.extend([1, 2]);
        second.extend(0xc000_003eu32.to_ne_bytes());
        assert_eq!(&bytes[8..], &second[..]);
        assert_eq!(from_bytes(&bytes).as_deref(), Some(&insns[..]));
        assert_eq!(from_bytes(&bytes[..7]), None);
    }
}
