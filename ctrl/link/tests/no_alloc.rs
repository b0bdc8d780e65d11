//! Proves the steady state allocates nothing (STYLE habit 8): a counting global allocator (only
//! in this test binary) watches seal → open of many frames, including rekey handshakes, replays
//! and forgeries, all through caller-provided buffers.

use std::time::Duration;

use tandem_link::testutil::FakeNonces;
use tandem_link::wire::DATA_HEADER_LEN;
use tandem_link::{FailoverKey, IfName, LinkConfig, LinkKind, Received, SecureLink, Security};

#[global_allocator]
static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;

use tandem_alloc_count::allocs;

type Link = SecureLink<FakeNonces>;

/// Moves hellos both ways through one stack buffer until both sides are quiet.
fn shuttle(a: &mut Link, b: &mut Link, now: Duration, buf: &mut [u8; 1500]) {
    for _ in 0..16 {
        let mut moved = false;
        while let Some(n) = a.poll_transmit(now, buf) {
            b.handle_frame(now, &mut buf[..n]);
            moved = true;
        }
        while let Some(n) = b.poll_transmit(now, buf) {
            a.handle_frame(now, &mut buf[..n]);
            moved = true;
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if !moved {
            break;
        }
    }
}

#[test]
fn seal_open_and_rekeys_allocate_nothing() {
    let s = Security::Encrypted(FailoverKey::parse("no-alloc-key").unwrap());
    let mut cfg = LinkConfig::new(LinkKind::State, IfName::new("st0").unwrap());
    cfg.rekey_after_frames = 500;
    let t = Duration::ZERO;
    let mut a = SecureLink::new(cfg, &s, FakeNonces::new(1), t).unwrap();
    let mut b = SecureLink::new(cfg, &s, FakeNonces::new(2), t).unwrap();
    let mut buf = [0u8; 1500];
    let mut copy = [0u8; 1500];
    shuttle(&mut a, &mut b, t, &mut buf);
    assert!(a.is_established() && b.is_established());

    let before = allocs();
    let payload_len = 1400;
    let mut opened = 0u64;
    for i in 0..2000u32 {
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + 4].copy_from_slice(&i.to_be_bytes());
        let n = a.seal(t, payload_len, &mut buf).unwrap();
        copy[..n].copy_from_slice(&buf[..n]);
        if let Received::Data(o) = b.handle_frame(t, &mut buf[..n]) {
            assert_eq!(buf[o.payload.start..o.payload.start + 4], i.to_be_bytes());
            opened += 1;
        }
        // A replay and a forgery of every 100th frame: counted drops, no allocation.
        if i % 100 == 0 {
            let mut replay = copy;
            assert!(matches!(
                b.handle_frame(t, &mut replay[..n]),
                Received::Dropped(_)
            ));
            copy[DATA_HEADER_LEN] ^= 1;
            copy[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
            assert!(matches!(
                b.handle_frame(t, &mut copy[..n]),
                Received::Dropped(_)
            ));
        }
        // Rekey handshakes (every 500 frames) run through the same buffers.
        shuttle(&mut a, &mut b, t, &mut copy);
    }
    let after = allocs();
    assert_eq!(opened, 2000);
    assert!(b.counters().rekeys >= 3, "{:?}", b.counters());
    assert_eq!(after - before, 0, "allocations in the steady state");
}
