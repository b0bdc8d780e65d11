//! Lab test: stateful failover with real TCP and UDP through PAT.
//!
//! Two real `tandemd` units in a [`PairLab`] run the stateful data path:
//! the client side (outside, security level 100) is translated by dynamic
//! PAT to the inside VIP on its way to the server (inside, level 0). The
//! connection tracking is strict (no mid-stream TCP pick-up) and PAT ports
//! are random, so a connection survives a failover only if its connection
//! and xlate were replicated over the state link.
//!
//! Traffic is `tandem_netns::streams` (each connection streams a pattern
//! that the server verifies and echoes; the client verifies the echo) and a
//! UDP flow with sequence numbers; the server records the UDP source port,
//! which must never change (the same translation after every failover).
//!
//! Needs root (network namespaces, XDP): skips outside CI, fails under CI=true.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Unit;
use tandem_netns::daemon::{log_dir, wait_until};
use tandem_netns::pair::{PairConfig, VMAC_OUTSIDE_COLONS};
use tandem_netns::streams::{
    run_client, ClientConfig, Progress, Server, ServerConfig, ServerReport, StreamsReport,
};
use tandem_netns::topology::{addr, PairLab};
use tandem_netns::{have_privileges, Netns};

/// Bound on every wait for a state; generous for debug builds on 2 shared cores.
const SETTLE: Duration = Duration::from_secs(30);
const TCP_PORT: u16 = 5001;
const UDP_PORT: u16 = 5002;
/// Pattern bytes per second per TCP connection, written every 200 ms: 1 000
/// connections stay near 20 kpps through an unoptimised tandemd on a busy CI
/// core (at 50 ms writes its RX ring overflowed and SYNs were lost).
const RATE_PER_CONN: u64 = 1000;
const WRITE_INTERVAL: Duration = Duration::from_millis(200);

/// Concurrent TCP connections: the issue's acceptance asks for ≥ 1 000.
fn conns() -> usize {
    std::env::var("TANDEM_LAB_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// The PAT of the whole outside subnet to the inside VIP (the interface's
/// active address, which moves with the failover).
const PAT: &str = r#"[[nat]]
type = "pat"
real = "198.18.1.0/24"
real_interface = "outside"
mapped_interface = "inside"
mapped = "interface"
"#;

fn unit_config(mut c: PairConfig, extra: &str) -> PairConfig {
    c.security_levels = Some((100, 0));
    c.extra = extra.into();
    // These tests are about state, not detection speed (lab_failover and
    // lab_soak cover the 10/30 ms timers): with the three tests' six
    // unoptimised units, streams and bulk syncs on two cores, 10/30 ms
    // hellos were once late enough for a joining B to take the active role
    // at startup (seeds 004), which then voids the test.
    c.unit_timers_ms = (50, 250);
    c
}

fn start(ns: &Netns, c: &PairConfig) -> Unit {
    let socket = log_dir()
        .expect("log dir")
        .join(format!("{}-{}.sock", ns.name(), c.name));
    Unit::start(ns, &c.name, &c.render(&socket)).expect("tandemd starts")
}

fn state(u: &Unit) -> (String, Option<String>) {
    common::failover_state(u)
}

fn wait_state(u: &Unit, this: &str, other: Option<&str>, what: &str) {
    common::wait_failover_state(u, this, other, what, SETTLE);
}

/// Connections in `u`'s table (`show conn count --json`).
fn conn_count(u: &Unit) -> u64 {
    let v = u.ctl_json(&["show", "conn", "count"]);
    ["in_use", "count", "conns"]
        .iter()
        .find_map(|k| v[*k].as_u64())
        .unwrap_or(0)
}

/// Wait until `u` holds at least `n` connections (replicated or bulk-synced).
fn wait_conns(u: &Unit, n: u64, what: &str) {
    wait_conns_for(u, n, what, SETTLE);
}

fn wait_conns_for(u: &Unit, n: u64, what: &str, within: Duration) {
    let ok = wait_until(Instant::now() + within, || conn_count(u) >= n);
    if ok.is_err() {
        panic!(
            "{what}: {} holds {} connections, wanted ≥ {n}\n{}\n{}",
            u.daemon.name(),
            conn_count(u),
            u.ctl(&["show", "failover"]),
            u.log_tail()
        );
    }
}

/// The replicated tables of `u` as comparable keys: each connection's
/// tuple with its translation, and each PAT xlate (`show conn` / `show xlate`).
fn table_keys(u: &Unit) -> (BTreeSet<String>, BTreeSet<String>) {
    let key = |v: &serde_json::Value, fields: &[&str]| {
        fields
            .iter()
            .map(|f| v[*f].to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let conns = u.ctl_json(&["show", "conn"])["conns"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    key(
                        c,
                        &[
                            "proto",
                            "src",
                            "sport",
                            "dst",
                            "dport",
                            "xlated_src",
                            "xlated_sport",
                        ],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let xlates = u.ctl_json(&["show", "xlate"])["xlates"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| key(x, &["proto", "real", "real_port", "mapped", "mapped_port"]))
                .collect()
        })
        .unwrap_or_default();
    (conns, xlates)
}

/// Wait until `u`, a standby, reports its replicated state complete: every
/// stream bulk-synced in the active's epoch and nothing asked for since
/// (`show failover`: replication ready). A connection count alone is reached
/// while a resync's bulk sync still runs, with some connections in the
/// state of the frames that came before it (a kill then stalled them).
fn wait_ready(u: &Unit, what: &str) {
    let ok = wait_until(Instant::now() + SETTLE, || {
        u.ctl_json(&["show", "failover"])["replication"]["ready"] == serde_json::Value::Bool(true)
    });
    if ok.is_err() {
        panic!(
            "{what}: {} never reported its replicated state ready\n{}\n{}",
            u.daemon.name(),
            u.ctl(&["show", "failover"]),
            u.log_tail()
        );
    }
}

/// Wait until the standby is ready and holds every connection and xlate the
/// active holds, with the same translation and TCP state: what a failover
/// needs. Counting connections alone would miss a connection whose xlate or
/// last state change had not arrived.
fn wait_tables_replicated(active: &Unit, standby: &Unit, what: &str) {
    wait_ready(standby, what);
    let missing = || {
        let (ac, ax) = table_keys(active);
        let (sc, sx) = table_keys(standby);
        let c: Vec<_> = ac.difference(&sc).cloned().collect();
        let x: Vec<_> = ax.difference(&sx).cloned().collect();
        (c, x)
    };
    let ok = wait_until(Instant::now() + SETTLE, || {
        let (c, x) = missing();
        c.is_empty() && x.is_empty()
    });
    if ok.is_err() {
        let (c, x) = missing();
        panic!(
            "{what}: {} lacks {} of the active's connections and {} of its xlates\n\
             connections: {c:?}\nxlates: {x:?}\n{}\n{}\n{}\n{}",
            standby.daemon.name(),
            c.len(),
            x.len(),
            standby.ctl(&["show", "failover"]),
            standby.ctl(&["show", "counters"]),
            active.ctl(&["show", "failover"]),
            standby.log_tail()
        );
    }
}

/// Wait until the client's verified echo grows by `bytes`: traffic flows.
fn wait_progress(p: &Progress, bytes: u64, what: &str, owner: &Unit) {
    let from = p.bytes.load(Ordering::Relaxed);
    let ok = wait_until(Instant::now() + SETTLE, || {
        p.bytes.load(Ordering::Relaxed) >= from + bytes
    });
    if ok.is_err() {
        panic!(
            "{what}: the streams stopped ({} bytes echoed since)\n{}\n{}",
            p.bytes.load(Ordering::Relaxed) - from,
            owner.ctl(&["show", "counters"]),
            owner.log_tail()
        );
    }
}

/// A UDP flow client → server with a sequence number in each datagram;
/// the server counts what arrives and from which source.
struct UdpFlow {
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    sources: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

/// A failing assertion unwinds the scope, which then waits for every thread:
/// stop them first so the failure surfaces at once.
impl Drop for UdpFlow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl UdpFlow {
    fn start<'s>(lab: &PairLab, s: &'s std::thread::Scope<'s, '_>) -> UdpFlow {
        let server_sock = {
            let _in = lab.server.enter().expect("enter server ns");
            UdpSocket::bind(SocketAddrV4::new(addr::INSIDE_SERVER, UDP_PORT)).expect("udp bind")
        };
        let client_sock = {
            let _in = lab.client.enter().expect("enter client ns");
            UdpSocket::bind(SocketAddrV4::new(addr::OUTSIDE_CLIENT, 0)).expect("udp bind")
        };
        server_sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let flow = UdpFlow {
            sent: Arc::default(),
            received: Arc::default(),
            sources: Arc::default(),
            stop: Arc::default(),
        };
        let (received, sources, stop) = (
            Arc::clone(&flow.received),
            Arc::clone(&flow.sources),
            Arc::clone(&flow.stop),
        );
        s.spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = server_sock.recv_from(&mut buf) {
                    received.fetch_add(1, Ordering::Relaxed);
                    let mut src = sources.lock().expect("sources");
                    if !src.contains(&from) {
                        println!(
                            "udp: datagram {} arrives from {from}",
                            u64::from_be_bytes(buf[..8].try_into().unwrap_or([0; 8]))
                        );
                        src.push(from);
                    }
                }
            }
        });
        let (sent, stop) = (Arc::clone(&flow.sent), Arc::clone(&flow.stop));
        let dst = SocketAddrV4::new(addr::INSIDE_SERVER, UDP_PORT);
        s.spawn(move || {
            // Bounded: at most 10 minutes of 5 ms ticks.
            for seq in 0u64..120_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = client_sock.send_to(&seq.to_be_bytes(), dst);
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        flow
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Wait until `n` more datagrams arrive: the flow passes.
    fn wait_flowing(&self, n: u64, what: &str) {
        let from = self.received();
        let ok = wait_until(Instant::now() + SETTLE, || self.received() >= from + n);
        assert!(ok.is_ok(), "{what}: the UDP flow stopped");
    }
}

/// TCP streams client → server, started and stopped by the test.
/// Sets its flags when dropped (also while a panic unwinds).
struct StopOnDrop(Vec<Arc<AtomicBool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            f.store(true, Ordering::Relaxed);
        }
    }
}

struct Streams {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    server_stop: Arc<AtomicBool>,
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server_stop.store(true, Ordering::Relaxed);
    }
}

impl Streams {
    #[allow(clippy::type_complexity)]
    fn start<'s>(
        lab: &'s PairLab,
        s: &'s std::thread::Scope<'s, '_>,
        n: usize,
    ) -> (
        Streams,
        std::thread::ScopedJoinHandle<'s, StreamsReport>,
        std::thread::ScopedJoinHandle<'s, ServerReport>,
    ) {
        let streams = Streams {
            progress: Arc::default(),
            stop: Arc::default(),
            server_stop: Arc::default(),
        };
        let listen = SocketAddr::V4(SocketAddrV4::new(addr::INSIDE_SERVER, TCP_PORT));
        let server = {
            let _in = lab.server.enter().expect("enter server ns");
            let mut cfg = ServerConfig::new(listen);
            cfg.stop = Some(Arc::clone(&streams.server_stop));
            cfg.deadline = Duration::from_secs(600);
            Server::bind(cfg).expect("streams server binds")
        };
        let server = s.spawn(move || server.run().expect("streams server"));
        let mut cfg = ClientConfig::new(listen, n, RATE_PER_CONN, Duration::from_secs(600));
        cfg.write_interval = WRITE_INTERVAL;
        // SYN retransmissions come after 1, 3 and 7 s.
        cfg.connect_timeout = Duration::from_secs(15);
        cfg.stop = Some(Arc::clone(&streams.stop));
        cfg.progress = Some(Arc::clone(&streams.progress));
        cfg.drain_timeout = Duration::from_secs(30);
        cfg.deadline = Some(Duration::from_secs(300));
        let client = s.spawn(move || {
            let _in = lab.client.enter().expect("enter client ns");
            run_client(&cfg).expect("streams client")
        });
        (streams, client, server)
    }

    fn wait_established(&self, n: usize, a: &Unit) {
        let ok = wait_until(Instant::now() + Duration::from_secs(120), || {
            self.progress.established.load(Ordering::Relaxed) >= n
        });
        if ok.is_err() {
            panic!(
                "only {} of {n} connections established\n{}\n{}",
                self.progress.established.load(Ordering::Relaxed),
                a.ctl(&["show", "counters"]),
                a.log_tail()
            );
        }
    }
}

fn check_reports(client: &StreamsReport, server: &ServerReport, n: usize) {
    println!("{}", client.summary());
    println!("{}", server.summary());
    assert_eq!(client.reset, 0, "connections reset: {}", client.summary());
    assert_eq!(
        client.completed_clean,
        n,
        "not every connection completed cleanly: {}",
        client.summary()
    );
    assert!(client.ok, "{}", client.summary());
    assert_eq!(
        server.accepted, n,
        "the server accepted more connections than the client opened: a reconnect"
    );
    assert_eq!(server.reset, 0, "server saw resets: {}", server.summary());
    assert_eq!(client.bytes_sent, server.bytes_verified);
}

#[test]
fn pat_connections_survive_sigkill_and_failover_back_and_forth() {
    if !have_privileges("pat_connections_survive_sigkill_and_failover_back_and_forth") {
        return;
    }
    survive_failovers(conns(), PAT, false);
}

/// Flow offload on both units: the workers create the connections, then
/// tandem's XDP program forwards them. They must survive the same
/// failovers: the killed unit's program goes with it, the new active unit
/// offloads them again from its replicated state, and a unit that turns
/// standby clears its fast path before it stops forwarding.
#[test]
fn offloaded_pat_connections_survive_sigkill_and_failover_back_and_forth() {
    if !have_privileges("offloaded_pat_connections_survive_sigkill_and_failover_back_and_forth") {
        return;
    }
    let extra = format!("{PAT}\n[offload]\nenable = true\n");
    survive_failovers(conns().min(200), &extra, true);
}

/// Sum of a counter over a unit's workers (`show counters`).
fn counter(u: &Unit, name: &str) -> u64 {
    let c = u.ctl_json(&["show", "counters"]);
    c["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| w["counters"][name].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until `u` has installed at least `n` fast-path entries more than
/// `since` (both directions of every connection carry data).
fn wait_offloaded(u: &Unit, since: u64, n: u64, what: &str) {
    let ok = wait_until(Instant::now() + SETTLE, || {
        counter(u, "offload_installed") >= since + n
    });
    if ok.is_err() {
        panic!(
            "{what}: {} of {n} directions offloaded\n{}\n{}",
            counter(u, "offload_installed") - since,
            u.ctl(&["show", "counters"]),
            u.log_tail()
        );
    }
}

/// `n` streaming TCP connections and a UDP flow through PAT (`extra`: the
/// stateful keys) survive SIGKILL of the active, its restart and bulk sync,
/// and three manual failovers.
fn survive_failovers(n: usize, extra: &str, offload: bool) {
    let lab = PairLab::new().expect("lab");
    lab.wait_for_carrier(SETTLE).expect("carrier");
    lab.host_checksums_in_software().expect("ethtool");
    if offload {
        lab.napi_on_unit_peers().expect("ethtool");
    }
    let cfg_a = unit_config(PairConfig::primary(), extra);
    let cfg_b = unit_config(PairConfig::secondary(), extra);
    let mut a = start(&lab.unit_a, &cfg_a);
    wait_state(&a, "Active", None, "A alone");
    let mut b = start(&lab.unit_b, &cfg_b);
    wait_state(&a, "Active", Some("Standby Ready"), "A");
    wait_state(&b, "Standby Ready", Some("Active"), "B");

    std::thread::scope(|s| {
        let udp = UdpFlow::start(&lab, s);
        let (streams, client, server) = Streams::start(&lab, s, n);
        streams.wait_established(n, &a);
        udp.wait_flowing(50, "before any failover");
        // Every connection is on the standby before the active dies.
        wait_conns(&b, n as u64, "B before the kill");
        wait_tables_replicated(&a, &b, "B before the kill");
        let per_second = n as u64 * RATE_PER_CONN;
        if offload {
            wait_offloaded(&a, 0, 2 * n as u64, "A before the kill");
            assert!(
                a.ctl(&["show", "conn"]).contains(", offloaded"),
                "show conn marks offloaded connections"
            );
        }

        println!(
            "udp: {} sent before the kill",
            udp.sent.load(Ordering::Relaxed)
        );
        a.daemon.signal(libc::SIGKILL).expect("kill A");
        wait_state(&b, "Active", None, "B after A was killed");
        wait_progress(&streams.progress, per_second, "after SIGKILL of A", &b);
        udp.wait_flowing(50, "after SIGKILL of A");
        if offload {
            wait_offloaded(&b, 0, 2 * n as u64, "B after the kill");
        }

        // A restarts, becomes standby and gets every connection by bulk sync.
        a.daemon
            .wait_exit(Duration::from_secs(10))
            .expect("killed A exits");
        a = start(&lab.unit_a, &cfg_a);
        wait_state(&a, "Standby Ready", Some("Active"), "restarted A");
        wait_conns(&a, n as u64, "A after its restart (bulk sync)");

        // Manual failover back and forth, each with traffic flowing after it.
        for (round, (to, cmd)) in [
            (&a, ["failover", "active"].as_slice()),
            (&a, ["no", "failover", "active"].as_slice()),
            (&a, ["failover", "active"].as_slice()),
        ]
        .into_iter()
        .enumerate()
        {
            let (sb, act) = if cmd.len() == 2 { (&a, &b) } else { (&b, &a) };
            println!(
                "round {round}: {} UDP datagrams sent; standby holds {} connections, active {}",
                udp.sent.load(Ordering::Relaxed),
                conn_count(sb),
                conn_count(act),
            );
            let installed = [
                counter(&a, "offload_installed"),
                counter(&b, "offload_installed"),
            ];
            let out = to.ctl(cmd);
            let (active, standby) = if cmd.len() == 2 { (&a, &b) } else { (&b, &a) };
            wait_state(
                active,
                "Active",
                Some("Standby Ready"),
                &format!("round {round}: {out}"),
            );
            wait_state(standby, "Standby Ready", Some("Active"), "the other unit");
            wait_progress(
                &streams.progress,
                per_second,
                &format!("round {round}"),
                active,
            );
            udp.wait_flowing(50, &format!("round {round}"));
            wait_conns(standby, n as u64, &format!("round {round}: standby"));
            if offload {
                let was = installed[usize::from(std::ptr::eq(active, &b))];
                wait_offloaded(active, was, 2 * n as u64, &format!("round {round}"));
                assert!(
                    counter(standby, "offload_cleared") > 0,
                    "round {round}: the unit that turned standby cleared its fast path"
                );
            }
        }

        streams.stop.store(true, Ordering::Relaxed);
        let client = client.join().expect("client thread");
        streams.server_stop.store(true, Ordering::Relaxed);
        let server = server.join().expect("server thread");
        udp.stop.store(true, Ordering::Relaxed);
        check_reports(&client, &server, n);
        let sources = udp.sources.lock().expect("sources").clone();
        assert_eq!(
            sources.len(),
            1,
            "the UDP flow's translation changed across failovers: {sources:?}"
        );
        assert_eq!(
            sources[0].ip(),
            std::net::IpAddr::V4(addr::INSIDE_UNIT),
            "PAT maps to the inside VIP"
        );
        println!(
            "udp: {} sent, {} received",
            udp.sent.load(Ordering::Relaxed),
            udp.received()
        );
    });
    b.stop().ok();
    a.stop().ok();
}

/// Raw UDP flows from `src` (not an address of the client: untranslated,
/// only tracked) — `flows` distinct source ports, each sent three times
/// (a debug build may drop some under the burst of new connections).
fn udp_flows(lab: &PairLab, src: Ipv4Addr, flows: u16) {
    let pktgen = std::path::Path::new(common::TANDEMD).with_file_name("pktgen");
    assert!(
        pktgen.exists(),
        "{} is missing: `cargo build -p pktgen` into the same target dir first",
        pktgen.display()
    );
    let count = (u64::from(flows) * 3).to_string();
    let out = lab
        .client
        .exec(
            &pktgen.to_string_lossy(),
            &[
                "send",
                "--dev",
                "c0",
                "--backend",
                "io_uring",
                "--dst-mac",
                VMAC_OUTSIDE_COLONS,
                "--src-ip",
                &src.to_string(),
                "--dst-ip",
                &addr::INSIDE_SERVER.to_string(),
                "--flows",
                &flows.to_string(),
                "--count",
                &count,
                "--rate",
                "20000",
                "--duration",
                "20s",
            ],
        )
        .expect("pktgen send");
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

#[test]
fn late_standby_gets_100k_connections_by_bulk_sync_and_takes_over_with_them() {
    if !have_privileges("late_standby_gets_100k_connections_by_bulk_sync_and_takes_over_with_them")
    {
        return;
    }
    // The TCP streams are translated (PAT of the client only); the 100 000
    // UDP flows from two other sources are tracked, untranslated (one PAT
    // address has only 64 512 ports per protocol).
    let pat_client = PAT.replace("198.18.1.0/24", &format!("{}/32", addr::OUTSIDE_CLIENT));
    let lab = PairLab::new().expect("lab");
    lab.wait_for_carrier(SETTLE).expect("carrier");
    lab.host_checksums_in_software().expect("ethtool");
    // The session replication rate paces the bulk sync (seeds 004): kept
    // within what the unoptimised test build applies without falling behind.
    let mut cfg_a = unit_config(PairConfig::primary(), &pat_client);
    let mut cfg_b = unit_config(PairConfig::secondary(), &pat_client);
    // Slower unit timers: 10/30 ms hellos can be late while the unoptimised
    // A creates 110 000 connections, and a joining B that hears none in
    // time takes the active role at startup (seeds 004) and the VIP with it.
    for c in [&mut cfg_a, &mut cfg_b] {
        c.failover_extra = "replication_rate = 20000\n".into();
        c.unit_timers_ms = (100, 500);
    }
    let mut a = start(&lab.unit_a, &cfg_a);
    wait_state(&a, "Active", None, "A alone");
    let n_tcp = 50;
    std::thread::scope(|s| {
        let (streams, client, server) = Streams::start(&lab, s, n_tcp);
        streams.wait_established(n_tcp, &a);
        udp_flows(&lab, Ipv4Addr::new(198, 18, 1, 20), 55_000);
        udp_flows(&lab, Ipv4Addr::new(198, 18, 1, 21), 55_000);
        wait_conns(&a, 100_000 + n_tcp as u64, "A after the flows");
        let total = conn_count(&a);

        // B joins late: everything reaches it by bulk sync.
        let started = Instant::now();
        let mut b = start(&lab.unit_b, &cfg_b);
        wait_state(&b, "Standby Ready", Some("Active"), "late B");
        assert_eq!(
            state(&a).0,
            "Active",
            "A lost the active role when B joined"
        );
        wait_conns_for(&b, total, "B after its bulk sync", Duration::from_secs(90));
        wait_ready(&b, "B after its bulk sync");
        println!(
            "bulk sync: B holds {} connections {:.1} s after it was started",
            conn_count(&b),
            started.elapsed().as_secs_f64()
        );

        a.daemon.signal(libc::SIGKILL).expect("kill A");
        wait_state(&b, "Active", None, "B after A was killed");
        assert!(
            conn_count(&b) >= total,
            "B lost connections at takeover: {}",
            conn_count(&b)
        );
        wait_progress(
            &streams.progress,
            n_tcp as u64 * RATE_PER_CONN,
            "after the kill",
            &b,
        );
        streams.stop.store(true, Ordering::Relaxed);
        let client = client.join().expect("client thread");
        streams.server_stop.store(true, Ordering::Relaxed);
        let server = server.join().expect("server thread");
        check_reports(&client, &server, n_tcp);
        b.stop().ok();
    });
}

#[test]
fn state_link_cut_marks_state_stale_without_failover_and_resyncs_when_restored() {
    if !have_privileges(
        "state_link_cut_marks_state_stale_without_failover_and_resyncs_when_restored",
    ) {
        return;
    }
    let lab = PairLab::new().expect("lab");
    lab.wait_for_carrier(SETTLE).expect("carrier");
    lab.host_checksums_in_software().expect("ethtool");
    let cfg_a = unit_config(PairConfig::primary(), PAT);
    let cfg_b = unit_config(PairConfig::secondary(), PAT);
    let mut a = start(&lab.unit_a, &cfg_a);
    wait_state(&a, "Active", None, "A alone");
    let b = start(&lab.unit_b, &cfg_b);
    wait_state(&b, "Standby Ready", Some("Active"), "B");
    let (first, second) = (100, 100);
    std::thread::scope(|s| {
        let (s1, c1, srv1) = Streams::start(&lab, s, first);
        s1.wait_established(first, &a);
        wait_conns(&b, first as u64, "B before the cut");

        lab.unit_a
            .ip(&["link", "set", "st0", "down"])
            .expect("cut the state link");
        let stale = wait_until(Instant::now() + SETTLE, || {
            // The replication block's flag (the JSON also has a
            // `stale_events` counter, so a bare "stale" would always match).
            let v = b.ctl_json(&["show", "failover"]);
            v.to_string().contains("\"stale\":true")
        });
        assert!(
            stale.is_ok(),
            "B never marked its state stale\n{}",
            b.ctl(&["show", "failover"])
        );
        // New connections while the link is cut: only A has them.
        let listen = SocketAddr::V4(SocketAddrV4::new(addr::INSIDE_SERVER, TCP_PORT + 1));
        // Stopped after its client, like the first: a connection whose
        // client end is gone must fail the reports, not hang the test.
        let server2_stop = Arc::new(AtomicBool::new(false));
        let server2 = {
            let _in = lab.server.enter().expect("enter server ns");
            let mut cfg = ServerConfig::new(listen);
            cfg.max_conns = Some(second);
            cfg.stop = Some(Arc::clone(&server2_stop));
            Server::bind(cfg).expect("second server")
        };
        let srv2 = s.spawn(move || server2.run().expect("second server"));
        let p2 = Arc::new(Progress::default());
        let stop2 = Arc::new(AtomicBool::new(false));
        // A failing assertion stops the second batch too, so it surfaces at
        // once instead of after the client's deadline.
        let _stop_on_panic = StopOnDrop(vec![Arc::clone(&stop2), Arc::clone(&server2_stop)]);
        let mut cfg = ClientConfig::new(listen, second, RATE_PER_CONN, Duration::from_secs(600));
        cfg.write_interval = WRITE_INTERVAL;
        cfg.first_id = 10_000;
        // As the first batch: SYN retransmissions come after 1, 3 and 7 s.
        cfg.connect_timeout = Duration::from_secs(15);
        cfg.deadline = Some(Duration::from_secs(180));
        cfg.stop = Some(Arc::clone(&stop2));
        cfg.progress = Some(Arc::clone(&p2));
        cfg.drain_timeout = Duration::from_secs(30);
        let lab_ref = &lab;
        let c2 = s.spawn(move || {
            let _in = lab_ref.client.enter().expect("enter client ns");
            run_client(&cfg).expect("second client")
        });
        let ok = wait_until(Instant::now() + SETTLE, || {
            p2.established.load(Ordering::Relaxed) >= second
        });
        if ok.is_err() {
            panic!(
                "second batch never established: {} of {second} established, {} ended\n{}\n{}\n{}",
                p2.established.load(Ordering::Relaxed),
                p2.ended.load(Ordering::Relaxed),
                a.ctl(&["show", "counters"]),
                a.ctl(&["show", "failover"]),
                a.log_tail()
            );
        }
        // No failover from the cut.
        assert_eq!(state(&a).0, "Active");
        assert_eq!(state(&b).0, "Standby Ready");

        lab.unit_a
            .ip(&["link", "set", "st0", "up"])
            .expect("restore the state link");
        // Resynchronised: B gets the connections made during the cut.
        wait_conns(
            &b,
            (first + second) as u64,
            "B after the state link returned",
        );
        let fresh = wait_until(Instant::now() + SETTLE, || {
            let v = b.ctl_json(&["show", "failover"]);
            v.to_string().contains("\"stale\":false")
        });
        assert!(
            fresh.is_ok(),
            "B's state still stale after the link returned\n{}",
            b.ctl(&["show", "failover"])
        );
        wait_tables_replicated(&a, &b, "B after the resync");

        // And they survive a failover to B.
        a.daemon.signal(libc::SIGKILL).expect("kill A");
        wait_state(&b, "Active", None, "B after A was killed");
        wait_progress(
            &p2,
            second as u64 * RATE_PER_CONN,
            "second batch after the kill",
            &b,
        );
        s1.stop.store(true, Ordering::Relaxed);
        stop2.store(true, Ordering::Relaxed);
        let r1 = c1.join().expect("client 1");
        s1.server_stop.store(true, Ordering::Relaxed);
        let sr1 = srv1.join().expect("server 1");
        let r2 = c2.join().expect("client 2");
        server2_stop.store(true, Ordering::Relaxed);
        let sr2 = srv2.join().expect("server 2");
        check_reports(&r1, &sr1, first);
        check_reports(&r2, &sr2, second);
    });
    a.stop().ok();
}
