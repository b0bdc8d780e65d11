//! Run-loop micro-benchmark: one batch of 64 UDP frames through the
//! tandem-dataplane batch loop (receive burst, forwarder, TX batch, backend
//! flush) on the in-memory backend, with the next hop resolved. The frames
//! are recycled from TX to RX by `MemBackend::wire_tx_to_rx`, so the steady
//! state allocates nothing and copies nothing; see `bench::micro::RunLoopRig`.

use std::time::{Duration, Instant};

use bench::micro::RunLoopRig;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: usize = 64;

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("runloop");
    // Throughput in frames: criterion then reports frames/s per core.
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut rig = RunLoopRig::new(BATCH);
    g.bench_function("forward_batch_64", |b| {
        b.iter_custom(|iters| {
            // Refresh the frames (their TTL runs down) outside the timed part.
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(RunLoopRig::PASSES);
                rig.refill();
                let start = Instant::now();
                for _ in 0..chunk {
                    std::hint::black_box(rig.step());
                }
                timed += start.elapsed();
                left -= chunk;
            }
            timed
        })
    });
    g.finish();
    let c = rig.counters();
    assert_eq!(
        c.forwarded,
        c.rx.saturating_sub(1),
        "every frame but the setup ARP must be forwarded: {c:?}"
    );
}

criterion_group!(benches, batch);
criterion_main!(benches);
