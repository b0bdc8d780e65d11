//! TCP (RFC 9293) over IPv4: the header view with options, flags, checksum with the IPv4
//! pseudo-header, an option iterator, and the Repr.
//!
//! `new_checked` verifies `20 ≤ data offset × 4 ≤ buffer length`. TCP has no length field of its
//! own: the segment is the whole buffer, so pass exactly the IP payload
//! ([`crate::Ipv4Packet::payload`]). As for UDP, checksums are only verified on request
//! ([`TcpPacket::verify_checksum`]) because of veth checksum offload.

use core::fmt;
use core::net::Ipv4Addr;

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::checksum;
use crate::ipv4::IpProtocol;
use crate::{Error, Result};

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    src_port: U16,
    dst_port: U16,
    seq: U32,
    ack: U32,
    off_flags: U16,
    window: U16,
    checksum: U16,
    urgent: U16,
}

impl Header {
    const ZEROED: Header = Header {
        src_port: U16::ZERO,
        dst_port: U16::ZERO,
        seq: U32::ZERO,
        ack: U32::ZERO,
        off_flags: U16::ZERO,
        window: U16::ZERO,
        checksum: U16::ZERO,
        urgent: U16::ZERO,
    };
}

/// Minimum header length.
pub const HEADER_LEN: usize = 20;
/// Maximum header length (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// The TCP control bits (the low 12 bits of the data offset word; the 3 reserved bits and the
/// historic NS bit are kept as they are).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x001);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x002);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x004);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x008);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x010);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x020);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x040);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// No flags.
    pub const EMPTY: TcpFlags = TcpFlags(0);

    const MASK: u16 = 0x0fff;

    /// All bits of `other` are set in `self`.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Any bit of `other` is set in `self`.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, char); 8] = [
            (TcpFlags::CWR, 'C'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ACK, 'A'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::SYN, 'S'),
            (TcpFlags::FIN, 'F'),
        ];
        f.write_str("[")?;
        for (flag, c) in NAMES {
            if self.contains(flag) {
                fmt::Write::write_char(f, c)?;
            }
        }
        f.write_str("]")
    }
}

/// One TCP option (RFC 9293 section 3.2, RFC 7323, RFC 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Kind 1, padding.
    NoOperation,
    /// Kind 2, maximum segment size.
    MaxSegmentSize(u16),
    /// Kind 3, window scale shift count.
    WindowScale(u8),
    /// Kind 4, SACK permitted.
    SackPermitted,
    /// Kind 8, timestamps.
    Timestamps {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other kind (SACK blocks, MD5, TFO, ...) with its data.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data (after kind and length).
        data: &'a [u8],
    },
}

/// Iterator over the options of a TCP header. Stops at End of Option List or at the first
/// malformed option (bad length, or an option running past the header), after which
/// [`TcpOptions::malformed`] is true; never panics.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
    malformed: bool,
}

impl<'a> TcpOptions<'a> {
    /// Iterates over raw option bytes.
    #[inline]
    pub const fn new(options: &'a [u8]) -> Self {
        TcpOptions {
            rest: options,
            malformed: false,
        }
    }

    /// True if iteration stopped on a malformed option.
    #[inline]
    pub const fn malformed(&self) -> bool {
        self.malformed
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            0 => {
                self.rest = &[];
                None
            }
            1 => {
                self.rest = after_kind;
                Some(TcpOption::NoOperation)
            }
            _ => {
                let len = after_kind.first().map_or(0, |&l| usize::from(l));
                let Some(data) = (len >= 2).then(|| self.rest.get(2..len)).flatten() else {
                    self.malformed = true;
                    self.rest = &[];
                    return None;
                };
                self.rest = self.rest.get(len..).unwrap_or(&[]);
                Some(match (kind, data) {
                    (2, &[a, b]) => TcpOption::MaxSegmentSize(u16::from_be_bytes([a, b])),
                    (3, &[s]) => TcpOption::WindowScale(s),
                    (4, &[]) => TcpOption::SackPermitted,
                    (8, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamps {
                        tsval: u32::from_be_bytes([a, b, c, d]),
                        tsecr: u32::from_be_bytes([e, f, g, h]),
                    },
                    _ => TcpOption::Unknown { kind, data },
                })
            }
        }
    }
}

/// A zero-copy view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps untrusted bytes (exactly the IP payload): `20 ≤ header_len ≤ buffer length`.
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
        let header_len = usize::from(h.off_flags.get() >> 12) * 4;
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.header().seq.get()
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.header().ack.get()
    }

    /// Header length in bytes (data offset × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.header().off_flags.get() >> 12) * 4
    }

    /// Control bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.header().off_flags.get() & TcpFlags::MASK)
    }

    /// Window.
    #[inline]
    pub fn window(&self) -> u16 {
        self.header().window.get()
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.header().checksum.get()
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        self.header().urgent.get()
    }

    /// Raw option bytes.
    #[inline]
    pub fn options_bytes(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The options, decoded lazily.
    #[inline]
    pub fn options(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options_bytes())
    }

    /// The segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// True if the checksum verifies against the IPv4 pseudo-header. Segments longer than
    /// 65535 bytes cannot be carried in IPv4 and do not verify.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let seg = self.buffer.as_ref();
        let Ok(len) = u16::try_from(seg.len()) else {
            return false;
        };
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, len);
        checksum::combine(&[pseudo, checksum::sum(seg)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number (checksum not updated).
    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        if let Some(h) = self.header_mut() {
            h.seq.set(seq);
        }
    }

    /// Sets the acknowledgment number (checksum not updated).
    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        if let Some(h) = self.header_mut() {
            h.ack.set(ack);
        }
    }

    /// Sets the control bits, keeping the data offset (checksum not updated).
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        if let Some(h) = self.header_mut() {
            let off = h.off_flags.get() & !TcpFlags::MASK;
            h.off_flags.set(off | (flags.0 & TcpFlags::MASK));
        }
    }

    /// Sets the window (checksum not updated).
    #[inline]
    pub fn set_window(&mut self, window: u16) {
        if let Some(h) = self.header_mut() {
            h.window.set(window);
        }
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        if let Some(h) = self.header_mut() {
            h.checksum.set(csum);
        }
    }

    /// Recomputes the checksum over pseudo-header and the whole buffer (header and data).
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = u16::try_from(self.buffer.as_ref().len()).unwrap_or(u16::MAX);
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, len);
        let c = !checksum::combine(&[pseudo, checksum::sum(self.buffer.as_ref())]);
        self.set_checksum(c);
    }

    /// Incrementally updates the checksum after a covered 16-bit word changed (RFC 1624).
    #[inline]
    pub fn update_checksum_u16(&mut self, old: u16, new: u16) {
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Incrementally updates the checksum after a covered 32-bit word changed (RFC 1624).
    #[inline]
    pub fn update_checksum_u32(&mut self, old: u32, new: u32) {
        let c = checksum::update_u32(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// The segment data, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let off = self.header_len();
        self.buffer.as_mut().get_mut(off..).unwrap_or(&mut [])
    }
}

/// A decoded TCP header. Of the options, the four that matter for a middlebox (MSS clamping,
/// connection tracking with window scaling, SACK, timestamps) are represented; others are dropped
/// by `parse` and `emit` writes the represented ones in a canonical, 4-byte-aligned layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Window.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// MSS option.
    pub max_seg_size: Option<u16>,
    /// Window scale option.
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// Timestamps option `(tsval, tsecr)`.
    pub timestamps: Option<(u32, u32)>,
    /// Segment data length.
    pub payload_len: u16,
}

impl TcpRepr {
    /// Decodes a checked segment (checksum not verified; see the module doc). Malformed options
    /// are [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<Self> {
        packet.check()?;
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window(),
            urgent: packet.urgent(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload_len: u16::try_from(packet.payload().len()).map_err(|_| Error::Malformed)?,
        };
        let mut options = packet.options();
        for opt in &mut options {
            match opt {
                TcpOption::MaxSegmentSize(m) => repr.max_seg_size = Some(m),
                TcpOption::WindowScale(s) => repr.window_scale = Some(s),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => repr.timestamps = Some((tsval, tsecr)),
                TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        if options.malformed() {
            return Err(Error::Malformed);
        }
        Ok(repr)
    }

    /// Option bytes `emit` writes, padded to a multiple of 4.
    #[inline]
    pub const fn options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        if self.timestamps.is_some() {
            n += 12; // SACK-permitted folded in, or NOP NOP, + 10
        } else if self.sack_permitted {
            n += 4; // NOP NOP + 2
        }
        if self.window_scale.is_some() {
            n += 4; // NOP + 3
        }
        n
    }

    /// Header length `emit` writes: 20 plus options.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header plus payload.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len as usize
    }

    /// Writes header and options in front of the payload already at
    /// `buf[header_len()..buffer_len()]`, and fills the checksum over pseudo-header, header and
    /// payload. Returns the header length.
    pub fn emit(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<usize> {
        let header_len = self.header_len();
        if self.buffer_len() > usize::from(u16::MAX) {
            return Err(Error::Malformed);
        }
        let Some(out) = buf.get_mut(..self.buffer_len()) else {
            return Err(Error::Truncated);
        };
        let h = Header {
            src_port: U16::new(self.src_port),
            dst_port: U16::new(self.dst_port),
            seq: U32::new(self.seq_number),
            ack: U32::new(self.ack_number),
            off_flags: U16::new(((header_len as u16 / 4) << 12) | (self.flags.0 & TcpFlags::MASK)),
            window: U16::new(self.window),
            checksum: U16::ZERO,
            urgent: U16::new(self.urgent),
        };
        h.write_to_prefix(out).map_err(|_| Error::Truncated)?;
        let mut opts = [0u8; MAX_HEADER_LEN - HEADER_LEN];
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            if let Some(dst) = opts.get_mut(n..n + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            n += bytes.len();
        };
        // The layout Linux uses (`tcp_options_write`), so a Linux SYN re-emits byte for byte:
        // MSS; SACK-permitted sharing a word with timestamps when both are present; window
        // scale last behind a NOP.
        if let Some(mss) = self.max_seg_size {
            let [a, b] = mss.to_be_bytes();
            put(&[2, 4, a, b]);
        }
        match (self.timestamps, self.sack_permitted) {
            (Some((tsval, tsecr)), sack) => {
                put(if sack { &[4, 2, 8, 10] } else { &[1, 1, 8, 10] });
                put(&tsval.to_be_bytes());
                put(&tsecr.to_be_bytes());
            }
            (None, true) => put(&[1, 1, 4, 2]),
            (None, false) => {}
        }
        if let Some(s) = self.window_scale {
            put(&[1, 3, 3, s]);
        }
        if let (Some(dst), Some(src)) = (out.get_mut(HEADER_LEN..header_len), opts.get(..n)) {
            dst.copy_from_slice(src);
        }
        TcpPacket::new_unchecked(out).fill_checksum(src, dst);
        Ok(header_len)
    }
}
