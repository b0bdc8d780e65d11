//! The `[failover]` section of a unit config: its TOML schema, validation
//! (errors name the key), and the mapping to the sans-IO state machine's
//! [`tandem_ha::Config`] once the devices' MACs are known.
//!
//! ```toml
//! [failover]                      # optional; without it the unit runs standalone
//! role = "primary"                # required: primary | secondary
//! link_device = "fo0"             # required: Linux device of the failover link
//! link_name = "folink"            # optional, default "folink" (shown by `show failover`)
//! link_active_ip = "198.18.255.1" # optional, informational (transport is L2, EtherType 0x88B5)
//! link_standby_ip = "198.18.255.2"
//! state_device = "st0"            # optional; default: state link shared with the failover link
//!                                 #   (also written "failover-link")
//! key = "hex 00112233445566778899aabbccddeeff"  # optional: `hex <32 digits>` or a 1..=63
//!                                 #   character secret; no key = clear text, warned at start
//! unit_polltime = "1s"            # "200ms", "1s" or integer milliseconds; defaults are the
//! unit_holdtime = "15s"           #   seeds': unit 1 s / 15 s, interface 5 s / 25 s,
//! interface_polltime = "5s"       #   link state 500 ms; floors are the hardware profile's
//! interface_holdtime = "25s"      #   [timers] (lab: 1 ms / 3 ms, tandem's fast mode);
//! link_state_polltime = "500ms"   #   holdtime ≥ 3 × polltime (unit), ≥ 5 × (interface)
//! interface_policy = 1            # a count 1..=250, or "50%" (1..=100 %)
//!
//! [[interface]]                   # per data interface, in addition to the standalone keys:
//! standby_address = "198.18.1.2"  # the standby unit's address on the same subnet
//! virtual_mac_active = "0200.0000.0a01"  # optional pair: MACs that move with the roles
//! virtual_mac_standby = "0200.0000.0a02"
//! monitored = true                # default true: counts for the interface policy
//! ```
//!
//! With `[failover]`, `interface.address` is the *active* address (the one
//! the active unit owns, whichever unit that is).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_ha::{
    Config as HaConfig, FailoverLinkConfig, InterfaceConfig as HaInterface, InterfacePolicy, Mac,
    Role, StateLinkConfig, TimerFloors, UnitTimers, VirtualMac,
};
use tandem_link::FailoverKey;

use crate::config::{Interface, MAX_DEVICE_NAME};
use crate::problem::Problems;
use crate::profile::HwProfile;

/// A timer as written: integer milliseconds or a humantime string ("10ms").
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TimerValue {
    Millis(u64),
    Text(String),
}

/// The interface policy as written: a count or "N%".
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PolicyValue {
    Count(u64),
    Text(String),
}

/// `[failover]` as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverSection {
    pub role: String,
    pub link_device: String,
    #[serde(default)]
    pub link_name: Option<String>,
    #[serde(default)]
    pub link_active_ip: Option<String>,
    #[serde(default)]
    pub link_standby_ip: Option<String>,
    #[serde(default)]
    pub state_device: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub unit_polltime: Option<TimerValue>,
    #[serde(default)]
    pub unit_holdtime: Option<TimerValue>,
    #[serde(default)]
    pub interface_polltime: Option<TimerValue>,
    #[serde(default)]
    pub interface_holdtime: Option<TimerValue>,
    #[serde(default)]
    pub link_state_polltime: Option<TimerValue>,
    #[serde(default)]
    pub interface_policy: Option<PolicyValue>,
    /// Stateful replication keys, validated by crate::stateful_config.
    #[serde(default)]
    pub replication_http: Option<bool>,
    #[serde(default)]
    pub replication_rate: Option<u64>,
}

/// Per-interface failover settings, validated.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InterfaceFailover {
    pub standby_address: Option<Ipv4Addr>,
    pub virtual_mac: Option<(Mac, Mac)>,
    pub monitored: bool,
}

/// The validated `[failover]` section.
#[derive(Clone, Debug)]
pub struct FailoverSettings {
    pub role: Role,
    pub link_device: String,
    pub link_name: String,
    pub link_active_ip: Option<Ipv4Addr>,
    pub link_standby_ip: Option<Ipv4Addr>,
    /// `None`: shared with the failover link.
    pub state_device: Option<String>,
    /// The key as configured (validated); `None` means clear text.
    pub key: Option<String>,
    pub unit: UnitTimers,
    pub interface_polltime: Duration,
    pub interface_holdtime: Duration,
    pub link_state_polltime: Duration,
    pub interface_policy: InterfacePolicy,
}

impl PartialEq for FailoverSettings {
    fn eq(&self, o: &Self) -> bool {
        format!("{self:?}") == format!("{o:?}")
    }
}
impl Eq for FailoverSettings {}

impl FailoverSettings {
    /// The parsed key (already validated at load).
    pub fn failover_key(&self) -> Option<FailoverKey> {
        self.key.as_deref().and_then(|k| FailoverKey::parse(k).ok())
    }

    /// The state machine's config for these settings, the data interfaces
    /// and their burned-in MACs (`macs` in interface order), and the
    /// failover link's MAC.
    pub fn ha_config(
        &self,
        interfaces: &[Interface],
        macs: &[[u8; 6]],
        failover_mac: [u8; 6],
    ) -> HaConfig {
        let ifs = interfaces
            .iter()
            .zip(macs)
            .map(|(i, mac)| HaInterface {
                name: i.name.clone(),
                mac: Mac(*mac),
                active_ip: IpAddr::V4(i.address),
                standby_ip: i.failover.standby_address.map(IpAddr::V4),
                virtual_mac: i
                    .failover
                    .virtual_mac
                    .map(|(active, standby)| VirtualMac { active, standby }),
                monitored: i.failover.monitored,
            })
            .collect();
        let mut c = HaConfig::new(
            self.role,
            FailoverLinkConfig {
                name: self.link_name.clone(),
                mac: Mac(failover_mac),
            },
            ifs,
        );
        c.state_link = if self.state_device.is_some() {
            StateLinkConfig::Dedicated
        } else {
            StateLinkConfig::SharedWithFailoverLink
        };
        c.unit = self.unit;
        c.interface.polltime = self.interface_polltime;
        c.interface.holdtime = self.interface_holdtime;
        c.link_state_polltime = self.link_state_polltime;
        c.interface_policy = self.interface_policy;
        // Gratuitous ARP burst: tandem's default (3 × 20 ms) suits every timer.
        c
    }
}

/// The hardware profile's floors as the state machine takes them.
pub fn floors(profile: &HwProfile) -> TimerFloors {
    let t = &profile.timers;
    TimerFloors::from_profile_ms(
        t.unit_polltime_min_ms,
        t.unit_holdtime_min_ms,
        t.interface_polltime_min_ms,
        t.interface_holdtime_min_ms,
    )
}

fn timer(p: &mut Problems, key: &str, v: &Option<TimerValue>, default: Duration) -> Duration {
    match v {
        None => default,
        Some(TimerValue::Millis(ms)) => Duration::from_millis(*ms),
        Some(TimerValue::Text(s)) => match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(e) => {
                p.push(
                    key,
                    format!("\"{s}\" is not a duration ({e}); write e.g. \"200ms\", \"1s\" or 200"),
                );
                default
            }
        },
    }
}

fn parse_mac(p: &mut Problems, key: &str, s: &str) -> Option<Mac> {
    match s.parse::<Mac>() {
        Ok(m) if m.is_unicast() => Some(m),
        Ok(m) => {
            p.push(key, format!("{m} is not a unicast MAC address"));
            None
        }
        Err(e) => {
            p.push(key, e.to_string());
            None
        }
    }
}

fn parse_ip(p: &mut Problems, key: &str, s: &Option<String>) -> Option<Ipv4Addr> {
    let s = s.as_ref()?;
    match s.parse::<Ipv4Addr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(key, format!("\"{s}\" is not an IPv4 address"));
            None
        }
    }
}

fn valid_device(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= MAX_DEVICE_NAME
        && d != "."
        && d != ".."
        && !d.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Validate the per-interface failover keys of `[[interface]]` `i`
/// (`label` names it). `active` is the interface's address and prefix when
/// valid. Keys only make sense with `[failover]`.
pub fn validate_interface(
    p: &mut Problems,
    label: &str,
    s: &crate::config::InterfaceSection,
    active: Option<(Ipv4Addr, u8)>,
    failover: bool,
) -> InterfaceFailover {
    let mut out = InterfaceFailover {
        monitored: s.monitored.unwrap_or(true),
        ..InterfaceFailover::default()
    };
    let any = s.standby_address.is_some()
        || s.virtual_mac_active.is_some()
        || s.virtual_mac_standby.is_some()
        || s.monitored.is_some();
    if any && !failover {
        p.push(
            label,
            "standby_address, virtual_mac_* and monitored need a [failover] section",
        );
        return out;
    }
    if let Some(sa) = &s.standby_address {
        match sa.parse::<Ipv4Addr>() {
            Err(_) => p.push(
                label,
                format!("standby_address \"{sa}\" is not an IPv4 address"),
            ),
            Ok(a) => {
                if let Some((act, len)) = active {
                    let m = crate::config::mask(len);
                    if a == act {
                        p.push(
                            label,
                            format!("standby_address {a} is the active address too"),
                        );
                    } else if u32::from(a) & m != u32::from(act) & m {
                        p.push(
                            label,
                            format!(
                                "standby_address {a} is not on the interface's subnet {}/{len}",
                                crate::config::network(act, len)
                            ),
                        );
                    } else {
                        out.standby_address = Some(a);
                    }
                }
            }
        }
    }
    match (&s.virtual_mac_active, &s.virtual_mac_standby) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            let a = parse_mac(p, &format!("{label}: virtual_mac_active"), a);
            let b = parse_mac(p, &format!("{label}: virtual_mac_standby"), b);
            if let (Some(a), Some(b)) = (a, b) {
                if a == b {
                    p.push(
                        label,
                        format!("virtual_mac_active and virtual_mac_standby are both {a}"),
                    );
                } else {
                    out.virtual_mac = Some((a, b));
                }
            }
        }
        _ => p.push(
            label,
            "virtual_mac_active and virtual_mac_standby must be given together",
        ),
    }
    out
}

impl FailoverSection {
    /// Validate against the profile's timer floors; `data_devices` are the
    /// data interfaces' devices (the failover/state link must not be one).
    pub fn validate(
        &self,
        profile: &HwProfile,
        data_devices: &[&str],
        p: &mut Problems,
    ) -> Option<FailoverSettings> {
        let before = p.len();
        let role = match self.role.as_str() {
            "primary" => Role::Primary,
            "secondary" => Role::Secondary,
            other => {
                p.push(
                    "failover.role",
                    format!("\"{other}\" must be \"primary\" or \"secondary\""),
                );
                Role::Primary
            }
        };
        let check_dev = |p: &mut Problems, key: &str, d: &str| {
            if !valid_device(d) {
                p.push(
                    key,
                    format!(
                        "\"{d}\" is not a Linux interface name (1..={MAX_DEVICE_NAME} bytes, no '/', ':' or spaces)"
                    ),
                );
            } else if data_devices.contains(&d) {
                p.push(
                    key,
                    format!("\"{d}\" is a data interface's device; the link needs its own device"),
                );
            }
        };
        check_dev(p, "failover.link_device", &self.link_device);
        let state_device = match self.state_device.as_deref() {
            None | Some("failover-link") => None,
            Some(d) if d == self.link_device => None,
            Some(d) => {
                check_dev(p, "failover.state_device", d);
                Some(d.to_string())
            }
        };
        let link_name = self.link_name.clone().unwrap_or_else(|| "folink".into());
        if link_name.is_empty() || link_name.len() > 48 {
            p.push("failover.link_name", "must be 1..=48 characters");
        }
        let link_active_ip = parse_ip(p, "failover.link_active_ip", &self.link_active_ip);
        let link_standby_ip = parse_ip(p, "failover.link_standby_ip", &self.link_standby_ip);
        if let Some(k) = &self.key {
            if let Err(e) = FailoverKey::parse(k) {
                p.push("failover.key", e.to_string());
            }
        }
        let unit = UnitTimers {
            polltime: timer(
                p,
                "failover.unit_polltime",
                &self.unit_polltime,
                Duration::from_secs(1),
            ),
            holdtime: timer(
                p,
                "failover.unit_holdtime",
                &self.unit_holdtime,
                Duration::from_secs(15),
            ),
        };
        let interface_polltime = timer(
            p,
            "failover.interface_polltime",
            &self.interface_polltime,
            Duration::from_secs(5),
        );
        let interface_holdtime = timer(
            p,
            "failover.interface_holdtime",
            &self.interface_holdtime,
            Duration::from_secs(25),
        );
        let link_state_polltime = timer(
            p,
            "failover.link_state_polltime",
            &self.link_state_polltime,
            Duration::from_millis(500),
        );
        let interface_policy = match &self.interface_policy {
            None => InterfacePolicy::Count(1),
            Some(PolicyValue::Count(n)) => {
                InterfacePolicy::Count(u16::try_from(*n).unwrap_or(u16::MAX))
            }
            Some(PolicyValue::Text(s)) => {
                let t = s.trim();
                let parsed = match t.strip_suffix('%') {
                    Some(n) => n
                        .trim()
                        .parse::<u16>()
                        .ok()
                        .map(|n| InterfacePolicy::Percent(u8::try_from(n).unwrap_or(u8::MAX))),
                    None => t.parse::<u16>().ok().map(InterfacePolicy::Count),
                };
                parsed.unwrap_or_else(|| {
                    p.push(
                        "failover.interface_policy",
                        format!("\"{s}\" must be a number of interfaces (1..=250) or a percentage (\"50%\")"),
                    );
                    InterfacePolicy::Count(1)
                })
            }
        };
        let settings = FailoverSettings {
            role,
            link_device: self.link_device.clone(),
            link_name,
            link_active_ip,
            link_standby_ip,
            state_device,
            key: self.key.clone(),
            unit,
            interface_polltime,
            interface_holdtime,
            link_state_polltime,
            interface_policy,
        };
        // The state machine's own rules (ranges against the profile's
        // floors, the holdtime ratios, the policy range), with a stand-in
        // MAC: the real ones are read from the devices at start.
        if p.len() == before {
            let c = settings.ha_config(&[], &[], [2, 0, 0, 0, 0, 1]);
            if let Err(errs) = c.validate(&floors(profile)) {
                for e in errs.0 {
                    p.push("failover", format!("{e} (profile {})", profile.name()));
                }
            }
        }
        (p.len() == before).then_some(settings)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigFile;
    use crate::profile::{HwProfile, SHIPPED};

    const BASE: &str = r#"
[unit]
name = "gw1"
profile = "lab"

[[interface]]
name = "outside"
device = "out0"
address = "198.18.1.1/24"
standby_address = "198.18.1.2"

[[interface]]
name = "inside"
device = "in0"
address = "198.18.2.1/24"
standby_address = "198.18.2.2"
virtual_mac_active = "0200.0000.0a01"
virtual_mac_standby = "0200.0000.0a02"
monitored = false

[failover]
role = "primary"
link_device = "fo0"
state_device = "st0"
key = "hex 00112233445566778899aabbccddeeff"
unit_polltime = "10ms"
unit_holdtime = 30
interface_polltime = "10ms"
interface_holdtime = "50ms"
link_state_polltime = "10ms"
interface_policy = "50%"
"#;

    fn check(text: &str, profile: usize) -> Result<crate::config::UnitConfig, String> {
        let p = HwProfile::parse(SHIPPED[profile].1, "p").unwrap();
        ConfigFile::parse(text, "t.toml")
            .map_err(|e| e.to_string())?
            .validate(&p)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn failover_section_maps_to_the_state_machine_config() {
        let c = check(BASE, 0).unwrap();
        let f = c.failover.as_ref().unwrap();
        assert_eq!(f.role, tandem_ha::Role::Primary);
        assert_eq!(f.state_device.as_deref(), Some("st0"));
        assert!(f.failover_key().is_some());
        let ha = f.ha_config(
            &c.interfaces,
            &[[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2]],
            [2, 0, 0, 0, 0, 9],
        );
        ha.validate(&tandem_ha::TimerFloors::FAST).unwrap();
        assert_eq!(ha.unit.holdtime, std::time::Duration::from_millis(30));
        assert_eq!(ha.interface_policy, tandem_ha::InterfacePolicy::Percent(50));
        assert_eq!(ha.state_link, tandem_ha::StateLinkConfig::Dedicated);
        assert!(!ha.interfaces[1].monitored);
        assert!(ha.interfaces[1].virtual_mac.is_some());
        assert_eq!(
            ha.interfaces[0].standby_ip,
            Some("198.18.1.2".parse().unwrap())
        );
    }

    #[test]
    fn without_failover_section_nothing_changes() {
        let text = BASE.split("[failover]").next().unwrap();
        let e = check(text, 0).unwrap_err();
        assert!(e.contains("need a [failover] section"), "{e}");
    }

    #[test]
    fn every_failover_error_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("role = \"primary\"", "role = \"first\"", "failover.role: \"first\" must be \"primary\" or \"secondary\""),
            ("link_device = \"fo0\"", "link_device = \"out0\"", "failover.link_device: \"out0\" is a data interface's device"),
            ("unit_holdtime = 30", "unit_holdtime = 20", "failover: unit_holdtime 20 ms must be at least 3 × unit_polltime (10 ms)"),
            ("unit_polltime = \"10ms\"", "unit_polltime = \"ten\"", "failover.unit_polltime: \"ten\" is not a duration"),
            ("interface_policy = \"50%\"", "interface_policy = \"150%\"", "failover: interface_policy 150% is out of range 1..=100%"),
            ("interface_policy = \"50%\"", "interface_policy = \"many\"", "failover.interface_policy: \"many\" must be a number"),
            ("key = \"hex 00112233445566778899aabbccddeeff\"", "key = \"hex 0011\"", "failover.key: "),
            ("standby_address = \"198.18.1.2\"", "standby_address = \"198.18.9.2\"", "interface[0] \"outside\": standby_address 198.18.9.2 is not on the interface's subnet 198.18.1.0/24"),
            ("virtual_mac_standby = \"0200.0000.0a02\"", "", "interface[1] \"inside\": virtual_mac_active and virtual_mac_standby must be given together"),
        ];
        for (from, to, want) in cases {
            assert!(BASE.contains(from), "{from}");
            let e = check(&BASE.replacen(from, to, 1), 0).unwrap_err();
            assert!(e.contains(want), "{from} → {to}: want {want}\n got {e}");
        }
    }

    #[test]
    fn example_failover_config_is_valid() {
        let c = check(include_str!("../examples/failover-primary.toml"), 0).unwrap();
        let f = c.failover.unwrap();
        assert_eq!(f.role, tandem_ha::Role::Primary);
        assert_eq!(f.unit.polltime, std::time::Duration::from_millis(10));
        assert!(c.interfaces[0].failover.virtual_mac.is_some());
    }

    #[test]
    fn fast_timers_are_refused_by_an_appliance_profile() {
        let e = check(BASE, 1).unwrap_err();
        assert!(
            e.contains("failover: unit_polltime 10 ms is out of range 200 ms"),
            "{e}"
        );
    }
}
