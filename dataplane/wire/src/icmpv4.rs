//! ICMPv4 (RFC 792): the message view, the Repr for echo request/reply, destination unreachable
//! and time exceeded, the router rules for quoting the offending datagram (RFC 1812 4.3.2.3) and
//! for when an error must not be sent (RFC 1812 4.3.2.7).
//!
//! The message has no length field: pass exactly the IP payload ([`crate::Ipv4Packet::payload`]);
//! the checksum covers all of it. Unlike UDP/TCP, ICMP checksums are not offloaded by veth, so
//! [`Icmpv4Repr::parse`] verifies it.

use core::net::Ipv4Addr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::checksum;
use crate::ipv4::{IpProtocol, Ipv4Packet};
use crate::{Error, Result};

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    msg_type: u8,
    code: u8,
    checksum: U16,
    /// Identifier for echo; unused for time exceeded; unused/zero for destination unreachable.
    rest_hi: U16,
    /// Sequence number for echo; next-hop MTU for "fragmentation needed" (RFC 1191).
    rest_lo: U16,
}

impl Header {
    const ZEROED: Header = Header {
        msg_type: 0,
        code: 0,
        checksum: U16::ZERO,
        rest_hi: U16::ZERO,
        rest_lo: U16::ZERO,
    };
}

/// ICMP header length (type, code, checksum and the 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;

/// The most of the offending datagram an error quotes: RFC 1812 4.3.2.3 says as much as possible
/// "without the length of the ICMP datagram exceeding 576 bytes", i.e. 576 - 20 (IPv4) - 8
/// (ICMP).
pub const MAX_QUOTE_LEN: usize = 576 - crate::ipv4::HEADER_LEN - HEADER_LEN;

/// ICMP message types used by a router (IANA "ICMP Type Numbers").
pub mod message {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, RFC 6633), an error type nonetheless.
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;

    /// True for the error types (RFC 1812 4.3.2.7: never answered with an error).
    #[inline]
    pub const fn is_error(t: u8) -> bool {
        matches!(
            t,
            DST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }
}

/// Destination unreachable codes (RFC 792, RFC 1812 5.2.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DstUnreachable(pub u8);

impl DstUnreachable {
    /// Code 0: no route to the network.
    pub const NET_UNREACHABLE: DstUnreachable = DstUnreachable(0);
    /// Code 1: the host did not answer ARP.
    pub const HOST_UNREACHABLE: DstUnreachable = DstUnreachable(1);
    /// Code 2.
    pub const PROTO_UNREACHABLE: DstUnreachable = DstUnreachable(2);
    /// Code 3.
    pub const PORT_UNREACHABLE: DstUnreachable = DstUnreachable(3);
    /// Code 4: DF set and the next hop MTU is too small (carries the MTU, RFC 1191).
    pub const FRAG_NEEDED: DstUnreachable = DstUnreachable(4);
    /// Code 13: administratively prohibited (RFC 1812), what a firewall drop may say.
    pub const ADMIN_PROHIBITED: DstUnreachable = DstUnreachable(13);
}

/// Time exceeded codes (RFC 792).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeExceeded(pub u8);

impl TimeExceeded {
    /// Code 0: TTL reached zero in transit.
    pub const TTL_EXCEEDED: TimeExceeded = TimeExceeded(0);
    /// Code 1: fragment reassembly time exceeded.
    pub const FRAG_REASSEMBLY: TimeExceeded = TimeExceeded(1);
}

/// A zero-copy view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps untrusted bytes (exactly the IP payload): at least the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The check `new_checked` performs.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
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
    fn header(&self) -> &Header {
        match Header::ref_from_prefix(self.buffer.as_ref()) {
            Ok((h, _)) => h,
            // Unreachable after `new_checked`; zeros instead of a panic.
            Err(_) => &Header::ZEROED,
        }
    }

    /// Message type (see [`message`]).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.header().msg_type
    }

    /// Code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.header().code
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.header().checksum.get()
    }

    /// Echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.header().rest_hi.get()
    }

    /// Echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.header().rest_lo.get()
    }

    /// Next-hop MTU (meaningful for destination unreachable, fragmentation needed).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.header().rest_lo.get()
    }

    /// An error message type (never answered with an error).
    #[inline]
    pub fn is_error(&self) -> bool {
        message::is_error(self.msg_type())
    }

    /// The bytes after the 8-byte header: echo data, or the quoted datagram of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// True if the checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    fn header_mut(&mut self) -> Option<&mut Header> {
        Header::mut_from_prefix(self.buffer.as_mut())
            .ok()
            .map(|(h, _)| h)
    }

    /// Sets the type (checksum not updated).
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        if let Some(h) = self.header_mut() {
            h.msg_type = t;
        }
    }

    /// Sets the code (checksum not updated).
    #[inline]
    pub fn set_code(&mut self, code: u8) {
        if let Some(h) = self.header_mut() {
            h.code = code;
        }
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        if let Some(h) = self.header_mut() {
            h.checksum.set(csum);
        }
    }

    /// Sets the echo identifier (checksum not updated).
    #[inline]
    pub fn set_echo_ident(&mut self, ident: u16) {
        if let Some(h) = self.header_mut() {
            h.rest_hi.set(ident);
        }
    }

    /// Sets the echo sequence number (checksum not updated).
    #[inline]
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        if let Some(h) = self.header_mut() {
            h.rest_lo.set(seq);
        }
    }

    /// Recomputes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Turns an echo request into its reply in place (RFC 792: "the type code changed to 0"; data,
    /// identifier and sequence number are returned unchanged) with an incremental checksum
    /// update. Returns false, changing nothing, if this is not an echo request.
    #[inline]
    pub fn make_echo_reply(&mut self) -> bool {
        let Some(h) = self.header_mut() else {
            return false;
        };
        if h.msg_type != message::ECHO_REQUEST || h.code != 0 {
            return false;
        }
        let old = u16::from_be_bytes([h.msg_type, h.code]);
        h.msg_type = message::ECHO_REPLY;
        h.checksum
            .set(checksum::update_u16(h.checksum.get(), old, 0));
        true
    }

    /// The data after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// A decoded ICMPv4 message of one of the kinds tandem sends or answers. The data (echo payload,
/// quoted datagram) is not part of the Repr, only its length: it stays in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr {
    /// Type 8.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data length.
        data_len: u16,
    },
    /// Type 0.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data length.
        data_len: u16,
    },
    /// Type 3.
    DstUnreachable {
        /// Code.
        reason: DstUnreachable,
        /// Next-hop MTU for [`DstUnreachable::FRAG_NEEDED`], otherwise 0.
        next_hop_mtu: u16,
        /// Quoted datagram length.
        data_len: u16,
    },
    /// Type 11.
    TimeExceeded {
        /// Code.
        reason: TimeExceeded,
        /// Quoted datagram length.
        data_len: u16,
    },
}

/// How many bytes of an offending datagram of `datagram_len` bytes an ICMP error quotes: all of
/// it up to [`MAX_QUOTE_LEN`] (RFC 1812 4.3.2.3, which supersedes RFC 792's "IP header + 64
/// bits" minimum: this is always at least that much when the datagram has it).
#[inline]
pub const fn quote_len(datagram_len: usize) -> u16 {
    if datagram_len < MAX_QUOTE_LEN {
        datagram_len as u16
    } else {
        MAX_QUOTE_LEN as u16
    }
}

impl Icmpv4Repr {
    /// Decodes a checked message and verifies its checksum. Types other than the four above are
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv4Packet<T>) -> Result<Self> {
        packet.check()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data_len = u16::try_from(packet.data().len()).map_err(|_| Error::Malformed)?;
        match (packet.msg_type(), packet.code()) {
            (message::ECHO_REQUEST, 0) => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            }),
            (message::ECHO_REPLY, 0) => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            }),
            (message::DST_UNREACHABLE, code) => Ok(Icmpv4Repr::DstUnreachable {
                reason: DstUnreachable(code),
                next_hop_mtu: packet.next_hop_mtu(),
                data_len,
            }),
            (message::TIME_EXCEEDED, code) => Ok(Icmpv4Repr::TimeExceeded {
                reason: TimeExceeded(code),
                data_len,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    /// Time exceeded for an offending datagram of `datagram_len` bytes (as received, padding
    /// excluded: [`Ipv4Packet::datagram`]), quoting as much as RFC 1812 allows.
    #[inline]
    pub const fn time_exceeded(reason: TimeExceeded, datagram_len: usize) -> Self {
        Icmpv4Repr::TimeExceeded {
            reason,
            data_len: quote_len(datagram_len),
        }
    }

    /// Destination unreachable for an offending datagram of `datagram_len` bytes.
    #[inline]
    pub const fn dst_unreachable(
        reason: DstUnreachable,
        next_hop_mtu: u16,
        datagram_len: usize,
    ) -> Self {
        Icmpv4Repr::DstUnreachable {
            reason,
            next_hop_mtu,
            data_len: quote_len(datagram_len),
        }
    }

    /// The reply to an echo request (same identifier, sequence number and data); `None` for any
    /// other message.
    #[inline]
    pub const fn echo_reply(&self) -> Option<Self> {
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data_len,
            } => Some(Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data_len,
            }),
            _ => None,
        }
    }

    /// Length of the data after the header.
    #[inline]
    pub const fn data_len(&self) -> u16 {
        match *self {
            Icmpv4Repr::EchoRequest { data_len, .. }
            | Icmpv4Repr::EchoReply { data_len, .. }
            | Icmpv4Repr::DstUnreachable { data_len, .. }
            | Icmpv4Repr::TimeExceeded { data_len, .. } => data_len,
        }
    }

    /// Header (8) plus data.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data_len() as usize
    }

    /// Writes the header in front of the data already at `buf[8..buffer_len()]` and fills the
    /// checksum over the whole message. Returns 8.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let Some(out) = buf.get_mut(..self.buffer_len()) else {
            return Err(Error::Truncated);
        };
        let (msg_type, code, hi, lo) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => {
                (message::ECHO_REQUEST, 0, ident, seq_no)
            }
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => (message::ECHO_REPLY, 0, ident, seq_no),
            Icmpv4Repr::DstUnreachable {
                reason,
                next_hop_mtu,
                ..
            } => (message::DST_UNREACHABLE, reason.0, 0, next_hop_mtu),
            Icmpv4Repr::TimeExceeded { reason, .. } => (message::TIME_EXCEEDED, reason.0, 0, 0),
        };
        let h = Header {
            msg_type,
            code,
            checksum: U16::ZERO,
            rest_hi: U16::new(hi),
            rest_lo: U16::new(lo),
        };
        h.write_to_prefix(out).map_err(|_| Error::Truncated)?;
        Icmpv4Packet::new_unchecked(out).fill_checksum();
        Ok(HEADER_LEN)
    }
}

/// Whether a router may answer `offending` with an ICMP error, by the rules of RFC 1812
/// 4.3.2.7 that can be decided from the datagram alone. An error must not be sent for:
///
/// * an ICMP error message (or an ICMP datagram too short to tell),
/// * a datagram to the limited broadcast or a multicast address,
/// * a non-initial fragment,
/// * a source that does not identify a single host: 0.0.0.0, loopback (127/8), limited
///   broadcast, multicast, class E (240/4).
///
/// The caller must still apply the rules that need interface knowledge: not for frames received
/// as link-layer broadcast/multicast, not for directed broadcasts of an attached subnet, and
/// rate-limit what it sends (RFC 1812 4.3.2.8).
pub fn icmp_error_allowed<T: AsRef<[u8]>>(offending: &Ipv4Packet<T>) -> bool {
    let src = offending.src_addr();
    let dst = offending.dst_addr();
    if dst.is_broadcast() || dst.is_multicast() {
        return false;
    }
    if src.is_unspecified()
        || src.is_loopback()
        || src.is_broadcast()
        || src.is_multicast()
        || src.octets()[0] >= 240
    {
        return false;
    }
    if offending.frag_offset() != 0 {
        return false;
    }
    if offending.protocol() == IpProtocol::ICMP {
        return match offending.payload().first() {
            Some(&t) => !message::is_error(t),
            None => false,
        };
    }
    true
}

/// Writes a complete IPv4 + ICMP error datagram into `buf` answering `offending` (which must be
/// the datagram as received, before any TTL decrement): IPv4 from `src_addr` to the offender's
/// source, TTL `ttl`, DSCP CS6 (RFC 1812 4.3.2.5 suggests precedence 6, "internetwork control"),
/// then the ICMP header of `repr` and the quote ([`Ipv4Packet::datagram`] truncated to
/// `repr.data_len()`, which [`Icmpv4Repr::time_exceeded`] / [`Icmpv4Repr::dst_unreachable`]
/// size). Returns the datagram length. Does not apply [`icmp_error_allowed`]; the caller does.
pub fn emit_error<T: AsRef<[u8]>>(
    buf: &mut [u8],
    src_addr: Ipv4Addr,
    ttl: u8,
    repr: &Icmpv4Repr,
    offending: &Ipv4Packet<T>,
) -> Result<usize> {
    let quote = offending
        .datagram()
        .get(..usize::from(repr.data_len()))
        .ok_or(Error::Truncated)?;
    let icmp_len = u16::try_from(repr.buffer_len()).map_err(|_| Error::Malformed)?;
    let mut ip = crate::ipv4::Ipv4Repr::new(
        src_addr,
        offending.src_addr(),
        IpProtocol::ICMP,
        icmp_len,
        ttl,
    );
    ip.dscp = 48;
    let total = ip.buffer_len();
    let out = buf.get_mut(..total).ok_or(Error::Truncated)?;
    let icmp = out.get_mut(ip.header_len()..).ok_or(Error::Truncated)?;
    icmp.get_mut(HEADER_LEN..repr.buffer_len())
        .ok_or(Error::Truncated)?
        .copy_from_slice(quote);
    repr.emit(icmp)?;
    ip.emit(out)?;
    Ok(total)
}
