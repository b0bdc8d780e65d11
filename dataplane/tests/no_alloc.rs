//! Proves the steady-state batch loop allocates nothing: a counting global
//! allocator (only in this test binary) watches the run-loop thread while
//! it forwards UDP, answers ARP and ICMP echo, and sends ICMP errors.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use tandem_dataplane::{BatchLoop, Forwarder, SharedCounters, Timestamp};
use tandem_io::mem::MemBackend;

struct Counting;

thread_local! {
    // Const-initialised: reading it inside the allocator cannot allocate.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every operation to `System` unchanged; the only addition
// is a thread-local counter bump, which neither allocates nor unwinds.
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

#[test]
fn steady_state_batches_allocate_nothing() {
    let cfg = config();
    let mut bl = BatchLoop::new(Forwarder::new(&cfg).unwrap(), &cfg.run);
    let mut b = MemBackend::new(2, 1024, 2048, 256);
    let shared = SharedCounters::default();
    // Traffic mix per iteration, built once.
    let mix = [
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[0; 18]),
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[1; 18]),
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 1, &[2; 18]),
        echo_request(C_MAC, OUT_MAC, C_IP, OUT_IP),
        arp_request(C_MAC, C_IP, OUT_IP),
    ];
    let from_s = arp_request(S_MAC, S_IP, IN_IP);
    let mut now = Timestamp::ZERO;
    let mut run = |iters: u64, b: &mut MemBackend, now: &mut Timestamp| {
        let mut forwarded = 0;
        for _ in 0..iters {
            *now = *now + std::time::Duration::from_micros(100);
            for _ in 0..6 {
                for f in &mix {
                    assert!(b.inject(0, f));
                }
            }
            assert!(b.inject(1, &from_s));
            bl.poll_once(*now, b);
            shared.publish(&bl.counters(b));
            forwarded += b.drain_tx(1, |_| {}) as u64;
            b.drain_tx(0, |_| {});
        }
        forwarded
    };
    // Warm-up: resolve the server, fill caches and lazily created state.
    run(50, &mut b, &mut now);
    let before = allocs();
    let forwarded = run(2_000, &mut b, &mut now);
    let during = allocs() - before;
    assert_eq!(during, 0, "allocations in steady state");
    assert!(forwarded >= 2_000 * 12, "forwarded {forwarded}");
    let c = shared.load();
    assert!(c.tx_icmp_echo_reply > 0 && c.tx_arp_reply > 0 && c.tx_icmp_error > 0);
    assert_eq!(b.free_frames(), 1024);
}
