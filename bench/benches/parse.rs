//! Parse and checksum micro-benchmarks (tandem-wire): Ethernet + IPv4 + UDP
//! of a 64-byte frame through the checked views and Reprs the forwarder
//! uses, an ARP request, and the RFC 1624 incremental checksum update
//! against a full recompute for the two rewrites a router and a NAT make
//! (TTL decrement; source address rewrite, which also touches the UDP
//! checksum through the pseudo-header).

use std::hint::black_box;
use std::net::Ipv4Addr;

use bench::micro::{arp_frame, udp_frame, IN_IP, SERVER_IP, SERVER_MAC};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem_wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    let udp = udp_frame(64);
    g.bench_function("eth_ipv4_udp_64B", |b| {
        b.iter(|| {
            let f = black_box(&udp[..]);
            let eth = EthernetFrame::new_checked(f).ok()?;
            let eth_repr = EthernetRepr::parse(&eth).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let ip_repr = Ipv4Repr::parse(&ip).ok()?;
            let l4 = UdpPacket::new_checked(ip.payload()).ok()?;
            let udp_repr = UdpRepr::parse(&l4).ok()?;
            Some((eth_repr, ip_repr, udp_repr))
        })
    });
    let arp = arp_frame(SERVER_MAC, SERVER_IP, IN_IP);
    g.bench_function("eth_arp", |b| {
        b.iter(|| {
            let f = black_box(&arp[..]);
            let eth = EthernetFrame::new_checked(f).ok()?;
            let a = ArpPacket::new_checked(eth.payload()).ok()?;
            ArpRepr::parse(&a).ok()
        })
    });
    g.finish();
}

fn checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Elements(1));
    let frame = udp_frame(64);
    let nat_addr = Ipv4Addr::new(198, 18, 2, 1);

    // TTL decrement (RFC 1812 5.3.1): what every forwarded frame gets.
    let mut buf = frame;
    g.bench_function("ttl_incremental", |b| {
        b.iter(|| {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[14..]);
            // Keep the TTL from running out over millions of iterations.
            ip.set_ttl(64);
            ip.decrement_ttl()
        })
    });
    let mut buf = frame;
    g.bench_function("ttl_full", |b| {
        b.iter(|| {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[14..]);
            ip.set_ttl(black_box(63));
            ip.fill_checksum();
            ip.checksum()
        })
    });

    // Source NAT: IPv4 header checksum plus the UDP checksum, whose
    // pseudo-header covers the address.
    let mut buf = frame;
    g.bench_function("snat_incremental", |b| {
        b.iter(|| {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[14..]);
            let orig = ip.src_addr();
            // There and back, like snat_full, so the frame stays the same.
            for addr in [black_box(nat_addr), orig] {
                let old = ip.rewrite_src_addr(addr);
                let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
                udp.update_checksum_u32(old.to_bits(), addr.to_bits());
            }
            ip.checksum()
        })
    });
    let mut buf = frame;
    g.bench_function("snat_full", |b| {
        b.iter(|| {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[14..]);
            let old = ip.src_addr();
            for addr in [black_box(nat_addr), old] {
                ip.set_src_addr(addr);
                ip.fill_checksum();
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
                udp.fill_checksum(src, dst);
            }
            ip.checksum()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, checksum);
criterion_main!(benches);
