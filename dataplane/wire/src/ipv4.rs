//! IPv4 (RFC 791): protocol numbers, the header view with options, header checksum verification,
//! full and incremental (RFC 1624) checksum updates, the router's TTL decrement, and the Repr.
//!
//! The view trusts only what `new_checked` verified: version 4, IHL ≥ 5, and
//! `header_len ≤ total_len ≤ buffer length`. Bytes past `total_len` (Ethernet padding of short
//! frames) are not part of [`Ipv4Packet::payload`]. The header checksum is *not* checked by
//! `new_checked`, so a forwarder can decide; [`Ipv4Repr::parse`] and
//! [`Ipv4Packet::verify_checksum`] do check it (RFC 1812 section 5.2.2 requires a router to).

use core::fmt;
use core::net::Ipv4Addr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::checksum;
use crate::{Error, Result};

/// An IP protocol number (IANA "Assigned Internet Protocol Numbers"); IPv6's next header uses the
/// same space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: IpProtocol = IpProtocol(0);
    /// ICMP for IPv4.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 routing header.
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 fragment header.
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    /// GRE.
    pub const GRE: IpProtocol = IpProtocol(47);
    /// IPsec ESP.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// IPsec AH.
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMP for IPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 no next header.
    pub const IPV6_NONXT: IpProtocol = IpProtocol(59);
    /// IPv6 destination options.
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("ICMP"),
            IpProtocol::TCP => f.write_str("TCP"),
            IpProtocol::UDP => f.write_str("UDP"),
            IpProtocol::ESP => f.write_str("ESP"),
            IpProtocol::ICMPV6 => f.write_str("ICMPv6"),
            IpProtocol(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The fixed 20-byte IPv4 header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    ver_ihl: u8,
    dscp_ecn: u8,
    total_len: U16,
    ident: U16,
    flags_frag: U16,
    ttl: u8,
    protocol: u8,
    checksum: U16,
    src: [u8; 4],
    dst: [u8; 4],
}

impl Header {
    const ZEROED: Header = Header {
        ver_ihl: 0,
        dscp_ecn: 0,
        total_len: U16::ZERO,
        ident: U16::ZERO,
        flags_frag: U16::ZERO,
        ttl: 0,
        protocol: 0,
        checksum: U16::ZERO,
        src: [0; 4],
        dst: [0; 4],
    };
}

/// Minimum (option-less) header length.
pub const HEADER_LEN: usize = 20;
/// Maximum header length (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 datagram.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps untrusted bytes (an Ethernet payload, padding allowed): version 4, IHL ≥ 5,
    /// `header_len ≤ total_len ≤ buffer length`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The checks `new_checked` performs.
    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        let Ok((h, _)) = Header::ref_from_prefix(self.buffer.as_ref()) else {
            return Err(Error::Truncated);
        };
        if h.ver_ihl >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let header_len = usize::from(h.ver_ihl & 0x0f) * 4;
        let total_len = usize::from(h.total_len.get());
        if header_len < HEADER_LEN || total_len < header_len {
            return Err(Error::Malformed);
        }
        if len < total_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn header(&self) -> &Header {
        match Header::ref_from_prefix(self.buffer.as_ref()) {
            Ok((h, _)) => h,
            // Unreachable after `new_checked`; zeros instead of a panic.
            Err(_) => &Header::ZEROED,
        }
    }

    /// Version field (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.header().ver_ihl >> 4
    }

    /// Header length in bytes, options included (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.header().ver_ihl & 0x0f) * 4
    }

    /// Differentiated services code point (RFC 2474), the upper six bits of the old TOS byte.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.header().dscp_ecn >> 2
    }

    /// Explicit congestion notification (RFC 3168), the lower two bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.header().dscp_ecn & 0x03
    }

    /// Total length of the datagram, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.header().total_len.get()
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.header().ident.get()
    }

    /// The DF flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.header().flags_frag.get() & FLAG_DF != 0
    }

    /// The MF flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.header().flags_frag.get() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.header().flags_frag.get() & FRAG_OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.header().flags_frag.get() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.header().ttl
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.header().protocol)
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.header().checksum.get()
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header().src)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header().dst)
    }

    /// The header bytes, options included.
    #[inline]
    pub fn header_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[])
    }

    /// The option bytes between the fixed header and the payload (not interpreted).
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// True if the header checksum verifies (over the header with its options).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header_bytes())
    }

    /// The datagram's payload: from the end of the header to `total_len`, padding excluded.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_ref().get(range).unwrap_or(&[])
    }

    /// The whole datagram, `total_len` bytes, padding excluded (what an ICMP error quotes).
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..usize::from(self.total_len()))
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn header_mut(&mut self) -> Option<&mut Header> {
        Header::mut_from_prefix(self.buffer.as_mut())
            .ok()
            .map(|(h, _)| h)
    }

    /// Sets the TTL (checksum not updated; see [`Ipv4Packet::decrement_ttl`]).
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        if let Some(h) = self.header_mut() {
            h.ttl = ttl;
        }
    }

    /// Sets the protocol (checksum not updated).
    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        if let Some(h) = self.header_mut() {
            h.protocol = protocol.0;
        }
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        if let Some(h) = self.header_mut() {
            h.checksum.set(csum);
        }
    }

    /// Sets the DSCP (checksum not updated).
    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        if let Some(h) = self.header_mut() {
            h.dscp_ecn = (dscp << 2) | (h.dscp_ecn & 0x03);
        }
    }

    /// Sets the ECN bits (checksum not updated).
    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        if let Some(h) = self.header_mut() {
            h.dscp_ecn = (h.dscp_ecn & 0xfc) | (ecn & 0x03);
        }
    }

    /// Sets the identification (checksum not updated).
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        if let Some(h) = self.header_mut() {
            h.ident.set(ident);
        }
    }

    /// Sets the source address (checksum not updated; [`Ipv4Packet::rewrite_src_addr`] does).
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        if let Some(h) = self.header_mut() {
            h.src = addr.octets();
        }
    }

    /// Sets the destination address (checksum not updated; [`Ipv4Packet::rewrite_dst_addr`]
    /// does).
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        if let Some(h) = self.header_mut() {
            h.dst = addr.octets();
        }
    }

    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header_bytes());
        self.set_checksum(c);
    }

    /// The router's TTL step (RFC 1812 section 5.3.1): if the TTL is 0 or 1 the datagram must
    /// not be forwarded and is left untouched (`None`; the caller sends ICMP time exceeded);
    /// otherwise the TTL is decremented, the header checksum updated incrementally (RFC 1624),
    /// and the new TTL returned.
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let h = self.header_mut()?;
        if h.ttl <= 1 {
            return None;
        }
        // TTL shares a 16-bit checksum word with the protocol byte.
        let old = u16::from_be_bytes([h.ttl, h.protocol]);
        h.ttl -= 1;
        let new = u16::from_be_bytes([h.ttl, h.protocol]);
        h.checksum
            .set(checksum::update_u16(h.checksum.get(), old, new));
        Some(h.ttl)
    }

    /// Replaces the source address and updates the header checksum incrementally. Returns the old
    /// address so the caller can patch an L4 checksum (its pseudo-header covers it too) with
    /// [`checksum::update_u32`].
    #[inline]
    pub fn rewrite_src_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let Some(h) = self.header_mut() else {
            return Ipv4Addr::UNSPECIFIED;
        };
        let old = Ipv4Addr::from(h.src);
        h.src = addr.octets();
        h.checksum.set(checksum::update_u32(
            h.checksum.get(),
            old.to_bits(),
            addr.to_bits(),
        ));
        old
    }

    /// Replaces the destination address and updates the header checksum incrementally; returns
    /// the old address (see [`Ipv4Packet::rewrite_src_addr`]).
    #[inline]
    pub fn rewrite_dst_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let Some(h) = self.header_mut() else {
            return Ipv4Addr::UNSPECIFIED;
        };
        let old = Ipv4Addr::from(h.dst);
        h.dst = addr.octets();
        h.checksum.set(checksum::update_u32(
            h.checksum.get(),
            old.to_bits(),
            addr.to_bits(),
        ));
        old
    }

    /// Swaps source and destination (to answer in place, e.g. an echo reply). The header and any
    /// pseudo-header checksum stay valid: ones' complement addition is commutative.
    #[inline]
    pub fn swap_addrs(&mut self) {
        if let Some(h) = self.header_mut() {
            core::mem::swap(&mut h.src, &mut h.dst);
        }
    }

    /// The payload, mutable (up to `total_len`).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }
}

/// A decoded IPv4 header. Options are not represented: `parse` skips them, `emit` writes none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// DSCP, 0..=63.
    pub dscp: u8,
    /// ECN, 0..=3.
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// DF flag.
    pub dont_frag: bool,
    /// MF flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// A plain unfragmented header with DF set, ident 0 and DSCP/ECN 0, as tandem sends its own
    /// datagrams (RFC 6864: ident may be anything for atomic datagrams).
    pub const fn new(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: u16,
        ttl: u8,
    ) -> Self {
        Ipv4Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Decodes a checked datagram and verifies its header checksum ([`Error::Checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        packet.check()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            // `check` guarantees total_len ≥ header_len, and header_len ≤ 60 fits u16.
            payload_len: packet
                .total_len()
                .saturating_sub(packet.header_len() as u16),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Header (20) plus payload length.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Header length: always 20 (no options are emitted).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header, checksum included, into the front of `buf`; the payload follows
    /// at offset 20. Returns 20. [`Error::Malformed`] if the payload does not fit a 16-bit total
    /// length or the fragment offset is not a multiple of 8; [`Error::Truncated`] if `buf` is
    /// shorter than `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let Some(total_len) = self.payload_len.checked_add(HEADER_LEN as u16) else {
            return Err(Error::Malformed);
        };
        if self.frag_offset & 7 != 0 {
            return Err(Error::Malformed);
        }
        if buf.len() < self.buffer_len() {
            return Err(Error::Truncated);
        }
        let flags =
            if self.dont_frag { FLAG_DF } else { 0 } | if self.more_frags { FLAG_MF } else { 0 };
        let mut h = Header {
            ver_ihl: 0x45,
            dscp_ecn: (self.dscp << 2) | (self.ecn & 0x03),
            total_len: U16::new(total_len),
            ident: U16::new(self.ident),
            flags_frag: U16::new(flags | (self.frag_offset >> 3)),
            ttl: self.ttl,
            protocol: self.protocol.0,
            checksum: U16::ZERO,
            src: self.src_addr.octets(),
            dst: self.dst_addr.octets(),
        };
        h.checksum.set(checksum::checksum(h.as_bytes()));
        h.write_to_prefix(buf).map_err(|_| Error::Truncated)?;
        Ok(HEADER_LEN)
    }
}
