//! UDP (RFC 768) over IPv4: the 8-byte header view, checksum with the IPv4 pseudo-header, and the
//! Repr.
//!
//! `new_checked` trusts the UDP length field only if `8 ≤ length ≤ buffer length`; the payload is
//! `length - 8` bytes (trailing bytes, e.g. IP or Ethernet padding, are excluded). Checksums are
//! not verified by `new_checked` or [`UdpRepr::parse`]: frames from a veth with TX checksum
//! offload carry partial checksums (PLATFORM.md), so verification is the caller's explicit choice
//! via [`UdpPacket::verify_checksum`].

use core::net::Ipv4Addr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::checksum;
use crate::ipv4::IpProtocol;
use crate::{Error, Result};

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    src_port: U16,
    dst_port: U16,
    length: U16,
    checksum: U16,
}

impl Header {
    const ZEROED: Header = Header {
        src_port: U16::ZERO,
        dst_port: U16::ZERO,
        length: U16::ZERO,
        checksum: U16::ZERO,
    };
}

/// UDP header length.
pub const HEADER_LEN: usize = 8;

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps untrusted bytes (an IP payload): `8 ≤ length field ≤ buffer length`.
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
        let field = usize::from(h.length.get());
        if field < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if field > len {
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.header().src_port.get()
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.header().dst_port.get()
    }

    /// Length field: header plus payload.
    #[inline]
    pub fn len(&self) -> u16 {
        self.header().length.get()
    }

    /// True when the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field (0 = not computed by the sender).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.header().checksum.get()
    }

    /// The `length - 8` payload bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..usize::from(self.len()))
            .unwrap_or(&[])
    }

    /// The datagram bytes the checksum covers: header and payload, `length` bytes.
    #[inline]
    fn datagram(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..usize::from(self.len()))
            .unwrap_or(&[])
    }

    /// True if the checksum verifies against the IPv4 pseudo-header, or is 0 (RFC 768: "an all
    /// zero transmitted checksum value means that the transmitter generated no checksum").
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, self.len());
        checksum::combine(&[pseudo, checksum::sum(self.datagram())]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    fn header_mut(&mut self) -> Option<&mut Header> {
        Header::mut_from_prefix(self.buffer.as_mut())
            .ok()
            .map(|(h, _)| h)
    }

    /// Sets the source port (checksum not updated).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        if let Some(h) = self.header_mut() {
            h.src_port.set(port);
        }
    }

    /// Sets the destination port (checksum not updated).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        if let Some(h) = self.header_mut() {
            h.dst_port.set(port);
        }
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        if let Some(h) = self.header_mut() {
            h.length.set(len);
        }
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        if let Some(h) = self.header_mut() {
            h.checksum.set(csum);
        }
    }

    /// Computes the checksum over pseudo-header, header and payload. A computed 0 is sent as
    /// `0xffff` (RFC 768), since 0 means "no checksum".
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, self.len());
        let c = !checksum::combine(&[pseudo, checksum::sum(self.datagram())]);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Incrementally updates the checksum after a 16-bit word it covers (a port, half an address
    /// in the pseudo-header) changed from `old` to `new` (RFC 1624). A zero checksum ("none")
    /// stays zero, and a result of 0 is sent as `0xffff`.
    #[inline]
    pub fn update_checksum_u16(&mut self, old: u16, new: u16) {
        let c = self.checksum();
        if c != 0 {
            let n = checksum::update_u16(c, old, new);
            self.set_checksum(if n == 0 { 0xffff } else { n });
        }
    }

    /// [`UdpPacket::update_checksum_u16`] for a 32-bit word (an IPv4 address in the
    /// pseudo-header).
    #[inline]
    pub fn update_checksum_u32(&mut self, old: u32, new: u32) {
        let c = self.checksum();
        if c != 0 {
            let n = checksum::update_u32(c, old, new);
            self.set_checksum(if n == 0 { 0xffff } else { n });
        }
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

/// A decoded UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length (length field minus 8).
    pub payload_len: u16,
}

impl UdpRepr {
    /// Decodes a checked datagram (checksum not verified; see the module doc).
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<Self> {
        packet.check()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.len().saturating_sub(HEADER_LEN as u16),
        })
    }

    /// Header (8) plus payload.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes the header in front of the payload already at `buf[8..buffer_len()]` and fills the
    /// checksum over pseudo-header, header and that payload. Returns 8. [`Error::Malformed`] if
    /// the length does not fit 16 bits.
    pub fn emit(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<usize> {
        let Some(length) = self.payload_len.checked_add(HEADER_LEN as u16) else {
            return Err(Error::Malformed);
        };
        let Some(out) = buf.get_mut(..self.buffer_len()) else {
            return Err(Error::Truncated);
        };
        let h = Header {
            src_port: U16::new(self.src_port),
            dst_port: U16::new(self.dst_port),
            length: U16::new(length),
            checksum: U16::ZERO,
        };
        h.write_to_prefix(out).map_err(|_| Error::Truncated)?;
        UdpPacket::new_unchecked(out).fill_checksum(src, dst);
        Ok(HEADER_LEN)
    }
}
