//! Fuzz target: the input is a received Ethernet frame only, walked down the layers as the
//! forwarder's receive path does, plus the in-place echo reply and ICMP error builders. Narrower
//! than `parse_all`, so each execution is cheaper and the seed frames' structure is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::dissect_ethernet(data);
    exercise::frame_rewrites(data);
});
