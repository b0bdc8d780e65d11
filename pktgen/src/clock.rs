//! The shared clock: CLOCK_MONOTONIC in nanoseconds. Sender and receiver run
//! on one host (in different network namespaces, which share clocks), so a
//! send timestamp and a receive time are directly comparable.

use rustix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    // tv_sec and tv_nsec of CLOCK_MONOTONIC are never negative.
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_ns_does_not_go_back_and_tracks_instant() {
        let a = monotonic_ns();
        let i = std::time::Instant::now();
        std::thread::yield_now();
        let b = monotonic_ns();
        assert!(b >= a);
        // Instant is CLOCK_MONOTONIC on Linux too: the elapsed times agree
        // to within the time the test ran (no upper timing assertion).
        assert!(b - a + 1_000_000_000 > i.elapsed().as_nanos() as u64);
    }
}
