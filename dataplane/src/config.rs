//! Data-path configuration (interfaces, static routes, table sizes, ARP
//! timers, run loop) and its validation, done once before any worker starts.

use std::net::Ipv4Addr;
use std::time::Duration;

/// One interface of the unit. Its index in [`DataplaneConfig::interfaces`]
/// is the backend `PortId` of every worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    pub mac: [u8; 6],
    /// The address the unit owns on this interface (answered for in ARP and
    /// ICMP echo, source of ICMP errors sent out of it).
    pub addr: Ipv4Addr,
    /// Prefix length of the connected subnet; a connected route is added for it.
    pub prefix_len: u8,
    /// IP MTU: the largest IPv4 datagram (header included) sent out of it.
    pub mtu: u16,
}

/// A static route. `interface` is an index into the interfaces (the backend `PortId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    /// Gateway; `None` means the prefix is on-link on `interface`.
    pub next_hop: Option<Ipv4Addr>,
    pub interface: usize,
}

/// Capacities, per worker, fixed at start (STYLE habit 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSizes {
    /// ARP entries. Full-table policy: evict the oldest stale entry, else refuse
    /// (counted `arp_table_full`).
    pub arp: usize,
    /// Routes, connected routes included.
    pub routes: usize,
    /// Frames held while their next hop is being resolved, all next hops together.
    pub arp_pending: usize,
    /// Frames held per next hop.
    pub arp_pending_per_hop: usize,
}

impl Default for TableSizes {
    fn default() -> Self {
        TableSizes {
            arp: 1024,
            routes: 256,
            arp_pending: 256,
            arp_pending_per_hop: 16,
        }
    }
}

/// ARP timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpTimers {
    /// How long a confirmed entry stays reachable; after that it is stale:
    /// still used, but its next use starts a unicast probe.
    pub reachable: Duration,
    /// Interval between ARP requests for one next hop (also the rate limit
    /// of requests per next hop).
    pub retry: Duration,
    /// Requests sent after the first one before giving up: an unresolved
    /// next hop is abandoned `retry` after its last retry, its held frames
    /// freed (counted `drop_arp_unresolved`); a stale entry whose probes all
    /// went unanswered is removed.
    pub max_retries: u32,
    /// Gratuitous ARP announcements per owned address in one burst.
    pub garp_count: u32,
    /// Interval between the announcements of a burst (the first is immediate).
    pub garp_interval: Duration,
}

impl Default for ArpTimers {
    fn default() -> Self {
        // Linux defaults: base_reachable_time 30 s, retrans_time 1 s,
        // mcast_solicit 3.
        ArpTimers {
            reachable: Duration::from_secs(30),
            retry: Duration::from_secs(1),
            max_retries: 2,
            garp_count: 3,
            garp_interval: Duration::from_secs(1),
        }
    }
}

/// What a worker does when its queues are empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Never sleep (dedicated appliance cores).
    BusyPoll,
    /// Spin for `spin` after the last received frame, then block in the
    /// backend for at most `block` (or until the next timer) at a time. Lets
    /// units, a generator and a sink share a small machine.
    SpinThenBlock { spin: Duration, block: Duration },
}

/// The per-worker batch loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Frames per receive burst per port (1..=[`MAX_BATCH`]); also the TX
    /// batch size per port.
    pub batch: usize,
    pub idle: IdleStrategy,
    /// Longest time a partial TX batch is held back while full receive
    /// bursts keep arriving. When the receive queues come up short the TX
    /// batches are flushed at once, so at low load this adds no latency.
    pub tx_flush: Duration,
}

/// Largest accepted [`RunConfig::batch`].
pub const MAX_BATCH: usize = 1024;

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            batch: 64,
            idle: IdleStrategy::SpinThenBlock {
                spin: Duration::from_micros(50),
                block: Duration::from_millis(1),
            },
            tx_flush: Duration::from_micros(100),
        }
    }
}

/// Everything a worker needs; every worker gets the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    pub interfaces: Vec<InterfaceConfig>,
    pub routes: Vec<RouteConfig>,
    pub tables: TableSizes,
    pub arp: ArpTimers,
    pub run: RunConfig,
    /// The stateful stage (connection tracking, NAT, SAs; issue 4). `None`:
    /// the stateless router of issue 2, unchanged.
    pub state: Option<tandem_state::StateConfig>,
    /// Replication of the stateful tables to the mate (needs `state`).
    /// `None`: records are not produced and inbound frames not accepted.
    pub sync: Option<SyncSettings>,
}

/// How each worker batches its replication records into state-link frames
/// (see `crate::sync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    /// Bytes of one state-link frame (header and records): the state
    /// device's MTU minus the AEAD and link framing overhead.
    pub frame_size: usize,
    /// A frame with records is sent at the latest this long after its
    /// first record (replication lag bound), full or not.
    pub flush: Duration,
    /// Frame buffers preallocated per worker, shared by its outbound frames
    /// (in flight to the replication thread or waiting in its retransmit
    /// ring) and its inbound frames; when none is free, records are counted
    /// `sync_overflow` and a bulk sync is asked for.
    pub buffers_per_worker: usize,
    /// Session replication rate limit for bulk sync, in records per second
    /// for the whole unit (split evenly over the workers); the hardware
    /// profile's `connections_per_s`. 0: unlimited. Live records are never
    /// deferred (a deferred create is a connection lost at failover).
    pub bulk_rate: u64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            frame_size: 1400,
            flush: Duration::from_micros(100),
            buffers_per_worker: 1024,
            bulk_rate: 0,
        }
    }
}

/// A configuration value that cannot work; `key` names it the way the
/// config file does (`interfaces[1].prefix_len`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

pub(crate) fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

/// Is `a` a unicast address a unit may own or route to (not 0/8, loopback,
/// multicast, reserved or limited broadcast)?
pub(crate) fn is_unicast(a: u32) -> bool {
    let first = a >> 24;
    first != 0 && first != 127 && first < 224
}

impl DataplaneConfig {
    /// Check everything a worker relies on; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interfaces.is_empty() {
            return Err(err("interfaces", "at least one interface is required"));
        }
        if self.interfaces.len() > usize::from(u16::MAX) {
            return Err(err("interfaces", "more than 65535 interfaces"));
        }
        for (i, ifc) in self.interfaces.iter().enumerate() {
            let key = |field: &str| format!("interfaces[{i}] ({}).{field}", ifc.name);
            if ifc.name.is_empty() {
                return Err(err(format!("interfaces[{i}].name"), "must not be empty"));
            }
            if let Some(j) = self.interfaces[..i].iter().position(|o| o.name == ifc.name) {
                return Err(err(key("name"), format!("duplicate of interfaces[{j}]")));
            }
            if ifc.prefix_len > 32 {
                return Err(err(
                    key("prefix_len"),
                    format!("{} is out of range 0..=32", ifc.prefix_len),
                ));
            }
            if !is_unicast(u32::from(ifc.addr)) {
                return Err(err(
                    key("addr"),
                    format!("{} is not a unicast address", ifc.addr),
                ));
            }
            if ifc.mac[0] & 1 != 0 || ifc.mac == [0; 6] {
                return Err(err(
                    key("mac"),
                    format!("{} is not a unicast MAC address", crate::fmt_mac(ifc.mac)),
                ));
            }
            // RFC 791: every internet module must handle 68-octet datagrams.
            if ifc.mtu < 68 {
                return Err(err(
                    key("mtu"),
                    format!("{} is below the IPv4 minimum of 68", ifc.mtu),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            if r.prefix_len > 32 {
                return Err(err(
                    key("prefix_len"),
                    format!("{} is out of range 0..=32", r.prefix_len),
                ));
            }
            let p = u32::from(r.prefix);
            if p & !mask(r.prefix_len) != 0 {
                return Err(err(
                    key("prefix"),
                    format!(
                        "{}/{} has host bits set (did you mean {}/{}?)",
                        r.prefix,
                        r.prefix_len,
                        Ipv4Addr::from(p & mask(r.prefix_len)),
                        r.prefix_len
                    ),
                ));
            }
            let Some(ifc) = self.interfaces.get(r.interface) else {
                return Err(err(
                    key("interface"),
                    format!(
                        "{} does not exist ({} interfaces configured)",
                        r.interface,
                        self.interfaces.len()
                    ),
                ));
            };
            if let Some(nh) = r.next_hop {
                let m = mask(ifc.prefix_len);
                let nhu = u32::from(nh);
                if nhu & m != u32::from(ifc.addr) & m || !is_unicast(nhu) {
                    return Err(err(
                        key("next_hop"),
                        format!(
                            "{nh} is not on the subnet {}/{} of interface {}",
                            Ipv4Addr::from(u32::from(ifc.addr) & m),
                            ifc.prefix_len,
                            ifc.name
                        ),
                    ));
                }
                if nh == ifc.addr {
                    return Err(err(
                        key("next_hop"),
                        format!("{nh} is the unit's own address on {}", ifc.name),
                    ));
                }
            }
            if let Some(j) = self.routes[..i]
                .iter()
                .position(|o| o.prefix == r.prefix && o.prefix_len == r.prefix_len)
            {
                return Err(err(
                    key("prefix"),
                    format!(
                        "{}/{} is already routed by routes[{j}]",
                        r.prefix, r.prefix_len
                    ),
                ));
            }
        }
        let t = &self.tables;
        for (name, v) in [
            ("arp", t.arp),
            ("routes", t.routes),
            ("arp_pending", t.arp_pending),
            ("arp_pending_per_hop", t.arp_pending_per_hop),
        ] {
            if v == 0 {
                return Err(err(format!("tables.{name}"), "must be at least 1"));
            }
            if v >= u32::MAX as usize / 4 {
                return Err(err(format!("tables.{name}"), format!("{v} is too large")));
            }
        }
        if t.arp_pending_per_hop > t.arp_pending {
            return Err(err(
                "tables.arp_pending_per_hop",
                format!(
                    "{} is larger than tables.arp_pending ({})",
                    t.arp_pending_per_hop, t.arp_pending
                ),
            ));
        }
        let needed = self.interfaces.len() + self.routes.len();
        if needed > t.routes {
            return Err(err(
                "tables.routes",
                format!(
                    "{} is too small for {} static and {} connected routes",
                    t.routes,
                    self.routes.len(),
                    self.interfaces.len()
                ),
            ));
        }
        let a = &self.arp;
        if a.retry.is_zero() {
            return Err(err("arp.retry", "must be greater than zero"));
        }
        if a.reachable.is_zero() {
            return Err(err("arp.reachable", "must be greater than zero"));
        }
        if a.garp_count > 1 && a.garp_interval.is_zero() {
            return Err(err(
                "arp.garp_interval",
                "must be greater than zero when arp.garp_count is above 1",
            ));
        }
        let r = &self.run;
        if r.batch == 0 || r.batch > MAX_BATCH {
            return Err(err(
                "run.batch",
                format!("{} is out of range 1..={MAX_BATCH}", r.batch),
            ));
        }
        if let IdleStrategy::SpinThenBlock { block, .. } = r.idle {
            if block.is_zero() {
                return Err(err("run.idle.block", "must be greater than zero"));
            }
        }
        self.validate_stateful()
    }

    /// `state` (delegated to `StateConfig::validate`, keys prefixed
    /// `state.`) and `sync`.
    fn validate_stateful(&self) -> Result<(), ConfigError> {
        if let Some(st) = &self.state {
            st.validate().map_err(|e| err("state", e.to_string()))?;
            if !st.interfaces.is_empty() && st.interfaces.len() != self.interfaces.len() {
                return Err(err(
                    "state.interfaces",
                    format!(
                        "{} entries, but {} interfaces are configured (one policy per interface, same order)",
                        st.interfaces.len(),
                        self.interfaces.len()
                    ),
                ));
            }
        }
        if let Some(sy) = &self.sync {
            if self.state.is_none() {
                return Err(err("sync", "replication needs the stateful stage (state)"));
            }
            let min = tandem_sync::wire::MIN_FRAME_LEN;
            let max = tandem_sync::wire::MAX_FRAME_LEN;
            if sy.frame_size < min || sy.frame_size > max {
                return Err(err(
                    "sync.frame_size",
                    format!("{} is out of range {min}..={max}", sy.frame_size),
                ));
            }
            if sy.flush.is_zero() {
                return Err(err("sync.flush", "must be greater than zero"));
            }
            if sy.buffers_per_worker < 4 {
                return Err(err(
                    "sync.buffers_per_worker",
                    format!("{} is below the minimum of 4", sy.buffers_per_worker),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> DataplaneConfig {
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
    fn errors_name_the_key_and_the_problem() {
        type Case = (fn(&mut DataplaneConfig), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.interfaces.clear(), "interfaces: at least one"),
            (
                |c| c.interfaces[0].prefix_len = 33,
                "interfaces[0] (outside).prefix_len: 33 is out of range",
            ),
            (
                |c| c.interfaces[0].mtu = 60,
                "interfaces[0] (outside).mtu: 60 is below",
            ),
            (
                |c| c.interfaces[0].mac = [1, 0, 0, 0, 0, 0],
                "interfaces[0] (outside).mac: 01:00:00:00:00:00 is not a unicast",
            ),
            (
                |c| {
                    c.routes.push(RouteConfig {
                        prefix: Ipv4Addr::new(10, 0, 0, 1),
                        prefix_len: 8,
                        next_hop: None,
                        interface: 0,
                    })
                },
                "routes[0].prefix: 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)",
            ),
            (
                |c| {
                    c.routes.push(RouteConfig {
                        prefix: Ipv4Addr::new(10, 0, 0, 0),
                        prefix_len: 8,
                        next_hop: None,
                        interface: 3,
                    })
                },
                "routes[0].interface: 3 does not exist",
            ),
            (
                |c| {
                    c.routes.push(RouteConfig {
                        prefix: Ipv4Addr::new(10, 0, 0, 0),
                        prefix_len: 8,
                        next_hop: Some(Ipv4Addr::new(198, 19, 0, 1)),
                        interface: 0,
                    })
                },
                "routes[0].next_hop: 198.19.0.1 is not on the subnet 198.18.0.0/24 of interface outside",
            ),
            (|c| c.tables.arp = 0, "tables.arp: must be at least 1"),
            (
                |c| {
                    c.routes.push(RouteConfig {
                        prefix: Ipv4Addr::new(10, 0, 0, 0),
                        prefix_len: 8,
                        next_hop: None,
                        interface: 0,
                    });
                    c.tables.routes = 1;
                },
                "tables.routes: 1 is too small for 1 static and 1 connected routes",
            ),
            (|c| c.run.batch = 0, "run.batch: 0 is out of range"),
            (|c| c.arp.retry = Duration::ZERO, "arp.retry: must be"),
        ];
        for (mutate, want) in cases {
            let mut c = base();
            mutate(&mut c);
            let got = c.validate().expect_err(want).to_string();
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
        base().validate().unwrap();
    }
}
