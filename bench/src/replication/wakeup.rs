//! The lag rows' floor on this machine: one thread waking another through a channel, as each of
//! the replication path's three hand-offs does (active worker → its replication thread, that
//! thread → the standby's over the veth, the standby's → its worker). No replication involved:
//! when this row's p99 is near 1 ms, the lag rows cannot pass here whatever the protocol does
//! (on a VM, a wake-up of an idle vCPU waits for the hypervisor to run it: steal time).

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use hdrhistogram::Histogram;

use super::{fifo_thread, BenchError, FifoGuard, RowReport, Tuning};

/// The floor rows have no bar of their own.
pub const BAR: &str = "- (floor of the lag rows)";

/// Time between hand-offs: the receiving thread goes back to sleep each time, as the
/// replication threads do between frames at 20 k conns/s.
const PACE: Duration = Duration::from_micros(100);

/// `secs` of hand-offs every [`PACE`]; one-way latency, send → receiver running; both threads
/// tuned as `t` says (the caller holds its CPU latency request).
pub fn wakeup_row(secs: f64, t: Tuning) -> RowReport {
    let name = &format!("wake-up latency, 1 thread hand-off{}", t.suffix());
    let bar = BAR;
    match wakeup(secs, t.fifo) {
        Ok((h, stat)) => {
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
            let (p50, p99, max) = (us(0.5), us(0.99), h.max() as f64 / 1e3);
            let over = h.count_between(1_000_000, u64::MAX);
            RowReport {
                name: name.into(),
                p50_us: Some(p50),
                p99_us: Some(p99),
                max_us: Some(max),
                figure: format!("p50 {p50:.0} p99 {p99:.0} max {max:.0} µs"),
                bar: bar.into(),
                note: format!(
                    "{} hand-offs every {} µs through a crossbeam channel, receiver blocked in \
                     recv; {over} ({:.2} %) took over 1 ms; the box meanwhile: {stat}",
                    h.len(),
                    PACE.as_micros(),
                    100.0 * over as f64 / h.len().max(1) as f64
                ),
                ..RowReport::default()
            }
        }
        Err(e) => RowReport::failed(name, bar, e),
    }
}

fn wakeup(secs: f64, prio: u8) -> Result<(Histogram<u64>, String), BenchError> {
    let n = (secs / PACE.as_secs_f64()).round().max(1.0) as u64;
    let (tx, rx) = bounded::<Instant>(1024);
    let cpu0 = cpu_times();
    let receiver = thread::Builder::new()
        .name("wakeup-rx".into())
        .spawn(move || -> Result<Histogram<u64>, String> {
            let mut h =
                Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
            while let Ok(sent) = rx.recv() {
                let _ = h.record(
                    u64::try_from(sent.elapsed().as_nanos())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
            }
            Ok(h)
        })
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let _fifo = FifoGuard::new("wake-up sender", prio)?;
    fifo_thread("wake-up receiver", &receiver, prio)?;
    for _ in 0..n {
        thread::sleep(PACE);
        if tx.send(Instant::now()).is_err() {
            break;
        }
    }
    drop(tx);
    let h = receiver
        .join()
        .map_err(|_| BenchError::Setup("wake-up receiver panicked".into()))?
        .map_err(BenchError::Setup)?;
    let stat = match (cpu0, cpu_times()) {
        (Some(a), Some(b)) => {
            format!(
                "{:.0} % idle, {:.1} % steal",
                cpu_pct(&a, &b, CPU_IDLE),
                cpu_pct(&a, &b, CPU_STEAL)
            )
        }
        _ => "no /proc/stat".into(),
    };
    Ok((h, stat))
}

/// The `cpu` line of `/proc/stat`: user, nice, system, idle, iowait, irq, softirq, steal, ….
/// Index of the idle time in a [`cpu_times`] reading.
pub(crate) const CPU_IDLE: usize = 3;
/// Index of the steal time (a VM's vCPU runnable but not run by the host).
pub(crate) const CPU_STEAL: usize = 7;

/// The share (%) of all CPU time between readings `a` and `b` of [`cpu_times`]
/// spent in field `i`.
pub(crate) fn cpu_pct(a: &[u64], b: &[u64], i: usize) -> f64 {
    let d = |k: usize| match (a.get(k), b.get(k)) {
        (Some(x), Some(y)) => y.saturating_sub(*x),
        _ => 0,
    };
    let total = (0..a.len().min(b.len())).map(d).sum::<u64>().max(1) as f64;
    100.0 * d(i) as f64 / total
}

pub(crate) fn cpu_times() -> Option<Vec<u64>> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    Some(
        line.split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect(),
    )
}
