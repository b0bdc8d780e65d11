//! Test doubles: a seeded nonce source and a two-unit driver that shuttles hellos between two
//! links over a perfect (or filtered) wire. Behind `cfg(any(test, feature = "testutils"))`.

use core::time::Duration;
use std::vec::Vec;

use sha2::{Digest, Sha256};

use crate::link::{LinkConfig, NonceSource, Received, SealError, SecureLink};
use crate::wire::{DATA_HEADER_LEN, NONCE_LEN};
use crate::Security;

/// Deterministic "random" nonces: SHA-256(seed ‖ counter). Different seeds give unrelated
/// streams, so sweeping seeds sweeps which unit holds the lower nonce.
#[derive(Debug, Clone)]
pub struct FakeNonces {
    seed: u64,
    counter: u64,
}

impl FakeNonces {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> FakeNonces {
        FakeNonces { seed, counter: 0 }
    }
}

impl NonceSource for FakeNonces {
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) {
        let mut h = Sha256::new();
        h.update(self.seed.to_be_bytes());
        h.update(self.counter.to_be_bytes());
        self.counter += 1;
        nonce.copy_from_slice(&h.finalize());
    }
}

/// A link with the fake nonce source.
pub type FakeLink = SecureLink<FakeNonces>;

/// Which way a frame travels in a [`LinkPair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From `a` to `b`.
    AtoB,
    /// From `b` to `a`.
    BtoA,
}

/// Two links wired back to back, with a simulated clock.
#[derive(Debug)]
pub struct LinkPair {
    /// Unit A's link.
    pub a: FakeLink,
    /// Unit B's link.
    pub b: FakeLink,
    /// Simulated time.
    pub now: Duration,
    /// Every hello that crossed the wire, in order (for replay tests).
    pub hellos: Vec<(Dir, Vec<u8>)>,
}

impl LinkPair {
    /// Two links with the same config, their own security and nonce seeds.
    pub fn new(cfg: LinkConfig, sa: &Security, sb: &Security, seed_a: u64, seed_b: u64) -> Self {
        let now = Duration::ZERO;
        let a = SecureLink::new(cfg, sa, FakeNonces::new(seed_a), now).expect("valid config");
        let b = SecureLink::new(cfg, sb, FakeNonces::new(seed_b), now).expect("valid config");
        LinkPair {
            a,
            b,
            now,
            hellos: Vec::new(),
        }
    }

    /// Delivers queued hellos both ways until neither side has anything to send; `keep` decides
    /// per hello whether the wire delivers it. Returns the number of hellos sent. Bounded.
    pub fn exchange_filtered(&mut self, mut keep: impl FnMut(Dir, &[u8]) -> bool) -> usize {
        let mut buf = [0u8; 256];
        let mut sent = 0;
        for _ in 0..64 {
            let mut moved = false;
            while let Some(n) = self.a.poll_transmit(self.now, &mut buf) {
                moved = true;
                sent += 1;
                self.hellos.push((Dir::AtoB, buf[..n].to_vec()));
                if keep(Dir::AtoB, &buf[..n]) {
                    self.b.handle_frame(self.now, &mut buf[..n]);
                }
            }
            while let Some(n) = self.b.poll_transmit(self.now, &mut buf) {
                moved = true;
                sent += 1;
                self.hellos.push((Dir::BtoA, buf[..n].to_vec()));
                if keep(Dir::BtoA, &buf[..n]) {
                    self.a.handle_frame(self.now, &mut buf[..n]);
                }
            }
            if !moved {
                break;
            }
        }
        sent
    }

    /// [`exchange_filtered`](Self::exchange_filtered) over a perfect wire.
    pub fn exchange(&mut self) -> usize {
        self.exchange_filtered(|_, _| true)
    }

    /// Advances the clock to the earliest timer of either side, runs both sides' timers and
    /// exchanges; returns false when no timer is armed.
    pub fn step_timer(&mut self) -> bool {
        let next = match (self.a.poll_timeout(), self.b.poll_timeout()) {
            (Some(x), Some(y)) => x.min(y),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return false,
        };
        self.now = self.now.max(next);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.exchange();
        true
    }

    /// Seals `payload` on the `dir` sender into a fresh frame.
    pub fn seal(&mut self, dir: Dir, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        let link = match dir {
            Dir::AtoB => &mut self.a,
            Dir::BtoA => &mut self.b,
        };
        let mut buf = std::vec![0u8; DATA_HEADER_LEN + payload.len() + 16];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload.len()].copy_from_slice(payload);
        let n = link.seal(self.now, payload.len(), &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Hands `frame` to the receiver of `dir`; on acceptance returns the opened payload.
    pub fn deliver(&mut self, dir: Dir, frame: &[u8]) -> Result<Vec<u8>, Received> {
        let link = match dir {
            Dir::AtoB => &mut self.b,
            Dir::BtoA => &mut self.a,
        };
        let mut buf = frame.to_vec();
        match link.handle_frame(self.now, &mut buf) {
            Received::Data(o) => Ok(buf[o.payload].to_vec()),
            other => Err(other),
        }
    }
}
