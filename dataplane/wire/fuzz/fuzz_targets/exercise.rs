//! Drives every parser and accessor of tandem-wire over one input. Shared by the fuzz targets
//! and by the crate's "never panics" property tests (`tests/no_panic.rs` includes this file),
//! so both exercise exactly the same code.
//!
//! Each `dissect_*` function treats the input as that layer's bytes, calls `new_checked`, and
//! when it succeeds reads every getter, runs `Repr::parse`, and on a mutable copy every setter
//! and in-place rewrite; then it recurses into the payload like a receive path would. A panic
//! anywhere is the bug being searched for.
#![allow(dead_code)]

use tandem_wire::icmpv4::{self, DstUnreachable, TimeExceeded};
use tandem_wire::*;

/// Largest input copied for the mutable checks (a stack buffer: no allocation).
const MAX: usize = 2048;

fn with_copy(data: &[u8], f: impl FnOnce(&mut [u8])) {
    let mut buf = [0u8; MAX];
    let n = data.len().min(MAX);
    buf[..n].copy_from_slice(&data[..n]);
    f(&mut buf[..n]);
}

/// Everything, starting from an Ethernet frame; then the same bytes as each inner layer too, so
/// a fuzzer reaches deep parsers without first having to find a valid outer header.
pub fn all(data: &[u8]) {
    dissect_ethernet(data);
    dissect_arp(data);
    dissect_ipv4(data);
    dissect_ipv6(data);
    let a = Ipv4Addr::new(198, 18, 0, 1);
    let b = Ipv4Addr::new(198, 18, 0, 2);
    dissect_udp(data, a, b);
    dissect_tcp(data, a, b);
    dissect_icmpv4(data);
    unchecked_views(data);
    frame_rewrites(data);
}

pub fn dissect_ethernet(data: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (f.dst(), f.src(), f.vlan(), f.is_tagged(), f.header_len());
    let _ = (f.dst().to_string(), f.ethertype().to_string());
    let ty = f.ethertype();
    if let Ok(r) = EthernetRepr::parse(&f) {
        let mut hdr = [0u8; 18];
        assert_eq!(r.emit(&mut hdr), Ok(r.buffer_len()));
        assert_eq!(
            &hdr[..r.buffer_len()],
            &data[..r.buffer_len()],
            "ethernet re-emit"
        );
    }
    match ty {
        EtherType::ARP => dissect_arp(f.payload()),
        EtherType::IPV4 => dissect_ipv4(f.payload()),
        EtherType::IPV6 => dissect_ipv6(f.payload()),
        _ => {}
    }
    with_copy(data, |buf| {
        let mut f = EthernetFrame::new_unchecked(buf);
        f.set_dst(MacAddr::BROADCAST);
        f.set_src(MacAddr::ZERO);
        f.set_vlan(VlanTag {
            pcp: 9,
            dei: true,
            vid: 0xffff,
        });
        f.set_ethertype(EtherType::IPV4);
        let _ = f.payload_mut().len();
    });
}

pub fn dissect_arp(data: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (p.hardware_type(), p.protocol_type(), p.operation());
    let _ = (p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip());
    if let Ok(r) = ArpRepr::parse(&p) {
        let mut out = [0u8; 28];
        assert_eq!(r.emit(&mut out), Ok(28));
        assert_eq!(&out[..], &data[..28], "arp re-emit");
        let _ = (r.reply(MacAddr::ZERO), r.is_gratuitous());
    }
    with_copy(data, |buf| {
        let mut p = ArpPacket::new_unchecked(buf);
        p.set_operation(ArpOperation::REPLY);
        p.set_sender_mac(MacAddr::BROADCAST);
        p.set_sender_ip(Ipv4Addr::BROADCAST);
        p.set_target_mac(MacAddr::ZERO);
        p.set_target_ip(Ipv4Addr::UNSPECIFIED);
    });
}

pub fn dissect_ipv4(data: &[u8]) {
    let Ok(p) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
        p.ident(),
    );
    let _ = (
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
        p.ttl(),
    );
    let _ = (
        p.protocol().to_string(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
    );
    let _ = (
        p.options().len(),
        p.header_bytes().len(),
        p.datagram().len(),
    );
    let _ = (p.verify_checksum(), icmpv4::icmp_error_allowed(&p));
    assert_eq!(
        p.payload().len() + p.header_len(),
        usize::from(p.total_len())
    );
    if let Ok(r) = Ipv4Repr::parse(&p) {
        let mut out = [0u8; 20];
        // emit needs room for the payload too; the header alone is Truncated, never a panic.
        let _ = r.emit(&mut out);
        assert_eq!(r.buffer_len() - r.header_len(), p.payload().len());
    }
    let mut err = [0u8; 600];
    for repr in [
        Icmpv4Repr::time_exceeded(TimeExceeded::TTL_EXCEEDED, p.datagram().len()),
        Icmpv4Repr::dst_unreachable(DstUnreachable::FRAG_NEEDED, 1400, p.datagram().len()),
    ] {
        let n = icmpv4::emit_error(&mut err, Ipv4Addr::new(198, 18, 0, 254), 64, &repr, &p);
        if let Ok(n) = n {
            assert!(n <= 576);
            let e = Ipv4Packet::new_checked(&err[..n]).expect("own ICMP error parses");
            assert!(Ipv4Repr::parse(&e).is_ok());
            let i = Icmpv4Packet::new_checked(e.payload()).expect("own ICMP parses");
            assert_eq!(Icmpv4Repr::parse(&i), Ok(repr));
        }
    }
    let (src, dst) = (p.src_addr(), p.dst_addr());
    match p.protocol() {
        IpProtocol::UDP => dissect_udp(p.payload(), src, dst),
        IpProtocol::TCP => dissect_tcp(p.payload(), src, dst),
        IpProtocol::ICMP => dissect_icmpv4(p.payload()),
        _ => {}
    }
    with_copy(data, |buf| {
        let mut p = Ipv4Packet::new_unchecked(buf);
        let valid = p.verify_checksum();
        let _ = p.decrement_ttl();
        let old = p.rewrite_src_addr(Ipv4Addr::new(198, 19, 0, 1));
        let _ = p.rewrite_dst_addr(old);
        p.swap_addrs();
        if valid && p.header_len() >= 20 {
            assert!(
                p.verify_checksum(),
                "incremental updates keep a valid checksum valid"
            );
        }
        p.set_ttl(0);
        p.set_protocol(IpProtocol::TCP);
        p.set_dscp(0xff);
        p.set_ecn(0xff);
        p.set_ident(1);
        p.set_src_addr(Ipv4Addr::LOCALHOST);
        p.set_dst_addr(Ipv4Addr::LOCALHOST);
        p.fill_checksum();
        p.set_checksum(0);
        let _ = p.payload_mut().len();
    });
}

pub fn dissect_ipv6(data: &[u8]) {
    let Ok(p) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.payload_len(),
    );
    let _ = (
        p.next_header(),
        p.hop_limit(),
        p.src_addr(),
        p.dst_addr(),
        p.payload().len(),
    );
    if let Ok(r) = Ipv6Repr::parse(&p) {
        let mut out = [0u8; MAX];
        if let Some(out) = out.get_mut(..r.buffer_len()) {
            assert_eq!(r.emit(out), Ok(40));
            assert_eq!(&out[..40], &data[..40], "ipv6 re-emit");
        }
    }
}

pub fn dissect_udp(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(p) = UdpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.len(),
        p.is_empty(),
        p.checksum(),
    );
    let _ = (p.payload().len(), p.verify_checksum(src, dst));
    if let Ok(r) = UdpRepr::parse(&p) {
        assert_eq!(r.buffer_len(), usize::from(p.len()));
    }
    with_copy(data, |buf| {
        let mut p = UdpPacket::new_unchecked(buf);
        let valid = p.checksum() != 0 && p.verify_checksum(src, dst);
        let old = p.src_port();
        p.set_src_port(old.wrapping_add(1));
        p.update_checksum_u16(old, old.wrapping_add(1));
        p.update_checksum_u32(u32::from(src), 0x0102_0304);
        if valid {
            assert!(
                p.verify_checksum(Ipv4Addr::new(1, 2, 3, 4), dst),
                "udp incremental update"
            );
        }
        p.set_dst_port(0);
        p.set_len(0);
        p.fill_checksum(src, dst);
        p.set_checksum(0);
        let _ = p.payload_mut().len();
    });
}

pub fn dissect_tcp(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let Ok(p) = TcpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.header_len(),
    );
    let _ = (
        format!("{:?}", p.flags()),
        p.window(),
        p.checksum(),
        p.urgent(),
    );
    let _ = (
        p.options_bytes().len(),
        p.payload().len(),
        p.verify_checksum(src, dst),
    );
    let mut opts = p.options();
    for o in &mut opts {
        let _ = o;
    }
    let _ = opts.malformed();
    if let Ok(r) = TcpRepr::parse(&p) {
        let mut out = [0u8; MAX];
        if let Some(out) = out.get_mut(..r.buffer_len()) {
            assert_eq!(r.emit(out, src, dst), Ok(r.header_len()));
            let q = TcpPacket::new_checked(&*out).expect("own TCP header parses");
            assert_eq!(TcpRepr::parse(&q), Ok(r));
            assert!(q.verify_checksum(src, dst));
        }
    }
    with_copy(data, |buf| {
        let mut p = TcpPacket::new_unchecked(buf);
        let valid = p.verify_checksum(src, dst);
        let old = p.seq_number();
        p.set_seq_number(old ^ 0xdead_beef);
        p.update_checksum_u32(old, old ^ 0xdead_beef);
        if valid {
            assert!(p.verify_checksum(src, dst), "tcp incremental update");
        }
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_ack_number(3);
        p.set_flags(TcpFlags(0xffff));
        p.set_window(4);
        p.fill_checksum(src, dst);
        p.update_checksum_u16(1, 2);
        p.set_checksum(0);
        let _ = p.payload_mut().len();
    });
}

pub fn dissect_icmpv4(data: &[u8]) {
    let Ok(p) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
    );
    let _ = (
        p.next_hop_mtu(),
        p.is_error(),
        p.data().len(),
        p.verify_checksum(),
    );
    if let Ok(r) = Icmpv4Repr::parse(&p) {
        let _ = (r.echo_reply(), r.data_len());
        let mut out = [0u8; MAX];
        if let Some(out) = out.get_mut(..r.buffer_len()) {
            out[8..].copy_from_slice(p.data());
            assert_eq!(r.emit(out), Ok(8));
            // Not byte-exact: unused header bytes are emitted as zero.
            let q = Icmpv4Packet::new_checked(&*out).expect("own ICMP parses");
            assert_eq!(Icmpv4Repr::parse(&q), Ok(r), "icmp re-emit");
        }
    }
    with_copy(data, |buf| {
        let mut p = Icmpv4Packet::new_unchecked(buf);
        let valid = p.verify_checksum();
        if p.make_echo_reply() && valid {
            // RFC 1624's incremental update cannot tell +0 from -0: when every
            // other 16-bit word of the reply is zero it yields 0x0000 where a
            // full recompute gives 0xffff. Only that degenerate message is
            // exempt (found by the fuzzer; no real echo is all zeros).
            let degenerate = data
                .iter()
                .take(MAX)
                .enumerate()
                .all(|(i, &x)| x == 0 || i == 0 || i == 2 || i == 3);
            assert!(
                degenerate || p.verify_checksum(),
                "echo reply keeps the checksum valid"
            );
        }
        p.set_msg_type(3);
        p.set_code(4);
        p.set_echo_ident(5);
        p.set_echo_seq_no(6);
        p.fill_checksum();
        p.set_checksum(0);
        let _ = p.data_mut().len();
    });
}

/// Views over short or arbitrary buffers made without checks must not panic either.
pub fn unchecked_views(data: &[u8]) {
    let e = EthernetFrame::new_unchecked(data);
    let _ = (e.dst(), e.src(), e.vlan(), e.ethertype(), e.payload().len());
    let a = ArpPacket::new_unchecked(data);
    let _ = (a.operation(), a.sender_ip(), a.target_mac());
    let i = Ipv4Packet::new_unchecked(data);
    let _ = (
        i.payload().len(),
        i.options().len(),
        i.datagram().len(),
        i.verify_checksum(),
    );
    let _ = icmpv4::icmp_error_allowed(&i);
    let v = Ipv6Packet::new_unchecked(data);
    let _ = (v.payload().len(), v.flow_label(), v.src_addr());
    let u = UdpPacket::new_unchecked(data);
    let _ = (
        u.payload().len(),
        u.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
    );
    let t = TcpPacket::new_unchecked(data);
    let _ = (t.payload().len(), t.options().count(), t.flags());
    let c = Icmpv4Packet::new_unchecked(data);
    let _ = (c.data().len(), c.verify_checksum(), c.echo_ident());
}

/// The whole-frame helpers a forwarder calls on received frames.
pub fn frame_rewrites(data: &[u8]) {
    with_copy(data, |buf| {
        let before_ok = EthernetFrame::new_checked(&*buf).is_ok();
        if let Ok(n) = echo_reply_in_place(buf, 64) {
            assert!(before_ok && n <= buf.len());
        }
    });
    let mut out = [0u8; 700];
    for error in [
        IcmpError::TimeExceeded(TimeExceeded::TTL_EXCEEDED),
        IcmpError::DstUnreachable(DstUnreachable::HOST_UNREACHABLE, 0),
    ] {
        let mac = MacAddr([2, 0, 0, 0, 0, 0xfe]);
        if let Ok(n) = emit_icmpv4_error_frame(
            &mut out,
            mac,
            Ipv4Addr::new(198, 18, 0, 254),
            64,
            error,
            data,
        ) {
            let f = EthernetFrame::new_checked(&out[..n]).expect("own frame parses");
            let ip = Ipv4Packet::new_checked(f.payload()).expect("own IPv4 parses");
            assert!(ip.verify_checksum());
            let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("own ICMP parses");
            assert!(icmp.verify_checksum());
        }
        // A buffer too small must be an error, not a panic.
        let _ = emit_icmpv4_error_frame(
            &mut out[..40],
            MacAddr::ZERO,
            Ipv4Addr::LOCALHOST,
            1,
            error,
            data,
        );
    }
}
