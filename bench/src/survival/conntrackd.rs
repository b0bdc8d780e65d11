//! The reference row: keepalived + conntrackd on the same [`PairLab`].
//!
//! Each unit forwards with the Linux kernel behind a stateful nftables
//! ruleset equivalent to the tandem row's security levels (new connections
//! only from the client subnet, the rest by conntrack state, invalid
//! packets dropped in forward; the units' own input is left open as on a
//! stock Debian host), and source-translates the client subnet to the
//! inside VIP with random ports (`snat to VIP fully-random`: masquerade
//! would pick the unit's own address on `in0`, which the mate cannot take
//! over). `nf_conntrack_tcp_loose=0`: no mid-stream pick-up, so a
//! connection survives only through its replicated entry.
//!
//! keepalived (VRRPv3, [`ADVERT_MS`] adverts, the failover bench's setup)
//! moves the VIPs; conntrackd runs FTFW over the state link (`st0`) with an
//! external cache, and keepalived's sync group runs conntrackd's documented
//! `primary-backup.sh` steps: on becoming master commit the external cache
//! to the kernel (`-c`), flush the caches (`-f`), resync the internal cache
//! from the kernel (`-R`) and send a bulk update (`-B`); on backup shorten
//! the kernel timers (`-t`) and request a resync (`-n`).

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tandem_netns::topology::{addr, ensure_tool, PairLab};
use tandem_netns::{log_dir, wait_for, Daemon, Netns};

use super::{err, Options, RstCounters, Traffic, Trial, SETTLE};
use crate::failover::keepalived::{
    config_with_notify, drop_all, holds, kernel_unit, Keepalived, A_IN, A_OUT,
};
use crate::forward::BenchError;

/// VRRP advertisement interval (keepalived's smallest).
pub const ADVERT_MS: u64 = 10;

fn e(detail: String) -> BenchError {
    err("conntrackd", detail)
}

/// `tool`'s absolute path (keepalived runs notify scripts with a minimal
/// environment).
fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| Path::new("/usr/sbin").join(tool))
}

/// conntrackd.conf of the unit with state-link address `local`.
pub fn config(local: &str, peer: &str, stem: &Path) -> String {
    let s = stem.display();
    format!(
        r#"Sync {{
    Mode FTFW {{
        DisableExternalCache Off
        CommitTimeout 1800
        PurgeTimeout 5
    }}
    UDP {{
        IPv4_address {local}
        IPv4_Destination_Address {peer}
        Port 3780
        Interface st0
        SndSocketBuffer 1249280
        RcvSocketBuffer 1249280
        Checksum on
    }}
}}
General {{
    HashSize 8192
    HashLimit 65536
    LogFile {s}.log
    Syslog off
    LockFile {s}.lock
    UNIX {{
        Path {s}.ctl
    }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {{
        Protocol Accept {{
            TCP
            UDP
        }}
        Address Ignore {{
            IPv4_address 127.0.0.1
            IPv4_address {fo}/24
            IPv4_address {st}/24
        }}
    }}
}}
"#,
        fo = addr::FAILOVER_NET,
        st = addr::STATE_NET,
    )
}

/// The notify script: conntrackd's primary-backup.sh for one unit, logging
/// when each transition's steps started and finished.
fn notify_script(conntrackd: &Path, conf: &Path, log: &Path) -> String {
    let (c, f, l) = (conntrackd.display(), conf.display(), log.display());
    format!(
        r#"#!/bin/sh
echo "$1 start $(date +%s.%N)" >> {l}
case "$1" in
primary)
    {c} -C {f} -c
    echo "commit done $(date +%s.%N)" >> {l}
    {c} -C {f} -f
    {c} -C {f} -R
    {c} -C {f} -B
    ;;
backup)
    {c} -C {f} -t
    {c} -C {f} -n
    ;;
fault)
    {c} -C {f} -t
    ;;
esac
echo "$1 done $(date +%s.%N)" >> {l}
"#
    )
}

/// The firewall and NAT of a unit (see the module doc); without `filter`
/// only the NAT (packets without a conntrack entry are forwarded as they
/// are, untranslated).
fn firewall(ns: &Netns, file: &Path, filter: bool) -> Result<(), BenchError> {
    let fwd = if filter {
        format!(
            "    chain filter_fwd {{\n        type filter hook forward priority 0; policy drop;\n        ct state established,related accept\n        ip saddr {}/24 ct state new accept\n    }}\n",
            addr::OUTSIDE_NET
        )
    } else {
        String::new()
    };
    let rules = format!(
        r#"table ip survival {{
{fwd}    chain nat_post {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {out}/24 ip daddr {ins}/24 snat to {vip} fully-random
    }}
}}
"#,
        out = addr::OUTSIDE_NET,
        ins = addr::INSIDE_NET,
        vip = addr::INSIDE_UNIT,
    );
    std::fs::write(file, rules).map_err(|x| e(format!("write {}: {x}", file.display())))?;
    ns.exec("nft", &["-f", &file.to_string_lossy()])?;
    ns.exec("sysctl", &["-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])?;
    Ok(())
}

/// One unit's conntrackd and the files around it.
struct Unit {
    daemon: Daemon,
    conf: PathBuf,
    notify: PathBuf,
    notify_log: PathBuf,
}

impl Unit {
    fn start(ns: &Netns, tag: &str, local: &str, peer: &str) -> Result<Unit, BenchError> {
        let dir = log_dir()?;
        let stem = dir.join(format!("{}-conntrackd-{tag}", ns.name()));
        let conf = stem.with_extension("conf");
        std::fs::write(&conf, config(local, peer, &stem))
            .map_err(|x| e(format!("write {}: {x}", conf.display())))?;
        let notify = stem.with_extension("notify.sh");
        let notify_log = stem.with_extension("notify.log");
        std::fs::write(
            &notify,
            notify_script(&which("conntrackd"), &conf, &notify_log),
        )
        .map_err(|x| e(format!("write {}: {x}", notify.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o755))
            .map_err(|x| e(format!("chmod {}: {x}", notify.display())))?;
        let mut cmd = ns.cmd("conntrackd");
        cmd.arg("-C").arg(&conf);
        let mut daemon = Daemon::spawn_cmd(&format!("conntrackd-{tag}"), cmd)?;
        let unit_ok = |d: &mut Daemon| {
            d.is_running()
                && ns
                    .exec("conntrackd", &["-C", &conf.to_string_lossy(), "-s"])
                    .is_ok()
        };
        if wait_for(&format!("conntrackd {tag} to answer"), SETTLE, || {
            unit_ok(&mut daemon) || !daemon.is_running()
        })
        .is_err()
            || !daemon.is_running()
        {
            let log = std::fs::read_to_string(stem.with_extension("log")).unwrap_or_default();
            return Err(e(format!(
                "conntrackd {tag} did not start:\n{}\n{log}",
                daemon.log_tail(20)
            )));
        }
        Ok(Unit {
            daemon,
            conf,
            notify,
            notify_log,
        })
    }

    /// Entries for the TCP port in the external cache (replicated from the mate).
    fn external(&self, ns: &Netns) -> usize {
        ns.exec("conntrackd", &["-C", &self.conf.to_string_lossy(), "-e"])
            .map_or(0, |o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.contains(&format!("dport={}", super::TCP_PORT)))
                    .count()
            })
    }

    /// Wall-clock time (s since the epoch) the notify script finished `what`
    /// (`commit`, `primary`, `backup`, `fault`).
    fn notified(&self, what: &str) -> Option<f64> {
        let log = std::fs::read_to_string(&self.notify_log).ok()?;
        log.lines()
            .filter_map(|l| l.strip_prefix(&format!("{what} done ")))
            .filter_map(|t| t.trim().parse().ok())
            .next_back()
    }
}

fn epoch_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One trial; without `sync` no conntrackd runs (the control row: the
/// same strict kernel firewall, nothing replicated); without `filter` the
/// units only translate (no forward filter).
pub fn trial(
    opts: &Options,
    sync: bool,
    filter: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Trial, BenchError> {
    ensure_tool("keepalived", "keepalived")?;
    if sync {
        ensure_tool("conntrackd", "conntrackd")?;
    }
    ensure_tool("nft", "nftables")?;
    let lab = PairLab::new()?;
    lab.host_checksums_in_software()?;
    lab.wait_for_carrier(SETTLE)?;
    lab.kernel_links()?;
    let dir = log_dir()?;
    kernel_unit(&lab.unit_a, A_OUT, A_IN)?;
    kernel_unit(
        &lab.unit_b,
        &addr::OUTSIDE_UNIT_B.to_string(),
        &addr::INSIDE_UNIT_B.to_string(),
    )?;
    for ns in [&lab.unit_a, &lab.unit_b] {
        firewall(ns, &dir.join(format!("{}-survival.nft", ns.name())), filter)?;
        if !crate::failover::ping_server(ns) {
            return Err(e(format!("{} cannot reach the server", ns.name())));
        }
    }
    let (sa, sb) = (addr::STATE_A.to_string(), addr::STATE_B.to_string());
    let (mut ca, cb) = if sync {
        (
            Some(Unit::start(&lab.unit_a, "a", &sa, &sb)?),
            Some(Unit::start(&lab.unit_b, "b", &sb, &sa)?),
        )
    } else {
        (None, None)
    };
    let notify = |u: &Option<Unit>| u.as_ref().map(|u| u.notify.clone());
    let (vip, vip_in) = (
        addr::OUTSIDE_UNIT.to_string(),
        addr::INSIDE_UNIT.to_string(),
    );
    let conf_a = config_with_notify("MASTER", 200, ADVERT_MS, notify(&ca).as_deref());
    let mut ka = Keepalived::start(&lab.unit_a, "keepalived-a", &conf_a)?;
    wait_for("keepalived A to hold the VIPs", SETTLE, || {
        holds(&lab.unit_a, &vip) && holds(&lab.unit_a, &vip_in)
    })
    .map_err(|x| e(format!("{x}\n{}", ka.daemon.log_tail(30))))?;
    let conf_b = config_with_notify("BACKUP", 100, ADVERT_MS, notify(&cb).as_deref());
    let kb = Keepalived::start(&lab.unit_b, "keepalived-b", &conf_b)?;
    wait_for("keepalived B backup and its notify steps", SETTLE, || {
        kb.daemon.log().contains("Entering BACKUP STATE")
            && cb.as_ref().is_none_or(|u| u.notified("backup").is_some())
            && ca.as_ref().is_none_or(|u| u.notified("primary").is_some())
    })
    .map_err(|x| e(format!("{x}\n{}", kb.daemon.log_tail(30))))?;
    if !crate::failover::ping_server(&lab.client) {
        return Err(e("no ping from the client through the VIP".into()));
    }
    let rsts = RstCounters::install(&lab.switch)?;
    let traffic = Traffic::start(&lab, opts)?;
    traffic.wait_established()?;
    let held = |u: &Unit| u.external(&lab.unit_b);
    if let Some(cb) = &cb {
        let ok = wait_for(
            "B's external cache to hold every connection",
            SETTLE,
            || held(cb) >= opts.conns,
        );
        ok.map_err(|x| {
            e(format!(
                "{x}: B's external cache holds {} of {}\n{}",
                held(cb),
                opts.conns,
                cb.daemon.log_tail(20)
            ))
        })?;
    }
    traffic.wait_flowing()?;
    say(&format!(
        "{} connections established, B's external cache holds {}; dead box A",
        opts.conns,
        cb.as_ref()
            .map_or("nothing (no conntrackd)".into(), |u| held(u).to_string())
    ));
    let before = rsts.read()?;
    let killed_at = epoch_s();
    let killed = Instant::now();
    drop_all(&lab.unit_a)?;
    ka.kill()?;
    if let Some(ca) = ca.as_mut() {
        ca.daemon.signal(libc::SIGKILL)?;
    }
    wait_for("keepalived B to hold the VIPs", SETTLE, || {
        holds(&lab.unit_b, &vip) && holds(&lab.unit_b, &vip_in)
    })
    .map_err(|x| e(format!("{x}\n{}", kb.daemon.log_tail(30))))?;
    let takeover = killed.elapsed();
    // The streams go on through B for the measured time.
    std::thread::sleep(opts.after_kill);
    let mut t = Trial {
        takeover_ms: takeover.as_secs_f64() * 1e3,
        commit_ms: cb
            .as_ref()
            .and_then(|u| u.notified("commit"))
            .map(|s| (s - killed_at) * 1e3),
        ..Trial::default()
    };
    // RSTs of the failover, not of the teardown of connections already lost.
    rsts.count_since(&before, &mut t)?;
    traffic.finish(&mut t)?;
    drop(kb);
    Ok(t)
}
