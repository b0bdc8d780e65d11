//! The flow-offload table in the kernel: a BPF hash map ([`FlowMap`]) that
//! tandem's XDP program reads (`bpf::offload_program`), and [`FlowTable`],
//! the worker's handle on it behind [`FlowOffload`].
//!
//! The map's key and value are [`FlowKey`] and [`FlowValue`]; the program
//! reads them at fixed offsets (`offset_of!`), so these structs are the one
//! definition of the layout. The program writes `last_seen_ns` and
//! `packets` of an entry it forwards; everything else is written only here.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::{bpf, sys};
use crate::offload::{FlowMatch, FlowOffload, FlowOwner, FlowRewrite, FlowSeen};
use crate::{OpenError, PortId};

/// Name of the map as `bpftool map` shows it.
const MAP_NAME: &str = "tandem_flows";

/// Entries one `scan` step reads at most (the size of its preallocated
/// buffers); larger budgets are clamped to this.
const SCAN_MAX: usize = 256;

/// The map key: one direction of a flow as it arrives (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    /// `ctx->ingress_ifindex`, host order.
    pub ifindex: u32,
    /// Addresses and ports in wire order.
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    /// Zero: the program zeroes it too, and hash keys compare all bytes.
    pub pad: [u8; 3],
}

/// The map value (72 bytes; the u64s 8-aligned for the atomic add).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// New addresses and ports, wire order.
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// The checksum addends as wire-order (big-endian) bytes, so that the
    /// program's 16-bit loads see them in the same byte order as the
    /// checksum fields they are added to.
    pub ip_csum_add: [u8; 2],
    pub l4_csum_add: [u8; 2],
    /// Egress device for `bpf_redirect`, host order.
    pub out_ifindex: u32,
    /// Largest IPv4 total length forwarded, host order.
    pub mtu: u16,
    /// Owner: the installing shard (host order).
    pub shard: u16,
    /// The frame's destination MAC must be this one.
    pub rx_mac: [u8; 6],
    /// New destination and source MACs (contiguous: frame bytes 0..12).
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub _pad0: [u8; 2],
    /// Owner: connection slot and its generation.
    pub conn: u32,
    pub gen: u32,
    pub _pad1: u32,
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC_COARSE: the same clock
    /// as CLOCK_MONOTONIC, up to a tick behind) of the last forwarded frame,
    /// or CLOCK_MONOTONIC of the install.
    pub last_seen_ns: u64,
    /// Frames forwarded (atomic add by the program).
    pub packets: u64,
}

// SAFETY: #[repr(C)] structs of integers and integer arrays whose sizes
// equal the sums of their fields (asserted in the tests below), so every
// bit pattern is valid and nothing uninitialised reaches the kernel.
unsafe impl sys::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl sys::Pod for FlowValue {}

/// The kernel's flow table: a preallocated BPF hash map shared by every
/// attachment that offloads and every worker's [`FlowTable`]. Cloning
/// shares the map; it lives until the last clone and the last program
/// using it are gone.
#[derive(Clone, Debug)]
pub struct FlowMap {
    fd: Arc<OwnedFd>,
    capacity: u32,
}

impl FlowMap {
    /// Create the map for up to `capacity` entries. The memory for all of
    /// them is allocated now (a preallocated hash map), so installs never
    /// allocate in the kernel and a full map fails cleanly.
    pub fn create(capacity: u32) -> Result<FlowMap, OpenError> {
        if capacity == 0 {
            return Err(OpenError::Config(
                "flow offload table capacity must be at least 1".into(),
            ));
        }
        let fd = bpf::create_hash_map(
            size_of::<FlowKey>() as u32,
            size_of::<FlowValue>() as u32,
            capacity,
            MAP_NAME,
        )
        .map_err(|e| OpenError::Os {
            // OpenError names an interface; the map belongs to none.
            ifname: MAP_NAME.to_string(),
            what: "create the flow-offload BPF hash map",
            source: e,
        })?;
        Ok(FlowMap {
            fd: Arc::new(fd),
            capacity,
        })
    }

    /// The most entries the map holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// A worker's handle on the map. Port `i` of the table is the device
    /// with ifindex `port_ifindex[i]` (the backend's port order), which is
    /// how `FlowMatch::port` and `FlowRewrite::port` become the ifindexes
    /// the program sees. Allocates the table's scan buffers.
    pub fn table(&self, port_ifindex: Vec<u32>) -> FlowTable {
        FlowTable {
            map: self.clone(),
            ports: port_ifindex,
            scan: Walk::new(),
            clear: Walk::new(),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Preallocated buffers and cursor of one incremental walk over the map.
struct Walk {
    keys: Box<[FlowKey]>,
    values: Box<[FlowValue]>,
    /// Where the next batch starts (`None`: at the beginning).
    cursor: Option<u64>,
    next: u64,
    /// Entries read but not yet visited: `keys[pos..len]`.
    pos: usize,
    len: usize,
    /// The last batch read reached the end of the map.
    end: bool,
}

impl Walk {
    fn new() -> Walk {
        Walk {
            keys: vec![FlowKey::default(); SCAN_MAX].into_boxed_slice(),
            values: vec![FlowValue::default(); SCAN_MAX].into_boxed_slice(),
            cursor: None,
            next: 0,
            pos: 0,
            len: 0,
            end: false,
        }
    }

    fn restart(&mut self) {
        self.cursor = None;
        self.pos = 0;
        self.len = 0;
        self.end = false;
    }

    /// Read the next batch of at most `want` entries (whole hash buckets;
    /// more than `want`, up to the buffer size, when the next bucket alone
    /// is larger). Requires the buffer to be consumed.
    fn fetch(&mut self, map: BorrowedFd<'_>, want: usize) -> io::Result<()> {
        let want = want.clamp(1, SCAN_MAX);
        let mut read = |n: usize| {
            bpf::map_lookup_batch(
                map,
                self.cursor.as_ref(),
                &mut self.next,
                &mut self.keys[..n],
                &mut self.values[..n],
            )
        };
        let batch = match read(want) {
            // The next bucket holds more than `want` entries: take it whole
            // and leave the rest buffered for the next steps.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && want < SCAN_MAX => read(SCAN_MAX)?,
            r => r?,
        };
        self.pos = 0;
        self.len = batch.count;
        self.end = batch.end;
        self.cursor = Some(self.next);
        Ok(())
    }
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("map", &self.map)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

/// A worker's handle on a [`FlowMap`], implementing [`FlowOffload`].
///
/// `scan` and `clear` keep their cursors and buffers (up to
/// [`FlowTable::SCAN_MAX`] entries each) here, so after construction no
/// operation allocates: each is `bpf()` calls on preallocated memory. (The
/// one exception is the `InvalidInput` error for a port outside the
/// table's port list, which carries a message.) An entry `scan` has
/// buffered but not visited yet is dropped from the buffer when `remove` or
/// `clear` takes it out of the map, so a pass never reports an entry after
/// its removal through this table.
pub struct FlowTable {
    map: FlowMap,
    ports: Vec<u32>,
    scan: Walk,
    clear: Walk,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Ifindex 0 names no device: a buffered entry marked with it is skipped.
const DEAD: u32 = 0;

impl FlowTable {
    /// The most entries one `scan` call reads: larger budgets are clamped.
    pub const SCAN_MAX: usize = SCAN_MAX;

    fn ifindex(&self, port: PortId) -> Option<u32> {
        self.ports.get(port).copied()
    }

    fn key(&self, flow: &FlowMatch) -> Option<FlowKey> {
        Some(FlowKey {
            ifindex: self.ifindex(flow.port)?,
            src: flow.src,
            dst: flow.dst,
            sport: flow.sport,
            dport: flow.dport,
            proto: flow.proto,
            pad: [0; 3],
        })
    }

    /// The entry as the table reports it, `None` for another device's.
    fn seen(&self, k: &FlowKey, v: &FlowValue, now: u64) -> Option<FlowSeen> {
        if k.ifindex == DEAD {
            return None;
        }
        let port = self.ports.iter().position(|&i| i == k.ifindex)?;
        Some(FlowSeen {
            flow: FlowMatch {
                port,
                src: k.src,
                dst: k.dst,
                sport: k.sport,
                dport: k.dport,
                proto: k.proto,
            },
            owner: FlowOwner {
                shard: v.shard,
                conn: v.conn,
                gen: v.gen,
            },
            idle_ns: now.saturating_sub(v.last_seen_ns),
            packets: v.packets,
        })
    }

    /// Mark buffered, unvisited scan entries matching `f` as gone.
    fn forget_pending(&mut self, mut f: impl FnMut(&FlowKey, &FlowValue) -> bool) {
        let w = &mut self.scan;
        for i in w.pos..w.len {
            if f(&w.keys[i], &w.values[i]) {
                w.keys[i].ifindex = DEAD;
            }
        }
    }

    /// The map this table works on.
    pub fn map(&self) -> &FlowMap {
        &self.map
    }
}

impl FlowOffload for FlowTable {
    /// `BPF_MAP_UPDATE_ELEM` (create or replace). A full map refuses a new
    /// flow with the kernel's `E2BIG`; a port outside the table's port list
    /// is `InvalidInput`.
    fn install(&mut self, flow: &FlowMatch, to: &FlowRewrite, owner: FlowOwner) -> io::Result<()> {
        let key = self
            .key(flow)
            .ok_or_else(|| invalid("flow offload: ingress port is not one of the table's"))?;
        let out_ifindex = self
            .ifindex(to.port)
            .ok_or_else(|| invalid("flow offload: egress port is not one of the table's"))?;
        let value = FlowValue {
            src: to.src,
            dst: to.dst,
            sport: to.sport,
            dport: to.dport,
            ip_csum_add: to.ip_csum_add.to_be_bytes(),
            l4_csum_add: to.l4_csum_add.to_be_bytes(),
            out_ifindex,
            mtu: to.mtu,
            shard: owner.shard,
            rx_mac: to.rx_mac,
            dst_mac: to.dst_mac,
            src_mac: to.src_mac,
            _pad0: [0; 2],
            conn: owner.conn,
            gen: owner.gen,
            _pad1: 0,
            // The program's coarse clock is this clock up to a tick behind.
            last_seen_ns: sys::monotonic_ns(),
            packets: 0,
        };
        bpf::map_update_elem(self.map.fd(), &key, &value, sys::BPF_ANY)
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`: the entry's last state and its
    /// removal in one step, so no forwarded frame is lost from the count.
    fn remove(&mut self, flow: &FlowMatch) -> io::Result<Option<FlowSeen>> {
        let Some(key) = self.key(flow) else {
            return Ok(None);
        };
        let mut value = FlowValue::default();
        match bpf::map_lookup_and_delete_elem(self.map.fd(), &key, &mut value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        }
        self.forget_pending(|k, _| *k == key);
        Ok(self.seen(&key, &value, sys::monotonic_ns()))
    }

    /// Batched reads (`BPF_MAP_LOOKUP_BATCH`) from a cursor kept here.
    /// `budget` (at most [`FlowTable::SCAN_MAX`]) bounds the entries consumed per call,
    /// including entries of devices not in this table's port list, which
    /// are skipped. A hash map hands out whole buckets, so entries read
    /// beyond the budget stay buffered for the next call.
    fn scan(&mut self, budget: usize, visit: &mut dyn FnMut(&FlowSeen)) -> io::Result<bool> {
        let budget = budget.min(SCAN_MAX);
        if budget == 0 {
            return Ok(false);
        }
        let now = sys::monotonic_ns();
        let mut used = 0;
        loop {
            while used < budget && self.scan.pos < self.scan.len {
                let i = self.scan.pos;
                self.scan.pos += 1;
                used += 1;
                if let Some(seen) = self.seen(&self.scan.keys[i], &self.scan.values[i], now) {
                    visit(&seen);
                }
            }
            if self.scan.pos < self.scan.len {
                return Ok(false); // budget spent, entries still buffered
            }
            if self.scan.end {
                self.scan.restart();
                return Ok(true);
            }
            if used == budget {
                return Ok(false);
            }
            if let Err(e) = self.scan.fetch(self.map.fd(), budget - used) {
                // Start the pass over rather than resume from a cursor the
                // kernel may have half-updated.
                self.scan.restart();
                return Err(e);
            }
            if self.scan.len == 0 && !self.scan.end {
                return Ok(false); // no progress (not expected): do not spin
            }
        }
    }

    /// A full walk with its own buffers (so a `scan` in progress keeps its
    /// place), deleting the entries whose owner is `shard`.
    fn clear(&mut self, shard: u16) -> io::Result<usize> {
        self.clear.restart();
        let mut removed = 0;
        loop {
            self.clear.fetch(self.map.fd(), SCAN_MAX)?;
            for i in 0..self.clear.len {
                if self.clear.values[i].shard != shard {
                    continue;
                }
                match bpf::map_delete_elem(self.map.fd(), &self.clear.keys[i]) {
                    Ok(()) => removed += 1,
                    // Removed meanwhile (another table on the same map).
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            if self.clear.end || self.clear.len == 0 {
                break;
            }
        }
        self.clear.restart();
        self.forget_pending(|_, v| v.shard == shard);
        Ok(removed)
    }

    fn capacity(&self) -> usize {
        self.map.capacity as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<FlowKey>(), 20);
        assert_eq!(offset_of!(FlowKey, src), 4);
        assert_eq!(offset_of!(FlowKey, proto), 16);
        assert_eq!(size_of::<FlowValue>(), 72);
        assert_eq!(offset_of!(FlowValue, ip_csum_add), 12);
        assert_eq!(offset_of!(FlowValue, out_ifindex), 16);
        assert_eq!(offset_of!(FlowValue, mtu), 20);
        assert_eq!(offset_of!(FlowValue, shard), 22);
        assert_eq!(offset_of!(FlowValue, rx_mac), 24);
        assert_eq!(offset_of!(FlowValue, dst_mac), 30);
        assert_eq!(offset_of!(FlowValue, src_mac), 36);
        assert_eq!(offset_of!(FlowValue, conn), 44);
        assert_eq!(offset_of!(FlowValue, gen), 48);
        assert_eq!(offset_of!(FlowValue, last_seen_ns), 56);
        assert_eq!(offset_of!(FlowValue, packets), 64);
    }
}
