//! The tandem row: a stateful tandemd pair with dynamic PAT of the client
//! subnet to the inside VIP (as `tests/lab/stateful.rs`), SIGKILL of the
//! active once the standby holds every connection.

use std::time::Instant;

use tandem_netns::pair::PairConfig;
use tandem_netns::topology::PairLab;
use tandem_netns::wait_for;

use super::{err, Options, RstCounters, Traffic, Trial, SETTLE};
use crate::failover::tandem::{Pair, Unit};
use crate::forward::{BenchError, Binaries};

/// Unit polltime / holdtime: the demo's (README), fast but not the fastest
/// the failover bench runs, so the stateful pair stays stable on 2 shared
/// cores.
pub const POLL_MS: u64 = 10;
pub const HOLD_MS: u64 = 50;

/// Dynamic PAT of the client subnet to the inside VIP.
const PAT: &str = "[[nat]]\ntype = \"pat\"\nreal = \"198.18.1.0/24\"\nreal_interface = \"outside\"\nmapped_interface = \"inside\"\nmapped = \"interface\"\n";

fn unit(name: &str, role: &str) -> PairConfig {
    let mut c = PairConfig::new(name, role);
    c.unit_timers_ms = (POLL_MS, HOLD_MS);
    // The client side is trusted (level 100) and translated, so a connection
    // survives only if its connection and xlate records were replicated.
    c.security_levels = Some((100, 0));
    c.extra = PAT.into();
    c
}

/// Connections in `u`'s table (`show conn count --json`).
fn conn_count(u: &Unit) -> u64 {
    u.json(&["show", "conn", "count"]).map_or(0, |v| {
        ["in_use", "count", "conns"]
            .iter()
            .find_map(|k| v[*k].as_u64())
            .unwrap_or(0)
    })
}

pub fn trial(
    bins: &Binaries,
    opts: &Options,
    say: &mut dyn FnMut(&str),
) -> Result<Trial, BenchError> {
    let lab = PairLab::new()?;
    lab.host_checksums_in_software()?;
    let mut p = Pair::form_with(
        lab,
        bins,
        &unit("fwa", "primary"),
        &unit("fwb", "secondary"),
    )?;
    if !crate::failover::ping_server(&p.lab.client) {
        return Err(err(
            "tandem",
            "no ping from the client through the pair".into(),
        ));
    }
    let rsts = RstCounters::install(&p.lab.switch)?;
    let traffic = Traffic::start(&p.lab, opts)?;
    traffic.wait_established()?;
    let want = opts.conns as u64;
    wait_for("the standby to hold every connection", SETTLE, || {
        conn_count(&p.b) >= want
    })
    .map_err(|e| {
        err(
            "tandem",
            format!("{e}: unit B holds {} of {want}", conn_count(&p.b)),
        )
    })?;
    traffic.wait_flowing()?;
    say(&format!(
        "{} connections established, unit B holds {}; SIGKILL of unit A",
        opts.conns,
        conn_count(&p.b)
    ));
    let before = rsts.read()?;
    p.a.daemon.signal(libc::SIGKILL)?;
    let killed = Instant::now();
    p.b.wait_state("Active", None)?;
    let takeover = killed.elapsed();
    // The streams go on through B for the measured time.
    std::thread::sleep(opts.after_kill);
    let mut t = Trial {
        takeover_ms: takeover.as_secs_f64() * 1e3,
        ..Trial::default()
    };
    // RSTs of the failover, not of the teardown of connections already lost.
    rsts.count_since(&before, &mut t)?;
    traffic.finish(&mut t)?;
    let _ = p.b.daemon.stop(std::time::Duration::from_secs(5));
    Ok(t)
}
