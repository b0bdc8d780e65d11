//! Unit configuration: the TOML schema of one tandemd config file, its pure
//! validation against a hardware profile, and loading (file → profile →
//! validated [`UnitConfig`]).
//!
//! Nothing here touches an interface: [`ConfigFile::validate`] is pure, so
//! tandemd validates the whole file before it opens anything and a bad config
//! never half-starts. Validation collects every problem; each names its key
//! (`interface[1] "inside": address "198.18.2.1/33": prefix length must be
//! 0..=32`). Whether devices exist is checked by tandemd at start.
//!
//! # Keys
//!
//! ```toml
//! [unit]
//! name = "gw1"                    # required; 1..=32 of [A-Za-z0-9._-]; names the default socket
//! profile = "lab"                 # required; a name in hw-profiles/ (searched: --profile-dir,
//!                                 #   $TANDEM_PROFILE_DIR, ./hw-profiles, /etc/tandem/hw-profiles,
//!                                 #   then the built-in copies) or a path (contains "/" or ends
//!                                 #   in ".toml"; relative to this file's directory)
//! backend = "auto"                # auto | afxdp | io_uring; auto tries AF_XDP, then io_uring
//! xdp_mode = "auto"               # auto | native | generic (AF_XDP only)
//! zero_copy = "auto"              # auto | required | off (AF_XDP only; veth is copy mode)
//! control_socket = "/run/tandem/gw1.sock"   # default /run/tandem/<name>.sock; ≤ 107 bytes
//! realtime_priority = 0           # 0..=99; > 0 runs the workers, the HA and the replication
//!                                 #   thread at SCHED_FIFO this priority (needs CAP_SYS_NICE; refused with
//!                                 #   a busy_poll profile); 0/absent: time-sharing
//! cpu_latency_us = 0              # optional, 0..=1000000 or "off"; holds a PM QoS CPU wake-up
//!                                 #   latency request (/dev/cpu_dma_latency) while tandemd runs; 0:
//!                                 #   idle CPUs poll instead of halting. Absent: the profile's
//!                                 #   run.cpu_latency_us (appliance profiles: 0; lab: none)
//!
//! [[interface]]                   # one per data interface, at most the profile's interfaces.max
//! name = "outside"                # required; the seeds' nameif, unique
//! device = "out0"                 # required; Linux device (≤ 15 bytes), unique
//! address = "198.18.1.1/24"       # required; ADDRESS/PREFIX, prefix 1..=32; subnets must not overlap
//! mtu = 1500                      # optional, default 1500; 68..=9216 and within the profile's frames
//!
//! [[route]]                       # static routes; connected routes come from the interfaces
//! destination = "0.0.0.0/0"       # required; PREFIX/LEN without host bits, unique
//! gateway = "198.18.1.254"        # optional for connected routes; must be on an interface subnet
//! interface = "outside"           # optional when the gateway is on a connected subnet
//!
//! [arp]                           # optional section; defaults shown
//! gratuitous_count = 3            # 0..=100 gratuitous ARPs per owned address at start
//! gratuitous_interval_ms = 100    # 1..=60000 between them
//! reachable_s = 300               # 1..=86400: an entry is refreshed after this long
//! retry_ms = 1000                 # 10..=60000 between requests for an unresolved next hop
//! max_retries = 3                 # 1..=10 requests before the parked packets are dropped
//!
//! [failover]                      # optional: Active/Standby failover; keys in
//! role = "primary"                #   [`crate::failover`], with the per-interface
//! link_device = "fo0"             #   standby_address / virtual_mac_* / monitored
//!
//! [offload]                       # flow offload (AF_XDP, stateful mode; see OffloadSection)
//! enable = false                  # default off, as on the appliance
//! flows = 65536                   # fast-path entries, 1024..=4194304
//! ```
//!
//! The commented examples `ctrl/examples/unit.toml` (standalone) and
//! `ctrl/examples/failover-primary.toml` show the same keys.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::failover::{FailoverSection, FailoverSettings, InterfaceFailover};
use crate::problem::{parse_toml, ParseFailure, Problems};
use crate::profile::{HwProfile, ProfileError, ProfileSearch, ProfileSource};

/// Longest Unix socket path (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Longest Linux interface name (IFNAMSIZ − 1).
pub const MAX_DEVICE_NAME: usize = 15;

/// Bytes a frame slot loses before the Ethernet header: the kernel keeps
/// XDP_PACKET_HEADROOM (256) in front of every AF_XDP frame in copy mode.
pub const FRAME_HEADROOM: u32 = 256;

/// Ethernet header plus one 802.1Q tag.
pub const L2_OVERHEAD: u32 = 18;

/// Where the control socket goes when `unit.control_socket` is not set.
pub fn default_socket(unit: &str) -> PathBuf {
    PathBuf::from(format!("/run/tandem/{unit}.sock"))
}

/// Which packet I/O backend to open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// AF_XDP, falling back to io_uring (logged with the reason).
    #[default]
    Auto,
    Afxdp,
    IoUring,
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Afxdp => "afxdp",
            BackendChoice::IoUring => "io_uring",
        })
    }
}

/// XDP attach mode (AF_XDP only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpModeChoice {
    /// Native (driver) mode where the driver has it, generic otherwise.
    #[default]
    Auto,
    Native,
    Generic,
}

/// AF_XDP zero-copy bind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroCopyChoice {
    /// Zero-copy where the driver allows it, copy mode otherwise.
    #[default]
    Auto,
    Required,
    Off,
}

/// The file as written (serde schema). Validate it with
/// [`ConfigFile::validate`] before using any of it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub unit: UnitSection,
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<InterfaceSection>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
    #[serde(default)]
    pub arp: ArpSection,
    /// Active/Standby failover (see [`crate::failover`]); absent: standalone.
    #[serde(default)]
    pub failover: Option<FailoverSection>,
    // Stateful keys (issue 4), validated by crate::stateful_config.
    #[serde(default, rename = "nat")]
    pub nat: Vec<crate::stateful_config::NatSection>,
    #[serde(default, rename = "access_rule")]
    pub access_rules: Vec<crate::stateful_config::AccessRuleSection>,
    #[serde(default)]
    pub timeouts: Option<crate::stateful_config::TimeoutsSection>,
    /// Flow offload (see [`OffloadSection`]).
    #[serde(default)]
    pub offload: Option<OffloadSection>,
}

/// `[offload]`: the appliance's flow offload. Established TCP connections
/// and UDP flows are forwarded by tandem's XDP program from a table the
/// workers fill (translation, checksums, TTL, MACs), without waking a
/// worker; first packets, SYN/FIN/RST, fragments, IP options, ICMP and
/// everything the table does not hold still go through the workers. AF_XDP
/// backend and stateful mode only. Replicated to the mate like every
/// section but `[unit]` and `[failover]`, so both units have the same flow
/// offload mode, as the seeds require of a failover pair.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadSection {
    /// Off by default, as on the appliance.
    #[serde(default)]
    pub enable: bool,
    /// Fast-path entries (one per direction of a connection).
    #[serde(default)]
    pub flows: Option<u32>,
}

/// Default `[offload] flows`.
pub const DEFAULT_OFFLOAD_FLOWS: u32 = 65_536;
/// Range of `[offload] flows` (the kernel holds the table; 4 Mi entries is
/// about half a gigabyte).
pub const OFFLOAD_FLOWS: std::ops::RangeInclusive<u32> = 1024..=4_194_304;

/// Validated `[offload]` when enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadSettings {
    pub flows: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSection {
    pub name: String,
    pub profile: String,
    #[serde(default)]
    pub backend: BackendChoice,
    #[serde(default)]
    pub xdp_mode: XdpModeChoice,
    #[serde(default)]
    pub zero_copy: ZeroCopyChoice,
    #[serde(default)]
    pub control_socket: Option<String>,
    /// Stateful mode on/off (default: on when a stateful key is configured;
    /// see [`crate::stateful_config`]).
    #[serde(default)]
    pub stateful: Option<bool>,
    /// SCHED_FIFO priority of the packet threads, 0..=99 (u32 for a range
    /// message); 0 or absent: time-sharing.
    #[serde(default)]
    pub realtime_priority: Option<u32>,
    /// PM QoS CPU wake-up latency held while running, µs, or `"off"`;
    /// absent: the profile's `run.cpu_latency_us`.
    #[serde(default)]
    pub cpu_latency_us: Option<CpuLatencySetting>,
}

/// `unit.cpu_latency_us` as written: a latency in µs, or a word (`"off"`,
/// to hold no request where the profile would).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CpuLatencySetting {
    Us(u32),
    Word(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    pub name: String,
    pub device: String,
    pub address: String,
    /// u32 so that an out-of-range value gets a range message, not a type error.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Failover only: the standby unit's address on this subnet.
    #[serde(default)]
    pub standby_address: Option<String>,
    /// Failover only: virtual MACs (both or neither).
    #[serde(default)]
    pub virtual_mac_active: Option<String>,
    #[serde(default)]
    pub virtual_mac_standby: Option<String>,
    /// Failover only: counts for the interface policy (default true).
    #[serde(default)]
    pub monitored: Option<bool>,
    /// Stateful: 0..=100 (u32 for a range message), default 0.
    #[serde(default)]
    pub security_level: Option<u32>,
    /// Stateful: ASR group 1..=32.
    #[serde(default)]
    pub asr_group: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub destination: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub interface: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArpSection {
    pub gratuitous_count: u32,
    pub gratuitous_interval_ms: u64,
    pub reachable_s: u64,
    pub retry_ms: u64,
    pub max_retries: u32,
}

impl Default for ArpSection {
    fn default() -> Self {
        ArpSection {
            gratuitous_count: 3,
            gratuitous_interval_ms: 100,
            reachable_s: 300,
            retry_ms: 1000,
            max_retries: 3,
        }
    }
}

/// A validated unit configuration: every value typed and checked, every
/// cross-reference resolved (routes point at interface indices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitConfig {
    pub unit: Unit,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub arp: ArpSettings,
    /// `[failover]`, validated; `None` runs the unit standalone.
    pub failover: Option<FailoverSettings>,
    /// Stateful settings; `None`: the stateless router of issue 2.
    pub stateful: Option<crate::stateful_config::StatefulSettings>,
    /// `[offload]` when enabled.
    pub offload: Option<OffloadSettings>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    /// The profile as named in the file (a name or a path).
    pub profile: String,
    pub backend: BackendChoice,
    pub xdp_mode: XdpModeChoice,
    pub zero_copy: ZeroCopyChoice,
    pub control_socket: PathBuf,
    /// SCHED_FIFO priority of the workers and the replication thread
    /// (1..=[`MAX_REALTIME_PRIORITY`]); 0: time-sharing, as before.
    pub realtime_priority: u8,
    /// PM QoS CPU wake-up latency request held while tandemd runs, µs.
    pub cpu_latency_us: Option<u32>,
    /// Where `cpu_latency_us` came from: the profile's default (true) or
    /// the unit's own key.
    pub cpu_latency_from_profile: bool,
}

/// Highest `unit.realtime_priority` (Linux SCHED_FIFO priorities are 1..=99).
pub const MAX_REALTIME_PRIORITY: u32 = 99;

/// Highest `unit.cpu_latency_us` (1 s; beyond it the request means nothing).
pub const MAX_CPU_LATENCY_US: u32 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub device: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u16,
    /// Failover settings (defaults when standalone).
    pub failover: InterfaceFailover,
}

impl Interface {
    /// The connected subnet's network address.
    pub fn network(&self) -> Ipv4Addr {
        network(self.address, self.prefix_len)
    }

    /// Whether `ip` is on this interface's connected subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        network(ip, self.prefix_len) == self.network()
    }
}

/// A static route; `interface` indexes [`UnitConfig::interfaces`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub interface: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpSettings {
    pub gratuitous_count: u32,
    pub gratuitous_interval: Duration,
    pub reachable: Duration,
    pub retry: Duration,
    pub max_retries: u32,
}

/// The netmask of a prefix length (0..=32).
pub fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

/// `ip` with its host bits cleared.
pub fn network(ip: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & mask(prefix_len))
}

/// Parse `ADDRESS/PREFIX`. The error is the message part of a problem.
pub fn parse_prefix(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let Some((a, l)) = s.split_once('/') else {
        return Err("must be ADDRESS/PREFIX, e.g. 198.18.1.1/24".to_string());
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("\"{a}\" is not an IPv4 address"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| "prefix length must be 0..=32".to_string())?;
    Ok((addr, len))
}

/// Errors loading a config; each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config {origin}: {failure}")]
    Parse {
        origin: String,
        failure: ParseFailure,
    },
    #[error("config {origin}: unit.profile: {source}")]
    Profile {
        origin: String,
        #[source]
        source: ProfileError,
    },
    #[error("config {origin} is invalid:\n{problems}")]
    Invalid { origin: String, problems: Problems },
}

/// A config file with its profile, both validated.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: UnitConfig,
    pub profile: HwProfile,
    pub profile_source: ProfileSource,
}

/// Read, parse and validate a config file and the profile it names.
pub fn load(path: &Path, search: &ProfileSearch) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    let file = ConfigFile::parse(&text, &origin)?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty());
    let (profile, profile_source) =
        HwProfile::resolve(&file.unit.profile, base, search).map_err(|source| {
            ConfigError::Profile {
                origin: origin.clone(),
                source,
            }
        })?;
    let config = file
        .validate(&profile)
        .map_err(|problems| ConfigError::Invalid {
            origin: origin.clone(),
            problems,
        })?;
    Ok(Loaded {
        path: path.to_path_buf(),
        config,
        profile,
        profile_source,
    })
}

fn label(kind: &str, i: usize, name: &str) -> String {
    if name.is_empty() {
        format!("{kind}[{i}]")
    } else {
        format!("{kind}[{i}] \"{name}\"")
    }
}

fn valid_word(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn in_range(p: &mut Problems, key: &str, v: u64, lo: u64, hi: u64) {
    if v < lo || v > hi {
        p.push(key, format!("{v} is out of range {lo}..={hi}"));
    }
}

impl ConfigFile {
    /// Parse config text (syntax, types, unknown keys); `origin` names it.
    pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
        parse_toml(text).map_err(|failure| ConfigError::Parse {
            origin: origin.to_string(),
            failure,
        })
    }

    /// Check everything that can be checked without the machine, against
    /// `profile` (interface count, MTU vs frame size, route table capacity).
    pub fn validate(&self, profile: &HwProfile) -> Result<UnitConfig, Problems> {
        let mut p = Problems::default();
        let unit = self.validate_unit(profile, &mut p);
        let interfaces = self.validate_interfaces(profile, &mut p);
        let routes = self.validate_routes(profile, &interfaces, &mut p);
        let arp = self.validate_arp(&mut p);
        let devices: Vec<&str> = self.interfaces.iter().map(|i| i.device.as_str()).collect();
        let failover = self
            .failover
            .as_ref()
            .and_then(|f| f.validate(profile, &devices, &mut p));
        let stateful = crate::stateful_config::validate(self, profile, &mut p);
        let offload = self.validate_offload(&unit, stateful.is_some(), &mut p);
        if unit.realtime_priority > 0 && profile.run.idle == crate::profile::Idle::BusyPoll {
            // A busy-polling worker never blocks: at SCHED_FIFO it would keep
            // its core from the kernel's own threads, and RT throttling
            // (sched_rt_runtime_us) would then stall it for the rest of
            // every period.
            p.push(
                "unit.realtime_priority",
                format!(
                    "{} needs workers that block when idle, but profile {} has run.idle = \
                     \"busy_poll\" (a busy-polling worker at SCHED_FIFO never gives its core \
                     back); use 0 or a spin_then_block profile",
                    unit.realtime_priority,
                    profile.name()
                ),
            );
        }
        p.into_result(UnitConfig {
            unit,
            interfaces: interfaces.into_iter().flatten().collect(),
            routes,
            arp,
            failover,
            stateful,
            offload,
        })
    }

    fn validate_offload(
        &self,
        unit: &Unit,
        stateful: bool,
        p: &mut Problems,
    ) -> Option<OffloadSettings> {
        let o = self.offload.as_ref()?;
        let flows = o.flows.unwrap_or(DEFAULT_OFFLOAD_FLOWS);
        if !OFFLOAD_FLOWS.contains(&flows) {
            p.push(
                "offload.flows",
                format!(
                    "{flows} is out of range {}..={}",
                    OFFLOAD_FLOWS.start(),
                    OFFLOAD_FLOWS.end()
                ),
            );
        }
        if !o.enable {
            return None;
        }
        if !stateful {
            p.push(
                "offload.enable",
                "flow offload needs stateful mode (see [unit] stateful): it offloads connections",
            );
        }
        if unit.backend == BackendChoice::IoUring {
            p.push(
                "offload.enable",
                "flow offload needs the AF_XDP backend (unit.backend = \"afxdp\" or \"auto\"): \
                 its fast path is tandem's XDP program",
            );
        }
        Some(OffloadSettings { flows })
    }

    fn validate_unit(&self, profile: &HwProfile, p: &mut Problems) -> Unit {
        let u = &self.unit;
        if u.name.is_empty() || u.name.len() > 32 || !valid_word(&u.name) {
            p.push(
                "unit.name",
                format!(
                    "\"{}\" must be 1..=32 characters of letters, digits, '.', '_' or '-'",
                    u.name
                ),
            );
        }
        if u.profile.trim().is_empty() {
            p.push(
                "unit.profile",
                "must name a hardware profile or a profile file",
            );
        }
        let socket = match &u.control_socket {
            Some(s) => PathBuf::from(s),
            None => default_socket(&u.name),
        };
        let len = socket.as_os_str().len();
        if len == 0 {
            p.push("unit.control_socket", "must not be empty");
        } else if len > MAX_SOCKET_PATH {
            p.push(
                "unit.control_socket",
                format!(
                    "\"{}\" is {len} bytes; a Unix socket path may have at most {MAX_SOCKET_PATH}",
                    socket.display()
                ),
            );
        }
        let realtime_priority = u.realtime_priority.unwrap_or(0);
        in_range(
            p,
            "unit.realtime_priority",
            u64::from(realtime_priority),
            0,
            u64::from(MAX_REALTIME_PRIORITY),
        );
        // The unit's key wins; absent, the profile's default (appliance
        // profiles keep idle CPUs polling, as the appliances' data planes
        // never sleep); "off" holds no request even then.
        let (cpu_latency_us, cpu_latency_from_profile) = match &u.cpu_latency_us {
            Some(CpuLatencySetting::Us(us)) => {
                in_range(
                    p,
                    "unit.cpu_latency_us",
                    u64::from(*us),
                    0,
                    u64::from(MAX_CPU_LATENCY_US),
                );
                (Some(*us), false)
            }
            Some(CpuLatencySetting::Word(w)) if w == "off" => (None, false),
            Some(CpuLatencySetting::Word(w)) => {
                p.push(
                    "unit.cpu_latency_us",
                    format!(
                        "{w:?} is neither a latency in µs (0..={MAX_CPU_LATENCY_US}) nor \"off\""
                    ),
                );
                (None, false)
            }
            None => (
                profile.run.cpu_latency_us,
                profile.run.cpu_latency_us.is_some(),
            ),
        };
        Unit {
            name: u.name.clone(),
            profile: u.profile.clone(),
            backend: u.backend,
            xdp_mode: u.xdp_mode,
            zero_copy: u.zero_copy,
            control_socket: socket,
            realtime_priority: u8::try_from(realtime_priority.min(MAX_REALTIME_PRIORITY))
                .unwrap_or(0),
            cpu_latency_us,
            cpu_latency_from_profile,
        }
    }

    /// One entry per `[[interface]]`, `None` where it was invalid (so later
    /// checks keep their indices).
    fn validate_interfaces(&self, profile: &HwProfile, p: &mut Problems) -> Vec<Option<Interface>> {
        let max = profile.interfaces.max as usize;
        if self.interfaces.is_empty() {
            p.push("interface", "at least one [[interface]] is required");
        } else if self.interfaces.len() > max {
            p.push(
                "interface",
                format!(
                    "{} interfaces configured but profile {} allows at most {max}",
                    self.interfaces.len(),
                    profile.name()
                ),
            );
        }
        let frame = profile.frames.frame_size;
        let max_mtu = frame.saturating_sub(FRAME_HEADROOM + L2_OVERHEAD).min(9216);
        let mut out: Vec<Option<Interface>> = Vec::with_capacity(self.interfaces.len());
        for (i, s) in self.interfaces.iter().enumerate() {
            let key = label("interface", i, &s.name);
            let before = p.len();
            if s.name.is_empty() || s.name.len() > 48 || !valid_word(&s.name) {
                p.push(
                    &key,
                    "name must be 1..=48 characters of letters, digits, '.', '_' or '-'",
                );
            }
            if let Some(j) = self.interfaces[..i].iter().position(|o| o.name == s.name) {
                p.push(&key, format!("name is already used by interface[{j}]"));
            }
            let dev = &s.device;
            if dev.is_empty()
                || dev.len() > MAX_DEVICE_NAME
                || dev == "."
                || dev == ".."
                || dev
                    .chars()
                    .any(|c| c == '/' || c == ':' || c.is_whitespace())
            {
                p.push(
                    &key,
                    format!(
                        "device \"{dev}\" is not a Linux interface name (1..={MAX_DEVICE_NAME} bytes, no '/', ':' or spaces)"
                    ),
                );
            }
            if let Some(j) = self.interfaces[..i].iter().position(|o| o.device == *dev) {
                p.push(
                    &key,
                    format!(
                        "device \"{dev}\" is already used by {}",
                        label("interface", j, &self.interfaces[j].name)
                    ),
                );
            }
            let addr = match parse_prefix(&s.address) {
                Err(e) => {
                    p.push(&key, format!("address \"{}\": {e}", s.address));
                    None
                }
                Ok((a, len)) => {
                    let bad = if len == 0 {
                        Some("prefix length 0 would make every address connected; use a route to 0.0.0.0/0".to_string())
                    } else if a.is_unspecified()
                        || a.is_loopback()
                        || a.is_multicast()
                        || a.is_broadcast()
                        || u32::from(a) >> 24 >= 240
                    {
                        Some(format!("{a} is not a unicast host address"))
                    } else if len <= 30 && a == network(a, len) {
                        Some(format!("{a} is the subnet's network address"))
                    } else if len <= 30 && u32::from(a) | !mask(len) == u32::from(a) {
                        Some(format!("{a} is the subnet's broadcast address"))
                    } else {
                        None
                    };
                    match bad {
                        Some(why) => {
                            p.push(&key, format!("address \"{}\": {why}", s.address));
                            None
                        }
                        None => Some((a, len)),
                    }
                }
            };
            let mtu = s.mtu.unwrap_or(1500);
            if !(68..=9216).contains(&mtu) {
                p.push(&key, format!("mtu {mtu} is out of range 68..=9216"));
            } else if mtu > max_mtu {
                p.push(
                    &key,
                    format!(
                        "mtu {mtu} does not fit profile {}'s {frame}-byte frames (at most {max_mtu}: {FRAME_HEADROOM} bytes of XDP headroom and {L2_OVERHEAD} of Ethernet + 802.1Q)",
                        profile.name()
                    ),
                );
            }
            // Overlap with an earlier valid interface: connected subnets
            // must be disjoint or a route lookup could pick either.
            if let Some((a, len)) = addr {
                for (j, o) in out.iter().enumerate() {
                    let Some(o) = o else { continue };
                    let common = len.min(o.prefix_len);
                    if network(a, common) == network(o.address, common) {
                        p.push(
                            &key,
                            format!(
                                "subnet {}/{len} overlaps {} subnet {}/{}",
                                network(a, len),
                                label("interface", j, &o.name),
                                o.network(),
                                o.prefix_len
                            ),
                        );
                    }
                }
            }
            let failover =
                crate::failover::validate_interface(p, &key, s, addr, self.failover.is_some());
            out.push(match addr {
                Some((address, prefix_len)) if p.len() == before => Some(Interface {
                    name: s.name.clone(),
                    device: s.device.clone(),
                    address,
                    prefix_len,
                    mtu: mtu as u16,
                    failover,
                }),
                _ => None,
            });
        }
        out
    }

    fn validate_routes(
        &self,
        profile: &HwProfile,
        ifaces: &[Option<Interface>],
        p: &mut Problems,
    ) -> Vec<Route> {
        let capacity = profile.tables.routes as usize;
        let total = self.routes.len() + self.interfaces.len();
        if total > capacity {
            p.push(
                "route",
                format!(
                    "{} static routes plus {} connected routes exceed profile {}'s route table capacity of {capacity}",
                    self.routes.len(),
                    self.interfaces.len(),
                    profile.name()
                ),
            );
        }
        let names: Vec<&str> = self.interfaces.iter().map(|i| i.name.as_str()).collect();
        let mut out = Vec::with_capacity(self.routes.len());
        let mut seen: Vec<(usize, Ipv4Addr, u8)> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("route[{i}]");
            let before = p.len();
            let dest = match parse_prefix(&r.destination) {
                Err(e) => {
                    p.push(&key, format!("destination \"{}\": {e}", r.destination));
                    None
                }
                Ok((a, len)) if network(a, len) != a => {
                    p.push(
                        &key,
                        format!(
                            "destination \"{}\" has host bits set; did you mean {}/{len}?",
                            r.destination,
                            network(a, len)
                        ),
                    );
                    None
                }
                Ok(d) => Some(d),
            };
            if let Some((a, len)) = dest {
                if let Some((j, _, _)) = seen.iter().find(|(_, b, l)| *b == a && *l == len) {
                    p.push(
                        &key,
                        format!("destination {a}/{len} is already routed by route[{j}]"),
                    );
                }
                seen.push((i, a, len));
                for (j, o) in ifaces.iter().enumerate() {
                    if let Some(o) = o {
                        if o.network() == a && o.prefix_len == len {
                            p.push(
                                &key,
                                format!(
                                    "destination {a}/{len} is {}'s connected subnet",
                                    label("interface", j, &o.name)
                                ),
                            );
                        }
                    }
                }
            }
            let gateway = match &r.gateway {
                None => None,
                Some(g) => match g.parse::<Ipv4Addr>() {
                    Ok(g) => Some(g),
                    Err(_) => {
                        p.push(&key, format!("gateway \"{g}\" is not an IPv4 address"));
                        None
                    }
                },
            };
            let named =
                match &r.interface {
                    None => None,
                    Some(n) => match names.iter().position(|x| x == n) {
                        Some(j) => Some(j),
                        None => {
                            p.push(
                                &key,
                                format!(
                                "interface \"{n}\" is not a configured interface (configured: {})",
                                if names.is_empty() { "none".to_string() } else { names.join(", ") }
                            ),
                            );
                            None
                        }
                    },
                };
            if r.gateway.is_none() && r.interface.is_none() {
                p.push(&key, "needs a gateway, an interface, or both");
            }
            let mut via = named;
            if let Some(g) = gateway {
                if let Some((j, o)) = ifaces
                    .iter()
                    .enumerate()
                    .find_map(|(j, o)| o.as_ref().filter(|o| o.address == g).map(|o| (j, o)))
                {
                    p.push(
                        &key,
                        format!(
                            "gateway {g} is this unit's own address on {}",
                            label("interface", j, &o.name)
                        ),
                    );
                }
                match named {
                    Some(j) => {
                        if let Some(o) = &ifaces[j] {
                            if !o.contains(g) {
                                p.push(
                                    &key,
                                    format!(
                                        "gateway {g} is not on interface \"{}\" subnet {}/{}",
                                        o.name,
                                        o.network(),
                                        o.prefix_len
                                    ),
                                );
                            }
                        }
                    }
                    None if r.interface.is_none() => {
                        via = ifaces
                            .iter()
                            .position(|o| o.as_ref().is_some_and(|o| o.contains(g)));
                        // Only blame the gateway when every interface is valid;
                        // otherwise the interface error already says enough.
                        if via.is_none() && ifaces.iter().all(Option::is_some) {
                            p.push(&key, format!("gateway {g} is not on any interface subnet"));
                        }
                    }
                    None => {}
                }
                if let Some(o) = via.and_then(|j| ifaces[j].as_ref()) {
                    if o.prefix_len <= 30
                        && (g == o.network() || u32::from(g) | !mask(o.prefix_len) == u32::from(g))
                    {
                        p.push(
                            &key,
                            format!(
                                "gateway {g} is the network or broadcast address of interface \"{}\"",
                                o.name
                            ),
                        );
                    }
                }
            }
            if p.len() == before {
                if let (Some((destination, prefix_len)), Some(interface)) = (dest, via) {
                    out.push(Route {
                        destination,
                        prefix_len,
                        gateway,
                        interface,
                    });
                }
            }
        }
        out
    }

    fn validate_arp(&self, p: &mut Problems) -> ArpSettings {
        let a = &self.arp;
        in_range(p, "arp.gratuitous_count", a.gratuitous_count.into(), 0, 100);
        in_range(
            p,
            "arp.gratuitous_interval_ms",
            a.gratuitous_interval_ms,
            1,
            60_000,
        );
        in_range(p, "arp.reachable_s", a.reachable_s, 1, 86_400);
        in_range(p, "arp.retry_ms", a.retry_ms, 10, 60_000);
        in_range(p, "arp.max_retries", a.max_retries.into(), 1, 10);
        ArpSettings {
            gratuitous_count: a.gratuitous_count,
            gratuitous_interval: Duration::from_millis(a.gratuitous_interval_ms),
            reachable: Duration::from_secs(a.reachable_s),
            retry: Duration::from_millis(a.retry_ms),
            max_retries: a.max_retries,
        }
    }
}

impl UnitConfig {
    /// The Linux devices, in interface order.
    pub fn devices(&self) -> Vec<&str> {
        self.interfaces.iter().map(|i| i.device.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::SHIPPED;

    const GOOD: &str = r#"
[unit]
name = "gw1"
profile = "lab"

[[interface]]
name = "outside"
device = "out0"
address = "198.18.1.1/24"

[[interface]]
name = "inside"
device = "in0"
address = "198.18.2.1/24"
mtu = 1500

[[route]]
destination = "0.0.0.0/0"
gateway = "198.18.1.254"

[[route]]
destination = "198.19.0.0/16"
gateway = "198.18.2.254"
interface = "inside"
"#;

    fn lab() -> HwProfile {
        HwProfile::parse(SHIPPED[0].1, "lab").unwrap()
    }

    fn validate(text: &str) -> Result<UnitConfig, Problems> {
        ConfigFile::parse(text, "test.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .validate(&lab())
    }

    #[test]
    fn good_config_validates_with_defaults_and_resolved_routes() {
        let c = validate(GOOD).unwrap();
        assert_eq!(c.unit.name, "gw1");
        assert_eq!(c.unit.backend, BackendChoice::Auto);
        assert_eq!(c.unit.xdp_mode, XdpModeChoice::Auto);
        assert_eq!(c.unit.control_socket, PathBuf::from("/run/tandem/gw1.sock"));
        assert_eq!(c.interfaces[0].address, Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(c.interfaces[0].prefix_len, 24);
        assert_eq!(c.interfaces[0].mtu, 1500);
        assert_eq!(
            c.routes[0],
            Route {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(Ipv4Addr::new(198, 18, 1, 254)),
                interface: 0
            }
        );
        assert_eq!(c.routes[1].interface, 1);
        assert_eq!(c.arp.gratuitous_count, 3);
        assert_eq!(c.arp.gratuitous_interval, Duration::from_millis(100));
        assert_eq!(c.arp.reachable, Duration::from_secs(300));
        assert_eq!(c.devices(), ["out0", "in0"]);
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../examples/unit.toml");
        let c = validate(text).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(c.unit.name, "gw1");
    }

    /// Table-driven: (text to replace in GOOD, replacement, expected full
    /// problem line). Every path names its key.
    #[test]
    fn every_error_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("name = \"gw1\"", "name = \"gw 1\"", "unit.name: \"gw 1\" must be 1..=32 characters of letters, digits, '.', '_' or '-'"),
            ("name = \"gw1\"", "name = \"\"", "unit.name: \"\" must be 1..=32 characters of letters, digits, '.', '_' or '-'"),
            ("profile = \"lab\"", "profile = \"lab\"\ncontrol_socket = \"\"", "unit.control_socket: must not be empty"),
            ("profile = \"lab\"", "profile = \" \"", "unit.profile: must name a hardware profile or a profile file"),
            ("198.18.2.1/24", "198.18.2.1/33", "interface[1] \"inside\": address \"198.18.2.1/33\": prefix length must be 0..=32"),
            ("198.18.2.1/24", "198.18.2.1", "interface[1] \"inside\": address \"198.18.2.1\": must be ADDRESS/PREFIX, e.g. 198.18.1.1/24"),
            ("198.18.2.1/24", "198.18.2.300/24", "interface[1] \"inside\": address \"198.18.2.300/24\": \"198.18.2.300\" is not an IPv4 address"),
            ("198.18.2.1/24", "198.18.2.0/24", "interface[1] \"inside\": address \"198.18.2.0/24\": 198.18.2.0 is the subnet's network address"),
            ("198.18.2.1/24", "198.18.2.255/24", "interface[1] \"inside\": address \"198.18.2.255/24\": 198.18.2.255 is the subnet's broadcast address"),
            ("198.18.2.1/24", "224.0.0.1/24", "interface[1] \"inside\": address \"224.0.0.1/24\": 224.0.0.1 is not a unicast host address"),
            ("198.18.2.1/24", "198.18.2.1/0", "interface[1] \"inside\": address \"198.18.2.1/0\": prefix length 0 would make every address connected; use a route to 0.0.0.0/0"),
            ("198.18.2.1/24", "198.18.1.200/25", "interface[1] \"inside\": subnet 198.18.1.128/25 overlaps interface[0] \"outside\" subnet 198.18.1.0/24"),
            ("name = \"inside\"", "name = \"outside\"", "interface[1] \"outside\": name is already used by interface[0]"),
            ("name = \"inside\"", "name = \"in side\"", "interface[1] \"in side\": name must be 1..=48 characters of letters, digits, '.', '_' or '-'"),
            ("device = \"in0\"", "device = \"out0\"", "interface[1] \"inside\": device \"out0\" is already used by interface[0] \"outside\""),
            ("device = \"in0\"", "device = \"averyveryverylongname\"", "interface[1] \"inside\": device \"averyveryverylongname\" is not a Linux interface name (1..=15 bytes, no '/', ':' or spaces)"),
            ("mtu = 1500", "mtu = 20", "interface[1] \"inside\": mtu 20 is out of range 68..=9216"),
            ("mtu = 1500", "mtu = 9000", "interface[1] \"inside\": mtu 9000 does not fit profile lab's 2048-byte frames (at most 1774: 256 bytes of XDP headroom and 18 of Ethernet + 802.1Q)"),
            ("gateway = \"198.18.1.254\"", "gateway = \"198.18.9.1\"", "route[0]: gateway 198.18.9.1 is not on any interface subnet"),
            ("gateway = \"198.18.1.254\"", "gateway = \"198.18.1.1\"", "route[0]: gateway 198.18.1.1 is this unit's own address on interface[0] \"outside\""),
            ("gateway = \"198.18.1.254\"", "gateway = \"198.18.1.255\"", "route[0]: gateway 198.18.1.255 is the network or broadcast address of interface \"outside\""),
            ("gateway = \"198.18.1.254\"", "gateway = \"gw\"", "route[0]: gateway \"gw\" is not an IPv4 address"),
            ("gateway = \"198.18.1.254\"", "", "route[0]: needs a gateway, an interface, or both"),
            ("\"0.0.0.0/0\"", "\"10.1.2.3/8\"", "route[0]: destination \"10.1.2.3/8\" has host bits set; did you mean 10.0.0.0/8?"),
            ("\"0.0.0.0/0\"", "\"0.0.0.0/40\"", "route[0]: destination \"0.0.0.0/40\": prefix length must be 0..=32"),
            ("\"0.0.0.0/0\"", "\"198.19.0.0/16\"", "route[1]: destination 198.19.0.0/16 is already routed by route[0]"),
            ("\"0.0.0.0/0\"", "\"198.18.1.0/24\"", "route[0]: destination 198.18.1.0/24 is interface[0] \"outside\"'s connected subnet"),
            ("interface = \"inside\"", "interface = \"dmz\"", "route[1]: interface \"dmz\" is not a configured interface (configured: outside, inside)"),
            ("interface = \"inside\"", "interface = \"outside\"", "route[1]: gateway 198.18.2.254 is not on interface \"outside\" subnet 198.18.1.0/24"),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "GOOD contains `{from}`");
            let text = GOOD.replacen(from, to, 1);
            let problems = validate(&text).expect_err(to);
            assert!(
                problems.iter().any(|p| p.to_string() == *want),
                "after `{from}` → `{to}`:\n want {want}\n got\n{problems}"
            );
        }
    }

    #[test]
    fn flow_offload_is_off_by_default_and_checked_when_on() {
        assert_eq!(validate(GOOD).unwrap().offload, None);
        let stateful = GOOD.replace("[unit]\n", "[unit]\nstateful = true\n");
        let on = format!("{stateful}\n[offload]\nenable = true\n");
        assert_eq!(
            validate(&on).unwrap().offload,
            Some(OffloadSettings {
                flows: DEFAULT_OFFLOAD_FLOWS
            })
        );
        let off = format!("{stateful}\n[offload]\nenable = false\nflows = 2048\n");
        assert_eq!(validate(&off).unwrap().offload, None);
        let cases: &[(String, &str)] = &[
            (
                format!("{stateful}\n[offload]\nenable = true\nflows = 10\n"),
                "offload.flows: 10 is out of range 1024..=4194304",
            ),
            (
                format!("{stateful}\n[offload]\nflows = 5000000\n"),
                "offload.flows: 5000000 is out of range 1024..=4194304",
            ),
            (
                format!("{GOOD}\n[offload]\nenable = true\n"),
                "offload.enable: flow offload needs stateful mode (see [unit] stateful): it offloads connections",
            ),
            (
                format!(
                    "{}\n[offload]\nenable = true\n",
                    stateful.replace("[unit]\n", "[unit]\nbackend = \"io_uring\"\n")
                ),
                "offload.enable: flow offload needs the AF_XDP backend (unit.backend = \"afxdp\" or \"auto\"): its fast path is tandem's XDP program",
            ),
        ];
        for (text, want) in cases {
            let problems = validate(text).unwrap_err();
            assert_eq!(problems.0.len(), 1, "{problems}");
            assert_eq!(problems.0[0].to_string(), *want);
        }
        let e = ConfigFile::parse(
            &format!("{stateful}\n[offload]\nenabled = true\n"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `enabled`"), "{e}");
    }

    #[test]
    fn arp_ranges_name_their_key() {
        let cases: &[(&str, &str)] = &[
            (
                "gratuitous_count = 101",
                "arp.gratuitous_count: 101 is out of range 0..=100",
            ),
            (
                "gratuitous_interval_ms = 0",
                "arp.gratuitous_interval_ms: 0 is out of range 1..=60000",
            ),
            (
                "reachable_s = 0",
                "arp.reachable_s: 0 is out of range 1..=86400",
            ),
            ("retry_ms = 5", "arp.retry_ms: 5 is out of range 10..=60000"),
            (
                "max_retries = 0",
                "arp.max_retries: 0 is out of range 1..=10",
            ),
        ];
        for (line, want) in cases {
            let text = format!("{GOOD}\n[arp]\n{line}\n");
            let problems = validate(&text).unwrap_err();
            assert_eq!(problems.0.len(), 1, "{problems}");
            assert_eq!(problems.0[0].to_string(), *want);
        }
    }

    #[test]
    fn interface_count_and_route_capacity_come_from_the_profile() {
        let mut profile = lab();
        profile.interfaces.max = 1;
        profile.tables.routes = 3;
        let c = ConfigFile::parse(GOOD, "t").unwrap();
        let problems = c.validate(&profile).unwrap_err();
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            [
                "interface: 2 interfaces configured but profile lab allows at most 1",
                "route: 2 static routes plus 2 connected routes exceed profile lab's route table capacity of 3",
            ]
        );
    }

    #[test]
    fn missing_interfaces_are_an_error() {
        let p = validate("[unit]\nname = \"a\"\nprofile = \"lab\"\n").unwrap_err();
        assert_eq!(
            p.0[0].to_string(),
            "interface: at least one [[interface]] is required"
        );
    }

    #[test]
    fn long_socket_path_is_refused() {
        let long = "/".to_string() + &"x".repeat(120);
        let text = GOOD.replacen(
            "profile = \"lab\"",
            &format!("profile = \"lab\"\ncontrol_socket = \"{long}\""),
            1,
        );
        let p = validate(&text).unwrap_err();
        assert_eq!(p.0[0].key, "unit.control_socket");
        assert!(p.0[0]
            .message
            .ends_with("is 121 bytes; a Unix socket path may have at most 107"));
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = GOOD.replacen("198.18.2.1/24", "198.18.2.1/33", 1).replacen(
            "name = \"gw1\"",
            "name = \"\"",
            1,
        );
        assert_eq!(validate(&text).unwrap_err().len(), 2);
    }

    #[test]
    fn parse_errors_name_key_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("mtu = 1500", "mtu = \"big\"", "config t.toml: interface[1].mtu (line 15): invalid type: string \"big\", expected u32"),
            ("profile = \"lab\"", "profile = \"lab\"\nbackend = \"dpdk\"", "config t.toml: unit.backend (line 5): unknown variant `dpdk`, expected one of `auto`, `afxdp`, `io_uring`"),
            ("profile = \"lab\"", "profile = \"lab\"\nxdp_mode = \"fast\"", "config t.toml: unit.xdp_mode (line 5): unknown variant `fast`, expected one of `auto`, `native`, `generic`"),
            ("mtu = 1500", "mtu = 1500\nspeed = 10", "config t.toml: interface[1].speed (line 16): unknown field `speed`, expected one of `name`, `device`, `address`, `mtu`, `standby_address`, `virtual_mac_active`, `virtual_mac_standby`, `monitored`, `security_level`, `asr_group`"),
            ("mtu = 1500", "mtu = -1", "config t.toml: interface[1].mtu (line 15): invalid value: integer `-1`, expected u32"),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let e = ConfigFile::parse(&text, "t.toml").unwrap_err().to_string();
            assert_eq!(e, *want);
        }
        let e = ConfigFile::parse("[unit]\nname = \"a\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `profile`"), "{e}");
    }

    #[test]
    fn load_reads_file_and_profile() {
        let dir = crate::testutil::TempDir::new("config");
        let path = dir.path().join("gw1.toml");
        std::fs::write(&path, GOOD).unwrap();
        let search = ProfileSearch {
            dirs: vec![],
            built_in: true,
        };
        let l = load(&path, &search).unwrap();
        assert_eq!(l.profile.name(), "lab");
        assert_eq!(l.profile_source, ProfileSource::BuiltIn("lab"));
        std::fs::write(&path, GOOD.replacen("\"lab\"", "\"nope\"", 1)).unwrap();
        let e = load(&path, &search).unwrap_err().to_string();
        assert!(
            e.contains("unit.profile: hardware profile \"nope\" not found"),
            "{e}"
        );
        std::fs::write(&path, GOOD.replacen("/24\"", "/33\"", 1)).unwrap();
        let e = load(&path, &search).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "config {} is invalid:\n  interface[0] \"outside\"",
                path.display()
            )),
            "{e}"
        );
        let e = load(&dir.path().join("missing.toml"), &search)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml: No such file"), "{e}");
    }

    #[test]
    fn prefix_helpers() {
        assert_eq!(mask(0), 0);
        assert_eq!(mask(24), 0xffff_ff00);
        assert_eq!(mask(32), u32::MAX);
        assert_eq!(
            network(Ipv4Addr::new(198, 18, 1, 77), 24),
            Ipv4Addr::new(198, 18, 1, 0)
        );
        assert_eq!(
            parse_prefix("0.0.0.0/0").unwrap(),
            (Ipv4Addr::UNSPECIFIED, 0)
        );
    }

    fn with_unit_keys(keys: &str) -> String {
        GOOD.replacen(
            "profile = \"lab\"",
            &format!("profile = \"lab\"\n{keys}"),
            1,
        )
    }

    #[test]
    fn realtime_priority_and_cpu_latency_default_off_and_parse() {
        let c = validate(GOOD).unwrap();
        assert_eq!(c.unit.realtime_priority, 0, "absent: time-sharing");
        assert_eq!(c.unit.cpu_latency_us, None, "absent: no request");
        let c = validate(&with_unit_keys("realtime_priority = 0")).unwrap();
        assert_eq!(c.unit.realtime_priority, 0);
        let c = validate(&with_unit_keys(
            "realtime_priority = 50\ncpu_latency_us = 0",
        ))
        .unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(c.unit.realtime_priority, 50);
        assert_eq!(c.unit.cpu_latency_us, Some(0));
        let c = validate(&with_unit_keys(
            "realtime_priority = 99\ncpu_latency_us = 1000000",
        ))
        .unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(c.unit.realtime_priority, 99);
        assert_eq!(c.unit.cpu_latency_us, Some(1_000_000));
    }

    #[test]
    fn realtime_priority_and_cpu_latency_out_of_range_name_their_keys() {
        let p = validate(&with_unit_keys(
            "realtime_priority = 100\ncpu_latency_us = 1000001",
        ))
        .expect_err("out of range");
        let text = p.to_string();
        assert!(
            text.contains("unit.realtime_priority: 100 is out of range 0..=99"),
            "{text}"
        );
        assert!(
            text.contains("unit.cpu_latency_us: 1000001 is out of range 0..=1000000"),
            "{text}"
        );
        let e = ConfigFile::parse(&with_unit_keys("realtime_priority = -1"), "test.toml")
            .expect_err("a negative priority is not a u32");
        assert!(e.to_string().contains("realtime_priority"), "{e}");
    }

    #[test]
    fn realtime_priority_is_refused_with_a_busy_poll_profile() {
        let mut profile = lab();
        profile.run.idle = crate::profile::Idle::BusyPoll;
        let file = ConfigFile::parse(&with_unit_keys("realtime_priority = 10"), "test.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        let text = file
            .validate(&profile)
            .expect_err("busy_poll + FIFO")
            .to_string();
        assert!(
            text.contains("unit.realtime_priority: 10 needs workers that block when idle"),
            "{text}"
        );
        let off = ConfigFile::parse(&with_unit_keys("realtime_priority = 0"), "test.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            off.validate(&profile).is_ok(),
            "0 is allowed with busy_poll"
        );
    }

    #[test]
    fn cpu_latency_defaults_to_the_profile_and_the_unit_key_wins() {
        let mut profile = lab();
        let check = |profile: &HwProfile, keys: &str| {
            ConfigFile::parse(&with_unit_keys(keys), "test.toml")
                .unwrap_or_else(|e| panic!("{e}"))
                .validate(profile)
        };
        // The lab profile asks for nothing.
        let u = check(&profile, "").unwrap().unit;
        assert_eq!(
            (u.cpu_latency_us, u.cpu_latency_from_profile),
            (None, false)
        );
        profile.run.cpu_latency_us = Some(0);
        let u = check(&profile, "").unwrap().unit;
        assert_eq!(
            (u.cpu_latency_us, u.cpu_latency_from_profile),
            (Some(0), true)
        );
        let u = check(&profile, "cpu_latency_us = 20").unwrap().unit;
        assert_eq!(
            (u.cpu_latency_us, u.cpu_latency_from_profile),
            (Some(20), false)
        );
        let u = check(&profile, "cpu_latency_us = \"off\"").unwrap().unit;
        assert_eq!(
            (u.cpu_latency_us, u.cpu_latency_from_profile),
            (None, false)
        );
        let text = check(&profile, "cpu_latency_us = \"low\"")
            .expect_err("a word other than off")
            .to_string();
        assert!(
            text.contains("unit.cpu_latency_us: \"low\" is neither a latency in µs"),
            "{text}"
        );
    }

    #[test]
    fn the_appliance_profiles_keep_idle_cpus_polling_and_the_lab_does_not() {
        for (name, text) in SHIPPED {
            let p = HwProfile::parse(text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = if *name == "lab" { None } else { Some(0) };
            assert_eq!(p.run.cpu_latency_us, want, "{name}");
        }
    }
}
