//! Failover protocol frames between the workers and the management thread:
//! frames of tandem's EtherType received on an interface are *punted*
//! (copied into a fixed-size [`PuntedFrame`] on a bounded channel, the frame
//! freed at once), and frames the management thread builds (interface
//! hellos, LANTEST, ARP probes, broadcast pings) are *injected* (a
//! fixed-size [`InjectedFrame`] on a bounded channel to worker 0, which sends
//! it through its TX path at the top of its next loop iteration).
//!
//! DESIGN.md, "The system in one picture": "Protocol frames (hello,
//! LANTEST, ARP for tests, cluster messages) are handed from workers to it
//! over a channel and sent back out through a worker's TX path."
//!
//! Why fixed-size messages: a bounded crossbeam channel preallocates its
//! slots, so neither side allocates per frame, and a full channel is a
//! counted drop, never a wait on the hot path. Why a copy rather than lending
//! the frame: the frame belongs to the worker's backend (its UMEM), which the
//! management thread must not touch, and protocol frames are few (a hello
//! per interface per polltime), so a copy of at most [`PUNT_BYTES`] costs
//! nothing that matters. The channel's sender wakes a management thread
//! blocked in `recv` (one futex wake per punted frame while it sleeps); that
//! is the point of punting, and it never happens for transit traffic.

use crate::time::Timestamp;

/// tandem's failover EtherType: 0x88B5, IEEE 802 "Local Experimental
/// EtherType 1" (IEEE Std 802-2014, 9.2.2), free for private protocols.
/// Fixed for now; making it configurable is a later change (all units of a
/// pair must agree).
pub const ETHERTYPE_TANDEM: u16 = 0x88B5;

/// Bytes of a frame kept in a [`PuntedFrame`] and the largest frame
/// [`crate::Dataplane::inject`] takes: a full 1500-byte-MTU Ethernet frame
/// plus an 802.1Q tag, so a protocol frame on a standard interface is never
/// cut. Longer frames (jumbo MTU) are punted truncated, flagged by
/// [`PuntedFrame::truncated`].
pub const PUNT_BYTES: usize = 1518;

/// Punted frames waiting for the management thread, all workers together.
/// At 1 ms hellos on a handful of interfaces the management thread has tens
/// of milliseconds of slack before frames are dropped (`drop_punt_full`).
pub const PUNT_QUEUE: usize = 256;

/// Frames waiting for injection by worker 0. Also bounded: a full queue is
/// refused at once ([`InjectError::QueueFull`], counted `drop_inject_full`).
pub const INJECT_QUEUE: usize = 256;

/// A frame of tandem's EtherType as received, copied for the management
/// thread.
#[derive(Clone, Copy)]
pub struct PuntedFrame {
    /// Interface index (`PortId`, position in `DataplaneConfig::interfaces`).
    pub interface: usize,
    /// Worker that received it.
    pub worker: usize,
    /// When the worker's batch that received it started
    /// ([`crate::Dataplane::now`] is on the same clock).
    pub at: Timestamp,
    /// Bytes copied into `bytes` (≤ [`PUNT_BYTES`]).
    pub len: u16,
    /// Length of the frame as received (larger than `len` if truncated).
    pub wire_len: u32,
    pub bytes: [u8; PUNT_BYTES],
}

impl PuntedFrame {
    /// The frame (Ethernet header first), as far as it was kept.
    pub fn frame(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(PUNT_BYTES)]
    }

    /// Was the frame longer than [`PUNT_BYTES`]?
    pub fn truncated(&self) -> bool {
        self.wire_len as usize > usize::from(self.len)
    }

    /// Copies `frame` (received on `interface` by `worker` at `at`).
    pub(crate) fn fill(&mut self, interface: usize, worker: usize, at: Timestamp, frame: &[u8]) {
        let n = frame.len().min(PUNT_BYTES);
        self.interface = interface;
        self.worker = worker;
        self.at = at;
        self.len = n as u16;
        self.wire_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.bytes[..n].copy_from_slice(&frame[..n]);
    }

    pub(crate) const EMPTY: PuntedFrame = PuntedFrame {
        interface: 0,
        worker: 0,
        at: Timestamp::ZERO,
        len: 0,
        wire_len: 0,
        bytes: [0; PUNT_BYTES],
    };
}

impl std::fmt::Debug for PuntedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PuntedFrame")
            .field("interface", &self.interface)
            .field("worker", &self.worker)
            .field("at", &self.at)
            .field("len", &self.len)
            .field("wire_len", &self.wire_len)
            .finish_non_exhaustive()
    }
}

/// A frame built by the management thread, on its way to worker 0.
#[derive(Clone, Copy)]
pub struct InjectedFrame {
    pub(crate) interface: u16,
    pub(crate) len: u16,
    pub(crate) bytes: [u8; PUNT_BYTES],
}

impl InjectedFrame {
    /// Smallest frame accepted: an Ethernet header. Shorter-than-minimum
    /// frames are zero-padded to 60 bytes when sent.
    pub const MIN_LEN: usize = tandem_wire::ethernet::HEADER_LEN;

    /// Copies `bytes` (a whole Ethernet frame without FCS) for `interface`.
    /// Only the length is checked here; [`crate::Dataplane::inject`] also
    /// checks the interface and its MTU.
    pub fn new(interface: usize, bytes: &[u8]) -> Result<InjectedFrame, InjectError> {
        let port = u16::try_from(interface).map_err(|_| InjectError::NoSuchInterface {
            interface,
            configured: 0,
        })?;
        if bytes.len() < Self::MIN_LEN || bytes.len() > PUNT_BYTES {
            return Err(InjectError::Length {
                interface: format!("#{interface}"),
                len: bytes.len(),
                max: PUNT_BYTES,
            });
        }
        let mut f = InjectedFrame {
            interface: port,
            len: bytes.len() as u16,
            bytes: [0; PUNT_BYTES],
        };
        f.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(f)
    }

    pub fn interface(&self) -> usize {
        usize::from(self.interface)
    }

    pub fn frame(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(PUNT_BYTES)]
    }
}

impl std::fmt::Debug for InjectedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectedFrame")
            .field("interface", &self.interface)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Why a frame was not queued for injection (or an interface-test frame
/// not requested); nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("inject: interface {interface} does not exist ({configured} interfaces configured)")]
    NoSuchInterface { interface: usize, configured: usize },
    #[error(
        "inject on {interface}: a {len}-byte frame is outside {min}..={max} bytes (Ethernet header to MTU + header)",
        min = InjectedFrame::MIN_LEN
    )]
    Length {
        interface: String,
        len: usize,
        max: usize,
    },
    #[error(
        "inject on {interface}: worker 0's inject queue is full; frame dropped (drop_inject_full)"
    )]
    QueueFull { interface: String },
    #[error("interface test on {interface}: worker 0's command queue is full; not sent")]
    Busy { interface: String },
    #[error("inject on {interface}: the data plane is stopped")]
    Stopped { interface: String },
}
