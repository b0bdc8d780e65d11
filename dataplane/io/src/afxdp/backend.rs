//! [`AfXdpBackend`]: XSK sockets on (interface, queue) pairs sharing one
//! UMEM and one frame pool, behind [`crate::Backend`].
//!
//! Frame ownership (every UMEM slot is in exactly one place):
//! pool → fill ring (kernel) → RX ring → caller → TX ring (kernel) →
//! completion ring → pool; or caller → `free` → pool. The kernel owns a
//! slot from fill-ring submit until we consume its RX descriptor, and from
//! TX submit until we consume its completion; we touch frame bytes only in
//! between.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::ring::ConsRing;
use super::socket::{UmemReg, Xsk};
use super::sys::{self, XdpDesc};
use super::{FlowTable, XdpAttachment, ZeroCopy};
use crate::offload::FlowOffload;
use crate::pool::FramePool;
use crate::region::Region;
use crate::{Backend, BackendStats, Frame, FrameConfig, OpenError, PortId};

/// Copy-mode TX sends at most this many frames per `sendto` kick by default
/// (`TX_BATCH_SIZE` in net/xdp/xsk.c; PLATFORM.md measured it). Since Linux
/// 6.17 the socket's `XDP_MAX_TX_SKB_BUDGET` raises it; `bind_all` sets the
/// ring size, so one kick sends a whole TX batch. This value bounds `kick`'s
/// loop either way.
const COPY_FRAMES_PER_KICK: u32 = 32;

/// Headroom the kernel leaves before received data in each UMEM slot
/// (`XDP_PACKET_HEADROOM`; tandem registers the UMEM with no extra headroom).
const XDP_PACKET_HEADROOM: u32 = 256;
/// Ethernet header with one VLAN tag: what a frame adds to the MTU.
const ETH_VLAN_HLEN: u32 = 18;

/// How often `stats()` re-reads the kernel's XDP_STATISTICS (a getsockopt
/// per socket): often enough for an operator, rare enough to cost nothing
/// when the worker reads stats every batch.
const XDP_STATS_EVERY: Duration = Duration::from_millis(100);

struct Port {
    xsk: Xsk,
    ifname: String,
    queue: u32,
}

/// One XSK per (attachment, queue) pair, all sharing one UMEM and one frame
/// pool, so a frame received on one port is transmitted on another by
/// moving its descriptor.
pub struct AfXdpBackend {
    // Field order is drop order: sockets (and their ring mappings) close
    // before the UMEM region they registered is unmapped.
    ports: Vec<Port>,
    pollfds: Vec<libc::pollfd>,
    pool: FramePool,
    stats: BackendStats,
    /// Kernel-side drops (XDP_STATISTICS), refreshed by `stats()`.
    xdp_dropped: Cell<u64>,
    xdp_read_at: Cell<Option<Instant>>,
    /// Frames each port's fill ring is kept topped up to.
    fill_target: u32,
    /// Port that gets first pick of the pool at the next refill.
    fill_first: usize,
    /// Per-port scratch for `refill` (allocated once at open).
    deficits: Vec<u32>,
    grants: Vec<u32>,
    zero_copy: bool,
    frame_size: u32,
    umem_len: u64,
    /// The kernel fast path's table, when the attachments offload.
    flows: Option<FlowTable>,
    umem: Region,
}

fn config(msg: String) -> OpenError {
    OpenError::Config(msg)
}

/// Reject configurations the kernel would refuse, with a message that says
/// which value and why.
fn validate(ports: &[(&XdpAttachment, u32)], frames: &FrameConfig) -> Result<u64, OpenError> {
    if ports.is_empty() {
        return Err(config(
            "AF_XDP backend needs at least one (interface, queue) port".into(),
        ));
    }
    let fs = frames.frame_size;
    // Aligned-chunk UMEM: a power of two between 2048 and the page size.
    if !fs.is_power_of_two() || !(2048..=4096).contains(&fs) {
        return Err(config(format!(
            "frame_size {fs} must be 2048 or 4096 for AF_XDP (aligned chunks: a power of two from 2048 to the page size)"
        )));
    }
    if !frames.ring_size.is_power_of_two() {
        return Err(config(format!(
            "ring_size {} must be a power of two",
            frames.ring_size
        )));
    }
    if (frames.frame_count as usize) < 2 * ports.len() {
        return Err(config(format!(
            "frame_count {} is too small for {} ports (need at least 2 per port)",
            frames.frame_count,
            ports.len()
        )));
    }
    for (i, (a, q)) in ports.iter().enumerate() {
        if *q >= a.map_entries() {
            return Err(config(format!(
                "interface {}: queue {q} out of range (the device has at most {} RX queues)",
                a.ifname(),
                a.map_entries()
            )));
        }
        // The kernel puts received data XDP_PACKET_HEADROOM (256) bytes into
        // the slot; a frame longer than the rest is dropped (rx_dropped).
        if let Some(mtu) = a.mtu() {
            let fits = fs.saturating_sub(XDP_PACKET_HEADROOM + ETH_VLAN_HLEN);
            if mtu > fits {
                tracing::warn!(
                    ifname = a.ifname(),
                    mtu,
                    frame_size = fs,
                    "MTU does not fit an AF_XDP frame ({fits} bytes after headroom); larger frames will be dropped"
                );
            }
        }
        if ports[..i]
            .iter()
            .any(|(b, r)| b.ifindex() == a.ifindex() && r == q)
        {
            return Err(config(format!(
                "interface {} queue {q} listed twice",
                a.ifname()
            )));
        }
    }
    Ok(frames.frame_count as u64 * fs as u64)
}

/// Explain a bind error: which queue, and what the errno usually means.
fn bind_error(queue: u32, zero_copy: bool, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) if zero_copy => "the driver has no zero-copy AF_XDP support",
        Some(libc::EINVAL) => "no such queue on the device (see `ethtool -l`), or bad bind flags",
        Some(libc::EBUSY) => "another AF_XDP socket is bound to this queue",
        _ => "",
    };
    let msg = if hint.is_empty() {
        format!("queue {queue}: {e}")
    } else {
        format!("queue {queue}: {e} ({hint})")
    };
    io::Error::new(e.kind(), msg)
}

/// Move every completed TX address back to the pool.
fn drain_completions(comp: &mut ConsRing<u64>, pool: &mut FramePool, umem_len: u64) {
    let n = comp.peek(comp.size());
    for i in 0..n {
        let addr = comp.read(i);
        if addr < umem_len {
            pool.free(addr);
        }
    }
    comp.release(n);
}

/// Split `avail` pool frames over per-port fill `deficits` into `grants`.
/// Enough frames: every deficit is granted. Too few: each port first gets
/// up to an equal share, then what is left goes to ports still short in
/// order from `first` (the caller rotates it, so no port is always last).
/// Returns whether some deficit stays unmet.
fn share_fill(deficits: &[u32], avail: u32, first: usize, grants: &mut [u32]) -> bool {
    let n = deficits.len();
    let total: u64 = deficits.iter().map(|&d| d as u64).sum();
    if total <= avail as u64 {
        grants.copy_from_slice(deficits);
        return false;
    }
    let share = avail / n as u32;
    let mut left = avail;
    for (g, d) in grants.iter_mut().zip(deficits) {
        *g = (*d).min(share);
        left -= *g;
    }
    for k in 0..n {
        let i = (first + k) % n;
        let extra = (deficits[i] - grants[i]).min(left);
        grants[i] += extra;
        left -= extra;
    }
    true
}

impl AfXdpBackend {
    /// Open one XSK per `(attachment, queue)` pair, all sharing one UMEM
    /// (the first socket registers it; the others bind with
    /// `XDP_SHARED_UMEM`, each with its own fill and completion ring as the
    /// kernel requires since 5.10), and register each socket in its
    /// attachment's XSKMAP. Port `i` of the backend is `ports[i]`.
    ///
    /// Sockets are created in the calling thread's network namespace, which
    /// must be the attachments' namespace.
    pub fn open(
        ports: &[(&XdpAttachment, u32)],
        frames: &FrameConfig,
        zero_copy: ZeroCopy,
    ) -> Result<AfXdpBackend, OpenError> {
        let umem_len = validate(ports, frames)?;
        let umem = Region::new(umem_len as usize, frames.huge_pages)?;
        // Children forked by this process (any `Command::spawn`) must not
        // inherit the UMEM: its pages are pinned for the kernel, so fork
        // would copy them all eagerly for the child. Best effort (a huge-page
        // region may refuse a length that is not a huge-page multiple).
        // SAFETY: the range is exactly the region we own; MADV_DONTFORK only
        // changes what a future fork copies, not this process's memory.
        if unsafe { libc::madvise(umem.as_ptr().cast(), umem.len(), libc::MADV_DONTFORK) } != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "madvise(MADV_DONTFORK) on UMEM");
        }
        match zero_copy {
            ZeroCopy::Off => Self::open_in(ports, frames, umem, false).map_err(|(e, _)| e),
            ZeroCopy::Required => Self::open_in(ports, frames, umem, true).map_err(|(e, _)| e),
            // The same region serves the second attempt: freeing it and
            // allocating anew could miss huge pages the kernel has not
            // unpinned yet (UMEM release is deferred). Reusing it is safe:
            // the failed attempt never put an address on a fill or TX ring,
            // so the kernel has nowhere in the region to write or read, even
            // if one of its sockets outlives close() for a moment.
            ZeroCopy::Auto => match Self::open_in(ports, frames, umem, true) {
                Ok(b) => Ok(b),
                Err((e, umem)) => {
                    tracing::info!(error = %e, "AF_XDP zero-copy bind failed; using copy mode");
                    Self::open_in(ports, frames, umem, false).map_err(|(e, _)| e)
                }
            },
        }
    }

    /// One attempt; on failure hands the region back for the next one.
    fn open_in(
        ports: &[(&XdpAttachment, u32)],
        frames: &FrameConfig,
        umem: Region,
        zero_copy: bool,
    ) -> Result<AfXdpBackend, (OpenError, Region)> {
        match Self::bind_all(ports, frames, &umem, zero_copy) {
            Ok(socks) => Ok(Self::assemble(socks, frames, umem)),
            Err(e) => Err((e, umem)),
        }
    }

    /// Create, bind and register one socket per port (the first registers
    /// the UMEM). Dropping the result closes them all.
    fn bind_all(
        ports: &[(&XdpAttachment, u32)],
        frames: &FrameConfig,
        umem: &Region,
        zero_copy: bool,
    ) -> Result<Vec<Port>, OpenError> {
        let umem_len = frames.frame_count as u64 * frames.frame_size as u64;
        let mut socks: Vec<Port> = Vec::with_capacity(ports.len());
        for (i, (att, queue)) in ports.iter().enumerate() {
            let ifname = att.ifname();
            let reg = UmemReg {
                region: umem,
                len: umem_len,
                frame_size: frames.frame_size,
            };
            let xsk = Xsk::create(frames.ring_size, (i == 0).then_some(&reg))
                .map_err(|e| OpenError::os(ifname, e.what, e.source))?;
            let (flags, shared) = match socks.first() {
                None => (
                    sys::XDP_USE_NEED_WAKEUP
                        | if zero_copy {
                            sys::XDP_ZEROCOPY
                        } else {
                            sys::XDP_COPY
                        },
                    None,
                ),
                // The kernel refuses mode flags here: shared sockets inherit
                // copy/zero-copy and need_wakeup from the UMEM's owner.
                Some(first) => (sys::XDP_SHARED_UMEM, Some(first.xsk.fd())),
            };
            xsk.bind(att.ifindex(), *queue, flags, shared)
                .map_err(|e| {
                    OpenError::os(
                        ifname,
                        if zero_copy {
                            "bind AF_XDP socket (zero-copy)"
                        } else {
                            "bind AF_XDP socket (copy mode)"
                        },
                        bind_error(*queue, zero_copy, e),
                    )
                })?;
            if !zero_copy {
                // One kick per TX batch instead of one per 32 frames; best
                // effort (older kernels keep 32, and `kick` loops anyway).
                if let Err(e) = xsk.set_tx_budget(frames.ring_size) {
                    tracing::debug!(ifname, error = %e, "XDP_MAX_TX_SKB_BUDGET not set");
                }
            }
            socks.push(Port {
                xsk,
                ifname: ifname.to_string(),
                queue: *queue,
            });
        }
        // Only now, with every socket bound, steer traffic to them. Closing a
        // socket removes it from the map again (kernel side).
        for ((att, queue), p) in ports.iter().zip(&socks) {
            super::bpf::map_update(att.xsk_map(), *queue, p.xsk.fd() as u32)
                .map_err(|e| OpenError::os(att.ifname(), "register socket in XSKMAP", e))?;
        }
        Ok(socks)
    }

    fn assemble(socks: Vec<Port>, frames: &FrameConfig, umem: Region) -> AfXdpBackend {
        let umem_len = frames.frame_count as u64 * frames.frame_size as u64;
        let n = socks.len();
        let zero_copy = socks[0].xsk.is_zero_copy();
        let pollfds = socks
            .iter()
            .map(|p| libc::pollfd {
                fd: p.xsk.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // Half the frames wait in fill rings, split evenly; the other half
        // covers RX batches held by the caller, TX in flight and `alloc`.
        let fill_target = (frames.frame_count / (2 * n as u32))
            .min(frames.ring_size)
            .max(1);
        let mut b = AfXdpBackend {
            ports: socks,
            pollfds,
            pool: FramePool::new(frames.frame_count, frames.frame_size),
            stats: BackendStats::default(),
            xdp_dropped: Cell::new(0),
            xdp_read_at: Cell::new(None),
            fill_target,
            fill_first: 0,
            deficits: vec![0; n],
            grants: vec![0; n],
            zero_copy,
            frame_size: frames.frame_size,
            umem_len,
            flows: None,
            umem,
        };
        b.refill();
        let names: Vec<String> = b
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.ifname, p.queue))
            .collect();
        tracing::info!(
            ports = %names.join(","),
            mode = b.name(),
            frames = frames.frame_count,
            frame_size = frames.frame_size,
            ring_size = frames.ring_size,
            huge_pages = b.umem.is_huge(),
            "AF_XDP backend open"
        );
        b
    }

    /// Whether the sockets run zero-copy (as the kernel reports it).
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Hand the backend the flow-offload table its attachments' program
    /// forwards from (a [`FlowTable`] of the map given to
    /// `XdpAttachment::attach_with_offload`, with this backend's port
    /// order); [`Backend::flow_offload`] returns it from then on.
    pub fn set_flow_offload(&mut self, table: FlowTable) {
        self.flows = Some(table);
    }

    /// Free frames in the pool (for leak checks in tests).
    pub fn free_frames(&self) -> usize {
        self.pool.available()
    }

    /// Top every fill ring up to `fill_target` from the pool, splitting a
    /// short pool fairly (see [`share_fill`]).
    fn refill(&mut self) {
        let n = self.ports.len();
        for (d, p) in self.deficits.iter_mut().zip(&mut self.ports) {
            *d = self.fill_target.saturating_sub(p.xsk.fill.outstanding());
        }
        let short = share_fill(
            &self.deficits,
            self.pool.available() as u32,
            self.fill_first,
            &mut self.grants,
        );
        for (g, p) in self.grants.iter().zip(&mut self.ports) {
            if *g == 0 {
                continue;
            }
            let ring = &mut p.xsk.fill;
            // The grant is within the deficit, so within the ring's room.
            let got = ring.reserve(*g);
            let mut put = 0;
            while put < got {
                match self.pool.alloc_addr() {
                    Some(addr) => ring.write(put, addr),
                    None => break,
                }
                put += 1;
            }
            ring.submit(put);
        }
        if short {
            // Once per flush, not per frame: the pool could not cover the
            // fill rings (the caller holds many frames, or the pool is small).
            self.stats.alloc_failed += 1;
        }
        self.fill_first = (self.fill_first + 1) % n;
    }

    /// Push a port's pending TX to the kernel.
    fn kick(&mut self, port: usize) {
        let p = &mut self.ports[port];
        let mut pending = p.xsk.tx.outstanding();
        if pending == 0 {
            return;
        }
        if self.zero_copy {
            // The driver drains the TX ring itself; it needs a syscall only
            // when it said so.
            if p.xsk.tx.needs_wakeup() {
                let _ = p.xsk.kick_tx();
                self.stats.syscalls += 1;
            }
            return;
        }
        // Copy mode transmits inside the syscall, up to the socket's TX
        // budget per call (32 on kernels before 6.17): kick until the ring
        // is empty, the kernel makes no progress (device
        // queue busy, completion ring full), or the bound is hit.
        let max_kicks = p.xsk.tx.size() / COPY_FRAMES_PER_KICK + 2;
        for _ in 0..max_kicks {
            let r = p.xsk.kick_tx();
            self.stats.syscalls += 1;
            // Each sent frame needs a completion slot: make room.
            drain_completions(&mut p.xsk.comp, &mut self.pool, self.umem_len);
            let now = p.xsk.tx.outstanding();
            if now == 0 || now >= pending {
                break;
            }
            pending = now;
            if let Err(e) = r {
                // EAGAIN means "batch limit reached, call again"; ENOBUFS a
                // full completion ring (drained above). Anything else
                // (EBUSY, ENETDOWN, ENXIO): retry at the next flush.
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) {
                    break;
                }
            }
        }
    }

    /// Slot end of `addr`, or None when `addr` is outside the UMEM.
    fn slot_end(&self, addr: u64) -> Option<u64> {
        (addr < self.umem_len)
            .then(|| addr - addr % self.frame_size as u64 + self.frame_size as u64)
    }

    fn refresh_xdp_stats(&self) {
        let fresh = self
            .xdp_read_at
            .get()
            .is_some_and(|t| t.elapsed() < XDP_STATS_EVERY);
        if fresh {
            return;
        }
        let mut dropped = 0;
        for p in &self.ports {
            if let Ok(s) = p.xsk.statistics() {
                dropped += s.rx_dropped + s.rx_ring_full + s.rx_invalid_descs;
            }
        }
        self.xdp_dropped.set(dropped);
        self.xdp_read_at.set(Some(Instant::now()));
    }
}

impl Backend for AfXdpBackend {
    fn name(&self) -> &'static str {
        if self.zero_copy {
            "afxdp-zerocopy"
        } else {
            "afxdp-copy"
        }
    }

    fn port_count(&self) -> usize {
        self.ports.len()
    }

    fn frame_size(&self) -> usize {
        self.frame_size as usize
    }

    fn rx_burst(&mut self, port: PortId, out: &mut [Frame]) -> usize {
        let Some(p) = self.ports.get_mut(port) else {
            return 0;
        };
        let want = out.len().min(u32::MAX as usize) as u32;
        let n = p.xsk.rx.peek(want);
        for (i, slot) in out.iter_mut().enumerate().take(n as usize) {
            let d = p.xsk.rx.read(i as u32);
            *slot = Frame {
                addr: d.addr,
                len: d.len,
            };
        }
        p.xsk.rx.release(n);
        self.stats.rx += n as u64;
        n as usize
    }

    fn tx_burst(&mut self, port: PortId, frames: &[Frame]) -> usize {
        let umem_len = self.umem_len;
        let fs = self.frame_size as u64;
        let Some(p) = self.ports.get_mut(port) else {
            return 0;
        };
        let want = frames.len().min(u32::MAX as usize) as u32;
        let n = p.xsk.tx.reserve(want);
        if n < want {
            // Short of TX slots: reclaim what the kernel finished sending so
            // the pool has frames for the next refill.
            drain_completions(&mut p.xsk.comp, &mut self.pool, umem_len);
            self.stats.tx_ring_full += 1;
        }
        let mut written = 0;
        for f in &frames[..n as usize] {
            if f.addr >= umem_len {
                // Not a frame of this backend: nothing to send or reclaim.
                continue;
            }
            if f.len == 0 {
                // The kernel rejects empty descriptors without completing
                // them, which would leak the slot: keep it ourselves.
                self.pool.free(f.addr);
                continue;
            }
            let room = fs - f.addr % fs;
            p.xsk.tx.write(
                written,
                XdpDesc {
                    addr: f.addr,
                    len: (f.len as u64).min(room) as u32,
                    options: 0,
                },
            );
            written += 1;
        }
        p.xsk.tx.submit(written);
        self.stats.tx += n as u64;
        n as usize
    }

    fn frame(&self, f: Frame) -> &[u8] {
        let Some(end) = self.slot_end(f.addr) else {
            return &[];
        };
        let len = (f.len as u64).min(end - f.addr) as usize;
        // SAFETY: [addr, addr + len) lies inside one slot of the UMEM region
        // (checked above), which lives as long as `self`. By the Backend
        // contract the caller owns this frame, so the kernel is not writing
        // it (it writes only slots on a fill ring or in its RX path).
        unsafe { std::slice::from_raw_parts(self.umem.as_ptr().add(f.addr as usize), len) }
    }

    fn frame_mut(&mut self, f: Frame) -> &mut [u8] {
        let Some(end) = self.slot_end(f.addr) else {
            return &mut [];
        };
        let len = (end - f.addr) as usize;
        // SAFETY: [addr, slot end) lies inside the UMEM region (checked
        // above); `&mut self` excludes other Rust references into it, and by
        // the Backend contract the caller owns the frame, so the kernel
        // neither reads nor writes this slot until it is transmitted.
        unsafe { std::slice::from_raw_parts_mut(self.umem.as_ptr().add(f.addr as usize), len) }
    }

    fn alloc(&mut self) -> Option<Frame> {
        let f = self.pool.alloc();
        if f.is_none() {
            self.stats.alloc_failed += 1;
        }
        f
    }

    fn free(&mut self, f: Frame) {
        if f.addr < self.umem_len {
            self.pool.free(f.addr);
        }
    }

    fn flush(&mut self) {
        for p in &mut self.ports {
            drain_completions(&mut p.xsk.comp, &mut self.pool, self.umem_len);
        }
        self.refill();
        for i in 0..self.ports.len() {
            self.kick(i);
            let p = &self.ports[i];
            if p.xsk.fill.needs_wakeup() {
                // Zero-copy drivers that ran dry of fill entries sleep until
                // told; copy mode never sets this (PLATFORM.md).
                p.xsk.wake_rx();
                self.stats.syscalls += 1;
            }
        }
    }

    fn wait(&mut self, timeout: Duration) {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        // SAFETY: `pollfds` is a valid array of that many pollfd entries,
        // each naming a socket this backend owns (plus, from
        // `wait_or_wake`, the caller's wake fd: poll only reads fd numbers).
        let _ = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                ms,
            )
        };
        self.stats.syscalls += 1;
    }

    fn wait_or_wake(&mut self, timeout: Duration, wake: RawFd) {
        // The wake fd joins the poll set for this one call (the first push
        // grows the vector once; later ones reuse its capacity).
        self.pollfds.push(libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        });
        self.wait(timeout);
        self.pollfds.pop();
    }

    fn stats(&self) -> BackendStats {
        self.refresh_xdp_stats();
        BackendStats {
            rx_dropped: self.xdp_dropped.get(),
            ..self.stats
        }
    }

    fn flow_offload(&mut self) -> Option<&mut dyn FlowOffload> {
        self.flows.as_mut().map(|t| t as &mut dyn FlowOffload)
    }
}

impl Drop for AfXdpBackend {
    fn drop(&mut self) {
        // Fields drop after this: sockets close (leaving the XSKMAPs), ring
        // mappings go, then the UMEM.
        tracing::debug!(ports = self.ports.len(), "AF_XDP backend closed");
    }
}

#[cfg(test)]
mod tests {
    use super::share_fill;

    fn run(deficits: &[u32], avail: u32, first: usize) -> (Vec<u32>, bool) {
        let mut g = vec![0; deficits.len()];
        let short = share_fill(deficits, avail, first, &mut g);
        (g, short)
    }

    #[test]
    fn enough_frames_grant_every_deficit() {
        assert_eq!(run(&[10, 0, 5], 15, 0), (vec![10, 0, 5], false));
        assert_eq!(run(&[10, 0, 5], 100, 2), (vec![10, 0, 5], false));
    }

    #[test]
    fn a_short_pool_is_split_fairly_then_round_robin() {
        // 10 frames, 3 hungry ports: 3 each, the spare one to `first`.
        assert_eq!(run(&[100, 100, 100], 10, 1), (vec![3, 4, 3], true));
        // A port that needs little leaves its share to the others.
        assert_eq!(run(&[1, 100, 100], 10, 0), (vec![1, 6, 3], true));
        assert_eq!(run(&[1, 100, 100], 10, 2), (vec![1, 3, 6], true));
        // Fewer frames than ports: the rotation decides who gets them.
        assert_eq!(run(&[5, 5], 1, 1), (vec![0, 1], true));
        assert_eq!(run(&[5, 5], 0, 0), (vec![0, 0], true));
    }

    #[test]
    fn grants_never_exceed_deficits_or_the_pool() {
        for avail in 0..40u32 {
            for first in 0..3 {
                let d = [7u32, 0, 20];
                let (g, short) = run(&d, avail, first);
                assert!(g.iter().zip(&d).all(|(g, d)| g <= d));
                let sum: u32 = g.iter().sum();
                assert_eq!(sum, avail.min(27));
                assert_eq!(short, avail < 27);
            }
        }
    }
}
