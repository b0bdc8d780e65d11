//! The Active/Standby unit state machine: startup role determination, unit health monitoring
//! (hello, LANTEST), the failover-events table, address ownership, operator commands.
//!
//! Interface monitoring (interface hellos and tests) lives in `monitor.rs` as more `impl Unit`;
//! the `show failover` view in `view.rs`.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::net::IpAddr;
use core::time::Duration;

use crate::config::{Config, ConfigErrors, StateLinkConfig, TimerFloors};
use crate::event::{DualActiveRule, Event, LinkFailure, Reason, StaleCause, Transition};
use crate::monitor::IfMon;
use crate::msg::{Control, Hello, InterfaceReport, LanTest, LanTestKind, Message};
use crate::time::Timestamp;
use crate::types::{AddressSet, IfIndex, Link, LinkState, Mac, Role, State};

/// How many transitions `show failover history` keeps.
pub const HISTORY_LEN: usize = 64;

/// Something to send: a message to the mate, or a frame the data path builds for failover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it. Never [`Link::State`].
    pub link: Link,
    /// What to send.
    pub msg: Outbound,
}

/// The payload of a [`Transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// A message for the mate: on the failover link to the mate's failover address; on a data
    /// interface to the mate's address there (the standby IP when this unit owns the active
    /// addresses, the active IP otherwise).
    Unit(Message),
    /// Seeds 004, "ARP test": one ARP request for the `recent`-th most recent entry of this
    /// interface's ARP table (0 = the most recent, 1 = the next).
    ArpProbe {
        /// Which entry, most recent first.
        recent: u8,
    },
    /// Seeds 004, "Broadcast Ping test": one ping to the subnet broadcast address (IPv6: all
    /// nodes).
    BroadcastPing,
    /// A gratuitous ARP (IPv6: unsolicited neighbour advertisement) announcing `ip` at `mac`.
    GratuitousArp {
        /// The owned address.
        ip: IpAddr,
        /// The MAC that owns it.
        mac: Mac,
    },
}

/// An (IP, MAC) pair a unit owns on a data interface: it answers ARP for `ip` with `mac` and sends
/// from `mac`. `ip` is `None` for the standby side of an interface without a standby IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedAddress {
    /// The interface.
    pub iface: IfIndex,
    /// The address.
    pub ip: Option<IpAddr>,
    /// The MAC to use.
    pub mac: Mac,
}

/// Why an operator command was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `no failover` is in effect here or on the mate.
    #[error("failover is disabled on this unit or on its mate (pseudo-standby); enable it first")]
    FailoverDisabled,
    /// The unit is still choosing its role.
    #[error("this unit is still negotiating its role on the failover link")]
    Negotiating,
    /// This unit is failed.
    #[error("this unit is Failed; run `failover reset` first")]
    UnitFailed,
    /// The mate cannot be told.
    #[error("the failover link is failed; the mate cannot be told to change state")]
    FailoverLinkFailed,
    /// No mate to hand over to.
    #[error("no mate is heard on the failover link")]
    NoMate,
    /// The mate cannot take over.
    #[error("the mate is {0}, not Standby Ready; it cannot become active")]
    MateNotReady(State),
}

/// Counters for `show failover` statistics (never reset; wrap-free in practice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Hellos sent.
    pub tx_hello: u64,
    /// Hellos received on the failover link.
    pub rx_hello: u64,
    /// Messages received on a link where they make no sense (hello off the failover link,
    /// interface hello for another interface, unknown interface index).
    pub rx_wrong_link: u64,
    /// Messages ignored because failover is off (state Disabled).
    pub rx_disabled: u64,
    /// LANTEST rounds started.
    pub lantest_rounds: u64,
    /// LANTEST replies for no round in progress (late or forged).
    pub rx_lantest_stale: u64,
    /// Interface hellos received.
    pub rx_interface_hello: u64,
    /// Control messages that did not apply in this state.
    pub rx_control_ignored: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Next unit hello.
    Hello,
    /// Hello deadline on the failover link (in Negotiation: the startup wait).
    Hold,
    /// End of the LANTEST window.
    LanTest,
    /// Next interface hellos.
    InterfaceHello,
    /// Next link-state poll.
    LinkPoll,
    /// Next gratuitous ARP announcement.
    Garp,
    /// Next `TakeOver` retry for `no failover active`.
    Handover,
}

const TIMERS: usize = 7;

/// What this unit last heard from its mate on the failover link.
#[derive(Clone, Debug)]
pub(crate) struct Mate {
    pub role: Role,
    pub state: State,
    pub enabled: bool,
    pub term: u64,
    pub failover_mac: Mac,
    pub macs: Vec<Mac>,
    pub reports: Vec<InterfaceReport>,
    pub last_heard: Timestamp,
    /// Marked failed: no hello and no LANTEST answer anywhere.
    pub marked_failed: bool,
}

struct LanTestRound {
    nonce: u32,
    tested: u16,
    failover_answered: bool,
    data_answered: Vec<bool>,
}

/// One unit of an Active/Standby failover pair (one per `tandemd`), sans-IO.
///
/// # How to drive it
///
/// The unit never reads a clock, sleeps, locks or touches a socket. Its owner (the management
/// thread) reads the monotonic clock once per wake-up and passes it as `now`:
///
/// 1. Create it with [`Unit::new`] at start.
/// 2. Feed every input as it happens: [`handle_message`](Unit::handle_message) for every decoded
///    frame from the mate (failover link or data interface);
///    [`handle_link_change`](Unit::handle_link_change) with the link state of every interface when
///    [`Event::PollLinkState`] asks (unchanged states are ignored);
///    [`handle_traffic_seen`](Unit::handle_traffic_seen) when a data interface received any frame
///    (at most once per RX batch is plenty; ARP and ping replies to the tests are such traffic);
///    operator commands ([`failover_active`](Unit::failover_active), …).
/// 3. When `now` reaches [`poll_timeout`](Unit::poll_timeout), call
///    [`handle_timeout`](Unit::handle_timeout).
/// 4. After every `handle_*` or command, drain [`poll_transmit`](Unit::poll_transmit) (send each,
///    in order) and then [`poll_event`](Unit::poll_event) (act on `TakeOver`/`Relinquish`/
///    `AddressesChanged`, log the rest), then sleep until the new `poll_timeout`.
///
/// Outputs are queued at handle time; the queues grow only if they are not drained.
pub struct Unit {
    pub(crate) cfg: Config,
    pub(crate) state: State,
    pub(crate) since: Timestamp,
    pub(crate) enabled: bool,
    pub(crate) term: u64,
    pub(crate) mate: Option<Mate>,
    role_conflict_reported: bool,
    /// The failover link's session says the mate restarted: its next hello is a join even if
    /// it reports the state its previous incarnation was last heard in.
    mate_restarted: bool,
    pub(crate) fo_carrier: LinkState,
    pub(crate) fo_failed: Option<LinkFailure>,
    state_carrier: LinkState,
    pub(crate) stale: Option<StaleCause>,
    timers: [Option<Timestamp>; TIMERS],
    round: Option<LanTestRound>,
    nonce: u32,
    pub(crate) ifaces: Vec<IfMon>,
    pub(crate) monitoring: bool,
    handover_until: Option<Timestamp>,
    garp_left: u8,
    owned: Vec<OwnedAddress>,
    last_reports: Vec<InterfaceReport>,
    pub(crate) hello_pending: bool,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    history: VecDeque<Transition>,
    pub(crate) last_failover: Option<Transition>,
    pub(crate) counters: Counters,
}

impl Unit {
    /// A unit starting at `now` with a configuration checked against `floors`. With failover
    /// enabled it starts in [`State::Negotiation`], sends a hello at once and listens for a unit
    /// holdtime; with failover off it is a standalone [`State::Disabled`] unit.
    pub fn new(config: Config, floors: &TimerFloors, now: Timestamp) -> Result<Unit, ConfigErrors> {
        config.validate(floors)?;
        let n = config.interfaces.len();
        let enabled = config.enabled;
        let mut u = Unit {
            state: if enabled {
                State::Negotiation
            } else {
                State::Disabled
            },
            since: now,
            enabled,
            term: 0,
            mate: None,
            role_conflict_reported: false,
            mate_restarted: false,
            fo_carrier: LinkState::Up,
            fo_failed: None,
            state_carrier: LinkState::Up,
            stale: None,
            timers: [None; TIMERS],
            round: None,
            nonce: 0,
            ifaces: (0..n).map(|_| IfMon::new(now)).collect(),
            monitoring: false,
            handover_until: None,
            garp_left: 0,
            owned: Vec::new(),
            last_reports: Vec::new(),
            hello_pending: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            history: VecDeque::new(),
            last_failover: None,
            counters: Counters::default(),
            cfg: config,
        };
        // Read the link states at once so the startup decision knows the failover link's carrier.
        u.arm(Timer::LinkPoll, now);
        if enabled {
            u.arm(Timer::Hello, now);
            u.arm(Timer::Hold, now + u.cfg.unit.holdtime);
            u.arm(Timer::InterfaceHello, now + u.cfg.interface.polltime);
        }
        u.flush(now);
        Ok(u)
    }

    // ----- outputs -----

    /// The next frame to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Unit::handle_timeout) must next be called: the earliest of the
    /// timer table and the interface monitors' deadlines.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let fixed = self.timers.iter().flatten().copied().min();
        let ifaces = self.ifaces.iter().filter_map(IfMon::next_deadline).min();
        match (fixed, ifaces) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- getters -----

    /// This unit's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// This unit's configured role.
    pub fn role(&self) -> Role {
        self.cfg.role
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether failover is enabled on this unit.
    pub fn failover_enabled(&self) -> bool {
        self.enabled
    }

    /// The mate's state as last heard ([`State::Failed`] when marked failed), or `None` if never
    /// heard.
    pub fn mate_state(&self) -> Option<State> {
        self.mate.as_ref().map(|m| {
            if m.marked_failed {
                State::Failed
            } else {
                m.state
            }
        })
    }

    /// Why the failover link is marked failed, if it is.
    pub fn failover_link_failure(&self) -> Option<LinkFailure> {
        self.fo_failed
    }

    /// Why replicated state is stale, if it is.
    pub fn state_link_stale(&self) -> Option<StaleCause> {
        self.stale
    }

    /// The addresses this unit owns in its state.
    pub fn address_set(&self) -> AddressSet {
        self.state.address_set()
    }

    /// The (IP, MAC) pairs this unit owns on its data interfaces, per seeds 004 "MAC Addresses
    /// and IP Addresses in Failover": virtual MACs where configured; otherwise the active addresses
    /// go with the primary unit's MACs and the standby addresses with the secondary's, learned
    /// over the failover link; a unit that does not know its mate's MACs uses its own.
    pub fn owned_addresses(&self) -> Vec<OwnedAddress> {
        let set = self.address_set();
        self.cfg
            .interfaces
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let iface = IfIndex(u16::try_from(i).ok()?);
                let ip = match set {
                    AddressSet::Active => Some(c.active_ip),
                    AddressSet::Standby => c.standby_ip,
                    AddressSet::None => return None,
                };
                Some(OwnedAddress {
                    iface,
                    ip,
                    mac: self.mac_for(set, iface)?,
                })
            })
            .collect()
    }

    /// The MAC that goes with `set`'s addresses on `iface` on this unit.
    pub fn mac_for(&self, set: AddressSet, iface: IfIndex) -> Option<Mac> {
        let c = self.cfg.interface(iface)?;
        let learned = self
            .mate
            .as_ref()
            .and_then(|m| m.macs.get(iface.idx()).copied());
        let (virt, owner) = match set {
            AddressSet::Active => (c.virtual_mac.map(|v| v.active), Role::Primary),
            AddressSet::Standby => (c.virtual_mac.map(|v| v.standby), Role::Secondary),
            AddressSet::None => return None,
        };
        Some(match virt {
            Some(v) => v,
            None if self.cfg.role == owner => c.mac,
            // The other unit's MAC, if learned; "the secondary unit becomes the active unit and
            // uses its own MAC addresses, because it does not know the primary unit MAC addresses".
            None => learned.unwrap_or(c.mac),
        })
    }

    /// The activation term (see [`Hello::term`]).
    pub fn term(&self) -> u64 {
        self.term
    }

    /// State changes, oldest first, at most [`HISTORY_LEN`].
    pub fn history(&self) -> impl Iterator<Item = &Transition> {
        self.history.iter()
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    // ----- inputs -----

    /// A message from the mate arrived on `link`.
    pub fn handle_message(&mut self, now: Timestamp, link: Link, msg: &Message) {
        if self.state == State::Disabled {
            self.counters.rx_disabled += 1;
            return;
        }
        if let Link::Data(i) = link {
            if i.idx() >= self.ifaces.len() {
                self.counters.rx_wrong_link += 1;
                return;
            }
            // Every frame on a data interface is network activity for its tests.
            let _ = self.on_traffic(now, i);
        }
        match (msg, link) {
            (Message::Hello(h), Link::Failover) => self.on_hello(now, h),
            (Message::LanTest(t), Link::Failover | Link::Data(_)) => self.on_lantest(link, t),
            (Message::InterfaceHello(h), Link::Data(i)) if h.iface == i => {
                self.on_interface_hello(now, i)
            }
            (Message::Control(c), Link::Failover) => self.on_control(now, *c),
            _ => self.counters.rx_wrong_link += 1,
        }
        self.flush(now);
    }

    /// The failover link's secure session was re-established by a new incarnation of the mate
    /// (`tandem_link` `EstablishCause::MateRestarted`). A mate restarted within a holdtime was
    /// never marked failed, and it reaches Standby Ready before its first hello: without this,
    /// the active would take it for the unit it already knew and never send it the
    /// configuration.
    pub fn handle_mate_restarted(&mut self) {
        self.mate_restarted = true;
    }

    /// The link state of `link` as the latest link-state poll read it.
    pub fn handle_link_change(&mut self, now: Timestamp, link: Link, state: LinkState) {
        match link {
            Link::Failover => {
                if self.fo_carrier == state {
                    return;
                }
                self.fo_carrier = state;
                // No carrier means no hellos can come: test the mate at once instead of waiting
                // out the holdtime (tandem's decision; the seeds only describe the hello path).
                // On a direct cable the mate's power loss takes the link down, and this finds out
                // within a LANTEST window whether it is the mate or the link.
                if state != LinkState::Up && self.state != State::Negotiation && self.mate_present()
                {
                    self.start_lantest(now);
                }
            }
            Link::State => {
                if self.state_carrier == state {
                    return;
                }
                self.state_carrier = state;
                if self.cfg.state_link == StateLinkConfig::Dedicated {
                    if state == LinkState::Up {
                        if self.stale == Some(StaleCause::StateLinkDown) {
                            self.stale = None;
                            self.events.push_back(Event::StateLinkRestored);
                        }
                    } else if self.stale.is_none() {
                        // Seeds 004 table, "State link failed": no failover, no action; the state
                        // is marked stale so the operator sees sessions would not survive.
                        self.stale = Some(StaleCause::StateLinkDown);
                        self.events
                            .push_back(Event::StateLinkStale(StaleCause::StateLinkDown));
                    }
                }
            }
            Link::Data(i) => {
                if i.idx() < self.ifaces.len() {
                    self.on_link_change(now, i, state);
                }
            }
        }
        self.flush(now);
    }

    /// Data interface `iface` received a frame (any frame: the network activity, ARP and broadcast
    /// ping tests all count received traffic). Cheap when nothing changes (no allocation), so it
    /// may be called once per RX batch.
    pub fn handle_traffic_seen(&mut self, now: Timestamp, iface: IfIndex) {
        if iface.idx() < self.ifaces.len()
            && self.state != State::Disabled
            && self.on_traffic(now, iface)
        {
            self.flush(now);
        }
    }

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.due(Timer::Hello, now) {
            self.hello_pending = true;
            self.rearm(Timer::Hello, now, self.cfg.unit.polltime);
        }
        if self.due(Timer::Hold, now) {
            self.on_hold_expired(now);
        }
        if self.due(Timer::LanTest, now) {
            self.finish_lantest(now);
        }
        if self.due(Timer::InterfaceHello, now) {
            self.send_interface_hellos();
            self.rearm(Timer::InterfaceHello, now, self.cfg.interface.polltime);
        }
        if self.due(Timer::LinkPoll, now) {
            self.events.push_back(Event::PollLinkState);
            self.rearm(Timer::LinkPoll, now, self.cfg.link_state_polltime);
        }
        if self.due(Timer::Garp, now) {
            self.send_garp(now);
        }
        if self.due(Timer::Handover, now) {
            self.handover_tick(now);
        }
        for i in 0..self.ifaces.len() {
            if self.ifaces[i].next_deadline().is_some_and(|t| t <= now) {
                if let Ok(i) = u16::try_from(i) {
                    self.on_iface_timeout(now, IfIndex(i));
                }
            }
        }
        self.flush(now);
    }

    // ----- commands -----

    /// `failover active`: make this unit active now (seeds 004, "Force Failover": "Make Active").
    /// The mate yields when it hears this unit's hello with a newer term.
    pub fn failover_active(&mut self, now: Timestamp) -> Result<(), CommandError> {
        let r = match self.state {
            State::Active => Ok(()),
            State::Disabled | State::PseudoStandby => Err(CommandError::FailoverDisabled),
            State::Negotiation => Err(CommandError::Negotiating),
            State::Failed => Err(CommandError::UnitFailed),
            State::StandbyReady if self.fo_failed.is_some() => {
                Err(CommandError::FailoverLinkFailed)
            }
            State::StandbyReady => {
                self.set_state(now, State::Active, Reason::ManualActive);
                Ok(())
            }
        };
        self.flush(now);
        r
    }

    /// `no failover active`: make the mate active ("Make Standby"). This unit keeps passing
    /// traffic until the mate has taken over (it yields when it hears the mate active with a newer
    /// term), so the handover leaves no gap; `TakeOver` is repeated every unit polltime for up to
    /// a unit holdtime, then [`Event::HandoverTimedOut`].
    pub fn no_failover_active(&mut self, now: Timestamp) -> Result<(), CommandError> {
        let r = match self.state {
            State::StandbyReady | State::Failed | State::PseudoStandby => Ok(()),
            State::Disabled => Err(CommandError::FailoverDisabled),
            State::Negotiation => Err(CommandError::Negotiating),
            State::Active => self.start_handover(now),
        };
        self.flush(now);
        r
    }

    fn start_handover(&mut self, now: Timestamp) -> Result<(), CommandError> {
        if !self.enabled {
            return Err(CommandError::FailoverDisabled);
        }
        if self.fo_failed.is_some() {
            return Err(CommandError::FailoverLinkFailed);
        }
        let Some(m) = self.mate.as_ref().filter(|_| self.mate_present()) else {
            return Err(CommandError::NoMate);
        };
        if !m.enabled {
            return Err(CommandError::FailoverDisabled);
        }
        if m.state != State::StandbyReady {
            return Err(CommandError::MateNotReady(m.state));
        }
        self.handover_until = Some(now + self.cfg.unit.holdtime);
        self.send(Link::Failover, Message::Control(Control::TakeOver));
        self.arm(Timer::Handover, now + self.cfg.unit.polltime);
        Ok(())
    }

    fn handover_tick(&mut self, now: Timestamp) {
        let Some(until) = self.handover_until else {
            return;
        };
        if self.state != State::Active {
            self.handover_until = None;
        } else if now >= until {
            self.handover_until = None;
            self.events.push_back(Event::HandoverTimedOut);
        } else {
            self.send(Link::Failover, Message::Control(Control::TakeOver));
            self.arm(Timer::Handover, (now + self.cfg.unit.polltime).min(until));
        }
    }

    /// `failover reset`: a failed unit returns to standby (seeds 004, "Restore a Failed Unit";
    /// "If the failover condition persists, however, the unit will fail again"). On the active
    /// unit it resets a failed mate. Never makes a unit active.
    pub fn failover_reset(&mut self, now: Timestamp) -> Result<(), CommandError> {
        let r = match self.state {
            State::Disabled => Err(CommandError::FailoverDisabled),
            State::Failed => {
                self.reset_local(now, Reason::Reset);
                Ok(())
            }
            _ => {
                if self.mate_state() == Some(State::Failed) && self.fo_failed.is_none() {
                    self.send(Link::Failover, Message::Control(Control::Reset));
                }
                Ok(())
            }
        };
        self.flush(now);
        r
    }

    fn reset_local(&mut self, now: Timestamp, reason: Reason) {
        // Forget the test verdicts so the interfaces are tested again; link-down interfaces keep
        // counting, so a persisting link failure fails the unit again at once.
        self.clear_interface_failures(now);
        self.set_state(now, State::StandbyReady, reason);
    }

    /// `no failover` (seeds 004, "Disable Failover"): the active unit stays active and the standby
    /// becomes pseudo-standby; neither changes state on its own until failover is enabled again.
    /// A negotiating or failed unit becomes pseudo-standby too (it must not start passing
    /// traffic).
    pub fn disable(&mut self, now: Timestamp) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        self.handover_until = None;
        self.round = None;
        self.timers[Timer::LanTest as usize] = None;
        if self.state != State::Active {
            self.set_state(now, State::PseudoStandby, Reason::FailoverDisabled);
        }
        self.hello_pending = true;
        self.flush(now);
    }

    /// `failover`: enable failover again. A standalone unit starts negotiating; a pseudo-standby
    /// resumes standby when its mate is active with failover enabled.
    pub fn enable(&mut self, now: Timestamp) {
        if self.enabled {
            return;
        }
        self.enabled = true;
        if self.state == State::Disabled {
            self.set_state(now, State::Negotiation, Reason::FailoverEnabled);
            self.arm(Timer::Hello, now);
            self.arm(Timer::Hold, now + self.cfg.unit.holdtime);
            self.arm(Timer::InterfaceHello, now + self.cfg.interface.polltime);
        } else if self.state == State::PseudoStandby {
            if !self.mate_present() {
                // Nobody to be standby for: choose a role as at startup.
                self.set_state(now, State::Negotiation, Reason::FailoverEnabled);
                self.arm(Timer::Hold, now + self.cfg.unit.holdtime);
            } else if self.mate.as_ref().is_some_and(|m| m.enabled) {
                self.set_state(now, State::StandbyReady, Reason::FailoverEnabled);
            }
        }
        self.hello_pending = true;
        self.flush(now);
    }

    /// Live reconfiguration (`config reload`, or a configuration replicated from the mate). Takes
    /// from `config` only what can change while running: unit and interface timers, link-state
    /// polltime, interface policy, each interface's `monitored` flag (by position) and gratuitous
    /// ARP; keeps everything else (role, links, interfaces, addresses, MACs) — the caller refuses
    /// changes to those. The result is validated against `floors`; nothing changes on error.
    ///
    /// Periodic timers restart from `now` with the new periods (a hello goes out at once, a
    /// running hold timer is re-armed for the new holdtime) and interface monitoring restarts:
    /// tests in progress end and a Testing interface reads Unknown until its next hello or test,
    /// so no verdict mixes two configurations.
    pub fn reconfigure(
        &mut self,
        now: Timestamp,
        config: &Config,
        floors: &TimerFloors,
    ) -> Result<(), ConfigErrors> {
        let mut next = self.cfg.clone();
        next.unit = config.unit;
        next.interface = config.interface;
        next.link_state_polltime = config.link_state_polltime;
        next.interface_policy = config.interface_policy;
        next.garp = config.garp;
        for (i, n) in next.interfaces.iter_mut().zip(&config.interfaces) {
            i.monitored = n.monitored;
        }
        next.validate(floors)?;
        self.cfg = next;
        if self.enabled {
            self.arm(Timer::Hello, now);
            if self.timers[Timer::Hold as usize].is_some() {
                self.arm(Timer::Hold, now + self.cfg.unit.holdtime);
            }
            self.arm(Timer::InterfaceHello, now + self.cfg.interface.polltime);
        }
        self.arm(Timer::LinkPoll, now + self.cfg.link_state_polltime);
        self.restart_monitoring();
        self.hello_pending = true;
        self.flush(now);
        Ok(())
    }

    // ----- internals: timers -----

    pub(crate) fn arm(&mut self, t: Timer, at: Timestamp) {
        self.timers[t as usize] = Some(at);
    }

    fn due(&mut self, t: Timer, now: Timestamp) -> bool {
        match self.timers[t as usize] {
            Some(at) if at <= now => {
                self.timers[t as usize] = None;
                true
            }
            _ => false,
        }
    }

    /// Re-arm a periodic timer one period after `now`.
    fn rearm(&mut self, t: Timer, now: Timestamp, period: Duration) {
        self.arm(t, now + period);
    }

    // ----- internals: unit health -----

    /// A mate whose hellos count: heard, not marked failed, failover link not failed.
    pub(crate) fn mate_present(&self) -> bool {
        self.fo_failed.is_none() && self.mate.as_ref().is_some_and(|m| !m.marked_failed)
    }

    fn hello(&self, now: Timestamp) -> Hello {
        Hello {
            role: self.cfg.role,
            state: self.state,
            failover_enabled: self.enabled,
            term: self.term,
            failover_mac: self.cfg.failover_link.mac,
            macs: self.cfg.interfaces.iter().map(|i| i.mac).collect(),
            interfaces: self.reports_at(now),
        }
    }

    pub(crate) fn send(&mut self, link: Link, msg: Message) {
        self.transmits.push_back(Transmit {
            link,
            msg: Outbound::Unit(msg),
        });
    }

    fn on_hello(&mut self, now: Timestamp, h: &Hello) {
        self.counters.rx_hello += 1;
        let rejoined = core::mem::take(&mut self.mate_restarted);
        let was_present = self.mate_present();
        let prev = self.mate_state();
        let was_marked = self.mate.as_ref().is_some_and(|m| m.marked_failed);
        let mate = Mate {
            role: h.role,
            state: h.state,
            enabled: h.failover_enabled,
            term: h.term,
            failover_mac: h.failover_mac,
            macs: h.macs.clone(),
            reports: h.interfaces.clone(),
            last_heard: now,
            marked_failed: false,
        };
        self.mate = Some(mate);
        // A hello ends any LANTEST round: the mate is alive and the failover link works.
        self.round = None;
        self.timers[Timer::LanTest as usize] = None;
        self.arm(Timer::Hold, now + self.cfg.unit.holdtime);
        if self.fo_failed.take().is_some() {
            self.events.push_back(Event::FailoverLinkRestored);
            if self.stale == Some(StaleCause::FailoverLinkFailed) {
                self.stale = None;
                self.events.push_back(Event::StateLinkRestored);
            }
        }
        if was_marked {
            self.events.push_back(Event::MateRecovered);
        }
        if prev != Some(h.state) || was_marked {
            self.events.push_back(Event::MateStateChanged {
                from: prev,
                to: h.state,
            });
        }
        if h.role == self.cfg.role && !self.role_conflict_reported {
            self.role_conflict_reported = true;
            self.events.push_back(Event::RoleConflict { role: h.role });
        }
        if self.state == State::Active
            && h.state == State::StandbyReady
            && (prev != Some(State::StandbyReady) || !was_present || rejoined)
        {
            self.events.push_back(Event::MateJoined);
        }
    }

    fn on_lantest(&mut self, link: Link, t: &LanTest) {
        match t.kind {
            LanTestKind::Request => self.send(
                link,
                Message::LanTest(LanTest {
                    kind: LanTestKind::Reply,
                    nonce: t.nonce,
                }),
            ),
            LanTestKind::Reply => match self.round.as_mut() {
                Some(r) if r.nonce == t.nonce => match link {
                    Link::Failover => r.failover_answered = true,
                    Link::Data(i) => {
                        if let Some(a) = r.data_answered.get_mut(i.idx()) {
                            *a = true;
                        }
                    }
                    Link::State => {}
                },
                _ => self.counters.rx_lantest_stale += 1,
            },
        }
    }

    fn on_control(&mut self, now: Timestamp, c: Control) {
        let mate_active =
            self.mate_present() && self.mate.as_ref().is_some_and(|m| m.state == State::Active);
        match c {
            Control::TakeOver
                if self.state == State::StandbyReady && self.enabled && mate_active =>
            {
                self.set_state(now, State::Active, Reason::MateRequested);
            }
            Control::Reset if self.state == State::Failed => {
                self.reset_local(now, Reason::ResetByMate)
            }
            _ => self.counters.rx_control_ignored += 1,
        }
    }

    fn on_hold_expired(&mut self, now: Timestamp) {
        match self.state {
            State::Disabled => {}
            State::Negotiation => self.startup_timeout(now),
            _ => {
                if self.mate_present() && self.round.is_none() {
                    self.start_lantest(now);
                }
            }
        }
    }

    /// Seeds 004, "Active Unit Determination at Startup": no peer detected → active; seeds 004
    /// table, "Failover link failed at startup": become active, mark the failover link failed.
    fn startup_timeout(&mut self, now: Timestamp) {
        if self.fo_carrier != LinkState::Up {
            self.fail_failover_link(LinkFailure::NoLinkAtStartup);
            self.set_state(now, State::Active, Reason::StartupFailoverLinkDown);
        } else {
            let waited = now - self.since;
            self.set_state(now, State::Active, Reason::StartupNoPeer { waited });
        }
    }

    /// Seeds 004, "Unit Health Monitoring": no hello within the unit holdtime (so at least three
    /// consecutive hellos missed, since holdtime ≥ 3 × polltime) → LANTEST on each data interface,
    /// including the failover link.
    fn start_lantest(&mut self, now: Timestamp) {
        self.nonce = self.nonce.wrapping_add(1);
        let nonce = self.nonce;
        let req = Message::LanTest(LanTest {
            kind: LanTestKind::Request,
            nonce,
        });
        let mut tested: u16 = 1;
        self.send(Link::Failover, req.clone());
        for i in 0..self.ifaces.len() {
            let Ok(idx) = u16::try_from(i) else { break };
            // A data interface needs the mate's address (a standby IP) and a link.
            if self.cfg.interfaces[i].standby_ip.is_some() && self.ifaces[i].link == LinkState::Up {
                self.send(Link::Data(IfIndex(idx)), req.clone());
                tested = tested.saturating_add(1);
            }
        }
        self.round = Some(LanTestRound {
            nonce,
            tested,
            failover_answered: false,
            data_answered: vec![false; self.ifaces.len()],
        });
        self.counters.lantest_rounds += 1;
        self.timers[Timer::Hold as usize] = None;
        self.arm(Timer::LanTest, now + self.cfg.unit.lantest_window());
    }

    /// The three outcomes of seeds 004, "Unit Health Monitoring".
    fn finish_lantest(&mut self, now: Timestamp) {
        let Some(r) = self.round.take() else { return };
        let silent = self
            .mate
            .as_ref()
            .map_or(Duration::ZERO, |m| now - m.last_heard);
        let answered = r.data_answered.iter().filter(|a| **a).count();
        let answered = u16::try_from(answered).unwrap_or(u16::MAX);
        if r.failover_answered {
            // "If the ASA receives a response on the failover link, then it does not fail over."
            self.arm(Timer::Hold, now + self.cfg.unit.holdtime);
        } else if answered > 0 {
            // "… but it does receive a response on a data interface, then the unit does not
            // failover. The failover link is marked as failed."
            self.fail_failover_link(LinkFailure::LanTestAnsweredOnDataOnly {
                silent,
                answered,
                tested: r.tested,
            });
        } else {
            // "If the ASA does not receive a response on any interface, then the standby unit
            // switches to active mode and classifies the other unit as failed." The active unit
            // marks the standby failed (table: "Standby unit failed").
            if let Some(m) = self.mate.as_mut() {
                m.marked_failed = true;
            }
            self.handover_until = None;
            self.events.push_back(Event::MateFailed {
                silent,
                tested: r.tested,
            });
            let can_take_over =
                self.enabled && matches!(self.state, State::StandbyReady | State::Failed);
            if can_take_over {
                self.set_state(
                    now,
                    State::Active,
                    Reason::MateFailed {
                        silent,
                        tested: r.tested,
                    },
                );
            }
        }
    }

    fn fail_failover_link(&mut self, why: LinkFailure) {
        self.fo_failed = Some(why);
        self.round = None;
        self.timers[Timer::LanTest as usize] = None;
        self.timers[Timer::Hold as usize] = None;
        self.handover_until = None;
        self.events.push_back(Event::FailoverLinkFailed(why));
        if self.cfg.state_link == StateLinkConfig::SharedWithFailoverLink && self.stale.is_none() {
            self.stale = Some(StaleCause::FailoverLinkFailed);
            self.events
                .push_back(Event::StateLinkStale(StaleCause::FailoverLinkFailed));
        }
    }

    // ----- internals: decisions -----

    /// Change state, record it, and start what the new state needs.
    pub(crate) fn set_state(&mut self, now: Timestamp, to: State, reason: Reason) {
        let from = self.state;
        if from == to {
            return;
        }
        if to == State::Active {
            // A new activation: newer than anything this unit has heard of.
            let mate_term = self.mate.as_ref().map_or(0, |m| m.term);
            self.term = self.term.max(mate_term).saturating_add(1);
        }
        self.state = to;
        self.since = now;
        let t = Transition {
            at: now,
            from,
            to,
            reason,
        };
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(t);
        if from == State::Active || to == State::Active {
            self.last_failover = Some(t);
        }
        self.events.push_back(Event::StateChanged(t));
        if to == State::Active && from != State::Disabled {
            self.events.push_back(Event::TakeOver);
        } else if from == State::Active {
            self.events.push_back(Event::Relinquish);
        }
        if to != State::Active {
            self.handover_until = None;
        }
        self.hello_pending = true;
    }

    /// React to the mate's latest hello (called after every input while a mate is present).
    fn decide(&mut self, now: Timestamp) {
        if !self.mate_present() {
            return;
        }
        let Some(m) = self.mate.as_ref() else { return };
        let (ms, men, mterm, mrole, mmac) = (m.state, m.enabled, m.term, m.role, m.failover_mac);
        match self.state {
            State::Disabled => {}
            State::Negotiation => match ms {
                // "If a unit boots and detects a peer already running as active, it becomes the
                // standby unit."
                State::Active | State::Disabled => {
                    let to = if men {
                        State::StandbyReady
                    } else {
                        State::PseudoStandby
                    };
                    self.set_state(now, to, Reason::StartupPeerActive);
                }
                // "If both units boot simultaneously, then the primary unit becomes the active unit,
                // and the secondary unit becomes the standby unit." The secondary waits in
                // Negotiation until it hears the primary active.
                State::Negotiation => {
                    if self.outranks(mrole, mmac) {
                        let reason = if mrole == self.cfg.role {
                            Reason::StartupRoleTie {
                                role: mrole,
                                mac: self.cfg.failover_link.mac,
                            }
                        } else {
                            Reason::StartupBothBooted
                        };
                        self.set_state(now, State::Active, reason);
                    }
                }
                // A healthy standby mate takes over itself on seeing this unit negotiate.
                State::StandbyReady if men => {}
                State::StandbyReady | State::Failed | State::PseudoStandby => {
                    self.set_state(
                        now,
                        State::Active,
                        Reason::StartupMateCannotBeActive { mate: ms },
                    );
                }
            },
            State::StandbyReady | State::Failed => match ms {
                State::Active if !men => {
                    if self.state == State::StandbyReady {
                        self.set_state(now, State::PseudoStandby, Reason::MateFailoverDisabled);
                    }
                }
                State::Active | State::Disabled => {}
                State::Negotiation => {
                    if self.state == State::StandbyReady && self.enabled {
                        self.set_state(now, State::Active, Reason::MateRestarted);
                    }
                }
                State::StandbyReady | State::Failed | State::PseudoStandby => {
                    if self.enabled && self.healthier_than_mate() {
                        self.set_state(now, State::Active, Reason::MateNotActive { mate: ms });
                    }
                }
            },
            State::PseudoStandby => {
                // Seeds 004: "If failover is re-enabled on the active unit/context, then the
                // standby unit/context resumes ordinary standby status."
                if self.enabled && men && ms != State::Negotiation {
                    self.set_state(now, State::StandbyReady, Reason::MateFailoverEnabled);
                }
            }
            State::Active => {
                if ms == State::Active && self.enabled && men {
                    self.resolve_dual_active(now, mterm, mrole, mmac);
                }
            }
        }
    }

    /// Whether this unit acts as primary against a mate with `role` and failover-link MAC `mac`.
    fn outranks(&self, role: Role, mac: Mac) -> bool {
        let me = (
            self.cfg.role == Role::Primary,
            Reverse(self.cfg.failover_link.mac),
        );
        me > (role == Role::Primary, Reverse(mac))
    }

    /// Neither unit is active: the healthier one takes over — standby ready before failed (and
    /// never a pseudo-standby), then fewer failed interfaces, then the primary.
    fn healthier_than_mate(&self) -> bool {
        let Some(m) = self.mate.as_ref() else {
            return true;
        };
        let rank = |s: State| match s {
            State::StandbyReady => 2,
            State::Failed => 1,
            _ => 0,
        };
        let mine = (rank(self.state), Reverse(self.failed_local()));
        let theirs = (rank(m.state), Reverse(self.failed_mate()));
        if mine != theirs {
            return mine > theirs;
        }
        self.outranks(m.role, m.failover_mac)
    }

    fn resolve_dual_active(&mut self, now: Timestamp, mterm: u64, mrole: Role, mmac: Mac) {
        let mate_newer = mterm > self.term;
        let mate_wins = mate_newer || (mterm == self.term && !self.outranks(mrole, mmac));
        if !mate_wins {
            return;
        }
        let rule = if mterm != self.term {
            DualActiveRule::NewerActivation
        } else if mrole != self.cfg.role {
            DualActiveRule::PrimaryKeeps
        } else {
            DualActiveRule::LowerMacKeeps
        };
        let reason = if self.handover_until.is_some() && mate_newer {
            Reason::ManualStandby
        } else {
            Reason::DualActive {
                rule,
                term: self.term,
                mate_term: mterm,
            }
        };
        self.set_state(now, State::StandbyReady, reason);
    }

    /// Seeds 004, "Interface Monitoring" and the events table: the interface policy.
    fn evaluate_policy(&mut self, now: Timestamp) {
        if !self.enabled {
            return;
        }
        let monitored = self.cfg.monitored_count();
        let failed = self.failed_local();
        let met = self.cfg.interface_policy.is_met(failed, monitored);
        let mate_failed = self.failed_mate();
        let to16 = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        let reason = Reason::InterfacePolicy {
            failed: to16(failed),
            monitored: to16(monitored),
            policy: self.cfg.interface_policy,
            mate_failed: to16(mate_failed),
        };
        match self.state {
            State::Active if met => {
                // "If the threshold … is met, and the active unit has more failed interfaces than
                // the standby unit, then a failover occurs." Table: the active unit is marked
                // failed and the standby becomes active; not if the standby is failed or absent
                // ("the active unit does not attempt to fail over").
                let mate_ready = self.mate_present()
                    && self
                        .mate
                        .as_ref()
                        .is_some_and(|m| m.enabled && m.state == State::StandbyReady);
                if mate_ready && failed > mate_failed {
                    self.set_state(now, State::Failed, reason);
                }
            }
            // Table, "Interface failure on standby unit above threshold": mark standby failed.
            State::StandbyReady if met => self.set_state(now, State::Failed, reason),
            State::Failed if !met => self.set_state(
                now,
                State::StandbyReady,
                Reason::InterfacesRecovered {
                    failed: to16(failed),
                    monitored: to16(monitored),
                    policy: self.cfg.interface_policy,
                },
            ),
            _ => {}
        }
    }

    /// Apply the consequences of every input: decisions, policy, monitoring, status events,
    /// ownership, and a hello if anything the mate should know changed.
    pub(crate) fn flush(&mut self, now: Timestamp) {
        // Status changes first, so a log reads "interface … → No Link" before the state change
        // it causes; again after, for statuses the state change itself moved.
        self.emit_status_changes();
        for _ in 0..4 {
            let before = self.state;
            self.decide(now);
            self.evaluate_policy(now);
            self.sync_monitoring(now);
            if self.state == before {
                break;
            }
        }
        self.emit_status_changes();
        let reports = self.reports();
        if reports != self.last_reports {
            self.last_reports = reports;
            self.hello_pending = true;
        }
        let owned = self.owned_addresses();
        if owned != self.owned {
            self.owned = owned;
            self.events.push_back(Event::AddressesChanged {
                set: self.address_set(),
            });
            self.garp_left = self.cfg.garp.burst;
            self.timers[Timer::Garp as usize] = None;
            self.send_garp(now);
        }
        if self.hello_pending && self.state != State::Disabled {
            self.hello_pending = false;
            let h = self.hello(now);
            self.counters.tx_hello += 1;
            self.send(Link::Failover, Message::Hello(h));
        }
    }

    /// One announcement of every owned address with an IP; then the next of the burst, or the
    /// refresh.
    fn send_garp(&mut self, now: Timestamp) {
        for a in &self.owned {
            if let Some(ip) = a.ip {
                self.transmits.push_back(Transmit {
                    link: Link::Data(a.iface),
                    msg: Outbound::GratuitousArp { ip, mac: a.mac },
                });
            }
        }
        self.garp_left = self.garp_left.saturating_sub(1);
        let g = self.cfg.garp;
        if self.garp_left > 0 {
            self.arm(Timer::Garp, now + g.interval);
        } else if let Some(r) = g.refresh.filter(|_| !self.owned.is_empty()) {
            self.arm(Timer::Garp, now + r);
        }
    }
}
