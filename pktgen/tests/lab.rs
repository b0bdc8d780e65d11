//! Privileged integration test: pktgen sends through the kernel-forwarding
//! GatewayLab (client → unit → server) and the receiver counts what arrives.
//! Runs the real `pktgen` binary in the namespaces, over io_uring and AF_XDP.

use std::time::Duration;

use pktgen::{RecvReport, SendReport};
use tandem_netns::{addr, have_privileges, wait_for, Daemon, GatewayLab};

const BIN: &str = env!("CARGO_BIN_EXE_pktgen");
const COUNT: u64 = 10_000;
const RATE: u64 = 20_000;

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The last JSON object line in a log (stderr lines are interleaved).
fn last_json(log: &str) -> Option<&str> {
    log.lines().rev().find(|l| l.starts_with('{'))
}

/// Send COUNT frames at RATE from client to server through the kernel's
/// forwarding and return the receiver's report, or `None` when the backend
/// reports that it is not implemented yet.
fn through_kernel_forwarding(backend: &str) -> Option<RecvReport> {
    let lab = GatewayLab::new().unwrap();
    lab.kernel_forwarding().unwrap();
    // No tune_for_bench here: its threaded NAPI kthreads are ordinary
    // threads, and on a loaded 2-core machine an unpinned one was seen to
    // stall for 180 ms, overflowing the veth ring (drops on c0's TX). This
    // test is about pktgen, not about benchmark conditions.
    let server_mac = lab.server.mac("s0").unwrap();
    let unit_mac = lab.unit.mac("out0").unwrap();
    // An XDP program on s0 takes the server's ARP replies away from its
    // kernel: resolve the server statically on the unit.
    lab.unit
        .ip(&[
            "neigh",
            "replace",
            &addr::INSIDE_SERVER.to_string(),
            "lladdr",
            &mac_str(server_mac),
            "dev",
            "in0",
            "nud",
            "permanent",
        ])
        .unwrap();

    let count = COUNT.to_string();
    let mut recv = Daemon::spawn(
        &lab.server,
        &format!("pktgen-recv-{backend}"),
        BIN,
        &[
            "recv",
            "--dev",
            "s0",
            "--backend",
            backend,
            "--expected",
            &count,
            "--idle-timeout",
            "2s",
            "--duration",
            "60s",
            "--json",
        ],
    )
    .unwrap();
    wait_for(
        "the receiver to open its backend",
        Duration::from_secs(30),
        || recv.log().contains("pktgen: receiving on") || !recv.is_running(),
    )
    .unwrap();
    if !recv.is_running() {
        let log = recv.log();
        if log.contains("not implemented yet") {
            eprintln!("SKIP {backend}: backend not implemented yet:\n{log}");
            return None;
        }
        panic!("receiver exited early:\n{log}");
    }

    let out = lab
        .client
        .exec(
            BIN,
            &[
                "send",
                "--dev",
                "c0",
                "--backend",
                backend,
                "--dst-mac",
                &mac_str(unit_mac),
                "--src-ip",
                &addr::OUTSIDE_CLIENT.to_string(),
                "--dst-ip",
                &addr::INSIDE_SERVER.to_string(),
                "--count",
                &count,
                "--rate",
                &RATE.to_string(),
                "--duration",
                "30s",
                "--json",
            ],
        )
        .unwrap_or_else(|e| panic!("sender failed: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sent: SendReport =
        serde_json::from_str(last_json(&stdout).expect("sender printed JSON")).unwrap();
    assert_eq!(sent.sent, COUNT, "{sent:?}");

    let status = recv.wait_exit(Duration::from_secs(60)).unwrap();
    let log = recv.log();
    assert!(status.success(), "receiver failed:\n{log}");
    let report: RecvReport =
        serde_json::from_str(last_json(&log).expect("receiver printed JSON")).unwrap();
    eprintln!("{backend}: {sent}\n{report}");
    if report.received * 100 < COUNT * 99 {
        // Say where frames were dropped before the assertion fails.
        for (ns, dev) in [
            (&lab.client, "c0"),
            (&lab.unit, "out0"),
            (&lab.unit, "in0"),
            (&lab.server, "s0"),
        ] {
            let link = ns
                .ip(&["-s", "link", "show", dev])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            let eth = ns
                .exec("ethtool", &["-S", dev])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            eprintln!(
                "{} {dev}:\n{}\n{}",
                ns.name(),
                link.unwrap_or_default(),
                eth.unwrap_or_default()
            );
        }
        if let Ok(o) = lab.unit.exec("nstat", &["-az"]) {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            eprintln!("unit nstat (non-zero drops):");
            for l in s
                .lines()
                .filter(|l| l.contains("Drop") || l.contains("Discard") || l.contains("Err"))
            {
                eprintln!("  {l}");
            }
        }
    }
    Some(report)
}

fn assert_delivered(r: &RecvReport) {
    assert!(
        r.received * 100 >= COUNT * 99,
        "fewer than 99 % of {COUNT} frames arrived: {r:?}"
    );
    assert_eq!(r.duplicates, 0, "{r:?}");
}

#[test]
fn kernel_forwarding_delivers_over_io_uring() {
    if !have_privileges("kernel_forwarding_delivers_over_io_uring") {
        return;
    }
    let r = through_kernel_forwarding("io_uring").expect("io_uring backend is implemented");
    assert_delivered(&r);
}

#[test]
fn kernel_forwarding_delivers_over_afxdp() {
    if !have_privileges("kernel_forwarding_delivers_over_afxdp") {
        return;
    }
    if let Some(r) = through_kernel_forwarding("afxdp") {
        assert_delivered(&r);
    }
}
