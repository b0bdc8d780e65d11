//! Anti-replay sliding window over 64-bit sequence numbers: a ring of 64-bit blocks as in
//! RFC 6479 ("IPsec Anti-Replay Algorithm without Bit Shifting"), with the RFC 4303 §3.4.3
//! receive rules.
//!
//! A frame is accepted if its sequence number is above everything seen so far, or within the
//! last [`WINDOW`] numbers below the highest one and not seen before. Reordering inside the
//! window is therefore accepted; duplicates and frames older than the window are rejected.
//!
//! Use in two steps, as RFC 4303 prescribes: [`ReplayWindow::check`] before authenticating (cheap
//! rejection without running the AEAD), [`ReplayWindow::accept`] only after the frame
//! authenticated — so a forged frame can never move the window.

/// Number of 64-bit blocks in the ring. One more than the window needs, so that advancing into a
/// new block never clears bits that are still inside the window (RFC 6479 §2).
const BLOCKS: usize = 33;
/// Sequence numbers tracked below the highest one seen (inclusive of it): 2048.
pub const WINDOW: u64 = ((BLOCKS - 1) * 64) as u64;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayError {
    /// Seen before (inside the window).
    Duplicate,
    /// More than [`WINDOW`] − 1 below the highest sequence number seen.
    TooOld,
}

/// The receive-side replay state of one session direction. 272 bytes, no allocation.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest sequence number accepted (0 before any: sequence 0 is still accepted once, because
    /// its bit is clear).
    top: u64,
    bitmap: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window: every sequence number is new.
    pub const fn new() -> ReplayWindow {
        ReplayWindow {
            top: 0,
            bitmap: [0; BLOCKS],
        }
    }

    /// Highest sequence number accepted so far (0 when none).
    pub fn top(&self) -> u64 {
        self.top
    }

    #[inline]
    fn slot(seq: u64) -> (usize, u64) {
        let block = ((seq / 64) % BLOCKS as u64) as usize;
        (block, 1u64 << (seq % 64))
    }

    /// Would `seq` be accepted? Does not change the window.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (block, bit) = Self::slot(seq);
        if self.bitmap[block] & bit != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received (after it authenticated). Returns the same verdict as
    /// [`check`](Self::check) and records nothing when that verdict is an error.
    #[inline]
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        if seq > self.top {
            // Clear the blocks the window slides into (RFC 6479 §2: whole blocks, no shifting).
            let old_block = self.top / 64;
            let new_block = seq / 64;
            let advance = new_block - old_block;
            if advance >= BLOCKS as u64 {
                self.bitmap = [0; BLOCKS];
            } else {
                for b in 1..=advance {
                    let (i, _) = Self::slot((old_block + b) * 64);
                    self.bitmap[i] = 0;
                }
            }
            self.top = seq;
        }
        let (block, bit) = Self::slot(seq);
        self.bitmap[block] |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_zero_is_accepted_once() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(0), Ok(()));
        assert_eq!(w.check(0), Err(ReplayError::Duplicate));
    }

    #[test]
    fn edges_of_the_window() {
        let mut w = ReplayWindow::new();
        w.accept(10_000).unwrap();
        assert_eq!(w.check(10_000 - WINDOW + 1), Ok(()));
        assert_eq!(w.check(10_000 - WINDOW), Err(ReplayError::TooOld));
        w.accept(10_000 - WINDOW + 1).unwrap();
        assert_eq!(w.check(10_000 - WINDOW + 1), Err(ReplayError::Duplicate));
        // A huge jump clears everything.
        w.accept(u64::MAX).unwrap();
        assert_eq!(w.check(u64::MAX - 1), Ok(()));
        assert_eq!(w.check(u64::MAX), Err(ReplayError::Duplicate));
    }
}
