//! `Timestamp`: the data path's notion of "now", always passed in as an
//! argument (STYLE habit 4) so the forwarder runs on simulated time in tests.

use std::ops::Add;
use std::time::{Duration, Instant};

/// Nanoseconds since an arbitrary epoch (the start of the dataplane for a
/// worker; zero in tests). Saturating arithmetic: time never wraps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);
    /// A time that is never reached (no timer armed).
    pub const NEVER: Timestamp = Timestamp(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Timestamp {
        Timestamp(ns)
    }

    pub fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos(d)))
    }
}

/// The real clock, read once per loop iteration by a worker.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new(epoch: Instant) -> Clock {
        Clock { epoch }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(nanos(self.epoch.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(5);
        assert_eq!((t + Duration::from_millis(2)).as_nanos(), 7_000_000);
        assert_eq!(Timestamp::NEVER + Duration::from_secs(1), Timestamp::NEVER);
        assert_eq!(Timestamp::ZERO.saturating_since(t), Duration::ZERO);
        assert_eq!(
            t.saturating_since(Timestamp::ZERO),
            Duration::from_millis(5)
        );
    }
}
