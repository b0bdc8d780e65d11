//! tandemd: the per-unit daemon. Parses the command line, sets up logging,
//! and hands over to `tandem_ctrl::daemon` (which documents the start order).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// tandem unit daemon: runs the data plane and the management plane of one
/// HA gateway unit.
///
/// Exit status: 0 after a clean shutdown (SIGINT/SIGTERM) or a passing
/// --check; 2 when the config, the profile or the machine's devices do not
/// allow starting; 1 when starting or running failed.
#[derive(Parser, Debug)]
#[command(name = "tandemd", version)]
struct Cli {
    /// Unit config file (TOML; see ctrl/examples/unit.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,

    /// Directory searched first for the hardware profile named in the
    /// config (then $TANDEM_PROFILE_DIR, ./hw-profiles,
    /// /etc/tandem/hw-profiles, and the built-in profiles).
    #[arg(long, value_name = "DIR")]
    profile_dir: Option<PathBuf>,

    /// Load and validate the config and profile, print "config OK", exit.
    #[arg(long)]
    check: bool,

    /// Log filter (e.g. info, debug, tandem_io=debug); overrides RUST_LOG.
    /// Default: info.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    let filter = match &cli.log_level {
        Some(l) => EnvFilter::try_new(l),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tandemd: --log-level / RUST_LOG: {e}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let code = tandem_ctrl::daemon::run(&tandem_ctrl::daemon::Options {
        config: cli.config,
        profile_dir: cli.profile_dir,
        check: cli.check,
    });
    std::process::exit(code);
}
