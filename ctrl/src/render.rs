//! Text rendering of the API's structured answers for tandemctl, modelled on
//! appliance `show` output (ASA-style interface blocks, route codes, dotted
//! MAC addresses), so operators read what they are used to. `--json`
//! bypasses this and prints the data as the daemon sent it.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;

use crate::api::{
    parse_mac, ArpView, Command, CommandDone, ConnCountView, ConnsView, CountersView, FailoverHost,
    FailoverStatus, FailoverTransition, InterfaceView, RouteView, VersionView, XlatesView,
};
use crate::config::mask;
use crate::profile::format_cores;
use crate::replication::{ReplicationRole, ReplicationStatus};

/// Render the `data` of a successful answer to `cmd`.
pub fn render(cmd: Command, data: &serde_json::Value) -> Result<String, String> {
    fn decode<T: DeserializeOwned>(cmd: Command, v: &serde_json::Value) -> Result<T, String> {
        T::deserialize(v).map_err(|e| format!("unexpected answer to `{cmd}` from tandemd: {e}"))
    }
    Ok(match cmd {
        Command::ShowInterface => interfaces(&decode::<Vec<InterfaceView>>(cmd, data)?),
        Command::ShowRoute => routes(&decode::<Vec<RouteView>>(cmd, data)?),
        Command::ShowArp => arp(&decode::<Vec<ArpView>>(cmd, data)?),
        Command::ShowCounters => counters(&decode::<CountersView>(cmd, data)?),
        Command::ShowVersion => version(&decode::<VersionView>(cmd, data)?),
        Command::ShowConn => conns(&decode::<ConnsView>(cmd, data)?),
        Command::ShowConnCount => conn_count(&decode::<ConnCountView>(cmd, data)?),
        Command::ShowXlate => xlates(&decode::<XlatesView>(cmd, data)?),
        Command::ShowFailover => failover(&decode::<FailoverStatus>(cmd, data)?),
        Command::ShowFailoverState => failover_state(&decode::<FailoverStatus>(cmd, data)?),
        Command::ShowMonitorInterface => monitor_interface(&decode::<FailoverStatus>(cmd, data)?),
        Command::ShowFailoverHistory => history(&decode::<Vec<FailoverTransition>>(cmd, data)?),
        Command::FailoverActive
        | Command::NoFailoverActive
        | Command::FailoverReset
        | Command::NoFailover
        | Command::Failover
        | Command::WriteStandby
        | Command::ConfigReload
        | Command::ConfigReloadForce => decode::<CommandDone>(cmd, data)?.message + "\n",
        // The answer is the target unit's own answer to the command, rendered the same way.
        Command::Exec(e) => render(e.command(), data)?,
    })
}

/// `0200.0000.0001` (the appliance's dotted form) from `02:00:00:00:00:01`.
pub fn dotted_mac(mac: &str) -> String {
    match parse_mac(mac) {
        Some(m) => format!(
            "{:02x}{:02x}.{:02x}{:02x}.{:02x}{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        None => mac.to_string(),
    }
}

fn netmask(prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(mask(prefix_len))
}

pub fn interfaces(list: &[InterfaceView]) -> String {
    let mut s = String::new();
    for i in list {
        let admin = match i.admin_up {
            Some(true) => "up",
            Some(false) => "administratively down",
            None => "unknown",
        };
        let line = match i.link_up {
            Some(true) => "up",
            Some(false) => "down",
            None => "unknown",
        };
        let _ = writeln!(
            s,
            "Interface {} \"{}\", is {admin}, line protocol is {line}",
            i.device, i.name
        );
        let _ = writeln!(
            s,
            "        MAC address {}, MTU {}",
            dotted_mac(&i.mac),
            i.mtu
        );
        let _ = writeln!(
            s,
            "        IP address {}, subnet mask {}",
            i.address,
            netmask(i.prefix_len)
        );
    }
    if list.is_empty() {
        s.push_str("No interfaces configured\n");
    }
    s
}

pub fn routes(list: &[RouteView]) -> String {
    let mut s = String::from("Codes: C - connected, S - static, * - candidate default\n\n");
    match list
        .iter()
        .find(|r| r.prefix_len == 0 && r.next_hop.is_some())
    {
        Some(d) => {
            let _ = writeln!(
                s,
                "Gateway of last resort is {} to network 0.0.0.0\n",
                d.next_hop.unwrap_or(Ipv4Addr::UNSPECIFIED)
            );
        }
        None => s.push_str("Gateway of last resort is not set\n\n"),
    }
    for r in list {
        let mut code = String::from(if r.kind == "connected" { "C" } else { "S" });
        if r.prefix_len == 0 {
            code.push('*');
        }
        let dest = format!("{} {}", r.prefix, netmask(r.prefix_len));
        let via = match r.next_hop {
            Some(g) => format!("via {g}, {}", r.interface),
            None => format!("is directly connected, {}", r.interface),
        };
        let _ = writeln!(s, "{code:<8} {dest} {via}");
    }
    s
}

pub fn arp(list: &[ArpView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.interface.clone(),
                e.address.to_string(),
                e.mac
                    .as_deref()
                    .map(dotted_mac)
                    .unwrap_or_else(|| "-".into()),
                (e.age_ms / 1000).to_string(),
                e.state.clone(),
            ]
        })
        .collect();
    let mut s = table(&rows, &[false, false, false, true, false], "        ");
    let _ = writeln!(s, "Total number of ARP entries: {}", list.len());
    s
}

pub fn counters(v: &CountersView) -> String {
    let mut s = String::new();
    for w in &v.workers {
        let core = w
            .core
            .map(|c| format!("core {c}"))
            .unwrap_or("not pinned".into());
        let _ = writeln!(s, "Worker {}: {core}, backend {}", w.worker, w.backend);
    }
    s.push('\n');
    let per_worker = v.workers.len() > 1;
    let mut header = vec!["Counter".to_string(), "Total".to_string()];
    if per_worker {
        header.extend(v.workers.iter().map(|w| format!("Worker {}", w.worker)));
    }
    let mut rows = vec![header];
    let mut zero = 0;
    for name in &v.names {
        let vals: Vec<u64> = v
            .workers
            .iter()
            .map(|w| w.counters.get(name).copied().unwrap_or(0))
            .collect();
        let total: u64 = vals.iter().fold(0u64, |a, b| a.wrapping_add(*b));
        // Like `show asp drop`: only what happened, plus the two an operator
        // always looks for.
        if total == 0 && name != "rx" && name != "tx" {
            zero += 1;
            continue;
        }
        let mut row = vec![name.clone(), total.to_string()];
        if per_worker {
            row.extend(vals.iter().map(u64::to_string));
        }
        rows.push(row);
    }
    let right: Vec<bool> = (0..rows[0].len()).map(|i| i > 0).collect();
    s.push_str(&table(&rows, &right, ""));
    if zero > 0 {
        let _ = writeln!(
            s,
            "({zero} {} at zero not shown; `tandemctl show counters --json` lists all)",
            if zero == 1 { "counter" } else { "counters" }
        );
    }
    s
}

pub fn version(v: &VersionView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "tandem Version {}", v.version);
    let _ = writeln!(s, "Unit {} up {}", v.unit, uptime(v.uptime_s));
    let _ = writeln!(s, "Config file: {}", v.config);
    let _ = writeln!(s, "Hardware profile: {} ({})", v.profile, v.profile_source);
    let _ = writeln!(
        s,
        "Cores: management {}, workers {}",
        v.management_core,
        format_cores(&v.worker_cores)
    );
    let _ = writeln!(s, "Packet I/O: {}", v.backend);
    let _ = writeln!(s, "        {}", v.backend_reason);
    s
}

/// `2 days 3 hours`, `1 hour 5 mins`, `4 mins 2 secs`, `9 secs` (the
/// appliance style: the two largest units).
pub fn uptime(secs: u64) -> String {
    let units = [(86_400, "day"), (3600, "hour"), (60, "min"), (1, "sec")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || (!parts.is_empty() && parts.len() < 2) {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.is_empty() {
        "0 secs".to_string()
    } else {
        parts.join(" ")
    }
}

/// Columns padded to their widest cell, separated by two spaces;
/// `right[i]` right-aligns column i.
fn table(rows: &[Vec<String>], right: &[bool], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |x| x.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        let mut line = String::from(indent);
        for (c, cell) in r.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let w = widths[c];
            if right.get(c).copied().unwrap_or(false) {
                let _ = write!(line, "{cell:>w$}");
            } else {
                let _ = write!(line, "{cell:<w$}");
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} seconds", ms / 1000)
    } else {
        format!("{ms} milliseconds")
    }
}

fn host_lines(out: &mut String, title: &str, h: &FailoverHost) {
    let _ = writeln!(out, "        {title}: {} - {}", h.role, h.state);
    if let Some(ms) = h.age_ms {
        let what = if title == "This host" {
            "Active time"
        } else {
            "Last heard"
        };
        let _ = writeln!(out, "                {what}: {} ms ago", ms);
    }
    for i in &h.interfaces {
        let _ = writeln!(
            out,
            "                Interface {} ({}): {} ({})",
            i.name,
            i.ip.as_deref().unwrap_or("0.0.0.0"),
            i.status,
            if i.monitored {
                "Monitored"
            } else {
                "Not-Monitored"
            }
        );
    }
}

/// `show failover`, modelled on the appliance's output.
pub fn failover(v: &FailoverStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Failover {}", if v.failover { "On" } else { "Off" });
    let _ = writeln!(out, "Failover unit {}", v.unit);
    let _ = writeln!(
        out,
        "Failover LAN Interface: {} {} ({}){}",
        v.link_name,
        v.link_device,
        v.link_carrier,
        v.link_failed
            .as_ref()
            .map(|f| format!(", FAILED: {f}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Failover link security: {}, session {}{}",
        v.link_protection,
        if v.link_session { "up" } else { "down" },
        if v.link_rejected > 0 {
            format!(", {} frames from the mate rejected", v.link_rejected)
        } else {
            String::new()
        }
    );
    if let Some(c) = &v.config_sync {
        let _ = writeln!(out, "Config sync: {c}");
    }
    let _ = writeln!(
        out,
        "Unit Poll frequency {}, holdtime {}",
        secs(v.unit_polltime_ms),
        secs(v.unit_holdtime_ms)
    );
    let _ = writeln!(
        out,
        "Interface Poll frequency {}, holdtime {}",
        secs(v.interface_polltime_ms),
        secs(v.interface_holdtime_ms)
    );
    let _ = writeln!(
        out,
        "Interface Policy {}\nMonitored Interfaces {}",
        v.interface_policy, v.monitored
    );
    if let Some(t) = &v.last_failover {
        let _ = writeln!(
            out,
            "Last Failover at: {} ms after start: {} → {} ({})",
            t.at_ms, t.from, t.to, t.reason
        );
    }
    host_lines(&mut out, "This host", &v.this_host);
    match &v.other_host {
        Some(h) => host_lines(&mut out, "Other host", h),
        None => out.push_str("        Other host: not heard\n"),
    }
    let _ = writeln!(
        out,
        "Stateful Failover Logical Update Statistics\n        Link : {}{}",
        v.state_device.as_deref().unwrap_or(&v.link_device),
        v.state_stale
            .as_ref()
            .map(|s| format!(" (stale: {s})"))
            .unwrap_or_default()
    );
    if let Some(r) = &v.replication {
        replication(&mut out, r);
    }
    out
}

/// An idle time as the appliance prints it: `H:MM:SS`.
fn hms(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `show conn count`: "N in use, M most used".
pub fn conn_count(v: &ConnCountView) -> String {
    format!(
        "{} in use, {} most used\n{} xlates, {} IPsec SAs\n",
        v.in_use, v.most_used, v.xlates, v.sas
    )
}

/// `show conn`: the count line, then one line per connection, e.g.
/// `TCP outside 198.18.1.10:40000 inside 198.18.2.10:5001 xlate 198.18.2.1:61234, idle 0:00:01, ESTABLISHED, replicated`.
pub fn conns(v: &ConnsView) -> String {
    let mut out = format!("{} in use, {} most used\n", v.in_use, v.most_used);
    for c in &v.conns {
        let mut xlate = String::new();
        if (c.xlated_src, c.xlated_sport) != (c.src, c.sport) {
            let _ = write!(xlate, " xlate {}:{}", c.xlated_src, c.xlated_sport);
        }
        if (c.xlated_dst, c.xlated_dport) != (c.dst, c.dport) {
            let _ = write!(xlate, " real {}:{}", c.xlated_dst, c.xlated_dport);
        }
        let _ = writeln!(
            out,
            "{} {} {}:{} {} {}:{}{xlate}, idle {}, {}{}{}",
            c.proto.to_uppercase(),
            c.in_if,
            c.src,
            c.sport,
            c.out_if,
            c.dst,
            c.dport,
            hms(c.idle_ms),
            if c.state == "-" { "open" } else { &c.state },
            if c.replicated { ", replicated" } else { "" },
            if c.offloaded { ", offloaded" } else { "" }
        );
    }
    if (v.conns.len() as u64) < v.in_use {
        let _ = writeln!(out, "({} of {} shown)", v.conns.len(), v.in_use);
    }
    out
}

/// `show xlate`: the count line, then one line per PAT translation.
pub fn xlates(v: &XlatesView) -> String {
    let mut out = format!("{} in use, {} most used\n", v.in_use, v.most_used);
    for x in &v.xlates {
        let _ = writeln!(
            out,
            "{} {} from {}/{} to {}/{}, {} conns, idle {}",
            x.proto.to_uppercase(),
            x.kind.to_uppercase(),
            x.real,
            x.real_port,
            x.mapped,
            x.mapped_port,
            x.conns,
            hms(x.idle_ms)
        );
    }
    if (v.xlates.len() as u64) < v.in_use {
        let _ = writeln!(out, "({} of {} shown)", v.xlates.len(), v.in_use);
    }
    out
}

/// A counter of the sender's / receiver's JSON counters (0 when absent).
fn counter(v: &Option<serde_json::Value>, key: &str) -> u64 {
    v.as_ref()
        .and_then(|v| v.get(key))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// The replication lines of `show failover` (stateful units).
fn replication(out: &mut String, r: &ReplicationStatus) {
    let role = match r.role {
        Some(ReplicationRole::Active) => "sending (active)",
        Some(ReplicationRole::Standby) => "receiving (standby)",
        _ => "idle",
    };
    let _ = writeln!(
        out,
        "        Replication: {role} on {}, {}, session {}{}",
        r.device,
        r.protection,
        if r.session { "up" } else { "down" },
        if r.stale { ", STALE" } else { "" }
    );
    let ready = match r.role {
        Some(ReplicationRole::Active) if r.mate_ready => "mate holds the whole state",
        Some(ReplicationRole::Active) => "mate not synchronised yet",
        Some(ReplicationRole::Standby) if r.ready => "ready (whole state replicated)",
        Some(ReplicationRole::Standby) => "not ready",
        _ => "-",
    };
    let _ = writeln!(
        out,
        "        bulk sync {} % ({} of {}), {}; lag {} frames",
        r.bulk_percent, r.bulk_done, r.bulk_total, ready, r.lag_frames
    );
    if r.sender.is_some() {
        let _ = writeln!(
        out,
        "        Sent: {} records in {} frames, {} retransmissions, {} NAKs received, {} bulk syncs",
        counter(&r.sender, "records_sent"),
        counter(&r.sender, "frames_sent"),
        counter(&r.sender, "retransmits"),
        counter(&r.sender, "naks_received"),
        counter(&r.sender, "bulk_syncs"),
    );
    }
    if r.receiver.is_some() {
        let _ = writeln!(
        out,
        "        Received: {} records in {} frames, {} applied, {} gaps, {} NAKs sent, {} bulk syncs",
        counter(&r.receiver, "records_delivered"),
        counter(&r.receiver, "frames_delivered"),
        r.records_applied,
        counter(&r.receiver, "gaps"),
        counter(&r.receiver, "naks_sent"),
        counter(&r.receiver, "bulk_syncs"),
    );
    }
    if !r.streams.is_empty() {
        let mut rows = vec![vec![
            "Stream".to_string(),
            "Frames".to_string(),
            "Lag".to_string(),
            "Bulk sync".to_string(),
        ]];
        for s in &r.streams {
            rows.push(vec![
                s.stream.to_string(),
                s.frames_sent.or(s.expected).unwrap_or(0).to_string(),
                s.lag_frames.map_or("-".into(), |l| l.to_string()),
                format!(
                    "{} {} % ({} of {})",
                    s.bulk_phase, s.bulk_percent, s.bulk_done, s.bulk_total
                ),
            ]);
        }
        out.push_str(&table(&rows, &[true, true, true, false], "        "));
    }
}

/// `show failover state`.
pub fn failover_state(v: &FailoverStatus) -> String {
    let mut rows = vec![vec![
        String::new(),
        "State".into(),
        "Last Failure Reason".into(),
    ]];
    rows.push(vec![
        format!("This host  - {}", v.this_host.role),
        v.this_host.state.clone(),
        v.link_failed.clone().unwrap_or_else(|| "None".into()),
    ]);
    match &v.other_host {
        Some(h) => rows.push(vec![
            format!("Other host - {}", h.role),
            h.state.clone(),
            "None".into(),
        ]),
        None => rows.push(vec![
            "Other host".into(),
            "Not Detected".into(),
            "None".into(),
        ]),
    }
    table(&rows, &[false, false, false], "")
}

/// `show monitor-interface`.
pub fn monitor_interface(v: &FailoverStatus) -> String {
    let mut out = String::new();
    for (title, h) in [
        ("This host", Some(&v.this_host)),
        ("Other host", v.other_host.as_ref()),
    ] {
        let Some(h) = h else { continue };
        let _ = writeln!(out, "        {title}: {} - {}", h.role, h.state);
        for i in &h.interfaces {
            let _ = writeln!(
                out,
                "                Interface {} ({}): {} ({})",
                i.name,
                i.ip.as_deref().unwrap_or("0.0.0.0"),
                i.status,
                if i.monitored {
                    "Monitored"
                } else {
                    "Not-Monitored"
                }
            );
        }
    }
    out
}

/// `show failover history`.
pub fn history(list: &[FailoverTransition]) -> String {
    let mut rows = vec![vec![
        "Time (ms)".to_string(),
        "From State".into(),
        "To State".into(),
        "Reason".into(),
    ]];
    for t in list {
        rows.push(vec![
            t.at_ms.to_string(),
            t.from.clone(),
            t.to.clone(),
            t.reason.clone(),
        ]);
    }
    table(&rows, &[true, false, false, false], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_uses_the_two_largest_units() {
        assert_eq!(uptime(0), "0 secs");
        assert_eq!(uptime(9), "9 secs");
        assert_eq!(uptime(61), "1 min 1 sec");
        assert_eq!(uptime(3600), "1 hour 0 mins");
        assert_eq!(uptime(3 * 86_400 + 7200 + 5), "3 days 2 hours");
    }

    #[test]
    fn dotted_macs() {
        assert_eq!(dotted_mac("02:00:5e:00:01:fe"), "0200.5e00.01fe");
        assert_eq!(dotted_mac("bogus"), "bogus");
    }

    #[test]
    fn bad_data_is_an_error_not_a_panic() {
        let e = render(Command::ShowVersion, &serde_json::json!([1, 2])).unwrap_err();
        assert!(
            e.starts_with("unexpected answer to `show version` from tandemd:"),
            "{e}"
        );
    }
}
