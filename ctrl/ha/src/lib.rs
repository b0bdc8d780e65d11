//! tandem HA: the sans-IO Active/Standby failover logic of one unit — startup role determination,
//! unit health monitoring (hellos, LANTEST), interface monitoring (interface hellos, the four
//! interface tests, statuses, interface policy), every row of the seeds' Active/Standby
//! failover-events table, IP/MAC ownership and the operator commands.
//!
//! The behaviour is the seeds' (`../shared/seeds/004_…`, `003_…`); `docs/failover-rules.md` in
//! this crate lists every rule, where the seeds say it, what tandem decided where they are silent,
//! and the test that proves it.
//!
//! # Shape
//!
//! [`Unit`] is shaped like quinn-proto's `Connection`: it never reads a clock, sleeps, locks,
//! allocates per packet or owns a socket (the crate is `#![no_std]`, so it cannot). Time is an
//! argument ([`Timestamp`], nanoseconds since an epoch the caller picks); nothing needs
//! randomness. The management thread drives it:
//!
//! ```
//! use core::net::{IpAddr, Ipv4Addr};
//! use tandem_ha::{Config, FailoverLinkConfig, InterfaceConfig, Mac, Role, TimerFloors, Timestamp, Unit};
//!
//! let ip = |a| Some(IpAddr::V4(Ipv4Addr::new(198, 18, 1, a)));
//! let cfg = Config::new(
//!     Role::Primary,
//!     FailoverLinkConfig { name: "folink".into(), mac: Mac([2, 0, 0, 0, 0, 1]) },
//!     vec![InterfaceConfig::new("outside", Mac([2, 0, 0, 0, 1, 1]), ip(1).unwrap(), ip(2))],
//! );
//! let mut now = Timestamp::ZERO;
//! let mut unit = Unit::new(cfg, &TimerFloors::SEEDS, now).expect("valid config");
//! for _ in 0..100 {
//!     // 1. feed inputs: unit.handle_message(now, link, &msg), handle_link_change,
//!     //    handle_traffic_seen, commands (unit.failover_active(now), …)
//!     // 2. run due timers
//!     if unit.poll_timeout().is_some_and(|t| t <= now) {
//!         unit.handle_timeout(now);
//!     }
//!     // 3. drain outputs: frames first, then events
//!     while let Some(_tx) = unit.poll_transmit() { /* encode and send on tx.link */ }
//!     while let Some(_ev) = unit.poll_event() { /* act on TakeOver/Relinquish/…, log */ }
//!     // 4. sleep until the next timeout (or an input arrives)
//!     now = unit.poll_timeout().unwrap_or(now);
//! }
//! // Alone on the failover link for a unit holdtime: the unit became active.
//! assert_eq!(unit.state(), tandem_ha::State::Active);
//! ```
//!
//! Outputs: [`Transmit`] (hellos, LANTEST, interface hellos and control messages for the mate as
//! plain [`Message`] values that the link crate encodes and encrypts; ARP probes, broadcast
//! pings and gratuitous ARPs the data path builds), [`Event`] (state changes with a structured
//! [`Reason`] that renders the log text, takeover/relinquish, interface status changes, link
//! failures) and getters: [`Unit::owned_addresses`] (which IPs and MACs to answer for),
//! [`Unit::show`] (`show failover`), [`Unit::history`] (`show failover history`).
//!
//! [`codec`] encodes a [`Message`] into the payload bytes the secure link seals, and decodes
//! untrusted payloads; the whole failover-link protocol is specified in
//! `ctrl/ha/docs/failover-protocol.md`.
//!
//! The deterministic two-unit simulation that tests all of this is [`sim`] (feature
//! `testutils`).

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod codec;
mod config;
mod event;
mod monitor;
mod msg;
mod time;
mod types;
mod unit;
mod view;

#[cfg(any(test, feature = "testutils"))]
pub mod sim;

pub use config::{
    Config, ConfigError, ConfigErrors, FailoverLinkConfig, GarpConfig, InterfaceConfig,
    InterfacePolicy, InterfaceTimers, StateLinkConfig, TimerFloors, UnitTimers, VirtualMac,
    MAX_MONITORED,
};
pub use event::{DualActiveRule, Event, LinkFailure, Reason, StaleCause, Transition};
pub use msg::{
    ConfigChunk, Control, ExecReply, ExecRequest, Hello, InterfaceHello, InterfaceReport, LanTest,
    LanTestKind, Message, MAX_EXEC_CHUNK, MAX_EXEC_COMMAND,
};
pub use time::{Dur, Timestamp};
pub use types::{
    AddressSet, IfIndex, InterfaceStatus, Link, LinkState, Mac, MacParseError, Role, State,
    TestPhase,
};
pub use unit::{CommandError, Counters, Outbound, OwnedAddress, Transmit, Unit, HISTORY_LEN};
pub use view::{FailoverLinkView, FailoverView, HostView, InterfaceView, StateLinkView};
