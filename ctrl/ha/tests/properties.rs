//! Property tests on one unit fed arbitrary inputs (any message from a confused or hostile mate,
//! link flaps, traffic, commands, time jumps): it never panics, never asks to be woken in the
//! past, keeps its history bounded, and never owns addresses its state does not allow.

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use tandem_ha::sim::config;
use tandem_ha::{
    AddressSet, Control, Hello, IfIndex, InterfaceReport, InterfaceStatus, InterfaceTimers,
    LanTest, LanTestKind, Link, LinkState, Mac, Message, Role, State, TimerFloors, Timestamp, Unit,
    UnitTimers, HISTORY_LEN,
};

#[derive(Clone, Debug)]
enum Input {
    Advance(u64),
    Msg(Link, Message),
    LinkChange(Link, LinkState),
    Traffic(u16),
    Command(u8),
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Disabled),
        Just(State::Negotiation),
        Just(State::Active),
        Just(State::StandbyReady),
        Just(State::Failed),
        Just(State::PseudoStandby),
    ]
}

fn status() -> impl Strategy<Value = InterfaceStatus> {
    prop_oneof![
        Just(InterfaceStatus::Unknown),
        Just(InterfaceStatus::Normal),
        Just(InterfaceStatus::Testing),
        Just(InterfaceStatus::LinkDown),
        Just(InterfaceStatus::NoLink),
        Just(InterfaceStatus::Failed),
    ]
}

fn link() -> impl Strategy<Value = Link> {
    prop_oneof![
        Just(Link::Failover),
        Just(Link::State),
        (0u16..5).prop_map(|i| Link::Data(IfIndex(i))),
    ]
}

fn link_state() -> impl Strategy<Value = LinkState> {
    prop_oneof![
        Just(LinkState::Up),
        Just(LinkState::NoLink),
        Just(LinkState::AdminDown)
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let report = (
        status(),
        any::<bool>(),
        proptest::option::of(0u64..10_000_000_000),
    )
        .prop_map(|(status, counts_failed, age)| InterfaceReport {
            status,
            counts_failed,
            rx_age: age.map(Duration::from_nanos),
        });
    let hello = (
        any::<bool>(),
        state(),
        any::<bool>(),
        0u64..6,
        any::<[u8; 6]>(),
        proptest::collection::vec(any::<[u8; 6]>().prop_map(Mac), 0..6),
        proptest::collection::vec(report, 0..6),
    )
        .prop_map(
            |(primary, state, failover_enabled, term, fmac, macs, interfaces)| {
                Message::Hello(Hello {
                    role: if primary {
                        Role::Primary
                    } else {
                        Role::Secondary
                    },
                    state,
                    failover_enabled,
                    term,
                    failover_mac: Mac(fmac),
                    macs,
                    interfaces,
                })
            },
        );
    prop_oneof![
        4 => hello,
        1 => (any::<bool>(), 0u32..4).prop_map(|(req, nonce)| Message::LanTest(LanTest {
            kind: if req { LanTestKind::Request } else { LanTestKind::Reply },
            nonce,
        })),
        1 => (0u16..5).prop_map(|i| Message::InterfaceHello(tandem_ha::InterfaceHello { iface: IfIndex(i) })),
        1 => prop_oneof![Just(Control::TakeOver), Just(Control::Reset)].prop_map(Message::Control),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0u64..2_000_000_000).prop_map(Input::Advance),
        4 => (link(), message()).prop_map(|(l, m)| Input::Msg(l, m)),
        1 => (link(), link_state()).prop_map(|(l, s)| Input::LinkChange(l, s)),
        1 => (0u16..5).prop_map(Input::Traffic),
        1 => (0u8..5).prop_map(Input::Command),
    ]
}

fn check(u: &Unit, now: Timestamp) {
    if let Some(t) = u.poll_timeout() {
        assert!(
            t > now,
            "after handle_timeout the next timeout {t} is not after now {now}"
        );
    }
    assert!(u.history().count() <= HISTORY_LEN);
    let owned = u.owned_addresses();
    let cfg = u.config();
    match u.address_set() {
        AddressSet::None => assert!(owned.is_empty()),
        AddressSet::Standby => {
            // A standby never answers for an active address.
            let active: Vec<IpAddr> = cfg.interfaces.iter().map(|i| i.active_ip).collect();
            assert!(owned
                .iter()
                .all(|o| o.ip.is_none_or(|ip| !active.contains(&ip))));
        }
        AddressSet::Active => assert!(matches!(u.state(), State::Active | State::Disabled)),
    }
    let v = u.show();
    assert_eq!(v.this_host.state, u.state());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn unit_never_panics_and_keeps_its_invariants(
        role in prop_oneof![Just(Role::Primary), Just(Role::Secondary)],
        enabled in any::<bool>(),
        inputs in proptest::collection::vec(input(), 1..200),
    ) {
        let mut cfg = config(
            role,
            UnitTimers { polltime: Duration::from_millis(200), holdtime: Duration::from_millis(800) },
            InterfaceTimers { polltime: Duration::from_millis(500), holdtime: Duration::from_secs(5) },
            3,
        );
        cfg.enabled = enabled;
        let mut now = Timestamp::ZERO;
        let mut u = Unit::new(cfg, &TimerFloors::SEEDS, now).expect("valid");
        for i in inputs {
            match i {
                Input::Advance(ns) => {
                    let target = now + Duration::from_nanos(ns);
                    // Run every timeout on the way, as a driver does (bounded).
                    for _ in 0..10_000 {
                        match u.poll_timeout() {
                            Some(t) if t <= target => {
                                now = now.max(t);
                                u.handle_timeout(now);
                                check(&u, now);
                            }
                            _ => break,
                        }
                    }
                    now = target;
                }
                Input::Msg(l, m) => u.handle_message(now, l, &m),
                Input::LinkChange(l, s) => u.handle_link_change(now, l, s),
                Input::Traffic(i) => u.handle_traffic_seen(now, IfIndex(i)),
                Input::Command(c) => {
                    let _ = match c {
                        0 => u.failover_active(now),
                        1 => u.no_failover_active(now),
                        2 => u.failover_reset(now),
                        3 => { u.disable(now); Ok(()) }
                        _ => { u.enable(now); Ok(()) }
                    };
                }
            }
            while u.poll_transmit().is_some() {}
            while let Some(e) = u.poll_event() {
                // Every event renders a log line.
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Fault {
    Wait(u64),
    Kill(usize),
    Start(usize),
    FailoverWire(bool),
    FailoverCarrier(bool),
    DropHellos(bool),
    Port(usize, usize, u8),
    Command(usize, u8),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => (0u64..3_000).prop_map(Fault::Wait),
        1 => (0usize..2).prop_map(Fault::Kill),
        1 => (0usize..2).prop_map(Fault::Start),
        1 => any::<bool>().prop_map(Fault::FailoverWire),
        1 => any::<bool>().prop_map(Fault::FailoverCarrier),
        1 => any::<bool>().prop_map(Fault::DropHellos),
        2 => (0usize..2, 0usize..2, 0u8..4).prop_map(|(u, i, p)| Fault::Port(u, i, p)),
        2 => (0usize..2, 0u8..5).prop_map(|(u, c)| Fault::Command(u, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever happened, once every fault is repaired the pair settles with exactly one active
    /// unit and the other standby ready.
    #[test]
    fn pair_converges_to_one_active_and_one_standby_after_any_faults(
        seed in any::<u64>(),
        faults in proptest::collection::vec(fault(), 0..40),
    ) {
        use tandem_ha::sim::{Port, Sim};
        let ms = Duration::from_millis;
        let mut s = Sim::pair(UnitTimers { polltime: ms(200), holdtime: ms(800) }, 2, seed);
        s.start(0);
        s.start(1);
        for f in faults {
            match f {
                Fault::Wait(n) => s.run_for(ms(n)),
                Fault::Kill(u) => s.kill(u),
                Fault::Start(u) => if !s.alive(u) { s.start(u) },
                Fault::FailoverWire(up) => s.failover.up = up,
                Fault::FailoverCarrier(up) => s.failover_carrier = up,
                Fault::DropHellos(d) => s.drop_hellos = d,
                Fault::Port(u, i, p) => s.segments[i].ports[u] = [Port::Up, Port::Isolated, Port::NoLink, Port::AdminDown][usize::from(p)],
                Fault::Command(u, c) => if s.alive(u) {
                    let _ = s.command(u, |unit, now| match c {
                        0 => unit.failover_active(now),
                        1 => unit.no_failover_active(now),
                        2 => unit.failover_reset(now),
                        3 => { unit.disable(now); Ok(()) }
                        _ => { unit.enable(now); Ok(()) }
                    });
                },
            }
        }
        // Repair everything.
        s.failover.up = true;
        s.failover_carrier = true;
        s.drop_hellos = false;
        for seg in &mut s.segments {
            seg.ports = [Port::Up; 2];
        }
        for u in 0..2 {
            if !s.alive(u) {
                s.start(u);
            }
            s.command(u, |unit, now| unit.enable(now));
        }
        s.run_for(ms(10_000));
        for u in 0..2 {
            let _ = s.command(u, |unit, now| unit.failover_reset(now));
        }
        s.run_for(ms(10_000));
        let mut states = [s.state(0), s.state(1)];
        states.sort_by_key(|st| format!("{st:?}"));
        prop_assert_eq!(
            states,
            [Some(State::Active), Some(State::StandbyReady)],
            "{:?}", s.transitions(0).iter().chain(s.transitions(1).iter()).map(|t| t.to_string()).collect::<Vec<_>>()
        );
    }
}
