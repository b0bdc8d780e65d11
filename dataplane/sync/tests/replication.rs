//! Acceptance tests of issue 4, part 2 ("Replication over the state link"), simulated and
//! deterministic: coalescing, full frames, in-order delivery, gap → NAK → retransmission,
//! duplicates, eviction → bulk, sender restart → bulk, a lossy link over 10 000 frames, bulk
//! progress and `ready()`.

mod common;

use common::*;
use tandem_sync::wire::{Frame, HEADER_LEN};
use tandem_sync::*;

/// `(kind, op, payload)` of a received record.
type Rec = (u8, u8, Vec<u8>);

fn frame_with(records: &[(u8, u8, u64, Vec<u8>)]) -> (Vec<Rec>, Vec<Put>) {
    let mut enc = FrameEncoder::new(3, 1464).unwrap();
    let _ = enc.begin(SyncBuf::with_capacity(1464), false);
    let puts = records
        .iter()
        .map(|(k, o, key, p)| enc.put(7, *k, *o, *key, p))
        .collect();
    let mut buf = enc.finish().unwrap();
    wire::stamp(buf.as_bytes_mut(), 1, 0);
    let Frame::Data { records, .. } = Frame::parse(buf.as_bytes()).unwrap() else {
        panic!("not a data frame")
    };
    (
        records
            .map(|r| (r.kind, r.op, r.payload.to_vec()))
            .collect(),
        puts,
    )
}

#[test]
fn same_kind_and_key_twice_in_a_frame_coalesce_into_one_record_with_the_latest_payload() {
    let (recs, puts) = frame_with(&[
        (1, 1, 42, vec![1; 56]),
        (1, 1, 43, vec![3; 56]),
        (1, 2, 42, vec![2; 56]),
    ]);
    assert_eq!(puts, [Put::Written, Put::Written, Put::Coalesced]);
    assert_eq!(recs, [(1, 2, vec![2; 56]), (1, 1, vec![3; 56])]);
}

#[test]
fn different_kinds_with_the_same_key_do_not_coalesce() {
    let (recs, puts) = frame_with(&[(1, 1, 42, vec![1; 56]), (2, 1, 42, vec![2; 24])]);
    assert_eq!(puts, [Put::Written, Put::Written]);
    assert_eq!(recs, [(1, 1, vec![1; 56]), (2, 1, vec![2; 24])]);
}

#[test]
fn coalescing_is_per_frame_a_new_frame_starts_a_fresh_index() {
    let mut enc = FrameEncoder::new(0, 1464).unwrap();
    let _ = enc.begin(SyncBuf::with_capacity(1464), false);
    assert_eq!(enc.put(0, 1, 1, 5, &[1; 8]), Put::Written);
    let _ = enc.finish().unwrap();
    let _ = enc.begin(SyncBuf::with_capacity(1464), false);
    assert_eq!(enc.put(0, 1, 1, 5, &[2; 8]), Put::Written);
    assert_eq!(enc.counters().records_coalesced, 0);
}

#[test]
fn a_full_frame_refuses_the_record_and_writes_nothing_of_it() {
    // 24-byte header + 3 records of 8 + 56 bytes = 216 bytes: a 230-byte frame holds 3.
    let mut enc = FrameEncoder::new(0, 230).unwrap();
    let _ = enc.begin(SyncBuf::with_capacity(1464), false);
    for key in 0..3 {
        assert_eq!(enc.put(10, 1, 1, key, &[key as u8; 56]), Put::Written);
    }
    let before = enc.remaining();
    assert_eq!(enc.put(11, 1, 1, 99, &[0xEE; 56]), Put::Full);
    assert_eq!(enc.remaining(), before);
    // A coalescing update still fits: it needs no new space.
    assert_eq!(enc.put(12, 1, 1, 1, &[0x11; 56]), Put::Coalesced);
    assert_eq!(enc.opened_at(), Some(10));
    let mut buf = enc.finish().unwrap();
    assert_eq!(buf.len(), 216);
    wire::stamp(buf.as_bytes_mut(), 1, 0);
    assert!(
        !buf.as_bytes().contains(&0xEE),
        "the refused record left bytes behind"
    );
    let Frame::Data { records, .. } = Frame::parse(buf.as_bytes()).unwrap() else {
        panic!()
    };
    let keys: Vec<u8> = records.map(|r| r.payload[0]).collect();
    assert_eq!(keys, [0, 0x11, 2]);
    // No buffer attached: Full, not a panic; a record bigger than any frame: Oversize.
    assert_eq!(enc.put(13, 1, 1, 7, &[0; 56]), Put::Full);
    assert_eq!(enc.put(13, 1, 1, 7, &[0; 300]), Put::Oversize);
    assert_eq!(enc.opened_at(), None);
}

#[test]
fn frames_delivered_in_order_yield_every_record_in_order() {
    let mut p = Pair::new(2, 1);
    p.join();
    for i in 0..500u64 {
        let s = (i % 2) as u16;
        p.put(s, 1, i, &i.to_be_bytes());
        if i % 37 == 0 {
            p.flush_all();
        }
        p.step();
    }
    p.flush_all();
    p.settle(1000);
    for s in 0..2u16 {
        let seen: Vec<u64> = p
            .got
            .iter()
            .filter(|g| g.stream == s)
            .map(|g| counter(&g.payload))
            .collect();
        let want: Vec<u64> = (0..500).filter(|i| i % 2 == u64::from(s)).collect();
        assert_eq!(seen, want, "stream {s}");
    }
    assert_eq!(p.rx.counters().gaps, 0);
    assert_eq!(p.tx.counters().retransmits, 0);
    assert_eq!(p.tx.lag_frames(), 0, "everything acknowledged");
}

/// Sends one frame of `n` counter records on stream 0.
fn send_frame(p: &mut Pair, first: u64, n: u64) {
    for i in first..first + n {
        p.put(0, 1, i, &i.to_be_bytes());
    }
    p.flush(0);
}

#[test]
fn a_dropped_frame_is_detected_naked_retransmitted_and_delivered_once_in_order() {
    let mut p = Pair::new(1, 2);
    p.join();
    send_frame(&mut p, 0, 10);
    p.a2b.drop_next = 1;
    send_frame(&mut p, 10, 10);
    send_frame(&mut p, 20, 10);
    p.settle(1000);
    let seen: Vec<u64> = p.got.iter().map(|g| counter(&g.payload)).collect();
    assert_eq!(seen, (0..30).collect::<Vec<_>>());
    let rc = p.rx.counters();
    assert_eq!(rc.gaps, 1);
    assert!(rc.naks_sent >= 1);
    assert!(p.tx.counters().naks_received >= 1);
    assert!(p.tx.counters().retransmits >= 1);
    assert!(p.deliveries.iter().any(|d| d.starts_with("OutOfOrder")));
    assert!(p.events.is_empty(), "no bulk needed");
}

#[test]
fn a_lost_last_frame_is_resent_after_the_retransmission_timeout() {
    let mut p = Pair::new(1, 3);
    p.join();
    p.a2b.drop_next = 1;
    send_frame(&mut p, 0, 5);
    p.settle(5000);
    let seen: Vec<u64> = p.got.iter().map(|g| counter(&g.payload)).collect();
    assert_eq!(seen, (0..5).collect::<Vec<_>>());
    assert!(p.tx.counters().timeouts >= 1);
}

#[test]
fn duplicate_frames_are_dropped_and_records_delivered_once() {
    let mut p = Pair::new(1, 4);
    p.join();
    p.a2b.impair.dup = 1000;
    for f in 0..20 {
        send_frame(&mut p, f * 4, 4);
    }
    p.settle(1000);
    let seen: Vec<u64> = p.got.iter().map(|g| counter(&g.payload)).collect();
    assert_eq!(seen, (0..80).collect::<Vec<_>>());
    assert_eq!(p.rx.counters().duplicates, 20);
}

#[test]
fn a_nak_for_a_frame_evicted_from_the_ring_asks_for_a_bulk_sync() {
    let mut cfg = SenderConfig::new(0xBEEF, 1);
    cfg.ring_frames = 4;
    let mut p = Pair::with(cfg, ReceiverConfig::new(1), 5);
    p.join();
    p.auto_bulk = false;
    // Frame 0 is lost; 8 more are sent before the NAK can come back: frame 0 is evicted.
    p.a2b.drop_next = 1;
    for f in 0..9 {
        send_frame(&mut p, f * 2, 2);
    }
    assert!(p.tx.counters().evicted >= 5);
    for _ in 0..50 {
        p.step();
    }
    let want = SenderEvent::BulkNeeded {
        stream: 0,
        reason: BulkReason::Evicted,
    };
    assert_eq!(p.events, [want]);
    assert_eq!(
        p.tx.stream_status(0).unwrap().bulk.phase,
        BulkPhase::Requested
    );
    // The glue answers with a bulk: BULK_BEGIN resynchronises the stream past the gap.
    p.bulk(0, 100);
    p.settle(2000);
    let bulk: Vec<u64> = p
        .got
        .iter()
        .filter(|g| g.bulk)
        .map(|g| counter(&g.payload))
        .collect();
    assert_eq!(bulk, (0..100).collect::<Vec<_>>());
    assert!(p.rx.counters().frames_skipped > 0);
    assert!(p.rx.ready());
    // And live replication carries on in order afterwards.
    p.got.clear();
    send_frame(&mut p, 1000, 3);
    p.settle(1000);
    let seen: Vec<u64> = p.got.iter().map(|g| counter(&g.payload)).collect();
    assert_eq!(seen, [1000, 1001, 1002]);
}

#[test]
fn a_restarted_sender_new_epoch_makes_the_receiver_request_a_bulk_sync() {
    let mut p = Pair::new(2, 6);
    p.join();
    send_frame(&mut p, 0, 3);
    p.settle(1000);
    let old_epoch = p.rx.epoch();
    p.auto_bulk = false;
    p.restart_sender(0x5EC0_0002);
    // The restarted sender's first frame (sequence 0 again) reveals the new epoch.
    send_frame(&mut p, 100, 3);
    for _ in 0..20 {
        p.step();
    }
    assert_ne!(p.rx.epoch(), old_epoch);
    assert_eq!(p.rx.counters().epoch_changes, 1);
    assert!(!p.rx.ready());
    assert!(p.deliveries.iter().any(|d| d.starts_with("Unsynced")));
    assert_eq!(
        p.events,
        [
            SenderEvent::BulkNeeded {
                stream: 0,
                reason: BulkReason::NewEpoch
            },
            SenderEvent::BulkNeeded {
                stream: 1,
                reason: BulkReason::NewEpoch
            },
        ]
    );
    p.bulk(0, 10);
    p.bulk(1, 10);
    p.settle(1000);
    assert!(p.rx.ready());
}

#[test]
fn receiver_that_cannot_get_a_gap_filled_gives_up_and_requests_a_bulk_sync() {
    let mut p = Pair::new(1, 7);
    p.join();
    p.auto_bulk = false;
    send_frame(&mut p, 0, 1);
    send_frame(&mut p, 1, 1);
    // Deliver frame 1 only, and lose every retransmission.
    let frames = p.a2b.due(u64::MAX);
    assert_eq!(frames.len(), 2);
    let mut r = Rng(0);
    p.a2b.push(p.now, &frames[1], &mut r);
    p.a2b.impair.loss = 1000;
    for _ in 0..3000 {
        p.step();
    }
    assert!(p.rx.counters().naks_sent >= 5);
    assert!(!p.rx.ready());
    assert!(p.events.iter().any(|e| matches!(
        e,
        SenderEvent::BulkNeeded {
            reason: BulkReason::GapNotFilled,
            ..
        }
    )));
}

#[test]
fn bulk_sync_progress_is_reported_and_ready_waits_for_every_stream() {
    let mut p = Pair::new(2, 8);
    p.auto_bulk = false;
    for _ in 0..5 {
        p.step();
    }
    assert!(!p.rx.ready());
    assert_eq!(p.rx.bulk_progress().phase, BulkPhase::Requested);
    assert_eq!(p.events.len(), 2, "{:?}", p.events);
    // Stream 0: begin with 1000 entries, send 450 of them.
    let b = p.pool.get().unwrap();
    let f = p.tx.bulk_begin(p.now, 0, 1000, b).unwrap().to_vec();
    p.a2b.push(p.now, &f, &mut p.rng);
    let mut enc = FrameEncoder::new(0, FRAME).unwrap();
    let _ = enc.begin(p.pool.get().unwrap(), true);
    for i in 0..450u64 {
        if enc.put(p.now, 9, 1, i, &i.to_be_bytes()) == Put::Full {
            let bytes = p.tx.send(p.now, enc.finish().unwrap()).unwrap().to_vec();
            assert!(is_bulk_flag(&bytes));
            p.a2b.push(p.now, &bytes, &mut p.rng);
            let _ = enc.begin(p.pool.get().unwrap(), true);
            assert_eq!(enc.put(p.now, 9, 1, i, &i.to_be_bytes()), Put::Written);
        }
    }
    let bytes = p.tx.send(p.now, enc.finish().unwrap()).unwrap().to_vec();
    p.a2b.push(p.now, &bytes, &mut p.rng);
    for _ in 0..20 {
        p.step();
    }
    let tx0 = p.tx.stream_status(0).unwrap().bulk;
    assert_eq!(
        (tx0.phase, tx0.total, tx0.done),
        (BulkPhase::Running, 1000, 450)
    );
    let rx0 = p.rx.stream_status(0).unwrap().bulk;
    assert_eq!(rx0.to_string(), "bulk sync 45 % (450 of 1 000)");
    assert!(!p.rx.ready());
    let b = p.pool.get().unwrap();
    let f = p.tx.bulk_end(p.now, 0, b).unwrap().to_vec();
    p.a2b.push(p.now, &f, &mut p.rng);
    p.settle(1000);
    assert_eq!(p.rx.stream_status(0).unwrap().bulk.phase, BulkPhase::Done);
    assert!(!p.rx.ready(), "stream 1 has not had its bulk sync");
    p.bulk(1, 0);
    p.settle(1000);
    assert!(p.rx.ready());
    assert_eq!(p.rx.counters().bulk_syncs, 2);
    let all = BulkProgress {
        phase: BulkPhase::Running,
        total: 1_000_000,
        done: 450_000,
    };
    assert_eq!(all.to_string(), "bulk sync 45 % (450 000 of 1 000 000)");
}

/// Every record delivered exactly once, in order, per stream, across `frames` frames on a
/// link that drops, duplicates and reorders.
fn lossy_run(seed: u64, frames: u64, impair: Impair) {
    let mut p = Pair::new(2, seed);
    p.join();
    p.a2b.impair = impair;
    p.b2a.impair = impair;
    let mut next = [0u64; 2];
    let mut rng = Rng(seed ^ 0xF00D);
    for _ in 0..frames {
        let s = (rng.next() % 2) as usize;
        let n = 1 + rng.next() % 8;
        for _ in 0..n {
            p.put(s as u16, 1, next[s], &next[s].to_be_bytes());
            next[s] += 1;
        }
        p.flush(s as u16);
        p.step();
    }
    p.a2b.impair = Impair::default();
    p.b2a.impair = Impair::default();
    p.settle(100_000);
    assert!(
        p.events.is_empty(),
        "seed {seed}: a bulk sync was needed: {:?}",
        p.events
    );
    for s in 0..2u16 {
        let seen: Vec<u64> = p
            .got
            .iter()
            .filter(|g| g.stream == s)
            .map(|g| counter(&g.payload))
            .collect();
        assert_eq!(
            seen.len() as u64,
            next[usize::from(s)],
            "seed {seed} stream {s}"
        );
        assert!(
            seen.iter().copied().eq(0..next[usize::from(s)]),
            "seed {seed} stream {s}: not exactly once in order"
        );
    }
    assert!(p.rx.ready());
    assert_eq!(p.tx.lag_frames(), 0);
    // The impairments really happened.
    let rc = p.rx.counters();
    assert!(
        p.a2b.dropped > 0 && rc.duplicates > 0 && rc.gaps > 0,
        "seed {seed}: {rc:?}"
    );
    assert!(p.tx.counters().retransmits > 0);
}

#[test]
fn lossy_link_delivers_every_record_exactly_once_in_order_per_stream() {
    let impair = Impair {
        loss: 20,
        dup: 20,
        reorder: 20,
    };
    lossy_run(0x5EED, 10_000, impair);
}

#[test]
fn lossy_link_sweep_over_seeds() {
    let impair = Impair {
        loss: 50,
        dup: 30,
        reorder: 30,
    };
    for seed in 1..=8 {
        lossy_run(seed, 1_000, impair);
    }
}

#[test]
fn stale_and_malformed_control_frames_are_counted_not_acted_on() {
    let mut p = Pair::new(1, 9);
    p.join();
    send_frame(&mut p, 0, 2);
    let mut out = [0u8; 64];
    let n = wire::emit_control(
        0xDEAD,
        &wire::Control::Nak {
            stream: 0,
            first: 0,
            count: 1,
        },
        &mut out,
    )
    .unwrap();
    p.tx.handle_control(p.now, &out[..n]).unwrap();
    assert_eq!(p.tx.counters().rx_stale, 1);
    assert!(p.tx.handle_control(p.now, &out[..n - 1]).is_err());
    assert!(p.tx.poll_retransmit(p.now).is_none());
    assert!(out.len() >= HEADER_LEN);
}
