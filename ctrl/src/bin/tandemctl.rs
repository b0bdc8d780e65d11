//! tandemctl: the operator's command line for a running tandemd. Sends one
//! command over the unit's control socket and prints the answer as text
//! tables (appliance style) or, with --json, as the daemon's JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use tandem_ctrl::api::client::{choose_socket, Client, RUN_DIR};
use tandem_ctrl::api::{help_text, Command};
use tandem_ctrl::render;

/// Talk to a running tandemd.
///
/// Exit status: 0 on success, 1 when tandemd refused the command, 2 on a
/// usage error, 3 when tandemd cannot be reached.
#[derive(Parser, Debug)]
#[command(name = "tandemctl", version)]
struct Cli {
    /// Control socket of the unit (default: -u, then $TANDEM_SOCKET, then
    /// the only socket in /run/tandem).
    #[arg(
        short = 's',
        long = "socket",
        value_name = "SOCKET",
        conflicts_with = "unit"
    )]
    socket: Option<PathBuf>,

    /// Unit name: uses /run/tandem/UNIT.sock.
    #[arg(short = 'u', long = "unit", value_name = "UNIT")]
    unit: Option<String>,

    /// Print the daemon's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// With `config reload`: apply it on a standby unit too (which is then
    /// out of sync with the active unit until the next replication).
    #[arg(long, global = true)]
    force: bool,

    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    timeout: u64,

    /// The command, e.g. `show interface` (words may be abbreviated: `sh int`).
    #[arg(required = true, value_name = "COMMAND")]
    words: Vec<String>,
}

fn main() -> ExitCode {
    let matches = Cli::command().after_help(help_text()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let line = cli.words.join(" ");
    let cmd = match (Command::parse(&line), cli.force) {
        (Ok(c), false) => c,
        (Ok(Command::ConfigReload | Command::ConfigReloadForce), true) => {
            Command::ConfigReloadForce
        }
        (Ok(c), true) => {
            eprintln!("tandemctl: --force applies to `config reload` only, not to `{c}`");
            return ExitCode::from(2);
        }
        (Err(e), _) => {
            eprintln!("tandemctl: {e}");
            return ExitCode::from(2);
        }
    };
    let env = std::env::var("TANDEM_SOCKET").ok();
    let socket = match choose_socket(
        cli.socket.as_deref(),
        cli.unit.as_deref(),
        env.as_deref(),
        std::path::Path::new(RUN_DIR),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tandemctl: {e}");
            return ExitCode::from(3);
        }
    };
    // A manual failover may wait for replication to complete first
    // (`tandem_ctrl::ha::REPLICATION_WAIT`): wait at least that long for it.
    let mut timeout = Duration::from_secs(cli.timeout.max(1));
    if matches!(cmd, Command::FailoverActive | Command::NoFailoverActive) {
        timeout = timeout.max(tandem_ctrl::ha::command_timeout(cmd) + Duration::from_secs(1));
    }
    let resp = match Client::connect(&socket, timeout).and_then(|mut c| c.request(cmd.words())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandemctl: {e}");
            return ExitCode::from(3);
        }
    };
    if !resp.ok {
        eprintln!(
            "tandemctl: {}",
            resp.error
                .as_deref()
                .unwrap_or("tandemd refused the command")
        );
        return ExitCode::from(1);
    }
    let data = resp.data.unwrap_or(serde_json::Value::Null);
    if cli.json {
        match serde_json::to_string_pretty(&data) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("tandemctl: {e}");
                return ExitCode::from(1);
            }
        }
        return ExitCode::SUCCESS;
    }
    match render::render(cmd, &data) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandemctl: {e}");
            ExitCode::from(1)
        }
    }
}
