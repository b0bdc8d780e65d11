//! Hashing for the tables: a keyed flow hash (per-shard secret, so a remote host cannot aim its
//! flows at one bucket), the open-addressing index of slab slots every table uses, the keyed PRNG
//! that picks PAT ports, and the unkeyed symmetric steering hash shared by both units.

use alloc::boxed::Box;
use alloc::vec;

use crate::FlowKey;

/// The 64×64→128 multiply folded to 64 bits (the mixing step of foldhash / wyhash).
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// splitmix64 finaliser: turns a seed into well-spread key words.
#[inline]
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A keyed hash of flow keys. The keys are derived from the per-shard random seed given to
/// `Shard::new`, so bucket positions are unpredictable from outside. (foldhash-class strength: it
/// defeats precomputed collision sets, not an attacker who can observe timing at length; the
/// tables' load factor ≤ 1/2 bounds the damage of an unlucky cluster.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keyed {
    k: [u64; 3],
}

impl Keyed {
    pub(crate) fn new(seed: u64) -> Self {
        let mut s = seed;
        Keyed {
            k: [splitmix(&mut s), splitmix(&mut s), splitmix(&mut s) | 1],
        }
    }

    #[inline]
    pub(crate) fn two(&self, a: u64, b: u64) -> u64 {
        fold_mul(fold_mul(a ^ self.k[0], b ^ self.k[1]), self.k[2])
    }

    #[inline]
    pub(crate) fn flow(&self, k: &FlowKey) -> u64 {
        let a = (u64::from(k.src) << 32) | u64::from(k.dst);
        let b = (u64::from(k.sport) << 32) | (u64::from(k.dport) << 16) | u64::from(k.proto);
        self.two(a, b)
    }
}

/// A stable, unkeyed 64-bit identifier of a flow key for record `key`s (coalescing in a frame).
/// Both units compute the same value.
#[inline]
pub(crate) fn record_key(k: &FlowKey) -> u64 {
    let a = (u64::from(k.src) << 32) | u64::from(k.dst);
    let b = (u64::from(k.sport) << 32) | (u64::from(k.dport) << 16) | u64::from(k.proto);
    fold_mul(a ^ 0x243f_6a88_85a3_08d3, b ^ 0x1319_8a2e_0370_7344) ^ a.rotate_left(17) ^ b
}

/// The symmetric steering hash: the same value for `(a:pa → b:pb)` and `(b:pb → a:pa)`.
/// Unkeyed on purpose: both units must steer a flow to the same worker index (stream k belongs to
/// shard k on both). A host can at worst unbalance workers; the tables themselves use [`Keyed`].
#[inline]
pub fn steer_tuple(proto: u8, a: u32, pa: u16, b: u32, pb: u16) -> u64 {
    let e1 = (u64::from(a) << 16) | u64::from(pa);
    let e2 = (u64::from(b) << 16) | u64::from(pb);
    let (lo, hi) = if e1 <= e2 { (e1, e2) } else { (e2, e1) };
    let h = fold_mul(
        lo ^ 0x9e37_79b9_7f4a_7c15,
        hi ^ 0xc2b2_ae3d_27d4_eb4f ^ u64::from(proto),
    );
    fold_mul(h, 0x1656_67b1_9e37_79f9)
}

/// A small keyed PRNG (xorshift64*), seeded from the shard seed, for PAT port choice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut s = seed ^ 0x5851_f42d_4c95_7f2d;
        let v = splitmix(&mut s);
        Prng(if v == 0 { 1 } else { v })
    }

    #[inline]
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The empty slot.
pub(crate) const EMPTY: u32 = u32::MAX;

/// An open-addressing index of `u32` slot values (slab index, sometimes with a tag bit), linear
/// probing, at least twice as many slots as values (load ≤ 1/2), deletion by backward shift so
/// there are no tombstones. The caller supplies the hash of a value when entries must move.
pub(crate) struct Index {
    slots: Box<[u32]>,
    mask: usize,
}

impl Index {
    /// An index able to hold `values` values at load ≤ 1/2.
    pub(crate) fn new(values: usize) -> Self {
        let n = values.saturating_mul(2).next_power_of_two().max(8);
        Index {
            slots: vec![EMPTY; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// Bytes used.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<u32>()
    }

    /// The first value on `h`'s probe sequence for which `eq` holds.
    #[inline]
    pub(crate) fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = (h as usize) & self.mask;
        // The table is never more than half full, so an empty slot ends every probe sequence;
        // the bound is belt and braces against a caller inserting beyond capacity.
        for _ in 0..self.slots.len() {
            let v = self.slots[i];
            if v == EMPTY {
                return None;
            }
            if eq(v) {
                return Some(v);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Inserts `v` (the caller has checked that it is absent and that the table has room).
    #[inline]
    pub(crate) fn insert(&mut self, h: u64, v: u32) -> bool {
        let mut i = (h as usize) & self.mask;
        for _ in 0..self.slots.len() {
            if self.slots[i] == EMPTY {
                self.slots[i] = v;
                return true;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Removes `v`, found on `h`'s probe sequence, shifting later entries back (Knuth's
    /// algorithm R). `hash_of` gives the hash of a stored value.
    pub(crate) fn remove(&mut self, h: u64, v: u32, hash_of: impl Fn(u32) -> u64) -> bool {
        let mut i = (h as usize) & self.mask;
        let mut found = false;
        for _ in 0..self.slots.len() {
            let s = self.slots[i];
            if s == EMPTY {
                break;
            }
            if s == v {
                found = true;
                break;
            }
            i = (i + 1) & self.mask;
        }
        if !found {
            return false;
        }
        self.slots[i] = EMPTY;
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = (hash_of(s) as usize) & self.mask;
            // Move s into the hole unless its home lies cyclically in (hole, j].
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.slots[hole] = s;
                self.slots[j] = EMPTY;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        true
    }

    /// Empties the index.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(EMPTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn steer_is_symmetric() {
        for i in 0..1000u32 {
            let a = i.wrapping_mul(2_654_435_761);
            let b = i ^ 0xc612_0000;
            let (pa, pb) = (i as u16, (i >> 3) as u16);
            assert_eq!(steer_tuple(6, a, pa, b, pb), steer_tuple(6, b, pb, a, pa));
        }
    }

    proptest! {
        /// The index agrees with a simple model (a Vec) under random inserts and removes, with
        /// deliberately colliding hashes.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec((any::<bool>(), 0u32..64), 0..400)) {
            let hash = |v: u32| u64::from(v % 7);
            let mut idx = Index::new(64);
            let mut model: Vec<u32> = Vec::new();
            for (ins, v) in ops {
                if ins {
                    if !model.contains(&v) {
                        prop_assert!(idx.insert(hash(v), v));
                        model.push(v);
                    }
                } else {
                    let had = model.contains(&v);
                    prop_assert_eq!(idx.remove(hash(v), v, hash), had);
                    model.retain(|&m| m != v);
                }
                for m in 0..64u32 {
                    prop_assert_eq!(idx.find(hash(m), |s| s == m).is_some(), model.contains(&m));
                }
            }
        }
    }
}
