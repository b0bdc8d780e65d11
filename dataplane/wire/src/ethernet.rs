//! Ethernet II frames with at most one IEEE 802.1Q tag: MAC addresses, EtherTypes, the frame
//! view and its Repr.
//!
//! The FCS is never present (NICs and AF_XDP strip it on RX and add it on TX). Only a single
//! 802.1Q (TPID 0x8100) tag is decoded: a frame whose inner EtherType is another tag (QinQ) keeps
//! reporting that tag's TPID as its [`EthernetFrame::ethertype`], so callers drop it as an
//! unknown protocol. 802.1ad (TPID 0x88a8) is not decoded for the same reason.

use core::fmt;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{Error, Result};

/// A 48-bit IEEE MAC address. `Display` prints `aa:bb:cc:dd:ee:ff`.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(transparent)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`, the "unknown" target hardware address of an ARP request.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The six octets in transmission order.
    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// All ones.
    #[inline]
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// The I/G bit (least significant bit of the first octet) is set; broadcast included.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Individual (not group) address.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The U/L bit is set: a locally administered address, as virtual MACs should be.
    #[inline]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// All zeros.
    #[inline]
    pub const fn is_zero(&self) -> bool {
        matches!(self.0, [0, 0, 0, 0, 0, 0])
    }
}

impl From<[u8; 6]> for MacAddr {
    #[inline]
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An EtherType (IEEE 802 numbers). Values below 0x0600 are 802.3 length fields, not types.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q VLAN tag (customer TPID).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1ad service tag (QinQ); recognised, not decoded.
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// Smallest value that is a type rather than an 802.3 length (IEEE 802.3 clause 3.2.6).
    pub const MIN_TYPE: u16 = 0x0600;

    /// True for an 802.3 length field (an LLC frame, e.g. STP), which tandem does not process.
    #[inline]
    pub const fn is_length(self) -> bool {
        self.0 < Self::MIN_TYPE
    }
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::VLAN => f.write_str("802.1Q"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType::QINQ => f.write_str("802.1ad"),
            EtherType(v) => write!(f, "0x{v:04x}"),
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The 802.1Q tag control information: priority, drop eligible, VLAN id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// Priority code point (802.1p), 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator (formerly CFI).
    pub dei: bool,
    /// VLAN identifier, 0..=4095 (0 = priority tag only, 4095 reserved).
    pub vid: u16,
}

impl VlanTag {
    /// Decodes a TCI word.
    #[inline]
    pub const fn from_tci(tci: u16) -> Self {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    /// Encodes to a TCI word; out-of-range `pcp`/`vid` bits are masked off.
    #[inline]
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }
}

/// The fixed 14-byte Ethernet II header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    dst: MacAddr,
    src: MacAddr,
    ethertype: U16,
}

/// The 4 bytes following the outer EtherType 0x8100: TCI and the inner EtherType.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Tag {
    tci: U16,
    ethertype: U16,
}

/// Untagged header length.
pub const HEADER_LEN: usize = 14;
/// Header length with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// A zero-copy view of an Ethernet II frame (no FCS).
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checks; see the module contract for what getters then return.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps untrusted bytes: at least 14 bytes, 18 if the frame is 802.1Q tagged.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// The length check `new_checked` performs.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    fn raw_ethertype(&self) -> u16 {
        self.bytes()
            .get(12..14)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    fn tag(&self) -> Option<&Tag> {
        Tag::ref_from_prefix(self.bytes().get(HEADER_LEN..)?)
            .ok()
            .map(|(t, _)| t)
    }

    /// True if the outer EtherType is 802.1Q.
    #[inline]
    pub fn is_tagged(&self) -> bool {
        self.raw_ethertype() == EtherType::VLAN.0
    }

    /// 14, or 18 with an 802.1Q tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Destination MAC.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr::read_from_prefix(self.bytes()).map_or(MacAddr::ZERO, |(m, _)| m)
    }

    /// Source MAC.
    #[inline]
    pub fn src(&self) -> MacAddr {
        self.bytes()
            .get(6..)
            .and_then(|b| MacAddr::read_from_prefix(b).ok())
            .map_or(MacAddr::ZERO, |(m, _)| m)
    }

    /// The 802.1Q tag, if the frame carries one.
    #[inline]
    pub fn vlan(&self) -> Option<VlanTag> {
        if !self.is_tagged() {
            return None;
        }
        self.tag().map(|t| VlanTag::from_tci(t.tci.get()))
    }

    /// The EtherType of the payload: the inner one for a tagged frame.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        if self.is_tagged() {
            EtherType(self.tag().map_or(0, |t| t.ethertype.get()))
        } else {
            EtherType(self.raw_ethertype())
        }
    }

    /// The bytes after the header (and tag), up to the end of the buffer. Ethernet has no length
    /// field: trailing pad bytes of short frames are included; the L3 length trims them.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    fn header_mut(&mut self) -> Option<&mut Header> {
        Header::mut_from_prefix(self.buffer.as_mut())
            .ok()
            .map(|(h, _)| h)
    }

    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst(&mut self, mac: MacAddr) {
        if let Some(h) = self.header_mut() {
            h.dst = mac;
        }
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src(&mut self, mac: MacAddr) {
        if let Some(h) = self.header_mut() {
            h.src = mac;
        }
    }

    /// Sets the payload EtherType (the inner one when tagged).
    #[inline]
    pub fn set_ethertype(&mut self, ty: EtherType) {
        let off = if self.is_tagged() { 16 } else { 12 };
        if let Some(b) = self.buffer.as_mut().get_mut(off..off + 2) {
            b.copy_from_slice(&ty.0.to_be_bytes());
        }
    }

    /// Rewrites the tag's PCP/DEI/VID; does nothing on an untagged frame (adding or removing a
    /// tag moves the payload and is the caller's business).
    #[inline]
    pub fn set_vlan(&mut self, tag: VlanTag) {
        if !self.is_tagged() {
            return;
        }
        if let Some(b) = self.buffer.as_mut().get_mut(14..16) {
            b.copy_from_slice(&tag.tci().to_be_bytes());
        }
    }

    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let off = self.header_len();
        self.buffer.as_mut().get_mut(off..).unwrap_or(&mut [])
    }
}

/// A decoded Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// The single 802.1Q tag, if any.
    pub vlan: Option<VlanTag>,
    /// The payload EtherType (inner, when tagged).
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Decodes a checked frame. An 802.3 length field in place of the (inner) EtherType is
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        frame.check_len()?;
        let ethertype = frame.ethertype();
        if ethertype.is_length() {
            return Err(Error::Unsupported);
        }
        Ok(EthernetRepr {
            src: frame.src(),
            dst: frame.dst(),
            vlan: frame.vlan(),
            ethertype,
        })
    }

    /// Header length: 14, or 18 with a tag.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        if self.vlan.is_some() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header into the front of `buf`; the payload follows at `buffer_len()`.
    /// Returns the header length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(Error::Truncated);
        };
        let (outer, tag) = match self.vlan {
            Some(v) => (EtherType::VLAN, Some(v)),
            None => (self.ethertype, None),
        };
        let hdr = Header {
            dst: self.dst,
            src: self.src,
            ethertype: U16::new(outer.0),
        };
        hdr.write_to_prefix(out).map_err(|_| Error::Truncated)?;
        if let Some(v) = tag {
            let t = Tag {
                tci: U16::new(v.tci()),
                ethertype: U16::new(self.ethertype.0),
            };
            t.write_to_prefix(&mut out[HEADER_LEN..])
                .map_err(|_| Error::Truncated)?;
        }
        Ok(len)
    }
}
