//! Sweeps over timer settings and seeds: the unit failure is detected within holdtime plus the
//! LANTEST window and never earlier, and with hellos flowing (jitter, some loss) no failover ever
//! happens. Timer rows: tandem's fast mode (1/3 ms), 10/30 ms, the seeds' appliance floor
//! (200/800 ms) and the seeds' defaults (1 s / 15 s).

mod common;

use std::time::Duration;

use common::*;
use tandem_ha::sim::{Port, Sim, SplitMix64, A, B};
use tandem_ha::{Event, State, UnitTimers};

const ROWS: [(u64, u64); 4] = [(1, 3), (10, 30), (200, 800), (1_000, 15_000)];
const SEEDS: u64 = 24;

fn settled(t: UnitTimers, seed: u64) -> Sim {
    let mut s = Sim::pair(t, 2, seed);
    s.start(A);
    s.start(B);
    s.run_for(t.holdtime * 3);
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(s.state(B), Some(State::StandbyReady));
    s
}

#[test]
fn unit_failure_is_detected_within_holdtime_plus_lantest_window_and_never_earlier() {
    for (poll, hold) in ROWS {
        let t = timers(poll, hold);
        let window = t.lantest_window();
        for seed in 0..SEEDS {
            let mut s = settled(t, seed);
            // Kill at a random phase of the hello period.
            let mut rng = SplitMix64::new(seed ^ 0x5eed);
            let offset = rng.below_or_eq(u64::try_from(t.polltime.as_nanos()).unwrap());
            s.run_for(Duration::from_nanos(offset));
            let killed = s.now();
            s.kill(A);
            let deadline = killed + t.holdtime * 3;
            let took_over = s
                .run_until_pred(deadline, |s| s.state(B) == Some(State::Active))
                .unwrap_or_else(|| {
                    panic!("{poll}/{hold} ms seed {seed}: no takeover\n{}", dump(&s))
                });
            let last_heard = s
                .unit(B)
                .show()
                .other_host
                .and_then(|h| h.last_heard)
                .expect("heard");
            // Exactly holdtime of silence, then the LANTEST window.
            assert_eq!(
                took_over - last_heard,
                t.holdtime + window,
                "{poll}/{hold} seed {seed}"
            );
            // Relative to the failure: more than a holdtime, at most holdtime + window + latency.
            let outage = took_over - killed;
            assert!(
                outage > t.holdtime,
                "{poll}/{hold} seed {seed}: {outage:?} earlier than holdtime"
            );
            assert!(
                outage <= t.holdtime + window + s.failover.latency,
                "{poll}/{hold} seed {seed}: {outage:?}"
            );
        }
    }
}

#[test]
fn no_false_failover_while_hellos_flow_with_jitter_and_loss() {
    for (poll, hold) in ROWS {
        let t = timers(poll, hold);
        for seed in 0..SEEDS {
            let mut s = settled(t, seed);
            // Jitter up to half a polltime on the failover link, 1 % loss everywhere.
            s.failover.jitter = t.polltime / 2;
            s.failover.loss_ppm = 10_000;
            for seg in &mut s.segments {
                seg.wire.loss_ppm = 10_000;
                seg.wire.jitter = t.polltime / 2;
            }
            // 600 hello periods (200 holdtimes at hold = 3 × poll).
            let t0 = s.now();
            s.run_for(t.polltime * 600);
            for u in [A, B] {
                assert_eq!(
                    transitions_since(&s, u, t0),
                    vec![],
                    "{poll}/{hold} seed {seed}\n{}",
                    dump(&s)
                );
                let bad = s.first_event(u, t0, |e| {
                    matches!(
                        e,
                        Event::MateFailed { .. }
                            | Event::FailoverLinkFailed(_)
                            | Event::TakeOver
                            | Event::Relinquish
                    ) || matches!(
                        e,
                        Event::InterfaceStatusChanged {
                            to: tandem_ha::InterfaceStatus::Failed,
                            ..
                        }
                    )
                });
                assert_eq!(bad, None, "{poll}/{hold} seed {seed}\n{}", dump(&s));
            }
        }
    }
}

#[test]
fn interface_link_down_on_the_active_fails_over_after_an_interface_polltime() {
    // Seeds 004 "Failover Times": "Active unit main board interface link down" — minimum 500 ms,
    // default 5 s, maximum 15 s: the interface polltime. tandem: noticed at the next link-state
    // poll, counted after one interface polltime, then the standby takes over one failover-link
    // latency later.
    for (poll, hold) in ROWS {
        let t = timers(poll, hold);
        for seed in 0..8 {
            let mut s = settled(t, seed);
            let cfg = s.unit(A).config().clone();
            let mut rng = SplitMix64::new(seed);
            s.run_for(Duration::from_nanos(rng.below_or_eq(1_000_000)));
            let down = s.now();
            s.segments[1].ports[A] = Port::NoLink;
            let took_over = s
                .run_until_pred(down + cfg.interface.holdtime * 2, |s| {
                    s.state(B) == Some(State::Active)
                })
                .unwrap_or_else(|| panic!("{poll}/{hold} seed {seed}\n{}", dump(&s)));
            let d = took_over - down;
            assert!(d >= cfg.interface.polltime, "{poll}/{hold}: {d:?}");
            assert!(
                d <= cfg.interface.polltime + cfg.link_state_polltime + s.failover.latency,
                "{poll}/{hold}: {d:?}"
            );
        }
    }
}
