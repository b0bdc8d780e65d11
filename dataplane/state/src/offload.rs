//! What a shard tells the flow-offload fast path (`tandem_io::offload`), sans-IO.
//!
//! The shard marks which directions of a connection the forwarder installed in the fast-path
//! table ([`crate::Shard::offload_candidate`] / [`crate::Shard::offload_mark`]) and queues a
//! removal whenever the table must stop forwarding one: the connection is deleted, its TCP
//! state leaves ESTABLISHED (the close is tracked packet by packet again), or it looks idle to
//! the expiry sweep. The last kind is a *retire*: an offloaded flow's packets never reach the
//! shard, so before expiring it the sweep takes the entries back and learns from them when the
//! fast path last forwarded one ([`crate::Shard::offload_retired`]); the connection expires at
//! the next visit only if that was long enough ago. Between passes, the forwarder's scan of the
//! table keeps `last_seen` current ([`crate::Shard::offload_seen`]), so an active flow is never
//! retired and its replication keepalives go on.

use crate::FlowKey;

/// One direction of a connection that may be installed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadRef {
    /// The connection's slot in the shard.
    pub conn: u32,
    /// The slot's generation (a reused slot is another connection).
    pub gen: u32,
    /// The originating direction (else the return direction).
    pub from_orig: bool,
}

/// Entries the forwarder must take out of the fast-path table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadRemoval {
    /// The connection's slot in the shard.
    pub conn: u32,
    /// The slot's generation when the removal was queued.
    pub gen: u32,
    /// Up to two installed directions: the interface the packets arrive on and their tuple as
    /// received.
    pub flows: [Option<(u16, FlowKey)>; 2],
    /// Report the entries' last activity back with [`crate::Shard::offload_retired`] (the
    /// expiry sweep asked); otherwise the connection is gone or no longer offloadable.
    pub retire: bool,
}

/// Removals a shard queues between two polls of the forwarder. When full, the shard asks for
/// the whole table to be cleared instead ([`crate::Shard::offload_flush_needed`]).
pub const REMOVALS_MAX: usize = 1024;
