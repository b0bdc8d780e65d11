//! Worker handoff (issue 4, `docs/stateful.md` "Steering"): with the
//! stateful stage on and several workers, every IPv4 frame is processed by
//! the worker that owns its flow, `Shard::owner(ip)` (`tandem_state::steer`
//! with static NAT taken on its real side), so both directions of a
//! connection meet the same `Shard`. A frame the NIC
//! (RSS, veth's queue choice, PACKET_FANOUT) delivered to another worker is
//! copied into a ring towards its owner and its frame freed; the owner
//! copies it into a frame of its own backend and processes it as if it had
//! been received on the same port.
//!
//! ARP frames are not steered (a worker's ARP table is its own, and ARP has
//! no flow), but with handoff on they are also copied, learn-only, to every
//! other worker: the next hop a worker asked for may answer on another
//! worker's queue, and each worker resolves its own next hops.
//!
//! Each directed pair of workers (i → j) has its own ring: two bounded
//! channels used as a single-producer single-consumer queue plus its free
//! list, over buffers allocated at start (the pattern of `crate::sync`).
//! The producer takes a free buffer, copies the frame in and queues it; the
//! consumer copies it out and gives the buffer back. Nothing allocates,
//! locks or makes a syscall per frame; a producer wakes each consumer it
//! queued for once per loop iteration ([`WakeFd::wake`], one atomic swap
//! while the consumer is awake). A full ring (no free buffer) drops the
//! frame, counted `drop_handoff_full`.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};
use tandem_io::wake::WakeFd;
use tandem_state::frag::{fragment, FragKey, FragTable, Fragment};
use tandem_state::Shard;

/// Ring slots per directed pair of workers at most, and at least.
pub const HANDOFF_SLOTS_MAX: usize = 1024;
pub const HANDOFF_SLOTS_MIN: usize = 128;
/// Slots a worker may receive into, over all its incoming rings: keeps the
/// memory per worker near 8 MiB (at 2048-byte frames) on appliances with
/// many workers, where each ring then gets fewer slots; beyond 33 workers
/// the per-ring floor wins (46 workers: 45 × 128 slots, 11.25 MiB).
pub const HANDOFF_SLOTS_PER_WORKER: usize = 4096;

/// Slots of each ring among `workers` workers (see the constants above).
pub fn slots_per_ring(workers: usize) -> usize {
    (HANDOFF_SLOTS_PER_WORKER / workers.saturating_sub(1).max(1))
        .clamp(HANDOFF_SLOTS_MIN, HANDOFF_SLOTS_MAX)
}

/// One frame in flight between two workers.
#[derive(Debug)]
pub(crate) struct HandoffBuf {
    bytes: Box<[u8]>,
    len: u32,
    port: u16,
    /// A learn-only copy of an ARP frame (see the module doc).
    arp: bool,
}

impl HandoffBuf {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len as usize]
    }

    pub(crate) fn port(&self) -> usize {
        usize::from(self.port)
    }

    pub(crate) fn is_arp_copy(&self) -> bool {
        self.arp
    }
}

/// The producer's end of one ring.
struct Lane {
    queue: Sender<HandoffBuf>,
    free: Receiver<HandoffBuf>,
    wake: Arc<WakeFd>,
    wake_due: bool,
}

/// The consumer's end of one ring.
struct InLane {
    queue: Receiver<HandoffBuf>,
    free: Sender<HandoffBuf>,
}

/// Why a frame was not handed off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// No free slot in the ring to that worker.
    Full,
    /// Larger than a slot (cannot happen with equal frame sizes).
    TooLong,
}

/// One worker's ends of the handoff rings. Built by [`mesh`].
pub struct Handoff {
    worker: usize,
    workers: usize,
    /// Indexed by destination worker; `None` at this worker's own index.
    out: Vec<Option<Lane>>,
    inbound: Vec<InLane>,
    /// Round-robin start of the next drain, so no ring starves the others.
    next_in: usize,
    /// A frame taken but not processed yet (see [`Handoff::put_back`]).
    stashed: Option<(usize, HandoffBuf)>,
    /// The worker each fragmented datagram's first fragment went to: its later
    /// fragments carry no ports to steer by, and follow it (see [`Handoff::owner`]).
    frag_owner: FragTable<u16>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("worker", &self.worker)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// The handoff rings between `wakes.len()` workers, `slots` buffers of
/// `frame_size` bytes each per directed pair, all allocated now; element i
/// is worker i's end. `wakes[i]` is worker i's wake-up.
pub fn mesh(slots: usize, frame_size: usize, wakes: &[Arc<WakeFd>]) -> Vec<Handoff> {
    let n = wakes.len();
    let slots = slots.max(1);
    let mut ends: Vec<Handoff> = (0..n)
        .map(|worker| Handoff {
            worker,
            workers: n,
            out: (0..n).map(|_| None).collect(),
            inbound: Vec::with_capacity(n.saturating_sub(1)),
            next_in: 0,
            stashed: None,
            // Keyed per worker and per run, like the shards' tables.
            frag_owner: FragTable::new(RandomState::new().hash_one(worker)),
        })
        .collect();
    for from in 0..n {
        for to in (0..n).filter(|&t| t != from) {
            let (qtx, qrx) = bounded(slots);
            let (ftx, frx) = bounded(slots);
            for _ in 0..slots {
                // Cannot fail: the channel holds exactly `slots`.
                let _ = ftx.try_send(HandoffBuf {
                    bytes: vec![0; frame_size].into_boxed_slice(),
                    len: 0,
                    port: 0,
                    arp: false,
                });
            }
            ends[from].out[to] = Some(Lane {
                queue: qtx,
                free: frx,
                wake: Arc::clone(&wakes[to]),
                wake_due: false,
            });
            ends[to].inbound.push(InLane {
                queue: qrx,
                free: ftx,
            });
        }
    }
    ends
}

/// Where [`Handoff::owner`] sends a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Steer {
    /// The worker owning its flow.
    Worker(usize),
    /// A later fragment of this datagram, whose first fragment has not come
    /// through this worker (yet).
    AwaitFirst(FragKey),
}

impl Handoff {
    /// This worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Where `ip` (an IPv4 datagram) goes: the worker owning its flow
    /// (`Shard::owner`), except for a fragmented datagram. Its first fragment
    /// steers by its ports like any packet, and the worker it goes to is
    /// remembered; its later fragments, which carry no ports, go to the same
    /// worker, whose shard holds their translation (`tandem_state::frag`). A
    /// datagram's fragments arrive on one queue (NICs hash fragments, the
    /// first included, on addresses alone; a veth or socket sends them in one
    /// go), so this worker sees its first before its later ones, unless they
    /// were reordered on the way: a later fragment whose first this worker
    /// has not seen is [`Steer::AwaitFirst`] (the forwarder holds it,
    /// `crate::fraghold`). `now` in ns.
    pub(crate) fn owner(&mut self, now: u64, shard: &Shard, ip: &[u8]) -> Steer {
        match fragment(ip) {
            Some(Fragment::First { key, len }) => {
                let to = shard.owner(ip);
                // Full: its later fragments are held and then dropped
                // (counted), as if their first had not come.
                let _ = self.frag_owner.first(now, key, len, to);
                Steer::Worker(usize::from(to))
            }
            Some(Fragment::Later {
                key,
                offset,
                len,
                more,
            }) => match self.frag_owner.later(now, &key, offset, len, more) {
                Some(to) => Steer::Worker(usize::from(to)),
                None => Steer::AwaitFirst(key),
            },
            None => Steer::Worker(usize::from(shard.owner(ip))),
        }
    }

    /// Copies `frame`, received on `port`, into the ring to worker `to`.
    pub(crate) fn push(
        &mut self,
        to: usize,
        port: usize,
        frame: &[u8],
        arp: bool,
    ) -> Result<(), PushError> {
        let Some(lane) = self.out.get_mut(to).and_then(Option::as_mut) else {
            return Err(PushError::Full);
        };
        let Ok(mut b) = lane.free.try_recv() else {
            return Err(PushError::Full);
        };
        let Some(dst) = b.bytes.get_mut(..frame.len()) else {
            // Back on the free list: this end holds no sender for it, so
            // queue it empty; the consumer recycles it (`len` 0 is skipped).
            b.len = 0;
            let _ = lane.queue.try_send(b);
            lane.wake_due = true;
            return Err(PushError::TooLong);
        };
        dst.copy_from_slice(frame);
        b.len = frame.len() as u32;
        b.port = port as u16;
        b.arp = arp;
        // Cannot be full: the queue holds as many as there are buffers. A
        // disconnected consumer (shutdown) drops the buffer.
        let _ = lane.queue.try_send(b);
        lane.wake_due = true;
        Ok(())
    }

    /// Copies an ARP frame to every other worker, learn-only; returns
    /// `(copies queued, rings full)`.
    pub(crate) fn fan_out_arp(&mut self, port: usize, frame: &[u8]) -> (u64, u64) {
        let (mut sent, mut full) = (0, 0);
        for to in 0..self.workers {
            if to == self.worker {
                continue;
            }
            match self.push(to, port, frame, true) {
                Ok(()) => sent += 1,
                Err(_) => full += 1,
            }
        }
        (sent, full)
    }

    /// Wakes every worker something was queued for since the last call.
    pub(crate) fn wake_due(&mut self) {
        for lane in self.out.iter_mut().flatten() {
            if lane.wake_due {
                lane.wake_due = false;
                lane.wake.wake();
            }
        }
    }

    /// Is a frame waiting for this worker?
    pub fn pending(&self) -> bool {
        self.stashed.is_some() || self.inbound.iter().any(|l| !l.queue.is_empty())
    }

    /// The next queued frame, round robin over the incoming rings (a frame
    /// put back by [`Handoff::put_back`] first), with the ring it came from.
    /// Give the buffer back with [`Handoff::recycle`].
    pub(crate) fn take(&mut self) -> Option<(usize, HandoffBuf)> {
        if let Some(s) = self.stashed.take() {
            return Some(s);
        }
        let lanes = self.inbound.len();
        for _ in 0..lanes {
            let i = self.next_in;
            self.next_in = (i + 1) % lanes;
            if let Ok(b) = self.inbound[i].queue.try_recv() {
                return Some((i, b));
            }
        }
        None
    }

    /// Keeps a taken frame for the next [`Handoff::take`] (the backend had
    /// no free frame for it).
    pub(crate) fn put_back(&mut self, lane: usize, b: HandoffBuf) {
        self.stashed = Some((lane, b));
    }

    /// Returns a consumed buffer to its ring's free list.
    pub(crate) fn recycle(&mut self, lane: usize, mut b: HandoffBuf) {
        b.len = 0;
        if let Some(l) = self.inbound.get(lane) {
            let _ = l.free.try_send(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP fragment 198.18.0.2 → 198.19.0.2 with IP ID `id`; the first (offset 0) carries
    /// source port `sport`.
    fn fragment(sport: u16, id: u16, offset8: u16, more: bool) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[0] = 0x45;
        b[2..4].copy_from_slice(&28u16.to_be_bytes());
        b[4..6].copy_from_slice(&id.to_be_bytes());
        let mf = if more { 0x2000 } else { 0 };
        b[6..8].copy_from_slice(&(mf | offset8).to_be_bytes());
        b[8] = 64;
        b[9] = 17;
        b[12..16].copy_from_slice(&[198, 18, 0, 2]);
        b[16..20].copy_from_slice(&[198, 19, 0, 2]);
        if offset8 == 0 {
            b[20..22].copy_from_slice(&sport.to_be_bytes());
            b[22..24].copy_from_slice(&53u16.to_be_bytes());
        }
        b
    }

    #[test]
    fn later_fragments_follow_their_first_to_its_worker() {
        let wakes: Vec<_> = (0..2).map(|_| Arc::new(WakeFd::new().unwrap())).collect();
        let mut ends = mesh(8, 64, &wakes);
        let h = &mut ends[0];
        let shard = Shard::new(&tandem_state::StateConfig::default(), 0, 2, 1).unwrap();
        let mut elsewhere = 0;
        for i in 0..64u16 {
            let first = fragment(10_000 + i, i, 0, true);
            let later = fragment(0, i, 1, false);
            let Steer::Worker(to) = h.owner(0, &shard, &first) else {
                panic!("a first fragment steers to a worker");
            };
            assert_eq!(
                to,
                usize::from(shard.owner(&first)),
                "a first steers by its ports"
            );
            elsewhere += usize::from(usize::from(shard.owner(&later)) != to);
            assert_eq!(
                h.owner(1, &shard, &later),
                Steer::Worker(to),
                "datagram {i}"
            );
        }
        assert!(
            elsewhere > 0,
            "by their addresses alone, some later fragments would have gone to the other worker"
        );
        // The last fragment ended each datagram: a stray copy awaits a first
        // again, as does a later fragment that came before its first.
        let stray = fragment(0, 0, 1, false);
        assert!(matches!(h.owner(2, &shard, &stray), Steer::AwaitFirst(k) if k.id == 0));
        let early = fragment(0, 500, 1, false);
        assert!(matches!(h.owner(3, &shard, &early), Steer::AwaitFirst(k) if k.id == 500));
    }
}
