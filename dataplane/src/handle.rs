//! `Dataplane`: the management thread's handle on the workers — start them
//! pinned, send them commands over bounded queues, read their counters,
//! change the addresses they own, exchange failover frames with them, stop
//! and join them.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};
use serde::Serialize;

use crate::arp::{ArpRecord, ArpState};
use crate::config::{ConfigError, DataplaneConfig};
use crate::counters::{CounterSnapshot, PortCounters};
use crate::forward::Forwarder;
use crate::ownership::{Ownership, OwnershipError, Role, Subnet};
use crate::punt::{InjectError, InjectedFrame, PuntedFrame, INJECT_QUEUE, PUNT_QUEUE};
use crate::route::RouteEntry;
use crate::stateful::{ConnEntry, StatefulCommand};
use crate::sync::{SyncEndpoints, SyncShared};
use crate::time::{Clock, Timestamp};
use crate::wakeup::CommandTx;
use crate::worker::{ArpReply, BatchLoop, Command, Published, Worker};
use tandem_io::wake::WakeFd;
use tandem_state::{SaDirection, SaEntry, SaError, XlateView};

/// Commands waiting per worker. Commands are rare (operator actions,
/// failover), so a small queue suffices; a full queue is reported, never
/// waited on from the hot path.
const COMMAND_QUEUE: usize = 16;

/// How long `set_ownership` waits for room in a worker's command queue. A
/// worker drains its queue every iteration (at most `block` apart), so the
/// queue is only full when a worker is stuck.
const COMMAND_WAIT: Duration = Duration::from_secs(1);

/// One worker to start: the core to pin it to and its backend (which serves
/// every configured interface, port i = `interfaces[i]`).
pub struct WorkerSpec {
    pub core: Option<usize>,
    pub backend: Box<dyn tandem_io::Backend>,
}

/// An ARP entry as shown to operators (`show arp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArpEntry {
    pub ip: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff`; all zero while incomplete.
    pub mac: String,
    /// Interface name.
    pub interface: String,
    pub state: ArpState,
    /// Milliseconds since last confirmed (since created, if incomplete).
    pub age_ms: u64,
}

/// Why [`Dataplane::set_routes`] did not replace the route table.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("invalid routes: {0}")]
    Config(#[from] ConfigError),
    #[error("the route table: {0}")]
    Table(crate::route::RouteError),
    #[error(
        "the interfaces or their addresses differ from the running ones (a restart applies those)"
    )]
    Interfaces,
    #[error("worker {worker}: {why}")]
    Worker { worker: usize, why: &'static str },
}

/// Why a stateful-stage request (issue 4) was not done.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the stateful stage is not configured ({what} is missing from the data-path configuration)"
    )]
    NotConfigured { what: &'static str },
    #[error("stream {stream} does not exist (there are {workers} workers, one stream each)")]
    NoSuchStream { stream: usize, workers: usize },
    #[error("worker {worker}: {why}")]
    Worker { worker: usize, why: &'static str },
    #[error("worker {worker} did not answer within 1 s")]
    NoAnswer { worker: usize },
    #[error("{0}")]
    Sa(SaError),
}

/// Why the dataplane did not start. Nothing is left running on error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid dataplane configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("no workers: at least one worker (core and backend) is required")]
    NoWorkers,
    #[error("initial ownership: {0}")]
    Ownership(#[from] OwnershipError),
    #[error(
        "worker {worker}: backend {backend} serves {ports} ports but {interfaces} interfaces are configured"
    )]
    Ports {
        worker: usize,
        backend: &'static str,
        ports: usize,
        interfaces: usize,
    },
    #[error(
        "worker {worker}: interface {interface} mtu {mtu} does not fit the {frame_size}-byte frames of backend {backend}"
    )]
    FrameSize {
        worker: usize,
        backend: &'static str,
        interface: String,
        mtu: u16,
        frame_size: usize,
    },
    #[error("worker {worker}: core {core} does not exist (this machine has cores {available:?})")]
    NoSuchCore {
        worker: usize,
        core: usize,
        available: Vec<usize>,
    },
    #[error("worker {worker}: cannot create its wake-up eventfd: {source}")]
    Wake {
        worker: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("replication: cannot create the replication thread's wake-up eventfd: {0}")]
    ReplWake(#[source] std::io::Error),
    #[error("worker {worker}: cannot spawn its thread: {source}")]
    Spawn {
        worker: usize,
        #[source]
        source: std::io::Error,
    },
}

struct WorkerHandle {
    backend: String,
    core: Option<usize>,
    /// Command queue; every send also wakes the worker.
    commands: CommandTx,
    shared: Arc<Published>,
    /// Replication progress and overflow flag (with `sync` configured).
    sync: Option<Arc<SyncShared>>,
    thread: Option<JoinHandle<()>>,
}

/// The ownership last asked for, and its generation.
struct Owned {
    generation: u64,
    ownership: Ownership,
    role: Role,
}

/// Running workers. Dropping it stops and joins them, like [`Dataplane::shutdown`].
///
/// Failover glue (issue 3): [`Dataplane::set_ownership`] changes the
/// addresses and MACs the unit owns and whether it forwards;
/// [`Dataplane::punted`] receives the frames of tandem's failover EtherType;
/// [`Dataplane::inject`] sends frames the management thread built;
/// [`Dataplane::interface_counters`] tells the interface tests whether
/// anything arrived.
pub struct Dataplane {
    workers: Vec<WorkerHandle>,
    /// The route table as shown (`show route`); replaced by `set_routes`.
    routes: Mutex<Vec<RouteEntry>>,
    interfaces: Vec<String>,
    subnets: Vec<Subnet>,
    /// Largest frame `inject` accepts per interface (MTU + Ethernet header + an 802.1Q tag).
    inject_max: Vec<usize>,
    clock: Clock,
    owned: Mutex<Owned>,
    inject: Sender<InjectedFrame>,
    drop_inject_full: AtomicU64,
    punted: Receiver<PuntedFrame>,
    /// The replication thread's ends, until taken (`take_sync_endpoints`).
    sync_endpoints: Mutex<Option<SyncEndpoints>>,
    /// `state` is configured.
    stateful: bool,
}

impl Dataplane {
    /// Validates everything, then spawns one thread per worker, pinned to
    /// its core when one is given, and starts a gratuitous ARP burst for the
    /// owned addresses (issue 2: "gratuitous ARP for owned addresses at
    /// start"). Worker 0 sends gratuitous ARP: every worker serves every
    /// port, so one announcement per address is enough. The unit owns the
    /// configured addresses and MACs and forwards.
    pub fn start(cfg: DataplaneConfig, workers: Vec<WorkerSpec>) -> Result<Dataplane, StartError> {
        let own = Ownership::from_config(&cfg);
        Dataplane::start_with_ownership(cfg, workers, own, Role::Forwarding, true)
    }

    /// Like [`Dataplane::start`], but owning `own` with `role` from the first
    /// frame (generation 0), and announcing it by gratuitous ARP only if
    /// `announce`. A failover unit starts owning nothing (or its standby
    /// addresses) and not forwarding, so that it never claims the active
    /// addresses while it is still negotiating its role.
    pub fn start_with_ownership(
        cfg: DataplaneConfig,
        workers: Vec<WorkerSpec>,
        own: Ownership,
        role: Role,
        announce: bool,
    ) -> Result<Dataplane, StartError> {
        cfg.validate()?;
        own.validate(&cfg)?;
        if workers.is_empty() {
            return Err(StartError::NoWorkers);
        }
        let cores: Option<Vec<usize>> =
            core_affinity::get_core_ids().map(|v| v.into_iter().map(|c| c.id).collect());
        for (i, w) in workers.iter().enumerate() {
            let b = &w.backend;
            if b.port_count() < cfg.interfaces.len() {
                return Err(StartError::Ports {
                    worker: i,
                    backend: b.name(),
                    ports: b.port_count(),
                    interfaces: cfg.interfaces.len(),
                });
            }
            if let Some(ifc) = cfg.interfaces.iter().find(|ifc| {
                usize::from(ifc.mtu) + tandem_wire::ethernet::HEADER_LEN > b.frame_size()
            }) {
                return Err(StartError::FrameSize {
                    worker: i,
                    backend: b.name(),
                    interface: ifc.name.clone(),
                    mtu: ifc.mtu,
                    frame_size: b.frame_size(),
                });
            }
            if let (Some(core), Some(available)) = (w.core, &cores) {
                if !available.contains(&core) {
                    return Err(StartError::NoSuchCore {
                        worker: i,
                        core,
                        available: available.clone(),
                    });
                }
            }
        }
        let (punt_tx, punt_rx) = bounded(PUNT_QUEUE);
        let (inject_tx, inject_rx) = bounded(INJECT_QUEUE);
        let mut wakes = Vec::with_capacity(workers.len());
        for idx in 0..workers.len() {
            wakes.push(Arc::new(WakeFd::new().map_err(|source| {
                StartError::Wake {
                    worker: idx,
                    source,
                }
            })?));
        }
        // Worker handoff (`crate::handoff`): only a stateful unit with
        // several workers has rings; the others pay nothing.
        let mut handoff = if cfg.state.is_some() && workers.len() > 1 {
            let frame_size = workers
                .iter()
                .map(|w| w.backend.frame_size())
                .max()
                .unwrap_or(0);
            let slots = crate::handoff::slots_per_ring(workers.len());
            crate::handoff::mesh(slots, frame_size, &wakes)
                .into_iter()
                .map(Some)
                .collect()
        } else {
            Vec::new()
        };
        let mut loops = Vec::with_capacity(workers.len());
        let mut streams = Vec::new();
        let repl_wake = match &cfg.sync {
            Some(_) => Some(Arc::new(WakeFd::new().map_err(StartError::ReplWake)?)),
            None => None,
        };
        let mut sync_shared = Vec::with_capacity(workers.len());
        for (idx, wake) in wakes.iter().enumerate() {
            let mut fwd = Forwarder::for_worker(&cfg, idx, workers.len())?;
            // Replication (issue 4): this worker's buffers and channels.
            if let (Some(sy), Some(rw)) = (&cfg.sync, &repl_wake) {
                let (ws, ep) = crate::sync::channels(
                    idx as u16,
                    sy.buffers_per_worker,
                    sy.frame_size,
                    Arc::clone(wake),
                    Arc::clone(rw),
                );
                sync_shared.push(Some(Arc::clone(ws.shared())));
                let rate = sy.bulk_rate.div_ceil(workers.len() as u64);
                fwd.attach_sync(ws, sy, rate)?;
                streams.push(ep);
            } else {
                sync_shared.push(None);
            }
            // Worker 0 announces (see above); the epoch is this clock's, so
            // time zero is already due at the first iteration.
            fwd.set_ownership(Timestamp::ZERO, &own, role, announce && idx == 0)?;
            fwd.set_punt(punt_tx.clone(), idx);
            if let Some(h) = handoff.get_mut(idx).and_then(Option::take) {
                fwd.set_handoff(h);
            }
            let mut bl = BatchLoop::new(fwd, &cfg.run);
            if idx == 0 {
                bl.set_inject_queue(inject_rx.clone());
            }
            loops.push(bl);
        }
        let routes = loops[0].forwarder().routes();
        let clock = Clock::new(Instant::now());
        let mut dp = Dataplane {
            workers: Vec::with_capacity(workers.len()),
            routes: Mutex::new(routes),
            interfaces: cfg.interfaces.iter().map(|i| i.name.clone()).collect(),
            subnets: cfg.interfaces.iter().map(Subnet::of).collect(),
            inject_max: cfg
                .interfaces
                .iter()
                .map(|i| {
                    (usize::from(i.mtu) + tandem_wire::ethernet::TAGGED_HEADER_LEN)
                        .min(crate::punt::PUNT_BYTES)
                })
                .collect(),
            clock,
            owned: Mutex::new(Owned {
                generation: 0,
                ownership: own,
                role,
            }),
            inject: inject_tx,
            drop_inject_full: AtomicU64::new(0),
            punted: punt_rx,
            sync_endpoints: Mutex::new(repl_wake.map(|wake| SyncEndpoints { streams, wake })),
            stateful: cfg.state.is_some(),
        };
        let ports = cfg.interfaces.len();
        for (idx, ((spec, batch_loop), (wake, sync))) in workers
            .into_iter()
            .zip(loops)
            .zip(wakes.into_iter().zip(sync_shared))
            .enumerate()
        {
            let (tx, rx) = bounded(COMMAND_QUEUE);
            let shared = Arc::new(Published::new(ports));
            let backend_name = spec.backend.name().to_string();
            let worker = Worker {
                idx,
                core: spec.core,
                backend: spec.backend,
                batch_loop,
                commands: rx,
                shared: Arc::clone(&shared),
                clock,
                idle: cfg.run.idle,
                wake: Arc::clone(&wake),
            };
            let thread = std::thread::Builder::new()
                .name(format!("tandem-w{idx}"))
                .spawn(move || worker.run())
                .map_err(|source| StartError::Spawn {
                    worker: idx,
                    source,
                })?;
            // On a spawn error above, `dp` drops and stops the workers already started.
            dp.workers.push(WorkerHandle {
                backend: backend_name,
                core: spec.core,
                commands: CommandTx::new(tx, wake),
                shared,
                sync,
                thread: Some(thread),
            });
        }
        Ok(dp)
    }

    /// Counters of every worker, from the last per-batch publication.
    /// `drop_inject_full` is counted by this handle and shown with worker 0,
    /// the worker that injects.
    pub fn counters(&self) -> Vec<CounterSnapshot> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut c = w.shared.counters.load();
                if i == 0 {
                    c.drop_inject_full = self.drop_inject_full.load(Ordering::Relaxed);
                }
                CounterSnapshot::new(i, w.backend.clone(), w.core, &c)
            })
            .collect()
    }

    /// Receive counters per interface (interface order), summed over the
    /// workers, as of their last per-batch publication. Lock-free reads of
    /// atomics; cheap enough to call every interface-test tick.
    pub fn interface_counters(&self) -> Vec<PortCounters> {
        let mut sum = vec![PortCounters::default(); self.interfaces.len()];
        for w in &self.workers {
            for (port, s) in sum.iter_mut().enumerate() {
                s.add(&w.shared.ports.load(port));
            }
        }
        sum
    }

    /// Frames received per interface (any destination, any EtherType),
    /// summed over workers: seeds 004's "Network Activity" test compares
    /// two readings.
    pub fn interface_rx(&self) -> Vec<u64> {
        self.interface_counters().iter().map(|c| c.rx).collect()
    }

    /// ARP frames received on `interface` (any destination), summed over
    /// workers; 0 for an interface that does not exist. For the seeds' "ARP
    /// test"; [`PortCounters::rx_arp_reply`] counts the replies addressed to
    /// this unit.
    pub fn arp_seen(&self, interface: usize) -> u64 {
        self.workers
            .iter()
            .map(|w| w.shared.ports.load(interface).rx_arp)
            .fold(0, u64::wrapping_add)
    }

    /// The workers' clock: the time base of [`PuntedFrame::at`].
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Index (`PortId`) of the interface called `name`.
    pub fn interface_index(&self, name: &str) -> Option<usize> {
        self.interfaces.iter().position(|n| n == name)
    }

    /// Seeds 004, "ARP test": asks worker 0 to send one ARP request on
    /// `interface` for the address of the `recent`-th most recently
    /// confirmed entry of its ARP table there (0: the most recent, 1: the
    /// next), from the address owned there. Sent at worker 0's next batch
    /// boundary; counted `tx_arp_request`, or `tx_test_skipped` when there
    /// is no such entry. With several workers this is worker 0's table
    /// (ARP entries are learned by the worker whose queue got the reply).
    /// The reply (or any frame) shows in [`Dataplane::interface_counters`].
    pub fn send_arp_probe(&self, interface: usize, recent: u8) -> Result<(), InjectError> {
        self.worker0(interface, Command::ArpProbe { interface, recent })
    }

    /// Seeds 004, "Broadcast Ping test": asks worker 0 to send one ICMP echo
    /// request to the directed broadcast address of `interface`'s subnet,
    /// from the address owned there (not sent, `tx_test_skipped`, without
    /// one). Counted `tx_broadcast_ping`.
    pub fn send_broadcast_ping(&self, interface: usize) -> Result<(), InjectError> {
        self.worker0(interface, Command::BroadcastPing { interface })
    }

    fn worker0(&self, interface: usize, cmd: Command) -> Result<(), InjectError> {
        let Some(name) = self.interfaces.get(interface) else {
            return Err(InjectError::NoSuchInterface {
                interface,
                configured: self.interfaces.len(),
            });
        };
        let Some(w) = self.workers.first() else {
            return Err(InjectError::Stopped {
                interface: name.clone(),
            });
        };
        w.commands.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => InjectError::Busy {
                interface: name.clone(),
            },
            TrySendError::Disconnected(_) => InjectError::Stopped {
                interface: name.clone(),
            },
        })
    }

    /// Changes the addresses and MACs the unit owns, and whether it forwards
    /// (issue 3, "Takeover actions"). Validated here (nothing is sent on
    /// error), then delivered to every worker over its command queue; each
    /// applies it whole between two batches, so no batch sees half of it
    /// (workers switch independently, each at the end of its current
    /// iteration: within one iteration while busy, within `block` of the
    /// idle strategy while blocked waiting for frames).
    /// With `announce`, worker 0 sends a gratuitous ARP burst (`garp_count`
    /// announcements, `garp_interval` apart) for every owned address with
    /// the new MAC; without, any burst in progress stops.
    ///
    /// Returns the change's generation: it is in effect on every worker once
    /// [`Dataplane::ownership_applied`] says so (log "took over" then). On
    /// [`OwnershipError::Worker`] some workers may have been sent it and
    /// others not: call again (a newer generation replaces it everywhere).
    /// Only then can this call wait (up to 1 s per worker whose command
    /// queue stays full, i.e. a worker that is stuck).
    pub fn set_ownership(
        &self,
        own: Ownership,
        role: Role,
        announce: bool,
    ) -> Result<u64, OwnershipError> {
        own.check(&self.subnets)?;
        // The lock only orders concurrent callers (generations reach the
        // workers in order); it is never taken by a worker.
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        owned.generation += 1;
        let generation = owned.generation;
        let shared = Arc::new(own.clone());
        owned.ownership = own;
        owned.role = role;
        for (i, w) in self.workers.iter().enumerate() {
            let cmd = Command::SetOwnership {
                ownership: Arc::clone(&shared),
                role,
                announce: announce && i == 0,
                generation,
            };
            if let Err(e) = w.commands.send_timeout(cmd, COMMAND_WAIT) {
                let why = match e {
                    SendTimeoutError::Timeout(_) => "full for 1 s",
                    SendTimeoutError::Disconnected(_) => "worker stopped",
                };
                return Err(OwnershipError::Worker {
                    worker: i,
                    generation,
                    why,
                });
            }
        }
        Ok(generation)
    }

    /// The ownership last asked for (or started with), its role and
    /// generation; what the workers use once it is applied.
    pub fn ownership(&self) -> (Ownership, Role, u64) {
        let o = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        (o.ownership.clone(), o.role, o.generation)
    }

    /// The newest ownership generation every worker has applied (0: the
    /// one the data plane started with).
    pub fn ownership_generation(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.shared.ownership.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Has every worker applied `generation` (or a newer one)?
    pub fn ownership_applied(&self, generation: u64) -> bool {
        self.ownership_generation() >= generation
    }

    /// The frames of tandem's failover EtherType received on any interface,
    /// as fixed-size copies ([`PuntedFrame`]), in the order each worker
    /// received them. One consumer: clones share one queue. When nobody
    /// drains it, the workers drop (`drop_punt_full`), never wait.
    pub fn punted(&self) -> Receiver<PuntedFrame> {
        self.punted.clone()
    }

    /// Sends `bytes` (a whole Ethernet frame, without FCS; zero-padded to 60
    /// bytes if shorter) out of `interface` through worker 0's TX path, at
    /// the top of its next loop iteration: within one iteration while the
    /// worker is busy, and at once when it is blocked waiting for frames
    /// (its wake-up eventfd is signalled; a backend without `wait_or_wake`
    /// still returns within `IdleStrategy::SpinThenBlock::block`). Never waits:
    /// a full queue is refused and counted `drop_inject_full`.
    pub fn inject(&self, interface: usize, bytes: &[u8]) -> Result<(), InjectError> {
        let Some(name) = self.interfaces.get(interface) else {
            return Err(InjectError::NoSuchInterface {
                interface,
                configured: self.interfaces.len(),
            });
        };
        let max = self.inject_max[interface];
        if bytes.len() < InjectedFrame::MIN_LEN || bytes.len() > max {
            return Err(InjectError::Length {
                interface: name.clone(),
                len: bytes.len(),
                max,
            });
        }
        let frame = InjectedFrame::new(interface, bytes)?;
        match self.inject.try_send(frame) {
            Ok(()) => {
                // Worker 0 injects; wake it if it is blocked.
                if let Some(w) = self.workers.first() {
                    w.commands.wake();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.drop_inject_full.fetch_add(1, Ordering::Relaxed);
                Err(InjectError::QueueFull {
                    interface: name.clone(),
                })
            }
            Err(TrySendError::Disconnected(_)) => Err(InjectError::Stopped {
                interface: name.clone(),
            }),
        }
    }

    /// The ARP tables of all workers, merged (per interface and address the
    /// most recently confirmed entry wins), sorted by interface then
    /// address. Workers that do not answer within `timeout` are left out.
    pub fn arp_table(&self, timeout: Duration) -> Vec<ArpEntry> {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = bounded::<ArpReply>(self.workers.len());
        let mut asked = 0;
        for w in &self.workers {
            if w.commands
                .try_send(Command::ArpSnapshot(tx.clone()))
                .is_ok()
            {
                asked += 1;
            } else {
                tracing::warn!("arp snapshot: a worker's command queue is full or closed");
            }
        }
        drop(tx);
        let mut merged: Vec<ArpRecord> = Vec::new();
        for _ in 0..asked {
            let Ok(reply) = rx.recv_deadline(deadline) else {
                break;
            };
            for r in reply.records {
                match merged.iter_mut().find(|m| m.port == r.port && m.ip == r.ip) {
                    Some(m) => {
                        // Resolved beats incomplete; among resolved, the freshest wins.
                        let better = r.state != ArpState::Incomplete
                            && (m.state == ArpState::Incomplete || r.age < m.age);
                        if better {
                            *m = r;
                        }
                    }
                    None => merged.push(r),
                }
            }
        }
        merged.sort_by_key(|r| (r.port, r.ip));
        merged
            .into_iter()
            .map(|r| ArpEntry {
                ip: r.ip,
                mac: crate::fmt_mac(r.mac),
                interface: self.interfaces.get(r.port).cloned().unwrap_or_default(),
                state: r.state,
                age_ms: u64::try_from(r.age.as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    /// The route table (connected routes first, then static).
    pub fn routes(&self) -> Vec<RouteEntry> {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces every worker's route table with the one `cfg` describes
    /// (connected routes of its interfaces, then its static routes): a live
    /// `config reload`. `cfg` must name the running interfaces, in order,
    /// with their addresses (only routes change live). Each worker swaps
    /// tables between two batches; returns once every worker has, or
    /// [`RoutesError::Worker`] after `timeout` (workers that did not answer
    /// yet still apply it). Nothing changes on any other error.
    pub fn set_routes(&self, cfg: &DataplaneConfig, timeout: Duration) -> Result<(), RoutesError> {
        cfg.validate()?;
        let names: Vec<&str> = cfg.interfaces.iter().map(|i| i.name.as_str()).collect();
        let same_subnets = cfg.interfaces.len() == self.subnets.len()
            && cfg.interfaces.iter().zip(&self.subnets).all(|(i, s)| {
                let n = Subnet::of(i);
                (n.net, n.prefix_len) == (s.net, s.prefix_len)
            });
        if names
            != self
                .interfaces
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
            || !same_subnets
        {
            return Err(RoutesError::Interfaces);
        }
        let mut tables = Vec::with_capacity(self.workers.len());
        for _ in &self.workers {
            tables.push(Box::new(
                crate::route::RouteTable::from_config(cfg).map_err(RoutesError::Table)?,
            ));
        }
        let shown = Forwarder::new(cfg)?.routes();
        // The lock also orders concurrent callers: tables reach the workers in order.
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let (done_tx, done_rx) = bounded(self.workers.len());
        let deadline = Instant::now() + timeout;
        for (i, (w, table)) in self.workers.iter().zip(tables).enumerate() {
            let cmd = Command::SetRoutes {
                table,
                done: done_tx.clone(),
            };
            if let Err(e) = w.commands.send_deadline(cmd, deadline) {
                let why = match e {
                    SendTimeoutError::Timeout(_) => "command queue full",
                    SendTimeoutError::Disconnected(_) => "worker stopped",
                };
                return Err(RoutesError::Worker { worker: i, why });
            }
        }
        *routes = shown;
        for _ in &self.workers {
            // Each answer is a worker's old table, freed here.
            if done_rx.recv_deadline(deadline).is_err() {
                return Err(RoutesError::Worker {
                    worker: usize::MAX,
                    why: "a worker did not confirm in time",
                });
            }
        }
        Ok(())
    }

    /// Asks for a burst of `garp_count` gratuitous ARPs, `garp_interval`
    /// apart, for every owned address (e.g. on becoming active).
    pub fn send_gratuitous_arp(&self) {
        if let Some(w) = self.workers.first() {
            if let Err(e) = w.commands.try_send(Command::GratuitousArp) {
                tracing::warn!("gratuitous ARP not requested: worker 0 command queue: {e}");
            }
        }
    }

    // ---------------------------------------------------------- stateful (issue 4)

    /// The replication thread's ends of every worker's state-link channels
    /// (see [`SyncEndpoints`]); `Some` once, and only with `sync`
    /// configured. Until they are taken, outbound frames pile up and then
    /// count `sync_overflow` (flagging a bulk sync), like a mate that is away.
    pub fn take_sync_endpoints(&self) -> Option<SyncEndpoints> {
        self.sync_endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Runs every worker thread at `SCHED_FIFO` `priority` (0: time-sharing),
    /// see [`tandem_io::sched`]. Only for workers that block when idle.
    pub fn set_realtime(&self, priority: u8) -> std::io::Result<()> {
        for w in &self.workers {
            if let Some(t) = &w.thread {
                tandem_io::sched::set_realtime(t, priority)?;
            }
        }
        Ok(())
    }

    /// Starts a bulk sync of worker `stream`'s tables and ARP entries, or of
    /// every worker's with `None` (a standby joined, or asked after a gap it
    /// could not repair). Each worker frames it BULK_BEGIN … BULK_END on
    /// its outbound channel, a bounded number of records per loop iteration
    /// paced by `sync.bulk_rate`, while it goes on forwarding; a bulk
    /// already running restarts. Progress: [`Dataplane::bulk_progress`].
    /// Also clears the stream's overflow flag.
    pub fn start_bulk(&self, stream: Option<usize>) -> Result<(), StateError> {
        self.require_sync()?;
        let targets: Vec<usize> = match stream {
            Some(s) if s < self.workers.len() => vec![s],
            Some(s) => {
                return Err(StateError::NoSuchStream {
                    stream: s,
                    workers: self.workers.len(),
                })
            }
            None => (0..self.workers.len()).collect(),
        };
        for i in targets {
            self.stateful_cmd(i, StatefulCommand::BulkSync)?;
        }
        Ok(())
    }

    /// Per worker (stream), the last bulk sync's `(done, total, finished)`
    /// entries (ARP entries included; `(0, 0, false)` before the first).
    /// Lock-free reads of atomics, for `show failover` ("bulk sync 45 %").
    pub fn bulk_progress(&self) -> Vec<(u64, u64, bool)> {
        self.workers
            .iter()
            .map(|w| w.sync.as_ref().map_or((0, 0, false), |s| s.bulk_progress()))
            .collect()
    }

    /// Per worker (stream): were records lost (no free buffer, or the
    /// outbound channel full) since the last call or bulk start? Reading
    /// clears the flag. The replication thread starts a bulk sync of each
    /// stream that says true.
    pub fn sync_overflowed(&self) -> Vec<bool> {
        self.workers
            .iter()
            .map(|w| w.sync.as_ref().is_some_and(|s| s.take_overflowed()))
            .collect()
    }

    /// Up to `limit` connections over all workers (`show conn`), each
    /// worker answering between two batches. Workers that do not answer
    /// within 1 s are left out.
    pub fn conns(&self, limit: usize) -> Result<Vec<ConnEntry>, StateError> {
        self.require_state()?;
        let mut all = Vec::new();
        for i in 0..self.workers.len() {
            let (tx, rx) = bounded(1);
            self.stateful_cmd(
                i,
                StatefulCommand::Conns {
                    limit: limit.saturating_sub(all.len()),
                    reply: tx,
                },
            )?;
            if let Ok(v) = rx.recv_timeout(COMMAND_WAIT) {
                all.extend(v);
            }
        }
        all.truncate(limit);
        Ok(all)
    }

    /// Up to `limit` PAT xlates over all workers (`show xlate`).
    pub fn xlates(&self, limit: usize) -> Result<Vec<XlateView>, StateError> {
        self.require_state()?;
        let mut all = Vec::new();
        for i in 0..self.workers.len() {
            let (tx, rx) = bounded(1);
            self.stateful_cmd(
                i,
                StatefulCommand::Xlates {
                    limit: limit.saturating_sub(all.len()),
                    reply: tx,
                },
            )?;
            if let Ok(v) = rx.recv_timeout(COMMAND_WAIT) {
                all.extend(v);
            }
        }
        all.truncate(limit);
        Ok(all)
    }

    /// Live `(connections, xlates, SAs)` summed over workers (`show conn
    /// count`), asked of each worker.
    pub fn state_counts(&self) -> Result<(u64, u64, u64), StateError> {
        self.require_state()?;
        let mut sum = (0, 0, 0);
        for i in 0..self.workers.len() {
            let (tx, rx) = bounded(1);
            self.stateful_cmd(i, StatefulCommand::Counts { reply: tx })?;
            let (c, x, s) = rx
                .recv_timeout(COMMAND_WAIT)
                .map_err(|_| StateError::NoAnswer { worker: i })?;
            sum = (sum.0 + c, sum.1 + x, sum.2 + s);
        }
        Ok(sum)
    }

    /// Adds (or replaces) an IPsec SA in the table of the worker that owns
    /// its traffic ([`Dataplane::sa_worker`]); its record is replicated.
    pub fn sa_add(&self, sa: SaEntry) -> Result<(), StateError> {
        self.require_state()?;
        let i = self.sa_worker(sa.peer, sa.local);
        let (tx, rx) = bounded(1);
        self.stateful_cmd(
            i,
            StatefulCommand::SaAdd {
                sa: Box::new(sa),
                reply: tx,
            },
        )?;
        rx.recv_timeout(COMMAND_WAIT)
            .map_err(|_| StateError::NoAnswer { worker: i })?
            .map_err(StateError::Sa)
    }

    /// Removes an SA (from whichever worker holds it; the SPI alone does not
    /// name the owner). Ok(false) when no worker had it.
    pub fn sa_remove(&self, spi: u32, direction: SaDirection) -> Result<bool, StateError> {
        self.require_state()?;
        let mut found = false;
        for i in 0..self.workers.len() {
            let (tx, rx) = bounded(1);
            self.stateful_cmd(
                i,
                StatefulCommand::SaRemove {
                    spi,
                    direction,
                    reply: tx,
                },
            )?;
            found |= rx
                .recv_timeout(COMMAND_WAIT)
                .map_err(|_| StateError::NoAnswer { worker: i })?;
        }
        Ok(found)
    }

    /// The worker whose shard holds the SA between `peer` and `local`: the
    /// one ESP between them is steered to (the symmetric address hash of
    /// `tandem_state::steer`, ports 0).
    pub fn sa_worker(&self, peer: Ipv4Addr, local: Ipv4Addr) -> usize {
        let mut hdr = [0u8; 20];
        hdr[0] = 0x45;
        hdr[9] = 50; // ESP
        hdr[12..16].copy_from_slice(&peer.octets());
        hdr[16..20].copy_from_slice(&local.octets());
        usize::from(tandem_state::steer(&hdr, self.workers.len() as u16))
    }

    fn require_state(&self) -> Result<(), StateError> {
        if self.stateful {
            Ok(())
        } else {
            Err(StateError::NotConfigured { what: "state" })
        }
    }

    fn require_sync(&self) -> Result<(), StateError> {
        if self.workers.iter().all(|w| w.sync.is_some()) && !self.workers.is_empty() {
            Ok(())
        } else {
            Err(StateError::NotConfigured { what: "sync" })
        }
    }

    fn stateful_cmd(&self, worker: usize, cmd: StatefulCommand) -> Result<(), StateError> {
        let w = &self.workers[worker];
        w.commands
            .send_timeout(Command::Stateful(cmd), COMMAND_WAIT)
            .map_err(|e| StateError::Worker {
                worker,
                why: match e {
                    SendTimeoutError::Timeout(_) => "command queue full for 1 s",
                    SendTimeoutError::Disconnected(_) => "worker stopped",
                },
            })
    }

    /// Stops and joins every worker; returns their final counters.
    pub fn shutdown(mut self) -> Vec<CounterSnapshot> {
        self.stop();
        self.counters()
    }

    fn stop(&mut self) {
        for w in &self.workers {
            // A blocking send: the worker drains its queue every iteration
            // (at most `block` apart); if it has exited, send fails at once.
            let _ = w.commands.send(Command::Shutdown);
        }
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(t) = w.thread.take() {
                if t.join().is_err() {
                    tracing::error!("worker {i} panicked; its counters are from its last batch");
                }
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop();
    }
}
