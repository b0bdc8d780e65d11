//! Fixtures of the criterion micro-benchmarks (`benches/`), kept here so the
//! benches stay short and so the fixtures themselves are unit-tested: a
//! benchmark that silently measures a drop path instead of the forward path
//! is worse than none.
//!
//! * [`udp_frame`] / [`arp_frame`]: the frames the parse benches read.
//! * [`random_routes`]: a deterministic route table of N prefixes and the
//!   probe addresses the lookup bench walks.
//! * [`RunLoopRig`]: one forwarder and its batch loop over a two-port
//!   [`MemBackend`], with a resolved neighbour, recycling the same frames
//!   forever so the steady state allocates nothing.

use std::net::Ipv4Addr;
use std::time::Duration;

use tandem_dataplane::route::{Route, RouteTable};
use tandem_dataplane::{
    ArpTimers, BatchLoop, Counters, DataplaneConfig, Forwarder, IdleStrategy, InterfaceConfig,
    RouteKind, RunConfig, TableSizes, Timestamp,
};
use tandem_io::mem::MemBackend;
use tandem_io::Backend;
use tandem_wire::builder::{emit_arp_frame, emit_udp_frame, UdpFrame};
use tandem_wire::{ArpRepr, MacAddr};

/// The unit's MAC and address on port 0 (outside) and port 1 (inside).
pub const OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];
pub const OUT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const IN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// A client on the outside segment, a server on the inside one.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0x10];
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const SERVER_MAC: [u8; 6] = [0x02, 0x55, 0, 0, 0, 0x20];
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);

/// Frame length of the benchmark frames (without FCS), the RFC 2544 minimum.
pub const FRAME_LEN: usize = 64;
/// Ethernet + IPv4 + UDP headers in front of the payload.
const UDP_HEADERS: usize = 14 + 20 + 8;

/// The client → server flow every bench uses.
pub fn udp_spec(ttl: u8) -> UdpFrame {
    UdpFrame {
        src_mac: MacAddr(CLIENT_MAC),
        dst_mac: MacAddr(OUT_MAC),
        vlan: None,
        src_ip: CLIENT_IP,
        dst_ip: SERVER_IP,
        src_port: 10_000,
        dst_port: 9,
        ttl,
        dscp: 0,
        ident: 0,
    }
}

/// A 64-byte Ethernet + IPv4 + UDP frame, checksums filled.
pub fn udp_frame(ttl: u8) -> [u8; FRAME_LEN] {
    let mut buf = [0u8; FRAME_LEN];
    let payload = [0xa5u8; FRAME_LEN - UDP_HEADERS];
    let n = emit_udp_frame(&mut buf, &udp_spec(ttl), &payload).expect("64 bytes fit");
    debug_assert_eq!(n, FRAME_LEN);
    buf
}

/// An ARP request from `sender_mac`/`sender_ip` for `target`, broadcast,
/// padded to the 60-byte Ethernet minimum.
pub fn arp_frame(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 60] {
    let mut buf = [0u8; 60];
    let repr = ArpRepr::request(MacAddr(sender_mac), sender_ip, target);
    emit_arp_frame(
        &mut buf,
        MacAddr(sender_mac),
        MacAddr::BROADCAST,
        None,
        &repr,
    )
    .expect("an ARP frame fits 60 bytes");
    buf
}

/// xorshift64*: a tiny deterministic generator, so every run of a bench
/// builds the same table and probes the same addresses.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

/// A route table of exactly `n` distinct prefixes, lengths spread like a
/// small enterprise table (mostly /16–/24, some /8–/15 and /25–/32), plus
/// `probes` destination addresses: half inside some prefix, half random.
pub fn random_routes(n: usize, probes: usize, seed: u64) -> (RouteTable, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let mut table = RouteTable::with_capacity(n);
    let mut prefixes = Vec::with_capacity(n);
    while table.len() < n {
        let r = rng.next_u32();
        let len = match r % 10 {
            0 => 8 + (r >> 8) % 8,
            1 => 25 + (r >> 8) % 8,
            _ => 16 + (r >> 8) % 9,
        } as u8;
        let prefix = rng.next_u32() & mask(len);
        let route = Route {
            prefix,
            prefix_len: len,
            next_hop: None,
            port: table.len() % 4,
            kind: RouteKind::Static,
        };
        // Duplicates are refused; draw again.
        if table.insert(route).is_ok() {
            prefixes.push((prefix, len));
        }
    }
    let addrs = (0..probes)
        .map(|i| {
            let r = rng.next_u32();
            if i % 2 == 0 {
                let (p, len) = prefixes[r as usize % prefixes.len()];
                p | (rng.next_u32() & !mask(len))
            } else {
                r
            }
        })
        .collect();
    (table, addrs)
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// The two-interface unit of the run-loop bench: outside 198.18.1.1/24 on
/// port 0, inside 198.18.2.1/24 on port 1, ARP entries that stay reachable
/// for the whole bench, no gratuitous ARP.
pub fn unit_config(batch: usize) -> DataplaneConfig {
    let ifc = |name: &str, mac, addr| InterfaceConfig {
        name: name.into(),
        mac,
        addr,
        prefix_len: 24,
        mtu: 1500,
    };
    DataplaneConfig {
        interfaces: vec![
            ifc("outside", OUT_MAC, OUT_IP),
            ifc("inside", IN_MAC, IN_IP),
        ],
        routes: Vec::new(),
        tables: TableSizes::default(),
        arp: ArpTimers {
            reachable: Duration::from_secs(24 * 3600),
            garp_count: 0,
            ..ArpTimers::default()
        },
        run: RunConfig {
            batch,
            idle: IdleStrategy::BusyPoll,
            tx_flush: Duration::ZERO,
        },
        state: None,
        sync: None,
    }
}

/// Frame slots of the rig's backend: the batch in flight plus the
/// gratuitous/ARP frames of setup, with room to spare.
const RIG_FRAMES: u32 = 1024;

/// One forwarder's batch loop over a two-port in-memory backend, forwarding
/// one batch of 64-byte UDP frames client → server per [`RunLoopRig::step`].
///
/// The frames never leave the backend: the server's MAC is taught to the
/// forwarder as the unit's own outside MAC, so a forwarded frame (rewritten
/// to that destination MAC) is a valid input on port 0 again and
/// [`MemBackend::wire_tx_to_rx`] hands it straight back. Each pass
/// decrements the TTL, so after [`RunLoopRig::PASSES`] steps the frames
/// must be refreshed with [`RunLoopRig::refill`] (outside the timed part).
pub struct RunLoopRig {
    pub backend: MemBackend,
    pub batch_loop: BatchLoop,
    pub now: Timestamp,
    batch: usize,
}

impl RunLoopRig {
    /// Steps a fresh batch survives: TTL 255 is forwarded while > 1.
    pub const PASSES: u64 = 250;

    /// A rig with `batch` frames per step, the neighbour resolved and the
    /// first batch loaded.
    pub fn new(batch: usize) -> RunLoopRig {
        let cfg = unit_config(batch);
        let fwd = Forwarder::new(&cfg).expect("bench config is valid");
        let mut rig = RunLoopRig {
            backend: MemBackend::new(2, RIG_FRAMES, 2048, batch.max(64) * 2),
            batch_loop: BatchLoop::new(fwd, &cfg.run),
            now: Timestamp::from_millis(1),
            batch,
        };
        // The "server" announces itself on the inside with the unit's
        // outside MAC (see the type's doc); the forwarder learns it and
        // answers, and the answer is thrown away.
        assert!(rig.backend.inject(1, &arp_frame(OUT_MAC, SERVER_IP, IN_IP)));
        rig.batch_loop.poll_once(rig.now, &mut rig.backend);
        rig.backend.drain_tx(1, |_| {});
        rig.backend.drain_tx(0, |_| {});
        rig.refill();
        rig
    }

    /// Drops whatever is in flight and loads a fresh batch (TTL 255) on port 0.
    pub fn refill(&mut self) {
        self.batch_loop.flush_tx(&mut self.backend);
        self.backend.drain_tx(0, |_| {});
        self.backend.drain_tx(1, |_| {});
        let mut burst = [tandem_io::Frame::default(); 64];
        loop {
            let n = self.backend.rx_burst(0, &mut burst);
            if n == 0 {
                break;
            }
            for &f in &burst[..n] {
                self.backend.free(f);
            }
        }
        let frame = udp_frame(255);
        for _ in 0..self.batch {
            assert!(self.backend.inject(0, &frame), "rig frame pool exhausted");
        }
    }

    /// One iteration of the batch loop (receive the batch on port 0,
    /// forward it, transmit on port 1), then the wire back to port 0.
    /// Returns the frames forwarded.
    #[inline]
    pub fn step(&mut self) -> usize {
        self.now = self.now + Duration::from_nanos(1_000);
        self.batch_loop.poll_once(self.now, &mut self.backend);
        self.backend.wire_tx_to_rx(1, 0)
    }

    /// Forwarder, TX and backend counters.
    pub fn counters(&self) -> Counters {
        self.batch_loop.counters(&self.backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_wire::{EthernetFrame, Ipv4Packet, UdpPacket};

    #[test]
    fn frames_parse_as_what_they_claim() {
        let f = udp_frame(64);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), SERVER_IP);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        let a = arp_frame(SERVER_MAC, SERVER_IP, IN_IP);
        let eth = EthernetFrame::new_checked(&a[..]).unwrap();
        let arp = tandem_wire::ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.target_ip(), IN_IP);
    }

    #[test]
    fn random_routes_have_n_prefixes_and_half_the_probes_match() {
        let (t, probes) = random_routes(1000, 1000, 7);
        assert_eq!(t.len(), 1000);
        let hits = probes.iter().filter(|&&a| t.lookup(a).is_some()).count();
        assert!(hits >= 500, "{hits}");
    }

    #[test]
    fn run_loop_rig_forwards_every_frame_every_step_and_leaks_nothing() {
        let mut rig = RunLoopRig::new(64);
        for round in 0..3 {
            for _ in 0..RunLoopRig::PASSES {
                assert_eq!(rig.step(), 64, "round {round}");
            }
            rig.refill();
        }
        let c = rig.counters();
        assert_eq!(c.forwarded, 3 * RunLoopRig::PASSES * 64);
        assert_eq!(c.drop_ttl_expired + c.drop_other_mac + c.drop_malformed, 0);
        rig.refill();
        rig.backend.drain_tx(0, |_| {});
        let mut burst = [tandem_io::Frame::default(); 64];
        let n = rig.backend.rx_burst(0, &mut burst);
        for &f in &burst[..n] {
            rig.backend.free(f);
        }
        assert_eq!(rig.backend.free_frames(), RIG_FRAMES as usize);
    }
}
