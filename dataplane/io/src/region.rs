//! Frame memory: one page-aligned region per backend, on huge pages when the
//! machine has them (hugepage-rs), on normal pages otherwise.

use std::alloc::Layout;
use std::ptr::NonNull;

/// A zeroed, page-aligned, exclusively owned memory region.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    huge: bool,
}

// SAFETY: the region is plain memory owned exclusively by this value; moving
// it to another thread moves that exclusive ownership with it.
unsafe impl Send for Region {}

const PAGE: usize = 4096;

impl Region {
    /// Allocate `len` bytes. With `prefer_huge`, try huge pages first and
    /// fall back to normal pages, logging once which one was used.
    pub fn new(len: usize, prefer_huge: bool) -> Result<Region, crate::OpenError> {
        if len == 0 {
            return Err(crate::OpenError::Memory("zero-sized frame memory".into()));
        }
        let len = len.div_ceil(PAGE) * PAGE;
        if prefer_huge && huge_pages_available() {
            if let Ok(layout) = Layout::from_size_align(len, PAGE) {
                // SAFETY: layout has non-zero size (checked above).
                let p = unsafe { hugepage_rs::alloc(layout) };
                if let Some(ptr) = NonNull::new(p) {
                    tracing::info!(bytes = len, "frame memory on huge pages");
                    // Huge pages from mmap are zero-filled by the kernel.
                    return Ok(Region {
                        ptr,
                        len,
                        huge: true,
                    });
                }
            }
            tracing::info!(
                bytes = len,
                "huge pages exhausted (see /proc/sys/vm/nr_hugepages); frame memory on normal pages"
            );
        } else if prefer_huge {
            tracing::info!(
                bytes = len,
                "no huge pages reserved (vm.nr_hugepages = 0); frame memory on normal pages"
            );
        }
        // SAFETY: anonymous private mapping with no address hint; the result
        // is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(crate::OpenError::Memory(format!(
                "mmap of {len} bytes failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Region {
            ptr: NonNull::new(p.cast()).expect("mmap returned null without MAP_FAILED"),
            len,
            huge: false,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the region sits on huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes for the lifetime of self, and
        // mutation needs &mut self, so no mutable alias exists.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for len bytes and &mut self guarantees
        // exclusive access from Rust. (The kernel may write to frames it
        // owns; callers only touch frames the ring protocol gave them.)
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.huge {
            let layout =
                Layout::from_size_align(self.len, PAGE).expect("layout was valid at alloc");
            // SAFETY: allocated by hugepage_rs::alloc with this same layout.
            unsafe { hugepage_rs::dealloc(self.ptr.as_ptr(), layout) };
        } else {
            // SAFETY: mapped by mmap with exactly this address and length.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// Whether any huge page is free right now (reading /proc/meminfo).
pub fn huge_pages_available() -> bool {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .is_some_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_pages_are_zeroed_and_writable() {
        let mut r = Region::new(10_000, false).unwrap();
        assert_eq!(r.len(), 12_288);
        assert!(r.as_slice().iter().all(|&b| b == 0));
        r.as_mut_slice()[12_287] = 7;
        assert_eq!(r.as_slice()[12_287], 7);
    }

    #[test]
    fn zero_length_is_an_error() {
        assert!(Region::new(0, true).is_err());
    }
}
