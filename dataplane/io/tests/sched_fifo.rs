//! `sched::set_realtime` really makes a thread SCHED_FIFO (read back by the
//! thread itself with `sched_getscheduler`), a thread it spawns starts as
//! an ordinary one (`SCHED_RESET_ON_FORK`), and priority 0 restores
//! time-sharing. Needs root (CAP_SYS_NICE): skipped outside CI without it.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;
use std::time::Duration;

use tandem_io::sched::{current_policy, set_realtime, Policy};
use tandem_netns::have_privileges;

/// What the thread under test reports, each time the test asks.
type Report = (Policy, Policy);

/// A thread that, on each request, reads its own policy and that of a thread
/// it spawns, so every read happens in the thread the policy was set on.
fn reporter(asks: Receiver<()>, reports: Sender<Report>) {
    while asks.recv_timeout(Duration::from_secs(10)).is_ok() {
        let own = current_policy().expect("own policy");
        let child = thread::spawn(|| current_policy().expect("child policy"))
            .join()
            .expect("child thread");
        if reports.send((own, child)).is_err() {
            return;
        }
    }
}

#[test]
fn set_realtime_makes_a_thread_sched_fifo() {
    if !have_privileges("set_realtime_makes_a_thread_sched_fifo") {
        return;
    }
    let (ask, asks) = channel();
    let (tell, reports) = channel();
    let t = thread::spawn(move || reporter(asks, tell));
    let report = || -> Report {
        ask.send(()).expect("ask");
        reports
            .recv_timeout(Duration::from_secs(10))
            .expect("the thread reports")
    };
    assert_eq!(report(), (Policy::Other, Policy::Other), "before");

    set_realtime(&t, 42).expect("SCHED_FIFO 42 as root");
    assert_eq!(
        report(),
        (Policy::Fifo(42), Policy::Other),
        "FIFO 42 on the thread, its children start time-sharing"
    );

    set_realtime(&t, 0).expect("back to SCHED_OTHER");
    assert_eq!(report(), (Policy::Other, Policy::Other), "restored");

    drop(ask);
    t.join().expect("reporter thread");
}

/// The current aggregate PM QoS CPU latency, µs (the device reads as a native s32).
fn cpu_latency_now() -> i32 {
    let b = std::fs::read("/dev/cpu_dma_latency").expect("read /dev/cpu_dma_latency");
    i32::from_ne_bytes(b[..4].try_into().expect("4 bytes"))
}

#[test]
fn cpu_latency_request_holds_until_dropped() {
    if !have_privileges("cpu_latency_request_holds_until_dropped") {
        return;
    }
    let before = cpu_latency_now();
    if before <= 7 {
        eprintln!("SKIP: another process holds a CPU latency request of {before} µs");
        return;
    }
    let req = tandem_io::sched::CpuLatencyRequest::hold(7).expect("hold 7 µs as root");
    assert_eq!(req.us(), 7);
    assert!(cpu_latency_now() <= 7, "the request is in force");
    drop(req);
    assert!(cpu_latency_now() > 7, "the request is gone with the file");
}
