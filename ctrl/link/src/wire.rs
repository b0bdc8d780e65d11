//! Wire formats of the secure link: the data-frame header and the handshake hello, as zero-copy
//! views plus Reprs (STYLE habit 1). The byte layouts are tabled in `docs/secure-link.md`.
//!
//! # Contract
//!
//! * `XxxPacket::new_checked` is the constructor for untrusted bytes. It never panics; once it
//!   has succeeded no accessor panics, whatever the bytes are. A view made with `new_unchecked`
//!   over a short buffer does not panic either: getters read zeros and setters do nothing.
//! * `XxxRepr::parse` adds the semantic checks (known enum values) and never panics.
//! * `emit` never panics: given a buffer of at least `buffer_len()` bytes it succeeds, a shorter
//!   buffer gives [`WireError::Truncated`]. `DataRepr::emit` writes the header only, in front of
//!   a payload that is already in place, so payloads are never copied.
//! * Nothing here allocates.
//!
//! Every frame starts with the same four bytes (version, frame type, link kind, protection), so a
//! receiver can demultiplex with [`peek`] before it knows which format follows.

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The only secure-link version this code speaks.
pub const VERSION: u8 = 1;
/// Length of the data-frame header (the AEAD's associated data).
pub const DATA_HEADER_LEN: usize = 20;
/// Length of the AES-256-GCM tag after an encrypted payload.
pub const TAG_LEN: usize = 16;
/// Length of a handshake nonce.
pub const NONCE_LEN: usize = 32;
/// Length of the hello's HMAC-SHA256 tag.
pub const HELLO_MAC_LEN: usize = 32;
/// Length of the part of a hello that its MAC covers.
pub const HELLO_BODY_LEN: usize = 72;
/// Length of a hello message.
pub const HELLO_LEN: usize = HELLO_BODY_LEN + HELLO_MAC_LEN;
/// Largest payload one data frame carries (the length field is 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Why bytes could not be read as a secure-link frame (or a frame could not be emitted).
///
/// Tiny and `Copy`: produced per frame and usually only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header, or than the lengths the header claims (for `emit`: shorter than
    /// `buffer_len()`).
    #[error("truncated: buffer shorter than the header or its length fields")]
    Truncated,
    /// The version byte is not [`VERSION`].
    #[error("unsupported secure-link version")]
    UnsupportedVersion,
    /// A field holds a value the format forbids (unknown frame type, link kind, protection or
    /// flag bits; non-zero reserved bytes in a hello).
    #[error("malformed: a field holds a value the format forbids")]
    Malformed,
}

/// Which message follows the common first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Handshake hello ([`HelloPacket`]).
    Hello = 1,
    /// Sealed (or clear-text) payload ([`DataPacket`]).
    Data = 2,
}

impl FrameType {
    /// Decodes the wire value.
    pub const fn from_u8(v: u8) -> Option<FrameType> {
        match v {
            1 => Some(FrameType::Hello),
            2 => Some(FrameType::Data),
            _ => None,
        }
    }
}

/// Which of the two links a frame belongs to. Part of every key-derivation label and of the
/// authenticated header, so a frame of one link is never accepted on the other even when both
/// share one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LinkKind {
    /// The failover link: hellos, LANTEST, configuration and command replication.
    Failover = 1,
    /// The state link: connection, xlate, ARP and SA replication.
    State = 2,
}

impl LinkKind {
    /// Decodes the wire value.
    pub const fn from_u8(v: u8) -> Option<LinkKind> {
        match v {
            1 => Some(LinkKind::Failover),
            2 => Some(LinkKind::State),
            _ => None,
        }
    }

    /// The operator's name for the link ("failover link", "state link").
    pub const fn name(self) -> &'static str {
        match self {
            LinkKind::Failover => "failover link",
            LinkKind::State => "state link",
        }
    }
}

/// How data frames are protected. Carried in every frame so that a mate configured differently
/// is recognised and named in the log instead of failing as garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Protection {
    /// No failover key configured: no encryption, no authentication.
    Cleartext = 0,
    /// Failover key configured: AES-256-GCM (NIST SP 800-38D, RFC 5116), keys from HKDF-SHA256
    /// (RFC 5869).
    Aes256Gcm = 1,
}

impl Protection {
    /// Decodes the wire value.
    pub const fn from_u8(v: u8) -> Option<Protection> {
        match v {
            0 => Some(Protection::Cleartext),
            1 => Some(Protection::Aes256Gcm),
            _ => None,
        }
    }

    /// Bytes after the payload of a data frame: the AEAD tag, or nothing in clear text.
    pub const fn tag_len(self) -> usize {
        match self {
            Protection::Cleartext => 0,
            Protection::Aes256Gcm => TAG_LEN,
        }
    }
}

/// Reads the common first four bytes: the frame type and link kind, after checking the version.
/// For demultiplexing a shared interface; the full checks are the views' `new_checked`.
pub fn peek(buf: &[u8]) -> Result<(FrameType, LinkKind), WireError> {
    let Some(&[version, frame_type, link, _protection]) = buf.first_chunk::<4>() else {
        return Err(WireError::Truncated);
    };
    if version != VERSION {
        return Err(WireError::UnsupportedVersion);
    }
    match (FrameType::from_u8(frame_type), LinkKind::from_u8(link)) {
        (Some(t), Some(k)) => Ok((t, k)),
        _ => Err(WireError::Malformed),
    }
}

// ---------------------------------------------------------------------------------------------
// Data frame
// ---------------------------------------------------------------------------------------------

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct DataHeader {
    version: u8,
    frame_type: u8,
    link: u8,
    protection: u8,
    session: U32,
    seq: U64,
    payload_len: U16,
    reserved: U16,
}

impl DataHeader {
    const ZEROED: DataHeader = DataHeader {
        version: 0,
        frame_type: 0,
        link: 0,
        protection: 0,
        session: U32::ZERO,
        seq: U64::ZERO,
        payload_len: U16::ZERO,
        reserved: U16::ZERO,
    };
}

/// A zero-copy view of a data frame: header, payload (ciphertext when protected), tag.
///
/// Bytes after `frame_len()` (e.g. Ethernet padding) are not part of the frame.
#[derive(Debug, Clone)]
pub struct DataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DataPacket<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        DataPacket { buffer }
    }

    /// Wraps untrusted bytes: version, frame type, known link kind and protection, and
    /// `header + payload_len + tag ≤ buffer length`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The checks `new_checked` performs.
    pub fn check(&self) -> Result<(), WireError> {
        let Ok((h, _)) = DataHeader::ref_from_prefix(self.buffer.as_ref()) else {
            return Err(WireError::Truncated);
        };
        if h.version != VERSION {
            return Err(WireError::UnsupportedVersion);
        }
        if h.frame_type != FrameType::Data as u8 || LinkKind::from_u8(h.link).is_none() {
            return Err(WireError::Malformed);
        }
        let Some(protection) = Protection::from_u8(h.protection) else {
            return Err(WireError::Malformed);
        };
        let need = DATA_HEADER_LEN + usize::from(h.payload_len.get()) + protection.tag_len();
        if need > self.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn header(&self) -> &DataHeader {
        match DataHeader::ref_from_prefix(self.buffer.as_ref()) {
            Ok((h, _)) => h,
            // Unreachable after `new_checked`; zeros instead of a panic.
            Err(_) => &DataHeader::ZEROED,
        }
    }

    /// Version byte.
    #[inline]
    pub fn version(&self) -> u8 {
        self.header().version
    }

    /// Frame type byte (2 for data).
    #[inline]
    pub fn frame_type(&self) -> u8 {
        self.header().frame_type
    }

    /// Link kind byte ([`LinkKind`]).
    #[inline]
    pub fn link(&self) -> u8 {
        self.header().link
    }

    /// Protection byte ([`Protection`]).
    #[inline]
    pub fn protection(&self) -> u8 {
        self.header().protection
    }

    /// Session id: names the handshake whose keys sealed this frame.
    #[inline]
    pub fn session(&self) -> u32 {
        self.header().session.get()
    }

    /// Sequence number within the session (starts at 0, one per frame and direction).
    #[inline]
    pub fn seq(&self) -> u64 {
        self.header().seq.get()
    }

    /// Payload length (without header and tag).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        self.header().payload_len.get()
    }

    /// Reserved field: zero when sent, covered by the AEAD, otherwise ignored.
    #[inline]
    pub fn reserved(&self) -> u16 {
        self.header().reserved.get()
    }

    fn tag_len(&self) -> usize {
        Protection::from_u8(self.protection()).map_or(0, Protection::tag_len)
    }

    /// Header, payload and tag: the bytes that belong to this frame.
    #[inline]
    pub fn frame_len(&self) -> usize {
        DATA_HEADER_LEN + usize::from(self.payload_len()) + self.tag_len()
    }

    /// The header bytes: the AEAD's associated data.
    #[inline]
    pub fn header_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(..DATA_HEADER_LEN).unwrap_or(&[])
    }

    /// The payload (ciphertext while sealed).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = DATA_HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_ref()
            .get(DATA_HEADER_LEN..end)
            .unwrap_or(&[])
    }

    /// The tag after the payload (empty in clear text).
    #[inline]
    pub fn tag(&self) -> &[u8] {
        let start = DATA_HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_ref()
            .get(start..start + self.tag_len())
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DataPacket<T> {
    #[inline]
    fn header_mut(&mut self) -> Option<&mut DataHeader> {
        DataHeader::mut_from_prefix(self.buffer.as_mut())
            .ok()
            .map(|(h, _)| h)
    }

    /// Sets the session id.
    #[inline]
    pub fn set_session(&mut self, v: u32) {
        if let Some(h) = self.header_mut() {
            h.session.set(v);
        }
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq(&mut self, v: u64) {
        if let Some(h) = self.header_mut() {
            h.seq.set(v);
        }
    }

    /// The payload, mutable (decrypt/encrypt in place).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = DATA_HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_mut()
            .get_mut(DATA_HEADER_LEN..end)
            .unwrap_or(&mut [])
    }

    /// Header (read-only), payload and tag (mutable) at once, for the AEAD. All empty if the
    /// buffer is shorter than `frame_len()` (impossible after `new_checked`).
    pub fn split_mut(&mut self) -> (&[u8], &mut [u8], &mut [u8]) {
        let payload_len = usize::from(self.payload_len());
        let tag_len = self.tag_len();
        let Some(frame) = self
            .buffer
            .as_mut()
            .get_mut(..DATA_HEADER_LEN + payload_len + tag_len)
        else {
            return (&[], &mut [], &mut []);
        };
        let (header, rest) = frame.split_at_mut(DATA_HEADER_LEN);
        let (payload, tag) = rest.split_at_mut(payload_len);
        (header, payload, tag)
    }
}

/// A decoded data-frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataRepr {
    /// Which link.
    pub link: LinkKind,
    /// Cleartext or sealed.
    pub protection: Protection,
    /// Session id.
    pub session: u32,
    /// Sequence number.
    pub seq: u64,
    /// Payload length.
    pub payload_len: u16,
}

impl DataRepr {
    /// Decodes a checked view.
    pub fn parse<T: AsRef<[u8]>>(p: &DataPacket<T>) -> Result<DataRepr, WireError> {
        p.check()?;
        let (Some(link), Some(protection)) = (
            LinkKind::from_u8(p.link()),
            Protection::from_u8(p.protection()),
        ) else {
            return Err(WireError::Malformed);
        };
        Ok(DataRepr {
            link,
            protection,
            session: p.session(),
            seq: p.seq(),
            payload_len: p.payload_len(),
        })
    }

    /// Header length.
    pub const fn header_len(&self) -> usize {
        DATA_HEADER_LEN
    }

    /// Whole frame: header, payload and tag.
    pub const fn buffer_len(&self) -> usize {
        DATA_HEADER_LEN + self.payload_len as usize + self.protection.tag_len()
    }

    /// Writes the header into `buf[..DATA_HEADER_LEN]`; the payload (and room for the tag) must
    /// already be in `buf[DATA_HEADER_LEN..buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if buf.len() < self.buffer_len() {
            return Err(WireError::Truncated);
        }
        let h = DataHeader {
            version: VERSION,
            frame_type: FrameType::Data as u8,
            link: self.link as u8,
            protection: self.protection as u8,
            session: U32::new(self.session),
            seq: U64::new(self.seq),
            payload_len: U16::new(self.payload_len),
            reserved: U16::ZERO,
        };
        h.write_to_prefix(buf).map_err(|_| WireError::Truncated)
    }
}

// ---------------------------------------------------------------------------------------------
// Hello (handshake)
// ---------------------------------------------------------------------------------------------

/// Hello flag: the sender has established the session these two nonces name (no reply needed).
pub const FLAG_CONFIRMED: u8 = 0x01;
/// Hello flag: the sender starts a new session while it still holds one (rekey), as opposed to a
/// unit that (re)started.
pub const FLAG_REKEY: u8 = 0x02;
/// Hello flag: the echo field holds the receiver's nonce.
pub const FLAG_ECHO: u8 = 0x04;
const FLAGS_KNOWN: u8 = FLAG_CONFIRMED | FLAG_REKEY | FLAG_ECHO;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HelloHeader {
    version: u8,
    frame_type: u8,
    link: u8,
    protection: u8,
    flags: u8,
    reserved: [u8; 3],
    nonce: [u8; NONCE_LEN],
    echo: [u8; NONCE_LEN],
    mac: [u8; HELLO_MAC_LEN],
}

impl HelloHeader {
    const ZEROED: HelloHeader = HelloHeader {
        version: 0,
        frame_type: 0,
        link: 0,
        protection: 0,
        flags: 0,
        reserved: [0; 3],
        nonce: [0; NONCE_LEN],
        echo: [0; NONCE_LEN],
        mac: [0; HELLO_MAC_LEN],
    };
}

/// A zero-copy view of a handshake hello.
#[derive(Debug, Clone)]
pub struct HelloPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HelloPacket<T> {
    /// Wraps `buffer` without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        HelloPacket { buffer }
    }

    /// Wraps untrusted bytes: length, version, frame type, known link kind, protection and flag
    /// bits, zero reserved bytes. The MAC is not checked here (that needs the key).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The checks `new_checked` performs.
    pub fn check(&self) -> Result<(), WireError> {
        let Ok((h, _)) = HelloHeader::ref_from_prefix(self.buffer.as_ref()) else {
            return Err(WireError::Truncated);
        };
        if h.version != VERSION {
            return Err(WireError::UnsupportedVersion);
        }
        if h.frame_type != FrameType::Hello as u8
            || LinkKind::from_u8(h.link).is_none()
            || Protection::from_u8(h.protection).is_none()
            || h.flags & !FLAGS_KNOWN != 0
            || h.reserved != [0; 3]
        {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn header(&self) -> &HelloHeader {
        match HelloHeader::ref_from_prefix(self.buffer.as_ref()) {
            Ok((h, _)) => h,
            // Unreachable after `new_checked`; zeros instead of a panic.
            Err(_) => &HelloHeader::ZEROED,
        }
    }

    /// Version byte.
    #[inline]
    pub fn version(&self) -> u8 {
        self.header().version
    }

    /// Link kind byte ([`LinkKind`]).
    #[inline]
    pub fn link(&self) -> u8 {
        self.header().link
    }

    /// Protection byte ([`Protection`]) the sender uses.
    #[inline]
    pub fn protection(&self) -> u8 {
        self.header().protection
    }

    /// Flag bits (`FLAG_*`).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.header().flags
    }

    /// The sender's nonce for this handshake.
    #[inline]
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.header().nonce
    }

    /// The receiver's nonce as the sender saw it (meaningful only with [`FLAG_ECHO`]).
    #[inline]
    pub fn echo(&self) -> &[u8; NONCE_LEN] {
        &self.header().echo
    }

    /// The HMAC-SHA256 tag (all zeros in clear text).
    #[inline]
    pub fn mac(&self) -> &[u8; HELLO_MAC_LEN] {
        &self.header().mac
    }

    /// The bytes the MAC covers: everything before it.
    #[inline]
    pub fn authenticated_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(..HELLO_BODY_LEN).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HelloPacket<T> {
    /// Sets the MAC field.
    #[inline]
    pub fn set_mac(&mut self, mac: &[u8; HELLO_MAC_LEN]) {
        if let Ok((h, _)) = HelloHeader::mut_from_prefix(self.buffer.as_mut()) {
            h.mac = *mac;
        }
    }

    /// Sets the flag bits (test and fault-injection use; the link emits through the Repr).
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        if let Ok((h, _)) = HelloHeader::mut_from_prefix(self.buffer.as_mut()) {
            h.flags = flags;
        }
    }
}

/// A decoded hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HelloRepr {
    /// Which link.
    pub link: LinkKind,
    /// The protection the sender uses.
    pub protection: Protection,
    /// The sender's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The receiver's nonce, once the sender has seen it.
    pub echo: Option<[u8; NONCE_LEN]>,
    /// The sender has established the session named by `nonce` and `echo`.
    pub confirmed: bool,
    /// The sender starts a new session while still holding one.
    pub rekey: bool,
}

impl HelloRepr {
    /// Decodes a checked view (the MAC is the link's business).
    pub fn parse<T: AsRef<[u8]>>(p: &HelloPacket<T>) -> Result<HelloRepr, WireError> {
        p.check()?;
        let (Some(link), Some(protection)) = (
            LinkKind::from_u8(p.link()),
            Protection::from_u8(p.protection()),
        ) else {
            return Err(WireError::Malformed);
        };
        let flags = p.flags();
        Ok(HelloRepr {
            link,
            protection,
            nonce: *p.nonce(),
            echo: (flags & FLAG_ECHO != 0).then_some(*p.echo()),
            confirmed: flags & FLAG_CONFIRMED != 0,
            rekey: flags & FLAG_REKEY != 0,
        })
    }

    /// Length of a hello.
    pub const fn buffer_len(&self) -> usize {
        HELLO_LEN
    }

    /// The flag byte this Repr encodes to.
    pub const fn flags(&self) -> u8 {
        (if self.confirmed { FLAG_CONFIRMED } else { 0 })
            | (if self.rekey { FLAG_REKEY } else { 0 })
            | (if self.echo.is_some() { FLAG_ECHO } else { 0 })
    }

    /// Writes the hello into `buf[..HELLO_LEN]` with an all-zero MAC (the link fills it in).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let h = HelloHeader {
            version: VERSION,
            frame_type: FrameType::Hello as u8,
            link: self.link as u8,
            protection: self.protection as u8,
            flags: self.flags(),
            reserved: [0; 3],
            nonce: self.nonce,
            echo: self.echo.unwrap_or([0; NONCE_LEN]),
            mac: [0; HELLO_MAC_LEN],
        };
        h.write_to_prefix(buf).map_err(|_| WireError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_documented_lengths() {
        assert_eq!(core::mem::size_of::<DataHeader>(), DATA_HEADER_LEN);
        assert_eq!(core::mem::size_of::<HelloHeader>(), HELLO_LEN);
    }

    #[test]
    fn unchecked_views_over_short_buffers_read_zeros() {
        let d = DataPacket::new_unchecked(&[1u8, 2][..]);
        assert_eq!(
            (d.seq(), d.session(), d.payload(), d.tag()),
            (0, 0, &[][..], &[][..])
        );
        let h = HelloPacket::new_unchecked(&[1u8][..]);
        assert_eq!(h.nonce(), &[0; NONCE_LEN]);
        assert!(h.authenticated_bytes().is_empty());
    }
}
