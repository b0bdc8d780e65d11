//! The configuration of one unit of a [`crate::PairLab`] HA pair, rendered
//! as the `tandemd` TOML file: one place for what the lab tests, the
//! benchmarks and the demo all run, so they cannot drift apart.
//!
//! Unit A (`fwa`) is the primary, unit B (`fwb`) the secondary; both list the
//! same interfaces (outside on `out0`, inside on `in0`), the failover link on
//! `fo0` and the state link on `st0`, with the addresses of
//! [`crate::topology::addr`].

use std::fmt::Write;
use std::path::Path;

use crate::topology::addr;

/// The failover key every lab pair uses unless a test sets another.
pub const LAB_KEY: &str = "hex 00112233445566778899aabbccddeeff";

/// Virtual MACs (active, standby) of the outside and inside interfaces.
pub const VMAC_OUTSIDE: (&str, &str) = ("0200.0000.0a01", "0200.0000.0a02");
pub const VMAC_INSIDE: (&str, &str) = ("0200.0000.0b01", "0200.0000.0b02");

/// The outside active virtual MAC in colon form (a pktgen destination).
pub const VMAC_OUTSIDE_COLONS: &str = "02:00:00:00:0a:01";

/// What varies between the lab's pair configurations.
#[derive(Clone, Debug)]
pub struct PairConfig {
    /// Unit name (`fwa`, `fwb`, …), also the log-file stem.
    pub name: String,
    /// `primary` or `secondary`.
    pub role: String,
    /// `auto`, `af_xdp` or `io_uring`; `None` leaves the profile's default.
    pub backend: Option<String>,
    /// The failover key line's value; `None` runs in clear text.
    pub key: Option<String>,
    /// Unit polltime / holdtime in milliseconds.
    pub unit_timers_ms: (u64, u64),
    /// Interface polltime / holdtime in milliseconds.
    pub interface_timers_ms: (u64, u64),
    /// Whether the outside and inside interfaces count for the interface policy.
    pub monitored: (bool, bool),
    /// Configure the virtual MACs of [`VMAC_OUTSIDE`] and [`VMAC_INSIDE`].
    pub virtual_macs: bool,
    /// Security levels (outside, inside) for a stateful unit; `None` leaves
    /// the key out (a stateless router unless `extra` makes it stateful).
    pub security_levels: Option<(u8, u8)>,
    /// TOML appended verbatim after the generated sections (NAT, access
    /// rules, timeouts, … for the stateful tests).
    pub extra: String,
    /// Keys appended to the `[failover]` section verbatim.
    pub failover_extra: String,
}

impl PairConfig {
    /// Unit `name` in `role`, with the lab's defaults: the lab key, 10/30 ms
    /// unit timers, 10/50 ms interface timers, unmonitored interfaces and
    /// virtual MACs.
    pub fn new(name: &str, role: &str) -> PairConfig {
        PairConfig {
            name: name.into(),
            role: role.into(),
            backend: None,
            key: Some(LAB_KEY.into()),
            unit_timers_ms: (10, 30),
            interface_timers_ms: (10, 50),
            monitored: (false, false),
            virtual_macs: true,
            security_levels: None,
            extra: String::new(),
            failover_extra: String::new(),
        }
    }

    /// The primary unit A.
    pub fn primary() -> PairConfig {
        PairConfig::new("fwa", "primary")
    }

    /// The secondary unit B.
    pub fn secondary() -> PairConfig {
        PairConfig::new("fwb", "secondary")
    }

    /// The TOML file, with `socket` as the control socket.
    pub fn render(&self, socket: &Path) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "[unit]\nname = \"{}\"\nprofile = \"lab\"\ncontrol_socket = \"{}\"\n",
            self.name,
            socket.display()
        );
        if let Some(b) = &self.backend {
            let _ = writeln!(s, "backend = \"{b}\"");
        }
        let ifaces = [
            (
                "outside",
                "out0",
                addr::OUTSIDE_UNIT,
                addr::OUTSIDE_UNIT_B,
                VMAC_OUTSIDE,
                self.monitored.0,
                self.security_levels.map(|l| l.0),
            ),
            (
                "inside",
                "in0",
                addr::INSIDE_UNIT,
                addr::INSIDE_UNIT_B,
                VMAC_INSIDE,
                self.monitored.1,
                self.security_levels.map(|l| l.1),
            ),
        ];
        for (name, dev, active, standby, vmac, monitored, level) in ifaces {
            let _ = write!(
                s,
                "\n[[interface]]\nname = \"{name}\"\ndevice = \"{dev}\"\naddress = \"{active}/{}\"\nstandby_address = \"{standby}\"\nmonitored = {monitored}\n",
                addr::PREFIX_LEN
            );
            if let Some(l) = level {
                let _ = writeln!(s, "security_level = {l}");
            }
            if self.virtual_macs {
                let _ = write!(
                    s,
                    "virtual_mac_active = \"{}\"\nvirtual_mac_standby = \"{}\"\n",
                    vmac.0, vmac.1
                );
            }
        }
        let _ = write!(
            s,
            "\n[failover]\nrole = \"{}\"\nlink_device = \"fo0\"\nlink_active_ip = \"{}\"\nlink_standby_ip = \"{}\"\nstate_device = \"st0\"\n",
            self.role,
            addr::FAILOVER_A,
            addr::FAILOVER_B
        );
        if let Some(k) = &self.key {
            let _ = writeln!(s, "key = \"{k}\"");
        }
        let (up, uh) = self.unit_timers_ms;
        let (ip, ih) = self.interface_timers_ms;
        let _ = write!(
            s,
            "unit_polltime = \"{up}ms\"\nunit_holdtime = \"{uh}ms\"\ninterface_polltime = \"{ip}ms\"\ninterface_holdtime = \"{ih}ms\"\nlink_state_polltime = \"10ms\"\n"
        );
        s.push_str(&self.failover_extra);
        if !self.extra.is_empty() {
            s.push('\n');
            s.push_str(&self.extra);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_pair_config_names_every_link_and_timer() {
        let mut c = PairConfig::secondary();
        c.unit_timers_ms = (1, 3);
        c.extra = "[timeouts]\nudp = \"2m\"\n".into();
        let t = c.render(Path::new("/run/x.sock"));
        for want in [
            "name = \"fwb\"",
            "role = \"secondary\"",
            "control_socket = \"/run/x.sock\"",
            "device = \"out0\"",
            "device = \"in0\"",
            "link_device = \"fo0\"",
            "state_device = \"st0\"",
            "unit_polltime = \"1ms\"",
            "unit_holdtime = \"3ms\"",
            "virtual_mac_active = \"0200.0000.0a01\"",
            "[timeouts]",
        ] {
            assert!(t.contains(want), "missing {want} in\n{t}");
        }
        // Extra sections come after [failover], so they are not inside it.
        assert!(t.find("[failover]") < t.find("[timeouts]"));
    }
}
