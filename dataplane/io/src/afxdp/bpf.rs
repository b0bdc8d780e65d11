//! tandem's XDP programs and maps through raw `bpf()` calls: the redirect
//! and flow-offload programs (built with `asm`), XSKMAP and hash map
//! creation and element/batch operations, program load (with the verifier
//! log on failure), test runs, BPF link attach, and program lookup by id
//! for log lines.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::sys::{self, Pod};

pub use super::asm::Insn;
use super::asm::{Asm, AsmError, Reg, Size};
use super::flow::FlowValue;

// Offsets in `struct xdp_md`.
const XDP_MD_DATA: i16 = 0;
const XDP_MD_DATA_END: i16 = 4;
const XDP_MD_INGRESS_IFINDEX: i16 = 12;
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);` with
/// the context in `ctx`: frames on a queue with a bound socket go to it,
/// the rest to the kernel stack.
fn to_xsk(a: &mut Asm, ctx: Reg, xsk_map_fd: i32) {
    a.ldx_w(Reg::R2, ctx, XDP_MD_RX_QUEUE_INDEX)
        .ld_map_fd(Reg::R1, xsk_map_fd)
        .mov64_imm(Reg::R3, sys::XDP_PASS)
        .call(sys::BPF_FUNC_REDIRECT_MAP)
        .exit();
}

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
pub fn redirect_program(map_fd: i32) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    to_xsk(&mut a, Reg::R1, map_fd);
    a.finish()
}

/// `r0 = XDP_PASS; exit`: used by tests to stand in for a foreign program.
pub fn pass_program() -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    a.mov64_imm(Reg::R0, sys::XDP_PASS).exit();
    a.finish()
}

// Where the program finds things in a map value (see `FlowValue`).
const V_SRC: i16 = std::mem::offset_of!(FlowValue, src) as i16;
const V_SPORT: i16 = std::mem::offset_of!(FlowValue, sport) as i16;
const V_IP_ADD: i16 = std::mem::offset_of!(FlowValue, ip_csum_add) as i16;
const V_L4_ADD: i16 = std::mem::offset_of!(FlowValue, l4_csum_add) as i16;
const V_OUT_IFINDEX: i16 = std::mem::offset_of!(FlowValue, out_ifindex) as i16;
const V_MTU: i16 = std::mem::offset_of!(FlowValue, mtu) as i16;
const V_RX_MAC: i16 = std::mem::offset_of!(FlowValue, rx_mac) as i16;
const V_DST_MAC: i16 = std::mem::offset_of!(FlowValue, dst_mac) as i16;
const V_SRC_MAC: i16 = std::mem::offset_of!(FlowValue, src_mac) as i16;
const V_LAST_SEEN: i16 = std::mem::offset_of!(FlowValue, last_seen_ns) as i16;
const V_PACKETS: i16 = std::mem::offset_of!(FlowValue, packets) as i16;

/// The lookup key's place on the stack: 20 bytes at fp-24 (`FlowKey`).
const KEY: i16 = -24;

/// Frame offsets (Ethernet + IPv4 without options).
const ETH_TYPE: i16 = 12;
const IP_VHL: i16 = 14;
const IP_TOT_LEN: i16 = 16;
const IP_FRAG: i16 = 20;
const IP_TTL: i16 = 22;
const IP_PROTO: i16 = 23;
const IP_CSUM: i16 = 24;
const IP_SRC: i16 = 26;
const L4: i16 = 34;
const TCP_FLAGS: i16 = 47;
const TCP_CSUM: i16 = 50;
const UDP_CSUM: i16 = 40;
const TCP_END: i32 = 54;
const UDP_END: i32 = 42;

/// `len` bytes from the map value (`r9 + from`) to the frame (`r7 + to`),
/// in the widest loads the value offset's alignment allows (the packet
/// side may be unaligned; XDP packet access does not require alignment
/// unless the kernel runs with strict alignment).
fn copy_value_to_frame(a: &mut Asm, from: i16, to: i16, len: i16) {
    let mut done = 0;
    while done < len {
        let (v, p) = (from + done, to + done);
        let size = if len - done >= 4 && v % 4 == 0 {
            Size::W
        } else if len - done >= 2 && v % 2 == 0 {
            Size::H
        } else {
            Size::B
        };
        a.ldx(size, Reg::R1, Reg::R9, v)
            .stx(size, Reg::R7, p, Reg::R1);
        done += match size {
            Size::W => 4,
            Size::H => 2,
            _ => 1,
        };
    }
}

/// `r1 = csum_apply(r1, r2)` on 16-bit values, clobbering r3:
/// `~(~csum +' add)` with the end-around carry folded once (two 16-bit
/// values sum to at most 0x1fffe, which folds to at most 0xffff).
fn csum_apply(a: &mut Asm) {
    a.xor64_imm(Reg::R1, 0xffff)
        .add64_reg(Reg::R1, Reg::R2)
        .mov64_reg(Reg::R3, Reg::R1)
        .rsh64_imm(Reg::R3, 16)
        .and64_imm(Reg::R1, 0xffff)
        .add64_reg(Reg::R1, Reg::R3)
        .xor64_imm(Reg::R1, 0xffff);
}

/// The flow-offload program: frames of an offloaded flow are rewritten and
/// sent out of their egress device with `bpf_redirect`; everything else
/// takes the plain redirect program's path to the AF_XDP socket (or the
/// stack). `offload::MemFlowTable::forward` is the model of this program
/// and the integration tests compare the two byte for byte.
///
/// Eligible: Ethernet type 0x0800, IPv4 with IHL 5, not a fragment, TTL
/// above 1, TCP without SYN/FIN/RST or UDP, headers in the frame. The key
/// is `FlowKey` (ingress ifindex, addresses, ports, protocol) built on the
/// stack; a hit must also be addressed to the entry's receive MAC and fit
/// its MTU. The rewrite sets both MACs, addresses and ports, decrements the
/// TTL and applies the entry's constant checksum addends.
///
/// Checksums are computed in the host's byte order on 16-bit loads of
/// wire-order data: ones'-complement sums commute with byte swapping
/// (RFC 1071 §2(B)), so with the addend stored as wire-order bytes too,
/// the stored result is the right wire checksum on either endianness.
///
/// Registers: r6 = ctx, r7 = packet start, r8 = packet end and then the
/// L4 checksum's address (its own packet pointer, so the verifier checks
/// the TCP and UDP offsets against the bound proved on each path), r9 =
/// the map value. Only r1–r5 are clobbered by calls, and neither
/// `bpf_map_lookup_elem` nor `bpf_ktime_get_coarse_ns` invalidates packet
/// pointers.
pub fn offload_program(xsk_map_fd: i32, flow_map_fd: i32) -> Result<Vec<Insn>, AsmError> {
    use Reg::*;
    const SLOW: &str = "slow";
    let mut a = Asm::new();

    // ---- eligibility ----
    a.mov64_reg(R6, R1)
        .ldx_w(R7, R6, XDP_MD_DATA)
        .ldx_w(R8, R6, XDP_MD_DATA_END);
    // Ethernet + IPv4 header present (covers the 14-byte Ethernet check).
    a.mov64_reg(R1, R7)
        .add64_imm(R1, L4 as i32)
        .jgt_reg(R1, R8, SLOW);
    a.ldx_h(R1, R7, ETH_TYPE)
        .htobe(R1, 16)
        .jne_imm(R1, 0x0800, SLOW);
    a.ldx_b(R1, R7, IP_VHL).jne_imm(R1, 0x45, SLOW);
    // MF or a fragment offset (DF is fine).
    a.ldx_h(R1, R7, IP_FRAG)
        .htobe(R1, 16)
        .and64_imm(R1, 0x3fff)
        .jne_imm(R1, 0, SLOW);
    a.ldx_b(R1, R7, IP_TTL).jle_imm(R1, 1, SLOW);
    // r1 = protocol until the key is built.
    a.ldx_b(R1, R7, IP_PROTO)
        .jeq_imm(R1, 17, "udp")
        .jne_imm(R1, 6, SLOW);
    a.mov64_reg(R2, R7)
        .add64_imm(R2, TCP_END)
        .jgt_reg(R2, R8, SLOW);
    a.ldx_b(R2, R7, TCP_FLAGS)
        .and64_imm(R2, 0x07) // FIN | SYN | RST
        .jne_imm(R2, 0, SLOW);
    a.mov64_reg(R8, R7).add64_imm(R8, TCP_CSUM as i32).ja("key");
    a.label("udp");
    a.mov64_reg(R2, R7)
        .add64_imm(R2, UDP_END)
        .jgt_reg(R2, R8, SLOW);
    a.mov64_reg(R8, R7).add64_imm(R8, UDP_CSUM as i32);

    // ---- key: ifindex, src, dst, ports, proto + zero pad ----
    a.label("key");
    a.st_imm(Size::W, R10, KEY + 16, 0).stx_b(R10, KEY + 16, R1);
    a.ldx_w(R1, R6, XDP_MD_INGRESS_IFINDEX).stx_w(R10, KEY, R1);
    a.ldx_w(R1, R7, IP_SRC).stx_w(R10, KEY + 4, R1);
    a.ldx_w(R1, R7, IP_SRC + 4).stx_w(R10, KEY + 8, R1);
    a.ldx_w(R1, R7, L4).stx_w(R10, KEY + 12, R1);
    a.ld_map_fd(R1, flow_map_fd)
        .mov64_reg(R2, R10)
        .add64_imm(R2, KEY as i32)
        .call(sys::BPF_FUNC_MAP_LOOKUP_ELEM)
        .jeq_imm(R0, 0, SLOW)
        .mov64_reg(R9, R0);

    // ---- per-entry checks: our MAC, within the egress MTU ----
    a.ldx_w(R1, R7, 0)
        .ldx_w(R2, R9, V_RX_MAC)
        .jne_reg(R1, R2, SLOW);
    a.ldx_h(R1, R7, 4)
        .ldx_h(R2, R9, V_RX_MAC + 4)
        .jne_reg(R1, R2, SLOW);
    a.ldx_h(R1, R7, IP_TOT_LEN)
        .htobe(R1, 16)
        .ldx_h(R2, R9, V_MTU)
        .jgt_reg(R1, R2, SLOW);

    // ---- rewrite ----
    copy_value_to_frame(&mut a, V_DST_MAC, 0, 6);
    copy_value_to_frame(&mut a, V_SRC_MAC, 6, 6);
    copy_value_to_frame(&mut a, V_SRC, IP_SRC, 8);
    copy_value_to_frame(&mut a, V_SPORT, L4, 4);
    a.ldx_b(R1, R7, IP_TTL)
        .add64_imm(R1, -1)
        .stx_b(R7, IP_TTL, R1);
    a.ldx_h(R1, R7, IP_CSUM).ldx_h(R2, R9, V_IP_ADD);
    csum_apply(&mut a);
    a.stx_h(R7, IP_CSUM, R1);
    // TCP: always; UDP: 0 means "no checksum" and stays 0, and a computed
    // 0 is sent as 0xffff (RFC 768).
    a.ldx_h(R1, R8, 0)
        .ldx_h(R2, R9, V_L4_ADD)
        .ldx_b(R3, R7, IP_PROTO)
        .jeq_imm(R3, 17, "udp_csum");
    csum_apply(&mut a);
    a.ja("l4_store");
    a.label("udp_csum").jeq_imm(R1, 0, "l4_done");
    csum_apply(&mut a);
    a.jne_imm(R1, 0, "l4_store").mov64_imm(R1, 0xffff);
    a.label("l4_store").stx_h(R8, 0, R1);
    a.label("l4_done");

    // ---- bookkeeping and out ----
    // CLOCK_MONOTONIC_COARSE: no clock read per packet (read_tsc was about
    // 1 % of the fast path); a tick of lag is nothing to an idle timeout.
    a.call(sys::BPF_FUNC_KTIME_GET_COARSE_NS)
        .stx_dw(R9, V_LAST_SEEN, R0);
    a.mov64_imm(R1, 1).atomic_add_dw(R9, V_PACKETS, R1);
    a.ldx_w(R1, R9, V_OUT_IFINDEX)
        .mov64_imm(R2, 0)
        .call(sys::BPF_FUNC_REDIRECT)
        .exit();

    a.label(SLOW);
    to_xsk(&mut a, R6, xsk_map_fd);
    a.finish()
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

/// Create a hash map (`BPF_MAP_TYPE_HASH`, preallocated: an update never
/// allocates, and a full map refuses new keys with `E2BIG`).
pub fn create_hash_map(
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = sys::MapCreateAttr {
        map_type: sys::BPF_MAP_TYPE_HASH,
        key_size,
        value_size,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    sys::bpf_fd(sys::BPF_MAP_CREATE, &mut attr)
}

/// `map[key] = value` with `flags` (`BPF_ANY`: create or replace). `K` and
/// `V` must be exactly the map's key and value size.
pub fn map_update_elem<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    key: &K,
    value: &V,
    flags: u64,
) -> io::Result<()> {
    let mut attr = sys::MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *const V as u64,
        flags,
        ..Default::default()
    };
    // `key` and `value` are borrowed for the duration of the call.
    sys::bpf(sys::BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Remove `key`, copying its value out first (`ENOENT` when absent).
pub fn map_lookup_and_delete_elem<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    key: &K,
    value: &mut V,
) -> io::Result<()> {
    let mut attr = sys::MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *mut V as u64,
        ..Default::default()
    };
    // `key` and `value` are borrowed for the call; the kernel writes
    // exactly value_size bytes, which is size_of::<V>().
    sys::bpf(sys::BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr).map(|_| ())
}

/// Remove `key` (`ENOENT` when absent).
pub fn map_delete_elem<K: Pod>(map: BorrowedFd<'_>, key: &K) -> io::Result<()> {
    let mut attr = sys::MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        ..Default::default()
    };
    sys::bpf(sys::BPF_MAP_DELETE_ELEM, &mut attr).map(|_| ())
}

/// Result of one `BPF_MAP_LOOKUP_BATCH` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Entries written to the front of `keys` and `values`.
    pub count: usize,
    /// The walk reached the end of the map (`ENOENT`); `count` entries came
    /// with it all the same.
    pub end: bool,
}

/// Read up to `min(keys.len(), values.len())` entries starting at the
/// cursor `from` (`None`: the start of the map); the kernel stores the next
/// cursor in `next`. A hash map returns whole buckets only: `ENOSPC` when
/// the first bucket does not fit.
pub fn map_lookup_batch<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    from: Option<&u64>,
    next: &mut u64,
    keys: &mut [K],
    values: &mut [V],
) -> io::Result<Batch> {
    let room = keys.len().min(values.len()).min(u32::MAX as usize);
    let mut attr = sys::MapBatchAttr {
        in_batch: from.map_or(0, |c| c as *const u64 as u64),
        out_batch: next as *mut u64 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: room as u32,
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    // The cursors and buffers are borrowed for the call; the kernel writes
    // at most `count` keys and values (each exactly key/value_size bytes,
    // the sizes of K and V) and 4 bytes of cursor (hash maps; 8 available).
    match sys::bpf(sys::BPF_MAP_LOOKUP_BATCH, &mut attr) {
        Ok(_) => Ok(Batch {
            count: (attr.count as usize).min(room),
            end: false,
        }),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Batch {
            count: (attr.count as usize).min(room),
            end: true,
        }),
        Err(e) => Err(e),
    }
}

/// Run `prog` once on a copy of `frame` with `BPF_PROG_TEST_RUN`, as if
/// received on queue 0 of `ifindex` (which must exist in the calling
/// thread's namespace: the kernel attaches that device's RX queue). Returns
/// the program's verdict and the frame as the program left it.
pub fn test_run_xdp(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
) -> io::Result<(u32, Vec<u8>)> {
    let ctx = sys::XdpMd {
        data: 0,
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    // Room for a program that grows the frame (tandem's do not).
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = sys::ProgTestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: std::mem::size_of::<sys::XdpMd>() as u32,
        ctx_in: &ctx as *const sys::XdpMd as u64,
        ..Default::default()
    };
    // `frame`, `out` and `ctx` outlive the call; the kernel writes at most
    // data_size_out bytes to `out`.
    sys::bpf(sys::BPF_PROG_TEST_RUN, &mut attr)?;
    out.truncate((attr.data_size_out as usize).min(out.len()));
    Ok((attr.retval, out))
}

/// A program load that the kernel refused, with the verifier's log.
#[derive(Debug)]
pub struct LoadError {
    pub source: io::Error,
    pub log: String,
}

/// Licence string handed to the kernel with the program. None of the
/// helpers used (map lookup, ktime_get_coarse_ns, redirect, redirect_map) is
/// GPL-only, and "Dual MIT/GPL" counts as GPL-compatible anyway.
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
        assert_eq!(bytes(&redirect_program(7).unwrap()), want);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // The offload program ends with the same path for everything it
        // does not forward itself (with the context in r6, not r1).
        let off = offload_program(7, 8).unwrap();
        let tail = bytes(&off[off.len() - 6..]);
        assert_eq!(tail[..8], [0x61, 0x62, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(tail[8..], want[8..]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn pass_program_bytes() {
        assert_eq!(
            bytes(&pass_program().unwrap()),
            [0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn offload_program_assembles() {
        let p = offload_program(3, 4).unwrap();
        // Every jump lands inside the program.
        for (i, insn) in p.iter().enumerate() {
            let class = insn.code & 0x07;
            let op = insn.code & 0xf0;
            if class == 0x05 && op != 0x80 && op != 0x90 {
                let t = i as i64 + 1 + insn.off as i64;
                assert!((0..p.len() as i64).contains(&t), "jump at {i} to {t}");
            }
        }
        // The module doc says "about 125".
        assert!((110..140).contains(&p.len()), "{} instructions", p.len());
    }

    #[test]
    fn names_are_truncated_and_terminated() {
        let n = name16("a_very_long_program_name");
        assert_eq!(n[15], 0);
        assert_eq!(name_of(&n), "a_very_long_pro");
        assert_eq!(name_of(&name16("tandem_xsk")), "tandem_xsk");
    }
}
