//! IPv4 fragments: virtual reassembly.
//!
//! Only a datagram's first fragment carries the L4 header, so only it can be matched to a
//! connection, checked by the policy and translated. Its verdict is remembered under the
//! datagram's identity (source, destination, protocol, IP ID) and applied to the later fragments:
//! they pass with the same address translation, or not at all. Nothing is
//! reassembled (the appliance's "virtual reassembly"): the frames go out as they came, and the
//! receiver reassembles. Ports need no rewriting in later fragments, and the L4 checksum lives in
//! the first fragment, whose incremental update already covers the whole datagram.
//!
//! A later fragment that arrives before its first (reordered on the way) finds no entry: the
//! shard's lookup says so (`Lookup::awaiting_first`) and the forwarder holds the frame until the
//! first passes (`tandem_dataplane::fraghold`), or drops it (`drop_fragment`). An entry ends when every byte of its datagram has
//! passed (the last fragment gives the length) or after [`FRAG_TIMEOUT_NS`]; a full table refuses
//! to remember a first fragment (counted `frag_table_full`), which then passes alone.
//!
//! [`FragTable`] is generic over what is remembered: a shard keeps the translated addresses, the
//! worker handoff the worker that owns the datagram's flow (`Shard::owner` of the first fragment),
//! so that later fragments, which carry no ports to steer by, follow their first.

use alloc::boxed::Box;
use alloc::vec;

use crate::hash::Keyed;

/// How long a datagram's entry lives after its first fragment (the appliance's default
/// `fragment timeout` is 5 s).
pub const FRAG_TIMEOUT_NS: u64 = 5_000_000_000;

/// Entries per table (per shard, and per worker for steering): datagrams in flight at once. A
/// power of two.
pub const FRAG_SLOTS: usize = 1024;

/// Probes before a table counts as full for a new datagram.
const PROBES: usize = 8;

/// A datagram's identity on the wire (RFC 791: source, destination, protocol, identification).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Identification field.
    pub id: u16,
    /// Protocol.
    pub proto: u8,
}

/// What a fragment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Offset 0 with more fragments to come: carries the L4 header.
    First {
        /// The datagram.
        key: FragKey,
        /// Payload bytes of this fragment.
        len: u32,
    },
    /// Offset above 0.
    Later {
        /// The datagram.
        key: FragKey,
        /// Payload offset in bytes.
        offset: u32,
        /// Payload bytes of this fragment.
        len: u32,
        /// More fragments follow (MF set): false for the last one.
        more: bool,
    },
}

/// `Some` when `ip` (an IPv4 datagram) is a fragment. Never panics; a header too short to tell is
/// not a fragment (the parsers reject it).
pub fn fragment(ip: &[u8]) -> Option<Fragment> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let word = u16::from_be_bytes([ip[6], ip[7]]);
    let more = word & 0x2000 != 0;
    let offset = u32::from(word & 0x1fff) * 8;
    if !more && offset == 0 {
        return None;
    }
    let hl = u32::from(ip[0] & 0x0f) * 4;
    let total = u32::from(u16::from_be_bytes([ip[2], ip[3]]));
    let len = total.saturating_sub(hl);
    let key = FragKey {
        src: u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst: u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        id: u16::from_be_bytes([ip[4], ip[5]]),
        proto: ip[9],
    };
    Some(if offset == 0 {
        Fragment::First { key, len }
    } else {
        Fragment::Later {
            key,
            offset,
            len,
            more,
        }
    })
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot<V> {
    key: FragKey,
    /// 0: free.
    expires: u64,
    /// Payload bytes passed so far.
    seen: u32,
    /// The datagram's payload length, once its last fragment passed (0: not yet).
    total: u32,
    value: V,
}

/// Remembers a value per datagram from its first fragment to its last (see the module doc).
/// Preallocated; nothing allocates after [`FragTable::new`].
#[derive(Debug)]
pub struct FragTable<V: Copy + Default> {
    slots: Box<[Slot<V>]>,
    keyed: Keyed,
    /// Entries refused for want of a free slot.
    full: u64,
}

impl<V: Copy + Default> FragTable<V> {
    /// A table of [`FRAG_SLOTS`] entries; `seed` keys its hash (a remote host cannot aim its
    /// datagrams at one bucket).
    pub fn new(seed: u64) -> Self {
        FragTable {
            slots: vec![Slot::default(); FRAG_SLOTS].into_boxed_slice(),
            keyed: Keyed::new(seed ^ 0x6672_6167),
            full: 0,
        }
    }

    #[inline]
    fn home(&self, k: &FragKey) -> usize {
        let a = (u64::from(k.src) << 32) | u64::from(k.dst);
        let b = (u64::from(k.id) << 8) | u64::from(k.proto);
        self.keyed.two(a, b) as usize & (FRAG_SLOTS - 1)
    }

    fn find(&self, now: u64, k: &FragKey) -> Option<usize> {
        let h = self.home(k);
        (0..PROBES).map(|i| (h + i) & (FRAG_SLOTS - 1)).find(|&i| {
            let s = &self.slots[i];
            s.expires > now && s.key == *k
        })
    }

    /// Remembers `value` for the datagram whose first fragment (`len` payload bytes) passed.
    /// A repeated first fragment replaces the entry. `false`: the table is full (counted).
    pub fn first(&mut self, now: u64, key: FragKey, len: u32, value: V) -> bool {
        let i = self.find(now, &key).or_else(|| {
            let h = self.home(&key);
            (0..PROBES)
                .map(|i| (h + i) & (FRAG_SLOTS - 1))
                .find(|&i| self.slots[i].expires <= now)
        });
        let Some(i) = i else {
            self.full += 1;
            return false;
        };
        self.slots[i] = Slot {
            key,
            expires: now.saturating_add(FRAG_TIMEOUT_NS).max(1),
            seen: len,
            total: 0,
            value,
        };
        true
    }

    /// The value remembered for `key`'s datagram, without accounting a fragment.
    pub fn peek(&self, now: u64, key: &FragKey) -> Option<V> {
        self.find(now, key).map(|i| self.slots[i].value)
    }

    /// The value remembered for the datagram of a later fragment that passes, accounting its
    /// bytes: the entry ends once every byte of the datagram has passed. `None`: no first
    /// fragment passed (or the entry timed out).
    pub fn later(
        &mut self,
        now: u64,
        key: &FragKey,
        offset: u32,
        len: u32,
        more: bool,
    ) -> Option<V> {
        let i = self.find(now, key)?;
        let s = &mut self.slots[i];
        s.seen = s.seen.saturating_add(len);
        if !more {
            s.total = offset.saturating_add(len);
        }
        let value = s.value;
        if s.total != 0 && s.seen >= s.total {
            s.expires = 0;
        }
        Some(value)
    }

    /// Datagrams whose first fragment found the table full, since creation.
    pub fn full_count(&self) -> u64 {
        self.full
    }

    /// Live entries (a scan: for tests and `show`).
    pub fn live(&self, now: u64) -> usize {
        self.slots.iter().filter(|s| s.expires > now).count()
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| s.expires = 0);
    }

    /// Bytes used.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<Slot<V>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> FragKey {
        FragKey {
            src: 0xc612_0001,
            dst: 0xc613_0002,
            id,
            proto: 17,
        }
    }

    #[test]
    fn an_entry_lives_until_every_byte_has_passed() {
        let mut t = FragTable::<u16>::new(1);
        assert!(t.first(0, key(1), 1480, 7));
        assert_eq!(t.later(1, &key(1), 1480, 1480, true), Some(7));
        // A later fragment of another datagram finds nothing.
        assert_eq!(t.later(1, &key(2), 1480, 100, false), None);
        assert_eq!(t.later(2, &key(1), 2960, 40, false), Some(7));
        assert_eq!(t.live(2), 0, "3000 of 3000 bytes passed: the entry ended");
        assert_eq!(t.later(3, &key(1), 2960, 40, false), None);
    }

    #[test]
    fn the_last_fragment_first_still_waits_for_the_middle() {
        let mut t = FragTable::<u16>::new(1);
        assert!(t.first(0, key(1), 1480, 3));
        assert_eq!(t.later(1, &key(1), 2960, 40, false), Some(3));
        assert_eq!(t.live(1), 1);
        assert_eq!(t.later(2, &key(1), 1480, 1480, true), Some(3));
        assert_eq!(t.live(2), 0);
    }

    #[test]
    fn entries_time_out_and_a_full_table_refuses_and_counts() {
        let mut t = FragTable::<u16>::new(1);
        assert!(t.first(0, key(1), 8, 1));
        assert_eq!(t.peek(FRAG_TIMEOUT_NS - 1, &key(1)), Some(1));
        assert_eq!(t.peek(FRAG_TIMEOUT_NS, &key(1)), None);
        let mut t = FragTable::<u16>::new(1);
        let mut refused = 0;
        for id in 0..(FRAG_SLOTS as u16 + 64) {
            refused += u64::from(!t.first(0, key(id), 8, id));
        }
        assert!(
            refused >= 64,
            "more datagrams than slots: {refused} refused"
        );
        assert_eq!(t.full_count(), refused);
        // Every remembered one is found with its own value.
        let found = (0..(FRAG_SLOTS as u16 + 64))
            .filter(|&id| t.peek(0, &key(id)) == Some(id))
            .count() as u64;
        assert_eq!(found + refused, FRAG_SLOTS as u64 + 64);
        // Expired slots are reused.
        assert!(t.first(FRAG_TIMEOUT_NS, key(60_000), 8, 9));
    }

    #[test]
    fn fragment_reads_the_header() {
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&28u16.to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[9] = 17;
        assert_eq!(fragment(&ip), None, "not fragmented");
        ip[6] = 0x20; // MF, offset 0
        assert!(matches!(
            fragment(&ip),
            Some(Fragment::First { len: 8, key }) if key.id == 0x1234 && key.proto == 17
        ));
        ip[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
        assert!(matches!(
            fragment(&ip),
            Some(Fragment::Later {
                offset: 1480,
                len: 8,
                more: true,
                ..
            })
        ));
        ip[6..8].copy_from_slice(&185u16.to_be_bytes());
        assert!(matches!(
            fragment(&ip),
            Some(Fragment::Later { more: false, .. })
        ));
        assert_eq!(fragment(&ip[..19]), None);
    }
}
