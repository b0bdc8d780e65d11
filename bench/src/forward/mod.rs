//! The forwarding macro benchmark: 64-byte UDP from a client through one
//! unit to a server on the veth lab
//! (`client c0 ══ out0 unit in0 ══ s0 server`), with the unit being, row by
//! row, the Linux kernel (plain forwarding; with nftables conntrack +
//! masquerade) and tandemd (AF_XDP; AF_XDP with connection tracking,
//! security levels and PAT — the stateful counterpart of the masquerade row;
//! the same with flow offload, where tandem's XDP program forwards the
//! connection once the worker has created it; io_uring), all measured in
//! one run so the rows compare (DESIGN.md,
//! "Performance"). pktgen sends one UDP flow in every row, so the stateful
//! rows carry exactly one connection each.
//!
//! Per row: a fresh [`GatewayLab`](tandem_netns::GatewayLab) tuned as PLATFORM.md says (GRO on, TSO
//! and TX checksum offload off, threaded NAPI), its NAPI kthreads pinned —
//! the unit's (`out0`, `in0`) to the forwarding core, the client's and the
//! server's to the traffic core at SCHED_FIFO 1 ([`Options::sink_fifo`]
//! says why), again after every XDP attach — then
//! `runs` × (a flat-out throughput phase, a paced latency phase), each phase
//! a pktgen receiver on `s0` and a pktgen sender on `c0`, both AF_XDP and
//! pinned to the traffic core (the receiver also at SCHED_FIFO 1). Each
//! figure of the row is the median over the runs.
//!
//! Besides pps delivered to the sink, loss and latency percentiles, each
//! row reports what the unit itself sent towards the server (`in0`'s TX
//! counters: the unit's rate even when the sink side drops) and how much of
//! the forwarding core the unit's threads had ([`cpu`]): on a shared
//! machine a compiler on that core shows there, not as a mystery. With
//! [`Options::perf`] the forwarding core is also profiled during the
//! flat-out phases.
//!
//! ARP: pktgen's receiver runs an XDP program that redirects every frame on
//! `s0` to its socket, ARP included, so the server's kernel cannot answer
//! ARP while it runs. The kernel rows get a static neighbour entry for the
//! server; tandemd has no static ARP entries, so before the first phase the
//! client pings the server through tandemd (which resolves it by ARP while
//! `s0` has no XDP program yet) and the generated config keeps a confirmed
//! entry reachable for an hour. The row checks `show arp` for it.

pub mod cpu;
pub mod napi;
pub mod phase;
pub mod report;
mod rows;
pub mod tools;

use std::time::Duration;

use tandem_netns::LabError;

pub use phase::PhaseResult;
pub use report::{median, Figures, RowReport};
pub use rows::{run_row, RowLab};
pub use tools::Binaries;

/// Why a row (or the whole bench) could not run. Every message names the
/// row, namespace or program concerned.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("lab: {0}")]
    Lab(#[from] LabError),
    #[error("tools: {0}")]
    Tools(String),
    #[error("NAPI kthreads in {ns}: {detail}")]
    Napi { ns: String, detail: String },
    #[error("{phase} phase: {detail}")]
    Phase { phase: String, detail: String },
    #[error("tandemd: {0}")]
    Tandemd(String),
}

/// The rows of the comparison table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// Linux IP forwarding in the unit namespace.
    Kernel,
    /// Linux forwarding with an nftables ruleset doing conntrack and masquerade.
    KernelMasquerade,
    /// tandemd with `backend = "afxdp"`, stateful: connection tracking,
    /// security levels (client side 100, server side 0) and dynamic PAT of
    /// the client subnet to the unit's server-side address — the same work
    /// as [`RowKind::KernelMasquerade`].
    TandemAfXdpPat,
    /// As [`RowKind::TandemAfXdpPat`], with flow offload (`[offload]`): the
    /// connection is created by the worker, then its packets are translated
    /// and forwarded by tandem's XDP program.
    TandemAfXdpPatOffload,
    /// tandemd with `backend = "afxdp"`.
    TandemAfXdp,
    /// tandemd with `backend = "io_uring"`.
    TandemIoUring,
    /// tandemd with `backend = "io_uring"`, stateful as [`RowKind::TandemAfXdpPat`].
    TandemIoUringPat,
}

impl RowKind {
    pub const ALL: [RowKind; 7] = [
        RowKind::Kernel,
        RowKind::KernelMasquerade,
        RowKind::TandemAfXdpPat,
        RowKind::TandemAfXdpPatOffload,
        RowKind::TandemIoUringPat,
        RowKind::TandemAfXdp,
        RowKind::TandemIoUring,
    ];

    /// The row name printed in the table and as `name` in JSON.
    pub fn name(self) -> &'static str {
        match self {
            RowKind::Kernel => "kernel",
            RowKind::KernelMasquerade => "kernel+conntrack+masquerade",
            RowKind::TandemAfXdpPat => "tandem afxdp+conntrack+PAT",
            RowKind::TandemAfXdpPatOffload => "tandem afxdp+conntrack+PAT+offload",
            RowKind::TandemAfXdp => "tandem afxdp",
            RowKind::TandemIoUring => "tandem io_uring",
            RowKind::TandemIoUringPat => "tandem io_uring+conntrack+PAT",
        }
    }

    /// Parses a row name or a short alias (`kernel`, `masquerade`, `afxdp`,
    /// `io_uring`).
    pub fn parse(s: &str) -> Option<RowKind> {
        let s = s.trim().to_ascii_lowercase();
        RowKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .or(match s.as_str() {
                "masquerade" | "nat" | "conntrack" => Some(RowKind::KernelMasquerade),
                "afxdp" | "tandem-afxdp" => Some(RowKind::TandemAfXdp),
                "pat" | "afxdp-pat" | "stateful" => Some(RowKind::TandemAfXdpPat),
                "offload" | "pat-offload" | "afxdp-pat-offload" => {
                    Some(RowKind::TandemAfXdpPatOffload)
                }
                "io_uring" | "io-uring" | "uring" | "tandem-io_uring" => {
                    Some(RowKind::TandemIoUring)
                }
                "uring-pat" | "io_uring-pat" => Some(RowKind::TandemIoUringPat),
                _ => None,
            })
    }

    /// The `unit.backend` value for tandem rows.
    pub fn tandem_backend(self) -> Option<&'static str> {
        match self {
            RowKind::TandemAfXdp | RowKind::TandemAfXdpPat | RowKind::TandemAfXdpPatOffload => {
                Some("afxdp")
            }
            RowKind::TandemIoUring | RowKind::TandemIoUringPat => Some("io_uring"),
            _ => None,
        }
    }

    /// tandemd rows that run the stateful stage with PAT.
    pub fn tandem_stateful(self) -> bool {
        matches!(
            self,
            RowKind::TandemAfXdpPat | RowKind::TandemAfXdpPatOffload | RowKind::TandemIoUringPat
        )
    }

    /// tandemd rows with flow offload on.
    pub fn tandem_offload(self) -> bool {
        self == RowKind::TandemAfXdpPatOffload
    }
}

/// How the benchmark runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Length of each throughput phase.
    pub duration: Duration,
    /// Length of each latency phase.
    pub latency_duration: Duration,
    /// Runs per row (each: one throughput and one latency phase); the
    /// median is reported.
    pub runs: usize,
    /// Offered load of the latency phase.
    pub latency_rate_pps: u64,
    /// Frame length without FCS.
    pub frame_len: usize,
    /// Core of the unit's forwarding work: its NAPI kthreads, tandemd's worker.
    pub forward_core: usize,
    /// Core of the unit's own NAPI kthreads (`out0`, `in0`) when not the
    /// forwarding core (`--unit-napi-core`): an experiment in placement, the
    /// same for every row. For the kernel rows the NAPI kthread *is* the
    /// forwarding; for tandem on AF_XDP copy mode it is the copy into the
    /// UMEM. Default: `None`, the forwarding core.
    pub unit_napi_core: Option<usize>,
    /// Core of the generator, the sink and the hosts' NAPI kthreads.
    pub traffic_core: usize,
    /// How long the receiver waits after the last frame before it reports.
    pub drain: Duration,
    /// Pin the veths' NAPI kthreads (off only to see what pinning changes).
    pub pin_napi: bool,
    /// Run the sink side — the pktgen receiver and the client's and the
    /// server's NAPI kthreads — at SCHED_FIFO 1, above the generator.
    ///
    /// Why: they share the traffic core with pktgen's sender, which never
    /// sleeps (flat out it retries a full ring, paced it yields between
    /// quanta of 100 µs). Seen here: a SCHED_OTHER `napi/s0` kthread next
    /// to it was starved for whole seconds, the unit's frames died in the
    /// full veth ring in front of the sink (the unit's `in0` counts them as
    /// TX drops), and every row measured the sink instead of the unit; the
    /// receiver itself starved the same way under a busy machine. At FIFO 1
    /// they preempt the sender the way softirq NAPI would; they sleep when
    /// there is nothing to receive, so they cannot monopolise the core (and
    /// the kernel's RT throttle caps them at 95 %). The unit's own threads
    /// stay SCHED_OTHER: the unit is measured as it would run.
    pub sink_fifo: bool,
    /// Profile the forwarding core with `perf record` during the flat-out
    /// phases (the summary goes into the row's notes).
    pub perf: bool,
    /// Where tandemd finds the `lab` hardware profile (default: the
    /// workspace's `hw-profiles/`); another directory benchmarks a variant.
    pub profile_dir: std::path::PathBuf,
    pub rows: Vec<RowKind>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(3),
            latency_duration: Duration::from_secs(3),
            runs: 3,
            latency_rate_pps: 50_000,
            frame_len: 64,
            // The lab hardware profile pins tandemd's worker to core 1.
            forward_core: 1,
            traffic_core: 0,
            unit_napi_core: None,
            drain: Duration::from_millis(500),
            pin_napi: true,
            sink_fifo: true,
            perf: false,
            profile_dir: tools::profile_dir(),
            rows: RowKind::ALL.to_vec(),
        }
    }
}

impl Options {
    /// The smoke mode of the test: every row, one run, about a second per row.
    pub fn smoke() -> Options {
        Options {
            duration: Duration::from_millis(700),
            latency_duration: Duration::from_millis(300),
            runs: 1,
            drain: Duration::from_millis(300),
            ..Options::default()
        }
    }
}

/// One row's result: figures, or why it could not run.
#[derive(Debug)]
pub struct RowOutcome {
    pub kind: RowKind,
    pub result: Result<RowReport, BenchError>,
}

/// Runs every row of `opts` in order. `say` receives progress lines.
pub fn run(opts: &Options, bins: &Binaries, say: &mut dyn FnMut(&str)) -> Vec<RowOutcome> {
    opts.rows
        .iter()
        .map(|&kind| {
            say(&format!("row {}: setting up", kind.name()));
            let result = run_row(kind, opts, bins, say);
            if let Err(e) = &result {
                say(&format!("row {}: FAILED: {e}", kind.name()));
            }
            RowOutcome { kind, result }
        })
        .collect()
}

/// The 1-minute load average when it says the machine is busy (above 1.0:
/// more than half of this 2-core machine already taken), else `None`.
pub fn busy_machine() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load: f64 = s.split_whitespace().next()?.parse().ok()?;
    (load > 1.0).then_some(load)
}
