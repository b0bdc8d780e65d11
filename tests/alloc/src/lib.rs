//! A counting global allocator for tandem's no-allocation tests (hot paths
//! must not allocate). A test binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: tandem_alloc_count::Counting = tandem_alloc_count::Counting;
//! ```
//!
//! and reads [`allocs`] (this thread's allocations so far) around the code
//! it checks; a test that drives the code from another thread marks that
//! thread with [`watch`] and reads [`watched_allocs`]. Counting per thread
//! keeps the test harness's other threads (other tests running in
//! parallel, the output capture) out of the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting allocations and reallocations.
pub struct Counting;

thread_local! {
    static MINE: Cell<u64> = const { Cell::new(0) };
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

static WATCHED_TOTAL: AtomicU64 = AtomicU64::new(0);

fn count() {
    // `const` thread-locals without destructors never allocate on access.
    MINE.with(|c| c.set(c.get() + 1));
    if WATCHED.with(Cell::get) {
        WATCHED_TOTAL.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters on the side do not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations and reallocations the calling thread has made so far.
pub fn allocs() -> u64 {
    MINE.with(Cell::get)
}

/// From now on (until `watch(false)`), the calling thread's allocations
/// also count in [`watched_allocs`].
pub fn watch(on: bool) {
    WATCHED.with(|w| w.set(on));
}

/// Allocations made by watched threads, all together.
pub fn watched_allocs() -> u64 {
    WATCHED_TOTAL.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    #[test]
    fn counts_this_threads_allocations_and_watched_ones() {
        let before = allocs();
        let v = std::hint::black_box(vec![1u8; 10]);
        assert!(allocs() > before);
        drop(v);
        let idle = allocs();
        std::hint::black_box(1 + 1);
        assert_eq!(allocs(), idle, "no allocation, no count");
        watch(true);
        let w = watched_allocs();
        let b = std::hint::black_box(Box::new(7u64));
        assert!(watched_allocs() > w);
        watch(false);
        drop(b);
        let w = watched_allocs();
        let c = std::thread::spawn(|| std::hint::black_box(Box::new(8u64)))
            .join()
            .unwrap();
        assert_eq!(*c, 8);
        assert_eq!(watched_allocs(), w, "an unwatched thread does not count");
    }
}
