//! Fuzz target: the input is one opened state-link payload, handed to the frame parser, the
//! receiver and the sender (see `exercise.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::all(data);
});
