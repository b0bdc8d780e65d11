//! AF_XDP backend on veth pairs between network namespaces: echo, a
//! two-port descriptor-move forward over the shared UMEM, detach on drop,
//! cleanup of a stale netlink attachment, refusal of zero-copy on veth, and
//! one copy-mode TX kick per batch.
//!
//! Each test builds its own namespaces (removed on drop, even on panic),
//! uses only 198.18.0.0/15, and bounds every loop by count and deadline.

#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_io::afxdp::{testing, AfXdpBackend, XdpAttachment, XdpMode, ZeroCopy};
use tandem_io::{Backend, Frame, FrameConfig};
use tandem_netns::sequdp::{count_arrivals, send_windows};
use tandem_netns::{have_privileges, veth, Netns};

const N: usize = 1000;
const WINDOW: usize = 32;
const PEER_PORT: u16 = 40000;
const UNIT_PORT: u16 = 40001;

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn small_frames() -> FrameConfig {
    FrameConfig {
        frame_count: 1024,
        frame_size: 2048,
        ring_size: 256,
        huge_pages: false,
    }
}

/// Offset of the UDP header if `f` is Ethernet/IPv4/UDP to `dst_port`.
fn udp_to(f: &[u8], dst_port: u16) -> Option<usize> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 17 {
        return None;
    }
    let l4 = 14 + (f[14] & 0x0f) as usize * 4;
    let port = u16::from_be_bytes(f.get(l4 + 2..l4 + 4)?.try_into().ok()?);
    (port == dst_port && f.len() >= l4 + 8).then_some(l4)
}

/// Turn a UDP datagram around in place: swap MACs, IPv4 addresses and
/// ports. Checksums stay valid (one's-complement sums are order-free).
fn echo_in_place(f: &mut [u8], l4: usize) {
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    for i in 0..4 {
        f.swap(26 + i, 30 + i);
    }
    f.swap(l4, l4 + 2);
    f.swap(l4 + 1, l4 + 3);
}

/// Receive everything, free it, flush, until the pool is back at
/// `baseline` free frames or the deadline passes; returns the final count.
fn settle(b: &mut AfXdpBackend, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batch = [Frame::default(); 64];
    while Instant::now() < deadline {
        for port in 0..b.port_count() {
            let n = b.rx_burst(port, &mut batch);
            for f in &batch[..n] {
                b.free(*f);
            }
        }
        b.flush();
        if b.free_frames() == baseline {
            break;
        }
        b.wait(Duration::from_millis(5));
    }
    b.free_frames()
}

#[test]
fn echo_udp_through_afxdp_on_veth() {
    if !have_privileges("echo_udp_through_afxdp_on_veth") {
        return;
    }
    let unit = Netns::new("xu").unwrap();
    let peer = Netns::new("xp").unwrap();
    veth(&unit, "xa0", &peer, "xp0").unwrap();
    peer.ip(&["addr", "add", "198.18.0.2/24", "dev", "xp0"])
        .unwrap();
    let unit_mac = mac_str(unit.mac("xa0").unwrap());
    peer.ip(&[
        "neigh",
        "add",
        "198.18.0.1",
        "lladdr",
        &unit_mac,
        "dev",
        "xp0",
    ])
    .unwrap();
    // Full checksums from the sender (PLATFORM.md: offload leaves them partial).
    peer.exec("ethtool", &["-K", "xp0", "tx", "off"]).unwrap();

    let _in_unit = unit.enter().unwrap();
    let att = XdpAttachment::attach("xa0", XdpMode::Auto).unwrap();
    assert_eq!(att.mode(), XdpMode::Native, "veth supports native XDP");
    assert_eq!(att.ifname(), "xa0");
    assert!(att.ifindex() > 0);
    assert!(att.queue_count() >= 1);
    let mut b = AfXdpBackend::open(&[(&att, 0)], &small_frames(), ZeroCopy::Auto).unwrap();
    assert_eq!(b.name(), "afxdp-copy", "veth has no zero-copy");
    assert!(!b.is_zero_copy());
    assert_eq!(b.port_count(), 1);
    assert_eq!(b.frame_size(), 2048);
    let baseline = b.free_frames();

    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let peer_thread = {
        let (seen, done) = (seen.clone(), done.clone());
        let peer_name = peer;
        std::thread::spawn(move || {
            let got = {
                let _in_peer = peer_name.enter().unwrap();
                let sock = UdpSocket::bind(("198.18.0.2", PEER_PORT)).unwrap();
                let rx = sock.try_clone().unwrap();
                let stop = AtomicBool::new(false);
                std::thread::scope(|s| {
                    let counter = s.spawn(|| {
                        // The clone's thread is outside the namespace, but the
                        // socket stays in the one it was created in.
                        count_arrivals(&rx, N, &seen, &stop, deadline).0
                    });
                    send_windows(
                        &sock,
                        &format!("198.18.0.1:{UNIT_PORT}"),
                        N,
                        WINDOW,
                        &seen,
                        deadline,
                    );
                    let wait_until = (Instant::now() + Duration::from_secs(2)).min(deadline);
                    while seen.load(Ordering::Acquire) < N && Instant::now() < wait_until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    stop.store(true, Ordering::Release);
                    counter.join().unwrap()
                })
            };
            done.store(true, Ordering::Release);
            (got, peer_name)
        })
    };

    let mut batch = [Frame::default(); 64];
    let mut out = [Frame::default(); 64];
    let mut echoed = 0u64;
    while !done.load(Ordering::Acquire) && Instant::now() < deadline {
        let n = b.rx_burst(0, &mut batch);
        let mut k = 0;
        for f in &batch[..n] {
            let len = f.len as usize;
            let bytes = b.frame_mut(*f);
            match udp_to(&bytes[..len.min(bytes.len())], UNIT_PORT) {
                Some(l4) => {
                    echo_in_place(bytes, l4);
                    out[k] = *f;
                    k += 1;
                }
                None => b.free(*f),
            }
        }
        let sent = b.tx_burst(0, &out[..k]);
        for f in &out[sent..k] {
            b.free(*f);
        }
        echoed += sent as u64;
        b.flush();
        if n == 0 {
            b.wait(Duration::from_millis(5));
        }
    }
    let (got, _peer) = peer_thread.join().unwrap();
    assert_eq!(got, N, "peer saw {got} of {N} echoes ({echoed} echoed)");
    let stats = b.stats();
    assert!(stats.rx >= N as u64 && stats.tx >= N as u64, "{stats:?}");
    assert!(stats.syscalls > 0, "copy-mode TX needs kicks: {stats:?}");
    assert_eq!(settle(&mut b, baseline), baseline, "frames leaked");
}

#[test]
fn two_ports_share_the_umem_and_forward_by_descriptor_move() {
    if !have_privileges("two_ports_share_the_umem_and_forward_by_descriptor_move") {
        return;
    }
    let a = Netns::new("fa").unwrap();
    let unit = Netns::new("fu").unwrap();
    let bns = Netns::new("fb").unwrap();
    veth(&unit, "ua0", &a, "pa0").unwrap();
    veth(&unit, "ub0", &bns, "pb0").unwrap();
    a.ip(&["addr", "add", "198.18.1.1/24", "dev", "pa0"])
        .unwrap();
    bns.ip(&["addr", "add", "198.18.1.2/24", "dev", "pb0"])
        .unwrap();
    let ua_mac = mac_str(unit.mac("ua0").unwrap());
    a.ip(&[
        "neigh",
        "add",
        "198.18.1.2",
        "lladdr",
        &ua_mac,
        "dev",
        "pa0",
    ])
    .unwrap();
    a.exec("ethtool", &["-K", "pa0", "tx", "off"]).unwrap();
    let pb_mac = bns.mac("pb0").unwrap();
    let ub_mac = unit.mac("ub0").unwrap();

    let _in_unit = unit.enter().unwrap();
    let att_a = XdpAttachment::attach("ua0", XdpMode::Generic).unwrap();
    assert_eq!(att_a.mode(), XdpMode::Generic);
    let att_b = XdpAttachment::attach("ub0", XdpMode::Native).unwrap();
    let mut b =
        AfXdpBackend::open(&[(&att_a, 0), (&att_b, 0)], &small_frames(), ZeroCopy::Off).unwrap();
    assert_eq!(b.port_count(), 2);
    let baseline = b.free_frames();

    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bound = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (seen, done, bound) = (seen.clone(), done.clone(), bound.clone());
        std::thread::spawn(move || {
            let got = {
                let _in_b = bns.enter().unwrap();
                let sock = UdpSocket::bind(("198.18.1.2", PEER_PORT)).unwrap();
                bound.store(true, Ordering::Release);
                let stop = AtomicBool::new(false);
                count_arrivals(&sock, N, &seen, &stop, deadline).0
            };
            done.store(true, Ordering::Release);
            (got, bns)
        })
    };
    let sender = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            // Datagrams sent before the receiver's socket exists would be
            // dropped by B's kernel (port unreachable) and never counted.
            while !bound.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            {
                let _in_a = a.enter().unwrap();
                let sock = UdpSocket::bind(("198.18.1.1", PEER_PORT)).unwrap();
                send_windows(
                    &sock,
                    &format!("198.18.1.2:{PEER_PORT}"),
                    N,
                    WINDOW,
                    &seen,
                    deadline,
                );
            }
            a
        })
    };

    let mut batch = [Frame::default(); 64];
    let mut out = [Frame::default(); 64];
    let mut moved = 0usize;
    while !done.load(Ordering::Acquire) && Instant::now() < deadline {
        let n = b.rx_burst(0, &mut batch);
        let mut k = 0;
        for f in &batch[..n] {
            let len = f.len as usize;
            let bytes = b.frame_mut(*f);
            if udp_to(&bytes[..len.min(bytes.len())], PEER_PORT).is_some() {
                bytes[..6].copy_from_slice(&pb_mac);
                bytes[6..12].copy_from_slice(&ub_mac);
                out[k] = *f;
                k += 1;
            } else {
                b.free(*f);
            }
        }
        // The same UMEM addresses go out on the other socket: no copy.
        let sent = b.tx_burst(1, &out[..k]);
        for f in &out[sent..k] {
            b.free(*f);
        }
        moved += sent;
        // Anything port 1's peer sends (IPv6 housekeeping) is dropped.
        let m = b.rx_burst(1, &mut batch);
        for f in &batch[..m] {
            b.free(*f);
        }
        b.flush();
        if n == 0 && m == 0 {
            b.wait(Duration::from_millis(5));
        }
    }
    let (got, _bns) = receiver.join().unwrap();
    let _a = sender.join().unwrap();
    assert_eq!(got, N, "port-1 peer saw {got} of {N} ({moved} moved)");
    assert_eq!(settle(&mut b, baseline), baseline, "frames leaked");
}

fn ip_shows_xdp(ns: &Netns, dev: &str) -> bool {
    let out = ns.ip(&["-d", "link", "show", "dev", dev]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn dropping_the_attachment_detaches_the_program() {
    if !have_privileges("dropping_the_attachment_detaches_the_program") {
        return;
    }
    let unit = Netns::new("du").unwrap();
    let peer = Netns::new("dp").unwrap();
    veth(&unit, "da0", &peer, "dp0").unwrap();
    let _in_unit = unit.enter().unwrap();
    for mode in [XdpMode::Native, XdpMode::Generic] {
        let att = XdpAttachment::attach("da0", mode).unwrap();
        assert!(ip_shows_xdp(&unit, "da0"), "{mode:?} attach visible to ip");
        let id = att.prog_id().unwrap();
        let (drv, skb) = testing::attached_programs("da0").unwrap();
        assert_eq!(if mode == XdpMode::Native { drv } else { skb }, id);
        drop(att);
        assert!(
            !ip_shows_xdp(&unit, "da0"),
            "{mode:?} program still attached after drop"
        );
        assert_eq!(testing::attached_programs("da0").unwrap(), (0, 0));
    }
}

#[test]
fn attach_removes_a_stale_netlink_program_but_not_a_live_link() {
    if !have_privileges("attach_removes_a_stale_netlink_program_but_not_a_live_link") {
        return;
    }
    let unit = Netns::new("su").unwrap();
    let peer = Netns::new("sp").unwrap();
    veth(&unit, "sa0", &peer, "sp0").unwrap();
    let _in_unit = unit.enter().unwrap();

    // What a crashed run with a netlink attachment leaves: a generic-mode
    // program, which would also block native mode (EEXIST).
    let stale = testing::leak_netlink_program("sa0", XdpMode::Generic).unwrap();
    assert_eq!(testing::attached_programs("sa0").unwrap(), (0, stale));

    let att = XdpAttachment::attach("sa0", XdpMode::Auto).unwrap();
    assert_eq!(att.mode(), XdpMode::Native);
    let ours = att.prog_id().unwrap();
    assert_ne!(ours, stale);
    assert_eq!(testing::attached_programs("sa0").unwrap(), (ours, 0));

    // A second attach while the first lives must not steal the interface.
    let err = XdpAttachment::attach("sa0", XdpMode::Auto).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sa0") && msg.contains("running process"),
        "{msg}"
    );
    assert_eq!(testing::attached_programs("sa0").unwrap(), (ours, 0));

    drop(att);
    assert_eq!(testing::attached_programs("sa0").unwrap(), (0, 0));
}

#[test]
fn zero_copy_required_fails_on_veth_with_a_clear_error() {
    if !have_privileges("zero_copy_required_fails_on_veth_with_a_clear_error") {
        return;
    }
    let unit = Netns::new("zu").unwrap();
    let peer = Netns::new("zp").unwrap();
    veth(&unit, "za0", &peer, "zp0").unwrap();
    let _in_unit = unit.enter().unwrap();
    let att = XdpAttachment::attach("za0", XdpMode::Native).unwrap();
    let err = AfXdpBackend::open(&[(&att, 0)], &small_frames(), ZeroCopy::Required)
        .err()
        .expect("veth has no zero-copy AF_XDP");
    let msg = err.to_string();
    assert!(msg.contains("za0") && msg.contains("zero-copy"), "{msg}");

    // Bad configurations are refused before touching the kernel.
    let bad = FrameConfig {
        frame_size: 1500,
        ..small_frames()
    };
    let msg = AfXdpBackend::open(&[(&att, 0)], &bad, ZeroCopy::Off)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("frame_size 1500"), "{msg}");
    let msg = AfXdpBackend::open(&[(&att, 7)], &small_frames(), ZeroCopy::Off)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("queue 7"), "{msg}");
    // A copy-mode socket on the same queue right after works (EBUSY retry).
    let b = AfXdpBackend::open(&[(&att, 0)], &small_frames(), ZeroCopy::Off).unwrap();
    assert_eq!(b.name(), "afxdp-copy");
}

#[test]
fn copy_mode_sends_a_whole_tx_batch_with_one_kick() {
    if !have_privileges("copy_mode_sends_a_whole_tx_batch_with_one_kick") {
        return;
    }
    let unit = Netns::new("kt").unwrap();
    let peer = Netns::new("kp").unwrap();
    veth(&unit, "kt0", &peer, "kp0").unwrap();
    let peer_mac = peer.mac("kp0").unwrap();
    let unit_mac = unit.mac("kt0").unwrap();
    let _in_unit = unit.enter().unwrap();
    let att = XdpAttachment::attach("kt0", XdpMode::Native).unwrap();
    let mut b = AfXdpBackend::open(&[(&att, 0)], &small_frames(), ZeroCopy::Off).unwrap();
    let baseline = b.free_frames();
    // 64 minimal Ethernet frames (an unused EtherType: the peer's kernel
    // drops them; only the transmit path is under test).
    let mut batch = [Frame::default(); 64];
    for slot in &mut batch {
        let mut f = b.alloc().unwrap();
        let bytes = b.frame_mut(f);
        bytes[..6].copy_from_slice(&peer_mac);
        bytes[6..12].copy_from_slice(&unit_mac);
        bytes[12..14].copy_from_slice(&[0x88, 0xb5]);
        bytes[14..60].fill(0);
        f.len = 60;
        *slot = f;
    }
    assert_eq!(b.tx_burst(0, &batch), 64);
    let before = b.stats().syscalls;
    b.flush();
    let kicks = b.stats().syscalls - before;
    // Linux ≥ 6.17 honours XDP_MAX_TX_SKB_BUDGET (set to the ring size at
    // bind): one sendto for the batch, where the default budget of 32
    // frames per call needed two.
    assert_eq!(kicks, 1, "kicks for a 64-frame TX batch");
    assert_eq!(settle(&mut b, baseline), baseline, "frames leaked");
}
