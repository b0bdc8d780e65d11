//! IPv6 (RFC 8200) fixed header: the 40-byte view and its Repr.
//!
//! Extension headers are **not walked**: [`Ipv6Packet::next_header`] is whatever follows the
//! fixed header (possibly hop-by-hop, routing, fragment or destination options), and
//! [`Ipv6Packet::payload`] starts right after the fixed 40 bytes. Jumbograms (payload length 0
//! with a hop-by-hop Jumbo option, RFC 2675) read as an empty payload. tandem forwards IPv4 only
//! for now; this view exists so that IPv6 frames can be classified and counted.

use core::net::Ipv6Addr;

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::ipv4::IpProtocol;
use crate::{Error, Result};

/// The fixed 40-byte IPv6 header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    ver_tc_flow: U32,
    payload_len: U16,
    next_header: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

impl Header {
    const ZEROED: Header = Header {
        ver_tc_flow: U32::ZERO,
        payload_len: U16::ZERO,
        next_header: 0,
        hop_limit: 0,
        src: [0; 16],
        dst: [0; 16],
    };
}

/// Fixed header length.
pub const HEADER_LEN: usize = 40;

/// A zero-copy view of an IPv6 packet's fixed header and what follows it.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps untrusted bytes: version 6, `40 + payload_len ≤ buffer length`.
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
        if h.ver_tc_flow.get() >> 28 != 6 {
            return Err(Error::Malformed);
        }
        if len < HEADER_LEN + usize::from(h.payload_len.get()) {
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

    /// Version field (6 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.header().ver_tc_flow.get() >> 28) as u8
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.header().ver_tc_flow.get() >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.header().ver_tc_flow.get() & 0x000f_ffff
    }

    /// Payload length: everything after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        self.header().payload_len.get()
    }

    /// The header that follows the fixed header (an extension header or the upper layer).
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.header().next_header)
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.header().hop_limit
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.header().src)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.header().dst)
    }

    /// The `payload_len` bytes after the fixed header (padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }
}

/// A decoded IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The header following the fixed header.
    pub next_header: IpProtocol,
    /// Payload length (extension headers included).
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label, 20 bits.
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Decodes a checked packet's fixed header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self> {
        packet.check()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Fixed header plus payload length.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Writes the fixed header into the front of `buf` (for tests and tools; tandem does not
    /// originate IPv6 yet). Flow label bits above 20 are masked off. Returns 40.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < self.buffer_len() {
            return Err(Error::Truncated);
        }
        let h = Header {
            ver_tc_flow: U32::new(
                (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff),
            ),
            payload_len: U16::new(self.payload_len),
            next_header: self.next_header.0,
            hop_limit: self.hop_limit,
            src: self.src_addr.octets(),
            dst: self.dst_addr.octets(),
        };
        h.write_to_prefix(buf).map_err(|_| Error::Truncated)?;
        Ok(HEADER_LEN)
    }
}
