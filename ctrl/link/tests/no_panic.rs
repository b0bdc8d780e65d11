//! "Never panics on arbitrary bytes": the wire views and Reprs and `SecureLink::handle_frame`
//! over random bytes and over mutated genuine frames. The same driver runs under the fuzzer
//! (`fuzz/fuzz_targets/exercise.rs`).

#[path = "../fuzz/fuzz_targets/exercise.rs"]
mod exercise;

use proptest::prelude::*;
use tandem_link::testutil::Dir;

/// Genuine frames of a live session: hellos of the handshake and sealed data frames, both
/// protections.
fn genuine_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for encrypted in [true, false] {
        let mut pair = exercise::established(encrypted);
        out.extend(pair.hellos.iter().map(|(_, h)| h.clone()));
        for payload in [&b""[..], b"x", &[0x5a; 300]] {
            out.push(pair.seal(Dir::AtoB, payload).unwrap());
        }
    }
    out
}

/// A genuine frame with a few bytes overwritten and possibly truncated or extended: reaches the
/// MAC, AEAD and replay checks far more often than uniform random bytes.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let frames = genuine_frames();
    (
        0..frames.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        0u8..3,
    )
        .prop_map(move |(i, edits, cut, shape)| {
            let mut f = frames[i].clone();
            for (pos, byte) in edits {
                let at = pos.index(f.len().max(1));
                if at < f.len() {
                    f[at] = byte;
                }
            }
            match shape {
                0 => f.truncate(cut.index(f.len() + 1)),
                1 => f.extend_from_slice(&[0u8; 7]),
                _ => {}
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        exercise::all(&data);
    }

    #[test]
    fn mutated_frames_never_panic(data in mutated_frame()) {
        exercise::all(&data);
    }
}
