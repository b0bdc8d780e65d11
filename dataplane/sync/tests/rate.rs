//! The session replication rate limit (seeds 004, `failover replication rate`).

use tandem_sync::TokenBucket;

const MS: u64 = 1_000_000;

#[test]
fn bucket_grants_the_burst_then_refills_at_the_rate() {
    let mut b = TokenBucket::new(1000, 100); // 1000 connections/s, burst 100
    assert_eq!(b.try_take(0, 150), 100);
    assert_eq!(b.try_take(0, 1), 0);
    assert_eq!(b.wait_for(0, 10), 10 * MS);
    assert_eq!(b.try_take(10 * MS, 50), 10);
    assert_eq!(
        b.try_take(1000 * MS, 1000),
        100,
        "refill is capped at the burst"
    );
    let c = b.counters();
    assert_eq!((c.bulk_allowed, c.bulk_deferred), (210, 50 + 1 + 40 + 900));
}

#[test]
fn fractional_refill_accumulates_without_drift() {
    // One token every 333.3 ms; a burst large enough that polling never finds the bucket full
    // (a full bucket rightly discards what overflows).
    let mut b = TokenBucket::new(3, 10);
    assert_eq!(b.try_take(0, 10), 10);
    let mut granted = 0;
    for i in 1..=3000u64 {
        granted += b.try_take(i * MS, 1);
    }
    assert_eq!(granted, 9, "3 s at 3/s");
}

#[test]
fn live_creates_are_never_deferred_but_counted_above_the_rate() {
    let mut b = TokenBucket::new(100, 10);
    b.take_live(0, 25);
    let c = *b.counters();
    assert_eq!((c.live, c.live_over_rate), (25, 15));
    // Live traffic spent the tokens: a bulk waits.
    assert_eq!(b.try_take(0, 5), 0);
    assert_eq!(b.try_take(50 * MS, 5), 5);
}

#[test]
fn rate_zero_is_unlimited() {
    let mut b = TokenBucket::new(0, 0);
    assert_eq!(b.try_take(0, 1_000_000), 1_000_000);
    b.take_live(0, 5);
    assert_eq!(b.counters().live_over_rate, 0);
    assert_eq!(b.wait_for(0, 7), 0);
}
