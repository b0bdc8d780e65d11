//! IPv4 fragments through the stateful stage (virtual reassembly, `tandem_state::frag`): a
//! datagram's later fragments pass only after its first, translated like it, and the datagram a
//! receiver reassembles from what went out verifies (addresses, ports, every checksum).

mod common;

use common::*;
use std::net::Ipv4Addr;
use tandem_state::frag::FRAG_TIMEOUT_NS;
use tandem_state::*;
use tandem_wire::{Ipv4Packet, UdpPacket};

/// An inside host whose address differs from the PAT address by a non-zero ones' complement
/// amount (so a missed checksum update shows).
const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 77);

/// A UDP datagram of `n` payload bytes (a pattern), valid checksums, IP ID `id`, DF clear.
fn big_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, n: usize, id: u16) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + n];
    b[0] = 0x45;
    let total = b.len() as u16;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[4..6].copy_from_slice(&id.to_be_bytes());
    b[8] = 64;
    b[9] = 17;
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&dst.octets());
    Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
    let l4 = &mut b[20..];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&((8 + n) as u16).to_be_bytes());
    for (i, x) in l4[8..].iter_mut().enumerate() {
        *x = (i * 7 + 3) as u8;
    }
    UdpPacket::new_unchecked(&mut b[20..]).fill_checksum(src, dst);
    b
}

/// Splits `ip` (20-byte header) into fragments of at most `chunk` payload bytes (a multiple of 8),
/// as a sender's IP layer does.
fn fragment(ip: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    assert_eq!(chunk % 8, 0);
    let payload = &ip[20..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mut f = ip[..20].to_vec();
        f.extend_from_slice(&payload[off..end]);
        let total = f.len() as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        let more = if end < payload.len() { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&(more | (off / 8) as u16).to_be_bytes());
        refill(&mut f);
        out.push(f);
        off = end;
    }
    out
}

/// The datagram a receiver reassembles from `frags` (any order).
fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let first = frags
        .iter()
        .find(|f| u16::from_be_bytes([f[6], f[7]]) & 0x1fff == 0)
        .expect("a first fragment");
    let mut payload = Vec::new();
    for f in frags {
        let off = usize::from(u16::from_be_bytes([f[6], f[7]]) & 0x1fff) * 8;
        if payload.len() < off + f.len() - 20 {
            payload.resize(off + f.len() - 20, 0);
        }
        payload[off..off + f.len() - 20].copy_from_slice(&f[20..]);
    }
    let mut d = first[..20].to_vec();
    d.extend_from_slice(&payload);
    let total = d.len() as u16;
    d[2..4].copy_from_slice(&total.to_be_bytes());
    d[6..8].copy_from_slice(&[0, 0]);
    Ipv4Packet::new_unchecked(&mut d[..]).fill_checksum();
    d
}

/// One packet received on `rx_if` through both phases, with the lab's routing.
fn send(s: &mut Shard, now: u64, rx_if: u16, ip: &mut [u8]) -> Result<(), DropReason> {
    pass(s, now, rx_if, ip, lab_route, &mut NullSink)
}

/// Recomputes the IPv4 header checksum after a test edited the header.
fn refill(ip: &mut [u8]) {
    ip[10..12].copy_from_slice(&[0, 0]);
    Ipv4Packet::new_unchecked(ip).fill_checksum();
}

fn ip_checksum_ok(f: &[u8]) -> bool {
    Ipv4Packet::new_checked(f).unwrap().verify_checksum()
}

fn addrs(f: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::new(f[12], f[13], f[14], f[15]),
        Ipv4Addr::new(f[16], f[17], f[18], f[19]),
    )
}

/// Passes every fragment of `frags` in order; each must pass.
fn pass_all(s: &mut Shard, now: u64, rx_if: u16, frags: &mut [Vec<u8>]) {
    for (i, f) in frags.iter_mut().enumerate() {
        send(s, now, rx_if, f).unwrap_or_else(|e| panic!("fragment {i}: {e}"));
        assert!(ip_checksum_ok(f), "fragment {i}: IPv4 header checksum");
    }
}

#[test]
fn pat_translates_every_fragment_both_ways_and_the_reassembled_datagrams_verify() {
    let cfg = config();
    let mut s = shard(&cfg);
    let sent = big_udp(HOST, 40_000, SERVER, 53, 3000, 0x4242);
    let mut out = fragment(&sent, 1480);
    assert_eq!(out.len(), 3);
    pass_all(&mut s, SEC, INSIDE, &mut out);
    for f in &out {
        assert_eq!(
            addrs(f),
            (PAT_ADDR, SERVER),
            "every fragment leaves from the PAT address"
        );
    }
    let d = reassemble(&out);
    assert!(checksums_ok(&d), "the reassembled datagram verifies");
    let (src, mapped_port, dst, dport) = tuple(&d);
    assert_eq!((src, dst, dport), (PAT_ADDR, SERVER, 53));
    assert_ne!(mapped_port, 40_000, "PAT picked a random port");
    assert_eq!(&d[28..], &sent[28..], "payload unchanged");

    // The server's answer, fragmented too, finds the host.
    let reply = big_udp(SERVER, 53, PAT_ADDR, mapped_port, 2500, 0x0bad);
    let mut back = fragment(&reply, 1480);
    pass_all(&mut s, SEC + 1, OUTSIDE, &mut back);
    for f in &back {
        assert_eq!(addrs(f), (SERVER, HOST));
    }
    let d = reassemble(&back);
    assert!(checksums_ok(&d));
    assert_eq!(tuple(&d), (SERVER, 53, HOST, 40_000));
    let c = s.counters();
    assert_eq!(c.fragments_passed, 3, "two later fragments out, one back");
    assert_eq!(c.drop_fragment, 0);
    assert_eq!(c.conns, 1, "one connection; fragments create none");
}

#[test]
fn a_later_fragment_before_its_first_awaits_it() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut frags = fragment(&big_udp(HOST, 40_001, SERVER, 53, 2000, 7), 1480);
    let mut late = frags[1].clone();
    let key = s.lookup(SEC, INSIDE, &late).awaiting_first();
    assert!(matches!(key, Some(k) if k.id == 7), "{key:?}");
    // To a caller that does not hold it, a drop; counted only when committed as one.
    assert_eq!(
        send(&mut s, SEC, INSIDE, &mut late),
        Err(DropReason::Fragment)
    );
    assert_eq!(
        s.counters().drop_fragment,
        0,
        "the forwarder decides and counts"
    );
    let lk = s.lookup(SEC, INSIDE, &late);
    assert_eq!(
        s.commit(SEC, lk, OUTSIDE, &mut late, &mut NullSink),
        Err(DropReason::Fragment)
    );
    assert_eq!(s.counters().drop_fragment, 1);
    // The first opens the way for the rest.
    pass_all(&mut s, SEC, INSIDE, &mut frags);
    assert_eq!(s.counters().fragments_passed, 1);
}

#[test]
fn later_fragments_of_a_refused_first_fragment_never_pass() {
    let cfg = config();
    let mut s = shard(&cfg);
    // Outside → inside with no connection and no rule: the security levels refuse the first
    // fragment; the later ones must not slip through, neither to the real host nor to the PAT
    // address.
    for dst in [HOST, PAT_ADDR] {
        let mut frags = fragment(&big_udp(SERVER, 53, dst, 40_000, 3000, 9), 1480);
        assert!(send(&mut s, SEC, OUTSIDE, &mut frags[0]).is_err());
        for f in &mut frags[1..] {
            assert!(s.lookup(SEC, OUTSIDE, f).awaiting_first().is_some());
            assert_eq!(send(&mut s, SEC, OUTSIDE, f), Err(DropReason::Fragment));
        }
    }
    assert_eq!(s.counters().fragments_passed, 0);
    // Left to the forwarder, which holds them a while and then drops them.
    assert_eq!(s.counters().drop_fragment, 0);
}

#[test]
fn a_datagram_ends_with_its_last_byte_or_after_the_fragment_timeout() {
    let cfg = config();
    let mut s = shard(&cfg);
    let mut frags = fragment(&big_udp(HOST, 40_002, SERVER, 53, 3000, 11), 1480);
    let dup = frags[2].clone();
    pass_all(&mut s, SEC, INSIDE, &mut frags);
    // Every byte passed: a copy of the last fragment finds no datagram.
    let mut again = dup;
    assert_eq!(
        send(&mut s, SEC, INSIDE, &mut again),
        Err(DropReason::Fragment)
    );
    // A datagram whose rest never came is forgotten after the timeout.
    let mut frags = fragment(&big_udp(HOST, 40_002, SERVER, 53, 3000, 12), 1480);
    send(&mut s, SEC, INSIDE, &mut frags[0]).unwrap();
    let t = SEC + FRAG_TIMEOUT_NS - 1;
    send(&mut s, t, INSIDE, &mut frags[1]).unwrap();
    assert_eq!(
        send(&mut s, SEC + FRAG_TIMEOUT_NS, INSIDE, &mut frags[2]),
        Err(DropReason::Fragment)
    );
}

#[test]
fn a_tcp_fragment_at_offset_8_is_dropped() {
    // RFC 1858: it would overwrite the flags of the header the first fragment was checked with.
    let cfg = config();
    let mut s = shard(&cfg);
    let syn = tcp(HOST, 40_003, SERVER, 80, SYN);
    let mut first = syn.clone();
    first[6] = 0x20; // MF
    refill(&mut first);
    send(&mut s, SEC, INSIDE, &mut first).unwrap();
    let mut overlap = syn[..20].to_vec();
    overlap.extend_from_slice(&[0u8; 16]);
    overlap[2..4].copy_from_slice(&36u16.to_be_bytes());
    overlap[6..8].copy_from_slice(&1u16.to_be_bytes()); // offset 8, last
    refill(&mut overlap);
    assert_eq!(
        send(&mut s, SEC, INSIDE, &mut overlap),
        Err(DropReason::Fragment)
    );
}

#[test]
fn fragments_of_untracked_protocols_follow_the_stateless_policy_of_their_first() {
    let cfg = config();
    let mut s = shard(&cfg);
    // GRE (47) inside → outside: allowed by the security levels, untranslated.
    let mut gre = big_udp(HOST, 1, SERVER, 2, 2000, 13);
    gre[9] = 47;
    refill(&mut gre);
    let mut frags = fragment(&gre, 1480);
    pass_all(&mut s, SEC, INSIDE, &mut frags);
    assert_eq!(addrs(&frags[1]), (HOST, SERVER));
    assert_eq!(s.counters().fragments_passed, 1);
    // Outside → inside: refused, first and later alike.
    let mut back = gre.clone();
    back[12..16].copy_from_slice(&SERVER.octets());
    back[16..20].copy_from_slice(&HOST.octets());
    refill(&mut back);
    let mut frags = fragment(&back, 1480);
    assert!(send(&mut s, SEC, OUTSIDE, &mut frags[0]).is_err());
    assert_eq!(
        send(&mut s, SEC, OUTSIDE, &mut frags[1]),
        Err(DropReason::Fragment)
    );
}

#[test]
fn a_full_fragment_table_passes_the_first_and_counts_the_refusal() {
    let cfg = config();
    let mut s = shard(&cfg);
    let n = tandem_state::frag::FRAG_SLOTS + 200;
    let mut later = Vec::new();
    for id in 0..n {
        let mut frags = fragment(&big_udp(HOST, 40_010, SERVER, 53, 2000, id as u16), 1480);
        send(&mut s, SEC, INSIDE, &mut frags[0]).unwrap();
        later.push(frags.swap_remove(1));
    }
    let c = s.counters();
    assert!(c.frag_table_full >= 200, "{} refused", c.frag_table_full);
    let mut passed = 0u64;
    for f in &mut later {
        passed += u64::from(send(&mut s, SEC, INSIDE, f).is_ok());
    }
    assert_eq!(passed + c.frag_table_full, n as u64);
}
