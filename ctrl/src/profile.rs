//! Hardware profiles: what a class of machine gives tandem (cores and their
//! roles, queues, frame memory, table capacities, run-loop idle strategy,
//! replication rate, timer floors), how a profile file is found, parsed and
//! validated, and whether it fits the machine tandemd is starting on.
//!
//! A profile is a TOML file in `hw-profiles/` (one per appliance class, plus
//! `lab` for veth). Every key below is required unless marked optional:
//!
//! ```toml
//! [profile]
//! name = "lab"                   # used in messages and `show version`
//! description = "..."            # one line
//!
//! [cores]
//! management = 0                 # the management thread (config, failover, API)
//! workers = [1]                  # one data-plane worker per core; also "2-47" or "2..=47"
//! housekeeping = []              # optional: cores left to the kernel (IRQ/NAPI), never used by tandem
//!
//! [interfaces]
//! queues = 1                     # RX/TX queues per interface; worker i serves queue i
//! max = 8                        # most interfaces a unit of this class may configure
//!
//! [frames]                       # per worker: each worker's backend owns one frame memory
//! frame_count = 4096
//! frame_size = 2048              # 2048 or 4096
//! ring_size = 1024               # power of two, 64..=16384
//! huge_pages = true              # falls back to normal pages (logged) when none are reserved
//!
//! [tables]                       # arp/routes/arp_pending: per worker (each holds a full copy)
//! arp = 1024                     # conn/xlate/sa: per unit, split across the worker shards
//! routes = 256
//! arp_pending = 256              # packets parked while their next hop is resolved
//! arp_pending_per_hop = 8
//! conn = 65536
//! xlate = 65536
//! sa = 1024
//!
//! [run]
//! batch = 64                     # frames per RX burst, 1..=256 and at most ring_size
//! idle = "spin_then_block"       # or "busy_poll" (dedicated cores only)
//! spin_us = 50                   # spin_then_block only: poll this long before blocking
//! block_ms = 1                   # spin_then_block only: longest block before re-checking commands
//! tx_flush_us = 50               # flush a partial TX batch after this long
//! cpu_latency_us = 0             # optional: default of unit.cpu_latency_us (0: idle CPUs poll)
//!
//! [replication]
//! connections_per_s = 100000     # connection creates/s the state link is sized for
//!
//! [timers]                       # floors a unit config may not go below
//! unit_polltime_min_ms = 1
//! unit_holdtime_min_ms = 3
//! interface_polltime_min_ms = 1
//! interface_holdtime_min_ms = 5
//! ```
//!
//! Memory needed by a profile ([`HwProfile::memory_bytes`]) is the frame
//! memory of every worker, table footprints estimated with the per-entry
//! budgets below ([`entry_bytes`]) and, with several workers, the
//! worker-handoff rings; [`HwProfile::fits_machine`] compares it with
//! `MemAvailable`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::problem::{parse_toml, ParseFailure, Problems};

/// The profiles shipped in `hw-profiles/`, compiled in so that a profile
/// name resolves even where the directory is not installed (searched last).
pub const SHIPPED: &[(&str, &str)] = &[
    ("lab", include_str!("../../hw-profiles/lab.toml")),
    (
        "asa-5500x",
        include_str!("../../hw-profiles/asa-5500x.toml"),
    ),
    ("fpr-2100", include_str!("../../hw-profiles/fpr-2100.toml")),
    ("fpr-4100", include_str!("../../hw-profiles/fpr-4100.toml")),
    ("fpr-9300", include_str!("../../hw-profiles/fpr-9300.toml")),
];

/// Environment variable naming an extra profile directory.
pub const PROFILE_DIR_ENV: &str = "TANDEM_PROFILE_DIR";

/// System-wide profile directory, searched after the local `./hw-profiles`.
pub const SYSTEM_PROFILE_DIR: &str = "/etc/tandem/hw-profiles";

/// Budgeted bytes per table entry, used to size memory before start.
/// `conn` + `xlate` stay within DESIGN.md's 256 bytes per connection.
pub mod entry_bytes {
    pub const ARP: u64 = 64;
    pub const ROUTE: u64 = 32;
    pub const ARP_PENDING: u64 = 16;
    pub const CONN: u64 = 128;
    pub const XLATE: u64 = 128;
    pub const SA: u64 = 512;
}

/// A validated hardware profile. Construct with [`HwProfile::parse`] (or
/// the loaders), which rejects anything [`HwProfile::validate`] rejects.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HwProfile {
    pub profile: Header,
    pub cores: Cores,
    pub interfaces: Interfaces,
    pub frames: Frames,
    pub tables: Tables,
    pub run: Run,
    pub replication: Replication,
    pub timers: TimerFloors,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cores {
    pub management: usize,
    #[serde(deserialize_with = "core_list")]
    pub workers: Vec<usize>,
    #[serde(default, deserialize_with = "core_list")]
    pub housekeeping: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    pub queues: u32,
    pub max: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Frames {
    pub frame_count: u32,
    pub frame_size: u32,
    pub ring_size: u32,
    pub huge_pages: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    pub arp: u64,
    pub routes: u64,
    pub arp_pending: u64,
    pub arp_pending_per_hop: u64,
    pub conn: u64,
    pub xlate: u64,
    pub sa: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Idle {
    /// Poll without ever blocking: only for cores nothing else runs on.
    BusyPoll,
    /// Poll for `spin_us`, then block on the backend for up to `block_ms`.
    SpinThenBlock,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub batch: u32,
    pub idle: Idle,
    #[serde(default)]
    pub spin_us: Option<u64>,
    #[serde(default)]
    pub block_ms: Option<u64>,
    pub tx_flush_us: u64,
    /// Default of `unit.cpu_latency_us` for units of this class (absent: no
    /// request).
    #[serde(default)]
    pub cpu_latency_us: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    pub connections_per_s: u64,
}

/// The shortest failover timers a unit of this class may be configured with.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimerFloors {
    pub unit_polltime_min_ms: u64,
    pub unit_holdtime_min_ms: u64,
    pub interface_polltime_min_ms: u64,
    pub interface_holdtime_min_ms: u64,
}

/// Accept `[1, 2, 3]`, `"2-47"`, `"2..=47"` or `"1,3,5-7"` (the Linux cpulist
/// syntax operators know from `taskset -c` and `isolcpus`).
fn core_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<usize>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of core numbers or a core list string such as \"2-47\"")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<usize>, E> {
            parse_core_list(s).map_err(E::custom)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<usize>, A::Error> {
            let mut v = Vec::new();
            while let Some(c) = seq.next_element::<usize>()? {
                v.push(c);
            }
            Ok(v)
        }
    }
    d.deserialize_any(V)
}

/// Parse a cpulist string (`"2-47"`, `"2..=47"`, `"1,3,5-7"`, `""`).
pub fn parse_core_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once("..=").or_else(|| part.split_once('-')) {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let bad = || format!("core list \"{s}\": \"{part}\" is not a core number or range");
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(format!("core list \"{s}\": range \"{part}\" is backwards"));
        }
        if hi - lo > 4096 {
            return Err(format!(
                "core list \"{s}\": range \"{part}\" is larger than 4096 cores"
            ));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// Render a core set compactly: `0..=1`, `2..=47`, `1`, `0, 2..=5`.
pub fn format_cores(cores: &[usize]) -> String {
    let set: BTreeSet<usize> = cores.iter().copied().collect();
    let mut parts = Vec::new();
    let mut it = set.into_iter().peekable();
    while let Some(lo) = it.next() {
        let mut hi = lo;
        while it.peek() == Some(&(hi + 1)) {
            hi += 1;
            it.next();
        }
        parts.push(if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}..={hi}")
        });
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// Errors loading a profile; messages name the profile and the key.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "hardware profile \"{spec}\" not found (searched {searched}); shipped profiles: {shipped}"
    )]
    NotFound {
        spec: String,
        searched: String,
        shipped: String,
    },
    #[error("hardware profile {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("hardware profile {origin}: {failure}")]
    Parse {
        origin: String,
        failure: ParseFailure,
    },
    #[error("hardware profile {origin} is invalid:\n{problems}")]
    Invalid { origin: String, problems: Problems },
}

/// Where a profile came from, for logs and `show version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileSource {
    File(PathBuf),
    BuiltIn(&'static str),
}

impl fmt::Display for ProfileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileSource::File(p) => write!(f, "{}", p.display()),
            ProfileSource::BuiltIn(n) => write!(f, "built-in {n}"),
        }
    }
}

/// Directories searched for a profile given by name, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileSearch {
    pub dirs: Vec<PathBuf>,
    /// Fall back to the profiles compiled into the binary.
    pub built_in: bool,
}

impl ProfileSearch {
    /// The standard order: `--profile-dir`, `$TANDEM_PROFILE_DIR`,
    /// `./hw-profiles`, `/etc/tandem/hw-profiles`, then the built-in copies.
    pub fn standard(cli_dir: Option<&Path>, env_dir: Option<&str>) -> ProfileSearch {
        let mut dirs = Vec::new();
        if let Some(d) = cli_dir {
            dirs.push(d.to_path_buf());
        }
        if let Some(d) = env_dir.filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(d));
        }
        dirs.push(PathBuf::from("hw-profiles"));
        dirs.push(PathBuf::from(SYSTEM_PROFILE_DIR));
        ProfileSearch {
            dirs,
            built_in: true,
        }
    }

    /// Same as [`ProfileSearch::standard`] reading `$TANDEM_PROFILE_DIR`.
    pub fn from_env(cli_dir: Option<&Path>) -> ProfileSearch {
        let env = std::env::var(PROFILE_DIR_ENV).ok();
        ProfileSearch::standard(cli_dir, env.as_deref())
    }
}

/// Whether a `unit.profile` value is a path rather than a name: it contains
/// a `/` or ends in `.toml`.
pub fn is_path_spec(spec: &str) -> bool {
    spec.contains('/') || spec.ends_with(".toml")
}

impl HwProfile {
    /// Parse and validate profile text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<HwProfile, ProfileError> {
        let p: HwProfile = parse_toml(text).map_err(|failure| ProfileError::Parse {
            origin: origin.to_string(),
            failure,
        })?;
        p.validate().map_err(|problems| ProfileError::Invalid {
            origin: origin.to_string(),
            problems,
        })?;
        Ok(p)
    }

    /// Find and load a profile. `spec` is a name searched in `search`, or a
    /// path (see [`is_path_spec`]); a relative path is taken relative to
    /// `base` (the directory of the config file that named it).
    pub fn resolve(
        spec: &str,
        base: Option<&Path>,
        search: &ProfileSearch,
    ) -> Result<(HwProfile, ProfileSource), ProfileError> {
        if is_path_spec(spec) {
            let p = Path::new(spec);
            let path = match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.to_path_buf(),
            };
            return Self::load_file(&path).map(|h| (h, ProfileSource::File(path)));
        }
        let file = format!("{spec}.toml");
        for dir in &search.dirs {
            let path = dir.join(&file);
            if path.is_file() {
                return Self::load_file(&path).map(|h| (h, ProfileSource::File(path)));
            }
        }
        if search.built_in {
            if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == spec) {
                let p = HwProfile::parse(text, &format!("built-in {name}"))?;
                return Ok((p, ProfileSource::BuiltIn(name)));
            }
        }
        let mut searched: Vec<String> = search
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        if search.built_in {
            searched.push("built-in profiles".to_string());
        }
        Err(ProfileError::NotFound {
            spec: spec.to_string(),
            searched: searched.join(", "),
            shipped: SHIPPED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn load_file(path: &Path) -> Result<HwProfile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        HwProfile::parse(&text, &path.display().to_string())
    }

    pub fn name(&self) -> &str {
        &self.profile.name
    }

    /// Every rule a profile must satisfy on its own (without the machine).
    pub fn validate(&self) -> Result<(), Problems> {
        let mut p = Problems::default();
        if self.profile.name.trim().is_empty() {
            p.push("profile.name", "must not be empty");
        }

        // Cores: a worker owns its core; the management thread must not
        // share one, or a busy worker starves the failover hellos.
        let c = &self.cores;
        if c.workers.is_empty() {
            p.push("cores.workers", "must list at least one core");
        }
        if let Some(d) = duplicate(&c.workers) {
            p.push("cores.workers", format!("core {d} is listed twice"));
        }
        if c.workers.contains(&c.management) {
            p.push(
                "cores.management",
                format!(
                    "core {} is also a worker core; a polling worker would starve the management thread",
                    c.management
                ),
            );
        }
        for h in &c.housekeeping {
            if c.workers.contains(h) || *h == c.management {
                p.push(
                    "cores.housekeeping",
                    format!("core {h} is also used by tandem; housekeeping cores are left to the kernel"),
                );
            }
        }

        // Queues: worker i serves queue i on every interface, so each queue
        // needs exactly one worker (an unserved queue would pass its
        // traffic to the kernel, a missing one cannot be bound).
        let q = &self.interfaces;
        if q.queues as usize != c.workers.len() && !c.workers.is_empty() {
            p.push(
                "interfaces.queues",
                format!(
                    "{} must equal the number of worker cores ({}): worker i serves queue i on every interface",
                    q.queues,
                    c.workers.len()
                ),
            );
        }
        range(&mut p, "interfaces.max", q.max as u64, 1, 1024);

        let f = &self.frames;
        if f.frame_size != 2048 && f.frame_size != 4096 {
            p.push(
                "frames.frame_size",
                format!("{} must be 2048 or 4096", f.frame_size),
            );
        }
        if !f.ring_size.is_power_of_two() || !(64..=16384).contains(&f.ring_size) {
            p.push(
                "frames.ring_size",
                format!("{} must be a power of two in 64..=16384", f.ring_size),
            );
        }
        // The fill ring and the TX ring each hold up to ring_size frames.
        if (f.frame_count as u64) < 2 * f.ring_size as u64 {
            p.push(
                "frames.frame_count",
                format!(
                    "{} must be at least 2 × ring_size ({}) so the fill and TX rings can both be full",
                    f.frame_count,
                    2 * f.ring_size as u64
                ),
            );
        }
        range(
            &mut p,
            "frames.frame_count",
            f.frame_count as u64,
            1,
            1 << 22,
        );

        let t = &self.tables;
        range(&mut p, "tables.arp", t.arp, 1, 1 << 24);
        range(&mut p, "tables.routes", t.routes, 1, 1 << 24);
        range(&mut p, "tables.arp_pending", t.arp_pending, 1, 1 << 20);
        range(
            &mut p,
            "tables.arp_pending_per_hop",
            t.arp_pending_per_hop,
            1,
            1 << 16,
        );
        if t.arp_pending_per_hop > t.arp_pending {
            p.push(
                "tables.arp_pending_per_hop",
                format!(
                    "{} is more than tables.arp_pending ({})",
                    t.arp_pending_per_hop, t.arp_pending
                ),
            );
        }
        range(&mut p, "tables.conn", t.conn, 1, 1 << 32);
        range(&mut p, "tables.xlate", t.xlate, 1, 1 << 32);
        range(&mut p, "tables.sa", t.sa, 1, 1 << 24);

        let r = &self.run;
        range(&mut p, "run.batch", r.batch as u64, 1, 256);
        if r.batch > f.ring_size && f.ring_size > 0 {
            p.push(
                "run.batch",
                format!(
                    "{} is larger than frames.ring_size ({})",
                    r.batch, f.ring_size
                ),
            );
        }
        match r.idle {
            Idle::BusyPoll => {
                for (key, v) in [("run.spin_us", r.spin_us), ("run.block_ms", r.block_ms)] {
                    if v.is_some() {
                        p.push(key, "is only used with idle = \"spin_then_block\"");
                    }
                }
            }
            Idle::SpinThenBlock => {
                match r.spin_us {
                    None => p.push("run.spin_us", "is required with idle = \"spin_then_block\""),
                    Some(v) => range(&mut p, "run.spin_us", v, 0, 100_000),
                }
                match r.block_ms {
                    None => p.push(
                        "run.block_ms",
                        "is required with idle = \"spin_then_block\"",
                    ),
                    Some(v) => range(&mut p, "run.block_ms", v, 1, 1000),
                }
            }
        }
        range(&mut p, "run.tx_flush_us", r.tx_flush_us, 1, 100_000);
        if let Some(us) = r.cpu_latency_us {
            range(
                &mut p,
                "run.cpu_latency_us",
                u64::from(us),
                0,
                u64::from(crate::config::MAX_CPU_LATENCY_US),
            );
        }
        range(
            &mut p,
            "replication.connections_per_s",
            self.replication.connections_per_s,
            1,
            100_000_000,
        );

        // Seeds 004: unit holdtime ≥ 3 × polltime, interface holdtime ≥ 5 ×
        // polltime. The floors themselves must obey the same rules.
        let tm = &self.timers;
        range(
            &mut p,
            "timers.unit_polltime_min_ms",
            tm.unit_polltime_min_ms,
            1,
            15_000,
        );
        range(
            &mut p,
            "timers.unit_holdtime_min_ms",
            tm.unit_holdtime_min_ms,
            1,
            45_000,
        );
        range(
            &mut p,
            "timers.interface_polltime_min_ms",
            tm.interface_polltime_min_ms,
            1,
            15_000,
        );
        range(
            &mut p,
            "timers.interface_holdtime_min_ms",
            tm.interface_holdtime_min_ms,
            1,
            75_000,
        );
        if tm.unit_holdtime_min_ms < 3 * tm.unit_polltime_min_ms {
            p.push(
                "timers.unit_holdtime_min_ms",
                format!(
                    "{} ms must be at least 3 × unit_polltime_min_ms ({} ms)",
                    tm.unit_holdtime_min_ms, tm.unit_polltime_min_ms
                ),
            );
        }
        if tm.interface_holdtime_min_ms < 5 * tm.interface_polltime_min_ms {
            p.push(
                "timers.interface_holdtime_min_ms",
                format!(
                    "{} ms must be at least 5 × interface_polltime_min_ms ({} ms)",
                    tm.interface_holdtime_min_ms, tm.interface_polltime_min_ms
                ),
            );
        }
        p.into_result(())
    }

    /// Frame memory of all workers, in bytes.
    pub fn frame_memory_bytes(&self) -> u64 {
        self.cores.workers.len() as u64
            * self.frames.frame_count as u64
            * self.frames.frame_size as u64
    }

    /// Estimated table memory, in bytes (see [`entry_bytes`]).
    pub fn table_memory_bytes(&self) -> u64 {
        let t = &self.tables;
        let per_worker = t.arp * entry_bytes::ARP
            + t.routes * entry_bytes::ROUTE
            + t.arp_pending * entry_bytes::ARP_PENDING;
        self.cores.workers.len() as u64 * per_worker
            + t.conn * entry_bytes::CONN
            + t.xlate * entry_bytes::XLATE
            + t.sa * entry_bytes::SA
    }

    /// Worker-handoff rings (`tandem_dataplane::handoff`): one per directed
    /// pair of workers, `slots_per_ring` frame-sized slots each. Counted
    /// whenever there are several workers: an upper bound, since only a
    /// stateful unit builds them.
    pub fn handoff_memory_bytes(&self) -> u64 {
        let n = self.cores.workers.len();
        if n < 2 {
            return 0;
        }
        let slots = tandem_dataplane::handoff::slots_per_ring(n) as u64;
        (n * (n - 1)) as u64 * slots * self.frames.frame_size as u64
    }

    /// Frame memory, tables and handoff rings.
    pub fn memory_bytes(&self) -> u64 {
        self.frame_memory_bytes() + self.table_memory_bytes() + self.handoff_memory_bytes()
    }

    /// Refuse a profile this machine cannot run: worker or management cores
    /// it does not have (or may not use), more memory than is available,
    /// more queues per interface than a device has.
    pub fn fits_machine(&self, m: &MachineInfo) -> Result<(), FitError> {
        let mut problems = Vec::new();
        let name = self.name();
        let have = format_cores(&m.cores);
        let missing: Vec<usize> = self
            .cores
            .workers
            .iter()
            .copied()
            .filter(|c| !m.cores.contains(c))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "profile {name} wants worker cores {} but this machine has cores {have}",
                format_cores(&self.cores.workers)
            ));
        }
        if !m.cores.contains(&self.cores.management) {
            problems.push(format!(
                "profile {name} wants management core {} but this machine has cores {have}",
                self.cores.management
            ));
        }
        let need = self.memory_bytes();
        if need > m.mem_available {
            problems.push(format!(
                "profile {name} needs {} of memory ({} frames + {} tables + {} worker-handoff rings) but only {} is available",
                human_bytes(need),
                human_bytes(self.frame_memory_bytes()),
                human_bytes(self.table_memory_bytes()),
                human_bytes(self.handoff_memory_bytes()),
                human_bytes(m.mem_available)
            ));
        }
        for d in &m.devices {
            if d.rx_queues < self.interfaces.queues {
                problems.push(format!(
                    "profile {name} wants {} queues per interface but device {} has {} (raise them with `ethtool -L {} combined {}` or use a profile with fewer workers)",
                    self.interfaces.queues, d.name, d.rx_queues, d.name, self.interfaces.queues
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FitError { problems })
        }
    }

    /// The unit timers, checked against this profile's floors and the
    /// seeds' ratio (hold ≥ 3 × poll). Used by the failover config.
    pub fn check_unit_timers(&self, poll: Duration, hold: Duration) -> Result<(), String> {
        check_timers(
            "unit",
            poll,
            hold,
            self.timers.unit_polltime_min_ms,
            self.timers.unit_holdtime_min_ms,
            3,
            self.name(),
        )
    }

    /// The interface timers, checked against this profile's floors and the
    /// seeds' ratio (hold ≥ 5 × poll).
    pub fn check_interface_timers(&self, poll: Duration, hold: Duration) -> Result<(), String> {
        check_timers(
            "interface",
            poll,
            hold,
            self.timers.interface_polltime_min_ms,
            self.timers.interface_holdtime_min_ms,
            5,
            self.name(),
        )
    }
}

fn check_timers(
    what: &str,
    poll: Duration,
    hold: Duration,
    poll_min_ms: u64,
    hold_min_ms: u64,
    ratio: u32,
    profile: &str,
) -> Result<(), String> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if poll < Duration::from_millis(poll_min_ms) {
        return Err(format!(
            "{what} polltime {}ms is below profile {profile}'s floor of {poll_min_ms}ms",
            ms(poll)
        ));
    }
    if hold < Duration::from_millis(hold_min_ms) {
        return Err(format!(
            "{what} holdtime {}ms is below profile {profile}'s floor of {hold_min_ms}ms",
            ms(hold)
        ));
    }
    if hold < poll * ratio {
        return Err(format!(
            "{what} holdtime {}ms must be at least {ratio} × polltime ({}ms)",
            ms(hold),
            ms(poll)
        ));
    }
    Ok(())
}

fn duplicate(v: &[usize]) -> Option<usize> {
    let mut seen = BTreeSet::new();
    v.iter().copied().find(|x| !seen.insert(*x))
}

fn range(p: &mut Problems, key: &str, v: u64, lo: u64, hi: u64) {
    if v < lo || v > hi {
        p.push(key, format!("{v} is out of range {lo}..={hi}"));
    }
}

/// `1.5 GiB`, `8.0 MiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A profile that does not fit; every reason, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct FitError {
    pub problems: Vec<String>,
}

/// What the machine offers, as plain data so [`HwProfile::fits_machine`]
/// is testable without the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// Cores this process may run on (its affinity mask).
    pub cores: Vec<usize>,
    /// `MemAvailable` from /proc/meminfo, in bytes.
    pub mem_available: u64,
    /// The devices the config names, with their RX queue counts. Empty when
    /// devices are not checked (pure profile checks).
    pub devices: Vec<DeviceInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    pub rx_queues: u32,
}

impl MachineInfo {
    /// Read the machine: core_affinity's core ids, /proc/meminfo, and
    /// /sys/class/net/DEV/queues/rx-* of each device.
    pub fn probe(devices: &[&str]) -> Result<MachineInfo, std::io::Error> {
        let cores = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        let mem_available = parse_mem_available(&meminfo).unwrap_or(0);
        let mut devs = Vec::new();
        for d in devices {
            devs.push(DeviceInfo {
                name: d.to_string(),
                rx_queues: rx_queue_count(d)?,
            });
        }
        Ok(MachineInfo {
            cores,
            mem_available,
            devices: devs,
        })
    }
}

/// Number of `rx-*` entries under /sys/class/net/DEV/queues.
pub fn rx_queue_count(dev: &str) -> Result<u32, std::io::Error> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{dev}/queues")).map_err(|e| {
        std::io::Error::new(e.kind(), format!("device {dev}: reading its queues: {e}"))
    })?;
    Ok(dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32)
}

/// `MemAvailable:  123456 kB` → bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> HwProfile {
        let text = SHIPPED.iter().find(|(n, _)| *n == name).unwrap().1;
        HwProfile::parse(text, name).unwrap()
    }

    fn machine(cores: std::ops::RangeInclusive<usize>, mem_gib: u64) -> MachineInfo {
        MachineInfo {
            cores: cores.collect(),
            mem_available: mem_gib << 30,
            devices: vec![],
        }
    }

    #[test]
    fn every_shipped_profile_parses_and_validates() {
        for (name, text) in SHIPPED {
            let p = HwProfile::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.name(), *name, "file {name}.toml names itself");
        }
    }

    #[test]
    fn shipped_files_match_the_compiled_in_copies() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut built: Vec<String> = SHIPPED.iter().map(|(n, _)| format!("{n}.toml")).collect();
        built.sort();
        assert_eq!(on_disk, built, "every file in hw-profiles/ is in SHIPPED");
    }

    #[test]
    fn lab_profile_is_what_the_lab_needs() {
        let p = shipped("lab");
        assert_eq!(p.cores.management, 0);
        assert_eq!(p.cores.workers, vec![1]);
        assert_eq!(p.run.idle, Idle::SpinThenBlock);
        assert_eq!(p.run.batch, 64);
        assert_eq!((p.frames.frame_count, p.frames.frame_size), (4096, 2048));
        assert!(p.frames.huge_pages);
        assert_eq!(p.timers.unit_polltime_min_ms, 1);
        assert_eq!(p.timers.unit_holdtime_min_ms, 3);
        assert!(p.fits_machine(&machine(0..=1, 1)).is_ok());
    }

    #[test]
    fn appliance_profiles_keep_the_seeds_floors() {
        for name in ["asa-5500x", "fpr-2100", "fpr-4100", "fpr-9300"] {
            let p = shipped(name);
            assert!(p.timers.unit_polltime_min_ms >= 200, "{name}");
            assert!(p.timers.unit_holdtime_min_ms >= 800, "{name}");
            assert!(p.timers.interface_polltime_min_ms >= 500, "{name}");
            assert!(p.timers.interface_holdtime_min_ms >= 5000, "{name}");
            // The appliance floors reject tandem's fast mode, the lab accepts it.
            assert!(p
                .check_unit_timers(Duration::from_millis(1), Duration::from_millis(3))
                .is_err());
            assert!(p
                .check_unit_timers(Duration::from_millis(200), Duration::from_millis(800))
                .is_ok());
        }
        let lab = shipped("lab");
        assert!(lab
            .check_unit_timers(Duration::from_millis(1), Duration::from_millis(3))
            .is_ok());
        let e = lab
            .check_unit_timers(Duration::from_millis(10), Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(e, "unit holdtime 20ms must be at least 3 × polltime (10ms)");
        assert!(lab
            .check_interface_timers(Duration::from_millis(10), Duration::from_millis(40))
            .is_err());
    }

    #[test]
    fn big_profile_refused_on_a_small_machine_with_a_clear_message() {
        let p = shipped("fpr-9300");
        let e = p.fits_machine(&machine(0..=1, 4)).unwrap_err();
        assert_eq!(
            e.problems[0],
            "profile fpr-9300 wants worker cores 2..=47 but this machine has cores 0..=1"
        );
        assert!(e.problems[1].starts_with("profile fpr-9300 needs "), "{e}");
        assert!(
            e.problems[1].ends_with("but only 4.0 GiB is available"),
            "{e}"
        );
    }

    #[test]
    fn missing_management_core_is_refused() {
        let mut p = shipped("lab");
        p.cores.management = 5;
        let e = p.fits_machine(&machine(0..=1, 1)).unwrap_err();
        assert_eq!(
            e.problems,
            vec!["profile lab wants management core 5 but this machine has cores 0..=1"]
        );
    }

    #[test]
    fn memory_is_frames_plus_tables() {
        let p = shipped("lab");
        assert_eq!(p.frame_memory_bytes(), 4096 * 2048);
        let m = MachineInfo {
            cores: vec![0, 1],
            mem_available: p.memory_bytes() - 1,
            devices: vec![],
        };
        let e = p.fits_machine(&m).unwrap_err();
        assert!(e.problems[0].contains("needs"), "{e}");
        let m = MachineInfo {
            mem_available: p.memory_bytes(),
            ..m
        };
        assert!(p.fits_machine(&m).is_ok());
    }

    #[test]
    fn several_workers_count_their_handoff_rings() {
        let mut p = shipped("lab");
        assert_eq!(p.handoff_memory_bytes(), 0, "one worker: no rings");
        p.cores.workers = vec![1, 2];
        // Two rings (1 → 2, 2 → 1) of 1024 slots of 2048 bytes.
        assert_eq!(p.handoff_memory_bytes(), 2 * 1024 * 2048);
        assert_eq!(
            p.memory_bytes(),
            p.frame_memory_bytes() + p.table_memory_bytes() + 2 * 1024 * 2048
        );
        let nine300 = shipped("fpr-9300");
        let n = nine300.cores.workers.len() as u64;
        assert_eq!(
            nine300.handoff_memory_bytes(),
            n * (n - 1) * 128 * u64::from(nine300.frames.frame_size),
            "many workers: the per-ring floor"
        );
    }

    #[test]
    fn too_few_device_queues_are_refused() {
        let mut p = shipped("lab");
        p.cores.workers = vec![1, 2];
        p.interfaces.queues = 2;
        let m = MachineInfo {
            cores: vec![0, 1, 2],
            mem_available: 1 << 30,
            devices: vec![DeviceInfo {
                name: "out0".into(),
                rx_queues: 1,
            }],
        };
        let e = p.fits_machine(&m).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(
            e.problems[0]
                .starts_with("profile lab wants 2 queues per interface but device out0 has 1"),
            "{e}"
        );
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("2-4").unwrap(), vec![2, 3, 4]);
        assert_eq!(parse_core_list("2..=4").unwrap(), vec![2, 3, 4]);
        assert_eq!(parse_core_list("1, 3,5-6").unwrap(), vec![1, 3, 5, 6]);
        assert_eq!(parse_core_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_core_list("4-2").is_err());
        assert!(parse_core_list("x").is_err());
        assert_eq!(format_cores(&[0, 1]), "0..=1");
        assert_eq!(format_cores(&[1]), "1");
        assert_eq!(format_cores(&[0, 2, 3, 4, 7]), "0, 2..=4, 7");
        assert_eq!(format_cores(&[]), "none");
    }

    #[test]
    fn mem_available_is_read_from_meminfo() {
        let text = "MemTotal: 100 kB\nMemAvailable:     2048 kB\n";
        assert_eq!(parse_mem_available(text), Some(2048 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    /// Table-driven: each broken profile reports its key and what is wrong.
    #[test]
    fn invalid_profiles_name_their_key() {
        let lab = SHIPPED[0].1;
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "workers = [1]",
                "workers = []",
                "cores.workers",
                "must list at least one core",
            ),
            (
                "workers = [1]",
                "workers = [1, 1]",
                "cores.workers",
                "core 1 is listed twice",
            ),
            (
                "management = 0",
                "management = 1",
                "cores.management",
                "core 1 is also a worker core",
            ),
            (
                "queues = 1",
                "queues = 2",
                "interfaces.queues",
                "2 must equal the number of worker cores (1)",
            ),
            (
                "frame_size = 2048",
                "frame_size = 3000",
                "frames.frame_size",
                "3000 must be 2048 or 4096",
            ),
            (
                "ring_size = 1024",
                "ring_size = 1000",
                "frames.ring_size",
                "1000 must be a power of two",
            ),
            (
                "frame_count = 4096",
                "frame_count = 1024",
                "frames.frame_count",
                "1024 must be at least 2 × ring_size (2048)",
            ),
            (
                "arp_pending_per_hop = 8",
                "arp_pending_per_hop = 100000",
                "tables.arp_pending_per_hop",
                "is more than tables.arp_pending",
            ),
            (
                "batch = 64",
                "batch = 0",
                "run.batch",
                "0 is out of range 1..=256",
            ),
            (
                "block_ms = 1",
                "block_ms = 0",
                "run.block_ms",
                "0 is out of range 1..=1000",
            ),
            (
                "tx_flush_us = 50",
                "tx_flush_us = 50\ncpu_latency_us = 1000001",
                "run.cpu_latency_us",
                "1000001 is out of range 0..=1000000",
            ),
            (
                "idle = \"spin_then_block\"",
                "idle = \"busy_poll\"",
                "run.spin_us",
                "is only used with idle = \"spin_then_block\"",
            ),
            (
                "unit_holdtime_min_ms = 3",
                "unit_holdtime_min_ms = 2",
                "timers.unit_holdtime_min_ms",
                "2 ms must be at least 3 × unit_polltime_min_ms (1 ms)",
            ),
            (
                "interface_holdtime_min_ms = 5",
                "interface_holdtime_min_ms = 4",
                "timers.interface_holdtime_min_ms",
                "must be at least 5 ×",
            ),
        ];
        for (from, to, key, msg) in cases {
            assert!(lab.contains(from), "lab.toml contains `{from}`");
            let text = lab.replacen(from, to, 1);
            let e = HwProfile::parse(&text, "lab").unwrap_err();
            let ProfileError::Invalid { problems, .. } = &e else {
                panic!("{to}: expected Invalid, got {e}");
            };
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == *key && p.message.contains(msg)),
                "{to}: expected `{key}: ...{msg}...`, got:\n{problems}"
            );
        }
    }

    #[test]
    fn parse_errors_name_the_key() {
        let lab = SHIPPED[0].1;
        let text = lab.replacen("batch = 64", "batch = \"lots\"", 1);
        let e = HwProfile::parse(&text, "lab").unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("hardware profile lab: run.batch (line "),
            "{s}"
        );
        let text = lab.replacen("[run]", "[run]\nturbo = true", 1);
        let s = HwProfile::parse(&text, "lab").unwrap_err().to_string();
        assert!(s.contains("unknown field `turbo`"), "{s}");
        let text = lab.replacen("idle = \"spin_then_block\"", "idle = \"nap\"", 1);
        let s = HwProfile::parse(&text, "lab").unwrap_err().to_string();
        assert!(s.contains("run.idle") && s.contains("busy_poll"), "{s}");
    }

    #[test]
    fn resolution_order_and_paths() {
        let dir = crate::testutil::TempDir::new("profiles");
        let custom = SHIPPED[0]
            .1
            .replacen("name = \"lab\"", "name = \"custom\"", 1);
        std::fs::write(dir.path().join("lab.toml"), &custom).unwrap();
        let search = ProfileSearch {
            dirs: vec![dir.path().to_path_buf()],
            built_in: true,
        };
        // A directory earlier in the search order wins over the built-in copy.
        let (p, src) = HwProfile::resolve("lab", None, &search).unwrap();
        assert_eq!(p.name(), "custom");
        assert_eq!(src, ProfileSource::File(dir.path().join("lab.toml")));
        // Not in the directory: the built-in copy.
        let (p, src) = HwProfile::resolve("fpr-2100", None, &search).unwrap();
        assert_eq!(p.name(), "fpr-2100");
        assert_eq!(src, ProfileSource::BuiltIn("fpr-2100"));
        // A relative path is taken from the config file's directory.
        let (p, _) = HwProfile::resolve("./lab.toml", Some(dir.path()), &search).unwrap();
        assert_eq!(p.name(), "custom");
        let e = HwProfile::resolve("nope", None, &search)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hardware profile \"nope\" not found (searched "),
            "{e}"
        );
        assert!(
            e.ends_with("shipped profiles: lab, asa-5500x, fpr-2100, fpr-4100, fpr-9300"),
            "{e}"
        );
    }

    #[test]
    fn standard_search_order() {
        let s = ProfileSearch::standard(Some(Path::new("/opt/p")), Some("/env/p"));
        let dirs: Vec<_> = s.dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            ["/opt/p", "/env/p", "hw-profiles", "/etc/tandem/hw-profiles"]
        );
        assert!(s.built_in);
    }
}
