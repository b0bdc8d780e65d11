//! The stateful keys of a unit config (issue 4): per-interface security
//! levels and ASR groups, `[[nat]]`, `[[access_rule]]`, `[timeouts]`, the
//! replication keys of `[failover]`, and the table capacities taken from the
//! hardware profile; their validation (every problem names its key) and the
//! validated [`StatefulSettings`].
//!
//! # When the unit is stateful
//!
//! Stateful mode is on when any of these is configured: a `[[nat]]`, an
//! `[[access_rule]]`, a `security_level` on any interface, a `[timeouts]`
//! section, or `stateful = true` in `[unit]`. Otherwise the unit is the
//! stateless router of issue 2. `stateful = false` together with one of the
//! stateful keys is refused (the file would say two things). `[unit]` is
//! never replicated to the mate (it is the unit's bootstrap section), so
//! set `stateful` the same on both units; the other keys are replicated.
//!
//! In stateful mode every interface has a security level (default 0; no
//! interface name is special, "inside" included: write the level). The
//! appliance's default model applies (DESIGN.md "What the data path does"):
//! traffic from a higher to a lower level is allowed and its return traffic
//! follows the connection; everything else is dropped unless an access rule
//! of the ingress interface permits it.
//!
//! # Keys
//!
//! ```toml
//! [unit]
//! stateful = true                 # optional; see above
//!
//! [[interface]]
//! security_level = 100            # 0..=100, default 0 (stateful mode only)
//! asr_group = 1                   # 1..=32, optional: asymmetric routing group
//!
//! [[nat]]                         # dynamic PAT (many real hosts → one address, ports mapped)
//! type = "pat"
//! real = "198.18.1.0/24"          # real source prefix (no host bits)
//! real_interface = "outside"      # where the real hosts are
//! mapped_interface = "inside"     # where their traffic leaves, translated
//! mapped = "interface"            # "interface": mapped_interface's active address (moves
//!                                 #   with failover), or an IPv4 address
//!
//! [[nat]]                         # static NAT (one real address ↔ one mapped address)
//! type = "static"
//! real = "198.18.2.10"            # a host address
//! mapped = "198.18.1.10"
//! real_interface = "inside"       # required, as for pat
//! mapped_interface = "outside"
//! protocol = "tcp"                # static port translation: protocol tcp|udp with
//! real_port = 8080                #   real_port and mapped_port 1..=65535 (all three or none)
//! mapped_port = 80
//!
//! [[access_rule]]                 # first match wins, per ingress interface
//! interface = "inside"            # ingress interface
//! action = "permit"               # permit | deny
//! protocol = "tcp"                # any | tcp | udp | icmp (default any)
//! source = "0.0.0.0/0"            # prefix, default any ("any" is accepted too)
//! destination = "198.18.1.0/24"   # prefix, default any
//! port = "80"                     # destination port or "1000-2000"; tcp/udp only
//!
//! [timeouts]                      # idle timeouts, humantime strings ("1h", "30s") or seconds
//! tcp = "1h"                      # established TCP; 1s..=168h (seeds' appliance: 1:00:00)
//! tcp_half_closed = "10m"         # after one FIN; 1s..=168h (10 min)
//! tcp_embryonic = "30s"           # SYN seen, handshake not complete; 1s..=1h (30 s)
//! udp = "2m"                      # 1s..=168h (2 min)
//! icmp = "2s"                     # 1s..=1h (2 s)
//!
//! [failover]                      # in addition to the keys of crate::failover:
//! replication_http = false        # replicate HTTP (TCP port 80) connections; off by default
//!                                 #   as in the seeds ("replication http")
//! replication_rate = 100000       # connections/s replicated; default and ceiling: the
//!                                 #   profile's [replication] connections_per_s
//! ```
//!
//! The appliance's timeout ranges (`timeout conn` 0:5:0 and up, `timeout
//! udp` 0:1:0 and up) are relaxed down to one second on purpose: the lab
//! tests idle expiry in seconds. tandem goes below the seeds here; it never
//! contradicts their defaults.
//!
//! Table capacities are the profile's `[tables] conn`, `xlate` and `sa`, per
//! unit, split evenly across the worker shards (rounded up).
//!
//! The state link's MTU is not a key: it is the state device's MTU.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{mask, network, parse_prefix, ConfigFile};
use crate::problem::Problems;
use crate::profile::HwProfile;

/// Highest security level (seeds: 0..=100).
pub const MAX_SECURITY_LEVEL: u32 = 100;
/// Highest ASR group number.
pub const MAX_ASR_GROUP: u32 = 32;
/// Longest idle timeout: 7 days (the tables' limit; the appliance goes to
/// 1193 hours, a deliberate departure — a week-idle connection is dead).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// A timeout as written: integer seconds or a humantime string ("30s").
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TimeoutValue {
    Secs(u64),
    Text(String),
}

/// `[[nat]]` as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatSection {
    #[serde(rename = "type")]
    pub kind: String,
    pub real: String,
    pub mapped: String,
    #[serde(default)]
    pub real_interface: Option<String>,
    #[serde(default)]
    pub mapped_interface: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    /// u32 so that an out-of-range value gets a range message.
    #[serde(default)]
    pub real_port: Option<u32>,
    #[serde(default)]
    pub mapped_port: Option<u32>,
}

/// `[[access_rule]]` as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleSection {
    pub interface: String,
    pub action: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub destination: Option<String>,
    /// `"80"` or `"1000-2000"` (an integer is accepted too).
    #[serde(default)]
    pub port: Option<PortValue>,
}

/// A port or a port range as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortValue {
    Number(u64),
    Text(String),
}

/// `[timeouts]` as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    #[serde(default)]
    pub tcp: Option<TimeoutValue>,
    #[serde(default)]
    pub tcp_half_closed: Option<TimeoutValue>,
    #[serde(default)]
    pub tcp_embryonic: Option<TimeoutValue>,
    #[serde(default)]
    pub udp: Option<TimeoutValue>,
    #[serde(default)]
    pub icmp: Option<TimeoutValue>,
}

/// An IPv4 prefix (no host bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    /// 0.0.0.0/0.
    pub const ANY: Prefix = Prefix {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        network(ip, self.len) == self.addr
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Protocols a rule or a static port translation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// What PAT maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatAddress {
    /// The mapped interface's active address (it moves with failover, so
    /// the translations stay valid on the new active unit).
    Interface,
    Address(Ipv4Addr),
}

/// A static port translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StaticPort {
    /// Tcp or Udp.
    pub protocol: Protocol,
    pub real: u16,
    pub mapped: u16,
}

/// A validated `[[nat]]`; interfaces index [`crate::config::UnitConfig::interfaces`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NatRule {
    Pat {
        real: Prefix,
        real_interface: usize,
        mapped_interface: usize,
        mapped: PatAddress,
    },
    Static {
        real: Ipv4Addr,
        mapped: Ipv4Addr,
        real_interface: usize,
        mapped_interface: usize,
        port: Option<StaticPort>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Permit,
    Deny,
}

/// A validated `[[access_rule]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AccessRule {
    /// Ingress interface index.
    pub interface: usize,
    pub action: Action,
    pub protocol: Protocol,
    pub source: Prefix,
    pub destination: Prefix,
    /// Destination port range, inclusive (tcp/udp only).
    pub ports: Option<(u16, u16)>,
}

/// Idle timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: Duration,
    pub tcp_half_closed: Duration,
    pub tcp_embryonic: Duration,
    pub udp: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    /// The appliance's defaults (seeds: `timeout conn 1:00:00`,
    /// `half-closed 0:10:00`, `udp 0:02:00`, `icmp 0:00:02`; embryonic 30 s).
    fn default() -> Self {
        Timeouts {
            tcp: Duration::from_secs(3600),
            tcp_half_closed: Duration::from_secs(600),
            tcp_embryonic: Duration::from_secs(30),
            udp: Duration::from_secs(120),
            icmp: Duration::from_secs(2),
        }
    }
}

/// What the state link replicates and how fast (from `[failover]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// Replicate HTTP connections (seeds: off by default).
    pub http: bool,
    /// Connection records per second the replication sends.
    pub rate: u64,
}

/// Per-worker table capacities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub conn: usize,
    pub xlate: usize,
    pub sa: usize,
}

/// The validated stateful settings; `UnitConfig::stateful` is `None` for a
/// stateless unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatefulSettings {
    /// Why the unit is stateful (for the start log).
    pub reason: String,
    /// Per interface, in interface order.
    pub security_levels: Vec<u8>,
    pub asr_groups: Vec<Option<u8>>,
    pub nat: Vec<NatRule>,
    pub access_rules: Vec<AccessRule>,
    pub timeouts: Timeouts,
    pub replication: ReplicationSettings,
    /// Per worker shard.
    pub per_worker: Capacities,
    pub workers: usize,
}

fn iface_label(i: usize, name: &str) -> String {
    if name.is_empty() {
        format!("interface[{i}]")
    } else {
        format!("interface[{i}] \"{name}\"")
    }
}

fn timeout(
    p: &mut Problems,
    key: &str,
    v: &Option<TimeoutValue>,
    default: Duration,
    max: Duration,
) -> Duration {
    let d = match v {
        None => return default,
        Some(TimeoutValue::Secs(s)) => Duration::from_secs(*s),
        Some(TimeoutValue::Text(s)) => match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(e) => {
                p.push(
                    key,
                    format!("\"{s}\" is not a duration ({e}); write e.g. \"30s\", \"2m\", \"1h\" or seconds"),
                );
                return default;
            }
        },
    };
    if d < Duration::from_secs(1) || d > max {
        p.push(
            key,
            format!(
                "{} is out of range 1s..={}",
                humantime::format_duration(d),
                humantime::format_duration(max)
            ),
        );
        return default;
    }
    d
}

fn protocol(s: &str) -> Option<Protocol> {
    match s {
        "any" => Some(Protocol::Any),
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "icmp" => Some(Protocol::Icmp),
        _ => None,
    }
}

/// A prefix without host bits; `"any"` is 0.0.0.0/0.
fn prefix(p: &mut Problems, key: &str, what: &str, s: &str) -> Option<Prefix> {
    if s.trim() == "any" {
        return Some(Prefix::ANY);
    }
    match parse_prefix(s) {
        Err(e) => {
            p.push(key, format!("{what} \"{s}\": {e}"));
            None
        }
        Ok((a, len)) if network(a, len) != a => {
            p.push(
                key,
                format!(
                    "{what} \"{s}\" has host bits set; did you mean {}/{len}?",
                    network(a, len)
                ),
            );
            None
        }
        Ok((addr, len)) => Some(Prefix { addr, len }),
    }
}

fn host(p: &mut Problems, key: &str, what: &str, s: &str) -> Option<Ipv4Addr> {
    // A /32 is accepted for a host too.
    let t = s.trim().strip_suffix("/32").unwrap_or(s.trim());
    match t.parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_broadcast() => {
            p.push(key, format!("{what} {a} is not a unicast host address"));
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            p.push(key, format!("{what} \"{s}\" is not an IPv4 address"));
            None
        }
    }
}

fn port_range(p: &mut Problems, key: &str, v: &PortValue) -> Option<(u16, u16)> {
    let bad = |p: &mut Problems, shown: String| {
        p.push(
            key,
            format!("port {shown} must be a port 1..=65535 or a range \"LOW-HIGH\""),
        );
        None
    };
    let one = |s: &str| s.trim().parse::<u16>().ok().filter(|n| *n > 0);
    match v {
        PortValue::Number(n) => match u16::try_from(*n).ok().filter(|n| *n > 0) {
            Some(n) => Some((n, n)),
            None => bad(p, n.to_string()),
        },
        PortValue::Text(s) => {
            let r = match s.split_once('-') {
                Some((a, b)) => one(a).zip(one(b)),
                None => one(s).map(|n| (n, n)),
            };
            match r {
                Some((a, b)) if a <= b => Some((a, b)),
                Some((a, b)) => {
                    p.push(
                        key,
                        format!("port range \"{s}\" is empty ({a} is above {b})"),
                    );
                    None
                }
                None => bad(p, format!("\"{s}\"")),
            }
        }
    }
}

/// The index of the interface called `name`, or a problem listing them.
fn interface_ref(
    p: &mut Problems,
    key: &str,
    field: &str,
    name: &str,
    names: &[&str],
) -> Option<usize> {
    let i = names.iter().position(|n| *n == name);
    if i.is_none() {
        p.push(
            key,
            format!(
                "{field} \"{name}\" is not a configured interface (configured: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        );
    }
    i
}

/// Validate the stateful keys of `file` against `profile`. Returns `None`
/// for a stateless unit (or when a problem was found).
pub fn validate(
    file: &ConfigFile,
    profile: &HwProfile,
    p: &mut Problems,
) -> Option<StatefulSettings> {
    let before = p.len();
    let names: Vec<&str> = file.interfaces.iter().map(|i| i.name.as_str()).collect();

    // Per-interface keys are checked whether or not the unit is stateful,
    // so a typo'd level is never silently ignored.
    let mut levels = Vec::with_capacity(file.interfaces.len());
    let mut asr = Vec::with_capacity(file.interfaces.len());
    for (i, s) in file.interfaces.iter().enumerate() {
        let key = iface_label(i, &s.name);
        let level = s.security_level.unwrap_or(0);
        if level > MAX_SECURITY_LEVEL {
            p.push(
                &key,
                format!("security_level {level} is out of range 0..={MAX_SECURITY_LEVEL}"),
            );
        }
        levels.push(u8::try_from(level.min(MAX_SECURITY_LEVEL)).unwrap_or(0));
        asr.push(match s.asr_group {
            None => None,
            Some(g) if (1..=MAX_ASR_GROUP).contains(&g) => u8::try_from(g).ok(),
            Some(g) => {
                p.push(
                    &key,
                    format!("asr_group {g} is out of range 1..={MAX_ASR_GROUP}"),
                );
                None
            }
        });
    }

    let mut why: Vec<&str> = Vec::new();
    if !file.nat.is_empty() {
        why.push("[[nat]]");
    }
    if !file.access_rules.is_empty() {
        why.push("[[access_rule]]");
    }
    if file.interfaces.iter().any(|i| i.security_level.is_some()) {
        why.push("security_level");
    }
    if file.timeouts.is_some() {
        why.push("[timeouts]");
    }
    let stateful = match file.unit.stateful {
        Some(false) if !why.is_empty() => {
            p.push(
                "unit.stateful",
                format!(
                    "false, but {} need stateful mode; remove them or set stateful = true",
                    why.join(", ")
                ),
            );
            false
        }
        Some(s) => {
            if s {
                why.insert(0, "unit.stateful = true");
            }
            s
        }
        None => !why.is_empty(),
    };

    let nat = validate_nat(file, &names, p);
    let access_rules = validate_rules(file, &names, p);
    let t = file.timeouts.clone().unwrap_or_default();
    let d = Timeouts::default();
    let hour = Duration::from_secs(3600);
    let timeouts = Timeouts {
        tcp: timeout(p, "timeouts.tcp", &t.tcp, d.tcp, MAX_TIMEOUT),
        tcp_half_closed: timeout(
            p,
            "timeouts.tcp_half_closed",
            &t.tcp_half_closed,
            d.tcp_half_closed,
            MAX_TIMEOUT,
        ),
        tcp_embryonic: timeout(
            p,
            "timeouts.tcp_embryonic",
            &t.tcp_embryonic,
            d.tcp_embryonic,
            hour,
        ),
        udp: timeout(p, "timeouts.udp", &t.udp, d.udp, MAX_TIMEOUT),
        icmp: timeout(p, "timeouts.icmp", &t.icmp, d.icmp, hour),
    };

    let ceiling = profile.replication.connections_per_s;
    let (http, rate) = match &file.failover {
        None => (false, ceiling),
        Some(f) => {
            let rate = f.replication_rate.unwrap_or(ceiling);
            if rate == 0 || rate > ceiling {
                p.push(
                    "failover.replication_rate",
                    format!(
                        "{rate} connections/s is out of range 1..={ceiling} (profile {}'s [replication] connections_per_s)",
                        profile.name()
                    ),
                );
            }
            (f.replication_http.unwrap_or(false), rate)
        }
    };
    if !stateful {
        if let Some(f) = &file.failover {
            if f.replication_http.is_some() || f.replication_rate.is_some() {
                p.push(
                    "failover",
                    "replication_http and replication_rate need stateful mode (see [unit] stateful)",
                );
            }
        }
        if asr.iter().any(Option::is_some) {
            p.push(
                "interface",
                "asr_group needs stateful mode (see [unit] stateful)",
            );
        }
    }
    if !stateful || p.len() != before {
        return None;
    }
    let workers = profile.cores.workers.len().max(1);
    let split = |total: u64| usize::try_from(total.div_ceil(workers as u64)).unwrap_or(usize::MAX);
    Some(StatefulSettings {
        reason: why.join(", "),
        security_levels: levels,
        asr_groups: asr,
        nat,
        access_rules,
        timeouts,
        replication: ReplicationSettings { http, rate },
        per_worker: Capacities {
            conn: split(profile.tables.conn),
            xlate: split(profile.tables.xlate),
            sa: split(profile.tables.sa),
        },
        workers,
    })
}

fn validate_nat(file: &ConfigFile, names: &[&str], p: &mut Problems) -> Vec<NatRule> {
    let mut out = Vec::with_capacity(file.nat.len());
    for (i, n) in file.nat.iter().enumerate() {
        let key = format!("nat[{i}]");
        let before = p.len();
        let real_if = n
            .real_interface
            .as_deref()
            .and_then(|s| interface_ref(p, &key, "real_interface", s, names));
        let mapped_if = n
            .mapped_interface
            .as_deref()
            .and_then(|s| interface_ref(p, &key, "mapped_interface", s, names));
        if real_if.is_some() && real_if == mapped_if {
            p.push(
                &key,
                "real_interface and mapped_interface are the same interface",
            );
        }
        let ports = n.protocol.is_some() || n.real_port.is_some() || n.mapped_port.is_some();
        if matches!(n.kind.as_str(), "pat" | "static") {
            for (field, v) in [
                ("real_interface", &n.real_interface),
                ("mapped_interface", &n.mapped_interface),
            ] {
                if v.is_none() {
                    p.push(&key, format!("type \"{}\" needs {field}", n.kind));
                }
            }
        }
        match n.kind.as_str() {
            "pat" => {
                if ports {
                    p.push(
                        &key,
                        "protocol, real_port and mapped_port are for type \"static\" only",
                    );
                }
                let real = prefix(p, &key, "real", &n.real);
                let mapped = if n.mapped.trim() == "interface" {
                    Some(PatAddress::Interface)
                } else {
                    host(p, &key, "mapped", &n.mapped).map(PatAddress::Address)
                };
                if let (Some(real), Some(real_interface), Some(mapped_interface), Some(mapped)) =
                    (real, real_if, mapped_if, mapped)
                {
                    if p.len() == before {
                        out.push(NatRule::Pat {
                            real,
                            real_interface,
                            mapped_interface,
                            mapped,
                        });
                    }
                }
            }
            "static" => {
                let real = host(p, &key, "real", &n.real);
                let mapped = if n.mapped.trim() == "interface" {
                    p.push(
                        &key,
                        "mapped = \"interface\" is for type \"pat\"; a static mapping needs an address",
                    );
                    None
                } else {
                    host(p, &key, "mapped", &n.mapped)
                };
                let port = if ports {
                    let proto = match n.protocol.as_deref() {
                        Some("tcp") => Some(Protocol::Tcp),
                        Some("udp") => Some(Protocol::Udp),
                        Some(o) => {
                            p.push(&key, format!("protocol \"{o}\" must be \"tcp\" or \"udp\""));
                            None
                        }
                        None => {
                            p.push(&key, "real_port and mapped_port need protocol (tcp or udp)");
                            None
                        }
                    };
                    let port = |p: &mut Problems, field: &str, v: Option<u32>| match v {
                        Some(v) if (1..=65535).contains(&v) => u16::try_from(v).ok(),
                        Some(v) => {
                            p.push(&key, format!("{field} {v} is out of range 1..=65535"));
                            None
                        }
                        None => {
                            p.push(&key, format!("protocol needs {field} too"));
                            None
                        }
                    };
                    let r = port(p, "real_port", n.real_port);
                    let m = port(p, "mapped_port", n.mapped_port);
                    match (proto, r, m) {
                        (Some(protocol), Some(real), Some(mapped)) => Some(StaticPort {
                            protocol,
                            real,
                            mapped,
                        }),
                        _ => None,
                    }
                } else {
                    None
                };
                if let (Some(real), Some(mapped), Some(real_interface), Some(mapped_interface)) =
                    (real, mapped, real_if, mapped_if)
                {
                    if real == mapped {
                        p.push(&key, format!("real and mapped are both {real}"));
                    }
                    // Two static rules for one mapped address (and port)
                    // would make the de-NAT lookup ambiguous.
                    for (j, o) in out.iter().enumerate() {
                        if let NatRule::Static {
                            mapped: om,
                            port: op,
                            ..
                        } = o
                        {
                            let same_port = match (op, &port) {
                                (Some(a), Some(b)) => {
                                    a.protocol == b.protocol && a.mapped == b.mapped
                                }
                                _ => true,
                            };
                            if *om == mapped && same_port {
                                p.push(
                                    &key,
                                    format!("mapped {mapped} is already used by a static rule (nat entry {j} of the valid ones)"),
                                );
                            }
                        }
                    }
                    if p.len() == before {
                        out.push(NatRule::Static {
                            real,
                            mapped,
                            real_interface,
                            mapped_interface,
                            port,
                        });
                    }
                }
            }
            other => p.push(
                &key,
                format!("type \"{other}\" must be \"pat\" or \"static\""),
            ),
        }
    }
    out
}

fn validate_rules(file: &ConfigFile, names: &[&str], p: &mut Problems) -> Vec<AccessRule> {
    let mut out = Vec::with_capacity(file.access_rules.len());
    for (i, r) in file.access_rules.iter().enumerate() {
        let key = format!("access_rule[{i}]");
        let before = p.len();
        let interface = interface_ref(p, &key, "interface", &r.interface, names);
        let action = match r.action.as_str() {
            "permit" => Some(Action::Permit),
            "deny" => Some(Action::Deny),
            o => {
                p.push(
                    &key,
                    format!("action \"{o}\" must be \"permit\" or \"deny\""),
                );
                None
            }
        };
        let proto = match r.protocol.as_deref() {
            None => Some(Protocol::Any),
            Some(s) => protocol(s).or_else(|| {
                p.push(
                    &key,
                    format!("protocol \"{s}\" must be any, tcp, udp or icmp"),
                );
                None
            }),
        };
        let source = prefix(p, &key, "source", r.source.as_deref().unwrap_or("any"));
        let destination = prefix(
            p,
            &key,
            "destination",
            r.destination.as_deref().unwrap_or("any"),
        );
        let ports = match &r.port {
            None => None,
            Some(v) => {
                if !matches!(proto, Some(Protocol::Tcp | Protocol::Udp)) {
                    p.push(&key, "port needs protocol tcp or udp");
                }
                port_range(p, &key, v)
            }
        };
        if let (Some(interface), Some(action), Some(protocol), Some(source), Some(destination)) =
            (interface, action, proto, source, destination)
        {
            if p.len() == before {
                out.push(AccessRule {
                    interface,
                    action,
                    protocol,
                    source,
                    destination,
                    ports,
                });
            }
        }
    }
    out
}

impl StatefulSettings {
    /// Whether `ip` is covered by a PAT or static rule's real side (for tests
    /// and `show xlate` labels).
    pub fn translates(&self, ip: Ipv4Addr) -> bool {
        self.nat.iter().any(|n| match n {
            NatRule::Pat { real, .. } => real.contains(ip),
            NatRule::Static { real, .. } => *real == ip,
        })
    }
}

/// The mask of a prefix as an address (for display).
pub fn netmask(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(mask(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigFile, UnitConfig};
    use crate::profile::SHIPPED;

    const GOOD: &str = r#"
[unit]
name = "gw1"
profile = "lab"

[[interface]]
name = "outside"
device = "out0"
address = "198.18.1.1/24"
standby_address = "198.18.1.2"
security_level = 100
asr_group = 3

[[interface]]
name = "inside"
device = "in0"
address = "198.18.2.1/24"
standby_address = "198.18.2.2"
security_level = 0

[[nat]]
type = "pat"
real = "198.18.1.0/24"
real_interface = "outside"
mapped_interface = "inside"
mapped = "interface"

[[nat]]
type = "static"
real = "198.18.2.10"
mapped = "198.18.1.10"
real_interface = "inside"
mapped_interface = "outside"
protocol = "tcp"
real_port = 8080
mapped_port = 80

[[access_rule]]
interface = "inside"
action = "permit"
protocol = "tcp"
source = "198.18.2.0/24"
destination = "any"
port = "1000-2000"

[[access_rule]]
interface = "inside"
action = "deny"

[timeouts]
tcp = "2h"
tcp_half_closed = 120
tcp_embryonic = "10s"
udp = "1m"
icmp = "5s"

[failover]
role = "primary"
link_device = "fo0"
replication_http = true
replication_rate = 5000
"#;

    fn profile(i: usize) -> HwProfile {
        HwProfile::parse(SHIPPED[i].1, "p").unwrap()
    }

    fn check(text: &str) -> Result<UnitConfig, String> {
        ConfigFile::parse(text, "t.toml")
            .map_err(|e| e.to_string())?
            .validate(&profile(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_stateful_key_maps_to_the_settings() {
        let c = check(GOOD).unwrap();
        let s = c.stateful.unwrap();
        assert_eq!(s.security_levels, [100, 0]);
        assert_eq!(s.asr_groups, [Some(3), None]);
        assert_eq!(
            s.nat[0],
            NatRule::Pat {
                real: Prefix {
                    addr: Ipv4Addr::new(198, 18, 1, 0),
                    len: 24
                },
                real_interface: 0,
                mapped_interface: 1,
                mapped: PatAddress::Interface
            }
        );
        assert_eq!(
            s.nat[1],
            NatRule::Static {
                real: Ipv4Addr::new(198, 18, 2, 10),
                mapped: Ipv4Addr::new(198, 18, 1, 10),
                real_interface: 1,
                mapped_interface: 0,
                port: Some(StaticPort {
                    protocol: Protocol::Tcp,
                    real: 8080,
                    mapped: 80
                })
            }
        );
        assert_eq!(
            s.access_rules[0],
            AccessRule {
                interface: 1,
                action: Action::Permit,
                protocol: Protocol::Tcp,
                source: Prefix {
                    addr: Ipv4Addr::new(198, 18, 2, 0),
                    len: 24
                },
                destination: Prefix::ANY,
                ports: Some((1000, 2000)),
            }
        );
        assert_eq!(s.access_rules[1].action, Action::Deny);
        assert_eq!(s.access_rules[1].protocol, Protocol::Any);
        assert_eq!(
            s.timeouts,
            Timeouts {
                tcp: Duration::from_secs(7200),
                tcp_half_closed: Duration::from_secs(120),
                tcp_embryonic: Duration::from_secs(10),
                udp: Duration::from_secs(60),
                icmp: Duration::from_secs(5),
            }
        );
        assert_eq!(
            s.replication,
            ReplicationSettings {
                http: true,
                rate: 5000
            }
        );
        assert_eq!(s.workers, 1);
        assert!(s.reason.contains("[[nat]]"), "{}", s.reason);
        assert!(s.translates(Ipv4Addr::new(198, 18, 1, 77)));
        assert!(!s.translates(Ipv4Addr::new(198, 18, 3, 1)));
    }

    #[test]
    fn lab_tables_hold_the_bulk_sync_test() {
        // Issue 4: a standby started after 100 000 connections gets them by
        // bulk sync; the lab profile must hold 150 000 with room to spare.
        let c = check(GOOD).unwrap();
        let s = c.stateful.unwrap();
        assert!(s.per_worker.conn >= 150_000, "{:?}", s.per_worker);
        assert!(s.per_worker.xlate >= 150_000, "{:?}", s.per_worker);
        let lab = profile(0);
        assert!(lab.memory_bytes() < 1 << 30);
    }

    #[test]
    fn capacities_are_split_across_workers() {
        let mut p = profile(0);
        p.cores.workers = vec![1, 2, 3];
        p.tables.conn = 10;
        p.tables.xlate = 9;
        p.tables.sa = 1;
        let s = ConfigFile::parse(GOOD, "t")
            .unwrap()
            .validate(&p)
            .unwrap()
            .stateful
            .unwrap();
        assert_eq!(
            s.per_worker,
            Capacities {
                conn: 4,
                xlate: 3,
                sa: 1
            }
        );
        assert_eq!(s.workers, 3);
    }

    #[test]
    fn defaults_and_when_the_unit_is_stateful() {
        let base = "[unit]\nname = \"a\"\nprofile = \"lab\"\n\n[[interface]]\nname = \"outside\"\ndevice = \"o0\"\naddress = \"198.18.1.1/24\"\n";
        // Nothing stateful: today's router.
        assert!(check(base).unwrap().stateful.is_none());
        // Each trigger alone turns it on.
        for (extra, why) in [
            ("", "unit.stateful = true"),
            ("security_level = 0\n", "security_level"),
            ("\n[timeouts]\n", "[timeouts]"),
            (
                "\n[[access_rule]]\ninterface = \"outside\"\naction = \"deny\"\n",
                "[[access_rule]]",
            ),
        ] {
            let text = if extra.is_empty() {
                base.replace("profile = \"lab\"", "profile = \"lab\"\nstateful = true")
            } else {
                format!("{base}{extra}")
            };
            let s = check(&text).unwrap().stateful.expect(why);
            assert_eq!(s.reason, why);
            assert_eq!(s.timeouts, Timeouts::default());
            assert_eq!(s.security_levels, [0]);
            assert!(
                !s.replication.http,
                "seeds: HTTP replication is off by default"
            );
            assert_eq!(s.replication.rate, profile(0).replication.connections_per_s);
        }
        // Explicitly off with nothing stateful is fine.
        let off = base.replace("profile = \"lab\"", "profile = \"lab\"\nstateful = false");
        assert!(check(&off).unwrap().stateful.is_none());
    }

    /// (text in GOOD, replacement, expected problem line). Every message
    /// names its key.
    #[test]
    fn every_stateful_error_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("security_level = 100", "security_level = 101", "interface[0] \"outside\": security_level 101 is out of range 0..=100"),
            ("asr_group = 3", "asr_group = 33", "interface[0] \"outside\": asr_group 33 is out of range 1..=32"),
            ("asr_group = 3", "asr_group = 0", "interface[0] \"outside\": asr_group 0 is out of range 1..=32"),
            ("type = \"pat\"", "type = \"dynamic\"", "nat[0]: type \"dynamic\" must be \"pat\" or \"static\""),
            ("real = \"198.18.1.0/24\"", "real = \"198.18.1.7/24\"", "nat[0]: real \"198.18.1.7/24\" has host bits set; did you mean 198.18.1.0/24?"),
            ("real = \"198.18.1.0/24\"", "real = \"198.18.1.0\"", "nat[0]: real \"198.18.1.0\": must be ADDRESS/PREFIX, e.g. 198.18.1.1/24"),
            ("real_interface = \"outside\"", "real_interface = \"dmz\"", "nat[0]: real_interface \"dmz\" is not a configured interface (configured: outside, inside)"),
            ("real_interface = \"outside\"", "real_interface = \"inside\"", "nat[0]: real_interface and mapped_interface are the same interface"),
            ("real_interface = \"outside\"\n", "", "nat[0]: type \"pat\" needs real_interface"),
            ("mapped = \"interface\"", "mapped = \"198.18.2.300\"", "nat[0]: mapped \"198.18.2.300\" is not an IPv4 address"),
            ("mapped = \"interface\"", "mapped = \"interface\"\nreal_port = 1", "nat[0]: protocol, real_port and mapped_port are for type \"static\" only"),
            ("mapped = \"198.18.1.10\"", "mapped = \"interface\"", "nat[1]: mapped = \"interface\" is for type \"pat\"; a static mapping needs an address"),
            ("mapped = \"198.18.1.10\"", "mapped = \"198.18.2.10\"", "nat[1]: real and mapped are both 198.18.2.10"),
            ("real = \"198.18.2.10\"", "real = \"0.0.0.0\"", "nat[1]: real 0.0.0.0 is not a unicast host address"),
            ("protocol = \"tcp\"\nreal_port", "protocol = \"icmp\"\nreal_port", "nat[1]: protocol \"icmp\" must be \"tcp\" or \"udp\""),
            ("protocol = \"tcp\"\nreal_port", "real_port", "nat[1]: real_port and mapped_port need protocol (tcp or udp)"),
            ("real_port = 8080", "real_port = 70000", "nat[1]: real_port 70000 is out of range 1..=65535"),
            ("mapped_port = 80\n", "", "nat[1]: protocol needs mapped_port too"),
            ("interface = \"inside\"\naction = \"permit\"", "interface = \"dmz\"\naction = \"permit\"", "access_rule[0]: interface \"dmz\" is not a configured interface (configured: outside, inside)"),
            ("action = \"permit\"", "action = \"allow\"", "access_rule[0]: action \"allow\" must be \"permit\" or \"deny\""),
            ("protocol = \"tcp\"\nsource", "protocol = \"gre\"\nsource", "access_rule[0]: protocol \"gre\" must be any, tcp, udp or icmp"),
            ("protocol = \"tcp\"\nsource", "protocol = \"icmp\"\nsource", "access_rule[0]: port needs protocol tcp or udp"),
            ("source = \"198.18.2.0/24\"", "source = \"198.18.2.1/24\"", "access_rule[0]: source \"198.18.2.1/24\" has host bits set; did you mean 198.18.2.0/24?"),
            ("destination = \"any\"", "destination = \"everywhere\"", "access_rule[0]: destination \"everywhere\": must be ADDRESS/PREFIX, e.g. 198.18.1.1/24"),
            ("port = \"1000-2000\"", "port = \"2000-1000\"", "access_rule[0]: port range \"2000-1000\" is empty (2000 is above 1000)"),
            ("port = \"1000-2000\"", "port = \"http\"", "access_rule[0]: port \"http\" must be a port 1..=65535 or a range \"LOW-HIGH\""),
            ("port = \"1000-2000\"", "port = 0", "access_rule[0]: port 0 must be a port 1..=65535 or a range \"LOW-HIGH\""),
            ("tcp = \"2h\"", "tcp = \"forever\"", "timeouts.tcp: \"forever\" is not a duration"),
            ("tcp = \"2h\"", "tcp = \"200h\"", "timeouts.tcp: 8days 8h is out of range 1s..=7days"),
            ("tcp_half_closed = 120", "tcp_half_closed = 0", "timeouts.tcp_half_closed: 0s is out of range 1s..=7days"),
            ("tcp_embryonic = \"10s\"", "tcp_embryonic = \"2h\"", "timeouts.tcp_embryonic: 2h is out of range 1s..=1h"),
            ("udp = \"1m\"", "udp = \"500ms\"", "timeouts.udp: 500ms is out of range 1s..=7days"),
            ("icmp = \"5s\"", "icmp = \"2h\"", "timeouts.icmp: 2h is out of range 1s..=1h"),
            ("replication_rate = 5000", "replication_rate = 0", "failover.replication_rate: 0 connections/s is out of range 1..=100000 (profile lab's [replication] connections_per_s)"),
            ("replication_rate = 5000", "replication_rate = 100001", "failover.replication_rate: 100001 connections/s is out of range 1..=100000"),
            ("profile = \"lab\"", "profile = \"lab\"\nstateful = false", "unit.stateful: false, but [[nat]], [[access_rule]], security_level, [timeouts] need stateful mode; remove them or set stateful = true"),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "GOOD contains `{from}`");
            let text = GOOD.replacen(from, to, 1);
            let e = check(&text).expect_err(to);
            assert!(
                e.lines().any(|l| l.trim().starts_with(want)),
                "after `{from}` → `{to}`:\n want {want}\n got\n{e}"
            );
        }
    }

    #[test]
    fn stateless_unit_refuses_stateful_only_keys() {
        let text = "[unit]\nname = \"a\"\nprofile = \"lab\"\n\n[[interface]]\nname = \"outside\"\ndevice = \"o0\"\naddress = \"198.18.1.1/24\"\nasr_group = 2\n\n[failover]\nrole = \"primary\"\nlink_device = \"fo0\"\nreplication_http = true\n";
        let e = check(text).unwrap_err();
        assert!(
            e.contains("failover: replication_http and replication_rate need stateful mode"),
            "{e}"
        );
        assert!(
            e.contains("interface: asr_group needs stateful mode"),
            "{e}"
        );
    }

    #[test]
    fn unknown_stateful_keys_are_parse_errors_naming_the_key() {
        let text = GOOD.replacen("action = \"deny\"", "action = \"deny\"\nlog = true", 1);
        let e = check(&text).unwrap_err();
        assert!(e.contains("access_rule[1].log"), "{e}");
        let text = GOOD.replacen("icmp = \"5s\"", "icmp = \"5s\"\nsctp = 1", 1);
        let e = check(&text).unwrap_err();
        assert!(e.contains("timeouts.sctp"), "{e}");
        let text = GOOD.replacen("type = \"pat\"", "type = \"pat\"\nreal_if = 1", 1);
        let e = check(&text).unwrap_err();
        assert!(e.contains("nat[0].real_if"), "{e}");
    }

    #[test]
    fn example_stateful_pair_is_valid() {
        for text in [
            include_str!("../examples/stateful-pair.toml"),
            include_str!("../examples/failover-primary.toml"),
        ] {
            let c = check(text).unwrap_or_else(|e| panic!("{e}"));
            let s = c.stateful.expect("the examples are stateful");
            assert!(!s.nat.is_empty());
        }
    }
}
