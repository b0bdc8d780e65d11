//! Smoke test of the stateful failover wiring (issue 4) with two real
//! tandemd in a `PairLab`: the standby gets the active unit's state by bulk
//! sync and becomes ready, a TCP connection through PAT is replicated, and
//! it carries on after `failover active` on the standby. The full
//! acceptance tests (1 000 connections, SIGKILL, soak) are in
//! `tests/lab/stateful.rs`.

#[path = "../../tests/lab/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::Unit;
use tandem_netns::daemon::{log_dir, wait_until};
use tandem_netns::topology::{addr, PairLab};
use tandem_netns::{have_privileges, Netns};

const KEY: &str = "hex 00112233445566778899aabbccddeeff";
const SETTLE: Duration = Duration::from_secs(20);
const PORT: u16 = 5001;

fn config(ns: &Netns, name: &str, role: &str) -> String {
    let socket = log_dir()
        .expect("log dir")
        .join(format!("{}-{name}.sock", ns.name()));
    format!(
        r#"[unit]
name = "{name}"
profile = "lab"
control_socket = "{socket}"

[[interface]]
name = "outside"
device = "out0"
address = "{out}/24"
standby_address = "{out_b}"
monitored = false
security_level = 100
virtual_mac_active = "0200.0000.0a01"
virtual_mac_standby = "0200.0000.0a02"

[[interface]]
name = "inside"
device = "in0"
address = "{ins}/24"
standby_address = "{ins_b}"
monitored = false
security_level = 0
virtual_mac_active = "0200.0000.0b01"
virtual_mac_standby = "0200.0000.0b02"

[[nat]]
type = "pat"
real = "198.18.1.0/24"
real_interface = "outside"
mapped_interface = "inside"
mapped = "interface"

[failover]
role = "{role}"
link_device = "fo0"
state_device = "st0"
key = "{KEY}"
unit_polltime = "10ms"
unit_holdtime = "60ms"
interface_polltime = "10ms"
interface_holdtime = "50ms"
link_state_polltime = "10ms"
"#,
        socket = socket.display(),
        out = addr::OUTSIDE_UNIT,
        out_b = addr::OUTSIDE_UNIT_B,
        ins = addr::INSIDE_UNIT,
        ins_b = addr::INSIDE_UNIT_B,
    )
}

fn state(u: &Unit) -> String {
    u.ctl_json(&["show", "failover"])["this_host"]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn wait(u: &Unit, what: &str, mut f: impl FnMut() -> bool) {
    if wait_until(Instant::now() + SETTLE, &mut f).is_err() {
        panic!(
            "timed out waiting for {what}\n{}\n{}",
            u.ctl(&["show", "failover"]),
            u.log_tail()
        );
    }
}

/// An echo server in the server namespace (one connection).
fn echo_server(ns: &Netns) -> std::thread::JoinHandle<()> {
    let g = ns.enter().expect("enter server ns");
    let l = TcpListener::bind((addr::INSIDE_SERVER, PORT)).expect("bind");
    drop(g);
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = s.set_read_timeout(Some(SETTLE));
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

fn echo(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).expect("send");
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got).expect("echo");
    assert_eq!(got, msg);
}

#[test]
fn standby_bulk_syncs_and_a_pat_connection_survives_manual_failover() {
    if !have_privileges("standby_bulk_syncs_and_a_pat_connection_survives_manual_failover") {
        return;
    }
    let lab = PairLab::new().expect("lab");
    lab.wait_for_carrier(SETTLE).expect("carrier");
    // Complete L4 checksums from the hosts (PLATFORM.md: with TX offload on
    // veth, AF_XDP sees partial checksums).
    lab.host_checksums_in_software().expect("ethtool");
    let a =
        Unit::start(&lab.unit_a, "fwa", &config(&lab.unit_a, "fwa", "primary")).expect("tandemd A");
    wait(&a, "A active", || state(&a) == "Active");

    // A connection before the standby exists: it reaches B by bulk sync.
    let server = echo_server(&lab.server);
    let mut c = {
        let _g = lab.client.enter().expect("enter client ns");
        let to = SocketAddr::from((addr::INSIDE_SERVER, PORT));
        TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect through A: {e}\n{}", a.ctl(&["show", "counters"])))
    };
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    echo(&mut c, b"before");
    let count = a.ctl_json(&["show", "conn", "count"]);
    assert!(count["in_use"].as_u64() >= Some(1), "{count}");
    let conns = a.ctl(&["show", "conn"]);
    assert!(conns.contains("TCP outside 198.18.1.10:"), "{conns}");
    assert!(conns.contains("xlate 198.18.2.1:"), "{conns}");

    let b = Unit::start(&lab.unit_b, "fwb", &config(&lab.unit_b, "fwb", "secondary"))
        .expect("tandemd B");
    wait(&b, "B standby", || state(&b) == "Standby Ready");
    wait(&b, "B replication ready", || {
        b.ctl_json(&["show", "failover"])["replication"]["ready"] == true
    });
    wait(&a, "A sees its mate ready", || {
        a.ctl_json(&["show", "failover"])["replication"]["mate_ready"] == true
    });
    let on_b = b.ctl_json(&["show", "conn", "count"]);
    assert!(on_b["in_use"].as_u64() >= Some(1), "replicated: {on_b}");
    let text = b.ctl(&["show", "failover"]);
    assert!(text.contains("bulk sync 100 %"), "{text}");

    // Manual failover to the (ready) standby: immediate, and the
    // connection goes on through B with its translation.
    let out = b.ctl(&["failover", "active"]);
    assert!(out.contains("becoming active"), "{out}");
    wait(&b, "B active", || state(&b) == "Active");
    echo(&mut c, b"after failover");

    // A is now the standby of B's new sender epoch: it gets a bulk sync.
    wait(&a, "A standby and ready", || {
        let v = a.ctl_json(&["show", "failover"]);
        v["this_host"]["state"] == "Standby Ready" && v["replication"]["ready"] == true
    });
    // `no failover active` on B hands back once A holds the state.
    let out = b.ctl(&["no", "failover", "active"]);
    assert!(out.contains("handing the active role"), "{out}");
    wait(&a, "A active again", || state(&a) == "Active");
    echo(&mut c, b"back on A");

    // The active unit dies: B takes over with a new epoch; A, restarted,
    // gets everything by bulk sync.
    let mut a = a;
    a.daemon.signal(libc::SIGKILL).expect("kill A");
    let _ = a.daemon.wait_exit(Duration::from_secs(10));
    wait(&b, "B active after A died", || state(&b) == "Active");
    echo(&mut c, b"after the kill");
    let a = Unit::start(&lab.unit_a, "fwa", &config(&lab.unit_a, "fwa", "primary"))
        .expect("tandemd A again");
    wait(&a, "restarted A ready", || {
        let v = a.ctl_json(&["show", "failover"]);
        v["this_host"]["state"] == "Standby Ready" && v["replication"]["ready"] == true
    });
    wait(&b, "B sees the restarted A ready", || {
        b.ctl_json(&["show", "failover"])["replication"]["mate_ready"] == true
    });
    let on_a = a.ctl_json(&["show", "conn", "count"]);
    assert!(on_a["in_use"].as_u64() >= Some(1), "bulk-synced: {on_a}");
    echo(&mut c, b"still there");
    drop(c);
    let _ = server.join();
}
