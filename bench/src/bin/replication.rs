//! `replication`: the replication benchmark. Records/s applied on the
//! standby (one core, with and without AEAD), bulk sync of 1 M connections
//! (in process and over two real replication threads on a veth pair),
//! replication lag (create on the active → applied on the standby) at two
//! create rates, and memory per connection, each row against its bar from
//! issue 4. See `bench::replication` for how.
//!
//! `cargo run --release -p bench --bin replication [-- --json] [--conns N]`

use std::process::ExitCode;

use bench::replication::{self, Options, RowReport, MAX_CONNS};
use clap::Parser;

/// Replication benchmark: apply throughput, bulk sync, lag and memory per
/// connection of tandem's stateful replication.
///
/// The veth rows need root (network namespaces). Progress goes to stderr;
/// the table (or with --json one JSON object per row per line) to stdout.
/// Exits 1 if any row could not run.
#[derive(Parser, Debug)]
#[command(name = "replication")]
struct Cli {
    /// Print one JSON object per row, one per line, instead of the table.
    #[arg(long)]
    json: bool,
    /// Connections for the throughput and bulk-sync rows.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    conns: u64,
    /// Create rates of the lag rows, per second, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "20000,200000",
        value_name = "RATES"
    )]
    lag_rates: Vec<u64>,
    /// Seconds of each lag row.
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    lag_secs: f64,
    /// Set net.core.rmem_default (bytes) in the veth rows' namespaces
    /// before the state-link sockets open (default: the kernel's).
    #[arg(long, value_name = "BYTES")]
    rmem_default: Option<u64>,
    /// Skip the veth rows (bulk sync over the replication threads, lag).
    #[arg(long)]
    no_veth: bool,
    /// Run only these row groups, comma separated: apply, bulk, lag, memory.
    #[arg(long, value_delimiter = ',', value_name = "GROUPS")]
    only: Vec<String>,
    /// Run each lag row (and the wake-up floor) twice: time-sharing, then
    /// with the lag path's threads at SCHED_FIFO this priority (1..=99;
    /// tandemd's `unit.realtime_priority`). Needs CAP_SYS_NICE.
    #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(u8).range(1..=99))]
    realtime_priority: Option<u8>,
    /// Also run each lag row (and the wake-up floor) holding a PM QoS CPU
    /// wake-up latency request of this many µs (/dev/cpu_dma_latency; 0:
    /// idle CPUs poll instead of halting; tandemd's `unit.cpu_latency_us`),
    /// alone and, with --realtime-priority, together with SCHED_FIFO.
    #[arg(long, value_name = "US")]
    cpu_latency_us: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.conns == 0 || cli.conns > MAX_CONNS {
        eprintln!("replication: --conns must be between 1 and {MAX_CONNS}");
        return ExitCode::FAILURE;
    }
    if let Some(g) = cli
        .only
        .iter()
        .find(|g| !replication::ROW_GROUPS.contains(&g.as_str()))
    {
        eprintln!(
            "replication: --only: unknown row group {g:?} (one of {})",
            replication::ROW_GROUPS.join(", ")
        );
        return ExitCode::FAILURE;
    }
    if cfg!(debug_assertions) {
        eprintln!("replication: warning: debug build; the figures are not tandem's");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let opts = Options {
        conns: cli.conns,
        lag_rates: cli.lag_rates.clone(),
        lag_secs: cli.lag_secs.clamp(0.1, 60.0),
        veth: !cli.no_veth && root,
        rmem: cli.rmem_default,
        only: cli.only.clone(),
        realtime_priority: cli.realtime_priority,
        cpu_latency_us: cli.cpu_latency_us,
    };
    let mut rows: Vec<RowReport> = Vec::new();
    let json = cli.json;
    replication::run(&opts, &mut |s| eprintln!("replication: {s}"), &mut |r| {
        if json {
            match serde_json::to_string(r) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("replication: {}: {e}", r.name),
            }
        }
        rows.push(r.clone());
    });
    if !json {
        print!("{}", replication::table(&rows));
    }
    if rows.iter().any(|r| r.failed.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
