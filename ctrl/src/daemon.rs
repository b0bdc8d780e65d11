//! tandemd's start, run and stop: the order things happen in, and the
//! management thread's loop that answers the control socket.
//!
//! Start order (nothing touches an interface before step 4):
//! 1. SIGINT/SIGTERM handlers, so a signal during start-up still shuts down
//!    cleanly;
//! 2. load and validate the config and its hardware profile (exit 2; with
//!    `--check`, print "config OK" and exit 0 here);
//! 3. check the devices exist, the profile fits the machine (cores, memory,
//!    device queues), read each device's MAC (exit 2);
//! 4. bind the control socket — before opening any backend, so a second
//!    tandemd for the same unit stops here instead of touching the first
//!    one's interfaces (exit 1);
//! 5. open the backend of every worker (`unit.backend`, see [`crate::select`])
//!    and start the data plane, which also sends the gratuitous ARP burst
//!    for every owned address (exit 1);
//!    A stateful unit's data plane runs the stateful stage
//!    ([`state_config`]); a stateful failover unit's also replicates
//!    ([`sync_settings`]), and the replication thread
//!    ([`crate::replication`]) starts on the state device (or the failover
//!    link's) before the HA thread, which then tells it every role change;
//! 6. serve commands until a signal; then stop the control server (removing
//!    the socket), stop and join the workers (dropping their backends), and
//!    drop the XDP attachments (detaching the program). Exit 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tandem_dataplane::{
    ArpTimers, Counters, Dataplane, DataplaneConfig, IdleStrategy, InterfaceConfig, RouteConfig,
    RunConfig, SyncSettings, TableSizes, WorkerSpec,
};
use tandem_io::afxdp::{AfXdpBackend, FlowMap, XdpAttachment, XdpMode, ZeroCopy};
use tandem_io::uring::UringBackend;
use tandem_io::{Backend, FrameConfig};

use crate::api::server::{ControlServer, Handler, ServerError};
use crate::api::{
    self, ArpView, Command, ControlSource, CountersView, InterfaceView, Response, RouteView,
    VersionView, WorkerCounters,
};
use crate::config::{self, ConfigError, Loaded, UnitConfig, XdpModeChoice, ZeroCopyChoice};
use crate::profile::{format_cores, FitError, HwProfile, Idle, MachineInfo, ProfileSearch};
use crate::select::{self, BackendKind, Opened, SelectError};
use crate::sysfs::SysNet;

/// How long a control request waits for the management thread.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `show arp` waits for the workers' tables.
const ARP_SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(500);

/// tandemd's command line, already parsed.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub config: PathBuf,
    pub profile_dir: Option<PathBuf>,
    pub check: bool,
}

/// Why tandemd stopped with an error. [`DaemonError::exit_code`]: 2 for a
/// config that cannot run here (fix the file or the machine), 1 for a
/// failure while starting or running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("config {config}: {key}: device \"{device}\" {why}")]
    Device {
        config: String,
        key: String,
        device: String,
        why: String,
    },
    #[error("hardware profile {profile} does not fit this machine:\n{source}")]
    Fit {
        profile: String,
        #[source]
        source: FitError,
    },
    #[error("reading the machine: {0}")]
    Machine(std::io::Error),
    #[error("cannot install SIGINT/SIGTERM handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Control(#[from] ServerError),
    #[error(transparent)]
    Backend(#[from] SelectError),
    #[error("starting the data plane: {0}")]
    Start(#[from] tandem_dataplane::StartError),
    #[error(transparent)]
    Failover(#[from] crate::ha::HaError),
    #[error("replication: {0}")]
    Replication(#[from] crate::replication::ReplicationError),
    /// `unit.realtime_priority` was asked for and not granted: refusing to
    /// run without it (the operator asked for its latency).
    #[error(
        "unit.realtime_priority = {priority}: cannot run the {what} at SCHED_FIFO {priority}: \
         {source} (needs CAP_SYS_NICE or RLIMIT_RTPRIO >= {priority}; 0 runs time-sharing)"
    )]
    Realtime {
        what: &'static str,
        priority: u8,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{origin} = {us}: cannot hold the CPU wake-up latency request \
         (/dev/cpu_dma_latency): {source} (needs root; unit.cpu_latency_us = \"off\" runs \
         without it)"
    )]
    CpuLatency {
        /// The key the latency came from (the unit's, or the profile's default).
        origin: String,
        us: u32,
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_) | DaemonError::Device { .. } | DaemonError::Fit { .. } => 2,
            _ => 1,
        }
    }
}

/// Frame memory and rings of one worker's backend, from the profile.
pub fn frame_config(p: &HwProfile) -> FrameConfig {
    FrameConfig {
        frame_count: p.frames.frame_count,
        frame_size: p.frames.frame_size,
        ring_size: p.frames.ring_size,
        huge_pages: p.frames.huge_pages,
    }
}

/// What the data plane is started with: the validated config, the profile's
/// per-worker capacities and run loop, and each device's MAC (in interface
/// order). Pure, so the mapping is unit-tested.
pub fn dataplane_config(cfg: &UnitConfig, p: &HwProfile, macs: &[[u8; 6]]) -> DataplaneConfig {
    let t = &p.tables;
    let idle = match p.run.idle {
        Idle::BusyPoll => IdleStrategy::BusyPoll,
        Idle::SpinThenBlock => IdleStrategy::SpinThenBlock {
            spin: Duration::from_micros(p.run.spin_us.unwrap_or(0)),
            block: Duration::from_millis(p.run.block_ms.unwrap_or(1)),
        },
    };
    DataplaneConfig {
        interfaces: cfg
            .interfaces
            .iter()
            .zip(macs)
            .map(|(i, mac)| InterfaceConfig {
                name: i.name.clone(),
                mac: *mac,
                addr: i.address,
                prefix_len: i.prefix_len,
                mtu: i.mtu,
            })
            .collect(),
        routes: cfg
            .routes
            .iter()
            .map(|r| RouteConfig {
                prefix: r.destination,
                prefix_len: r.prefix_len,
                next_hop: r.gateway,
                interface: r.interface,
            })
            .collect(),
        tables: TableSizes {
            arp: t.arp as usize,
            routes: t.routes as usize,
            arp_pending: t.arp_pending as usize,
            arp_pending_per_hop: t.arp_pending_per_hop as usize,
        },
        arp: ArpTimers {
            reachable: cfg.arp.reachable,
            retry: cfg.arp.retry,
            max_retries: cfg.arp.max_retries,
            garp_count: cfg.arp.gratuitous_count,
            garp_interval: cfg.arp.gratuitous_interval,
        },
        run: RunConfig {
            batch: p.run.batch as usize,
            idle,
            tx_flush: Duration::from_micros(p.run.tx_flush_us),
        },
        // The stateful stage (issue 4); replication is added by the caller,
        // which knows the state device's MTU ([`sync_settings`]).
        state: state_config(cfg),
        sync: None,
    }
}

/// State-link frame buffers each worker keeps for frames it sent that the
/// mate has not acknowledged yet: the replication thread's retransmission
/// ring takes 3/4 of the outbound channel (`replication.rs`), so this is
/// 3/4 of [`SYNC_BUFFERS_PER_WORKER`].
pub const SYNC_RING_FRAMES: usize = 768;
/// Buffers beyond the ring: frames being encoded by the worker, queued
/// towards the replication thread, and inbound frames waiting to be applied.
pub const SYNC_IN_FLIGHT: usize = 256;
/// Buffers per worker (ring + in flight): about 1.4 MB per worker at a
/// 1500-byte state link.
pub const SYNC_BUFFERS_PER_WORKER: usize = SYNC_RING_FRAMES + SYNC_IN_FLIGHT;

/// The stateful stage's configuration for a stateful unit (`None`: the
/// stateless router). Interfaces keep their index; PAT to `"interface"`
/// maps to that interface's configured address, which with `[failover]` is
/// the *active* address: it moves with failover, so the translations
/// replicated to the standby stay valid when it takes over. Capacities are
/// per worker shard (`StatefulSettings::per_worker`).
pub fn state_config(cfg: &UnitConfig) -> Option<tandem_state::StateConfig> {
    use crate::stateful_config::{Action, NatRule, PatAddress, Protocol};
    use tandem_state::{
        AccessRule as SAccess, Action as SAction, Capacities, IfacePolicy, NatRule as SNat,
        Prefix as SPrefix, Proto, RuleProto, Timeouts,
    };
    let st = cfg.stateful.as_ref()?;
    let idx = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
    let prefix = |p: crate::stateful_config::Prefix| SPrefix::new(p.addr, p.len);
    let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let interfaces = cfg
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, ifc)| IfacePolicy {
            name: ifc.name.clone(),
            security_level: st.security_levels.get(i).copied().unwrap_or(0),
            asr_group: st.asr_groups.get(i).copied().flatten(),
        })
        .collect();
    let nat = st
        .nat
        .iter()
        .map(|r| match *r {
            NatRule::Pat {
                real,
                real_interface,
                mapped_interface,
                mapped,
            } => SNat::DynamicPat {
                real_if: idx(real_interface),
                real: prefix(real),
                mapped_if: idx(mapped_interface),
                mapped: match mapped {
                    PatAddress::Interface => cfg
                        .interfaces
                        .get(mapped_interface)
                        .map_or(std::net::Ipv4Addr::UNSPECIFIED, |i| i.address),
                    PatAddress::Address(a) => a,
                },
            },
            NatRule::Static {
                real,
                mapped,
                real_interface,
                mapped_interface,
                port,
            } => SNat::Static {
                real_if: idx(real_interface),
                real,
                mapped_if: idx(mapped_interface),
                mapped,
                port: port.and_then(|p| {
                    let proto = match p.protocol {
                        Protocol::Tcp => Proto::Tcp,
                        Protocol::Udp => Proto::Udp,
                        // Validation admits tcp and udp only.
                        Protocol::Icmp | Protocol::Any => return None,
                    };
                    Some((proto, p.real, p.mapped))
                }),
            },
        })
        .collect();
    let access = st
        .access_rules
        .iter()
        .map(|r| SAccess {
            interface: idx(r.interface),
            src: prefix(r.source),
            dst: prefix(r.destination),
            proto: match r.protocol {
                Protocol::Any => RuleProto::Any,
                Protocol::Tcp => RuleProto::Tcp,
                Protocol::Udp => RuleProto::Udp,
                Protocol::Icmp => RuleProto::Icmp,
            },
            dst_ports: r.ports.unwrap_or((0, u16::MAX)),
            action: match r.action {
                Action::Permit => SAction::Permit,
                Action::Deny => SAction::Deny,
            },
        })
        .collect();
    let t = &st.timeouts;
    Some(tandem_state::StateConfig {
        capacities: Capacities {
            conns: cap(st.per_worker.conn),
            xlates: cap(st.per_worker.xlate),
            sas: cap(st.per_worker.sa),
        },
        timeouts: Timeouts {
            tcp_established: t.tcp,
            tcp_half_closed: t.tcp_half_closed,
            tcp_embryonic: t.tcp_embryonic,
            udp: t.udp,
            icmp: t.icmp,
            // Not configurable: TIME_WAIT and the PAT xlate's linger keep
            // the tables' defaults.
            ..Timeouts::default()
        },
        interfaces,
        nat,
        access,
        replicate_http: st.replication.http,
    })
}

/// Replication settings for a stateful failover unit (`None` otherwise):
/// frames sized for a state device of `state_mtu` bytes
/// ([`crate::replication::frame_size`]), [`SYNC_BUFFERS_PER_WORKER`]
/// buffers per worker, bulk sync paced at `[failover] replication_rate`.
pub fn sync_settings(cfg: &UnitConfig, state_mtu: u32) -> Option<SyncSettings> {
    let st = cfg.stateful.as_ref()?;
    cfg.failover.as_ref()?;
    Some(SyncSettings {
        frame_size: crate::replication::frame_size(state_mtu),
        buffers_per_worker: SYNC_BUFFERS_PER_WORKER,
        bulk_rate: st.replication.rate,
        ..SyncSettings::default()
    })
}

/// The device the state link runs on: `failover.state_device`, else the
/// failover link's device (shared).
pub fn state_device(cfg: &UnitConfig) -> Option<&str> {
    let f = cfg.failover.as_ref()?;
    Some(f.state_device.as_deref().unwrap_or(&f.link_device))
}

fn xdp_mode(c: XdpModeChoice) -> XdpMode {
    match c {
        XdpModeChoice::Auto => XdpMode::Auto,
        XdpModeChoice::Native => XdpMode::Native,
        XdpModeChoice::Generic => XdpMode::Generic,
    }
}

fn zero_copy(c: ZeroCopyChoice) -> ZeroCopy {
    match c {
        ZeroCopyChoice::Auto => ZeroCopy::Auto,
        ZeroCopyChoice::Required => ZeroCopy::Required,
        ZeroCopyChoice::Off => ZeroCopy::Off,
    }
}

/// The opened backends of all workers. Field order is drop order: worker
/// sockets close before the XDP programs detach.
pub struct Backends {
    pub workers: Vec<Box<dyn Backend>>,
    pub attachments: Vec<XdpAttachment>,
}

/// Attach tandem's XDP program to every device, then one AF_XDP backend per
/// worker (worker i binds queue i of every device). On any error everything
/// opened so far is dropped (sockets, then attachments) before returning.
fn open_afxdp(cfg: &UnitConfig, p: &HwProfile) -> Result<Opened<Backends>, String> {
    let devices = cfg.devices();
    let frames = frame_config(p);
    // Flow offload: one table for every device and worker (its key holds
    // the receiving device), read by the XDP program of each device.
    let flows = match cfg.offload {
        Some(o) => Some(FlowMap::create(o.flows).map_err(|e| format!("flow offload: {e}"))?),
        None => None,
    };
    let mut attachments = Vec::with_capacity(devices.len());
    for d in &devices {
        attachments.push(
            XdpAttachment::attach_with_offload(d, xdp_mode(cfg.unit.xdp_mode), flows.as_ref())
                .map_err(|e| e.to_string())?,
        );
    }
    let ifindexes: Vec<u32> = attachments.iter().map(|a| a.ifindex()).collect();
    let mut workers: Vec<Box<dyn Backend>> = Vec::with_capacity(p.cores.workers.len());
    for w in 0..p.cores.workers.len() {
        let ports: Vec<(&XdpAttachment, u32)> = attachments.iter().map(|a| (a, w as u32)).collect();
        let mut b = AfXdpBackend::open(&ports, &frames, zero_copy(cfg.unit.zero_copy))
            .map_err(|e| format!("worker {w} (queue {w}): {e}"))?;
        if let Some(f) = &flows {
            b.set_flow_offload(f.table(ifindexes.clone()));
        }
        workers.push(Box::new(b));
    }
    if let (Some(o), Some(_)) = (cfg.offload, &flows) {
        tracing::info!(
            flows = o.flows,
            "flow offload: established TCP and UDP connections are forwarded by the XDP program"
        );
    }
    let modes: Vec<String> = attachments
        .iter()
        .map(|a| format!("{} {:?}", a.ifname(), a.mode()).to_lowercase())
        .collect();
    let name = workers.first().map(|b| b.name()).unwrap_or("afxdp");
    Ok(Opened {
        detail: format!(
            "as {name} on {} (XDP mode: {})",
            devices.join(", "),
            modes.join(", ")
        ),
        value: Backends {
            workers,
            attachments,
        },
    })
}

/// One io_uring/AF_PACKET backend per worker; with several workers their
/// sockets share a PACKET_FANOUT group so each frame goes to one worker.
fn open_uring(cfg: &UnitConfig, p: &HwProfile) -> Result<Opened<Backends>, String> {
    let devices = cfg.devices();
    let frames = frame_config(p);
    let n = p.cores.workers.len();
    // Fanout ids are per network namespace; the pid keeps two units in one
    // namespace apart.
    let fanout = (n > 1).then(|| (std::process::id() & 0xffff) as u16);
    let mut workers: Vec<Box<dyn Backend>> = Vec::with_capacity(n);
    for w in 0..n {
        let b = UringBackend::open(&devices, &frames, fanout)
            .map_err(|e| format!("worker {w}: {e}"))?;
        workers.push(Box::new(b));
    }
    Ok(Opened {
        detail: format!(
            "on {}{}",
            devices.join(", "),
            if fanout.is_some() {
                " (PACKET_FANOUT across workers)"
            } else {
                ""
            }
        ),
        value: Backends {
            workers,
            attachments: Vec::new(),
        },
    })
}

/// Messages to the management thread.
enum Msg {
    Command(Command, Sender<Response>),
    Signal(i32),
}

/// The management thread's view of the running unit, answering commands.
struct Unit<'a> {
    loaded: &'a Loaded,
    dp: &'a Dataplane,
    macs: &'a [[u8; 6]],
    sys: SysNet,
    backend: String,
    backend_reason: String,
    started: Instant,
    ha: Option<&'a crate::ha::HaHandle>,
    /// The configuration in force on a standalone unit (a failover unit's
    /// lives on its HA thread, which applies reloads there).
    running: std::cell::RefCell<UnitConfig>,
    /// High-water marks of the connection and xlate tables (`show conn
    /// count` "most used"), sampled every [`HIGH_WATER_EVERY`] and at
    /// every query.
    most_conns: std::cell::Cell<u64>,
    most_xlates: std::cell::Cell<u64>,
}

/// How often the management thread samples the table sizes for the
/// high-water marks of `show conn count`.
const HIGH_WATER_EVERY: Duration = Duration::from_secs(1);

impl Unit<'_> {
    /// Live (conns, xlates, SAs), updating the high-water marks.
    fn state_counts(&self) -> Result<(u64, u64, u64), String> {
        if self.loaded.config.stateful.is_none() {
            return Err(api::NOT_STATEFUL.into());
        }
        let (c, x, s) = self.dp.state_counts().map_err(|e| e.to_string())?;
        self.most_conns.set(self.most_conns.get().max(c));
        self.most_xlates.set(self.most_xlates.get().max(x));
        Ok((c, x, s))
    }
}

impl ControlSource for Unit<'_> {
    fn failover(&self, cmd: Command) -> Option<Response> {
        self.ha.map(|ha| ha.execute(cmd))
    }

    fn conn_count(&self) -> Result<api::ConnCountView, String> {
        let (c, x, s) = self.state_counts()?;
        Ok(api::ConnCountView {
            in_use: c,
            most_used: self.most_conns.get(),
            xlates: x,
            sas: s,
        })
    }

    fn conns(&self) -> Result<api::ConnsView, String> {
        let (c, _, _) = self.state_counts()?;
        let list = self
            .dp
            .conns(api::SHOW_CONN_LIMIT)
            .map_err(|e| e.to_string())?;
        Ok(api::ConnsView {
            in_use: c,
            most_used: self.most_conns.get(),
            conns: list
                .into_iter()
                .map(|e| api::ConnLine {
                    proto: e.proto.to_string(),
                    in_if: e.in_if,
                    src: e.src,
                    sport: e.sport,
                    out_if: e.out_if,
                    dst: e.dst,
                    dport: e.dport,
                    xlated_src: e.xlated_src,
                    xlated_sport: e.xlated_sport,
                    xlated_dst: e.xlated_dst,
                    xlated_dport: e.xlated_dport,
                    state: e.state.to_string(),
                    idle_ms: e.idle_ms,
                    replicated: e.replicated,
                    offloaded: e.offloaded,
                })
                .collect(),
        })
    }

    fn xlates(&self) -> Result<api::XlatesView, String> {
        let (_, x, _) = self.state_counts()?;
        let list = self
            .dp
            .xlates(api::SHOW_CONN_LIMIT)
            .map_err(|e| e.to_string())?;
        Ok(api::XlatesView {
            in_use: x,
            most_used: self.most_xlates.get(),
            xlates: list
                .into_iter()
                .map(|x| api::XlateLine {
                    proto: x.proto.to_string(),
                    kind: x.kind.to_string(),
                    real: x.real,
                    real_port: x.real_port,
                    mapped: x.mapped,
                    mapped_port: x.mapped_port,
                    conns: x.conns,
                    idle_ms: x.idle_ms,
                })
                .collect(),
        })
    }

    fn config_reload(&self, force: bool) -> Response {
        if let Some(ha) = self.ha {
            return ha.execute(if force {
                Command::ConfigReloadForce
            } else {
                Command::ConfigReload
            });
        }
        // Standalone: only the routes can change live.
        let path = &self.loaded.path;
        let profile = &self.loaded.profile;
        let prepared = crate::reload::prepare_file(&self.running.borrow(), profile, path);
        let applied = prepared.and_then(|(new, plan)| {
            crate::reload::apply_routes(self.dp, &new, profile, self.macs, &plan)?;
            self.running.replace(new);
            Ok(plan)
        });
        match applied {
            Ok(plan) => {
                tracing::info!(
                    "configuration reloaded from {}: {}",
                    path.display(),
                    plan.summary()
                );
                Response::ok(api::CommandDone {
                    message: format!("configuration reloaded: {}", plan.summary()),
                })
            }
            Err(e) => {
                tracing::warn!("configuration reload refused, nothing changed: {e}");
                Response::error(format!("`config reload`: {e}"))
            }
        }
    }

    fn version(&self) -> VersionView {
        let p = &self.loaded.profile;
        VersionView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            unit: self.loaded.config.unit.name.clone(),
            config: self.loaded.path.display().to_string(),
            profile: p.name().to_string(),
            profile_source: self.loaded.profile_source.to_string(),
            backend: self.backend.clone(),
            backend_choice: self.loaded.config.unit.backend.to_string(),
            backend_reason: self.backend_reason.clone(),
            management_core: p.cores.management,
            worker_cores: p.cores.workers.clone(),
            uptime_s: self.started.elapsed().as_secs(),
        }
    }

    fn interfaces(&self) -> Vec<InterfaceView> {
        self.loaded
            .config
            .interfaces
            .iter()
            .zip(self.macs)
            .map(|(i, mac)| InterfaceView {
                name: i.name.clone(),
                device: i.device.clone(),
                mac: api::fmt_mac(*mac),
                address: i.address,
                prefix_len: i.prefix_len,
                mtu: i.mtu,
                admin_up: self.sys.admin_up(&i.device),
                link_up: self.sys.link_up(&i.device),
            })
            .collect()
    }

    fn routes(&self) -> Vec<RouteView> {
        self.dp
            .routes()
            .into_iter()
            .map(|r| RouteView {
                kind: serde_json::to_value(r.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                prefix: r.prefix,
                prefix_len: r.prefix_len,
                next_hop: r.next_hop,
                interface: r.interface,
            })
            .collect()
    }

    fn arp(&self) -> Vec<ArpView> {
        self.dp
            .arp_table(ARP_SNAPSHOT_TIMEOUT)
            .into_iter()
            .map(|e| {
                let incomplete = e.mac == "00:00:00:00:00:00";
                ArpView {
                    interface: e.interface,
                    address: e.ip,
                    mac: (!incomplete).then_some(e.mac),
                    state: e.state.to_string(),
                    age_ms: e.age_ms,
                }
            })
            .collect()
    }

    fn counters(&self) -> CountersView {
        CountersView {
            names: Counters::NAMES.iter().map(|n| n.to_string()).collect(),
            workers: self
                .dp
                .counters()
                .into_iter()
                .map(|s| WorkerCounters {
                    worker: s.worker,
                    core: s.core,
                    backend: s.backend.clone(),
                    counters: s
                        .counters()
                        .fields()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Run tandemd until a signal; returns the process exit code.
pub fn run(opts: &Options) -> i32 {
    match run_inner(opts) {
        Ok(()) => 0,
        Err(e) => {
            // Multi-line errors (every config problem) read better plain
            // than as one log record.
            eprintln!("tandemd: {e}");
            e.exit_code()
        }
    }
}

fn run_inner(opts: &Options) -> Result<(), DaemonError> {
    // 1. Signals first: a SIGTERM during start-up queues a shutdown that the
    // management loop handles as soon as it runs.
    let (tx, rx) = bounded::<Msg>(64);
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(DaemonError::Signals)?;
    let signal_handle = signals.handle();
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if tx.send(Msg::Signal(sig)).is_err() {
                        break;
                    }
                }
            })
            .map_err(DaemonError::Signals)?;
    }

    // 2. Config and profile, validated entirely.
    let search = ProfileSearch::from_env(opts.profile_dir.as_deref());
    let loaded = config::load(&opts.config, &search)?;
    let cfg = &loaded.config;
    let profile = &loaded.profile;
    if opts.check {
        println!(
            "config OK: unit {} with {} interfaces, {} static routes, profile {} ({})",
            cfg.unit.name,
            cfg.interfaces.len(),
            cfg.routes.len(),
            profile.name(),
            loaded.profile_source
        );
        if let Some(f) = &cfg.failover {
            println!(
                "failover: {} unit, failover link {}, state link {}, {}",
                f.role,
                f.link_device,
                f.state_device
                    .as_deref()
                    .unwrap_or("shared with the failover link"),
                if f.key.is_some() {
                    "encrypted with the failover key"
                } else {
                    "CLEAR TEXT (no failover key)"
                }
            );
        }
        return Ok(());
    }
    tracing::info!(
        config = %loaded.path.display(),
        unit = %cfg.unit.name,
        profile = profile.name(),
        profile_source = %loaded.profile_source,
        "config loaded"
    );

    // 3. The machine: devices, profile fit, MACs.
    let sys = SysNet::default();
    let origin = loaded.path.display().to_string();
    if let Some(f) = &cfg.failover {
        let links = [
            ("failover.link_device", Some(&f.link_device)),
            ("failover.state_device", f.state_device.as_ref()),
        ];
        for (key, dev) in links {
            if let Some(dev) = dev {
                if !sys.exists(dev) {
                    return Err(DaemonError::Device {
                        config: origin.clone(),
                        key: key.into(),
                        device: dev.clone(),
                        why: "does not exist (see `ip link`)".into(),
                    });
                }
            }
        }
    }
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        if !sys.exists(&ifc.device) {
            return Err(DaemonError::Device {
                config: origin.clone(),
                key: format!("interface[{i}] \"{}\"", ifc.name),
                device: ifc.device.clone(),
                why: "does not exist (see `ip link`)".into(),
            });
        }
    }
    let machine = MachineInfo::probe(&cfg.devices()).map_err(DaemonError::Machine)?;
    profile
        .fits_machine(&machine)
        .map_err(|source| DaemonError::Fit {
            profile: profile.name().to_string(),
            source,
        })?;
    let mut macs = Vec::with_capacity(cfg.interfaces.len());
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        let mac = sys.mac(&ifc.device).map_err(|why| DaemonError::Device {
            config: origin.clone(),
            key: format!("interface[{i}] \"{}\"", ifc.name),
            device: ifc.device.clone(),
            why,
        })?;
        if let Some(dev_mtu) = sys.mtu(&ifc.device) {
            if dev_mtu < u32::from(ifc.mtu) {
                tracing::warn!(
                    interface = %ifc.name,
                    device = %ifc.device,
                    "configured mtu {} is above the device's mtu {dev_mtu}; larger frames will not pass the device",
                    ifc.mtu
                );
            }
        }
        macs.push(mac);
    }
    tracing::info!(
        management_core = profile.cores.management,
        worker_cores = %format_cores(&profile.cores.workers),
        memory = %crate::profile::human_bytes(profile.memory_bytes()),
        "hardware profile fits this machine"
    );
    // Held until tandemd exits (the kernel drops it with the file): idle
    // CPUs wake within this latency, so a hand-off to a thread on an idle
    // CPU is not a (virtual) CPU coming out of halt.
    let _cpu_latency = match cfg.unit.cpu_latency_us {
        Some(us) => {
            let origin = if cfg.unit.cpu_latency_from_profile {
                format!("profile {} run.cpu_latency_us", profile.name())
            } else {
                "unit.cpu_latency_us".to_string()
            };
            let r = tandem_io::sched::CpuLatencyRequest::hold(us).map_err(|source| {
                DaemonError::CpuLatency {
                    origin: origin.clone(),
                    us,
                    source,
                }
            })?;
            tracing::info!(cpu_latency_us = us, from = %origin, "holding a CPU wake-up latency request");
            Some(r)
        }
        None => None,
    };
    // 4. The control socket, before any interface is touched.
    let handler: Handler = {
        let tx = tx.clone();
        Arc::new(move |cmd: Command| {
            let (rtx, rrx) = bounded(1);
            if tx
                .send_timeout(Msg::Command(cmd, rtx), COMMAND_TIMEOUT)
                .is_err()
            {
                return Response::error("tandemd's management thread is busy; retry");
            }
            let wait = crate::ha::command_timeout(cmd).max(COMMAND_TIMEOUT);
            rrx.recv_timeout(wait).unwrap_or_else(|_| {
                Response::error(format!(
                    "tandemd did not answer `{cmd}` within {}s",
                    wait.as_secs()
                ))
            })
        })
    };
    let server = ControlServer::bind(&cfg.unit.control_socket, Arc::clone(&handler))?;
    tracing::info!(socket = %server.path().display(), "control socket ready");

    // 5. Backends and data plane.
    let selected = select::select(cfg.unit.backend, |kind| match kind {
        BackendKind::AfXdp => open_afxdp(cfg, profile),
        BackendKind::IoUring => open_uring(cfg, profile),
    })?;
    for f in &selected.fallbacks {
        tracing::warn!("{f}");
    }
    if cfg.offload.is_some() && selected.kind != BackendKind::AfXdp {
        tracing::warn!(
            backend = %selected.kind,
            "flow offload is configured but needs the AF_XDP backend: every packet goes through the workers"
        );
    }
    tracing::info!(backend = %selected.kind, "packet I/O: {}", selected.reason);
    let Backends {
        workers: backends,
        attachments,
    } = selected.value;
    let backend_name = backends
        .first()
        .map(|b| b.name())
        .unwrap_or("?")
        .to_string();
    let specs: Vec<WorkerSpec> = backends
        .into_iter()
        .zip(&profile.cores.workers)
        .map(|(backend, core)| WorkerSpec {
            core: Some(*core),
            backend,
        })
        .collect();
    let mut dp_cfg = dataplane_config(cfg, profile, &macs);
    if let Some(st) = &cfg.stateful {
        tracing::info!(
            reason = %st.reason,
            conns_per_worker = st.per_worker.conn,
            xlates_per_worker = st.per_worker.xlate,
            "stateful mode: connection tracking, NAT, security levels and access rules"
        );
    }
    // Replication (stateful failover units): frames fit the state device's MTU.
    if let Some(dev) = state_device(cfg).filter(|_| cfg.stateful.is_some()) {
        let mtu = sys.mtu(dev).unwrap_or_else(|| {
            tracing::warn!(
                device = dev,
                "cannot read the state device's mtu; sizing state-link frames for 1500"
            );
            1500
        });
        dp_cfg.sync = sync_settings(cfg, mtu);
        if let Some(sy) = &dp_cfg.sync {
            tracing::info!(
                device = dev,
                mtu,
                frame_size = sy.frame_size,
                buffers_per_worker = sy.buffers_per_worker,
                bulk_rate = sy.bulk_rate,
                "stateful failover: replicating to the mate over the state link"
            );
        }
    }
    let dp = Arc::new(match &cfg.failover {
        // Standalone: owns the configured addresses and forwards (issue 2).
        None => Dataplane::start(dp_cfg, specs)?,
        // Failover: owns nothing and does not forward until the HA thread
        // has decided the unit's role.
        Some(_) => Dataplane::start_with_ownership(
            dp_cfg,
            specs,
            crate::ha::initial_ownership(&macs),
            tandem_dataplane::Role::NotForwarding,
            false,
        )?,
    });
    tracing::info!(
        workers = profile.cores.workers.len(),
        gratuitous_arp = cfg.arp.gratuitous_count,
        "data plane started{}",
        if cfg.failover.is_some() {
            " owning no address until the failover role is decided"
        } else {
            "; gratuitous ARP sent for every owned address"
        }
    );

    // 6. Serve until a signal.
    if let Some(core) = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.id == profile.cores.management)
    {
        // The management thread (this one) keeps off the worker cores. Pinned
        // only now: threads spawned by this one inherit its affinity, and
        // the workers must be free to pin themselves to their cores.
        if !core_affinity::set_for_current(core) {
            tracing::warn!(core = core.id, "could not pin the management thread");
        }
    }

    // 7. Replication (stateful failover): its own thread and state-link
    // socket (EtherType 0x88B6), keyed with the failover key; the HA thread
    // tells it the role. Started before the HA thread so that no role change
    // is missed.
    let replication = match (&cfg.failover, dp.take_sync_endpoints()) {
        (Some(f), Some(ep)) => {
            let dev = state_device(cfg).unwrap_or(&f.link_device);
            let security = tandem_link::Security::from_config(f.failover_key(), |_| {
                // The HA thread logs the clear-text warning once.
            });
            let ports: Vec<Box<dyn crate::replication::StreamPort>> = ep
                .streams
                .into_iter()
                .map(|e| Box::new(e) as Box<dyn crate::replication::StreamPort>)
                .collect();
            let tables: Arc<dyn crate::replication::StateTables> = dp.clone();
            Some(crate::replication::ReplicationHandle::start(
                dev,
                &security,
                ports,
                ep.wake,
                tables,
                Some(profile.cores.management),
            )?)
        }
        _ => None,
    };

    // 8. Failover: the HA thread (pinned to the management core) owns the
    // state machine and the failover/state link sockets.
    let ha = match &cfg.failover {
        None => None,
        Some(f) => Some(crate::ha::HaHandle::start(
            f,
            &cfg.interfaces,
            &macs,
            &crate::failover::floors(profile),
            Some(profile.cores.management),
            Arc::clone(&dp),
            Some(Arc::clone(&handler)),
            Some(loaded.path.clone()),
            Some((cfg.clone(), profile.clone())),
            replication.as_ref().map(|r| r.link()),
        )?),
    };
    // Real-time packet threads: a wake-up (frame, hand-off, hello timer)
    // preempts ordinary work at once. Refused, not ignored, when not granted.
    let rt = cfg.unit.realtime_priority;
    if rt > 0 {
        let refused = |what, source| DaemonError::Realtime {
            what,
            priority: rt,
            source,
        };
        dp.set_realtime(rt).map_err(|e| refused("workers", e))?;
        let mut threads = vec!["workers"];
        if let Some(r) = &replication {
            r.set_realtime(rt)
                .map_err(|e| refused("replication thread", e))?;
            threads.push("replication thread");
        }
        if let Some(h) = &ha {
            h.set_realtime(rt).map_err(|e| refused("HA thread", e))?;
            threads.push("HA thread");
        }
        tracing::info!(priority = rt, "{} at SCHED_FIFO", threads.join(", "));
    }

    let unit = Unit {
        loaded: &loaded,
        dp: &dp,
        macs: &macs,
        sys,
        backend: backend_name,
        backend_reason: selected.reason.clone(),
        started: Instant::now(),
        ha: ha.as_ref(),
        running: std::cell::RefCell::new(cfg.clone()),
        most_conns: std::cell::Cell::new(0),
        most_xlates: std::cell::Cell::new(0),
    };
    drop(tx);
    loop {
        let msg = match rx.recv_timeout(HIGH_WATER_EVERY) {
            Ok(m) => m,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if cfg.stateful.is_some() {
                    let _ = unit.state_counts();
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Msg::Command(cmd, reply) => {
                let _ = reply.send(api::execute(&unit, cmd));
            }
            // SIGHUP: `config reload` (never forced: a standby refuses it).
            Msg::Signal(SIGHUP) => {
                tracing::info!(signal = "SIGHUP", "reloading the configuration");
                let r = unit.config_reload(false);
                if let Some(e) = r.error {
                    tracing::warn!(signal = "SIGHUP", "{e}");
                }
            }
            Msg::Signal(sig) => {
                tracing::info!(
                    signal = if sig == SIGINT { "SIGINT" } else { "SIGTERM" },
                    "shutting down"
                );
                break;
            }
        }
    }
    drop(unit);
    server.shutdown();
    if let Some(ha) = ha {
        ha.shutdown();
    }
    // Holds the data plane as its tables: stopped before the workers.
    if let Some(r) = replication {
        r.shutdown();
    }
    // The HA thread, the only other owner, has been joined.
    let dp = match Arc::try_unwrap(dp) {
        Ok(dp) => dp,
        Err(_) => {
            tracing::error!("data plane still shared at shutdown; workers stop with the process");
            return Ok(());
        }
    };
    let last = dp.shutdown();
    let total = tandem_dataplane::CounterSnapshot::total(&last);
    tracing::info!(
        rx = total.rx,
        tx = total.tx,
        forwarded = total.forwarded,
        "workers stopped"
    );
    // Dropping the attachments closes the BPF links: the programs detach.
    drop(attachments);
    signal_handle.close();
    tracing::info!("tandemd stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::profile::SHIPPED;
    use std::net::Ipv4Addr;

    #[test]
    fn dataplane_config_maps_config_and_profile() {
        let p = HwProfile::parse(SHIPPED[0].1, "lab").unwrap();
        let text = include_str!("../examples/unit.toml");
        let cfg = ConfigFile::parse(text, "unit.toml")
            .unwrap()
            .validate(&p)
            .unwrap();
        let macs = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
        let d = dataplane_config(&cfg, &p, &macs);
        d.validate().unwrap();
        assert_eq!(d.interfaces[1].name, "inside");
        assert_eq!(d.interfaces[1].mac, macs[1]);
        assert_eq!(d.interfaces[1].addr, Ipv4Addr::new(198, 18, 2, 1));
        assert_eq!(d.interfaces[1].prefix_len, 24);
        assert_eq!(d.interfaces[0].mtu, 1500);
        assert_eq!(
            d.routes[0],
            RouteConfig {
                prefix: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                next_hop: Some(Ipv4Addr::new(198, 18, 1, 254)),
                interface: 0
            }
        );
        assert_eq!(d.routes[1].interface, 1);
        assert_eq!(
            d.tables,
            TableSizes {
                arp: 1024,
                routes: 256,
                arp_pending: 256,
                arp_pending_per_hop: 8
            }
        );
        assert_eq!(d.arp.garp_count, 3);
        assert_eq!(d.arp.garp_interval, Duration::from_millis(100));
        assert_eq!(d.arp.reachable, Duration::from_secs(300));
        assert_eq!(d.run.batch, 64);
        assert_eq!(
            d.run.idle,
            IdleStrategy::SpinThenBlock {
                spin: Duration::from_micros(50),
                block: Duration::from_millis(1)
            }
        );
        assert_eq!(d.run.tx_flush, Duration::from_micros(50));
        let f = frame_config(&p);
        assert_eq!(
            (f.frame_count, f.frame_size, f.ring_size, f.huge_pages),
            (4096, 2048, 1024, true)
        );
    }

    #[test]
    fn appliance_profiles_busy_poll() {
        let p = HwProfile::parse(SHIPPED[1].1, "asa-5500x").unwrap();
        let text = include_str!("../examples/unit.toml");
        let cfg = ConfigFile::parse(text, "unit.toml")
            .unwrap()
            .validate(&p)
            .unwrap();
        let d = dataplane_config(&cfg, &p, &[[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]]);
        assert_eq!(d.run.idle, IdleStrategy::BusyPoll);
        d.validate().unwrap();
    }

    #[test]
    fn stateful_settings_map_onto_the_state_config() {
        use tandem_state::{Action, NatRule, Prefix, Proto, RuleProto};
        let p = HwProfile::parse(SHIPPED[0].1, "lab").unwrap();
        let text = include_str!("../examples/stateful-pair.toml");
        let cfg = ConfigFile::parse(text, "stateful-pair.toml")
            .unwrap()
            .validate(&p)
            .unwrap();
        let macs = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
        let d = dataplane_config(&cfg, &p, &macs);
        let s = d.state.as_ref().expect("stateful");
        s.validate().unwrap();
        assert_eq!(s.interfaces[0].name, "outside");
        assert_eq!(s.interfaces[0].security_level, 100);
        assert_eq!(s.interfaces[0].asr_group, Some(1));
        assert_eq!(s.interfaces[1].security_level, 0);
        // Profile capacities (262 144 per unit) split over the lab's one worker.
        let w = p.cores.workers.len() as u32;
        assert_eq!(s.capacities.conns, 262_144u32.div_ceil(w));
        // PAT to "interface": inside's configured (active) address, the VIP
        // that moves with failover.
        assert_eq!(
            s.nat[0],
            NatRule::DynamicPat {
                real_if: 0,
                real: Prefix::new(Ipv4Addr::new(198, 18, 1, 0), 24),
                mapped_if: 1,
                mapped: Ipv4Addr::new(198, 18, 2, 1),
            }
        );
        assert_eq!(
            s.nat[1],
            NatRule::Static {
                real_if: 1,
                real: Ipv4Addr::new(198, 18, 2, 10),
                mapped_if: 0,
                mapped: Ipv4Addr::new(198, 18, 1, 100),
                port: Some((Proto::Tcp, 8080, 80)),
            }
        );
        assert_eq!(s.access.len(), 3);
        assert_eq!(s.access[0].proto, RuleProto::Icmp);
        assert_eq!(s.access[0].dst_ports, (0, u16::MAX));
        assert_eq!(s.access[1].dst_ports, (1000, 2000));
        assert_eq!(
            s.access[1].src,
            Prefix::new(Ipv4Addr::new(198, 18, 2, 10), 32)
        );
        assert_eq!(s.access[2].action, Action::Deny);
        assert_eq!(s.access[2].proto, RuleProto::Any);
        assert_eq!(s.timeouts.tcp_established, Duration::from_secs(3600));
        assert_eq!(s.timeouts.udp, Duration::from_secs(120));
        assert!(!s.replicate_http);
        // Replication: only for a stateful failover unit; frames fit the
        // state device's MTU; bulk sync paced at replication_rate.
        assert!(d.sync.is_none(), "added by the caller");
        let sy = sync_settings(&cfg, 1500).unwrap();
        assert_eq!(sy.frame_size, crate::replication::frame_size(1500));
        assert!(sy.frame_size + crate::replication::LINK_OVERHEAD <= 1500);
        assert_eq!(sy.bulk_rate, 100_000);
        assert_eq!(sy.buffers_per_worker, SYNC_RING_FRAMES + SYNC_IN_FLIGHT);
        assert_eq!(state_device(&cfg), Some("st0"));
        let mut d = d;
        d.sync = Some(sy);
        d.validate().unwrap();

        // A stateless unit: neither.
        let plain = ConfigFile::parse(include_str!("../examples/unit.toml"), "unit.toml")
            .unwrap()
            .validate(&p)
            .unwrap();
        assert!(state_config(&plain).is_none());
        assert!(sync_settings(&plain, 1500).is_none());
    }

    #[test]
    fn exit_codes() {
        let fit = DaemonError::Fit {
            profile: "x".into(),
            source: FitError { problems: vec![] },
        };
        assert_eq!(fit.exit_code(), 2);
        assert_eq!(
            DaemonError::Signals(std::io::Error::other("x")).exit_code(),
            1
        );
    }
}
