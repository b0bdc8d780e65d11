//! The tandem rows: a real tandemd Active/Standby pair on a fresh
//! [`PairLab`] with the row's unit timers and virtual MACs, traffic through
//! the active, SIGKILL of the active (its data path dies with it: a dead
//! box), the outage read off the receiver.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tandem_netns::pair::PairConfig;
use tandem_netns::topology::{addr, PairLab};
use tandem_netns::{log_dir, wait_for, Daemon, Netns};

use super::{ping_server, wait_carrier, Binaries, Options, Stream, Trial, SETTLE};
use crate::forward::tools::profile_dir;
use crate::forward::BenchError;

/// Virtual MACs of the outside interface (the sender's destination) and
/// the inside one: they move with the active role, so neither the client
/// nor the server needs a new neighbour entry after a takeover.
pub const OUTSIDE_VMAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0a, 0x01];

/// A running tandemd of the pair.
pub struct Unit {
    pub daemon: Daemon,
    pub socket: PathBuf,
    tandemctl: PathBuf,
}

impl Unit {
    /// Starts tandemd in `ns` with the unit config `c` (the survival bench
    /// runs a stateful one) and waits (bounded) for its control socket.
    pub fn start_config(ns: &Netns, bins: &Binaries, c: &PairConfig) -> Result<Unit, BenchError> {
        let name = c.name.as_str();
        let dir = log_dir()?;
        let socket = dir.join(format!("{}-{name}.sock", ns.name()));
        let path = dir.join(format!("{}-{name}.toml", ns.name()));
        std::fs::write(&path, c.render(&socket))
            .map_err(|e| BenchError::Tandemd(format!("write {}: {e}", path.display())))?;
        let mut cmd = ns.cmd(&bins.tandemd.to_string_lossy());
        cmd.arg("-c")
            .arg(&path)
            .arg("--profile-dir")
            .arg(profile_dir())
            .env("RUST_LOG", "info");
        let daemon = Daemon::spawn_cmd(name, cmd)?;
        let mut unit = Unit {
            daemon,
            socket,
            tandemctl: bins.tandemctl.clone(),
        };
        let ready = wait_for(&format!("{name} control socket"), SETTLE, || {
            unit.socket.exists() && unit.json(&["show", "version"]).is_ok()
        });
        if ready.is_err() || !unit.daemon.is_running() {
            return Err(BenchError::Tandemd(format!(
                "{name} in {} did not become ready:\n{}",
                ns.name(),
                unit.daemon.log_tail(30)
            )));
        }
        Ok(unit)
    }

    /// `tandemctl -s SOCKET args... --json`, parsed.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value, BenchError> {
        let out = Command::new(&self.tandemctl)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .arg("--json")
            .output()
            .map_err(|e| BenchError::Tandemd(format!("run tandemctl {args:?}: {e}")))?;
        if !out.status.success() {
            return Err(BenchError::Tandemd(format!(
                "tandemctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| BenchError::Tandemd(format!("tandemctl {args:?} --json: {e}")))
    }

    /// (this host's state, the mate's state) from `show failover`.
    pub fn states(&self) -> (String, Option<String>) {
        match self.json(&["show", "failover"]) {
            Ok(v) => (
                v["this_host"]["state"].as_str().unwrap_or("?").to_string(),
                v["other_host"]["state"].as_str().map(str::to_string),
            ),
            Err(_) => ("?".into(), None),
        }
    }

    /// Entries in `show failover history`.
    pub fn history_len(&self) -> Result<u64, BenchError> {
        let v = self.json(&["show", "failover", "history"])?;
        Ok(v.as_array().map_or(0, |a| a.len() as u64))
    }

    /// Waits (bounded) until this unit is `this` and sees its mate as
    /// `other` (`None`: any).
    pub fn wait_state(&mut self, this: &str, other: Option<&str>) -> Result<(), BenchError> {
        let ok = wait_for(&format!("{} {this}", self.daemon.name()), SETTLE, || {
            let (t, o) = self.states();
            t == this && other.is_none_or(|w| o.as_deref() == Some(w))
        });
        if ok.is_err() {
            return Err(BenchError::Tandemd(format!(
                "{}: wanted {this} / {other:?}, have {:?}\n{}",
                self.daemon.name(),
                self.states(),
                self.daemon.log_tail(30)
            )));
        }
        Ok(())
    }
}

/// A formed pair: A primary and active, B secondary and standby ready.
pub struct Pair {
    pub lab: PairLab,
    pub a: Unit,
    pub b: Unit,
}

impl Pair {
    /// Builds the lab, starts A alone until it is active, then B, and waits
    /// until they agree.
    pub fn form(bins: &Binaries, poll: u64, hold: u64) -> Result<Pair, BenchError> {
        let mut a = PairConfig::new("fwa", "primary");
        let mut b = PairConfig::new("fwb", "secondary");
        a.unit_timers_ms = (poll, hold);
        b.unit_timers_ms = (poll, hold);
        Pair::form_with(PairLab::new()?, bins, &a, &b)
    }

    /// [`Pair::form`] on `lab` with the unit configs `a` (primary) and `b`.
    pub fn form_with(
        lab: PairLab,
        bins: &Binaries,
        a: &PairConfig,
        b: &PairConfig,
    ) -> Result<Pair, BenchError> {
        wait_carrier(&lab)?;
        let mut a = Unit::start_config(&lab.unit_a, bins, a)?;
        a.wait_state("Active", None)?;
        let mut b = Unit::start_config(&lab.unit_b, bins, b)?;
        a.wait_state("Active", Some("Standby Ready"))?;
        b.wait_state("Standby Ready", Some("Active"))?;
        Ok(Pair { lab, a, b })
    }

    /// Role changes logged by either unit since `since` (history lengths).
    pub fn transitions_since(&self, since: (u64, u64)) -> Result<u64, BenchError> {
        let now = (self.a.history_len()?, self.b.history_len()?);
        Ok(now.0.saturating_sub(since.0) + now.1.saturating_sub(since.1))
    }
}

/// One trial: form, stream, SIGKILL A, wait for B active, read the gap.
pub fn trial(bins: &Binaries, opts: &Options, poll: u64, hold: u64) -> Result<Trial, BenchError> {
    let mut p = Pair::form(bins, poll, hold)?;
    // A resolves the server before the stream (B does so when it takes over).
    if !ping_server(&p.lab.client) {
        return Err(BenchError::Tandemd(format!(
            "no ping from the client through the pair to {}",
            addr::INSIDE_SERVER
        )));
    }
    let since = (p.a.history_len()?, p.b.history_len()?);
    let hold_d = Duration::from_millis(hold);
    let duration = opts.before_kill + hold_d * 2 + opts.after_takeover;
    let stream = Stream::start(&p.lab, bins, opts, OUTSIDE_VMAC, duration)?;
    // Traffic time before the kill: the measured stream must be flowing
    // steadily through A, and the pair is watched for false failovers.
    std::thread::sleep(opts.before_kill);
    let false_failovers = p.transitions_since(since)?;
    p.a.daemon.signal(libc::SIGKILL)?;
    p.b.wait_state("Active", None)?;
    let recv = stream.finish()?;
    let _ = p.b.daemon.stop(Duration::from_secs(5));
    Ok(Trial {
        outage_ms: recv.longest_gap_ms,
        false_failovers,
        recv,
    })
}
