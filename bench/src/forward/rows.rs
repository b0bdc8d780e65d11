//! Setting up one row's unit — Linux forwarding (optionally with nftables
//! conntrack + masquerade) or tandemd with a generated config — on a fresh
//! lab, pinning, and running the row's phases.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_netns::topology::{addr, GatewayLab};
use tandem_netns::{log_dir, wait_for, wait_until, Daemon, Netns};

use super::phase::{run_phase, PhaseResult, Traffic};
use super::report::{Figures, RowReport, SHARED_CORE_PCT};
use super::tools::{self, Binaries};
use super::{cpu, napi};
use super::{BenchError, Options, RowKind};

/// How long tandemd may take to answer on its control socket.
const TANDEMD_START: Duration = Duration::from_secs(30);
/// tandemctl's own timeout for one command.
const CTL_TIMEOUT_S: &str = "5";

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A running tandemd in the unit namespace and its control socket.
struct Tandemd {
    daemon: Daemon,
    socket: PathBuf,
    tandemctl: PathBuf,
}

impl Tandemd {
    /// Writes the gateway config for `backend` and starts tandemd with the
    /// shipped `lab` profile (one worker, pinned to core 1).
    fn start(
        lab: &GatewayLab,
        backend: &str,
        bins: &Binaries,
        profile_dir: &std::path::Path,
        stateful: bool,
        offload: bool,
    ) -> Result<Tandemd, BenchError> {
        let dir = log_dir()?;
        let name = format!(
            "bench-{}{}{}",
            backend.replace('_', "-"),
            if stateful { "-pat" } else { "" },
            if offload { "-offload" } else { "" }
        );
        let socket = dir.join(format!("{}-{name}.sock", lab.unit.name()));
        let config = dir.join(format!("{}-{name}.toml", lab.unit.name()));
        // reachable_s: the sink's XDP program keeps the server from
        // answering ARP during the phases (see the module doc of `forward`),
        // so the entry learned before them must not expire.
        // Stateful rows (ctrl/examples/stateful-pair.toml): the client side
        // is the more trusted one, and its subnet leaves the server side
        // PATed to the unit's inside address, as the kernel row masquerades.
        let (out_level, in_level, nat) = if stateful {
            (
                "security_level = 100\n",
                "security_level = 0\n",
                format!(
                    "\n[[nat]]\ntype = \"pat\"\nreal = \"{}/{}\"\nreal_interface = \"outside\"\n\
                     mapped_interface = \"inside\"\nmapped = \"interface\"\n",
                    addr::OUTSIDE_NET,
                    addr::PREFIX_LEN
                ),
            )
        } else {
            ("", "", String::new())
        };
        let toml = format!(
            r#"[unit]
name = "{name}"
profile = "lab"
backend = "{backend}"
control_socket = "{socket}"

[[interface]]
name = "outside"
device = "out0"
address = "{out}/24"
{out_level}
[[interface]]
name = "inside"
device = "in0"
address = "{ins}/24"
{in_level}
[arp]
reachable_s = 3600
{nat}{offload}"#,
            offload = if offload {
                "\n[offload]\nenable = true\n"
            } else {
                ""
            },
            socket = socket.display(),
            out = addr::OUTSIDE_UNIT,
            ins = addr::INSIDE_UNIT,
        );
        std::fs::write(&config, toml)
            .map_err(|e| BenchError::Tandemd(format!("cannot write {}: {e}", config.display())))?;
        let mut cmd = lab.unit.cmd(&bins.tandemd.to_string_lossy());
        cmd.arg("-c")
            .arg(&config)
            .arg("--profile-dir")
            .arg(profile_dir)
            .env("RUST_LOG", "info");
        let daemon = Daemon::spawn_cmd(&name, cmd)?;
        let mut t = Tandemd {
            daemon,
            socket,
            tandemctl: bins.tandemctl.clone(),
        };
        let deadline = Instant::now() + TANDEMD_START;
        let ready = wait_until(deadline, || {
            !t.daemon.is_running() || (t.socket.exists() && t.ctl(&["show", "version"]).is_ok())
        });
        if ready.is_err() || !t.daemon.is_running() {
            return Err(BenchError::Tandemd(format!(
                "did not become ready within {TANDEMD_START:?} (config {}):\n{}",
                config.display(),
                t.daemon.log_tail(30)
            )));
        }
        Ok(t)
    }

    /// `tandemctl -s SOCKET args... --json`, the answer's `data`.
    fn ctl(&self, args: &[&str]) -> Result<serde_json::Value, BenchError> {
        let out = Command::new(&self.tandemctl)
            .arg("-s")
            .arg(&self.socket)
            .args(["--timeout", CTL_TIMEOUT_S])
            .args(args)
            .arg("--json")
            .output()
            .map_err(|e| {
                BenchError::Tandemd(format!("cannot run {}: {e}", self.tandemctl.display()))
            })?;
        if !out.status.success() {
            return Err(BenchError::Tandemd(format!(
                "tandemctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            BenchError::Tandemd(format!("tandemctl {} --json: {e}", args.join(" ")))
        })?;
        Ok(v.get("data").cloned().unwrap_or(v))
    }

    /// The backend in use and why (`show version`).
    fn backend(&self) -> Result<(String, String), BenchError> {
        let v = self.ctl(&["show", "version"])?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok((s("backend"), s("backend_reason")))
    }

    /// State of the ARP entry for `ip`, if tandemd has one.
    fn arp_state(&self, ip: std::net::Ipv4Addr) -> Result<Option<String>, BenchError> {
        let v = self.ctl(&["show", "arp"])?;
        let ip = ip.to_string();
        Ok(v.as_array().and_then(|entries| {
            entries
                .iter()
                .find(|e| e["address"].as_str() == Some(&ip) || e["ip"].as_str() == Some(&ip))
                .map(|e| e["state"].as_str().unwrap_or("?").to_string())
        }))
    }

    /// Counters summed over workers (`show counters`).
    fn counters(&self) -> Result<BTreeMap<String, u64>, BenchError> {
        let v = self.ctl(&["show", "counters"])?;
        let mut sum = BTreeMap::new();
        for w in v["workers"].as_array().into_iter().flatten() {
            for (k, n) in w["counters"].as_object().into_iter().flatten() {
                *sum.entry(k.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
            }
        }
        Ok(sum)
    }

    /// What the stateful stage did (`show xlate`): proof that the row's
    /// traffic was translated, not merely forwarded.
    fn xlate_note(&self) -> String {
        match self.ctl(&["show", "xlate"]) {
            Ok(v) => {
                let first = v["xlates"].get(0).map_or("none".to_string(), |x| {
                    format!(
                        "{} {}:{} → {}:{}",
                        x["proto"].as_str().unwrap_or("?"),
                        x["real"].as_str().unwrap_or("?"),
                        x["real_port"],
                        x["mapped"].as_str().unwrap_or("?"),
                        x["mapped_port"]
                    )
                });
                format!(
                    "stateful stage: {} PAT xlates at the end (most {}), e.g. {first}",
                    v["in_use"], v["most_used"]
                )
            }
            Err(e) => format!("stateful stage: show xlate failed: {e}"),
        }
    }

    fn fail(&self, what: String) -> BenchError {
        BenchError::Tandemd(format!("{what}\n{}", self.daemon.log_tail(30)))
    }
}

/// The counters worth printing under the table: the frame flow, every
/// non-zero drop, and syscalls per thousand frames.
fn counter_note(c: &BTreeMap<String, u64>) -> String {
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    let mut parts = vec![
        format!("rx {}", get("rx")),
        format!("forwarded {}", get("forwarded")),
        format!("tx {}", get("tx")),
    ];
    if get("batches") > 0 {
        parts.push(format!(
            "frames/batch {:.1}",
            get("rx") as f64 / get("batches") as f64
        ));
    }
    if get("rx") > 0 {
        parts.push(format!(
            "syscalls/1k frames {:.1}",
            get("backend_syscalls") as f64 * 1000.0 / get("rx") as f64
        ));
    }
    for (k, v) in c {
        if *v > 0
            && (k.starts_with("drop_")
                || k.starts_with("backend_rx_dropped")
                || k.starts_with("offload_")
                || k.ends_with("_failed"))
        {
            parts.push(format!("{k} {v}"));
        }
    }
    format!("tandemd counters: {}", parts.join(", "))
}

/// One row's lab, set up and pinned: the unit is ready to forward, and
/// phases can be run on it until [`RowLab::finish`].
pub struct RowLab {
    kind: RowKind,
    opts: Options,
    bins: Binaries,
    // Field order is drop order: tandemd stops before the namespaces go.
    tandemd: Option<(Tandemd, String)>,
    lab: GatewayLab,
    unit_mac: [u8; 6],
    pinned: Vec<PinnedDev>,
    /// What the setup wants reported with the row.
    pub notes: Vec<String>,
}

/// A veth whose NAPI kthreads the row pins.
#[derive(Clone, Copy, Debug)]
struct PinnedDev {
    which: Which,
    dev: &'static str,
    ifindex: u32,
    core: usize,
    /// Also raise them to SCHED_FIFO 1 (see [`Options::sink_fifo`]).
    fifo: bool,
}

/// Which namespace of the lab (so [`RowLab`] holds no self-references).
#[derive(Clone, Copy, Debug)]
enum Which {
    Client,
    Unit,
    Server,
}

impl RowLab {
    /// A fresh, tuned lab with the unit of `kind` running; NAPI kthreads pinned.
    pub fn setup(
        kind: RowKind,
        opts: &Options,
        bins: &Binaries,
        say: &mut dyn FnMut(&str),
    ) -> Result<RowLab, BenchError> {
        tools::ensure_lab_tools()?;
        let lab = GatewayLab::new()?;
        lab.tune_for_bench()?;
        let unit_mac = lab.unit.mac("out0")?;
        let server_mac = lab.server.mac("s0")?;
        let tandemd = match kind.tandem_backend() {
            None => {
                lab.kernel_forwarding()?;
                if kind == RowKind::KernelMasquerade {
                    lab.kernel_masquerade()?;
                }
                // The sink's XDP program swallows the server's ARP replies.
                lab.unit.ip(&[
                    "neigh",
                    "replace",
                    &addr::INSIDE_SERVER.to_string(),
                    "lladdr",
                    &mac_str(server_mac),
                    "dev",
                    "in0",
                    "nud",
                    "permanent",
                ])?;
                None
            }
            Some(backend) => {
                let t = Tandemd::start(
                    &lab,
                    backend,
                    bins,
                    &opts.profile_dir,
                    kind.tandem_stateful(),
                    kind.tandem_offload(),
                )?;
                let (chosen, reason) = t.backend()?;
                say(&format!(
                    "row {}: tandemd runs backend {chosen} ({reason})",
                    kind.name()
                ));
                if !chosen.starts_with(backend) {
                    return Err(t.fail(format!(
                        "asked for backend {backend}, tandemd chose {chosen:?}: {reason}"
                    )));
                }
                // Resolve the server through tandemd before the sink's XDP
                // program takes its ARP away (see the module doc).
                let server = addr::INSIDE_SERVER.to_string();
                if let Err(e) = lab
                    .client
                    .exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", &server])
                {
                    return Err(t.fail(format!("ping client → server through tandemd failed: {e}")));
                }
                let mut state = None;
                let resolved = wait_for(
                    "tandemd to resolve the server",
                    Duration::from_secs(5),
                    || {
                        state = t.arp_state(addr::INSIDE_SERVER).ok().flatten();
                        state.as_deref() == Some("reachable")
                    },
                );
                if resolved.is_err() {
                    return Err(t.fail(format!(
                        "tandemd's ARP entry for the server is {state:?}, not reachable"
                    )));
                }
                Some((t, chosen))
            }
        };
        let unit_napi = opts.unit_napi_core.unwrap_or(opts.forward_core);
        let plan = [
            (Which::Unit, "out0", unit_napi, false),
            (Which::Unit, "in0", unit_napi, false),
            (Which::Client, "c0", opts.traffic_core, true),
            (Which::Server, "s0", opts.traffic_core, true),
        ];
        let mut row = RowLab {
            kind,
            opts: opts.clone(),
            bins: bins.clone(),
            tandemd,
            lab,
            unit_mac,
            pinned: Vec::with_capacity(plan.len()),
            notes: Vec::new(),
        };
        for (which, dev, core, host) in plan {
            let idx = napi::ifindex(row.ns(which), dev)?;
            row.pinned.push(PinnedDev {
                which,
                dev,
                ifindex: idx,
                core,
                fifo: host && opts.sink_fifo,
            });
        }
        let pinned = row.pin()?;
        row.notes.push(format!("NAPI kthreads pinned: {pinned}"));
        Ok(row)
    }

    fn ns(&self, which: Which) -> &Netns {
        match which {
            Which::Client => &self.lab.client,
            Which::Unit => &self.lab.unit,
            Which::Server => &self.lab.server,
        }
    }

    /// The lab (for diagnostics: `ethtool -S`, `ip -s link`).
    pub fn lab(&self) -> &GatewayLab {
        &self.lab
    }

    /// Pins every NAPI kthread of the lab's veths to its core; returns
    /// `dev×count→core` per device.
    pub fn pin(&self) -> Result<String, BenchError> {
        if !self.opts.pin_napi {
            return Ok("not pinned (--no-pin)".into());
        }
        let mut dumps: Vec<(&str, Vec<napi::NapiThread>)> = Vec::new();
        let mut summary = Vec::new();
        for &PinnedDev {
            which,
            dev,
            ifindex: idx,
            core,
            fifo,
        } in &self.pinned
        {
            let ns = self.ns(which);
            if !dumps.iter().any(|(n, _)| *n == ns.name()) {
                dumps.push((ns.name(), napi::napi_threads(ns)?));
            }
            let threads = dumps
                .iter()
                .find(|(n, _)| *n == ns.name())
                .map(|(_, t)| t.as_slice())
                .unwrap_or_default();
            let mut n = 0;
            for t in threads.iter().filter(|t| t.ifindex == idx) {
                let res = napi::pin(t.pid, core).and_then(|()| {
                    if fifo {
                        napi::set_fifo(t.pid, 1)
                    } else {
                        Ok(())
                    }
                });
                match res {
                    Ok(()) => n += 1,
                    // Re-created between the dump and taskset; the next
                    // attach pins again.
                    Err(_) if !std::path::Path::new(&format!("/proc/{}", t.pid)).exists() => {}
                    Err(e) => return Err(e),
                }
            }
            let fifo = if fifo { " SCHED_FIFO 1" } else { "" };
            summary.push(format!("{dev}×{n}→core {core}{fifo}"));
        }
        Ok(summary.join(", "))
    }

    /// The unit's threads to account on the forwarding core: the NAPI
    /// kthreads of `out0`/`in0` and every thread of tandemd.
    fn unit_threads(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Ok(threads) = napi::napi_threads(&self.lab.unit) {
            for d in self
                .pinned
                .iter()
                .filter(|d| matches!(d.which, Which::Unit))
            {
                for t in threads.iter().filter(|t| t.ifindex == d.ifindex) {
                    v.push((
                        format!("napi/{}", d.dev),
                        format!("/proc/{0}/task/{0}/stat", t.pid),
                    ));
                }
            }
        }
        if let Some((t, _)) = &self.tandemd {
            v.extend(cpu::process_threads(t.daemon.pid()));
        }
        v
    }

    /// Runs one phase: `duration` of traffic at `rate` pps, or flat out.
    pub fn phase(
        &self,
        name: &str,
        rate: Option<u64>,
        duration: Duration,
    ) -> Result<PhaseResult, BenchError> {
        let repin = || self.pin().map(|_| ());
        let unit_threads = || self.unit_threads();
        let traffic = Traffic {
            lab: &self.lab,
            bins: &self.bins,
            opts: &self.opts,
            unit_mac: self.unit_mac,
            repin: &repin,
            unit_threads: &unit_threads,
        };
        run_phase(&traffic, name, rate, duration)
    }

    /// tandemd's counters summed over workers (tandem rows).
    pub fn tandemd_counters(&self) -> Option<Result<BTreeMap<String, u64>, BenchError>> {
        self.tandemd.as_ref().map(|(t, _)| t.counters())
    }

    /// Checks that tandemd survived, records its counters, stops it
    /// cleanly; returns the backend it ran and the row's notes.
    pub fn finish(mut self) -> Result<(Option<String>, Vec<String>), BenchError> {
        let mut backend = None;
        if let Some((mut t, chosen)) = self.tandemd.take() {
            if !t.daemon.is_running() {
                return Err(t.fail(format!("tandemd exited during row {}", self.kind.name())));
            }
            match t.counters() {
                Ok(c) => self.notes.push(counter_note(&c)),
                Err(e) => self
                    .notes
                    .push(format!("tandemd counters unavailable: {e}")),
            }
            if self.kind.tandem_stateful() {
                self.notes.push(t.xlate_note());
            }
            let status = t
                .daemon
                .stop(Duration::from_secs(10))
                .map_err(|e| t.fail(format!("stopping tandemd: {e}")))?;
            if !status.success() {
                return Err(t.fail(format!("tandemd exited with {status} on SIGTERM")));
            }
            backend = Some(chosen);
        }
        Ok((backend, std::mem::take(&mut self.notes)))
    }
}

/// Sets up `kind` on a fresh lab and runs its `runs` × (throughput phase,
/// latency phase); each figure of the report is the median over the runs.
pub fn run_row(
    kind: RowKind,
    opts: &Options,
    bins: &Binaries,
    say: &mut dyn FnMut(&str),
) -> Result<RowReport, BenchError> {
    let row = RowLab::setup(kind, opts, bins, say)?;
    let mut runs = Vec::with_capacity(opts.runs);
    let mut core_notes = Vec::new();
    let mut profile = None;
    for i in 0..opts.runs {
        let tput = row.phase("throughput", None, opts.duration)?;
        let lat = row.phase(
            "latency",
            Some(opts.latency_rate_pps),
            opts.latency_duration,
        )?;
        let f = Figures {
            pps: tput.delivered_pps(),
            offered_pps: tput.sent.pps,
            unit_pps: tput.unit_pps(),
            loss_pct: tput.loss_pct(),
            p50_us: lat.recv.latency_us.p50 as f64,
            p99_us: lat.recv.latency_us.p99 as f64,
            p999_us: lat.recv.latency_us.p999 as f64,
            latency_loss_pct: lat.loss_pct(),
            unit_cpu_pct: tput.core.as_ref().map_or(f64::NAN, |c| c.unit_pct),
            other_cpu_pct: tput.core.as_ref().map_or(f64::NAN, |c| c.other_pct),
            unit_ns_per_frame: tput.core.as_ref().map_or(f64::NAN, |c| {
                Figures::ns_per_frame(c.unit_pct, tput.unit_pps())
            }),
        };
        say(&format!(
            "row {} run {}/{}: {:.0} pps delivered of {:.0} offered ({:.1} % lost), \
             unit sent {:.0} pps; at {} pps p50 {} µs p99 {} µs p99.9 {} µs",
            kind.name(),
            i + 1,
            opts.runs,
            f.pps,
            f.offered_pps,
            f.loss_pct,
            f.unit_pps,
            opts.latency_rate_pps,
            f.p50_us,
            f.p99_us,
            f.p999_us
        ));
        if let Some(p) = &tput.profile {
            profile = Some(format!("run {}: {p}", i + 1));
        }
        if let Some(c) = &tput.core {
            core_notes.push(c.summary());
            if c.other_pct > SHARED_CORE_PCT {
                say(&format!(
                    "row {} run {}: warning: other processes took {:.0} % of the forwarding \
                     core (core {}); this run measures a shared core",
                    kind.name(),
                    i + 1,
                    c.other_pct,
                    opts.forward_core
                ));
            }
        }
        runs.push(f);
    }
    let (backend, mut notes) = row.finish()?;
    for (i, c) in core_notes.iter().enumerate() {
        notes.push(format!(
            "forwarding core, flat-out phase of run {}: {c}",
            i + 1
        ));
    }
    // The last run's profile: the others are in the log directory.
    notes.extend(profile);
    Ok(RowReport {
        kind,
        median: Figures::median_of(&runs),
        runs,
        backend,
        notes,
    })
}
