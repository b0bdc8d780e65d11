//! tandem's stateful tables and the stateful stage of the data path: connection tracking (TCP,
//! UDP, ICMP echo over IPv4), the security-level / access-rule policy, NAT (dynamic PAT and
//! static), an IPsec SA table, and the fixed-layout replication records that make a pair
//! stateful.
//!
//! The crate is sans-IO and `no_std` (+ `alloc` for the tables allocated once in
//! [`Shard::new`]): time is an argument (`now`, nanoseconds of the data path's monotonic clock),
//! randomness comes from the seed given to `new`, records go into a caller's [`RecordSink`].
//!
//! # One shard per worker
//!
//! Each worker owns one [`Shard`]. The forwarder steers a packet to worker
//! `steer(ip, shards)`, a hash symmetric in source and destination, so both directions of an
//! untranslated flow land on the same worker. PAT picks only mapped ports whose return tuple
//! (server → mapped address:port) steers to the owning shard, so translated return traffic comes
//! back to it as well.
//!
//! # The stage, in two phases around the route lookup
//!
//! 1. [`Shard::lookup`]`(now, rx_if, ip)` parses the packet, finds its connection in either
//!    direction, or, for a new flow, applies static de-NAT of the destination. It returns a
//!    [`Lookup`]: the address to route on ([`Lookup::route_dst`]) or an early drop
//!    ([`Lookup::drop_reason`]).
//! 2. The forwarder routes `route_dst` to `out_if`, then calls
//!    [`Shard::commit`]`(now, lookup, out_if, ip, sink)`: for an existing connection, TCP state,
//!    last-seen and the in-place NAT rewrite; for a new one, the policy check, the strict TCP SYN
//!    rule, xlate allocation, connection creation, and its records.
//!
//! Packets addressed to the unit itself are the forwarder's business and never reach the shard —
//! but note that the return traffic of PAT to an interface address *is* addressed to that
//! address: the forwarder must offer such packets to `lookup` first and deliver locally only when
//! no connection matches.
//!
//! # ICMP errors (related traffic)
//!
//! Destination unreachable (fragmentation-needed included), source quench, redirect, time
//! exceeded and parameter problem (the error types Linux conntrack relates) quoting a TCP, UDP or ICMP echo packet are looked up by the quoted packet: it is one the
//! connection sent, so the error travels as a packet of the opposite direction would, and
//! [`steer`] hashes the quoted tuple, landing the error on the connection's worker. The error
//! passes only when that connection exists and the error is addressed to the quoted packet's
//! sender ([`Lookup::is_related`]); otherwise it is dropped (`drop_icmp_error_unrelated`; a quote
//! shorter than the IPv4 header + 8 bytes: `drop_icmp_error_malformed`). A related error is
//! translated like the connection's packets of its direction: outer destination (and outer source
//! where that side is translated), quoted addresses and ports or echo identifier, with the outer
//! IPv4, ICMP and quoted IPv4 header checksums and, when quoted, the transport checksum updated
//! incrementally. It neither creates nor refreshes a connection and emits no record (as Linux
//! conntrack treats RELATED packets). Errors quoting other protocols stay untracked.
//!
//! # Tables
//!
//! Every table is a slab of fixed capacity plus an open-addressing index with a keyed hash
//! ([`hash`]): connections are indexed by their original tuple *and* by the tuple their return
//! traffic arrives with (post-NAT, reversed); PAT xlates by real endpoint *and* by mapped endpoint.
//! Nothing allocates after `new` ([`Shard::memory_bytes`] says how much `new` took; a connection
//! with its xlate and index slots costs about 140 bytes).
//!
//! **Full-table policy**: a new connection that finds the connection table full is refused and
//! counted (`drop_conn_table_full`); likewise `drop_xlate_table_full` for the xlate table and
//! `drop_pat_exhausted` when no free mapped port steering to this shard is found in a bounded
//! number of random tries. Live connections are never evicted to make room: evicting would break
//! an established flow to admit a possibly hostile new one; expired entries leave through the
//! incremental sweep ([`Shard::expire`]) instead.
//!
//! # What is not handled (documented departures)
//!
//! * IPv4 fragments are not reassembled but followed ([`frag`]): a datagram's later fragments
//!   pass, translated like its first, once the first has passed. A later fragment that arrives
//!   before its first is left to the caller ([`Lookup::awaiting_first`]; the data plane holds it
//!   until the first passes); fragments of a datagram whose first fragment was refused are
//!   dropped (`drop_fragment`). Fragment entries are not replicated: a datagram in flight during a
//!   failover loses its remaining fragments, and the sender's retransmission covers it.
//! * Protocols other than TCP, UDP and ICMP echo are not tracked: they pass the stateless policy
//!   check per packet (security levels / access rules, both directions), untranslated, and are not
//!   replicated (seeds 004: "Other types of IP protocols ... get established on the new active
//!   unit when a new packet arrives"). ICMP errors about such packets are handled the same way.
//! * A redirect's gateway address (its second header word) is not translated: it names a router
//!   on the sender's own segment, which NAT does not map (Linux does not translate it either).
//! * TCP sequence numbers are not window-checked (RST included): the state machine follows flags.
//! * PAT mappings are endpoint-independent within a shard. With several shards, a real endpoint
//!   that already has a mapping and opens a connection whose return tuple would steer to another
//!   shard is refused (`drop_pat_steer_conflict`); with one worker this cannot happen. Steering
//!   PAT return traffic by mapped port range (VPP's approach) would remove the limit.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod config;
pub mod frag;
pub mod hash;
pub mod offload;
pub mod records;
pub mod sa;
mod shard;
mod tcp;

use serde::Serialize;

pub use config::{
    AccessRule, Action, Capacities, ConfigError, IfacePolicy, NatRule, Prefix, RuleProto,
    StateConfig, Timeouts,
};
pub use offload::{OffloadRef, OffloadRemoval};
pub use records::{NullSink, RecordSink};
pub use sa::{Cipher, Integrity, SaDirection, SaEntry, SaError, SaView};
pub use shard::{BulkCursor, BulkProgress, ConnView, Lookup, Shard, SweepProgress, XlateView};
pub use tcp::{TcpState, TimeoutClass};

/// The protocols that are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Proto {
    /// ICMP (echo request/reply).
    Icmp = 1,
    /// TCP.
    Tcp = 6,
    /// UDP.
    Udp = 17,
}

impl Proto {
    /// From the IP protocol number.
    pub const fn from_u8(v: u8) -> Option<Proto> {
        match v {
            1 => Some(Proto::Icmp),
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
    /// `icmp`, `tcp`, `udp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Icmp => "icmp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A flow as seen on the wire: addresses and ports in host order. For ICMP echo the identifier
/// takes the port of the requesting side: a request is `(src, id, dst, 0)`, its reply
/// `(dst, 0, src, id)`, so a reply is exactly the reverse of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol (0: free slot).
    pub proto: u8,
}

impl FlowKey {
    /// The key of the opposite direction.
    #[inline]
    pub const fn reverse(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// Why the stateful stage dropped a packet. Each has a counter in [`StateCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// IPv4 or L4 header unreadable.
    Malformed,
    /// A later IPv4 fragment of a datagram whose first fragment did not pass (none seen yet,
    /// reordered, dropped, timed out, its entry refused by a full table), or a TCP fragment at
    /// offset 8 (RFC 1858). See [`crate::frag`].
    Fragment,
    /// A TCP segment that is not a SYN and matches no connection (no mid-stream pick-up).
    TcpNoConn,
    /// A TCP segment invalid for its connection's state (e.g. data before the handshake).
    TcpInvalid,
    /// New connection from an equal or lower security level, no permitting rule.
    SecurityLevel,
    /// A deny access rule matched.
    AccessRule,
    /// `rx_if` or `out_if` is not a configured interface.
    UnknownInterface,
    /// Connection table full.
    ConnTableFull,
    /// Xlate table full.
    XlateTableFull,
    /// No free PAT port found.
    PatExhausted,
    /// The real endpoint's PAT mapping cannot serve this destination from this shard.
    PatSteerConflict,
    /// The new connection's return tuple is already used by another connection.
    TupleConflict,
    /// An ICMP error (destination unreachable, source quench, redirect, time exceeded, parameter
    /// problem) whose embedded
    /// packet belongs to no connection, is itself neither TCP, UDP nor an ICMP echo of a tracked
    /// flow, or is not addressed to the sender of the embedded packet.
    IcmpErrorUnrelated,
    /// An ICMP error too short to hold the embedded IPv4 header and the 8 bytes after it
    /// (RFC 792), or whose embedded header is not IPv4.
    IcmpErrorMalformed,
}

impl DropReason {
    /// Counter name (`drop_tcp_no_conn`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "drop_malformed",
            DropReason::Fragment => "drop_fragment",
            DropReason::TcpNoConn => "drop_tcp_no_conn",
            DropReason::TcpInvalid => "drop_tcp_invalid",
            DropReason::SecurityLevel => "drop_security_level",
            DropReason::AccessRule => "drop_access_rule",
            DropReason::UnknownInterface => "drop_unknown_interface",
            DropReason::ConnTableFull => "drop_conn_table_full",
            DropReason::XlateTableFull => "drop_xlate_table_full",
            DropReason::PatExhausted => "drop_pat_exhausted",
            DropReason::PatSteerConflict => "drop_pat_steer_conflict",
            DropReason::TupleConflict => "drop_tuple_conflict",
            DropReason::IcmpErrorUnrelated => "drop_icmp_error_unrelated",
            DropReason::IcmpErrorMalformed => "drop_icmp_error_malformed",
        }
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one shard (plain `u64`s; the worker publishes them per batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounters {
    /// Connections created by the packet path.
    pub conn_created: u64,
    /// Connections deleted (close, RST, expiry).
    pub conn_deleted: u64,
    /// Xlates created.
    pub xlate_created: u64,
    /// Xlates deleted.
    pub xlate_deleted: u64,
    /// Packets of other protocols passed by the stateless policy.
    pub untracked_passed: u64,
    /// See [`DropReason::Malformed`].
    pub drop_malformed: u64,
    /// See [`DropReason::Fragment`].
    pub drop_fragment: u64,
    /// See [`DropReason::TcpNoConn`].
    pub drop_tcp_no_conn: u64,
    /// See [`DropReason::TcpInvalid`].
    pub drop_tcp_invalid: u64,
    /// See [`DropReason::SecurityLevel`].
    pub drop_security_level: u64,
    /// See [`DropReason::AccessRule`].
    pub drop_access_rule: u64,
    /// See [`DropReason::UnknownInterface`].
    pub drop_unknown_interface: u64,
    /// See [`DropReason::ConnTableFull`].
    pub drop_conn_table_full: u64,
    /// See [`DropReason::XlateTableFull`].
    pub drop_xlate_table_full: u64,
    /// See [`DropReason::PatExhausted`].
    pub drop_pat_exhausted: u64,
    /// See [`DropReason::PatSteerConflict`].
    pub drop_pat_steer_conflict: u64,
    /// See [`DropReason::TupleConflict`].
    pub drop_tuple_conflict: u64,
    /// See [`DropReason::IcmpErrorUnrelated`].
    pub drop_icmp_error_unrelated: u64,
    /// See [`DropReason::IcmpErrorMalformed`].
    pub drop_icmp_error_malformed: u64,
    /// ICMP errors about a connection passed, translated (related traffic).
    pub icmp_error_related: u64,
    /// Later fragments passed after their datagram's first (`crate::frag`).
    pub fragments_passed: u64,
    /// First fragments whose datagram the fragment table had no room to remember (they passed;
    /// their later fragments are dropped).
    pub frag_table_full: u64,
    /// SAs refused because the SA table was full.
    pub drop_sa_table_full: u64,
    /// Records applied.
    pub records_applied: u64,
    /// Records refused by `apply`.
    pub records_rejected: u64,
    /// Records emitted by the packet path and the sweep (bulk excluded).
    pub records_emitted: u64,
    /// Entries (connections, xlates, SAs) removed by [`Shard::bulk_sweep`]: deleted on the
    /// active while their delete record was lost.
    pub bulk_swept: u64,
    /// Live connections.
    pub conns: u64,
    /// Live xlates.
    pub xlates: u64,
    /// Live SAs.
    pub sas: u64,
}

impl StateCounters {
    #[inline]
    pub(crate) fn count_drop(&mut self, r: DropReason) {
        let c = match r {
            DropReason::Malformed => &mut self.drop_malformed,
            DropReason::Fragment => &mut self.drop_fragment,
            DropReason::TcpNoConn => &mut self.drop_tcp_no_conn,
            DropReason::TcpInvalid => &mut self.drop_tcp_invalid,
            DropReason::SecurityLevel => &mut self.drop_security_level,
            DropReason::AccessRule => &mut self.drop_access_rule,
            DropReason::UnknownInterface => &mut self.drop_unknown_interface,
            DropReason::ConnTableFull => &mut self.drop_conn_table_full,
            DropReason::XlateTableFull => &mut self.drop_xlate_table_full,
            DropReason::PatExhausted => &mut self.drop_pat_exhausted,
            DropReason::PatSteerConflict => &mut self.drop_pat_steer_conflict,
            DropReason::TupleConflict => &mut self.drop_tuple_conflict,
            DropReason::IcmpErrorUnrelated => &mut self.drop_icmp_error_unrelated,
            DropReason::IcmpErrorMalformed => &mut self.drop_icmp_error_malformed,
        };
        *c += 1;
    }
}

/// Why `apply` refused a record. Never a panic: records come from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Unknown record kind.
    #[error("record kind {0}: unknown")]
    UnknownKind(u8),
    /// Unknown op.
    #[error("record kind {kind}: unknown op {op}")]
    UnknownOp {
        /// Kind.
        kind: u8,
        /// Op.
        op: u8,
    },
    /// Payload length does not match the kind's struct.
    #[error("record kind {kind}: payload is {len} bytes, expected {want}")]
    Length {
        /// Kind.
        kind: u8,
        /// Length received.
        len: usize,
        /// Length expected.
        want: usize,
    },
    /// A field is out of range.
    #[error("record kind {kind}: {what}")]
    Invalid {
        /// Kind.
        kind: u8,
        /// What is wrong.
        what: &'static str,
    },
    /// The table for this kind is full on this unit.
    #[error("record kind {kind}: table full")]
    TableFull {
        /// Kind.
        kind: u8,
    },
    /// ARP records belong to the dataplane's ARP table, not to a shard: the caller routes
    /// `KIND_ARP` there ([`records::ArpRecord::parse`]).
    #[error("record kind 3 (arp): applied by the ARP table, not by the state shard")]
    NotMine,
}

/// The worker a packet belongs to: `steer_hash(tuple) % shards`, symmetric in source and
/// destination. `ip` is the IPv4 datagram. An ICMP error about a TCP, UDP or ICMP echo packet
/// hashes the embedded packet's tuple, so it lands on the worker owning that connection.
/// Unparseable packets, non-first fragments and other protocols hash on addresses only (ports
/// 0). `shards == 0` is treated as 1.
pub fn steer(ip: &[u8], shards: u16) -> u16 {
    steer_real(ip, shards, &[])
}

/// [`steer`] on the real-side tuple: an address (and, for static PAT, port) that is the mapped
/// side of a static NAT rule in `nat` is replaced by its real one before hashing, because the
/// two directions of a statically translated flow carry different tuples and no port choice can
/// reconcile them (dynamic PAT does, by choosing its port: its rules are ignored here). Linear
/// in the static rules; [`Shard::owner`] is the per-worker entry point.
pub(crate) fn steer_real(ip: &[u8], shards: u16, nat: &[config::NatRule]) -> u16 {
    let shards = u64::from(shards.max(1));
    let h = match shard::parse(ip) {
        Ok(p) => {
            let k = p.key;
            let (src, sport) = static_real(nat, k.proto, k.src, k.sport);
            let (dst, dport) = static_real(nat, k.proto, k.dst, k.dport);
            hash::steer_tuple(k.proto, src, sport, dst, dport)
        }
        Err(_) => {
            if ip.len() >= 20 {
                let s = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
                let d = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
                hash::steer_tuple(ip[9], s, 0, d, 0)
            } else {
                0
            }
        }
    };
    (h % shards) as u16
}

/// The real address and port behind `(addr, port)` if a static NAT rule maps it, else unchanged.
fn static_real(nat: &[config::NatRule], proto: u8, addr: u32, port: u16) -> (u32, u16) {
    for r in nat {
        if let config::NatRule::Static {
            real,
            mapped,
            port: ports,
            ..
        } = *r
        {
            if mapped.to_bits() != addr {
                continue;
            }
            match ports {
                None => return (real.to_bits(), port),
                Some((p, rp, mp)) if p as u8 == proto && mp == port => return (real.to_bits(), rp),
                Some(_) => {}
            }
        }
    }
    (addr, port)
}
