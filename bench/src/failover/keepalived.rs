//! The reference row: keepalived (VRRPv3) on the same [`PairLab`], each
//! unit forwarding with the Linux kernel, two VRRP instances (VIPs
//! 198.18.1.1 and 198.18.2.1) in a sync group with `use_vmac`, so the VIP's
//! MAC (00:00:5e:00:01:VRID) moves with the master like tandem's virtual
//! MAC. The master is killed as a dead box: an nftables drop-all in its
//! namespace first (killing keepalived alone leaves the kernel forwarding
//! and the VIP in place), then SIGKILL of its keepalived processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_netns::topology::{addr, ensure_tool, PairLab};
use tandem_netns::{log_dir, wait_for, Daemon, Netns};

use super::{ping_server, wait_carrier, Binaries, Options, Stream, Trial, SETTLE};
use crate::forward::BenchError;

const VRID_OUT: u8 = 51;
const VRID_IN: u8 = 52;
/// The VRRP virtual MAC of the outside instance (RFC 5798 §7.3).
const OUTSIDE_VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, VRID_OUT];

/// Unit A's own addresses (B uses the lab's `*_UNIT_B`).
pub(crate) const A_OUT: &str = "198.18.1.3";
pub(crate) const A_IN: &str = "198.18.2.3";

fn err(detail: String) -> BenchError {
    BenchError::Phase {
        phase: "keepalived".into(),
        detail,
    }
}

/// keepalived.conf of one unit.
pub fn config(state: &str, priority: u8, advert_ms: u64) -> String {
    config_with_notify(state, priority, advert_ms, None)
}

/// keepalived.conf of one unit; with `notify`, the sync group runs
/// `notify primary|backup|fault` on its transitions (conntrackd's
/// primary-backup.sh convention).
pub fn config_with_notify(
    state: &str,
    priority: u8,
    advert_ms: u64,
    notify: Option<&Path>,
) -> String {
    let notify = notify.map_or(String::new(), |p| {
        let p = p.display();
        format!(
            "    notify_master \"{p} primary\"\n    notify_backup \"{p} backup\"\n    notify_fault \"{p} fault\"\n"
        )
    });
    let advert = format!("{:.2}", advert_ms as f64 / 1000.0);
    let inst = |name: &str, dev: &str, vrid: u8, vip: std::net::Ipv4Addr| {
        format!(
            r#"vrrp_instance {name} {{
    state {state}
    interface {dev}
    use_vmac vrrp.{vrid}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert}
    virtual_ipaddress {{
        {vip}/24
    }}
}}
"#
        )
    };
    format!(
        "global_defs {{\n    vrrp_version 3\n    script_user root\n}}\n\
         vrrp_sync_group G {{\n    group {{\n        out\n        in\n    }}\n{notify}}}\n{}{}",
        inst("out", "out0", VRID_OUT, addr::OUTSIDE_UNIT),
        inst("in", "in0", VRID_IN, addr::INSIDE_UNIT),
    )
}

/// A keepalived in a unit namespace, foreground, with its own pid files.
pub(crate) struct Keepalived {
    pub(crate) daemon: Daemon,
    vrrp_pidfile: PathBuf,
}

impl Keepalived {
    pub(crate) fn start(ns: &Netns, name: &str, conf: &str) -> Result<Keepalived, BenchError> {
        let dir = log_dir()?;
        let path = dir.join(format!("{}-{name}.conf", ns.name()));
        std::fs::write(&path, conf).map_err(|e| err(format!("write {}: {e}", path.display())))?;
        let pid = dir.join(format!("{}-{name}.pid", ns.name()));
        let vrrp_pidfile = dir.join(format!("{}-{name}-vrrp.pid", ns.name()));
        let chk = dir.join(format!("{}-{name}-chk.pid", ns.name()));
        let mut cmd = ns.cmd("keepalived");
        cmd.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("-f")
            .arg(&path)
            .arg("-p")
            .arg(&pid)
            .arg("-r")
            .arg(&vrrp_pidfile)
            .arg("-c")
            .arg(&chk);
        let daemon = Daemon::spawn_cmd(name, cmd)?;
        Ok(Keepalived {
            daemon,
            vrrp_pidfile,
        })
    }

    /// SIGKILL of the VRRP child (from its pid file) and the parent.
    pub(crate) fn kill(&mut self) -> Result<(), BenchError> {
        if let Some(pid) = read_pid(&self.vrrp_pidfile) {
            // SAFETY: kill has no memory effects; the PID is the VRRP child
            // of the keepalived this trial started, still alive (its parent
            // has not been killed yet, so it was not reparented and reaped
            // by another process in between).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.daemon.signal(libc::SIGKILL)?;
        Ok(())
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        // The Daemon guard stops the parent; the child must not outlive it.
        let _ = self.kill();
    }
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Whether `ns` holds `ip` on any interface.
pub(crate) fn holds(ns: &Netns, ip: &str) -> bool {
    ns.ip(&["-o", "addr", "show"])
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {ip}/")))
}

/// Kernel forwarding with the unit's own addresses on out0 and in0.
pub(crate) fn kernel_unit(ns: &Netns, out: &str, ins: &str) -> Result<(), BenchError> {
    ns.ip(&["addr", "add", &format!("{out}/24"), "dev", "out0"])?;
    ns.ip(&["addr", "add", &format!("{ins}/24"), "dev", "in0"])?;
    for kv in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ] {
        ns.exec("sysctl", &["-qw", kv])?;
    }
    Ok(())
}

/// The drop-all that makes a unit a dead box (IP in and out, forwarded).
pub(crate) fn drop_all(ns: &Netns) -> Result<(), BenchError> {
    ns.exec("nft", &["add", "table", "inet", "dead"])?;
    for (chain, hook) in [
        ("drop_in", "prerouting"),
        ("drop_fwd", "forward"),
        ("drop_out", "output"),
        ("drop_post", "postrouting"),
    ] {
        let spec = format!("{{ type filter hook {hook} priority -500; policy drop; }}");
        ns.exec("nft", &["add", "chain", "inet", "dead", chain, &spec])?;
    }
    Ok(())
}

/// `Entering MASTER STATE` lines in a keepalived log.
fn masters(d: &Daemon) -> u64 {
    d.log().matches("Entering MASTER STATE").count() as u64
}

/// One trial: A master, B backup, stream, dead-box A, wait for B to hold
/// the VIP, read the gap.
pub fn trial(bins: &Binaries, opts: &Options, advert_ms: u64) -> Result<Trial, BenchError> {
    ensure_tool("keepalived", "keepalived")?;
    ensure_tool("nft", "nftables")?;
    let lab = PairLab::new()?;
    wait_carrier(&lab)?;
    kernel_unit(&lab.unit_a, A_OUT, A_IN)?;
    let (b_out, b_in) = (
        addr::OUTSIDE_UNIT_B.to_string(),
        addr::INSIDE_UNIT_B.to_string(),
    );
    kernel_unit(&lab.unit_b, &b_out, &b_in)?;
    for ns in [&lab.unit_a, &lab.unit_b] {
        if !ping_server(ns) {
            return Err(err(format!("{} cannot reach the server", ns.name())));
        }
    }
    let vip = addr::OUTSIDE_UNIT.to_string();
    let vip_in = addr::INSIDE_UNIT.to_string();
    let mut a = Keepalived::start(
        &lab.unit_a,
        "keepalived-a",
        &config("MASTER", 200, advert_ms),
    )?;
    wait_for("keepalived A to hold the VIPs", SETTLE, || {
        holds(&lab.unit_a, &vip) && holds(&lab.unit_a, &vip_in)
    })
    .map_err(|e| err(format!("{e}\n{}", a.daemon.log_tail(30))))?;
    let b = Keepalived::start(
        &lab.unit_b,
        "keepalived-b",
        &config("BACKUP", 100, advert_ms),
    )?;
    wait_for("keepalived B to enter BACKUP", SETTLE, || {
        b.daemon.log().contains("Entering BACKUP STATE")
    })
    .map_err(|e| err(format!("{e}\n{}", b.daemon.log_tail(30))))?;
    let hold = Duration::from_millis(advert_ms * 4);
    let duration = opts.before_kill + hold * 2 + opts.after_takeover;
    let stream = Stream::start(&lab, bins, opts, OUTSIDE_VMAC, duration)?;
    // Traffic time before the kill, also the false-failover watch.
    std::thread::sleep(opts.before_kill);
    let false_failovers = masters(&b.daemon);
    drop_all(&lab.unit_a)?;
    a.kill()?;
    wait_for("keepalived B to hold the VIPs", SETTLE, || {
        holds(&lab.unit_b, &vip) && holds(&lab.unit_b, &vip_in)
    })
    .map_err(|e| err(format!("{e}\n{}", b.daemon.log_tail(30))))?;
    let recv = stream.finish()?;
    Ok(Trial {
        outage_ms: recv.longest_gap_ms,
        false_failovers,
        recv,
    })
}
