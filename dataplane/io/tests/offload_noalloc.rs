//! `FlowTable` allocates nothing after construction: install, remove,
//! scan (including read-ahead of whole hash buckets), clear and the
//! full-table error, watched by a counting allocator on this thread. Needs
//! root (BPF maps); skipped otherwise.

#![cfg(target_os = "linux")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use tandem_io::afxdp::FlowMap;
use tandem_io::offload::{FlowMatch, FlowOffload, FlowOwner, FlowRewrite};
use tandem_netns::have_privileges;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter on the side does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHED.with(|w| w.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if WATCHED.with(|w| w.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn flow(i: u32) -> FlowMatch {
    let b = i.to_be_bytes();
    FlowMatch {
        port: (i % 2) as usize,
        src: [198, 18, b[2], b[3]],
        dst: [198, 19, 0, 1],
        sport: (1000 + i as u16).to_be_bytes(),
        dport: [0, 53],
        proto: 17,
    }
}

#[test]
fn flow_table_operations_do_not_allocate() {
    if !have_privileges("flow_table_operations_do_not_allocate") {
        return;
    }
    let map = FlowMap::create(600).unwrap();
    let mut t = map.table(vec![1, 2]);
    let to = FlowRewrite {
        port: 1,
        mtu: 1500,
        ..Default::default()
    };
    let mut visited = 0u64;
    let mut full_errors = 0;
    WATCHED.with(|w| w.set(true));
    for round in 0..3u16 {
        for i in 0..600 {
            let owner = FlowOwner {
                shard: (i % 2) as u16,
                conn: i,
                gen: u32::from(round),
            };
            t.install(&flow(i), &to, owner).unwrap();
        }
        // Full: the kernel's E2BIG, no allocation for the error either.
        if t.install(&flow(9999), &to, FlowOwner::default()).is_err() {
            full_errors += 1;
        }
        for budget in [1, 7, 64, 256, 1000] {
            for _ in 0..2000 {
                if t.scan(budget, &mut |s| visited += s.packets + 1).unwrap() {
                    break;
                }
            }
        }
        for i in 0..100 {
            let _ = t.remove(&flow(i)).unwrap();
            let _ = t.remove(&flow(i)).unwrap();
        }
        let _ = t.clear(round % 2).unwrap();
        let _ = t.clear(0).unwrap();
        let _ = t.clear(1).unwrap();
    }
    WATCHED.with(|w| w.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0, "allocations");
    assert_eq!(full_errors, 3);
    assert!(visited >= 3 * 5 * 600, "visited {visited}");
}
