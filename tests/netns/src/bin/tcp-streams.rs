//! `tcp-streams`: many paced, verified, echoed TCP streams through the
//! kernel's TCP stack (see `tandem_netns::streams` for the protocol and the
//! report). Run it inside a namespace:
//!
//! ```text
//! ip netns exec SRV tcp-streams server --listen 198.18.2.10:5001 --max-conns 1000 --report srv.json
//! ip netns exec CLI tcp-streams client --connect 198.18.2.10:5001 --conns 1000 \
//!     --rate-per-conn 8000 --duration 20s --control ctl --json
//! ```
//!
//! With `server --push 5ms [--push-rate B]` the server sends its own paced
//! stream instead of the echo; the client then needs `--server-push`.
//!
//! The client's sending phase ends after `--duration` or when the control
//! file contains `stop` (or on SIGTERM/SIGINT); then every connection
//! half-closes and waits for its whole echo and the server's FIN. Exit
//! status: 0 only when every connection completed cleanly with every byte
//! verified; 1 when the run finished but some did not; 2 on a setup error.
//! The server exits after `--max-conns` connections came and went, on
//! SIGTERM/SIGINT, or at `--deadline`, writing its report then; it prints
//! `listening on ADDR` to stderr once it accepts connections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tandem_netns::streams::{run_client, ClientConfig, Push, Server, ServerConfig};

#[derive(Parser)]
#[command(about = "Paced, verified, echoed TCP streams for connection-survival tests")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Accept connections, verify each byte stream and echo it back.
    Server {
        #[arg(long)]
        listen: SocketAddr,
        /// Exit once this many connections were accepted and have ended.
        #[arg(long)]
        max_conns: Option<usize>,
        #[arg(long, default_value_t = 4096)]
        backlog: i32,
        /// Hard limit on the run.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        deadline: Duration,
        /// Push the server's own stream, one write per connection this
        /// often, instead of echoing (clients need `--server-push`).
        #[arg(long, value_parser = humantime::parse_duration)]
        push: Option<Duration>,
        /// Pushed pattern bytes per second per connection.
        #[arg(long, default_value_t = 2000)]
        push_rate: u64,
        /// Write the JSON report here at exit.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the JSON report on stdout instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Open paced, verified streams to a server and report how they ended.
    Client {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Pattern bytes per second per connection.
        #[arg(long, default_value_t = 8000)]
        rate_per_conn: u64,
        /// Sending phase, from the start of the run (ramp included).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
        duration: Duration,
        /// End the sending phase early when this file contains `stop`.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Id of the first connection (distinguishes several clients).
        #[arg(long, default_value_t = 0)]
        first_id: u64,
        /// New connections per second during the ramp.
        #[arg(long, default_value_t = 2000)]
        connect_rate: u32,
        /// Connects in flight at most.
        #[arg(long, default_value_t = 64)]
        max_connecting: usize,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "50ms")]
        write_interval: Duration,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        connect_timeout: Duration,
        /// Time allowed after the sending phase for echoes and FINs.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        drain_timeout: Duration,
        /// Hard limit on the whole run (default: derived from the others).
        #[arg(long, value_parser = humantime::parse_duration)]
        deadline: Option<Duration>,
        /// The server pushes its own stream (`server --push`): verify that
        /// instead of an echo.
        #[arg(long)]
        server_push: bool,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the JSON report on stdout instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber_init();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("tcp-streams: cannot handle signal {sig}: {e}");
            return ExitCode::from(2);
        }
    }
    match Cli::parse().mode {
        Mode::Server {
            listen,
            max_conns,
            backlog,
            deadline,
            push,
            push_rate,
            report,
            json,
        } => {
            if push.is_some_and(|p| p.is_zero()) {
                eprintln!("tcp-streams server: --push must be positive");
                return ExitCode::from(2);
            }
            let mut cfg = ServerConfig::new(listen);
            cfg.push = push.map(|interval| Push {
                interval,
                rate: push_rate,
            });
            cfg.max_conns = max_conns;
            cfg.backlog = backlog;
            cfg.deadline = deadline;
            cfg.stop = Some(stop);
            let server = match Server::bind(cfg) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("tcp-streams server: {e}");
                    return ExitCode::from(2);
                }
            };
            eprintln!("tcp-streams server: listening on {}", server.local_addr());
            match server.run() {
                Ok(r) => {
                    let text = r.summary();
                    finish(&r, r.ok, &text, report.as_deref(), json)
                }
                Err(e) => {
                    eprintln!("tcp-streams server: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Mode::Client {
            connect,
            conns,
            rate_per_conn,
            duration,
            control,
            first_id,
            connect_rate,
            max_connecting,
            write_interval,
            connect_timeout,
            drain_timeout,
            deadline,
            server_push,
            report,
            json,
        } => {
            let mut cfg = ClientConfig::new(connect, conns, rate_per_conn, duration);
            cfg.control = control;
            cfg.stop = Some(stop);
            cfg.first_id = first_id;
            cfg.connect_rate = connect_rate;
            cfg.max_connecting = max_connecting;
            cfg.write_interval = write_interval;
            cfg.connect_timeout = connect_timeout;
            cfg.drain_timeout = drain_timeout;
            cfg.deadline = deadline;
            cfg.server_push = server_push;
            match run_client(&cfg) {
                Ok(r) => {
                    let text = r.summary();
                    finish(&r, r.ok, &text, report.as_deref(), json)
                }
                Err(e) => {
                    eprintln!("tcp-streams client: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Write the report where asked, print it, and turn `ok` into the status.
fn finish<R: serde::Serialize>(
    report: &R,
    ok: bool,
    summary: &str,
    path: Option<&std::path::Path>,
    json: bool,
) -> ExitCode {
    let text = match serde_json::to_string(report) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tcp-streams: serialize report: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(p) = path {
        if let Err(e) = std::fs::write(p, &text) {
            eprintln!("tcp-streams: write report {}: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    if json {
        println!("{text}");
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Log lines (e.g. "all connections established") go to stderr, so a
/// test can wait for them in the process's log.
fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
