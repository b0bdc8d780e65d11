//! Fuzz target: the input is one received secure-link frame, handed to the wire views and to the
//! receive path of fresh and established links (see `exercise.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::all(data);
});
