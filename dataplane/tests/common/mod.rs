//! Shared test rig: a two-interface unit on the in-memory backend, its
//! active/standby address sets, frame builders (etherparse, an independent
//! implementation), checks, and channel backends for running workers.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv4Slice, Ipv4Header,
    PacketBuilder,
};
use tandem_dataplane::{
    ArpTimers, Counters, DataplaneConfig, Forwarder, IdleStrategy, InterfaceConfig,
    InterfaceOwnership, Ownership, PuntedFrame, RouteConfig, RunConfig, TableSizes, Timestamp,
    TxBatches, ETHERTYPE_TANDEM,
};
use tandem_io::mem::MemBackend;
use tandem_io::{Backend, Frame};
use tandem_state::{Capacities, IfacePolicy, NatRule, Prefix, StateConfig};

pub const OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];
pub const OUT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const IN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// A client on the outside segment.
pub const C_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0x10];
pub const C_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// A server on the inside segment.
pub const S_MAC: [u8; 6] = [0x02, 0x55, 0, 0, 0, 0x20];
pub const S_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);
/// Gateways on the inside segment for the static routes.
pub const GW_WIDE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);
pub const GW_NARROW: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 253);

pub const FRAMES: u32 = 256;

/// The standby side of both interfaces (seeds 004: "an active IP address and
/// a standby IP address on the same network").
pub const SB_OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SB_IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x02];
pub const SB_OUT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const SB_IN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// Virtual active MACs.
pub const V_OUT_MAC: [u8; 6] = [0x02, 0x7a, 0, 0, 0, 0x01];
pub const V_IN_MAC: [u8; 6] = [0x02, 0x7a, 0, 0, 1, 0x01];

/// Punted frames the rig's channel holds before `drop_punt_full`.
pub const RIG_PUNT_QUEUE: usize = 4;

fn own(out: (Option<Ipv4Addr>, [u8; 6]), inside: (Option<Ipv4Addr>, [u8; 6])) -> Ownership {
    Ownership {
        interfaces: vec![
            InterfaceOwnership {
                addr: out.0,
                mac: out.1,
            },
            InterfaceOwnership {
                addr: inside.0,
                mac: inside.1,
            },
        ],
    }
}

/// The active addresses with the virtual MACs.
pub fn active_virtual() -> Ownership {
    own((Some(OUT_IP), V_OUT_MAC), (Some(IN_IP), V_IN_MAC))
}

/// The active addresses with the configured (primary's) MACs.
pub fn active_config() -> Ownership {
    own((Some(OUT_IP), OUT_MAC), (Some(IN_IP), IN_MAC))
}

/// The standby addresses and MACs.
pub fn standby() -> Ownership {
    own((Some(SB_OUT_IP), SB_OUT_MAC), (Some(SB_IN_IP), SB_IN_MAC))
}

/// No address on either interface (negotiating, or no standby IPs).
pub fn owning_nothing() -> Ownership {
    own((None, SB_OUT_MAC), (None, SB_IN_MAC))
}

/// A frame of tandem's failover EtherType carrying `payload`.
pub fn tandem_frame(src: [u8; 6], dst: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ETHERTYPE_TANDEM.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn config() -> DataplaneConfig {
    DataplaneConfig {
        interfaces: vec![
            InterfaceConfig {
                name: "outside".into(),
                mac: OUT_MAC,
                addr: OUT_IP,
                prefix_len: 24,
                mtu: 1500,
            },
            InterfaceConfig {
                name: "inside".into(),
                mac: IN_MAC,
                addr: IN_IP,
                prefix_len: 24,
                mtu: 1500,
            },
        ],
        routes: vec![
            RouteConfig {
                prefix: Ipv4Addr::new(198, 19, 0, 0),
                prefix_len: 16,
                next_hop: Some(GW_WIDE),
                interface: 1,
            },
            RouteConfig {
                prefix: Ipv4Addr::new(198, 19, 5, 0),
                prefix_len: 24,
                next_hop: Some(GW_NARROW),
                interface: 1,
            },
        ],
        tables: TableSizes {
            arp: 16,
            routes: 16,
            arp_pending: 8,
            arp_pending_per_hop: 4,
        },
        arp: ArpTimers {
            reachable: Duration::from_secs(30),
            retry: Duration::from_secs(1),
            max_retries: 2,
            garp_count: 3,
            garp_interval: Duration::from_secs(1),
        },
        run: RunConfig {
            batch: 32,
            idle: IdleStrategy::SpinThenBlock {
                spin: Duration::from_micros(10),
                block: Duration::from_millis(1),
            },
            tx_flush: Duration::ZERO,
        },
        state: None,
        sync: None,
    }
}

pub fn secs(s: f64) -> Timestamp {
    Timestamp::from_nanos((s * 1e9) as u64)
}

/// One run-loop iteration at `now`, then everything sent, drained per port.
pub fn poll_and_drain(
    bl: &mut tandem_dataplane::BatchLoop,
    b: &mut MemBackend,
    now: Timestamp,
) -> [Vec<Vec<u8>>; 2] {
    bl.poll_once(now, b);
    bl.flush_tx(b);
    let mut out = [Vec::new(), Vec::new()];
    for (port, o) in out.iter_mut().enumerate() {
        b.drain_tx(port, |f| o.push(f.to_vec()));
    }
    out
}

/// A forwarder over a two-port MemBackend, driven on simulated time.
pub struct Rig {
    pub fwd: Forwarder,
    pub b: MemBackend,
    pub out: TxBatches,
    pub now: Timestamp,
    /// Frames the forwarder punted (capacity [`RIG_PUNT_QUEUE`]).
    pub punted: crossbeam_channel::Receiver<PuntedFrame>,
}

impl Rig {
    pub fn new(cfg: &DataplaneConfig) -> Rig {
        let mut fwd = Forwarder::new(cfg).expect("valid config");
        let (tx, punted) = crossbeam_channel::bounded(RIG_PUNT_QUEUE);
        fwd.set_punt(tx, 0);
        Rig {
            fwd,
            b: MemBackend::new(2, FRAMES, 2048, 64),
            out: TxBatches::new(2, cfg.run.batch),
            now: Timestamp::ZERO,
            punted,
        }
    }

    pub fn standard() -> Rig {
        Rig::new(&config())
    }

    /// Receives `frames` on `port` as one burst at the current time.
    pub fn rx(&mut self, port: usize, frames: &[Vec<u8>]) {
        for f in frames {
            assert!(self.b.inject(port, f), "inject");
        }
        let mut burst = vec![Frame::default(); frames.len()];
        let n = self.b.rx_burst(port, &mut burst);
        self.fwd
            .process_batch(self.now, &mut self.b, port, &burst[..n], &mut self.out);
    }

    /// Advances simulated time to `t` and runs due timers.
    pub fn at(&mut self, t: Timestamp) {
        self.now = t;
        self.fwd.handle_timeout(t, &mut self.b, &mut self.out);
    }

    /// Flushes the TX batches and returns what was sent on `port`.
    pub fn tx(&mut self, port: usize) -> Vec<Vec<u8>> {
        self.out.flush(&mut self.b);
        let mut v = Vec::new();
        self.b.drain_tx(port, |bytes| v.push(bytes.to_vec()));
        v
    }

    pub fn counters(&self) -> Counters {
        let mut c = *self.fwd.counters();
        c.tx = self.out.tx;
        c.drop_tx_ring_full = self.out.drop_tx_ring_full;
        c
    }

    /// Drains everything, lets every ARP timer run out, and checks that
    /// every frame is back in the pool.
    pub fn assert_no_leaks(&mut self) {
        let mut t = self.now;
        for _ in 0..10 {
            t = t + Duration::from_secs(1);
            self.at(t);
        }
        self.tx(0);
        self.tx(1);
        assert_eq!(self.fwd.held_frames(), 0);
        assert_eq!(self.b.free_frames(), FRAMES as usize, "frame leak");
    }
}

/// The rig's unit with the stateful stage: outside (level 0) and inside
/// (level 100), inside hosts PAT'ed to the outside interface address, and
/// `conns` connection and xlate slots.
pub fn stateful_config(conns: u32) -> DataplaneConfig {
    let mut cfg = config();
    cfg.state = Some(StateConfig {
        capacities: Capacities {
            conns,
            xlates: conns,
            sas: 16,
        },
        interfaces: vec![
            IfacePolicy::new("outside", 0),
            IfacePolicy::new("inside", 100),
        ],
        nat: vec![NatRule::DynamicPat {
            real_if: 1,
            real: Prefix::new(Ipv4Addr::new(198, 18, 1, 0), 24),
            mapped_if: 0,
            mapped: OUT_IP,
        }],
        ..StateConfig::default()
    });
    cfg
}

/// A TCP segment between two hosts; `flags` holds any of `S`, `A`, `P`, `R`, `F`.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    flags: &str,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 64_000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('P') {
        b = b.psh();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), ttl)
        .udp(40000, 9);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

pub fn echo_request(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(0x1234, 7);
    let mut v = Vec::new();
    b.write(&mut v, b"ping payload").unwrap();
    v
}

pub fn arp(
    eth_dst: [u8; 6],
    op: ArpOperation,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let pkt = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sha,
        &spa.octets(),
        &tha,
        &tpa.octets(),
    )
    .unwrap();
    let b = PacketBuilder::ethernet2(sha, eth_dst).arp(pkt);
    let mut v = Vec::new();
    b.write(&mut v).unwrap();
    v
}

pub fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    arp([0xff; 6], ArpOperation::REQUEST, sha, spa, [0; 6], tpa)
}

pub fn arp_reply(sha: [u8; 6], spa: Ipv4Addr, to_mac: [u8; 6], to_ip: Ipv4Addr) -> Vec<u8> {
    arp(to_mac, ArpOperation::REPLY, sha, spa, to_mac, to_ip)
}

/// A parsed Ethernet + ARP frame.
pub fn parse_arp(f: &[u8]) -> (Ethernet2Header, ArpPacket) {
    let (eth, rest) = Ethernet2Header::from_slice(f).expect("ethernet");
    assert_eq!(eth.ether_type, EtherType::ARP);
    (eth, ArpPacket::from_slice(rest).expect("arp"))
}

/// A parsed Ethernet + IPv4 frame with a verified header checksum: the
/// header and the bytes of the datagram after it.
pub fn parse_ipv4(f: &[u8]) -> (Ethernet2Header, Ipv4Header, Vec<u8>) {
    let (eth, rest) = Ethernet2Header::from_slice(f).expect("ethernet");
    assert_eq!(eth.ether_type, EtherType::IPV4);
    let (ip, rest) = Ipv4Header::from_slice(rest).expect("ipv4");
    assert_eq!(
        ip.calc_header_checksum(),
        ip.header_checksum,
        "IPv4 header checksum"
    );
    let body = rest[..usize::from(ip.total_len) - ip.header_len()].to_vec();
    (eth, ip, body)
}

/// Type, code, bytes 5..8 and payload of an ICMP message whose checksum verifies.
pub fn parse_icmp(body: &[u8]) -> (u8, u8, [u8; 4], Vec<u8>) {
    let s = Icmpv4Slice::from_slice(body).expect("icmp");
    assert_eq!(
        s.icmp_type().calc_checksum(s.payload()),
        s.checksum(),
        "ICMP checksum"
    );
    (
        s.type_u8(),
        s.code_u8(),
        s.bytes5to8(),
        s.payload().to_vec(),
    )
}

/// A test backend for running workers: frames come in and go out as byte
/// vectors over channels, so the test thread can talk to a worker that owns
/// the backend. Frame memory is a `MemBackend` owned by the worker.
pub struct ChanBackend {
    pub mem: MemBackend,
    pub rx: crossbeam_channel::Receiver<(usize, Vec<u8>)>,
    pub tx: crossbeam_channel::Sender<(usize, Vec<u8>)>,
}

impl ChanBackend {
    fn pull(&mut self) {
        while let Ok((port, bytes)) = self.rx.try_recv() {
            self.mem.inject(port, &bytes);
        }
    }
}

impl Backend for ChanBackend {
    fn name(&self) -> &'static str {
        "mem"
    }
    fn port_count(&self) -> usize {
        self.mem.port_count()
    }
    fn frame_size(&self) -> usize {
        self.mem.frame_size()
    }
    fn rx_burst(&mut self, port: usize, out: &mut [Frame]) -> usize {
        self.pull();
        self.mem.rx_burst(port, out)
    }
    fn tx_burst(&mut self, port: usize, frames: &[Frame]) -> usize {
        let n = self.mem.tx_burst(port, frames);
        let tx = self.tx.clone();
        self.mem.drain_tx(port, |b| {
            let _ = tx.send((port, b.to_vec()));
        });
        n
    }
    fn frame(&self, f: Frame) -> &[u8] {
        self.mem.frame(f)
    }
    fn frame_mut(&mut self, f: Frame) -> &mut [u8] {
        self.mem.frame_mut(f)
    }
    fn alloc(&mut self) -> Option<Frame> {
        self.mem.alloc()
    }
    fn free(&mut self, f: Frame) {
        self.mem.free(f)
    }
    fn flush(&mut self) {}
    fn wait(&mut self, timeout: Duration) {
        // Block like a real backend would, until input or the timeout.
        if let Ok((port, bytes)) = self.rx.recv_timeout(timeout) {
            self.mem.inject(port, &bytes);
        }
    }
    fn stats(&self) -> tandem_io::BackendStats {
        self.mem.stats()
    }
}

/// Like [`ChanBackend`], but input arrives in bursts (one channel message
/// each) taken only at the start of an iteration (`rx_burst` of port 0, the
/// first port the batch loop polls), one burst per iteration: every frame of
/// a burst is processed in the same iteration, so a test can tell what one
/// batch saw.
pub struct BurstChanBackend {
    pub mem: MemBackend,
    pub rx: crossbeam_channel::Receiver<Vec<(usize, Vec<u8>)>>,
    pub tx: crossbeam_channel::Sender<(usize, Vec<u8>)>,
    pending: Option<Vec<(usize, Vec<u8>)>>,
}

impl BurstChanBackend {
    pub fn new(
        mem: MemBackend,
        rx: crossbeam_channel::Receiver<Vec<(usize, Vec<u8>)>>,
        tx: crossbeam_channel::Sender<(usize, Vec<u8>)>,
    ) -> Self {
        BurstChanBackend {
            mem,
            rx,
            tx,
            pending: None,
        }
    }
}

impl Backend for BurstChanBackend {
    fn name(&self) -> &'static str {
        "mem"
    }
    fn port_count(&self) -> usize {
        self.mem.port_count()
    }
    fn frame_size(&self) -> usize {
        self.mem.frame_size()
    }
    fn rx_burst(&mut self, port: usize, out: &mut [Frame]) -> usize {
        if port == 0 {
            if let Some(burst) = self.pending.take().or_else(|| self.rx.try_recv().ok()) {
                for (p, bytes) in burst {
                    assert!(self.mem.inject(p, &bytes), "frame pool exhausted");
                }
            }
        }
        self.mem.rx_burst(port, out)
    }
    fn tx_burst(&mut self, port: usize, frames: &[Frame]) -> usize {
        let n = self.mem.tx_burst(port, frames);
        let tx = self.tx.clone();
        self.mem.drain_tx(port, |b| {
            let _ = tx.send((port, b.to_vec()));
        });
        n
    }
    fn frame(&self, f: Frame) -> &[u8] {
        self.mem.frame(f)
    }
    fn frame_mut(&mut self, f: Frame) -> &mut [u8] {
        self.mem.frame_mut(f)
    }
    fn alloc(&mut self) -> Option<Frame> {
        self.mem.alloc()
    }
    fn free(&mut self, f: Frame) {
        self.mem.free(f)
    }
    fn flush(&mut self) {}
    fn wait(&mut self, timeout: Duration) {
        if self.pending.is_none() {
            self.pending = self.rx.recv_timeout(timeout).ok();
        }
    }
    fn stats(&self) -> tandem_io::BackendStats {
        self.mem.stats()
    }
}

/// Splits an Ethernet + IPv4 frame into IPv4 fragments of at most `size`
/// payload bytes (a multiple of 8), each with its own header checksum.
pub fn ip_fragments(frame: &[u8], id: u16, size: usize) -> Vec<Vec<u8>> {
    let (eth, ip) = frame.split_at(14);
    let (hdr, payload) = ip.split_at(20);
    payload
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let mut h = hdr.to_vec();
            h[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            let more = (i + 1) * size < payload.len();
            let word = ((i * size / 8) as u16) | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&word.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = etherparse::Ipv4Header::from_slice(&h).unwrap().0;
            h[10..12].copy_from_slice(&c.calc_header_checksum().to_be_bytes());
            [eth, &h, chunk].concat()
        })
        .collect()
}
