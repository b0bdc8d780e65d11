//! tandem-io: packet I/O behind one small trait, [`Backend`].
//!
//! A backend serves one worker: it owns that worker's queue on every port
//! (interface) and one frame memory shared by all of them, so forwarding a
//! frame from port A to port B is a descriptor move, never a copy in tandem.
//! Frames are lent to the caller as [`Frame`] handles (an offset into the
//! frame memory plus a length); the caller hands each one back exactly once,
//! either by transmitting it ([`Backend::tx_burst`]) or by freeing it
//! ([`Backend::free`]).
//!
//! Backends:
//! * [`mem::MemBackend`]: in-memory, for unit tests, simulation and benches.
//! * `afxdp::AfXdpBackend`: AF_XDP sockets with tandem's own XDP program.
//! * `uring::UringBackend`: AF_PACKET raw frames driven through io_uring.
//!
//! This is the only crate of tandem with `unsafe`; it lives in the
//! kernel-facing modules, each block with a `// SAFETY:` comment.

#[cfg(target_os = "linux")]
pub mod afxdp;
#[cfg(target_os = "linux")]
pub mod l2sock;
pub mod mem;
pub mod offload;
pub mod pool;
pub mod region;
#[cfg(target_os = "linux")]
pub mod sched;
#[cfg(target_os = "linux")]
pub mod uring;
#[cfg(target_os = "linux")]
pub mod wake;

use std::os::fd::RawFd;
use std::time::Duration;

/// Index of a port (interface) within one backend, in the order the ports
/// were given when the backend was opened.
pub type PortId = usize;

/// A frame lent to the caller: `addr` is where the frame's first byte sits
/// in the backend's frame memory (the UMEM address for AF_XDP), which may be
/// inside its slot (AF_XDP receive descriptors carry headroom); `len` is the
/// number of valid bytes from `addr`. `frame_mut(f)` starts at the same byte
/// as `frame(f)` and runs to the end of the slot.
///
/// `Frame` is `Copy` so that batches are plain arrays; the ownership rule is
/// by contract: after `tx_burst` accepted it or `free` took it, the caller
/// must not use that copy again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frame {
    pub addr: u64,
    pub len: u32,
}

/// Counters every backend keeps; read by the worker once per batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Frames received and handed to the caller.
    pub rx: u64,
    /// Frames accepted for transmit.
    pub tx: u64,
    /// Transmit attempts refused because the TX ring was full.
    pub tx_ring_full: u64,
    /// Frames dropped by the kernel or the backend before we saw them
    /// (e.g. XDP `rx_dropped`, packet socket drops), where the backend can know.
    pub rx_dropped: u64,
    /// Allocation attempts that found no free frame.
    pub alloc_failed: u64,
    /// Wake-up syscalls issued (TX kicks, fill-ring wakeups, polls).
    pub syscalls: u64,
}

/// What every packet I/O backend offers the run loop.
///
/// The intended use per batch: `rx_burst` on each port, process frames in
/// place through `frame_mut`, `tx_burst` per destination port, `free` what
/// was dropped, then `flush` once. Nothing here allocates after
/// construction, and at most one syscall per port is made per `flush`.
pub trait Backend: Send {
    /// Short name for logs: `afxdp-copy`, `afxdp-zerocopy`, `io_uring`, `mem`.
    fn name(&self) -> &'static str;

    /// Number of ports this backend serves.
    fn port_count(&self) -> usize;

    /// Capacity in bytes of each frame slot.
    fn frame_size(&self) -> usize;

    /// Receive up to `out.len()` frames from `port` into `out[..n]`, returning `n`.
    fn rx_burst(&mut self, port: PortId, out: &mut [Frame]) -> usize;

    /// Queue `frames` for transmit on `port`, in order. Returns how many of
    /// the leading frames were accepted; the rest stay owned by the caller
    /// (free them or retry after `flush`).
    fn tx_burst(&mut self, port: PortId, frames: &[Frame]) -> usize;

    /// The valid bytes of a frame.
    fn frame(&self, f: Frame) -> &[u8];

    /// The whole slot of a frame (`frame_size()` bytes), so a stage can
    /// rewrite it in place or grow it; set `len` on the handle accordingly.
    fn frame_mut(&mut self, f: Frame) -> &mut [u8];

    /// Take a free frame for a locally generated packet (ARP, ICMP, hello).
    /// Its `len` is 0.
    fn alloc(&mut self) -> Option<Frame>;

    /// Give back a frame the caller will not transmit.
    fn free(&mut self, f: Frame);

    /// Push queued transmits to the kernel (one wake-up per port at most),
    /// reclaim completed transmits, and refill receive rings.
    fn flush(&mut self);

    /// Block until some port may have frames to receive, or `timeout`
    /// passes. Used by the idle strategy after a short spin; may return
    /// early (spuriously).
    fn wait(&mut self, timeout: Duration);

    /// Like [`Backend::wait`], but also returns when `wake` (an eventfd,
    /// see [`wake::WakeFd`]) becomes readable, so another thread can wake a
    /// blocked worker at once. The default ignores `wake` (fine for
    /// backends whose `wait` does not block, like the in-memory one).
    fn wait_or_wake(&mut self, timeout: Duration, wake: RawFd) {
        let _ = wake;
        self.wait(timeout);
    }

    /// Counters since open.
    fn stats(&self) -> BackendStats;

    /// The flow-offload table this backend's kernel side forwards from,
    /// when one was set up ([`offload`]).
    fn flow_offload(&mut self) -> Option<&mut dyn offload::FlowOffload> {
        None
    }
}

/// Frame memory and ring sizing shared by the kernel backends (from the
/// hardware profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameConfig {
    /// Frame slots in the backend's frame memory (all ports together).
    pub frame_count: u32,
    /// Bytes per slot: 2048 or 4096 (AF_XDP requires a power of two in copy mode
    /// unless unaligned chunks are used).
    pub frame_size: u32,
    /// Entries per ring (RX, TX, fill, completion; io_uring SQ): a power of two.
    pub ring_size: u32,
    /// Put frame memory on huge pages when some are reserved.
    pub huge_pages: bool,
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig {
            frame_count: 4096,
            frame_size: 2048,
            ring_size: 1024,
            huge_pages: true,
        }
    }
}

/// Errors when opening a backend; messages name the interface and the
/// operation that failed so an operator can act on them.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("interface {ifname}: {what}: {source}")]
    Os {
        ifname: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {ifname}: {why}")]
    Unsupported { ifname: String, why: String },
    #[error("frame memory: {0}")]
    Memory(String),
    #[error("invalid backend configuration: {0}")]
    Config(String),
}

impl OpenError {
    pub fn os(ifname: &str, what: &'static str, source: std::io::Error) -> Self {
        OpenError::Os {
            ifname: ifname.to_string(),
            what,
            source,
        }
    }
}
