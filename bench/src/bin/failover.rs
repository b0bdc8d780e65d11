//! `failover`: the failover macro benchmark. Paced UDP through a VIP
//! gateway pair, the active unit killed mid-stream, the outage (the
//! receiver's longest gap) per row: tandemd at several unit timers and
//! keepalived VRRPv3 at 10 ms as the reference, all measured in this run.
//! See `bench::failover` for how.
//!
//! `cargo run --release -p bench --bin failover [-- --json] [--trials N] [--full]`

use std::process::ExitCode;
use std::time::Duration;

use bench::failover::{self, Binaries, Options, Row};
use clap::Parser;

/// Failover benchmark: outage of a SIGKILLed active unit, tandem vs
/// keepalived, on the veth pair lab.
///
/// Needs root (network namespaces). Progress goes to stderr; the table
/// (or with --json one JSON object per row per line) to stdout. Exits 1 if
/// any row could not run.
#[derive(Parser, Debug)]
#[command(name = "failover")]
struct Cli {
    /// Print one JSON object per row, one per line, instead of the table.
    #[arg(long)]
    json: bool,
    /// Trials per row (median, min and max of the outage).
    #[arg(long, default_value_t = 3, value_name = "N")]
    trials: usize,
    /// Also run the appliance defaults (1 s / 15 s; long).
    #[arg(long)]
    full: bool,
    /// Offered load, frames per second.
    #[arg(long, default_value_t = 20_000, value_name = "PPS")]
    rate: u64,
    /// Seconds of traffic before the kill (also the false-failover watch).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    before_kill: f64,
    /// Rows to run by name substring, comma separated (e.g. `10/30,keepalived`).
    #[arg(long, value_delimiter = ',', value_name = "ROWS")]
    rows: Vec<String>,
    /// Rebuild tandemd, tandemctl and pktgen even when they exist.
    #[arg(long)]
    rebuild: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut say = |s: &str| eprintln!("failover: {s}");
    let bins = match Binaries::locate(cli.rebuild, &mut say) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("failover: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    };
    if bins.profile != "release" {
        say(&format!(
            "warning: {} binaries; outages of a debug build are not tandem's",
            bins.profile
        ));
    }
    let opts = Options {
        trials: cli.trials.max(1),
        rate: cli.rate,
        before_kill: Duration::from_secs_f64(cli.before_kill.max(0.1)),
        ..Options::default()
    };
    let rows: Vec<Row> = Row::all(cli.full)
        .into_iter()
        .filter(|r| cli.rows.is_empty() || cli.rows.iter().any(|w| r.name().contains(w.as_str())))
        .collect();
    let mut reports = Vec::new();
    for row in &rows {
        let r = failover::run_row(row, &bins, &opts, &mut say);
        if cli.json {
            match serde_json::to_string(&r) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("failover: {}: {e}", r.name),
            }
        }
        reports.push(r);
    }
    if !cli.json {
        print!("{}", failover::table(&reports));
    }
    if reports.iter().any(|r| r.failed.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
