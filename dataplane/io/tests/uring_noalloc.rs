//! The io_uring backend's steady state allocates nothing: receive, echo in
//! place, transmit and flush batches of real traffic on a veth pair while a
//! counting allocator watches the thread that drives the backend. Needs
//! root; skipped otherwise.

#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tandem_io::uring::UringBackend;
use tandem_io::{Backend, Frame, FrameConfig};
use tandem_netns::{have_privileges, veth, Netns};

#[global_allocator]
static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn uring_steady_state_batches_allocate_nothing() {
    if !have_privileges("uring_steady_state_batches_allocate_nothing") {
        return;
    }
    let unit = Netns::new("un").unwrap();
    let peer = Netns::new("pn").unwrap();
    for ns in [&unit, &peer] {
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1").unwrap();
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
            .unwrap();
    }
    veth(&unit, "u0", &peer, "p0").unwrap();
    peer.ip(&["addr", "add", "198.18.6.1/24", "dev", "p0"])
        .unwrap();
    let u0_mac = mac_str(unit.mac("u0").unwrap());
    peer.ip(&[
        "neigh",
        "replace",
        "198.18.6.2",
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
        UdpSocket::bind("198.18.6.1:9000").unwrap()
    };
    let _g = unit.enter().unwrap();
    let cfg = FrameConfig {
        frame_count: 1024,
        frame_size: 2048,
        ring_size: 256,
        huge_pages: false,
    };
    let mut b = UringBackend::open(&["u0"], &cfg, None).unwrap();
    let mut batch = [Frame::default(); 64];
    let mut out = [Frame::default(); 64];

    // One warm-up round outside the watch, then rounds under it: the peer
    // sends 32 datagrams (allocation on that side is not ours to count,
    // so the watch is off while it sends), the backend echoes them back.
    let mut echoed = 0usize;
    let until = Instant::now() + Duration::from_secs(20);
    for round in 0..20 {
        for i in 0..32u8 {
            sock.send_to(&[i; 32], "198.18.6.2:7").unwrap();
        }
        let watch = round > 0;
        let mut got = 0;
        tandem_alloc_count::watch(watch);
        while got < 32 && Instant::now() < until {
            let n = b.rx_burst(0, &mut batch);
            let mut k = 0;
            for f in &batch[..n] {
                let bytes = b.frame_mut(*f);
                if f.len >= 42 && bytes[12..14] == [8, 0] && bytes[23] == 17 {
                    // Swap MACs only: the frame goes back to the peer's
                    // MAC, which drops it as not for its IP; the point is
                    // the transmit path, not delivery.
                    let mut t = [0u8; 6];
                    t.copy_from_slice(&bytes[0..6]);
                    bytes.copy_within(6..12, 0);
                    bytes[6..12].copy_from_slice(&t);
                    out[k] = *f;
                    k += 1;
                    got += 1;
                } else {
                    b.free(*f);
                }
            }
            let sent = b.tx_burst(0, &out[..k]);
            for f in &out[sent..k] {
                b.free(*f);
            }
            b.flush();
            if n == 0 {
                b.wait(Duration::from_millis(5));
            }
        }
        tandem_alloc_count::watch(false);
        assert_eq!(got, 32, "round {round}");
        echoed += got;
    }
    assert_eq!(echoed, 20 * 32);
    assert_eq!(
        tandem_alloc_count::watched_allocs(),
        0,
        "allocations in steady-state batches"
    );
    assert!(b.stats().tx >= 600);
}
