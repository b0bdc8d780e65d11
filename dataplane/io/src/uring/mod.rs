//! io_uring backend: raw Ethernet frames over AF_PACKET sockets, received by
//! one multishot recv per port into that port's provided-buffer ring and
//! sent by batched IORING_OP_SEND, all through one io_uring per backend.
//!
//! # Frame life cycle
//!
//! Every frame slot of the backend's [`Region`] is, at any time, in exactly
//! one of these places:
//!
//! * the [`FramePool`] (free);
//! * lent to the kernel for receive: published in a port's provided-buffer
//!   ring under a buffer id (`book::BidMap`);
//! * received and waiting in its port's ready queue;
//! * lent to the caller (between `rx_burst`/`alloc` and `tx_burst`/`free`);
//! * in flight as a send: its address is the `user_data` of a send SQE
//!   until that CQE is reaped, then it goes back to the pool.
//!
//! [`UringBackend::accounting`] counts the frames in each place (the
//! caller's share by difference), so tests check that nothing leaks.
//!
//! # One batch
//!
//! `flush` reaps completions (no syscall), refills the buffer rings from the
//! pool, re-arms any multishot receive that ended, and submits every queued
//! SQE — the sends of the whole batch and the re-arms — with one
//! `io_uring_enter`, then reaps again (AF_PACKET sends complete inline
//! during that call, so their frames are back in the pool right away).
//! When nothing is queued and the kernel has no pending completion work,
//! `flush` makes no syscall at all.
//!
//! The ring is created with COOP_TASKRUN + TASKRUN_FLAG: receive
//! completions are not pushed by interrupting the worker but flagged in the
//! SQ ring, and the next `flush` (or `wait`) collects them. This is also
//! why receives are armed lazily by the first `flush`/`wait` and not in
//! `open`: io_uring runs a request's completion work in the thread that
//! submitted it, so the worker thread, not the thread that opened the
//! backend, must own them. If the backend moves to another thread after
//! arming anyway, the next `flush` notices (a thread-id compare), cancels
//! the old receives and re-arms them from the new thread.
//!
//! # What AF_PACKET does not do for us
//!
//! * It is a tap, not a bypass: the kernel stack still receives every
//!   frame. A unit's data interfaces should carry no kernel addresses and
//!   the namespace no kernel forwarding, or the kernel answers and forwards
//!   next to tandem.
//! * Frames arrive after GRO and leave a veth peer with TSO/GSO intact, so
//!   a TCP stream can show up as one 64 KiB frame. Such frames do not fit a
//!   slot and are dropped (`rx_truncated`); turn TSO/GSO off on the peers
//!   feeding a unit (and GRO off on the unit's interfaces).
//! * With a fanout group, the hash puts a datagram's IP fragments (the
//!   first included: it hashes them on addresses alone) on one worker, as
//!   they came: no FANOUT_FLAG_DEFRAG, whose reassembled datagram would
//!   exceed the MTU it has to leave on. The stateful stage follows
//!   fragments itself (`tandem_state::frag`).

mod book;
mod bufring;
pub(crate) mod sock;

pub use sock::fanout_id;

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring};

use crate::pool::FramePool;
use crate::region::Region;
use crate::{Backend, BackendStats, Frame, FrameConfig, OpenError, PortId};
use book::{BidMap, Sizing, Token, TxBudget};
use bufring::BufRing;

/// Buffer group id of a port's provided-buffer ring: its port index.
fn bgid(port: PortId) -> u16 {
    port as u16
}
/// How often the kernel's per-socket drop counters are read: a getsockopt
/// per port is too costly for every batch (see `stats`), and a paced,
/// mostly idle worker waits once per frame, so `wait` cannot do it every
/// time either.
const KERNEL_STATS_PERIOD: Duration = Duration::from_millis(100);
/// Flushes between two looks at the clock for `KERNEL_STATS_PERIOD`
/// (a power of two).
const KERNEL_STATS_CHECK_EVERY: u32 = 256;
/// A port whose receive fails this many times in a row without a frame in
/// between stops being re-armed (and says so once in the log), instead of
/// turning the idle loop into a busy loop of failing requests.
const MAX_RECV_ERROR_STREAK: u32 = 64;

/// Counters specific to this backend, beyond [`BackendStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringStats {
    /// Multishot receives re-armed after one ended (a CQE without
    /// IORING_CQE_F_MORE: ENOBUFS, a socket error, a cancel after the
    /// backend changed threads, or the kernel ending it on its own).
    pub rx_rearm: u64,
    /// Receive requests that ended with ENOBUFS: the port's buffer ring ran
    /// dry, in a burst larger than the ring or because the caller has not
    /// taken the port's received frames (backpressure, see `replenish`).
    /// The frame that found no buffer stays in the socket queue (it is
    /// lost only if that queue overflows, which `rx_kernel_drops` counts),
    /// so this is not added to `rx_dropped`.
    pub rx_no_buffer: u64,
    /// Frames longer than a frame slot (jumbo frames, or GRO/GSO
    /// super-frames on a veth whose peer has TSO on): dropped.
    pub rx_truncated: u64,
    /// Frames dropped because a port's ready queue was full. Backpressure
    /// keeps this at 0; it is a guard, not an expected event.
    pub rx_queue_full: u64,
    /// Frames dropped by the kernel for lack of socket buffer
    /// (PACKET_STATISTICS `tp_drops`).
    pub rx_kernel_drops: u64,
    /// Receive completions with an error other than ENOBUFS/ECANCELED.
    pub rx_errors: u64,
    /// Send completions with an error (ENOBUFS: the driver queue was full
    /// under PACKET_QDISC_BYPASS; ENETDOWN; ...). The frame is freed.
    pub tx_errors: u64,
    /// Frames handed to `tx_burst` with an address or length outside the
    /// frame memory: not sent, not freed (they are not ours).
    pub tx_invalid: u64,
    /// `io_uring_enter` calls that failed (retried on the next flush).
    pub submit_errors: u64,
}

/// Where the backend's frames are, for leak checks. Frames lent to the
/// caller are `total - free - rx_posted - rx_ready - tx_in_flight`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameAccounting {
    pub total: usize,
    /// In the pool.
    pub free: usize,
    /// Lent to the kernel in the ports' provided-buffer rings.
    pub rx_posted: usize,
    /// Received, waiting in the ports' ready queues.
    pub rx_ready: usize,
    /// Sends submitted or queued whose completion is not reaped yet.
    pub tx_in_flight: usize,
}

impl FrameAccounting {
    /// Frames currently owned by the caller.
    pub fn lent_to_caller(&self) -> usize {
        self.total
            .saturating_sub(self.free + self.rx_posted + self.rx_ready + self.tx_in_flight)
    }
}

/// Options beyond the common ones; [`UringBackend::open`] uses the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringOptions {
    /// See [`UringBackend::open`].
    pub fanout_group: Option<u16>,
    /// Put the interfaces in promiscuous mode for the socket's lifetime
    /// (PACKET_MR_PROMISC; dropped by the kernel when the socket closes).
    /// Needed on real NICs to receive frames for a virtual MAC; veth
    /// delivers every frame anyway.
    pub promiscuous: bool,
}

struct Port {
    ifname: String,
    ifindex: u32,
    fd: std::os::fd::OwnedFd,
    /// Received frames not yet taken by `rx_burst`. With the frames lent
    /// to this port's buffer ring they never exceed `Sizing::rx_lend`
    /// (see `replenish`), so the queue never grows past its capacity.
    ready: VecDeque<Frame>,
    /// A multishot receive is outstanding for this port.
    armed: bool,
    /// Consecutive receive errors (reset by any received frame).
    error_streak: u32,
    /// Receive gave up after `MAX_RECV_ERROR_STREAK` errors.
    failed: bool,
    /// A cancel of the armed receive is on its way (see `follow_thread`).
    cancelling: bool,
    /// A receive was armed before (so the next one is a re-arm).
    armed_once: bool,
}

/// AF_PACKET + io_uring backend serving one worker on a set of interfaces.
///
/// Teardown order matters: `Drop` cancels and drains every request, closes
/// the io_uring, and only then frees the buffer rings and the frame memory
/// the kernel was using — or leaks them if the kernel did not let go in
/// time, because unmapping memory a request may still write is worse than
/// a leak at shutdown.
pub struct UringBackend {
    ring: ManuallyDrop<IoUring>,
    ports: Vec<Port>,
    /// One provided-buffer ring per port (buffer group = port index).
    bufrings: ManuallyDrop<Vec<BufRing>>,
    /// Per port: which frame each lent buffer id stands for.
    bids: Vec<BidMap>,
    mem: ManuallyDrop<Region>,
    pool: FramePool,
    tx: TxBudget,
    sizing: Sizing,
    frame_size: u32,
    frame_count: u32,
    flushes: u32,
    /// First port `replenish` serves next time (round-robin).
    replenish_from: usize,
    /// When the kernel drop counters were last read.
    kernel_stats_at: Instant,
    /// The thread that armed the receives (see `follow_thread`).
    armed_by: Option<std::thread::ThreadId>,
    /// The wake fd a one-shot poll is armed on (`wait_or_wake`), until its
    /// completion is reaped.
    wake_armed: Option<RawFd>,
    stats: BackendStats,
    ustats: UringStats,
}

impl UringBackend {
    /// One AF_PACKET socket per interface (ETH_P_ALL, bound to the ifindex),
    /// one io_uring, one frame memory shared by all ports.
    ///
    /// `fanout_group`: when several workers serve the same interfaces, each
    /// opens its own backend with the same group id, and PACKET_FANOUT
    /// (FANOUT_HASH) spreads flows across them (symmetric per flow). Linux
    /// binds a fanout group to one interface, so the id actually joined on
    /// each interface is [`fanout_id`]`(group, ifindex)`.
    ///
    /// Sockets are opened in the calling thread's network namespace. The
    /// backend may be opened in one thread and used in another (it is
    /// `Send`); moving it after the first `flush`/`wait` works too but
    /// costs a cancel and re-arm of every receive.
    pub fn open(
        ifnames: &[&str],
        frames: &FrameConfig,
        fanout_group: Option<u16>,
    ) -> Result<UringBackend, OpenError> {
        Self::open_with(
            ifnames,
            frames,
            &UringOptions {
                fanout_group,
                ..UringOptions::default()
            },
        )
    }

    /// [`open`](Self::open) with every option.
    pub fn open_with(
        ifnames: &[&str],
        frames: &FrameConfig,
        opts: &UringOptions,
    ) -> Result<UringBackend, OpenError> {
        if frames.frame_size < 128 || frames.frame_size > 65536 {
            return Err(OpenError::Config(format!(
                "frame_size {} is outside 128..=65536",
                frames.frame_size
            )));
        }
        let mem_len = frames.frame_count as u64 * frames.frame_size as u64;
        if mem_len > Token::MAX_PAYLOAD {
            return Err(OpenError::Config(format!(
                "{} frames of {} bytes exceed the 256 TiB the backend can address",
                frames.frame_count, frames.frame_size
            )));
        }
        let sizing = Sizing::new(frames.frame_count, frames.ring_size, ifnames.len())
            .map_err(OpenError::Config)?;

        let mut ports = Vec::with_capacity(ifnames.len());
        for &ifname in ifnames {
            let s = sock::open_port(ifname, opts.fanout_group, opts.promiscuous)?;
            // Ethernet header + one VLAN tag on top of the MTU.
            let need = s.mtu + 18;
            if need > frames.frame_size {
                return Err(OpenError::Config(format!(
                    "interface {ifname}: MTU {} needs frames of at least {need} bytes, frame_size is {}",
                    s.mtu, frames.frame_size
                )));
            }
            tracing::debug!(
                ifname,
                ifindex = s.ifindex,
                mtu = s.mtu,
                fanout_id = ?s.fanout_id,
                "AF_PACKET socket bound"
            );
            ports.push(Port {
                ifname: ifname.to_string(),
                ifindex: s.ifindex,
                fd: s.fd,
                ready: VecDeque::with_capacity(sizing.rx_lend as usize),
                armed: false,
                error_streak: 0,
                failed: false,
                cancelling: false,
                armed_once: false,
            });
        }
        let what = ifnames.join(",");

        // Memory first: on an error below, locals drop in reverse order, so
        // the io_uring always closes before the memory it may know about.
        let mem = Region::new(mem_len as usize, frames.huge_pages)?;
        let bufrings = (0..ports.len())
            .map(|_| BufRing::new(sizing.rx_ring))
            .collect::<Result<Vec<_>, _>>()?;

        let ring = IoUring::builder()
            .setup_cqsize(sizing.cq)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            // A send that fails to prepare must not hold back the rest of
            // the batch behind it in the SQ.
            .setup_submit_all()
            .build(sizing.sq)
            .or_else(|_| {
                // Kernels before 5.19 lack COOP_TASKRUN (and 5.18 SUBMIT_ALL);
                // completions are then delivered by interrupting the worker,
                // which still works.
                IoUring::builder().setup_cqsize(sizing.cq).build(sizing.sq)
            })
            .map_err(|e| OpenError::os(&what, "io_uring_setup", e))?;
        if !ring.params().is_feature_ext_arg() {
            return Err(OpenError::Unsupported {
                ifname: what,
                why: "io_uring without IORING_FEAT_EXT_ARG (Linux < 5.11): cannot wait with a timeout".into(),
            });
        }

        for (i, br) in bufrings.iter().enumerate() {
            // SAFETY: the ring memory is page-aligned, holds `entries`
            // buffer descriptors and is owned by the backend, which closes
            // the io_uring (in Drop, or on an error here by drop order)
            // before freeing it.
            unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    br.addr(),
                    br.entries() as u16,
                    bgid(i),
                    0,
                )
            }
            .map_err(|e| {
                OpenError::os(
                    ifnames[i],
                    "IORING_REGISTER_PBUF_RING (provided buffer rings need Linux ≥ 5.19)",
                    e,
                )
            })?;
        }

        tracing::info!(
            interfaces = %what,
            frames = frames.frame_count,
            frame_size = frames.frame_size,
            huge_pages = mem.is_huge(),
            rx_buffers_per_port = sizing.rx_lend,
            tx_budget = sizing.tx_budget,
            sq = sizing.sq,
            cq = sizing.cq,
            fanout_group = ?opts.fanout_group,
            "io_uring backend open"
        );

        Ok(UringBackend {
            ring: ManuallyDrop::new(ring),
            ports,
            bids: bufrings
                .iter()
                .map(|b| BidMap::new(b.entries() as usize))
                .collect(),
            bufrings: ManuallyDrop::new(bufrings),
            mem: ManuallyDrop::new(mem),
            pool: FramePool::new(frames.frame_count, frames.frame_size),
            tx: TxBudget::new(sizing.tx_budget),
            sizing,
            frame_size: frames.frame_size,
            frame_count: frames.frame_count,
            flushes: 0,
            replenish_from: 0,
            kernel_stats_at: Instant::now(),
            armed_by: None,
            wake_armed: None,
            stats: BackendStats::default(),
            ustats: UringStats::default(),
        })
    }

    /// Backend-specific counters.
    pub fn uring_stats(&self) -> UringStats {
        self.ustats
    }

    /// Where the frames are right now.
    pub fn accounting(&self) -> FrameAccounting {
        FrameAccounting {
            total: self.frame_count as usize,
            free: self.pool.available(),
            rx_posted: self.bids.iter().map(BidMap::in_use).sum(),
            rx_ready: self.ports.iter().map(|p| p.ready.len()).sum(),
            tx_in_flight: self.tx.in_flight() as usize,
        }
    }

    /// Interface name of a port.
    pub fn ifname(&self, port: PortId) -> Option<&str> {
        self.ports.get(port).map(|p| p.ifname.as_str())
    }

    /// Kernel ifindex of a port.
    pub fn ifindex(&self, port: PortId) -> Option<u32> {
        self.ports.get(port).map(|p| p.ifindex)
    }

    /// Read the kernel's per-socket drop counters now (one getsockopt per
    /// port). `flush` and `wait` do this about every `KERNEL_STATS_PERIOD`;
    /// call it before reading `stats()` when an exact figure matters
    /// (tests, operator commands).
    pub fn refresh_kernel_stats(&mut self) {
        self.kernel_stats_at = Instant::now();
        for p in &self.ports {
            if let Ok(drops) = sock::take_drops(p.fd.as_raw_fd()) {
                self.ustats.rx_kernel_drops += drops;
            }
            self.stats.syscalls += 1;
        }
    }

    fn maybe_refresh_kernel_stats(&mut self) {
        if self.kernel_stats_at.elapsed() >= KERNEL_STATS_PERIOD {
            self.refresh_kernel_stats();
        }
    }

    fn slot_offset(&self, addr: u64) -> Option<usize> {
        let fs = self.frame_size as u64;
        let slot = addr / fs;
        (slot < self.frame_count as u64).then_some((slot * fs) as usize)
    }

    /// Take every available completion off the CQ (no syscall).
    fn reap(&mut self) {
        let frame_size = self.frame_size;
        for cqe in self.ring.completion() {
            let res = cqe.result();
            let flags = cqe.flags();
            match Token::decode(cqe.user_data()) {
                Some(Token::Send(addr)) => {
                    self.tx.complete();
                    if res < 0 {
                        self.ustats.tx_errors += 1;
                    }
                    // The send is over: the kernel copied (or dropped) the
                    // frame, so the slot is ours again.
                    self.pool.free(addr);
                }
                Some(Token::Recv(port)) => {
                    let Some(p) = self.ports.get_mut(port) else {
                        continue;
                    };
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if let Some(addr) = self.bids[port].take(bid) {
                            if res > frame_size as i32 {
                                // MSG_TRUNC makes recv report the full
                                // length: the slot holds only a prefix.
                                self.ustats.rx_truncated += 1;
                                self.pool.free(addr);
                            } else if res <= 0 {
                                self.pool.free(addr);
                            } else if p.ready.len() < p.ready.capacity() {
                                p.ready.push_back(Frame {
                                    addr,
                                    len: res as u32,
                                });
                                p.error_streak = 0;
                            } else {
                                self.ustats.rx_queue_full += 1;
                                self.pool.free(addr);
                            }
                        }
                    }
                    if res < 0 {
                        match -res {
                            libc::ENOBUFS => self.ustats.rx_no_buffer += 1,
                            libc::ECANCELED => {}
                            _ => {
                                self.ustats.rx_errors += 1;
                                p.error_streak += 1;
                            }
                        }
                    }
                    if !cqueue::more(flags) {
                        // The multishot receive is over; `arm_receives`
                        // issues a new one on the next flush or wait.
                        p.armed = false;
                        p.cancelling = false;
                        if p.error_streak >= MAX_RECV_ERROR_STREAK && !p.failed {
                            p.failed = true;
                            tracing::error!(
                                ifname = %p.ifname,
                                errno = -res,
                                "receive failed {MAX_RECV_ERROR_STREAK} times in a row; not re-arming this port"
                            );
                        }
                    }
                }
                Some(Token::Wake) => self.wake_armed = None,
                Some(Token::Cancel) | None => {}
            }
        }
    }

    /// Lend free frames to each port's buffer ring until the frames lent
    /// to it plus those waiting in its ready queue reach `rx_lend`.
    ///
    /// Counting the ready queue is the backpressure: a port whose frames
    /// are not taken by `rx_burst` gets no new buffers, its receive ends
    /// with ENOBUFS, and further frames wait in its socket buffer (16 MiB)
    /// until the caller catches up — they are not pulled into userspace
    /// only to be dropped there, and a port nobody polls cannot take the
    /// other ports' frames. Ports are served round-robin when the pool is
    /// short.
    fn replenish(&mut self) {
        let target = self.sizing.rx_lend as usize;
        let n = self.ports.len();
        self.replenish_from = (self.replenish_from + 1) % n;
        for k in 0..n {
            let port = (self.replenish_from + k) % n;
            let bids = &mut self.bids[port];
            let ring = &mut self.bufrings[port];
            let ready = self.ports[port].ready.len();
            let mut pushed = false;
            while bids.in_use() + ready < target {
                let Some(addr) = self.pool.alloc_addr() else {
                    break;
                };
                let Some(bid) = bids.lend(addr) else {
                    self.pool.free(addr);
                    break;
                };
                let ptr = self.mem.as_ptr() as u64 + addr;
                ring.push(ptr, self.frame_size, bid);
                pushed = true;
            }
            if pushed {
                ring.publish();
            }
        }
    }

    /// Queue a multishot receive on every port that has none and has
    /// buffers to receive into (without, it would end at once with ENOBUFS).
    fn arm_receives(&mut self) {
        let mut sq = self.ring.submission();
        for (i, p) in self.ports.iter_mut().enumerate() {
            if p.armed || p.failed || self.bids[i].in_use() == 0 {
                continue;
            }
            // MSG_TRUNC: report a frame's real length even when it did not
            // fit the buffer, so truncation is detected, not forwarded.
            let e = opcode::RecvMulti::new(types::Fd(p.fd.as_raw_fd()), bgid(i))
                .flags(libc::MSG_TRUNC)
                .build()
                .user_data(Token::Recv(i).encode());
            // SAFETY: the request reads no memory of ours but the provided
            // buffers, which stay registered and allocated until Drop has
            // cancelled it; the socket fd lives as long as the backend.
            if unsafe { sq.push(&e) }.is_err() {
                break; // SQ full: retried on the next flush.
            }
            if p.armed_once {
                self.ustats.rx_rearm += 1;
            }
            p.armed = true;
            p.armed_once = true;
            p.cancelling = false;
        }
    }

    /// Everything `flush` and `wait` do before entering the kernel.
    fn prepare(&mut self) {
        self.reap();
        self.replenish();
        self.follow_thread();
        self.arm_receives();
    }

    /// If the backend moved to another thread since it armed its receives,
    /// cancel them so they are re-armed from this one. io_uring runs a
    /// request's completion work in the submitting thread; a receive left
    /// with a thread that is blocked elsewhere, or gone (completions then
    /// go through a kernel fallback workqueue), delivers late or slowly.
    /// Reading the thread id is a thread-local load, not a syscall.
    fn follow_thread(&mut self) {
        let me = std::thread::current().id();
        if self.armed_by == Some(me) {
            return;
        }
        let mut sq = self.ring.submission();
        for (i, p) in self.ports.iter_mut().enumerate() {
            if !p.armed || p.cancelling {
                continue;
            }
            let e =
                opcode::AsyncCancel2::new(types::CancelBuilder::user_data(Token::Recv(i).encode()))
                    .build()
                    .user_data(Token::Cancel.encode());
            // SAFETY: a cancel request carries no buffer of ours.
            if unsafe { sq.push(&e) }.is_err() {
                return; // SQ full: try again on the next flush.
            }
            p.cancelling = true;
        }
        drop(sq);
        // Receives armed from now on belong to this thread; the cancelled
        // ones complete with ECANCELED and are re-armed here.
        self.armed_by = Some(me);
    }

    /// Submit queued SQEs, and collect pending completion work, with one
    /// syscall; none when there is nothing to do.
    fn submit(&mut self) {
        let need = {
            let sq = self.ring.submission();
            !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
        };
        if !need {
            return;
        }
        self.stats.syscalls += 1;
        if self.ring.submit().is_err() {
            // EINTR / EAGAIN / EBUSY (CQ backlog): the SQEs stay queued and
            // go with the next flush.
            self.ustats.submit_errors += 1;
        }
    }

    fn any_ready(&self) -> bool {
        self.ports.iter().any(|p| !p.ready.is_empty())
    }

    /// Cancel every outstanding request and wait (bounded) until the kernel
    /// is done with our memory. True when it is.
    fn quiesce(&mut self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(Token::Cancel.encode());
        // SAFETY: a cancel request carries no buffer.
        let _ = unsafe { self.ring.submission().push(&cancel) };
        loop {
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap();
            let busy = self.ports.iter().any(|p| p.armed) || self.tx.in_flight() > 0;
            if !busy || Instant::now() >= until {
                if busy {
                    tracing::warn!(
                        tx_in_flight = self.tx.in_flight(),
                        "io_uring backend closed with requests still in flight"
                    );
                }
                return !busy;
            }
        }
    }
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn port_count(&self) -> usize {
        self.ports.len()
    }

    fn frame_size(&self) -> usize {
        self.frame_size as usize
    }

    fn rx_burst(&mut self, port: PortId, out: &mut [Frame]) -> usize {
        let Some(p) = self.ports.get_mut(port) else {
            return 0;
        };
        let n = out.len().min(p.ready.len());
        for (slot, f) in out.iter_mut().zip(p.ready.drain(..n)) {
            *slot = f;
        }
        self.stats.rx += n as u64;
        n
    }

    fn tx_burst(&mut self, port: PortId, frames: &[Frame]) -> usize {
        let Some(p) = self.ports.get(port) else {
            return 0;
        };
        let fd = types::Fd(p.fd.as_raw_fd());
        let base = self.mem.as_ptr();
        let fs = self.frame_size as u64;
        let limit = self.frame_count as u64;
        let mut sq = self.ring.submission();
        // Keep room for one re-arm per port and a cancel.
        let sq_room = (sq.capacity() - sq.len()).saturating_sub(self.ports.len() + 1);
        let room = (self.tx.room() as usize).min(sq_room);
        let n = frames.len().min(room);
        let mut queued = 0u32;
        for (i, f) in frames[..n].iter().enumerate() {
            let off_in_slot = f.addr % fs;
            if f.addr / fs >= limit || off_in_slot + f.len as u64 > fs {
                debug_assert!(false, "tx_burst of a frame outside frame memory: {f:?}");
                self.ustats.tx_invalid += 1;
                continue;
            }
            let e = opcode::Send::new(fd, base.wrapping_add(f.addr as usize), f.len)
                .build()
                .user_data(Token::Send(f.addr).encode());
            // SAFETY: the frame's bytes stay alive and untouched until this
            // send's CQE is reaped: its address is owned by the in-flight
            // set (the caller gave it up by contract, and it reaches the
            // pool again only from that CQE), and the frame memory outlives
            // the ring. The bounds were checked just above.
            if unsafe { sq.push(&e) }.is_err() {
                // Cannot happen (room was checked); refuse the rest.
                drop(sq);
                self.tx.start(queued);
                self.stats.tx += queued as u64;
                self.stats.tx_ring_full += 1;
                return i;
            }
            queued += 1;
        }
        drop(sq);
        self.tx.start(queued);
        self.stats.tx += queued as u64;
        if n < frames.len() {
            self.stats.tx_ring_full += 1;
        }
        n
    }

    fn frame(&self, f: Frame) -> &[u8] {
        let Some(at) = self.slot_offset(f.addr) else {
            return &[];
        };
        let start = f.addr as usize;
        let len = (f.len as usize).min(at + self.frame_size as usize - start);
        // SAFETY: [start, start+len) lies inside one slot of our region
        // (checked above). The caller holds this frame, so the kernel does
        // not write it (it is neither in the buffer ring nor in flight),
        // and Rust borrow rules (&self vs &mut self) forbid aliasing writes.
        unsafe { std::slice::from_raw_parts(self.mem.as_ptr().add(start), len) }
    }

    fn frame_mut(&mut self, f: Frame) -> &mut [u8] {
        let Some(at) = self.slot_offset(f.addr) else {
            return &mut [];
        };
        // SAFETY: the slot [at, at+frame_size) is inside our region. The
        // caller holds this frame, so neither the kernel (buffer ring, sends)
        // nor another handle writes it, and &mut self makes this the only
        // Rust reference into frame memory. Only this slot is covered, not
        // the slots the kernel may be filling concurrently.
        unsafe {
            std::slice::from_raw_parts_mut(self.mem.as_ptr().add(at), self.frame_size as usize)
        }
    }

    fn alloc(&mut self) -> Option<Frame> {
        let f = self.pool.alloc();
        if f.is_none() {
            self.stats.alloc_failed += 1;
        }
        f
    }

    fn free(&mut self, f: Frame) {
        if self.slot_offset(f.addr).is_some() {
            self.pool.free(f.addr);
        }
    }

    fn flush(&mut self) {
        self.prepare();
        self.submit();
        self.reap();
        self.flushes = self.flushes.wrapping_add(1);
        if self.flushes & (KERNEL_STATS_CHECK_EVERY - 1) == 0 {
            self.maybe_refresh_kernel_stats();
        }
    }

    fn wait(&mut self, timeout: Duration) {
        self.prepare();
        if self.any_ready() || timeout.is_zero() {
            self.submit();
            self.reap();
            return;
        }
        // About to sleep: a good moment for the costly counter read.
        self.maybe_refresh_kernel_stats();
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        self.stats.syscalls += 1;
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            // ETIME: timed out; EINTR: a signal; both are fine wake-ups.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(_) => self.ustats.submit_errors += 1,
        }
        self.reap();
    }

    fn wait_or_wake(&mut self, timeout: Duration, wake: RawFd) {
        // One one-shot poll on the wake fd stays armed until it fires (its
        // completion ends the wait below); re-armed on the next wait.
        if self.wake_armed != Some(wake) {
            let e = opcode::PollAdd::new(types::Fd(wake), libc::POLLIN as u32)
                .build()
                .user_data(Token::Wake.encode());
            // SAFETY: a poll request carries no buffer of ours; the fd is
            // the caller's eventfd, which outlives the worker using us.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                self.wake_armed = Some(wake);
            }
        }
        self.wait(timeout);
    }

    fn stats(&self) -> BackendStats {
        // Kernel drops are read in flush/wait, not here: the worker reads
        // stats every batch and a getsockopt per port per batch would be
        // the per-batch syscall the design forbids.
        BackendStats {
            rx_dropped: self.ustats.rx_kernel_drops
                + self.ustats.rx_truncated
                + self.ustats.rx_queue_full,
            ..self.stats
        }
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        let idle = !(self.ports.iter().any(|p| p.armed) || self.tx.in_flight() > 0)
            || self.quiesce(Duration::from_secs(1));
        for port in 0..self.ports.len() {
            if let Err(e) = self.ring.submitter().unregister_buf_ring(bgid(port)) {
                tracing::debug!(error = %e, port, "unregistering a provided buffer ring");
            }
        }
        // SAFETY: `ring` is dropped exactly once, here, and never used after.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if idle {
            // SAFETY: no request is left that could touch a buffer ring
            // or a frame (all completions were reaped), the ring is closed,
            // and both are dropped exactly once, here.
            unsafe {
                ManuallyDrop::drop(&mut self.bufrings);
                ManuallyDrop::drop(&mut self.mem);
            }
        } else {
            tracing::warn!(
                bytes = self.mem.len(),
                "io_uring requests outlived the backend; leaking its frame memory rather than unmapping it under the kernel"
            );
        }
    }
}
