//! Flow offload through the real forwarder and run loop, on the in-memory
//! backend whose "kernel side" runs `MemFlowTable`, the model of tandem's
//! XDP program (its BPF twin is checked against it byte for byte in
//! `tandem-io`'s tests): which packets install which direction, that the
//! fast path's output is what the slow path would have sent, that an
//! offloaded flow stays alive on the fast path's activity and expires when
//! idle, and that a FIN, a role change and a neighbour's new MAC take the
//! entries out. Frames are checked with etherparse.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use etherparse::{TcpHeader, UdpHeader};
use tandem_dataplane::{BatchLoop, Counters, Forwarder, Role, Timestamp};
use tandem_io::mem::MemBackend;
use tandem_io::offload::{FlowOffload, MemFlowTable};

const S_PORT: u16 = 40_000;
const C_PORT: u16 = 443;

struct Unit {
    bl: BatchLoop,
    b: MemBackend,
    now: Timestamp,
}

impl Unit {
    fn new() -> Unit {
        Unit::with_table(Some(64))
    }

    /// A unit whose backend has a flow-offload table of `flows` entries
    /// (`None`: no table, every frame goes to the worker).
    fn with_table(flows: Option<usize>) -> Unit {
        let cfg = stateful_config(64);
        let mut fwd = Forwarder::for_worker(&cfg, 0, 1).expect("valid config");
        fwd.set_ownership(Timestamp::ZERO, &active_config(), Role::Forwarding, false)
            .unwrap();
        let mut b = MemBackend::new(2, 256, 2048, 128);
        if let Some(n) = flows {
            b.set_flow_offload(MemFlowTable::new(n));
        }
        let mut u = Unit {
            bl: BatchLoop::new(fwd, &cfg.run),
            b,
            now: secs(1.0),
        };
        u.rx(0, &[arp_reply(C_MAC, C_IP, OUT_MAC, OUT_IP)]);
        u.rx(1, &[arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)]);
        u
    }

    /// Injects `frames` on `port` (the kernel side forwards what its table
    /// matches), runs one iteration `dt` later, returns what left per port.
    fn rx_after(&mut self, dt: Duration, port: usize, frames: &[Vec<u8>]) -> [Vec<Vec<u8>>; 2] {
        self.now = self.now + dt;
        let now = self.now.as_nanos();
        if let Some(t) = self.b.flow_table() {
            t.set_now(now);
        }
        for f in frames {
            assert!(self.b.inject(port, f), "inject");
        }
        poll_and_drain(&mut self.bl, &mut self.b, self.now)
    }

    fn rx(&mut self, port: usize, frames: &[Vec<u8>]) -> [Vec<Vec<u8>>; 2] {
        self.rx_after(Duration::from_micros(10), port, frames)
    }

    fn counters(&self) -> Counters {
        self.bl.counters(&self.b)
    }

    fn entries(&mut self) -> usize {
        let mut n = 0;
        let t = self.b.flow_table().unwrap();
        let _ = t.scan(1024, &mut |_| n += 1);
        n
    }

    fn conns(&self) -> usize {
        self.bl.forwarder().stateful().unwrap().shard().counts().0
    }

    fn set_role(&mut self, own: &tandem_dataplane::Ownership, role: Role) {
        self.bl
            .forwarder_mut()
            .set_ownership(self.now, own, role, false)
            .unwrap();
    }
}

/// Parses a TCP frame, checking the IPv4 and TCP checksums from scratch.
fn parse_tcp(
    f: &[u8],
) -> (
    etherparse::Ethernet2Header,
    etherparse::Ipv4Header,
    TcpHeader,
) {
    let (eth, ip, body) = parse_ipv4(f);
    let (t, payload) = TcpHeader::from_slice(&body).expect("tcp");
    assert_eq!(
        t.calc_checksum_ipv4(&ip, payload).unwrap(),
        t.checksum,
        "TCP checksum"
    );
    (eth, ip, t)
}

fn from_server(flags: &str, seq: u32, payload: &[u8]) -> Vec<u8> {
    tcp(
        S_MAC,
        IN_MAC,
        (S_IP, S_PORT),
        (C_IP, C_PORT),
        seq,
        flags,
        5001,
        payload,
    )
}

fn from_client(mapped: u16, flags: &str, seq: u32, payload: &[u8]) -> Vec<u8> {
    tcp(
        C_MAC,
        OUT_MAC,
        (C_IP, C_PORT),
        (OUT_IP, mapped),
        seq,
        flags,
        1001,
        payload,
    )
}

/// SYN, SYN-ACK, ACK from the inside host through PAT; returns the mapped port.
fn handshake(u: &mut Unit) -> u16 {
    let out = u.rx(1, &[from_server("S", 1000, &[])]);
    let (_, _, t) = parse_tcp(&out[0][0]);
    let mapped = t.source_port;
    let out = u.rx(0, &[from_client(mapped, "SA", 5000, &[])]);
    assert_eq!(out[1].len(), 1);
    let out = u.rx(1, &[from_server("A", 1001, &[])]);
    assert_eq!(out[0].len(), 1);
    mapped
}

#[test]
fn an_established_connection_moves_to_the_fast_path_direction_by_direction() {
    let mut u = Unit::new();
    let mapped = handshake(&mut u);
    // The handshake's last ACK established it: that direction is installed.
    assert_eq!(u.entries(), 1);
    assert_eq!(u.counters().offload_installed, 1);
    let before = u.counters().rx;
    let out = u.rx(1, &[from_server("AP", 1001, b"hello")]);
    assert_eq!(u.counters().rx, before, "the worker never saw it");
    assert_eq!(out[0].len(), 1, "forwarded by the fast path");
    let (eth, ip, t) = parse_tcp(&out[0][0]);
    assert_eq!((eth.source, eth.destination), (OUT_MAC, C_MAC));
    assert_eq!(
        Ipv4Addr::from(ip.source),
        OUT_IP,
        "PAT as the worker does it"
    );
    assert_eq!(Ipv4Addr::from(ip.destination), C_IP);
    assert_eq!(ip.time_to_live, 63);
    assert_eq!((t.source_port, t.destination_port), (mapped, C_PORT));
    // The return direction: through the worker once, then offloaded.
    let out = u.rx(0, &[from_client(mapped, "A", 5001, b"x")]);
    assert_eq!(out[1].len(), 1);
    assert_eq!(u.counters().rx, before + 1);
    assert_eq!(u.entries(), 2);
    let out = u.rx(0, &[from_client(mapped, "AP", 5002, b"world")]);
    assert_eq!(u.counters().rx, before + 1, "the fast path took it");
    let (eth, ip, t) = parse_tcp(&out[1][0]);
    assert_eq!((eth.source, eth.destination), (IN_MAC, S_MAC));
    assert_eq!(Ipv4Addr::from(ip.destination), S_IP);
    assert_eq!(Ipv4Addr::from(ip.source), C_IP);
    assert_eq!((t.source_port, t.destination_port), (C_PORT, S_PORT));
    assert_eq!(u.conns(), 1);
}

#[test]
fn the_fast_path_sends_exactly_what_the_worker_would_have() {
    // Two units, one with an offload table: the same segments must leave
    // both byte for byte.
    let mut fast = Unit::new();
    let mut slow = Unit::with_table(None);
    let m_fast = handshake(&mut fast);
    let m_slow = handshake(&mut slow);
    for (i, len) in [0usize, 1, 5, 100, 1400].into_iter().enumerate() {
        let payload = vec![i as u8; len];
        let seq = 1001 + i as u32 * 2000;
        let a = fast.rx(1, &[from_server("AP", seq, &payload)]);
        let b = slow.rx(1, &[from_server("AP", seq, &payload)]);
        let (mut a, mut b) = (a[0][0].clone(), b[0][0].clone());
        // The PAT ports are random per unit: compare with the port put back.
        let (_, _, ta) = parse_tcp(&a);
        let (_, _, tb) = parse_tcp(&b);
        assert_eq!((ta.source_port, tb.source_port), (m_fast, m_slow));
        for f in [&mut a, &mut b] {
            f[34..36].copy_from_slice(&0u16.to_be_bytes());
            f[50..52].copy_from_slice(&0u16.to_be_bytes());
        }
        assert_eq!(a, b, "payload of {len} bytes");
    }
    assert_eq!(slow.counters().offload_installed, 0);
    assert!(
        fast.counters().rx + 5 <= slow.counters().rx,
        "the fast path took them"
    );
}

#[test]
fn a_fin_takes_the_connection_back_to_the_worker() {
    let mut u = Unit::new();
    let mapped = handshake(&mut u);
    u.rx(0, &[from_client(mapped, "A", 5001, &[])]);
    assert_eq!(u.entries(), 2);
    let before = u.counters().rx;
    // FIN is never taken by the fast path; the worker sees it and removes both.
    let fin = from_server("AF", 1001, &[]);
    let out = u.rx(1, &[fin]);
    assert_eq!(out[0].len(), 1);
    assert_eq!(u.counters().rx, before + 1);
    assert_eq!(u.entries(), 0);
    assert_eq!(u.counters().offload_removed, 2);
    // The closing ACKs are the worker's again.
    u.rx(0, &[from_client(mapped, "A", 5001, &[])]);
    assert_eq!(u.counters().rx, before + 2);
    assert_eq!(u.entries(), 0, "not offloaded while closing");
}

fn udp_from_server(payload: &[u8]) -> Vec<u8> {
    udp(S_MAC, IN_MAC, S_IP, C_IP, 64, payload)
}

#[test]
fn an_offloaded_flow_lives_on_fast_path_traffic_and_expires_when_idle() {
    let mut u = Unit::new();
    // First datagram creates the connection, the second installs it.
    u.rx(1, &[udp_from_server(b"a")]);
    u.rx(1, &[udp_from_server(b"b")]);
    assert_eq!(u.entries(), 1);
    let rx = u.counters().rx;
    // 10 minutes of fast-path traffic, a datagram every 10 s: the worker
    // sees none of it, and the 2-minute UDP timeout must not strike.
    for _ in 0..60 {
        let out = u.rx_after(Duration::from_secs(10), 1, &[udp_from_server(b"c")]);
        assert_eq!(out[0].len(), 1);
        let (_, ip, body) = parse_ipv4(&out[0][0]);
        let (h, payload) = UdpHeader::from_slice(&body).unwrap();
        assert_eq!(h.calc_checksum_ipv4(&ip, payload).unwrap(), h.checksum);
        assert_eq!(Ipv4Addr::from(ip.source), OUT_IP);
    }
    assert_eq!(u.counters().rx, rx, "all on the fast path");
    assert_eq!(
        u.conns(),
        1,
        "alive: the scans fed the fast path's activity back"
    );
    // Idle: retired (entry out) at the timeout, then expired.
    for _ in 0..30 {
        u.rx_after(Duration::from_secs(10), 0, &[]);
    }
    assert_eq!(u.entries(), 0);
    assert_eq!(u.conns(), 0);
}

#[test]
fn a_role_change_clears_the_fast_path_and_a_standby_forwards_nothing() {
    let mut u = Unit::new();
    u.rx(1, &[udp_from_server(b"a")]);
    u.rx(1, &[udp_from_server(b"b")]);
    assert_eq!(u.entries(), 1);
    u.set_role(&standby(), Role::NotForwarding);
    u.rx(0, &[]);
    assert_eq!(u.entries(), 0, "cleared before the next burst");
    let out = u.rx(1, &[udp_from_server(b"c")]);
    assert!(out[0].is_empty(), "a standby does not pass traffic");
    assert!(u.counters().offload_cleared >= 1);
}

#[test]
fn a_neighbours_new_mac_clears_the_fast_path() {
    let mut u = Unit::new();
    u.rx(1, &[udp_from_server(b"a")]);
    u.rx(1, &[udp_from_server(b"b")]);
    assert_eq!(u.entries(), 1);
    // The client's MAC changes (a router failover behind it, say).
    let new_mac = [0x02, 0xcc, 0, 0, 0, 0x99];
    u.rx(0, &[arp_reply(new_mac, C_IP, OUT_MAC, OUT_IP)]);
    assert_eq!(u.entries(), 0);
    // The next datagram goes through the worker to the new MAC, and is
    // offloaded again with it.
    let out = u.rx(1, &[udp_from_server(b"c")]);
    let (eth, _, _) = parse_ipv4(&out[0][0]);
    assert_eq!(eth.destination, new_mac);
    assert_eq!(u.entries(), 1);
    let out = u.rx(1, &[udp_from_server(b"d")]);
    let (eth, _, _) = parse_ipv4(&out[0][0]);
    assert_eq!(eth.destination, new_mac);
}

#[test]
fn a_full_table_leaves_connections_on_the_worker() {
    let mut u = Unit::new();
    u.b.set_flow_offload(MemFlowTable::new(0));
    u.rx(1, &[udp_from_server(b"a")]);
    u.rx(1, &[udp_from_server(b"b")]);
    assert_eq!(u.counters().offload_refused, 1);
    assert_eq!(
        u.counters().offload_errors,
        0,
        "a full table is counted, not an error"
    );
    let rx = u.counters().rx;
    for _ in 0..3 {
        let out = u.rx(1, &[udp_from_server(b"c")]);
        assert_eq!(out[0].len(), 1);
    }
    assert_eq!(u.counters().rx, rx + 3, "still forwarded, by the worker");
    assert_eq!(u.counters().offload_refused, 1, "not tried again");
}
