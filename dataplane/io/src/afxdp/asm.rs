//! A tiny eBPF assembler: a builder that emits [`Insn`]s with named labels
//! and resolves jumps to them (forward and backward) in [`Asm::finish`].
//!
//! Why not raw instruction arrays: the offload program has dozens of
//! instructions and a dozen jumps; counting jump offsets by hand breaks on
//! every edit. Why not clang/aya: tandem stays pure Rust with nothing to
//! install at build or run time (see `mod.rs`).
//!
//! Only the instruction forms tandem needs, encoded per RFC 9669: 64-bit
//! ALU (register and immediate), byte swaps, memory loads/stores, atomic
//! add, the two-slot `ld_imm64` with a map fd, conditional and
//! unconditional jumps, calls and exit. Mistakes in the label graph (an
//! unknown or duplicate label, a jump too far for the 16-bit offset) are
//! errors from `finish`, never panics.

// A general builder: tandem's own programs use a subset of these forms and
// the unit tests the rest.
#![allow(dead_code)]

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// `dst_reg:4, src_reg:4` as a C bitfield: dst in the low nibble on
    /// little-endian targets, in the high nibble on big-endian ones.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The packed register byte of an instruction.
pub const fn regs(dst: u8, src: u8) -> u8 {
    if cfg!(target_endian = "little") {
        (src << 4) | (dst & 0xf)
    } else {
        (dst << 4) | (src & 0xf)
    }
}

/// eBPF registers: r0 return value, r1–r5 arguments (clobbered by calls),
/// r6–r9 callee-saved, r10 the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// Access size of a load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    const fn bits(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }
}

/// ALU operations (`BPF_OP` of the ALU classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Div = 0x30,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Mod = 0x90,
    Xor = 0xa0,
    Mov = 0xb0,
    Arsh = 0xc0,
}

/// Conditional jump operations (`BPF_OP` of the JMP class), unsigned
/// unless named `S…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JmpOp {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Set = 0x40,
    Ne = 0x50,
    Sgt = 0x60,
    Sge = 0x70,
    Lt = 0xa0,
    Le = 0xb0,
    Slt = 0xc0,
    Sle = 0xd0,
}

// Instruction classes and modes (linux/bpf_common.h, linux/bpf.h).
const CLS_LD: u8 = 0x00;
const CLS_LDX: u8 = 0x01;
const CLS_ST: u8 = 0x02;
const CLS_STX: u8 = 0x03;
const CLS_ALU: u8 = 0x04;
const CLS_JMP: u8 = 0x05;
const CLS_ALU64: u8 = 0x07;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const MODE_ATOMIC: u8 = 0xc0;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_NEG: u8 = 0x80;
const OP_END: u8 = 0xd0;
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
/// `BPF_TO_BE` / `BPF_TO_LE` in the source bit of `BPF_END`.
const END_TO_BE: u8 = 0x08;
const END_TO_LE: u8 = 0x00;
/// `imm` of an atomic add without fetch (`BPF_ADD`).
const ATOMIC_ADD: i32 = 0x00;

/// Why a program could not be assembled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("jump at instruction {at} to unknown label {label:?}")]
    UnknownLabel { label: String, at: usize },
    #[error("label {0:?} defined twice")]
    DuplicateLabel(String),
    #[error("jump at instruction {at} to label {label:?} does not fit 16 bits ({offset})")]
    OutOfRange {
        label: String,
        at: usize,
        offset: i64,
    },
}

/// The builder. Methods append one instruction (two for `ld_imm64`) and
/// return `&mut Self` so short sequences can chain.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<(String, usize)>,
    /// Jumps waiting for their label: (instruction index, label).
    fixups: Vec<(usize, String)>,
    /// The first label error, reported by `finish`.
    error: Option<AsmError>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Index of the next instruction (an `ld_imm64` counts as two).
    pub fn pc(&self) -> usize {
        self.insns.len()
    }

    fn emit(&mut self, code: u8, dst: Reg, src: u8, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            regs: regs(dst as u8, src),
            off,
            imm,
        });
        self
    }

    /// Defines `name` at the next instruction.
    pub fn label(&mut self, name: &str) -> &mut Self {
        if self.labels.iter().any(|(l, _)| l == name) {
            self.error
                .get_or_insert(AsmError::DuplicateLabel(name.to_string()));
        } else {
            self.labels.push((name.to_string(), self.insns.len()));
        }
        self
    }

    // ---- ALU ------------------------------------------------------------

    /// `dst op= imm` (64-bit).
    pub fn alu64_imm(&mut self, op: AluOp, dst: Reg, imm: i32) -> &mut Self {
        self.emit(CLS_ALU64 | op as u8 | SRC_K, dst, 0, 0, imm)
    }

    /// `dst op= src` (64-bit).
    pub fn alu64_reg(&mut self, op: AluOp, dst: Reg, src: Reg) -> &mut Self {
        self.emit(CLS_ALU64 | op as u8 | SRC_X, dst, src as u8, 0, 0)
    }

    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::Mov, dst, imm)
    }
    pub fn mov64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu64_reg(AluOp::Mov, dst, src)
    }
    pub fn add64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::Add, dst, imm)
    }
    pub fn add64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu64_reg(AluOp::Add, dst, src)
    }
    pub fn sub64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::Sub, dst, imm)
    }
    pub fn and64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::And, dst, imm)
    }
    pub fn and64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu64_reg(AluOp::And, dst, src)
    }
    pub fn or64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu64_reg(AluOp::Or, dst, src)
    }
    pub fn rsh64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::Rsh, dst, imm)
    }
    pub fn lsh64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::Lsh, dst, imm)
    }
    pub fn xor64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::Xor, dst, imm)
    }
    pub fn xor64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu64_reg(AluOp::Xor, dst, src)
    }

    /// `dst = -dst` (64-bit).
    pub fn neg64(&mut self, dst: Reg) -> &mut Self {
        self.emit(CLS_ALU64 | OP_NEG, dst, 0, 0, 0)
    }

    /// `dst = htobe<bits>(dst)`: a swap on little-endian hosts, and the
    /// upper bits cleared either way. `bits` is 16, 32 or 64.
    pub fn htobe(&mut self, dst: Reg, bits: i32) -> &mut Self {
        self.emit(CLS_ALU | OP_END | END_TO_BE, dst, 0, 0, bits)
    }

    /// `dst = htole<bits>(dst)`.
    pub fn htole(&mut self, dst: Reg, bits: i32) -> &mut Self {
        self.emit(CLS_ALU | OP_END | END_TO_LE, dst, 0, 0, bits)
    }

    // ---- memory ---------------------------------------------------------

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.emit(CLS_LDX | MODE_MEM | size.bits(), dst, src as u8, off, 0)
    }
    pub fn ldx_b(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.ldx(Size::B, dst, src, off)
    }
    pub fn ldx_h(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.ldx(Size::H, dst, src, off)
    }
    pub fn ldx_w(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.ldx(Size::W, dst, src, off)
    }
    pub fn ldx_dw(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.ldx(Size::DW, dst, src, off)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.emit(CLS_STX | MODE_MEM | size.bits(), dst, src as u8, off, 0)
    }
    pub fn stx_b(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.stx(Size::B, dst, off, src)
    }
    pub fn stx_h(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.stx(Size::H, dst, off, src)
    }
    pub fn stx_w(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.stx(Size::W, dst, off, src)
    }
    pub fn stx_dw(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.stx(Size::DW, dst, off, src)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn st_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.emit(CLS_ST | MODE_MEM | size.bits(), dst, 0, off, imm)
    }

    /// `lock *(u64 *)(dst + off) += src` (no fetch).
    pub fn atomic_add_dw(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.emit(
            CLS_STX | MODE_ATOMIC | Size::DW.bits(),
            dst,
            src as u8,
            off,
            ATOMIC_ADD,
        )
    }

    /// `lock *(u32 *)(dst + off) += src` (no fetch).
    pub fn atomic_add_w(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.emit(
            CLS_STX | MODE_ATOMIC | Size::W.bits(),
            dst,
            src as u8,
            off,
            ATOMIC_ADD,
        )
    }

    /// `dst = imm64` (two instruction slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.ld_imm64_src(dst, 0, imm)
    }

    /// `dst = map by fd` (`ld_imm64` with `BPF_PSEUDO_MAP_FD`; the verifier
    /// turns the fd into the map's address).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.ld_imm64_src(dst, super::sys::BPF_PSEUDO_MAP_FD, fd as u32 as u64)
    }

    fn ld_imm64_src(&mut self, dst: Reg, src: u8, imm: u64) -> &mut Self {
        self.emit(
            CLS_LD | MODE_IMM | Size::DW.bits(),
            dst,
            src,
            0,
            imm as u32 as i32,
        );
        self.insns.push(Insn {
            code: 0,
            regs: 0,
            off: 0,
            imm: (imm >> 32) as u32 as i32,
        });
        self
    }

    // ---- jumps ----------------------------------------------------------

    fn jump(&mut self, code: u8, dst: Reg, src: u8, imm: i32, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.emit(code, dst, src, 0, imm)
    }

    /// `goto label`.
    pub fn ja(&mut self, label: &str) -> &mut Self {
        self.jump(CLS_JMP | OP_JA, Reg::R0, 0, 0, label)
    }

    /// `if dst op imm goto label` (64-bit compare).
    pub fn jmp_imm(&mut self, op: JmpOp, dst: Reg, imm: i32, label: &str) -> &mut Self {
        self.jump(CLS_JMP | op as u8 | SRC_K, dst, 0, imm, label)
    }

    /// `if dst op src goto label` (64-bit compare).
    pub fn jmp_reg(&mut self, op: JmpOp, dst: Reg, src: Reg, label: &str) -> &mut Self {
        self.jump(CLS_JMP | op as u8 | SRC_X, dst, src as u8, 0, label)
    }

    pub fn jeq_imm(&mut self, dst: Reg, imm: i32, label: &str) -> &mut Self {
        self.jmp_imm(JmpOp::Eq, dst, imm, label)
    }
    pub fn jne_imm(&mut self, dst: Reg, imm: i32, label: &str) -> &mut Self {
        self.jmp_imm(JmpOp::Ne, dst, imm, label)
    }
    pub fn jgt_imm(&mut self, dst: Reg, imm: i32, label: &str) -> &mut Self {
        self.jmp_imm(JmpOp::Gt, dst, imm, label)
    }
    pub fn jle_imm(&mut self, dst: Reg, imm: i32, label: &str) -> &mut Self {
        self.jmp_imm(JmpOp::Le, dst, imm, label)
    }
    pub fn jeq_reg(&mut self, dst: Reg, src: Reg, label: &str) -> &mut Self {
        self.jmp_reg(JmpOp::Eq, dst, src, label)
    }
    pub fn jne_reg(&mut self, dst: Reg, src: Reg, label: &str) -> &mut Self {
        self.jmp_reg(JmpOp::Ne, dst, src, label)
    }
    pub fn jgt_reg(&mut self, dst: Reg, src: Reg, label: &str) -> &mut Self {
        self.jmp_reg(JmpOp::Gt, dst, src, label)
    }

    /// `call helper` (a helper id from `enum bpf_func_id`).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.emit(CLS_JMP | OP_CALL, Reg::R0, 0, 0, helper)
    }

    /// `exit` (returns r0).
    pub fn exit(&mut self) -> &mut Self {
        self.emit(CLS_JMP | OP_EXIT, Reg::R0, 0, 0, 0)
    }

    /// Resolves every jump and returns the program.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for (at, label) in std::mem::take(&mut self.fixups) {
            let Some(&(_, target)) = self.labels.iter().find(|(l, _)| *l == label) else {
                return Err(AsmError::UnknownLabel { label, at });
            };
            // Jump offsets count from the instruction after the jump.
            let offset = target as i64 - (at as i64 + 1);
            let Ok(off) = i16::try_from(offset) else {
                return Err(AsmError::OutOfRange { label, at, offset });
            };
            if let Some(insn) = self.insns.get_mut(at) {
                insn.off = off;
            }
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::Reg::*;
    use super::*;

    /// The instruction as its 8 wire bytes (little-endian target).
    fn b(i: &Insn) -> [u8; 8] {
        let o = i.off.to_le_bytes();
        let m = i.imm.to_le_bytes();
        [i.code, i.regs, o[0], o[1], m[0], m[1], m[2], m[3]]
    }

    fn one(f: impl FnOnce(&mut Asm)) -> [u8; 8] {
        let mut a = Asm::new();
        f(&mut a);
        let p = a.finish().unwrap();
        assert_eq!(p.len(), 1);
        b(&p[0])
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn instructions_encode_per_rfc9669() {
        // Opcodes from RFC 9669 Appendix A; dst in the low nibble.
        type Case = (fn(&mut Asm), [u8; 8]);
        let cases: &[Case] = &[
            (|a| _ = a.mov64_imm(R3, 2), [0xb7, 0x03, 0, 0, 2, 0, 0, 0]),
            (|a| _ = a.mov64_reg(R6, R1), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]),
            (
                |a| _ = a.add64_imm(R2, -24),
                [0x07, 0x02, 0, 0, 0xe8, 0xff, 0xff, 0xff],
            ),
            (|a| _ = a.add64_reg(R1, R3), [0x0f, 0x31, 0, 0, 0, 0, 0, 0]),
            (|a| _ = a.sub64_imm(R1, 1), [0x17, 0x01, 0, 0, 1, 0, 0, 0]),
            (
                |a| _ = a.and64_imm(R1, 0x3fff),
                [0x57, 0x01, 0, 0, 0xff, 0x3f, 0, 0],
            ),
            (|a| _ = a.and64_reg(R1, R2), [0x5f, 0x21, 0, 0, 0, 0, 0, 0]),
            (|a| _ = a.or64_reg(R1, R2), [0x4f, 0x21, 0, 0, 0, 0, 0, 0]),
            (|a| _ = a.rsh64_imm(R3, 16), [0x77, 0x03, 0, 0, 16, 0, 0, 0]),
            (|a| _ = a.lsh64_imm(R3, 8), [0x67, 0x03, 0, 0, 8, 0, 0, 0]),
            (
                |a| _ = a.xor64_imm(R1, 0xffff),
                [0xa7, 0x01, 0, 0, 0xff, 0xff, 0, 0],
            ),
            (|a| _ = a.xor64_reg(R1, R9), [0xaf, 0x91, 0, 0, 0, 0, 0, 0]),
            (|a| _ = a.neg64(R4), [0x87, 0x04, 0, 0, 0, 0, 0, 0]),
            (|a| _ = a.htobe(R1, 16), [0xdc, 0x01, 0, 0, 16, 0, 0, 0]),
            (|a| _ = a.htole(R1, 32), [0xd4, 0x01, 0, 0, 32, 0, 0, 0]),
            (|a| _ = a.ldx_b(R1, R7, 23), [0x71, 0x71, 23, 0, 0, 0, 0, 0]),
            (|a| _ = a.ldx_h(R1, R7, 12), [0x69, 0x71, 12, 0, 0, 0, 0, 0]),
            (|a| _ = a.ldx_w(R2, R1, 16), [0x61, 0x12, 16, 0, 0, 0, 0, 0]),
            (
                |a| _ = a.ldx_dw(R0, R9, 56),
                [0x79, 0x90, 56, 0, 0, 0, 0, 0],
            ),
            (
                |a| _ = a.stx_b(R10, -8, R1),
                [0x73, 0x1a, 0xf8, 0xff, 0, 0, 0, 0],
            ),
            (|a| _ = a.stx_h(R8, 0, R1), [0x6b, 0x18, 0, 0, 0, 0, 0, 0]),
            (
                |a| _ = a.stx_w(R10, -24, R1),
                [0x63, 0x1a, 0xe8, 0xff, 0, 0, 0, 0],
            ),
            (
                |a| _ = a.stx_dw(R9, 56, R0),
                [0x7b, 0x09, 56, 0, 0, 0, 0, 0],
            ),
            (
                |a| _ = a.st_imm(Size::W, R10, -8, 0x1234),
                [0x62, 0x0a, 0xf8, 0xff, 0x34, 0x12, 0, 0],
            ),
            (
                |a| _ = a.st_imm(Size::B, R10, -1, 7),
                [0x72, 0x0a, 0xff, 0xff, 7, 0, 0, 0],
            ),
            // BPF_STX | BPF_ATOMIC | BPF_DW, imm = BPF_ADD.
            (
                |a| _ = a.atomic_add_dw(R9, 64, R1),
                [0xdb, 0x19, 64, 0, 0, 0, 0, 0],
            ),
            (
                |a| _ = a.atomic_add_w(R9, 4, R1),
                [0xc3, 0x19, 4, 0, 0, 0, 0, 0],
            ),
            (|a| _ = a.call(23), [0x85, 0, 0, 0, 23, 0, 0, 0]),
            (|a| _ = a.exit(), [0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (i, (emit, want)) in cases.iter().enumerate() {
            assert_eq!(one(emit), *want, "case {i}");
        }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ld_imm64_takes_two_slots() {
        let mut a = Asm::new();
        a.ld_map_fd(R1, 9).ld_imm64(R2, 0x1122_3344_5566_7788);
        let p = a.finish().unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(b(&p[0]), [0x18, 0x11, 0, 0, 9, 0, 0, 0]);
        assert_eq!(b(&p[1]), [0; 8]);
        assert_eq!(b(&p[2]), [0x18, 0x02, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(b(&p[3]), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn jumps_resolve_forward_and_backward() {
        let mut a = Asm::new();
        a.label("top"); // 0
        a.jeq_imm(R1, 6, "end"); // 0 -> 5: off 4
        a.ld_map_fd(R1, 3); // 1, 2 (two slots count)
        a.jgt_reg(R2, R3, "top"); // 3 -> 0: off -4
        a.ja("end"); // 4 -> 5: off 0
        a.label("end"); // 5
        a.jne_imm(R1, 0x0800, "end"); // 5 -> 5: off -1
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(b(&p[0]), [0x15, 0x01, 4, 0, 6, 0, 0, 0]);
        assert_eq!(b(&p[3]), [0x2d, 0x32, 0xfc, 0xff, 0, 0, 0, 0]);
        assert_eq!(b(&p[4]), [0x05, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b(&p[5]), [0x55, 0x01, 0xff, 0xff, 0x00, 0x08, 0, 0]);
        // Other jump opcodes.
        let mut a = Asm::new();
        a.label("x");
        a.jle_imm(R1, 1, "x")
            .jmp_imm(JmpOp::Set, R1, 7, "x")
            .jmp_imm(JmpOp::Lt, R1, 7, "x")
            .jmp_imm(JmpOp::Ge, R1, 7, "x")
            .jmp_imm(JmpOp::Sgt, R1, 7, "x")
            .jeq_reg(R1, R2, "x")
            .jne_reg(R1, R2, "x")
            .jgt_imm(R1, 1, "x");
        let codes: Vec<u8> = a.finish().unwrap().iter().map(|i| i.code).collect();
        assert_eq!(codes, [0xb5, 0x45, 0xa5, 0x35, 0x65, 0x1d, 0x5d, 0x25]);
    }

    #[test]
    fn label_mistakes_are_errors() {
        let mut a = Asm::new();
        a.mov64_imm(R0, 0).jeq_imm(R1, 0, "nowhere").exit();
        assert_eq!(
            a.finish(),
            Err(AsmError::UnknownLabel {
                label: "nowhere".into(),
                at: 1
            })
        );

        let mut a = Asm::new();
        a.label("l").exit().label("l");
        assert_eq!(a.finish(), Err(AsmError::DuplicateLabel("l".into())));

        let mut a = Asm::new();
        a.ja("far");
        for _ in 0..40_000 {
            a.exit();
        }
        a.label("far").exit();
        assert!(matches!(
            a.finish(),
            Err(AsmError::OutOfRange {
                at: 0,
                offset: 40_000,
                ..
            })
        ));
        // A label nobody jumps to is fine, as is an empty program.
        let mut a = Asm::new();
        a.label("unused");
        assert_eq!(a.finish(), Ok(vec![]));
    }
}
