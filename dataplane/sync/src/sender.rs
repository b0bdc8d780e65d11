//! The replication thread's sending side: per-stream sequence numbers assigned at send time, a
//! ring of the frames not yet acknowledged, go-back-N retransmission from a NAKed frame, a
//! one-frame probe on ACK timeout (with exponential backoff), and the decision that a receiver
//! fell too far behind and needs a bulk sync.
//!
//! Sans-IO: [`Sender::send`] and [`Sender::poll_retransmit`] hand out the frame bytes to seal and
//! transmit; the caller copies them into the secure link's buffer (the ring keeps the plaintext
//! for retransmission, so the frame cannot be sealed in place).

use std::collections::VecDeque;

use crate::buf::SyncBuf;
use crate::bulk::{BulkPhase, BulkProgress};
use crate::seq::{serial_le, serial_lt};
use crate::wire::{
    emit_sequenced, peek_header, stamp, BulkReason, Control, DecodeError, Frame, FrameType,
    ALL_STREAMS, FLAG_BULK, HEADER_LEN,
};

/// Sender configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// This sender's epoch: a random non-zero `u32` chosen at start. A restarted sender has a
    /// new epoch and starts its sequence numbers over; the receiver then asks for a bulk sync.
    pub epoch: u32,
    /// Number of streams (workers), `0..streams`.
    pub streams: u16,
    /// Frames kept per stream for retransmission (also the most frames in flight: beyond it the
    /// oldest unacknowledged frame is evicted, and a receiver that still needs it gets a bulk
    /// sync).
    pub ring_frames: usize,
    /// First retransmission timeout, nanoseconds: unacknowledged frames are resent after it.
    pub rto_initial: u64,
    /// Backoff cap for the retransmission timeout, nanoseconds.
    pub rto_max: u64,
}

impl SenderConfig {
    /// Defaults: 1024 frames per stream, RTO 10 ms doubling up to 200 ms.
    pub fn new(epoch: u32, streams: u16) -> SenderConfig {
        SenderConfig {
            epoch,
            streams,
            ring_frames: 1024,
            rto_initial: 10_000_000,
            rto_max: 200_000_000,
        }
    }
}

/// Invalid sender or receiver configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Epoch 0 is reserved ("none").
    #[error("state-link sender epoch must not be 0 (0 means \"no epoch\")")]
    ZeroEpoch,
    /// Stream count outside 1..=65535.
    #[error("state-link stream count {0} must be between 1 and 65535")]
    Streams(u16),
    /// A size or interval that must be positive is 0.
    #[error("state-link setting {0} must be greater than 0")]
    Zero(&'static str),
}

/// Why [`Sender::send`] refused a buffer (it is handed back with the error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The buffer does not hold a finished data frame.
    #[error("buffer is not a finished state-link data frame")]
    NotADataFrame,
    /// The frame's stream is not configured.
    #[error("state-link stream {stream} is not configured (streams 0..{streams})")]
    UnknownStream {
        /// Stream of the frame.
        stream: u16,
        /// Configured streams.
        streams: u16,
    },
    /// The buffer is too small for a header.
    #[error("buffer of {0} bytes cannot hold a state-link frame header")]
    BufferTooSmall(usize),
}

/// Something the glue must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderEvent {
    /// Start a bulk sync of `stream` from the tables: [`Sender::bulk_begin`], the stream's
    /// entries in BULK-flagged frames through [`Sender::send`], then [`Sender::bulk_end`].
    BulkNeeded {
        /// Stream (= worker).
        stream: u16,
        /// Why.
        reason: BulkReason,
    },
}

/// Sender counters (`show failover`, scraped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SenderCounters {
    /// Sequenced frames sent for the first time.
    pub frames_sent: u64,
    /// Records in them.
    pub records_sent: u64,
    /// Bytes in them.
    pub bytes_sent: u64,
    /// Frames sent again.
    pub retransmits: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    /// ACKs that advanced a stream.
    pub acks_received: u64,
    /// NAKs acted on.
    pub naks_received: u64,
    /// Unacknowledged frames evicted from a full ring.
    pub evicted: u64,
    /// Bulk syncs started.
    pub bulk_syncs: u64,
    /// Records sent in bulk-flagged frames.
    pub bulk_records: u64,
    /// Control frames for another epoch, or ACK/NAK outside the window (ignored).
    pub rx_stale: u64,
    /// Frames that failed to decode.
    pub rx_invalid: u64,
    /// Data frames received on the sending side (wrong direction; ignored).
    pub rx_unexpected: u64,
}

/// One stream's sending state, for `show failover`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StreamTxStatus {
    /// Sequence number the next frame gets.
    pub next_seq: u32,
    /// Receiver's next expected frame (last ACK).
    pub acked: u32,
    /// Replication lag in frames: sent but not acknowledged.
    pub lag_frames: u32,
    /// Frames held for retransmission.
    pub held: u32,
    /// Bulk sync.
    pub bulk: BulkProgress,
}

struct StreamTx {
    next_seq: u32,
    /// Oldest sequence number still held; `[base, next_seq)` are in the ring.
    base: u32,
    /// The receiver's cumulative ACK; `[acked, base)` were evicted unacknowledged.
    acked: u32,
    ring: Box<[Option<SyncBuf>]>,
    /// Go-back-N cursor: `[retx, retx_end)` still to resend.
    retx: Option<(u32, u32)>,
    /// After a retransmission timeout: frames before this were outstanding when it fired and
    /// may be lost; each ACK that advances into them probes the new oldest one.
    recover_end: Option<u32>,
    rto: u64,
    rto_since: u64,
    bulk: BulkProgress,
    bulk_begin_seq: u32,
}

impl StreamTx {
    fn slot(&self, seq: u32) -> usize {
        seq as usize % self.ring.len()
    }

    fn held(&self) -> u32 {
        self.next_seq.wrapping_sub(self.base)
    }

    fn holds(&self, seq: u32) -> bool {
        serial_le(self.base, seq) && serial_lt(seq, self.next_seq)
    }
}

/// The sending side of the state link for all streams of one unit.
///
/// Poll order per loop iteration: [`handle_control`](Self::handle_control) for each control
/// frame received; [`send`](Self::send) each finished frame from the workers (and bulk frames);
/// [`poll_event`](Self::poll_event) until `None` (start bulk syncs);
/// [`poll_retransmit`](Self::poll_retransmit) until `None`; [`take_free`](Self::take_free) until
/// `None` (buffers back to the pool); sleep until [`poll_timeout`](Self::poll_timeout) or the
/// next input.
pub struct Sender {
    cfg: SenderConfig,
    streams: Box<[StreamTx]>,
    free: Vec<SyncBuf>,
    events: VecDeque<SenderEvent>,
    rr: usize,
    counters: SenderCounters,
}

impl Sender {
    /// Builds the sender; allocates the rings (empty) and the event queue. Nothing after.
    pub fn new(cfg: SenderConfig) -> Result<Sender, ConfigError> {
        if cfg.epoch == 0 {
            return Err(ConfigError::ZeroEpoch);
        }
        if cfg.streams == 0 || cfg.streams == ALL_STREAMS {
            return Err(ConfigError::Streams(cfg.streams));
        }
        if cfg.ring_frames == 0 {
            return Err(ConfigError::Zero("ring_frames"));
        }
        if cfg.rto_initial == 0 {
            return Err(ConfigError::Zero("rto_initial"));
        }
        let streams = (0..cfg.streams)
            .map(|_| StreamTx {
                next_seq: 0,
                base: 0,
                acked: 0,
                ring: (0..cfg.ring_frames).map(|_| None).collect(),
                retx: None,
                recover_end: None,
                rto: cfg.rto_initial,
                rto_since: 0,
                bulk: BulkProgress::default(),
                bulk_begin_seq: 0,
            })
            .collect();
        let n = usize::from(cfg.streams);
        Ok(Sender {
            cfg,
            streams,
            free: Vec::with_capacity(n * cfg.ring_frames),
            events: VecDeque::with_capacity(n),
            rr: 0,
            counters: SenderCounters::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SenderConfig {
        &self.cfg
    }

    /// Counters.
    pub fn counters(&self) -> &SenderCounters {
        &self.counters
    }

    /// One stream's state (`None` for an unknown stream).
    pub fn stream_status(&self, stream: u16) -> Option<StreamTxStatus> {
        let st = self.streams.get(usize::from(stream))?;
        Some(StreamTxStatus {
            next_seq: st.next_seq,
            acked: st.acked,
            lag_frames: st.next_seq.wrapping_sub(st.acked),
            held: st.held(),
            bulk: st.bulk,
        })
    }

    /// Frames sent but not acknowledged, all streams.
    pub fn lag_frames(&self) -> u64 {
        self.streams
            .iter()
            .map(|s| u64::from(s.next_seq.wrapping_sub(s.acked)))
            .sum()
    }

    /// Frames held for `stream` and the ring size: a bulk sync should pause while the ring is
    /// nearly full, or its own frames get evicted before the receiver has them.
    pub fn ring_use(&self, stream: u16) -> (usize, usize) {
        self.streams
            .get(usize::from(stream))
            .map_or((0, 0), |s| (s.held() as usize, s.ring.len()))
    }

    /// Assigns the next sequence number of the frame's stream, stamps epoch and sequence number
    /// into its header, keeps it for retransmission and returns the bytes to seal and transmit.
    /// A full ring evicts its oldest unacknowledged frame (see [`SenderConfig::ring_frames`]).
    pub fn send(&mut self, now: u64, buf: SyncBuf) -> Result<&[u8], (SendError, SyncBuf)> {
        let (stream, count, bulk) = match peek_header(buf.as_bytes()) {
            Some(h) if h.frame_type == FrameType::Data as u8 && buf.len() >= HEADER_LEN => {
                (h.stream.get(), h.count.get(), h.flags & FLAG_BULK != 0)
            }
            _ => return Err((SendError::NotADataFrame, buf)),
        };
        if usize::from(stream) >= self.streams.len() {
            let streams = self.cfg.streams;
            return Err((SendError::UnknownStream { stream, streams }, buf));
        }
        self.counters.records_sent += u64::from(count);
        if bulk {
            self.counters.bulk_records += u64::from(count);
            let st = &mut self.streams[usize::from(stream)];
            if st.bulk.phase == BulkPhase::Running {
                st.bulk.done += u64::from(count);
            }
        }
        Ok(self.enqueue(now, stream, buf))
    }

    /// Starts a bulk sync of `stream`: sends BULK_BEGIN announcing `total` entries, written into
    /// `buf`. Records follow in frames begun with `bulk = true`; [`Self::bulk_end`] closes it.
    pub fn bulk_begin(
        &mut self,
        now: u64,
        stream: u16,
        total: u64,
        buf: SyncBuf,
    ) -> Result<&[u8], (SendError, SyncBuf)> {
        let total32 = u32::try_from(total).unwrap_or(u32::MAX);
        let buf = self.write_sequenced(FrameType::BulkBegin, stream, total32, buf)?;
        self.counters.bulk_syncs += 1;
        let st = &mut self.streams[usize::from(stream)];
        st.bulk = BulkProgress {
            phase: BulkPhase::Running,
            total,
            done: 0,
        };
        st.bulk_begin_seq = st.next_seq;
        Ok(self.enqueue(now, stream, buf))
    }

    /// Ends the bulk sync of `stream`: sends BULK_END (with the record count), written into `buf`.
    pub fn bulk_end(
        &mut self,
        now: u64,
        stream: u16,
        buf: SyncBuf,
    ) -> Result<&[u8], (SendError, SyncBuf)> {
        let done = self
            .streams
            .get(usize::from(stream))
            .map_or(0, |s| s.bulk.done);
        let done32 = u32::try_from(done).unwrap_or(u32::MAX);
        let buf = self.write_sequenced(FrameType::BulkEnd, stream, done32, buf)?;
        let st = &mut self.streams[usize::from(stream)];
        st.bulk.phase = BulkPhase::Done;
        Ok(self.enqueue(now, stream, buf))
    }

    fn write_sequenced(
        &self,
        ty: FrameType,
        stream: u16,
        arg: u32,
        mut buf: SyncBuf,
    ) -> Result<SyncBuf, (SendError, SyncBuf)> {
        if usize::from(stream) >= self.streams.len() {
            let streams = self.cfg.streams;
            return Err((SendError::UnknownStream { stream, streams }, buf));
        }
        let cap = buf.capacity();
        match emit_sequenced(ty, self.cfg.epoch, stream, 0, arg, buf.spare_mut()) {
            Ok(n) => {
                buf.set_len(n);
                Ok(buf)
            }
            Err(_) => Err((SendError::BufferTooSmall(cap), buf)),
        }
    }

    fn enqueue(&mut self, now: u64, stream: u16, mut buf: SyncBuf) -> &[u8] {
        let epoch = self.cfg.epoch;
        let st = &mut self.streams[usize::from(stream)];
        if st.held() as usize >= st.ring.len() {
            // The receiver is a whole ring behind: drop the oldest; if it still needs it, its
            // NAK finds it gone and it gets a bulk sync instead.
            let slot = st.slot(st.base);
            if let Some(old) = st.ring[slot].take() {
                Self::recycle(&mut self.free, old);
            }
            st.base = st.base.wrapping_add(1);
            self.counters.evicted += 1;
            if let Some((from, end)) = st.retx {
                if serial_lt(from, st.base) {
                    st.retx = serial_lt(st.base, end).then_some((st.base, end));
                }
            }
        }
        if st.next_seq == st.acked {
            st.rto_since = now;
            st.rto = self.cfg.rto_initial;
        }
        let seq = st.next_seq;
        stamp(buf.as_bytes_mut(), epoch, seq);
        st.next_seq = seq.wrapping_add(1);
        self.counters.frames_sent += 1;
        self.counters.bytes_sent += buf.len() as u64;
        let slot = st.slot(seq);
        let stored = st.ring[slot].insert(buf);
        stored.as_bytes()
    }

    fn recycle(free: &mut Vec<SyncBuf>, buf: SyncBuf) {
        // Bounded: the free list never outgrows its start-up capacity (a caller that does not
        // drain it loses buffers rather than making the sender allocate).
        if free.len() < free.capacity() {
            free.push(buf);
        }
    }

    /// A buffer no longer needed (acknowledged or evicted), to return to the pool.
    pub fn take_free(&mut self) -> Option<SyncBuf> {
        self.free.pop()
    }

    /// The next event for the glue.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    fn need_bulk(&mut self, stream: usize, reason: BulkReason) {
        let st = &mut self.streams[stream];
        if st.bulk.phase == BulkPhase::Requested {
            return;
        }
        st.bulk = BulkProgress {
            phase: BulkPhase::Requested,
            total: 0,
            done: 0,
        };
        // At most one pending event per stream (phase Requested until bulk_begin), so the queue
        // never outgrows its capacity.
        self.events.push_back(SenderEvent::BulkNeeded {
            stream: stream as u16,
            reason,
        });
    }

    /// Handles one control frame (ACK, NAK, BULK_REQUEST) from the receiver. Invalid frames
    /// are counted and reported; nothing panics.
    pub fn handle_control(&mut self, now: u64, bytes: &[u8]) -> Result<(), DecodeError> {
        let frame = match Frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.counters.rx_invalid += 1;
                return Err(e);
            }
        };
        let Frame::Control { epoch, control } = frame else {
            self.counters.rx_unexpected += 1;
            return Ok(());
        };
        match control {
            Control::BulkRequest { stream, reason } => {
                if stream == ALL_STREAMS {
                    for s in 0..self.streams.len() {
                        self.need_bulk(s, reason);
                    }
                } else if usize::from(stream) < self.streams.len() {
                    self.need_bulk(usize::from(stream), reason);
                } else {
                    self.counters.rx_stale += 1;
                }
            }
            Control::Ack { stream, next } => {
                if epoch != self.cfg.epoch || usize::from(stream) >= self.streams.len() {
                    self.counters.rx_stale += 1;
                    return Ok(());
                }
                self.handle_ack(now, usize::from(stream), next);
            }
            Control::Nak {
                stream,
                first,
                count: _,
            } => {
                if epoch != self.cfg.epoch || usize::from(stream) >= self.streams.len() {
                    self.counters.rx_stale += 1;
                    return Ok(());
                }
                self.handle_nak(usize::from(stream), first);
            }
        }
        Ok(())
    }

    fn handle_ack(&mut self, now: u64, stream: usize, next: u32) {
        let st = &mut self.streams[stream];
        if !(serial_le(st.acked, next) && serial_le(next, st.next_seq)) {
            self.counters.rx_stale += 1;
            return;
        }
        if next == st.acked {
            return;
        }
        let advanced = next.wrapping_sub(st.acked);
        st.acked = next;
        while serial_lt(st.base, next) {
            let slot = st.slot(st.base);
            if let Some(b) = st.ring[slot].take() {
                Self::recycle(&mut self.free, b);
            }
            st.base = st.base.wrapping_add(1);
        }
        if let Some((from, end)) = st.retx {
            if serial_lt(from, st.base) {
                st.retx = serial_lt(st.base, end).then_some((st.base, end));
            }
        }
        st.rto = self.cfg.rto_initial;
        st.rto_since = now;
        self.counters.acks_received += 1;
        if let Some(end) = st.recover_end {
            if advanced == 1 && serial_lt(st.base, end) {
                // Recovering from a timeout and the receiver got just the probe: the frames
                // sent after it before the timeout were lost too (the link does not reorder),
                // so probe the next one. One frame per ACK, no duplicates.
                if st.retx.is_none() {
                    st.retx = Some((st.base, st.base.wrapping_add(1)));
                }
            } else {
                // All of them acknowledged, or an ACK for more than the probe: the receiver
                // is receiving (it was slow, or only ACKs were lost), nothing to probe.
                st.recover_end = None;
            }
        }
    }

    fn handle_nak(&mut self, stream: usize, first: u32) {
        let st = &mut self.streams[stream];
        if serial_lt(first, st.acked) || !serial_lt(first, st.next_seq) {
            // Older than what was acknowledged since (stale), or not sent yet (bogus).
            self.counters.rx_stale += 1;
            return;
        }
        self.counters.naks_received += 1;
        let from = if st.holds(first) {
            first
        } else if matches!(st.bulk.phase, BulkPhase::Running | BulkPhase::Done)
            && st.holds(st.bulk_begin_seq)
        {
            // The frame is gone but a bulk sync that repairs it is in the ring: the receiver
            // did not get its BULK_BEGIN yet, so resend from there.
            st.bulk_begin_seq
        } else {
            // Seeds 004 / DESIGN "Replication": a standby that fell too far behind gets a bulk
            // sync of the whole table.
            self.need_bulk(stream, BulkReason::Evicted);
            return;
        };
        // Go-back-N: the receiver drops frames after a gap, so everything from `from` is resent.
        st.retx = Some((from, st.next_seq));
    }

    /// Deadline (nanoseconds) of the earliest retransmission timeout, if any frame is
    /// outstanding.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.streams
            .iter()
            .filter(|s| s.held() > 0)
            .map(|s| s.rto_since.saturating_add(s.rto))
            .min()
    }

    /// Fires retransmission timeouts due at `now` (also done by
    /// [`poll_retransmit`](Self::poll_retransmit)).
    pub fn handle_timeout(&mut self, now: u64) {
        let rto_max = self.cfg.rto_max.max(self.cfg.rto_initial);
        for st in self.streams.iter_mut() {
            if st.held() == 0 || now < st.rto_since.saturating_add(st.rto) {
                continue;
            }
            // Tail loss, lost ACKs or a slow receiver: probe with the oldest unacknowledged
            // frame only. A receiver that has it answers the duplicate with an ACK at once; one
            // that lacks it delivers it (or NAKs a gap); the ACK then drives the recovery. The
            // whole window is not resent: after a spurious timeout it would all be duplicates
            // that the receiver must open and drop.
            if st.retx.is_none() {
                st.retx = Some((st.base, st.base.wrapping_add(1)));
            }
            st.recover_end = Some(st.next_seq);
            st.rto_since = now;
            st.rto = st.rto.saturating_mul(2).min(rto_max);
            self.counters.timeouts += 1;
        }
    }

    /// The next frame to send again (after a NAK or timeout), or `None`. Copy it out, seal it,
    /// transmit it, call again.
    pub fn poll_retransmit(&mut self, now: u64) -> Option<&[u8]> {
        self.handle_timeout(now);
        let n = self.streams.len();
        for i in 0..n {
            let idx = (self.rr + i) % n;
            let st = &mut self.streams[idx];
            let Some((from, end)) = st.retx else {
                continue;
            };
            if !serial_lt(from, end) || !st.holds(from) {
                st.retx = None;
                continue;
            }
            st.retx = serial_lt(from.wrapping_add(1), end).then_some((from.wrapping_add(1), end));
            let slot = st.slot(from);
            self.rr = idx;
            self.counters.retransmits += 1;
            return self.streams[idx].ring[slot].as_ref().map(SyncBuf::as_bytes);
        }
        None
    }
}
