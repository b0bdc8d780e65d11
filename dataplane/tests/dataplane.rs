//! `Dataplane` with running worker threads over in-memory backends: start,
//! gratuitous ARP at start, traffic through a worker, counters, ARP and
//! route snapshots, shutdown, and start-up refusals; the failover glue:
//! ownership changes and their acknowledgement, punt and inject, and the
//! per-interface counters.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use tandem_dataplane::{
    ArpState, Dataplane, InjectError, OwnershipError, Role, RouteKind, StartError, WorkerSpec,
    INJECT_QUEUE,
};
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

    let (spec, _w) = worker(None);
    let mut own = standby();
    own.interfaces[0].mac = [0xff; 6];
    let e = Dataplane::start_with_ownership(config(), vec![spec], own, Role::Forwarding, true)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "initial ownership: interface outside: MAC ff:ff:ff:ff:ff:ff is not a unicast MAC address"
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

/// Polls `cond` until it holds or 5 s pass.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

fn is_reply_from(f: &[u8], mac: [u8; 6], ip: std::net::Ipv4Addr) -> bool {
    let (eth, a) = parse_arp(f);
    a.operation == etherparse::ArpOperation::REPLY
        && eth.source == mac
        && a.sender_hw_addr() == mac
        && a.sender_protocol_addr() == ip.octets()
}

#[test]
fn a_unit_started_owning_nothing_is_silent_until_it_takes_over() {
    let (spec_a, (to_a, from_a)) = worker(None);
    let (spec_b, (to_b, from_b)) = worker(None);
    let dp = Dataplane::start_with_ownership(
        config(),
        vec![spec_a, spec_b],
        owning_nothing(),
        Role::NotForwarding,
        false,
    )
    .expect("start");
    assert_eq!(dp.ownership_generation(), 0);
    // Negotiating: the active address is not answered, by either worker.
    for to in [&to_a, &to_b] {
        to.send((0, arp_request(C_MAC, C_IP, OUT_IP))).unwrap();
    }
    eventually("both workers saw the request", || {
        dp.counters().iter().all(|c| c.rx_arp_not_owned == 1)
    });
    assert!(
        from_a.try_recv().is_err() && from_b.try_recv().is_err(),
        "no GARP, no reply"
    );

    // Takeover: every worker applies it; worker 0 announces with the new MACs.
    let generation = dp
        .set_ownership(active_virtual(), Role::Forwarding, true)
        .expect("valid");
    assert_eq!(generation, 1);
    eventually("generation 1 applied", || dp.ownership_applied(generation));
    let mut garp = [false; 2];
    assert!(wait_for(&from_a, |port, f| {
        let (eth, a) = parse_arp(f);
        let (mac, ip) = [(V_OUT_MAC, OUT_IP), (V_IN_MAC, IN_IP)][port];
        if eth.source == mac && a.sender_protocol_addr() == ip.octets() {
            garp[port] = true;
        }
        garp == [true, true]
    }));
    for (to, from) in [(&to_a, &from_a), (&to_b, &from_b)] {
        to.send((0, arp_request(C_MAC, C_IP, OUT_IP))).unwrap();
        assert!(wait_for(from, |port, f| port == 0
            && is_reply_from(f, V_OUT_MAC, OUT_IP)));
    }
    let (own, role, g) = dp.ownership();
    assert_eq!((own, role, g), (active_virtual(), Role::Forwarding, 1));
    eventually("worker 0 announced", || dp.counters()[0].tx_garp >= 2);
    assert_eq!(dp.counters()[1].tx_garp, 0, "only worker 0 announces");

    // A refused change sends nothing and keeps the generation.
    let mut bad = standby();
    bad.interfaces.pop();
    let e = dp
        .set_ownership(bad, Role::NotForwarding, false)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ownership lists 1 interfaces but 2 are configured"
    );
    assert_eq!(dp.ownership().2, 1);
}

#[test]
fn ownership_changes_are_never_half_applied_within_a_batch() {
    // Each burst asks, in one batch, for both candidate addresses on both
    // interfaces; the replies of one batch must all come from the same
    // ownership, while the test thread flips it between active and standby.
    let (to_w, rx) = unbounded::<Vec<(usize, Vec<u8>)>>();
    let (tx, from_w) = unbounded();
    let backend = BurstChanBackend::new(MemBackend::new(2, 256, 2048, 64), rx, tx);
    let dp = Dataplane::start_with_ownership(
        config(),
        vec![WorkerSpec {
            core: None,
            backend: Box::new(backend),
        }],
        active_config(),
        Role::Forwarding,
        false,
    )
    .expect("start");
    const BURSTS: u16 = 300;
    let burst = |i: u16| {
        // The burst number rides in the requester's MAC; replies go back to it.
        let c = [0x02, 0xcc, 0, 0, (i >> 8) as u8, i as u8];
        let s = [0x02, 0x55, 0, 0, (i >> 8) as u8, i as u8];
        to_w.send(vec![
            (0, arp_request(c, C_IP, OUT_IP)),
            (0, arp_request(c, C_IP, SB_OUT_IP)),
            (1, arp_request(s, S_IP, IN_IP)),
            (1, arp_request(s, S_IP, SB_IN_IP)),
        ])
        .unwrap();
    };
    let flip = |to_standby: bool| {
        let (own, role) = if to_standby {
            (standby(), Role::NotForwarding)
        } else {
            (active_config(), Role::Forwarding)
        };
        dp.set_ownership(own, role, false).expect("valid")
    };
    // Changes racing the bursts...
    for i in 0..BURSTS - 2 {
        burst(i);
        if i % 3 == 0 {
            flip(i % 2 == 0);
        }
    }
    // Per burst: which ownership answered on each port (true = active).
    let mut seen = vec![[None::<bool>; 2]; usize::from(BURSTS)];
    let deadline = Instant::now() + Duration::from_secs(10);
    // Takes replies until burst `last` has both of its answers.
    let collect = |seen: &mut Vec<[Option<bool>; 2]>, last: u16| {
        while seen[usize::from(last)].contains(&None) {
            let Ok((port, f)) = from_w.recv_deadline(deadline) else {
                panic!("no reply for burst {last}");
            };
            let (eth, a) = parse_arp(&f);
            let i = usize::from(u16::from_be_bytes([eth.destination[4], eth.destination[5]]));
            let active = [OUT_MAC, IN_MAC].contains(&eth.source);
            assert!(
                active || [SB_OUT_MAC, SB_IN_MAC].contains(&eth.source),
                "{:?}",
                eth.source
            );
            assert_eq!(a.sender_hw_addr(), eth.source);
            assert!(seen[i][port].is_none(), "one reply per port per burst");
            seen[i][port] = Some(active);
        }
    };
    // ...and two bursts after acknowledged changes, so both ownerships are
    // seen whatever the interleaving above was. Bursts are answered in
    // order, so once the last one is, all are.
    for (i, to_standby) in [(BURSTS - 2, true), (BURSTS - 1, false)] {
        collect(&mut seen, i - 1);
        let g = flip(to_standby);
        eventually("change applied", || dp.ownership_applied(g));
        burst(i);
    }
    collect(&mut seen, BURSTS - 1);
    let mut both = [0; 2];
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s[0], s[1], "burst {i} saw half an ownership change");
        both[usize::from(s[0] == Some(true))] += 1;
    }
    assert_eq!(seen[usize::from(BURSTS) - 2], [Some(false); 2]);
    assert_eq!(seen[usize::from(BURSTS) - 1], [Some(true); 2]);
    assert!(both[0] >= 1 && both[1] >= 1);
}

#[test]
fn failover_frames_are_punted_to_and_injected_from_the_management_thread() {
    let (a, (to_a, from_a)) = worker(None);
    let (b, (to_b, _from_b)) = worker(None);
    let dp = Dataplane::start(config(), vec![a, b]).expect("start");
    let punted = dp.punted();
    // Any worker punts; the frame carries its interface and bytes.
    let hello_out = tandem_frame(SB_OUT_MAC, OUT_MAC, b"hello from the mate, outside");
    let hello_in = tandem_frame(SB_IN_MAC, [0xff; 6], b"hello from the mate, inside");
    to_a.send((0, hello_out.clone())).unwrap();
    to_b.send((1, hello_in.clone())).unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = punted
            .recv_timeout(Duration::from_secs(5))
            .expect("punted frame");
        assert!(p.at <= dp.now());
        got.push((p.interface, p.worker, p.frame().to_vec()));
    }
    got.sort();
    assert_eq!(got, [(0, 0, hello_out), (1, 1, hello_in)]);

    // Injection goes out of worker 0 on the interface asked for.
    let hello = tandem_frame(IN_MAC, SB_IN_MAC, b"interface hello");
    dp.inject(1, &hello).expect("queued");
    assert!(wait_for(&from_a, |port, f| port == 1 && f.starts_with(&hello)));
    eventually("tx_injected published", || {
        dp.counters()[0].tx_injected == 1
    });

    // Refusals name the interface; nothing is queued.
    let e = |r: Result<(), InjectError>| r.unwrap_err().to_string();
    assert_eq!(
        e(dp.inject(2, &hello)),
        "inject: interface 2 does not exist (2 interfaces configured)"
    );
    assert!(e(dp.inject(0, &[0; 10])).starts_with("inject on outside: a 10-byte frame"));
    assert!(e(dp.inject(0, &[0; 1519])).starts_with("inject on outside: a 1519-byte frame"));
    assert_eq!(dp.interface_index("inside"), Some(1));

    // The interface tests' frames, built by worker 0 from its own state.
    to_a.send((1, arp_request(S_MAC, S_IP, IN_IP))).unwrap();
    assert!(wait_for(&from_a, |port, f| port == 1
        && parse_arp(f).1.operation == etherparse::ArpOperation::REPLY));
    dp.send_arp_probe(1, 0).expect("queued");
    assert!(wait_for(&from_a, |port, f| {
        let a = parse_arp(f).1;
        port == 1
            && a.operation == etherparse::ArpOperation::REQUEST
            && a.target_protocol_addr() == S_IP.octets()
    }));
    dp.send_broadcast_ping(0).expect("queued");
    assert!(wait_for(&from_a, |port, f| port == 0
        && parse_ipv4(f).1.destination == [198, 18, 0, 255]));
    assert_eq!(
        e(dp.send_broadcast_ping(5)),
        "inject: interface 5 does not exist (2 interfaces configured)"
    );
}

/// A backend whose first `rx_burst` blocks until `gate` is dropped: the
/// worker is stuck there, so what piles up in its queues stays.
struct Gated {
    inner: ChanBackend,
    gate: Option<Receiver<()>>,
    /// Told when the worker is about to block.
    entered: Sender<()>,
}

impl tandem_io::Backend for Gated {
    fn name(&self) -> &'static str {
        "mem"
    }
    fn port_count(&self) -> usize {
        self.inner.port_count()
    }
    fn frame_size(&self) -> usize {
        self.inner.frame_size()
    }
    fn rx_burst(&mut self, port: usize, out: &mut [tandem_io::Frame]) -> usize {
        if let Some(gate) = self.gate.take() {
            let _ = self.entered.send(());
            // Returns when the test drops the sender (or after 10 s, so a
            // failing test cannot hang).
            let _ = gate.recv_timeout(Duration::from_secs(10));
        }
        self.inner.rx_burst(port, out)
    }
    fn tx_burst(&mut self, port: usize, frames: &[tandem_io::Frame]) -> usize {
        self.inner.tx_burst(port, frames)
    }
    fn frame(&self, f: tandem_io::Frame) -> &[u8] {
        self.inner.frame(f)
    }
    fn frame_mut(&mut self, f: tandem_io::Frame) -> &mut [u8] {
        self.inner.frame_mut(f)
    }
    fn alloc(&mut self) -> Option<tandem_io::Frame> {
        self.inner.alloc()
    }
    fn free(&mut self, f: tandem_io::Frame) {
        self.inner.free(f)
    }
    fn flush(&mut self) {}
    fn wait(&mut self, timeout: Duration) {
        self.inner.wait(timeout)
    }
    fn stats(&self) -> tandem_io::BackendStats {
        self.inner.stats()
    }
}

#[test]
fn a_stuck_worker_refuses_injections_and_ownership_changes_then_recovers() {
    let (gate_tx, gate) = crossbeam_channel::bounded::<()>(0);
    let (to_w, rx) = unbounded();
    let (tx, from_w) = unbounded();
    let inner = ChanBackend {
        mem: MemBackend::new(2, 1024, 2048, 1024),
        rx,
        tx,
    };
    drop(to_w);
    let (entered_tx, entered) = unbounded();
    let spec = WorkerSpec {
        core: None,
        backend: Box::new(Gated {
            inner,
            gate: Some(gate),
            entered: entered_tx,
        }),
    };
    let own = owning_nothing(); // no GARP to muddle the output
    let dp = Dataplane::start_with_ownership(config(), vec![spec], own, Role::Forwarding, false)
        .expect("start");
    let hello = tandem_frame(OUT_MAC, [0xff; 6], b"hello");
    // Past the top of its first iteration, where injections are taken.
    entered
        .recv_timeout(Duration::from_secs(5))
        .expect("worker running");
    let mut refused = 0;
    for _ in 0..INJECT_QUEUE + 5 {
        match dp.inject(0, &hello) {
            Ok(()) => {}
            Err(InjectError::QueueFull { interface }) => {
                assert_eq!(interface, "outside");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // The worker is held in its first receive: exactly the queue fits.
    assert_eq!(refused, 5);
    assert_eq!(dp.counters()[0].drop_inject_full, 5);
    // Ownership changes pile up in the command queue (16) too; the next one
    // is refused after waiting a second, and says so.
    for g in 1..=16 {
        assert_eq!(
            dp.set_ownership(standby(), Role::NotForwarding, false),
            Ok(g)
        );
    }
    let e = dp
        .set_ownership(active_config(), Role::Forwarding, false)
        .unwrap_err();
    assert!(
        matches!(
            e,
            OwnershipError::Worker {
                worker: 0,
                generation: 17,
                ..
            }
        ),
        "{e}"
    );
    assert!(!dp.ownership_applied(1));
    drop(gate_tx);
    eventually("the queued changes applied", || dp.ownership_applied(16));
    let g = dp
        .set_ownership(active_config(), Role::Forwarding, false)
        .expect("a worker that runs again takes changes");
    eventually("the retry applied", || dp.ownership_applied(g));
    let mut sent = 0;
    assert!(wait_for(&from_w, |port, f| {
        assert!(port == 0 && f.starts_with(&hello));
        sent += 1;
        sent == INJECT_QUEUE
    }));
    let last = dp.shutdown();
    assert_eq!(
        (last[0].tx_injected, last[0].drop_inject_full),
        (INJECT_QUEUE as u64, 5)
    );
}

#[test]
fn interface_counters_count_frames_per_interface_across_workers() {
    let (a, (to_a, _fa)) = worker(None);
    let (b, (to_b, _fb)) = worker(None);
    let dp = Dataplane::start(config(), vec![a, b]).expect("start");
    // Not for this unit, but activity on the segment all the same.
    let foreign = udp(C_MAC, [0x02, 9, 9, 9, 9, 9], C_IP, S_IP, 64, b"x");
    for _ in 0..3 {
        to_a.send((0, foreign.clone())).unwrap();
    }
    to_b.send((0, arp_request(C_MAC, C_IP, OUT_IP))).unwrap();
    to_b.send((1, arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)))
        .unwrap();
    eventually("counters published", || dp.interface_rx() == [4, 1]);
    let c = dp.interface_counters();
    assert_eq!((c[0].rx_arp, c[1].rx_arp, c[1].rx_arp_reply), (1, 1, 1));
    assert_eq!((dp.arp_seen(0), dp.arp_seen(1), dp.arp_seen(9)), (1, 1, 0));
}
