//! Later IPv4 fragments held until their datagram's first fragment passes.
//!
//! The stateful stage translates a later fragment like its datagram's first
//! (`tandem_state::frag`), so one that arrives before its first (reordered
//! on the way) cannot be decided yet. Rather than drop it, the receiving
//! worker keeps its frame, as the appliance queues fragments for virtual
//! reassembly, and runs it again right after a first fragment of the same
//! datagram (source, destination, protocol, IP ID). Bounded: [`HOLD_SLOTS`]
//! frames per worker, [`HOLD_PER_DATAGRAM`] per datagram (the appliance's
//! default `fragment chain`), each for at most [`HOLD_NS`]; beyond that
//! they are dropped (`drop_fragment`). Preallocated; a linear scan, which is
//! only made while something is held.

use tandem_io::{Frame, PortId};
use tandem_state::frag::FragKey;

/// Frames one worker holds at most.
pub const HOLD_SLOTS: usize = 64;
/// Frames of one datagram held at most (the appliance's `fragment chain` default).
pub const HOLD_PER_DATAGRAM: usize = 24;
/// How long a held fragment waits for its first, ns. Reordering takes
/// microseconds to milliseconds; a first that has not come within a second
/// will not, or was refused.
pub const HOLD_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: FragKey,
    frame: Frame,
    rx_port: PortId,
    /// When it was held; 0: free.
    since: u64,
}

/// The held frames of one worker (see the module doc).
#[derive(Debug)]
pub struct FragHold {
    slots: [Slot; HOLD_SLOTS],
    used: usize,
}

/// Refused to hold a frame: the worker's slots or its datagram's share are used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldFull;

impl Default for FragHold {
    fn default() -> Self {
        FragHold {
            slots: [Slot::default(); HOLD_SLOTS],
            used: 0,
        }
    }
}

impl FragHold {
    /// True when nothing is held (the common case: callers skip all work).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Holds `frame`, a later fragment of `key`'s datagram received on
    /// `rx_port` at `now` (ns).
    pub fn hold(
        &mut self,
        now: u64,
        key: FragKey,
        frame: Frame,
        rx_port: PortId,
    ) -> Result<(), HoldFull> {
        let same = self
            .slots
            .iter()
            .filter(|s| s.since != 0 && s.key == key)
            .count();
        if same >= HOLD_PER_DATAGRAM {
            return Err(HoldFull);
        }
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.since == 0)
            .ok_or(HoldFull)?;
        *slot = Slot {
            key,
            frame,
            rx_port,
            since: now.max(1),
        };
        self.used += 1;
        Ok(())
    }

    /// Takes every frame held for `key`'s datagram, in the order they came,
    /// into `out`; returns how many.
    pub fn take(&mut self, key: &FragKey, out: &mut [(Frame, PortId); HOLD_PER_DATAGRAM]) -> usize {
        let mut n = 0;
        while n < HOLD_PER_DATAGRAM {
            let oldest = self
                .slots
                .iter_mut()
                .filter(|s| s.since != 0 && s.key == *key)
                .min_by_key(|s| s.since);
            let Some(s) = oldest else { break };
            out[n] = (s.frame, s.rx_port);
            s.since = 0;
            self.used -= 1;
            n += 1;
        }
        n
    }

    /// When the oldest held frame's time is up (ns), if anything is held.
    /// Asked every loop iteration: nothing to scan in the common case.
    pub fn next_expiry(&self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        self.slots
            .iter()
            .filter(|s| s.since != 0)
            .map(|s| s.since.saturating_add(HOLD_NS))
            .min()
    }

    /// Takes one frame held longer than [`HOLD_NS`] at `now`, if any.
    pub fn take_expired(&mut self, now: u64) -> Option<Frame> {
        let s = self
            .slots
            .iter_mut()
            .find(|s| s.since != 0 && now.saturating_sub(s.since) >= HOLD_NS)?;
        s.since = 0;
        self.used -= 1;
        Some(s.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> FragKey {
        FragKey {
            src: 0xc612_0002,
            dst: 0xc613_0002,
            id,
            proto: 17,
        }
    }

    fn frame(addr: u64) -> Frame {
        Frame { addr, len: 100 }
    }

    #[test]
    fn frames_come_back_per_datagram_in_arrival_order() {
        let mut h = FragHold::default();
        assert!(h.is_empty());
        h.hold(30, key(1), frame(3), 0).unwrap();
        h.hold(10, key(1), frame(1), 1).unwrap();
        h.hold(20, key(2), frame(2), 0).unwrap();
        assert_eq!(h.len(), 3);
        let mut out = [(Frame::default(), 0); HOLD_PER_DATAGRAM];
        assert_eq!(h.take(&key(1), &mut out), 2);
        assert_eq!(&out[..2], &[(frame(1), 1), (frame(3), 0)]);
        assert_eq!(h.take(&key(1), &mut out), 0);
        assert_eq!(h.len(), 1);
        assert_eq!(h.take(&key(2), &mut out), 1);
        assert!(h.is_empty());
    }

    #[test]
    fn a_datagram_and_the_worker_have_bounded_shares() {
        let mut h = FragHold::default();
        for i in 0..HOLD_PER_DATAGRAM as u64 {
            h.hold(1 + i, key(1), frame(i), 0).unwrap();
        }
        assert_eq!(h.hold(100, key(1), frame(99), 0), Err(HoldFull));
        for i in HOLD_PER_DATAGRAM..HOLD_SLOTS {
            h.hold(1, key(i as u16), frame(i as u64), 0).unwrap();
        }
        assert_eq!(h.hold(1, key(9999), frame(7), 0), Err(HoldFull));
        assert_eq!(h.len(), HOLD_SLOTS);
    }

    #[test]
    fn frames_expire_after_the_hold_time() {
        let mut h = FragHold::default();
        h.hold(1_000, key(1), frame(1), 0).unwrap();
        h.hold(2_000, key(2), frame(2), 0).unwrap();
        assert_eq!(h.take_expired(HOLD_NS), None);
        assert_eq!(h.take_expired(1_000 + HOLD_NS), Some(frame(1)));
        assert_eq!(h.take_expired(1_000 + HOLD_NS), None);
        assert_eq!(h.next_expiry(), Some(2_000 + HOLD_NS));
        assert_eq!(h.take_expired(2_000 + HOLD_NS), Some(frame(2)));
        assert!(h.is_empty());
        assert_eq!(h.next_expiry(), None);
    }
}
