//! Whole-frame builders for tests, pktgen and the forwarder: Ethernet + IPv4 + UDP, Ethernet +
//! ARP, Ethernet + IPv4 + ICMP error, and the in-place echo reply. All write into a caller's
//! `&mut [u8]` and return the frame length; none allocates.
//!
//! Frames are not padded to the 60-byte Ethernet minimum: NICs pad on transmit and veth does not
//! need it. Callers that want real-wire bytes can zero-extend the returned length to 60.

use core::net::Ipv4Addr;

use crate::arp::ArpRepr;
use crate::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr, VlanTag};
use crate::icmpv4::{self, Icmpv4Packet, Icmpv4Repr};
use crate::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::udp::{self, UdpRepr};
use crate::{Error, Result};

/// Everything but the payload of an Ethernet + IPv4 + UDP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// IPv4 TTL.
    pub ttl: u8,
    /// IPv4 DSCP.
    pub dscp: u8,
    /// IPv4 identification.
    pub ident: u16,
}

impl UdpFrame {
    /// Offset of the UDP payload in the emitted frame (42, or 46 with a VLAN tag): where pktgen
    /// patches its sequence number before fixing the UDP checksum incrementally.
    #[inline]
    pub const fn payload_offset(&self) -> usize {
        let eth = if self.vlan.is_some() {
            crate::ethernet::TAGGED_HEADER_LEN
        } else {
            crate::ethernet::HEADER_LEN
        };
        eth + crate::ipv4::HEADER_LEN + udp::HEADER_LEN
    }

    /// Frame length for a payload of `payload_len` bytes.
    #[inline]
    pub const fn frame_len(&self, payload_len: usize) -> usize {
        self.payload_offset() + payload_len
    }
}

/// Writes a complete Ethernet + IPv4 + UDP frame carrying `payload` into `buf` (IPv4 and UDP
/// checksums filled, DF set) and returns its length. [`Error::Truncated`] if `buf` is too short,
/// [`Error::Malformed`] if the payload does not fit an IPv4 datagram.
pub fn emit_udp_frame(buf: &mut [u8], spec: &UdpFrame, payload: &[u8]) -> Result<usize> {
    let udp_repr = UdpRepr {
        src_port: spec.src_port,
        dst_port: spec.dst_port,
        payload_len: u16::try_from(payload.len()).map_err(|_| Error::Malformed)?,
    };
    let udp_len = u16::try_from(udp_repr.buffer_len()).map_err(|_| Error::Malformed)?;
    let mut ip = Ipv4Repr::new(spec.src_ip, spec.dst_ip, IpProtocol::UDP, udp_len, spec.ttl);
    ip.dscp = spec.dscp;
    ip.ident = spec.ident;
    let eth = EthernetRepr {
        src: spec.src_mac,
        dst: spec.dst_mac,
        vlan: spec.vlan,
        ethertype: EtherType::IPV4,
    };
    let total = eth.buffer_len() + ip.buffer_len();
    let frame = buf.get_mut(..total).ok_or(Error::Truncated)?;
    // Inside-out: payload, then the UDP header and its checksum over that payload, then IPv4,
    // then Ethernet.
    let l3 = eth.buffer_len();
    let l4 = l3 + ip.header_len();
    frame
        .get_mut(l4 + udp::HEADER_LEN..)
        .ok_or(Error::Truncated)?
        .copy_from_slice(payload);
    udp_repr.emit(
        frame.get_mut(l4..).ok_or(Error::Truncated)?,
        spec.src_ip,
        spec.dst_ip,
    )?;
    ip.emit(frame.get_mut(l3..).ok_or(Error::Truncated)?)?;
    eth.emit(frame)?;
    Ok(total)
}

/// Writes Ethernet + ARP into `buf` and returns the length (42 untagged). For a gratuitous ARP or
/// a request, `dst_mac` is [`MacAddr::BROADCAST`]; for a reply, the requester's MAC.
pub fn emit_arp_frame(
    buf: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    vlan: Option<VlanTag>,
    arp: &ArpRepr,
) -> Result<usize> {
    let eth = EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        vlan,
        ethertype: EtherType::ARP,
    };
    let total = eth.buffer_len() + arp.buffer_len();
    let frame = buf.get_mut(..total).ok_or(Error::Truncated)?;
    let l3 = eth.emit(frame)?;
    arp.emit(frame.get_mut(l3..).ok_or(Error::Truncated)?)?;
    Ok(total)
}

/// Writes a complete ICMP error frame (time exceeded, destination unreachable) answering the
/// datagram in `offending_frame`, as a router must (RFC 1812 4.3.2.3): Ethernet from `src_mac` to
/// the frame's source MAC (the previous hop), same VLAN; IPv4 from `src_ip` (the receiving
/// interface's address) to the offender's source; TTL `ttl`; the offending datagram quoted as
/// received (call this before decrementing its TTL). Returns the frame length.
///
/// [`Error::Unsupported`] if the frame is not IPv4 or [`icmpv4::icmp_error_allowed`] forbids an
/// error for it (the caller counts that as a drop); parse errors of the offending frame as usual.
pub fn emit_icmpv4_error_frame(
    buf: &mut [u8],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    ttl: u8,
    error: IcmpError,
    offending_frame: &[u8],
) -> Result<usize> {
    let rx = EthernetFrame::new_checked(offending_frame)?;
    if rx.ethertype() != EtherType::IPV4 || rx.src().is_multicast() || rx.dst().is_multicast() {
        return Err(Error::Unsupported);
    }
    let ip = Ipv4Packet::new_checked(rx.payload())?;
    if !icmpv4::icmp_error_allowed(&ip) {
        return Err(Error::Unsupported);
    }
    let len = ip.datagram().len();
    let repr = match error {
        IcmpError::TimeExceeded(r) => Icmpv4Repr::time_exceeded(r, len),
        IcmpError::DstUnreachable(r, mtu) => Icmpv4Repr::dst_unreachable(r, mtu, len),
    };
    let eth = EthernetRepr {
        src: src_mac,
        dst: rx.src(),
        vlan: rx.vlan(),
        ethertype: EtherType::IPV4,
    };
    let l3 = eth.buffer_len();
    let n = icmpv4::emit_error(
        buf.get_mut(l3..).ok_or(Error::Truncated)?,
        src_ip,
        ttl,
        &repr,
        &ip,
    )?;
    eth.emit(buf)?;
    Ok(l3 + n)
}

/// Which ICMP error [`emit_icmpv4_error_frame`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Type 11 with this code.
    TimeExceeded(icmpv4::TimeExceeded),
    /// Type 3 with this code and next-hop MTU (0 unless fragmentation needed).
    DstUnreachable(icmpv4::DstUnreachable, u16),
}

/// Turns a received Ethernet + IPv4 + ICMP echo request addressed to us into the echo reply, in
/// place: MACs swapped, IPv4 addresses swapped, TTL set to `ttl` (header checksum updated
/// incrementally), ICMP type 8 → 0 (checksum updated incrementally), data untouched. Returns the
/// frame length to transmit (the IPv4 total length plus the Ethernet header, dropping any
/// padding). Verifying the request's checksums is the caller's choice (see
/// [`crate::Icmpv4Repr::parse`]); the updates here preserve whatever they were.
///
/// [`Error::Unsupported`] if it is not an unfragmented unicast echo request; parse errors as usual.
pub fn echo_reply_in_place(frame: &mut [u8], ttl: u8) -> Result<usize> {
    let mut eth = EthernetFrame::new_checked(&mut *frame)?;
    if eth.ethertype() != EtherType::IPV4 {
        return Err(Error::Unsupported);
    }
    let (src, dst) = (eth.src(), eth.dst());
    // Only a unicast request names our MAC, which becomes the reply's source.
    if dst.is_multicast() {
        return Err(Error::Unsupported);
    }
    let l3 = eth.header_len();
    let mut ip = Ipv4Packet::new_checked(eth.payload_mut())?;
    if ip.protocol() != IpProtocol::ICMP
        || ip.is_fragment()
        || ip.dst_addr().is_broadcast()
        || ip.dst_addr().is_multicast()
    {
        return Err(Error::Unsupported);
    }
    let total = usize::from(ip.total_len());
    let mut icmp = Icmpv4Packet::new_checked(ip.payload_mut())?;
    if !icmp.make_echo_reply() {
        return Err(Error::Unsupported);
    }
    ip.swap_addrs();
    let old = u16::from_be_bytes([ip.ttl(), ip.protocol().0]);
    ip.set_ttl(ttl);
    let csum = crate::checksum::update_u16(
        ip.checksum(),
        old,
        u16::from_be_bytes([ttl, IpProtocol::ICMP.0]),
    );
    ip.set_checksum(csum);
    eth.set_dst(src);
    eth.set_src(dst);
    Ok(l3 + total)
}
