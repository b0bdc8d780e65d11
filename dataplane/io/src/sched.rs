//! Real-time scheduling of tandem's packet threads (workers, replication).
//!
//! On a box with few cores, a packet thread woken by a frame waits in the
//! CFS run queue behind whatever else runs there (milliseconds on a busy
//! 2-core machine). `SCHED_FIFO` makes the wake-up preempt ordinary work at
//! once, as appliances run their data-plane threads. Only threads that block
//! between frames may be real-time: a thread that never sleeps at FIFO
//! priority keeps its core from every ordinary task (softirq threads,
//! kworkers), bounded only by the kernel's RT throttling
//! (`/proc/sys/kernel/sched_rt_runtime_us`), which then stalls it for the
//! rest of each period.
//!
//! Threads are set with `SCHED_RESET_ON_FORK`, so a thread they spawn starts
//! as an ordinary one rather than inheriting the priority unnoticed.
//!
//! Real-time priority decides who runs once a CPU is awake; how long an idle
//! CPU takes to wake up is the other half of a hand-off. In a VM an idle vCPU
//! halts, and the IPI of a wake-up must wait for the hypervisor to run it
//! again (measured here: hand-offs of 3 µs with idle CPUs polling against up
//! to milliseconds halted). [`CpuLatencyRequest`] is the kernel's PM QoS
//! request (`/dev/cpu_dma_latency`, Documentation/power/pm_qos_interface):
//! with 0 µs idle CPUs poll instead of halting, as latency-tuned appliances
//! run (tuned's `network-latency` profile does the same).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::thread::JoinHandleExt;
use std::thread::JoinHandle;

/// Highest `SCHED_FIFO` priority on Linux.
pub const MAX_PRIORITY: u8 = 99;

/// A thread's scheduling policy as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Time-sharing (`SCHED_OTHER`).
    Other,
    /// `SCHED_FIFO` at this priority.
    Fifo(u8),
    /// Anything else (`SCHED_RR`, `SCHED_BATCH`, ...): the raw policy number.
    Unknown(i32),
}

/// Sets `thread` to `SCHED_FIFO` at `priority` (1..=99), or back to
/// `SCHED_OTHER` when `priority` is 0. Fails with `EPERM` without
/// `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO` covering the priority).
pub fn set_realtime<T>(thread: &JoinHandle<T>, priority: u8) -> io::Result<()> {
    set(thread.as_pthread_t(), priority)
}

/// [`set_realtime`] for the calling thread.
pub fn set_current_realtime(priority: u8) -> io::Result<()> {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    set(unsafe { libc::pthread_self() }, priority)
}

fn set(thread: libc::pthread_t, priority: u8) -> io::Result<()> {
    if priority > MAX_PRIORITY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("real-time priority {priority} is out of range 0..={MAX_PRIORITY}"),
        ));
    }
    let policy = if priority == 0 {
        libc::SCHED_OTHER
    } else {
        libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK
    };
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `thread` is a live thread of this process (the caller holds
    // its JoinHandle, or it is the calling thread) and `param` is a valid
    // sched_param for the duration of the call.
    let rc = unsafe { libc::pthread_setschedparam(thread, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// The calling thread's policy, read back from the kernel
/// (`sched_getscheduler` and `sched_getparam` of thread 0, the caller).
pub fn current_policy() -> io::Result<Policy> {
    // SAFETY: sched_getscheduler only reads the calling thread's policy.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable sched_param.
    if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(
        match (policy & !libc::SCHED_RESET_ON_FORK, param.sched_priority) {
            (libc::SCHED_OTHER, _) => Policy::Other,
            (libc::SCHED_FIFO, p) => Policy::Fifo(u8::try_from(p).unwrap_or(u8::MAX)),
            (other, _) => Policy::Unknown(other),
        },
    )
}

/// A held PM QoS CPU wake-up latency request; the kernel drops it when this
/// is dropped (the file is closed), also when the process dies.
#[derive(Debug)]
pub struct CpuLatencyRequest {
    _file: File,
    us: u32,
}

impl CpuLatencyRequest {
    /// Asks that no idle CPU take longer than `us` µs to wake up (0: idle
    /// CPUs poll). Needs root (the device is mode 0600).
    pub fn hold(us: u32) -> io::Result<CpuLatencyRequest> {
        let value = i32::try_from(us).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU wake-up latency {us} µs is out of range"),
            )
        })?;
        let mut file = File::options().write(true).open("/dev/cpu_dma_latency")?;
        // The binary form (a native s32) is what the interface documents.
        file.write_all(&value.to_ne_bytes())?;
        Ok(CpuLatencyRequest { _file: file, us })
    }

    /// The latency asked for, µs.
    pub fn us(&self) -> u32 {
        self.us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_priority_is_refused_before_the_kernel() {
        let e = set_current_realtime(MAX_PRIORITY + 1).expect_err("100 is not a FIFO priority");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(current_policy().expect("policy"), Policy::Other);
    }

    #[test]
    fn priority_zero_keeps_time_sharing() {
        std::thread::spawn(|| {
            set_current_realtime(0).expect("SCHED_OTHER needs no privilege");
            assert_eq!(current_policy().expect("policy"), Policy::Other);
        })
        .join()
        .expect("thread");
    }
}
