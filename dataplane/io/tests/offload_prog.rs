//! tandem's flow-offload XDP program in the kernel, run with
//! `BPF_PROG_TEST_RUN` (nothing is sent anywhere): it accepts and rejects
//! exactly the frames `MemFlowTable::forward` (its model) does and leaves
//! the same bytes; it stamps and counts the entries it forwards; and
//! `FlowTable`'s install/remove/scan/clear semantics on the real map.

#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use tandem_io::afxdp::{testing, FlowMap, FlowTable};
use tandem_io::offload::testing::*;
use tandem_io::offload::{
    csum_addend, FlowMatch, FlowOffload, FlowOwner, FlowRewrite, FlowSeen, MemFlowTable,
};
use tandem_netns::have_privileges;

const SNAT: [u8; 4] = [198, 19, 255, 1];
/// Egress "device" of the test entries: `bpf_redirect` only records the
/// ifindex in a test run, so it need not exist.
const OUT_IFINDEX: u32 = 7777;

fn lo() -> u32 {
    // SAFETY: a valid NUL-terminated name; if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    assert!(i > 0, "no lo in this namespace");
    i
}

fn flow_of(p: &Pkt) -> FlowMatch {
    FlowMatch {
        port: 0,
        src: p.src,
        dst: p.dst,
        sport: p.sport.to_be_bytes(),
        dport: p.dport.to_be_bytes(),
        proto: p.proto,
    }
}

/// `p`'s flow source-translated to SNAT:61000, out of port 1.
fn rewrite(p: &Pkt) -> FlowRewrite {
    let (src, sport) = (SNAT, 61000u16);
    let (os, od, ns) = (words(p.src), words(p.dst), words(src));
    let ttl = |t: u8| u16::from_be_bytes([t, p.proto]);
    let ttl_new = p.ttl.saturating_sub(1);
    FlowRewrite {
        src,
        dst: p.dst,
        sport: sport.to_be_bytes(),
        dport: p.dport.to_be_bytes(),
        ip_csum_add: csum_addend(
            &[os[0], os[1], od[0], od[1], ttl(p.ttl)],
            &[ns[0], ns[1], od[0], od[1], ttl(ttl_new)],
        ),
        l4_csum_add: csum_addend(&[os[0], os[1], p.sport], &[ns[0], ns[1], sport]),
        port: 1,
        mtu: 1500,
        rx_mac: U0_MAC,
        dst_mac: B_MAC,
        src_mac: U1_MAC,
    }
}

/// A UDP datagram whose checksum after the rewrite computes to 0 (sent as
/// 0xffff).
fn udp_to_zero() -> Pkt {
    let mut p = Pkt {
        payload: vec![0; 16],
        ..udp()
    };
    let after = Pkt {
        src: SNAT,
        sport: 61000,
        udp_csum: false,
        ..p.clone()
    };
    let partial = l4_sum(&build(&after));
    p.payload[..2].copy_from_slice(&(!partial).to_be_bytes());
    p
}

/// The kernel program and its model side by side.
struct Rig {
    prog: OwnedFd,
    table: FlowTable,
    model: MemFlowTable,
    lo: u32,
}

impl Rig {
    fn new(capacity: u32) -> Rig {
        let map = FlowMap::create(capacity).expect("create flow map");
        let prog = testing::load_offload_program(&map).expect("load offload program");
        let lo = lo();
        Rig {
            prog,
            table: map.table(vec![lo, OUT_IFINDEX]),
            model: MemFlowTable::new(capacity as usize),
            lo,
        }
    }

    fn install(&mut self, flow: &FlowMatch, to: &FlowRewrite) {
        let owner = FlowOwner {
            shard: 1,
            conn: 2,
            gen: 3,
        };
        self.table
            .install(flow, to, owner)
            .expect("install (kernel)");
        self.model
            .install(flow, to, owner)
            .expect("install (model)");
    }

    /// Runs `frame` through both; asserts they agree and returns the
    /// model's verdict.
    fn run(&mut self, what: &str, frame: &[u8]) -> Option<usize> {
        let (rc, out) =
            testing::test_run_xdp(self.prog.as_fd(), frame, self.lo).expect("BPF_PROG_TEST_RUN");
        let mut want = frame.to_vec();
        let r = self.model.forward(0, &mut want);
        let rc_want = if r.is_some() {
            testing::XDP_REDIRECT
        } else {
            testing::XDP_PASS
        };
        assert_eq!(rc, rc_want, "{what}: verdict");
        assert_eq!(out, want, "{what}: bytes (kernel left, model right)");
        r
    }
}

fn scan_all(t: &mut FlowTable, budget: usize) -> (Vec<FlowSeen>, usize) {
    let mut seen = Vec::new();
    for calls in 1..=10_000 {
        let mut n = 0;
        let done = t
            .scan(budget, &mut |s| {
                n += 1;
                seen.push(*s);
            })
            .expect("scan");
        assert!(n <= budget.min(256), "visited {n} with budget {budget}");
        if done {
            return (seen, calls);
        }
    }
    panic!("scan never completed a pass");
}

#[test]
fn program_matches_its_model_byte_for_byte() {
    if !have_privileges("program_matches_its_model_byte_for_byte") {
        return;
    }
    let mut rig = Rig::new(64);
    let mut cases: Vec<(String, Pkt, Option<Vec<u8>>)> = Vec::new();
    let mut case = |name: &str, p: Pkt| cases.push((name.to_string(), p, None));
    case("tcp", tcp());
    case("tcp ttl 2", Pkt { ttl: 2, ..tcp() });
    case(
        "tcp ack only",
        Pkt {
            tcp_flags: 0x10,
            ..tcp()
        },
    );
    case(
        "tcp no flags",
        Pkt {
            tcp_flags: 0,
            ..tcp()
        },
    );
    case(
        "tcp urg/ece/cwr",
        Pkt {
            tcp_flags: 0xe0,
            ..tcp()
        },
    );
    case(
        "tcp no payload",
        Pkt {
            payload: vec![],
            ..tcp()
        },
    );
    case("udp", udp());
    case(
        "udp no payload",
        Pkt {
            payload: vec![],
            ..udp()
        },
    );
    case(
        "udp odd payload",
        Pkt {
            payload: vec![1, 2, 3],
            ..udp()
        },
    );
    case(
        "udp no checksum",
        Pkt {
            udp_csum: false,
            ..udp()
        },
    );
    case("udp checksum to 0xffff", udp_to_zero());
    for ttl in [0, 1] {
        case(&format!("tcp ttl {ttl}"), Pkt { ttl, ..tcp() });
        case(&format!("udp ttl {ttl}"), Pkt { ttl, ..udp() });
    }
    for flags in [0x01, 0x02, 0x04, 0x12, 0x11, 0x14, 0x07] {
        case(
            &format!("tcp flags {flags:#x}"),
            Pkt {
                tcp_flags: flags,
                ..tcp()
            },
        );
    }
    for frag in [
        0x2000, 0x0001, 0x00b9, 0x2010, 0x6000, 0x1fff, 0x0000, 0x8000,
    ] {
        case(&format!("tcp frag {frag:#x}"), Pkt { frag, ..tcp() });
        case(&format!("udp frag {frag:#x}"), Pkt { frag, ..udp() });
    }
    for dmac in [
        [0xff; 6],
        U1_MAC,
        [0x02, 0, 0, 0, 1, 0x10],
        [0x03, 0, 0, 0, 0, 0x10],
    ] {
        case(&format!("dst mac {dmac:x?}"), Pkt { dmac, ..tcp() });
    }
    // Install every case's flow (the same flow for most), then run them all.
    let mut frames: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, p, _) in &cases {
        rig.install(&flow_of(p), &rewrite(p));
        frames.push((name.clone(), build(p)));
    }
    // Frame-level variants of the plain TCP and UDP frames.
    let t = build(&tcp());
    for vhl in [0x46, 0x4f, 0x44, 0x65, 0x55] {
        let mut g = t.clone();
        g[14] = vhl;
        frames.push((format!("vhl {vhl:#x}"), g));
    }
    let mut g = t[..12].to_vec();
    g.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    g.extend_from_slice(&t[12..]);
    frames.push(("vlan tag".into(), g));
    for et in [[0x86, 0xdd], [0x08, 0x06], [0x00, 0x08]] {
        let mut g = t.clone();
        g[12..14].copy_from_slice(&et);
        frames.push((format!("ethertype {et:x?}"), g));
    }
    let mut g = t.clone();
    g[23] = 1;
    frames.push(("icmp".into(), g));
    // Short frames: the kernel refuses runs under 14 bytes (the model's
    // unit tests cover those).
    let t0 = build(&Pkt {
        payload: vec![],
        ..tcp()
    });
    let u0 = build(&Pkt {
        payload: vec![],
        ..udp()
    });
    for len in 14..=t0.len() {
        frames.push((format!("tcp cut at {len}"), t0[..len].to_vec()));
    }
    for len in 14..=u0.len() {
        frames.push((format!("udp cut at {len}"), u0[..len].to_vec()));
    }
    // TCP: a checksum the addend turns into 0 stays 0 (no 0xffff rule).
    let mut g = t.clone();
    g[50..52].copy_from_slice(&rewrite(&tcp()).l4_csum_add.to_be_bytes());
    frames.push(("tcp checksum to 0".into(), g));
    // Another flow with no entry, and a reply direction with none.
    frames.push((
        "no entry".into(),
        build(&Pkt {
            sport: 40001,
            ..tcp()
        }),
    ));
    frames.push((
        "reverse direction".into(),
        build(&Pkt {
            src: tcp().dst,
            dst: tcp().src,
            sport: 80,
            dport: 40000,
            ..tcp()
        }),
    ));
    let mut fast = 0;
    for (name, f) in &frames {
        if rig.run(name, f).is_some() {
            fast += 1;
        }
    }
    // Plenty of both verdicts were exercised.
    assert!(fast >= 15, "{fast} frames forwarded");
    assert!(
        frames.len() - fast >= 40,
        "{} to the worker",
        frames.len() - fast
    );
    // UDP frame with a large payload, MTU exactly its length and one less.
    let p = Pkt {
        payload: vec![7; 100],
        ..udp()
    };
    let f = build(&p);
    let tot = u16::from_be_bytes([f[16], f[17]]);
    let mut to = rewrite(&p);
    to.mtu = tot - 1;
    rig.install(&flow_of(&p), &to);
    assert_eq!(rig.run("over mtu", &f), None);
    to.mtu = tot;
    rig.install(&flow_of(&p), &to);
    assert_eq!(rig.run("at mtu", &f), Some(1));
    // An entry for the other port does not match frames arriving on lo.
    let p = Pkt {
        sport: 999,
        ..tcp()
    };
    rig.install(
        &FlowMatch {
            port: 1,
            ..flow_of(&p)
        },
        &rewrite(&p),
    );
    let f = build(&p);
    let (rc, out) = testing::test_run_xdp(rig.prog.as_fd(), &f, rig.lo).unwrap();
    assert_eq!((rc, out), (testing::XDP_PASS, f));
}

#[test]
fn forwarding_counts_packets_and_stamps_last_seen() {
    if !have_privileges("forwarding_counts_packets_and_stamps_last_seen") {
        return;
    }
    let mut rig = Rig::new(8);
    let p = tcp();
    let flow = flow_of(&p);
    rig.install(&flow, &rewrite(&p));
    std::thread::sleep(Duration::from_millis(60));
    let (seen, _) = scan_all(&mut rig.table, 64);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].flow, flow);
    assert_eq!(
        seen[0].owner,
        FlowOwner {
            shard: 1,
            conn: 2,
            gen: 3
        }
    );
    assert_eq!(seen[0].packets, 0);
    assert!(seen[0].idle_ns >= 60_000_000, "idle {}", seen[0].idle_ns);
    // Frames for the worker do not count.
    let slow = build(&Pkt {
        dmac: [0xff; 6],
        ..p.clone()
    });
    assert_eq!(rig.run("wrong mac", &slow), None);
    for _ in 0..3 {
        assert_eq!(rig.run("tcp", &build(&p)), Some(1));
    }
    let (seen, _) = scan_all(&mut rig.table, 64);
    assert_eq!(seen[0].packets, 3);
    assert!(
        seen[0].idle_ns < 50_000_000,
        "last_seen not advanced: idle {}",
        seen[0].idle_ns
    );
    let gone = rig.table.remove(&flow).unwrap().expect("entry");
    assert_eq!((gone.flow, gone.packets), (flow, 3));
    assert_eq!(rig.table.remove(&flow).unwrap(), None);
    // No entry: the program passes the frame up untouched.
    let f = build(&p);
    let (rc, out) = testing::test_run_xdp(rig.prog.as_fd(), &f, rig.lo).unwrap();
    assert_eq!((rc, out), (testing::XDP_PASS, f));
}

fn nth_flow(i: u32) -> FlowMatch {
    let b = i.to_be_bytes();
    FlowMatch {
        port: 0,
        src: [198, 18, b[2], b[3]],
        dst: [198, 19, 0, 1],
        sport: (10_000 + i as u16).to_be_bytes(),
        dport: [0, 80],
        proto: [17, 6, 6][i as usize % 3],
    }
}

#[test]
fn remove_clear_and_scan_over_a_thousand_entries() {
    if !have_privileges("remove_clear_and_scan_over_a_thousand_entries") {
        return;
    }
    let map = FlowMap::create(2048).unwrap();
    let mut t = map.table(vec![lo(), OUT_IFINDEX]);
    assert_eq!(t.capacity(), 2048);
    let to = FlowRewrite {
        port: 1,
        ..rewrite(&tcp())
    };
    let all: Vec<FlowMatch> = (0..1000).map(nth_flow).collect();
    for (i, f) in all.iter().enumerate() {
        let owner = FlowOwner {
            shard: (i % 2) as u16,
            conn: i as u32,
            gen: 1,
        };
        t.install(f, &to, owner).unwrap();
    }
    // Two passes with budget 64: every entry exactly once per pass.
    for pass in 0..2 {
        let (seen, calls) = scan_all(&mut t, 64);
        let set: HashSet<FlowMatch> = seen.iter().map(|s| s.flow).collect();
        assert_eq!(seen.len(), 1000, "pass {pass}");
        assert_eq!(set.len(), 1000, "pass {pass}: duplicates");
        assert!(set.iter().all(|f| all.contains(f)));
        assert!(calls >= 1000 / 64, "pass {pass}: {calls} calls");
        for s in &seen {
            assert_eq!(s.owner.conn as usize % 2, s.owner.shard as usize);
            assert_eq!(all[s.owner.conn as usize], s.flow);
        }
    }
    // Budgets are clamped to the buffer; 0 does nothing.
    let (seen, _) = scan_all(&mut t, 100_000);
    assert_eq!(seen.len(), 1000);
    assert!(!t.scan(0, &mut |_| panic!("budget 0")).unwrap());
    // A table on other devices sees none of them, and still ends its pass.
    let mut other = map.table(vec![OUT_IFINDEX]);
    let (seen, _) = scan_all(&mut other, 64);
    assert!(seen.is_empty());

    // remove
    for f in &all[..10] {
        let s = t.remove(f).unwrap().expect("present");
        assert_eq!(s.flow, *f);
        assert_eq!(s.packets, 0);
        assert_eq!(t.remove(f).unwrap(), None);
    }
    // A port the table does not have: nothing to remove.
    assert_eq!(t.remove(&FlowMatch { port: 9, ..all[20] }).unwrap(), None);
    let (seen, _) = scan_all(&mut t, 64);
    assert_eq!(seen.len(), 990);

    // clear per shard
    let shard0 = (10..1000).filter(|i| i % 2 == 0).count();
    assert_eq!(t.clear(0).unwrap(), shard0);
    assert_eq!(t.clear(0).unwrap(), 0);
    let (seen, _) = scan_all(&mut t, 64);
    assert_eq!(seen.len(), 990 - shard0);
    assert!(seen.iter().all(|s| s.owner.shard == 1));
    assert_eq!(t.clear(1).unwrap(), 990 - shard0);
    let (seen, calls) = scan_all(&mut t, 64);
    assert!(seen.is_empty());
    assert_eq!(calls, 1);
}

#[test]
fn a_scan_never_reports_an_entry_removed_during_its_pass() {
    if !have_privileges("a_scan_never_reports_an_entry_removed_during_its_pass") {
        return;
    }
    // Budget 1 on a half-loaded map: buckets with two or more entries
    // make the table read ahead (a bucket is read whole), so some entries
    // sit in its buffer when they are removed.
    let map = FlowMap::create(2048).unwrap();
    let mut t = map.table(vec![lo(), OUT_IFINDEX]);
    let to = FlowRewrite {
        port: 1,
        ..rewrite(&tcp())
    };
    let all: Vec<FlowMatch> = (0..1000).map(nth_flow).collect();
    for f in &all {
        t.install(f, &to, FlowOwner::default()).unwrap();
    }
    let mut visited = HashSet::new();
    for _ in 0..300 {
        let done = t.scan(1, &mut |s| assert!(visited.insert(s.flow))).unwrap();
        assert!(!done);
    }
    assert_eq!(visited.len(), 300);
    // Remove everything not yet visited: the rest of the pass sees nothing.
    for f in all.iter().filter(|f| !visited.contains(f)) {
        assert!(t.remove(f).unwrap().is_some());
    }
    let mut late = 0;
    for _ in 0..2000 {
        if t.scan(1, &mut |_| late += 1).unwrap() {
            break;
        }
    }
    assert_eq!(late, 0, "entries reported after their removal");
    // The same through clear(): fill again, scan partway, clear.
    for f in &all {
        t.install(f, &to, FlowOwner::default()).unwrap();
    }
    for _ in 0..300 {
        t.scan(1, &mut |_| {}).unwrap();
    }
    assert_eq!(t.clear(0).unwrap(), 1000);
    let mut late = 0;
    for _ in 0..2000 {
        if t.scan(1, &mut |_| late += 1).unwrap() {
            break;
        }
    }
    assert_eq!(late, 0, "entries reported after clear");
}

#[test]
fn a_full_map_refuses_new_flows_with_an_error() {
    if !have_privileges("a_full_map_refuses_new_flows_with_an_error") {
        return;
    }
    let map = FlowMap::create(8).unwrap();
    let mut t = map.table(vec![lo(), OUT_IFINDEX]);
    let to = FlowRewrite {
        port: 1,
        ..rewrite(&tcp())
    };
    for i in 0..8 {
        t.install(&nth_flow(i), &to, FlowOwner::default()).unwrap();
    }
    let e = t
        .install(&nth_flow(8), &to, FlowOwner::default())
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::E2BIG), "{e}");
    // Replacing an entry works when full; a removal makes room.
    t.install(
        &nth_flow(3),
        &to,
        FlowOwner {
            shard: 5,
            ..Default::default()
        },
    )
    .unwrap();
    t.remove(&nth_flow(0)).unwrap().unwrap();
    t.install(&nth_flow(8), &to, FlowOwner::default()).unwrap();
    // Ports outside the table are input errors, not panics.
    let e = t
        .install(
            &FlowMatch {
                port: 2,
                ..nth_flow(9)
            },
            &to,
            FlowOwner::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = t
        .install(
            &nth_flow(9),
            &FlowRewrite { port: 5, ..to },
            FlowOwner::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(FlowMap::create(0).is_err());
}
