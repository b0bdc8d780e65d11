//! tandem's XDP program and XSKMAP through raw `bpf()` calls: the
//! hand-assembled redirect program, map creation and update, program load
//! (with the verifier log on failure), BPF link attach, and program lookup
//! by id for log lines.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::sys::{self, Pod};

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

const fn regs(dst: u8, src: u8) -> u8 {
    if cfg!(target_endian = "little") {
        (src << 4) | (dst & 0xf)
    } else {
        (dst << 4) | (src & 0xf)
    }
}

// Opcode bytes (class | size/op | mode/source), from linux/bpf_common.h.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const LD_IMM_DW: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW (two slots)
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// The redirect program, equivalent to
/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`:
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
/// r1 = map_fd ll              ; pseudo map fd, rewritten by the verifier
/// r3 = XDP_PASS               ; action when the queue has no socket
/// call bpf_redirect_map       ; 51
/// exit                        ; r0 = the helper's verdict
/// ```
pub fn redirect_program(map_fd: i32) -> [Insn; 6] {
    [
        Insn {
            code: LDX_MEM_W,
            regs: regs(2, 1),
            off: XDP_MD_RX_QUEUE_INDEX,
            imm: 0,
        },
        Insn {
            code: LD_IMM_DW,
            regs: regs(1, sys::BPF_PSEUDO_MAP_FD),
            off: 0,
            imm: map_fd,
        },
        Insn {
            code: 0,
            regs: 0,
            off: 0,
            imm: 0,
        },
        Insn {
            code: ALU64_MOV_K,
            regs: regs(3, 0),
            off: 0,
            imm: sys::XDP_PASS,
        },
        Insn {
            code: JMP_CALL,
            regs: 0,
            off: 0,
            imm: sys::BPF_FUNC_REDIRECT_MAP,
        },
        Insn {
            code: JMP_EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ]
}

/// `r0 = XDP_PASS; exit`: used by tests to stand in for a foreign program.
pub fn pass_program() -> [Insn; 2] {
    [
        Insn {
            code: ALU64_MOV_K,
            regs: regs(0, 0),
            off: 0,
            imm: sys::XDP_PASS,
        },
        Insn {
            code: JMP_EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ]
}

fn name16(name: &str) -> [u8; 16] {
    // BPF object names: at most 15 bytes of [A-Za-z0-9_.], NUL-terminated.
    let mut out = [0u8; 16];
    for (d, s) in out.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    out
}

/// Create an XSKMAP (queue index → XSK socket) with `max_entries` slots.
pub fn create_xskmap(max_entries: u32, name: &str) -> io::Result<OwnedFd> {
    let mut attr = sys::MapCreateAttr {
        map_type: sys::BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    sys::bpf_fd(sys::BPF_MAP_CREATE, &mut attr)
}

/// `map[key] = value` for a u32 → u32 map (XSKMAP: queue → socket fd).
pub fn map_update(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = sys::MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0, // BPF_ANY
        ..Default::default()
    };
    // `key` and `value` live on this frame for the duration of the call.
    sys::bpf(sys::BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// A program load that the kernel refused, with the verifier's log.
#[derive(Debug)]
pub struct LoadError {
    pub source: io::Error,
    pub log: String,
}

/// Licence string handed to the kernel with the program. bpf_redirect_map
/// is not GPL-only, so a dual licence is enough.
const LICENSE: &[u8] = b"Dual MIT/GPL\0";

/// Load an XDP program. On failure, loads once more with the verifier log
/// enabled so the error can say why.
pub fn load_xdp(insns: &[Insn], name: &str) -> Result<OwnedFd, LoadError> {
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = sys::ProgLoadAttr {
            prog_type: sys::BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            prog_name: name16(name),
            expected_attach_type: sys::BPF_XDP,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        // `insns`, LICENSE and the log buffer outlive the call.
        sys::bpf_fd(sys::BPF_PROG_LOAD, &mut attr)
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(source) => {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = attempt(Some(&mut buf));
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let log = String::from_utf8_lossy(&buf[..end]).trim().to_string();
            Err(LoadError { source, log })
        }
    }
}

/// Attach `prog` to `ifindex` with a BPF link in the mode given by
/// `xdp_flags` (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`). Closing the
/// returned fd, or the process dying, detaches it.
pub fn link_create_xdp(prog: BorrowedFd<'_>, ifindex: u32, xdp_flags: u32) -> io::Result<OwnedFd> {
    let mut attr = sys::LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: sys::BPF_XDP,
        flags: xdp_flags,
    };
    sys::bpf_fd(sys::BPF_LINK_CREATE, &mut attr)
}

/// Detach a BPF link from its hook now (`BPF_LINK_DETACH`, 5.9+), even if
/// other copies of its fd exist, e.g. in a child between `fork` and `exec`
/// (which would otherwise delay the detach that closing our fd triggers).
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = sys::LinkDetachAttr {
        link_fd: link.as_raw_fd() as u32,
    };
    sys::bpf(sys::BPF_LINK_DETACH, &mut attr).map(|_| ())
}

fn obj_info<T: Pod + Default>(fd: BorrowedFd<'_>) -> io::Result<T> {
    let mut info = T::default();
    let mut attr = sys::InfoByFdAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: &mut info as *mut T as u64,
    };
    // `info` lives on this frame; the kernel writes at most info_len bytes.
    sys::bpf(sys::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

fn name_of(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Id of a loaded program.
pub fn prog_id(prog: BorrowedFd<'_>) -> io::Result<u32> {
    obj_info::<sys::BpfProgInfo>(prog).map(|i| i.id)
}

/// Name of the program with kernel id `id`, for log lines ("" if unnamed).
pub fn prog_name_by_id(id: u32) -> io::Result<String> {
    let mut attr = sys::GetFdByIdAttr {
        id,
        ..Default::default()
    };
    let fd = sys::bpf_fd(sys::BPF_PROG_GET_FD_BY_ID, &mut attr)?;
    use std::os::fd::AsFd;
    obj_info::<sys::BpfProgInfo>(fd.as_fd()).map(|i| name_of(&i.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(insns: &[Insn]) -> Vec<u8> {
        insns
            .iter()
            .flat_map(|i| {
                let mut b = vec![i.code, i.regs];
                b.extend_from_slice(&i.off.to_le_bytes());
                b.extend_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect()
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn redirect_program_encodes_as_rfc9669_bytes() {
        // Golden bytes per the eBPF instruction encoding (RFC 9669 §3-4):
        // opcode, dst|src<<4, off (LE), imm (LE); map fd 7 in the ld_imm64.
        let want: [u8; 48] = [
            0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // r2 = *(u32 *)(r1 + 0x10)
            0x18, 0x11, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, // r1 = map fd 7 ll
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
            0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // r3 = 2
            0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00, // call 51
            0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exit
        ];
        assert_eq!(bytes(&redirect_program(7)), want);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn names_are_truncated_and_terminated() {
        let n = name16("a_very_long_program_name");
        assert_eq!(n[15], 0);
        assert_eq!(name_of(&n), "a_very_long_pro");
        assert_eq!(name_of(&name16("tandem_xsk")), "tandem_xsk");
    }
}
