//! pktgen: tandem's traffic generator and sink over any [`tandem_io::Backend`].
//!
//! The sender ([`send`]) transmits UDP/IPv4 frames whose payload carries a
//! probe header (magic, stream id, sequence number, CLOCK_MONOTONIC send
//! time; see [`probe`]), paced by a token bucket or flat out. The receiver
//! ([`receive`]) reports packets/s, loss, reordering, duplicates, the longest
//! gap between in-order arrivals (how failover outage is measured) and
//! latency percentiles. Reports serialize to JSON and print as text.
//!
//! The `pktgen` binary opens an AF_XDP or io_uring backend on one interface
//! and runs either side; tests use [`tandem_io::mem::MemBackend`].

pub mod clock;
pub mod pace;
pub mod probe;
pub mod recv;
pub mod send;

pub use probe::{FlowSpec, FrameTemplate, Probe, SpecError, MIN_FRAME_LEN};
pub use recv::{receive, receive_with_clock, Percentiles, RecvConfig, RecvReport, Sink};
pub use send::{send, SendConfig, SendError, SendReport};

#[cfg(test)]
mod tests;
