//! The replication bench's veth rows: two real replication threads (`ReplicationHandle`, its
//! `Sender`/`Receiver`, AES-256-GCM secure link, AF_PACKET socket on EtherType 0x88B6) in two
//! network namespaces joined by a veth pair. The bench plays each unit's worker through fake
//! `StreamPort`s: the active "worker" owns a real shard and writes its records into a real
//! `FrameEncoder`; the standby "worker" applies delivered frames into a real shard. Same process,
//! one clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver as Rx, Sender as Tx};
use hdrhistogram::Histogram;
use tandem_ctrl::profile::HwProfile;
use tandem_ctrl::replication::{
    ReplicationHandle, ReplicationRole, StateTables, StreamPort, ETHERTYPE,
};
use tandem_io::l2sock::{wait_fds, L2Socket};
use tandem_io::wake::WakeFd;
use tandem_netns::{veth, Netns};
use tandem_state::records::{RecordSink, KIND_CONN, OP_UPSERT};
use tandem_state::{BulkCursor, Shard, StateConfig};
use tandem_sync::wire::{emit_sequenced, Frame, FrameType};
use tandem_sync::{FrameEncoder, Put, SyncBuf};

use super::fixture;
use super::inproc::short;
use super::{
    fifo_error, fifo_thread, mega, BenchError, FifoGuard, LinkCounters, RowReport, SchedReport,
    Tuning, BAR_BULK, BAR_LAG,
};

/// Frame buffers per unit's worker (fewer than the sender's ring, which is 3/4 of the outbound
/// channel: the pool, not an eviction, is what throttles a bulk sync).
const BUFFERS: usize = 512;
/// Capacity of the outbound and inbound channels.
const CHANNEL: usize = 1024;
/// The data path's flush deadline for a partial frame (`SyncSettings::flush`).
const FLUSH: Duration = Duration::from_micros(100);
/// Shortest sleep of a `SCHED_FIFO` producer. A time-sharing thread's sleeps are stretched by
/// its timer slack (50 µs by default) so each wake-up opens a batch; a real-time thread gets no
/// slack, and at 200 k/s its 5 µs sleeps end before it is switched out: without this floor the
/// producer never gives its core back (seen: 200 ms slices, the replication thread waiting
/// 470 ms).
const FIFO_MIN_SLEEP: Duration = Duration::from_micros(50);
/// Bound on every wait for the pair (session, bulk request, ready, delivery).
const SETTLE: Duration = Duration::from_secs(20);
/// Records per `Shard::bulk` call (one worker batch).
const BULK_BATCH: usize = 256;

/// One unit's worker side of stream 0, as the replication thread sees it.
struct Port {
    outbound: Rx<SyncBuf>,
    pool: (Tx<SyncBuf>, Rx<SyncBuf>),
    inbound: Tx<SyncBuf>,
    /// The worker's wake-up, signalled with each delivered frame (as
    /// `tandem_dataplane::sync::InboundTx` does).
    worker_wake: Arc<WakeFd>,
}

impl StreamPort for Port {
    fn outbound(&self) -> &Rx<SyncBuf> {
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
        self.inbound.try_send(buf).map_err(|e| e.into_inner())?;
        self.worker_wake.wake();
        Ok(())
    }
}

/// The bench's ends of a [`Port`]: the worker's, blocking and waking as tandemd's workers do
/// (`tandem_io::wake::WakeFd` and a poll, no spinning).
#[derive(Clone)]
struct Worker {
    out: Tx<SyncBuf>,
    /// The replication thread's wake-up, signalled after each outbound frame.
    repl_wake: Arc<WakeFd>,
    delivered: Rx<SyncBuf>,
    /// This worker's wake-up.
    wake: Arc<WakeFd>,
    pool: (Tx<SyncBuf>, Rx<SyncBuf>),
}

impl Worker {
    fn new_wake() -> Arc<WakeFd> {
        Arc::new(WakeFd::new().expect("eventfd"))
    }

    /// Queues a finished frame for the replication thread and wakes it.
    fn send(&self, b: SyncBuf) -> bool {
        let ok = self.out.send_timeout(b, SETTLE).is_ok();
        self.repl_wake.wake();
        ok
    }

    /// Blocks until a frame is delivered or `timeout` passes, as a worker blocks in its poll.
    fn wait_delivered(&self, timeout: Duration) {
        self.wake.park();
        if self.delivered.is_empty() {
            let _ = wait_fds(&[self.wake.fd()], timeout);
        }
        self.wake.unpark();
    }
}

fn port() -> (Box<dyn StreamPort>, Worker) {
    let (out_tx, out_rx) = bounded(CHANNEL);
    let (in_tx, in_rx) = bounded(CHANNEL);
    let pool = bounded(BUFFERS);
    for _ in 0..BUFFERS {
        let _ = pool.0.send(SyncBuf::with_capacity(fixture::frame_size()));
    }
    let wake = Worker::new_wake();
    (
        Box::new(Port {
            outbound: out_rx,
            pool: pool.clone(),
            inbound: in_tx,
            worker_wake: wake.clone(),
        }),
        Worker {
            out: out_tx,
            repl_wake: Worker::new_wake(),
            delivered: in_rx,
            wake,
            pool,
        },
    )
}

/// The active unit's tables as the replication thread sees them: a bulk request goes to the
/// bench's active worker.
struct Tables(Tx<u16>);

impl StateTables for Tables {
    fn start_bulk(&self, stream: u16) {
        let _ = self.0.try_send(stream);
    }
    fn take_overflowed(&self) -> Vec<bool> {
        vec![false]
    }
}

/// Where tandemd runs the lag path's threads with the `lab` profile: each unit's replication
/// thread on the profile's management core, its worker on the worker core. The two units of a
/// pair on this box share those two cores, as two tandemd units here do. Left to the scheduler
/// instead, the threads migrate, and the rows measure a placement tandemd never runs.
#[derive(Clone, Copy, Debug)]
struct Placement {
    management: usize,
    worker: usize,
}

impl Placement {
    /// The `lab` profile's cores, or why the threads stay where the scheduler puts them.
    fn lab() -> Result<Placement, String> {
        let path = crate::forward::tools::profile_dir().join("lab.toml");
        let p = HwProfile::load_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let worker = *p
            .cores
            .workers
            .first()
            .ok_or_else(|| format!("{}: no worker core", path.display()))?;
        let have = core_affinity::get_core_ids().unwrap_or_default();
        for c in [p.cores.management, worker] {
            if !have.iter().any(|h| h.id == c) {
                return Err(format!("this machine has no core {c}"));
            }
        }
        Ok(Placement {
            management: p.cores.management,
            worker,
        })
    }

    /// Pins the calling thread to the worker core.
    fn pin_worker(this: Option<Placement>) {
        if let Some(p) = this {
            core_affinity::set_for_current(core_affinity::CoreId { id: p.worker });
        }
    }

    fn describe(this: &Result<Placement, String>) -> String {
        match this {
            Ok(p) => format!(
                "threads placed as tandemd's lab profile does: repl threads on core {}, \
                 producer and standby worker on core {}",
                p.management, p.worker
            ),
            Err(e) => format!("threads unplaced ({e})"),
        }
    }
}

/// Two units' replication threads on a veth pair in two namespaces; A active, B standby.
struct Pair {
    a: ReplicationHandle,
    b: ReplicationHandle,
    wa: Worker,
    wb: Worker,
    bulk_requests: Rx<u16>,
    _ns: (Netns, Netns),
}

impl Pair {
    /// `rmem`: `net.core.rmem_default` in both namespaces before the sockets open (the state
    /// link's socket does not size its receive buffer itself).
    fn new(rmem: Option<u64>, place: Option<Placement>) -> Result<Pair, BenchError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(BenchError::Setup("needs root (network namespaces)".into()));
        }
        let na = Netns::new("rpa")?;
        let nb = Netns::new("rpb")?;
        veth(&na, "st0", &nb, "st0")?;
        if let Some(r) = rmem {
            na.sysctl("net.core.rmem_default", &r.to_string())?;
            nb.sysctl("net.core.rmem_default", &r.to_string())?;
        }
        let open = |ns: &Netns| -> Result<L2Socket, BenchError> {
            let _g = ns.enter()?;
            L2Socket::open("st0", ETHERTYPE).map_err(|e| BenchError::Setup(e.to_string()))
        };
        let (sa, sb) = (open(&na)?, open(&nb)?);
        let (pa, wa) = port();
        let (pb, wb) = port();
        let (bulk_tx, bulk_requests) = bounded(16);
        let (idle_tx, _idle_rx) = bounded(16);
        let sec = fixture::security()?;
        let core = place.map(|p| p.management);
        // One unit's replication thread on its socket, its worker's port and wake-up.
        let start = |sock, port, w: &Worker, bulk: Tx<u16>| {
            let wake = w.repl_wake.clone();
            ReplicationHandle::with_socket(
                sock,
                &sec,
                vec![port],
                wake,
                Arc::new(Tables(bulk)),
                core,
            )
            .map_err(|e| BenchError::Setup(e.to_string()))
        };
        let a = start(sa, pa, &wa, bulk_tx)?;
        let b = start(sb, pb, &wb, idle_tx)?;
        a.link().set_role(ReplicationRole::Active);
        b.link().set_role(ReplicationRole::Standby);
        Ok(Pair {
            a,
            b,
            wa,
            wb,
            bulk_requests,
            _ns: (na, nb),
        })
    }

    /// Waits for the standby's bulk request to reach the active worker.
    fn bulk_request(&self, timeout: Duration) -> Result<(), BenchError> {
        self.bulk_requests
            .recv_timeout(timeout)
            .map(|_| ())
            .map_err(|_| BenchError::Timeout("the standby's bulk-sync request".into()))
    }
}

/// The active worker's record sink: an encoder whose frames go to the replication thread's
/// outbound channel, buffers from the worker's pool (waiting for one, bounded, as the pool is
/// the flow control: buffers come back when the mate acknowledges).
struct ChanSink {
    enc: FrameEncoder,
    w: Worker,
    now: u64,
    bulk: bool,
    lost: u64,
    error: Option<String>,
}

impl ChanSink {
    fn new(w: &Worker) -> Result<ChanSink, BenchError> {
        Ok(ChanSink {
            enc: FrameEncoder::new(0, fixture::frame_size())
                .map_err(|e| BenchError::Setup(e.to_string()))?,
            w: w.clone(),
            now: 0,
            bulk: false,
            lost: 0,
            error: None,
        })
    }

    fn fail(&mut self, e: &str) {
        self.lost += 1;
        if self.error.is_none() {
            self.error = Some(e.into());
        }
    }

    fn buffer(&mut self) -> Option<SyncBuf> {
        self.w.pool.1.recv_timeout(SETTLE).ok()
    }

    fn attach(&mut self) -> bool {
        if self.enc.has_buffer() {
            return true;
        }
        match self.buffer() {
            Some(b) => {
                let _ = self.enc.begin(b, self.bulk);
                true
            }
            None => false,
        }
    }

    fn flush(&mut self) {
        if let Some(b) = self.enc.finish() {
            if !self.w.send(b) {
                self.fail("outbound channel stuck");
            }
        }
    }

    /// BULK_BEGIN (`total` entries) or BULK_END, as the worker emits them.
    fn control(&mut self, ty: FrameType, arg: u32) {
        let Some(mut b) = self.buffer() else {
            return self.fail("no buffer for a bulk control frame");
        };
        b.clear();
        match emit_sequenced(ty, 0, 0, 0, arg, b.spare_mut()) {
            Ok(n) => {
                b.set_len(n);
                if !self.w.send(b) {
                    self.fail("outbound channel stuck");
                }
            }
            Err(_) => self.fail("bulk control frame does not fit"),
        }
    }
}

impl RecordSink for ChanSink {
    fn put(&mut self, kind: u8, op: u8, key: u64, payload: &[u8]) {
        if !self.attach() {
            return self.fail("no free frame buffer");
        }
        if self.enc.put(self.now, kind, op, key, payload) == Put::Full {
            self.flush();
            if !self.attach() || self.enc.put(self.now, kind, op, key, payload) != Put::Written {
                self.fail("record does not fit an empty frame");
            }
        }
    }
}

/// A whole bulk sync of `shard` through `sink` (a sink of its own: the live encoder's open frame
/// is not disturbed), one worker batch per clock reading.
fn send_bulk(shard: &Shard, sink: &mut ChanSink, epoch: Instant) {
    let (c, x, s) = shard.counts();
    sink.bulk = true;
    sink.control(
        FrameType::BulkBegin,
        u32::try_from(c + x + s).unwrap_or(u32::MAX),
    );
    let mut cursor = BulkCursor::default();
    loop {
        sink.now = fixture::ns_since(epoch);
        if shard.bulk(&mut cursor, sink.now, sink, BULK_BATCH).finished {
            break;
        }
    }
    sink.flush();
    sink.control(FrameType::BulkEnd, 0);
}

/// What the standby worker saw.
struct Applied {
    shard: Shard,
    applied: u64,
    rejected: u64,
    first_error: Option<String>,
    bulk_end_at: Option<Instant>,
    lag: Histogram<u64>,
}

/// The standby worker: applies every delivered frame into its shard until `stop`, or until a
/// complete bulk has ended when `until_bulk_end`; conn upserts with a number below
/// `created.len()` record their lag (now − creation time on the active).
fn standby_worker(
    w: Worker,
    cfg: StateConfig,
    epoch: Instant,
    created: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    until_bulk_end: bool,
    place: Option<Placement>,
) -> thread::JoinHandle<Result<Applied, BenchError>> {
    // Named, so the scheduling report can tell it from the replication threads.
    let spawned = thread::Builder::new()
        .name("sb-worker".into())
        .spawn(move || {
            Placement::pin_worker(place);
            let mut a = Applied {
                shard: fixture::shard(&cfg, 2)?,
                applied: 0,
                rejected: 0,
                first_error: None,
                bulk_end_at: None,
                lag: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                    .map_err(|e| BenchError::Setup(e.to_string()))?,
            };
            let mut in_bulk = false;
            let hard = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Acquire) && Instant::now() < hard {
                let buf = match w.delivered.try_recv() {
                    Ok(buf) => buf,
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        w.wait_delivered(Duration::from_millis(5));
                        continue;
                    }
                    // The pair is gone (a failed row): a `continue` here would spin, and at
                    // SCHED_FIFO hog a core.
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                };
                let now = fixture::ns_since(epoch);
                let mut end = false;
                match Frame::parse(buf.as_bytes()) {
                    Ok(Frame::Data { records, .. }) => {
                        for r in records {
                            match a.shard.apply(now, r.kind, r.op, r.payload) {
                                Ok(()) => a.applied += 1,
                                Err(e) => {
                                    a.rejected += 1;
                                    if a.first_error.is_none() {
                                        a.first_error = Some(e.to_string());
                                    }
                                }
                            }
                            if r.kind == KIND_CONN && r.op == OP_UPSERT {
                                let t = fixture::conn_number(r.payload)
                                    .and_then(|i| created.get(i as usize))
                                    .map(|t| t.load(Ordering::Acquire));
                                if let Some(t) = t.filter(|t| *t != 0) {
                                    let _ = a.lag.record(now.saturating_sub(t).max(1));
                                }
                            }
                        }
                    }
                    Ok(Frame::BulkBegin { .. }) => {
                        // A standby clears its stream's entries before a bulk (`Shard::clear`).
                        a.shard.clear();
                        in_bulk = true;
                    }
                    Ok(Frame::BulkEnd { .. }) => {
                        if in_bulk {
                            a.bulk_end_at = Some(Instant::now());
                            end = until_bulk_end;
                        }
                        in_bulk = false;
                    }
                    _ => {}
                }
                let mut buf = buf;
                buf.clear();
                let _ = w.pool.0.try_send(buf);
                if end {
                    break;
                }
            }
            Ok(a)
        });
    spawned.expect("spawning the standby worker thread")
}

/// Runs `f` on a thread named `producer` that plays the active unit's worker, on the worker
/// core when placed. A thread of its own, so that neither its placement nor its scheduling
/// outlives the row.
fn on_producer<T: Send>(
    place: Option<Placement>,
    f: impl FnOnce() -> Result<T, BenchError> + Send,
) -> Result<T, BenchError> {
    thread::scope(|s| {
        thread::Builder::new()
            .name("producer".into())
            .spawn_scoped(s, move || {
                Placement::pin_worker(place);
                f()
            })
            .map_err(|e| BenchError::Setup(format!("spawning the producer: {e}")))?
            .join()
            .map_err(|_| BenchError::Setup("the producer panicked".into()))?
    })
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> Result<(), BenchError> {
    let deadline = Instant::now() + SETTLE;
    while !f() {
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout(what.into()));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Bulk sync of `conns` connections over the real replication threads.
pub fn bulk_row(conns: u64, rmem: Option<u64>, say: &mut dyn FnMut(&str)) -> RowReport {
    let name = row_name("bulk sync, veth + AEAD, repl threads", rmem);
    say(&format!("{name}: {conns} connections"));
    match bulk(conns, rmem, say) {
        Ok((secs, applied, (sent, link), placed)) => {
            let per_million = secs * 1e6 / conns.max(1) as f64;
            RowReport {
                name,
                link: Some(link),
                bulk_ms: Some(secs * 1e3),
                records: Some(applied),
                conns: Some(conns),
                records_per_s: Some(applied as f64 / secs),
                figure: format!("{:.0} ms / {} conns", secs * 1e3, short(conns)),
                bar: BAR_BULK.into(),
                pass: Some(per_million <= 2.0),
                note: format!(
                    "active worker: Shard::bulk → FrameEncoder; repl threads: Sender → \
                     AES-256-GCM → AF_PACKET over veth → Receiver; standby worker: \
                     Shard::apply; 4 threads on this 2-core box ({placed}); {applied} \
                     records ({} records/s), {sent}{}",
                    mega(applied as f64 / secs),
                    if conns < 1_000_000 {
                        format!("; verdict scaled to 1 M: {per_million:.2} s")
                    } else {
                        String::new()
                    }
                ),
                ..RowReport::default()
            }
        }
        Err(e) => RowReport::failed(&name, BAR_BULK, e),
    }
}

/// The row's name, with the receive buffer when it is not the kernel's default.
fn row_name(base: &str, rmem: Option<u64>) -> String {
    match rmem {
        Some(r) => format!("{base}, rmem {} KiB", r / 1024),
        None => base.to_string(),
    }
}

fn bulk(
    conns: u64,
    rmem: Option<u64>,
    say: &mut dyn FnMut(&str),
) -> Result<(f64, u64, (String, LinkCounters), String), BenchError> {
    let cap = u32::try_from(conns + conns / 16)
        .unwrap_or(u32::MAX)
        .max(1024);
    let cfg = fixture::config(cap, conns);
    let mut active = fixture::shard(&cfg, 1)?;
    fixture::fill(&mut active, 0, 0..conns)?;
    let (c, x, _) = active.counts();
    let place = Placement::lab();
    let placed = Placement::describe(&place);
    say(&format!(
        "{c} connections, {x} xlates on the active shard; starting the pair"
    ));
    let place = place.ok();
    let (secs, applied, sent) = on_producer(place, move || bulk_on(&active, cfg, rmem, place))?;
    Ok((secs, applied, sent, placed))
}

/// [`bulk`] on the producer thread (the active unit's worker).
fn bulk_on(
    active: &Shard,
    cfg: StateConfig,
    rmem: Option<u64>,
    place: Option<Placement>,
) -> Result<(f64, u64, (String, LinkCounters)), BenchError> {
    let (c, x, _) = active.counts();
    let pair = Pair::new(rmem, place)?;
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = standby_worker(
        pair.wb.clone(),
        cfg,
        epoch,
        Arc::new(Vec::new()),
        stop.clone(),
        true,
        place,
    );
    pair.bulk_request(SETTLE)?;
    let mut sink = ChanSink::new(&pair.wa)?;
    let t0 = Instant::now();
    send_bulk(active, &mut sink, epoch);
    let res = consumer.join();
    stop.store(true, Ordering::Release);
    let a = res.map_err(|_| BenchError::Setup("standby worker panicked".into()))??;
    if let Some(e) = sink.error {
        return Err(BenchError::Setup(format!(
            "{} records lost: {e}",
            sink.lost
        )));
    }
    let end = a
        .bulk_end_at
        .ok_or_else(|| BenchError::Timeout("the end of the bulk sync on the standby".into()))?;
    let secs = end.duration_since(t0).as_secs_f64();
    let (sc, sx, _) = a.shard.counts();
    if a.rejected > 0 || sc != c || sx != x {
        return Err(BenchError::Setup(format!(
            "standby holds {sc} of {c} connections, {sx} of {x} xlates; {} records refused \
             (first: {:?})",
            a.rejected, a.first_error
        )));
    }
    let sent = link_counters(&pair);
    drop(pair);
    Ok((secs, a.applied, sent))
}

/// The pair's loss-repair and flow-control counters, for the notes (why frames were sent twice,
/// waited or were dropped) and the JSON.
fn link_counters(pair: &Pair) -> (String, LinkCounters) {
    // Let the status snapshots (refreshed every 50 ms) catch up.
    thread::sleep(Duration::from_millis(120));
    let a = pair.a.link().status();
    let b = pair.b.link().status();
    let tx = |k: &str| a.sender.as_ref().and_then(|s| s[k].as_u64()).unwrap_or(0);
    let rx = |k: &str| b.receiver.as_ref().and_then(|s| s[k].as_u64()).unwrap_or(0);
    let c = LinkCounters {
        tx_frames: a.counters.tx_frames,
        retransmits: tx("retransmits"),
        timeouts: tx("timeouts"),
        naks: rx("naks_sent"),
        acks: rx("acks_sent"),
        out_of_order: rx("out_of_order"),
        duplicates: rx("duplicates"),
        rx_parked: b.counters.rx_parked,
        rx_no_buffer: b.counters.rx_no_buffer,
    };
    let text = format!(
        "{} frames sealed, {} retransmitted ({} RTO expiries, {} NAKs), standby: {} ACKs, \
         {} frames parked for a worker buffer, {} dropped for want of one, {} out of order, \
         {} duplicates",
        c.tx_frames,
        c.retransmits,
        c.timeouts,
        c.naks,
        c.acks,
        c.rx_parked,
        c.rx_no_buffer,
        c.out_of_order,
        c.duplicates,
    );
    (text, c)
}

/// Kernel threads whose time the lag rows report besides their own threads': the softirq
/// threads (veth delivers a frame in the sender's softirq, and work the kernel defers runs in
/// these time-sharing threads, which real-time threads can keep waiting), and threads that hold
/// a CPU for milliseconds on this non-preempting kernel: DAMON's `kdamond` (on this VM a
/// proactive-reclaim scheme that runs 2–6 ms every 0.5 s, seen with `perf sched`), RCU's
/// grace-period thread and kswapd.
const KERNEL_THREADS: [&str; 5] = [
    "ksoftirqd/",
    "kdamond.",
    "rcu_preempt",
    "rcu_sched",
    "kswapd",
];

/// Per thread of this process: `(name, run-queue wait ns, on-CPU ns)` from
/// `/proc/self/task/*/schedstat`, and of the [`KERNEL_THREADS`]. The replication threads are
/// renamed `repl-active` and `repl-standby`.
fn sched_snapshot() -> Vec<(u64, String, u64, u64)> {
    // The main thread only waits for the row (and is named like the pair's threads).
    let main = u64::from(std::process::id());
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else {
            continue;
        };
        if tid == main {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let (run, wait) = schedstat(&e.path());
        v.push((tid, comm.trim().to_string(), wait, run));
    }
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !KERNEL_THREADS.iter().any(|k| comm.starts_with(k)) {
            continue;
        }
        let (run, wait) = schedstat(&e.path());
        v.push((pid, comm.trim().to_string(), wait, run));
    }
    // The pair's threads are both named `replication`; A (active) is started first.
    v.sort_by_key(|t| t.0);
    let mut repl = ["repl-active", "repl-standby"].into_iter();
    for t in v.iter_mut().filter(|t| t.1 == "replication") {
        if let Some(n) = repl.next() {
            t.1 = n.to_string();
        }
    }
    v
}

/// `(on-CPU ns, run-queue wait ns)` of the task at `/proc/…/<task>`.
fn schedstat(task: &std::path::Path) -> (u64, u64) {
    let stat = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
    let mut f = stat
        .split_whitespace()
        .map(|x| x.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

/// What each thread alive at both snapshots waited and ran in between (ms).
fn sched_delta(
    before: &[(u64, String, u64, u64)],
    after: &[(u64, String, u64, u64)],
) -> Vec<(String, f64, f64)> {
    let mut v: Vec<(String, f64, f64)> = after
        .iter()
        .filter_map(|(tid, name, wait, run)| {
            let (_, _, w0, r0) = before.iter().find(|b| b.0 == *tid)?;
            let ms = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e6;
            Some((name.clone(), ms(*wait, *w0), ms(*run, *r0)))
        })
        .filter(|(_, w, r)| w + r > 0.0)
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn loadavg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

/// The name of a lag row.
pub fn lag_row_name(rate: u64, rmem: Option<u64>, t: Tuning) -> String {
    row_name(
        &format!("lag create→applied @ {}/s, veth{}", short(rate), t.suffix()),
        rmem,
    )
}

/// Replication lag at `rate` creates per second for `secs`; the lag path's threads tuned as `t`
/// says (the caller holds its CPU latency request).
pub fn lag_row(
    rate: u64,
    secs: f64,
    rmem: Option<u64>,
    t: Tuning,
    say: &mut dyn FnMut(&str),
) -> RowReport {
    let name = lag_row_name(rate, rmem, t);
    say(&format!("{name}: {secs} s"));
    match lag(rate, secs, rmem, t.fifo) {
        Ok((h, n, note, link, mut sched)) => {
            sched.cpu_latency_us = t.cpu_latency_us;
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
            let (p50, p99, max) = (us(0.5), us(0.99), h.max() as f64 / 1e3);
            RowReport {
                name,
                rate_per_s: Some(rate),
                conns: Some(n),
                p50_us: Some(p50),
                p99_us: Some(p99),
                max_us: Some(max),
                figure: format!("p50 {p50:.0} p99 {p99:.0} max {max:.0} µs"),
                bar: BAR_LAG.into(),
                pass: Some(p99 <= 1000.0),
                note,
                link: Some(link),
                sched: Some(sched),
                ..RowReport::default()
            }
        }
        Err(e) => RowReport::failed(&name, BAR_LAG, e),
    }
}

type LagResult = Result<(Histogram<u64>, u64, String, LinkCounters, SchedReport), BenchError>;

fn lag(rate: u64, secs: f64, rmem: Option<u64>, prio: u8) -> LagResult {
    let place = Placement::lab();
    let placed = Placement::describe(&place);
    let place = place.ok();
    on_producer(place, move || {
        lag_on(rate, secs, rmem, prio, place, &placed)
    })
}

/// [`lag`] on the producer thread (the active unit's worker).
fn lag_on(
    rate: u64,
    secs: f64,
    rmem: Option<u64>,
    prio: u8,
    place: Option<Placement>,
    placed: &str,
) -> LagResult {
    let total = ((rate as f64) * secs).round() as u64;
    let total = total.clamp(1, fixture::MAX_CONNS);
    let cap = u32::try_from(total + total / 8)
        .unwrap_or(u32::MAX)
        .max(1024);
    let cfg = fixture::config(cap, total);
    let mut active = fixture::shard(&cfg, 1)?;
    let created: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let pair = Pair::new(rmem, place)?;
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = standby_worker(
        pair.wb.clone(),
        cfg,
        epoch,
        created.clone(),
        stop.clone(),
        false,
        place,
    );
    // As tandemd's `realtime_priority` does for its workers and replication thread; the
    // producer plays the active worker.
    let _fifo = FifoGuard::new("producer", prio)?;
    fifo_thread("standby worker", &consumer, prio)?;
    if prio > 0 {
        for (h, what) in [
            (&pair.a, "active replication thread"),
            (&pair.b, "standby replication thread"),
        ] {
            h.set_realtime(prio)
                .map_err(|e| fifo_error(what, prio, e))?;
        }
    }
    // Join: the standby asks for a bulk sync of the (empty) table, then is ready.
    pair.bulk_request(SETTLE)?;
    let mut bulk_sink = ChanSink::new(&pair.wa)?;
    send_bulk(&active, &mut bulk_sink, epoch);
    let standby = pair.b.link();
    wait_for("the standby to be ready", || standby.ready())?;

    // Paced creates: each wake-up opens the connections due by now (a worker batch), and a
    // partial frame goes out once its first record is FLUSH old, as in the data path.
    let mut sink = ChanSink::new(&pair.wa)?;
    let flush_ns = FLUSH.as_nanos() as u64;
    let sched0 = sched_snapshot();
    let cpu0 = super::wakeup::cpu_times();
    let (mut max_oversleep, mut late) = (Duration::ZERO, 0u64);
    let start = Instant::now();
    let mut i = 0u64;
    let mut mid_bulks = 0;
    let hard = start + Duration::from_secs_f64(secs) + SETTLE;
    loop {
        let el = start.elapsed().as_secs_f64();
        let due = ((rate as f64 * el) as u64).min(total);
        let now = fixture::ns_since(epoch);
        sink.now = now;
        while i < due {
            created[i as usize].store(now, Ordering::Release);
            fixture::open(&mut active, now, i, &mut sink)?;
            i += 1;
        }
        if sink
            .enc
            .opened_at()
            .is_some_and(|o| now.saturating_sub(o) >= flush_ns)
        {
            sink.flush();
        }
        if pair.bulk_requests.try_recv().is_ok() {
            // The standby fell behind (lost frames beyond the ring): resync it, as a worker
            // does; counted in the note.
            mid_bulks += 1;
            send_bulk(&active, &mut bulk_sink, epoch);
        }
        if i >= total && sink.enc.opened_at().is_none() {
            break;
        }
        if Instant::now() > hard {
            return Err(BenchError::Timeout("the paced producer".into()));
        }
        // Sleep until the next record is due or the open frame's deadline, whichever is first.
        let next_rec = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
        let mut wait = next_rec.saturating_sub(start.elapsed());
        if prio > 0 {
            wait = wait.max(FIFO_MIN_SLEEP);
        }
        if let Some(o) = sink.enc.opened_at() {
            let left = (o + flush_ns).saturating_sub(fixture::ns_since(epoch));
            wait = wait.min(Duration::from_nanos(left));
        }
        if !wait.is_zero() {
            let want = wait.min(Duration::from_millis(1));
            let t = Instant::now();
            thread::sleep(want);
            // Evidence for the tail: a wake-up this late means the producer was not scheduled.
            let over = t.elapsed().saturating_sub(want);
            max_oversleep = max_oversleep.max(over);
            late += u64::from(over > Duration::from_micros(500));
        }
    }
    let produced = start.elapsed().as_secs_f64();
    // Until every connection is present on the standby (bounded).
    let consumer_stop = stop.clone();
    let deadline = Instant::now() + SETTLE;
    let mut res = None;
    while Instant::now() < deadline {
        if consumer.is_finished() {
            break;
        }
        let st = pair.b.link().status();
        let delivered = st
            .receiver
            .as_ref()
            .and_then(|r| r["records_delivered"].as_u64())
            .unwrap_or(0);
        // 2 records per connection (conn + its new PAT xlate); wait a little more for the
        // worker to apply the last frame.
        if delivered >= 2 * total {
            thread::sleep(Duration::from_millis(20));
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let sched1 = sched_snapshot();
    let steal_pct = match (cpu0, super::wakeup::cpu_times()) {
        (Some(a), Some(b)) => super::wakeup::cpu_pct(&a, &b, super::wakeup::CPU_STEAL),
        _ => 0.0,
    };
    let sched = SchedReport {
        threads: sched_delta(&sched0, &sched1),
        producer_max_oversleep_us: max_oversleep.as_secs_f64() * 1e6,
        producer_late_wakeups: late,
        loadavg_1m: loadavg_1m(),
        steal_pct,
        realtime_priority: prio,
        cpu_latency_us: None,
    };
    consumer_stop.store(true, Ordering::Release);
    if let Ok(r) = consumer.join() {
        res = Some(r);
    }
    let a = res.ok_or_else(|| BenchError::Setup("standby worker panicked".into()))??;
    if let Some(e) = sink.error.or(bulk_sink.error) {
        return Err(BenchError::Setup(format!("records lost: {e}")));
    }
    let (sc, _, _) = a.shard.counts();
    if a.rejected > 0 || sc as u64 != total {
        return Err(BenchError::Setup(format!(
            "standby holds {sc} of {total} connections; {} records refused (first: {:?})",
            a.rejected, a.first_error
        )));
    }
    let (repair, link) = link_counters(&pair);
    let threads: Vec<String> = sched
        .threads
        .iter()
        .map(|(n, w, r)| format!("{n} {w:.0}/{r:.0}"))
        .collect();
    let note = format!(
        "{total} creates (SYN through PAT on the active shard) in {produced:.2} s, frames \
         flushed at {} µs; commit → encoder → repl thread → AES-256-GCM → veth → repl thread \
         → standby worker Shard::apply; {} samples, {mid_bulks} mid-run bulk syncs; {repair}; \
         run-queue wait/on-CPU ms per thread: {}; producer woke up to {:.0} µs late ({} \
         wake-ups > 500 µs late); load average {:.2}, steal {:.1} %; {}; {placed}",
        FLUSH.as_micros(),
        a.lag.len(),
        threads.join(", "),
        sched.producer_max_oversleep_us,
        sched.producer_late_wakeups,
        sched.loadavg_1m,
        sched.steal_pct,
        if prio == 0 {
            "threads time-sharing (SCHED_OTHER)".to_string()
        } else {
            format!("producer, both repl threads and the standby worker at SCHED_FIFO {prio}")
        },
    );
    drop(pair);
    Ok((a.lag, total, note, link, sched))
}
