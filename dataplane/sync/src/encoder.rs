//! The worker-side frame encoder: writes replication records straight into a caller-owned
//! [`SyncBuf`], coalescing records for the same `(kind, key)` within one frame.
//!
//! Coalescing uses a fixed-size open-addressing index sized at construction for the most records
//! a frame can hold (twice that many slots, so probes stay short); it is reset per frame in O(1)
//! by bumping a generation number. Nothing allocates after [`FrameEncoder::new`].

use crate::buf::SyncBuf;
use crate::wire::{
    emit_header, record_len, FrameType, FLAG_BULK, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD,
    MIN_FRAME_LEN, RECORD_HEADER_LEN,
};

/// What [`FrameEncoder::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Put {
    /// Appended as a new record.
    Written,
    /// A record with the same `(kind, key)` was already in this frame with the same payload
    /// length: its op and payload were overwritten in place (the later record wins).
    Coalesced,
    /// Does not fit in what is left of the frame (or no buffer is attached). Nothing was
    /// written: [`FrameEncoder::finish`] the frame, [`FrameEncoder::begin`] a new buffer, retry.
    Full,
    /// Can never fit a frame of this size (payload longer than the frame allows, or than the
    /// attached buffer holds). Nothing was written; a bug in the caller's sizes, counted.
    Oversize,
}

/// Invalid encoder configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncoderConfigError {
    /// Frame size outside the format's limits.
    #[error("state-link frame size {size} for stream {stream} is outside {MIN_FRAME_LEN}..={MAX_FRAME_LEN} bytes (state device MTU minus the secure link's overhead)")]
    FrameSize {
        /// Stream.
        stream: u16,
        /// Requested size.
        size: usize,
    },
    /// The stream id is reserved.
    #[error("stream id {0} is reserved (it means \"all streams\")")]
    ReservedStream(u16),
}

/// Encoder counters (per worker; serialisable for `show failover --json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EncoderCounters {
    /// Records appended.
    pub records_written: u64,
    /// Records merged into an earlier record of the same frame.
    pub records_coalesced: u64,
    /// Frames finished.
    pub frames: u64,
    /// Records refused as [`Put::Oversize`].
    pub records_oversize: u64,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    gen: u32,
    off: u16,
    kind: u8,
    key: u64,
}

/// Per-frame coalescing index: `(kind, key)` → offset of the record header in the frame.
struct Index {
    slots: Box<[Slot]>,
    mask: usize,
    gen: u32,
}

impl Index {
    fn new(max_records: usize) -> Index {
        let n = (max_records * 2).next_power_of_two().max(16);
        Index {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            mask: n - 1,
            gen: 1,
        }
    }

    fn reset(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            // Once per 4 billion frames: stale slots could carry the new generation, so clear.
            self.slots.fill(Slot::default());
            self.gen = 1;
        }
    }

    fn hash(kind: u8, key: u64) -> usize {
        // Fibonacci hashing; the top bits are the best mixed.
        let h = (key ^ (u64::from(kind) << 56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize
    }

    /// The slot for `(kind, key)`: `Ok(i)` if present, `Err(i)` with a free slot, or
    /// `Err(usize::MAX)` if the probe found neither (cannot happen at half load).
    fn find(&self, kind: u8, key: u64) -> Result<usize, usize> {
        let mut i = Self::hash(kind, key) & self.mask;
        for _ in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.gen != self.gen {
                return Err(i);
            }
            if s.kind == kind && s.key == key {
                return Ok(i);
            }
            i = (i + 1) & self.mask;
        }
        Err(usize::MAX)
    }

    fn set(&mut self, i: usize, kind: u8, key: u64, off: u16) {
        if let Some(s) = self.slots.get_mut(i) {
            *s = Slot {
                gen: self.gen,
                off,
                kind,
                key,
            };
        }
    }
}

/// Writes records for one stream into state-link frames. Owned by one worker.
///
/// Use: [`begin`](Self::begin) with an empty buffer from the pool, [`put`](Self::put) records
/// as the tables change, and [`finish`](Self::finish) when `put` says [`Put::Full`] or when
/// [`opened_at`](Self::opened_at) is older than the flush deadline; hand the finished buffer to
/// the replication thread, which gives it a sequence number ([`crate::Sender::send`]).
pub struct FrameEncoder {
    stream: u16,
    frame_size: usize,
    buf: Option<SyncBuf>,
    limit: usize,
    len: usize,
    count: u16,
    bulk: bool,
    opened_at: Option<u64>,
    index: Index,
    counters: EncoderCounters,
}

impl FrameEncoder {
    /// An encoder for `stream` writing frames of at most `frame_size` bytes (the state device's
    /// MTU minus the secure link's overhead). Allocates its coalescing index; nothing after.
    pub fn new(stream: u16, frame_size: usize) -> Result<FrameEncoder, EncoderConfigError> {
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame_size) {
            return Err(EncoderConfigError::FrameSize {
                stream,
                size: frame_size,
            });
        }
        if stream == crate::wire::ALL_STREAMS {
            return Err(EncoderConfigError::ReservedStream(stream));
        }
        Ok(FrameEncoder {
            stream,
            frame_size,
            buf: None,
            limit: 0,
            len: HEADER_LEN,
            count: 0,
            bulk: false,
            opened_at: None,
            index: Index::new((frame_size - HEADER_LEN) / RECORD_HEADER_LEN),
            counters: EncoderCounters::default(),
        })
    }

    /// The stream this encoder writes.
    pub fn stream(&self) -> u16 {
        self.stream
    }

    /// Frame size limit in bytes.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Attaches an empty buffer for the next frame; `bulk` flags the frame as bulk-sync records.
    /// A buffer already attached (empty, or with records not yet finished) is handed back.
    pub fn begin(&mut self, mut buf: SyncBuf, bulk: bool) -> Option<SyncBuf> {
        buf.clear();
        let old = self.buf.replace(buf);
        self.limit = self
            .buf
            .as_ref()
            .map_or(0, |b| b.capacity().min(self.frame_size));
        self.reset_frame();
        self.bulk = bulk;
        old
    }

    /// Whether a buffer is attached.
    pub fn has_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// Records in the current frame.
    pub fn records(&self) -> usize {
        usize::from(self.count)
    }

    /// When the first record of the current frame was written (`None` while empty): the caller
    /// flushes once `now - opened_at` passes its deadline.
    pub fn opened_at(&self) -> Option<u64> {
        self.opened_at
    }

    /// Counters.
    pub fn counters(&self) -> &EncoderCounters {
        &self.counters
    }

    /// Bytes still free in the current frame.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    /// Writes one record. A record with the same `(kind, key)` as one already in this frame
    /// replaces it in place when its payload has the same length (always, for fixed-size
    /// kinds); otherwise it is appended and the later one wins on apply anyway. `now` is the
    /// data path's clock in nanoseconds, read once per batch.
    pub fn put(&mut self, now: u64, kind: u8, op: u8, key: u64, payload: &[u8]) -> Put {
        let plen = payload.len();
        if plen > MAX_PAYLOAD || record_len(plen) > self.frame_size - HEADER_LEN {
            self.counters.records_oversize += 1;
            return Put::Oversize;
        }
        let Some(buf) = self.buf.as_mut() else {
            return Put::Full;
        };
        let bytes = buf.spare_mut();
        let found = self.index.find(kind, key);
        if let Ok(slot) = found {
            let off = usize::from(self.index.slots[slot].off);
            let cur_len = bytes.get(off + 2..off + 4).map_or(usize::MAX, |b| {
                usize::from(u16::from_be_bytes([b[0], b[1]]))
            });
            let start = off + RECORD_HEADER_LEN;
            if cur_len == plen && start + plen <= bytes.len() {
                bytes[off + 1] = op;
                bytes[start..start + plen].copy_from_slice(payload);
                self.counters.records_coalesced += 1;
                return Put::Coalesced;
            }
        }
        let need = record_len(plen);
        if self.len + need > self.limit || self.count == u16::MAX {
            if self.count == 0 {
                // Not even an empty frame of this buffer holds it (a buffer smaller than the
                // frame size): retrying in a new frame would loop forever.
                self.counters.records_oversize += 1;
                return Put::Oversize;
            }
            return Put::Full;
        }
        let off = self.len;
        let rec = &mut bytes[off..off + need];
        rec[0] = kind;
        rec[1] = op;
        rec[2..4].copy_from_slice(&(plen as u16).to_be_bytes());
        rec[4..RECORD_HEADER_LEN].fill(0);
        rec[RECORD_HEADER_LEN..RECORD_HEADER_LEN + plen].copy_from_slice(payload);
        rec[RECORD_HEADER_LEN + plen..].fill(0);
        let slot = match found {
            Ok(i) | Err(i) => i,
        };
        // Offsets fit in u16: frames are at most MAX_FRAME_LEN (65 535) bytes.
        self.index.set(slot, kind, key, off as u16);
        self.len += need;
        self.count += 1;
        if self.opened_at.is_none() {
            self.opened_at = Some(now);
        }
        self.counters.records_written += 1;
        Put::Written
    }

    /// Closes the current frame: writes its header (epoch and sequence number 0; the sender
    /// stamps them at send time) and returns the buffer. `None` when no buffer is attached or
    /// the frame has no records (the buffer stays attached).
    pub fn finish(&mut self) -> Option<SyncBuf> {
        if self.count == 0 {
            return None;
        }
        let mut buf = self.buf.take()?;
        let flags = if self.bulk { FLAG_BULK } else { 0 };
        let body_len = (self.len - HEADER_LEN) as u16;
        // The buffer holds at least `self.len` ≥ HEADER_LEN bytes, so this cannot fail.
        let _ = emit_header(
            buf.spare_mut(),
            FrameType::Data,
            0,
            self.stream,
            flags,
            0,
            self.count,
            body_len,
            0,
        );
        buf.set_len(self.len);
        self.counters.frames += 1;
        self.limit = 0;
        self.reset_frame();
        Some(buf)
    }

    /// Detaches the buffer (for shutdown, or to return an unused one to the pool), discarding
    /// any records not yet finished.
    pub fn take_buffer(&mut self) -> Option<SyncBuf> {
        self.limit = 0;
        self.reset_frame();
        self.buf.take()
    }

    fn reset_frame(&mut self) {
        self.len = HEADER_LEN;
        self.count = 0;
        self.opened_at = None;
        self.index.reset();
    }
}
