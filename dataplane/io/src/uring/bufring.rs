//! The provided-buffer ring (IORING_REGISTER_PBUF_RING) in our own memory:
//! an array of `{addr, len, bid}` entries the kernel consumes from its head
//! while we append at the tail. The tail is the `resv` field of entry 0
//! (`struct io_uring_buf_ring`), published with a release store after the
//! entries it covers are written.
//!
//! This type only writes memory; registering it with a ring is the
//! backend's job, which is why it can be tested over plain memory.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::region::Region;
use crate::OpenError;

/// Layout of `struct io_uring_buf` (include/uapi/linux/io_uring.h).
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    /// In entry 0 this is the ring's tail; never written through an entry.
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RawBuf>() == 16);

pub(crate) struct BufRing {
    mem: Region,
    entries: u32,
    /// Our tail, ahead of the published one by the entries pushed since the
    /// last `publish`.
    tail: u16,
}

impl BufRing {
    /// A ring of `entries` (a power of two, ≤ 32768) on its own pages.
    pub(crate) fn new(entries: u32) -> Result<BufRing, OpenError> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(OpenError::Config(format!(
                "buffer ring of {entries} entries: must be a power of two ≤ 32768"
            )));
        }
        // Zeroed memory: tail 0, no entries.
        let mem = Region::new(entries as usize * std::mem::size_of::<RawBuf>(), false)?;
        Ok(BufRing {
            mem,
            entries,
            tail: 0,
        })
    }

    /// Address of the ring for IORING_REGISTER_PBUF_RING.
    pub(crate) fn addr(&self) -> u64 {
        self.mem.as_ptr() as u64
    }

    pub(crate) fn entries(&self) -> u32 {
        self.entries
    }

    fn entry_ptr(&self, index: u16) -> *mut RawBuf {
        let i = (index as u32 & (self.entries - 1)) as usize;
        // In bounds: i < entries and the region holds `entries` RawBufs.
        self.mem.as_ptr().cast::<RawBuf>().wrapping_add(i)
    }

    /// Append a buffer at the tail (not visible to the kernel until
    /// `publish`). The caller guarantees, through the id accounting of
    /// `BidMap`, that fewer than `entries` buffers are unconsumed, so this
    /// never overwrites an entry the kernel has yet to read.
    pub(crate) fn push(&mut self, addr: u64, len: u32, bid: u16) {
        let e = self.entry_ptr(self.tail);
        // SAFETY: `e` points into our region (index masked to the ring);
        // the slot is not owned by the kernel because it lies past the
        // published tail, and the fields are written through the raw
        // pointer so entry 0's `resv` (the tail the kernel reads) is never
        // touched.
        unsafe {
            (*e).addr = addr;
            (*e).len = len;
            (*e).bid = bid;
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn tail_atomic(&self) -> &AtomicU16 {
        let p = self.mem.as_ptr().cast::<RawBuf>();
        // SAFETY: the tail is entry 0's `resv` field, 2-byte aligned inside
        // our page-aligned region that lives as long as `self`; the kernel
        // only reads it, and all our accesses go through this atomic.
        unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*p).resv)) }
    }

    /// Make every pushed entry visible to the kernel: the release store
    /// orders the entry writes before the new tail.
    pub(crate) fn publish(&self) {
        self.tail_atomic().store(self.tail, Ordering::Release);
    }

    /// The tail the kernel sees.
    #[cfg(test)]
    pub(crate) fn published_tail(&self) -> u16 {
        self.tail_atomic().load(Ordering::Acquire)
    }

    /// The entry at ring index `index` (masked), as `(addr, len, bid)`.
    #[cfg(test)]
    pub(crate) fn entry(&self, index: u16) -> (u64, u32, u16) {
        let e = self.entry_ptr(index);
        // SAFETY: `e` points into our region; in tests no kernel shares it.
        unsafe { ((*e).addr, (*e).len, (*e).bid) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_land_at_the_masked_tail_and_publish_moves_the_tail() {
        let mut r = BufRing::new(4).unwrap();
        assert_eq!(r.entries(), 4);
        assert_eq!(r.addr() % 4096, 0, "the kernel wants a page-aligned ring");
        r.push(0x1000, 2048, 7);
        r.push(0x2000, 2048, 8);
        assert_eq!(r.published_tail(), 0, "invisible until published");
        r.publish();
        assert_eq!(r.published_tail(), 2);
        assert_eq!(r.entry(0), (0x1000, 2048, 7));
        assert_eq!(r.entry(1), (0x2000, 2048, 8));
        // Wrap around: index 4 is slot 0 again, and writing it must not
        // clobber the published tail that shares entry 0.
        r.push(0x3000, 2048, 9);
        r.push(0x4000, 2048, 10);
        r.push(0x5000, 2048, 11);
        assert_eq!(r.published_tail(), 2);
        r.publish();
        assert_eq!(r.published_tail(), 5);
        assert_eq!(r.entry(4), (0x5000, 2048, 11));
        assert_eq!(r.entry(0), (0x5000, 2048, 11));
    }

    #[test]
    fn tail_wraps_at_u16() {
        let mut r = BufRing::new(2).unwrap();
        for i in 0..70_000u32 {
            r.push(i as u64, 1, (i % 2) as u16);
        }
        r.publish();
        assert_eq!(r.published_tail(), (70_000u32 % 65_536) as u16);
    }

    #[test]
    fn sizes_that_the_kernel_refuses_are_refused_here() {
        assert!(BufRing::new(3).is_err());
        assert!(BufRing::new(65536).is_err());
    }
}
