//! `Forwarder`: the sans-IO routed data path of one worker — ARP responder
//! and resolver, IPv4 forwarding by longest-prefix match, TTL and checksum
//! handling, ICMP echo and ICMP errors — over frames lent by a backend.
//!
//! It never reads a clock (time is an argument), never allocates after
//! `new`, never locks or logs. Frames are rewritten in place; only ARP
//! requests and announcements take a fresh frame from `backend.alloc()`.
//!
//! Use: `process_batch` for each received burst, `handle_timeout` whenever
//! `poll_timeout()` has passed (or simply once per loop iteration: it returns
//! at once when nothing is due), then flush the [`TxBatches`].
//!
//! Decisions worth knowing (RFC 1812 is the reference):
//! * ARP is answered only for the address of the receiving interface
//!   (`arp_ignore=1` in Linux terms); frames for other MACs are dropped
//!   (XDP sees every frame on a veth or a bridge).
//! * ICMP echo replies and ICMP errors are sent back out of the receiving
//!   interface to the frame's source MAC, not routed: for a directly
//!   connected sender or a sender behind a router on that link this is the
//!   route back, and it needs no ARP lookup. The error's source address is
//!   the receiving interface's address (RFC 1812 4.3.2.4).
//! * ICMP errors are built in place in the offending frame (no allocation,
//!   no copy to another frame), quote as much of the datagram as fits in 576
//!   bytes (RFC 1812 4.3.2.3), are never sent about ICMP errors, non-initial
//!   fragments or non-unicast sources (4.3.2.7), and are rate limited to 1000
//!   per second with a burst of 50 (Linux's `icmp_msgs_per_sec`/`_burst`;
//!   4.3.2.8 asks for a limit).
//! * No route: ICMP destination unreachable (net), `drop_no_route`.
//!   TTL ≤ 1: ICMP time exceeded, `drop_ttl_expired`.
//!   Larger than the egress MTU: tandem does not fragment; with DF set it
//!   sends ICMP fragmentation needed with the next-hop MTU (RFC 1191), in
//!   both cases `drop_mtu`.
//!   Next hop never resolved: the held frames are freed (`drop_arp_unresolved`)
//!   and each gets ICMP host unreachable (quoting the header with its TTL
//!   restored to the received value; a frame the stateful stage translated
//!   gets its error translated back as related traffic, so it reaches the
//!   real sender and quotes what that sender sent).
//! * Directed broadcasts of connected subnets are not forwarded (RFC 2644)
//!   and neither are martians (RFC 1812 5.3.7); both count `drop_martian`.
//!
//! Failover (issue 3, seeds 004 "MAC Addresses and IP Addresses in
//! Failover"):
//! * Which address and MAC each interface owns changes at run time
//!   ([`Forwarder::set_ownership`], one call for all interfaces, so a batch
//!   never sees half a change). Only the owned address is answered (ARP,
//!   echo) and announced; the owned MAC is the source of everything sent and
//!   the only unicast MAC accepted. Frames to the MAC given up at the last
//!   change are counted `rx_not_owned` rather than `drop_other_mac`: they
//!   show a neighbour that missed the gratuitous ARP. The connected prefix
//!   stays from the configuration. With no owned address, ARP requests to
//!   resolve next hops carry sender address 0.0.0.0 (an RFC 5227 probe) and
//!   no ICMP errors are sent from that interface.
//! * [`Role::NotForwarding`] (a standby): transit datagrams are dropped,
//!   `drop_not_active`, without ICMP errors; frames held for ARP when the
//!   role changed are dropped the same way when their next hop resolves.
//!   Datagrams for an owned address are still answered.
//! * Frames of [`ETHERTYPE_TANDEM`] to the owned MAC, the MAC given up last
//!   (the mate may address it until it hears of the change) or a group
//!   address are copied to the management thread (`rx_punted`, or
//!   `drop_punt_full`) and freed; frames built by the management thread are
//!   sent by [`Forwarder::send_injected`].
//! * Per-interface receive counters ([`PortCounters`]) count every frame
//!   received, before any filtering, for the seeds' interface tests.

use std::net::Ipv4Addr;

use crossbeam_channel::Sender;
use tandem_io::offload::FlowOffload;
use tandem_io::{Backend, Frame, PortId};
use tandem_state::frag::{fragment, FragKey, Fragment};
use tandem_state::Lookup;
use tandem_wire::builder::{echo_reply_in_place, emit_arp_frame, IcmpError};
use tandem_wire::ethernet::HEADER_LEN as ETH_LEN;
use tandem_wire::icmpv4::{icmp_error_allowed, message, quote_len};
use tandem_wire::{
    checksum, ArpOperation, ArpPacket, ArpRepr, DstUnreachable, EtherType, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr,
    TimeExceeded,
};

use crate::arp::{ArpEvent, ArpRecord, ArpState, ArpTable, Learned, Resolution};
use crate::config::{is_unicast, mask, ArpTimers, ConfigError, DataplaneConfig};
use crate::counters::{Counters, PortCounters};
use crate::fraghold::{FragHold, HOLD_PER_DATAGRAM};
use crate::handoff::Steer;
use crate::offload::{Offload, Received};
use crate::ownership::{InterfaceOwnership, Ownership, OwnershipError, Role, Subnet};
use crate::punt::{InjectedFrame, PuntedFrame, ETHERTYPE_TANDEM};
use crate::route::{RouteEntry, RouteTable};
use crate::stateful::Stateful;
use crate::time::Timestamp;
use crate::tx::TxBatches;

/// ICMP error rate limit: one token per millisecond, at most 50 banked.
const ICMP_TOKEN_NS: u64 = 1_000_000;
const ICMP_BURST: u64 = 50;
/// IPv4 + ICMP headers in front of the quote of an ICMP error.
const ICMP_ERROR_HDRS: usize = 20 + 8;
/// Locally built frames are padded to the Ethernet minimum (without FCS).
const ETH_MIN_FRAME: usize = 60;
const BROADCAST: [u8; 6] = [0xff; 6];

struct Iface {
    name: String,
    /// The MAC owned now (see [`InterfaceOwnership::mac`]).
    mac: [u8; 6],
    /// The MAC owned before the last ownership change that changed it.
    retired: Option<[u8; 6]>,
    /// The address owned now, if any (see [`InterfaceOwnership::addr`]).
    addr: Option<u32>,
    net: u32,
    mask: u32,
    /// Directed broadcast address, when the subnet has one (prefix ≤ 30).
    bcast: Option<u32>,
    mtu: u16,
}

/// What to do with one received frame.
enum Action {
    /// Free it (a counter was bumped).
    Drop,
    /// Transmit it (rewritten in place, `len` bytes) on `port`.
    Tx { port: PortId, len: usize },
    /// Hold it (TTL already decremented) until ARP entry `arp` resolves.
    Hold { arp: usize, len: usize },
    /// No ARP entry for `ip` on `port`: create one, ask, hold the frame.
    Resolve { port: PortId, ip: u32, len: usize },
    /// A failover protocol frame: copy it to the management thread, free it.
    Punt,
    /// Another worker owns the flow (`crate::handoff`): copy it there, free it.
    Handoff { to: usize },
    /// A later IPv4 fragment before its datagram's first: hold it
    /// (`crate::fraghold`) until a first fragment of `key` comes.
    HoldFragment { key: FragKey },
}

struct Verdict {
    action: Action,
    /// An ARP entry that just resolved: release its held frames.
    resolved: Option<usize>,
    /// Send a unicast ARP probe for `(port, ip)` to `mac`.
    probe: Option<(PortId, u32, [u8; 6])>,
}

impl From<Action> for Verdict {
    fn from(action: Action) -> Verdict {
        Verdict {
            action,
            resolved: None,
            probe: None,
        }
    }
}

/// The unit's own identity on each port, its counters and the ICMP rate
/// limiter: everything the forwarder needs besides its tables, kept apart so
/// table callbacks can use it while a table is borrowed.
struct Local {
    ifaces: Vec<Iface>,
    counters: Counters,
    /// Per interface, indexed by port.
    ports: Vec<PortCounters>,
    icmp_credit: u64,
    icmp_last: Timestamp,
}

/// The routed forwarder of one worker. See the module doc.
pub struct Forwarder {
    local: Local,
    role: Role,
    subnets: Vec<Subnet>,
    /// Where punted frames go, and the worker index they are stamped with.
    punt: Option<(Sender<PuntedFrame>, usize)>,
    /// Scratch for building a punted frame without a 1.5 KB stack zero-fill.
    punt_scratch: Box<PuntedFrame>,
    routes: RouteTable,
    arp: ArpTable,
    timers: ArpTimers,
    garp_left: u32,
    garp_next: Timestamp,
    /// The stateful stage (issue 4), when configured; see `crate::stateful`.
    stateful: Option<Box<Stateful>>,
    /// Worker handoff (stateful stage with several workers; see
    /// `crate::handoff`). Taken out while frames handed to this worker are
    /// processed, so those are never steered again.
    handoff: Option<Box<crate::handoff::Handoff>>,
    /// Later fragments waiting for their first (`crate::fraghold`).
    frag_hold: Box<FragHold>,
    /// Held fragments are being run again: one that still finds no first
    /// is dropped, not held again.
    releasing: bool,
    /// Flow offload (`crate::offload`): set up at the first
    /// [`Forwarder::sync_offload`], i.e. when the backend has a table.
    offload: Option<Box<Offload>>,
}

impl Forwarder {
    /// Builds the tables for `cfg` (validated here); all memory is reserved now.
    pub fn new(cfg: &DataplaneConfig) -> Result<Forwarder, ConfigError> {
        Forwarder::for_worker(cfg, 0, 1)
    }

    /// Like [`Forwarder::new`], for worker `worker` of `workers`: with
    /// `cfg.state`, its stateful shard is shard `worker` (PAT port choice
    /// and replication stream), keyed by a random per-process seed.
    pub fn for_worker(
        cfg: &DataplaneConfig,
        worker: usize,
        workers: usize,
    ) -> Result<Forwarder, ConfigError> {
        cfg.validate()?;
        let stateful = match &cfg.state {
            Some(st) => Some(Box::new(
                Stateful::new(
                    st,
                    worker as u16,
                    workers as u16,
                    crate::stateful::random_seed(worker),
                )
                .map_err(|e| ConfigError {
                    key: "state".into(),
                    problem: e.to_string(),
                })?,
            )),
            None => None,
        };
        let routes = RouteTable::from_config(cfg).map_err(|e| ConfigError {
            key: "routes".into(),
            problem: e.to_string(),
        })?;
        let ifaces = cfg
            .interfaces
            .iter()
            .map(|i| {
                let m = mask(i.prefix_len);
                let a = u32::from(i.addr);
                Iface {
                    name: i.name.clone(),
                    mac: i.mac,
                    retired: None,
                    addr: Some(a),
                    net: a & m,
                    mask: m,
                    bcast: (i.prefix_len <= 30).then_some(a | !m),
                    mtu: i.mtu,
                }
            })
            .collect();
        let t = &cfg.tables;
        Ok(Forwarder {
            local: Local {
                ifaces,
                counters: Counters::default(),
                ports: vec![PortCounters::default(); cfg.interfaces.len()],
                icmp_credit: ICMP_BURST * ICMP_TOKEN_NS,
                icmp_last: Timestamp::ZERO,
            },
            role: Role::Forwarding,
            subnets: cfg.interfaces.iter().map(Subnet::of).collect(),
            punt: None,
            punt_scratch: Box::new(PuntedFrame::EMPTY),
            routes,
            arp: ArpTable::new(t.arp, t.arp_pending, t.arp_pending_per_hop, cfg.arp),
            timers: cfg.arp,
            garp_left: 0,
            garp_next: Timestamp::NEVER,
            stateful,
            handoff: None,
            frag_hold: Box::default(),
            releasing: false,
            offload: None,
        })
    }

    /// The stateful stage, when configured.
    pub fn stateful(&self) -> Option<&Stateful> {
        self.stateful.as_deref()
    }

    /// The stateful stage, when configured.
    pub fn stateful_mut(&mut self) -> Option<&mut Stateful> {
        self.stateful.as_deref_mut()
    }

    /// Attaches this worker's replication channels (see `crate::sync`);
    /// `rate` paces bulk sync (records/s for this worker, 0 = unlimited).
    /// Without a stateful stage there is nothing to replicate: an error.
    pub fn attach_sync(
        &mut self,
        ws: crate::sync::WorkerSync,
        settings: &crate::config::SyncSettings,
        rate: u64,
    ) -> Result<(), ConfigError> {
        let Some(st) = self.stateful.as_deref_mut() else {
            return Err(ConfigError {
                key: "sync".into(),
                problem: "replication needs the stateful stage (state)".into(),
            });
        };
        st.attach_sync(ws, settings, rate).map_err(|e| ConfigError {
            key: "sync.frame_size".into(),
            problem: e.to_string(),
        })
    }

    /// Attaches this worker's ends of the handoff rings (`crate::handoff`).
    /// Only a stateful forwarder of one of several workers steers; for any
    /// other the rings are not attached (it returns false) and it pays nothing.
    pub fn set_handoff(&mut self, h: crate::handoff::Handoff) -> bool {
        if self.stateful.is_none() || h.workers() < 2 {
            return false;
        }
        self.handoff = Some(Box::new(h));
        true
    }

    /// Is a handed-off frame waiting for this worker?
    pub fn handoff_pending(&self) -> bool {
        self.handoff.as_ref().is_some_and(|h| h.pending())
    }

    /// Wakes the workers frames were handed to since the last call (once
    /// per loop iteration, after the receive bursts).
    pub fn handoff_wake(&mut self) {
        if let Some(h) = self.handoff.as_deref_mut() {
            h.wake_due();
        }
    }

    /// Processes up to `budget` frames other workers handed to this one:
    /// each is copied into a fresh frame of `backend` and processed as if
    /// received on its port (counted `handoff_in`, not `rx`); ARP copies
    /// only teach this worker's ARP table. Returns the frames taken.
    pub fn drain_handoff(
        &mut self,
        now: Timestamp,
        backend: &mut dyn Backend,
        out: &mut TxBatches,
        budget: usize,
    ) -> usize {
        let Some(mut h) = self.handoff.take() else {
            return 0;
        };
        let mut n = 0;
        while n < budget {
            let Some((lane, mut b)) = h.take() else { break };
            let port = b.port();
            let len = b.bytes().len();
            if len == 0 || port >= self.local.ifaces.len() {
                h.recycle(lane, b);
                continue;
            }
            if b.is_arp_copy() {
                let v = self.handle_arp(now, port, b.bytes_mut(), len, true);
                h.recycle(lane, b);
                if let Some(i) = v.resolved {
                    self.release(backend, out, i);
                }
                n += 1;
                continue;
            }
            let Some(mut f) = backend.alloc() else {
                // Kept for the next iteration; meanwhile the ring fills and
                // its producer counts the overflow.
                h.put_back(lane, b);
                break;
            };
            match backend.frame_mut(f).get_mut(..len) {
                Some(dst) => dst.copy_from_slice(b.bytes()),
                None => {
                    backend.free(f);
                    h.recycle(lane, b);
                    self.local.counters.drop_malformed += 1;
                    continue;
                }
            }
            h.recycle(lane, b);
            f.len = len as u32;
            self.local.counters.handoff_in += 1;
            self.process_frame(now, backend, port, f, out);
            n += 1;
        }
        self.handoff = Some(h);
        n
    }

    /// The stateful stage's per-iteration work (inbound records, expiry
    /// sweep, bulk-sync step, flush deadline); call once per loop
    /// iteration. True if it did anything. Does nothing without `state`.
    pub fn poll_stateful(&mut self, now: Timestamp) -> bool {
        let ports = self.local.ifaces.len();
        match self.stateful.as_deref_mut() {
            Some(st) => st.poll(now, &mut self.arp, ports),
            None => false,
        }
    }

    /// A control-path request for the stateful stage; ignored (the reply
    /// channel drops, which the caller sees) without `state`.
    pub fn stateful_command(&mut self, now: Timestamp, cmd: crate::stateful::StatefulCommand) {
        if let Some(st) = self.stateful.as_deref_mut() {
            st.command(now, cmd, &self.arp);
        }
    }

    /// Counters bumped so far (`tx` and `drop_tx_ring_full` live in the
    /// [`TxBatches`]; backend counters in the backend).
    pub fn counters(&self) -> &Counters {
        &self.local.counters
    }

    /// Receive counters per interface (port order).
    pub fn port_counters(&self) -> &[PortCounters] {
        &self.local.ports
    }

    /// Punted frames go to `tx`, stamped with `worker`. Without a sink they
    /// are dropped (`drop_punt_full`).
    pub fn set_punt(&mut self, tx: Sender<PuntedFrame>, worker: usize) {
        self.punt = Some((tx, worker));
    }

    /// Applies a new ownership for every interface and the role, all at
    /// once (between two batches, so no batch sees half of it). With
    /// `announce`, starts a gratuitous ARP burst for every owned address with
    /// the new MACs (as [`Forwarder::start_gratuitous_arp`]); without, a
    /// burst in progress is cancelled, since it was announcing what this
    /// unit may no longer own. Nothing changes on error. Does not allocate.
    pub fn set_ownership(
        &mut self,
        now: Timestamp,
        own: &Ownership,
        role: Role,
        announce: bool,
    ) -> Result<(), OwnershipError> {
        own.check(&self.subnets)?;
        for (ifc, o) in self.local.ifaces.iter_mut().zip(&own.interfaces) {
            if o.mac != ifc.mac {
                ifc.retired = Some(ifc.mac);
                ifc.mac = o.mac;
            }
            ifc.addr = o.addr.map(u32::from);
        }
        self.role = role;
        // MACs and the right to forward are baked into the fast path.
        if let Some(o) = self.offload.as_deref_mut() {
            o.request_clear();
        }
        if announce {
            self.start_gratuitous_arp(now);
        } else {
            self.garp_left = 0;
            self.garp_next = Timestamp::NEVER;
        }
        Ok(())
    }

    /// What `port` owns now.
    pub fn ownership(&self, port: PortId) -> Option<InterfaceOwnership> {
        self.local.ifaces.get(port).map(|i| InterfaceOwnership {
            addr: i.addr.map(Ipv4Addr::from),
            mac: i.mac,
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Queues a frame built by the management thread for transmit on its
    /// interface, in a fresh frame (zero-padded to the Ethernet minimum).
    /// Counted `tx_injected`; `tx_alloc_failed` when no frame is free or the
    /// frame does not fit the backend's frames or the interface's MTU.
    pub fn send_injected(
        &mut self,
        backend: &mut dyn Backend,
        out: &mut TxBatches,
        inj: &InjectedFrame,
    ) {
        let port = inj.interface();
        let bytes = inj.frame();
        let fits = self
            .local
            .ifaces
            .get(port)
            .is_some_and(|i| bytes.len() <= usize::from(i.mtu) + ETH_LEN + 4);
        if !fits {
            self.local.counters.tx_alloc_failed += 1;
            return;
        }
        let Some(mut f) = backend.alloc() else {
            self.local.counters.tx_alloc_failed += 1;
            return;
        };
        let len = bytes.len().max(ETH_MIN_FRAME);
        let Some(slot) = backend.frame_mut(f).get_mut(..len) else {
            backend.free(f);
            self.local.counters.tx_alloc_failed += 1;
            return;
        };
        slot[..bytes.len()].copy_from_slice(bytes);
        slot[bytes.len()..].fill(0);
        f.len = len as u32;
        self.local.counters.tx_injected += 1;
        out.push(backend, port, f);
    }

    /// Seeds 004, "ARP test": "Each unit sends a single ARP request for the
    /// IP address in the most recent entry in its ARP table", then for "the
    /// *next* entry": one broadcast ARP request on `port` for the
    /// `recent`-th most recently confirmed entry there (0 = the most recent),
    /// from the address owned there (0.0.0.0 without one). Returns false,
    /// counted `tx_test_skipped`, when there is no such entry.
    pub fn send_arp_probe(
        &mut self,
        backend: &mut dyn Backend,
        out: &mut TxBatches,
        port: PortId,
        recent: usize,
    ) -> bool {
        let Some(ip) = self
            .arp
            .nth_recent(port, recent)
            .filter(|_| port < self.local.ifaces.len())
        else {
            self.local.counters.tx_test_skipped += 1;
            return false;
        };
        self.local
            .send_arp(backend, out, port, BROADCAST, ip, false);
        true
    }

    /// Seeds 004, "Broadcast Ping test": "Each unit sends a broadcast ping":
    /// one ICMP echo request (identifier 0x7464, "td"; sequence `seq`) from
    /// the address owned on `port` to the subnet's directed broadcast
    /// address (255.255.255.255 on a /31 or /32), Ethernet broadcast.
    /// Returns false, counted `tx_test_skipped`, without an owned address
    /// (seeds 004: without a standby IP "the active unit cannot perform
    /// network tests to check the standby interface health") or a free frame.
    /// Replies come back as echo replies to the owned address (`rx_for_us`);
    /// the test counts any received frame. Many hosts ignore broadcast pings
    /// (Linux: `icmp_echo_ignore_broadcasts=1`).
    pub fn send_broadcast_ping(
        &mut self,
        backend: &mut dyn Backend,
        out: &mut TxBatches,
        port: PortId,
        seq: u16,
    ) -> bool {
        const IDENT: u16 = 0x7464;
        const DATA: &[u8] = b"tandem interface test";
        let Some((mac, Some(src), bcast)) = self
            .local
            .ifaces
            .get(port)
            .map(|i| (i.mac, i.addr, i.bcast))
        else {
            self.local.counters.tx_test_skipped += 1;
            return false;
        };
        let Some(mut f) = backend.alloc() else {
            self.local.counters.tx_test_skipped += 1;
            self.local.counters.tx_alloc_failed += 1;
            return false;
        };
        let icmp = Icmpv4Repr::EchoRequest {
            ident: IDENT,
            seq_no: seq,
            data_len: DATA.len() as u16,
        };
        let dst = bcast.unwrap_or(u32::MAX);
        let ip = Ipv4Repr::new(
            Ipv4Addr::from(src),
            Ipv4Addr::from(dst),
            IpProtocol::ICMP,
            icmp.buffer_len() as u16,
            64,
        );
        let eth = EthernetRepr {
            src: MacAddr(mac),
            dst: MacAddr(BROADCAST),
            vlan: None,
            ethertype: EtherType::IPV4,
        };
        let at = ETH_LEN + ip.header_len();
        let len = (at + icmp.buffer_len()).max(ETH_MIN_FRAME);
        let emitted = backend.frame_mut(f).get_mut(..len).is_some_and(|buf| {
            buf.fill(0);
            buf[at + 8..at + 8 + DATA.len()].copy_from_slice(DATA);
            icmp.emit(&mut buf[at..]).is_ok()
                && ip.emit(&mut buf[ETH_LEN..]).is_ok()
                && eth.emit(buf).is_ok()
        });
        if !emitted {
            backend.free(f);
            self.local.counters.tx_test_skipped += 1;
            return false;
        }
        f.len = len as u32;
        self.local.counters.tx_broadcast_ping += 1;
        out.push(backend, port, f);
        true
    }

    /// Number of interfaces (= ports served).
    pub fn port_count(&self) -> usize {
        self.local.ifaces.len()
    }

    pub fn interface_name(&self, port: PortId) -> Option<&str> {
        self.local.ifaces.get(port).map(|i| i.name.as_str())
    }

    /// The route table as shown to operators.
    pub fn routes(&self) -> Vec<RouteEntry> {
        self.routes
            .iter()
            .map(|r| RouteEntry {
                prefix: r.prefix.into(),
                prefix_len: r.prefix_len,
                next_hop: r.next_hop.map(Into::into),
                interface: self.local.ifaces[r.port].name.clone(),
                kind: r.kind,
            })
            .collect()
    }

    /// Swaps in a new route table (a live `config reload`, between two
    /// batches); `routes` gets the old one back. The new table must have
    /// been built from a config with this forwarder's interfaces (the
    /// `Dataplane` handle checks that). Does not allocate.
    pub fn replace_routes(&mut self, routes: &mut RouteTable) {
        std::mem::swap(&mut self.routes, routes);
        if let Some(o) = self.offload.as_deref_mut() {
            o.request_clear();
        }
    }

    /// Flow offload, once per loop iteration (`crate::offload`): carries
    /// out queued installs and removals on `table` and takes a scan step.
    /// Without the stateful stage there is nothing to offload.
    pub fn sync_offload(&mut self, now: Timestamp, table: &mut dyn FlowOffload) -> bool {
        let Some(st) = self.stateful.as_deref_mut() else {
            return false;
        };
        let shard_id = st.shard().shard_index();
        let o = self
            .offload
            .get_or_insert_with(|| Box::new(Offload::new(shard_id)));
        o.sync(now, self.arp.changes(), st.shard_mut(), table)
    }

    /// Adds the flow-offload counters to `c`.
    pub fn merge_offload_counters(&self, c: &mut Counters) {
        if let Some(o) = self.offload.as_deref() {
            o.merge_into(c);
        }
    }

    /// Every ARP entry, as of `now`.
    pub fn arp_records(&self, now: Timestamp, f: impl FnMut(ArpRecord)) {
        self.arp.for_each(now, f);
    }

    /// State of the ARP entry for `ip` on `port`.
    pub fn arp_state(
        &self,
        now: Timestamp,
        port: PortId,
        ip: std::net::Ipv4Addr,
    ) -> Option<ArpState> {
        self.arp.state(now, port, u32::from(ip))
    }

    /// Frames held: awaiting ARP resolution, or later fragments awaiting
    /// their first (`crate::fraghold`).
    pub fn held_frames(&self) -> usize {
        self.arp.held_len() + self.frag_hold.len()
    }

    /// Starts a burst of `garp_count` gratuitous ARP announcements for every
    /// owned address, `garp_interval` apart; the first goes out at the next
    /// `handle_timeout(now)`. A burst in progress restarts.
    pub fn start_gratuitous_arp(&mut self, now: Timestamp) {
        self.garp_left = self.timers.garp_count;
        self.garp_next = if self.garp_left > 0 {
            now
        } else {
            Timestamp::NEVER
        };
    }

    /// The earliest time `handle_timeout` has work, if any timer is armed.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let held = self
            .frag_hold
            .next_expiry()
            .map_or(Timestamp::NEVER, Timestamp::from_nanos);
        let t = self.arp.poll_timeout().min(self.garp_next).min(held);
        (t != Timestamp::NEVER).then_some(t)
    }

    /// Processes one received burst from `rx_port`. Every frame is either
    /// queued on `out`, held for ARP, or freed and counted.
    pub fn process_batch(
        &mut self,
        now: Timestamp,
        backend: &mut dyn Backend,
        rx_port: PortId,
        frames: &[Frame],
        out: &mut TxBatches,
    ) {
        self.local.counters.rx += frames.len() as u64;
        if !frames.is_empty() {
            self.local.counters.batches += 1;
        }
        if let Some(p) = self.local.ports.get_mut(rx_port) {
            p.rx += frames.len() as u64;
        }
        for &f in frames {
            self.process_frame(now, backend, rx_port, f, out);
        }
    }

    #[inline]
    fn process_frame(
        &mut self,
        now: Timestamp,
        backend: &mut dyn Backend,
        rx_port: PortId,
        f: Frame,
        out: &mut TxBatches,
    ) {
        // Only while something is held: is this the first fragment it waits for?
        let first = if self.frag_hold.is_empty() {
            None
        } else {
            first_fragment(backend.frame(f))
        };
        let v = {
            let buf = backend.frame_mut(f);
            let len = (f.len as usize).min(buf.len());
            self.classify(now, rx_port, buf, len)
        };
        let with_len = |len: usize| Frame {
            addr: f.addr,
            len: len as u32,
        };
        match v.action {
            Action::Drop => backend.free(f),
            Action::Tx { port, len } => out.push(backend, port, with_len(len)),
            Action::Hold { arp, len } => self.hold(backend, arp, with_len(len), rx_port),
            Action::Resolve { port, ip, len } => match self.arp.create_incomplete(now, port, ip) {
                Ok(i) => {
                    self.local
                        .send_arp(backend, out, port, BROADCAST, ip, false);
                    self.hold(backend, i, with_len(len), rx_port);
                }
                Err(_) => {
                    self.local.counters.arp_table_full += 1;
                    self.local.counters.drop_arp_table_full += 1;
                    backend.free(f);
                }
            },
            Action::Punt => {
                self.punt(now, rx_port, backend.frame(f));
                backend.free(f);
            }
            Action::Handoff { to } => {
                let c = &mut self.local.counters;
                let pushed = self
                    .handoff
                    .as_deref_mut()
                    .is_some_and(|h| h.push(to, rx_port, backend.frame(f), false).is_ok());
                if pushed {
                    c.handoff_out += 1;
                } else {
                    c.drop_handoff_full += 1;
                }
                backend.free(f);
            }
            Action::HoldFragment { key } => {
                match self.frag_hold.hold(now.as_nanos(), key, f, rx_port) {
                    Ok(()) => self.local.counters.fragments_held += 1,
                    Err(_) => {
                        self.local.counters.drop_fragment += 1;
                        backend.free(f);
                    }
                }
            }
        }
        if let Some((port, ip, mac)) = v.probe {
            self.local.send_arp(backend, out, port, mac, ip, false);
        }
        if let Some(i) = v.resolved {
            self.release(backend, out, i);
        }
        if let Some(key) = first {
            self.release_fragments(now, backend, out, &key);
        }
    }

    /// Runs the later fragments held for `key`'s datagram again, right after
    /// one of its first fragments: they now follow it (or, if it was refused,
    /// are dropped).
    fn release_fragments(
        &mut self,
        now: Timestamp,
        backend: &mut dyn Backend,
        out: &mut TxBatches,
        key: &FragKey,
    ) {
        let mut held = [(Frame::default(), 0); HOLD_PER_DATAGRAM];
        let n = self.frag_hold.take(key, &mut held);
        let was = core::mem::replace(&mut self.releasing, true);
        for &(f, port) in &held[..n] {
            self.process_frame(now, backend, port, f, out);
        }
        self.releasing = was;
    }

    /// The verdict on a later fragment whose first has not passed: hold it,
    /// unless it is being run again after its first (which then did not
    /// pass).
    fn await_first(&mut self, key: FragKey) -> Verdict {
        if self.releasing {
            self.local.counters.drop_fragment += 1;
            Action::Drop.into()
        } else {
            Action::HoldFragment { key }.into()
        }
    }

    /// Copies a failover frame to the management thread without blocking.
    fn punt(&mut self, now: Timestamp, rx_port: PortId, bytes: &[u8]) {
        let Some((tx, worker)) = &self.punt else {
            self.local.counters.drop_punt_full += 1;
            return;
        };
        self.punt_scratch.fill(rx_port, *worker, now, bytes);
        if tx.try_send(*self.punt_scratch).is_ok() {
            self.local.counters.rx_punted += 1;
        } else {
            self.local.counters.drop_punt_full += 1;
        }
    }

    fn hold(&mut self, backend: &mut dyn Backend, i: usize, f: Frame, rx_port: PortId) {
        if self.arp.hold(i, f, rx_port).is_err() {
            self.local.counters.drop_arp_pending_full += 1;
            backend.free(f);
        }
    }

    /// Sends the frames held for entry `i`, which just resolved.
    fn release(&mut self, backend: &mut dyn Backend, out: &mut TxBatches, i: usize) {
        let (port, mac) = self.arp.neighbour(i);
        let src = self.local.ifaces[port].mac;
        if self.role == Role::NotForwarding {
            // Held while this unit was forwarding; it no longer is.
            while let Some((f, _)) = self.arp.pop_held(i) {
                self.local.counters.drop_not_active += 1;
                backend.free(f);
            }
            return;
        }
        while let Some((f, _)) = self.arp.pop_held(i) {
            let mut eth = EthernetFrame::new_unchecked(backend.frame_mut(f));
            eth.set_dst(MacAddr(mac));
            eth.set_src(MacAddr(src));
            self.local.counters.forwarded += 1;
            out.push(backend, port, f);
        }
    }

    /// Runs due timers: ARP retries, probes and give-ups, gratuitous ARP.
    pub fn handle_timeout(
        &mut self,
        now: Timestamp,
        backend: &mut dyn Backend,
        out: &mut TxBatches,
    ) {
        while let Some(f) = self.frag_hold.take_expired(now.as_nanos()) {
            // Their first did not come (or was refused) within the hold time.
            self.local.counters.drop_fragment += 1;
            backend.free(f);
        }
        let local = &mut self.local;
        let forwarding = self.role == Role::Forwarding;
        let mut stateful = self.stateful.as_deref_mut();
        self.arp.poll(now, |ev| match ev {
            ArpEvent::Request { port, ip, mac } => {
                local.send_arp(backend, out, port, mac.unwrap_or(BROADCAST), ip, false);
            }
            ArpEvent::Unresolved { frame, .. } if !forwarding => {
                // Held while forwarding; a standby sends no ICMP errors about it.
                local.counters.drop_not_active += 1;
                backend.free(frame);
            }
            ArpEvent::Unresolved {
                frame,
                rx_port,
                port,
                ..
            } => {
                local.counters.drop_arp_unresolved += 1;
                let action = {
                    let buf = backend.frame_mut(frame);
                    let len = (frame.len as usize).min(buf.len());
                    let action = local.icmp_error(
                        now,
                        rx_port,
                        buf,
                        len,
                        IcmpError::DstUnreachable(DstUnreachable::HOST_UNREACHABLE, 0),
                        true,
                    );
                    // The held frame may have been translated already: its
                    // error is then related to the connection and goes through
                    // the stateful stage like one from a host behind `port`,
                    // which translates it back (to the real sender, quoting
                    // what it sent; no inside address leaves on the outside).
                    match (action, stateful.as_deref_mut()) {
                        (
                            Action::Tx {
                                port: out_port,
                                len,
                            },
                            Some(st),
                        ) => {
                            let ip = &mut buf[ETH_LEN..len];
                            let lk = st.lookup(now, port, ip);
                            if lk.is_related() && st.commit(now, lk, out_port, ip).is_err() {
                                Action::Drop
                            } else {
                                Action::Tx {
                                    port: out_port,
                                    len,
                                }
                            }
                        }
                        (action, _) => action,
                    }
                };
                match action {
                    Action::Tx { port, len } => out.push(
                        backend,
                        port,
                        Frame {
                            addr: frame.addr,
                            len: len as u32,
                        },
                    ),
                    _ => backend.free(frame),
                }
            }
        });
        if self.garp_left > 0 && now >= self.garp_next {
            for port in 0..self.local.ifaces.len() {
                if let Some(own) = self.local.ifaces[port].addr {
                    self.local
                        .send_arp(backend, out, port, BROADCAST, own, true);
                }
            }
            self.garp_left -= 1;
            self.garp_next = if self.garp_left > 0 {
                now + self.timers.garp_interval
            } else {
                Timestamp::NEVER
            };
        }
    }

    /// Decides the fate of one frame, rewriting it in place where it is
    /// answered or forwarded.
    fn classify(&mut self, now: Timestamp, rx_port: PortId, buf: &mut [u8], len: usize) -> Verdict {
        let c = &mut self.local.counters;
        let Some(ifc) = self.local.ifaces.get(rx_port) else {
            c.drop_malformed += 1;
            return Action::Drop.into();
        };
        let Ok(eth) = EthernetFrame::new_checked(&buf[..len]) else {
            c.drop_malformed += 1;
            return Action::Drop.into();
        };
        // 802.1Q is not configured on any interface (and this kernel has no
        // VLAN support to test it against): tagged frames are foreign.
        if eth.is_tagged() {
            c.drop_ethertype += 1;
            return Action::Drop.into();
        }
        let dst = eth.dst().octets();
        let to_us = dst == ifc.mac;
        // The MAC this unit gave up at its last ownership change: whoever
        // still sends to it missed the gratuitous ARP (or the mate owns it now).
        let retired = !to_us && ifc.retired == Some(dst);
        let not_ours = |c: &mut Counters| {
            if retired {
                c.rx_not_owned += 1;
            } else {
                c.drop_other_mac += 1;
            }
            Verdict::from(Action::Drop)
        };
        match eth.ethertype() {
            EtherType::IPV4 => {
                if !to_us {
                    return not_ours(c);
                }
                // Worker handoff: only where the stateful stage would track
                // the datagram (a forwarding unit); the flow's owner does
                // everything else, including the checks.
                if let (Some(h), Some(st)) = (self.handoff.as_deref_mut(), self.stateful.as_deref())
                {
                    if self.role == Role::Forwarding {
                        match h.owner(now.as_nanos(), st.shard(), &buf[ETH_LEN..len]) {
                            Steer::Worker(to) if to != h.worker() => {
                                return Action::Handoff { to }.into();
                            }
                            Steer::Worker(_) => {}
                            Steer::AwaitFirst(key) => return self.await_first(key),
                        }
                    }
                }
                self.handle_ipv4(now, rx_port, buf, len)
            }
            EtherType::ARP => {
                if let Some(p) = self.local.ports.get_mut(rx_port) {
                    p.rx_arp += 1;
                }
                if !to_us && dst != BROADCAST {
                    return not_ours(c);
                }
                // Each worker resolves its own next hops, and the answer may
                // arrive on any worker's queue: the others learn from a copy
                // (before this worker turns a request into its reply).
                if let Some(h) = self.handoff.as_deref_mut() {
                    let (sent, full) = h.fan_out_arp(rx_port, &buf[..len]);
                    c.handoff_arp_out += sent;
                    c.handoff_arp_full += full;
                }
                self.handle_arp(now, rx_port, buf, len, false)
            }
            EtherType(ETHERTYPE_TANDEM) => {
                // Punted also when sent to the retired MAC: during a switch
                // the mate may address it until it hears of the change, and
                // its hellos must not be lost then. Group addresses too: a
                // protocol may broadcast (LANTEST before MACs are known).
                if to_us || retired || eth.dst().is_multicast() {
                    Action::Punt.into()
                } else {
                    c.drop_other_mac += 1;
                    Action::Drop.into()
                }
            }
            _ => {
                c.drop_ethertype += 1;
                Action::Drop.into()
            }
        }
    }

    /// `copy`: a learn-only copy from another worker (see `crate::handoff`):
    /// learns, never answers, counts nothing the receiving worker counted.
    fn handle_arp(
        &mut self,
        now: Timestamp,
        rx_port: PortId,
        buf: &mut [u8],
        len: usize,
        copy: bool,
    ) -> Verdict {
        let c = &mut self.local.counters;
        let ifc = &self.local.ifaces[rx_port];
        let parsed = ArpPacket::new_checked(&buf[ETH_LEN..len]).and_then(|p| ArpRepr::parse(&p));
        let Ok(req) = parsed else {
            if !copy {
                c.drop_malformed += 1;
            }
            return Action::Drop.into();
        };
        let is_request = req.operation == ArpOperation::REQUEST;
        if !copy {
            if is_request {
                c.rx_arp_request += 1;
            } else {
                c.rx_arp_reply += 1;
                if let Some(p) = self.local.ports.get_mut(rx_port) {
                    p.rx_arp_reply += 1;
                }
            }
        }
        let sha = req.sender_mac;
        let spa = u32::from(req.sender_ip);
        if Some(spa) == ifc.addr {
            // Someone else claims our address (or our own announcement came
            // back); never learn it, never answer it.
            if sha.octets() != ifc.mac && !copy {
                c.rx_arp_conflict += 1;
            }
            return Action::Drop.into();
        }
        // Only the address owned now: a standby never answers for the
        // active addresses (issue 3), and nobody for an address it gave up.
        let for_us = Some(u32::from(req.target_ip)) == ifc.addr;
        // Learn only plausible neighbours: a unicast sender MAC and a sender
        // address on this interface's subnet (an RFC 5227 probe's 0.0.0.0 is not).
        let sender_ok = sha.is_unicast()
            && !sha.is_zero()
            && is_unicast(spa)
            && spa & ifc.mask == ifc.net
            && Some(spa) != ifc.bcast;
        let mut verdict = Verdict::from(Action::Drop);
        if sender_ok {
            // Replication hook (issue 4): the MAC known before, to tell a change.
            let before = self
                .stateful
                .is_some()
                .then(|| {
                    self.arp
                        .lookup(rx_port, spa)
                        .map(|i| self.arp.neighbour(i).1)
                })
                .flatten();
            let learned = self.arp.learn(now, rx_port, spa, sha.octets(), for_us);
            match learned {
                Learned::Resolved(i) => verdict.resolved = Some(i),
                Learned::Refused if !copy => c.arp_table_full += 1,
                Learned::Refused => {}
                Learned::Ignored | Learned::Updated | Learned::Created => {}
            }
            // A neighbour that became reachable or changed MAC is replicated,
            // so the mate has a warm ARP table after takeover.
            let changed = match learned {
                Learned::Resolved(_) | Learned::Created => true,
                Learned::Updated => before != Some(sha.octets()),
                Learned::Ignored | Learned::Refused => false,
            };
            if changed {
                if let Some(st) = self.stateful.as_deref_mut() {
                    st.arp_changed(now, rx_port, spa, sha.octets());
                }
            }
        }
        if copy {
            return verdict;
        }
        if is_request && for_us {
            // RFC 826: swap sender and target, fill in our MAC, opcode reply;
            // sent in the request's own frame, to the requester's MAC.
            let own = MacAddr(ifc.mac);
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
            eth.set_dst(sha);
            eth.set_src(own);
            if req.reply(own).emit(&mut buf[ETH_LEN..len]).is_err() {
                c.drop_malformed += 1;
                return verdict;
            }
            c.tx_arp_reply += 1;
            verdict.action = Action::Tx { port: rx_port, len };
        } else if is_request {
            c.rx_arp_not_owned += 1;
        }
        verdict
    }

    fn owned(&self, a: u32) -> bool {
        self.local.ifaces.iter().any(|i| i.addr == Some(a))
    }

    fn handle_ipv4(
        &mut self,
        now: Timestamp,
        rx_port: PortId,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        let (src, dst, total, ttl, dont_frag) = match Ipv4Packet::new_checked(&buf[ETH_LEN..len]) {
            Ok(ip) if ip.verify_checksum() => (
                u32::from(ip.src_addr()),
                u32::from(ip.dst_addr()),
                usize::from(ip.total_len()),
                ip.ttl(),
                ip.dont_frag(),
            ),
            _ => {
                self.local.counters.drop_malformed += 1;
                return Action::Drop.into();
            }
        };
        // Ethernet padding of short frames is not part of the datagram.
        let len = ETH_LEN + total;
        if !is_unicast(src) || self.owned(src) {
            self.local.counters.drop_martian += 1;
            return Action::Drop.into();
        }
        // Stateful hook (issue 4; `crate::stateful`): before the owned-address
        // check, since PAT return traffic is addressed to an owned address.
        let mut stateful = None;
        let mut dst = dst;
        if self.role == Role::Forwarding {
            if let Some(st) = self.stateful.as_deref_mut() {
                let lk = st.lookup(now, rx_port, &buf[ETH_LEN..len]);
                let route_dst = u32::from(lk.route_dst());
                if lk.drop_reason().is_some() {
                    // Counted by the shard (merged into the counters by name);
                    // traffic to the unit itself is not the shard's business.
                    if !self.owned(dst) {
                        if let Some(key) = lk.awaiting_first() {
                            return self.await_first(key);
                        }
                        return Action::Drop.into();
                    }
                } else if lk.is_existing() || route_dst != dst {
                    // A connection's return leg, or static de-NAT: route on
                    // the real address.
                    dst = route_dst;
                    stateful = Some(lk);
                } else if !self.owned(dst) {
                    stateful = Some(lk);
                }
            }
        }
        if stateful.is_none() && self.owned(dst) {
            return self.handle_local(rx_port, buf, len);
        }
        if !is_unicast(dst) || self.local.ifaces.iter().any(|i| Some(dst) == i.bcast) {
            self.local.counters.drop_martian += 1;
            return Action::Drop.into();
        }
        if self.role == Role::NotForwarding {
            // A standby does not pass traffic (seeds 004), and sends no ICMP
            // errors about it: the active unit is the router.
            self.local.counters.drop_not_active += 1;
            return Action::Drop.into();
        }
        let Some(route) = self.routes.lookup(dst) else {
            self.local.counters.drop_no_route += 1;
            let e = IcmpError::DstUnreachable(DstUnreachable::NET_UNREACHABLE, 0);
            return self
                .local
                .icmp_error(now, rx_port, buf, len, e, false)
                .into();
        };
        let egress = route.port;
        let next_hop = route.next_hop.unwrap_or(dst);
        if ttl <= 1 {
            self.local.counters.drop_ttl_expired += 1;
            let e = IcmpError::TimeExceeded(TimeExceeded::TTL_EXCEEDED);
            return self
                .local
                .icmp_error(now, rx_port, buf, len, e, false)
                .into();
        }
        let mtu = self.local.ifaces[egress].mtu;
        if total > usize::from(mtu) {
            self.local.counters.drop_mtu += 1;
            if !dont_frag {
                return Action::Drop.into();
            }
            // RFC 1191: tell the sender the next-hop MTU.
            let e = IcmpError::DstUnreachable(DstUnreachable::FRAG_NEEDED, mtu);
            return self
                .local
                .icmp_error(now, rx_port, buf, len, e, false)
                .into();
        }
        // Flow offload: the header as received, when the fast path could
        // take this direction's next packets.
        let received = match (&stateful, &self.offload) {
            (Some(lk), Some(_)) if lk.is_existing() && !lk.is_related() => {
                Received::capture(&buf[ETH_LEN..len])
            }
            _ => None,
        };
        // Stateful hook, phase 2: policy, connection create/update, NAT
        // rewrite in place, records. A refusal is counted by the shard.
        if let (Some(lk), Some(st)) = (stateful, self.stateful.as_deref_mut()) {
            if st.commit(now, lk, egress, &mut buf[ETH_LEN..len]).is_err() {
                return Action::Drop.into();
            }
        }
        // RFC 1812 5.3.1: decrement TTL; RFC 1624 incremental checksum update.
        Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..len]).decrement_ttl();
        match self.arp.resolve(now, egress, next_hop) {
            Resolution::Ready { mac, probe } => {
                let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
                eth.set_dst(MacAddr(mac));
                eth.set_src(MacAddr(self.local.ifaces[egress].mac));
                self.local.counters.forwarded += 1;
                if let (Some(rx), Some(lk)) = (received, stateful) {
                    self.offload_direction(&lk, rx_port, &rx, &buf[..len], egress, mac);
                }
                Verdict {
                    action: Action::Tx { port: egress, len },
                    resolved: None,
                    probe: probe.then_some((egress, next_hop, mac)),
                }
            }
            Resolution::Pending(arp) => Action::Hold { arp, len }.into(),
            Resolution::Missing => Action::Resolve {
                port: egress,
                ip: next_hop,
                len,
            }
            .into(),
        }
    }

    /// Queues the install of the direction `frame` (as it leaves on
    /// `egress`) belongs to, when the shard says it may be offloaded now.
    fn offload_direction(
        &mut self,
        lk: &Lookup,
        rx_port: PortId,
        rx: &Received,
        frame: &[u8],
        egress: PortId,
        dst_mac: [u8; 6],
    ) {
        let (Some(o), Some(st)) = (self.offload.as_deref_mut(), self.stateful.as_deref_mut())
        else {
            return;
        };
        let Some(r) = st.shard().offload_candidate(lk) else {
            return;
        };
        let (rx_if, tx_if) = (&self.local.ifaces[rx_port], &self.local.ifaces[egress]);
        if o.queue(
            r,
            rx_port,
            rx,
            rx_if.mac,
            &frame[ETH_LEN..],
            egress,
            tx_if.mtu,
            dst_mac,
            tx_if.mac,
        ) {
            st.shard_mut().offload_mark(r);
        }
    }

    /// A datagram for one of our addresses: answer echo requests, consume the rest.
    fn handle_local(&mut self, rx_port: PortId, buf: &mut [u8], len: usize) -> Verdict {
        let c = &mut self.local.counters;
        let ip = Ipv4Packet::new_unchecked(&buf[ETH_LEN..len]);
        let icmp = Icmpv4Packet::new_unchecked(ip.payload());
        let is_echo = ip.protocol() == IpProtocol::ICMP
            && !ip.is_fragment()
            && icmp.check().is_ok()
            && icmp.msg_type() == message::ECHO_REQUEST
            && icmp.code() == 0;
        if !is_echo {
            c.rx_for_us += 1;
            return Action::Drop.into();
        }
        if !icmp.verify_checksum() {
            c.drop_malformed += 1;
            return Action::Drop.into();
        }
        // Echo reply in place (RFC 792): MACs and addresses swapped (our
        // MAC was the destination, so it becomes the source), fresh TTL, type 0.
        match echo_reply_in_place(&mut buf[..len], 64) {
            Ok(n) => {
                c.tx_icmp_echo_reply += 1;
                Action::Tx {
                    port: rx_port,
                    len: n,
                }
                .into()
            }
            Err(_) => {
                c.rx_for_us += 1;
                Action::Drop.into()
            }
        }
    }
}

impl Local {
    /// Builds an ARP request in a fresh frame and queues it on `port`: from
    /// our address on `port`, asking for `target`, to Ethernet `dst`. A
    /// gratuitous one (`target` is our own address) is an RFC 5227
    /// announcement: sender and target address both ours, target MAC zero.
    fn send_arp(
        &mut self,
        backend: &mut dyn Backend,
        out: &mut TxBatches,
        port: PortId,
        dst: [u8; 6],
        target: u32,
        gratuitous: bool,
    ) {
        let Some(ifc) = self.ifaces.get(port) else {
            return;
        };
        let Some(mut f) = backend.alloc() else {
            self.counters.tx_alloc_failed += 1;
            return;
        };
        let buf = backend.frame_mut(f);
        // Without an owned address: sender 0.0.0.0, an RFC 5227 probe, which
        // asks without claiming an address or polluting the target's cache.
        let (mac, addr) = (MacAddr(ifc.mac), Ipv4Addr::from(ifc.addr.unwrap_or(0)));
        let repr = if gratuitous {
            ArpRepr::gratuitous_request(mac, addr)
        } else {
            ArpRepr::request(mac, addr, Ipv4Addr::from(target))
        };
        let Some(slot) = buf.get_mut(..ETH_MIN_FRAME) else {
            backend.free(f);
            self.counters.tx_alloc_failed += 1;
            return;
        };
        slot.fill(0);
        if emit_arp_frame(slot, mac, MacAddr(dst), None, &repr).is_err() {
            backend.free(f);
            self.counters.tx_alloc_failed += 1;
            return;
        }
        f.len = ETH_MIN_FRAME as u32;
        if gratuitous {
            self.counters.tx_garp += 1;
        } else {
            self.counters.tx_arp_request += 1;
        }
        out.push(backend, port, f);
    }

    fn icmp_allow(&mut self, now: Timestamp) -> bool {
        let elapsed = now.as_nanos().saturating_sub(self.icmp_last.as_nanos());
        self.icmp_last = self.icmp_last.max(now);
        self.icmp_credit = self
            .icmp_credit
            .saturating_add(elapsed)
            .min(ICMP_BURST * ICMP_TOKEN_NS);
        if self.icmp_credit >= ICMP_TOKEN_NS {
            self.icmp_credit -= ICMP_TOKEN_NS;
            true
        } else {
            self.counters.icmp_rate_limited += 1;
            false
        }
    }

    /// Turns the IPv4 frame `buf[..len]` received on `rx_port` into an ICMP
    /// error about it, in place, addressed back to its sender. `Drop` when
    /// no error may be sent (the caller has counted the drop reason).
    /// `restore_ttl`: the datagram's TTL was already decremented; quote it as received.
    fn icmp_error(
        &mut self,
        now: Timestamp,
        rx_port: PortId,
        buf: &mut [u8],
        len: usize,
        error: IcmpError,
        restore_ttl: bool,
    ) -> Action {
        let Some((own_mac, Some(own_addr))) = self.ifaces.get(rx_port).map(|i| (i.mac, i.addr))
        else {
            return Action::Drop;
        };
        let (src_mac, src, datagram_len) = {
            let Ok(eth) = EthernetFrame::new_checked(&buf[..len]) else {
                return Action::Drop;
            };
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return Action::Drop;
            };
            // RFC 1812 4.3.2.7: not about ICMP errors, non-initial fragments,
            // non-unicast sources or destinations, link-layer multicast.
            if !icmp_error_allowed(&ip) || eth.src().is_multicast() || eth.dst().is_multicast() {
                return Action::Drop;
            }
            (eth.src(), ip.src_addr(), ip.datagram().len())
        };
        // RFC 1812 4.3.2.3: quote as much as fits in 576 bytes.
        let quote = usize::from(quote_len(datagram_len));
        let at = ETH_LEN + ICMP_ERROR_HDRS;
        if buf.len() < at + quote || !self.icmp_allow(now) {
            return Action::Drop;
        }
        if restore_ttl {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..len]);
            let old = u16::from_be_bytes([ip.ttl(), ip.protocol().0]);
            let ttl = ip.ttl().saturating_add(1);
            ip.set_ttl(ttl);
            let new = u16::from_be_bytes([ttl, ip.protocol().0]);
            ip.set_checksum(checksum::update_u16(ip.checksum(), old, new));
        }
        // Headers are emitted in front of the quote once it is in place.
        buf.copy_within(ETH_LEN..ETH_LEN + quote, at);
        let icmp = match error {
            IcmpError::TimeExceeded(r) => Icmpv4Repr::time_exceeded(r, datagram_len),
            IcmpError::DstUnreachable(r, mtu) => Icmpv4Repr::dst_unreachable(r, mtu, datagram_len),
        };
        let mut ip = Ipv4Repr::new(
            Ipv4Addr::from(own_addr),
            src,
            IpProtocol::ICMP,
            icmp.buffer_len() as u16,
            64,
        );
        // DSCP CS6, "internetwork control" (RFC 1812 4.3.2.5), as Linux marks ICMP errors.
        ip.dscp = 48;
        let eth = EthernetRepr {
            src: MacAddr(own_mac),
            dst: src_mac,
            vlan: None,
            ethertype: EtherType::IPV4,
        };
        let frame_len = ETH_LEN + ip.buffer_len();
        let emitted = icmp
            .emit(&mut buf[ETH_LEN + ip.header_len()..frame_len])
            .and_then(|_| ip.emit(&mut buf[ETH_LEN..frame_len]))
            .and_then(|_| eth.emit(&mut buf[..frame_len]));
        if emitted.is_err() {
            return Action::Drop;
        }
        self.counters.tx_icmp_error += 1;
        Action::Tx {
            port: rx_port,
            len: frame_len,
        }
    }
}

/// The datagram of `frame` when it is an IPv4 first fragment (offset 0, more
/// to come).
fn first_fragment(frame: &[u8]) -> Option<FragKey> {
    if frame.get(12..14) != Some(&[0x08, 0x00]) {
        return None;
    }
    match fragment(frame.get(ETH_LEN..)?) {
        Some(Fragment::First { key, .. }) => Some(key),
        _ => None,
    }
}
