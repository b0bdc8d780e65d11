//! State-link frame buffers: [`SyncBuf`], a fixed-capacity, 8-aligned byte buffer that moves
//! between threads by value, and [`BufPool`], the preallocated free list they come from.
//!
//! A buffer is allocated once at start-up and then circulates: pool → worker's encoder → (bounded
//! channel) → replication thread's [`crate::Sender`] ring → back to the pool when acknowledged or
//! evicted. Nothing allocates after start-up.

use zerocopy::IntoBytes;

/// A fixed-capacity frame buffer. Backed by `u64` words so that the frame (and therefore every
/// record payload, which starts at an 8-byte offset) is 8-aligned in memory.
#[derive(Debug)]
pub struct SyncBuf {
    words: Box<[u64]>,
    len: usize,
}

impl SyncBuf {
    /// Allocates a zeroed buffer of at least `capacity` bytes (rounded up to 8). Start-up only.
    pub fn with_capacity(capacity: usize) -> SyncBuf {
        SyncBuf {
            words: vec![0u64; capacity.div_ceil(8)].into_boxed_slice(),
            len: 0,
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.words.len() * 8
    }

    /// Bytes of the frame written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No frame bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame: the first `len()` bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.words.as_bytes()[..self.len]
    }

    /// The whole capacity, for writing.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        self.words.as_mut_bytes()
    }

    /// The frame, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.words.as_mut_bytes()[..len]
    }

    /// Sets the frame length (clamped to the capacity).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity());
    }

    /// Empties the buffer (the bytes are not cleared: writers always write before they count).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// A preallocated free list of [`SyncBuf`]s for one thread. Across threads, the glue moves
/// buffers through bounded channels; this type is the end of such a channel, or the whole pool
/// in a single-threaded setup (tests, benches).
#[derive(Debug)]
pub struct BufPool {
    free: Vec<SyncBuf>,
    capacity: usize,
    buf_len: usize,
}

impl BufPool {
    /// Allocates `count` buffers of `buf_len` bytes. Start-up only.
    pub fn new(count: usize, buf_len: usize) -> BufPool {
        let mut free = Vec::with_capacity(count);
        free.extend((0..count).map(|_| SyncBuf::with_capacity(buf_len)));
        BufPool {
            free,
            capacity: count,
            buf_len,
        }
    }

    /// Takes a buffer (emptied), or `None` when all are in use.
    pub fn get(&mut self) -> Option<SyncBuf> {
        let mut b = self.free.pop()?;
        b.clear();
        Some(b)
    }

    /// Returns a buffer. A buffer beyond the pool's capacity (one that came from elsewhere) is
    /// dropped rather than growing the list.
    pub fn put(&mut self, buf: SyncBuf) {
        if self.free.len() < self.capacity {
            self.free.push(buf);
        }
    }

    /// Buffers available.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Size of each buffer in bytes.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }
}
