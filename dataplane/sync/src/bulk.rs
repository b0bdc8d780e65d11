//! Bulk-sync progress as both ends see it, and how `show failover` prints it
//! ("bulk sync 45 % (450 000 of 1 000 000)").

use core::fmt;

/// Where a stream's bulk sync stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkPhase {
    /// None asked for since the current epoch began.
    #[default]
    Idle,
    /// Asked for (sender: by the receiver or after an eviction; receiver: request sent), not
    /// started yet.
    Requested,
    /// BULK_BEGIN sent / delivered; records flowing.
    Running,
    /// BULK_END sent / delivered.
    Done,
}

/// One stream's bulk-sync progress: `done` of `total` entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BulkProgress {
    /// Phase.
    pub phase: BulkPhase,
    /// Entries announced by BULK_BEGIN (the table size when the bulk started).
    pub total: u64,
    /// Bulk records sent / delivered so far.
    pub done: u64,
}

impl BulkProgress {
    /// Percentage done, 0–100 (100 once done; a running bulk shows at most 99 until its
    /// BULK_END, since entries created during the bulk can make `done` exceed `total`).
    pub fn percent(&self) -> u8 {
        match self.phase {
            BulkPhase::Done => 100,
            BulkPhase::Running if self.total == 0 => 99,
            BulkPhase::Running => (self.done.min(self.total) * 100 / self.total).min(99) as u8,
            _ => 0,
        }
    }
}

/// Writes `n` with a space every three digits ("1 000 000"), as the seeds' show output does.
struct Grouped(u64);

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 20];
        let mut n = self.0;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in (0..len).rev() {
            write!(f, "{}", char::from(digits[i]))?;
            if i > 0 && i % 3 == 0 {
                f.write_str(" ")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for BulkProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phase {
            BulkPhase::Idle => f.write_str("no bulk sync"),
            BulkPhase::Requested => f.write_str("bulk sync requested"),
            BulkPhase::Running => write!(
                f,
                "bulk sync {} % ({} of {})",
                self.percent(),
                Grouped(self.done),
                Grouped(self.total)
            ),
            BulkPhase::Done => write!(f, "bulk sync complete ({} records)", Grouped(self.done)),
        }
    }
}
