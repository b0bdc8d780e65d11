//! `forward`: the forwarding macro benchmark. Builds the veth lab once per
//! row and prints the comparison of tandem (AF_XDP, io_uring) with the
//! Linux kernel (plain; conntrack + masquerade), all measured in this run.
//! See `bench::forward` for what is measured and how.
//!
//! `cargo run --release -p bench --bin forward [-- --json] [--duration S] [--runs N]`

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bench::forward::{self, report, Binaries, Options, RowKind};
use clap::Parser;

/// Forwarding benchmark: 64-byte UDP client → unit → server over veth, the
/// unit being the Linux kernel or tandemd, one forwarding core.
///
/// Needs root (network namespaces, XDP). Progress goes to stderr; the
/// table (or with --json one JSON object per row per line) to stdout.
/// Exits 1 if any row could not run.
#[derive(Parser, Debug)]
#[command(name = "forward")]
struct Cli {
    /// Print one JSON object per row, one per line, instead of the table.
    #[arg(long)]
    json: bool,
    /// Seconds of each throughput phase (and of each latency phase unless
    /// --latency-duration is given).
    #[arg(long, default_value_t = 3.0, value_name = "S")]
    duration: f64,
    /// Seconds of each latency phase.
    #[arg(long, value_name = "S")]
    latency_duration: Option<f64>,
    /// Runs per row; each figure is the median over them.
    #[arg(long, default_value_t = 3, value_name = "N")]
    runs: usize,
    /// Offered load of the latency phase, frames per second.
    #[arg(long, default_value_t = 50_000, value_name = "PPS")]
    rate: u64,
    /// Rows to run, comma separated (kernel, masquerade, pat, offload, uring-pat, afxdp, io_uring;
    /// default: all).
    #[arg(long, value_delimiter = ',', value_name = "ROWS")]
    rows: Vec<String>,
    /// Rebuild tandemd, tandemctl and pktgen even when they exist.
    #[arg(long)]
    rebuild: bool,
    /// Leave the veths' NAPI kthreads where the scheduler puts them (to see
    /// what pinning changes; the figures are then less repeatable).
    #[arg(long)]
    no_pin: bool,
    /// Pin the unit's NAPI kthreads (out0, in0) to this core instead of the
    /// forwarding core, in every row (a placement experiment; the header
    /// of the table says so).
    #[arg(long, value_name = "CORE")]
    unit_napi_core: Option<usize>,
    /// Directory with the `lab` hardware profile tandemd runs with
    /// (default: the workspace's hw-profiles/).
    #[arg(long, value_name = "DIR")]
    profile_dir: Option<std::path::PathBuf>,
    /// Profile the forwarding core with perf during the flat-out phases;
    /// the top of the profile is printed under the table.
    #[arg(long)]
    perf: bool,
    /// A short smoke run (one run, under a second per phase).
    #[arg(long, conflicts_with_all = ["duration", "runs"])]
    smoke: bool,
}

fn secs(s: f64, what: &str) -> Result<Duration, String> {
    if s.is_finite() && (0.1..=3600.0).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "--{what} {s}: must be between 0.1 and 3600 seconds"
        ))
    }
}

fn options(cli: &Cli) -> Result<Options, String> {
    let mut o = if cli.smoke {
        Options::smoke()
    } else {
        Options::default()
    };
    if !cli.smoke {
        o.duration = secs(cli.duration, "duration")?;
        o.latency_duration = o.duration;
        if cli.runs == 0 || cli.runs > 100 {
            return Err(format!("--runs {}: must be 1..=100", cli.runs));
        }
        o.runs = cli.runs;
    }
    if let Some(l) = cli.latency_duration {
        o.latency_duration = secs(l, "latency-duration")?;
    }
    if cli.rate == 0 {
        return Err("--rate must be above 0".into());
    }
    o.latency_rate_pps = cli.rate;
    o.pin_napi = !cli.no_pin;
    o.unit_napi_core = cli.unit_napi_core;
    o.perf = cli.perf;
    if let Some(d) = &cli.profile_dir {
        o.profile_dir = d.clone();
    }
    if !cli.rows.is_empty() {
        o.rows = cli
            .rows
            .iter()
            .map(|r| {
                RowKind::parse(r).ok_or_else(|| {
                    format!("--rows: unknown row {r:?} (kernel, masquerade, pat, offload, uring-pat, afxdp, io_uring)")
                })
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(o)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = match options(&cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("forward: {e}");
            return ExitCode::from(2);
        }
    };
    if !tandem_netns::have_privileges("forward") {
        eprintln!("forward: needs root with CAP_NET_ADMIN (network namespaces, XDP)");
        return ExitCode::from(2);
    }
    let mut say = |line: &str| {
        eprintln!("forward: {line}");
    };
    if opts.perf {
        if let Err(e) = forward::tools::ensure_perf() {
            eprintln!("forward: --perf: {e}");
            return ExitCode::FAILURE;
        }
    }
    let bins = match Binaries::locate(cli.rebuild, &mut say) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("forward: {e}");
            return ExitCode::FAILURE;
        }
    };
    say(&format!(
        "using {}, {}, {} ({} profile{})",
        bins.tandemd.display(),
        bins.tandemctl.display(),
        bins.pktgen.display(),
        bins.profile,
        if bins.built {
            ", built by this run"
        } else {
            ""
        }
    ));
    if bins.profile == "dev" {
        say("warning: debug binaries measure debug code; run with --release for real figures");
    }
    if let Some(load) = forward::busy_machine() {
        say(&format!(
            "warning: the machine is busy before the run (load average {load:.2} over 1 min): \
             the rows share its cores with that load and the figures will be noisy"
        ));
    }
    let rows = forward::run(&opts, &bins, &mut say);
    let out = if cli.json {
        report::json_lines(&rows)
    } else {
        report::table(&rows, &opts)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    if let Ok(dir) = tandem_netns::log_dir() {
        say(&format!("logs of this run: {}", dir.display()));
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.result.is_err())
        .map(|r| r.kind.name())
        .collect();
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("forward: FAILED rows: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn opts(args: &[&str]) -> Result<Options, String> {
        let cli = Cli::try_parse_from(std::iter::once("forward").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        options(&cli)
    }

    #[test]
    fn cli_is_consistent_and_defaults_follow_the_issue() {
        Cli::command().debug_assert();
        let o = opts(&[]).unwrap();
        assert_eq!(o.rows, RowKind::ALL.to_vec());
        assert_eq!((o.runs, o.duration), (3, Duration::from_secs(3)));
        assert_eq!(o.latency_rate_pps, 50_000);
        assert!(o.pin_napi && o.sink_fifo && !o.perf);
    }

    #[test]
    fn rows_durations_and_modes_parse_or_explain() {
        let o = opts(&[
            "--rows",
            "masquerade,afxdp",
            "--duration",
            "1.5",
            "--runs",
            "5",
        ])
        .unwrap();
        assert_eq!(
            o.rows,
            vec![RowKind::KernelMasquerade, RowKind::TandemAfXdp]
        );
        assert_eq!(
            (o.runs, o.duration, o.latency_duration),
            (5, Duration::from_millis(1500), Duration::from_millis(1500))
        );
        let e = opts(&["--rows", "dpdk"]).unwrap_err();
        assert!(e.contains("unknown row \"dpdk\""), "{e}");
        assert!(opts(&["--duration", "0"])
            .unwrap_err()
            .contains("--duration 0"));
        assert!(opts(&["--runs", "0"]).unwrap_err().contains("--runs 0"));
        assert!(opts(&["--smoke", "--runs", "2"]).is_err());
        let s = opts(&["--smoke", "--no-pin", "--perf"]).unwrap();
        assert_eq!(s.runs, 1);
        assert!(!s.pin_napi && s.perf);
    }
}
