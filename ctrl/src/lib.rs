//! tandem management plane: unit config and hardware profiles, the operator
//! API (control socket server and client, text rendering), backend
//! selection, and the tandemd wiring; builds `tandemd` and `tandemctl`.

pub mod api;
pub mod config;
pub mod daemon;
pub mod failover;
pub mod ha;
pub mod link_io;
pub mod problem;
pub mod profile;
pub mod reload;
pub mod render;
pub mod replication;
pub mod select;
pub mod stateful_config;
pub mod sysfs;

#[cfg(any(test, feature = "testutils"))]
pub mod testutil;
