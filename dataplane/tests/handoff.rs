//! Worker handoff (`tandem_dataplane::handoff`) on the in-memory backend:
//! two workers of one stateful unit, each with its own backend and shard,
//! where the two directions of a PAT'ed TCP connection arrive on different
//! workers. The flow's owner (`tandem_state::steer`) must see both, so the
//! connection passes both ways; without handoff the return leg is dropped.
//! Also: a full ring drops and counts, ARP answers reach every worker.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etherparse::{PacketBuilder, TcpHeader};
use tandem_dataplane::handoff::mesh;
use tandem_dataplane::{ArpState, BatchLoop, Counters, DataplaneConfig, Forwarder, Timestamp};
use tandem_io::mem::MemBackend;
use tandem_io::wake::WakeFd;

/// Two workers of one unit, each over its own backend (worker i's queue of
/// both ports), stepped in turn on simulated time.
struct Pair {
    w: [BatchLoop; 2],
    b: [MemBackend; 2],
    now: Timestamp,
}

impl Pair {
    /// With `slots` per ring, or no handoff at all (`None`).
    fn new(cfg: &DataplaneConfig, slots: Option<usize>) -> Pair {
        let wakes = [
            Arc::new(WakeFd::new().unwrap()),
            Arc::new(WakeFd::new().unwrap()),
        ];
        let mut ends = slots.map(|s| mesh(s, 2048, &wakes).into_iter());
        let w = [0, 1].map(|i| {
            let mut fwd = Forwarder::for_worker(cfg, i, 2).unwrap();
            if let Some(e) = ends.as_mut() {
                assert!(fwd.set_handoff(e.next().unwrap()));
            }
            BatchLoop::new(fwd, &cfg.run)
        });
        Pair {
            w,
            b: [0, 1].map(|_| MemBackend::new(2, 256, 2048, 64)),
            now: secs(1.0),
        }
    }

    /// `frame` arrives on `port` of worker `worker`; every worker runs two
    /// iterations (so a frame handed over either way is processed);
    /// returns what went out per port, over both workers.
    fn rx(&mut self, worker: usize, port: usize, frame: &[u8]) -> [Vec<Vec<u8>>; 2] {
        assert!(self.b[worker].inject(port, frame));
        self.run()
    }

    fn run(&mut self) -> [Vec<Vec<u8>>; 2] {
        for _ in 0..2 {
            for i in 0..2 {
                self.now = self.now + Duration::from_micros(10);
                self.w[i].poll_once(self.now, &mut self.b[i]);
                self.w[i].flush_tx(&mut self.b[i]);
            }
        }
        let mut out = [Vec::new(), Vec::new()];
        for b in &mut self.b {
            for (port, o) in out.iter_mut().enumerate() {
                b.drain_tx(port, |f| o.push(f.to_vec()));
            }
        }
        out
    }

    fn counters(&self, i: usize) -> Counters {
        self.w[i].counters(&self.b[i])
    }
}

fn parse_tcp(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, TcpHeader, Vec<u8>) {
    let (_, ip, body) = parse_ipv4(f);
    let (t, payload) = TcpHeader::from_slice(&body).expect("tcp");
    assert_eq!(
        t.calc_checksum_ipv4(&ip, payload).unwrap(),
        t.checksum,
        "TCP checksum"
    );
    (
        Ipv4Addr::from(ip.source),
        Ipv4Addr::from(ip.destination),
        t,
        payload.to_vec(),
    )
}

/// The worker owning the flow of an Ethernet/IPv4 frame.
fn owner(frame: &[u8]) -> usize {
    usize::from(tandem_state::steer(&frame[14..], 2))
}

const C_PORT: u16 = 443;

/// An inside source port whose connection to the client is owned by `want`.
fn sport_owned_by(want: usize, from: u16) -> u16 {
    (from..u16::MAX)
        .find(|&p| owner(&syn(p)) == want)
        .expect("a port of each worker")
}

fn syn(sport: u16) -> Vec<u8> {
    tcp(
        S_MAC,
        IN_MAC,
        (S_IP, sport),
        (C_IP, C_PORT),
        1000,
        "S",
        0,
        &[],
    )
}

/// Both neighbours, their ARP replies received by worker 0 only.
fn learn_neighbours(p: &mut Pair) {
    p.rx(0, 0, &arp_reply(C_MAC, C_IP, OUT_MAC, OUT_IP));
    p.rx(0, 1, &arp_reply(S_MAC, S_IP, IN_MAC, IN_IP));
}

/// SYN received by worker 0, SYN-ACK by worker 1, then data both ways with
/// each direction on the other worker; returns the mapped port, or `None`
/// when the SYN-ACK went nowhere.
fn connection(p: &mut Pair, sport: u16) -> Option<u16> {
    let out = p.rx(0, 1, &syn(sport));
    assert_eq!(out[0].len(), 1, "SYN forwarded");
    let (src, dst, t, _) = parse_tcp(&out[0][0]);
    assert_eq!((src, dst), (OUT_IP, C_IP), "PAT to the outside address");
    assert!(t.syn && !t.ack);
    let mapped = t.source_port;
    let synack = tcp(
        C_MAC,
        OUT_MAC,
        (C_IP, C_PORT),
        (OUT_IP, mapped),
        5000,
        "SA",
        1001,
        &[],
    );
    // PAT chose a port whose return tuple steers to the same worker.
    assert_eq!(owner(&synack), owner(&syn(sport)));
    let out = p.rx(1, 0, &synack);
    if out[1].is_empty() {
        return None;
    }
    let (src, dst, t, _) = parse_tcp(&out[1][0]);
    assert_eq!((src, dst), (C_IP, S_IP), "de-NATed to the inside host");
    assert_eq!((t.source_port, t.destination_port), (C_PORT, sport));
    assert!(t.syn && t.ack);
    let ack = tcp(
        S_MAC,
        IN_MAC,
        (S_IP, sport),
        (C_IP, C_PORT),
        1001,
        "PA",
        5001,
        b"hello",
    );
    let out = p.rx(1, 1, &ack);
    assert_eq!(out[0].len(), 1, "data out");
    let (_, _, t, payload) = parse_tcp(&out[0][0]);
    assert_eq!((t.source_port, payload.as_slice()), (mapped, &b"hello"[..]));
    let back = tcp(
        C_MAC,
        OUT_MAC,
        (C_IP, C_PORT),
        (OUT_IP, mapped),
        5001,
        "PA",
        1006,
        b"world",
    );
    let out = p.rx(0, 0, &back);
    assert_eq!(out[1].len(), 1, "data back");
    let (_, dst, t, payload) = parse_tcp(&out[1][0]);
    assert_eq!((dst, t.destination_port), (S_IP, sport));
    assert_eq!(payload, b"world");
    Some(mapped)
}

#[test]
fn both_directions_meet_the_owner_through_pat() {
    let cfg = stateful_config(1024);
    let mut p = Pair::new(&cfg, Some(64));
    learn_neighbours(&mut p);
    // ARP answers received by worker 0 taught worker 1 too (a copy each).
    for w in 0..2 {
        let f = p.w[w].forwarder();
        assert_eq!(f.arp_state(p.now, 0, C_IP), Some(ArpState::Reachable));
        assert_eq!(f.arp_state(p.now, 1, S_IP), Some(ArpState::Reachable));
    }
    assert_eq!(p.counters(0).handoff_arp_out, 2);
    // One connection owned by each worker: both the worker that received
    // the SYN and the other one own a connection, so frames cross both ways.
    let s0 = sport_owned_by(0, 40_000);
    let s1 = sport_owned_by(1, 40_000);
    connection(&mut p, s0).expect("worker 0's connection passes");
    connection(&mut p, s1).expect("worker 1's connection passes");
    let (c0, c1) = (p.counters(0), p.counters(1));
    // Each connection lives in its owner's shard only.
    assert_eq!((c0.conns, c1.conns), (1, 1));
    assert_eq!((c0.xlates, c1.xlates), (1, 1));
    // Worker 0 received s1's SYN and data back, worker 1 received s0's
    // SYN-ACK and data out: two frames each went to the other worker.
    assert_eq!((c0.handoff_out, c1.handoff_out), (2, 2));
    assert_eq!((c0.handoff_in, c1.handoff_in), (2, 2));
    assert_eq!(c0.drop_handoff_full + c1.drop_handoff_full, 0);
    assert_eq!(c0.drop_tcp_no_conn + c1.drop_tcp_no_conn, 0);
    assert_eq!(c0.forwarded + c1.forwarded, 8);
    for (i, b) in p.b.iter().enumerate() {
        assert_eq!(b.free_frames(), 256, "worker {i} leaked no frame");
    }
}

/// The failure handoff exists for: without it, the SYN-ACK of a
/// connection owned by worker 0 arrives on worker 1, whose shard does not
/// know it, and is dropped.
#[test]
fn without_handoff_the_return_leg_on_another_worker_is_dropped() {
    let cfg = stateful_config(1024);
    let mut p = Pair::new(&cfg, None);
    // Without handoff no ARP copies: each worker learns from its own frames.
    for w in 0..2 {
        p.rx(w, 0, &arp_reply(C_MAC, C_IP, OUT_MAC, OUT_IP));
        p.rx(w, 1, &arp_reply(S_MAC, S_IP, IN_MAC, IN_IP));
    }
    assert_eq!(connection(&mut p, sport_owned_by(0, 40_000)), None);
    let c1 = p.counters(1);
    assert_eq!(c1.drop_tcp_no_conn, 1, "{c1:?}");
    assert_eq!(c1.handoff_out + p.counters(0).handoff_in, 0);
}

#[test]
fn a_full_ring_drops_and_counts() {
    let mut cfg = stateful_config(1024);
    cfg.run.batch = 64;
    let mut p = Pair::new(&cfg, Some(4));
    learn_neighbours(&mut p);
    // UDP flows from the inside host owned by worker 1, all received by worker 0.
    let frames: Vec<Vec<u8>> = (20_000u16..)
        .map(|sport| {
            let b = PacketBuilder::ethernet2(S_MAC, IN_MAC)
                .ipv4(S_IP.octets(), C_IP.octets(), 64)
                .udp(sport, 53);
            let mut v = Vec::new();
            b.write(&mut v, &[7; 18]).unwrap();
            v
        })
        .filter(|f| owner(f) == 1)
        .take(10)
        .collect();
    for f in &frames {
        assert!(p.b[0].inject(1, f));
    }
    let before = (p.counters(0), p.counters(1));
    // Worker 0 alone: 4 slots toward worker 1, 10 frames for it.
    p.now = p.now + Duration::from_micros(10);
    p.w[0].poll_once(p.now, &mut p.b[0]);
    let c0 = p.counters(0);
    assert_eq!(c0.handoff_out - before.0.handoff_out, 4);
    assert_eq!(c0.drop_handoff_full - before.0.drop_handoff_full, 6);
    // The owner has work pending, so it would not block (and was woken).
    assert!(p.w[1].work_pending());
    let out = p.run();
    let c1 = p.counters(1);
    assert_eq!(c1.handoff_in - before.1.handoff_in, 4);
    assert_eq!(out[0].len(), 4, "the 4 queued frames forwarded by worker 1");
    assert_eq!(p.b[0].free_frames(), 256);
    // The ring's slots came back: it carries frames again.
    assert!(p.b[0].inject(1, &frames[0]));
    p.run();
    assert_eq!(p.counters(1).handoff_in - before.1.handoff_in, 5);
}

/// Units without the stateful stage (or with one worker) have no rings.
#[test]
fn only_stateful_units_with_several_workers_take_rings() {
    let wakes = [
        Arc::new(WakeFd::new().unwrap()),
        Arc::new(WakeFd::new().unwrap()),
    ];
    let mut ends = mesh(4, 2048, &wakes).into_iter();
    let mut plain = Forwarder::for_worker(&config(), 0, 2).unwrap();
    assert!(!plain.set_handoff(ends.next().unwrap()));
    let lone = mesh(4, 2048, &wakes[..1]).pop().unwrap();
    let mut single = Forwarder::for_worker(&stateful_config(1024), 0, 1).unwrap();
    assert!(!single.set_handoff(lone));
}

/// A 2 000-byte UDP datagram from the inside server (source port `sport`)
/// to the client, in two fragments.
fn fragmented_udp(sport: u16, id: u16) -> Vec<Vec<u8>> {
    let b = PacketBuilder::ethernet2(S_MAC, IN_MAC)
        .ipv4(S_IP.octets(), C_IP.octets(), 64)
        .udp(sport, 53);
    let payload = vec![0x5a; 2000];
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, &payload).unwrap();
    ip_fragments(&v, id, 1480)
}

#[test]
fn a_reordered_fragment_waits_on_the_receiving_worker_and_follows_its_first() {
    let cfg = stateful_config(1024);
    let mut p = Pair::new(&cfg, Some(64));
    learn_neighbours(&mut p);
    // A flow owned by worker 1, whose fragments all arrive on worker 0's queue.
    let sport = (1024..u16::MAX)
        .find(|&s| owner(&fragmented_udp(s, 1)[0]) == 1)
        .expect("a port owned by worker 1");
    let frags = fragmented_udp(sport, 4242);
    let out = p.rx(0, 1, &frags[1]);
    assert!(out[0].is_empty() && out[1].is_empty(), "held");
    assert_eq!(p.w[0].forwarder().held_frames(), 1);
    let out = p.rx(0, 1, &frags[0]);
    assert_eq!(out[0].len(), 2, "both fragments forwarded");
    let offsets: Vec<u16> = out[0]
        .iter()
        .map(|f| {
            let (_, ip, _) = parse_ipv4(f);
            assert_eq!(Ipv4Addr::from(ip.source), OUT_IP, "translated");
            ip.fragment_offset.value()
        })
        .collect();
    assert_eq!(offsets, [0, 185], "the first ahead of the held one");
    let (c0, c1) = (p.counters(0), p.counters(1));
    assert_eq!(c0.fragments_held, 1);
    assert_eq!(c0.handoff_out, 2, "both handed to the flow's owner");
    assert_eq!((c1.fragments_passed, c1.drop_fragment), (1, 0));
    assert_eq!(p.w[0].forwarder().held_frames(), 0);
}
