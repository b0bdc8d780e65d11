//! `Stateful`: one worker's stateful stage glue (issue 4, `docs/stateful.md`)
//! — its `tandem_state::Shard`, the state-link frame encoders its records go
//! into (a `tandem_state::RecordSink` over `tandem_sync::FrameEncoder`),
//! the application of the mate's records on a standby, the incremental
//! expiry sweep, and the paced bulk sync. Owned by the [`Forwarder`], which
//! calls [`Stateful::lookup`] / [`Stateful::commit`] around its route lookup
//! and [`Forwarder::poll_stateful`] once per loop iteration.
//!
//! Ordering rules that keep the standby consistent:
//! * Live records go into one encoder, bulk records into another (frames
//!   flagged BULK), both on this worker's stream. Before each bulk step the
//!   live frame is shipped, and each bulk step ships its frame at its end, so
//!   a bulk upsert can never overtake a live delete of the same entry.
//! * A bulk sync is framed by BULK_BEGIN (entries announced) and BULK_END
//!   frames, header-only, sent on the outbound channel in order with the data
//!   frames: the replication thread passes them to `Sender::bulk_begin` /
//!   `Sender::bulk_end` and data frames to `Sender::send`.
//! * A standby does not clear its tables when a bulk sync begins (clearing
//!   would lose connections if the active failed mid-bulk): BULK_BEGIN marks
//!   a new generation, every entry the bulk (or a live record) re-sends is
//!   stamped with it, and once BULK_END arrives in order the entries the
//!   active no longer has (deleted while records were lost) are swept, a
//!   budget per iteration (`sync_bulk_swept`).
//!
//! [`Forwarder`]: crate::Forwarder
//! [`Forwarder::poll_stateful`]: crate::Forwarder::poll_stateful

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;
use serde::Serialize;
use tandem_state::records::{ArpRecord as ArpRec, KIND_ARP, KIND_CONN, OP_UPSERT};
use tandem_state::{
    ApplyError, BulkCursor, DropReason, Lookup, RecordSink, SaDirection, SaEntry, SaError, Shard,
    StateConfig, StateCounters, XlateView,
};
use tandem_sync::wire::{emit_sequenced, Frame as SyncFrame, FrameType, HEADER_LEN};
use tandem_sync::{FrameEncoder, Put, TokenBucket};
use zerocopy::network_endian::{U16, U32};
use zerocopy::IntoBytes;

use crate::arp::{ArpState, ArpTable};
use crate::config::SyncSettings;
use crate::counters::Counters;
use crate::sync::{WorkerSync, BULK_FINISHED, BULK_RUNNING};
use crate::time::Timestamp;

/// Inbound frames applied per loop iteration at most (so a burst of
/// replication cannot starve packet processing; the rest wait one iteration).
const INBOUND_PER_ITER: usize = 32;
/// Bulk-sync records written per loop iteration at most.
const BULK_PER_ITER: usize = 512;
/// The expiry sweep walks the whole connection table about this often.
const SWEEP_PERIOD_NS: u64 = 1_000_000_000;
/// Connection slots one sweep examines: at least this many (a fast loop
/// waits until that many are due, rather than walking the table many times
/// a period in slivers)...
const SWEEP_MIN: usize = 64;
/// ...and at most this many (bounds the work of one iteration after a long wait).
const SWEEP_MAX: usize = 4096;
/// Longest time between two sweeps, so that a small table is still visited
/// often.
const SWEEP_MAX_GAP_NS: u64 = 10_000_000;

/// Slots to sweep `dt_ns` after the last sweep of a table of `capacity`
/// slots, or `None` while fewer than [`SWEEP_MIN`] are due (and the last
/// sweep is under [`SWEEP_MAX_GAP_NS`] old): the table is walked about once
/// per [`SWEEP_PERIOD_NS`] whatever the loop's rate. At a million frames a
/// second the loop turns every ~30 µs; sweeping [`SWEEP_MIN`] slots each
/// time walked a 256 k table 8 times a second and cost about 4 % of the
/// worker's time.
fn sweep_budget(capacity: usize, dt_ns: u64) -> Option<usize> {
    let due = (capacity as u128 * u128::from(dt_ns)) / u128::from(SWEEP_PERIOD_NS);
    if due < SWEEP_MIN as u128 && dt_ns < SWEEP_MAX_GAP_NS {
        return None;
    }
    Some(due.clamp(SWEEP_MIN as u128, SWEEP_MAX as u128) as usize)
}
/// Table slots the post-bulk mark-and-sweep visits per loop iteration: small
/// enough to keep a batch's latency, large enough to walk a million-entry
/// table within about a second of iterations.
const BULK_SWEEP_BUDGET: usize = 1024;
/// Largest record payload plus its header and padding (`SaRecord`, 176
/// bytes): used to size how many buffers a bulk step may need.
const MAX_RECORD: usize = 176 + 8;
/// Record of a conn/xlate (the bulk's bulk): header + payload.
const TYPICAL_RECORD: usize = 40 + 8;

/// A connection as `show conn` prints it (owned copy of
/// `tandem_state::ConnView`, for the management thread).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnEntry {
    pub proto: &'static str,
    pub in_if: String,
    pub out_if: String,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub xlated_src: Ipv4Addr,
    pub xlated_sport: u16,
    pub xlated_dst: Ipv4Addr,
    pub xlated_dport: u16,
    pub state: &'static str,
    pub idle_ms: u64,
    pub replicated: bool,
    /// Forwarded by the flow-offload fast path (some direction).
    pub offloaded: bool,
}

/// Control-path requests to a worker's stateful stage (sent as
/// `Command::Stateful`; answered on the reply channel; allocation is fine).
#[derive(Debug)]
pub enum StatefulCommand {
    /// Up to `limit` connections.
    Conns {
        limit: usize,
        reply: Sender<Vec<ConnEntry>>,
    },
    /// Up to `limit` PAT xlates.
    Xlates {
        limit: usize,
        reply: Sender<Vec<XlateView>>,
    },
    /// Live `(connections, xlates, SAs)`.
    Counts { reply: Sender<(u64, u64, u64)> },
    /// Add (or replace) an SA; its record is replicated.
    SaAdd {
        sa: Box<SaEntry>,
        reply: Sender<Result<(), SaError>>,
    },
    /// Remove an SA; true when it existed.
    SaRemove {
        spi: u32,
        direction: SaDirection,
        reply: Sender<bool>,
    },
    /// Start (or restart) a bulk sync of this worker's tables and ARP entries.
    BulkSync,
}

/// Replication counters kept by the glue (merged into [`Counters`]).
#[derive(Clone, Copy, Debug, Default)]
struct SyncCounters {
    frames_out: u64,
    overflow: u64,
    bulk_done: u64,
    frames_in: u64,
    applied: u64,
    bad_frame: u64,
    unknown: u64,
    invalid: u64,
    table_full: u64,
}

/// Where a bulk sync stands on this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BulkStep {
    /// BULK_BEGIN not sent yet (no free buffer so far).
    Begin,
    /// ARP entries not sent yet.
    Arp,
    /// Walking the shard's tables.
    Tables,
    /// Tables done; BULK_END not sent yet.
    End,
}

struct Bulk {
    step: BulkStep,
    cursor: BulkCursor,
    /// ARP records sent (added to the shard's progress).
    arp: u64,
    total: u64,
}

/// Replication state of one worker (present when `sync` is configured).
struct Repl {
    ws: WorkerSync,
    live: FrameEncoder,
    bulk_enc: FrameEncoder,
    bulk: Option<Bulk>,
    bucket: TokenBucket,
    flush_ns: u64,
    stream: u16,
    c: SyncCounters,
    /// Standby: a bulk sync from the active completed, so what it did not
    /// re-send is swept (`Shard::bulk_sweep`), a budget per iteration.
    sweeping: bool,
}

/// The [`RecordSink`] the shard writes into: an encoder, refilled from the
/// worker's pool and shipped on its outbound channel when full. Never
/// blocks: records that find no buffer, or a frame that finds the channel
/// full, are counted `sync_overflow` and flag the stream for a bulk sync.
struct EncSink<'a> {
    enc: &'a mut FrameEncoder,
    ws: &'a WorkerSync,
    c: &'a mut SyncCounters,
    bucket: Option<&'a mut TokenBucket>,
    now: u64,
    bulk: bool,
}

impl<'a> EncSink<'a> {
    /// The live stream's sink of `r` (its rate limiter spent by creates when `limited`).
    fn live(r: &'a mut Repl, now: u64, limited: bool) -> Self {
        EncSink {
            enc: &mut r.live,
            ws: &r.ws,
            c: &mut r.c,
            bucket: if limited { Some(&mut r.bucket) } else { None },
            now,
            bulk: false,
        }
    }

    /// The bulk encoder's sink of `r`.
    fn bulk(r: &'a mut Repl, now: u64) -> Self {
        EncSink {
            enc: &mut r.bulk_enc,
            ws: &r.ws,
            c: &mut r.c,
            bucket: None,
            now,
            bulk: true,
        }
    }

    fn overflow(&mut self, records: u64) {
        self.c.overflow += records;
        self.ws.shared.overflowed.store(true, Ordering::Release);
    }

    /// Attaches a fresh buffer if none is attached; false when the pool is empty.
    fn ensure_buffer(&mut self) -> bool {
        if self.enc.has_buffer() {
            return true;
        }
        match self.ws.pool.get() {
            Some(b) => {
                // No buffer was attached, so nothing comes back.
                let _ = self.enc.begin(b, self.bulk);
                true
            }
            None => false,
        }
    }
}

/// Finishes the encoder's frame (if it has records) and hands it to the
/// replication thread; a full or closed channel loses the frame's records.
fn ship(enc: &mut FrameEncoder, ws: &WorkerSync, c: &mut SyncCounters) {
    let records = enc.records() as u64;
    let Some(buf) = enc.finish() else { return };
    match ws.send(buf) {
        Ok(()) => c.frames_out += 1,
        Err(e) => {
            ws.pool.put(e.into_inner());
            c.overflow += records;
            ws.shared.overflowed.store(true, Ordering::Release);
        }
    }
}

impl RecordSink for EncSink<'_> {
    fn put(&mut self, kind: u8, op: u8, key: u64, payload: &[u8]) {
        if kind == KIND_CONN && op == OP_UPSERT {
            // Live creates are never deferred, but they spend the rate
            // limiter's tokens so a concurrent bulk slows down.
            if let Some(b) = self.bucket.as_deref_mut() {
                b.take_live(self.now, 1);
            }
        }
        if !self.ensure_buffer() {
            self.overflow(1);
            return;
        }
        match self.enc.put(self.now, kind, op, key, payload) {
            Put::Written | Put::Coalesced | Put::Oversize => {}
            Put::Full => {
                ship(self.enc, self.ws, self.c);
                if !self.ensure_buffer() {
                    self.overflow(1);
                    return;
                }
                if self.enc.put(self.now, kind, op, key, payload) == Put::Full {
                    // Cannot happen with an empty frame of a valid size.
                    self.overflow(1);
                }
            }
        }
    }
}

/// Where the shard's records go: the live encoder with replication
/// configured, nowhere without.
enum LiveSink<'a> {
    Enc(EncSink<'a>),
    Null,
}

impl<'a> LiveSink<'a> {
    fn of(repl: &'a mut Option<Repl>, now: u64, limited: bool) -> Self {
        match repl {
            Some(r) => LiveSink::Enc(EncSink::live(r, now, limited)),
            None => LiveSink::Null,
        }
    }
}

impl RecordSink for LiveSink<'_> {
    #[inline]
    fn put(&mut self, kind: u8, op: u8, key: u64, payload: &[u8]) {
        if let LiveSink::Enc(s) = self {
            s.put(kind, op, key, payload);
        }
    }
}

/// One worker's stateful stage. See the module doc.
pub struct Stateful {
    shard: Shard,
    repl: Option<Repl>,
    /// Connection slots in the table (sizes the sweep budget).
    capacity: usize,
    last_sweep: u64,
    /// This worker's stream (its index).
    stream: u16,
}

fn ns(t: Timestamp) -> u64 {
    t.as_nanos()
}

impl Stateful {
    /// The shard of worker `worker` among `workers`. `seed` keys the hashes
    /// and the PAT port choice (random per process in `Dataplane`).
    pub fn new(
        cfg: &StateConfig,
        worker: u16,
        workers: u16,
        seed: u64,
    ) -> Result<Stateful, tandem_state::ConfigError> {
        Ok(Stateful {
            shard: Shard::new(cfg, worker, workers, seed)?,
            repl: None,
            capacity: cfg.capacities.conns as usize,
            last_sweep: 0,
            stream: worker,
        })
    }

    /// Attaches this worker's replication channels: records are produced
    /// from now on, and inbound frames applied. `rate`: bulk records per
    /// second for this worker (0 = unlimited).
    pub(crate) fn attach_sync(
        &mut self,
        ws: WorkerSync,
        settings: &SyncSettings,
        rate: u64,
    ) -> Result<(), tandem_sync::EncoderConfigError> {
        let frame = settings.frame_size.min(ws.pool.buf_len());
        self.repl = Some(Repl {
            live: FrameEncoder::new(self.stream, frame)?,
            bulk_enc: FrameEncoder::new(self.stream, frame)?,
            ws,
            bulk: None,
            bucket: TokenBucket::new(rate, (rate / 100).max(BULK_PER_ITER as u64)),
            flush_ns: u64::try_from(settings.flush.as_nanos()).unwrap_or(u64::MAX),
            stream: self.stream,
            c: SyncCounters::default(),
            sweeping: false,
        });
        Ok(())
    }

    /// The shard (tests, benches).
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// The shard, for the flow-offload glue (`crate::offload`).
    pub fn shard_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }

    /// Phase 1 (see `tandem_state::Shard::lookup`); `ip` is the datagram.
    #[inline]
    pub fn lookup(&mut self, now: Timestamp, rx_if: usize, ip: &[u8]) -> Lookup {
        self.shard.lookup(ns(now), rx_if as u16, ip)
    }

    /// Phase 2 (see `tandem_state::Shard::commit`): records go to the
    /// worker's live encoder, or nowhere without replication.
    #[inline]
    pub fn commit(
        &mut self,
        now: Timestamp,
        lookup: Lookup,
        out_if: usize,
        ip: &mut [u8],
    ) -> Result<(), DropReason> {
        let now = ns(now);
        let mut sink = LiveSink::of(&mut self.repl, now, true);
        self.shard.commit(now, lookup, out_if as u16, ip, &mut sink)
    }

    /// Replicates an ARP entry that just resolved or changed MAC (active).
    pub(crate) fn arp_changed(&mut self, now: Timestamp, port: usize, ip: u32, mac: [u8; 6]) {
        let Some(r) = self.repl.as_mut() else { return };
        let rec = ArpRec {
            ifindex: U16::new(port as u16),
            mac,
            ip: ip.to_be_bytes(),
            age_ms: U32::new(0),
        };
        EncSink::live(r, ns(now), false).put(
            KIND_ARP,
            OP_UPSERT,
            arp_key(port, ip),
            rec.as_bytes(),
        );
    }

    /// Is anything waiting for this stage besides packets (inbound frames,
    /// a bulk sync in progress)? The worker does not block then.
    pub fn work_pending(&self) -> bool {
        self.repl
            .as_ref()
            .is_some_and(|r| !r.ws.inbound.is_empty() || r.bulk.is_some() || r.sweeping)
    }

    /// The latest time the loop must run again: the flush deadline of the
    /// open live frame (a bulk in progress keeps the worker from blocking
    /// through [`Stateful::work_pending`]).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let r = self.repl.as_ref()?;
        r.live
            .opened_at()
            .map(|t| Timestamp::from_nanos(t.saturating_add(r.flush_ns)))
    }

    /// One loop iteration's work, after the batch: apply inbound frames
    /// (ARP records into `arp`), the expiry sweep, a bulk-sync step, and the
    /// live frame's flush deadline. Returns true if it did anything.
    pub(crate) fn poll(&mut self, now: Timestamp, arp: &mut ArpTable, ports: usize) -> bool {
        let t = ns(now);
        let mut busy = self.apply_inbound(now, arp, ports);
        if let Some(budget) = sweep_budget(self.capacity, t.saturating_sub(self.last_sweep)) {
            self.last_sweep = t;
            let expired = self
                .shard
                .expire(t, budget, &mut LiveSink::of(&mut self.repl, t, false));
            busy |= expired > 0;
        }
        if let Some(r) = self.repl.as_mut() {
            if r.bulk.is_some() {
                busy |= bulk_step(&self.shard, r, now, arp);
            }
            if r.sweeping {
                let p = self.shard.bulk_sweep(t, BULK_SWEEP_BUDGET);
                r.sweeping = !p.finished;
                busy = true;
            }
            if r.live
                .opened_at()
                .is_some_and(|o| t.saturating_sub(o) >= r.flush_ns)
            {
                ship(&mut r.live, &r.ws, &mut r.c);
                busy = true;
            }
        }
        busy
    }

    /// Applies up to [`INBOUND_PER_ITER`] inbound frames in place.
    fn apply_inbound(&mut self, now: Timestamp, arp: &mut ArpTable, ports: usize) -> bool {
        let Some(r) = self.repl.as_mut() else {
            return false;
        };
        let t = ns(now);
        let mut any = false;
        for _ in 0..INBOUND_PER_ITER {
            let Ok(buf) = r.ws.inbound.try_recv() else {
                break;
            };
            any = true;
            r.c.frames_in += 1;
            match SyncFrame::parse(buf.as_bytes()) {
                Ok(SyncFrame::Data { records, .. }) => {
                    for rec in records {
                        let res = if rec.kind == KIND_ARP {
                            apply_arp(now, arp, ports, rec.payload)
                        } else {
                            self.shard.apply(t, rec.kind, rec.op, rec.payload)
                        };
                        match res {
                            Ok(()) => r.c.applied += 1,
                            Err(ApplyError::UnknownKind(_) | ApplyError::UnknownOp { .. }) => {
                                r.c.unknown += 1
                            }
                            Err(ApplyError::TableFull { .. }) => r.c.table_full += 1,
                            Err(e) => {
                                // Counted; the reason (debug level: a flood of bad records must
                                // not flood the log) is what tells why the units diverge.
                                tracing::debug!(
                                    stream = self.stream,
                                    kind = rec.kind,
                                    op = rec.op,
                                    "replicated record refused: {e}"
                                );
                                r.c.invalid += 1
                            }
                        }
                    }
                }
                // Bulk markers come in stream order with the records: the
                // mark stamps everything the bulk re-sends, and an end that
                // arrives (in order, nothing missing before it) lets the
                // sweep remove what the active deleted while records were
                // lost. An aborted bulk never delivers its end: no sweep.
                Ok(SyncFrame::BulkBegin { .. }) => {
                    self.shard.bulk_mark();
                    r.sweeping = false;
                }
                Ok(SyncFrame::BulkEnd { .. }) => r.sweeping = true,
                Ok(SyncFrame::Control { .. }) | Err(_) => r.c.bad_frame += 1,
            }
            r.ws.pool.put(buf);
        }
        any
    }

    /// Starts (or restarts) a bulk sync; clears the overflow flag (the bulk
    /// repairs what was lost).
    fn start_bulk(&mut self, arp_entries: usize) {
        let Some(r) = self.repl.as_mut() else { return };
        let (c, x, s) = self.shard.counts();
        let total = (c + x + s + arp_entries) as u64;
        // A restarted bulk drops its half-built frame (the new one resends all).
        if let Some(b) = r.bulk_enc.take_buffer() {
            r.ws.pool.put(b);
        }
        r.bulk = Some(Bulk {
            step: BulkStep::Begin,
            cursor: BulkCursor::default(),
            arp: 0,
            total,
        });
        let sh = &r.ws.shared;
        sh.overflowed.store(false, Ordering::Release);
        sh.bulk_total.store(total, Ordering::Relaxed);
        sh.bulk_done.store(0, Ordering::Relaxed);
        sh.bulk_state.store(BULK_RUNNING, Ordering::Release);
    }

    /// Handles a control-path request (see [`StatefulCommand`]).
    pub(crate) fn command(&mut self, now: Timestamp, cmd: StatefulCommand, arp: &ArpTable) {
        let t = ns(now);
        match cmd {
            StatefulCommand::Conns { limit, reply } => {
                let mut v = Vec::new();
                self.shard.conns(t, |c| {
                    if v.len() < limit {
                        v.push(ConnEntry {
                            proto: c.proto,
                            in_if: c.in_if.to_string(),
                            out_if: c.out_if.to_string(),
                            src: c.src,
                            sport: c.sport,
                            dst: c.dst,
                            dport: c.dport,
                            xlated_src: c.xlated_src,
                            xlated_sport: c.xlated_sport,
                            xlated_dst: c.xlated_dst,
                            xlated_dport: c.xlated_dport,
                            state: c.state,
                            idle_ms: c.idle_ms,
                            replicated: c.replicated,
                            offloaded: c.offloaded,
                        });
                    }
                });
                let _ = reply.try_send(v);
            }
            StatefulCommand::Xlates { limit, reply } => {
                let mut v = Vec::new();
                self.shard.xlates(t, |x| {
                    if v.len() < limit {
                        v.push(x);
                    }
                });
                let _ = reply.try_send(v);
            }
            StatefulCommand::Counts { reply } => {
                let (c, x, s) = self.shard.counts();
                let _ = reply.try_send((c as u64, x as u64, s as u64));
            }
            StatefulCommand::SaAdd { sa, reply } => {
                let mut sink = LiveSink::of(&mut self.repl, t, false);
                let res = self.shard.sa_add(t, *sa, &mut sink);
                let _ = reply.try_send(res);
            }
            StatefulCommand::SaRemove {
                spi,
                direction,
                reply,
            } => {
                let mut sink = LiveSink::of(&mut self.repl, t, false);
                let res = self.shard.sa_remove(spi, direction, &mut sink);
                let _ = reply.try_send(res);
            }
            StatefulCommand::BulkSync => self.start_bulk(arp.len()),
        }
    }

    /// Adds this stage's counters into `c` (the shard's drops by their
    /// reason names, occupancy, replication).
    pub fn merge_counters(&self, c: &mut Counters) {
        let s: StateCounters = self.shard.counters();
        c.conn_created += s.conn_created;
        c.conn_deleted += s.conn_deleted;
        c.xlate_created += s.xlate_created;
        c.xlate_deleted += s.xlate_deleted;
        c.untracked_passed += s.untracked_passed;
        c.conns += s.conns;
        c.xlates += s.xlates;
        c.sas += s.sas;
        // The forwarder verified the IPv4 header; the shard's malformed
        // drops are bad L4 headers, the same counter's meaning.
        c.drop_malformed += s.drop_malformed;
        c.drop_fragment += s.drop_fragment;
        c.fragments_passed += s.fragments_passed;
        c.frag_table_full += s.frag_table_full;
        c.drop_tcp_no_conn += s.drop_tcp_no_conn;
        c.drop_tcp_invalid += s.drop_tcp_invalid;
        c.drop_security_level += s.drop_security_level;
        c.drop_access_rule += s.drop_access_rule;
        c.drop_unknown_interface += s.drop_unknown_interface;
        c.drop_conn_table_full += s.drop_conn_table_full;
        c.drop_xlate_table_full += s.drop_xlate_table_full;
        c.drop_pat_exhausted += s.drop_pat_exhausted;
        c.drop_pat_steer_conflict += s.drop_pat_steer_conflict;
        c.drop_tuple_conflict += s.drop_tuple_conflict;
        c.drop_sa_table_full += s.drop_sa_table_full;
        c.icmp_error_related += s.icmp_error_related;
        c.drop_icmp_error_unrelated += s.drop_icmp_error_unrelated;
        c.drop_icmp_error_malformed += s.drop_icmp_error_malformed;
        c.sync_bulk_swept += s.bulk_swept;
        if let Some(r) = &self.repl {
            let (l, b) = (r.live.counters(), r.bulk_enc.counters());
            c.sync_records_out += l.records_written;
            c.sync_records_coalesced += l.records_coalesced + b.records_coalesced;
            c.sync_frames_out += r.c.frames_out;
            c.sync_overflow += r.c.overflow;
            c.sync_bulk_records += b.records_written;
            c.sync_bulk_done += r.c.bulk_done;
            c.sync_frames_in += r.c.frames_in;
            c.sync_records_applied += r.c.applied;
            c.sync_apply_bad_frame += r.c.bad_frame;
            c.sync_apply_unknown += r.c.unknown;
            c.sync_apply_invalid += r.c.invalid;
            c.sync_apply_table_full += r.c.table_full;
        }
    }

    /// Hands back every buffer the encoders hold (shutdown).
    pub(crate) fn release_buffers(&mut self) {
        if let Some(r) = self.repl.as_mut() {
            ship(&mut r.live, &r.ws, &mut r.c);
            for b in [r.live.take_buffer(), r.bulk_enc.take_buffer()]
                .into_iter()
                .flatten()
            {
                r.ws.pool.put(b);
            }
        }
    }
}

fn arp_key(port: usize, ip: u32) -> u64 {
    ((port as u64) << 32) | u64::from(ip)
}

/// A replicated ARP entry becomes a resolved entry of this worker's table,
/// as confirmed `age_ms` ago (a warm ARP table after takeover). Entries
/// being resolved here are left to ARP itself (their held frames depend on
/// it). Deletes are ignored: entries age out locally.
fn apply_arp(
    now: Timestamp,
    arp: &mut ArpTable,
    ports: usize,
    payload: &[u8],
) -> Result<(), ApplyError> {
    let r = ArpRec::parse(payload)?;
    let port = usize::from(r.ifindex.get());
    let ip = u32::from_be_bytes(r.ip);
    let invalid = |what| ApplyError::Invalid {
        kind: KIND_ARP,
        what,
    };
    if port >= ports {
        return Err(invalid("interface index out of range"));
    }
    if r.mac[0] & 1 != 0 || r.mac == [0; 6] {
        return Err(invalid("MAC address is not unicast"));
    }
    if !crate::config::is_unicast(ip) {
        return Err(invalid("address is not unicast"));
    }
    if arp.state(now, port, ip) == Some(ArpState::Incomplete) {
        return Ok(());
    }
    let age = std::time::Duration::from_millis(u64::from(r.age_ms.get()));
    let confirmed = Timestamp::from_nanos(
        now.as_nanos()
            .saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX)),
    );
    match arp.learn(confirmed, port, ip, r.mac, true) {
        crate::arp::Learned::Refused => Err(ApplyError::TableFull { kind: KIND_ARP }),
        _ => Ok(()),
    }
}

/// Writes a header-only BULK_BEGIN / BULK_END frame; false when no buffer
/// is free or the channel is full (retried next iteration).
fn send_marker(r: &mut Repl, ty: FrameType, arg: u64) -> bool {
    let Some(mut buf) = r.ws.pool.get() else {
        return false;
    };
    let arg = u32::try_from(arg).unwrap_or(u32::MAX);
    if emit_sequenced(ty, 0, r.stream, 0, arg, buf.spare_mut()).is_err() {
        r.ws.pool.put(buf);
        return false;
    }
    buf.set_len(HEADER_LEN);
    match r.ws.send(buf) {
        Ok(()) => {
            r.c.frames_out += 1;
            true
        }
        Err(e) => {
            r.ws.pool.put(e.into_inner());
            false
        }
    }
}

/// Buffers that `records` records of at most `size` bytes need.
fn buffers_for(records: usize, size: usize, frame: usize) -> usize {
    let per = ((frame - HEADER_LEN) / size).max(1);
    records.div_ceil(per) + 1
}

/// One bounded step of a bulk sync. Waits (returns false) rather than
/// overflowing when the pool has too few buffers or the rate limiter no
/// tokens.
fn bulk_step(shard: &Shard, r: &mut Repl, now: Timestamp, arp: &ArpTable) -> bool {
    let t = ns(now);
    let Some(mut b) = r.bulk.take() else {
        return false;
    };
    // Live records first (see the module doc: a bulk upsert must not
    // overtake a live delete).
    ship(&mut r.live, &r.ws, &mut r.c);
    let frame = r.live.frame_size();
    let mut did = false;
    match b.step {
        BulkStep::Begin => {
            if send_marker(r, FrameType::BulkBegin, b.total) {
                b.step = BulkStep::Arp;
                did = true;
            }
        }
        BulkStep::Arp => {
            // The ARP table is small (its capacity is a few thousand at
            // most): sent in one step once there are buffers for all of it.
            if r.ws.pool.available() >= buffers_for(arp.len(), TYPICAL_RECORD, frame) {
                let mut sink = EncSink::bulk(r, t);
                let mut n = 0;
                arp.for_each(now, |e| {
                    if e.state == ArpState::Incomplete {
                        return;
                    }
                    let ip = u32::from(e.ip);
                    let rec = ArpRec {
                        ifindex: U16::new(e.port as u16),
                        mac: e.mac,
                        ip: ip.to_be_bytes(),
                        age_ms: U32::new(u32::try_from(e.age.as_millis()).unwrap_or(u32::MAX)),
                    };
                    sink.put(KIND_ARP, OP_UPSERT, arp_key(e.port, ip), rec.as_bytes());
                    n += 1;
                });
                ship(&mut r.bulk_enc, &r.ws, &mut r.c);
                b.arp = n;
                b.step = BulkStep::Tables;
                did = true;
            }
        }
        BulkStep::Tables => {
            // Buffers for a whole step first: pacing by free buffers means a
            // bulk waits for the replication thread instead of overflowing.
            if r.ws.pool.available() >= buffers_for(BULK_PER_ITER, MAX_RECORD, frame) {
                let n = r.bucket.try_take(t, BULK_PER_ITER as u64) as usize;
                if n > 0 {
                    let mut sink = EncSink::bulk(r, t);
                    let p = shard.bulk(&mut b.cursor, t, &mut sink, n);
                    ship(&mut r.bulk_enc, &r.ws, &mut r.c);
                    r.ws.shared
                        .bulk_done
                        .store(p.done as u64 + b.arp, Ordering::Relaxed);
                    if p.finished {
                        b.step = BulkStep::End;
                    }
                    did = true;
                }
            }
        }
        BulkStep::End => {
            if send_marker(r, FrameType::BulkEnd, 0) {
                r.c.bulk_done += 1;
                let done = r.ws.shared.bulk_done.load(Ordering::Relaxed);
                r.ws.shared.bulk_total.store(
                    done.max(r.ws.shared.bulk_total.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                r.ws.shared
                    .bulk_state
                    .store(BULK_FINISHED, Ordering::Release);
                return true;
            }
        }
    }
    r.bulk = Some(b);
    did
}

/// A random seed for a worker's shard hashes and PAT port choice (the
/// standard library's per-process random hasher keys, mixed with the
/// worker index): PAT ports must not be predictable.
pub(crate) fn random_seed(worker: usize) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(worker);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the loop's sweep decisions for one simulated second of
    /// iterations `step_ns` apart: (sweeps made, slots visited, longest gap).
    fn second_of(capacity: usize, step_ns: u64) -> (u64, u64, u64) {
        let (mut last, mut sweeps, mut slots, mut gap) = (0u64, 0u64, 0u64, 0u64);
        let mut t = step_ns;
        while t <= SWEEP_PERIOD_NS {
            if let Some(b) = sweep_budget(capacity, t - last) {
                gap = gap.max(t - last);
                last = t;
                sweeps += 1;
                slots += b as u64;
            }
            t += step_ns;
        }
        (sweeps, slots, gap)
    }

    #[test]
    fn a_fast_loop_walks_the_table_about_once_a_period() {
        // 256 k slots, an iteration every 30 µs (33 k iterations a second).
        let (sweeps, slots, _) = second_of(262_144, 30_000);
        // Within 2 % of one walk (each sweep rounds its share down).
        assert!((256_901..=267_387).contains(&slots), "{slots}");
        assert!(
            sweeps < 33_333 / 6,
            "{sweeps} sweeps: one per iteration is the old waste"
        );
    }

    #[test]
    fn a_small_table_is_visited_at_least_every_gap() {
        let (sweeps, slots, gap) = second_of(1024, 30_000);
        assert!(gap <= SWEEP_MAX_GAP_NS + 30_000, "{gap}");
        assert!(sweeps >= 99, "{sweeps}");
        assert!(slots >= 1024, "{slots}");
    }

    #[test]
    fn a_long_wait_is_bounded() {
        assert_eq!(sweep_budget(16 << 20, 5_000_000_000), Some(SWEEP_MAX));
        assert_eq!(sweep_budget(262_144, 0), None);
        assert_eq!(sweep_budget(262_144, SWEEP_MAX_GAP_NS), Some(2621));
    }
}
