//! The routed forwarder over the in-memory backend on simulated time:
//! ARP responder and resolver, forwarding, ICMP, gratuitous ARP, robustness.
//! Output frames are checked with etherparse, an independent parser.

mod common;

use std::net::Ipv4Addr;

use common::*;
use etherparse::{ArpOperation, UdpHeader};
use proptest::prelude::*;
use tandem_dataplane::ArpState;

#[test]
fn arp_requests_answered_only_for_the_receiving_interfaces_address() {
    // (port, sender MAC, sender IP, target IP, expected reply MAC)
    let cases = [
        (0, C_MAC, C_IP, OUT_IP, Some(OUT_MAC)),
        (1, S_MAC, S_IP, IN_IP, Some(IN_MAC)),
        (0, C_MAC, C_IP, Ipv4Addr::new(198, 18, 0, 99), None),
        // The inside address asked on the outside: not answered (arp_ignore=1).
        (0, C_MAC, C_IP, IN_IP, None),
        // An RFC 5227 probe (sender 0.0.0.0) for our address is answered.
        (0, C_MAC, Ipv4Addr::UNSPECIFIED, OUT_IP, Some(OUT_MAC)),
    ];
    for (port, sha, spa, tpa, want) in cases {
        let mut r = Rig::standard();
        r.rx(port, &[arp_request(sha, spa, tpa)]);
        let sent = r.tx(port);
        let other = r.tx(1 - port);
        assert!(other.is_empty());
        match want {
            Some(mac) => {
                assert_eq!(sent.len(), 1, "{tpa}");
                let (eth, a) = parse_arp(&sent[0]);
                assert_eq!(eth.destination, sha);
                assert_eq!(eth.source, mac);
                assert_eq!(a.operation, ArpOperation::REPLY);
                assert_eq!(a.sender_hw_addr(), mac);
                assert_eq!(a.sender_protocol_addr(), tpa.octets());
                assert_eq!(a.target_hw_addr(), sha);
                assert_eq!(a.target_protocol_addr(), spa.octets());
                assert_eq!(r.counters().tx_arp_reply, 1);
            }
            None => {
                assert!(sent.is_empty(), "{tpa}: no reply expected");
                assert_eq!(r.counters().rx_arp_not_owned, 1);
            }
        }
        r.assert_no_leaks();
    }
}

#[test]
fn arp_request_for_us_teaches_the_sender() {
    let mut r = Rig::standard();
    r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
    assert_eq!(r.fwd.arp_state(r.now, 1, S_IP), Some(ArpState::Reachable));
    // A request for someone else does not create an entry.
    r.rx(
        0,
        &[arp_request(C_MAC, C_IP, Ipv4Addr::new(198, 18, 0, 77))],
    );
    assert_eq!(r.fwd.arp_state(r.now, 0, C_IP), None);
    r.assert_no_leaks();
}

#[test]
fn forwards_to_a_resolved_neighbour_rewriting_macs_and_ttl() {
    let mut r = Rig::standard();
    r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
    r.tx(1);
    let frames: Vec<_> = (0..5u8)
        .map(|i| udp(C_MAC, OUT_MAC, C_IP, S_IP, 64 - i, &[i; 18]))
        .collect();
    r.rx(0, &frames);
    let out = r.tx(1);
    assert_eq!(out.len(), 5);
    for (i, f) in out.iter().enumerate() {
        let (eth, ip, body) = parse_ipv4(f);
        assert_eq!(eth.destination, S_MAC);
        assert_eq!(eth.source, IN_MAC);
        assert_eq!(ip.time_to_live, 63 - i as u8);
        assert_eq!(ip.source, C_IP.octets());
        assert_eq!(ip.destination, S_IP.octets());
        let (udp, payload) = UdpHeader::from_slice(&body).unwrap();
        assert_eq!(payload, &[i as u8; 18]);
        assert_eq!(
            udp.calc_checksum_ipv4(&ip, payload).unwrap(),
            udp.checksum,
            "UDP checksum untouched and valid"
        );
    }
    let c = r.counters();
    assert_eq!((c.forwarded, c.tx, c.rx), (5, 6, 6));
    r.assert_no_leaks();
}

#[test]
fn unresolved_next_hop_is_asked_and_frames_held_until_the_reply() {
    let mut r = Rig::standard();
    let frames: Vec<_> = (0..3u8)
        .map(|i| udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[i; 4]))
        .collect();
    r.rx(0, &frames);
    let asked = r.tx(1);
    assert_eq!(asked.len(), 1, "one request, frames held");
    let (eth, a) = parse_arp(&asked[0]);
    assert_eq!(eth.destination, [0xff; 6]);
    assert_eq!(eth.source, IN_MAC);
    assert_eq!(a.operation, ArpOperation::REQUEST);
    assert_eq!(a.sender_hw_addr(), IN_MAC);
    assert_eq!(a.sender_protocol_addr(), IN_IP.octets());
    assert_eq!(a.target_protocol_addr(), S_IP.octets());
    assert_eq!(r.fwd.held_frames(), 3);
    assert_eq!(r.fwd.arp_state(r.now, 1, S_IP), Some(ArpState::Incomplete));

    r.now = secs(0.2);
    r.rx(1, &[arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)]);
    let out = r.tx(1);
    assert_eq!(out.len(), 3);
    for (i, f) in out.iter().enumerate() {
        let (eth, ip, body) = parse_ipv4(f);
        assert_eq!((eth.destination, eth.source), (S_MAC, IN_MAC));
        assert_eq!(ip.time_to_live, 63);
        assert_eq!(&body[8..], &[i as u8; 4], "released in arrival order");
    }
    assert_eq!(r.fwd.held_frames(), 0);
    assert_eq!(r.fwd.arp_state(r.now, 1, S_IP), Some(ArpState::Reachable));
    // No retry after resolution.
    r.at(secs(5.0));
    assert!(r.tx(1).is_empty());
    assert_eq!(r.counters().tx_arp_request, 1);
    r.assert_no_leaks();
}

#[test]
fn pending_queue_caps_per_hop_and_in_total_are_counted() {
    let mut cfg = config();
    cfg.tables.arp_pending = 5;
    cfg.tables.arp_pending_per_hop = 3;
    let mut r = Rig::new(&cfg);
    let to = |dst| udp(C_MAC, OUT_MAC, C_IP, dst, 64, b"x");
    // 4 frames to S: 3 held, 1 over the per-hop cap.
    r.rx(0, &vec![to(S_IP); 4]);
    assert_eq!(r.counters().drop_arp_pending_full, 1);
    // 4 frames via the gateway (another next hop): 2 fit the total cap.
    r.rx(0, &vec![to(Ipv4Addr::new(198, 19, 9, 9)); 4]);
    assert_eq!(r.fwd.held_frames(), 5);
    assert_eq!(r.counters().drop_arp_pending_full, 3);
    assert_eq!(r.tx(1).len(), 2, "one ARP request per next hop");
    r.assert_no_leaks();
}

#[test]
fn unresolved_after_max_retries_frees_frames_and_reports_host_unreachable() {
    let mut r = Rig::standard();
    let sent = udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"lost");
    r.rx(0, &[sent.clone(), sent.clone()]);
    // Requests at 0 s (with the frames), 1 s and 2 s; give up at 3 s.
    let mut requests = vec![(0.0, r.tx(1).len())];
    for t in [0.5, 1.0, 1.5, 2.0, 2.5] {
        r.at(secs(t));
        requests.push((t, r.tx(1).len()));
    }
    assert_eq!(
        requests,
        [(0.0, 1), (0.5, 0), (1.0, 1), (1.5, 0), (2.0, 1), (2.5, 0)]
    );
    assert_eq!(r.fwd.held_frames(), 2);
    assert!(r.tx(0).is_empty());
    r.at(secs(3.0));
    assert_eq!(r.fwd.held_frames(), 0);
    assert_eq!(r.fwd.arp_state(r.now, 1, S_IP), None);
    let c = r.counters();
    assert_eq!(c.drop_arp_unresolved, 2);
    let errors = r.tx(0);
    assert_eq!(errors.len(), 2);
    let (eth, ip, body) = parse_ipv4(&errors[0]);
    assert_eq!((eth.destination, eth.source), (C_MAC, OUT_MAC));
    assert_eq!(
        (ip.source, ip.destination),
        (OUT_IP.octets(), C_IP.octets())
    );
    let (typ, code, _, quote) = parse_icmp(&body);
    assert_eq!((typ, code), (3, 1), "host unreachable");
    // The quote is the datagram as received (TTL restored to 64).
    assert_eq!(quote, sent[14..]);
    r.assert_no_leaks();
}

#[test]
fn ttl_expiring_sends_time_exceeded_quoting_the_datagram() {
    for ttl in [0, 1] {
        let mut r = Rig::standard();
        let sent = udp(C_MAC, OUT_MAC, C_IP, S_IP, ttl, &[7; 40]);
        r.rx(0, std::slice::from_ref(&sent));
        assert!(r.tx(1).is_empty());
        let back = r.tx(0);
        assert_eq!(back.len(), 1);
        let (eth, ip, body) = parse_ipv4(&back[0]);
        assert_eq!((eth.destination, eth.source), (C_MAC, OUT_MAC));
        assert_eq!(
            (ip.source, ip.destination),
            (OUT_IP.octets(), C_IP.octets())
        );
        assert_eq!(ip.protocol, etherparse::IpNumber::ICMP);
        let (typ, code, _, quote) = parse_icmp(&body);
        assert_eq!((typ, code), (11, 0));
        assert_eq!(
            quote,
            sent[14..],
            "whole datagram quoted (fits in 576 bytes)"
        );
        assert_eq!(r.counters().drop_ttl_expired, 1);
        assert_eq!(r.counters().tx_icmp_error, 1);
        r.assert_no_leaks();
    }
}

#[test]
fn no_route_is_counted_and_answered_with_net_unreachable() {
    let mut r = Rig::standard();
    r.rx(
        0,
        &[udp(
            C_MAC,
            OUT_MAC,
            C_IP,
            Ipv4Addr::new(198, 18, 200, 1),
            64,
            b"?",
        )],
    );
    assert!(r.tx(1).is_empty());
    let back = r.tx(0);
    let (_, _, body) = parse_ipv4(&back[0]);
    assert_eq!(parse_icmp(&body).0, 3);
    assert_eq!(parse_icmp(&body).1, 0);
    assert_eq!(r.counters().drop_no_route, 1);
    r.assert_no_leaks();
}

#[test]
fn longest_prefix_selects_the_next_hop() {
    // (destination, next hop the unit must ARP for)
    let cases = [
        (Ipv4Addr::new(198, 19, 5, 7), GW_NARROW),
        (Ipv4Addr::new(198, 19, 6, 7), GW_WIDE),
        (Ipv4Addr::new(198, 19, 255, 1), GW_WIDE),
        (S_IP, S_IP),
    ];
    for (dst, hop) in cases {
        let mut r = Rig::standard();
        r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, dst, 64, b"lpm")]);
        let asked = r.tx(1);
        assert_eq!(asked.len(), 1, "{dst}");
        assert_eq!(
            parse_arp(&asked[0]).1.target_protocol_addr(),
            hop.octets(),
            "{dst}"
        );
        r.assert_no_leaks();
    }
    let routes = Rig::standard().fwd.routes();
    assert_eq!(routes.len(), 4, "2 connected + 2 static");
}

#[test]
fn echo_requests_to_owned_addresses_are_answered_in_place() {
    for dst in [OUT_IP, IN_IP] {
        let mut r = Rig::standard();
        r.rx(0, &[echo_request(C_MAC, OUT_MAC, C_IP, dst)]);
        let back = r.tx(0);
        assert_eq!(back.len(), 1);
        let (eth, ip, body) = parse_ipv4(&back[0]);
        assert_eq!((eth.destination, eth.source), (C_MAC, OUT_MAC));
        assert_eq!((ip.source, ip.destination), (dst.octets(), C_IP.octets()));
        let (typ, code, rest, payload) = parse_icmp(&body);
        assert_eq!((typ, code), (0, 0));
        assert_eq!(rest, [0x12, 0x34, 0, 7], "identifier and sequence kept");
        assert_eq!(payload, b"ping payload");
        r.assert_no_leaks();
    }
    // Other traffic to us is consumed and counted.
    let mut r = Rig::standard();
    r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, OUT_IP, 64, b"x")]);
    assert!(r.tx(0).is_empty());
    assert_eq!(r.counters().rx_for_us, 1);
    r.assert_no_leaks();
}

#[test]
fn mtu_exceeded_drops_and_answers_frag_needed_when_df_is_set() {
    let mut cfg = config();
    cfg.interfaces[1].mtu = 576;
    for df in [true, false] {
        let mut r = Rig::new(&cfg);
        r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
        r.tx(1);
        let mut big = udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[0; 600]);
        if !df {
            // Clear DF (etherparse sets it) and fix the header checksum.
            big[20] &= !0x40;
            big[24..26].copy_from_slice(&[0, 0]);
            let c = !etherparse_sum(&big[14..34]);
            big[24..26].copy_from_slice(&c.to_be_bytes());
        }
        r.rx(0, &[big]);
        assert!(r.tx(1).is_empty());
        assert_eq!(r.counters().drop_mtu, 1);
        let back = r.tx(0);
        if df {
            let (_, _, body) = parse_ipv4(&back[0]);
            let (typ, code, rest, _) = parse_icmp(&body);
            assert_eq!((typ, code), (3, 4));
            assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 576, "next-hop MTU");
        } else {
            assert!(back.is_empty());
        }
        r.assert_no_leaks();
    }
}

fn etherparse_sum(b: &[u8]) -> u16 {
    let mut acc: u32 = b
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[test]
fn martians_wrong_macs_and_other_ethertypes_are_dropped_by_name() {
    let mut r = Rig::standard();
    let bcast = Ipv4Addr::new(198, 18, 1, 255);
    r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, bcast, 64, b"b")]);
    r.rx(
        0,
        &[udp(
            C_MAC,
            OUT_MAC,
            Ipv4Addr::new(127, 0, 0, 1),
            S_IP,
            64,
            b"b",
        )],
    );
    r.rx(
        0,
        &[udp(C_MAC, OUT_MAC, OUT_IP, S_IP, 64, b"spoofed own source")],
    );
    r.rx(
        0,
        &[udp(C_MAC, [0x02, 9, 9, 9, 9, 9], C_IP, S_IP, 64, b"m")],
    );
    let mut v6 = udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"6");
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    r.rx(0, &[v6]);
    let mut bad_csum = udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"c");
    bad_csum[24] ^= 0xff;
    r.rx(0, &[bad_csum]);
    let c = r.counters();
    assert_eq!(
        (
            c.drop_martian,
            c.drop_other_mac,
            c.drop_ethertype,
            c.drop_malformed
        ),
        (3, 1, 1, 1)
    );
    assert!(r.tx(0).is_empty() && r.tx(1).is_empty());
    r.assert_no_leaks();
}

#[test]
fn gratuitous_arp_burst_goes_out_at_the_right_times() {
    let mut r = Rig::standard();
    r.fwd.start_gratuitous_arp(secs(10.0));
    assert_eq!(r.fwd.poll_timeout(), Some(secs(10.0)));
    let mut seen = Vec::new();
    for t in [9.9, 10.0, 10.5, 10.999, 11.0, 11.5, 12.0, 13.0, 14.0] {
        r.at(secs(t));
        for port in 0..2 {
            for f in r.tx(port) {
                let (eth, a) = parse_arp(&f);
                let (mac, ip) = if port == 0 {
                    (OUT_MAC, OUT_IP)
                } else {
                    (IN_MAC, IN_IP)
                };
                assert_eq!(eth.destination, [0xff; 6]);
                assert_eq!(eth.source, mac);
                assert_eq!(a.operation, ArpOperation::REQUEST);
                assert_eq!(a.sender_hw_addr(), mac);
                assert_eq!(a.sender_protocol_addr(), ip.octets());
                assert_eq!(
                    a.target_protocol_addr(),
                    ip.octets(),
                    "RFC 5227 announcement"
                );
                assert_eq!(a.target_hw_addr(), [0; 6]);
                seen.push((t, port));
            }
        }
    }
    assert_eq!(
        seen,
        [
            (10.0, 0),
            (10.0, 1),
            (11.0, 0),
            (11.0, 1),
            (12.0, 0),
            (12.0, 1)
        ]
    );
    assert_eq!(r.counters().tx_garp, 6);
    assert_eq!(r.fwd.poll_timeout(), None);
    r.assert_no_leaks();
}

#[test]
fn tx_ring_full_frees_and_counts() {
    let mut r = Rig::standard();
    r.b = tandem_io::mem::MemBackend::new(2, FRAMES, 2048, 2);
    r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
    r.tx(1);
    let frames: Vec<_> = (0..5)
        .map(|_| udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"r"))
        .collect();
    r.rx(0, &frames);
    assert_eq!(r.tx(1).len(), 2);
    assert_eq!(r.counters().drop_tx_ring_full, 3);
    r.assert_no_leaks();
}

/// A valid frame of each kind the forwarder handles, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"seed"),
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 1, b"seed"),
        echo_request(C_MAC, OUT_MAC, C_IP, OUT_IP),
        arp_request(C_MAC, C_IP, OUT_IP),
        arp_reply(S_MAC, S_IP, IN_MAC, IN_IP),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never panic and never leak a frame.
    #[test]
    fn arbitrary_bytes_never_panic(frames in proptest::collection::vec(
        (0usize..2, proptest::collection::vec(any::<u8>(), 0..120)), 1..16)) {
        let mut r = Rig::standard();
        for (port, bytes) in &frames {
            r.rx(*port, std::slice::from_ref(bytes));
        }
        r.assert_no_leaks();
    }

    /// Valid frames with a few bytes changed reach the deeper checks.
    #[test]
    fn mutated_valid_frames_never_panic(
        picks in proptest::collection::vec((0usize..5, 0usize..2,
            proptest::collection::vec((any::<u16>(), any::<u8>()), 1..4), 0usize..80), 1..12)) {
        let seeds = seeds();
        let mut r = Rig::standard();
        r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
        for (which, port, edits, cut) in picks {
            let mut f = seeds[which].clone();
            for (at, v) in edits {
                let at = usize::from(at) % f.len();
                f[at] = v;
            }
            let keep = f.len().saturating_sub(cut % 8 * (cut / 8 % 2));
            f.truncate(keep);
            r.rx(port, &[f]);
        }
        r.assert_no_leaks();
    }
}

#[test]
fn stale_neighbour_is_still_used_and_probed_unicast() {
    let mut r = Rig::standard();
    r.rx(1, &[arp_request(S_MAC, S_IP, IN_IP)]);
    r.tx(1);
    r.now = secs(31.0);
    assert_eq!(r.fwd.arp_state(r.now, 1, S_IP), Some(ArpState::Stale));
    r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"stale")]);
    let out = r.tx(1);
    assert_eq!(out.len(), 2, "the datagram and one probe");
    assert_eq!(parse_ipv4(&out[0]).0.destination, S_MAC);
    let (eth, a) = parse_arp(&out[1]);
    assert_eq!(eth.destination, S_MAC, "probe is unicast to the cached MAC");
    assert_eq!(a.target_protocol_addr(), S_IP.octets());
    // The answer makes it reachable again.
    r.rx(1, &[arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)]);
    assert_eq!(r.fwd.arp_state(r.now, 1, S_IP), Some(ArpState::Reachable));
    r.assert_no_leaks();
}

#[test]
fn full_arp_table_refuses_new_next_hops_and_counts() {
    let mut cfg = config();
    cfg.tables.arp = 1;
    let mut r = Rig::new(&cfg);
    r.rx(0, &[udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"a")]);
    r.rx(
        0,
        &[udp(
            C_MAC,
            OUT_MAC,
            C_IP,
            Ipv4Addr::new(198, 19, 1, 1),
            64,
            b"b",
        )],
    );
    let c = r.counters();
    assert_eq!((c.arp_table_full, c.drop_arp_table_full), (1, 1));
    assert_eq!(r.fwd.held_frames(), 1);
    r.assert_no_leaks();
}
