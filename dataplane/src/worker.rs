//! The pinned per-core run loop: one thread per worker, a budgeted batch
//! loop over its backend (STYLE habit 6), commands from the management
//! thread over a bounded queue (habit 10), counters published per batch.
//!
//! One iteration ([`BatchLoop::poll_once`]): read the clock once, queue the
//! frames the management thread asked to inject (worker 0; at most `batch`
//! of them), process up to `batch` frames other workers handed over (with
//! the stateful stage and several workers, `crate::handoff`), receive a
//! burst of up to `batch` frames per port and run the forwarder over each,
//! wake the workers it handed frames to, run due timers, hand the TX batches to the backend
//! (one `tx_burst` per port) unless full bursts keep arriving and
//! `tx_flush` has not passed, then `backend.flush()` once. Between
//! iterations the worker drains its command queue with `try_recv` (this is
//! where an ownership change is applied, whole, between two batches) and
//! applies the idle strategy.
//!
//! Wake-up: a worker blocked in the backend also watches its eventfd
//! ([`tandem_io::wake::WakeFd`]), which the `Dataplane` handle signals
//! after queueing anything for it (a command, a frame to inject, an inbound
//! state-link frame), as does another worker that handed it frames. So an injected frame or a replicated record is handled
//! within one iteration whether the worker is busy, spinning or blocked;
//! the signal costs the producer one atomic swap while the worker is
//! awake, and one `write` only when it is parked. Before blocking, the
//! worker parks, re-checks its queues, and does not block when any is
//! non-empty (see the protocol in `tandem_io::wake`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tandem_io::wake::WakeFd;
use tandem_io::{Backend, Frame};

use crate::arp::ArpRecord;
use crate::config::{IdleStrategy, RunConfig};
use crate::counters::{Counters, SharedCounters, SharedPortCounters};
use crate::forward::Forwarder;
use crate::ownership::{Ownership, Role};
use crate::punt::InjectedFrame;
use crate::time::{Clock, Timestamp};
use crate::tx::TxBatches;

/// Messages from the management thread to a worker.
#[derive(Debug)]
pub enum Command {
    /// Finish the current iteration, flush, publish counters and exit.
    Shutdown,
    /// Start a gratuitous ARP burst for every owned address.
    GratuitousArp,
    /// Copy the ARP table into a reply on the given channel.
    ArpSnapshot(Sender<ArpReply>),
    /// Apply a new address ownership and role between two batches, then
    /// publish `generation` as applied.
    SetOwnership {
        ownership: Arc<Ownership>,
        role: Role,
        /// Start a gratuitous ARP burst (sent to one worker only).
        announce: bool,
        generation: u64,
    },
    /// Send one ARP request for the `recent`-th most recent ARP entry on
    /// `interface` (seeds 004, "ARP test").
    ArpProbe { interface: usize, recent: u8 },
    /// Send one broadcast ping on `interface` (seeds 004, "Broadcast Ping test").
    BroadcastPing { interface: usize },
    /// Replace the route table between two batches (a live `config reload`)
    /// and hand the old table back on `done`, so it is freed off the worker.
    SetRoutes {
        table: Box<crate::route::RouteTable>,
        done: Sender<Box<crate::route::RouteTable>>,
    },
    /// A stateful-stage request (issue 4): views, SAs, bulk sync.
    Stateful(crate::stateful::StatefulCommand),
}

// Here rather than in `route`: only `Command`'s derive needs it.
impl std::fmt::Debug for crate::route::RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.len())
            .finish_non_exhaustive()
    }
}

/// A worker's answer to [`Command::ArpSnapshot`].
#[derive(Clone, Debug)]
pub struct ArpReply {
    pub worker: usize,
    pub records: Vec<ArpRecord>,
}

/// The state of one worker's batch loop, without the backend (so tests and
/// benchmarks can drive it over a backend they keep).
pub struct BatchLoop {
    fwd: Forwarder,
    /// Frames to inject (worker 0 only).
    inject: Option<Receiver<InjectedFrame>>,
    tx: TxBatches,
    rx: Vec<Frame>,
    batch: usize,
    tx_flush: Duration,
    /// When the oldest frame now waiting in `tx` was queued.
    tx_since: Option<Timestamp>,
}

impl BatchLoop {
    pub fn new(fwd: Forwarder, run: &RunConfig) -> BatchLoop {
        let batch = run.batch.clamp(1, crate::config::MAX_BATCH);
        BatchLoop {
            tx: TxBatches::new(fwd.port_count(), batch),
            fwd,
            inject: None,
            rx: vec![Frame::default(); batch],
            batch,
            tx_flush: run.tx_flush,
            tx_since: None,
        }
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.fwd
    }

    pub fn forwarder_mut(&mut self) -> &mut Forwarder {
        &mut self.fwd
    }

    /// The forwarder and the TX batches it queues on, for sending outside
    /// `poll_once` (frames queued here go out at the next flush).
    pub fn forwarder_and_tx(&mut self) -> (&mut Forwarder, &mut TxBatches) {
        (&mut self.fwd, &mut self.tx)
    }

    /// This loop sends the frames that arrive on `rx` (see the module doc).
    pub fn set_inject_queue(&mut self, rx: Receiver<InjectedFrame>) {
        self.inject = Some(rx);
    }

    /// Are frames waiting to be injected?
    pub fn inject_pending(&self) -> bool {
        self.inject.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// Is anything queued for this loop besides received frames (frames to
    /// inject, inbound state-link frames)? A worker does not block then.
    pub fn work_pending(&self) -> bool {
        self.inject_pending()
            || self.fwd.handoff_pending()
            || self.fwd.stateful().is_some_and(|s| s.work_pending())
    }

    /// One iteration of the loop at time `now`; returns the frames received.
    pub fn poll_once(&mut self, now: Timestamp, backend: &mut dyn Backend) -> usize {
        let ports = self.fwd.port_count().min(backend.port_count());
        let mut got = 0;
        let mut drained = true;
        // Injections first: a hello must not wait behind a receive burst.
        // Bounded per iteration so a flood of injections cannot starve RX.
        let mut injected = false;
        if let Some(q) = &self.inject {
            for _ in 0..self.batch {
                let Ok(inj) = q.try_recv() else { break };
                self.fwd.send_injected(backend, &mut self.tx, &inj);
                injected = true;
            }
        }
        // Frames other workers handed over (worker handoff, `crate::handoff`):
        // received earlier than this burst, so processed first; bounded like
        // a receive burst.
        let handed = self
            .fwd
            .drain_handoff(now, backend, &mut self.tx, self.batch);
        if handed == self.batch {
            drained = false;
        }
        got += handed;
        for port in 0..ports {
            let n = backend
                .rx_burst(port, &mut self.rx[..self.batch])
                .min(self.batch);
            if n == self.batch {
                drained = false;
            }
            if n > 0 {
                self.fwd
                    .process_batch(now, backend, port, &self.rx[..n], &mut self.tx);
                got += n;
            }
        }
        // Once per iteration, whatever was handed over in it.
        self.fwd.handoff_wake();
        let mut busy = got > 0;
        if self.fwd.poll_timeout().is_some_and(|t| t <= now) {
            self.fwd.handle_timeout(now, backend, &mut self.tx);
            busy = true;
        }
        // Stateful stage (issue 4): inbound records, expiry sweep, bulk
        // step, replication flush deadline. Nothing without `state`.
        busy |= self.fwd.poll_stateful(now);
        // Flow offload (`crate::offload`): installs, removals, a scan step.
        if let Some(table) = backend.flow_offload() {
            busy |= self.fwd.sync_offload(now, table);
        }
        if !self.tx.is_empty() {
            let since = *self.tx_since.get_or_insert(now);
            // Flush at once when the receive queues came up short (nothing
            // more is coming right now, so waiting would only add latency)
            // or a protocol frame was injected; otherwise keep filling the
            // bursts until tx_flush has passed.
            if drained || injected || now.saturating_since(since) >= self.tx_flush {
                self.tx.flush(backend);
                self.tx_since = None;
                busy = true;
            }
        }
        if busy {
            backend.flush();
        }
        got
    }

    /// Hands every queued frame to the backend and flushes it.
    pub fn flush_tx(&mut self, backend: &mut dyn Backend) {
        self.tx.flush(backend);
        self.tx_since = None;
        backend.flush();
    }

    /// The earliest time the loop has timed work (ARP, GARP, a held TX batch).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let tx = self.tx_since.map(|t| t + self.tx_flush);
        let sync = self.fwd.stateful().and_then(|s| s.poll_timeout());
        [self.fwd.poll_timeout(), tx, sync]
            .into_iter()
            .flatten()
            .min()
    }

    /// Forwarder, TX and backend counters together.
    pub fn counters(&self, backend: &dyn Backend) -> Counters {
        let mut c = *self.fwd.counters();
        c.tx = self.tx.tx;
        c.drop_tx_ring_full = self.tx.drop_tx_ring_full;
        let s = backend.stats();
        c.backend_rx_dropped = s.rx_dropped;
        c.backend_alloc_failed = s.alloc_failed;
        c.backend_syscalls = s.syscalls;
        if let Some(st) = self.fwd.stateful() {
            st.merge_counters(&mut c);
        }
        self.fwd.merge_offload_counters(&mut c);
        c
    }
}

/// What a worker publishes for the management thread: counters per batch,
/// and the last ownership generation it applied.
#[derive(Debug)]
pub(crate) struct Published {
    pub counters: SharedCounters,
    pub ports: SharedPortCounters,
    /// Generation of the last ownership change applied (0: the configuration's).
    pub ownership: AtomicU64,
}

impl Published {
    pub(crate) fn new(ports: usize) -> Published {
        Published {
            counters: SharedCounters::default(),
            ports: SharedPortCounters::new(ports),
            ownership: AtomicU64::new(0),
        }
    }
}

/// Everything a worker thread owns.
pub(crate) struct Worker {
    pub idx: usize,
    pub core: Option<usize>,
    pub backend: Box<dyn Backend>,
    pub batch_loop: BatchLoop,
    pub commands: Receiver<Command>,
    pub shared: Arc<Published>,
    pub clock: Clock,
    pub idle: IdleStrategy,
    /// Signalled by the handle after queueing work for this worker.
    pub wake: Arc<WakeFd>,
}

/// Counters are also published this often when nothing is received, so
/// timer-driven output (ARP, GARP) shows up.
const IDLE_PUBLISH: Duration = Duration::from_millis(10);

impl Worker {
    pub(crate) fn run(mut self) {
        if let Some(core) = self.core {
            if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                tracing::info!(
                    worker = self.idx,
                    core,
                    backend = self.backend.name(),
                    "worker pinned"
                );
            } else {
                tracing::warn!(
                    worker = self.idx,
                    core,
                    "worker {}: pinning to core {core} failed; running unpinned",
                    self.idx
                );
            }
        }
        let backend = &mut *self.backend;
        let bl = &mut self.batch_loop;
        let mut last_rx = self.clock.now();
        let mut next_publish = last_rx;
        let mut ping_seq: u16 = 0;
        'run: loop {
            let now = self.clock.now();
            let n = bl.poll_once(now, backend);
            if n > 0 || now >= next_publish {
                publish(&self.shared, bl, &*backend);
                next_publish = now + IDLE_PUBLISH;
            }
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => break 'run,
                    Ok(Command::GratuitousArp) => bl.forwarder_mut().start_gratuitous_arp(now),
                    Ok(Command::SetOwnership {
                        ownership,
                        role,
                        announce,
                        generation,
                    }) => {
                        // The handle validated it against the same
                        // interfaces; an error here would be a bug, and
                        // leaves the old ownership whole.
                        match bl
                            .forwarder_mut()
                            .set_ownership(now, &ownership, role, announce)
                        {
                            Ok(()) => {
                                // Release: a reader that sees the generation
                                // sees everything published before it.
                                publish(&self.shared, bl, &*backend);
                                self.shared.ownership.store(generation, Ordering::Release);
                            }
                            Err(e) => tracing::error!(
                                worker = self.idx,
                                generation,
                                "ownership change refused: {e}"
                            ),
                        }
                        // Dropping this worker's `Arc` (the last one frees
                        // the vector) is the only deallocation, off the hot path.
                    }
                    // Queued like any transmit; the next iteration (or the
                    // flush before blocking) sends them.
                    Ok(Command::ArpProbe { interface, recent }) => {
                        let (fwd, tx) = bl.forwarder_and_tx();
                        fwd.send_arp_probe(backend, tx, interface, usize::from(recent));
                    }
                    Ok(Command::BroadcastPing { interface }) => {
                        ping_seq = ping_seq.wrapping_add(1);
                        let (fwd, tx) = bl.forwarder_and_tx();
                        fwd.send_broadcast_ping(backend, tx, interface, ping_seq);
                    }
                    Ok(Command::SetRoutes { mut table, done }) => {
                        bl.forwarder_mut().replace_routes(&mut table);
                        // `table` now holds the old routes: freed by the
                        // handle (or here, if the handle stopped waiting).
                        let _ = done.try_send(table);
                    }
                    Ok(Command::Stateful(cmd)) => bl.forwarder_mut().stateful_command(now, cmd),
                    Ok(Command::ArpSnapshot(reply)) => {
                        // Control path: allocating the reply here is fine.
                        let mut records = Vec::new();
                        bl.forwarder().arp_records(now, |r| records.push(r));
                        let _ = reply.try_send(ArpReply {
                            worker: self.idx,
                            records,
                        });
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if n > 0 {
                last_rx = now;
                continue;
            }
            match self.idle {
                IdleStrategy::BusyPoll => std::hint::spin_loop(),
                IdleStrategy::SpinThenBlock { spin, block } => {
                    if now.saturating_since(last_rx) < spin {
                        std::hint::spin_loop();
                        continue;
                    }
                    // Parked before the re-check: whatever is queued after
                    // it signals the eventfd (see the module doc).
                    self.wake.park();
                    if bl.work_pending() || !self.commands.is_empty() {
                        self.wake.unpark();
                        continue;
                    }
                    // Never sleep on frames waiting for transmit.
                    bl.flush_tx(backend);
                    let wait = bl
                        .next_deadline()
                        .map_or(block, |t| block.min(t.saturating_since(now)));
                    if !wait.is_zero() {
                        backend.wait_or_wake(wait, self.wake.fd());
                    }
                    self.wake.unpark();
                }
            }
        }
        bl.flush_tx(backend);
        if let Some(st) = bl.forwarder_mut().stateful_mut() {
            st.release_buffers();
        }
        publish(&self.shared, bl, &*backend);
        tracing::info!(worker = self.idx, "worker stopped");
    }
}

fn publish(shared: &Published, bl: &BatchLoop, backend: &dyn Backend) {
    shared.counters.publish(&bl.counters(backend));
    shared.ports.publish(bl.forwarder().port_counters());
}
