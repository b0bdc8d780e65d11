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

use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use tandem_ha::codec;
use tandem_ha::{
    AddressSet, Event, HostView, Link, LinkState, Outbound, OwnedAddress, State, Timestamp, Unit,
};
use tandem_io::l2sock::{wait_readable, L2Socket, BROADCAST};
use tandem_link::wire::{DATA_HEADER_LEN, NONCE_LEN};
use tandem_link::{
    EventKind, IfName, LinkConfig, LinkKind, Protection, Received, SecureLink, Security,
};

use crate::api::{
    Command, CommandDone, FailoverHost, FailoverInterface, FailoverStatus, FailoverTransition,
    Response,
};
use crate::config::Interface;
use crate::failover::FailoverSettings;
use crate::sysfs::SysNet;
use tandem_dataplane::{Dataplane, InterfaceOwnership, Ownership, PuntedFrame, Role as DpRole};

/// Longest sleep of the HA thread: bounds operator command latency and how
/// late a punted data-interface frame (interface hello, LANTEST) is read.
pub const MAX_WAIT: Duration = Duration::from_millis(2);

/// How long [`HaHandle::execute`] waits for the HA thread.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Nonces from the OS CSPRNG (`/dev/urandom`, opened once).
struct OsNonces(File);

impl tandem_link::NonceSource for OsNonces {
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) {
        if self.0.read_exact(nonce).is_err() {
            // Never reuse a nonce silently: a failed read is fatal for the
            // links' security.
            tracing::error!("cannot read /dev/urandom for a link nonce; stopping");
            std::process::abort();
        }
    }
}

struct LinkIo {
    sock: L2Socket,
    link: SecureLink<OsNonces>,
    mate: Option<[u8; 6]>,
    /// The last receive failed (logged once until a receive works again).
    rx_failing: bool,
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
    pub fn start(
        settings: &FailoverSettings,
        interfaces: &[Interface],
        macs: &[[u8; 6]],
        floors: &tandem_ha::TimerFloors,
        core: Option<usize>,
        dp: Arc<Dataplane>,
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
        let open_link = |kind: LinkKind, dev: &str| -> Result<LinkIo, HaError> {
            let sock = L2Socket::open(dev, codec::ETHERTYPE)?;
            let name = IfName::new(dev).map_err(|e| HaError::Device {
                device: dev.into(),
                why: e.to_string(),
            })?;
            let nonces = OsNonces(File::open("/dev/urandom").map_err(|e| HaError::Device {
                device: dev.into(),
                why: format!("/dev/urandom: {e}"),
            })?);
            let link = SecureLink::new(
                LinkConfig::new(kind, name),
                &security,
                nonces,
                Duration::ZERO,
            )
            .map_err(|e| HaError::Device {
                device: dev.into(),
                why: e.to_string(),
            })?;
            Ok(LinkIo {
                sock,
                link,
                mate: None,
                rx_failing: false,
            })
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

    /// Run a failover command on the HA thread and return its answer.
    pub fn execute(&self, cmd: Command) -> Response {
        let (rtx, rrx) = bounded(1);
        if self.tx.send_timeout((cmd, rtx), COMMAND_TIMEOUT).is_err() {
            return Response::error("tandemd's HA thread is busy; retry");
        }
        rrx.recv_timeout(COMMAND_TIMEOUT)
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
                let r = self.command(now_d, cmd);
                let _ = reply.send(r);
            }
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
                if l.link.poll_timeout().is_some_and(|t| t <= now_d) {
                    l.link.handle_timeout(now_d);
                }
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
            let (src, n) = match l.sock.recv(&mut self.buf, Duration::ZERO) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    if !l.rx_failing {
                        l.rx_failing = true;
                        tracing::warn!("failover: receive on {}: {e}", l.sock.ifname());
                    }
                    return;
                }
            };
            if l.rx_failing {
                l.rx_failing = false;
                tracing::info!("failover: receiving on {} again", l.sock.ifname());
            }
            let msg = match l.link.handle_frame(now_d, &mut self.buf[..n]) {
                Received::Data(opened) => {
                    l.mate = Some(src);
                    match codec::decode(&self.buf[opened.payload]) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            tracing::debug!("failover: undecodable message from the mate: {e}");
                            None
                        }
                    }
                }
                Received::Handshake => {
                    l.mate = Some(src);
                    None
                }
                Received::Dropped(_) => None,
            };
            if let (Some(m), true) = (msg, failover) {
                self.unit.handle_message(now, Link::Failover, &m);
            }
            self.drain_link(now_d);
        }
    }

    /// Send link hellos and log link events.
    fn drain_link(&mut self, now_d: Duration) {
        for l in [Some(&mut self.fo), self.st.as_mut()].into_iter().flatten() {
            while let Some(ev) = l.link.poll_event() {
                match ev.kind {
                    EventKind::Rejected { count, .. } => {
                        self.rejected += count;
                        tracing::warn!("{ev}");
                    }
                    EventKind::Established { .. } => tracing::info!("{ev}"),
                }
            }
            while let Some(n) = l.link.poll_transmit(now_d, &mut self.buf) {
                let dst = l.mate.unwrap_or(BROADCAST);
                if let Err(e) = l.sock.send(dst, &self.buf[..n]) {
                    tracing::debug!("failover: send on {}: {e}", l.sock.ifname());
                }
            }
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
                let dst = self.fo.mate.unwrap_or(BROADCAST);
                if let Err(e) = self.fo.sock.send(dst, &self.buf[..len]) {
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
            Event::StateChanged(t) => tracing::info!("failover state: {t}"),
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
            other => Response::error(format!("`{other}` is not a failover command")),
        };
        tracing::info!(command = %cmd, ok = r.ok, "failover command");
        self.drain(now_d);
        r
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
            state_stale: v.state_link.stale.map(|s| format!("{s:?}")),
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
        }
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
