//! Per-worker counters: plain `u64`s bumped on the hot path, published once
//! per batch into a shared block of atomics that the management thread reads
//! without a round trip and without locks (STYLE habits 6 and 9).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $name:ident, )+) => {
        /// A worker's counters. Every received frame ends as exactly one of:
        /// forwarded (`forwarded`), answered in place (`tx_arp_reply`,
        /// `tx_icmp_echo_reply`), consumed (`rx_for_us`, `rx_not_owned`,
        /// `rx_punted`, `rx_arp_*` other than answered requests), handed to
        /// the worker owning its flow (`handoff_out`; it ends there, counted
        /// `handoff_in` and then as above) or dropped (exactly one `drop_*`;
        /// an ICMP error may then be sent in its frame).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct Counters {
            $( $(#[doc = $doc])+ pub $name: u64, )+
        }

        /// The published copy of one worker's [`Counters`].
        #[derive(Debug, Default)]
        pub struct SharedCounters {
            $( $name: AtomicU64, )+
        }

        /// Counters of one worker as seen by the management thread, with
        /// the worker's identity; serialises flat (`{"worker":0,"rx":..}`).
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct CounterSnapshot {
            pub worker: usize,
            /// Backend name (`mem`, `afxdp-copy`, `io_uring`, ...).
            pub backend: String,
            /// Core the worker was asked to pin to.
            pub core: Option<usize>,
            $( $(#[doc = $doc])+ pub $name: u64, )+
        }

        impl Counters {
            /// Every counter name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),+];

            /// `(name, value)` for every counter, in [`Counters::NAMES`] order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$( (stringify!($name), self.$name) ),+].into_iter()
            }

            /// Field-wise sum (for totals over workers).
            pub fn add(&mut self, other: &Counters) {
                $( self.$name = self.$name.wrapping_add(other.$name); )+
            }
        }

        impl SharedCounters {
            /// Relaxed stores: each value is monotonic on its own and readers
            /// need no consistency between fields.
            pub fn publish(&self, c: &Counters) {
                $( self.$name.store(c.$name, Relaxed); )+
            }

            pub fn load(&self) -> Counters {
                Counters { $( $name: self.$name.load(Relaxed), )+ }
            }
        }

        impl CounterSnapshot {
            pub fn new(worker: usize, backend: String, core: Option<usize>, c: &Counters) -> Self {
                CounterSnapshot { worker, backend, core, $( $name: c.$name, )+ }
            }

            /// The counters without the worker's identity.
            pub fn counters(&self) -> Counters {
                Counters { $( $name: self.$name, )+ }
            }
        }
    };
}

counters! {
    /// Frames received.
    rx,
    /// Frames accepted by the backend for transmit.
    tx,
    /// Non-empty receive bursts processed.
    batches,
    /// IPv4 datagrams forwarded (queued for transmit toward their next hop).
    forwarded,
    /// ARP requests received.
    rx_arp_request,
    /// ARP replies received.
    rx_arp_reply,
    /// ARP requests for addresses the unit does not own (consumed silently).
    rx_arp_not_owned,
    /// ARP packets whose sender claims an address the unit owns (address conflict).
    rx_arp_conflict,
    /// IPv4 datagrams to an owned address that are not answered (only echo is).
    rx_for_us,
    /// Frames to a MAC this unit owned before its last ownership change and
    /// gives up now (a neighbour that missed the gratuitous ARP), consumed silently.
    rx_not_owned,
    /// Frames of tandem's failover EtherType handed to the management thread.
    rx_punted,
    /// ARP replies sent for owned addresses.
    tx_arp_reply,
    /// ARP requests sent to resolve or probe a next hop.
    tx_arp_request,
    /// Gratuitous ARP announcements sent.
    tx_garp,
    /// ICMP echo replies sent.
    tx_icmp_echo_reply,
    /// ICMP errors sent (time exceeded, unreachable, fragmentation needed).
    tx_icmp_error,
    /// Frames built by the management thread queued for transmit (worker 0).
    tx_injected,
    /// Broadcast pings sent for the interface tests (worker 0).
    tx_broadcast_ping,
    /// Interface-test frames (ARP probe, broadcast ping) not sent: no such
    /// ARP entry, no owned address on the interface, or no free frame.
    tx_test_skipped,
    /// ICMP errors not sent because of the rate limit (RFC 1812 4.3.2.8).
    icmp_rate_limited,
    /// Locally generated frames (ARP) not sent because no frame was free.
    tx_alloc_failed,
    /// ARP table insertions refused: full and no stale entry to evict.
    arp_table_full,
    /// Dropped: EtherType other than IPv4 and ARP (IPv6, 802.1Q, ...).
    drop_ethertype,
    /// Dropped: destination MAC not the receiving interface's (or broadcast for ARP).
    drop_other_mac,
    /// Dropped: truncated or invalid header, bad IPv4 header or ICMP checksum.
    drop_malformed,
    /// Dropped: source or destination a router must not forward (RFC 1812 5.3.7),
    /// a directed broadcast, or a spoofed own source address.
    drop_martian,
    /// Dropped: no route to the destination.
    drop_no_route,
    /// Dropped: TTL would reach zero.
    drop_ttl_expired,
    /// Dropped: larger than the egress MTU (tandem does not fragment).
    drop_mtu,
    /// Dropped: next hop unresolved and the ARP table full.
    drop_arp_table_full,
    /// Dropped: next hop unresolved and its pending queue (or all of them) full.
    drop_arp_pending_full,
    /// Dropped: held for a next hop that never answered ARP.
    drop_arp_unresolved,
    /// Dropped: the backend's TX ring refused it.
    drop_tx_ring_full,
    /// Dropped: transit traffic while the unit does not forward (standby),
    /// including frames held for ARP when it stopped forwarding.
    drop_not_active,
    /// Dropped: a failover frame to punt, but the management thread's queue
    /// was full (or nobody listens).
    drop_punt_full,
    /// Not sent: a frame to inject refused because worker 0's inject queue
    /// was full. Counted by the management handle and reported with worker 0.
    drop_inject_full,
    /// Worker handoff (stateful stage with several workers; see `handoff`):
    /// frames received here but owned by another worker's flow table,
    /// copied to that worker (consumed here).
    handoff_out,
    /// Frames received from another worker by handoff (processed here as
    /// if received here; not in `rx`).
    handoff_in,
    /// Learn-only copies of received ARP frames queued for the other workers.
    handoff_arp_out,
    /// Learn-only ARP copies not queued: that worker's ring was full (the
    /// ARP frame itself was processed here).
    handoff_arp_full,
    /// Dropped: the handoff ring to the owning worker was full.
    drop_handoff_full,
    /// Stateful stage (issue 4; all zero without `state`): connections created.
    conn_created,
    /// Connections deleted (close, RST, expiry).
    conn_deleted,
    /// PAT xlates created.
    xlate_created,
    /// PAT xlates deleted.
    xlate_deleted,
    /// Packets of untracked protocols passed by the stateless policy.
    untracked_passed,
    /// Live connections (a gauge).
    conns,
    /// Live xlates (a gauge).
    xlates,
    /// Live IPsec SAs (a gauge).
    sas,
    /// Dropped: a later IPv4 fragment whose datagram's first fragment did
    /// not pass (refused, or not come within the hold time, or no room to
    /// hold it meanwhile), or a TCP fragment at offset 8 (RFC 1858).
    drop_fragment,
    /// Later IPv4 fragments held because they came before their datagram's
    /// first (reordered): each then passes behind it or is dropped.
    fragments_held,
    /// Later IPv4 fragments passed after their datagram's first, translated
    /// like it (virtual reassembly).
    fragments_passed,
    /// First fragments whose datagram the fragment table had no room to
    /// remember (passed; their later fragments are dropped).
    frag_table_full,
    /// Flow-offload entries installed (one per direction of a connection).
    offload_installed,
    /// Flow-offload entries removed (connection closed or idle, cleared).
    offload_removed,
    /// Flow-offload installs the table refused (full): those connections
    /// stay on the worker.
    offload_refused,
    /// Times this worker's flow-offload entries were all cleared (role,
    /// ownership, neighbour or route change).
    offload_cleared,
    /// Flow-offload entries found without their connection, removed.
    offload_stale,
    /// Flow-offload table operations that failed otherwise (logged).
    offload_errors,
    /// Dropped: TCP segment that is not a SYN and matches no connection.
    drop_tcp_no_conn,
    /// Dropped: TCP segment invalid for its connection's state.
    drop_tcp_invalid,
    /// Dropped: new connection from an equal or lower security level.
    drop_security_level,
    /// Dropped: a deny access rule matched.
    drop_access_rule,
    /// Dropped: interface without a stateful policy.
    drop_unknown_interface,
    /// Dropped: connection table full.
    drop_conn_table_full,
    /// Dropped: xlate table full.
    drop_xlate_table_full,
    /// Dropped: no free PAT port.
    drop_pat_exhausted,
    /// Dropped: the PAT mapping cannot serve this destination from this worker.
    drop_pat_steer_conflict,
    /// Dropped: the new connection's return tuple is used by another one.
    drop_tuple_conflict,
    /// SAs refused: SA table full.
    drop_sa_table_full,
    /// ICMP errors about a tracked connection, translated and forwarded
    /// (related traffic; they neither create nor refresh a connection).
    icmp_error_related,
    /// Dropped: an ICMP error quoting TCP/UDP/echo that matches no
    /// connection (or is not addressed to the quoted packet's sender).
    drop_icmp_error_unrelated,
    /// Dropped: an ICMP error whose quoted packet is too short or not IPv4.
    drop_icmp_error_malformed,
    /// Replication (standby): entries removed after a completed bulk sync
    /// because the active no longer had them (mark-and-sweep).
    sync_bulk_swept,
    /// Replication: records written into state-link frames (live).
    sync_records_out,
    /// Replication: records merged into an earlier record of the same frame.
    sync_records_coalesced,
    /// Replication: frames handed to the replication thread.
    sync_frames_out,
    /// Replication: records lost because no buffer was free or the outbound
    /// channel was full (the stream is flagged for a bulk sync).
    sync_overflow,
    /// Replication: bulk-sync records written.
    sync_bulk_records,
    /// Replication: bulk syncs completed.
    sync_bulk_done,
    /// Replication (standby): frames received from the replication thread.
    sync_frames_in,
    /// Replication (standby): records applied.
    sync_records_applied,
    /// Replication (standby): inbound frames that did not parse.
    sync_apply_bad_frame,
    /// Replication (standby): records of an unknown kind or op.
    sync_apply_unknown,
    /// Replication (standby): records whose length or fields are invalid.
    sync_apply_invalid,
    /// Replication (standby): records refused because the table is full.
    sync_apply_table_full,
    /// Backend: frames dropped before the worker saw them.
    backend_rx_dropped,
    /// Backend: frame allocations that failed.
    backend_alloc_failed,
    /// Backend: wake-up syscalls issued.
    backend_syscalls,
}

impl CounterSnapshot {
    /// Sum of the counters of several workers.
    pub fn total(snaps: &[CounterSnapshot]) -> Counters {
        let mut t = Counters::default();
        for s in snaps {
            t.add(&s.counters());
        }
        t
    }
}

/// Per-interface receive counters of one worker (or summed over workers),
/// for the seeds' interface tests (seeds 004, "Interface Tests"): "Network
/// Activity" needs every frame received on the interface during the test,
/// whoever it was addressed to; the "ARP test" needs ARP replies. Monotonic;
/// the management thread compares two readings ("each unit clears its
/// received packet count" becomes a snapshot at the start of the test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortCounters {
    /// Frames received on the interface, any destination, any EtherType.
    pub rx: u64,
    /// ARP frames received, any destination (before the MAC filter).
    pub rx_arp: u64,
    /// Valid ARP replies addressed to this unit (its MAC or broadcast).
    pub rx_arp_reply: u64,
}

impl PortCounters {
    pub fn add(&mut self, o: &PortCounters) {
        self.rx = self.rx.wrapping_add(o.rx);
        self.rx_arp = self.rx_arp.wrapping_add(o.rx_arp);
        self.rx_arp_reply = self.rx_arp_reply.wrapping_add(o.rx_arp_reply);
    }
}

/// The published copy of one worker's [`PortCounters`], one per interface:
/// plain atomics, stored once per batch, read without locks.
#[derive(Debug)]
pub struct SharedPortCounters {
    ports: Box<[[AtomicU64; 3]]>,
}

impl SharedPortCounters {
    pub fn new(ports: usize) -> SharedPortCounters {
        SharedPortCounters {
            ports: (0..ports).map(|_| Default::default()).collect(),
        }
    }

    /// Relaxed stores, like [`SharedCounters::publish`]; extra entries on
    /// either side are ignored.
    pub fn publish(&self, c: &[PortCounters]) {
        for (slot, c) in self.ports.iter().zip(c) {
            slot[0].store(c.rx, Relaxed);
            slot[1].store(c.rx_arp, Relaxed);
            slot[2].store(c.rx_arp_reply, Relaxed);
        }
    }

    pub fn load(&self, port: usize) -> PortCounters {
        self.ports
            .get(port)
            .map_or_else(PortCounters::default, |s| PortCounters {
                rx: s[0].load(Relaxed),
                rx_arp: s[1].load(Relaxed),
                rx_arp_reply: s[2].load(Relaxed),
            })
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_load_round_trip_and_flat_json() {
        let c = Counters {
            rx: 3,
            drop_no_route: 2,
            ..Counters::default()
        };
        let s = SharedCounters::default();
        s.publish(&c);
        assert_eq!(s.load(), c);
        let snap = CounterSnapshot::new(1, "mem".into(), Some(0), &c);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["worker"], 1);
        assert_eq!(json["drop_no_route"], 2);
        assert_eq!(CounterSnapshot::total(&[snap.clone(), snap]).rx, 6);
        assert_eq!(Counters::NAMES.len(), c.fields().count());

        let p = SharedPortCounters::new(2);
        let c = PortCounters {
            rx: 5,
            rx_arp: 2,
            rx_arp_reply: 1,
        };
        p.publish(&[PortCounters::default(), c]);
        assert_eq!(p.load(1), c);
        assert_eq!(p.load(7), PortCounters::default());
    }
}
