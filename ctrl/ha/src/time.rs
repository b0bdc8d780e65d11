//! Time as an argument: the `Timestamp` every `handle_*` takes, and how durations are printed.
//!
//! The state machines never read a clock (the crate is `no_std`, so they cannot): the caller reads
//! its monotonic clock once and passes `now` down, as quinn-proto and netstack3 do. A `Timestamp`
//! is nanoseconds since an epoch the caller chooses (process start, `CLOCK_MONOTONIC`'s zero, or
//! zero in a simulation); only differences between timestamps mean anything.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time: nanoseconds since a caller-chosen epoch. Arithmetic saturates, so no input can
/// make it panic or wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos(d)))
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, earlier: Timestamp) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for Timestamp {
    /// Seconds since the epoch with microsecond precision, e.g. `12.000450s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0 / 1_000;
        write!(f, "{}.{:06}s", us / 1_000_000, us % 1_000_000)
    }
}

/// Displays a duration the way operators write timers: `15 s`, `800 ms`, `1.5 ms`, `312.5 µs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = nanos(self.0);
        // Print `whole.frac unit` with trailing zeros of the fraction removed.
        let (unit_ns, unit) = if n >= 1_000_000_000 {
            (1_000_000_000, "s")
        } else if n >= 1_000_000 {
            (1_000_000, "ms")
        } else if n >= 1_000 {
            (1_000, "µs")
        } else {
            (1, "ns")
        };
        // One decimal is what an operator reads in a log line ("62.4 ms");
        // exact values print without a fraction ("800 ms").
        let tenths = (n * 10 + unit_ns / 2) / unit_ns;
        let (whole, tenth) = (tenths / 10, tenths % 10);
        if tenth == 0 {
            return write!(f, "{whole} {unit}");
        }
        write!(f, "{whole}.{tenth} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_nanos(u64::MAX - 1);
        assert_eq!((t + Duration::from_secs(1)).as_nanos(), u64::MAX);
        assert_eq!(Timestamp::ZERO - t, Duration::ZERO);
        assert_eq!(
            Timestamp::from_nanos(5_000) - Timestamp::from_nanos(2_000),
            Duration::from_micros(3)
        );
    }

    #[test]
    fn durations_print_like_operator_timers() {
        let cases = [
            (Duration::from_secs(15), "15 s"),
            (Duration::from_millis(800), "800 ms"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_micros(1500), "1.5 ms"),
            (Duration::from_nanos(312_500), "312.5 µs"),
            (Duration::from_millis(3), "3 ms"),
            (Duration::from_nanos(62_374_735), "62.4 ms"),
            (Duration::from_nanos(1_250_000_001), "1.3 s"),
            (Duration::from_nanos(7), "7 ns"),
            (Duration::ZERO, "0 ns"),
        ];
        for (d, want) in cases {
            assert_eq!(format!("{}", Dur(d)), want, "{d:?}");
        }
        assert_eq!(
            format!("{}", Timestamp::from_nanos(12_000_450_000)),
            "12.000450s"
        );
    }
}
