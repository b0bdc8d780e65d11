//! Loss repair of the sender, simulated with time passed in: a retransmission timeout probes with
//! the oldest unacknowledged frame only, recovery after it resends only the frames that were
//! outstanding when it fired, and a NAK resends go-back-N from the gap, not from the oldest
//! held frame.

mod common;

use common::*;
use tandem_sync::wire::{emit_control, Control, Frame};
use tandem_sync::*;

const EPOCH: u32 = 0x5EED_0001;
const MS: u64 = 1_000_000;

/// A sender of one stream with the default timers (RTO 10 ms).
fn sender() -> Sender {
    Sender::new(SenderConfig::new(EPOCH, 1)).unwrap()
}

/// Sends data frame number `n` (one record carrying `n`) on stream 0 at `now`.
fn send(tx: &mut Sender, pool: &mut BufPool, now: u64, n: u64) {
    let mut enc = FrameEncoder::new(0, FRAME).unwrap();
    assert!(enc.begin(pool.get().unwrap(), false).is_none());
    assert_eq!(enc.put(now, 1, 1, n, &n.to_be_bytes()), Put::Written);
    let _ = tx.send(now, enc.finish().unwrap()).unwrap();
}

fn control(tx: &mut Sender, now: u64, c: Control) {
    let mut out = [0u8; 64];
    let n = emit_control(EPOCH, &c, &mut out).unwrap();
    tx.handle_control(now, &out[..n]).unwrap();
}

/// Sequence numbers of everything `poll_retransmit` hands out at `now`.
fn resent(tx: &mut Sender, now: u64) -> Vec<u32> {
    let mut seqs = Vec::new();
    while let Some(f) = tx.poll_retransmit(now) {
        match Frame::parse(f).unwrap() {
            Frame::Data { seq, .. } => seqs.push(seq),
            other => panic!("resent a non-data frame: {other:?}"),
        }
        assert!(seqs.len() <= 1024, "poll_retransmit does not end");
    }
    seqs
}

#[test]
fn an_rto_resends_only_the_oldest_unacknowledged_frame() {
    let (mut tx, mut pool) = (sender(), BufPool::new(16, FRAME));
    for n in 0..5 {
        send(&mut tx, &mut pool, 0, n);
    }
    assert_eq!(tx.poll_timeout(), Some(10 * MS));
    assert_eq!(
        resent(&mut tx, 10 * MS - 1),
        Vec::<u32>::new(),
        "not due yet"
    );
    assert_eq!(resent(&mut tx, 10 * MS), [0], "a probe, not the window");
    assert_eq!(tx.counters().timeouts, 1);
    assert_eq!(tx.counters().retransmits, 1);
    // Backoff: the next probe comes after twice the timeout, and is again one frame.
    assert_eq!(tx.poll_timeout(), Some(30 * MS));
    assert_eq!(resent(&mut tx, 30 * MS), [0]);
    assert_eq!(tx.counters().timeouts, 2);
}

#[test]
fn after_an_rto_each_advancing_ack_probes_the_next_frame_that_was_outstanding() {
    let (mut tx, mut pool) = (sender(), BufPool::new(16, FRAME));
    for n in 0..4 {
        send(&mut tx, &mut pool, 0, n);
    }
    assert_eq!(resent(&mut tx, 10 * MS), [0]);
    // A frame sent after the timeout fired cannot have been lost before it.
    send(&mut tx, &mut pool, 10 * MS + 1, 4);
    control(&mut tx, 10 * MS + 2, Control::Ack { stream: 0, next: 1 });
    assert_eq!(resent(&mut tx, 10 * MS + 2), [1]);
    control(&mut tx, 10 * MS + 3, Control::Ack { stream: 0, next: 2 });
    assert_eq!(resent(&mut tx, 10 * MS + 3), [2]);
    // The receiver had 2 and 3 after all: recovery ends, frame 4 is not resent.
    control(&mut tx, 10 * MS + 4, Control::Ack { stream: 0, next: 4 });
    assert_eq!(resent(&mut tx, 10 * MS + 4), Vec::<u32>::new());
    assert_eq!(tx.counters().retransmits, 3);
    // And the timer restarted from that ACK at the initial timeout.
    assert_eq!(tx.poll_timeout(), Some(10 * MS + 4 + 10 * MS));
}

#[test]
fn an_ack_for_more_than_the_probe_ends_the_recovery_without_more_resends() {
    let (mut tx, mut pool) = (sender(), BufPool::new(16, FRAME));
    for n in 0..10 {
        send(&mut tx, &mut pool, 0, n);
    }
    assert_eq!(resent(&mut tx, 10 * MS), [0]);
    // A slow receiver (or lost ACKs): its next ACK covers several frames, so they were not
    // lost; probing on would only make duplicates.
    control(&mut tx, 10 * MS + 1, Control::Ack { stream: 0, next: 5 });
    assert_eq!(resent(&mut tx, 10 * MS + 1), Vec::<u32>::new());
    control(&mut tx, 10 * MS + 2, Control::Ack { stream: 0, next: 6 });
    assert_eq!(
        resent(&mut tx, 10 * MS + 2),
        Vec::<u32>::new(),
        "recovery ended"
    );
    assert_eq!(tx.counters().retransmits, 1);
}

#[test]
fn a_nak_resends_go_back_n_from_the_gap_not_from_the_oldest_held_frame() {
    let (mut tx, mut pool) = (sender(), BufPool::new(16, FRAME));
    for n in 0..6 {
        send(&mut tx, &mut pool, 0, n);
    }
    // Frames 0 and 1 arrived (not acknowledged yet), 2 was lost, 3.. arrived out of order.
    control(
        &mut tx,
        MS,
        Control::Nak {
            stream: 0,
            first: 2,
            count: 4,
        },
    );
    assert_eq!(resent(&mut tx, MS), [2, 3, 4, 5]);
    assert_eq!(tx.counters().naks_received, 1);
    assert_eq!(tx.counters().timeouts, 0);
}

#[test]
fn lost_acks_cost_one_probe_and_its_duplicate_not_the_window() {
    let mut p = Pair::new(1, 11);
    p.join();
    // Every ACK of these 20 frames is lost: the sender's timeout fires.
    p.b2a.drop_next = u32::MAX;
    for f in 0..20 {
        for i in f * 3..f * 3 + 3 {
            p.put(0, 1, i, &i.to_be_bytes());
        }
        p.flush(0);
    }
    let deadline = p.now + 11 * MS;
    while p.tx.counters().timeouts == 0 {
        assert!(p.now < deadline, "no retransmission timeout");
        p.step();
    }
    // The ACK that answers the probe gets through.
    p.b2a.drop_next = 0;
    p.settle(5000);
    let seen: Vec<u64> = p.got.iter().map(|g| counter(&g.payload)).collect();
    assert_eq!(seen, (0..60).collect::<Vec<_>>(), "in order, once");
    assert_eq!(p.tx.counters().retransmits, 1, "one probe");
    assert_eq!(p.rx.counters().duplicates, 1, "the probe");
    assert_eq!(
        p.tx.lag_frames(),
        0,
        "the probe's ACK acknowledged everything"
    );
}

#[test]
fn a_lost_tail_is_recovered_by_probes_resending_only_the_lost_frames() {
    let mut p = Pair::new(1, 12);
    p.join();
    for i in 0..10u64 {
        p.put(0, 1, i, &i.to_be_bytes());
        p.flush(0);
    }
    p.settle(1000);
    assert_eq!(p.tx.lag_frames(), 0);
    // The last three frames are lost and nothing follows them: only the timeout can tell.
    p.a2b.drop_next = 3;
    for i in 10..13u64 {
        p.put(0, 1, i, &i.to_be_bytes());
        p.flush(0);
    }
    p.settle(5000);
    let seen: Vec<u64> = p.got.iter().map(|g| counter(&g.payload)).collect();
    assert_eq!(seen, (0..13).collect::<Vec<_>>(), "in order, once");
    assert_eq!(p.tx.counters().timeouts, 1, "one timeout, then ACK-driven");
    assert_eq!(p.tx.counters().retransmits, 3, "exactly the lost frames");
    assert_eq!(p.rx.counters().duplicates, 0);
    assert_eq!(p.rx.counters().naks_sent, 0);
}
