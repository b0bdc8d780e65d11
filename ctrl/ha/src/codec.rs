//! The failover-link payload codec: how a [`Message`] is laid out in the bytes that the secure
//! link (`tandem-link`) seals into one frame, and how untrusted bytes become a `Message` again.
//! The byte tables, transport and timing are in `ctrl/ha/docs/failover-protocol.md`;
//! this file is the executable form of its "Payload" section.
//!
//! # Layout in one paragraph
//!
//! Every payload starts with the same two bytes: the codec [`VERSION`] and the [`MessageType`].
//! The rest is fixed-size fields in network byte order, described by zerocopy structs (STYLE
//! habit 1), except the hello's two lists (data-interface MACs and interface reports), whose
//! lengths are 16-bit counts in the hello's fixed part, and the byte strings of the control
//! plane's exec and configuration messages (types 16–18), whose lengths are 16-bit fields
//! checked against [`MAX_EXEC_COMMAND`] / [`MAX_EXEC_CHUNK`] before anything is copied. Enumerations start at 1 so that an
//! all-zero buffer is never a valid message; reserved bits and bytes must be zero.
//!
//! # Contract
//!
//! * [`decode`] never panics, whatever the bytes. It checks the version, the type, every
//!   enumeration value, every reserved bit, the list counts against [`MAX_INTERFACES`], and that
//!   the payload is exactly as long as its fields: a shorter one is [`DecodeError::Truncated`], a
//!   longer one [`DecodeError::TrailingBytes`]. It allocates only the hello's two lists and the
//!   exec / configuration byte strings, and only after the length check has proved the bytes are
//!   there.
//! * The encoding is canonical: every byte string `decode` accepts is exactly what [`encode`]
//!   writes for the decoded message. (Only `rx_age` values beyond `u64::MAX` ns, 584 years, which
//!   no [`crate::Timestamp`] difference can produce, are saturated on encode.)
//! * [`encode`] never allocates and never panics: a buffer shorter than [`encoded_len`] gives
//!   [`EncodeError::BufferTooSmall`], and every error is found before the first byte is
//!   written, so a failed `encode` leaves `buf` untouched.

use alloc::vec::Vec;
use core::time::Duration;

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::config::MAX_MONITORED;
use crate::msg::{
    ConfigChunk, Control, ExecReply, ExecRequest, Hello, InterfaceHello, InterfaceReport, LanTest,
    LanTestKind, Message, MAX_EXEC_CHUNK, MAX_EXEC_COMMAND,
};
use crate::time::nanos;
use crate::types::{IfIndex, InterfaceStatus, Mac, Role, State};

/// The only payload version this code speaks. A mate speaking another version is refused with
/// [`DecodeError::UnsupportedVersion`] rather than misread.
pub const VERSION: u8 = 1;

/// EtherType of every tandem failover frame (failover link, state link, and LANTEST / interface
/// hellos on data interfaces): IEEE 802 "Local Experimental Ethertype 1" (IEEE Std 802-2014,
/// 9.2.2), which needs no registration and is never routed.
pub const ETHERTYPE: u16 = 0x88B5;

/// Most entries a hello's MAC list or report list may have. Seeds 004, "Interface Monitoring":
/// "You can monitor up to 1025 interfaces" ([`MAX_MONITORED`]); the hardware profiles stay far
/// below it (128 at most). A hello at this limit is [`MAX_ENCODED_LEN`] bytes, well inside the
/// secure link's 65535-byte payload limit.
pub const MAX_INTERFACES: usize = MAX_MONITORED;

/// Length of the common header: version and message type.
pub const HEADER_LEN: usize = 2;
/// Length of a hello without its lists (common header included).
pub const HELLO_FIXED_LEN: usize = HEADER_LEN + core::mem::size_of::<HelloFixed>();
/// Length of one entry of the hello's MAC list.
pub const MAC_ENTRY_LEN: usize = 6;
/// Length of one entry of the hello's interface-report list.
pub const REPORT_ENTRY_LEN: usize = core::mem::size_of::<ReportEntry>();
/// Length of a LANTEST message.
pub const LANTEST_LEN: usize = HEADER_LEN + core::mem::size_of::<LanTestBody>();
/// Length of an interface hello.
pub const INTERFACE_HELLO_LEN: usize = HEADER_LEN + core::mem::size_of::<InterfaceHelloBody>();
/// Length of a control message.
pub const CONTROL_LEN: usize = HEADER_LEN + core::mem::size_of::<ControlBody>();
/// Length of an exec request without its command bytes.
pub const EXEC_REQUEST_FIXED_LEN: usize = HEADER_LEN + core::mem::size_of::<ExecRequestFixed>();
/// Length of an exec reply without its data bytes.
pub const EXEC_REPLY_FIXED_LEN: usize = HEADER_LEN + core::mem::size_of::<ExecReplyFixed>();
/// Exec reply flag: the last chunk ([`ExecReply::last`]).
const EXEC_FLAG_LAST: u8 = 0x01;
/// Longest payload [`encode`] writes: a hello with [`MAX_INTERFACES`] MACs and reports.
pub const MAX_ENCODED_LEN: usize =
    HELLO_FIXED_LEN + MAX_INTERFACES * (MAC_ENTRY_LEN + REPORT_ENTRY_LEN);

/// Hello flag: failover is enabled on the sender ([`Hello::failover_enabled`]).
const HELLO_FLAG_ENABLED: u8 = 0x01;
/// Report flag: the sender counts the interface as failed ([`InterfaceReport::counts_failed`]).
const REPORT_FLAG_COUNTS_FAILED: u8 = 0x01;
/// Report flag: `rx_age_ns` holds a value ([`InterfaceReport::rx_age`] is `Some`).
const REPORT_FLAG_RX_AGE: u8 = 0x02;
const REPORT_FLAGS_KNOWN: u8 = REPORT_FLAG_COUNTS_FAILED | REPORT_FLAG_RX_AGE;

/// The message-type byte: which layout follows the common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// [`Message::Hello`].
    Hello = 1,
    /// [`Message::LanTest`].
    LanTest = 2,
    /// [`Message::InterfaceHello`].
    InterfaceHello = 3,
    /// [`Message::Control`].
    Control = 4,
    /// [`Message::ExecRequest`] (control plane range 16–31).
    ExecRequest = 16,
    /// [`Message::ExecReply`] (control plane range 16–31).
    ExecReply = 17,
    /// [`Message::ConfigChunk`] (control plane range 16–31).
    ConfigChunk = 18,
}

impl MessageType {
    /// Decodes the wire value.
    pub const fn from_u8(v: u8) -> Option<MessageType> {
        match v {
            1 => Some(MessageType::Hello),
            2 => Some(MessageType::LanTest),
            3 => Some(MessageType::InterfaceHello),
            4 => Some(MessageType::Control),
            16 => Some(MessageType::ExecRequest),
            17 => Some(MessageType::ExecReply),
            18 => Some(MessageType::ConfigChunk),
            _ => None,
        }
    }

    /// The type of `msg`.
    pub const fn of(msg: &Message) -> MessageType {
        match msg {
            Message::Hello(_) => MessageType::Hello,
            Message::LanTest(_) => MessageType::LanTest,
            Message::InterfaceHello(_) => MessageType::InterfaceHello,
            Message::Control(_) => MessageType::Control,
            Message::ExecRequest(_) => MessageType::ExecRequest,
            Message::ExecReply(_) => MessageType::ExecReply,
            Message::ConfigChunk(_) => MessageType::ConfigChunk,
        }
    }

    /// The operator's name of the message, for errors and logs.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Hello => "hello",
            MessageType::LanTest => "LANTEST",
            MessageType::InterfaceHello => "interface hello",
            MessageType::Control => "control message",
            MessageType::ExecRequest => "exec request",
            MessageType::ExecReply => "exec reply",
            MessageType::ConfigChunk => "configuration chunk",
        }
    }
}

/// Why bytes are not a failover message. Small and `Copy`: produced per received frame and
/// usually counted, logged at most once per report interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fields say (the common header, a fixed part, or the lists the counts
    /// announce).
    #[error("failover {what} truncated: needs {need} bytes, got {have}")]
    Truncated {
        /// What was being read ("message", "hello", …).
        what: &'static str,
        /// Bytes the fields require.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The version byte is not [`VERSION`].
    #[error(
        "failover message version {0} is not supported (this unit speaks version {VERSION}); \
         is the mate running another tandem release?"
    )]
    UnsupportedVersion(u8),
    /// The message-type byte is not a [`MessageType`].
    #[error("unknown failover message type {0}")]
    UnknownType(u8),
    /// Bytes left over after a complete message.
    #[error("failover {what} has {extra} trailing bytes after its {len}-byte encoding")]
    TrailingBytes {
        /// The message type's name.
        what: &'static str,
        /// The length its fields define.
        len: usize,
        /// Bytes beyond it.
        extra: usize,
    },
    /// A list count above [`MAX_INTERFACES`].
    #[error("failover hello lists {count} {field}, more than the {max} a unit can have")]
    TooManyInterfaces {
        /// Which list ("interface MACs", "interface reports").
        field: &'static str,
        /// The count on the wire.
        count: usize,
        /// [`MAX_INTERFACES`].
        max: usize,
    },
    /// A fixed field holds a value the format forbids (unknown enumeration value, reserved bits).
    #[error("failover {what}: field {field} holds invalid value {value:#04x}")]
    InvalidField {
        /// The message type's name.
        what: &'static str,
        /// The field's name in `ctrl/ha/docs/failover-protocol.md`.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A variable-length field longer than the format allows.
    #[error("failover {what}: field {field} is {len} bytes long, more than {max}")]
    TooLong {
        /// The message type's name.
        what: &'static str,
        /// The field's name in `ctrl/ha/docs/failover-protocol.md`.
        field: &'static str,
        /// The length on the wire.
        len: usize,
        /// The format's limit.
        max: usize,
    },
    /// An interface report holds a value the format forbids.
    #[error(
        "failover hello: interface report {iface}, field {field} holds invalid value {value:#x}"
    )]
    InvalidReport {
        /// Index of the report (the data interface's position in the sender's configuration).
        iface: u16,
        /// The field's name in `ctrl/ha/docs/failover-protocol.md`.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The caller's buffer is shorter than [`encoded_len`].
    #[error("failover {what} needs {need} bytes, the buffer has {have}")]
    BufferTooSmall {
        /// The message type's name.
        what: &'static str,
        /// [`encoded_len`] of the message.
        need: usize,
        /// The buffer's length.
        have: usize,
    },
    /// An exec command or reply chunk longer than the format carries.
    #[error("failover {what}: {field} is {len} bytes long; the protocol carries at most {max}")]
    TooLong {
        /// The message type's name.
        what: &'static str,
        /// The field's name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A hello list longer than [`MAX_INTERFACES`] (a configuration with more data interfaces
    /// than the protocol carries).
    #[error("failover hello lists {count} {field}; the failover protocol carries at most {max}")]
    TooManyInterfaces {
        /// Which list ("interface MACs", "interface reports").
        field: &'static str,
        /// The list's length.
        count: usize,
        /// [`MAX_INTERFACES`].
        max: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// Fixed layouts (network byte order, no padding: every field is a byte array)
// ---------------------------------------------------------------------------------------------

/// Bytes 0–1 of every payload.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    version: u8,
    msg_type: u8,
}

/// The hello after the common header (bytes 2–23).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HelloFixed {
    role: u8,
    state: u8,
    flags: u8,
    reserved: u8,
    term: U64,
    failover_mac: [u8; 6],
    mac_count: U16,
    report_count: U16,
}

/// One interface report of a hello.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ReportEntry {
    status: u8,
    flags: u8,
    rx_age_ns: U64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct LanTestBody {
    kind: u8,
    nonce: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct InterfaceHelloBody {
    iface: U16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ControlBody {
    command: u8,
}

/// The exec request after the common header (bytes 2–7), followed by the command bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ExecRequestFixed {
    id: U32,
    len: U16,
}

/// The exec reply after the common header (bytes 2–11), followed by the data bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ExecReplyFixed {
    id: U32,
    seq: U16,
    flags: u8,
    reserved: u8,
    len: U16,
}

// ---------------------------------------------------------------------------------------------
// Enumeration values (documented in ctrl/ha/docs/failover-protocol.md, "Field values")
// ---------------------------------------------------------------------------------------------

const fn role_to_u8(r: Role) -> u8 {
    match r {
        Role::Primary => 1,
        Role::Secondary => 2,
    }
}

const fn role_from_u8(v: u8) -> Option<Role> {
    match v {
        1 => Some(Role::Primary),
        2 => Some(Role::Secondary),
        _ => None,
    }
}

const fn state_to_u8(s: State) -> u8 {
    match s {
        State::Disabled => 1,
        State::Negotiation => 2,
        State::Active => 3,
        State::StandbyReady => 4,
        State::Failed => 5,
        State::PseudoStandby => 6,
    }
}

const fn state_from_u8(v: u8) -> Option<State> {
    match v {
        1 => Some(State::Disabled),
        2 => Some(State::Negotiation),
        3 => Some(State::Active),
        4 => Some(State::StandbyReady),
        5 => Some(State::Failed),
        6 => Some(State::PseudoStandby),
        _ => None,
    }
}

const fn status_to_u8(s: InterfaceStatus) -> u8 {
    match s {
        InterfaceStatus::Unknown => 1,
        InterfaceStatus::Normal => 2,
        InterfaceStatus::Testing => 3,
        InterfaceStatus::LinkDown => 4,
        InterfaceStatus::NoLink => 5,
        InterfaceStatus::Failed => 6,
    }
}

const fn status_from_u8(v: u8) -> Option<InterfaceStatus> {
    match v {
        1 => Some(InterfaceStatus::Unknown),
        2 => Some(InterfaceStatus::Normal),
        3 => Some(InterfaceStatus::Testing),
        4 => Some(InterfaceStatus::LinkDown),
        5 => Some(InterfaceStatus::NoLink),
        6 => Some(InterfaceStatus::Failed),
        _ => None,
    }
}

const fn lantest_kind_to_u8(k: LanTestKind) -> u8 {
    match k {
        LanTestKind::Request => 1,
        LanTestKind::Reply => 2,
    }
}

const fn lantest_kind_from_u8(v: u8) -> Option<LanTestKind> {
    match v {
        1 => Some(LanTestKind::Request),
        2 => Some(LanTestKind::Reply),
        _ => None,
    }
}

const fn control_to_u8(c: Control) -> u8 {
    match c {
        Control::TakeOver => 1,
        Control::Reset => 2,
    }
}

const fn control_from_u8(v: u8) -> Option<Control> {
    match v {
        1 => Some(Control::TakeOver),
        2 => Some(Control::Reset),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

const MACS: &str = "interface MACs";
const REPORTS: &str = "interface reports";

fn check_count(field: &'static str, count: usize) -> Result<(), EncodeError> {
    if count > MAX_INTERFACES {
        return Err(EncodeError::TooManyInterfaces {
            field,
            count,
            max: MAX_INTERFACES,
        });
    }
    Ok(())
}

/// The number of bytes [`encode`] writes for `msg`; errors only for a hello whose lists are
/// longer than [`MAX_INTERFACES`].
pub fn encoded_len(msg: &Message) -> Result<usize, EncodeError> {
    Ok(match msg {
        Message::Hello(h) => {
            check_count(MACS, h.macs.len())?;
            check_count(REPORTS, h.interfaces.len())?;
            HELLO_FIXED_LEN + h.macs.len() * MAC_ENTRY_LEN + h.interfaces.len() * REPORT_ENTRY_LEN
        }
        Message::LanTest(_) => LANTEST_LEN,
        Message::InterfaceHello(_) => INTERFACE_HELLO_LEN,
        Message::Control(_) => CONTROL_LEN,
        Message::ExecRequest(r) => {
            check_len(
                MessageType::ExecRequest,
                "command",
                r.command.len(),
                MAX_EXEC_COMMAND,
            )?;
            EXEC_REQUEST_FIXED_LEN + r.command.len()
        }
        Message::ExecReply(r) => {
            check_len(MessageType::ExecReply, "data", r.data.len(), MAX_EXEC_CHUNK)?;
            EXEC_REPLY_FIXED_LEN + r.data.len()
        }
        Message::ConfigChunk(c) => {
            check_len(
                MessageType::ConfigChunk,
                "data",
                c.data.len(),
                MAX_EXEC_CHUNK,
            )?;
            EXEC_REPLY_FIXED_LEN + c.data.len()
        }
    })
}

fn check_len(
    ty: MessageType,
    field: &'static str,
    len: usize,
    max: usize,
) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::TooLong {
            what: ty.name(),
            field,
            len,
            max,
        });
    }
    Ok(())
}

/// A length already checked against a limit below 2^16.
fn len16(n: usize) -> U16 {
    U16::new(u16::try_from(n).unwrap_or(u16::MAX))
}

/// Writes fields front to back into a buffer whose length was checked up front; a write past the
/// end (impossible after that check) is an error, never a panic.
struct Writer<'a> {
    rest: &'a mut [u8],
    what: &'static str,
    need: usize,
    have: usize,
}

impl<'a> Writer<'a> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let rest = core::mem::take(&mut self.rest);
        let Some((head, tail)) = rest.split_at_mut_checked(bytes.len()) else {
            return Err(EncodeError::BufferTooSmall {
                what: self.what,
                need: self.need,
                have: self.have,
            });
        };
        head.copy_from_slice(bytes);
        self.rest = tail;
        Ok(())
    }

    fn put_struct<T: IntoBytes + Immutable>(&mut self, v: &T) -> Result<(), EncodeError> {
        self.put(v.as_bytes())
    }
}

/// Encodes `msg` into the front of `buf` and returns the number of bytes written
/// ([`encoded_len`]). Allocates nothing; a buffer that is too small is an error, never a panic.
///
/// The caller puts the payload where the secure link seals it (`tandem_link::SecureLink::seal`:
/// after the data-frame header), so it is written once and encrypted in place.
pub fn encode(msg: &Message, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let ty = MessageType::of(msg);
    let need = encoded_len(msg)?;
    let have = buf.len();
    if have < need {
        return Err(EncodeError::BufferTooSmall {
            what: ty.name(),
            need,
            have,
        });
    }
    let mut w = Writer {
        rest: buf,
        what: ty.name(),
        need,
        have,
    };
    w.put_struct(&Header {
        version: VERSION,
        msg_type: ty as u8,
    })?;
    match msg {
        Message::Hello(h) => encode_hello(h, &mut w)?,
        Message::LanTest(t) => w.put_struct(&LanTestBody {
            kind: lantest_kind_to_u8(t.kind),
            nonce: U32::new(t.nonce),
        })?,
        Message::InterfaceHello(h) => w.put_struct(&InterfaceHelloBody {
            iface: U16::new(h.iface.0),
        })?,
        Message::Control(c) => w.put_struct(&ControlBody {
            command: control_to_u8(*c),
        })?,
        Message::ExecRequest(r) => {
            w.put_struct(&ExecRequestFixed {
                id: U32::new(r.id),
                len: len16(r.command.len()),
            })?;
            w.put(r.command.as_bytes())?;
        }
        Message::ExecReply(r) => {
            w.put_struct(&ExecReplyFixed {
                id: U32::new(r.id),
                seq: U16::new(r.seq),
                flags: if r.last { EXEC_FLAG_LAST } else { 0 },
                reserved: 0,
                len: len16(r.data.len()),
            })?;
            w.put(&r.data)?;
        }
        Message::ConfigChunk(c) => {
            // Same layout as the exec reply, the id field holding the generation.
            w.put_struct(&ExecReplyFixed {
                id: U32::new(c.generation),
                seq: U16::new(c.seq),
                flags: if c.last { EXEC_FLAG_LAST } else { 0 },
                reserved: 0,
                len: len16(c.data.len()),
            })?;
            w.put(&c.data)?;
        }
    }
    Ok(need)
}

fn encode_hello(h: &Hello, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    // Counts fit in 16 bits: `encoded_len` checked them against MAX_INTERFACES (< 2^16).
    let count = |n: usize| U16::new(u16::try_from(n).unwrap_or(u16::MAX));
    w.put_struct(&HelloFixed {
        role: role_to_u8(h.role),
        state: state_to_u8(h.state),
        flags: if h.failover_enabled {
            HELLO_FLAG_ENABLED
        } else {
            0
        },
        reserved: 0,
        term: U64::new(h.term),
        failover_mac: h.failover_mac.0,
        mac_count: count(h.macs.len()),
        report_count: count(h.interfaces.len()),
    })?;
    for m in &h.macs {
        w.put(&m.0)?;
    }
    for r in &h.interfaces {
        let mut flags = 0;
        if r.counts_failed {
            flags |= REPORT_FLAG_COUNTS_FAILED;
        }
        if r.rx_age.is_some() {
            flags |= REPORT_FLAG_RX_AGE;
        }
        w.put_struct(&ReportEntry {
            status: status_to_u8(r.status),
            flags,
            // Nanoseconds, saturating at 584 years: exact for every difference of two
            // `Timestamp`s, which is all a unit ever reports.
            rx_age_ns: U64::new(r.rx_age.map_or(0, nanos)),
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Reads fixed-layout fields front to back.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<T: FromBytes + KnownLayout + Immutable + Unaligned>(&mut self) -> Option<&'a T> {
        let (v, rest) = T::ref_from_prefix(self.rest).ok()?;
        self.rest = rest;
        Some(v)
    }

    fn take_bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }
}

/// Reads the common header: the message type, after checking the version. For counting or
/// demultiplexing before a full [`decode`].
pub fn peek(bytes: &[u8]) -> Result<MessageType, DecodeError> {
    let Ok((h, _)) = Header::ref_from_prefix(bytes) else {
        return Err(DecodeError::Truncated {
            what: "message",
            need: HEADER_LEN,
            have: bytes.len(),
        });
    };
    if h.version != VERSION {
        return Err(DecodeError::UnsupportedVersion(h.version));
    }
    MessageType::from_u8(h.msg_type).ok_or(DecodeError::UnknownType(h.msg_type))
}

/// Decodes one payload (exactly the bytes the secure link opened: no padding, nothing after).
/// Never panics; see the module's contract for what it checks.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let ty = peek(bytes)?;
    let what = ty.name();
    let have = bytes.len();
    let exact = |len: usize| -> Result<(), DecodeError> {
        if have < len {
            Err(DecodeError::Truncated {
                what,
                need: len,
                have,
            })
        } else if have > len {
            Err(DecodeError::TrailingBytes {
                what,
                len,
                extra: have - len,
            })
        } else {
            Ok(())
        }
    };
    let invalid = |field: &'static str, value: u8| DecodeError::InvalidField { what, field, value };
    let mut r = Reader {
        rest: bytes.get(HEADER_LEN..).unwrap_or(&[]),
    };
    match ty {
        MessageType::Hello => decode_hello(bytes, r),
        MessageType::LanTest => {
            exact(LANTEST_LEN)?;
            let b = r.take::<LanTestBody>().ok_or(DecodeError::Truncated {
                what,
                need: LANTEST_LEN,
                have,
            })?;
            let kind = lantest_kind_from_u8(b.kind).ok_or(invalid("kind", b.kind))?;
            Ok(Message::LanTest(LanTest {
                kind,
                nonce: b.nonce.get(),
            }))
        }
        MessageType::InterfaceHello => {
            exact(INTERFACE_HELLO_LEN)?;
            let b = r
                .take::<InterfaceHelloBody>()
                .ok_or(DecodeError::Truncated {
                    what,
                    need: INTERFACE_HELLO_LEN,
                    have,
                })?;
            Ok(Message::InterfaceHello(InterfaceHello {
                iface: IfIndex(b.iface.get()),
            }))
        }
        MessageType::Control => {
            exact(CONTROL_LEN)?;
            let b = r.take::<ControlBody>().ok_or(DecodeError::Truncated {
                what,
                need: CONTROL_LEN,
                have,
            })?;
            let c = control_from_u8(b.command).ok_or(invalid("command", b.command))?;
            Ok(Message::Control(c))
        }
        MessageType::ExecRequest => {
            let f = r.take::<ExecRequestFixed>().ok_or(DecodeError::Truncated {
                what,
                need: EXEC_REQUEST_FIXED_LEN,
                have,
            })?;
            let len = usize::from(f.len.get());
            if len > MAX_EXEC_COMMAND {
                return Err(DecodeError::TooLong {
                    what,
                    field: "command",
                    len,
                    max: MAX_EXEC_COMMAND,
                });
            }
            exact(EXEC_REQUEST_FIXED_LEN + len)?;
            let bytes = r.take_bytes(len).ok_or(DecodeError::Truncated {
                what,
                need: EXEC_REQUEST_FIXED_LEN + len,
                have,
            })?;
            let command = core::str::from_utf8(bytes).map_err(|e| {
                let bad = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
                invalid("command", bad)
            })?;
            Ok(Message::ExecRequest(ExecRequest {
                id: f.id.get(),
                command: command.into(),
            }))
        }
        MessageType::ExecReply | MessageType::ConfigChunk => {
            let f = r.take::<ExecReplyFixed>().ok_or(DecodeError::Truncated {
                what,
                need: EXEC_REPLY_FIXED_LEN,
                have,
            })?;
            let len = usize::from(f.len.get());
            if len > MAX_EXEC_CHUNK {
                return Err(DecodeError::TooLong {
                    what,
                    field: "data",
                    len,
                    max: MAX_EXEC_CHUNK,
                });
            }
            exact(EXEC_REPLY_FIXED_LEN + len)?;
            if f.flags & !EXEC_FLAG_LAST != 0 {
                return Err(invalid("flags", f.flags));
            }
            if f.reserved != 0 {
                return Err(invalid("reserved", f.reserved));
            }
            let data = r.take_bytes(len).ok_or(DecodeError::Truncated {
                what,
                need: EXEC_REPLY_FIXED_LEN + len,
                have,
            })?;
            let (seq, last, data) = (f.seq.get(), f.flags & EXEC_FLAG_LAST != 0, data.to_vec());
            Ok(if ty == MessageType::ConfigChunk {
                Message::ConfigChunk(ConfigChunk {
                    generation: f.id.get(),
                    seq,
                    last,
                    data,
                })
            } else {
                Message::ExecReply(ExecReply {
                    id: f.id.get(),
                    seq,
                    last,
                    data,
                })
            })
        }
    }
}

fn decode_hello(bytes: &[u8], mut r: Reader<'_>) -> Result<Message, DecodeError> {
    let what = MessageType::Hello.name();
    let have = bytes.len();
    let truncated = |need: usize| DecodeError::Truncated { what, need, have };
    let f = r.take::<HelloFixed>().ok_or(truncated(HELLO_FIXED_LEN))?;
    let invalid = |field: &'static str, value: u8| DecodeError::InvalidField { what, field, value };

    // Counts before lengths: a bogus count is named as such, and nothing is allocated for it.
    let macs = usize::from(f.mac_count.get());
    let reports = usize::from(f.report_count.get());
    for (field, count) in [(MACS, macs), (REPORTS, reports)] {
        if count > MAX_INTERFACES {
            return Err(DecodeError::TooManyInterfaces {
                field,
                count,
                max: MAX_INTERFACES,
            });
        }
    }
    let len = HELLO_FIXED_LEN + macs * MAC_ENTRY_LEN + reports * REPORT_ENTRY_LEN;
    if have < len {
        return Err(truncated(len));
    }
    if have > len {
        return Err(DecodeError::TrailingBytes {
            what,
            len,
            extra: have - len,
        });
    }

    let role = role_from_u8(f.role).ok_or(invalid("role", f.role))?;
    let state = state_from_u8(f.state).ok_or(invalid("state", f.state))?;
    if f.flags & !HELLO_FLAG_ENABLED != 0 {
        return Err(invalid("flags", f.flags));
    }
    if f.reserved != 0 {
        return Err(invalid("reserved", f.reserved));
    }

    let mac_bytes = r.take_bytes(macs * MAC_ENTRY_LEN).ok_or(truncated(len))?;
    let mut mac_list = Vec::with_capacity(macs);
    for chunk in mac_bytes.chunks_exact(MAC_ENTRY_LEN) {
        let mut m = [0u8; MAC_ENTRY_LEN];
        m.copy_from_slice(chunk);
        mac_list.push(Mac(m));
    }

    let mut report_list = Vec::with_capacity(reports);
    for index in 0..reports {
        let e = r.take::<ReportEntry>().ok_or(truncated(len))?;
        // `index < reports ≤ MAX_INTERFACES < 2^16`.
        let iface = u16::try_from(index).unwrap_or(u16::MAX);
        let bad = |field: &'static str, value: u64| DecodeError::InvalidReport {
            iface,
            field,
            value,
        };
        let status = status_from_u8(e.status).ok_or(bad("status", u64::from(e.status)))?;
        if e.flags & !REPORT_FLAGS_KNOWN != 0 {
            return Err(bad("flags", u64::from(e.flags)));
        }
        let age = e.rx_age_ns.get();
        let rx_age = if e.flags & REPORT_FLAG_RX_AGE != 0 {
            Some(Duration::from_nanos(age))
        } else if age != 0 {
            // Canonical form: an absent age is all zeros.
            return Err(bad("rx_age_ns", age));
        } else {
            None
        };
        report_list.push(InterfaceReport {
            status,
            counts_failed: e.flags & REPORT_FLAG_COUNTS_FAILED != 0,
            rx_age,
        });
    }

    Ok(Message::Hello(Hello {
        role,
        state,
        failover_enabled: f.flags & HELLO_FLAG_ENABLED != 0,
        term: f.term.get(),
        failover_mac: Mac(f.failover_mac),
        macs: mac_list,
        interfaces: report_list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_documented_lengths() {
        assert_eq!(HEADER_LEN, core::mem::size_of::<Header>());
        assert_eq!(HELLO_FIXED_LEN, 24);
        assert_eq!(REPORT_ENTRY_LEN, 10);
        assert_eq!(LANTEST_LEN, 7);
        assert_eq!(INTERFACE_HELLO_LEN, 4);
        assert_eq!(CONTROL_LEN, 3);
        assert_eq!(EXEC_REQUEST_FIXED_LEN, 8);
        assert_eq!(EXEC_REPLY_FIXED_LEN, 12);
        const { assert!(EXEC_REQUEST_FIXED_LEN + MAX_EXEC_COMMAND <= MAX_ENCODED_LEN) };
        // A reply chunk with the secure link's 36 bytes fits a 1500-byte MTU.
        const { assert!(EXEC_REPLY_FIXED_LEN + MAX_EXEC_CHUNK + 36 <= 1500) };
        assert_eq!(MAX_ENCODED_LEN, 24 + 1025 * 16);
        assert!(MAX_ENCODED_LEN <= usize::from(u16::MAX));
    }

    #[test]
    fn enumerations_round_trip_and_zero_is_never_valid() {
        for v in 0..=u8::MAX {
            if let Some(x) = role_from_u8(v) {
                assert_eq!(role_to_u8(x), v);
            }
            if let Some(x) = state_from_u8(v) {
                assert_eq!(state_to_u8(x), v);
            }
            if let Some(x) = status_from_u8(v) {
                assert_eq!(status_to_u8(x), v);
            }
            if let Some(x) = lantest_kind_from_u8(v) {
                assert_eq!(lantest_kind_to_u8(x), v);
            }
            if let Some(x) = control_from_u8(v) {
                assert_eq!(control_to_u8(x), v);
            }
            if let Some(x) = MessageType::from_u8(v) {
                assert_eq!(x as u8, v);
            }
        }
        assert!(role_from_u8(0).is_none() && state_from_u8(0).is_none());
        assert!(status_from_u8(0).is_none() && lantest_kind_from_u8(0).is_none());
        assert!(control_from_u8(0).is_none() && MessageType::from_u8(0).is_none());
    }
}
