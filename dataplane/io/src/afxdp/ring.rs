//! Single-producer/single-consumer rings shared with the kernel (fill,
//! completion, RX, TX): the pure index arithmetic ([`Cursor`]) and the two
//! ends over ring memory ([`ProdRing`], [`ConsRing`]).
//!
//! AF_XDP's protocol: `producer` and `consumer` are free-running `u32`
//! indices (they wrap at 2^32, not at the ring size); slot = index & mask.
//! The producer writes entries, then publishes them with a release store
//! of `producer`; the consumer acquire-loads `producer`, reads the entries,
//! then hands the slots back with a release store of `consumer`. Each side
//! caches the peer's index and reloads it only when the cached view cannot
//! satisfy a request, so a batch costs one acquire load and one release
//! store (the same shape as libbpf's `xsk.h` and s2n-quic-xdp's `ring.rs`).
//!
//! The memory is not owned here: the socket module maps it from the kernel,
//! tests use plain memory (see `tests::oracle`).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::XDP_RING_NEED_WAKEUP;

/// Index arithmetic of one end of a ring; no memory, no atomics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    size: u32,
    mask: u32,
    /// Our own index: the next slot we produce (producer end) or consume
    /// (consumer end), including entries reserved/peeked but not yet
    /// published.
    local: u32,
    /// The peer's index as last loaded.
    peer: u32,
}

impl Cursor {
    /// `size` must be a power of two (the kernel enforces it for its rings).
    pub fn new(size: u32, local: u32, peer: u32) -> Cursor {
        debug_assert!(size.is_power_of_two());
        Cursor {
            size,
            mask: size.wrapping_sub(1),
            local,
            peer,
        }
    }

    /// Producer end: free slots as far as the cached consumer index knows.
    /// A consumer index ahead of ours, or more than `size` behind, is a
    /// corrupt ring: report no room rather than overwrite unread entries.
    pub fn prod_free(&self) -> u32 {
        let used = self.local.wrapping_sub(self.peer);
        self.size.saturating_sub(used)
    }

    /// Consumer end: entries ready as far as the cached producer index
    /// knows. A producer more than `size` ahead is corrupt: report nothing
    /// rather than read entries twice.
    pub fn cons_avail(&self) -> u32 {
        let ready = self.peer.wrapping_sub(self.local);
        if ready > self.size {
            0
        } else {
            ready
        }
    }

    /// Slot of the `i`-th entry after `local`.
    pub fn slot(&self, i: u32) -> usize {
        (self.local.wrapping_add(i) & self.mask) as usize
    }

    pub fn advance(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
    }

    pub fn set_peer(&mut self, peer: u32) {
        self.peer = peer;
    }

    pub fn local(&self) -> u32 {
        self.local
    }

    pub fn size(&self) -> u32 {
        self.size
    }
}

/// Pointers into one ring's memory.
pub struct RingMem<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    desc: NonNull<T>,
    size: u32,
}

impl<T> RingMem<T> {
    /// # Safety
    /// `producer`, `consumer` and `flags` must point to 4-byte aligned
    /// `u32`s and `desc` to `size` aligned entries of `T`, all valid for
    /// reads and writes (through atomics for the indices) for as long as
    /// the returned value and any ring built on it live; `size` must be a
    /// power of two; at most one [`ProdRing`] and one [`ConsRing`] may use
    /// the memory at a time, and any other user must follow the protocol
    /// in the module doc.
    pub unsafe fn new(
        producer: NonNull<u32>,
        consumer: NonNull<u32>,
        flags: NonNull<u32>,
        desc: NonNull<T>,
        size: u32,
    ) -> RingMem<T> {
        RingMem {
            producer: producer.cast(),
            consumer: consumer.cast(),
            flags: flags.cast(),
            desc,
            size,
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: RingMem::new's contract: a valid, aligned u32 for our
        // lifetime, only accessed atomically.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref() }
    }
}

/// The producer end: we write entries, the peer (kernel) consumes them.
/// Used for the fill and TX rings.
pub struct ProdRing<T> {
    mem: RingMem<T>,
    cur: Cursor,
    reserved: u32,
}

// SAFETY: the ring's memory is owned by whoever owns this value (the XSK
// socket's mapping, kept alive alongside it); moving the sole producer end to
// another thread keeps the single-producer rule.
unsafe impl<T: Send> Send for ProdRing<T> {}

impl<T: Copy> ProdRing<T> {
    pub fn new(mem: RingMem<T>) -> ProdRing<T> {
        // We are the only writer of `producer`; its current value is ours.
        let local = mem.producer().load(Ordering::Relaxed);
        let peer = mem.consumer().load(Ordering::Acquire);
        let cur = Cursor::new(mem.size, local, peer);
        ProdRing {
            mem,
            cur,
            reserved: 0,
        }
    }

    /// Reserve up to `want` slots; returns how many (0..=want). Reloads the
    /// consumer index only when the cached view is short.
    pub fn reserve(&mut self, want: u32) -> u32 {
        if self.cur.prod_free() < want {
            self.cur
                .set_peer(self.mem.consumer().load(Ordering::Acquire));
        }
        self.reserved = want.min(self.cur.prod_free());
        self.reserved
    }

    /// Write the `i`-th reserved entry (`i < reserved`).
    pub fn write(&mut self, i: u32, v: T) {
        debug_assert!(i < self.reserved, "write outside the reservation");
        let slot = self.cur.slot(i);
        // SAFETY: slot < size (masked) so the pointer is inside the
        // descriptor array; slots between our published producer index and
        // the consumer index + size belong to the producer, so the peer does
        // not read this one until we publish it.
        unsafe { self.mem.desc.as_ptr().add(slot).write(v) };
    }

    /// Publish the first `n` reserved entries (release: the entries'
    /// writes happen before the peer sees the new producer index).
    pub fn submit(&mut self, n: u32) {
        let n = n.min(self.reserved);
        self.cur.advance(n);
        self.reserved = 0;
        self.mem
            .producer()
            .store(self.cur.local(), Ordering::Release);
    }

    /// Entries published but not yet consumed by the peer (reloads the
    /// consumer index).
    pub fn outstanding(&mut self) -> u32 {
        self.cur
            .set_peer(self.mem.consumer().load(Ordering::Acquire));
        self.cur.size() - self.cur.prod_free()
    }

    /// Whether the kernel asked for a wakeup syscall (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.mem.flags().load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    pub fn size(&self) -> u32 {
        self.cur.size()
    }
}

/// The consumer end: the peer (kernel) produces, we read. Used for the RX
/// and completion rings.
pub struct ConsRing<T> {
    mem: RingMem<T>,
    cur: Cursor,
    peeked: u32,
}

// SAFETY: as for ProdRing: the sole consumer end moves with its owner.
unsafe impl<T: Send> Send for ConsRing<T> {}

impl<T: Copy> ConsRing<T> {
    pub fn new(mem: RingMem<T>) -> ConsRing<T> {
        let local = mem.consumer().load(Ordering::Relaxed);
        let peer = mem.producer().load(Ordering::Acquire);
        let cur = Cursor::new(mem.size, local, peer);
        ConsRing {
            mem,
            cur,
            peeked: 0,
        }
    }

    /// Up to `want` entries ready to read; reloads the producer index
    /// (acquire) only when the cached view is short.
    pub fn peek(&mut self, want: u32) -> u32 {
        if self.cur.cons_avail() < want {
            self.cur
                .set_peer(self.mem.producer().load(Ordering::Acquire));
        }
        self.peeked = want.min(self.cur.cons_avail());
        self.peeked
    }

    /// The `i`-th peeked entry (`i < peeked`).
    pub fn read(&self, i: u32) -> T {
        debug_assert!(i < self.peeked, "read outside the peeked entries");
        let slot = self.cur.slot(i);
        // SAFETY: slot < size so the pointer is inside the descriptor array;
        // the entry lies before the producer index we acquire-loaded, so the
        // producer finished writing it and will not touch it again until we
        // release it.
        unsafe { self.mem.desc.as_ptr().add(slot).read() }
    }

    /// Hand the first `n` peeked entries back to the producer (release:
    /// our reads happen before the producer may overwrite the slots).
    pub fn release(&mut self, n: u32) {
        let n = n.min(self.peeked);
        self.cur.advance(n);
        self.peeked = 0;
        self.mem
            .consumer()
            .store(self.cur.local(), Ordering::Release);
    }

    pub fn size(&self) -> u32 {
        self.cur.size()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// Ring memory in plain process memory, standing in for a kernel
    /// mapping. Interior mutability (atomics, `UnsafeCell`) so that the two
    /// ends can hold pointers into it at once.
    pub struct PlainRing<T> {
        idx: Box<[AtomicU32; 3]>,
        desc: Box<[std::cell::UnsafeCell<T>]>,
    }

    impl<T: Copy + Default> PlainRing<T> {
        pub fn new(size: u32, start: u32) -> PlainRing<T> {
            PlainRing {
                idx: Box::new([
                    AtomicU32::new(start),
                    AtomicU32::new(start),
                    AtomicU32::new(0),
                ]),
                desc: (0..size)
                    .map(|_| std::cell::UnsafeCell::new(T::default()))
                    .collect(),
            }
        }

        pub fn set_flags(&self, v: u32) {
            self.idx[2].store(v, Ordering::Relaxed);
        }

        /// A view of the memory; the two ends the tests build share it.
        pub fn mem(&self) -> RingMem<T> {
            let nn = |a: &AtomicU32| NonNull::new(a.as_ptr()).unwrap();
            let desc = NonNull::new(std::cell::UnsafeCell::raw_get(self.desc.as_ptr())).unwrap();
            // SAFETY: the indices and descriptors live as long as `self`,
            // which every test keeps alive past the rings built on this view;
            // both are interior-mutable, so pointers derived from `&self` may
            // be written through; size is the slice length, a power of two.
            unsafe {
                RingMem::new(
                    nn(&self.idx[0]),
                    nn(&self.idx[1]),
                    nn(&self.idx[2]),
                    desc,
                    self.desc.len() as u32,
                )
            }
        }
    }

    #[test]
    fn cursor_arithmetic_across_the_u32_wrap() {
        let mut c = Cursor::new(8, u32::MAX - 2, u32::MAX - 2);
        assert_eq!(c.prod_free(), 8);
        c.advance(5); // local wrapped to 2
        assert_eq!(c.local(), 2);
        assert_eq!(c.prod_free(), 3);
        assert_eq!(c.slot(0), 2);
        c.set_peer(1); // consumer advanced across the wrap too
        assert_eq!(c.prod_free(), 7);
        // Consumer view: producer at 6, we are at 2.
        let c = Cursor::new(8, 2, 6);
        assert_eq!(c.cons_avail(), 4);
        assert_eq!(c.slot(3), 5);
    }

    #[test]
    fn corrupt_peer_indices_give_no_room_and_nothing_to_read() {
        // Consumer index ahead of the producer's own index.
        assert_eq!(Cursor::new(8, 10, 11).prod_free(), 0);
        // Consumer index more than a ring behind.
        assert_eq!(Cursor::new(8, 20, 11).prod_free(), 0);
        // Producer claims more than a ring of entries.
        assert_eq!(Cursor::new(8, 0, 9).cons_avail(), 0);
        // Producer behind the consumer.
        assert_eq!(Cursor::new(8, 5, 4).cons_avail(), 0);
    }

    #[test]
    fn needs_wakeup_reads_the_flags_word() {
        let m = PlainRing::<u64>::new(4, 0);
        let p = ProdRing::new(m.mem());
        assert!(!p.needs_wakeup());
        m.set_flags(XDP_RING_NEED_WAKEUP);
        assert!(p.needs_wakeup());
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Reserve `want`, write them all, submit `submit` (clamped) of them.
        Produce { want: u32, submit: u32 },
        /// Peek `want`, check them all, release `release` (clamped) of them.
        Consume { want: u32, release: u32 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..20, 0u32..20).prop_map(|(want, submit)| Op::Produce { want, submit }),
            (0u32..20, 0u32..20).prop_map(|(want, release)| Op::Consume { want, release }),
        ]
    }

    /// Oracle test (STYLE habit 12): both ends over one plain ring against a
    /// VecDeque model, from starting indices on both sides of the u32 wrap.
    fn oracle(size: u32, start: u32, ops: &[Op]) {
        let mem = PlainRing::<u64>::new(size, start);
        let mut prod = ProdRing::new(mem.mem());
        let mut cons = ConsRing::new(mem.mem());
        let mut model: VecDeque<u64> = VecDeque::new();
        let mut next = 0u64;
        for op in ops {
            match *op {
                Op::Produce { want, submit } => {
                    let free = size - model.len() as u32;
                    let got = prod.reserve(want);
                    assert_eq!(got, want.min(free), "reserve({want}) with {free} free");
                    for i in 0..got {
                        prod.write(i, next + i as u64);
                    }
                    let n = submit.min(got);
                    prod.submit(n);
                    for i in 0..n {
                        model.push_back(next + i as u64);
                    }
                    next += n as u64;
                    assert_eq!(prod.outstanding(), model.len() as u32);
                }
                Op::Consume { want, release } => {
                    let got = cons.peek(want);
                    assert_eq!(got, want.min(model.len() as u32));
                    for i in 0..got {
                        assert_eq!(cons.read(i), model[i as usize]);
                    }
                    let n = release.min(got);
                    cons.release(n);
                    model.drain(..n as usize);
                }
            }
        }
        // `prod` and `cons` (declared after `mem`) drop before it.
    }

    proptest! {
        #[test]
        fn rings_match_a_fifo_model(
            size_log in 0u32..5,
            start in prop_oneof![Just(0u32), Just(u32::MAX - 7), Just(u32::MAX), any::<u32>()],
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            oracle(1 << size_log, start, &ops);
        }
    }

    #[test]
    fn many_laps_around_the_wrap() {
        // Deterministic: 64 laps of a 4-entry ring starting just below 2^32.
        let ops: Vec<Op> = (0..256)
            .flat_map(|i| {
                [
                    Op::Produce {
                        want: 3 + i % 2,
                        submit: 4,
                    },
                    Op::Consume {
                        want: 4,
                        release: 2 + i % 3,
                    },
                ]
            })
            .collect();
        oracle(4, u32::MAX - 5, &ops);
    }
}
