//! Session establishment, rejection, restart and rekey, in simulated time (sans-IO): two links
//! back to back through `testutil::LinkPair`, each behaviour one named test.

use core::time::Duration;

use tandem_link::testutil::{Dir, FakeNonces, LinkPair};
use tandem_link::wire::{self, HelloPacket, FLAG_CONFIRMED};
use tandem_link::{
    CleartextAck, DropReason, EstablishCause, Event, EventKind, FailoverKey, IfName, LinkConfig,
    LinkKind, Protection, Received, RejectReason, SealError, SecureLink, Security,
};

fn key(s: &str) -> Security {
    Security::Encrypted(FailoverKey::parse(s).unwrap())
}

fn clear() -> Security {
    Security::Cleartext(CleartextAck::acknowledge(|_| {}))
}

fn cfg() -> LinkConfig {
    LinkConfig::new(LinkKind::Failover, IfName::new("fo0").unwrap())
}

fn events(link: &mut SecureLink<FakeNonces>) -> Vec<Event> {
    std::iter::from_fn(|| link.poll_event()).collect()
}

/// The key of `established_pair`.
fn psk() -> Security {
    key("hex 000102030405060708090a0b0c0d0e0f")
}

fn established_pair(seed_a: u64, seed_b: u64) -> LinkPair {
    let s = psk();
    let mut p = LinkPair::new(cfg(), &s, &s, seed_a, seed_b);
    p.exchange();
    assert!(p.a.is_established() && p.b.is_established());
    events(&mut p.a);
    events(&mut p.b);
    p
}

fn first_cause(link: &mut SecureLink<FakeNonces>) -> Option<EstablishCause> {
    events(link).into_iter().find_map(|e| match e.kind {
        EventKind::Established { cause, .. } => Some(cause),
        _ => None,
    })
}

#[test]
fn units_with_the_same_key_agree_on_one_session_in_three_hellos() {
    for seed in 0..32 {
        let s = key("same-secret");
        let mut p = LinkPair::new(cfg(), &s, &s, seed, seed + 1000);
        assert!(!p.a.is_established() && !p.b.is_established());
        let sent = p.exchange();
        assert_eq!(sent, 3, "seed {seed}");
        assert_eq!(p.a.session_id(), p.b.session_id());
        assert!(p.a.session_id().is_some());
        for link in [&mut p.a, &mut p.b] {
            let ev = events(link);
            assert_eq!(ev.len(), 1);
            assert!(matches!(
                ev[0].kind,
                EventKind::Established {
                    cause: EstablishCause::First,
                    protection: Protection::Aes256Gcm,
                    ..
                }
            ));
            assert!(!link.is_handshaking());
            assert_eq!(link.poll_timeout(), None, "no timer once established");
        }
        let f = p.seal(Dir::AtoB, b"hello mate").unwrap();
        assert_eq!(p.deliver(Dir::AtoB, &f).unwrap(), b"hello mate");
        let f = p.seal(Dir::BtoA, b"hello back").unwrap();
        assert_eq!(p.deliver(Dir::BtoA, &f).unwrap(), b"hello back");
    }
}

#[test]
fn simultaneous_first_hellos_converge_on_one_session() {
    let s = key("same-secret");
    let mut p = LinkPair::new(cfg(), &s, &s, 7, 8);
    let (mut ba, mut bb) = ([0u8; 256], [0u8; 256]);
    // Both first hellos are on the wire before either arrives.
    let na = p.a.poll_transmit(p.now, &mut ba).unwrap();
    let nb = p.b.poll_transmit(p.now, &mut bb).unwrap();
    assert_eq!(p.b.handle_frame(p.now, &mut ba[..na]), Received::Handshake);
    assert_eq!(p.a.handle_frame(p.now, &mut bb[..nb]), Received::Handshake);
    p.exchange();
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(p.a.session_id(), p.b.session_id());
}

#[test]
fn lost_hellos_are_retransmitted_with_backoff_until_the_session_is_up() {
    let s = key("same-secret");
    let mut p = LinkPair::new(cfg(), &s, &s, 1, 2);
    // The wire loses everything for a while.
    p.exchange_filtered(|_, _| false);
    let mut retransmit_times = Vec::new();
    for _ in 0..5 {
        retransmit_times.push(p.a.poll_timeout().unwrap());
        p.now = p.a.poll_timeout().unwrap();
        p.a.handle_timeout(p.now);
        p.b.handle_timeout(p.now);
        p.exchange_filtered(|_, _| false);
    }
    let gaps: Vec<_> = retransmit_times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [200, 400, 800, 1000].map(Duration::from_millis),
        "doubling, capped at handshake_retransmit_max"
    );
    assert!(!p.a.is_established());
    // The wire heals: the next retransmission completes the handshake.
    for _ in 0..4 {
        p.step_timer();
    }
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(p.a.session_id(), p.b.session_id());
}

#[test]
fn lost_confirmation_is_recovered_by_retransmission() {
    let s = key("same-secret");
    let mut p = LinkPair::new(cfg(), &s, &s, 1, 2);
    // Drop every hello that carries CONFIRMED (the third message).
    p.exchange_filtered(|_, h| HelloPacket::new_unchecked(h).flags() & FLAG_CONFIRMED == 0);
    assert!(
        p.a.is_established() != p.b.is_established(),
        "one side is waiting"
    );
    p.step_timer();
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(p.a.session_id(), p.b.session_id());
}

#[test]
fn a_data_frame_of_the_new_session_confirms_it_implicitly() {
    let s = key("same-secret");
    let mut p = LinkPair::new(cfg(), &s, &s, 1, 2);
    p.exchange_filtered(|_, h| HelloPacket::new_unchecked(h).flags() & FLAG_CONFIRMED == 0);
    let (sender, dir) = if p.a.is_established() {
        (&p.a, Dir::AtoB)
    } else {
        (&p.b, Dir::BtoA)
    };
    assert!(sender.is_established());
    let f = p.seal(dir, b"first record").unwrap();
    assert_eq!(p.deliver(dir, &f).unwrap(), b"first record");
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(p.a.session_id(), p.b.session_id());
}

#[test]
fn mate_with_a_different_key_is_rejected_with_an_event_and_never_trusted() {
    let mut p = LinkPair::new(cfg(), &key("key-one"), &key("key-two"), 1, 2);
    for _ in 0..10 {
        p.exchange();
        p.step_timer();
    }
    assert!(!p.a.is_established() && !p.b.is_established());
    for link in [&mut p.a, &mut p.b] {
        let ev = events(link);
        assert_eq!(
            ev.len(),
            1,
            "one report per interval, not one per hello: {ev:?}"
        );
        assert!(matches!(
            ev[0].kind,
            EventKind::Rejected {
                reason: RejectReason::AuthenticationFailed,
                count: 1
            }
        ));
        let line = ev[0].to_string();
        assert!(
            line.starts_with("mate at fo0 rejected (failover link): authentication failed — failover keys differ?"),
            "{line}"
        );
        assert!(link.counters().drop_auth_failed >= 3);
        assert_eq!(link.counters().rx_hello, 0);
        assert!(matches!(
            link.seal(Duration::ZERO, 1, &mut [0u8; 64]),
            Err(SealError::NoSession { .. })
        ));
    }
    // After the report interval the count of the rejections in between is reported.
    let before = p.a.counters().drop_auth_failed;
    p.now += Duration::from_secs(10);
    p.a.handle_timeout(p.now);
    p.b.handle_timeout(p.now);
    p.exchange();
    let ev = events(&mut p.a);
    let EventKind::Rejected { count, .. } = ev[0].kind else {
        panic!("{ev:?}")
    };
    assert!(p.a.counters().drop_auth_failed > before);
    assert_eq!(
        count,
        p.a.counters().drop_auth_failed - 1,
        "all since the first report"
    );
}

#[test]
fn wrong_key_data_frames_fail_authentication() {
    // Two pairs that completed handshakes with different keys but (same seeds) the same nonces:
    // a frame of one is refused by the other.
    let s1 = key("key-one");
    let s2 = key("key-two");
    let mut p1 = LinkPair::new(cfg(), &s1, &s1, 1, 2);
    let mut p2 = LinkPair::new(cfg(), &s2, &s2, 1, 2);
    p1.exchange();
    p2.exchange();
    let f = p1.seal(Dir::AtoB, b"secret config").unwrap();
    let r = p2.deliver(Dir::AtoB, &f).unwrap_err();
    assert!(
        matches!(
            r,
            Received::Dropped(DropReason::UnknownSession | DropReason::DecryptFailed)
        ),
        "{r:?}"
    );
}

#[test]
fn clear_text_mate_is_rejected_by_a_unit_with_a_key_and_vice_versa() {
    let mut p = LinkPair::new(cfg(), &key("k"), &clear(), 1, 2);
    p.exchange();
    assert!(!p.a.is_established() && !p.b.is_established());
    let ea = events(&mut p.a);
    let eb = events(&mut p.b);
    assert!(matches!(
        ea[0].kind,
        EventKind::Rejected {
            reason: RejectReason::MateCleartext,
            ..
        }
    ));
    assert!(matches!(
        eb[0].kind,
        EventKind::Rejected {
            reason: RejectReason::MateEncrypted,
            ..
        }
    ));
    assert!(ea[0]
        .to_string()
        .contains("configure the same key on both units"));
    assert_eq!(p.a.counters().drop_protection_mismatch, 1);
}

#[test]
fn restarted_mate_gets_a_new_session_and_frames_of_the_old_one_are_refused() {
    let s = psk();
    let mut p = established_pair(1, 2);
    let old = p.a.session_id();
    let old_from_b: Vec<_> = (0..4)
        .map(|i| p.seal(Dir::BtoA, &[i; 10]).unwrap())
        .collect();
    p.deliver(Dir::BtoA, &old_from_b[0]).unwrap();
    let old_from_a = p.seal(Dir::AtoB, b"to the old b").unwrap();

    // B restarts: a new process, new nonces, no memory of the session.
    p.b = SecureLink::new(cfg(), &s, FakeNonces::new(99), p.now).unwrap();
    p.exchange();
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(p.a.session_id(), p.b.session_id());
    assert_ne!(p.a.session_id(), old);
    assert_eq!(first_cause(&mut p.a), Some(EstablishCause::MateRestarted));
    assert_eq!(first_cause(&mut p.b), Some(EstablishCause::First));

    // Frames sealed by the old B (never delivered, or replayed) are refused by A.
    for f in &old_from_b {
        assert_eq!(
            p.deliver(Dir::BtoA, f),
            Err(Received::Dropped(DropReason::UnknownSession))
        );
    }
    // And the new B refuses what A sealed for the old B.
    assert_eq!(
        p.deliver(Dir::AtoB, &old_from_a),
        Err(Received::Dropped(DropReason::UnknownSession))
    );
    // The new session carries data both ways, sequence numbers from 0.
    let f = p.seal(Dir::BtoA, b"new b").unwrap();
    assert_eq!(p.deliver(Dir::BtoA, &f).unwrap(), b"new b");
    let f = p.seal(Dir::AtoB, b"new a").unwrap();
    let mut buf = f.clone();
    let Received::Data(o) = p.b.handle_frame(p.now, &mut buf) else {
        panic!()
    };
    assert_eq!((o.seq, Some(o.session)), (0, p.a.session_id()));
}

#[test]
fn restarted_unit_with_a_session_running_on_the_mate_recovers_when_its_first_hello_is_lost() {
    let s = psk();
    let mut p = established_pair(1, 2);
    p.b = SecureLink::new(cfg(), &s, FakeNonces::new(50), p.now).unwrap();
    // B's first hello is lost; A keeps its (now dead) session.
    p.exchange_filtered(|_, _| false);
    assert!(p.a.is_established() && !p.b.is_established());
    // A's frames to the new B are refused until the handshake completes.
    let f = p.seal(Dir::AtoB, b"x").unwrap();
    assert_eq!(
        p.deliver(Dir::AtoB, &f),
        Err(Received::Dropped(DropReason::UnknownSession))
    );
    p.step_timer();
    assert!(p.b.is_established());
    assert_eq!(p.a.session_id(), p.b.session_id());
}

#[test]
fn replayed_hellos_of_an_older_session_neither_establish_nor_disturb_the_running_one() {
    let s = psk();
    let mut p = established_pair(1, 2);
    let recorded = p.hellos.clone();
    // Both units restart; a new session runs.
    p.a = SecureLink::new(cfg(), &s, FakeNonces::new(11), p.now).unwrap();
    p.b = SecureLink::new(cfg(), &s, FakeNonces::new(12), p.now).unwrap();
    p.exchange();
    let running = p.a.session_id();
    assert!(running.is_some() && running == p.b.session_id());
    events(&mut p.a);
    events(&mut p.b);
    let hellos_before = p.hellos.len();

    // An attacker replays every recorded hello of the old session to both units.
    let mut buf = [0u8; 256];
    for (_, h) in &recorded {
        for link in [&mut p.a, &mut p.b] {
            buf[..h.len()].copy_from_slice(h);
            link.handle_frame(p.now, &mut buf[..h.len()]);
        }
    }
    // Whatever the units answer, the session stays; data keeps flowing.
    p.exchange();
    assert_eq!(p.a.session_id(), running);
    assert_eq!(p.b.session_id(), running);
    let f = p.seal(Dir::AtoB, b"still here").unwrap();
    assert_eq!(p.deliver(Dir::AtoB, &f).unwrap(), b"still here");
    // Probes started by the replayed hellos are answered by nobody and expire.
    for _ in 0..20 {
        if !p.step_timer() {
            break;
        }
    }
    assert!(!p.a.is_handshaking() && !p.b.is_handshaking());
    assert_eq!(p.a.session_id(), running);
    assert!(p.a.counters().probes_abandoned + p.b.counters().probes_abandoned >= 1);
    assert!(p.a.counters().drop_stale_hello + p.b.counters().drop_stale_hello >= 1);
    assert!(events(&mut p.a).is_empty() && events(&mut p.b).is_empty());
    assert!(p.hellos.len() > hellos_before);
}

#[test]
fn a_hello_reflected_back_is_refused() {
    let s = key("same-secret");
    let mut link = SecureLink::new(cfg(), &s, FakeNonces::new(1), Duration::ZERO).unwrap();
    let mut buf = [0u8; 256];
    let n = link.poll_transmit(Duration::ZERO, &mut buf).unwrap();
    assert_eq!(
        link.handle_frame(Duration::ZERO, &mut buf[..n]),
        Received::Dropped(DropReason::Reflected)
    );
    assert!(!link.is_established());
}

#[test]
fn rekey_after_frames_starts_a_new_session_and_sealing_stops_at_twice_the_limit() {
    let s = key("same-secret");
    let mut c = cfg();
    c.rekey_after_frames = 4;
    let mut p = LinkPair::new(c, &s, &s, 1, 2);
    p.exchange();
    events(&mut p.a);
    events(&mut p.b);
    let first = p.a.session_id();
    let mut old_frames = Vec::new();
    for i in 0..8u8 {
        let f = p.seal(Dir::AtoB, &[i]).unwrap();
        // Frames 6 and 7 are still in flight when the rekey completes.
        if i < 6 {
            assert_eq!(p.deliver(Dir::AtoB, &f).unwrap(), [i]);
        }
        old_frames.push(f);
        assert_eq!(
            p.a.is_handshaking(),
            i >= 3,
            "rekey handshake starts at frame 4"
        );
    }
    // The new handshake has not run (no exchange): the session is used up.
    assert!(matches!(
        p.seal(Dir::AtoB, b"x"),
        Err(SealError::RekeyPending { .. })
    ));
    p.exchange();
    assert_ne!(p.a.session_id(), first);
    assert_eq!(p.a.session_id(), p.b.session_id());
    assert_eq!(first_cause(&mut p.a), Some(EstablishCause::Rekeyed));
    assert_eq!(first_cause(&mut p.b), Some(EstablishCause::Rekeyed));
    assert_eq!(p.a.next_seq(), Some(0));
    let f = p.seal(Dir::AtoB, b"after rekey").unwrap();
    assert_eq!(p.deliver(Dir::AtoB, &f).unwrap(), b"after rekey");
    // Within the grace period the old session's in-flight frames are accepted, once.
    assert_eq!(p.deliver(Dir::AtoB, &old_frames[6]).unwrap(), [6]);
    assert_eq!(
        p.deliver(Dir::AtoB, &old_frames[0]),
        Err(Received::Dropped(DropReason::Duplicate))
    );
    // After it, the old session is gone.
    p.now += c.rekey_grace;
    assert_eq!(p.b.poll_timeout(), Some(p.now), "grace end is a timer");
    p.b.handle_timeout(p.now);
    assert_eq!(p.b.poll_timeout(), None);
    assert_eq!(
        p.deliver(Dir::AtoB, &old_frames[7]),
        Err(Received::Dropped(DropReason::UnknownSession))
    );
    assert_eq!(p.a.counters().rekeys, 1);
}

#[test]
fn rekey_after_bytes_follows_the_aes_gcm_usage_limit() {
    let s = key("same-secret");
    let mut c = cfg();
    c.rekey_after_bytes = 100;
    let mut p = LinkPair::new(c, &s, &s, 1, 2);
    p.exchange();
    p.seal(Dir::AtoB, &[0; 60]).unwrap();
    assert!(!p.a.is_handshaking());
    p.seal(Dir::AtoB, &[0; 60]).unwrap();
    assert!(p.a.is_handshaking(), "120 bytes ≥ 100: rekey starts");
    p.seal(Dir::AtoB, &[0; 60]).unwrap();
    assert!(matches!(
        p.seal(Dir::AtoB, &[0; 60]),
        Err(SealError::RekeyPending { .. })
    ));
    p.exchange();
    p.seal(Dir::AtoB, &[0; 60]).unwrap();
}

#[test]
fn too_many_forgeries_start_a_rekey() {
    let s = key("same-secret");
    let mut c = cfg();
    c.rekey_after_forgeries = 3;
    let mut p = LinkPair::new(c, &s, &s, 1, 2);
    p.exchange();
    let first = p.b.session_id();
    let f = p.seal(Dir::AtoB, b"payload").unwrap();
    for i in 0..3 {
        let mut forged = f.clone();
        forged[wire::DATA_HEADER_LEN] ^= 1 << i;
        assert_eq!(
            p.deliver(Dir::AtoB, &forged),
            Err(Received::Dropped(DropReason::DecryptFailed))
        );
    }
    assert!(p.b.is_handshaking());
    p.exchange();
    assert_ne!(p.b.session_id(), first);
    assert_eq!(p.a.session_id(), p.b.session_id());
}

#[test]
fn frames_of_the_other_link_are_refused_and_reported() {
    let s = key("same-secret");
    let state_cfg = LinkConfig::new(LinkKind::State, IfName::new("fo0").unwrap());
    let mut fo = LinkPair::new(cfg(), &s, &s, 1, 2);
    let mut st = LinkPair::new(state_cfg, &s, &s, 1, 2);
    fo.exchange();
    st.exchange();
    events(&mut fo.b);
    // Same key, same nonces, different link: different session, different keys.
    assert_ne!(fo.a.session_id(), st.a.session_id());
    let f = st.seal(Dir::AtoB, b"conn record").unwrap();
    assert_eq!(
        fo.deliver(Dir::AtoB, &f),
        Err(Received::Dropped(DropReason::WrongLink))
    );
    // Relabelled as a failover-link frame it still fails (other session, other keys).
    let mut relabelled = f.clone();
    relabelled[2] = LinkKind::Failover as u8;
    assert_eq!(
        fo.deliver(Dir::AtoB, &relabelled),
        Err(Received::Dropped(DropReason::UnknownSession))
    );
    let ev = events(&mut fo.b);
    assert!(matches!(
        ev[0].kind,
        EventKind::Rejected {
            reason: RejectReason::WrongLink(LinkKind::State),
            ..
        }
    ));
}

#[test]
fn another_protocol_version_is_reported() {
    let mut p = established_pair(1, 2);
    let mut f = p.seal(Dir::AtoB, b"x").unwrap();
    f[0] = 2;
    assert_eq!(
        p.deliver(Dir::AtoB, &f),
        Err(Received::Dropped(DropReason::Version))
    );
    let ev = events(&mut p.b);
    assert!(
        ev[0].to_string().contains("secure-link version 2"),
        "{}",
        ev[0]
    );
}

#[test]
fn clear_text_mode_round_trips_with_sequence_numbers_and_no_tag() {
    let s = clear();
    let mut p = LinkPair::new(cfg(), &s, &s, 1, 2);
    p.exchange();
    assert!(p.a.is_established() && p.b.is_established());
    let ev = events(&mut p.a);
    assert!(
        ev[0].to_string().contains("CLEAR TEXT, no failover key"),
        "{}",
        ev[0]
    );
    assert_eq!(p.a.overhead(), wire::DATA_HEADER_LEN);
    for i in 0..5u64 {
        let f = p.seal(Dir::AtoB, b"plain").unwrap();
        assert_eq!(f.len(), wire::DATA_HEADER_LEN + 5);
        assert_eq!(&f[wire::DATA_HEADER_LEN..], b"plain", "no encryption");
        let mut buf = f.clone();
        let Received::Data(o) = p.b.handle_frame(p.now, &mut buf) else {
            panic!()
        };
        assert_eq!(o.seq, i, "sequence numbers for gap detection");
        // Duplicates are still caught.
        assert_eq!(
            p.deliver(Dir::AtoB, &f),
            Err(Received::Dropped(DropReason::Duplicate))
        );
    }
    // A restart still yields a new session, so stale frames are told apart.
    let old = p.seal(Dir::AtoB, b"old").unwrap();
    p.a = SecureLink::new(cfg(), &s, FakeNonces::new(3), p.now).unwrap();
    p.exchange();
    assert_eq!(
        p.deliver(Dir::AtoB, &old),
        Err(Received::Dropped(DropReason::UnknownSession))
    );
}

#[test]
fn sealing_needs_a_session_and_room() {
    let s = key("k");
    let mut link = SecureLink::new(cfg(), &s, FakeNonces::new(1), Duration::ZERO).unwrap();
    let e = link.seal(Duration::ZERO, 4, &mut [0u8; 64]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failover link fo0: no session with the mate yet (handshake not complete)"
    );
    let mut p = established_pair(1, 2);
    let e = p.a.seal(p.now, 100, &mut [0u8; 100]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failover link fo0: buffer of 100 bytes cannot hold a 136-byte frame"
    );
    let e = p.a.seal(p.now, 70_000, &mut vec![0u8; 80_000]).unwrap_err();
    assert!(matches!(e, SealError::PayloadTooLong { len: 70_000, .. }));
}

#[test]
fn config_is_validated() {
    let s = key("k");
    let mut c = cfg();
    c.rekey_after_frames = 0;
    assert!(SecureLink::new(c, &s, FakeNonces::new(1), Duration::ZERO).is_err());
    let mut c = cfg();
    c.handshake_retransmit = Duration::ZERO;
    assert!(SecureLink::new(c, &s, FakeNonces::new(1), Duration::ZERO).is_err());
    assert!(IfName::new("").is_err());
    assert!(IfName::new("sixteen-chars-xx").is_err());
    assert!(IfName::new("bad name").is_err());
    assert_eq!(IfName::new("fo0.100").unwrap().as_str(), "fo0.100");
}
