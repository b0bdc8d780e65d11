//! The replication benchmark (issue 4, "Measurements"): records/s applied on the standby on one
//! core (with and without the secure link's AEAD), bulk sync of 1 M connections (in process, and
//! over two real replication threads on a veth pair), replication lag (create on the active →
//! applied on the standby, two real `ReplicationHandle`s on a veth pair), and memory per
//! connection. Each row states its bar and PASS/FAIL.
//!
//! Everything measured uses the real code: connections are opened by TCP SYNs through the active
//! shard's packet path (`lookup` + `commit`, dynamic PAT), their records are written by the
//! coalescing `FrameEncoder`, sequenced by the `Sender`, decoded by the `Receiver` and applied by
//! `Shard::apply`; bulk syncs walk the table with `Shard::bulk`.
//!
//! PAT plan: sources are `198.18.0.0/16` (connection `i` from address `i % 65536`, port
//! `1024 + i / 65536`), split into 2^k prefixes each translated to its own mapped address, so
//! that no mapped address holds more than 32 768 of its 64 511 ports (the shard draws ports at
//! random with a bounded number of tries; one address cannot carry 1 M connections).

mod fixture;
mod inproc;
mod link;
mod wakeup;

use serde::Serialize;
use tandem_io::sched::CpuLatencyRequest;
use tandem_netns::LabError;

pub use fixture::{mapped_addresses, MAX_CONNS};

/// Why a row could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("lab: {0}")]
    Lab(#[from] LabError),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// What a run measures.
#[derive(Clone, Debug)]
pub struct Options {
    /// Connections for the throughput and bulk rows.
    pub conns: u64,
    /// Offered create rates of the lag rows, per second.
    pub lag_rates: Vec<u64>,
    /// Seconds of each lag row.
    pub lag_secs: f64,
    /// Run the rows that need root and a veth pair.
    pub veth: bool,
    /// `net.core.rmem_default` for the veth rows' namespaces (`None`: the kernel's, 208 KiB):
    /// shows what a larger state-link receive buffer buys.
    pub rmem: Option<u64>,
    /// Run only these groups of rows (`apply`, `bulk`, `lag`, `memory`); empty: all.
    pub only: Vec<String>,
    /// Also run the lag rows (and their wake-up floor) with the lag path's threads (producer,
    /// both replication threads, standby worker) at `SCHED_FIFO` this priority, each right after
    /// its time-sharing twin, as tandemd's `realtime_priority` runs workers and replication.
    pub realtime_priority: Option<u8>,
    /// Also run the lag rows (and their floor) holding a PM QoS CPU wake-up latency request of
    /// this many µs (0: idle CPUs poll instead of halting), alone and with `realtime_priority`.
    pub cpu_latency_us: Option<u32>,
}

/// How the threads of a lag row (and its wake-up floor) are scheduled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// `SCHED_FIFO` priority of the lag path's threads (0: time-sharing).
    pub fifo: u8,
    /// PM QoS CPU wake-up latency held during the row, µs.
    pub cpu_latency_us: Option<u32>,
}

impl Tuning {
    /// Row-name suffix (none for the default).
    fn suffix(&self) -> String {
        let mut s = String::new();
        if self.fifo > 0 {
            s.push_str(&format!(", SCHED_FIFO {}", self.fifo));
        }
        if let Some(us) = self.cpu_latency_us {
            s.push_str(&format!(", cpu latency {us} µs"));
        }
        s
    }
}

impl Options {
    /// The lag rows' tunings: the default first, then each asked-for twin.
    fn tunings(&self) -> Vec<Tuning> {
        let fifo = self.realtime_priority.filter(|p| *p > 0);
        let mut v = vec![Tuning::default()];
        if let Some(p) = fifo {
            v.push(Tuning {
                fifo: p,
                cpu_latency_us: None,
            });
        }
        if let Some(us) = self.cpu_latency_us {
            v.push(Tuning {
                fifo: 0,
                cpu_latency_us: Some(us),
            });
            if let Some(p) = fifo {
                v.push(Tuning {
                    fifo: p,
                    cpu_latency_us: Some(us),
                });
            }
        }
        v
    }
}

/// The row groups `--only` takes.
pub const ROW_GROUPS: [&str; 4] = ["apply", "bulk", "lag", "memory"];

impl Options {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            conns: 1_000_000,
            lag_rates: vec![20_000, 200_000],
            lag_secs: 2.0,
            veth: true,
            rmem: None,
            only: Vec::new(),
            realtime_priority: None,
            cpu_latency_us: None,
        }
    }
}

/// One row of the table (`--json`: one object per line; figures carry their unit in the key).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RowReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aead_ns_per_frame: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_conn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_bytes: Option<u64>,
    /// Veth rows: the state link's loss repair and flow control during the row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkCounters>,
    /// Lag rows: how long each thread of the pair waited for a CPU during the paced phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sched: Option<SchedReport>,
    /// The figure as printed in the table.
    #[serde(skip)]
    pub figure: String,
    /// The bar, in words.
    pub bar: String,
    /// Whether the bar is met (`None`: no bar, or the row failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
    /// What was measured, how.
    pub note: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl RowReport {
    fn failed(name: &str, bar: &str, e: BenchError) -> RowReport {
        RowReport {
            name: name.into(),
            bar: bar.into(),
            failed: Some(e.to_string()),
            ..RowReport::default()
        }
    }
}

/// The pair's loss-repair and flow-control counters over a veth row (sender: active unit,
/// receiver and glue: standby).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LinkCounters {
    /// Frames sealed by the active unit's replication thread (new, resent, control).
    pub tx_frames: u64,
    /// Frames the sender sent again (NAK go-back-N and timeout probes).
    pub retransmits: u64,
    /// Retransmission timeouts that fired on the sender.
    pub timeouts: u64,
    /// NAKs the standby sent.
    pub naks: u64,
    /// ACKs the standby sent.
    pub acks: u64,
    /// Frames the standby received ahead of a gap (dropped).
    pub out_of_order: u64,
    /// Duplicates the standby received (dropped).
    pub duplicates: u64,
    /// Frames the standby's replication thread parked waiting for a worker buffer.
    pub rx_parked: u64,
    /// Frames the standby dropped for want of a worker buffer.
    pub rx_no_buffer: u64,
}

/// Scheduling evidence for a lag row: run-queue wait (time runnable but not running, from
/// `/proc/self/task/*/schedstat`) of each thread during the paced phase, and the producer's
/// oversleeps.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SchedReport {
    /// `(thread, ms waited for a CPU, ms on a CPU)`.
    pub threads: Vec<(String, f64, f64)>,
    /// Longest the producer overslept a wake-up, µs (it asks for ≤ 1 ms).
    pub producer_max_oversleep_us: f64,
    /// Producer wake-ups late by more than 500 µs.
    pub producer_late_wakeups: u64,
    /// Load average (1 min) when the row ran.
    pub loadavg_1m: f64,
    /// Share of the box's CPU time the hypervisor ran something else during the paced phase
    /// (`/proc/stat` steal), %: a stall no thread of the guest can see as waiting.
    pub steal_pct: f64,
    /// `SCHED_FIFO` priority of the lag path's threads (0: time-sharing).
    pub realtime_priority: u8,
    /// PM QoS CPU wake-up latency held during the row, µs (none: the kernel's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_latency_us: Option<u32>,
}

/// Bars (issue 4, Acceptance).
pub const BAR_APPLY: &str = ">= 1 M records/s";
pub const BAR_BULK: &str = "1 M conns <= 2 s";
pub const BAR_LAG: &str = "p99 <= 1 ms";
pub const BAR_MEMORY: &str = "<= 256 B/conn";

/// Runs every row, reporting progress through `say` and each finished row through `row`.
pub fn run(opts: &Options, say: &mut dyn FnMut(&str), row: &mut dyn FnMut(&RowReport)) {
    let emit = |r: RowReport, say: &mut dyn FnMut(&str), row: &mut dyn FnMut(&RowReport)| {
        if let Some(e) = &r.failed {
            say(&format!("{}: FAILED: {e}", r.name));
        } else {
            say(&format!("{}: {}", r.name, r.figure));
        }
        row(&r);
    };
    if opts.wants("apply") {
        for r in inproc::apply_rows(opts.conns, say) {
            emit(r, say, row);
        }
    }
    if opts.wants("bulk") {
        let r = inproc::bulk_row(opts.conns, false, say);
        emit(r, say, row);
        let r = inproc::bulk_row(opts.conns, true, say);
        emit(r, say, row);
    }
    if opts.veth {
        if opts.wants("bulk") {
            let r = link::bulk_row(opts.conns, opts.rmem, say);
            emit(r, say, row);
        }
        if opts.wants("lag") {
            // The default first, then its twins, per row: the twins see the same box.
            let tunings = opts.tunings();
            for &t in &tunings {
                let r = tuned(t, "wake-up latency, 1 thread hand-off", wakeup::BAR, |t| {
                    wakeup::wakeup_row(opts.lag_secs, t)
                });
                emit(r, say, row);
            }
            for &rate in &opts.lag_rates {
                for &t in &tunings {
                    let name = link::lag_row_name(rate, opts.rmem, t);
                    let r = tuned(t, &name, BAR_LAG, |t| {
                        link::lag_row(rate, opts.lag_secs, opts.rmem, t, say)
                    });
                    emit(r, say, row);
                }
            }
        }
    } else {
        say("veth rows skipped (--no-veth, or not root)");
    }
    if opts.wants("memory") {
        for r in inproc::memory_rows(opts.conns) {
            emit(r, say, row);
        }
    }
}

/// The comparison table.
pub fn table(rows: &[RowReport]) -> String {
    let mut s = format!(
        "{:<40} {:>26} {:>18} {:>6}\n",
        "row", "figure", "bar", "result"
    );
    for r in rows {
        let result = match (r.failed.is_some(), r.pass) {
            (true, _) => "ERROR",
            (false, Some(true)) => "PASS",
            (false, Some(false)) => "FAIL",
            (false, None) => "-",
        };
        s.push_str(&format!(
            "{:<40} {:>26} {:>18} {:>6}\n",
            r.name, r.figure, r.bar, result
        ));
        if let Some(e) = &r.failed {
            s.push_str(&format!("  error: {}\n", e.replace('\n', "\n    ")));
        } else if !r.note.is_empty() {
            s.push_str(&format!("  {}\n", r.note));
        }
    }
    s
}

/// Runs `f` holding the tuning's CPU latency request (a failed row if it cannot be held).
fn tuned(t: Tuning, name: &str, bar: &str, f: impl FnOnce(Tuning) -> RowReport) -> RowReport {
    let _request = match t.cpu_latency_us.map(CpuLatencyRequest::hold).transpose() {
        Ok(r) => r,
        Err(e) => {
            return RowReport::failed(
                name,
                bar,
                BenchError::Setup(format!("/dev/cpu_dma_latency: {e} (needs root)")),
            )
        }
    };
    f(t)
}

/// Sets a spawned thread of a row to `SCHED_FIFO` `prio` (0: nothing to do).
pub(crate) fn fifo_thread<T>(
    what: &str,
    t: &std::thread::JoinHandle<T>,
    prio: u8,
) -> Result<(), BenchError> {
    if prio == 0 {
        return Ok(());
    }
    tandem_io::sched::set_realtime(t, prio).map_err(|e| fifo_error(what, prio, e))
}

pub(crate) fn fifo_error(what: &str, prio: u8, e: std::io::Error) -> BenchError {
    BenchError::Setup(format!(
        "{what}: SCHED_FIFO {prio}: {e} (needs CAP_SYS_NICE)"
    ))
}

/// The calling thread at `SCHED_FIFO` `prio` until dropped, then time-sharing again, so the
/// rows after a FIFO row run as before.
pub(crate) struct FifoGuard(u8);

impl FifoGuard {
    pub(crate) fn new(what: &str, prio: u8) -> Result<FifoGuard, BenchError> {
        if prio > 0 {
            tandem_io::sched::set_current_realtime(prio).map_err(|e| fifo_error(what, prio, e))?;
        }
        Ok(FifoGuard(prio))
    }
}

impl Drop for FifoGuard {
    fn drop(&mut self) {
        if self.0 > 0 {
            let _ = tandem_io::sched::set_current_realtime(0);
        }
    }
}

/// `1234567.8` → `1.23 M`.
pub(crate) fn mega(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.0} k", v / 1e3)
    }
}

/// Smoke mode (CI): every in-process row with a small count, checking that each produced its
/// figures and applied every record. No timing assertions.
pub fn smoke(conns: u64) -> Vec<RowReport> {
    let mut say = |_: &str| {};
    let mut rows = inproc::apply_rows(conns, &mut say);
    rows.push(inproc::bulk_row(conns, false, &mut say));
    rows.push(inproc::bulk_row(conns, true, &mut say));
    rows.extend(inproc::memory_rows(conns));
    rows
}

/// Smoke mode of the veth rows (root only): a small bulk sync and a short lag run.
pub fn smoke_veth(conns: u64) -> Vec<RowReport> {
    let mut say = |_: &str| {};
    vec![
        link::bulk_row(conns, None, &mut say),
        link::lag_row(2_000, 0.3, None, Tuning::default(), &mut say),
    ]
}
