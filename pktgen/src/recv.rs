//! The receiver (sink): counts probe frames per sequence number and derives
//! loss, reordering, duplicates, the longest gap between in-order arrivals
//! (the failover outage) and one-way latency percentiles.
//!
//! [`Sink`] is the sans-IO accounting (time is an argument); [`receive`]
//! drives it from a backend with the monotonic clock and
//! [`receive_with_clock`] with any clock, which is how the gap is tested.
//! Everything is sized at start: a bitmap window for duplicate detection and
//! one histogram; nothing allocates per frame.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tandem_io::{Backend, Frame, PortId};

use crate::clock::monotonic_ns;
use crate::probe::{parse_probe, Probe};
use crate::send::rate;

/// Sequence numbers remembered for duplicate detection behind the highest
/// one seen (a power of two). A frame older than that is counted as
/// reordered and unique, since it can no longer be told from a duplicate.
pub const DUP_WINDOW: u64 = 1 << 20;

/// Largest latency the histogram records exactly (60 s); above is clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Frames taken per `rx_burst`.
const RX_BATCH: usize = 64;

/// Empty polls before the receiver blocks in `Backend::wait`.
const SPIN_POLLS: u32 = 64;

/// How long to receive and when to stop early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvConfig {
    /// Stop after this long in any case.
    pub duration: Duration,
    /// Once traffic has started, stop after this long with nothing received.
    pub idle_timeout: Option<Duration>,
    /// Count only this stream; `None` locks onto the first stream seen.
    pub stream: Option<u32>,
    /// Frames the sender sent (sequence numbers `0..expected`); loss is
    /// computed against it and the receiver stops once all arrived.
    /// `None`: loss is computed against the highest sequence number + 1.
    pub expected: Option<u64>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// What the receiver saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecvReport {
    /// Unique probe frames of the stream (duplicates not counted).
    pub received: u64,
    /// Expected minus `received` (never negative).
    pub lost: u64,
    pub loss_pct: f64,
    /// Frames that arrived after a higher sequence number had.
    pub reordered: u64,
    /// Frames whose sequence number had already arrived.
    pub duplicates: u64,
    /// `received` over the time from the first to the last arrival.
    pub pps: f64,
    /// Longest time between consecutive in-order arrivals (arrivals that
    /// raised the highest sequence number): the outage of a failover.
    pub longest_gap_ms: f64,
    /// Highest sequence number received before that longest gap.
    pub gap_from_seq: u64,
    /// One-way latency, send timestamp to receive time.
    pub latency_us: Percentiles,
    /// Frames that were not probes, or probes of another stream.
    pub ignored: u64,
    /// Probes whose send time was after their receive time (clocks of
    /// different hosts, or a corrupted timestamp); latency not recorded.
    pub clock_skewed: u64,
}

/// Sequence accounting for one stream.
pub struct Sink {
    stream: Option<u32>,
    /// Bit `s % DUP_WINDOW` is set when `s` arrived, for `s` within the
    /// window below `highest`.
    seen: Vec<u64>,
    highest: Option<u64>,
    received: u64,
    reordered: u64,
    duplicates: u64,
    ignored: u64,
    clock_skewed: u64,
    first_ns: u64,
    last_ns: u64,
    last_in_order_ns: u64,
    longest_gap_ns: u64,
    gap_from_seq: u64,
    latency: Histogram<u64>,
}

impl Sink {
    /// A sink counting `stream` (or the first stream seen when `None`).
    pub fn new(stream: Option<u32>) -> Sink {
        Sink {
            stream,
            seen: vec![0; (DUP_WINDOW / 64) as usize],
            highest: None,
            received: 0,
            reordered: 0,
            duplicates: 0,
            ignored: 0,
            clock_skewed: 0,
            first_ns: 0,
            last_ns: 0,
            last_in_order_ns: 0,
            longest_gap_ns: 0,
            gap_from_seq: 0,
            // 1 µs .. 60 s at 3 significant digits: sized once, here.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Account one received frame at `now_ns`; returns whether it was a
    /// probe of this sink's stream.
    pub fn record(&mut self, now_ns: u64, frame: &[u8]) -> bool {
        match parse_probe(frame) {
            Some(p) => self.record_probe(now_ns, p),
            None => {
                self.ignored += 1;
                false
            }
        }
    }

    /// Account one probe at `now_ns`.
    pub fn record_probe(&mut self, now_ns: u64, p: Probe) -> bool {
        match self.stream {
            Some(s) if s != p.stream => {
                self.ignored += 1;
                return false;
            }
            Some(_) => {}
            None => self.stream = Some(p.stream),
        }
        let seq = p.seq;
        match self.highest {
            None => {
                self.first_ns = now_ns;
                self.last_in_order_ns = now_ns;
                self.gap_from_seq = seq;
                self.highest = Some(seq);
                self.set(seq);
            }
            Some(h) if seq > h => {
                // Forget what the window held for the numbers skipped over
                // (they belonged to seq - DUP_WINDOW and older).
                if seq - h >= DUP_WINDOW {
                    self.seen.fill(0);
                } else {
                    for s in h + 1..seq {
                        self.clear(s);
                    }
                }
                self.set(seq);
                let gap = now_ns.saturating_sub(self.last_in_order_ns);
                if gap > self.longest_gap_ns {
                    self.longest_gap_ns = gap;
                    self.gap_from_seq = h;
                }
                self.last_in_order_ns = now_ns;
                self.highest = Some(seq);
            }
            Some(h) => {
                if h - seq < DUP_WINDOW && self.test(seq) {
                    self.duplicates += 1;
                    return true;
                }
                self.set(seq);
                self.reordered += 1;
            }
        }
        self.received += 1;
        self.last_ns = now_ns;
        match now_ns.checked_sub(p.tx_ns) {
            Some(ns) => self
                .latency
                .saturating_record((ns / 1_000).min(MAX_LATENCY_US)),
            None => self.clock_skewed += 1,
        }
        true
    }

    fn set(&mut self, seq: u64) {
        let bit = seq % DUP_WINDOW;
        self.seen[(bit / 64) as usize] |= 1 << (bit % 64);
    }

    fn clear(&mut self, seq: u64) {
        let bit = seq % DUP_WINDOW;
        self.seen[(bit / 64) as usize] &= !(1 << (bit % 64));
    }

    fn test(&self, seq: u64) -> bool {
        let bit = seq % DUP_WINDOW;
        self.seen[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// Unique probes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether any probe of the stream arrived.
    pub fn started(&self) -> bool {
        self.highest.is_some()
    }

    /// Receive time of the last probe of the stream.
    pub fn last_ns(&self) -> u64 {
        self.last_ns
    }

    /// The report so far; `expected` as in [`RecvConfig::expected`].
    pub fn report(&self, expected: Option<u64>) -> RecvReport {
        let expected = expected.unwrap_or_else(|| self.highest.map_or(0, |h| h.saturating_add(1)));
        let lost = expected.saturating_sub(self.received);
        let q = |v: f64| self.latency.value_at_quantile(v);
        RecvReport {
            received: self.received,
            lost,
            loss_pct: if expected == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / expected as f64
            },
            reordered: self.reordered,
            duplicates: self.duplicates,
            pps: rate(self.received, self.last_ns.saturating_sub(self.first_ns)),
            longest_gap_ms: self.longest_gap_ns as f64 / 1e6,
            gap_from_seq: self.gap_from_seq,
            latency_us: Percentiles {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: self.latency.max(),
            },
            ignored: self.ignored,
            clock_skewed: self.clock_skewed,
        }
    }
}

/// Receive on `port` with the monotonic clock until `cfg` says stop or
/// `stop` is set.
pub fn receive(
    backend: &mut dyn Backend,
    port: PortId,
    cfg: &RecvConfig,
    stop: &AtomicBool,
) -> RecvReport {
    receive_with_clock(backend, port, cfg, stop, &mut monotonic_ns)
}

/// [`receive`] with an injected clock (nanoseconds, monotonic): the clock
/// is read once per burst, after it arrived, and that time is used for
/// every frame of the burst.
///
/// Stops when `stop` is set, `cfg.duration` passed, `cfg.expected` unique
/// frames arrived, or `cfg.idle_timeout` passed since the last arrival.
/// Blocks in `Backend::wait` (1 ms at most) after a few empty polls, so an
/// idle receiver does not hold a core.
pub fn receive_with_clock(
    backend: &mut dyn Backend,
    port: PortId,
    cfg: &RecvConfig,
    stop: &AtomicBool,
    clock: &mut dyn FnMut() -> u64,
) -> RecvReport {
    let mut sink = Sink::new(cfg.stream);
    if port >= backend.port_count() {
        return sink.report(cfg.expected);
    }
    let start = clock();
    let end = start.saturating_add(u64::try_from(cfg.duration.as_nanos()).unwrap_or(u64::MAX));
    let idle = cfg
        .idle_timeout
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut batch = [Frame::default(); RX_BATCH];
    let mut empty_polls = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let n = backend.rx_burst(port, &mut batch);
        let now = clock();
        for f in &batch[..n] {
            sink.record(now, backend.frame(*f));
            backend.free(*f);
        }
        // Returns the frames to the fill ring / provided buffers.
        backend.flush();
        if now >= end || cfg.expected.is_some_and(|e| sink.received() >= e) {
            break;
        }
        if let Some(idle) = idle {
            if sink.started() && now.saturating_sub(sink.last_ns()) >= idle {
                break;
            }
        }
        if n == 0 {
            empty_polls += 1;
            if empty_polls >= SPIN_POLLS {
                backend.wait(Duration::from_millis(1));
            } else {
                std::hint::spin_loop();
            }
        } else {
            empty_polls = 0;
        }
    }
    sink.report(cfg.expected)
}

impl std::fmt::Display for RecvReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "received {} frames ({:.0} pps), lost {} ({:.3} %), reordered {}, duplicates {}",
            self.received, self.pps, self.lost, self.loss_pct, self.reordered, self.duplicates
        )?;
        writeln!(
            f,
            "longest gap {:.3} ms after seq {}",
            self.longest_gap_ms, self.gap_from_seq
        )?;
        write!(
            f,
            "latency us: p50 {} p90 {} p99 {} p99.9 {} max {}",
            self.latency_us.p50,
            self.latency_us.p90,
            self.latency_us.p99,
            self.latency_us.p999,
            self.latency_us.max
        )?;
        if self.ignored > 0 || self.clock_skewed > 0 {
            write!(
                f,
                "\nignored {} non-probe frames, {} probes with a send time after their receive time",
                self.ignored, self.clock_skewed
            )?;
        }
        Ok(())
    }
}
