//! One measurement phase: a pktgen receiver on the server's `s0`, then a
//! pktgen sender on the client's `c0` aimed at the unit's outside MAC, both
//! AF_XDP, both pinned to the traffic core; their JSON reports parsed.
//!
//! Ordering is by the programs' own output, never by sleeping: the sender
//! starts once the receiver printed `pktgen: receiving on` (its XDP program
//! and socket are in place), and the receiver ends by itself `drain` after
//! the last frame arrived (`--idle-timeout`). Every wait has a deadline, and
//! both processes are [`Daemon`]s, killed by PID if anything goes wrong.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pktgen::{RecvReport, SendReport};
use tandem_netns::topology::{addr, GatewayLab};
use tandem_netns::{wait_for, Daemon, Netns};

use super::cpu::{self, CoreUse};
use super::tools::Binaries;
use super::{BenchError, Options};

/// Longest wait for a pktgen process to open its backend.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Slack on top of a phase's duration before a process is declared hung.
const EXIT_SLACK: Duration = Duration::from_secs(15);

/// Everything a phase needs from its row.
pub(crate) struct Traffic<'a> {
    pub lab: &'a GatewayLab,
    pub bins: &'a Binaries,
    pub opts: &'a Options,
    /// Destination MAC of the sender's frames: the unit's `out0`.
    pub unit_mac: [u8; 6],
    /// Re-pins the lab's NAPI kthreads (after an XDP attach re-created them).
    pub repin: &'a dyn Fn() -> Result<(), BenchError>,
    /// The unit's threads to account on the forwarding core, as
    /// `(label, /proc/.../stat path)`.
    pub unit_threads: &'a dyn Fn() -> Vec<(String, String)>,
}

/// What the sender and the receiver of one phase reported, and what the
/// unit's inside veth counted.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    pub sent: SendReport,
    pub recv: RecvReport,
    /// Frames the unit transmitted on `in0` during the phase, whether the
    /// server's side took them or not (`ip -s link`: tx packets + tx dropped;
    /// veth counts a frame its full peer ring refused as a tx drop).
    pub unit_tx: u64,
    /// Of those, refused by the server side (its veth ring was full).
    pub unit_tx_dropped: u64,
    /// How the forwarding core was used while the sender ran.
    pub core: Option<CoreUse>,
    /// With [`Options::perf`], a flat-out phase's profile of the forwarding
    /// core: the top of `perf report` and where the data file is.
    pub profile: Option<String>,
}

impl PhaseResult {
    /// Frames delivered to the sink per second of sending. Not the
    /// receiver's own `pps` (received over first-to-last arrival), which
    /// overstates a unit that delivers a few bunched-up bursts.
    pub fn delivered_pps(&self) -> f64 {
        let s = self.sent.elapsed.as_secs_f64();
        if s > 0.0 {
            self.recv.received as f64 / s
        } else {
            0.0
        }
    }

    /// Frames the unit forwarded per second of sending: its own rate,
    /// whatever the sink could take.
    pub fn unit_pps(&self) -> f64 {
        let s = self.sent.elapsed.as_secs_f64();
        if s > 0.0 {
            self.unit_tx as f64 / s
        } else {
            0.0
        }
    }

    /// Frames sent but not received, in percent of those sent.
    pub fn loss_pct(&self) -> f64 {
        if self.sent.sent == 0 {
            return 100.0;
        }
        let lost = self.sent.sent.saturating_sub(self.recv.received);
        lost as f64 * 100.0 / self.sent.sent as f64
    }
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The last JSON object line of a log (pktgen's report; its stderr lines
/// are interleaved in the same file).
fn last_json(log: &str) -> Option<&str> {
    log.lines().rev().find(|l| l.trim_start().starts_with('{'))
}

/// `(tx packets, tx dropped)` of `dev` in `ns` (`ip -s -j link show`).
fn tx_counters(ns: &Netns, dev: &str) -> Result<(u64, u64), BenchError> {
    let out = ns.ip(&["-s", "-j", "link", "show", dev])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Phase {
            phase: "counters".into(),
            detail: format!("ip -s -j link show {dev} in {}: {e}", ns.name()),
        })?;
    let tx = &v[0]["stats64"]["tx"];
    match (tx["packets"].as_u64(), tx["dropped"].as_u64()) {
        (Some(p), Some(d)) => Ok((p, d)),
        _ => Err(BenchError::Phase {
            phase: "counters".into(),
            detail: format!(
                "ip -s -j link show {dev} in {}: no tx counters in {v}",
                ns.name()
            ),
        }),
    }
}

/// `ip netns exec NS [chrt -f 1] taskset -c CORE pktgen ARGS`, logged and
/// guarded.
fn spawn_pktgen(
    ns: &Netns,
    name: &str,
    bins: &Binaries,
    core: usize,
    fifo: bool,
    args: &[&str],
) -> Result<Daemon, BenchError> {
    let mut cmd = if fifo {
        let mut c = ns.cmd("chrt");
        c.args(["-f", "1", "taskset"]);
        c
    } else {
        ns.cmd("taskset")
    };
    cmd.args(["-c", &core.to_string()])
        .arg(&bins.pktgen)
        .args(args);
    Ok(Daemon::spawn_cmd(name, cmd)?)
}

/// Waits until `d` printed `line` (or exited, which is an error).
fn wait_line(d: &mut Daemon, line: &str, phase: &str) -> Result<(), BenchError> {
    let what = format!("{} to print `{line}`", d.name());
    let res = wait_for(&what, OPEN_TIMEOUT, || {
        d.log().contains(line) || !d.is_running()
    });
    if res.is_err() || !d.log().contains(line) {
        return Err(BenchError::Phase {
            phase: phase.to_string(),
            detail: format!(
                "{} did not get ready within {OPEN_TIMEOUT:?}:\n{}",
                d.name(),
                d.log_tail(20)
            ),
        });
    }
    Ok(())
}

/// Waits for `d` to exit successfully and parses its JSON report.
fn report<T: serde::de::DeserializeOwned>(
    d: &mut Daemon,
    timeout: Duration,
    phase: &str,
) -> Result<T, BenchError> {
    let err = |detail: String| BenchError::Phase {
        phase: phase.to_string(),
        detail,
    };
    let status = d
        .wait_exit(timeout)
        .map_err(|e| err(format!("{}: {e}; log tail:\n{}", d.name(), d.log_tail(20))))?;
    let log = d.log();
    if !status.success() {
        return Err(err(format!(
            "{} exited with {status}:\n{}",
            d.name(),
            d.log_tail(20)
        )));
    }
    let line = last_json(&log).ok_or_else(|| {
        err(format!(
            "{} printed no JSON report:\n{}",
            d.name(),
            d.log_tail(20)
        ))
    })?;
    serde_json::from_str(line).map_err(|e| {
        err(format!(
            "{}: cannot read its report `{line}`: {e}",
            d.name()
        ))
    })
}

/// Lines of `perf report` kept in the row's notes.
const PROFILE_LINES: usize = 25;

/// `perf record` of the forwarding core while the sender runs.
struct Profiler {
    perf: Daemon,
    data: std::path::PathBuf,
}

impl Profiler {
    /// Samples the forwarding core (software clock: this VM has no PMU)
    /// with call graphs for most of the phase.
    fn start(t: &Traffic, phase: &str, duration: Duration) -> Result<Profiler, BenchError> {
        // One file per profiled phase of the whole run.
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{phase}-{n}.perf.data", t.lab.unit.name());
        let data = tandem_netns::log_dir()?.join(name);
        let mut cmd = std::process::Command::new("perf");
        cmd.args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-C"])
            .arg(t.opts.forward_core.to_string())
            .arg("-o")
            .arg(&data)
            .args(["--", "sleep"])
            // Stop before the sender does, so only traffic is sampled.
            .arg(format!("{:.3}", duration.as_secs_f64() * 0.8));
        let perf = Daemon::spawn_cmd(&format!("perf-{phase}"), cmd)?;
        Ok(Profiler { perf, data })
    }

    /// `perf report` of the data with `args`, its non-comment lines.
    fn report(&self, args: &[&str]) -> Result<Vec<String>, String> {
        let out = std::process::Command::new("perf")
            .arg("report")
            .arg("-i")
            .arg(&self.data)
            .args(["--stdio", "--no-children", "-g", "none"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run perf report: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "perf report failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Waits for perf and summarises the profile: the share of each command
    /// on the core, then the hottest symbols of the unit's own threads
    /// (`unit_comm` tells them apart). Failures become the text.
    fn finish(mut self, unit_comm: impl Fn(&str) -> bool) -> String {
        if let Err(e) = self.perf.wait_exit(EXIT_SLACK) {
            return format!("perf record did not finish: {e}");
        }
        let by_comm = match self.report(&["--sort", "comm", "--percent-limit", "1"]) {
            Ok(l) => l,
            Err(e) => return e,
        };
        let comms: Vec<String> = by_comm
            .iter()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|c| unit_comm(c))
            .collect();
        let mut text = format!(
            "profile of the forwarding core ({}; `perf report -i` it for more)\nby command:\n{}",
            self.data.display(),
            by_comm.join("\n")
        );
        if !comms.is_empty() {
            let top = self
                .report(&[
                    "--comms",
                    &comms.join(","),
                    "--sort",
                    "comm,dso,sym",
                    "--percent-limit",
                    "0.5",
                ])
                .unwrap_or_else(|e| vec![e]);
            let top: Vec<String> = top.into_iter().take(PROFILE_LINES).collect();
            text.push_str(&format!(
                "\nhottest symbols of the unit's threads (% of all samples):\n{}",
                top.join("\n")
            ));
        }
        text
    }
}

/// Runs one phase: `duration` of traffic, paced at `rate` pps or flat out.
pub(crate) fn run_phase(
    t: &Traffic,
    phase: &str,
    rate: Option<u64>,
    duration: Duration,
) -> Result<PhaseResult, BenchError> {
    let o = t.opts;
    let recv_for = ms(duration + EXIT_SLACK);
    let drain = ms(o.drain);
    let mut recv = spawn_pktgen(
        &t.lab.server,
        &format!("pktgen-recv-{phase}"),
        t.bins,
        o.traffic_core,
        o.sink_fifo,
        &[
            "recv",
            "--dev",
            "s0",
            "--backend",
            "afxdp",
            "--duration",
            &recv_for,
            "--idle-timeout",
            &drain,
            "--json",
        ],
    )?;
    wait_line(&mut recv, "pktgen: receiving on", phase)?;
    // The receiver's XDP attach re-created s0's NAPI kthreads.
    (t.repin)()?;

    let dst_mac = mac_str(t.unit_mac);
    let size = o.frame_len.to_string();
    let send_for = ms(duration);
    let rate_s = rate.map(|r| r.to_string());
    let client = addr::OUTSIDE_CLIENT.to_string();
    let server = addr::INSIDE_SERVER.to_string();
    let mut args = vec![
        "send",
        "--dev",
        "c0",
        "--backend",
        "afxdp",
        "--dst-mac",
        &dst_mac,
        "--src-ip",
        &client,
        "--dst-ip",
        &server,
        "--size",
        &size,
        "--duration",
        &send_for,
        "--json",
    ];
    if let Some(r) = &rate_s {
        args.extend(["--rate", r.as_str()]);
    }
    let before = tx_counters(&t.lab.unit, "in0")?;
    let mut send = spawn_pktgen(
        &t.lab.client,
        &format!("pktgen-send-{phase}"),
        t.bins,
        o.traffic_core,
        false,
        &args,
    )?;
    wait_line(&mut send, "pktgen: sending on", phase)?;
    // And the sender's attach re-created c0's.
    (t.repin)()?;
    let threads = (t.unit_threads)();
    let cpu_before = cpu::sample(o.forward_core, &threads);
    let perf = match (o.perf, rate) {
        (true, None) => Some(Profiler::start(t, phase, duration)?),
        _ => None,
    };

    let sent: SendReport = report(&mut send, duration + EXIT_SLACK, phase)?;
    let core = CoreUse::between(&cpu_before, &cpu::sample(o.forward_core, &threads));
    let recv: RecvReport = report(&mut recv, o.drain + EXIT_SLACK, phase)?;
    // After the receiver: `perf report` is heavy, keep it out of the traffic.
    let profile = perf.map(|p| {
        p.finish(|comm| {
            comm.starts_with("napi/out0")
                || comm.starts_with("napi/in0")
                || comm.starts_with("tandem")
        })
    });
    let after = tx_counters(&t.lab.unit, "in0")?;
    let unit_tx_dropped = after.1.saturating_sub(before.1);
    let unit_tx = after.0.saturating_sub(before.0) + unit_tx_dropped;
    if recv.received == 0 {
        return Err(BenchError::Phase {
            phase: phase.to_string(),
            detail: format!(
                "no frame reached the sink ({} sent at {:.0} pps)",
                sent.sent, sent.pps
            ),
        });
    }
    Ok(PhaseResult {
        sent,
        recv,
        unit_tx,
        unit_tx_dropped,
        core,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_is_the_last_json_object() {
        let log = "pktgen: receiving on s0\n{\"a\":1}\nINFO x\n{\"b\":2}\nbye\n";
        assert_eq!(last_json(log), Some("{\"b\":2}"));
        assert_eq!(last_json("nothing"), None);
        assert_eq!(mac_str([2, 0, 0xab, 0, 0, 1]), "02:00:ab:00:00:01");
        assert_eq!(ms(Duration::from_micros(10)), "1ms");
    }

    #[test]
    fn loss_counts_frames_never_received() {
        let mut p = PhaseResult {
            sent: SendReport::default(),
            recv: RecvReport::default(),
            unit_tx: 0,
            unit_tx_dropped: 0,
            core: None,
            profile: None,
        };
        assert_eq!(p.loss_pct(), 100.0);
        p.sent.sent = 1000;
        p.sent.elapsed = Duration::from_millis(500);
        p.recv.received = 990;
        assert_eq!(p.delivered_pps(), 1980.0);
        p.unit_tx = 1000;
        assert_eq!(p.unit_pps(), 2000.0);
        assert!((p.loss_pct() - 1.0).abs() < 1e-9);
        p.recv.received = 1001;
        assert_eq!(p.loss_pct(), 0.0);
    }
}
