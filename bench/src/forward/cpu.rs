//! Where the forwarding core's time went during a phase: the unit's own
//! threads (its NAPI kthreads, tandemd's threads), everything else, idle.
//!
//! Why: this machine is shared, and a compiler landing on the forwarding
//! core halves a row's rate without any sign in the row's own figures. So
//! each phase reads the core's counters in /proc/stat and the CPU time of
//! the unit's threads (/proc/PID/task/TID/stat) before and after the
//! traffic, and the report says how much of the core the unit actually had.
//! Resolution is the kernel's USER_HZ tick (10 ms), plenty over seconds.

use std::path::Path;

/// CPU time counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// Ticks the core spent busy (everything but idle and iowait) and in total.
    pub core_busy: u64,
    pub core_total: u64,
    /// utime + stime of each watched thread, with its label.
    pub threads: Vec<(String, u64)>,
}

/// How the forwarding core was used between two samples, in percent of
/// the elapsed core time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoreUse {
    /// The unit's threads (they may also have run elsewhere; see `by_thread`).
    pub unit_pct: f64,
    /// Busy time of the core not accounted to the unit's threads.
    pub other_pct: f64,
    pub idle_pct: f64,
    /// Per watched thread, in percent of one core.
    pub by_thread: Vec<(String, f64)>,
}

/// `(busy, total)` ticks of core `core` from /proc/stat.
fn core_ticks(stat: &str, core: usize) -> Option<(u64, u64)> {
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already included in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// utime + stime of a thread from its `stat` file (the fields after the
/// parenthesised command name, which may itself contain spaces).
fn thread_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), utime 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The threads of process `pid` as `(label, stat path)`, labelled by their
/// command name (`tandem-w0`, `tandemd`).
pub fn process_threads(pid: u32) -> Vec<(String, String)> {
    let dir = format!("/proc/{pid}/task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| {
            let base = e.path();
            let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
            (
                comm.trim().to_string(),
                base.join("stat").to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Samples core `core` and the given threads (`(label, stat path)`).
/// Threads that vanished count as zero.
pub fn sample(core: usize, threads: &[(String, String)]) -> CpuSample {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let (core_busy, core_total) = core_ticks(&stat, core).unwrap_or_default();
    let threads = threads
        .iter()
        .map(|(label, path)| {
            let t = std::fs::read_to_string(Path::new(path))
                .ok()
                .and_then(|s| thread_ticks(&s))
                .unwrap_or(0);
            (label.clone(), t)
        })
        .collect();
    CpuSample {
        core_busy,
        core_total,
        threads,
    }
}

impl CoreUse {
    /// The use of the core between `a` and `b` (same thread list).
    pub fn between(a: &CpuSample, b: &CpuSample) -> Option<CoreUse> {
        let total = b.core_total.checked_sub(a.core_total)? as f64;
        if total <= 0.0 {
            return None;
        }
        let busy = b.core_busy.saturating_sub(a.core_busy) as f64;
        let mut by_thread: Vec<(String, f64)> = Vec::new();
        for ((label, t0), (_, t1)) in a.threads.iter().zip(&b.threads) {
            let d = t1.saturating_sub(*t0) as f64 * 100.0 / total;
            // Threads of one name (e.g. two NAPI kthreads) are summed.
            match by_thread.iter_mut().find(|(l, _)| l == label) {
                Some((_, v)) => *v += d,
                None => by_thread.push((label.clone(), d)),
            }
        }
        by_thread.retain(|(_, v)| *v >= 0.5);
        by_thread.sort_by(|x, y| y.1.total_cmp(&x.1));
        let unit: f64 = by_thread.iter().map(|(_, v)| v).sum();
        let busy_pct = busy * 100.0 / total;
        Some(CoreUse {
            unit_pct: unit,
            other_pct: (busy_pct - unit).max(0.0),
            idle_pct: 100.0 - busy_pct,
            by_thread,
        })
    }

    /// `unit 93 % (napi/out0 55, tandem-w0 38), others 5 %, idle 2 %`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .by_thread
            .iter()
            .map(|(l, v)| format!("{l} {v:.0}"))
            .collect();
        format!(
            "unit {:.0} % ({}), others {:.0} %, idle {:.0} %",
            self.unit_pct,
            parts.join(", "),
            self.other_pct,
            self.idle_pct
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                        cpu0 5 0 5 50 0 0 0 0 0 0\n\
                        cpu1 300 0 100 500 100 0 0 0 0 0\n\
                        intr 1\n";

    #[test]
    fn core_ticks_exclude_idle_and_iowait() {
        assert_eq!(core_ticks(STAT, 1), Some((400, 1000)));
        assert_eq!(core_ticks(STAT, 0), Some((10, 60)));
        assert_eq!(core_ticks(STAT, 7), None);
    }

    #[test]
    fn thread_ticks_survive_odd_command_names() {
        let s = "4242 (napi/out0-12 (x)) S 2 0 0 0 -1 2129984 0 0 0 0 17 25 0 0 20 0 1 0";
        assert_eq!(thread_ticks(s), Some(42));
        assert_eq!(thread_ticks("garbage"), None);
        assert_eq!(thread_ticks("1 (x) S 2"), None);
    }

    #[test]
    fn use_splits_busy_time_between_unit_and_others() {
        let a = CpuSample {
            core_busy: 100,
            core_total: 1000,
            threads: vec![("napi/out0".into(), 10), ("tandem-w0".into(), 0)],
        };
        let b = CpuSample {
            core_busy: 1000,
            core_total: 2000,
            threads: vec![("napi/out0".into(), 510), ("tandem-w0".into(), 300)],
        };
        let u = CoreUse::between(&a, &b).unwrap();
        assert_eq!(u.unit_pct, 80.0);
        assert_eq!(u.other_pct, 10.0);
        assert_eq!(u.idle_pct, 10.0);
        assert_eq!(u.by_thread[0], ("napi/out0".to_string(), 50.0));
        assert!(u
            .summary()
            .starts_with("unit 80 % (napi/out0 50, tandem-w0 30)"));
        assert!(CoreUse::between(&b, &a).is_none());
    }
}
