//! The failover vocabulary shared by config, messages, the unit and its view: roles, unit states,
//! interface statuses, links, MAC addresses — named with the seeds' words.

use core::fmt;
use core::str::FromStr;

/// The configured designation of a unit (seeds 004, "Primary/Secondary Roles and Active/Standby
/// Status"). Orthogonal to [`State`]: either unit can be active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Becomes active when both units start together; its MACs go with the active IPs.
    Primary,
    /// The other unit.
    Secondary,
}

impl Role {
    /// The other unit's role in a correctly configured pair.
    pub fn other(self) -> Role {
        match self {
            Role::Primary => Role::Secondary,
            Role::Secondary => Role::Primary,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "Primary",
            Role::Secondary => "Secondary",
        })
    }
}

/// The failover state of a unit, in the seeds' words (the states `show failover` prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Failover is off in the configuration: a standalone unit that owns the active addresses
    /// (seeds 004, "Disable Failover": "to truly disable failover, save the no failover
    /// configuration … and then reload").
    Disabled,
    /// Just started: listening on the failover link for a peer before choosing a role (seeds 004,
    /// "Active Unit Determination at Startup"). Owns no data-interface address.
    Negotiation,
    /// Passes traffic with the active IP and MAC addresses.
    Active,
    /// Healthy standby, ready to take over; owns the standby addresses.
    StandbyReady,
    /// This unit is failed (its interface failures meet the interface policy) and cannot take
    /// over from a healthy active unit; owns the standby addresses.
    Failed,
    /// Standby whose failover is disabled on it or on its mate: keeps its standby addresses and
    /// never takes over (seeds 004, "Disable Failover": "this is called a pseudo-standby state").
    PseudoStandby,
}

impl State {
    /// The addresses a unit in this state owns on its data interfaces.
    pub fn address_set(self) -> AddressSet {
        match self {
            State::Active | State::Disabled => AddressSet::Active,
            State::StandbyReady | State::Failed | State::PseudoStandby => AddressSet::Standby,
            State::Negotiation => AddressSet::None,
        }
    }

    /// A standby-like state (owns the standby addresses, does not pass traffic).
    pub fn is_standby(self) -> bool {
        self.address_set() == AddressSet::Standby
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Disabled => "Disabled",
            State::Negotiation => "Negotiation",
            State::Active => "Active",
            State::StandbyReady => "Standby Ready",
            State::Failed => "Failed",
            State::PseudoStandby => "Pseudo Standby",
        })
    }
}

/// Which of an interface's two address pairs a unit uses (seeds 004, "Active/Standby IP Addresses
/// and MAC Addresses").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressSet {
    /// The active IP and the active MAC.
    Active,
    /// The standby IP (if configured) and the standby MAC.
    Standby,
    /// Nothing yet (negotiating): answer ARP for no data-interface address.
    None,
}

impl fmt::Display for AddressSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressSet::Active => "active",
            AddressSet::Standby => "standby",
            AddressSet::None => "none",
        })
    }
}

/// Status of a monitored interface (seeds 004, "Interface Status"; seeds 003, "Disabling and
/// Enabling Interface Monitoring").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InterfaceStatus {
    /// Initial status; also "the status cannot be determined", and an interface failed on both
    /// units (seeds 004, "Interface Monitoring").
    Unknown,
    /// The interface is receiving traffic.
    Normal,
    /// Hellos are not heard on the interface; the interface tests are running.
    Testing,
    /// The interface is administratively down.
    LinkDown,
    /// The physical link is down.
    NoLink,
    /// No traffic is received on the interface, yet traffic is heard on the peer interface.
    Failed,
}

impl InterfaceStatus {
    /// Statuses that mean "this interface does not pass traffic" for the both-units rule and the
    /// interface policy.
    pub fn is_failed_class(self) -> bool {
        matches!(
            self,
            InterfaceStatus::Failed | InterfaceStatus::NoLink | InterfaceStatus::LinkDown
        )
    }
}

impl fmt::Display for InterfaceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InterfaceStatus::Unknown => "Unknown",
            InterfaceStatus::Normal => "Normal",
            InterfaceStatus::Testing => "Testing",
            InterfaceStatus::LinkDown => "Link Down",
            InterfaceStatus::NoLink => "No Link",
            InterfaceStatus::Failed => "Failed",
        })
    }
}

/// The four interface tests, in the order the seeds run them (seeds 004, "Interface Tests").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestPhase {
    /// Link Up/Down test.
    LinkUpDown,
    /// Network Activity test.
    NetworkActivity,
    /// ARP test.
    Arp,
    /// Broadcast Ping test.
    BroadcastPing,
}

impl fmt::Display for TestPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TestPhase::LinkUpDown => "Link Up/Down test",
            TestPhase::NetworkActivity => "Network Activity test",
            TestPhase::Arp => "ARP test",
            TestPhase::BroadcastPing => "Broadcast Ping test",
        })
    }
}

/// Physical and administrative state of a link, as the caller's link-state poll reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Administratively up with carrier.
    Up,
    /// No carrier (seeds: "No Link").
    NoLink,
    /// Administratively down (seeds: "Link Down").
    AdminDown,
}

/// Index of a data interface: its position in [`crate::Config::interfaces`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfIndex(pub u16);

impl IfIndex {
    pub(crate) fn idx(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for IfIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A link a message arrives on or leaves by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// The dedicated failover link (hellos, LANTEST, control messages).
    Failover,
    /// The stateful failover (state) link; the unit only tracks its health.
    State,
    /// A data interface.
    Data(IfIndex),
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Failover => f.write_str("failover link"),
            Link::State => f.write_str("state link"),
            Link::Data(i) => write!(f, "data interface {i}"),
        }
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Not multicast/broadcast (I/G bit clear) and not all zeros: usable as an interface address.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    /// `00:a0:c9:00:01:01`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A MAC string that is neither `aa:bb:cc:dd:ee:ff`, `aa-bb-…` nor the seeds' `aabb.ccdd.eeff`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a MAC address (write 00:a0:c9:00:01:01 or 00a0.c900.0101)")]
pub struct MacParseError(pub alloc::string::String);

impl FromStr for Mac {
    type Err = MacParseError;
    /// Accepts `00:a0:c9:00:01:01`, `00-a0-c9-00-01-01` and the seeds' `H.H.H` form
    /// `00a0.c900.0101`.
    fn from_str(s: &str) -> Result<Mac, MacParseError> {
        let bad = || MacParseError(s.into());
        let mut hex = [0u8; 12];
        let mut n = 0;
        let dotted = s.contains('.');
        for (i, part) in s.split([':', '-', '.']).enumerate() {
            let want = if dotted { 4 } else { 2 };
            if part.len() != want || i >= 12 / want {
                return Err(bad());
            }
            for c in part.chars() {
                let v = c.to_digit(16).ok_or_else(bad)?;
                hex[n] = u8::try_from(v).map_err(|_| bad())?;
                n += 1;
            }
        }
        if n != 12 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (i, b) in m.iter_mut().enumerate() {
            *b = hex[2 * i] << 4 | hex[2 * i + 1];
        }
        Ok(Mac(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_the_seeds_and_the_linux_forms() {
        let want = Mac([0x00, 0x00, 0xa0, 0x00, 0xa0, 0x11]);
        assert_eq!("0000.a000.a011".parse::<Mac>(), Ok(want));
        assert_eq!("00:00:a0:00:a0:11".parse::<Mac>(), Ok(want));
        assert_eq!("00-00-A0-00-A0-11".parse::<Mac>(), Ok(want));
        for bad in [
            "",
            "0000.a000",
            "00:00:a0:00:a0",
            "00:00:a0:00:a0:1g",
            "0000.a000.a011.0000",
            "000:0a0:00a:011",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert!(want.is_unicast());
        assert!(!Mac([1, 0, 0, 0, 0, 0]).is_unicast());
        assert!(!Mac([0; 6]).is_unicast());
    }

    #[test]
    fn states_and_statuses_print_the_seeds_words() {
        use alloc::string::ToString;
        assert_eq!(State::StandbyReady.to_string(), "Standby Ready");
        assert_eq!(State::PseudoStandby.to_string(), "Pseudo Standby");
        assert_eq!(InterfaceStatus::NoLink.to_string(), "No Link");
        assert_eq!(InterfaceStatus::LinkDown.to_string(), "Link Down");
    }
}
