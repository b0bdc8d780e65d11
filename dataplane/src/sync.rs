//! The worker's side of replication (issue 4, `docs/stateful.md`): the
//! state-link buffers a worker writes its records into and reads its mate's
//! records from, the channels that carry them to and from the replication
//! thread ([`SyncEndpoints`]), and the per-worker progress the management
//! thread reads ([`SyncShared`]).
//!
//! Buffers: each worker has `sync.buffers_per_worker` [`SyncBuf`]s,
//! allocated at start and circulating through a bounded channel used as a
//! free list ([`SyncPool`]): worker encoder → outbound channel →
//! replication thread (sequenced, kept for retransmission until acked) →
//! back to the pool; and pool → replication thread (an opened frame of
//! this stream) → inbound channel → worker (records applied in place) →
//! back to the pool. Nothing allocates per record or per frame.
//!
//! Overflow policy: the worker never blocks and never drops state
//! silently. When no buffer is free or the outbound channel is full, the
//! records that do not fit are counted `sync_overflow` and the stream is
//! flagged as needing a bulk sync ([`SyncShared::overflowed`], read through
//! `Dataplane::sync_overflowed`), so the replication thread starts one and
//! the mate's tables converge again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tandem_io::wake::WakeFd;
pub use tandem_sync::SyncBuf;

/// One worker's free list of state-link buffers. Both the worker and the
/// replication thread take from it and give back to it (it is a bounded
/// MPMC channel holding exactly the buffers allocated at start).
#[derive(Clone, Debug)]
pub struct SyncPool {
    free: Receiver<SyncBuf>,
    back: Sender<SyncBuf>,
    buf_len: usize,
}

impl SyncPool {
    /// `count` buffers of `buf_len` bytes, allocated now (start-up only).
    pub fn new(count: usize, buf_len: usize) -> SyncPool {
        let (back, free) = bounded(count);
        for _ in 0..count {
            // Cannot fail: the channel holds exactly `count`.
            let _ = back.try_send(SyncBuf::with_capacity(buf_len));
        }
        SyncPool {
            free,
            back,
            buf_len,
        }
    }

    /// An empty buffer, or `None` when every buffer is in use. Never blocks.
    pub fn get(&self) -> Option<SyncBuf> {
        let mut b = self.free.try_recv().ok()?;
        b.clear();
        Some(b)
    }

    /// Gives a buffer back. A buffer beyond the pool's size (one that did
    /// not come from it) is dropped rather than blocking.
    pub fn put(&self, buf: SyncBuf) {
        let _ = self.back.try_send(buf);
    }

    /// Buffers free now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Bytes per buffer.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }
}

/// The sending end of a worker's inbound channel: opened, in-order frames
/// of the mate's stream for this worker. Wakes the worker after each frame.
#[derive(Clone, Debug)]
pub struct InboundTx {
    tx: Sender<SyncBuf>,
    wake: Arc<WakeFd>,
}

impl InboundTx {
    /// Queues one whole frame (header and records, as
    /// `tandem_sync::wire::Frame::parse` reads it) for the worker and wakes
    /// it. Never blocks: `Full` hands the buffer back (the replication
    /// thread treats it like a lost frame and asks again later).
    pub fn try_send(&self, buf: SyncBuf) -> Result<(), TrySendError<SyncBuf>> {
        self.tx.try_send(buf)?;
        self.wake.wake();
        Ok(())
    }

    /// Frames waiting for the worker.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// No frame is waiting for the worker.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

/// One worker's replication endpoints, for the replication thread. Stream
/// k is worker k (`docs/stateful.md`, "Streams").
#[derive(Debug)]
pub struct StreamEndpoint {
    /// The stream id: the worker index.
    pub stream: u16,
    /// Finished data frames (and BULK_BEGIN / BULK_END frames) of this
    /// worker, in order, with epoch and sequence number 0: the replication
    /// thread stamps and sends them, then returns each buffer to `pool`.
    pub outbound: Receiver<SyncBuf>,
    /// Frames of the mate's stream `stream`, for this worker to apply.
    pub inbound: InboundTx,
    /// This worker's buffers: take one to receive an inbound frame into;
    /// give back every outbound buffer once it leaves the retransmit ring.
    pub pool: SyncPool,
}

/// Everything the replication thread needs, taken once
/// (`Dataplane::take_sync_endpoints`).
#[derive(Debug)]
pub struct SyncEndpoints {
    /// One per worker, in worker order.
    pub streams: Vec<StreamEndpoint>,
    /// The replication thread's wake-up: every worker signals it after
    /// queueing an outbound frame ([`WakeFd`]'s protocol), so the thread
    /// can block in one `poll` on it and the state-link socket.
    pub wake: Arc<WakeFd>,
}

/// What a worker publishes about its replication stream (atomics; read by
/// the management thread without a round trip).
#[derive(Debug, Default)]
pub struct SyncShared {
    /// Records were lost to a full pool or outbound channel since the last
    /// read or bulk start: the stream needs a bulk sync.
    pub overflowed: AtomicBool,
    /// Bulk sync: entries announced (table sizes when it started).
    pub bulk_total: AtomicU64,
    /// Bulk sync: entries sent so far.
    pub bulk_done: AtomicU64,
    /// Bulk sync: 0 none yet, 1 running, 2 finished.
    pub bulk_state: AtomicU64,
}

/// [`SyncShared::bulk_state`] values (0: no bulk sync yet).
pub(crate) const BULK_RUNNING: u64 = 1;
pub(crate) const BULK_FINISHED: u64 = 2;

impl SyncShared {
    /// `(done, total, finished)`.
    pub fn bulk_progress(&self) -> (u64, u64, bool) {
        (
            self.bulk_done.load(Ordering::Relaxed),
            self.bulk_total.load(Ordering::Relaxed),
            self.bulk_state.load(Ordering::Acquire) == BULK_FINISHED,
        )
    }

    /// Reads and clears the overflow flag.
    pub fn take_overflowed(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
}

/// The worker's ends of its replication channels (give it to
/// `Forwarder::attach_sync`).
pub struct WorkerSync {
    pub(crate) pool: SyncPool,
    outbound: Sender<SyncBuf>,
    /// The replication thread's wake-up ([`SyncEndpoints::wake`]).
    repl_wake: Arc<WakeFd>,
    pub(crate) inbound: Receiver<SyncBuf>,
    pub(crate) shared: Arc<SyncShared>,
}

impl WorkerSync {
    /// Queues a finished frame for the replication thread and wakes it
    /// (one atomic swap while it is busy). Never blocks: `Full` hands the
    /// buffer back.
    pub(crate) fn send(&self, buf: SyncBuf) -> Result<(), TrySendError<SyncBuf>> {
        self.outbound.try_send(buf)?;
        self.repl_wake.wake();
        Ok(())
    }

    /// What the worker publishes (overflow flag, bulk progress).
    pub fn shared(&self) -> &Arc<SyncShared> {
        &self.shared
    }
}

/// Builds both ends for one worker: `(worker side, replication side)`,
/// with `buffers` buffers of `buf_len` bytes allocated now; `wake` is the
/// worker's wake-up, signalled by [`InboundTx::try_send`], and `repl_wake`
/// the replication thread's, signalled after each outbound frame. Outbound and
/// inbound channels hold as many frames as the pool has buffers, so a
/// channel is never the tighter limit. `Dataplane::start` calls this; tests
/// and benches driving a [`crate::BatchLoop`] themselves call it directly.
pub fn channels(
    stream: u16,
    buffers: usize,
    buf_len: usize,
    wake: Arc<WakeFd>,
    repl_wake: Arc<WakeFd>,
) -> (WorkerSync, StreamEndpoint) {
    let pool = SyncPool::new(buffers, buf_len);
    let (out_tx, out_rx) = bounded(buffers);
    let (in_tx, in_rx) = bounded(buffers);
    let shared = Arc::new(SyncShared::default());
    (
        WorkerSync {
            pool: pool.clone(),
            outbound: out_tx,
            repl_wake,
            inbound: in_rx,
            shared,
        },
        StreamEndpoint {
            stream,
            outbound: out_rx,
            inbound: InboundTx { tx: in_tx, wake },
            pool,
        },
    )
}
