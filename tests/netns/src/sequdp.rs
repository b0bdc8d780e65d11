//! Numbered UDP datagrams for lab tests: a sender that sends `n` datagrams
//! (each a 4-byte big-endian sequence number) in windows, waiting (bounded)
//! for the receiver to catch up before the next window so veth rings never
//! overflow, and a receiver that counts the distinct numbers that arrive.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Sends sequence numbers `0..n` from `sock` to `dst`, `window` at a time;
/// before each next window waits up to 2 s for `seen` (published by
/// [`count_arrivals`]) to reach the last one sent. Returns when done or at
/// `deadline`.
pub fn send_windows(
    sock: &UdpSocket,
    dst: &str,
    n: usize,
    window: usize,
    seen: &AtomicUsize,
    deadline: Instant,
) {
    let mut next = 0;
    while next < n && Instant::now() < deadline {
        let end = (next + window.max(1)).min(n);
        for seq in next..end {
            let _ = sock.send_to(&(seq as u32).to_be_bytes(), dst);
        }
        next = end;
        let until = (Instant::now() + Duration::from_secs(2)).min(deadline);
        while seen.load(Ordering::Acquire) < end && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Counts the distinct sequence numbers below `n` arriving on `sock` until
/// all came, `stop` is set or `deadline` passes, publishing the count in
/// `seen`. Returns the count and the source of the last datagram.
pub fn count_arrivals(
    sock: &UdpSocket,
    n: usize,
    seen: &AtomicUsize,
    stop: &AtomicBool,
    deadline: Instant,
) -> (usize, Option<SocketAddr>) {
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("read timeout");
    let mut got = vec![false; n];
    let mut buf = [0u8; 64];
    let (mut count, mut from) = (0, None);
    while count < n && !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        if let Ok((len, peer)) = sock.recv_from(&mut buf) {
            from = Some(peer);
            if len == 4 {
                let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if seq < n && !got[seq] {
                    got[seq] = true;
                    count += 1;
                    seen.store(count, Ordering::Release);
                }
            }
        }
    }
    (count, from)
}
