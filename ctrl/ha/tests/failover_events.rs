//! Seeds 004, "Active Unit Determination at Startup" and "Failover Events" (Table 3, Active/Standby),
//! one named test per rule and row, in the deterministic two-unit simulation.

mod common;

use common::*;
use tandem_ha::sim::{Port, A, B};
use tandem_ha::{
    DualActiveRule, Event, LinkFailure, LinkState, Reason, Role, StaleCause, State,
    StateLinkConfig, Timestamp,
};

// ----- Active unit determination at startup -----

#[test]
fn startup_unit_alone_becomes_active_after_holdtime() {
    // Seeds 004: "If a unit boots and does not detect a peer, it becomes the active unit."
    for u in [A, B] {
        let mut s = pair(2);
        s.start(u);
        s.run_for(ms(HOLD - 1));
        assert_eq!(s.state(u), Some(State::Negotiation), "{}", dump(&s));
        s.run_for(ms(2 * HOLD));
        let t = last_into(&s, u, State::Active).expect("became active");
        assert_eq!(t.at, at_ms(HOLD), "listens exactly one unit holdtime");
        assert_eq!(t.reason, Reason::StartupNoPeer { waited: ms(HOLD) });
        assert!(
            s.unit(u).failover_link_failure().is_none(),
            "an absent peer is not a failed link"
        );
    }
}

#[test]
fn startup_unit_detecting_an_active_peer_becomes_standby() {
    // Seeds 004: "If a unit boots and detects a peer already running as active, it becomes the
    // standby unit" — whatever its role.
    for (first, second) in [(A, B), (B, A)] {
        let mut s = pair(2);
        s.start(first);
        s.run_for(ms(2 * HOLD));
        assert_eq!(s.state(first), Some(State::Active));
        let joined = s.now();
        s.start(second);
        s.run_for(ms(2 * HOLD));
        assert_eq!(s.state(first), Some(State::Active), "{}", dump(&s));
        assert_eq!(s.state(second), Some(State::StandbyReady), "{}", dump(&s));
        let t = last_into(&s, second, State::StandbyReady).expect("standby");
        assert_eq!(t.reason, Reason::StartupPeerActive);
        assert!(
            t.at - joined < ms(POLL),
            "decided on the first hello, not after a holdtime"
        );
        assert_eq!(
            transitions_since(&s, first, joined),
            vec![],
            "the active unit does nothing"
        );
    }
}

#[test]
fn startup_simultaneous_primary_becomes_active_secondary_standby() {
    // Seeds 004: "If both units boot simultaneously, then the primary unit becomes the active
    // unit, and the secondary unit becomes the standby unit." Start order and small offsets (less
    // than a polltime) do not matter.
    for offset in [0, 1, 50, 199] {
        for (first, second) in [(A, B), (B, A)] {
            let mut s = pair(2);
            s.start(first);
            s.run_for(ms(offset));
            s.start(second);
            let mut both_active = false;
            let deadline = s.now() + ms(3 * HOLD);
            while s.now() < deadline && s.step() {
                both_active |= s.active_units().len() == 2;
            }
            assert!(!both_active, "never two active units");
            assert_eq!(
                s.state(A),
                Some(State::Active),
                "offset {offset}\n{}",
                dump(&s)
            );
            assert_eq!(
                s.state(B),
                Some(State::StandbyReady),
                "offset {offset}\n{}",
                dump(&s)
            );
            let a = last_into(&s, A, State::Active).expect("A active");
            // A hears B negotiating: simultaneous boot. (With B starting first, B may already
            // hear A negotiating; the primary still decides.)
            assert_eq!(a.reason, Reason::StartupBothBooted, "offset {offset}");
            assert!(a.at < at_ms(HOLD), "no holdtime wait when both boot");
        }
    }
}

#[test]
fn startup_with_both_units_configured_secondary_lower_failover_mac_acts_as_primary() {
    // Tandem's decision for a misconfiguration the seeds do not cover: report it, and let the
    // lower failover-link MAC (A: 02:00:00:00:ff:01) act as primary.
    let mut s = pair(1);
    s.config_mut(A).role = Role::Secondary;
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::StandbyReady));
    assert!(matches!(
        last_into(&s, A, State::Active).map(|t| t.reason),
        Some(Reason::StartupRoleTie {
            role: Role::Secondary,
            ..
        })
    ));
    for u in [A, B] {
        assert!(has_event(&s, u, Timestamp::ZERO, |e| matches!(
            e,
            Event::RoleConflict {
                role: Role::Secondary
            }
        )));
    }
}

// ----- Table 3 rows -----

#[test]
fn failover_link_failed_at_startup_both_units_become_active_and_mark_it_failed() {
    // Table 3: "Failover link failed at startup — No failover — Become active, Mark failover link
    // as failed (both units). If the failover link is down at startup, both units become active."
    let mut s = pair(2);
    s.failover_carrier = false;
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    for u in [A, B] {
        assert_eq!(s.state(u), Some(State::Active), "{}", dump(&s));
        assert_eq!(
            last_into(&s, u, State::Active).map(|t| t.reason),
            Some(Reason::StartupFailoverLinkDown)
        );
        assert_eq!(
            s.unit(u).failover_link_failure(),
            Some(LinkFailure::NoLinkAtStartup)
        );
        assert!(has_event(&s, u, Timestamp::ZERO, |e| *e
            == Event::FailoverLinkFailed(LinkFailure::NoLinkAtStartup)));
        // The state link is shared with the failover link by default: state is stale.
        assert_eq!(
            s.unit(u).state_link_stale(),
            Some(StaleCause::FailoverLinkFailed)
        );
    }
}

#[test]
fn failover_link_restored_after_startup_split_primary_keeps_active_other_returns_to_standby() {
    // The seeds are silent; issue 3's decision: the primary keeps active, the other returns to
    // standby, and both log it. Checked with the primary as A and as B.
    for primary in [A, B] {
        let other = 1 - primary;
        let mut s = pair(2);
        s.config_mut(primary).role = Role::Primary;
        s.config_mut(other).role = Role::Secondary;
        s.failover_carrier = false;
        s.start(A);
        s.start(B);
        s.run_for(ms(3 * HOLD));
        assert_eq!(s.active_units().len(), 2);
        let restored = s.now();
        s.failover_carrier = true;
        s.run_for(ms(3 * HOLD));
        assert_eq!(s.state(primary), Some(State::Active), "{}", dump(&s));
        assert_eq!(s.state(other), Some(State::StandbyReady), "{}", dump(&s));
        let t = last_into(&s, other, State::StandbyReady).expect("returned to standby");
        assert!(matches!(
            t.reason,
            Reason::DualActive {
                rule: DualActiveRule::PrimaryKeeps,
                ..
            }
        ));
        assert!(t.to_string().contains("the primary keeps active"), "{t}");
        assert_eq!(transitions_since(&s, primary, restored), vec![]);
        for u in [A, B] {
            assert!(has_event(&s, u, restored, |e| *e == Event::FailoverLinkRestored));
            assert!(s.unit(u).failover_link_failure().is_none());
            assert!(s.unit(u).state_link_stale().is_none());
        }
    }
}

#[test]
fn failover_link_partitioned_at_startup_both_active_then_primary_keeps_active() {
    // The same row when the link has carrier but carries nothing (a dead switch between the units):
    // neither detects a peer, both become active; when hellos flow again the primary keeps active.
    let mut s = pair(2);
    s.failover.up = false;
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.active_units(), vec![A, B]);
    s.failover.up = true;
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(s.state(B), Some(State::StandbyReady), "{}", dump(&s));
}

#[test]
fn active_unit_failed_standby_becomes_active_and_marks_active_failed() {
    // Table 3: "Active unit failed (power or hardware) — Failover — Standby: Become active, Mark
    // active as failed." Seeds 004, "Unit Health Monitoring": no answer on any interface → "the
    // standby unit switches to active mode and classifies the other unit as failed".
    standby_becomes_active_when_no_hello_and_no_lantest_reply();
}

#[test]
fn standby_becomes_active_when_no_hello_and_no_lantest_reply() {
    let mut s = running_pair(3);
    let killed = s.now();
    s.kill(A);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(B), Some(State::Active), "{}", dump(&s));
    let t = last_into(&s, B, State::Active).expect("took over");
    let Reason::MateFailed { silent, tested } = t.reason else {
        panic!("reason {:?}", t.reason)
    };
    // Failover link + 3 data interfaces tested; silence = holdtime + the LANTEST window.
    assert_eq!(tested, 4);
    assert_eq!(silent, ms(HOLD + POLL));
    assert!(t.at - killed > ms(HOLD) && t.at - killed <= ms(HOLD + POLL) + ms(1));
    assert_eq!(
        t.to_string(),
        "no hello on the failover link for 1 s; LANTEST answered on none of 4 interfaces → Active (was Standby Ready)"
    );
    assert_eq!(
        s.unit(B).mate_state(),
        Some(State::Failed),
        "marks the active failed"
    );
    assert!(has_event(&s, B, killed, |e| matches!(
        e,
        Event::MateFailed { tested: 4, .. }
    )));
    assert!(has_event(&s, B, killed, |e| *e == Event::TakeOver));
}

#[test]
fn formerly_active_unit_recovers_as_standby() {
    // Table 3: "Formerly active unit recovers — No failover — Become standby; the active does
    // nothing."
    let mut s = running_pair(2);
    s.kill(A);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(B), Some(State::Active));
    let back = s.now();
    s.start(A);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::StandbyReady), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::Active));
    assert_eq!(
        reasons_since(&s, A, back),
        vec![(State::StandbyReady, Reason::StartupPeerActive)]
    );
    assert_eq!(transitions_since(&s, B, back), vec![]);
    assert!(has_event(&s, B, back, |e| *e == Event::MateRecovered));
    assert!(
        has_event(&s, B, back, |e| *e == Event::MateJoined),
        "B sends its configuration"
    );
    assert_eq!(s.unit(B).mate_state(), Some(State::StandbyReady));
}

#[test]
fn formerly_active_unit_that_was_only_partitioned_becomes_standby_when_heard_again() {
    // The active unit loses every link but keeps running; the standby takes over. When the links
    // come back, both are active: the newer activation (the former standby) keeps active and the
    // formerly active unit becomes standby, as the table's "formerly active unit recovers" row.
    let mut s = running_pair(2);
    s.failover.up = false;
    for seg in &mut s.segments {
        seg.ports[A] = Port::Isolated;
    }
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.active_units(), vec![A, B], "{}", dump(&s));
    let healed = s.now();
    s.failover.up = true;
    for seg in &mut s.segments {
        seg.ports[A] = Port::Up;
    }
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(B), Some(State::Active));
    assert_eq!(s.state(A), Some(State::StandbyReady), "{}", dump(&s));
    assert!(matches!(
        reasons_since(&s, A, healed).as_slice(),
        [(
            State::StandbyReady,
            Reason::DualActive {
                rule: DualActiveRule::NewerActivation,
                ..
            }
        )]
    ));
}

#[test]
fn active_unit_restarting_within_holdtime_hands_over_to_the_standby() {
    // The active unit restarts faster than the standby's holdtime: the standby hears it negotiate
    // and takes over at once; the restarted unit finds an active peer and becomes standby
    // (tandem's decision, consistent with "formerly active unit recovers: become standby").
    let mut s = running_pair(2);
    let t0 = s.now();
    s.kill(A);
    s.start(A);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(B), Some(State::Active), "{}", dump(&s));
    assert_eq!(s.state(A), Some(State::StandbyReady));
    let t = last_into(&s, B, State::Active).expect("took over");
    assert_eq!(t.reason, Reason::MateRestarted);
    assert!(t.at - t0 < ms(1), "at the restarted unit's first hello");
}

#[test]
fn standby_unit_failed_active_marks_standby_failed_without_failover() {
    // Table 3: "Standby unit failed — No failover — Active: Mark standby as failed."
    let mut s = running_pair(2);
    let killed = s.now();
    s.kill(B);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(transitions_since(&s, A, killed), vec![]);
    assert_eq!(s.unit(A).mate_state(), Some(State::Failed));
    assert!(has_event(&s, A, killed, |e| matches!(
        e,
        Event::MateFailed { .. }
    )));
}

#[test]
fn active_does_not_fail_over_to_a_failed_standby_even_above_threshold() {
    // Table 3 note: "When the standby unit is marked as failed, then the active unit does not
    // attempt to fail over, even if the interface failure threshold is surpassed."
    // (a) the standby is dead and marked failed:
    let mut s = running_pair(3);
    s.kill(B);
    s.run_for(ms(3 * HOLD));
    let t0 = s.now();
    s.segments[0].ports[A] = Port::NoLink;
    s.run_for(ms(10_000));
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    assert_eq!(transitions_since(&s, A, t0), vec![]);
    // (b) the standby is Failed by its own interfaces; the active has more failed interfaces.
    let mut s = running_pair(3);
    s.segments[0].ports[B] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(B), Some(State::Failed), "{}", dump(&s));
    let t0 = s.now();
    s.segments[1].ports[A] = Port::NoLink;
    s.segments[2].ports[A] = Port::NoLink;
    s.run_for(ms(10_000));
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    assert_eq!(transitions_since(&s, A, t0), vec![]);
}

#[test]
fn failover_link_failed_during_operation_marks_it_failed_on_both_without_failover() {
    // Table 3: "Failover link failed during operation — No failover — both: Mark failover link as
    // failed."
    lantest_answer_on_data_interface_only_marks_failover_link_failed();
}

#[test]
fn lantest_answer_on_data_interface_only_marks_failover_link_failed() {
    // Seeds 004: "If the ASA does not receive a response on the failover link, but it does receive
    // a response on a data interface, then the unit does not failover. The failover link is marked
    // as failed."
    let mut s = running_pair(2);
    let cut = s.now();
    s.failover.up = false;
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(s.state(B), Some(State::StandbyReady));
    for u in [A, B] {
        assert_eq!(transitions_since(&s, u, cut), vec![], "{}", dump(&s));
        assert!(matches!(
            s.unit(u).failover_link_failure(),
            Some(LinkFailure::LanTestAnsweredOnDataOnly {
                answered: 2,
                tested: 3,
                ..
            })
        ));
        assert_eq!(
            s.unit(u).state_link_stale(),
            Some(StaleCause::FailoverLinkFailed)
        );
        assert!(
            s.unit(u).mate_state() != Some(State::Failed),
            "the mate is alive"
        );
    }
    // Restored: hellos are heard again on both sides.
    let back = s.now();
    s.failover.up = true;
    s.run_for(ms(2 * POLL));
    for u in [A, B] {
        assert!(s.unit(u).failover_link_failure().is_none());
        assert!(has_event(&s, u, back, |e| *e == Event::FailoverLinkRestored));
    }
}

#[test]
fn while_the_failover_link_is_failed_the_standby_does_not_take_over() {
    // Seeds 004: "the unit cannot fail over to the standby while the failover link is down".
    let mut s = running_pair(2);
    s.failover.up = false;
    s.run_for(ms(3 * HOLD));
    assert!(s.unit(B).failover_link_failure().is_some());
    let t0 = s.now();
    s.kill(A);
    s.run_for(ms(10 * HOLD));
    assert_eq!(s.state(B), Some(State::StandbyReady));
    assert_eq!(transitions_since(&s, B, t0), vec![]);
}

#[test]
fn failover_link_carrier_loss_tests_the_mate_at_once() {
    // Tandem's decision: no carrier on the failover link starts LANTEST without waiting out the
    // holdtime. A mate that still answers on a data interface → link failed, no failover.
    let mut s = running_pair(2);
    let cut = s.now();
    s.failover_carrier = false;
    s.run_for(ms(3 * HOLD));
    let failed = s
        .first_event(B, cut, |e| matches!(e, Event::FailoverLinkFailed(_)))
        .expect("link failed");
    // Noticed at the next link-state poll (≤ 300 ms), then one LANTEST window (200 ms).
    assert!(failed - cut <= ms(300 + POLL) + ms(1), "{:?}", failed - cut);
    assert_eq!(s.state(B), Some(State::StandbyReady));
}

#[test]
fn lantest_answer_on_failover_link_means_no_failover() {
    // Seeds 004: "If the ASA receives a response on the failover link, then it does not fail
    // over." Hellos are lost but the failover link answers LANTEST.
    let mut s = running_pair(2);
    let t0 = s.now();
    s.drop_hellos = true;
    s.run_for(ms(10 * HOLD));
    for u in [A, B] {
        assert_eq!(transitions_since(&s, u, t0), vec![], "{}", dump(&s));
        assert!(s.unit(u).failover_link_failure().is_none());
        assert!(!has_event(&s, u, t0, |e| matches!(
            e,
            Event::MateFailed { .. }
        )));
        assert!(s.unit(u).counters().lantest_rounds >= 5);
    }
}

#[test]
fn state_link_failed_marks_state_stale_without_failover() {
    // Table 3: "State link failed — No failover — No action / No action. State information becomes
    // out of date, and sessions are terminated if a failover occurs."
    let mut s = pair(2);
    s.config_mut(A).state_link = StateLinkConfig::Dedicated;
    s.config_mut(B).state_link = StateLinkConfig::Dedicated;
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    let t0 = s.now();
    s.state_link = [LinkState::NoLink; 2];
    s.run_for(ms(5 * HOLD));
    for u in [A, B] {
        assert_eq!(transitions_since(&s, u, t0), vec![]);
        assert_eq!(
            s.unit(u).state_link_stale(),
            Some(StaleCause::StateLinkDown)
        );
        assert!(has_event(&s, u, t0, |e| *e
            == Event::StateLinkStale(StaleCause::StateLinkDown)));
    }
    s.state_link = [LinkState::Up; 2];
    s.run_for(ms(HOLD));
    for u in [A, B] {
        assert!(s.unit(u).state_link_stale().is_none());
        assert!(has_event(&s, u, t0, |e| *e == Event::StateLinkRestored));
    }
}

#[test]
fn interface_failure_on_active_above_threshold_fails_over() {
    // Table 3: "Interface failure on active unit above threshold — Failover — Active: Mark active
    // as failed; Standby: Become active."
    let mut s = running_pair(2);
    let down = s.now();
    s.segments[0].ports[A] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(A), Some(State::Failed), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::Active));
    let a = last_into(&s, A, State::Failed).expect("A failed");
    assert!(matches!(
        a.reason,
        Reason::InterfacePolicy {
            failed: 1,
            monitored: 2,
            mate_failed: 0,
            ..
        }
    ));
    let b = last_into(&s, B, State::Active).expect("B active");
    assert_eq!(
        b.reason,
        Reason::MateNotActive {
            mate: State::Failed
        }
    );
    // Seeds 004 "Failover Times", "interface link down": within the interface polltime (1 s
    // here) after the link-state poll (300 ms) saw it.
    assert!(b.at - down <= ms(1000 + 300) + ms(1), "{:?}", b.at - down);
    assert!(a.at - down >= ms(1000), "not before an interface polltime");
}

#[test]
fn interface_failure_on_standby_above_threshold_marks_standby_failed() {
    // Table 3: "Interface failure on standby unit above threshold — No failover — Standby: Mark
    // standby as failed."
    let mut s = running_pair(2);
    let t0 = s.now();
    s.segments[1].ports[B] = Port::AdminDown;
    s.run_for(ms(5_000));
    assert_eq!(s.state(B), Some(State::Failed), "{}", dump(&s));
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(transitions_since(&s, A, t0), vec![]);
    assert_eq!(s.unit(A).mate_state(), Some(State::Failed));
}

#[test]
fn failed_unit_returns_to_standby_when_threshold_no_longer_met() {
    // Seeds 004: "A failed ASA returns to standby mode if the interface failure threshold is no
    // longer met." No preemption: the new active stays active.
    let mut s = running_pair(2);
    s.segments[0].ports[A] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(A), Some(State::Failed));
    let up = s.now();
    s.segments[0].ports[A] = Port::Up;
    s.run_for(ms(5_000));
    assert_eq!(s.state(A), Some(State::StandbyReady), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::Active));
    assert!(matches!(
        reasons_since(&s, A, up).as_slice(),
        [(
            State::StandbyReady,
            Reason::InterfacesRecovered { failed: 0, .. }
        )]
    ));
}

#[test]
fn interface_policy_percentage_needs_that_share_of_monitored_interfaces() {
    // `failover interface-policy 50%` with 4 monitored interfaces: one failure is not enough, two
    // are.
    let mut s = pair(4);
    for u in [A, B] {
        s.config_mut(u).interface_policy = tandem_ha::InterfacePolicy::Percent(50);
    }
    s.start(A);
    s.start(B);
    s.run_for(ms(3 * HOLD));
    s.segments[0].ports[A] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    s.segments[1].ports[A] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(A), Some(State::Failed), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::Active));
}

#[test]
fn interface_failed_on_both_units_is_unknown_and_does_not_count() {
    // Seeds 004: "If an interface fails on both units, then both interfaces go into the 'Unknown'
    // state and do not count towards the failover limit."
    let mut s = running_pair(2);
    let t0 = s.now();
    s.segments[0].ports = [Port::NoLink; 2];
    s.run_for(ms(5_000));
    for u in [A, B] {
        assert_eq!(transitions_since(&s, u, t0), vec![], "{}", dump(&s));
        let v = s.unit(u).show();
        assert_eq!(
            v.this_host.interfaces[0].status,
            tandem_ha::InterfaceStatus::Unknown
        );
        assert_eq!(v.this_host.failed_interfaces, 0);
    }
}

#[test]
fn failed_standby_takes_over_when_the_active_dies() {
    // The seeds do not say what a Failed standby does when the active unit dies; tandem's
    // decision: it takes over (a unit with some failed interfaces passes more traffic than none).
    let mut s = running_pair(3);
    s.segments[0].ports[B] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(B), Some(State::Failed));
    let t0 = s.now();
    s.kill(A);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(B), Some(State::Active), "{}", dump(&s));
    assert!(matches!(
        reasons_since(&s, B, t0).as_slice(),
        [(State::Active, Reason::MateFailed { .. })]
    ));
}

#[test]
fn restarted_unit_becomes_active_at_once_when_the_mate_is_pseudo_standby() {
    // A starting unit that hears a mate which will not become active (pseudo-standby) is not
    // "detecting a peer running as active": it becomes active without waiting out the holdtime,
    // and the mate, whose failover is enabled, resumes ordinary standby.
    let mut s = running_pair(2);
    s.command(A, |u, now| u.disable(now));
    s.run_for(ms(HOLD));
    assert_eq!(s.state(B), Some(State::PseudoStandby));
    s.kill(A);
    s.run_for(ms(3 * HOLD));
    let t0 = s.now();
    s.start(A);
    s.run_for(ms(3 * HOLD));
    assert_eq!(
        reasons_since(&s, A, t0),
        vec![(
            State::Active,
            Reason::StartupMateCannotBeActive {
                mate: State::PseudoStandby
            }
        )]
    );
    assert!(last_into(&s, A, State::Active).is_some_and(|t| t.at - t0 < ms(POLL)));
    assert_eq!(s.state(B), Some(State::StandbyReady), "{}", dump(&s));
}
