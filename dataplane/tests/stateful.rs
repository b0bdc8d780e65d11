//! The stateful glue (issue 4) on the in-memory backend and simulated time:
//! PAT through one forwarder, the strict no-mid-stream rule, replication of
//! connections, xlates and ARP entries from an active forwarder to a
//! standby that then takes over the same connection, and a bulk sync.
//! Frames are checked with etherparse, an independent parser.
//!
//! The replication thread (ctrl) is simulated: frames taken from A's
//! outbound channel are stamped with an epoch and a sequence number (what
//! `tandem_sync::Sender` does), copied into a buffer of B's pool (what
//! receiving and opening does) and queued on B's inbound channel.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etherparse::TcpHeader;
use tandem_dataplane::sync::channels;
use tandem_dataplane::{
    BatchLoop, DataplaneConfig, Forwarder, Role, StatefulCommand, StreamEndpoint, SyncSettings,
    Timestamp,
};
use tandem_io::mem::MemBackend;
use tandem_io::wake::WakeFd;

const FRAMES_A: u32 = 1024;

fn state_config(conns: u32) -> DataplaneConfig {
    let mut cfg = stateful_config(conns);
    cfg.sync = Some(SyncSettings {
        frame_size: 1400,
        flush: Duration::from_micros(100),
        buffers_per_worker: 2048,
        bulk_rate: 0,
    });
    cfg
}

/// One forwarder with its batch loop, backend and replication endpoint.
struct Unit {
    bl: BatchLoop,
    b: MemBackend,
    ep: StreamEndpoint,
    now: Timestamp,
    /// Sequence numbers stamped on frames fed to this unit.
    seq: u32,
}

impl Unit {
    fn new(cfg: &DataplaneConfig, own: tandem_dataplane::Ownership, role: Role) -> Unit {
        let mut fwd = Forwarder::for_worker(cfg, 0, 1).expect("valid config");
        let sy = cfg.sync.unwrap();
        let (ws, ep) = channels(
            0,
            sy.buffers_per_worker,
            sy.frame_size,
            Arc::new(WakeFd::new().unwrap()),
            Arc::new(WakeFd::new().unwrap()),
        );
        fwd.attach_sync(ws, &sy, 0).unwrap();
        fwd.set_ownership(Timestamp::ZERO, &own, role, false)
            .unwrap();
        Unit {
            bl: BatchLoop::new(fwd, &cfg.run),
            b: MemBackend::new(2, FRAMES_A, 2048, 512),
            ep,
            now: secs(1.0),
            seq: 0,
        }
    }

    /// Receives `frames` on `port`, runs one iteration, returns what went out per port.
    fn rx(&mut self, port: usize, frames: &[Vec<u8>]) -> [Vec<Vec<u8>>; 2] {
        for f in frames {
            assert!(self.b.inject(port, f), "inject");
        }
        self.step(Duration::from_micros(10))
    }

    /// Advances time by `dt`, runs one iteration, returns what went out.
    fn step(&mut self, dt: Duration) -> [Vec<Vec<u8>>; 2] {
        self.now = self.now + dt;
        poll_and_drain(&mut self.bl, &mut self.b, self.now)
    }

    fn counters(&self) -> tandem_dataplane::Counters {
        self.bl.counters(&self.b)
    }

    /// Ships whatever frames are due (flush deadline passed) and moves
    /// every outbound frame into `to` (or discards them with `None`).
    fn replicate(&mut self, mut to: Option<&mut Unit>) -> usize {
        self.step(Duration::from_millis(1));
        let mut n = 0;
        while let Ok(buf) = self.ep.outbound.try_recv() {
            if let Some(to) = to.as_deref_mut() {
                to.seq += 1;
                let mut copy = to.ep.pool.get().expect("a free buffer on the standby");
                let len = buf.len();
                copy.spare_mut()[..len].copy_from_slice(buf.as_bytes());
                copy.set_len(len);
                // The replication thread's Sender stamps epoch and sequence number.
                let bytes = copy.as_bytes_mut();
                bytes[4..8].copy_from_slice(&7u32.to_be_bytes());
                bytes[12..16].copy_from_slice(&to.seq.to_be_bytes());
                to.ep.inbound.try_send(copy).expect("inbound room");
            }
            self.ep.pool.put(buf);
            n += 1;
        }
        n
    }

    fn conns(&self) -> Vec<String> {
        let mut v = Vec::new();
        self.bl
            .forwarder()
            .stateful()
            .unwrap()
            .shard()
            .conns(self.now.as_nanos(), |c| {
                v.push(format!(
                    "{} {}:{} -> {}:{} as {}:{} -> {}:{} {} {}->{}",
                    c.proto,
                    c.src,
                    c.sport,
                    c.dst,
                    c.dport,
                    c.xlated_src,
                    c.xlated_sport,
                    c.xlated_dst,
                    c.xlated_dport,
                    c.state,
                    c.in_if,
                    c.out_if
                ))
            });
        v.sort();
        v
    }
}

/// Parses a forwarded TCP frame, checking the IPv4 and TCP checksums.
fn parse_tcp(
    f: &[u8],
) -> (
    etherparse::Ethernet2Header,
    etherparse::Ipv4Header,
    TcpHeader,
    Vec<u8>,
) {
    let (eth, ip, body) = parse_ipv4(f);
    let (tcp, payload) = TcpHeader::from_slice(&body).expect("tcp");
    assert_eq!(
        tcp.calc_checksum_ipv4(&ip, payload).unwrap(),
        tcp.checksum,
        "TCP checksum"
    );
    (eth, ip, tcp, payload.to_vec())
}

/// Teaches a unit both neighbours (ARP replies addressed to it).
fn learn_neighbours(u: &mut Unit) {
    let out = u.rx(0, &[arp_reply(C_MAC, C_IP, OUT_MAC, OUT_IP)]);
    assert!(out[0].is_empty() && out[1].is_empty());
    u.rx(1, &[arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)]);
}

const S_PORT: u16 = 40_000;
/// Not 80: HTTP is not replicated by default (seeds 004, `replication http`).
const C_PORT: u16 = 443;

/// SYN, SYN-ACK, ACK through `u`; returns the mapped port.
fn handshake(u: &mut Unit) -> u16 {
    let out = u.rx(
        1,
        &[tcp(
            S_MAC,
            IN_MAC,
            (S_IP, S_PORT),
            (C_IP, C_PORT),
            1000,
            "S",
            0,
            &[],
        )],
    );
    assert_eq!(out[0].len(), 1, "SYN forwarded");
    let (eth, ip, t, _) = parse_tcp(&out[0][0]);
    assert_eq!(eth.destination, C_MAC);
    assert_eq!(eth.source, OUT_MAC);
    assert_eq!(
        Ipv4Addr::from(ip.source),
        OUT_IP,
        "PAT to the outside address"
    );
    assert_eq!(Ipv4Addr::from(ip.destination), C_IP);
    assert_eq!(ip.time_to_live, 63);
    assert_eq!(
        (t.destination_port, t.sequence_number, t.syn),
        (C_PORT, 1000, true)
    );
    let mapped = t.source_port;
    let out = u.rx(
        0,
        &[tcp(
            C_MAC,
            OUT_MAC,
            (C_IP, C_PORT),
            (OUT_IP, mapped),
            5000,
            "SA",
            1001,
            &[],
        )],
    );
    assert_eq!(out[1].len(), 1, "SYN-ACK de-NATed to the inside host");
    let (eth, ip, t, _) = parse_tcp(&out[1][0]);
    assert_eq!((eth.source, eth.destination), (IN_MAC, S_MAC));
    assert_eq!(Ipv4Addr::from(ip.destination), S_IP);
    assert_eq!(Ipv4Addr::from(ip.source), C_IP);
    assert_eq!((t.destination_port, t.source_port), (S_PORT, C_PORT));
    assert!(t.syn && t.ack);
    let out = u.rx(
        1,
        &[tcp(
            S_MAC,
            IN_MAC,
            (S_IP, S_PORT),
            (C_IP, C_PORT),
            1001,
            "A",
            5001,
            &[],
        )],
    );
    assert_eq!(out[0].len(), 1, "ACK forwarded");
    mapped
}

/// Data both ways on an established connection through `u` (MACs `out_mac`
/// / `in_mac` are the unit's own); checks the translation is `mapped`.
fn data_both_ways(u: &mut Unit, mapped: u16, out_mac: [u8; 6], in_mac: [u8; 6], seq: u32) {
    let out = u.rx(
        1,
        &[tcp(
            S_MAC,
            in_mac,
            (S_IP, S_PORT),
            (C_IP, C_PORT),
            1001 + seq,
            "PA",
            5001,
            b"hello",
        )],
    );
    assert!(out[1].is_empty());
    assert_eq!(
        out[0].len(),
        1,
        "data out: exactly the data frame (no ARP first)"
    );
    let (eth, ip, t, payload) = parse_tcp(&out[0][0]);
    assert_eq!((eth.source, eth.destination), (out_mac, C_MAC));
    assert_eq!((Ipv4Addr::from(ip.source), t.source_port), (OUT_IP, mapped));
    assert_eq!(payload, b"hello");
    let out = u.rx(
        0,
        &[tcp(
            C_MAC,
            out_mac,
            (C_IP, C_PORT),
            (OUT_IP, mapped),
            5001,
            "PA",
            1006 + seq,
            b"world",
        )],
    );
    assert!(out[0].is_empty());
    assert_eq!(
        out[1].len(),
        1,
        "data back: exactly the data frame (no ARP first)"
    );
    let (eth, ip, t, payload) = parse_tcp(&out[1][0]);
    assert_eq!((eth.source, eth.destination), (in_mac, S_MAC));
    assert_eq!(
        (Ipv4Addr::from(ip.destination), t.destination_port),
        (S_IP, S_PORT)
    );
    assert_eq!(payload, b"world");
}

#[test]
fn pat_connection_through_one_forwarder() {
    let cfg = state_config(1024);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut a);
    let mapped = handshake(&mut a);
    data_both_ways(&mut a, mapped, OUT_MAC, IN_MAC, 0);
    let c = a.counters();
    assert_eq!(
        (c.conn_created, c.xlate_created, c.conns, c.xlates),
        (1, 1, 1, 1)
    );
    assert_eq!(c.forwarded, 5);
    assert_eq!(
        c.drop_tcp_no_conn + c.drop_security_level + c.drop_malformed,
        0
    );
    // The echo responder still answers for the owned address.
    let out = a.rx(0, &[echo_request(C_MAC, OUT_MAC, C_IP, OUT_IP)]);
    assert_eq!(out[0].len(), 1, "echo reply");
    assert_eq!(a.counters().tx_icmp_echo_reply, 1);
}

#[test]
fn mid_stream_tcp_without_a_connection_is_dropped_and_counted() {
    let cfg = state_config(1024);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut a);
    let out = a.rx(
        1,
        &[tcp(
            S_MAC,
            IN_MAC,
            (S_IP, S_PORT),
            (C_IP, C_PORT),
            77,
            "PA",
            99,
            b"mid",
        )],
    );
    assert!(out[0].is_empty() && out[1].is_empty());
    // And from the outside, a new connection to the inside is refused by
    // the security levels.
    let out = a.rx(
        0,
        &[tcp(
            C_MAC,
            OUT_MAC,
            (C_IP, 1234),
            (S_IP, 22),
            1,
            "S",
            0,
            &[],
        )],
    );
    assert!(out[0].is_empty() && out[1].is_empty());
    let c = a.counters();
    assert_eq!(c.drop_tcp_no_conn, 1);
    assert_eq!(c.drop_security_level, 1);
    assert_eq!((c.forwarded, c.conns), (0, 0));
}

#[test]
fn icmp_errors_still_work_with_state() {
    let cfg = state_config(64);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut a);
    // TTL 1: time exceeded back to the sender, as without state.
    let mut f = tcp(
        S_MAC,
        IN_MAC,
        (S_IP, S_PORT),
        (C_IP, C_PORT),
        1,
        "S",
        0,
        &[],
    );
    f[14 + 8] = 1;
    let ck = etherparse::Ipv4HeaderSlice::from_slice(&f[14..])
        .unwrap()
        .to_header()
        .calc_header_checksum();
    f[14 + 10..14 + 12].copy_from_slice(&ck.to_be_bytes());
    let out = a.rx(1, &[f]);
    assert_eq!(out[1].len(), 1, "ICMP time exceeded");
    let (_, ip, body) = parse_ipv4(&out[1][0]);
    assert_eq!(Ipv4Addr::from(ip.source), IN_IP);
    assert_eq!(parse_icmp(&body).0, 11);
    assert_eq!(a.counters().drop_ttl_expired, 1);
}

#[test]
fn standby_takes_over_a_replicated_connection_with_the_same_translation() {
    let cfg = state_config(1024);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    let mut b = Unit::new(&cfg, standby(), Role::NotForwarding);
    learn_neighbours(&mut a);
    let mapped = handshake(&mut a);
    data_both_ways(&mut a, mapped, OUT_MAC, IN_MAC, 0);
    assert!(a.replicate(Some(&mut b)) > 0, "records shipped");
    b.step(Duration::from_micros(10));
    let cb = b.counters();
    assert!(cb.sync_records_applied >= 4, "conn, xlate, 2 ARP: {cb:?}");
    assert_eq!(
        cb.sync_apply_bad_frame + cb.sync_apply_invalid + cb.sync_apply_unknown,
        0
    );
    assert_eq!(
        a.conns(),
        b.conns(),
        "the standby holds the same connection"
    );
    assert_eq!(cb.conns, 1);
    assert_eq!(cb.xlates, 1);
    // Failover: B takes the active addresses and MACs and forwards.
    b.bl.forwarder_mut()
        .set_ownership(b.now, &active_config(), Role::Forwarding, false)
        .unwrap();
    // The very next packets, both directions, go through B with A's
    // translation, no drop and no ARP request first (warm ARP table).
    data_both_ways(&mut b, mapped, OUT_MAC, IN_MAC, 5);
    let cb = b.counters();
    assert_eq!(cb.tx_arp_request, 0, "neighbours known from replication");
    assert_eq!(cb.forwarded, 2);
    assert_eq!(
        cb.drop_tcp_no_conn + cb.drop_tcp_invalid + cb.drop_security_level + cb.drop_not_active,
        0
    );
    // The shard counts a connection applied from a record as created; none
    // was created by B's packet path: still the one replicated connection.
    assert_eq!((cb.conn_created, cb.conns), (1, 1));
    assert_eq!(a.conns(), b.conns(), "same connection, same translation");
}

#[test]
fn bulk_sync_of_ten_thousand_connections_to_a_fresh_standby() {
    const N: u16 = 10_000;
    let cfg = state_config(16_384);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut a);
    // 32: the rig's batch, so each burst is one iteration.
    for chunk in (0..N).collect::<Vec<_>>().chunks(32) {
        let syns: Vec<Vec<u8>> = chunk
            .iter()
            .map(|&i| {
                tcp(
                    S_MAC,
                    IN_MAC,
                    (S_IP, 10_000 + i),
                    (C_IP, C_PORT),
                    1,
                    "S",
                    0,
                    &[],
                )
            })
            .collect();
        let out = a.rx(1, &syns);
        assert_eq!(out[0].len(), chunk.len());
        // A standby that is not there yet: live frames are dropped.
        a.replicate(None);
    }
    assert_eq!(a.counters().conns, u64::from(N));
    assert_eq!(a.counters().sync_overflow, 0);
    let mut b = Unit::new(&cfg, standby(), Role::NotForwarding);
    a.bl.forwarder_mut()
        .stateful_command(a.now, StatefulCommand::BulkSync);
    let shared = a.ep.pool.clone();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 10_000, "bulk sync did not finish");
        a.replicate(Some(&mut b));
        b.step(Duration::from_micros(10));
        let c = a.counters();
        if c.sync_bulk_done == 1 && a.ep.outbound.is_empty() {
            break;
        }
    }
    b.step(Duration::from_micros(10));
    let (ca, cb) = (a.counters(), b.counters());
    assert!(
        ca.sync_bulk_records >= u64::from(N) * 2,
        "xlates and conns: {ca:?}"
    );
    assert_eq!(cb.conns, u64::from(N));
    assert_eq!(cb.xlates, u64::from(N));
    assert_eq!(cb.sync_apply_invalid + cb.sync_apply_table_full, 0);
    assert_eq!(a.conns(), b.conns());
    // Every buffer is back in A's pool (but one a frame may be open in).
    assert!(shared.available() >= 2047, "{}", shared.available());
}

/// Mark-and-sweep: a connection the active closed while its delete record
/// was lost stays on the standby only until the next bulk sync completes;
/// the connection the bulk re-sends stays.
#[test]
fn a_completed_bulk_sync_sweeps_what_the_active_deleted_while_records_were_lost() {
    let cfg = state_config(1024);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    let mut b = Unit::new(&cfg, standby(), Role::NotForwarding);
    learn_neighbours(&mut a);
    let mut mapped = Vec::new();
    for port in [S_PORT, S_PORT + 1] {
        let syn = tcp(
            S_MAC,
            IN_MAC,
            (S_IP, port),
            (C_IP, C_PORT),
            1000,
            "S",
            0,
            &[],
        );
        let out = a.rx(1, &[syn]);
        assert_eq!(out[0].len(), 1, "SYN forwarded");
        mapped.push(parse_tcp(&out[0][0]).2.source_port);
    }
    a.replicate(Some(&mut b));
    b.step(Duration::from_micros(10));
    assert_eq!(b.counters().conns, 2);
    // The server refuses the second connection; the delete record is lost.
    let rst = tcp(
        C_MAC,
        OUT_MAC,
        (C_IP, C_PORT),
        (OUT_IP, mapped[1]),
        0,
        "RA",
        1001,
        &[],
    );
    let out = a.rx(0, &[rst]);
    assert_eq!(out[1].len(), 1, "RST de-NATed to the inside host");
    assert_eq!(a.counters().conns, 1);
    a.replicate(None);
    b.step(Duration::from_micros(10));
    assert_eq!(b.counters().conns, 2, "the standby missed the delete");
    a.bl.forwarder_mut()
        .stateful_command(a.now, StatefulCommand::BulkSync);
    for round in 0.. {
        assert!(round < 1000, "bulk sync did not finish");
        a.replicate(Some(&mut b));
        b.step(Duration::from_micros(10));
        if a.counters().sync_bulk_done == 1 && a.ep.outbound.is_empty() {
            break;
        }
    }
    for round in 0.. {
        assert!(round < 1000, "sweep did not finish");
        b.step(Duration::from_micros(10));
        if !b.bl.forwarder().stateful().unwrap().work_pending() {
            break;
        }
    }
    let (ca, cb) = (a.counters(), b.counters());
    // The active keeps a PAT xlate past its connection (its own idle
    // timeout), so the bulk re-sends both xlates: only the conn is swept.
    assert_eq!((cb.conns, cb.xlates), (ca.conns, ca.xlates), "{cb:?}");
    assert_eq!(cb.conns, 1);
    assert_eq!(cb.sync_bulk_swept, 1, "the closed connection");
    assert_eq!(
        a.conns(),
        b.conns(),
        "the standby holds what the active holds"
    );
}

/// The management API over running worker threads: endpoints taken once,
/// SAs and counts through worker commands, a bulk sync framed BULK_BEGIN …
/// BULK_END on the outbound channel with its progress published.
#[test]
fn dataplane_api_sas_counts_and_bulk_sync_on_running_workers() {
    use std::time::Instant;
    use tandem_dataplane::{Dataplane, WorkerSpec};
    use tandem_state::{Cipher, Integrity, SaDirection, SaEntry};
    use tandem_sync::wire::{Frame as SyncFrame, FrameType};

    let cfg = state_config(1024);
    let (_to, rx) = crossbeam_channel::unbounded();
    let (tx, _from) = crossbeam_channel::unbounded();
    let backend = ChanBackend {
        mem: MemBackend::new(2, 256, 2048, 64),
        rx,
        tx,
    };
    let dp = Dataplane::start(
        cfg,
        vec![WorkerSpec {
            core: None,
            backend: Box::new(backend),
        }],
    )
    .unwrap();
    let ep = dp.take_sync_endpoints().expect("endpoints");
    assert!(dp.take_sync_endpoints().is_none(), "taken once");
    assert_eq!(dp.state_counts().unwrap(), (0, 0, 0));
    let sa = SaEntry {
        spi: 0x1000,
        direction: SaDirection::Outbound,
        peer: Ipv4Addr::new(198, 18, 0, 50),
        local: OUT_IP,
        cipher: Cipher::AesGcm128,
        integrity: Integrity::None,
        enc_key: [7; 32],
        enc_key_len: 16,
        salt: [1, 2, 3, 4],
        auth_key: [0; 64],
        auth_key_len: 0,
        seq: 1,
        replay_window: 0,
        replay_top: 0,
        replay_bitmap: 0,
        life_secs: Some(3600),
        life_bytes: None,
    };
    dp.sa_add(sa).unwrap();
    assert_eq!(dp.state_counts().unwrap(), (0, 0, 1));
    assert!(dp.conns(10).unwrap().is_empty() && dp.xlates(10).unwrap().is_empty());
    dp.start_bulk(None).unwrap();
    assert!(dp.start_bulk(Some(3)).is_err(), "no such stream");
    // Drain stream 0 until BULK_END, recycling buffers; bounded by a deadline.
    let s = &ep.streams[0];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut types = Vec::new();
    while !types.contains(&FrameType::BulkEnd) {
        let Ok(mut buf) = s.outbound.recv_deadline(deadline) else {
            panic!("no BULK_END in 5 s: {types:?}");
        };
        // Stamp an epoch, as the Sender does, so the frame parses.
        buf.as_bytes_mut()[4..8].copy_from_slice(&1u32.to_be_bytes());
        let ty = match SyncFrame::parse(buf.as_bytes()).unwrap() {
            SyncFrame::BulkBegin { total, .. } => {
                assert_eq!(total, 1, "one SA");
                FrameType::BulkBegin
            }
            SyncFrame::BulkEnd { .. } => FrameType::BulkEnd,
            SyncFrame::Data { .. } => FrameType::Data,
            SyncFrame::Control { .. } => panic!("control frame from a worker"),
        };
        types.push(ty);
        s.pool.put(buf);
    }
    // The live frame of `sa_add` may come first; then BULK_BEGIN, the bulk
    // data frames, BULK_END.
    let begin = types
        .iter()
        .position(|t| *t == FrameType::BulkBegin)
        .unwrap();
    assert!(types[begin + 1..types.len() - 1]
        .iter()
        .all(|t| *t == FrameType::Data));
    assert!(
        types.len() > begin + 2,
        "bulk data between the markers: {types:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dp.bulk_progress()[0].2 {
        assert!(Instant::now() < deadline, "bulk progress not published");
        std::thread::yield_now();
    }
    assert_eq!(dp.bulk_progress()[0], (1, 1, true));
    assert_eq!(dp.sync_overflowed(), vec![false]);
    assert!(dp.sa_remove(0x1000, SaDirection::Outbound).unwrap());
    assert_eq!(dp.state_counts().unwrap(), (0, 0, 0));
    drop(dp);
}

/// An ICMP error frame `src → dst` (type, code, bytes 5..8) quoting `quote`, valid checksums.
fn icmp_error_frame(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    (ty, code, rest): (u8, u8, [u8; 4]),
    quote: &[u8],
) -> Vec<u8> {
    fn csum(d: &[u8]) -> [u8; 2] {
        let mut acc: u32 = d
            .chunks(2)
            .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
            .sum();
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        (!(acc as u16)).to_be_bytes()
    }
    let mut f = Vec::new();
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + quote.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c);
    let mut icmp = vec![ty, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quote);
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// PAT to the interface address: an ICMP error from the outside addressed to that address about
/// a connection's packet goes to the stateful stage (not to local delivery), which sends it to
/// the real inside host, translated back; an unrelated one is dropped.
#[test]
fn icmp_error_to_the_pat_interface_address_reaches_the_inside_host() {
    let cfg = state_config(64);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut a);
    let mapped = handshake(&mut a);
    // What the unit sent out (translated SYN), as a router beyond the outside quotes it.
    let syn = tcp(
        OUT_MAC,
        C_MAC,
        (OUT_IP, mapped),
        (C_IP, C_PORT),
        1000,
        "S",
        0,
        &[],
    );
    let quote = &syn[14..14 + 28];
    let mtu = 1400u16.to_be_bytes();
    let e = icmp_error_frame(
        (C_MAC, OUT_MAC),
        C_IP,
        OUT_IP,
        (3, 4, [0, 0, mtu[0], mtu[1]]),
        quote,
    );
    let out = a.rx(0, &[e]);
    assert_eq!(out[1].len(), 1, "frag-needed forwarded inside");
    let (eth, ip, body) = parse_ipv4(&out[1][0]);
    assert_eq!((eth.source, eth.destination), (IN_MAC, S_MAC));
    assert_eq!(Ipv4Addr::from(ip.source), C_IP);
    assert_eq!(Ipv4Addr::from(ip.destination), S_IP);
    let (ty, code, rest, inner) = parse_icmp(&body);
    assert_eq!((ty, code, rest), (3, 4, [0, 0, mtu[0], mtu[1]]));
    let (iip, l4) = etherparse::Ipv4Header::from_slice(&inner).expect("quoted header");
    assert_eq!(iip.calc_header_checksum(), iip.header_checksum);
    assert_eq!(Ipv4Addr::from(iip.source), S_IP);
    assert_eq!(
        u16::from_be_bytes([l4[0], l4[1]]),
        S_PORT,
        "quoted source port back to the real one"
    );
    // About a mapped port no connection uses: dropped by the stage, then consumed locally.
    let other = tcp(
        OUT_MAC,
        C_MAC,
        (OUT_IP, mapped ^ 0x0101),
        (C_IP, C_PORT),
        1000,
        "S",
        0,
        &[],
    );
    let e = icmp_error_frame(
        (C_MAC, OUT_MAC),
        C_IP,
        OUT_IP,
        (3, 3, [0; 4]),
        &other[14..42],
    );
    let out = a.rx(0, &[e]);
    assert!(out[0].is_empty() && out[1].is_empty());
}

/// A PAT'ed SYN whose next hop never answers ARP: the ICMP host unreachable
/// tandem sends about it is related to the connection and translated back,
/// so it reaches the inside host (not the unit's own PAT address) and quotes
/// the segment as that host sent it (real address and port).
#[test]
fn host_unreachable_about_a_pat_frame_reaches_the_real_sender() {
    const NOBODY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
    let cfg = state_config(1024);
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut a);
    let syn = tcp(
        S_MAC,
        IN_MAC,
        (S_IP, S_PORT),
        (NOBODY, C_PORT),
        1000,
        "S",
        0,
        &[],
    );
    let out = a.rx(1, std::slice::from_ref(&syn));
    assert!(
        out[1].is_empty() && out[0].len() == 1,
        "an ARP request goes out"
    );
    let mut errors = Vec::new();
    for _ in 0..10 {
        let out = a.step(Duration::from_secs(1));
        errors.extend(out[1].iter().cloned());
        if !errors.is_empty() {
            break;
        }
    }
    assert_eq!(a.counters().drop_arp_unresolved, 1);
    assert_eq!(errors.len(), 1, "one ICMP error to the inside");
    let (eth, ip, body) = parse_ipv4(&errors[0]);
    assert_eq!((eth.source, eth.destination), (IN_MAC, S_MAC));
    assert_eq!(
        Ipv4Addr::from(ip.destination),
        S_IP,
        "to the real sender, not the PAT address"
    );
    assert_eq!(
        ip.calc_header_checksum(),
        ip.header_checksum,
        "IPv4 checksum"
    );
    assert_eq!(
        Ipv4Addr::from(ip.source),
        IN_IP,
        "from the unit's address on the host's side"
    );
    let (ty, code, _, quote) = parse_icmp(&body);
    assert_eq!((ty, code), (3, 1), "host unreachable");
    // The quote is the SYN as the host sent it (TTL as received).
    assert_eq!(
        &quote[..28],
        &syn[14..42],
        "quoted header and ports as sent"
    );
    assert_eq!(a.counters().icmp_error_related, 1);
}

/// The inbound case: a SYN de-NATed by a static rule to an inside host that
/// never answers ARP. The host unreachable goes back to the outside client
/// quoting the SYN as the client sent it (the mapped address): the real
/// inside address never leaves on the outside.
#[test]
fn host_unreachable_about_a_static_nat_frame_quotes_the_mapped_address() {
    use tandem_state::{AccessRule, Action as Rule, NatRule, Prefix, RuleProto};
    const REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 77);
    const MAPPED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 77);
    let mut cfg = state_config(1024);
    let st = cfg.state.as_mut().unwrap();
    st.nat.push(NatRule::Static {
        real_if: 1,
        real: REAL,
        mapped_if: 0,
        mapped: MAPPED,
        port: None,
    });
    st.access.push(AccessRule {
        interface: 0,
        src: Prefix::ANY,
        dst: Prefix::new(REAL, 32),
        proto: RuleProto::Tcp,
        dst_ports: (443, 443),
        action: Rule::Permit,
    });
    let mut a = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut a);
    let syn = tcp(
        C_MAC,
        OUT_MAC,
        (C_IP, 50_000),
        (MAPPED, 443),
        1000,
        "S",
        0,
        &[],
    );
    let out = a.rx(0, std::slice::from_ref(&syn));
    assert!(
        out[0].is_empty() && out[1].len() == 1,
        "an ARP request goes in"
    );
    let mut errors = Vec::new();
    for _ in 0..10 {
        let out = a.step(Duration::from_secs(1));
        errors.extend(out[0].iter().cloned());
        if !errors.is_empty() {
            break;
        }
    }
    assert_eq!(errors.len(), 1, "one ICMP error to the outside");
    let (eth, ip, body) = parse_ipv4(&errors[0]);
    assert_eq!((eth.source, eth.destination), (OUT_MAC, C_MAC));
    assert_eq!(Ipv4Addr::from(ip.destination), C_IP);
    assert_eq!(
        ip.calc_header_checksum(),
        ip.header_checksum,
        "IPv4 checksum"
    );
    let (ty, code, _, quote) = parse_icmp(&body);
    assert_eq!((ty, code), (3, 1), "host unreachable");
    assert_eq!(&quote[..28], &syn[14..42], "quoted as the client sent it");
    assert!(
        !errors[0].windows(4).any(|w| w == REAL.octets()),
        "the real address does not leave on the outside"
    );
}

/// A 2 000-byte UDP datagram from the inside server to the outside client,
/// in two fragments.
fn fragmented_udp(id: u16) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..2000u32).map(|i| (i * 7) as u8).collect();
    ip_fragments(&udp(S_MAC, IN_MAC, S_IP, C_IP, 64, &payload), id, 1480)
}

/// Reassembles forwarded fragments (in the order given) and checks the
/// datagram's UDP checksum; returns (source address, source port, payload).
fn reassemble_udp(frames: &[Vec<u8>]) -> (Ipv4Addr, u16, Vec<u8>) {
    let mut data = Vec::new();
    let mut src = None;
    for f in frames {
        let (_, ip, body) = parse_ipv4(f);
        assert_eq!(usize::from(ip.fragment_offset.value()) * 8, data.len());
        data.extend_from_slice(&body);
        src = Some(ip.source);
    }
    let src = src.expect("fragments");
    let (h, payload) = etherparse::UdpHeader::from_slice(&data).expect("udp");
    assert_eq!(
        h.calc_checksum_ipv4_raw(src, C_IP.octets(), payload)
            .unwrap(),
        h.checksum,
        "UDP checksum of the reassembled datagram"
    );
    (Ipv4Addr::from(src), h.source_port, payload.to_vec())
}

#[test]
fn a_fragment_before_its_first_is_held_and_follows_it_translated() {
    let cfg = state_config(1024);
    let mut u = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut u);
    let frags = fragmented_udp(77);
    assert_eq!(frags.len(), 2);
    // The later fragment first (reordered on the way): held, nothing out.
    let out = u.rx(1, &[frags[1].clone()]);
    assert!(out[0].is_empty() && out[1].is_empty());
    assert_eq!(u.bl.forwarder().held_frames(), 1);
    // Its first: both go out, the first ahead, translated alike.
    let out = u.rx(1, &[frags[0].clone()]);
    assert_eq!(out[0].len(), 2, "first and held fragment forwarded");
    let (src, sport, payload) = reassemble_udp(&out[0]);
    assert_eq!(src, OUT_IP, "PAT to the outside address");
    assert_ne!(sport, 0);
    assert_eq!(
        payload,
        (0..2000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()
    );
    let c = u.counters();
    assert_eq!(
        (c.fragments_held, c.fragments_passed, c.drop_fragment),
        (1, 1, 0)
    );
    assert_eq!(u.bl.forwarder().held_frames(), 0);
}

#[test]
fn held_fragments_whose_first_never_passes_are_dropped_and_counted() {
    let cfg = state_config(1024);
    let mut u = Unit::new(&cfg, active_config(), Role::Forwarding);
    learn_neighbours(&mut u);
    let free = u.b.free_frames();
    // An orphan: held, then dropped when the hold time is up.
    let orphan = fragmented_udp(78);
    u.rx(1, &[orphan[1].clone()]);
    assert_eq!(u.bl.forwarder().held_frames(), 1);
    u.step(Duration::from_millis(500));
    assert_eq!(u.counters().drop_fragment, 0, "still within the hold time");
    let out = u.step(Duration::from_millis(600));
    assert!(out[0].is_empty() && out[1].is_empty());
    assert_eq!(u.counters().drop_fragment, 1);
    assert_eq!(u.bl.forwarder().held_frames(), 0);
    // A refused first: outside → inside with no connection. The held later
    // fragment is dropped with it, at once.
    let payload = vec![0u8; 2000];
    let refused = ip_fragments(&udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &payload), 79, 1480);
    let out = u.rx(0, &[refused[1].clone()]);
    assert!(out[0].is_empty() && out[1].is_empty());
    let out = u.rx(0, &[refused[0].clone()]);
    assert!(out[0].is_empty() && out[1].is_empty(), "nothing passes");
    let c = u.counters();
    assert_eq!(
        (c.fragments_held, c.fragments_passed, c.drop_fragment),
        (2, 0, 2)
    );
    assert_eq!(u.bl.forwarder().held_frames(), 0);
    assert_eq!(u.b.free_frames(), free, "every frame back");
}
