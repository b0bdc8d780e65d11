//! Lab topologies built on the fixture: a single gateway between a client
//! and a server ([`GatewayLab`]) and an HA pair on shared outside/inside
//! segments with failover and state links ([`PairLab`]), plus the address
//! plan ([`addr`]) and the veth tuning that makes benchmark numbers mean
//! something (PLATFORM.md, "Measuring forwarding on veth").
//!
//! Each namespace is a [`Netns`] field, so a lab is torn down by dropping
//! it, also when a constructor fails halfway or a test panics.

use std::process::Command;
use std::sync::Mutex;

use crate::{ip, run, veth, LabError, Netns};

/// The lab's address plan, all in 198.18.0.0/15 (RFC 2544), /24 segments.
pub mod addr {
    use std::net::Ipv4Addr;

    /// Prefix length of every lab segment.
    pub const PREFIX_LEN: u8 = 24;

    /// Outside segment (client side).
    pub const OUTSIDE_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 0);
    pub const OUTSIDE_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
    /// The unit's (active) outside address: the client's default gateway.
    pub const OUTSIDE_UNIT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    /// Unit B's standby outside address.
    pub const OUTSIDE_UNIT_B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

    /// Inside segment (server side).
    pub const INSIDE_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 0);
    pub const INSIDE_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
    /// The unit's (active) inside address: the server's default gateway.
    pub const INSIDE_UNIT: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
    /// Unit B's standby inside address.
    pub const INSIDE_UNIT_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);

    /// Failover link between unit A and unit B.
    pub const FAILOVER_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 0);
    pub const FAILOVER_A: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
    pub const FAILOVER_B: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);

    /// State (replication) link between unit A and unit B.
    pub const STATE_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 0);
    pub const STATE_A: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 1);
    pub const STATE_B: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 2);

    /// `a/24`, the form `ip addr add` takes.
    pub fn cidr(a: Ipv4Addr) -> String {
        format!("{a}/{PREFIX_LEN}")
    }
}

use addr::cidr;

/// One process-wide lock so parallel tests do not run apt at the same time.
static INSTALL: Mutex<()> = Mutex::new(());

/// Make sure `tool` is on PATH, installing Debian `package` if it is not.
pub fn ensure_tool(tool: &str, package: &str) -> Result<(), LabError> {
    let on_path = || {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    if on_path() {
        return Ok(());
    }
    let _g = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if on_path() {
        return Ok(());
    }
    let install = || {
        run(Command::new("apt-get")
            .args([
                "-o",
                "DPkg::Lock::Timeout=600",
                "install",
                "-y",
                "--no-install-recommends",
                package,
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        // A fresh machine has no package lists yet.
        run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=600", "update"]))?;
        install()?;
    }
    Ok(())
}

/// GRO on, TSO and TX checksum offload off on `dev` in `ns`, and threaded
/// NAPI where the device has NAPI (PLATFORM.md: without this, receive work
/// of a veth runs on the sender's CPU, and offloaded checksums reach
/// AF_XDP as partial checksums).
fn tune_veth(ns: &Netns, dev: &str) -> Result<(), LabError> {
    ns.exec(
        "ethtool",
        &["-K", dev, "gro", "on", "tso", "off", "tx", "off"],
    )?;
    // Threaded NAPI exists only once the veth has NAPI (GRO on or XDP
    // attached); where the write is refused the kernel keeps softirq NAPI.
    let _ = ns.exec(
        "sh",
        &["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")],
    );
    Ok(())
}

fn tune_all(devs: &[(&Netns, &str)]) -> Result<(), LabError> {
    ensure_tool("ethtool", "ethtool")?;
    for (ns, dev) in devs {
        tune_veth(ns, dev)?;
    }
    Ok(())
}

fn host(
    ns: &Netns,
    dev: &str,
    a: std::net::Ipv4Addr,
    gw: std::net::Ipv4Addr,
) -> Result<(), LabError> {
    ns.ip(&["addr", "add", &cidr(a), "dev", dev])?;
    ns.ip(&["route", "add", "default", "via", &gw.to_string()])?;
    Ok(())
}

/// client ─ c0 ══ out0 ─ unit ─ in0 ══ s0 ─ server.
///
/// Client and server have their addresses and a default route via the
/// unit's address on their segment; the unit's interfaces have no
/// addresses (tandem owns them) until [`GatewayLab::kernel_forwarding`].
#[derive(Debug)]
pub struct GatewayLab {
    pub client: Netns,
    pub unit: Netns,
    pub server: Netns,
}

impl GatewayLab {
    pub fn new() -> Result<GatewayLab, LabError> {
        let lab = GatewayLab {
            client: Netns::new("client")?,
            unit: Netns::new("unit")?,
            server: Netns::new("server")?,
        };
        veth(&lab.client, "c0", &lab.unit, "out0")?;
        veth(&lab.unit, "in0", &lab.server, "s0")?;
        host(&lab.client, "c0", addr::OUTSIDE_CLIENT, addr::OUTSIDE_UNIT)?;
        host(&lab.server, "s0", addr::INSIDE_SERVER, addr::INSIDE_UNIT)?;
        Ok(lab)
    }

    /// The kernel baseline: give the unit namespace the unit addresses and
    /// turn on IPv4 forwarding, so Linux routes between the segments.
    pub fn kernel_forwarding(&self) -> Result<(), LabError> {
        self.unit
            .ip(&["addr", "add", &cidr(addr::OUTSIDE_UNIT), "dev", "out0"])?;
        self.unit
            .ip(&["addr", "add", &cidr(addr::INSIDE_UNIT), "dev", "in0"])?;
        self.unit.sysctl("net.ipv4.ip_forward", "1")
    }

    /// The kernel + conntrack + NAT baseline: an nftables ruleset in the
    /// unit namespace tracking forwarded connections and masquerading
    /// traffic leaving on `in0`. Call after [`GatewayLab::kernel_forwarding`].
    /// Installs nftables if `nft` is missing.
    pub fn kernel_masquerade(&self) -> Result<(), LabError> {
        ensure_tool("nft", "nftables")?;
        let rules = "table ip tandem_lab {\n\
             chain forward {\n\
               type filter hook forward priority filter; policy drop;\n\
               ct state established,related accept\n\
               iifname \"out0\" oifname \"in0\" ct state new accept\n\
             }\n\
             chain postrouting {\n\
               type nat hook postrouting priority srcnat; policy accept;\n\
               oifname \"in0\" masquerade\n\
             }\n\
           }\n";
        let path = crate::log_dir()?.join(format!("{}.nft", self.unit.name()));
        std::fs::write(&path, rules).map_err(|source| LabError::Io {
            what: format!("write {}", path.display()),
            source,
        })?;
        self.unit.exec("nft", &["-f", &path.to_string_lossy()])?;
        Ok(())
    }

    /// TX checksum offload off on the client's and server's veths, so the
    /// frames tandem forwards carry complete L4 checksums (PLATFORM.md: with
    /// offload on, AF_XDP and packet sockets see partial checksums that the
    /// receiving host would then reject). Real NICs have no such issue.
    pub fn host_checksums_in_software(&self) -> Result<(), LabError> {
        ensure_tool("ethtool", "ethtool")?;
        self.client.exec("ethtool", &["-K", "c0", "tx", "off"])?;
        self.server.exec("ethtool", &["-K", "s0", "tx", "off"])?;
        Ok(())
    }

    /// Tune every veth of the lab for benchmarking (see [`tune_veth`]).
    /// Pinning the `napi/<dev>-*` kthreads is left to the caller: they are
    /// re-created whenever XDP attaches or detaches.
    pub fn tune_for_bench(&self) -> Result<(), LabError> {
        tune_all(&[
            (&self.client, "c0"),
            (&self.unit, "out0"),
            (&self.unit, "in0"),
            (&self.server, "s0"),
        ])
    }
}

/// An HA pair between shared segments:
///
/// ```text
///  client c0 ─┐                         ┌─ s0 server
///             br-out (outside bridge) br-in (inside bridge)      [in `switch`]
///   unit_a out0 ─┤  ├─ unit_b out0   unit_a in0 ─┤  ├─ unit_b in0
///   unit_a fo0 ═══ unit_b fo0 (failover link), unit_a st0 ═══ unit_b st0 (state link)
/// ```
///
/// Client and server are addressed with default routes via the active
/// unit addresses; units have no addresses until [`PairLab::kernel_links`]
/// (failover and state links only: the segments belong to tandem).
#[derive(Debug)]
pub struct PairLab {
    pub client: Netns,
    pub unit_a: Netns,
    pub unit_b: Netns,
    pub server: Netns,
    pub switch: Netns,
}

/// Outside and inside bridge names in the `switch` namespace.
pub const OUTSIDE_BRIDGE: &str = "br-out";
pub const INSIDE_BRIDGE: &str = "br-in";

impl PairLab {
    pub fn new() -> Result<PairLab, LabError> {
        let lab = PairLab {
            client: Netns::new("client")?,
            unit_a: Netns::new("unita")?,
            unit_b: Netns::new("unitb")?,
            server: Netns::new("server")?,
            switch: Netns::new("switch")?,
        };
        let sw = &lab.switch;
        for br in [OUTSIDE_BRIDGE, INSIDE_BRIDGE] {
            // STP is off by default, so ports forward as soon as they are up.
            // `name` keeps a short bridge name from parsing as an `ip` keyword.
            sw.ip(&["link", "add", "name", br, "type", "bridge"])?;
            sw.ip(&["link", "set", br, "up"])?;
        }
        let ports: [(&Netns, &str, &str, &str); 6] = [
            (&lab.client, "c0", "client", OUTSIDE_BRIDGE),
            (&lab.unit_a, "out0", "aout", OUTSIDE_BRIDGE),
            (&lab.unit_b, "out0", "bout", OUTSIDE_BRIDGE),
            (&lab.unit_a, "in0", "ain", INSIDE_BRIDGE),
            (&lab.unit_b, "in0", "bin", INSIDE_BRIDGE),
            (&lab.server, "s0", "server", INSIDE_BRIDGE),
        ];
        for (ns, dev, port, br) in ports {
            veth(ns, dev, sw, port)?;
            sw.ip(&["link", "set", port, "master", br])?;
        }
        veth(&lab.unit_a, "fo0", &lab.unit_b, "fo0")?;
        veth(&lab.unit_a, "st0", &lab.unit_b, "st0")?;
        host(&lab.client, "c0", addr::OUTSIDE_CLIENT, addr::OUTSIDE_UNIT)?;
        host(&lab.server, "s0", addr::INSIDE_SERVER, addr::INSIDE_UNIT)?;
        Ok(lab)
    }

    /// Wait (bounded by `timeout` per link) until every data, failover and
    /// state link of both units reports carrier. The kernel publishes a
    /// veth's operstate up to a second after `ip link set up`, and a unit
    /// started before its failover link has carrier follows the seeds'
    /// "failover link failed at startup" row (both units active) instead.
    pub fn wait_for_carrier(&self, timeout: std::time::Duration) -> Result<(), LabError> {
        for ns in [&self.unit_a, &self.unit_b] {
            for dev in ["fo0", "st0", "out0", "in0"] {
                let path = format!("/sys/class/net/{dev}/operstate");
                crate::daemon::wait_for(
                    &format!("{dev} carrier in {}", ns.name()),
                    timeout,
                    || {
                        ns.exec("cat", &[&path])
                            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "up")
                    },
                )?;
            }
        }
        Ok(())
    }

    /// GRO on the switch's ends of both units' data veths. tandem's flow
    /// offload redirects a frame from one of a unit's veths into another
    /// (`bpf_redirect`), and veth takes a redirected frame only when the
    /// receiving peer has NAPI: GRO on, or an XDP program (PLATFORM.md).
    pub fn napi_on_unit_peers(&self) -> Result<(), LabError> {
        ensure_tool("ethtool", "ethtool")?;
        for port in ["aout", "bout", "ain", "bin"] {
            self.switch.exec("ethtool", &["-K", port, "gro", "on"])?;
        }
        Ok(())
    }

    /// TX checksum offload off on the client's and server's veths (see
    /// [`GatewayLab::host_checksums_in_software`]): TCP through tandem needs it.
    pub fn host_checksums_in_software(&self) -> Result<(), LabError> {
        ensure_tool("ethtool", "ethtool")?;
        self.client.exec("ethtool", &["-K", "c0", "tx", "off"])?;
        self.server.exec("ethtool", &["-K", "s0", "tx", "off"])?;
        Ok(())
    }

    /// Address the failover and state links (A .1, B .2) for units whose
    /// hellos and replication go through kernel sockets.
    pub fn kernel_links(&self) -> Result<(), LabError> {
        let plan = [
            (&self.unit_a, "fo0", addr::FAILOVER_A),
            (&self.unit_b, "fo0", addr::FAILOVER_B),
            (&self.unit_a, "st0", addr::STATE_A),
            (&self.unit_b, "st0", addr::STATE_B),
        ];
        for (ns, dev, a) in plan {
            ns.ip(&["addr", "add", &cidr(a), "dev", dev])?;
        }
        Ok(())
    }

    /// Tune every veth of the lab for benchmarking, bridge ports included.
    pub fn tune_for_bench(&self) -> Result<(), LabError> {
        tune_all(&[
            (&self.client, "c0"),
            (&self.unit_a, "out0"),
            (&self.unit_a, "in0"),
            (&self.unit_a, "fo0"),
            (&self.unit_a, "st0"),
            (&self.unit_b, "out0"),
            (&self.unit_b, "in0"),
            (&self.unit_b, "fo0"),
            (&self.unit_b, "st0"),
            (&self.server, "s0"),
            (&self.switch, "client"),
            (&self.switch, "aout"),
            (&self.switch, "bout"),
            (&self.switch, "ain"),
            (&self.switch, "bin"),
            (&self.switch, "server"),
        ])
    }
}

/// Names of all lab namespaces currently present (for leak checks).
pub fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(crate::PREFIX))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::Path;

    fn gone(names: &[String]) -> bool {
        names
            .iter()
            .all(|n| !Path::new(&format!("/var/run/netns/{n}")).exists())
    }

    fn names_of(ns: &[&Netns]) -> Vec<String> {
        ns.iter().map(|n| n.name().to_string()).collect()
    }

    #[test]
    fn gateway_lab_with_kernel_forwarding_lets_client_ping_server() {
        if !crate::have_privileges("gateway_lab_with_kernel_forwarding_lets_client_ping_server") {
            return;
        }
        let names;
        {
            let lab = GatewayLab::new().unwrap();
            names = names_of(&[&lab.client, &lab.unit, &lab.server]);
            // The unit has no addresses: nothing routes yet.
            assert!(lab
                .client
                .exec("ping", &["-c1", "-W1", &addr::INSIDE_SERVER.to_string()])
                .is_err());
            lab.kernel_forwarding().unwrap();
            lab.client
                .exec("ping", &["-c1", "-W2", &addr::INSIDE_SERVER.to_string()])
                .unwrap();
            lab.kernel_masquerade().unwrap();
            lab.tune_for_bench().unwrap();
            lab.client
                .exec("ping", &["-c1", "-W2", &addr::INSIDE_SERVER.to_string()])
                .unwrap();
            let rules = lab.unit.exec("nft", &["list", "ruleset"]).unwrap();
            assert!(String::from_utf8_lossy(&rules.stdout).contains("masquerade"));
            let feats = lab.unit.exec("ethtool", &["-k", "out0"]).unwrap();
            let feats = String::from_utf8_lossy(&feats.stdout);
            assert!(feats.contains("tcp-segmentation-offload: off"), "{feats}");
            assert!(feats.contains("generic-receive-offload: on"), "{feats}");
        }
        assert!(gone(&names), "{names:?}");
    }

    #[test]
    fn pair_lab_segments_reach_both_units() {
        if !crate::have_privileges("pair_lab_segments_reach_both_units") {
            return;
        }
        let names;
        {
            let lab = PairLab::new().unwrap();
            names = names_of(&[
                &lab.client,
                &lab.unit_a,
                &lab.unit_b,
                &lab.server,
                &lab.switch,
            ]);
            // Give the units kernel addresses on the segments for this check only.
            let plan = [
                (&lab.unit_a, "out0", addr::OUTSIDE_UNIT),
                (&lab.unit_b, "out0", addr::OUTSIDE_UNIT_B),
                (&lab.unit_a, "in0", addr::INSIDE_UNIT),
                (&lab.unit_b, "in0", addr::INSIDE_UNIT_B),
            ];
            for (ns, dev, a) in plan {
                ns.ip(&["addr", "add", &cidr(a), "dev", dev]).unwrap();
            }
            for a in [addr::OUTSIDE_UNIT, addr::OUTSIDE_UNIT_B] {
                lab.client
                    .exec("ping", &["-c1", "-W2", &a.to_string()])
                    .unwrap();
            }
            for a in [addr::INSIDE_UNIT, addr::INSIDE_UNIT_B] {
                lab.server
                    .exec("ping", &["-c1", "-W2", &a.to_string()])
                    .unwrap();
            }
            // The segments are separate: the client does not reach an inside address.
            assert!(lab
                .client
                .exec(
                    "ping",
                    &["-c1", "-W1", "-I", "c0", &addr::INSIDE_UNIT_B.to_string()]
                )
                .is_err());
            lab.kernel_links().unwrap();
            lab.unit_a
                .exec("ping", &["-c1", "-W2", &addr::FAILOVER_B.to_string()])
                .unwrap();
            lab.unit_b
                .exec("ping", &["-c1", "-W2", &addr::STATE_A.to_string()])
                .unwrap();
            lab.tune_for_bench().unwrap();
        }
        assert!(gone(&names), "{names:?}");
    }

    #[test]
    fn labs_are_removed_when_the_test_body_panics() {
        if !crate::have_privileges("labs_are_removed_when_the_test_body_panics") {
            return;
        }
        let mut names = Vec::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let g = GatewayLab::new().unwrap();
            let p = PairLab::new().unwrap();
            names = names_of(&[&g.client, &g.unit, &g.server]);
            names.extend(names_of(&[
                &p.client, &p.unit_a, &p.unit_b, &p.server, &p.switch,
            ]));
            assert!(!gone(&names));
            panic!("deliberate panic inside a lab test body");
        }));
        assert!(result.is_err());
        assert_eq!(names.len(), 8);
        assert!(gone(&names), "{names:?}");
        let left: Vec<_> = namespaces()
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
