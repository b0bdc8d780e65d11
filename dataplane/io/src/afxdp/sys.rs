//! Kernel ABI used by the AF_XDP backend: `if_xdp.h`, the parts of `bpf.h`
//! and `ethtool.h` tandem needs, as `#[repr(C)]` structs, plus thin wrappers
//! around the raw syscalls. Layouts were checked against the 6.x UAPI
//! headers (offsets printed by a C program), not guessed.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

// ---- if_xdp.h -------------------------------------------------------------

pub const AF_XDP: libc::c_int = 44;
pub const SOL_XDP: libc::c_int = 283;

pub const XDP_SHARED_UMEM: u16 = 1 << 0;
pub const XDP_COPY: u16 = 1 << 1;
pub const XDP_ZEROCOPY: u16 = 1 << 2;
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;

pub const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

pub const XDP_MMAP_OFFSETS: libc::c_int = 1;
pub const XDP_RX_RING: libc::c_int = 2;
pub const XDP_TX_RING: libc::c_int = 3;
pub const XDP_UMEM_REG: libc::c_int = 4;
pub const XDP_UMEM_FILL_RING: libc::c_int = 5;
pub const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
pub const XDP_STATISTICS: libc::c_int = 7;
pub const XDP_OPTIONS: libc::c_int = 8;
/// Frames one copy-mode TX `sendto` may send (Linux ≥ 6.17; default 32).
pub const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

pub const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

pub const XDP_PGOFF_RX_RING: libc::off_t = 0;
pub const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
pub const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
pub const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockaddrXdp {
    pub family: u16,
    pub flags: u16,
    pub ifindex: u32,
    pub queue_id: u32,
    pub shared_umem_fd: u32,
}

/// One ring's offsets within its mmap (the v2 layout, with `flags`, which
/// every kernel since 5.4 reports).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpRingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpMmapOffsets {
    pub rx: XdpRingOffset,
    pub tx: XdpRingOffset,
    pub fr: XdpRingOffset,
    pub cr: XdpRingOffset,
}

/// `struct xdp_umem_reg` including `tx_metadata_len` (6.8+), which sits in
/// what older kernels treat as padding; it must be zero for them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpUmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    pub tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// RX/TX ring descriptor. Fill and completion rings carry bare `u64` addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

// ---- bpf.h ----------------------------------------------------------------

pub const BPF_MAP_CREATE: libc::c_int = 0;
pub const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
pub const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
pub const BPF_PROG_LOAD: libc::c_int = 5;
pub const BPF_PROG_TEST_RUN: libc::c_int = 10;
pub const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
pub const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
pub const BPF_LINK_CREATE: libc::c_int = 28;
pub const BPF_LINK_DETACH: libc::c_int = 34;
/// Hash maps support it since 5.14.
pub const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_int = 21;
pub const BPF_MAP_LOOKUP_BATCH: libc::c_int = 24;

pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
pub const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type` value of `BPF_XDP`.
pub const BPF_XDP: u32 = 37;
/// Helper ids (`enum bpf_func_id`).
pub const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
pub const BPF_FUNC_KTIME_GET_COARSE_NS: i32 = 160;
pub const BPF_FUNC_REDIRECT: i32 = 23;
pub const BPF_FUNC_REDIRECT_MAP: i32 = 51;
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `BPF_MAP_UPDATE_ELEM` flag: create or replace.
pub const BPF_ANY: u64 = 0;

/// `XDP_FLAGS_*` (if_link.h): the attach mode of a program on a device.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
pub const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

/// XDP actions.
pub const XDP_PASS: i32 = 2;
pub const XDP_REDIRECT: i32 = 4;

/// `union bpf_attr` for `BPF_MAP_CREATE` (up to `map_name`).
#[repr(C)]
#[derive(Default)]
pub struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_PROG_LOAD` (up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_MAP_*_ELEM`.
#[repr(C)]
#[derive(Default)]
pub struct MapElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

/// `union bpf_attr` for `BPF_MAP_*_BATCH`.
#[repr(C)]
#[derive(Default)]
pub struct MapBatchAttr {
    /// Where to resume (NULL: from the start); for hash maps a bucket index.
    pub in_batch: u64,
    /// Output: where the next call resumes.
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    /// Input: room in `keys`/`values` (entries); output: entries filled.
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN` (through `batch_size`).
#[repr(C)]
#[derive(Default)]
pub struct ProgTestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    /// Input: room in `data_out`; output: bytes written.
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    /// Explicit tail padding (the union is 8-byte aligned); must be zero.
    pub _pad: u32,
}

/// `struct xdp_md`: the XDP program's context, here as `ctx_in` of a test run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpMd {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` (the common head).
#[repr(C)]
#[derive(Default)]
pub struct LinkCreateAttr {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
}

/// `union bpf_attr` for `BPF_LINK_DETACH`.
#[repr(C)]
#[derive(Default)]
pub struct LinkDetachAttr {
    pub link_fd: u32,
}

/// `union bpf_attr` for `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
pub struct GetFdByIdAttr {
    pub id: u32,
    pub next_id: u32,
    pub open_flags: u32,
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
pub struct InfoByFdAttr {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// The head of `struct bpf_prog_info`, through `name` (offset 64).
#[repr(C)]
#[derive(Default)]
pub struct BpfProgInfo {
    pub prog_type: u32,
    pub id: u32,
    pub tag: [u8; 8],
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    pub jited_prog_insns: u64,
    pub xlated_prog_insns: u64,
    pub load_time: u64,
    pub created_by_uid: u32,
    pub nr_map_ids: u32,
    pub map_ids: u64,
    pub name: [u8; 16],
}

/// `struct xdp_options` (getsockopt `XDP_OPTIONS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpOptions {
    pub flags: u32,
}

/// Marker for the plain-old-data structs above that cross the syscall
/// boundary: every bit pattern is a valid value and they hold no padding
/// the kernel would read as garbage.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs of integers (or integer
/// arrays) without implicit padding.
pub unsafe trait Pod {}
macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: a #[repr(C)] struct of integers whose size equals the sum of
        // its fields (checked by `abi_sizes_match_the_uapi_headers`).
        unsafe impl Pod for $t {}
    )*};
}
pod!(
    MapCreateAttr,
    ProgLoadAttr,
    MapElemAttr,
    MapBatchAttr,
    ProgTestRunAttr,
    XdpMd,
    LinkCreateAttr,
    LinkDetachAttr,
    GetFdByIdAttr,
    InfoByFdAttr,
    BpfProgInfo,
    SockaddrXdp,
    XdpMmapOffsets,
    XdpUmemReg,
    XdpStatistics,
    XdpOptions,
    u32,
    i32
);

/// `bpf(cmd, attr, sizeof attr)`; returns the non-negative result.
///
/// Pointers stored inside `attr` (instructions, key, value, log buffer,
/// info) must be valid for the kernel to read/write during the call; each
/// caller keeps them alive on its stack for the call's duration.
pub fn bpf<A: Pod>(cmd: libc::c_int, attr: &mut A) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, exclusively borrowed #[repr(C)] attribute of
    // exactly size_of::<A>() bytes; the kernel copies it in (and for
    // GET_INFO writes only through the pointers the caller set up).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A as *mut libc::c_void,
            size_of::<A>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `bpf()` for commands that return a new file descriptor.
pub fn bpf_fd<A: Pod>(cmd: libc::c_int, attr: &mut A) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: on success these commands return a fresh fd that nothing else
    // owns; wrapping it makes this value its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_coarse_ns` reads at tick resolution.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call; CLOCK_MONOTONIC
    // always exists on Linux, so this cannot fail (it would leave ts zero).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

// ---- sockets --------------------------------------------------------------

/// `socket(domain, ty | SOCK_CLOEXEC, proto)` as an owned fd.
pub fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked below.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd returned by socket() with no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with a plain-data value.
pub fn setsockopt<T: Pod + Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` points to size_of::<T>() initialised bytes that live for
    // the call; the kernel only reads them.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt` into a zeroed plain-data value; returns it and the length
/// the kernel filled in.
pub fn getsockopt<T: Pod + Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut val = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is writable for size_of::<T>() bytes and `len` tells the
    // kernel so; it writes at most that many bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, val.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: T: Pod, so the zeroed bytes are a valid value, and the kernel
    // overwrote at most a prefix of them with more integers.
    Ok((unsafe { val.assume_init() }, len as usize))
}

/// Interface index of `ifname` in the calling thread's network namespace.
pub fn if_nametoindex(ifname: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

// ---- ethtool --------------------------------------------------------------

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ifreq` with the `ifr_data` member of the union (40 bytes on LP64).
#[repr(C)]
struct IfReqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// One `SIOCETHTOOL` request on `ifname`, with `cmd` already set in the
/// command struct `data` points to, from a socket in the calling thread's
/// namespace. Unlike `/sys/class/net/IF/...`, this sees the namespace a
/// thread entered with `setns` (sysfs shows the one it was mounted in).
fn ethtool<T>(ifname: &str, data: &mut T) -> io::Result<()> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut req = IfReqData {
        name: [0; libc::IFNAMSIZ],
        data: (data as *mut T).cast(),
        _pad: [0; 16],
    };
    for (d, s) in req.name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq whose data pointer refers to `data`, a
    // command struct of the size the kernel expects for its `cmd`, borrowed
    // for the call; the kernel writes only within it.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            SIOCETHTOOL as _,
            &mut req as *mut IfReqData,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// RX queues the driver currently uses (`ethtool -l`: rx + combined).
pub fn rx_channels(ifname: &str) -> io::Result<u32> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool(ifname, &mut ch)?;
    Ok(ch.rx_count.saturating_add(ch.combined_count))
}

const ETHTOOL_GDRVINFO: u32 = 0x03;

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The device's driver name (`ethtool -i`: `veth`, `ixgbe`, ...).
pub fn driver_name(ifname: &str) -> io::Result<String> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    ethtool(ifname, &mut info)?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes_match_the_uapi_headers() {
        // Sizes match the sum of their fields: nothing uninitialised goes to
        // the kernel, and offsets match the UAPI headers.
        assert_eq!(size_of::<MapCreateAttr>(), 7 * 4 + 16);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(size_of::<MapElemAttr>(), 32);
        assert_eq!(size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(size_of::<MapBatchAttr>(), 56);
        assert_eq!(size_of::<ProgTestRunAttr>(), 80);
        assert_eq!(std::mem::offset_of!(ProgTestRunAttr, ctx_in), 48);
        assert_eq!(std::mem::offset_of!(ProgTestRunAttr, batch_size), 72);
        assert_eq!(size_of::<XdpMd>(), 24);
        assert_eq!(size_of::<LinkCreateAttr>(), 16);
        assert_eq!(size_of::<GetFdByIdAttr>(), 12);
        assert_eq!(size_of::<InfoByFdAttr>(), 16);
        assert_eq!(size_of::<BpfProgInfo>(), 80);
        assert_eq!(std::mem::offset_of!(BpfProgInfo, name), 64);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<SockaddrXdp>(), 16);
        assert_eq!(size_of::<XdpMmapOffsets>(), 128);
        assert_eq!(size_of::<XdpUmemReg>(), 32);
        assert_eq!(size_of::<XdpStatistics>(), 48);
        assert_eq!(size_of::<XdpDesc>(), 16);
        assert_eq!(size_of::<IfReqData>(), 40);
    }
}
