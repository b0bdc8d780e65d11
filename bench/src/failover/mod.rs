//! The failover macro benchmark: paced 64-byte UDP from the client through
//! the VIP gateway of a [`PairLab`] to the server, the active unit killed
//! as a dead box mid-stream, the outage being the pktgen receiver's
//! `longest_gap_ms`. Rows: a tandemd Active/Standby pair at several unit
//! polltime/holdtime settings, and keepalived (VRRPv3, 10 ms adverts) with
//! kernel forwarding as the reference, all measured in the same run.
//!
//! Both pktgen ends use the io_uring backend (AF_PACKET): an AF_XDP sink
//! would swallow the server's ARP, and the units must resolve the server.
//! The sender aims at a MAC that moves with the active role (tandem's
//! configured virtual MAC, keepalived's `use_vmac`), so the client never
//! needs a new neighbour entry: what is measured is the pair's takeover.

pub(crate) mod keepalived;
pub(crate) mod tandem;

use std::time::Duration;

use pktgen::RecvReport;
use serde::Serialize;
use tandem_netns::topology::{addr, PairLab};
use tandem_netns::{wait_for, Daemon, Netns};

pub use crate::forward::{BenchError, Binaries};

/// Longest wait for a pktgen process to open its backend.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Slack on top of a phase's duration before a process is declared hung.
const EXIT_SLACK: Duration = Duration::from_secs(15);
/// Bound on every wait for a unit state or a link's carrier.
pub const SETTLE: Duration = Duration::from_secs(30);

/// What a run measures.
#[derive(Clone, Debug)]
pub struct Options {
    /// Trials per row (the outage figures are median, min and max).
    pub trials: usize,
    /// Offered load, frames per second.
    pub rate: u64,
    /// Frame length on the wire (without FCS).
    pub frame_len: usize,
    /// Traffic before the kill (also the false-failover watch window).
    pub before_kill: Duration,
    /// Traffic after the standby took over.
    pub after_takeover: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trials: 3,
            rate: 20_000,
            frame_len: 64,
            before_kill: Duration::from_secs(1),
            after_takeover: Duration::from_secs(1),
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    /// tandemd pair with these unit timers (milliseconds).
    Tandem { polltime_ms: u64, holdtime_ms: u64 },
    /// keepalived VRRPv3 with this advertisement interval (centiseconds
    /// are its unit; 10 ms is its smallest).
    Keepalived { advert_ms: u64 },
}

impl Row {
    pub fn name(&self) -> String {
        match self {
            Row::Tandem {
                polltime_ms,
                holdtime_ms,
            } => {
                if polltime_ms % 1000 == 0 && holdtime_ms % 1000 == 0 {
                    format!("tandem {}/{} s", polltime_ms / 1000, holdtime_ms / 1000)
                } else {
                    format!("tandem {polltime_ms}/{holdtime_ms} ms")
                }
            }
            Row::Keepalived { advert_ms } => format!("keepalived vrrp {advert_ms} ms"),
        }
    }

    /// The rows of a run: the fast timers, the defaults with `full`, and
    /// the keepalived reference.
    pub fn all(full: bool) -> Vec<Row> {
        let mut rows: Vec<Row> = [(1, 3), (10, 30), (200, 800)]
            .into_iter()
            .map(|(p, h)| Row::Tandem {
                polltime_ms: p,
                holdtime_ms: h,
            })
            .collect();
        if full {
            rows.push(Row::Tandem {
                polltime_ms: 1000,
                holdtime_ms: 15_000,
            });
        }
        rows.push(Row::Keepalived { advert_ms: 10 });
        rows
    }
}

/// What one trial measured.
#[derive(Clone, Debug)]
pub struct Trial {
    /// The receiver's longest gap, in milliseconds.
    pub outage_ms: f64,
    /// Role changes before the kill (the pair was healthy then).
    pub false_failovers: u64,
    pub recv: RecvReport,
}

/// A finished row, as printed (`--json`: one object per line).
#[derive(Clone, Debug, Serialize)]
pub struct RowReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polltime_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdtime_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advert_ms: Option<u64>,
    pub outage_median_ms: Option<f64>,
    pub outage_min_ms: Option<f64>,
    pub outage_max_ms: Option<f64>,
    /// Trials that produced a figure.
    pub trials: usize,
    pub false_failovers: u64,
    /// Why the row (or some trial of it) failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// Median of `v` (mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

impl RowReport {
    /// Summarises the trials of `row`; `failed` keeps the first error.
    pub fn from_trials(row: &Row, trials: &[Trial], failed: Option<String>) -> RowReport {
        let o: Vec<f64> = trials.iter().map(|t| t.outage_ms).collect();
        let (polltime_ms, holdtime_ms, advert_ms) = match row {
            Row::Tandem {
                polltime_ms,
                holdtime_ms,
            } => (Some(*polltime_ms), Some(*holdtime_ms), None),
            Row::Keepalived { advert_ms } => (None, None, Some(*advert_ms)),
        };
        RowReport {
            name: row.name(),
            polltime_ms,
            holdtime_ms,
            advert_ms,
            outage_median_ms: median(&o),
            outage_min_ms: o.iter().copied().reduce(f64::min),
            outage_max_ms: o.iter().copied().reduce(f64::max),
            trials: trials.len(),
            false_failovers: trials.iter().map(|t| t.false_failovers).sum(),
            failed,
        }
    }
}

/// The text table of `rows`.
pub fn table(rows: &[RowReport]) -> String {
    let mut s = format!(
        "{:<24} {:>10} {:>8} {:>8} {:>7} {:>7}\n",
        "row", "median ms", "min ms", "max ms", "trials", "false"
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in rows {
        s.push_str(&format!(
            "{:<24} {:>10} {:>8} {:>8} {:>7} {:>7}\n",
            r.name,
            f(r.outage_median_ms),
            f(r.outage_min_ms),
            f(r.outage_max_ms),
            r.trials,
            r.false_failovers
        ));
        if let Some(e) = &r.failed {
            s.push_str(&format!("  FAILED: {}\n", e.replace('\n', "\n    ")));
        }
    }
    s
}

/// Runs `opts.trials` trials of `row`, each on a fresh lab. A trial that
/// fails ends the row with what the trials before it measured.
pub fn run_row(row: &Row, bins: &Binaries, opts: &Options, say: &mut dyn FnMut(&str)) -> RowReport {
    let mut trials = Vec::new();
    let mut failed = None;
    for n in 0..opts.trials {
        say(&format!("{}: trial {}/{}", row.name(), n + 1, opts.trials));
        let res = match row {
            Row::Tandem {
                polltime_ms,
                holdtime_ms,
            } => tandem::trial(bins, opts, *polltime_ms, *holdtime_ms),
            Row::Keepalived { advert_ms } => keepalived::trial(bins, opts, *advert_ms),
        };
        match res {
            Ok(t) => {
                say(&format!(
                    "{}: outage {:.1} ms, {} received, {} lost, {} false failovers",
                    row.name(),
                    t.outage_ms,
                    t.recv.received,
                    t.recv.lost,
                    t.false_failovers
                ));
                trials.push(t);
            }
            Err(e) => {
                say(&format!("{}: trial {} FAILED: {e}", row.name(), n + 1));
                failed = Some(format!("trial {}: {e}", n + 1));
                break;
            }
        }
    }
    RowReport::from_trials(row, &trials, failed)
}

/// `aa:bb:..` form of a MAC for pktgen.
pub(crate) fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Waits until every data, failover and state link of both units reports
/// carrier (veth operstate lags `ip link set up`).
pub(crate) fn wait_carrier(lab: &PairLab) -> Result<(), BenchError> {
    Ok(lab.wait_for_carrier(SETTLE)?)
}

/// Waits until `d` printed `line` (or exited, which is an error).
fn wait_line(d: &mut Daemon, line: &str) -> Result<(), BenchError> {
    let what = format!("{} to print `{line}`", d.name());
    let res = wait_for(&what, OPEN_TIMEOUT, || {
        d.log().contains(line) || !d.is_running()
    });
    if res.is_err() || !d.log().contains(line) {
        return Err(BenchError::Phase {
            phase: "failover".into(),
            detail: format!(
                "{} did not get ready within {OPEN_TIMEOUT:?}:\n{}",
                d.name(),
                d.log_tail(20)
            ),
        });
    }
    Ok(())
}

/// A running stream: the receiver on the server's `s0`, the sender on the
/// client's `c0` aimed at `dst_mac`, both io_uring.
pub(crate) struct Stream {
    recv: Daemon,
    send: Daemon,
    duration: Duration,
}

impl Stream {
    /// Starts the receiver, then (once it listens) the sender for `duration`.
    pub fn start(
        lab: &PairLab,
        bins: &Binaries,
        opts: &Options,
        dst_mac: [u8; 6],
        duration: Duration,
    ) -> Result<Stream, BenchError> {
        let recv_for = ms(duration + EXIT_SLACK);
        let mut recv = Daemon::spawn(
            &lab.server,
            "pktgen-recv-failover",
            &bins.pktgen.to_string_lossy(),
            &[
                "recv",
                "--dev",
                "s0",
                "--backend",
                "io_uring",
                "--duration",
                &recv_for,
                "--idle-timeout",
                "1s",
                "--json",
            ],
        )?;
        wait_line(&mut recv, "pktgen: receiving on")?;
        let mac = mac_str(dst_mac);
        let size = opts.frame_len.to_string();
        let rate = opts.rate.to_string();
        let client = addr::OUTSIDE_CLIENT.to_string();
        let server = addr::INSIDE_SERVER.to_string();
        let send_for = ms(duration);
        let mut send = Daemon::spawn(
            &lab.client,
            "pktgen-send-failover",
            &bins.pktgen.to_string_lossy(),
            &[
                "send",
                "--dev",
                "c0",
                "--backend",
                "io_uring",
                "--dst-mac",
                &mac,
                "--src-ip",
                &client,
                "--dst-ip",
                &server,
                "--size",
                &size,
                "--rate",
                &rate,
                "--duration",
                &send_for,
                "--json",
            ],
        )?;
        wait_line(&mut send, "pktgen: sending on")?;
        Ok(Stream {
            recv,
            send,
            duration,
        })
    }

    /// Waits for both ends and returns the receiver's report.
    pub fn finish(mut self) -> Result<RecvReport, BenchError> {
        let err = |detail: String| BenchError::Phase {
            phase: "failover".into(),
            detail,
        };
        for d in [&mut self.send, &mut self.recv] {
            let status = d
                .wait_exit(self.duration + EXIT_SLACK)
                .map_err(|e| err(format!("{}: {e}:\n{}", d.name(), d.log_tail(20))))?;
            if !status.success() {
                return Err(err(format!(
                    "{} exited with {status}:\n{}",
                    d.name(),
                    d.log_tail(20)
                )));
            }
        }
        let log = self.recv.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or_else(|| err(format!("receiver printed no report:\n{log}")))?;
        let r: RecvReport = serde_json::from_str(line)
            .map_err(|e| err(format!("cannot read the receiver's report `{line}`: {e}")))?;
        if r.received == 0 {
            return Err(err("no frame reached the server".into()));
        }
        Ok(r)
    }
}

/// Pings the server from `ns` (bounded) so the unit's neighbour entry for
/// it exists before traffic starts.
pub(crate) fn ping_server(ns: &Netns) -> bool {
    ns.exec(
        "ping",
        &[
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            &addr::INSIDE_SERVER.to_string(),
        ],
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn row_names_and_report_summary() {
        let rows = Row::all(true);
        let names: Vec<String> = rows.iter().map(Row::name).collect();
        assert_eq!(
            names,
            [
                "tandem 1/3 ms",
                "tandem 10/30 ms",
                "tandem 200/800 ms",
                "tandem 1/15 s",
                "keepalived vrrp 10 ms"
            ]
        );
        assert_eq!(Row::all(false).len(), 4);
        let t = |o: f64, f: u64| Trial {
            outage_ms: o,
            false_failovers: f,
            recv: RecvReport::default(),
        };
        let r = RowReport::from_trials(&rows[1], &[t(5.0, 0), t(9.0, 1), t(7.0, 0)], None);
        assert_eq!(r.outage_median_ms, Some(7.0));
        assert_eq!(r.outage_min_ms, Some(5.0));
        assert_eq!(r.outage_max_ms, Some(9.0));
        assert_eq!(r.false_failovers, 1);
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("\"name\":\"tandem 10/30 ms\""), "{j}");
        assert!(j.contains("\"polltime_ms\":10"), "{j}");
        let f = RowReport::from_trials(&rows[4], &[], Some("no keepalived".into()));
        assert!(table(&[f]).contains("FAILED: no keepalived"));
    }
}
