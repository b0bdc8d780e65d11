//! Flow offload, the forwarder's side (`tandem_io::offload` has the table,
//! `tandem_state::offload` the shard's bookkeeping).
//!
//! When a packet of an established connection (TCP ESTABLISHED, UDP from
//! its second packet) has gone through the whole slow path — policy, NAT
//! rewrite, TTL, route, ARP — the forwarder knows exactly what the fast
//! path must do to the next packets of that direction: it compares the
//! header as received ([`Received`]) with the header as sent and queues an
//! install. [`Offload::sync`] (once per loop iteration, never per packet)
//! carries out the queued installs and the shard's removals, clears this
//! worker's entries when the unit's role, its MACs, a neighbour or the
//! routes change, and walks the table about once a second to feed each
//! entry's last activity back to the shard (its idle timeout and its
//! replication keepalives) and to remove entries whose connection is gone.
//!
//! Only frames the fast path itself would take are offloaded (the same
//! checks as the XDP program: IPv4 without options, not a fragment, TCP
//! without SYN/FIN/RST): otherwise a packet the program will always pass
//! up would reinstall its entry each time.

use tandem_io::offload::{csum_addend, FlowMatch, FlowOffload, FlowOwner, FlowRewrite, FlowSeen};
use tandem_io::PortId;
use tandem_state::{FlowKey, OffloadRef, Shard};

use crate::counters::Counters;
use crate::time::Timestamp;

/// Installs queued between two syncs at most; a packet finding the queue
/// full is simply not offloaded (a later one will be).
const INSTALLS_MAX: usize = 256;
/// Entries one scan call reads at most (one batch syscall)...
const SCAN_BATCH: usize = 256;
/// ...and one scan step at most: with steps every [`SCAN_GAP_NS`], a
/// worker reads at most 256 k entries a second, so a pass over a million
/// entries takes about 4 s rather than the nominal second.
const SCAN_STEP_MAX: usize = 10 * SCAN_BATCH;
/// Scan steps are this far apart at least...
const SCAN_GAP_NS: u64 = 10_000_000;
/// ...and a whole pass over the table takes about this long.
const SCAN_PERIOD_NS: u64 = 1_000_000_000;

const P_TCP: u8 = 6;
const P_UDP: u8 = 17;
const TCP_FIN_SYN_RST: u8 = 0x07;

/// The parts of a datagram's header the fast path rewrites, as received
/// (before the slow path's NAT and TTL), when the fast path would take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    src: [u8; 4],
    dst: [u8; 4],
    sport: [u8; 2],
    dport: [u8; 2],
    proto: u8,
    ttl: u8,
}

impl Received {
    /// `ip` is the datagram (from its IPv4 header). `None` when the XDP
    /// program would pass it to the worker anyway.
    #[inline]
    pub fn capture(ip: &[u8]) -> Option<Received> {
        if ip.len() < 20 || ip[0] != 0x45 {
            return None;
        }
        // More fragments, or a fragment offset: a fragment.
        if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
            return None;
        }
        let proto = ip[9];
        match proto {
            P_TCP if ip.len() >= 40 && ip[33] & TCP_FIN_SYN_RST == 0 => {}
            P_UDP if ip.len() >= 28 => {}
            _ => return None,
        }
        let b = |o: usize| [ip[o], ip[o + 1]];
        Some(Received {
            src: [ip[12], ip[13], ip[14], ip[15]],
            dst: [ip[16], ip[17], ip[18], ip[19]],
            sport: b(20),
            dport: b(22),
            proto,
            ttl: ip[8],
        })
    }

    /// The header words the IPv4 checksum covers and the rewrite changes:
    /// addresses, and TTL/protocol.
    fn ip_words(&self) -> [u16; 5] {
        let [a, b, c, d] = self.src;
        let [e, f, g, h] = self.dst;
        [
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
            u16::from_be_bytes([e, f]),
            u16::from_be_bytes([g, h]),
            u16::from_be_bytes([self.ttl, self.proto]),
        ]
    }

    /// The words the TCP/UDP checksum covers and the rewrite changes:
    /// the pseudo-header's addresses, and the ports.
    fn l4_words(&self) -> [u16; 6] {
        let w = self.ip_words();
        [
            w[0],
            w[1],
            w[2],
            w[3],
            u16::from_be_bytes(self.sport),
            u16::from_be_bytes(self.dport),
        ]
    }
}

/// One queued install.
#[derive(Clone, Copy, Debug)]
struct Install {
    flow: FlowMatch,
    to: FlowRewrite,
    conn: OffloadRef,
}

/// Counters of the fast-path table, merged into the worker's [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadCounters {
    pub installed: u64,
    pub removed: u64,
    /// Installs the table refused (full, or an error).
    pub refused: u64,
    /// Times this worker's whole share of the table was cleared.
    pub cleared: u64,
    /// Entries found whose connection had gone (removed).
    pub stale: u64,
    /// Table operations that failed otherwise (logged once per sync).
    pub errors: u64,
}

/// The forwarder's flow-offload state. See the module doc.
pub struct Offload {
    shard: u16,
    installs: Vec<Install>,
    /// Entries a scan step found stale, removed after it.
    stale: Vec<FlowMatch>,
    /// When a failure was last logged.
    logged: u64,
    /// This worker's entries must all go (role, ownership or route change).
    clear: bool,
    /// [`crate::arp::ArpTable::changes`] when the table was last cleared.
    arp_changes: u64,
    last_scan: u64,
    counters: OffloadCounters,
}

impl Offload {
    pub fn new(shard: u16) -> Offload {
        Offload {
            shard,
            installs: Vec::with_capacity(INSTALLS_MAX),
            stale: Vec::with_capacity(SCAN_STEP_MAX),
            logged: 0,
            clear: false,
            arp_changes: 0,
            last_scan: 0,
            counters: OffloadCounters::default(),
        }
    }

    /// Clear this worker's entries at the next sync.
    pub fn request_clear(&mut self) {
        self.clear = true;
    }

    /// Queues the install of one direction, from the datagram as received
    /// (`rx`) and as it leaves (`ip`, rewritten, TTL decremented) in a frame
    /// with `dst_mac`/`src_mac` on `egress`. Returns whether it was queued
    /// (the caller then marks the connection's direction as offloaded).
    #[allow(clippy::too_many_arguments)]
    pub fn queue(
        &mut self,
        conn: OffloadRef,
        rx_port: PortId,
        rx: &Received,
        rx_mac: [u8; 6],
        ip: &[u8],
        egress: PortId,
        mtu: u16,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
    ) -> bool {
        if self.installs.len() >= INSTALLS_MAX || self.clear {
            return false;
        }
        let Some(tx) = Received::capture(ip) else {
            return false;
        };
        self.installs.push(Install {
            flow: FlowMatch {
                port: rx_port,
                src: rx.src,
                dst: rx.dst,
                sport: rx.sport,
                dport: rx.dport,
                proto: rx.proto,
            },
            to: FlowRewrite {
                src: tx.src,
                dst: tx.dst,
                sport: tx.sport,
                dport: tx.dport,
                ip_csum_add: csum_addend(&rx.ip_words(), &tx.ip_words()),
                l4_csum_add: csum_addend(&rx.l4_words(), &tx.l4_words()),
                port: egress,
                mtu,
                rx_mac,
                dst_mac,
                src_mac,
            },
            conn,
        });
        true
    }

    /// Carries out what was queued, clears when asked (or when a neighbour
    /// went or changed MAC since the last clear), and takes one scan step
    /// when due. Returns whether it did anything.
    pub fn sync(
        &mut self,
        now: Timestamp,
        arp_changes: u64,
        shard: &mut Shard,
        table: &mut dyn FlowOffload,
    ) -> bool {
        let mut busy = false;
        let now = now.as_nanos();
        if arp_changes != self.arp_changes {
            self.arp_changes = arp_changes;
            self.clear = true;
        }
        if shard.offload_flush_needed() {
            self.clear = true;
        }
        if self.clear {
            self.clear = false;
            self.installs.clear();
            shard.offload_forget_all();
            match table.clear(self.shard) {
                Ok(n) => self.counters.removed += n as u64,
                Err(e) => self.error(now, "clear", &e),
            }
            self.counters.cleared += 1;
            busy = true;
        }
        let mine = self.shard;
        let owner = |r: &OffloadRef| FlowOwner {
            shard: mine,
            conn: r.conn,
            gen: r.gen,
        };
        for i in 0..self.installs.len() {
            let Install { flow, to, conn } = self.installs[i];
            match table.install(&flow, &to, owner(&conn)) {
                Ok(()) => self.counters.installed += 1,
                Err(e) => {
                    self.counters.refused += 1;
                    shard.offload_refused(conn);
                    // A full table is counted; anything else is also logged.
                    if e.kind() != std::io::ErrorKind::ArgumentListTooLong {
                        self.error(now, "install", &e);
                    }
                }
            }
            busy = true;
        }
        self.installs.clear();
        let counters = &mut self.counters;
        let mut failed = None;
        shard.offload_removals(|r| {
            busy = true;
            let mut seen: Option<u64> = None;
            for &(port, k) in r.flows.iter().flatten() {
                match table.remove(&flow_match(port, &k)) {
                    Ok(Some(s)) => {
                        counters.removed += 1;
                        let at = now.saturating_sub(s.idle_ns);
                        seen = Some(seen.map_or(at, |x| x.max(at)));
                    }
                    Ok(None) => {}
                    Err(e) => failed = Some(e),
                }
            }
            seen
        });
        if let Some(e) = failed {
            self.error(now, "remove", &e);
        }
        if now.saturating_sub(self.last_scan) >= SCAN_GAP_NS {
            busy |= self.scan(now, shard, table);
        }
        busy
    }

    /// Entries in the whole table, estimated from this worker's: the
    /// workers' shards split the connections evenly (`steer`).
    fn table_estimate(&self, shards: u16) -> usize {
        let mine = self
            .counters
            .installed
            .saturating_sub(self.counters.removed);
        usize::try_from(mine.saturating_mul(u64::from(shards.max(1)))).unwrap_or(usize::MAX)
    }

    /// One step of the walk over the table: about a whole pass per
    /// [`SCAN_PERIOD_NS`], at most [`SCAN_STEP_MAX`] entries at a time.
    fn scan(&mut self, now: u64, shard: &mut Shard, table: &mut dyn FlowOffload) -> bool {
        let dt = now.saturating_sub(self.last_scan);
        self.last_scan = now;
        let entries = self
            .table_estimate(shard.shard_count())
            .min(table.capacity());
        let due = (entries as u128 * u128::from(dt)) / u128::from(SCAN_PERIOD_NS);
        let mut budget = usize::try_from(due)
            .unwrap_or(usize::MAX)
            .clamp(1, SCAN_STEP_MAX);
        let mine = self.shard;
        let stale = &mut self.stale;
        let mut visit = |s: &FlowSeen| {
            if s.owner.shard != mine {
                return;
            }
            let at = now.saturating_sub(s.idle_ns);
            // Which direction it is: the originating one arrives as the
            // connection's original tuple; the shard checks both.
            let alive = shard.offload_seen(s.owner.conn, s.owner.gen, true, at)
                || shard.offload_seen(s.owner.conn, s.owner.gen, false, at);
            if !alive && stale.len() < stale.capacity() {
                stale.push(s.flow);
            }
        };
        let mut failed = None;
        while budget > 0 {
            let n = budget.min(SCAN_BATCH);
            budget -= n;
            match table.scan(n, &mut visit) {
                // A pass ended: the next starts at the next step.
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            self.error(now, "scan", &e);
        }
        let had = !self.stale.is_empty();
        for i in 0..self.stale.len() {
            let flow = self.stale[i];
            if let Ok(Some(_)) = table.remove(&flow) {
                self.counters.stale += 1;
                self.counters.removed += 1;
            }
        }
        self.stale.clear();
        had
    }

    fn error(&mut self, now: u64, what: &str, e: &std::io::Error) {
        self.counters.errors += 1;
        // Logged at most once a second per worker: a persistent failure
        // shows, a storm does not flood the log.
        if self.logged == 0 || now.saturating_sub(self.logged) >= SCAN_PERIOD_NS {
            self.logged = now.max(1);
            tracing::warn!(shard = self.shard, error = %e, errors = self.counters.errors, "flow offload: {what} failed");
        }
    }

    /// Adds the table's counters to `c`.
    pub fn merge_into(&self, c: &mut Counters) {
        let o = &self.counters;
        c.offload_installed += o.installed;
        c.offload_removed += o.removed;
        c.offload_refused += o.refused;
        c.offload_cleared += o.cleared;
        c.offload_stale += o.stale;
        c.offload_errors += o.errors;
    }
}

/// The table's key for a connection's direction as the shard keeps it.
fn flow_match(port: u16, k: &FlowKey) -> FlowMatch {
    FlowMatch {
        port: PortId::from(port),
        src: k.src.to_be_bytes(),
        dst: k.dst.to_be_bytes(),
        sport: k.sport.to_be_bytes(),
        dport: k.dport.to_be_bytes(),
        proto: k.proto,
    }
}
