//! Rough seal + open cost per frame on this machine (not a benchmark, no comparison):
//! `cargo run --release -p tandem-link --features testutils --example throughput`.

use std::time::{Duration, Instant};

use tandem_link::testutil::FakeNonces;
use tandem_link::{FailoverKey, IfName, LinkConfig, LinkKind, SecureLink, Security};

fn main() {
    let s = Security::Encrypted(FailoverKey::parse("throughput").unwrap());
    let cfg = LinkConfig::new(LinkKind::State, IfName::new("st0").unwrap());
    let t = Duration::ZERO;
    let mut a = SecureLink::new(cfg, &s, FakeNonces::new(1), t).unwrap();
    let mut b = SecureLink::new(cfg, &s, FakeNonces::new(2), t).unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..4 {
        while let Some(n) = a.poll_transmit(t, &mut buf) {
            b.handle_frame(t, &mut buf[..n]);
        }
        while let Some(n) = b.poll_transmit(t, &mut buf) {
            a.handle_frame(t, &mut buf[..n]);
        }
    }
    assert!(a.is_established() && b.is_established());
    for len in [64usize, 512, 1400] {
        let frames = 200_000u32;
        let mut seal = Duration::ZERO;
        let start = Instant::now();
        for _ in 0..frames {
            let t0 = Instant::now();
            let n = a.seal(t, len, &mut buf).unwrap();
            seal += t0.elapsed();
            b.handle_frame(t, &mut buf[..n]);
        }
        let all = start.elapsed();
        println!(
            "payload {len:>4} B: seal {:>5} ns, seal+open {:>5} ns per frame ({:.0} MB/s)",
            seal.as_nanos() / u128::from(frames),
            all.as_nanos() / u128::from(frames),
            (f64::from(frames) * len as f64) / all.as_secs_f64() / 1e6
        );
    }
}
