//! The HA thread: owns the failover state machine ([`tandem_ha::Unit`]), the
//! secure links ([`tandem_link::SecureLink`]) and their L2 sockets, and glues
//! them to the real world — clock, sockets, link state, operator commands.
//!
//! One dedicated thread, pinned to the management core, never a worker: the
//! hello path must not wait behind packet batches. Each iteration reads the
//! monotonic clock once, feeds inputs (operator commands, received frames,
//! link state), runs due timers, drains every output (frames, then events),
//! and sleeps in `poll()` on the link sockets until the earliest of the
//! unit's timeout, the links' timeouts and [`MAX_WAIT`] — the bound on how
//! long an operator command waits to be picked up (commands arrive on a
//! crossbeam channel, which `poll()` cannot watch).
//!
//! Transport: the failover link (and a dedicated state link) carry frames
//! of EtherType 0x88B5 ([`tandem_ha::codec::ETHERTYPE`]) over an AF_PACKET
//! socket; each payload is a [`tandem_ha::codec`] message sealed by the
//! link's `SecureLink`, whose handshake hellos go out the same socket. Frames
//! go to the mate's MAC once learned (from any accepted frame), broadcast
//! before that.
//!
//! Data interfaces: interface hellos and LANTEST are sealed with the
//! failover link's session (docs/failover-protocol.md §2), put in an
//! Ethernet frame (source: the MAC this unit owns there; destination:
//! broadcast — simpler than tracking the MAC the mate owns, which moves at
//! every failover, and harmless: hosts ignore EtherType 0x88B5) and sent
//! with `Dataplane::inject`; frames of that EtherType come back from
//! `Dataplane::punted()`, read every iteration (so at most [`MAX_WAIT`]
//! late). Network activity for the interface tests is a change of
//! `Dataplane::interface_rx()`. Ownership changes (takeover, relinquish, MAC
//! switch) go to `Dataplane::set_ownership`: active → active IPs and MACs,
//! forwarding, gratuitous ARP burst by the data path; standby → standby IPs
//! and MACs, not forwarding. The ARP test's probes are ARP requests (from
//! the owned address and MAC) for the most recent entries of the
//! interface's ARP table, read from a snapshot that a helper thread
//! refreshes every [`ARP_REFRESH`] (reading the workers' tables can take a
//! while and must never delay a hello); the broadcast-ping test sends one
//! ICMP echo request to the subnet's broadcast address. The unit's own
//! gratuitous ARP transmits are not sent: the data path's burst at
//! `set_ownership` replaces them.
//!
//! Remote command execution (`failover exec mate …`, seeds 003): the
//! requesting unit sends an exec request (message type 16) on the failover
//! link and answers its operator when the reply chunks (type 17) are all in,
//! or after [`EXEC_TIMEOUT`]. The mate runs the command on a short-lived
//! helper thread through the daemon's own command handler (the same
//! `api::execute` path as its control socket) — never on this thread, which
//! must keep sending hellos and also answers the failover commands that
//! the handler hands back to it — and sends the control API's JSON answer
//! back in chunks of at most [`tandem_ha::MAX_EXEC_CHUNK`] bytes.
//!
//! Stateful units (issue 4): every state change sets the replication
//! thread's role ([`ReplicationRole::for_state`]: active sends with a new
//! sender epoch, so a restarted mate gets a bulk sync; standby-like states
//! receive and ask for a bulk sync at once); `StateLinkStale` /
//! `StateLinkRestored` mark the replicated state stale / resynchronise it.
//! `failover active` on the standby waits until it holds the whole state
//! (`ReplicationLink::ready`), `no failover active` on the active until the
//! mate acknowledged a complete bulk sync (`ReplicationLink::mate_ready`),
//! each at most [`REPLICATION_WAIT`], then proceeds with a warning; the wait
//! is polled from the loop, so hellos go on. Failovers caused by failures
//! never wait. (`failover exec mate failover active` still answers within
//! [`EXEC_TIMEOUT`]: run a manual failover that may wait on the unit itself.)

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use tandem_ha::codec;
use tandem_ha::{
    AddressSet, ConfigChunk, Event, ExecReply, ExecRequest, HostView, Link, LinkState, Message,
    Outbound, OwnedAddress, State, Timestamp, Unit, MAX_EXEC_CHUNK,
};
use tandem_io::l2sock::{wait_readable, L2Socket, BROADCAST};
use tandem_link::wire::DATA_HEADER_LEN;
use tandem_link::{LinkKind, Protection, Received, Security};

use crate::api::server::Handler;
use crate::api::{
    Command, CommandDone, Exec, ExecTarget, FailoverHost, FailoverInterface, FailoverStatus,
    FailoverTransition, Response,
};
use crate::config::{Interface, UnitConfig};
use crate::failover::FailoverSettings;
use crate::link_io::{LinkIo, LinkIoError};
use crate::profile::HwProfile;
use crate::reload::{self, Plan, ReloadError};
use crate::replication::{ReplicationLink, ReplicationRole};
use crate::sysfs::SysNet;
use tandem_dataplane::{Dataplane, InterfaceOwnership, Ownership, PuntedFrame, Role as DpRole};

/// Longest sleep of the HA thread: bounds operator command latency and how
/// late a punted data-interface frame (interface hello, LANTEST) is read.
pub const MAX_WAIT: Duration = Duration::from_millis(2);

/// How long [`HaHandle::execute`] waits for the HA thread.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a manual failover (`failover active` on the standby, `no
/// failover active` on the active) waits for the unit that is to become
/// active to hold the whole replicated state (issue 4: "manual failover
/// back to a unit waits until its bulk sync has completed, with a
/// timeout"). After it the failover proceeds anyway, with a warning that
/// says what was missing. A failover caused by a failure never waits.
pub const REPLICATION_WAIT: Duration = Duration::from_secs(30);

/// How long a caller should wait for the answer to `cmd`: manual failovers
/// may wait [`REPLICATION_WAIT`] for replication first.
pub fn command_timeout(cmd: Command) -> Duration {
    match cmd {
        Command::FailoverActive | Command::NoFailoverActive => REPLICATION_WAIT + COMMAND_TIMEOUT,
        _ => COMMAND_TIMEOUT,
    }
}

/// How long `failover exec mate` waits for the mate's answer. Below the
/// daemon's own 5 s command timeout, so that the operator sees this
/// precise error rather than a generic one.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(4);

/// Largest configuration replication carries (in [`MAX_EXEC_CHUNK`] chunks).
pub const MAX_CONFIG: usize = 256 * 1024;

/// Top-level sections that never leave a unit: seeds 004, the failover
/// bootstrap settings ([failover]) and, in tandem, the unit's own identity
/// and hardware choices ([unit]).
const LOCAL_SECTIONS: [&str; 2] = ["unit", "failover"];

/// Keys of `[failover]` that are replicated: seeds 004, "Command
/// Replication" replicates "all configuration commands except for mode,
/// firewall, and failover lan unit", so the timers and the interface policy
/// follow the active unit; the bootstrap settings (role, links, key) stay.
const REPLICATED_FAILOVER_KEYS: [&str; 6] = [
    "unit_polltime",
    "unit_holdtime",
    "interface_polltime",
    "interface_holdtime",
    "link_state_polltime",
    "interface_policy",
];

/// The configuration text the active unit replicates: everything but
/// [`LOCAL_SECTIONS`] (of `[failover]`, only [`REPLICATED_FAILOVER_KEYS`]
/// go) and the interfaces' Linux device names (per-unit hardware, which may
/// differ between the two units).
fn replicable_config(text: &str) -> Result<String, String> {
    let mut t: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
    let timers: toml::Table = match t.get("failover") {
        Some(toml::Value::Table(f)) => f
            .iter()
            .filter(|(k, _)| REPLICATED_FAILOVER_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => toml::Table::new(),
    };
    for s in LOCAL_SECTIONS {
        t.remove(s);
    }
    if !timers.is_empty() {
        t.insert("failover".into(), toml::Value::Table(timers));
    }
    if let Some(toml::Value::Array(ifs)) = t.get_mut("interface") {
        for i in ifs.iter_mut() {
            if let toml::Value::Table(i) = i {
                i.remove("device");
            }
        }
    }
    toml::to_string(&t).map_err(|e| format!("cannot write TOML: {e}"))
}

/// The standby's new configuration: the mate's, with this unit's
/// [`LOCAL_SECTIONS`] and interface devices (matched by position: both
/// units list their data interfaces in the same order, failover-protocol.md
/// §3.4).
fn merge_config(own: &str, received: &str) -> Result<String, String> {
    let own: toml::Table = own
        .parse()
        .map_err(|e| format!("this unit's configuration is not TOML: {e}"))?;
    let mut t: toml::Table = received
        .parse()
        .map_err(|e| format!("the mate's configuration is not TOML: {e}"))?;
    let devices: Vec<Option<toml::Value>> = match own.get("interface") {
        Some(toml::Value::Array(a)) => a.iter().map(|i| i.get("device").cloned()).collect(),
        _ => Vec::new(),
    };
    if let Some(toml::Value::Array(ifs)) = t.get_mut("interface") {
        if ifs.len() != devices.len() {
            return Err(format!(
                "the mate has {} data interfaces, this unit {}",
                ifs.len(),
                devices.len()
            ));
        }
        for (i, d) in ifs.iter_mut().zip(devices) {
            if let (toml::Value::Table(i), Some(d)) = (i, d) {
                i.insert("device".into(), d);
            }
        }
    }
    let received_failover = match t.remove("failover") {
        Some(toml::Value::Table(f)) => f,
        _ => toml::Table::new(),
    };
    for s in LOCAL_SECTIONS {
        match own.get(s) {
            Some(v) => t.insert(s.into(), v.clone()),
            None => t.remove(s),
        };
    }
    // The mate's timers and policy replace this unit's (absent: the defaults).
    if let Some(toml::Value::Table(f)) = t.get_mut("failover") {
        for k in REPLICATED_FAILOVER_KEYS {
            match received_failover.get(k) {
                Some(v) => f.insert(k.into(), v.clone()),
                None => f.remove(k),
            };
        }
    }
    toml::to_string(&t).map_err(|e| format!("cannot write TOML: {e}"))
}

/// Largest answer `failover exec` carries back (the mate's JSON answer);
/// a larger one is replaced by an error naming its size.
pub const MAX_EXEC_ANSWER: usize = 64 * 1024;

/// How often the ARP-test helper re-reads the workers' ARP tables.
pub const ARP_REFRESH: Duration = Duration::from_secs(1);

/// Per interface, the resolved neighbours, most recently confirmed first.
type ArpCache = Arc<Mutex<Vec<Vec<Ipv4Addr>>>>;

/// Frames read from one socket per iteration before timers run again.
const RX_BUDGET: usize = 64;

/// The ownership a failover unit starts with, before its role is known:
/// no address, its own MACs, not forwarding (never claims the active
/// addresses while negotiating).
pub fn initial_ownership(macs: &[[u8; 6]]) -> Ownership {
    Ownership {
        interfaces: macs
            .iter()
            .map(|m| InterfaceOwnership {
                addr: None,
                mac: *m,
            })
            .collect(),
    }
}

/// The data path's ownership for what the unit owns (`burned`: each
/// interface's own MAC, used where the unit owns nothing).
pub fn ownership(owned: &[OwnedAddress], burned: &[[u8; 6]]) -> Ownership {
    let mut own = initial_ownership(burned);
    for o in owned {
        if let Some(i) = own.interfaces.get_mut(usize::from(o.iface.0)) {
            i.mac = o.mac.0;
            i.addr = match o.ip {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            };
        }
    }
    own
}

/// Why the HA thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("failover: {0}")]
    Socket(#[from] tandem_io::l2sock::L2Error),
    #[error("failover: link device \"{device}\": {why}")]
    Device { device: String, why: String },
    #[error("failover: invalid configuration:\n{0}")]
    Config(String),
    #[error("failover: starting the HA thread: {0}")]
    Thread(std::io::Error),
}

/// An answer of the exec helper thread: request id, command, answer.
type ExecDone = (u32, Command, Response);

/// A `failover exec` this unit sent and is waiting for.
struct PendingExec {
    id: u32,
    cmd: Command,
    reply: Sender<Response>,
    deadline: Duration,
    /// The answer's chunks so far, in order.
    data: Vec<u8>,
    next_seq: u16,
}

/// Where `failover exec` runs a command.
#[derive(Debug, PartialEq, Eq)]
enum ExecWhere {
    Here,
    Mate,
}

/// Whether `target` names this unit (in `state`) or the mate.
fn exec_where(target: ExecTarget, state: State) -> ExecWhere {
    let here = match target {
        ExecTarget::Mate => false,
        ExecTarget::Active => state == State::Active,
        ExecTarget::Standby => matches!(state, State::StandbyReady | State::PseudoStandby),
    };
    if here {
        ExecWhere::Here
    } else {
        ExecWhere::Mate
    }
}

/// The control API's answer as `failover exec` carries it: its JSON line,
/// or an error naming the size when it exceeds [`MAX_EXEC_ANSWER`].
fn exec_answer(cmd: &str, r: &Response) -> Vec<u8> {
    let bytes = serde_json::to_vec(r).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::error(format!("cannot encode the answer: {e}")))
            .unwrap_or_default()
    });
    if bytes.len() <= MAX_EXEC_ANSWER {
        return bytes;
    }
    let e = Response::error(format!(
        "the answer to `{cmd}` is {} bytes, more than the {MAX_EXEC_ANSWER} bytes failover exec carries; run it on that unit",
        bytes.len()
    ));
    serde_json::to_vec(&e).unwrap_or_default()
}

/// `answer` cut into exec reply chunks.
fn exec_chunks(id: u32, answer: &[u8]) -> Vec<ExecReply> {
    let n = answer.len().div_ceil(MAX_EXEC_CHUNK).max(1);
    (0..n)
        .map(|i| ExecReply {
            id,
            seq: u16::try_from(i).unwrap_or(u16::MAX),
            last: i + 1 == n,
            data: answer
                .get(i * MAX_EXEC_CHUNK..((i + 1) * MAX_EXEC_CHUNK).min(answer.len()))
                .unwrap_or(&[])
                .to_vec(),
        })
        .collect()
}

/// Turn the mate's JSON answer into this unit's answer: errors say they
/// come from the mate.
fn mate_answer(bytes: &[u8]) -> Response {
    match serde_json::from_slice::<Response>(bytes) {
        Ok(r) if r.ok => r,
        Ok(r) => Response::error(format!(
            "mate: {}",
            r.error.as_deref().unwrap_or("refused the command")
        )),
        Err(e) => Response::error(format!(
            "the mate's answer is not a control API answer: {e}"
        )),
    }
}

/// A handle on the running HA thread.
pub struct HaHandle {
    tx: Sender<(Command, Sender<Response>)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    arp_thread: Option<JoinHandle<()>>,
}

impl HaHandle {
    /// Open the link sockets, build the state machine and start the thread
    /// (pinned to `core` when given). `macs` are the data devices' MACs in
    /// interface order.
    ///
    /// `config_path` is this unit's configuration file: replicated to a
    /// standby that joins, and the base a replicated one is merged into.
    /// `exec` runs a command the mate sent with `failover exec` (the
    /// daemon's control-socket handler); `None` refuses them.
    ///
    /// `running` is the configuration the unit started with and its
    /// hardware profile: what `config reload` and a replicated configuration
    /// are compared with and validated against ([`crate::reload`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        settings: &FailoverSettings,
        interfaces: &[Interface],
        macs: &[[u8; 6]],
        floors: &tandem_ha::TimerFloors,
        core: Option<usize>,
        dp: Arc<Dataplane>,
        exec: Option<Handler>,
        config_path: Option<std::path::PathBuf>,
        running: Option<(UnitConfig, HwProfile)>,
        replication: Option<ReplicationLink>,
    ) -> Result<HaHandle, HaError> {
        let sys = SysNet::default();
        let fo_mac = sys
            .mac(&settings.link_device)
            .map_err(|why| HaError::Device {
                device: settings.link_device.clone(),
                why,
            })?;
        let cfg = settings.ha_config(interfaces, macs, fo_mac);
        let epoch = Instant::now();
        let unit =
            Unit::new(cfg, floors, Timestamp::ZERO).map_err(|e| HaError::Config(e.to_string()))?;
        let security = Security::from_config(settings.failover_key(), |w| tracing::warn!("{w}"));
        // The same link plumbing as the replication thread's state link
        // (crate::link_io), on the failover EtherType.
        let open_link = |kind: LinkKind, dev: &str| -> Result<LinkIo, HaError> {
            LinkIo::open(kind, dev, codec::ETHERTYPE, &security, Duration::ZERO).map_err(
                |e| match e {
                    LinkIoError::Socket(e) => HaError::Socket(e),
                    LinkIoError::Device { device, why } => HaError::Device { device, why },
                },
            )
        };
        let fo = open_link(LinkKind::Failover, &settings.link_device)?;
        let st = match &settings.state_device {
            Some(d) => Some(open_link(LinkKind::State, d)?),
            None => None,
        };
        let (tx, rx) = bounded(16);
        let stop = Arc::new(AtomicBool::new(false));
        let arp: ArpCache = Arc::new(Mutex::new(vec![Vec::new(); interfaces.len()]));
        let arp_thread = {
            let (dp, arp, stop) = (Arc::clone(&dp), Arc::clone(&arp), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("ha-arp".into())
                .spawn(move || arp_snapshots(&dp, &arp, &stop))
                .map_err(HaError::Thread)?
        };
        let mut ha = Ha {
            unit,
            fo,
            st,
            epoch,
            settings: settings.clone(),
            devices: interfaces.iter().map(|i| i.device.clone()).collect(),
            sys,
            punted: dp.punted(),
            rx_seen: dp.interface_rx(),
            dp,
            macs: macs.to_vec(),
            applied: None,
            arp,
            subnets: interfaces
                .iter()
                .map(|i| (i.address, i.prefix_len))
                .collect(),
            ping_seq: 0,
            frame: vec![0u8; 2048],
            buf: vec![0u8; 2048],
            tx_data_unsent: 0,
            tx_no_session: 0,
            rejected: 0,
            exec,
            exec_done: bounded(4),
            exec_thread: None,
            pending: None,
            // Distinct per incarnation, so a late reply to a request of a
            // previous run is never taken for a new one.
            exec_id: std::process::id().wrapping_shl(16),
            config_path,
            config_gen: std::process::id().wrapping_shl(16),
            config_rx: None,
            config_sync: None,
            running,
            floors: *floors,
            fo_mac,
            replication,
            manual: None,
        };
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ha".into())
            .spawn(move || {
                if let Some(c) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                        tracing::warn!(core = c, "could not pin the HA thread");
                    }
                }
                ha.run(&rx, &stop2);
            })
            .map_err(HaError::Thread)?;
        Ok(HaHandle {
            tx,
            stop,
            thread: Some(thread),
            arp_thread: Some(arp_thread),
        })
    }

    /// Runs the HA thread at `SCHED_FIFO` `priority` (0: time-sharing), see
    /// [`tandem_io::sched`]: its hellos and LANTEST replies then go out on
    /// time whatever else runs on the management core. It blocks between
    /// timers and frames, so it never holds the core.
    pub fn set_realtime(&self, priority: u8) -> std::io::Result<()> {
        match &self.thread {
            Some(t) => tandem_io::sched::set_realtime(t, priority),
            None => Ok(()),
        }
    }

    /// Run a failover command on the HA thread and return its answer.
    pub fn execute(&self, cmd: Command) -> Response {
        let (rtx, rrx) = bounded(1);
        if self.tx.send_timeout((cmd, rtx), COMMAND_TIMEOUT).is_err() {
            return Response::error("tandemd's HA thread is busy; retry");
        }
        rrx.recv_timeout(command_timeout(cmd))
            .unwrap_or_else(|_| Response::error(format!("the HA thread did not answer `{cmd}`")))
    }

    /// Stop and join the thread.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in [self.thread.take(), self.arp_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

impl Drop for HaHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Ha {
    unit: Unit,
    fo: LinkIo,
    st: Option<LinkIo>,
    epoch: Instant,
    settings: FailoverSettings,
    devices: Vec<String>,
    sys: SysNet,
    dp: Arc<Dataplane>,
    punted: Receiver<PuntedFrame>,
    /// `interface_rx()` at the last look: a change is network activity.
    rx_seen: Vec<u64>,
    /// Burned-in MACs of the data interfaces.
    macs: Vec<[u8; 6]>,
    /// The ownership last handed to the data path.
    applied: Option<(Ownership, DpRole)>,
    /// ARP-test targets, refreshed by the helper thread.
    arp: ArpCache,
    /// Each interface's configured (active) address and prefix length.
    subnets: Vec<(Ipv4Addr, u8)>,
    ping_seq: u16,
    /// Ethernet frame under construction for `inject`.
    frame: Vec<u8>,
    buf: Vec<u8>,
    tx_data_unsent: u64,
    tx_no_session: u64,
    rejected: u64,
    /// Runs the mate's `failover exec` commands.
    exec: Option<Handler>,
    /// Answers of the exec helper thread: (request id, command, answer).
    exec_done: (Sender<ExecDone>, Receiver<ExecDone>),
    /// The helper thread running a mate's exec (one at a time; a thread
    /// that died without answering frees the slot too).
    exec_thread: Option<JoinHandle<()>>,
    /// This unit's exec waiting for the mate.
    pending: Option<PendingExec>,
    exec_id: u32,
    /// This unit's configuration file.
    config_path: Option<std::path::PathBuf>,
    /// Generation of the last configuration this unit sent.
    config_gen: u32,
    /// A configuration being received: generation, next chunk, bytes.
    config_rx: Option<(u32, u16, Vec<u8>)>,
    /// For `show failover`: "Config sync: …".
    config_sync: Option<String>,
    /// The configuration in force and the profile it was validated
    /// against; `None`: live reload unavailable (tests).
    running: Option<(UnitConfig, HwProfile)>,
    floors: tandem_ha::TimerFloors,
    /// The failover link device's MAC (for the state machine's config).
    fo_mac: [u8; 6],
    /// The replication thread (stateful units): told every role change and
    /// every stale/restored state link; asked whether the state is complete
    /// before a manual failover.
    replication: Option<ReplicationLink>,
    /// A manual failover waiting for replication ([`REPLICATION_WAIT`]).
    manual: Option<PendingManual>,
}

/// `failover active` / `no failover active` waiting until the unit that is
/// to become active holds the whole replicated state.
struct PendingManual {
    cmd: Command,
    reply: Sender<Response>,
    started: Duration,
}

fn ts(d: Duration) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Ha {
    fn run(&mut self, rx: &Receiver<(Command, Sender<Response>)>, stop: &AtomicBool) {
        // The unit's and the links' time zero is now, not when `start` built
        // them: the thread starts tens of milliseconds later, and counting the
        // startup negotiation wait (one unit holdtime) from before the loop
        // could run out before a hello can arrive — a restarting unit would
        // then take the active role beside its active mate.
        self.epoch = Instant::now();
        tracing::info!(
            role = %self.unit.role(),
            failover_link = %self.settings.link_device,
            state_link = self.settings.state_device.as_deref().unwrap_or("shared with the failover link"),
            unit_polltime = ?self.settings.unit.polltime,
            unit_holdtime = ?self.settings.unit.holdtime,
            "failover started"
        );
        while !stop.load(Ordering::Relaxed) {
            let now_d = self.epoch.elapsed();
            let now = ts(now_d);
            // 1. Inputs: operator commands, then received frames.
            while let Ok((cmd, reply)) = rx.try_recv() {
                if let Command::Exec(e) = cmd {
                    self.start_exec(now_d, e, reply);
                    continue;
                }
                if matches!(cmd, Command::FailoverActive | Command::NoFailoverActive)
                    && self.must_wait_for_replication(cmd)
                {
                    self.wait_for_replication(now_d, cmd, reply);
                    continue;
                }
                let r = self.command(now_d, cmd);
                let _ = reply.send(r);
            }
            self.poll_exec(now_d);
            self.poll_manual(now_d);
            self.receive(now_d, true);
            if self.st.is_some() {
                self.receive(now_d, false);
            }
            self.receive_punted(now_d);
            self.activity(now);
            // 2. Timers.
            if self.unit.poll_timeout().is_some_and(|t| t <= now) {
                self.unit.handle_timeout(now);
            }
            for l in [Some(&mut self.fo), self.st.as_mut()].into_iter().flatten() {
                l.handle_timeout(now_d);
            }
            // 3. Outputs.
            self.drain(now_d);
            // 4. Sleep until the earliest deadline or a frame arrives.
            let unit_t = self
                .unit
                .poll_timeout()
                .map(|t| Duration::from_nanos(t.as_nanos()));
            let mut next = earliest(unit_t, self.fo.link.poll_timeout());
            if let Some(st) = &self.st {
                next = earliest(next, st.link.poll_timeout());
            }
            let after = self.epoch.elapsed();
            let wait = next
                .map(|t| t.saturating_sub(after))
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT);
            if wait.is_zero() {
                continue;
            }
            let socks: Vec<&L2Socket> = [Some(&self.fo), self.st.as_ref()]
                .into_iter()
                .flatten()
                .map(|l| &l.sock)
                .collect();
            if let Err(e) = wait_readable(&socks, wait) {
                tracing::warn!("failover: poll on the link sockets: {e}");
                std::thread::sleep(MAX_WAIT);
            }
        }
        tracing::info!("failover stopped");
    }

    /// Read up to [`RX_BUDGET`] frames from the failover (or state) link.
    fn receive(&mut self, now_d: Duration, failover: bool) {
        let now = ts(now_d);
        for _ in 0..RX_BUDGET {
            let l = if failover {
                &mut self.fo
            } else {
                match self.st.as_mut() {
                    Some(l) => l,
                    None => return,
                }
            };
            let Some(r) = l.receive(now_d, &mut self.buf) else {
                return;
            };
            let msg = match r {
                Received::Data(opened) => match codec::decode(&self.buf[opened.payload]) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::debug!("failover: undecodable message from the mate: {e}");
                        None
                    }
                },
                Received::Handshake | Received::Dropped(_) => None,
            };
            match (msg, failover) {
                (Some(Message::ExecRequest(r)), true) => self.on_exec_request(now_d, r),
                (Some(Message::ExecReply(r)), true) => self.on_exec_reply(r),
                (Some(Message::ConfigChunk(c)), true) => self.on_config_chunk(c),
                (Some(m), true) => self.unit.handle_message(now, Link::Failover, &m),
                _ => {}
            }
            self.drain_link(now_d);
        }
    }

    /// Send link hellos and log link events. A new incarnation of the mate
    /// on the failover link is told to the unit before its first hello is
    /// handled (the handshake comes first), so that hello counts as a join.
    fn drain_link(&mut self, now_d: Duration) {
        if self.fo.drain(now_d, &mut self.buf, &mut self.rejected) {
            self.unit.handle_mate_restarted();
        }
        if let Some(st) = self.st.as_mut() {
            st.drain(now_d, &mut self.buf, &mut self.rejected);
        }
    }

    /// Drain the unit's transmits and events (events can queue more of
    /// both: a link-state poll, for instance), and the links' hellos.
    fn drain(&mut self, now_d: Duration) {
        let now = ts(now_d);
        for _ in 0..16 {
            let mut any = false;
            while let Some(t) = self.unit.poll_transmit() {
                any = true;
                match (t.link, t.msg) {
                    (Link::Failover, Outbound::Unit(m)) => self.send_failover(now_d, &m),
                    (Link::Data(i), Outbound::Unit(m)) => self.send_data(now_d, i, &m),
                    (Link::Data(i), Outbound::ArpProbe { recent }) => self.arp_probe(i, recent),
                    (Link::Data(i), Outbound::BroadcastPing) => self.broadcast_ping(i),
                    // The data path's gratuitous ARP burst announces every
                    // owned address at takeover (`set_ownership` announce).
                    (_, Outbound::GratuitousArp { .. }) => {}
                    _ => self.tx_data_unsent += 1,
                }
            }
            while let Some(ev) = self.unit.poll_event() {
                any = true;
                self.event(now, ev);
            }
            if !any {
                break;
            }
        }
        self.drain_link(now_d);
    }

    /// Frames of tandem's EtherType punted by the workers from the data
    /// interfaces: opened with the failover link's session.
    fn receive_punted(&mut self, now_d: Duration) {
        let now = ts(now_d);
        for _ in 0..RX_BUDGET {
            let Ok(p) = self.punted.try_recv() else {
                return;
            };
            let frame = p.frame();
            if frame.len() <= 14 || p.truncated() {
                continue;
            }
            let n = frame.len() - 14;
            self.buf[..n].copy_from_slice(&frame[14..]);
            let Received::Data(opened) = self.fo.link.handle_frame(now_d, &mut self.buf[..n])
            else {
                self.drain_link(now_d);
                continue;
            };
            match codec::decode(&self.buf[opened.payload]) {
                Ok(m) => {
                    let i = tandem_ha::IfIndex(u16::try_from(p.interface).unwrap_or(u16::MAX));
                    self.unit.handle_message(now, Link::Data(i), &m);
                }
                Err(e) => tracing::debug!(
                    "failover: undecodable message on data interface {}: {e}",
                    p.interface
                ),
            }
        }
    }

    /// Network activity for the interface tests: any frame received.
    fn activity(&mut self, now: Timestamp) {
        let rx = self.dp.interface_rx();
        for (i, (new, old)) in rx.iter().zip(self.rx_seen.iter_mut()).enumerate() {
            if new != old {
                *old = *new;
                let idx = tandem_ha::IfIndex(u16::try_from(i).unwrap_or(u16::MAX));
                self.unit.handle_traffic_seen(now, idx);
            }
        }
    }

    /// The MAC and IPv4 address this unit uses on data interface `i` now
    /// (its own MAC and no address while it owns none).
    fn source(&self, i: tandem_ha::IfIndex) -> ([u8; 6], Option<Ipv4Addr>) {
        let idx = usize::from(i.0);
        let owned = self.unit.owned_addresses();
        let o = owned.iter().find(|o| o.iface == i);
        let mac = o
            .map(|o| o.mac.0)
            .or_else(|| self.macs.get(idx).copied())
            .unwrap_or([0; 6]);
        let ip = o.and_then(|o| match o.ip {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        });
        (mac, ip)
    }

    fn inject(&mut self, idx: usize, frame: &[u8]) {
        if let Err(e) = self.dp.inject(idx, frame) {
            tracing::debug!("failover: inject on data interface {idx}: {e}");
            self.tx_data_unsent += 1;
        }
    }

    /// Seeds 004 "ARP test": an ARP request for the `recent`-th most
    /// recent neighbour of the interface (none known: nothing to send).
    fn arp_probe(&mut self, i: tandem_ha::IfIndex, recent: u8) {
        let idx = usize::from(i.0);
        let target = self
            .arp
            .try_lock()
            .ok()
            .and_then(|t| t.get(idx).and_then(|l| l.get(usize::from(recent)).copied()));
        let Some(target) = target else {
            return;
        };
        let (mac, ip) = self.source(i);
        let frame = arp_request(mac, ip.unwrap_or(Ipv4Addr::UNSPECIFIED), target);
        self.inject(idx, &frame);
    }

    /// Seeds 004 "Broadcast Ping test": one echo request to the subnet's
    /// broadcast address.
    fn broadcast_ping(&mut self, i: tandem_ha::IfIndex) {
        let idx = usize::from(i.0);
        let Some(&(addr, len)) = self.subnets.get(idx) else {
            return;
        };
        let (mac, ip) = self.source(i);
        let bcast = Ipv4Addr::from(u32::from(addr) | !crate::config::mask(len));
        self.ping_seq = self.ping_seq.wrapping_add(1);
        let frame = echo_request(
            mac,
            ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            bcast,
            self.ping_seq,
        );
        self.inject(idx, &frame);
    }

    /// A message for the mate on data interface `i`, in an Ethernet frame
    /// from the MAC this unit owns there, to broadcast.
    fn send_data(&mut self, now_d: Duration, i: tandem_ha::IfIndex, m: &tandem_ha::Message) {
        let n = match codec::encode(m, &mut self.buf[DATA_HEADER_LEN..]) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("failover: cannot encode a message for the mate: {e}");
                return;
            }
        };
        let Ok(len) = self.fo.link.seal(now_d, n, &mut self.buf) else {
            self.tx_no_session += 1;
            return;
        };
        let idx = usize::from(i.0);
        let (src, _) = self.source(i);
        let mut f = std::mem::take(&mut self.frame);
        f.clear();
        f.extend_from_slice(&BROADCAST);
        f.extend_from_slice(&src);
        f.extend_from_slice(&codec::ETHERTYPE.to_be_bytes());
        f.extend_from_slice(&self.buf[..len]);
        self.inject(idx, &f);
        self.frame = f;
    }

    fn send_failover(&mut self, now_d: Duration, m: &tandem_ha::Message) {
        let n = match codec::encode(m, &mut self.buf[DATA_HEADER_LEN..]) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("failover: cannot encode a message for the mate: {e}");
                return;
            }
        };
        match self.fo.link.seal(now_d, n, &mut self.buf) {
            Ok(len) => {
                if let Err(e) = self.fo.send(&self.buf[..len]) {
                    tracing::debug!("failover: send on {}: {e}", self.fo.sock.ifname());
                }
            }
            Err(_) => self.tx_no_session += 1,
        }
    }

    fn link_state(&self, dev: &str) -> LinkState {
        if self.sys.admin_up(dev) == Some(false) {
            LinkState::AdminDown
        } else if self.sys.link_up(dev) == Some(false) {
            LinkState::NoLink
        } else {
            LinkState::Up
        }
    }

    fn event(&mut self, now: Timestamp, ev: Event) {
        match &ev {
            Event::StateChanged(t) => {
                tracing::info!("failover state: {t}");
                if let Some(r) = &self.replication {
                    // Active sends (each activation is a new sender epoch,
                    // so a restarted mate gets a bulk sync); standby
                    // receives and asks for a bulk sync at once.
                    r.set_role(ReplicationRole::for_state(t.to));
                }
            }
            Event::StateLinkStale(_) => {
                tracing::warn!("failover: {ev}");
                if let Some(r) = &self.replication {
                    r.set_stale(true);
                }
            }
            Event::StateLinkRestored => {
                tracing::info!("failover: {ev}; resynchronising the replicated state");
                if let Some(r) = &self.replication {
                    r.set_stale(false);
                }
            }
            Event::PollLinkState => {
                for i in 0..self.devices.len() {
                    let s = self.link_state(&self.devices[i]);
                    let idx = tandem_ha::IfIndex(u16::try_from(i).unwrap_or(u16::MAX));
                    self.unit.handle_link_change(now, Link::Data(idx), s);
                }
                let s = self.link_state(&self.settings.link_device);
                self.unit.handle_link_change(now, Link::Failover, s);
                if let Some(d) = self.settings.state_device.clone() {
                    let s = self.link_state(&d);
                    self.unit.handle_link_change(now, Link::State, s);
                }
            }
            Event::TakeOver | Event::Relinquish | Event::AddressesChanged { .. } => {
                tracing::info!("failover: {ev}");
                let owned = self.unit.owned_addresses();
                let active = self.unit.address_set() == AddressSet::Active;
                let own = ownership(&owned, &self.macs);
                let role = if active {
                    DpRole::Forwarding
                } else {
                    DpRole::NotForwarding
                };
                // TakeOver and AddressesChanged usually come together: one
                // change (and one gratuitous ARP burst) per real change.
                if self.applied.as_ref() == Some(&(own.clone(), role)) {
                    return;
                }
                self.applied = Some((own.clone(), role));
                match self.dp.set_ownership(own, role, active) {
                    Ok(g) => tracing::info!(
                        generation = g,
                        forwarding = active,
                        "failover: data path now owns the {} addresses",
                        self.unit.address_set()
                    ),
                    Err(e) => {
                        tracing::error!("failover: cannot change the data path's ownership: {e}")
                    }
                }
            }
            Event::InterfaceTest { .. } => tracing::debug!("failover: {ev}"),
            Event::MateJoined => {
                tracing::info!("failover: {ev}");
                let now_d = Duration::from_nanos(now.as_nanos());
                if let Err(e) = self.send_config(now_d, "mate joined") {
                    tracing::warn!("failover: configuration replication to the mate: {e}");
                }
            }
            _ => tracing::info!("failover: {ev}"),
        }
    }

    fn command(&mut self, now_d: Duration, cmd: Command) -> Response {
        let now = ts(now_d);
        let done = |r: Result<(), tandem_ha::CommandError>, msg: &str| match r {
            Ok(()) => Response::ok(CommandDone {
                message: msg.to_string(),
            }),
            Err(e) => Response::error(format!("`{cmd}`: {e}")),
        };
        let r = match cmd {
            Command::ShowFailover | Command::ShowFailoverState | Command::ShowMonitorInterface => {
                Response::ok(self.status(now))
            }
            Command::ShowFailoverHistory => Response::ok(
                self.unit
                    .history()
                    .map(|t| FailoverTransition {
                        at_ms: millis(Duration::from_nanos(t.at.as_nanos())),
                        from: t.from.to_string(),
                        to: t.to.to_string(),
                        reason: t.reason.to_string(),
                    })
                    .collect::<Vec<_>>(),
            ),
            Command::FailoverActive => done(
                self.unit.failover_active(now),
                "this unit is becoming active",
            ),
            Command::NoFailoverActive => done(
                self.unit.no_failover_active(now),
                "this unit is handing the active role to its mate",
            ),
            Command::FailoverReset => done(self.unit.failover_reset(now), "failover reset"),
            Command::NoFailover => {
                self.unit.disable(now);
                done(Ok(()), "failover disabled on this unit")
            }
            Command::Failover => {
                self.unit.enable(now);
                done(Ok(()), "failover enabled on this unit")
            }
            Command::WriteStandby => {
                if self.unit.state() != State::Active {
                    Response::error(format!(
                        "`{cmd}`: this unit is {}, not active; run it on the active unit",
                        self.unit.state()
                    ))
                } else if self.unit.mate_state().is_none() {
                    Response::error(format!("`{cmd}`: no mate is heard on the failover link"))
                } else {
                    match self.send_config(now_d, "write standby") {
                        Ok(n) => Response::ok(CommandDone {
                            message: format!("configuration ({n} bytes) sent to the standby"),
                        }),
                        Err(e) => Response::error(format!("`{cmd}`: {e}")),
                    }
                }
            }
            Command::ConfigReload | Command::ConfigReloadForce => {
                self.reload(now_d, cmd == Command::ConfigReloadForce)
            }
            other => Response::error(format!("`{other}` is not a failover command")),
        };
        // Operator queries (also those the mate sends with `failover exec`)
        // change nothing: debug, so the log keeps to changes and reasons.
        if cmd.is_query() {
            tracing::debug!(command = %cmd, ok = r.ok, "failover command");
        } else {
            tracing::info!(command = %cmd, ok = r.ok, "failover command");
        }
        self.drain(now_d);
        r
    }

    /// `failover exec`: run here (failover commands only: this thread
    /// answers them) or send to the mate and wait for its answer.
    fn start_exec(&mut self, now_d: Duration, e: Exec, reply: Sender<Response>) {
        let inner = e.command();
        if exec_where(e.target, self.unit.state()) == ExecWhere::Here {
            let r = if inner.is_failover() {
                self.command(now_d, inner)
            } else {
                Response::error(format!(
                    "this unit is the {} unit: run `{inner}` without `failover exec`",
                    e.target.word()
                ))
            };
            let _ = reply.send(r);
            return;
        }
        if let Some(p) = &self.pending {
            let _ = reply.send(Response::error(format!(
                "`failover exec` is still waiting for the mate's answer to `{}`; retry",
                p.cmd
            )));
            return;
        }
        if !self.fo.link.is_established() {
            let _ = reply.send(Response::error(format!(
                "`{}`: no session with the mate on the failover link {}",
                Command::Exec(e),
                self.settings.link_device
            )));
            return;
        }
        self.exec_id = self.exec_id.wrapping_add(1);
        let id = self.exec_id;
        if inner.is_query() {
            tracing::debug!(command = %inner, id, "failover exec: sending to the mate");
        } else {
            tracing::info!(command = %inner, id, "failover exec: sending to the mate");
        }
        self.send_failover(
            now_d,
            &Message::ExecRequest(ExecRequest {
                id,
                command: inner.words().to_string(),
            }),
        );
        self.pending = Some(PendingExec {
            id,
            cmd: Command::Exec(e),
            reply,
            deadline: now_d + EXEC_TIMEOUT,
            data: Vec::new(),
            next_seq: 0,
        });
    }

    /// Answers of the exec helper thread go to the mate; an exec of ours
    /// past its deadline is answered with the timeout.
    fn poll_exec(&mut self, now_d: Duration) {
        while let Ok((id, cmd, r)) = self.exec_done.1.try_recv() {
            if cmd.is_query() {
                tracing::debug!(command = %cmd, id, ok = r.ok, "failover exec from the mate: answered");
            } else {
                tracing::info!(command = %cmd, id, ok = r.ok, "failover exec from the mate: answered");
            }
            self.send_exec_answer(now_d, id, &exec_answer(cmd.words(), &r));
        }
        if self.pending.as_ref().is_some_and(|p| now_d >= p.deadline) {
            if let Some(p) = self.pending.take() {
                tracing::warn!(command = %p.cmd, id = p.id, "failover exec: the mate did not answer");
                let _ = p.reply.send(Response::error(format!(
                    "`{}`: mate did not answer within {} s",
                    p.cmd,
                    EXEC_TIMEOUT.as_secs()
                )));
            }
        }
    }

    fn send_exec_answer(&mut self, now_d: Duration, id: u32, answer: &[u8]) {
        for chunk in exec_chunks(id, answer) {
            self.send_failover(now_d, &Message::ExecReply(chunk));
        }
    }

    /// The mate asks this unit to run a command.
    fn on_exec_request(&mut self, now_d: Duration, r: ExecRequest) {
        let refuse = |msg: String| exec_answer("", &Response::error(msg));
        let cmd = match Command::parse(&r.command) {
            Ok(Command::Exec(_)) => {
                let a = refuse(format!("`{}`: failover exec cannot be nested", r.command));
                return self.send_exec_answer(now_d, r.id, &a);
            }
            Ok(c) => c,
            Err(e) => {
                let a = refuse(e.to_string());
                return self.send_exec_answer(now_d, r.id, &a);
            }
        };
        let busy = self.exec_thread.as_ref().is_some_and(|t| !t.is_finished());
        let handler = match (&self.exec, busy) {
            (_, true) => {
                let a = refuse(format!(
                    "`{cmd}`: busy running another failover exec; retry"
                ));
                return self.send_exec_answer(now_d, r.id, &a);
            }
            (None, _) => {
                let a = refuse(format!("`{cmd}`: this unit does not run remote commands"));
                return self.send_exec_answer(now_d, r.id, &a);
            }
            (Some(h), false) => Arc::clone(h),
        };
        if cmd.is_query() {
            tracing::debug!(command = %cmd, id = r.id, "failover exec from the mate: running");
        } else {
            tracing::info!(command = %cmd, id = r.id, "failover exec from the mate: running");
        }
        let done = self.exec_done.0.clone();
        let id = r.id;
        let spawned = std::thread::Builder::new()
            .name("ha-exec".into())
            .spawn(move || {
                let answer = handler(cmd);
                let _ = done.send((id, cmd, answer));
            });
        match spawned {
            Ok(t) => self.exec_thread = Some(t),
            Err(e) => {
                let a = refuse(format!("`{cmd}`: cannot start the exec thread: {e}"));
                self.send_exec_answer(now_d, r.id, &a);
            }
        }
    }

    /// A chunk of the mate's answer to our exec.
    fn on_exec_reply(&mut self, r: ExecReply) {
        let Some(p) = self.pending.as_mut() else {
            tracing::debug!(
                id = r.id,
                "failover exec: reply with nothing pending; ignored"
            );
            return;
        };
        if p.id != r.id {
            tracing::debug!(id = r.id, want = p.id, "failover exec: stale reply ignored");
            return;
        }
        let answer = if r.seq != p.next_seq {
            Some(Response::error(format!(
                "`{}`: the mate's answer lost a frame (chunk {} came, {} expected); retry",
                p.cmd, r.seq, p.next_seq
            )))
        } else if p.data.len() + r.data.len() > MAX_EXEC_ANSWER {
            Some(Response::error(format!(
                "`{}`: the mate's answer exceeds {MAX_EXEC_ANSWER} bytes",
                p.cmd
            )))
        } else {
            p.data.extend_from_slice(&r.data);
            p.next_seq = p.next_seq.wrapping_add(1);
            r.last.then(|| mate_answer(&p.data))
        };
        if let Some(a) = answer {
            if let Some(p) = self.pending.take() {
                if p.cmd.is_query() {
                    tracing::debug!(command = %p.cmd, id = p.id, ok = a.ok, "failover exec: the mate answered");
                } else {
                    tracing::info!(command = %p.cmd, id = p.id, ok = a.ok, "failover exec: the mate answered");
                }
                let _ = p.reply.send(a);
            }
        }
    }

    /// Seeds 004, "Running Configuration Replication": send this unit's
    /// configuration, without its bootstrap settings, to the mate.
    fn send_config(&mut self, now_d: Duration, why: &str) -> Result<usize, String> {
        let path = self
            .config_path
            .clone()
            .ok_or("this unit has no configuration file to replicate")?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let body = replicable_config(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if body.len() > MAX_CONFIG {
            return Err(format!(
                "{} is {} bytes without its bootstrap settings, more than the {MAX_CONFIG} bytes replication carries",
                path.display(),
                body.len()
            ));
        }
        self.config_gen = self.config_gen.wrapping_add(1);
        let generation = self.config_gen;
        // Seeds 003/004, "Running Configuration Replication": the messages
        // the appliance prints when replication starts and ends.
        tracing::info!(
            bytes = body.len(),
            generation,
            "Beginning configuration replication: Sending to mate ({why})"
        );
        for c in exec_chunks(generation, body.as_bytes()) {
            self.send_failover(
                now_d,
                &Message::ConfigChunk(ConfigChunk {
                    generation,
                    seq: c.seq,
                    last: c.last,
                    data: c.data,
                }),
            );
        }
        tracing::info!(
            bytes = body.len(),
            generation,
            "End Configuration Replication to mate"
        );
        self.config_sync = Some(format!("sent {} bytes to the mate ({why})", body.len()));
        Ok(body.len())
    }

    /// A chunk of the mate's configuration.
    fn on_config_chunk(&mut self, c: ConfigChunk) {
        if self.unit.state() == State::Active {
            tracing::warn!("configuration replication: the mate sent its configuration to the active unit; ignored");
            return;
        }
        if c.seq == 0 {
            self.config_rx = Some((c.generation, 0, Vec::new()));
        }
        let Some((generation, next, data)) = self.config_rx.as_mut() else {
            return;
        };
        if *generation != c.generation || *next != c.seq || data.len() + c.data.len() > MAX_CONFIG {
            let why = format!(
                "chunk {} of generation {} out of order (expected {} of {}); waiting for a resend (`write standby` on the active)",
                c.seq, c.generation, next, generation
            );
            tracing::warn!("configuration replication failed: {why}");
            self.config_sync = Some(format!("failed: {why}"));
            self.config_rx = None;
            return;
        }
        data.extend_from_slice(&c.data);
        *next = next.wrapping_add(1);
        if !c.last {
            self.config_sync = Some(format!("in progress ({} bytes)", data.len()));
            return;
        }
        let Some((_, _, data)) = self.config_rx.take() else {
            return;
        };
        match self.apply_config(&data) {
            Ok((path, merged)) => {
                let now_d = self.epoch.elapsed();
                let origin = format!("replicated from the mate ({})", path.display());
                match self.apply_text(now_d, &merged, &origin) {
                    Ok(plan) => {
                        tracing::info!(
                            "configuration replicated from mate ({} bytes); written to {}; {}",
                            data.len(),
                            path.display(),
                            plan.summary()
                        );
                        self.config_sync = Some(format!(
                            "done: {} bytes from the mate, {}; written to {}",
                            data.len(),
                            plan.summary(),
                            path.display()
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(
                            "configuration replicated from mate ({} bytes); written to {} but not applied live: {e}",
                            data.len(),
                            path.display()
                        );
                        self.config_sync = Some(format!(
                            "done: {} bytes from the mate, written to {}; NOT applied live: {e}",
                            data.len(),
                            path.display()
                        ));
                    }
                }
            }
            Err(e) => {
                tracing::warn!("configuration replication from mate failed: {e}");
                self.config_sync = Some(format!("failed: {e}"));
            }
        }
    }

    /// Merge the mate's configuration with this unit's bootstrap settings,
    /// check it, and write it next to this unit's configuration file.
    fn apply_config(&self, received: &[u8]) -> Result<(std::path::PathBuf, String), String> {
        let path = self
            .config_path
            .as_ref()
            .ok_or("this unit has no configuration file to merge into")?;
        let own = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let received = std::str::from_utf8(received)
            .map_err(|e| format!("the mate's configuration is not UTF-8: {e}"))?;
        let merged = merge_config(&own, received)?;
        crate::config::ConfigFile::parse(&merged, "configuration replicated from the mate")
            .map_err(|e| e.to_string())?;
        let mut out = path.clone().into_os_string();
        out.push(".replicated");
        let out = std::path::PathBuf::from(out);
        std::fs::write(&out, &merged).map_err(|e| format!("writing {}: {e}", out.display()))?;
        Ok((out, merged))
    }

    /// `config reload`: re-read this unit's configuration file and apply it
    /// live; on the active unit, replicate it to the standby (seeds 004,
    /// "Command Replication"). A standby refuses unless `force`d.
    fn reload(&mut self, now_d: Duration, force: bool) -> Response {
        let cmd = if force {
            Command::ConfigReloadForce
        } else {
            Command::ConfigReload
        };
        let Some(path) = self.config_path.clone() else {
            return Response::error(format!("`{cmd}`: this unit has no configuration file"));
        };
        let state = self.unit.state();
        let behind_active = state != State::Active && self.unit.mate_state() == Some(State::Active);
        if behind_active && !force {
            return Response::error(format!(
                "`{cmd}`: this unit is {state} and its mate is active. Configuration changes are \
                 made on the active unit, which replicates them to the standby (seeds 004, \
                 \"Command Replication\"); a change made here puts the pair out of \
                 synchronization and is lost at the next configuration replication. Reload on \
                 the active unit (`failover exec active config reload`), or apply it here anyway \
                 with `tandemctl --force config reload`."
            ));
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return Response::error(format!("`{cmd}`: reading {}: {e}", path.display())),
        };
        let plan = match self.apply_text(now_d, &text, &path.display().to_string()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("configuration reload refused, nothing changed: {e}");
                return Response::error(format!("`{cmd}`: {e}"));
            }
        };
        tracing::info!(
            "configuration reloaded from {}: {}",
            path.display(),
            plan.summary()
        );
        let mut message = format!("configuration reloaded: {}", plan.summary());
        if behind_active {
            tracing::warn!(
                "configuration applied on this {state} unit only: out of sync with the active \
                 mate until its next configuration replication (`write standby` on the active)"
            );
            message.push_str("; this unit is now OUT OF SYNC with the active unit");
        } else if state == State::Active && self.unit.mate_state().is_some() && !plan.is_empty() {
            match self.send_config(now_d, "config reload") {
                Ok(n) => message.push_str(&format!("; replicated to the mate ({n} bytes)")),
                Err(e) => {
                    tracing::warn!("failover: configuration replication to the mate: {e}");
                    message.push_str(&format!("; NOT replicated to the mate: {e}"));
                }
            }
        }
        Response::ok(CommandDone { message })
    }

    /// Validate `text` whole, refuse it when it changes anything that needs
    /// a restart, else apply the live part: the workers' routes, then the
    /// state machine's timers, policy and monitored interfaces. Nothing
    /// changes on error.
    fn apply_text(
        &mut self,
        now_d: Duration,
        text: &str,
        origin: &str,
    ) -> Result<Plan, ReloadError> {
        let Some((running, profile)) = &self.running else {
            return Err(ReloadError::Failover(
                "this unit was started without its configuration; restart it".into(),
            ));
        };
        let (new, plan) = reload::prepare(running, profile, text, origin)?;
        let ha_cfg = new
            .failover
            .as_ref()
            .map(|f| f.ha_config(&new.interfaces, &self.macs, self.fo_mac));
        // Checked before anything is applied, so the routes never change
        // alone.
        if let Some(c) = &ha_cfg {
            c.validate(&self.floors)
                .map_err(|e| ReloadError::Failover(e.to_string()))?;
        }
        reload::apply_routes(&self.dp, &new, profile, &self.macs, &plan)?;
        if plan.failover {
            if let Some(c) = &ha_cfg {
                self.unit
                    .reconfigure(ts(now_d), c, &self.floors)
                    .map_err(|e| ReloadError::Failover(e.to_string()))?;
            }
        }
        if let Some(f) = &new.failover {
            self.settings = f.clone();
        }
        if let Some((r, _)) = self.running.as_mut() {
            *r = new;
        }
        self.drain(now_d);
        Ok(plan)
    }

    fn status(&self, now: Timestamp) -> FailoverStatus {
        let v = self.unit.show();
        let host = |h: &HostView, this: bool| FailoverHost {
            role: h.role.to_string(),
            state: h.state.to_string(),
            age_ms: if this { h.since } else { h.last_heard }
                .map(|t| millis(now.saturating_since(t))),
            failover_enabled: h.failover_enabled,
            failed_interfaces: h.failed_interfaces,
            interfaces: h
                .interfaces
                .iter()
                .map(|i| FailoverInterface {
                    name: i.name.clone(),
                    ip: i.ip.map(|a: IpAddr| a.to_string()),
                    mac: i.mac.map(|m| m.to_string()),
                    status: i.status.to_string(),
                    monitored: i.monitored,
                })
                .collect(),
        };
        let carrier = match v.failover_link.carrier {
            LinkState::Up => "up",
            LinkState::NoLink => "no link",
            LinkState::AdminDown => "down",
        };
        FailoverStatus {
            failover: v.failover_enabled,
            unit: v.this_host.role.to_string(),
            link_name: v.failover_link.name.clone(),
            link_device: self.settings.link_device.clone(),
            link_active_ip: self.settings.link_active_ip.map(|a| a.to_string()),
            link_standby_ip: self.settings.link_standby_ip.map(|a| a.to_string()),
            link_carrier: carrier.into(),
            link_failed: v.failover_link.failed.map(|f| f.to_string()),
            link_session: self.fo.link.is_established(),
            link_protection: match self.fo.link.protection() {
                Protection::Aes256Gcm => "encrypted (AES-256-GCM)".into(),
                Protection::Cleartext => "CLEAR TEXT (no failover key)".into(),
            },
            link_rejected: self.rejected,
            state_device: self.settings.state_device.clone(),
            state_stale: v.state_link.stale.map(|s| s.to_string()),
            unit_polltime_ms: millis(v.unit_polltime),
            unit_holdtime_ms: millis(v.unit_holdtime),
            interface_polltime_ms: millis(v.interface_polltime),
            interface_holdtime_ms: millis(v.interface_holdtime),
            link_state_polltime_ms: millis(v.link_state_polltime),
            interface_policy: v.interface_policy.to_string(),
            monitored: v.monitored,
            this_host: host(&v.this_host, true),
            other_host: v.other_host.as_ref().map(|h| host(h, false)),
            last_failover: v.last_failover.map(|t| FailoverTransition {
                at_ms: millis(Duration::from_nanos(t.at.as_nanos())),
                from: t.from.to_string(),
                to: t.to.to_string(),
                reason: t.reason.to_string(),
            }),
            term: v.term,
            config_sync: self.config_sync.clone(),
            replication: self.replication.as_ref().map(|r| {
                let mut st = r.status();
                st.records_applied = self
                    .dp
                    .counters()
                    .iter()
                    .flat_map(|c| c.counters().fields().collect::<Vec<_>>())
                    .filter(|(k, _)| *k == "sync_records_applied")
                    .map(|(_, v)| v)
                    .sum();
                st
            }),
        }
    }

    /// Whether `cmd` (a manual failover) has to wait for replication: only
    /// on a stateful unit, only when the command would move the active role
    /// now (otherwise it is answered at once, error or no-op), and only
    /// while the unit that is to become active does not hold the whole
    /// state yet.
    fn must_wait_for_replication(&self, cmd: Command) -> bool {
        let Some(r) = &self.replication else {
            return false;
        };
        match cmd {
            Command::FailoverActive => self.unit.state() == State::StandbyReady && !r.ready(),
            Command::NoFailoverActive => {
                self.unit.state() == State::Active
                    && self.unit.mate_state() == Some(State::StandbyReady)
                    && !r.mate_ready()
            }
            _ => false,
        }
    }

    /// Park a manual failover until replication is complete (polled every
    /// iteration by [`Ha::poll_manual`]; the hello loop goes on). A second
    /// one replaces the first, whose operator is told.
    fn wait_for_replication(&mut self, now_d: Duration, cmd: Command, reply: Sender<Response>) {
        let missing = self
            .replication
            .as_ref()
            .map(|r| r.missing())
            .unwrap_or_default();
        tracing::info!(
            command = %cmd,
            "failover: `{cmd}` waits until the replicated state is complete ({missing}), at most {}s",
            REPLICATION_WAIT.as_secs()
        );
        if let Some(old) = self.manual.take() {
            let _ = old.reply.send(Response::error(format!(
                "`{}` superseded by `{cmd}` before replication completed",
                old.cmd
            )));
        }
        self.manual = Some(PendingManual {
            cmd,
            reply,
            started: now_d,
        });
    }

    /// Run the parked manual failover once replication is complete, or
    /// after [`REPLICATION_WAIT`] with a warning naming what was missing.
    fn poll_manual(&mut self, now_d: Duration) {
        let Some(p) = &self.manual else {
            return;
        };
        let waited = now_d.saturating_sub(p.started);
        let still = self.must_wait_for_replication(p.cmd);
        if still && waited < REPLICATION_WAIT {
            return;
        }
        let Some(p) = self.manual.take() else {
            return;
        };
        let mut warning = None;
        if still {
            let missing = self
                .replication
                .as_ref()
                .map(|r| r.missing())
                .unwrap_or_default();
            let w = format!(
                "replication not complete after {}s ({missing}); failing over anyway: connections not yet replicated will be lost",
                REPLICATION_WAIT.as_secs()
            );
            tracing::warn!(command = %p.cmd, "failover: {w}");
            warning = Some(w);
        } else {
            tracing::info!(
                command = %p.cmd,
                waited_ms = millis(waited),
                "failover: replicated state complete; proceeding"
            );
        }
        let mut r = self.command(now_d, p.cmd);
        if let (Some(w), true) = (warning, r.ok) {
            if let Some(msg) = r
                .data
                .as_mut()
                .and_then(|d| d.get_mut("message"))
                .and_then(|m| m.as_str().map(str::to_string))
            {
                r = Response::ok(CommandDone {
                    message: format!("{msg} (warning: {w})"),
                });
            }
        }
        let _ = p.reply.send(r);
    }
}

/// The helper thread of the ARP test: every [`ARP_REFRESH`], the workers'
/// ARP tables into `cache` (resolved entries, most recent first).
fn arp_snapshots(dp: &Dataplane, cache: &ArpCache, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut per: Vec<Vec<(u64, Ipv4Addr)>> = Vec::new();
        for e in dp.arp_table(Duration::from_millis(500)) {
            let Some(i) = dp.interface_index(&e.interface) else {
                continue;
            };
            if e.mac == "00:00:00:00:00:00" {
                continue;
            }
            if per.len() <= i {
                per.resize(i + 1, Vec::new());
            }
            per[i].push((e.age_ms, e.ip));
        }
        if let Ok(mut c) = cache.lock() {
            for (i, l) in c.iter_mut().enumerate() {
                l.clear();
                if let Some(p) = per.get_mut(i) {
                    p.sort_unstable();
                    l.extend(p.iter().map(|(_, ip)| *ip));
                }
            }
        }
        // A timer, not synchronisation: wake every 50 ms to see `stop`.
        for _ in 0..(ARP_REFRESH.as_millis() / 50) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An Ethernet broadcast ARP request for `target` from `mac`/`ip`.
fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, operation request.
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// An ICMP echo request from `mac`/`src` to the broadcast `dst`.
fn echo_request(mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    ip[8] = 1; // TTL 1: the probe is for this segment only.
    ip[9] = 1; // ICMP
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = tandem_wire::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut f[34..42];
    icmp[0] = 8; // echo request
    icmp[4..6].copy_from_slice(&0x7464u16.to_be_bytes()); // identifier "td"
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    let c = tandem_wire::checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a state is one the pair is settled in (for tests and logs).
pub fn settled(s: State) -> bool {
    matches!(s, State::Active | State::StandbyReady)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tandem_ha::{IfIndex, Mac};

    #[test]
    fn exec_target_resolves_to_this_unit_only_when_its_state_matches() {
        use ExecWhere::{Here, Mate};
        assert_eq!(exec_where(ExecTarget::Mate, State::Active), Mate);
        assert_eq!(exec_where(ExecTarget::Active, State::Active), Here);
        assert_eq!(exec_where(ExecTarget::Active, State::StandbyReady), Mate);
        assert_eq!(exec_where(ExecTarget::Standby, State::StandbyReady), Here);
        assert_eq!(exec_where(ExecTarget::Standby, State::PseudoStandby), Here);
        assert_eq!(exec_where(ExecTarget::Standby, State::Active), Mate);
    }

    #[test]
    fn exec_answers_are_chunked_and_reassemble_to_the_response() {
        let r = Response::ok(serde_json::json!({ "text": "x".repeat(3000) }));
        let bytes = exec_answer("show failover", &r);
        let chunks = exec_chunks(7, &bytes);
        assert_eq!(chunks.len(), bytes.len().div_ceil(MAX_EXEC_CHUNK));
        assert!(chunks.len() >= 3);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!((c.id, usize::from(c.seq)), (7, i));
            assert_eq!(c.last, i + 1 == chunks.len());
            assert!(c.data.len() <= MAX_EXEC_CHUNK);
        }
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(mate_answer(&joined), r);
        // An empty answer is still one (last) chunk.
        let one = exec_chunks(1, &[]);
        assert_eq!(one.len(), 1);
        assert!(one[0].last);
    }

    #[test]
    fn exec_errors_say_they_come_from_the_mate_and_oversize_answers_are_refused() {
        let e = mate_answer(&exec_answer(
            "x",
            &Response::error("`failover reset`: nope"),
        ));
        assert_eq!(e.error.as_deref(), Some("mate: `failover reset`: nope"));
        assert!(mate_answer(b"not json")
            .error
            .unwrap()
            .contains("not a control API answer"));
        let big = Response::ok("y".repeat(MAX_EXEC_ANSWER + 1));
        let a = mate_answer(&exec_answer("show arp", &big));
        let msg = a.error.unwrap();
        assert!(msg.contains("show arp") && msg.contains("65536"), "{msg}");
    }

    const ACTIVE_CFG: &str = r#"
[unit]
name = "fwa"
profile = "lab"

[[interface]]
name = "outside"
device = "out0"
address = "198.18.1.1/24"
standby_address = "198.18.1.2"

[[route]]
destination = "0.0.0.0/0"
gateway = "198.18.1.254"

[failover]
role = "primary"
link_device = "fo0"
"#;

    #[test]
    fn replicated_config_drops_bootstrap_settings_and_devices() {
        let r = replicable_config(ACTIVE_CFG).unwrap();
        assert!(!r.contains("[unit]") && !r.contains("[failover]"), "{r}");
        assert!(!r.contains("out0") && !r.contains("fo0"), "{r}");
        assert!(
            r.contains("198.18.1.254") && r.contains("198.18.1.2"),
            "{r}"
        );
        assert!(replicable_config("not = [toml").is_err());
    }

    #[test]
    fn standby_merges_the_mates_config_with_its_own_bootstrap_settings() {
        let own = ACTIVE_CFG
            .replace("fwa", "fwb")
            .replace("out0", "eth7")
            .replace("primary", "secondary")
            .replace("198.18.1.254", "198.18.1.253");
        let merged = merge_config(&own, &replicable_config(ACTIVE_CFG).unwrap()).unwrap();
        // The mate's route, this unit's name, device and failover role.
        assert!(merged.contains("198.18.1.254") && !merged.contains("198.18.1.253"));
        assert!(merged.contains("fwb") && merged.contains("eth7") && merged.contains("secondary"));
        let c = crate::config::ConfigFile::parse(&merged, "merged").unwrap();
        assert_eq!(c.interfaces[0].device, "eth7");
        // Different interface counts are refused, naming both.
        let two = format!(
            "{ACTIVE_CFG}\n[[interface]]\nname = \"inside\"\ndevice = \"in0\"\naddress = \"198.18.2.1/24\"\n"
        );
        let e = merge_config(&own, &replicable_config(&two).unwrap()).unwrap_err();
        assert!(e.contains("2 data interfaces, this unit 1"), "{e}");
    }

    #[test]
    fn probe_frames_are_well_formed() {
        let mac = [2, 0, 0, 0, 0, 1];
        let src = Ipv4Addr::new(198, 18, 1, 1);
        let f = arp_request(mac, src, Ipv4Addr::new(198, 18, 1, 10));
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[28..32], &[198, 18, 1, 1]);
        assert_eq!(&f[38..42], &[198, 18, 1, 10]);
        let f = echo_request(mac, src, Ipv4Addr::new(198, 18, 1, 255), 7);
        assert!(
            tandem_wire::checksum::verify(&f[14..34]),
            "IPv4 header checksum"
        );
        assert!(tandem_wire::checksum::verify(&f[34..42]), "ICMP checksum");
        assert_eq!(&f[30..34], &[198, 18, 1, 255]);
        assert_eq!(f[34], 8, "echo request");
    }

    #[test]
    fn ownership_maps_owned_addresses_and_keeps_burned_in_macs_elsewhere() {
        let burned = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]];
        let owned = [
            OwnedAddress {
                iface: IfIndex(0),
                ip: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1))),
                mac: Mac([2, 0, 0, 0, 0xa, 1]),
            },
            OwnedAddress {
                iface: IfIndex(1),
                ip: None,
                mac: Mac([2, 0, 0, 0, 0xa, 2]),
            },
        ];
        let own = ownership(&owned, &burned);
        assert_eq!(
            own.interfaces,
            [
                InterfaceOwnership {
                    addr: Some(Ipv4Addr::new(198, 18, 1, 1)),
                    mac: [2, 0, 0, 0, 0xa, 1]
                },
                InterfaceOwnership {
                    addr: None,
                    mac: [2, 0, 0, 0, 0xa, 2]
                },
                InterfaceOwnership {
                    addr: None,
                    mac: burned[2]
                },
            ]
        );
        assert!(initial_ownership(&burned)
            .interfaces
            .iter()
            .all(|i| i.addr.is_none()));
    }
}
