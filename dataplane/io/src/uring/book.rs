//! Pure bookkeeping of the io_uring backend, kept free of syscalls so it can
//! be tested without a kernel: what a CQE's `user_data` means, which frame a
//! provided-buffer id stands for, and how many transmits are in flight.

use crate::PortId;

/// What a completion belongs to, packed into the 64-bit `user_data` of its
/// SQE. The top byte is the kind; the low 48 bits carry a port index (for
/// receives) or a frame address (for sends), so a send completion names the
/// frame to return to the pool without any lookup table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// The multishot receive armed on a port.
    Recv(PortId),
    /// A send of the frame at this address in frame memory.
    Send(u64),
    /// A cancel request (teardown); its completion carries nothing to free.
    Cancel,
    /// The one-shot poll on the caller's wake fd (`wait_or_wake`).
    Wake,
}

const KIND_SHIFT: u32 = 56;
const PAYLOAD_MASK: u64 = (1 << 48) - 1;
const KIND_RECV: u64 = 1;
const KIND_SEND: u64 = 2;
const KIND_CANCEL: u64 = 3;
const KIND_WAKE: u64 = 4;

impl Token {
    /// Largest payload (port index or frame address) a token can carry.
    pub(crate) const MAX_PAYLOAD: u64 = PAYLOAD_MASK;

    pub(crate) fn encode(self) -> u64 {
        match self {
            Token::Recv(port) => (KIND_RECV << KIND_SHIFT) | (port as u64 & PAYLOAD_MASK),
            Token::Send(addr) => (KIND_SEND << KIND_SHIFT) | (addr & PAYLOAD_MASK),
            Token::Cancel => KIND_CANCEL << KIND_SHIFT,
            Token::Wake => KIND_WAKE << KIND_SHIFT,
        }
    }

    /// `None` for a value no SQE of ours ever carried.
    pub(crate) fn decode(user_data: u64) -> Option<Token> {
        let payload = user_data & PAYLOAD_MASK;
        match user_data >> KIND_SHIFT {
            KIND_RECV => Some(Token::Recv(payload as PortId)),
            KIND_SEND => Some(Token::Send(payload)),
            KIND_CANCEL => Some(Token::Cancel),
            KIND_WAKE => Some(Token::Wake),
            _ => None,
        }
    }
}

/// Map from provided-buffer id (the `bid` the kernel reports in a receive
/// CQE) to the frame address lent under it.
///
/// Ids are handed out from a fixed set of `capacity` (the buffer ring's
/// entry count), so at most `capacity` frames are lent to the kernel at once
/// and the ring can never hold more entries than it has slots. An id is
/// free again as soon as its completion is reaped, independently of which
/// frame it named, so any frame of the pool can be lent under any id.
pub(crate) struct BidMap {
    /// `addr[bid]` is the lent frame's address, or `EMPTY`.
    addr: Box<[u64]>,
    /// Free ids, used as a stack.
    free: Vec<u16>,
}

const EMPTY: u64 = u64::MAX;

impl BidMap {
    /// `capacity` ids, `0..capacity`, all free. `capacity` ≤ 65536.
    pub(crate) fn new(capacity: usize) -> BidMap {
        assert!(capacity <= 1 << 16, "buffer ids are 16 bits");
        BidMap {
            addr: vec![EMPTY; capacity].into_boxed_slice(),
            free: (0..capacity).rev().map(|b| b as u16).collect(),
        }
    }

    /// Lend `addr` under a free id; `None` when every id is in use.
    pub(crate) fn lend(&mut self, addr: u64) -> Option<u16> {
        let bid = self.free.pop()?;
        self.addr[bid as usize] = addr;
        Some(bid)
    }

    /// The frame lent under `bid`, freeing the id. `None` when `bid` is not
    /// lent (a stale or foreign id: nothing to return, nothing to corrupt).
    pub(crate) fn take(&mut self, bid: u16) -> Option<u64> {
        let slot = self.addr.get_mut(bid as usize)?;
        if *slot == EMPTY {
            return None;
        }
        let a = std::mem::replace(slot, EMPTY);
        self.free.push(bid);
        Some(a)
    }

    /// Ids (and so frames) currently lent to the kernel.
    pub(crate) fn in_use(&self) -> usize {
        self.addr.len() - self.free.len()
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.addr.len()
    }
}

/// Count of sends queued or submitted whose completion has not been reaped,
/// bounded by a budget chosen at open (so the completion queue always has
/// room for every outstanding completion).
#[derive(Debug)]
pub(crate) struct TxBudget {
    in_flight: u32,
    limit: u32,
}

impl TxBudget {
    pub(crate) fn new(limit: u32) -> TxBudget {
        TxBudget {
            in_flight: 0,
            limit,
        }
    }

    /// How many more sends may be queued now.
    pub(crate) fn room(&self) -> u32 {
        self.limit - self.in_flight
    }

    pub(crate) fn start(&mut self, n: u32) {
        debug_assert!(n <= self.room());
        self.in_flight += n.min(self.room());
    }

    /// One send completed (successfully or not).
    pub(crate) fn complete(&mut self) {
        debug_assert!(self.in_flight > 0, "send completion without a send");
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight
    }

    #[cfg(test)]
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }
}

/// Ring sizes derived from the frame configuration, in one place so the
/// invariants between them are visible and testable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// Entries of each port's provided-buffer ring (power of two, ≤ 32768).
    pub(crate) rx_ring: u32,
    /// Frames each port keeps lent to the kernel or waiting in its ready
    /// queue (≤ rx_ring; all ports together ≤ half the frames, so that
    /// transmit and `alloc` never starve).
    pub(crate) rx_lend: u32,
    /// Sends in flight at most.
    pub(crate) tx_budget: u32,
    /// Submission queue entries: the send budget plus one re-arm per port
    /// plus a cancel, so a full send budget never blocks a re-arm.
    pub(crate) sq: u32,
    /// Completion queue entries: every outstanding completion at once
    /// (one per lent buffer of every port, per send, per port's final recv
    /// CQE, cancels).
    pub(crate) cq: u32,
}

/// Kernel limits (IORING_MAX_ENTRIES, IORING_MAX_CQ_ENTRIES, buffer ring).
const MAX_SQ: u32 = 32768;
const MAX_CQ: u32 = 2 * MAX_SQ;
const MAX_BUF_RING: u32 = 32768;

impl Sizing {
    pub(crate) fn new(frame_count: u32, ring_size: u32, ports: usize) -> Result<Sizing, String> {
        if frame_count < 4 {
            return Err(format!("frame_count {frame_count} is below 4"));
        }
        if ring_size == 0 {
            return Err("ring_size is 0".into());
        }
        let ports = u32::try_from(ports).map_err(|_| "too many ports".to_string())?;
        if ports == 0 || ports > 1024 {
            return Err(format!("{ports} ports (1..=1024 supported)"));
        }
        let rx_ring = ring_size.next_power_of_two().min(MAX_BUF_RING);
        let rx_lend = rx_ring.min(frame_count / 2 / ports);
        if rx_lend == 0 {
            return Err(format!(
                "frame_count {frame_count} leaves no receive frame for each of {ports} ports"
            ));
        }
        let tx_budget = ring_size.min(MAX_SQ / 2).min(frame_count);
        let sq = (tx_budget + ports + 2).next_power_of_two();
        let cq = (rx_lend * ports + tx_budget + 2 * ports + 4).next_power_of_two();
        if sq > MAX_SQ || cq > MAX_CQ {
            return Err(format!(
                "ring_size {ring_size} with {ports} ports needs {sq} SQ / {cq} CQ entries, above the kernel's {MAX_SQ} / {MAX_CQ}"
            ));
        }
        Ok(Sizing {
            rx_ring,
            rx_lend,
            tx_budget,
            sq,
            cq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_round_trip_and_foreign_values_are_rejected() {
        for t in [
            Token::Recv(0),
            Token::Recv(1023),
            Token::Send(0),
            Token::Send(4095 * 2048),
            Token::Send(Token::MAX_PAYLOAD),
            Token::Cancel,
            Token::Wake,
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(u64::MAX), None);
    }

    #[test]
    fn bid_map_lends_each_id_once_and_returns_the_frame() {
        let mut m = BidMap::new(4);
        assert_eq!(m.capacity(), 4);
        let a = m.lend(0).unwrap();
        let b = m.lend(2048).unwrap();
        assert_ne!(a, b);
        assert_eq!(m.in_use(), 2);
        assert_eq!(m.take(b), Some(2048));
        assert_eq!(m.take(b), None, "an id is returned once");
        assert_eq!(m.take(99), None, "an id out of range is ignored");
        assert_eq!(m.in_use(), 1);
        m.lend(4096).unwrap();
        m.lend(6144).unwrap();
        m.lend(8192).unwrap();
        assert_eq!(m.lend(10240), None, "never more than capacity lent");
        assert_eq!(m.take(a), Some(0));
    }

    #[test]
    fn sizing_keeps_half_the_frames_for_the_caller_and_fits_every_completion() {
        let s = Sizing::new(4096, 1024, 2).unwrap();
        assert_eq!(s.rx_ring, 1024);
        assert_eq!(s.rx_lend, 1024, "per port: 2 × 1024 = half of 4096");
        assert!(
            s.sq > s.tx_budget + 2,
            "room for the sends, two re-arms and a cancel"
        );
        assert!(s.cq >= 2 * s.rx_lend + s.tx_budget + 4);
        let four = Sizing::new(4096, 1024, 4).unwrap();
        assert_eq!(four.rx_lend, 512);
        assert!(Sizing::new(8, 64, 8).is_err(), "no frame left per port");
        let small = Sizing::new(64, 1000, 1).unwrap();
        assert_eq!(small.rx_ring, 1024);
        assert_eq!(small.rx_lend, 32);
        assert!(Sizing::new(2, 64, 1).is_err());
        assert!(Sizing::new(64, 0, 1).is_err());
        assert!(Sizing::new(64, 64, 0).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Lend,
        Take(u16),
    }

    proptest! {
        /// BidMap against a model: a map from id to address. Every frame
        /// lent comes back exactly once, under the id it was lent with.
        #[test]
        fn bid_map_matches_a_model(ops in proptest::collection::vec(
            prop_oneof![Just(Op::Lend), (0u16..20).prop_map(Op::Take)], 0..200)
        ) {
            let cap = 16;
            let mut m = BidMap::new(cap);
            let mut model = std::collections::HashMap::new();
            let mut next_addr = 0u64;
            for op in ops {
                match op {
                    Op::Lend => {
                        let got = m.lend(next_addr);
                        if model.len() == cap {
                            prop_assert!(got.is_none());
                        } else {
                            let bid = got.unwrap();
                            prop_assert!(model.insert(bid, next_addr).is_none());
                        }
                        next_addr += 2048;
                    }
                    Op::Take(bid) => prop_assert_eq!(m.take(bid), model.remove(&bid)),
                }
                prop_assert_eq!(m.in_use(), model.len());
            }
        }

        #[test]
        fn tx_budget_never_exceeds_its_limit(ops in proptest::collection::vec(0u32..8, 0..100)) {
            let mut b = TxBudget::new(16);
            for n in ops {
                if n == 0 {
                    if b.in_flight() > 0 { b.complete(); }
                } else {
                    let k = n.min(b.room());
                    b.start(k);
                }
                prop_assert!(b.in_flight() <= b.limit());
                prop_assert_eq!(b.room(), b.limit() - b.in_flight());
            }
        }
    }
}
