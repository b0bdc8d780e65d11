//! The data path's side of failover (issue 3) on the in-memory backend and
//! simulated time: run-time address/MAC ownership (ARP, echo, gratuitous
//! ARP, frames to a given-up MAC), the standby's not-forwarding role,
//! punting failover frames, injecting management frames, and the
//! per-interface receive counters of the interface tests. Output frames are
//! checked with etherparse, an independent parser.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use etherparse::ArpOperation;
use proptest::prelude::*;
use tandem_dataplane::{
    BatchLoop, Forwarder, InjectedFrame, Ownership, PortCounters, Role, Timestamp, PUNT_BYTES,
};
use tandem_io::mem::MemBackend;
use tandem_io::Backend;

/// The one ARP reply on `port` (or none), as (Ethernet source, sender MAC, sender IP).
fn arp_answer(r: &mut Rig, port: usize) -> Option<([u8; 6], [u8; 6], [u8; 4])> {
    let sent = r.tx(port);
    assert!(sent.len() <= 1, "at most one reply: {sent:?}");
    sent.first().map(|f| {
        let (eth, a) = parse_arp(f);
        assert_eq!(a.operation, ArpOperation::REPLY);
        let sha: [u8; 6] = a.sender_hw_addr().try_into().unwrap();
        let spa: [u8; 4] = a.sender_protocol_addr().try_into().unwrap();
        (eth.source, sha, spa)
    })
}

fn set(r: &mut Rig, own: &Ownership, role: Role, announce: bool) {
    r.fwd
        .set_ownership(r.now, own, role, announce)
        .expect("valid ownership");
}

#[test]
fn set_ownership_switches_arp_replies_from_standby_to_active() {
    let mut r = Rig::standard();
    // (ownership, role, port, sender, target, expected reply MAC), in order:
    // the unit is standby, then takes over.
    type Case = (
        fn() -> Ownership,
        Role,
        usize,
        [u8; 6],
        Ipv4Addr,
        Ipv4Addr,
        Option<[u8; 6]>,
    );
    let (sb, act) = (Role::NotForwarding, Role::Forwarding);
    let cases: [Case; 8] = [
        (standby, sb, 0, C_MAC, C_IP, SB_OUT_IP, Some(SB_OUT_MAC)),
        (standby, sb, 1, S_MAC, S_IP, SB_IN_IP, Some(SB_IN_MAC)),
        (standby, sb, 0, C_MAC, C_IP, OUT_IP, None),
        (standby, sb, 1, S_MAC, S_IP, IN_IP, None),
        (active_virtual, act, 0, C_MAC, C_IP, OUT_IP, Some(V_OUT_MAC)),
        (active_virtual, act, 1, S_MAC, S_IP, IN_IP, Some(V_IN_MAC)),
        (active_virtual, act, 0, C_MAC, C_IP, SB_OUT_IP, None),
        (active_virtual, act, 1, S_MAC, S_IP, SB_IN_IP, None),
    ];
    for (own, role, port, sha, spa, tpa, want) in cases {
        set(&mut r, &own(), role, false);
        r.rx(port, &[arp_request(sha, spa, tpa)]);
        let got = arp_answer(&mut r, port);
        assert!(r.tx(1 - port).is_empty());
        match want {
            Some(mac) => assert_eq!(got, Some((mac, mac, tpa.octets())), "{tpa}"),
            None => assert_eq!(got, None, "{tpa} is not owned now"),
        }
    }
    r.assert_no_leaks();
}

#[test]
fn a_unit_never_answers_arp_for_an_address_it_does_not_own() {
    // Every ownership state × every address on the outside segment: an
    // answer exactly when the address is the one owned there now.
    type State = (&'static str, fn() -> Ownership, Option<Ipv4Addr>);
    let states: [State; 4] = [
        ("active (virtual MACs)", active_virtual, Some(OUT_IP)),
        ("active (primary's MACs)", active_config, Some(OUT_IP)),
        ("standby", standby, Some(SB_OUT_IP)),
        ("owning nothing", owning_nothing, None),
    ];
    let targets = [
        OUT_IP,
        SB_OUT_IP,
        IN_IP,
        SB_IN_IP,
        Ipv4Addr::new(198, 18, 0, 99),
    ];
    for (name, own, owned) in states {
        for role in [Role::Forwarding, Role::NotForwarding] {
            for tpa in targets {
                let mut r = Rig::standard();
                set(&mut r, &own(), role, false);
                r.rx(0, &[arp_request(C_MAC, C_IP, tpa)]);
                let got = arp_answer(&mut r, 0);
                let mac = own().interfaces[0].mac;
                if Some(tpa) == owned {
                    assert_eq!(got, Some((mac, mac, tpa.octets())), "{name}: {tpa}");
                } else {
                    assert_eq!(got, None, "{name} ({role:?}) answered for {tpa}");
                    assert_eq!(r.counters().rx_arp_not_owned, 1);
                }
                r.assert_no_leaks();
            }
        }
    }
}

#[test]
fn standby_drops_transit_traffic_but_answers_arp_and_echo_for_its_standby_address() {
    let mut r = Rig::standard();
    // The server is resolved before the unit turns standby.
    r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
    r.tx(1);
    set(&mut r, &standby(), Role::NotForwarding, false);

    // Transit to the standby MAC: dropped by name, no ICMP error either
    // (TTL 1 would otherwise be answered with time exceeded; an unknown
    // destination with net unreachable).
    let transit = [
        udp(C_MAC, SB_OUT_MAC, C_IP, S_IP, 64, b"through"),
        udp(C_MAC, SB_OUT_MAC, C_IP, S_IP, 1, b"ttl 1"),
        udp(
            C_MAC,
            SB_OUT_MAC,
            C_IP,
            Ipv4Addr::new(198, 18, 77, 1),
            64,
            b"?",
        ),
        // The active address is not this unit's now: transit as well.
        echo_request(C_MAC, SB_OUT_MAC, C_IP, OUT_IP),
    ];
    r.rx(0, &transit);
    assert!(r.tx(1).is_empty(), "a standby passes no traffic");
    assert!(r.tx(0).is_empty(), "and sends no ICMP errors about it");
    let c = r.counters();
    assert_eq!((c.drop_not_active, c.forwarded, c.tx_icmp_error), (4, 0, 0));

    // Reachable on its standby addresses (seeds 004: the standby IP is for
    // network tests and management).
    r.rx(0, &[echo_request(C_MAC, SB_OUT_MAC, C_IP, SB_OUT_IP)]);
    let back = r.tx(0);
    assert_eq!(back.len(), 1);
    let (eth, ip, body) = parse_ipv4(&back[0]);
    assert_eq!((eth.source, eth.destination), (SB_OUT_MAC, C_MAC));
    assert_eq!(
        (ip.source, ip.destination),
        (SB_OUT_IP.octets(), C_IP.octets())
    );
    assert_eq!(parse_icmp(&body).0, 0, "echo reply");
    r.rx(0, &[arp_request(C_MAC, C_IP, SB_OUT_IP)]);
    assert_eq!(
        arp_answer(&mut r, 0),
        Some((SB_OUT_MAC, SB_OUT_MAC, SB_OUT_IP.octets()))
    );

    // Taking over makes it forward again, from the active MACs.
    set(&mut r, &active_virtual(), Role::Forwarding, false);
    r.rx(0, &[udp(C_MAC, V_OUT_MAC, C_IP, S_IP, 64, b"through")]);
    let out = r.tx(1);
    assert_eq!(out.len(), 1);
    let (eth, _, _) = parse_ipv4(&out[0]);
    assert_eq!((eth.source, eth.destination), (V_IN_MAC, S_MAC));
    r.assert_no_leaks();
}

#[test]
fn frames_held_for_arp_are_dropped_if_the_unit_stops_forwarding_meanwhile() {
    let mut r = Rig::standard();
    r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"held")]);
    assert_eq!(r.tx(1).len(), 1, "ARP request");
    assert_eq!(r.fwd.held_frames(), 1);
    set(&mut r, &standby(), Role::NotForwarding, false);
    r.rx(1, &[arp_reply(S_MAC, S_IP, SB_IN_MAC, SB_IN_IP)]);
    assert!(r.tx(1).is_empty());
    assert_eq!(r.counters().drop_not_active, 1);
    assert_eq!(r.fwd.held_frames(), 0);

    // Held for a next hop that never answers: no host unreachable from a standby.
    set(&mut r, &active_config(), Role::Forwarding, false);
    r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, GW_WIDE, 64, b"held")]);
    assert_eq!(r.fwd.held_frames(), 1);
    set(&mut r, &standby(), Role::NotForwarding, false);
    for t in 1..=3 {
        r.at(secs(f64::from(t)));
    }
    assert_eq!(r.fwd.held_frames(), 0);
    assert!(r.tx(0).is_empty(), "no ICMP error");
    let c = r.counters();
    assert_eq!(
        (c.drop_not_active, c.drop_arp_unresolved, c.tx_icmp_error),
        (2, 0, 0)
    );
    r.assert_no_leaks();
}

#[test]
fn announce_sends_the_garp_burst_with_the_new_mac_for_every_owned_address() {
    // (ownership, announcements expected per burst: (port, MAC, address))
    type Case = (fn() -> Ownership, Vec<(usize, [u8; 6], Ipv4Addr)>);
    let inside_unnumbered = || {
        let mut o = standby();
        o.interfaces[1].addr = None;
        o
    };
    let cases: Vec<Case> = vec![
        (
            active_virtual,
            vec![(0, V_OUT_MAC, OUT_IP), (1, V_IN_MAC, IN_IP)],
        ),
        (
            standby,
            vec![(0, SB_OUT_MAC, SB_OUT_IP), (1, SB_IN_MAC, SB_IN_IP)],
        ),
        (inside_unnumbered, vec![(0, SB_OUT_MAC, SB_OUT_IP)]),
        (owning_nothing, vec![]),
    ];
    for (own, want) in cases {
        let mut r = Rig::standard();
        r.now = secs(10.0);
        set(&mut r, &own(), Role::Forwarding, true);
        let mut seen = Vec::new();
        for t in [10.0, 10.5, 11.0, 11.5, 12.0, 13.0, 14.0] {
            r.at(secs(t));
            for port in 0..2 {
                for f in r.tx(port) {
                    let (eth, a) = parse_arp(&f);
                    assert_eq!(eth.destination, [0xff; 6]);
                    assert_eq!(a.operation, ArpOperation::REQUEST);
                    assert_eq!(
                        a.sender_hw_addr(),
                        eth.source,
                        "new MAC in the ARP body too"
                    );
                    assert_eq!(a.sender_protocol_addr(), a.target_protocol_addr());
                    let ip: [u8; 4] = a.sender_protocol_addr().try_into().unwrap();
                    seen.push((t, port, eth.source, Ipv4Addr::from(ip)));
                }
            }
        }
        // garp_count 3, garp_interval 1 s (common::config).
        let expected: Vec<_> = [10.0, 11.0, 12.0]
            .into_iter()
            .flat_map(|t| want.iter().map(move |&(p, m, ip)| (t, p, m, ip)))
            .collect();
        assert_eq!(seen, expected);
        r.assert_no_leaks();
    }
}

#[test]
fn a_change_without_announce_stops_a_burst_in_progress() {
    let mut r = Rig::standard();
    set(&mut r, &active_virtual(), Role::Forwarding, true);
    r.at(secs(0.0));
    assert_eq!(r.tx(0).len() + r.tx(1).len(), 2, "first announcement");
    set(&mut r, &standby(), Role::NotForwarding, false);
    for t in [1.0, 2.0, 3.0] {
        r.at(secs(t));
        assert!(r.tx(0).is_empty() && r.tx(1).is_empty(), "{t}");
    }
    assert_eq!(r.fwd.poll_timeout(), None);
    r.assert_no_leaks();
}

#[test]
fn frames_to_the_old_mac_after_the_switch_are_dropped_as_not_owned() {
    let mut r = Rig::standard();
    r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
    r.tx(1);
    set(&mut r, &active_virtual(), Role::Forwarding, true);
    r.tx(0);
    r.tx(1);
    // (destination MAC, frame kind, counter that must move)
    let cases: [([u8; 6], bool, &str); 5] = [
        (OUT_MAC, false, "rx_not_owned"),
        (OUT_MAC, true, "rx_not_owned"),
        ([0x02, 9, 9, 9, 9, 9], false, "drop_other_mac"),
        ([0x02, 9, 9, 9, 9, 9], true, "drop_other_mac"),
        (V_OUT_MAC, false, "forwarded"),
    ];
    for (dst, is_arp, counter) in cases {
        let before = r.counters();
        let f = if is_arp {
            common::arp(dst, ArpOperation::REQUEST, C_MAC, C_IP, [0; 6], OUT_IP)
        } else {
            udp(C_MAC, dst, C_IP, S_IP, 64, b"x")
        };
        r.rx(0, &[f]);
        let after = r.counters();
        let moved: Vec<_> = after
            .fields()
            .zip(before.fields())
            .filter(|((n, a), (_, b))| a != b && !["rx", "batches", "tx"].contains(n))
            .map(|((n, _), _)| n)
            .collect();
        assert_eq!(moved, [counter], "to {dst:?}, arp {is_arp}");
        let out = r.tx(1);
        if counter == "forwarded" {
            assert_eq!(parse_ipv4(&out[0]).0.source, V_IN_MAC);
        } else {
            assert!(out.is_empty());
            assert!(r.tx(0).is_empty());
        }
    }
    // Switching back makes the old MAC ours again and retires the virtual one.
    set(&mut r, &active_config(), Role::Forwarding, false);
    r.rx(0, &[udp(C_MAC, V_OUT_MAC, C_IP, S_IP, 64, b"y")]);
    r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"z")]);
    assert_eq!(r.tx(1).len(), 1);
    assert_eq!(r.counters().rx_not_owned, 3);
    r.assert_no_leaks();
}

#[test]
fn invalid_ownership_is_refused_whole() {
    let mut r = Rig::standard();
    let mut bad = standby();
    bad.interfaces[1].addr = Some(Ipv4Addr::new(198, 18, 0, 5));
    let e = r
        .fwd
        .set_ownership(r.now, &bad, Role::NotForwarding, true)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("interface inside: 198.18.0.5 is not on its connected subnet"),
        "{e}"
    );
    // Nothing changed: not even the valid outside half, nor the role.
    assert_eq!(r.fwd.ownership(0).unwrap().addr, Some(OUT_IP));
    assert_eq!(r.fwd.role(), Role::Forwarding);
    assert_eq!(r.fwd.poll_timeout(), None, "no burst started");
}

#[test]
fn failover_frames_are_punted_with_interface_time_and_bytes() {
    let mut r = Rig::standard();
    set(&mut r, &active_virtual(), Role::Forwarding, false);
    r.now = secs(3.5);
    // (port, destination MAC, punted?)
    let cases = [
        (0, V_OUT_MAC, true),
        (1, V_IN_MAC, true),
        (0, [0xff; 6], true),
        (1, [0x01, 0x00, 0x5e, 0, 0, 1], true),
        // The MAC given up: the mate may not have heard of the change yet.
        (0, OUT_MAC, true),
        (0, [0x02, 9, 9, 9, 9, 9], false),
    ];
    for (i, (port, dst, punted)) in cases.into_iter().enumerate() {
        let payload = [i as u8; 40];
        let f = tandem_frame(SB_OUT_MAC, dst, &payload);
        r.rx(port, std::slice::from_ref(&f));
        match r.punted.try_recv() {
            Ok(p) => {
                assert!(punted, "case {i} must not be punted");
                assert_eq!((p.interface, p.worker, p.at), (port, 0, secs(3.5)));
                assert_eq!(p.frame(), &f[..]);
                assert!(!p.truncated());
            }
            Err(_) => assert!(!punted, "case {i} not punted"),
        }
    }
    let c = r.counters();
    assert_eq!((c.rx_punted, c.drop_other_mac, c.drop_punt_full), (5, 1, 0));
    assert!(r.tx(0).is_empty() && r.tx(1).is_empty());
    r.assert_no_leaks();
}

#[test]
fn punt_overflow_is_counted_and_long_frames_are_truncated() {
    let mut r = Rig::standard();
    let frames: Vec<_> = (0..RIG_PUNT_QUEUE + 3)
        .map(|i| tandem_frame(C_MAC, OUT_MAC, &[i as u8; 100]))
        .collect();
    r.rx(0, &frames);
    let c = r.counters();
    assert_eq!((c.rx_punted, c.drop_punt_full), (RIG_PUNT_QUEUE as u64, 3));
    for f in &frames[..RIG_PUNT_QUEUE] {
        assert_eq!(r.punted.try_recv().unwrap().frame(), &f[..], "in order");
    }
    // A jumbo frame keeps its first PUNT_BYTES and says it was cut.
    let jumbo = tandem_frame(C_MAC, OUT_MAC, &[7; 1900]);
    r.rx(0, std::slice::from_ref(&jumbo));
    let p = r.punted.try_recv().unwrap();
    assert!(p.truncated());
    assert_eq!(p.wire_len as usize, jumbo.len());
    assert_eq!(p.frame(), &jumbo[..PUNT_BYTES]);
    // A VLAN-tagged one is foreign like any tagged frame.
    let mut tagged = tandem_frame(C_MAC, OUT_MAC, &[0; 50]);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    r.rx(0, &[tagged]);
    assert_eq!(r.counters().drop_ethertype, 1);
    r.assert_no_leaks();
}

#[test]
fn injected_frames_go_out_on_their_port_padded_in_the_next_iteration() {
    let cfg = config();
    let mut bl = BatchLoop::new(Forwarder::new(&cfg).unwrap(), &cfg.run);
    let (tx, rx) = crossbeam_channel::bounded(8);
    bl.set_inject_queue(rx);
    let mut b = MemBackend::new(2, 64, 2048, 64);
    let hello = tandem_frame(IN_MAC, [0xff; 6], b"interface hello");
    let probe = arp_request(OUT_MAC, OUT_IP, C_IP);
    tx.send(InjectedFrame::new(1, &hello).unwrap()).unwrap();
    tx.send(InjectedFrame::new(0, &probe).unwrap()).unwrap();
    assert!(bl.inject_pending());
    bl.poll_once(Timestamp::ZERO, &mut b);
    assert!(!bl.inject_pending());
    let mut on = [Vec::new(), Vec::new()];
    for (port, v) in on.iter_mut().enumerate() {
        b.drain_tx(port, |f| v.push(f.to_vec()));
    }
    assert_eq!(on[1].len(), 1);
    assert_eq!(on[1][0].len(), 60, "padded to the Ethernet minimum");
    assert_eq!(&on[1][0][..hello.len()], &hello[..]);
    assert!(on[1][0][hello.len()..].iter().all(|&b| b == 0));
    assert_eq!(on[0].len(), 1);
    assert_eq!(on[0][0].len(), 60);
    assert_eq!(&on[0][0][..probe.len()], &probe[..]);
    let c = bl.counters(&b);
    assert_eq!((c.tx_injected, c.tx), (2, 2));
    assert_eq!(b.free_frames(), 64);

    // Too big for the interface's MTU (576 + header + tag): not sent, counted.
    let mut cfg = config();
    cfg.interfaces[0].mtu = 576;
    let mut bl = BatchLoop::new(Forwarder::new(&cfg).unwrap(), &cfg.run);
    let (tx, rx) = crossbeam_channel::bounded(8);
    bl.set_inject_queue(rx);
    let big = tandem_frame(OUT_MAC, C_MAC, &[0; 600]);
    tx.send(InjectedFrame::new(0, &big).unwrap()).unwrap();
    bl.poll_once(Timestamp::ZERO, &mut b);
    assert_eq!(b.drain_tx(0, |_| {}), 0);
    assert_eq!(bl.counters(&b).tx_alloc_failed, 1);
    assert_eq!(b.free_frames(), 64);

    for (len, ok) in [
        (13, false),
        (14, true),
        (PUNT_BYTES, true),
        (PUNT_BYTES + 1, false),
    ] {
        assert_eq!(InjectedFrame::new(0, &vec![0; len]).is_ok(), ok, "{len}");
    }
}

#[test]
fn per_interface_receive_counters_count_every_frame() {
    let mut r = Rig::standard();
    r.rx(
        0,
        &[
            udp(C_MAC, [0x02, 9, 9, 9, 9, 9], C_IP, S_IP, 64, b"not for us"),
            arp_request(C_MAC, C_IP, Ipv4Addr::new(198, 18, 0, 99)),
            common::arp(
                [0x02, 9, 9, 9, 9, 9],
                ArpOperation::REPLY,
                C_MAC,
                C_IP,
                [0x02, 9, 9, 9, 9, 9],
                Ipv4Addr::new(198, 18, 0, 98),
            ),
            tandem_frame(C_MAC, OUT_MAC, b"hello"),
            vec![0; 5],
        ],
    );
    r.rx(1, &[arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)]);
    assert_eq!(
        r.fwd.port_counters(),
        [
            PortCounters {
                rx: 5,
                rx_arp: 2,
                rx_arp_reply: 0,
            },
            PortCounters {
                rx: 1,
                rx_arp: 1,
                rx_arp_reply: 1,
            },
        ]
    );
    r.assert_no_leaks();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Ownership and role changes interleaved with arbitrary traffic (and
    /// frames held for ARP across them) never panic and never leak a frame.
    #[test]
    fn ownership_changes_amid_traffic_never_leak(
        steps in proptest::collection::vec((0usize..4, any::<bool>(), any::<bool>(), 0usize..8, 0usize..2), 1..40)
    ) {
        let states = [active_virtual, active_config, standby, owning_nothing];
        let macs = [OUT_MAC, V_OUT_MAC, SB_OUT_MAC, [0xff; 6]];
        let mut r = Rig::standard();
        for (i, (state, forwarding, announce, kind, port)) in steps.into_iter().enumerate() {
            r.now = r.now + Duration::from_millis(300);
            r.at(r.now);
            if i % 3 == 0 {
                let role = if forwarding { Role::Forwarding } else { Role::NotForwarding };
                set(&mut r, &states[state](), role, announce);
            }
            let dst = macs[kind % 4];
            let f = match kind {
                0 | 1 => udp(C_MAC, dst, C_IP, S_IP, 64, b"t"),
                2 => echo_request(C_MAC, dst, C_IP, SB_OUT_IP),
                3 => arp_request(C_MAC, C_IP, OUT_IP),
                4 => arp_reply(S_MAC, S_IP, dst, IN_IP),
                5 => tandem_frame(C_MAC, dst, b"hello"),
                _ => udp(C_MAC, dst, C_IP, Ipv4Addr::new(198, 19, 1, 1), 2, b"g"),
            };
            r.rx(port, &[f]);
            while r.punted.try_recv().is_ok() {}
            r.tx(0);
            r.tx(1);
        }
        r.assert_no_leaks();
    }
}

#[test]
fn a_header_only_failover_frame_is_punted_whole() {
    // The forwarder punts straight from the backend's frame: a frame is never
    // read past its valid length.
    let mut r = Rig::standard();
    let f = tandem_frame(C_MAC, OUT_MAC, &[]);
    r.rx(0, std::slice::from_ref(&f));
    let p = r.punted.try_recv().unwrap();
    assert_eq!((p.len, p.wire_len), (14, 14));
    assert!(r.b.frame_size() >= PUNT_BYTES);
    r.assert_no_leaks();
}

#[test]
fn arp_test_probes_the_most_recent_then_the_next_arp_entry() {
    let mut r = Rig::standard();
    let gw = Ipv4Addr::new(198, 18, 1, 254);
    r.now = secs(1.0);
    r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
    r.now = secs(2.0);
    r.rx(1, &[arp_request([0x02, 0x55, 0, 0, 0, 0x21], gw, IN_IP)]);
    r.tx(1);
    set(&mut r, &standby(), Role::NotForwarding, false);
    // (recent, target expected)
    for (recent, want) in [(0, Some(gw)), (1, Some(S_IP)), (2, None)] {
        let sent = r.fwd.send_arp_probe(&mut r.b, &mut r.out, 1, recent);
        assert_eq!(sent, want.is_some());
        let out = r.tx(1);
        match want {
            Some(ip) => {
                assert_eq!(out.len(), 1);
                let (eth, a) = parse_arp(&out[0]);
                assert_eq!(eth.destination, [0xff; 6]);
                assert_eq!(eth.source, SB_IN_MAC);
                assert_eq!(a.operation, ArpOperation::REQUEST);
                assert_eq!(
                    a.sender_protocol_addr(),
                    SB_IN_IP.octets(),
                    "from the owned address"
                );
                assert_eq!(a.target_protocol_addr(), ip.octets());
            }
            None => assert!(out.is_empty()),
        }
    }
    assert!(
        !r.fwd.send_arp_probe(&mut r.b, &mut r.out, 0, 0),
        "no entry on outside"
    );
    let c = r.counters();
    assert_eq!((c.tx_arp_request, c.tx_test_skipped), (2, 2));
    r.assert_no_leaks();
}

#[test]
fn broadcast_ping_test_pings_the_subnet_broadcast_from_the_owned_address() {
    let mut r = Rig::standard();
    set(&mut r, &standby(), Role::NotForwarding, false);
    assert!(r.fwd.send_broadcast_ping(&mut r.b, &mut r.out, 0, 7));
    let out = r.tx(0);
    assert_eq!(out.len(), 1);
    let (eth, ip, body) = parse_ipv4(&out[0]);
    assert_eq!((eth.source, eth.destination), (SB_OUT_MAC, [0xff; 6]));
    assert_eq!(
        (ip.source, ip.destination),
        (SB_OUT_IP.octets(), [198, 18, 0, 255])
    );
    let (typ, code, rest, data) = parse_icmp(&body);
    assert_eq!((typ, code), (8, 0), "echo request");
    assert_eq!(rest, [0x74, 0x64, 0, 7], "identifier \"td\", sequence 7");
    assert_eq!(data, b"tandem interface test");
    // A reply to it is traffic for us: consumed, counted on the interface.
    let reply = {
        let b = etherparse::PacketBuilder::ethernet2(C_MAC, SB_OUT_MAC)
            .ipv4(C_IP.octets(), SB_OUT_IP.octets(), 64)
            .icmpv4_echo_reply(0x7464, 7);
        let mut v = Vec::new();
        b.write(&mut v, b"tandem interface test").unwrap();
        v
    };
    let before = r.fwd.port_counters()[0].rx;
    r.rx(0, &[reply]);
    assert_eq!(r.fwd.port_counters()[0].rx, before + 1);
    assert_eq!(r.counters().rx_for_us, 1);
    // Without an owned address there is nothing to ping from.
    set(&mut r, &owning_nothing(), Role::NotForwarding, false);
    assert!(!r.fwd.send_broadcast_ping(&mut r.b, &mut r.out, 0, 8));
    assert!(r.tx(0).is_empty());
    let c = r.counters();
    assert_eq!((c.tx_broadcast_ping, c.tx_test_skipped), (1, 1));
    r.assert_no_leaks();
}
