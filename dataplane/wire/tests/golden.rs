//! Golden bytes: real frames captured from Linux, checked field by field, and re-emitted from
//! their Reprs byte for byte.

mod common;

use common::*;
use tandem_wire::icmpv4::{self, message};
use tandem_wire::*;

const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn ipv4_of(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EtherType::IPV4);
    Ipv4Packet::new_checked(&frame[eth.header_len()..]).unwrap()
}

/// Parses Ethernet, IPv4 and the L4 header into Reprs and emits them again, inside-out, into a
/// fresh buffer holding only the copied L4 payload. Proves that parse and emit agree with a real
/// stack down to every byte (options, flags, checksums).
fn reemit_ipv4(frame: &[u8]) -> Vec<u8> {
    let eth_frame = EthernetFrame::new_checked(frame).unwrap();
    let eth = EthernetRepr::parse(&eth_frame).unwrap();
    let ip_pkt = Ipv4Packet::new_checked(eth_frame.payload()).unwrap();
    let ip = Ipv4Repr::parse(&ip_pkt).unwrap();
    let mut out = vec![0u8; eth.buffer_len() + ip.buffer_len()];
    let l3 = eth.buffer_len();
    let l4 = l3 + ip.header_len();
    let (src, dst) = (ip.src_addr, ip.dst_addr);
    match ip.protocol {
        IpProtocol::UDP => {
            let p = UdpPacket::new_checked(ip_pkt.payload()).unwrap();
            let r = UdpRepr::parse(&p).unwrap();
            out[l4 + 8..].copy_from_slice(p.payload());
            assert_eq!(r.emit(&mut out[l4..], src, dst), Ok(8));
        }
        IpProtocol::TCP => {
            let p = TcpPacket::new_checked(ip_pkt.payload()).unwrap();
            let r = TcpRepr::parse(&p).unwrap();
            out[l4 + r.header_len()..].copy_from_slice(p.payload());
            assert_eq!(r.emit(&mut out[l4..], src, dst), Ok(r.header_len()));
        }
        IpProtocol::ICMP => {
            let p = Icmpv4Packet::new_checked(ip_pkt.payload()).unwrap();
            let r = Icmpv4Repr::parse(&p).unwrap();
            out[l4 + 8..].copy_from_slice(p.data());
            assert_eq!(r.emit(&mut out[l4..]), Ok(8));
        }
        other => panic!("unexpected protocol {other}"),
    }
    assert_eq!(ip.emit(&mut out[l3..]), Ok(20));
    assert_eq!(eth.emit(&mut out), Ok(l3));
    out
}

#[test]
fn mac_display_and_classes() {
    assert_eq!(
        MacAddr([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]).to_string(),
        "aa:bb:cc:0d:ee:ff"
    );
    assert_eq!(format!("{:?}", MAC_A), "02:00:00:00:00:01");
    assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
    assert!(MacAddr([0x33, 0x33, 0, 0, 0, 0x16]).is_multicast());
    assert!(!MacAddr([0x33, 0x33, 0, 0, 0, 0x16]).is_broadcast());
    assert!(MAC_A.is_unicast() && MAC_A.is_local() && !MAC_A.is_zero());
    assert!(MacAddr::ZERO.is_zero());
}

#[test]
fn golden_arp_request() {
    let eth = EthernetFrame::new_checked(ARP_REQUEST).unwrap();
    assert_eq!(eth.dst(), MacAddr::BROADCAST);
    assert_eq!(eth.src(), MAC_A);
    assert_eq!(eth.ethertype(), EtherType::ARP);
    assert_eq!(eth.vlan(), None);
    assert_eq!(eth.header_len(), 14);
    let arp = ArpPacket::new_checked(eth.payload()).unwrap();
    assert_eq!(arp.hardware_type(), 1);
    assert_eq!(arp.protocol_type(), 0x0800);
    assert_eq!(arp.operation(), ArpOperation::REQUEST);
    assert_eq!(arp.sender_mac(), MAC_A);
    assert_eq!(arp.sender_ip(), IP_A);
    assert_eq!(arp.target_mac(), MacAddr::ZERO);
    assert_eq!(arp.target_ip(), IP_B);
    let repr = ArpRepr::parse(&arp).unwrap();
    assert_eq!(repr, ArpRepr::request(MAC_A, IP_A, IP_B));
    assert!(!repr.is_gratuitous());

    let mut buf = [0u8; 64];
    let n = emit_arp_frame(&mut buf, MAC_A, MacAddr::BROADCAST, None, &repr).unwrap();
    assert_eq!(&buf[..n], ARP_REQUEST);
}

#[test]
fn golden_arp_reply_is_built_from_the_request() {
    let arp = ArpPacket::new_checked(&ARP_REQUEST[14..]).unwrap();
    let reply = ArpRepr::parse(&arp).unwrap().reply(MAC_B);
    assert_eq!(
        reply,
        ArpRepr::parse(&ArpPacket::new_checked(&ARP_REPLY[14..]).unwrap()).unwrap()
    );
    let mut buf = [0u8; 64];
    let n = emit_arp_frame(&mut buf, MAC_B, MAC_A, None, &reply).unwrap();
    assert_eq!(&buf[..n], ARP_REPLY);
}

#[test]
fn gratuitous_arp_forms() {
    let vmac = MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, 0x07]);
    let vip = Ipv4Addr::new(198, 18, 1, 1);
    let mut buf = [0u8; 64];
    let n = emit_arp_frame(
        &mut buf,
        vmac,
        MacAddr::BROADCAST,
        None,
        &ArpRepr::gratuitous_request(vmac, vip),
    )
    .unwrap();
    #[rustfmt::skip]
    let expected: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x07, 0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
        0x00, 0x00, 0x5e, 0x00, 0x01, 0x07, 198, 18, 1, 1,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 198, 18, 1, 1,
    ];
    assert_eq!(&buf[..n], &expected);
    let reply = ArpRepr::gratuitous_reply(vmac, vip);
    assert_eq!(reply.operation, ArpOperation::REPLY);
    assert_eq!(reply.target_mac, vmac);
    assert!(reply.is_gratuitous());
}

#[test]
fn golden_icmp_echo_request() {
    let ip = ipv4_of(ICMP_ECHO_REQUEST);
    assert_eq!(ip.version(), 4);
    assert_eq!(ip.header_len(), 20);
    assert_eq!((ip.dscp(), ip.ecn()), (0, 0));
    assert_eq!(ip.total_len(), 84);
    assert_eq!(ip.ident(), 28511);
    assert!(ip.dont_frag() && !ip.more_frags() && !ip.is_fragment());
    assert_eq!(ip.frag_offset(), 0);
    assert_eq!(ip.ttl(), 64);
    assert_eq!(ip.protocol(), IpProtocol::ICMP);
    assert_eq!(ip.checksum(), 0x3f22);
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (IP_A, IP_B));
    assert!(ip.options().is_empty());

    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (message::ECHO_REQUEST, 0));
    assert_eq!(icmp.checksum(), 0x97c4);
    assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (15047, 1));
    assert_eq!(icmp.data().len(), 56);
    assert_eq!(&icmp.data()[16..], &(0x10..0x38).collect::<Vec<u8>>()[..]);
    assert_eq!(
        Icmpv4Repr::parse(&icmp),
        Ok(Icmpv4Repr::EchoRequest {
            ident: 15047,
            seq_no: 1,
            data_len: 56
        })
    );
    assert_eq!(reemit_ipv4(ICMP_ECHO_REQUEST), ICMP_ECHO_REQUEST);
}

#[test]
fn golden_icmp_echo_reply_in_place_matches_linux() {
    let mut frame = ICMP_ECHO_REQUEST.to_vec();
    let n = echo_reply_in_place(&mut frame, 64).unwrap();
    assert_eq!(n, ICMP_ECHO_REPLY.len());
    // The ICMP message is exactly Linux's reply (type, checksum, id, seq, data).
    assert_eq!(&frame[34..], &ICMP_ECHO_REPLY[34..]);
    // Ethernet and addresses match; Linux picks a fresh IP ident and clears DF, we keep the
    // request's, so compare the rest of the IPv4 header field by field.
    assert_eq!(&frame[..14], &ICMP_ECHO_REPLY[..14]);
    let ours = ipv4_of(&frame);
    let linux = ipv4_of(ICMP_ECHO_REPLY);
    assert!(ours.verify_checksum());
    assert_eq!(
        (ours.src_addr(), ours.dst_addr()),
        (linux.src_addr(), linux.dst_addr())
    );
    assert_eq!(
        (ours.ttl(), ours.total_len()),
        (linux.ttl(), linux.total_len())
    );
    let reply = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(ours.payload()).unwrap()).unwrap();
    assert_eq!(
        reply,
        Icmpv4Repr::EchoReply {
            ident: 15047,
            seq_no: 1,
            data_len: 56
        }
    );
    // A reply is not a request: converting twice is refused and changes nothing.
    let before = frame.clone();
    assert_eq!(echo_reply_in_place(&mut frame, 64), Err(Error::Unsupported));
    assert_eq!(frame, before);
    assert_eq!(reemit_ipv4(ICMP_ECHO_REPLY), ICMP_ECHO_REPLY);
}

#[test]
fn golden_tcp_syn_with_linux_options() {
    let ip = ipv4_of(TCP_SYN);
    assert_eq!(
        (ip.ident(), ip.total_len(), ip.protocol()),
        (14511, 60, IpProtocol::TCP)
    );
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (56488, 80));
    assert_eq!(tcp.seq_number(), 1661754153);
    assert_eq!(tcp.ack_number(), 0);
    assert_eq!(tcp.header_len(), 40);
    assert_eq!(tcp.flags(), TcpFlags::SYN);
    assert_eq!(format!("{:?}", tcp.flags()), "[S]");
    assert_eq!(tcp.window(), 64240);
    assert_eq!(tcp.checksum(), 0x8a93);
    assert_eq!(tcp.urgent(), 0);
    assert!(tcp.payload().is_empty());
    assert!(tcp.verify_checksum(IP_A, IP_B));
    assert!(!tcp.verify_checksum(IP_A, Ipv4Addr::new(198, 18, 0, 3)));
    let opts: Vec<_> = tcp.options().collect();
    assert_eq!(
        opts,
        [
            TcpOption::MaxSegmentSize(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamps {
                tsval: 1023630879,
                tsecr: 0
            },
            TcpOption::NoOperation,
            TcpOption::WindowScale(10),
        ]
    );
    let repr = TcpRepr::parse(&tcp).unwrap();
    assert_eq!(repr.max_seg_size, Some(1460));
    assert_eq!(repr.window_scale, Some(10));
    assert!(repr.sack_permitted);
    assert_eq!(repr.timestamps, Some((1023630879, 0)));
    // Our canonical option layout is Linux's, so the whole SYN re-emits identically.
    assert_eq!(reemit_ipv4(TCP_SYN), TCP_SYN);
}

#[test]
fn golden_tcp_rst_ack() {
    let ip = ipv4_of(TCP_RST_ACK);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 56488));
    assert_eq!((tcp.seq_number(), tcp.ack_number()), (0, 1661754154));
    assert_eq!(tcp.flags(), TcpFlags::RST | TcpFlags::ACK);
    assert!(tcp.flags().contains(TcpFlags::RST) && !tcp.flags().intersects(TcpFlags::SYN));
    assert_eq!((tcp.header_len(), tcp.window()), (20, 0));
    assert!(tcp.verify_checksum(IP_B, IP_A));
    assert_eq!(reemit_ipv4(TCP_RST_ACK), TCP_RST_ACK);
}

#[test]
fn golden_udp() {
    let ip = ipv4_of(UDP);
    assert_eq!(
        (ip.ident(), ip.total_len(), ip.protocol()),
        (6842, 34, IpProtocol::UDP)
    );
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (50612, 9, 14));
    assert_eq!(udp.checksum(), 0x65b9);
    assert_eq!(udp.payload(), b"tandem");
    assert!(udp.verify_checksum(IP_A, IP_B));
    assert_eq!(reemit_ipv4(UDP), UDP);

    // The builder produces the same frame from a spec.
    let spec = UdpFrame {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        vlan: None,
        src_ip: IP_A,
        dst_ip: IP_B,
        src_port: 50612,
        dst_port: 9,
        ttl: 64,
        dscp: 0,
        ident: 6842,
    };
    let mut buf = [0u8; 128];
    let n = emit_udp_frame(&mut buf, &spec, b"tandem").unwrap();
    assert_eq!(&buf[..n], UDP);
    assert_eq!(spec.payload_offset(), 42);
    assert_eq!(
        emit_udp_frame(&mut buf[..47], &spec, b"tandem"),
        Err(Error::Truncated)
    );
}

#[test]
fn golden_icmp_port_unreachable_matches_our_error_builder() {
    let ip = ipv4_of(ICMP_PORT_UNREACHABLE);
    assert_eq!((ip.dscp(), ip.total_len(), ip.dont_frag()), (48, 62, false));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.is_error());
    assert_eq!(icmp.checksum(), 0x8944);
    assert_eq!(
        Icmpv4Repr::parse(&icmp),
        Ok(Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::PORT_UNREACHABLE,
            next_hop_mtu: 0,
            data_len: 34
        })
    );
    // The quote is the whole offending datagram as Linux received it.
    assert_eq!(icmp.data(), &UDP[14..]);
    assert_eq!(reemit_ipv4(ICMP_PORT_UNREACHABLE), ICMP_PORT_UNREACHABLE);

    // Our builder answering the same UDP frame produces the same ICMP message; the IPv4 header
    // differs only in ident and DF (Linux: fresh ident, no DF; tandem: ident 0, DF).
    let mut buf = [0u8; 128];
    let error = IcmpError::DstUnreachable(DstUnreachable::PORT_UNREACHABLE, 0);
    let n = emit_icmpv4_error_frame(&mut buf, MAC_B, IP_B, 64, error, UDP).unwrap();
    assert_eq!(n, ICMP_PORT_UNREACHABLE.len());
    assert_eq!(&buf[..14], &ICMP_PORT_UNREACHABLE[..14]);
    assert_eq!(&buf[34..n], &ICMP_PORT_UNREACHABLE[34..]);
    let ours = ipv4_of(&buf[..n]);
    assert!(ours.verify_checksum());
    assert_eq!(
        (ours.dscp(), ours.ttl(), ours.protocol()),
        (48, 64, IpProtocol::ICMP)
    );
    assert_eq!((ours.src_addr(), ours.dst_addr()), (IP_B, IP_A));
}

#[test]
fn ttl_decrement_and_time_exceeded() {
    let mut frame = ICMP_ECHO_REQUEST.to_vec();
    {
        let mut ip = Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
        assert_eq!(ip.decrement_ttl(), Some(63));
        assert!(ip.verify_checksum());
        ip.set_ttl(1);
        ip.fill_checksum();
        let snapshot = ip.header_bytes().to_vec();
        assert_eq!(ip.decrement_ttl(), None);
        assert_eq!(
            ip.header_bytes(),
            &snapshot[..],
            "TTL 1 must be left untouched"
        );
    }
    let router_mac = MacAddr([2, 0, 0, 0, 0, 0xfe]);
    let router_ip = Ipv4Addr::new(198, 18, 0, 254);
    let mut buf = [0u8; 700];
    let error = IcmpError::TimeExceeded(TimeExceeded::TTL_EXCEEDED);
    let n = emit_icmpv4_error_frame(&mut buf, router_mac, router_ip, 64, error, &frame).unwrap();
    let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (router_mac, MAC_A));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip).unwrap();
    assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (router_ip, IP_A));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        Icmpv4Repr::parse(&icmp),
        Ok(Icmpv4Repr::TimeExceeded {
            reason: TimeExceeded::TTL_EXCEEDED,
            data_len: 84
        })
    );
    // RFC 1812 4.3.2.3: the quote is the datagram as received (TTL 1 here), header and all.
    assert_eq!(icmp.data(), &frame[14..]);
}

#[test]
fn time_exceeded_quote_is_capped_at_576_bytes() {
    let spec = UdpFrame {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        vlan: Some(VlanTag {
            pcp: 3,
            dei: false,
            vid: 42,
        }),
        src_ip: IP_A,
        dst_ip: Ipv4Addr::new(198, 19, 0, 9),
        src_port: 1,
        dst_port: 2,
        ttl: 1,
        dscp: 0,
        ident: 7,
    };
    let mut big = [0u8; 1518];
    let n = emit_udp_frame(&mut big, &spec, &[0xab; 1472]).unwrap();
    assert_eq!(n, 1518);
    let mut buf = [0u8; 1600];
    let error = IcmpError::TimeExceeded(TimeExceeded::TTL_EXCEEDED);
    let m = emit_icmpv4_error_frame(&mut buf, MAC_B, IP_B, 64, error, &big[..n]).unwrap();
    let eth = EthernetFrame::new_checked(&buf[..m]).unwrap();
    assert_eq!(
        eth.vlan(),
        spec.vlan,
        "the error goes back on the VLAN it came from"
    );
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.total_len(), 576);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.data().len(), icmpv4::MAX_QUOTE_LEN);
    assert_eq!(icmp.data(), &big[18..18 + icmpv4::MAX_QUOTE_LEN]);
}

#[test]
fn icmp_errors_are_not_sent_where_rfc1812_forbids() {
    let allowed = |frame: &[u8]| icmpv4::icmp_error_allowed(&ipv4_of(frame));
    assert!(allowed(UDP));
    assert!(allowed(ICMP_ECHO_REQUEST));
    assert!(
        !allowed(ICMP_PORT_UNREACHABLE),
        "never an error about an error"
    );
    let patched = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
        let mut frame = UDP.to_vec();
        f(&mut Ipv4Packet::new_checked(&mut frame[14..]).unwrap());
        allowed(&frame)
    };
    assert!(!patched(&|ip| ip.set_dst_addr(Ipv4Addr::BROADCAST)));
    assert!(!patched(&|ip| ip.set_dst_addr(Ipv4Addr::new(224, 0, 0, 5))));
    assert!(!patched(&|ip| ip.set_src_addr(Ipv4Addr::UNSPECIFIED)));
    assert!(!patched(&|ip| ip.set_src_addr(Ipv4Addr::LOCALHOST)));
    assert!(!patched(&|ip| ip.set_src_addr(Ipv4Addr::new(240, 0, 0, 1))));
    // A non-initial fragment (offset 8 bytes).
    let mut frame = UDP.to_vec();
    frame[14 + 6] = 0x00;
    frame[14 + 7] = 0x01;
    assert!(!allowed(&frame));
    // And the frame builder refuses link-layer broadcast frames.
    let mut frame = UDP.to_vec();
    frame[..6].copy_from_slice(&[0xff; 6]);
    let mut buf = [0u8; 128];
    let error = IcmpError::TimeExceeded(TimeExceeded::TTL_EXCEEDED);
    assert_eq!(
        emit_icmpv4_error_frame(&mut buf, MAC_B, IP_B, 64, error, &frame),
        Err(Error::Unsupported)
    );
}

#[test]
fn golden_vlan_tagged_frame() {
    let tci = (5 << 13) | 0x1000 | 100;
    let frame = tagged(UDP, tci);
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert!(eth.is_tagged());
    assert_eq!(
        eth.vlan(),
        Some(VlanTag {
            pcp: 5,
            dei: true,
            vid: 100
        })
    );
    assert_eq!(eth.ethertype(), EtherType::IPV4);
    assert_eq!(eth.header_len(), 18);
    assert_eq!(eth.payload(), &UDP[14..]);
    let repr = EthernetRepr::parse(&eth).unwrap();
    let mut hdr = [0u8; 18];
    assert_eq!(repr.emit(&mut hdr), Ok(18));
    assert_eq!(hdr, frame[..18]);
    // Truncated inside the tag.
    assert_eq!(
        EthernetFrame::new_checked(&frame[..16]).err(),
        Some(Error::Truncated)
    );
    // QinQ is not decoded: the inner TPID is reported as the EtherType.
    let qinq = tagged(&frame, 200);
    assert_eq!(
        EthernetFrame::new_checked(&qinq[..]).unwrap().ethertype(),
        EtherType::VLAN
    );
}

#[test]
fn golden_ipv6_fixed_headers() {
    let eth = EthernetFrame::new_checked(IPV6_NS).unwrap();
    assert_eq!(eth.ethertype(), EtherType::IPV6);
    assert_eq!(eth.dst(), MacAddr([0x33, 0x33, 0xff, 0, 0, 1]));
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(
        (ip.version(), ip.traffic_class(), ip.flow_label()),
        (6, 0, 0)
    );
    assert_eq!(
        (ip.payload_len(), ip.next_header(), ip.hop_limit()),
        (32, IpProtocol::ICMPV6, 255)
    );
    assert_eq!(ip.src_addr(), Ipv6Addr::UNSPECIFIED);
    assert_eq!(ip.dst_addr(), "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(ip.payload()[0], 135, "neighbour solicitation");

    let rs = Ipv6Packet::new_checked(&IPV6_RS[14..]).unwrap();
    assert_eq!(
        rs.src_addr(),
        "fe80::ff:fe00:1".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(rs.dst_addr(), "ff02::2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(rs.payload().len(), 16);

    // Extension headers are not walked: an MLD report behind hop-by-hop options reports HOPOPT.
    let mld = Ipv6Packet::new_checked(&IPV6_MLD_HBH[14..]).unwrap();
    assert_eq!(
        (mld.next_header(), mld.hop_limit(), mld.payload_len()),
        (IpProtocol::HOPOPT, 1, 36)
    );

    for frame in [IPV6_NS, IPV6_RS, IPV6_MLD_HBH] {
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let repr = Ipv6Repr::parse(&ip).unwrap();
        let mut out = frame[14..].to_vec();
        out[..40].fill(0);
        assert_eq!(repr.emit(&mut out), Ok(40));
        assert_eq!(out, &frame[14..]);
    }
}

#[test]
fn malformed_headers_are_classified() {
    let ip = &UDP[14..];
    // Wrong version.
    let mut v = ip.to_vec();
    v[0] = 0x65;
    assert_eq!(
        Ipv4Packet::new_checked(&v[..]).err(),
        Some(Error::Malformed)
    );
    // IHL below 5.
    v[0] = 0x44;
    assert_eq!(
        Ipv4Packet::new_checked(&v[..]).err(),
        Some(Error::Malformed)
    );
    // Total length beyond the buffer.
    assert_eq!(
        Ipv4Packet::new_checked(&ip[..33]).err(),
        Some(Error::Truncated)
    );
    // Bad header checksum: the view accepts it, the Repr does not.
    let mut v = ip.to_vec();
    v[10] ^= 1;
    let p = Ipv4Packet::new_checked(&v[..]).unwrap();
    assert!(!p.verify_checksum());
    assert_eq!(Ipv4Repr::parse(&p), Err(Error::Checksum));
    // UDP length below 8 / beyond the buffer.
    let mut u = ip[20..].to_vec();
    u[5] = 7;
    assert_eq!(UdpPacket::new_checked(&u[..]).err(), Some(Error::Malformed));
    u[5] = 15;
    assert_eq!(UdpPacket::new_checked(&u[..]).err(), Some(Error::Truncated));
    // ARP for another hardware type.
    let mut a = ARP_REQUEST[14..].to_vec();
    a[1] = 6;
    assert_eq!(
        ArpPacket::new_checked(&a[..]).err(),
        Some(Error::Unsupported)
    );
    // An 802.3 length field in place of an EtherType.
    let mut e = ARP_REQUEST.to_vec();
    e[12..14].copy_from_slice(&[0x00, 0x26]);
    let f = EthernetFrame::new_checked(&e[..]).unwrap();
    assert_eq!(EthernetRepr::parse(&f), Err(Error::Unsupported));
    // Error indices are dense, for counter arrays.
    let all = [
        Error::Truncated,
        Error::Malformed,
        Error::Checksum,
        Error::Unsupported,
    ];
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.index(), i);
    }
    assert_eq!(Error::COUNT, all.len());
    assert_eq!(Error::Checksum.as_str(), "checksum");
}

#[test]
fn nat_style_rewrites_keep_checksums_valid() {
    let mut frame = TCP_SYN.to_vec();
    let new_src = Ipv4Addr::new(198, 19, 255, 1);
    {
        let mut ip = Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
        let old = ip.rewrite_src_addr(new_src);
        assert_eq!(old, IP_A);
        assert!(ip.verify_checksum());
        let mut tcp = TcpPacket::new_checked(ip.payload_mut()).unwrap();
        tcp.update_checksum_u32(old.to_bits(), new_src.to_bits());
        let old_port = tcp.src_port();
        tcp.set_src_port(40000);
        tcp.update_checksum_u16(old_port, 40000);
    }
    let ip = ipv4_of(&frame);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(new_src, IP_B));

    let mut frame = UDP.to_vec();
    {
        let mut ip = Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
        let old = ip.rewrite_dst_addr(new_src);
        let mut udp = UdpPacket::new_checked(ip.payload_mut()).unwrap();
        udp.update_checksum_u32(old.to_bits(), new_src.to_bits());
    }
    let ip = ipv4_of(&frame);
    assert!(ip.verify_checksum());
    assert!(UdpPacket::new_checked(ip.payload())
        .unwrap()
        .verify_checksum(IP_A, new_src));
}
