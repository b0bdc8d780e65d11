//! Test helpers: a lab-like configuration, packet builders with valid checksums, a recording sink.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use tandem_state::records::RecordSink;
use tandem_state::*;
use tandem_wire::{Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket};

pub const OUTSIDE: u16 = 0;
pub const INSIDE: u16 = 1;
pub const DMZ: u16 = 2;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
pub const PAT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub const DMZ_REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
pub const DMZ_MAPPED: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);

pub const SYN: u16 = 0x002;
pub const ACK: u16 = 0x010;
pub const FIN: u16 = 0x001;
pub const RST: u16 = 0x004;

pub const SEC: u64 = 1_000_000_000;

pub fn config() -> StateConfig {
    StateConfig {
        capacities: Capacities {
            conns: 1024,
            xlates: 1024,
            sas: 16,
        },
        interfaces: vec![
            IfacePolicy::new("outside", 0),
            IfacePolicy::new("inside", 100),
            IfacePolicy {
                name: "dmz".into(),
                security_level: 50,
                asr_group: Some(1),
            },
        ],
        nat: vec![
            NatRule::Static {
                real_if: DMZ,
                real: DMZ_REAL,
                mapped_if: OUTSIDE,
                mapped: DMZ_MAPPED,
                port: None,
            },
            NatRule::DynamicPat {
                real_if: INSIDE,
                real: Prefix::new(Ipv4Addr::new(198, 18, 0, 0), 24),
                mapped_if: OUTSIDE,
                mapped: PAT_ADDR,
            },
            NatRule::DynamicPat {
                real_if: DMZ,
                real: Prefix::new(Ipv4Addr::new(198, 18, 2, 0), 24),
                mapped_if: OUTSIDE,
                mapped: PAT_ADDR,
            },
        ],
        ..StateConfig::default()
    }
}

pub fn shard(cfg: &StateConfig) -> Shard {
    Shard::new(cfg, 0, 1, 0x1234_5678_9abc_def0).unwrap()
}

fn ip_header(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8) {
    let total = buf.len() as u16;
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&total.to_be_bytes());
    buf[6] = 0x40; // DF
    buf[8] = 64;
    buf[9] = proto;
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    Ipv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
}

pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u16) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 20 + 6];
    ip_header(&mut b, src, dst, 6);
    let l4 = &mut b[20..];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..8].copy_from_slice(&1000u32.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags as u8;
    l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
    l4[20..].copy_from_slice(b"hello!");
    TcpPacket::new_unchecked(&mut b[20..]).fill_checksum(src, dst);
    b
}

pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, with_checksum: bool) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + 5];
    ip_header(&mut b, src, dst, 17);
    let l4 = &mut b[20..];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&13u16.to_be_bytes());
    l4[8..].copy_from_slice(b"abcde");
    if with_checksum {
        UdpPacket::new_unchecked(&mut b[20..]).fill_checksum(src, dst);
    }
    b
}

pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, request: bool) -> Vec<u8> {
    let mut b = vec![0u8; 20 + 8 + 4];
    ip_header(&mut b, src, dst, 1);
    let l4 = &mut b[20..];
    l4[0] = if request { 8 } else { 0 };
    l4[4..6].copy_from_slice(&id.to_be_bytes());
    l4[6..8].copy_from_slice(&7u16.to_be_bytes());
    l4[8..].copy_from_slice(b"ping");
    Icmpv4Packet::new_unchecked(&mut b[20..]).fill_checksum();
    b
}

/// Addresses and ports of a packet, and whether every checksum verifies.
pub fn tuple(ip: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let p = Ipv4Packet::new_checked(ip).unwrap();
    let l4 = p.payload();
    let (s, d) = match p.protocol().0 {
        1 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            if l4[0] == 8 {
                (id, 0)
            } else {
                (0, id)
            }
        }
        _ => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
    };
    (p.src_addr(), s, p.dst_addr(), d)
}

pub fn checksums_ok(ip: &[u8]) -> bool {
    let p = Ipv4Packet::new_checked(ip).unwrap();
    if !p.verify_checksum() {
        return false;
    }
    let (s, d) = (p.src_addr(), p.dst_addr());
    match p.protocol().0 {
        6 => TcpPacket::new_checked(p.payload())
            .unwrap()
            .verify_checksum(s, d),
        17 => {
            let u = UdpPacket::new_checked(p.payload()).unwrap();
            u.checksum() == 0 || u.verify_checksum(s, d)
        }
        1 => Icmpv4Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum(),
        _ => true,
    }
}

#[derive(Default, Debug, Clone)]
pub struct VecSink(pub Vec<(u8, u8, u64, Vec<u8>)>);

impl RecordSink for VecSink {
    fn put(&mut self, kind: u8, op: u8, key: u64, payload: &[u8]) {
        self.0.push((kind, op, key, payload.to_vec()));
    }
}

impl VecSink {
    pub fn kinds(&self) -> Vec<(u8, u8)> {
        self.0.iter().map(|r| (r.0, r.1)).collect()
    }
    pub fn apply_to(&self, s: &mut Shard, now: u64) {
        for (k, op, _, p) in &self.0 {
            s.apply(now, *k, *op, p).unwrap();
        }
    }
}

/// Runs one packet through both phases, routing by a fixed function of the destination.
pub fn pass(
    s: &mut Shard,
    now: u64,
    rx_if: u16,
    ip: &mut [u8],
    route: impl Fn(Ipv4Addr) -> u16,
    sink: &mut impl RecordSink,
) -> Result<(), DropReason> {
    let lk = s.lookup(now, rx_if, ip);
    if let Some(r) = lk.drop_reason() {
        return Err(r);
    }
    let out = route(lk.route_dst());
    s.commit(now, lk, out, ip, sink)
}

/// The lab's routing: 198.18.0.0/24 inside, 198.18.2.0/24 dmz, the rest outside.
pub fn lab_route(dst: Ipv4Addr) -> u16 {
    let o = dst.octets();
    match (o[0], o[1], o[2]) {
        (198, 18, 0) => INSIDE,
        (198, 18, 2) => DMZ,
        _ => OUTSIDE,
    }
}

pub fn conn_views(s: &Shard, now: u64) -> Vec<String> {
    let mut v = Vec::new();
    s.conns(now, |c| v.push(serde_json::to_string(&c).unwrap()));
    v.sort();
    v
}

pub fn xlate_views(s: &Shard, now: u64) -> Vec<String> {
    let mut v = Vec::new();
    s.xlates(now, |x| v.push(serde_json::to_string(&x).unwrap()));
    v.sort();
    v
}
