//! Fuzz target: the input is read as an Ethernet frame *and* as each inner header on its own
//! (ARP, IPv4, IPv6, UDP, TCP, ICMPv4), with every getter, setter, Repr and frame rewrite run on
//! whatever parses. See `exercise.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::all(data);
});
