//! ICMP errors as related traffic: found through the embedded packet, allowed only for an
//! existing connection, translated back (outer header, embedded header and ports, every
//! checksum), never creating or refreshing a connection, steered like the connection.

mod common;

use common::*;
use std::net::Ipv4Addr;
use tandem_state::*;

/// A router beyond the outside interface.
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 254);

/// RFC 1071 reference sum, written out here so the checks do not rely on the checksum code under
/// test: 16-bit big-endian words, odd byte padded, end-around carry.
fn rfc1071(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for w in data.chunks(2) {
        let v = if w.len() == 2 {
            u32::from(w[0]) << 8 | u32::from(w[1])
        } else {
            u32::from(w[0]) << 8
        };
        acc += v;
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    acc as u16
}

fn ok(data: &[u8]) -> bool {
    rfc1071(data) == 0xffff
}

fn hl(ip: &[u8]) -> usize {
    usize::from(ip[0] & 0x0f) * 4
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// An ICMP error `src → dst` of `ty`/`code`, second header word `rest` (next-hop MTU, pointer),
/// quoting `quote` (the offending datagram, possibly truncated), with valid checksums.
fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    quote: &[u8],
) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + quote.len()];
    let total = b.len() as u16;
    b[0] = 0x45;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[8] = 64;
    b[9] = 1;
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&dst.octets());
    let c = !rfc1071(&b[..20]);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    b[20] = ty;
    b[21] = code;
    b[24..28].copy_from_slice(&rest);
    b[28..].copy_from_slice(quote);
    let c = !rfc1071(&b[20..]);
    b[22..24].copy_from_slice(&c.to_be_bytes());
    b
}

/// Every checksum an ICMP error carries that must be valid after translation: outer IPv4 header,
/// ICMP message (embedded bytes included), embedded IPv4 header.
fn error_checksums_ok(e: &[u8]) -> bool {
    let h = hl(e);
    let inner = &e[h + 8..];
    ok(&e[..h]) && ok(&e[h..]) && ok(&inner[..hl(inner)])
}

/// The embedded datagram of an ICMP error.
fn embedded(e: &[u8]) -> &[u8] {
    &e[hl(e) + 8..]
}

/// A full TCP or UDP datagram verifies against its own addresses (pseudo-header).
fn l4_checksum_ok(ip: &[u8]) -> bool {
    let h = hl(ip);
    let l4 = &ip[h..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(l4);
    ok(&pseudo)
}

/// An inside host whose address differs from the PAT address by a non-zero ones' complement
/// amount (CLIENT and PAT_ADDR happen to sum alike, which would hide a missed checksum update).
const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 77);

/// One UDP datagram HOST → server through PAT; returns (what the host sent, what went out).
fn pat_udp(s: &mut Shard, now: u64, cport: u16) -> (Vec<u8>, Vec<u8>) {
    let sent = udp(HOST, cport, SERVER, 53, true);
    let mut out = sent.clone();
    pass(s, now, INSIDE, &mut out, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&out).0, PAT_ADDR);
    (sent, out)
}

/// Runs an error through both phases, checking the route and that nothing was recorded.
fn pass_error(s: &mut Shard, now: u64, rx: u16, e: &mut [u8]) -> Result<Ipv4Addr, DropReason> {
    let lk = s.lookup(now, rx, e);
    if let Some(r) = lk.drop_reason() {
        return Err(r);
    }
    assert!(lk.is_related() && lk.is_existing());
    let route = lk.route_dst();
    let mut sink = VecSink::default();
    s.commit(now, lk, lab_route(route), e, &mut sink)?;
    assert!(sink.0.is_empty(), "an ICMP error emits no record");
    Ok(route)
}

#[test]
fn port_unreachable_for_pat_udp_reaches_the_real_host_with_valid_checksums() {
    let cfg = config();
    let mut s = shard(&cfg);
    let (sent, out) = pat_udp(&mut s, 0, 40000);
    // The server quotes the whole datagram it got (the translated one).
    let mut e = icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &out);
    assert_eq!(pass_error(&mut s, SEC, OUTSIDE, &mut e), Ok(HOST));
    assert_eq!(addr(&e[12..]), SERVER);
    assert_eq!(addr(&e[16..]), HOST);
    assert_eq!((e[20], e[21]), (3, 3));
    assert!(error_checksums_ok(&e));
    // The embedded datagram is again exactly what the client sent: addresses, ports, embedded
    // header checksum and UDP checksum all restored.
    assert_eq!(embedded(&e), &sent[..]);
    assert!(l4_checksum_ok(embedded(&e)));
    let c = s.counters();
    assert_eq!(c.icmp_error_related, 1);
    assert_eq!((c.conn_created, c.conns), (1, 1));
}

#[test]
fn time_exceeded_from_a_router_for_pat_tcp_is_translated() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut syn = tcp(HOST, 40001, SERVER, 443, SYN);
    let sent = syn.clone();
    pass(&mut s, 0, INSIDE, &mut syn, lab_route, &mut NullSink).unwrap();
    let mport = tuple(&syn).1;

    // RFC 792 minimum quote: header + 8 bytes, the TCP checksum is not in it.
    let mut e = icmp_error(ROUTER, PAT_ADDR, 11, 0, [0; 4], &syn[..28]);
    assert_eq!(pass_error(&mut s, 0, OUTSIDE, &mut e), Ok(HOST));
    assert_eq!(
        addr(&e[12..]),
        ROUTER,
        "a router's address is not translated"
    );
    assert_eq!(addr(&e[16..]), HOST);
    assert!(error_checksums_ok(&e));
    assert_eq!(embedded(&e), &sent[..28]);

    // A full quote (RFC 1812 routers quote as much as fits): the TCP checksum is fixed too.
    let mut e = icmp_error(ROUTER, PAT_ADDR, 11, 0, [0; 4], &syn);
    pass_error(&mut s, 0, OUTSIDE, &mut e).unwrap();
    assert!(error_checksums_ok(&e));
    assert_eq!(embedded(&e), &sent[..]);
    assert!(l4_checksum_ok(embedded(&e)));

    // The SYN_SENT connection is untouched by the errors: the SYN-ACK still completes it.
    let mut synack = tcp(SERVER, 443, PAT_ADDR, mport, SYN | ACK);
    pass(&mut s, 0, OUTSIDE, &mut synack, lab_route, &mut NullSink).unwrap();
    assert_eq!(s.counters().icmp_error_related, 2);
}

#[test]
fn fragmentation_needed_keeps_its_mtu_field() {
    let cfg = config();
    let mut s = shard(&cfg);
    let (sent, out) = pat_udp(&mut s, 0, 40002);
    let mtu = 1280u16.to_be_bytes();
    let mut e = icmp_error(ROUTER, PAT_ADDR, 3, 4, [0, 0, mtu[0], mtu[1]], &out);
    pass_error(&mut s, 0, OUTSIDE, &mut e).unwrap();
    assert_eq!((e[20], e[21]), (3, 4));
    assert_eq!(u16::from_be_bytes([e[26], e[27]]), 1280);
    assert!(error_checksums_ok(&e));
    assert_eq!(embedded(&e), &sent[..]);
}

#[test]
fn unrelated_errors_are_dropped_and_counted() {
    let cfg = config();
    let mut s = shard(&cfg);
    let (_, out) = pat_udp(&mut s, 0, 40003);
    let mport = tuple(&out).1;
    // No connection uses this mapped port.
    let other = udp(PAT_ADDR, mport ^ 0x5555, SERVER, 53, true);
    // The connection exists, but the error is not addressed to the embedded packet's sender.
    let elsewhere = icmp_error(SERVER, DMZ_MAPPED, 3, 3, [0; 4], &out);
    // An error about an error.
    let meta = icmp_error(SERVER, PAT_ADDR, 3, 1, [0; 4], &out);
    let about_error = icmp_error(ROUTER, SERVER, 11, 0, [0; 4], &meta[..36]);
    // The embedded packet is a non-first fragment: no ports to match.
    let mut frag = out.clone();
    frag[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    for (rx, e) in [
        (OUTSIDE, icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &other)),
        (OUTSIDE, elsewhere),
        (INSIDE, about_error),
        (OUTSIDE, icmp_error(ROUTER, PAT_ADDR, 11, 0, [0; 4], &frag)),
    ] {
        let mut e = e;
        let before = e.clone();
        assert_eq!(
            pass_error(&mut s, 0, rx, &mut e),
            Err(DropReason::IcmpErrorUnrelated)
        );
        assert_eq!(e, before, "a dropped error is not rewritten");
    }
    let c = s.counters();
    assert_eq!(c.drop_icmp_error_unrelated, 4);
    assert_eq!(c.icmp_error_related, 0);
    assert_eq!(c.conns, 1, "errors create no connection");
}

#[test]
fn truncated_errors_are_dropped_without_panic() {
    let cfg = config();
    let mut s = shard(&cfg);
    let (_, out) = pat_udp(&mut s, 0, 40004);
    let full = icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &out);
    // Every length of quote: below header + 8 bytes it is malformed, from there on related.
    for quoted in 0..=out.len() {
        let mut e = icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &out[..quoted]);
        let r = pass_error(&mut s, 0, OUTSIDE, &mut e);
        if quoted < 28 {
            assert_eq!(r, Err(DropReason::IcmpErrorMalformed), "{quoted}");
        } else {
            assert_eq!(r, Ok(HOST), "{quoted}");
            assert!(error_checksums_ok(&e), "{quoted}");
        }
    }
    // A datagram whose total length cuts the ICMP message short is malformed as well.
    let mut cut = full.clone();
    cut[2..4].copy_from_slice(&40u16.to_be_bytes());
    let c = !rfc1071(&{
        let mut h = cut[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    cut[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        pass_error(&mut s, 0, OUTSIDE, &mut cut),
        Err(DropReason::IcmpErrorMalformed)
    );
    // Not IPv4 inside.
    let mut v6 = full;
    v6[28] = 0x65;
    assert_eq!(
        pass_error(&mut s, 0, OUTSIDE, &mut v6),
        Err(DropReason::IcmpErrorMalformed)
    );
    assert_eq!(s.counters().drop_icmp_error_malformed, 28 + 2);
}

#[test]
fn embedded_header_with_ip_options_is_translated() {
    let cfg = config();
    let mut s = shard(&cfg);
    // A UDP datagram with 4 bytes of IP options (NOP ×3, EOL).
    let plain = udp(HOST, 40005, SERVER, 53, true);
    let mut sent = Vec::new();
    sent.extend_from_slice(&plain[..20]);
    sent.extend_from_slice(&[1, 1, 1, 0]);
    sent.extend_from_slice(&plain[20..]);
    sent[0] = 0x46;
    let total = sent.len() as u16;
    sent[2..4].copy_from_slice(&total.to_be_bytes());
    sent[10..12].copy_from_slice(&[0, 0]);
    let c = !rfc1071(&sent[..24]);
    sent[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = sent.clone();
    pass(&mut s, 0, INSIDE, &mut out, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&out).0, PAT_ADDR);
    // Quote: the 24-byte header + 8 bytes, and the full datagram.
    for quoted in [32, out.len()] {
        let mut e = icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &out[..quoted]);
        assert_eq!(pass_error(&mut s, 0, OUTSIDE, &mut e), Ok(HOST));
        assert!(error_checksums_ok(&e));
        assert_eq!(embedded(&e), &sent[..quoted]);
    }
    // Header + 7 bytes is short of RFC 792's minimum.
    let mut e = icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &out[..31]);
    assert_eq!(
        pass_error(&mut s, 0, OUTSIDE, &mut e),
        Err(DropReason::IcmpErrorMalformed)
    );
}

fn static_nat_cfg() -> StateConfig {
    let mut cfg = config();
    cfg.access.push(AccessRule {
        interface: OUTSIDE,
        src: Prefix::ANY,
        dst: Prefix::new(DMZ_REAL, 32),
        proto: RuleProto::Udp,
        dst_ports: (53, 53),
        action: Action::Permit,
    });
    cfg
}

#[test]
fn error_from_the_real_host_behind_static_nat_goes_out_with_the_mapped_address() {
    let cfg = static_nat_cfg();
    let mut s = shard(&cfg);
    // Outside → static mapped address, de-NATed to the DMZ host.
    let sent = udp(SERVER, 5000, DMZ_MAPPED, 53, true);
    let mut inbound = sent.clone();
    pass(&mut s, 0, OUTSIDE, &mut inbound, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&inbound), (SERVER, 5000, DMZ_REAL, 53));
    // The DMZ host answers port unreachable about what it received.
    let mut e = icmp_error(DMZ_REAL, SERVER, 3, 3, [0; 4], &inbound);
    assert_eq!(steer(&e, 4), steer(&inbound, 4));
    assert_eq!(pass_error(&mut s, 0, DMZ, &mut e), Ok(SERVER));
    assert_eq!(
        addr(&e[12..]),
        DMZ_MAPPED,
        "outer source: the mapped address"
    );
    assert_eq!(addr(&e[16..]), SERVER);
    assert!(error_checksums_ok(&e));
    // Embedded destination back to the mapped address: what the server sent.
    assert_eq!(embedded(&e), &sent[..]);
    assert!(l4_checksum_ok(embedded(&e)));
    // A router inside the DMZ is hidden behind the mapped address too (Linux does the same).
    let mut e = icmp_error(
        Ipv4Addr::new(198, 18, 2, 1),
        SERVER,
        11,
        0,
        [0; 4],
        &inbound,
    );
    pass_error(&mut s, 0, DMZ, &mut e).unwrap();
    assert_eq!(addr(&e[12..]), DMZ_MAPPED);
    assert!(error_checksums_ok(&e));
}

#[test]
fn error_about_a_reply_in_either_direction_of_a_static_nat_connection() {
    let cfg = config();
    let mut s = shard(&cfg);
    // The DMZ host opens a flow out: static source NAT to the mapped address.
    let mut out = udp(DMZ_REAL, 6000, SERVER, 53, true);
    pass(&mut s, 0, DMZ, &mut out, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&out), (DMZ_MAPPED, 6000, SERVER, 53));
    let sent_reply = udp(SERVER, 53, DMZ_MAPPED, 6000, true);
    let mut reply = sent_reply.clone();
    pass(&mut s, 0, OUTSIDE, &mut reply, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&reply), (SERVER, 53, DMZ_REAL, 6000));
    // The DMZ host complains about the reply: the error travels the original direction.
    let mut e = icmp_error(DMZ_REAL, SERVER, 3, 3, [0; 4], &reply);
    assert_eq!(pass_error(&mut s, 0, DMZ, &mut e), Ok(SERVER));
    assert_eq!(addr(&e[12..]), DMZ_MAPPED);
    assert!(error_checksums_ok(&e));
    assert_eq!(embedded(&e), &sent_reply[..]);
}

#[test]
fn error_about_an_icmp_echo_relates_to_the_echo_connection_by_identifier() {
    let cfg = config();
    let mut s = shard(&cfg);
    let sent = icmp_echo(HOST, SERVER, 0x4242, true);
    let mut req = sent.clone();
    pass(&mut s, 0, INSIDE, &mut req, lab_route, &mut NullSink).unwrap();
    let mapped_id = tuple(&req).1;
    let mut e = icmp_error(ROUTER, PAT_ADDR, 11, 0, [0; 4], &req);
    assert_eq!(steer(&e, 4), steer(&req, 4));
    assert_eq!(pass_error(&mut s, 0, OUTSIDE, &mut e), Ok(HOST));
    assert!(error_checksums_ok(&e));
    assert_eq!(
        embedded(&e),
        &sent[..],
        "identifier and echo checksum restored"
    );
    // Another identifier on the same mapped address is not related.
    let mut other = req.clone();
    other[24..26].copy_from_slice(&(mapped_id ^ 1).to_be_bytes());
    let mut e = icmp_error(ROUTER, PAT_ADDR, 11, 0, [0; 4], &other);
    assert_eq!(
        pass_error(&mut s, 0, OUTSIDE, &mut e),
        Err(DropReason::IcmpErrorUnrelated)
    );
}

#[test]
fn errors_do_not_refresh_the_connection() {
    let cfg = config();
    let mut s = shard(&cfg);
    let (_, out) = pat_udp(&mut s, 0, 40006);
    let udp_timeout = u64::try_from(cfg.timeouts.udp.as_nanos()).unwrap();
    // Errors keep arriving until just before the timeout.
    let mut t = 0;
    while t + SEC < udp_timeout {
        t += SEC;
        let mut e = icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &out);
        pass_error(&mut s, t, OUTSIDE, &mut e).unwrap();
    }
    let mut idle = Vec::new();
    s.conns(t, |c| idle.push(c.idle_ms));
    assert_eq!(
        idle,
        vec![t / 1_000_000],
        "idle since the last datagram, not the last error"
    );
    s.expire(udp_timeout, 4096, &mut NullSink);
    assert_eq!(s.counts().0, 0, "expired on time despite the errors");
}

#[test]
fn an_error_lands_on_the_worker_owning_the_connection() {
    let cfg = config();
    for shard_ix in 0..4u16 {
        let mut s = Shard::new(&cfg, shard_ix, 4, 7 + u64::from(shard_ix)).unwrap();
        let mut n = 0;
        for i in 0..200u16 {
            let sent = udp(CLIENT, 10_000 + i, SERVER, 53, true);
            // Only the packets this shard owns reach it.
            if steer(&sent, 4) != shard_ix {
                continue;
            }
            n += 1;
            let mut out = sent.clone();
            pass(&mut s, 0, INSIDE, &mut out, lab_route, &mut NullSink).unwrap();
            let reply = udp(SERVER, 53, PAT_ADDR, tuple(&out).1, true);
            for e in [
                icmp_error(SERVER, PAT_ADDR, 3, 3, [0; 4], &out),
                icmp_error(ROUTER, PAT_ADDR, 11, 0, [0; 4], &out[..28]),
            ] {
                assert_eq!(steer(&e, 4), shard_ix);
                assert_eq!(steer(&e, 4), steer(&reply, 4));
            }
            // An inside host's error about the reply steers like the client's packets.
            let mut r = reply.clone();
            pass(&mut s, 0, OUTSIDE, &mut r, lab_route, &mut NullSink).unwrap();
            let e = icmp_error(CLIENT, SERVER, 3, 3, [0; 4], &r);
            assert_eq!(steer(&e, 4), steer(&sent, 4));
            let mut e2 = e.clone();
            assert_eq!(pass_error(&mut s, 0, INSIDE, &mut e2), Ok(SERVER));
            assert_eq!(addr(&e2[12..]), PAT_ADDR);
            assert_eq!(embedded(&e2), &reply[..]);
        }
        assert!(n > 20, "{n}");
    }
}

#[test]
fn errors_about_untracked_protocols_stay_untracked() {
    let cfg = config();
    let mut s = shard(&cfg);
    // A GRE packet quoted: no connection to relate to; the stateless policy decides, as for GRE.
    let mut gre = udp(CLIENT, 1, SERVER, 2, false);
    gre[9] = 47;
    let mut e = icmp_error(ROUTER, CLIENT, 3, 4, [0, 0, 5, 0], &gre);
    let before = e.clone();
    let lk = s.lookup(0, OUTSIDE, &e);
    assert!(lk.drop_reason().is_none() && !lk.is_existing() && !lk.is_new());
    assert_eq!(
        s.commit(0, lk, INSIDE, &mut e, &mut NullSink),
        Err(DropReason::SecurityLevel)
    );
    let lk = s.lookup(0, INSIDE, &e);
    assert!(s.commit(0, lk, OUTSIDE, &mut e, &mut NullSink).is_ok());
    assert_eq!(e, before);
}

#[test]
fn source_quench_and_redirect_are_related_and_translated() {
    let cfg = config();
    let mut s = shard(&cfg);
    let (sent, out) = pat_udp(&mut s, 0, 40010);
    // Source quench (type 4, RFC 6633 deprecates it but Linux relates it): from the server.
    let mut e = icmp_error(SERVER, PAT_ADDR, 4, 0, [0; 4], &out);
    assert_eq!(pass_error(&mut s, 0, OUTSIDE, &mut e), Ok(HOST));
    assert_eq!((e[20], e[21]), (4, 0));
    assert!(error_checksums_ok(&e));
    assert_eq!(embedded(&e), &sent[..]);
    // Redirect (type 5, code 1: for the host) from a router, naming a gateway in its second
    // header word: the quote is translated, the gateway is not (it is on the router's segment).
    let gw = Ipv4Addr::new(198, 19, 0, 253);
    let mut e = icmp_error(ROUTER, PAT_ADDR, 5, 1, gw.octets(), &out);
    assert_eq!(pass_error(&mut s, 0, OUTSIDE, &mut e), Ok(HOST));
    assert_eq!((e[20], e[21]), (5, 1));
    assert_eq!(addr(&e[24..]), gw, "the gateway address is kept");
    assert!(error_checksums_ok(&e));
    assert_eq!(embedded(&e), &sent[..]);
    let c = s.counters();
    assert_eq!(c.icmp_error_related, 2);
    assert_eq!(c.conns, 1, "errors create no connection");
}

#[test]
fn source_quench_from_behind_static_nat_does_not_show_the_real_address() {
    let cfg = static_nat_cfg();
    let mut s = shard(&cfg);
    let sent = udp(SERVER, 5001, DMZ_MAPPED, 53, true);
    let mut inbound = sent.clone();
    pass(&mut s, 0, OUTSIDE, &mut inbound, lab_route, &mut NullSink).unwrap();
    assert_eq!(tuple(&inbound), (SERVER, 5001, DMZ_REAL, 53));
    // Untracked, it would go out from the more secure side as it is, quoting DMZ_REAL.
    let mut e = icmp_error(DMZ_REAL, SERVER, 4, 0, [0; 4], &inbound);
    assert_eq!(pass_error(&mut s, 0, DMZ, &mut e), Ok(SERVER));
    assert_eq!(addr(&e[12..]), DMZ_MAPPED);
    assert!(error_checksums_ok(&e));
    assert_eq!(embedded(&e), &sent[..]);
    // A quench about nothing tracked is dropped like any unrelated error.
    let other = udp(SERVER, 5002, DMZ_REAL, 53, true);
    let mut e = icmp_error(DMZ_REAL, SERVER, 4, 0, [0; 4], &other);
    assert_eq!(
        pass_error(&mut s, 0, DMZ, &mut e),
        Err(DropReason::IcmpErrorUnrelated)
    );
}
