//! Helpers shared by the failover simulation tests.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

use tandem_ha::sim::{Sim, A, B};
use tandem_ha::{Event, Reason, State, Timestamp, Transition, UnitTimers};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn at_ms(n: u64) -> Timestamp {
    Timestamp::from_nanos(n * 1_000_000)
}

pub fn timers(poll_ms: u64, hold_ms: u64) -> UnitTimers {
    UnitTimers {
        polltime: ms(poll_ms),
        holdtime: ms(hold_ms),
    }
}

/// The seeds' fastest appliance unit timers (200 ms / 800 ms): interface timers 1 s / 5 s.
pub const POLL: u64 = 200;
pub const HOLD: u64 = 800;

/// A primary (A) and a secondary (B) with 200/800 ms unit timers and `n` data interfaces.
pub fn pair(n: usize) -> Sim {
    Sim::pair(timers(POLL, HOLD), n, 1)
}

/// A pair started together and settled: A active, B standby ready.
pub fn running_pair(n: usize) -> Sim {
    let mut s = pair(n);
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::StandbyReady), "{}", dump(&s));
    s
}

/// The last transition of unit `u` into `to`.
pub fn last_into(s: &Sim, u: usize, to: State) -> Option<Transition> {
    s.transitions(u).into_iter().rev().find(|t| t.to == to)
}

/// Transitions of unit `u` at or after `since`.
pub fn transitions_since(s: &Sim, u: usize, since: Timestamp) -> Vec<Transition> {
    s.transitions(u)
        .into_iter()
        .filter(|t| t.at >= since)
        .collect()
}

pub fn reasons_since(s: &Sim, u: usize, since: Timestamp) -> Vec<(State, Reason)> {
    transitions_since(s, u, since)
        .into_iter()
        .map(|t| (t.to, t.reason))
        .collect()
}

pub fn has_event(s: &Sim, u: usize, since: Timestamp, pred: impl Fn(&Event) -> bool) -> bool {
    s.first_event(u, since, pred).is_some()
}

/// Both units' event logs, for assertion messages.
pub fn dump(s: &Sim) -> String {
    let mut out = String::new();
    for u in [A, B] {
        let _ = writeln!(out, "--- unit {}", if u == A { "A" } else { "B" });
        for (t, e) in s.events(u) {
            if matches!(e, Event::PollLinkState) {
                continue;
            }
            let _ = writeln!(out, "{t} {e}");
        }
    }
    out
}
