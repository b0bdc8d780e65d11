//! Pacing: a token bucket on the monotonic clock, read once per batch by the
//! sender. Sans-IO: time is an argument, so the bucket is tested with a fake
//! clock.

const NS_PER_S: u128 = 1_000_000_000;

/// Token bucket refilled at `rate` tokens (frames) per second, holding at
/// most `burst` tokens so that a stall (preemption, a full TX ring) is not
/// followed by an unbounded catch-up burst.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    /// Credit in token-nanoseconds per second: one token is `NS_PER_S`.
    credit: u128,
    cap: u128,
    last_ns: u64,
}

impl TokenBucket {
    /// A bucket for `rate` frames/s (at least 1) holding at most `burst`
    /// frames (at least 1), starting with `initial` tokens at `now_ns`.
    pub fn new(rate: u64, burst: u64, initial: u64, now_ns: u64) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate: rate.max(1),
            credit: u128::from(initial.min(burst)) * NS_PER_S,
            cap: u128::from(burst) * NS_PER_S,
            last_ns: now_ns,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let dt = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.credit = (self.credit + u128::from(dt) * u128::from(self.rate)).min(self.cap);
    }

    /// Tokens available at `now_ns`.
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        (self.credit / NS_PER_S) as u64
    }

    /// Take up to `want` tokens; returns how many were taken.
    pub fn take(&mut self, now_ns: u64, want: u64) -> u64 {
        let n = self.available(now_ns).min(want);
        self.credit -= u128::from(n) * NS_PER_S;
        n
    }

    /// Give back tokens taken but not used (e.g. no free frame).
    pub fn give_back(&mut self, n: u64) {
        self.credit = (self.credit + u128::from(n) * NS_PER_S).min(self.cap);
    }

    /// Nanoseconds from `now_ns` until `want` tokens are available (0 if
    /// they already are; `want` is capped at the burst size).
    pub fn ready_in(&mut self, now_ns: u64, want: u64) -> u64 {
        self.refill(now_ns);
        let need = (u128::from(want) * NS_PER_S).min(self.cap);
        if self.credit >= need {
            return 0;
        }
        let missing = need - self.credit;
        missing.div_ceil(u128::from(self.rate)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_delivers_the_rate_over_a_second_of_fake_time() {
        let mut b = TokenBucket::new(20_000, 64, 1, 0);
        let mut sent = 0;
        // Poll every 7 µs of fake time, taking at most 4 per poll.
        let mut t = 0;
        while t <= 1_000_000_000 {
            sent += b.take(t, 4);
            t += 7_000;
        }
        assert!((20_000..=20_001).contains(&sent), "{sent}");
    }

    #[test]
    fn burst_caps_catch_up_after_a_stall() {
        let mut b = TokenBucket::new(1_000_000, 32, 0, 0);
        // One second of stall earns at most the burst.
        assert_eq!(b.take(1_000_000_000, u64::MAX), 32);
        assert_eq!(b.take(1_000_000_000, u64::MAX), 0);
    }

    #[test]
    fn ready_in_says_when_to_come_back() {
        let mut b = TokenBucket::new(1_000, 10, 0, 0);
        assert_eq!(b.ready_in(0, 1), 1_000_000);
        assert_eq!(b.ready_in(500_000, 1), 500_000);
        assert_eq!(b.ready_in(1_000_000, 1), 0);
        assert_eq!(b.take(1_000_000, 5), 1);
        // Asking for more than the burst waits only for a full bucket.
        assert_eq!(b.ready_in(1_000_000, 100), 10_000_000);
        b.give_back(1);
        assert_eq!(b.available(1_000_000), 1);
    }

    #[test]
    fn clock_going_backwards_earns_nothing() {
        let mut b = TokenBucket::new(1_000, 10, 0, 5_000_000);
        assert_eq!(b.take(1_000_000, 10), 0);
        assert_eq!(b.take(6_000_000, 10), 1);
    }
}
