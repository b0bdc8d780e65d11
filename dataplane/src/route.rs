//! The IPv4 route table: longest-prefix match over a binary trie stored in a
//! flat, preallocated `Vec` (one node per prefix bit, indices instead of
//! pointers), with the connected routes of the interfaces added at start.
//!
//! Why a binary trie: lookups are at most 32 dependent loads with no hashing,
//! the worst-case size is known up front (32 nodes per route plus the root),
//! and insert/remove never allocate. A multibit or DIR-24-8 table is the
//! upgrade path if route counts grow past a few thousand.

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

#[derive(Clone, Copy)]
struct Node {
    child: [u32; 2],
    /// Index into `routes`, or `NONE`.
    route: u32,
}

const EMPTY_NODE: Node = Node {
    child: [NONE, NONE],
    route: NONE,
};

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
    nodes: Vec<Node>,
    capacity: usize,
}

impl RouteTable {
    /// An empty table for up to `capacity` routes; all memory is reserved here.
    pub fn with_capacity(capacity: usize) -> RouteTable {
        let mut nodes = Vec::with_capacity(capacity * 32 + 1);
        nodes.push(EMPTY_NODE);
        RouteTable {
            routes: Vec::with_capacity(capacity),
            nodes,
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

    fn bit(addr: u32, depth: u32) -> usize {
        ((addr >> (31 - depth)) & 1) as usize
    }

    /// Adds a route; host bits of the prefix are ignored.
    pub fn insert(&mut self, mut r: Route) -> Result<(), RouteError> {
        if r.prefix_len > 32 {
            return Err(RouteError::PrefixLen);
        }
        r.prefix &= mask(r.prefix_len);
        if self
            .find_node(r.prefix, r.prefix_len)
            .is_some_and(|n| self.nodes[n].route != NONE)
        {
            return Err(RouteError::Exists);
        }
        if self.routes.len() == self.capacity {
            return Err(RouteError::Full(self.capacity));
        }
        let n = self.link(r.prefix, r.prefix_len);
        self.nodes[n].route = self.routes.len() as u32;
        self.routes.push(r);
        Ok(())
    }

    /// The node for `prefix/prefix_len`, creating the missing path. The
    /// capacity of `nodes` is 32 per route plus the root, so the pushes never
    /// reallocate.
    fn link(&mut self, prefix: u32, prefix_len: u8) -> usize {
        let mut n = 0usize;
        for depth in 0..u32::from(prefix_len) {
            let b = Self::bit(prefix, depth);
            let c = self.nodes[n].child[b];
            n = if c == NONE {
                let idx = self.nodes.len() as u32;
                self.nodes.push(EMPTY_NODE);
                self.nodes[n].child[b] = idx;
                idx as usize
            } else {
                c as usize
            };
        }
        n
    }

    fn find_node(&self, prefix: u32, prefix_len: u8) -> Option<usize> {
        let mut n = 0usize;
        for depth in 0..u32::from(prefix_len) {
            let c = self.nodes[n].child[Self::bit(prefix, depth)];
            if c == NONE {
                return None;
            }
            n = c as usize;
        }
        Some(n)
    }

    /// Removes the route for exactly `prefix/prefix_len`; true if there was one.
    /// Rebuilds the trie (a control-plane operation; no allocation).
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
        // Rebuild the links from scratch: remove is rare (a command), and a
        // rebuilt trie has no dead nodes, so the 32-per-route bound holds.
        self.nodes.clear();
        self.nodes.push(EMPTY_NODE);
        for i in 0..self.routes.len() {
            let r = self.routes[i];
            let n = self.link(r.prefix, r.prefix_len);
            self.nodes[n].route = i as u32;
        }
        true
    }

    /// Longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, dst: u32) -> Option<&Route> {
        let mut n = 0usize;
        let mut best = self.nodes[0].route;
        for depth in 0..32 {
            let c = self.nodes[n].child[Self::bit(dst, depth)];
            if c == NONE {
                break;
            }
            n = c as usize;
            let r = self.nodes[n].route;
            if r != NONE {
                best = r;
            }
        }
        self.routes.get(best as usize)
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
