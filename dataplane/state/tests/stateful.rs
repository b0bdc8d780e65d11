//! Behaviour of the stateful stage: connection tracking, policy, NAT, records, apply, bulk sync.

mod common;

use common::*;
use std::net::Ipv4Addr;
use tandem_state::records::*;
use tandem_state::*;

/// Opens a PAT'd TCP connection client → server through the full handshake; returns the mapped
/// port.
fn handshake(s: &mut Shard, now: u64, cport: u16, sink: &mut VecSink) -> u16 {
    let mut syn = tcp(CLIENT, cport, SERVER, 443, SYN);
    pass(s, now, INSIDE, &mut syn, lab_route, sink).unwrap();
    let (src, mport, dst, dport) = tuple(&syn);
    assert_eq!((src, dst, dport), (PAT_ADDR, SERVER, 443));
    let mut synack = tcp(SERVER, 443, PAT_ADDR, mport, SYN | ACK);
    pass(s, now, OUTSIDE, &mut synack, lab_route, sink).unwrap();
    let mut ack = tcp(CLIENT, cport, SERVER, 443, ACK);
    pass(s, now, INSIDE, &mut ack, lab_route, sink).unwrap();
    mport
}

#[test]
fn new_outbound_tcp_is_translated_by_pat_with_valid_checksums() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut syn = tcp(CLIENT, 40000, SERVER, 443, SYN);
    let lk = s.lookup(0, INSIDE, &syn);
    assert!(lk.is_new());
    assert_eq!(lk.route_dst(), SERVER);
    s.commit(0, lk, OUTSIDE, &mut syn, &mut NullSink).unwrap();
    let (src, sport, dst, dport) = tuple(&syn);
    assert_eq!((src, dst, dport), (PAT_ADDR, SERVER, 443));
    assert!(sport >= 1024);
    assert!(checksums_ok(&syn));
    assert_eq!(s.counts(), (1, 1, 0));
    assert_eq!(s.counters().conn_created, 1);
}

#[test]
fn return_traffic_of_pat_connection_is_untranslated() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mport = handshake(&mut s, 0, 40000, &mut VecSink::default());
    let mut data = tcp(SERVER, 443, PAT_ADDR, mport, ACK);
    let lk = s.lookup(1, OUTSIDE, &data);
    assert!(lk.is_existing());
    assert_eq!(lk.route_dst(), CLIENT);
    s.commit(1, lk, INSIDE, &mut data, &mut NullSink).unwrap();
    assert_eq!(tuple(&data), (SERVER, 443, CLIENT, 40000));
    assert!(checksums_ok(&data));
    let mut v = Vec::new();
    s.conns(1, |c| v.push((c.state, c.xlated_sport)));
    assert_eq!(v, vec![("ESTABLISHED", mport)]);
}

#[test]
fn mid_stream_tcp_segment_without_connection_is_dropped() {
    let cfg = config();
    let mut s = shard(&cfg);
    for flags in [ACK, ACK | FIN, SYN | ACK, RST] {
        let mut p = tcp(CLIENT, 40000, SERVER, 443, flags);
        assert_eq!(
            pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink),
            Err(DropReason::TcpNoConn)
        );
    }
    assert_eq!(s.counters().drop_tcp_no_conn, 4);
    assert_eq!(s.counts().0, 0);
}

#[test]
fn new_connection_from_lower_security_level_is_dropped() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut syn = tcp(SERVER, 5000, CLIENT, 22, SYN);
    assert_eq!(
        pass(&mut s, 0, OUTSIDE, &mut syn, lab_route, &mut NullSink),
        Err(DropReason::SecurityLevel)
    );
    assert_eq!(s.counters().drop_security_level, 1);
}

#[test]
fn equal_security_level_is_dropped_without_rule() {
    let mut cfg = config();
    cfg.interfaces[2].security_level = 100;
    let mut s = shard(&cfg);
    let mut p = udp(CLIENT, 1000, DMZ_REAL, 53, true);
    assert_eq!(
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink),
        Err(DropReason::SecurityLevel)
    );
}

#[test]
fn access_rule_permits_inbound_to_static_nat_host_and_reply_is_translated() {
    let mut cfg = config();
    cfg.access.push(AccessRule {
        interface: OUTSIDE,
        src: Prefix::ANY,
        dst: Prefix::new(DMZ_REAL, 32),
        proto: RuleProto::Tcp,
        dst_ports: (80, 80),
        action: Action::Permit,
    });
    let mut s = shard(&cfg);
    let mut syn = tcp(SERVER, 5000, DMZ_MAPPED, 80, SYN);
    let lk = s.lookup(0, OUTSIDE, &syn);
    assert_eq!(lk.route_dst(), DMZ_REAL, "static de-NAT before routing");
    s.commit(0, lk, DMZ, &mut syn, &mut NullSink).unwrap();
    assert_eq!(tuple(&syn), (SERVER, 5000, DMZ_REAL, 80));
    assert!(checksums_ok(&syn));
    let mut synack = tcp(DMZ_REAL, 80, SERVER, 5000, SYN | ACK);
    pass(&mut s, 0, DMZ, &mut synack, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&synack), (DMZ_MAPPED, 80, SERVER, 5000));
    assert!(checksums_ok(&synack));
    // Another port is not permitted.
    let mut other = tcp(SERVER, 5001, DMZ_MAPPED, 22, SYN);
    assert_eq!(
        pass(&mut s, 0, OUTSIDE, &mut other, lab_route, &mut NullSink),
        Err(DropReason::SecurityLevel)
    );
}

#[test]
fn deny_access_rule_drops_even_from_higher_level() {
    let mut cfg = config();
    cfg.access.push(AccessRule {
        interface: INSIDE,
        src: Prefix::ANY,
        dst: Prefix::ANY,
        proto: RuleProto::Udp,
        dst_ports: (53, 53),
        action: Action::Deny,
    });
    let mut s = shard(&cfg);
    let mut p = udp(CLIENT, 1000, SERVER, 53, true);
    assert_eq!(
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink),
        Err(DropReason::AccessRule)
    );
    assert_eq!(s.counters().drop_access_rule, 1);
    let mut p = udp(CLIENT, 1000, SERVER, 54, true);
    assert!(pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink).is_ok());
}

#[test]
fn pat_mapping_is_endpoint_independent_and_shared() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut a = udp(CLIENT, 1000, SERVER, 53, true);
    pass(&mut s, 0, INSIDE, &mut a, lab_route, &mut NullSink).unwrap();
    let mut b = udp(CLIENT, 1000, Ipv4Addr::new(198, 19, 0, 3), 53, true);
    pass(&mut s, 0, INSIDE, &mut b, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&a).1, tuple(&b).1);
    assert_eq!(s.counts(), (2, 1, 0));
    let mut x = Vec::new();
    s.xlates(0, |v| x.push(v.conns));
    assert_eq!(x, vec![2]);
}

#[test]
fn pat_ports_are_random_not_sequential() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut ports = Vec::new();
    for i in 0..50u16 {
        let mut p = udp(CLIENT, 2000 + i, SERVER, 53, true);
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
        ports.push(tuple(&p).1);
    }
    let sequential = ports
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert!(sequential < 3, "{ports:?}");
    let mut sorted = ports.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ports.len());
}

#[test]
fn pat_picks_ports_whose_return_traffic_steers_to_the_owning_shard() {
    let cfg = config();
    for shard_ix in 0..4u16 {
        let mut s = Shard::new(&cfg, shard_ix, 4, 99 + u64::from(shard_ix)).unwrap();
        for i in 0..100u16 {
            let mut p = udp(CLIENT, 3000 + i, SERVER, 53, true);
            pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
            let (_, mport, _, _) = tuple(&p);
            let reply = udp(SERVER, 53, PAT_ADDR, mport, true);
            assert_eq!(steer(&reply, 4), shard_ix);
        }
    }
}

#[test]
fn steer_is_symmetric_for_untranslated_flows() {
    let a = tcp(CLIENT, 1234, SERVER, 80, SYN);
    let b = tcp(SERVER, 80, CLIENT, 1234, SYN | ACK);
    for n in 1..9 {
        assert_eq!(steer(&a, n), steer(&b, n));
    }
    let req = icmp_echo(CLIENT, SERVER, 77, true);
    let rep = icmp_echo(SERVER, CLIENT, 77, false);
    assert_eq!(steer(&req, 7), steer(&rep, 7));
}

#[test]
fn udp_zero_checksum_stays_zero_after_nat() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut p = udp(CLIENT, 1000, SERVER, 53, false);
    pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
    assert_eq!(&p[26..28], &[0, 0]);
    assert_eq!(tuple(&p).0, PAT_ADDR);
    let mut q = udp(CLIENT, 1001, SERVER, 53, true);
    pass(&mut s, 0, INSIDE, &mut q, lab_route, &mut NullSink).unwrap();
    assert!(checksums_ok(&q));
}

#[test]
fn icmp_echo_is_tracked_and_pat_rewrites_identifier() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut req = icmp_echo(CLIENT, SERVER, 77, true);
    pass(&mut s, 0, INSIDE, &mut req, lab_route, &mut NullSink).unwrap();
    let (src, mid, _, _) = tuple(&req);
    assert_eq!(src, PAT_ADDR);
    assert!(checksums_ok(&req));
    let mut rep = icmp_echo(SERVER, PAT_ADDR, mid, false);
    pass(&mut s, 0, OUTSIDE, &mut rep, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&rep), (SERVER, 0, CLIENT, 77));
    assert!(checksums_ok(&rep));
    // An unsolicited reply opens nothing.
    let mut stray = icmp_echo(SERVER, PAT_ADDR, 9999, false);
    assert!(pass(&mut s, 0, OUTSIDE, &mut stray, lab_route, &mut NullSink).is_err());
}

#[test]
fn malformed_packet_is_dropped_and_counted() {
    let cfg = config();
    let mut s = shard(&cfg);
    let lk = s.lookup(0, INSIDE, &[0x45, 0, 0, 99]);
    assert_eq!(lk.drop_reason(), Some(DropReason::Malformed));
    assert_eq!(s.counters().drop_malformed, 1);
}

#[test]
fn full_connection_table_refuses_new_connections_and_keeps_live_ones() {
    let mut cfg = config();
    cfg.capacities.conns = 4;
    let mut s = shard(&cfg);
    for i in 0..4u16 {
        let mut p = udp(CLIENT, 1000 + i, SERVER, 53, true);
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
    }
    let mut p = udp(CLIENT, 2000, SERVER, 53, true);
    assert_eq!(
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink),
        Err(DropReason::ConnTableFull)
    );
    assert_eq!(s.counters().drop_conn_table_full, 1);
    assert_eq!(s.counts().0, 4);
    // The xlate taken for the refused connection is not leaked into use.
    let mut x = Vec::new();
    s.xlates(0, |v| x.push(v.conns));
    assert_eq!(x.iter().sum::<u32>(), 4);
}

#[test]
fn full_xlate_table_is_counted() {
    let mut cfg = config();
    cfg.capacities.xlates = 2;
    let mut s = shard(&cfg);
    for i in 0..2u16 {
        let mut p = udp(CLIENT, 1000 + i, SERVER, 53, true);
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
    }
    let mut p = udp(CLIENT, 3000, SERVER, 53, true);
    assert_eq!(
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink),
        Err(DropReason::XlateTableFull)
    );
    assert_eq!(s.counters().drop_xlate_table_full, 1);
}

#[test]
fn rst_removes_the_connection_after_forwarding_it() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut sink = VecSink::default();
    let mport = handshake(&mut s, 0, 40000, &mut sink);
    let mut rst = tcp(SERVER, 443, PAT_ADDR, mport, RST | ACK);
    pass(&mut s, 1, OUTSIDE, &mut rst, lab_route, &mut sink).unwrap();
    assert_eq!(tuple(&rst).2, CLIENT);
    assert_eq!(s.counts().0, 0);
    assert_eq!(sink.kinds().last(), Some(&(KIND_CONN, OP_DELETE)));
    let mut late = tcp(SERVER, 443, PAT_ADDR, mport, ACK);
    assert!(pass(&mut s, 1, OUTSIDE, &mut late, lab_route, &mut sink).is_err());
}

#[test]
fn fin_exchange_reaches_time_wait_and_expires_quickly() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mport = handshake(&mut s, 0, 40000, &mut VecSink::default());
    for (rx, pkt) in [
        (INSIDE, tcp(CLIENT, 40000, SERVER, 443, FIN | ACK)),
        (OUTSIDE, tcp(SERVER, 443, PAT_ADDR, mport, ACK)),
        (OUTSIDE, tcp(SERVER, 443, PAT_ADDR, mport, FIN | ACK)),
        (INSIDE, tcp(CLIENT, 40000, SERVER, 443, ACK)),
    ] {
        let mut p = pkt;
        pass(&mut s, 0, rx, &mut p, lab_route, &mut NullSink).unwrap();
    }
    let mut st = Vec::new();
    s.conns(0, |c| st.push(c.state));
    assert_eq!(st, vec!["TIME_WAIT"]);
    assert_eq!(s.expire(16 * SEC, 2048, &mut NullSink), 1);
    assert_eq!(s.counts().0, 0);
}

#[test]
fn idle_udp_connection_expires_and_its_xlate_after_pat_timeout() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut sink = VecSink::default();
    let mut p = udp(CLIENT, 1000, SERVER, 53, true);
    pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut sink).unwrap();
    assert_eq!(s.expire(119 * SEC, 4096, &mut sink), 0);
    assert_eq!(s.expire(120 * SEC, 4096, &mut sink), 1);
    assert_eq!(s.counts(), (0, 1, 0), "PAT xlate outlives its last conn");
    s.expire(150 * SEC, 4096, &mut sink);
    assert_eq!(s.counts(), (0, 0, 0));
    let kinds = sink.kinds();
    assert!(kinds.contains(&(KIND_CONN, OP_DELETE)));
    assert_eq!(kinds.last(), Some(&(KIND_XLATE, OP_DELETE)));
}

#[test]
fn sweep_work_is_bounded_by_budget() {
    let cfg = config();
    let mut s = shard(&cfg);
    for i in 0..100u16 {
        let mut p = udp(CLIENT, 1000 + i, SERVER, 53, true);
        pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
    }
    // 100 expired conns in slots 0..100; a budget of 10 slots expires at most 10.
    assert_eq!(s.expire(1000 * SEC, 10, &mut NullSink), 10);
    let mut total = 10;
    for _ in 0..200 {
        total += s.expire(1000 * SEC, 10, &mut NullSink);
    }
    assert_eq!(total, 100);
}

#[test]
fn live_connection_is_touched_for_the_standby_at_most_every_quarter_timeout() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut sink = VecSink::default();
    let mut p = udp(CLIENT, 1000, SERVER, 53, true);
    pass(&mut s, 0, INSIDE, &mut p, lab_route, &mut sink).unwrap();
    sink.0.clear();
    // Traffic at 10 s; sweep at 20 s: under timeout/4 (30 s) since the create record: no touch.
    let mut p = udp(CLIENT, 1000, SERVER, 53, true);
    pass(&mut s, 10 * SEC, INSIDE, &mut p, lab_route, &mut sink).unwrap();
    s.expire(20 * SEC, 4096, &mut sink);
    assert!(sink.0.is_empty(), "UDP packets themselves emit nothing");
    s.expire(31 * SEC, 4096, &mut sink);
    assert_eq!(sink.kinds(), vec![(KIND_CONN, OP_UPSERT)]);
    let r = ConnRecord::read_from_bytes(&sink.0[0].3[..]).unwrap();
    assert_eq!(r.idle_ms.get(), 21_000);
    // No traffic since the touch: no further touch.
    s.expire(100 * SEC, 4096, &mut sink);
    assert_eq!(sink.0.len(), 1);
}

use zerocopy::FromBytes;

#[test]
fn records_follow_the_replication_rules() {
    // TCP: create + state changes, not every packet.
    let cfg = config();
    let mut s = shard(&cfg);
    let mut sink = VecSink::default();
    let mport = handshake(&mut s, 0, 40000, &mut sink);
    assert_eq!(
        sink.kinds(),
        vec![
            (KIND_XLATE, OP_UPSERT),
            (KIND_CONN, OP_UPSERT),
            (KIND_CONN, OP_UPSERT),
            (KIND_CONN, OP_UPSERT)
        ]
    );
    sink.0.clear();
    for _ in 0..10 {
        let mut d = tcp(SERVER, 443, PAT_ADDR, mport, ACK);
        pass(&mut s, 1, OUTSIDE, &mut d, lab_route, &mut sink).unwrap();
    }
    assert!(sink.0.is_empty());

    // HTTP: not by default.
    let mut syn = tcp(CLIENT, 40001, SERVER, 80, SYN);
    pass(&mut s, 1, INSIDE, &mut syn, lab_route, &mut sink).unwrap();
    assert!(sink.0.is_empty());
    let mut v = Vec::new();
    s.conns(1, |c| v.push((c.dport, c.replicated)));
    v.sort();
    assert_eq!(v, vec![(80, false), (443, true)]);

    // HTTP with replicate_http.
    let mut cfg2 = config();
    cfg2.replicate_http = true;
    let mut s2 = shard(&cfg2);
    let mut syn = tcp(CLIENT, 40001, SERVER, 80, SYN);
    pass(&mut s2, 1, INSIDE, &mut syn, lab_route, &mut sink).unwrap();
    assert_eq!(
        sink.kinds(),
        vec![(KIND_XLATE, OP_UPSERT), (KIND_CONN, OP_UPSERT)]
    );
    sink.0.clear();

    // ICMP from inside (no ASR group): not replicated. From the DMZ (asr-group 1): replicated.
    let mut req = icmp_echo(CLIENT, SERVER, 5, true);
    pass(&mut s, 1, INSIDE, &mut req, lab_route, &mut sink).unwrap();
    assert!(sink.0.is_empty());
    let mut req = icmp_echo(Ipv4Addr::new(198, 18, 2, 20), SERVER, 5, true);
    pass(&mut s, 1, DMZ, &mut req, lab_route, &mut sink).unwrap();
    assert_eq!(
        sink.kinds(),
        vec![(KIND_XLATE, OP_UPSERT), (KIND_CONN, OP_UPSERT)]
    );
    sink.0.clear();

    // Other protocols: passed by policy, not tracked, nothing emitted.
    let mut gre = udp(CLIENT, 1, SERVER, 1, false);
    gre[9] = 47;
    let lk = s.lookup(1, INSIDE, &gre);
    assert!(!lk.is_new() && !lk.is_existing());
    s.commit(1, lk, OUTSIDE, &mut gre, &mut sink).unwrap();
    assert!(sink.0.is_empty());
    assert_eq!(s.counters().untracked_passed, 1);
}

#[test]
fn standby_applying_records_forwards_existing_flow_identically() {
    let cfg = config();
    let mut active = Shard::new(&cfg, 0, 1, 1).unwrap();
    let mut standby = Shard::new(&cfg, 0, 1, 2).unwrap();
    let mut sink = VecSink::default();
    let mport = handshake(&mut active, 5 * SEC, 40000, &mut sink);
    let mut u = udp(CLIENT, 5353, SERVER, 53, true);
    pass(&mut active, 5 * SEC, INSIDE, &mut u, lab_route, &mut sink).unwrap();
    let udp_mport = tuple(&u).1;
    // The standby's clock is unrelated: ages are relative.
    sink.apply_to(&mut standby, 1000 * SEC);
    assert_eq!(standby.counts(), (2, 2, 0));
    assert_eq!(
        conn_views(&active, 5 * SEC),
        conn_views(&standby, 1000 * SEC)
    );
    assert_eq!(
        xlate_views(&active, 5 * SEC),
        xlate_views(&standby, 1000 * SEC)
    );

    // Failover: the standby forwards the server's next segment with the same translation...
    let mut data = tcp(SERVER, 443, PAT_ADDR, mport, ACK);
    pass(
        &mut standby,
        1001 * SEC,
        OUTSIDE,
        &mut data,
        lab_route,
        &mut NullSink,
    )
    .unwrap();
    assert_eq!(tuple(&data), (SERVER, 443, CLIENT, 40000));
    assert!(checksums_ok(&data));
    // ...and the client's, translated to the same mapped port.
    let mut out = tcp(CLIENT, 40000, SERVER, 443, ACK);
    pass(
        &mut standby,
        1001 * SEC,
        INSIDE,
        &mut out,
        lab_route,
        &mut NullSink,
    )
    .unwrap();
    assert_eq!(tuple(&out), (PAT_ADDR, mport, SERVER, 443));
    let mut r = udp(SERVER, 53, PAT_ADDR, udp_mport, true);
    pass(
        &mut standby,
        1001 * SEC,
        OUTSIDE,
        &mut r,
        lab_route,
        &mut NullSink,
    )
    .unwrap();
    assert_eq!(tuple(&r), (SERVER, 53, CLIENT, 5353));

    // A connection the active never had is still refused mid-stream on the new active.
    let mut stray = tcp(SERVER, 443, PAT_ADDR, mport.wrapping_add(1), ACK);
    assert!(pass(
        &mut standby,
        1001 * SEC,
        OUTSIDE,
        &mut stray,
        lab_route,
        &mut NullSink
    )
    .is_err());
}

#[test]
fn deletes_replicate() {
    let cfg = config();
    let mut active = Shard::new(&cfg, 0, 1, 1).unwrap();
    let mut standby = Shard::new(&cfg, 0, 1, 2).unwrap();
    let mut sink = VecSink::default();
    let mport = handshake(&mut active, 0, 40000, &mut sink);
    let mut rst = tcp(CLIENT, 40000, SERVER, 443, RST);
    pass(&mut active, 0, INSIDE, &mut rst, lab_route, &mut sink).unwrap();
    active.expire(100 * SEC, 4096, &mut sink);
    sink.apply_to(&mut standby, 0);
    assert_eq!(standby.counts(), (0, 0, 0));
    let _ = mport;
}

#[test]
fn bulk_sync_copies_ten_thousand_connections_identically() {
    let mut cfg = config();
    cfg.capacities.conns = 16_384;
    cfg.capacities.xlates = 16_384;
    let mut active = Shard::new(&cfg, 0, 1, 7).unwrap();
    let mut standby = Shard::new(&cfg, 0, 1, 8).unwrap();
    for i in 0..10_000u32 {
        let c = Ipv4Addr::from(u32::from(CLIENT) & 0xffff_ff00 | (2 + i % 200));
        let mut p = if i % 2 == 0 {
            udp(c, 1024 + (i / 200) as u16, SERVER, 53, true)
        } else {
            tcp(c, 1024 + (i / 200) as u16, SERVER, 443, SYN)
        };
        pass(&mut active, SEC, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
    }
    assert_eq!(active.counts().0, 10_000);
    let mut cur = BulkCursor::default();
    let mut sink = VecSink::default();
    let mut calls = 0;
    loop {
        let pr = active.bulk(&mut cur, 2 * SEC, &mut sink, 256);
        calls += 1;
        assert!(pr.done <= pr.total);
        if pr.finished {
            assert_eq!(pr.done, pr.total);
            break;
        }
        assert!(calls < 1000);
    }
    // Xlates come before the conns that use them.
    let first_conn = sink.0.iter().position(|r| r.0 == KIND_CONN).unwrap();
    assert!(sink.0[first_conn..].iter().all(|r| r.0 != KIND_XLATE));
    sink.apply_to(&mut standby, 50 * SEC);
    assert_eq!(standby.counts(), active.counts());
    assert_eq!(conn_views(&active, 2 * SEC), conn_views(&standby, 50 * SEC));
    assert_eq!(
        xlate_views(&active, 2 * SEC),
        xlate_views(&standby, 50 * SEC)
    );
}

#[test]
fn arp_records_are_not_the_shards() {
    let cfg = config();
    let mut s = shard(&cfg);
    assert_eq!(
        s.apply(0, KIND_ARP, OP_UPSERT, &[0; 16]),
        Err(ApplyError::NotMine)
    );
    assert!(ArpRecord::parse(&[0; 16]).is_ok());
    assert!(ArpRecord::parse(&[0; 15]).is_err());
}

#[test]
fn apply_rejects_bad_records_with_reasons() {
    let cfg = config();
    let mut s = shard(&cfg);
    assert_eq!(
        s.apply(0, 99, OP_UPSERT, &[]),
        Err(ApplyError::UnknownKind(99))
    );
    assert!(matches!(
        s.apply(0, KIND_CONN, 7, &[0; 40]),
        Err(ApplyError::UnknownOp { .. })
    ));
    assert!(matches!(
        s.apply(0, KIND_CONN, OP_UPSERT, &[0; 39]),
        Err(ApplyError::Length { .. })
    ));
    assert!(matches!(
        s.apply(0, KIND_CONN, OP_UPSERT, &[0; 40]),
        Err(ApplyError::Invalid { .. })
    ));
    assert_eq!(s.counters().records_rejected, 4);
}

fn sa(spi: u32, dir: SaDirection) -> SaEntry {
    SaEntry {
        spi,
        direction: dir,
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
        replay_window: if dir == SaDirection::Inbound { 64 } else { 0 },
        replay_top: 0,
        replay_bitmap: 0,
        life_secs: Some(3600),
        life_bytes: None,
    }
}

#[test]
fn sa_table_validates_replicates_and_steps_sequence_numbers() {
    let cfg = config();
    let mut active = shard(&cfg);
    let mut standby = Shard::new(&cfg, 0, 1, 5).unwrap();
    let mut sink = VecSink::default();
    let mut bad = sa(0x1000, SaDirection::Outbound);
    bad.enc_key_len = 16;
    assert!(matches!(
        active.sa_add(0, bad, &mut sink),
        Err(SaError::KeyLength { .. })
    ));
    let mut bad = sa(0x1000, SaDirection::Outbound);
    bad.integrity = Integrity::HmacSha256_128;
    bad.auth_key_len = 32;
    assert!(matches!(
        active.sa_add(0, bad, &mut sink),
        Err(SaError::Algorithms { .. })
    ));
    assert!(sink.0.is_empty());

    active
        .sa_add(0, sa(0x1000, SaDirection::Outbound), &mut sink)
        .unwrap();
    active
        .sa_add(0, sa(0x2000, SaDirection::Inbound), &mut sink)
        .unwrap();
    for seq in 2..=(SA_SEQ_STEP + 1) {
        active.sa_advance(0, 0x1000, SaDirection::Outbound, seq, &mut sink);
    }
    assert_eq!(sink.0.len(), 3, "one record per SA_SEQ_STEP packets");
    sink.apply_to(&mut standby, 0);
    assert_eq!(standby.counts().2, 2);
    let out = standby.sa_get(0x1000, SaDirection::Outbound).unwrap();
    assert!(
        out.seq > SA_SEQ_STEP + 1,
        "standby never reuses a sequence number"
    );
    assert_eq!(out.enc_key, [7; 32]);
    assert!(active.sa_remove(0x2000, SaDirection::Inbound, &mut sink));
    sink.apply_to(&mut standby, 0);
    assert_eq!(standby.counts().2, 1);
    let mut n = 0;
    standby.sa_iter(0, |v| {
        assert_eq!(v.life_secs_remaining, Some(3600));
        n += 1
    });
    assert_eq!(n, 1);
}

#[test]
fn memory_per_connection_including_xlate_is_at_most_256_bytes() {
    let mut cfg = config();
    cfg.capacities.conns = 1 << 16;
    cfg.capacities.xlates = 1 << 16;
    let s = shard(&cfg);
    let per_conn = s.conn_memory_bytes() / (1 << 16);
    println!("bytes per connection incl. xlate and index slots: {per_conn}");
    assert!(per_conn <= 256, "{per_conn}");
    // Worst case for a capacity just above a power of two (index rounding).
    cfg.capacities.conns = (1 << 16) + 1;
    cfg.capacities.xlates = (1 << 16) + 1;
    let s = shard(&cfg);
    assert!(s.conn_memory_bytes() / ((1 << 16) + 1) <= 256);
    assert!(s.memory_bytes() > s.conn_memory_bytes());
}

#[test]
fn config_errors_name_the_key() {
    let mut cfg = config();
    cfg.interfaces[1].security_level = 101;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(
        e.contains("interface[1] (inside)") && e.contains("security_level"),
        "{e}"
    );
    let mut cfg = config();
    cfg.nat.push(NatRule::DynamicPat {
        real_if: 9,
        real: Prefix::ANY,
        mapped_if: 0,
        mapped: PAT_ADDR,
    });
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("nat[3].real_if = 9"), "{e}");
    let mut cfg = config();
    cfg.capacities.conns = 0;
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("capacities.conns"));
    let mut cfg = config();
    cfg.interfaces[0].asr_group = Some(33);
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("asr_group"));
}

#[test]
fn stale_lookup_across_a_batch_is_handled() {
    // Two SYNs of the same new flow looked up before either commits (one batch).
    let cfg = config();
    let mut s = shard(&cfg);
    let mut a = tcp(CLIENT, 40000, SERVER, 443, SYN);
    let mut b = tcp(CLIENT, 40000, SERVER, 443, SYN);
    let la = s.lookup(0, INSIDE, &a);
    let lb = s.lookup(0, INSIDE, &b);
    s.commit(0, la, OUTSIDE, &mut a, &mut NullSink).unwrap();
    s.commit(0, lb, OUTSIDE, &mut b, &mut NullSink).unwrap();
    assert_eq!(tuple(&a), tuple(&b));
    assert_eq!(s.counts().0, 1);
    // RST closes, then a data segment looked up before the RST committed is dropped.
    let mut rst = tcp(CLIENT, 40000, SERVER, 443, RST);
    let mut late = tcp(CLIENT, 40000, SERVER, 443, ACK);
    let lr = s.lookup(0, INSIDE, &rst);
    let ll = s.lookup(0, INSIDE, &late);
    s.commit(0, lr, OUTSIDE, &mut rst, &mut NullSink).unwrap();
    assert_eq!(
        s.commit(0, ll, OUTSIDE, &mut late, &mut NullSink),
        Err(DropReason::TcpNoConn)
    );
}

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

/// The mapped port a shard gives the next datagram of `CLIENT:cport → SERVER:53`.
fn udp_mapped_port(s: &mut Shard, now: u64, cport: u16) -> u16 {
    let mut p = udp(CLIENT, cport, SERVER, 53, true);
    pass(s, now, INSIDE, &mut p, lab_route, &mut NullSink).unwrap();
    let (src, port, _, _) = tuple(&p);
    assert_eq!(src, PAT_ADDR);
    port
}

/// Regression (lab `pat_connections_survive_sigkill_and_failover_back_and_forth`): a restarted
/// unit forwarded a few datagrams of a live UDP flow while it briefly believed itself active,
/// allocating its own PAT port for the flow's real endpoint. The real active's xlate and
/// connection records for that endpoint were then refused ("real endpoint already mapped to
/// another port", "conflicts with the xlate of its real endpoint"), so the standby lost the UDP
/// connection for good and every later failover changed the flow's translation. The active's
/// mapping must win.
#[test]
fn standby_that_forwarded_a_udp_flow_itself_takes_the_actives_pat_mapping() {
    let cfg = config();
    // B: the active, with the flow since long ago (live records).
    let mut b = Shard::new(&cfg, 0, 1, 11).unwrap();
    let mut live = VecSink::default();
    let mut p = udp(CLIENT, 37653, SERVER, 53, true);
    pass(&mut b, SEC, INSIDE, &mut p, lab_route, &mut live).unwrap();
    let pb = tuple(&p).1;
    // A: restarted, forwards one datagram of the same flow with its own random port.
    let mut a = Shard::new(&cfg, 0, 1, 12).unwrap();
    let pa = udp_mapped_port(&mut a, 2 * SEC, 37653);
    assert_ne!(
        pa, pb,
        "the test needs the two units to pick different ports"
    );
    // A becomes standby: B's live records (the xlate first) and then its bulk sync apply without
    // a refusal (`apply_to` unwraps).
    live.apply_to(&mut a, 2 * SEC);
    bulk_all(&b, 3 * SEC).apply_to(&mut a, 3 * SEC);
    assert_eq!(a.counters().records_rejected, 0);
    assert_eq!(a.counts(), b.counts());
    assert_eq!(conn_views(&a, 3 * SEC), conn_views(&b, 3 * SEC));
    assert_eq!(xlate_views(&a, 3 * SEC), xlate_views(&b, 3 * SEC));
    // Failover to A: the flow keeps B's translation, and its return traffic is de-NATed.
    assert_eq!(udp_mapped_port(&mut a, 4 * SEC, 37653), pb);
    let mut r = udp(SERVER, 53, PAT_ADDR, pb, true);
    pass(&mut a, 4 * SEC, OUTSIDE, &mut r, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&r), (SERVER, 53, CLIENT, 37653));
    // A third unit bulk-synced from A translates identically too.
    let mut c = Shard::new(&cfg, 0, 1, 13).unwrap();
    bulk_all(&a, 5 * SEC).apply_to(&mut c, 5 * SEC);
    assert_eq!(c.counters().records_rejected, 0);
    assert_eq!(udp_mapped_port(&mut c, 6 * SEC, 37653), pb);
    assert_eq!(udp_mapped_port(&mut b, 6 * SEC, 37653), pb);
}

/// The active's xlate record for a mapped endpoint this unit gave to another real endpoint (a lost
/// delete, or this unit's own forwarding) replaces it, with the connections that used it.
#[test]
fn replicated_xlate_takes_a_mapped_port_this_unit_used_for_another_endpoint() {
    let cfg = config();
    let mut a = Shard::new(&cfg, 0, 1, 21).unwrap();
    let port = udp_mapped_port(&mut a, SEC, 1111);
    assert_eq!(a.counts(), (1, 1, 0));
    let rec = XlateRecord {
        proto: 17,
        kind: XLATE_PAT,
        _pad: [0; 2],
        real: CLIENT.octets(),
        mapped: PAT_ADDR.octets(),
        real_port: 2222.into(),
        mapped_port: port.into(),
    };
    a.apply(
        2 * SEC,
        KIND_XLATE,
        OP_UPSERT,
        zerocopy::IntoBytes::as_bytes(&rec),
    )
    .unwrap();
    assert_eq!(a.counts(), (0, 1, 0));
    let mut x = Vec::new();
    a.xlates(2 * SEC, |v| x.push((v.real_port, v.mapped_port)));
    assert_eq!(x, vec![(2222, port)]);
    // The new owner's flow uses the replicated port.
    assert_eq!(udp_mapped_port(&mut a, 3 * SEC, 2222), port);
}

/// Steering with several workers: a static translation changes the tuple
/// between the two directions, so `Shard::owner` hashes the real side; both
/// directions of a statically translated flow (outbound, inbound, static
/// PAT) have one owner, and unrelated traffic steers as `steer` does.
#[test]
fn both_directions_of_a_static_nat_flow_have_one_owner() {
    const SHARDS: u16 = 8;
    const FORWARD: u16 = 8080;
    let mut cfg = config();
    cfg.nat.push(NatRule::Static {
        real_if: DMZ,
        real: Ipv4Addr::new(198, 18, 2, 20),
        mapped_if: OUTSIDE,
        mapped: PAT_ADDR,
        port: Some((Proto::Tcp, FORWARD, 443)),
    });
    let s = Shard::new(&cfg, 0, SHARDS, 7).unwrap();
    let mut plain_disagrees = 0;
    for p in 1024..1536u16 {
        let pairs = [
            // Outbound from the static host, and its return to the mapped address.
            (
                tcp(DMZ_REAL, p, SERVER, 443, SYN),
                tcp(SERVER, 443, DMZ_MAPPED, p, SYN | ACK),
            ),
            // Inbound to the mapped address, and the real host's reply.
            (
                tcp(SERVER, p, DMZ_MAPPED, 80, SYN),
                tcp(DMZ_REAL, 80, SERVER, p, SYN | ACK),
            ),
            // Static PAT (a port forward on the interface address).
            (
                tcp(SERVER, p, PAT_ADDR, 443, SYN),
                tcp(Ipv4Addr::new(198, 18, 2, 20), FORWARD, SERVER, p, SYN | ACK),
            ),
        ];
        for (there, back) in &pairs {
            assert_eq!(s.owner(there), s.owner(back), "port {p}");
            if steer(there, SHARDS) != steer(back, SHARDS) {
                plain_disagrees += 1;
            }
        }
        // Dynamic PAT's return traffic to another port of the same address
        // is not a static mapping: it steers as `steer` does (the PAT port
        // choice already made it land on its owner).
        let pat_return = tcp(SERVER, 443, PAT_ADDR, p, ACK);
        assert_eq!(s.owner(&pat_return), steer(&pat_return, SHARDS));
    }
    assert!(
        plain_disagrees > 0,
        "the unmapped hash would split these flows, so the test means something"
    );
}
