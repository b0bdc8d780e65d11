//! tandem data path: the routed forwarder (ARP, longest-prefix-match routes,
//! TTL/checksum, ICMP), its fixed-capacity tables, and the pinned per-core
//! batch run loop with its management handle, [`Dataplane`].
//!
//! Layers, bottom up:
//! * [`route`], [`arp`]: preallocated tables, sans-IO.
//! * [`forward::Forwarder`]: one worker's routed data path over frames lent
//!   by a `tandem_io::Backend`; time is an argument, nothing allocates.
//! * [`tx::TxBatches`]: per-port transmit batches.
//! * [`worker`]: the batch loop ([`worker::BatchLoop`]) and the pinned
//!   thread around it.
//! * [`ownership`]: which addresses and MACs each interface owns at run
//!   time, and whether the unit forwards (failover takeover).
//! * [`punt`]: failover protocol frames to and from the management thread.
//! * [`stateful`], [`sync`]: the stateful stage glue (issue 4) — each
//!   worker's `tandem_state::Shard` called around the route lookup, its
//!   records batched into state-link frames, the mate's records applied,
//!   bulk sync; and the channels to the replication thread.
//! * [`handoff`]: with the stateful stage and several workers, frames are
//!   copied to the worker owning their flow (worker handoff).
//! * [`Dataplane`]: starts workers, talks to them over bounded queues,
//!   reads their counters.
#![forbid(unsafe_code)]

pub mod arp;
pub mod config;
pub mod counters;
pub mod forward;
pub mod fraghold;
mod handle;
pub mod handoff;
pub mod offload;
pub mod ownership;
pub mod punt;
pub mod route;
pub mod stateful;
pub mod sync;
pub mod time;
pub mod tx;
mod wakeup;
pub mod worker;

pub use arp::{ArpRecord, ArpState};
pub use config::{
    ArpTimers, ConfigError, DataplaneConfig, IdleStrategy, InterfaceConfig, RouteConfig, RunConfig,
    SyncSettings, TableSizes, MAX_BATCH,
};
pub use counters::{CounterSnapshot, Counters, PortCounters, SharedCounters, SharedPortCounters};
pub use forward::Forwarder;
pub use handle::{ArpEntry, Dataplane, RoutesError, StartError, StateError, WorkerSpec};
pub use handoff::Handoff;
pub use ownership::{InterfaceOwnership, Ownership, OwnershipError, Role};
pub use punt::{
    InjectError, InjectedFrame, PuntedFrame, ETHERTYPE_TANDEM, INJECT_QUEUE, PUNT_BYTES, PUNT_QUEUE,
};
pub use route::{RouteEntry, RouteKind};
pub use stateful::{ConnEntry, Stateful, StatefulCommand};
pub use sync::{InboundTx, StreamEndpoint, SyncEndpoints, SyncPool, SyncShared, WorkerSync};
pub use time::Timestamp;
pub use tx::TxBatches;
pub use worker::BatchLoop;

/// `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
