//! Runs the codec's fuzz driver (`fuzz/fuzz_targets/exercise.rs`) on stable over the seed corpus
//! (`fuzz/seeds/codec/`) and every single-byte mutation, truncation and extension of each seed, so
//! `cargo test` exercises the same properties as `cargo fuzz run codec`.

#[path = "../fuzz/fuzz_targets/exercise.rs"]
mod exercise;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/codec");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("seed entry").path();
            let bytes = std::fs::read(&p).expect("seed readable");
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn seed_corpus_is_accepted_and_canonical() {
    let seeds = seeds();
    assert!(seeds.len() >= 7, "seed corpus missing: {seeds:?}");
    for (name, bytes) in seeds {
        assert!(
            tandem_ha::codec::decode(&bytes).is_ok(),
            "{name} is not a valid message: regenerate the seeds"
        );
        exercise::all(&bytes);
    }
}

#[test]
fn every_byte_mutation_truncation_and_extension_of_the_seeds_holds_the_properties() {
    for (_, bytes) in seeds() {
        for i in 0..bytes.len() {
            for v in [0x00, 0x01, 0x02, 0x07, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                exercise::all(&b);
            }
            exercise::all(&bytes[..i]);
        }
        for extra in [0x00, 0xff] {
            let mut b = bytes.clone();
            b.push(extra);
            exercise::all(&b);
        }
    }
}
