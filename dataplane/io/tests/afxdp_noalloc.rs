//! The AF_XDP backend's steady state allocates nothing: receive, echo in
//! place, transmit, flush, wait and read stats over real traffic on a veth
//! pair while a counting allocator watches the thread that drives the
//! backend. Needs root; skipped otherwise.

#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_io::afxdp::{AfXdpBackend, XdpAttachment, XdpMode, ZeroCopy};
use tandem_io::{Backend, Frame, FrameConfig};
use tandem_netns::{have_privileges, veth, Netns};

#[global_allocator]
static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;

const N: usize = 3000;
const WARMUP: usize = 200;
const UNIT_PORT: u16 = 40001;

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Swap MACs of an IPv4/UDP frame to `UNIT_PORT`; false for anything else.
fn turn_around(f: &mut [u8], len: usize) -> bool {
    let ok = len >= 42
        && f.len() >= len
        && f[12..14] == [0x08, 0x00]
        && f[23] == 17
        && u16::from_be_bytes([f[36], f[37]]) == UNIT_PORT;
    if ok {
        for i in 0..6 {
            f.swap(i, 6 + i);
        }
    }
    ok
}

#[test]
fn afxdp_steady_state_batches_allocate_nothing() {
    if !have_privileges("afxdp_steady_state_batches_allocate_nothing") {
        return;
    }
    let unit = Netns::new("an").unwrap();
    let peer = Netns::new("pn").unwrap();
    veth(&unit, "n0", &peer, "q0").unwrap();
    peer.ip(&["addr", "add", "198.18.7.1/24", "dev", "q0"])
        .unwrap();
    let n0_mac = mac_str(unit.mac("n0").unwrap());
    peer.ip(&["neigh", "add", "198.18.7.2", "lladdr", &n0_mac, "dev", "q0"])
        .unwrap();

    let _in_unit = unit.enter().unwrap();
    let att = XdpAttachment::attach("n0", XdpMode::Auto).unwrap();
    let frames = FrameConfig {
        frame_count: 1024,
        frame_size: 2048,
        ring_size: 256,
        huge_pages: false,
    };
    let mut b = AfXdpBackend::open(&[(&att, 0)], &frames, ZeroCopy::Off).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let handled = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (handled, stop) = (handled.clone(), stop.clone());
        std::thread::spawn(move || {
            {
                let _in_peer = peer.enter().unwrap();
                let sock = UdpSocket::bind("198.18.7.1:40000").unwrap();
                let mut sent = 0usize;
                // Keep at most 64 datagrams ahead of the unit, bounded by
                // count and deadline.
                while sent < N && !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                    if sent < handled.load(Ordering::Acquire) + 64 {
                        let _ =
                            sock.send_to(&(sent as u32).to_be_bytes(), ("198.18.7.2", UNIT_PORT));
                        sent += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
            peer
        })
    };

    let mut batch = [Frame::default(); 64];
    let mut out = [Frame::default(); 64];
    let mut total = 0usize;
    let mut watched_frames = 0usize;
    let mut watched_batches = 0usize;
    while total < N && Instant::now() < deadline {
        let watch = total >= WARMUP;
        tandem_alloc_count::watch(watch);
        let n = b.rx_burst(0, &mut batch);
        let mut k = 0;
        for f in &batch[..n] {
            if turn_around(b.frame_mut(*f), f.len as usize) {
                out[k] = *f;
                k += 1;
            } else {
                b.free(*f);
            }
        }
        let sent = b.tx_burst(0, &out[..k]);
        for f in &out[sent..k] {
            b.free(*f);
        }
        b.flush();
        let _ = b.stats();
        if n == 0 {
            b.wait(Duration::from_millis(2));
        }
        tandem_alloc_count::watch(false);
        total += k;
        if watch {
            watched_frames += k;
            watched_batches += 1;
        }
        handled.store(total, Ordering::Release);
    }
    stop.store(true, Ordering::Release);
    let _peer = sender.join().unwrap();
    assert!(
        watched_frames >= (N - WARMUP) / 2,
        "too little traffic to judge: {watched_frames} frames in {watched_batches} batches"
    );
    assert_eq!(
        tandem_alloc_count::watched_allocs(),
        0,
        "allocations during {watched_batches} steady-state batches ({watched_frames} frames)"
    );
}
