//! Proves the steady-state batch loop allocates nothing: a counting global
//! allocator (only in this test binary) watches the run-loop thread while
//! it forwards UDP, answers ARP and ICMP echo, sends ICMP errors, punts
//! failover frames to (and takes injected frames from) the management
//! queues, publishes per-interface counters, and switches address ownership.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use tandem_dataplane::{
    BatchLoop, Forwarder, InjectedFrame, Role, SharedCounters, SharedPortCounters, Timestamp,
};
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
    let mut fwd = Forwarder::new(&cfg).unwrap();
    // The punt queue is smaller than one iteration's punts, so both the
    // delivered and the overflow path run.
    let (punt_tx, punted) = crossbeam_channel::bounded(4);
    fwd.set_punt(punt_tx, 0);
    let mut bl = BatchLoop::new(fwd, &cfg.run);
    let (inject, inject_rx) = crossbeam_channel::bounded(8);
    bl.set_inject_queue(inject_rx);
    let mut b = MemBackend::new(2, 1024, 2048, 256);
    let shared = SharedCounters::default();
    let ports = SharedPortCounters::new(2);
    // Ownership switches between the configured MACs and addresses and
    // another MAC with the same addresses, so forwarding goes on; built
    // once, applied by reference.
    let mine = active_config();
    let mut other = active_config();
    other.interfaces[1].mac = V_IN_MAC;
    let hello = InjectedFrame::new(1, &tandem_frame(IN_MAC, [0xff; 6], b"hello")).unwrap();
    // Traffic mix per iteration, built once.
    let mix = [
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[0; 18]),
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[1; 18]),
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 1, &[2; 18]),
        echo_request(C_MAC, OUT_MAC, C_IP, OUT_IP),
        arp_request(C_MAC, C_IP, OUT_IP),
        tandem_frame(C_MAC, OUT_MAC, &[9; 64]),
    ];
    let from_s = arp_request(S_MAC, S_IP, IN_IP);
    let mut now = Timestamp::ZERO;
    let mut run = |iters: u64, b: &mut MemBackend, now: &mut Timestamp| {
        let mut forwarded = 0;
        for i in 0..iters {
            *now = *now + std::time::Duration::from_micros(100);
            if i % 100 == 50 {
                let own = if i % 200 == 50 { &other } else { &mine };
                bl.forwarder_mut()
                    .set_ownership(*now, own, Role::Forwarding, i % 400 == 50)
                    .unwrap();
            }
            inject.try_send(hello).unwrap();
            // 5 × 6 frames: within one 32-frame receive burst.
            for _ in 0..5 {
                for f in &mix {
                    assert!(b.inject(0, f));
                }
            }
            assert!(b.inject(1, &from_s));
            bl.poll_once(*now, b);
            shared.publish(&bl.counters(b));
            ports.publish(bl.forwarder().port_counters());
            while punted.try_recv().is_ok() {}
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
    assert!(forwarded >= 2_000 * 10, "forwarded {forwarded}");
    let c = shared.load();
    assert!(c.tx_icmp_echo_reply > 0 && c.tx_arp_reply > 0 && c.tx_icmp_error > 0);
    assert!(c.rx_punted > 0 && c.drop_punt_full > 0 && c.tx_injected > 2_000);
    assert!(c.tx_garp > 0, "ownership changes announced");
    assert!(ports.load(0).rx > 2_000 * 30);
    assert_eq!(b.free_frames(), 1024);
}
