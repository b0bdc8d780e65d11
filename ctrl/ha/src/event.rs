//! What a unit tells its owner: events (to act on and to log once each) and the structured reasons
//! of state changes, which render the operator text of the logs and `show failover history`.

use core::fmt;
use core::time::Duration;

use crate::config::InterfacePolicy;
use crate::time::{Dur, Timestamp};
use crate::types::{AddressSet, IfIndex, InterfaceStatus, Mac, Role, State, TestPhase};

/// An output of [`crate::Unit::poll_event`]. Each is emitted once, when it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This unit changed state.
    StateChanged(Transition),
    /// This unit now owns the active addresses: program them (see
    /// [`crate::Unit::owned_addresses`]) and forward traffic. Gratuitous ARPs follow as transmits.
    TakeOver,
    /// This unit no longer owns the active addresses: stop answering for them.
    Relinquish,
    /// The set of (IP, MAC) pairs this unit owns changed (after `TakeOver`/`Relinquish`, or a MAC
    /// switch when the primary's MACs are learned): reprogram ARP answers from
    /// [`crate::Unit::owned_addresses`].
    AddressesChanged {
        /// The address set now owned.
        set: AddressSet,
    },
    /// The status of a data interface changed (as `show monitor-interface` shows it).
    InterfaceStatusChanged {
        /// The interface.
        iface: IfIndex,
        /// Old status.
        from: InterfaceStatus,
        /// New status.
        to: InterfaceStatus,
    },
    /// An interface test started on an interface.
    InterfaceTest {
        /// The interface.
        iface: IfIndex,
        /// The test.
        phase: TestPhase,
    },
    /// The mate's state as heard on the failover link changed (`None` before the first hello).
    MateStateChanged {
        /// The last state heard.
        from: Option<State>,
        /// The new state.
        to: State,
    },
    /// The mate is marked failed: no hello and no LANTEST answer anywhere.
    MateFailed {
        /// Silence on the failover link when the mate was declared failed.
        silent: Duration,
        /// Links LANTEST was sent on (failover link included).
        tested: u16,
    },
    /// Hellos from a mate marked failed are heard again.
    MateRecovered,
    /// The mate joined (entered standby) while this unit is active: the control plane sends it
    /// the whole configuration (seeds 004, "Running Configuration Replication").
    MateJoined,
    /// The failover link is marked failed; failover is suspended until it is restored.
    FailoverLinkFailed(LinkFailure),
    /// Hellos are heard on the failover link again.
    FailoverLinkRestored,
    /// Replicated state is out of date (seeds 004: "State information becomes out of date, and
    /// sessions are terminated if a failover occurs").
    StateLinkStale(StaleCause),
    /// The state link is usable again; the replication layer should resynchronise.
    StateLinkRestored,
    /// The mate is configured with this unit's role; the lower failover-link MAC acts as primary.
    RoleConflict {
        /// The role both units claim.
        role: Role,
    },
    /// `no failover active`: the mate did not take over within a unit holdtime; this unit stays
    /// active.
    HandoverTimedOut,
    /// Time to read the link state of every interface (every link-state polltime) and report
    /// each with [`crate::Unit::handle_link_change`].
    PollLinkState,
}

/// Why the failover link was marked failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFailure {
    /// Seeds 004: no LANTEST answer on the failover link, but an answer on a data interface.
    LanTestAnsweredOnDataOnly {
        /// Silence on the failover link.
        silent: Duration,
        /// Data interfaces that answered.
        answered: u16,
        /// Links tested (failover link included).
        tested: u16,
    },
    /// Seeds 004, "Failover link failed at startup": no carrier on the failover link when the
    /// startup wait ended.
    NoLinkAtStartup,
}

impl fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinkFailure::LanTestAnsweredOnDataOnly { silent, answered, tested } => write!(
                f,
                "no hello on the failover link for {}; LANTEST answered on {answered} data interface(s) \
                 but not on the failover link ({tested} links tested) → failover link failed, no failover",
                Dur(silent)
            ),
            LinkFailure::NoLinkAtStartup => f.write_str("failover link has no link at startup"),
        }
    }
}

/// Why the replicated state became stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleCause {
    /// The dedicated state link is down.
    StateLinkDown,
    /// The state link is shared with the failover link, which failed.
    FailoverLinkFailed,
}

impl fmt::Display for StaleCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StaleCause::StateLinkDown => "the state link is down",
            StaleCause::FailoverLinkFailed => {
                "the state link is shared with the failover link, which failed"
            }
        })
    }
}

/// The reason for a state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Seeds 004, startup: "If a unit boots and does not detect a peer, it becomes the active unit."
    StartupNoPeer {
        /// How long it listened.
        waited: Duration,
    },
    /// Seeds 004, "Failover link failed at startup": both units become active.
    StartupFailoverLinkDown,
    /// Seeds 004, startup: "If a unit boots and detects a peer already running as active, it
    /// becomes the standby unit."
    StartupPeerActive,
    /// Seeds 004, startup: "If both units boot simultaneously, then the primary unit becomes the
    /// active unit."
    StartupBothBooted,
    /// Both units start and claim the same role; the lower failover-link MAC acts as primary
    /// (tandem's decision).
    StartupRoleTie {
        /// The role both claim.
        role: Role,
        /// This unit's failover-link MAC.
        mac: Mac,
    },
    /// A starting unit hears a mate that will not become active (failed or pseudo-standby), so it
    /// is "a peer not running as active" and this unit becomes active (tandem's reading).
    StartupMateCannotBeActive {
        /// The mate's state.
        mate: State,
    },
    /// Seeds 004: no hello and no LANTEST answer on any interface: "the standby unit switches to
    /// active mode and classifies the other unit as failed".
    MateFailed {
        /// Silence on the failover link.
        silent: Duration,
        /// Links tested.
        tested: u16,
    },
    /// The active mate restarted before the standby's holdtime ran out (it negotiates again); the
    /// standby, which holds the replicated state, takes over at once and the restarted unit
    /// becomes standby (tandem's decision; seeds: "Formerly active unit recovers: become standby").
    MateRestarted,
    /// Neither unit is active (the mate is failed or standby); this unit is the healthier one.
    MateNotActive {
        /// The mate's state.
        mate: State,
    },
    /// Seeds 004: interface failures meet the interface policy.
    InterfacePolicy {
        /// Failed monitored interfaces on this unit.
        failed: u16,
        /// Monitored interfaces.
        monitored: u16,
        /// The policy.
        policy: InterfacePolicy,
        /// Failed monitored interfaces on the mate.
        mate_failed: u16,
    },
    /// Seeds 004: "A failed ASA returns to standby mode if the interface failure threshold is no
    /// longer met."
    InterfacesRecovered {
        /// Failed monitored interfaces now.
        failed: u16,
        /// Monitored interfaces.
        monitored: u16,
        /// The policy.
        policy: InterfacePolicy,
    },
    /// `failover active` on this unit.
    ManualActive,
    /// `no failover active` on this unit: the mate took over.
    ManualStandby,
    /// `no failover active` on the mate.
    MateRequested,
    /// Both units active and hearing each other; this unit yields.
    DualActive {
        /// Which rule decided.
        rule: DualActiveRule,
        /// This unit's term.
        term: u64,
        /// The mate's term.
        mate_term: u64,
    },
    /// `failover reset` on this unit.
    Reset,
    /// `failover reset` on the mate.
    ResetByMate,
    /// `no failover` on this unit.
    FailoverDisabled,
    /// Failover disabled on the mate.
    MateFailoverDisabled,
    /// `failover` on this unit.
    FailoverEnabled,
    /// Failover re-enabled on the mate.
    MateFailoverEnabled,
}

/// How a dual-active pair decides which unit keeps active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DualActiveRule {
    /// The unit that became active later in the pair's history keeps active: the other is a
    /// "formerly active unit" that recovered (seeds 004 table: it becomes standby).
    NewerActivation,
    /// Equal terms (both became active without hearing each other, e.g. "failover link failed at
    /// startup"): the primary keeps active (issue 3's decision; the seeds are silent).
    PrimaryKeeps,
    /// Equal terms and equal (misconfigured) roles: the lower failover-link MAC keeps active.
    LowerMacKeeps,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::StartupNoPeer { waited } => write!(
                f,
                "no peer detected on the failover link for {} after start",
                Dur(waited)
            ),
            Reason::StartupFailoverLinkDown => {
                f.write_str("failover link down at startup (both units become active)")
            }
            Reason::StartupPeerActive => f.write_str("mate is already active"),
            Reason::StartupBothBooted => f.write_str("both units starting; this unit is primary"),
            Reason::StartupRoleTie { role, mac } => write!(
                f,
                "both units starting and both configured {role}; this unit's failover-link MAC {mac} is lower"
            ),
            Reason::StartupMateCannotBeActive { mate } => {
                write!(f, "mate is {mate} and will not become active")
            }
            Reason::MateFailed { silent, tested } => write!(
                f,
                "no hello on the failover link for {}; LANTEST answered on none of {tested} interfaces",
                Dur(silent)
            ),
            Reason::MateRestarted => f.write_str("active mate restarted and is negotiating again"),
            Reason::MateNotActive { mate } => write!(f, "no unit is active and the mate is {mate}"),
            Reason::InterfacePolicy {
                failed,
                monitored,
                policy,
                mate_failed,
            } => write!(
                f,
                "{failed} of {monitored} monitored interfaces failed, interface policy {policy} met \
                 (mate has {mate_failed} failed)"
            ),
            Reason::InterfacesRecovered {
                failed,
                monitored,
                policy,
            } => write!(
                f,
                "interface policy {policy} no longer met ({failed} of {monitored} monitored interfaces failed)"
            ),
            Reason::ManualActive => f.write_str("`failover active` on this unit"),
            Reason::ManualStandby => f.write_str("`no failover active` on this unit; the mate took over"),
            Reason::MateRequested => f.write_str("`no failover active` on the mate"),
            Reason::DualActive {
                rule,
                term,
                mate_term,
            } => match rule {
                DualActiveRule::NewerActivation => write!(
                    f,
                    "both units active; the mate became active later (term {mate_term} > {term})"
                ),
                DualActiveRule::PrimaryKeeps => write!(
                    f,
                    "both units active since they could not hear each other (term {term}); the primary keeps active"
                ),
                DualActiveRule::LowerMacKeeps => write!(
                    f,
                    "both units active with the same role (term {term}); the lower failover-link MAC keeps active"
                ),
            },
            Reason::Reset => f.write_str("`failover reset` on this unit"),
            Reason::ResetByMate => f.write_str("`failover reset` on the mate"),
            Reason::FailoverDisabled => f.write_str("`no failover` on this unit"),
            Reason::MateFailoverDisabled => f.write_str("failover disabled on the mate"),
            Reason::FailoverEnabled => f.write_str("`failover` enabled on this unit"),
            Reason::MateFailoverEnabled => f.write_str("failover enabled on the mate"),
        }
    }
}

/// One state change, as kept by `show failover history`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// When it happened.
    pub at: Timestamp,
    /// Old state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for Transition {
    /// `no hello on the failover link for 800 ms; LANTEST answered on none of 3 interfaces →
    /// Active (was Standby Ready)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {} (was {})", self.reason, self.to, self.from)
    }
}

impl fmt::Display for Event {
    /// The log line for the event.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StateChanged(t) => write!(f, "failover state: {t}"),
            Event::TakeOver => f.write_str("taking over the active IP and MAC addresses"),
            Event::Relinquish => f.write_str("giving up the active IP and MAC addresses"),
            Event::AddressesChanged { set } => write!(f, "now owning the {set} addresses"),
            Event::InterfaceStatusChanged { iface, from, to } => {
                write!(f, "interface {iface}: {from} → {to}")
            }
            Event::InterfaceTest { iface, phase } => write!(f, "interface {iface}: {phase} started"),
            Event::MateStateChanged { from: Some(s), to } => write!(f, "mate: {s} → {to}"),
            Event::MateStateChanged { from: None, to } => write!(f, "mate heard: {to}"),
            Event::MateFailed { silent, tested } => write!(
                f,
                "mate marked failed: no hello on the failover link for {}; LANTEST answered on none of {tested} interfaces",
                Dur(*silent)
            ),
            Event::MateRecovered => f.write_str("mate heard again after being marked failed"),
            Event::MateJoined => f.write_str("mate joined as standby: send it the configuration"),
            Event::FailoverLinkFailed(why) => write!(f, "failover link failed: {why}"),
            Event::FailoverLinkRestored => f.write_str("failover link restored: hellos heard again"),
            Event::StateLinkStale(StaleCause::StateLinkDown) => {
                f.write_str("state link down: replicated state is going stale (no failover)")
            }
            Event::StateLinkStale(StaleCause::FailoverLinkFailed) => f.write_str(
                "state link (shared with the failed failover link) down: replicated state is going stale",
            ),
            Event::StateLinkRestored => f.write_str("state link restored"),
            Event::RoleConflict { role } => write!(
                f,
                "mate is configured {role} too; the lower failover-link MAC acts as primary"
            ),
            Event::HandoverTimedOut => {
                f.write_str("`no failover active`: the mate did not take over; staying active")
            }
            Event::PollLinkState => f.write_str("link-state poll due"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn reasons_render_the_operator_text() {
        let ms = Duration::from_millis;
        let cases = [
            (Reason::StartupNoPeer { waited: ms(800) }, "no peer detected on the failover link for 800 ms after start"),
            (Reason::StartupFailoverLinkDown, "failover link down at startup (both units become active)"),
            (Reason::StartupPeerActive, "mate is already active"),
            (Reason::StartupBothBooted, "both units starting; this unit is primary"),
            (
                Reason::MateFailed { silent: ms(800), tested: 3 },
                "no hello on the failover link for 800 ms; LANTEST answered on none of 3 interfaces",
            ),
            (
                Reason::InterfacePolicy {
                    failed: 2,
                    monitored: 4,
                    policy: InterfacePolicy::Percent(50),
                    mate_failed: 0,
                },
                "2 of 4 monitored interfaces failed, interface policy 50% met (mate has 0 failed)",
            ),
            (
                Reason::DualActive { rule: DualActiveRule::NewerActivation, term: 3, mate_term: 4 },
                "both units active; the mate became active later (term 4 > 3)",
            ),
            (Reason::MateNotActive { mate: State::Failed }, "no unit is active and the mate is Failed"),
            (Reason::ManualStandby, "`no failover active` on this unit; the mate took over"),
        ];
        for (r, want) in cases {
            assert_eq!(r.to_string(), want);
        }
        let t = Transition {
            at: Timestamp::ZERO,
            from: State::StandbyReady,
            to: State::Active,
            reason: Reason::MateFailed {
                silent: ms(800),
                tested: 3,
            },
        };
        assert_eq!(
            Event::StateChanged(t).to_string(),
            "failover state: no hello on the failover link for 800 ms; LANTEST answered on none of 3 interfaces \
             → Active (was Standby Ready)"
        );
    }
}
