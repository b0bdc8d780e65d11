//! The connection-survival benchmark (issue 4): N concurrent TCP
//! connections client → server through a gateway pair of a [`PairLab`],
//! each streaming a verified pattern both ways ([`tandem_netns::streams`]),
//! plus a paced UDP flow; the active unit is killed as a dead box; the
//! streams go on for a bounded time; then every connection is classified
//! (survived intact, reset, stalled out) and the longest stalls of the
//! survivors are read. Rows, measured in the same run on the same topology:
//!
//! * `tandem stateful pair (PAT)`: two tandemd units, stateful with dynamic
//!   PAT as in `tests/lab/stateful.rs`, SIGKILL of the active.
//! * `keepalived + conntrackd (SNAT to VIP)`: kernel forwarding with a
//!   stateful nftables ruleset and source NAT to the inside VIP with random
//!   ports, keepalived (VRRPv3) moving the VIPs, conntrackd in FTFW mode over
//!   the state link with the keepalived notify script of conntrackd's
//!   `primary-backup.sh`; the master is made a dead box (drop-all, then
//!   SIGKILL of keepalived and conntrackd). Conntrack is strict
//!   (`nf_conntrack_tcp_loose=0`) and the ports random, so a connection
//!   survives only through replication.
//! * `control: keepalived, no conntrackd`: the same without conntrackd,
//!   which must lose every connection: the proof that the kernel setup is
//!   strict enough for the conntrackd row to mean something.
//!
//! Traffic: by default the server *pushes* its own verified stream on a
//! timer ([`Options::server_push`]) besides verifying the client's, so
//! server → client segments reach the new active right after it takes the
//! VIPs, before a conntrackd commit; with echo servers (`server_push:
//! None`) nothing from the server arrives until its retransmission timeout
//! (≥ 200 ms), after the commit, so the server never tests that window.
//!
//! Who sent a reset is counted on the lab's switch: an nftables bridge
//! table counts TCP RST segments per bridge port and direction, so the RSTs
//! a unit *originated* are those it sent minus those it was handed to
//! forward (per direction), whatever the unit runs.

mod conntrackd;
mod tandem;

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tandem_netns::streams::{
    run_client, ClientConfig, End, Progress, Push, Server, ServerConfig, ServerReport,
    StreamsError, StreamsReport,
};
use tandem_netns::topology::{addr, PairLab};
use tandem_netns::{wait_for, Netns};

pub use crate::failover::median;
pub use crate::forward::{BenchError, Binaries};

/// Bound on every wait for a state, a replication or the streams.
pub const SETTLE: Duration = Duration::from_secs(30);
const TCP_PORT: u16 = 5001;
const UDP_PORT: u16 = 5002;

fn err(phase: &str, detail: String) -> BenchError {
    BenchError::Phase {
        phase: phase.into(),
        detail,
    }
}

/// What a run measures.
#[derive(Clone, Debug)]
pub struct Options {
    /// Trials per row (figures are medians across trials).
    pub trials: usize,
    /// Concurrent TCP connections.
    pub conns: usize,
    /// Pattern bytes per second per connection.
    pub rate_per_conn: u64,
    /// One write per connection every this long.
    pub write_interval: Duration,
    /// Streaming after the kill, before the connections are closed.
    pub after_kill: Duration,
    /// How long a connection may take to finish its echo after that;
    /// a connection still without progress then has stalled out.
    pub drain: Duration,
    /// UDP datagram spacing (the UDP outage's resolution).
    pub udp_interval: Duration,
    /// The server pushes its own stream (at `rate_per_conn`), one write
    /// per connection this often, instead of echoing; `None`: echo.
    pub server_push: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trials: 3,
            conns: 100,
            rate_per_conn: 2000,
            write_interval: Duration::from_millis(50),
            after_kill: Duration::from_secs(5),
            drain: Duration::from_secs(5),
            udp_interval: Duration::from_millis(1),
            server_push: Some(DEFAULT_PUSH),
        }
    }
}

/// The server's default push interval.
pub const DEFAULT_PUSH: Duration = Duration::from_millis(PUSH_MS);
pub const PUSH_MS: u64 = 5;

impl Options {
    /// The test-mode configuration: 10 connections, one trial, short.
    pub fn smoke() -> Options {
        Options {
            trials: 1,
            conns: 10,
            after_kill: Duration::from_secs(3),
            drain: Duration::from_secs(3),
            ..Options::default()
        }
    }

    /// The traffic column: `echo` or `push N ms`.
    pub fn traffic(&self) -> String {
        self.server_push
            .map_or("echo".into(), |p| format!("push {} ms", p.as_millis()))
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    Tandem,
    Conntrackd,
    /// keepalived + conntrackd with NAT only, no forward filter.
    ConntrackdNatOnly,
    /// keepalived alone on the same strict kernel firewall: nothing is
    /// replicated, so no connection may survive, or the setup is not
    /// strict and the conntrackd row proves nothing.
    Control,
    /// The control with NAT only, no forward filter.
    ControlNatOnly,
}

impl Row {
    pub const ALL: [Row; 3] = [Row::Tandem, Row::Conntrackd, Row::Control];

    /// The rows of a run: [`Row::ALL`], with `nat_only` also the kernel
    /// rows without the forward filter.
    pub fn all(nat_only: bool) -> Vec<Row> {
        let mut v = Row::ALL.to_vec();
        if nat_only {
            v.extend([Row::ConntrackdNatOnly, Row::ControlNatOnly]);
        }
        v
    }

    pub fn name(&self) -> String {
        let kernel = match self {
            Row::Tandem => {
                return format!(
                    "tandem stateful pair (PAT) {}/{} ms",
                    tandem::POLL_MS,
                    tandem::HOLD_MS
                )
            }
            Row::Conntrackd => "keepalived + conntrackd (SNAT to VIP)",
            Row::Control => "control: keepalived, no conntrackd",
            Row::ConntrackdNatOnly => "keepalived + conntrackd, NAT only",
            Row::ControlNatOnly => "control: keepalived, NAT only",
        };
        format!("{kernel}, vrrp {} ms", conntrackd::ADVERT_MS)
    }
}

/// What one trial measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Trial {
    pub conns: usize,
    /// Established before the kill.
    pub established: usize,
    /// Every byte echoed and verified, closed with a FIN at the end.
    pub survived: usize,
    /// Reset at either end (client or server saw ECONNRESET/EPIPE).
    pub reset: usize,
    /// No reset, but no progress until the drain deadline.
    pub stalled: usize,
    /// Ended any other way (mismatch, early FIN, socket error).
    pub other: usize,
    /// TCP RST segments the new active unit originated (not forwarded)
    /// between the kill and the end of the streaming phase.
    pub rst_new_active: u64,
    /// TCP RST segments the server's stack sent.
    pub rst_server: u64,
    /// Longest and median stall (echo: no echo progress while data was
    /// unechoed; push: the longest gap in the pushed stream) over the
    /// surviving connections, each its own longest.
    pub stall_max_ms: Option<f64>,
    pub stall_median_ms: Option<f64>,
    /// The UDP receiver's longest gap between datagrams.
    pub udp_outage_ms: Option<f64>,
    /// Distinct source addresses the server saw for the UDP flow (1: the
    /// same translation across the failover).
    pub udp_sources: usize,
    /// Kill to the new active holding the VIPs (control plane, polled).
    pub takeover_ms: f64,
    /// Kill to the end of the notify script's commit (`conntrackd -c`) of
    /// the external cache into the new active's kernel (conntrackd rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_ms: Option<f64>,
}

/// A finished row, as printed (`--json`: one object per line).
#[derive(Clone, Debug, Serialize)]
pub struct RowReport {
    pub name: String,
    /// What the server sends: `echo` or `push N ms` ([`Options::traffic`]).
    pub traffic: String,
    pub conns: usize,
    /// Medians across the trials.
    pub survived: Option<f64>,
    pub reset: Option<f64>,
    pub stalled: Option<f64>,
    pub other: Option<f64>,
    pub rst_new_active: Option<f64>,
    pub stall_max_ms: Option<f64>,
    pub stall_median_ms: Option<f64>,
    pub udp_outage_ms: Option<f64>,
    pub takeover_ms: Option<f64>,
    pub commit_ms: Option<f64>,
    pub trials: Vec<Trial>,
    /// Why the row (or a trial of it) could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl RowReport {
    pub fn from_trials(row: Row, conns: usize, trials: Vec<Trial>, failed: Option<String>) -> Self {
        let m = |f: &dyn Fn(&Trial) -> Option<f64>| {
            median(&trials.iter().filter_map(f).collect::<Vec<_>>())
        };
        RowReport {
            name: row.name(),
            traffic: "echo".into(),
            conns,
            survived: m(&|t| Some(t.survived as f64)),
            reset: m(&|t| Some(t.reset as f64)),
            stalled: m(&|t| Some(t.stalled as f64)),
            other: m(&|t| Some(t.other as f64)),
            rst_new_active: m(&|t| Some(t.rst_new_active as f64)),
            stall_max_ms: m(&|t| t.stall_max_ms),
            stall_median_ms: m(&|t| t.stall_median_ms),
            udp_outage_ms: m(&|t| t.udp_outage_ms),
            takeover_ms: m(&|t| Some(t.takeover_ms)),
            commit_ms: m(&|t| t.commit_ms),
            trials,
            failed,
        }
    }
}

/// The text table of `rows`.
pub fn table(rows: &[RowReport]) -> String {
    let line = |c: [&str; 13]| {
        format!(
            "{:<50} {:>10} {:>9} {:>6} {:>8} {:>8} {:>6} {:>7} {:>7} {:>8} {:>8} {:>7} {:>11}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]
        )
    };
    let mut s = line([
        "row (medians across trials)",
        "server",
        "survived",
        "reset",
        "RSTs by",
        "stalled",
        "other",
        "max",
        "median",
        "UDP gap",
        "takeover",
        "commit",
        "survived",
    ]);
    s.push_str(&line([
        "",
        "sends",
        "",
        "",
        "new act.",
        "out",
        "",
        "stall ms",
        "stall ms",
        "ms",
        "ms",
        "ms",
        "per trial",
    ]));
    let n = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v}"));
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in rows {
        s.push_str(&line([
            &r.name,
            &r.traffic,
            &r.survived
                .map_or("-".to_string(), |v| format!("{v}/{}", r.conns)),
            &n(r.reset),
            &n(r.rst_new_active),
            &n(r.stalled),
            &n(r.other),
            &f(r.stall_max_ms),
            &f(r.stall_median_ms),
            &f(r.udp_outage_ms),
            &f(r.takeover_ms),
            &f(r.commit_ms),
            // A failover either hits the commit window or not: a median
            // hides which, so every trial's count is shown.
            &r.trials
                .iter()
                .map(|t| t.survived.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        ]));
        if let Some(e) = &r.failed {
            s.push_str(&format!("  FAILED: {}\n", e.replace('\n', "\n    ")));
        }
    }
    s
}

/// Runs `opts.trials` trials of `row`, each on a fresh lab. A trial that
/// fails ends the row with what the trials before it measured.
pub fn run_row(row: Row, bins: &Binaries, opts: &Options, say: &mut dyn FnMut(&str)) -> RowReport {
    let mut trials = Vec::new();
    let mut failed = None;
    for n in 0..opts.trials {
        say(&format!("{}: trial {}/{}", row.name(), n + 1, opts.trials));
        let res = match row {
            Row::Tandem => tandem::trial(bins, opts, say),
            Row::Conntrackd => conntrackd::trial(opts, true, true, say),
            Row::Control => conntrackd::trial(opts, false, true, say),
            Row::ConntrackdNatOnly => conntrackd::trial(opts, true, false, say),
            Row::ControlNatOnly => conntrackd::trial(opts, false, false, say),
        };
        match res {
            Ok(t) => {
                say(&format!(
                    "{}: {}/{} survived, {} reset ({} RST by the new active, {} by the server), \
                     {} stalled, {} other; stall max {} ms; UDP gap {} ms, {} source(s); \
                     takeover {:.0} ms{}",
                    row.name(),
                    t.survived,
                    t.conns,
                    t.reset,
                    t.rst_new_active,
                    t.rst_server,
                    t.stalled,
                    t.other,
                    t.stall_max_ms.map_or("-".into(), |v| format!("{v:.1}")),
                    t.udp_outage_ms.map_or("-".into(), |v| format!("{v:.1}")),
                    t.udp_sources,
                    t.takeover_ms,
                    t.commit_ms.map_or(String::new(), |c| format!(
                        ", external cache committed {c:.0} ms after the kill"
                    ))
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
    RowReport {
        traffic: opts.traffic(),
        ..RowReport::from_trials(row, opts.conns, trials, failed)
    }
}

// ------------------------------------------------------------ RST counters

/// The switch's bridge ports (see [`PairLab::new`]).
const PORTS: [&str; 6] = ["client", "server", "aout", "ain", "bout", "bin"];

/// Per-port TCP RST counters on the lab's switch (nftables, bridge family).
pub(crate) struct RstCounters<'a> {
    switch: &'a Netns,
}

impl<'a> RstCounters<'a> {
    /// Counts RSTs entering (`from-PORT`) and leaving (`to-PORT`) each port.
    pub fn install(switch: &'a Netns) -> Result<RstCounters<'a>, BenchError> {
        switch.exec("nft", &["add", "table", "bridge", "survival"])?;
        switch.exec(
            "nft",
            &[
                "add",
                "chain",
                "bridge",
                "survival",
                "rsts",
                "{ type filter hook forward priority 0; policy accept; }",
            ],
        )?;
        for port in PORTS {
            for (dir, key) in [("from", "iifname"), ("to", "oifname")] {
                let rule = format!(
                    "add rule bridge survival rsts {key} \"{port}\" tcp flags & rst == rst counter comment \"{dir}-{port}\""
                );
                switch.exec("nft", &[&rule])?;
            }
        }
        Ok(RstCounters { switch })
    }

    /// Packet count per rule comment.
    pub fn read(&self) -> Result<HashMap<String, u64>, BenchError> {
        let out = self
            .switch
            .exec("nft", &["-j", "list", "table", "bridge", "survival"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| err("rst counters", format!("nft -j: {e}")))?;
        let mut m = HashMap::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            let rule = &item["rule"];
            let Some(comment) = rule["comment"].as_str() else {
                continue;
            };
            let packets = rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e["counter"]["packets"].as_u64())
                .unwrap_or(0);
            m.insert(comment.to_string(), packets);
        }
        Ok(m)
    }

    /// Fills the RST figures of `t`: what was counted since `before`.
    pub fn count_since(
        &self,
        before: &HashMap<String, u64>,
        t: &mut Trial,
    ) -> Result<(), BenchError> {
        let mut d = self.read()?;
        for (k, v) in d.iter_mut() {
            *v = v.saturating_sub(before.get(k).copied().unwrap_or(0));
        }
        t.rst_new_active = originated(&d, 'b');
        t.rst_server = d.get("from-server").copied().unwrap_or(0);
        Ok(())
    }
}

/// RSTs unit `u` (`a` or `b`) originated: per direction, the RSTs it sent
/// out of one side minus those that reached it on the other (forwarded).
pub(crate) fn originated(c: &HashMap<String, u64>, u: char) -> u64 {
    let g = |k: String| c.get(&k).copied().unwrap_or(0);
    let toward_server = g(format!("from-{u}in")).saturating_sub(g(format!("to-{u}out")));
    let toward_client = g(format!("from-{u}out")).saturating_sub(g(format!("to-{u}in")));
    toward_server + toward_client
}

// ----------------------------------------------------------------- traffic

/// What the UDP receiver saw.
#[derive(Debug, Default)]
struct UdpReport {
    received: u64,
    longest_gap: Duration,
    sources: Vec<SocketAddr>,
}

/// The TCP streams and the UDP flow of one trial, client → server.
pub(crate) struct Traffic {
    conns: usize,
    stop: Arc<AtomicBool>,
    server_stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    client: JoinHandle<Result<StreamsReport, StreamsError>>,
    server: JoinHandle<Result<ServerReport, StreamsError>>,
    udp_send: JoinHandle<()>,
    udp_recv: JoinHandle<UdpReport>,
}

impl Traffic {
    /// Starts the server, the client's connections and the UDP flow.
    pub fn start(lab: &PairLab, opts: &Options) -> Result<Traffic, BenchError> {
        let io = |what: &str, e: std::io::Error| err("traffic", format!("{what}: {e}"));
        let listen = SocketAddr::from((addr::INSIDE_SERVER, TCP_PORT));
        // Every loop below is bounded by this, whatever happens.
        let deadline = SETTLE * 2 + opts.after_kill + opts.drain + Duration::from_secs(60);
        // The server stops once the client is done: connections that
        // neither end nor reset (stalled) would otherwise keep it to its
        // deadline.
        let server_stop = Arc::new(AtomicBool::new(false));
        let server = {
            let _in = lab.server.enter()?;
            let mut cfg = ServerConfig::new(listen);
            cfg.push = opts.server_push.map(|interval| Push {
                interval,
                rate: opts.rate_per_conn,
            });
            cfg.max_conns = Some(opts.conns);
            cfg.deadline = deadline;
            cfg.stop = Some(Arc::clone(&server_stop));
            Server::bind(cfg).map_err(|e| err("traffic", format!("tcp server: {e}")))?
        };
        let (udp_rx, udp_tx) = {
            let _in = lab.server.enter()?;
            let rx = UdpSocket::bind(SocketAddrV4::new(addr::INSIDE_SERVER, UDP_PORT))
                .map_err(|e| io("udp bind", e))?;
            drop(_in);
            let _in = lab.client.enter()?;
            let tx = UdpSocket::bind(SocketAddrV4::new(addr::OUTSIDE_CLIENT, 0))
                .map_err(|e| io("udp bind", e))?;
            (rx, tx)
        };
        rx_timeout(&udp_rx).map_err(|e| io("udp timeout", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let server = std::thread::spawn(move || server.run());
        let mut ccfg = ClientConfig::new(listen, opts.conns, opts.rate_per_conn, deadline);
        ccfg.stop = Some(Arc::clone(&stop));
        ccfg.progress = Some(Arc::clone(&progress));
        ccfg.write_interval = opts.write_interval;
        ccfg.server_push = opts.server_push.is_some();
        ccfg.drain_timeout = opts.drain;
        ccfg.deadline = Some(deadline + opts.drain);
        let client_ns = lab.client.name().to_string();
        let client = std::thread::spawn(move || {
            let _in = tandem_netns::enter_named(&client_ns)
                .map_err(|e| StreamsError::Config(format!("enter {client_ns}: {e}")))?;
            run_client(&ccfg)
        });
        let dst = SocketAddrV4::new(addr::INSIDE_SERVER, UDP_PORT);
        let (interval, s) = (opts.udp_interval, Arc::clone(&stop));
        let count = (deadline.as_secs_f64() / interval.as_secs_f64()) as u64;
        let udp_send = std::thread::spawn(move || {
            // Pacing, bounded in count (and so in time) and by the stop flag.
            for seq in 0..count {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let _ = udp_tx.send_to(&seq.to_be_bytes(), dst);
                std::thread::sleep(interval);
            }
        });
        let s = Arc::clone(&stop);
        let udp_recv = std::thread::spawn(move || {
            let mut r = UdpReport::default();
            let mut last: Option<Instant> = None;
            let mut buf = [0u8; 64];
            let end = Instant::now() + deadline;
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((_, from)) = udp_rx.recv_from(&mut buf) {
                    let now = Instant::now();
                    if let Some(l) = last {
                        r.longest_gap = r.longest_gap.max(now - l);
                    }
                    last = Some(now);
                    r.received += 1;
                    if !r.sources.contains(&from) {
                        r.sources.push(from);
                    }
                }
            }
            r
        });
        Ok(Traffic {
            conns: opts.conns,
            stop,
            server_stop,
            progress,
            client,
            server,
            udp_send,
            udp_recv,
        })
    }

    /// Waits (bounded) until every connection is established and echoing.
    pub fn wait_established(&self) -> Result<(), BenchError> {
        let est = || self.progress.established.load(Ordering::Relaxed);
        wait_for("every TCP connection established", SETTLE, || {
            est() >= self.conns
        })
        .map_err(|e| {
            err(
                "traffic",
                format!("{e}: {} of {} established", est(), self.conns),
            )
        })?;
        self.wait_flowing()
    }

    /// Waits (bounded) until the verified echo grows by one write per connection.
    pub fn wait_flowing(&self) -> Result<(), BenchError> {
        let bytes = || self.progress.bytes.load(Ordering::Relaxed);
        let from = bytes();
        wait_for("the TCP streams to flow", SETTLE, || {
            bytes() >= from + self.conns as u64 * 8
        })
        .map_err(|e| err("traffic", e.to_string()))?;
        Ok(())
    }

    /// Stops everything, waits for the ends and classifies the connections.
    pub fn finish(self, trial: &mut Trial) -> Result<(), BenchError> {
        self.stop.store(true, Ordering::Relaxed);
        let join = |what: &str| err("traffic", format!("{what} panicked"));
        let client = self.client.join();
        self.server_stop.store(true, Ordering::Relaxed);
        let client = client
            .map_err(|_| join("tcp client"))?
            .map_err(|e| err("traffic", format!("tcp client: {e}")))?;
        let server = self
            .server
            .join()
            .map_err(|_| join("tcp server"))?
            .map_err(|e| err("traffic", format!("tcp server: {e}")))?;
        self.udp_send.join().map_err(|_| join("udp sender"))?;
        let udp = self.udp_recv.join().map_err(|_| join("udp receiver"))?;
        classify(&client, &server, trial);
        trial.udp_outage_ms = (udp.received > 1).then_some(udp.longest_gap.as_secs_f64() * 1e3);
        trial.udp_sources = udp.sources.len();
        Ok(())
    }
}

fn rx_timeout(s: &UdpSocket) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_millis(50)))
}

/// Fills the connection counts and stall figures of `t` from both ends'
/// reports: a connection reset at either end counts as reset; one survived
/// only if both ends closed it cleanly and the server verified every byte
/// the client sent (with server push the client cannot tell that itself).
pub(crate) fn classify(client: &StreamsReport, server: &ServerReport, t: &mut Trial) {
    let server_reset: Vec<u64> = server
        .connections
        .iter()
        .filter(|c| c.end == End::Reset)
        .filter_map(|c| c.id)
        .collect();
    let server_whole = |id: u64, sent: u64| {
        server
            .connections
            .iter()
            .any(|s| s.id == Some(id) && s.end == End::Clean && s.verified_bytes == sent)
    };
    t.conns = client.conns;
    t.established = client.established;
    let mut stalls = Vec::new();
    for c in &client.connections {
        if c.end == End::Reset || server_reset.contains(&c.id) {
            t.reset += 1;
        } else if c.end == End::Clean && server_whole(c.id, c.sent_bytes) {
            t.survived += 1;
            stalls.push(c.longest_stall_ms);
        } else if c.end == End::Timeout {
            t.stalled += 1;
        } else {
            t.other += 1;
        }
    }
    t.stall_max_ms = stalls.iter().copied().reduce(f64::max);
    t.stall_median_ms = median(&stalls);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_netns::streams::{ConnReport, ServerConnReport};

    fn conn(id: u64, end: End, stall: f64) -> ConnReport {
        ConnReport {
            id,
            end,
            sent_bytes: 0,
            echoed_bytes: 0,
            mismatch_at: None,
            longest_stall_ms: stall,
            error: None,
        }
    }

    #[test]
    fn rsts_forwarded_through_a_unit_are_not_its_own() {
        let c: HashMap<String, u64> = [
            // The server's 3 RSTs reached B on its inside port; B forwarded
            // them out of its outside port and sent 2 of its own there too.
            ("to-bin", 3),
            ("from-bout", 5),
            // One RST of B's own toward the server.
            ("from-bin", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(originated(&c, 'b'), 3);
        assert_eq!(originated(&c, 'a'), 0);
    }

    #[test]
    fn a_connection_reset_at_either_end_counts_as_reset() {
        let client: StreamsReport = serde_json::from_value(serde_json::json!({
            "connect": "x", "conns": 4, "opened": 4, "established": 4, "completed_clean": 2,
            "reset": 0, "ended_early": 0, "mismatched": 0, "timed_out": 2, "connect_failed": 0,
            "errors": 0, "not_opened": 0, "rate_per_conn_bytes_per_s": 1, "bytes_sent": 0,
            "bytes_echoed": 0, "stall_p50_ms": 0.0, "stall_p99_ms": 0.0, "stall_max_ms": 0.0,
            "stopped_by": "flag", "run_s": 1.0, "cpu_user_s": 0.0, "cpu_sys_s": 0.0, "ok": false,
            "connections": [
                conn(0, End::Clean, 300.0), conn(1, End::Clean, 100.0),
                conn(2, End::Timeout, 9000.0), conn(3, End::Timeout, 9000.0)
            ]
        }))
        .unwrap();
        let sconn = |id, end| ServerConnReport {
            id: Some(id),
            peer: String::new(),
            end,
            verified_bytes: 0,
            echoed_bytes: 0,
            mismatch_at: None,
            error: None,
        };
        let server: ServerReport = serde_json::from_value(serde_json::json!({
            "listen": "x", "accepted": 4, "completed_clean": 2, "reset": 1, "ended_early": 0,
            "mismatched": 0, "errors": 0, "open_at_exit": 1, "bytes_verified": 0,
            "bytes_echoed": 0, "run_s": 1.0, "cpu_user_s": 0.0, "cpu_sys_s": 0.0, "ok": false,
            "connections": [sconn(0, End::Clean), sconn(1, End::Clean),
                            sconn(2, End::Reset), sconn(3, End::Open)]
        }))
        .unwrap();
        let mut t = Trial::default();
        classify(&client, &server, &mut t);
        assert_eq!((t.survived, t.reset, t.stalled, t.other), (2, 1, 1, 0));
        assert_eq!(t.stall_max_ms, Some(300.0));
        assert_eq!(t.stall_median_ms, Some(200.0));
        let r = RowReport::from_trials(Row::Tandem, 4, vec![t.clone()], None);
        assert_eq!(r.survived, Some(2.0));
        let text = table(&[r]);
        assert!(text.contains("2/4"), "{text}");
        assert!(
            text.lines().nth(2).is_some_and(|l| l.ends_with(" 2")),
            "{text}"
        );
    }

    #[test]
    fn a_clean_close_without_every_byte_at_the_server_did_not_survive() {
        let mut client = StreamsReport {
            connections: vec![conn(0, End::Clean, 5.0), conn(1, End::Clean, 5.0)],
            ..serde_json::from_value(serde_json::json!({
                "connect": "x", "conns": 2, "opened": 2, "established": 2,
                "completed_clean": 2, "reset": 0, "ended_early": 0, "mismatched": 0,
                "timed_out": 0, "connect_failed": 0, "errors": 0, "not_opened": 0,
                "rate_per_conn_bytes_per_s": 1, "bytes_sent": 0, "bytes_echoed": 0,
                "stall_p50_ms": 0.0, "stall_p99_ms": 0.0, "stall_max_ms": 0.0,
                "stopped_by": "flag", "run_s": 1.0, "cpu_user_s": 0.0, "cpu_sys_s": 0.0,
                "ok": true, "connections": []
            }))
            .unwrap()
        };
        client.connections[0].sent_bytes = 100;
        client.connections[1].sent_bytes = 100;
        let sconn = |id, verified_bytes| ServerConnReport {
            id: Some(id),
            peer: String::new(),
            end: End::Clean,
            verified_bytes,
            echoed_bytes: 0,
            mismatch_at: None,
            error: None,
        };
        let mut server: ServerReport = serde_json::from_value(serde_json::json!({
            "listen": "x", "accepted": 2, "completed_clean": 2, "reset": 0, "ended_early": 0,
            "mismatched": 0, "errors": 0, "open_at_exit": 0, "bytes_verified": 0,
            "bytes_echoed": 0, "run_s": 1.0, "cpu_user_s": 0.0, "cpu_sys_s": 0.0, "ok": true,
            "connections": []
        }))
        .unwrap();
        server.connections = vec![sconn(0, 100), sconn(1, 60)];
        let mut t = Trial::default();
        classify(&client, &server, &mut t);
        assert_eq!((t.survived, t.reset, t.stalled, t.other), (1, 0, 0, 1));
    }
}
