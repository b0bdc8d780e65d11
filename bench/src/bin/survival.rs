//! `survival`: the connection-survival benchmark. N verified TCP streams
//! (and a paced UDP flow) through a gateway pair, the active unit killed as
//! a dead box, per row: connections survived / reset (and RSTs originated
//! by the new active) / stalled out, the survivors' longest and median
//! stall, the UDP outage. Rows: tandem's stateful pair with PAT, and
//! keepalived + conntrackd as the reference, on the same topology in the
//! same run. See `bench::survival` for how.
//!
//! `cargo run --release -p bench --bin survival [-- --json] [--conns N] [--trials K] [--server-push MS]`
//!
//! The servers push their own stream every `--server-push` ms (default
//! 5) so server segments reach the new active right after takeover;
//! `--server-push 0` runs the echo traffic instead.

use std::process::ExitCode;
use std::time::Duration;

use bench::survival::{self, Binaries, Options, Row};
use clap::Parser;

/// Connection-survival benchmark: TCP streams across the kill of the
/// active unit, tandem vs keepalived + conntrackd, on the veth pair lab.
///
/// Needs root (network namespaces). Progress goes to stderr; the table
/// (or with --json one JSON object per row per line) to stdout. Exits 1 if
/// any row could not run.
#[derive(Parser, Debug)]
#[command(name = "survival")]
struct Cli {
    /// Print one JSON object per row, one per line, instead of the table.
    #[arg(long)]
    json: bool,
    /// Trials per row (the figures are medians across trials).
    #[arg(long, default_value_t = 3, value_name = "K")]
    trials: usize,
    /// Concurrent TCP connections.
    #[arg(long, default_value_t = 100, value_name = "N")]
    conns: usize,
    /// Seconds of streaming after the kill.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    after: f64,
    /// Pattern bytes per second per connection.
    #[arg(long, default_value_t = 2000, value_name = "B")]
    rate_per_conn: u64,
    /// Rows to run by name substring, comma separated (e.g. `tandem,conntrackd`).
    #[arg(long, value_delimiter = ',', value_name = "ROWS")]
    rows: Vec<String>,
    /// The server pushes its own verified stream, one write per connection
    /// every MS ms, instead of echoing; 0: echo servers (nothing from the
    /// server until the client sends).
    #[arg(long, default_value_t = survival::PUSH_MS, value_name = "MS")]
    server_push: u64,
    /// Also run the kernel rows with NAT only (no forward filter).
    #[arg(long)]
    nat_only: bool,
    /// Rebuild tandemd, tandemctl and pktgen even when they exist.
    #[arg(long)]
    rebuild: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut say = |s: &str| eprintln!("survival: {s}");
    if !tandem_netns::have_privileges("survival") {
        eprintln!("survival: run as root");
        return ExitCode::FAILURE;
    }
    let bins = match Binaries::locate(cli.rebuild, &mut say) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("survival: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    };
    if bins.profile != "release" {
        say(&format!(
            "warning: {} binaries; a debug tandemd is not tandem",
            bins.profile
        ));
    }
    let opts = Options {
        trials: cli.trials.max(1),
        conns: cli.conns.max(1),
        rate_per_conn: cli.rate_per_conn.max(8),
        after_kill: Duration::from_secs_f64(cli.after.max(0.5)),
        server_push: (cli.server_push > 0).then(|| Duration::from_millis(cli.server_push)),
        ..Options::default()
    };
    let mut reports = Vec::new();
    for row in Row::all(cli.nat_only)
        .into_iter()
        .filter(|r| cli.rows.is_empty() || cli.rows.iter().any(|w| r.name().contains(w.as_str())))
    {
        let r = survival::run_row(row, &bins, &opts, &mut say);
        if cli.json {
            match serde_json::to_string(&r) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("survival: {}: {e}", r.name),
            }
        }
        reports.push(r);
    }
    if !cli.json {
        print!("{}", survival::table(&reports));
    }
    if reports.iter().any(|r| r.failed.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
