//! Property tests: the encoder against a simple model of coalescing, round trip through the
//! parser, and the rate limiter's bound.

use proptest::prelude::*;
use tandem_sync::wire::{record_len, stamp, Frame, HEADER_LEN};
use tandem_sync::{FrameEncoder, Put, SyncBuf, TokenBucket};

proptest! {
    /// Whatever sequence of puts: the frame holds what the model says (a later record with the
    /// same kind, key and length replaces the earlier one in place; otherwise appended), puts
    /// that do not fit change nothing, and the frame parses back to exactly that.
    #[test]
    fn encoder_matches_the_coalescing_model_and_round_trips(
        frame_size in 88usize..2000,
        puts in proptest::collection::vec(
            (0u8..3, any::<u8>(), 0u64..12, 0usize..70, any::<u8>()), 1..120),
    ) {
        let mut enc = FrameEncoder::new(1, frame_size).unwrap();
        let _ = enc.begin(SyncBuf::with_capacity(frame_size), false);
        // Model: (kind, key, op, payload) in frame order.
        let mut model: Vec<(u8, u64, u8, Vec<u8>)> = Vec::new();
        let mut used = HEADER_LEN;
        for (kind, op, key, len, fill) in puts {
            let payload = vec![fill; len];
            let got = enc.put(5, kind, op, key, &payload);
            // The index points at the latest record of (kind, key).
            let idx = model.iter().rposition(|(k, kk, _, _)| *k == kind && *kk == key);
            let want = match idx {
                Some(i) if model[i].3.len() == len => {
                    model[i].2 = op;
                    model[i].3 = payload;
                    Put::Coalesced
                }
                _ if record_len(len) > frame_size - HEADER_LEN => Put::Oversize,
                _ if used + record_len(len) > frame_size => Put::Full,
                _ => {
                    used += record_len(len);
                    model.push((kind, key, op, payload));
                    Put::Written
                }
            };
            prop_assert_eq!(got, want);
        }
        if model.is_empty() {
            prop_assert!(enc.finish().is_none());
            return Ok(());
        }
        let mut buf = enc.finish().unwrap();
        prop_assert_eq!(buf.len(), used);
        stamp(buf.as_bytes_mut(), 9, 9);
        let Frame::Data { records, .. } = Frame::parse(buf.as_bytes()).unwrap() else {
            panic!("not data")
        };
        let got: Vec<(u8, u8, Vec<u8>)> = records.map(|r| (r.kind, r.op, r.payload.to_vec())).collect();
        let want: Vec<(u8, u8, Vec<u8>)> = model.into_iter().map(|(k, _, o, p)| (k, o, p)).collect();
        prop_assert_eq!(got, want);
    }

    /// Over any window, a bucket never grants more than burst + rate × elapsed.
    #[test]
    fn token_bucket_never_exceeds_rate_plus_burst(
        rate in 1u64..100_000,
        burst in 1u64..1000,
        steps in proptest::collection::vec((0u64..50_000_000, 0u64..2000), 1..200),
    ) {
        let mut b = TokenBucket::new(rate, burst);
        let (mut now, mut granted) = (0u64, 0u64);
        for (dt, n) in steps {
            now += dt;
            let g = b.try_take(now, n);
            prop_assert!(g <= n);
            granted += g;
            let bound = burst as u128 + (rate as u128 * now as u128) / 1_000_000_000;
            prop_assert!(granted as u128 <= bound, "granted {} > bound {}", granted, bound);
        }
    }
}
