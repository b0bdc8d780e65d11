//! "Never panics on arbitrary bytes": every `new_checked` / `parse`, every getter and setter,
//! and the frame rewrites, over random bytes and over mutated real frames. The same driver runs
//! under the fuzzer (`fuzz/fuzz_targets/exercise.rs`).

mod common;

#[path = "../fuzz/fuzz_targets/exercise.rs"]
mod exercise;

use proptest::prelude::*;

/// A real frame with a few bytes overwritten and possibly truncated: reaches deep layers far more
/// often than uniform random bytes.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0..common::ALL.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(i, edits, cut, do_cut)| {
            let mut f = common::ALL[i].to_vec();
            if i % 3 == 0 {
                f = common::tagged(&f, 0x2064);
            }
            for (pos, byte) in edits {
                let at = pos.index(f.len());
                f[at] = byte;
            }
            if do_cut {
                f.truncate(cut.index(f.len() + 1));
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        exercise::all(&data);
    }

    #[test]
    fn mutated_real_frames_never_panic(data in mutated_frame()) {
        exercise::all(&data);
    }
}

#[test]
fn every_prefix_of_every_seed_is_handled() {
    for frame in common::ALL {
        for n in 0..=frame.len() {
            exercise::all(&frame[..n]);
        }
        exercise::all(&common::tagged(frame, 0xffff));
    }
}
