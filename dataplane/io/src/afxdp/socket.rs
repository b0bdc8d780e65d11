//! One XSK socket: creation, UMEM registration (first socket only), ring
//! sizing and mmap, bind (with the EBUSY retry), and the wake-up syscalls.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use super::ring::{ConsRing, ProdRing, RingMem};
use super::sys::{self, XdpDesc, XdpRingOffset};
use crate::region::Region;

/// One mmapped ring; unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by exactly one Xsk and moves with it; the
// rings that point into it are owned by the same Xsk.
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; the rings pointing
        // here are dropped with the same Xsk and never used after this.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Map ring `pgoff` of `fd` with `entries` entries of `T` and build its
/// memory view from the kernel's `off`sets.
fn map_ring<T>(
    fd: RawFd,
    off: &XdpRingOffset,
    entries: u32,
    pgoff: libc::off_t,
) -> io::Result<(Mapping, RingMem<T>)> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("ring offsets: {what}"));
    let desc_bytes = entries as u64 * std::mem::size_of::<T>() as u64;
    let len = off
        .desc
        .checked_add(desc_bytes)
        .ok_or_else(|| bad("overflow"))?;
    // Everything the ring view will dereference must lie inside the mapping
    // and be aligned: the offsets come from the kernel, check them anyway.
    for (name, o) in [
        ("producer", off.producer),
        ("consumer", off.consumer),
        ("flags", off.flags),
    ] {
        if !o.is_multiple_of(4) || o + 4 > len {
            return Err(bad(name));
        }
    }
    if !off.desc.is_multiple_of(std::mem::align_of::<T>() as u64) {
        return Err(bad("desc alignment"));
    }
    let len = len as usize;
    // SAFETY: a shared mapping of the socket's ring at the kernel-defined
    // page offset; no address hint; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            pgoff,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| bad("null mapping"))?;
    let at = |o: u64| {
        // SAFETY: o < len (checked above), so the result is inside the mapping.
        unsafe { base.add(o as usize) }
    };
    // SAFETY: the mapping is len bytes, stays mapped as long as the Mapping
    // returned next to this view (the Xsk keeps both and drops the rings
    // first), the index words and descriptors are in bounds and aligned
    // (checked above), entries is the power of two the kernel accepted, and
    // the kernel is the ring's only other party, following the AF_XDP
    // producer/consumer protocol.
    let mem = unsafe {
        RingMem::new(
            at(off.producer).cast(),
            at(off.consumer).cast(),
            at(off.flags).cast(),
            at(off.desc).cast(),
            entries,
        )
    };
    Ok((Mapping { ptr: base, len }, mem))
}

/// An XSK socket with its four rings.
pub struct Xsk {
    // Field order is drop order: rings (plain pointers), then the mappings
    // they point into, then the socket.
    pub fill: ProdRing<u64>,
    pub comp: ConsRing<u64>,
    pub rx: ConsRing<XdpDesc>,
    pub tx: ProdRing<XdpDesc>,
    _maps: [Mapping; 4],
    fd: OwnedFd,
}

/// The UMEM registration the first socket of a backend makes.
pub struct UmemReg<'a> {
    pub region: &'a Region,
    pub len: u64,
    pub frame_size: u32,
}

/// What failed while setting a socket up (for the error message).
pub struct SetupError {
    pub what: &'static str,
    pub source: io::Error,
}

fn step<T>(what: &'static str, r: io::Result<T>) -> Result<T, SetupError> {
    r.map_err(|source| SetupError { what, source })
}

impl Xsk {
    /// Socket, optional UMEM registration, ring sizes and mappings. Not
    /// bound yet (rings must be mapped before bind).
    pub fn create(ring_size: u32, umem: Option<&UmemReg<'_>>) -> Result<Xsk, SetupError> {
        let fd = step(
            "socket(AF_XDP)",
            sys::socket(sys::AF_XDP, libc::SOCK_RAW, 0),
        )?;
        let raw = fd.as_raw_fd();
        if let Some(u) = umem {
            let reg = sys::XdpUmemReg {
                addr: u.region.as_ptr() as u64,
                len: u.len,
                chunk_size: u.frame_size,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            // The kernel pins the pages for the socket's lifetime; the
            // Region outlives every socket (the backend drops it last).
            step(
                "XDP_UMEM_REG",
                sys::setsockopt(raw, sys::SOL_XDP, sys::XDP_UMEM_REG, &reg),
            )?;
        }
        // Since 5.10 every socket on its own (device, queue) needs its own
        // fill and completion rings, shared UMEM or not.
        for (what, opt) in [
            ("XDP_UMEM_FILL_RING", sys::XDP_UMEM_FILL_RING),
            ("XDP_UMEM_COMPLETION_RING", sys::XDP_UMEM_COMPLETION_RING),
            ("XDP_RX_RING", sys::XDP_RX_RING),
            ("XDP_TX_RING", sys::XDP_TX_RING),
        ] {
            step(what, sys::setsockopt(raw, sys::SOL_XDP, opt, &ring_size))?;
        }
        let (off, len) = step(
            "XDP_MMAP_OFFSETS",
            sys::getsockopt::<sys::XdpMmapOffsets>(raw, sys::SOL_XDP, sys::XDP_MMAP_OFFSETS),
        )?;
        if len != std::mem::size_of::<sys::XdpMmapOffsets>() {
            return Err(SetupError {
                what: "XDP_MMAP_OFFSETS",
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "kernel reports ring offsets without flags (needs Linux 5.4 or later)",
                ),
            });
        }
        let (m_fill, fill) = step(
            "mmap fill ring",
            map_ring::<u64>(raw, &off.fr, ring_size, sys::XDP_UMEM_PGOFF_FILL_RING),
        )?;
        let (m_comp, comp) = step(
            "mmap completion ring",
            map_ring::<u64>(raw, &off.cr, ring_size, sys::XDP_UMEM_PGOFF_COMPLETION_RING),
        )?;
        let (m_rx, rx) = step(
            "mmap RX ring",
            map_ring::<XdpDesc>(raw, &off.rx, ring_size, sys::XDP_PGOFF_RX_RING),
        )?;
        let (m_tx, tx) = step(
            "mmap TX ring",
            map_ring::<XdpDesc>(raw, &off.tx, ring_size, sys::XDP_PGOFF_TX_RING),
        )?;
        Ok(Xsk {
            fill: ProdRing::new(fill),
            comp: ConsRing::new(comp),
            rx: ConsRing::new(rx),
            tx: ProdRing::new(tx),
            _maps: [m_fill, m_comp, m_rx, m_tx],
            fd,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Bind to (ifindex, queue). `shared_umem_fd` is the socket that
    /// registered the UMEM (then `flags` must be `XDP_SHARED_UMEM` alone: the
    /// kernel takes copy/zero-copy and need_wakeup from that socket).
    ///
    /// A queue whose previous socket just closed can answer EBUSY for a
    /// moment (PLATFORM.md): retry with a short bounded backoff (≤ ~0.5 s).
    pub fn bind(
        &self,
        ifindex: u32,
        queue: u32,
        flags: u16,
        shared_umem_fd: Option<RawFd>,
    ) -> io::Result<()> {
        let addr = sys::SockaddrXdp {
            family: sys::AF_XDP as u16,
            flags,
            ifindex,
            queue_id: queue,
            shared_umem_fd: shared_umem_fd.unwrap_or(0) as u32,
        };
        let mut delay = Duration::from_millis(1);
        let mut attempt = 0;
        loop {
            // SAFETY: `addr` is a valid sockaddr_xdp of the length passed.
            let rc = unsafe {
                libc::bind(
                    self.fd(),
                    (&addr as *const sys::SockaddrXdp).cast(),
                    std::mem::size_of::<sys::SockaddrXdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            attempt += 1;
            if e.raw_os_error() != Some(libc::EBUSY) || attempt >= 10 {
                return Err(e);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// Whether the bound socket runs zero-copy (`XDP_OPTIONS`).
    pub fn is_zero_copy(&self) -> bool {
        sys::getsockopt::<sys::XdpOptions>(self.fd(), sys::SOL_XDP, sys::XDP_OPTIONS)
            .map(|(o, _)| o.flags & sys::XDP_OPTIONS_ZEROCOPY != 0)
            .unwrap_or(false)
    }

    /// TX kick: `sendto(fd, NULL, 0, MSG_DONTWAIT)`. EAGAIN, ENOBUFS,
    /// EBUSY and ENETDOWN are normal answers and are returned as errors for
    /// the caller to interpret.
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length send with null buffer and address; the
        // kernel reads nothing from user memory.
        let rc = unsafe {
            libc::sendto(
                self.fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Fill-ring wakeup: `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`.
    pub fn wake_rx(&self) {
        // SAFETY: a zero-length receive into a null buffer; the kernel writes
        // nothing to user memory.
        let _ = unsafe {
            libc::recvfrom(
                self.fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Copy mode: let one TX kick send up to `frames` frames instead of the
    /// kernel's default 32 (`XDP_MAX_TX_SKB_BUDGET`, Linux ≥ 6.17; an older
    /// kernel answers ENOPROTOOPT and keeps 32).
    pub fn set_tx_budget(&self, frames: u32) -> io::Result<()> {
        sys::setsockopt(self.fd(), sys::SOL_XDP, sys::XDP_MAX_TX_SKB_BUDGET, &frames)
    }

    /// Kernel drop counters for this socket.
    pub fn statistics(&self) -> io::Result<sys::XdpStatistics> {
        sys::getsockopt::<sys::XdpStatistics>(self.fd(), sys::SOL_XDP, sys::XDP_STATISTICS)
            .map(|(s, _)| s)
    }
}
