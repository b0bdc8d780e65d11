//! Proves the steady-state batch loop allocates nothing: a counting global
//! allocator (only in this test binary) watches the run-loop thread while
//! it forwards UDP, answers ARP and ICMP echo, sends ICMP errors, punts
//! failover frames to (and takes injected frames from) the management
//! queues, publishes per-interface counters, and switches address ownership.

mod common;

use common::*;
use tandem_dataplane::{
    BatchLoop, Forwarder, InjectedFrame, Role, SharedCounters, SharedPortCounters, Timestamp,
};
use tandem_io::mem::MemBackend;

#[global_allocator]
static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;

use tandem_alloc_count::allocs;

#[test]
fn steady_state_batches_allocate_nothing() {
    let cfg = config();
    let mut fwd = Forwarder::new(&cfg).unwrap();
    // The punt queue is smaller than one iteration's punts, so both the
    // delivered and the overflow path run.
    let (punt_tx, punted) = crossbeam_channel::bounded(4);
    fwd.set_punt(punt_tx, 0);
    let mut bl = BatchLoop::new(fwd, &cfg.run);
    let (inject, inject_rx) = crossbeam_channel::bounded(8);
    bl.set_inject_queue(inject_rx);
    let mut b = MemBackend::new(2, 1024, 2048, 256);
    let shared = SharedCounters::default();
    let ports = SharedPortCounters::new(2);
    // Ownership switches between the configured MACs and addresses and
    // another MAC with the same addresses, so forwarding goes on; built
    // once, applied by reference.
    let mine = active_config();
    let mut other = active_config();
    other.interfaces[1].mac = V_IN_MAC;
    let hello = InjectedFrame::new(1, &tandem_frame(IN_MAC, [0xff; 6], b"hello")).unwrap();
    // Traffic mix per iteration, built once.
    let mix = [
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[0; 18]),
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 64, &[1; 18]),
        udp(C_MAC, OUT_MAC, C_IP, S_IP, 1, &[2; 18]),
        echo_request(C_MAC, OUT_MAC, C_IP, OUT_IP),
        arp_request(C_MAC, C_IP, OUT_IP),
        tandem_frame(C_MAC, OUT_MAC, &[9; 64]),
    ];
    let from_s = arp_request(S_MAC, S_IP, IN_IP);
    let mut now = Timestamp::ZERO;
    let mut run = |iters: u64, b: &mut MemBackend, now: &mut Timestamp| {
        let mut forwarded = 0;
        for i in 0..iters {
            *now = *now + std::time::Duration::from_micros(100);
            if i % 100 == 50 {
                let own = if i % 200 == 50 { &other } else { &mine };
                bl.forwarder_mut()
                    .set_ownership(*now, own, Role::Forwarding, i % 400 == 50)
                    .unwrap();
            }
            inject.try_send(hello).unwrap();
            // 5 × 6 frames: within one 32-frame receive burst.
            for _ in 0..5 {
                for f in &mix {
                    assert!(b.inject(0, f));
                }
            }
            assert!(b.inject(1, &from_s));
            bl.poll_once(*now, b);
            shared.publish(&bl.counters(b));
            ports.publish(bl.forwarder().port_counters());
            while punted.try_recv().is_ok() {}
            forwarded += b.drain_tx(1, |_| {}) as u64;
            b.drain_tx(0, |_| {});
        }
        forwarded
    };
    // Warm-up: resolve the server, fill caches and lazily created state.
    run(50, &mut b, &mut now);
    let before = allocs();
    let forwarded = run(2_000, &mut b, &mut now);
    let during = allocs() - before;
    assert_eq!(during, 0, "allocations in steady state");
    assert!(forwarded >= 2_000 * 10, "forwarded {forwarded}");
    let c = shared.load();
    assert!(c.tx_icmp_echo_reply > 0 && c.tx_arp_reply > 0 && c.tx_icmp_error > 0);
    assert!(c.rx_punted > 0 && c.drop_punt_full > 0 && c.tx_injected > 2_000);
    assert!(c.tx_garp > 0, "ownership changes announced");
    assert!(ports.load(0).rx > 2_000 * 30);
    assert_eq!(b.free_frames(), 1024);
}

/// The stateful path (issue 4) in steady state: established PAT flows in
/// both directions through the stateful stage, the expiry sweep, live
/// records into state-link frames, frames handed to (and recycled by) the
/// replication side, inbound frames applied, and a reordered fragmented
/// datagram held and released: no allocation.
#[test]
fn stateful_batches_of_established_flows_allocate_nothing() {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;
    use tandem_dataplane::sync::channels;
    use tandem_dataplane::SyncSettings;

    let mut cfg = stateful_config(4096);
    let sy = SyncSettings {
        buffers_per_worker: 64,
        ..SyncSettings::default()
    };
    cfg.sync = Some(sy);
    let mut fwd = Forwarder::new(&cfg).unwrap();
    let (ws, ep) = channels(
        0,
        64,
        sy.frame_size,
        Arc::new(tandem_io::wake::WakeFd::new().unwrap()),
        Arc::new(tandem_io::wake::WakeFd::new().unwrap()),
    );
    fwd.attach_sync(ws, &sy, 0).unwrap();
    let mut bl = BatchLoop::new(fwd, &cfg.run);
    let mut b = MemBackend::new(2, 1024, 2048, 256);
    let shared = SharedCounters::default();
    let udp_flow = |sport: u16, dport: u16, src_mac, dst_mac, src: Ipv4Addr, dst: Ipv4Addr| {
        let bld = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src.octets(), dst.octets(), 64)
            .udp(sport, dport);
        let mut v = Vec::new();
        bld.write(&mut v, &[7; 18]).unwrap();
        v
    };
    let mut now = Timestamp::ZERO;
    // Neighbours, then 8 UDP flows from the inside host out (PAT).
    assert!(b.inject(0, &arp_reply(C_MAC, C_IP, OUT_MAC, OUT_IP)));
    assert!(b.inject(1, &arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)));
    for i in 0..8 {
        assert!(b.inject(1, &udp_flow(20_000 + i, 53, S_MAC, IN_MAC, S_IP, C_IP)));
    }
    bl.poll_once(now, &mut b);
    let mut mapped = Vec::new();
    b.drain_tx(0, |f| {
        if f.len() >= 42 && f[12..14] == [0x08, 0x00] {
            mapped.push(u16::from_be_bytes([f[34], f[35]]));
        }
    });
    assert_eq!(mapped.len(), 8, "8 flows PAT'ed");
    // Built once: each flow's packets both ways.
    let mut mix = Vec::new();
    for (i, &m) in mapped.iter().enumerate() {
        mix.push((
            1,
            udp_flow(20_000 + i as u16, 53, S_MAC, IN_MAC, S_IP, C_IP),
        ));
        mix.push((0, udp_flow(53, m, C_MAC, OUT_MAC, C_IP, OUT_IP)));
    }
    // And a fragmented datagram whose later fragment arrives ahead of its
    // first: held, then released behind it (`fraghold`).
    let big = {
        let bld = etherparse::PacketBuilder::ethernet2(S_MAC, IN_MAC)
            .ipv4(S_IP.octets(), C_IP.octets(), 64)
            .udp(30_000, 53);
        let mut v = Vec::new();
        bld.write(&mut v, &[9; 2000]).unwrap();
        ip_fragments(&v, 99, 1480)
    };
    mix.push((1, big[1].clone()));
    mix.push((1, big[0].clone()));
    // The replication side: recycles outbound frames, and feeds one back
    // inbound now and then (stamped with an epoch) so the apply path runs.
    let mut run = |iters: u64, b: &mut MemBackend, now: &mut Timestamp| {
        let mut forwarded = 0;
        for i in 0..iters {
            *now = *now + Duration::from_micros(200);
            for (port, f) in &mix {
                assert!(b.inject(*port, f));
            }
            bl.poll_once(*now, b);
            shared.publish(&bl.counters(b));
            forwarded += b.drain_tx(0, |_| {}) as u64 + b.drain_tx(1, |_| {}) as u64;
            while let Ok(mut buf) = ep.outbound.try_recv() {
                if i % 4 == 0 && buf.len() > 24 {
                    buf.as_bytes_mut()[4..8].copy_from_slice(&1u32.to_be_bytes());
                    if let Err(e) = ep.inbound.try_send(buf) {
                        ep.pool.put(e.into_inner());
                    }
                } else {
                    ep.pool.put(buf);
                }
            }
        }
        forwarded
    };
    run(500, &mut b, &mut now);
    let before = allocs();
    let forwarded = run(3_000, &mut b, &mut now);
    let during = allocs() - before;
    assert_eq!(during, 0, "allocations in stateful steady state");
    assert_eq!(forwarded, 3_000 * 18);
    let c = shared.load();
    assert_eq!((c.conns, c.xlates), (9, 9));
    assert_eq!((c.fragments_held, c.drop_fragment), (3_500, 0));
    assert!(c.sync_frames_out > 0 && c.sync_records_applied > 0, "{c:?}");
    assert_eq!(
        c.sync_overflow + c.drop_tcp_no_conn + c.drop_security_level,
        0
    );
}

/// Worker handoff (`tandem_dataplane::handoff`) in steady state: two
/// stateful workers on one thread, PAT'ed UDP flows whose packets arrive on
/// both workers in both directions (so about half are copied to the owner
/// through the rings), ARP requests copied learn-only to the other worker,
/// and a ring small enough to overflow: no allocation.
#[test]
fn handoff_between_workers_allocates_nothing() {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;
    use tandem_dataplane::handoff::mesh;
    use tandem_io::wake::WakeFd;

    let cfg = stateful_config(4096);
    let wakes = [
        Arc::new(WakeFd::new().unwrap()),
        Arc::new(WakeFd::new().unwrap()),
    ];
    // 4 slots per ring: fewer than the crossing frames of a burst (below).
    let mut ends = mesh(4, 2048, &wakes).into_iter();
    let mut w: Vec<BatchLoop> = (0..2)
        .map(|i| {
            let mut fwd = Forwarder::for_worker(&cfg, i, 2).unwrap();
            assert!(fwd.set_handoff(ends.next().unwrap()));
            BatchLoop::new(fwd, &cfg.run)
        })
        .collect();
    let mut b: Vec<MemBackend> = (0..2)
        .map(|_| MemBackend::new(2, 1024, 2048, 256))
        .collect();
    let shared = [SharedCounters::default(), SharedCounters::default()];
    let udp_flow = |sport: u16, dport: u16, src_mac, dst_mac, src: Ipv4Addr, dst: Ipv4Addr| {
        let bld = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src.octets(), dst.octets(), 64)
            .udp(sport, dport);
        let mut v = Vec::new();
        bld.write(&mut v, &[7; 18]).unwrap();
        v
    };
    let mut now = Timestamp::ZERO;
    let step = |w: &mut Vec<BatchLoop>, b: &mut Vec<MemBackend>, now: &mut Timestamp| {
        for i in 0..2 {
            *now = *now + Duration::from_micros(100);
            w[i].poll_once(*now, &mut b[i]);
            w[i].flush_tx(&mut b[i]);
        }
    };
    // Neighbours (received by worker 0; worker 1 learns from the copies).
    assert!(b[0].inject(0, &arp_reply(C_MAC, C_IP, OUT_MAC, OUT_IP)));
    assert!(b[0].inject(1, &arp_reply(S_MAC, S_IP, IN_MAC, IN_IP)));
    step(&mut w, &mut b, &mut now);
    // 8 flows out, each received by worker i % 2 (whoever owns it), one at
    // a time so each flow's mapped port is known.
    let mut mapped = Vec::new();
    for i in 0..8u16 {
        let f = udp_flow(20_000 + i, 53, S_MAC, IN_MAC, S_IP, C_IP);
        assert!(b[usize::from(i % 2)].inject(1, &f));
        step(&mut w, &mut b, &mut now);
        step(&mut w, &mut b, &mut now);
        let mut out = Vec::new();
        for bk in b.iter_mut() {
            bk.drain_tx(0, |f| out.push(u16::from_be_bytes([f[34], f[35]])));
            bk.drain_tx(1, |_| {});
        }
        assert_eq!(out.len(), 1, "flow {i} PAT'ed");
        mapped.push(out[0]);
    }
    // Built once: each flow both ways, each direction on the other worker
    // than the one before, so every flow crosses once per mix (which way
    // depends on its owner, a fixed hash of its tuple); plus an ARP request
    // for the unit's address.
    let mut mix = Vec::new();
    for (i, &m) in mapped.iter().enumerate() {
        let sport = 20_000 + i as u16;
        mix.push((i % 2, 1, udp_flow(sport, 53, S_MAC, IN_MAC, S_IP, C_IP)));
        mix.push((
            (i + 1) % 2,
            0,
            udp_flow(53, m, C_MAC, OUT_MAC, C_IP, OUT_IP),
        ));
    }
    let arp = arp_request(C_MAC, C_IP, OUT_IP);
    let run = |iters: u64, w: &mut Vec<BatchLoop>, b: &mut Vec<MemBackend>, now: &mut Timestamp| {
        let mut forwarded = 0;
        for i in 0..iters {
            // The mix crosses 8 frames (one direction of each flow), about
            // 4 per ring; every 10th iteration a burst of 3 × the mix
            // overflows the 4 slots, so the full-ring path runs too.
            let reps = if i % 10 == 0 { 3 } else { 1 };
            for _ in 0..reps {
                for (wk, port, f) in &mix {
                    assert!(b[*wk].inject(*port, f));
                }
            }
            assert!(b[(i % 2) as usize].inject(0, &arp));
            step(w, b, now);
            for k in 0..2 {
                shared[k].publish(&w[k].counters(&b[k]));
                forwarded += b[k].drain_tx(0, |_| {}) as u64 + b[k].drain_tx(1, |_| {}) as u64;
            }
        }
        forwarded
    };
    run(200, &mut w, &mut b, &mut now);
    let before = allocs();
    let forwarded = run(2_000, &mut w, &mut b, &mut now);
    let during = allocs() - before;
    assert_eq!(during, 0, "allocations with handoff in steady state");
    let (c0, c1) = (shared[0].load(), shared[1].load());
    assert!(forwarded >= 2_000 * 16, "forwarded {forwarded}");
    assert!(
        c0.handoff_out > 2_000 && c1.handoff_out > 2_000,
        "{c0:?} {c1:?}"
    );
    assert!(c0.handoff_in > 2_000 && c1.handoff_in > 2_000);
    assert!(
        c0.drop_handoff_full + c1.drop_handoff_full > 0,
        "ring overflowed"
    );
    assert!(c0.handoff_arp_out > 0 && c1.handoff_arp_out > 0);
    assert_eq!((c0.conns + c1.conns, c0.xlates + c1.xlates), (8, 8));
    assert_eq!(c0.drop_tcp_no_conn + c1.drop_tcp_no_conn, 0);
    for bk in &b {
        assert_eq!(bk.free_frames(), 1024);
    }
}
