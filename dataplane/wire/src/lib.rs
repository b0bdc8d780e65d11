//! tandem wire formats: zero-copy views and Reprs for Ethernet (+802.1Q), ARP, IPv4, IPv6, UDP,
//! TCP and ICMPv4, the internet checksum, and a frame builder.
//!
//! # Shape of every format
//!
//! Each format is a pair, in the style of smoltcp's `wire` module:
//!
//! * `XxxPacket<T: AsRef<[u8]>>` is a typed view over bytes that someone else owns (an RX frame in
//!   a UMEM, a TX buffer). It copies nothing. `XxxPacket::new_checked` is the constructor for
//!   untrusted input: it checks the buffer length against every length the header claims (and the
//!   version, where the format has one) and returns a [`Error`] otherwise. Getters return host
//!   order values; setters exist when `T: AsMut<[u8]>`; `payload()` / `payload_mut()` lend the
//!   bytes after the header. Fixed headers are read through `zerocopy` structs whose multi-byte
//!   fields are network-endian.
//! * `XxxRepr` is a small, `Copy`, fully decoded header: `parse` from a checked view (adding the
//!   semantic checks the view does not do, e.g. checksums), `buffer_len`, and `emit` into a
//!   caller-provided `&mut [u8]`.
//!
//! # Contract
//!
//! * No accessor of a view panics once `new_checked` has succeeded, whatever the bytes are, and
//!   `new_checked` / `parse` themselves never panic on any input. (A view made with
//!   `new_unchecked` over a short buffer does not panic either: getters read zeros and setters do
//!   nothing; it simply returns garbage.)
//! * `emit` never panics. Given a buffer of at least `buffer_len()` bytes it succeeds; a shorter
//!   buffer gives [`Error::Truncated`].
//! * Reprs of layers that carry a length (IPv4, IPv6, UDP, TCP, ICMP) include the payload length,
//!   so `buffer_len()` is header plus payload; `emit` writes the header in front of a payload that
//!   is already in place (`buf[header_len..buffer_len]`), so checksums that cover the payload
//!   (UDP, TCP, ICMP) are computed over exactly the bytes that will be sent, and payloads are
//!   never copied by the header code. Build frames inside-out: payload, L4, L3, L2 (see
//!   [`builder`]). Ethernet and ARP Reprs are header-only.
//! * Nothing here allocates; the crate is `no_std` and free of `unsafe`.
//!
//! # Errors
//!
//! Every parse failure is one of the four [`Error`] variants so that a worker can count drops by
//! reason with an array indexed by [`Error::index`] (STYLE habit 9: a dropped packet is counted,
//! not propagated).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use builder::{
    echo_reply_in_place, emit_arp_frame, emit_icmpv4_error_frame, emit_udp_frame, IcmpError,
    UdpFrame,
};
pub use core::net::{Ipv4Addr, Ipv6Addr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr, VlanTag};
pub use icmpv4::{icmp_error_allowed, DstUnreachable, Icmpv4Packet, Icmpv4Repr, TimeExceeded};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::{TcpFlags, TcpOption, TcpOptions, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes could not be read as a format (or a header could not be emitted).
///
/// Deliberately tiny and `Copy`: it is produced per packet on the hot path and usually only
/// counted. Which format failed is known from the call site, so it is not repeated here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header or than a length the header claims (or, for `emit`,
    /// shorter than `buffer_len()`).
    #[error("truncated: buffer shorter than the header or its length fields")]
    Truncated,
    /// A field holds a value the format forbids (bad version, header length below the minimum,
    /// length fields that contradict each other).
    #[error("malformed: header fields are inconsistent or out of range")]
    Malformed,
    /// The header or payload checksum does not verify.
    #[error("bad checksum")]
    Checksum,
    /// Well-formed, but a variant tandem does not handle (e.g. ARP for a non-Ethernet/IPv4
    /// hardware/protocol pair, an ICMP type without a Repr, an 802.3 length field).
    #[error("unsupported: valid but not handled by tandem")]
    Unsupported,
}

impl Error {
    /// Number of variants: the length of a per-reason counter array.
    pub const COUNT: usize = 4;

    /// A dense index in `0..Error::COUNT`, for counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            Error::Truncated => 0,
            Error::Malformed => 1,
            Error::Checksum => 2,
            Error::Unsupported => 3,
        }
    }

    /// A short stable name for counters and logs (`truncated`, `malformed`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Checksum => "checksum",
            Error::Unsupported => "unsupported",
        }
    }
}

/// Result alias used by every parser and emitter in this crate.
pub type Result<T> = core::result::Result<T, Error>;
