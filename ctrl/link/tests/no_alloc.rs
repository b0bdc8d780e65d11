//! Proves the steady state allocates nothing (STYLE habit 8): a counting global allocator (only
//! in this test binary) watches seal → open of many frames, including rekey handshakes, replays
//! and forgeries, all through caller-provided buffers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use tandem_link::testutil::FakeNonces;
use tandem_link::wire::DATA_HEADER_LEN;
use tandem_link::{FailoverKey, IfName, LinkConfig, LinkKind, Received, SecureLink, Security};

struct Counting;

thread_local! {
    // Const-initialised: reading it inside the allocator cannot allocate.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every operation to `System` unchanged; the only addition is a thread-local
// counter bump, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's: layout is non-zero-sized.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was returned by `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: ptr/layout come from `System.alloc`, per our caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

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
