//! `Dataplane` with running worker threads over in-memory backends: start,
//! gratuitous ARP at start, traffic through a worker, counters, ARP and
//! route snapshots, shutdown, and start-up refusals.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use tandem_dataplane::{ArpState, Dataplane, RouteKind, StartError, WorkerSpec};
use tandem_io::mem::MemBackend;

type Wire = (Sender<(usize, Vec<u8>)>, Receiver<(usize, Vec<u8>)>);

fn worker(core: Option<usize>) -> (WorkerSpec, Wire) {
    let (to_worker, rx) = unbounded();
    let (tx, from_worker) = unbounded();
    let backend = ChanBackend {
        mem: MemBackend::new(2, 256, 2048, 64),
        rx,
        tx,
    };
    (
        WorkerSpec {
            core,
            backend: Box::new(backend),
        },
        (to_worker, from_worker),
    )
}

/// Frames the worker sent, until `want` matches one or 5 s pass.
fn wait_for(rx: &Receiver<(usize, Vec<u8>)>, mut want: impl FnMut(usize, &[u8]) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok((port, f)) = rx.recv_deadline(deadline) {
        if want(port, &f) {
            return true;
        }
    }
    false
}

#[test]
fn start_forward_snapshot_and_shutdown() {
    let (spec, (to_w, from_w)) = worker(Some(0));
    let dp = Dataplane::start(config(), vec![spec]).expect("start");

    // Gratuitous ARP for both owned addresses right at start.
    let mut garp = [false; 2];
    assert!(wait_for(&from_w, |port, f| {
        let (_, a) = parse_arp(f);
        if a.sender_protocol_addr() == a.target_protocol_addr() {
            garp[port] = true;
        }
        garp == [true, true]
    }));

    // The server announces itself; the worker answers and learns it.
    to_w.send((1, arp_request(S_MAC, S_IP, IN_IP))).unwrap();
    assert!(wait_for(&from_w, |port, f| port == 1
        && parse_arp(f).1.operation == etherparse::ArpOperation::REPLY));
    to_w.send((0, udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, b"through")))
        .unwrap();
    assert!(wait_for(&from_w, |port, f| port == 1 && f.ends_with(b"through")));

    // Counters are published per batch: poll until they show the traffic.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = &dp.counters()[0];
        if c.forwarded == 1 && c.rx == 2 {
            assert_eq!((c.worker, c.backend.as_str(), c.core), (0, "mem", Some(0)));
            break;
        }
        assert!(Instant::now() < deadline, "counters not published: {c:?}");
        std::thread::yield_now();
    }

    let arp = dp.arp_table(Duration::from_secs(5));
    assert_eq!(arp.len(), 1);
    assert_eq!(arp[0].ip, S_IP);
    assert_eq!(arp[0].mac, "02:55:00:00:00:20");
    assert_eq!(arp[0].interface, "inside");
    assert_eq!(arp[0].state, ArpState::Reachable);
    let json = serde_json::to_value(&arp).unwrap();
    assert_eq!(json[0]["state"], "reachable");

    let routes = dp.routes();
    assert_eq!(routes.len(), 4);
    assert_eq!(routes[0].kind, RouteKind::Connected);
    assert_eq!(routes[0].interface, "outside");
    assert_eq!(routes[0].prefix.to_string(), "198.18.0.0");

    let last = dp.shutdown();
    assert_eq!(last.len(), 1);
    assert!(last[0].tx_garp >= 2);
    assert_eq!(last[0].forwarded, 1);
}

#[test]
fn two_workers_run_and_stop_on_drop() {
    let (a, _wa) = worker(None);
    let (b, _wb) = worker(None);
    let dp = Dataplane::start(config(), vec![a, b]).expect("start");
    assert_eq!(dp.counters().len(), 2);
    dp.send_gratuitous_arp();
    drop(dp);
}

#[test]
fn start_refuses_what_cannot_work() {
    let err = |cfg, specs| {
        Dataplane::start(cfg, specs)
            .err()
            .expect("must fail")
            .to_string()
    };
    assert!(err(config(), vec![]).contains("no workers"));

    let (mut spec, _w) = worker(None);
    spec.backend = Box::new(MemBackend::new(1, 16, 2048, 4));
    let e = err(config(), vec![spec]);
    assert!(
        e.contains("worker 0: backend mem serves 1 ports but 2 interfaces"),
        "{e}"
    );

    let (mut spec, _w) = worker(None);
    spec.backend = Box::new(MemBackend::new(2, 16, 1024, 4));
    let e = err(config(), vec![spec]);
    assert!(
        e.contains("interface outside mtu 1500 does not fit the 1024-byte frames"),
        "{e}"
    );

    let (spec, _w) = worker(Some(4096));
    let e = Dataplane::start(config(), vec![spec]).err().unwrap();
    assert!(
        matches!(e, StartError::NoSuchCore { core: 4096, .. }),
        "{e}"
    );

    let mut cfg = config();
    cfg.interfaces[1].prefix_len = 40;
    let (spec, _w) = worker(None);
    let e = err(cfg, vec![spec]);
    assert!(
        e.contains("interfaces[1] (inside).prefix_len: 40 is out of range"),
        "{e}"
    );
}
