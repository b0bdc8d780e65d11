//! The sender: stamps probe frames from a prebuilt template into backend
//! frames and transmits them in batches, paced by a token bucket or flat out.
//!
//! Per batch: one clock read, `alloc` per frame (no heap allocation), one
//! `tx_burst`, one `flush`. Frames the TX ring refuses keep their sequence
//! numbers and go out first on the next round, so a full ring delays frames
//! but never puts a hole in the sequence that the receiver would count as loss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_io::{Backend, Frame, PortId};

use crate::clock::monotonic_ns;
use crate::pace::TokenBucket;
use crate::probe::{FlowSpec, FrameTemplate, SpecError};

/// Largest batch the sender accepts (its frame array lives on the stack).
pub const MAX_BATCH: usize = 256;

/// Aim for at most this many send rounds per second when paced, so that a
/// paced sender does not spend a syscall (AF_XDP kick) per frame at high
/// rates: at 50 kpps a round carries 5 frames.
const ROUNDS_PER_S: u64 = 10_000;

/// What to send and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendConfig {
    pub flow: FlowSpec,
    /// Stop after this many frames (`None`: only the duration bounds the run).
    pub count: Option<u64>,
    /// Stop after this long in any case.
    pub duration: Duration,
    /// Frames per second; `None` sends as fast as the backend takes frames.
    pub rate_pps: Option<u64>,
    /// Stream id written into every probe; the receiver can filter on it.
    pub stream: u32,
    /// Frames per `tx_burst`, `1..=MAX_BATCH`.
    pub batch: usize,
}

/// What the sender did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SendReport {
    /// Frames accepted by the backend for transmit.
    pub sent: u64,
    #[serde(rename = "elapsed_s", with = "secs_f64")]
    pub elapsed: Duration,
    /// `sent / elapsed`.
    pub pps: f64,
    /// Rounds in which the TX ring refused part of a batch.
    pub tx_ring_full: u64,
    /// Times no free frame was available (the sender then flushes to reclaim
    /// completed transmits).
    pub alloc_failed: u64,
    /// Frames received on the sending port and dropped.
    pub rx_discarded: u64,
}

/// Why a send could not start.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("port {port} does not exist: backend {backend} has {ports} port(s)")]
    NoSuchPort {
        port: PortId,
        backend: &'static str,
        ports: usize,
    },
    #[error("batch {0} is outside 1..={MAX_BATCH}")]
    Batch(usize),
    #[error("rate must be at least 1 frame/s")]
    ZeroRate,
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Send probe frames on `port` until `cfg.count` frames went out,
/// `cfg.duration` passed, or `stop` is set.
pub fn send(
    backend: &mut dyn Backend,
    port: PortId,
    cfg: &SendConfig,
    stop: &AtomicBool,
) -> Result<SendReport, SendError> {
    if port >= backend.port_count() {
        return Err(SendError::NoSuchPort {
            port,
            backend: backend.name(),
            ports: backend.port_count(),
        });
    }
    if cfg.batch == 0 || cfg.batch > MAX_BATCH {
        return Err(SendError::Batch(cfg.batch));
    }
    if cfg.rate_pps == Some(0) {
        return Err(SendError::ZeroRate);
    }
    let template = FrameTemplate::new(&cfg.flow, cfg.stream, backend.frame_size())?;
    let batch = cfg.batch as u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let start = monotonic_ns();
    let end = start.saturating_add(u64::try_from(cfg.duration.as_nanos()).unwrap_or(u64::MAX));
    // Paced: wait until a quantum of tokens is there, then send what the
    // bucket holds (at most one batch).
    let quantum = cfg
        .rate_pps
        .map_or(1, |r| (r / ROUNDS_PER_S).clamp(1, batch));
    let mut bucket = cfg
        .rate_pps
        .map(|r| TokenBucket::new(r, batch, quantum, start));
    // Paced senders sleep between rounds (see `pace_wait`) instead of
    // spinning, leaving their core to the threads that share it.
    let _slack = bucket.as_ref().map(|_| TimerSlack::fine());

    let mut frames = [Frame::default(); MAX_BATCH];
    // Frames received on the sending port (ICMP errors, ARP, neighbour
    // discovery) are dropped every round so they never hold the pool.
    let mut discard = [Frame::default(); 32];
    // frames[..pending] were stamped but refused by the TX ring.
    let mut pending = 0usize;
    let mut next_seq = 0u64;
    let mut r = SendReport::default();
    let mut now;
    loop {
        now = monotonic_ns();
        if stop.load(Ordering::Relaxed) || now >= end {
            break;
        }
        let n = backend.rx_burst(port, &mut discard);
        for f in &discard[..n] {
            backend.free(*f);
        }
        r.rx_discarded += n as u64;
        if pending > 0 {
            let a = backend.tx_burst(port, &frames[..pending]);
            r.sent += a as u64;
            frames.copy_within(a..pending, 0);
            pending -= a;
            if pending > 0 {
                r.tx_ring_full += 1;
                backend.flush();
                std::thread::yield_now();
                continue;
            }
        }
        if next_seq >= limit {
            break;
        }
        let mut want = batch.min(limit - next_seq);
        if let Some(b) = bucket.as_mut() {
            let wait = b.ready_in(now, quantum.min(want));
            if wait > 0 {
                pace_wait(wait.min(end - now));
                continue;
            }
            want = b.take(now, want);
        }
        let mut k = 0usize;
        while (k as u64) < want {
            let Some(mut f) = backend.alloc() else {
                r.alloc_failed += 1;
                break;
            };
            let Some(len) = template.write(backend.frame_mut(f), next_seq, now) else {
                // Cannot happen: the template was checked against frame_size.
                backend.free(f);
                break;
            };
            f.len = len as u32;
            frames[k] = f;
            k += 1;
            next_seq += 1;
        }
        if let Some(b) = bucket.as_mut() {
            b.give_back(want - k as u64);
        }
        let a = backend.tx_burst(port, &frames[..k]);
        r.sent += a as u64;
        if a < k {
            r.tx_ring_full += 1;
            frames.copy_within(a..k, 0);
            pending = k - a;
        }
        // Kicks the TX ring and reclaims completions, which is also what
        // makes frames allocatable again after `alloc` failed.
        backend.flush();
        if k == 0 {
            std::thread::yield_now();
        }
    }
    let elapsed_ns = now.saturating_sub(start);
    // Give refused frames a bounded last chance, then hand them back.
    let drain_end = monotonic_ns() + 100_000_000;
    while pending > 0 && !stop.load(Ordering::Relaxed) && monotonic_ns() < drain_end {
        backend.flush();
        let a = backend.tx_burst(port, &frames[..pending]);
        r.sent += a as u64;
        frames.copy_within(a..pending, 0);
        pending -= a;
        if pending > 0 {
            std::thread::yield_now();
        }
    }
    for f in &frames[..pending] {
        backend.free(*f);
    }
    backend.flush();
    r.elapsed = Duration::from_nanos(elapsed_ns);
    r.pps = rate(r.sent, elapsed_ns);
    Ok(r)
}

/// Waits shorter than this are spent yielding: a sleep this short would
/// mostly be timer overhead and wake-up latency.
const SLEEP_MIN_NS: u64 = 20_000;
/// A sleep ends this much before the bucket is ready, to absorb the wake-up
/// latency; the rest is yielded away. An overshoot costs no rate: the
/// bucket kept earning, and the next round sends what it holds.
const WAKE_EARLY_NS: u64 = 10_000;
/// The longest single sleep, so `stop` and the end of the run are noticed.
const SLEEP_MAX_NS: u64 = 1_000_000;
/// Timer slack for a paced sender's thread: the Linux default (50 µs for
/// SCHED_OTHER) would stretch every sleep past the next round.
const PACED_TIMER_SLACK_NS: u64 = 1_000;

/// How to spend a wait of `ns` for the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PaceStep {
    Sleep(Duration),
    Yield,
}

fn pace_step(ns: u64) -> PaceStep {
    if ns >= SLEEP_MIN_NS {
        PaceStep::Sleep(Duration::from_nanos((ns - WAKE_EARLY_NS).min(SLEEP_MAX_NS)))
    } else {
        PaceStep::Yield
    }
}

/// Wait about `ns` for the bucket to refill: sleep for the bulk of it,
/// yield for the last few microseconds. This is pacing, not synchronisation.
fn pace_wait(ns: u64) {
    match pace_step(ns) {
        PaceStep::Sleep(d) => std::thread::sleep(d),
        PaceStep::Yield => std::thread::yield_now(),
    }
}

/// Sets the calling thread's timer slack for paced sending and puts the old
/// value back on drop (`send` may run on a caller's long-lived thread).
struct TimerSlack(Option<u64>);

impl TimerSlack {
    fn fine() -> TimerSlack {
        let old = rustix::thread::current_timer_slack().ok();
        let fine = std::num::NonZeroU64::new(PACED_TIMER_SLACK_NS);
        if rustix::thread::set_current_timer_slack(fine).is_err() {
            // Pacing still works, with coarser sleeps (more yielding).
            return TimerSlack(None);
        }
        TimerSlack(old)
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(old));
        }
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    #[test]
    fn long_waits_sleep_short_ones_yield() {
        assert_eq!(pace_step(0), PaceStep::Yield);
        assert_eq!(pace_step(SLEEP_MIN_NS - 1), PaceStep::Yield);
        // 10 kpps, one frame per round: sleep most of the 100 µs.
        assert_eq!(
            pace_step(100_000),
            PaceStep::Sleep(Duration::from_nanos(90_000))
        );
        // Capped, so a stop request is seen within a millisecond.
        assert_eq!(
            pace_step(50_000_000),
            PaceStep::Sleep(Duration::from_nanos(SLEEP_MAX_NS))
        );
    }
}

pub(crate) fn rate(count: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / ns as f64
    }
}

/// Durations as seconds (a float) in JSON, so keys carry their unit.
pub(crate) mod secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} frames in {:.3} s ({:.0} pps); tx ring full {} times, no free frame {} times",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.pps,
            self.tx_ring_full,
            self.alloc_failed
        )
    }
}
