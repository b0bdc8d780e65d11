//! Route lookup micro-benchmark: longest-prefix match in tandem-dataplane's
//! route table with 1k and 10k prefixes, over a fixed set of probe
//! addresses (half inside some prefix, half random), one lookup per
//! iteration.

use std::hint::black_box;

use bench::micro::random_routes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Probe addresses cycled through: more than fit a small cache line set, so
/// the bench does not measure one hot path through the trie.
const PROBES: usize = 4096;

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    g.throughput(Throughput::Elements(1));
    for n in [1_000usize, 10_000] {
        let (table, probes) = random_routes(n, PROBES, 0x7a9d_e3f1);
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &table, |b, t| {
            b.iter(|| {
                i = (i + 1) % PROBES;
                t.lookup(black_box(probes[i])).map(|r| r.port)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
