//! Operator control (seeds 004 "Force Failover", "Disable Failover", "Restore a Failed Unit";
//! seeds 003 "Controlling Failover") and IP/MAC ownership (seeds 004 "MAC Addresses and IP
//! Addresses in Failover"), in the two-unit simulation.

mod common;

use common::*;
use tandem_ha::sim::{Port, A, B};
use tandem_ha::{
    AddressSet, CommandError, Event, IfIndex, Link, Mac, Outbound, Reason, State, Timestamp,
    VirtualMac, HISTORY_LEN,
};

fn own_mac(u: usize, iface: u8) -> Mac {
    // sim::config: unit A (primary) 02:00:00:00:i:01, unit B (secondary) …:02.
    Mac([2, 0, 0, 0, iface, if u == A { 1 } else { 2 }])
}

// ----- manual failover -----

#[test]
fn failover_active_on_standby_makes_it_active_and_the_mate_standby() {
    // Seeds 004: "The failover active command is run on the standby unit" triggers failover;
    // manual failover "starts immediately and is not subject to the timers".
    let mut s = running_pair(2);
    let t0 = s.now();
    s.command(B, |u, now| u.failover_active(now))
        .expect("accepted");
    assert_eq!(s.state(B), Some(State::Active), "at once");
    s.run_for(ms(1));
    assert_eq!(s.state(A), Some(State::StandbyReady), "{}", dump(&s));
    assert_eq!(
        reasons_since(&s, B, t0),
        vec![(State::Active, Reason::ManualActive)]
    );
    assert!(matches!(
        reasons_since(&s, A, t0).as_slice(),
        [(State::StandbyReady, Reason::DualActive { .. })]
    ));
    assert!(s.unit(B).term() > s.unit(A).term() - 1);
}

#[test]
fn no_failover_active_on_active_hands_over_to_the_mate_without_a_gap() {
    // Seeds 004: "The no failover active command is run on the active unit" triggers failover.
    let mut s = running_pair(2);
    let t0 = s.now();
    s.command(A, |u, now| u.no_failover_active(now))
        .expect("accepted");
    let mut never_none = true;
    let end = s.now() + ms(POLL);
    while s.now() < end && s.step() {
        never_none &= !s.active_units().is_empty();
    }
    assert!(never_none, "some unit is active throughout the handover");
    assert_eq!(s.state(B), Some(State::Active), "{}", dump(&s));
    assert_eq!(s.state(A), Some(State::StandbyReady));
    assert_eq!(
        reasons_since(&s, B, t0),
        vec![(State::Active, Reason::MateRequested)]
    );
    assert_eq!(
        reasons_since(&s, A, t0),
        vec![(State::StandbyReady, Reason::ManualStandby)]
    );
}

#[test]
fn manual_failover_works_both_ways_repeatedly() {
    let mut s = running_pair(2);
    for round in 0..6 {
        let (active, standby) = if round % 2 == 0 { (A, B) } else { (B, A) };
        if round % 4 < 2 {
            s.command(standby, |u, now| u.failover_active(now))
                .expect("failover active");
        } else {
            s.command(active, |u, now| u.no_failover_active(now))
                .expect("no failover active");
        }
        s.run_for(ms(HOLD));
        assert_eq!(
            s.state(standby),
            Some(State::Active),
            "round {round}\n{}",
            dump(&s)
        );
        assert_eq!(s.state(active), Some(State::StandbyReady), "round {round}");
    }
}

#[test]
fn no_failover_active_times_out_when_the_mate_never_takes_over() {
    // The mate stops being able to take over right after the command (failover disabled on it
    // before the request arrives): the active unit repeats the request for a unit holdtime, gives
    // up, logs it, and stays active.
    let mut s = running_pair(2);
    let t0 = s.now();
    s.command(A, |u, now| u.no_failover_active(now))
        .expect("accepted");
    s.command(B, |u, now| u.disable(now));
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active), "{}", dump(&s));
    assert_eq!(s.state(B), Some(State::PseudoStandby));
    let gave_up = s
        .first_event(A, t0, |e| *e == Event::HandoverTimedOut)
        .expect("timed out");
    assert_eq!(gave_up - t0, ms(HOLD));
    assert!(
        s.unit(B).counters().rx_control_ignored >= 4,
        "repeated every polltime"
    );
}

#[test]
fn commands_that_cannot_work_are_refused_with_the_reason() {
    // Negotiating.
    let mut s = pair(1);
    s.start(A);
    assert_eq!(
        s.command(A, |u, now| u.failover_active(now)),
        Err(CommandError::Negotiating)
    );
    assert_eq!(
        s.command(A, |u, now| u.no_failover_active(now)),
        Err(CommandError::Negotiating)
    );
    // No mate to hand over to.
    s.run_for(ms(2 * HOLD));
    assert_eq!(
        s.command(A, |u, now| u.no_failover_active(now)),
        Err(CommandError::NoMate)
    );
    // Failed unit.
    let mut s = running_pair(2);
    s.segments[0].ports[B] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(B), Some(State::Failed));
    assert_eq!(
        s.command(B, |u, now| u.failover_active(now)),
        Err(CommandError::UnitFailed)
    );
    assert_eq!(
        s.command(A, |u, now| u.no_failover_active(now)),
        Err(CommandError::MateNotReady(State::Failed))
    );
    // Failover link failed.
    let mut s = running_pair(2);
    s.failover.up = false;
    s.run_for(ms(3 * HOLD));
    assert_eq!(
        s.command(B, |u, now| u.failover_active(now)),
        Err(CommandError::FailoverLinkFailed)
    );
    assert_eq!(
        s.command(A, |u, now| u.no_failover_active(now)),
        Err(CommandError::FailoverLinkFailed)
    );
    // Pseudo-standby.
    let mut s = running_pair(2);
    s.command(B, |u, now| u.disable(now));
    assert_eq!(
        s.command(B, |u, now| u.failover_active(now)),
        Err(CommandError::FailoverDisabled)
    );
    assert_eq!(
        CommandError::MateNotReady(State::Failed).to_string(),
        "the mate is Failed, not Standby Ready; it cannot become active"
    );
    // Already in the asked state: accepted, nothing changes.
    let mut s = running_pair(2);
    assert_eq!(s.command(A, |u, now| u.failover_active(now)), Ok(()));
    assert_eq!(s.command(B, |u, now| u.no_failover_active(now)), Ok(()));
    s.run_for(ms(HOLD));
    assert_eq!(s.state(A), Some(State::Active));
}

// ----- failover reset -----

#[test]
fn failover_reset_returns_a_failed_unit_to_standby_and_it_fails_again_if_the_condition_persists() {
    // Seeds 004: "failover reset" moves a failed unit to standby; "If the failover condition
    // persists, however, the unit will fail again."
    let mut s = running_pair(2);
    s.segments[0].ports[B] = Port::NoLink;
    s.run_for(ms(5_000));
    assert_eq!(s.state(B), Some(State::Failed));
    let t0 = s.now();
    s.command(B, |u, now| u.failover_reset(now)).expect("reset");
    s.run_for(ms(HOLD));
    let r = reasons_since(&s, B, t0);
    assert_eq!(r[0], (State::StandbyReady, Reason::Reset), "{r:?}");
    assert!(
        matches!(r[1], (State::Failed, Reason::InterfacePolicy { .. })),
        "{r:?}"
    );
    assert_eq!(s.state(B), Some(State::Failed));
    assert_eq!(
        s.state(A),
        Some(State::Active),
        "reset never makes a unit active"
    );
}

#[test]
fn failover_reset_on_the_active_unit_resets_the_failed_mate() {
    // Seeds 004: "Clicking this button on the active unit resets the standby unit." B's port is
    // isolated: its interface tests fail it (a verdict that stays until traffic is seen).
    let mut s = running_pair(2);
    s.segments[0].ports[B] = Port::Isolated;
    s.set_chatter(0, Some(ms(100)));
    s.run_for(ms(10_000));
    assert_eq!(s.state(B), Some(State::Failed), "{}", dump(&s));
    s.segments[0].ports[B] = Port::Up;
    s.set_chatter(0, None);
    // No traffic reaches B's interface 0 yet (A's interface hellos come every second, so act
    // before the next one would clear the failure by itself).
    let t0 = s.now();
    s.command(A, |u, now| u.failover_reset(now)).expect("reset");
    s.run_for(ms(1));
    assert_eq!(
        reasons_since(&s, B, t0).first().copied(),
        Some((State::StandbyReady, Reason::ResetByMate)),
        "{}",
        dump(&s)
    );
}

// ----- no failover -----

#[test]
fn no_failover_on_the_active_unit_puts_the_standby_in_pseudo_standby_until_reenabled() {
    // Seeds 004, "Disable Failover": "The standby unit/context remains in standby mode so that
    // both units do not start passing traffic (this is called a pseudo-standby state)" … "If
    // failover is re-enabled on the active unit/context, then the standby unit/context resumes
    // ordinary standby status after re-synchronizing the rest of its configuration."
    let mut s = running_pair(2);
    let t0 = s.now();
    s.command(A, |u, now| u.disable(now));
    s.run_for(ms(HOLD));
    assert_eq!(s.state(A), Some(State::Active), "the active stays active");
    assert_eq!(s.state(B), Some(State::PseudoStandby));
    assert_eq!(
        reasons_since(&s, B, t0),
        vec![(State::PseudoStandby, Reason::MateFailoverDisabled)]
    );
    assert_eq!(
        s.unit(B).address_set(),
        AddressSet::Standby,
        "keeps its standby addresses"
    );
    let t1 = s.now();
    s.command(A, |u, now| u.enable(now));
    s.run_for(ms(HOLD));
    assert_eq!(s.state(B), Some(State::StandbyReady));
    assert_eq!(
        reasons_since(&s, B, t1),
        vec![(State::StandbyReady, Reason::MateFailoverEnabled)]
    );
    assert!(
        has_event(&s, A, t1, |e| *e == Event::MateJoined),
        "resynchronise the configuration"
    );
}

#[test]
fn pseudo_standby_never_takes_over() {
    // No failover on the standby itself, then the active dies: the pseudo-standby marks it failed
    // but stays standby ("so that both units do not start passing traffic").
    for disabled_on in [A, B] {
        let mut s = running_pair(2);
        s.command(disabled_on, |u, now| u.disable(now));
        s.run_for(ms(HOLD));
        assert_eq!(s.state(B), Some(State::PseudoStandby));
        let t0 = s.now();
        s.kill(A);
        s.run_for(ms(5 * HOLD));
        assert_eq!(s.state(B), Some(State::PseudoStandby), "{}", dump(&s));
        assert_eq!(transitions_since(&s, B, t0), vec![]);
        assert_eq!(s.unit(B).mate_state(), Some(State::Failed));
    }
}

#[test]
fn failover_disabled_in_the_configuration_is_a_standalone_unit() {
    let mut s = pair(1);
    s.config_mut(A).enabled = false;
    s.start(A);
    s.run_for(ms(HOLD));
    assert_eq!(s.state(A), Some(State::Disabled));
    assert_eq!(s.unit(A).address_set(), AddressSet::Active);
    assert!(!s.unit(A).show().failover_enabled);
    // `failover` later: negotiate like a booting unit.
    s.command(A, |u, now| u.enable(now));
    assert_eq!(s.state(A), Some(State::Negotiation));
    s.run_for(ms(2 * HOLD));
    assert_eq!(s.state(A), Some(State::Active));
}

// ----- MAC and IP addresses -----

#[test]
fn active_unit_uses_the_primary_macs_and_the_standby_the_secondary_macs() {
    // Seeds 004: "The active unit always uses the primary unit's IP addresses and MAC addresses";
    // after a failover "the standby unit assumes the IP addresses and MAC addresses of the failed
    // unit"; "When the failed unit comes back online, it is now in a standby state and takes over
    // the standby IP addresses and MAC addresses."
    let mut s = running_pair(2);
    let owned = |s: &tandem_ha::sim::Sim, u| s.unit(u).owned_addresses();
    let a = owned(&s, A);
    let b = owned(&s, B);
    assert_eq!(
        a.iter().map(|o| o.mac).collect::<Vec<_>>(),
        vec![own_mac(A, 0), own_mac(A, 1)]
    );
    assert_eq!(
        b.iter().map(|o| o.mac).collect::<Vec<_>>(),
        vec![own_mac(B, 0), own_mac(B, 1)]
    );
    assert_eq!(a[0].ip, Some("198.18.1.1".parse().unwrap()));
    assert_eq!(b[0].ip, Some("198.18.1.2".parse().unwrap()));
    s.kill(A);
    s.run_for(ms(3 * HOLD));
    let b = owned(&s, B);
    assert_eq!(
        b.iter().map(|o| o.mac).collect::<Vec<_>>(),
        vec![own_mac(A, 0), own_mac(A, 1)],
        "primary's MACs"
    );
    assert_eq!(b[0].ip, Some("198.18.1.1".parse().unwrap()));
    // The client's neighbour entry for the active IP resolves to the owning MAC.
    assert_eq!(
        s.segments[0].neighbours[&"198.18.1.1".parse().unwrap()],
        own_mac(A, 0)
    );
    s.start(A);
    s.run_for(ms(3 * HOLD));
    let a = owned(&s, A);
    assert_eq!(
        a.iter().map(|o| o.mac).collect::<Vec<_>>(),
        vec![own_mac(B, 0), own_mac(B, 1)],
        "secondary's MACs"
    );
    assert_eq!(a[0].ip, Some("198.18.1.2".parse().unwrap()));
    assert_eq!(
        s.segments[0].neighbours[&"198.18.1.2".parse().unwrap()],
        own_mac(B, 0)
    );
}

#[test]
fn secondary_booted_alone_uses_its_own_macs_then_switches_to_the_primary_macs() {
    // Seeds 004: "if the secondary unit boots without detecting the primary unit, then the
    // secondary unit becomes the active unit and uses its own MAC addresses … When the primary
    // unit becomes available, the secondary (active) unit changes the MAC addresses to those of
    // the primary unit."
    let mut s = pair(2);
    s.start(B);
    s.run_for(ms(2 * HOLD));
    assert_eq!(s.state(B), Some(State::Active));
    assert_eq!(s.unit(B).owned_addresses()[0].mac, own_mac(B, 0));
    assert_eq!(
        s.segments[0].neighbours[&"198.18.1.1".parse().unwrap()],
        own_mac(B, 0)
    );
    let t0 = s.now();
    s.start(A);
    s.run_for(ms(2 * HOLD));
    assert_eq!(s.state(B), Some(State::Active));
    assert_eq!(s.state(A), Some(State::StandbyReady));
    assert_eq!(s.unit(B).owned_addresses()[0].mac, own_mac(A, 0));
    assert!(has_event(&s, B, t0, |e| *e
        == Event::AddressesChanged {
            set: AddressSet::Active
        }));
    // Announced with a gratuitous ARP: the client now resolves the active IP to the primary's MAC.
    assert_eq!(
        s.segments[0].neighbours[&"198.18.1.1".parse().unwrap()],
        own_mac(A, 0)
    );
}

#[test]
fn virtual_macs_are_used_when_configured() {
    // Seeds 004, "Virtual MAC Addresses": the active MAC is the same whichever unit is active.
    let vmac = VirtualMac {
        active: Mac([2, 0xa0, 0xc9, 0, 1, 1]),
        standby: Mac([2, 0xa0, 0xc9, 0, 1, 2]),
    };
    let mut s = pair(1);
    for u in [A, B] {
        s.config_mut(u).interfaces[0].virtual_mac = Some(vmac);
    }
    // Even a secondary that boots alone uses the virtual active MAC.
    s.start(B);
    s.run_for(ms(2 * HOLD));
    assert_eq!(s.unit(B).owned_addresses()[0].mac, vmac.active);
    s.start(A);
    s.run_for(ms(2 * HOLD));
    assert_eq!(s.unit(A).owned_addresses()[0].mac, vmac.standby);
    s.kill(B);
    s.run_for(ms(3 * HOLD));
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(s.unit(A).owned_addresses()[0].mac, vmac.active);
}

#[test]
fn standby_never_owns_the_active_addresses() {
    let mut s = running_pair(2);
    let check = |s: &tandem_ha::sim::Sim| {
        for u in [A, B] {
            let Some(st) = s.state(u) else { continue };
            let owned = s.unit(u).owned_addresses();
            if st != State::Active && st != State::Disabled {
                assert!(
                    owned
                        .iter()
                        .all(|o| o.ip.is_none_or(|ip| ip.to_string().ends_with(".2"))),
                    "{st} {owned:?}"
                );
            }
        }
    };
    for step in 0..5 {
        match step {
            0 => s.command(B, |u, now| u.failover_active(now)).expect("ok"),
            1 => s.kill(B),
            2 => s.start(B),
            3 => s.segments[0].ports[A] = Port::NoLink,
            _ => s.segments[0].ports[A] = Port::Up,
        }
        let end = s.now() + ms(5_000);
        while s.now() < end && s.step() {
            check(&s);
        }
    }
}

#[test]
fn takeover_announces_every_owned_address_with_a_burst_of_gratuitous_arps() {
    let mut s = running_pair(2);
    s.kill(A);
    let t0 = s.now();
    // Count what B sends from its takeover on by replaying the unit's outputs: the sim routes them,
    // so observe through the events and the client's neighbour table instead.
    s.run_for(ms(3 * HOLD));
    let take = s
        .first_event(B, t0, |e| *e == Event::TakeOver)
        .expect("took over");
    assert!(take > t0);
    for (i, seg) in s.segments.iter().enumerate() {
        let ip = format!("198.18.{}.1", i + 1).parse().unwrap();
        assert_eq!(seg.neighbours[&ip], own_mac(A, u8::try_from(i).unwrap()));
    }
}

#[test]
fn gratuitous_arp_burst_has_the_configured_count() {
    // Directly on a unit: a standalone unit takes the active addresses at start.
    use tandem_ha::{Config, FailoverLinkConfig, GarpConfig, InterfaceConfig, TimerFloors, Unit};
    let mut cfg = Config::new(
        tandem_ha::Role::Primary,
        FailoverLinkConfig {
            name: "folink".into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
        },
        vec![InterfaceConfig::new(
            "outside",
            own_mac(A, 0),
            "198.18.1.1".parse().unwrap(),
            None,
        )],
    );
    cfg.enabled = false;
    cfg.garp = GarpConfig {
        burst: 3,
        interval: ms(20),
        refresh: Some(ms(60_000)),
    };
    let mut now = Timestamp::ZERO;
    let mut u = Unit::new(cfg, &TimerFloors::SEEDS, now).expect("valid");
    let mut sent = Vec::new();
    // Bounded: the link-state poll wakes the unit every 500 ms.
    for _ in 0..1000 {
        if now > at_ms(61_000) {
            break;
        }
        while let Some(t) = u.poll_transmit() {
            if let Outbound::GratuitousArp { ip, mac } = t.msg {
                assert_eq!(t.link, Link::Data(IfIndex(0)));
                sent.push((now, ip, mac));
            }
        }
        while u.poll_event().is_some() {}
        now = u.poll_timeout().expect("timers");
        u.handle_timeout(now);
    }
    let times: Vec<_> = sent.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(
        &times[..4],
        &[Timestamp::ZERO, at_ms(20), at_ms(40), at_ms(60_040)],
        "burst of 3, then refresh"
    );
    assert!(sent.iter().all(|(_, ip, mac)| *ip
        == "198.18.1.1".parse::<std::net::IpAddr>().unwrap()
        && *mac == own_mac(A, 0)));
}

// ----- show failover / history -----

#[test]
fn show_failover_reports_both_hosts_links_and_timers() {
    let mut s = running_pair(2);
    s.segments[1].ports[B] = Port::NoLink;
    s.run_for(ms(5_000));
    let v = s.unit(A).show();
    assert!(v.failover_enabled);
    assert_eq!(v.this_host.state, State::Active);
    assert_eq!(v.this_host.role, tandem_ha::Role::Primary);
    let other = v.other_host.expect("mate heard");
    assert_eq!(other.state, State::Failed);
    assert_eq!(other.role, tandem_ha::Role::Secondary);
    assert_eq!(other.failed_interfaces, 1);
    assert_eq!(
        other.interfaces[1].status,
        tandem_ha::InterfaceStatus::NoLink
    );
    assert_eq!(other.interfaces[1].ip, Some("198.18.2.2".parse().unwrap()));
    assert_eq!(v.this_host.interfaces[0].name, "if0");
    assert_eq!(
        v.this_host.interfaces[0].status,
        tandem_ha::InterfaceStatus::Normal
    );
    assert_eq!(v.unit_polltime, ms(POLL));
    assert_eq!(v.unit_holdtime, ms(HOLD));
    assert_eq!(v.interface_polltime, ms(1000));
    assert_eq!(v.monitored, 2);
    assert!(v.failover_link.failed.is_none());
    assert!(v.last_failover.is_some_and(|t| t.to == State::Active));
    assert!(v.counters.rx_hello > 0);
}

#[test]
fn history_keeps_every_transition_with_time_and_reason_bounded() {
    let mut s = running_pair(1);
    for round in 0..70 {
        let standby = if round % 2 == 0 { B } else { A };
        s.command(standby, |u, now| u.failover_active(now))
            .expect("ok");
        s.run_for(ms(HOLD));
    }
    let h: Vec<_> = s.unit(A).history().copied().collect();
    assert_eq!(h.len(), HISTORY_LEN);
    assert!(h
        .windows(2)
        .all(|w| w[0].at <= w[1].at && w[0].to == w[1].from));
    assert!(h.iter().all(|t| !t.reason.to_string().is_empty()));
}

#[test]
fn a_mate_restarted_within_a_holdtime_joins_again_and_gets_the_configuration() {
    // A standby restarted faster than the holdtime is never marked failed, and it reaches
    // Standby Ready before its first hello: its hellos look like its previous incarnation's.
    // The failover link's session tells the restart (a new session from the mate); the active
    // then treats the next hello as a join and sends the configuration (seeds 004,
    // "Configuration Synchronization": the active sends its configuration to a unit that
    // boots).
    let mut s = running_pair(2);
    let t0 = s.now();
    s.run_for(ms(3 * POLL));
    assert!(
        !has_event(&s, A, t0, |e| *e == Event::MateJoined),
        "steady hellos are no join"
    );
    let t1 = s.now();
    s.command(A, |u, _| u.handle_mate_restarted());
    s.run_for(ms(3 * POLL));
    let joins = s
        .events(A)
        .iter()
        .filter(|(at, e)| *at >= t1 && *e == Event::MateJoined)
        .count();
    assert_eq!(joins, 1, "one join for one restart\n{}", dump(&s));
    assert_eq!(s.state(A), Some(State::Active));
    assert_eq!(s.state(B), Some(State::StandbyReady));
}
