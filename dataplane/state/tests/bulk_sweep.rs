//! Mark-and-sweep at bulk sync: a standby marks when a bulk begins; after the bulk completed, the
//! sweep removes what the active no longer has (deleted while the delete record was lost), and
//! keeps what was re-sent or created by live records during the bulk.

mod common;

use common::*;
use std::net::Ipv4Addr;
use tandem_state::records::*;
use tandem_state::*;

/// Runs a whole bulk sync of `from` into a sink.
fn bulk_all(from: &Shard, now: u64) -> VecSink {
    let mut cur = BulkCursor::default();
    let mut sink = VecSink::default();
    for _ in 0..1000 {
        if from.bulk(&mut cur, now, &mut sink, 256).finished {
            return sink;
        }
    }
    panic!("bulk sync did not finish");
}

/// Sweeps to the end with a generous budget; returns the entries removed.
fn sweep_all(s: &mut Shard, now: u64) -> usize {
    let mut n = 0;
    for _ in 0..1000 {
        let p = s.bulk_sweep(now, 1 << 20);
        n += p.swept;
        if p.finished {
            return n;
        }
    }
    panic!("sweep did not finish");
}

fn sa(spi: u32) -> SaEntry {
    SaEntry {
        spi,
        direction: SaDirection::Outbound,
        peer: SERVER,
        local: PAT_ADDR,
        cipher: Cipher::AesGcm256,
        integrity: Integrity::None,
        enc_key: [7; 32],
        enc_key_len: 32,
        salt: [1, 2, 3, 4],
        auth_key: [0; 64],
        auth_key_len: 0,
        seq: 1,
        replay_window: 0,
        replay_top: 0,
        replay_bitmap: 0,
        life_secs: None,
        life_bytes: None,
    }
}

/// A PAT'd UDP flow from inside host `h` port `port` on the active; its records go into `sink`.
fn flow(active: &mut Shard, now: u64, h: u8, port: u16, sink: &mut VecSink) -> Vec<u8> {
    let mut p = udp(Ipv4Addr::new(198, 18, 0, h), port, SERVER, 53, true);
    pass(active, now, INSIDE, &mut p, lab_route, sink).unwrap();
    p
}

/// An active with flows `hosts` (one UDP flow each, own PAT xlate) and SAs `spis`, and a standby
/// that has received all of it.
fn pair(hosts: &[u8], spis: &[u32]) -> (Shard, Shard) {
    let cfg = config();
    let mut active = shard(&cfg);
    let mut standby = Shard::new(&cfg, 0, 1, 77).unwrap();
    let mut sink = VecSink::default();
    for &h in hosts {
        flow(&mut active, 0, h, 1000, &mut sink);
    }
    for &spi in spis {
        active.sa_add(0, sa(spi), &mut sink).unwrap();
    }
    sink.apply_to(&mut standby, 0);
    assert_eq!(
        standby.counts(),
        (hosts.len(), hosts.len(), spis.len()),
        "standby in sync"
    );
    (active, standby)
}

/// Deletes on the active whose records are lost: flows idle since before `now - udp timeout`
/// expire on the active, then their xlates, and the delete records go nowhere while the standby
/// keeps its copies. Returns the time after the xlates went.
fn lose_deletes(active: &mut Shard, now: u64) -> u64 {
    let cfg = config();
    active.expire(now, 1 << 20, &mut NullSink);
    let later = now + u64::try_from(cfg.timeouts.pat_xlate.as_nanos()).unwrap() + 1;
    active.expire(later, 1 << 20, &mut NullSink);
    later
}

#[test]
fn entries_not_resent_by_the_bulk_are_swept_and_resent_ones_survive() {
    let (mut active, mut standby) = pair(&[10, 11, 12, 13], &[0x1000, 0x2000]);
    let cfg = config();
    let udp_to = u64::try_from(cfg.timeouts.udp.as_nanos()).unwrap();
    // Hosts 12 and 13 keep talking; 10 and 11 go idle and expire on the active, together with
    // their xlates, and SA 0x2000 is removed: every delete record is lost.
    let mut live = VecSink::default();
    for h in [12, 13] {
        flow(&mut active, udp_to - 20 * SEC, h, 1000, &mut live);
    }
    let later = lose_deletes(&mut active, udp_to + 1);
    assert!(active.sa_remove(0x2000, SaDirection::Outbound, &mut NullSink));
    assert_eq!(active.counts(), (2, 2, 1));
    assert_eq!(
        standby.counts(),
        (4, 4, 2),
        "the standby missed the deletes"
    );

    // The standby re-syncs: mark, bulk, sweep.
    standby.bulk_mark();
    bulk_all(&active, later).apply_to(&mut standby, later);
    assert_eq!(
        standby.counts(),
        (4, 4, 2),
        "nothing removed before the sweep"
    );
    assert_eq!(sweep_all(&mut standby, later), 2 + 2 + 1);
    assert_eq!(standby.counts(), (2, 2, 1));
    assert_eq!(standby.counters().bulk_swept, 5);
    assert_eq!(conn_views(&standby, later), conn_views(&active, later));
    assert_eq!(xlate_views(&standby, later), xlate_views(&active, later));
    assert!(standby.sa_get(0x1000, SaDirection::Outbound).is_some());
    assert!(standby.sa_get(0x2000, SaDirection::Outbound).is_none());
    // The sweep emitted nothing and leaves nothing pending.
    assert_eq!(standby.counters().records_emitted, 0);
    assert_eq!(
        standby.bulk_sweep(later, 100),
        SweepProgress {
            swept: 0,
            finished: true
        }
    );
}

#[test]
fn entries_created_by_live_records_during_the_bulk_survive() {
    let (mut active, mut standby) = pair(&[10], &[]);
    standby.bulk_mark();
    // The bulk snapshot is taken before the new flow exists...
    let bulk = bulk_all(&active, 0);
    // ...and the new flow's live records reach the standby during the bulk.
    let mut live = VecSink::default();
    flow(&mut active, 0, 20, 2000, &mut live);
    live.apply_to(&mut standby, 0);
    bulk.apply_to(&mut standby, 0);
    assert_eq!(sweep_all(&mut standby, 0), 0);
    assert_eq!(standby.counts(), (2, 2, 0));
    assert_eq!(conn_views(&standby, 0), conn_views(&active, 0));
}

#[test]
fn a_mark_without_a_completed_sweep_changes_nothing() {
    let (active, mut standby) = pair(&[10, 11], &[0x1000]);
    let before = (conn_views(&standby, 0), xlate_views(&standby, 0));
    // A bulk that begins and aborts (the active fails mid-bulk): part of it applied, no sweep.
    standby.bulk_mark();
    let bulk = bulk_all(&active, 0);
    bulk.0[..1].iter().for_each(|(k, op, _, p)| {
        standby.apply(0, *k, *op, p).unwrap();
    });
    // Expiry and packets go on as usual; the tables are as before.
    standby.expire(1, 1 << 20, &mut NullSink);
    assert_eq!(standby.counts(), (2, 2, 1));
    assert_eq!((conn_views(&standby, 0), xlate_views(&standby, 0)), before);
    // A new mark abandons the old sweep; a full bulk then a sweep removes nothing that the
    // active still has.
    standby.bulk_mark();
    bulk.apply_to(&mut standby, 0);
    assert_eq!(sweep_all(&mut standby, 0), 0);
    assert_eq!(standby.counts(), (2, 2, 1));
    // A sweep with no mark pending does nothing.
    assert!(standby.bulk_sweep(0, 10).finished);
    assert_eq!(standby.counters().bulk_swept, 0);
}

#[test]
fn budgeted_sweep_proceeds_across_calls() {
    let hosts: Vec<u8> = (1..=200).collect();
    let (mut active, mut standby) = pair(&hosts, &[]);
    // The active loses every flow (records lost), then a bulk of nothing.
    let cfg = config();
    let t = lose_deletes(
        &mut active,
        u64::try_from(cfg.timeouts.udp.as_nanos()).unwrap() + 1,
    );
    assert_eq!(active.counts(), (0, 0, 0));
    standby.bulk_mark();
    bulk_all(&active, t).apply_to(&mut standby, t);
    let slots = cfg.capacities.conns as usize + cfg.capacities.xlates as usize;
    let budget = 100;
    let mut calls = 0;
    let mut swept = 0;
    loop {
        let before = standby.counts();
        let p = standby.bulk_sweep(t, budget);
        calls += 1;
        let after = standby.counts();
        // Bounded work: at most `budget` entries removed per call.
        assert!(p.swept <= budget);
        assert_eq!(
            before.0 + before.1 - after.0 - after.1,
            p.swept,
            "swept counts what left"
        );
        swept += p.swept;
        if p.finished {
            break;
        }
        assert!(calls < 1000);
    }
    assert_eq!(swept, 400);
    assert_eq!(standby.counts(), (0, 0, 0));
    // Every slot visited once, `budget` per call (plus one call for the empty SA table's end).
    assert!(calls >= slots / budget, "{calls}");
    assert!(calls <= slots / budget + 2, "{calls}");
}

#[test]
fn the_bulk_generation_costs_no_bytes_per_connection() {
    let mut cfg = config();
    cfg.capacities.conns = 1 << 16;
    cfg.capacities.xlates = 1 << 16;
    let s = shard(&cfg);
    let per_conn = s.conn_memory_bytes() / (1 << 16);
    println!("bytes per connection incl. xlate and index slots: {per_conn}");
    // 64 B connection + 32 B xlate + 2 × 8 B connection index + 2 × 8 B xlate index + free lists.
    assert!(per_conn <= 136, "{per_conn}");
}

#[test]
fn sweep_keeps_an_xlate_resent_only_through_its_connection() {
    // The active's xlate record is lost but its connection is re-sent: the xlate the re-sent
    // connection uses is kept with it.
    let cfg = config();
    let mut active = shard(&cfg);
    let mut standby = Shard::new(&cfg, 0, 1, 3).unwrap();
    let mut sink = VecSink::default();
    flow(&mut active, 0, 30, 3000, &mut sink);
    sink.apply_to(&mut standby, 0);
    standby.bulk_mark();
    let bulk = bulk_all(&active, 0);
    for (k, op, _, p) in bulk.0.iter().filter(|r| r.0 == KIND_CONN) {
        standby.apply(0, *k, *op, p).unwrap();
    }
    assert_eq!(sweep_all(&mut standby, 0), 0);
    assert_eq!(standby.counts(), (1, 1, 0));
}
