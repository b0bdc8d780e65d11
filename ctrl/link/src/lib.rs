//! tandem secure link: authenticated, encrypted, replay-protected framing for the failover and
//! state links.
//!
//! DESIGN.md, "Replication": "The failover link and the state link are authenticated and
//! encrypted with the configured failover key … with replay protection. Clear text only when the
//! operator explicitly configures no key, with a warning in the log".
//!
//! This crate is the security and framing layer only. It seals and opens opaque payload bytes;
//! the hello, LANTEST and replication encodings live in the layers above, and the sockets and
//! the clock in the daemon. It is sans-IO (`no_std`, no `unsafe`): time and randomness are
//! arguments.
//!
//! * [`FailoverKey`] — the operator's `failover key {secret | hex key}`, validated, redacted in
//!   `Debug`, zeroed on drop; [`Security`] — that key, or clear text with an explicit
//!   acknowledgement of the warning ([`CleartextAck`]).
//! * [`SecureLink`] — one link's session layer: a nonce handshake (fresh session keys from
//!   HKDF-SHA256 per pair of unit incarnations, so a restarted mate re-handshakes and old frames
//!   are refused), in-place AES-256-GCM seal/open with the header as associated data, a
//!   2048-frame replay window, rekeying before the sequence space could run out, events such as
//!   "mate at fo0 rejected: authentication failed — failover keys differ?", and counters.
//! * [`wire`] — the frame formats as zero-copy views and Reprs; byte layouts in
//!   `docs/secure-link.md`.
//! * [`replay`] — the RFC 6479 window on its own.
//!
//! ```
//! use core::time::Duration;
//! use tandem_link::{FailoverKey, IfName, LinkConfig, LinkKind, Received, SecureLink, Security};
//! use tandem_link::wire::DATA_HEADER_LEN;
//!
//! let key = FailoverKey::parse("hex 00112233445566778899aabbccddeeff").unwrap();
//! let security = Security::from_config(Some(key), |warning| eprintln!("{warning}"));
//! let cfg = LinkConfig::new(LinkKind::Failover, IfName::new("fo0").unwrap());
//! let t0 = Duration::ZERO;
//! // Production passes the OS CSPRNG; these closures are deterministic stand-ins.
//! let mut a = SecureLink::new(cfg, &security, |n: &mut [u8; 32]| n.fill(1), t0).unwrap();
//! let mut b = SecureLink::new(cfg, &security, |n: &mut [u8; 32]| n.fill(2), t0).unwrap();
//!
//! // Shuttle hellos until both sides are quiet (normally: over the failover link).
//! let mut buf = [0u8; 1500];
//! for _ in 0..8 {
//!     while let Some(n) = a.poll_transmit(t0, &mut buf) {
//!         b.handle_frame(t0, &mut buf[..n]);
//!     }
//!     while let Some(n) = b.poll_transmit(t0, &mut buf) {
//!         a.handle_frame(t0, &mut buf[..n]);
//!     }
//! }
//! assert!(a.is_established() && b.is_established());
//!
//! // Seal in place: payload after the header, then one call.
//! buf[DATA_HEADER_LEN..DATA_HEADER_LEN + 5].copy_from_slice(b"hello");
//! let len = a.seal(t0, 5, &mut buf).unwrap();
//! let Received::Data(opened) = b.handle_frame(t0, &mut buf[..len]) else { panic!() };
//! assert_eq!(&buf[opened.payload], b"hello");
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "testutils"))]
extern crate std;

mod crypto;
pub mod key;
mod link;
pub mod replay;
#[cfg(any(test, feature = "testutils"))]
pub mod testutil;
pub mod wire;

pub use key::{CleartextAck, FailoverKey, KeyError, KeyForm, Security};
pub use link::{
    DropReason, EstablishCause, Event, EventKind, IfName, LinkConfig, LinkConfigError,
    LinkCounters, NonceSource, Opened, Received, RejectReason, SealError, SecureLink, SessionId,
};
pub use wire::{LinkKind, Protection};
