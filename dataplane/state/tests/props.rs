//! Property tests: `apply`, `lookup` and `commit` never panic on arbitrary bytes, and applying a
//! record stream is idempotent.

mod common;

use common::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use tandem_state::records::*;
use tandem_state::*;

fn record_len(kind: u8) -> usize {
    payload_len(kind).unwrap_or(16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn apply_never_panics_on_arbitrary_records(
        recs in proptest::collection::vec(
            (0u8..6, 0u8..4, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)),
            1..40,
        )
    ) {
        let cfg = config();
        let mut s = shard(&cfg);
        for (kind, op, exact, mut bytes) in recs {
            if exact {
                // Right length, so the field validation is what gets exercised.
                bytes.resize(record_len(kind), 0);
                if kind == KIND_CONN {
                    // Often a valid protocol and interfaces, to reach the table code.
                    bytes[28] = [1, 6, 17][usize::from(bytes[29]) % 3];
                    bytes[24] = 0; bytes[25] %= 3; bytes[26] = 0; bytes[27] %= 3;
                }
            }
            let _ = s.apply(0, kind, op, &bytes);
        }
        // Tables stay consistent enough to expire and bulk.
        s.expire(u64::MAX / 2, 4096, &mut NullSink);
        let mut cur = BulkCursor::default();
        while !s.bulk(&mut cur, 0, &mut NullSink, 64).finished {}
    }

    #[test]
    fn lookup_and_commit_never_panic_on_arbitrary_bytes(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        rx in 0u16..5, out in 0u16..5, fix_header in any::<bool>(),
    ) {
        if fix_header && bytes.len() >= 20 {
            bytes[0] = 0x45;
            let l = bytes.len() as u16;
            bytes[2..4].copy_from_slice(&l.to_be_bytes());
            bytes[6] &= 0xe0; bytes[7] = 0;
            bytes[9] = [1, 6, 17, 47][usize::from(bytes[9]) % 4];
            if bytes[9] == 1 && bytes.len() > 28 {
                // Often an ICMP error, to reach the embedded-packet parsing.
                bytes[20] = [0, 3, 8, 11, 12][usize::from(bytes[20]) % 5];
                bytes[28] = 0x40 | (bytes[28] & 0x0f);
            }
        }
        let cfg = config();
        let mut s = shard(&cfg);
        let _ = steer(&bytes, 3);
        let lk = s.lookup(0, rx, &bytes);
        let _ = s.commit(0, lk, out, &mut bytes, &mut NullSink);
        // And again, now that a connection may exist.
        let lk = s.lookup(1, out, &bytes);
        let _ = s.commit(1, lk, rx, &mut bytes, &mut NullSink);
    }

    /// ICMP errors quoting a connection's packet, truncated anywhere and with random bytes
    /// changed: no panic, and whenever one passes its outer IPv4 and ICMP checksums are still
    /// valid (every rewrite is an incremental update).
    #[test]
    fn icmp_errors_never_panic_and_keep_checksums_valid(
        which in 0usize..3, ty in prop::sample::select(vec![3u8, 11, 12, 4, 5]),
        quoted in 0usize..80,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        rx in 0u16..3,
    ) {
        let cfg = config();
        let mut s = shard(&cfg);
        let mut sent = match which {
            0 => udp(CLIENT, 4000, SERVER, 53, true),
            1 => tcp(CLIENT, 4000, SERVER, 443, SYN),
            _ => icmp_echo(CLIENT, SERVER, 4000, true),
        };
        pass(&mut s, 0, INSIDE, &mut sent, lab_route, &mut NullSink).unwrap();
        let mut quote = sent[..quoted.min(sent.len())].to_vec();
        if !quote.is_empty() {
            for (i, v) in flips {
                let n = quote.len();
                quote[i % n] = v;
            }
        }
        let mut e = vec![0u8; 28 + quote.len()];
        let total = e.len() as u16;
        e[0] = 0x45;
        e[2..4].copy_from_slice(&total.to_be_bytes());
        e[8] = 64;
        e[9] = 1;
        e[12..16].copy_from_slice(&SERVER.octets());
        e[16..20].copy_from_slice(&PAT_ADDR.octets());
        let c = tandem_wire::checksum::checksum(&e[..20]);
        e[10..12].copy_from_slice(&c.to_be_bytes());
        e[20] = ty;
        e[28..].copy_from_slice(&quote);
        let c = tandem_wire::checksum::checksum(&e[20..]);
        e[22..24].copy_from_slice(&c.to_be_bytes());
        let _ = steer(&e, 3);
        let lk = s.lookup(1, rx, &e);
        let related = lk.is_related();
        let out = lab_route(lk.route_dst());
        if s.commit(1, lk, out, &mut e, &mut NullSink).is_ok() && related {
            prop_assert!(tandem_wire::checksum::verify(&e[..20]));
            prop_assert!(tandem_wire::checksum::verify(&e[20..]));
            prop_assert_eq!(&e[16..20], &CLIENT.octets()[..]);
        }
    }

    #[test]
    fn applying_a_record_stream_twice_gives_the_same_tables(
        flows in proptest::collection::vec((0u8..3, 1u8..250, 1024u16..1100, any::<bool>()), 1..60),
    ) {
        let cfg = config();
        let mut active = shard(&cfg);
        let mut sink = VecSink::default();
        for (i, (proto, host, port, close)) in flows.into_iter().enumerate() {
            let c = Ipv4Addr::new(198, 18, 0, host);
            let now = i as u64 * SEC;
            let mut p = match proto {
                0 => tcp(c, port, SERVER, 443, SYN),
                1 => udp(c, port, SERVER, 53, true),
                _ => icmp_echo(Ipv4Addr::new(198, 18, 2, host), SERVER, port, true),
            };
            let rx = if proto == 2 { DMZ } else { INSIDE };
            let _ = pass(&mut active, now, rx, &mut p, lab_route, &mut sink);
            if close && proto == 0 {
                let mut r = tcp(c, port, SERVER, 443, RST);
                let _ = pass(&mut active, now, INSIDE, &mut r, lab_route, &mut sink);
            }
        }
        active.expire(30 * SEC, 4096, &mut sink);
        let mut once = Shard::new(&cfg, 0, 1, 11).unwrap();
        let mut twice = Shard::new(&cfg, 0, 1, 12).unwrap();
        sink.apply_to(&mut once, 100 * SEC);
        sink.apply_to(&mut twice, 100 * SEC);
        sink.apply_to(&mut twice, 100 * SEC);
        prop_assert_eq!(once.counts(), twice.counts());
        prop_assert_eq!(conn_views(&once, 100 * SEC), conn_views(&twice, 100 * SEC));
        prop_assert_eq!(xlate_views(&once, 100 * SEC), xlate_views(&twice, 100 * SEC));
    }
}
