//! Flow offload: a fast-path table of established, translated flows that
//! the kernel side forwards without waking the worker (the appliance's
//! "flow offload"). Each entry is one direction of one connection: the
//! packet's tuple as received on a port ([`FlowMatch`]) and what to turn it
//! into ([`FlowRewrite`]: addresses, ports, constant checksum addends, the
//! egress port and both MACs). Everything else — first packets, TCP
//! SYN/FIN/RST, fragments, IP options, TTL ≤ 1, anything not in the table —
//! still goes to the worker.
//!
//! The stateful stage decides what to offload and when to take it back
//! (sans-IO); a [`FlowOffload`] carries that out:
//! * `afxdp::FlowTable`: a BPF hash map read by tandem's XDP program, which
//!   rewrites a matching frame and `bpf_redirect`s it to the egress device;
//! * [`MemFlowTable`]: the same table in memory with [`MemFlowTable::forward`],
//!   a model of the XDP program (the BPF program's tests compare the two).
//!
//! Checksums: both addends are RFC 1624 ones'-complement sums of
//! `~old + new` over the 16-bit words the rewrite changes (for the IPv4
//! header also the TTL/protocol word, since the TTL drops by one), so the
//! fast path does `csum' = ~(~csum +' add)` without looking at the data. A
//! UDP checksum of 0 (none) stays 0, and a computed 0 is sent as 0xffff.

use std::collections::HashMap;
use std::io;

use crate::PortId;

/// One direction of a flow as it arrives: the key of the table. Addresses
/// and ports are in network byte order, as on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowMatch {
    /// The port (interface) it arrives on.
    pub port: PortId,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
}

/// What a matching frame becomes. Addresses and ports in network byte
/// order; the checksum addends as 16-bit values (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowRewrite {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// Added to the IPv4 header checksum (addresses and the TTL decrement).
    pub ip_csum_add: u16,
    /// Added to the TCP/UDP checksum (pseudo-header addresses and ports).
    pub l4_csum_add: u16,
    /// The egress port.
    pub port: PortId,
    /// The egress port's MTU: a longer datagram goes to the worker (which
    /// answers "fragmentation needed" or drops it).
    pub mtu: u16,
    /// The frame must be addressed to this MAC (the receiving port's own);
    /// anything else goes to the worker.
    pub rx_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// Which connection an entry belongs to: the shard (worker) that installed
/// it, the connection's slot and the slot's generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowOwner {
    pub shard: u16,
    pub conn: u32,
    pub gen: u32,
}

/// An entry as read back from the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSeen {
    pub flow: FlowMatch,
    pub owner: FlowOwner,
    /// Nanoseconds since the fast path last forwarded a frame of it (since
    /// the install when it has forwarded none).
    pub idle_ns: u64,
    /// Frames the fast path forwarded.
    pub packets: u64,
}

/// Ones'-complement sum of 16-bit words (end-around carry), not inverted.
#[inline]
pub fn ones_add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The addend that turns a checksum over `old` words into one over `new`
/// words (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
pub fn csum_addend(old: &[u16], new: &[u16]) -> u16 {
    old.iter()
        .zip(new)
        .fold(0u16, |acc, (&o, &n)| ones_add(ones_add(acc, !o), n))
}

/// Applies an addend to a checksum field: `~(~csum +' add)`.
#[inline]
pub fn csum_apply(csum: u16, add: u16) -> u16 {
    !ones_add(!csum, add)
}

/// The fast-path table's operations, called from the worker's loop (never
/// per packet: installs and removals come in batches between bursts).
pub trait FlowOffload: Send {
    /// Adds or replaces the entry for `flow`.
    fn install(&mut self, flow: &FlowMatch, to: &FlowRewrite, owner: FlowOwner) -> io::Result<()>;
    /// Removes the entry for `flow`, returning it as last seen (`None` when
    /// there was none).
    fn remove(&mut self, flow: &FlowMatch) -> io::Result<Option<FlowSeen>>;
    /// Continues a walk over all entries, visiting at most `budget` of them;
    /// returns `true` when the walk completed a pass (the next call starts
    /// over). Entries added or removed during a pass may be missed or seen
    /// twice.
    fn scan(&mut self, budget: usize, visit: &mut dyn FnMut(&FlowSeen)) -> io::Result<bool>;
    /// Removes every entry `shard` installed (the table may be shared by
    /// several workers); returns how many there were.
    fn clear(&mut self, shard: u16) -> io::Result<usize>;
    /// The most entries the table holds.
    fn capacity(&self) -> usize;
}

/// Entries [`MemFlowTable`] holds per key.
#[derive(Clone, Copy, Debug)]
struct MemEntry {
    to: FlowRewrite,
    owner: FlowOwner,
    last_seen_ns: u64,
    packets: u64,
}

/// Frame offsets the fast path reads and writes (Ethernet + IPv4 without
/// options), shared by the model and the documentation of the program.
const ETH_HLEN: usize = 14;
const IP_END: usize = 34;
const TCP_END: usize = 54;
const UDP_END: usize = 42;
const TCP_CSUM: usize = 50;
const UDP_CSUM: usize = 40;

/// The table in memory, with [`MemFlowTable::forward`], a model of tandem's
/// XDP offload program (`afxdp::FlowTable`'s kernel side): the same
/// eligibility rules, lookup, checks and rewrite, byte for byte. Time comes
/// from [`MemFlowTable::set_now`] instead of a clock, so simulations are
/// deterministic; scans visit entries in a fixed order for the same reason.
#[derive(Clone, Debug, Default)]
pub struct MemFlowTable {
    entries: HashMap<FlowMatch, MemEntry>,
    capacity: usize,
    now: u64,
    /// The keys of the pass in progress, sorted, and the next one to visit.
    pass: Vec<FlowMatch>,
    pass_at: usize,
    in_pass: bool,
}

impl MemFlowTable {
    /// An empty table holding up to `capacity` entries.
    pub fn new(capacity: usize) -> MemFlowTable {
        MemFlowTable {
            capacity,
            ..Default::default()
        }
    }

    /// Sets the clock (nanoseconds) that installs and forwarded frames
    /// stamp entries with and that `idle_ns` is measured against.
    pub fn set_now(&mut self, ns: u64) {
        self.now = ns;
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `flow` as `scan` would report it now.
    pub fn get(&self, flow: &FlowMatch) -> Option<FlowSeen> {
        self.entries.get(flow).map(|e| self.seen(flow, e))
    }

    fn seen(&self, flow: &FlowMatch, e: &MemEntry) -> FlowSeen {
        FlowSeen {
            flow: *flow,
            owner: e.owner,
            idle_ns: self.now.saturating_sub(e.last_seen_ns),
            packets: e.packets,
        }
    }

    /// What the XDP program does with `frame` arriving on `port`: when it
    /// is eligible, matches an entry, is addressed to the entry's `rx_mac`
    /// and fits its MTU, rewrites it in place (MACs, addresses, ports, TTL
    /// minus one, both checksums by their addends), stamps the entry and
    /// returns the egress port; otherwise leaves the frame untouched and
    /// returns `None` (the frame goes to the worker).
    pub fn forward(&mut self, port: PortId, frame: &mut [u8]) -> Option<PortId> {
        let (flow, l4_csum) = fast_path_match(port, frame)?;
        let now = self.now;
        let e = self.entries.get_mut(&flow)?;
        if frame[..6] != e.to.rx_mac {
            return None;
        }
        if u16::from_be_bytes([frame[16], frame[17]]) > e.to.mtu {
            return None;
        }
        let to = e.to;
        frame[..6].copy_from_slice(&to.dst_mac);
        frame[6..12].copy_from_slice(&to.src_mac);
        frame[26..30].copy_from_slice(&to.src);
        frame[30..34].copy_from_slice(&to.dst);
        frame[34..36].copy_from_slice(&to.sport);
        frame[36..38].copy_from_slice(&to.dport);
        frame[22] -= 1; // TTL > 1 (eligibility)
        let ip = u16::from_be_bytes([frame[24], frame[25]]);
        frame[24..26].copy_from_slice(&csum_apply(ip, to.ip_csum_add).to_be_bytes());
        let l4 = u16::from_be_bytes([frame[l4_csum], frame[l4_csum + 1]]);
        let new = if flow.proto == 17 {
            match l4 {
                0 => 0, // UDP without a checksum
                _ => match csum_apply(l4, to.l4_csum_add) {
                    0 => 0xffff,
                    c => c,
                },
            }
        } else {
            csum_apply(l4, to.l4_csum_add)
        };
        frame[l4_csum..l4_csum + 2].copy_from_slice(&new.to_be_bytes());
        e.last_seen_ns = now;
        e.packets += 1;
        Some(to.port)
    }
}

/// The fast path's eligibility rules: the lookup key of `frame` arriving on
/// `port` and the offset of its L4 checksum, or `None` when the frame is
/// for the worker whatever the table holds. Ethernet type IPv4 (no VLAN
/// tag), IHL 5, neither MF nor a fragment offset, TTL > 1, and TCP with
/// its 20-byte header present and none of FIN/SYN/RST, or UDP with its
/// header present.
fn fast_path_match(port: PortId, f: &[u8]) -> Option<(FlowMatch, usize)> {
    if f.len() < ETH_HLEN || f[12..14] != [0x08, 0x00] || f.len() < IP_END {
        return None;
    }
    if f[14] != 0x45 || u16::from_be_bytes([f[20], f[21]]) & 0x3fff != 0 || f[22] <= 1 {
        return None;
    }
    let proto = f[23];
    let l4_csum = match proto {
        6 if f.len() >= TCP_END && f[47] & 0x07 == 0 => TCP_CSUM,
        17 if f.len() >= UDP_END => UDP_CSUM,
        _ => return None,
    };
    let flow = FlowMatch {
        port,
        src: [f[26], f[27], f[28], f[29]],
        dst: [f[30], f[31], f[32], f[33]],
        sport: [f[34], f[35]],
        dport: [f[36], f[37]],
        proto,
    };
    Some((flow, l4_csum))
}

impl FlowOffload for MemFlowTable {
    /// A new flow in a full table is refused with `E2BIG`, like the kernel's
    /// hash map; replacing an existing entry always works.
    fn install(&mut self, flow: &FlowMatch, to: &FlowRewrite, owner: FlowOwner) -> io::Result<()> {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(flow) {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        }
        self.entries.insert(
            *flow,
            MemEntry {
                to: *to,
                owner,
                last_seen_ns: self.now,
                packets: 0,
            },
        );
        Ok(())
    }

    fn remove(&mut self, flow: &FlowMatch) -> io::Result<Option<FlowSeen>> {
        Ok(self.entries.remove(flow).map(|e| self.seen(flow, &e)))
    }

    /// Like the kernel table, the pass is over the keys present when it
    /// began; entries removed since are skipped, entries added since wait
    /// for the next pass. Every key read counts against `budget`.
    fn scan(&mut self, budget: usize, visit: &mut dyn FnMut(&FlowSeen)) -> io::Result<bool> {
        if budget == 0 {
            return Ok(false);
        }
        if !self.in_pass {
            self.pass.clear();
            self.pass.extend(self.entries.keys().copied());
            self.pass
                .sort_unstable_by_key(|f| (f.port, f.src, f.dst, f.sport, f.dport, f.proto));
            self.pass_at = 0;
            self.in_pass = true;
        }
        let mut used = 0;
        while used < budget && self.pass_at < self.pass.len() {
            let flow = self.pass[self.pass_at];
            self.pass_at += 1;
            used += 1;
            if let Some(e) = self.entries.get(&flow) {
                visit(&self.seen(&flow, e));
            }
        }
        if self.pass_at < self.pass.len() {
            return Ok(false);
        }
        self.in_pass = false;
        Ok(true)
    }

    fn clear(&mut self, shard: u16) -> io::Result<usize> {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.owner.shard != shard);
        Ok(before - self.entries.len())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Test frames shared by the model's unit tests and the BPF program's
/// tests (which must see the same bytes): one builder, one checksum.
pub mod testing {
    /// The sender (A), the unit's two ports (U0, U1) and the receiver (B).
    pub const A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    pub const U0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
    pub const U1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
    pub const B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    /// A test datagram's header fields.
    #[derive(Clone, Debug)]
    pub struct Pkt {
        pub dmac: [u8; 6],
        pub proto: u8,
        pub src: [u8; 4],
        pub dst: [u8; 4],
        pub sport: u16,
        pub dport: u16,
        pub ttl: u8,
        pub tcp_flags: u8,
        pub frag: u16,
        /// UDP: send a checksum (else 0).
        pub udp_csum: bool,
        pub payload: Vec<u8>,
    }

    /// A TCP PSH|ACK segment 198.18.0.2:40000 → 198.19.0.2:80 to `U0_MAC`.
    pub fn tcp() -> Pkt {
        Pkt {
            dmac: U0_MAC,
            proto: 6,
            src: [198, 18, 0, 2],
            dst: [198, 19, 0, 2],
            sport: 40000,
            dport: 80,
            ttl: 64,
            tcp_flags: 0x18, // PSH|ACK
            frag: 0x4000,    // DF
            udp_csum: true,
            payload: b"hello, offload".to_vec(),
        }
    }

    /// `tcp()` as a UDP datagram 5353 → 53.
    pub fn udp() -> Pkt {
        Pkt {
            proto: 17,
            sport: 5353,
            dport: 53,
            ..tcp()
        }
    }

    /// Ones'-complement sum of `data` (big-endian words, odd tail padded) onto `acc`, unfolded.
    pub fn sum(data: &[u8], mut acc: u32) -> u32 {
        for c in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        acc
    }

    /// Folds carries into 16 bits.
    pub fn fold(mut s: u32) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// Ones'-complement sum of the pseudo-header and L4 segment of an
    /// Ethernet/IPv4 (IHL 5) frame, checksum field included.
    pub fn l4_sum(f: &[u8]) -> u16 {
        let l4 = &f[34..];
        let mut pseudo = f[26..34].to_vec();
        pseudo.extend_from_slice(&[0, f[23]]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        fold(sum(l4, sum(&pseudo, 0)))
    }

    /// The Ethernet/IPv4 frame of `p` from `A_MAC`, checksums filled in.
    pub fn build(p: &Pkt) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&p.dmac);
        f.extend_from_slice(&A_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let l4_len = if p.proto == 6 { 20 } else { 8 } + p.payload.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34]);
        f.extend_from_slice(&p.frag.to_be_bytes());
        f.extend_from_slice(&[p.ttl, p.proto, 0, 0]);
        f.extend_from_slice(&p.src);
        f.extend_from_slice(&p.dst);
        let c = !fold(sum(&f[14..34], 0));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&p.sport.to_be_bytes());
        f.extend_from_slice(&p.dport.to_be_bytes());
        let at = if p.proto == 6 {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0x50, p.tcp_flags, 0xff, 0xff]);
            f.extend_from_slice(&[0, 0, 0, 0]);
            50
        } else {
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            40
        };
        f.extend_from_slice(&p.payload);
        if p.proto == 6 || p.udp_csum {
            let c = match !l4_sum(&f) {
                0 if p.proto == 17 => 0xffff,
                c => c,
            };
            f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        f
    }

    /// An address as its two 16-bit words.
    pub fn words(a: [u8; 4]) -> [u16; 2] {
        [
            u16::from_be_bytes([a[0], a[1]]),
            u16::from_be_bytes([a[2], a[3]]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    /// The entry turning `p`'s flow (on port 0) into one with source `src`
    /// / `sport` and destination `dst` / `dport`, out of port 1, with the
    /// addends from the old and new words as the forwarder computes them.
    fn entry(
        p: &Pkt,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
    ) -> (FlowMatch, FlowRewrite) {
        let flow = FlowMatch {
            port: 0,
            src: p.src,
            dst: p.dst,
            sport: p.sport.to_be_bytes(),
            dport: p.dport.to_be_bytes(),
            proto: p.proto,
        };
        let (os, od, ns, nd) = (words(p.src), words(p.dst), words(src), words(dst));
        let ttl = |t: u8| u16::from_be_bytes([t, p.proto]);
        let ip_old = [os[0], os[1], od[0], od[1], ttl(p.ttl)];
        let ip_new = [ns[0], ns[1], nd[0], nd[1], ttl(p.ttl - 1)];
        let l4_old = [os[0], os[1], od[0], od[1], p.sport, p.dport];
        let l4_new = [ns[0], ns[1], nd[0], nd[1], sport, dport];
        let to = FlowRewrite {
            src,
            dst,
            sport: sport.to_be_bytes(),
            dport: dport.to_be_bytes(),
            ip_csum_add: csum_addend(&ip_old, &ip_new),
            l4_csum_add: csum_addend(&l4_old, &l4_new),
            port: 1,
            mtu: 1500,
            rx_mac: U0_MAC,
            dst_mac: B_MAC,
            src_mac: U1_MAC,
        };
        (flow, to)
    }

    const SNAT: [u8; 4] = [198, 19, 255, 1];

    fn table_with(p: &Pkt) -> (MemFlowTable, FlowRewrite) {
        let (flow, to) = entry(p, SNAT, 61000, p.dst, p.dport);
        let mut t = MemFlowTable::new(16);
        t.install(
            &flow,
            &to,
            FlowOwner {
                shard: 1,
                conn: 7,
                gen: 3,
            },
        )
        .unwrap();
        (t, to)
    }

    /// Checks everything the rewrite should have produced, checksums from
    /// scratch included.
    fn assert_rewritten(before: &[u8], after: &[u8], to: &FlowRewrite) {
        assert_eq!(after.len(), before.len());
        assert_eq!(after[..6], to.dst_mac);
        assert_eq!(after[6..12], to.src_mac);
        assert_eq!(after[22], before[22] - 1, "TTL");
        assert_eq!(after[26..30], to.src);
        assert_eq!(after[30..34], to.dst);
        assert_eq!(after[34..36], to.sport);
        assert_eq!(after[36..38], to.dport);
        assert_eq!(fold(sum(&after[14..34], 0)), 0xffff, "IPv4 header checksum");
        let udp_none = after[23] == 17 && after[40..42] == [0, 0];
        if !udp_none {
            assert_eq!(l4_sum(after), 0xffff, "L4 checksum");
        }
        // Nothing else changed.
        let changed = |i: usize| {
            i < 12 || matches!(i, 22 | 24 | 25 | 26..=37) || {
                let c = if after[23] == 6 { 50 } else { 40 };
                i == c || i == c + 1
            }
        };
        for i in (0..before.len()).filter(|&i| !changed(i)) {
            assert_eq!(after[i], before[i], "byte {i}");
        }
    }

    fn fwd(t: &mut MemFlowTable, f: &[u8]) -> (Option<PortId>, Vec<u8>) {
        let mut out = f.to_vec();
        let r = t.forward(0, &mut out);
        if r.is_none() {
            assert_eq!(out, f, "a frame for the worker is untouched");
        }
        (r, out)
    }

    #[test]
    fn tcp_is_rewritten_and_checksums_verify() {
        let p = tcp();
        let (mut t, to) = table_with(&p);
        t.set_now(1_000);
        let f = build(&p);
        let (r, out) = fwd(&mut t, &f);
        assert_eq!(r, Some(1));
        assert_rewritten(&f, &out, &to);
        // Another TTL: the TTL part of the addend does not depend on it.
        let f = build(&Pkt {
            ttl: 2,
            ..p.clone()
        });
        let (r, out) = fwd(&mut t, &f);
        assert_eq!(r, Some(1));
        assert_rewritten(&f, &out, &to);
        assert_eq!(out[22], 1);
        t.set_now(5_000);
        let s = t.get(&entry(&p, SNAT, 61000, p.dst, p.dport).0).unwrap();
        assert_eq!((s.packets, s.idle_ns), (2, 4_000));
        assert_eq!(
            s.owner,
            FlowOwner {
                shard: 1,
                conn: 7,
                gen: 3
            }
        );
    }

    #[test]
    fn udp_is_rewritten_and_checksums_verify() {
        let p = udp();
        let (mut t, to) = table_with(&p);
        let f = build(&p);
        let (r, out) = fwd(&mut t, &f);
        assert_eq!(r, Some(1));
        assert_rewritten(&f, &out, &to);
        assert_ne!(out[40..42], [0, 0]);
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let p = Pkt {
            udp_csum: false,
            ..udp()
        };
        let (mut t, to) = table_with(&p);
        let f = build(&p);
        assert_eq!(f[40..42], [0, 0]);
        let (r, out) = fwd(&mut t, &f);
        assert_eq!(r, Some(1));
        assert_eq!(out[40..42], [0, 0]);
        assert_rewritten(&f, &out, &to);
    }

    /// A UDP datagram whose checksum after the rewrite computes to 0, which
    /// must go out as 0xffff.
    fn udp_to_zero() -> Pkt {
        let mut p = Pkt {
            payload: vec![0; 16],
            ..udp()
        };
        // Choose the first payload word so that the rewritten datagram's
        // sum (checksum field 0) is 0xffff: its checksum is then ~0xffff = 0.
        let mut after = Pkt {
            src: SNAT,
            sport: 61000,
            udp_csum: false,
            ..p.clone()
        };
        after.payload[..2].copy_from_slice(&[0, 0]);
        let partial = l4_sum(&build(&after));
        p.payload[..2].copy_from_slice(&(!partial).to_be_bytes());
        p
    }

    #[test]
    fn udp_checksum_computing_to_zero_is_sent_as_ffff() {
        let p = udp_to_zero();
        let (mut t, to) = table_with(&p);
        let f = build(&p);
        assert_ne!(f[40..42], [0, 0]);
        let c = u16::from_be_bytes([f[40], f[41]]);
        assert_eq!(csum_apply(c, to.l4_csum_add), 0, "the case under test");
        let (r, out) = fwd(&mut t, &f);
        assert_eq!(r, Some(1));
        assert_eq!(out[40..42], [0xff, 0xff]);
        assert_rewritten(&f, &out, &to);
        // TCP has no such rule: a checksum field that the addend turns into
        // 0 (csum_apply(add, add) == 0) is sent as 0.
        let p = Pkt { proto: 6, ..p };
        let (mut t, to) = table_with(&p);
        let mut f = build(&p);
        f[50..52].copy_from_slice(&to.l4_csum_add.to_be_bytes());
        let (r, out) = fwd(&mut t, &f);
        assert_eq!(r, Some(1));
        assert_eq!(out[50..52], [0, 0]);
    }

    #[test]
    fn ttl_of_one_or_less_goes_to_the_worker() {
        for proto in [6, 17] {
            let p = Pkt { proto, ..tcp() };
            let (mut t, _) = table_with(&p);
            for ttl in [0, 1] {
                let f = build(&Pkt { ttl, ..p.clone() });
                assert_eq!(fwd(&mut t, &f).0, None, "ttl {ttl}");
            }
            assert_eq!(
                fwd(
                    &mut t,
                    &build(&Pkt {
                        ttl: 2,
                        ..p.clone()
                    })
                )
                .0,
                Some(1)
            );
        }
    }

    #[test]
    fn tcp_syn_fin_rst_go_to_the_worker() {
        let p = tcp();
        let (mut t, _) = table_with(&p);
        for flags in [0x01, 0x02, 0x04, 0x12, 0x11, 0x14, 0x07] {
            let f = build(&Pkt {
                tcp_flags: flags,
                ..p.clone()
            });
            assert_eq!(fwd(&mut t, &f).0, None, "flags {flags:#x}");
        }
        for flags in [0x10, 0x18, 0x00, 0x20, 0xc0, 0x08] {
            let f = build(&Pkt {
                tcp_flags: flags,
                ..p.clone()
            });
            assert_eq!(fwd(&mut t, &f).0, Some(1), "flags {flags:#x}");
        }
    }

    #[test]
    fn fragments_go_to_the_worker() {
        for proto in [6, 17] {
            let p = Pkt { proto, ..tcp() };
            let (mut t, _) = table_with(&p);
            // MF, an offset, both, MF with DF; DF alone and nothing pass.
            for frag in [0x2000, 0x0001, 0x00b9, 0x2010, 0x6000, 0x1fff] {
                let f = build(&Pkt { frag, ..p.clone() });
                assert_eq!(fwd(&mut t, &f).0, None, "frag {frag:#x}");
            }
            for frag in [0x0000, 0x4000, 0x8000] {
                let f = build(&Pkt { frag, ..p.clone() });
                assert_eq!(fwd(&mut t, &f).0, Some(1), "frag {frag:#x}");
            }
        }
    }

    #[test]
    fn ip_options_other_versions_and_vlan_go_to_the_worker() {
        let p = tcp();
        let (mut t, _) = table_with(&p);
        let f = build(&p);
        for vhl in [0x46, 0x4f, 0x44, 0x65, 0x55] {
            let mut g = f.clone();
            g[14] = vhl;
            assert_eq!(fwd(&mut t, &g).0, None, "vhl {vhl:#x}");
        }
        // An 802.1Q tag in front of the same datagram.
        let mut g = f[..12].to_vec();
        g.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        g.extend_from_slice(&f[12..]);
        assert_eq!(fwd(&mut t, &g).0, None);
        // IPv6 / ARP ethertypes with IPv4-looking bytes after them.
        for et in [[0x86, 0xdd], [0x08, 0x06], [0x00, 0x08]] {
            let mut g = f.clone();
            g[12..14].copy_from_slice(&et);
            assert_eq!(fwd(&mut t, &g).0, None);
        }
    }

    #[test]
    fn other_protocols_and_unknown_flows_go_to_the_worker() {
        let p = tcp();
        let (mut t, _) = table_with(&p);
        let f = build(&p);
        let mut g = f.clone();
        g[23] = 1; // ICMP
        assert_eq!(fwd(&mut t, &g).0, None);
        // Same tuple, other protocol / port / direction.
        assert_eq!(fwd(&mut t, &build(&udp())).0, None);
        assert_eq!(t.forward(1, &mut f.clone()), None);
        let back = build(&Pkt {
            src: p.dst,
            dst: p.src,
            sport: p.dport,
            dport: p.sport,
            ..p.clone()
        });
        assert_eq!(fwd(&mut t, &back).0, None);
    }

    #[test]
    fn short_frames_go_to_the_worker() {
        for (p, need) in [(tcp(), 54), (udp(), 42)] {
            let (mut t, _) = table_with(&p);
            let f = build(&Pkt {
                payload: vec![],
                ..p.clone()
            });
            assert_eq!(f.len(), need);
            for len in 0..need {
                assert_eq!(fwd(&mut t, &f[..len]).0, None, "len {len}");
            }
            assert_eq!(fwd(&mut t, &f).0, Some(1));
        }
    }

    #[test]
    fn wrong_destination_mac_goes_to_the_worker() {
        let p = tcp();
        let (mut t, _) = table_with(&p);
        for dmac in [
            [0xff; 6],
            U1_MAC,
            [0x02, 0, 0, 0, 1, 0x10],
            [0x03, 0, 0, 0, 0, 0x10],
        ] {
            let f = build(&Pkt { dmac, ..p.clone() });
            assert_eq!(fwd(&mut t, &f).0, None, "{dmac:x?}");
        }
        let s = t.get(&entry(&p, SNAT, 61000, p.dst, p.dport).0).unwrap();
        assert_eq!(s.packets, 0);
    }

    #[test]
    fn datagrams_over_the_mtu_go_to_the_worker() {
        let p = Pkt {
            payload: vec![7; 100],
            ..udp()
        };
        let (flow, mut to) = entry(&p, SNAT, 61000, p.dst, p.dport);
        let f = build(&p);
        let tot = u16::from_be_bytes([f[16], f[17]]);
        let mut t = MemFlowTable::new(4);
        to.mtu = tot - 1;
        t.install(&flow, &to, FlowOwner::default()).unwrap();
        assert_eq!(fwd(&mut t, &f).0, None);
        to.mtu = tot;
        t.install(&flow, &to, FlowOwner::default()).unwrap();
        assert_eq!(fwd(&mut t, &f).0, Some(1));
    }

    #[test]
    fn table_semantics() {
        let mut t = MemFlowTable::new(3);
        assert_eq!(t.capacity(), 3);
        let to = FlowRewrite::default();
        let flow = |i: u8| FlowMatch {
            port: 0,
            src: [198, 18, 0, i],
            proto: 6,
            ..Default::default()
        };
        let own = |shard| FlowOwner {
            shard,
            conn: 1,
            gen: 1,
        };
        t.set_now(100);
        for i in 0..3 {
            t.install(&flow(i), &to, own(u16::from(i % 2))).unwrap();
        }
        let e = t.install(&flow(9), &to, own(0)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::E2BIG));
        // Replacing works when full.
        t.install(&flow(0), &to, own(0)).unwrap();
        t.set_now(250);
        let mut seen = Vec::new();
        assert!(!t.scan(2, &mut |s| seen.push(*s)).unwrap());
        assert!(t.scan(2, &mut |s| seen.push(*s)).unwrap());
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.idle_ns == 150 && s.packets == 0));
        assert!(!t.scan(0, &mut |_| panic!()).unwrap());
        let r = t.remove(&flow(1)).unwrap().unwrap();
        assert_eq!((r.flow, r.owner, r.idle_ns), (flow(1), own(1), 150));
        assert_eq!(t.remove(&flow(1)).unwrap(), None);
        assert_eq!(t.clear(0).unwrap(), 2);
        assert!(t.is_empty());
        assert_eq!(t.clear(0).unwrap(), 0);
        // Removed during a pass: skipped.
        for i in 0..3 {
            t.install(&flow(i), &to, own(0)).unwrap();
        }
        let mut n = 0;
        assert!(!t.scan(1, &mut |_| n += 1).unwrap());
        t.remove(&flow(1)).unwrap();
        t.remove(&flow(2)).unwrap();
        assert!(t.scan(10, &mut |_| n += 1).unwrap());
        assert_eq!(n, 1);
        assert!(MemFlowTable::new(0).install(&flow(0), &to, own(0)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_rewrite_keeps_checksums_valid(
            proto in proptest::sample::select(vec![6u8, 17]),
            src: [u8; 4], dst: [u8; 4], nsrc: [u8; 4], ndst: [u8; 4],
            sport: u16, dport: u16, nsport: u16, ndport: u16,
            ttl in 2u8..=255,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let p = Pkt { proto, src, dst, sport, dport, ttl, payload, ..tcp() };
            let (flow, to) = entry(&p, nsrc, nsport, ndst, ndport);
            let mut t = MemFlowTable::new(1);
            t.install(&flow, &to, FlowOwner::default()).unwrap();
            let f = build(&p);
            let (r, out) = fwd(&mut t, &f);
            proptest::prop_assert_eq!(r, Some(1));
            assert_rewritten(&f, &out, &to);
        }
    }
}
