//! Failover configuration of one unit: the seeds' defaults and ranges, tandem's fast-mode floors,
//! and validation whose errors name the field.
//!
//! Ranges (seeds 004, "Configure Failover Criteria and Other Settings" and "Defaults for
//! Failover"; seeds 003, "Configuring Interface Health Monitoring"):
//!
//! | timer | seeds' range | default | rule |
//! | --- | --- | --- | --- |
//! | unit polltime | 200 ms – 15 s | 1 s | |
//! | unit holdtime | 800 ms – 45 s | 15 s | ≥ 3 × unit polltime |
//! | interface polltime | 500 ms – 15 s | 5 s | |
//! | interface holdtime | 5 s – 75 s | 25 s | ≥ 5 × interface polltime |
//! | link-state polltime | 300 – 799 ms | 500 ms | |
//! | interface policy | 1 – 250 interfaces or 1 – 100 % | 1 interface | |
//! | preempt delay | 1 – 1200 s | none | |
//!
//! The seeds write sub-second values in milliseconds ("between 200 and 999 milliseconds") and the
//! rest in whole seconds; tandem accepts any whole number of milliseconds inside the range, a
//! superset that never contradicts them. The lower ends are the caller's [`TimerFloors`]: the
//! seeds' appliance floors by default, and down to 1 ms / 3 ms (tandem's fast mode) when the
//! hardware profile allows it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use core::time::Duration;

use crate::time::{nanos, Dur};
use crate::types::{IfIndex, Mac, Role};

/// The shortest timers a unit may be configured with — the hardware profile's `[timers]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerFloors {
    /// Shortest unit polltime.
    pub unit_polltime: Duration,
    /// Shortest unit holdtime.
    pub unit_holdtime: Duration,
    /// Shortest interface polltime.
    pub interface_polltime: Duration,
    /// Shortest interface holdtime.
    pub interface_holdtime: Duration,
    /// Shortest link-state polltime.
    pub link_state_polltime: Duration,
}

impl TimerFloors {
    /// The seeds' appliance floors: unit 200 ms / 800 ms, interface 500 ms / 5 s, link state
    /// 300 ms.
    pub const SEEDS: TimerFloors = TimerFloors {
        unit_polltime: Duration::from_millis(200),
        unit_holdtime: Duration::from_millis(800),
        interface_polltime: Duration::from_millis(500),
        interface_holdtime: Duration::from_secs(5),
        link_state_polltime: Duration::from_millis(300),
    };

    /// tandem's fast mode: unit 1 ms / 3 ms, interface 1 ms / 5 ms, link state 1 ms.
    pub const FAST: TimerFloors = TimerFloors {
        unit_polltime: Duration::from_millis(1),
        unit_holdtime: Duration::from_millis(3),
        interface_polltime: Duration::from_millis(1),
        interface_holdtime: Duration::from_millis(5),
        link_state_polltime: Duration::from_millis(1),
    };

    /// Floors from a hardware profile's four timer minima (milliseconds). The profile has no
    /// link-state floor; it is the seeds' 300 ms, lowered to the interface polltime floor when
    /// that is shorter (a profile that allows fast interface hellos allows fast link polling).
    pub fn from_profile_ms(unit_poll: u64, unit_hold: u64, if_poll: u64, if_hold: u64) -> Self {
        let interface_polltime = Duration::from_millis(if_poll);
        TimerFloors {
            unit_polltime: Duration::from_millis(unit_poll),
            unit_holdtime: Duration::from_millis(unit_hold),
            interface_polltime,
            interface_holdtime: Duration::from_millis(if_hold),
            link_state_polltime: interface_polltime.min(Duration::from_millis(300)),
        }
    }
}

impl Default for TimerFloors {
    fn default() -> Self {
        TimerFloors::SEEDS
    }
}

/// Unit health timers (seeds 004, "Unit Health Monitoring"; `failover polltime unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitTimers {
    /// Time between hellos on the failover link.
    pub polltime: Duration,
    /// Time within which a hello must be heard, or the unit starts testing the peer (LANTEST).
    pub holdtime: Duration,
}

impl Default for UnitTimers {
    /// Seeds 004, "Defaults for Failover": unit poll time 1 s, hold time 15 s.
    fn default() -> Self {
        UnitTimers {
            polltime: Duration::from_secs(1),
            holdtime: Duration::from_secs(15),
        }
    }
}

impl UnitTimers {
    /// How long a LANTEST round waits for replies after it is sent. The seeds do not say; tandem
    /// waits one unit polltime, the time a live mate is already given to send a hello.
    pub fn lantest_window(&self) -> Duration {
        self.polltime
    }
}

/// Interface health timers (`failover polltime interface`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceTimers {
    /// Time between interface hellos on each monitored interface.
    pub polltime: Duration,
    /// Interface holdtime: sets when testing starts and the length of each test.
    pub holdtime: Duration,
}

impl Default for InterfaceTimers {
    /// Seeds 004, "Defaults for Failover": interface poll time 5 s, hold time 25 s.
    fn default() -> Self {
        InterfaceTimers {
            polltime: Duration::from_secs(5),
            holdtime: Duration::from_secs(25),
        }
    }
}

impl InterfaceTimers {
    /// How long without a hello on an interface before its tests start (seeds 004, "Configure
    /// Failover Criteria", step 10): x = (holdtime/polltime)/2 rounded to the nearest integer
    /// (.5 rounds up), y = x × polltime. Computed exactly in nanoseconds:
    /// x = ⌊hold/(2·poll) + ½⌋ = ⌊(hold + poll) / (2·poll)⌋. Defaults 25 s / 5 s give 15 s.
    pub fn test_start_after(&self) -> Duration {
        let poll = nanos(self.polltime).max(1);
        let hold = nanos(self.holdtime);
        let x = hold.saturating_add(poll) / poll.saturating_mul(2);
        Duration::from_nanos(x.saturating_mul(poll))
    }

    /// The duration of each interface test: holdtime/16 (seeds 004, "Interface Tests": "1/16 of
    /// the failover interface holdtime", about 1.5 s by default).
    pub fn test_duration(&self) -> Duration {
        self.holdtime / 16
    }
}

/// How many failed monitored interfaces make a unit fail (seeds 004, "Failover Times": `failover
/// interface-policy num[%]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfacePolicy {
    /// This many failed interfaces (1–250).
    Count(u16),
    /// This percentage of the monitored interfaces (1–100).
    Percent(u8),
}

impl Default for InterfacePolicy {
    /// Seeds 004, "Defaults for Failover": "A single interface failure causes failover."
    fn default() -> Self {
        InterfacePolicy::Count(1)
    }
}

impl InterfacePolicy {
    /// Whether `failed` of `monitored` interfaces meets the threshold. The seeds say both "is met"
    /// and "exceeds"; their default (1 interface: "a single interface failure causes failover")
    /// only works as "reaches", so tandem uses `failed ≥ threshold`. A percentage is of the
    /// monitored interfaces; no failure never meets a policy.
    pub fn is_met(&self, failed: usize, monitored: usize) -> bool {
        if failed == 0 {
            return false;
        }
        match *self {
            InterfacePolicy::Count(n) => failed >= usize::from(n),
            InterfacePolicy::Percent(p) => {
                monitored > 0
                    && failed.saturating_mul(100) >= usize::from(p).saturating_mul(monitored)
            }
        }
    }
}

impl fmt::Display for InterfacePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterfacePolicy::Count(n) => write!(f, "{n}"),
            InterfacePolicy::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Virtual active/standby MACs of one interface (seeds 004, "Virtual MAC Addresses").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualMac {
    /// Used with the active IP address, whichever unit is active.
    pub active: Mac,
    /// Used with the standby IP address.
    pub standby: Mac,
}

/// One data interface as failover sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// The interface name (the seeds' nameif), unique.
    pub name: String,
    /// This unit's own (burned-in) MAC on this interface.
    pub mac: Mac,
    /// The active IP address.
    pub active_ip: IpAddr,
    /// The standby IP address. Without it "the active unit cannot perform network tests to check
    /// the standby interface health; it can only track the link state" (seeds 004, "MAC Addresses
    /// and IP Addresses in Failover"): no interface hellos, tests or LANTEST on it.
    pub standby_ip: Option<IpAddr>,
    /// Virtual MACs; without them the active unit uses the primary unit's MACs.
    pub virtual_mac: Option<VirtualMac>,
    /// Whether the interface counts for the interface policy (seeds: monitoring is on for all
    /// physical interfaces by default).
    pub monitored: bool,
}

impl InterfaceConfig {
    /// A monitored interface without virtual MACs.
    pub fn new(name: &str, mac: Mac, active_ip: IpAddr, standby_ip: Option<IpAddr>) -> Self {
        InterfaceConfig {
            name: name.into(),
            mac,
            active_ip,
            standby_ip,
            virtual_mac: None,
            monitored: true,
        }
    }
}

/// The failover link interface (its addresses never move at failover; the link crate owns them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverLinkConfig {
    /// Informational name, e.g. `folink`.
    pub name: String,
    /// This unit's MAC on the failover link. Breaks a tie between two units misconfigured with
    /// the same role (the lower MAC acts as primary).
    pub mac: Mac,
}

/// Where replication (the state link) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateLinkConfig {
    /// On the failover link: a failed failover link also makes the state stale.
    SharedWithFailoverLink,
    /// On its own interface, whose health the caller reports as [`crate::Link::State`].
    Dedicated,
}

/// Gratuitous ARP sent for every owned address when ownership changes (takeover, return to
/// standby, a MAC switch). tandem's own knob: the seeds only say that MAC/IP pairs move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GarpConfig {
    /// Announcements in the burst (1–16); the first goes out at once.
    pub burst: u8,
    /// Time between announcements of the burst (1 ms – 10 s).
    pub interval: Duration,
    /// Re-announce every owned address this often after the burst (1 s – 1 h), or never.
    pub refresh: Option<Duration>,
}

impl Default for GarpConfig {
    fn default() -> Self {
        GarpConfig {
            burst: 3,
            interval: Duration::from_millis(20),
            refresh: None,
        }
    }
}

/// The failover configuration of one unit. Build with [`Config::new`] (the seeds' defaults) and
/// check with [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `failover` / `no failover`: whether this unit takes part in failover.
    pub enabled: bool,
    /// Primary or secondary.
    pub role: Role,
    /// The failover link.
    pub failover_link: FailoverLinkConfig,
    /// The state link.
    pub state_link: StateLinkConfig,
    /// Unit polltime and holdtime.
    pub unit: UnitTimers,
    /// Interface polltime and holdtime.
    pub interface: InterfaceTimers,
    /// How often the caller reads the link state of every interface.
    pub link_state_polltime: Duration,
    /// Failed interfaces that make a unit fail.
    pub interface_policy: InterfacePolicy,
    /// The data interfaces, in [`IfIndex`] order.
    pub interfaces: Vec<InterfaceConfig>,
    /// Preemption delay (Active/Active failover groups; validated now, used later).
    pub preempt_delay: Option<Duration>,
    /// Gratuitous ARP on ownership changes.
    pub garp: GarpConfig,
}

impl Config {
    /// A configuration with the seeds' defaults: failover enabled, state link shared with the
    /// failover link, unit 1 s / 15 s, interface 5 s / 25 s, link state 500 ms, policy 1.
    pub fn new(
        role: Role,
        failover_link: FailoverLinkConfig,
        interfaces: Vec<InterfaceConfig>,
    ) -> Self {
        Config {
            enabled: true,
            role,
            failover_link,
            state_link: StateLinkConfig::SharedWithFailoverLink,
            unit: UnitTimers::default(),
            interface: InterfaceTimers::default(),
            link_state_polltime: Duration::from_millis(500),
            interface_policy: InterfacePolicy::default(),
            interfaces,
            preempt_delay: None,
            garp: GarpConfig::default(),
        }
    }

    /// The interface at `i`, if configured.
    pub fn interface(&self, i: IfIndex) -> Option<&InterfaceConfig> {
        self.interfaces.get(i.idx())
    }

    /// Number of monitored interfaces.
    pub fn monitored_count(&self) -> usize {
        self.interfaces.iter().filter(|i| i.monitored).count()
    }

    /// Check every field against the seeds' ranges and rules and the caller's floors. Returns
    /// every problem, each naming its field; a configuration with any problem must not be applied.
    pub fn validate(&self, floors: &TimerFloors) -> Result<(), ConfigErrors> {
        let mut e = Vec::new();
        let seeds_max = |s: u64| Duration::from_secs(s);
        timer(
            &mut e,
            "unit_polltime",
            self.unit.polltime,
            floors.unit_polltime,
            seeds_max(15),
        );
        timer(
            &mut e,
            "unit_holdtime",
            self.unit.holdtime,
            floors.unit_holdtime,
            seeds_max(45),
        );
        ratio(&mut e, "unit", self.unit.polltime, self.unit.holdtime, 3);
        timer(
            &mut e,
            "interface_polltime",
            self.interface.polltime,
            floors.interface_polltime,
            seeds_max(15),
        );
        timer(
            &mut e,
            "interface_holdtime",
            self.interface.holdtime,
            floors.interface_holdtime,
            seeds_max(75),
        );
        ratio(
            &mut e,
            "interface",
            self.interface.polltime,
            self.interface.holdtime,
            5,
        );
        timer(
            &mut e,
            "link_state_polltime",
            self.link_state_polltime,
            floors.link_state_polltime,
            Duration::from_millis(799),
        );
        match self.interface_policy {
            InterfacePolicy::Count(n) if !(1..=250).contains(&n) => {
                e.push(ConfigError::PolicyCount(n));
            }
            InterfacePolicy::Percent(p) if !(1..=100).contains(&p) => {
                e.push(ConfigError::PolicyPercent(p));
            }
            _ => {}
        }
        if let Some(d) = self.preempt_delay {
            if d < Duration::from_secs(1) || d > Duration::from_secs(1200) || d.subsec_nanos() != 0
            {
                e.push(ConfigError::PreemptDelay(Dur(d)));
            }
        }
        let g = &self.garp;
        if !(1..=16).contains(&g.burst) {
            e.push(ConfigError::GarpBurst(g.burst));
        }
        if g.interval < Duration::from_millis(1) || g.interval > Duration::from_secs(10) {
            e.push(ConfigError::GarpInterval(Dur(g.interval)));
        }
        if let Some(r) = g.refresh {
            if r < Duration::from_secs(1) || r > Duration::from_secs(3600) {
                e.push(ConfigError::GarpRefresh(Dur(r)));
            }
        }
        if self.failover_link.name.is_empty() {
            e.push(ConfigError::FailoverLinkName);
        }
        if !self.failover_link.mac.is_unicast() {
            e.push(ConfigError::FailoverLinkMac(self.failover_link.mac));
        }
        self.validate_interfaces(&mut e);
        if e.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(e))
        }
    }

    fn validate_interfaces(&self, e: &mut Vec<ConfigError>) {
        if self.interfaces.len() > usize::from(u16::MAX) {
            e.push(ConfigError::TooManyInterfaces(self.interfaces.len()));
            return;
        }
        let monitored = self.monitored_count();
        if monitored > MAX_MONITORED {
            e.push(ConfigError::TooManyMonitored(monitored));
        }
        for (index, i) in self.interfaces.iter().enumerate() {
            let at = |what: &str| format!("interface[{index}] \"{}\".{what}", i.name);
            if i.name.is_empty() {
                e.push(ConfigError::Interface {
                    field: format!("interface[{index}].name"),
                    problem: "must not be empty".into(),
                });
            } else if let Some(first) = self.interfaces[..index]
                .iter()
                .position(|o| o.name == i.name)
            {
                e.push(ConfigError::Interface {
                    field: format!("interface[{index}].name"),
                    problem: format!("\"{}\" is already the name of interface[{first}]", i.name),
                });
            }
            if !i.mac.is_unicast() {
                e.push(ConfigError::Interface {
                    field: at("mac"),
                    problem: format!("{} is not a unicast address", i.mac),
                });
            }
            if let Some(s) = i.standby_ip {
                if s.is_ipv4() != i.active_ip.is_ipv4() {
                    e.push(ConfigError::Interface {
                        field: at("standby_ip"),
                        problem: format!(
                            "{s} is not the same address family as active_ip {}",
                            i.active_ip
                        ),
                    });
                } else if s == i.active_ip {
                    e.push(ConfigError::Interface {
                        field: at("standby_ip"),
                        problem: format!("{s} is the active_ip too"),
                    });
                }
            }
            if let Some(v) = i.virtual_mac {
                for (what, m) in [
                    ("virtual_mac.active", v.active),
                    ("virtual_mac.standby", v.standby),
                ] {
                    if !m.is_unicast() {
                        e.push(ConfigError::Interface {
                            field: at(what),
                            problem: format!("{m} is not a unicast address"),
                        });
                    }
                }
                if v.active == v.standby {
                    e.push(ConfigError::Interface {
                        field: at("virtual_mac"),
                        problem: format!("active and standby are both {}", v.active),
                    });
                }
            }
        }
    }
}

/// Seeds 004, "Interface Monitoring": "You can monitor up to 1025 interfaces".
pub const MAX_MONITORED: usize = 1025;

fn timer(e: &mut Vec<ConfigError>, field: &'static str, v: Duration, min: Duration, max: Duration) {
    if v < min || v > max {
        e.push(ConfigError::OutOfRange {
            field,
            value: Dur(v),
            min: Dur(min),
            max: Dur(max),
        });
    } else if !v.subsec_nanos().is_multiple_of(1_000_000) {
        e.push(ConfigError::NotWholeMillis {
            field,
            value: Dur(v),
        });
    }
}

fn ratio(
    e: &mut Vec<ConfigError>,
    what: &'static str,
    poll: Duration,
    hold: Duration,
    factor: u32,
) {
    if hold < poll.saturating_mul(factor) {
        e.push(ConfigError::HoldtimeTooShort {
            what,
            hold: Dur(hold),
            poll: Dur(poll),
            factor,
        });
    }
}

/// One problem in a failover configuration; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A timer outside its range (the minimum is the floor of the hardware profile).
    #[error("{field} {value} is out of range {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The configured value.
        value: Dur,
        /// The profile's floor.
        min: Dur,
        /// The seeds' maximum.
        max: Dur,
    },
    /// A timer with a sub-millisecond part.
    #[error("{field} {value} must be a whole number of milliseconds")]
    NotWholeMillis {
        /// The field.
        field: &'static str,
        /// The configured value.
        value: Dur,
    },
    /// Seeds 004: holdtime at least 3 × (unit) or 5 × (interface) polltime.
    #[error("{what}_holdtime {hold} must be at least {factor} × {what}_polltime ({poll})")]
    HoldtimeTooShort {
        /// `unit` or `interface`.
        what: &'static str,
        /// The holdtime.
        hold: Dur,
        /// The polltime.
        poll: Dur,
        /// 3 or 5.
        factor: u32,
    },
    /// Interface policy count outside 1–250.
    #[error("interface_policy {0} is out of range 1..=250 interfaces")]
    PolicyCount(u16),
    /// Interface policy percentage outside 1–100.
    #[error("interface_policy {0}% is out of range 1..=100%")]
    PolicyPercent(u8),
    /// Preemption delay outside 1–1200 whole seconds.
    #[error("preempt_delay {0} is out of range 1..=1200 whole seconds")]
    PreemptDelay(Dur),
    /// Gratuitous ARP burst outside 1–16.
    #[error("garp.burst {0} is out of range 1..=16")]
    GarpBurst(u8),
    /// Gratuitous ARP interval outside 1 ms – 10 s.
    #[error("garp.interval {0} is out of range 1 ms..=10 s")]
    GarpInterval(Dur),
    /// Gratuitous ARP refresh outside 1 s – 1 h.
    #[error("garp.refresh {0} is out of range 1 s..=3600 s")]
    GarpRefresh(Dur),
    /// The failover link has no name.
    #[error("failover_link.name must not be empty")]
    FailoverLinkName,
    /// The failover link MAC is not unicast.
    #[error("failover_link.mac {0} is not a unicast address")]
    FailoverLinkMac(Mac),
    /// More monitored interfaces than the seeds allow.
    #[error("interfaces: {0} monitored interfaces exceed the limit of 1025")]
    TooManyMonitored(usize),
    /// More interfaces than an [`IfIndex`] can number.
    #[error("interfaces: {0} interfaces exceed the limit of 65535")]
    TooManyInterfaces(usize),
    /// A problem with one interface's field.
    #[error("{field}: {problem}")]
    Interface {
        /// `interface[N] "name".field`.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// Every problem found by [`Config::validate`], one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, e) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use core::net::Ipv4Addr;

    fn ip(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, a))
    }

    fn cfg() -> Config {
        Config::new(
            Role::Primary,
            FailoverLinkConfig {
                name: "folink".into(),
                mac: Mac([2, 0, 0, 0, 0, 1]),
            },
            vec![InterfaceConfig::new(
                "outside",
                Mac([2, 0, 0, 0, 1, 1]),
                ip(1),
                Some(ip(2)),
            )],
        )
    }

    fn errors(c: &Config, floors: &TimerFloors) -> Vec<String> {
        match c.validate(floors) {
            Ok(()) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = cfg();
        assert_eq!(c.unit.polltime, Duration::from_secs(1));
        assert_eq!(c.unit.holdtime, Duration::from_secs(15));
        assert_eq!(c.interface.polltime, Duration::from_secs(5));
        assert_eq!(c.interface.holdtime, Duration::from_secs(25));
        assert_eq!(c.link_state_polltime, Duration::from_millis(500));
        assert_eq!(c.interface_policy, InterfacePolicy::Count(1));
        assert!(c.interfaces[0].monitored);
        assert_eq!(c.validate(&TimerFloors::SEEDS), Ok(()));
    }

    #[test]
    fn interface_testing_starts_after_rounded_half_holdtime_in_polltimes() {
        // (polltime, holdtime) → y; seeds 004 step 10: x = (hold/poll)/2 rounded, .5 up.
        let ms = Duration::from_millis;
        let cases = [
            (ms(5000), ms(25000), ms(15000)), // the seeds' example: 2.5 → 3, y = 15 s
            (ms(5000), ms(24000), ms(10000)), // 2.4 → 2
            (ms(15000), ms(75000), ms(45000)), // 2.5 → 3
            (ms(500), ms(5000), ms(2500)),    // 5.0 → 5
            (ms(1000), ms(5000), ms(3000)),   // 2.5 → 3
            (ms(1000), ms(6000), ms(3000)),   // 3.0 → 3
            (ms(1000), ms(7000), ms(4000)),   // 3.5 → 4
            (ms(1), ms(5), ms(3)),            // fast mode: 2.5 → 3
        ];
        for (poll, hold, want) in cases {
            let t = InterfaceTimers {
                polltime: poll,
                holdtime: hold,
            };
            assert_eq!(t.test_start_after(), want, "{poll:?}/{hold:?}");
        }
        // Each test lasts holdtime/16: about 1.5 s by default.
        assert_eq!(
            InterfaceTimers::default().test_duration(),
            Duration::from_micros(1_562_500)
        );
    }

    #[test]
    fn interface_policy_counts_and_percentages() {
        // (policy, failed, monitored, met)
        let cases = [
            (InterfacePolicy::Count(1), 0, 4, false),
            (InterfacePolicy::Count(1), 1, 4, true),
            (InterfacePolicy::Count(2), 1, 4, false),
            (InterfacePolicy::Count(2), 2, 4, true),
            (InterfacePolicy::Count(5), 4, 4, false),
            (InterfacePolicy::Percent(50), 1, 4, false),
            (InterfacePolicy::Percent(50), 2, 4, true),
            (InterfacePolicy::Percent(20), 1, 5, true),
            (InterfacePolicy::Percent(25), 1, 5, false),
            (InterfacePolicy::Percent(100), 3, 3, true),
            (InterfacePolicy::Percent(1), 0, 0, false),
        ];
        for (p, failed, monitored, met) in cases {
            assert_eq!(p.is_met(failed, monitored), met, "{p} {failed}/{monitored}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        fn ms(n: u64) -> Duration {
            Duration::from_millis(n)
        }
        type Edit = fn(&mut Config);
        let cases: &[(Edit, &str)] = &[
            (|c| c.unit.polltime = ms(100), "unit_polltime 100 ms is out of range 200 ms..=15 s"),
            (|c| c.unit.holdtime = ms(46_000), "unit_holdtime 46 s is out of range 800 ms..=45 s"),
            (
                |c| {
                    c.unit.polltime = ms(500);
                    c.unit.holdtime = ms(1000);
                },
                "unit_holdtime 1 s must be at least 3 × unit_polltime (500 ms)",
            ),
            (
                |c| c.interface.holdtime = ms(20_000),
                "interface_holdtime 20 s must be at least 5 × interface_polltime (5 s)",
            ),
            (|c| c.interface.polltime = ms(400), "interface_polltime 400 ms is out of range 500 ms..=15 s"),
            (|c| c.link_state_polltime = ms(800), "link_state_polltime 800 ms is out of range 300 ms..=799 ms"),
            (
                |c| c.unit.polltime = Duration::from_micros(1500),
                "unit_polltime 1.5 ms is out of range 200 ms..=15 s",
            ),
            (
                |c| c.unit.polltime = Duration::from_micros(250_500),
                "unit_polltime 250.5 ms must be a whole number of milliseconds",
            ),
            (|c| c.interface_policy = InterfacePolicy::Count(251), "interface_policy 251 is out of range 1..=250 interfaces"),
            (|c| c.interface_policy = InterfacePolicy::Percent(0), "interface_policy 0% is out of range 1..=100%"),
            (|c| c.preempt_delay = Some(Duration::from_secs(1201)), "preempt_delay 1201 s is out of range 1..=1200 whole seconds"),
            (
                |c| c.interfaces.push(c.interfaces[0].clone()),
                "interface[1].name: \"outside\" is already the name of interface[0]",
            ),
            (
                |c| c.interfaces[0].standby_ip = Some(c.interfaces[0].active_ip),
                "interface[0] \"outside\".standby_ip: 198.18.1.1 is the active_ip too",
            ),
            (
                |c| {
                    c.interfaces[0].virtual_mac = Some(VirtualMac {
                        active: Mac([1, 0, 0, 0, 0, 1]),
                        standby: Mac([2, 0, 0, 0, 0, 2]),
                    })
                },
                "interface[0] \"outside\".virtual_mac.active: 01:00:00:00:00:01 is not a unicast address",
            ),
            (|c| c.garp.burst = 0, "garp.burst 0 is out of range 1..=16"),
        ];
        for (edit, want) in cases {
            let mut c = cfg();
            edit(&mut c);
            assert_eq!(errors(&c, &TimerFloors::SEEDS), vec![want.to_string()]);
        }
    }

    #[test]
    fn fast_mode_needs_fast_floors() {
        let mut c = cfg();
        c.unit = UnitTimers {
            polltime: Duration::from_millis(1),
            holdtime: Duration::from_millis(3),
        };
        c.interface = InterfaceTimers {
            polltime: Duration::from_millis(1),
            holdtime: Duration::from_millis(5),
        };
        c.link_state_polltime = Duration::from_millis(1);
        assert_eq!(c.validate(&TimerFloors::FAST), Ok(()));
        assert_eq!(errors(&c, &TimerFloors::SEEDS).len(), 5);
        // A lab profile (1/3/1/5 ms) lowers the link-state floor too; an appliance profile keeps 300 ms.
        assert_eq!(TimerFloors::from_profile_ms(1, 3, 1, 5), TimerFloors::FAST);
        assert_eq!(
            TimerFloors::from_profile_ms(200, 800, 500, 5000),
            TimerFloors::SEEDS
        );
    }

    #[test]
    fn all_problems_are_reported_one_per_line() {
        let mut c = cfg();
        c.unit.polltime = Duration::from_millis(100);
        c.interface_policy = InterfacePolicy::Percent(101);
        let e = c.validate(&TimerFloors::SEEDS).unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert_eq!(e.to_string().lines().count(), 2);
    }
}
