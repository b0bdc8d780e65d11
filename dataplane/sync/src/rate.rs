//! The session replication rate limit: a token bucket (connections per second, burst) with the
//! clock passed in.
//!
//! Seeds 004 let the operator cap the rate at which sessions are replicated (`failover
//! replication rate`). tandem applies it where deferring is harmless: the glue paces **bulk**
//! records with [`TokenBucket::try_take`]. **Live** creates are never deferred — a deferred
//! create is a connection lost at failover — so they go through [`TokenBucket::take_live`],
//! which always succeeds, spends tokens (slowing a concurrent bulk) and counts the creates that
//! were above the rate.

/// A token bucket. Tokens are kept in nano-tokens so that any rate refills exactly, without
/// drift, for any `now` step.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    nano_tokens: u128,
    last: Option<u64>,
    counters: RateCounters,
}

/// Rate-limiter counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RateCounters {
    /// Bulk records allowed.
    pub bulk_allowed: u64,
    /// Bulk records asked for but deferred.
    pub bulk_deferred: u64,
    /// Live records counted.
    pub live: u64,
    /// Live records that were above the rate (replicated anyway).
    pub live_over_rate: u64,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

impl TokenBucket {
    /// `rate` connections per second, up to `burst` at once (`burst` is raised to at least 1).
    /// `rate == 0` means unlimited. The bucket starts full.
    pub fn new(rate: u64, burst: u64) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate,
            burst,
            nano_tokens: u128::from(burst) * NANOS_PER_SEC,
            last: None,
            counters: RateCounters::default(),
        }
    }

    /// Rate in connections per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Counters.
    pub fn counters(&self) -> &RateCounters {
        &self.counters
    }

    fn refill(&mut self, now: u64) {
        let cap = u128::from(self.burst) * NANOS_PER_SEC;
        if let Some(last) = self.last {
            // A clock going backwards (it must not, but) refills nothing.
            let dt = u128::from(now.saturating_sub(last));
            self.nano_tokens = (self.nano_tokens + dt * u128::from(self.rate)).min(cap);
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }

    /// Takes up to `n` tokens at `now` (nanoseconds); returns how many were granted (0..=n).
    pub fn try_take(&mut self, now: u64, n: u64) -> u64 {
        if self.rate == 0 {
            self.counters.bulk_allowed += n;
            return n;
        }
        self.refill(now);
        let whole = (self.nano_tokens / NANOS_PER_SEC) as u64;
        let got = whole.min(n);
        self.nano_tokens -= u128::from(got) * NANOS_PER_SEC;
        self.counters.bulk_allowed += got;
        self.counters.bulk_deferred += n - got;
        got
    }

    /// Counts `n` live records: never refused; spends what tokens there are and counts the rest
    /// as over the rate.
    pub fn take_live(&mut self, now: u64, n: u64) {
        self.counters.live += n;
        if self.rate == 0 {
            return;
        }
        self.refill(now);
        let whole = (self.nano_tokens / NANOS_PER_SEC) as u64;
        let got = whole.min(n);
        self.nano_tokens -= u128::from(got) * NANOS_PER_SEC;
        self.counters.live_over_rate += n - got;
    }

    /// Nanoseconds from `now` until `n` tokens (at most the burst) will be available; 0 if now.
    pub fn wait_for(&self, now: u64, n: u64) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        let mut t = self.nano_tokens;
        if let Some(last) = self.last {
            t = (t + u128::from(now.saturating_sub(last)) * u128::from(self.rate))
                .min(u128::from(self.burst) * NANOS_PER_SEC);
        }
        let need = u128::from(n.min(self.burst)) * NANOS_PER_SEC;
        if t >= need {
            0
        } else {
            ((need - t).div_ceil(u128::from(self.rate))) as u64
        }
    }
}
