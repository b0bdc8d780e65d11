//! One worker's stateful tables (connections, PAT xlates, SAs) and everything done to them: the
//! two-phase packet stage (`lookup` / `commit`), policy, NAT rewrite, the incremental expiry
//! sweep, record emission and application, bulk sync, and the operator views.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use serde::Serialize;
use tandem_wire::checksum;
use tandem_wire::{Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket};
use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};

use crate::config::{AccessRule, Action, IfacePolicy, NatRule, RuleProto, StateConfig};
use crate::frag::{fragment, FragKey, FragTable, Fragment};
use crate::hash::{self, Index, Keyed, Prng};
use crate::offload::{OffloadRef, OffloadRemoval, REMOVALS_MAX};
use crate::records::{
    self, ConnRecord, RecordSink, SaRecord, XlateRecord, CONN_FLAG_HTTP, CONN_FLAG_PAT, KIND_CONN,
    KIND_SA, KIND_XLATE, OP_DELETE, OP_UPSERT, XLATE_PAT,
};
use crate::sa::{SaDirection, SaEntry, SaError, SaSlot, SaView};
use crate::tcp::{self, Step, TcpState, TimeoutClass};
use crate::{ApplyError, ConfigError, DropReason, FlowKey, StateCounters};

const NONE: u32 = u32::MAX;
const NS_PER_MS: u64 = 1_000_000;
/// Internal connection flag: records are emitted for this connection.
const F_REPL: u8 = 0x80;
/// Internal connection flags: the forwarder installed the originating / return direction in the
/// flow-offload table (`crate::offload`)...
const F_OFF_ORIG: u8 = 0x10;
const F_OFF_REPLY: u8 = 0x20;
const F_OFF: u8 = F_OFF_ORIG | F_OFF_REPLY;
/// ...or an install failed (table full): never offered again.
const F_NO_OFFLOAD: u8 = 0x40;
/// Random PAT port tries before `drop_pat_exhausted`. With `s` shards a try succeeds with
/// probability ≈ free/s, so 128 tries fail with probability (1 - 1/16)^128 ≈ 0.03 % at 16 shards
/// and an empty pool.
const PAT_TRIES: u32 = 128;
const PAT_FIRST_PORT: u16 = 1024;

const P_ICMP: u8 = 1;
const P_TCP: u8 = 6;
const P_UDP: u8 = 17;

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Conn {
    /// The tuple as received on the originating side (pre-NAT).
    orig: FlowKey,
    /// The tuple as forwarded (post-NAT). Return traffic arrives as `xl.reverse()`.
    xl: FlowKey,
    last_seen: u64,
    /// When a record was last emitted for it.
    touched: u64,
    /// PAT xlate slot, or `NONE`.
    xlate: u32,
    /// Bumped on every reuse of the slot, so a stale `Lookup` is detected.
    gen: u32,
    in_if: u16,
    out_if: u16,
    /// `TcpState as u8`, 0 for UDP/ICMP.
    state: u8,
    /// `CONN_FLAG_*` | `F_REPL`.
    flags: u8,
    /// The bulk generation it was last applied or created in (see [`Shard::bulk_mark`]); sits in
    /// what was tail padding, so a connection still takes 64 bytes.
    bulk_gen: u16,
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Xlate {
    real: u32,
    mapped: u32,
    real_port: u16,
    mapped_port: u16,
    /// 0: free slot.
    proto: u8,
    /// A record has been emitted (or it was applied from one).
    replicated: bool,
    refs: u32,
    /// When `refs` last dropped to 0.
    idle_since: u64,
    /// The bulk generation it was last applied or used in (padding before, still 32 bytes).
    bulk_gen: u16,
}

/// A parsed packet: its flow key as on the wire, TCP flags, and whether it is tracked. For an
/// ICMP error about a TCP/UDP/ICMP echo packet, `key` is the reverse of the embedded packet's
/// tuple (the direction the error travels, as a packet of that flow would) and `icmp_error` is
/// set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parsed {
    pub(crate) key: FlowKey,
    pub(crate) flags: u16,
    pub(crate) icmp_request: bool,
    pub(crate) tracked: bool,
    pub(crate) icmp_error: bool,
}

/// ICMP message types that carry an embedded datagram and are translated as related traffic:
/// the five error types Linux conntrack relates too. Source quench (deprecated, RFC 6633) and
/// redirect are rare, but left untracked they would pass the stateless policy untranslated and
/// show the outside a real inside address in their quote.
const ICMP_DST_UNREACHABLE: u8 = 3;
const ICMP_SOURCE_QUENCH: u8 = 4;
const ICMP_REDIRECT: u8 = 5;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAM_PROBLEM: u8 = 12;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;

/// The packet embedded in an ICMP error, offsets relative to the start of the ICMP message.
#[derive(Clone, Copy, Debug)]
struct Embedded {
    /// Offset of the embedded IPv4 header (always 8).
    ip: usize,
    /// Offset of the embedded L4 header (after the embedded header's options).
    l4: usize,
    /// The embedded packet's tuple, as it was sent (ICMP echo: identifier in the requester's
    /// port slot, as for [`FlowKey`]).
    key: FlowKey,
    /// The embedded packet is an ICMP echo request.
    request: bool,
}

/// Reads the packet embedded in an ICMP error message `icmp` (the outer IPv4 payload). `Ok(None)`:
/// the embedded protocol is not tracked (the error is then untracked too, like its flow).
fn embedded(icmp: &[u8]) -> Result<Option<Embedded>, DropReason> {
    const IP: usize = 8;
    // RFC 792: the embedded IPv4 header, options included, and at least 8 bytes after it.
    let Some(&vhl) = icmp.get(IP) else {
        return Err(DropReason::IcmpErrorMalformed);
    };
    let ehl = usize::from(vhl & 0x0f) * 4;
    if vhl >> 4 != 4 || ehl < 20 || icmp.len() < IP + ehl + 8 {
        return Err(DropReason::IcmpErrorMalformed);
    }
    let e = &icmp[IP..];
    let proto = e[9];
    if !matches!(proto, P_TCP | P_UDP | P_ICMP) {
        return Ok(None);
    }
    // A non-first fragment carries no ports: it cannot be matched to a connection.
    if u16::from_be_bytes([e[6], e[7]]) & 0x1fff != 0 {
        return Err(DropReason::IcmpErrorUnrelated);
    }
    let l4 = &e[ehl..];
    let be = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let mut key = FlowKey {
        src: u32::from_be_bytes([e[12], e[13], e[14], e[15]]),
        dst: u32::from_be_bytes([e[16], e[17], e[18], e[19]]),
        sport: 0,
        dport: 0,
        proto,
    };
    let mut request = false;
    match proto {
        P_ICMP => match l4[0] {
            ICMP_ECHO_REQUEST => {
                key.sport = be(4);
                request = true;
            }
            ICMP_ECHO_REPLY => key.dport = be(4),
            // Errors about errors are never sent (RFC 1122 3.2.2); other types have no flow.
            _ => return Err(DropReason::IcmpErrorUnrelated),
        },
        _ => {
            key.sport = be(0);
            key.dport = be(2);
        }
    }
    Ok(Some(Embedded {
        ip: IP,
        l4: IP + ehl,
        key,
        request,
    }))
}

/// Reads the flow key of an IPv4 datagram. Never panics.
pub(crate) fn parse(ip: &[u8]) -> Result<Parsed, DropReason> {
    let pkt = Ipv4Packet::new_checked(ip).map_err(|_| DropReason::Malformed)?;
    if pkt.frag_offset() != 0 {
        return Err(DropReason::Fragment);
    }
    let proto = pkt.protocol().0;
    let mut p = Parsed {
        key: FlowKey {
            src: pkt.src_addr().to_bits(),
            dst: pkt.dst_addr().to_bits(),
            sport: 0,
            dport: 0,
            proto,
        },
        flags: 0,
        icmp_request: false,
        tracked: true,
        icmp_error: false,
    };
    let l4 = pkt.payload();
    let be = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    match proto {
        P_TCP => {
            if l4.len() < 20 {
                return Err(DropReason::Malformed);
            }
            let off = usize::from(l4[12] >> 4) * 4;
            // A first fragment may end inside the options; the fixed header is what we need.
            if off < 20 || (off > l4.len() && !pkt.more_frags()) {
                return Err(DropReason::Malformed);
            }
            p.key.sport = be(0);
            p.key.dport = be(2);
            p.flags = be(12) & 0x0fff;
        }
        P_UDP => {
            if l4.len() < 8 {
                return Err(DropReason::Malformed);
            }
            p.key.sport = be(0);
            p.key.dport = be(2);
        }
        P_ICMP => {
            if l4.len() < 8 {
                return Err(DropReason::Malformed);
            }
            match l4[0] {
                ICMP_ECHO_REQUEST => {
                    p.key.sport = be(4);
                    p.icmp_request = true;
                }
                ICMP_ECHO_REPLY => p.key.dport = be(4),
                ICMP_DST_UNREACHABLE | ICMP_SOURCE_QUENCH | ICMP_REDIRECT | ICMP_TIME_EXCEEDED
                | ICMP_PARAM_PROBLEM => match embedded(l4)? {
                    Some(e) => {
                        p.key = e.key.reverse();
                        p.icmp_request = e.request;
                        p.icmp_error = true;
                    }
                    None => p.tracked = false,
                },
                _ => p.tracked = false,
            }
        }
        _ => p.tracked = false,
    }
    Ok(p)
}

/// Rewrites the datagram's tuple from `from` to `to` in place, updating the IPv4 header checksum
/// and the L4 checksum incrementally (RFC 1624), pseudo-header included. A UDP checksum of 0
/// ("none") stays 0. For ICMP echo the identifier sits in the port slot of the requesting side.
fn rewrite(ip: &mut [u8], from: &FlowKey, to: &FlowKey, icmp_request: bool) {
    if from == to || ip.len() < 20 {
        return;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    {
        let mut pkt = Ipv4Packet::new_unchecked(&mut *ip);
        if from.src != to.src {
            pkt.rewrite_src_addr(Ipv4Addr::from(to.src));
        }
        if from.dst != to.dst {
            pkt.rewrite_dst_addr(Ipv4Addr::from(to.dst));
        }
    }
    let Some(l4) = ip.get_mut(hl..tl) else {
        return;
    };
    match from.proto {
        P_TCP => rewrite_ports(&mut TcpPacket::new_unchecked(l4), from, to),
        P_UDP => rewrite_ports(&mut UdpPacket::new_unchecked(l4), from, to),
        P_ICMP => {
            // The ICMP checksum has no pseudo-header: only the identifier matters.
            let (old, new) = if icmp_request {
                (from.sport, to.sport)
            } else {
                (from.dport, to.dport)
            };
            if old != new {
                let mut i = Icmpv4Packet::new_unchecked(l4);
                let c = checksum::update_u16(i.checksum(), old, new);
                i.set_echo_ident(new);
                i.set_checksum(c);
            }
        }
        _ => {}
    }
}

/// The TCP and UDP header operations a tuple rewrite needs (both put their ports and checksum in
/// the same places of the same computation).
trait PortHeader {
    fn set_src_port(&mut self, port: u16);
    fn set_dst_port(&mut self, port: u16);
    fn update_checksum_u16(&mut self, old: u16, new: u16);
    fn update_checksum_u32(&mut self, old: u32, new: u32);
}

macro_rules! port_header {
    ($t:ident) => {
        impl PortHeader for $t<&mut [u8]> {
            #[inline]
            fn set_src_port(&mut self, port: u16) {
                $t::set_src_port(self, port)
            }
            #[inline]
            fn set_dst_port(&mut self, port: u16) {
                $t::set_dst_port(self, port)
            }
            #[inline]
            fn update_checksum_u16(&mut self, old: u16, new: u16) {
                $t::update_checksum_u16(self, old, new)
            }
            #[inline]
            fn update_checksum_u32(&mut self, old: u32, new: u32) {
                $t::update_checksum_u32(self, old, new)
            }
        }
    };
}
port_header!(TcpPacket);
port_header!(UdpPacket);

/// The L4 half of [`rewrite`] for TCP and UDP: addresses into the pseudo-header checksum, ports
/// into the header and the checksum.
#[inline]
fn rewrite_ports(h: &mut impl PortHeader, from: &FlowKey, to: &FlowKey) {
    if from.src != to.src {
        h.update_checksum_u32(from.src, to.src);
    }
    if from.dst != to.dst {
        h.update_checksum_u32(from.dst, to.dst);
    }
    if from.sport != to.sport {
        h.set_src_port(to.sport);
        h.update_checksum_u16(from.sport, to.sport);
    }
    if from.dport != to.dport {
        h.set_dst_port(to.dport);
        h.update_checksum_u16(from.dport, to.dport);
    }
}

#[inline]
fn get16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

#[inline]
fn put16(b: &mut [u8], i: usize, v: u16) {
    b[i..i + 2].copy_from_slice(&v.to_be_bytes());
}

/// Rewrites an ICMP error in place as related traffic of a connection. The error travels like a
/// packet of the flow translated `from` → `to`; the embedded packet went the other way, so it is
/// rewritten from `from.reverse()` to `to.reverse()`. Outer header: the destination becomes
/// `to.dst`; the source becomes `to.src` when the connection translates that side, also when the
/// error comes from a router on the path rather than the peer (as Linux does: the translated
/// side's addresses do not leak). Checksums, all incrementally (RFC 1624), so a corrupt message
/// stays corrupt: the outer IPv4 header; the embedded IPv4 header; the embedded transport
/// checksum when it lies within the quoted bytes (UDP and ICMP always, TCP when 18 bytes of its
/// header are quoted; a UDP checksum of 0 stays 0), as Linux does; and the outer ICMP checksum,
/// which covers every embedded byte changed. The quoted payload and the ICMP fields (next-hop
/// MTU of fragmentation-needed, parameter-problem pointer) are untouched.
fn rewrite_icmp_error(ip: &mut [u8], from: &FlowKey, to: &FlowKey) {
    if ip.len() < 20 {
        return;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    {
        let mut pkt = Ipv4Packet::new_unchecked(&mut *ip);
        if from.src != to.src {
            pkt.rewrite_src_addr(Ipv4Addr::from(to.src));
        }
        if pkt.dst_addr().to_bits() != to.dst {
            pkt.rewrite_dst_addr(Ipv4Addr::from(to.dst));
        }
    }
    let Some(icmp) = ip.get_mut(hl..tl) else {
        return;
    };
    let Ok(Some(e)) = embedded(icmp) else {
        return;
    };
    let et = to.reverse();
    let proto = e.key.proto;
    let mut ic = get16(icmp, 2);
    let eip_off = e.ip + 10;
    let mut eip = get16(icmp, eip_off);
    let tc_off = match proto {
        P_TCP => Some(e.l4 + 16).filter(|&o| o + 2 <= icmp.len()),
        P_UDP => Some(e.l4 + 6).filter(|&o| get16(icmp, o) != 0),
        _ => Some(e.l4 + 2),
    };
    let tc_old = tc_off.map_or(0, |o| get16(icmp, o));
    let mut tc = tc_old;
    for (off, new) in [(e.ip + 12, et.src), (e.ip + 16, et.dst)] {
        let old = u32::from_be_bytes([icmp[off], icmp[off + 1], icmp[off + 2], icmp[off + 3]]);
        if old != new {
            icmp[off..off + 4].copy_from_slice(&new.to_be_bytes());
            ic = checksum::update_u32(ic, old, new);
            eip = checksum::update_u32(eip, old, new);
            // TCP and UDP checksums cover the addresses (pseudo-header); ICMP's does not.
            if proto != P_ICMP {
                tc = checksum::update_u32(tc, old, new);
            }
        }
    }
    let eip_old = get16(icmp, eip_off);
    if eip != eip_old {
        put16(icmp, eip_off, eip);
        ic = checksum::update_u16(ic, eip_old, eip);
    }
    // Ports, or the echo identifier in the requester's slot (listed twice: the second is a no-op).
    let ports = match proto {
        P_ICMP if e.request => [(e.l4 + 4, et.sport); 2],
        P_ICMP => [(e.l4 + 4, et.dport); 2],
        _ => [(e.l4, et.sport), (e.l4 + 2, et.dport)],
    };
    for (off, new) in ports {
        let old = get16(icmp, off);
        if old != new {
            put16(icmp, off, new);
            ic = checksum::update_u16(ic, old, new);
            tc = checksum::update_u16(tc, old, new);
        }
    }
    if let Some(o) = tc_off {
        // A computed UDP checksum of 0 is sent as 0xffff (0 means "none").
        if proto == P_UDP && tc == 0 {
            tc = 0xffff;
        }
        if tc != tc_old {
            put16(icmp, o, tc);
            ic = checksum::update_u16(ic, tc_old, tc);
        }
    }
    put16(icmp, 2, ic);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Drop(DropReason),
    /// A later fragment of a datagram whose first fragment this shard has not seen (yet): the
    /// forwarder may hold it until the first passes ([`Lookup::awaiting_first`]). Not counted
    /// here; a drop of [`DropReason::Fragment`] to a caller that does not hold it.
    AwaitFirst(FragKey),
    /// A later fragment of a datagram whose first fragment passed: its addresses become these.
    Fragment {
        src: u32,
        dst: u32,
    },
    Untracked,
    Existing,
    /// An ICMP error about a connection's packet.
    Related,
    New,
}

/// The result of [`Shard::lookup`], handed back to [`Shard::commit`] after routing. Small and
/// `Copy`; it stays valid across other packets' commits (a reused slot is detected).
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    kind: Kind,
    key: FlowKey,
    route_dst: u32,
    /// Destination after static de-NAT (new flows).
    dnat_dst: u32,
    dnat_dport: u16,
    rx_if: u16,
    flags: u16,
    icmp_request: bool,
    from_orig: bool,
    idx: u32,
    gen: u32,
    /// The datagram is a first fragment: `commit` remembers it for the later ones.
    first_fragment: bool,
}

impl Lookup {
    fn drop(r: DropReason) -> Lookup {
        Lookup {
            kind: Kind::Drop(r),
            key: FlowKey::default(),
            route_dst: 0,
            dnat_dst: 0,
            dnat_dport: 0,
            rx_if: 0,
            flags: 0,
            icmp_request: false,
            from_orig: false,
            idx: NONE,
            gen: 0,
            first_fragment: false,
        }
    }
    /// The destination to route on: the connection's next-hop side address (translated), or,
    /// for a new flow, the destination after static de-NAT.
    #[inline]
    pub fn route_dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.route_dst)
    }
    /// `Some` when the packet is to be dropped without routing.
    #[inline]
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self.kind {
            Kind::Drop(r) => Some(r),
            Kind::AwaitFirst(_) => Some(DropReason::Fragment),
            _ => None,
        }
    }

    /// A later fragment that arrived before its datagram's first fragment passed (reordered
    /// on the way, or its first was refused): the datagram it belongs to. The shard counted
    /// nothing; the caller holds it until the first passes, or drops and counts it.
    #[inline]
    pub fn awaiting_first(&self) -> Option<FragKey> {
        match self.kind {
            Kind::AwaitFirst(k) => Some(k),
            _ => None,
        }
    }
    /// True when the packet belongs to an existing connection: one of its packets, or an ICMP
    /// error about one ([`Lookup::is_related`]).
    #[inline]
    pub fn is_existing(&self) -> bool {
        matches!(self.kind, Kind::Existing | Kind::Related)
    }
    /// True when the packet is an ICMP error about an existing connection's packet (related
    /// traffic: translated, never creates or refreshes a connection).
    #[inline]
    pub fn is_related(&self) -> bool {
        self.kind == Kind::Related
    }
    /// True when the packet would create a connection.
    #[inline]
    pub fn is_new(&self) -> bool {
        self.kind == Kind::New
    }
}

/// Where [`Shard::bulk`] is in the tables. Start with `BulkCursor::default()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkCursor {
    phase: u8,
    pos: usize,
    done: usize,
    total: usize,
    started: bool,
}

/// Progress of a bulk sync: `done` of `total` table entries visited (`total` is the occupancy
/// when the bulk started, so it is an estimate while the tables change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BulkProgress {
    /// Entries visited so far.
    pub done: usize,
    /// Entries at the start.
    pub total: usize,
    /// Every table has been walked.
    pub finished: bool,
}

/// Progress of [`Shard::bulk_sweep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SweepProgress {
    /// Entries removed by this call.
    pub swept: usize,
    /// The sweep has walked every table (or none was pending).
    pub finished: bool,
}

/// A connection as `show conn` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConnView<'a> {
    /// `tcp`, `udp`, `icmp`.
    pub proto: &'static str,
    /// Ingress interface of the originating side.
    pub in_if: &'a str,
    /// Egress interface.
    pub out_if: &'a str,
    /// Original source.
    pub src: Ipv4Addr,
    /// Original source port (ICMP: echo identifier).
    pub sport: u16,
    /// Original destination.
    pub dst: Ipv4Addr,
    /// Original destination port.
    pub dport: u16,
    /// Translated source.
    pub xlated_src: Ipv4Addr,
    /// Translated source port.
    pub xlated_sport: u16,
    /// Translated destination.
    pub xlated_dst: Ipv4Addr,
    /// Translated destination port.
    pub xlated_dport: u16,
    /// TCP state name, `-` for UDP/ICMP.
    pub state: &'static str,
    /// Time since the last packet.
    pub idle_ms: u64,
    /// Records are emitted for it.
    pub replicated: bool,
    /// Some direction of it is forwarded by the flow-offload fast path.
    pub offloaded: bool,
}

/// A PAT xlate as `show xlate` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct XlateView {
    /// `tcp`, `udp`, `icmp`.
    pub proto: &'static str,
    /// `pat`.
    pub kind: &'static str,
    /// Real address.
    pub real: Ipv4Addr,
    /// Real port.
    pub real_port: u16,
    /// Mapped address.
    pub mapped: Ipv4Addr,
    /// Mapped port.
    pub mapped_port: u16,
    /// Connections using it.
    pub conns: u32,
    /// Time since the last connection went (0 while in use).
    pub idle_ms: u64,
}

enum Snat {
    Static { mapped: u32, port: Option<u16> },
    Pat { mapped: u32 },
}

/// One worker's stateful tables. See the crate doc for the packet stage and the module doc of
/// [`crate::records`] for replication.
pub struct Shard {
    shard: u16,
    shards: u16,
    keyed: Keyed,
    prng: Prng,
    /// Datagrams whose first fragment passed: their addresses after translation
    /// (`crate::frag`).
    frags: FragTable<(u32, u32)>,
    conns: Box<[Conn]>,
    conn_free: Vec<u32>,
    conn_index: Index,
    xlates: Box<[Xlate]>,
    xlate_free: Vec<u32>,
    xlate_index: Index,
    sas: Box<[Option<SaSlot>]>,
    sa_free: Vec<u32>,
    sa_index: Index,
    ifaces: Vec<IfacePolicy>,
    nat: Vec<NatRule>,
    access: Vec<AccessRule>,
    replicate_http: bool,
    /// Idle timeout in ns per `TimeoutClass as usize`.
    timeout_ns: [u64; TimeoutClass::COUNT],
    pat_xlate_ns: u64,
    sweep_conn: usize,
    sweep_xlate: usize,
    next_gen: u32,
    /// The current bulk generation (see [`Shard::bulk_mark`]).
    bulk_gen: u16,
    /// Where [`Shard::bulk_sweep`] is; `None` when no sweep is pending.
    bulk_sweep: Option<SweepCursor>,
    counters: StateCounters,
    /// Fast-path entries to take out (`crate::offload`), drained by the forwarder.
    offload_removals: Vec<OffloadRemoval>,
    /// The removal queue overflowed or the tables were cleared: the forwarder must clear the
    /// whole fast-path table of this shard.
    offload_flush: bool,
}

/// Position of a pending bulk sweep: table (0 conns, 1 xlates, 2 SAs) and slot.
#[derive(Clone, Copy, Debug)]
struct SweepCursor {
    phase: u8,
    pos: usize,
}

#[inline]
fn ms(ns: u64) -> u64 {
    ns / NS_PER_MS
}

impl Shard {
    /// Allocates every table from `config.capacities` (validated first). `shard` is this shard's
    /// index among `shards` (for PAT steering); `seed` is a per-shard random value keying the
    /// table hashes and the PAT port choice.
    pub fn new(
        config: &StateConfig,
        shard: u16,
        shards: u16,
        seed: u64,
    ) -> Result<Shard, ConfigError> {
        config.validate()?;
        let c = config.capacities;
        let (nc, nx, ns) = (c.conns as usize, c.xlates as usize, c.sas as usize);
        let t = &config.timeouts;
        let mut timeout_ns = [u64::MAX; TimeoutClass::COUNT];
        let d = |d: core::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        timeout_ns[TimeoutClass::TcpEstablished as usize] = d(t.tcp_established);
        timeout_ns[TimeoutClass::TcpHalfClosed as usize] = d(t.tcp_half_closed);
        timeout_ns[TimeoutClass::TcpEmbryonic as usize] = d(t.tcp_embryonic);
        timeout_ns[TimeoutClass::TcpTimeWait as usize] = d(t.tcp_time_wait);
        timeout_ns[TimeoutClass::Udp as usize] = d(t.udp);
        timeout_ns[TimeoutClass::Icmp as usize] = d(t.icmp);
        // Free lists are stacks popped from the end: push in reverse so slot 0 is used first.
        let free = |n: usize| (0..n as u32).rev().collect::<Vec<u32>>();
        Ok(Shard {
            shard,
            shards: shards.max(1),
            keyed: Keyed::new(seed),
            prng: Prng::new(seed),
            frags: FragTable::new(seed),
            conns: vec![Conn::default(); nc].into_boxed_slice(),
            conn_free: free(nc),
            // Two keys per connection: original and reply tuple.
            conn_index: Index::new(nc * 2),
            xlates: vec![Xlate::default(); nx].into_boxed_slice(),
            xlate_free: free(nx),
            xlate_index: Index::new(nx * 2),
            sas: vec![None; ns].into_boxed_slice(),
            sa_free: free(ns),
            sa_index: Index::new(ns),
            ifaces: config.interfaces.clone(),
            nat: config.nat.clone(),
            access: config.access.clone(),
            replicate_http: config.replicate_http,
            timeout_ns,
            pat_xlate_ns: d(t.pat_xlate),
            sweep_conn: 0,
            sweep_xlate: 0,
            next_gen: 1,
            bulk_gen: 0,
            bulk_sweep: None,
            counters: StateCounters::default(),
            offload_removals: Vec::with_capacity(REMOVALS_MAX),
            offload_flush: false,
        })
    }

    /// Bytes taken by the tables (connections, xlates, SAs, their indexes and free lists).
    pub fn memory_bytes(&self) -> usize {
        self.conn_memory_bytes() + self.sa_memory_bytes() + self.frags.memory_bytes()
    }

    /// Bytes of the connection and xlate tables with their indexes and free lists: the figure
    /// behind "bytes per connection including its xlate".
    pub fn conn_memory_bytes(&self) -> usize {
        use core::mem::size_of;
        self.conns.len() * size_of::<Conn>()
            + self.conn_free.capacity() * size_of::<u32>()
            + self.conn_index.memory_bytes()
            + self.xlates.len() * size_of::<Xlate>()
            + self.xlate_free.capacity() * size_of::<u32>()
            + self.xlate_index.memory_bytes()
    }

    /// Bytes of the SA table.
    pub fn sa_memory_bytes(&self) -> usize {
        use core::mem::size_of;
        self.sas.len() * size_of::<Option<SaSlot>>()
            + self.sa_free.capacity() * size_of::<u32>()
            + self.sa_index.memory_bytes()
    }

    /// Live `(connections, xlates, SAs)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.conns.len() - self.conn_free.len(),
            self.xlates.len() - self.xlate_free.len(),
            self.sas.len() - self.sa_free.len(),
        )
    }

    /// Counters, occupancy included.
    pub fn counters(&self) -> StateCounters {
        let (c, x, s) = self.counts();
        let mut k = self.counters;
        k.conns = c as u64;
        k.xlates = x as u64;
        k.sas = s as u64;
        k
    }

    // ---------------------------------------------------------------- indexes

    #[inline]
    fn conn_slot_hash(keyed: &Keyed, conns: &[Conn], v: u32) -> u64 {
        let c = &conns[(v >> 1) as usize];
        if v & 1 == 0 {
            keyed.flow(&c.orig)
        } else {
            keyed.flow(&c.xl.reverse())
        }
    }

    /// The connection `k` belongs to, and whether `k` is its original direction.
    #[inline]
    fn conn_find(&self, k: &FlowKey) -> Option<(u32, bool)> {
        let conns = &self.conns;
        self.conn_index
            .find(self.keyed.flow(k), |v| {
                let c = &conns[(v >> 1) as usize];
                if v & 1 == 0 {
                    c.orig == *k
                } else {
                    c.xl.reverse() == *k
                }
            })
            .map(|v| (v >> 1, v & 1 == 0))
    }

    fn conn_index_insert(&mut self, idx: u32) {
        let c = self.conns[idx as usize];
        self.conn_index.insert(self.keyed.flow(&c.orig), idx << 1);
        self.conn_index
            .insert(self.keyed.flow(&c.xl.reverse()), (idx << 1) | 1);
    }

    fn conn_index_remove(&mut self, idx: u32) {
        let c = self.conns[idx as usize];
        let (keyed, conns) = (&self.keyed, &self.conns);
        self.conn_index.remove(keyed.flow(&c.orig), idx << 1, |v| {
            Self::conn_slot_hash(keyed, conns, v)
        });
        self.conn_index
            .remove(keyed.flow(&c.xl.reverse()), (idx << 1) | 1, |v| {
                Self::conn_slot_hash(keyed, conns, v)
            });
    }

    #[inline]
    fn xhash_real(keyed: &Keyed, proto: u8, real: u32, port: u16, mapped: u32) -> u64 {
        keyed.two(
            (u64::from(real) << 32) | u64::from(mapped),
            (1u64 << 40) | (u64::from(proto) << 16) | u64::from(port),
        )
    }

    #[inline]
    fn xhash_mapped(keyed: &Keyed, proto: u8, mapped: u32, port: u16) -> u64 {
        keyed.two(
            u64::from(mapped),
            (2u64 << 40) | (u64::from(proto) << 16) | u64::from(port),
        )
    }

    fn xlate_slot_hash(keyed: &Keyed, xlates: &[Xlate], v: u32) -> u64 {
        let x = &xlates[(v >> 1) as usize];
        if v & 1 == 0 {
            Self::xhash_real(keyed, x.proto, x.real, x.real_port, x.mapped)
        } else {
            Self::xhash_mapped(keyed, x.proto, x.mapped, x.mapped_port)
        }
    }

    /// The PAT xlate of a real endpoint towards a mapped address (real → mapped index).
    fn xlate_find_real(&self, proto: u8, real: u32, port: u16, mapped: u32) -> Option<u32> {
        let xs = &self.xlates;
        self.xlate_index
            .find(
                Self::xhash_real(&self.keyed, proto, real, port, mapped),
                |v| {
                    let x = &xs[(v >> 1) as usize];
                    v & 1 == 0
                        && x.proto == proto
                        && x.real == real
                        && x.real_port == port
                        && x.mapped == mapped
                },
            )
            .map(|v| v >> 1)
    }

    /// The PAT xlate owning a mapped endpoint (mapped → real, the de-NAT index).
    fn xlate_find_mapped(&self, proto: u8, mapped: u32, port: u16) -> Option<u32> {
        let xs = &self.xlates;
        self.xlate_index
            .find(Self::xhash_mapped(&self.keyed, proto, mapped, port), |v| {
                let x = &xs[(v >> 1) as usize];
                v & 1 == 1 && x.proto == proto && x.mapped == mapped && x.mapped_port == port
            })
            .map(|v| v >> 1)
    }

    fn xlate_index_insert(&mut self, xi: u32) {
        let x = self.xlates[xi as usize];
        let k = &self.keyed;
        self.xlate_index.insert(
            Self::xhash_real(k, x.proto, x.real, x.real_port, x.mapped),
            xi << 1,
        );
        self.xlate_index.insert(
            Self::xhash_mapped(k, x.proto, x.mapped, x.mapped_port),
            (xi << 1) | 1,
        );
    }

    fn xlate_remove(&mut self, xi: u32) {
        let x = self.xlates[xi as usize];
        if x.proto == 0 {
            return;
        }
        let (keyed, xlates) = (&self.keyed, &self.xlates);
        self.xlate_index.remove(
            Self::xhash_real(keyed, x.proto, x.real, x.real_port, x.mapped),
            xi << 1,
            |v| Self::xlate_slot_hash(keyed, xlates, v),
        );
        self.xlate_index.remove(
            Self::xhash_mapped(keyed, x.proto, x.mapped, x.mapped_port),
            (xi << 1) | 1,
            |v| Self::xlate_slot_hash(keyed, xlates, v),
        );
        self.xlates[xi as usize] = Xlate::default();
        self.xlate_free.push(xi);
        self.counters.xlate_deleted += 1;
    }

    /// Removes xlate `xi` and, first, every connection still using it, without records: the
    /// active's record maps its real endpoint (or its mapped endpoint) differently, and the
    /// active's view wins (a PAT mapping is per real endpoint, so the old one cannot coexist).
    /// Such conflicts arise only from this unit's own forwarding (e.g. a few packets passed while
    /// it was active before a restart or split brain) or lost deletes, so the connection scan
    /// (stopped once the xlate is unreferenced) is rare and off the packet path.
    fn xlate_evict(&mut self, xi: u32, now: u64) {
        let mut i = 0;
        while self.xlates[xi as usize].refs != 0 && i < self.conns.len() {
            let c = &self.conns[i];
            if c.orig.proto != 0 && c.xlate == xi {
                self.conn_delete(i as u32, now, &mut records::NullSink);
            }
            i += 1;
        }
        self.xlate_remove(xi);
    }

    fn xlate_release(&mut self, xi: u32, now: u64) {
        if let Some(x) = self.xlates.get_mut(xi as usize) {
            x.refs = x.refs.saturating_sub(1);
            if x.refs == 0 {
                x.idle_since = now;
            }
        }
    }

    // ---------------------------------------------------------------- records

    fn conn_record(c: &Conn, now: u64) -> ConnRecord {
        ConnRecord {
            src: c.orig.src.to_be_bytes(),
            dst: c.orig.dst.to_be_bytes(),
            xsrc: c.xl.src.to_be_bytes(),
            xdst: c.xl.dst.to_be_bytes(),
            sport: U16::new(c.orig.sport),
            dport: U16::new(c.orig.dport),
            xsport: U16::new(c.xl.sport),
            xdport: U16::new(c.xl.dport),
            in_if: U16::new(c.in_if),
            out_if: U16::new(c.out_if),
            proto: c.orig.proto,
            tcp_state: c.state,
            class: Self::class_of(c) as u8,
            flags: c.flags & (CONN_FLAG_HTTP | CONN_FLAG_PAT),
            idle_ms: U32::new(
                u32::try_from(ms(now.saturating_sub(c.last_seen))).unwrap_or(u32::MAX),
            ),
            _pad: [0; 4],
        }
    }

    fn xlate_record(x: &Xlate) -> XlateRecord {
        XlateRecord {
            proto: x.proto,
            kind: XLATE_PAT,
            _pad: [0; 2],
            real: x.real.to_be_bytes(),
            mapped: x.mapped.to_be_bytes(),
            real_port: U16::new(x.real_port),
            mapped_port: U16::new(x.mapped_port),
        }
    }

    fn xlate_key(x: &Xlate) -> u64 {
        (u64::from(x.proto) << 48) | (u64::from(x.real) << 16) | u64::from(x.real_port)
    }

    fn emit_conn(&mut self, idx: u32, op: u8, now: u64, sink: &mut impl RecordSink) {
        let c = &mut self.conns[idx as usize];
        if c.flags & F_REPL == 0 {
            return;
        }
        c.touched = now;
        let r = Self::conn_record(c, now);
        sink.put(KIND_CONN, op, hash::record_key(&c.orig), r.as_bytes());
        self.counters.records_emitted += 1;
    }

    fn emit_xlate(&mut self, xi: u32, op: u8, sink: &mut impl RecordSink) {
        let x = &self.xlates[xi as usize];
        let r = Self::xlate_record(x);
        sink.put(KIND_XLATE, op, Self::xlate_key(x), r.as_bytes());
        self.counters.records_emitted += 1;
    }

    // ---------------------------------------------------------------- helpers

    fn class_of(c: &Conn) -> TimeoutClass {
        match c.orig.proto {
            P_TCP => TcpState::from_u8(c.state).map_or(TimeoutClass::TcpEmbryonic, TcpState::class),
            P_UDP => TimeoutClass::Udp,
            _ => TimeoutClass::Icmp,
        }
    }

    fn conn_delete(&mut self, idx: u32, now: u64, sink: &mut impl RecordSink) {
        let c = self.conns[idx as usize];
        if c.orig.proto == 0 {
            return;
        }
        self.emit_conn(idx, OP_DELETE, now, sink);
        self.offload_remove(idx, false);
        self.conn_index_remove(idx);
        if c.xlate != NONE {
            self.xlate_release(c.xlate, now);
        }
        self.conns[idx as usize] = Conn {
            gen: c.gen,
            ..Conn::default()
        };
        self.conn_free.push(idx);
        self.counters.conn_deleted += 1;
    }

    fn replicable(&self, proto: u8, in_if: u16, http: bool) -> bool {
        match proto {
            P_TCP => !http || self.replicate_http,
            P_UDP => true,
            // seeds 004: ICMP replicated only if the interface is in an ASR group.
            P_ICMP => self
                .ifaces
                .get(usize::from(in_if))
                .is_some_and(|i| i.asr_group.is_some()),
            _ => false,
        }
    }

    /// The security-level / access-rule decision for a new flow.
    fn permit(
        &self,
        rx_if: u16,
        out_if: u16,
        proto: u8,
        src: u32,
        dst: u32,
        dport: u16,
    ) -> Result<(), DropReason> {
        let (Some(rx), Some(out)) = (
            self.ifaces.get(usize::from(rx_if)),
            self.ifaces.get(usize::from(out_if)),
        ) else {
            return Err(DropReason::UnknownInterface);
        };
        for r in self.access.iter().filter(|r| r.interface == rx_if) {
            let proto_ok = match r.proto {
                RuleProto::Any => true,
                RuleProto::Tcp => proto == P_TCP,
                RuleProto::Udp => proto == P_UDP,
                RuleProto::Icmp => proto == P_ICMP,
            };
            let port_ok =
                !matches!(proto, P_TCP | P_UDP) || (r.dst_ports.0..=r.dst_ports.1).contains(&dport);
            if proto_ok && port_ok && r.src.contains(src) && r.dst.contains(dst) {
                return match r.action {
                    Action::Permit => Ok(()),
                    Action::Deny => Err(DropReason::AccessRule),
                };
            }
        }
        if rx.security_level > out.security_level {
            Ok(())
        } else {
            Err(DropReason::SecurityLevel)
        }
    }

    /// Static de-NAT of a new flow's destination (first matching static rule for `rx_if`).
    fn static_denat(&self, rx_if: u16, k: &FlowKey) -> (u32, u16) {
        for r in &self.nat {
            if let NatRule::Static {
                real,
                mapped_if,
                mapped,
                port,
                ..
            } = *r
            {
                if mapped_if != rx_if || mapped.to_bits() != k.dst {
                    continue;
                }
                match port {
                    Some((p, rp, mp)) => {
                        if p as u8 == k.proto && k.dport == mp {
                            return (real.to_bits(), rp);
                        }
                    }
                    None => return (real.to_bits(), k.dport),
                }
            }
        }
        (k.dst, k.dport)
    }

    /// The source translation for a new flow from `rx_if` to `out_if` (first match).
    fn snat(&self, rx_if: u16, out_if: u16, k: &FlowKey) -> Option<Snat> {
        for r in &self.nat {
            match *r {
                NatRule::Static {
                    real_if,
                    real,
                    mapped_if,
                    mapped,
                    port,
                } => {
                    if real_if != rx_if || mapped_if != out_if || real.to_bits() != k.src {
                        continue;
                    }
                    match port {
                        Some((p, rp, mp)) => {
                            if p as u8 == k.proto && k.sport == rp {
                                return Some(Snat::Static {
                                    mapped: mapped.to_bits(),
                                    port: Some(mp),
                                });
                            }
                        }
                        None => {
                            return Some(Snat::Static {
                                mapped: mapped.to_bits(),
                                port: None,
                            })
                        }
                    }
                }
                NatRule::DynamicPat {
                    real_if,
                    real,
                    mapped_if,
                    mapped,
                } => {
                    if real_if == rx_if && mapped_if == out_if && real.contains(k.src) {
                        return Some(Snat::Pat {
                            mapped: mapped.to_bits(),
                        });
                    }
                }
            }
        }
        None
    }

    /// The worker (shard index) that owns `ip`'s flow, identical on every worker and on both
    /// units: [`crate::steer`] with statically translated addresses taken on their real side, so
    /// both directions of a static NAT flow land on one worker. The worker handoff uses it.
    pub fn owner(&self, ip: &[u8]) -> u16 {
        crate::steer_real(ip, self.shards, &self.nat)
    }

    #[inline]
    fn steers_here(&self, proto: u8, a: u32, pa: u16, b: u32, pb: u16) -> bool {
        self.shards <= 1
            || (hash::steer_tuple(proto, a, pa, b, pb) % u64::from(self.shards))
                == u64::from(self.shard)
    }

    /// Finds (and refs) or allocates the PAT xlate of `k`'s source towards `mapped`, such that
    /// the return tuple `(peer → mapped:port)` steers to this shard.
    fn pat_xlate(
        &mut self,
        now: u64,
        k: &FlowKey,
        mapped: u32,
        peer: u32,
        peer_port: u16,
    ) -> Result<u32, DropReason> {
        let proto = k.proto;
        if let Some(xi) = self.xlate_find_real(proto, k.src, k.sport, mapped) {
            let mp = self.xlates[xi as usize].mapped_port;
            if !self.steers_here(proto, peer, peer_port, mapped, mp) {
                return Err(DropReason::PatSteerConflict);
            }
            let x = &mut self.xlates[xi as usize];
            x.refs += 1;
            x.bulk_gen = self.bulk_gen;
            return Ok(xi);
        }
        let Some(xi) = self.xlate_free.pop() else {
            return Err(DropReason::XlateTableFull);
        };
        let span = u64::from(u16::MAX - PAT_FIRST_PORT) + 1;
        for _ in 0..PAT_TRIES {
            let port = PAT_FIRST_PORT + (self.prng.next() % span) as u16;
            if !self.steers_here(proto, peer, peer_port, mapped, port)
                || self.xlate_find_mapped(proto, mapped, port).is_some()
            {
                continue;
            }
            self.xlates[xi as usize] = Xlate {
                real: k.src,
                mapped,
                real_port: k.sport,
                mapped_port: port,
                proto,
                replicated: false,
                refs: 1,
                idle_since: now,
                bulk_gen: self.bulk_gen,
            };
            self.xlate_index_insert(xi);
            self.counters.xlate_created += 1;
            return Ok(xi);
        }
        self.xlate_free.push(xi);
        Err(DropReason::PatExhausted)
    }

    #[inline]
    fn fail<T>(&mut self, r: DropReason) -> Result<T, DropReason> {
        self.counters.count_drop(r);
        Err(r)
    }

    // ---------------------------------------------------------------- packet stage

    /// Phase 1: find the packet's connection (either direction) or prepare a new flow (static
    /// de-NAT of the destination). `ip` is the IPv4 datagram received on `rx_if`. Drops decided
    /// here (malformed, non-first fragment, TCP non-SYN or ICMP non-request without a
    /// connection, ICMP error relating to no connection or truncated) are counted here.
    pub fn lookup(&mut self, now: u64, rx_if: u16, ip: &[u8]) -> Lookup {
        let first_fragment = match fragment(ip) {
            Some(Fragment::Later {
                key,
                offset,
                len,
                more,
            }) => return self.lookup_later_fragment(now, rx_if, key, offset, len, more),
            Some(Fragment::First { .. }) => true,
            None => false,
        };
        let p = match parse(ip) {
            Ok(p) => p,
            Err(r) => {
                self.counters.count_drop(r);
                return Lookup::drop(r);
            }
        };
        let mut lk = Lookup {
            kind: Kind::Untracked,
            key: p.key,
            route_dst: p.key.dst,
            dnat_dst: p.key.dst,
            dnat_dport: p.key.dport,
            rx_if,
            flags: p.flags,
            icmp_request: p.icmp_request,
            from_orig: true,
            idx: NONE,
            gen: 0,
            first_fragment,
        };
        if !p.tracked {
            return lk;
        }
        if p.icmp_error {
            return self.lookup_related(lk, ip);
        }
        if let Some((idx, from_orig)) = self.conn_find(&p.key) {
            let c = &self.conns[idx as usize];
            lk.kind = Kind::Existing;
            lk.idx = idx;
            lk.gen = c.gen;
            lk.from_orig = from_orig;
            lk.route_dst = if from_orig { c.xl.dst } else { c.orig.src };
            return lk;
        }
        if let Err(r) = Self::may_create(&p.key, p.flags, p.icmp_request) {
            self.counters.count_drop(r);
            return Lookup::drop(r);
        }
        let (d, dp) = self.static_denat(rx_if, &p.key);
        lk.kind = Kind::New;
        lk.dnat_dst = d;
        lk.dnat_dport = dp;
        lk.route_dst = d;
        lk
    }

    /// A later fragment follows its datagram's first: it passes, translated the same way, when
    /// the first passed (`crate::frag`). RFC 1858: a TCP fragment at offset 8 could rewrite the
    /// flags of the header the first fragment was checked with, so it never passes.
    fn lookup_later_fragment(
        &mut self,
        now: u64,
        rx_if: u16,
        key: FragKey,
        offset: u32,
        len: u32,
        more: bool,
    ) -> Lookup {
        if key.proto == P_TCP && offset == 8 {
            self.counters.count_drop(DropReason::Fragment);
            return Lookup::drop(DropReason::Fragment);
        }
        let Some((src, dst)) = self.frags.later(now, &key, offset, len, more) else {
            let mut lk = Lookup::drop(DropReason::Fragment);
            lk.kind = Kind::AwaitFirst(key);
            return lk;
        };
        Lookup {
            kind: Kind::Fragment { src, dst },
            key: FlowKey {
                src: key.src,
                dst: key.dst,
                sport: 0,
                dport: 0,
                proto: key.proto,
            },
            route_dst: dst,
            dnat_dst: dst,
            dnat_dport: 0,
            rx_if,
            flags: 0,
            icmp_request: false,
            from_orig: true,
            idx: NONE,
            gen: 0,
            first_fragment: false,
        }
    }

    /// An ICMP error whose embedded packet was sent along connection `lk.key.reverse()`: related
    /// when that connection exists and the error is addressed to the embedded packet's sender
    /// (RFC 792: errors go to the source of the offending datagram).
    fn lookup_related(&mut self, mut lk: Lookup, ip: &[u8]) -> Lookup {
        let outer_dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        let Some((idx, from_orig)) = self.conn_find(&lk.key) else {
            self.counters.count_drop(DropReason::IcmpErrorUnrelated);
            return Lookup::drop(DropReason::IcmpErrorUnrelated);
        };
        let c = &self.conns[idx as usize];
        let (to_dst, from_dst) = if from_orig {
            (c.xl.dst, c.orig.dst)
        } else {
            (c.orig.src, c.xl.src)
        };
        if outer_dst != from_dst {
            self.counters.count_drop(DropReason::IcmpErrorUnrelated);
            return Lookup::drop(DropReason::IcmpErrorUnrelated);
        }
        lk.kind = Kind::Related;
        lk.idx = idx;
        lk.gen = c.gen;
        lk.from_orig = from_orig;
        lk.route_dst = to_dst;
        lk
    }

    /// Strict creation rule: only a pure SYN opens a TCP connection (no mid-stream pick-up), only
    /// an echo request opens an ICMP one.
    fn may_create(k: &FlowKey, flags: u16, icmp_request: bool) -> Result<(), DropReason> {
        match k.proto {
            P_TCP if flags & (tcp::SYN | tcp::ACK | tcp::RST | tcp::FIN) != tcp::SYN => {
                Err(DropReason::TcpNoConn)
            }
            P_ICMP if !icmp_request => Err(DropReason::TcpNoConn),
            _ => Ok(()),
        }
    }

    /// Phase 2, after the forwarder routed [`Lookup::route_dst`] to `out_if`: updates or creates
    /// the connection, rewrites `ip` in place (NAT, checksums), and emits records into `sink`.
    /// `Err` means drop the packet (already counted).
    pub fn commit(
        &mut self,
        now: u64,
        lookup: Lookup,
        out_if: u16,
        ip: &mut [u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), DropReason> {
        // The header is read again only for a first fragment (lookup flagged it).
        let first = match lookup.first_fragment.then(|| fragment(ip)).flatten() {
            Some(Fragment::First { key, len }) => Some((key, len)),
            _ => None,
        };
        let r = self.commit_datagram(now, lookup, out_if, ip, sink);
        if let (Ok(()), Some((key, len))) = (r, first) {
            // Its later fragments pass translated like it (read back after the rewrite).
            let to = (
                u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
                u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
            );
            if !self.frags.first(now, key, len, to) {
                self.counters.frag_table_full += 1;
            }
        }
        r
    }

    fn commit_datagram(
        &mut self,
        now: u64,
        lookup: Lookup,
        out_if: u16,
        ip: &mut [u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), DropReason> {
        let lk = lookup;
        match lk.kind {
            Kind::Drop(r) => Err(r),
            Kind::AwaitFirst(_) => {
                // The caller did not hold it: a drop like any other.
                self.counters.count_drop(DropReason::Fragment);
                Err(DropReason::Fragment)
            }
            Kind::Fragment { src, dst } => {
                let mut pkt = Ipv4Packet::new_unchecked(&mut *ip);
                if lk.key.src != src {
                    pkt.rewrite_src_addr(Ipv4Addr::from(src));
                }
                if lk.key.dst != dst {
                    pkt.rewrite_dst_addr(Ipv4Addr::from(dst));
                }
                self.counters.fragments_passed += 1;
                Ok(())
            }
            Kind::Untracked => {
                if let Err(r) =
                    self.permit(lk.rx_if, out_if, lk.key.proto, lk.key.src, lk.key.dst, 0)
                {
                    return self.fail(r);
                }
                self.counters.untracked_passed += 1;
                Ok(())
            }
            Kind::Existing => {
                let fresh = self
                    .conns
                    .get(lk.idx as usize)
                    .is_some_and(|c| c.gen == lk.gen && c.orig.proto != 0);
                if fresh {
                    return self.existing(now, lk.idx, lk.from_orig, &lk, ip, sink);
                }
                // The slot was freed or reused since lookup (an earlier packet of the batch).
                if let Some((idx, fo)) = self.conn_find(&lk.key) {
                    return self.existing(now, idx, fo, &lk, ip, sink);
                }
                if let Err(r) = Self::may_create(&lk.key, lk.flags, lk.icmp_request) {
                    return self.fail(r);
                }
                let (d, dp) = self.static_denat(lk.rx_if, &lk.key);
                let lk2 = Lookup {
                    dnat_dst: d,
                    dnat_dport: dp,
                    ..lk
                };
                self.create(now, &lk2, out_if, ip, sink)
            }
            Kind::Related => {
                let fresh = self
                    .conns
                    .get(lk.idx as usize)
                    .is_some_and(|c| c.gen == lk.gen && c.orig.proto != 0);
                // The slot was freed or reused since lookup: look again.
                let found = if fresh {
                    Some((lk.idx, lk.from_orig))
                } else {
                    self.conn_find(&lk.key)
                };
                let Some((idx, from_orig)) = found else {
                    return self.fail(DropReason::IcmpErrorUnrelated);
                };
                // No state change, no refresh, no record: Linux conntrack does not refresh a
                // connection's timeout for RELATED packets either.
                let c = &self.conns[idx as usize];
                if from_orig {
                    rewrite_icmp_error(ip, &c.orig, &c.xl);
                } else {
                    rewrite_icmp_error(ip, &c.xl.reverse(), &c.orig.reverse());
                }
                self.counters.icmp_error_related += 1;
                Ok(())
            }
            Kind::New => {
                // An earlier packet of the same batch may have created it.
                if let Some((idx, fo)) = self.conn_find(&lk.key) {
                    return self.existing(now, idx, fo, &lk, ip, sink);
                }
                self.create(now, &lk, out_if, ip, sink)
            }
        }
    }

    fn existing(
        &mut self,
        now: u64,
        idx: u32,
        from_orig: bool,
        lk: &Lookup,
        ip: &mut [u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), DropReason> {
        let c = self.conns[idx as usize];
        let mut close = false;
        if c.orig.proto == P_TCP {
            let st = TcpState::from_u8(c.state).unwrap_or(TcpState::Established);
            match tcp::step(st, from_orig, lk.flags) {
                Step::Stay => {}
                Step::To(n) => {
                    if n != TcpState::Established {
                        // The close is tracked packet by packet: off the fast path.
                        self.offload_remove(idx, false);
                    }
                    self.conns[idx as usize].state = n as u8;
                    self.conns[idx as usize].last_seen = now;
                    self.emit_conn(idx, OP_UPSERT, now, sink);
                }
                Step::Close => close = true,
                Step::Invalid => return self.fail(DropReason::TcpInvalid),
            }
        }
        self.conns[idx as usize].last_seen = now;
        if from_orig {
            rewrite(ip, &c.orig, &c.xl, lk.icmp_request);
        } else {
            rewrite(ip, &c.xl.reverse(), &c.orig.reverse(), lk.icmp_request);
        }
        if close {
            // The RST itself is forwarded so both ends learn; then the connection goes.
            self.conn_delete(idx, now, sink);
        }
        Ok(())
    }

    fn create(
        &mut self,
        now: u64,
        lk: &Lookup,
        out_if: u16,
        ip: &mut [u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), DropReason> {
        let k = lk.key;
        if let Err(r) = self.permit(lk.rx_if, out_if, k.proto, k.src, lk.dnat_dst, lk.dnat_dport) {
            return self.fail(r);
        }
        let mut xl = FlowKey {
            src: k.src,
            dst: lk.dnat_dst,
            sport: k.sport,
            dport: lk.dnat_dport,
            proto: k.proto,
        };
        let mut xlate = NONE;
        let mut flags = 0u8;
        match self.snat(lk.rx_if, out_if, &k) {
            None => {}
            Some(Snat::Static { mapped, port }) => {
                xl.src = mapped;
                if let Some(p) = port {
                    xl.sport = p;
                }
            }
            Some(Snat::Pat { mapped }) => {
                let xi = match self.pat_xlate(now, &k, mapped, xl.dst, xl.dport) {
                    Ok(xi) => xi,
                    Err(r) => return self.fail(r),
                };
                xlate = xi;
                xl.src = mapped;
                xl.sport = self.xlates[xi as usize].mapped_port;
                flags |= CONN_FLAG_PAT;
            }
        }
        // The return tuple must be unambiguous (e.g. a static mapping colliding with a flow).
        if self.conn_find(&xl.reverse()).is_some() || (xl != k && self.conn_find(&xl).is_some()) {
            if xlate != NONE {
                self.xlate_release(xlate, now);
            }
            return self.fail(DropReason::TupleConflict);
        }
        let Some(idx) = self.conn_free.pop() else {
            if xlate != NONE {
                self.xlate_release(xlate, now);
            }
            return self.fail(DropReason::ConnTableFull);
        };
        let http = k.proto == P_TCP && xl.dport == 80;
        if http {
            flags |= CONN_FLAG_HTTP;
        }
        if self.replicable(k.proto, lk.rx_if, http) {
            flags |= F_REPL;
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        self.conns[idx as usize] = Conn {
            orig: k,
            xl,
            last_seen: now,
            touched: now,
            xlate,
            gen,
            in_if: lk.rx_if,
            out_if,
            state: if k.proto == P_TCP {
                TcpState::SynSent as u8
            } else {
                0
            },
            flags,
            bulk_gen: self.bulk_gen,
        };
        self.conn_index_insert(idx);
        self.counters.conn_created += 1;
        if flags & F_REPL != 0 {
            if xlate != NONE && !self.xlates[xlate as usize].replicated {
                self.xlates[xlate as usize].replicated = true;
                self.emit_xlate(xlate, OP_UPSERT, sink);
            }
            self.emit_conn(idx, OP_UPSERT, now, sink);
        }
        rewrite(ip, &k, &xl, lk.icmp_request);
        Ok(())
    }

    // ---------------------------------------------------------------- expiry

    /// Incremental sweep: examines at most `budget` connection slots (and `budget / 4 + 1` xlate
    /// slots) from where the previous call stopped, deletes idle connections (emitting deletes),
    /// emits a touch for replicated connections that saw traffic and whose last record is older
    /// than a quarter of their timeout, and frees PAT xlates unused for `pat_xlate`. Returns the
    /// number of connections expired. Call it once per batch with a small budget so that the
    /// whole table is walked well within the shortest timeout.
    pub fn expire(&mut self, now: u64, budget: usize, sink: &mut impl RecordSink) -> usize {
        let mut expired = 0;
        let n = self.conns.len();
        for _ in 0..budget.min(n) {
            let i = self.sweep_conn;
            self.sweep_conn = if i + 1 >= n { 0 } else { i + 1 };
            let c = self.conns[i];
            if c.orig.proto == 0 {
                continue;
            }
            let to = self.timeout_ns[Self::class_of(&c) as usize];
            if now.saturating_sub(c.last_seen) >= to && c.flags & F_OFF != 0 {
                // Its packets may be passing the fast path: ask first (`crate::offload`).
                self.offload_remove(i as u32, true);
            } else if now.saturating_sub(c.last_seen) >= to {
                self.conn_delete(i as u32, now, sink);
                expired += 1;
            } else if c.flags & F_REPL != 0
                && c.last_seen > c.touched
                && now.saturating_sub(c.touched) >= to / 4
            {
                self.emit_conn(i as u32, OP_UPSERT, now, sink);
            }
        }
        let nx = self.xlates.len();
        for _ in 0..(budget / 4 + 1).min(nx) {
            let i = self.sweep_xlate;
            self.sweep_xlate = if i + 1 >= nx { 0 } else { i + 1 };
            let x = self.xlates[i];
            if x.proto != 0 && x.refs == 0 && now.saturating_sub(x.idle_since) >= self.pat_xlate_ns
            {
                if x.replicated {
                    self.emit_xlate(i as u32, OP_DELETE, sink);
                }
                self.xlate_remove(i as u32);
            }
        }
        expired
    }

    // ---------------------------------------------------------------- apply

    /// Applies one received record (payload parsed in place). Never panics on any bytes. Upserts
    /// and deletes are idempotent: applying a stream twice leaves the same tables. `KIND_ARP`
    /// answers [`ApplyError::NotMine`] (the dataplane's ARP table applies it).
    pub fn apply(&mut self, now: u64, kind: u8, op: u8, payload: &[u8]) -> Result<(), ApplyError> {
        let r = self.apply_inner(now, kind, op, payload);
        match r {
            Ok(()) => self.counters.records_applied += 1,
            Err(ApplyError::NotMine) => {}
            Err(_) => self.counters.records_rejected += 1,
        }
        r
    }

    fn apply_inner(
        &mut self,
        now: u64,
        kind: u8,
        op: u8,
        payload: &[u8],
    ) -> Result<(), ApplyError> {
        let Some(want) = records::payload_len(kind) else {
            return Err(ApplyError::UnknownKind(kind));
        };
        if op != OP_UPSERT && op != OP_DELETE {
            return Err(ApplyError::UnknownOp { kind, op });
        }
        let len_err = ApplyError::Length {
            kind,
            len: payload.len(),
            want,
        };
        match kind {
            KIND_CONN => {
                let r = ConnRecord::ref_from_bytes(payload).map_err(|_| len_err)?;
                self.apply_conn(now, op, r)
            }
            KIND_XLATE => {
                let r = XlateRecord::ref_from_bytes(payload).map_err(|_| len_err)?;
                self.apply_xlate(now, op, r)
            }
            KIND_SA => {
                let r = SaRecord::ref_from_bytes(payload).map_err(|_| len_err)?;
                self.apply_sa(now, op, r)
            }
            _ => Err(ApplyError::NotMine),
        }
    }

    fn apply_conn(&mut self, now: u64, op: u8, r: &ConnRecord) -> Result<(), ApplyError> {
        let inval = |what| ApplyError::Invalid {
            kind: KIND_CONN,
            what,
        };
        let proto = r.proto;
        if !matches!(proto, P_TCP | P_UDP | P_ICMP) {
            return Err(inval("protocol is not tcp, udp or icmp"));
        }
        let orig = FlowKey {
            src: u32::from_be_bytes(r.src),
            dst: u32::from_be_bytes(r.dst),
            sport: r.sport.get(),
            dport: r.dport.get(),
            proto,
        };
        if op == OP_DELETE {
            if let Some((idx, true)) = self.conn_find(&orig) {
                self.conn_delete(idx, now, &mut records::NullSink);
            }
            return Ok(());
        }
        let xl = FlowKey {
            src: u32::from_be_bytes(r.xsrc),
            dst: u32::from_be_bytes(r.xdst),
            sport: r.xsport.get(),
            dport: r.xdport.get(),
            proto,
        };
        let (in_if, out_if) = (r.in_if.get(), r.out_if.get());
        let n = self.ifaces.len();
        if usize::from(in_if) >= n || usize::from(out_if) >= n {
            return Err(inval("interface index out of range"));
        }
        let state = if proto == P_TCP {
            match TcpState::from_u8(r.tcp_state) {
                Some(TcpState::Closed) | None => return Err(inval("bad tcp state")),
                Some(s) => s as u8,
            }
        } else if r.tcp_state != 0 {
            return Err(inval("tcp state on a non-tcp connection"));
        } else {
            0
        };
        if r.flags & !(CONN_FLAG_HTTP | CONN_FLAG_PAT) != 0 {
            return Err(inval("unknown flags"));
        }
        let pat = r.flags & CONN_FLAG_PAT != 0;
        if pat && orig.src == xl.src && orig.sport == xl.sport {
            return Err(inval("PAT flag without a source translation"));
        }
        let last_seen = now.saturating_sub(u64::from(r.idle_ms.get()) * NS_PER_MS);
        let flags = r.flags | F_REPL;
        if let Some((idx, from_orig)) = self.conn_find(&orig) {
            let c = &mut self.conns[idx as usize];
            if from_orig
                && c.xl == xl
                && c.in_if == in_if
                && c.out_if == out_if
                && (c.flags & CONN_FLAG_PAT != 0) == pat
            {
                c.state = state;
                c.last_seen = last_seen;
                c.flags = flags;
                c.touched = now;
                c.bulk_gen = self.bulk_gen;
                if c.xlate != NONE {
                    if let Some(x) = self.xlates.get_mut(c.xlate as usize) {
                        x.bulk_gen = self.bulk_gen;
                    }
                }
                return Ok(());
            }
            // The active's view wins over whatever this unit had.
            self.conn_delete(idx, now, &mut records::NullSink);
        }
        while let Some((idx, _)) = self.conn_find(&xl.reverse()) {
            self.conn_delete(idx, now, &mut records::NullSink);
        }
        while let Some((idx, _)) = self.conn_find(&xl) {
            if xl == orig {
                break;
            }
            self.conn_delete(idx, now, &mut records::NullSink);
        }
        let mut xlate = NONE;
        if pat {
            xlate = match self.xlate_find_real(proto, orig.src, orig.sport, xl.src) {
                Some(xi) if self.xlates[xi as usize].mapped_port == xl.sport => {
                    self.xlates[xi as usize].bulk_gen = self.bulk_gen;
                    xi
                }
                found => {
                    // This unit maps the real endpoint (or owns the mapped endpoint) otherwise,
                    // from its own forwarding or a lost delete: the active's mapping wins, so
                    // the translation stays the same after a failover. Refusing the record
                    // instead lost the connection, and the next packet got a new PAT port.
                    if let Some(xi) = found {
                        self.xlate_evict(xi, now);
                    }
                    if let Some(other) = self.xlate_find_mapped(proto, xl.src, xl.sport) {
                        self.xlate_evict(other, now);
                    }
                    let Some(xi) = self.xlate_free.pop() else {
                        return Err(ApplyError::TableFull { kind: KIND_XLATE });
                    };
                    self.xlates[xi as usize] = Xlate {
                        real: orig.src,
                        mapped: xl.src,
                        real_port: orig.sport,
                        mapped_port: xl.sport,
                        proto,
                        replicated: true,
                        refs: 0,
                        idle_since: now,
                        bulk_gen: self.bulk_gen,
                    };
                    self.xlate_index_insert(xi);
                    self.counters.xlate_created += 1;
                    xi
                }
            };
        }
        let Some(idx) = self.conn_free.pop() else {
            return Err(ApplyError::TableFull { kind: KIND_CONN });
        };
        if xlate != NONE {
            self.xlates[xlate as usize].refs += 1;
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        self.conns[idx as usize] = Conn {
            orig,
            xl,
            last_seen,
            touched: now,
            xlate,
            gen,
            in_if,
            out_if,
            state,
            flags,
            bulk_gen: self.bulk_gen,
        };
        self.conn_index_insert(idx);
        self.counters.conn_created += 1;
        Ok(())
    }

    fn apply_xlate(&mut self, now: u64, op: u8, r: &XlateRecord) -> Result<(), ApplyError> {
        let inval = |what| ApplyError::Invalid {
            kind: KIND_XLATE,
            what,
        };
        let proto = r.proto;
        if !matches!(proto, P_TCP | P_UDP | P_ICMP) {
            return Err(inval("protocol is not tcp, udp or icmp"));
        }
        if r.kind != XLATE_PAT {
            return Err(inval(
                "only PAT xlates are replicated (static NAT is configuration)",
            ));
        }
        let (real, mapped) = (u32::from_be_bytes(r.real), u32::from_be_bytes(r.mapped));
        let (rp, mp) = (r.real_port.get(), r.mapped_port.get());
        let existing = self.xlate_find_real(proto, real, rp, mapped);
        if op == OP_DELETE {
            // Connections still using it keep it; their deletes release it.
            if let Some(xi) = existing {
                if self.xlates[xi as usize].refs == 0 {
                    self.xlate_remove(xi);
                }
            }
            return Ok(());
        }
        if let Some(xi) = existing {
            let x = &mut self.xlates[xi as usize];
            if x.mapped_port == mp {
                x.replicated = true;
                x.bulk_gen = self.bulk_gen;
                return Ok(());
            }
            // The active maps this real endpoint to another port: its view wins, together with
            // the connections that used this unit's mapping (see `xlate_evict`).
            self.xlate_evict(xi, now);
        }
        if let Some(other) = self.xlate_find_mapped(proto, mapped, mp) {
            self.xlate_evict(other, now);
        }
        let Some(xi) = self.xlate_free.pop() else {
            return Err(ApplyError::TableFull { kind: KIND_XLATE });
        };
        self.xlates[xi as usize] = Xlate {
            real,
            mapped,
            real_port: rp,
            mapped_port: mp,
            proto,
            replicated: true,
            refs: 0,
            idle_since: now,
            bulk_gen: self.bulk_gen,
        };
        self.xlate_index_insert(xi);
        self.counters.xlate_created += 1;
        Ok(())
    }

    fn apply_sa(&mut self, now: u64, op: u8, r: &SaRecord) -> Result<(), ApplyError> {
        let Some(dir) = SaDirection::from_u8(r.direction) else {
            return Err(ApplyError::Invalid {
                kind: KIND_SA,
                what: "unknown SA direction",
            });
        };
        if op == OP_DELETE {
            self.sa_remove_inner(r.spi.get(), dir);
            return Ok(());
        }
        let mut slot = SaSlot::from_record(r, now).map_err(|what| ApplyError::Invalid {
            kind: KIND_SA,
            what,
        })?;
        slot.bulk_gen = self.bulk_gen;
        self.sa_put(slot)
            .map_err(|_| ApplyError::TableFull { kind: KIND_SA })
    }

    // ---------------------------------------------------------------- SAs

    fn sa_hash(keyed: &Keyed, spi: u32, dir: SaDirection) -> u64 {
        keyed.two(u64::from(spi) | (u64::from(dir as u8) << 32), 3 << 40)
    }

    fn sa_find(&self, spi: u32, dir: SaDirection) -> Option<u32> {
        let sas = &self.sas;
        self.sa_index
            .find(Self::sa_hash(&self.keyed, spi, dir), |v| {
                sas[v as usize]
                    .as_ref()
                    .is_some_and(|s| s.e.spi == spi && s.e.direction == dir)
            })
    }

    /// Inserts or replaces; `Err(())` when full.
    fn sa_put(&mut self, slot: SaSlot) -> Result<(), ()> {
        if let Some(i) = self.sa_find(slot.e.spi, slot.e.direction) {
            self.sas[i as usize] = Some(slot);
            return Ok(());
        }
        let Some(i) = self.sa_free.pop() else {
            return Err(());
        };
        self.sas[i as usize] = Some(slot);
        self.sa_index
            .insert(Self::sa_hash(&self.keyed, slot.e.spi, slot.e.direction), i);
        Ok(())
    }

    fn sa_remove_inner(&mut self, spi: u32, dir: SaDirection) -> bool {
        let Some(i) = self.sa_find(spi, dir) else {
            return false;
        };
        let (keyed, sas) = (&self.keyed, &self.sas);
        self.sa_index
            .remove(Self::sa_hash(keyed, spi, dir), i, |v| {
                sas[v as usize]
                    .as_ref()
                    .map_or(0, |s| Self::sa_hash(keyed, s.e.spi, s.e.direction))
            });
        self.sas[i as usize] = None;
        self.sa_free.push(i);
        true
    }

    /// Adds (or replaces) an SA after validating it, and emits its record.
    pub fn sa_add(
        &mut self,
        now: u64,
        entry: SaEntry,
        sink: &mut impl RecordSink,
    ) -> Result<(), SaError> {
        entry.validate()?;
        let expires = entry.life_secs.map_or(u64::MAX, |s| {
            now.saturating_add(u64::from(s) * 1_000_000_000)
        });
        let slot = SaSlot {
            e: entry,
            created: now,
            expires,
            seq_sent: entry.seq,
            bulk_gen: self.bulk_gen,
        };
        if self.sa_put(slot).is_err() {
            self.counters.drop_sa_table_full += 1;
            return Err(SaError::TableFull { spi: entry.spi });
        }
        let r = slot.record(now);
        sink.put(
            KIND_SA,
            OP_UPSERT,
            Self::sa_key(entry.spi, entry.direction),
            r.as_bytes(),
        );
        self.counters.records_emitted += 1;
        Ok(())
    }

    fn sa_key(spi: u32, dir: SaDirection) -> u64 {
        (u64::from(spi) << 8) | u64::from(dir as u8)
    }

    /// Removes an SA and emits its delete; false when it did not exist.
    pub fn sa_remove(
        &mut self,
        spi: u32,
        direction: SaDirection,
        sink: &mut impl RecordSink,
    ) -> bool {
        if !self.sa_remove_inner(spi, direction) {
            return false;
        }
        let r = SaSlot::delete_record(spi, direction);
        sink.put(
            KIND_SA,
            OP_DELETE,
            Self::sa_key(spi, direction),
            r.as_bytes(),
        );
        self.counters.records_emitted += 1;
        true
    }

    /// The ESP path reports an SA's new sequence number; a record is emitted each time it has
    /// advanced [`records::SA_SEQ_STEP`] past the last replicated value. False if no such SA.
    pub fn sa_advance(
        &mut self,
        now: u64,
        spi: u32,
        direction: SaDirection,
        seq: u64,
        sink: &mut impl RecordSink,
    ) -> bool {
        let Some(i) = self.sa_find(spi, direction) else {
            return false;
        };
        let Some(s) = self.sas[i as usize].as_mut() else {
            return false;
        };
        s.e.seq = seq;
        if seq.saturating_sub(s.seq_sent) >= records::SA_SEQ_STEP {
            s.seq_sent = seq;
            let r = s.record(now);
            sink.put(
                KIND_SA,
                OP_UPSERT,
                Self::sa_key(spi, direction),
                r.as_bytes(),
            );
            self.counters.records_emitted += 1;
        }
        true
    }

    /// The SA, if present.
    pub fn sa_get(&self, spi: u32, direction: SaDirection) -> Option<&SaEntry> {
        self.sa_find(spi, direction)
            .and_then(|i| self.sas[i as usize].as_ref())
            .map(|s| &s.e)
    }

    /// Every SA, as operators see it (keys omitted).
    pub fn sa_iter(&self, now: u64, mut f: impl FnMut(SaView)) {
        for s in self.sas.iter().flatten() {
            f(SaView {
                spi: s.e.spi,
                direction: s.e.direction,
                peer: s.e.peer,
                local: s.e.local,
                cipher: s.e.cipher,
                integrity: s.e.integrity,
                seq: s.e.seq,
                life_secs_remaining: (s.expires != u64::MAX)
                    .then(|| s.expires.saturating_sub(now) / 1_000_000_000),
            });
        }
    }

    // ---------------------------------------------------------------- bulk sync

    /// Emits the next at most `max_records` upserts of a bulk sync: every replicated xlate, then
    /// every replicated connection (so an xlate precedes the connections using it), then every
    /// SA. Work per call is bounded (at most `4 × max_records + 64` slots visited). Entries that
    /// change meanwhile are also emitted by the packet path, so the standby converges.
    pub fn bulk(
        &self,
        cursor: &mut BulkCursor,
        now: u64,
        sink: &mut impl RecordSink,
        max_records: usize,
    ) -> BulkProgress {
        if !cursor.started {
            let (c, x, s) = self.counts();
            *cursor = BulkCursor {
                phase: 0,
                pos: 0,
                done: 0,
                total: c + x + s,
                started: true,
            };
        }
        let mut emitted = 0;
        let mut visits = max_records.saturating_mul(4).saturating_add(64);
        while emitted < max_records && visits > 0 && cursor.phase < 3 {
            visits -= 1;
            let i = cursor.pos;
            let len = match cursor.phase {
                0 => self.xlates.len(),
                1 => self.conns.len(),
                _ => self.sas.len(),
            };
            if i >= len {
                cursor.phase += 1;
                cursor.pos = 0;
                continue;
            }
            cursor.pos += 1;
            match cursor.phase {
                0 => {
                    let x = &self.xlates[i];
                    if x.proto != 0 {
                        cursor.done += 1;
                        if x.replicated {
                            let r = Self::xlate_record(x);
                            sink.put(KIND_XLATE, OP_UPSERT, Self::xlate_key(x), r.as_bytes());
                            emitted += 1;
                        }
                    }
                }
                1 => {
                    let c = &self.conns[i];
                    if c.orig.proto != 0 {
                        cursor.done += 1;
                        if c.flags & F_REPL != 0 {
                            let r = Self::conn_record(c, now);
                            sink.put(
                                KIND_CONN,
                                OP_UPSERT,
                                hash::record_key(&c.orig),
                                r.as_bytes(),
                            );
                            emitted += 1;
                        }
                    }
                }
                _ => {
                    if let Some(s) = &self.sas[i] {
                        cursor.done += 1;
                        let r = s.record(now);
                        sink.put(
                            KIND_SA,
                            OP_UPSERT,
                            Self::sa_key(s.e.spi, s.e.direction),
                            r.as_bytes(),
                        );
                        emitted += 1;
                    }
                }
            }
        }
        BulkProgress {
            done: cursor.done,
            total: cursor.total.max(cursor.done),
            finished: cursor.phase >= 3,
        }
    }

    /// Standby, as a bulk sync begins: starts a new bulk generation (O(1)). From now on every
    /// entry `apply` upserts (bulk or live record) and every entry this unit creates carries the
    /// new generation; whatever still carries an older one when the bulk has completed was
    /// deleted on the active meanwhile (its delete record lost) and goes with [`Shard::bulk_sweep`].
    /// Nothing is removed here: if the active fails mid-bulk, the standby keeps everything it has
    /// (unlike [`Shard::clear`]). A new mark abandons a pending sweep.
    ///
    /// The generation is 16 bits: an entry neither applied nor created across 65 536 marks in a
    /// row without a completed sweep would alias the current generation and survive one sweep
    /// (then leave by idle timeout, as without the sweep).
    pub fn bulk_mark(&mut self) {
        self.bulk_gen = self.bulk_gen.wrapping_add(1);
        self.bulk_sweep = Some(SweepCursor { phase: 0, pos: 0 });
    }

    /// Standby, once the bulk sync that followed [`Shard::bulk_mark`] has completed (the caller
    /// knows; never after an aborted bulk): removes, without records, every connection, PAT xlate
    /// and SA not upserted or created since the mark, counted in `bulk_swept`. Incremental: at
    /// most `budget` table slots are visited per call (connections, then xlates, so that the
    /// xlates of swept connections are unreferenced by then, then SAs); call again until
    /// `finished`. Without a pending mark it does nothing and reports `finished`. An xlate not
    /// re-sent but still used by a connection that was is kept (the active has the connection, so
    /// it has the xlate). Allocates nothing.
    pub fn bulk_sweep(&mut self, now: u64, budget: usize) -> SweepProgress {
        let mut p = SweepProgress {
            swept: 0,
            finished: false,
        };
        let Some(mut cur) = self.bulk_sweep else {
            p.finished = true;
            return p;
        };
        let gen = self.bulk_gen;
        let mut visits = budget;
        while visits > 0 && cur.phase < 3 {
            let i = cur.pos;
            let len = match cur.phase {
                0 => self.conns.len(),
                1 => self.xlates.len(),
                _ => self.sas.len(),
            };
            if i >= len {
                cur.phase += 1;
                cur.pos = 0;
                continue;
            }
            visits -= 1;
            cur.pos += 1;
            match cur.phase {
                0 => {
                    let c = &mut self.conns[i];
                    if c.orig.proto != 0 && c.bulk_gen != gen {
                        // No delete record: the standby's deletes are its own business.
                        c.flags &= !F_REPL;
                        self.conn_delete(i as u32, now, &mut records::NullSink);
                        p.swept += 1;
                    }
                }
                1 => {
                    let x = &self.xlates[i];
                    if x.proto != 0 && x.bulk_gen != gen && x.refs == 0 {
                        self.xlate_remove(i as u32);
                        p.swept += 1;
                    }
                }
                _ => {
                    let stale = self.sas[i]
                        .as_ref()
                        .filter(|sa| sa.bulk_gen != gen)
                        .map(|sa| (sa.e.spi, sa.e.direction));
                    if let Some((spi, dir)) = stale {
                        self.sa_remove_inner(spi, dir);
                        p.swept += 1;
                    }
                }
            }
        }
        self.counters.bulk_swept += p.swept as u64;
        if cur.phase >= 3 {
            self.bulk_sweep = None;
            p.finished = true;
        } else {
            self.bulk_sweep = Some(cur);
        }
        p
    }

    // ---------------------------------------------------------------- views

    /// Every connection, for `show conn`.
    pub fn conns(&self, now: u64, mut f: impl FnMut(ConnView<'_>)) {
        let name = |i: u16| {
            self.ifaces
                .get(usize::from(i))
                .map_or("?", |p| p.name.as_str())
        };
        for c in self.conns.iter().filter(|c| c.orig.proto != 0) {
            let ip = Ipv4Addr::from;
            f(ConnView {
                proto: crate::Proto::from_u8(c.orig.proto).map_or("?", crate::Proto::as_str),
                in_if: name(c.in_if),
                out_if: name(c.out_if),
                src: ip(c.orig.src),
                sport: c.orig.sport,
                dst: ip(c.orig.dst),
                dport: c.orig.dport,
                xlated_src: ip(c.xl.src),
                xlated_sport: c.xl.sport,
                xlated_dst: ip(c.xl.dst),
                xlated_dport: c.xl.dport,
                state: TcpState::from_u8(c.state).map_or("-", TcpState::as_str),
                idle_ms: ms(now.saturating_sub(c.last_seen)),
                replicated: c.flags & F_REPL != 0,
                offloaded: Self::offloaded(c),
            });
        }
    }

    /// Every PAT xlate, for `show xlate` (static translations are the NAT configuration).
    pub fn xlates(&self, now: u64, mut f: impl FnMut(XlateView)) {
        for x in self.xlates.iter().filter(|x| x.proto != 0) {
            f(XlateView {
                proto: crate::Proto::from_u8(x.proto).map_or("?", crate::Proto::as_str),
                kind: "pat",
                real: Ipv4Addr::from(x.real),
                real_port: x.real_port,
                mapped: Ipv4Addr::from(x.mapped),
                mapped_port: x.mapped_port,
                conns: x.refs,
                idle_ms: if x.refs == 0 {
                    ms(now.saturating_sub(x.idle_since))
                } else {
                    0
                },
            });
        }
    }

    /// Removes every connection and xlate without emitting records (a standby whose tables are
    /// foreign). SAs are kept. For stale entries after lost deletes prefer
    /// [`Shard::bulk_mark`] / [`Shard::bulk_sweep`], which lose nothing if the bulk aborts.
    pub fn clear(&mut self) {
        for (i, c) in self.conns.iter_mut().enumerate() {
            if c.flags & F_OFF != 0 {
                self.offload_flush = true;
            }
            if c.orig.proto != 0 {
                *c = Conn {
                    gen: c.gen,
                    ..Conn::default()
                };
                self.conn_free.push(i as u32);
            }
        }
        for (i, x) in self.xlates.iter_mut().enumerate() {
            if x.proto != 0 {
                *x = Xlate::default();
                self.xlate_free.push(i as u32);
            }
        }
        self.conn_index.clear();
        self.xlate_index.clear();
    }
}

// ---------------------------------------------------------------- flow offload (`crate::offload`)

impl Shard {
    /// After a successful [`Shard::commit`] of `lk`: the direction to install in the fast-path
    /// table now, if any. Only packets of an existing connection (not related ICMP errors), TCP
    /// once ESTABLISHED and UDP from its second packet, each direction once.
    pub fn offload_candidate(&self, lk: &Lookup) -> Option<OffloadRef> {
        if lk.kind != Kind::Existing {
            return None;
        }
        let c = self.conns.get(lk.idx as usize)?;
        let dir = if lk.from_orig {
            F_OFF_ORIG
        } else {
            F_OFF_REPLY
        };
        let ok = c.gen == lk.gen
            && c.flags & (dir | F_NO_OFFLOAD) == 0
            && match c.orig.proto {
                P_TCP => c.state == TcpState::Established as u8,
                P_UDP => true,
                _ => false,
            };
        ok.then_some(OffloadRef {
            conn: lk.idx,
            gen: lk.gen,
            from_orig: lk.from_orig,
        })
    }

    fn offload_conn(&mut self, r: OffloadRef) -> Option<&mut Conn> {
        self.conns
            .get_mut(r.conn as usize)
            .filter(|c| c.gen == r.gen && c.orig.proto != 0)
    }

    /// The forwarder installed `r`'s direction.
    pub fn offload_mark(&mut self, r: OffloadRef) {
        let dir = if r.from_orig { F_OFF_ORIG } else { F_OFF_REPLY };
        if let Some(c) = self.offload_conn(r) {
            c.flags |= dir;
        }
    }

    /// The install of `r` (marked) failed (table full): the connection stays on the worker.
    pub fn offload_refused(&mut self, r: OffloadRef) {
        let dir = if r.from_orig { F_OFF_ORIG } else { F_OFF_REPLY };
        if let Some(c) = self.offload_conn(r) {
            c.flags = (c.flags & !dir) | F_NO_OFFLOAD;
        }
    }

    /// The fast path last forwarded a packet of connection `conn`/`gen` at `at` (the forwarder's
    /// scan). `false` when the shard has no such offloaded direction (the connection went, or
    /// was taken back): the entry is stale and must be removed.
    pub fn offload_seen(&mut self, conn: u32, gen: u32, from_orig: bool, at: u64) -> bool {
        let dir = if from_orig { F_OFF_ORIG } else { F_OFF_REPLY };
        let r = OffloadRef {
            conn,
            gen,
            from_orig,
        };
        match self.offload_conn(r) {
            Some(c) if c.flags & dir != 0 => {
                c.last_seen = c.last_seen.max(at);
                true
            }
            _ => false,
        }
    }

    /// The entries of a retire ([`OffloadRemoval::retire`]) are out; the fast path last
    /// forwarded one of its packets at `at` (`None`: never, or they were already gone).
    pub fn offload_retired(&mut self, conn: u32, gen: u32, at: Option<u64>) {
        let r = OffloadRef {
            conn,
            gen,
            from_orig: true,
        };
        if let (Some(c), Some(at)) = (self.offload_conn(r), at) {
            c.last_seen = c.last_seen.max(at);
        }
    }

    /// Queues the removal of connection `idx`'s installed directions and forgets them.
    fn offload_remove(&mut self, idx: u32, retire: bool) {
        let c = &mut self.conns[idx as usize];
        if c.flags & F_OFF == 0 {
            return;
        }
        let flows = [
            (c.flags & F_OFF_ORIG != 0).then_some((c.in_if, c.orig)),
            (c.flags & F_OFF_REPLY != 0).then_some((c.out_if, c.xl.reverse())),
        ];
        let removal = OffloadRemoval {
            conn: idx,
            gen: c.gen,
            flows,
            retire,
        };
        if self.offload_removals.len() < REMOVALS_MAX {
            c.flags &= !F_OFF;
            self.offload_removals.push(removal);
        } else if !retire {
            // No room: the whole table goes (a retire simply waits for the next sweep).
            c.flags &= !F_OFF;
            self.offload_flush = true;
        }
    }

    /// Removals queued since the last call, handed to `f` and dropped. `f` takes the entries
    /// out and returns when the fast path last forwarded one of their packets (`None`: never, or
    /// they were gone); for a retire that is fed back as [`Shard::offload_retired`] does.
    pub fn offload_removals(&mut self, mut f: impl FnMut(&OffloadRemoval) -> Option<u64>) {
        for i in 0..self.offload_removals.len() {
            let r = self.offload_removals[i];
            let at = f(&r);
            if r.retire {
                self.offload_retired(r.conn, r.gen, at);
            }
        }
        self.offload_removals.clear();
    }

    /// True once when the forwarder must clear this shard's whole fast-path table (removals
    /// overflowed, or the tables were cleared). Call [`Shard::offload_forget_all`] after.
    pub fn offload_flush_needed(&mut self) -> bool {
        core::mem::take(&mut self.offload_flush)
    }

    /// Every connection is off the fast path (its table was cleared: a role or ownership change,
    /// a neighbour's new MAC, new routes). Walks the table: for rare events only.
    pub fn offload_forget_all(&mut self) {
        for c in self.conns.iter_mut() {
            c.flags &= !F_OFF;
        }
        self.offload_removals.clear();
    }

    /// This shard's index among the unit's shards (its worker's).
    pub fn shard_index(&self) -> u16 {
        self.shard
    }

    /// How many shards (workers) the unit has.
    pub fn shard_count(&self) -> u16 {
        self.shards
    }

    /// Whether any direction of the connection is installed (for `show conn`).
    fn offloaded(c: &Conn) -> bool {
        c.flags & F_OFF != 0
    }
}
