//! Interface monitoring: interface hellos, when testing starts, the four interface tests in order
//! and their durations, the interface statuses (seeds 004 "Interface Monitoring", "Interface
//! Tests", "Interface Status"; seeds 003 "Configuring Interface Health Monitoring").
//!
//! The pair here has unit timers 200/800 ms and interface timers 1 s / 5 s: testing starts
//! y = round((5/1)/2) × 1 s = 3 s after the last interface hello, each test lasts 5 s/16 =
//! 312.5 ms, the link-state poll runs every 300 ms.

mod common;

use common::*;
use tandem_ha::sim::{Port, Sim, A, B};
use tandem_ha::{Event, IfIndex, InterfaceStatus, State, TestPhase, Timestamp};

const Y: u64 = 3_000;
const D_US: u64 = 312_500;

fn d() -> std::time::Duration {
    std::time::Duration::from_micros(D_US)
}

/// Interface `i` test starts of unit `u` since `since`, with times.
fn tests_run(s: &Sim, u: usize, i: u16, since: Timestamp) -> Vec<(Timestamp, TestPhase)> {
    s.events(u)
        .iter()
        .filter(|(t, _)| *t >= since)
        .filter_map(|(t, e)| match e {
            Event::InterfaceTest { iface, phase } if *iface == IfIndex(i) => Some((*t, *phase)),
            _ => None,
        })
        .collect()
}

fn status(s: &Sim, u: usize, i: usize) -> InterfaceStatus {
    s.unit(u).show().this_host.interfaces[i].status
}

fn status_changes(
    s: &Sim,
    u: usize,
    i: u16,
    since: Timestamp,
) -> Vec<(Timestamp, InterfaceStatus)> {
    s.events(u)
        .iter()
        .filter(|(t, _)| *t >= since)
        .filter_map(|(t, e)| match e {
            Event::InterfaceStatusChanged { iface, to, .. } if *iface == IfIndex(i) => {
                Some((*t, *to))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn interfaces_hearing_hellos_are_normal_and_never_tested() {
    let mut s = running_pair(3);
    let t0 = s.now();
    s.run_for(ms(30_000));
    for u in [A, B] {
        for i in 0..3 {
            assert_eq!(status(&s, u, i), InterfaceStatus::Normal);
            assert!(tests_run(&s, u, i as u16, t0).is_empty());
        }
    }
}

#[test]
fn isolated_port_fails_after_the_network_activity_test_when_the_mate_hears_traffic() {
    // Seeds 004, "Interface Tests" 2: "If one unit receives traffic and the other unit does not,
    // then the interface on the unit that does not receive traffic is considered failed, and
    // testing stops." Other hosts chatter on the segment; only B's port hears them.
    let mut s = running_pair(2);
    s.set_chatter(0, Some(ms(50)));
    s.run_for(ms(2_000));
    let cut = s.now();
    s.segments[0].ports[A] = Port::Isolated;
    s.run_for(ms(10_000));
    let runs = tests_run(&s, A, 0, cut);
    let phases: Vec<_> = runs.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        phases,
        vec![TestPhase::LinkUpDown, TestPhase::NetworkActivity],
        "{}",
        dump(&s)
    );
    let start = runs[0].0;
    // Testing starts y after the last interface hello (which came at most a polltime before the cut).
    assert!(
        start - cut <= ms(Y) && start - cut > ms(Y - 1_000),
        "{:?}",
        start - cut
    );
    // Each test lasts holdtime/16.
    assert_eq!(runs[1].0 - runs[0].0, d());
    let changes = status_changes(&s, A, 0, cut);
    assert_eq!(changes[0], (start, InterfaceStatus::Testing));
    assert_eq!(
        changes[1],
        (start + d() * 2, InterfaceStatus::Failed),
        "{changes:?}"
    );
    // The interface policy (1) then fails A over to B.
    assert_eq!(s.state(A), Some(State::Failed));
    assert_eq!(s.state(B), Some(State::Active));
    // B's interface hears the chatter: never failed.
    assert!(status_changes(&s, B, 0, cut)
        .iter()
        .all(|(_, st)| *st != InterfaceStatus::Failed));
}

#[test]
fn isolated_port_in_a_quiet_network_fails_after_the_arp_test_when_the_mate_gets_an_arp_reply() {
    // Seeds 004, "Interface Tests" 3: no traffic anywhere during the network activity test, then
    // "Each unit sends a single ARP request …"; B's is answered by the router, A's is not.
    let mut s = running_pair(2);
    let cut = s.now();
    s.segments[0].ports[A] = Port::Isolated;
    s.run_for(ms(10_000));
    let runs = tests_run(&s, A, 0, cut);
    let phases: Vec<_> = runs.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        phases,
        vec![
            TestPhase::LinkUpDown,
            TestPhase::NetworkActivity,
            TestPhase::Arp
        ],
        "{}",
        dump(&s)
    );
    let start = runs[0].0;
    assert_eq!(runs[2].0 - start, d() * 2);
    let failed = status_changes(&s, A, 0, cut)
        .into_iter()
        .find(|(_, st)| *st == InterfaceStatus::Failed)
        .expect("failed");
    assert_eq!(failed.0 - start, d() * 3, "at the end of the ARP test");
    // B tested too (it stopped hearing A's hellos) and its ARP test passed; it keeps re-testing
    // every y while A's hellos stay away, and is never failed.
    let b = tests_run(&s, B, 0, cut);
    assert!(b.iter().any(|(_, p)| *p == TestPhase::Arp));
    assert!(status_changes(&s, B, 0, cut)
        .iter()
        .all(|(_, st)| *st != InterfaceStatus::Failed));
    assert_eq!(s.state(B), Some(State::Active), "{}", dump(&s));
}

#[test]
fn isolated_port_fails_after_the_broadcast_ping_test_when_only_the_mate_hears_replies() {
    // Seeds 004, "Interface Tests" 4: nothing answers ARP on this segment, but hosts answer a
    // broadcast ping — only B's, since A's port is isolated.
    let mut s = running_pair(2);
    s.segments[0].arp_replies = false;
    let cut = s.now();
    s.segments[0].ports[A] = Port::Isolated;
    s.run_for(ms(10_000));
    let runs = tests_run(&s, A, 0, cut);
    let phases: Vec<_> = runs.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        phases,
        vec![
            TestPhase::LinkUpDown,
            TestPhase::NetworkActivity,
            TestPhase::Arp,
            TestPhase::BroadcastPing
        ],
        "{}",
        dump(&s)
    );
    let failed = status_changes(&s, A, 0, cut)
        .into_iter()
        .find(|(_, st)| *st == InterfaceStatus::Failed)
        .expect("failed");
    assert_eq!(
        failed.0 - runs[0].0,
        d() * 4,
        "at the end of the broadcast ping test"
    );
    assert_eq!(s.state(B), Some(State::Active));
}

#[test]
fn neither_unit_hearing_traffic_keeps_testing_arp_and_ping_in_perpetuity() {
    // Seeds 004: "If neither unit receives traffic, then testing starts over again with the ARP
    // test. If both units continue to receive no traffic from the ARP and Broadcast Ping tests,
    // then these tests will continue running in perpetuity." A dead segment: nothing passes.
    let mut s = running_pair(2);
    s.segments[0].arp_replies = false;
    s.segments[0].ping_replies = false;
    s.segments[0].wire.up = false;
    let cut = s.now();
    s.run_for(ms(12_000));
    for u in [A, B] {
        let phases: Vec<_> = tests_run(&s, u, 0, cut)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert!(phases.len() > 8, "{phases:?}");
        assert_eq!(
            &phases[..6],
            &[
                TestPhase::LinkUpDown,
                TestPhase::NetworkActivity,
                TestPhase::Arp,
                TestPhase::BroadcastPing,
                TestPhase::Arp,
                TestPhase::BroadcastPing,
            ]
        );
        assert_eq!(
            status(&s, u, 0),
            InterfaceStatus::Testing,
            "never failed: neither unit hears traffic"
        );
        assert_eq!(s.unit(u).show().this_host.failed_interfaces, 0);
    }
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(s.state(B), Some(State::StandbyReady));
}

#[test]
fn testing_starts_after_rounded_half_holdtime_in_polltimes_for_the_seeds_defaults() {
    // Seeds 004 step 10's example: interface holdtime 25 s, polltime 5 s → tests start 15 s after
    // the last hello; each test lasts 25/16 s.
    let mut s = Sim::pair(timers(1_000, 15_000), 1, 3);
    for u in [A, B] {
        let c = s.config_mut(u);
        c.interface = tandem_ha::InterfaceTimers::default();
        c.link_state_polltime = ms(500);
    }
    s.start(A);
    s.start(B);
    s.run_for(ms(60_000));
    let cut = s.now();
    s.segments[0].ports[A] = Port::Isolated;
    s.run_for(ms(60_000));
    let runs = tests_run(&s, B, 0, cut);
    assert!(!runs.is_empty(), "{}", dump(&s));
    let start = runs[0].0 - cut;
    // y = 15 s after B's last hello from A, which left A at most a polltime (5 s) before the cut.
    assert!(
        start > ms(10_000) && start <= ms(15_000) + ms(1),
        "{start:?}"
    );
    assert_eq!(
        runs[1].0 - runs[0].0,
        std::time::Duration::from_micros(1_562_500)
    );
}

#[test]
fn traffic_makes_a_testing_interface_normal_at_once() {
    // Seeds 004: "As soon as a unit receives any eligible packets during the test, then the
    // interface is considered operational."
    let mut s = running_pair(2);
    s.segments[0].ports[B] = Port::Isolated;
    s.run_for(ms(Y + 100));
    assert_eq!(status(&s, A, 0), InterfaceStatus::Testing);
    let t = s.now();
    s.command(A, |u, now| u.handle_traffic_seen(now, IfIndex(0)));
    assert_eq!(status(&s, A, 0), InterfaceStatus::Normal);
    assert_eq!(
        status_changes(&s, A, 0, t),
        vec![(t, InterfaceStatus::Normal)]
    );
}

#[test]
fn failed_interface_becomes_normal_again_when_it_receives_traffic() {
    // Seeds 004: "An interface becomes operational again if it receives any traffic."
    let mut s = running_pair(2);
    s.set_chatter(0, Some(ms(50)));
    s.segments[0].ports[B] = Port::Isolated;
    s.run_for(ms(8_000));
    assert_eq!(status(&s, B, 0), InterfaceStatus::Failed, "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::Failed));
    let back = s.now();
    s.segments[0].ports[B] = Port::Up;
    s.run_for(ms(200));
    assert_eq!(status(&s, B, 0), InterfaceStatus::Normal);
    let ch = status_changes(&s, B, 0, back);
    assert_eq!(ch.len(), 1);
    assert!(
        ch[0].0 - back <= ms(50) + ms(1),
        "at the first chattering frame"
    );
    assert_eq!(s.state(B), Some(State::StandbyReady));
}

#[test]
fn link_states_show_as_no_link_and_link_down_at_the_next_link_state_poll() {
    // Seeds 004, "Interface Status": "Link Down—The interface or VLAN is administratively down";
    // "No Link—The physical link for the interface is down."
    let mut s = running_pair(2);
    let t0 = s.now();
    s.segments[0].ports[B] = Port::NoLink;
    s.segments[1].ports[B] = Port::AdminDown;
    s.run_for(ms(400));
    let c0 = status_changes(&s, B, 0, t0);
    let c1 = status_changes(&s, B, 1, t0);
    assert_eq!(c0.first().map(|c| c.1), Some(InterfaceStatus::NoLink));
    assert_eq!(c1.first().map(|c| c.1), Some(InterfaceStatus::LinkDown));
    assert!(c0[0].0 - t0 <= ms(300), "within one link-state polltime");
    // The mate sees the statuses over the failover link.
    let other = s.unit(A).show().other_host.expect("mate");
    assert_eq!(other.interfaces[0].status, InterfaceStatus::NoLink);
    assert_eq!(other.interfaces[1].status, InterfaceStatus::LinkDown);
}

#[test]
fn interface_without_a_standby_ip_is_monitored_by_link_state_only() {
    // Seeds 004: without a standby IP "the active unit cannot perform network tests to check the
    // standby interface health; it can only track the link state".
    let mut s = pair(2);
    for u in [A, B] {
        s.config_mut(u).interfaces[0].standby_ip = None;
    }
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    let t0 = s.now();
    s.segments[0].ports[A] = Port::Isolated;
    s.run_for(ms(20_000));
    assert!(tests_run(&s, A, 0, t0).is_empty());
    assert!(tests_run(&s, B, 0, t0).is_empty());
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    // …but its link still counts.
    s.segments[0].ports[A] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(A), Some(State::Failed));
    assert_eq!(s.state(B), Some(State::Active));
}

#[test]
fn unmonitored_interface_does_not_count_for_the_policy() {
    let mut s = pair(2);
    for u in [A, B] {
        s.config_mut(u).interfaces[1].monitored = false;
    }
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    let t0 = s.now();
    s.segments[1].ports[A] = Port::NoLink;
    s.run_for(ms(10_000));
    assert_eq!(transitions_since(&s, A, t0), vec![]);
    assert_eq!(status(&s, A, 1), InterfaceStatus::NoLink);
    assert!(tests_run(&s, A, 1, t0).is_empty() && tests_run(&s, B, 1, t0).is_empty());
}

#[test]
fn interface_monitoring_waits_for_the_mate() {
    // Alone, nothing to compare with: no tests, statuses from traffic and link only.
    let mut s = pair(2);
    s.start(A);
    s.run_for(ms(30_000));
    assert!(tests_run(&s, A, 0, Timestamp::ZERO).is_empty());
    assert_eq!(status(&s, A, 0), InterfaceStatus::Unknown);
    assert_eq!(s.unit(A).show().this_host.failed_interfaces, 0);
}

#[test]
fn a_joining_mate_is_not_tested_for_interface_hellos_before_it_can_send_them() {
    // A mate in Negotiation sends no interface hellos (it owns no address yet). An active whose
    // interface timers are shorter than the mate's Negotiation (here y = 20 ms against a unit
    // polltime of 200 ms) must not test, and fail, its interfaces for the hellos of a mate that
    // cannot send them yet: in the lab (10/50 ms interface timers, 50/250 ms unit timers) the
    // active failed its monitored interface that way and handed the active role to the joining
    // unit.
    let mut s = pair(1);
    for u in [A, B] {
        s.config_mut(u).interface = tandem_ha::InterfaceTimers {
            polltime: ms(10),
            holdtime: ms(50),
        };
    }
    s.start(A);
    // B starts just after one of A's hellos: it hears A only at the next, a polltime later.
    s.run_for(ms(3 * HOLD + 7));
    assert_eq!(s.state(A), Some(State::Active));
    let t0 = s.now();
    s.start(B);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::StandbyReady), "{}", dump(&s));
    assert!(
        tests_run(&s, A, 0, t0).is_empty(),
        "A tested its interface while the mate negotiated\n{}",
        dump(&s)
    );
    assert_eq!(status(&s, A, 0), InterfaceStatus::Normal);
    // Monitoring did start once the mate had a role: isolating A's port is tested.
    let cut = s.now();
    s.segments[0].ports[A] = Port::Isolated;
    s.run_for(ms(200));
    assert!(
        !tests_run(&s, A, 0, cut).is_empty(),
        "no interface test after the join\n{}",
        dump(&s)
    );
}
