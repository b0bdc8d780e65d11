//! tandem benchmarks: fixtures of the criterion micro-benchmarks
//! ([`micro`], benches in `benches/`) and the macro benchmark that forwards
//! 64-byte UDP through one unit on the veth lab and compares tandem with
//! the Linux kernel in the same run ([`forward`], binary `forward`), and the
//! failover benchmark that kills the active unit of a pair mid-stream and
//! compares tandem's outage with keepalived's ([`failover`], binary
//! `failover`), and the replication benchmark: records/s applied, bulk sync,
//! replication lag and memory per connection of the stateful pair
//! ([`replication`], binary `replication`), and the connection-survival
//! benchmark: verified TCP streams across the kill of the active, tandem's
//! stateful pair against keepalived + conntrackd ([`survival`], binary
//! `survival`).
//!
//! Benchmarks double as tests (STYLE habit 15): `cargo test --benches` runs
//! every criterion bench once, the fixtures have unit tests, and
//! `tests/forward_smoke.rs` runs every row of the macro benchmark for about
//! a second each and checks that each produced numbers.

pub mod failover;
pub mod forward;
pub mod micro;
pub mod replication;
pub mod survival;
