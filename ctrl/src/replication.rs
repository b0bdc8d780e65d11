//! The replication thread (issue 4, `dataplane/docs/stateful.md`): carries
//! the workers' state-link frames to the mate and the mate's frames to the
//! workers, over its own AF_PACKET socket (EtherType [`ETHERTYPE`] 0x88B6 on
//! the state device, or on the failover link's device when the state link
//! is shared) and its own [`tandem_link::SecureLink`] of kind
//! `LinkKind::State`, keyed with the failover key.
//!
//! Roles (set by the HA thread, [`ReplicationLink::set_role`]):
//! * **active**: finished frames from each worker's outbound channel go to
//!   the [`Sender`] (sequence number, retransmission ring), are copied into
//!   the TX buffer (the ring keeps the plaintext: a retransmission is sealed
//!   again with a fresh link sequence number), sealed and sent. Control
//!   frames from the mate (ACK, NAK, BULK_REQUEST) go back to the Sender;
//!   its `BulkNeeded` events, and a worker's sync overflow, start a bulk sync
//!   of that stream in the data path ([`StateTables::start_bulk`]). Each
//!   activation starts a new sender epoch, so the new standby asks for a
//!   bulk sync of everything.
//! * **standby**: opened data frames go to the [`Receiver`]; in-order ones
//!   are handed whole to the owning worker's inbound channel (which wakes
//!   it); its ACK/NAK/BULK_REQUEST frames are sealed and sent. A frame is
//!   only offered to the Receiver once a worker buffer is reserved for it,
//!   so a full worker never looks like a delivered frame that vanished.
//!   When the worker has no free buffer the frame is *parked* and the
//!   socket is not read until a buffer comes back: the following frames
//!   wait in the kernel's receive buffer instead of being dropped, so a
//!   slow standby worker slows the link down (the sender's window is its
//!   buffer pool) rather than opening a gap that costs a go-back-N resend
//!   of the whole window. A frame parked longer than [`PARK_MAX`] (the
//!   worker is stuck) is dropped after all, and NAK/retransmission repair
//!   it.
//! * **idle** (negotiating, failed, disabled): frames are drained and
//!   counted, nothing is sent but the link handshake.
//!
//! Nothing blocks the workers: every channel is bounded, frames that find
//! no room are counted. The thread blocks in one `ppoll`: active, on the
//! socket (ACK, NAK) and on its wake-up eventfd, which the workers signal
//! after each outbound frame (`tandem_io::wake::WakeFd`: one atomic swap
//! while the thread is busy); standby, on the socket. It waits at most
//! [`WAIT_ACTIVE`] / [`WAIT_STANDBY`] ([`WAIT_BUSY`] while frames are
//! unacknowledged) and never past the Sender's or Receiver's next timer.
//! Every wait returns as soon as its input arrives: the replication lag is
//! the sum of these hand-offs (worker → this thread → the mate's → its
//! worker), not of any timer. Nothing spins: on a box with few cores a
//! replication thread that spins or wakes for nothing takes the CPU a
//! worker needs (a blocking channel select, used before, spun and yielded
//! for a third of this thread's CPU at 200 k creates/s).
//!
//! The state link's carrier is the HA thread's business (one source of
//! truth: it logs "state link down … stale"); it tells this thread through
//! [`ReplicationLink::set_stale`]. While stale the replicated state is not
//! `ready`; when the link is restored the standby resynchronises (bulk
//! sync of every stream).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver as ChanRx;
use serde::{Deserialize, Serialize};
use tandem_io::l2sock::{wait_fds, wait_readable, L2Socket};
use tandem_io::wake::WakeFd;
use tandem_link::wire::DATA_HEADER_LEN;
use tandem_link::{LinkKind, Protection, Received, Security};
use tandem_sync::wire::{Frame, FrameType, HEADER_LEN};
use tandem_sync::{
    BulkPhase, Delivery, Receiver, ReceiverConfig, Sender, SenderConfig, SenderEvent, SyncBuf,
};

use crate::link_io::{LinkIo, LinkIoError, OsNonces};

/// The state link's EtherType (the failover link uses 0x88B5).
pub const ETHERTYPE: u16 = 0x88B6;

/// Longest wait while active and idle: the outbound channels wake the
/// thread at once; this bounds how late an ACK is read.
pub const WAIT_ACTIVE: Duration = Duration::from_millis(1);
/// Longest wait while standby: the socket wakes the thread at once.
pub const WAIT_STANDBY: Duration = Duration::from_millis(1);
/// Longest wait while active with frames unacknowledged: how late a NAK
/// (a lost frame) is read when no worker frame wakes the thread first.
pub const WAIT_BUSY: Duration = Duration::from_micros(500);
/// Shortest timed wait: a timer due now that produced nothing must not
/// turn the loop into a spin.
const WAIT_MIN: Duration = Duration::from_micros(50);

/// Longest a frame waits for a worker buffer before it is dropped (and
/// repaired by NAK and retransmission): beyond it the worker is stuck,
/// and the link must keep reading (handshakes, other streams).
pub const PARK_MAX: Duration = Duration::from_millis(100);
/// Pause between looks for a worker buffer while a frame is parked (the
/// pool has no wake-up; a spin would take a core from the worker that
/// has to free the buffer).
const PARK_POLL: Duration = Duration::from_micros(20);

/// Frames read from the socket per iteration.
const RX_BUDGET: usize = 256;
/// Frames taken from one worker's outbound channel per iteration.
const TX_BUDGET: usize = 256;
/// How often the status snapshot for `show failover` is refreshed.
const STATUS_EVERY: Duration = Duration::from_millis(50);

/// Bytes the secure link adds to a state-link frame (header and tag).
pub const LINK_OVERHEAD: usize = DATA_HEADER_LEN + tandem_link::wire::TAG_LEN;

/// The state-link frame size for a state device of `mtu` bytes: the
/// device's MTU less the secure link's header and tag (clamped to the
/// frame format's limits).
pub fn frame_size(mtu: u32) -> usize {
    let mtu = usize::try_from(mtu).unwrap_or(usize::MAX);
    mtu.saturating_sub(LINK_OVERHEAD).clamp(
        tandem_sync::wire::MIN_FRAME_LEN,
        tandem_sync::wire::MAX_FRAME_LEN,
    )
}

/// What the replication thread does; the HA thread decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationRole {
    Idle = 0,
    Active = 1,
    Standby = 2,
}

impl ReplicationRole {
    fn from_u8(v: u8) -> ReplicationRole {
        match v {
            1 => ReplicationRole::Active,
            2 => ReplicationRole::Standby,
            _ => ReplicationRole::Idle,
        }
    }

    /// The role for a failover state: the active unit sends; every
    /// standby-like state (standby ready, failed, pseudo-standby) receives,
    /// so a failed standby that is reset, or a pseudo-standby whose
    /// failover is enabled again, already holds the state; negotiation and
    /// disabled (no mate) do neither.
    pub fn for_state(s: tandem_ha::State) -> ReplicationRole {
        match s {
            tandem_ha::State::Active => ReplicationRole::Active,
            s if s.is_standby() => ReplicationRole::Standby,
            _ => ReplicationRole::Idle,
        }
    }
}

/// The data path's side of one stream (= worker): its finished frames,
/// its buffer pool and its inbound channel.
pub trait StreamPort: Send {
    /// Finished frames of this worker (data, BULK_BEGIN, BULK_END), epoch
    /// and sequence number 0.
    fn outbound(&self) -> &ChanRx<SyncBuf>;
    /// A free buffer of this worker, or `None` when all are in use.
    fn get(&self) -> Option<SyncBuf>;
    /// Give a buffer back to this worker.
    fn put(&self, buf: SyncBuf);
    /// Hand an in-order frame to the worker (and wake it); `Err` gives the
    /// buffer back when the channel is full.
    fn deliver(&self, buf: SyncBuf) -> Result<(), SyncBuf>;
}

/// What the replication thread asks of the data path's tables.
pub trait StateTables: Send + Sync {
    /// Start a bulk sync of `stream`: the worker emits BULK_BEGIN, its
    /// entries in bulk frames, BULK_END through its outbound channel.
    fn start_bulk(&self, stream: u16);
    /// Per stream, whether it lost records to a full pool or channel since
    /// the last call (clears the flags). Called every [`OVERFLOW_EVERY`].
    fn take_overflowed(&self) -> Vec<bool>;
}

/// How often the workers' overflow flags are read.
pub const OVERFLOW_EVERY: Duration = Duration::from_millis(10);

impl StreamPort for tandem_dataplane::StreamEndpoint {
    fn outbound(&self) -> &ChanRx<SyncBuf> {
        &self.outbound
    }
    fn get(&self) -> Option<SyncBuf> {
        self.pool.get()
    }
    fn put(&self, buf: SyncBuf) {
        self.pool.put(buf);
    }
    fn deliver(&self, buf: SyncBuf) -> Result<(), SyncBuf> {
        self.inbound.try_send(buf).map_err(|e| e.into_inner())
    }
}

impl StateTables for tandem_dataplane::Dataplane {
    fn start_bulk(&self, stream: u16) {
        if let Err(e) = tandem_dataplane::Dataplane::start_bulk(self, Some(usize::from(stream))) {
            tracing::warn!("replication: bulk sync of stream {stream}: {e}");
        }
    }
    fn take_overflowed(&self) -> Vec<bool> {
        self.sync_overflowed()
    }
}

/// Counters of the replication thread (`show failover`, scraped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationCounters {
    /// Frames sealed and handed to the socket (new and retransmitted data,
    /// control frames).
    pub tx_frames: u64,
    /// Frames that could not be sealed: no session with the mate yet.
    pub tx_no_session: u64,
    /// Socket send failures (full socket buffer, link down).
    pub tx_errors: u64,
    /// Worker frames drained while not active.
    pub tx_not_active: u64,
    /// Worker buffers that were not frames the Sender accepts.
    pub tx_invalid: u64,
    /// Opened frames from the mate.
    pub rx_frames: u64,
    /// Opened frames dropped while idle (neither active nor standby).
    pub rx_not_standby: u64,
    /// Frames dropped because the worker had no buffer for them (none
    /// free for [`PARK_MAX`], or too small; retransmitted later by the
    /// mate).
    pub rx_no_buffer: u64,
    /// Frames that waited for a worker buffer (socket reads paused
    /// meanwhile: flow control, nothing lost).
    #[serde(default)]
    pub rx_parked: u64,
    /// In-order frames handed to the workers.
    pub rx_delivered: u64,
    /// Bulk syncs started because a worker overflowed.
    pub overflow_bulks: u64,
    /// Bulk syncs started at the standby's request (or after an eviction).
    pub requested_bulks: u64,
    /// Times the replicated state was marked stale.
    pub stale_events: u64,
    /// Resynchronisations (state link restored, new role).
    pub resyncs: u64,
    /// Frames refused by the secure link (wrong key, replay, …).
    pub rejected: u64,
}

/// One stream in `show failover`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub stream: u16,
    /// Sending side (active).
    pub frames_sent: Option<u32>,
    pub lag_frames: Option<u32>,
    /// Receiving side (standby): synchronised, next expected frame, gap open.
    pub synced: Option<bool>,
    pub expected: Option<u32>,
    pub gap: Option<bool>,
    /// `idle`, `requested`, `running`, `done`.
    pub bulk_phase: String,
    pub bulk_done: u64,
    pub bulk_total: u64,
    pub bulk_percent: u8,
}

/// The replication block of `show failover` ("Stateful Failover Logical
/// Update Statistics").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    pub role: Option<ReplicationRole>,
    /// Device and EtherType the state link runs on.
    pub device: String,
    pub session: bool,
    pub protection: String,
    pub stale: bool,
    /// Every stream bulk-synced since the mate's current epoch (standby).
    pub ready: bool,
    /// Active: the mate acknowledged a complete bulk sync of every stream.
    #[serde(default)]
    pub mate_ready: bool,
    /// Records the workers applied to their tables (standby; the data
    /// path's `sync_records_applied`, filled in by the HA thread).
    #[serde(default)]
    pub records_applied: u64,
    pub streams: Vec<StreamStatus>,
    pub counters: ReplicationCounters,
    /// `tandem_sync::SenderCounters` (active) as JSON.
    pub sender: Option<serde_json::Value>,
    /// `tandem_sync::ReceiverCounters` (standby) as JSON.
    pub receiver: Option<serde_json::Value>,
    /// Frames sent and not yet acknowledged, all streams.
    pub lag_frames: u64,
    /// Bulk sync summed over the streams (standby: received; active: sent).
    pub bulk_phase: String,
    pub bulk_done: u64,
    pub bulk_total: u64,
    pub bulk_percent: u8,
}

/// The HA thread's (and the operator view's) handle on the replication
/// thread: cheap to clone, never blocks.
#[derive(Clone)]
pub struct ReplicationLink {
    role: Arc<AtomicU8>,
    stale: Arc<AtomicBool>,
    resync: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
    mate_ready: Arc<AtomicBool>,
    status: Arc<Mutex<ReplicationStatus>>,
    /// Fault injection: this many upcoming first transmissions of data
    /// frames are not sent (the Sender still holds them), as if the state
    /// link lost them. PLATFORM.md: this kernel has no netem.
    drop_tx: Arc<AtomicU64>,
    /// How long a received frame may wait for a worker buffer, ns
    /// ([`PARK_MAX`] unless a test lengthens it).
    park_max_ns: Arc<AtomicU64>,
}

impl Default for ReplicationLink {
    fn default() -> Self {
        ReplicationLink {
            role: Arc::new(AtomicU8::new(ReplicationRole::Idle as u8)),
            stale: Arc::new(AtomicBool::new(false)),
            resync: Arc::new(AtomicU64::new(0)),
            ready: Arc::new(AtomicBool::new(false)),
            mate_ready: Arc::new(AtomicBool::new(false)),
            status: Arc::new(Mutex::new(ReplicationStatus::default())),
            drop_tx: Arc::new(AtomicU64::new(0)),
            park_max_ns: Arc::new(AtomicU64::new(PARK_MAX.as_nanos() as u64)),
        }
    }
}

impl ReplicationLink {
    pub fn set_role(&self, role: ReplicationRole) {
        self.role.store(role as u8, Ordering::Release);
    }

    pub fn role(&self) -> ReplicationRole {
        ReplicationRole::from_u8(self.role.load(Ordering::Acquire))
    }

    /// The HA thread's verdict on the state link (carrier, session of the
    /// shared failover link). Restoring it resynchronises the standby.
    pub fn set_stale(&self, stale: bool) {
        let was = self.stale.swap(stale, Ordering::AcqRel);
        if was && !stale {
            self.resync.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Fault injection for tests: lose the first transmission of the next
    /// `n` data frames (retransmissions are sent).
    pub fn inject_tx_loss(&self, n: u64) {
        self.drop_tx.store(n, Ordering::Release);
    }

    /// For tests: how long a received frame may wait for a worker buffer
    /// before it is dropped (default [`PARK_MAX`]). A test whose thread may
    /// be descheduled longer than that under load sets more, so a drop
    /// cannot come from its own scheduling.
    pub fn set_park_max(&self, d: Duration) {
        self.park_max_ns.store(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Ask for a bulk sync of every stream (standby).
    pub fn resync(&self) {
        self.resync.fetch_add(1, Ordering::AcqRel);
    }

    /// Standby: the whole state is here (every stream bulk-synced since the
    /// active unit's current epoch, nothing stale). Preemption and manual
    /// failover to this unit wait for it.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Active: the mate holds the whole state — every stream's bulk sync of
    /// this sender epoch ended and the mate acknowledged its BULK_END, no
    /// new bulk sync asked for, the session up and the link not stale.
    /// `no failover active` waits for it.
    pub fn mate_ready(&self) -> bool {
        self.mate_ready.load(Ordering::Acquire)
    }

    /// The latest status snapshot (at most `STATUS_EVERY`, 50 ms, old).
    pub fn status(&self) -> ReplicationStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What `ready` is waiting for, for the log ("bulk sync 45 % (450 of
    /// 1 000)").
    pub fn missing(&self) -> String {
        let s = self.status();
        if s.role == Some(ReplicationRole::Active) && s.session && !s.stale {
            return format!(
                "the mate's bulk sync {} {} % ({} of {} sent), {} frames unacknowledged",
                s.bulk_phase, s.bulk_percent, s.bulk_done, s.bulk_total, s.lag_frames
            );
        }
        if s.stale {
            "the state link is down (replicated state stale)".into()
        } else if !s.session {
            "no session with the mate on the state link".into()
        } else {
            format!(
                "bulk sync {} {} % ({} of {})",
                s.bulk_phase, s.bulk_percent, s.bulk_done, s.bulk_total
            )
        }
    }
}

/// Why the replication thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("state link: {0}")]
    Link(#[from] LinkIoError),
    #[error("state link: {0}")]
    Config(String),
    #[error("state link: starting the replication thread: {0}")]
    Thread(io::Error),
}

/// The running replication thread.
pub struct ReplicationHandle {
    link: ReplicationLink,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ReplicationHandle {
    /// Open the state link on `device` and start the thread (pinned to
    /// `core` when given). `ports` are the workers' streams in order.
    pub fn start(
        device: &str,
        security: &Security,
        ports: Vec<Box<dyn StreamPort>>,
        wake: Arc<WakeFd>,
        tables: Arc<dyn StateTables>,
        core: Option<usize>,
    ) -> Result<ReplicationHandle, ReplicationError> {
        let sock = L2Socket::open(device, ETHERTYPE).map_err(LinkIoError::from)?;
        ReplicationHandle::with_socket(sock, security, ports, wake, tables, core)
    }

    /// The same on a socket the caller opened (tests: inside a namespace).
    pub fn with_socket(
        sock: L2Socket,
        security: &Security,
        ports: Vec<Box<dyn StreamPort>>,
        wake: Arc<WakeFd>,
        tables: Arc<dyn StateTables>,
        core: Option<usize>,
    ) -> Result<ReplicationHandle, ReplicationError> {
        let epoch = Instant::now();
        let io = LinkIo::with_socket(LinkKind::State, sock, security, Duration::ZERO)?;
        let streams = u16::try_from(ports.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ReplicationError::Config(format!("{} worker streams", ports.len())))?;
        let receiver = Receiver::new(ReceiverConfig::new(streams))
            .map_err(|e| ReplicationError::Config(e.to_string()))?;
        // The buffer a frame is sealed in: the largest worker buffer plus
        // the link's framing.
        let buf_len = ports
            .iter()
            .filter_map(|p| {
                p.get().map(|b| {
                    let c = b.capacity();
                    p.put(b);
                    c
                })
            })
            .max()
            .unwrap_or(tandem_sync::wire::MAX_FRAME_LEN)
            + LINK_OVERHEAD
            + 64;
        let link = ReplicationLink::default();
        let stop = Arc::new(AtomicBool::new(false));
        let nonces =
            OsNonces::open().map_err(|e| ReplicationError::Config(format!("/dev/urandom: {e}")))?;
        let mut r = Repl {
            io,
            ports,
            wake,
            sock_idle: false,
            tables,
            sender: None,
            receiver,
            streams,
            role: ReplicationRole::Idle,
            resync_seen: 0,
            link: link.clone(),
            epoch,
            nonces,
            tx: vec![0u8; buf_len.max(tandem_link::wire::HELLO_LEN)],
            rx: vec![0u8; buf_len.max(2048)],
            parked: None,
            counters: ReplicationCounters::default(),
            last_status: None,
            last_overflow_check: None,
            bulk_end_seq: vec![None; usize::from(streams)],
        };
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("replication".into())
            .spawn(move || {
                if let Some(c) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                        tracing::warn!(core = c, "could not pin the replication thread");
                    }
                }
                r.run(&stop2);
            })
            .map_err(ReplicationError::Thread)?;
        Ok(ReplicationHandle {
            link,
            stop,
            thread: Some(thread),
        })
    }

    /// The handle the HA thread and the operator view use.
    pub fn link(&self) -> ReplicationLink {
        self.link.clone()
    }

    /// Runs the thread at `SCHED_FIFO` `priority` (0: time-sharing), see
    /// [`tandem_io::sched`]; it blocks between frames, so it never hogs a core.
    pub fn set_realtime(&self, priority: u8) -> io::Result<()> {
        match &self.thread {
            Some(t) => tandem_io::sched::set_realtime(t, priority),
            None => Ok(()),
        }
    }

    /// Stop and join the thread.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ReplicationHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Repl {
    io: LinkIo,
    ports: Vec<Box<dyn StreamPort>>,
    /// Signalled by the workers after each outbound frame.
    wake: Arc<WakeFd>,
    /// The last wait ended with the socket not readable.
    sock_idle: bool,
    tables: Arc<dyn StateTables>,
    /// Active: the sender of the current epoch.
    sender: Option<Sender>,
    receiver: Receiver,
    streams: u16,
    role: ReplicationRole,
    resync_seen: u64,
    link: ReplicationLink,
    epoch: Instant,
    nonces: OsNonces,
    /// Sealing buffer (header + payload + tag).
    tx: Vec<u8>,
    /// Receive buffer.
    rx: Vec<u8>,
    /// Standby: an opened frame in `rx[range]` waiting for a worker
    /// buffer since the instant given; the socket is not read meanwhile.
    parked: Option<(std::ops::Range<usize>, Duration)>,
    counters: ReplicationCounters,
    last_status: Option<Duration>,
    last_overflow_check: Option<Duration>,
    /// Active: per stream, the sequence number of the last BULK_END sent in
    /// this sender epoch (the mate is ready once it acknowledged them all).
    bulk_end_seq: Vec<Option<u32>>,
}

/// The stream a frame's header names (bytes 8..10), if it has a header.
fn frame_stream(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= HEADER_LEN).then(|| u16::from_be_bytes([bytes[8], bytes[9]]))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Repl {
    fn run(&mut self, stop: &AtomicBool) {
        tracing::info!(
            device = self.io.sock.ifname(),
            streams = self.streams,
            "replication started (state link, EtherType 0x88B6)"
        );
        while !stop.load(Ordering::Relaxed) {
            let now = self.epoch.elapsed();
            self.follow_role(now);
            self.io.handle_timeout(now);
            self.receive(now);
            self.transmit(now);
            self.io
                .drain(now, &mut self.tx, &mut self.counters.rejected);
            self.publish(now);
            // Wait for input, or until the next protocol timer.
            let now_ns = nanos(self.epoch.elapsed());
            let until = |deadline: Option<u64>, cap: Duration| {
                deadline.map_or(cap, |d| {
                    Duration::from_nanos(d.saturating_sub(now_ns)).clamp(WAIT_MIN, cap)
                })
            };
            match self.role {
                ReplicationRole::Active => {
                    let busy = self.sender.as_ref().is_some_and(|s| s.lag_frames() > 0);
                    let cap = if busy { WAIT_BUSY } else { WAIT_ACTIVE };
                    let wait = until(self.sender.as_ref().and_then(Sender::poll_timeout), cap);
                    // Park, then look: a frame queued after the look
                    // signals the eventfd, so it is never slept through.
                    self.wake.park();
                    if self.ports.iter().all(|p| p.outbound().is_empty()) {
                        match wait_fds(&[self.io.sock.fd(), self.wake.fd()], wait) {
                            Ok(ready) => self.sock_idle = ready & 1 == 0,
                            Err(e) => {
                                tracing::warn!("state link: poll: {e}");
                                std::thread::sleep(WAIT_MIN);
                            }
                        }
                    }
                    self.wake.unpark();
                }
                _ if self.parked.is_some() => {
                    // The socket is readable but a frame waits for a
                    // worker buffer, which has no wake-up: look again soon.
                    std::thread::sleep(PARK_POLL);
                }
                _ => {
                    let wait = until(self.receiver.poll_timeout(), WAIT_STANDBY);
                    match wait_readable(&[&self.io.sock], wait) {
                        Ok(ready) => self.sock_idle = ready == 0,
                        Err(e) => {
                            tracing::warn!("state link: poll: {e}");
                            std::thread::sleep(WAIT_STANDBY);
                        }
                    }
                    // Drain the workers' frames while not active (counted).
                }
            }
        }
        tracing::info!("replication stopped");
    }

    /// Apply a role change or resync request from the HA thread.
    fn follow_role(&mut self, now: Duration) {
        let role = self.link.role();
        if role != self.role {
            tracing::info!(from = ?self.role, to = ?role, "replication: role changed");
            self.role = role;
            self.sender = None;
            self.bulk_end_seq.iter_mut().for_each(|s| *s = None);
            match role {
                ReplicationRole::Active => {
                    let epoch = self.nonces.epoch();
                    let mut cfg = SenderConfig::new(epoch, self.streams);
                    // Leave the workers buffers to encode into while the ring
                    // holds unacknowledged frames.
                    let per_stream = self
                        .ports
                        .iter()
                        .map(|p| p.outbound().capacity().unwrap_or(1024))
                        .min()
                        .unwrap_or(1024);
                    cfg.ring_frames = (per_stream * 3 / 4).max(1);
                    match Sender::new(cfg) {
                        Ok(s) => self.sender = Some(s),
                        Err(e) => tracing::error!("replication: {e}"),
                    }
                }
                ReplicationRole::Standby => {
                    self.receiver.resync();
                    self.counters.resyncs += 1;
                }
                ReplicationRole::Idle => {}
            }
        }
        let r = self.link.resync.load(Ordering::Acquire);
        if r != self.resync_seen {
            self.resync_seen = r;
            if self.role == ReplicationRole::Standby {
                tracing::info!("replication: resynchronising (bulk sync of every stream)");
                self.receiver.resync();
                self.counters.resyncs += 1;
            }
        }
        let _ = now;
    }

    /// Frames from the mate.
    fn receive(&mut self, now: Duration) {
        let now_ns = nanos(now);
        if self.role != ReplicationRole::Standby {
            self.parked = None;
        }
        if let Some((range, since)) = self.parked.take() {
            if !self.offer(now_ns, range.clone()) {
                let park_max = Duration::from_nanos(self.link.park_max_ns.load(Ordering::Relaxed));
                if now.saturating_sub(since) < park_max {
                    self.parked = Some((range, since));
                } else {
                    // The worker is stuck: give up on this frame (its gap
                    // is NAKed and repaired) and keep the link read.
                    self.counters.rx_no_buffer += 1;
                }
            }
        }
        // While a frame is parked the socket is not read: later frames
        // wait in the kernel's receive buffer, in order. Nor when the wait
        // that just ended saw it empty: a recv would only say so again (one
        // syscall per frame handed over; a frame arriving since makes the
        // next wait return at once).
        let idle = std::mem::take(&mut self.sock_idle);
        let budget = if self.parked.is_some() || idle {
            0
        } else {
            RX_BUDGET
        };
        for _ in 0..budget {
            let Some(r) = self.io.receive(now, &mut self.rx) else {
                break;
            };
            let Received::Data(opened) = r else {
                continue;
            };
            self.counters.rx_frames += 1;
            match self.role {
                ReplicationRole::Active => {
                    if let Some(s) = self.sender.as_mut() {
                        let _ = s.handle_control(now_ns, &self.rx[opened.payload]);
                    }
                }
                ReplicationRole::Standby => {
                    let range = opened.payload;
                    if !self.offer(now_ns, range.clone()) {
                        self.counters.rx_parked += 1;
                        self.parked = Some((range, now));
                        break;
                    }
                }
                ReplicationRole::Idle => self.counters.rx_not_standby += 1,
            }
        }
        if self.role == ReplicationRole::Standby {
            while let Some(n) = self
                .receiver
                .poll_control(now_ns, &mut self.tx[DATA_HEADER_LEN..])
            {
                self.seal_and_send(now, n);
            }
        }
    }

    /// Standby: copies the opened frame in `rx[range]` into a buffer of its
    /// worker and offers it to the Receiver, delivering it to the worker
    /// when in order. The buffer is reserved first, so the Receiver never
    /// counts a frame as delivered that the worker cannot take. `false`:
    /// the worker has no free buffer; nothing was consumed, offer it again.
    fn offer(&mut self, now_ns: u64, range: std::ops::Range<usize>) -> bool {
        let Some(payload) = self.rx.get(range) else {
            return true;
        };
        let port = frame_stream(payload).and_then(|s| self.ports.get(usize::from(s)));
        let Some(port) = port else {
            // No such stream: the Receiver counts it as invalid.
            let _ = self.receiver.handle_frame(now_ns, payload);
            return true;
        };
        let Some(mut buf) = port.get() else {
            return false;
        };
        if buf.capacity() < payload.len() {
            // Waiting would not help: drop it (counted; the mate's frame
            // size and ours disagree).
            port.put(buf);
            self.counters.rx_no_buffer += 1;
            return true;
        }
        buf.clear();
        buf.spare_mut()[..payload.len()].copy_from_slice(payload);
        buf.set_len(payload.len());
        let deliver = matches!(
            self.receiver.handle_frame(now_ns, buf.as_bytes()),
            Delivery::Records { .. } | Delivery::BulkBegin { .. } | Delivery::BulkEnd { .. }
        );
        if deliver {
            match port.deliver(buf) {
                Ok(()) => self.counters.rx_delivered += 1,
                Err(b) => {
                    // Unreachable while the channel holds as many frames
                    // as the pool has buffers.
                    port.put(b);
                    self.counters.rx_no_buffer += 1;
                }
            }
        } else {
            port.put(buf);
        }
        true
    }

    /// Seal `tx[DATA_HEADER_LEN..][..n]` and send it.
    fn seal_and_send(&mut self, now: Duration, n: usize) {
        match self.io.link.seal(now, n, &mut self.tx) {
            Ok(len) => match self.io.send(&self.tx[..len]) {
                Ok(()) => self.counters.tx_frames += 1,
                Err(_) => self.counters.tx_errors += 1,
            },
            Err(_) => self.counters.tx_no_session += 1,
        }
    }

    /// Frames of the workers, retransmissions, bulk syncs.
    fn transmit(&mut self, now: Duration) {
        let now_ns = nanos(now);
        for (i, port) in self.ports.iter().enumerate() {
            for _ in 0..TX_BUDGET {
                let Ok(buf) = port.outbound().try_recv() else {
                    break;
                };
                let Some(sender) = self
                    .sender
                    .as_mut()
                    .filter(|_| self.role == ReplicationRole::Active)
                else {
                    port.put(buf);
                    self.counters.tx_not_active += 1;
                    continue;
                };
                let stream = i as u16;
                let ty = buf.as_bytes().get(3).copied();
                let sent = if ty == Some(FrameType::Data as u8) {
                    sender.send(now_ns, buf)
                } else if ty == Some(FrameType::BulkBegin as u8) {
                    let total = match Frame::parse(buf.as_bytes()) {
                        Ok(Frame::BulkBegin { total, .. }) => u64::from(total),
                        _ => 0,
                    };
                    sender.bulk_begin(now_ns, stream, total, buf)
                } else if ty == Some(FrameType::BulkEnd as u8) {
                    // BULK_END takes the stream's next sequence number.
                    let seq = sender.stream_status(stream).map(|t| t.next_seq);
                    let r = sender.bulk_end(now_ns, stream, buf);
                    if r.is_ok() {
                        if let Some(slot) = self.bulk_end_seq.get_mut(i) {
                            *slot = seq;
                        }
                    }
                    r
                } else {
                    Err((tandem_sync::SendError::NotADataFrame, buf))
                };
                match sent {
                    Ok(bytes) => {
                        let n = bytes.len();
                        let lose = ty == Some(FrameType::Data as u8)
                            && self
                                .link
                                .drop_tx
                                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                                    v.checked_sub(1)
                                })
                                .is_ok();
                        if lose {
                            continue;
                        }
                        match self.tx.get_mut(DATA_HEADER_LEN..DATA_HEADER_LEN + n) {
                            Some(dst) => {
                                dst.copy_from_slice(bytes);
                                match self.io.link.seal(now, n, &mut self.tx) {
                                    Ok(len) => match self.io.send(&self.tx[..len]) {
                                        Ok(()) => self.counters.tx_frames += 1,
                                        Err(_) => self.counters.tx_errors += 1,
                                    },
                                    Err(_) => self.counters.tx_no_session += 1,
                                }
                            }
                            None => self.counters.tx_invalid += 1,
                        }
                    }
                    Err((e, b)) => {
                        tracing::debug!("replication: worker {i}: {e}");
                        port.put(b);
                        self.counters.tx_invalid += 1;
                    }
                }
            }
        }
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        while let Some(bytes) = sender.poll_retransmit(now_ns) {
            let n = bytes.len();
            if let Some(dst) = self.tx.get_mut(DATA_HEADER_LEN..DATA_HEADER_LEN + n) {
                dst.copy_from_slice(bytes);
                match self.io.link.seal(now, n, &mut self.tx) {
                    Ok(len) => match self.io.send(&self.tx[..len]) {
                        Ok(()) => self.counters.tx_frames += 1,
                        Err(_) => self.counters.tx_errors += 1,
                    },
                    Err(_) => {
                        self.counters.tx_no_session += 1;
                        break;
                    }
                }
            }
        }
        while let Some(SenderEvent::BulkNeeded { stream, reason }) = sender.poll_event() {
            tracing::info!(
                stream,
                ?reason,
                "replication: bulk sync of stream {stream} requested by the mate"
            );
            self.counters.requested_bulks += 1;
            self.tables.start_bulk(stream);
        }
        // Acknowledged buffers back to their worker's pool (the header
        // still names the stream).
        while let Some(b) = sender.take_free() {
            match frame_stream(b.as_bytes()).and_then(|s| self.ports.get(usize::from(s))) {
                Some(p) => p.put(b),
                None => {
                    if let Some(p) = self.ports.first() {
                        p.put(b);
                    }
                }
            }
        }
        let due = self
            .last_overflow_check
            .is_none_or(|t| now.saturating_sub(t) >= OVERFLOW_EVERY);
        if !due {
            return;
        }
        self.last_overflow_check = Some(now);
        for (s, over) in self.tables.take_overflowed().into_iter().enumerate() {
            let s = u16::try_from(s).unwrap_or(u16::MAX);
            if over {
                tracing::warn!(
                    stream = s,
                    "replication: worker {s} lost records (sync overflow); bulk sync of its stream"
                );
                self.counters.overflow_bulks += 1;
                self.tables.start_bulk(s);
            }
        }
    }

    /// Refresh `ready` and, every [`STATUS_EVERY`], the status snapshot.
    fn publish(&mut self, now: Duration) {
        let stale = self.link.stale.load(Ordering::Acquire);
        let ready = self.role == ReplicationRole::Standby
            && !stale
            && self.io.link.is_established()
            && self.receiver.ready();
        self.link.ready.store(ready, Ordering::Release);
        let mate_ready = self.role == ReplicationRole::Active
            && !stale
            && self.io.link.is_established()
            && self.sender.as_ref().is_some_and(|tx| {
                (0..self.streams).all(|s| {
                    let end = self.bulk_end_seq.get(usize::from(s)).copied().flatten();
                    match (tx.stream_status(s), end) {
                        // Acked up to `acked` (exclusive): BULK_END is in.
                        (Some(t), Some(e)) => {
                            t.bulk.phase == BulkPhase::Done && (t.acked.wrapping_sub(e) as i32) > 0
                        }
                        _ => false,
                    }
                })
            });
        self.link.mate_ready.store(mate_ready, Ordering::Release);
        if self
            .last_status
            .is_some_and(|t| now.saturating_sub(t) < STATUS_EVERY)
        {
            return;
        }
        self.last_status = Some(now);
        let phase = |p: BulkPhase| {
            match p {
                BulkPhase::Idle => "idle",
                BulkPhase::Requested => "requested",
                BulkPhase::Running => "running",
                BulkPhase::Done => "done",
            }
            .to_string()
        };
        let mut streams = Vec::with_capacity(usize::from(self.streams));
        let mut total = tandem_sync::BulkProgress::default();
        for s in 0..self.streams {
            let mut st = StreamStatus {
                stream: s,
                ..StreamStatus::default()
            };
            let bulk = match (self.role, &self.sender) {
                (ReplicationRole::Active, Some(tx)) => tx.stream_status(s).map(|t| {
                    st.frames_sent = Some(t.next_seq);
                    st.lag_frames = Some(t.lag_frames);
                    t.bulk
                }),
                _ => self.receiver.stream_status(s).map(|r| {
                    st.synced = Some(r.synced);
                    st.expected = Some(r.expected);
                    st.gap = Some(r.gap);
                    r.bulk
                }),
            }
            .unwrap_or_default();
            st.bulk_phase = phase(bulk.phase);
            st.bulk_done = bulk.done;
            st.bulk_total = bulk.total;
            st.bulk_percent = bulk.percent();
            total.total += bulk.total;
            total.done += bulk.done;
            total.phase = total.phase.max_by_progress(bulk.phase);
            streams.push(st);
        }
        if self.role == ReplicationRole::Standby {
            total = self.receiver.bulk_progress();
        }
        let status = ReplicationStatus {
            role: Some(self.role),
            device: format!("{} (EtherType 0x88B6)", self.io.sock.ifname()),
            session: self.io.link.is_established(),
            protection: match self.io.link.protection() {
                Protection::Aes256Gcm => "encrypted (AES-256-GCM)".into(),
                Protection::Cleartext => "CLEAR TEXT (no failover key)".into(),
            },
            stale,
            ready,
            mate_ready,
            records_applied: 0,
            streams,
            counters: self.counters,
            sender: self
                .sender
                .as_ref()
                .and_then(|s| serde_json::to_value(s.counters()).ok()),
            receiver: (self.role == ReplicationRole::Standby)
                .then(|| serde_json::to_value(self.receiver.counters()).ok())
                .flatten(),
            lag_frames: self.sender.as_ref().map_or(0, Sender::lag_frames),
            bulk_phase: phase(total.phase),
            bulk_done: total.done,
            bulk_total: total.total,
            bulk_percent: total.percent(),
        };
        if let Ok(mut s) = self.link.status.try_lock() {
            *s = status;
        }
    }
}

/// Ordering of bulk phases for a summary: running beats requested beats
/// done beats idle.
trait PhaseOrder {
    fn max_by_progress(self, other: BulkPhase) -> BulkPhase;
}

impl PhaseOrder for BulkPhase {
    fn max_by_progress(self, other: BulkPhase) -> BulkPhase {
        let rank = |p: BulkPhase| match p {
            BulkPhase::Idle => 0,
            BulkPhase::Done => 1,
            BulkPhase::Requested => 2,
            BulkPhase::Running => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, Receiver as Rx, Sender as Tx};
    use tandem_link::FailoverKey;
    use tandem_netns::{have_privileges, veth, Netns};
    use tandem_sync::{FrameEncoder, Put};

    const FRAME: usize = 1400;
    const BUFFERS: usize = 64;

    /// A worker's side of one stream, played by the test.
    struct FakePort {
        outbound: ChanRx<SyncBuf>,
        pool: (Tx<SyncBuf>, Rx<SyncBuf>),
        inbound: Tx<SyncBuf>,
    }

    impl StreamPort for FakePort {
        fn outbound(&self) -> &ChanRx<SyncBuf> {
            &self.outbound
        }
        fn get(&self) -> Option<SyncBuf> {
            self.pool.1.try_recv().ok()
        }
        fn put(&self, mut buf: SyncBuf) {
            buf.clear();
            let _ = self.pool.0.try_send(buf);
        }
        fn deliver(&self, buf: SyncBuf) -> Result<(), SyncBuf> {
            self.inbound.try_send(buf).map_err(|e| e.into_inner())
        }
    }

    /// The test's ends: push finished frames, read delivered ones, take
    /// buffers.
    struct Worker {
        out: Tx<SyncBuf>,
        /// The replication thread's wake-up, as the data plane's workers signal it.
        wake: Arc<WakeFd>,
        delivered: Rx<SyncBuf>,
        pool: (Tx<SyncBuf>, Rx<SyncBuf>),
    }

    impl Worker {
        fn send(&self, b: SyncBuf) {
            self.out.send(b).unwrap();
            self.wake.wake();
        }
    }

    fn port(buffers: usize) -> (Box<dyn StreamPort>, Worker) {
        let (out_tx, out_rx) = bounded(buffers);
        let (in_tx, in_rx) = bounded(buffers);
        let pool = bounded(buffers);
        for _ in 0..buffers {
            pool.0.send(SyncBuf::with_capacity(FRAME)).unwrap();
        }
        (
            Box::new(FakePort {
                outbound: out_rx,
                pool: pool.clone(),
                inbound: in_tx,
            }),
            Worker {
                out: out_tx,
                wake: Arc::new(WakeFd::new().unwrap()),
                delivered: in_rx,
                pool,
            },
        )
    }

    #[derive(Default)]
    struct FakeTables {
        bulks: Mutex<Vec<u16>>,
    }

    impl StateTables for FakeTables {
        fn start_bulk(&self, stream: u16) {
            self.bulks.lock().unwrap().push(stream);
        }
        fn take_overflowed(&self) -> Vec<bool> {
            vec![false]
        }
    }

    fn key(k: &str) -> Security {
        Security::from_config(Some(FailoverKey::parse(k).unwrap()), |_| {})
    }

    const KEY: &str = "hex 00112233445566778899aabbccddeeff";

    /// Two units' replication threads on a veth pair in two namespaces.
    struct Pair {
        a: ReplicationHandle,
        b: ReplicationHandle,
        wa: Worker,
        wb: Worker,
        ta: Arc<FakeTables>,
        _ns: (Netns, Netns),
    }

    fn pair(test: &str, key_b: &str) -> Option<Pair> {
        pair_with(test, key_b, BUFFERS)
    }

    /// A pair whose standby worker has `standby_buffers` frame buffers.
    fn pair_with(test: &str, key_b: &str, standby_buffers: usize) -> Option<Pair> {
        if !have_privileges(test) {
            return None;
        }
        let na = Netns::new("repa").unwrap();
        let nb = Netns::new("repb").unwrap();
        veth(&na, "st0", &nb, "st0").unwrap();
        let open = |ns: &Netns| {
            let _g = ns.enter().unwrap();
            L2Socket::open("st0", ETHERTYPE).unwrap()
        };
        let (sa, sb) = (open(&na), open(&nb));
        let (pa, wa) = port(BUFFERS);
        let (pb, wb) = port(standby_buffers);
        let ta = Arc::new(FakeTables::default());
        let tb = Arc::new(FakeTables::default());
        let (wka, wkb) = (wa.wake.clone(), wb.wake.clone());
        let a =
            ReplicationHandle::with_socket(sa, &key(KEY), vec![pa], wka, ta.clone(), None).unwrap();
        let b = ReplicationHandle::with_socket(sb, &key(key_b), vec![pb], wkb, tb, None).unwrap();
        a.link().set_role(ReplicationRole::Active);
        b.link().set_role(ReplicationRole::Standby);
        Some(Pair {
            a,
            b,
            wa,
            wb,
            ta,
            _ns: (na, nb),
        })
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn control(w: &Worker, ty: FrameType, arg: u32) {
        let mut b = w.pool.1.recv().unwrap();
        b.clear();
        let n = tandem_sync::wire::emit_sequenced(ty, 0, 0, 0, arg, b.spare_mut()).unwrap();
        b.set_len(n);
        w.send(b);
    }

    /// One data frame with records for `keys`.
    fn data(w: &Worker, enc: &mut FrameEncoder, keys: std::ops::Range<u64>) {
        let mut b = w.pool.1.recv().unwrap();
        b.clear();
        assert!(enc.begin(b, false).is_none());
        for k in keys {
            assert_eq!(enc.put(0, 1, 1, k, &k.to_be_bytes()), Put::Written);
        }
        w.send(enc.finish().unwrap());
    }

    /// Keys of the records of a delivered frame (`None` for bulk begin/end).
    fn keys_of(b: &SyncBuf) -> Option<Vec<u64>> {
        match Frame::parse(b.as_bytes()).unwrap() {
            Frame::Data { records, .. } => Some(
                records
                    .map(|r| u64::from_be_bytes(r.payload[..8].try_into().unwrap()))
                    .collect(),
            ),
            _ => None,
        }
    }

    #[test]
    fn frames_arrive_in_order_encrypted_with_a_loss_repaired_by_nak() {
        let Some(p) = pair(
            "frames_arrive_in_order_encrypted_with_a_loss_repaired_by_nak",
            KEY,
        ) else {
            return;
        };
        // The standby joins: it asks for a bulk sync, the active unit's
        // tables are asked to run one; the "worker" sends an empty bulk.
        wait_for("a bulk sync request", || {
            !p.ta.bulks.lock().unwrap().is_empty()
        });
        control(&p.wa, FrameType::BulkBegin, 0);
        control(&p.wa, FrameType::BulkEnd, 0);
        wait_for("the standby to be ready", || p.b.link().ready());
        assert!(!p.a.link().ready(), "only a standby is ready");
        let st = p.a.link().status();
        assert!(st.protection.starts_with("encrypted"), "{st:?}");

        // 20 frames of 3 records; the 5th frame's first transmission is lost.
        let mut enc = FrameEncoder::new(0, FRAME).unwrap();
        for f in 0..20u64 {
            if f == 4 {
                p.a.link().inject_tx_loss(1);
            }
            data(&p.wa, &mut enc, f * 3..f * 3 + 3);
        }
        let mut got = Vec::new();
        let mut frames = 0;
        wait_for("60 records at the standby", || {
            while let Ok(b) = p.wb.delivered.try_recv() {
                frames += 1;
                if let Some(k) = keys_of(&b) {
                    got.extend(k);
                }
                p.wb.pool.0.send(b).unwrap();
            }
            got.len() >= 60
        });
        assert_eq!(got, (0..60).collect::<Vec<_>>(), "in order, nothing twice");
        assert_eq!(frames, 2 + 20, "bulk begin, bulk end and 20 data frames");
        wait_for("status with the NAK", || {
            let b = p.b.link().status();
            let a = p.a.link().status();
            b.receiver
                .as_ref()
                .is_some_and(|r| r["naks_sent"].as_u64() >= Some(1))
                && a.sender
                    .as_ref()
                    .is_some_and(|s| s["retransmits"].as_u64() >= Some(1))
        });
        // Acknowledged buffers went back to the active worker's pool.
        wait_for("buffers back in the pool", || p.wa.pool.1.len() == BUFFERS);
    }

    /// Flow control: a standby worker with 4 buffers that frees them only
    /// when all 4 are in use. Frames that find no buffer wait in the
    /// socket (parked), none is dropped, NAKed or resent, and every record
    /// arrives once, in order.
    #[test]
    fn a_slow_standby_worker_parks_frames_instead_of_dropping_them() {
        const SLOW: usize = 4;
        const FRAMES: u64 = 200;
        let Some(p) = pair_with(
            "a_slow_standby_worker_parks_frames_instead_of_dropping_them",
            KEY,
            SLOW,
        ) else {
            return;
        };
        // The frame waits as long as the test holds the buffers: a test
        // thread descheduled past PARK_MAX under CI load must not turn into
        // a drop (and a gap that then asks for a bulk sync nobody serves).
        p.b.link().set_park_max(Duration::from_secs(30));
        wait_for("a bulk sync request", || {
            !p.ta.bulks.lock().unwrap().is_empty()
        });
        control(&p.wa, FrameType::BulkBegin, 0);
        control(&p.wa, FrameType::BulkEnd, 0);
        let mut got = Vec::new();
        let mut frames = 0u64;
        wait_for("the standby to be ready", || {
            while let Ok(b) = p.wb.delivered.try_recv() {
                frames += 1;
                p.wb.pool.0.send(b).unwrap();
            }
            p.b.link().ready()
        });
        // The active worker encodes as fast as its pool allows; the
        // standby worker takes a frame only once it holds all its buffers.
        let mut enc = FrameEncoder::new(0, FRAME).unwrap();
        let mut sent = 0u64;
        let mut parked_seen = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < (FRAMES * 3) as usize {
            assert!(
                Instant::now() < deadline,
                "timed out: {} of {} records at the standby",
                got.len(),
                FRAMES * 3
            );
            while sent < FRAMES {
                let Ok(mut b) = p.wa.pool.1.try_recv() else {
                    break;
                };
                b.clear();
                assert!(enc.begin(b, false).is_none());
                for k in sent * 3..sent * 3 + 3 {
                    assert_eq!(enc.put(0, 1, 1, k, &k.to_be_bytes()), Put::Written);
                }
                p.wa.send(enc.finish().unwrap());
                sent += 1;
            }
            // The worker holds all its buffers until the link reports a
            // parked frame, so parking is forced rather than left to how
            // the threads happen to be scheduled.
            if !parked_seen && p.wb.delivered.len() == SLOW {
                parked_seen = p.b.link().status().counters.rx_parked >= 1;
            }
            if parked_seen && (p.wb.delivered.len() == SLOW || sent == FRAMES) {
                if let Ok(b) = p.wb.delivered.try_recv() {
                    frames += 1;
                    got.extend(keys_of(&b).unwrap_or_default());
                    p.wb.pool.0.send(b).unwrap();
                    continue;
                }
            }
            std::thread::yield_now();
        }
        assert_eq!(
            got,
            (0..FRAMES * 3).collect::<Vec<_>>(),
            "in order, nothing twice"
        );
        assert!(
            p.wb.delivered.try_recv().is_err(),
            "nothing delivered twice"
        );
        assert_eq!(
            frames,
            2 + FRAMES,
            "bulk begin, bulk end and the data frames"
        );
        wait_for("every frame acknowledged", || {
            p.wa.pool.1.len() == BUFFERS && p.a.link().status().lag_frames == 0
        });
        let a = p.a.link().status();
        let b = p.b.link().status();
        let tx = a.sender.as_ref().unwrap();
        let rx = b.receiver.as_ref().unwrap();
        assert!(
            b.counters.rx_parked >= 1,
            "no frame had to wait: {:?}",
            b.counters
        );
        assert_eq!(b.counters.rx_no_buffer, 0, "{:?}", b.counters);
        assert_eq!(rx["naks_sent"].as_u64(), Some(0), "{rx}");
        assert_eq!(tx["naks_received"].as_u64(), Some(0), "{tx}");
        // A retransmission timeout (10 ms without an ACK moving) can only
        // fire if a thread of this test was descheduled that long; without
        // one, nothing at all was sent twice.
        if tx["timeouts"].as_u64() == Some(0) {
            assert_eq!(tx["retransmits"].as_u64(), Some(0), "{tx}");
        }
    }

    #[test]
    fn a_wrong_key_delivers_nothing() {
        let Some(p) = pair(
            "a_wrong_key_delivers_nothing",
            "hex ffeeddccbbaa99887766554433221100",
        ) else {
            return;
        };
        let mut enc = FrameEncoder::new(0, FRAME).unwrap();
        control(&p.wa, FrameType::BulkBegin, 0);
        data(&p.wa, &mut enc, 0..3);
        control(&p.wa, FrameType::BulkEnd, 0);
        // Bounded look: the handshake is refused, so no session, no frame.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            assert!(
                p.wb.delivered.try_recv().is_err(),
                "a frame crossed with the wrong key"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let a = p.a.link().status();
        let b = p.b.link().status();
        assert!(!a.session && !b.session);
        assert!(!p.b.link().ready());
        assert!(a.counters.tx_no_session >= 1, "{:?}", a.counters);
        assert!(
            a.counters.rejected + b.counters.rejected >= 1,
            "the mismatch is counted: {:?} / {:?}",
            a.counters,
            b.counters
        );
    }
}
