//! Fuzz target: the input is one opened failover-link payload, handed to the codec's decoder and,
//! when accepted, back through the encoder (see `exercise.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::all(data);
});
