//! A rough forwarding-rate probe of the io_uring backend (ignored by
//! default; not a benchmark — the `bench` crate compares backends in one
//! run). A UDP socket in one namespace sends 64-byte frames flat out for two
//! seconds; the backend forwards them from port 0 to port 1; the figures
//! are printed.
//!
//! `cargo test --release -p tandem-io --test uring_rate -- --ignored --nocapture`

#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem_io::uring::UringBackend;
use tandem_io::{Backend, Frame, FrameConfig};
use tandem_netns::{have_privileges, veth, Netns};

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
#[ignore = "rate probe: run by hand with --release"]
fn uring_forwarding_rate_probe() {
    if !have_privileges("uring_forwarding_rate_probe") {
        return;
    }
    let unit = Netns::new("ur").unwrap();
    let left = Netns::new("lr").unwrap();
    let right = Netns::new("rr").unwrap();
    for ns in [&unit, &left, &right] {
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1").unwrap();
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
            .unwrap();
    }
    veth(&unit, "u0", &left, "p0").unwrap();
    veth(&unit, "u1", &right, "p1").unwrap();
    left.ip(&["addr", "add", "198.18.7.1/24", "dev", "p0"])
        .unwrap();
    left.ip(&[
        "neigh",
        "replace",
        "198.18.7.2",
        "lladdr",
        &mac_str(unit.mac("u0").unwrap()),
        "dev",
        "p0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let u1_mac = unit.mac("u1").unwrap();
    let p1_mac = right.mac("p1").unwrap();
    let sock = {
        let _g = left.enter().unwrap();
        UdpSocket::bind("198.18.7.1:9000").unwrap()
    };
    let _g = unit.enter().unwrap();
    let cfg = FrameConfig {
        frame_count: 8192,
        frame_size: 2048,
        ring_size: 1024,
        huge_pages: true,
    };
    let mut b = UringBackend::open(&["u0", "u1"], &cfg, None).unwrap();
    b.flush();

    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let dur = Duration::from_secs(2);
    let (elapsed, fwd) = std::thread::scope(|s| {
        s.spawn(|| {
            // sendmmsg of 64 datagrams per call: the kernel's UDP send path
            // is the generator's limit, not the syscall count.
            use std::os::fd::AsRawFd;
            let to = {
                // SAFETY: sockaddr_in is plain old data; all-zero is valid.
                let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                a.sin_family = libc::AF_INET as u16;
                a.sin_port = 9u16.to_be();
                a.sin_addr.s_addr = u32::from_be_bytes([198, 18, 7, 2]).to_be();
                a
            };
            let mut payload = [0u8; 18]; // 14 + 20 + 8 + 18 = 60-byte frame
            let mut iov = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            };
            // SAFETY: mmsghdr is plain old data; all-zero is valid.
            let mut msgs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
            for m in &mut msgs {
                m.msg_hdr.msg_name = (&to as *const libc::sockaddr_in).cast_mut().cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = &mut iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            let until = Instant::now() + dur;
            let mut n = 0u64;
            while Instant::now() < until {
                // SAFETY: every header points at `to`, `iov` and `payload`,
                // which outlive the call; the count matches the array.
                let r = unsafe {
                    libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0)
                };
                if r > 0 {
                    n += r as u64;
                }
            }
            sent.store(n, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
        });
        let start = Instant::now();
        let mut batch = [Frame::default(); 64];
        let mut fwd = 0u64;
        let hard_stop = start + dur + Duration::from_secs(3);
        while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
            let n = b.rx_burst(0, &mut batch);
            for f in &batch[..n] {
                let bytes = b.frame_mut(*f);
                bytes[0..6].copy_from_slice(&p1_mac);
                bytes[6..12].copy_from_slice(&u1_mac);
            }
            let k = b.tx_burst(1, &batch[..n]);
            for f in &batch[k..n] {
                b.free(*f);
            }
            fwd += k as u64;
            b.flush();
            if n == 0 {
                b.wait(Duration::from_millis(1));
            }
        }
        (start.elapsed(), fwd)
    });
    b.refresh_kernel_stats();
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "sent {} ({:.0} pps), forwarded {} ({:.0} pps)\n{:?}\n{:?}",
        sent.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed) as f64 / secs,
        fwd,
        fwd as f64 / secs,
        b.stats(),
        b.uring_stats()
    );
    assert!(fwd > 0);
}
