//! tandem-sync: replication of connection, xlate, ARP and SA state over the state link.
//!
//! DESIGN.md, "Replication": every create/update/delete becomes a fixed-layout record written
//! straight into a state-link frame, many records per frame; frames carry a sequence number per
//! stream; the receiver detects gaps and asks for retransmission from a ring of recent frames; a
//! standby that joins or falls too far behind gets a bulk sync. This crate is that machinery,
//! sans-IO (time is an argument, no threads, no sockets). It knows records only as
//! `(kind: u8, op: u8, key: u64, payload)`; their layouts and how they apply belong to
//! `tandem-state`, the glue between the two to `tandem-dataplane` / `tandem-ctrl`
//! (`dataplane/docs/stateful.md`). Its frames are the plaintext payload that `tandem-link`
//! seals; the byte layout is in `dataplane/sync/docs/state-link-protocol.md`.
//!
//! * [`FrameEncoder`] (worker): [`FrameEncoder::put`] writes a record into a [`SyncBuf`] in
//!   place, coalescing a later record for the same `(kind, key)` into the earlier one;
//!   [`FrameEncoder::finish`] closes the frame when `put` says [`Put::Full`] or when
//!   [`FrameEncoder::opened_at`] passes the flush deadline. No allocation after start-up.
//! * [`Sender`] (active unit's replication thread): stamps per-stream sequence numbers, keeps
//!   unacknowledged frames in a ring, resends go-back-N from a NAKed frame, probes with the
//!   oldest unacknowledged frame on timeout, and raises [`SenderEvent::BulkNeeded`] when a
//!   receiver asks for a bulk sync or needs a frame the ring no longer holds;
//!   [`Sender::bulk_begin`] / [`Sender::bulk_end`] frame the bulk.
//! * [`Receiver`] (standby's replication thread): [`Receiver::handle_frame`] yields the records
//!   of each in-order frame borrowed from it ([`RecordRef`]), or says duplicate / gap / waiting
//!   for a bulk; [`Receiver::poll_control`] emits ACK, NAK and BULK_REQUEST frames with retry
//!   timers; [`Receiver::ready`] says whether every stream completed a bulk sync this epoch.
//! * [`TokenBucket`]: the session replication rate limit for bulk records (`failover
//!   replication rate`); live creates are counted, never deferred.
//! * [`wire`]: the frame format, a parser that never panics, and the emitters.
//!
//! ```
//! use tandem_sync::*;
//!
//! let mut pool = BufPool::new(8, 1500);
//! let mut enc = FrameEncoder::new(0, 1464).unwrap();
//! let mut tx = Sender::new(SenderConfig::new(0x1234_5678, 1)).unwrap();
//! let mut rx = Receiver::new(ReceiverConfig::new(1)).unwrap();
//! let mut ctl = [0u8; 64];
//!
//! // The standby asks for a bulk sync; the active one answers with an (empty) bulk.
//! let n = rx.poll_control(0, &mut ctl).unwrap();
//! tx.handle_control(0, &ctl[..n]).unwrap();
//! assert!(matches!(tx.poll_event(), Some(SenderEvent::BulkNeeded { stream: 0, .. })));
//! let f = tx.bulk_begin(0, 0, 0, pool.get().unwrap()).unwrap().to_vec();
//! assert!(matches!(rx.handle_frame(0, &f), Delivery::BulkBegin { stream: 0, total: 0 }));
//! let f = tx.bulk_end(0, 0, pool.get().unwrap()).unwrap().to_vec();
//! assert!(matches!(rx.handle_frame(0, &f), Delivery::BulkEnd { complete: true, .. }));
//! assert!(rx.ready());
//!
//! // A connection is created and updated within one frame: one record goes out.
//! assert!(enc.begin(pool.get().unwrap(), false).is_none());
//! assert_eq!(enc.put(0, 1, 1, 42, &[1; 56]), Put::Written);
//! assert_eq!(enc.put(0, 1, 1, 42, &[2; 56]), Put::Coalesced);
//! let frame = tx.send(0, enc.finish().unwrap()).unwrap().to_vec();
//! let Delivery::Records { mut records, .. } = rx.handle_frame(0, &frame) else { panic!() };
//! let r = records.next().unwrap();
//! assert_eq!((r.kind, r.op, r.payload), (1, 1, &[2u8; 56][..]));
//! assert!(records.next().is_none());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod buf;
mod bulk;
mod encoder;
mod rate;
mod receiver;
mod sender;
mod seq;
pub mod wire;

pub use buf::{BufPool, SyncBuf};
pub use bulk::{BulkPhase, BulkProgress};
pub use encoder::{EncoderConfigError, EncoderCounters, FrameEncoder, Put};
pub use rate::{RateCounters, TokenBucket};
pub use receiver::{Delivery, Invalid, Receiver, ReceiverConfig, ReceiverCounters, StreamRxStatus};
pub use sender::{
    ConfigError, SendError, Sender, SenderConfig, SenderCounters, SenderEvent, StreamTxStatus,
};
pub use wire::{BulkReason, RecordRef, Records};
