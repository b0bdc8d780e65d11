//! Round trips: Repr → emit → new_checked → parse == Repr, for every format, with payloads in
//! place and checksums verified on the way back.

use proptest::prelude::*;
use tandem_wire::*;

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn vlan() -> impl Strategy<Value = Option<VlanTag>> {
    proptest::option::of(
        (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| VlanTag { pcp, dei, vid }),
    )
}

fn ethernet_repr() -> impl Strategy<Value = EthernetRepr> {
    (mac(), mac(), vlan(), EtherType::MIN_TYPE..=u16::MAX)
        // Untagged with EtherType 0x8100 would itself read as a tag.
        .prop_filter("untagged 802.1Q", |(_, _, v, t)| {
            v.is_some() || *t != EtherType::VLAN.0
        })
        .prop_map(|(src, dst, vlan, t)| EthernetRepr {
            src,
            dst,
            vlan,
            ethertype: EtherType(t),
        })
}

fn ipv4_repr(payload_len: impl Strategy<Value = u16>) -> impl Strategy<Value = Ipv4Repr> {
    (
        (ipv4(), ipv4(), any::<u8>(), payload_len, any::<u8>()),
        (
            0u8..64,
            0u8..4,
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
            0u16..8192,
        ),
    )
        .prop_map(
            |((src, dst, proto, payload_len, ttl), (dscp, ecn, ident, df, mf, off))| Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: IpProtocol(proto),
                payload_len,
                ttl,
                dscp,
                ecn,
                ident,
                dont_frag: df,
                more_frags: mf,
                frag_offset: off * 8,
            },
        )
}

fn tcp_repr() -> impl Strategy<Value = TcpRepr> {
    (
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            0u16..0x1000,
            any::<u16>(),
        ),
        (
            any::<u16>(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
        ),
    )
        .prop_map(
            |((sp, dp, seq, ack, flags, window), (urgent, mss, ws, sack, ts))| TcpRepr {
                src_port: sp,
                dst_port: dp,
                seq_number: seq,
                ack_number: ack,
                flags: TcpFlags(flags),
                window,
                urgent,
                max_seg_size: mss,
                window_scale: ws,
                sack_permitted: sack,
                timestamps: ts,
                payload_len: 0,
            },
        )
}

fn icmp_repr() -> impl Strategy<Value = Icmpv4Repr> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(ident, seq_no)| Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data_len: 0
        }),
        (any::<u16>(), any::<u16>()).prop_map(|(ident, seq_no)| Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data_len: 0
        }),
        (any::<u8>(), any::<u16>()).prop_map(|(c, mtu)| Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable(c),
            next_hop_mtu: mtu,
            data_len: 0
        }),
        any::<u8>().prop_map(|c| Icmpv4Repr::TimeExceeded {
            reason: TimeExceeded(c),
            data_len: 0
        }),
    ]
}

fn with_data_len(r: Icmpv4Repr, n: u16) -> Icmpv4Repr {
    match r {
        Icmpv4Repr::EchoRequest { ident, seq_no, .. } => Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data_len: n,
        },
        Icmpv4Repr::EchoReply { ident, seq_no, .. } => Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data_len: n,
        },
        Icmpv4Repr::DstUnreachable {
            reason,
            next_hop_mtu,
            ..
        } => Icmpv4Repr::DstUnreachable {
            reason,
            next_hop_mtu,
            data_len: n,
        },
        Icmpv4Repr::TimeExceeded { reason, .. } => Icmpv4Repr::TimeExceeded {
            reason,
            data_len: n,
        },
    }
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..1500)
}

proptest! {
    #[test]
    fn ethernet_round_trip(repr in ethernet_repr(), body in payload()) {
        let mut buf = vec![0u8; repr.buffer_len() + body.len()];
        buf[repr.buffer_len()..].copy_from_slice(&body);
        prop_assert_eq!(repr.emit(&mut buf), Ok(repr.buffer_len()));
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&f), Ok(repr));
        prop_assert_eq!(f.payload(), &body[..]);
        // emit never panics on a short buffer.
        prop_assert_eq!(repr.emit(&mut buf[..repr.buffer_len() - 1]), Err(Error::Truncated));
    }

    #[test]
    fn arp_round_trip(reply in any::<bool>(), sm in mac(), si in ipv4(), tm in mac(), ti in ipv4()) {
        let operation = if reply { ArpOperation::REPLY } else { ArpOperation::REQUEST };
        let repr = ArpRepr { operation, sender_mac: sm, sender_ip: si, target_mac: tm, target_ip: ti };
        let mut buf = [0u8; 28];
        prop_assert_eq!(repr.emit(&mut buf), Ok(28));
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
        prop_assert_eq!(repr.emit(&mut buf[..27]), Err(Error::Truncated));
    }

    #[test]
    fn ipv4_round_trip(repr in ipv4_repr(prop_oneof![0u16..1500, 0u16..=65515])) {
        let mut buf = vec![0u8; repr.buffer_len()];
        prop_assert_eq!(repr.emit(&mut buf), Ok(20));
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(Ipv4Repr::parse(&p), Ok(repr));
        prop_assert_eq!(p.payload().len(), usize::from(repr.payload_len));
        prop_assert_eq!(repr.emit(&mut buf[..repr.buffer_len() - 1]), Err(Error::Truncated));
    }

    #[test]
    fn ipv4_ttl_decrement_keeps_checksum(repr in ipv4_repr(0u16..64)) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        match p.decrement_ttl() {
            None => prop_assert!(repr.ttl <= 1),
            Some(t) => {
                prop_assert_eq!(t, repr.ttl - 1);
                prop_assert!(p.verify_checksum());
                let incremental = p.checksum();
                p.fill_checksum();
                prop_assert_eq!(incremental, p.checksum(), "RFC 1624 update == recompute");
            }
        }
    }

    #[test]
    fn ipv6_round_trip(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(),
        hl in any::<u8>(), tc in any::<u8>(), fl in 0u32..(1 << 20), body in payload(),
    ) {
        let repr = Ipv6Repr {
            src_addr: Ipv6Addr::from(src),
            dst_addr: Ipv6Addr::from(dst),
            next_header: IpProtocol(nh),
            payload_len: body.len() as u16,
            hop_limit: hl,
            traffic_class: tc,
            flow_label: fl,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        buf[40..].copy_from_slice(&body);
        prop_assert_eq!(repr.emit(&mut buf), Ok(40));
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&p), Ok(repr));
        prop_assert_eq!(p.payload(), &body[..]);
    }

    #[test]
    fn udp_round_trip(sp in any::<u16>(), dp in any::<u16>(), src in ipv4(), dst in ipv4(), body in payload()) {
        let repr = UdpRepr { src_port: sp, dst_port: dp, payload_len: body.len() as u16 };
        let mut buf = vec![0u8; repr.buffer_len()];
        buf[8..].copy_from_slice(&body);
        prop_assert_eq!(repr.emit(&mut buf, src, dst), Ok(8));
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_ne!(p.checksum(), 0, "a computed checksum is never sent as 0");
        prop_assert!(p.verify_checksum(src, dst));
        prop_assert_eq!(UdpRepr::parse(&p), Ok(repr));
        prop_assert_eq!(p.payload(), &body[..]);
    }

    #[test]
    fn tcp_round_trip(repr in tcp_repr(), src in ipv4(), dst in ipv4(), body in payload()) {
        let repr = TcpRepr { payload_len: body.len() as u16, ..repr };
        let mut buf = vec![0u8; repr.buffer_len()];
        buf[repr.header_len()..].copy_from_slice(&body);
        prop_assert_eq!(repr.emit(&mut buf, src, dst), Ok(repr.header_len()));
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum(src, dst));
        prop_assert_eq!(TcpRepr::parse(&p), Ok(repr));
        prop_assert_eq!(p.payload(), &body[..]);
        prop_assert_eq!(p.header_len() % 4, 0);
    }

    #[test]
    fn icmpv4_round_trip(repr in icmp_repr(), body in payload()) {
        let repr = with_data_len(repr, body.len() as u16);
        let mut buf = vec![0u8; repr.buffer_len()];
        buf[8..].copy_from_slice(&body);
        prop_assert_eq!(repr.emit(&mut buf), Ok(8));
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));
        prop_assert_eq!(p.data(), &body[..]);
        if let Some(reply) = repr.echo_reply() {
            let mut q = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
            prop_assert!(q.make_echo_reply());
            prop_assert_eq!(Icmpv4Repr::parse(&q), Ok(reply));
        }
    }

    #[test]
    fn udp_frame_builder_round_trip(
        src_mac in mac(), dst_mac in mac(), vlan in vlan(), src_ip in ipv4(), dst_ip in ipv4(),
        sp in any::<u16>(), dp in any::<u16>(), ttl in any::<u8>(), dscp in 0u8..64,
        ident in any::<u16>(), body in payload(),
    ) {
        let spec = UdpFrame { src_mac, dst_mac, vlan, src_ip, dst_ip, src_port: sp, dst_port: dp, ttl, dscp, ident };
        let mut buf = [0u8; 1600];
        let n = emit_udp_frame(&mut buf, &spec, &body).unwrap();
        prop_assert_eq!(n, spec.frame_len(body.len()));
        let f = EthernetFrame::new_checked(&buf[..n]).unwrap();
        prop_assert_eq!(
            EthernetRepr::parse(&f),
            Ok(EthernetRepr { src: src_mac, dst: dst_mac, vlan, ethertype: EtherType::IPV4 })
        );
        let ip = Ipv4Packet::new_checked(f.payload()).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip).unwrap();
        prop_assert_eq!((ip_repr.src_addr, ip_repr.dst_addr, ip_repr.ttl), (src_ip, dst_ip, ttl));
        prop_assert_eq!((ip_repr.dscp, ip_repr.ident, ip_repr.protocol), (dscp, ident, IpProtocol::UDP));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        prop_assert!(udp.verify_checksum(src_ip, dst_ip));
        prop_assert_eq!((udp.src_port(), udp.dst_port()), (sp, dp));
        prop_assert_eq!(udp.payload(), &body[..]);
        prop_assert_eq!(&buf[spec.payload_offset()..n], &body[..]);
        // Any shorter buffer is refused without panicking.
        prop_assert_eq!(emit_udp_frame(&mut buf[..n - 1], &spec, &body), Err(Error::Truncated));
    }

    #[test]
    fn echo_reply_in_place_round_trip(
        mac_a in mac(), mac_b in mac(), a in ipv4(), b in ipv4(),
        ident in any::<u16>(), seq_no in any::<u16>(), ttl in any::<u8>(), body in payload(),
    ) {
        // The request must be unicast to us (our MAC and address become the reply's source).
        let mac_b = MacAddr([mac_b.0[0] & 0xfe, mac_b.0[1], mac_b.0[2], mac_b.0[3], mac_b.0[4], mac_b.0[5]]);
        let b = if b.is_broadcast() || b.is_multicast() { Ipv4Addr::new(198, 18, 0, 2) } else { b };
        let icmp = Icmpv4Repr::EchoRequest { ident, seq_no, data_len: body.len() as u16 };
        let ip = Ipv4Repr::new(a, b, IpProtocol::ICMP, icmp.buffer_len() as u16, 64);
        let eth = EthernetRepr { src: mac_a, dst: mac_b, vlan: None, ethertype: EtherType::IPV4 };
        let mut frame = vec![0u8; 14 + ip.buffer_len()];
        frame[42..].copy_from_slice(&body);
        icmp.emit(&mut frame[34..]).unwrap();
        ip.emit(&mut frame[14..]).unwrap();
        eth.emit(&mut frame).unwrap();
        prop_assert_eq!(echo_reply_in_place(&mut frame, ttl), Ok(frame.len()));
        let f = EthernetFrame::new_checked(&frame[..]).unwrap();
        prop_assert_eq!((f.src(), f.dst()), (mac_b, mac_a));
        let p = Ipv4Packet::new_checked(f.payload()).unwrap();
        let r = Ipv4Repr::parse(&p).unwrap();
        prop_assert_eq!((r.src_addr, r.dst_addr, r.ttl), (b, a, ttl));
        let q = Icmpv4Packet::new_checked(p.payload()).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&q), Ok(icmp.echo_reply().unwrap()));
    }
}
