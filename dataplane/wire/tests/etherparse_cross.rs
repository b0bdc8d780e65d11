//! Cross-checks against etherparse 0.21, an independent parser: (1) frames tandem emits read the
//! same in etherparse, checksums included; (2) on arbitrary and mutated bytes, both parsers
//! accept the same inputs and read the same fields, up to documented differences.
//!
//! Documented differences (each is a deliberate choice on tandem's side):
//! * UDP length 0: etherparse falls back to the slice length (IPv6 jumbograms, RFC 2675);
//!   tandem reads only IPv4 UDP, where RFC 768 requires length ≥ 8, and says `Malformed`.
//! * IPv4 protocol 51: etherparse also parses the AH header and can fail on it; tandem does
//!   not look past the IPv4 header.
//! * ARP: etherparse accepts any hardware/protocol sizes; tandem only Ethernet/IPv4.
//! * ICMPv4: etherparse requires exactly 20 bytes for timestamp messages; tandem has no
//!   timestamp Repr and accepts any length ≥ 8 in the view.
//! * IPv6: etherparse's header slice does not check the payload length against the buffer;
//!   tandem's view does.

mod common;

use etherparse::{
    ArpPacketSlice, Ethernet2HeaderSlice, Icmpv4Slice, Ipv4HeaderSlice, Ipv4Slice, Ipv6HeaderSlice,
    SingleVlanHeaderSlice, TcpHeaderSlice, TcpOptionElement, UdpSlice,
};
use proptest::prelude::*;
use tandem_wire::*;

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// Compares our Ethernet view with etherparse's Ethernet II and single-VLAN slices.
fn check_ethernet(data: &[u8]) {
    let ours = EthernetFrame::new_checked(data);
    let theirs = Ethernet2HeaderSlice::from_slice(data);
    let Ok(e) = theirs else {
        assert!(ours.is_err());
        return;
    };
    if e.ether_type().0 == EtherType::VLAN.0 {
        let tag = SingleVlanHeaderSlice::from_slice(&data[14..]);
        assert_eq!(ours.is_ok(), tag.is_ok());
        let (Ok(ours), Ok(tag)) = (ours, tag) else {
            return;
        };
        let v = ours.vlan().unwrap();
        assert_eq!(v.pcp, tag.priority_code_point().value());
        assert_eq!(v.dei, tag.drop_eligible_indicator());
        assert_eq!(v.vid, tag.vlan_identifier().value());
        assert_eq!(ours.ethertype().0, tag.ether_type().0);
    } else {
        let ours = ours.expect("etherparse accepted an untagged header");
        assert_eq!(ours.vlan(), None);
        assert_eq!(ours.ethertype().0, e.ether_type().0);
    }
    let ours = EthernetFrame::new_unchecked(data);
    assert_eq!(ours.dst().0, e.destination());
    assert_eq!(ours.src().0, e.source());
}

fn check_arp(data: &[u8]) {
    let ours = ArpPacket::new_checked(data);
    let theirs = ArpPacketSlice::from_slice(data);
    let eth_ipv4 = theirs.as_ref().is_ok_and(|a| {
        a.hw_addr_type().0 == 1
            && a.proto_addr_type().0 == 0x0800
            && a.hw_addr_size() == 6
            && a.proto_addr_size() == 4
    });
    assert_eq!(ours.is_ok(), eth_ipv4, "ARP acceptance");
    let (Ok(ours), Ok(a)) = (ours, theirs) else {
        return;
    };
    assert_eq!(ours.operation().0, a.operation().0);
    assert_eq!(&ours.sender_mac().0[..], a.sender_hw_addr());
    assert_eq!(&ours.sender_ip().octets()[..], a.sender_protocol_addr());
    assert_eq!(&ours.target_mac().0[..], a.target_hw_addr());
    assert_eq!(&ours.target_ip().octets()[..], a.target_protocol_addr());
}

fn check_ipv4(data: &[u8]) {
    let ours = Ipv4Packet::new_checked(data);
    let theirs = Ipv4Slice::from_slice(data);
    let is_ah = data.len() > 9 && data[9] == 51;
    if !is_ah {
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "IPv4 acceptance: {:?}",
            theirs.err()
        );
    }
    let Ok(ours) = ours else { return };
    let h = Ipv4HeaderSlice::from_slice(data).expect("etherparse reads the header we accepted");
    assert_eq!(usize::from(h.ihl()) * 4, ours.header_len());
    assert_eq!(h.dcp().value(), ours.dscp());
    assert_eq!(h.ecn().value(), ours.ecn());
    assert_eq!(h.total_len(), ours.total_len());
    assert_eq!(h.identification(), ours.ident());
    assert_eq!(h.dont_fragment(), ours.dont_frag());
    assert_eq!(h.more_fragments(), ours.more_frags());
    assert_eq!(h.fragments_offset().value() * 8, ours.frag_offset());
    assert_eq!(h.ttl(), ours.ttl());
    assert_eq!(h.protocol().0, ours.protocol().0);
    assert_eq!(h.header_checksum(), ours.checksum());
    assert_eq!(h.source_addr(), ours.src_addr());
    assert_eq!(h.destination_addr(), ours.dst_addr());
    assert_eq!(h.options(), ours.options());
    if let Ok(s) = theirs {
        if !is_ah {
            assert_eq!(s.payload().payload, ours.payload());
        }
    }
    // etherparse does not model the reserved ("evil") flag bit: its
    // recomputed checksum leaves it out, so it is no oracle for such headers.
    let reserved_flag = data[6] & 0x80 != 0;
    if !reserved_flag {
        agree(
            h.to_header().calc_header_checksum(),
            ours.checksum(),
            ours.verify_checksum(),
        );
    }
}

/// etherparse's recomputed checksum equals the stored one exactly when tandem's verification
/// passes, except that a stored `0xffff` and a computed `0x0000` (or the reverse) are both
/// ones' complement zero and both verify.
fn agree(computed: u16, stored: u16, verified: bool) {
    let negative_zero = computed ^ stored == 0xffff && (computed == 0 || stored == 0);
    assert!(
        verified == (computed == stored) || (verified && negative_zero),
        "checksum disagreement: computed {computed:#06x}, stored {stored:#06x}, verified {verified}"
    );
}

fn check_ipv6(data: &[u8]) {
    let ours = Ipv6Packet::new_checked(data);
    let theirs = Ipv6HeaderSlice::from_slice(data);
    if ours.is_ok() {
        assert!(theirs.is_ok());
    }
    let (Ok(ours), Ok(h)) = (ours, theirs) else {
        return;
    };
    assert_eq!(h.traffic_class(), ours.traffic_class());
    assert_eq!(h.flow_label().value(), ours.flow_label());
    assert_eq!(h.payload_length(), ours.payload_len());
    assert_eq!(h.next_header().0, ours.next_header().0);
    assert_eq!(h.hop_limit(), ours.hop_limit());
    assert_eq!(h.source_addr(), ours.src_addr());
    assert_eq!(h.destination_addr(), ours.dst_addr());
}

fn check_udp(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let ours = UdpPacket::new_checked(data);
    let theirs = UdpSlice::from_slice(data);
    let zero_len = data.len() >= 8 && data[4] == 0 && data[5] == 0;
    if !zero_len {
        assert_eq!(ours.is_ok(), theirs.is_ok(), "UDP acceptance");
    }
    let (Ok(ours), Ok(u)) = (ours, theirs) else {
        return;
    };
    assert_eq!(u.source_port(), ours.src_port());
    assert_eq!(u.destination_port(), ours.dst_port());
    assert_eq!(u.length(), ours.len());
    assert_eq!(u.checksum(), ours.checksum());
    assert_eq!(u.payload(), ours.payload());
    if ours.checksum() != 0 {
        let expected =
            u.to_header()
                .calc_checksum_ipv4_raw(src.octets(), dst.octets(), u.payload());
        if let Ok(expected) = expected {
            agree(expected, ours.checksum(), ours.verify_checksum(src, dst));
        }
    }
}

fn check_tcp(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let ours = TcpPacket::new_checked(data);
    let theirs = TcpHeaderSlice::from_slice(data);
    assert_eq!(ours.is_ok(), theirs.is_ok(), "TCP acceptance");
    let (Ok(ours), Ok(t)) = (ours, theirs) else {
        return;
    };
    assert_eq!(t.source_port(), ours.src_port());
    assert_eq!(t.destination_port(), ours.dst_port());
    assert_eq!(t.sequence_number(), ours.seq_number());
    assert_eq!(t.acknowledgment_number(), ours.ack_number());
    assert_eq!(usize::from(t.data_offset()) * 4, ours.header_len());
    let f = ours.flags();
    assert_eq!(t.fin(), f.contains(TcpFlags::FIN));
    assert_eq!(t.syn(), f.contains(TcpFlags::SYN));
    assert_eq!(t.rst(), f.contains(TcpFlags::RST));
    assert_eq!(t.psh(), f.contains(TcpFlags::PSH));
    assert_eq!(t.ack(), f.contains(TcpFlags::ACK));
    assert_eq!(t.urg(), f.contains(TcpFlags::URG));
    assert_eq!(t.ece(), f.contains(TcpFlags::ECE));
    assert_eq!(t.cwr(), f.contains(TcpFlags::CWR));
    assert_eq!(t.window_size(), ours.window());
    assert_eq!(t.checksum(), ours.checksum());
    assert_eq!(t.urgent_pointer(), ours.urgent());
    assert_eq!(t.options(), ours.options_bytes());
    // Options: wherever etherparse reads an option without error, we read the same one.
    let mut mine = ours
        .options()
        .filter(|o| !matches!(o, TcpOption::Unknown { .. }));
    for theirs in t.options_iterator() {
        let Ok(theirs) = theirs else { break };
        let expected = match theirs {
            TcpOptionElement::Noop => TcpOption::NoOperation,
            TcpOptionElement::MaximumSegmentSize(m) => TcpOption::MaxSegmentSize(m),
            TcpOptionElement::WindowScale(s) => TcpOption::WindowScale(s),
            TcpOptionElement::SelectiveAcknowledgementPermitted => TcpOption::SackPermitted,
            TcpOptionElement::Timestamp(tsval, tsecr) => TcpOption::Timestamps { tsval, tsecr },
            TcpOptionElement::SelectiveAcknowledgement(..) => continue,
        };
        assert_eq!(mine.next(), Some(expected));
    }
    let payload = &data[t.slice().len()..];
    if let Ok(expected) = t.calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload) {
        agree(expected, ours.checksum(), ours.verify_checksum(src, dst));
    }
}

fn check_icmpv4(data: &[u8]) {
    let ours = Icmpv4Packet::new_checked(data);
    let theirs = Icmpv4Slice::from_slice(data);
    let timestamp = data.len() >= 2 && matches!(data[0], 13 | 14) && data[1] == 0;
    if !timestamp {
        assert_eq!(ours.is_ok(), theirs.is_ok(), "ICMP acceptance");
    }
    let (Ok(ours), Ok(i)) = (ours, theirs) else {
        return;
    };
    assert_eq!(i.type_u8(), ours.msg_type());
    assert_eq!(i.code_u8(), ours.code());
    assert_eq!(i.checksum(), ours.checksum());
    let b = i.bytes5to8();
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), ours.echo_ident());
    assert_eq!(u16::from_be_bytes([b[2], b[3]]), ours.echo_seq_no());
    // etherparse's typed header drops the "unused" bytes 4..8 of error messages, so compute
    // over the raw message with its generic RFC 1071 summer instead.
    agree(
        raw_icmp_checksum(data),
        ours.checksum(),
        ours.verify_checksum(),
    );
}

fn raw_icmp_checksum(msg: &[u8]) -> u16 {
    let c = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&msg[..2])
        .add_slice(&msg[4..])
        .ones_complement();
    // Its sum runs over native-endian words (etherparse stores the result with `to_ne_bytes`).
    u16::from_be_bytes(c.to_ne_bytes())
}

/// Every layer of one input, as both a frame and as each inner header on its own.
fn check_all(data: &[u8]) {
    let a = Ipv4Addr::new(198, 18, 0, 1);
    let b = Ipv4Addr::new(198, 18, 0, 2);
    check_ethernet(data);
    check_arp(data);
    check_ipv4(data);
    check_ipv6(data);
    check_udp(data, a, b);
    check_tcp(data, a, b);
    check_icmpv4(data);
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let p = f.payload();
        check_arp(p);
        check_ipv4(p);
        check_ipv6(p);
        if let Ok(ip) = Ipv4Packet::new_checked(p) {
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            check_udp(ip.payload(), s, d);
            check_tcp(ip.payload(), s, d);
            check_icmpv4(ip.payload());
        }
    }
}

#[test]
fn captured_frames_agree() {
    for frame in common::ALL {
        check_all(frame);
        check_all(&common::tagged(frame, 0xa00a));
        for n in 0..frame.len() {
            check_all(&frame[..n]);
        }
    }
}

fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0..common::ALL.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(i, edits, cut, do_cut)| {
            let mut f = common::ALL[i].to_vec();
            for (pos, byte) in edits {
                let at = pos.index(f.len());
                f[at] = byte;
            }
            if do_cut {
                f.truncate(cut.index(f.len() + 1));
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_agree(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        check_all(&data);
    }

    #[test]
    fn mutated_frames_agree(data in mutated_frame()) {
        check_all(&data);
    }
}

proptest! {
    #[test]
    fn emitted_udp_frames_read_the_same_in_etherparse(
        src_mac in mac(), dst_mac in mac(), tag in proptest::option::of((0u8..8, any::<bool>(), 0u16..4096)),
        src_ip in ipv4(), dst_ip in ipv4(), sp in any::<u16>(), dp in any::<u16>(),
        ttl in any::<u8>(), dscp in 0u8..64, ident in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        let vlan = tag.map(|(pcp, dei, vid)| VlanTag { pcp, dei, vid });
        let spec = UdpFrame { src_mac, dst_mac, vlan, src_ip, dst_ip, src_port: sp, dst_port: dp, ttl, dscp, ident };
        let mut buf = [0u8; 1500];
        let n = emit_udp_frame(&mut buf, &spec, &body).unwrap();
        let h = etherparse::PacketHeaders::from_ethernet_slice(&buf[..n]).unwrap();
        let Some(etherparse::LinkHeader::Ethernet2(eth)) = h.link.clone() else { panic!("no ethernet") };
        prop_assert_eq!((eth.source, eth.destination), (src_mac.0, dst_mac.0));
        let theirs_vlan = h.vlan().map(|v| match v {
            etherparse::VlanHeader::Single(s) => VlanTag { pcp: s.pcp.value(), dei: s.drop_eligible_indicator, vid: s.vlan_id.value() },
            etherparse::VlanHeader::Double(_) => panic!("double tag"),
        });
        prop_assert_eq!(theirs_vlan, vlan);
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = h.net.clone() else { panic!("no ipv4") };
        prop_assert_eq!((ip.source, ip.destination), (src_ip.octets(), dst_ip.octets()));
        prop_assert_eq!((ip.time_to_live, ip.identification, ip.dscp.value()), (ttl, ident, dscp));
        prop_assert!(ip.dont_fragment);
        prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let Some(etherparse::TransportHeader::Udp(udp)) = h.transport.clone() else { panic!("no udp") };
        prop_assert_eq!((udp.source_port, udp.destination_port), (sp, dp));
        prop_assert_eq!(usize::from(udp.length), 8 + body.len());
        let expected = udp.calc_checksum_ipv4(&ip, &body).unwrap();
        prop_assert_eq!(udp.checksum, expected);
        prop_assert_eq!(h.payload.slice(), &body[..]);
    }

    #[test]
    fn emitted_tcp_segments_read_the_same_in_etherparse(
        src in ipv4(), dst in ipv4(), sp in any::<u16>(), dp in any::<u16>(),
        seq in any::<u32>(), ack in any::<u32>(), flags in 0u16..0x100, window in any::<u16>(),
        mss in proptest::option::of(any::<u16>()), ws in proptest::option::of(any::<u8>()),
        sack in any::<bool>(), ts in proptest::option::of(any::<(u32, u32)>()),
        body in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        let repr = TcpRepr {
            src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags: TcpFlags(flags),
            window, urgent: 0, max_seg_size: mss, window_scale: ws, sack_permitted: sack,
            timestamps: ts, payload_len: body.len() as u16,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        buf[repr.header_len()..].copy_from_slice(&body);
        repr.emit(&mut buf, src, dst).unwrap();
        let t = TcpHeaderSlice::from_slice(&buf).unwrap();
        prop_assert_eq!((t.source_port(), t.destination_port()), (sp, dp));
        prop_assert_eq!((t.sequence_number(), t.acknowledgment_number()), (seq, ack));
        prop_assert_eq!(t.syn(), repr.flags.contains(TcpFlags::SYN));
        prop_assert_eq!(t.ack(), repr.flags.contains(TcpFlags::ACK));
        prop_assert_eq!(t.window_size(), window);
        let mut seen = (None, None, false, None);
        for o in t.options_iterator() {
            match o.unwrap() {
                TcpOptionElement::MaximumSegmentSize(m) => seen.0 = Some(m),
                TcpOptionElement::WindowScale(s) => seen.1 = Some(s),
                TcpOptionElement::SelectiveAcknowledgementPermitted => seen.2 = true,
                TcpOptionElement::Timestamp(a, b) => seen.3 = Some((a, b)),
                _ => {}
            }
        }
        prop_assert_eq!(seen, (mss, ws, sack, ts));
        let expected = t.calc_checksum_ipv4_raw(src.octets(), dst.octets(), &body).unwrap();
        prop_assert_eq!(t.checksum(), expected);
    }

    #[test]
    fn emitted_arp_reads_the_same_in_etherparse(reply in any::<bool>(), sm in mac(), si in ipv4(), tm in mac(), ti in ipv4()) {
        let operation = if reply { ArpOperation::REPLY } else { ArpOperation::REQUEST };
        let repr = ArpRepr { operation, sender_mac: sm, sender_ip: si, target_mac: tm, target_ip: ti };
        let mut buf = [0u8; 28];
        repr.emit(&mut buf).unwrap();
        let a = ArpPacketSlice::from_slice(&buf).unwrap();
        prop_assert_eq!(a.operation().0, operation.0);
        prop_assert_eq!(a.sender_hw_addr(), &sm.0[..]);
        prop_assert_eq!(a.sender_protocol_addr(), &si.octets()[..]);
        prop_assert_eq!(a.target_hw_addr(), &tm.0[..]);
        prop_assert_eq!(a.target_protocol_addr(), &ti.octets()[..]);
    }

    #[test]
    fn emitted_icmp_reads_the_same_in_etherparse(
        kind in 0u8..4, a in any::<u16>(), b in any::<u16>(), code in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let data_len = body.len() as u16;
        let repr = match kind {
            0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b, data_len },
            1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b, data_len },
            2 => Icmpv4Repr::DstUnreachable { reason: DstUnreachable(code), next_hop_mtu: b, data_len },
            _ => Icmpv4Repr::TimeExceeded { reason: TimeExceeded(code), data_len },
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        buf[8..].copy_from_slice(&body);
        repr.emit(&mut buf).unwrap();
        let i = Icmpv4Slice::from_slice(&buf).unwrap();
        let (ty, c) = match repr {
            Icmpv4Repr::EchoRequest { .. } => (8, 0),
            Icmpv4Repr::EchoReply { .. } => (0, 0),
            Icmpv4Repr::DstUnreachable { reason, .. } => (3, reason.0),
            Icmpv4Repr::TimeExceeded { reason, .. } => (11, reason.0),
        };
        prop_assert_eq!((i.type_u8(), i.code_u8()), (ty, c));
        prop_assert_eq!(raw_icmp_checksum(&buf), i.checksum());
        if matches!(repr, Icmpv4Repr::EchoRequest { .. } | Icmpv4Repr::EchoReply { .. }) {
            let mut h = i.header();
            h.update_checksum(i.payload());
            prop_assert_eq!(h.checksum, i.checksum());
        }
        prop_assert_eq!(i.payload(), &body[..]);
    }

    #[test]
    fn emitted_ipv6_reads_the_same_in_etherparse(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(), hl in any::<u8>(),
        tc in any::<u8>(), fl in 0u32..(1 << 20), len in 0u16..200,
    ) {
        let repr = Ipv6Repr {
            src_addr: Ipv6Addr::from(src), dst_addr: Ipv6Addr::from(dst), next_header: IpProtocol(nh),
            payload_len: len, hop_limit: hl, traffic_class: tc, flow_label: fl,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        let h = Ipv6HeaderSlice::from_slice(&buf).unwrap();
        prop_assert_eq!((h.traffic_class(), h.flow_label().value()), (tc, fl));
        prop_assert_eq!((h.payload_length(), h.next_header().0, h.hop_limit()), (len, nh, hl));
        prop_assert_eq!((h.source(), h.destination()), (src, dst));
    }
}
