//! Property tests: Repr round trips, seal/open round trips, tampering with any bit, and the
//! replay window against a simple model (directly and end to end through sealed frames).

use std::collections::BTreeSet;

use proptest::prelude::*;
use tandem_link::replay::{ReplayError, ReplayWindow, WINDOW};
use tandem_link::testutil::{Dir, LinkPair};
use tandem_link::wire::{
    DataPacket, DataRepr, HelloPacket, HelloRepr, LinkKind, Protection, DATA_HEADER_LEN,
};
use tandem_link::{CleartextAck, DropReason, FailoverKey, IfName, LinkConfig, Received, Security};

fn security(encrypted: bool) -> Security {
    if encrypted {
        Security::Encrypted(FailoverKey::parse("property-test-key").unwrap())
    } else {
        Security::Cleartext(CleartextAck::acknowledge(|_| {}))
    }
}

fn pair(encrypted: bool, seed_a: u64, seed_b: u64) -> LinkPair {
    let s = security(encrypted);
    let cfg = LinkConfig::new(LinkKind::Failover, IfName::new("fo0").unwrap());
    let mut p = LinkPair::new(cfg, &s, &s, seed_a, seed_b);
    p.exchange();
    assert!(p.a.is_established() && p.b.is_established());
    p
}

fn link_kind() -> impl Strategy<Value = LinkKind> {
    prop_oneof![Just(LinkKind::Failover), Just(LinkKind::State)]
}

fn protection() -> impl Strategy<Value = Protection> {
    prop_oneof![Just(Protection::Cleartext), Just(Protection::Aes256Gcm)]
}

/// The replay rule, written the obvious way: accept what is above everything seen, or inside the
/// window and new.
#[derive(Default)]
struct Model {
    top: u64,
    seen: BTreeSet<u64>,
}

impl Model {
    fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq > self.top {
            Ok(())
        } else if self.top - seq >= WINDOW {
            Err(ReplayError::TooOld)
        } else if self.seen.contains(&seq) {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        self.top = self.top.max(seq);
        self.seen.insert(seq);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn data_repr_round_trips(
        link in link_kind(),
        protection in protection(),
        session in any::<u32>(),
        seq in any::<u64>(),
        payload_len in 0u16..2000,
        slack in 0usize..8,
    ) {
        let repr = DataRepr { link, protection, session, seq, payload_len };
        let mut buf = vec![0u8; repr.buffer_len() + slack];
        repr.emit(&mut buf).unwrap();
        let p = DataPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(DataRepr::parse(&p), Ok(repr));
        prop_assert_eq!(p.frame_len(), repr.buffer_len());
        prop_assert_eq!(p.payload().len(), usize::from(payload_len));
        prop_assert_eq!(p.tag().len(), protection.tag_len());
        // One byte short of the frame: refused.
        if slack == 0 {
            prop_assert!(DataPacket::new_checked(&buf[..buf.len() - 1]).is_err());
        }
        // emit into a short buffer fails instead of panicking.
        prop_assert!(repr.emit(&mut vec![0u8; repr.buffer_len() - 1]).is_err());
    }

    #[test]
    fn hello_repr_round_trips(
        link in link_kind(),
        protection in protection(),
        nonce in any::<[u8; 32]>(),
        echo in proptest::option::of(any::<[u8; 32]>()),
        confirmed in any::<bool>(),
        rekey in any::<bool>(),
    ) {
        let repr = HelloRepr { link, protection, nonce, echo, confirmed, rekey };
        let mut buf = [0u8; 104];
        repr.emit(&mut buf).unwrap();
        let p = HelloPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(HelloRepr::parse(&p), Ok(repr));
        prop_assert!(HelloPacket::new_checked(&buf[..103]).is_err());
        prop_assert!(repr.emit(&mut [0u8; 103]).is_err());
    }

    #[test]
    fn sealed_payloads_open_to_the_same_bytes(
        encrypted in any::<bool>(),
        seeds in (any::<u64>(), any::<u64>()),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1500), 1..6),
        b_to_a in any::<bool>(),
        padding in 0usize..40,
    ) {
        prop_assume!(seeds.0 != seeds.1);
        let mut p = pair(encrypted, seeds.0, seeds.1);
        let dir = if b_to_a { Dir::BtoA } else { Dir::AtoB };
        for (i, payload) in payloads.iter().enumerate() {
            let mut frame = p.seal(dir, payload).unwrap();
            let overhead = DATA_HEADER_LEN + if encrypted { 16 } else { 0 };
            prop_assert_eq!(frame.len(), payload.len() + overhead);
            if encrypted && payload.len() >= 16 {
                prop_assert_ne!(&frame[DATA_HEADER_LEN..DATA_HEADER_LEN + payload.len()], &payload[..]);
            }
            // Trailing bytes from the transport (e.g. Ethernet padding) are not part of it.
            frame.extend(std::iter::repeat_n(0u8, padding));
            let receiver = if b_to_a { &mut p.a } else { &mut p.b };
            let mut buf = frame.clone();
            let Received::Data(o) = receiver.handle_frame(p.now, &mut buf) else {
                return Err(TestCaseError::fail("refused"));
            };
            prop_assert_eq!(&buf[o.payload.clone()], &payload[..]);
            prop_assert_eq!(o.seq, i as u64);
        }
    }

    #[test]
    fn flipping_any_bit_of_a_sealed_frame_gets_it_refused(
        seeds in (any::<u64>(), any::<u64>()),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        bit in any::<prop::sample::Index>(),
    ) {
        prop_assume!(seeds.0 != seeds.1);
        let mut p = pair(true, seeds.0, seeds.1);
        let frame = p.seal(Dir::AtoB, &payload).unwrap();
        let bit = bit.index(frame.len() * 8);
        let mut tampered = frame.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        let r = p.deliver(Dir::AtoB, &tampered);
        prop_assert!(matches!(r, Err(Received::Dropped(_))), "bit {} accepted: {:?}", bit, r);
        // The forgery did not move the replay window: the genuine frame still gets through.
        prop_assert_eq!(p.deliver(Dir::AtoB, &frame).unwrap(), payload);
    }

    #[test]
    fn flipping_any_bit_of_a_hello_gets_it_refused(
        seeds in (any::<u64>(), any::<u64>()),
        which in 0usize..3,
        bit in 0usize..(104 * 8),
    ) {
        prop_assume!(seeds.0 != seeds.1);
        let p = pair(true, seeds.0, seeds.1);
        let (_, hello) = &p.hellos[which];
        let mut tampered = hello.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        // A fresh unit with the same key, so the only thing that can refuse it is the check.
        let s = security(true);
        let cfg = LinkConfig::new(LinkKind::Failover, IfName::new("fo0").unwrap());
        let mut fresh = tandem_link::SecureLink::new(
            cfg, &s, tandem_link::testutil::FakeNonces::new(seeds.0 ^ 0x55), p.now).unwrap();
        let r = fresh.handle_frame(p.now, &mut tampered);
        prop_assert!(matches!(r, Received::Dropped(_)), "bit {} accepted: {:?}", bit, r);
    }

    #[test]
    fn replay_window_matches_the_model(
        start in 0u64..(1 << 40),
        steps in proptest::collection::vec(
            prop_oneof![
                3 => -2200i64..2,      // mostly reordering, duplicates and too-old
                1 => 0i64..300,        // advancing
                1 => Just(5000i64),    // a jump beyond the window
            ],
            1..400,
        ),
    ) {
        let mut w = ReplayWindow::new();
        let mut m = Model::default();
        let mut cursor = start;
        for d in steps {
            let seq = cursor.saturating_add_signed(d);
            prop_assert_eq!(w.check(seq), m.check(seq), "check {}", seq);
            prop_assert_eq!(w.accept(seq), m.accept(seq), "accept {}", seq);
            prop_assert_eq!(w.top(), m.top);
            cursor = m.top;
        }
    }
}

/// One session's frames (deterministic pair: every `pair(true, 3, 4)` runs the same session),
/// sealed once and delivered in proptest-chosen orders to a fresh receiver per case.
fn sealed_stream() -> (LinkPair, &'static [Vec<u8>]) {
    static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let frames = FRAMES.get_or_init(|| {
        let mut p = pair(true, 3, 4);
        (0..2300u32)
            .map(|i| p.seal(Dir::AtoB, &i.to_be_bytes()).unwrap())
            .collect()
    });
    (pair(true, 3, 4), frames)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn delivery_order_follows_the_replay_model_end_to_end(
        order in proptest::collection::vec(
            prop_oneof![
                4 => (0usize..64).prop_map(|i| i + 2200), // near the front: reorder, duplicate
                1 => 0usize..2300,                        // anywhere: old, too old
            ],
            1..200,
        ),
    ) {
        let (mut p, frames) = sealed_stream();
        let mut m = Model::default();
        let mut accepted = 0;
        for i in order {
            let got = p.deliver(Dir::AtoB, &frames[i]);
            match m.accept(i as u64) {
                Ok(()) => {
                    accepted += 1;
                    prop_assert_eq!(got.unwrap(), (i as u32).to_be_bytes().to_vec())
                }
                Err(ReplayError::Duplicate) => {
                    prop_assert_eq!(got, Err(Received::Dropped(DropReason::Duplicate)))
                }
                Err(ReplayError::TooOld) => {
                    prop_assert_eq!(got, Err(Received::Dropped(DropReason::TooOld)))
                }
            }
        }
        prop_assert_eq!(p.b.counters().rx_data, accepted);
    }
}
