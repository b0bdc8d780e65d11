//! Interface monitoring: interface hellos, the four interface tests, the interface statuses and the
//! failed-interface counts the interface policy uses (seeds 004, "Interface Monitoring",
//! "Interface Tests", "Interface Status"; seeds 003, "Configuring Interface Health Monitoring").
//!
//! Each unit monitors its own interfaces and learns the mate's over the failover link (the
//! `interfaces` reports of its hellos). Comparing the two is what the seeds' tests need: an
//! interface that hears nothing is failed only "if … this same interface on the other unit
//! continues to successfully pass traffic", and one failed on both units is Unknown.

use alloc::vec::Vec;
use core::time::Duration;

use crate::event::Event;
use crate::msg::{InterfaceHello, InterfaceReport, Message};
use crate::time::Timestamp;
use crate::types::{IfIndex, InterfaceStatus, Link, LinkState, State, TestPhase};
use crate::unit::{Outbound, Transmit, Unit};

/// A test in progress on one interface.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Test {
    phase: TestPhase,
    /// When the current test ends.
    ends: Timestamp,
    /// When testing began (the first test): the mate's traffic counts from here.
    began: Timestamp,
    /// The second ARP request of the ARP test, if not yet sent.
    second_arp_at: Option<Timestamp>,
}

/// Monitoring state of one data interface of this unit.
#[derive(Clone, Debug)]
pub(crate) struct IfMon {
    pub link: LinkState,
    /// When the link state last changed.
    link_since: Timestamp,
    /// The link has been down for at least one interface polltime: it counts as failed.
    link_counts: bool,
    debounce_at: Option<Timestamp>,
    /// The monitor's verdict while the link is up: Unknown, Normal, Testing or Failed.
    mon: InterfaceStatus,
    test: Option<Test>,
    /// When testing starts if no hello is heard before.
    hello_deadline: Option<Timestamp>,
    /// Last frame received on the interface.
    last_rx: Option<Timestamp>,
    /// The status last reported in an event.
    shown: InterfaceStatus,
}

impl IfMon {
    pub(crate) fn new(now: Timestamp) -> Self {
        IfMon {
            link: LinkState::Up,
            link_since: now,
            link_counts: false,
            debounce_at: None,
            mon: InterfaceStatus::Unknown,
            test: None,
            hello_deadline: None,
            last_rx: None,
            shown: InterfaceStatus::Unknown,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        let test = self
            .test
            .map(|t| t.second_arp_at.map_or(t.ends, |a| a.min(t.ends)));
        [self.debounce_at, self.hello_deadline, test]
            .into_iter()
            .flatten()
            .min()
    }

    /// This unit's own status of the interface (before the both-units rule).
    pub(crate) fn status(&self) -> InterfaceStatus {
        match self.link {
            LinkState::AdminDown => InterfaceStatus::LinkDown,
            LinkState::NoLink => InterfaceStatus::NoLink,
            LinkState::Up => self.mon,
        }
    }

    /// Seeds 004, "Failover Times": an interface whose link is down triggers failover after the
    /// interface polltime ("Active unit main board interface link down": 500 ms / 5 s / 15 s, the
    /// interface polltime's range); a tested interface counts as soon as it is Failed.
    fn counts_failed(&self) -> bool {
        match self.link {
            LinkState::Up => self.mon == InterfaceStatus::Failed,
            LinkState::NoLink | LinkState::AdminDown => self.link_counts,
        }
    }
}

impl Unit {
    fn tested(&self, i: IfIndex) -> bool {
        // Without a standby IP there is no address to exchange hellos with: "it can only track
        // the link state" (seeds 004).
        self.cfg
            .interface(i)
            .is_some_and(|c| c.monitored && c.standby_ip.is_some())
    }

    fn y(&self) -> Duration {
        self.cfg.interface.test_start_after()
    }

    /// Interface monitoring runs while this unit has a role and hears its mate, and the mate has a
    /// role too: both the tests and the verdicts compare the two units' interfaces, and a mate
    /// still negotiating (or disabled) sends no interface hellos (`send_interface_hellos`), so
    /// waiting y for them would test, and could fail, a healthy interface.
    fn wants_monitoring(&self) -> bool {
        matches!(
            self.state,
            State::Active | State::StandbyReady | State::Failed | State::PseudoStandby
        ) && self.mate_present()
            && !matches!(
                self.mate_state(),
                Some(State::Negotiation | State::Disabled)
            )
    }

    /// Stop monitoring as if the mate had gone (tests end, Testing reads Unknown); the next
    /// `sync_monitoring` starts it again with the configuration in force ([`Unit::reconfigure`]).
    pub(crate) fn restart_monitoring(&mut self) {
        self.monitoring = false;
        for m in &mut self.ifaces {
            m.test = None;
            m.hello_deadline = None;
            if m.mon == InterfaceStatus::Testing {
                m.mon = InterfaceStatus::Unknown;
            }
        }
    }

    pub(crate) fn sync_monitoring(&mut self, now: Timestamp) {
        let want = self.wants_monitoring();
        if want == self.monitoring {
            return;
        }
        self.monitoring = want;
        let y = self.y();
        for n in 0..self.ifaces.len() {
            let Ok(i) = u16::try_from(n) else { break };
            let tested = self.tested(IfIndex(i));
            let m = &mut self.ifaces[n];
            if want {
                if tested
                    && m.link == LinkState::Up
                    && m.test.is_none()
                    && m.hello_deadline.is_none()
                {
                    m.hello_deadline = Some(now + y);
                }
            } else {
                m.test = None;
                m.hello_deadline = None;
                if m.mon == InterfaceStatus::Testing {
                    // "Unknown — … the status cannot be determined."
                    m.mon = InterfaceStatus::Unknown;
                }
            }
        }
    }

    pub(crate) fn send_interface_hellos(&mut self) {
        if matches!(self.state, State::Disabled | State::Negotiation) {
            return;
        }
        for n in 0..self.ifaces.len() {
            let Ok(i) = u16::try_from(n) else { break };
            let iface = IfIndex(i);
            if self.tested(iface) && self.ifaces[n].link == LinkState::Up {
                self.send(
                    Link::Data(iface),
                    Message::InterfaceHello(InterfaceHello { iface }),
                );
            }
        }
    }

    /// A hello from the mate on `i`: the interface is Normal; testing waits another y.
    pub(crate) fn on_interface_hello(&mut self, now: Timestamp, i: IfIndex) {
        self.counters.rx_interface_hello += 1;
        let y = self.y();
        let restart = self.monitoring && self.tested(i);
        let m = &mut self.ifaces[i.idx()];
        if m.link != LinkState::Up {
            // The link poll has not caught up yet; it will.
            return;
        }
        m.mon = InterfaceStatus::Normal;
        m.test = None;
        m.hello_deadline = restart.then_some(now + y);
    }

    /// Any frame received on `i`. Seeds 004: "As soon as a unit receives any eligible packets
    /// during the test, then the interface is considered operational", and "An interface becomes
    /// operational again if it receives any traffic."
    /// Returns whether the status changed (the common case, a Normal interface receiving more,
    /// changes nothing but the last-received time).
    pub(crate) fn on_traffic(&mut self, now: Timestamp, i: IfIndex) -> bool {
        let y = self.y();
        let restart = self.monitoring && self.tested(i);
        let m = &mut self.ifaces[i.idx()];
        if m.link != LinkState::Up {
            return false;
        }
        m.last_rx = Some(now);
        match m.mon {
            InterfaceStatus::Testing | InterfaceStatus::Failed => {
                m.mon = InterfaceStatus::Normal;
                m.test = None;
                m.hello_deadline = restart.then_some(now + y);
                true
            }
            InterfaceStatus::Unknown => {
                m.mon = InterfaceStatus::Normal;
                if restart && m.hello_deadline.is_none() {
                    m.hello_deadline = Some(now + y);
                }
                true
            }
            _ => false,
        }
    }

    pub(crate) fn on_link_change(&mut self, now: Timestamp, i: IfIndex, state: LinkState) {
        let y = self.y();
        let poll = self.cfg.interface.polltime;
        let restart = self.monitoring && self.tested(i);
        let m = &mut self.ifaces[i.idx()];
        if m.link == state {
            return;
        }
        m.link = state;
        m.link_since = now;
        m.link_counts = false;
        m.test = None;
        m.mon = InterfaceStatus::Unknown;
        if state == LinkState::Up {
            m.debounce_at = None;
            m.hello_deadline = restart.then_some(now + y);
        } else {
            // Seeds 004, Link Up/Down test: a down link is failed without further tests; it
            // counts for the policy once down for an interface polltime (see `counts_failed`).
            m.hello_deadline = None;
            m.debounce_at = Some(now + poll);
        }
    }

    pub(crate) fn on_iface_timeout(&mut self, now: Timestamp, i: IfIndex) {
        let n = i.idx();
        if self.ifaces[n].debounce_at.is_some_and(|t| t <= now) {
            let m = &mut self.ifaces[n];
            m.debounce_at = None;
            m.link_counts = m.link != LinkState::Up;
        }
        if let Some(mut t) = self.ifaces[n].test {
            if t.second_arp_at.is_some_and(|a| a <= now) {
                // Seeds 004, ARP test: no reply to the first request → "a single ARP request for
                // the IP address in the next entry". tandem sends it halfway through the test.
                t.second_arp_at = None;
                self.ifaces[n].test = Some(t);
                self.transmits.push_back(Transmit {
                    link: Link::Data(i),
                    msg: Outbound::ArpProbe { recent: 1 },
                });
            }
            if t.ends <= now {
                self.end_test(now, i, t);
            }
        }
        if self.ifaces[n].hello_deadline.is_some_and(|t| t <= now) {
            self.ifaces[n].hello_deadline = None;
            self.start_tests(now, i);
        }
    }

    /// Seeds 004, "Interface Monitoring": no hello on a monitored interface for y → interface tests.
    fn start_tests(&mut self, now: Timestamp, i: IfIndex) {
        if !self.monitoring || !self.tested(i) || self.ifaces[i.idx()].link != LinkState::Up {
            return;
        }
        let m = &mut self.ifaces[i.idx()];
        m.mon = InterfaceStatus::Testing;
        m.test = Some(Test {
            phase: TestPhase::LinkUpDown,
            ends: now,
            began: now,
            second_arp_at: None,
        });
        self.begin_phase(now, i, TestPhase::LinkUpDown);
    }

    /// Start test `phase` on `i`; each lasts holdtime/16 (seeds 004, "Interface Tests").
    fn begin_phase(&mut self, now: Timestamp, i: IfIndex, phase: TestPhase) {
        let d = self.cfg.interface.test_duration();
        let Some(t) = self.ifaces[i.idx()].test.as_mut() else {
            return;
        };
        t.phase = phase;
        t.ends = now + d;
        t.second_arp_at = None;
        match phase {
            // Link Up/Down: a link that goes down during the test ends it (on_link_change);
            // Network Activity: counts what arrives from now on.
            TestPhase::LinkUpDown | TestPhase::NetworkActivity => {}
            TestPhase::Arp => {
                t.second_arp_at = Some(now + d / 2);
                self.transmits.push_back(Transmit {
                    link: Link::Data(i),
                    msg: Outbound::ArpProbe { recent: 0 },
                });
            }
            TestPhase::BroadcastPing => self.transmits.push_back(Transmit {
                link: Link::Data(i),
                msg: Outbound::BroadcastPing,
            }),
        }
        self.events
            .push_back(Event::InterfaceTest { iface: i, phase });
    }

    /// A test ended without traffic on this unit (traffic would have ended testing already).
    fn end_test(&mut self, now: Timestamp, i: IfIndex, t: Test) {
        let next = match t.phase {
            // The link stayed up for the whole test: "the ASA performs the Network Activity test".
            TestPhase::LinkUpDown => Some(TestPhase::NetworkActivity),
            // "If one unit receives traffic and the other unit does not, then the interface on the
            // unit that does not receive traffic is considered failed, and testing stops."
            _ if self.mate_passes_traffic(i, t.began) => None,
            // "If neither unit receives traffic, then the ASA starts the ARP test" / "… the
            // Broadcast Ping test" / "… testing starts over again with the ARP test".
            TestPhase::NetworkActivity => Some(TestPhase::Arp),
            TestPhase::Arp => Some(TestPhase::BroadcastPing),
            TestPhase::BroadcastPing => Some(TestPhase::Arp),
        };
        match next {
            Some(p) => self.begin_phase(now, i, p),
            None => {
                let m = &mut self.ifaces[i.idx()];
                m.mon = InterfaceStatus::Failed;
                m.test = None;
            }
        }
    }

    /// Whether the mate's same interface received traffic since `since` (by its latest report:
    /// when it was heard minus the age of its last received frame). Conservative: link latency
    /// only makes the mate's traffic look older.
    fn mate_passes_traffic(&self, i: IfIndex, since: Timestamp) -> bool {
        if !self.mate_present() {
            return false;
        }
        let Some(m) = self.mate.as_ref() else {
            return false;
        };
        let Some(r) = m.reports.get(i.idx()) else {
            return false;
        };
        if r.status.is_failed_class() {
            return false;
        }
        match r.rx_age {
            Some(age) => nanos_before(m.last_heard, age) >= since,
            None => false,
        }
    }

    /// `failover reset`: test verdicts are forgotten and the interfaces tested again.
    pub(crate) fn clear_interface_failures(&mut self, now: Timestamp) {
        let y = self.y();
        for n in 0..self.ifaces.len() {
            let Ok(i) = u16::try_from(n) else { break };
            let restart = self.monitoring && self.tested(IfIndex(i));
            let m = &mut self.ifaces[n];
            if m.mon == InterfaceStatus::Failed {
                m.mon = InterfaceStatus::Unknown;
                m.hello_deadline = restart.then_some(now + y);
            }
        }
    }

    /// The mate's report on `i`, if it is current (mate present).
    fn mate_report(&self, n: usize) -> Option<&InterfaceReport> {
        if !self.mate_present() {
            return None;
        }
        self.mate.as_ref()?.reports.get(n)
    }

    /// Seeds 004: "If an interface fails on both units, then both interfaces go into the
    /// 'Unknown' state and do not count towards the failover limit."
    fn failed_on_both(&self, n: usize) -> bool {
        self.ifaces[n].status().is_failed_class()
            && self
                .mate_report(n)
                .is_some_and(|r| r.status.is_failed_class())
    }

    /// The status `show monitor-interface` shows for interface `n`.
    pub(crate) fn effective_status(&self, n: usize) -> InterfaceStatus {
        if self.failed_on_both(n) {
            InterfaceStatus::Unknown
        } else {
            self.ifaces[n].status()
        }
    }

    /// Failed monitored interfaces of this unit that count for the interface policy.
    pub(crate) fn failed_local(&self) -> usize {
        (0..self.ifaces.len())
            .filter(|&n| {
                self.cfg.interfaces[n].monitored
                    && self.ifaces[n].counts_failed()
                    && !self.failed_on_both(n)
            })
            .count()
    }

    /// Failed monitored interfaces of the mate that count, by its reports and the same rule.
    pub(crate) fn failed_mate(&self) -> usize {
        (0..self.ifaces.len())
            .filter(|&n| {
                self.cfg.interfaces[n].monitored
                    && self.mate_report(n).is_some_and(|r| r.counts_failed)
                    && !self.failed_on_both(n)
            })
            .count()
    }

    /// This unit's reports for its hello.
    pub(crate) fn reports(&self) -> Vec<InterfaceReport> {
        self.ifaces
            .iter()
            .enumerate()
            .map(|(n, m)| InterfaceReport {
                status: m.status(),
                counts_failed: self.cfg.interfaces[n].monitored && m.counts_failed(),
                rx_age: None,
            })
            .collect()
    }

    /// This unit's reports with the age of the last received frame on each interface, as of `now`.
    pub(crate) fn reports_at(&self, now: Timestamp) -> Vec<InterfaceReport> {
        let mut r = self.reports();
        for (rep, m) in r.iter_mut().zip(&self.ifaces) {
            rep.rx_age = m.last_rx.map(|t| now - t);
        }
        r
    }

    pub(crate) fn emit_status_changes(&mut self) {
        for n in 0..self.ifaces.len() {
            let Ok(i) = u16::try_from(n) else { break };
            let to = self.effective_status(n);
            let from = self.ifaces[n].shown;
            if to != from {
                self.ifaces[n].shown = to;
                self.events.push_back(Event::InterfaceStatusChanged {
                    iface: IfIndex(i),
                    from,
                    to,
                });
            }
        }
    }
}

/// `t - d`, saturating at the epoch.
fn nanos_before(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_nanos(t.as_nanos().saturating_sub(crate::time::nanos(d)))
}
