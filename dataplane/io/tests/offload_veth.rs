//! The flow-offload program attached for real: A ── veth ── U ── veth ── B,
//! with tandem's offload program on both of U's ends sharing one flow map
//! and an AF_XDP backend holding the table. An entry installed through
//! `Backend::flow_offload` makes U's kernel forward A's datagrams to B,
//! source-translated, without a worker ever seeing them.
//!
//! Builds its own namespaces (removed on drop, even on panic), uses only
//! 198.18.0.0/15, and bounds every loop by count and deadline.

#![cfg(target_os = "linux")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_io::afxdp::{testing, AfXdpBackend, FlowMap, XdpAttachment, XdpMode, ZeroCopy};
use tandem_io::offload::{csum_addend, FlowMatch, FlowOwner, FlowRewrite};
use tandem_io::{Backend, Frame, FrameConfig};
use tandem_netns::sequdp::{count_arrivals, send_windows};
use tandem_netns::{ensure_tool, have_privileges, veth, Netns};

const N: usize = 300;
const WINDOW: usize = 16;
const A_IP: [u8; 4] = [198, 18, 0, 2];
const B_IP: [u8; 4] = [198, 19, 0, 2];
/// U's translated source address (on B's subnet, so B answers on-link).
const NAT_IP: [u8; 4] = [198, 19, 0, 1];
const A_PORT: u16 = 40000;
const NAT_PORT: u16 = 61000;
const B_PORT: u16 = 7000;

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn words(a: [u8; 4]) -> [u16; 2] {
    [
        u16::from_be_bytes([a[0], a[1]]),
        u16::from_be_bytes([a[2], a[3]]),
    ]
}

#[test]
fn offloaded_udp_flow_is_forwarded_and_translated_by_the_kernel() {
    if !have_privileges("offloaded_udp_flow_is_forwarded_and_translated_by_the_kernel") {
        return;
    }
    ensure_tool("ethtool", "ethtool").unwrap();
    let a = Netns::new("oa").unwrap();
    let u = Netns::new("ou").unwrap();
    let bns = Netns::new("ob").unwrap();
    veth(&a, "a0", &u, "u0").unwrap();
    veth(&u, "u1", &bns, "b0").unwrap();
    a.ip(&["addr", "add", "198.18.0.2/24", "dev", "a0"])
        .unwrap();
    a.ip(&["route", "add", "198.19.0.0/24", "via", "198.18.0.1"])
        .unwrap();
    let u0_mac = u.mac("u0").unwrap();
    let u1_mac = u.mac("u1").unwrap();
    let b0_mac = bns.mac("b0").unwrap();
    a.ip(&[
        "neigh",
        "add",
        "198.18.0.1",
        "lladdr",
        &mac_str(u0_mac),
        "dev",
        "a0",
    ])
    .unwrap();
    bns.ip(&["addr", "add", "198.19.0.2/24", "dev", "b0"])
        .unwrap();
    // Full checksums from the sender (PLATFORM.md: offload leaves them
    // partial, and the fast path only adjusts them), and NAPI on B's end
    // so that U's `ndo_xdp_xmit` into u1 is accepted.
    a.exec("ethtool", &["-K", "a0", "tx", "off"]).unwrap();
    bns.exec("ethtool", &["-K", "b0", "gro", "on"]).unwrap();

    let map = FlowMap::create(1024).unwrap();
    let (got, from, packets, worker_saw) = {
        let _in_u = u.enter().unwrap();
        let att0 = XdpAttachment::attach_with_offload("u0", XdpMode::Native, Some(&map)).unwrap();
        let att1 = XdpAttachment::attach_with_offload("u1", XdpMode::Native, Some(&map)).unwrap();
        assert!(att0.flow_map().is_some());
        assert_eq!(
            testing::attached_programs("u0").unwrap().0,
            att0.prog_id().unwrap()
        );
        let frames = FrameConfig {
            frame_count: 512,
            frame_size: 2048,
            ring_size: 128,
            huge_pages: false,
        };
        let mut b = AfXdpBackend::open(&[(&att0, 0), (&att1, 0)], &frames, ZeroCopy::Off).unwrap();
        assert!(b.flow_offload().is_none());
        b.set_flow_offload(map.table(vec![att0.ifindex(), att1.ifindex()]));
        // The map outlives our handle: the attachments and table hold it.
        drop(map);

        let flow = FlowMatch {
            port: 0,
            src: A_IP,
            dst: B_IP,
            sport: A_PORT.to_be_bytes(),
            dport: B_PORT.to_be_bytes(),
            proto: 17,
        };
        let (oa, ob, nn) = (words(A_IP), words(B_IP), words(NAT_IP));
        let ttl = |t: u8| u16::from_be_bytes([t, 17]);
        let to = FlowRewrite {
            src: NAT_IP,
            dst: B_IP,
            sport: NAT_PORT.to_be_bytes(),
            dport: B_PORT.to_be_bytes(),
            ip_csum_add: csum_addend(
                &[oa[0], oa[1], ob[0], ob[1], ttl(64)],
                &[nn[0], nn[1], ob[0], ob[1], ttl(63)],
            ),
            l4_csum_add: csum_addend(&[oa[0], oa[1], A_PORT], &[nn[0], nn[1], NAT_PORT]),
            port: 1,
            mtu: 1500,
            rx_mac: u0_mac,
            dst_mac: b0_mac,
            src_mac: u1_mac,
        };
        let table = b.flow_offload().expect("table set");
        table
            .install(
                &flow,
                &to,
                FlowOwner {
                    shard: 0,
                    conn: 1,
                    gen: 1,
                },
            )
            .unwrap();

        let deadline = Instant::now() + Duration::from_secs(20);
        let seen = Arc::new(AtomicUsize::new(0));
        let bound = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (seen, bound) = (seen.clone(), bound.clone());
            std::thread::spawn(move || {
                let r = {
                    let _in_b = bns.enter().unwrap();
                    let sock = UdpSocket::bind(("198.19.0.2", B_PORT)).unwrap();
                    bound.store(true, Ordering::Release);
                    count_arrivals(&sock, N, &seen, &AtomicBool::new(false), deadline)
                };
                (r, bns)
            })
        };
        let sender = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                while !bound.load(Ordering::Acquire) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                {
                    let _in_a = a.enter().unwrap();
                    let sock = UdpSocket::bind(("198.18.0.2", A_PORT)).unwrap();
                    send_windows(&sock, "198.19.0.2:7000", N, WINDOW, &seen, deadline);
                }
                a
            })
        };
        // The worker's side: anything that reaches the sockets was not
        // offloaded. Count A's datagrams among it (there should be none).
        let mut batch = [Frame::default(); 64];
        let mut worker_saw = 0;
        while !receiver.is_finished() && Instant::now() < deadline {
            for port in 0..2 {
                let n = b.rx_burst(port, &mut batch);
                for f in &batch[..n] {
                    let bytes = b.frame(*f);
                    if bytes.len() >= 34 && bytes[12..14] == [8, 0] && bytes[26..30] == A_IP {
                        worker_saw += 1;
                    }
                    b.free(*f);
                }
            }
            b.flush();
            b.wait(Duration::from_millis(5));
        }
        let ((got, from), _bns) = receiver.join().unwrap();
        let _a = sender.join().unwrap();
        let mut packets = 0;
        let table = b.flow_offload().unwrap();
        for _ in 0..100 {
            if table
                .scan(64, &mut |s| {
                    if s.flow == flow {
                        packets = s.packets;
                    }
                })
                .unwrap()
            {
                break;
            }
        }
        assert_eq!(
            table.remove(&flow).unwrap().map(|s| s.packets),
            Some(packets)
        );
        (got, from, packets, worker_saw)
    };
    assert_eq!(got, N, "B received {got} of {N}");
    assert_eq!(
        from,
        Some(SocketAddr::from((NAT_IP, NAT_PORT))),
        "B sees the translated source"
    );
    assert_eq!(worker_saw, 0, "offloaded datagrams reached the worker");
    assert!(packets >= N as u64, "entry counted {packets} of {N}");
}
