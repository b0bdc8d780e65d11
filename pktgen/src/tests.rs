//! End-to-end tests of sender and receiver over the in-memory backend.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_io::mem::MemBackend;
use tandem_io::{Backend, BackendStats, Frame, PortId};

use crate::probe::FrameTemplate;
use crate::*;

const TX: PortId = 0;
const RX: PortId = 1;

fn flow() -> FlowSpec {
    FlowSpec {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: Ipv4Addr::new(198, 18, 1, 10),
        dst_ip: Ipv4Addr::new(198, 18, 2, 10),
        src_port: 40000,
        dst_port: 9,
        flows: 1,
        frame_len: 64,
    }
}

fn send_cfg(count: u64) -> SendConfig {
    SendConfig {
        flow: flow(),
        count: Some(count),
        duration: Duration::from_secs(10),
        rate_pps: None,
        stream: 3,
        batch: 32,
    }
}

fn recv_cfg(expected: u64) -> RecvConfig {
    RecvConfig {
        duration: Duration::from_secs(10),
        idle_timeout: Some(Duration::from_millis(20)),
        stream: Some(3),
        expected: Some(expected),
    }
}

fn backend(frames: u32) -> MemBackend {
    MemBackend::new(2, frames, 2048, frames as usize)
}

/// Send `n` frames on port 0 and return their bytes in transmit order.
fn sent_frames(b: &mut MemBackend, n: u64) -> Vec<Vec<u8>> {
    let stop = AtomicBool::new(false);
    let r = send(b, TX, &send_cfg(n), &stop).unwrap();
    assert_eq!(r.sent, n);
    let mut out = Vec::new();
    b.drain_tx(TX, |f| out.push(f.to_vec()));
    out
}

#[test]
fn all_frames_arrive_with_no_loss() {
    let mut b = backend(2048);
    let stop = AtomicBool::new(false);
    let s = send(&mut b, TX, &send_cfg(1000), &stop).unwrap();
    assert_eq!(s.sent, 1000);
    assert_eq!(s.tx_ring_full, 0);
    assert_eq!(b.wire_tx_to_rx(TX, RX), 1000);
    let r = receive(&mut b, RX, &recv_cfg(1000), &stop);
    assert_eq!(r.received, 1000);
    assert_eq!(r.lost, 0);
    assert_eq!(r.loss_pct, 0.0);
    assert_eq!(r.reordered, 0);
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.ignored, 0);
    // Every frame went back to the pool.
    assert_eq!(b.free_frames(), 2048);
}

#[test]
fn every_tenth_frame_dropped_is_ten_percent_loss() {
    let mut b = backend(2048);
    let frames = sent_frames(&mut b, 1000);
    for (i, f) in frames.iter().enumerate() {
        if i % 10 != 9 {
            assert!(b.inject(RX, f));
        }
    }
    let stop = AtomicBool::new(false);
    let r = receive(&mut b, RX, &recv_cfg(1000), &stop);
    assert_eq!(r.received, 900);
    assert_eq!(r.lost, 100);
    assert!((r.loss_pct - 10.0).abs() < 1e-9, "{}", r.loss_pct);
    assert_eq!(r.reordered, 0);
}

#[test]
fn loss_without_expected_counts_against_highest_seq() {
    let mut b = backend(256);
    let frames = sent_frames(&mut b, 100);
    for (i, f) in frames.iter().enumerate() {
        if i != 50 {
            b.inject(RX, f);
        }
    }
    let stop = AtomicBool::new(false);
    let cfg = RecvConfig {
        expected: None,
        ..recv_cfg(0)
    };
    let r = receive(&mut b, RX, &cfg, &stop);
    assert_eq!((r.received, r.lost), (99, 1));
}

#[test]
fn two_swapped_frames_are_one_reordering() {
    let mut b = backend(256);
    let mut frames = sent_frames(&mut b, 100);
    frames.swap(40, 41);
    for f in &frames {
        b.inject(RX, f);
    }
    let stop = AtomicBool::new(false);
    let r = receive(&mut b, RX, &recv_cfg(100), &stop);
    assert_eq!(
        (r.received, r.lost, r.reordered, r.duplicates),
        (100, 0, 1, 0)
    );
}

#[test]
fn duplicates_are_counted_once_and_not_as_received() {
    let mut b = backend(256);
    let frames = sent_frames(&mut b, 10);
    for f in frames.iter().chain(&frames[3..5]) {
        b.inject(RX, f);
    }
    let stop = AtomicBool::new(false);
    let cfg = RecvConfig {
        expected: None,
        ..recv_cfg(0)
    };
    let r = receive(&mut b, RX, &cfg, &stop);
    assert_eq!(
        (r.received, r.lost, r.duplicates, r.reordered),
        (10, 0, 2, 0)
    );
}

#[test]
fn other_streams_and_non_probes_are_ignored() {
    let mut b = backend(256);
    let frames = sent_frames(&mut b, 10);
    let other = FrameTemplate::new(&flow(), 4, 2048).unwrap();
    let mut buf = [0u8; 64];
    other.write(&mut buf, 0, 0).unwrap();
    b.inject(RX, &buf);
    b.inject(RX, &[0xff; 60]);
    for f in &frames {
        b.inject(RX, f);
    }
    let stop = AtomicBool::new(false);
    let r = receive(&mut b, RX, &recv_cfg(10), &stop);
    assert_eq!((r.received, r.ignored), (10, 2));
}

#[test]
fn stream_none_locks_onto_the_first_stream() {
    let mut sink = Sink::new(None);
    let p = |stream, seq| Probe {
        stream,
        seq,
        tx_ns: 0,
    };
    assert!(sink.record_probe(1, p(8, 0)));
    assert!(!sink.record_probe(2, p(9, 1)));
    assert!(sink.record_probe(3, p(8, 1)));
    let r = sink.report(None);
    assert_eq!((r.received, r.ignored), (2, 1));
}

#[test]
fn sink_window_forgets_old_numbers_but_not_recent_ones() {
    use crate::recv::DUP_WINDOW;
    let mut sink = Sink::new(Some(0));
    let p = |seq| Probe {
        stream: 0,
        seq,
        tx_ns: 0,
    };
    sink.record_probe(0, p(5));
    // A jump of more than the window clears it.
    sink.record_probe(0, p(5 + DUP_WINDOW + 3));
    // 5 is now older than the window: reordered, counted (cannot be told
    // from a duplicate any more).
    sink.record_probe(0, p(5));
    // A number inside the window that never arrived is new, then a duplicate.
    sink.record_probe(0, p(DUP_WINDOW));
    sink.record_probe(0, p(DUP_WINDOW));
    let r = sink.report(Some(0));
    assert_eq!((r.received, r.reordered, r.duplicates), (4, 2, 1));
    assert_eq!(r.lost, 0);
}

#[test]
fn latency_comes_from_the_send_timestamp() {
    let mut sink = Sink::new(Some(0));
    for i in 0..1000u64 {
        // Latencies 1..=1000 µs.
        sink.record_probe(
            1_000_000 + i * 1000 + (i + 1) * 1000,
            Probe {
                stream: 0,
                seq: i,
                tx_ns: 1_000_000 + i * 1000,
            },
        );
    }
    // One probe "from the future" is counted, not recorded.
    sink.record_probe(
        0,
        Probe {
            stream: 0,
            seq: 1000,
            tx_ns: 5,
        },
    );
    let r = sink.report(None);
    let l = r.latency_us;
    assert!((499..=501).contains(&l.p50), "{l:?}");
    assert!((989..=991).contains(&l.p99), "{l:?}");
    assert_eq!(l.max, 1000);
    assert_eq!(r.clock_skewed, 1);
}

/// A backend that releases one queued frame per `rx_burst` once its
/// scheduled time has come on a fake clock shared with the receiver.
struct Scheduled {
    inner: MemBackend,
    now: Arc<AtomicU64>,
    due: VecDeque<u64>,
}

impl Backend for Scheduled {
    fn name(&self) -> &'static str {
        "scheduled"
    }
    fn port_count(&self) -> usize {
        self.inner.port_count()
    }
    fn frame_size(&self) -> usize {
        self.inner.frame_size()
    }
    fn rx_burst(&mut self, port: PortId, out: &mut [Frame]) -> usize {
        match self.due.front() {
            Some(&t) if t <= self.now.load(Ordering::Relaxed) && !out.is_empty() => {
                self.due.pop_front();
                // Deliver the frame at exactly its scheduled time.
                self.now.store(t, Ordering::Relaxed);
                self.inner.rx_burst(port, &mut out[..1])
            }
            _ => 0,
        }
    }
    fn tx_burst(&mut self, port: PortId, frames: &[Frame]) -> usize {
        self.inner.tx_burst(port, frames)
    }
    fn frame(&self, f: Frame) -> &[u8] {
        self.inner.frame(f)
    }
    fn frame_mut(&mut self, f: Frame) -> &mut [u8] {
        self.inner.frame_mut(f)
    }
    fn alloc(&mut self) -> Option<Frame> {
        self.inner.alloc()
    }
    fn free(&mut self, f: Frame) {
        self.inner.free(f)
    }
    fn flush(&mut self) {}
    fn wait(&mut self, _timeout: Duration) {}
    fn stats(&self) -> BackendStats {
        self.inner.stats()
    }
}

#[test]
fn longest_gap_is_the_hole_in_arrival_times() {
    const MS: u64 = 1_000_000;
    let t = FrameTemplate::new(&flow(), 3, 2048).unwrap();
    let mut b = Scheduled {
        inner: backend(512),
        now: Arc::new(AtomicU64::new(0)),
        due: VecDeque::new(),
    };
    let mut buf = [0u8; 64];
    // 100 frames 1 ms apart, then a 37 ms outage in which seq 100..110
    // are lost, then 100 more frames 1 ms apart.
    let mut at = 10 * MS;
    for seq in (0..100).chain(110..210) {
        if seq == 110 {
            at += 37 * MS;
        }
        t.write(&mut buf, seq, at - 20_000).unwrap();
        assert!(b.inner.inject(RX, &buf));
        b.due.push_back(at);
        at += MS;
    }
    let now = b.now.clone();
    // The fake clock moves 10 µs per read.
    let mut clock = move || now.fetch_add(10_000, Ordering::Relaxed) + 10_000;
    let stop = AtomicBool::new(false);
    let cfg = RecvConfig {
        duration: Duration::from_secs(3600),
        idle_timeout: Some(Duration::from_millis(100)),
        stream: Some(3),
        expected: Some(210),
    };
    let r = receive_with_clock(&mut b, RX, &cfg, &stop, &mut clock);
    assert_eq!((r.received, r.lost), (200, 10));
    // From seq 99 at t to seq 110 at t + 1 ms + 37 ms.
    assert!(
        (r.longest_gap_ms - 38.0).abs() < 1e-9,
        "{}",
        r.longest_gap_ms
    );
    assert_eq!(r.gap_from_seq, 99);
    // Sent 20 µs before it was due; the clock read after the burst adds 10 µs.
    assert_eq!(r.latency_us.max, 30);
}

#[test]
fn paced_send_keeps_order_and_counts() {
    // A high rate keeps the test short; no timing is asserted.
    let mut b = backend(2048);
    let stop = AtomicBool::new(false);
    let cfg = SendConfig {
        rate_pps: Some(200_000),
        flow: FlowSpec { flows: 4, ..flow() },
        ..send_cfg(500)
    };
    let s = send(&mut b, TX, &cfg, &stop).unwrap();
    assert_eq!(s.sent, 500);
    let mut seqs = Vec::new();
    let mut ports = std::collections::BTreeSet::new();
    b.drain_tx(TX, |f| {
        seqs.push(probe::parse_probe(f).unwrap().seq);
        ports.insert(u16::from_be_bytes([f[34], f[35]]));
    });
    assert_eq!(seqs, (0..500).collect::<Vec<_>>());
    assert_eq!(
        ports.into_iter().collect::<Vec<_>>(),
        vec![40000, 40001, 40002, 40003]
    );
}

#[test]
fn full_tx_ring_delays_frames_without_holes() {
    // The ring holds 8 frames; the test drains it from the send loop's
    // point of view by running send in rounds with a small count.
    let mut b = MemBackend::new(2, 64, 2048, 8);
    let stop = AtomicBool::new(false);
    let cfg = SendConfig {
        duration: Duration::from_millis(200),
        ..send_cfg(20)
    };
    // Nothing drains the ring, so only 8 go out; the rest are freed at the end.
    let s = send(&mut b, TX, &cfg, &stop).unwrap();
    assert_eq!(s.sent, 8);
    assert!(s.tx_ring_full > 0);
    let mut seqs = Vec::new();
    b.drain_tx(TX, |f| seqs.push(probe::parse_probe(f).unwrap().seq));
    assert_eq!(seqs, (0..8).collect::<Vec<_>>());
    assert_eq!(b.free_frames(), 64, "refused frames are returned");
}

#[test]
fn stop_flag_and_duration_bound_an_endless_send() {
    let mut b = MemBackend::new(2, 64, 2048, 64);
    let stop = AtomicBool::new(true);
    let cfg = SendConfig {
        count: None,
        ..send_cfg(0)
    };
    assert_eq!(send(&mut b, TX, &cfg, &stop).unwrap().sent, 0);
    let stop = AtomicBool::new(false);
    let cfg = SendConfig {
        count: None,
        duration: Duration::from_millis(20),
        ..send_cfg(0)
    };
    // The ring fills (nobody drains it); duration ends the run.
    assert_eq!(send(&mut b, TX, &cfg, &stop).unwrap().sent, 64);
}

#[test]
fn invalid_send_configs_are_errors() {
    let mut b = backend(64);
    let stop = AtomicBool::new(false);
    let bad = |cfg: SendConfig, port| {
        send(&mut backend(64), port, &cfg, &stop)
            .unwrap_err()
            .to_string()
    };
    assert!(bad(send_cfg(1), 2).contains("port 2"));
    assert!(bad(
        SendConfig {
            batch: 0,
            ..send_cfg(1)
        },
        TX
    )
    .contains("batch 0"));
    assert!(bad(
        SendConfig {
            rate_pps: Some(0),
            ..send_cfg(1)
        },
        TX
    )
    .contains("rate"));
    assert!(bad(
        SendConfig {
            flow: FlowSpec {
                frame_len: 40,
                ..flow()
            },
            ..send_cfg(1)
        },
        TX
    )
    .contains("40"));
    assert_eq!(send(&mut b, TX, &send_cfg(0), &stop).unwrap().sent, 0);
}

#[test]
fn reports_round_trip_through_json() {
    let r = RecvReport {
        received: 9,
        lost: 1,
        loss_pct: 10.0,
        longest_gap_ms: 1.5,
        latency_us: Percentiles {
            p50: 1,
            p90: 2,
            p99: 3,
            p999: 4,
            max: 5,
        },
        ..RecvReport::default()
    };
    let j = serde_json::to_string(&r).unwrap();
    assert!(
        j.contains("\"longest_gap_ms\":1.5") && j.contains("\"p999\":4"),
        "{j}"
    );
    assert_eq!(serde_json::from_str::<RecvReport>(&j).unwrap(), r);
    let s = SendReport {
        sent: 5,
        elapsed: Duration::from_millis(250),
        pps: 20.0,
        ..SendReport::default()
    };
    let j = serde_json::to_string(&s).unwrap();
    assert!(j.contains("\"elapsed_s\":0.25"), "{j}");
    assert_eq!(serde_json::from_str::<SendReport>(&j).unwrap(), s);
    assert!(r.to_string().contains("lost 1 (10.000 %)"));
    assert!(s.to_string().contains("sent 5 frames"));
}
