//! Deterministic two-unit simulation: two [`Unit`]s on one fake clock, a failover link and one
//! segment per data interface, each with latency, jitter, loss and partition, plus a router and
//! background chatter on the segments for the interface tests (feature `testutils`).
//!
//! Everything is a function of the configuration, the seed and the scripted actions: the same test
//! gives the same trace every run. Randomness (jitter, loss) comes from a SplitMix64 generator
//! seeded by the test — a fixed, documented stream, so a seed keeps meaning the same trace across
//! dependency upgrades (a general-purpose RNG crate does not promise that).
//!
//! Shaped after quinn-proto's test `Pair` and netstack3's fake network: [`Sim::step`] advances the
//! clock to the next scheduled thing (a delivery, a unit timeout, chatter) and runs it;
//! [`Sim::run_for`] / [`Sim::run_until`] step under a step bound.

use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::{Ordering, Reverse};
use core::net::{IpAddr, Ipv4Addr};
use core::time::Duration;

use crate::{
    Config, Event, FailoverLinkConfig, IfIndex, InterfaceConfig, InterfaceTimers, Link, LinkState,
    Mac, Message, Outbound, Role, State, TimerFloors, Timestamp, Transition, Unit, UnitTimers,
};

/// Unit index of the first unit (primary in [`Sim::pair`]).
pub const A: usize = 0;
/// Unit index of the second unit (secondary in [`Sim::pair`]).
pub const B: usize = 1;

/// Most steps one `run_*` call may take before the simulation is declared stuck.
pub const MAX_STEPS: u64 = 50_000_000;

/// SplitMix64: a tiny, fixed, seedable generator (Steele, Lea, Flood 2014).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (slightly biased for huge `max`; fine for tests).
    pub fn below_or_eq(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }

    /// True with probability `ppm` per million.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        self.next_u64() % 1_000_000 < u64::from(ppm)
    }
}

/// A wire: one-way latency plus uniform jitter, loss, and whether it carries anything at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wire {
    /// One-way latency.
    pub latency: Duration,
    /// Extra delay, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Frames lost per million.
    pub loss_ppm: u32,
    /// `false`: partitioned (carrier stays up; nothing passes).
    pub up: bool,
}

impl Wire {
    /// A clean wire with `latency`.
    pub fn new(latency: Duration) -> Self {
        Wire {
            latency,
            jitter: Duration::ZERO,
            loss_ppm: 0,
            up: true,
        }
    }
}

/// One unit's port on a data segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Carrier up, frames pass.
    Up,
    /// Carrier up but nothing passes either way (a dead switch port, a bad VLAN).
    Isolated,
    /// No carrier.
    NoLink,
    /// Administratively down.
    AdminDown,
}

/// A data segment shared by interface `i` of both units.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The wire between the units (and to the router).
    pub wire: Wire,
    /// Each unit's port.
    pub ports: [Port; 2],
    /// A router on the segment answers ARP probes.
    pub arp_replies: bool,
    /// A router on the segment answers broadcast pings.
    pub ping_replies: bool,
    /// Other hosts send a frame both connected units see this often.
    pub chatter: Option<Duration>,
    next_chatter: Option<Timestamp>,
    /// The client's neighbour table, learned from the gratuitous ARPs on the segment.
    pub neighbours: BTreeMap<IpAddr, Mac>,
}

#[derive(Clone, Debug)]
enum Delivery {
    Msg { to: usize, link: Link, msg: Message },
    Traffic { to: usize, iface: IfIndex },
}

#[derive(Clone, Debug)]
struct InFlight {
    at: Timestamp,
    seq: u64,
    d: Delivery,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Node {
    cfg: Config,
    unit: Option<Unit>,
    events: Vec<(Timestamp, Event)>,
    boots: u32,
}

/// Two units and the network between them.
pub struct Sim {
    now: Timestamp,
    nodes: [Node; 2],
    /// The failover link's wire.
    pub failover: Wire,
    /// Carrier on the failover link (both ends: a direct cable).
    pub failover_carrier: bool,
    /// Drop only hellos on the failover link (LANTEST and control still pass).
    pub drop_hellos: bool,
    /// One segment per data interface.
    pub segments: Vec<Segment>,
    /// The dedicated state link's state as each unit's link poll reads it.
    pub state_link: [LinkState; 2],
    inflight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    rng: SplitMix64,
    floors: TimerFloors,
}

/// Deterministic MACs and addresses for simulated units: unit `u`'s interface `i` has MAC
/// `02:00:00:00:i:u+1`; interface `i` has active IP 198.18.(i+1).1 and standby .2.
pub fn config(
    role: Role,
    unit: UnitTimers,
    interface: InterfaceTimers,
    interfaces: usize,
) -> Config {
    let u: u8 = match role {
        Role::Primary => 1,
        Role::Secondary => 2,
    };
    let ifaces = (0..interfaces)
        .map(|i| {
            let i8 = u8::try_from(i).unwrap_or(u8::MAX);
            let net = |h| IpAddr::V4(Ipv4Addr::new(198, 18, i8.saturating_add(1), h));
            let name = alloc::format!("if{i}");
            InterfaceConfig::new(&name, Mac([2, 0, 0, 0, i8, u]), net(1), Some(net(2)))
        })
        .collect();
    let mut c = Config::new(
        role,
        FailoverLinkConfig {
            name: "folink".into(),
            mac: Mac([2, 0, 0, 0, 0xff, u]),
        },
        ifaces,
    );
    c.unit = unit;
    c.interface = interface;
    // Link polling at least as fast as the interface polltime (fast mode needs it).
    c.link_state_polltime = interface.polltime.min(Duration::from_millis(300));
    c
}

impl Sim {
    /// A simulation of two units with these configurations (checked against the fast-mode
    /// floors, so any timers the seeds or fast mode allow work). Neither unit runs yet: call
    /// [`Sim::start`]. Wires have 20 µs latency; each segment has a router answering ARP and pings,
    /// and no chatter.
    pub fn new(a: Config, b: Config, seed: u64) -> Sim {
        let n = a.interfaces.len().max(b.interfaces.len());
        let seg = Segment {
            wire: Wire::new(Duration::from_micros(20)),
            ports: [Port::Up; 2],
            arp_replies: true,
            ping_replies: true,
            chatter: None,
            next_chatter: None,
            neighbours: BTreeMap::new(),
        };
        let node = |cfg| Node {
            cfg,
            unit: None,
            events: Vec::new(),
            boots: 0,
        };
        Sim {
            now: Timestamp::ZERO,
            nodes: [node(a), node(b)],
            failover: Wire::new(Duration::from_micros(20)),
            failover_carrier: true,
            drop_hellos: false,
            segments: alloc::vec![seg; n],
            state_link: [LinkState::Up; 2],
            inflight: BinaryHeap::new(),
            seq: 0,
            rng: SplitMix64::new(seed),
            floors: TimerFloors::FAST,
        }
    }

    /// A primary (A) and a secondary (B) with the given unit timers, interface timers scaled to
    /// fit (polltime = 5 × unit polltime, holdtime = 5 × that, within the seeds' 15 s / 75 s), and
    /// `interfaces` data interfaces.
    pub fn pair(unit: UnitTimers, interfaces: usize, seed: u64) -> Sim {
        let poll = unit.polltime.saturating_mul(5).min(Duration::from_secs(15));
        let iface = InterfaceTimers {
            polltime: poll,
            holdtime: poll.saturating_mul(5),
        };
        Sim::new(
            config(Role::Primary, unit, iface, interfaces),
            config(Role::Secondary, unit, iface, interfaces),
            seed,
        )
    }

    /// The simulated time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Change unit `u`'s configuration (takes effect at its next start).
    pub fn config_mut(&mut self, u: usize) -> &mut Config {
        &mut self.nodes[u].cfg
    }

    /// Boot unit `u` now.
    ///
    /// # Panics
    /// If its configuration is invalid (a test bug).
    pub fn start(&mut self, u: usize) {
        let unit = match Unit::new(self.nodes[u].cfg.clone(), &self.floors, self.now) {
            Ok(unit) => unit,
            Err(e) => panic!("unit {u}: invalid config: {e}"),
        };
        self.nodes[u].unit = Some(unit);
        self.nodes[u].boots += 1;
        self.drain(u);
    }

    /// Kill unit `u` like SIGKILL on a veth lab: it stops; carriers stay up.
    pub fn kill(&mut self, u: usize) {
        self.nodes[u].unit = None;
    }

    /// Whether unit `u` runs.
    pub fn alive(&self, u: usize) -> bool {
        self.nodes[u].unit.is_some()
    }

    /// Unit `u`.
    ///
    /// # Panics
    /// If it is not running (a test bug).
    pub fn unit(&self, u: usize) -> &Unit {
        match &self.nodes[u].unit {
            Some(x) => x,
            None => panic!("unit {u} is not running"),
        }
    }

    /// Unit `u`'s state, or `None` if it is not running.
    pub fn state(&self, u: usize) -> Option<State> {
        self.nodes[u].unit.as_ref().map(Unit::state)
    }

    /// Run an operator command on unit `u` at the current time and deliver its outputs.
    pub fn command<R>(&mut self, u: usize, f: impl FnOnce(&mut Unit, Timestamp) -> R) -> R {
        let now = self.now;
        let unit = match self.nodes[u].unit.as_mut() {
            Some(x) => x,
            None => panic!("unit {u} is not running"),
        };
        let r = f(unit, now);
        self.drain(u);
        r
    }

    /// Every event unit `u` emitted, with its time (across restarts).
    pub fn events(&self, u: usize) -> &[(Timestamp, Event)] {
        &self.nodes[u].events
    }

    /// Unit `u`'s state changes (across restarts).
    pub fn transitions(&self, u: usize) -> Vec<Transition> {
        self.nodes[u]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::StateChanged(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    /// When unit `u` first emitted an event matching `pred` at or after `since`.
    pub fn first_event(
        &self,
        u: usize,
        since: Timestamp,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Timestamp> {
        self.nodes[u]
            .events
            .iter()
            .find(|(t, e)| *t >= since && pred(e))
            .map(|(t, _)| *t)
    }

    /// Units currently active.
    pub fn active_units(&self) -> Vec<usize> {
        (0..2)
            .filter(|&u| self.state(u) == Some(State::Active))
            .collect()
    }

    /// Advance to the next scheduled thing and run it. `false` if nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        while self.inflight.peek().is_some_and(|Reverse(f)| f.at <= now) {
            if let Some(Reverse(f)) = self.inflight.pop() {
                self.deliver(f.d);
            }
        }
        for u in 0..2 {
            let due = self.nodes[u]
                .unit
                .as_ref()
                .and_then(Unit::poll_timeout)
                .is_some_and(|t| t <= now);
            if due {
                if let Some(unit) = self.nodes[u].unit.as_mut() {
                    unit.handle_timeout(now);
                }
                self.drain(u);
            }
        }
        for s in 0..self.segments.len() {
            if self.segments[s].next_chatter.is_some_and(|t| t <= now) {
                let period = self.segments[s].chatter;
                self.segments[s].next_chatter = period.map(|p| now + p);
                for u in 0..2 {
                    if self.segments[s].ports[u] == Port::Up {
                        let at = self.delay(self.segments[s].wire);
                        self.schedule(
                            at,
                            Delivery::Traffic {
                                to: u,
                                iface: IfIndex(u16::try_from(s).unwrap_or(u16::MAX)),
                            },
                        );
                    }
                }
            }
        }
        true
    }

    /// Run until `t` (inclusive of everything scheduled at `t`).
    ///
    /// # Panics
    /// After [`MAX_STEPS`] steps (a livelock in the units or the test).
    pub fn run_until(&mut self, t: Timestamp) {
        let mut steps = 0u64;
        while self.next_time().is_some_and(|n| n <= t) {
            self.step();
            steps += 1;
            assert!(steps < MAX_STEPS, "simulation stuck before {t}");
        }
        self.now = self.now.max(t);
    }

    /// Run for `d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Run until `pred` holds (checked after every step) or until `deadline`; the time it first
    /// held.
    pub fn run_until_pred(
        &mut self,
        deadline: Timestamp,
        pred: impl Fn(&Sim) -> bool,
    ) -> Option<Timestamp> {
        let mut steps = 0u64;
        loop {
            if pred(self) {
                return Some(self.now);
            }
            match self.next_time() {
                Some(n) if n <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return pred(self).then_some(self.now);
                }
            }
            steps += 1;
            assert!(steps < MAX_STEPS, "simulation stuck before {deadline}");
        }
    }

    /// Start background chatter on segment `i` (other hosts' frames both connected units see).
    pub fn set_chatter(&mut self, i: usize, every: Option<Duration>) {
        self.segments[i].chatter = every;
        self.segments[i].next_chatter = every.map(|p| self.now + p);
    }

    fn next_time(&self) -> Option<Timestamp> {
        let units = self
            .nodes
            .iter()
            .filter_map(|n| n.unit.as_ref()?.poll_timeout());
        let flight = self.inflight.peek().map(|Reverse(f)| f.at);
        let chatter = self.segments.iter().filter_map(|s| s.next_chatter);
        units.chain(flight).chain(chatter).min()
    }

    fn delay(&mut self, w: Wire) -> Timestamp {
        let j = crate::time::nanos(w.jitter);
        let extra = Duration::from_nanos(self.rng.below_or_eq(j));
        self.now + w.latency + extra
    }

    fn schedule(&mut self, at: Timestamp, d: Delivery) {
        self.seq += 1;
        self.inflight.push(Reverse(InFlight {
            at,
            seq: self.seq,
            d,
        }));
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        let (to, r) = match d {
            Delivery::Msg { to, link, msg } => (to, (link, Some(msg))),
            Delivery::Traffic { to, iface } => (to, (Link::Data(iface), None)),
        };
        // The receiving end must still be connected when the frame arrives.
        if let (Link::Data(i), _) = r {
            if self
                .segments
                .get(i.0 as usize)
                .is_some_and(|s| s.ports[to] != Port::Up)
            {
                return;
            }
        }
        let Some(unit) = self.nodes[to].unit.as_mut() else {
            return;
        };
        match r {
            (link, Some(msg)) => unit.handle_message(now, link, &msg),
            (Link::Data(i), None) => unit.handle_traffic_seen(now, i),
            _ => {}
        }
        self.drain(to);
    }

    /// Route every output of unit `u` and record its events; answer link-state polls.
    fn drain(&mut self, u: usize) {
        loop {
            let Some(unit) = self.nodes[u].unit.as_mut() else {
                return;
            };
            if let Some(t) = unit.poll_transmit() {
                self.route(u, t.link, t.msg);
                continue;
            }
            let Some(e) = unit.poll_event() else { return };
            let poll = e == Event::PollLinkState;
            self.nodes[u].events.push((self.now, e));
            if poll {
                self.report_links(u);
            }
        }
    }

    fn report_links(&mut self, u: usize) {
        let now = self.now;
        let fo = if self.failover_carrier {
            LinkState::Up
        } else {
            LinkState::NoLink
        };
        let st = self.state_link[u];
        let ports: Vec<Port> = self.segments.iter().map(|s| s.ports[u]).collect();
        let Some(unit) = self.nodes[u].unit.as_mut() else {
            return;
        };
        unit.handle_link_change(now, Link::Failover, fo);
        unit.handle_link_change(now, Link::State, st);
        for (i, p) in ports.into_iter().enumerate() {
            let s = match p {
                Port::Up | Port::Isolated => LinkState::Up,
                Port::NoLink => LinkState::NoLink,
                Port::AdminDown => LinkState::AdminDown,
            };
            unit.handle_link_change(
                now,
                Link::Data(IfIndex(u16::try_from(i).unwrap_or(u16::MAX))),
                s,
            );
        }
    }

    fn route(&mut self, from: usize, link: Link, msg: Outbound) {
        let other = 1 - from;
        match link {
            Link::Failover => {
                let Outbound::Unit(m) = msg else { return };
                let w = self.failover;
                let dropped = !w.up
                    || !self.failover_carrier
                    || (self.drop_hellos && matches!(m, Message::Hello(_)))
                    || self.rng.chance_ppm(w.loss_ppm);
                if !dropped {
                    let at = self.delay(w);
                    self.schedule(
                        at,
                        Delivery::Msg {
                            to: other,
                            link,
                            msg: m,
                        },
                    );
                }
            }
            Link::Data(i) => {
                let Some(seg) = self.segments.get(usize::from(i.0)) else {
                    return;
                };
                let w = seg.wire;
                if seg.ports[from] != Port::Up || !w.up {
                    return;
                }
                let other_up = seg.ports[other] == Port::Up;
                let (arp_replies, ping_replies) = (seg.arp_replies, seg.ping_replies);
                match msg {
                    Outbound::Unit(m) => {
                        if other_up && !self.rng.chance_ppm(w.loss_ppm) {
                            let at = self.delay(w);
                            self.schedule(
                                at,
                                Delivery::Msg {
                                    to: other,
                                    link,
                                    msg: m,
                                },
                            );
                        }
                    }
                    Outbound::ArpProbe { .. } => {
                        if arp_replies {
                            let at = self.delay(w) + w.latency;
                            self.schedule(at, Delivery::Traffic { to: from, iface: i });
                        }
                    }
                    Outbound::BroadcastPing => {
                        if ping_replies {
                            let at = self.delay(w) + w.latency;
                            self.schedule(at, Delivery::Traffic { to: from, iface: i });
                        }
                        if other_up {
                            let at = self.delay(w);
                            self.schedule(
                                at,
                                Delivery::Traffic {
                                    to: other,
                                    iface: i,
                                },
                            );
                        }
                    }
                    Outbound::GratuitousArp { ip, mac } => {
                        if let Some(seg) = self.segments.get_mut(usize::from(i.0)) {
                            seg.neighbours.insert(ip, mac);
                        }
                        if other_up {
                            let at = self.delay(w);
                            self.schedule(
                                at,
                                Delivery::Traffic {
                                    to: other,
                                    iface: i,
                                },
                            );
                        }
                    }
                }
            }
            Link::State => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_the_published_sequence() {
        // First outputs for seed 0 (reference implementation by Vigna).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn same_seed_same_trace() {
        let run = |seed| {
            let mut s = Sim::pair(
                UnitTimers {
                    polltime: Duration::from_millis(10),
                    holdtime: Duration::from_millis(30),
                },
                2,
                seed,
            );
            s.failover.jitter = Duration::from_millis(3);
            s.failover.loss_ppm = 100_000;
            s.start(A);
            s.start(B);
            s.run_for(Duration::from_secs(2));
            (s.events(A).to_vec(), s.events(B).to_vec())
        };
        assert_eq!(run(7), run(7));
    }
}
