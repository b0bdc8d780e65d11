//! Criterion benches of the stateful stage: lookup+commit for an established PAT flow, new
//! connection creation, and records/s through `apply` (the replication throughput bar is
//! ≥ 1 M records/s on one core).

use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tandem_state::records::{RecordSink, KIND_CONN, OP_UPSERT};
use tandem_state::*;

const OUTSIDE: u16 = 0;
const INSIDE: u16 = 1;
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const PAT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

fn config(conns: u32) -> StateConfig {
    StateConfig {
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
            real_if: INSIDE,
            real: Prefix::new(Ipv4Addr::new(198, 18, 0, 0), 16),
            mapped_if: OUTSIDE,
            mapped: PAT_ADDR,
        }],
        ..StateConfig::default()
    }
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + 18];
    let total = b.len() as u16;
    b[0] = 0x45;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[8] = 64;
    b[9] = 17;
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&dst.octets());
    tandem_wire::Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
    b[20..22].copy_from_slice(&sport.to_be_bytes());
    b[22..24].copy_from_slice(&dport.to_be_bytes());
    b[24..26].copy_from_slice(&26u16.to_be_bytes());
    tandem_wire::UdpPacket::new_unchecked(&mut b[20..]).fill_checksum(src, dst);
    b
}

struct Collect(Vec<(u8, u8, Vec<u8>)>);
impl RecordSink for Collect {
    fn put(&mut self, kind: u8, op: u8, _key: u64, payload: &[u8]) {
        self.0.push((kind, op, payload.to_vec()));
    }
}

fn route(d: Ipv4Addr) -> u16 {
    if d.octets()[1] == 18 {
        INSIDE
    } else {
        OUTSIDE
    }
}

fn benches(c: &mut Criterion) {
    // Established flow: 32 K live connections, one flow hit repeatedly in both directions.
    let cfg = config(1 << 17);
    let mut s = Shard::new(&cfg, 0, 1, 42).unwrap();
    for i in 0..32_768u32 {
        let src = Ipv4Addr::from(u32::from(CLIENT) + (i >> 10));
        let mut p = udp(src, 1024 + (i & 1023) as u16, SERVER, 53);
        let lk = s.lookup(0, INSIDE, &p);
        s.commit(0, lk, OUTSIDE, &mut p, &mut NullSink).unwrap();
    }
    let mut out = udp(CLIENT, 1024, SERVER, 53);
    let mut g = c.benchmark_group("stateful");
    g.throughput(Throughput::Elements(1));
    g.bench_function("established_lookup_commit", |b| {
        b.iter(|| {
            let mut p = out.clone();
            let lk = s.lookup(1, INSIDE, &p);
            s.commit(1, lk, route(lk.route_dst()), &mut p, &mut NullSink)
                .unwrap();
            std::hint::black_box(&p);
        })
    });
    // In-place without the clone: rewrite of an already-translated packet would miss, so
    // measure the reverse direction which is stable under repetition.
    let lk = s.lookup(1, INSIDE, &out);
    s.commit(1, lk, OUTSIDE, &mut out, &mut NullSink).unwrap();
    let mport = u16::from_be_bytes([out[20], out[21]]);
    let reply = udp(SERVER, 53, PAT_ADDR, mport);
    g.bench_function("established_return_lookup_commit_pair", |b| {
        let mut p = reply.clone();
        b.iter(|| {
            // Translate to the client and back by restoring the two changed words.
            p.copy_from_slice(&reply);
            let lk = s.lookup(2, OUTSIDE, &p);
            s.commit(2, lk, INSIDE, &mut p, &mut NullSink).unwrap();
            std::hint::black_box(&p);
        })
    });
    // New connection creation (with PAT xlate and records), table recycled per batch.
    g.bench_function("new_connection_create", |b| {
        b.iter_batched_ref(
            || {
                let s = Shard::new(&cfg, 0, 1, 7).unwrap();
                let pkts: Vec<Vec<u8>> = (0..1024u32)
                    .map(|i| udp(Ipv4Addr::from(u32::from(CLIENT) + i), 5000, SERVER, 53))
                    .collect();
                (s, pkts, Collect(Vec::with_capacity(4096)))
            },
            |(s, pkts, sink)| {
                for p in pkts.iter_mut() {
                    let lk = s.lookup(0, INSIDE, p);
                    s.commit(0, lk, OUTSIDE, p, sink).unwrap();
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // apply: records of 32 768 connections (+ xlates), applied into a fresh standby shard.
    let mut sink = Collect(Vec::new());
    let mut cur = BulkCursor::default();
    while !s.bulk(&mut cur, 5, &mut sink, 4096).finished {}
    let n = sink.0.len() as u64;
    let mut g = c.benchmark_group("replication");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("apply_records", |b| {
        b.iter_batched_ref(
            || Shard::new(&cfg, 0, 1, 9).unwrap(),
            |standby| {
                for (k, op, p) in &sink.0 {
                    standby.apply(10, *k, *op, p).unwrap();
                }
            },
            BatchSize::LargeInput,
        )
    });
    // Re-applying the same stream (updates in place): the steady state of touches.
    let mut standby = Shard::new(&cfg, 0, 1, 9).unwrap();
    for (k, op, p) in &sink.0 {
        standby.apply(10, *k, *op, p).unwrap();
    }
    let conns: Vec<&Vec<u8>> = sink
        .0
        .iter()
        .filter(|r| r.0 == KIND_CONN)
        .map(|r| &r.2)
        .collect();
    g.throughput(Throughput::Elements(conns.len() as u64));
    g.bench_function("apply_conn_updates", |b| {
        b.iter(|| {
            for p in &conns {
                standby.apply(11, KIND_CONN, OP_UPSERT, p).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(stateful, benches);
criterion_main!(stateful);
