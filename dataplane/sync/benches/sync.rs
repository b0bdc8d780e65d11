//! Criterion benches of the replication hot paths: encoding records into frames (worker side)
//! and decoding + in-order delivery (standby side), in records per second.
//!
//! `CARGO_TARGET_DIR=… cargo bench -p tandem-sync --bench sync`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem_sync::wire::stamp;
use tandem_sync::{
    BufPool, Delivery, FrameEncoder, Put, Receiver, ReceiverConfig, Sender, SenderConfig,
};

/// Connection-record-sized payload (the budget is 256 bytes per connection incl. xlate;
/// a replicated connection record is well under that).
const PAYLOAD: usize = 64;
/// Jumbo state link (MTU 9000) minus the secure link's 36 bytes.
const FRAME: usize = 8964;

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let per_frame = (FRAME - 24) / (8 + PAYLOAD);
    g.throughput(Throughput::Elements(per_frame as u64));
    let mut pool = BufPool::new(4, FRAME);
    let mut enc = FrameEncoder::new(0, FRAME).unwrap();
    let payload = [0x5au8; PAYLOAD];
    let mut key = 0u64;
    g.bench_function("frame_of_64B_records_distinct_keys", |b| {
        b.iter(|| {
            let _ = enc.begin(pool.get().unwrap(), false);
            loop {
                key = key.wrapping_add(0x9E37_79B9);
                if enc.put(1, 1, 1, key, black_box(&payload)) == Put::Full {
                    break;
                }
            }
            let buf = enc.finish().unwrap();
            black_box(buf.as_bytes()[0]);
            pool.put(buf);
        })
    });
    g.bench_function("frame_of_64B_records_half_coalesced", |b| {
        b.iter(|| {
            let _ = enc.begin(pool.get().unwrap(), false);
            let mut i = 0u64;
            loop {
                // Every key is written twice in a row: create then update within one frame.
                if enc.put(1, 1, 1, key.wrapping_add(i / 2), black_box(&payload)) == Put::Full {
                    break;
                }
                i += 1;
            }
            key = key.wrapping_add(i);
            let buf = enc.finish().unwrap();
            pool.put(buf);
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_deliver");
    let mut pool = BufPool::new(8, FRAME);
    let mut tx = Sender::new(SenderConfig::new(7, 1)).unwrap();
    let mut rx = Receiver::new(ReceiverConfig::new(1)).unwrap();
    // Synchronise the stream.
    let begin = tx
        .bulk_begin(0, 0, 0, pool.get().unwrap())
        .unwrap()
        .to_vec();
    let _ = rx.handle_frame(0, &begin);
    let mut enc = FrameEncoder::new(0, FRAME).unwrap();
    let _ = enc.begin(pool.get().unwrap(), false);
    let mut n = 0u64;
    while enc.put(0, 1, 1, n, &[n as u8; PAYLOAD]) != Put::Full {
        n += 1;
    }
    let mut frame = enc.finish().unwrap().as_bytes().to_vec();
    g.throughput(Throughput::Elements(n));
    let mut seq = 1u32;
    let mut ctl = [0u8; 64];
    g.bench_function("frame_of_64B_records", |b| {
        b.iter(|| {
            stamp(&mut frame, 7, seq);
            seq = seq.wrapping_add(1);
            let mut sum = 0u64;
            if let Delivery::Records { records, .. } = rx.handle_frame(1, &frame) {
                for r in records {
                    // Touch the payload as an apply would.
                    sum += u64::from(r.kind) + u64::from(r.payload[0]);
                }
            }
            while rx.poll_control(1, &mut ctl).is_some() {}
            black_box(sum)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = encode, decode
}
criterion_main!(benches);
