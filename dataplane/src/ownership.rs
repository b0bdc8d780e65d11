//! Run-time address ownership: which IPv4 address and which MAC a unit owns
//! on each interface right now, and whether it passes transit traffic.
//!
//! Seeds 004, "Active/Standby IP Addresses and MAC Addresses": the active
//! unit uses the active IPs and MACs, the standby the standby ones, and on
//! failover they swap. The failover state machine (ctrl/ha) decides; the
//! daemon hands the result to [`crate::Dataplane::set_ownership`], which
//! delivers it to every worker. The connected prefix of an interface does
//! not change (it stays from the configuration): active and standby
//! addresses are on the same network (seeds 004, "MAC Addresses and IP
//! Addresses in Failover").

use std::net::Ipv4Addr;

use crate::config::{is_unicast, mask, DataplaneConfig, InterfaceConfig};

/// What one interface owns now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InterfaceOwnership {
    /// The address this unit owns on the interface: the active IP when
    /// active, the standby IP when standby; `None` when it owns none (no
    /// standby IP configured, or still negotiating). Only this address is
    /// answered in ARP and ICMP echo, announced by gratuitous ARP, and used as
    /// the source of ARP requests and ICMP errors sent out of the interface.
    pub addr: Option<Ipv4Addr>,
    /// The MAC used as source of every frame sent out of the interface and
    /// in ARP replies: the virtual (or primary's) MAC when active, the
    /// standby MAC when standby. Frames to any other unicast MAC are not for
    /// this unit.
    pub mac: [u8; 6],
}

/// Every interface's ownership, in interface (`PortId`) order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ownership {
    pub interfaces: Vec<InterfaceOwnership>,
}

/// Whether the unit passes transit traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Route transit traffic (the active unit; also a unit without failover).
    #[default]
    Forwarding,
    /// Drop transit traffic, counted `drop_not_active`, but still answer ARP
    /// and ICMP echo for the owned addresses: seeds 004, "Primary/Secondary
    /// Roles and Active/Standby Status" — the active unit is the one that
    /// "actively passes traffic"; the standby stays reachable on its standby
    /// addresses (the seeds' standby IP is there for "network tests" and
    /// "management purposes").
    NotForwarding,
}

/// An ownership that cannot be applied; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    #[error("ownership lists {given} interfaces but {configured} are configured")]
    Count { given: usize, configured: usize },
    #[error("interface {interface}: MAC {mac} is not a unicast MAC address")]
    Mac { interface: String, mac: String },
    #[error("interface {interface}: {addr} is not a unicast address")]
    NotUnicast { interface: String, addr: Ipv4Addr },
    #[error(
        "interface {interface}: {addr} is not on its connected subnet {net}/{prefix_len} (or is its broadcast address)"
    )]
    OffSubnet {
        interface: String,
        addr: Ipv4Addr,
        net: Ipv4Addr,
        prefix_len: u8,
    },
    #[error(
        "worker {worker}: its command queue did not take ownership generation {generation} ({why}); workers before it were sent it, the others were not"
    )]
    Worker {
        worker: usize,
        generation: u64,
        why: &'static str,
    },
}

/// The part of an interface's configuration an ownership is checked against.
#[derive(Clone, Debug)]
pub(crate) struct Subnet {
    pub name: String,
    pub net: u32,
    pub mask: u32,
    pub prefix_len: u8,
    /// Directed broadcast address, when the subnet has one (prefix ≤ 30).
    pub bcast: Option<u32>,
}

impl Subnet {
    pub(crate) fn of(i: &InterfaceConfig) -> Subnet {
        let m = mask(i.prefix_len);
        let a = u32::from(i.addr);
        Subnet {
            name: i.name.clone(),
            net: a & m,
            mask: m,
            prefix_len: i.prefix_len,
            bcast: (i.prefix_len <= 30).then_some(a | !m),
        }
    }

    pub(crate) fn contains(&self, a: u32) -> bool {
        a & self.mask == self.net
    }
}

impl Ownership {
    /// The configuration's addresses and MACs: what a unit owns when nobody
    /// calls `set_ownership` (issue 2 behaviour).
    pub fn from_config(cfg: &DataplaneConfig) -> Ownership {
        Ownership {
            interfaces: cfg
                .interfaces
                .iter()
                .map(|i| InterfaceOwnership {
                    addr: Some(i.addr),
                    mac: i.mac,
                })
                .collect(),
        }
    }

    /// Checks the ownership against the configured interfaces: one entry per
    /// interface, unicast MACs, unicast addresses on the connected subnet.
    pub fn validate(&self, cfg: &DataplaneConfig) -> Result<(), OwnershipError> {
        let subnets: Vec<Subnet> = cfg.interfaces.iter().map(Subnet::of).collect();
        self.check(&subnets)
    }

    pub(crate) fn check(&self, subnets: &[Subnet]) -> Result<(), OwnershipError> {
        if self.interfaces.len() != subnets.len() {
            return Err(OwnershipError::Count {
                given: self.interfaces.len(),
                configured: subnets.len(),
            });
        }
        for (o, s) in self.interfaces.iter().zip(subnets) {
            if o.mac[0] & 1 != 0 || o.mac == [0; 6] {
                return Err(OwnershipError::Mac {
                    interface: s.name.clone(),
                    mac: crate::fmt_mac(o.mac),
                });
            }
            let Some(addr) = o.addr else { continue };
            let a = u32::from(addr);
            if !is_unicast(a) {
                return Err(OwnershipError::NotUnicast {
                    interface: s.name.clone(),
                    addr,
                });
            }
            if !s.contains(a) || Some(a) == s.bcast {
                return Err(OwnershipError::OffSubnet {
                    interface: s.name.clone(),
                    addr,
                    net: Ipv4Addr::from(s.net),
                    prefix_len: s.prefix_len,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ArpTimers, RunConfig, TableSizes};

    fn cfg() -> DataplaneConfig {
        DataplaneConfig {
            interfaces: vec![InterfaceConfig {
                name: "outside".into(),
                mac: [2, 0, 0, 0, 0, 1],
                addr: Ipv4Addr::new(198, 18, 0, 1),
                prefix_len: 24,
                mtu: 1500,
            }],
            routes: vec![],
            tables: TableSizes::default(),
            arp: ArpTimers::default(),
            run: RunConfig::default(),
            state: None,
            sync: None,
        }
    }

    #[test]
    fn errors_name_the_interface() {
        let one = |addr: Option<[u8; 4]>, mac| Ownership {
            interfaces: vec![InterfaceOwnership {
                addr: addr.map(Ipv4Addr::from),
                mac,
            }],
        };
        let m = [2, 0, 0, 0, 0, 9];
        let cases: Vec<(Ownership, Option<&str>)> = vec![
            (Ownership::from_config(&cfg()), None),
            (one(None, m), None),
            (one(Some([198, 18, 0, 2]), m), None),
            (
                Ownership::default(),
                Some("ownership lists 0 interfaces but 1 are configured"),
            ),
            (
                one(Some([198, 18, 0, 2]), [3, 0, 0, 0, 0, 1]),
                Some("interface outside: MAC 03:00:00:00:00:01 is not a unicast"),
            ),
            (
                one(Some([198, 18, 1, 2]), m),
                Some("interface outside: 198.18.1.2 is not on its connected subnet 198.18.0.0/24"),
            ),
            (
                one(Some([198, 18, 0, 255]), m),
                Some("interface outside: 198.18.0.255 is not on its connected subnet"),
            ),
            (
                one(Some([224, 0, 0, 1]), m),
                Some("interface outside: 224.0.0.1 is not a unicast address"),
            ),
        ];
        for (own, want) in cases {
            match (own.validate(&cfg()), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().starts_with(w), "{e} vs {w}"),
                (got, want) => panic!("{own:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
