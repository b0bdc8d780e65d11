//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses: the 28-byte packet view, its
//! Repr, and the request / reply / gratuitous constructors a gateway needs.
//!
//! Only the Ethernet/IPv4 combination (htype 1, ptype 0x0800, hlen 6, plen 4) is accepted; every
//! other combination is [`Error::Unsupported`] because the fixed layout below would misread it.

use core::net::Ipv4Addr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::ethernet::{EtherType, MacAddr};
use crate::{Error, Result};

/// ARP hardware type for Ethernet (RFC 826, IANA "Hardware Types").
const HTYPE_ETHERNET: u16 = 1;

/// The 28-byte ARP packet for Ethernet/IPv4.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    htype: U16,
    ptype: U16,
    hlen: u8,
    plen: u8,
    oper: U16,
    sha: MacAddr,
    spa: [u8; 4],
    tha: MacAddr,
    tpa: [u8; 4],
}

impl Header {
    const ZEROED: Header = Header {
        htype: U16::ZERO,
        ptype: U16::ZERO,
        hlen: 0,
        plen: 0,
        oper: U16::ZERO,
        sha: MacAddr::ZERO,
        spa: [0; 4],
        tha: MacAddr::ZERO,
        tpa: [0; 4],
    };
}

/// ARP packet length for Ethernet/IPv4.
pub const PACKET_LEN: usize = 28;

/// The ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    /// `ares_op$REQUEST`.
    pub const REQUEST: ArpOperation = ArpOperation(1);
    /// `ares_op$REPLY`.
    pub const REPLY: ArpOperation = ArpOperation(2);
}

/// A zero-copy view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps untrusted bytes: at least 28 bytes (trailing Ethernet padding is allowed) and the
    /// Ethernet/IPv4 hardware and protocol types and lengths.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The checks `new_checked` performs.
    pub fn check(&self) -> Result<()> {
        let Ok((h, _)) = Header::ref_from_prefix(self.buffer.as_ref()) else {
            return Err(Error::Truncated);
        };
        if h.htype.get() != HTYPE_ETHERNET
            || h.ptype.get() != EtherType::IPV4.0
            || h.hlen != 6
            || h.plen != 4
        {
            return Err(Error::Unsupported);
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
            // Unreachable after `new_checked`; zeros instead of a panic keep the contract for
            // `new_unchecked` views too.
            Err(_) => &Header::ZEROED,
        }
    }

    /// Hardware type (1 = Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        self.header().htype.get()
    }

    /// Protocol type (0x0800 = IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        self.header().ptype.get()
    }

    /// Operation.
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(self.header().oper.get())
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_mac(&self) -> MacAddr {
        self.header().sha
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header().spa)
    }

    /// Target hardware address.
    #[inline]
    pub fn target_mac(&self) -> MacAddr {
        self.header().tha
    }

    /// Target protocol address.
    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header().tpa)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    fn header_mut(&mut self) -> Option<&mut Header> {
        Header::mut_from_prefix(self.buffer.as_mut())
            .ok()
            .map(|(h, _)| h)
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: ArpOperation) {
        if let Some(h) = self.header_mut() {
            h.oper.set(op.0);
        }
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_mac(&mut self, mac: MacAddr) {
        if let Some(h) = self.header_mut() {
            h.sha = mac;
        }
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        if let Some(h) = self.header_mut() {
            h.spa = ip.octets();
        }
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_mac(&mut self, mac: MacAddr) {
        if let Some(h) = self.header_mut() {
            h.tha = mac;
        }
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        if let Some(h) = self.header_mut() {
            h.tpa = ip.octets();
        }
    }
}

/// A decoded Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (zero in a request).
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Decodes a checked packet; operations other than request and reply (RARP, InARP) are
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self> {
        packet.check()?;
        let operation = packet.operation();
        if operation != ArpOperation::REQUEST && operation != ArpOperation::REPLY {
            return Err(Error::Unsupported);
        }
        Ok(ArpRepr {
            operation,
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    /// Always 28.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the front of `buf`; returns 28.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let h = Header {
            htype: U16::new(HTYPE_ETHERNET),
            ptype: U16::new(EtherType::IPV4.0),
            hlen: 6,
            plen: 4,
            oper: U16::new(self.operation.0),
            sha: self.sender_mac,
            spa: self.sender_ip.octets(),
            tha: self.target_mac,
            tpa: self.target_ip.octets(),
        };
        h.write_to_prefix(buf).map_err(|_| Error::Truncated)?;
        Ok(PACKET_LEN)
    }

    /// A request asking who has `target_ip` (RFC 826): target hardware address zero, to be sent
    /// to the Ethernet broadcast address.
    pub const fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::REQUEST,
            sender_mac,
            sender_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        }
    }

    /// The reply to this request from the owner of `self.target_ip` with hardware address
    /// `owner_mac` (RFC 826 "swap hardware and protocol fields"), to be sent unicast to
    /// `self.sender_mac`.
    pub const fn reply(&self, owner_mac: MacAddr) -> Self {
        ArpRepr {
            operation: ArpOperation::REPLY,
            sender_mac: owner_mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }

    /// A gratuitous ARP request announcing that `ip` is at `mac`: sender and target protocol
    /// address both `ip`, target hardware address zero (RFC 5227 section 2.3 "ARP Announcement").
    /// Sent to broadcast; this is the form Linux and most switches update their tables from.
    pub const fn gratuitous_request(mac: MacAddr, ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::REQUEST,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: MacAddr::ZERO,
            target_ip: ip,
        }
    }

    /// A gratuitous ARP reply for `ip` at `mac` (RFC 5944 section 4.6: target hardware address
    /// equal to the sender's). Sent to broadcast; some older hosts only refresh on replies, which
    /// is why failover implementations send both forms.
    pub const fn gratuitous_reply(mac: MacAddr, ip: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::REPLY,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: mac,
            target_ip: ip,
        }
    }

    /// Sender and target protocol addresses are equal: a gratuitous ARP / RFC 5227 announcement,
    /// which receivers use to update an existing entry and never answer. (An RFC 5227 *probe*
    /// has sender address 0.0.0.0 instead and is not gratuitous.)
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}
