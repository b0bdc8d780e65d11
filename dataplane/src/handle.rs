//! `Dataplane`: the management thread's handle on the workers — start them
//! pinned, send them commands over bounded queues, read their counters,
//! stop and join them.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use serde::Serialize;

use crate::arp::{ArpRecord, ArpState};
use crate::config::{ConfigError, DataplaneConfig};
use crate::counters::{CounterSnapshot, SharedCounters};
use crate::forward::Forwarder;
use crate::route::RouteEntry;
use crate::time::Clock;
use crate::worker::{ArpReply, BatchLoop, Command, Worker};

/// Commands waiting per worker. Commands are rare (operator actions,
/// failover), so a small queue suffices; a full queue is reported, never
/// waited on from the hot path.
const COMMAND_QUEUE: usize = 16;

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

/// Why the dataplane did not start. Nothing is left running on error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid dataplane configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("no workers: at least one worker (core and backend) is required")]
    NoWorkers,
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
    commands: Sender<Command>,
    shared: Arc<SharedCounters>,
    thread: Option<JoinHandle<()>>,
}

/// Running workers. Dropping it stops and joins them, like [`Dataplane::shutdown`].
pub struct Dataplane {
    workers: Vec<WorkerHandle>,
    routes: Vec<RouteEntry>,
    interfaces: Vec<String>,
}

impl Dataplane {
    /// Validates everything, then spawns one thread per worker, pinned to
    /// its core when one is given, and starts a gratuitous ARP burst for the
    /// owned addresses (issue 2: "gratuitous ARP for owned addresses at
    /// start"). Worker 0 sends gratuitous ARP: every worker serves every
    /// port, so one announcement per address is enough.
    pub fn start(cfg: DataplaneConfig, workers: Vec<WorkerSpec>) -> Result<Dataplane, StartError> {
        cfg.validate()?;
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
        let mut loops = Vec::with_capacity(workers.len());
        for _ in &workers {
            loops.push(BatchLoop::new(Forwarder::new(&cfg)?, &cfg.run));
        }
        let routes = loops[0].forwarder().routes();
        let clock = Clock::new(Instant::now());
        let mut dp = Dataplane {
            workers: Vec::with_capacity(workers.len()),
            routes,
            interfaces: cfg.interfaces.iter().map(|i| i.name.clone()).collect(),
        };
        for (idx, (spec, batch_loop)) in workers.into_iter().zip(loops).enumerate() {
            let (tx, rx) = bounded(COMMAND_QUEUE);
            let shared = Arc::new(SharedCounters::default());
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
                commands: tx,
                shared,
                thread: Some(thread),
            });
        }
        dp.send_gratuitous_arp();
        Ok(dp)
    }

    /// Counters of every worker, from the last per-batch publication.
    pub fn counters(&self) -> Vec<CounterSnapshot> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| CounterSnapshot::new(i, w.backend.clone(), w.core, &w.shared.load()))
            .collect()
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
        self.routes.clone()
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
