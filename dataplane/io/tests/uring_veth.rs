//! io_uring backend on veth pairs in network namespaces: echo of real UDP
//! traffic from a Linux socket, forwarding between two ports, and frame
//! accounting (nothing leaks). Needs root; skipped otherwise.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tandem_io::uring::UringBackend;
use tandem_io::{Backend, Frame, FrameConfig};
use tandem_netns::{have_privileges, veth, Netns};

const DEADLINE: Duration = Duration::from_secs(20);

fn cfg() -> FrameConfig {
    FrameConfig {
        frame_count: 1024,
        frame_size: 2048,
        ring_size: 256,
        huge_pages: false,
    }
}

/// A namespace with IPv6 off, so router solicitations and MLD reports do
/// not add frames the tests would have to tell apart.
fn quiet_ns(role: &str) -> Netns {
    let ns = Netns::new(role).unwrap();
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1").unwrap();
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        .unwrap();
    ns
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Offsets of an IPv4/UDP frame: (ip header start, udp header start), or
/// None for anything else. Bounds-checked: never panics on short frames.
fn ipv4_udp(f: &[u8]) -> Option<(usize, usize)> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ihl = (f[14] & 0x0f) as usize * 4;
    if f[14] >> 4 != 4 || ihl < 20 || f[23] != 17 || f.len() < 14 + ihl + 8 {
        return None;
    }
    Some((14, 14 + ihl))
}

/// Swap MACs, IPs and ports in place. The UDP checksum is set to 0 ("none",
/// valid for IPv4): the sending veth may have left it partial (PLATFORM.md),
/// and the IPv4 header checksum is unchanged by swapping its two addresses.
fn echo_in_place(f: &mut [u8]) {
    let (ip, udp) = ipv4_udp(f).expect("checked by the caller");
    let mut tmp = [0u8; 6];
    tmp.copy_from_slice(&f[0..6]);
    f.copy_within(6..12, 0);
    f[6..12].copy_from_slice(&tmp);
    let mut a = [0u8; 4];
    a.copy_from_slice(&f[ip + 12..ip + 16]);
    f.copy_within(ip + 16..ip + 20, ip + 12);
    f[ip + 16..ip + 20].copy_from_slice(&a);
    let mut p = [0u8; 2];
    p.copy_from_slice(&f[udp..udp + 2]);
    f.copy_within(udp + 2..udp + 4, udp);
    f[udp + 2..udp + 4].copy_from_slice(&p);
    f[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
}

/// Run the backend until `done` says so or the deadline passes; `each` sees
/// every received frame and returns where to send it (port) or None to free it.
fn pump(
    b: &mut UringBackend,
    until: Instant,
    mut done: impl FnMut() -> bool,
    mut each: impl FnMut(&mut UringBackend, tandem_io::PortId, &mut Frame) -> Option<usize>,
) {
    let ports = b.port_count();
    let mut batch = [Frame::default(); 64];
    let mut out: Vec<Vec<Frame>> = (0..ports).map(|_| Vec::with_capacity(64)).collect();
    while !done() && Instant::now() < until {
        let mut got = 0;
        for port in 0..ports {
            let n = b.rx_burst(port, &mut batch);
            got += n;
            for f in &mut batch[..n] {
                match each(b, port, f) {
                    Some(to) => out[to].push(*f),
                    None => b.free(*f),
                }
            }
        }
        for (to, q) in out.iter_mut().enumerate() {
            let mut sent = 0;
            while sent < q.len() && Instant::now() < until {
                sent += b.tx_burst(to, &q[sent..]);
                if sent < q.len() {
                    b.flush();
                }
            }
            for f in &q[sent..] {
                b.free(*f);
            }
            q.clear();
        }
        b.flush();
        if got == 0 {
            b.wait(Duration::from_millis(5));
        }
    }
}

/// Flush until every send completed, then check that every frame is back
/// in the pool or lent to the kernel for receive.
fn assert_no_leak(b: &mut UringBackend) {
    let until = Instant::now() + Duration::from_secs(5);
    while b.accounting().tx_in_flight > 0 && Instant::now() < until {
        b.flush();
        b.wait(Duration::from_millis(5));
    }
    // Frames that arrived meanwhile are ours to free.
    let mut batch = [Frame::default(); 64];
    for port in 0..b.port_count() {
        loop {
            let n = b.rx_burst(port, &mut batch);
            if n == 0 {
                break;
            }
            for f in &batch[..n] {
                b.free(*f);
            }
        }
    }
    let a = b.accounting();
    assert_eq!(a.tx_in_flight, 0, "{a:?}");
    assert_eq!(a.rx_ready, 0, "{a:?}");
    assert_eq!(a.lent_to_caller(), 0, "{a:?}");
    assert_eq!(a.free + a.rx_posted, a.total, "{a:?}");
}

/// Send `n` numbered datagrams from `sock` to `to`, at most `window`
/// unanswered at a time, and return the set of numbers echoed back.
fn send_and_collect(sock: &UdpSocket, to: &str, n: u32, window: u32) -> BTreeSet<u32> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let until = Instant::now() + DEADLINE;
    let mut got = BTreeSet::new();
    let mut sent = 0u32;
    let mut buf = [0u8; 2048];
    while (got.len() as u32) < n && Instant::now() < until {
        while sent < n && sent - (got.len() as u32).min(sent) < window {
            let mut payload = [0u8; 32];
            payload[..4].copy_from_slice(&sent.to_be_bytes());
            sock.send_to(&payload, to).unwrap();
            sent += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((len, _)) if len >= 4 => {
                got.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
            Ok(_) => {}
            Err(_) => {
                // A lost datagram would stall the window: resend the rest.
                if sent == n || got.len() as u32 + window <= sent {
                    sent = got.len() as u32;
                    while got.contains(&sent) {
                        sent += 1;
                    }
                }
            }
        }
    }
    got
}

#[test]
fn uring_echoes_udp_from_a_linux_socket_and_leaks_nothing() {
    if !have_privileges("uring_echoes_udp_from_a_linux_socket_and_leaks_nothing") {
        return;
    }
    let unit = quiet_ns("ue");
    let peer = quiet_ns("pe");
    veth(&unit, "u0", &peer, "p0").unwrap();
    peer.ip(&["addr", "add", "198.18.0.1/24", "dev", "p0"])
        .unwrap();
    let u0_mac = mac_str(unit.mac("u0").unwrap());
    peer.ip(&[
        "neigh",
        "replace",
        "198.18.0.2",
        "lladdr",
        &u0_mac,
        "dev",
        "p0",
        "nud",
        "permanent",
    ])
    .unwrap();

    let _in_unit = unit.enter().unwrap();
    let mut b = UringBackend::open(&["u0"], &cfg(), None).unwrap();
    assert_eq!(b.name(), "io_uring");
    assert_eq!(b.port_count(), 1);
    assert_eq!(b.frame_size(), 2048);
    b.flush(); // arms the receive from this thread

    const N: u32 = 1000;
    let mut echoed = 0u32;
    let got = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let _g = peer.enter().unwrap();
            let sock = UdpSocket::bind("198.18.0.1:9000").unwrap();
            send_and_collect(&sock, "198.18.0.2:7", N, 64)
        });
        let until = Instant::now() + DEADLINE;
        pump(
            &mut b,
            until,
            || client.is_finished(),
            |b, _port, f| {
                ipv4_udp(b.frame(*f))?;
                echo_in_place(&mut b.frame_mut(*f)[..f.len as usize]);
                echoed += 1;
                Some(0)
            },
        );
        client.join().unwrap()
    });
    assert_eq!(
        got.len() as u32,
        N,
        "the peer got {} of {N} echoes",
        got.len()
    );
    assert!(echoed >= N);
    let s = b.stats();
    assert!(s.rx >= N as u64, "{s:?}");
    assert!(s.tx >= N as u64, "{s:?}");
    assert!(s.syscalls > 0);
    assert_no_leak(&mut b);
    let u = b.uring_stats();
    assert_eq!(u.tx_errors, 0, "{u:?}");
    assert_eq!(u.tx_invalid, 0, "{u:?}");
    eprintln!("echo: {s:?}\n      {u:?}");
}

#[test]
fn uring_forwards_a_frame_from_port_0_to_port_1() {
    if !have_privileges("uring_forwards_a_frame_from_port_0_to_port_1") {
        return;
    }
    let unit = quiet_ns("uf");
    let left = quiet_ns("lf");
    let right = quiet_ns("rf");
    veth(&unit, "u0", &left, "p0").unwrap();
    veth(&unit, "u1", &right, "p1").unwrap();
    left.ip(&["addr", "add", "198.18.1.1/24", "dev", "p0"])
        .unwrap();
    right
        .ip(&["addr", "add", "198.18.1.2/24", "dev", "p1"])
        .unwrap();
    let u0_mac = mac_str(unit.mac("u0").unwrap());
    left.ip(&[
        "neigh",
        "replace",
        "198.18.1.2",
        "lladdr",
        &u0_mac,
        "dev",
        "p0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let u1_mac = unit.mac("u1").unwrap();
    let p1_mac = right.mac("p1").unwrap();

    let _in_unit = unit.enter().unwrap();
    let mut b = UringBackend::open(&["u0", "u1"], &cfg(), None).unwrap();
    assert_eq!(b.port_count(), 2);
    assert_eq!(b.ifname(1), Some("u1"));
    b.flush();

    // Both sockets exist before the first datagram leaves, so none reaches
    // a port nobody listens on yet.
    let sink_sock = {
        let _g = right.enter().unwrap();
        UdpSocket::bind("198.18.1.2:9001").unwrap()
    };
    let source_sock = {
        let _g = left.enter().unwrap();
        UdpSocket::bind("198.18.1.1:9002").unwrap()
    };
    let got = std::thread::scope(|scope| {
        let sink = scope.spawn(|| {
            let sock = sink_sock;
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let until = Instant::now() + DEADLINE;
            let mut buf = [0u8; 2048];
            let mut got = BTreeSet::new();
            while got.len() < 100 && Instant::now() < until {
                if let Ok((len, from)) = sock.recv_from(&mut buf) {
                    assert_eq!(from.to_string(), "198.18.1.1:9002");
                    if len >= 4 {
                        got.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
                    }
                }
            }
            got
        });
        let source = scope.spawn(|| {
            let sock = source_sock;
            for i in 0u32..100 {
                sock.send_to(&i.to_be_bytes(), "198.18.1.2:9001").unwrap();
                // Pace lightly (bounded: 100 × 1 ms) so nothing depends on
                // socket buffer sizes; correctness does not depend on timing.
                std::thread::sleep(Duration::from_millis(1));
            }
        });

        let until = Instant::now() + DEADLINE;
        pump(
            &mut b,
            until,
            || sink.is_finished(),
            |b, port, f| {
                if port != 0 {
                    return None;
                }
                ipv4_udp(b.frame(*f))?;
                let bytes = &mut b.frame_mut(*f)[..f.len as usize];
                bytes[0..6].copy_from_slice(&p1_mac);
                bytes[6..12].copy_from_slice(&u1_mac);
                let (_, udp) = ipv4_udp(bytes)?;
                bytes[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
                Some(1)
            },
        );
        source.join().unwrap();
        sink.join().unwrap()
    });
    assert_eq!(got.len(), 100, "port 1's peer got {} of 100", got.len());
    assert_no_leak(&mut b);
}

#[test]
fn uring_open_names_the_interface_that_is_missing() {
    if !have_privileges("uring_open_names_the_interface_that_is_missing") {
        return;
    }
    let ns = quiet_ns("um");
    let _g = ns.enter().unwrap();
    let err = UringBackend::open(&["nosuch0"], &cfg(), None)
        .err()
        .expect("open of a missing interface fails");
    assert!(err.to_string().contains("nosuch0"), "{err}");
}

#[test]
fn uring_refuses_frames_smaller_than_the_mtu() {
    if !have_privileges("uring_refuses_frames_smaller_than_the_mtu") {
        return;
    }
    let a = quiet_ns("ua");
    let z = quiet_ns("za");
    veth(&a, "u0", &z, "p0").unwrap();
    a.ip(&["link", "set", "u0", "mtu", "4000"]).unwrap();
    let _g = a.enter().unwrap();
    let err = UringBackend::open(&["u0"], &cfg(), None)
        .err()
        .expect("MTU 4000 does not fit 2048-byte frames");
    let msg = err.to_string();
    assert!(msg.contains("u0") && msg.contains("MTU 4000"), "{msg}");
}

#[test]
fn uring_fanout_group_spreads_one_interface_over_two_backends() {
    if !have_privileges("uring_fanout_group_spreads_one_interface_over_two_backends") {
        return;
    }
    let unit = quiet_ns("uo");
    let peer = quiet_ns("po");
    veth(&unit, "u0", &peer, "p0").unwrap();
    peer.ip(&["addr", "add", "198.18.2.1/24", "dev", "p0"])
        .unwrap();
    let u0_mac = mac_str(unit.mac("u0").unwrap());
    peer.ip(&[
        "neigh",
        "replace",
        "198.18.2.2",
        "lladdr",
        &u0_mac,
        "dev",
        "p0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let _g = unit.enter().unwrap();
    let mut w0 = UringBackend::open(&["u0"], &cfg(), Some(0x7100)).unwrap();
    let mut w1 = UringBackend::open(&["u0"], &cfg(), Some(0x7100)).unwrap();
    w0.flush();
    w1.flush();

    // 64 flows (source ports), 4 datagrams each: a flow hash keeps each
    // flow on one backend, and together they see every datagram once.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _g = peer.enter().unwrap();
            for port in 0..64u16 {
                let s = UdpSocket::bind(("198.18.2.1", 20000 + port)).unwrap();
                for i in 0..4u8 {
                    s.send_to(&[i; 8], "198.18.2.2:7").unwrap();
                }
            }
        });
    });

    let mut flows: [BTreeSet<u16>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let mut count = [0usize; 2];
    let until = Instant::now() + DEADLINE;
    let mut batch = [Frame::default(); 64];
    while count[0] + count[1] < 256 && Instant::now() < until {
        for (w, b) in [&mut w0, &mut w1].into_iter().enumerate() {
            b.flush();
            let n = b.rx_burst(0, &mut batch);
            for f in &batch[..n] {
                let bytes = b.frame(*f);
                if let Some((_, udp)) = ipv4_udp(bytes) {
                    flows[w].insert(u16::from_be_bytes([bytes[udp], bytes[udp + 1]]));
                    count[w] += 1;
                }
                b.free(*f);
            }
            if n == 0 {
                b.wait(Duration::from_millis(2));
            }
        }
    }
    assert_eq!(count[0] + count[1], 256, "{count:?}");
    assert!(
        flows[0].is_disjoint(&flows[1]),
        "a flow was split across workers"
    );
    assert!(
        !flows[0].is_empty() && !flows[1].is_empty(),
        "64 flows all hashed to one worker: {count:?}"
    );
    assert_no_leak(&mut w0);
    assert_no_leak(&mut w1);
}

/// A unit namespace with `u0` facing a peer namespace with `p0`
/// (198.18.`net`.1), the peer's neighbour entry for 198.18.`net`.2 pointing
/// at `u0`, and a UDP socket bound in the peer namespace (sockets stay in
/// the namespace they were created in, so the test thread can use it from
/// anywhere).
fn unit_and_peer_socket(tag: &str, net: u8) -> (Netns, Netns, UdpSocket) {
    let unit = quiet_ns(&format!("u{tag}"));
    let peer = quiet_ns(&format!("p{tag}"));
    veth(&unit, "u0", &peer, "p0").unwrap();
    peer.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", "p0"])
        .unwrap();
    let u0_mac = mac_str(unit.mac("u0").unwrap());
    peer.ip(&[
        "neigh",
        "replace",
        &format!("198.18.{net}.2"),
        "lladdr",
        &u0_mac,
        "dev",
        "p0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let sock = {
        let _g = peer.enter().unwrap();
        UdpSocket::bind(format!("198.18.{net}.1:9000")).unwrap()
    };
    (unit, peer, sock)
}

/// Receive until `n` IPv4/UDP frames arrived on port 0 (or the deadline),
/// keeping them (the caller frees them); other frames are freed.
fn receive_udp(b: &mut UringBackend, n: usize, held: &mut Vec<Frame>) -> usize {
    let until = Instant::now() + DEADLINE;
    let mut batch = [Frame::default(); 64];
    let mut got = 0;
    while got < n && Instant::now() < until {
        b.flush();
        let k = b.rx_burst(0, &mut batch);
        for f in &batch[..k] {
            if ipv4_udp(b.frame(*f)).is_some() {
                held.push(*f);
                got += 1;
            } else {
                b.free(*f);
            }
        }
        if k == 0 {
            b.wait(Duration::from_millis(5));
        }
    }
    got
}

#[test]
fn uring_receive_recovers_after_the_buffer_ring_runs_dry() {
    if !have_privileges("uring_receive_recovers_after_the_buffer_ring_runs_dry") {
        return;
    }
    let (unit, _peer, sock) = unit_and_peer_socket("d", 3);
    let _g = unit.enter().unwrap();
    let small = FrameConfig {
        frame_count: 16,
        frame_size: 2048,
        ring_size: 8,
        huge_pages: false,
    };
    let mut b = UringBackend::open(&["u0"], &small, None).unwrap();
    b.flush();
    assert_eq!(
        b.accounting().rx_posted,
        8,
        "half the frames lent for receive"
    );
    // The caller takes every free frame, so nothing can refill the ring.
    let mut held: Vec<Frame> = std::iter::from_fn(|| b.alloc()).collect();
    assert_eq!(held.len(), 8);
    assert!(b.alloc().is_none());
    // Both failed attempts (the one that ended the collect, and this one).
    assert_eq!(b.stats().alloc_failed, 2);

    for i in 0u8..8 {
        sock.send_to(&[i; 16], "198.18.3.2:7").unwrap();
    }
    assert_eq!(receive_udp(&mut b, 8, &mut held), 8);
    assert_eq!(b.accounting().rx_posted, 0);

    // No buffer left: the multishot receive ends with ENOBUFS, the frames
    // wait in the socket.
    for i in 8u8..16 {
        sock.send_to(&[i; 16], "198.18.3.2:7").unwrap();
    }
    let until = Instant::now() + DEADLINE;
    while b.uring_stats().rx_no_buffer == 0 && Instant::now() < until {
        b.wait(Duration::from_millis(5));
    }
    let u = b.uring_stats();
    assert!(u.rx_no_buffer >= 1, "{u:?}");
    assert_eq!(u.rx_rearm, 0, "no re-arm without buffers to receive into");

    // Give the frames back: the ring refills, the receive is re-armed and
    // the queued datagrams arrive.
    for f in held.drain(..) {
        b.free(f);
    }
    assert_eq!(receive_udp(&mut b, 8, &mut held), 8);
    assert!(b.uring_stats().rx_rearm >= 1, "{:?}", b.uring_stats());
    let mut seen: Vec<u8> = held.iter().map(|f| b.frame(*f)[42]).collect();
    seen.sort_unstable();
    assert_eq!(seen, (8u8..16).collect::<Vec<_>>());
    for f in held.drain(..) {
        b.free(f);
    }
    assert_no_leak(&mut b);
    b.refresh_kernel_stats();
    assert_eq!(b.stats().rx_dropped, 0, "{:?}", b.uring_stats());

    // With nothing to send and nothing arriving, a flush is syscall-free
    // (at most the periodic read of the kernel's drop counter).
    let before = b.stats().syscalls;
    for _ in 0..100 {
        b.flush();
    }
    assert!(
        b.stats().syscalls - before <= 1,
        "idle flushes entered the kernel"
    );
}

#[test]
fn uring_backend_can_move_to_another_thread_even_after_arming() {
    if !have_privileges("uring_backend_can_move_to_another_thread_even_after_arming") {
        return;
    }
    let (unit, _peer, sock) = unit_and_peer_socket("t", 4);
    let mut b = {
        let _g = unit.enter().unwrap();
        UringBackend::open(&["u0"], &cfg(), None).unwrap()
    };
    // Arm the receive in a thread that then exits: io_uring cancels the
    // requests of an exiting thread, and the backend must re-arm from the
    // thread that uses it next.
    std::thread::scope(|s| {
        s.spawn(|| b.flush());
    });
    let worker = std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0u8..32 {
                sock.send_to(&[i; 16], "198.18.4.2:7").unwrap();
            }
            let mut held = Vec::new();
            let got = receive_udp(&mut b, 32, &mut held);
            for f in held {
                b.free(f);
            }
            assert_no_leak(&mut b);
            got
        })
        .join()
        .unwrap()
    });
    assert_eq!(worker, 32, "{:?}", b.uring_stats());
    // The first receive ended (cancelled with its thread) and was re-armed.
    assert!(b.uring_stats().rx_rearm >= 1, "{:?}", b.uring_stats());
}

#[test]
fn uring_drops_and_counts_frames_longer_than_a_slot() {
    if !have_privileges("uring_drops_and_counts_frames_longer_than_a_slot") {
        return;
    }
    let (unit, _peer, sock) = unit_and_peer_socket("g", 5);
    let _g = unit.enter().unwrap();
    let mut b = UringBackend::open(&["u0"], &cfg(), None).unwrap();
    b.flush();
    // UDP GSO: one 8000-byte send becomes one GSO skb that veth hands to
    // the peer unsegmented (GSO skbs skip the MTU check), so the packet
    // socket sees an 8042-byte frame, larger than a 2048-byte slot: the
    // situation of a unit behind a veth with TSO on.
    const UDP_SEGMENT: libc::c_int = 103;
    let gso: libc::c_int = 1000;
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a live socket with a correctly sized int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&gso as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    sock.send_to(&[0x5a; 8000], "198.18.5.2:7").unwrap();
    // Then a normal datagram, which must still arrive intact.
    // SAFETY: as above; gso 0 turns segmentation off.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&0 as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    sock.send_to(&[0xa5; 100], "198.18.5.2:7").unwrap();

    let mut held = Vec::new();
    let until = Instant::now() + DEADLINE;
    let mut lens = Vec::new();
    while !lens.contains(&142) && Instant::now() < until {
        receive_udp(&mut b, 1, &mut held);
        for f in held.drain(..) {
            lens.push(f.len);
            b.free(f);
        }
    }
    let u = b.uring_stats();
    assert!(
        lens.contains(&142),
        "the small datagram arrived: {lens:?} {u:?}"
    );
    assert!(lens.iter().all(|&l| l <= 2048), "{lens:?}");
    if u.rx_truncated == 0 {
        // This kernel segmented before the packet socket: eight 1042-byte
        // frames instead of one super-frame. Nothing to truncate then.
        assert_eq!(lens.iter().filter(|&&l| l == 1042).count(), 8, "{lens:?}");
    } else {
        assert_eq!(u.rx_truncated, 1, "{u:?}");
        assert_eq!(b.stats().rx_dropped, 1);
    }
    eprintln!("oversize: lens {lens:?}, {u:?}");
    assert_no_leak(&mut b);
}

#[test]
fn uring_port_nobody_polls_backs_up_into_its_socket_without_loss() {
    if !have_privileges("uring_port_nobody_polls_backs_up_into_its_socket_without_loss") {
        return;
    }
    let (unit, _peer, sock) = unit_and_peer_socket("q", 8);
    let _g = unit.enter().unwrap();
    let small = FrameConfig {
        frame_count: 64,
        frame_size: 2048,
        ring_size: 8,
        huge_pages: false,
    };
    let mut b = UringBackend::open(&["u0"], &small, None).unwrap();
    b.flush();
    for i in 0u8..20 {
        sock.send_to(&[i; 16], "198.18.8.2:7").unwrap();
    }
    // Flush and wait without calling rx_burst: the port's ready queue and
    // its lent buffers together stay at 8 frames; the receive ends for
    // lack of buffers and the other 12 frames wait in the socket.
    let until = Instant::now() + DEADLINE;
    while (b.accounting().rx_ready < 8 || b.uring_stats().rx_no_buffer == 0)
        && Instant::now() < until
    {
        b.wait(Duration::from_millis(5));
    }
    for _ in 0..10 {
        b.flush();
    }
    let a = b.accounting();
    assert_eq!(a.rx_ready, 8, "{a:?}");
    assert_eq!(
        a.rx_posted, 0,
        "no new buffers while the queue is full: {a:?}"
    );
    assert_eq!(a.free, 64 - 8, "the pool keeps the rest: {a:?}");
    let u = b.uring_stats();
    assert!(u.rx_no_buffer >= 1, "{u:?}");
    assert_eq!(u.rx_queue_full, 0, "{u:?}");

    // Once the caller takes the frames, the rest arrives: nothing was lost.
    let mut held = Vec::new();
    assert_eq!(receive_udp(&mut b, 20, &mut held), 20);
    let mut seen: Vec<u8> = held.iter().map(|f| b.frame(*f)[42]).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0u8..20).collect::<Vec<_>>());
    for f in held {
        b.free(f);
    }
    b.refresh_kernel_stats();
    assert_eq!(b.stats().rx_dropped, 0, "{:?}", b.uring_stats());
    assert_no_leak(&mut b);
}

#[test]
fn uring_a_port_nobody_polls_does_not_stall_the_others() {
    if !have_privileges("uring_a_port_nobody_polls_does_not_stall_the_others") {
        return;
    }
    let unit = quiet_ns("us");
    let (a, c) = (quiet_ns("as"), quiet_ns("cs"));
    veth(&unit, "u0", &a, "p0").unwrap();
    veth(&unit, "u1", &c, "p1").unwrap();
    let mut socks = Vec::new();
    for (ns, dev, net) in [(&a, "p0", 9u8), (&c, "p1", 10u8)] {
        let u_if = if dev == "p0" { "u0" } else { "u1" };
        ns.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", dev])
            .unwrap();
        let mac = mac_str(unit.mac(u_if).unwrap());
        ns.ip(&[
            "neigh",
            "replace",
            &format!("198.18.{net}.2"),
            "lladdr",
            &mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .unwrap();
        let _g = ns.enter().unwrap();
        socks.push(UdpSocket::bind(format!("198.18.{net}.1:9000")).unwrap());
    }
    let _g = unit.enter().unwrap();
    let small = FrameConfig {
        frame_count: 64,
        frame_size: 2048,
        ring_size: 8,
        huge_pages: false,
    };
    let mut b = UringBackend::open(&["u0", "u1"], &small, None).unwrap();
    b.flush();
    // Port 1 is flooded and never polled; port 0 must keep receiving.
    for i in 0..200u32 {
        socks[1].send_to(&i.to_be_bytes(), "198.18.10.2:7").unwrap();
    }
    for i in 0..50u32 {
        socks[0].send_to(&i.to_be_bytes(), "198.18.9.2:7").unwrap();
    }
    let until = Instant::now() + DEADLINE;
    let mut batch = [Frame::default(); 16];
    let mut got = 0;
    while got < 50 && Instant::now() < until {
        b.flush();
        let n = b.rx_burst(0, &mut batch);
        for f in &batch[..n] {
            if ipv4_udp(b.frame(*f)).is_some() {
                got += 1;
            }
            b.free(*f);
        }
        if n == 0 {
            b.wait(Duration::from_millis(5));
        }
    }
    assert_eq!(got, 50, "port 0 starved by port 1: {:?}", b.accounting());
    let a = b.accounting();
    assert!(a.rx_ready <= 8, "port 1 holds at most its share: {a:?}");
    assert_eq!(b.uring_stats().rx_queue_full, 0);
}

#[test]
fn uring_promiscuous_mode_lasts_as_long_as_the_backend() {
    if !have_privileges("uring_promiscuous_mode_lasts_as_long_as_the_backend") {
        return;
    }
    let unit = quiet_ns("ux");
    let peer = quiet_ns("px");
    veth(&unit, "u0", &peer, "p0").unwrap();
    let promiscuity = || {
        let out = unit.ip(&["-d", "link", "show", "u0"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .skip_while(|w| *w != "promiscuity")
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok())
            .expect("ip -d link prints promiscuity")
    };
    assert_eq!(promiscuity(), 0);
    {
        let _g = unit.enter().unwrap();
        let opts = tandem_io::uring::UringOptions {
            promiscuous: true,
            ..Default::default()
        };
        let _b = UringBackend::open_with(&["u0"], &cfg(), &opts).unwrap();
        assert_eq!(promiscuity(), 1);
    }
    assert_eq!(promiscuity(), 0, "closing the socket ends promiscuous mode");
}
