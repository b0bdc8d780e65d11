//! The data behind `show failover` and `show monitor-interface`: this host and the other host,
//! roles, states, interface statuses, link states, timers and the last failover. Rendering (text
//! modelled on the appliance, `--json`) is the control plane's.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::time::Duration;

use crate::config::InterfacePolicy;
use crate::event::{LinkFailure, StaleCause, Transition};
use crate::time::Timestamp;
use crate::types::{AddressSet, IfIndex, InterfaceStatus, LinkState, Mac, Role, State};
use crate::unit::{Counters, Unit};

/// A snapshot for `show failover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverView {
    /// `Failover On` / `Failover Off`.
    pub failover_enabled: bool,
    /// This unit.
    pub this_host: HostView,
    /// The mate as last heard, or `None` if never heard.
    pub other_host: Option<HostView>,
    /// The failover link.
    pub failover_link: FailoverLinkView,
    /// The state link.
    pub state_link: StateLinkView,
    /// Unit polltime.
    pub unit_polltime: Duration,
    /// Unit holdtime.
    pub unit_holdtime: Duration,
    /// Interface polltime.
    pub interface_polltime: Duration,
    /// Interface holdtime.
    pub interface_holdtime: Duration,
    /// Link-state polltime.
    pub link_state_polltime: Duration,
    /// Interface policy.
    pub interface_policy: InterfacePolicy,
    /// Monitored interfaces.
    pub monitored: usize,
    /// The last change into or out of Active, with its reason.
    pub last_failover: Option<Transition>,
    /// Activation term.
    pub term: u64,
    /// Counters.
    pub counters: Counters,
}

/// One unit in `show failover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostView {
    /// Primary or secondary.
    pub role: Role,
    /// State (the mate's is Failed when marked failed).
    pub state: State,
    /// Since when (this host only).
    pub since: Option<Timestamp>,
    /// When last heard (other host only).
    pub last_heard: Option<Timestamp>,
    /// Whether failover is enabled on it.
    pub failover_enabled: bool,
    /// Failed monitored interfaces counted for the policy.
    pub failed_interfaces: usize,
    /// Its data interfaces.
    pub interfaces: Vec<InterfaceView>,
}

/// One interface line of `show failover` / `show monitor-interface`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceView {
    /// Index.
    pub index: IfIndex,
    /// Name.
    pub name: String,
    /// Monitored or not.
    pub monitored: bool,
    /// Status.
    pub status: InterfaceStatus,
    /// The address this host uses on it (active or standby IP), if any.
    pub ip: Option<IpAddr>,
    /// The MAC this host uses on it.
    pub mac: Option<Mac>,
}

/// The failover link in `show failover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverLinkView {
    /// Its name.
    pub name: String,
    /// Carrier as last polled.
    pub carrier: LinkState,
    /// Why it is marked failed, if it is.
    pub failed: Option<LinkFailure>,
}

/// The state link in `show failover`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLinkView {
    /// Shared with the failover link.
    pub shared: bool,
    /// Why the replicated state is stale, if it is.
    pub stale: Option<StaleCause>,
}

impl Unit {
    /// A snapshot for `show failover` / `show monitor-interface`.
    pub fn show(&self) -> FailoverView {
        let cfg = &self.cfg;
        let this_set = self.address_set();
        let this_interfaces = cfg
            .interfaces
            .iter()
            .enumerate()
            .map(|(n, c)| {
                let index = IfIndex(u16::try_from(n).unwrap_or(u16::MAX));
                InterfaceView {
                    index,
                    name: c.name.clone(),
                    monitored: c.monitored,
                    status: self.effective_status(n),
                    ip: ip_for(this_set, c.active_ip, c.standby_ip),
                    mac: self.mac_for(this_set, index),
                }
            })
            .collect();
        let this_host = HostView {
            role: cfg.role,
            state: self.state,
            since: Some(self.since),
            last_heard: None,
            failover_enabled: self.enabled,
            failed_interfaces: self.failed_local(),
            interfaces: this_interfaces,
        };
        let other_host = self.mate.as_ref().map(|m| {
            let state = self.mate_state().unwrap_or(m.state);
            let set = state.address_set();
            let interfaces = cfg
                .interfaces
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    let index = IfIndex(u16::try_from(n).unwrap_or(u16::MAX));
                    // The mate's MAC for its address set is this unit's MAC for the same set
                    // (both units follow the same rule).
                    InterfaceView {
                        index,
                        name: c.name.clone(),
                        monitored: c.monitored,
                        status: m
                            .reports
                            .get(n)
                            .map_or(InterfaceStatus::Unknown, |r| r.status),
                        ip: ip_for(set, c.active_ip, c.standby_ip),
                        mac: self.mac_for(set, index),
                    }
                })
                .collect();
            HostView {
                role: m.role,
                state,
                since: None,
                last_heard: Some(m.last_heard),
                failover_enabled: m.enabled,
                failed_interfaces: self.failed_mate(),
                interfaces,
            }
        });
        FailoverView {
            failover_enabled: self.enabled,
            this_host,
            other_host,
            failover_link: FailoverLinkView {
                name: cfg.failover_link.name.clone(),
                carrier: self.fo_carrier,
                failed: self.fo_failed,
            },
            state_link: StateLinkView {
                shared: cfg.state_link == crate::config::StateLinkConfig::SharedWithFailoverLink,
                stale: self.stale,
            },
            unit_polltime: cfg.unit.polltime,
            unit_holdtime: cfg.unit.holdtime,
            interface_polltime: cfg.interface.polltime,
            interface_holdtime: cfg.interface.holdtime,
            link_state_polltime: cfg.link_state_polltime,
            interface_policy: cfg.interface_policy,
            monitored: cfg.monitored_count(),
            last_failover: self.last_failover,
            term: self.term,
            counters: self.counters,
        }
    }
}

fn ip_for(set: AddressSet, active: IpAddr, standby: Option<IpAddr>) -> Option<IpAddr> {
    match set {
        AddressSet::Active => Some(active),
        AddressSet::Standby => standby,
        AddressSet::None => None,
    }
}
