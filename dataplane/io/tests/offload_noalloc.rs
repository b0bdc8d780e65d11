//! `FlowTable` allocates nothing after construction: install, remove,
//! scan (including read-ahead of whole hash buckets), clear and the
//! full-table error, watched by a counting allocator on this thread. Needs
//! root (BPF maps); skipped otherwise.

#![cfg(target_os = "linux")]

use tandem_io::afxdp::FlowMap;
use tandem_io::offload::{FlowMatch, FlowOffload, FlowOwner, FlowRewrite};
use tandem_netns::have_privileges;

#[global_allocator]
static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;

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
    tandem_alloc_count::watch(true);
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
    tandem_alloc_count::watch(false);
    assert_eq!(tandem_alloc_count::watched_allocs(), 0, "allocations");
    assert_eq!(full_errors, 3);
    assert!(visited >= 3 * 5 * 600, "visited {visited}");
}
