//! The shard's flow-offload bookkeeping (`tandem_state::offload`): which direction may be
//! installed when, which removals are queued, and how an offloaded connection expires.

mod common;

use common::*;
use std::net::Ipv4Addr;
use tandem_state::*;

/// One packet through both phases; returns the lookup (for `offload_candidate`).
fn go(s: &mut Shard, now: u64, rx_if: u16, ip: &mut [u8]) -> Lookup {
    let lk = s.lookup(now, rx_if, ip);
    assert_eq!(lk.drop_reason(), None);
    let out = lab_route(lk.route_dst());
    s.commit(now, lk, out, ip, &mut NullSink).unwrap();
    lk
}

fn removals(s: &mut Shard) -> Vec<OffloadRemoval> {
    let mut v = Vec::new();
    s.offload_removals(|r| {
        v.push(*r);
        None
    });
    v
}

fn offloaded(s: &Shard) -> Vec<bool> {
    let mut v = Vec::new();
    s.conns(0, |c| v.push(c.offloaded));
    v
}

/// An established PAT'd TCP connection; returns the mapped port.
fn established(s: &mut Shard, now: u64) -> u16 {
    let mut syn = tcp(CLIENT, 40000, SERVER, 443, SYN);
    let lk = go(s, now, INSIDE, &mut syn);
    assert_eq!(
        s.offload_candidate(&lk),
        None,
        "a new connection is not offloaded"
    );
    let (_, mport, _, _) = tuple(&syn);
    let mut synack = tcp(SERVER, 443, PAT_ADDR, mport, SYN | ACK);
    let lk = go(s, now, OUTSIDE, &mut synack);
    assert_eq!(s.offload_candidate(&lk), None, "not during the handshake");
    mport
}

#[test]
fn tcp_is_offered_once_established_each_direction_once() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mport = established(&mut s, 0);
    let mut ack = tcp(CLIENT, 40000, SERVER, 443, ACK);
    let lk = go(&mut s, 0, INSIDE, &mut ack);
    let r = s
        .offload_candidate(&lk)
        .expect("the handshake's last ACK established it");
    assert!(r.from_orig);
    s.offload_mark(r);
    assert_eq!(offloaded(&s), vec![true]);
    let lk = go(&mut s, 0, INSIDE, &mut tcp(CLIENT, 40000, SERVER, 443, ACK));
    assert_eq!(
        s.offload_candidate(&lk),
        None,
        "this direction is installed"
    );
    let lk = go(
        &mut s,
        0,
        OUTSIDE,
        &mut tcp(SERVER, 443, PAT_ADDR, mport, ACK),
    );
    let r2 = s.offload_candidate(&lk).expect("the return direction");
    assert!(!r2.from_orig);
    assert_eq!((r2.conn, r2.gen), (r.conn, r.gen));
    s.offload_mark(r2);
    assert!(removals(&mut s).is_empty());
}

#[test]
fn a_fin_takes_both_directions_off_the_fast_path_with_their_keys() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mport = established(&mut s, 0);
    let lk = go(&mut s, 0, INSIDE, &mut tcp(CLIENT, 40000, SERVER, 443, ACK));
    s.offload_mark(s.offload_candidate(&lk).unwrap());
    let lk = go(
        &mut s,
        0,
        OUTSIDE,
        &mut tcp(SERVER, 443, PAT_ADDR, mport, ACK),
    );
    s.offload_mark(s.offload_candidate(&lk).unwrap());
    // The fast path passes FIN up: the state leaves ESTABLISHED.
    go(
        &mut s,
        0,
        INSIDE,
        &mut tcp(CLIENT, 40000, SERVER, 443, FIN | ACK),
    );
    let r = removals(&mut s);
    assert_eq!(r.len(), 1);
    assert!(!r[0].retire);
    let key = |src: Ipv4Addr, sport, dst: Ipv4Addr, dport| FlowKey {
        src: u32::from(src),
        dst: u32::from(dst),
        sport,
        dport,
        proto: 6,
    };
    assert_eq!(
        r[0].flows,
        [
            Some((INSIDE, key(CLIENT, 40000, SERVER, 443))),
            Some((OUTSIDE, key(SERVER, 443, PAT_ADDR, mport))),
        ]
    );
    assert_eq!(offloaded(&s), vec![false]);
    // Not offered again while closing.
    let lk = go(
        &mut s,
        0,
        OUTSIDE,
        &mut tcp(SERVER, 443, PAT_ADDR, mport, ACK),
    );
    assert_eq!(s.offload_candidate(&lk), None);
    assert!(removals(&mut s).is_empty(), "queued once");
}

#[test]
fn a_reset_deletes_the_connection_and_queues_its_removal() {
    let cfg = config();
    let mut s = shard(&cfg);
    established(&mut s, 0);
    let lk = go(&mut s, 0, INSIDE, &mut tcp(CLIENT, 40000, SERVER, 443, ACK));
    let r = s.offload_candidate(&lk).unwrap();
    s.offload_mark(r);
    go(&mut s, 0, INSIDE, &mut tcp(CLIENT, 40000, SERVER, 443, RST));
    assert_eq!(s.counts().0, 0);
    let q = removals(&mut s);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].flows[1], None, "only the installed direction");
    assert!(
        !s.offload_seen(r.conn, r.gen, true, 0),
        "a scan finding its entry learns it is stale"
    );
}

#[test]
fn udp_is_offered_from_its_second_packet() {
    let cfg = config();
    let mut s = shard(&cfg);
    let lk = go(&mut s, 0, INSIDE, &mut udp(CLIENT, 5000, SERVER, 53, true));
    assert_eq!(s.offload_candidate(&lk), None);
    let lk = go(&mut s, 0, INSIDE, &mut udp(CLIENT, 5000, SERVER, 53, true));
    assert!(s.offload_candidate(&lk).is_some_and(|r| r.from_orig));
    // ICMP is never offloaded.
    let lk = go(&mut s, 0, INSIDE, &mut icmp_echo(CLIENT, SERVER, 7, true));
    assert_eq!(s.offload_candidate(&lk), None);
    let lk = go(&mut s, 0, INSIDE, &mut icmp_echo(CLIENT, SERVER, 7, true));
    assert_eq!(s.offload_candidate(&lk), None);
}

/// An offloaded UDP flow (default idle timeout 2 min) and its reference.
fn offloaded_udp(s: &mut Shard) -> OffloadRef {
    go(s, 0, INSIDE, &mut udp(CLIENT, 5000, SERVER, 53, true));
    let lk = go(s, 0, INSIDE, &mut udp(CLIENT, 5000, SERVER, 53, true));
    let r = s.offload_candidate(&lk).unwrap();
    s.offload_mark(r);
    r
}

#[test]
fn an_idle_offloaded_connection_is_retired_before_it_expires() {
    let cfg = config();
    let mut s = shard(&cfg);
    let r = offloaded_udp(&mut s);
    let late = 121 * SEC;
    // Its packets may have gone through the fast path: not deleted, asked about.
    s.expire(late, 4096, &mut NullSink);
    assert_eq!(s.counts().0, 1);
    let q = removals(&mut s);
    assert_eq!(q.len(), 1);
    assert!(q[0].retire);
    // The fast path forwarded one a second ago: it lives on, off the fast path.
    s.offload_retired(r.conn, r.gen, Some(late - SEC));
    s.expire(late, 4096, &mut NullSink);
    assert_eq!(s.counts().0, 1);
    assert_eq!(offloaded(&s), vec![false]);
    assert!(removals(&mut s).is_empty());
    // Two minutes later with nothing: it expires like any connection.
    s.expire(late + 121 * SEC, 4096, &mut NullSink);
    assert_eq!(s.counts().0, 0);
}

#[test]
fn a_retired_connection_the_fast_path_never_forwarded_expires_at_the_next_visit() {
    let cfg = config();
    let mut s = shard(&cfg);
    let r = offloaded_udp(&mut s);
    s.expire(121 * SEC, 4096, &mut NullSink);
    assert_eq!(removals(&mut s).len(), 1);
    s.offload_retired(r.conn, r.gen, None);
    s.expire(121 * SEC, 4096, &mut NullSink);
    assert_eq!(s.counts().0, 0);
}

#[test]
fn the_scans_last_seen_keeps_an_offloaded_connection_alive() {
    let cfg = config();
    let mut s = shard(&cfg);
    let r = offloaded_udp(&mut s);
    for t in 1..=10u64 {
        let now = t * 60 * SEC;
        assert!(s.offload_seen(r.conn, r.gen, true, now - SEC));
        s.expire(now, 4096, &mut NullSink);
    }
    assert_eq!(s.counts().0, 1);
    assert!(removals(&mut s).is_empty(), "never retired while active");
    assert!(
        !s.offload_seen(r.conn, r.gen, false, 0),
        "the return direction was never installed"
    );
    assert!(!s.offload_seen(r.conn, r.gen.wrapping_add(1), true, 0));
}

#[test]
fn a_refused_install_is_never_offered_again() {
    let cfg = config();
    let mut s = shard(&cfg);
    let r = offloaded_udp(&mut s);
    s.offload_refused(r);
    assert_eq!(offloaded(&s), vec![false]);
    let lk = go(&mut s, 0, INSIDE, &mut udp(CLIENT, 5000, SERVER, 53, true));
    assert_eq!(s.offload_candidate(&lk), None);
}

#[test]
fn an_overflowing_removal_queue_asks_for_a_whole_clear() {
    let cfg = config();
    let mut s = shard(&cfg);
    // Connections reset one after another, their removals never drained.
    for i in 0..offload::REMOVALS_MAX + 3 {
        let p = 10_000 + i as u16;
        // Past the PAT xlate's idle time, so the xlate table has room.
        let now = i as u64 * 31 * SEC;
        s.expire(now, 4096, &mut NullSink);
        let mut syn = tcp(CLIENT, p, SERVER, 443, SYN);
        go(&mut s, now, INSIDE, &mut syn);
        let (_, mport, _, _) = tuple(&syn);
        go(
            &mut s,
            now,
            OUTSIDE,
            &mut tcp(SERVER, 443, PAT_ADDR, mport, SYN | ACK),
        );
        let lk = go(&mut s, now, INSIDE, &mut tcp(CLIENT, p, SERVER, 443, ACK));
        s.offload_mark(s.offload_candidate(&lk).unwrap());
        go(&mut s, now, INSIDE, &mut tcp(CLIENT, p, SERVER, 443, RST));
        assert_eq!(
            s.offload_flush_needed(),
            i >= offload::REMOVALS_MAX,
            "at {i}"
        );
    }
    assert_eq!(removals(&mut s).len(), offload::REMOVALS_MAX);
}

#[test]
fn clearing_the_tables_asks_for_a_whole_clear_once() {
    let cfg = config();
    let mut s = shard(&cfg);
    offloaded_udp(&mut s);
    s.clear();
    assert!(s.offload_flush_needed());
    assert!(!s.offload_flush_needed(), "asked once");
    s.offload_forget_all();
    assert!(removals(&mut s).is_empty());
}
