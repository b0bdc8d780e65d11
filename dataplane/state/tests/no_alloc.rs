//! Proves the packet path (lookup/commit for new and existing flows, ICMP errors, NAT rewrite,
//! record emission), the expiry sweep, apply, bulk and the bulk mark-and-sweep allocate nothing
//! after `Shard::new`: a counting global allocator (only in this test binary) watches this
//! thread.

mod common;

use common::*;
use tandem_state::records::RecordSink;
use tandem_state::*;

#[global_allocator]
static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;

use tandem_alloc_count::allocs;

/// A sink writing into a preallocated buffer, like tandem-sync's frame encoder.
struct BufSink {
    buf: Vec<u8>,
    n: usize,
}

impl RecordSink for BufSink {
    fn put(&mut self, _kind: u8, _op: u8, _key: u64, payload: &[u8]) {
        if self.buf.len() - self.n >= payload.len() {
            self.buf[self.n..self.n + payload.len()].copy_from_slice(payload);
            self.n += payload.len();
        }
    }
}

#[test]
fn packet_path_sweep_apply_and_bulk_allocate_nothing() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut standby = shard(&cfg);
    let mut sink = BufSink {
        buf: vec![0; 1 << 20],
        n: 0,
    };
    // Packets built up front: building them allocates, processing must not.
    let mut pkts: Vec<(u16, Vec<u8>)> = Vec::new();
    for i in 0..200u16 {
        pkts.push((INSIDE, tcp(CLIENT, 10_000 + i, SERVER, 443, SYN)));
        pkts.push((INSIDE, udp(CLIENT, 20_000 + i, SERVER, 53, true)));
        pkts.push((INSIDE, icmp_echo(CLIENT, SERVER, i, true)));
        pkts.push((OUTSIDE, tcp(SERVER, 22, CLIENT, 1, SYN)));
    }
    // ICMP errors about PAT'd flows (related, translated), truncated and unrelated ones.
    for i in 0..50u16 {
        let mut out = udp(CLIENT, 30_000 + i, SERVER, 53, true);
        pass(&mut s, 0, INSIDE, &mut out, lab_route, &mut NullSink).unwrap();
        pkts.push((OUTSIDE, icmp_error(SERVER, PAT_ADDR, &out)));
        pkts.push((OUTSIDE, icmp_error(SERVER, PAT_ADDR, &out[..24])));
        let mut other = out.clone();
        other[20] ^= 0x55;
        pkts.push((OUTSIDE, icmp_error(SERVER, PAT_ADDR, &other)));
    }
    // Fragmented UDP: a first fragment, a later one (followed), and a later one of no first.
    for i in 0..50u16 {
        let mut first = udp(CLIENT, 40_000 + i, SERVER, 53, true);
        first[4..6].copy_from_slice(&i.to_be_bytes());
        first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        let mut later = first[..28].to_vec();
        later[6..8].copy_from_slice(&1u16.to_be_bytes());
        let mut stray = later.clone();
        stray[4..6].copy_from_slice(&(i + 1000).to_be_bytes());
        pkts.push((INSIDE, first));
        pkts.push((INSIDE, later));
        pkts.push((INSIDE, stray));
    }
    let conn = ConnRecordBytes::new();
    let mut awaiting = 0u64;
    let before = allocs();
    for round in 0..3u64 {
        for (rx, p) in pkts.iter_mut() {
            let _ = steer(p, 4);
            let lk = s.lookup(round, *rx, p);
            awaiting += u64::from(lk.awaiting_first().is_some());
            if lk.drop_reason().is_none() {
                let out = lab_route(lk.route_dst());
                let _ = s.commit(round, lk, out, p, &mut sink);
            }
        }
        s.expire(round * 200 * SEC, 512, &mut sink);
    }
    let mut cur = BulkCursor::default();
    while !s.bulk(&mut cur, 0, &mut sink, 64).finished {}
    standby.bulk_mark();
    for _ in 0..100 {
        let _ = standby.apply(0, records::KIND_CONN, records::OP_UPSERT, &conn.0);
    }
    // Mark-and-sweep of the standby, and of the active (sweeps everything from before its mark).
    while !standby.bulk_sweep(0, 64).finished {}
    s.bulk_mark();
    while !s.bulk_sweep(0, 64).finished {}
    let after = allocs();
    assert_eq!(after - before, 0, "allocations on the packet path");
    assert_eq!(
        standby.counts().0,
        1,
        "the applied connection survives its sweep"
    );
    let c = s.counters();
    assert!(c.bulk_swept >= 600, "{}", c.bulk_swept);
    assert!(c.conn_created >= 600);
    // Round 0 translates the 50 related errors in place; from then on they are addressed to the
    // real host and relate to nothing. Truncated and unrelated ones stay so every round.
    assert_eq!(c.icmp_error_related, 50);
    assert_eq!(c.drop_icmp_error_malformed, 3 * 50);
    assert_eq!(c.drop_icmp_error_unrelated, 3 * 50 + 2 * 50);
    // Round 0 follows each datagram's later fragment (which ends it); later rounds find the
    // first fragment rewritten (its datagram now leaves from the PAT address) and follow again.
    assert!(c.fragments_passed >= 50, "{}", c.fragments_passed);
    // The strays await a first that never comes: left to the forwarder (held, then dropped).
    assert!(awaiting >= 3 * 50, "{awaiting}");
    assert_eq!(c.drop_fragment, 0);
    assert!(sink.n > 0);
}

/// A port unreachable `src → dst` quoting `quote`, checksums left to the shard's incremental
/// updates (they need not be valid for this test).
fn icmp_error(src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, quote: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 28 + quote.len()];
    let total = b.len() as u16;
    b[0] = 0x45;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[8] = 64;
    b[9] = 1;
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&dst.octets());
    b[20] = 3;
    b[21] = 3;
    b[28..].copy_from_slice(quote);
    b
}

struct ConnRecordBytes([u8; 40]);

impl ConnRecordBytes {
    fn new() -> Self {
        let mut b = [0u8; 40];
        b[0..4].copy_from_slice(&[198, 18, 0, 2]);
        b[4..8].copy_from_slice(&[198, 19, 0, 2]);
        b[8..12].copy_from_slice(&[198, 18, 0, 2]);
        b[12..16].copy_from_slice(&[198, 19, 0, 2]);
        b[16..18].copy_from_slice(&1000u16.to_be_bytes());
        b[18..20].copy_from_slice(&53u16.to_be_bytes());
        b[20..22].copy_from_slice(&1000u16.to_be_bytes());
        b[22..24].copy_from_slice(&53u16.to_be_bytes());
        b[25] = 1; // in_if 1
        b[28] = 17;
        ConnRecordBytes(b)
    }
}
