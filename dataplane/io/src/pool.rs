//! A fixed free list of frame addresses, preallocated at open.

use crate::Frame;

/// LIFO free list of frame slot addresses (LIFO keeps recently used slots
/// hot in cache). Never allocates after `new`.
pub struct FramePool {
    free: Vec<u64>,
    frame_size: u32,
    count: u32,
}

impl FramePool {
    /// A pool of `count` slots of `frame_size` bytes at addresses
    /// `0, frame_size, 2*frame_size, ...`, all free.
    pub fn new(count: u32, frame_size: u32) -> FramePool {
        let free = (0..count)
            .rev()
            .map(|i| i as u64 * frame_size as u64)
            .collect();
        FramePool {
            free,
            frame_size,
            count,
        }
    }

    pub fn alloc(&mut self) -> Option<Frame> {
        self.free.pop().map(|addr| Frame { addr, len: 0 })
    }

    pub fn alloc_addr(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Return a slot. The address is rounded down to its slot start (AF_XDP
    /// RX descriptors may point past the headroom).
    pub fn free(&mut self, addr: u64) {
        let a = addr - addr % self.frame_size as u64;
        debug_assert!(a < self.count as u64 * self.frame_size as u64);
        debug_assert!(
            self.free.len() < self.count as usize,
            "double free of frame {a:#x}"
        );
        if self.free.len() < self.count as usize {
            self.free.push(a);
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.count as usize
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_round_trip_never_exceeds_capacity() {
        let mut p = FramePool::new(4, 2048);
        let got: Vec<_> = std::iter::from_fn(|| p.alloc()).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].addr, 0);
        assert!(p.alloc().is_none());
        p.free(got[2].addr + 256);
        assert_eq!(p.alloc().unwrap().addr, 4096);
    }
}
