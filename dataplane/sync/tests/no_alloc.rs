//! Steady state allocates nothing: encoding, sending, receiving, ACK/NAK, retransmission and
//! buffer recycling run under a counting global allocator after warm-up (STYLE habit 8).
//! The only test in this binary, so no other test's allocations are counted.

use tandem_sync::*;

#[global_allocator]
static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;

const FRAME: usize = 1464;

#[test]
fn steady_state_replication_allocates_nothing() {
    let mut pool = BufPool::new(64, FRAME);
    let mut enc = FrameEncoder::new(0, FRAME).unwrap();
    let mut cfg = SenderConfig::new(42, 1);
    cfg.ring_frames = 32;
    let mut tx = Sender::new(cfg).unwrap();
    let mut rx = Receiver::new(ReceiverConfig::new(1)).unwrap();
    let mut ctl = [0u8; 64];
    let mut wire = [0u8; FRAME];
    let mut now = 0u64;
    let mut key = 0u64;
    let mut delivered = 0u64;

    let mut round = |now: u64, drop_one: bool, pool: &mut BufPool| {
        // Worker: 40 records, a few coalescing, into frames.
        if !enc.has_buffer() {
            let _ = enc.begin(pool.get().unwrap(), false);
        }
        for i in 0..40u64 {
            let k = key + i / 2;
            if enc.put(now, 1, 1, k, &[i as u8; 56]) == Put::Full {
                let f = enc.finish().unwrap();
                let n = {
                    let bytes = tx.send(now, f).unwrap();
                    wire[..bytes.len()].copy_from_slice(bytes);
                    bytes.len()
                };
                if !drop_one {
                    if let Delivery::Records { records, .. } = rx.handle_frame(now, &wire[..n]) {
                        delivered += records.count() as u64;
                    }
                }
                let _ = enc.begin(pool.get().unwrap(), false);
                let _ = enc.put(now, 1, 1, k, &[i as u8; 56]);
            }
        }
        key += 20;
        while let Some(n) = rx.poll_control(now, &mut ctl) {
            let _ = tx.handle_control(now, &ctl[..n]);
        }
        while let Some(SenderEvent::BulkNeeded { stream, .. }) = tx.poll_event() {
            let b = tx.bulk_begin(now, stream, 0, pool.get().unwrap()).unwrap();
            let n = b.len();
            wire[..n].copy_from_slice(b);
            let _ = rx.handle_frame(now, &wire[..n]);
            let b = tx.bulk_end(now, stream, pool.get().unwrap()).unwrap();
            let n = b.len();
            wire[..n].copy_from_slice(b);
            let _ = rx.handle_frame(now, &wire[..n]);
        }
        while let Some(bytes) = tx.poll_retransmit(now) {
            let n = bytes.len();
            wire[..n].copy_from_slice(bytes);
            let _ = rx.handle_frame(now, &wire[..n]);
        }
        while let Some(b) = tx.take_free() {
            pool.put(b);
        }
    };

    // Warm-up: join, bulk, some traffic with a loss.
    for r in 0..200 {
        now += 200_000;
        round(now, r == 50, &mut pool);
    }
    let before = tandem_alloc_count::allocs();
    for r in 0..2000 {
        now += 200_000;
        round(now, r % 97 == 5, &mut pool);
    }
    let after = tandem_alloc_count::allocs();
    assert_eq!(after - before, 0, "allocations in steady state");
    assert!(rx.ready());
    assert!(delivered > 0);
    assert!(tx.counters().retransmits > 0, "the loss path was exercised");
}
