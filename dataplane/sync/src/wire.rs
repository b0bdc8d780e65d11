//! The state-link frame format: the 24-byte header, the 8-byte record header, the control
//! frames, a checked parser for untrusted bytes and the emitters. Byte tables in
//! `dataplane/sync/docs/state-link-protocol.md`; this file is their executable form.
//!
//! # Contract
//!
//! * [`Frame::parse`] never panics, whatever the bytes. It checks magic, version, type, flags,
//!   every reserved byte, that the frame is exactly as long as its header says, and for a data
//!   frame walks every record header (length inside the body, padding zero, count exact) before
//!   returning, so the [`Records`] iterator it hands out needs no further checks.
//! * The encoding is canonical: a frame `parse` accepts is byte for byte what the emitters
//!   ([`emit_control`], [`emit_sequenced`], [`crate::FrameEncoder`]) write for it.
//! * Emitters never panic and never allocate: a short buffer is an error found before the first
//!   byte is written.

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First two bytes of every frame: "TS" (tandem state). Catches a frame of another protocol
/// (or a failover-link payload handed to the wrong decoder) before anything else is read.
pub const MAGIC: u16 = 0x5453;
/// The only format version this code speaks.
pub const VERSION: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Length of a record header; records start at 8-byte offsets (see [`RecordHeader`]).
pub const RECORD_HEADER_LEN: usize = 8;
/// Record payloads are padded to a multiple of this, so every record header and payload starts
/// at an 8-byte offset from the start of the frame.
pub const RECORD_ALIGN: usize = 8;
/// Largest record payload a record header can describe.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// Largest frame: the secure link limits a payload to 65 535 bytes (`tandem_link::wire::MAX_PAYLOAD`).
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// Smallest frame size a [`crate::FrameEncoder`] accepts: header plus one 56-byte record.
pub const MIN_FRAME_LEN: usize = 88;
/// The `stream` value of a BULK_REQUEST that asks for every stream.
pub const ALL_STREAMS: u16 = u16::MAX;

/// Data-frame flag: the records belong to a bulk sync (counted towards its progress).
pub const FLAG_BULK: u8 = 0x01;
const FLAGS_KNOWN: u8 = FLAG_BULK;

/// The frame-type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Sequenced, sender → receiver: records.
    Data = 1,
    /// Sequenced, sender → receiver: a bulk sync of the stream starts here; `arg` = entries.
    BulkBegin = 2,
    /// Sequenced, sender → receiver: the bulk sync of the stream is complete; `arg` = records.
    BulkEnd = 3,
    /// Control, receiver → sender: every frame before `seq` was delivered (cumulative).
    Ack = 8,
    /// Control, receiver → sender: `seq` is missing (and `arg` frames from it were not delivered).
    Nak = 9,
    /// Control, receiver → sender: please bulk-sync `stream` (or [`ALL_STREAMS`]).
    BulkRequest = 10,
}

impl FrameType {
    /// Decodes the wire value.
    pub const fn from_u8(v: u8) -> Option<FrameType> {
        match v {
            1 => Some(FrameType::Data),
            2 => Some(FrameType::BulkBegin),
            3 => Some(FrameType::BulkEnd),
            8 => Some(FrameType::Ack),
            9 => Some(FrameType::Nak),
            10 => Some(FrameType::BulkRequest),
            _ => None,
        }
    }

    /// Sequenced frames travel sender → receiver, occupy a sequence number and are retransmitted.
    pub const fn is_sequenced(self) -> bool {
        matches!(
            self,
            FrameType::Data | FrameType::BulkBegin | FrameType::BulkEnd
        )
    }

    /// The name used in errors and logs.
    pub const fn name(self) -> &'static str {
        match self {
            FrameType::Data => "data",
            FrameType::BulkBegin => "BULK_BEGIN",
            FrameType::BulkEnd => "BULK_END",
            FrameType::Ack => "ACK",
            FrameType::Nak => "NAK",
            FrameType::BulkRequest => "BULK_REQUEST",
        }
    }
}

/// Why a receiver asks for a bulk sync (the `arg` of a BULK_REQUEST), for the sender's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u8)]
pub enum BulkReason {
    /// The receiver started (or was reset) and holds nothing it can trust.
    Join = 1,
    /// The sender's epoch changed: it restarted and its sequence numbers started over.
    NewEpoch = 2,
    /// A gap was NAKed the configured number of times without being filled.
    GapNotFilled = 3,
    /// The sender no longer holds a frame the receiver needs (sender side only, never on the wire).
    Evicted = 4,
}

impl BulkReason {
    /// Decodes the wire value (1–3; [`BulkReason::Evicted`] is never sent).
    pub const fn from_u32(v: u32) -> Option<BulkReason> {
        match v {
            1 => Some(BulkReason::Join),
            2 => Some(BulkReason::NewEpoch),
            3 => Some(BulkReason::GapNotFilled),
            _ => None,
        }
    }
}

/// The fixed header, network byte order. Every frame starts with it.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: U16,
    /// [`VERSION`].
    pub version: u8,
    /// [`FrameType`].
    pub frame_type: u8,
    /// The data sender's epoch (control frames: the epoch the receiver is tracking, 0 = none).
    pub epoch: U32,
    /// Stream (= worker index).
    pub stream: U16,
    /// [`FLAG_BULK`] on data frames; 0 otherwise.
    pub flags: u8,
    /// 0.
    pub reserved: u8,
    /// Sequence number (data/bulk frames), next expected (ACK), first missing (NAK), 0 otherwise.
    pub seq: U32,
    /// Records in the body (data frames), 0 otherwise.
    pub count: U16,
    /// Bytes after the header.
    pub body_len: U16,
    /// Per type: entries (BULK_BEGIN), records (BULK_END), frames (NAK), reason (BULK_REQUEST).
    pub arg: U32,
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_LEN);

/// The record header, network byte order; its payload follows, padded with zeros to 8 bytes.
/// Eight bytes long, so with a 24-byte frame header every payload starts at an 8-byte offset:
/// a frame received into an 8-aligned buffer has 8-aligned payloads.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHeader {
    /// Record kind (defined by `tandem-state`).
    pub kind: u8,
    /// Operation (defined by `tandem-state`: upsert, delete).
    pub op: u8,
    /// Payload length in bytes, before padding.
    pub len: U16,
    /// 0.
    pub reserved: U32,
}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == RECORD_HEADER_LEN);

/// Bytes a record with a `payload_len`-byte payload occupies in a frame (header + padded payload).
pub const fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Why bytes are not a state-link frame. Small and `Copy`: produced per received frame and
/// counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header, or than the header says.
    #[error("state-link frame truncated: needs {need} bytes, got {have}")]
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Longer than the header says.
    #[error("state-link frame has {extra} trailing bytes after its {len}-byte encoding")]
    TrailingBytes {
        /// Length the header defines.
        len: usize,
        /// Bytes beyond it.
        extra: usize,
    },
    /// Not a state-link frame.
    #[error(
        "state-link frame magic {0:#06x} is wrong (expected 0x5453): not a tandem state frame"
    )]
    BadMagic(u16),
    /// Another format version.
    #[error("state-link frame version {0} is not supported (this unit speaks version {VERSION}); is the mate running another tandem release?")]
    UnsupportedVersion(u8),
    /// Unknown frame type.
    #[error("unknown state-link frame type {0}")]
    UnknownType(u8),
    /// A field holds a value the format forbids.
    #[error("state-link {what} frame: field {field} holds invalid value {value:#x}")]
    InvalidField {
        /// Frame type name.
        what: &'static str,
        /// Field name.
        field: &'static str,
        /// The value on the wire.
        value: u32,
    },
    /// A record runs past the end of the body, or the body holds more or fewer records than
    /// `count` says.
    #[error("state-link data frame: record {index} is malformed ({why})")]
    BadRecord {
        /// Index of the record in the frame.
        index: usize,
        /// What is wrong.
        why: &'static str,
    },
}

/// Why a frame could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is too short.
    #[error("state-link {what} frame needs {need} bytes, buffer has {have}")]
    BufferTooSmall {
        /// Frame type name.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// One record of a received frame, borrowed from it (no copy). `payload` starts at an 8-byte
/// offset of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Record kind.
    pub kind: u8,
    /// Operation.
    pub op: u8,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

/// Iterator over the records of a validated data frame's body.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    body: &'a [u8],
    left: u16,
}

impl<'a> Records<'a> {
    /// An iterator yielding nothing.
    pub const fn empty() -> Records<'a> {
        Records { body: &[], left: 0 }
    }

    /// Records not yet yielded.
    pub fn remaining(&self) -> usize {
        usize::from(self.left)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.left == 0 {
            return None;
        }
        // `Frame::parse` walked these headers already; the checked reads below only keep the
        // iterator panic-free should it ever be built over unvalidated bytes.
        let (hdr, rest) = RecordHeader::ref_from_prefix(self.body).ok()?;
        let len = usize::from(hdr.len.get());
        let payload = rest.get(..len)?;
        let padded = record_len(len) - RECORD_HEADER_LEN;
        self.body = rest.get(padded..).unwrap_or(&[]);
        self.left -= 1;
        Some(RecordRef {
            kind: hdr.kind,
            op: hdr.op,
            payload,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl ExactSizeIterator for Records<'_> {}

/// A control frame (receiver → sender), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Every frame of `stream` before `next` was delivered.
    Ack {
        /// Stream.
        stream: u16,
        /// Next expected sequence number.
        next: u32,
    },
    /// Frame `first` of `stream` is missing; `count` frames from it were not delivered.
    Nak {
        /// Stream.
        stream: u16,
        /// First missing sequence number.
        first: u32,
        /// Frames from `first` the receiver knows it lacks (at least 1).
        count: u32,
    },
    /// Bulk-sync `stream` ([`ALL_STREAMS`] = every stream).
    BulkRequest {
        /// Stream or [`ALL_STREAMS`].
        stream: u16,
        /// Why.
        reason: BulkReason,
    },
}

/// A parsed frame.
#[derive(Clone, Debug)]
pub enum Frame<'a> {
    /// A data frame.
    Data {
        /// Sender epoch.
        epoch: u32,
        /// Stream.
        stream: u16,
        /// Sequence number.
        seq: u32,
        /// [`FLAG_BULK`] was set.
        bulk: bool,
        /// The records, in order.
        records: Records<'a>,
    },
    /// BULK_BEGIN.
    BulkBegin {
        /// Sender epoch.
        epoch: u32,
        /// Stream.
        stream: u16,
        /// Sequence number.
        seq: u32,
        /// Entries the bulk will carry (as counted when it started).
        total: u32,
    },
    /// BULK_END.
    BulkEnd {
        /// Sender epoch.
        epoch: u32,
        /// Stream.
        stream: u16,
        /// Sequence number.
        seq: u32,
        /// Records the bulk carried.
        sent: u32,
    },
    /// A control frame.
    Control {
        /// The epoch of the data sender the receiver tracks (0 = none yet).
        epoch: u32,
        /// The message.
        control: Control,
    },
}

fn invalid(what: FrameType, field: &'static str, value: u32) -> DecodeError {
    DecodeError::InvalidField {
        what: what.name(),
        field,
        value,
    }
}

impl<'a> Frame<'a> {
    /// Parses and validates one frame (the whole opened secure-link payload). Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        let (hdr, body) = Header::ref_from_prefix(bytes).map_err(|_| DecodeError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        })?;
        if hdr.magic.get() != MAGIC {
            return Err(DecodeError::BadMagic(hdr.magic.get()));
        }
        if hdr.version != VERSION {
            return Err(DecodeError::UnsupportedVersion(hdr.version));
        }
        let ty =
            FrameType::from_u8(hdr.frame_type).ok_or(DecodeError::UnknownType(hdr.frame_type))?;
        let body_len = usize::from(hdr.body_len.get());
        if body.len() < body_len {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN + body_len,
                have: bytes.len(),
            });
        }
        if body.len() > body_len {
            return Err(DecodeError::TrailingBytes {
                len: HEADER_LEN + body_len,
                extra: body.len() - body_len,
            });
        }
        if HEADER_LEN + body_len > MAX_FRAME_LEN {
            // The secure link carries at most 65 535 payload bytes; no sender writes more.
            return Err(invalid(ty, "body_len", body_len as u32));
        }
        if hdr.reserved != 0 {
            return Err(invalid(ty, "reserved", u32::from(hdr.reserved)));
        }
        let flags_allowed = if ty == FrameType::Data {
            FLAGS_KNOWN
        } else {
            0
        };
        if hdr.flags & !flags_allowed != 0 {
            return Err(invalid(ty, "flags", u32::from(hdr.flags)));
        }
        if ty != FrameType::Data {
            if hdr.count.get() != 0 {
                return Err(invalid(ty, "count", u32::from(hdr.count.get())));
            }
            if body_len != 0 {
                return Err(invalid(ty, "body_len", body_len as u32));
            }
        }
        let (epoch, stream, seq, arg) = (
            hdr.epoch.get(),
            hdr.stream.get(),
            hdr.seq.get(),
            hdr.arg.get(),
        );
        if ty.is_sequenced() && epoch == 0 {
            // A sender's epoch is never 0; 0 means "none" in control frames.
            return Err(invalid(ty, "epoch", 0));
        }
        if ty.is_sequenced() && stream == ALL_STREAMS {
            return Err(invalid(ty, "stream", u32::from(stream)));
        }
        Ok(match ty {
            FrameType::Data => {
                if arg != 0 {
                    return Err(invalid(ty, "arg", arg));
                }
                let count = hdr.count.get();
                if count == 0 {
                    // The encoder never finishes an empty frame.
                    return Err(invalid(ty, "count", 0));
                }
                validate_records(body, count)?;
                Frame::Data {
                    epoch,
                    stream,
                    seq,
                    bulk: hdr.flags & FLAG_BULK != 0,
                    records: Records { body, left: count },
                }
            }
            FrameType::BulkBegin => Frame::BulkBegin {
                epoch,
                stream,
                seq,
                total: arg,
            },
            FrameType::BulkEnd => Frame::BulkEnd {
                epoch,
                stream,
                seq,
                sent: arg,
            },
            FrameType::Ack => {
                if arg != 0 {
                    return Err(invalid(ty, "arg", arg));
                }
                if stream == ALL_STREAMS {
                    return Err(invalid(ty, "stream", u32::from(stream)));
                }
                Frame::Control {
                    epoch,
                    control: Control::Ack { stream, next: seq },
                }
            }
            FrameType::Nak => {
                if arg == 0 {
                    return Err(invalid(ty, "arg", arg));
                }
                if stream == ALL_STREAMS {
                    return Err(invalid(ty, "stream", u32::from(stream)));
                }
                Frame::Control {
                    epoch,
                    control: Control::Nak {
                        stream,
                        first: seq,
                        count: arg,
                    },
                }
            }
            FrameType::BulkRequest => {
                if seq != 0 {
                    return Err(invalid(ty, "seq", seq));
                }
                let reason = BulkReason::from_u32(arg).ok_or(invalid(ty, "arg", arg))?;
                Frame::Control {
                    epoch,
                    control: Control::BulkRequest { stream, reason },
                }
            }
        })
    }
}

/// Walks the record headers of a data frame's body: exactly `count` records, each inside the
/// body, zero reserved bytes and padding, nothing after the last.
fn validate_records(body: &[u8], count: u16) -> Result<(), DecodeError> {
    let mut rest = body;
    for index in 0..usize::from(count) {
        let bad = |why| DecodeError::BadRecord { index, why };
        let (hdr, after) =
            RecordHeader::ref_from_prefix(rest).map_err(|_| bad("header runs past the frame"))?;
        if hdr.reserved.get() != 0 {
            return Err(bad("reserved bytes not zero"));
        }
        let len = usize::from(hdr.len.get());
        let padded = record_len(len) - RECORD_HEADER_LEN;
        let Some(payload_and_pad) = after.get(..padded) else {
            return Err(bad("payload runs past the frame"));
        };
        if payload_and_pad[len..].iter().any(|&b| b != 0) {
            return Err(bad("padding not zero"));
        }
        rest = &after[padded..];
    }
    if !rest.is_empty() {
        return Err(DecodeError::BadRecord {
            index: usize::from(count),
            why: "bytes after the last counted record",
        });
    }
    Ok(())
}

/// Writes a control frame (exactly [`HEADER_LEN`] bytes) into `out`. `epoch` is the data
/// sender's epoch the receiver tracks (0 = none yet).
pub fn emit_control(epoch: u32, control: &Control, out: &mut [u8]) -> Result<usize, EncodeError> {
    let (ty, stream, seq, arg) = match *control {
        Control::Ack { stream, next } => (FrameType::Ack, stream, next, 0),
        Control::Nak {
            stream,
            first,
            count,
        } => (FrameType::Nak, stream, first, count),
        Control::BulkRequest { stream, reason } => {
            (FrameType::BulkRequest, stream, 0, reason as u32)
        }
    };
    emit_header(out, ty, epoch, stream, 0, seq, 0, 0, arg)
}

/// Writes a BULK_BEGIN or BULK_END frame (exactly [`HEADER_LEN`] bytes) into `out`.
pub fn emit_sequenced(
    ty: FrameType,
    epoch: u32,
    stream: u16,
    seq: u32,
    arg: u32,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    emit_header(out, ty, epoch, stream, 0, seq, 0, 0, arg)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_header(
    out: &mut [u8],
    ty: FrameType,
    epoch: u32,
    stream: u16,
    flags: u8,
    seq: u32,
    count: u16,
    body_len: u16,
    arg: u32,
) -> Result<usize, EncodeError> {
    let hdr = Header {
        magic: MAGIC.into(),
        version: VERSION,
        frame_type: ty as u8,
        epoch: epoch.into(),
        stream: stream.into(),
        flags,
        reserved: 0,
        seq: seq.into(),
        count: count.into(),
        body_len: body_len.into(),
        arg: arg.into(),
    };
    hdr.write_to_prefix(out)
        .map_err(|_| EncodeError::BufferTooSmall {
            what: ty.name(),
            need: HEADER_LEN,
            have: out.len(),
        })?;
    Ok(HEADER_LEN)
}

/// Reads `(frame type, epoch, stream, seq)` of a frame without validating the body, for the
/// sender's bookkeeping of its own frames. `None` when shorter than a header.
pub(crate) fn peek_header(bytes: &[u8]) -> Option<&Header> {
    Header::ref_from_prefix(bytes).ok().map(|(h, _)| h)
}

/// Writes `epoch` and `seq` into the header of a frame at the start of `bytes` (what
/// [`crate::Sender::send`] does; public for tests and tools that build frames without a sender).
/// Does nothing if `bytes` is shorter than a header.
pub fn stamp(bytes: &mut [u8], epoch: u32, seq: u32) {
    if let Ok((hdr, _)) = Header::mut_from_prefix(bytes) {
        hdr.epoch = epoch.into();
        hdr.seq = seq.into();
    }
}
