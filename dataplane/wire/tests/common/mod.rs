//! Shared test material: real frames captured from Linux 6.18 between two network namespaces
//! (198.18.0.1 / 02:00:00:00:00:01 pinging, connecting to and sending UDP to 198.18.0.2 /
//! 02:00:00:00:00:02, TX checksum offload off so L4 checksums are complete), stored once as the
//! fuzz seed corpus and read here as golden bytes.
#![allow(dead_code)]

pub const ARP_REQUEST: &[u8] = include_bytes!("../../fuzz/seeds/arp_request.bin");
pub const ARP_REPLY: &[u8] = include_bytes!("../../fuzz/seeds/arp_reply.bin");
pub const ICMP_ECHO_REQUEST: &[u8] = include_bytes!("../../fuzz/seeds/icmp_echo_request.bin");
pub const ICMP_ECHO_REPLY: &[u8] = include_bytes!("../../fuzz/seeds/icmp_echo_reply.bin");
pub const ICMP_PORT_UNREACHABLE: &[u8] =
    include_bytes!("../../fuzz/seeds/icmp_port_unreachable.bin");
pub const TCP_SYN: &[u8] = include_bytes!("../../fuzz/seeds/tcp_syn.bin");
pub const TCP_RST_ACK: &[u8] = include_bytes!("../../fuzz/seeds/tcp_rst_ack.bin");
pub const UDP: &[u8] = include_bytes!("../../fuzz/seeds/udp.bin");
pub const IPV6_NS: &[u8] = include_bytes!("../../fuzz/seeds/ipv6_ns.bin");
pub const IPV6_RS: &[u8] = include_bytes!("../../fuzz/seeds/ipv6_rs.bin");
pub const IPV6_MLD_HBH: &[u8] = include_bytes!("../../fuzz/seeds/ipv6_mld_hbh.bin");

pub const ALL: &[&[u8]] = &[
    ARP_REQUEST,
    ARP_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_ECHO_REPLY,
    ICMP_PORT_UNREACHABLE,
    TCP_SYN,
    TCP_RST_ACK,
    UDP,
    IPV6_NS,
    IPV6_RS,
    IPV6_MLD_HBH,
];

/// Inserts an 802.1Q tag (TPID 0x8100, `tci`) after the MAC addresses. veth in this kernel has
/// no 8021Q support, so tagged frames are made from captured untagged ones.
pub fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(frame.len() + 4);
    v.extend_from_slice(&frame[..12]);
    v.extend_from_slice(&[0x81, 0x00]);
    v.extend_from_slice(&tci.to_be_bytes());
    v.extend_from_slice(&frame[12..]);
    v
}
