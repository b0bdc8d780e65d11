//! Live configuration apply (`tandemctl config reload`, SIGHUP, and a
//! configuration replicated from the mate): validate a new configuration
//! whole, compute what changed against the running one, and split it into
//! what the running daemon applies live and what needs a restart.
//!
//! Applied live, atomically between two batches or two HA iterations:
//! static routes (every worker swaps its route table), each interface's
//! `monitored` flag, the failover unit/interface timers, the link-state
//! polltime and the interface policy. Everything else needs a restart and a
//! reload that changes any of it is refused whole, listing each key: a bad or
//! partly-unappliable file changes nothing (DESIGN, "a bad config never
//! half-applies").

use std::path::Path;
use std::time::Duration;

use tandem_dataplane::Dataplane;

use crate::config::{ConfigFile, UnitConfig};
use crate::profile::HwProfile;

/// How long a reload waits for every worker to swap its route table.
pub const ROUTES_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigError),
    #[error("config {origin}: {}", invalid_lines(problems))]
    Problems { origin: String, problems: String },
    #[error(
        "config {origin}: these changes need a restart of tandemd (nothing was applied):\n  {}",
        changes.join("\n  ")
    )]
    NeedsRestart {
        origin: String,
        changes: Vec<String>,
    },
    #[error("applying the routes: {0}")]
    Routes(#[from] tandem_dataplane::RoutesError),
    #[error("applying the failover settings: {0}")]
    Failover(String),
}

fn invalid_lines(p: &str) -> String {
    format!("invalid:\n{p}")
}

/// What a new configuration changes, by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Live changes, one line each (`route[1] 198.18.9.0/24 via 198.18.2.254: added`).
    pub live: Vec<String>,
    /// Changes that need a restart, one line each naming the key.
    pub restart: Vec<String>,
    /// The static routes differ.
    pub routes: bool,
    /// A failover setting that is applied live differs.
    pub failover: bool,
}

impl Plan {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }

    /// One line for logs and operators: `2 changes applied: …` or `no change`.
    pub fn summary(&self) -> String {
        if self.live.is_empty() {
            "no change".into()
        } else {
            format!(
                "{} change{} applied live: {}",
                self.live.len(),
                if self.live.len() == 1 { "" } else { "s" },
                self.live.join("; ")
            )
        }
    }
}

fn route_text(c: &UnitConfig, r: &crate::config::Route) -> String {
    let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    let dev = c
        .interfaces
        .get(r.interface)
        .map(|i| i.name.as_str())
        .unwrap_or("?");
    format!("{}/{}{via} on {dev}", r.destination, r.prefix_len)
}

/// What changes from `old` to `new` (both validated).
pub fn plan(old: &UnitConfig, new: &UnitConfig) -> Plan {
    let mut p = Plan::default();
    let mut restart = |key: &str, what: String| p.restart.push(format!("{key}: {what}"));
    // [unit]: identity, profile and packet I/O are chosen at start.
    let (ou, nu) = (&old.unit, &new.unit);
    if ou.name != nu.name {
        restart("unit.name", format!("{} → {}", ou.name, nu.name));
    }
    if ou.profile != nu.profile {
        restart("unit.profile", format!("{} → {}", ou.profile, nu.profile));
    }
    if ou.backend != nu.backend {
        restart("unit.backend", format!("{} → {}", ou.backend, nu.backend));
    }
    if ou.xdp_mode != nu.xdp_mode {
        restart("unit.xdp_mode", "changed".into());
    }
    if ou.zero_copy != nu.zero_copy {
        restart("unit.zero_copy", "changed".into());
    }
    if ou.control_socket != nu.control_socket {
        restart("unit.control_socket", "changed".into());
    }
    if ou.realtime_priority != nu.realtime_priority {
        restart(
            "unit.realtime_priority",
            format!("{} → {}", ou.realtime_priority, nu.realtime_priority),
        );
    }
    if ou.cpu_latency_us != nu.cpu_latency_us {
        restart("unit.cpu_latency_us", "changed".into());
    }
    // [[interface]]: the set, devices, addresses and MACs belong to the data
    // path's and the failover unit's fixed tables; `monitored` is live.
    if old.interfaces.len() != new.interfaces.len() {
        restart(
            "interface",
            format!(
                "{} interfaces → {}",
                old.interfaces.len(),
                new.interfaces.len()
            ),
        );
    }
    let mut monitored = Vec::new();
    for (i, (o, n)) in old.interfaces.iter().zip(&new.interfaces).enumerate() {
        let key = format!("interface[{i}] \"{}\"", o.name);
        let mut field = |f: &str, changed: bool| {
            if changed {
                restart(&format!("{key}.{f}"), "changed".into());
            }
        };
        field("name", o.name != n.name);
        field("device", o.device != n.device);
        field(
            "address",
            (o.address, o.prefix_len) != (n.address, n.prefix_len),
        );
        field("mtu", o.mtu != n.mtu);
        field(
            "standby_address",
            o.failover.standby_address != n.failover.standby_address,
        );
        field(
            "virtual_mac_active/virtual_mac_standby",
            o.failover.virtual_mac != n.failover.virtual_mac,
        );
        if o.failover.monitored != n.failover.monitored {
            monitored.push(format!(
                "{key}.monitored {} → {}",
                o.failover.monitored, n.failover.monitored
            ));
        }
    }
    // [arp]: the workers' ARP tables keep their timers from the start.
    if old.arp != new.arp {
        restart("arp", "changed (ARP timers are fixed at start)".into());
    }
    // [failover]: the bootstrap settings need a restart; timers and policy are live.
    let mut failover_live = Vec::new();
    match (&old.failover, &new.failover) {
        (None, None) => {}
        (None, Some(_)) => restart("failover", "section added".into()),
        (Some(_), None) => restart("failover", "section removed".into()),
        (Some(o), Some(n)) => {
            let mut field = |f: &str, changed: bool| {
                if changed {
                    restart(&format!("failover.{f}"), "changed".into());
                }
            };
            field("role", o.role != n.role);
            field("link_device", o.link_device != n.link_device);
            field("link_name", o.link_name != n.link_name);
            field(
                "link_active_ip/link_standby_ip",
                (o.link_active_ip, o.link_standby_ip) != (n.link_active_ip, n.link_standby_ip),
            );
            field("state_device", o.state_device != n.state_device);
            field("key", o.key != n.key);
            let mut live = |f: &str, a: String, b: String| {
                if a != b {
                    failover_live.push(format!("failover.{f} {a} → {b}"));
                }
            };
            let d = |d: Duration| format!("{d:?}");
            live("unit_polltime", d(o.unit.polltime), d(n.unit.polltime));
            live("unit_holdtime", d(o.unit.holdtime), d(n.unit.holdtime));
            live(
                "interface_polltime",
                d(o.interface_polltime),
                d(n.interface_polltime),
            );
            live(
                "interface_holdtime",
                d(o.interface_holdtime),
                d(n.interface_holdtime),
            );
            live(
                "link_state_polltime",
                d(o.link_state_polltime),
                d(n.link_state_polltime),
            );
            live(
                "interface_policy",
                o.interface_policy.to_string(),
                n.interface_policy.to_string(),
            );
        }
    }
    // [[route]]: live. Compared as written (after validation).
    let texts =
        |c: &UnitConfig| -> Vec<String> { c.routes.iter().map(|r| route_text(c, r)).collect() };
    let (or, nr) = (texts(old), texts(new));
    for r in nr.iter().filter(|r| !or.contains(r)) {
        p.live.push(format!("route {r}: added"));
    }
    for r in or.iter().filter(|r| !nr.contains(r)) {
        p.live.push(format!("route {r}: removed"));
    }
    // Catch-all: anything that differs besides the live settings and is not
    // named above (a key added to the config later) needs a restart too.
    if p.restart.is_empty() && &live_settings_of(old, new) != old {
        p.restart
            .push("other settings changed (not applied live; restart tandemd)".into());
    }
    p.routes = or != nr;
    p.failover = !monitored.is_empty() || !failover_live.is_empty();
    p.live.extend(monitored);
    p.live.extend(failover_live);
    p
}

/// `new` with `old`'s live settings copied in: equal to `old` exactly when
/// only live settings differ.
fn live_settings_of(old: &UnitConfig, new: &UnitConfig) -> UnitConfig {
    let mut n = new.clone();
    n.routes = old.routes.clone();
    for (ni, oi) in n.interfaces.iter_mut().zip(&old.interfaces) {
        ni.failover.monitored = oi.failover.monitored;
    }
    if let (Some(nf), Some(of)) = (n.failover.as_mut(), old.failover.as_ref()) {
        nf.unit = of.unit;
        nf.interface_polltime = of.interface_polltime;
        nf.interface_holdtime = of.interface_holdtime;
        nf.link_state_polltime = of.link_state_polltime;
        nf.interface_policy = of.interface_policy;
    }
    n
}

/// A new configuration, validated whole against the running `profile`, and
/// its plan against `running`. Refused (nothing applied) when invalid or
/// when it changes anything that needs a restart.
pub fn prepare(
    running: &UnitConfig,
    profile: &HwProfile,
    text: &str,
    origin: &str,
) -> Result<(UnitConfig, Plan), ReloadError> {
    let file = ConfigFile::parse(text, origin)?;
    let new = file
        .validate(profile)
        .map_err(|problems| ReloadError::Problems {
            origin: origin.to_string(),
            problems: problems.to_string(),
        })?;
    let p = plan(running, &new);
    if !p.restart.is_empty() {
        return Err(ReloadError::NeedsRestart {
            origin: origin.to_string(),
            changes: p.restart,
        });
    }
    Ok((new, p))
}

/// [`prepare`] for the file at `path`.
pub fn prepare_file(
    running: &UnitConfig,
    profile: &HwProfile,
    path: &Path,
) -> Result<(UnitConfig, Plan), ReloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReloadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    prepare(running, profile, &text, &path.display().to_string())
}

/// Apply the route part of a prepared configuration to the data path
/// (nothing when the routes did not change).
pub fn apply_routes(
    dp: &Dataplane,
    new: &UnitConfig,
    profile: &HwProfile,
    macs: &[[u8; 6]],
    plan: &Plan,
) -> Result<(), ReloadError> {
    if !plan.routes {
        return Ok(());
    }
    let cfg = crate::daemon::dataplane_config(new, profile, macs);
    dp.set_routes(&cfg, ROUTES_TIMEOUT)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::SHIPPED;

    const BASE: &str = include_str!("../examples/failover-primary.toml");

    fn lab() -> HwProfile {
        HwProfile::parse(SHIPPED[0].1, "lab").unwrap()
    }

    fn valid(text: &str) -> UnitConfig {
        ConfigFile::parse(text, "t")
            .unwrap()
            .validate(&lab())
            .unwrap()
    }

    #[test]
    fn an_unchanged_file_is_no_change() {
        let (_, p) = prepare(&valid(BASE), &lab(), BASE, "t").unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.summary(), "no change");
    }

    #[test]
    fn a_new_static_route_and_timers_apply_live() {
        let text = format!(
            "{}\n[[route]]\ndestination = \"198.19.9.0/24\"\ngateway = \"198.18.2.254\"\n",
            BASE.replace("unit_polltime = \"10ms\"", "unit_polltime = \"5ms\"")
        );
        let (_, p) = prepare(&valid(BASE), &lab(), &text, "t").unwrap();
        assert!(p.routes && p.restart.is_empty(), "{p:?}");
        assert!(p.live.iter().any(|l| l.contains("198.19.9.0/24")), "{p:?}");
        assert!(p.summary().contains("applied live"), "{}", p.summary());
    }

    #[test]
    fn restart_only_changes_are_refused_whole_and_named() {
        let text = BASE
            .replace("role = \"primary\"", "role = \"secondary\"")
            .replace("198.18.1.1/24", "198.18.1.5/24");
        let e = prepare(&valid(BASE), &lab(), &text, "t").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("need a restart"), "{msg}");
        assert!(msg.contains("failover.role"), "{msg}");
        assert!(msg.contains(".address"), "{msg}");
    }

    #[test]
    fn a_bad_file_names_the_key() {
        let text = BASE.replace("unit_holdtime = \"30ms\"", "unit_holdtime = \"20ms\"");
        let e = prepare(&valid(BASE), &lab(), &text, "t").unwrap_err();
        assert!(e.to_string().contains("unit_holdtime"), "{e}");
    }
}
