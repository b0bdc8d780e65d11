//! Configuration types owned by the stateful stage: table capacities, idle timeouts, interface
//! security levels and ASR groups, NAT rules and access rules, validated by [`StateConfig::validate`].
//!
//! These are plain structs; the ctrl crate maps TOML onto them (`[[interface]] security_level`,
//! `[[nat]]`, `[[access_rule]]`, `[timeouts]`, `[failover] replication_http`). Interfaces are
//! referred to by their index in [`StateConfig::interfaces`], the same `u16` the forwarder passes
//! as `rx_if` / `out_if`.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use serde::Serialize;

use crate::Proto;

/// Table sizes, fixed at [`crate::Shard::new`] (per shard, i.e. per worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacities {
    /// Connections.
    pub conns: u32,
    /// PAT translations (at most one per real endpoint; usually sized like `conns`).
    pub xlates: u32,
    /// IPsec SAs.
    pub sas: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Capacities {
            conns: 65_536,
            xlates: 65_536,
            sas: 1024,
        }
    }
}

/// The largest capacity of any table: slab indices are `u32` with one bit reserved for the
/// direction in the index, and `u32::MAX` is the empty slot.
pub const MAX_CAPACITY: u32 = 1 << 30;

/// Idle timeouts per connection class. Defaults follow the appliance's (`timeout conn 1:00:00`,
/// `timeout half-closed 0:10:00`, `timeout udp 0:02:00`, `timeout icmp 0:00:02`, embryonic 30 s,
/// PAT xlate 30 s); TIME_WAIT is kept short because the endpoints, not the gateway, enforce 2MSL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// TCP established.
    pub tcp_established: Duration,
    /// TCP after the first FIN (FIN_WAIT, CLOSE_WAIT, LAST_ACK).
    pub tcp_half_closed: Duration,
    /// TCP before the handshake completes (SYN_SENT, SYN_RECEIVED).
    pub tcp_embryonic: Duration,
    /// TCP after both FINs were acknowledged.
    pub tcp_time_wait: Duration,
    /// UDP.
    pub udp: Duration,
    /// ICMP echo.
    pub icmp: Duration,
    /// How long a PAT xlate outlives its last connection.
    pub pat_xlate: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(3600),
            tcp_half_closed: Duration::from_secs(600),
            tcp_embryonic: Duration::from_secs(30),
            tcp_time_wait: Duration::from_secs(15),
            udp: Duration::from_secs(120),
            icmp: Duration::from_secs(2),
            pat_xlate: Duration::from_secs(30),
        }
    }
}

/// Per-interface policy. Its position in [`StateConfig::interfaces`] is the interface index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfacePolicy {
    /// Name, for errors and `show conn`.
    pub name: String,
    /// 0 (least trusted, e.g. outside) ..= 100 (most trusted, e.g. inside).
    pub security_level: u8,
    /// Asymmetric-routing group 1..=32 (seeds 003, `asr-group`); ICMP connections whose ingress
    /// interface is in a group are replicated (seeds 004, "Supported Features").
    pub asr_group: Option<u8>,
}

impl IfacePolicy {
    /// Interface `name` at `security_level`, in no asymmetric-routing group.
    pub fn new(name: &str, security_level: u8) -> IfacePolicy {
        IfacePolicy {
            name: name.into(),
            security_level,
            asr_group: None,
        }
    }
}

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Prefix {
    /// Network address (host bits must be zero).
    pub addr: Ipv4Addr,
    /// Prefix length 0..=32.
    pub len: u8,
}

impl Prefix {
    /// `0.0.0.0/0`.
    pub const ANY: Prefix = Prefix {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };

    /// A prefix (not validated; see [`StateConfig::validate`]).
    pub const fn new(addr: Ipv4Addr, len: u8) -> Self {
        Prefix { addr, len }
    }

    #[inline]
    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len.min(32)))
        }
    }

    /// True when `ip` is inside the prefix.
    #[inline]
    pub fn contains(self, ip: u32) -> bool {
        ip & self.mask() == self.addr.to_bits() & self.mask()
    }
}

/// A NAT rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NatRule {
    /// Dynamic PAT: new connections from `real` arriving on `real_if` and leaving through
    /// `mapped_if` get source `mapped` (an interface address or a VIP) with a random port.
    DynamicPat {
        /// Ingress interface of the real hosts.
        real_if: u16,
        /// Real source prefix.
        real: Prefix,
        /// Egress interface.
        mapped_if: u16,
        /// Mapped address.
        mapped: Ipv4Addr,
    },
    /// Static NAT, both directions: `real` (on `real_if`) is seen as `mapped` on `mapped_if`.
    /// Outbound new connections from `real` get source `mapped`; inbound new connections arriving
    /// on `mapped_if` for `mapped` are de-NATed to `real` before the route lookup. With `port`,
    /// only that protocol and port are translated (static PAT).
    Static {
        /// Interface of the real host.
        real_if: u16,
        /// Real address.
        real: Ipv4Addr,
        /// Interface the mapped address is seen on.
        mapped_if: u16,
        /// Mapped address.
        mapped: Ipv4Addr,
        /// `(protocol, real port, mapped port)` for a static port translation.
        port: Option<(Proto, u16, u16)>,
    },
}

/// Which protocols an access rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProto {
    /// Any IP protocol.
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
}

/// Permit or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allow the new connection.
    Permit,
    /// Drop it (`drop_access_rule`).
    Deny,
}

/// An access rule on an ingress interface. Rules are evaluated in order for new connections only
/// (return traffic follows its connection); the first match decides; with no match the
/// security-level default applies. Addresses are the real (untranslated) ones: the source as
/// received, the destination after static de-NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccessRule {
    /// Ingress interface.
    pub interface: u16,
    /// Source prefix.
    pub src: Prefix,
    /// Destination prefix.
    pub dst: Prefix,
    /// Protocol.
    pub proto: RuleProto,
    /// Inclusive destination port range (TCP/UDP; ignored for other protocols).
    pub dst_ports: (u16, u16),
    /// Permit or deny.
    pub action: Action,
}

/// Everything the stateful stage needs from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StateConfig {
    /// Table sizes per shard.
    pub capacities: Capacities,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Interfaces, indexed by the forwarder's interface index.
    pub interfaces: Vec<IfacePolicy>,
    /// NAT rules, first match wins.
    pub nat: Vec<NatRule>,
    /// Access rules, first match wins per ingress interface.
    pub access: Vec<AccessRule>,
    /// `replication http` (seeds 003/004): replicate TCP connections to port 80. Off by default.
    pub replicate_http: bool,
}

/// A configuration error; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A capacity is zero or too large.
    #[error("capacities.{key} = {value}: must be between 1 and {max}")]
    Capacity {
        /// `conns`, `xlates` or `sas`.
        key: &'static str,
        /// The value given.
        value: u32,
        /// The maximum.
        max: u32,
    },
    /// A timeout is zero or absurd.
    #[error("timeouts.{key} = {value_ms} ms: must be between 1 ms and 7 days")]
    Timeout {
        /// The key.
        key: &'static str,
        /// The value in ms.
        value_ms: u128,
    },
    /// An interface field is out of range.
    #[error("interface[{index}] ({name}): {what}")]
    Interface {
        /// Interface index.
        index: usize,
        /// Its name.
        name: String,
        /// What is wrong.
        what: &'static str,
    },
    /// Too many interfaces for a `u16` index.
    #[error("interface: at most 65535 interfaces are supported")]
    TooManyInterfaces,
    /// A rule names an interface that does not exist.
    #[error("{key}[{index}].{field} = {value}: no such interface (there are {count})")]
    NoSuchInterface {
        /// `nat` or `access_rule`.
        key: &'static str,
        /// Rule index.
        index: usize,
        /// The field.
        field: &'static str,
        /// The interface index given.
        value: u16,
        /// How many interfaces exist.
        count: usize,
    },
    /// A rule field is invalid.
    #[error("{key}[{index}].{field}: {what}")]
    Rule {
        /// `nat` or `access_rule`.
        key: &'static str,
        /// Rule index.
        index: usize,
        /// The field.
        field: &'static str,
        /// What is wrong.
        what: &'static str,
    },
}

fn check_prefix(
    p: Prefix,
    key: &'static str,
    index: usize,
    field: &'static str,
) -> Result<(), ConfigError> {
    if p.len > 32 {
        return Err(ConfigError::Rule {
            key,
            index,
            field,
            what: "prefix length must be 0..=32",
        });
    }
    if p.addr.to_bits() & !p.mask() != 0 {
        return Err(ConfigError::Rule {
            key,
            index,
            field,
            what: "prefix has host bits set",
        });
    }
    Ok(())
}

impl StateConfig {
    /// Checks every field; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.capacities;
        for (key, value) in [("conns", c.conns), ("xlates", c.xlates), ("sas", c.sas)] {
            if value == 0 || value > MAX_CAPACITY {
                return Err(ConfigError::Capacity {
                    key,
                    value,
                    max: MAX_CAPACITY,
                });
            }
        }
        let t = &self.timeouts;
        for (key, d) in [
            ("tcp_established", t.tcp_established),
            ("tcp_half_closed", t.tcp_half_closed),
            ("tcp_embryonic", t.tcp_embryonic),
            ("tcp_time_wait", t.tcp_time_wait),
            ("udp", t.udp),
            ("icmp", t.icmp),
            ("pat_xlate", t.pat_xlate),
        ] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(7 * 86_400) {
                return Err(ConfigError::Timeout {
                    key,
                    value_ms: d.as_millis(),
                });
            }
        }
        if self.interfaces.len() > usize::from(u16::MAX) {
            return Err(ConfigError::TooManyInterfaces);
        }
        for (index, i) in self.interfaces.iter().enumerate() {
            if i.security_level > 100 {
                return Err(ConfigError::Interface {
                    index,
                    name: i.name.clone(),
                    what: "security_level must be 0..=100",
                });
            }
            if let Some(g) = i.asr_group {
                if !(1..=32).contains(&g) {
                    return Err(ConfigError::Interface {
                        index,
                        name: i.name.clone(),
                        what: "asr_group must be 1..=32",
                    });
                }
            }
        }
        let n = self.interfaces.len();
        let iface = |key, index, field, value: u16| {
            if usize::from(value) >= n {
                Err(ConfigError::NoSuchInterface {
                    key,
                    index,
                    field,
                    value,
                    count: n,
                })
            } else {
                Ok(())
            }
        };
        for (index, r) in self.nat.iter().enumerate() {
            match *r {
                NatRule::DynamicPat {
                    real_if,
                    real,
                    mapped_if,
                    mapped,
                } => {
                    iface("nat", index, "real_if", real_if)?;
                    iface("nat", index, "mapped_if", mapped_if)?;
                    check_prefix(real, "nat", index, "real")?;
                    if mapped.is_unspecified() || mapped.is_broadcast() {
                        return Err(ConfigError::Rule {
                            key: "nat",
                            index,
                            field: "mapped",
                            what: "mapped address must be a unicast address",
                        });
                    }
                }
                NatRule::Static {
                    real_if,
                    real,
                    mapped_if,
                    mapped,
                    port,
                } => {
                    iface("nat", index, "real_if", real_if)?;
                    iface("nat", index, "mapped_if", mapped_if)?;
                    if real.is_unspecified() || mapped.is_unspecified() {
                        return Err(ConfigError::Rule {
                            key: "nat",
                            index,
                            field: "mapped",
                            what: "real and mapped addresses must be unicast addresses",
                        });
                    }
                    if let Some((proto, rp, mp)) = port {
                        if proto == Proto::Icmp || rp == 0 || mp == 0 {
                            return Err(ConfigError::Rule {
                                key: "nat",
                                index,
                                field: "port",
                                what:
                                    "static port translation needs tcp or udp and ports 1..=65535",
                            });
                        }
                    }
                }
            }
        }
        for (index, r) in self.access.iter().enumerate() {
            iface("access_rule", index, "interface", r.interface)?;
            check_prefix(r.src, "access_rule", index, "src")?;
            check_prefix(r.dst, "access_rule", index, "dst")?;
            if r.dst_ports.0 > r.dst_ports.1 {
                return Err(ConfigError::Rule {
                    key: "access_rule",
                    index,
                    field: "dst_ports",
                    what: "port range start is above its end",
                });
            }
        }
        Ok(())
    }
}
