//! The IPv4 route table: longest-prefix match over a two-level structure
//! built for the lookup, with the connected routes of the interfaces added
//! at start.
//!
//! Layout (all preallocated in `with_capacity`; insert, remove and lookup
//! never allocate):
//! * `blocks`: one entry per /16 of the address space (65 536 × 8 bytes). It
//!   holds the longest route of length ≤ 16 covering that /16 (DIR-16
//!   style, written when such a route is added) and a bitmap of the route
//!   lengths 17..=32 present inside that /16;
//! * `slots`: an open-addressing hash of every route keyed by
//!   `(prefix, len)`, at most half full.
//!
//! A lookup reads the /16 block once, probes the hash only for the longer
//! lengths that exist inside that block, longest first, and falls back to
//! the block's short route. With the lab's handful of routes that is one
//! load and at most one or two probes, against up to 32 dependent loads for
//! the binary trie this replaced. Removal is a control-plane command and
//! rebuilds both structures from the route list.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::config::{mask, DataplaneConfig};

const NONE: u32 = u32::MAX;

/// How a route came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// The subnet of an interface.
    Connected,
    /// Configured.
    Static,
}

/// A route as shown to operators (`show route`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    pub next_hop: Option<Ipv4Addr>,
    /// Egress interface name.
    pub interface: String,
    pub kind: RouteKind,
}

/// A route in the forwarding table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: u32,
    pub prefix_len: u8,
    /// Gateway, or `None` for on-link (the destination itself is the next hop).
    pub next_hop: Option<u32>,
    pub port: usize,
    pub kind: RouteKind,
}

/// One /16 of the address space.
#[derive(Clone, Copy)]
#[repr(C)]
struct Block {
    /// Index into `routes` of the longest route of length <= 16 covering
    /// this /16, or `NONE`.
    short: u32,
    /// Bit `len - 17` set: some route of length `len` (17..=32) lies inside.
    long: u32,
}

const EMPTY_BLOCK: Block = Block {
    short: NONE,
    long: 0,
};

/// One hash slot: a route's key and its index in `routes` (`NONE`: empty).
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    prefix: u32,
    len: u32,
    route: u32,
}

const EMPTY_SLOT: Slot = Slot {
    prefix: 0,
    len: 0,
    route: NONE,
};

const BLOCKS: usize = 1 << 16;

/// Why a route could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route table full ({0} routes)")]
    Full(usize),
    #[error("a route for this prefix exists")]
    Exists,
    #[error("prefix length above 32")]
    PrefixLen,
}

/// Longest-prefix-match table with a fixed capacity.
pub struct RouteTable {
    routes: Vec<Route>,
    blocks: Vec<Block>,
    slots: Vec<Slot>,
    /// `64 - log2(slots.len())`: Fibonacci hashing keeps the top bits.
    shift: u32,
    capacity: usize,
}

impl RouteTable {
    /// An empty table for up to `capacity` routes; all memory is reserved here.
    pub fn with_capacity(capacity: usize) -> RouteTable {
        // At most half full, so linear probes stay short and always end.
        let n = (capacity * 2).max(16).next_power_of_two();
        RouteTable {
            routes: Vec::with_capacity(capacity),
            blocks: vec![EMPTY_BLOCK; BLOCKS],
            slots: vec![EMPTY_SLOT; n],
            shift: 64 - n.trailing_zeros(),
            capacity,
        }
    }

    /// The connected routes of every interface, then the static routes.
    /// The config must have passed `validate`.
    pub fn from_config(cfg: &DataplaneConfig) -> Result<RouteTable, RouteError> {
        let mut t = RouteTable::with_capacity(cfg.tables.routes);
        for (port, ifc) in cfg.interfaces.iter().enumerate() {
            let prefix = u32::from(ifc.addr) & mask(ifc.prefix_len);
            // Two interfaces on one subnet: the first one keeps the connected route.
            match t.insert(Route {
                prefix,
                prefix_len: ifc.prefix_len,
                next_hop: None,
                port,
                kind: RouteKind::Connected,
            }) {
                Ok(()) | Err(RouteError::Exists) => {}
                Err(e) => return Err(e),
            }
        }
        for r in &cfg.routes {
            t.insert(Route {
                prefix: u32::from(r.prefix),
                prefix_len: r.prefix_len,
                next_hop: r.next_hop.map(u32::from),
                port: r.interface,
                kind: RouteKind::Static,
            })?;
        }
        Ok(t)
    }

    #[inline]
    fn home(&self, prefix: u32, len: u32) -> usize {
        let k = (u64::from(prefix) << 6) | u64::from(len);
        (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The route index stored for exactly `prefix/len`, or `NONE`.
    #[inline]
    fn find(&self, prefix: u32, len: u32) -> u32 {
        let m = self.slots.len() - 1;
        let mut i = self.home(prefix, len);
        // The table is at most half full, so an empty slot ends every probe.
        loop {
            let s = &self.slots[i];
            if s.route == NONE || (s.prefix == prefix && s.len == len) {
                return s.route;
            }
            i = (i + 1) & m;
        }
    }

    /// Links route `idx` (already in `routes`) into the hash and the blocks.
    fn link(&mut self, idx: u32) {
        let r = self.routes[idx as usize];
        let len = u32::from(r.prefix_len);
        let m = self.slots.len() - 1;
        let mut i = self.home(r.prefix, len);
        while self.slots[i].route != NONE {
            i = (i + 1) & m;
        }
        self.slots[i] = Slot {
            prefix: r.prefix,
            len,
            route: idx,
        };
        let hi = (r.prefix >> 16) as usize;
        if len > 16 {
            self.blocks[hi].long |= 1 << (len - 17);
        } else {
            // Every /16 under the prefix gets it unless a longer short route
            // (<= 16, so it covers whole blocks too) already owns the block.
            let count = 1usize << (16 - len);
            for b in &mut self.blocks[hi..hi + count] {
                let longer =
                    b.short != NONE && self.routes[b.short as usize].prefix_len > r.prefix_len;
                if !longer {
                    b.short = idx;
                }
            }
        }
    }

    /// Adds a route; host bits of the prefix are ignored.
    pub fn insert(&mut self, mut r: Route) -> Result<(), RouteError> {
        if r.prefix_len > 32 {
            return Err(RouteError::PrefixLen);
        }
        r.prefix &= mask(r.prefix_len);
        if self.find(r.prefix, u32::from(r.prefix_len)) != NONE {
            return Err(RouteError::Exists);
        }
        if self.routes.len() == self.capacity {
            return Err(RouteError::Full(self.capacity));
        }
        let idx = self.routes.len() as u32;
        self.routes.push(r);
        self.link(idx);
        Ok(())
    }

    /// Removes the route for exactly `prefix/prefix_len`; true if there was one.
    /// Rebuilds the lookup structures (a control-plane operation; no allocation).
    pub fn remove(&mut self, prefix: u32, prefix_len: u8) -> bool {
        if prefix_len > 32 {
            return false;
        }
        let prefix = prefix & mask(prefix_len);
        let Some(pos) = self
            .routes
            .iter()
            .position(|r| r.prefix == prefix && r.prefix_len == prefix_len)
        else {
            return false;
        };
        self.routes.swap_remove(pos);
        // Open addressing cannot simply blank a slot (it would cut probe
        // chains), and indices moved: rebuild. Remove is rare (a command).
        self.slots.fill(EMPTY_SLOT);
        self.blocks.fill(EMPTY_BLOCK);
        for i in 0..self.routes.len() {
            self.link(i as u32);
        }
        true
    }

    /// Longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, dst: u32) -> Option<&Route> {
        let b = self.blocks[(dst >> 16) as usize];
        let mut long = b.long;
        while long != 0 {
            // Longest length present in this /16 first.
            let bit = 31 - long.leading_zeros();
            long &= !(1 << bit);
            let len = bit + 17;
            let r = self.find(dst & (u32::MAX << (32 - len)), len);
            if r != NONE {
                return self.routes.get(r as usize);
            }
        }
        self.routes.get(b.short as usize)
    }

    /// Every route, in insertion order (connected first).
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(p: [u8; 4], len: u8, port: usize) -> Route {
        Route {
            prefix: u32::from(Ipv4Addr::from(p)),
            prefix_len: len,
            next_hop: None,
            port,
            kind: RouteKind::Static,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::with_capacity(8);
        t.insert(r([0, 0, 0, 0], 0, 9)).unwrap();
        t.insert(r([198, 18, 0, 0], 15, 1)).unwrap();
        t.insert(r([198, 18, 4, 0], 24, 2)).unwrap();
        t.insert(r([198, 18, 4, 7], 32, 3)).unwrap();
        let cases = [
            ([198, 18, 4, 7], Some(3)),
            ([198, 18, 4, 8], Some(2)),
            ([198, 19, 200, 1], Some(1)),
            ([198, 20, 0, 1], Some(9)),
            ([10, 0, 0, 1], Some(9)),
        ];
        for (dst, port) in cases {
            let got = t.lookup(u32::from(Ipv4Addr::from(dst))).map(|r| r.port);
            assert_eq!(got, port, "{dst:?}");
        }
        assert_eq!(t.insert(r([198, 18, 4, 9], 24, 5)), Err(RouteError::Exists));
        assert!(t.remove(u32::from(Ipv4Addr::new(0, 0, 0, 0)), 0));
        assert_eq!(t.lookup(u32::from(Ipv4Addr::new(10, 0, 0, 1))), None);
        assert_eq!(
            t.lookup(u32::from(Ipv4Addr::new(198, 18, 4, 7)))
                .map(|r| r.port),
            Some(3)
        );
    }

    #[test]
    fn full_table_refuses() {
        let mut t = RouteTable::with_capacity(1);
        t.insert(r([10, 0, 0, 0], 8, 0)).unwrap();
        assert_eq!(t.insert(r([11, 0, 0, 0], 8, 0)), Err(RouteError::Full(1)));
    }

    proptest! {
        /// The trie agrees with a linear scan for the longest matching prefix,
        /// also after removals.
        #[test]
        fn trie_matches_linear_model(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..60),
            remove_every in 2usize..5,
        ) {
            let mut t = RouteTable::with_capacity(routes.len());
            let mut model: Vec<(u32, u8, usize)> = Vec::new();
            for (i, (p, len)) in routes.iter().enumerate() {
                let p = p & mask(*len);
                let res = t.insert(Route { prefix: p, prefix_len: *len, next_hop: None, port: i, kind: RouteKind::Static });
                if model.iter().any(|m| m.0 == p && m.1 == *len) {
                    prop_assert_eq!(res, Err(RouteError::Exists));
                } else {
                    prop_assert_eq!(res, Ok(()));
                    model.push((p, *len, i));
                }
            }
            for k in (0..model.len()).rev().step_by(remove_every) {
                let (p, len, _) = model.remove(k);
                prop_assert!(t.remove(p, len));
            }
            for dst in probes {
                let want = model.iter().filter(|m| dst & mask(m.1) == m.0).max_by_key(|m| m.1).map(|m| m.2);
                prop_assert_eq!(t.lookup(dst).map(|r| r.port), want);
            }
        }
    }
}
