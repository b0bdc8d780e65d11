//! Proves `tcp-streams` on a real kernel path: client ─ gateway (kernel
//! forwarding, conntrack, masquerade, strict TCP tracking) ─ server.
//! 1,000 streams complete cleanly through it; flushing the gateway's
//! conntrack table mid-run breaks them, and the tool must say so (report
//! not ok, non-zero exit), or a survival test built on it proves nothing.
//!
//! Run: `cargo test -p tandem-netns --test streams -- --nocapture` as root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_netns::daemon::{log_dir, wait_for, Daemon};
use tandem_netns::streams::{
    run_client, ClientConfig, End, Progress, Server, ServerConfig, ServerReport, StreamsReport,
};
use tandem_netns::topology::{addr, ensure_tool, GatewayLab};
use tandem_netns::{have_privileges, LabError};

const BIN: &str = env!("CARGO_BIN_EXE_tcp-streams");
const CONNS: usize = 1000;
/// Bytes/s per connection: 1,000 × 4 kB/s = 4 MB/s each way.
const RATE: u64 = 4000;

/// The gateway lab with kernel NAT, strict about mid-stream pickup so a
/// connection whose conntrack entry is gone cannot be revived by it.
fn strict_nat_lab() -> Result<GatewayLab, LabError> {
    let lab = GatewayLab::new()?;
    lab.kernel_forwarding()?;
    lab.kernel_masquerade()?;
    lab.unit
        .sysctl("net.netfilter.nf_conntrack_tcp_loose", "0")?;
    Ok(lab)
}

fn scratch(lab: &GatewayLab, name: &str) -> PathBuf {
    log_dir()
        .unwrap()
        .join(format!("{}-{name}", lab.client.name()))
}

fn start_server(lab: &GatewayLab, report: &Path) -> Daemon {
    let listen = format!("{}:5001", addr::INSIDE_SERVER);
    let d = Daemon::spawn(
        &lab.server,
        "tcp-streams-server",
        BIN,
        &[
            "server",
            "--listen",
            &listen,
            "--max-conns",
            &CONNS.to_string(),
            "--deadline",
            "50s",
            "--report",
            &report.to_string_lossy(),
        ],
    )
    .unwrap();
    wait_for("server listening", Duration::from_secs(10), || {
        d.log().contains("listening on")
    })
    .unwrap();
    d
}

fn client_args(duration: &str, drain: &str, control: &Path, report: &Path) -> Vec<String> {
    [
        "client",
        "--connect",
        &format!("{}:5001", addr::INSIDE_SERVER),
        "--conns",
        &CONNS.to_string(),
        "--rate-per-conn",
        &RATE.to_string(),
        "--duration",
        duration,
        "--drain-timeout",
        drain,
        "--deadline",
        "40s",
        "--control",
        &control.to_string_lossy(),
        "--report",
        &report.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read report {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[test]
fn thousand_streams_through_kernel_nat_complete_cleanly() {
    if !have_privileges("thousand_streams_through_kernel_nat_complete_cleanly") {
        return;
    }
    let lab = strict_nat_lab().unwrap();
    let srv_report = scratch(&lab, "pos-server.json");
    let cli_report = scratch(&lab, "pos-client.json");
    let control = scratch(&lab, "pos-control");
    let mut server = start_server(&lab, &srv_report);

    let out = lab
        .client
        .cmd(BIN)
        .args(client_args("4s", "10s", &control, &cli_report))
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: StreamsReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client JSON: {e}\nstderr: {stderr}"));
    eprintln!("{}", r.summary());
    assert!(out.status.success(), "client failed: {}", r.summary());
    assert!(r.ok);
    assert_eq!(r.completed_clean, CONNS, "{}", r.summary());
    assert_eq!(r.bytes_sent, r.bytes_echoed);
    assert_eq!(r.stopped_by, "duration");
    // Every stream carried real data: at least ~3 s at the rate.
    assert!(r
        .connections
        .iter()
        .all(|c| c.end == End::Clean && c.echoed_bytes > RATE * 2));

    server.wait_exit(Duration::from_secs(15)).unwrap();
    let s: ServerReport = read_json(&srv_report);
    eprintln!("{}", s.summary());
    assert!(s.ok, "{}", s.summary());
    assert_eq!(s.accepted, CONNS);
    assert_eq!(s.completed_clean, CONNS);
    assert_eq!(s.bytes_verified, r.bytes_sent);
    // Both directions went through the masquerade: the server saw the
    // gateway's inside address, not the client's.
    assert!(s
        .connections
        .iter()
        .all(|c| c.peer.starts_with(&format!("{}:", addr::INSIDE_UNIT))));
    eprintln!(
        "cost for {CONNS} conns at {RATE} B/s each over {:.1} s: client cpu {:.2} s user + {:.2} s sys, \
         server cpu {:.2} s user + {:.2} s sys",
        r.run_s, r.cpu_user_s, r.cpu_sys_s, s.cpu_user_s, s.cpu_sys_s
    );
}

#[test]
fn conntrack_flush_mid_run_is_reported_as_broken_streams() {
    if !have_privileges("conntrack_flush_mid_run_is_reported_as_broken_streams") {
        return;
    }
    if let Err(e) = ensure_tool("conntrack", "conntrack") {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("conntrack (Debian package conntrack) is needed: {e}");
        }
        eprintln!("SKIP conntrack_flush_mid_run_is_reported_as_broken_streams: no conntrack: {e}");
        return;
    }
    let lab = strict_nat_lab().unwrap();
    let srv_report = scratch(&lab, "neg-server.json");
    let cli_report = scratch(&lab, "neg-client.json");
    let control = scratch(&lab, "neg-control");
    let _server = start_server(&lab, &srv_report);

    let mut cmd = lab.client.cmd(BIN);
    cmd.args(client_args("30s", "3s", &control, &cli_report));
    let mut client = Daemon::spawn_cmd("tcp-streams-client", cmd).unwrap();
    wait_for(
        "all connections established",
        Duration::from_secs(20),
        || client.log().contains("all connections established"),
    )
    .unwrap();
    // Streams are flowing through conntrack entries of the gateway.
    let entries = lab.unit.exec("conntrack", &["-C"]).unwrap();
    let n: usize = String::from_utf8_lossy(&entries.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(n >= CONNS, "gateway tracks {n} connections");

    lab.unit.exec("conntrack", &["-F"]).unwrap();
    // Let the broken streams try to carry on for a while, then stop them.
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&control, "stop\n").unwrap();
    let status = client.wait_exit(Duration::from_secs(20)).unwrap();
    let r: StreamsReport = read_json(&cli_report);
    eprintln!("{}", r.summary());
    assert_eq!(status.code(), Some(1), "{}", r.summary());
    assert!(!r.ok);
    assert_eq!(r.stopped_by, "control");
    assert_eq!(r.established, CONNS, "{}", r.summary());
    // Every stream was broken by the flush; none may pass as clean.
    assert_eq!(r.completed_clean, 0, "{}", r.summary());
    assert_eq!(
        r.reset + r.timed_out + r.ended_early + r.errors,
        CONNS,
        "{}",
        r.summary()
    );
    assert!(r.bytes_echoed < r.bytes_sent);
    // The stall shows the breakage: at least the drain timeout.
    assert!(r.stall_p50_ms >= 1000.0, "{}", r.summary());
}

/// The library API in-process (threads that entered the namespaces), and
/// the stall measurement: a 500 ms blackhole in the gateway (conntrack
/// entries kept) is survived by every stream, and every stream's longest
/// stall covers it — the figure the failover tests read as TCP outage.
#[test]
fn in_process_streams_survive_a_blackhole_and_measure_it() {
    if !have_privileges("in_process_streams_survive_a_blackhole_and_measure_it") {
        return;
    }
    const N: usize = 200;
    let lab = strict_nat_lab().unwrap();
    let listen = format!("{}:5002", addr::INSIDE_SERVER).parse().unwrap();
    let mut scfg = ServerConfig::new(listen);
    scfg.max_conns = Some(N);
    scfg.deadline = Duration::from_secs(40);
    let server = {
        let _in = lab.server.enter().unwrap();
        Server::bind(scfg).unwrap()
    };
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut ccfg = ClientConfig::new(listen, N, 8000, Duration::from_secs(30));
    ccfg.progress = Some(Arc::clone(&progress));
    ccfg.stop = Some(Arc::clone(&stop));
    ccfg.drain_timeout = Duration::from_secs(10);
    let (r, s, outage) = std::thread::scope(|sc| {
        let srv = sc.spawn(move || server.run().unwrap());
        let cli = sc.spawn(|| {
            let _in = lab.client.enter().unwrap();
            run_client(&ccfg).unwrap()
        });
        // Whatever happens here, the client is stopped afterwards, so a
        // failed step does not leave it running for its whole duration.
        let outage = (|| -> Result<Duration, LabError> {
            wait_for("all established", Duration::from_secs(20), || {
                progress.established.load(Ordering::Relaxed) == N
            })?;
            // Traffic is flowing; drop every forwarded packet for 500 ms.
            std::thread::sleep(Duration::from_millis(300));
            let rules = "table ip blackhole {\n\
                 chain hole { type filter hook forward priority -10; policy drop; }\n\
               }\n";
            let path = log_dir()?.join(format!("{}-blackhole.nft", lab.unit.name()));
            std::fs::write(&path, rules).map_err(|source| LabError::Io {
                what: format!("write {}", path.display()),
                source,
            })?;
            let t0 = Instant::now();
            lab.unit.exec("nft", &["-f", &path.to_string_lossy()])?;
            std::thread::sleep(Duration::from_millis(500));
            lab.unit
                .exec("nft", &["delete", "table", "ip", "blackhole"])?;
            let outage = t0.elapsed();
            // Let the streams recover, then stop them.
            std::thread::sleep(Duration::from_secs(2));
            Ok(outage)
        })();
        stop.store(true, Ordering::Relaxed);
        let outage = outage.unwrap();
        (cli.join().unwrap(), srv.join().unwrap(), outage)
    });
    eprintln!("{}\n{}", r.summary(), s.summary());
    assert!(r.ok, "{}", r.summary());
    assert_eq!(r.completed_clean, N);
    assert_eq!(r.stopped_by, "flag");
    assert!(s.ok, "{}", s.summary());
    assert_eq!(s.bytes_verified, r.bytes_sent);
    // Each stream writes every 50 ms, so each had data in flight for all
    // but the first 50 ms of the outage (nft runs inside it, hence 100).
    let min_stall = r
        .connections
        .iter()
        .map(|c| c.longest_stall_ms)
        .fold(f64::INFINITY, f64::min);
    let want = outage.as_secs_f64() * 1e3 - 100.0;
    assert!(
        min_stall >= want,
        "shortest longest-stall {min_stall:.1} ms < outage {outage:?} - 100 ms"
    );
}

/// Refused connections end the binary quickly with status 1 and a report
/// that counts them (no privileges needed: loopback).
#[test]
fn unreachable_server_fails_fast_and_non_zero() {
    let out = Command::new(BIN)
        .args([
            "client",
            "--connect",
            "127.0.0.1:1",
            "--conns",
            "3",
            "--duration",
            "1s",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: StreamsReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.connect_failed, 3, "{}", r.summary());
    assert!(!r.ok);
}
