//! `WakeFd`: an eventfd that lets another thread wake a worker blocked in
//! [`Backend::wait_or_wake`](crate::Backend::wait_or_wake), plus the
//! "parked" flag that keeps the signalling side free of syscalls while the
//! worker is busy.
//!
//! Protocol (an event count, as in Linux's futex-based queues): the worker
//! calls [`WakeFd::park`] before it blocks, re-checks its queues (and does
//! not block if any is non-empty), blocks with [`WakeFd::fd`] in its poll
//! set, then calls [`WakeFd::unpark`]. A producer pushes into a queue first
//! and then calls [`WakeFd::wake`], which writes the eventfd only if the
//! worker is parked. Both sides use `SeqCst` on the flag, so either the
//! worker's re-check sees the item or the producer sees the flag and
//! writes: a wake-up is never lost, and a busy worker costs the producer
//! one atomic swap.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// See the module doc. Shared (`Arc`) between a worker and its producers.
#[derive(Debug)]
pub struct WakeFd {
    file: File,
    parked: AtomicBool,
    /// Worker-only bookkeeping: wake-ups taken by a producer (each writes
    /// exactly 1) not yet read back. A producer's write can land after the
    /// worker's read; remembering it lets the next `park` consume it, so a
    /// late write costs one spurious wake-up, never a readable eventfd
    /// left behind (which would turn every later wait into a busy loop).
    owed: AtomicU64,
}

impl WakeFd {
    /// A non-blocking, close-on-exec eventfd.
    pub fn new() -> std::io::Result<WakeFd> {
        // SAFETY: eventfd takes no pointers; a negative return is an error
        // and is checked before the value is used as a descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd, is open, and nothing
        // else owns it: the `OwnedFd` becomes its only owner and closes it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(WakeFd {
            file: File::from(owned),
            parked: AtomicBool::new(false),
            owed: AtomicU64::new(0),
        })
    }

    /// The descriptor to add to the worker's poll set (readable once woken).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Producer side, after queueing something for the worker: wakes it if
    /// it is parked (one `write` syscall), else costs one atomic swap.
    pub fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            let _ = (&self.file).write(&1u64.to_ne_bytes());
        }
    }

    /// Worker side, before re-checking its queues and blocking.
    pub fn park(&self) {
        if self.owed.load(Ordering::Relaxed) > 0 {
            self.consume();
        }
        self.parked.store(true, Ordering::SeqCst);
    }

    /// Worker side, after blocking (or after deciding not to block): clears
    /// the flag, and if a producer woke it, resets the eventfd so the next
    /// wait blocks again (one `read` syscall, only after a real wake-up).
    pub fn unpark(&self) {
        if !self.parked.swap(false, Ordering::SeqCst) {
            // A producer cleared the flag and wrote (or is about to write).
            self.owed.fetch_add(1, Ordering::Relaxed);
            self.consume();
        }
    }

    fn consume(&self) {
        let mut buf = [0u8; 8];
        if let Ok(8) = (&self.file).read(&mut buf) {
            // The eventfd counter is the sum of the writes since the last read.
            let got = u64::from_ne_bytes(buf);
            let owed = self.owed.load(Ordering::Relaxed);
            self.owed.store(owed.saturating_sub(got), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(w: &WakeFd) -> bool {
        let mut p = libc::pollfd {
            fd: w.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn wakes_only_a_parked_worker_and_resets() {
        let w = WakeFd::new().unwrap();
        w.wake();
        assert!(!readable(&w), "not parked: no write");
        w.park();
        w.wake();
        assert!(readable(&w));
        w.unpark();
        assert!(!readable(&w), "unpark consumed the wake-up");
        w.park();
        w.unpark();
        assert!(!readable(&w));
    }
}
