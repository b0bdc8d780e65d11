//! The standby's receiving side: per-stream expected sequence number under the sender's epoch,
//! in-order delivery of records borrowed from the frame, duplicate and gap detection, ACK/NAK
//! generation with retry timers, bulk-sync requests and progress, and `ready()`.
//!
//! Out-of-order frames are **dropped**, not parked: the sender retransmits go-back-N from the
//! first missing frame (its NAK handling resends everything from there), so a reorder buffer
//! would only save retransmissions on a link that reorders, and a point-to-point state link
//! rarely does. It also keeps delivery a pure function of the frame in hand: records are
//! borrowed from the frame just received, never copied into a reorder buffer.

use crate::bulk::{BulkPhase, BulkProgress};
use crate::sender::ConfigError;
use crate::seq::{serial_diff, serial_lt};
use crate::wire::{
    emit_control, BulkReason, Control, DecodeError, Frame, Records, ALL_STREAMS, HEADER_LEN,
};

/// Receiver configuration. Times in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Number of streams, `0..streams` (the same hardware profile as the sender's).
    pub streams: u16,
    /// ACK after this many delivered frames of a stream …
    pub ack_every: u32,
    /// … or once the oldest unacknowledged delivery is this old.
    pub ack_delay: u64,
    /// A NAK not answered (the gap still open) is repeated after this long.
    pub nak_retry: u64,
    /// After this many NAKs for the same gap, give up on it and request a bulk sync.
    pub nak_tries: u32,
    /// A bulk request not answered by a BULK_BEGIN is repeated after this long.
    pub bulk_retry: u64,
}

impl ReceiverConfig {
    /// Defaults: ACK every 32 frames or 1 ms, NAK retry 5 ms × 5, bulk request retry 1 s.
    pub fn new(streams: u16) -> ReceiverConfig {
        ReceiverConfig {
            streams,
            ack_every: 32,
            ack_delay: 1_000_000,
            nak_retry: 5_000_000,
            nak_tries: 5,
            bulk_retry: 1_000_000_000,
        }
    }
}

/// What one received frame amounted to.
#[derive(Clone, Debug)]
pub enum Delivery<'a> {
    /// In order: apply these records (borrowed from the frame) to the stream's shard, in order.
    Records {
        /// Stream (= worker / shard).
        stream: u16,
        /// Sequence number.
        seq: u32,
        /// Part of a bulk sync.
        bulk: bool,
        /// The records.
        records: Records<'a>,
    },
    /// A bulk sync of `stream` starts (in order). Entries of the stream not refreshed by a bulk
    /// record between this and [`Delivery::BulkEnd`] are stale (their deletes may have been
    /// lost): the shard marks entries here and sweeps unrefreshed ones at the end.
    BulkBegin {
        /// Stream.
        stream: u16,
        /// Entries announced.
        total: u32,
    },
    /// The bulk sync of `stream` ended (in order).
    BulkEnd {
        /// Stream.
        stream: u16,
        /// A BULK_BEGIN of this epoch was delivered before it: the bulk is complete and the
        /// sweep may run.
        complete: bool,
    },
    /// Already delivered; dropped (an ACK is sent soon so the sender stops resending).
    Duplicate {
        /// Stream.
        stream: u16,
        /// Sequence number.
        seq: u32,
    },
    /// Ahead of the expected frame: a gap. Dropped; a NAK for the missing range is queued.
    OutOfOrder {
        /// Stream.
        stream: u16,
        /// Sequence number received.
        seq: u32,
        /// Sequence number expected.
        expected: u32,
    },
    /// The stream waits for a bulk sync (start, new sender epoch, or resync); frames before
    /// its BULK_BEGIN are dropped.
    Unsynced {
        /// Stream.
        stream: u16,
    },
    /// From the sender's previous epoch (in flight across its restart); dropped.
    StaleEpoch {
        /// Stream.
        stream: u16,
    },
    /// Not a sender → receiver frame of a configured stream; dropped.
    Invalid(Invalid),
}

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A control frame (they travel the other way).
    #[error("state-link control frame received on the receiving side")]
    Control,
    /// A stream this unit does not have.
    #[error("state-link frame for stream {stream}, but only streams 0..{streams} are configured (hardware profiles differ?)")]
    UnknownStream {
        /// Stream on the wire.
        stream: u16,
        /// Configured.
        streams: u16,
    },
}

/// Receiver counters (`show failover`, scraped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReceiverCounters {
    /// Frames received (all, valid or not).
    pub frames_received: u64,
    /// Data frames delivered in order.
    pub frames_delivered: u64,
    /// Records delivered in order for applying.
    pub records_delivered: u64,
    /// Duplicate frames dropped.
    pub duplicates: u64,
    /// Gaps detected (a new missing range).
    pub gaps: u64,
    /// Frames dropped because they were ahead of a gap.
    pub out_of_order: u64,
    /// Frames skipped (never delivered) when a BULK_BEGIN resynchronised a stream.
    pub frames_skipped: u64,
    /// ACKs sent.
    pub acks_sent: u64,
    /// NAKs sent (retries included).
    pub naks_sent: u64,
    /// BULK_REQUEST frames sent.
    pub bulk_requests_sent: u64,
    /// Bulk syncs completed (BULK_END after BULK_BEGIN).
    pub bulk_syncs: u64,
    /// Records delivered as part of bulk syncs.
    pub bulk_records: u64,
    /// Sender epoch changes seen (sender restarts).
    pub epoch_changes: u64,
    /// Frames dropped while the stream waited for a bulk sync.
    pub rx_unsynced: u64,
    /// Frames of the sender's previous epoch dropped.
    pub rx_stale_epoch: u64,
    /// Malformed, wrong-direction or unknown-stream frames dropped.
    pub rx_invalid: u64,
}

/// One stream's receiving state, for `show failover`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StreamRxStatus {
    /// Synchronised (a BULK_BEGIN of this epoch was delivered).
    pub synced: bool,
    /// Next expected sequence number.
    pub expected: u32,
    /// A gap is open (NAK outstanding).
    pub gap: bool,
    /// Bulk sync.
    pub bulk: BulkProgress,
}

#[derive(Clone, Copy)]
struct Nak {
    first: u32,
    count: u32,
    last_sent: Option<u64>,
    tries: u32,
}

#[derive(Clone, Copy)]
struct StreamRx {
    synced: bool,
    expected: u32,
    nak: Option<Nak>,
    ack_since: Option<u64>,
    frames_since_ack: u32,
    ack_now: bool,
    want_bulk: Option<BulkReason>,
    bulk_req_sent: Option<u64>,
    bulk: BulkProgress,
}

impl StreamRx {
    fn unsynced(reason: BulkReason) -> StreamRx {
        StreamRx {
            synced: false,
            expected: 0,
            nak: None,
            ack_since: None,
            frames_since_ack: 0,
            ack_now: false,
            want_bulk: Some(reason),
            bulk_req_sent: None,
            bulk: BulkProgress {
                phase: BulkPhase::Requested,
                total: 0,
                done: 0,
            },
        }
    }

    fn deliver(&mut self, now: u64, seq: u32) {
        self.expected = seq.wrapping_add(1);
        self.frames_since_ack += 1;
        self.ack_since.get_or_insert(now);
        if let Some(nak) = self.nak {
            if serial_lt(nak.first, self.expected) {
                // The gap's first frame arrived; the go-back-N resend brings the rest in order.
                // Should more be lost, the next frame out of order opens a new gap.
                self.nak = None;
            }
        }
    }
}

/// The receiving side of the state link for all streams of one unit.
///
/// Poll order: [`handle_frame`](Self::handle_frame) for each opened state-link payload (apply
/// what it delivers before the next); [`poll_control`](Self::poll_control) until `None`
/// (seal and send each control frame); wake at [`poll_timeout`](Self::poll_timeout).
pub struct Receiver {
    cfg: ReceiverConfig,
    epoch: Option<u32>,
    prev_epoch: Option<u32>,
    streams: Box<[StreamRx]>,
    rr: usize,
    counters: ReceiverCounters,
}

impl Receiver {
    /// A receiver that has nothing yet: every stream waits for a bulk sync, requested at the
    /// first [`poll_control`](Self::poll_control).
    pub fn new(cfg: ReceiverConfig) -> Result<Receiver, ConfigError> {
        if cfg.streams == 0 || cfg.streams == ALL_STREAMS {
            return Err(ConfigError::Streams(cfg.streams));
        }
        if cfg.ack_every == 0 {
            return Err(ConfigError::Zero("ack_every"));
        }
        if cfg.nak_retry == 0 {
            return Err(ConfigError::Zero("nak_retry"));
        }
        if cfg.bulk_retry == 0 {
            return Err(ConfigError::Zero("bulk_retry"));
        }
        Ok(Receiver {
            cfg,
            epoch: None,
            prev_epoch: None,
            streams: vec![StreamRx::unsynced(BulkReason::Join); usize::from(cfg.streams)]
                .into_boxed_slice(),
            rr: 0,
            counters: ReceiverCounters::default(),
        })
    }

    /// Counters.
    pub fn counters(&self) -> &ReceiverCounters {
        &self.counters
    }

    /// The sender epoch being tracked.
    pub fn epoch(&self) -> Option<u32> {
        self.epoch
    }

    /// One stream's state.
    pub fn stream_status(&self, stream: u16) -> Option<StreamRxStatus> {
        let st = self.streams.get(usize::from(stream))?;
        Some(StreamRxStatus {
            synced: st.synced,
            expected: st.expected,
            gap: st.nak.is_some(),
            bulk: st.bulk,
        })
    }

    /// Bulk progress summed over all streams ("bulk sync 45 % (450 000 of 1 000 000)").
    pub fn bulk_progress(&self) -> BulkProgress {
        let mut p = BulkProgress::default();
        let (mut any_running, mut any_requested, mut all_done) = (false, false, true);
        for st in self.streams.iter() {
            p.total += st.bulk.total;
            p.done += st.bulk.done;
            any_running |= st.bulk.phase == BulkPhase::Running;
            any_requested |= st.bulk.phase == BulkPhase::Requested;
            all_done &= st.bulk.phase == BulkPhase::Done;
        }
        p.phase = if all_done {
            BulkPhase::Done
        } else if any_running {
            BulkPhase::Running
        } else if any_requested {
            BulkPhase::Requested
        } else {
            BulkPhase::Idle
        };
        p
    }

    /// True when every stream has completed a bulk sync since the current sender epoch began
    /// and none has asked for another: the standby holds the whole state. Preemption and manual
    /// failover back to this unit wait for it (seeds 004, preemption).
    pub fn ready(&self) -> bool {
        self.epoch.is_some()
            && self
                .streams
                .iter()
                .all(|s| s.synced && s.bulk.phase == BulkPhase::Done && s.want_bulk.is_none())
    }

    /// Forgets every stream's position and asks for a bulk sync of all streams (state link came
    /// back after an outage, tables cleared, …).
    pub fn resync(&mut self) {
        for st in self.streams.iter_mut() {
            *st = StreamRx::unsynced(BulkReason::Join);
        }
    }

    /// Handles one opened state-link payload. Never panics; the result borrows `bytes`.
    pub fn handle_frame<'a>(&mut self, now: u64, bytes: &'a [u8]) -> Delivery<'a> {
        self.counters.frames_received += 1;
        let frame = match Frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.counters.rx_invalid += 1;
                return Delivery::Invalid(Invalid::Decode(e));
            }
        };
        let (epoch, stream, seq) = match frame {
            Frame::Data {
                epoch, stream, seq, ..
            }
            | Frame::BulkBegin {
                epoch, stream, seq, ..
            }
            | Frame::BulkEnd {
                epoch, stream, seq, ..
            } => (epoch, stream, seq),
            Frame::Control { .. } => {
                self.counters.rx_invalid += 1;
                return Delivery::Invalid(Invalid::Control);
            }
        };
        if usize::from(stream) >= self.streams.len() {
            self.counters.rx_invalid += 1;
            return Delivery::Invalid(Invalid::UnknownStream {
                stream,
                streams: self.cfg.streams,
            });
        }
        match self.epoch {
            None => self.epoch = Some(epoch),
            Some(e) if e == epoch => {}
            Some(_) if self.prev_epoch == Some(epoch) => {
                self.counters.rx_stale_epoch += 1;
                return Delivery::StaleEpoch { stream };
            }
            Some(e) => {
                // The sender restarted: its sequence numbers started over and what it had sent
                // before may be incomplete here. Every stream resynchronises by bulk sync.
                self.prev_epoch = Some(e);
                self.epoch = Some(epoch);
                self.counters.epoch_changes += 1;
                for st in self.streams.iter_mut() {
                    *st = StreamRx::unsynced(BulkReason::NewEpoch);
                }
            }
        }
        let st = &mut self.streams[usize::from(stream)];
        let is_begin = matches!(frame, Frame::BulkBegin { .. });
        if !st.synced {
            if !is_begin {
                self.counters.rx_unsynced += 1;
                return Delivery::Unsynced { stream };
            }
            st.synced = true;
            st.deliver(now, seq);
        } else {
            let ahead = serial_diff(st.expected, seq);
            if ahead < 0 {
                self.counters.duplicates += 1;
                st.ack_now = true;
                return Delivery::Duplicate { stream, seq };
            }
            if ahead > 0 && !is_begin {
                self.counters.out_of_order += 1;
                let count = ahead as u32 + 1;
                match st.nak.as_mut() {
                    Some(nak) if nak.first == st.expected => nak.count = nak.count.max(count),
                    _ => {
                        self.counters.gaps += 1;
                        st.nak = Some(Nak {
                            first: st.expected,
                            count,
                            last_sent: None,
                            tries: 0,
                        });
                    }
                }
                return Delivery::OutOfOrder {
                    stream,
                    seq,
                    expected: st.expected,
                };
            }
            // A BULK_BEGIN ahead of a gap is a resynchronisation point: the bulk repairs
            // whatever the skipped frames carried.
            self.counters.frames_skipped += ahead as u64;
            st.deliver(now, seq);
        }
        match frame {
            Frame::Data { bulk, records, .. } => {
                let n = records.remaining() as u64;
                self.counters.frames_delivered += 1;
                self.counters.records_delivered += n;
                if bulk && st.bulk.phase == BulkPhase::Running {
                    st.bulk.done += n;
                    self.counters.bulk_records += n;
                }
                Delivery::Records {
                    stream,
                    seq,
                    bulk,
                    records,
                }
            }
            Frame::BulkBegin { total, .. } => {
                st.want_bulk = None;
                st.bulk_req_sent = None;
                st.bulk = BulkProgress {
                    phase: BulkPhase::Running,
                    total: u64::from(total),
                    done: 0,
                };
                Delivery::BulkBegin { stream, total }
            }
            Frame::BulkEnd { .. } => {
                let complete = st.bulk.phase == BulkPhase::Running;
                if complete {
                    st.bulk.phase = BulkPhase::Done;
                    self.counters.bulk_syncs += 1;
                }
                Delivery::BulkEnd { stream, complete }
            }
            Frame::Control { .. } => Delivery::Invalid(Invalid::Control),
        }
    }

    /// Writes the next control frame due at `now` into `out` and returns its length: bulk
    /// requests first, then NAKs, then ACKs. `None` when nothing is due (or `out` is shorter
    /// than [`HEADER_LEN`]).
    pub fn poll_control(&mut self, now: u64, out: &mut [u8]) -> Option<usize> {
        if out.len() < HEADER_LEN {
            return None;
        }
        let epoch = self.epoch.unwrap_or(0);
        let cfg = self.cfg;
        let bulk_due = |st: &StreamRx| {
            st.want_bulk.is_some()
                && st
                    .bulk_req_sent
                    .is_none_or(|t| now.saturating_sub(t) >= cfg.bulk_retry)
        };
        // Every stream wants one at once (start, new epoch, resync): one request for all.
        if self.streams.iter().all(bulk_due) {
            let reason = self.streams[0].want_bulk.unwrap_or(BulkReason::Join);
            for st in self.streams.iter_mut() {
                st.bulk_req_sent = Some(now);
            }
            self.counters.bulk_requests_sent += 1;
            let control = Control::BulkRequest {
                stream: ALL_STREAMS,
                reason,
            };
            return emit_control(epoch, &control, out).ok();
        }
        let n = self.streams.len();
        for i in 0..n {
            let idx = (self.rr + i) % n;
            let st = &mut self.streams[idx];
            let stream = idx as u16;
            if let Some(nak) = st.nak.as_mut() {
                let due = nak
                    .last_sent
                    .is_none_or(|t| now.saturating_sub(t) >= cfg.nak_retry);
                if due && nak.tries >= cfg.nak_tries {
                    // Retransmission cannot fill the gap: resynchronise by bulk sync instead.
                    st.nak = None;
                    st.want_bulk = Some(BulkReason::GapNotFilled);
                    st.bulk_req_sent = None;
                    st.bulk.phase = BulkPhase::Requested;
                } else if due {
                    nak.last_sent = Some(now);
                    nak.tries += 1;
                    let control = Control::Nak {
                        stream,
                        first: nak.first,
                        count: nak.count,
                    };
                    self.counters.naks_sent += 1;
                    self.rr = (idx + 1) % n;
                    return emit_control(epoch, &control, out).ok();
                }
            }
            if bulk_due(st) {
                st.bulk_req_sent = Some(now);
                let reason = st.want_bulk.unwrap_or(BulkReason::Join);
                self.counters.bulk_requests_sent += 1;
                self.rr = (idx + 1) % n;
                return emit_control(epoch, &Control::BulkRequest { stream, reason }, out).ok();
            }
            let ack_due = st.synced
                && (st.ack_now
                    || st.ack_since.is_some_and(|t| {
                        st.frames_since_ack >= cfg.ack_every
                            || now.saturating_sub(t) >= cfg.ack_delay
                    }));
            if ack_due {
                st.ack_now = false;
                st.ack_since = None;
                st.frames_since_ack = 0;
                self.counters.acks_sent += 1;
                self.rr = (idx + 1) % n;
                let control = Control::Ack {
                    stream,
                    next: st.expected,
                };
                return emit_control(epoch, &control, out).ok();
            }
        }
        None
    }

    /// When [`poll_control`](Self::poll_control) next has something to send (nanoseconds);
    /// `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<u64> {
        let cfg = &self.cfg;
        let mut t: Option<u64> = None;
        let mut at = |d: u64| t = Some(t.map_or(d, |x| x.min(d)));
        for st in self.streams.iter() {
            if let Some(nak) = st.nak {
                at(nak.last_sent.map_or(0, |s| s.saturating_add(cfg.nak_retry)));
            }
            if st.want_bulk.is_some() {
                at(st
                    .bulk_req_sent
                    .map_or(0, |s| s.saturating_add(cfg.bulk_retry)));
            }
            if st.synced && (st.ack_now || st.frames_since_ack >= cfg.ack_every) {
                at(0);
            }
            if let (true, Some(since)) = (st.synced, st.ack_since) {
                at(since.saturating_add(cfg.ack_delay));
            }
        }
        t
    }
}
