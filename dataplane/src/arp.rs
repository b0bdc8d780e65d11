//! The ARP (neighbour) table of one worker and the bounded queue of frames
//! held while their next hop is being resolved. Fixed capacity, decided at
//! start; nothing here allocates after `new` (STYLE habit 7).
//!
//! Entries live in a slab (stable indices) found through an open-addressing
//! index of `u32` slab indices (linear probing, load factor ≤ 1/2, deletion
//! by backward shift, so there are no tombstones to clean up).
//!
//! States (what `show arp` prints):
//! * `incomplete`: resolution in progress; frames may be held for it.
//!   Requests go out every `retry`, at most `1 + max_retries` of them; `retry`
//!   after the last one the entry is dropped and its held frames freed.
//! * `reachable`: confirmed less than `reachable` ago.
//! * `stale`: confirmed longer ago. Still used for forwarding (as Linux does);
//!   the first use starts unicast probes to the cached MAC, `retry` apart, and
//!   an entry whose `1 + max_retries` probes all go unanswered is removed.
//!
//! Learning follows RFC 826's merge rule: any ARP packet whose sender is in
//! the table updates that entry; a new entry is created only when the packet
//! was addressed to us (the forwarder decides).
//!
//! Full-table policy: evict the stale entry confirmed longest ago; if there is
//! none (everything reachable or incomplete), refuse and let the caller count
//! `arp_table_full`. Incomplete entries are never evicted: they hold frames.
//!
//! The hash is a fixed multiplicative one: entries are only created for
//! addresses on a connected subnet, so an attacker's key space is small.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;
use tandem_io::{Frame, PortId};

use crate::config::ArpTimers;
use crate::time::Timestamp;

const NONE: u32 = u32::MAX;

/// Neighbour state as shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArpState {
    Incomplete,
    Reachable,
    Stale,
}

impl ArpState {
    pub fn as_str(self) -> &'static str {
        match self {
            ArpState::Incomplete => "incomplete",
            ArpState::Reachable => "reachable",
            ArpState::Stale => "stale",
        }
    }
}

impl std::fmt::Display for ArpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry as copied out for a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRecord {
    pub port: PortId,
    pub ip: Ipv4Addr,
    /// All zero while incomplete.
    pub mac: [u8; 6],
    pub state: ArpState,
    /// Time since the entry was last confirmed (or created, if incomplete).
    pub age: Duration,
}

#[derive(Clone, Copy)]
struct Neigh {
    key: u64,
    mac: [u8; 6],
    live: bool,
    incomplete: bool,
    confirmed: Timestamp,
    /// Requests/probes sent in the current resolution or probe round (0: not probing).
    probes: u32,
    next_probe: Timestamp,
    head: u32,
    tail: u32,
    held: u32,
}

const DEAD: Neigh = Neigh {
    key: 0,
    mac: [0; 6],
    live: false,
    incomplete: false,
    confirmed: Timestamp::ZERO,
    probes: 0,
    next_probe: Timestamp::NEVER,
    head: NONE,
    tail: NONE,
    held: 0,
};

#[derive(Clone, Copy)]
struct Held {
    frame: Frame,
    rx_port: u16,
    next: u32,
}

/// What forwarding to a next hop can do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Send to `mac`. If `probe`, the entry just went into probing: send a
    /// unicast ARP request to `mac` as well.
    Ready { mac: [u8; 6], probe: bool },
    /// Resolution in progress at slab index: hold the frame.
    Pending(usize),
    /// No entry: create one (`create_incomplete`) and send a request.
    Missing,
}

/// Outcome of learning a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Not in the table and not created.
    Ignored,
    Updated,
    Created,
    /// An incomplete entry became reachable: release its held frames with `pop_held`.
    Resolved(usize),
    /// Table full and nothing evictable.
    Refused,
}

/// Timer output of [`ArpTable::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpEvent {
    /// Send an ARP request for `ip` on `port`: broadcast if `mac` is `None`
    /// (resolution), unicast to `mac` otherwise (probe of a stale entry).
    Request {
        port: PortId,
        ip: u32,
        mac: Option<[u8; 6]>,
    },
    /// A held frame whose next hop never answered; the callee owns it now.
    Unresolved {
        frame: Frame,
        rx_port: PortId,
        port: PortId,
        ip: u32,
    },
}

/// Refused: the table is full and holds no stale entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// Refused to hold a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingFull;

/// Neighbour table plus held-frame queue. See the module doc.
pub struct ArpTable {
    slab: Vec<Neigh>,
    free: Vec<u32>,
    index: Vec<u32>,
    shift: u32,
    live: usize,
    held: Vec<Held>,
    held_free: u32,
    held_used: usize,
    per_hop: u32,
    timers: ArpTimers,
    next_sweep: Timestamp,
    /// Bumped whenever a resolved neighbour goes or changes MAC: the flow
    /// offload table has MACs baked in and is cleared then (`crate::offload`).
    changes: u64,
}

fn key(port: PortId, ip: u32) -> u64 {
    ((port as u64) << 32) | u64::from(ip)
}

impl ArpTable {
    /// `capacity` entries, `pending` held frames in all, `per_hop` per next hop.
    pub fn new(capacity: usize, pending: usize, per_hop: usize, timers: ArpTimers) -> ArpTable {
        let slots = (capacity * 2).next_power_of_two().max(4);
        let held = (0..pending)
            .map(|i| Held {
                frame: Frame::default(),
                rx_port: 0,
                next: if i + 1 < pending { i as u32 + 1 } else { NONE },
            })
            .collect();
        ArpTable {
            slab: vec![DEAD; capacity],
            free: (0..capacity as u32).rev().collect(),
            index: vec![NONE; slots],
            shift: 64 - slots.trailing_zeros(),
            live: 0,
            held,
            held_free: if pending > 0 { 0 } else { NONE },
            held_used: 0,
            per_hop: per_hop as u32,
            timers,
            next_sweep: Timestamp::NEVER,
            changes: 0,
        }
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    fn home(&self, k: u64) -> usize {
        // Fibonacci hashing: the top bits of k * 2^64/phi.
        (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    fn find(&self, k: u64) -> Option<(usize, usize)> {
        let mut pos = self.home(k);
        loop {
            let v = self.index[pos];
            if v == NONE {
                return None;
            }
            if self.slab[v as usize].key == k {
                return Some((pos, v as usize));
            }
            pos = (pos + 1) & self.mask();
        }
    }

    pub fn lookup(&self, port: PortId, ip: u32) -> Option<usize> {
        self.find(key(port, ip)).map(|(_, i)| i)
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Frames held for all next hops together.
    pub fn held_len(&self) -> usize {
        self.held_used
    }

    /// When `poll` has work next (`Timestamp::NEVER`: nothing armed).
    pub fn poll_timeout(&self) -> Timestamp {
        self.next_sweep
    }

    fn is_stale(&self, e: &Neigh, now: Timestamp) -> bool {
        !e.incomplete && now.saturating_since(e.confirmed) >= self.timers.reachable
    }

    fn state_of(&self, e: &Neigh, now: Timestamp) -> ArpState {
        if e.incomplete {
            ArpState::Incomplete
        } else if self.is_stale(e, now) {
            ArpState::Stale
        } else {
            ArpState::Reachable
        }
    }

    fn arm(&mut self, at: Timestamp) {
        self.next_sweep = self.next_sweep.min(at);
    }

    /// Forwarding asks for the MAC of `ip` on `port`.
    #[inline]
    pub fn resolve(&mut self, now: Timestamp, port: PortId, ip: u32) -> Resolution {
        let Some(i) = self.lookup(port, ip) else {
            return Resolution::Missing;
        };
        let e = self.slab[i];
        if e.incomplete {
            return Resolution::Pending(i);
        }
        let probe = e.probes == 0 && self.is_stale(&e, now);
        if probe {
            let at = now + self.timers.retry;
            let e = &mut self.slab[i];
            e.probes = 1;
            e.next_probe = at;
            self.arm(at);
        }
        Resolution::Ready { mac: e.mac, probe }
    }

    fn insert(&mut self, now: Timestamp, port: PortId, ip: u32) -> Result<usize, TableFull> {
        let i = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                let victim = (0..self.slab.len())
                    .filter(|&i| self.slab[i].live && self.is_stale(&self.slab[i], now))
                    .min_by_key(|&i| self.slab[i].confirmed)
                    .ok_or(TableFull)?;
                self.remove(victim);
                self.free.pop().ok_or(TableFull)? as usize
            }
        };
        let k = key(port, ip);
        self.slab[i] = Neigh {
            key: k,
            live: true,
            confirmed: now,
            ..DEAD
        };
        let mut pos = self.home(k);
        while self.index[pos] != NONE {
            pos = (pos + 1) & self.mask();
        }
        self.index[pos] = i as u32;
        self.live += 1;
        Ok(i)
    }

    /// Removes slab entry `i` (its held frames must have been taken).
    fn remove(&mut self, i: usize) {
        let Some((mut hole, _)) = self.find(self.slab[i].key) else {
            return;
        };
        // Backward-shift deletion: pull later members of the probe run into
        // the hole when the hole lies on their path from home.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let v = self.index[j];
            if v == NONE {
                break;
            }
            let home = self.home(self.slab[v as usize].key);
            if (hole.wrapping_sub(home) & mask) < (j.wrapping_sub(home) & mask) {
                self.index[hole] = v;
                hole = j;
            }
        }
        self.index[hole] = NONE;
        debug_assert_eq!(self.slab[i].held, 0);
        if !self.slab[i].incomplete {
            self.changes += 1;
        }
        self.slab[i] = DEAD;
        self.free.push(i as u32);
        self.live -= 1;
    }

    /// Creates an incomplete entry for a next hop; the caller sends the
    /// first request now (it counts as request 1).
    pub fn create_incomplete(
        &mut self,
        now: Timestamp,
        port: PortId,
        ip: u32,
    ) -> Result<usize, TableFull> {
        let i = self.insert(now, port, ip)?;
        let at = now + self.timers.retry;
        let e = &mut self.slab[i];
        e.incomplete = true;
        e.probes = 1;
        e.next_probe = at;
        self.arm(at);
        Ok(i)
    }

    /// Holds `frame` (received on `rx_port`) until entry `i` resolves.
    pub fn hold(&mut self, i: usize, frame: Frame, rx_port: PortId) -> Result<(), PendingFull> {
        if self.held_free == NONE || self.slab[i].held >= self.per_hop || !self.slab[i].incomplete {
            return Err(PendingFull);
        }
        let n = self.held_free;
        self.held_free = self.held[n as usize].next;
        self.held[n as usize] = Held {
            frame,
            rx_port: rx_port as u16,
            next: NONE,
        };
        self.held_used += 1;
        let e = &mut self.slab[i];
        if e.tail == NONE {
            e.head = n;
        } else {
            self.held[e.tail as usize].next = n;
        }
        e.tail = n;
        e.held += 1;
        Ok(())
    }

    /// Port and MAC of entry `i` (all zero MAC while incomplete).
    pub fn neighbour(&self, i: usize) -> (PortId, [u8; 6]) {
        let e = &self.slab[i];
        ((e.key >> 32) as PortId, e.mac)
    }

    /// Takes the oldest frame held for entry `i`, with its receive port.
    pub fn pop_held(&mut self, i: usize) -> Option<(Frame, PortId)> {
        let e = &mut self.slab[i];
        if e.head == NONE {
            return None;
        }
        let n = e.head;
        let h = self.held[n as usize];
        e.head = h.next;
        if e.head == NONE {
            e.tail = NONE;
        }
        e.held -= 1;
        self.held[n as usize].next = self.held_free;
        self.held_free = n;
        self.held_used -= 1;
        Some((h.frame, usize::from(h.rx_port)))
    }

    /// The sender `ip` on `port` is at `mac` (RFC 826 merge). Creates the
    /// entry if `create` and it does not exist.
    pub fn learn(
        &mut self,
        now: Timestamp,
        port: PortId,
        ip: u32,
        mac: [u8; 6],
        create: bool,
    ) -> Learned {
        let (i, outcome) = match self.lookup(port, ip) {
            Some(i) => {
                let out = if self.slab[i].incomplete {
                    Learned::Resolved(i)
                } else {
                    Learned::Updated
                };
                (i, out)
            }
            None if create => match self.insert(now, port, ip) {
                Ok(i) => (i, Learned::Created),
                Err(TableFull) => return Learned::Refused,
            },
            None => return Learned::Ignored,
        };
        let e = &mut self.slab[i];
        if !e.incomplete && e.mac != mac {
            self.changes += 1;
        }
        e.mac = mac;
        e.incomplete = false;
        e.confirmed = now;
        e.probes = 0;
        e.next_probe = Timestamp::NEVER;
        outcome
    }

    /// Runs due timers: retries, probes, give-ups. `f` receives the requests
    /// to send and the frames to dispose of. Does nothing before `poll_timeout()`.
    pub fn poll(&mut self, now: Timestamp, mut f: impl FnMut(ArpEvent)) {
        if now < self.next_sweep {
            return;
        }
        let mut next = Timestamp::NEVER;
        for i in 0..self.slab.len() {
            let e = self.slab[i];
            if !e.live || e.probes == 0 {
                continue;
            }
            let port = (e.key >> 32) as PortId;
            let ip = e.key as u32;
            if now >= e.next_probe {
                if e.probes <= self.timers.max_retries {
                    f(ArpEvent::Request {
                        port,
                        ip,
                        mac: (!e.incomplete).then_some(e.mac),
                    });
                    let at = now + self.timers.retry;
                    let e = &mut self.slab[i];
                    e.probes += 1;
                    e.next_probe = at;
                    next = next.min(at);
                } else {
                    while let Some((frame, rx_port)) = self.pop_held(i) {
                        f(ArpEvent::Unresolved {
                            frame,
                            rx_port,
                            port,
                            ip,
                        });
                    }
                    self.remove(i);
                }
            } else {
                next = next.min(e.next_probe);
            }
        }
        self.next_sweep = next;
    }

    /// How many times a resolved neighbour went or changed MAC.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Every live entry.
    pub fn for_each(&self, now: Timestamp, mut f: impl FnMut(ArpRecord)) {
        for e in self.slab.iter().filter(|e| e.live) {
            f(ArpRecord {
                port: (e.key >> 32) as PortId,
                ip: Ipv4Addr::from(e.key as u32),
                mac: e.mac,
                state: self.state_of(e, now),
                age: now.saturating_since(e.confirmed),
            });
        }
    }

    /// The address of the `n`-th most recently confirmed resolved entry on
    /// `port` (0: the most recent), for the seeds' ARP test ("an ARP request
    /// for the IP address in the most recent entry in its ARP table", then
    /// "the *next* entry"). O(n × capacity), no allocation; used a few times
    /// per interface test, never per packet.
    pub fn nth_recent(&self, port: PortId, n: usize) -> Option<u32> {
        let on_port = |e: &&Neigh| e.live && !e.incomplete && (e.key >> 32) as PortId == port;
        // Entries ordered by (confirmed, key), newest first; walk down n times.
        let mut bound: Option<(Timestamp, u64)> = None;
        for _ in 0..=n {
            bound = Some(
                self.slab
                    .iter()
                    .filter(on_port)
                    .map(|e| (e.confirmed, e.key))
                    .filter(|k| bound.is_none_or(|b| *k < b))
                    .max()?,
            );
        }
        bound.map(|(_, k)| k as u32)
    }

    /// State of `ip` on `port`, if present.
    pub fn state(&self, now: Timestamp, port: PortId, ip: u32) -> Option<ArpState> {
        self.lookup(port, ip)
            .map(|i| self.state_of(&self.slab[i], now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn timers() -> ArpTimers {
        ArpTimers {
            reachable: Duration::from_secs(30),
            retry: Duration::from_secs(1),
            max_retries: 2,
            garp_count: 1,
            garp_interval: Duration::from_secs(1),
        }
    }

    const M: [u8; 6] = [2, 0, 0, 0, 0, 9];

    #[test]
    fn incomplete_retries_then_gives_up_and_returns_held_frames() {
        let mut t = ArpTable::new(4, 4, 2, timers());
        let now = Timestamp::ZERO;
        assert_eq!(t.resolve(now, 1, 7), Resolution::Missing);
        let i = t.create_incomplete(now, 1, 7).unwrap();
        for a in 0..3 {
            let r = t.hold(i, Frame { addr: a, len: 1 }, 0);
            assert_eq!(r.is_ok(), a < 2, "per-hop cap");
        }
        let mut events = Vec::new();
        for s in 0..=4 {
            t.poll(Timestamp::from_millis(s * 1000), |e| events.push((s, e)));
        }
        let req = |s| {
            (
                s,
                ArpEvent::Request {
                    port: 1,
                    ip: 7,
                    mac: None,
                },
            )
        };
        assert_eq!(events[..2], [req(1), req(2)]);
        assert!(matches!(
            events[2],
            (
                3,
                ArpEvent::Unresolved {
                    frame: Frame { addr: 0, .. },
                    ..
                }
            )
        ));
        assert!(matches!(
            events[3],
            (
                3,
                ArpEvent::Unresolved {
                    frame: Frame { addr: 1, .. },
                    ..
                }
            )
        ));
        assert_eq!(events.len(), 4);
        assert!(t.is_empty());
        assert_eq!(t.held_len(), 0);
        assert_eq!(t.poll_timeout(), Timestamp::NEVER);
    }

    #[test]
    fn reply_resolves_and_releases_in_order() {
        let mut t = ArpTable::new(4, 4, 4, timers());
        let i = t.create_incomplete(Timestamp::ZERO, 0, 7).unwrap();
        t.hold(i, Frame { addr: 10, len: 1 }, 1).unwrap();
        t.hold(i, Frame { addr: 20, len: 1 }, 1).unwrap();
        assert_eq!(
            t.learn(Timestamp::ZERO, 0, 7, M, false),
            Learned::Resolved(i)
        );
        assert_eq!(t.pop_held(i).map(|h| h.0.addr), Some(10));
        assert_eq!(t.pop_held(i).map(|h| h.0.addr), Some(20));
        assert_eq!(t.pop_held(i), None);
        assert_eq!(
            t.resolve(Timestamp::ZERO, 0, 7),
            Resolution::Ready {
                mac: M,
                probe: false
            }
        );
    }

    #[test]
    fn stale_entry_is_probed_then_removed() {
        let mut t = ArpTable::new(4, 4, 4, timers());
        t.learn(Timestamp::ZERO, 0, 7, M, true);
        let t30 = Timestamp::from_millis(30_000);
        assert_eq!(t.state(t30, 0, 7), Some(ArpState::Stale));
        assert_eq!(
            t.resolve(t30, 0, 7),
            Resolution::Ready {
                mac: M,
                probe: true
            }
        );
        assert_eq!(
            t.resolve(t30, 0, 7),
            Resolution::Ready {
                mac: M,
                probe: false
            }
        );
        let mut probes = 0;
        for s in 31..=34 {
            t.poll(Timestamp::from_millis(s * 1000), |e| {
                assert_eq!(
                    e,
                    ArpEvent::Request {
                        port: 0,
                        ip: 7,
                        mac: Some(M)
                    }
                );
                probes += 1;
            });
        }
        assert_eq!(probes, 2);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_evicts_oldest_stale_else_refuses() {
        let mut t = ArpTable::new(2, 1, 1, timers());
        t.learn(Timestamp::ZERO, 0, 1, M, true);
        t.learn(Timestamp::from_millis(1), 0, 2, M, true);
        assert_eq!(
            t.learn(Timestamp::from_millis(2), 0, 3, M, true),
            Learned::Refused
        );
        let later = Timestamp::from_millis(40_000);
        assert_eq!(t.learn(later, 0, 3, M, true), Learned::Created);
        assert_eq!(t.lookup(0, 1), None, "oldest stale evicted");
        assert!(t.lookup(0, 2).is_some());
    }

    #[test]
    fn nth_recent_walks_entries_of_one_port_newest_first() {
        let mut t = ArpTable::new(8, 1, 1, timers());
        let at = Timestamp::from_millis;
        t.learn(at(1), 0, 10, M, true);
        t.learn(at(3), 0, 11, M, true);
        t.learn(at(2), 0, 12, M, true);
        t.learn(at(9), 1, 13, M, true);
        t.create_incomplete(at(10), 0, 14).unwrap();
        let got: Vec<_> = (0..5).map(|n| t.nth_recent(0, n)).collect();
        assert_eq!(got, [Some(11), Some(12), Some(10), None, None]);
        assert_eq!(t.nth_recent(1, 0), Some(13));
        assert_eq!(t.nth_recent(2, 0), None);
    }

    proptest! {
        /// The open-addressing index agrees with a HashMap model under
        /// random inserts and removals (exercises backward-shift deletion).
        #[test]
        fn index_matches_model(ops in proptest::collection::vec((any::<bool>(), 0u32..24, 0usize..3), 1..200)) {
            let mut t = ArpTable::new(16, 1, 1, timers());
            let mut model: HashMap<(usize, u32), ()> = HashMap::new();
            for (add, ip, port) in ops {
                if add {
                    if model.len() < 16 && !model.contains_key(&(port, ip)) {
                        prop_assert_eq!(t.learn(Timestamp::ZERO, port, ip, M, true), Learned::Created);
                        model.insert((port, ip), ());
                    }
                } else if let Some(i) = t.lookup(port, ip) {
                    t.remove(i);
                    prop_assert!(model.remove(&(port, ip)).is_some());
                }
                for p in 0..3 {
                    for a in 0..24 {
                        prop_assert_eq!(t.lookup(p, a).is_some(), model.contains_key(&(p, a)));
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
